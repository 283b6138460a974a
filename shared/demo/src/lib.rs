//! A deterministic synthetic e-commerce dataset for Augur: the feature-store events behind
//! `augur up --demo`, tests and benchmarks.
//!
//! [`generate`] simulates a shop over [`DemoConfig::days`] days ending at [`DemoConfig::end`]:
//! a catalogue of ~12 categories with price changes, promotion weeks and stock counts,
//! customers who sign up over the period, shop with weekly and yearly seasonality in their 1-3
//! favourite categories (plus co-purchased complements), and eventually churn; their sessions of
//! searches, views, clicks, carts and purchases; genuine reviews whose ratings follow a latent
//! product quality; and planted anomalies for the risk models (fraud orders with later charge
//! backs, spam reviews with partial SPAM labels). [`Summary`] lists what was planted.
//!
//! ```
//! let data = augur_demo::generate(&augur_demo::DemoConfig { customers: 100, products: 40, ..Default::default() });
//! assert!(!data.events.is_empty());
//! println!("{}", data.summary);
//! ```
//!
//! The output is a pure function of the config: the same config gives equal events in the same
//! order (ids included). Everything happens in `[end - days, end)`; with the default `end`
//! (today's midnight UTC) every timestamp is in the past.
//!
//! Conventions a consumer can rely on:
//! - Stream order: every product's first snapshot (by creation time), then every customer's
//!   signup record (by signup time), then all other events by timestamp (ties keep generation
//!   order, so an order comes before its PURCHASE interactions).
//! - Ids: customers `cust-00001`, products `sku-00001`, orders `ord-0000001`, reviews
//!   `rev-000001`, interactions `ix-00000001`, sessions `s-<hex>`; numbered in time order.
//! - Products: `price` is the selling price in effect from the snapshot's `ts` (the promotion
//!   price while `on_promotion`); attribute `list_price` is the regular price. An order line's
//!   `unit_price` equals the `price` of the newest snapshot of its SKU at the order's time, and
//!   `promotion` is that snapshot's `on_promotion`.
//! - Orders: `total` is always set and equals the sum of the lines. Status updates (PAID,
//!   CANCELLED, REFUNDED, CHARGED_BACK) resend the whole order with the new status and the time
//!   of the update as `ts`. The dataset also carries one PURCHASE interaction per order line
//!   (value = quantity), so a consumer should not add order lines again
//!   (`include_order_lines`) on top of them.
//! - Reviews: a moderation label resends the review with `label` set and the moderation time as
//!   `ts`. Label events only exist for labels that arrived before `end`, like in production.

mod dist;
mod sim;
mod text;

use std::collections::BTreeMap;
use std::fmt;

use augur_proto::featurestore::{
    Customer, Event, Interaction, InteractionKind, Order, OrderLine, OrderStatus, Product, Review,
    ReviewLabel, event::Payload,
};
use chrono::{DateTime, NaiveTime, Utc};
use rand::SeedableRng;
use rand::rngs::StdRng;

use sim::{Activity, Calendar, Cust, DAY, Role};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Genuine customers (planted fraudster and spammer accounts come on top). At least 1.
    pub customers: usize,
    /// Products in the catalogue. At least 12 (one per category).
    pub products: usize,
    /// Length of the simulated period in days, ending at `end`. At least 28.
    pub days: u32,
    /// End of the period (exclusive). Keep it in the past: event timestamps must not be in the
    /// future for the feature store to accept them.
    pub end: DateTime<Utc>,
}

impl Default for DemoConfig {
    /// Seed 42, 2,000 customers, 300 products, two years up to today's midnight UTC.
    fn default() -> Self {
        DemoConfig {
            seed: 42,
            customers: 2_000,
            products: 300,
            days: 730,
            end: Utc::now().date_naive().and_time(NaiveTime::MIN).and_utc(),
        }
    }
}

/// The generated dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoData {
    /// Events in the order a shop would send them (see the crate docs).
    pub events: Vec<Event>,
    /// What was generated and planted.
    pub summary: Summary,
}

