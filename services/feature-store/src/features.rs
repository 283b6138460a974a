//! Feature definitions and the per-entity state they are computed from.
//!
//! The same code serves online and historical reads: [`CustomerState`] and [`ProductState`] are
//! updated one event at a time (`apply_*`), and `values(now)` computes every feature of the view
//! as of `now`. Online, the state holds every event ingested so far and `now` is the wall clock;
//! historically, the state is rebuilt from the events at or before `as_of` and `now = as_of`.
//! Applying events is order-independent (sums, maxima, sorted inserts), so late events are fine.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::model::{
    Customer, INTERACTION_KINDS, Interaction, InteractionKind, MICROS_PER_DAY, Micros, Order,
    OrderStatus, Product, Review,
};

/// A feature value; `Missing` is explicit, never 0.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    F64(f64),
    I64(i64),
    Str(String),
    Bool(bool),
    /// The entity exists but the feature has no value.
    Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureType {
    F64,
    I64,
    Str,
    Bool,
}

#[derive(Debug, Clone, Copy)]
pub struct FeatureDef {
    pub name: &'static str,
    pub ty: FeatureType,
    pub description: &'static str,
}

const fn def(name: &'static str, ty: FeatureType, description: &'static str) -> FeatureDef {
    FeatureDef {
        name,
        ty,
        description,
    }
}

use FeatureType::{Bool, F64, I64, Str};

/// Prefix of the dynamic customer-attribute features (`attr_tier`, ...).
pub const ATTRIBUTE_PREFIX: &str = "attr_";

/// Orders of the recent order sequence in the customer view (`order_<k>_days_ago`, `_total`,
/// `_units` for k = 1 (the newest) to this).
pub const ORDER_SEQUENCE_STEPS: usize = 5;

/// The customer view, in column order. Windows over orders are exact (`ts > now - N days`);
/// windows over interactions count whole UTC days, today included.
pub const CUSTOMER_FEATURES: &[FeatureDef] = &[
    def(
        "recency_days",
        F64,
        "Days since the last order (missing without orders).",
    ),
    def(
        "frequency_30d",
        I64,
        "Orders in the last 30 days (cancelled orders excluded).",
    ),
    def("frequency_90d", I64, "Orders in the last 90 days."),
    def("frequency_365d", I64, "Orders in the last 365 days."),
    def("frequency_lifetime", I64, "Orders ever."),
    def(
        "monetary_30d",
        F64,
        "Sum of order totals in the last 30 days.",
    ),
    def(
        "monetary_90d",
        F64,
        "Sum of order totals in the last 90 days.",
    ),
    def(
        "monetary_365d",
        F64,
        "Sum of order totals in the last 365 days.",
    ),
    def("monetary_lifetime", F64, "Sum of order totals ever."),
    def(
        "avg_order_value",
        F64,
        "Lifetime monetary / lifetime frequency (missing without orders).",
    ),
    def(
        "interpurchase_mean_days",
        F64,
        "Mean gap between consecutive orders, days (needs 2 orders).",
    ),
    def(
        "interpurchase_std_days",
        F64,
        "Sample standard deviation of the gaps, days (needs 3 orders).",
    ),
    def(
        "days_since_first_order",
        F64,
        "Days since the first order (missing without orders).",
    ),
    def("units_lifetime", I64, "Units bought ever."),
    def(
        "distinct_categories",
        I64,
        "Distinct product categories bought ever.",
    ),
    def("views_7d", I64, "VIEW interactions in the last 7 days."),
    def("views_30d", I64, "VIEW interactions in the last 30 days."),
    def("clicks_7d", I64, "CLICK interactions in the last 7 days."),
    def("clicks_30d", I64, "CLICK interactions in the last 30 days."),
    def(
        "add_to_cart_7d",
        I64,
        "ADD_TO_CART interactions in the last 7 days.",
    ),
    def(
        "add_to_cart_30d",
        I64,
        "ADD_TO_CART interactions in the last 30 days.",
    ),
    def(
        "purchases_7d",
        I64,
        "PURCHASE interactions in the last 7 days.",
    ),
    def(
        "purchases_30d",
        I64,
        "PURCHASE interactions in the last 30 days.",
    ),
    def(
        "searches_7d",
        I64,
        "SEARCH interactions in the last 7 days.",
    ),
    def(
        "searches_30d",
        I64,
        "SEARCH interactions in the last 30 days.",
    ),
    def(
        "wishlists_30d",
        I64,
        "WISHLIST interactions in the last 30 days.",
    ),
    def(
        "interactions_lifetime",
        I64,
        "Interactions of any kind ever.",
    ),
    def(
        "days_since_last_interaction",
        F64,
        "Days since the last interaction (missing without any).",
    ),
    def(
        "cart_abandon_rate_30d",
        F64,
        "Share of sessions of the last 30 days with an ADD_TO_CART and no PURCHASE (missing without such sessions).",
    ),
    def("review_count", I64, "Reviews written ever."),
    def("reviews_30d", I64, "Reviews written in the last 30 days."),
    def(
        "review_mean_rating",
        F64,
        "Mean rating of the customer's reviews (missing without reviews).",
    ),
    def(
        "negative_review_share",
        F64,
        "Share of the customer's reviews rated 1 or 2 (missing without reviews).",
    ),
    def(
        "refund_count",
        I64,
        "Orders whose latest status is REFUNDED.",
    ),
    def(
        "chargeback_count",
        I64,
        "Orders whose latest status is CHARGED_BACK.",
    ),
    def(
        "tenure_days",
        F64,
        "Days since signup (or since the first event when signup is unknown).",
    ),
    def(
        "country",
        Str,
        "Country of the customer record (missing when unknown).",
    ),
    def(
        "order_1_days_ago",
        F64,
        "Days since the most recent order (missing with fewer than 1 orders): the recent order sequence.",
    ),
    def(
        "order_1_total",
        F64,
        "Total of the most recent order (missing with fewer than 1 orders).",
    ),
    def(
        "order_1_units",
        I64,
        "Units of the most recent order (missing with fewer than 1 orders).",
    ),
    def(
        "order_2_days_ago",
        F64,
        "Days since the 2nd most recent order (missing with fewer than 2 orders): the recent order sequence.",
    ),
    def(
        "order_2_total",
        F64,
        "Total of the 2nd most recent order (missing with fewer than 2 orders).",
    ),
    def(
        "order_2_units",
        I64,
        "Units of the 2nd most recent order (missing with fewer than 2 orders).",
    ),
    def(
        "order_3_days_ago",
        F64,
        "Days since the 3rd most recent order (missing with fewer than 3 orders): the recent order sequence.",
    ),
    def(
        "order_3_total",
        F64,
        "Total of the 3rd most recent order (missing with fewer than 3 orders).",
    ),
    def(
        "order_3_units",
        I64,
        "Units of the 3rd most recent order (missing with fewer than 3 orders).",
    ),
    def(
        "order_4_days_ago",
        F64,
        "Days since the 4th most recent order (missing with fewer than 4 orders): the recent order sequence.",
    ),
    def(
        "order_4_total",
        F64,
        "Total of the 4th most recent order (missing with fewer than 4 orders).",
    ),
    def(
        "order_4_units",
        I64,
        "Units of the 4th most recent order (missing with fewer than 4 orders).",
    ),
    def(
        "order_5_days_ago",
        F64,
        "Days since the 5th most recent order (missing with fewer than 5 orders): the recent order sequence.",
    ),
    def(
        "order_5_total",
        F64,
        "Total of the 5th most recent order (missing with fewer than 5 orders).",
    ),
    def(
        "order_5_units",
        I64,
        "Units of the 5th most recent order (missing with fewer than 5 orders).",
    ),
];

