//! The Augur DemandForecast service (`augur.forecast.v1.DemandForecast`).
//!
//! Forecasts per SKU (from the feature store's series) or per series passed in: a combination of
//! statistical models (seasonal naive, Naive2, exponential smoothing with AICc selection, AutoETS
//! over the state-space ETS family, Theta, Croston/SBA for intermittent demand, a global GRU and
//! global boosted trees over lags and covariates) chosen on validation windows, a global covariate model for known future prices and promotions, and
//! empirical prediction intervals; rolling-origin backtests and reorder advice. See `model` for
//! the method and BENCHMARKS.md for the figures.

pub mod arima;
pub mod datasets;
pub mod error;
pub mod ets;
pub mod gbm;
pub mod gru;
pub mod metrics;
pub mod model;
pub mod service;
pub mod stats;
pub mod theta;

use std::future::Future;

use augur_proto::forecast::demand_forecast_server::DemandForecastServer;
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;
pub use service::Service;

pub const DEFAULT_PORT: u16 = 50053;

/// Default configuration (port 50053).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The server, ready to be served.
pub fn build(config: &Config) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let channel = augur_runtime::client::service_channel(
        &config.feature_store_url,
        std::time::Duration::from_secs(60),
        &config.server.consul,
        &config.client,
    )
    .map_err(|e| format!("feature store {:?}: {e}", config.feature_store_url));
    let service = Service::new(&config.data_dir, channel)
        .with_feature_store_timeout(config.feature_store_timeout())
        .with_training_read_idle_timeout(config.training_read_idle_timeout());
    let reload = config
        .model_reload_interval()
        .map(|every| (every, service.reload_watcher()));
    let svc = DemandForecastServer::new(service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let server = GrpcServer::new("demand-forecast", config.server.clone())
        .add_service(svc)
        .without_timeout("/augur.forecast.v1.DemandForecast/Train");
    // Unless `model_reload_interval_ms` is 0: models other replicas trained are picked up.
    match reload {
        Some((every, watcher)) => {
            let stopping = server.stopping();
            server.with_background(watcher.run(every, stopping))
        }
        None => server,
    }
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
