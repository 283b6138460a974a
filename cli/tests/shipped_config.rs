#![allow(clippy::expect_used, clippy::unwrap_used, clippy::result_large_err)]
//! Every configuration shipped in k8s/ parses and validates for the service it is meant for,
//! exactly as the service would load it (AUGUR_* environment variables).

use std::path::Path;

fn env_file(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: bad line {l:?}", path.display()));
            (k.trim().to_string(), v.trim().to_string())
        })
        .collect()
}

#[test]
fn k8s_config_env_files_load_for_their_services() {
    let k8s = Path::new(env!("CARGO_MANIFEST_DIR")).join("../k8s/base");
    let common = env_file(&k8s.join("common.env"));
    for service in [
        "feature-store",
        "recommendation",
        "demand-forecast",
        "churn",
        "risk",
    ] {
        let mut vars = common.clone();
        vars.extend(env_file(&k8s.join(service).join("config.env")));
        figment::Jail::expect_with(|jail| {
            for (k, v) in &vars {
                jail.set_env(k, v);
            }
            let listen = match service {
                "feature-store" => {
                    let c =
                        augur_runtime::config::load(augur_feature_store::Config::default(), None)
                            .map_err(|e| format!("{service}: {e}"))?;
                    assert_eq!(c.data_dir, Path::new("/data"));
                    assert_eq!(c.follow_interval_ms, 1000);
                    c.server.listen
                }
                _ => {
                    let defaults = match service {
                        "recommendation" => augur_recommendation::default_config(),
                        "demand-forecast" => augur_demand_forecast::default_config(),
                        "churn" => augur_churn::default_config(),
                        _ => augur_risk::default_config(),
                    };
                    let c = augur_runtime::config::load(defaults, None)
                        .map_err(|e| format!("{service}: {e}"))?;
                    assert!(c.feature_store_url.contains("feature-store"), "{service}");
                    c.server.listen
                }
            };
            assert!(
                listen.ip().is_unspecified(),
                "{service} must listen on all interfaces in a pod"
            );
            Ok(())
        });
    }
}