/// The product view. Windows count whole UTC days, today included.
pub const PRODUCT_FEATURES: &[FeatureDef] = &[
    def("price", F64, "List price of the newest catalogue snapshot."),
    def(
        "stock",
        I64,
        "Stock level of the newest catalogue snapshot.",
    ),
    def("active", Bool, "Whether the product is active (sellable)."),
    def("on_promotion", Bool, "Whether a promotion is running."),
    def("category", Str, "Category path, \" > \"-separated."),
    def("brand", Str, "Brand."),
    def("units_7d", I64, "Units sold in the last 7 days."),
    def("units_28d", I64, "Units sold in the last 28 days."),
    def("revenue_7d", F64, "Revenue in the last 7 days."),
    def("revenue_28d", F64, "Revenue in the last 28 days."),
    def(
        "orders_28d",
        I64,
        "Orders containing the product in the last 28 days.",
    ),
    def("units_lifetime", I64, "Units sold ever."),
    def("views_7d", I64, "VIEW interactions in the last 7 days."),
    def("views_28d", I64, "VIEW interactions in the last 28 days."),
    def(
        "add_to_cart_28d",
        I64,
        "ADD_TO_CART interactions in the last 28 days.",
    ),
    def(
        "conversion_rate_28d",
        F64,
        "Orders / views over the last 28 days (missing without views).",
    ),
    def("review_count", I64, "Reviews ever."),
    def(
        "mean_rating",
        F64,
        "Mean review rating (missing without reviews).",
    ),
    def(
        "days_since_last_sale",
        F64,
        "Days since the last order containing the product (missing if never sold).",
    ),
];

pub fn day_of(ts: Micros) -> i32 {
    ts.div_euclid(MICROS_PER_DAY) as i32
}

fn days_between(from: Micros, to: Micros) -> f64 {
    (to - from) as f64 / MICROS_PER_DAY as f64
}

// ------------------------------------------------------------------------------------------------
// Customers

#[derive(Debug, Clone)]
pub struct OrderRec {
    pub order_id: Box<str>,
    /// Time of the first event seen for the order.
    pub ts: Micros,
    pub total: f64,
    pub units: i64,
    pub status: OrderStatus,
    pub status_ts: Micros,
    pub lines: Vec<(Arc<str>, i64)>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    last: Micros,
    cart: bool,
    purchase: bool,
}

#[derive(Debug, Clone)]
pub struct ReviewRec {
    pub review_id: Box<str>,
    pub ts: Micros,
    pub rating: i32,
}

/// Everything the customer view is computed from.
#[derive(Debug, Clone, Default)]
pub struct CustomerState {
    /// Newest customer record (by event time).
    pub record: Option<Customer>,
    /// Orders sorted by time.
    pub orders: Vec<OrderRec>,
    /// Interaction counts per UTC day and kind.
    interactions: BTreeMap<i32, [u32; INTERACTION_KINDS]>,
    interaction_total: u64,
    pub last_interaction: Option<Micros>,
    sessions: HashMap<Box<str>, Session>,
    pub reviews: Vec<ReviewRec>,
    /// Earliest event time of any kind.
    pub first_seen: Option<Micros>,
}

