//! The collaborative components: popularity, item-kNN (cosine), EASE, and a short-range
//! item-to-item transition model. Each scores every item for a history; the blend in
//! `recommender.rs` combines them.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use crate::data::{Dataset, Ev};
use crate::linalg::spd_inverse;

/// With recency decay, events older than `RECENCY_CUTOFF * tau` (weight below e^-7, about
/// 0.1% of the newest) are left out: it bounds the scoring cost of very long histories.
pub const RECENCY_CUTOFF: f32 = 7.0;

/// The distinct items of a history with their input weights: the interaction weight times a
/// recency factor `exp(-p / tau)` where `p` counts events from the newest (0). `tau <= 0` means
/// no decay. Repeated items keep their largest weight.
pub fn input_weights(hist: &[Ev], tau: f32) -> Vec<(u32, f32)> {
    let hist = if tau > 0.0 {
        let keep = (RECENCY_CUTOFF * tau).ceil() as usize + 1;
        &hist[hist.len().saturating_sub(keep)..]
    } else {
        hist
    };
    let n = hist.len();
    let mut out: Vec<(u32, f32)> = Vec::with_capacity(n);
    let mut pos: HashMap<u32, usize> = HashMap::with_capacity(n);
    for (idx, e) in hist.iter().enumerate() {
        let p = (n - 1 - idx) as f32;
        let w = if tau > 0.0 {
            e.weight * (-p / tau).exp()
        } else {
            e.weight
        };
        match pos.get(&e.item) {
            Some(&k) => out[k].1 = out[k].1.max(w),
            None => {
                pos.insert(e.item, out.len());
                out.push((e.item, w));
            }
        }
    }
    out
}

/// Each user's distinct items with their largest interaction weight.
pub fn user_rows(d: &Dataset) -> Vec<Vec<(u32, f32)>> {
    d.seqs.iter().map(|s| input_weights(s, 0.0)).collect()
}

/// For each item, the users who interacted with it and the weight.
fn item_columns(rows: &[Vec<(u32, f32)>], n_items: usize) -> Vec<Vec<(u32, f32)>> {
    let mut cols = vec![Vec::new(); n_items];
    for (u, r) in rows.iter().enumerate() {
        for &(i, w) in r {
            cols[i as usize].push((u as u32, w));
        }
    }
    cols
}

pub use augur_model::par::par_map;

// ------------------------------------------------------------------------------------------------
// Popularity

/// Item popularity: the number of users who interacted with each item (weighted).
#[derive(Debug, Clone)]
pub struct Popularity {
    pub counts: Vec<f32>,
}

impl Popularity {
    pub fn fit(d: &Dataset) -> Self {
        let mut counts = vec![0f32; d.n_items()];
        for r in user_rows(d) {
            for (i, w) in r {
                counts[i as usize] += w;
            }
        }
        Popularity { counts }
    }

