//! Shared pieces of the benchmark binaries: latency recording and open-loop load.

pub mod churn_ceiling;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The runtime the benches' servers run on: its own worker threads (2, like a 2-CPU pod;
/// `AUGUR_BENCH_SERVER_THREADS` overrides), apart from the load generator's runtime, so that the
/// generator's scheduling does not show up as server latency and the server's work does not
/// hold up the generator's timers; both still share the machine's cores.
pub fn server_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(
                std::env::var("AUGUR_BENCH_SERVER_THREADS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(2),
            )
            .thread_name("server")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("server runtime: {e}"))
    })
}

/// Latency samples in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    pub micros: Vec<u64>,
    pub errors: u64,
}

impl Latencies {
    pub fn percentile(&self, p: f64) -> f64 {
        if self.micros.is_empty() {
            return f64::NAN;
        }
        let mut v = self.micros.clone();
        v.sort_unstable();
        let idx = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
        v[idx.min(v.len() - 1)] as f64 / 1000.0
    }
}

/// Result of a load run.
#[derive(Debug, Clone)]
pub struct Run {
    pub requests: u64,
    pub elapsed: Duration,
    pub latencies: Latencies,
}

impl Run {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
}

/// Open-loop load: requests are started on a fixed schedule of `rate` per second for
/// `duration`, whether or not earlier ones have finished (no coordinated omission: a slow
/// server does not slow the arrivals). Latency is measured from each request's *scheduled*
/// start, so a request the generator started late counts its wait, as a client on that
/// schedule would see it; until 2026-12-02 it was measured from the request task's first poll,
/// which left that wait out. The schedule is kept by an OS thread of its own that sleeps on the
/// kernel's high-resolution timer and spawns each request onto the calling runtime when it is
/// due (since 2026-12-02; before, a task on tokio's 1 ms timer wheel started the requests in
/// bursts once per millisecond, each up to about a millisecond late even on an idle machine).
/// `lag` reports how late the generator started requests (p99, ms): the part of the latency
/// that is the generator's own delay.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, make: F) -> (Run, f64)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let handle = tokio::runtime::Handle::current();
    let generator = std::thread::Builder::new()
        .name("load-generator".into())
        .spawn(move || {
            let mut handles = Vec::with_capacity(total as usize);
            let mut lag = Latencies::default();
            for i in 0..total {
                let scheduled = start + interval.mul_f64(i as f64);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                lag.micros.push(scheduled.elapsed().as_micros() as u64);
                let fut = make();
                handles.push(handle.spawn(async move {
                    let ok = fut.await;
                    (ok, scheduled.elapsed().as_micros() as u64)
                }));
            }
            (handles, lag)
        })
        .unwrap_or_else(|e| panic!("load generator thread: {e}"));
    let (handles, lag) = match tokio::task::spawn_blocking(move || generator.join()).await {
        Ok(Ok(r)) => r,
        _ => panic!("the load generator thread panicked"),
    };
    let mut latencies = Latencies::default();
    for h in handles {
        match h.await {
            Ok((true, us)) => latencies.micros.push(us),
            _ => latencies.errors += 1,
        }
    }
    let elapsed = start.elapsed();
    (
        Run {
            requests: total,
            elapsed,
            latencies,
        },
        lag.percentile(99.0),
    )
}

/// Closed-loop load: `workers` concurrent callers as fast as they can for `duration`.
pub async fn closed_loop<F, Fut>(workers: usize, duration: Duration, make: F) -> Run
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = bool> + Send + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..workers {
        let make = make.clone();
        handles.push(tokio::spawn(async move {
            let mut l = Latencies::default();
            while start.elapsed() < duration {
                let t = Instant::now();
                if make().await {
                    l.micros.push(t.elapsed().as_micros() as u64);
                } else {
                    l.errors += 1;
                }
            }
            l
        }));
    }
    let mut all = Latencies::default();
    for h in handles {
        if let Ok(l) = h.await {
            all.micros.extend(l.micros);
            all.errors += l.errors;
        }
    }
    Run {
        requests: all.micros.len() as u64 + all.errors,
        elapsed: start.elapsed(),
        latencies: all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// The generator stalls for 30 ms while creating its first request (as when it shares a
    /// runtime with a busy server): the requests due in that time start late, and their
    /// latency must include the wait even though each finishes at once when polled. Measured
    /// from the first poll (the code before 2026-12-02) every latency here is about zero.
    #[tokio::test(flavor = "current_thread")]
    async fn open_loop_counts_the_wait_of_a_late_start() {
        let calls = Arc::new(AtomicUsize::new(0));
        let (run, lag) = open_loop(1000.0, Duration::from_millis(60), {
            let calls = calls.clone();
            move || {
                if calls.fetch_add(1, Ordering::Relaxed) == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
                async { true }
            }
        })
        .await;
        assert_eq!(run.requests, 60);
        assert_eq!(run.latencies.micros.len(), 60);
        let late = run
            .latencies
            .micros
            .iter()
            .filter(|&&us| us >= 15_000)
            .count();
        // Requests scheduled at 0-15 ms were started at >= 30 ms: at least 15 waited >= 15 ms.
        assert!(
            late >= 15,
            "{late} requests counted a wait of 15 ms or more"
        );
        assert!(lag >= 15.0, "generator lag p99 {lag} ms");
    }
}
