//! End to end over real gRPC on 127.0.0.1:0: a feature store on a temp SQLite directory gets a
//! catalogue, orders and interactions; the recommendation service trains from it, recommends
//! (purchased, out-of-stock and inactive products never come back; a cold customer gets
//! "popular"), answers similar items, keeps serving while a new model is swapped in, reloads
//! the saved model after a restart, and still answers (degraded) with the feature store gone.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::HashSet;

use augur_proto::featurestore as fs;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::recommendation as pb;
use augur_proto::recommendation::recommendation_client::RecommendationClient;
use augur_runtime::{Secret, ServerConfig, ServerHandle};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic::transport::Channel;

const DAY: i64 = 86_400;
const T0: i64 = 1_700_000_000;

fn ts(s: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: s,
        nanos: 0,
    })
}

fn local() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

async fn start_fs(dir: &std::path::Path) -> (ServerHandle, FeatureStoreClient<Channel>) {
    let c = augur_feature_store::Config {
        server: local(),
        hash_key: Secret::new("test-hash-key-0123456789"),
        data_dir: dir.to_path_buf(),
        ..Default::default()
    };
    let (server, _app) = augur_feature_store::build(&c).await.expect("fs build");
    let h = server.spawn().await.expect("fs spawn");
    let client = FeatureStoreClient::connect(h.url())
        .await
        .expect("fs connect");
    (h, client)
}

async fn start_rec(
    dir: &std::path::Path,
    fs_url: &str,
) -> (ServerHandle, RecommendationClient<Channel>) {
    let mut c = augur_recommendation::default_config();
    c.server = local();
    c.data_dir = dir.to_path_buf();
    c.feature_store_url = fs_url.to_string();
    let h = augur_recommendation::build(&c)
        .spawn()
        .await
        .expect("rec spawn");
    let client = RecommendationClient::connect(h.url())
        .await
        .expect("rec connect");
    (h, client)
}

fn product(sku: &str, cat: &[&str], stock: i64, active: bool) -> fs::Event {
    fs::Event {
        payload: Some(fs::event::Payload::Product(fs::Product {
            sku: sku.into(),
            title: format!("Product {sku}"),
            category_path: cat.iter().map(|s| s.to_string()).collect(),
            price: 10.0,
            stock,
            active: Some(active),
            ts: ts(T0),
            ..Default::default()
        })),
    }
}

/// Three tastes (categories), ten products each; customers of a taste walk its products in
/// order, buying some and viewing others.
fn events() -> Vec<fs::Event> {
    let cats = ["Books", "Audio", "Toys"];
    let mut ev = Vec::new();
    for (c, cat) in cats.iter().enumerate() {
        for p in 0..10 {
            let sku = format!("{cat}-{p}");
            // Product 1 of every category is out of stock, product 2 of Audio is inactive.
            let stock = if p == 1 { 0 } else { 50 };
            let active = !(c == 1 && p == 2);
            ev.push(product(&sku, &["Shop", cat], stock, active));
        }
    }
    for u in 0..60 {
        let c = u % 3;
        let cat = cats[c];
        let start = u / 3 % 4;
        for step in 0..6 {
            let p = (start + step) % 10;
            let t = T0 + DAY * (u as i64 % 7) + step as i64 * 3600;
            let sku = format!("{cat}-{p}");
            if step % 2 == 0 {
                ev.push(fs::Event {
                    payload: Some(fs::event::Payload::Order(fs::Order {
                        order_id: format!("o-{u}-{step}"),
                        customer_id: format!("c{u}"),
                        ts: ts(t),
                        lines: vec![fs::OrderLine {
                            sku,
                            quantity: 1,
                            unit_price: 10.0,
                            promotion: false,
                        }],
                        currency: "EUR".into(),
                        ..Default::default()
                    })),
                });
            } else {
                ev.push(fs::Event {
                    payload: Some(fs::event::Payload::Interaction(fs::Interaction {
                        event_id: format!("i-{u}-{step}"),
                        customer_id: format!("c{u}"),
                        sku,
                        kind: fs::InteractionKind::View as i32,
                        ts: ts(t),
                        ..Default::default()
                    })),
                });
            }
        }
    }
    ev
}

