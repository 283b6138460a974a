//! `feature-store`: the feature store as its own process.

use std::path::PathBuf;

use clap::Parser;

/// mimalloc: measurably faster than glibc malloc for the many small allocations of gRPC
/// encoding and decoding (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Augur feature store (gRPC)")]
struct Args {
    /// TOML configuration file (also AUGUR_CONFIG); AUGUR_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config: augur_feature_store::Config = augur_runtime::config::load(
        augur_feature_store::Config::default(),
        args.config.as_deref(),
    )?;
    let _telemetry = augur_runtime::telemetry::init("feature-store", &config.telemetry)?;
    augur_feature_store::run(config, augur_runtime::shutdown::signal()).await
}