    pub fn score(&self, out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

// ------------------------------------------------------------------------------------------------
// Item-kNN

/// Item-based collaborative filtering: cosine similarity between item columns of the user-item
/// matrix, each item keeping its `k` nearest neighbours; a user's score for `j` is the sum over
/// their items `i` of `x_i * sim(i, j)`.
#[derive(Debug, Clone)]
pub struct ItemKnn {
    pub neighbours: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    pub fn fit(d: &Dataset, k: usize) -> Self {
        let n = d.n_items();
        let rows = user_rows(d);
        let cols = item_columns(&rows, n);
        let norms: Vec<f32> = cols
            .iter()
            .map(|c| c.iter().map(|(_, w)| w * w).sum::<f32>().sqrt())
            .collect();
        let neighbours = par_map(n, |i| {
            let mut acc: HashMap<u32, f32> = HashMap::new();
            for &(u, wu) in &cols[i] {
                for &(j, wj) in &rows[u as usize] {
                    if j as usize != i {
                        *acc.entry(j).or_default() += wu * wj;
                    }
                }
            }
            let mut v: Vec<(u32, f32)> = acc
                .into_iter()
                .map(|(j, c)| (j, c / (norms[i] * norms[j as usize]).max(1e-12)))
                .collect();
            v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            v.truncate(k);
            v
        });
        ItemKnn { neighbours }
    }

    pub fn score(&self, x: &[(u32, f32)], out: &mut [f32]) {
        for &(i, w) in x {
            if let Some(nb) = self.neighbours.get(i as usize) {
                for &(j, s) in nb {
                    out[j as usize] += w * s;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// EASE

/// EASE (Steck 2019): `B = I - P diag(1/diag P)`, `P = (X^T X + lambda I)^-1`, diagonal of B zero.
/// Fitted over the items with at least `min_count` users (the others get no EASE score), which
/// keeps the inverse small on long-tail catalogues.
#[derive(Debug, Clone)]
pub struct Ease {
    /// Global item index of each EASE row/column.
    pub items: Vec<u32>,
    /// EASE index of each global item, `u32::MAX` when absent.
    pub index: Vec<u32>,
    /// Row-major `items.len()^2` weights.
    pub b: Vec<f32>,
}

impl Ease {
    pub fn fit(d: &Dataset, lambda: f32, min_count: usize) -> candle_core::Result<Self> {
        let n = d.n_items();
        let rows = user_rows(d);
        let mut users_per_item = vec![0usize; n];
        for r in &rows {
            for &(i, _) in r {
                users_per_item[i as usize] += 1;
            }
        }
        let items: Vec<u32> = (0..n as u32)
            .filter(|&i| users_per_item[i as usize] >= min_count.max(1))
            .collect();
        let mut index = vec![u32::MAX; n];
        for (e, &i) in items.iter().enumerate() {
            index[i as usize] = e as u32;
        }
        let m = items.len();
        if m == 0 {
            return Ok(Ease {
                items,
                index,
                b: Vec::new(),
            });
        }
        let mut g = vec![0f32; m * m];
        for r in &rows {
            let xs: Vec<(usize, f32)> = r
                .iter()
                .filter(|(i, _)| index[*i as usize] != u32::MAX)
                .map(|&(i, w)| (index[i as usize] as usize, w))
                .collect();
            for &(a, wa) in &xs {
                let row = &mut g[a * m..(a + 1) * m];
                for &(b, wb) in &xs {
                    row[b] += wa * wb;
                }
            }
        }
        for a in 0..m {
            g[a * m + a] += lambda;
        }
        let g = Tensor::from_vec(g, (m, m), &Device::Cpu)?;
        let p = spd_inverse(&g)?;
        let diag: Vec<f32> = p
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .step_by(m + 1)
            .copied()
            .collect();
        let mut b: Vec<f32> = p.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        for r in 0..m {
            let row = &mut b[r * m..(r + 1) * m];
            for (c, v) in row.iter_mut().enumerate() {
                *v = if r == c { 0.0 } else { -*v / diag[c] };
            }
        }
        Ok(Ease { items, index, b })
    }

    pub fn score(&self, x: &[(u32, f32)], out: &mut [f32]) {
        let m = self.items.len();
        if m == 0 {
            return;
        }
        let mut acc = vec![0f32; m];
        for &(i, w) in x {
            let e = self.index.get(i as usize).copied().unwrap_or(u32::MAX);
            if e == u32::MAX {
                continue;
            }
            let row = &self.b[e as usize * m..(e as usize + 1) * m];
            for (a, r) in acc.iter_mut().zip(row) {
                *a += w * r;
            }
        }
        for (e, &i) in self.items.iter().enumerate() {
            out[i as usize] += acc[e];
        }
    }

    /// The weight of `from` in the score of `to`, if both are EASE items.
    pub fn weight(&self, from: u32, to: u32) -> f32 {
        let m = self.items.len();
        match (self.index.get(from as usize), self.index.get(to as usize)) {
            (Some(&a), Some(&b)) if a != u32::MAX && b != u32::MAX => {
                self.b[a as usize * m + b as usize]
            }
            _ => 0.0,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Transitions

/// Short-range sequential signal: how often item `j` follows item `i` within `window` steps in a
/// user's history (weighted 1/distance), row-normalised, top `keep` per item. A user's score
/// sums the rows of their last `last` items with weight `decay^p` (p from the newest).
#[derive(Debug, Clone)]
pub struct Transitions {
    pub next: Vec<Vec<(u32, f32)>>,
}

pub const TRANSITION_WINDOW: usize = 3;
pub const TRANSITION_LAST: usize = 10;
pub const TRANSITION_DECAY: f32 = 0.8;

impl Transitions {
    pub fn fit(d: &Dataset, keep: usize) -> Self {
        let n = d.n_items();
        let mut rows: Vec<HashMap<u32, f32>> = vec![HashMap::new(); n];
        for s in &d.seqs {
            for t in 0..s.len() {
                for dist in 1..=TRANSITION_WINDOW {
                    if let Some(nx) = s.get(t + dist)
                        && nx.item != s[t].item
                    {
                        *rows[s[t].item as usize].entry(nx.item).or_default() += 1.0 / dist as f32;
                    }
                }
            }
        }
        let next = rows
            .into_iter()
            .map(|r| {
                let total: f32 = r.values().sum();
                let mut v: Vec<(u32, f32)> = r
                    .into_iter()
                    .map(|(j, c)| (j, c / total.max(1e-12)))
                    .collect();
                v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                v.truncate(keep);
                v
            })
            .collect();
        Transitions { next }
    }

    pub fn score(&self, hist: &[Ev], out: &mut [f32]) {
        let mut w = 1.0;
        for e in hist.iter().rev().take(TRANSITION_LAST) {
            if let Some(row) = self.next.get(e.item as usize) {
                for &(j, p) in row {
                    out[j as usize] += w * p;
                }
            }
            w *= TRANSITION_DECAY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RawInteraction;

    fn tiny() -> Dataset {
        // a and b always go together; c with d.
        let mut raw = Vec::new();
        for u in 0..6 {
            let items = if u % 2 == 0 { ["a", "b"] } else { ["c", "d"] };
            for (t, i) in items.iter().enumerate() {
                raw.push(RawInteraction {
                    user: format!("u{u}"),
                    item: (*i).into(),
                    ts: t as i64,
                    weight: 1.0,
                });
            }
        }
        Dataset::from_raw(&raw)
    }

    #[test]
    fn components_link_co_occurring_items() {
        let d = tiny();
        let a = [(0u32, 1.0f32)]; // item "a"
        let knn = ItemKnn::fit(&d, 10);
        assert_eq!(knn.neighbours[0], vec![(1, 1.0)]);
        let ease = Ease::fit(&d, 1.0, 1).unwrap();
        let mut s = vec![0.0; 4];
        ease.score(&a, &mut s);
        assert!(s[1] > 0.5 && s[2].abs() < 1e-6 && s[0] == 0.0, "{s:?}");
        let tr = Transitions::fit(&d, 10);
        assert_eq!(tr.next[0], vec![(1, 1.0)]);
        let pop = Popularity::fit(&d);
        assert_eq!(pop.counts, vec![3.0; 4]);
    }

    #[test]
    fn recency_weights_decay_from_the_newest() {
        let h = [
            Ev {
                item: 1,
                ts: 0,
                weight: 1.0,
            },
            Ev {
                item: 2,
                ts: 1,
                weight: 1.0,
            },
            Ev {
                item: 1,
                ts: 2,
                weight: 0.5,
            },
        ];
        let w = input_weights(&h, 1.0);
        assert_eq!(w[0].0, 1);
        assert!((w[0].1 - 0.5).abs() < 1e-6);
        assert!((w[1].1 - (-1f32).exp()).abs() < 1e-6);
        assert_eq!(input_weights(&h, 0.0)[0].1, 1.0);
    }
}
