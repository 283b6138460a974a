//! Answering requests from a loaded model: model scores, then the business re-ranking
//! (availability, purchases, filters, recent-sales boost, per-category cap), popularity for cold
//! customers and backfill, and item-to-item neighbours with a content fallback.

use std::collections::HashMap;

use augur_proto::common::Factor;
use augur_proto::recommendation as pb;

use crate::catalog::{Catalog, ProductInfo};
use crate::error::Error;
use crate::eval::top_k;
use crate::recommender::Recommender;

/// Largest `k` a request may ask for.
pub const MAX_K: u32 = 500;

/// Validated request options.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    pub include_purchased: bool,
    pub max_per_category: usize,
    pub categories: Vec<String>,
    pub min_price: Option<f64>,
    pub max_price: Option<f64>,
    pub boost: f64,
}

/// Checks `k` (0 means 10).
pub fn check_k(k: u32) -> Result<usize, Error> {
    match k {
        0 => Ok(10),
        k if k > MAX_K => Err(Error::invalid(
            "k",
            format!("must be 1 to {MAX_K}, got {k}"),
        )),
        k => Ok(k as usize),
    }
}

impl TryFrom<Option<pb::RecommendOptions>> for Options {
    type Error = Error;
    fn try_from(o: Option<pb::RecommendOptions>) -> Result<Self, Error> {
        let pb::RecommendOptions {
            include_purchased,
            max_per_category,
            categories,
            min_price,
            max_price,
            recent_sales_boost,
        } = o.unwrap_or_default();
        let mut v = augur_runtime::error::Violations::new();
        for (i, c) in categories.iter().enumerate() {
            if c.trim().is_empty() {
                v.add(format!("options.categories[{i}]"), "must not be empty");
            }
        }
        for (name, p) in [
            ("options.min_price", min_price),
            ("options.max_price", max_price),
        ] {
            if let Some(p) = p
                && (!p.is_finite() || p < 0.0)
            {
                v.add(name, format!("must be a finite number >= 0, got {p}"));
            }
        }
        if let (Some(a), Some(b)) = (min_price, max_price)
            && a > b
        {
            v.add(
                "options.min_price",
                format!("{a} is above options.max_price {b}"),
            );
        }
        if !recent_sales_boost.is_finite() || recent_sales_boost < 0.0 {
            v.add(
                "options.recent_sales_boost",
                format!("must be a finite number >= 0, got {recent_sales_boost}"),
            );
        }
        if !v.is_empty() {
            return Err(v.into());
        }
        Ok(Options {
            include_purchased,
            max_per_category: max_per_category as usize,
            categories,
            min_price,
            max_price,
            boost: recent_sales_boost,
        })
    }
}

impl Options {
    /// The request filters (category and price), on top of availability.
    fn passes(&self, info: Option<&ProductInfo>) -> bool {
        if !self.categories.is_empty() {
            let Some(p) = info else { return false };
            if !p.category_path.iter().any(|c| self.categories.contains(c)) {
                return false;
            }
        }
        if self.min_price.is_some() || self.max_price.is_some() {
            let Some(price) = info.and_then(|p| p.price) else {
                return false;
            };
            if self.min_price.is_some_and(|m| price < m)
                || self.max_price.is_some_and(|m| price > m)
            {
                return false;
            }
        }
        true
    }
}

fn factor(name: &str, value: &str, contribution: f64, description: String) -> Factor {
    Factor {
        name: name.into(),
        contribution,
        value: value.into(),
        description,
        unit: "score".into(),
    }
}

