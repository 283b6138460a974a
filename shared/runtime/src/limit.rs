//! The concurrency limit of the guard, lowered while the process's CPU is saturated.
//!
//! A fixed limit on requests in flight sheds only what reaches it. When a cheap RPC is offered
//! more than the CPU can handle, the in-flight count stays low (each call is quick once it
//! runs) while the excess waits in front of the server: in the client's queue for an HTTP/2
//! stream, in the kernel and in the HTTP/2 layer. Every call is then accepted late and the
//! latency of accepted calls grows to the client's deadline. Refusing a call costs far less CPU
//! than serving it, so the cure is to refuse more of them — but only the CPU shows that this is
//! needed.
//!
//! [`AdaptiveLimit`] holds the effective limit between `min` (the runtime's worker count: one
//! call per worker) and `max` (`server.max_concurrent_requests`). A sampler
//! ([`AdaptiveLimit::run_sampler`]) reads the tokio runtime's busy time every
//! [`SAMPLE_INTERVAL`]: the share of wall time its workers spent running tasks rather than
//! parked. At or above `busy_ratio` the CPU is saturated and the limit is cut by a quarter;
//! below it the limit grows back by `max / 32` per sample (additive increase, multiplicative
//! decrease). Under sustained overload the limit settles where the server refuses most of the
//! excess at once and serves the rest promptly; without overload it stays at `max`.
//!
//! The busy time is process-wide: services that share a process (`augur up`) share the CPU, so
//! each one's limit reacts to the saturation they cause together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often the sampler reads the runtime's busy time.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Effective concurrency limit and the calls in flight.
#[derive(Debug)]
pub struct AdaptiveLimit {
    min: usize,
    max: usize,
    busy_ratio: f64,
    limit: AtomicUsize,
    in_flight: AtomicUsize,
    /// Calls admitted and refused since the last sample.
    admitted: AtomicU64,
    refused: AtomicU64,
}

