//! Load and overload benchmark of every service, over loopback gRPC with the generated clients.
//!
//! The whole platform runs in this process (as `augur up --demo`): demo data loaded, every
//! model trained. Then, for each service's main read RPC:
//!
//! 1. saturation: closed loop with many callers for a few seconds; the throughput reached is the
//!    saturation point;
//! 2. open loop (requests started on a fixed schedule whatever the server does) at half the
//!    saturation point: p50 / p99 / p999 of a comfortable load;
//! 3. open loop at twice the saturation point: the server must shed what it cannot take
//!    (RESOURCE_EXHAUSTED from the concurrency limit, or UNAVAILABLE) and keep the latency of the
//!    requests it accepts bounded, instead of queueing without limit; the process's resident
//!    memory is reported before and after.
//!
//! Every request carries a 2 s deadline. The servers use `server.max_concurrent_requests`
//! (`--max-concurrent`, default 64 as a CPU-sized production setting; the compiled default is
//! 512).
//!
//! Two set-ups:
//! - in process (default): the platform runs inside this process; the load generator shares the
//!   machine's cores with the servers, and the RSS reported is that of both together;
//! - split (`--server-cpus 0 --generator-cpus 1`): the platform is a separate `augur up --demo`
//!   process pinned with `taskset` to the server CPUs (`TOKIO_WORKER_THREADS` = their number),
//!   the generator pinned to the others, so neither steals the other's CPU and the RSS reported
//!   is the platform process's alone (`VmRSS`, and its peak `VmHWM` at the end).
//!
//! ```text
//! cargo run --release -p augur-bench --bin load-bench [-- --seconds 10 --only churn]
//! cargo build --release -p augur-cli -p augur-bench
//! target/release/load-bench --server-cpus 0 --generator-cpus 1
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use augur_bench::{Latencies, closed_loop, open_loop};
use augur_cli::train::{Model, train_missing};
use augur_proto::{churn, featurestore as fs, forecast, recommendation as rec, risk};
use clap::Parser;
use tonic::transport::Channel;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
struct Args {
    /// Seconds of each open-loop phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Seconds of the closed-loop saturation phase.
    #[arg(long, default_value_t = 5)]
    saturation_seconds: u64,
    /// Concurrent callers of the saturation phase (default: half of --max-concurrent, so that
    /// it measures capacity, not shedding).
    #[arg(long)]
    callers: Option<usize>,
    /// `server.max_concurrent_requests` of every service.
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// `server.max_concurrent_streams` (HTTP/2 streams per connection) of every service; the
    /// server's default when absent.
    #[arg(long)]
    max_streams: Option<u32>,
    /// `server.max_pending_accept_reset_streams` of every service; the server's default when
    /// absent.
    #[arg(long)]
    max_pending_resets: Option<usize>,
    /// `server.saturation_busy_ratio` of every service (1 keeps the concurrency limit fixed);
    /// the server's default when absent.
    #[arg(long)]
    busy_ratio: Option<f64>,
    /// Base rate of the open-loop phases (requests/s) instead of the measured closed-loop
    /// saturation, e.g. to offer the same load with and without an adaptive limit (which sheds
    /// in the closed loop too and so lowers the measured figure).
    #[arg(long)]
    base_rate: Option<f64>,
    /// Only this service (feature-store, recommendation, demand-forecast, churn, risk).
    #[arg(long)]
    only: Option<String>,
    /// Split set-up: run the platform as a separate `augur up --demo` process pinned to these
    /// CPUs (a `taskset -c` list such as `0` or `0-1`).
    #[arg(long)]
    server_cpus: Option<String>,
    /// Split set-up: also cap the platform process at this many CPUs' worth of time (CFS quota
    /// through a cgroup; needs root), e.g. 0.25, so that a generator on one core can offer twice
    /// what the servers take even for the cheapest RPCs.
    #[arg(long)]
    server_cpu_quota: Option<f64>,
    /// Split set-up: CPUs of this load generator (a `taskset -c` list).
    #[arg(long, default_value = "1")]
    generator_cpus: String,
    /// Split set-up: the `augur` binary (default: next to this one, as `cargo build --release`
    /// puts it).
    #[arg(long)]
    augur_bin: Option<std::path::PathBuf>,
}

