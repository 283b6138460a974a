//! The server runtime every Augur service uses.
//!
//! - [`config`]: typed, layered configuration (compiled defaults, a TOML file, `AUGUR_` environment
//!   variables), validated before any port is bound.
//! - [`telemetry`]: `tracing` logs plus OpenTelemetry traces over OTLP, W3C trace context.
//! - [`server`]: one gRPC bootstrap: health, reflection (v1 and v1alpha), request timeout,
//!   concurrency limit with load shedding, max message size, graceful shutdown.
//! - [`limit`]: the concurrency limit, lowered while the process's CPU is saturated.
//! - [`error`]: the shared vocabulary for gRPC errors with field violations.
//! - [`client`]: channels to other Augur services that propagate the trace context.

pub mod client;
pub mod config;
pub mod error;
pub mod limit;
pub mod metrics;
pub mod prometheus;
pub mod security;
pub mod server;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, Secret, ServerConfig, TelemetryConfig};
pub use error::{ApiError, FieldViolation};
pub use server::{GrpcServer, ServerHandle};
