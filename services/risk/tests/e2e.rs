//! End to end over gRPC: a feature store and the risk service on loopback; orders with planted
//! frauds (account takeover, new account with a high-value basket, a device burst) and reviews
//! with planted spam (near-duplicates, a burst on one product, promotional links) are ingested;
//! the models are trained through `Train`, and the planted cases must rank above normal ones.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;

use augur_proto::featurestore::event::Payload;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::featurestore::{
    Customer, Event, IngestRequest, Order, OrderLine, OrderStatus, Review, ReviewLabel,
};
use augur_proto::risk as pb;
use augur_proto::risk::risk_client::RiskClient;
use prost_types::Timestamp;
use tokio_stream::StreamExt;

const DAY: i64 = 86_400;

fn ts(s: i64) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: s,
        nanos: 0,
    })
}

fn ev(p: Payload) -> Event {
    Event { payload: Some(p) }
}

#[allow(clippy::too_many_arguments)]
fn order(
    id: &str,
    cust: &str,
    t: i64,
    total: f64,
    ship: &str,
    bill: &str,
    device: &str,
    status: OrderStatus,
) -> Order {
    Order {
        order_id: id.into(),
        customer_id: cust.into(),
        ts: ts(t),
        lines: vec![OrderLine {
            sku: "sku-1".into(),
            quantity: 1,
            unit_price: total,
            promotion: false,
        }],
        total: Some(total),
        currency: "EUR".into(),
        payment_method: "card".into(),
        shipping_country: ship.into(),
        billing_country: bill.into(),
        payment_fingerprint: format!("pay-{cust}"),
        device_fingerprint: device.into(),
        ip_address: String::new(),
        status: status as i32,
        store_id: String::new(),
        channel: "web".into(),
    }
}

fn customer(id: &str, signup: i64) -> Event {
    ev(Payload::Customer(Customer {
        customer_id: id.into(),
        signup_ts: ts(signup),
        country: "DE".into(),
        attributes: Default::default(),
        ts: ts(signup),
    }))
}

struct Data {
    events: Vec<Event>,
    frauds: Vec<String>,
    normals: Vec<String>,
    spam: Vec<String>,
    genuine: Vec<String>,
}

