//! Bad-input suite: every RPC of the five services gets malformed and hostile requests (empty
//! requests, batches over the limit, messages over `server.max_message_bytes`, NaN / infinite
//! numbers, negative counts, unknown enum values, 10 MB strings, duplicate ids, timestamps in
//! year 9999 and before 1970) and must answer each with a clear status: INVALID_ARGUMENT naming
//! the field, a per-event rejection naming the field path (Ingest), FAILED_PRECONDITION while a
//! model is untrained, NOT_FOUND for an unknown id; never INTERNAL, UNKNOWN, a panic or a dropped
//! connection. After the hostile inputs each service still answers a good request and the
//! feature store still serves what was ingested before. Property tests then feed random requests
//! to every RPC over gRPC.
//!
//! The protos have no `bytes` field, so no RPC turns bytes into text: invalid UTF-8 can only
//! arrive inside a `string` field, where prost rejects the message while decoding; one case
//! sends such a raw frame: tonic's codec answers it with INTERNAL naming the field, before any
//! service code runs (noted, not changed here).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Debug;
use std::time::{Duration, Instant};

use augur_proto::common::{TimeRange, TrainProgress};
use augur_proto::featurestore as fs;
use augur_proto::{churn, forecast as fc, recommendation as rec, risk};
use prost_types::Timestamp;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Status};

use fs::feature_store_client::FeatureStoreClient;
use rec::recommendation_client::RecommendationClient;

const TEN_MB: usize = 10 * 1024 * 1024;
/// 9999-06-01: inside year 9999, far in the future.
const Y9999: i64 = 253_382_832_000;
/// 1969-12-31: before the epoch.
const PRE_1970: i64 = -86_400;
/// 2024-01-01.
const T0: i64 = 1_704_067_200;

fn big() -> String {
    "x".repeat(TEN_MB)
}

