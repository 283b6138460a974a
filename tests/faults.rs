//! Model services when the feature store is down.
//!
//! - Trained (small synthetic demo data; recommendation, churn and risk trained through `Train`),
//!   then the feature store stops: every prediction RPC answers within its deadline, either from
//!   request data / the service's cached state, or UNAVAILABLE (never INTERNAL, never a hang); a
//!   Train started meanwhile fails UNAVAILABLE and leaves the served model alone. The feature
//!   store comes back on the same port and data: every RPC works again without a restart.
//! - Never reachable (`feature_store_url` is a closed port), untrained: predictions answer
//!   FAILED_PRECONDITION or UNAVAILABLE within their deadline, Train answers UNAVAILABLE.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::{churn, recommendation, risk};
use augur_runtime::{Secret, ServerConfig, ServerHandle};
use tokio_stream::StreamExt;
use tonic::Code;

/// The model services' own request timeout is 10 s; every answer must come well before it.
const DEADLINE: Duration = Duration::from_secs(9);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

async fn feature_store(dir: &std::path::Path, port: u16) -> ServerHandle {
    let config = augur_feature_store::Config {
        server: ServerConfig {
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            ..ServerConfig::default()
        },
        data_dir: dir.to_path_buf(),
        hash_key: Secret::new("test-hash-key-0123456789"),
        ..augur_feature_store::Config::default()
    };
    let (server, _app) = augur_feature_store::build(&config).await.unwrap();
    server.spawn().await.unwrap()
}

struct Models {
    handles: Vec<ServerHandle>,
    rec: recommendation::recommendation_client::RecommendationClient<tonic::transport::Channel>,
    churn: churn::churn_client::ChurnClient<tonic::transport::Channel>,
    risk: risk::risk_client::RiskClient<tonic::transport::Channel>,
}

async fn model_services(dir: &std::path::Path, fs_url: &str) -> Models {
    let config = |defaults: augur_runtime::config::ModelServiceConfig| {
        let mut c = defaults;
        c.server.listen = "127.0.0.1:0".parse().unwrap();
        c.data_dir = dir.to_path_buf();
        c.feature_store_url = fs_url.to_string();
        c
    };
    let rec = augur_recommendation::build(&config(augur_recommendation::default_config()))
        .spawn()
        .await
        .unwrap();
    let ch = augur_churn::build(&config(augur_churn::default_config()))
        .spawn()
        .await
        .unwrap();
    let rk = augur_risk::build(&config(augur_risk::default_config()))
        .spawn()
        .await
        .unwrap();
    Models {
        rec: recommendation::recommendation_client::RecommendationClient::connect(rec.url())
            .await
            .unwrap(),
        churn: churn::churn_client::ChurnClient::connect(ch.url())
            .await
            .unwrap(),
        risk: risk::risk_client::RiskClient::connect(rk.url())
            .await
            .unwrap(),
        handles: vec![rec, ch, rk],
    }
}

fn req<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.set_timeout(DEADLINE + Duration::from_secs(5));
    r
}

/// A call that may not be able to answer without the feature store: Ok, or a clear
/// UNAVAILABLE / FAILED_PRECONDITION, before the deadline.
fn degraded<T: std::fmt::Debug>(
    what: &str,
    took: Duration,
    r: Result<tonic::Response<T>, tonic::Status>,
    allowed: &[Code],
) -> Option<T> {
    eprintln!(
        "{what}: {:?} after {took:?}",
        r.as_ref()
            .map(|_| "OK")
            .map_err(|e| (e.code(), e.message()))
    );
    assert!(took < DEADLINE, "{what} took {took:?}");
    match r {
        Ok(r) => Some(r.into_inner()),
        Err(e) => {
            assert!(allowed.contains(&e.code()), "{what}: {e}");
            assert!(!e.message().is_empty(), "{what}: {e}");
            None
        }
    }
}