/// A small deterministic shop.
fn data(now: i64) -> Data {
    let start = now - 200 * DAY;
    let mut events = Vec::new();
    let (mut frauds, mut normals) = (Vec::new(), Vec::new());
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("ord-{n:05}")
    };
    for c in 0..60 {
        let cid = format!("cust-{c:03}");
        events.push(customer(&cid, start + c * 600));
        for k in 0..6 {
            let t = start + DAY + k * 25 * DAY + c * 3_000;
            let total = 30.0 + ((c * 7 + k * 13) % 50) as f64;
            let id = next();
            events.push(ev(Payload::Order(order(
                &id,
                &cid,
                t,
                total,
                "DE",
                "DE",
                &format!("dev-{c}"),
                OrderStatus::Placed,
            ))));
            normals.push(id);
        }
    }
    let charge_back = |events: &mut Vec<Event>, o: &Order| {
        let mut cb = o.clone();
        cb.status = OrderStatus::ChargedBack as i32;
        cb.ts = ts(o.ts.as_ref().unwrap().seconds + 20 * DAY);
        events.push(ev(Payload::Order(cb)));
    };
    // account takeover: 10x the usual basket, billed abroad, new device
    for c in 0..4 {
        let cid = format!("cust-{c:03}");
        let o = order(
            &next(),
            &cid,
            now - 30 * DAY + c * 3600,
            650.0 + c as f64 * 40.0,
            "DE",
            "FR",
            &format!("ato-dev-{c}"),
            OrderStatus::Placed,
        );
        events.push(ev(Payload::Order(o.clone())));
        charge_back(&mut events, &o);
        frauds.push(o.order_id);
    }
    // new accounts with a high-value basket minutes after signup
    for c in 0..4 {
        let cid = format!("new-{c}");
        let signup = now - 25 * DAY + c * 7200;
        events.push(customer(&cid, signup));
        let o = order(
            &next(),
            &cid,
            signup + 1200,
            800.0 + c as f64 * 25.0,
            "DE",
            "GB",
            &format!("new-dev-{c}"),
            OrderStatus::Placed,
        );
        events.push(ev(Payload::Order(o.clone())));
        charge_back(&mut events, &o);
        frauds.push(o.order_id);
    }
    // a device burst: 4 orders in 8 minutes over two fresh accounts
    let b0 = now - 22 * DAY;
    for c in 0..2 {
        events.push(customer(&format!("burst-{c}"), b0 - 3 * 3600));
    }
    for k in 0..4 {
        let o = order(
            &next(),
            &format!("burst-{}", k % 2),
            b0 + k * 120,
            400.0 + k as f64 * 10.0,
            "DE",
            "DE",
            "burst-device",
            OrderStatus::Placed,
        );
        events.push(ev(Payload::Order(o.clone())));
        charge_back(&mut events, &o);
        frauds.push(o.order_id);
    }

    // Reviews: genuine ones with varied texts and consistent ratings.
    let good = [
        "works really well",
        "great value for the price",
        "the quality surprised me",
        "sturdy and easy to clean",
        "my family loves it",
        "exactly as described",
        "arrived quickly and well packed",
        "does the job perfectly",
    ];
    let bad = [
        "stopped working after a week",
        "feels cheap and flimsy",
        "the lid does not close properly",
        "much smaller than the pictures",
        "broke the first time I used it",
        "customer service never answered",
        "smells of plastic",
        "the instructions were useless",
    ];
    let items = [
        "kettle",
        "blender",
        "toaster",
        "lamp",
        "backpack",
        "chair",
        "headphones",
        "pan",
        "umbrella",
        "mug",
    ];
    let (mut spam, mut genuine) = (Vec::new(), Vec::new());
    let mut r = 0;
    let mut rid = || {
        r += 1;
        format!("rev-{r:04}")
    };
    let review = |id: &str, cust: &str, sku: &str, rating: i32, text: String, t: i64| Review {
        review_id: id.into(),
        customer_id: cust.into(),
        sku: sku.into(),
        rating,
        title: String::new(),
        text,
        ts: ts(t),
        label: ReviewLabel::Unspecified as i32,
    };
    for i in 0..120i64 {
        let positive = i % 3 != 0;
        let (a, b) = ((i * 5 % 8) as usize, (i * 3 % 7) as usize);
        let item = items[(i % 10) as usize];
        let text = if positive {
            format!("This {item} {}, and {}.", good[a], good[(b + 1) % 8])
        } else {
            format!("This {item} {}; also {}.", bad[a], bad[(b + 1) % 8])
        };
        let rating = if positive {
            4 + (i % 2) as i32
        } else {
            1 + (i % 2) as i32
        };
        let id = rid();
        let cust = format!("cust-{:03}", i % 60);
        let rv = review(
            &id,
            &cust,
            &format!("sku-{}", i % 30),
            rating,
            text,
            start + 10 * DAY + i * 20_000,
        );
        events.push(ev(Payload::Review(rv)));
        genuine.push(id);
    }
    let mut planted = Vec::new();
    // near-duplicate praise from two accounts on different products
    for k in 0..6i64 {
        let text = if k % 2 == 0 {
            "Absolutely amazing product, best purchase ever, five stars, highly recommend to everyone!".to_string()
        } else {
            "Absolutely amazing product!! Best purchase ever, five stars, I highly recommend it to everyone".to_string()
        };
        let id = rid();
        planted.push(review(
            &id,
            &format!("spam-{}", k % 2),
            &format!("sku-{}", 40 + k),
            5,
            text,
            now - 40 * DAY + k * 9_000,
        ));
        spam.push(id);
    }
    // a burst of five-star reviews on one product within an hour from new accounts
    for k in 0..5i64 {
        let id = rid();
        let text = format!(
            "Great {} product, love it, would buy again {}",
            ["super", "fantastic", "awesome", "brilliant", "excellent"][k as usize],
            k
        );
        planted.push(review(
            &id,
            &format!("burst-rev-{k}"),
            "sku-77",
            5,
            text,
            now - 35 * DAY + k * 600,
        ));
        spam.push(id);
    }
    // promotional links
    for k in 0..4i64 {
        let id = rid();
        let text = format!(
            "Cheap deals on watches and bags, visit http://cheap-deals.example/{k} for a discount code, free shipping"
        );
        planted.push(review(
            &id,
            &format!("promo-{k}"),
            &format!("sku-{}", k + 3),
            5,
            text,
            now - 33 * DAY + k * 50_000,
        ));
        spam.push(id);
    }
    for (k, p) in planted.into_iter().enumerate() {
        events.push(ev(Payload::Review(p.clone())));
        // half of the spam gets a moderation label
        if k % 2 == 0 {
            let mut l = p;
            l.label = ReviewLabel::Spam as i32;
            l.ts = ts(l.ts.unwrap().seconds + DAY);
            events.push(ev(Payload::Review(l)));
        }
    }
    Data {
        events,
        frauds,
        normals,
        spam,
        genuine,
    }
}

