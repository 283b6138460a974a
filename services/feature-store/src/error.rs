//! The feature store's error type and its mapping to gRPC status codes.

use augur_runtime::{ApiError, FieldViolation};

use crate::storage::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
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
            Error::Store(StoreError::CustomerNotFound(id)) => {
                ApiError::NotFound(format!("customer {id:?} not found"))
            }
            Error::Store(StoreError::Unavailable(m)) => ApiError::Unavailable(format!(
                "storage unavailable, nothing in this request was stored; retry later ({m})"
            )),
            Error::Store(e @ (StoreError::Db(_) | StoreError::Corrupt { .. })) => {
                ApiError::Internal(e.to_string())
            }
            Error::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        ApiError::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn storage_errors_map_to_grpc_codes() {
        let s: tonic::Status = Error::Store(StoreError::Unavailable("refused".into())).into();
        assert_eq!(s.code(), Code::Unavailable);
        assert!(s.message().contains("nothing in this request was stored"));
        let s: tonic::Status = Error::Store(StoreError::Db("bad".into())).into();
        assert_eq!(s.code(), Code::Internal);
    }
}
