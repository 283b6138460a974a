//! From feature-store rows to the model's input columns.
//!
//! Every column belongs to a `group` (the feature-store feature it comes from, or
//! `buy_till_you_die`); explanations sum the contributions of a group's columns, so a feature
//! with a missing-value indicator or a categorical one-hot encoding is one factor.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::btyd::{BgNbd, ParetoNbd, Rfm};
use crate::fs::{Cell, Rows};

/// Numeric customer features read from the feature store, and whether they are log1p-scaled.
pub const NUMERIC: &[(&str, bool)] = &[
    ("recency_days", true),
    ("frequency_30d", true),
    ("frequency_90d", true),
    ("frequency_365d", true),
    ("frequency_lifetime", true),
    ("monetary_30d", true),
    ("monetary_90d", true),
    ("monetary_lifetime", true),
    ("avg_order_value", true),
    ("interpurchase_mean_days", true),
    ("interpurchase_std_days", true),
    ("days_since_first_order", true),
    ("units_lifetime", true),
    ("distinct_categories", true),
    ("views_30d", true),
    ("clicks_30d", true),
    ("add_to_cart_30d", true),
    ("searches_30d", true),
    ("wishlists_30d", true),
    ("interactions_lifetime", true),
    ("days_since_last_interaction", true),
    ("cart_abandon_rate_30d", false),
    ("review_count", true),
    ("reviews_30d", true),
    ("review_mean_rating", false),
    ("negative_review_share", false),
    ("refund_count", true),
    ("chargeback_count", true),
    ("tenure_days", true),
];

/// String features one-hot encoded (plus any `attr_<key>`).
pub const CATEGORICAL: &[&str] = &["country"];

/// Group name of the buy-till-you-die columns.
pub const BTYD_GROUP: &str = "buy_till_you_die";
/// Group name of the recent order sequence (read by the model's GRU, one factor).
pub const SEQ_GROUP: &str = "recent_orders";
/// Orders of the sequence (the feature store's `order_<k>_*`, k = 1 the newest).
pub const SEQ_STEPS: usize = 5;
/// Columns per order of the sequence: no such order, log1p days ago, log1p total, log1p units.
pub const SEQ_FIELDS: usize = 4;

/// The feature-store features of order `k` of the sequence (1 = the newest).
pub fn seq_features(k: usize) -> [String; 3] {
    [
        format!("order_{k}_days_ago"),
        format!("order_{k}_total"),
        format!("order_{k}_units"),
    ]
}

/// Where the sequence's columns sit in `cols` (step-major, oldest order first), or `None`
/// when `cols` have no complete sequence.
pub fn seq_layout(cols: &[Column]) -> Option<crate::nam::SeqLayout> {
    let idx: Vec<usize> = cols
        .iter()
        .enumerate()
        .filter(|(_, c)| c.group == SEQ_GROUP)
        .map(|(i, _)| i)
        .collect();
    (idx.len() == SEQ_STEPS * SEQ_FIELDS).then_some(crate::nam::SeqLayout {
        cols: idx,
        fields: SEQ_FIELDS,
    })
}

/// Derived: days since the last order divided by the mean gap between orders.
pub const OVERDUE: &str = "overdue_ratio";

/// How one input column is computed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Source {
    /// A numeric feature, optionally log1p of max(0, v); missing values are imputed with the
    /// training mean.
    Numeric { feature: String, log: bool },
    /// 1 when the feature is missing.
    IsMissing { feature: String },
    /// 1 when the string feature equals `value`.
    OneHot { feature: String, value: String },
    /// log1p(recency / mean gap).
    Overdue,
    /// logit of the BG/NBD probability of no purchase within the horizon.
    BgNbdChurnLogit,
    /// logit of the Pareto/NBD probability of no purchase within the horizon.
    ParetoChurnLogit,
    /// ln(0.01 + BG/NBD expected purchases within the horizon).
    BgNbdLogExpected,
}

/// One input column with its standardisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    pub group: String,
    pub source: Source,
    pub mean: f64,
    pub std: f64,
}

/// The fitted buy-till-you-die models the BTYD columns use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Btyd {
    pub bgnbd: BgNbd,
    pub pareto: ParetoNbd,
}

