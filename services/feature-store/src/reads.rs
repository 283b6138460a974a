//! Reads that assemble protobuf answers: streamed log scans, customer profiles, segments.

use std::collections::BTreeMap;

use augur_proto::featurestore as pb;
use tokio::sync::mpsc::Sender;
use tonic::Status;

use crate::app::App;
use crate::error::Error;
use crate::model::{self, EventKind, InteractionKind, MICROS_PER_DAY, Micros, timestamp};
use crate::profile::{self, Segment};

type Tx<T> = Sender<Result<T, Status>>;

/// Streams interactions (and, when asked, order lines as PURCHASE interactions) in event-time
/// order. Returns when the range is exhausted or the client went away.
pub async fn interactions(
    app: &App,
    start: Micros,
    end: Micros,
    kinds: &[InteractionKind],
    include_order_lines: bool,
    batch: u64,
    tx: &Tx<pb::ScanInteractionsResponse>,
) -> Result<(), Error> {
    let store = app.store();
    let mut ev_cursor: Option<(Micros, i64)> = None;
    let mut line_cursor: Option<(Micros, String, i32)> = None;
    let mut ev_buf: std::collections::VecDeque<(Micros, pb::Interaction)> = Default::default();
    let mut line_buf: std::collections::VecDeque<(Micros, pb::Interaction)> = Default::default();
    let (mut ev_done, mut lines_done) = (false, !include_order_lines);
    let mut out = Vec::with_capacity(batch as usize);
    loop {
        if ev_buf.is_empty() && !ev_done {
            let page = store
                .scan(&[EventKind::Interaction], start, end, ev_cursor, batch)
                .await?;
            ev_done = (page.len() as u64) < batch;
            if let Some(last) = page.last() {
                ev_cursor = Some((last.ts, last.seq));
            }
            for row in page {
                if let Some(pb::event::Payload::Interaction(i)) = row.decode()?.payload
                    && (kinds.is_empty()
                        || InteractionKind::from_proto(i.kind).is_some_and(|k| kinds.contains(&k)))
                {
                    ev_buf.push_back((row.ts, i));
                }
            }
            if ev_buf.is_empty() && !ev_done {
                continue;
            }
        }
        if line_buf.is_empty() && !lines_done {
            let page = store
                .scan_lines(start, end, line_cursor.clone(), batch)
                .await?;
            lines_done = (page.len() as u64) < batch;
            if let Some(last) = page.last() {
                line_cursor = Some((last.ts, last.order_id.clone(), last.line_no));
            }
            let wanted = kinds.is_empty() || kinds.contains(&InteractionKind::Purchase);
            for l in page.into_iter().filter(|_| wanted) {
                line_buf.push_back((
                    l.ts,
                    pb::Interaction {
                        event_id: format!("{}#{}", l.order_id, l.line_no),
                        customer_id: l.customer_id.unwrap_or_default(),
                        sku: l.sku,
                        kind: pb::InteractionKind::Purchase as i32,
                        query: String::new(),
                        ts: Some(timestamp(l.ts)),
                        session_id: String::new(),
                        value: l.quantity as f64,
                    },
                ));
            }
            if line_buf.is_empty() && !lines_done {
                continue;
            }
        }
        let next = match (ev_buf.front(), line_buf.front()) {
            (None, None) => break,
            (Some(_), None) => ev_buf.pop_front(),
            (None, Some(_)) => line_buf.pop_front(),
            (Some(a), Some(b)) => {
                if a.0 <= b.0 {
                    ev_buf.pop_front()
                } else {
                    line_buf.pop_front()
                }
            }
        };
        if let Some((_, i)) = next {
            out.push(i);
        }
        if out.len() as u64 >= batch {
            let msg = pb::ScanInteractionsResponse {
                interactions: std::mem::take(&mut out),
            };
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(());
            }
        }
    }
    if !out.is_empty() {
        let _ = tx
            .send(Ok(pb::ScanInteractionsResponse { interactions: out }))
            .await;
    }
    Ok(())
}

fn stored_to_pb(row: crate::storage::StoredEvent) -> Result<pb::StoredEvent, Error> {
    Ok(pb::StoredEvent {
        sequence: row.seq.max(0) as u64,
        event: Some(row.decode()?),
        ingested_at: Some(timestamp(row.ingested_at)),
    })
}

