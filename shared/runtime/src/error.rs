//! The shared vocabulary for gRPC errors.
//!
//! Each service crate has its own `thiserror` enum for its domain; it converts into [`ApiError`],
//! which is the one place that decides the gRPC code and attaches field violations
//! (`google.rpc.BadRequest`) so that a client sees which field was wrong.

use std::fmt;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// A problem with one field of a request. `field` is a path such as
/// `events[3].order.lines[0].quantity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

impl fmt::Display for FieldViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.description)
    }
}

/// An error as a client sees it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; at least one violation names the field.
    #[error("{}", describe_violations(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Overloaded or over a quota.
    #[error("{0}")]
    ResourceExhausted(String),
    /// A dependency (database, another service) cannot be reached; retrying later may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(String),
    /// A bug or an unexpected state; the message is logged, the client sees a generic text.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Longest status message and longest field path / description sent back. They travel in HTTP/2
/// headers (`grpc-message`, `grpc-status-details-bin`), so an echoed hostile input (a 10 MB id
/// or hyper-parameter name) would overflow the client's header limit and arrive as a protocol
/// error instead of the status.
const MAX_MESSAGE: usize = 1024;
const MAX_FIELD: usize = 256;

/// `s` cut to at most `max` bytes (at a char boundary), noting how much was cut.
fn clip(mut s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let total = s.len();
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(&format!("… ({total} bytes)"));
    s
}

fn describe_violations(v: &[FieldViolation]) -> String {
    match v {
        [] => "invalid argument".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more field violations)", rest.len()),
    }
}

impl ApiError {
    /// One invalid field.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::NotFound(_) => Code::NotFound,
            Self::AlreadyExists(_) => Code::AlreadyExists,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::ResourceExhausted(_) => Code::ResourceExhausted,
            Self::Unavailable(_) => Code::Unavailable,
            Self::DeadlineExceeded(_) => Code::DeadlineExceeded,
            Self::Unimplemented(_) => Code::Unimplemented,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::InvalidArgument(violations) => {
                let violations: Vec<FieldViolation> = violations
                    .into_iter()
                    .map(|v| FieldViolation {
                        field: clip(v.field, MAX_FIELD),
                        description: clip(v.description, MAX_FIELD),
                    })
                    .collect();
                let message = clip(describe_violations(&violations), MAX_MESSAGE);
                let details = ErrorDetails::with_bad_request(
                    violations
                        .into_iter()
                        .map(|v| tonic_types::FieldViolation::new(v.field, v.description))
                        .collect::<Vec<_>>(),
                );
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error; see the server log")
            }
            other => Status::new(other.code(), clip(other.to_string(), MAX_MESSAGE)),
        }
    }
}

/// The longest entity id (customer, SKU, order, review, device) any Augur service accepts, in
/// bytes. One limit for the platform, so that an id the feature store accepted is never refused by
/// a model service (or the other way round).
pub const MAX_ID_BYTES: usize = 128;

