//! Tests of the generated dataset: shape, validity, ordering and the planted signals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use chrono::{Datelike, TimeZone};

use super::*;

const DAY_SECS: i64 = 86_400;

fn fixed_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap()
}

/// The default-sized dataset with a fixed end date, generated once for all tests.
fn data() -> &'static DemoData {
    static DATA: OnceLock<DemoData> = OnceLock::new();
    DATA.get_or_init(|| {
        generate(&DemoConfig {
            end: fixed_end(),
            ..DemoConfig::default()
        })
    })
}

fn secs(t: Option<&prost_types::Timestamp>) -> i64 {
    t.expect("timestamp").seconds
}

fn event_ts(e: &Event) -> i64 {
    match e.payload.as_ref().expect("payload") {
        Payload::Order(o) => secs(o.ts.as_ref()),
        Payload::Interaction(i) => secs(i.ts.as_ref()),
        Payload::Review(r) => secs(r.ts.as_ref()),
        Payload::Product(p) => secs(p.ts.as_ref()),
        Payload::Customer(c) => secs(c.ts.as_ref()),
    }
}

/// The event id as the feature store defines it.
fn event_id(e: &Event) -> String {
    match e.payload.as_ref().expect("payload") {
        Payload::Order(o) => format!("order/{}/{}", o.order_id, o.status),
        Payload::Interaction(i) => format!("interaction/{}", i.event_id),
        Payload::Review(r) => format!("review/{}/{}", r.review_id, r.label),
        Payload::Product(p) => format!("product/{}/{}", p.sku, secs(p.ts.as_ref())),
        Payload::Customer(c) => format!("customer/{}/{}", c.customer_id, secs(c.ts.as_ref())),
    }
}

fn orders(d: &DemoData) -> impl Iterator<Item = &Order> {
    d.events.iter().filter_map(|e| match &e.payload {
        Some(Payload::Order(o)) => Some(o),
        _ => None,
    })
}

fn placed(d: &DemoData) -> impl Iterator<Item = &Order> {
    orders(d).filter(|o| o.status == OrderStatus::Placed as i32)
}

fn reviews(d: &DemoData) -> impl Iterator<Item = &Review> {
    d.events.iter().filter_map(|e| match &e.payload {
        Some(Payload::Review(r)) => Some(r),
        _ => None,
    })
}

