//! The Augur feature store (`augur.featurestore.v1.FeatureStore`).
//!
//! Events come in through `Ingest` / `IngestStream`, are validated ([`model`]), deduplicated and
//! stored through sea-orm ([`storage`]: SQLite embedded, PostgreSQL in production), and applied
//! to the in-memory online state ([`online`], [`features`]). Historical reads rebuild state from
//! stored events at each `as_of` ([`historical`]); demand series aggregate order lines
//! ([`series`]). [`service`] is the thin tonic layer; [`app`] the domain API.

pub mod app;
pub mod config;
pub mod error;
pub mod features;
pub mod historical;
pub mod model;
pub mod online;
pub mod profile;
pub mod reads;
pub mod series;
pub mod service;
pub mod storage;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use augur_proto::featurestore::feature_store_server::FeatureStoreServer;
use augur_runtime::GrpcServer;

pub use app::App;
pub use config::Config;
pub use error::Error;

/// Full gRPC path of the client-streaming import, exempt from the unary timeout.
pub const INGEST_STREAM_PATH: &str = "/augur.featurestore.v1.FeatureStore/IngestStream";

/// Opens storage, rebuilds the online state, and returns the server ready to be served, plus
/// the app (for background work and tests).
pub async fn build(config: &Config) -> Result<(GrpcServer, Arc<App>), Error> {
    let app = App::open(config).await?;
    let max = config.server.max_message_bytes;
    let svc = FeatureStoreServer::new(service::FeatureStoreService::new(app.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let server = GrpcServer::new("feature-store", config.server.clone())
        .add_service(svc)
        .without_timeout(INGEST_STREAM_PATH);
    Ok((server, app))
}

/// Runs the feature store until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (server, app) = build(&config).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    if app.follows() {
        let mut rx = stop_rx.clone();
        tokio::spawn(app.clone().follow_loop(
            Duration::from_millis(config.follow_interval_ms),
            async move {
                let _ = rx.wait_for(|v| *v).await;
            },
        ));
    }
    let res = server.serve(shutdown).await;
    let _ = stop_tx.send(true);
    res?;
    Ok(())
}
