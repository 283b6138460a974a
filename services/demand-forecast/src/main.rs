//! `demand-forecast`: the DemandForecast service as its own process.

use std::path::PathBuf;

use clap::Parser;

/// mimalloc, as in the feature store and `augur`: fewer page faults and less zeroing for the
/// large, short-lived buffers of model inference and the many small ones of gRPC (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(version, about = "Augur DemandForecast service (gRPC)")]
struct Args {
    /// TOML configuration file (also AUGUR_CONFIG); AUGUR_* environment variables override it.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config = augur_runtime::config::load(
        augur_demand_forecast::default_config(),
        args.config.as_deref(),
    )?;
    let _telemetry = augur_runtime::telemetry::init("demand-forecast", &config.telemetry)?;
    augur_demand_forecast::run(config, augur_runtime::shutdown::signal()).await
}