/// What a service answers when a call it made to another service (`dependency`, e.g.
/// `"feature store"`) failed with `status`. Only outages become UNAVAILABLE (the caller may retry):
/// - INVALID_ARGUMENT / OUT_OF_RANGE: the dependency refused a value that came from the caller's
///   request, so the caller is told INVALID_ARGUMENT, with the dependency's field violations
///   under a field named after the dependency (its field paths are not the caller's);
/// - NOT_FOUND and FAILED_PRECONDITION are passed on;
/// - PERMISSION_DENIED, UNAUTHENTICATED, UNIMPLEMENTED: this service is misconfigured (credentials,
///   allow list, version skew), which retrying cannot fix: FAILED_PRECONDITION saying so, for the
///   operator (also logged as a warning; the dependency's message never carries a token);
/// - anything else (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED from its load shedding,
///   CANCELLED, UNKNOWN, INTERNAL, ...): UNAVAILABLE `"<dependency> unavailable: <code>: <message>"`.
pub fn from_dependency(dependency: &str, status: &Status) -> ApiError {
    let field = dependency.replace(' ', "_");
    match status.code() {
        Code::InvalidArgument | Code::OutOfRange => {
            let details = status.get_error_details();
            let violations: Vec<FieldViolation> = details
                .bad_request()
                .map(|b| {
                    b.field_violations
                        .iter()
                        .map(|v| {
                            FieldViolation::new(
                                field.clone(),
                                format!("{dependency} refused {}: {}", v.field, v.description),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            if violations.is_empty() {
                ApiError::invalid(field, format!("{dependency} refused: {}", status.message()))
            } else {
                ApiError::InvalidArgument(violations)
            }
        }
        Code::NotFound => ApiError::NotFound(status.message().to_string()),
        Code::FailedPrecondition => {
            ApiError::FailedPrecondition(format!("{dependency}: {}", status.message()))
        }
        code @ (Code::PermissionDenied | Code::Unauthenticated | Code::Unimplemented) => {
            let message = format!(
                "{dependency} refused this service ({code:?}): {}; check this service's [client] \
                 credentials, the {dependency}'s allow list and both versions",
                status.message()
            );
            tracing::warn!(%message, "misconfigured dependency");
            ApiError::FailedPrecondition(message)
        }
        code => ApiError::Unavailable(format!(
            "{dependency} unavailable: {code:?}: {}",
            status.message()
        )),
    }
}

/// [`from_dependency`] for the feature store, the dependency of every model service.
pub fn from_feature_store(status: &Status) -> ApiError {
    from_dependency("feature store", status)
}

/// Collects field violations while a request is validated, so that a client learns about every
/// bad field at once.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `Ok(())` when nothing was added, else INVALID_ARGUMENT with every violation.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::InvalidArgument(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_hostile_input_is_clipped() {
        let huge = "é".repeat(5_000_000);
        let status: Status =
            ApiError::invalid(format!("hyperparameters[{huge}]"), format!("bad {huge}")).into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().len() < 2 * MAX_MESSAGE);
        assert!(status.message().starts_with("hyperparameters["));
        assert!(status.message().contains("bytes)"));
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert!(bad.field_violations[0].field.len() < 2 * MAX_FIELD);
        let status: Status = ApiError::NotFound(format!("customer {huge:?} not found")).into();
        assert_eq!(status.code(), Code::NotFound);
        assert!(status.message().len() < 2 * MAX_MESSAGE);
        let short: Status = ApiError::invalid("k", "must be 1 to 500").into();
        assert_eq!(short.message(), "k: must be 1 to 500");
    }

    #[test]
    fn invalid_argument_carries_field_violations() {
        let mut v = Violations::new();
        v.add("k", "must be between 1 and 1000, got 0");
        v.add("filters.min_price", "must be finite");
        let status: Status = v.into_result().unwrap_err().into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().starts_with("k: must be between"));
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request details");
        assert_eq!(bad.field_violations.len(), 2);
        assert_eq!(bad.field_violations[1].field, "filters.min_price");
    }

    #[test]
    fn dependency_errors_keep_the_callers_mistakes_apart_from_outages() {
        // The feature store refused a value with field violations: the caller hears
        // INVALID_ARGUMENT naming the dependency and what it refused.
        let refused: Status = ApiError::invalid("as_of", "before 1970").into();
        let e = from_dependency("feature store", &refused);
        assert_eq!(e.code(), Code::InvalidArgument);
        let status: Status = e.into();
        assert!(
            status
                .message()
                .starts_with("feature_store: feature store refused as_of")
        );
        let bad = status.get_error_details();
        assert_eq!(
            bad.bad_request().expect("details").field_violations[0].field,
            "feature_store"
        );
        // Without details, the message is kept.
        let e = from_dependency("feature store", &Status::out_of_range("page_size too big"));
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.to_string().contains("page_size too big"));
        assert_eq!(
            from_dependency("feature store", &Status::not_found("no customer c1")).code(),
            Code::NotFound
        );
        assert_eq!(
            from_dependency("feature store", &Status::failed_precondition("x")).code(),
            Code::FailedPrecondition
        );
        // Our own misconfiguration: not retryable, said so for the operator.
        for s in [
            Status::permission_denied("churn may not call GetHistoricalFeatures"),
            Status::unauthenticated("no credentials"),
            Status::unimplemented("unknown method"),
        ] {
            let status: Status = from_dependency("feature store", &s).into();
            assert_eq!(status.code(), Code::FailedPrecondition, "{s:?}");
            assert!(
                status
                    .message()
                    .starts_with("feature store refused this service ("),
                "{status:?}"
            );
            assert!(status.message().contains(s.message()), "{status:?}");
        }
        // Outages and overload: UNAVAILABLE, saying which dependency.
        for s in [
            Status::unavailable("connection refused"),
            Status::deadline_exceeded("timeout"),
            Status::resource_exhausted("server busy"),
            Status::cancelled("reset"),
            Status::internal("boom"),
            Status::unknown("h2 error"),
        ] {
            let e = from_dependency("feature store", &s);
            assert_eq!(e.code(), Code::Unavailable, "{s:?}");
            assert!(e.to_string().starts_with("feature store unavailable: "));
        }
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status: Status = ApiError::Internal("db password wrong for user x".into()).into();
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("password"));
    }
}