fn products(d: &DemoData) -> impl Iterator<Item = &Product> {
    d.events.iter().filter_map(|e| match &e.payload {
        Some(Payload::Product(p)) => Some(p),
        _ => None,
    })
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

// ------------------------------------------------------------------------------------------------
// The checker: the feature store's validation rules, a little stricter.

/// Same rule as the feature store: 13-19 digits (spaces/dashes allowed) passing Luhn.
fn looks_like_card_number(v: &str) -> bool {
    let digits: Option<Vec<u32>> = v
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect();
    let Some(digits) = digits else { return false };
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                if d * 2 > 9 { d * 2 - 9 } else { d * 2 }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

struct Checker {
    start: i64,
    end: i64,
    now: i64,
    errors: Vec<String>,
}

impl Checker {
    fn fail(&mut self, what: String) {
        if self.errors.len() < 20 {
            self.errors.push(what);
        }
    }
    fn id(&mut self, field: &str, v: &str) {
        if v.is_empty() || v.len() > 128 || v.chars().any(char::is_control) {
            self.fail(format!("{field}: bad id {v:?}"));
        }
    }
    fn ts(&mut self, field: &str, t: Option<&prost_types::Timestamp>) {
        match t {
            None => self.fail(format!("{field}: missing")),
            Some(t) => {
                if !(0..1_000_000_000).contains(&t.nanos)
                    || t.seconds < 0
                    || t.seconds > self.now
                    || t.seconds < self.start
                    || t.seconds >= self.end
                {
                    self.fail(format!(
                        "{field}: {t:?} outside [{}, {})",
                        self.start, self.end
                    ));
                }
            }
        }
    }
    fn amount(&mut self, field: &str, v: f64) {
        if !v.is_finite() || !(0.0..=1e9).contains(&v) {
            self.fail(format!("{field}: bad amount {v}"));
        }
    }
    fn country(&mut self, field: &str, v: &str) {
        if !(v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase())) {
            self.fail(format!("{field}: bad country {v:?}"));
        }
    }
    fn text(&mut self, field: &str, v: &str) {
        let limit = if field.ends_with("title") {
            500
        } else {
            10_000
        };
        if v.len() >= limit {
            self.fail(format!("{field}: {} bytes", v.len()));
        }
    }
    fn attributes(&mut self, field: &str, attrs: &std::collections::BTreeMap<String, String>) {
        for (k, v) in attrs {
            let key_ok = !k.is_empty()
                && k.len() <= 64
                && k.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !key_ok || v.len() > 256 {
                self.fail(format!("{field}: bad attribute {k:?}={v:?}"));
            }
        }
    }

    fn event(&mut self, e: &Event) {
        match e.payload.as_ref() {
            None => self.fail("event without payload".into()),
            Some(Payload::Order(o)) => {
                self.id("order.order_id", &o.order_id);
                self.id("order.customer_id", &o.customer_id);
                self.ts("order.ts", o.ts.as_ref());
                if o.lines.is_empty() || o.lines.len() > 4 {
                    self.fail(format!("{}: {} lines", o.order_id, o.lines.len()));
                }
                let mut sum = 0.0;
                for l in &o.lines {
                    self.id("order.lines.sku", &l.sku);
                    if l.quantity < 1 {
                        self.fail(format!("{}: quantity {}", o.order_id, l.quantity));
                    }
                    self.amount("order.lines.unit_price", l.unit_price);
                    sum += l.quantity as f64 * l.unit_price;
                }
                match o.total {
                    Some(t) => {
                        self.amount("order.total", t);
                        if (t - sum).abs() > 0.005 {
                            self.fail(format!("{}: total {t} != lines {sum}", o.order_id));
                        }
                    }
                    None => self.fail(format!("{}: no total", o.order_id)),
                }
                if o.currency != "EUR" {
                    self.fail(format!("{}: currency {:?}", o.order_id, o.currency));
                }
                if !["card", "paypal", "invoice"].contains(&o.payment_method.as_str()) {
                    self.fail(format!(
                        "{}: payment method {:?}",
                        o.order_id, o.payment_method
                    ));
                }
                self.country("order.shipping_country", &o.shipping_country);
                self.country("order.billing_country", &o.billing_country);
                let token_ok = if o.payment_method == "invoice" {
                    o.payment_fingerprint.is_empty()
                } else {
                    o.payment_fingerprint.starts_with("tok_")
                };
                if !token_ok || looks_like_card_number(&o.payment_fingerprint) {
                    self.fail(format!(
                        "{}: payment fingerprint {:?}",
                        o.order_id, o.payment_fingerprint
                    ));
                }
                if !o.device_fingerprint.starts_with("dev_") || o.ip_address.is_empty() {
                    self.fail(format!("{}: device/ip", o.order_id));
                }
                if !(1..=5).contains(&o.status) {
                    self.fail(format!("{}: status {}", o.order_id, o.status));
                }
                if !["web", "app"].contains(&o.channel.as_str()) {
                    self.fail(format!("{}: channel {:?}", o.order_id, o.channel));
                }
            }
            Some(Payload::Interaction(i)) => {
                self.id("interaction.event_id", &i.event_id);
                self.id("interaction.customer_id", &i.customer_id);
                self.id("interaction.session_id", &i.session_id);
                self.ts("interaction.ts", i.ts.as_ref());
                match InteractionKind::try_from(i.kind) {
                    Ok(InteractionKind::Search) => {
                        if i.query.trim().is_empty() || !i.sku.is_empty() {
                            self.fail(format!("{}: search {:?} {:?}", i.event_id, i.query, i.sku));
                        }
                    }
                    Ok(InteractionKind::Unspecified) | Err(_) => {
                        self.fail(format!("{}: kind {}", i.event_id, i.kind));
                    }
                    Ok(_) => {
                        self.id("interaction.sku", &i.sku);
                        if !i.query.is_empty() {
                            self.fail(format!("{}: query on a non-search", i.event_id));
                        }
                    }
                }
                self.text("interaction.query", &i.query);
                if !i.value.is_finite() || i.value < 0.0 {
                    self.fail(format!("{}: value {}", i.event_id, i.value));
                }
            }
            Some(Payload::Review(r)) => {
                self.id("review.review_id", &r.review_id);
                self.id("review.customer_id", &r.customer_id);
                self.id("review.sku", &r.sku);
                self.ts("review.ts", r.ts.as_ref());
                if !(1..=5).contains(&r.rating) {
                    self.fail(format!("{}: rating {}", r.review_id, r.rating));
                }
                self.text("review.title", &r.title);
                self.text("review.text", &r.text);
                if r.title.trim().is_empty() || r.text.trim().is_empty() {
                    self.fail(format!("{}: empty text", r.review_id));
                }
                if ReviewLabel::try_from(r.label).is_err() {
                    self.fail(format!("{}: label {}", r.review_id, r.label));
                }
            }
            Some(Payload::Product(p)) => {
                self.id("product.sku", &p.sku);
                self.ts("product.ts", p.ts.as_ref());
                self.text("product.title", &p.title);
                self.text("product.description", &p.description);
                if p.category_path.len() != 2
                    || p.category_path
                        .iter()
                        .any(|c| c.trim().is_empty() || c.contains(" > "))
                {
                    self.fail(format!("{}: category {:?}", p.sku, p.category_path));
                }
                if p.title.is_empty() || p.brand.is_empty() {
                    self.fail(format!("{}: no title/brand", p.sku));
                }
                self.amount("product.price", p.price);
                if p.price <= 0.0 || p.currency != "EUR" || p.stock < 0 {
                    self.fail(format!(
                        "{}: price {} {} stock {}",
                        p.sku, p.price, p.currency, p.stock
                    ));
                }
                self.attributes("product.attributes", &p.attributes);
            }
            Some(Payload::Customer(c)) => {
                self.id("customer.customer_id", &c.customer_id);
                self.ts("customer.ts", c.ts.as_ref());
                self.ts("customer.signup_ts", c.signup_ts.as_ref());
                if secs(c.signup_ts.as_ref()) > secs(c.ts.as_ref()) {
                    self.fail(format!("{}: signup after record", c.customer_id));
                }
                self.country("customer.country", &c.country);
                self.attributes("customer.attributes", &c.attributes);
                for key in ["tier", "acquisition_channel", "age_band"] {
                    if !c.attributes.contains_key(key) {
                        self.fail(format!("{}: no {key}", c.customer_id));
                    }
                }
            }
        }
    }
}

fn check_well_formed(d: &DemoData) {
    let mut c = Checker {
        start: d.summary.start.timestamp(),
        end: d.summary.end.timestamp(),
        now: Utc::now().timestamp(),
        errors: Vec::new(),
    };
    for e in &d.events {
        c.event(e);
    }
    let mut ids = BTreeSet::new();
    for e in &d.events {
        let id = event_id(e);
        if !ids.insert(id.clone()) {
            c.fail(format!("duplicate event id {id}"));
        }
    }
    assert!(c.errors.is_empty(), "{:#?}", c.errors);
}

fn check_stream_order(d: &DemoData) {
    let events = &d.events;
    // Head: products by creation, then customers by signup.
    let n_prod_head = events
        .iter()
        .take_while(|e| matches!(e.payload, Some(Payload::Product(_))))
        .count();
    let n_cust_head = events[n_prod_head..]
        .iter()
        .take_while(|e| matches!(e.payload, Some(Payload::Customer(_))))
        .count();
    let head = n_prod_head + n_cust_head;
    let skus: BTreeSet<&str> = products(d).map(|p| p.sku.as_str()).collect();
    assert_eq!(
        n_prod_head,
        skus.len(),
        "one creation snapshot per product up front"
    );
    assert!(
        events[..n_prod_head]
            .windows(2)
            .all(|w| event_ts(&w[0]) <= event_ts(&w[1]))
    );
    assert!(
        events[n_prod_head..head]
            .windows(2)
            .all(|w| event_ts(&w[0]) <= event_ts(&w[1]))
    );
    assert_eq!(
        events[n_prod_head..head].len(),
        d.summary.genuine_customers.len()
            + d.summary.fraud_accounts.len()
            + d.summary.spam_accounts.len()
    );
    // Tail: by time.
    assert!(
        events[head..]
            .windows(2)
            .all(|w| event_ts(&w[0]) <= event_ts(&w[1])),
        "tail not sorted by ts"
    );

    // Referential integrity in stream order, status updates after their order, labels after reviews.
    let mut known_sku: BTreeMap<&str, i64> = BTreeMap::new();
    let mut known_customer: BTreeMap<&str, i64> = BTreeMap::new();
    let mut placed_at: BTreeMap<&str, i64> = BTreeMap::new();
    let mut reviewed_at: BTreeMap<&str, i64> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let t = event_ts(e);
        match e.payload.as_ref().unwrap() {
            Payload::Product(p) => {
                known_sku.entry(&p.sku).or_insert(t);
            }
            Payload::Customer(c) => {
                known_customer
                    .entry(&c.customer_id)
                    .or_insert(secs(c.signup_ts.as_ref()));
            }
            Payload::Order(o) => {
                let signup = known_customer[o.customer_id.as_str()];
                assert!(signup <= t, "{} before signup", o.order_id);
                for l in &o.lines {
                    assert!(
                        known_sku[l.sku.as_str()] <= t,
                        "{} sells {} before it exists",
                        o.order_id,
                        l.sku
                    );
                }
                if o.status == OrderStatus::Placed as i32 {
                    assert!(placed_at.insert(&o.order_id, t).is_none());
                } else {
                    let p = placed_at.get(o.order_id.as_str()).copied();
                    assert!(
                        p.is_some_and(|p| p < t),
                        "update of {} at {i} before it was placed",
                        o.order_id
                    );
                }
            }
            Payload::Interaction(x) => {
                assert!(
                    known_customer[x.customer_id.as_str()] <= t,
                    "{} before signup",
                    x.event_id
                );
                if !x.sku.is_empty() {
                    assert!(
                        known_sku[x.sku.as_str()] <= t,
                        "{} on {} before it exists",
                        x.event_id,
                        x.sku
                    );
                }
            }
            Payload::Review(r) => {
                assert!(known_customer[r.customer_id.as_str()] < t);
                assert!(known_sku[r.sku.as_str()] <= t);
                if r.label == ReviewLabel::Unspecified as i32 {
                    reviewed_at.insert(&r.review_id, t);
                } else {
                    assert!(
                        reviewed_at
                            .get(r.review_id.as_str())
                            .is_some_and(|&x| x < t)
                    );
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------

#[test]
fn same_config_gives_the_same_events() {
    let cfg = DemoConfig {
        customers: 300,
        products: 60,
        days: 365,
        end: fixed_end(),
        ..DemoConfig::default()
    };
    let a = generate(&cfg);
    let b = generate(&cfg);
    assert_eq!(a.events.len(), b.events.len());
    assert!(a.events == b.events, "events differ");
    assert_eq!(a.summary, b.summary);
    let c = generate(&DemoConfig { seed: 43, ..cfg });
    assert!(a.events != c.events, "another seed gives other data");
}

#[test]
fn default_config_ends_today_at_midnight() {
    let cfg = DemoConfig::default();
    assert_eq!(cfg.end.time(), NaiveTime::MIN);
    assert!(cfg.end <= Utc::now() && Utc::now() - cfg.end <= chrono::TimeDelta::days(1));
    assert_eq!(
        (cfg.seed, cfg.customers, cfg.products, cfg.days),
        (42, 2_000, 300, 730)
    );
}

#[test]
fn every_event_is_well_formed() {
    check_well_formed(data());
}

#[test]
fn tiny_and_odd_configs_still_work() {
    for cfg in [
        DemoConfig {
            customers: 0,
            products: 0,
            days: 0,
            end: fixed_end(),
            seed: 1,
        },
        DemoConfig {
            customers: 30,
            products: 15,
            days: 40,
            end: fixed_end(),
            seed: 2,
        },
        DemoConfig {
            customers: 200,
            products: 50,
            days: 120,
            end: fixed_end(),
            seed: 3,
        },
    ] {
        let d = generate(&cfg);
        check_well_formed(&d);
        check_stream_order(&d);
        assert!(
            d.summary.fraud_orders.len() >= 15 && d.summary.spam_reviews.len() >= 20,
            "{cfg:?}"
        );
    }
}

#[test]
fn events_come_in_stream_order() {
    check_stream_order(data());
}

#[test]
fn default_volume_is_reasonable() {
    let s = &data().summary;
    let c = &s.counts;
    assert!((60_000..=120_000).contains(&c.total), "{s}");
    assert_eq!(c.total, data().events.len());
    for kind in [
        "view",
        "click",
        "add_to_cart",
        "remove_from_cart",
        "purchase",
        "search",
        "wishlist",
    ] {
        assert!(
            c.interactions.get(kind).copied().unwrap_or(0) > 0,
            "no {kind}"
        );
    }
    for status in ["placed", "paid", "cancelled", "refunded", "charged_back"] {
        assert!(
            c.orders.get(status).copied().unwrap_or(0) > 0,
            "no {status}"
        );
    }
    let n_placed = c.orders["placed"] as f64;
    let refund_share = c.orders["refunded"] as f64 / n_placed;
    assert!(
        (0.01..0.035).contains(&refund_share),
        "refunds {refund_share}"
    );
    assert!(c.orders["paid"] as f64 / n_placed > 0.9);
    // Reviews on 5-10% of purchased lines.
    let lines: usize = placed(data()).map(|o| o.lines.len()).sum();
    let genuine_reviews = c.reviews - s.spam_reviews.len();
    let share = genuine_reviews as f64 / lines as f64;
    assert!((0.04..=0.1).contains(&share), "review share {share}");
    // Catalogue.
    let skus: BTreeSet<&str> = products(data()).map(|p| p.sku.as_str()).collect();
    assert_eq!(skus.len(), 300);
    let categories: BTreeSet<&Vec<String>> = products(data()).map(|p| &p.category_path).collect();
    assert_eq!(categories.len(), 12);
    let oos = s.out_of_stock.len() as f64 / 300.0;
    assert!((0.03..=0.07).contains(&oos) && !s.inactive.is_empty());
    println!("{s}");
}

#[test]
fn about_a_third_of_customers_churn_and_stop_buying() {
    let d = data();
    let s = &d.summary;
    let share = s.churned.len() as f64 / s.genuine_customers.len() as f64;
    assert!((0.3..=0.4).contains(&share), "churned {share}");
    let fraud: BTreeSet<&str> = s.fraud_orders.iter().map(|f| f.order_id.as_str()).collect();
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for o in placed(d).filter(|o| !fraud.contains(o.order_id.as_str())) {
        last.insert(&o.customer_id, secs(o.ts.as_ref()));
    }
    for c in &s.churned {
        assert!(c.churned_at < s.end);
        let l = last.get(c.customer_id.as_str()).copied();
        assert_eq!(
            l,
            c.last_purchase.map(|t| t.timestamp()),
            "{}",
            c.customer_id
        );
        assert!(
            l.is_none_or(|l| l < c.churned_at.timestamp()),
            "{} bought after churning",
            c.customer_id
        );
    }
    // Interactions fade out: nothing 60+ days after churn (but a fraudster may take over a
    // dormant account).
    let churned_at: BTreeMap<&str, i64> = s
        .churned
        .iter()
        .map(|c| (c.customer_id.as_str(), c.churned_at.timestamp()))
        .collect();
    let takeovers: BTreeSet<(&str, i64)> = s
        .fraud_orders
        .iter()
        .map(|f| (f.customer_id.as_str(), f.ts.timestamp()))
        .collect();
    for e in &d.events {
        if let Some(Payload::Interaction(i)) = &e.payload
            && let Some(&at) = churned_at.get(i.customer_id.as_str())
        {
            let t = secs(i.ts.as_ref());
            let fraud = takeovers
                .range((i.customer_id.as_str(), t)..=(i.customer_id.as_str(), t + 600))
                .next()
                .is_some();
            assert!(
                fraud || t < at + 61 * DAY_SECS,
                "{} long after churn",
                i.event_id
            );
        }
    }
}

#[test]
fn planted_fraud_is_there_and_labelled() {
    let d = data();
    let s = &d.summary;
    let n_orders = s.counts.orders["placed"];
    let share = s.fraud_orders.len() as f64 / n_orders as f64;
    assert!(
        s.fraud_orders.len() >= 15 && (0.005..=0.01).contains(&share),
        "fraud share {share}"
    );
    let by_id: BTreeMap<&str, &Order> = placed(d).map(|o| (o.order_id.as_str(), o)).collect();
    let charged_back: BTreeSet<&str> = orders(d)
        .filter(|o| o.status == OrderStatus::ChargedBack as i32)
        .map(|o| o.order_id.as_str())
        .collect();
    let signup: BTreeMap<&str, i64> = d
        .events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(Payload::Customer(c)) => {
                Some((c.customer_id.as_str(), secs(c.signup_ts.as_ref())))
            }
            _ => None,
        })
        .collect();
    let mut kinds = BTreeSet::new();
    for f in &s.fraud_orders {
        kinds.insert(f.kind);
        let o = by_id[f.order_id.as_str()];
        assert_eq!(o.customer_id, f.customer_id);
        assert_eq!(o.total, Some(f.total));
        assert_eq!(
            charged_back.contains(f.order_id.as_str()),
            f.charged_back_at.is_some(),
            "{}",
            f.order_id
        );
        let t = secs(o.ts.as_ref());
        match f.kind {
            FraudKind::AccountTakeover => {
                assert_ne!(o.billing_country, o.shipping_country);
                assert!(!s.fraud_accounts.contains(&f.customer_id));
            }
            FraudKind::NewAccount => assert!(t - signup[o.customer_id.as_str()] < 3_600),
            FraudKind::DeviceBurst => {
                let same: Vec<&FraudOrder> = s
                    .fraud_orders
                    .iter()
                    .filter(|g| {
                        g.device_fingerprint == f.device_fingerprint
                            && (g.ts - f.ts).num_seconds().abs() <= 600
                    })
                    .collect();
                assert!(same.len() >= 3, "{} burst of {}", f.order_id, same.len());
            }
        }
    }
    assert_eq!(kinds.len(), 3);
    // Only planted fraud is charged back, and most of it is.
    assert!(
        charged_back
            .iter()
            .all(|id| s.fraud_orders.iter().any(|f| f.order_id == *id))
    );
    assert!(charged_back.len() * 10 >= s.fraud_orders.len() * 7);
    // High value: well above the median order.
    let all_median = median(placed(d).filter_map(|o| o.total).collect());
    let fraud_totals: Vec<f64> = s.fraud_orders.iter().map(|f| f.total).collect();
    assert!(
        median(fraud_totals.clone()) > 4.0 * all_median,
        "fraud median vs {all_median}"
    );
    let above = fraud_totals.iter().filter(|&&t| t > all_median).count();
    assert!(above * 10 >= fraud_totals.len() * 9);
    // Genuine noise exists: some genuine orders are billed abroad too.
    let fraud: BTreeSet<&str> = s.fraud_orders.iter().map(|f| f.order_id.as_str()).collect();
    assert!(
        placed(d).any(
            |o| !fraud.contains(o.order_id.as_str()) && o.billing_country != o.shipping_country
        )
    );
}

#[test]
fn planted_spam_is_there_and_half_labelled() {
    let d = data();
    let s = &d.summary;
    let n_reviews = s.counts.reviews;
    let share = s.spam_reviews.len() as f64 / n_reviews as f64;
    assert!(
        s.spam_reviews.len() >= 20 && (0.02..=0.06).contains(&share),
        "spam share {share}"
    );
    let spam_labels: BTreeSet<&str> = reviews(d)
        .filter(|r| r.label == ReviewLabel::Spam as i32)
        .map(|r| r.review_id.as_str())
        .collect();
    let genuine_labels: BTreeSet<&str> = reviews(d)
        .filter(|r| r.label == ReviewLabel::Genuine as i32)
        .map(|r| r.review_id.as_str())
        .collect();
    let first: BTreeMap<&str, &Review> = reviews(d)
        .filter(|r| r.label == ReviewLabel::Unspecified as i32)
        .map(|r| (r.review_id.as_str(), r))
        .collect();
    let mut kinds = BTreeSet::new();
    for sp in &s.spam_reviews {
        kinds.insert(sp.kind);
        assert_eq!(
            spam_labels.contains(sp.review_id.as_str()),
            sp.labelled_at.is_some()
        );
        assert!(!genuine_labels.contains(sp.review_id.as_str()));
        let r = first[sp.review_id.as_str()];
        assert_eq!(
            (r.customer_id.as_str(), r.sku.as_str()),
            (sp.customer_id.as_str(), sp.sku.as_str())
        );
        assert!(s.spam_accounts.contains(&sp.customer_id));
        match sp.kind {
            SpamKind::PromotionalLink => assert!(r.text.contains("http://"), "{}", r.text),
            SpamKind::RatingBurst => {
                assert_eq!(r.rating, 5);
                let burst = s
                    .spam_reviews
                    .iter()
                    .filter(|o| o.sku == sp.sku && (o.ts - sp.ts).num_seconds().abs() <= 3_600)
                    .count();
                assert!(burst >= 5);
            }
            SpamKind::DuplicateText => {
                assert!(
                    s.spam_reviews
                        .iter()
                        .any(|o| o.kind == SpamKind::DuplicateText && o.sku != sp.sku)
                );
            }
            SpamKind::RatingMismatch => assert!(r.rating == 1 || r.rating == 5),
        }
    }
    assert_eq!(kinds.len(), 4);
    assert!(
        spam_labels.len() * 10 >= s.spam_reviews.len() * 3
            && spam_labels.len() * 10 <= s.spam_reviews.len() * 7
    );
    assert_eq!(genuine_labels.len(), s.genuine_labelled_reviews.len());
    assert!(genuine_labels.len() >= 20);
    // Genuine reviewers bought what they review; spammers did not buy anything.
    let bought: BTreeSet<(&str, &str)> = placed(d)
        .flat_map(|o| {
            o.lines
                .iter()
                .map(move |l| (o.customer_id.as_str(), l.sku.as_str()))
        })
        .collect();
    let spam_ids: BTreeSet<&str> = s
        .spam_reviews
        .iter()
        .map(|x| x.review_id.as_str())
        .collect();
    for r in first
        .values()
        .filter(|r| !spam_ids.contains(r.review_id.as_str()))
    {
        assert!(
            bought.contains(&(r.customer_id.as_str(), r.sku.as_str())),
            "{}",
            r.review_id
        );
    }
    // Sentiment follows rating in genuine reviews.
    for r in first
        .values()
        .filter(|r| !spam_ids.contains(r.review_id.as_str()))
    {
        if r.rating >= 4 {
            assert!(
                !r.text.contains("Not worth the money") && !r.text.contains("terrible"),
                "{}",
                r.text
            );
        }
    }
}

/// Units per day of promoted products in their promotion weeks vs their other available days.
#[test]
fn promotions_lift_sales_and_prices_follow_snapshots() {
    let d = data();
    let s = &d.summary;
    let mut snaps: BTreeMap<&str, Vec<(i64, f64, bool, i64)>> = BTreeMap::new();
    for p in products(d) {
        snaps.entry(&p.sku).or_default().push((
            secs(p.ts.as_ref()),
            p.price,
            p.on_promotion,
            p.stock,
        ));
    }
    for v in snaps.values_mut() {
        v.sort_by_key(|x| x.0);
    }
    // Every line is priced from the newest snapshot and flagged as promotion when that one is.
    let mut promo_lines = 0;
    for o in placed(d) {
        let t = secs(o.ts.as_ref());
        for l in &o.lines {
            let v = &snaps[l.sku.as_str()];
            let i = v.partition_point(|x| x.0 <= t);
            assert!(i > 0);
            let (_, price, promo, _) = v[i - 1];
            assert_eq!(
                (l.unit_price, l.promotion),
                (price, promo),
                "{} {}",
                o.order_id,
                l.sku
            );
            promo_lines += usize::from(l.promotion);
        }
    }
    assert!(promo_lines > 100);

    let start = s.start.timestamp();
    let days = ((s.end.timestamp() - start) / DAY_SECS) as usize;
    let fraud: BTreeSet<&str> = s.fraud_orders.iter().map(|f| f.order_id.as_str()).collect();
    let mut units: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for o in placed(d).filter(|o| !fraud.contains(o.order_id.as_str())) {
        let day = ((secs(o.ts.as_ref()) - start) / DAY_SECS) as usize;
        for l in &o.lines {
            units.entry(&l.sku).or_insert_with(|| vec![0; days])[day] += l.quantity;
        }
    }
    let mut promo_days: BTreeMap<&str, BTreeSet<usize>> = BTreeMap::new();
    for w in &s.promotions {
        let first = ((w.start.timestamp() - start) / DAY_SECS) as usize;
        promo_days
            .entry(&w.sku)
            .or_default()
            .extend(first..first + 7);
        assert!((0.15..=0.25).contains(&w.discount));
        assert_eq!(w.start.weekday(), chrono::Weekday::Mon);
    }
    let (mut pu, mut pd, mut ou, mut od) = (0i64, 0usize, 0i64, 0usize);
    for (sku, pdays) in &promo_days {
        let v = &snaps[sku];
        let created = ((v[0].0 - start) / DAY_SECS) as usize + 1;
        let gone = v
            .iter()
            .find(|x| x.3 == 0)
            .map_or(days, |x| ((x.0 - start) / DAY_SECS) as usize);
        let u = units.get(sku).cloned().unwrap_or_else(|| vec![0; days]);
        for (day, &units) in u.iter().enumerate().take(gone).skip(created) {
            if pdays.contains(&day) {
                pu += units;
                pd += 1;
            } else {
                ou += units;
                od += 1;
            }
        }
    }
    let lift = (pu as f64 / pd as f64) / (ou as f64 / od as f64);
    assert!((1.5..=2.8).contains(&lift), "promotion lift {lift}");
}

#[test]
fn demand_has_seasonality_affinity_and_complements() {
    let d = data();
    let mut by_weekday = [0usize; 7];
    let mut by_month = [0usize; 12];
    for o in placed(d) {
        let t = DateTime::from_timestamp(secs(o.ts.as_ref()), 0).unwrap();
        by_weekday[t.weekday().num_days_from_monday() as usize] += 1;
        by_month[t.month0() as usize] += 1;
    }
    let weekday = by_weekday[..5].iter().sum::<usize>() as f64 / 5.0;
    let weekend = by_weekday[5..].iter().sum::<usize>() as f64 / 2.0;
    assert!(
        weekend > 1.15 * weekday,
        "weekend {weekend} vs weekday {weekday}"
    );
    // Later months have more customers (growth), so compare December with its neighbours in time.
    assert!(
        by_month[11] as f64 > 1.3 * by_month[10] as f64
            || by_month[11] as f64 > 1.3 * by_month[0] as f64,
        "{by_month:?}"
    );
    assert!(by_month[11] > by_month[6] * 3 / 2, "{by_month:?}");

    // Category affinity: most of a regular customer's units fall in their top category.
    let category: BTreeMap<&str, &str> = products(d)
        .map(|p| (p.sku.as_str(), p.category_path[1].as_str()))
        .collect();
    let mut per_customer: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for o in placed(d) {
        for l in &o.lines {
            *per_customer
                .entry(&o.customer_id)
                .or_default()
                .entry(category[l.sku.as_str()])
                .or_default() += 1;
        }
    }
    let shares: Vec<f64> = per_customer
        .values()
        .filter(|m| m.values().sum::<i64>() >= 5)
        .map(|m| *m.values().max().unwrap() as f64 / m.values().sum::<i64>() as f64)
        .collect();
    let mean_share = shares.iter().sum::<f64>() / shares.len() as f64;
    assert!(
        shares.len() > 200 && mean_share > 0.45,
        "top-category share {mean_share} over {}",
        shares.len()
    );

    // Complements are bought together far more often than chance.
    let mut together = 0;
    let mut with_first = 0;
    let pairs: BTreeMap<&str, &str> = d
        .summary
        .co_purchase_pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    for o in placed(d) {
        let skus: BTreeSet<&str> = o.lines.iter().map(|l| l.sku.as_str()).collect();
        for s in &skus {
            if let Some(c) = pairs.get(s) {
                with_first += 1;
                together += usize::from(skus.contains(c));
            }
        }
    }
    assert!(
        together as f64 > 0.1 * with_first as f64,
        "{together} of {with_first}"
    );

    // Purchase rates are heterogeneous: the top 20% of buyers place far more than 20% of orders.
    let mut per: Vec<usize> = {
        let mut m: BTreeMap<&str, usize> = BTreeMap::new();
        for o in placed(d) {
            *m.entry(&o.customer_id).or_default() += 1;
        }
        m.into_values().collect()
    };
    per.sort_unstable_by(|a, b| b.cmp(a));
    let top: usize = per[..per.len() / 5].iter().sum();
    assert!(top * 2 > per.iter().sum::<usize>());
}

#[test]
fn sessions_lead_to_purchases() {
    let d = data();
    let mut sessions: BTreeMap<&str, Vec<&Interaction>> = BTreeMap::new();
    for e in &d.events {
        if let Some(Payload::Interaction(i)) = &e.payload {
            sessions.entry(&i.session_id).or_default().push(i);
        }
    }
    let is = |i: &Interaction, k: InteractionKind| i.kind == k as i32;
    let mut abandoned = 0;
    for s in sessions.values() {
        assert!(s.iter().all(|i| i.customer_id == s[0].customer_id));
        let bought: BTreeSet<&str> = s
            .iter()
            .filter(|i| is(i, InteractionKind::Purchase))
            .map(|i| i.sku.as_str())
            .collect();
        for sku in &bought {
            assert!(
                s.iter()
                    .any(|i| is(i, InteractionKind::View) && i.sku == *sku),
                "purchase without view"
            );
            assert!(
                s.iter()
                    .any(|i| is(i, InteractionKind::AddToCart) && i.sku == *sku)
            );
        }
        if bought.is_empty() && s.iter().any(|i| is(i, InteractionKind::AddToCart)) {
            abandoned += 1;
        }
    }
    assert!(abandoned > 100);
    // One PURCHASE interaction per order line.
    let lines: usize = placed(d).map(|o| o.lines.len()).sum();
    assert_eq!(d.summary.counts.interactions["purchase"], lines);
}
