//! RPC metrics recorded by every server's guard layer, exported with OpenTelemetry (OTLP when an
//! endpoint is configured; see `telemetry::init`):
//!
//! - `rpc.server.requests` (counter): finished calls by `rpc.service`, `rpc.method` and
//!   `rpc.grpc.status_code` — the error count is the sum over non-zero codes;
//! - `rpc.server.errors` (counter): the same, only for non-OK codes, for simple alerting;
//! - `rpc.server.duration` (histogram, ms): from request arrival until the response body ended
//!   (whole stream for streaming calls);
//! - `rpc.server.active_requests` (up-down counter): calls in flight.
//!
//! Shed requests (RESOURCE_EXHAUSTED) and timeouts (DEADLINE_EXCEEDED) are counted like any other.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, UpDownCounter};

/// Latency buckets in milliseconds: sub-millisecond feature reads up to 10 s trainings steps.
pub const LATENCY_BOUNDS_MS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0, 30000.0,
];

/// The instruments; cheap to clone.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    requests: Counter<u64>,
    errors: Counter<u64>,
    duration: Histogram<f64>,
    active: UpDownCounter<i64>,
}

impl RpcMetrics {
    pub fn new(meter: &Meter) -> Self {
        RpcMetrics {
            requests: meter
                .u64_counter("rpc.server.requests")
                .with_description("Finished RPCs by service, method and gRPC status code")
                .build(),
            errors: meter
                .u64_counter("rpc.server.errors")
                .with_description("RPCs that ended with a non-OK gRPC status code")
                .build(),
            duration: meter
                .f64_histogram("rpc.server.duration")
                .with_unit("ms")
                .with_description("RPC latency until the response ended")
                .with_boundaries(LATENCY_BOUNDS_MS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("rpc.server.active_requests")
                .with_description("RPCs in flight")
                .build(),
        }
    }

    /// Instruments on the global meter provider (set by `telemetry::init`; a no-op before).
    pub fn global() -> Self {
        Self::new(&opentelemetry::global::meter("augur"))
    }

    /// Starts timing one call.
    pub fn start(&self, path: &str) -> CallRecord {
        let (service, method) = crate::telemetry::split_path(path);
        let attrs = vec![
            KeyValue::new("rpc.system", "grpc"),
            KeyValue::new("rpc.service", service.to_string()),
            KeyValue::new("rpc.method", method.to_string()),
        ];
        self.active.add(1, &attrs);
        CallRecord {
            metrics: self.clone(),
            attrs,
            start: Instant::now(),
            code: None,
            finished: false,
        }
    }
}

/// One call being timed: recorded once, when finished or dropped (a client that went away
/// before the end counts as CANCELLED unless a status was already known).
#[derive(Debug)]
pub struct CallRecord {
    metrics: RpcMetrics,
    attrs: Vec<KeyValue>,
    start: Instant,
    code: Option<i32>,
    finished: bool,
}

impl CallRecord {
    /// The status is known (from the response headers or trailers).
    pub fn set_code(&mut self, code: i32) {
        self.code = Some(code);
    }

    /// Records with the known status (OK when the body ended without one).
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let code = self.code.unwrap_or(0);
        self.metrics.active.add(-1, &self.attrs);
        let mut attrs = self.attrs.clone();
        attrs.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        self.metrics.requests.add(1, &attrs);
        if code != 0 {
            self.metrics.errors.add(1, &attrs);
        }
        self.metrics
            .duration
            .record(self.start.elapsed().as_secs_f64() * 1000.0, &attrs);
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        if !self.finished {
            if self.code.is_none() {
                self.code = Some(tonic::Code::Cancelled as i32);
            }
            self.finish();
        }
    }
}

/// The `grpc-status` of a header or trailer map.
pub fn grpc_status(headers: &http::HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}