/// Re-ranks candidate scores (one per model item; `-inf` = excluded) into at most `k` items.
/// Only the best candidates are checked against the catalogue; the window widens until enough
/// survive the availability rules and filters (or every item was looked at).
fn rerank(
    m: &Recommender,
    cat: &Catalog,
    opts: &Options,
    scores: &[f32],
    k: usize,
) -> Vec<(u32, f64, f64)> {
    let need = if opts.max_per_category > 0 {
        k * 8 + 50
    } else {
        k
    };
    let n = scores.len();
    let mut want = (need * 2 + 20).min(n);
    let survivors = loop {
        let ok: Vec<u32> = top_k(scores, want)
            .into_iter()
            .filter(|&j| {
                let info = cat.get(&m.items[j as usize]);
                info.is_none_or(ProductInfo::available) && opts.passes(info)
            })
            .collect();
        if ok.len() >= need || want >= n {
            break ok;
        }
        want = (want * 4).min(n);
    };
    let mut cands: Vec<(u32, f64, f64)> = survivors
        .into_iter()
        .take(need)
        .map(|j| {
            let s = scores[j as usize] as f64;
            let share = cat.sales_share(&m.items[j as usize]);
            let boost = if opts.boost > 0.0 && s > 0.0 {
                s * opts.boost * share
            } else {
                0.0
            };
            (j, s + boost, boost)
        })
        .collect();
    if opts.boost > 0.0 {
        cands.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    }
    if opts.max_per_category == 0 {
        cands.truncate(k);
        return cands;
    }
    let mut per: HashMap<String, usize> = HashMap::new();
    let mut out = Vec::with_capacity(k);
    for c in cands {
        let leaf = cat
            .get(&m.items[c.0 as usize])
            .and_then(|p| p.leaf().map(str::to_string))
            .unwrap_or_default();
        let n = per.entry(leaf).or_default();
        if *n < opts.max_per_category {
            *n += 1;
            out.push(c);
            if out.len() == k {
                break;
            }
        }
    }
    out
}

/// `Recommend` on a loaded model.
pub fn recommend(
    m: &Recommender,
    cat: &Catalog,
    customer: &str,
    k: usize,
    opts: &Options,
) -> (Vec<pb::RecommendedItem>, pb::Strategy) {
    let n = m.n_items();
    let user = m.users.get(customer).map(|&u| u as usize);
    let hist = user.map(|u| m.histories[u].as_slice()).unwrap_or(&[]);
    let mut excluded = vec![false; n];
    if let Some(u) = user
        && !opts.include_purchased
    {
        for (e, &b) in m.histories[u].iter().zip(&m.bought[u]) {
            if b {
                excluded[e.item as usize] = true;
            }
        }
    }
    let mut out = Vec::with_capacity(k);
    let mut taken = vec![false; n];
    let mut strategy = pb::Strategy::Popular;
    if !hist.is_empty() {
        let mut scores = vec![0f32; n];
        let mut tmp = vec![0f32; n];
        m.parts.blend(&m.blend, hist, &mut scores, &mut tmp);
        for (s, &x) in scores.iter_mut().zip(&excluded) {
            if x {
                *s = f32::NEG_INFINITY;
            }
        }
        let x = crate::models::input_weights(hist, m.blend.tau);
        for (j, s, boost) in rerank(m, cat, opts, &scores, k) {
            taken[j as usize] = true;
            let mut factors = Vec::new();
            let reason = match m.strongest_link(&x, j) {
                Some(i) => {
                    let sku = &m.items[i as usize];
                    let bought = user.is_some_and(|u| {
                        m.histories[u]
                            .iter()
                            .zip(&m.bought[u])
                            .any(|(e, &b)| b && e.item == i)
                    });
                    factors.push(factor(
                        "similar_to",
                        sku,
                        s - boost,
                        format!("linked to {sku}"),
                    ));
                    if bought {
                        format!("bought together with {sku}")
                    } else {
                        format!("often chosen together with {sku}")
                    }
                }
                None => "matches your recent activity".to_string(),
            };
            if boost > 0.0 {
                factors.push(factor(
                    "recent_sales_boost",
                    &format!("{:.2}", cat.sales_share(&m.items[j as usize])),
                    boost,
                    "sold well recently".into(),
                ));
            }
            out.push(pb::RecommendedItem {
                sku: m.items[j as usize].clone(),
                score: s,
                reason,
                strategy: pb::Strategy::Personalised as i32,
                factors,
            });
        }
        if !out.is_empty() {
            strategy = pb::Strategy::Personalised;
        }
    }
    if out.len() < k {
        // Popularity: cold customers, and backfill.
        let mut scores: Vec<f32> = m.parts.pop.counts.clone();
        for (j, s) in scores.iter_mut().enumerate() {
            if excluded[j] || taken[j] {
                *s = f32::NEG_INFINITY;
            }
        }
        let where_ = if opts.categories.is_empty() {
            "overall".to_string()
        } else {
            format!("in {}", opts.categories.join(", "))
        };
        for (j, s, boost) in rerank(m, cat, opts, &scores, k - out.len()) {
            let sku = m.items[j as usize].clone();
            let leaf = cat.get(&sku).and_then(|p| p.leaf().map(str::to_string));
            let reason = match (&leaf, opts.categories.is_empty()) {
                (Some(l), true) => format!("popular in {l}"),
                _ => format!("popular {where_}"),
            };
            let mut factors = vec![factor(
                "popularity",
                &format!("{s:.0}"),
                s - boost,
                reason.clone(),
            )];
            if boost > 0.0 {
                factors.push(factor(
                    "recent_sales_boost",
                    "",
                    boost,
                    "sold well recently".into(),
                ));
            }
            out.push(pb::RecommendedItem {
                sku,
                score: s,
                reason,
                strategy: pb::Strategy::Popular as i32,
                factors,
            });
        }
    }
    (out, strategy)
}

