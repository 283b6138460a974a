//! Runs the README's grpcurl examples against a platform with the demo data, with the README's
//! ports replaced by the test's, so that the README stays true: the shell blocks between the
//! `grpcurl-examples` markers on an untrained platform, and those between the
//! `grpcurl-model-examples` markers after every model has been trained as `augur up --demo` does.
//! The process also serves its metrics on a Prometheus endpoint (`telemetry.prometheus_listen`),
//! scraped at the end: the calls just made must be in it.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

use augur_cli::train::{Model, train_missing};

/// The shell commands of the fenced `sh` blocks between `<!-- {marker}:start -->` and
/// `<!-- {marker}:end -->`.
fn script(readme: &str, marker: &str) -> String {
    let start = readme
        .find(&format!("<!-- {marker}:start -->"))
        .expect("start marker");
    let end = readme
        .find(&format!("<!-- {marker}:end -->"))
        .expect("end marker");
    let script = readme[start..end]
        .split("```sh")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains("grpcurl"), "no examples found in {marker}");
    script
}

async fn run(p: &augur_cli::up::Platform, grpcurl: &Path, script: String) -> Output {
    let mut script = script;
    for (name, port) in [
        ("feature-store", 50051),
        ("recommendation", 50052),
        ("demand-forecast", 50053),
        ("churn", 50054),
        ("risk", 50055),
    ] {
        let url = p.url(name).expect("url");
        let addr = url.trim_start_matches("http://");
        script = script.replace(&format!("127.0.0.1:{port}"), addr);
        // The health loop names ports alone.
        let actual_port = addr.rsplit(':').next().expect("port");
        script = script.replace(&format!(" {port} "), &format!(" {actual_port} "));
        script = script.replace(&format!(" {port};"), &format!(" {actual_port};"));
    }
    let dir = grpcurl
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let path = format!("{dir}:{}", std::env::var("PATH").unwrap_or_default());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("sh")
            .arg("-ec")
            .arg(&script)
            .env("PATH", path)
            .output()
            .expect("run sh")
    })
    .await
    .expect("join");
    assert!(
        out.status.success(),
        "README examples failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_work() {
    let Some(grpcurl) = augur_e2e::grpcurl() else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    // Before the servers are built: their RPC metrics come from the global meter provider.
    let telemetry = augur_runtime::telemetry::init(
        "augur",
        &augur_runtime::TelemetryConfig {
            prometheus_listen: "127.0.0.1:0".into(),
            ..Default::default()
        },
    )
    .expect("telemetry");
    let (p, _dir) = augur_e2e::platform(true).await;

    let out = run(&p, &grpcurl, script(&readme, "grpcurl-examples")).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("augur.featurestore.v1.FeatureStore"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("\"SERVING\"").count(), 5, "{stdout}");
    assert!(stdout.contains("\"accepted\""), "{stdout}");
    assert!(stdout.contains("\"featureNames\""), "{stdout}");
    assert!(stdout.contains("\"segment\""), "{stdout}");

    // Train every model the way `augur up --demo` does, then ask them. The review model needs
    // MiniLM: without it (and without AUGUR_REQUIRE_MINILM=1) the review examples are skipped.
    let minilm = augur_e2e::minilm_present();
    let models: Vec<_> = Model::ALL
        .iter()
        .filter(|m| minilm || m.risk != augur_cli::train::RiskModel::Review)
        .filter_map(|m| p.url(m.service.name()).map(|u| (*m, u)))
        .collect();
    train_missing(&models).await;
    for (m, url) in &models {
        assert!(
            augur_cli::train::has_model(*m, url).await,
            "{} did not train on the demo data",
            m.name()
        );
    }
    let mut models_script = script(&readme, "grpcurl-model-examples");
    if !minilm {
        models_script = models_script
            .lines()
            .filter(|l| !l.contains("ScoreReview") && !l.contains("MODEL_KIND_REVIEW"))
            .collect::<Vec<_>>()
            .join("\n");
    }
    let out = run(&p, &grpcurl, models_script).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "\"items\"",
        "\"forecasts\"",
        "\"churnProbability\"",
        "\"decision\"",
        "\"modelVersion\"",
    ] {
        assert!(
            stdout.contains(expected),
            "{expected} missing in:\n{stdout}"
        );
    }
    // The scrape endpoint has the calls the examples made, by service, method and code, and
    // the models' own metrics.
    let addr = telemetry
        .metrics_addr()
        .expect("prometheus endpoint installed");
    let metrics = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("join");
    for expected in [
        "# TYPE rpc_server_requests_total counter",
        "# TYPE rpc_server_duration_milliseconds histogram",
        "# TYPE rpc_server_active_requests gauge",
        "rpc_method=\"PredictChurn\",rpc_service=\"augur.churn.v1.Churn\"",
        "rpc_method=\"Recommend\",rpc_service=\"augur.recommendation.v1.Recommendation\"",
        "rpc_method=\"GetOnlineFeatures\",rpc_service=\"augur.featurestore.v1.FeatureStore\"",
        "model_inference_duration_milliseconds_count{model=\"churn\"}",
        "model_prediction_score_bucket{",
    ] {
        assert!(
            metrics.contains(expected),
            "{expected} missing in the scrape:\n{metrics}"
        );
    }
    p.shutdown().await.expect("shutdown");
}

/// `GET /metrics` over plain HTTP/1.1; the body.
fn scrape(addr: std::net::SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect to the metrics endpoint");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: augur\r\n\r\n")
        .expect("write");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read");
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}
