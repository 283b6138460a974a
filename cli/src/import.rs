//! `augur import`: bulk-load CSV or JSON-lines files through `IngestStream`, with a progress bar.
//!
//! One record per event, with flat field names (see README, "Importing data"):
//! - order: order_id, customer_id, ts, total, currency, payment_method, shipping_country,
//!   billing_country, payment_fingerprint, device_fingerprint, ip_address, status, store_id,
//!   channel, and lines — in JSON a `lines` array of {sku, quantity, unit_price, promotion}; in
//!   CSV one row per line with columns sku, quantity, unit_price, promotion (consecutive rows of
//!   the same order_id and status form one order);
//! - interaction: event_id, customer_id, sku, kind, query, ts, session_id, value;
//! - review: review_id, customer_id, sku, rating, title, text, ts, label;
//! - product: sku, title, description, category ("A > B"), brand, price, currency, stock,
//!   active, on_promotion, ts, `attr_<key>`...;
//! - customer: customer_id, signup_ts, country, ts, `attr_<key>`....
//!
//! Times are RFC 3339 (`2024-05-01T10:00:00Z`), a date (`2024-05-01`) or Unix seconds.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use augur_proto::featurestore as pb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::connect::{ConnectArgs, Remote};

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Order,
    Interaction,
    Review,
    Product,
    Customer,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// Event kind of every record in the file.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// CSV (with a header row) or JSON-lines file.
    pub file: PathBuf,
    /// File format; by default from the extension (.csv, .jsonl / .ndjson / .json).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Feature store address: http://host:port, https://host:port, or host:port (https when a
    /// TLS flag is set).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub addr: String,
    /// Events per streamed message.
    #[arg(long, default_value_t = 2_000)]
    pub batch: usize,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

type Record = Map<String, Value>;

fn text(r: &Record, k: &str) -> String {
    match r.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

fn num(r: &Record, k: &str) -> Result<Option<f64>, String> {
    match r.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("field {k}: {s:?} is not a number")),
        Some(v) => Err(format!("field {k}: {v} is not a number")),
    }
}

fn int(r: &Record, k: &str) -> Result<Option<i64>, String> {
    match num(r, k)? {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => Ok(Some(v as i64)),
        Some(v) => Err(format!("field {k}: {v} is not an integer")),
    }
}

fn flag(r: &Record, k: &str) -> Result<Option<bool>, String> {
    match r.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => match text(r, k).trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" | "yes" | "y" => Ok(Some(true)),
            "false" | "0" | "no" | "n" => Ok(Some(false)),
            _ => Err(format!("field {k}: {v} is not true/false")),
        },
    }
}

/// Parses RFC 3339, a plain date, or Unix seconds.
pub fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    let s = s.trim();
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(prost_types::Timestamp {
            seconds: dt.timestamp(),
            nanos: dt.timestamp_subsec_nanos() as i32,
        });
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(dt) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(prost_types::Timestamp {
            seconds: dt.and_utc().timestamp(),
            nanos: 0,
        });
    }
    if let Ok(v) = s.parse::<f64>()
        && v.is_finite()
    {
        return Ok(prost_types::Timestamp {
            seconds: v.floor() as i64,
            nanos: ((v - v.floor()) * 1e9) as i32,
        });
    }
    Err(format!(
        "{s:?} is not an RFC 3339 time, a date or Unix seconds"
    ))
}

fn time(r: &Record, k: &str) -> Result<Option<prost_types::Timestamp>, String> {
    let t = text(r, k);
    if t.trim().is_empty() {
        return Ok(None);
    }
    parse_time(&t)
        .map(Some)
        .map_err(|e| format!("field {k}: {e}"))
}

fn attributes(r: &Record) -> BTreeMap<String, String> {
    r.keys()
        .filter_map(|k| k.strip_prefix("attr_").map(|a| (a.to_string(), text(r, k))))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn enum_value(k: &str, v: &str, names: &[(&str, i32)]) -> Result<i32, String> {
    let v = v.trim().to_ascii_lowercase();
    if v.is_empty() {
        return Ok(0);
    }
    names
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, i)| *i)
        .ok_or_else(|| {
            let all: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
            format!(
                "field {k}: unknown value {v:?}; expected one of {}",
                all.join(", ")
            )
        })
}

