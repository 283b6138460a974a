//! Model services when the feature store is down.
//!
//! - Trained (small synthetic demo data; recommendation, churn and risk trained through `Train`),
//!   then the feature store stops: every prediction RPC answers within its deadline, either from
//!   request data / the service's cached state, or UNAVAILABLE (never INTERNAL, never a hang); a
//!   Train started meanwhile fails UNAVAILABLE and leaves the served model alone. The feature
//!   store comes back on the same port and data: every RPC works again without a restart.
//! - Never reachable (`feature_store_url` is a closed port), untrained: predictions answer
//!   FAILED_PRECONDITION or UNAVAILABLE within their deadline, Train answers UNAVAILABLE.
//! - Hung, not down (the feature store accepts connections but never answers: a stuck process or
//!   database), under trained model services (demand-forecast included): every prediction
//!   answers within [`HUNG_BOUND`], from cached state or UNAVAILABLE naming the feature-store
//!   timeout (`feature_store_timeout_ms`), never DEADLINE_EXCEEDED; the same for services that
//!   start against a feature store that never answered once. Once it answers again, every RPC
//!   works without a restart.
//! - Hung during training: a Train of each model service (demand-forecast included) whose
//!   feature-store read hears nothing for `training_read_idle_timeout_ms` fails UNAVAILABLE
//!   naming that setting, instead of waiting out the channel's long timeout; once the feature
//!   store answers again the same services train without a restart.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use augur_proto::featurestore as fpb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::{churn, forecast, recommendation, risk};
use augur_runtime::{Secret, ServerConfig, ServerHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::Code;

/// The model services' own request timeout is 10 s; every answer must come well before it.
const DEADLINE: Duration = Duration::from_secs(9);

/// While the feature store hangs, every prediction answers within this: the default
/// `feature_store_timeout_ms` (2 s) plus slack for a debug build on loaded cores.
const HUNG_BOUND: Duration = Duration::from_secs(4);

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
    model_services_with(dir, fs_url, |_, _| {}).await
}

/// A model service's test configuration: on 127.0.0.1:0, data in `dir`, the feature store at
/// `fs_url`, then `tweak(config, service name)`.
fn model_config(
    defaults: augur_runtime::config::ModelServiceConfig,
    who: &str,
    dir: &std::path::Path,
    fs_url: &str,
    tweak: &impl Fn(&mut augur_runtime::config::ModelServiceConfig, &str),
) -> augur_runtime::config::ModelServiceConfig {
    let mut c = defaults;
    c.server.listen = "127.0.0.1:0".parse().unwrap();
    c.data_dir = dir.to_path_buf();
    c.feature_store_url = fs_url.to_string();
    tweak(&mut c, who);
    c
}

/// [`model_services`] with each configuration adjusted by `tweak(config, service name)`.
async fn model_services_with(
    dir: &std::path::Path,
    fs_url: &str,
    tweak: impl Fn(&mut augur_runtime::config::ModelServiceConfig, &str),
) -> Models {
    let config = |defaults, who| model_config(defaults, who, dir, fs_url, &tweak);
    let rec = augur_recommendation::build(&config(
        augur_recommendation::default_config(),
        "recommendation",
    ))
    .spawn()
    .await
    .unwrap();
    let ch = augur_churn::build(&config(augur_churn::default_config(), "churn"))
        .spawn()
        .await
        .unwrap();
    let rk = augur_risk::build(&config(augur_risk::default_config(), "risk"))
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
    let probe = demo_shop(&fs_url).await;

    let mut m = model_services(&dir.path().join("models"), &fs_url).await;
    let versions = train_all(&mut m).await;

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

/// Ingests a small synthetic shop (customers, catalogue, orders, interactions, reviews) and
/// picks the probe's customers, product and order from it.
async fn demo_shop(fs_url: &str) -> Probe {
    let data = augur_demo::generate(&augur_demo::DemoConfig {
        customers: 300,
        products: 40,
        days: 400,
        ..augur_demo::DemoConfig::default()
    });
    let t = Instant::now();
    let mut fsc = FeatureStoreClient::connect(fs_url.to_string())
        .await
        .unwrap();
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
    Probe {
        customers,
        sku: sku.unwrap(),
        order: order.unwrap(),
    }
}

/// Trains recommendation, churn and risk from the feature store; their model versions.
async fn train_all(m: &mut Models) -> (String, String, String) {
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
    (
        rinfo.model_version,
        cinfo.model_version,
        kinfo.model_version,
    )
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

/// A TCP proxy in front of the feature store that can be made to hang: while hung it still
/// accepts connections and reads, but passes nothing on in either direction, on new and on
/// already open connections (a stuck process or database, as opposed to one that is down: the
/// model services' connections stay up and their calls get no answer). Bytes held while hung
/// are passed on once it resumes.
struct HangingProxy {
    url: String,
    hung: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl HangingProxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (hung, gate) = watch::channel(false);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let gate = gate.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, gate.clone()), pump(sr, cw, gate));
                });
            }
        });
        HangingProxy { url, hung, task }
    }

    fn hang(&self) {
        self.hung.send_replace(true);
    }

    fn resume(&self) {
        self.hung.send_replace(false);
    }
}

