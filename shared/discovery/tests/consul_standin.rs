#![allow(clippy::expect_used, clippy::unwrap_used)]
//! Registration, deregistration and balancing against the stand-in Consul agent of
//! `augur_testkit::consul` (documented agent/health HTTP API, runs the gRPC health checks itself),
//! so a stopped instance goes critical and leaves the balance set. No real agent runs here.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use augur_discovery::{Consul, ConsulSettings, Registration, balanced_channel};
use augur_testkit::consul::start_agent;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

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
                tls: false,
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
        None,
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
        tls: false,
    };
    assert!(consul.register(&reg).await.is_err());
}