/// Sends events already read, `batch` per message.
async fn send_events(
    events: Vec<pb::StoredEvent>,
    batch: u64,
    tx: &Tx<pb::ScanEventsResponse>,
) -> Result<(), Error> {
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let msg = pb::ScanEventsResponse {
            events: events.by_ref().take(batch as usize).collect(),
        };
        if tx.send(Ok(msg)).await.is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// The rows of a lookup (by key or by sequence numbers) that pass every filter of `f`,
/// decoded. `devices`: the stored hashes a device filter accepts; the device is checked on
/// the decoded event, since an erasure strips it there but not from the online index.
fn matching(
    rows: Vec<crate::storage::StoredEvent>,
    f: &EventFilter<'_>,
    devices: &[String],
) -> Result<Vec<pb::StoredEvent>, Error> {
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        if r.ts < f.start
            || r.ts >= f.end
            || !f.kinds.contains(&r.kind)
            || f.customer
                .is_some_and(|c| r.customer_id.as_deref() != Some(c))
        {
            continue;
        }
        let e = stored_to_pb(r)?;
        let device_ok = f.device.is_none()
            || matches!(
                e.event.as_ref().and_then(|e| e.payload.as_ref()),
                Some(pb::event::Payload::Order(o)) if devices.contains(&o.device_fingerprint)
            );
        if device_ok {
            out.push(e);
        }
    }
    Ok(out)
}

/// Which events a scan reads.
#[derive(Debug, Clone, Copy)]
pub struct EventFilter<'a> {
    pub kinds: &'a [EventKind],
    pub start: Micros,
    pub end: Micros,
    pub customer: Option<&'a str>,
    pub order: Option<&'a str>,
    /// A device fingerprint, raw or as stored (its keyed hash).
    pub device: Option<&'a str>,
}

/// Streams raw events in event-time order.
pub async fn events(
    app: &App,
    f: EventFilter<'_>,
    batch: u64,
    tx: &Tx<pb::ScanEventsResponse>,
) -> Result<(), Error> {
    let EventFilter {
        kinds,
        start,
        end,
        customer,
        order,
        device,
    } = f;
    // The stored hashes a device filter accepts: the raw fingerprint's and the value itself.
    let devices: Vec<String> = device
        .map(|d| vec![app.hasher().hash(d), d.to_string()])
        .unwrap_or_default();
    if let Some(id) = order {
        // One order's events: a lookup by key on the (kind, event_key) index.
        let rows = if kinds.contains(&EventKind::Order) {
            app.store().order_events(id).await?
        } else {
            Vec::new()
        };
        return send_events(matching(rows, &f, &devices)?, batch, tx).await;
    }
    // One device's orders or one customer's events: found through the sequence numbers the
    // online state keeps.
    let seqs = if device.is_some() {
        let hashes: Vec<&str> = devices.iter().map(String::as_str).collect();
        Some(app.online().device_seqs(&hashes))
    } else {
        customer.map(|id| app.online().customer_seqs(&[id.to_string()]))
    };
    if let Some(seqs) = seqs {
        let rows = app
            .store()
            .events_by_seq(&seqs, Some(kinds), end.saturating_sub(1))
            .await?;
        return send_events(matching(rows, &f, &devices)?, batch, tx).await;
    }
    let mut cursor = None;
    loop {
        let page = app.store().scan(kinds, start, end, cursor, batch).await?;
        let done = (page.len() as u64) < batch;
        if let Some(last) = page.last() {
            cursor = Some((last.ts, last.seq));
        }
        let events = page
            .into_iter()
            .map(stored_to_pb)
            .collect::<Result<Vec<_>, _>>()?;
        if !events.is_empty()
            && tx
                .send(Ok(pb::ScanEventsResponse { events }))
                .await
                .is_err()
        {
            return Ok(());
        }
        if done {
            return Ok(());
        }
    }
}

/// The RFM segment of each customer as of `now` (`None`: unknown), in order; the same segment
/// [`profile()`] gives, against one population snapshot.
pub fn segments_of(app: &App, ids: &[String], now: Micros) -> Vec<Option<Segment>> {
    let online = app.online();
    let pop = online.population(now);
    ids.iter()
        .map(|id| online.customer(id, |s| profile::scores(s, now, &pop).3))
        .collect()
}

