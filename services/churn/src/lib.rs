//! The Augur Churn service (`augur.churn.v1.Churn`).
//!
//! The server starts, reports health and serves reflection; its prediction RPCs answer
//! UNIMPLEMENTED until the model lands (issue #4).

use std::future::Future;
use std::pin::Pin;

use augur_proto::churn as pb;
use augur_proto::churn::churn_server::{Churn, ChurnServer};
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;
use tonic::{Request, Response, Status};

pub const DEFAULT_PORT: u16 = 50054;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Churn.{rpc} is not implemented yet: the model lands with issue #4"
    ))
}

#[derive(Debug, Default, Clone)]
pub struct Service;

#[tonic::async_trait]
impl Churn for Service {
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn predict_churn(
        &self,
        _req: Request<pb::PredictChurnRequest>,
    ) -> Result<Response<pb::PredictChurnResponse>, Status> {
        Err(not_yet("predict_churn"))
    }
    async fn list_at_risk(
        &self,
        _req: Request<pb::ListAtRiskRequest>,
    ) -> Result<Response<pb::ListAtRiskResponse>, Status> {
        Err(not_yet("list_at_risk"))
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

/// Default configuration (port 50054).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The server, ready to be served.
pub fn build(config: &Config) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = ChurnServer::new(Service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    GrpcServer::new("churn", config.server.clone()).add_service(svc)
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
