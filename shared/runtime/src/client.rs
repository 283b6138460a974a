//! Channels to other Augur services.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

/// Adds the caller's W3C trace context to every outgoing request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracePropagation;

impl Interceptor for TracePropagation {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_context(req.metadata_mut());
        Ok(req)
    }
}

/// A channel to another Augur service found through `target`: `http://host:port` (one endpoint),
/// `dns://host:port` (balanced over every address of a Kubernetes headless Service,
/// re-resolved) or `consul://service` (balanced over the healthy instances in Consul, following
/// changes with blocking queries). Connects lazily.
pub fn service_channel(
    target: &str,
    request_timeout: Duration,
    consul: &augur_discovery::ConsulSettings,
) -> Result<Channel, augur_discovery::DiscoveryError> {
    let agent = consul
        .enabled()
        .then(|| std::sync::Arc::new(augur_discovery::Consul::new(consul.clone())));
    augur_discovery::balanced_channel(target, agent, request_timeout)
}

/// A channel that connects lazily (the caller starts even when the dependency is down, and
/// reconnects by itself), with connect and request timeouts.
pub fn lazy_channel(
    url: &str,
    request_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_string())?
        .connect_timeout(Duration::from_secs(2))
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .connect_lazy())
}
