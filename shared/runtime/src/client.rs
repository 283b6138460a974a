//! Channels to other Augur services.

use std::future::Future;
use std::time::Duration;

use tokio_stream::{Stream, StreamExt};
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

/// HTTP/2 receive window per stream of the channels to other services: a batch answer (1,000
/// customers' features, a page of historical features) arrives without waiting for window
/// updates, which h2's default of 64 KiB would need every 64 KiB.
pub const STREAM_WINDOW: u32 = augur_discovery::STREAM_WINDOW;
/// HTTP/2 receive window per connection (bounds the unread data of all its streams).
pub const CONNECTION_WINDOW: u32 = augur_discovery::CONNECTION_WINDOW;

/// A channel that connects lazily (the caller starts even when the dependency is down, and
/// reconnects by itself), with the settings of every service channel
/// ([`augur_discovery::tuned`]: timeouts, HTTP/2 windows, keep-alive).
pub fn lazy_channel(
    url: &str,
    request_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    Ok(
        augur_discovery::tuned(Endpoint::from_shared(url.to_string())?, request_timeout)
            .connect_lazy(),
    )
}

/// What a dependency that stayed silent for `limit` during a training read answers, as the
/// status the caller's usual mapping turns into UNAVAILABLE (a deadline, not a refusal).
fn silence(limit: Duration) -> tonic::Status {
    tonic::Status::deadline_exceeded(format!(
        "nothing received for {} ms during a training read (training_read_idle_timeout_ms)",
        limit.as_millis()
    ))
}

/// One answer of a training read (a unary reply or the opening of a stream) within `limit`;
/// a dependency that sends nothing for that long gives DEADLINE_EXCEEDED naming the setting.
pub async fn answer_within<T>(
    limit: Duration,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    tokio::time::timeout(limit, call)
        .await
        .unwrap_or_else(|_| Err(silence(limit)))
}

/// The next message of a streamed training read, due within `limit` of asking: a dependency
/// that stalls mid-stream (alive, answering HTTP/2 pings, sending nothing) ends the read with
/// DEADLINE_EXCEEDED instead of holding it for ever. `None` at the stream's end.
pub async fn next_within<S, T>(stream: &mut S, limit: Duration) -> Option<Result<T, tonic::Status>>
where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
{
    tokio::time::timeout(limit, stream.next())
        .await
        .unwrap_or_else(|_| Some(Err(silence(limit))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_answer_is_a_deadline_naming_the_setting() {
        let limit = Duration::from_millis(500);
        let ok = answer_within(limit, async { Ok::<_, tonic::Status>(7) }).await;
        assert_eq!(ok.unwrap(), 7);
        let slow = answer_within(limit, async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, tonic::Status>(8)
        })
        .await;
        assert_eq!(slow.unwrap(), 8, "an answer inside the limit is taken");
        let hung = answer_within(limit, std::future::pending::<Result<u8, tonic::Status>>()).await;
        let e = hung.unwrap_err();
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(e.message().contains("500 ms"), "{e}");
        assert!(e.message().contains("training_read_idle_timeout_ms"), "{e}");
        // The dependency's own error passes through unchanged.
        let refused = answer_within(limit, async {
            Err::<u8, _>(tonic::Status::permission_denied("no"))
        })
        .await;
        assert_eq!(refused.unwrap_err().code(), tonic::Code::PermissionDenied);
    }

    #[tokio::test]
    async fn a_stream_that_stalls_mid_way_ends_with_a_deadline() {
        let limit = Duration::from_millis(1_000);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, tonic::Status>>(4);
        let mut stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        // A slow but steady producer: every message well inside the limit, the whole read
        // longer than it.
        let producer = tokio::spawn(async move {
            for i in 0..5 {
                tokio::time::sleep(Duration::from_millis(250)).await;
                tx.send(Ok(i)).await.unwrap();
            }
            // Then it stalls with the stream still open.
            std::future::pending::<()>().await;
        });
        let started = std::time::Instant::now();
        let mut got = Vec::new();
        let end = loop {
            match next_within(&mut stream, limit).await {
                Some(Ok(i)) => got.push(i),
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        assert_eq!(
            got,
            vec![0, 1, 2, 3, 4],
            "a slow steady stream is read whole"
        );
        let e = end.expect("the stall is reported, not taken for the end");
        assert_eq!(e.code(), tonic::Code::DeadlineExceeded);
        assert!(
            started.elapsed() >= Duration::from_millis(5 * 250 + 1_000),
            "{:?}",
            started.elapsed()
        );
        producer.abort();

        // A stream that ends is not an error.
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<u32, tonic::Status>>(1);
        drop(tx);
        let mut stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        assert!(next_within(&mut stream, limit).await.is_none());
    }
}
