//! How much of the CDNOW churn label the order history can tell at all (`churn-bench`).
//!
//! A diagnostic, not a model: gradient-boosted trees are fitted on the **test labels themselves**
//! (churned = no purchase from 1997-10-01 to 1998-06-30), cross-fitted over K folds so that each
//! customer is scored by trees that never saw them. The features are everything a model could
//! read from the orders up to the cutoff: RFM, tenure, gap statistics, windowed counts and
//! amounts, and the last six purchase days one by one (age, amount, CDs) — the "recent order
//! sequence". A past-only model sees the same features but must learn from earlier, shorter label
//! windows; it cannot be expected to rank or calibrate better than trees that were fitted on the
//! very labels they are scored against, so this bounds what the goals could reach on
//! this split.

use std::collections::BTreeMap;

use augur_model::gbdt::{Gbdt, GbdtParams};
use augur_testkit::datasets::CdnowRow;
use chrono::NaiveDate;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

/// Purchase days of the sequence block.
pub const SEQUENCE_STEPS: usize = 6;

/// Names of the columns of [`features`], in order.
pub fn feature_names() -> Vec<String> {
    let mut v: Vec<String> = [
        "days_since_first",
        "recency_days",
        "purchase_days",
        "dollars_total",
        "dollars_mean",
        "cds_total",
        "first_day_dollars",
        "gap_mean",
        "gap_std",
        "gap_max",
        "overdue_ratio",
        "days_30d",
        "days_90d",
        "days_180d",
        "dollars_90d",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for k in 1..=SEQUENCE_STEPS {
        v.push(format!("last{k}_age_days"));
        v.push(format!("last{k}_dollars"));
        v.push(format!("last{k}_cds"));
    }
    v
}

/// One row per customer of `customers` (order kept) from the rows dated up to `cutoff`; a value
/// that does not exist (a gap of a one-time buyer, a sixth purchase day) is -1.
pub fn features(rows: &[CdnowRow], cutoff: NaiveDate, customers: &[String]) -> Vec<Vec<f32>> {
    // Purchase days per customer: date -> (dollars, cds).
    let mut days: BTreeMap<&str, BTreeMap<NaiveDate, (f64, f64)>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.date <= cutoff) {
        let d = days
            .entry(r.customer_id.as_str())
            .or_default()
            .entry(r.date)
            .or_default();
        d.0 += r.dollars;
        d.1 += r.cds as f64;
    }
    let width = feature_names().len();
    customers
        .iter()
        .map(|c| {
            let Some(h) = days.get(c.as_str()) else {
                return vec![-1.0; width];
            };
            let age = |d: &NaiveDate| (cutoff - *d).num_days() as f64;
            let dates: Vec<&NaiveDate> = h.keys().collect();
            let n = dates.len() as f64;
            let total: f64 = h.values().map(|v| v.0).sum();
            let cds: f64 = h.values().map(|v| v.1).sum();
            let gaps: Vec<f64> = dates
                .windows(2)
                .map(|w| (*w[1] - *w[0]).num_days() as f64)
                .collect();
            let (gm, gs, gx) = if gaps.is_empty() {
                (-1.0, -1.0, -1.0)
            } else {
                let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
                let v = gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / gaps.len() as f64;
                (m, v.sqrt(), gaps.iter().copied().fold(0.0, f64::max))
            };
            let recency = dates.last().map_or(-1.0, |d| age(d));
            let within = |w: f64| h.keys().filter(|d| age(d) < w).count() as f64;
            let dollars_90: f64 = h
                .iter()
                .filter(|(d, _)| age(d) < 90.0)
                .map(|(_, v)| v.0)
                .sum();
            let mut row = vec![
                dates.first().map_or(-1.0, |d| age(d)),
                recency,
                n,
                total,
                total / n,
                cds,
                h.values().next().map_or(-1.0, |v| v.0),
                gm,
                gs,
                gx,
                if gm > 0.0 { recency / gm } else { -1.0 },
                within(30.0),
                within(90.0),
                within(180.0),
                dollars_90,
            ];
            let mut recent = h.iter().rev();
            for _ in 0..SEQUENCE_STEPS {
                match recent.next() {
                    Some((d, v)) => row.extend([age(d), v.0, v.1]),
                    None => row.extend([-1.0, -1.0, -1.0]),
                }
            }
            row.into_iter().map(|v| v as f32).collect()
        })
        .collect()
}

/// Probabilities of `y` for every row, each from trees fitted on the other `folds - 1` folds
/// (a seeded random partition).
pub fn cross_fitted(x: &[Vec<f32>], y: &[bool], folds: usize, p: &GbdtParams) -> Vec<f64> {
    let folds = folds.max(2);
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.shuffle(&mut StdRng::seed_from_u64(p.seed));
    let mut fold_of = vec![0usize; x.len()];
    for (k, &i) in idx.iter().enumerate() {
        fold_of[i] = k % folds;
    }
    let mut out = vec![f64::NAN; x.len()];
    for f in 0..folds {
        let (tx, ty): (Vec<Vec<f32>>, Vec<bool>) = (0..x.len())
            .filter(|&i| fold_of[i] != f)
            .map(|i| (x[i].clone(), y[i]))
            .unzip();
        let m = Gbdt::fit(&tx, &ty, p);
        for i in (0..x.len()).filter(|&i| fold_of[i] == f) {
            out[i] = 1.0 / (1.0 + (-f64::from(m.margin(&x[i]))).exp());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(c: &str, d: &str, dollars: f64) -> CdnowRow {
        CdnowRow {
            customer_id: c.into(),
            date: NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap(),
            cds: 1,
            dollars,
        }
    }

    #[test]
    fn features_read_only_up_to_the_cutoff_and_order_the_sequence() {
        let cutoff = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
        let rows = vec![
            row("a", "1997-01-01", 10.0),
            row("a", "1997-01-01", 5.0),
            row("a", "1997-09-01", 20.0),
            row("a", "1997-10-05", 99.0), // after the cutoff: invisible
            row("b", "1997-03-01", 7.0),
        ];
        let ids = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let x = features(&rows, cutoff, &ids);
        let names = feature_names();
        let col = |n: &str| names.iter().position(|v| v == n).unwrap();
        assert_eq!(x[0][col("purchase_days")], 2.0);
        assert_eq!(x[0][col("dollars_total")], 35.0);
        assert_eq!(x[0][col("recency_days")], 29.0);
        assert_eq!(x[0][col("last1_dollars")], 20.0);
        assert_eq!(x[0][col("last2_dollars")], 15.0);
        assert_eq!(x[0][col("last3_dollars")], -1.0);
        assert_eq!(x[0][col("gap_mean")], 243.0);
        assert_eq!(x[1][col("gap_mean")], -1.0);
        assert!(x[2].iter().all(|v| *v == -1.0));
        assert!(x.iter().all(|r| r.len() == names.len()));
    }

    #[test]
    fn cross_fitting_scores_every_row_out_of_fold() {
        // A label that is a clean function of the first column: out-of-fold scores rank it.
        let x: Vec<Vec<f32>> = (0..600).map(|i| vec![(i % 97) as f32, 1.0]).collect();
        let y: Vec<bool> = x.iter().map(|r| r[0] > 48.0).collect();
        let p = cross_fitted(&x, &y, 4, &GbdtParams::default());
        assert!(p.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)));
        let auc = augur_model::metrics::roc_auc(&p, &y).unwrap();
        assert!(auc > 0.99, "{auc}");
    }
}