fn auc(pos: &[f64], neg: &[f64]) -> f64 {
    let mut s = 0.0;
    for p in pos {
        for n in neg {
            s += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    s / (pos.len() * neg.len()) as f64
}

async fn train(
    c: &mut RiskClient<tonic::transport::Channel>,
    kind: pb::ModelKind,
) -> augur_proto::common::ModelInfo {
    let mut s = c
        .train(pb::TrainRequest {
            kind: kind as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = None;
    let mut stages = 0;
    while let Some(m) = s.next().await {
        let m = m.unwrap();
        stages += 1;
        if m.done {
            last = m.model;
        }
    }
    assert!(stages >= 2, "progress was streamed");
    last.expect("a final message with the model")
}

fn minilm_present() -> bool {
    if augur_risk::embed::present(&augur_risk::embed::default_dir()) {
        return true;
    }
    let msg = "MiniLM not found (run `make minilm` or set AUGUR_MINILM_DIR): review part skipped";
    if augur_testkit::required("AUGUR_REQUIRE_MINILM") {
        panic!("{msg}; AUGUR_REQUIRE_MINILM=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planted_fraud_and_spam_rank_above_normal_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let fs_cfg = augur_feature_store::Config {
        server: augur_runtime::config::ServerConfig::with_port(0),
        data_dir: dir.path().join("fs"),
        sqlite_synchronous: "off".into(),
        ..Default::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&fs_cfg).await.unwrap();
    let fs = fs_server.spawn().await.unwrap();
    let mut risk_cfg = augur_risk::default_config();
    risk_cfg.server = augur_runtime::config::ServerConfig::with_port(0);
    risk_cfg.data_dir = dir.path().join("risk");
    risk_cfg.feature_store_url = fs.url();
    let risk = augur_risk::try_build(&risk_cfg)
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let mut c = RiskClient::connect(risk.url()).await.unwrap();

    // Before any training: FAILED_PRECONDITION.
    let e = c
        .score_order(pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::OrderId("ord-00001".into())),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("Train"));

    let now = chrono::Utc::now().timestamp() - 3600;
    let d = data(now);
    let mut fsc = FeatureStoreClient::connect(fs.url()).await.unwrap();
    let resp = fsc
        .ingest(IngestRequest {
            events: d.events.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);

    // An unknown hyper-parameter names the key.
    let e = c
        .train(pb::TrainRequest {
            hyperparameters: [("nope".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("hyperparameters[nope]"),
        "{}",
        e.message()
    );

    let info = train(&mut c, pb::ModelKind::Order).await;
    assert!(info.model_version.len() > 10);
    assert_eq!(info.validation_metrics["positives"], 12.0, "{info:?}");

    let mut score = async |id: &str| {
        c.score_order(pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::OrderId(id.into())),
        })
        .await
        .unwrap()
        .into_inner()
    };
    let mut fraud_scores = Vec::new();
    for id in &d.frauds {
        let r = score(id).await;
        assert_eq!(r.model_version, info.model_version);
        assert!((0.0..=1.0).contains(&r.score));
        fraud_scores.push(r.score);
    }
    let mut normal_scores = Vec::new();
    for id in d.normals.iter().step_by(6) {
        normal_scores.push(score(id).await.score);
    }
    let a = auc(&fraud_scores, &normal_scores);
    eprintln!("orders: planted {fraud_scores:?}\nnormal {normal_scores:?}\nAUC {a}");
    assert!(
        a >= 0.95,
        "planted frauds rank above normal orders: AUC {a}"
    );

    // A fresh takeover-like order (not ingested): rules and reasons.
    let fresh = order(
        "chk-1",
        "cust-010",
        now,
        900.0,
        "DE",
        "US",
        "unknown-device",
        OrderStatus::Placed,
    );
    let r = c
        .score_order(pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::Order(fresh.clone())),
        })
        .await
        .unwrap()
        .into_inner();
    let rules: Vec<&str> = r.rules.iter().map(|f| f.name.as_str()).collect();
    assert!(rules.contains(&"rule:country_mismatch"), "{rules:?}");
    assert!(rules.contains(&"rule:value_vs_usual"), "{rules:?}");
    assert!(!r.factors.is_empty());
    assert!(r.decision != pb::Decision::Approve as i32, "{r:?}");
    assert!(r.anomaly_score > 0.8, "{r:?}");

    // Velocity from the feature store: four orders from one device ingested there in the last
    // minutes (never scored by this service), then a live checkout from it: five in the
    // window. The store keeps fingerprints hashed; the live order carries the raw one.
    // An older one (outside the 10 minutes) and one from another device do not count.
    let placed: Vec<Event> = (0..4)
        .map(|k| {
            (
                format!("ing-dev-{k}"),
                now - 400 + k * 60,
                "ingested-device",
            )
        })
        .chain([
            ("ing-dev-old".to_string(), now - 3600, "ingested-device"),
            ("ing-dev-other".to_string(), now - 100, "another-device"),
        ])
        .enumerate()
        .map(|(k, (id, t, device))| {
            let cust = format!("cust-03{k}");
            ev(Payload::Order(order(
                &id,
                &cust,
                t,
                40.0,
                "DE",
                "DE",
                device,
                OrderStatus::Placed,
            )))
        })
        .collect();
    let resp = fsc
        .ingest(IngestRequest { events: placed })
        .await
        .unwrap()
        .into_inner();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let live = order(
        "chk-live-dev",
        "cust-035",
        now,
        40.0,
        "DE",
        "DE",
        "ingested-device",
        OrderStatus::Placed,
    );
    // The live checkout, then the stored order scored by id, which counts the same window by
    // its stored (hashed) fingerprint.
    for (target, want) in [
        (pb::score_order_request::Target::Order(live), "5"),
        (
            pb::score_order_request::Target::OrderId("ing-dev-3".into()),
            "4",
        ),
    ] {
        let r = c
            .score_order(pb::ScoreOrderRequest {
                target: Some(target),
            })
            .await
            .unwrap()
            .into_inner();
        let velocity = r.rules.iter().find(|f| f.name == "rule:device_velocity");
        assert_eq!(
            velocity.map(|f| f.value.as_str()),
            Some(want),
            "{:?}",
            r.rules
        );
    }

    // Streaming: five checkouts from one device in a few minutes, and one bad request.
    let mut reqs = Vec::new();
    for k in 0..5 {
        let mut o = order(
            &format!("chk-burst-{k}"),
            "cust-020",
            now + k * 60,
            50.0,
            "DE",
            "DE",
            "stream-device",
            OrderStatus::Placed,
        );
        o.ts = ts(now + k * 60);
        reqs.push(pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::Order(o)),
        });
    }
    let mut bad = fresh.clone();
    bad.customer_id.clear();
    reqs.insert(
        2,
        pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::Order(bad)),
        },
    );
    let out: Vec<pb::ScoreOrderStreamResponse> = c
        .score_order_stream(tokio_stream::iter(reqs))
        .await
        .unwrap()
        .into_inner()
        .map(|m| m.unwrap())
        .collect()
        .await;
    assert_eq!(out.len(), 6);
    assert_eq!(
        out.iter().map(|m| m.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    match &out[2].outcome {
        Some(pb::score_order_stream_response::Outcome::Error(e)) => {
            assert_eq!(e.code, tonic::Code::InvalidArgument as i32);
            assert_eq!(e.field, "order.customer_id");
        }
        other => panic!("expected an error, got {other:?}"),
    }
    match &out[5].outcome {
        Some(pb::score_order_stream_response::Outcome::Result(r)) => {
            assert!(
                r.rules
                    .iter()
                    .any(|f| f.name == "rule:device_velocity" && f.value == "5"),
                "{:?}",
                r.rules
            );
            assert!(r.decision >= pb::Decision::Review as i32);
        }
        other => panic!("expected a result, got {other:?}"),
    }

    // Reviews.
    if minilm_present() {
        let rinfo = train(&mut c, pb::ModelKind::Review).await;
        eprintln!("review model {:?}", rinfo.validation_metrics);
        let store_review = |id: &str| -> Review {
            d.events
                .iter()
                .find_map(|e| match &e.payload {
                    Some(Payload::Review(r)) if r.review_id == id => Some(r.clone()),
                    _ => None,
                })
                .unwrap()
        };
        let mut sr = async |r: Review| {
            c.score_review(pb::ScoreReviewRequest { review: Some(r) })
                .await
                .unwrap()
                .into_inner()
        };
        let mut spam_p = Vec::new();
        let mut rule_names = BTreeMap::new();
        for id in &d.spam {
            let r = sr(store_review(id)).await;
            assert_eq!(r.model_version, rinfo.model_version);
            for f in &r.rules {
                *rule_names.entry(f.name.clone()).or_insert(0) += 1;
            }
            spam_p.push(r.spam_probability);
        }
        let mut gen_p = Vec::new();
        for id in d.genuine.iter().step_by(4) {
            gen_p.push(sr(store_review(id)).await.spam_probability);
        }
        let a = auc(&spam_p, &gen_p);
        eprintln!("reviews: spam {spam_p:?}\ngenuine {gen_p:?}\nAUC {a}\nrules {rule_names:?}");
        assert!(
            a >= 0.95,
            "planted spam ranks above genuine reviews: AUC {a}"
        );
        for rule in [
            "rule:near_duplicate",
            "rule:review_burst",
            "rule:promotional_link",
        ] {
            assert!(
                rule_names.contains_key(rule),
                "{rule} fired: {rule_names:?}"
            );
        }
        // A new review copying the duplicate text, not yet stored.
        let mut copy = store_review(&d.spam[0]);
        copy.review_id = "new-copy".into();
        copy.sku = "sku-5".into();
        let r = sr(copy).await;
        assert!(
            r.rules.iter().any(|f| f.name == "rule:near_duplicate"),
            "{r:?}"
        );
        assert!(r.decision >= pb::Decision::Review as i32);
    }

    // Restart: the saved order model is loaded and serves with the same version.
    risk.shutdown().await.unwrap();
    let risk = augur_risk::try_build(&risk_cfg)
        .unwrap()
        .spawn()
        .await
        .unwrap();
    let mut c = RiskClient::connect(risk.url()).await.unwrap();
    let got = c
        .get_model_info(pb::GetModelInfoRequest {
            kind: pb::ModelKind::Order as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(got.model_version, info.model_version);
    assert!(got.parameters.contains_key("decision.review"));
    let r = c
        .score_order(pb::ScoreOrderRequest {
            target: Some(pb::score_order_request::Target::Order(fresh)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, info.model_version);
    risk.shutdown().await.unwrap();
    fs.shutdown().await.unwrap();
}