const STATUS: &[(&str, i32)] = &[
    ("placed", pb::OrderStatus::Placed as i32),
    ("paid", pb::OrderStatus::Paid as i32),
    ("refunded", pb::OrderStatus::Refunded as i32),
    ("charged_back", pb::OrderStatus::ChargedBack as i32),
    ("cancelled", pb::OrderStatus::Cancelled as i32),
];
const INTERACTION: &[(&str, i32)] = &[
    ("view", pb::InteractionKind::View as i32),
    ("click", pb::InteractionKind::Click as i32),
    ("add_to_cart", pb::InteractionKind::AddToCart as i32),
    ("purchase", pb::InteractionKind::Purchase as i32),
    ("search", pb::InteractionKind::Search as i32),
    ("wishlist", pb::InteractionKind::Wishlist as i32),
    ("rate", pb::InteractionKind::Rate as i32),
    (
        "remove_from_cart",
        pb::InteractionKind::RemoveFromCart as i32,
    ),
];
const LABEL: &[(&str, i32)] = &[
    ("genuine", pb::ReviewLabel::Genuine as i32),
    ("spam", pb::ReviewLabel::Spam as i32),
];

fn line_of(r: &Record) -> Result<Option<pb::OrderLine>, String> {
    let sku = text(r, "sku");
    if sku.is_empty() {
        return Ok(None);
    }
    Ok(Some(pb::OrderLine {
        sku,
        quantity: int(r, "quantity")?.unwrap_or(1),
        unit_price: num(r, "unit_price")?.unwrap_or(0.0),
        promotion: flag(r, "promotion")?.unwrap_or(false),
    }))
}

/// Converts one record into an event.
pub fn to_event(kind: Kind, r: &Record) -> Result<pb::Event, String> {
    use pb::event::Payload;
    let payload = match kind {
        Kind::Order => {
            let mut lines = Vec::new();
            match r.get("lines") {
                Some(Value::Array(a)) => {
                    for (i, l) in a.iter().enumerate() {
                        let Value::Object(m) = l else {
                            return Err(format!("field lines[{i}]: not an object"));
                        };
                        lines.extend(line_of(m).map_err(|e| format!("lines[{i}].{e}"))?);
                    }
                }
                _ => lines.extend(line_of(r)?),
            }
            Payload::Order(pb::Order {
                order_id: text(r, "order_id"),
                customer_id: text(r, "customer_id"),
                ts: time(r, "ts")?,
                lines,
                total: num(r, "total")?,
                currency: text(r, "currency"),
                payment_method: text(r, "payment_method"),
                shipping_country: text(r, "shipping_country"),
                billing_country: text(r, "billing_country"),
                payment_fingerprint: text(r, "payment_fingerprint"),
                device_fingerprint: text(r, "device_fingerprint"),
                ip_address: text(r, "ip_address"),
                status: enum_value("status", &text(r, "status"), STATUS)?,
                store_id: text(r, "store_id"),
                channel: text(r, "channel"),
            })
        }
        Kind::Interaction => Payload::Interaction(pb::Interaction {
            event_id: text(r, "event_id"),
            customer_id: text(r, "customer_id"),
            sku: text(r, "sku"),
            kind: enum_value("kind", &text(r, "kind"), INTERACTION)?,
            query: text(r, "query"),
            ts: time(r, "ts")?,
            session_id: text(r, "session_id"),
            value: num(r, "value")?.unwrap_or(0.0),
        }),
        Kind::Review => Payload::Review(pb::Review {
            review_id: text(r, "review_id"),
            customer_id: text(r, "customer_id"),
            sku: text(r, "sku"),
            rating: int(r, "rating")?
                .unwrap_or(0)
                .clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            title: text(r, "title"),
            text: text(r, "text"),
            ts: time(r, "ts")?,
            label: enum_value("label", &text(r, "label"), LABEL)?,
        }),
        Kind::Product => Payload::Product(pb::Product {
            sku: text(r, "sku"),
            title: text(r, "title"),
            description: text(r, "description"),
            category_path: text(r, "category")
                .split(" > ")
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            brand: text(r, "brand"),
            price: num(r, "price")?.unwrap_or(0.0),
            currency: text(r, "currency"),
            stock: int(r, "stock")?.unwrap_or(0),
            active: flag(r, "active")?,
            on_promotion: flag(r, "on_promotion")?.unwrap_or(false),
            ts: time(r, "ts")?,
            attributes: attributes(r),
        }),
        Kind::Customer => Payload::Customer(pb::Customer {
            customer_id: text(r, "customer_id"),
            signup_ts: time(r, "signup_ts")?,
            country: text(r, "country"),
            attributes: attributes(r),
            ts: time(r, "ts")?,
        }),
    };
    Ok(pb::Event {
        payload: Some(payload),
    })
}