/// Runs a Train to its end; the error of the call or of the stream.
async fn train<S>(
    call: impl std::future::Future<Output = Result<tonic::Response<S>, tonic::Status>>,
) -> Result<augur_proto::common::ModelInfo, tonic::Status>
where
    S: tokio_stream::Stream<Item = Result<augur_proto::common::TrainProgress, tonic::Status>>
        + Unpin,
{
    let mut s = call.await?.into_inner();
    let mut model = None;
    while let Some(p) = s.next().await {
        let p = p?;
        if p.done {
            model = p.model;
        }
    }
    model.ok_or_else(|| tonic::Status::internal("no final model"))
}

struct Probe {
    customers: Vec<String>,
    sku: String,
    order: fpb::Order,
}

/// One round of prediction calls; returns the model versions that answered (rec, churn, risk)
/// when every call succeeded.
async fn predict(m: &mut Models, p: &Probe, allowed: &[Code]) -> Option<(String, String, String)> {
    let t = Instant::now();
    let r = m
        .rec
        .recommend(req(recommendation::RecommendRequest {
            customer_id: p.customers[0].clone(),
            k: 5,
            options: None,
        }))
        .await;
    let rec = degraded("Recommend", t.elapsed(), r, allowed);
    if let Some(r) = &rec {
        eprintln!("  degraded={} strategy={}", r.degraded, r.strategy);
    }
    let t = Instant::now();
    let r = m
        .rec
        .similar_items(req(recommendation::SimilarItemsRequest {
            sku: p.sku.clone(),
            k: 5,
        }))
        .await;
    let similar = degraded("SimilarItems", t.elapsed(), r, allowed);

    let t = Instant::now();
    let r = m
        .churn
        .predict_churn(req(churn::PredictChurnRequest {
            customer_ids: p.customers.clone(),
            ..Default::default()
        }))
        .await;
    let ch = degraded("PredictChurn", t.elapsed(), r, allowed);
    if let Some(c) = &ch {
        assert!(
            c.errors.iter().all(|e| e.code == Code::NotFound as i32),
            "{:?}",
            c.errors
        );
    }
    let t = Instant::now();
    let r = m
        .churn
        .list_at_risk(req(churn::ListAtRiskRequest {
            limit: 5,
            ..Default::default()
        }))
        .await;
    let at_risk = degraded("ListAtRisk", t.elapsed(), r, allowed);

    // A full order in the request, and one to look up in the feature store.
    let mut order = p.order.clone();
    order.order_id = format!("probe-{}", rand_suffix());
    let t = Instant::now();
    let r = m
        .risk
        .score_order(req(risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::Order(order)),
        }))
        .await;
    let full = degraded("ScoreOrder(order)", t.elapsed(), r, allowed);
    let t = Instant::now();
    let r = m
        .risk
        .score_order(req(risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::OrderId(
                p.order.order_id.clone(),
            )),
        }))
        .await;
    let by_id = degraded("ScoreOrder(order_id)", t.elapsed(), r, allowed);

    match (rec, similar, ch, at_risk, full, by_id) {
        (Some(r), Some(_), Some(c), Some(_), Some(s), Some(_)) => {
            Some((r.model_version, c.model_version, s.model_version))
        }
        _ => None,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_model_services_survive_a_feature_store_outage() {
    let dir = tempfile::tempdir().unwrap();
    let fs_dir = dir.path().join("fs");
    let port = free_port();
    let fs = feature_store(&fs_dir, port).await;
    let fs_url = fs.url();

    // Small synthetic shop: customers, catalogue, orders, interactions, reviews.
    let data = augur_demo::generate(&augur_demo::DemoConfig {
        customers: 300,
        products: 40,
        days: 400,
        ..augur_demo::DemoConfig::default()
    });
    let t = Instant::now();
    let mut fsc = FeatureStoreClient::connect(fs_url.clone()).await.unwrap();
    for chunk in data.events.chunks(5_000) {
        let r = fsc
            .ingest(fpb::IngestRequest {
                events: chunk.to_vec(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.rejected.is_empty(), "{:?}", r.rejected.first());
    }
    eprintln!(
        "{} demo events ingested in {:?}",
        data.events.len(),
        t.elapsed()
    );
    let mut customers = Vec::new();
    let mut order = None;
    let mut sku = None;
    for e in &data.events {
        match &e.payload {
            Some(fpb::event::Payload::Customer(c)) if customers.len() < 5 => {
                customers.push(c.customer_id.clone())
            }
            Some(fpb::event::Payload::Order(o))
                if order.is_none() && customers.contains(&o.customer_id) =>
            {
                order = Some(o.clone())
            }
            Some(fpb::event::Payload::Product(p)) if sku.is_none() => sku = Some(p.sku.clone()),
            _ => {}
        }
    }
    let probe = Probe {
        customers,
        sku: sku.unwrap(),
        order: order.unwrap(),
    };

    let mut m = model_services(&dir.path().join("models"), &fs_url).await;
    let t = Instant::now();
    let rinfo = train(m.rec.train(recommendation::TrainRequest::default()))
        .await
        .expect("recommendation trains");
    eprintln!("recommendation trained in {:?}", t.elapsed());
    let t = Instant::now();
    let cinfo = train(m.churn.train(churn::TrainRequest::default()))
        .await
        .expect("churn trains");
    eprintln!("churn trained in {:?}", t.elapsed());
    let t = Instant::now();
    let kinfo = train(m.risk.train(risk::TrainRequest::default()))
        .await
        .expect("risk trains");
    eprintln!("risk trained in {:?}", t.elapsed());
    let versions = (
        rinfo.model_version,
        cinfo.model_version,
        kinfo.model_version,
    );

    let healthy = predict(&mut m, &probe, &[]).await.expect("all answer");
    assert_eq!(healthy, versions);

    // --- The feature store stops.
    fs.shutdown().await.unwrap();
    let down = [Code::Unavailable];
    let during = predict(&mut m, &probe, &down).await;
    eprintln!("all answered during the outage: {}", during.is_some());
    // Training needs the feature store: UNAVAILABLE, and the served models stay.
    for (what, r) in [
        (
            "recommendation Train",
            train(m.rec.train(recommendation::TrainRequest::default())).await,
        ),
        (
            "churn Train",
            train(m.churn.train(churn::TrainRequest::default())).await,
        ),
        (
            "risk Train",
            train(m.risk.train(risk::TrainRequest::default())).await,
        ),
    ] {
        let e = r.expect_err("cannot train without the feature store");
        eprintln!("{what} during the outage: {:?} {}", e.code(), e.message());
        assert_eq!(e.code(), Code::Unavailable, "{what}: {e}");
    }

    // --- Back on the same port and data; the model services are not restarted.
    let fs = feature_store(&fs_dir, port).await;
    let back = Instant::now();
    let recovered = loop {
        if let Some(v) = predict(&mut m, &probe, &down).await {
            break v;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "model services did not recover"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "every RPC answers again {:?} after the restart",
        back.elapsed()
    );
    assert_eq!(recovered, versions, "the served models survived");

    for h in m.handles {
        h.shutdown().await.unwrap();
    }
    fs.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrained_model_services_with_no_feature_store_answer_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let closed = format!("http://127.0.0.1:{}", free_port());
    let mut m = model_services(dir.path(), &closed).await;
    let probe = Probe {
        customers: vec!["c1".into()],
        sku: "A".into(),
        order: fpb::Order {
            order_id: "o1".into(),
            customer_id: "c1".into(),
            ts: Some(prost_types::Timestamp {
                seconds: 1_577_836_800,
                nanos: 0,
            }),
            lines: vec![fpb::OrderLine {
                sku: "A".into(),
                quantity: 1,
                unit_price: 10.0,
                promotion: false,
            }],
            currency: "EUR".into(),
            ..Default::default()
        },
    };
    let r = predict(
        &mut m,
        &probe,
        &[Code::Unavailable, Code::FailedPrecondition],
    )
    .await;
    assert!(r.is_none(), "untrained services cannot answer everything");
    for (what, r) in [
        (
            "recommendation Train",
            train(m.rec.train(recommendation::TrainRequest::default())).await,
        ),
        (
            "churn Train",
            train(m.churn.train(churn::TrainRequest::default())).await,
        ),
        (
            "risk Train",
            train(m.risk.train(risk::TrainRequest::default())).await,
        ),
    ] {
        let e = r.expect_err("cannot train without the feature store");
        assert_eq!(e.code(), Code::Unavailable, "{what}: {e}");
    }
    for h in m.handles {
        h.shutdown().await.unwrap();
    }
}
