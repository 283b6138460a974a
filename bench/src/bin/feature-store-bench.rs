//! Feature-store benchmark: ingest throughput (SQLite and PostgreSQL) and GetOnlineFeatures
//! latency / throughput over loopback gRPC at batch sizes 1, 10 and 100 with the full customer
//! view. Prints a Markdown report (see BENCHMARKS.md for the protocol).

use std::time::{Duration, Instant};

use augur_bench::{closed_loop, open_loop, server_runtime};
use augur_feature_store::Config;
use augur_proto::featurestore as pb;
use augur_proto::featurestore::feature_store_client::FeatureStoreClient;
use augur_runtime::{Secret, ServerConfig};
use clap::Parser;
use tonic::transport::Channel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
struct Args {
    /// Customers in the synthetic dataset.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Events per Ingest call.
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Seconds per latency measurement.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Skip PostgreSQL.
    #[arg(long)]
    no_postgres: bool,
    /// Runs per ingest configuration.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Concurrent ingest callers.
    #[arg(long, default_value_t = 2)]
    producers: usize,
    /// HTTP/2 connections the read load is spread over.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Batch sizes of the GetOnlineFeatures measurements.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    batches: Vec<usize>,
    /// Skip the ingest matrix (for profiling the read path).
    #[arg(long)]
    reads_only: bool,
    /// Only measure ingest (for profiling).
    #[arg(long)]
    ingest_only: bool,
    /// Also measure single-customer GetOnlineFeatures at this rate (req/s) alone and while a
    /// caller keeps reading point-in-time features of `--historical-batch` customers (a model
    /// service's Train); 0 = skip.
    #[arg(long, default_value_t = 1_000.0)]
    interference_rate: f64,
    /// Customers per GetHistoricalFeatures call of the interference measurement.
    #[arg(long, default_value_t = 2_000)]
    historical_batch: usize,
    /// As-of time of those calls, in days before the dataset's end (which is today); unset:
    /// 2100-01-01, every event replayed. The dataset spans 365 days, so 270 asks for the state
    /// a quarter of the way in, with three quarters of each customer's events after it.
    #[arg(long)]
    historical_days_back: Option<u32>,
    /// Serve the read measurements from PostgreSQL (`AUGUR_TEST_POSTGRES_URL` or the local
    /// test server) instead of SQLite.
    #[arg(long)]
    postgres_reads: bool,
    /// Customer features the GetOnlineFeatures table asks for (comma-separated; empty: the
    /// full view), e.g. a model service's subset.
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
}

async fn start(
    config: &Config,
) -> anyhow::Result<(augur_runtime::ServerHandle, FeatureStoreClient<Channel>)> {
    let config = config.clone();
    let handle = server_runtime()
        .spawn(async move {
            let (server, _app) = augur_feature_store::build(&config).await?;
            anyhow::Ok(server.spawn().await?)
        })
        .await??;
    let channel = tonic::transport::Endpoint::from_shared(handle.url())?
        .tcp_nodelay(true)
        .connect()
        .await?;
    let client = FeatureStoreClient::new(channel)
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    Ok((handle, client))
}

fn config(dir: &std::path::Path, url: Option<String>) -> Config {
    Config {
        server: ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            max_concurrent_requests: 4096,
            ..ServerConfig::default()
        },
        data_dir: dir.to_path_buf(),
        hash_key: Secret::new("benchmark-hash-key-000000"),
        database_url: Secret::new(url.unwrap_or_default()),
        sqlite_synchronous: std::env::var("SYNC").unwrap_or("full".into()),
        ..Config::default()
    }
}