fn rfc3339(t: &Option<prost_types::Timestamp>) -> Value {
    match t {
        None => Value::Null,
        Some(t) => chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)
            .map_or(Value::Null, |d| {
                Value::String(d.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
            }),
    }
}

fn name_of(v: i32, names: &'static [(&'static str, i32)]) -> &'static str {
    names.iter().find(|(_, i)| *i == v).map_or("", |(n, _)| *n)
}

/// The JSON-lines record of an event (the inverse of [`to_event`]), with its kind name.
pub fn to_json(e: &pb::Event) -> anyhow::Result<(&'static str, String)> {
    use pb::event::Payload;
    let (kind, mut v) = match e.payload.as_ref() {
        None => anyhow::bail!("event without payload"),
        Some(Payload::Order(o)) => (
            "order",
            json!({
                "order_id": o.order_id, "customer_id": o.customer_id, "ts": rfc3339(&o.ts),
                "lines": o.lines.iter().map(|l| json!({"sku": l.sku, "quantity": l.quantity, "unit_price": l.unit_price, "promotion": l.promotion})).collect::<Vec<_>>(),
                "total": o.total, "currency": o.currency, "payment_method": o.payment_method,
                "shipping_country": o.shipping_country, "billing_country": o.billing_country,
                "payment_fingerprint": o.payment_fingerprint, "device_fingerprint": o.device_fingerprint,
                "ip_address": o.ip_address, "status": name_of(o.status, STATUS), "store_id": o.store_id, "channel": o.channel,
            }),
        ),
        Some(Payload::Interaction(i)) => (
            "interaction",
            json!({
                "event_id": i.event_id, "customer_id": i.customer_id, "sku": i.sku,
                "kind": name_of(i.kind, INTERACTION), "query": i.query, "ts": rfc3339(&i.ts),
                "session_id": i.session_id, "value": i.value,
            }),
        ),
        Some(Payload::Review(r)) => (
            "review",
            json!({
                "review_id": r.review_id, "customer_id": r.customer_id, "sku": r.sku, "rating": r.rating,
                "title": r.title, "text": r.text, "ts": rfc3339(&r.ts), "label": name_of(r.label, LABEL),
            }),
        ),
        Some(Payload::Product(p)) => (
            "product",
            json!({
                "sku": p.sku, "title": p.title, "description": p.description,
                "category": p.category_path.join(" > "), "brand": p.brand, "price": p.price,
                "currency": p.currency, "stock": p.stock, "active": p.active, "on_promotion": p.on_promotion,
                "ts": rfc3339(&p.ts),
            }),
        ),
        Some(Payload::Customer(c)) => (
            "customer",
            json!({
                "customer_id": c.customer_id, "signup_ts": rfc3339(&c.signup_ts), "country": c.country,
                "ts": rfc3339(&c.ts),
            }),
        ),
    };
    let attrs = match e.payload.as_ref() {
        Some(Payload::Product(p)) => Some(&p.attributes),
        Some(Payload::Customer(c)) => Some(&c.attributes),
        _ => None,
    };
    if let (Some(attrs), Value::Object(m)) = (attrs, &mut v) {
        let sorted: BTreeMap<_, _> = attrs.iter().collect();
        for (k, val) in sorted {
            m.insert(format!("attr_{k}"), Value::String(val.clone()));
        }
    }
    Ok((kind, v.to_string()))
}

