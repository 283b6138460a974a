//! The Augur Recommendation service (`augur.recommendation.v1.Recommendation`).
//!
//! The server starts, reports health and serves reflection; its prediction RPCs answer
//! UNIMPLEMENTED until the model lands (issue #3).

use std::future::Future;
use std::pin::Pin;

use augur_proto::recommendation as pb;
use augur_proto::recommendation::recommendation_server::{Recommendation, RecommendationServer};
use augur_runtime::GrpcServer;
pub use augur_runtime::config::ModelServiceConfig as Config;
use tonic::{Request, Response, Status};

pub const DEFAULT_PORT: u16 = 50052;

type BoxStream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

fn not_yet(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Recommendation.{rpc} is not implemented yet: the model lands with issue #3"
    ))
}

#[derive(Debug, Default, Clone)]
pub struct Service;

#[tonic::async_trait]
impl Recommendation for Service {
    type TrainStream = BoxStream<augur_proto::common::TrainProgress>;

    async fn recommend(
        &self,
        _req: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        Err(not_yet("recommend"))
    }
    async fn similar_items(
        &self,
        _req: Request<pb::SimilarItemsRequest>,
    ) -> Result<Response<pb::SimilarItemsResponse>, Status> {
        Err(not_yet("similar_items"))
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

/// Default configuration (port 50052).
pub fn default_config() -> Config {
    Config::with_port(DEFAULT_PORT)
}

/// The server, ready to be served.
pub fn build(config: &Config) -> GrpcServer {
    let max = config.server.max_message_bytes;
    let svc = RecommendationServer::new(Service)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    GrpcServer::new("recommendation", config.server.clone()).add_service(svc)
}

/// Runs the service until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(&config).serve(shutdown).await?;
    Ok(())
}