impl CustomerState {
    fn seen(&mut self, ts: Micros) {
        self.first_seen = Some(self.first_seen.map_or(ts, |f| f.min(ts)));
    }

    /// Applies an order event. Returns true when the order id was new (its lines count as sales).
    pub fn apply_order(&mut self, o: &Order, intern: &mut impl FnMut(&str) -> Arc<str>) -> bool {
        self.seen(o.ts);
        if let Some(rec) = self.orders.iter_mut().find(|r| *r.order_id == *o.order_id) {
            if o.ts >= rec.status_ts {
                rec.status = o.status;
                rec.status_ts = o.ts;
            }
            return false;
        }
        let rec = OrderRec {
            order_id: o.order_id.as_str().into(),
            ts: o.ts,
            total: o.total,
            units: o.units(),
            status: o.status,
            status_ts: o.ts,
            lines: o
                .lines
                .iter()
                .map(|l| (intern(&l.sku), l.quantity))
                .collect(),
        };
        let pos = self.orders.partition_point(|r| r.ts <= o.ts);
        self.orders.insert(pos, rec);
        true
    }

    pub fn apply_interaction(&mut self, i: &Interaction) {
        self.seen(i.ts);
        let day = day_of(i.ts);
        self.interactions
            .entry(day)
            .or_insert([0; INTERACTION_KINDS])[i.kind as usize] += 1;
        self.interaction_total += 1;
        self.last_interaction = Some(self.last_interaction.map_or(i.ts, |l| l.max(i.ts)));
        if !i.session_id.is_empty()
            && matches!(
                i.kind,
                InteractionKind::AddToCart | InteractionKind::Purchase
            )
        {
            let s = self
                .sessions
                .entry(i.session_id.as_str().into())
                .or_insert(Session {
                    last: i.ts,
                    cart: false,
                    purchase: false,
                });
            s.last = s.last.max(i.ts);
            match i.kind {
                InteractionKind::AddToCart => s.cart = true,
                _ => s.purchase = true,
            }
            // Keep the session table small: sessions older than the 30-day window of the
            // newest one can never count again.
            if self.sessions.len() > 256 {
                let newest = self.sessions.values().map(|s| s.last).max().unwrap_or(i.ts);
                self.sessions
                    .retain(|_, s| s.last > newest - 31 * MICROS_PER_DAY);
            }
        }
    }

    /// Applies a review. Returns true when the review id was new.
    pub fn apply_review(&mut self, r: &Review) -> bool {
        self.seen(r.ts);
        if self.reviews.iter().any(|x| *x.review_id == *r.review_id) {
            return false;
        }
        self.reviews.push(ReviewRec {
            review_id: r.review_id.as_str().into(),
            ts: r.ts,
            rating: r.rating,
        });
        true
    }

    pub fn apply_customer(&mut self, c: &Customer) {
        self.seen(c.signup_ts.unwrap_or(c.ts).min(c.ts));
        if self.record.as_ref().is_none_or(|r| c.ts >= r.ts) {
            self.record = Some(c.clone());
        }
    }

    fn live_orders(&self, now: Micros) -> impl Iterator<Item = &OrderRec> {
        self.orders
            .iter()
            .filter(move |o| o.ts <= now && o.status != OrderStatus::Cancelled)
    }

    fn interaction_count(&self, now: Micros, days: i32, kind: InteractionKind) -> i64 {
        let today = day_of(now);
        self.interactions
            .range(today - days + 1..=today)
            .map(|(_, c)| i64::from(c[kind as usize]))
            .sum()
    }

    /// Every feature of the customer view as of `now`, in [`CUSTOMER_FEATURES`] order.
    pub fn values(
        &self,
        now: Micros,
        category_of: &impl Fn(&str) -> Option<Arc<str>>,
    ) -> Vec<Value> {
        self.values_needed(now, category_of, Needed::ALL)
    }

    /// The requested columns of the customer view as of `now` (see [`select`]), computing only
    /// the groups of features they need.
    pub fn row(
        &self,
        now: Micros,
        category_of: &impl Fn(&str) -> Option<Arc<str>>,
        cols: &[Column],
    ) -> Vec<Value> {
        let full = self.values_needed(now, category_of, Needed::of(cols));
        select(&full, cols, |k| self.attribute(k))
    }

