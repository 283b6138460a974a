//! Behaviour analysis: RFM scores and segments, favourite categories, activity timeline.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use crate::features::CustomerState;
use crate::model::{MICROS_PER_DAY, Micros, OrderStatus};
use crate::online::Population;

/// Recency (days), frequency (orders) and monetary value (sum of totals) as of `now`; `None`
/// without orders.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rfm {
    pub recency_days: f64,
    pub frequency: i64,
    pub monetary: f64,
}

pub fn rfm(s: &CustomerState, now: Micros) -> Option<Rfm> {
    let mut last = None;
    let mut frequency = 0;
    let mut monetary = 0.0;
    for o in s
        .orders
        .iter()
        .filter(|o| o.ts <= now && o.status != OrderStatus::Cancelled)
    {
        frequency += 1;
        monetary += o.total;
        last = Some(o.ts);
    }
    last.map(|l| Rfm {
        recency_days: (now - l) as f64 / MICROS_PER_DAY as f64,
        frequency,
        monetary,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Champions,
    Loyal,
    PotentialLoyalist,
    New,
    Promising,
    NeedsAttention,
    AboutToSleep,
    AtRisk,
    CannotLose,
    Hibernating,
    Lost,
    NoPurchase,
}

impl Segment {
    /// The usual RFM grid over the recency score `r` and frequency score `f` (1..=5).
    pub fn from_scores(r: i32, f: i32) -> Self {
        match (r, f) {
            (0, _) | (_, 0) => Self::NoPurchase,
            (5, 4..=5) => Self::Champions,
            (3..=4, 4..=5) => Self::Loyal,
            (4..=5, 2..=3) => Self::PotentialLoyalist,
            (5, 1) => Self::New,
            (4, 1) => Self::Promising,
            (3, 3) => Self::NeedsAttention,
            (3, 1..=2) => Self::AboutToSleep,
            (1..=2, 5) => Self::CannotLose,
            (1..=2, 3..=4) => Self::AtRisk,
            (1, 1) => Self::Lost,
            _ => Self::Hibernating,
        }
    }

    pub fn to_proto(self) -> augur_proto::featurestore::Segment {
        use augur_proto::featurestore::Segment as P;
        match self {
            Self::Champions => P::Champions,
            Self::Loyal => P::Loyal,
            Self::PotentialLoyalist => P::PotentialLoyalist,
            Self::New => P::New,
            Self::Promising => P::Promising,
            Self::NeedsAttention => P::NeedsAttention,
            Self::AboutToSleep => P::AboutToSleep,
            Self::AtRisk => P::AtRisk,
            Self::CannotLose => P::CannotLose,
            Self::Hibernating => P::Hibernating,
            Self::Lost => P::Lost,
            Self::NoPurchase => P::NoPurchase,
        }
    }
}

/// RFM scores (0 without orders) and the segment.
pub fn scores(s: &CustomerState, now: Micros, pop: &Population) -> (i32, i32, i32, Segment) {
    match rfm(s, now) {
        None => (0, 0, 0, Segment::NoPurchase),
        Some(x) => {
            let r = Population::score(&pop.recency, x.recency_days, false);
            let f = Population::score(&pop.frequency, x.frequency as f64, true);
            let m = Population::score(&pop.monetary, x.monetary, true);
            (r, f, m, Segment::from_scores(r, f))
        }
    }
}

/// Share of units per category, largest first.
pub fn favourite_categories(
    s: &CustomerState,
    now: Micros,
    category_of: &impl Fn(&str) -> Option<Arc<str>>,
) -> Vec<(String, f64, i64)> {
    let mut units: BTreeMap<String, i64> = BTreeMap::new();
    let mut total = 0i64;
    for o in s
        .orders
        .iter()
        .filter(|o| o.ts <= now && o.status != OrderStatus::Cancelled)
    {
        for (sku, q) in &o.lines {
            let cat =
                category_of(sku).map_or_else(|| "(uncategorised)".to_string(), |c| c.to_string());
            *units.entry(cat).or_default() += q;
            total += q;
        }
    }
    let mut v: Vec<(String, f64, i64)> = units
        .into_iter()
        .map(|(c, u)| {
            (
                c,
                if total > 0 {
                    u as f64 / total as f64
                } else {
                    0.0
                },
                u,
            )
        })
        .collect();
    v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Activity per calendar month: (first day of month in micros, orders, revenue, reviews).
/// Interactions are counted separately by the caller because only daily counts are kept.
pub fn monthly_timeline(s: &CustomerState, now: Micros) -> BTreeMap<Micros, (i64, f64, i64)> {
    let mut months: BTreeMap<Micros, (i64, f64, i64)> = BTreeMap::new();
    for o in s
        .orders
        .iter()
        .filter(|o| o.ts <= now && o.status != OrderStatus::Cancelled)
    {
        let e = months.entry(month_start(o.ts)).or_default();
        e.0 += 1;
        e.1 += o.total;
    }
    for r in s.reviews.iter().filter(|r| r.ts <= now) {
        months.entry(month_start(r.ts)).or_default().2 += 1;
    }
    months
}

/// First instant of the UTC calendar month containing `ts`.
pub fn month_start(ts: Micros) -> Micros {
    let dt: DateTime<Utc> = Utc
        .timestamp_micros(ts)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    Utc.with_ymd_and_hms(dt.year(), dt.month(), 1, 0, 0, 0)
        .single()
        .map_or(0, |d| d.timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_grid() {
        assert_eq!(Segment::from_scores(5, 5), Segment::Champions);
        assert_eq!(Segment::from_scores(1, 1), Segment::Lost);
        assert_eq!(Segment::from_scores(2, 1), Segment::Hibernating);
        assert_eq!(Segment::from_scores(1, 5), Segment::CannotLose);
        assert_eq!(Segment::from_scores(2, 3), Segment::AtRisk);
        assert_eq!(Segment::from_scores(5, 1), Segment::New);
        assert_eq!(Segment::from_scores(0, 0), Segment::NoPurchase);
        // Every score pair maps to a segment.
        for r in 1..=5 {
            for f in 1..=5 {
                assert_ne!(Segment::from_scores(r, f), Segment::NoPurchase);
            }
        }
    }

    #[test]
    fn month_start_is_first_of_month() {
        // 1997-03-17T12:00:00Z
        let ts = 858_600_000 * 1_000_000;
        let m = month_start(ts);
        // 1997-03-01T00:00:00Z
        assert_eq!(m, 857_174_400 * 1_000_000);
    }
}