/// The behaviour profile of a customer, or `None` when unknown.
pub fn profile(app: &App, id: &str, now: Micros) -> Option<pb::CustomerProfile> {
    let online = app.online();
    let pop = online.population(now);
    let category_of = online.category_lookup();
    online.customer(id, |s| {
        let (r, f, m, segment) = profile::scores(s, now, &pop);
        let rfm = profile::rfm(s, now);
        let full = s.values(now, &category_of);
        let value = |name: &str| {
            crate::features::CUSTOMER_FEATURES
                .iter()
                .position(|d| d.name == name)
                .and_then(|i| full.get(i).cloned())
        };
        let f64_of = |name: &str| match value(name) {
            Some(crate::features::Value::F64(v)) => Some(v),
            _ => None,
        };
        let i64_of = |name: &str| match value(name) {
            Some(crate::features::Value::I64(v)) => v,
            _ => 0,
        };
        let mut months = profile::monthly_timeline(s, now);
        let timeline: Vec<pb::ActivityPeriod> = {
            let keys: Vec<Micros> = months.keys().rev().take(12).copied().collect();
            keys.into_iter()
                .map(|k| {
                    let (orders, revenue, reviews) = months.remove(&k).unwrap_or_default();
                    pb::ActivityPeriod {
                        month: Some(timestamp(k)),
                        orders,
                        revenue,
                        interactions: s.interactions_between(k, next_month(k)),
                        reviews,
                    }
                })
                .collect()
        };
        let live: Vec<_> = s
            .orders
            .iter()
            .filter(|o| o.ts <= now && o.status != model::OrderStatus::Cancelled)
            .collect();
        let record = s.record.as_ref();
        let last_activity = [
            live.last().map(|o| o.ts),
            s.last_interaction.filter(|&t| t <= now),
            s.reviews.iter().map(|r| r.ts).filter(|&t| t <= now).max(),
        ]
        .into_iter()
        .flatten()
        .max();
        pb::CustomerProfile {
            customer_id: id.to_string(),
            segment: segment.to_proto() as i32,
            recency_score: r,
            frequency_score: f,
            monetary_score: m,
            lifetime_value: rfm.map_or(0.0, |x| x.monetary),
            orders: rfm.map_or(0, |x| x.frequency),
            average_order_value: f64_of("avg_order_value").unwrap_or(0.0),
            recency_days: rfm.map(|x| x.recency_days),
            interpurchase_mean_days: f64_of("interpurchase_mean_days"),
            first_order: live.first().map(|o| timestamp(o.ts)),
            last_order: live.last().map(|o| timestamp(o.ts)),
            last_activity: last_activity.map(timestamp),
            favourite_categories: profile::favourite_categories(s, now, &category_of)
                .into_iter()
                .take(5)
                .map(|(category, share, units)| pb::CategoryShare {
                    category,
                    share,
                    units,
                })
                .collect(),
            timeline,
            country: record.map(|r| r.country.clone()).unwrap_or_default(),
            signup_ts: record.and_then(|r| r.signup_ts).map(timestamp),
            attributes: record
                .map(|r| r.attributes.clone().into_iter().collect())
                .unwrap_or_default(),
            reviews: i64_of("review_count"),
            mean_rating: f64_of("review_mean_rating"),
            refunds: i64_of("refund_count"),
            chargebacks: i64_of("chargeback_count"),
        }
    })
}

fn next_month(month_start: Micros) -> Micros {
    // 32 days after the first of a month is always in the next month.
    profile::month_start(month_start + 32 * MICROS_PER_DAY)
}

/// Customers per segment over all known customers.
pub fn segments(app: &App, now: Micros) -> pb::ListSegmentsResponse {
    let online = app.online();
    let pop = online.population(now);
    let mut acc: BTreeMap<Segment, (u64, f64, f64)> = BTreeMap::new();
    let mut customers = 0u64;
    online.for_each_customer(|_, s| {
        customers += 1;
        let (_, _, _, seg) = profile::scores(s, now, &pop);
        let e = acc.entry(seg).or_default();
        e.0 += 1;
        if let Some(x) = profile::rfm(s, now) {
            e.1 += x.monetary;
            e.2 += x.recency_days;
        }
    });
    pb::ListSegmentsResponse {
        segments: acc
            .into_iter()
            .map(|(seg, (n, revenue, recency))| pb::SegmentSummary {
                segment: seg.to_proto() as i32,
                customers: n,
                revenue,
                mean_recency_days: if seg == Segment::NoPurchase || n == 0 {
                    0.0
                } else {
                    recency / n as f64
                },
            })
            .collect(),
        customers,
    }
}