    /// [`CustomerState::values`], computing only the groups of features that `needed` asks
    /// for: the others are [`Value::Missing`] in their places (never read by [`select`] with
    /// the columns `needed` was made of). The order aggregates are always computed (every
    /// group shares their one pass over the orders).
    fn values_needed(
        &self,
        now: Micros,
        category_of: &impl Fn(&str) -> Option<Arc<str>>,
        needed: Needed,
    ) -> Vec<Value> {
        let orders: Vec<&OrderRec> = self.live_orders(now).collect();
        let window = |days: i64| {
            let from = now - days * MICROS_PER_DAY;
            let mut n = 0i64;
            let mut m = 0f64;
            for o in orders.iter().filter(|o| o.ts > from) {
                n += 1;
                m += o.total;
            }
            (n, m)
        };
        let (f30, m30) = window(30);
        let (f90, m90) = window(90);
        let (f365, m365) = window(365);
        let f_life = orders.len() as i64;
        let m_life: f64 = orders.iter().map(|o| o.total).sum();
        let last = orders.last().map(|o| o.ts);
        let first = orders.first().map(|o| o.ts);
        let gaps: Vec<f64> = orders
            .windows(2)
            .map(|w| days_between(w[0].ts, w[1].ts))
            .collect();
        let gap_mean = (!gaps.is_empty()).then(|| gaps.iter().sum::<f64>() / gaps.len() as f64);
        let gap_std = gap_mean.filter(|_| gaps.len() >= 2).map(|mean| {
            (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (gaps.len() - 1) as f64).sqrt()
        });
        let signup = self
            .record
            .as_ref()
            .and_then(|r| r.signup_ts)
            .or(self.first_seen);

        let opt = |v: Option<f64>| v.map_or(Value::Missing, Value::F64);
        let mut out = Vec::with_capacity(CUSTOMER_FEATURES.len());
        out.extend([
            opt(last.map(|l| days_between(l, now))),
            Value::I64(f30),
            Value::I64(f90),
            Value::I64(f365),
            Value::I64(f_life),
            Value::F64(m30),
            Value::F64(m90),
            Value::F64(m365),
            Value::F64(m_life),
            opt((f_life > 0).then(|| m_life / f_life as f64)),
            opt(gap_mean),
            opt(gap_std),
            opt(first.map(|f| days_between(f, now))),
            Value::I64(orders.iter().map(|o| o.units).sum()),
        ]);
        debug_assert_eq!(out.len(), group::CATEGORIES.start);
        if needed.any(group::CATEGORIES) {
            let mut categories: Vec<Arc<str>> = orders
                .iter()
                .flat_map(|o| o.lines.iter())
                .filter_map(|(sku, _)| category_of(sku))
                .collect();
            categories.sort_unstable();
            categories.dedup();
            out.push(Value::I64(categories.len() as i64));
        } else {
            out.push(Value::Missing);
        }
        let today = day_of(now);
        if needed.any(group::INTERACTIONS) {
            use InteractionKind as K;
            let interactions_life: i64 = self
                .interactions
                .range(..=today)
                .map(|(_, c)| c.iter().map(|&x| i64::from(x)).sum::<i64>())
                .sum();
            let last_interaction = self.last_interaction.filter(|&l| l <= now);
            out.extend([
                Value::I64(self.interaction_count(now, 7, K::View)),
                Value::I64(self.interaction_count(now, 30, K::View)),
                Value::I64(self.interaction_count(now, 7, K::Click)),
                Value::I64(self.interaction_count(now, 30, K::Click)),
                Value::I64(self.interaction_count(now, 7, K::AddToCart)),
                Value::I64(self.interaction_count(now, 30, K::AddToCart)),
                Value::I64(self.interaction_count(now, 7, K::Purchase)),
                Value::I64(self.interaction_count(now, 30, K::Purchase)),
                Value::I64(self.interaction_count(now, 7, K::Search)),
                Value::I64(self.interaction_count(now, 30, K::Search)),
                Value::I64(self.interaction_count(now, 30, K::Wishlist)),
                Value::I64(interactions_life),
                opt(last_interaction.map(|l| days_between(l, now))),
            ]);
        } else {
            out.resize(group::INTERACTIONS.end, Value::Missing);
        }
        debug_assert_eq!(out.len(), group::CART.start);
        if needed.any(group::CART) {
            let from30 = today - 29;
            let (mut cart_sessions, mut abandoned) = (0u32, 0u32);
            for s in self.sessions.values() {
                let d = day_of(s.last);
                if s.cart && d >= from30 && s.last <= now {
                    cart_sessions += 1;
                    if !s.purchase {
                        abandoned += 1;
                    }
                }
            }
            out.push(opt(
                (cart_sessions > 0).then(|| f64::from(abandoned) / f64::from(cart_sessions))
            ));
        } else {
            out.push(Value::Missing);
        }
        if needed.any(group::REVIEWS) {
            let reviews: Vec<&ReviewRec> = self.reviews.iter().filter(|r| r.ts <= now).collect();
            let reviews_30d = reviews
                .iter()
                .filter(|r| r.ts > now - 30 * MICROS_PER_DAY)
                .count() as i64;
            let review_mean = (!reviews.is_empty()).then(|| {
                reviews.iter().map(|r| f64::from(r.rating)).sum::<f64>() / reviews.len() as f64
            });
            let negative_share = (!reviews.is_empty()).then(|| {
                reviews.iter().filter(|r| r.rating <= 2).count() as f64 / reviews.len() as f64
            });
            out.extend([
                Value::I64(reviews.len() as i64),
                Value::I64(reviews_30d),
                opt(review_mean),
                opt(negative_share),
            ]);
        } else {
            out.resize(group::REVIEWS.end, Value::Missing);
        }
        let status_count = |status: OrderStatus| {
            Value::I64(
                self.orders
                    .iter()
                    .filter(|o| o.status_ts <= now && o.status == status)
                    .count() as i64,
            )
        };
        out.extend([
            status_count(OrderStatus::Refunded),
            status_count(OrderStatus::ChargedBack),
            opt(signup.map(|s| days_between(s, now).max(0.0))),
            self.record
                .as_ref()
                .filter(|r| !r.country.is_empty())
                .map_or(Value::Missing, |r| Value::Str(r.country.clone())),
        ]);
        debug_assert_eq!(out.len(), group::SEQUENCE.start);
        // The recent order sequence, newest first.
        if needed.any(group::SEQUENCE) {
            for k in 0..ORDER_SEQUENCE_STEPS {
                match orders.len().checked_sub(k + 1).and_then(|i| orders.get(i)) {
                    Some(o) => out.extend([
                        Value::F64(days_between(o.ts, now)),
                        Value::F64(o.total),
                        Value::I64(o.units),
                    ]),
                    None => out.extend([Value::Missing, Value::Missing, Value::Missing]),
                }
            }
        } else {
            out.resize(group::SEQUENCE.end, Value::Missing);
        }
        out
    }

