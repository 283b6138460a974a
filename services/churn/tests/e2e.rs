//! End to end over gRPC on a fifth of CDNOW: feature store in process (temp SQLite), churn service
//! in process; Train with a cutoff, PredictChurn, ListAtRisk, GetModelInfo, hot swap, reload at
//! start; the leakage guard; explanations that add up to the model output.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::Arc;

use augur_churn::State;
use augur_churn::features;
use augur_churn::fs::{FeatureStore, ts};
use augur_churn::train::{self, TrainParams};
use augur_proto::churn as cpb;
use augur_proto::churn::churn_client::ChurnClient;
use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_runtime::{Secret, ServerConfig, ServerHandle};
use augur_testkit::datasets;
use chrono::NaiveDate;
use tonic::transport::Channel;

fn end_of(y: i32, m: u32, d: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(23, 59, 59)
        .unwrap()
        .and_utc()
        .timestamp()
}

async fn feature_store(dir: &std::path::Path, events: &[fpb::Event]) -> ServerHandle {
    let config = augur_feature_store::Config {
        server: ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            request_timeout_ms: 120_000,
            ..ServerConfig::default()
        },
        data_dir: dir.to_path_buf(),
        hash_key: Secret::new("test-hash-key-0123456789"),
        sqlite_synchronous: "off".into(),
        ..augur_feature_store::Config::default()
    };
    let (server, _app) = augur_feature_store::build(&config).await.unwrap();
    let handle = server.spawn().await.unwrap();
    let mut c = FeatureStoreClient::connect(handle.url()).await.unwrap();
    for chunk in events.chunks(5_000) {
        let r = c
            .ingest(fpb::IngestRequest {
                events: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
    }
    handle
}

fn churn_config(dir: &std::path::Path, fs_url: &str) -> augur_churn::Config {
    let mut c = augur_churn::default_config();
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.server.request_timeout_ms = 120_000;
    c.data_dir = dir.to_path_buf();
    c.feature_store_url = fs_url.to_string();
    c
}

async fn churn(config: &augur_churn::Config) -> (ServerHandle, ChurnClient<Channel>, Arc<State>) {
    let state = augur_churn::state(config).unwrap();
    let handle = augur_churn::build_with(config, state.clone())
        .spawn()
        .await
        .unwrap();
    let client = ChurnClient::connect(handle.url())
        .await
        .unwrap()
        .max_decoding_message_size(64 << 20);
    (handle, client, state)
}

/// CDNOW customers whose id is a multiple of 5 (about 4,700), as order events, plus the raw rows.
fn cdnow_fifth() -> Option<Vec<datasets::CdnowRow>> {
    let path = datasets::require("cdnow/CDNOW_master.txt")?;
    let rows = datasets::cdnow(&path).expect("parse CDNOW");
    Some(
        rows.into_iter()
            .filter(|r| r.customer_id.parse::<u64>().unwrap() % 5 == 0)
            .collect(),
    )
}

async fn train_rpc(
    c: &mut ChurnClient<Channel>,
    req: cpb::TrainRequest,
) -> Result<augur_proto::common::ModelInfo, tonic::Status> {
    let mut s = c.train(req).await?.into_inner();
    let mut last = None;
    let mut stages = 0;
    while let Some(p) = s.message().await? {
        stages += 1;
        assert!((0.0..=1.0).contains(&p.fraction));
        if p.done {
            last = p.model;
        }
    }
    assert!(stages > 2, "progress was reported");
    Ok(last.expect("done message with the model"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdnow_train_with_cutoff_then_predict_over_grpc() {
    let Some(rows) = cdnow_fifth() else { return };
    let dir = tempfile::tempdir().unwrap();
    // Every order, including the ones after the cutoff: the cutoff alone must keep them out.
    let fs = feature_store(&dir.path().join("fs"), &datasets::cdnow_orders(&rows)).await;
    let config = churn_config(&dir.path().join("churn"), &fs.url());
    let (handle, mut c, state) = churn(&config).await;
    let cutoff = end_of(1997, 9, 30);

    let ids: Vec<String> = {
        let mut v: Vec<String> = rows.iter().map(|r| r.customer_id.clone()).collect();
        v.sort();
        v.dedup();
        v
    };
    // No model yet.
    let err = c
        .predict_churn(cpb::PredictChurnRequest {
            customer_ids: vec![ids[0].clone()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("call Train"));
    // Bad requests name the field.
    let err = c
        .predict_churn(cpb::PredictChurnRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("customer_ids"));
    let err = train_rpc(
        &mut c,
        cpb::TrainRequest {
            cutoff: Some(ts(cutoff)),
            hyperparameters: [("nam.nope".to_string(), "1".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("nam.nope"), "{}", err.message());

    let info = train_rpc(
        &mut c,
        cpb::TrainRequest {
            cutoff: Some(ts(cutoff)),
            horizon_days: 90,
            hyperparameters: [("nam.epochs".to_string(), "8".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(info.parameters["horizon_days"], "90");
    assert!(
        info.validation_metrics["roc_auc"] > 0.7,
        "{:?}",
        info.validation_metrics
    );
    assert_eq!(
        info.training_data
            .as_ref()
            .unwrap()
            .end
            .as_ref()
            .unwrap()
            .seconds,
        cutoff
    );

    // Predict as of the cutoff for everyone; one unknown id.
    let mut req_ids = ids.clone();
    req_ids.push("no-such-customer".into());
    req_ids.push(ids[0].clone()); // duplicate: answered once
    let r = c
        .predict_churn(cpb::PredictChurnRequest {
            customer_ids: req_ids,
            as_of: Some(ts(cutoff)),
            max_factors: 100,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, info.model_version);
    assert_eq!(r.horizon_days, 90);
    assert_eq!(r.predictions.len(), ids.len());
    assert_eq!(r.errors.len(), 1);
    assert_eq!(r.errors[0].customer_id, "no-such-customer");
    assert_eq!(r.errors[0].code, tonic::Code::NotFound as i32);
    // Quality sanity on the 90 days after the cutoff (truth from the raw rows).
    let hold_end = NaiveDate::from_ymd_opt(1997, 12, 29).unwrap();
    let cut_day = NaiveDate::from_ymd_opt(1997, 9, 30).unwrap();
    let bought: std::collections::HashSet<&str> = rows
        .iter()
        .filter(|r| r.date > cut_day && r.date <= hold_end)
        .map(|r| r.customer_id.as_str())
        .collect();
    let scores: Vec<f64> = r.predictions.iter().map(|p| p.churn_probability).collect();
    let labels: Vec<bool> = r
        .predictions
        .iter()
        .map(|p| !bought.contains(p.customer_id.as_str()))
        .collect();
    let auc = augur_model::metrics::roc_auc(&scores, &labels).unwrap();
    assert!(auc > 0.7, "holdout ROC-AUC {auc}");
    for p in &r.predictions {
        assert!((0.0..=1.0).contains(&p.churn_probability));
        assert!(p.expected_purchases >= 0.0);
        assert_ne!(p.tier, cpb::RiskTier::Unspecified as i32);
        assert!(!p.factors.is_empty());
        let f = &p.factors[0];
        assert_eq!(f.unit, "log_odds");
        assert!(!f.description.is_empty());
    }
    // A heavy buyer who stopped: recency is explained in words.
    let p = &r.predictions[0];
    assert!(
        p.factors
            .iter()
            .any(|f| f.description.contains("no order for") || f.description.contains("purchase")),
        "{:?}",
        p.factors
    );

    // Explanations match the served model: base + every contribution = the network's log-odds,
    // and the calibrated probability is the Platt transform of it.
    let model = state.model().unwrap();
    let fsc = FeatureStore::new(augur_runtime::client::intercepted(
        Channel::from_shared(fs.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    ));
    let recs = features::records(
        fsc.features(&ids[..200], Some(cutoff), &model.needed_features())
            .await
            .unwrap(),
    );
    for (rec, p) in recs.iter().zip(&r.predictions[..200]) {
        let rec = rec.as_ref().unwrap();
        let own = model.predict(rec);
        let sum: f64 = p.base_value + p.factors.iter().map(|f| f.contribution).sum::<f64>();
        assert!((sum - own.logit).abs() < 1e-6, "{sum} vs {}", own.logit);
        assert!((model.probability(sum) - p.churn_probability).abs() < 1e-9);
        // The fast path equals the candle forward pass.
        let x = features::encode(
            &model.spec.columns,
            rec,
            &model.spec.btyd,
            f64::from(model.spec.horizon_days) / 7.0,
        );
        assert!((model.nam.logit_candle(&x).unwrap() - own.logit).abs() < 1e-3);
    }

    // ListAtRisk over all known customers.
    let l = c
        .list_at_risk(cpb::ListAtRiskRequest {
            min_probability: 0.5,
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(l.customers.len(), 10);
    assert!(l.total_matching >= 10);
    let v: Vec<f64> = l
        .customers
        .iter()
        .map(|a| a.value_at_risk.as_ref().unwrap().amount)
        .collect();
    assert!(v.windows(2).all(|w| w[0] >= w[1]), "{v:?}");
    assert!(
        l.customers
            .iter()
            .all(|a| a.prediction.as_ref().unwrap().churn_probability >= 0.5
                && a.segment != fpb::Segment::Unspecified as i32)
    );
    let err = c
        .list_at_risk(cpb::ListAtRiskRequest {
            min_probability: 2.0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("min_probability"));

    // Hot swap: a second Train serves a new version without a restart.
    let info2 = train_rpc(
        &mut c,
        cpb::TrainRequest {
            cutoff: Some(ts(cutoff)),
            horizon_days: 60,
            hyperparameters: [
                ("nam.epochs".to_string(), "2".to_string()),
                ("variants".to_string(), "nam_seq".to_string()),
            ]
            .into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_ne!(info2.model_version, info.model_version);
    assert_eq!(info2.parameters["variant"], "nam_seq");
    let got = c
        .get_model_info(cpb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.model.unwrap().model_version, info2.model_version);
    // The order-sequence GRU is one factor, described from the last orders, and the explanation
    // still adds up to the served model's log-odds.
    let r = c
        .predict_churn(cpb::PredictChurnRequest {
            customer_ids: ids[..50].to_vec(),
            as_of: Some(ts(cutoff)),
            max_factors: 100,
        })
        .await
        .unwrap()
        .into_inner();
    let model = state.model().unwrap();
    assert!(model.nam.seq.is_some());
    let recs = features::records(
        fsc.features(&ids[..50], Some(cutoff), &model.needed_features())
            .await
            .unwrap(),
    );
    for (rec, p) in recs.iter().zip(&r.predictions) {
        let seq = p.factors.iter().find(|f| f.name == "recent_orders");
        let seq = seq.unwrap_or_else(|| panic!("no sequence factor in {:?}", p.factors));
        assert!(seq.description.contains("days ago"), "{}", seq.description);
        let own = model.predict(rec.as_ref().unwrap());
        let sum: f64 = p.base_value + p.factors.iter().map(|f| f.contribution).sum::<f64>();
        assert!((sum - own.logit).abs() < 1e-6, "{sum} vs {}", own.logit);
    }
    handle.shutdown().await.unwrap();

    // A restarted service loads the newest saved model.
    let (handle, mut c, _) = churn(&config).await;
    let got = c
        .get_model_info(cpb::GetModelInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.model.unwrap().model_version, info2.model_version);
    let r = c
        .predict_churn(cpb::PredictChurnRequest {
            customer_ids: vec![ids[1].clone()],
            as_of: Some(ts(cutoff)),
            max_factors: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, info2.model_version);
    assert_eq!(r.horizon_days, 60);
    assert!(r.predictions[0].factors.len() <= 5);
    handle.shutdown().await.unwrap();
    fs.shutdown().await.unwrap();
}

/// The leakage guard: the same training on a feature store that also holds (different) events
/// after the cutoff — later orders of known customers, brand-new customers, a customer record
/// with a new attribute — must read exactly the same examples and produce exactly the same model.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_the_cutoff_do_not_influence_training() {
    let Some(rows) = cdnow_fifth() else { return };
    let cutoff_day = NaiveDate::from_ymd_opt(1997, 6, 30).unwrap();
    let cutoff = end_of(1997, 6, 30);
    // Keep it small: a quarter of the fifth.
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|r| r.customer_id.parse::<u64>().unwrap() % 20 == 0)
        .collect();
    let past: Vec<_> = rows
        .iter()
        .filter(|r| r.date <= cutoff_day)
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let clean = feature_store(&dir.path().join("a"), &datasets::cdnow_orders(&past)).await;

    let mut future = datasets::cdnow_orders(&rows); // includes every order after the cutoff
    let after = cutoff + 3_600;
    for (i, id) in ["10", "20", "40"].iter().enumerate() {
        future.push(fpb::Event {
            payload: Some(fpb::event::Payload::Order(fpb::Order {
                order_id: format!("late-{i}"),
                customer_id: id.to_string(),
                ts: Some(ts(after + i as i64)),
                total: Some(1_000.0),
                ..Default::default()
            })),
        });
    }
    future.push(fpb::Event {
        payload: Some(fpb::event::Payload::Customer(fpb::Customer {
            customer_id: "newcomer".into(),
            signup_ts: Some(ts(after)),
            country: "DE".into(),
            attributes: [("tier".to_string(), "gold".to_string())].into(),
            ts: None,
        })),
    });
    future.push(fpb::Event {
        payload: Some(fpb::event::Payload::Customer(fpb::Customer {
            customer_id: "20".into(),
            signup_ts: None,
            country: "US".into(),
            attributes: [("tier".to_string(), "silver".to_string())].into(),
            ts: Some(ts(after)),
        })),
    });
    let leaky = feature_store(&dir.path().join("b"), &future).await;

    let client = |url: String| async move {
        FeatureStore::new(augur_runtime::client::intercepted(
            Channel::from_shared(url).unwrap().connect().await.unwrap(),
        ))
    };
    let mut p = TrainParams::new(cutoff);
    p.horizon_days = 60;
    p.nam.epochs = 3;
    let mut quiet = |_: &str, _: f64, _: String| {};
    let a = train::load(&client(clean.url()).await, &p, &mut quiet)
        .await
        .unwrap();
    let b = train::load(&client(leaky.url()).await, &p, &mut quiet)
        .await
        .unwrap();
    assert!(!a.examples.is_empty());
    assert!(a.examples.iter().any(|e| e.churned) && a.examples.iter().any(|e| !e.churned));
    assert_eq!(a.cutoffs, b.cutoffs);
    assert_eq!(
        a.names, b.names,
        "no attribute recorded after the cutoff is a feature"
    );
    assert_eq!(a.examples, b.examples);
    assert_eq!(a.btyd_at, b.btyd_at);
    assert_eq!(a.at_cutoff, b.at_cutoff);
    let ma = train::fit(&a, &p, &mut quiet).unwrap();
    let mb = train::fit(&b, &p, &mut quiet).unwrap();
    assert_eq!(ma.spec, mb.spec);
    assert_eq!(ma.nam, mb.nam);
    assert_eq!(ma.meta.validation_metrics, mb.meta.validation_metrics);

    // Labels shorter than the horizon: the horizon-stretch rehearsal (one window earlier) reads
    // nothing after the cutoff either, and gives the same map on both stores.
    let mut short = p.clone();
    short.horizon_days = 120;
    short.example_cutoffs = vec![cutoff - 40 * 86_400];
    let sa = train::load(&client(clean.url()).await, &short, &mut quiet)
        .await
        .unwrap();
    let rp = train::rehearsal_params(&short, &sa, "nam").expect("a stretch to rehearse");
    assert_eq!(rp.cutoff, cutoff - 40 * 86_400);
    assert_eq!(rp.horizon_days, 40);
    assert_eq!(rp.example_cutoffs, vec![rp.cutoff - 13 * 86_400]);
    let (map_a, fig_a) = train::rehearse(&client(clean.url()).await, &rp, &mut quiet)
        .await
        .unwrap();
    let (map_b, fig_b) = train::rehearse(&client(leaky.url()).await, &rp, &mut quiet)
        .await
        .unwrap();
    assert_eq!(map_a, map_b);
    assert_eq!(fig_a, fig_b);
    assert!(fig_a["stretch.customers"] > 100.0, "{fig_a:?}");
    // No stretch when the labels cover the horizon.
    assert!(train::rehearsal_params(&p, &a, "nam").is_none());

    // And the guard has teeth: moving the cutoff past those events changes what is read.
    let mut later = p.clone();
    later.cutoff = after + 10;
    let c = train::load(&client(leaky.url()).await, &later, &mut quiet)
        .await
        .unwrap();
    assert_ne!(c.at_cutoff, b.at_cutoff);
    clean.shutdown().await.unwrap();
    leaky.shutdown().await.unwrap();
}

/// What `augur up --demo` does: a default Train request (every field empty) on the synthetic
/// demo data (customer attributes, interactions, reviews), then predictions with factors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_train_request_on_demo_data() {
    let data = augur_demo::generate(&augur_demo::DemoConfig {
        customers: 300,
        products: 40,
        days: 400,
        ..augur_demo::DemoConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let fs = feature_store(&dir.path().join("fs"), &data.events).await;
    let config = churn_config(&dir.path().join("churn"), &fs.url());
    let (handle, mut c, state) = churn(&config).await;
    // One training at a time: a second Train while the first runs is ABORTED.
    let first = c.train(cpb::TrainRequest::default()).await.unwrap();
    let Err(err) = c.train(cpb::TrainRequest::default()).await else {
        panic!("second Train accepted while the first runs");
    };
    assert_eq!(err.code(), tonic::Code::Aborted);
    let mut s = first.into_inner();
    let mut info = None;
    while let Some(p) = s.message().await.unwrap() {
        if p.done {
            info = p.model;
        }
    }
    let info = info.unwrap();
    assert_eq!(info.parameters["horizon_days"], "90");
    let fsc = FeatureStore::new(augur_runtime::client::intercepted(
        Channel::from_shared(fs.url())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    ));
    let ids = fsc.customers().await.unwrap();
    // Customer attributes become training features (the demo's attributes are read as of the
    // cutoff). Which model serves is chosen on validation, and the demo data follow the calendar
    // of the day the test runs, so on some days the BTYD baseline alone wins; any model that uses
    // the behavioural features uses the attributes too.
    let keys = fsc
        .for_training()
        .attribute_keys(chrono::Utc::now().timestamp())
        .await
        .unwrap();
    assert!(!keys.is_empty(), "the demo customers have attributes");
    let model = state.model().unwrap();
    let groups: Vec<&String> = model.spec.columns.iter().map(|c| &c.group).collect();
    if groups.iter().any(|g| g.as_str() != "buy_till_you_die") {
        assert!(
            groups.iter().any(|g| g.starts_with("attr_")),
            "customer attributes become features: {groups:?}"
        );
    }
    let r = c
        .predict_churn(cpb::PredictChurnRequest {
            customer_ids: ids[..50].to_vec(),
            as_of: None,
            max_factors: 3,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.model_version, info.model_version);
    assert_eq!(r.predictions.len() + r.errors.len(), 50);
    assert!(r.predictions.iter().all(|p| p.factors.len() <= 3));
    handle.shutdown().await.unwrap();
    fs.shutdown().await.unwrap();
}
