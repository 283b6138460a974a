//! Domain events: validated, normalised forms of the protobuf events.
//!
//! Every incoming event goes through [`validate_event`], which destructures every field of the
//! protobuf message (a new proto field fails the build here until it is handled), collects every
//! problem with the path of the field, and produces an [`Event`]. Fingerprints are replaced by
//! keyed hashes on the way in ([`Hasher`]), so raw values never reach storage.

use std::collections::BTreeMap;

use augur_proto::featurestore as pb;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Microseconds since the Unix epoch, UTC.
pub type Micros = i64;

pub const MICROS_PER_SEC: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SEC;
/// Longest payment or device fingerprint an order may carry (and a scan may filter by).
pub const MAX_FINGERPRINT_BYTES: usize = 512;

/// Limits applied to incoming events.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_id_len: usize,
    pub max_text_bytes: usize,
    pub max_title_bytes: usize,
    pub max_lines: usize,
    pub max_attributes: usize,
    /// How far in the future (relative to the server clock) an event time may be.
    pub max_future_skew_micros: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_id_len: augur_runtime::error::MAX_ID_BYTES,
            max_text_bytes: 20_000,
            max_title_bytes: 500,
            max_lines: 1_000,
            max_attributes: 64,
            max_future_skew_micros: MICROS_PER_DAY,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i16)]
pub enum EventKind {
    Order = 1,
    Interaction = 2,
    Review = 3,
    Product = 4,
    Customer = 5,
    /// Internal: a customer was erased (propagates erasure to other replicas).
    Erasure = 6,
}

