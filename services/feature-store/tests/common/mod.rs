//! Test helpers: a feature store on 127.0.0.1:0 over SQLite (temp dir) or PostgreSQL (a fresh
//! database per test), and event builders.
#![allow(
    dead_code,
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::field_reassign_with_default
)]

use augur_feature_store::Config;
use augur_proto::featurestore as pb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_runtime::{Secret, ServerConfig, ServerHandle};
use tonic::transport::Channel;

pub const DAY: i64 = 86_400;
/// 2020-01-01T00:00:00Z
pub const T0: i64 = 1_577_836_800;

pub fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

/// Where a test's data lives; `cleanup` removes the PostgreSQL database.
pub enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres {
        db: augur_testkit::postgres::TestDb,
        dir: tempfile::TempDir,
    },
}

impl Backend {
    pub fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("tempdir"))
    }

    /// A fresh PostgreSQL database, or `None` (loudly) when PostgreSQL is unreachable.
    pub async fn postgres() -> Option<Self> {
        let db = augur_testkit::postgres::TestDb::create().await?;
        Some(Self::Postgres {
            db,
            dir: tempfile::tempdir().expect("tempdir"),
        })
    }

    pub fn config(&self) -> Config {
        let mut c = Config::default();
        c.server = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            ..ServerConfig::default()
        };
        c.hash_key = Secret::new("test-hash-key-0123456789");
        match self {
            Self::Sqlite(dir) => c.data_dir = dir.path().to_path_buf(),
            Self::Postgres { db, dir } => {
                c.data_dir = dir.path().to_path_buf();
                c.database_url = Secret::new(db.url.clone());
            }
        }
        c
    }

    pub async fn cleanup(self) {
        if let Self::Postgres { db, .. } = self {
            db.drop_db().await;
        }
    }
}

pub struct Running {
    pub handle: ServerHandle,
    pub client: FeatureStoreClient<Channel>,
}

pub async fn start(config: &Config) -> Running {
    let (server, _app) = augur_feature_store::build(config)
        .await
        .expect("build feature store");
    let handle = server.spawn().await.expect("spawn");
    let client = FeatureStoreClient::connect(handle.url())
        .await
        .expect("connect");
    Running { handle, client }
}

pub fn product(sku: &str, category: &[&str], price: f64, stock: i64, t: i64) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::Product(pb::Product {
            sku: sku.into(),
            title: format!("Product {sku}"),
            category_path: category.iter().map(|s| s.to_string()).collect(),
            price,
            stock,
            ts: ts(t),
            ..Default::default()
        })),
    }
}

pub fn customer(id: &str, country: &str, t: i64) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::Customer(pb::Customer {
            customer_id: id.into(),
            signup_ts: ts(t),
            country: country.into(),
            attributes: [("tier".to_string(), "gold".to_string())]
                .into_iter()
                .collect(),
            ts: None,
        })),
    }
}

pub fn order(id: &str, customer: &str, t: i64, lines: &[(&str, i64, f64)]) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::Order(pb::Order {
            order_id: id.into(),
            customer_id: customer.into(),
            ts: ts(t),
            lines: lines
                .iter()
                .map(|(sku, q, p)| pb::OrderLine {
                    sku: sku.to_string(),
                    quantity: *q,
                    unit_price: *p,
                    promotion: false,
                })
                .collect(),
            currency: "EUR".into(),
            payment_fingerprint: format!("tok_{customer}"),
            device_fingerprint: format!("dev_{customer}"),
            shipping_country: "DE".into(),
            billing_country: "DE".into(),
            ..Default::default()
        })),
    }
}

pub fn interaction(
    id: &str,
    customer: &str,
    sku: &str,
    kind: pb::InteractionKind,
    t: i64,
    session: &str,
) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::Interaction(pb::Interaction {
            event_id: id.into(),
            customer_id: customer.into(),
            sku: sku.into(),
            kind: kind as i32,
            ts: ts(t),
            session_id: session.into(),
            ..Default::default()
        })),
    }
}

pub fn review(id: &str, customer: &str, sku: &str, rating: i32, t: i64) -> pb::Event {
    pb::Event {
        payload: Some(pb::event::Payload::Review(pb::Review {
            review_id: id.into(),
            customer_id: customer.into(),
            sku: sku.into(),
            rating,
            title: "ok".into(),
            text: "fine product".into(),
            ts: ts(t),
            label: 0,
        })),
    }
}

pub fn value_of<'a>(
    names: &[String],
    row: &'a pb::FeatureRow,
    name: &str,
) -> &'a pb::feature_value::Value {
    let i = names
        .iter()
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no column {name}"));
    row.values[i].value.as_ref().expect("value set")
}

pub fn f64_of(names: &[String], row: &pb::FeatureRow, name: &str) -> f64 {
    match value_of(names, row, name) {
        pb::feature_value::Value::DoubleValue(v) => *v,
        pb::feature_value::Value::Int64Value(v) => *v as f64,
        other => panic!("{name} is not numeric: {other:?}"),
    }
}

/// The orders a `ScanEvents` request streams (panics on any other kind of event).
pub async fn scan_orders(
    c: &mut FeatureStoreClient<Channel>,
    req: pb::ScanEventsRequest,
) -> Result<Vec<pb::Order>, tonic::Status> {
    let mut s = c.scan_events(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(b) = s.message().await? {
        for e in b.events {
            match e.event.and_then(|e| e.payload) {
                Some(pb::event::Payload::Order(o)) => out.push(o),
                other => panic!("not an order: {other:?}"),
            }
        }
    }
    Ok(out)
}
