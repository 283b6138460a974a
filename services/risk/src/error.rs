//! The crate's error type and its gRPC mapping.

use augur_runtime::ApiError;
use tonic::Status;

use crate::embed::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is invalid (field path, reason).
    #[error("{0}: {1}")]
    Invalid(String, String),
    #[error("{0}")]
    NotFound(String),
    /// No model (or no embedding model) to answer with.
    #[error("{0}")]
    NoModel(String),
    /// A feature-store call failed; classified by [`augur_runtime::error::from_dependency`] (an
    /// outage is UNAVAILABLE, a value it refused is INVALID_ARGUMENT, ...).
    #[error("{0}")]
    FeatureStore(ApiError),
    /// A request-path feature-store call got no answer within the configured bound (a hung
    /// feature store); answered UNAVAILABLE, like a feature store that is down.
    #[error("feature store did not answer within {} ms", .0.as_millis())]
    FeatureStoreTimeout(std::time::Duration),
    #[error("another Train is running; try again when it has finished")]
    Busy,
    #[error("not enough data to train: {0}")]
    NotEnoughData(String),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Model(#[from] augur_model::ModelError),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("model file: {0}")]
    Json(#[from] serde_json::Error),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Invalid(field.into(), reason.into())
    }

    /// gRPC code number (for stream errors).
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::Busy => tonic::Code::Aborted,
            other => other.api().code(),
        }
    }

    fn api(&self) -> ApiError {
        match self {
            Error::Invalid(f, r) => ApiError::invalid(f.clone(), r.clone()),
            Error::NotFound(m) => ApiError::NotFound(m.clone()),
            Error::NoModel(m) => ApiError::FailedPrecondition(m.clone()),
            Error::FeatureStore(e) => e.clone(),
            Error::FeatureStoreTimeout(_) => ApiError::Unavailable(self.to_string()),
            Error::Busy => ApiError::FailedPrecondition(self.to_string()),
            Error::NotEnoughData(m) => {
                ApiError::FailedPrecondition(format!("not enough data to train: {m}"))
            }
            Error::Embed(EmbedError::Missing(_)) => ApiError::FailedPrecondition(self.to_string()),
            Error::Embed(_)
            | Error::Model(_)
            | Error::Tensor(_)
            | Error::Json(_)
            | Error::Internal(_) => ApiError::Internal(self.to_string()),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Busy => Status::aborted(e.to_string()),
            other => other.api().into(),
        }
    }
}
