use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper_util::client::legacy::connect::HttpConnector;
use rs_consul::{GetServiceNodesRequest, HttpsClient, QueryOptions};
use serde::{Deserialize, Serialize};

use crate::{DiscoveryError, Result};

/// How a service talks to Consul. Configured under `[consul]` (env `AUGUR_CONSUL__...`).
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsulSettings {
    /// Agent address, e.g. `http://127.0.0.1:8500`. Empty: Consul is not used.
    pub address: String,
    /// ACL token (from a Secret; never logged).
    pub token: Option<String>,
    /// Register this instance at start and deregister it on shutdown.
    pub register: bool,
    /// Address to advertise; empty: the `POD_IP` environment variable, else the listen address.
    pub advertise_address: String,
    pub tags: Vec<String>,
    /// Interval of the agent's gRPC health check.
    pub check_interval_s: u64,
    /// The agent removes an instance whose check stays critical this long.
    pub deregister_critical_after_s: u64,
    /// How long one blocking query may wait for a change.
    pub wait_s: u64,
}

impl Default for ConsulSettings {
    fn default() -> Self {
        ConsulSettings {
            address: String::new(),
            token: None,
            register: true,
            advertise_address: String::new(),
            tags: Vec::new(),
            check_interval_s: 10,
            deregister_critical_after_s: 60,
            wait_s: 30,
        }
    }
}

impl std::fmt::Debug for ConsulSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsulSettings")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("register", &self.register)
            .field("advertise_address", &self.advertise_address)
            .field("tags", &self.tags)
            .field("check_interval_s", &self.check_interval_s)
            .field(
                "deregister_critical_after_s",
                &self.deregister_critical_after_s,
            )
            .field("wait_s", &self.wait_s)
            .finish()
    }
}

impl ConsulSettings {
    pub fn enabled(&self) -> bool {
        !self.address.trim().is_empty()
    }
}

/// One instance to register.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Unique per instance, e.g. `recommendation-10.0.3.7-50052`.
    pub id: String,
    /// Service name others look up, e.g. `recommendation`.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<String>,
    pub meta: BTreeMap<String, String>,
    /// The instance serves TLS: the agent's gRPC health check connects with TLS
    /// (`GRPCUseTLS`). With mutual TLS the agent must present a client certificate the server
    /// trusts (the agent's own `tls` settings).
    pub tls: bool,
}

/// A healthy instance found in Consul.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instance {
    pub id: String,
    pub address: String,
    pub port: u16,
}

/// A Consul agent client.
pub struct Consul {
    settings: ConsulSettings,
    client: rs_consul::Consul,
    http: HttpsClient,
}

impl std::fmt::Debug for Consul {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consul")
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentCheck<'a> {
    #[serde(rename = "CheckID")]
    check_id: String,
    name: &'a str,
    #[serde(rename = "GRPC")]
    grpc: String,
    #[serde(rename = "GRPCUseTLS")]
    grpc_use_tls: bool,
    interval: String,
    timeout: String,
    deregister_critical_service_after: String,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct AgentService<'a> {
    #[serde(rename = "ID")]
    id: &'a str,
    name: &'a str,
    address: &'a str,
    port: u16,
    tags: &'a [String],
    meta: &'a BTreeMap<String, String>,
    check: AgentCheck<'a>,
}

fn http_client() -> HttpsClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(2)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_webpki_roots()
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .build::<_, BoxBody<Bytes, Infallible>>(https)
}

/// The check id Consul gives a service's check when registered with the service.
pub fn check_id(service_id: &str) -> String {
    format!("service:{service_id}")
}

impl Consul {
    pub fn new(settings: ConsulSettings) -> Self {
        let http = http_client();
        let config = rs_consul::Config {
            address: settings.address.trim_end_matches('/').to_string(),
            token: settings.token.clone(),
            ..Default::default()
        };
        let client = rs_consul::ConsulBuilder::new(config)
            .with_https_client(http.clone())
            .build();
        Consul {
            settings,
            client,
            http,
        }
    }

    pub fn settings(&self) -> &ConsulSettings {
        &self.settings
    }

