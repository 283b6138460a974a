//! The Augur Churn service (`augur.churn.v1.Churn`): who is about to stop buying, how sure the
//! model is, and why.
//!
//! - [`btyd`]: BG/NBD and Pareto/NBD fitted by maximum likelihood (P(alive), expected purchases and
//!   P(no purchase) for any horizon).
//! - [`features`]: feature-store rows to standardised input columns (plus the BTYD outputs).
//! - [`nam`]: the candle neural additive model whose per-feature contributions are exact.
//! - [`train`]: past-only training examples from point-in-time features, model selection and
//!   calibration on held-out customers.
//! - [`model`]: the served model and one prediction; [`service`]: the thin tonic layer.

pub mod btyd;
pub mod error;
pub mod features;
pub mod fs;
pub mod model;
pub mod nam;
pub mod service;
pub mod train;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use augur_model::{ArtifactStore, ReloadWatcher};
use augur_proto::churn::churn_server::ChurnServer;
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;

pub use error::Error;
pub use model::ChurnModel;
pub use service::{Service, State};

pub const DEFAULT_PORT: u16 = 50054;

/// Default configuration (port 50054).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The newest saved model, if any (an unreadable one is logged and skipped).
pub fn load_latest(store: &ArtifactStore) -> Option<ChurnModel> {
    let loaded = store
        .latest()
        .map_err(Error::from)
        .and_then(|a| a.map(|a| ChurnModel::from_artifact(&a)).transpose());
    match loaded {
        Ok(Some(m)) => {
            tracing::info!(version = %m.meta.version, "churn model loaded");
            Some(m)
        }
        Ok(None) => {
            tracing::info!("no churn model yet: call Train");
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "saved churn model unreadable; serving none until Train");
            None
        }
    }
}

/// The service state: the newest saved model loaded (if any) and a lazy feature-store channel.
pub fn state(config: &Config) -> anyhow::Result<Arc<State>> {
    let channel = augur_runtime::client::service_channel(
        &config.feature_store_url,
        Duration::from_secs(120).max(config.server.request_timeout()),
        &config.server.consul,
        &config.client,
    )?;
    let store = ArtifactStore::new(&config.data_dir, model::MODEL_NAME);
    let loaded = load_latest(&store);
    Ok(Arc::new(State::new(
        loaded,
        fs::FeatureStore::new(channel)
            .with_call_timeout(config.feature_store_timeout())
            .with_idle_timeout(config.training_read_idle_timeout()),
        store,
    )))
}

/// The server, ready to be served. A feature-store target that cannot be turned into a channel
/// (validated configs never have one) is logged, and calls then answer UNAVAILABLE.
pub fn build(config: &Config) -> GrpcServer {
    let state = state(config).unwrap_or_else(|e| {
        tracing::error!(error = %e, "feature store channel");
        let channel =
            tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect_lazy();
        let store = ArtifactStore::new(&config.data_dir, model::MODEL_NAME);
        Arc::new(State::new(
            load_latest(&store),
            fs::FeatureStore::new(augur_runtime::client::intercepted(channel))
                .with_call_timeout(config.feature_store_timeout())
                .with_idle_timeout(config.training_read_idle_timeout()),
            store,
        ))
    });
    build_with(config, state)
}

/// The server over an existing state; unless `model_reload_interval_ms` is 0 it also watches the
/// model store for versions other replicas trained.
pub fn build_with(config: &Config, state: Arc<State>) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = ChurnServer::new(Service {
        state: state.clone(),
    })
    .max_decoding_message_size(max)
    .max_encoding_message_size(max);
    let server = GrpcServer::new("churn", config.server.clone())
        .add_service(svc)
        .without_timeout(TRAIN_PATH);
    match config.model_reload_interval() {
        Some(every) => {
            let stopping = server.stopping();
            server.with_background(reload_watcher(state).run(every, stopping))
        }
        None => server,
    }
}

/// Loads versions of the shared model store newer than the served one and serves them as
/// `Train` does ([`State::serve`]: the drift monitor gets the model's feature reference).
pub fn reload_watcher(state: Arc<State>) -> ReloadWatcher<ChurnModel> {
    let served = state.clone();
    ReloadWatcher::new(
        state.store.clone(),
        move || served.slot.get().map(|m| m.meta.version.clone()),
        |store: &ArtifactStore, version: &str| {
            ChurnModel::from_artifact(&store.load(version).map_err(Error::from)?)
        },
        move |model| state.serve(model),
    )
}

/// Full gRPC path of the server-streaming Train, exempt from the unary timeout.
pub const TRAIN_PATH: &str = "/augur.churn.v1.Churn/Train";

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
