//! Service discovery for Augur.
//!
//! - [`Consul`]: registers a service instance with the local Consul agent (address, port, tags and
//!   a gRPC health check against `grpc.health.v1`), deregisters it on shutdown, and lists the
//!   healthy instances of a service with Consul's blocking queries. Built on `rs-consul` for the
//!   health API; the agent endpoints it lacks (`/v1/agent/service/register`, `.../deregister`) are
//!   written here.
//! - [`balanced_channel`]: a tonic channel that balances requests across the instances of a
//!   service and follows changes: `consul://<service>` (healthy instances from Consul),
//!   `dns://<host>:<port>` (every address the name resolves to, re-resolved periodically: a
//!   Kubernetes headless Service), or a plain `http://host:port` (one endpoint).

mod balance;
mod consul;

pub use balance::{CONNECTION_WINDOW, STREAM_WINDOW, Target, balanced_channel, tuned};
pub use consul::{Consul, ConsulSettings, Instance, Registration};

/// Errors of discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("consul request {what} failed: {detail}")]
    Consul { what: String, detail: String },
    #[error("invalid target {target:?}: {reason}")]
    Target { target: String, reason: String },
    #[error("invalid endpoint: {0}")]
    Endpoint(#[from] tonic::transport::Error),
}

pub type Result<T, E = DiscoveryError> = std::result::Result<T, E>;