impl Drop for HangingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies `from` to `to`, holding every chunk read while the gate says hung.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut hung: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hung.wait_for(|h| !*h).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// A "feature store" that accepts connections and reads everything, but never writes a byte
/// (not even the HTTP/2 handshake): hung from the start.
async fn black_hole() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                while matches!(conn.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (url, task)
}

/// A demand-forecast service trained on inline monthly series (no feature store needed), whose
/// feature-store series requests go to `fs_url`.
async fn forecast_service(
    dir: &std::path::Path,
    fs_url: &str,
) -> (
    ServerHandle,
    forecast::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
) {
    forecast_service_with(dir, fs_url, |_, _| {}).await
}

/// [`forecast_service`] with its configuration adjusted by `tweak(config, "forecast")`.
async fn forecast_service_with(
    dir: &std::path::Path,
    fs_url: &str,
    tweak: impl Fn(&mut augur_runtime::config::ModelServiceConfig, &str),
) -> (
    ServerHandle,
    forecast::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
) {
    let c = model_config(
        augur_demand_forecast::default_config(),
        "forecast",
        dir,
        fs_url,
        &tweak,
    );
    let h = augur_demand_forecast::build(&c).spawn().await.unwrap();
    let client = forecast::demand_forecast_client::DemandForecastClient::connect(h.url())
        .await
        .unwrap();
    (h, client)
}

async fn train_forecast(
    c: &mut forecast::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
) -> String {
    let series = (0..4)
        .map(|k| forecast::InlineSeries {
            values: (0..36)
                .map(|t| 50.0 + k as f64 + 10.0 * ((t % 12) as f64).sin() + t as f64 * 0.5)
                .collect(),
            frequency: forecast::Frequency::Month as i32,
            ..Default::default()
        })
        .collect();
    let t = Instant::now();
    let info = train(
        c.train(forecast::TrainRequest {
            source: Some(forecast::train_request::Source::Inline(
                forecast::InlineSeriesSet { series },
            )),
            horizon: 6,
            hyperparameters: [
                ("gru".to_string(), "false".to_string()),
                ("grid".to_string(), "false".to_string()),
            ]
            .into(),
            ..Default::default()
        }),
    )
    .await
    .expect("demand-forecast trains on inline series");
    eprintln!("demand-forecast trained in {:?}", t.elapsed());
    info.model_version
}

/// A forecast of the probe's product from its feature-store history.
fn forecast_request(sku: &str) -> tonic::Request<forecast::ForecastRequest> {
    req(forecast::ForecastRequest {
        series: vec![forecast::SeriesInput {
            id: "probe".into(),
            source: Some(forecast::series_input::Source::FeatureStore(
                forecast::SeriesKey {
                    sku: sku.to_string(),
                    ..Default::default()
                },
            )),
            ..Default::default()
        }],
        // The inline training's horizon.
        horizon: 6,
        ..Default::default()
    })
}