/// How a planted fraud order was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FraudKind {
    /// An existing customer's account: 5-15x their usual basket, new device and IP, payment
    /// token never seen before, billing country abroad.
    AccountTakeover,
    /// An account created 5-55 minutes before a high-value order, mostly billed abroad.
    NewAccount,
    /// One of 3-5 high-value orders from one device fingerprint within 10 minutes, over 1-3
    /// accounts a few hours to days old.
    DeviceBurst,
}

/// How a planted spam review was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpamKind {
    /// Near-duplicate praise on different products from a small pool of accounts.
    DuplicateText,
    /// One of 5-7 five-star reviews on one product within an hour, each from a new account.
    RatingBurst,
    /// Promotional text with a link (`http://cheap-deals.example`, ...).
    PromotionalLink,
    /// Star rating contradicting the text (5 stars on a complaint, 1 star on praise).
    RatingMismatch,
}

/// A planted fraud order.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudOrder {
    pub order_id: String,
    pub customer_id: String,
    pub kind: FraudKind,
    pub ts: DateTime<Utc>,
    /// Order total in EUR.
    pub total: f64,
    /// Device fingerprint the order came from.
    pub device_fingerprint: String,
    /// When the CHARGED_BACK update was sent; `None` when it would fall after `end` (label delay).
    pub charged_back_at: Option<DateTime<Utc>>,
}

/// A planted spam review.
#[derive(Debug, Clone, PartialEq)]
pub struct SpamReview {
    pub review_id: String,
    pub customer_id: String,
    pub sku: String,
    pub kind: SpamKind,
    pub ts: DateTime<Utc>,
    /// When the SPAM label event was sent, for about half of the spam.
    pub labelled_at: Option<DateTime<Utc>>,
}

/// A genuine customer who churned before `end`: no orders after `churned_at` (activity fades in
/// the 60 days before; browsing decays over the weeks after).
#[derive(Debug, Clone, PartialEq)]
pub struct ChurnedCustomer {
    pub customer_id: String,
    pub churned_at: DateTime<Utc>,
    /// Their last genuine order (fraud on a taken-over account does not count), if any.
    pub last_purchase: Option<DateTime<Utc>>,
}

/// A promotion week of one product: Monday 00:00 UTC to the next Monday, `discount` off.
#[derive(Debug, Clone, PartialEq)]
pub struct PromotionWeek {
    pub sku: String,
    pub start: DateTime<Utc>,
    /// Fraction off the list price (0.15-0.25).
    pub discount: f64,
}

/// Events per kind (events, not entities: see [`Summary`] for distinct customers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Product snapshot events (creation, price, promotion, stock and delisting changes); the
    /// catalogue has `DemoConfig::products` distinct SKUs.
    pub products: usize,
    /// Customer record events: one signup record per account plus tier-upgrade snapshots.
    pub customers: usize,
    /// Order events per status (`"placed"`, `"paid"`, `"cancelled"`, `"refunded"`, `"charged_back"`).
    pub orders: BTreeMap<&'static str, usize>,
    /// Interaction events per kind (`"view"`, `"click"`, `"add_to_cart"`, ...).
    pub interactions: BTreeMap<&'static str, usize>,
    /// Review events without a label.
    pub reviews: usize,
    /// Review events that carry a moderation label.
    pub review_labels: usize,
    pub total: usize,
}

