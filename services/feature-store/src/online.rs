//! The online state: per-customer and per-product feature state in memory, updated as events
//! are applied, so online reads never rescan history.
//!
//! State is sharded (`RwLock<HashMap>` per shard) so reads of different entities and the
//! ingest path do not contend. Locks are never nested across shards.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use crate::features::{Column, CustomerState, ProductState, Value, select};
use crate::model::{Event, Hasher, Micros};

const SHARDS: usize = 32;

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}
fn lock<T>(l: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Sharded<T> {
    shards: Vec<RwLock<HashMap<Box<str>, T>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl<T> Sharded<T> {
    fn new() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }
    fn shard(&self, key: &str) -> &RwLock<HashMap<Box<str>, T>> {
        let mut h = self.hasher.build_hasher();
        key.hash(&mut h);
        let i = (std::hash::Hasher::finish(&h) as usize) % SHARDS;
        &self.shards[i]
    }
}

/// RFM scores of the population, cached for a short while.
#[derive(Debug, Clone)]
pub struct Population {
    /// Sorted values over customers with at least one order.
    pub recency: Vec<f64>,
    pub frequency: Vec<f64>,
    pub monetary: Vec<f64>,
}

impl Population {
    /// Score 1..=5 of `v` in the sorted `values` (mid-rank of ties); higher is better when
    /// `higher_better`.
    pub fn score(values: &[f64], v: f64, higher_better: bool) -> i32 {
        if values.is_empty() {
            return 0;
        }
        let below = values.partition_point(|&x| x < v);
        let upto = values.partition_point(|&x| x <= v);
        let frac = (below as f64 + (upto - below) as f64 / 2.0) / values.len() as f64;
        let frac = if higher_better { frac } else { 1.0 - frac };
        ((frac * 5.0).floor() as i32 + 1).clamp(1, 5)
    }
}

/// An entity's feature state and the sequence numbers of its stored events (the index that
/// historical reads and erasure use to fetch its events by primary key).
#[derive(Default)]
struct Entry<T> {
    state: T,
    seqs: Vec<i64>,
}

impl<T> Entry<T> {
    fn record(&mut self, seq: i64) {
        // Events are applied in sequence order, except for replays that might repeat one.
        if self.seqs.last().is_none_or(|&l| l < seq) {
            self.seqs.push(seq);
        } else if let Err(pos) = self.seqs.binary_search(&seq) {
            self.seqs.insert(pos, seq);
        }
    }
}

pub struct Online {
    customers: Sharded<Entry<CustomerState>>,
    products: Sharded<Entry<ProductState>>,
    /// Each device's orders (by stored fingerprint hash): their sequence numbers.
    devices: Sharded<Entry<()>>,
    categories: RwLock<HashMap<Arc<str>, Arc<str>>>,
    interned: RwLock<HashSet<Arc<str>>>,
    customer_index: RwLock<BTreeSet<Box<str>>>,
    product_index: RwLock<BTreeSet<Box<str>>>,
    /// Order and review ids of erased customers, so that their (anonymous) events count once.
    anonymous: Mutex<HashSet<Box<str>>>,
    applied: AtomicI64,
    hasher: Hasher,
    population: Mutex<Option<(Instant, Arc<Population>)>>,
}

impl Online {
    pub fn new(hasher: Hasher) -> Self {
        Self {
            customers: Sharded::new(),
            products: Sharded::new(),
            devices: Sharded::new(),
            categories: RwLock::new(HashMap::new()),
            interned: RwLock::new(HashSet::new()),
            customer_index: RwLock::new(BTreeSet::new()),
            product_index: RwLock::new(BTreeSet::new()),
            anonymous: Mutex::new(HashSet::new()),
            applied: AtomicI64::new(0),
            hasher,
            population: Mutex::new(None),
        }
    }

    /// Highest sequence number applied.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    pub fn set_applied(&self, seq: i64) {
        self.applied.fetch_max(seq, Ordering::AcqRel);
    }

    fn intern(&self, s: &str) -> Arc<str> {
        if let Some(a) = read(&self.interned).get(s) {
            return a.clone();
        }
        let mut w = write(&self.interned);
        if let Some(a) = w.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        w.insert(a.clone());
        a
    }

    fn with_customer<R>(&self, id: &str, seq: i64, f: impl FnOnce(&mut CustomerState) -> R) -> R {
        let (r, created) = {
            let mut shard = write(self.customers.shard(id));
            let mut created = false;
            let entry = shard.entry(id.into()).or_insert_with(|| {
                created = true;
                Entry::default()
            });
            entry.record(seq);
            (f(&mut entry.state), created)
        };
        if created {
            write(&self.customer_index).insert(id.into());
        }
        r
    }

    /// `seq` is `None` for order lines: those are found through the `order_lines` table.
    fn with_product<R>(
        &self,
        sku: &str,
        seq: Option<i64>,
        f: impl FnOnce(&mut ProductState) -> R,
    ) -> R {
        let (r, created) = {
            let mut shard = write(self.products.shard(sku));
            let mut created = false;
            let entry = shard.entry(sku.into()).or_insert_with(|| {
                created = true;
                Entry::default()
            });
            if let Some(seq) = seq {
                entry.record(seq);
            }
            (f(&mut entry.state), created)
        };
        if created {
            write(&self.product_index).insert(sku.into());
        }
        r
    }

    /// Applies one stored event (sequence number `seq`) to the online state.
    pub fn apply(&self, e: &Event, seq: i64) {
        match e {
            Event::Order(o) => {
                if !o.device_hash.is_empty() {
                    write(self.devices.shard(&o.device_hash))
                        .entry(o.device_hash.as_str().into())
                        .or_default()
                        .record(seq);
                }
                let first = if o.customer_id.is_empty() {
                    lock(&self.anonymous).insert(format!("o:{}", o.order_id).into())
                } else {
                    let mut intern = |s: &str| self.intern(s);
                    self.with_customer(&o.customer_id, seq, |c| c.apply_order(o, &mut intern))
                };
                if first {
                    for l in &o.lines {
                        self.with_product(&l.sku, None, |p| {
                            p.apply_sale(o.ts, l.quantity, l.unit_price)
                        });
                    }
                }
            }
            Event::Interaction(i) => {
                if !i.customer_id.is_empty() {
                    self.with_customer(&i.customer_id, seq, |c| c.apply_interaction(i));
                }
                if !i.sku.is_empty() {
                    self.with_product(&i.sku, Some(seq), |p| p.apply_interaction(i.ts, i.kind));
                }
            }
            Event::Review(r) => {
                let first = if r.customer_id.is_empty() {
                    lock(&self.anonymous).insert(format!("r:{}", r.review_id).into())
                } else {
                    self.with_customer(&r.customer_id, seq, |c| c.apply_review(r))
                };
                self.with_product(&r.sku, Some(seq), |p| {
                    if first {
                        p.apply_review(r.ts, r.rating);
                    }
                });
            }
            Event::Product(p) => {
                let newest = self.with_product(&p.sku, Some(seq), |s| {
                    s.apply_snapshot(p);
                    s.snapshot.as_ref().is_some_and(|x| x.ts == p.ts)
                });
                if newest {
                    let sku = self.intern(&p.sku);
                    let cat = self.intern(&p.category());
                    write(&self.categories).insert(sku, cat);
                }
            }
            Event::Customer(c) => self.with_customer(&c.customer_id, seq, |s| s.apply_customer(c)),
        }
    }

    /// Removes a customer (local erasure). Returns whether it was known.
    pub fn remove_customer(&self, id: &str) -> bool {
        let removed = write(self.customers.shard(id)).remove(id).is_some();
        write(&self.customer_index).remove(id);
        removed
    }

    /// Removes the customer whose keyed hash is `hashed` (erasure on another replica).
    pub fn remove_customer_by_hash(&self, hashed: &str) {
        let ids: Vec<Box<str>> = read(&self.customer_index)
            .iter()
            .filter(|id| self.hasher.hash(id) == hashed)
            .cloned()
            .collect();
        for id in ids {
            self.remove_customer(&id);
        }
    }

    /// An owned copy of the product -> category map (for work moved off the async workers).
    pub fn category_snapshot(&self) -> HashMap<Arc<str>, Arc<str>> {
        read(&self.categories).clone()
    }

    pub fn category_lookup(&self) -> impl Fn(&str) -> Option<Arc<str>> + '_ {
        let cats = read(&self.categories);
        move |sku: &str| cats.get(sku).cloned()
    }

    /// Customer rows for `ids` as of `now`: `None` for unknown customers.
    pub fn customer_rows(
        &self,
        ids: &[String],
        cols: &[Column],
        now: Micros,
    ) -> Vec<Option<Vec<Value>>> {
        let cats = read(&self.categories);
        let category_of = |sku: &str| cats.get(sku).cloned();
        ids.iter()
            .map(|id| {
                let shard = read(self.customers.shard(id));
                let state = &shard.get(id.as_str())?.state;
                Some(state.row(now, &category_of, cols))
            })
            .collect()
    }

    /// Product rows for `skus` as of `now`: `None` for unknown products.
    pub fn product_rows(
        &self,
        skus: &[String],
        cols: &[Column],
        now: Micros,
    ) -> Vec<Option<Vec<Value>>> {
        skus.iter()
            .map(|sku| {
                let shard = read(self.products.shard(sku));
                let state = &shard.get(sku.as_str())?.state;
                let full = state.values(now);
                Some(select(&full, cols, |_| Value::Missing))
            })
            .collect()
    }

    /// Runs `f` on a customer's state, if known.
    pub fn customer<R>(&self, id: &str, f: impl FnOnce(&CustomerState) -> R) -> Option<R> {
        read(self.customers.shard(id)).get(id).map(|e| f(&e.state))
    }

    /// Runs `f` on every customer (shard by shard).
    pub fn for_each_customer(&self, mut f: impl FnMut(&str, &CustomerState)) {
        for shard in &self.customers.shards {
            for (id, e) in read(shard).iter() {
                f(id, &e.state);
            }
        }
    }

    /// Sequence numbers of the stored events of these customers (orders, interactions,
    /// reviews, customer records), sorted.
    pub fn customer_seqs(&self, ids: &[String]) -> Vec<i64> {
        let mut out = Vec::new();
        for id in ids {
            if let Some(e) = read(self.customers.shard(id)).get(id.as_str()) {
                out.extend_from_slice(&e.seqs);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Sequence numbers of the stored orders placed from one of these devices (stored
    /// fingerprint hashes), sorted. An erasure strips the fingerprint from the stored event
    /// but not from this index: readers check the events they fetch.
    pub fn device_seqs(&self, hashes: &[&str]) -> Vec<i64> {
        let mut out = Vec::new();
        for h in hashes {
            if let Some(e) = read(self.devices.shard(h)).get(*h) {
                out.extend_from_slice(&e.seqs);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Sequence numbers of the stored events that carry one of these SKUs (interactions,
    /// reviews, product snapshots; order lines live in `order_lines`), sorted.
    pub fn product_seqs(&self, skus: &[String]) -> Vec<i64> {
        let mut out = Vec::new();
        for sku in skus {
            if let Some(e) = read(self.products.shard(sku)).get(sku.as_str()) {
                out.extend_from_slice(&e.seqs);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A page of sorted ids after `after`.
    pub fn list(&self, products: bool, after: &str, limit: usize) -> (Vec<String>, usize) {
        let index = if products {
            read(&self.product_index)
        } else {
            read(&self.customer_index)
        };
        let ids = index
            .range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))
            .take(limit)
            .map(|s| s.to_string())
            .collect();
        (ids, index.len())
    }

    pub fn counts(&self) -> (usize, usize) {
        (
            read(&self.customer_index).len(),
            read(&self.product_index).len(),
        )
    }

    /// RFM distributions over customers with orders, as of `now` (cached for 30 s).
    pub fn population(&self, now: Micros) -> Arc<Population> {
        {
            let cache = lock(&self.population);
            if let Some((at, p)) = cache.as_ref()
                && at.elapsed() < Duration::from_secs(30)
            {
                return p.clone();
            }
        }
        let mut r = Vec::new();
        let mut f = Vec::new();
        let mut m = Vec::new();
        self.for_each_customer(|_, s| {
            if let Some(rfm) = crate::profile::rfm(s, now) {
                r.push(rfm.recency_days);
                f.push(rfm.frequency as f64);
                m.push(rfm.monetary);
            }
        });
        for v in [&mut r, &mut f, &mut m] {
            v.sort_by(f64::total_cmp);
        }
        let p = Arc::new(Population {
            recency: r,
            frequency: f,
            monetary: m,
        });
        *lock(&self.population) = Some((Instant::now(), p.clone()));
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_quintiles_with_ties() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(Population::score(&v, 1.0, true), 1);
        assert_eq!(Population::score(&v, 100.0, true), 5);
        assert_eq!(Population::score(&v, 100.0, false), 1);
        assert_eq!(Population::score(&v, 50.0, true), 3);
        let ties = vec![1.0; 80]
            .into_iter()
            .chain(vec![5.0; 20])
            .collect::<Vec<_>>();
        assert_eq!(Population::score(&ties, 1.0, true), 3);
        assert_eq!(Population::score(&ties, 5.0, true), 5);
        assert_eq!(Population::score(&[], 5.0, true), 0);
    }
}