/// An answer while the feature store hangs: within [`HUNG_BOUND`]; from the service's own state
/// (`serves`), or UNAVAILABLE saying the feature store did not answer in time.
fn prompt<T>(
    what: &str,
    took: Duration,
    r: Result<tonic::Response<T>, tonic::Status>,
    serves: bool,
) -> Option<T> {
    eprintln!(
        "{what} (feature store hung): {:?} after {took:?}",
        r.as_ref()
            .map(|_| "OK")
            .map_err(|e| (e.code(), e.message()))
    );
    assert!(
        took < HUNG_BOUND,
        "{what} took {took:?} against a hung feature store"
    );
    match r {
        Ok(r) => Some(r.into_inner()),
        Err(e) => {
            assert!(!serves, "{what} should answer from its own state: {e}");
            assert_eq!(e.code(), Code::Unavailable, "{what}: {e}");
            assert!(
                e.message().contains("feature store did not answer within"),
                "{what}: {e}"
            );
            None
        }
    }
}

/// Every prediction RPC while the feature store hangs: recommendation answers from its model
/// and cached catalogue; churn, risk and demand-forecast need the feature store and answer
/// UNAVAILABLE.
async fn hung_round(
    m: &mut Models,
    fc: &mut forecast::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
    p: &Probe,
) {
    let t = Instant::now();
    let r = m
        .rec
        .recommend(req(recommendation::RecommendRequest {
            customer_id: p.customers[0].clone(),
            k: 5,
            options: None,
        }))
        .await;
    if let Some(r) = prompt("Recommend", t.elapsed(), r, true) {
        eprintln!("  degraded={} strategy={}", r.degraded, r.strategy);
        assert!(!r.items.is_empty());
    }
    let t = Instant::now();
    let r = m
        .rec
        .similar_items(req(recommendation::SimilarItemsRequest {
            sku: p.sku.clone(),
            k: 5,
        }))
        .await;
    prompt("SimilarItems", t.elapsed(), r, true);

    let t = Instant::now();
    let r = m
        .churn
        .predict_churn(req(churn::PredictChurnRequest {
            customer_ids: p.customers.clone(),
            ..Default::default()
        }))
        .await;
    assert!(prompt("PredictChurn", t.elapsed(), r, false).is_none());
    let t = Instant::now();
    let r = m
        .churn
        .list_at_risk(req(churn::ListAtRiskRequest {
            limit: 5,
            ..Default::default()
        }))
        .await;
    assert!(prompt("ListAtRisk", t.elapsed(), r, false).is_none());

    let mut order = p.order.clone();
    order.order_id = format!("probe-{}", rand_suffix());
    let t = Instant::now();
    let r = m
        .risk
        .score_order(req(risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::Order(order)),
        }))
        .await;
    assert!(prompt("ScoreOrder(order)", t.elapsed(), r, false).is_none());
    let t = Instant::now();
    let r = m
        .risk
        .score_order(req(risk::ScoreOrderRequest {
            target: Some(risk::score_order_request::Target::OrderId(
                p.order.order_id.clone(),
            )),
        }))
        .await;
    assert!(prompt("ScoreOrder(order_id)", t.elapsed(), r, false).is_none());

    let t = Instant::now();
    let r = fc.forecast(forecast_request(&p.sku)).await;
    assert!(prompt("Forecast(feature_store)", t.elapsed(), r, false).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trained_model_services_answer_promptly_while_the_feature_store_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = feature_store(&dir.path().join("fs"), free_port()).await;
    let probe = demo_shop(&fs.url()).await;
    let proxy = HangingProxy::start(fs.addr()).await;

    let models = dir.path().join("models");
    let mut m = model_services(&models, &proxy.url).await;
    let versions = train_all(&mut m).await;
    let (fc_handle, mut fc) = forecast_service(&models, &proxy.url).await;
    let fc_version = train_forecast(&mut fc).await;

    assert_eq!(
        predict(&mut m, &probe, &[]).await.expect("all answer"),
        versions
    );
    let r = fc.forecast(forecast_request(&probe.sku)).await;
    assert!(
        r.is_ok() || matches!(&r, Err(e) if e.code() == Code::NotFound),
        "{r:?}"
    );

    // --- The feature store hangs: connections stay open, nothing comes back.
    proxy.hang();
    hung_round(&mut m, &mut fc, &probe).await;

    // Services started against a feature store that never answered once (the saved models
    // load from disk; no HTTP/2 handshake ever completes; the catalogue was never read).
    let (hole, hole_task) = black_hole().await;
    let mut fresh = model_services(&models, &hole).await;
    let (fresh_fc_handle, mut fresh_fc) = forecast_service(&models, &hole).await;
    hung_round(&mut fresh, &mut fresh_fc, &probe).await;
    for h in fresh.handles {
        h.shutdown().await.unwrap();
    }
    fresh_fc_handle.shutdown().await.unwrap();
    hole_task.abort();

    // --- It answers again: every RPC works without a restart, with the same models.
    proxy.resume();
    let back = Instant::now();
    let recovered = loop {
        if let Some(v) = predict(&mut m, &probe, &[Code::Unavailable]).await {
            break v;
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "model services did not recover"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!(
        "every RPC answers again {:?} after the feature store resumed",
        back.elapsed()
    );
    assert_eq!(recovered, versions, "the served models survived");
    let r = fc.forecast(forecast_request(&probe.sku)).await;
    match r {
        Ok(r) => assert_eq!(r.into_inner().model_version, fc_version),
        Err(e) => assert_eq!(e.code(), Code::NotFound, "{e}"),
    }

    for h in m.handles {
        h.shutdown().await.unwrap();
    }
    fc_handle.shutdown().await.unwrap();
    fs.shutdown().await.unwrap();
}

/// A feature store that refuses the model services (their principals are not on its allow
/// list): a misconfiguration that retrying cannot fix. The model services must not report it
/// as an outage (UNAVAILABLE invites callers to retry forever): they answer FAILED_PRECONDITION
/// saying the feature store refused them, without echoing any token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_services_refused_by_the_feature_store_do_not_report_an_outage() {
    let dir = tempfile::tempdir().unwrap();
    let token = |who: &str| Secret::new(format!("{who}-token-0123456789abcdef"));
    let mut server = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    server.auth.enabled = true;
    for who in ["admin", "churn", "risk", "recommendation", "forecast"] {
        server.auth.tokens.insert(who.into(), token(who));
    }
    server.auth.allow.insert("*".into(), vec!["admin".into()]);
    let config = augur_feature_store::Config {
        server,
        data_dir: dir.path().join("fs"),
        hash_key: Secret::new("test-hash-key-0123456789"),
        ..augur_feature_store::Config::default()
    };
    let (fs_server, _app) = augur_feature_store::build(&config).await.unwrap();
    let fs = fs_server.spawn().await.unwrap();

    // Each model service calls with its own principal's token.
    let as_itself = |c: &mut augur_runtime::config::ModelServiceConfig, who: &str| {
        c.client.token = token(who);
    };
    let models = dir.path().join("models");
    let mut m = model_services_with(&models, &fs.url(), as_itself).await;
    let (fc, mut fc_c) = forecast_service_with(&models, &fs.url(), as_itself).await;

    let refused = |what: &str, e: tonic::Status| {
        eprintln!("{what}: {:?} {}", e.code(), e.message());
        assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e}");
        assert!(
            e.message()
                .contains("feature store refused this service (PermissionDenied)"),
            "{what}: {e}"
        );
        assert!(!e.message().contains("-token-"), "{what}: {e}");
    };
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
        (
            "demand-forecast Train",
            train(fc_c.train(forecast::TrainRequest::default())).await,
        ),
    ] {
        refused(what, r.expect_err("the feature store refuses every read"));
    }
    for h in m.handles.into_iter().chain([fc, fs]) {
        h.shutdown().await.unwrap();
    }
}

