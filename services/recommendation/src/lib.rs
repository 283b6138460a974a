//! The Augur Recommendation service (`augur.recommendation.v1.Recommendation`).
//!
//! - [`data`], [`eval`]: interactions, the chronological split and the ranking metrics.
//! - [`models`], [`als`], [`neural`], [`linalg`]: popularity, item-kNN, EASE, transitions, ALS
//!   (benchmark baseline) and the candle sequential model.
//! - [`train`], [`recommender`]: choosing the blend on validation, the served model and its
//!   safetensors round trip.
//! - [`serve`], [`catalog`], [`service`]: business re-ranking, the cached product catalogue and
//!   the thin tonic handlers.

pub mod als;
pub mod catalog;
pub mod data;
pub mod error;
pub mod eval;
pub mod linalg;
pub mod models;
pub mod movielens;
pub mod neural;
pub mod recommender;
pub mod serve;
pub mod service;
pub mod train;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use augur_model::{ArtifactStore, ReloadWatcher};
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::recommendation::recommendation_server::RecommendationServer;
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;

pub use service::{App, Service};

pub const DEFAULT_PORT: u16 = 50052;
/// Full path of the Train RPC (exempt from the request timeout).
pub const TRAIN_PATH: &str = "/augur.recommendation.v1.Recommendation/Train";

/// Default configuration (port 50052).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The service state: the newest saved model (if any) and a lazy feature-store client.
pub fn app(config: &Config) -> anyhow::Result<Arc<App>> {
    // http(s)://, dns:// (headless Service) or consul:// targets; [client] TLS and token.
    let channel = augur_runtime::client::service_channel(
        &config.feature_store_url,
        Duration::from_secs(120).max(config.server.request_timeout()),
        &config.server.consul,
        &config.client,
    )?;
    let client =
        FeatureStoreClient::new(channel).max_decoding_message_size(config.server.max_message_bytes);
    let store = ArtifactStore::new(&config.data_dir, recommender::MODEL_NAME);
    Ok(Arc::new(
        App::new(store, client)
            .with_feature_store_timeout(config.feature_store_timeout())
            .with_training_read_idle_timeout(config.training_read_idle_timeout()),
    ))
}

/// The server around an existing state; unless `model_reload_interval_ms` is 0 it also watches
/// the model store for versions other replicas trained.
pub fn build_with(config: &Config, app: Arc<App>) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = RecommendationServer::new(Service { app: app.clone() })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let server = GrpcServer::new("recommendation", config.server.clone())
        .add_service(svc)
        .without_timeout(TRAIN_PATH);
    match config.model_reload_interval() {
        Some(every) => {
            let stopping = server.stopping();
            server.with_background(reload_watcher(app).run(every, stopping))
        }
        None => server,
    }
}

/// Loads versions of the shared model store newer than the served one and swaps them in, as
/// `Train` does (the catalogue cache refreshes on its own schedule).
pub fn reload_watcher(app: Arc<App>) -> ReloadWatcher<recommender::Recommender> {
    let served = app.clone();
    ReloadWatcher::new(
        app.store.clone(),
        move || served.slot.get().map(|m| m.meta.version.clone()),
        |store: &ArtifactStore, version: &str| {
            let artifact = store.load(version).map_err(|e| e.to_string())?;
            recommender::Recommender::from_artifact(&artifact)
        },
        move |model| {
            app.slot.swap(model);
        },
    )
}

/// The server, ready to be served. A feature-store URL that does not parse leaves the service
/// without catalogue and feature-store training (logged); inline training still works.
pub fn build(config: &Config) -> GrpcServer {
    let app = match app(config) {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "feature store client could not be set up");
            let store = ArtifactStore::new(&config.data_dir, recommender::MODEL_NAME);
            let channel =
                tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
            Arc::new(App::new(
                store,
                FeatureStoreClient::new(augur_runtime::client::intercepted(channel)),
            ))
        }
    };
    build_with(config, app)
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = app(&config)?;
    build_with(&config, app).serve(shutdown).await?;
    Ok(())
}