async fn train(client: &mut RecommendationClient<Channel>) -> augur_proto::common::ModelInfo {
    let req = pb::TrainRequest {
        hyperparameters: [("seq.steps".to_string(), "40".to_string())].into(),
        ..Default::default()
    };
    let mut stream = client.train(req).await.expect("train").into_inner();
    let mut last = None;
    while let Some(msg) = stream.next().await {
        last = Some(msg.expect("progress"));
    }
    let last = last.expect("a final message");
    assert!(last.done, "{last:?}");
    last.model.expect("model info")
}

fn unavailable(sku: &str) -> bool {
    sku.ends_with("-1") || sku == "Audio-2"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_recommend_swap_restart() {
    let fs_dir = tempfile::tempdir().unwrap();
    let rec_dir = tempfile::tempdir().unwrap();
    let (fs_handle, mut fsc) = start_fs(fs_dir.path()).await;
    let resp = fsc
        .ingest(fs::IngestRequest { events: events() })
        .await
        .expect("ingest")
        .into_inner();
    assert!(resp.rejected.is_empty(), "{:?}", resp.rejected);
    let fs_url = fs_handle.url();
    let (rec_handle, mut rec) = start_rec(rec_dir.path(), &fs_url).await;

    // Before any training: FAILED_PRECONDITION.
    let err = rec
        .recommend(pb::RecommendRequest::default())
        .await
        .expect_err("no model");
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("call Train"), "{}", err.message());

    let info = train(&mut rec).await;
    assert!(info.validation_metrics.contains_key("ndcg@10"), "{info:?}");
    assert_eq!(info.training_examples, 60);
    let got = rec
        .get_model_info(pb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(got.model_version, info.model_version);

    // A known customer: personalised, never purchased / out-of-stock / inactive products.
    for u in 0..60 {
        let r = rec
            .recommend(pb::RecommendRequest {
                customer_id: format!("c{u}"),
                k: 5,
                options: None,
            })
            .await
            .expect("recommend")
            .into_inner();
        assert_eq!(r.model_version, info.model_version);
        assert_eq!(r.items.len(), 5);
        assert_eq!(r.strategy, pb::Strategy::Personalised as i32);
        let cat = ["Books", "Audio", "Toys"][u % 3];
        let start = u / 3 % 4;
        let bought: HashSet<String> = [0, 2, 4]
            .iter()
            .map(|s| format!("{cat}-{}", (start + s) % 10))
            .collect();
        for it in &r.items {
            assert!(!bought.contains(&it.sku), "c{u} bought {}", it.sku);
            assert!(!unavailable(&it.sku), "c{u} got unavailable {}", it.sku);
            assert!(!it.reason.is_empty());
        }
        // The top item is from the customer's own taste.
        assert!(r.items[0].sku.starts_with(cat), "c{u}: {:?}", r.items[0]);
        if u == 0 {
            assert!(
                r.items.iter().any(|i| i.reason.contains("together with")),
                "{:?}",
                r.items
            );
        }
    }
    // include_purchased brings purchases back (still never the unavailable ones).
    let r = rec
        .recommend(pb::RecommendRequest {
            customer_id: "c0".into(),
            k: 30,
            options: Some(pb::RecommendOptions {
                include_purchased: true,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.items.iter().any(|i| i.sku == "Books-0"));
    assert!(r.items.iter().all(|i| !unavailable(&i.sku)));

    // Cold customer: popular; within a category when asked; category cap.
    let r = rec
        .recommend(pb::RecommendRequest {
            customer_id: "nobody".into(),
            k: 4,
            options: Some(pb::RecommendOptions {
                categories: vec!["Toys".into()],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.strategy, pb::Strategy::Popular as i32);
    assert_eq!(r.items.len(), 4);
    assert!(
        r.items
            .iter()
            .all(|i| i.sku.starts_with("Toys") && !unavailable(&i.sku))
    );
    assert!(r.items[0].reason.contains("popular"), "{:?}", r.items[0]);
    let r = rec
        .recommend(pb::RecommendRequest {
            customer_id: String::new(),
            k: 6,
            options: Some(pb::RecommendOptions {
                max_per_category: 2,
                recent_sales_boost: 1.0,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.items.len(), 6);
    for c in ["Books", "Audio", "Toys"] {
        assert_eq!(r.items.iter().filter(|i| i.sku.starts_with(c)).count(), 2);
    }

    // Bad input names the field.
    let err = rec
        .recommend(pb::RecommendRequest {
            customer_id: "c1".into(),
            k: 100_000,
            options: None,
        })
        .await
        .expect_err("k too large");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains('k'), "{}", err.message());
    let err = rec
        .recommend(pb::RecommendRequest {
            customer_id: "c1".into(),
            k: 3,
            options: Some(pb::RecommendOptions {
                min_price: Some(5.0),
                max_price: Some(1.0),
                ..Default::default()
            }),
        })
        .await
        .expect_err("bad price range");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("options.min_price"),
        "{}",
        err.message()
    );
    let err = rec
        .train(pb::TrainRequest {
            hyperparameters: [("nope".to_string(), "1".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect_err("unknown hyper-parameter");
    assert!(
        err.message().contains("hyperparameters[nope]"),
        "{}",
        err.message()
    );

    // Similar items: collaborative for a known product, content for a new one, NOT_FOUND else.
    let s = rec
        .similar_items(pb::SimilarItemsRequest {
            sku: "Books-3".into(),
            k: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(s.strategy, pb::Strategy::Collaborative as i32);
    assert!(
        s.items
            .iter()
            .all(|i| i.sku.starts_with("Books") && i.sku != "Books-3" && !unavailable(&i.sku))
    );
    fsc.ingest(fs::IngestRequest {
        events: vec![product("Audio-new", &["Shop", "Audio"], 5, true)],
    })
    .await
    .unwrap();
    let fresh = tokio::time::Instant::now();
    // The new product reaches the catalogue at the next refresh (forced by training below).
    let err = rec
        .similar_items(pb::SimilarItemsRequest {
            sku: "ghost".into(),
            k: 3,
        })
        .await
        .expect_err("unknown sku");
    assert_eq!(err.code(), Code::NotFound);

    // Hot swap: requests keep succeeding while a new model is trained and swapped in.
    let mut bg = rec.clone();
    let hammer = tokio::spawn(async move {
        let mut versions = HashSet::new();
        for _ in 0..300 {
            let r = bg
                .recommend(pb::RecommendRequest {
                    customer_id: "c4".into(),
                    k: 3,
                    options: None,
                })
                .await
                .expect("served during the swap")
                .into_inner();
            versions.insert(r.model_version);
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        versions
    });
    // Versions sort by their second-resolution timestamp: make the new one strictly newer.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let info2 = train(&mut rec).await;
    assert_ne!(info2.model_version, info.model_version);
    let versions = hammer.await.unwrap();
    assert!(versions.contains(&info2.model_version) || versions.contains(&info.model_version));
    let s = rec
        .similar_items(pb::SimilarItemsRequest {
            sku: "Audio-new".into(),
            k: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        s.strategy,
        pb::Strategy::Content as i32,
        "{s:?} after {:?}",
        fresh.elapsed()
    );
    assert!(
        s.items
            .iter()
            .all(|i| i.sku.starts_with("Audio") && !unavailable(&i.sku))
    );
    assert!(s.items[0].reason.contains("Audio"));

    // Restart: the saved model is loaded and serves; with the feature store gone the answer is
    // degraded but still there.
    rec_handle.shutdown().await.unwrap();
    fs_handle.shutdown().await.unwrap();
    let (rec_handle, mut rec) = start_rec(rec_dir.path(), &fs_url).await;
    let r = rec
        .recommend(pb::RecommendRequest {
            customer_id: "c0".into(),
            k: 5,
            options: None,
        })
        .await
        .expect("answers without the feature store")
        .into_inner();
    assert_eq!(r.model_version, info2.model_version);
    assert!(r.degraded);
    assert_eq!(r.items.len(), 5);
    // Training from an unreachable feature store ends the stream with UNAVAILABLE.
    let mut stream = rec
        .train(pb::TrainRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut stream_err = None;
    while let Some(m) = stream.next().await {
        if let Err(e) = m {
            stream_err = Some(e);
        }
    }
    assert_eq!(stream_err.map(|e| e.code()), Some(Code::Unavailable));
    rec_handle.shutdown().await.unwrap();
}
