#![allow(clippy::expect_used, clippy::unwrap_used)]
//! A stand-in Consul agent for tests (no real agent can run on this machine). It follows the
//! documented HTTP API for the endpoints Augur uses: `PUT /v1/agent/service/register`,
//! `PUT /v1/agent/service/deregister/:id`, and `GET /v1/health/service/:name?passing=&index=&wait=`
//! (a blocking query answering with `X-Consul-Index`), and runs each registered gRPC health check
//! itself every 200 ms, like the agent, so a stopped instance goes critical.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[derive(Debug, Clone)]
pub struct Svc {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub tags: Vec<Value>,
    pub grpc: String,
    pub status: &'static str,
}

/// What the agent holds.
#[derive(Default)]
pub struct State {
    /// Registered services by id.
    pub services: BTreeMap<String, Svc>,
    pub index: u64,
    /// Every registration body received, in order.
    pub registrations: Vec<Value>,
}

/// The stand-in agent.
#[derive(Clone)]
pub struct Agent {
    pub state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Agent {
    /// Ids of the registered services.
    pub fn ids(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .services
            .keys()
            .cloned()
            .collect()
    }

    fn bump(&self, st: &mut State) {
        st.index += 1;
        let _ = self.changed.send(st.index);
    }

    async fn handle(self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let reply = |code: StatusCode, body: String, index: Option<u64>| {
            let mut r = Response::builder().status(code);
            if let Some(i) = index {
                r = r.header("X-Consul-Index", i.to_string());
            }
            Ok(r.body(Full::new(Bytes::from(body))).unwrap())
        };
        match (method.as_str(), path.as_str()) {
            ("PUT", "/v1/agent/service/register") => {
                let v: Value = serde_json::from_slice(&body).unwrap();
                let svc = Svc {
                    name: v["Name"].as_str().unwrap().to_string(),
                    address: v["Address"].as_str().unwrap().to_string(),
                    port: v["Port"].as_u64().unwrap() as u16,
                    tags: v["Tags"].as_array().cloned().unwrap_or_default(),
                    grpc: v["Check"]["GRPC"].as_str().unwrap().to_string(),
                    // Consul's initial check status is critical until the first check passes.
                    status: "critical",
                };
                let mut st = self.state.lock().unwrap();
                st.registrations.push(v.clone());
                st.services
                    .insert(v["ID"].as_str().unwrap().to_string(), svc);
                self.bump(&mut st);
                reply(StatusCode::OK, String::new(), None)
            }
            ("PUT", p) if p.starts_with("/v1/agent/service/deregister/") => {
                let id = p.trim_start_matches("/v1/agent/service/deregister/");
                let mut st = self.state.lock().unwrap();
                if st.services.remove(id).is_none() {
                    return reply(
                        StatusCode::NOT_FOUND,
                        format!("Unknown service ID {id:?}"),
                        None,
                    );
                }
                self.bump(&mut st);
                reply(StatusCode::OK, String::new(), None)
            }
            ("GET", p) if p.starts_with("/v1/health/service/") => {
                let name = p.trim_start_matches("/v1/health/service/").to_string();
                let wait = query
                    .get("wait")
                    .and_then(|w| w.trim_end_matches('s').parse::<u64>().ok())
                    .unwrap_or(300);
                if let Some(index) = query.get("index").and_then(|i| i.parse::<u64>().ok()) {
                    let mut rx = self.changed.subscribe();
                    let _ = tokio::time::timeout(
                        Duration::from_secs(wait),
                        rx.wait_for(|i| *i > index),
                    )
                    .await;
                }
                let passing = query
                    .get("passing")
                    .is_some_and(|v| v == "true" || v == "1");
                let st = self.state.lock().unwrap();
                let nodes: Vec<Value> = st
                    .services
                    .iter()
                    .filter(|(_, s)| s.name == name && (!passing || s.status == "passing"))
                    .map(|(id, s)| {
                        json!({
                            "Node": {"ID": "node-1", "Node": "standin", "Address": "127.0.0.1", "Datacenter": "dc1"},
                            "Service": {"ID": id, "Service": s.name, "Address": s.address, "Port": s.port, "Tags": s.tags},
                            "Checks": [{"CheckID": format!("service:{id}"), "Status": s.status}],
                        })
                    })
                    .collect();
                reply(
                    StatusCode::OK,
                    Value::Array(nodes).to_string(),
                    Some(st.index),
                )
            }
            _ => reply(StatusCode::NOT_FOUND, "no such endpoint".into(), None),
        }
    }

    /// The agent's gRPC health checks, every 200 ms.
    async fn check_loop(self) {
        loop {
            let targets: Vec<(String, String)> = {
                let st = self.state.lock().unwrap();
                st.services
                    .iter()
                    .map(|(id, s)| (id.clone(), s.grpc.clone()))
                    .collect()
            };
            for (id, grpc) in targets {
                let ok = async {
                    let ch = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
                        .ok()?
                        .connect_timeout(Duration::from_millis(300))
                        .timeout(Duration::from_millis(500))
                        .connect()
                        .await
                        .ok()?;
                    let r = HealthClient::new(ch)
                        .check(HealthCheckRequest {
                            service: String::new(),
                        })
                        .await
                        .ok()?;
                    Some(r.into_inner().status == ServingStatus::Serving as i32)
                }
                .await
                .unwrap_or(false);
                let status = if ok { "passing" } else { "critical" };
                let mut st = self.state.lock().unwrap();
                let changed = match st.services.get_mut(&id) {
                    Some(s) if s.status != status => {
                        s.status = status;
                        true
                    }
                    _ => false,
                };
                if changed {
                    self.bump(&mut st);
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Starts an agent on 127.0.0.1:0; returns its address.
pub async fn start_agent() -> (SocketAddr, Agent) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _rx) = tokio::sync::watch::channel(0);
    let agent = Agent {
        state: Arc::default(),
        changed: Arc::new(tx),
    };
    let a = agent.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let a = a.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| a.clone().handle(req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    tokio::spawn(agent.clone().check_loop());
    (addr, agent)
}
