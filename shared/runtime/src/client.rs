//! Channels to other Augur services.

use std::time::Duration;

use tonic::service::Interceptor;
use tonic::transport::{Channel, Endpoint};

use crate::config::ConfigError;

/// Adds the caller's W3C trace context to every outgoing request.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracePropagation;

impl Interceptor for TracePropagation {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_context(req.metadata_mut());
        Ok(req)
    }
}

/// How this service calls others (`[client]`): TLS trust and identity, and a bearer token.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClientConfig {
    /// PEM CA that signs the servers' certificates; empty: plaintext.
    pub ca_path: String,
    /// PEM certificate and key presented to servers (mutual TLS); optional.
    pub cert_path: String,
    pub key_path: String,
    /// Name the server certificates are issued for, when it differs from the target host.
    pub domain_name: String,
    /// Bearer token sent on every call (from a Secret: env `AUGUR_CLIENT__TOKEN`).
    pub token: crate::config::Secret,
}

impl ClientConfig {
    /// The TLS settings, files read now; `None` for plaintext.
    pub fn tls(&self) -> Result<Option<tonic::transport::ClientTlsConfig>, ConfigError> {
        if self.ca_path.trim().is_empty() {
            return Ok(None);
        }
        let read = |field: &str, p: &str| {
            std::fs::read(p)
                .map_err(|e| ConfigError::invalid(field, format!("cannot read {p}: {e}")))
        };
        let mut tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
            tonic::transport::Certificate::from_pem(read("client.ca_path", &self.ca_path)?),
        );
        if !self.cert_path.trim().is_empty() {
            tls = tls.identity(tonic::transport::Identity::from_pem(
                read("client.cert_path", &self.cert_path)?,
                read("client.key_path", &self.key_path)?,
            ));
        }
        if !self.domain_name.trim().is_empty() {
            tls = tls.domain_name(self.domain_name.trim());
        }
        Ok(Some(tls))
    }
}

/// Trace context plus the configured bearer token on every outgoing request.
#[derive(Clone, Debug, Default)]
pub struct ClientInterceptor {
    token: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
}

impl ClientInterceptor {
    pub fn new(config: &ClientConfig) -> Result<Self, ConfigError> {
        let token = if config.token.is_empty() {
            None
        } else {
            let mut v: tonic::metadata::MetadataValue<tonic::metadata::Ascii> =
                format!("Bearer {}", config.token.expose())
                    .parse()
                    .map_err(|_| {
                        ConfigError::invalid("client.token", "not a valid header value")
                    })?;
            v.set_sensitive(true);
            Some(v)
        };
        Ok(Self { token })
    }
}

impl Interceptor for ClientInterceptor {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        crate::telemetry::inject_context(req.metadata_mut());
        if let Some(t) = &self.token {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// A channel to another Augur service with [`ClientInterceptor`] applied: every call carries
/// the caller's trace context and the configured bearer token.
pub type ServiceChannel =
    tonic::service::interceptor::InterceptedService<Channel, ClientInterceptor>;

/// Wraps a plain channel (tests, tools) as a [`ServiceChannel`] that propagates trace context
/// and sends no token.
pub fn intercepted(channel: Channel) -> ServiceChannel {
    tonic::service::interceptor::InterceptedService::new(channel, ClientInterceptor::default())
}

/// A channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Discovery(#[from] augur_discovery::DiscoveryError),
}

/// A channel to another Augur service found through `target`: `http://host:port` (one endpoint),
/// `dns://host:port` (balanced over every address of a Kubernetes headless Service,
/// re-resolved) or `consul://service` (balanced over the healthy instances in Consul, following
/// changes with blocking queries). Connects lazily.
/// With TLS configured in `client`, instances are reached over https with its trust roots and
/// identity; every call carries the trace context and the `client.token` bearer token.
pub fn service_channel(
    target: &str,
    request_timeout: Duration,
    consul: &augur_discovery::ConsulSettings,
    client: &ClientConfig,
) -> Result<ServiceChannel, ChannelError> {
    let agent = consul
        .enabled()
        .then(|| std::sync::Arc::new(augur_discovery::Consul::new(consul.clone())));
    let interceptor = ClientInterceptor::new(client)?;
    let channel = augur_discovery::balanced_channel(target, agent, request_timeout, client.tls()?)?;
    Ok(tonic::service::interceptor::InterceptedService::new(
        channel,
        interceptor,
    ))
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
