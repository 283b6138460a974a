//! Helpers for the workspace-level end-to-end tests (test-only code: panics are failures).
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::path::PathBuf;

use augur_cli::up::{Platform, UpArgs};

/// Starts the whole platform on free ports in a temporary data directory, optionally with the
/// demo dataset loaded.
pub async fn platform(demo: bool) -> (Platform, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = UpArgs {
        data_dir: dir.path().to_path_buf(),
        feature_store_port: 0,
        recommendation_port: 0,
        forecast_port: 0,
        churn_port: 0,
        risk_port: 0,
        ..UpArgs::default()
    };
    let p = augur_cli::up::start(&args).await.expect("platform starts");
    if demo {
        let url = p.url("feature-store").expect("feature store url");
        augur_cli::demo::load(&url, 42, false)
            .await
            .expect("demo data loads");
    }
    (p, dir)
}

/// The grpcurl binary: `AUGUR_GRPCURL`, else `.venv/bin/grpcurl` in the workspace (installed by
/// `make tools`), else `grpcurl` on PATH. `None` after a loud message when there is none (a
/// panic with `AUGUR_REQUIRE_TOOLS=1`).
pub fn grpcurl() -> Option<PathBuf> {
    let candidates = [
        std::env::var("AUGUR_GRPCURL").ok().map(PathBuf::from),
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/grpcurl")),
    ];
    for c in candidates.into_iter().flatten() {
        if c.exists() {
            return Some(c);
        }
    }
    if let Ok(out) = std::process::Command::new("grpcurl")
        .arg("--version")
        .output()
        && out.status.success()
    {
        return Some(PathBuf::from("grpcurl"));
    }
    let msg = "grpcurl not found (run `make tools`, or set AUGUR_GRPCURL)";
    if augur_testkit::required("AUGUR_REQUIRE_TOOLS") {
        panic!("{msg}; AUGUR_REQUIRE_TOOLS=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

/// Whether the MiniLM model the risk service embeds reviews with is installed (`make minilm`;
/// `AUGUR_MINILM_DIR`, else the workspace's `models/minilm`, as the service looks for it).
/// `false` after a loud message (a panic with `AUGUR_REQUIRE_MINILM=1`).
pub fn minilm_present() -> bool {
    let dir = std::env::var("AUGUR_MINILM_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/minilm"));
    if ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
    {
        return true;
    }
    let msg = format!(
        "MiniLM not found in {} (run `make minilm` or set AUGUR_MINILM_DIR)",
        dir.display()
    );
    if augur_testkit::required("AUGUR_REQUIRE_MINILM") {
        panic!("{msg}; AUGUR_REQUIRE_MINILM=1");
    }
    eprintln!("\n*** SKIPPED: {msg}: the review examples are skipped ***\n");
    false
}
