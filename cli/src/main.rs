//! `augur`: start the whole platform in one process, import data, load the demo dataset.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use augur_cli::{import, train, up};

/// mimalloc: measurably faster than glibc malloc for the many small allocations of gRPC
/// encoding and decoding (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "augur",
    version,
    about = "Augur: e-commerce customer insight and prediction"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start all five services in this process (until Ctrl-C).
    Up(up::UpArgs),
    /// Bulk-load a CSV or JSON-lines file of events through the feature store's gRPC API.
    Import(import::ImportArgs),
    /// Train a model on a running service from the feature store's data, with a progress bar.
    Train(train::TrainArgs),
    /// Write the synthetic demo dataset as JSON-lines files (one per event kind).
    DemoData {
        /// Output folder.
        #[arg(long, default_value = "demo-data")]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
}

#[tokio::main]
async fn main() {
    // A failed command prints its message (for a failed call: address, gRPC code, message and a
    // hint) and exits with 1; no backtrace, even with RUST_BACKTRACE set.
    if let Err(e) = run(Cli::parse()).await {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up::run(args).await,
        Command::Import(args) => {
            let _t = augur_runtime::telemetry::init("augur", &Default::default())?;
            import::run(args).await
        }
        Command::Train(args) => train::run(args).await,
        Command::DemoData { out, seed } => augur_cli::demo::write_files(&out, seed),
    }
}
