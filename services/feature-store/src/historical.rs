//! Point-in-time correct features: the state of each entity is rebuilt from its stored events
//! at or before the requested `as_of`, with the same code that maintains the online state, so
//! training and serving cannot disagree and nothing from the future leaks in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::app::group_rows;
use crate::error::Error;
use crate::features::{Column, CustomerState, ProductState, Value, select};
use crate::model::{self, Event, Micros};
use crate::online::Online;
use crate::storage::{LineRow, Store, StoredEvent};

fn decode(row: &StoredEvent) -> Result<Option<Event>, Error> {
    Ok(model::from_stored(&row.decode()?))
}

/// Runs a replay on the blocking pool: it decodes and applies every event of up to a batch of
/// entities (seconds of CPU for a training read), which must not stall an async worker that also
/// serves online reads.
async fn off_workers<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("historical replay task: {e}")))?
}

/// Customer rows as of each row's time. Product categories come from the current catalogue.
pub async fn customers(
    store: &Store,
    online: &Online,
    rows: &[(String, Micros)],
    cols: &[Column],
) -> Result<Vec<Option<Vec<Value>>>, Error> {
    let ids: Vec<String> = group_rows(rows).keys().map(|s| s.to_string()).collect();
    let up_to = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let events = store
        .events_by_seq(&online.customer_seqs(&ids), None, up_to)
        .await?;
    let categories = online.category_snapshot();
    let (rows, cols) = (rows.to_vec(), cols.to_vec());
    off_workers(move || replay_customers(&events, &rows, &cols, &categories)).await
}

fn replay_customers(
    events: &[StoredEvent],
    rows: &[(String, Micros)],
    cols: &[Column],
    categories: &HashMap<Arc<str>, Arc<str>>,
) -> Result<Vec<Option<Vec<Value>>>, Error> {
    let by_entity = group_rows(rows);
    let mut per: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for e in events {
        if let Some(c) = e.customer_id.as_deref() {
            per.entry(c).or_default().push(e);
        }
    }
    let category_of = |sku: &str| categories.get(sku).cloned();
    let mut out: Vec<Option<Vec<Value>>> = vec![None; rows.len()];
    let mut intern = |s: &str| Arc::<str>::from(s);
    for (id, mut idx) in by_entity {
        idx.sort_by_key(|&i| rows[i].1);
        let evs = per.get(id).map(Vec::as_slice).unwrap_or(&[]);
        let mut state = CustomerState::default();
        let mut next = 0;
        for i in idx {
            let as_of = rows[i].1;
            while next < evs.len() && evs[next].ts <= as_of {
                match decode(evs[next])? {
                    Some(Event::Order(o)) => {
                        state.apply_order(&o, &mut intern);
                    }
                    Some(Event::Interaction(x)) => state.apply_interaction(&x),
                    Some(Event::Review(r)) => {
                        state.apply_review(&r);
                    }
                    Some(Event::Customer(c)) => state.apply_customer(&c),
                    Some(Event::Product(_)) | None => {}
                }
                next += 1;
            }
            if !state.unknown_at(as_of) {
                out[i] = Some(state.row(as_of, &category_of, cols));
            }
        }
    }
    Ok(out)
}

/// Product rows as of each row's time.
pub async fn products(
    store: &Store,
    online: &Online,
    rows: &[(String, Micros)],
    cols: &[Column],
) -> Result<Vec<Option<Vec<Value>>>, Error> {
    let skus: Vec<String> = group_rows(rows).keys().map(|s| s.to_string()).collect();
    let up_to = rows.iter().map(|r| r.1).max().unwrap_or(0);
    let events = store
        .events_by_seq(&online.product_seqs(&skus), None, up_to)
        .await?;
    let lines = store.sku_lines(&skus, up_to).await?;
    let (rows, cols) = (rows.to_vec(), cols.to_vec());
    off_workers(move || replay_products(&events, &lines, &rows, &cols)).await
}

fn replay_products(
    events: &[StoredEvent],
    lines: &[LineRow],
    rows: &[(String, Micros)],
    cols: &[Column],
) -> Result<Vec<Option<Vec<Value>>>, Error> {
    let by_entity = group_rows(rows);

    /// One change to a product's state, in time order.
    enum Change<'a> {
        Event(&'a StoredEvent),
        Sale { quantity: i64, unit_price: f64 },
    }
    let mut per: HashMap<String, Vec<(Micros, Change<'_>)>> = HashMap::new();
    for e in events {
        if let Some(sku) = &e.sku {
            per.entry(sku.clone())
                .or_default()
                .push((e.ts, Change::Event(e)));
        }
    }
    for l in lines {
        per.entry(l.sku.clone()).or_default().push((
            l.ts,
            Change::Sale {
                quantity: l.quantity,
                unit_price: l.unit_price,
            },
        ));
    }
    for v in per.values_mut() {
        v.sort_by_key(|(ts, _)| *ts);
    }

    let mut out: Vec<Option<Vec<Value>>> = vec![None; rows.len()];
    for (sku, mut idx) in by_entity {
        idx.sort_by_key(|&i| rows[i].1);
        let changes = per.get(sku).map(Vec::as_slice).unwrap_or(&[]);
        let mut state = ProductState::default();
        let mut reviews: HashSet<String> = HashSet::new();
        let mut next = 0;
        for i in idx {
            let as_of = rows[i].1;
            while next < changes.len() && changes[next].0 <= as_of {
                let (ts, change) = &changes[next];
                match change {
                    Change::Sale {
                        quantity,
                        unit_price,
                    } => state.apply_sale(*ts, *quantity, *unit_price),
                    Change::Event(e) => match decode(e)? {
                        Some(Event::Product(p)) => state.apply_snapshot(&p),
                        Some(Event::Interaction(x)) => state.apply_interaction(x.ts, x.kind),
                        Some(Event::Review(r)) if reviews.insert(r.review_id.clone()) => {
                            state.apply_review(r.ts, r.rating);
                        }
                        _ => {}
                    },
                }
                next += 1;
            }
            if !state.unknown_at(as_of) {
                out[i] = Some(select(&state.values(as_of), cols, |_| Value::Missing));
            }
        }
    }
    Ok(out)
}