/// Outcomes by gRPC code, shared by the requests of one phase.
#[derive(Clone, Default)]
struct Codes(
    Arc<Mutex<BTreeMap<String, u64>>>,
    Arc<Mutex<BTreeMap<String, String>>>,
);

impl Codes {
    fn record(&self, r: Result<(), tonic::Status>) -> bool {
        let key = match &r {
            Ok(()) => "OK".to_string(),
            Err(s) => format!("{:?}", s.code()),
        };
        if let (Err(s), Ok(mut m)) = (&r, self.1.lock()) {
            m.entry(key.clone()).or_insert_with(|| {
                // The message and its causes (a transport error says little on its own: the
                // HTTP/2 reason and who closed the connection are in the sources).
                let mut text: String = s.message().chars().take(120).collect();
                let mut cause = std::error::Error::source(s);
                while let Some(c) = cause {
                    text.push_str(" <- ");
                    text.extend(c.to_string().chars().take(160));
                    cause = c.source();
                }
                text
            });
        }
        if let Ok(mut m) = self.0.lock() {
            *m.entry(key).or_default() += 1;
        }
        r.is_ok()
    }

    /// One message per non-OK code seen so far (what "Unknown" or "Cancelled" were).
    fn messages(&self) -> BTreeMap<String, String> {
        self.1.lock().map(|m| m.clone()).unwrap_or_default()
    }

    fn take(&self) -> BTreeMap<String, u64> {
        self.0
            .lock()
            .map(|mut m| std::mem::take(&mut *m))
            .unwrap_or_default()
    }
}

/// `/proc/<pid>/<file>` of the platform process (this one when `pid` is `None`).
fn proc_file(pid: Option<u32>, file: &str) -> Option<String> {
    let path = pid.map_or_else(
        || format!("/proc/self/{file}"),
        |p| format!("/proc/{p}/{file}"),
    );
    std::fs::read_to_string(path).ok()
}