/// Ingests everything in batches; returns events/s.
async fn ingest(
    client: &FeatureStoreClient<Channel>,
    events: &[pb::Event],
    batch: usize,
    producers: usize,
) -> anyhow::Result<(f64, u64)> {
    // Requests are built before the clock starts; `producers` callers send them concurrently,
    // as independent producers would.
    let queue: Vec<pb::IngestRequest> = events
        .chunks(batch)
        .map(|c| pb::IngestRequest { events: c.to_vec() })
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(queue.into_iter()));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..producers.max(1) {
        let queue = queue.clone();
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u64;
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .next();
                let Some(req) = next else { break };
                let r = client.ingest(req).await?.into_inner();
                anyhow::ensure!(r.rejected.is_empty(), "rejected: {:?}", r.rejected.first());
                accepted += r.accepted;
            }
            anyhow::Ok(accepted)
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await??;
    }
    Ok((
        events.len() as f64 / started.elapsed().as_secs_f64(),
        accepted,
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let data = augur_demo::generate(&augur_demo::DemoConfig {
        customers: args.customers,
        products: 1_000,
        days: 365,
        ..augur_demo::DemoConfig::default()
    });
    let events = data.events;
    let customers: Vec<String> = {
        let mut v: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.payload {
                Some(pb::event::Payload::Customer(c)) => Some(c.customer_id.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v.dedup();
        v
    };
    println!("# Feature-store benchmark\n");
    println!(
        "dataset: synthetic demo generator, {} customers, {} events ({} generated in {:.1} s, not timed)\n",
        customers.len(),
        events.len(),
        events.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "## Ingest over loopback gRPC (unary Ingest; fresh store per run; median of {} runs, min-max in brackets)\n",
        args.runs
    );
    println!("| backend | events per call | concurrent producers | events/s |");
    println!("|---|---|---|---|");
    let sync = std::env::var("AUGUR_BENCH_SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "full".into());
    let matrix: &[usize] = if args.reads_only {
        &[]
    } else {
        &[1_000, 5_000, 10_000]
    };
    for &batch in matrix {
        for &producers in &[1usize, 2] {
            let mut rates = Vec::new();
            for _ in 0..args.runs {
                let dir = tempfile::tempdir()?;
                let mut c = config(dir.path(), None);
                c.sqlite_synchronous = sync.clone();
                let (h, client) = start(&c).await?;
                let (rate, accepted) = ingest(&client, &events, batch, producers).await?;
                anyhow::ensure!(accepted == events.len() as u64, "accepted {accepted}");
                rates.push(rate);
                drop(client);
                h.shutdown().await?;
            }
            rates.sort_by(f64::total_cmp);
            println!(
                "| SQLite (WAL, synchronous={sync}) | {batch} | {producers} | {:.0} [{:.0}-{:.0}] |",
                rates[rates.len() / 2],
                rates[0],
                rates[rates.len() - 1]
            );
        }
    }
    if !args.no_postgres && !args.reads_only {
        match augur_testkit::postgres::TestDb::create().await {
            Some(db) => {
                let pdir = tempfile::tempdir()?;
                let (ph, pc) = start(&config(pdir.path(), Some(db.url.clone()))).await?;
                let (prate, _) = ingest(&pc, &events, args.batch, args.producers).await?;
                println!(
                    "| PostgreSQL 15, 127.0.0.1 (one run) | {} | {} | {prate:.0} |",
                    args.batch, args.producers
                );
                drop(pc);
                ph.shutdown().await?;
                db.drop_db().await;
            }
            None => println!("| PostgreSQL | skipped: unreachable | | |"),
        }
    }

    // The latency measurements read a store holding the whole dataset.
    let dir = tempfile::tempdir()?;
    let read_db = if args.postgres_reads {
        Some(
            augur_testkit::postgres::TestDb::create()
                .await
                .ok_or_else(|| anyhow::anyhow!("--postgres-reads: PostgreSQL unreachable"))?,
        )
    } else {
        None
    };
    let (handle, client) =
        start(&config(dir.path(), read_db.as_ref().map(|d| d.url.clone()))).await?;
    println!(
        "\nread measurements served from {}",
        if read_db.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let _ = ingest(&client, &events, args.batch, args.producers).await?;

    if args.ingest_only {
        drop(client);
        handle.shutdown().await?;
        if let Some(db) = read_db {
            db.drop_db().await;
        }
        return Ok(());
    }
    // Several HTTP/2 connections, as several calling pods would open.
    let mut clients = vec![client.clone()];
    for _ in 1..args.connections.max(1) {
        let channel = tonic::transport::Endpoint::from_shared(handle.url())?
            .tcp_nodelay(true)
            .connect()
            .await?;
        clients.push(FeatureStoreClient::new(channel));
    }
    let total = augur_feature_store::features::CUSTOMER_FEATURES.len();
    if args.features.is_empty() {
        println!(
            "\n## GetOnlineFeatures, full customer view ({total} features), over loopback gRPC\n"
        );
    } else {
        println!(
            "\n## GetOnlineFeatures, {} of the customer view's {total} features ({}), over loopback gRPC\n",
            args.features.len(),
            args.features.join(", ")
        );
    }
    println!(
        "| batch | load | requests | throughput (req/s) | entities/s | p50 ms | p99 ms | p99.9 ms | errors |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let duration = Duration::from_secs(args.seconds);
    for (batch, rate) in [(1usize, 5_000.0), (10, 1_000.0), (100, 200.0)] {
        if !args.batches.contains(&batch) {
            continue;
        }
        let make = {
            let clients = clients.clone();
            let customers = customers.clone();
            let features = args.features.clone();
            let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            move || {
                let n = counter.load(std::sync::atomic::Ordering::Relaxed);
                let mut c = clients[(n / batch.max(1)) % clients.len()].clone();
                let i = counter.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                let ids: Vec<String> = (0..batch)
                    .map(|k| customers[(i + k * 7919) % customers.len()].clone())
                    .collect();
                let features = features.clone();
                async move {
                    c.get_online_features(pb::GetOnlineFeaturesRequest {
                        view: "customer".into(),
                        entity_ids: ids,
                        features,
                    })
                    .await
                    .is_ok()
                }
            }
        };
        // Warm-up.
        let _ = closed_loop(4, Duration::from_secs(1), make.clone()).await;
        let (open, lag) = open_loop(rate, duration, make.clone()).await;
        let l = &open.latencies;
        println!(
            "| {batch} | open loop {rate:.0} req/s (generator lag p99 {lag:.1} ms) | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
            open.requests,
            open.throughput(),
            open.throughput() * batch as f64,
            l.percentile(50.0),
            l.percentile(99.0),
            l.percentile(99.9),
            l.errors
        );
        let seq = closed_loop(1, duration / 2, make.clone()).await;
        let l = &seq.latencies;
        println!(
            "| {batch} | sequential (1 in flight) | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
            seq.requests,
            seq.throughput(),
            seq.throughput() * batch as f64,
            l.percentile(50.0),
            l.percentile(99.0),
            l.percentile(99.9),
            l.errors
        );
        let sat = closed_loop(32, duration, make).await;
        let l = &sat.latencies;
        println!(
            "| {batch} | saturation (32 concurrent) | {} | {:.0} | {:.0} | {:.3} | {:.3} | {:.3} | {} |",
            sat.requests,
            sat.throughput(),
            sat.throughput() * batch as f64,
            l.percentile(50.0),
            l.percentile(99.0),
            l.percentile(99.9),
            l.errors
        );
    }
    if args.interference_rate > 0.0 {
        interference(&args, &clients, &customers).await?;
    }
    drop(clients);
    drop(client);
    handle.shutdown().await?;
    if let Some(db) = read_db {
        db.drop_db().await;
    }
    Ok(())
}

/// Online reads of one customer, open loop, alone and while another connection keeps asking for
/// point-in-time features of `historical_batch` customers (as a churn Train does): the
/// historical replay must not stall the online path.
async fn interference(
    args: &Args,
    clients: &[FeatureStoreClient<Channel>],
    customers: &[String],
) -> anyhow::Result<()> {
    let rate = args.interference_rate;
    let duration = Duration::from_secs(args.seconds);
    println!(
        "\n## GetOnlineFeatures (1 customer, open loop {rate:.0} req/s) while point-in-time reads run\n"
    );
    let as_of = match args.historical_days_back {
        // The dataset ends at today's midnight (UTC).
        Some(days) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            now - now.rem_euclid(86_400) - i64::from(days) * 86_400
        }
        None => 4_102_444_800, // 2100-01-01: every event replayed
    };
    println!("historical as-of: {as_of} (unix seconds)\n");
    println!(
        "| background | online requests | p50 ms | p99 ms | p99.9 ms | errors | historical calls (customers each) | historical p50 ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let make = {
        let clients = clients.to_vec();
        let customers = customers.to_vec();
        let counter = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        move || {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut c = clients[i % clients.len()].clone();
            let id = customers[(i * 7919) % customers.len()].clone();
            async move {
                c.get_online_features(pb::GetOnlineFeaturesRequest {
                    view: "customer".into(),
                    entity_ids: vec![id],
                    features: vec![],
                })
                .await
                .is_ok()
            }
        }
    };
    let _ = closed_loop(4, Duration::from_secs(1), make.clone()).await;
    for background in [false, true] {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hist = background.then(|| {
            // Its own connection, as a model service's channel would be.
            let mut c = clients[0].clone();
            let ids: Vec<String> = customers
                .iter()
                .take(args.historical_batch)
                .cloned()
                .collect();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut took = Vec::new();
                let as_of = prost_types::Timestamp {
                    seconds: as_of,
                    nanos: 0,
                };
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = c
                        .get_historical_features(pb::GetHistoricalFeaturesRequest {
                            view: "customer".into(),
                            rows: ids
                                .iter()
                                .map(|id| pb::EntityAt {
                                    entity_id: id.clone(),
                                    as_of: Some(as_of),
                                })
                                .collect(),
                            features: vec![],
                        })
                        .await;
                    if r.is_err() {
                        break;
                    }
                    took.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                took
            })
        });
        let (run, _) = open_loop(rate, duration, make.clone()).await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (calls, p50) = match hist {
            Some(h) => {
                let mut took = h.await?;
                took.sort_by(f64::total_cmp);
                let p50 = took.get(took.len() / 2).copied().unwrap_or(f64::NAN);
                (
                    format!("{} ({})", took.len(), args.historical_batch),
                    format!("{p50:.0}"),
                )
            }
            None => ("-".into(), "-".into()),
        };
        let l = &run.latencies;
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.3} | {} | {calls} | {p50} |",
            if background {
                "GetHistoricalFeatures in a loop"
            } else {
                "none"
            },
            run.requests,
            l.percentile(50.0),
            l.percentile(99.0),
            l.percentile(99.9),
            l.errors
        );
    }
    Ok(())
}
