//! The Augur Risk service (`augur.risk.v1.Risk`).
//!
//! The server starts, reports health and serves reflection; its prediction RPCs answer
//! UNIMPLEMENTED until the model lands (issue #6).

use std::future::Future;
use std::pin::Pin;

use augur_proto::risk as pb;
use augur_proto::risk::risk_server::{Risk, RiskServer};
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;
use tonic::{Request, Response, Status};

pub const DEFAULT_PORT: u16 = 50055;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Risk.{rpc} is not implemented yet: the model lands with issue #6"
    ))
}

#[derive(Debug, Default, Clone)]
pub struct Service;

#[tonic::async_trait]
impl Risk for Service {
    type ScoreOrderStreamStream = BoxStream<pb::ScoreOrderStreamResponse>;
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn score_order(
        &self,
        _req: Request<pb::ScoreOrderRequest>,
    ) -> Result<Response<pb::ScoreOrderResponse>, Status> {
        Err(not_yet("score_order"))
    }
    async fn score_order_stream(
        &self,
        _req: Request<tonic::Streaming<pb::ScoreOrderRequest>>,
    ) -> Result<Response<Self::ScoreOrderStreamStream>, Status> {
        Err(not_yet("score_order_stream"))
    }
    async fn score_review(
        &self,
        _req: Request<pb::ScoreReviewRequest>,
    ) -> Result<Response<pb::ScoreReviewResponse>, Status> {
        Err(not_yet("score_review"))
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

/// Default configuration (port 50055).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The server, ready to be served.
pub fn build(config: &Config) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = RiskServer::new(Service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    GrpcServer::new("risk", config.server.clone()).add_service(svc)
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