/// A `/proc/<pid>/status` memory figure (`VmRSS`, `VmHWM`) in MiB of the platform process (this
/// one when it runs in process).
fn proc_mib(pid: Option<u32>, key: &str) -> f64 {
    proc_file(pid, "status")
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU seconds (user + system) a process has used so far: `/proc/<pid>/stat` (this process
/// when `pid` is `None`), in the kernel's fixed 100 ticks a second; NaN where unreadable.
fn proc_cpu_secs(pid: Option<u32>) -> f64 {
    proc_file(pid, "stat")
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at field 3; utime
            // and stime are fields 14 and 15.
            let rest = &s[s.rfind(')')? + 1..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
            Some(ticks / 100.0)
        })
        .unwrap_or(f64::NAN)
}

/// CPU used by the platform and by this generator over one phase, in cores.
struct CpuUse {
    wall: std::time::Instant,
    server: f64,
    generator: f64,
}

impl CpuUse {
    fn start(pid: Option<u32>) -> CpuUse {
        CpuUse {
            wall: std::time::Instant::now(),
            server: pid.map_or(f64::NAN, |p| proc_cpu_secs(Some(p))),
            generator: proc_cpu_secs(None),
        }
    }

    /// `server ... cores, generator ... cores`, and a warning when the generator used at least
    /// 90% of its CPUs (the offered load is then what it could send, not what was asked).
    fn report(&self, pid: Option<u32>, generator_cpus: usize) -> String {
        let secs = self.wall.elapsed().as_secs_f64().max(1e-9);
        let generator = (proc_cpu_secs(None) - self.generator) / secs;
        match pid {
            Some(p) => {
                let server = (proc_cpu_secs(Some(p)) - self.server) / secs;
                let bound = if generator >= 0.9 * generator_cpus as f64 {
                    " (generator-bound: its CPUs were busy, the server was not what limited)"
                } else {
                    ""
                };
                format!("server CPU {server:.2} cores, generator {generator:.2} cores{bound}")
            }
            None => format!("process CPU {generator:.2} cores (servers and generator together)"),
        }
    }
}

/// Where the platform runs.
enum Platform {
    InProcess(augur_cli::up::Platform),
    Child {
        child: std::process::Child,
        urls: BTreeMap<&'static str, String>,
    },
}

impl Platform {
    fn url(&self, name: &str) -> String {
        match self {
            Platform::InProcess(p) => p.url(name).unwrap_or_default(),
            Platform::Child { urls, .. } => urls.get(name).cloned().unwrap_or_default(),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Platform::InProcess(_) => None,
            Platform::Child { child, .. } => Some(child.id()),
        }
    }

    async fn shutdown(self) -> anyhow::Result<()> {
        match self {
            Platform::InProcess(p) => p.shutdown().await,
            Platform::Child { mut child, .. } => {
                let _ = std::process::Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status();
                let mut exited = false;
                for _ in 0..300 {
                    if child.try_wait()?.is_some() {
                        exited = true;
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if !exited {
                    child.kill()?;
                    child.wait()?;
                }
                // The --server-cpu-quota cgroup, if any (empty now).
                for d in ["/sys/fs/cgroup/cpu", "/sys/fs/cgroup"] {
                    let _ = std::fs::remove_dir(format!("{d}/augur-load-bench-{}", child.id()));
                }
                Ok(())
            }
        }
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Number of CPUs in a `taskset -c` list ("0", "0,2", "0-3").
fn cpu_count(list: &str) -> usize {
    list.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => match (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
                (Ok(a), Ok(b)) if b >= a => b - a + 1,
                _ => 1,
            },
            None => 1,
        })
        .sum::<usize>()
        .max(1)
}

/// Puts `pid` in a new cgroup limited to `quota` CPUs (cgroup v1 `cpu` controller, or v2 with
/// the `cpu` controller at /sys/fs/cgroup).
fn cpu_quota(pid: u32, quota: f64) -> anyhow::Result<std::path::PathBuf> {
    anyhow::ensure!(
        quota > 0.0 && quota.is_finite(),
        "must be a positive number"
    );
    let period = 100_000u64;
    let us = ((quota * period as f64) as u64).max(1_000);
    let v1 = std::path::Path::new("/sys/fs/cgroup/cpu");
    let (dir, files): (std::path::PathBuf, Vec<(&str, String)>) =
        if v1.join("cpu.cfs_quota_us").exists() {
            (
                v1.join(format!("augur-load-bench-{pid}")),
                vec![
                    ("cpu.cfs_period_us", period.to_string()),
                    ("cpu.cfs_quota_us", us.to_string()),
                ],
            )
        } else {
            (
                std::path::PathBuf::from(format!("/sys/fs/cgroup/augur-load-bench-{pid}")),
                vec![("cpu.max", format!("{us} {period}"))],
            )
        };
    std::fs::create_dir_all(&dir)?;
    for (f, v) in files {
        std::fs::write(dir.join(f), v)?;
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
    Ok(dir)
}

/// Starts `augur up --demo` pinned to `cpus` and waits (up to 15 min) for "Augur is up".
fn spawn_platform(
    args: &Args,
    cpus: &str,
    dir: &std::path::Path,
    config: &std::path::Path,
) -> anyhow::Result<Platform> {
    use std::io::{BufRead, Write};
    let bin = match &args.augur_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("augur"),
    };
    anyhow::ensure!(
        bin.exists(),
        "{} not found: build it with `cargo build --release -p augur-cli` or pass --augur-bin",
        bin.display()
    );
    let names = [
        ("feature-store", "--feature-store-port"),
        ("recommendation", "--recommendation-port"),
        ("demand-forecast", "--forecast-port"),
        ("churn", "--churn-port"),
        ("risk", "--risk-port"),
    ];
    let mut cmd = std::process::Command::new("taskset");
    cmd.arg("-c").arg(cpus).arg(&bin).arg("up").arg("--demo");
    cmd.arg("--data-dir").arg(dir.join("data"));
    cmd.arg("--config").arg(config);
    let mut urls = BTreeMap::new();
    for (name, flag) in names {
        let port = free_port()?;
        cmd.arg(flag).arg(port.to_string());
        urls.insert(name, format!("http://127.0.0.1:{port}"));
    }
    let log = dir.join("augur-up.log");
    println!(
        "load-bench: starting the platform (augur up --demo), its log: {}",
        log.display()
    );
    cmd.env("TOKIO_WORKER_THREADS", cpu_count(cpus).to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log)?);
    let mut child = cmd.spawn()?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout of augur up"))?;
    let (tx, rx) = std::sync::mpsc::channel();
    // The platform logs to stdout: every line goes to the log file too (set RUST_LOG, e.g.
    // `info,tonic=debug`, to see why connections fail).
    let mut log_out = std::fs::OpenOptions::new().append(true).open(&log)?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = writeln!(log_out, "{line}");
            if line.starts_with("Augur is up") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(900)).is_err() {
        let _ = child.kill();
        anyhow::bail!("augur up did not report \"Augur is up\" within 15 minutes");
    }
    // Capped once it is up: demo loading and training run at full speed.
    if let Some(q) = args.server_cpu_quota {
        match cpu_quota(child.id(), q) {
            Ok(dir) => println!(
                "load-bench: platform capped at {q} CPU through {}",
                dir.display()
            ),
            Err(e) => {
                let _ = child.kill();
                anyhow::bail!("--server-cpu-quota {q}: {e}");
            }
        }
    }
    Ok(Platform::Child { child, urls })
}

fn fmt_codes(c: &BTreeMap<String, u64>) -> String {
    c.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn line(phase: &str, rate: f64, run: &augur_bench::Run, lag: f64, codes: &BTreeMap<String, u64>) {
    let l: &Latencies = &run.latencies;
    println!(
        "  {phase:<22} offered {rate:>8.0}/s  ok {:>8.0}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  gen lag p99 {lag:>6.2} ms  [{}]",
        l.micros.len() as f64 / run.elapsed.as_secs_f64(),
        l.percentile(50.0),
        l.percentile(99.0),
        l.percentile(99.9),
        fmt_codes(codes)
    );
}

/// Runs the three phases for one RPC; `call(i)` makes the i-th request.
async fn phases<F, Fut>(name: &str, args: &Args, pid: Option<u32>, call: F)
where
    F: Fn(u64) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<(), tonic::Status>> + Send + 'static,
{
    println!("\n{name}");
    let what = if pid.is_some() { "server" } else { "process" };
    let codes = Codes::default();
    let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let make = {
        let codes = codes.clone();
        let call = call.clone();
        let counter = counter.clone();
        move || {
            let i = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let fut = call(i);
            let codes = codes.clone();
            async move { codes.record(fut.await) }
        }
    };
    // Warm up (connections, caches).
    let _ = closed_loop(8, Duration::from_secs(1), make.clone()).await;
    codes.take();

    let callers = args.callers.unwrap_or((args.max_concurrent / 2).max(1));
    // Only read in the split set-up (in process there is one figure for both).
    let generator_cpus = cpu_count(&args.generator_cpus);
    let cpu = CpuUse::start(pid);
    let sat = closed_loop(
        callers,
        Duration::from_secs(args.saturation_seconds),
        make.clone(),
    )
    .await;
    let sat_codes = codes.take();
    let saturation = sat.latencies.micros.len() as f64 / sat.elapsed.as_secs_f64();
    println!(
        "  {:<22} {:>8.0} ok/s with {} callers (p99 {:.2} ms) [{}]",
        "saturation (closed)",
        saturation,
        callers,
        sat.latencies.percentile(99.0),
        fmt_codes(&sat_codes)
    );
    println!("  {:<22} {}", "", cpu.report(pid, generator_cpus));
    if saturation < 1.0 {
        println!("  (no successful requests: skipping the open-loop phases)");
        return;
    }
    let d = Duration::from_secs(args.seconds);
    for (label, factor) in [("open loop 0.5x sat", 0.5), ("open loop 2x sat", 2.0)] {
        let rss_before = proc_mib(pid, "VmRSS:");
        let rate = args.base_rate.unwrap_or(saturation) * factor;
        let cpu = CpuUse::start(pid);
        let (run, lag) = open_loop(rate, d, make.clone()).await;
        let c = codes.take();
        line(label, rate, &run, lag, &c);
        println!("  {:<22} {}", "", cpu.report(pid, generator_cpus));
        println!(
            "  {:<22} {what} RSS {rss_before:.0} MiB -> {:.0} MiB (peak {:.0} MiB)",
            "",
            proc_mib(pid, "VmRSS:"),
            proc_mib(pid, "VmHWM:"),
        );
    }
    for (code, msg) in codes.messages() {
        println!("  {code}: e.g. {msg:?}");
    }
}

async fn channel(url: String) -> anyhow::Result<Channel> {
    Ok(Channel::from_shared(url)?
        .timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?)
}

fn customer(i: u64) -> String {
    format!("cust-{:05}", 1 + (i * 7919) % 2000)
}

fn sku(i: u64) -> String {
    format!("sku-{:05}", 1 + (i * 104_729) % 300)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    if args.server_cpus.is_some() {
        // Pin every thread of this process (the runtime is not started yet) to the generator CPUs.
        let status = std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", &args.generator_cpus])
            .arg(std::process::id().to_string())
            .stdout(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(
            status.success(),
            "taskset -p -c {} failed",
            args.generator_cpus
        );
        workers = cpu_count(&args.generator_cpus);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("augur.toml");
    let mut server = format!(
        "[server]\nmax_concurrent_requests = {}\n",
        args.max_concurrent
    );
    if let Some(n) = args.max_streams {
        server += &format!("max_concurrent_streams = {n}\n");
    }
    if let Some(n) = args.max_pending_resets {
        server += &format!("max_pending_accept_reset_streams = {n}\n");
    }
    if let Some(r) = args.busy_ratio {
        server += &format!("saturation_busy_ratio = {r:?}\n");
    }
    std::fs::write(&config, server)?;
    let p = match &args.server_cpus {
        Some(cpus) => spawn_platform(&args, cpus, dir.path(), &config)?,
        None => {
            let up = augur_cli::up::UpArgs {
                data_dir: dir.path().join("data"),
                feature_store_port: 0,
                recommendation_port: 0,
                forecast_port: 0,
                churn_port: 0,
                risk_port: 0,
                config: Some(config),
                ..Default::default()
            };
            let p = Platform::InProcess(augur_cli::up::start(&up).await?);
            augur_cli::demo::load(&p.url("feature-store"), 42, false).await?;
            let models: Vec<_> = Model::ALL
                .iter()
                .filter(|m| m.risk == augur_cli::train::RiskModel::Order)
                .map(|m| (*m, p.url(m.service.name())))
                .collect();
            train_missing(&models).await;
            p
        }
    };
    let pid = p.pid();
    let url = |n: &str| p.url(n);
    println!(
        "\nload-bench: {}, max_concurrent_requests {}, max_concurrent_streams {}, max_pending_accept_reset_streams {}, saturation_busy_ratio {}, {} s per open-loop phase, 2 s deadline",
        match &args.server_cpus {
            Some(cpus) => format!(
                "split: platform process {} on CPUs {cpus}, generator on CPUs {}",
                pid.unwrap_or(0),
                args.generator_cpus
            ),
            None => format!(
                "in process on {} cores",
                std::thread::available_parallelism().map_or(0, |n| n.get())
            ),
        },
        args.max_concurrent,
        args.max_streams.map_or_else(
            || format!(
                "{} (default)",
                augur_runtime::ServerConfig::default().max_concurrent_streams
            ),
            |n| n.to_string()
        ),
        args.max_pending_resets.map_or_else(
            || format!(
                "{} (default)",
                augur_runtime::ServerConfig::default().max_pending_accept_reset_streams
            ),
            |n| n.to_string()
        ),
        args.busy_ratio.map_or_else(
            || format!(
                "{} (default)",
                augur_runtime::ServerConfig::default().saturation_busy_ratio
            ),
            |r| r.to_string()
        ),
        args.seconds
    );
    let want = |n: &str| args.only.as_deref().is_none_or(|o| o == n);

    if want("feature-store") {
        let c =
            fs::feature_store_client::FeatureStoreClient::new(channel(url("feature-store")).await?);
        phases(
            "feature-store GetOnlineFeatures (1 customer)",
            &args,
            pid,
            move |i| {
                let mut c = c.clone();
                async move {
                    c.get_online_features(fs::GetOnlineFeaturesRequest {
                        view: "customer".into(),
                        entity_ids: vec![customer(i)],
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                }
            },
        )
        .await;
    }
    if want("recommendation") {
        let c = rec::recommendation_client::RecommendationClient::new(
            channel(url("recommendation")).await?,
        );
        phases("recommendation Recommend (k 10)", &args, pid, move |i| {
            let mut c = c.clone();
            async move {
                c.recommend(rec::RecommendRequest {
                    customer_id: customer(i),
                    k: 10,
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
        })
        .await;
    }
    if want("demand-forecast") {
        let c = forecast::demand_forecast_client::DemandForecastClient::new(
            channel(url("demand-forecast")).await?,
        );
        phases(
            "demand-forecast Forecast (1 SKU, 14 days)",
            &args,
            pid,
            move |i| {
                let mut c = c.clone();
                async move {
                    c.forecast(forecast::ForecastRequest {
                        series: vec![forecast::SeriesInput {
                            id: sku(i),
                            source: Some(forecast::series_input::Source::FeatureStore(
                                forecast::SeriesKey {
                                    sku: sku(i),
                                    ..Default::default()
                                },
                            )),
                            ..Default::default()
                        }],
                        horizon: 14,
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                }
            },
        )
        .await;
    }
    if want("churn") {
        let c = churn::churn_client::ChurnClient::new(channel(url("churn")).await?);
        phases("churn PredictChurn (1 customer)", &args, pid, move |i| {
            let mut c = c.clone();
            async move {
                c.predict_churn(churn::PredictChurnRequest {
                    customer_ids: vec![customer(i)],
                    ..Default::default()
                })
                .await
                .map(|_| ())
            }
        })
        .await;
    }
    if want("risk") {
        let c = risk::risk_client::RiskClient::new(channel(url("risk")).await?);
        phases(
            "risk ScoreOrder (checkout order in the request)",
            &args,
            pid,
            move |i| {
                let mut c = c.clone();
                async move {
                    c.score_order(risk::ScoreOrderRequest {
                        target: Some(risk::score_order_request::Target::Order(fs::Order {
                            order_id: format!("load-{i}"),
                            customer_id: customer(i),
                            currency: "EUR".into(),
                            payment_method: "card".into(),
                            billing_country: "DE".into(),
                            shipping_country: if i % 10 == 0 { "US" } else { "DE" }.into(),
                            device_fingerprint: format!("device-{}", i % 500),
                            ip_address: format!("203.0.113.{}", i % 250),
                            lines: vec![fs::OrderLine {
                                sku: sku(i),
                                quantity: 1 + (i % 3) as i64,
                                unit_price: 19.99,
                                ..Default::default()
                            }],
                            ..Default::default()
                        })),
                    })
                    .await
                    .map(|_| ())
                }
            },
        )
        .await;
    }
    p.shutdown().await?;
    Ok(())
}
