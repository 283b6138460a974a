use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::{Consul, DiscoveryError, Result};

/// Where a client finds a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `http://host:port`: one endpoint (a Kubernetes ClusterIP Service, a fixed address).
    Static(String),
    /// `dns://host:port`: every address the name resolves to (a headless Service), re-resolved.
    Dns { host: String, port: u16 },
    /// `consul://service`: the healthy instances registered in Consul.
    Consul { service: String },
}

impl Target {
    pub fn parse(target: &str) -> Result<Target> {
        let bad = |reason: &str| DiscoveryError::Target {
            target: target.to_string(),
            reason: reason.to_string(),
        };
        if let Some(service) = target.strip_prefix("consul://") {
            let service = service.trim_end_matches('/');
            if service.is_empty() || service.contains(['/', ':', '?']) {
                return Err(bad("expected consul://<service-name>"));
            }
            return Ok(Target::Consul {
                service: service.to_string(),
            });
        }
        if let Some(rest) = target.strip_prefix("dns://") {
            let rest = rest.trim_end_matches('/');
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| bad("expected dns://<host>:<port>"))?;
            let port: u16 = port.parse().map_err(|_| bad("the port is not a number"))?;
            if host.is_empty() {
                return Err(bad("empty host"));
            }
            return Ok(Target::Dns {
                host: host.to_string(),
                port,
            });
        }
        if target.starts_with("http://") || target.starts_with("https://") {
            return Ok(Target::Static(target.to_string()));
        }
        Err(bad(
            "expected http://host:port, dns://host:port or consul://service",
        ))
    }
}

/// HTTP/2 receive window per stream of every channel built here (h2's default, 64 KiB, makes a
/// batch answer of a few hundred KiB wait for window updates).
pub const STREAM_WINDOW: u32 = 2 << 20;
/// HTTP/2 receive window per connection: bounds the unread data of all its streams.
pub const CONNECTION_WINDOW: u32 = 8 << 20;

fn endpoint(
    url: String,
    request_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> Result<Endpoint> {
    let url = match tls {
        Some(_) => url.replacen("http://", "https://", 1),
        None => url,
    };
    let mut ep = Endpoint::from_shared(url)?;
    if let Some(tls) = tls {
        ep = ep.tls_config(tls.clone())?;
    }
    Ok(tuned(ep, request_timeout))
}

/// The settings of every channel to another service: connect and request timeouts, no Nagle,
/// the HTTP/2 receive windows above, keep-alive pings while idle.
pub fn tuned(ep: Endpoint, request_timeout: Duration) -> Endpoint {
    ep.connect_timeout(Duration::from_secs(2))
        .timeout(request_timeout)
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(STREAM_WINDOW))
        .initial_connection_window_size(Some(CONNECTION_WINDOW))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
}

/// A channel to `target` that balances requests over its instances and follows changes in the
/// background (the task ends when the channel and its clones are dropped). `consul` is needed for
/// `consul://` targets; with `tls`, every instance is reached over TLS (https). Connects lazily:
/// the caller starts even when no instance is up yet.
pub fn balanced_channel(
    target: &str,
    consul: Option<Arc<Consul>>,
    request_timeout: Duration,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel> {
    match Target::parse(target)? {
        Target::Static(url) => Ok(endpoint(url, request_timeout, tls.as_ref())?.connect_lazy()),
        Target::Dns { host, port } => {
            let (channel, tx) = Channel::balance_channel::<SocketAddr>(64);
            tokio::spawn(follow_dns(host, port, tx, request_timeout, tls));
            Ok(channel)
        }
        Target::Consul { service } => {
            let consul = consul.ok_or_else(|| DiscoveryError::Target {
                target: target.to_string(),
                reason: "consul is not configured (set consul.address)".into(),
            })?;
            let (channel, tx) = Channel::balance_channel::<SocketAddr>(64);
            tokio::spawn(follow_consul(consul, service, tx, request_timeout, tls));
            Ok(channel)
        }
    }
}

/// Sends the difference between `current` and `next`; false when the channel is gone.
async fn apply(
    current: &mut BTreeSet<SocketAddr>,
    next: BTreeSet<SocketAddr>,
    tx: &Sender<Change<SocketAddr, Endpoint>>,
    request_timeout: Duration,
    tls: Option<&ClientTlsConfig>,
) -> bool {
    for gone in current.difference(&next) {
        tracing::info!(%gone, "instance left the balance set");
        if tx.send(Change::Remove(*gone)).await.is_err() {
            return false;
        }
    }
    for new in next.difference(current) {
        match endpoint(format!("http://{new}"), request_timeout, tls) {
            Ok(ep) => {
                tracing::info!(%new, "instance joined the balance set");
                if tx.send(Change::Insert(*new, ep)).await.is_err() {
                    return false;
                }
            }
            Err(e) => tracing::warn!(%new, error = %e, "unusable instance address"),
        }
    }
    *current = next;
    true
}

async fn follow_dns(
    host: String,
    port: u16,
    tx: Sender<Change<SocketAddr, Endpoint>>,
    request_timeout: Duration,
    tls: Option<ClientTlsConfig>,
) {
    let mut current = BTreeSet::new();
    loop {
        match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(addrs) => {
                let next: BTreeSet<SocketAddr> = addrs.collect();
                if !apply(&mut current, next, &tx, request_timeout, tls.as_ref()).await {
                    return;
                }
            }
            // Keep the last known set: a DNS hiccup must not empty the balancer.
            Err(e) => {
                tracing::warn!(%host, error = %e, "DNS resolution failed; keeping the last instances")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(15)) => {}
            _ = tx.closed() => return,
        }
    }
}

async fn follow_consul(
    consul: Arc<Consul>,
    service: String,
    tx: Sender<Change<SocketAddr, Endpoint>>,
    request_timeout: Duration,
    tls: Option<ClientTlsConfig>,
) {
    let mut current = BTreeSet::new();
    let mut index: Option<u64> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        let result = tokio::select! {
            r = consul.healthy(&service, index) => r,
            _ = tx.closed() => return,
        };
        match result {
            Ok((instances, new_index)) => {
                backoff = Duration::from_millis(250);
                // Consul: an index that goes backwards means "start over".
                index = match index {
                    Some(old) if new_index < old => None,
                    _ => Some(new_index.max(1)),
                };
                let mut next = BTreeSet::new();
                for i in instances {
                    match tokio::net::lookup_host((i.address.as_str(), i.port)).await {
                        Ok(mut a) => next.extend(a.next()),
                        Err(e) => {
                            tracing::warn!(instance = %i.id, error = %e, "cannot resolve instance address")
                        }
                    }
                }
                if !apply(&mut current, next, &tx, request_timeout, tls.as_ref()).await {
                    return;
                }
            }
            Err(e) => {
                // Keep serving with the last known instances while Consul is unreachable.
                tracing::warn!(%service, error = %e, retry_in = ?backoff, "consul query failed");
                index = None;
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = tx.closed() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("consul://feature-store").unwrap(),
            Target::Consul {
                service: "feature-store".into()
            }
        );
        assert_eq!(
            Target::parse("dns://feature-store.augur.svc:50051").unwrap(),
            Target::Dns {
                host: "feature-store.augur.svc".into(),
                port: 50051
            }
        );
        assert_eq!(
            Target::parse("http://a:1").unwrap(),
            Target::Static("http://a:1".into())
        );
        for bad in [
            "consul://",
            "dns://host",
            "dns://host:x",
            "tcp://a:1",
            "consul://a/b",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