/// What [`generate`] produced and planted, for tests and for printing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub counts: Counts,
    /// Genuine customers (all but the planted accounts), by signup.
    pub genuine_customers: Vec<String>,
    /// Accounts created by fraudsters (new-account and device-burst fraud).
    pub fraud_accounts: Vec<String>,
    /// Accounts created only to post spam reviews.
    pub spam_accounts: Vec<String>,
    /// Planted fraud orders, in time order.
    pub fraud_orders: Vec<FraudOrder>,
    /// Planted spam reviews, in time order.
    pub spam_reviews: Vec<SpamReview>,
    /// Genuine reviews that received a GENUINE moderation label.
    pub genuine_labelled_reviews: Vec<String>,
    /// Genuine customers who churned before `end`.
    pub churned: Vec<ChurnedCustomer>,
    /// Every product promotion week, by SKU then week.
    pub promotions: Vec<PromotionWeek>,
    /// (product, complement) pairs that are often bought together.
    pub co_purchase_pairs: Vec<(String, String)>,
    /// Products with zero stock at `end`.
    pub out_of_stock: Vec<String>,
    /// Products delisted (active = false) before `end`.
    pub inactive: Vec<String>,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        writeln!(
            f,
            "demo data {} .. {}: {} events",
            self.start.format("%Y-%m-%d"),
            self.end.format("%Y-%m-%d"),
            c.total
        )?;
        writeln!(f, "  products  {:>7} snapshots", c.products)?;
        writeln!(
            f,
            "  customers {:>7} records ({} genuine, {} fraud, {} spam accounts)",
            c.customers,
            self.genuine_customers.len(),
            self.fraud_accounts.len(),
            self.spam_accounts.len()
        )?;
        let join = |m: &BTreeMap<&str, usize>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            f,
            "  orders    {:>7} events ({})",
            c.orders.values().sum::<usize>(),
            join(&c.orders)
        )?;
        writeln!(
            f,
            "  interactions {:>4} ({})",
            c.interactions.values().sum::<usize>(),
            join(&c.interactions)
        )?;
        writeln!(
            f,
            "  reviews   {:>7} (+{} moderation labels)",
            c.reviews, c.review_labels
        )?;
        writeln!(
            f,
            "planted: {} fraud orders, {} spam reviews ({} labelled SPAM), {} GENUINE labels",
            self.fraud_orders.len(),
            self.spam_reviews.len(),
            self.spam_reviews
                .iter()
                .filter(|s| s.labelled_at.is_some())
                .count(),
            self.genuine_labelled_reviews.len()
        )?;
        write!(
            f,
            "churned: {} of {} genuine customers; {} promotion weeks; {} co-purchase pairs; {} out of stock, {} inactive",
            self.churned.len(),
            self.genuine_customers.len(),
            self.promotions.len(),
            self.co_purchase_pairs.len(),
            self.out_of_stock.len(),
            self.inactive.len()
        )
    }
}

fn sub_rng(seed: u64, stage: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stage.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn ts(secs: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    }
}