/// Reads a file into events; each with the line number it came from. Records that cannot be
/// parsed are returned as errors with their line number.
/// Events read from a file, each with its line number, and unreadable records with theirs.
pub type ReadResult = (Vec<(usize, pb::Event)>, Vec<(usize, String)>);

pub fn read_file(path: &Path, kind: Kind, format: Format) -> anyhow::Result<ReadResult> {
    let mut events = Vec::new();
    let mut errors = Vec::new();
    match format {
        Format::Jsonl => {
            let f = std::io::BufReader::new(std::fs::File::open(path)?);
            for (i, line) in f.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(Value::Object(r)) => match to_event(kind, &r) {
                        Ok(e) => events.push((i + 1, e)),
                        Err(e) => errors.push((i + 1, e)),
                    },
                    Ok(_) => errors.push((i + 1, "not a JSON object".into())),
                    Err(e) => errors.push((i + 1, format!("invalid JSON: {e}"))),
                }
            }
        }
        Format::Csv => {
            let mut rdr = csv::ReaderBuilder::new().flexible(true).from_path(path)?;
            let headers = rdr.headers()?.clone();
            let mut current: Option<(usize, String, pb::Event)> = None;
            for (i, rec) in rdr.records().enumerate() {
                let line = i + 2;
                let rec = match rec {
                    Ok(r) => r,
                    Err(e) => {
                        errors.push((line, format!("invalid CSV: {e}")));
                        continue;
                    }
                };
                let r: Record = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(h, v)| (h.trim().to_string(), Value::String(v.to_string())))
                    .collect();
                let e = match to_event(kind, &r) {
                    Ok(e) => e,
                    Err(e) => {
                        errors.push((line, e));
                        continue;
                    }
                };
                // Consecutive rows of one order (same id and status) are its lines.
                if kind == Kind::Order {
                    let key = format!("{}\u{1f}{}", text(&r, "order_id"), text(&r, "status"));
                    if let Some((
                        _,
                        k,
                        pb::Event {
                            payload: Some(pb::event::Payload::Order(o)),
                        },
                    )) = current.as_mut()
                        && *k == key
                        && let Some(pb::event::Payload::Order(new)) = e.payload
                    {
                        o.lines.extend(new.lines);
                        if let (Some(a), Some(b)) = (o.total, new.total)
                            && b > a
                        {
                            o.total = Some(b);
                        }
                        continue;
                    }
                    if let Some((l, _, prev)) = current.take() {
                        events.push((l, prev));
                    }
                    current = Some((line, key, e));
                } else {
                    events.push((line, e));
                }
            }
            if let Some((l, _, prev)) = current {
                events.push((l, prev));
            }
        }
    }
    Ok((events, errors))
}

fn detect_format(path: &Path) -> anyhow::Result<Format> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Ok(Format::Csv),
        Some("jsonl" | "ndjson" | "json") => Ok(Format::Jsonl),
        _ => anyhow::bail!(
            "cannot tell the format of {}; pass --format csv or --format jsonl",
            path.display()
        ),
    }
}

/// [`ingest_on`] the feature store at `addr` over plaintext without a token.
pub async fn ingest_all(
    addr: &str,
    events: Vec<pb::Event>,
    batch: usize,
    bar: &ProgressBar,
) -> anyhow::Result<pb::IngestResponse> {
    ingest_on(&Remote::plain(addr), events, batch, bar).await
}

