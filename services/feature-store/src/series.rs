//! Demand series: units and revenue per SKU (optionally per store / channel) per day or ISO
//! week, zero-filled, with the price and promotion flag of each period.

use std::collections::{BTreeMap, HashMap};

use crate::error::Error;
use crate::model::{self, Event, MICROS_PER_DAY, Micros};
use crate::online::Online;
use crate::storage::Store;

/// Most points one request may return (series x periods).
pub const MAX_POINTS: usize = 5_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Day,
    Week,
}

impl Granularity {
    /// Period index of a day (days since the epoch). Weeks start on Monday; 1970-01-01 was a
    /// Thursday, so Monday-based weeks are offset by 3 days.
    pub fn period_of_day(self, day: i64) -> i64 {
        match self {
            Self::Day => day,
            Self::Week => (day + 3).div_euclid(7),
        }
    }
    /// First day of a period.
    pub fn first_day(self, period: i64) -> i64 {
        match self {
            Self::Day => period,
            Self::Week => period * 7 - 3,
        }
    }
    pub fn days(self) -> i64 {
        match self {
            Self::Day => 1,
            Self::Week => 7,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SeriesQuery {
    pub skus: Vec<String>,
    pub granularity: Granularity,
    pub start: Option<Micros>,
    pub end: Option<Micros>,
    pub by_store: bool,
    pub by_channel: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub period_start: Micros,
    pub units: f64,
    pub revenue: f64,
    pub price: Option<f64>,
    pub promotion: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SeriesOut {
    pub sku: String,
    pub store_id: String,
    pub channel: String,
    pub points: Vec<Point>,
    pub stock: Option<i64>,
}

#[derive(Default, Clone, Copy)]
struct Agg {
    units: f64,
    revenue: f64,
    promotion: bool,
}

/// Price history of a SKU: (ts, price, on_promotion), sorted by time.
type PriceHistory = Vec<(Micros, f64, bool)>;

pub async fn build(
    store: &Store,
    online: &Online,
    q: &SeriesQuery,
) -> Result<Vec<SeriesOut>, Error> {
    if let (Some(s), Some(e)) = (q.start, q.end)
        && e <= s
    {
        return Err(Error::invalid("end", "must be after start"));
    }
    let start = q.start.unwrap_or(0);
    let end = q.end.unwrap_or(i64::MAX);
    let rows = store
        .daily_sales(&q.skus, start, end, q.by_store, q.by_channel)
        .await?;

    // Requested SKUs must be known (catalogue or sales).
    for (i, sku) in q.skus.iter().enumerate() {
        let sold = rows.iter().any(|r| &r.sku == sku);
        let known = online
            .product_rows(std::slice::from_ref(sku), &[], 0)
            .first()
            .is_some_and(Option::is_some);
        if !sold && !known {
            return Err(Error::NotFound(format!("skus[{i}]: unknown SKU {sku:?}")));
        }
    }

    let g = q.granularity;
    let first_day = match q.start {
        Some(s) => s.div_euclid(MICROS_PER_DAY),
        None => match rows.iter().map(|r| r.day).min() {
            Some(d) => d,
            None => return Ok(empty(q)),
        },
    };
    let last_day = match q.end {
        // `end` is exclusive.
        Some(e) => (e - 1).div_euclid(MICROS_PER_DAY),
        None => rows.iter().map(|r| r.day).max().unwrap_or(first_day),
    };
    let p0 = g.period_of_day(first_day);
    let p1 = g.period_of_day(last_day);
    let periods = (p1 - p0 + 1).max(0) as usize;

    let mut series: BTreeMap<(String, String, String), BTreeMap<i64, Agg>> = BTreeMap::new();
    for sku in &q.skus {
        if !q.by_store && !q.by_channel {
            series
                .entry((sku.clone(), String::new(), String::new()))
                .or_default();
        }
    }
    for r in &rows {
        let a = series
            .entry((r.sku.clone(), r.store_id.clone(), r.channel.clone()))
            .or_default()
            .entry(g.period_of_day(r.day))
            .or_default();
        a.units += r.units;
        a.revenue += r.revenue;
        a.promotion |= r.promotion;
    }
    if series.len().saturating_mul(periods) > MAX_POINTS {
        return Err(Error::invalid(
            "start",
            format!(
                "{} series x {periods} periods is over the limit of {MAX_POINTS} points; narrow the range or the SKUs",
                series.len()
            ),
        ));
    }

    let skus: Vec<String> = {
        let mut v: Vec<String> = series.keys().map(|k| k.0.clone()).collect();
        v.dedup();
        v
    };
    let mut prices: HashMap<String, PriceHistory> = HashMap::new();
    let snapshots = store
        .events_by_seq(
            &online.product_seqs(&skus),
            Some(&[crate::model::EventKind::Product]),
            i64::MAX,
        )
        .await?;
    for row in snapshots {
        if let Some(Event::Product(p)) = model::from_stored(&row.decode()?) {
            prices
                .entry(p.sku.clone())
                .or_default()
                .push((p.ts, p.price, p.on_promotion));
        }
    }

    let stock_col = [crate::features::Column::Index(1)];
    let mut out = Vec::with_capacity(series.len());
    for ((sku, store_id, channel), aggs) in series {
        let history = prices.get(&sku).map(Vec::as_slice).unwrap_or(&[]);
        let mut points = Vec::with_capacity(periods);
        for p in p0..=p1 {
            let from = g.first_day(p) * MICROS_PER_DAY;
            let to = from + g.days() * MICROS_PER_DAY;
            let a = aggs.get(&p).copied().unwrap_or_default();
            // Snapshot in effect at the start of the period, and any during it.
            let at_start = history.iter().rev().find(|h| h.0 <= from);
            let during = history.iter().filter(|h| h.0 > from && h.0 < to);
            let list_price = history.iter().rev().find(|h| h.0 < to).map(|h| h.1);
            let promo_listed = at_start.is_some_and(|h| h.2) || during.clone().any(|h| h.2);
            points.push(Point {
                period_start: from,
                units: a.units,
                revenue: a.revenue,
                price: if a.units > 0.0 {
                    Some(a.revenue / a.units)
                } else {
                    list_price
                },
                promotion: a.promotion || promo_listed,
            });
        }
        let stock = online
            .product_rows(
                std::slice::from_ref(&sku),
                &stock_col,
                crate::app::now_micros(),
            )
            .into_iter()
            .next()
            .flatten()
            .and_then(|v| match v.first() {
                Some(crate::features::Value::I64(s)) => Some(*s),
                _ => None,
            });
        out.push(SeriesOut {
            sku,
            store_id,
            channel,
            points,
            stock,
        });
    }
    Ok(out)
}

/// Requested SKUs that exist but never sold in the range: series without points.
fn empty(q: &SeriesQuery) -> Vec<SeriesOut> {
    q.skus
        .iter()
        .map(|sku| SeriesOut {
            sku: sku.clone(),
            store_id: String::new(),
            channel: String::new(),
            points: Vec::new(),
            stock: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks_start_on_monday() {
        let g = Granularity::Week;
        // 1970-01-05 (day 4) was a Monday.
        assert_eq!(g.first_day(g.period_of_day(4)), 4);
        assert_eq!(g.first_day(g.period_of_day(10)), 4);
        assert_eq!(g.first_day(g.period_of_day(11)), 11);
        // 1970-01-01 (Thursday) belongs to the week starting Monday 1969-12-29 (day -3).
        assert_eq!(g.first_day(g.period_of_day(0)), -3);
    }
}
