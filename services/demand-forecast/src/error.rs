//! The service's error type and its mapping to gRPC status codes.

use augur_runtime::{ApiError, FieldViolation};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    /// No model has been trained yet.
    #[error("no model trained yet: call Train")]
    NoModel,
    /// Another training is running.
    #[error("a training is already running")]
    Busy,
    /// The feature store cannot be reached.
    #[error("feature store unavailable: {0}")]
    Unavailable(String),
    /// A feature-store call failed (see [`from_feature_store`]).
    #[error("{0}")]
    FeatureStore(ApiError),
    /// A request-path feature-store call got no answer within the configured bound (a hung
    /// feature store); answered UNAVAILABLE, like a feature store that is down.
    #[error("feature store did not answer within {} ms", .0.as_millis())]
    FeatureStoreTimeout(std::time::Duration),
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, reason)])
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => ApiError::InvalidArgument(v),
            Error::NotFound(m) => ApiError::NotFound(m),
            e @ Error::NoModel => ApiError::FailedPrecondition(e.to_string()),
            Error::Busy => ApiError::Unavailable(String::new()),
            e @ (Error::Unavailable(_) | Error::FeatureStoreTimeout(_)) => {
                ApiError::Unavailable(e.to_string())
            }
            Error::FeatureStore(e) => e,
            Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            // ABORTED has no ApiError variant.
            e @ Error::Busy => tonic::Status::aborted(e.to_string()),
            e => ApiError::from(e).into(),
        }
    }
}

/// A feature-store call failed, classified by [`augur_runtime::error::from_dependency`]: NOT_FOUND
/// and INVALID_ARGUMENT are passed on, an outage is UNAVAILABLE, this service's own
/// misconfiguration (not on the allow list, bad credentials) FAILED_PRECONDITION.
pub fn from_feature_store(status: tonic::Status) -> Error {
    Error::FeatureStore(augur_runtime::error::from_feature_store(&status))
}
