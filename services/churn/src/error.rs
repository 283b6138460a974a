//! The churn service's errors and their gRPC codes.

use augur_runtime::ApiError;
use augur_runtime::error::FieldViolation;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request field is wrong; each violation names its field.
    #[error("invalid argument: {0:?}")]
    Invalid(Vec<FieldViolation>),
    #[error("no model trained yet: call Train")]
    NoModel,
    /// A feature-store call failed; classified by [`augur_runtime::error::from_dependency`] (an
    /// outage is UNAVAILABLE, a value it refused is INVALID_ARGUMENT, ...).
    #[error("{0}")]
    FeatureStore(ApiError),
    /// A request-path feature-store call got no answer within the configured bound (a hung
    /// feature store); answered UNAVAILABLE, like a feature store that is down.
    #[error("feature store did not answer within {} ms", .0.as_millis())]
    FeatureStoreTimeout(std::time::Duration),
    #[error("another Train is running")]
    Busy,
    #[error("model artefact: {0}")]
    Model(#[from] augur_model::ModelError),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Error::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(v) => ApiError::InvalidArgument(v),
            Error::NoModel => ApiError::FailedPrecondition(e.to_string()),
            Error::FeatureStore(e) => e,
            Error::FeatureStoreTimeout(_) => ApiError::Unavailable(e.to_string()),
            Error::Busy => ApiError::Unavailable(e.to_string()),
            Error::Model(_) | Error::Tensor(_) | Error::Internal(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        if let Error::Busy = e {
            return Status::aborted(e.to_string());
        }
        ApiError::from(e).into()
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