/// The four Train RPCs against the feature store (demand-forecast from its series, without the
/// GRU and the grid to keep the debug build quick), each bounded by `limit`; their outcomes and
/// how long each took.
async fn train_four(
    m: &mut Models,
    fc: &mut forecast::demand_forecast_client::DemandForecastClient<tonic::transport::Channel>,
    limit: Duration,
) -> Vec<(&'static str, Duration, Result<String, tonic::Status>)> {
    async fn timed(
        limit: Duration,
        run: impl std::future::Future<Output = Result<augur_proto::common::ModelInfo, tonic::Status>>,
    ) -> (Duration, Result<String, tonic::Status>) {
        let t = Instant::now();
        let r = tokio::time::timeout(limit, run)
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("test gave up waiting")));
        (t.elapsed(), r.map(|i| i.model_version))
    }
    let quick: std::collections::BTreeMap<String, String> = [
        ("gru".to_string(), "false".to_string()),
        ("grid".to_string(), "false".to_string()),
    ]
    .into();
    let (a, b) = timed(
        limit,
        train(m.rec.train(recommendation::TrainRequest::default())),
    )
    .await;
    let (c, d) = timed(limit, train(m.churn.train(churn::TrainRequest::default()))).await;
    let (e, f) = timed(limit, train(m.risk.train(risk::TrainRequest::default()))).await;
    let (g, h) = timed(
        limit,
        train(fc.train(forecast::TrainRequest {
            hyperparameters: quick,
            ..Default::default()
        })),
    )
    .await;
    vec![
        ("recommendation Train", a, b),
        ("churn Train", c, d),
        ("risk Train", e, f),
        ("demand-forecast Train", g, h),
    ]
}