    /// Interactions with an event time in `[from, to)` (whole UTC days).
    pub fn interactions_between(&self, from: Micros, to: Micros) -> i64 {
        self.interactions
            .range(day_of(from)..day_of(to))
            .map(|(_, c)| c.iter().map(|&x| i64::from(x)).sum::<i64>())
            .sum()
    }

    /// A customer attribute feature (`attr_<key>`).
    pub fn attribute(&self, key: &str) -> Value {
        self.record
            .as_ref()
            .and_then(|r| r.attributes.get(key))
            .map_or(Value::Missing, |v| Value::Str(v.clone()))
    }

    /// True when no event of the customer is at or before `now`.
    pub fn unknown_at(&self, now: Micros) -> bool {
        self.first_seen.is_none_or(|f| f > now)
    }
}

// ------------------------------------------------------------------------------------------------
// Products

#[derive(Debug, Clone, Copy, Default)]
pub struct ProductDay {
    pub units: i64,
    pub revenue: f64,
    pub orders: u32,
    pub views: u32,
    pub carts: u32,
}

#[derive(Debug, Clone, Default)]
pub struct ProductState {
    /// Newest catalogue snapshot (by event time).
    pub snapshot: Option<Product>,
    pub days: BTreeMap<i32, ProductDay>,
    pub units_total: i64,
    pub revenue_total: f64,
    pub review_count: i64,
    pub rating_sum: i64,
    pub last_sale: Option<Micros>,
    pub first_seen: Option<Micros>,
}

impl ProductState {
    fn seen(&mut self, ts: Micros) {
        self.first_seen = Some(self.first_seen.map_or(ts, |f| f.min(ts)));
    }

    pub fn apply_snapshot(&mut self, p: &Product) {
        self.seen(p.ts);
        if self.snapshot.as_ref().is_none_or(|s| p.ts >= s.ts) {
            self.snapshot = Some(p.clone());
        }
    }

    /// One order line of an order seen for the first time.
    pub fn apply_sale(&mut self, ts: Micros, quantity: i64, unit_price: f64) {
        self.seen(ts);
        let d = self.days.entry(day_of(ts)).or_default();
        d.units += quantity;
        d.revenue += quantity as f64 * unit_price;
        d.orders += 1;
        self.units_total += quantity;
        self.revenue_total += quantity as f64 * unit_price;
        self.last_sale = Some(self.last_sale.map_or(ts, |l| l.max(ts)));
    }

    pub fn apply_interaction(&mut self, ts: Micros, kind: InteractionKind) {
        self.seen(ts);
        let d = self.days.entry(day_of(ts)).or_default();
        match kind {
            InteractionKind::View => d.views += 1,
            InteractionKind::AddToCart => d.carts += 1,
            _ => {}
        }
    }

    pub fn apply_review(&mut self, ts: Micros, rating: i32) {
        self.seen(ts);
        self.review_count += 1;
        self.rating_sum += i64::from(rating);
    }

    fn window(&self, now: Micros, days: i32) -> ProductDay {
        let today = day_of(now);
        let mut acc = ProductDay::default();
        for (_, d) in self.days.range(today - days + 1..=today) {
            acc.units += d.units;
            acc.revenue += d.revenue;
            acc.orders += d.orders;
            acc.views += d.views;
            acc.carts += d.carts;
        }
        acc
    }

    /// Every feature of the product view as of `now`, in [`PRODUCT_FEATURES`] order.
    pub fn values(&self, now: Micros) -> Vec<Value> {
        let w7 = self.window(now, 7);
        let w28 = self.window(now, 28);
        let snap = self.snapshot.as_ref();
        let units_life: i64 = if self
            .days
            .keys()
            .next_back()
            .is_some_and(|&d| d > day_of(now))
        {
            self.days.range(..=day_of(now)).map(|(_, d)| d.units).sum()
        } else {
            self.units_total
        };
        let str_or_missing = |s: Option<String>| {
            s.filter(|s| !s.is_empty())
                .map_or(Value::Missing, Value::Str)
        };
        vec![
            snap.map_or(Value::Missing, |s| Value::F64(s.price)),
            snap.map_or(Value::Missing, |s| Value::I64(s.stock)),
            snap.map_or(Value::Missing, |s| Value::Bool(s.active)),
            snap.map_or(Value::Missing, |s| Value::Bool(s.on_promotion)),
            str_or_missing(snap.map(Product::category)),
            str_or_missing(snap.map(|s| s.brand.clone())),
            Value::I64(w7.units),
            Value::I64(w28.units),
            Value::F64(w7.revenue),
            Value::F64(w28.revenue),
            Value::I64(i64::from(w28.orders)),
            Value::I64(units_life),
            Value::I64(i64::from(w7.views)),
            Value::I64(i64::from(w28.views)),
            Value::I64(i64::from(w28.carts)),
            if w28.views > 0 {
                Value::F64(f64::from(w28.orders) / f64::from(w28.views))
            } else {
                Value::Missing
            },
            Value::I64(self.review_count),
            if self.review_count > 0 {
                Value::F64(self.rating_sum as f64 / self.review_count as f64)
            } else {
                Value::Missing
            },
            self.last_sale
                .filter(|&l| l <= now)
                .map_or(Value::Missing, |l| Value::F64(days_between(l, now))),
        ]
    }

