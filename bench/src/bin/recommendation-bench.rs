//! Recommendation benchmark: the quality table of issue #3 on MovieLens small (every baseline
//! and the served blend, from this repository's code), the Train time, and Recommend latency /
//! throughput over loopback gRPC on the MovieLens catalogue (9,066 items) with a feature store
//! holding the catalogue. Prints a Markdown report (see BENCHMARKS.md for the protocol).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use augur_bench::{closed_loop, open_loop, server_runtime};
use augur_proto::featurestore as fs;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_proto::recommendation as pb;
use augur_proto::recommendation::recommendation_client::RecommendationClient;
use augur_runtime::{Secret, ServerConfig};
use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Seconds per latency measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Open-loop request rate.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// HTTP/2 connections the load is spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Skip the quality table.
    #[arg(long)]
    no_quality: bool,
    /// Skip the latency measurements.
    #[arg(long)]
    no_latency: bool,
}

fn local() -> ServerConfig {
    ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap_or_else(|e| panic!("{e}")),
        max_message_bytes: 64 << 20,
        ..ServerConfig::default()
    }
}

fn ts(s: i64) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: s,
        nanos: 0,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let Some(path) = augur_testkit::datasets::require("movielens/ratings.csv") else {
        return Ok(());
    };
    println!("# Recommendation benchmark\n");
    if !args.no_quality {
        let t = Instant::now();
        let (rows, summary) = tokio::task::spawn_blocking({
            let path = path.clone();
            move || augur_recommendation::movielens::run(&path, &mut |m| eprintln!("{m}"))
        })
        .await??;
        println!("## Quality (MovieLens small, chronological last-20% per user)\n");
        println!("{summary}\n");
        println!("{}", augur_recommendation::movielens::table(&rows));
        println!(
            "(quality section took {:.0} s)\n",
            t.elapsed().as_secs_f64()
        );
    }
    if !args.no_latency {
        latency(&args, &path).await?;
    }
    Ok(())
}