/// The feature names of one feature-store answer, shared by all its records (a batch of 1,000
/// customers has one name list and one index, not 1,000 maps).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Schema {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Schema {
    pub fn new(names: Vec<String>) -> Schema {
        let mut index = HashMap::with_capacity(names.len());
        for (i, n) in names.iter().enumerate() {
            // A repeated name: the first one counts.
            index.entry(n.clone()).or_insert(i);
        }
        Schema { names, index }
    }

    /// Where `name` sits in the records of this schema.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// [`Self::position`] of each name.
    pub fn positions(&self, names: &[String]) -> Vec<Option<usize>> {
        names.iter().map(|n| self.position(n)).collect()
    }
}

/// Raw values of one customer at one moment: one cell per feature of its schema.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    schema: Arc<Schema>,
    cells: Vec<Cell>,
}

/// A record with no features (every value missing).
impl Default for Record {
    fn default() -> Self {
        Record {
            schema: Arc::new(Schema::default()),
            cells: Vec::new(),
        }
    }
}

impl Record {
    /// A record of `schema` (cells beyond the schema are dropped, missing ones are `Missing`).
    pub fn new(schema: Arc<Schema>, mut cells: Vec<Cell>) -> Record {
        cells.resize(schema.names.len(), Cell::Missing);
        Record { schema, cells }
    }

    /// A record with its own schema from name/value pairs (tests and tools).
    pub fn from_values(num: &[(&str, f64)], text: &[(&str, &str)]) -> Record {
        let names = num
            .iter()
            .map(|(n, _)| n.to_string())
            .chain(text.iter().map(|(n, _)| n.to_string()))
            .collect();
        let cells = num
            .iter()
            .map(|(_, v)| Cell::Num(*v))
            .chain(text.iter().map(|(_, v)| Cell::Str(v.to_string())))
            .collect();
        Record::new(Arc::new(Schema::new(names)), cells)
    }

    pub fn schema(&self) -> &Arc<Schema> {
        &self.schema
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.schema.position(name).and_then(|i| self.num_at(i))
    }

    /// The number at a schema position.
    pub fn num_at(&self, i: usize) -> Option<f64> {
        match self.cells.get(i) {
            Some(Cell::Num(x)) => Some(*x),
            _ => None,
        }
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.schema.position(name).and_then(|i| self.text_at(i))
    }