impl EventKind {
    pub fn from_i16(v: i16) -> Option<Self> {
        Some(match v {
            1 => Self::Order,
            2 => Self::Interaction,
            3 => Self::Review,
            4 => Self::Product,
            5 => Self::Customer,
            6 => Self::Erasure,
            _ => return None,
        })
    }
    pub fn from_proto(k: pb::EventKind) -> Option<Self> {
        Some(match k {
            pb::EventKind::Order => Self::Order,
            pb::EventKind::Interaction => Self::Interaction,
            pb::EventKind::Review => Self::Review,
            pb::EventKind::Product => Self::Product,
            pb::EventKind::Customer => Self::Customer,
            pb::EventKind::Unspecified => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderStatus {
    Placed,
    Paid,
    Refunded,
    ChargedBack,
    Cancelled,
}

impl OrderStatus {
    pub const ALL: [Self; 5] = [
        Self::Placed,
        Self::Paid,
        Self::Refunded,
        Self::ChargedBack,
        Self::Cancelled,
    ];
    fn from_proto(v: i32) -> Option<Self> {
        Some(match pb::OrderStatus::try_from(v).ok()? {
            pb::OrderStatus::Unspecified | pb::OrderStatus::Placed => Self::Placed,
            pb::OrderStatus::Paid => Self::Paid,
            pb::OrderStatus::Refunded => Self::Refunded,
            pb::OrderStatus::ChargedBack => Self::ChargedBack,
            pb::OrderStatus::Cancelled => Self::Cancelled,
        })
    }
    pub fn to_proto(self) -> pb::OrderStatus {
        match self {
            Self::Placed => pb::OrderStatus::Placed,
            Self::Paid => pb::OrderStatus::Paid,
            Self::Refunded => pb::OrderStatus::Refunded,
            Self::ChargedBack => pb::OrderStatus::ChargedBack,
            Self::Cancelled => pb::OrderStatus::Cancelled,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
            Self::ChargedBack => "charged_back",
            Self::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub unit_price: f64,
    pub promotion: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub order_id: String,
    /// Empty only for orders of an erased customer.
    pub customer_id: String,
    pub ts: Micros,
    pub lines: Vec<OrderLine>,
    pub total: f64,
    pub currency: String,
    pub payment_method: String,
    pub shipping_country: String,
    pub billing_country: String,
    /// Keyed hashes (hex), empty when not given.
    pub payment_hash: String,
    pub device_hash: String,
    pub ip_hash: String,
    pub status: OrderStatus,
    pub store_id: String,
    pub channel: String,
}

impl Order {
    pub fn units(&self) -> i64 {
        self.lines.iter().map(|l| l.quantity).sum()
    }
}

/// Interaction kinds; the index is used for per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionKind {
    View = 0,
    Click = 1,
    AddToCart = 2,
    Purchase = 3,
    Search = 4,
    Wishlist = 5,
    Rate = 6,
    RemoveFromCart = 7,
}

pub const INTERACTION_KINDS: usize = 8;

impl InteractionKind {
    pub const ALL: [Self; INTERACTION_KINDS] = [
        Self::View,
        Self::Click,
        Self::AddToCart,
        Self::Purchase,
        Self::Search,
        Self::Wishlist,
        Self::Rate,
        Self::RemoveFromCart,
    ];
    pub fn from_proto(v: i32) -> Option<Self> {
        Some(match pb::InteractionKind::try_from(v).ok()? {
            pb::InteractionKind::Unspecified => return None,
            pb::InteractionKind::View => Self::View,
            pb::InteractionKind::Click => Self::Click,
            pb::InteractionKind::AddToCart => Self::AddToCart,
            pb::InteractionKind::Purchase => Self::Purchase,
            pb::InteractionKind::Search => Self::Search,
            pb::InteractionKind::Wishlist => Self::Wishlist,
            pb::InteractionKind::Rate => Self::Rate,
            pb::InteractionKind::RemoveFromCart => Self::RemoveFromCart,
        })
    }
    pub fn to_proto(self) -> pb::InteractionKind {
        match self {
            Self::View => pb::InteractionKind::View,
            Self::Click => pb::InteractionKind::Click,
            Self::AddToCart => pb::InteractionKind::AddToCart,
            Self::Purchase => pb::InteractionKind::Purchase,
            Self::Search => pb::InteractionKind::Search,
            Self::Wishlist => pb::InteractionKind::Wishlist,
            Self::Rate => pb::InteractionKind::Rate,
            Self::RemoveFromCart => pb::InteractionKind::RemoveFromCart,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::View => "views",
            Self::Click => "clicks",
            Self::AddToCart => "add_to_cart",
            Self::Purchase => "purchases",
            Self::Search => "searches",
            Self::Wishlist => "wishlists",
            Self::Rate => "ratings",
            Self::RemoveFromCart => "remove_from_cart",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub event_id: String,
    pub customer_id: String,
    pub sku: String,
    pub kind: InteractionKind,
    pub query: String,
    pub ts: Micros,
    pub session_id: String,
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewLabel {
    Unspecified,
    Genuine,
    Spam,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Review {
    pub review_id: String,
    pub customer_id: String,
    pub sku: String,
    pub rating: i32,
    pub title: String,
    pub text: String,
    pub ts: Micros,
    pub label: ReviewLabel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    pub sku: String,
    pub title: String,
    pub description: String,
    pub category_path: Vec<String>,
    pub brand: String,
    pub price: f64,
    pub currency: String,
    pub stock: i64,
    pub active: bool,
    pub on_promotion: bool,
    pub ts: Micros,
    pub attributes: BTreeMap<String, String>,
}

impl Product {
    /// The category path joined with " > ", or empty.
    pub fn category(&self) -> String {
        self.category_path.join(" > ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Customer {
    pub customer_id: String,
    pub signup_ts: Option<Micros>,
    pub country: String,
    pub attributes: BTreeMap<String, String>,
    pub ts: Micros,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Order(Order),
    Interaction(Interaction),
    Review(Review),
    Product(Product),
    Customer(Customer),
}

/// The deduplication key of an order's event with this status (`order_id/status`). A status has
/// no `/`, so distinct (order, status) pairs never share a key, and the keys of an order's events
/// are known from its id alone (the indexed order lookup).
pub fn order_key(order_id: &str, status: OrderStatus) -> String {
    format!("{order_id}/{}", status.as_str())
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Order(_) => EventKind::Order,
            Self::Interaction(_) => EventKind::Interaction,
            Self::Review(_) => EventKind::Review,
            Self::Product(_) => EventKind::Product,
            Self::Customer(_) => EventKind::Customer,
        }
    }

    /// The deduplication key: the same key twice is the same event.
    pub fn key(&self) -> String {
        match self {
            Self::Order(o) => order_key(&o.order_id, o.status),
            Self::Interaction(i) => i.event_id.clone(),
            Self::Review(r) => format!(
                "{}/{}",
                r.review_id,
                match r.label {
                    ReviewLabel::Unspecified => "",
                    ReviewLabel::Genuine => "genuine",
                    ReviewLabel::Spam => "spam",
                }
            ),
            Self::Product(p) => format!("{}@{}", p.sku, p.ts),
            Self::Customer(c) => format!("{}@{}", c.customer_id, c.ts),
        }
    }

    /// The id a client knows the event by (for rejections and logs).
    pub fn display_id(&self) -> &str {
        match self {
            Self::Order(o) => &o.order_id,
            Self::Interaction(i) => &i.event_id,
            Self::Review(r) => &r.review_id,
            Self::Product(p) => &p.sku,
            Self::Customer(c) => &c.customer_id,
        }
    }

    pub fn ts(&self) -> Micros {
        match self {
            Self::Order(o) => o.ts,
            Self::Interaction(i) => i.ts,
            Self::Review(r) => r.ts,
            Self::Product(p) => p.ts,
            Self::Customer(c) => c.ts,
        }
    }

    /// The customer the event belongs to (empty for products and erased events).
    pub fn customer_id(&self) -> Option<&str> {
        let id = match self {
            Self::Order(o) => &o.customer_id,
            Self::Interaction(i) => &i.customer_id,
            Self::Review(r) => &r.customer_id,
            Self::Customer(c) => &c.customer_id,
            Self::Product(_) => return None,
        };
        (!id.is_empty()).then_some(id.as_str())
    }

    /// The single SKU of the event, for kinds that have one.
    pub fn sku(&self) -> Option<&str> {
        let sku = match self {
            Self::Interaction(i) => &i.sku,
            Self::Review(r) => &r.sku,
            Self::Product(p) => &p.sku,
            Self::Order(_) | Self::Customer(_) => return None,
        };
        (!sku.is_empty()).then_some(sku.as_str())
    }

    /// The same event with the customer's identity, free text and fingerprints removed.
    pub fn anonymised(&self) -> Option<Self> {
        match self {
            Self::Order(o) => Some(Self::Order(Order {
                customer_id: String::new(),
                payment_hash: String::new(),
                device_hash: String::new(),
                ip_hash: String::new(),
                shipping_country: String::new(),
                billing_country: String::new(),
                ..o.clone()
            })),
            Self::Interaction(i) => Some(Self::Interaction(Interaction {
                customer_id: String::new(),
                session_id: String::new(),
                query: String::new(),
                ..i.clone()
            })),
            Self::Review(r) => Some(Self::Review(Review {
                customer_id: String::new(),
                title: String::new(),
                text: String::new(),
                ..r.clone()
            })),
            Self::Customer(_) | Self::Product(_) => None,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Keyed hashing

/// Keyed hash (HMAC-SHA-256) for fingerprints and for customer ids in logs.
#[derive(Clone)]
pub struct Hasher {
    key: Vec<u8>,
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hasher(<redacted>)")
    }
}

impl Hasher {
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }
    /// Hex of the first 16 bytes of HMAC-SHA-256(key, value); empty for an empty value.
    pub fn hash(&self, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        // HMAC accepts keys of any length, so this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

// ------------------------------------------------------------------------------------------------
// Validation

/// One problem with one field of one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

struct Checker<'a> {
    prefix: &'a str,
    limits: &'a Limits,
    now: Micros,
    errors: Vec<FieldError>,
}

impl Checker<'_> {
    fn err(&mut self, field: &str, reason: impl Into<String>) {
        self.errors.push(FieldError {
            field: format!("{}{}", self.prefix, field),
            reason: reason.into(),
        });
    }

    fn id(&mut self, field: &str, value: &str) {
        if value.is_empty() {
            self.err(field, "missing id");
        } else if value.len() > self.limits.max_id_len {
            self.err(
                field,
                format!("id longer than {} bytes", self.limits.max_id_len),
            );
        } else if value.chars().any(char::is_control) {
            self.err(field, "id contains control characters");
        }
    }

    fn optional_id(&mut self, field: &str, value: &str) {
        if !value.is_empty() {
            self.id(field, value);
        }
    }

    fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.len() > max {
            self.err(
                field,
                format!(
                    "text of {} bytes is over the limit of {max} bytes",
                    value.len()
                ),
            );
        }
    }

    fn ts(&mut self, field: &str, ts: Option<&prost_types::Timestamp>) -> Micros {
        match ts {
            None => {
                self.err(field, "missing timestamp");
                0
            }
            Some(t) => self.ts_value(field, t),
        }
    }

    fn ts_value(&mut self, field: &str, t: &prost_types::Timestamp) -> Micros {
        if !(0..1_000_000_000).contains(&t.nanos) {
            self.err(
                field,
                format!("bad timestamp: nanos {} out of range", t.nanos),
            );
            return 0;
        }
        if t.seconds < 0 {
            self.err(field, "bad timestamp: before 1970-01-01");
            return 0;
        }
        let micros = t
            .seconds
            .checked_mul(MICROS_PER_SEC)
            .and_then(|m| m.checked_add(i64::from(t.nanos / 1000)));
        match micros {
            Some(m) if m <= self.now + self.limits.max_future_skew_micros => m,
            _ => {
                self.err(field, "bad timestamp: in the future");
                0
            }
        }
    }

    fn amount(&mut self, field: &str, v: f64) {
        if !v.is_finite() {
            self.err(field, "must be a finite number (NaN or infinite amount)");
        } else if v < 0.0 {
            self.err(field, "must not be negative");
        } else if v > 1e12 {
            self.err(field, "implausibly large (over 1e12)");
        }
    }

    fn country(&mut self, field: &str, v: &str) {
        if !(v.is_empty() || v.len() == 2 && v.bytes().all(|b| b.is_ascii_uppercase())) {
            self.err(field, "must be an ISO 3166-1 alpha-2 code such as \"DE\"");
        }
    }

    fn currency(&mut self, field: &str, v: &str) {
        if !(v.is_empty() || v.len() == 3 && v.bytes().all(|b| b.is_ascii_uppercase())) {
            self.err(field, "must be an ISO 4217 code such as \"EUR\"");
        }
    }

    fn no_card_number(&mut self, field: &str, v: &str) {
        if looks_like_card_number(v) {
            self.err(
                field,
                "looks like a raw card number; send the payment provider's token or fingerprint",
            );
        }
    }

    fn attributes(
        &mut self,
        field: &str,
        attrs: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        if attrs.len() > self.limits.max_attributes {
            self.err(
                field,
                format!("more than {} attributes", self.limits.max_attributes),
            );
        }
        let mut out = BTreeMap::new();
        for (k, v) in attrs {
            if k.is_empty()
                || k.len() > 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            {
                self.err(
                    &format!("{field}[{k:?}]"),
                    "attribute keys are 1-64 characters of a-z, 0-9 and _",
                );
            }
            if v.len() > 256 {
                self.err(
                    &format!("{field}[{k:?}]"),
                    "attribute values are at most 256 bytes",
                );
            }
            out.insert(k.clone(), v.clone());
        }
        out
    }
}

/// True for 13-19 digits (spaces and dashes allowed) passing the Luhn check.
pub fn looks_like_card_number(v: &str) -> bool {
    let digits: Vec<u32> = v
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .map(|c| c.to_digit(10))
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default();
    if !(13..=19).contains(&digits.len()) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Validates and normalises one incoming event. `prefix` is the path of the event in its
/// request (e.g. `events[3].`); errors name fields below it.
pub fn validate_event(
    event: &pb::Event,
    prefix: &str,
    limits: &Limits,
    hasher: &Hasher,
    now: Micros,
) -> Result<Event, Vec<FieldError>> {
    let mut c = Checker {
        prefix,
        limits,
        now,
        errors: Vec::new(),
    };
    let pb::Event { payload } = event;
    let out = match payload {
        None => {
            c.err(
                "payload",
                "unknown kind: set one of order, interaction, review, product, customer",
            );
            None
        }
        Some(pb::event::Payload::Order(o)) => validate_order(&mut c, o, hasher).map(Event::Order),
        Some(pb::event::Payload::Interaction(i)) => {
            validate_interaction(&mut c, i).map(Event::Interaction)
        }
        Some(pb::event::Payload::Review(r)) => validate_review(&mut c, r).map(Event::Review),
        Some(pb::event::Payload::Product(p)) => validate_product(&mut c, p).map(Event::Product),
        Some(pb::event::Payload::Customer(cu)) => {
            validate_customer(&mut c, cu).map(Event::Customer)
        }
    };
    match out {
        Some(e) if c.errors.is_empty() => Ok(e),
        _ => Err(c.errors),
    }
}

fn validate_order(c: &mut Checker<'_>, o: &pb::Order, hasher: &Hasher) -> Option<Order> {
    let pb::Order {
        order_id,
        customer_id,
        ts,
        lines,
        total,
        currency,
        payment_method,
        shipping_country,
        billing_country,
        payment_fingerprint,
        device_fingerprint,
        ip_address,
        status,
        store_id,
        channel,
    } = o;
    c.id("order.order_id", order_id);
    c.id("order.customer_id", customer_id);
    let ts = c.ts("order.ts", ts.as_ref());
    if lines.len() > c.limits.max_lines {
        c.err(
            "order.lines",
            format!("more than {} lines", c.limits.max_lines),
        );
    }
    let mut out_lines = Vec::with_capacity(lines.len());
    for (j, l) in lines.iter().enumerate() {
        let pb::OrderLine {
            sku,
            quantity,
            unit_price,
            promotion,
        } = l;
        c.id(&format!("order.lines[{j}].sku"), sku);
        if *quantity < 0 {
            c.err(&format!("order.lines[{j}].quantity"), "negative quantity");
        } else if *quantity == 0 {
            c.err(&format!("order.lines[{j}].quantity"), "must be at least 1");
        } else if *quantity > 1_000_000 {
            c.err(
                &format!("order.lines[{j}].quantity"),
                "implausibly large (over 1,000,000)",
            );
        }
        c.amount(&format!("order.lines[{j}].unit_price"), *unit_price);
        out_lines.push(OrderLine {
            sku: sku.clone(),
            quantity: *quantity,
            unit_price: *unit_price,
            promotion: *promotion,
        });
    }
    let total = match total {
        Some(t) => {
            c.amount("order.total", *t);
            *t
        }
        None if lines.is_empty() => {
            c.err("order.total", "required when the order has no lines");
            0.0
        }
        None => out_lines
            .iter()
            .map(|l| l.quantity as f64 * l.unit_price)
            .sum(),
    };
    c.currency("order.currency", currency);
    c.text("order.payment_method", payment_method, 64);
    c.no_card_number("order.payment_method", payment_method);
    c.country("order.shipping_country", shipping_country);
    c.country("order.billing_country", billing_country);
    c.text(
        "order.payment_fingerprint",
        payment_fingerprint,
        MAX_FINGERPRINT_BYTES,
    );
    c.no_card_number("order.payment_fingerprint", payment_fingerprint);
    c.text(
        "order.device_fingerprint",
        device_fingerprint,
        MAX_FINGERPRINT_BYTES,
    );
    c.no_card_number("order.device_fingerprint", device_fingerprint);
    c.text("order.ip_address", ip_address, 64);
    let status = OrderStatus::from_proto(*status);
    if status.is_none() {
        c.err("order.status", format!("unknown value {}", o.status));
    }
    c.optional_id("order.store_id", store_id);
    c.optional_id("order.channel", channel);
    Some(Order {
        order_id: order_id.clone(),
        customer_id: customer_id.clone(),
        ts,
        lines: out_lines,
        total,
        currency: currency.clone(),
        payment_method: payment_method.clone(),
        shipping_country: shipping_country.clone(),
        billing_country: billing_country.clone(),
        payment_hash: hasher.hash(payment_fingerprint),
        device_hash: hasher.hash(device_fingerprint),
        ip_hash: hasher.hash(ip_address),
        status: status?,
        store_id: store_id.clone(),
        channel: channel.clone(),
    })
}

fn validate_interaction(c: &mut Checker<'_>, i: &pb::Interaction) -> Option<Interaction> {
    let pb::Interaction {
        event_id,
        customer_id,
        sku,
        kind,
        query,
        ts,
        session_id,
        value,
    } = i;
    c.id("interaction.event_id", event_id);
    c.id("interaction.customer_id", customer_id);
    let ts = c.ts("interaction.ts", ts.as_ref());
    let k = InteractionKind::from_proto(*kind);
    match k {
        None if *kind == 0 => c.err("interaction.kind", "missing kind"),
        None => c.err("interaction.kind", format!("unknown value {kind}")),
        Some(InteractionKind::Search) => {
            c.optional_id("interaction.sku", sku);
            if query.trim().is_empty() {
                c.err("interaction.query", "required for SEARCH");
            }
        }
        Some(_) => c.id("interaction.sku", sku),
    }
    c.text("interaction.query", query, 1_000);
    c.optional_id("interaction.session_id", session_id);
    if !value.is_finite() {
        c.err("interaction.value", "must be a finite number");
    }
    Some(Interaction {
        event_id: event_id.clone(),
        customer_id: customer_id.clone(),
        sku: sku.clone(),
        kind: k?,
        query: query.clone(),
        ts,
        session_id: session_id.clone(),
        value: *value,
    })
}

fn validate_review(c: &mut Checker<'_>, r: &pb::Review) -> Option<Review> {
    let pb::Review {
        review_id,
        customer_id,
        sku,
        rating,
        title,
        text,
        ts,
        label,
    } = r;
    c.id("review.review_id", review_id);
    c.id("review.customer_id", customer_id);
    c.id("review.sku", sku);
    if !(1..=5).contains(rating) {
        c.err("review.rating", format!("must be 1 to 5, got {rating}"));
    }
    c.text("review.title", title, c.limits.max_title_bytes);
    c.text("review.text", text, c.limits.max_text_bytes);
    let ts = c.ts("review.ts", ts.as_ref());
    let label = match pb::ReviewLabel::try_from(*label) {
        Ok(pb::ReviewLabel::Unspecified) => ReviewLabel::Unspecified,
        Ok(pb::ReviewLabel::Genuine) => ReviewLabel::Genuine,
        Ok(pb::ReviewLabel::Spam) => ReviewLabel::Spam,
        Err(_) => {
            c.err("review.label", format!("unknown value {label}"));
            ReviewLabel::Unspecified
        }
    };
    Some(Review {
        review_id: review_id.clone(),
        customer_id: customer_id.clone(),
        sku: sku.clone(),
        rating: *rating,
        title: title.clone(),
        text: text.clone(),
        ts,
        label,
    })
}

fn validate_product(c: &mut Checker<'_>, p: &pb::Product) -> Option<Product> {
    let pb::Product {
        sku,
        title,
        description,
        category_path,
        brand,
        price,
        currency,
        stock,
        active,
        on_promotion,
        ts,
        attributes,
    } = p;
    c.id("product.sku", sku);
    c.text("product.title", title, c.limits.max_title_bytes);
    c.text("product.description", description, c.limits.max_text_bytes);
    if category_path.len() > 8 {
        c.err("product.category_path", "at most 8 levels");
    }
    for (j, part) in category_path.iter().enumerate() {
        if part.trim().is_empty() || part.len() > 128 || part.contains(" > ") {
            c.err(
                &format!("product.category_path[{j}]"),
                "category names are 1-128 bytes and must not contain \" > \"",
            );
        }
    }
    c.text("product.brand", brand, 128);
    c.amount("product.price", *price);
    c.currency("product.currency", currency);
    if *stock < 0 {
        c.err("product.stock", "must not be negative");
    }
    let ts = c.ts("product.ts", ts.as_ref());
    let attributes = c.attributes("product.attributes", attributes);
    Some(Product {
        sku: sku.clone(),
        title: title.clone(),
        description: description.clone(),
        category_path: category_path.clone(),
        brand: brand.clone(),
        price: *price,
        currency: currency.clone(),
        stock: *stock,
        active: active.unwrap_or(true),
        on_promotion: *on_promotion,
        ts,
        attributes,
    })
}

fn validate_customer(c: &mut Checker<'_>, cu: &pb::Customer) -> Option<Customer> {
    let pb::Customer {
        customer_id,
        signup_ts,
        country,
        attributes,
        ts,
    } = cu;
    c.id("customer.customer_id", customer_id);
    let signup = signup_ts
        .as_ref()
        .map(|t| c.ts_value("customer.signup_ts", t));
    let ts = match (ts, signup) {
        (Some(t), _) => c.ts_value("customer.ts", t),
        (None, Some(s)) => s,
        (None, None) => {
            c.err("customer.ts", "missing timestamp (set ts or signup_ts)");
            0
        }
    };
    c.country("customer.country", country);
    let attributes = c.attributes("customer.attributes", attributes);
    Some(Customer {
        customer_id: customer_id.clone(),
        signup_ts: signup,
        country: country.clone(),
        attributes,
        ts,
    })
}

// ------------------------------------------------------------------------------------------------
// Back to protobuf (storage and scans)

pub fn timestamp(micros: Micros) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(MICROS_PER_SEC),
        nanos: (micros.rem_euclid(MICROS_PER_SEC) * 1000) as i32,
    }
}

pub fn micros_of(ts: &prost_types::Timestamp) -> Micros {
    ts.seconds
        .saturating_mul(MICROS_PER_SEC)
        .saturating_add(i64::from(ts.nanos / 1000))
}

impl From<&Event> for pb::Event {
    fn from(e: &Event) -> Self {
        use pb::event::Payload;
        let payload = match e {
            Event::Order(o) => Payload::Order(pb::Order {
                order_id: o.order_id.clone(),
                customer_id: o.customer_id.clone(),
                ts: Some(timestamp(o.ts)),
                lines: o
                    .lines
                    .iter()
                    .map(|l| pb::OrderLine {
                        sku: l.sku.clone(),
                        quantity: l.quantity,
                        unit_price: l.unit_price,
                        promotion: l.promotion,
                    })
                    .collect(),
                total: Some(o.total),
                currency: o.currency.clone(),
                payment_method: o.payment_method.clone(),
                shipping_country: o.shipping_country.clone(),
                billing_country: o.billing_country.clone(),
                payment_fingerprint: o.payment_hash.clone(),
                device_fingerprint: o.device_hash.clone(),
                ip_address: o.ip_hash.clone(),
                status: o.status.to_proto() as i32,
                store_id: o.store_id.clone(),
                channel: o.channel.clone(),
            }),
            Event::Interaction(i) => Payload::Interaction(pb::Interaction {
                event_id: i.event_id.clone(),
                customer_id: i.customer_id.clone(),
                sku: i.sku.clone(),
                kind: i.kind.to_proto() as i32,
                query: i.query.clone(),
                ts: Some(timestamp(i.ts)),
                session_id: i.session_id.clone(),
                value: i.value,
            }),
            Event::Review(r) => Payload::Review(pb::Review {
                review_id: r.review_id.clone(),
                customer_id: r.customer_id.clone(),
                sku: r.sku.clone(),
                rating: r.rating,
                title: r.title.clone(),
                text: r.text.clone(),
                ts: Some(timestamp(r.ts)),
                label: match r.label {
                    ReviewLabel::Unspecified => pb::ReviewLabel::Unspecified,
                    ReviewLabel::Genuine => pb::ReviewLabel::Genuine,
                    ReviewLabel::Spam => pb::ReviewLabel::Spam,
                } as i32,
            }),
            Event::Product(p) => Payload::Product(pb::Product {
                sku: p.sku.clone(),
                title: p.title.clone(),
                description: p.description.clone(),
                category_path: p.category_path.clone(),
                brand: p.brand.clone(),
                price: p.price,
                currency: p.currency.clone(),
                stock: p.stock,
                active: Some(p.active),
                on_promotion: p.on_promotion,
                ts: Some(timestamp(p.ts)),
                attributes: p.attributes.clone().into_iter().collect(),
            }),
            Event::Customer(c) => Payload::Customer(pb::Customer {
                customer_id: c.customer_id.clone(),
                signup_ts: c.signup_ts.map(timestamp),
                country: c.country.clone(),
                attributes: c.attributes.clone().into_iter().collect(),
                ts: Some(timestamp(c.ts)),
            }),
        };
        pb::Event {
            payload: Some(payload),
        }
    }
}

/// Decodes a stored event. Stored events were validated on the way in and their fingerprints
/// are already hashes, so this only converts (it does not hash again).
pub fn from_stored(e: &pb::Event) -> Option<Event> {
    use pb::event::Payload;
    Some(match e.payload.as_ref()? {
        Payload::Order(o) => Event::Order(Order {
            order_id: o.order_id.clone(),
            customer_id: o.customer_id.clone(),
            ts: micros_of(o.ts.as_ref()?),
            lines: o
                .lines
                .iter()
                .map(|l| OrderLine {
                    sku: l.sku.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    promotion: l.promotion,
                })
                .collect(),
            total: o.total.unwrap_or(0.0),
            currency: o.currency.clone(),
            payment_method: o.payment_method.clone(),
            shipping_country: o.shipping_country.clone(),
            billing_country: o.billing_country.clone(),
            payment_hash: o.payment_fingerprint.clone(),
            device_hash: o.device_fingerprint.clone(),
            ip_hash: o.ip_address.clone(),
            status: OrderStatus::from_proto(o.status)?,
            store_id: o.store_id.clone(),
            channel: o.channel.clone(),
        }),
        Payload::Interaction(i) => Event::Interaction(Interaction {
            event_id: i.event_id.clone(),
            customer_id: i.customer_id.clone(),
            sku: i.sku.clone(),
            kind: InteractionKind::from_proto(i.kind)?,
            query: i.query.clone(),
            ts: micros_of(i.ts.as_ref()?),
            session_id: i.session_id.clone(),
            value: i.value,
        }),
        Payload::Review(r) => Event::Review(Review {
            review_id: r.review_id.clone(),
            customer_id: r.customer_id.clone(),
            sku: r.sku.clone(),
            rating: r.rating,
            title: r.title.clone(),
            text: r.text.clone(),
            ts: micros_of(r.ts.as_ref()?),
            label: match pb::ReviewLabel::try_from(r.label).ok()? {
                pb::ReviewLabel::Unspecified => ReviewLabel::Unspecified,
                pb::ReviewLabel::Genuine => ReviewLabel::Genuine,
                pb::ReviewLabel::Spam => ReviewLabel::Spam,
            },
        }),
        Payload::Product(p) => Event::Product(Product {
            sku: p.sku.clone(),
            title: p.title.clone(),
            description: p.description.clone(),
            category_path: p.category_path.clone(),
            brand: p.brand.clone(),
            price: p.price,
            currency: p.currency.clone(),
            stock: p.stock,
            active: p.active.unwrap_or(true),
            on_promotion: p.on_promotion,
            ts: micros_of(p.ts.as_ref()?),
            attributes: p.attributes.clone().into_iter().collect(),
        }),
        Payload::Customer(c) => Event::Customer(Customer {
            customer_id: c.customer_id.clone(),
            signup_ts: c.signup_ts.as_ref().map(micros_of),
            country: c.country.clone(),
            attributes: c.attributes.clone().into_iter().collect(),
            ts: micros_of(c.ts.as_ref()?),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NOW: Micros = 1_700_000_000 * MICROS_PER_SEC;

    fn ts(s: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp {
            seconds: s,
            nanos: 0,
        })
    }

    fn order() -> pb::Order {
        pb::Order {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            ts: ts(1_600_000_000),
            lines: vec![pb::OrderLine {
                sku: "A".into(),
                quantity: 2,
                unit_price: 10.0,
                promotion: false,
            }],
            payment_fingerprint: "tok_abc".into(),
            ..Default::default()
        }
    }

    fn check(e: pb::event::Payload) -> Result<Event, Vec<FieldError>> {
        validate_event(
            &pb::Event { payload: Some(e) },
            "events[0].",
            &Limits::default(),
            &Hasher::new(b"k"),
            NOW,
        )
    }

    fn fields(r: Result<Event, Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn good_order_is_normalised_and_fingerprint_hashed() {
        let Event::Order(o) = check(pb::event::Payload::Order(order())).unwrap() else {
            panic!("not an order")
        };
        assert_eq!(o.total, 20.0);
        assert_eq!(o.status, OrderStatus::Placed);
        assert_ne!(o.payment_hash, "tok_abc");
        assert_eq!(o.payment_hash.len(), 32);
        assert_eq!(o.payment_hash, Hasher::new(b"k").hash("tok_abc"));
    }

    #[test]
    fn bad_fields_are_named() {
        let mut o = order();
        o.lines[0].quantity = -1;
        o.total = Some(f64::NAN);
        o.ts = ts(-5);
        o.order_id.clear();
        assert_eq!(
            fields(check(pb::event::Payload::Order(o))),
            vec![
                "events[0].order.order_id",
                "events[0].order.ts",
                "events[0].order.lines[0].quantity",
                "events[0].order.total"
            ]
        );
        let mut o = order();
        o.payment_fingerprint = "4111 1111 1111 1111".into();
        assert_eq!(
            fields(check(pb::event::Payload::Order(o))),
            vec!["events[0].order.payment_fingerprint"]
        );
        let mut o = order();
        o.ts = ts(253_402_300_799); // 9999-12-31
        assert_eq!(
            fields(check(pb::event::Payload::Order(o))),
            vec!["events[0].order.ts"]
        );
        let mut o = order();
        o.status = 42;
        assert_eq!(
            fields(check(pb::event::Payload::Order(o))),
            vec!["events[0].order.status"]
        );
        let r = validate_event(
            &pb::Event { payload: None },
            "events[7].",
            &Limits::default(),
            &Hasher::new(b"k"),
            NOW,
        );
        assert_eq!(fields(r), vec!["events[7].payload"]);
    }

    #[test]
    fn review_and_interaction_rules() {
        let review = pb::Review {
            review_id: "r".into(),
            customer_id: "c".into(),
            sku: "A".into(),
            rating: 6,
            text: "x".repeat(30_000),
            ts: ts(1_600_000_000),
            ..Default::default()
        };
        assert_eq!(
            fields(check(pb::event::Payload::Review(review))),
            vec!["events[0].review.rating", "events[0].review.text"]
        );
        let search = pb::Interaction {
            event_id: "e".into(),
            customer_id: "c".into(),
            kind: pb::InteractionKind::Search as i32,
            ts: ts(1_600_000_000),
            ..Default::default()
        };
        assert_eq!(
            fields(check(pb::event::Payload::Interaction(search))),
            vec!["events[0].interaction.query"]
        );
    }

    #[test]
    fn luhn() {
        assert!(looks_like_card_number("4111111111111111"));
        assert!(looks_like_card_number("5500-0000-0000-0004"));
        assert!(!looks_like_card_number("4111111111111112"));
        assert!(!looks_like_card_number("tok_4111111111111111"));
        assert!(!looks_like_card_number("12345"));
    }

    proptest! {
        #[test]
        fn validation_never_panics_and_roundtrips(
            id in "\\PC{0,20}",
            qty in any::<i64>(),
            price in any::<f64>(),
            secs in any::<i64>(),
            nanos in any::<i32>(),
            status in any::<i32>(),
        ) {
            let o = pb::Order {
                order_id: id.clone(),
                customer_id: "c".into(),
                ts: Some(prost_types::Timestamp { seconds: secs, nanos }),
                lines: vec![pb::OrderLine { sku: "A".into(), quantity: qty, unit_price: price, promotion: false }],
                status,
                ..Default::default()
            };
            if let Ok(e) = check(pb::event::Payload::Order(o)) {
                let Event::Order(ref o) = e else { panic!("kind") };
                prop_assert!(o.total.is_finite() && o.total >= 0.0);
                prop_assert!(o.ts >= 0 && o.ts <= NOW + MICROS_PER_DAY);
                prop_assert!(o.lines[0].quantity >= 1);
                // Storing and reading back gives the same domain event.
                let stored = pb::Event::from(&e);
                prop_assert_eq!(from_stored(&stored), Some(e));
            }
        }
    }
}