    pub fn unknown_at(&self, now: Micros) -> bool {
        self.first_seen.is_none_or(|f| f > now)
    }
}

// ------------------------------------------------------------------------------------------------
// Views

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewKind {
    Customer,
    Product,
}

impl ViewKind {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "customer" => Some(Self::Customer),
            "product" => Some(Self::Product),
            _ => None,
        }
    }
    pub fn defs(self) -> &'static [FeatureDef] {
        match self {
            Self::Customer => CUSTOMER_FEATURES,
            Self::Product => PRODUCT_FEATURES,
        }
    }
}

/// One requested column: an index into the view's computed values, or a customer attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Index(usize),
    Attribute(String),
}

/// Resolves requested feature names (empty: the whole view) into columns. Unknown names are
/// returned as `Err((position, name))`.
pub fn resolve_columns(
    view: ViewKind,
    names: &[String],
) -> Result<(Vec<String>, Vec<Column>), (usize, String)> {
    let defs = view.defs();
    if names.is_empty() {
        return Ok((
            defs.iter().map(|d| d.name.to_string()).collect(),
            (0..defs.len()).map(Column::Index).collect(),
        ));
    }
    let mut cols = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        if let Some(pos) = defs.iter().position(|d| d.name == n) {
            cols.push(Column::Index(pos));
        } else if view == ViewKind::Customer
            && n.len() > ATTRIBUTE_PREFIX.len()
            && n.starts_with(ATTRIBUTE_PREFIX)
        {
            cols.push(Column::Attribute(n[ATTRIBUTE_PREFIX.len()..].to_string()));
        } else {
            return Err((i, n.clone()));
        }
    }
    Ok((names.to_vec(), cols))
}

/// Where the groups of the customer view that [`CustomerState::values_needed`] may skip sit
/// in [`CUSTOMER_FEATURES`] (checked against the names by a unit test).
mod group {
    use std::ops::Range;
    /// `distinct_categories`: a category lookup per order line.
    pub const CATEGORIES: Range<usize> = 14..15;
    /// `views_7d` to `days_since_last_interaction`: eleven range sums over the daily counts.
    pub const INTERACTIONS: Range<usize> = 15..28;
    /// `cart_abandon_rate_30d`: a pass over the sessions.
    pub const CART: Range<usize> = 28..29;
    /// `review_count` to `negative_review_share`.
    pub const REVIEWS: Range<usize> = 29..33;
    /// `order_1_days_ago` to the last step's `order_<k>_units`.
    pub const SEQUENCE: Range<usize> = 37..37 + 3 * super::ORDER_SEQUENCE_STEPS;
}

const _: () = assert!(CUSTOMER_FEATURES.len() <= 64, "Needed is a 64-bit mask");
const _: () = assert!(group::SEQUENCE.end == CUSTOMER_FEATURES.len());

/// The columns of the customer view a read needs, as a bit mask over [`CUSTOMER_FEATURES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needed(u64);

impl Needed {
    /// Every feature.
    const ALL: Needed = Needed(u64::MAX);

    /// The view's columns among `cols` (attributes need none).
    fn of(cols: &[Column]) -> Needed {
        Needed(cols.iter().fold(0, |m, c| match c {
            Column::Index(i) if *i < 64 => m | 1 << i,
            _ => m,
        }))
    }

    /// Whether any column in `range` is needed.
    fn any(self, range: std::ops::Range<usize>) -> bool {
        range.into_iter().any(|i| i < 64 && self.0 & (1 << i) != 0)
    }
}

