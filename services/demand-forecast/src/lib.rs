//! The Augur DemandForecast service (`augur.forecast.v1.DemandForecast`).
//!
//! The server starts, reports health and serves reflection; its prediction RPCs answer
//! UNIMPLEMENTED until the model lands (issue #5).

pub mod datasets;
pub mod metrics;
pub mod model;
pub mod stats;

use std::future::Future;
use std::pin::Pin;

use augur_proto::forecast as pb;
use augur_proto::forecast::demand_forecast_server::{DemandForecast, DemandForecastServer};
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;
use tonic::{Request, Response, Status};

pub const DEFAULT_PORT: u16 = 50053;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "DemandForecast.{rpc} is not implemented yet: the model lands with issue #5"
    ))
}

#[derive(Debug, Default, Clone)]
pub struct Service;

#[tonic::async_trait]
impl DemandForecast for Service {
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn forecast(
        &self,
        _req: Request<pb::ForecastRequest>,
    ) -> Result<Response<pb::ForecastResponse>, Status> {
        Err(not_yet("forecast"))
    }
    async fn backtest(
        &self,
        _req: Request<pb::BacktestRequest>,
    ) -> Result<Response<pb::BacktestResponse>, Status> {
        Err(not_yet("backtest"))
    }
    async fn reorder_advice(
        &self,
        _req: Request<pb::ReorderAdviceRequest>,
    ) -> Result<Response<pb::ReorderAdviceResponse>, Status> {
        Err(not_yet("reorder_advice"))
    }
    async fn train(
        &self,
        _req: Request<pb::TrainRequest>,
    ) -> Result<Response<Self::TrainStream>, Status> {
        Err(not_yet("train"))
    }
    async fn get_model_info(
        &self,
        _req: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        Err(not_yet("get_model_info"))
    }
}

/// Default configuration (port 50053).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The server, ready to be served.
pub fn build(config: &Config) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = DemandForecastServer::new(Service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    GrpcServer::new("demand-forecast", config.server.clone()).add_service(svc)
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
