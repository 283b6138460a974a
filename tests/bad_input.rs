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
//! sends such a raw frame: INVALID_ARGUMENT naming the field (tonic's INTERNAL, reclassified by
//! the runtime's guard layer).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::fmt::Debug;
use std::time::Instant;

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

// Failed expectations, collected so that one run reports every bad answer; each test ends
// with `finish`.
thread_local! {
    // The test body runs on the test's own thread (`block_on`), so the list is per test.
    static FAILURES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

fn fail(msg: String) {
    eprintln!("FAIL {msg}");
    FAILURES.with(|f| f.borrow_mut().push(msg));
}

fn finish() {
    let f = FAILURES.with(|f| std::mem::take(&mut *f.borrow_mut()));
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
                RawCodec,
            )
            .await;
        // tonic's prost codec refuses a message it cannot decode before any service code runs
        // (as INTERNAL); the runtime's guard layer reclassifies that as INVALID_ARGUMENT, and
        // the message names the field.
        let s = r.expect_err("invalid UTF-8 accepted");
        assert!(
            matches!(s.code(), Code::InvalidArgument),
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
        ..Default::default()
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
    for (what, id) in [("10 MB", big()), ("control characters", "O1\n".to_string())] {
        invalid(
            &format!("ScanEvents {what} order id"),
            drain(
                c.scan_events(fs::ScanEventsRequest {
                    order_id: id,
                    ..Default::default()
                })
                .await,
            )
            .await,
            "order_id",
        );
    }
    invalid(
        "ScanEvents 10 MB device fingerprint",
        drain(
            c.scan_events(fs::ScanEventsRequest {
                device_fingerprint: big(),
                ..Default::default()
            })
            .await,
        )
        .await,
        "device_fingerprint",
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

    // --- GetCustomerSegments
    let segs = |ids: Vec<String>| fs::GetCustomerSegmentsRequest { customer_ids: ids };
    invalid(
        "GetCustomerSegments empty",
        c.get_customer_segments(segs(vec![])).await,
        "customer_ids",
    );
    invalid(
        "GetCustomerSegments empty id",
        c.get_customer_segments(segs(vec!["C1".into(), String::new()]))
            .await,
        "customer_ids[1]",
    );
    invalid(
        "GetCustomerSegments 10 MB id",
        c.get_customer_segments(segs(vec![big()])).await,
        "customer_ids[0]",
    );
    invalid(
        "GetCustomerSegments too many ids",
        c.get_customer_segments(segs(vec!["C1".into(); 100_001]))
            .await,
        "customer_ids",
    );
    let r = c
        .get_customer_segments(segs(vec!["C1".into(), "nobody".into(), "C1".into()]))
        .await;
    clear("GetCustomerSegments duplicate and unknown ids", &r);
    let found: Vec<bool> = r
        .unwrap()
        .into_inner()
        .segments
        .iter()
        .map(|s| s.found)
        .collect();
    assert_eq!(
        found,
        vec![true, false, true],
        "unknown ids are answered, not refused"
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

// ------------------------------------------------------------------ model services

fn interaction(customer: &str, sku: &str, t: i64) -> fs::Interaction {
    fs::Interaction {
        event_id: format!("{customer}-{sku}-{t}"),
        customer_id: customer.into(),
        sku: sku.into(),
        kind: fs::InteractionKind::Purchase as i32,
        ts: ts(t),
        ..Default::default()
    }
}

fn rec_train(xs: Vec<fs::Interaction>) -> rec::TrainRequest {
    rec::TrainRequest {
        source: Some(rec::train_request::Source::Inline(
            rec::InlineInteractions { interactions: xs },
        )),
        hyperparameters: [("seq.enabled".to_string(), "false".to_string())].into(),
        ..Default::default()
    }
}

/// Hostile Recommend / SimilarItems requests (the same before and after training).
async fn rec_hostile(
    c: &mut RecommendationClient<Channel>,
    check: fn(&str, Result<(), Status>, &str),
) {
    let ok = |r: Result<tonic::Response<rec::RecommendResponse>, Status>| r.map(|_| ());
    let recommend =
        |k: u32, options: Option<rec::RecommendOptions>, id: String| rec::RecommendRequest {
            customer_id: id,
            k,
            options,
        };
    let opts = |f: &dyn Fn(&mut rec::RecommendOptions)| {
        let mut o = rec::RecommendOptions::default();
        f(&mut o);
        Some(o)
    };
    for (what, req, field) in [
        ("k u32::MAX", recommend(u32::MAX, None, "C1".into()), "k"),
        ("k 501", recommend(501, None, "C1".into()), "k"),
        ("10 MB customer", recommend(5, None, big()), "customer_id"),
        (
            "NaN min_price",
            recommend(5, opts(&|o| o.min_price = Some(f64::NAN)), "C1".into()),
            "options.min_price",
        ),
        (
            "-inf max_price",
            recommend(
                5,
                opts(&|o| o.max_price = Some(f64::NEG_INFINITY)),
                "C1".into(),
            ),
            "options.max_price",
        ),
        (
            "negative min_price",
            recommend(5, opts(&|o| o.min_price = Some(-1.0)), "C1".into()),
            "options.min_price",
        ),
        (
            "inf boost",
            recommend(
                5,
                opts(&|o| o.recent_sales_boost = f64::INFINITY),
                "C1".into(),
            ),
            "options.recent_sales_boost",
        ),
        (
            "empty category",
            recommend(5, opts(&|o| o.categories = vec![" ".into()]), "C1".into()),
            "options.categories[0]",
        ),
    ] {
        check(
            &format!("Recommend {what}"),
            ok(c.recommend(req).await),
            field,
        );
    }
    let sim = |sku: String, k: u32| rec::SimilarItemsRequest { sku, k };
    for (what, req, field) in [
        ("empty", sim(String::new(), 0), "sku"),
        ("10 MB sku", sim(big(), 5), "sku"),
        ("k u32::MAX", sim("P1".into(), u32::MAX), "k"),
    ] {
        check(
            &format!("SimilarItems {what}"),
            c.similar_items(req).await.map(|_| ()),
            field,
        );
    }
}

/// Hostile Train requests: rejected before any training starts.
async fn rec_hostile_train(c: &mut RecommendationClient<Channel>) {
    let good = || interaction("C1", "P1", T0);
    let with = |f: &dyn Fn(&mut fs::Interaction)| {
        let mut x = good();
        f(&mut x);
        rec_train(vec![good(), x])
    };
    let f = "source.inline.interactions[1].";
    let cases: Vec<(&str, rec::TrainRequest, String)> = vec![
        (
            "empty inline",
            rec_train(vec![]),
            "source.inline.interactions".into(),
        ),
        (
            "NaN value",
            with(&|x| x.value = f64::NAN),
            format!("{f}value"),
        ),
        ("kind 999", with(&|x| x.kind = 999), format!("{f}kind")),
        (
            "no customer",
            with(&|x| x.customer_id.clear()),
            format!("{f}customer_id"),
        ),
        (
            "10 MB customer",
            with(&|x| x.customer_id = big()),
            format!("{f}customer_id"),
        ),
        ("10 MB sku", with(&|x| x.sku = big()), format!("{f}sku")),
        ("no ts", with(&|x| x.ts = None), format!("{f}ts")),
        (
            "ts year 9999",
            with(&|x| x.ts = ts(Y9999)),
            format!("{f}ts"),
        ),
        (
            "ts before 1970",
            with(&|x| x.ts = ts(PRE_1970)),
            format!("{f}ts"),
        ),
        (
            "ts i64::MIN",
            with(&|x| x.ts = ts(i64::MIN)),
            format!("{f}ts"),
        ),
        (
            "NaN validation_fraction",
            rec::TrainRequest {
                validation_fraction: f64::NAN,
                ..rec_train(vec![good()])
            },
            "validation_fraction".into(),
        ),
        (
            "negative validation_fraction",
            rec::TrainRequest {
                validation_fraction: -0.2,
                ..rec_train(vec![good()])
            },
            "validation_fraction".into(),
        ),
        (
            "NaN hyper-parameter",
            rec::TrainRequest {
                hyperparameters: [("seq.lr".to_string(), "NaN".to_string())].into(),
                ..rec_train(vec![good()])
            },
            "hyperparameters[seq.lr]".into(),
        ),
        (
            "negative hyper-parameter",
            rec::TrainRequest {
                hyperparameters: [("knn.neighbours".to_string(), "-3".to_string())].into(),
                ..rec_train(vec![good()])
            },
            "hyperparameters[knn.neighbours]".into(),
        ),
        (
            "10 MB hyper-parameter name",
            rec::TrainRequest {
                hyperparameters: [(big(), "1".to_string())].into(),
                ..rec_train(vec![good()])
            },
            "hyperparameters[".into(),
        ),
    ];
    for (what, req, field) in cases {
        invalid(
            &format!("Train {what}"),
            train_outcome(c.train(req).await).await,
            &field,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recommendation_rejects_bad_input_untrained_and_trained() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut c = RecommendationClient::new(channel(p.url("recommendation").unwrap()).await);

    // Untrained.
    untrained(
        "Recommend empty",
        c.recommend(rec::RecommendRequest::default()).await,
    );
    untrained(
        "GetModelInfo",
        c.get_model_info(rec::GetModelInfoRequest {}).await,
    );
    rec_hostile(&mut c, invalid_or_untrained).await;
    rec_hostile_train(&mut c).await;

    // Trained on a small inline set (duplicate interactions included).
    let mut xs = Vec::new();
    for u in 0..30 {
        for i in 0..4 {
            xs.push(interaction(
                &format!("U{u}"),
                &format!("S{}", (u + i) % 12),
                T0 + (u * 10 + i) as i64,
            ));
        }
    }
    xs.push(xs[0].clone());
    let t = Instant::now();
    let info = train_outcome(c.train(rec_train(xs)).await)
        .await
        .expect("inline training");
    eprintln!("recommendation inline training: {:?}", t.elapsed());
    assert!(!info.model_version.is_empty());
    rec_hostile(&mut c, invalid).await;
    rec_hostile_train(&mut c).await;

    // Still serving the trained model.
    let r = c
        .recommend(rec::RecommendRequest {
            customer_id: "U1".into(),
            k: 3,
            options: None,
        })
        .await
        .expect("good recommend after hostile ones")
        .into_inner();
    assert_eq!(r.model_version, info.model_version);
    let r = c
        .similar_items(rec::SimilarItemsRequest {
            sku: "nope".into(),
            k: 3,
        })
        .await;
    clear("SimilarItems unknown sku", &r);
    p.shutdown().await.unwrap();
    finish();
}

fn monthly(k: usize) -> fc::InlineSeries {
    fc::InlineSeries {
        values: (0..36)
            .map(|t| 50.0 + k as f64 + 10.0 * ((t % 12) as f64).sin() + t as f64 * 0.5)
            .collect(),
        frequency: fc::Frequency::Month as i32,
        ..Default::default()
    }
}

fn fc_input(s: fc::InlineSeries) -> fc::SeriesInput {
    fc::SeriesInput {
        id: "s".into(),
        source: Some(fc::series_input::Source::Inline(s)),
        ..Default::default()
    }
}

fn fc_train(series: Vec<fc::InlineSeries>) -> fc::TrainRequest {
    fc::TrainRequest {
        source: Some(fc::train_request::Source::Inline(fc::InlineSeriesSet {
            series,
        })),
        horizon: 6,
        hyperparameters: [
            ("gru".to_string(), "false".to_string()),
            ("grid".to_string(), "false".to_string()),
        ]
        .into(),
        ..Default::default()
    }
}

fn with_series(f: &dyn Fn(&mut fc::InlineSeries)) -> fc::InlineSeries {
    let mut s = monthly(0);
    f(&mut s);
    s
}

/// Hostile Forecast / Backtest / ReorderAdvice requests.
async fn fc_hostile(
    c: &mut fc::demand_forecast_client::DemandForecastClient<Channel>,
    check: fn(&str, Result<(), Status>, &str),
) {
    let fcast =
        |series: Vec<fc::SeriesInput>, horizon: u32, quantiles: Vec<f64>, granularity: i32| {
            fc::ForecastRequest {
                series,
                horizon,
                quantiles,
                granularity,
            }
        };
    let one = || vec![fc_input(monthly(1))];
    let s = "series[0].inline.";
    let cases: Vec<(&str, fc::ForecastRequest, String)> = vec![
        ("empty", fc::ForecastRequest::default(), "horizon".into()),
        ("horizon 0", fcast(one(), 0, vec![], 0), "horizon".into()),
        (
            "horizon u32::MAX",
            fcast(one(), u32::MAX, vec![], 0),
            "horizon".into(),
        ),
        ("no series", fcast(vec![], 3, vec![], 0), "series".into()),
        (
            "NaN quantile",
            fcast(one(), 3, vec![f64::NAN], 0),
            "quantiles[0]".into(),
        ),
        (
            "quantile 1.5",
            fcast(one(), 3, vec![0.5, 1.5], 0),
            "quantiles[1]".into(),
        ),
        (
            "granularity 999",
            fcast(one(), 3, vec![], 999),
            "granularity".into(),
        ),
        (
            "no source",
            fcast(vec![fc::SeriesInput::default()], 3, vec![], 0),
            "series[0].source".into(),
        ),
        (
            "empty values",
            fcast(
                vec![fc_input(with_series(&|x| x.values.clear()))],
                3,
                vec![],
                0,
            ),
            format!("{s}values"),
        ),
        (
            "all NaN values",
            fcast(
                vec![fc_input(with_series(&|x| x.values = vec![f64::NAN; 30]))],
                3,
                vec![],
                0,
            ),
            format!("{s}values"),
        ),
        (
            "frequency 999",
            fcast(
                vec![fc_input(with_series(&|x| x.frequency = 999))],
                3,
                vec![],
                0,
            ),
            format!("{s}frequency"),
        ),
        (
            "timestamps in 9999",
            fcast(
                vec![fc_input(with_series(&|x| {
                    x.timestamps = (0..36)
                        .map(|i| ts(Y9999 + i * 2_678_400).unwrap())
                        .collect()
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}timestamps"),
        ),
        (
            "timestamps before 1970",
            fcast(
                vec![fc_input(with_series(&|x| {
                    x.timestamps = (0..36)
                        .map(|i| ts(PRE_1970 - i * 86_400).unwrap())
                        .collect()
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}timestamps"),
        ),
        (
            "covariate length",
            fcast(
                vec![fc_input(with_series(&|x| {
                    x.covariates
                        .insert("price".into(), fc::Covariate { values: vec![1.0] });
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}covariates[price]"),
        ),
        (
            "NaN static feature",
            fcast(
                vec![fc_input(with_series(&|x| {
                    x.static_features.insert("income".into(), f64::NAN);
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}static_features[income]"),
        ),
        (
            "too many static features",
            fcast(
                vec![fc_input(with_series(&|x| {
                    for k in 0..65 {
                        x.static_features.insert(format!("f{k}"), 1.0);
                    }
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}static_features"),
        ),
        (
            "huge static feature name",
            fcast(
                vec![fc_input(with_series(&|x| {
                    x.static_features.insert(big(), 1.0);
                }))],
                3,
                vec![],
                0,
            ),
            format!("{s}static_features"),
        ),
        (
            "unknown future covariate",
            fcast(
                vec![fc::SeriesInput {
                    future_covariates: [(
                        big(),
                        fc::Covariate {
                            values: vec![1.0; 3],
                        },
                    )]
                    .into(),
                    ..fc_input(monthly(1))
                }],
                3,
                vec![],
                0,
            ),
            "series[0].future_covariates[".into(),
        ),
        (
            "feature-store sku empty",
            fcast(
                vec![fc::SeriesInput {
                    source: Some(fc::series_input::Source::FeatureStore(
                        fc::SeriesKey::default(),
                    )),
                    ..Default::default()
                }],
                3,
                vec![],
                0,
            ),
            "series[0].feature_store.sku".into(),
        ),
        (
            "feature-store sku 10 MB",
            fcast(
                vec![fc::SeriesInput {
                    source: Some(fc::series_input::Source::FeatureStore(fc::SeriesKey {
                        sku: big(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                3,
                vec![],
                0,
            ),
            "series[0].feature_store.sku".into(),
        ),
    ];
    for (what, req, field) in cases {
        check(
            &format!("Forecast {what}"),
            c.forecast(req).await.map(|_| ()),
            &field,
        );
    }
    // Odd but valid shapes: a clear answer either way.
    for (what, s) in [
        ("inf values", with_series(&|x| x.values[3] = f64::INFINITY)),
        (
            "season u32::MAX",
            with_series(&|x| x.season_length = u32::MAX),
        ),
        ("10 MB id", monthly(2)),
    ] {
        let mut input = fc_input(s);
        if what == "10 MB id" {
            input.id = big();
        }
        let r = c.forecast(fcast(vec![input], 3, vec![], 0)).await;
        clear(&format!("Forecast {what}"), &r);
    }

    let bt = |windows: u32, step: u32, interval: f64| fc::BacktestRequest {
        series: vec![fc_input(monthly(1))],
        horizon: 3,
        windows,
        step,
        interval,
        ..Default::default()
    };
    for (what, req, field) in [
        ("empty", fc::BacktestRequest::default(), "horizon"),
        ("NaN interval", bt(1, 0, f64::NAN), "interval"),
        ("interval -1", bt(1, 0, -1.0), "interval"),
        (
            "windows and step u32::MAX",
            bt(u32::MAX, u32::MAX, 0.8),
            "series[0]",
        ),
    ] {
        check(
            &format!("Backtest {what}"),
            c.backtest(req).await.map(|_| ()),
            field,
        );
    }
    let ra =
        |items: Vec<fc::SeriesKey>, lead_time: u32, service_level: f64| fc::ReorderAdviceRequest {
            items,
            lead_time,
            service_level,
            granularity: 0,
        };
    let key = |sku: String| fc::SeriesKey {
        sku,
        ..Default::default()
    };
    for (what, req, field) in [
        ("empty", fc::ReorderAdviceRequest::default(), "lead_time"),
        (
            "NaN service level",
            ra(vec![key("P1".into())], 2, f64::NAN),
            "service_level",
        ),
        (
            "service level 1",
            ra(vec![key("P1".into())], 2, 1.0),
            "service_level",
        ),
        ("no items", ra(vec![], 2, 0.9), "items"),
        (
            "lead time u32::MAX",
            ra(vec![key("P1".into())], u32::MAX, 0.9),
            "lead_time",
        ),
        (
            "empty sku",
            ra(vec![key(String::new())], 2, 0.9),
            "items[0].sku",
        ),
        ("10 MB sku", ra(vec![key(big())], 2, 0.9), "items[0].sku"),
    ] {
        check(
            &format!("ReorderAdvice {what}"),
            c.reorder_advice(req).await.map(|_| ()),
            field,
        );
    }
}

async fn fc_hostile_train(c: &mut fc::demand_forecast_client::DemandForecastClient<Channel>) {
    let s = "inline.series[0].";
    let cases: Vec<(&str, fc::TrainRequest, String)> = vec![
        ("no series", fc_train(vec![]), "inline.series".into()),
        (
            "horizon u32::MAX",
            fc::TrainRequest {
                horizon: u32::MAX,
                ..fc_train(vec![monthly(0)])
            },
            "horizon".into(),
        ),
        (
            "validation_windows u32::MAX",
            fc::TrainRequest {
                validation_windows: u32::MAX,
                ..fc_train(vec![monthly(0)])
            },
            "validation_windows".into(),
        ),
        (
            "empty values",
            fc_train(vec![with_series(&|x| x.values.clear())]),
            format!("{s}values"),
        ),
        (
            "all inf values",
            fc_train(vec![with_series(&|x| x.values = vec![f64::INFINITY; 30])]),
            format!("{s}values"),
        ),
        (
            "infinite static feature",
            fc_train(vec![with_series(&|x| {
                x.static_features
                    .insert("competitor_distance".into(), f64::NEG_INFINITY);
            })]),
            format!("{s}static_features[competitor_distance]"),
        ),
        (
            "frequency 999",
            fc_train(vec![with_series(&|x| x.frequency = -5)]),
            format!("{s}frequency"),
        ),
        (
            "timestamps i64::MIN",
            fc_train(vec![with_series(&|x| {
                x.timestamps = vec![ts(i64::MIN).unwrap(); 36]
            })]),
            format!("{s}timestamps[0]"),
        ),
        (
            "NaN ridge",
            fc::TrainRequest {
                hyperparameters: [("ridge".to_string(), "NaN".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[ridge]".into(),
        ),
        (
            "negative window",
            fc::TrainRequest {
                hyperparameters: [("window".to_string(), "-1".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[window]".into(),
        ),
        (
            "MASE weight above 1",
            fc::TrainRequest {
                hyperparameters: [("mase_weight".to_string(), "1.5".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[mase_weight]".into(),
        ),
        (
            "NaN MASE weight",
            fc::TrainRequest {
                hyperparameters: [("mase_weight".to_string(), "NaN".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[mase_weight]".into(),
        ),
        (
            "blend weight above 1",
            fc::TrainRequest {
                hyperparameters: [("blend.quiet".to_string(), "1.5".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[blend.quiet]".into(),
        ),
        (
            "negative blend weight",
            fc::TrainRequest {
                hyperparameters: [("blend.quiet".to_string(), "-0.1".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[blend.quiet]".into(),
        ),
        (
            "10 MB hyper-parameter name",
            fc::TrainRequest {
                hyperparameters: [(big(), "1".to_string())].into(),
                ..fc_train(vec![monthly(0)])
            },
            "hyperparameters[".into(),
        ),
        (
            "granularity 999",
            fc::TrainRequest {
                source: Some(fc::train_request::Source::FeatureStore(
                    fc::FeatureStoreSeries {
                        granularity: 999,
                        ..Default::default()
                    },
                )),
                ..Default::default()
            },
            "feature_store.granularity".into(),
        ),
    ];
    for (what, req, field) in cases {
        invalid(
            &format!("Train {what}"),
            train_outcome(c.train(req).await).await,
            &field,
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_forecast_rejects_bad_input_untrained_and_trained() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut c = fc::demand_forecast_client::DemandForecastClient::new(
        channel(p.url("demand-forecast").unwrap()).await,
    );
    untrained(
        "GetModelInfo",
        c.get_model_info(fc::GetModelInfoRequest {}).await,
    );
    fc_hostile(&mut c, invalid_or_untrained).await;
    fc_hostile_train(&mut c).await;

    let t = Instant::now();
    let info = train_outcome(c.train(fc_train((0..4).map(monthly).collect())).await)
        .await
        .expect("inline training");
    eprintln!("demand-forecast inline training: {:?}", t.elapsed());
    fc_hostile(&mut c, invalid).await;
    fc_hostile_train(&mut c).await;
    let r = c
        .forecast(fc::ForecastRequest {
            series: vec![fc_input(monthly(1))],
            horizon: 3,
            ..Default::default()
        })
        .await
        .expect("good forecast after hostile ones")
        .into_inner();
    assert_eq!(r.model_version, info.model_version);
    assert_eq!(r.forecasts[0].points.len(), 3);
    p.shutdown().await.unwrap();
    finish();
}

fn churn_predict(ids: Vec<String>, as_of: Option<Timestamp>) -> churn::PredictChurnRequest {
    churn::PredictChurnRequest {
        customer_ids: ids,
        as_of,
        max_factors: 0,
    }
}

/// Hostile `PredictChurn` requests around one good customer id, with the field each must name.
fn churn_hostile_predicts(
    good: &str,
) -> Vec<(&'static str, churn::PredictChurnRequest, &'static str)> {
    let one = || vec![good.to_string()];
    vec![
        (
            "empty",
            churn::PredictChurnRequest::default(),
            "customer_ids",
        ),
        (
            "empty id",
            churn_predict(vec![String::new()], None),
            "customer_ids[0]",
        ),
        (
            "10 MB id among good ones",
            churn_predict(vec![good.to_string(), big()], None),
            "customer_ids[1]",
        ),
        (
            "10001 ids",
            churn_predict(vec![good.to_string(); 10_001], None),
            "customer_ids",
        ),
        ("as_of year 9999", churn_predict(one(), ts(Y9999)), "as_of"),
        (
            "as_of before 1970",
            churn_predict(one(), ts(PRE_1970)),
            "as_of",
        ),
        (
            "as_of i64::MIN",
            churn_predict(one(), ts(i64::MIN)),
            "as_of",
        ),
        (
            "as_of i64::MAX",
            churn_predict(one(), ts(i64::MAX)),
            "as_of",
        ),
    ]
}

/// Hostile `ListAtRisk` requests, with the field each must name.
fn churn_hostile_lists() -> Vec<(&'static str, churn::ListAtRiskRequest, &'static str)> {
    let list = |min_probability: f64, limit: u32, segment: i32| churn::ListAtRiskRequest {
        min_probability,
        limit,
        segment,
    };
    vec![
        ("NaN probability", list(f64::NAN, 10, 0), "min_probability"),
        ("negative probability", list(-0.5, 10, 0), "min_probability"),
        ("probability 1.5", list(1.5, 10, 0), "min_probability"),
        (
            "inf probability",
            list(f64::INFINITY, 10, 0),
            "min_probability",
        ),
        ("limit u32::MAX", list(0.5, u32::MAX, 0), "limit"),
        ("segment 999", list(0.5, 10, 999), "segment"),
        ("segment -1", list(0.5, 10, -1), "segment"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_rejects_bad_input_untrained() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut c = churn::churn_client::ChurnClient::new(channel(p.url("churn").unwrap()).await);
    for (what, req, field) in churn_hostile_predicts("C1") {
        invalid_or_untrained(
            &format!("PredictChurn {what}"),
            c.predict_churn(req).await,
            field,
        );
    }
    untrained(
        "PredictChurn duplicate ids",
        c.predict_churn(churn_predict(vec!["C1".into(), "C1".into()], None))
            .await,
    );
    for (what, req, field) in churn_hostile_lists() {
        invalid_or_untrained(
            &format!("ListAtRisk {what}"),
            c.list_at_risk(req).await,
            field,
        );
    }
    untrained(
        "ListAtRisk empty",
        c.list_at_risk(churn::ListAtRiskRequest::default()).await,
    );
    let train = |f: &dyn Fn(&mut churn::TrainRequest)| {
        let mut r = churn::TrainRequest::default();
        f(&mut r);
        r
    };
    for (what, req, field) in [
        (
            "cutoff year 9999",
            train(&|r| r.cutoff = ts(Y9999)),
            "cutoff",
        ),
        (
            "cutoff before 1970",
            train(&|r| r.cutoff = ts(PRE_1970)),
            "cutoff",
        ),
        (
            "horizon u32::MAX",
            train(&|r| r.horizon_days = u32::MAX),
            "horizon_days",
        ),
        (
            "NaN validation",
            train(&|r| r.validation_fraction = f64::NAN),
            "validation_fraction",
        ),
        (
            "negative validation",
            train(&|r| r.validation_fraction = -1.0),
            "validation_fraction",
        ),
        (
            "example cutoff after cutoff",
            train(&|r| r.example_cutoffs = vec![ts(Y9999).unwrap()]),
            "example_cutoffs[0]",
        ),
        (
            "example cutoff i64::MIN",
            train(&|r| r.example_cutoffs = vec![ts(i64::MIN).unwrap()]),
            "example_cutoffs[0]",
        ),
        (
            "unknown hyper-parameter",
            train(&|r| {
                r.hyperparameters.insert(big(), "1".into());
            }),
            "hyperparameters",
        ),
    ] {
        invalid(
            &format!("Train {what}"),
            train_outcome(c.train(req).await).await,
            field,
        );
    }
    // Training on an empty feature store: a clear refusal, not a crash.
    let r = train_outcome(c.train(churn::TrainRequest::default()).await).await;
    clear("Train on no data", &r);
    untrained(
        "GetModelInfo",
        c.get_model_info(churn::GetModelInfoRequest {}).await,
    );
    p.shutdown().await.unwrap();
    finish();
}

/// Churn with a model (trained on the demo data through `Train`): hostile requests now reach
/// validation and scoring instead of stopping at FAILED_PRECONDITION.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_rejects_bad_input_trained() {
    let (p, _dir) = augur_e2e::platform(true).await;
    let mut c = churn::churn_client::ChurnClient::new(channel(p.url("churn").unwrap()).await);
    let info = train_outcome(c.train(churn::TrainRequest::default()).await)
        .await
        .expect("churn trains on the demo data");
    assert!(!info.model_version.is_empty());
    // Known customers, from the model itself.
    let known: Vec<String> = c
        .list_at_risk(churn::ListAtRiskRequest {
            min_probability: 0.0,
            limit: 3,
            segment: 0,
        })
        .await
        .expect("ListAtRisk answers once trained")
        .into_inner()
        .customers
        .into_iter()
        .filter_map(|a| a.prediction.map(|p| p.customer_id))
        .collect();
    assert!(
        !known.is_empty(),
        "the demo data has customers at some risk"
    );
    let one = || vec![known[0].clone()];
    for (what, req, field) in churn_hostile_predicts(&known[0]) {
        invalid(
            &format!("trained PredictChurn {what}"),
            c.predict_churn(req).await,
            field,
        );
    }
    // Duplicates, unknown ids and a huge factor count: clear answers, the known id still scored.
    for (what, req) in [
        (
            "duplicate ids",
            churn_predict(vec![known[0].clone(), known[0].clone()], None),
        ),
        (
            "unknown id beside a known one",
            churn_predict(vec!["no-such-customer".into(), known[0].clone()], None),
        ),
        (
            "max_factors u32::MAX",
            churn::PredictChurnRequest {
                max_factors: u32::MAX,
                ..churn_predict(one(), None)
            },
        ),
    ] {
        let r = c.predict_churn(req).await;
        clear(&format!("trained PredictChurn {what}"), &r);
        if let Ok(resp) = &r {
            let resp = resp.get_ref();
            if !resp.predictions.iter().any(|p| p.customer_id == known[0]) {
                fail(format!(
                    "trained PredictChurn {what}: {} not scored",
                    known[0]
                ));
            }
            for p in &resp.predictions {
                if !(0.0..=1.0).contains(&p.churn_probability) {
                    fail(format!(
                        "trained PredictChurn {what}: probability {} outside [0, 1]",
                        p.churn_probability
                    ));
                }
            }
        }
    }
    let unknown = c
        .predict_churn(churn_predict(
            vec!["no-such-customer".into(), known[0].clone()],
            None,
        ))
        .await;
    match unknown {
        Ok(r) => {
            let r = r.into_inner();
            if !r.errors.iter().any(|e| e.customer_id == "no-such-customer") {
                fail("trained PredictChurn: unknown id not reported in errors".into());
            }
        }
        Err(s) => fail(format!(
            "trained PredictChurn with one unknown id failed as a whole: {:?}",
            s.code()
        )),
    }
    for (what, req, field) in churn_hostile_lists() {
        invalid(
            &format!("trained ListAtRisk {what}"),
            c.list_at_risk(req).await,
            field,
        );
    }
    clear(
        "trained ListAtRisk empty",
        &c.list_at_risk(churn::ListAtRiskRequest::default()).await,
    );
    // A hostile Train leaves the served model in place.
    invalid(
        "trained Train cutoff year 9999",
        train_outcome(
            c.train(churn::TrainRequest {
                cutoff: ts(Y9999),
                ..Default::default()
            })
            .await,
        )
        .await,
        "cutoff",
    );
    let after = c
        .get_model_info(churn::GetModelInfoRequest {})
        .await
        .expect("model info")
        .into_inner()
        .model
        .map(|m| m.model_version)
        .unwrap_or_default();
    if after != info.model_version {
        fail(format!(
            "a refused Train replaced the model: {} -> {after}",
            info.model_version
        ));
    }
    // Good requests still answered after all of that.
    let ok = c
        .predict_churn(churn_predict(one(), None))
        .await
        .expect("a good PredictChurn after hostile ones")
        .into_inner();
    assert_eq!(ok.predictions.len(), 1);
    p.shutdown().await.unwrap();
    finish();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rejects_bad_input_untrained() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut c = risk::risk_client::RiskClient::new(channel(p.url("risk").unwrap()).await);
    let score = |f: &dyn Fn(&mut fs::Order)| {
        let mut o = order("O9", "C1", T0);
        f(&mut o);
        risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::Order(o)),
        }
    };
    let orders = vec![
        ("empty", risk::ScoreOrderRequest::default(), "target"),
        (
            "NaN total",
            score(&|o| o.total = Some(f64::NAN)),
            "order.total",
        ),
        (
            "negative quantity",
            score(&|o| o.lines[0].quantity = -1),
            "order.lines[0].quantity",
        ),
        (
            "inf price",
            score(&|o| o.lines[0].unit_price = f64::INFINITY),
            "order.lines[0].unit_price",
        ),
        ("ts year 9999", score(&|o| o.ts = ts(Y9999)), "order.ts"),
        ("ts i64::MAX", score(&|o| o.ts = ts(i64::MAX)), "order.ts"),
        (
            "ts before 1970",
            score(&|o| o.ts = ts(PRE_1970)),
            "order.ts",
        ),
        ("status 999", score(&|o| o.status = 999), "order.status"),
        (
            "10 MB order id",
            score(&|o| o.order_id = big()),
            "order.order_id",
        ),
        (
            "empty order id",
            risk::ScoreOrderRequest {
                target: Some(risk::score_order_request::Target::OrderId(String::new())),
            },
            "order_id",
        ),
    ];
    for (what, req, field) in &orders {
        invalid_or_untrained(
            &format!("ScoreOrder {what}"),
            c.score_order(req.clone()).await,
            field,
        );
    }
    // The stream: an untrained model ends it with FAILED_PRECONDITION.
    let r = drain(
        c.score_order_stream(tokio_stream::iter(orders.into_iter().map(|(_, r, _)| r)))
            .await,
    )
    .await;
    untrained("ScoreOrderStream", r);
    clear(
        "ScoreOrderStream empty",
        &drain(c.score_order_stream(tokio_stream::iter(vec![])).await).await,
    );

    let review = |f: &dyn Fn(&mut fs::Review)| {
        let mut r = fs::Review {
            review_id: "R9".into(),
            customer_id: "C1".into(),
            sku: "P1".into(),
            rating: 4,
            text: "fine".into(),
            ts: ts(T0),
            ..Default::default()
        };
        f(&mut r);
        risk::ScoreReviewRequest { review: Some(r) }
    };
    for (what, req, field) in [
        ("empty", risk::ScoreReviewRequest::default(), "review"),
        ("rating 999", review(&|r| r.rating = 999), "review.rating"),
        ("rating -1", review(&|r| r.rating = -1), "review.rating"),
        ("no sku", review(&|r| r.sku.clear()), "review.sku"),
        ("no text", review(&|r| r.text.clear()), "review.text"),
        ("10 MB text", review(&|r| r.text = big()), "review.text"),
        ("ts year 9999", review(&|r| r.ts = ts(Y9999)), "review.ts"),
        ("ts i64::MIN", review(&|r| r.ts = ts(i64::MIN)), "review.ts"),
    ] {
        invalid_or_untrained(
            &format!("ScoreReview {what}"),
            c.score_review(req).await,
            field,
        );
    }

    let row = |v: f64| risk::TableRow {
        values: vec![fs::FeatureValue {
            value: Some(fs::feature_value::Value::DoubleValue(v)),
        }],
        label: Some(true),
    };
    let table = |columns: Vec<String>, rows: Vec<risk::TableRow>| risk::TrainRequest {
        source: Some(risk::train_request::Source::Table(risk::LabelledTable {
            columns,
            rows,
        })),
        ..Default::default()
    };
    let col = || vec!["amount".to_string()];
    let reviews = |f: &dyn Fn(&mut fs::Review)| {
        let mut r = review(f).review.unwrap();
        r.label = fs::ReviewLabel::Spam as i32;
        risk::TrainRequest {
            kind: risk::ModelKind::Review as i32,
            source: Some(risk::train_request::Source::Reviews(
                risk::LabelledReviews { reviews: vec![r] },
            )),
            ..Default::default()
        }
    };
    for (what, req, field) in [
        (
            "kind 999",
            risk::TrainRequest {
                kind: 999,
                ..Default::default()
            },
            "kind",
        ),
        ("no columns", table(vec![], vec![row(1.0)]), "table.columns"),
        ("no rows", table(col(), vec![]), "table.rows"),
        (
            "NaN cell",
            table(col(), vec![row(f64::NAN)]),
            "table.rows[0].values[0]",
        ),
        (
            "inf cell",
            table(col(), vec![row(f64::INFINITY)]),
            "table.rows[0].values[0]",
        ),
        (
            "duplicate column",
            table(vec!["a".into(), "a".into()], vec![]),
            "table.columns[1]",
        ),
        (
            "10 MB column",
            table(vec![big()], vec![row(f64::NAN)]),
            "table.rows[0].values[0]",
        ),
        (
            "review rating 0",
            reviews(&|r| r.rating = 0),
            "reviews.reviews[0].rating",
        ),
        (
            "review without text",
            reviews(&|r| r.text.clear()),
            "reviews.reviews[0].text",
        ),
        (
            "NaN validation",
            risk::TrainRequest {
                validation_fraction: f64::NAN,
                ..Default::default()
            },
            "validation_fraction",
        ),
        (
            "10 MB hyper-parameter name",
            risk::TrainRequest {
                hyperparameters: [(big(), "1".to_string())].into(),
                ..Default::default()
            },
            "hyperparameters[",
        ),
    ] {
        invalid(
            &format!("Train {what}"),
            train_outcome(c.train(req).await).await,
            field,
        );
    }
    invalid(
        "GetModelInfo kind 999",
        c.get_model_info(risk::GetModelInfoRequest { kind: 999 })
            .await,
        "kind",
    );
    untrained(
        "GetModelInfo",
        c.get_model_info(risk::GetModelInfoRequest::default()).await,
    );
    // Training on an empty feature store: a clear refusal, not a crash.
    clear(
        "Train on no data",
        &train_outcome(c.train(risk::TrainRequest::default()).await).await,
    );
    p.shutdown().await.unwrap();
    finish();
}

/// Risk with a trained order model: hostile orders now reach validation (untrained they are
/// answered FAILED_PRECONDITION first) and each must be INVALID_ARGUMENT naming the field;
/// ScoreOrder by order_id goes through the feature store's indexed lookup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risk_rejects_bad_input_trained() {
    let (p, _dir) = augur_e2e::platform(false).await;
    let mut f = FeatureStoreClient::new(channel(p.url("feature-store").unwrap()).await);
    let good = f
        .ingest(fs::IngestRequest {
            events: good_events(),
        })
        .await
        .expect("good ingest")
        .into_inner();
    assert!(good.rejected.is_empty(), "{good:?}");
    let mut c = risk::risk_client::RiskClient::new(channel(p.url("risk").unwrap()).await);

    // A small labelled table over two of the order features: quick to fit.
    let t = Instant::now();
    let rows = (0..40)
        .map(|i| {
            let fraud = i % 4 == 0;
            let num = |v: f64| fs::FeatureValue {
                value: Some(fs::feature_value::Value::DoubleValue(v)),
            };
            risk::TableRow {
                values: vec![
                    num(if fraud { 7.0 } else { 3.0 } + (i % 5) as f64 * 0.1),
                    num(if fraud { 4.0 } else { 1.0 }),
                ],
                label: Some(fraud),
            }
        })
        .collect();
    let info = train_outcome(
        c.train(risk::TrainRequest {
            source: Some(risk::train_request::Source::Table(risk::LabelledTable {
                columns: vec!["log_total".into(), "lines".into()],
                rows,
            })),
            hyperparameters: [
                ("learners".to_string(), "logistic".to_string()),
                ("forest.trees".to_string(), "10".to_string()),
            ]
            .into(),
            ..Default::default()
        })
        .await,
    )
    .await
    .expect("table training");
    eprintln!("risk table training: {:?}", t.elapsed());

    let score = |f: &dyn Fn(&mut fs::Order)| {
        let mut o = order("O9", "C1", T0);
        f(&mut o);
        risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::Order(o)),
        }
    };
    let by_id = |id: String| risk::ScoreOrderRequest {
        target: Some(risk::score_order_request::Target::OrderId(id)),
    };
    let at = |seconds: i64, nanos: i32| Some(Timestamp { seconds, nanos });
    let line = fs::OrderLine {
        sku: "P1".into(),
        quantity: 1,
        unit_price: 1.0,
        promotion: false,
    };
    let orders = vec![
        ("empty", risk::ScoreOrderRequest::default(), "target"),
        ("ts year 9999", score(&|o| o.ts = ts(Y9999)), "order.ts"),
        ("ts i64::MAX", score(&|o| o.ts = ts(i64::MAX)), "order.ts"),
        ("ts i64::MIN", score(&|o| o.ts = ts(i64::MIN)), "order.ts"),
        (
            "ts before 1970",
            score(&|o| o.ts = ts(PRE_1970)),
            "order.ts",
        ),
        ("negative nanos", score(&|o| o.ts = at(T0, -1)), "order.ts"),
        (
            "nanos 1e9",
            score(&|o| o.ts = at(T0, 1_000_000_000)),
            "order.ts",
        ),
        ("status 999", score(&|o| o.status = 999), "order.status"),
        ("status -1", score(&|o| o.status = -1), "order.status"),
        (
            "NaN price",
            score(&|o| o.lines[0].unit_price = f64::NAN),
            "order.lines[0].unit_price",
        ),
        (
            "-inf price",
            score(&|o| o.lines[0].unit_price = f64::NEG_INFINITY),
            "order.lines[0].unit_price",
        ),
        (
            "negative price",
            score(&|o| o.lines[0].unit_price = -1.0),
            "order.lines[0].unit_price",
        ),
        (
            "NaN total",
            score(&|o| o.total = Some(f64::NAN)),
            "order.total",
        ),
        (
            "inf total",
            score(&|o| o.total = Some(f64::INFINITY)),
            "order.total",
        ),
        (
            "quantity i64::MAX",
            score(&|o| o.lines[0].quantity = i64::MAX),
            "order.lines[0].quantity",
        ),
        (
            "negative quantity",
            score(&|o| o.lines[0].quantity = -1),
            "order.lines[0].quantity",
        ),
        (
            "no lines, no total",
            score(&|o| o.lines.clear()),
            "order.total",
        ),
        (
            "100000 lines",
            score(&|o| o.lines = vec![line.clone(); 100_000]),
            "order.lines",
        ),
        (
            "10 MB order id",
            score(&|o| o.order_id = big()),
            "order.order_id",
        ),
        (
            "10 MB customer id",
            score(&|o| o.customer_id = big()),
            "order.customer_id",
        ),
        (
            "empty customer id",
            score(&|o| o.customer_id.clear()),
            "order.customer_id",
        ),
        (
            "10 MB sku",
            score(&|o| o.lines[0].sku = big()),
            "order.lines[0].sku",
        ),
        (
            "10 MB device fingerprint",
            score(&|o| o.device_fingerprint = big()),
            "order.device_fingerprint",
        ),
        (
            "bad country",
            score(&|o| o.billing_country = "Germany".into()),
            "order.billing_country",
        ),
        ("empty order id", by_id(String::new()), "order_id"),
        ("10 MB order id (by id)", by_id(big()), "order_id"),
        (
            "control characters (by id)",
            by_id("O1\n".into()),
            "order_id",
        ),
    ];
    for (what, req, field) in &orders {
        invalid(
            &format!("ScoreOrder trained {what}"),
            c.score_order(req.clone()).await,
            field,
        );
    }
    // The stream answers each bad order with its error, in order, and goes on.
    let out = drain(
        c.score_order_stream(tokio_stream::iter(
            orders.iter().map(|(_, r, _)| r.clone()).collect::<Vec<_>>(),
        ))
        .await,
    )
    .await
    .expect("stream survives hostile orders");
    assert_eq!(out.len(), orders.len());
    for (m, (what, _, field)) in out.iter().zip(&orders) {
        match &m.outcome {
            Some(risk::score_order_stream_response::Outcome::Error(e))
                if e.code == Code::InvalidArgument as i32 && e.field.contains(field) => {}
            other => fail(format!(
                "ScoreOrderStream trained {what}: expected an INVALID_ARGUMENT error on {field}, got {}",
                short(&format!("{other:?}"))
            )),
        }
    }
    // An unknown id is NOT_FOUND; a stored one and a good order are scored by the new model.
    match c.score_order(by_id("no-such-order".into())).await {
        Err(s) if s.code() == Code::NotFound => {}
        other => fail(format!(
            "ScoreOrder unknown id: expected NOT_FOUND, got {}",
            short(&format!("{other:?}"))
        )),
    }
    let r = c
        .score_order(by_id("O1".into()))
        .await
        .expect("stored order scored by id")
        .into_inner();
    assert_eq!(
        (r.order_id.as_str(), &r.model_version),
        ("O1", &info.model_version)
    );
    assert!((0.0..=1.0).contains(&r.score), "{r:?}");
    let r = c
        .score_order(score(&|_| {}))
        .await
        .expect("good order after hostile ones")
        .into_inner();
    assert!((0.0..=1.0).contains(&r.score), "{r:?}");
    p.shutdown().await.unwrap();
    finish();
}

// ------------------------------------------------------------------ property tests

mod props {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "\\PC{0,12}", Just("x".repeat(300))]
    }

    fn time() -> impl Strategy<Value = Option<Timestamp>> {
        prop_oneof![
            Just(None),
            (any::<i64>(), any::<i32>())
                .prop_map(|(seconds, nanos)| Some(Timestamp { seconds, nanos })),
            (-100_000i64..300_000_000_000).prop_map(ts),
        ]
    }

    fn num() -> impl Strategy<Value = f64> {
        prop_oneof![any::<f64>(), -10.0f64..10.0]
    }

    fn event() -> impl Strategy<Value = fs::Event> {
        (
            text(),
            text(),
            time(),
            any::<i32>(),
            num(),
            any::<i64>(),
            any::<i32>(),
        )
            .prop_map(|(id, customer, t, kind, x, q, rating)| {
                use fs::event::Payload as P;
                let payload = match kind.rem_euclid(4) {
                    0 => P::Order(fs::Order {
                        order_id: id,
                        customer_id: customer,
                        ts: t,
                        lines: vec![fs::OrderLine {
                            sku: "P1".into(),
                            quantity: q,
                            unit_price: x,
                            promotion: false,
                        }],
                        total: Some(x),
                        status: kind,
                        ..Default::default()
                    }),
                    1 => P::Interaction(fs::Interaction {
                        event_id: id,
                        customer_id: customer,
                        sku: "P1".into(),
                        kind,
                        ts: t,
                        value: x,
                        ..Default::default()
                    }),
                    2 => P::Review(fs::Review {
                        review_id: id,
                        customer_id: customer,
                        sku: "P1".into(),
                        rating,
                        ts: t,
                        label: kind,
                        ..Default::default()
                    }),
                    _ => P::Product(fs::Product {
                        sku: id,
                        title: customer,
                        price: x,
                        stock: q,
                        ts: t,
                        ..Default::default()
                    }),
                };
                fs::Event {
                    payload: Some(payload),
                }
            })
    }

    /// Random requests to every unary RPC of the five services on one untrained platform (the
    /// forecast model trained inline so that its request validation runs): no panic, no
    /// INTERNAL / UNKNOWN / dropped connection.
    #[test]
    fn random_requests_get_clear_answers() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let (p, _dir) = rt.block_on(augur_e2e::platform(false));
        let conn = |name: &str| rt.block_on(channel(p.url(name).unwrap()));
        let (fsc, recc, fcc, chc, rkc) = (
            conn("feature-store"),
            conn("recommendation"),
            conn("demand-forecast"),
            conn("churn"),
            conn("risk"),
        );
        let mut fcl = fc::demand_forecast_client::DemandForecastClient::new(fcc.clone());
        rt.block_on(train_outcome(
            rt.block_on(fcl.train(fc_train((0..3).map(monthly).collect()))),
        ))
        .expect("inline training");
        let cfg = || Config {
            cases: 64,
            failure_persistence: None,
            ..Config::default()
        };
        let check = |what: &str, r: Result<(), Status>| -> Result<(), TestCaseError> {
            match r {
                Err(s) if broken(s.code()) => Err(TestCaseError::fail(format!(
                    "{what}: {:?}: {}",
                    s.code(),
                    short(s.message())
                ))),
                _ => Ok(()),
            }
        };

        let strat = (
            proptest::collection::vec(event(), 0..6),
            text(),
            proptest::collection::vec(text(), 0..3),
            time(),
            any::<i32>(),
            any::<u32>(),
        );
        TestRunner::new(cfg())
            .run(&strat, |(events, s, ids, t, e, n)| {
                rt.block_on(async {
                    let mut c = FeatureStoreClient::new(fsc.clone());
                    check(
                        "Ingest",
                        c.ingest(fs::IngestRequest { events }).await.map(|_| ()),
                    )?;
                    check(
                        "GetOnlineFeatures",
                        c.get_online_features(fs::GetOnlineFeaturesRequest {
                            view: s.clone(),
                            entity_ids: ids.clone(),
                            features: ids.clone(),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "GetHistoricalFeatures",
                        c.get_historical_features(fs::GetHistoricalFeaturesRequest {
                            view: "customer".into(),
                            rows: ids
                                .iter()
                                .map(|id| fs::EntityAt {
                                    entity_id: id.clone(),
                                    as_of: t,
                                })
                                .collect(),
                            features: vec![],
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "GetSeries",
                        c.get_series(fs::GetSeriesRequest {
                            skus: ids.clone(),
                            granularity: e,
                            start: t,
                            end: None,
                            by_store: n % 2 == 0,
                            by_channel: false,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ScanEvents",
                        drain(
                            c.scan_events(fs::ScanEventsRequest {
                                kinds: vec![e],
                                range: Some(TimeRange {
                                    start: t,
                                    end: None,
                                }),
                                customer_id: s.clone(),
                                batch_size: n,
                                order_id: s.clone(),
                                device_fingerprint: s.clone(),
                            })
                            .await,
                        )
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ScanInteractions",
                        drain(
                            c.scan_interactions(fs::ScanInteractionsRequest {
                                kinds: vec![e],
                                range: Some(TimeRange {
                                    start: None,
                                    end: t,
                                }),
                                include_order_lines: true,
                                batch_size: n,
                            })
                            .await,
                        )
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ListEntities",
                        c.list_entities(fs::ListEntitiesRequest {
                            entity: s.clone(),
                            page: Some(augur_proto::common::PageRequest {
                                page_size: n,
                                page_token: s.clone(),
                            }),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "GetCustomerProfile",
                        c.get_customer_profile(fs::GetCustomerProfileRequest {
                            customer_id: s.clone(),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "GetCustomerSegments",
                        c.get_customer_segments(fs::GetCustomerSegmentsRequest {
                            customer_ids: ids.clone(),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    Ok(())
                })
            })
            .unwrap();

        let strat = (
            text(),
            any::<u32>(),
            num(),
            num(),
            any::<i32>(),
            time(),
            proptest::collection::vec(num(), 0..40),
            any::<u32>(),
        );
        TestRunner::new(cfg())
            .run(&strat, |(s, n, x, y, e, t, values, m)| {
                rt.block_on(async {
                    let mut r = RecommendationClient::new(recc.clone());
                    check(
                        "Recommend",
                        r.recommend(rec::RecommendRequest {
                            customer_id: s.clone(),
                            k: n,
                            options: Some(rec::RecommendOptions {
                                min_price: Some(x),
                                max_price: Some(y),
                                recent_sales_boost: x,
                                categories: vec![s.clone()],
                                max_per_category: m,
                                include_purchased: false,
                            }),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "SimilarItems",
                        r.similar_items(rec::SimilarItemsRequest {
                            sku: s.clone(),
                            k: n,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    // Train is checked only up to its first answer (validation), not trained.
                    check(
                        "Train",
                        r.train(rec::TrainRequest {
                            validation_fraction: x,
                            ..rec_train(vec![fs::Interaction {
                                customer_id: s.clone(),
                                sku: s.clone(),
                                kind: e,
                                ts: t,
                                value: y,
                                ..Default::default()
                            }])
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    let mut f = fc::demand_forecast_client::DemandForecastClient::new(fcc.clone());
                    let series = fc::InlineSeries {
                        values: values.clone(),
                        frequency: e.rem_euclid(7) - 1,
                        season_length: m % 400,
                        timestamps: t.into_iter().collect(),
                        ..Default::default()
                    };
                    check(
                        "Forecast",
                        f.forecast(fc::ForecastRequest {
                            series: vec![fc_input(series.clone())],
                            horizon: n % 10,
                            quantiles: vec![x],
                            granularity: e % 3,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "Backtest",
                        f.backtest(fc::BacktestRequest {
                            series: vec![fc_input(series.clone())],
                            horizon: n % 10,
                            windows: m % 5,
                            step: m,
                            interval: y,
                            mase_season_length: m % 20,
                            granularity: 0,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ReorderAdvice",
                        f.reorder_advice(fc::ReorderAdviceRequest {
                            items: vec![fc::SeriesKey {
                                sku: s.clone(),
                                ..Default::default()
                            }],
                            lead_time: n % 10,
                            service_level: x,
                            granularity: e % 3,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    let mut c = churn::churn_client::ChurnClient::new(chc.clone());
                    check(
                        "PredictChurn",
                        c.predict_churn(churn::PredictChurnRequest {
                            customer_ids: vec![s.clone()],
                            as_of: t,
                            max_factors: m,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ListAtRisk",
                        c.list_at_risk(churn::ListAtRiskRequest {
                            min_probability: x,
                            limit: n,
                            segment: e,
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "Train",
                        c.train(churn::TrainRequest {
                            cutoff: t,
                            horizon_days: n,
                            validation_fraction: y,
                            ..Default::default()
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    let mut k = risk::risk_client::RiskClient::new(rkc.clone());
                    check(
                        "ScoreOrder",
                        k.score_order(risk::ScoreOrderRequest {
                            target: Some(risk::score_order_request::Target::Order(fs::Order {
                                order_id: s.clone(),
                                customer_id: s.clone(),
                                ts: t,
                                total: Some(x),
                                status: e,
                                ..Default::default()
                            })),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "ScoreReview",
                        k.score_review(risk::ScoreReviewRequest {
                            review: Some(fs::Review {
                                sku: s.clone(),
                                text: s.clone(),
                                rating: e,
                                ts: t,
                                ..Default::default()
                            }),
                        })
                        .await
                        .map(|_| ()),
                    )?;
                    check(
                        "GetModelInfo",
                        k.get_model_info(risk::GetModelInfoRequest { kind: e })
                            .await
                            .map(|_| ()),
                    )?;
                    Ok(())
                })
            })
            .unwrap();
        rt.block_on(p.shutdown()).unwrap();
    }
}
