//! Runs the README's grpcurl examples (the shell block between the
//! `grpcurl-examples` markers) against a platform with the demo data, with the README's ports
//! replaced by the test's, so that the README stays true.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_grpcurl_examples_work() {
    let Some(grpcurl) = augur_e2e::grpcurl() else {
        return;
    };
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let start = readme
        .find("<!-- grpcurl-examples:start -->")
        .expect("start marker");
    let end = readme
        .find("<!-- grpcurl-examples:end -->")
        .expect("end marker");
    let section = &readme[start..end];
    let script: String = section
        .split("```sh")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains("grpcurl"), "no examples found");

    let (p, _dir) = augur_e2e::platform(true).await;
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
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "README examples failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("augur.featurestore.v1.FeatureStore"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("\"SERVING\"").count(), 5, "{stdout}");
    assert!(stdout.contains("\"accepted\""), "{stdout}");
    assert!(stdout.contains("\"featureNames\""), "{stdout}");
    assert!(stdout.contains("\"segment\""), "{stdout}");
    p.shutdown().await.expect("shutdown");
}