/// Picks the requested columns out of a full row.
pub fn select(full: &[Value], cols: &[Column], attr: impl Fn(&str) -> Value) -> Vec<Value> {
    cols.iter()
        .map(|c| match c {
            Column::Index(i) => full.get(*i).cloned().unwrap_or(Value::Missing),
            Column::Attribute(k) => attr(k),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{OrderLine, ReviewLabel};

    const D: Micros = MICROS_PER_DAY;
    const T0: Micros = 10_000 * D;

    fn order(id: &str, ts: Micros, total: f64, status: OrderStatus) -> Order {
        Order {
            order_id: id.into(),
            customer_id: "c".into(),
            ts,
            lines: vec![OrderLine {
                sku: "A".into(),
                quantity: 2,
                unit_price: total / 2.0,
                promotion: false,
            }],
            total,
            currency: String::new(),
            payment_method: String::new(),
            shipping_country: String::new(),
            billing_country: String::new(),
            payment_hash: String::new(),
            device_hash: String::new(),
            ip_hash: String::new(),
            status,
            store_id: String::new(),
            channel: String::new(),
        }
    }

    fn get<'a>(vals: &'a [Value], name: &str) -> &'a Value {
        let i = CUSTOMER_FEATURES
            .iter()
            .position(|d| d.name == name)
            .unwrap();
        &vals[i]
    }

    fn intern(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn rfm_windows_gaps_and_status() {
        let mut s = CustomerState::default();
        let cat = |_: &str| Some(Arc::<str>::from("Books"));
        // Out of order on purpose.
        assert!(s.apply_order(
            &order("o2", T0 + 10 * D, 30.0, OrderStatus::Placed),
            &mut intern
        ));
        assert!(s.apply_order(&order("o1", T0, 10.0, OrderStatus::Placed), &mut intern));
        assert!(s.apply_order(
            &order("o3", T0 + 40 * D, 50.0, OrderStatus::Placed),
            &mut intern
        ));
        // A status update is not a new order.
        assert!(!s.apply_order(
            &order("o3", T0 + 41 * D, 50.0, OrderStatus::Refunded),
            &mut intern
        ));
        let now = T0 + 45 * D;
        let v = s.values(now, &cat);
        assert_eq!(get(&v, "recency_days"), &Value::F64(5.0));
        assert_eq!(get(&v, "frequency_30d"), &Value::I64(1));
        assert_eq!(get(&v, "frequency_90d"), &Value::I64(3));
        assert_eq!(get(&v, "monetary_lifetime"), &Value::F64(90.0));
        assert_eq!(get(&v, "avg_order_value"), &Value::F64(30.0));
        assert_eq!(get(&v, "interpurchase_mean_days"), &Value::F64(20.0));
        // gaps 10 and 30: sample std = sqrt(((10-20)^2 + (30-20)^2) / 1)
        assert_eq!(
            get(&v, "interpurchase_std_days"),
            &Value::F64(200f64.sqrt())
        );
        assert_eq!(get(&v, "refund_count"), &Value::I64(1));
        assert_eq!(get(&v, "distinct_categories"), &Value::I64(1));
        assert_eq!(get(&v, "review_mean_rating"), &Value::Missing);
        assert_eq!(get(&v, "country"), &Value::Missing);
        assert_eq!(v.len(), CUSTOMER_FEATURES.len());
        // The order sequence, newest first (the refunded order is still an order placed).
        assert_eq!(get(&v, "order_1_days_ago"), &Value::F64(5.0));
        assert_eq!(get(&v, "order_1_total"), &Value::F64(50.0));
        assert_eq!(get(&v, "order_1_units"), &Value::I64(2));
        assert_eq!(get(&v, "order_2_days_ago"), &Value::F64(35.0));
        assert_eq!(get(&v, "order_3_total"), &Value::F64(10.0));
        assert_eq!(get(&v, "order_4_days_ago"), &Value::Missing);
        assert_eq!(get(&v, "order_5_units"), &Value::Missing);

        // As of an earlier time only earlier orders count, and the refund is not yet known.
        let v = s.values(T0 + 20 * D, &cat);
        assert_eq!(get(&v, "frequency_lifetime"), &Value::I64(2));
        assert_eq!(get(&v, "refund_count"), &Value::I64(0));
        assert_eq!(get(&v, "interpurchase_std_days"), &Value::Missing);
        assert_eq!(get(&v, "order_1_days_ago"), &Value::F64(10.0));
        assert_eq!(get(&v, "order_1_total"), &Value::F64(30.0));
        assert_eq!(get(&v, "order_3_days_ago"), &Value::Missing);
    }

    #[test]
    fn interactions_sessions_reviews() {
        let mut s = CustomerState::default();
        let mk = |id: &str, kind, ts, session: &str| Interaction {
            event_id: id.into(),
            customer_id: "c".into(),
            sku: "A".into(),
            kind,
            query: String::new(),
            ts,
            session_id: session.into(),
            value: 0.0,
        };
        s.apply_interaction(&mk("1", InteractionKind::View, T0, "s1"));
        s.apply_interaction(&mk("2", InteractionKind::AddToCart, T0, "s1"));
        s.apply_interaction(&mk("3", InteractionKind::AddToCart, T0 + D, "s2"));
        s.apply_interaction(&mk("4", InteractionKind::Purchase, T0 + D, "s2"));
        s.apply_interaction(&mk("5", InteractionKind::View, T0 - 20 * D, ""));
        let review = |id: &str, rating| Review {
            review_id: id.into(),
            customer_id: "c".into(),
            sku: "A".into(),
            rating,
            title: String::new(),
            text: String::new(),
            ts: T0,
            label: ReviewLabel::Unspecified,
        };
        assert!(s.apply_review(&review("r1", 1)));
        assert!(s.apply_review(&review("r2", 5)));
        assert!(!s.apply_review(&review("r2", 5)));
        let v = s.values(T0 + 2 * D, &|_| None);
        assert_eq!(get(&v, "views_7d"), &Value::I64(1));
        assert_eq!(get(&v, "views_30d"), &Value::I64(2));
        assert_eq!(get(&v, "cart_abandon_rate_30d"), &Value::F64(0.5));
        assert_eq!(get(&v, "review_count"), &Value::I64(2));
        assert_eq!(get(&v, "negative_review_share"), &Value::F64(0.5));
        assert_eq!(get(&v, "days_since_last_interaction"), &Value::F64(1.0));
    }

    #[test]
    fn product_windows() {
        let mut p = ProductState::default();
        p.apply_sale(T0, 3, 2.0);
        p.apply_sale(T0 - 10 * D, 1, 2.0);
        for _ in 0..4 {
            p.apply_interaction(T0, InteractionKind::View);
        }
        let v = p.values(T0 + D / 2);
        let get = |n: &str| v[PRODUCT_FEATURES.iter().position(|d| d.name == n).unwrap()].clone();
        assert_eq!(get("units_7d"), Value::I64(3));
        assert_eq!(get("units_28d"), Value::I64(4));
        // Two orders over four views.
        assert_eq!(get("orders_28d"), Value::I64(2));
        assert_eq!(get("conversion_rate_28d"), Value::F64(0.5));
        assert_eq!(get("price"), Value::Missing);
        assert_eq!(get("mean_rating"), Value::Missing);
    }

    #[test]
    fn column_resolution() {
        let (names, cols) = resolve_columns(
            ViewKind::Customer,
            &["recency_days".into(), "attr_tier".into()],
        )
        .unwrap();
        assert_eq!(names.len(), 2);
        assert_eq!(cols[1], Column::Attribute("tier".into()));
        assert_eq!(
            resolve_columns(ViewKind::Product, &["price".into(), "nope".into()]),
            Err((1, "nope".into()))
        );
        assert!(resolve_columns(ViewKind::Product, &["attr_x".into()]).is_err());
    }

    #[test]
    fn skippable_groups_sit_where_their_names_are() {
        let name = |i: usize| CUSTOMER_FEATURES[i].name;
        let ends = |r: std::ops::Range<usize>| (name(r.start), name(r.end - 1));
        assert_eq!(
            ends(group::CATEGORIES),
            ("distinct_categories", "distinct_categories")
        );
        assert_eq!(
            ends(group::INTERACTIONS),
            ("views_7d", "days_since_last_interaction")
        );
        assert_eq!(
            ends(group::CART),
            ("cart_abandon_rate_30d", "cart_abandon_rate_30d")
        );
        assert_eq!(
            ends(group::REVIEWS),
            ("review_count", "negative_review_share")
        );
        assert_eq!(ends(group::SEQUENCE), ("order_1_days_ago", "order_5_units"));
        // The neighbours of each group are outside it.
        assert_eq!(name(group::CATEGORIES.start - 1), "units_lifetime");
        assert_eq!(name(group::REVIEWS.end), "refund_count");
        assert_eq!(name(group::SEQUENCE.start - 1), "country");
        // A projection that reads only order aggregates skips every group.
        let needed = Needed::of(&[Column::Index(0), Column::Attribute("tier".into())]);
        for g in [
            group::CATEGORIES,
            group::INTERACTIONS,
            group::CART,
            group::REVIEWS,
            group::SEQUENCE,
        ] {
            assert!(!needed.any(g.clone()));
            assert!(Needed::ALL.any(g));
        }
    }

    /// A customer with everything the view reads: orders with lines in several categories and
    /// every status, interactions of every kind across sessions (with and without a cart and a
    /// purchase), reviews and a customer record with attributes, all spread over ~120 days.
    fn busy_customer(seed: u64) -> CustomerState {
        let mut rng = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = |n: u64| {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (rng >> 33) % n
        };
        let mut s = CustomerState::default();
        let statuses = [
            OrderStatus::Placed,
            OrderStatus::Cancelled,
            OrderStatus::Refunded,
            OrderStatus::ChargedBack,
        ];
        for i in 0..next(9) {
            let mut o = order(
                &format!("o{i}"),
                T0 + next(120) as i64 * D,
                1.0 + next(200) as f64,
                statuses[next(4) as usize],
            );
            o.lines[0].sku = format!("sku{}", next(6));
            o.lines.push(OrderLine {
                sku: format!("sku{}", next(6)),
                quantity: 1 + next(3) as i64,
                unit_price: 5.0,
                promotion: false,
            });
            s.apply_order(&o, &mut intern);
        }
        for i in 0..next(40) {
            s.apply_interaction(&Interaction {
                event_id: format!("e{i}"),
                customer_id: "c".into(),
                sku: format!("sku{}", next(6)),
                kind: InteractionKind::ALL[next(INTERACTION_KINDS as u64) as usize],
                query: String::new(),
                ts: T0 + next(120 * 24) as i64 * (D / 24),
                session_id: format!("s{}", next(5)),
                value: 0.0,
            });
        }
        for i in 0..next(5) {
            s.apply_review(&Review {
                review_id: format!("r{i}"),
                customer_id: "c".into(),
                sku: "sku1".into(),
                rating: 1 + next(5) as i32,
                title: String::new(),
                text: String::new(),
                ts: T0 + next(120) as i64 * D,
                label: ReviewLabel::Unspecified,
            });
        }
        if next(3) > 0 {
            s.apply_customer(&Customer {
                customer_id: "c".into(),
                signup_ts: Some(T0 - next(50) as i64 * D),
                country: ["", "DE", "FR"][next(3) as usize].into(),
                attributes: [("tier".to_string(), "gold".to_string())].into(),
                ts: T0,
            });
        }
        s
    }

    proptest::proptest! {
        /// A projected read equals the same columns picked out of the full view, for any set
        /// of columns (repeats and attributes included) and any moment.
        #[test]
        fn projected_rows_equal_the_full_view(
            seed in 0u64..1_000_000,
            picks in proptest::collection::vec(0usize..CUSTOMER_FEATURES.len() + 2, 0..12),
            day in 0i64..150,
        ) {
            let s = busy_customer(seed);
            let cat = |sku: &str| (!sku.ends_with('5')).then(|| Arc::<str>::from(&sku[..4]));
            let cols: Vec<Column> = picks
                .iter()
                .map(|&i| match i.checked_sub(CUSTOMER_FEATURES.len()) {
                    None => Column::Index(i),
                    Some(0) => Column::Attribute("tier".into()),
                    Some(_) => Column::Attribute("absent".into()),
                })
                .collect();
            let now = T0 + day * D + D / 3;
            let full = s.values(now, &cat);
            let expected = select(&full, &cols, |k| s.attribute(k));
            proptest::prop_assert_eq!(s.row(now, &cat, &cols), expected);
        }
    }
}