async fn latency(args: &Args, path: &std::path::Path) -> anyhow::Result<()> {
    let raw = augur_recommendation::movielens::load_ratings(path)?;
    let fs_dir = tempfile::tempdir()?;
    let rec_dir = tempfile::tempdir()?;
    let fs_config = augur_feature_store::Config {
        server: local(),
        hash_key: Secret::new("bench-hash-key-0123456789"),
        data_dir: fs_dir.path().to_path_buf(),
        ..Default::default()
    };
    let fs_handle = server_runtime()
        .spawn(async move {
            let (server, _app) = augur_feature_store::build(&fs_config).await?;
            anyhow::Ok(server.spawn().await?)
        })
        .await??;
    // The catalogue: every MovieLens item as a product in one of 20 categories; every 50th
    // item out of stock.
    let mut items: Vec<&str> = raw.iter().map(|r| r.item.as_str()).collect();
    items.sort_unstable();
    items.dedup();
    let mut fsc = FeatureStoreClient::connect(fs_handle.url())
        .await?
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    let products: Vec<fs::Event> = items
        .iter()
        .enumerate()
        .map(|(i, sku)| fs::Event {
            payload: Some(fs::event::Payload::Product(fs::Product {
                sku: sku.to_string(),
                title: format!("Movie {sku}"),
                category_path: vec!["Movies".into(), format!("Genre {}", i % 20)],
                price: 5.0 + (i % 10) as f64,
                stock: if i % 50 == 0 { 0 } else { 100 },
                ts: ts(1_000_000_000),
                ..Default::default()
            })),
        })
        .collect();
    for chunk in products.chunks(2000) {
        fsc.ingest(fs::IngestRequest {
            events: chunk.to_vec(),
        })
        .await?;
    }
    let mut rec_config = augur_recommendation::default_config();
    rec_config.server = local();
    rec_config.data_dir = rec_dir.path().to_path_buf();
    rec_config.feature_store_url = fs_handle.url();
    let rec_handle = server_runtime()
        .spawn(async move { augur_recommendation::build(&rec_config).spawn().await })
        .await??;
    let url = rec_handle.url();
    let mut client = RecommendationClient::connect(url.clone())
        .await?
        .max_encoding_message_size(64 << 20);

    // Train over gRPC with the whole MovieLens log inline (a RATE interaction per rating).
    let interactions: Vec<fs::Interaction> = raw
        .iter()
        .map(|r| fs::Interaction {
            customer_id: r.user.clone(),
            sku: r.item.clone(),
            kind: fs::InteractionKind::Rate as i32,
            ts: ts(r.ts),
            value: 1.0,
            ..Default::default()
        })
        .collect();
    let t = Instant::now();
    let mut stream = client
        .train(pb::TrainRequest {
            source: Some(pb::train_request::Source::Inline(pb::InlineInteractions {
                interactions,
            })),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut info = None;
    while let Some(m) = stream.message().await? {
        if m.done {
            info = m.model;
        }
    }
    let train_s = t.elapsed().as_secs_f64();
    let info = info.ok_or_else(|| anyhow::anyhow!("training did not finish"))?;
    println!("## Train and Recommend over loopback gRPC\n");
    println!(
        "Train RPC with all {} MovieLens ratings inline (validation split, blend search, refit, save, swap): {:.1} s; model {} ({})\n",
        raw.len(),
        train_s,
        info.model_version,
        info.description
    );

    let mut users: Vec<String> = raw.iter().map(|r| r.user.clone()).collect();
    users.sort_unstable();
    users.dedup();
    let users = Arc::new(users);
    let mut clients = Vec::new();
    for _ in 0..args.connections.max(1) {
        clients.push(RecommendationClient::connect(url.clone()).await?);
    }
    let clients = Arc::new(clients);
    let counter = Arc::new(AtomicUsize::new(0));
    let make = {
        let (users, clients, counter) = (users.clone(), clients.clone(), counter.clone());
        move || {
            let i = counter.fetch_add(1, Ordering::Relaxed);
            let mut c = clients[i % clients.len()].clone();
            let customer = users[(i * 7919) % users.len()].clone();
            async move {
                c.recommend(pb::RecommendRequest {
                    customer_id: customer,
                    k: 10,
                    options: None,
                })
                .await
                .is_ok_and(|r| r.get_ref().items.len() == 10)
            }
        }
    };
    let duration = Duration::from_secs(args.seconds);
    let _ = closed_loop(4, Duration::from_secs(1), make.clone()).await;
    println!(
        "| load | requests | req/s | p50 ms | p99 ms | p99.9 ms | errors |\n|---|---|---|---|---|---|---|"
    );
    let (open, lag) = open_loop(args.rate, duration, make.clone()).await;
    let l = &open.latencies;
    println!(
        "| open loop {:.0} req/s (generator lag p99 {lag:.1} ms) | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
        args.rate,
        open.requests,
        open.throughput(),
        l.percentile(50.0),
        l.percentile(99.0),
        l.percentile(99.9),
        l.errors
    );
    let seq = closed_loop(1, duration / 2, make.clone()).await;
    let l = &seq.latencies;
    println!(
        "| sequential (1 in flight) | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
        seq.requests,
        seq.throughput(),
        l.percentile(50.0),
        l.percentile(99.0),
        l.percentile(99.9),
        l.errors
    );
    let sat = closed_loop(32, duration, make).await;
    let l = &sat.latencies;
    println!(
        "| saturation (32 concurrent) | {} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
        sat.requests,
        sat.throughput(),
        l.percentile(50.0),
        l.percentile(99.0),
        l.percentile(99.9),
        l.errors
    );
    drop(clients);
    drop(client);
    let _ = rec_handle.shutdown().await;
    let _ = fs_handle.shutdown().await;
    Ok(())
}