/// One call in flight; gives its place back when dropped.
#[derive(Debug)]
pub struct InFlight {
    owner: Arc<AdaptiveLimit>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.owner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AdaptiveLimit {
    /// Starts at `max`. `busy_ratio` >= 1.0 never counts as saturated (a fixed limit).
    pub fn new(min: usize, max: usize, busy_ratio: f64) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            min: min.clamp(1, max),
            max,
            busy_ratio,
            limit: AtomicUsize::new(max),
            in_flight: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A place for one more call, or `None` when `limit` calls are in flight.
    pub fn try_acquire(self: &Arc<Self>) -> Option<InFlight> {
        let limit = self.limit.load(Ordering::Acquire);
        let prev = self.in_flight.fetch_add(1, Ordering::AcqRel);
        if prev >= limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(InFlight {
            owner: self.clone(),
        })
    }

    /// The effective limit now.
    pub fn current(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    /// The configured ceiling.
    pub fn max(&self) -> usize {
        self.max
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Applies one busy-time sample (share of wall time the workers were running tasks) with
    /// the calls admitted and refused since the previous one.
    pub fn observe(&self, busy: f64) -> usize {
        let calls = Calls {
            admitted: self.admitted.swap(0, Ordering::Relaxed),
            refused: self.refused.swap(0, Ordering::Relaxed),
        };
        let next = next_limit(
            self.current(),
            busy,
            self.busy_ratio,
            calls,
            self.min,
            self.max,
        );
        self.limit.store(next, Ordering::Release);
        next
    }

    /// Samples the current tokio runtime's busy time every [`SAMPLE_INTERVAL`] and adapts the
    /// limit, until dropped (run it as a server background task). With `busy_ratio` >= 1.0 it
    /// returns at once: the limit stays at `max`.
    pub async fn run_sampler(self: Arc<Self>) {
        if self.busy_ratio >= 1.0 {
            return;
        }
        let mut busy = BusyMeter::new(tokio::runtime::Handle::current());
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut saturated = false;
        loop {
            tick.tick().await;
            let Some(ratio) = busy.sample() else {
                continue;
            };
            let before = self.current();
            let after = self.observe(ratio);
            let now_saturated = ratio >= self.busy_ratio;
            if now_saturated != saturated {
                saturated = now_saturated;
                tracing::debug!(
                    busy = ratio,
                    limit_before = before,
                    limit = after,
                    saturated,
                    "concurrency limit adapting to CPU saturation"
                );
            }
        }
    }
}

/// Calls admitted and refused during one sample interval.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calls {
    pub admitted: u64,
    pub refused: u64,
}

/// Refusals per admitted call above which a saturated CPU is taken to be busy refusing (callers
/// retrying at once): a lower limit would then only lose throughput, so it grows back.
pub const REFUSING_DOMINATES: u64 = 4;

/// Additive increase, multiplicative decrease, on the CPU's saturation:
/// - not saturated: grow by `max / 32`;
/// - saturated while most calls are served (fewer refused than admitted): cut by a quarter, so
///   more of the offered calls get the cheap refusal and the rest are served promptly;
/// - saturated while refusals outnumber admissions [`REFUSING_DOMINATES`] times: grow (the
///   CPU goes on refusing, a closed loop of callers that retry without backoff);
/// - in between: hold.
pub fn next_limit(
    current: usize,
    busy: f64,
    busy_ratio: f64,
    calls: Calls,
    min: usize,
    max: usize,
) -> usize {
    let grow = (current + (max / 32).max(1)).min(max);
    if busy < busy_ratio {
        grow
    } else if calls.refused < calls.admitted {
        current.saturating_sub((current / 4).max(1)).max(min)
    } else if calls.refused >= calls.admitted.saturating_mul(REFUSING_DOMINATES) {
        grow
    } else {
        current
    }
}

/// Share of wall time the runtime's workers spent running tasks, between two samples.
pub struct BusyMeter {
    handle: tokio::runtime::Handle,
    last: Option<(Instant, Duration)>,
}

impl BusyMeter {
    pub fn new(handle: tokio::runtime::Handle) -> Self {
        Self { handle, last: None }
    }

    fn total_busy(&self) -> (Duration, usize) {
        let m = self.handle.metrics();
        let n = m.num_workers();
        let busy = (0..n).map(|w| m.worker_total_busy_duration(w)).sum();
        (busy, n)
    }

    /// The busy share since the previous call (`None` on the first call).
    pub fn sample(&mut self) -> Option<f64> {
        let now = Instant::now();
        let (busy, workers) = self.total_busy();
        let prev = self.last.replace((now, busy));
        let (t0, b0) = prev?;
        let wall = now.saturating_duration_since(t0).as_secs_f64() * workers.max(1) as f64;
        if wall <= 0.0 {
            return None;
        }
        Some((busy.saturating_sub(b0).as_secs_f64() / wall).clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVING: Calls = Calls {
        admitted: 100,
        refused: 10,
    };

    #[test]
    fn cuts_by_a_quarter_when_saturated_by_serving_and_grows_back_slowly() {
        assert_eq!(next_limit(64, 0.97, 0.9, SERVING, 1, 64), 48);
        assert_eq!(next_limit(48, 0.95, 0.9, SERVING, 1, 64), 36);
        assert_eq!(
            next_limit(1, 1.0, 0.9, SERVING, 1, 64),
            1,
            "never below min"
        );
        assert_eq!(next_limit(3, 1.0, 0.9, SERVING, 2, 64), 2);
        assert_eq!(next_limit(36, 0.5, 0.9, SERVING, 1, 64), 38);
        assert_eq!(
            next_limit(63, 0.1, 0.9, SERVING, 1, 64),
            64,
            "never above max"
        );
        assert_eq!(next_limit(100, 0.1, 0.9, SERVING, 1, 512), 116);
        // From the floor back to the ceiling takes max/(max/32) = 32 quiet samples.
        let mut l = 1;
        let mut samples = 0;
        while l < 512 {
            l = next_limit(l, 0.2, 0.9, Calls::default(), 1, 512);
            samples += 1;
        }
        assert_eq!(samples, 32);
    }

    #[test]
    fn a_cpu_busy_refusing_gets_its_limit_back() {
        let calls = |admitted, refused| Calls { admitted, refused };
        // As many refused as served: hold.
        assert_eq!(next_limit(8, 1.0, 0.9, calls(100, 100), 1, 64), 8);
        assert_eq!(next_limit(8, 1.0, 0.9, calls(100, 399), 1, 64), 8);
        // Callers retrying at once: four refusals per admission or more, grow.
        assert_eq!(next_limit(8, 1.0, 0.9, calls(100, 400), 1, 64), 10);
        // Saturated with no calls at all (other work): nothing to cut.
        assert_eq!(next_limit(8, 1.0, 0.9, calls(0, 0), 1, 64), 10);
    }

    #[test]
    fn admits_up_to_the_effective_limit_and_frees_places_on_drop() {
        let limit = AdaptiveLimit::new(1, 4, 0.9);
        let held: Vec<_> = (0..4).map(|_| limit.try_acquire().unwrap()).collect();
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.in_flight(), 4);
        drop(held);
        assert_eq!(limit.in_flight(), 0);
        // Saturated while serving (4 admitted, 1 refused so far): 4 -> 3 -> 2 -> 1, the floor.
        for _ in 0..10 {
            let _one = limit.try_acquire();
            limit.observe(1.0);
        }
        assert_eq!(limit.current(), 1);
        let one = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none(), "only one place left");
        drop(one);
        assert!(limit.try_acquire().is_some());
    }

    #[test]
    fn a_ratio_of_one_or_more_keeps_the_limit_fixed() {
        let limit = AdaptiveLimit::new(1, 8, 1.0);
        assert_eq!(limit.observe(1.0), 8);
    }

    /// The meter reads a worker spinning as busy and an idle runtime as not.
    #[test]
    fn the_busy_meter_tells_a_spinning_runtime_from_an_idle_one() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut meter = BusyMeter::new(rt.handle().clone());
        assert!(meter.sample().is_none());
        // A task that keeps the only worker busy for 400 ms (yielding, so the runtime's
        // maintenance runs and publishes its busy time).
        rt.block_on(async {
            tokio::spawn(async {
                let end = Instant::now() + Duration::from_millis(400);
                while Instant::now() < end {
                    let spin = Instant::now() + Duration::from_micros(200);
                    while Instant::now() < spin {
                        std::hint::spin_loop();
                    }
                    tokio::task::yield_now().await;
                }
            })
            .await
            .unwrap();
        });
        let busy = meter.sample().unwrap();
        assert!(busy > 0.6, "spinning worker measured {busy:.2} busy");
        // Idle for 300 ms.
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(300)).await });
        let idle = meter.sample().unwrap();
        assert!(idle < 0.3, "idle worker measured {idle:.2} busy");
    }
}