    /// The string at a schema position.
    pub fn text_at(&self, i: usize) -> Option<&str> {
        match self.cells.get(i) {
            Some(Cell::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The numbers at `positions` (from [`Schema::positions`]), NaN where missing.
    pub fn values_at(&self, positions: &[Option<usize>]) -> Vec<f64> {
        positions
            .iter()
            .map(|p| p.and_then(|i| self.num_at(i)).unwrap_or(f64::NAN))
            .collect()
    }

    /// The BTYD summary, when the customer has orders.
    pub fn rfm(&self) -> Option<Rfm> {
        rfm_of(
            self.get("frequency_lifetime"),
            self.get("recency_days"),
            self.get("days_since_first_order"),
        )
    }
}

fn rfm_of(orders: Option<f64>, recency: Option<f64>, first: Option<f64>) -> Option<Rfm> {
    let orders = orders.filter(|&o| o >= 1.0)?;
    Some(Rfm::from_features(orders, recency?, first?))
}

/// Something worked out from a schema (a [`Plan`], feature positions), kept while the records
/// that come through share that schema: once per feature-store answer, not once per customer.
#[derive(Debug)]
pub struct PerAnswer<T> {
    at: Option<(Arc<Schema>, T)>,
}

impl<T> Default for PerAnswer<T> {
    fn default() -> Self {
        PerAnswer { at: None }
    }
}

impl<T> PerAnswer<T> {
    /// The value for `rec`'s schema, made by `make` when the schema differs from the last one.
    pub fn get(&mut self, rec: &Record, make: impl FnOnce(&Schema) -> T) -> &T {
        let schema = &rec.schema;
        let (_, value) = match self.at.take() {
            Some(kept) if Arc::ptr_eq(&kept.0, schema) => self.at.insert(kept),
            _ => self.at.insert((schema.clone(), make(schema))),
        };
        value
    }
}

/// Splits a feature-store response into records (`None`: unknown customer); the records share
/// the response's feature names and take its rows without copying.
pub fn records(rows: Rows) -> Vec<Option<Record>> {
    let schema = Arc::new(Schema::new(rows.names));
    rows.rows
        .into_iter()
        .map(|r| r.map(|cells| Record::new(schema.clone(), cells)))
        .collect()
}

/// ln(p / (1 - p)), p clamped to [1e-6, 1 - 1e-6].
pub fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

/// The BTYD outputs of one customer for one horizon (computed once per prediction).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BtydValues {
    pub bg_churn_logit: f64,
    pub pareto_churn_logit: f64,
    pub bg_log_expected: f64,
    /// BG/NBD P(alive now) and expected purchases in the horizon (also used by the answer).
    pub bg_p_alive: f64,
    pub bg_expected: f64,
}

impl BtydValues {
    pub fn of(rec: &Record, btyd: &Btyd, horizon_weeks: f64) -> Option<BtydValues> {
        rec.rfm()
            .map(|c| BtydValues::of_rfm(&c, btyd, horizon_weeks))
    }

    /// The outputs for a purchase summary.
    pub fn of_rfm(c: &Rfm, btyd: &Btyd, horizon_weeks: f64) -> BtydValues {
        let bg_expected = btyd.bgnbd.expected(c, horizon_weeks);
        BtydValues {
            bg_churn_logit: logit(btyd.bgnbd.p_no_purchase(c, horizon_weeks)),
            pareto_churn_logit: logit(btyd.pareto.p_no_purchase(c, horizon_weeks)),
            bg_log_expected: (0.01 + bg_expected).ln(),
            bg_p_alive: btyd.bgnbd.p_alive(c),
            bg_expected,
        }
    }
}

/// The factor groups of a set of columns: their names in order, and each column's group.
#[derive(Debug, Clone)]
pub struct Groups {
    pub names: Vec<Arc<str>>,
    pub of: Vec<usize>,
}

impl Groups {
    pub fn new(cols: &[Column]) -> Groups {
        let mut names: Vec<&str> = cols.iter().map(|c| c.group.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let of = cols
            .iter()
            .map(|c| names.binary_search(&c.group.as_str()).unwrap_or(0))
            .collect();
        Groups {
            names: names.into_iter().map(Arc::from).collect(),
            of,
        }
    }
}

/// Where the features of a set of columns sit in one [`Schema`]: resolved once per
/// feature-store answer (see [`PerAnswer`]), so encoding a customer looks nothing up by name.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Per column: the position of its feature (for `Overdue`: of the mean gap and of recency).
    slots: Vec<[Option<usize>; 2]>,
    /// Positions of frequency_lifetime, recency_days, days_since_first_order.
    rfm: [Option<usize>; 3],
}

impl Plan {
    pub fn new(cols: &[Column], schema: &Schema) -> Plan {
        let at = |n: &str| schema.position(n);
        Plan {
            slots: cols.iter().map(|c| slot(&c.source, schema)).collect(),
            rfm: [
                at("frequency_lifetime"),
                at("recency_days"),
                at("days_since_first_order"),
            ],
        }
    }

    /// The record's BTYD summary ([`Record::rfm`] without lookups).
    pub fn rfm(&self, rec: &Record) -> Option<Rfm> {
        let g = |p: Option<usize>| p.and_then(|i| rec.num_at(i));
        rfm_of(g(self.rfm[0]), g(self.rfm[1]), g(self.rfm[2]))
    }

    /// The standardised input row of `rec` (missing -> 0, the training mean); `cols` are the
    /// columns the plan was made for.
    pub fn encode(&self, cols: &[Column], rec: &Record, vals: Option<&BtydValues>) -> Vec<f32> {
        cols.iter()
            .zip(&self.slots)
            .map(|(c, slot)| {
                raw_at(&c.source, rec, slot, vals).map_or(0.0, |v| ((v - c.mean) / c.std) as f32)
            })
            .collect()
    }
}

/// The value of a column before standardisation; `None` = missing (imputed with the mean).
pub fn raw(source: &Source, rec: &Record, btyd: &Btyd, horizon_weeks: f64) -> Option<f64> {
    let needs_btyd = matches!(
        source,
        Source::BgNbdChurnLogit | Source::ParetoChurnLogit | Source::BgNbdLogExpected
    );
    let vals = if needs_btyd {
        BtydValues::of(rec, btyd, horizon_weeks)
    } else {
        None
    };
    raw_at(source, rec, &slot(source, &rec.schema), vals.as_ref())
}

/// Where a column's feature sits in `schema` (for `Overdue`: the mean gap and recency).
fn slot(source: &Source, schema: &Schema) -> [Option<usize>; 2] {
    let at = |n: &str| schema.position(n);
    match source {
        Source::Numeric { feature, .. }
        | Source::IsMissing { feature }
        | Source::OneHot { feature, .. } => [at(feature), None],
        Source::Overdue => [at("interpurchase_mean_days"), at("recency_days")],
        Source::BgNbdChurnLogit | Source::ParetoChurnLogit | Source::BgNbdLogExpected => {
            [None, None]
        }
    }
}

/// [`raw`] with the feature positions resolved and the BTYD outputs computed.
fn raw_at(
    source: &Source,
    rec: &Record,
    slot: &[Option<usize>; 2],
    b: Option<&BtydValues>,
) -> Option<f64> {
    let num = |p: Option<usize>| p.and_then(|i| rec.num_at(i));
    match source {
        Source::Numeric { log, .. } => {
            num(slot[0]).map(|v| if *log { v.max(0.0).ln_1p() } else { v })
        }
        Source::IsMissing { .. } => Some(f64::from(u8::from(num(slot[0]).is_none()))),
        Source::OneHot { value, .. } => Some(f64::from(u8::from(
            slot[0]
                .and_then(|i| rec.text_at(i))
                .is_some_and(|v| v == value),
        ))),
        Source::Overdue => {
            let gap = num(slot[0])?;
            let r = num(slot[1])?;
            Some((r.max(0.0) / gap.max(1.0)).ln_1p())
        }
        Source::BgNbdChurnLogit => b.map(|b| b.bg_churn_logit),
        Source::ParetoChurnLogit => b.map(|b| b.pareto_churn_logit),
        Source::BgNbdLogExpected => b.map(|b| b.bg_log_expected),
    }
}

/// Every candidate column for the features present in `names`, before fitting.
pub fn candidates(names: &[String], recs: &[&Record]) -> Vec<Column> {
    let has = |n: &str| names.iter().any(|x| x == n);
    let col = |group: &str, source: Source| Column {
        group: group.to_string(),
        source,
        mean: 0.0,
        std: 1.0,
    };
    let mut out = vec![
        col(BTYD_GROUP, Source::BgNbdChurnLogit),
        col(BTYD_GROUP, Source::ParetoChurnLogit),
        col(BTYD_GROUP, Source::BgNbdLogExpected),
        col(OVERDUE, Source::Overdue),
        col(
            OVERDUE,
            Source::IsMissing {
                feature: "interpurchase_mean_days".into(),
            },
        ),
    ];
    for &(name, log) in NUMERIC {
        if !has(name) {
            continue;
        }
        out.push(col(
            name,
            Source::Numeric {
                feature: name.into(),
                log,
            },
        ));
        out.push(col(
            name,
            Source::IsMissing {
                feature: name.into(),
            },
        ));
    }
    // The recent order sequence, oldest order first, when the feature store serves it.
    if (1..=SEQ_STEPS).all(|k| seq_features(k).iter().all(|f| has(f))) {
        for k in (1..=SEQ_STEPS).rev() {
            let [days, total, units] = seq_features(k);
            out.push(col(
                SEQ_GROUP,
                Source::IsMissing {
                    feature: days.clone(),
                },
            ));
            for f in [days, total, units] {
                out.push(col(
                    SEQ_GROUP,
                    Source::Numeric {
                        feature: f,
                        log: true,
                    },
                ));
            }
        }
    }
    // Categorical: values seen in at least 1% of the training records, at most 10 per feature.
    for name in names
        .iter()
        .filter(|n| CATEGORICAL.contains(&n.as_str()) || n.starts_with("attr_"))
    {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for r in recs {
            if let Some(v) = r.text(name) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let mut vals: Vec<(&str, usize)> = counts.into_iter().collect();
        vals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        let min = (recs.len() / 100).max(1);
        for (v, _) in vals.into_iter().filter(|(_, c)| *c >= min).take(10) {
            out.push(col(
                name,
                Source::OneHot {
                    feature: name.clone(),
                    value: v.to_string(),
                },
            ));
        }
    }
    out
}

/// Fits the standardisation of each column on the training examples and drops the constant ones
/// (but not the sequence's: its layout is fixed; a constant one is centred with scale 1).
pub fn fit_columns(cands: Vec<Column>, raws: impl Fn(&Source) -> Vec<Option<f64>>) -> Vec<Column> {
    let mut out = Vec::new();
    for mut c in cands {
        let vals: Vec<f64> = raws(&c.source).into_iter().flatten().collect();
        let keep = c.group == SEQ_GROUP;
        if vals.len() < 2 && !keep {
            continue;
        }
        let mean = vals.iter().sum::<f64>() / vals.len().max(1) as f64;
        let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / vals.len().max(1) as f64;
        if var.sqrt() < 1e-9 {
            if keep {
                c.mean = mean;
                c.std = 1.0;
                out.push(c);
            }
            continue;
        }
        c.mean = mean;
        c.std = var.sqrt();
        out.push(c);
    }
    out
}

/// Standardised input row (missing -> 0, the training mean), the positions resolved for this
/// one record (a batch shares one [`Plan`]).
pub fn encode(cols: &[Column], rec: &Record, btyd: &Btyd, horizon_weeks: f64) -> Vec<f32> {
    let vals = BtydValues::of(rec, btyd, horizon_weeks);
    Plan::new(cols, &rec.schema).encode(cols, rec, vals.as_ref())
}

/// Feature-store features the columns need.
pub fn needed_features(cols: &[Column]) -> Vec<String> {
    let mut out: Vec<String> = [
        "frequency_lifetime",
        "recency_days",
        "days_since_first_order",
        "interpurchase_mean_days",
        "interpurchase_std_days",
        "avg_order_value",
        "monetary_lifetime",
        "tenure_days",
        "reviews_30d",
        "review_mean_rating",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for c in cols {
        let f = match &c.source {
            Source::Numeric { feature, .. }
            | Source::IsMissing { feature }
            | Source::OneHot { feature, .. } => feature.clone(),
            _ => continue,
        };
        if !out.contains(&f) {
            out.push(f);
        }
    }
    out
}

/// `v` with `digits` (at most 9) decimals, exactly as `format!("{v:.digits$}")` writes it (a
/// tie is rounded half to even on the exact binary value), without the general formatter's
/// exact-digit search, which falls back to big-number arithmetic for many values: a 1,000-customer
/// answer formats about 10,000 numbers. Values far from a tie after scaling by `10^digits`,
/// below 2^30 once scaled, take the fast path; the rest are formatted by `format!`.
fn fixed(v: f64, digits: usize) -> String {
    const DIGITS_MAX: usize = 9;
    // Below 2^30 the product `v * 10^digits` is within 2^-23 of the exact one, well inside the
    // distance to a tie that is required, so both round to the same integer.
    const LIMIT: f64 = (1u64 << 30) as f64;
    const TIE_MARGIN: f64 = 1e-6;
    if digits > DIGITS_MAX {
        return format!("{v:.digits$}");
    }
    let pow = 10u64.pow(digits as u32);
    let scaled = v * pow as f64;
    if !scaled.is_finite() || scaled.abs() >= LIMIT {
        return format!("{v:.digits$}");
    }
    let frac = scaled - scaled.floor();
    if (frac - 0.5).abs() < TIE_MARGIN {
        return format!("{v:.digits$}");
    }
    let n = scaled.abs().round() as u64;
    let sign = if v.is_sign_negative() { "-" } else { "" };
    if digits == 0 {
        format!("{sign}{n}")
    } else {
        format!("{sign}{}.{:0digits$}", n / pow, n % pow)
    }
}

/// A sentence for people about a factor group (`vals`: the customer's BTYD outputs over the
/// horizon, `None` without a purchase history).
pub fn describe(
    group: &str,
    rec: &Record,
    vals: Option<&BtydValues>,
    horizon_days: u32,
) -> (String, String) {
    let g = |n: &str| rec.get(n);
    let d = |v: f64| fixed(v, 0);
    match group {
        "recency_days" | OVERDUE => match (g("recency_days"), g("interpurchase_mean_days")) {
            (Some(r), Some(gap)) => {
                let r = d(r);
                let text = format!("no order for {r} days, usual gap {} days", d(gap));
                (r, text)
            }
            (Some(r), None) => {
                let r = d(r);
                let text = format!("no order for {r} days, only one order so far");
                (r, text)
            }
            _ => ("".into(), "no order yet".into()),
        },
        SEQ_GROUP => {
            let (mut ago, mut totals) = (Vec::new(), Vec::new());
            for k in 1..=SEQ_STEPS {
                let [days, total, _] = seq_features(k);
                let Some(a) = g(&days) else { break };
                ago.push(d(a));
                totals.push(g(&total).map_or("?".into(), |t| fixed(t, 2)));
            }
            if ago.is_empty() {
                ("".into(), "no orders yet".into())
            } else {
                (
                    ago.join("/"),
                    format!(
                        "last {} orders {} days ago, totals {}",
                        ago.len(),
                        ago.join(", "),
                        totals.join(", ")
                    ),
                )
            }
        }
        BTYD_GROUP => match vals {
            Some(v) => {
                let (pa, e) = (v.bg_p_alive, v.bg_expected);
                (
                    fixed(pa, 2),
                    format!(
                        "purchase pattern says {}% likely still active, {} orders expected in {} days",
                        fixed(pa * 100.0, 0),
                        fixed(e, 1),
                        horizon_days
                    ),
                )
            }
            None => ("".into(), "no purchase history".into()),
        },
        "reviews_30d" | "review_count" | "review_mean_rating" | "negative_review_share" => {
            let n = g("review_count").unwrap_or(0.0);
            let m = g("review_mean_rating");
            let v = g(group).map(|v| fixed(v, 2)).unwrap_or_default();
            let text = match m {
                Some(m) => format!(
                    "{} reviews ({} in the last 30 days), mean rating {}",
                    d(n),
                    d(g("reviews_30d").unwrap_or(0.0)),
                    fixed(m, 1)
                ),
                None => "no reviews".into(),
            };
            (v, text)
        }
        _ => {
            if let Some(t) = rec.text(group) {
                return (t.to_string(), format!("{group} is {t}"));
            }
            match g(group) {
                Some(v) => {
                    let shown = if v.fract() == 0.0 { d(v) } else { fixed(v, 2) };
                    (
                        shown.clone(),
                        format!("{} = {}", group.replace('_', " "), shown),
                    )
                }
                None => ("".into(), format!("{} unknown", group.replace('_', " "))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixed;
    use proptest::prelude::*;

    #[test]
    fn fixed_writes_ties_and_edges_as_the_formatter_does() {
        for v in [
            0.0,
            -0.0,
            0.5,
            1.5,
            2.5,
            -2.5,
            0.125,
            0.375,
            1.005,
            2.675,
            0.045,
            99.995,
            -0.001,
            -0.004,
            0.994,
            0.995,
            0.996,
            143.0,
            1e9,
            1.5e9,
            -3e12,
            1e300,
            5e-324,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            for digits in 0..=3 {
                assert_eq!(fixed(v, digits), format!("{v:.digits$}"), "{v} at {digits}");
            }
        }
        assert_eq!(fixed(1.0 / 3.0, 12), format!("{:.12}", 1.0 / 3.0));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn fixed_matches_the_formatter(
            v in prop_oneof![
                any::<f64>(),
                -1e4..1e4f64,
                -2e9..2e9f64,
                // Exact ties and near-ties at every precision.
                (-200_000i64..200_000, 0u32..4).prop_map(|(k, d)| (k as f64 + 0.5) / 10f64.powi(d as i32)),
            ],
            digits in 0usize..=3,
        ) {
            prop_assert_eq!(fixed(v, digits), format!("{v:.digits$}"));
        }
    }
}
