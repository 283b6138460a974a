//! The platform with Consul configured: every service registers itself with a gRPC health check,
//! the checks pass, a client finds the feature store through `consul://feature-store`, and a
//! graceful shutdown deregisters every instance. Runs against the stand-in agent of
//! `augur_testkit::consul` (no real Consul agent can run on this machine).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use augur_cli::up::UpArgs;
use augur_proto::featurestore::ListFeatureViewsRequest;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_register_are_found_and_deregister() {
    let (agent_addr, agent) = augur_testkit::consul::start_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("augur.toml");
    std::fs::write(
        &config,
        format!("[server.consul]\naddress = \"http://{agent_addr}\"\ncheck_interval_s = 1\ntags = [\"e2e\"]\n"),
    )
    .unwrap();
    let args = UpArgs {
        data_dir: dir.path().join("data"),
        feature_store_port: 0,
        recommendation_port: 0,
        forecast_port: 0,
        churn_port: 0,
        risk_port: 0,
        config: Some(config),
        ..UpArgs::default()
    };
    let platform = augur_cli::up::start(&args).await.expect("platform starts");

    // All five register and their gRPC checks pass.
    let names = [
        "feature-store",
        "recommendation",
        "demand-forecast",
        "churn",
        "risk",
    ];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let passing: Vec<String> = {
            let st = agent.state.lock().unwrap();
            st.services
                .values()
                .filter(|s| s.status == "passing")
                .map(|s| s.name.clone())
                .collect()
        };
        if names.iter().all(|n| passing.iter().any(|p| p == n)) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not all registered and passing: {passing:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    {
        let st = agent.state.lock().unwrap();
        let fs = st
            .registrations
            .iter()
            .find(|r| r["Name"] == "feature-store")
            .unwrap();
        let port = platform
            .url("feature-store")
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap();
        assert_eq!(fs["Port"], port);
        assert_eq!(fs["Address"], "127.0.0.1");
        assert_eq!(fs["Tags"][0], "e2e");
        assert_eq!(fs["Check"]["GRPC"], format!("127.0.0.1:{port}"));
    }

    // A client finds the feature store through Consul.
    let settings = augur_discovery_settings(agent_addr);
    let channel = augur_runtime::client::service_channel(
        "consul://feature-store",
        Duration::from_secs(5),
        &settings,
        &Default::default(),
    )
    .expect("channel");
    let mut fs = FeatureStoreClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match fs
            .list_feature_views(ListFeatureViewsRequest::default())
            .await
        {
            Ok(r) => {
                assert!(!r.into_inner().views.is_empty());
                break;
            }
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "feature store not reachable through consul: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // Graceful shutdown leaves Consul.
    platform.shutdown().await.expect("graceful shutdown");
    assert!(
        agent.ids().is_empty(),
        "still registered: {:?}",
        agent.ids()
    );
}

fn augur_discovery_settings(agent: std::net::SocketAddr) -> augur_runtime::config::ConsulSettings {
    augur_runtime::config::ConsulSettings {
        address: format!("http://{agent}"),
        wait_s: 2,
        ..Default::default()
    }
}
