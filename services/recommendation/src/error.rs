//! The service's error type and its mapping to gRPC status codes.

use augur_runtime::{ApiError, FieldViolation};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("no model trained yet: call Train")]
    NoModel,
    #[error("{0}")]
    NotFound(String),
    /// A feature-store call failed, classified by [`augur_runtime::error::from_dependency`]
    /// (an outage is UNAVAILABLE, a value it refused INVALID_ARGUMENT, ...).
    #[error("{0}")]
    FeatureStore(ApiError),
    /// A feature-store call got no answer within the configured bound (a hung feature store).
    #[error("feature store did not answer within {} ms", .0.as_millis())]
    FeatureStoreTimeout(std::time::Duration),
    #[error("another Train is running")]
    Busy,
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, reason)])
    }
}

impl From<augur_runtime::error::Violations> for Error {
    fn from(v: augur_runtime::error::Violations) -> Self {
        match v.into_result() {
            Err(ApiError::InvalidArgument(v)) => Error::InvalidArgument(v),
            _ => Error::Internal("empty violations".into()),
        }
    }
}

impl Error {
    /// A failed feature-store call.
    pub fn feature_store(status: tonic::Status) -> Self {
        Error::FeatureStore(augur_runtime::error::from_feature_store(&status))
    }
}

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<augur_model::ModelError> for Error {
    fn from(e: augur_model::ModelError) -> Self {
        Error::Internal(e.to_string())
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidArgument(v) => ApiError::InvalidArgument(v),
            e @ Error::NoModel => ApiError::FailedPrecondition(e.to_string()),
            Error::NotFound(m) => ApiError::NotFound(m),
            Error::FeatureStore(e) => e,
            e @ Error::FeatureStoreTimeout(_) => ApiError::Unavailable(e.to_string()),
            Error::Busy => ApiError::Internal("busy".into()),
            Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Busy => tonic::Status::aborted("another Train is running; try again later"),
            other => ApiError::from(other).into(),
        }
    }
}