/// `SimilarItems` on a loaded model.
pub fn similar(
    m: &Recommender,
    cat: &Catalog,
    sku: &str,
    k: usize,
) -> Result<(Vec<pb::SimilarItem>, pb::Strategy), Error> {
    if let Some(&i) = m.item_index.get(sku) {
        let items: Vec<pb::SimilarItem> = m.parts.knn.neighbours[i as usize]
            .iter()
            .filter(|(j, _)| cat.available(&m.items[*j as usize]))
            .take(k)
            .map(|&(j, s)| pb::SimilarItem {
                sku: m.items[j as usize].clone(),
                score: s as f64,
                reason: "often chosen by the same customers".into(),
            })
            .collect();
        if !items.is_empty() {
            return Ok((items, pb::Strategy::Collaborative));
        }
    }
    let Some(me) = cat.get(sku) else {
        if m.item_index.contains_key(sku) {
            return Ok((Vec::new(), pb::Strategy::Collaborative));
        }
        return Err(Error::NotFound(format!(
            "product {sku:?} is known to neither the model nor the catalogue"
        )));
    };
    // Content: share of the category path in common, popularity breaks ties.
    let pop = |s: &str| {
        m.item_index
            .get(s)
            .map(|&i| m.parts.pop.counts[i as usize])
            .unwrap_or(0.0)
    };
    let mut c: Vec<(f64, f32, &String)> = cat
        .products
        .iter()
        .filter(|(s, p)| s.as_str() != sku && p.available())
        .filter_map(|(s, p)| {
            let common = me
                .category_path
                .iter()
                .zip(&p.category_path)
                .take_while(|(a, b)| a == b)
                .count();
            let len = me.category_path.len().max(p.category_path.len()).max(1);
            (common > 0).then(|| (common as f64 / len as f64, pop(s), s))
        })
        .collect();
    let strategy = if c.is_empty() {
        pb::Strategy::Popular
    } else {
        pb::Strategy::Content
    };
    c.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then(a.2.cmp(b.2))
    });
    let items = c
        .into_iter()
        .take(k)
        .map(|(score, _, s)| pb::SimilarItem {
            sku: s.clone(),
            score,
            reason: match cat.get(s).and_then(ProductInfo::leaf) {
                Some(l) => format!("same category: {l}"),
                None => "related category".into(),
            },
        })
        .collect();
    Ok((items, strategy))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> Vec<String> {
        match e {
            Error::InvalidArgument(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn bad_options_name_their_fields() {
        assert_eq!(check_k(0).unwrap(), 10);
        assert_eq!(field_of(check_k(MAX_K + 1).unwrap_err()), ["k"]);
        let e = Options::try_from(Some(pb::RecommendOptions {
            categories: vec!["".into()],
            min_price: Some(-1.0),
            max_price: Some(f64::NAN),
            recent_sales_boost: -2.0,
            ..Default::default()
        }))
        .unwrap_err();
        assert_eq!(
            field_of(e),
            [
                "options.categories[0]",
                "options.min_price",
                "options.max_price",
                "options.recent_sales_boost"
            ]
        );
        let ok = Options::try_from(None).unwrap();
        assert_eq!(ok, Options::default());
    }

    #[test]
    fn filters_need_catalogue_facts() {
        let o = Options {
            categories: vec!["Audio".into()],
            max_price: Some(20.0),
            ..Default::default()
        };
        let p = ProductInfo {
            category_path: vec!["Electronics".into(), "Audio".into(), "Headphones".into()],
            price: Some(19.0),
            stock: Some(3),
            active: true,
            units_7d: 0.0,
        };
        assert!(o.passes(Some(&p)));
        assert!(!o.passes(None));
        let dear = ProductInfo {
            price: Some(25.0),
            ..p.clone()
        };
        assert!(!o.passes(Some(&dear)));
        let out = ProductInfo {
            stock: Some(0),
            ..p.clone()
        };
        assert!(!out.available());
        assert!(!ProductInfo { active: false, ..p }.available());
    }
}