/// Streams events to the feature store through `IngestStream` in batches, advancing `bar` as
/// batches are sent; returns the feature store's summary. A failed call is a
/// [`crate::connect::CallError`] (code, message, hint).
pub async fn ingest_on(
    remote: &Remote,
    events: Vec<pb::Event>,
    batch: usize,
    bar: &ProgressBar,
) -> anyhow::Result<pb::IngestResponse> {
    let mut client = FeatureStoreClient::new(remote.channel(std::time::Duration::from_secs(3600))?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let batches: Vec<pb::IngestRequest> = events
        .chunks(batch.max(1))
        .map(|c| pb::IngestRequest { events: c.to_vec() })
        .collect();
    let bar = bar.clone();
    let stream = tokio_stream::iter(
        batches
            .into_iter()
            .inspect(move |b| bar.inc(b.events.len() as u64)),
    );
    Ok(client
        .ingest_stream(stream)
        .await
        .map_err(|s| remote.explain(&s))?
        .into_inner())
}

pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    if args.batch == 0 {
        anyhow::bail!("--batch must be at least 1");
    }
    let format = match args.format {
        Some(f) => f,
        None => detect_format(&args.file)?,
    };
    let remote = args.connect.remote(&args.addr)?;
    let (events, parse_errors) = read_file(&args.file, args.kind, format)?;
    for (line, e) in parse_errors.iter().take(10) {
        eprintln!("{}:{line}: {e}", args.file.display());
    }
    if parse_errors.len() > 10 {
        eprintln!(
            "... and {} more unreadable records",
            parse_errors.len() - 10
        );
    }
    let lines: Vec<usize> = events.iter().map(|(l, _)| *l).collect();
    let total = events.len() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message("importing");
    let events: Vec<pb::Event> = events.into_iter().map(|(_, e)| e).collect();
    let resp = match ingest_on(&remote, events, args.batch, &bar).await {
        Ok(r) => r,
        Err(e) => {
            bar.abandon();
            return Err(e);
        }
    };
    bar.finish_and_clear();
    println!(
        "{}: {} accepted, {} duplicates, {} rejected by the feature store, {} unreadable",
        args.file.display(),
        resp.accepted,
        resp.duplicates,
        resp.rejected.len(),
        parse_errors.len()
    );
    for r in resp.rejected.iter().take(10) {
        let line = lines.get(r.index as usize).copied().unwrap_or(0);
        println!("  line {line}: {}: {}", r.field, r.reason);
    }
    if resp.rejected.len() > 10 {
        println!("  ... and {} more", resp.rejected.len() - 10);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(parse_time("1997-01-01").unwrap().seconds, 852_076_800);
        assert_eq!(
            parse_time("1997-01-01T00:00:01Z").unwrap().seconds,
            852_076_801
        );
        assert_eq!(parse_time("852076800").unwrap().seconds, 852_076_800);
        assert!(parse_time("yesterday").is_err());
    }

    #[test]
    fn csv_orders_group_lines_and_json_roundtrips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("orders.csv");
        std::fs::write(
            &p,
            "order_id,customer_id,ts,sku,quantity,unit_price,status\n\
             o1,c1,2024-01-01,A,2,3.5,placed\n\
             o1,c1,2024-01-01,B,1,1.0,placed\n\
             o1,c1,2024-01-02,A,2,3.5,paid\n\
             o2,c1,nope,A,1,1,placed\n",
        )
        .unwrap();
        let (events, errors) = read_file(&p, Kind::Order, Format::Csv).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 5);
        assert!(errors[0].1.contains("field ts"));
        let Some(pb::event::Payload::Order(o)) = &events[0].1.payload else {
            panic!()
        };
        assert_eq!(o.lines.len(), 2);
        // JSON-lines written by `to_json` read back to the same event.
        let (kind, line) = to_json(&events[0].1).unwrap();
        assert_eq!(kind, "order");
        let Value::Object(r) = serde_json::from_str::<Value>(&line).unwrap() else {
            panic!()
        };
        let back = to_event(Kind::Order, &r).unwrap();
        assert_eq!(back, events[0].1);
    }

    #[test]
    fn unknown_enum_values_are_named() {
        let mut r = Record::new();
        r.insert("kind".into(), Value::String("teleport".into()));
        let err = to_event(Kind::Interaction, &r).unwrap_err();
        assert!(err.contains("field kind"), "{err}");
    }
}
