#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Registration, deregistration and balancing against a stand-in Consul agent that follows the
//! documented HTTP API for the endpoints Augur uses:
//! `PUT /v1/agent/service/register`, `PUT /v1/agent/service/deregister/:id`,
//! `GET /v1/health/service/:name?passing=true&index=&wait=` (blocking query, `X-Consul-Index`),
//! and runs the registered gRPC health check itself, like the agent, so a stopped instance goes
//! critical and leaves the balance set. (No real Consul agent can run on this machine.)

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use augur_discovery::{Consul, ConsulSettings, Registration, balanced_channel};
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
struct Svc {
    name: String,
    address: String,
    port: u16,
    tags: Vec<Value>,
    grpc: String,
    status: &'static str,
}

#[derive(Default)]
struct State {
    services: BTreeMap<String, Svc>,
    index: u64,
    registrations: Vec<Value>,
}

#[derive(Clone)]
struct Agent {
    state: Arc<Mutex<State>>,
    changed: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Agent {
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

async fn start_agent() -> (SocketAddr, Agent) {
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

/// A gRPC server whose health service answers SERVING for "" and for `who`, so a caller can
/// tell which instance served a request.
async fn start_instance(who: &str) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status(who, tonic_health::ServingStatus::Serving)
        .await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let _keep = reporter;
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = rx.await;
                },
            )
            .await
            .unwrap();
    });
    (addr, tx)
}

/// Which instance served one call: true for "a".
async fn served_by_a(client: &mut HealthClient<tonic::transport::Channel>) -> Option<bool> {
    match client
        .check(HealthCheckRequest {
            service: "who-a".into(),
        })
        .await
    {
        Ok(_) => Some(true),
        Err(s) if s.code() == tonic::Code::NotFound => Some(false),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_balance_fail_over_and_deregister() {
    let (agent_addr, agent) = start_agent().await;
    let (a_addr, stop_a) = start_instance("who-a").await;
    let (b_addr, _stop_b) = start_instance("who-b").await;

    let settings = ConsulSettings {
        address: format!("http://{agent_addr}"),
        token: Some("test-token".into()),
        check_interval_s: 1,
        wait_s: 5,
        ..Default::default()
    };
    let consul = Arc::new(Consul::new(settings));
    for (id, addr) in [("svc-a", a_addr), ("svc-b", b_addr)] {
        consul
            .register(&Registration {
                id: id.into(),
                name: "augur-test".into(),
                address: addr.ip().to_string(),
                port: addr.port(),
                tags: vec!["grpc".into()],
                meta: BTreeMap::new(),
            })
            .await
            .unwrap();
    }
    {
        let st = agent.state.lock().unwrap();
        let reg = &st.registrations[0];
        assert_eq!(reg["Check"]["GRPC"], format!("{a_addr}"));
        assert_eq!(reg["Check"]["Interval"], "1s");
        assert_eq!(reg["Tags"][0], "grpc");
    }

    // Both instances become healthy, and requests are spread over both.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (healthy, _) = consul.healthy("augur-test", None).await.unwrap();
        if healthy.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "instances never became healthy: {healthy:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let channel = balanced_channel(
        "consul://augur-test",
        Some(consul.clone()),
        Duration::from_secs(2),
    )
    .unwrap();
    let mut client = HealthClient::new(channel);
    let (mut a, mut b) = (0, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a + b < 200 {
        match served_by_a(&mut client).await {
            Some(true) => a += 1,
            Some(false) => b += 1,
            None => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no instance reachable"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(a >= 30 && b >= 30, "requests not balanced: a={a} b={b}");

    // Instance a stops: its check goes critical, the blocking query wakes up, and a leaves the set.
    stop_a.send(()).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut consecutive_b = 0;
    while consecutive_b < 50 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a never left the balance set"
        );
        match served_by_a(&mut client).await {
            Some(false) => consecutive_b += 1,
            _ => consecutive_b = 0,
        }
    }
    let (healthy, _) = consul.healthy("augur-test", None).await.unwrap();
    assert_eq!(healthy.len(), 1);
    assert_eq!(healthy[0].id, "svc-b");

    // Deregistration removes b; an unknown id is an error naming the status.
    consul.deregister("svc-b").await.unwrap();
    let (healthy, _) = consul.healthy("augur-test", None).await.unwrap();
    assert!(healthy.is_empty());
    let err = consul.deregister("svc-b").await.unwrap_err().to_string();
    assert!(err.contains("404"), "{err}");
}

#[tokio::test]
async fn blocking_query_returns_on_change_and_times_out_without_one() {
    let (agent_addr, _agent) = start_agent().await;
    let settings = ConsulSettings {
        address: format!("http://{agent_addr}"),
        wait_s: 1,
        ..Default::default()
    };
    let consul = Consul::new(settings);
    let (_, index) = consul.healthy("nothing", None).await.unwrap();
    let t = std::time::Instant::now();
    let (list, same) = consul.healthy("nothing", Some(index)).await.unwrap();
    assert!(list.is_empty());
    assert_eq!(same, index);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "did not block: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn unreachable_consul_is_an_error_not_a_hang() {
    let settings = ConsulSettings {
        address: "http://127.0.0.1:9".into(),
        ..Default::default()
    };
    let consul = Consul::new(settings);
    assert!(consul.healthy("x", None).await.is_err());
    let reg = Registration {
        id: "x".into(),
        name: "x".into(),
        address: "127.0.0.1".into(),
        port: 1,
        tags: vec![],
        meta: BTreeMap::new(),
    };
    assert!(consul.register(&reg).await.is_err());
}
