//! The Augur Risk service (`augur.risk.v1.Risk`): order fraud scores with reasons, review spam
//! scores from all-MiniLM-L6-v2 embeddings and behaviour signals, unsupervised anomaly
//! scores, training from the feature store or from data in the request.
//!
//! Modules: [`orders`] and [`reviews`] (features, rules, models), [`tabular`] (encoding
//! pipeline, logistic regression / boosted trees / isolation forest), [`linear`], [`text`]
//! (TF-IDF, promotional signals), [`embed`] (MiniLM) over [`bert`] (the encoder), [`fs`] (feature-store reads), [`app`]
//! (serving state, training, persistence), [`service`] (the tonic handlers).

pub mod app;
pub mod bert;
pub mod embed;
pub mod error;
pub mod fs;
pub mod linear;
pub mod orders;
pub mod reviews;
pub mod service;
pub mod tabular;
pub mod text;

use std::future::Future;
use std::sync::Arc;

use augur_proto::risk::risk_server::RiskServer;
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;

pub use error::Error;
pub use service::Service;

pub const DEFAULT_PORT: u16 = 50055;

/// Default configuration (port 50055).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// Opens the service state: loads saved models and MiniLM, connects (lazily) to the feature store.
pub fn open(config: &Config) -> anyhow::Result<Arc<app::App>> {
    let channel = augur_runtime::client::service_channel(
        &config.feature_store_url,
        config.server.request_timeout(),
        &config.server.consul,
        &config.client,
    )?;
    let fs = fs::FeatureStore::new(channel)
        .with_call_timeout(config.feature_store_timeout())
        .with_idle_timeout(config.training_read_idle_timeout());
    Ok(Arc::new(app::App::open(&config.data_dir, fs)?))
}

/// The server, ready to be served; fails when a saved model cannot be read.
pub fn try_build(config: &Config) -> anyhow::Result<GrpcServer> {
    let app = open(config)?;
    Ok(build_with(config, app))
}

/// The server, ready to be served. When the saved models cannot be read the error is logged and
/// the service starts without them (its RPCs answer FAILED_PRECONDITION until Train).
pub fn build(config: &Config) -> GrpcServer {
    match try_build(config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "risk service starts without its saved models");
            let fallback = || {
                augur_runtime::client::intercepted(
                    tonic::transport::Endpoint::from_static("http://127.0.0.1:50051")
                        .connect_lazy(),
                )
            };
            let channel = augur_runtime::client::service_channel(
                &config.feature_store_url,
                config.server.request_timeout(),
                &config.server.consul,
                &config.client,
            )
            .unwrap_or_else(|_| fallback());
            let fs = fs::FeatureStore::new(channel)
                .with_call_timeout(config.feature_store_timeout())
                .with_idle_timeout(config.training_read_idle_timeout());
            let app = app::App::empty(&config.data_dir, fs);
            build_with(config, Arc::new(app))
        }
    }
}

/// The server over an opened state; unless `model_reload_interval_ms` is 0 it also watches the
/// model stores for order and review models other replicas trained.
pub fn build_with(config: &Config, app: Arc<app::App>) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = RiskServer::new(Service { app: app.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let mut server = GrpcServer::new("risk", config.server.clone())
        .add_service(svc)
        .without_timeout("/augur.risk.v1.Risk/Train")
        .without_timeout("/augur.risk.v1.Risk/ScoreOrderStream");
    if let Some(every) = config.model_reload_interval() {
        let (orders, reviews) = app.reload_watchers();
        let (stop_orders, stop_reviews) = (server.stopping(), server.stopping());
        server = server
            .with_background(orders.run(every, stop_orders))
            .with_background(reviews.run(every, stop_reviews));
    }
    server
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    try_build(&config)?.serve(shutdown).await?;
    Ok(())
}