/// A feature store that hangs while the model services train (their connections open, no
/// answer on them): each Train fails UNAVAILABLE after `training_read_idle_timeout_ms` of
/// silence, naming it; it used to wait out the channel's timeout (up to 120 s, and a stalled
/// scan for ever). Once the feature store answers again, the same processes train.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trains_fail_promptly_while_the_feature_store_hangs_and_work_once_it_answers() {
    let dir = tempfile::tempdir().unwrap();
    let fs = feature_store(&dir.path().join("fs"), free_port()).await;
    demo_shop(&fs.url()).await;
    let proxy = HangingProxy::start(fs.addr()).await;
    let idle = Duration::from_millis(1_500);
    let short_idle = |c: &mut augur_runtime::config::ModelServiceConfig, _: &str| {
        c.training_read_idle_timeout_ms = idle.as_millis() as u64;
    };
    let models = dir.path().join("models");
    let mut m = model_services_with(&models, &proxy.url, short_idle).await;
    let (fc_handle, mut fc) = forecast_service_with(&models, &proxy.url, short_idle).await;

    // Connections up: every Train works (and its reads, slower than nothing, are not cut).
    for (what, took, r) in train_four(&mut m, &mut fc, Duration::from_secs(300)).await {
        eprintln!(
            "{what} (feature store answering): {:?} in {took:?}",
            r.as_ref().map_err(|e| e.message().to_string())
        );
        r.unwrap_or_else(|e| panic!("{what}: {e}"));
    }

    proxy.hang();
    for (what, took, r) in train_four(&mut m, &mut fc, Duration::from_secs(60)).await {
        eprintln!(
            "{what} (feature store hung): {:?} after {took:?}",
            r.as_ref().map_err(|e| (e.code(), e.message().to_string()))
        );
        let e = r.expect_err("a Train cannot read from a hung feature store");
        assert_eq!(e.code(), Code::Unavailable, "{what}: {e}");
        assert!(
            e.message().contains("training_read_idle_timeout_ms"),
            "{what}: {e}"
        );
        // The idle timeout plus slack for a debug build on loaded cores.
        assert!(
            took >= idle && took < idle + Duration::from_secs(6),
            "{what} took {took:?} against a hung feature store"
        );
    }

    proxy.resume();
    for (what, took, r) in train_four(&mut m, &mut fc, Duration::from_secs(300)).await {
        eprintln!(
            "{what} (feature store back): {:?} in {took:?}",
            r.as_ref().map_err(|e| e.message().to_string())
        );
        r.unwrap_or_else(|e| panic!("{what} after the feature store came back: {e}"));
    }

    for h in m.handles.into_iter().chain([fc_handle, fs]) {
        h.shutdown().await.unwrap();
    }
}