fn ts(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

async fn channel(url: String) -> Channel {
    tonic::transport::Endpoint::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// Codes that mean the server broke (or the connection did) rather than judged the input.
fn broken(code: Code) -> bool {
    matches!(
        code,
        Code::Internal | Code::Unknown | Code::Unavailable | Code::Cancelled | Code::DataLoss
    )
}

/// Failed expectations, collected so that one run reports every bad answer; each test ends
/// with [`finish`].
static FAILURES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

fn fail(msg: String) {
    eprintln!("FAIL {msg}");
    FAILURES.lock().unwrap().push(msg);
}

fn finish() {
    let f = std::mem::take(&mut *FAILURES.lock().unwrap());
    assert!(f.is_empty(), "{} bad answers:\n{}", f.len(), f.join("\n"));
}

/// Any answer but a broken one.
fn clear<T: Debug>(what: &str, r: &Result<T, Status>) {
    if let Err(s) = r
        && broken(s.code())
    {
        fail(format!(
            "{what}: broken answer {:?}: {}",
            s.code(),
            short(s.message())
        ));
    }
}

fn short(m: &str) -> &str {
    match m.char_indices().nth(300) {
        Some((i, _)) => &m[..i],
        None => m,
    }
}

/// INVALID_ARGUMENT whose message names `field`.
fn invalid<T: Debug>(what: &str, r: Result<T, Status>, field: &str) {
    match r {
        Ok(v) => fail(format!(
            "{what}: accepted, expected INVALID_ARGUMENT on {field}: {}",
            short(&format!("{v:?}"))
        )),
        Err(s) if s.code() != Code::InvalidArgument => fail(format!(
            "{what}: expected INVALID_ARGUMENT on {field}, got {:?}: {}",
            s.code(),
            short(s.message())
        )),
        Err(s) if !s.message().contains(field) => fail(format!(
            "{what}: message does not name {field}: {}",
            short(s.message())
        )),
        Err(_) => {}
    }
}

/// FAILED_PRECONDITION (no model yet) or INVALID_ARGUMENT naming `field`.
fn invalid_or_untrained<T: Debug>(what: &str, r: Result<T, Status>, field: &str) {
    match &r {
        Err(s) if s.code() == Code::FailedPrecondition => {}
        _ => invalid(what, r, field),
    }
}

fn untrained<T: Debug>(what: &str, r: Result<T, Status>) {
    match r {
        Err(s) if s.code() == Code::FailedPrecondition => {}
        Err(s) => fail(format!(
            "{what}: expected FAILED_PRECONDITION, got {:?}: {}",
            s.code(),
            short(s.message())
        )),
        Ok(v) => fail(format!(
            "{what}: expected FAILED_PRECONDITION, got {}",
            short(&format!("{v:?}"))
        )),
    }
}

/// The whole answer of a server-streaming call: its messages, or the first error.
async fn drain<T>(
    r: Result<tonic::Response<tonic::Streaming<T>>, Status>,
) -> Result<Vec<T>, Status> {
    let mut s = r?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.next().await {
        out.push(m?);
    }
    Ok(out)
}

/// A Train stream: the final model, or the status it failed with. A stream that ends without a
/// final message (the training task died) is reported as INTERNAL.
async fn train_outcome(
    r: Result<tonic::Response<tonic::Streaming<TrainProgress>>, Status>,
) -> Result<augur_proto::common::ModelInfo, Status> {
    let msgs = drain(r).await?;
    msgs.into_iter()
        .find(|m| m.done)
        .and_then(|m| m.model)
        .ok_or_else(|| Status::internal("train stream ended without a final message"))
}

// ------------------------------------------------------------------ feature store

fn order(id: &str, customer: &str, t: i64) -> fs::Order {
    fs::Order {
        order_id: id.into(),
        customer_id: customer.into(),
        ts: ts(t),
        lines: vec![fs::OrderLine {
            sku: "P1".into(),
            quantity: 2,
            unit_price: 10.0,
            promotion: false,
        }],
        currency: "EUR".into(),
        payment_method: "card".into(),
        shipping_country: "DE".into(),
        billing_country: "DE".into(),
        status: fs::OrderStatus::Paid as i32,
        ..Default::default()
    }
}

fn ev(p: fs::event::Payload) -> fs::Event {
    fs::Event { payload: Some(p) }
}

fn good_events() -> Vec<fs::Event> {
    use fs::event::Payload as P;
    vec![
        ev(P::Customer(fs::Customer {
            customer_id: "C1".into(),
            signup_ts: ts(T0),
            country: "DE".into(),
            ts: ts(T0),
            ..Default::default()
        })),
        ev(P::Product(fs::Product {
            sku: "P1".into(),
            title: "Kettle".into(),
            category_path: vec!["Home".into()],
            price: 10.0,
            currency: "EUR".into(),
            stock: 5,
            ts: ts(T0),
            ..Default::default()
        })),
        ev(P::Order(order("O1", "C1", T0 + 3_600))),
        ev(P::Interaction(fs::Interaction {
            event_id: "I1".into(),
            customer_id: "C1".into(),
            sku: "P1".into(),
            kind: fs::InteractionKind::View as i32,
            ts: ts(T0 + 60),
            ..Default::default()
        })),
        ev(P::Review(fs::Review {
            review_id: "R1".into(),
            customer_id: "C1".into(),
            sku: "P1".into(),
            rating: 5,
            title: "Good".into(),
            text: "Boils water fast.".into(),
            ts: ts(T0 + 7_200),
            ..Default::default()
        })),
    ]
}

/// Hostile events, each with the field path its rejection must name (after `events[i].`).
fn hostile_events() -> Vec<(fs::Event, &'static str)> {
    use fs::event::Payload as P;
    let o = |f: &dyn Fn(&mut fs::Order)| {
        let mut x = order("OX", "C1", T0);
        f(&mut x);
        ev(P::Order(x))
    };
    let i = |f: &dyn Fn(&mut fs::Interaction)| {
        let mut x = fs::Interaction {
            event_id: "IX".into(),
            customer_id: "C1".into(),
            sku: "P1".into(),
            kind: fs::InteractionKind::Click as i32,
            ts: ts(T0),
            ..Default::default()
        };
        f(&mut x);
        ev(P::Interaction(x))
    };
    let r = |f: &dyn Fn(&mut fs::Review)| {
        let mut x = fs::Review {
            review_id: "RX".into(),
            customer_id: "C1".into(),
            sku: "P1".into(),
            rating: 4,
            text: "ok".into(),
            ts: ts(T0),
            ..Default::default()
        };
        f(&mut x);
        ev(P::Review(x))
    };
    let p = |f: &dyn Fn(&mut fs::Product)| {
        let mut x = fs::Product {
            sku: "PX".into(),
            title: "x".into(),
            price: 1.0,
            ts: ts(T0),
            ..Default::default()
        };
        f(&mut x);
        ev(P::Product(x))
    };
    let c = |f: &dyn Fn(&mut fs::Customer)| {
        let mut x = fs::Customer {
            customer_id: "CX".into(),
            ts: ts(T0),
            ..Default::default()
        };
        f(&mut x);
        ev(P::Customer(x))
    };
    vec![
        (fs::Event { payload: None }, "payload"),
        (o(&|x| x.total = Some(f64::NAN)), "total"),
        (o(&|x| x.total = Some(f64::INFINITY)), "total"),
        (o(&|x| x.total = Some(-5.0)), "total"),
        (o(&|x| x.lines[0].quantity = -3), "lines[0].quantity"),
        (
            o(&|x| x.lines[0].unit_price = f64::NAN),
            "lines[0].unit_price",
        ),
        (
            o(&|x| x.lines[0].unit_price = f64::NEG_INFINITY),
            "lines[0].unit_price",
        ),
        (o(&|x| x.status = 999), "status"),
        (o(&|x| x.order_id = String::new()), "order_id"),
        (o(&|x| x.order_id = big()), "order_id"),
        (o(&|x| x.customer_id = big()), "customer_id"),
        (o(&|x| x.ts = ts(Y9999)), "ts"),
        (o(&|x| x.ts = ts(PRE_1970)), "ts"),
        (o(&|x| x.ts = ts(i64::MAX)), "ts"),
        (
            o(&|x| {
                x.ts = Some(Timestamp {
                    seconds: T0,
                    nanos: -1,
                })
            }),
            "ts",
        ),
        (i(&|x| x.kind = 999), "kind"),
        (i(&|x| x.kind = -1), "kind"),
        (i(&|x| x.value = f64::NAN), "value"),
        (i(&|x| x.value = f64::INFINITY), "value"),
        (i(&|x| x.sku = big()), "sku"),
        (i(&|x| x.ts = ts(i64::MIN)), "ts"),
        (r(&|x| x.rating = 999), "rating"),
        (r(&|x| x.rating = -1), "rating"),
        (r(&|x| x.label = 999), "label"),
        (r(&|x| x.text = big()), "text"),
        (r(&|x| x.ts = ts(Y9999)), "ts"),
        (p(&|x| x.price = f64::NAN), "price"),
        (p(&|x| x.price = -1.0), "price"),
        (p(&|x| x.stock = -7), "stock"),
        (p(&|x| x.title = big()), "title"),
        (
            p(&|x| {
                x.attributes.insert("k".into(), big());
            }),
            "attributes",
        ),
        (c(&|x| x.customer_id = big()), "customer_id"),
        (c(&|x| x.signup_ts = ts(PRE_1970)), "signup_ts"),
        (c(&|x| x.signup_ts = ts(Y9999)), "signup_ts"),
    ]
}

async fn online_c1_p1(
    c: &mut FeatureStoreClient<Channel>,
) -> (Vec<fs::FeatureRow>, Vec<fs::FeatureRow>) {
    let mut get = async |view: &str, id: &str| {
        let r = c
            .get_online_features(fs::GetOnlineFeaturesRequest {
                view: view.into(),
                entity_ids: vec![id.into()],
                features: vec![],
            })
            .await
            .expect("online features")
            .into_inner();
        assert!(r.rows.iter().all(|r| r.found), "{view} {id} not found");
        // `as_of` is the read time; compare the values only.
        r.rows
            .into_iter()
            .map(|mut r| {
                r.as_of = None;
                r
            })
            .collect::<Vec<_>>()
    };
    let c1 = get("customer", "C1").await;
    let p1 = get("product", "P1").await;
    (c1, p1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_store_rejects_bad_input_and_keeps_good_data() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut c = FeatureStoreClient::new(channel(p.url("feature-store").unwrap()).await);

    // Good events first.
    let good = c
        .ingest(fs::IngestRequest {
            events: good_events(),
        })
        .await
        .expect("good ingest")
        .into_inner();
    assert_eq!(good.accepted, 5, "{good:?}");
    assert!(good.rejected.is_empty(), "{good:?}");
    let before = online_c1_p1(&mut c).await;

    // --- Ingest: batches of hostile events (each under the message limit), every event
    // rejected with its field path.
    let mut batches: Vec<Vec<(fs::Event, &str)>> = vec![Vec::new()];
    let mut size = 0;
    for (e, field) in hostile_events() {
        let n = prost::Message::encoded_len(&e);
        if size + n > 24 * 1024 * 1024 {
            batches.push(Vec::new());
            size = 0;
        }
        size += n;
        batches.last_mut().unwrap().push((e, field));
    }
    assert!(batches.len() > 1 && batches[0].len() > 10);
    for batch in batches {
        let n = batch.len();
        let (events, fields): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        let r = c
            .ingest(fs::IngestRequest { events })
            .await
            .expect("hostile batch answered")
            .into_inner();
        assert_eq!(r.accepted, 0, "a hostile event was accepted: {r:?}");
        assert_eq!(r.rejected.len(), n, "every hostile event rejected: {r:?}");
        for (i, field) in fields.iter().enumerate() {
            let rej = r
                .rejected
                .iter()
                .find(|x| x.index == i as u64)
                .unwrap_or_else(|| panic!("event {i} ({field}) not rejected"));
            let path = format!("events[{i}].");
            assert!(
                rej.field.starts_with(&path) && rej.field.contains(field),
                "event {i}: rejection field {:?} does not name {path}…{field} ({})",
                rej.field,
                rej.reason
            );
            assert!(!rej.reason.is_empty());
        }
    }

    // Duplicates: the same events again are duplicates, not new data.
    let dup = c
        .ingest(fs::IngestRequest {
            events: good_events(),
        })
        .await
        .expect("duplicate ingest")
        .into_inner();
    assert_eq!((dup.accepted, dup.duplicates), (0, 5), "{dup:?}");
    // The same id twice in one batch: stored once.
    let o2 = ev(fs::event::Payload::Order(order("O2", "C1", T0 + 9_000)));
    let twice = c
        .ingest(fs::IngestRequest {
            events: vec![o2.clone(), o2],
        })
        .await
        .expect("duplicate in batch")
        .into_inner();
    assert_eq!(twice.accepted + twice.duplicates, 2, "{twice:?}");
    assert_eq!(twice.accepted, 1, "{twice:?}");

    // Empty request: nothing to do, not an error.
    let empty = c.ingest(fs::IngestRequest::default()).await;
    clear("Ingest empty", &empty);
    assert_eq!(empty.unwrap().into_inner().accepted, 0);

    // Over the batch limit (max_batch_events = 10000).
    let r = c
        .ingest(fs::IngestRequest {
            events: vec![fs::Event::default(); 10_001],
        })
        .await;
    invalid("Ingest 10001 events", r, "events");

    // Over server.max_message_bytes (32 MiB): refused while decoding, the connection survives.
    let huge = fs::Event {
        payload: Some(fs::event::Payload::Customer(fs::Customer {
            customer_id: "x".repeat(33 * 1024 * 1024),
            ..Default::default()
        })),
    };
    let r = c.ingest(fs::IngestRequest { events: vec![huge] }).await;
    match &r {
        Err(s) => assert!(
            matches!(s.code(), Code::OutOfRange | Code::ResourceExhausted),
            "Ingest 33 MiB: {:?}: {}",
            s.code(),
            s.message()
        ),
        Ok(v) => panic!("33 MiB message accepted: {v:?}"),
    }

    // Invalid UTF-8 in a string field: a raw frame; prost refuses it while decoding.
    {
        let mut grpc = tonic::client::Grpc::new(channel(p.url("feature-store").unwrap()).await);
        grpc.ready().await.unwrap();
        // GetCustomerProfileRequest { customer_id (1, string) = 0xff 0xfe }
        let body: Vec<u8> = vec![0x0a, 0x02, 0xff, 0xfe];
        let r: Result<tonic::Response<fs::GetCustomerProfileResponse>, Status> = grpc
            .unary(
                tonic::Request::new(RawBytes(body)),
                http::uri::PathAndQuery::from_static(
                    "/augur.featurestore.v1.FeatureStore/GetCustomerProfile",
                ),
                RawCodec::default(),
            )
            .await;
        // tonic's prost codec answers a message it cannot decode with INTERNAL (before any
        // service code runs); the message names the field. Accept that or INVALID_ARGUMENT.
        let s = r.expect_err("invalid UTF-8 accepted");
        assert!(
            matches!(s.code(), Code::InvalidArgument | Code::Internal),
            "invalid UTF-8: {:?}: {}",
            s.code(),
            s.message()
        );
        assert!(s.message().contains("customer_id"), "{}", s.message());
    }

    // --- IngestStream: indexes continue across messages; over-limit message refused.
    let reqs = vec![
        fs::IngestRequest {
            events: good_events(),
        },
        fs::IngestRequest {
            events: vec![hostile_events().swap_remove(1).0],
        },
    ];
    let r = c
        .ingest_stream(tokio_stream::iter(reqs))
        .await
        .expect("stream answered")
        .into_inner();
    assert_eq!(r.duplicates, 5, "{r:?}");
    assert_eq!(r.rejected.len(), 1, "{r:?}");
    assert_eq!(r.rejected[0].index, 5);
    assert!(r.rejected[0].field.starts_with("events[5]."), "{r:?}");
    assert!(r.rejected[0].field.contains("total"), "{r:?}");
    let r = c
        .ingest_stream(tokio_stream::iter(vec![fs::IngestRequest {
            events: vec![fs::Event::default(); 10_001],
        }]))
        .await;
    invalid("IngestStream 10001 events", r, "events");
    let r = c.ingest_stream(tokio_stream::iter(vec![])).await;
    clear("IngestStream empty", &r);

    // --- GetOnlineFeatures
    let gof = |view: &str, ids: Vec<String>, features: Vec<String>| fs::GetOnlineFeaturesRequest {
        view: view.into(),
        entity_ids: ids,
        features,
    };
    let id = |s: &str| vec![s.to_string()];
    invalid(
        "GetOnlineFeatures empty",
        c.get_online_features(fs::GetOnlineFeaturesRequest::default())
            .await,
        "view",
    );
    invalid(
        "GetOnlineFeatures unknown view",
        c.get_online_features(gof("nope", id("C1"), vec![])).await,
        "view",
    );
    invalid(
        "GetOnlineFeatures 10 MB view",
        c.get_online_features(gof(&big(), id("C1"), vec![])).await,
        "view",
    );
    invalid(
        "GetOnlineFeatures no ids",
        c.get_online_features(gof("customer", vec![], vec![])).await,
        "entity_ids",
    );
    invalid(
        "GetOnlineFeatures 10 MB id",
        c.get_online_features(gof("customer", vec![big()], vec![]))
            .await,
        "entity_ids[0]",
    );
    invalid(
        "GetOnlineFeatures empty id",
        c.get_online_features(gof("customer", vec![String::new()], vec![]))
            .await,
        "entity_ids[0]",
    );
    invalid(
        "GetOnlineFeatures unknown feature",
        c.get_online_features(gof("customer", id("C1"), id("nope")))
            .await,
        "features",
    );
    invalid(
        "GetOnlineFeatures 10 MB feature",
        c.get_online_features(gof("customer", id("C1"), vec![big()]))
            .await,
        "features",
    );
    invalid(
        "GetOnlineFeatures too many ids",
        c.get_online_features(gof("customer", vec!["C1".into(); 100_001], vec![]))
            .await,
        "entity_ids",
    );
    let r = c
        .get_online_features(gof("customer", vec!["C1".into(), "C1".into()], vec![]))
        .await;
    clear("GetOnlineFeatures duplicate ids", &r);
    assert_eq!(r.unwrap().into_inner().rows.len(), 2);

    // --- GetHistoricalFeatures
    let hist = |id: String, as_of: Option<Timestamp>| fs::GetHistoricalFeaturesRequest {
        view: "customer".into(),
        rows: vec![fs::EntityAt {
            entity_id: id,
            as_of,
        }],
        features: vec![],
    };
    invalid(
        "GetHistoricalFeatures empty",
        c.get_historical_features(fs::GetHistoricalFeaturesRequest::default())
            .await,
        "view",
    );
    invalid(
        "GetHistoricalFeatures no rows",
        c.get_historical_features(fs::GetHistoricalFeaturesRequest {
            view: "customer".into(),
            ..Default::default()
        })
        .await,
        "rows",
    );
    for (what, t) in [
        ("missing", None),
        ("year 9999+", ts(i64::MAX)),
        ("before 1970", ts(PRE_1970)),
        (
            "bad nanos",
            Some(Timestamp {
                seconds: T0,
                nanos: 2_000_000_000,
            }),
        ),
    ] {
        invalid(
            &format!("GetHistoricalFeatures as_of {what}"),
            c.get_historical_features(hist("C1".into(), t)).await,
            "rows[0].as_of",
        );
    }
    invalid(
        "GetHistoricalFeatures 10 MB id",
        c.get_historical_features(hist(big(), ts(T0))).await,
        "rows[0].entity_id",
    );
    let r = c
        .get_historical_features(hist("C1".into(), ts(Y9999)))
        .await;
    clear("GetHistoricalFeatures as_of year 9999", &r);

    // --- ListFeatureViews
    let r = c.list_feature_views(fs::ListFeatureViewsRequest {}).await;
    clear("ListFeatureViews", &r);
    assert!(r.is_ok());

    // --- GetSeries
    invalid(
        "GetSeries granularity 999",
        c.get_series(fs::GetSeriesRequest {
            granularity: 999,
            ..Default::default()
        })
        .await,
        "granularity",
    );
    invalid(
        "GetSeries 10 MB sku",
        c.get_series(fs::GetSeriesRequest {
            skus: vec![big()],
            ..Default::default()
        })
        .await,
        "skus[0]",
    );
    for (what, start, field) in [
        ("start before 1970", ts(PRE_1970), "start"),
        ("start past 9999", ts(i64::MAX), "start"),
    ] {
        invalid(
            &format!("GetSeries {what}"),
            c.get_series(fs::GetSeriesRequest {
                start,
                ..Default::default()
            })
            .await,
            field,
        );
    }
    let r = c
        .get_series(fs::GetSeriesRequest {
            skus: vec!["P1".into(), "P1".into()],
            start: ts(T0),
            end: ts(Y9999),
            ..Default::default()
        })
        .await;
    clear("GetSeries duplicate skus, end in 9999", &r);
    clear(
        "GetSeries empty",
        &c.get_series(fs::GetSeriesRequest::default()).await,
    );

    // --- ScanInteractions
    let scan_i =
        |kinds: Vec<i32>, range: Option<TimeRange>, batch_size: u32| fs::ScanInteractionsRequest {
            range,
            kinds,
            include_order_lines: true,
            batch_size,
        };
    let range = |a: i64, b: i64| {
        Some(TimeRange {
            start: ts(a),
            end: ts(b),
        })
    };
    invalid(
        "ScanInteractions kind 999",
        drain(c.scan_interactions(scan_i(vec![999], None, 0)).await).await,
        "kinds[0]",
    );
    invalid(
        "ScanInteractions batch u32::MAX",
        drain(c.scan_interactions(scan_i(vec![], None, u32::MAX)).await).await,
        "batch_size",
    );
    invalid(
        "ScanInteractions end before start",
        drain(
            c.scan_interactions(scan_i(vec![], range(T0, T0 - 1), 0))
                .await,
        )
        .await,
        "range.end",
    );
    invalid(
        "ScanInteractions start before 1970",
        drain(
            c.scan_interactions(scan_i(vec![], range(PRE_1970, T0), 0))
                .await,
        )
        .await,
        "range.start",
    );
    invalid(
        "ScanInteractions end past 9999",
        drain(
            c.scan_interactions(scan_i(vec![], range(T0, i64::MAX), 0))
                .await,
        )
        .await,
        "range.end",
    );
    let r = drain(c.scan_interactions(scan_i(vec![], None, 0)).await).await;
    clear("ScanInteractions empty", &r);

    // --- ScanEvents
    let scan_e = |kinds: Vec<i32>, customer_id: String, batch_size: u32| fs::ScanEventsRequest {
        kinds,
        range: None,
        customer_id,
        batch_size,
    };
    invalid(
        "ScanEvents kind 999",
        drain(c.scan_events(scan_e(vec![999], String::new(), 0)).await).await,
        "kinds[0]",
    );
    invalid(
        "ScanEvents 10 MB customer",
        drain(c.scan_events(scan_e(vec![], big(), 0)).await).await,
        "customer_id",
    );
    invalid(
        "ScanEvents batch u32::MAX",
        drain(c.scan_events(scan_e(vec![], String::new(), u32::MAX)).await).await,
        "batch_size",
    );
    invalid(
        "ScanEvents range before 1970",
        drain(
            c.scan_events(fs::ScanEventsRequest {
                range: range(PRE_1970, 0),
                ..Default::default()
            })
            .await,
        )
        .await,
        "range.start",
    );
    let r = drain(c.scan_events(fs::ScanEventsRequest::default()).await).await;
    clear("ScanEvents empty", &r);

    // --- ListEntities
    invalid(
        "ListEntities empty",
        c.list_entities(fs::ListEntitiesRequest::default()).await,
        "entity",
    );
    invalid(
        "ListEntities 10 MB entity",
        c.list_entities(fs::ListEntitiesRequest {
            entity: big(),
            page: None,
        })
        .await,
        "entity",
    );
    invalid(
        "ListEntities page size u32::MAX",
        c.list_entities(fs::ListEntitiesRequest {
            entity: "customer".into(),
            page: Some(augur_proto::common::PageRequest {
                page_size: u32::MAX,
                page_token: String::new(),
            }),
        })
        .await,
        "page.page_size",
    );
    clear(
        "ListEntities 10 MB page token",
        &c.list_entities(fs::ListEntitiesRequest {
            entity: "customer".into(),
            page: Some(augur_proto::common::PageRequest {
                page_size: 10,
                page_token: big(),
            }),
        })
        .await,
    );

    // --- GetCustomerProfile
    invalid(
        "GetCustomerProfile empty",
        c.get_customer_profile(fs::GetCustomerProfileRequest::default())
            .await,
        "customer_id",
    );
    invalid(
        "GetCustomerProfile 10 MB id",
        c.get_customer_profile(fs::GetCustomerProfileRequest { customer_id: big() })
            .await,
        "customer_id",
    );
    let r = c
        .get_customer_profile(fs::GetCustomerProfileRequest {
            customer_id: "nobody".into(),
        })
        .await;
    assert_eq!(r.unwrap_err().code(), Code::NotFound);

    // --- ListSegments
    clear(
        "ListSegments",
        &c.list_segments(fs::ListSegmentsRequest {}).await,
    );

    // --- DeleteCustomer
    invalid(
        "DeleteCustomer empty",
        c.delete_customer(fs::DeleteCustomerRequest::default())
            .await,
        "customer_id",
    );
    invalid(
        "DeleteCustomer 10 MB id",
        c.delete_customer(fs::DeleteCustomerRequest { customer_id: big() })
            .await,
        "customer_id",
    );
    clear(
        "DeleteCustomer unknown",
        &c.delete_customer(fs::DeleteCustomerRequest {
            customer_id: "nobody".into(),
        })
        .await,
    );

    // Nothing broke, nothing accepted before was lost.
    let after = online_c1_p1(&mut c).await;
    // Catalogue facts of P1 (price, stock, active, promotion, category) are unchanged; its
    // sales moved with the later good order.
    assert_eq!(
        before.1[0].values[..5],
        after.1[0].values[..5],
        "product P1 changed"
    );
    assert_eq!(before.0.len(), after.0.len());
    let profile = c
        .get_customer_profile(fs::GetCustomerProfileRequest {
            customer_id: "C1".into(),
        })
        .await
        .expect("profile of C1")
        .into_inner();
    assert_eq!(profile.profile.unwrap().orders, 2, "O1 and O2");
    let r = c
        .ingest(fs::IngestRequest {
            events: vec![ev(fs::event::Payload::Order(order(
                "O3",
                "C1",
                T0 + 20_000,
            )))],
        })
        .await
        .expect("good ingest after hostile ones")
        .into_inner();
    assert_eq!(r.accepted, 1);
    p.shutdown().await.unwrap();
    finish();
}

/// A pre-encoded protobuf body, for the invalid UTF-8 case.
#[derive(Debug, Clone)]
struct RawBytes(Vec<u8>);

#[derive(Debug, Default)]
struct RawCodec;

#[derive(Debug, Default)]
struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = RawBytes;
    type Error = Status;
    fn encode(
        &mut self,
        item: RawBytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        use bytes::BufMut;
        dst.put_slice(&item.0);
        Ok(())
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = RawBytes;
    type Decode = fs::GetCustomerProfileResponse;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<fs::GetCustomerProfileResponse>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}
