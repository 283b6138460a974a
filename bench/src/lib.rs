//! Shared pieces of the benchmark binaries: latency recording and open-loop load.

pub mod churn_ceiling;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

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
/// server does not slow the arrivals). Latency is measured from the moment each request is
/// started; the tokio timer has 1 ms resolution, so arrivals come in small bursts within each
/// millisecond. `lag` reports how late the generator started requests (p99, ms), which shows
/// when the load generator itself could not keep up.
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, make: F) -> (Run, f64)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool> + Send + 'static,
{
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()) as u64;
    let mut handles = Vec::with_capacity(total as usize);
    let mut lag = Latencies::default();
    let mut i = 0u64;
    while i < total {
        let now = Instant::now();
        // Start every request whose time has come.
        while i < total && start + interval.mul_f64(i as f64) <= now {
            let scheduled = start + interval.mul_f64(i as f64);
            lag.micros
                .push(now.duration_since(scheduled).as_micros() as u64);
            let fut = make();
            let lat = lat.clone();
            handles.push(tokio::spawn(async move {
                let t = Instant::now();
                let ok = fut.await;
                let us = t.elapsed().as_micros() as u64;
                let mut l = lat.lock().await;
                if ok {
                    l.micros.push(us);
                } else {
                    l.errors += 1;
                }
            }));
            i += 1;
        }
        if i < total {
            tokio::time::sleep_until((start + interval.mul_f64(i as f64)).into()).await;
        }
    }
    for h in handles {
        let _ = h.await;
    }
    let elapsed = start.elapsed();
    let latencies = lat.lock().await.clone();
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