    async fn agent_put(&self, what: &str, path: &str, body: Vec<u8>) -> Result<()> {
        let err = |detail: String| DiscoveryError::Consul {
            what: what.to_string(),
            detail,
        };
        let url = format!("{}{path}", self.settings.address.trim_end_matches('/'));
        let mut req = http::Request::builder()
            .method(http::Method::PUT)
            .uri(&url)
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &self.settings.token {
            req = req.header("X-Consul-Token", t);
        }
        let req = req
            .body(BoxBody::new(Full::new(Bytes::from(body))))
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.http.request(req))
            .await
            .map_err(|_| err("timed out after 10 s".into()))?
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(err(format!(
                "{status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok(())
    }

    /// Registers the instance with the agent, with a gRPC health check on `address:port`.
    pub async fn register(&self, reg: &Registration) -> Result<()> {
        let body = AgentService {
            id: &reg.id,
            name: &reg.name,
            address: &reg.address,
            port: reg.port,
            tags: &reg.tags,
            meta: &reg.meta,
            check: AgentCheck {
                check_id: check_id(&reg.id),
                name: "grpc.health.v1",
                grpc: format!("{}:{}", reg.address, reg.port),
                grpc_use_tls: reg.tls,
                interval: format!("{}s", self.settings.check_interval_s.max(1)),
                timeout: "2s".into(),
                deregister_critical_service_after: format!(
                    "{}s",
                    self.settings.deregister_critical_after_s.max(1)
                ),
            },
        };
        let json = serde_json::to_vec(&body).map_err(|e| DiscoveryError::Consul {
            what: "register".into(),
            detail: e.to_string(),
        })?;
        self.agent_put("register", "/v1/agent/service/register", json)
            .await?;
        tracing::info!(id = %reg.id, name = %reg.name, address = %reg.address, port = reg.port, "registered in consul");
        Ok(())
    }

    /// Removes the instance from the agent.
    pub async fn deregister(&self, service_id: &str) -> Result<()> {
        self.agent_put(
            "deregister",
            &format!("/v1/agent/service/deregister/{service_id}"),
            Vec::new(),
        )
        .await?;
        tracing::info!(id = %service_id, "deregistered from consul");
        Ok(())
    }

    /// The instances of `service` whose checks all pass. With `index` (from a previous call),
    /// blocks until the set changes or the wait elapses; returns the new index.
    pub async fn healthy(&self, service: &str, index: Option<u64>) -> Result<(Vec<Instance>, u64)> {
        let wait = Duration::from_secs(self.settings.wait_s.max(1));
        let opts = QueryOptions {
            index,
            wait: index.map(|_| wait),
            // rs-consul's default 5 s request timeout would kill every blocking query.
            timeout: Some(wait + Duration::from_secs(10)),
            ..Default::default()
        };
        let req = GetServiceNodesRequest {
            service,
            passing: true,
            ..Default::default()
        };
        let resp = self
            .client
            .get_service_nodes(req, Some(opts))
            .await
            .map_err(|e| DiscoveryError::Consul {
                what: format!("health/service/{service}"),
                detail: e.to_string(),
            })?;
        let mut out: Vec<Instance> = resp
            .response
            .into_iter()
            .map(|n| Instance {
                id: n.service.id,
                // An empty service address means "the node's address" in Consul.
                address: if n.service.address.is_empty() {
                    n.node.address
                } else {
                    n.service.address
                },
                port: n.service.port,
            })
            .collect();
        out.sort();
        Ok((out, resp.index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted() {
        let s = ConsulSettings {
            token: Some("s3cret".into()),
            ..Default::default()
        };
        assert!(!format!("{s:?}").contains("s3cret"));
        assert!(!s.enabled());
    }

    #[test]
    fn registration_body_follows_the_agent_api() {
        let meta = BTreeMap::new();
        let tags = vec!["v1".to_string()];
        let body = AgentService {
            id: "rec-1",
            name: "recommendation",
            address: "10.0.0.1",
            port: 50052,
            tags: &tags,
            meta: &meta,
            check: AgentCheck {
                check_id: check_id("rec-1"),
                name: "grpc.health.v1",
                grpc: "10.0.0.1:50052".into(),
                grpc_use_tls: false,
                interval: "10s".into(),
                timeout: "2s".into(),
                deregister_critical_service_after: "60s".into(),
            },
        };
        let v: serde_json::Value = serde_json::to_value(&body).unwrap();
        assert_eq!(v["ID"], "rec-1");
        assert_eq!(v["Name"], "recommendation");
        assert_eq!(v["Port"], 50052);
        assert_eq!(v["Check"]["GRPC"], "10.0.0.1:50052");
        assert_eq!(v["Check"]["CheckID"], "service:rec-1");
        assert_eq!(v["Check"]["DeregisterCriticalServiceAfter"], "60s");
        assert_eq!(v["Check"]["GRPCUseTLS"], false);
    }
}