fn dt(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

fn eur(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Generates the dataset for `cfg` (values below the documented minimums are raised to them).
pub fn generate(cfg: &DemoConfig) -> DemoData {
    let end = cfg.end.timestamp();
    let start = end - i64::from(cfg.days.max(28)) * DAY;
    let cal = Calendar::new(start, end);
    let catalog = sim::build_catalog(&mut sub_rng(cfg.seed, 1), cfg.products.max(12), cal);
    let mut customers = sim::build_customers(
        &mut sub_rng(cfg.seed, 2),
        cfg.customers.max(1),
        &catalog.cal,
    );
    let n_genuine = customers.len();

    let mut act = Activity::default();
    let mut rng = sub_rng(cfg.seed, 3);
    for (ci, c) in customers.iter().enumerate() {
        sim::customer_activity(&mut rng, &catalog, c, ci, &mut act);
    }
    sim::plant_fraud(
        &mut sub_rng(cfg.seed, 4),
        &catalog,
        &mut customers,
        &mut act,
    );
    sim::genuine_reviews(&mut sub_rng(cfg.seed, 5), &catalog, &mut act);
    sim::plant_spam(
        &mut sub_rng(cfg.seed, 6),
        &catalog,
        &mut customers,
        &mut act,
    );
    let by_cust = sim::orders_by_customer(customers.len(), &act.orders);
    sim::upgrades(
        &mut sub_rng(cfg.seed, 7),
        &customers,
        &by_cust,
        &mut act,
        end,
    );
    let snapshots = sim::product_snapshots(&mut sub_rng(cfg.seed, 8), &catalog, &act.orders);

    // Ids in time order.
    let mut by_signup: Vec<usize> = (0..customers.len()).collect();
    by_signup.sort_by_key(|&i| (customers[i].signup, i));
    for (n, &i) in by_signup.iter().enumerate() {
        customers[i].id = format!("cust-{:05}", n + 1);
    }
    act.orders.sort_by_key(|o| (o.ts, o.cust));
    for (n, o) in act.orders.iter_mut().enumerate() {
        o.id = format!("ord-{:07}", n + 1);
    }
    act.reviews.sort_by_key(|r| (r.ts, r.cust, r.prod));
    for (n, r) in act.reviews.iter_mut().enumerate() {
        r.id = format!("rev-{:06}", n + 1);
    }

    let events = emit(&catalog, &customers, &by_signup, &act, &snapshots);
    let summary = summarise(&events, &catalog, &customers, n_genuine, &act, start, end);
    DemoData { events, summary }
}

fn customer_event(c: &Cust, at: i64, gold: bool) -> Event {
    let tier = if gold { "gold" } else { "standard" };
    Event {
        payload: Some(Payload::Customer(Customer {
            customer_id: c.id.clone(),
            signup_ts: Some(ts(c.signup)),
            country: c.country.to_string(),
            attributes: [
                ("tier", tier),
                ("acquisition_channel", c.channel),
                ("age_band", c.age_band),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ts: Some(ts(at)),
        })),
    }
}

fn product_event(catalog: &sim::Catalog, s: &sim::Snapshot) -> Event {
    let p = &catalog.products[s.prod];
    let cat = p.category();
    let mut attributes = vec![
        ("list_price", format!("{:.2}", eur(s.list_cents))),
        ("color", p.color.to_string()),
    ];
    if s.promo {
        attributes.push(("discount_pct", format!("{:.0}", p.discount * 100.0)));
    }
    Event {
        payload: Some(Payload::Product(Product {
            sku: p.sku.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            category_path: cat.path.iter().map(|s| (*s).to_string()).collect(),
            brand: p.brand.to_string(),
            price: eur(s.cents),
            currency: "EUR".to_string(),
            stock: s.stock,
            active: Some(s.active),
            on_promotion: s.promo,
            ts: Some(ts(s.ts)),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        })),
    }
}

fn order_event(
    catalog: &sim::Catalog,
    customers: &[Cust],
    o: &sim::OrderSim,
    status: OrderStatus,
    at: i64,
) -> Event {
    Event {
        payload: Some(Payload::Order(Order {
            order_id: o.id.clone(),
            customer_id: customers[o.cust].id.clone(),
            ts: Some(ts(at)),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLine {
                    sku: catalog.products[l.prod].sku.clone(),
                    quantity: l.qty,
                    unit_price: eur(l.cents),
                    promotion: l.promo,
                })
                .collect(),
            total: Some(eur(o.total_cents())),
            currency: "EUR".to_string(),
            payment_method: o.pay.to_string(),
            shipping_country: o.ship.to_string(),
            billing_country: o.bill.to_string(),
            payment_fingerprint: o.token.clone(),
            device_fingerprint: o.device.clone(),
            ip_address: o.ip.clone(),
            status: status as i32,
            store_id: String::new(),
            channel: o.channel.to_string(),
        })),
    }
}

fn review_event(
    catalog: &sim::Catalog,
    customers: &[Cust],
    r: &sim::RevSim,
    label: ReviewLabel,
    at: i64,
) -> Event {
    Event {
        payload: Some(Payload::Review(Review {
            review_id: r.id.clone(),
            customer_id: customers[r.cust].id.clone(),
            sku: catalog.products[r.prod].sku.clone(),
            rating: r.rating,
            title: r.title.clone(),
            text: r.text.clone(),
            ts: Some(ts(at)),
            label: label as i32,
        })),
    }
}

fn emit(
    catalog: &sim::Catalog,
    customers: &[Cust],
    by_signup: &[usize],
    act: &Activity,
    snapshots: &[sim::Snapshot],
) -> Vec<Event> {
    let mut head = Vec::new();
    let mut first_snapshots: Vec<&sim::Snapshot> = snapshots
        .iter()
        .filter(|s| s.ts == catalog.products[s.prod].created)
        .collect();
    first_snapshots.sort_by_key(|s| (s.ts, s.prod));
    head.extend(first_snapshots.iter().map(|s| product_event(catalog, s)));
    head.extend(by_signup.iter().map(|&i| {
        let c = &customers[i];
        customer_event(c, c.signup, c.gold)
    }));

    let mut rest: Vec<(i64, Event)> = Vec::new();
    for s in snapshots
        .iter()
        .filter(|s| s.ts != catalog.products[s.prod].created)
    {
        rest.push((s.ts, product_event(catalog, s)));
    }
    for &(ci, at) in &act.upgrades {
        rest.push((at, customer_event(&customers[ci], at, true)));
    }
    for o in &act.orders {
        rest.push((
            o.ts,
            order_event(catalog, customers, o, OrderStatus::Placed, o.ts),
        ));
        let updates = [
            (o.paid, OrderStatus::Paid),
            (o.cancelled, OrderStatus::Cancelled),
            (o.refunded, OrderStatus::Refunded),
            (o.charged_back, OrderStatus::ChargedBack),
        ];
        for (at, status) in updates {
            if let Some(at) = at {
                rest.push((at, order_event(catalog, customers, o, status, at)));
            }
        }
    }
    for ix in &act.ixs {
        rest.push((
            ix.ts,
            Event {
                payload: Some(Payload::Interaction(Interaction {
                    event_id: String::new(),
                    customer_id: customers[ix.cust].id.clone(),
                    sku: ix
                        .prod
                        .map(|p| catalog.products[p].sku.clone())
                        .unwrap_or_default(),
                    kind: ix.kind as i32,
                    query: ix.query.clone(),
                    ts: Some(ts(ix.ts)),
                    session_id: ix.session.clone(),
                    value: ix.value,
                })),
            },
        ));
    }
    for r in &act.reviews {
        rest.push((
            r.ts,
            review_event(catalog, customers, r, ReviewLabel::Unspecified, r.ts),
        ));
        if let Some(at) = r.labelled_at {
            let label = if r.spam.is_some() {
                ReviewLabel::Spam
            } else {
                ReviewLabel::Genuine
            };
            rest.push((at, review_event(catalog, customers, r, label, at)));
        }
    }
    // Sort keys, not the (large) events. Ties keep the push order above: an order comes before
    // its updates and its PURCHASE interactions.
    let mut order: Vec<(i64, usize)> = rest.iter().enumerate().map(|(i, e)| (e.0, i)).collect();
    order.sort_unstable();
    let mut slots: Vec<Option<Event>> = rest.into_iter().map(|e| Some(e.1)).collect();
    head.reserve(slots.len());
    let mut n_ix = 0usize;
    for (_, i) in order {
        let Some(mut e) = slots[i].take() else {
            continue;
        };
        if let Some(Payload::Interaction(x)) = &mut e.payload {
            n_ix += 1;
            x.event_id = format!("ix-{n_ix:08}");
        }
        head.push(e);
    }
    head
}

fn status_name(s: i32) -> &'static str {
    match OrderStatus::try_from(s) {
        Ok(OrderStatus::Paid) => "paid",
        Ok(OrderStatus::Refunded) => "refunded",
        Ok(OrderStatus::ChargedBack) => "charged_back",
        Ok(OrderStatus::Cancelled) => "cancelled",
        _ => "placed",
    }
}

fn kind_name(k: i32) -> &'static str {
    match InteractionKind::try_from(k) {
        Ok(InteractionKind::View) => "view",
        Ok(InteractionKind::Click) => "click",
        Ok(InteractionKind::AddToCart) => "add_to_cart",
        Ok(InteractionKind::RemoveFromCart) => "remove_from_cart",
        Ok(InteractionKind::Purchase) => "purchase",
        Ok(InteractionKind::Search) => "search",
        Ok(InteractionKind::Wishlist) => "wishlist",
        Ok(InteractionKind::Rate) => "rate",
        _ => "unspecified",
    }
}

fn summarise(
    events: &[Event],
    catalog: &sim::Catalog,
    customers: &[Cust],
    n_genuine: usize,
    act: &Activity,
    start: i64,
    end: i64,
) -> Summary {
    let mut counts = Counts {
        total: events.len(),
        ..Counts::default()
    };
    for e in events {
        match &e.payload {
            Some(Payload::Product(_)) => counts.products += 1,
            Some(Payload::Customer(_)) => counts.customers += 1,
            Some(Payload::Order(o)) => {
                *counts.orders.entry(status_name(o.status)).or_default() += 1
            }
            Some(Payload::Interaction(i)) => {
                *counts.interactions.entry(kind_name(i.kind)).or_default() += 1
            }
            Some(Payload::Review(r)) if r.label == ReviewLabel::Unspecified as i32 => {
                counts.reviews += 1
            }
            Some(Payload::Review(_)) => counts.review_labels += 1,
            None => {}
        }
    }
    let ids_with = |role: Role| {
        let mut v: Vec<(i64, String)> = customers
            .iter()
            .filter(|c| c.role == role)
            .map(|c| (c.signup, c.id.clone()))
            .collect();
        v.sort();
        v.into_iter().map(|x| x.1).collect::<Vec<_>>()
    };
    let mut last_purchase = vec![None; n_genuine];
    for o in act.orders.iter().filter(|o| o.fraud.is_none()) {
        if let Some(lp) = last_purchase.get_mut(o.cust) {
            *lp = Some(o.ts);
        }
    }
    let mut churned: Vec<ChurnedCustomer> = customers[..n_genuine]
        .iter()
        .zip(&last_purchase)
        .filter_map(|(c, lp)| {
            c.churn_at.map(|at| ChurnedCustomer {
                customer_id: c.id.clone(),
                churned_at: dt(at),
                last_purchase: lp.map(dt),
            })
        })
        .collect();
    churned.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    let sku = |p: usize| catalog.products[p].sku.clone();
    Summary {
        start: dt(start),
        end: dt(end),
        counts,
        genuine_customers: ids_with(Role::Genuine),
        fraud_accounts: ids_with(Role::Fraudster),
        spam_accounts: ids_with(Role::Spammer),
        fraud_orders: act
            .orders
            .iter()
            .filter_map(|o| {
                o.fraud.map(|kind| FraudOrder {
                    order_id: o.id.clone(),
                    customer_id: customers[o.cust].id.clone(),
                    kind,
                    ts: dt(o.ts),
                    total: eur(o.total_cents()),
                    device_fingerprint: o.device.clone(),
                    charged_back_at: o.charged_back.map(dt),
                })
            })
            .collect(),
        spam_reviews: act
            .reviews
            .iter()
            .filter_map(|r| {
                r.spam.map(|kind| SpamReview {
                    review_id: r.id.clone(),
                    customer_id: customers[r.cust].id.clone(),
                    sku: sku(r.prod),
                    kind,
                    ts: dt(r.ts),
                    labelled_at: r.labelled_at.map(dt),
                })
            })
            .collect(),
        genuine_labelled_reviews: act
            .reviews
            .iter()
            .filter(|r| r.spam.is_none() && r.labelled_at.is_some())
            .map(|r| r.id.clone())
            .collect(),
        churned,
        promotions: catalog
            .products
            .iter()
            .flat_map(|p| {
                p.promo_weeks.iter().map(|&w| PromotionWeek {
                    sku: p.sku.clone(),
                    start: dt(w),
                    discount: p.discount,
                })
            })
            .collect(),
        co_purchase_pairs: catalog
            .products
            .iter()
            .filter_map(|p| p.complement.map(|c| (p.sku.clone(), sku(c))))
            .collect(),
        out_of_stock: catalog
            .products
            .iter()
            .filter(|p| matches!(p.gone, Some((_, sim::Gone::OutOfStock))))
            .map(|p| p.sku.clone())
            .collect(),
        inactive: catalog
            .products
            .iter()
            .filter(|p| matches!(p.gone, Some((_, sim::Gone::Inactive))))
            .map(|p| p.sku.clone())
            .collect(),
    }
}

#[cfg(test)]
mod tests;
