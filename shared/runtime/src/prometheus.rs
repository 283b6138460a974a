//! An optional Prometheus scrape endpoint (`telemetry.prometheus_listen`, e.g. `0.0.0.0:9464`).
//!
//! The OpenTelemetry meter provider gets a pull reader beside the OTLP push reader (when that is
//! configured too); each `GET /metrics` collects the current cumulative values and writes them in
//! the Prometheus text exposition format (0.0.4), names translated as the OpenTelemetry
//! specification's Prometheus compatibility rules say: dots to underscores, the unit as a suffix
//! (`ms` -> `_milliseconds`), `_total` on monotonic counters; `rpc.server.duration` becomes
//! `rpc_server_duration_milliseconds_bucket` / `_sum` / `_count`, `rpc.server.active_requests`
//! a gauge `rpc_server_active_requests` (what an HPA custom metric through the Prometheus Adapter
//! reads). Attribute keys become labels the same way; the resource's `service.name` is exported
//! once as `target_info`.
//!
//! The endpoint runs on its own OS thread with blocking sockets, not on the tokio runtime, so a
//! scrape still answers while the service's workers are saturated (when it matters most). One
//! connection at a time, each bounded by a 2 s read/write timeout.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Weak};
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, Temporality};

/// The pull reader given to the meter provider; [`Scraper`] reads through the same reader.
#[derive(Debug, Clone)]
pub struct PullReader(Arc<ManualReader>);

impl PullReader {
    /// A reader with cumulative temporality (what Prometheus expects) and its scraper.
    pub fn new() -> (Self, Scraper) {
        let reader = Arc::new(
            ManualReader::builder()
                .with_temporality(Temporality::Cumulative)
                .build(),
        );
        (PullReader(reader.clone()), Scraper(reader))
    }
}

impl MetricReader for PullReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline);
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// Renders the current metrics on demand.
#[derive(Debug, Clone)]
pub struct Scraper(Arc<ManualReader>);

impl Scraper {
    /// The current metrics in the text exposition format; a failed collection (provider shut
    /// down) renders as a comment, so the scrape still answers.
    pub fn render(&self) -> String {
        let mut rm = ResourceMetrics::default();
        match self.0.collect(&mut rm) {
            Ok(()) => encode(&rm),
            Err(e) => format!("# metrics unavailable: {e}\n"),
        }
    }
}

/// A metric or label name made valid for Prometheus (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
fn sanitize(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// The unit as a Prometheus name suffix (the common UCUM units; others are left out).
fn unit_suffix(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "ms" => "milliseconds",
        "s" => "seconds",
        "us" => "microseconds",
        "By" => "bytes",
        "1" => "ratio",
        _ => return None,
    })
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.as_str().to_string(),
        other => other.to_string(),
    }
}

/// A sample value: Prometheus spells the non-finite ones `+Inf`, `-Inf`, `NaN`.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// `k="v",...` from attributes, sorted by label name ("" when there are none).
fn label_body<'a>(attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    let mut pairs: Vec<String> = attrs
        .map(|kv| {
            format!(
                "{}=\"{}\"",
                sanitize(kv.key.as_str()),
                escape_label(&value_text(&kv.value))
            )
        })
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// `{body}`, `{body,extra}` or `{extra}` (no braces when both are empty).
fn braced(body: &str, extra: Option<(&str, &str)>) -> String {
    let extra = extra.map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)));
    match (body.is_empty(), extra) {
        (true, None) => String::new(),
        (true, Some(e)) => format!("{{{e}}}"),
        (false, None) => format!("{{{body}}}"),
        (false, Some(e)) => format!("{{{body},{e}}}"),
    }
}

/// `{k="v",...}` from attributes, or "" when there are none.
fn labels<'a>(attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> String {
    braced(&label_body(attrs), None)
}

/// One metric family: its type, help and sample lines (several scopes may add to it).
#[derive(Default)]
struct Family {
    kind: &'static str,
    help: String,
    samples: Vec<String>,
}

trait Num: Copy {
    fn f(self) -> f64;
}
impl Num for f64 {
    fn f(self) -> f64 {
        self
    }
}
impl Num for u64 {
    fn f(self) -> f64 {
        self as f64
    }
}
impl Num for i64 {
    fn f(self) -> f64 {
        self as f64
    }
}

fn add<T: Num>(families: &mut BTreeMap<String, Family>, m: &Metric, data: &MetricData<T>) {
    let mut base = sanitize(m.name());
    if let Some(suffix) = unit_suffix(m.unit())
        && !base.ends_with(suffix)
    {
        base = format!("{base}_{suffix}");
    }
    match data {
        MetricData::Gauge(g) => {
            let fam = family(families, &base, "gauge", m.description());
            for p in g.data_points() {
                fam.samples.push(format!(
                    "{base}{} {}",
                    labels(p.attributes()),
                    number(p.value().f())
                ));
            }
        }
        MetricData::Sum(s) => {
            let (name, kind) = if s.is_monotonic() {
                (format!("{base}_total"), "counter")
            } else {
                (base.clone(), "gauge")
            };
            let fam = family(families, &name, kind, m.description());
            for p in s.data_points() {
                fam.samples.push(format!(
                    "{name}{} {}",
                    labels(p.attributes()),
                    number(p.value().f())
                ));
            }
        }
        MetricData::Histogram(h) => {
            let fam = family(families, &base, "histogram", m.description());
            for p in h.data_points() {
                // The point's labels, rendered once for its buckets, sum and count.
                let body = label_body(p.attributes());
                let mut cumulative = 0u64;
                let counts: Vec<u64> = p.bucket_counts().collect();
                for (i, bound) in p.bounds().enumerate() {
                    cumulative += counts.get(i).copied().unwrap_or(0);
                    fam.samples.push(format!(
                        "{base}_bucket{} {cumulative}",
                        braced(&body, Some(("le", &number(bound))))
                    ));
                }
                fam.samples.push(format!(
                    "{base}_bucket{} {}",
                    braced(&body, Some(("le", "+Inf"))),
                    p.count()
                ));
                let l = braced(&body, None);
                fam.samples
                    .push(format!("{base}_sum{l} {}", number(p.sum().f())));
                fam.samples.push(format!("{base}_count{l} {}", p.count()));
            }
        }
        // Not used by Augur's instruments; Prometheus' native histograms would be the mapping.
        MetricData::ExponentialHistogram(_) => {}
    }
}

fn family<'a>(
    families: &'a mut BTreeMap<String, Family>,
    name: &str,
    kind: &'static str,
    help: &str,
) -> &'a mut Family {
    let fam = families.entry(name.to_string()).or_default();
    if fam.kind.is_empty() {
        fam.kind = kind;
        fam.help = escape_help(help);
    }
    fam
}

/// The text exposition format of one collection.
pub fn encode(rm: &ResourceMetrics) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for scope in rm.scope_metrics() {
        for m in scope.metrics() {
            match m.data() {
                AggregatedMetrics::F64(d) => add(&mut families, m, d),
                AggregatedMetrics::U64(d) => add(&mut families, m, d),
                AggregatedMetrics::I64(d) => add(&mut families, m, d),
            }
        }
    }
    let mut out = String::new();
    let service = rm
        .resource()
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .map(|v| value_text(&v))
        .unwrap_or_default();
    out.push_str("# HELP target_info Target metadata\n# TYPE target_info gauge\n");
    let _ = writeln!(
        out,
        "target_info{{service_name=\"{}\"}} 1",
        escape_label(&service)
    );
    for (name, fam) in families {
        if !fam.help.is_empty() {
            let _ = writeln!(out, "# HELP {name} {}", fam.help);
        }
        let _ = writeln!(out, "# TYPE {name} {}", fam.kind);
        for s in fam.samples {
            out.push_str(&s);
            out.push('\n');
        }
    }
    out
}

/// Answers HTTP scrapes on `listener` from a dedicated thread, for the life of the process.
pub fn serve(
    listener: TcpListener,
    scraper: Scraper,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("prometheus-scrape".into())
        .spawn(move || {
            for conn in listener.incoming() {
                match conn {
                    Ok(conn) => {
                        if let Err(e) = answer(conn, &scraper) {
                            tracing::debug!(error = %e, "metrics scrape connection failed");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener accept failed");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                }
            }
        })
}

/// Longest a client may take to send its request head (in all, not per read: a client
/// trickling bytes cannot hold the one-connection-at-a-time endpoint).
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads one request head (at most 8 KiB, within [`HEAD_TIMEOUT`]) and answers it; the
/// connection is then closed.
fn answer(mut conn: TcpStream, scraper: &Scraper) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + HEAD_TIMEOUT;
    conn.set_write_timeout(Some(HEAD_TIMEOUT))?;
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        conn.set_read_timeout(Some(left))?;
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head
        .split(|b| *b == b'\n')
        .next()
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .unwrap_or_default();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            scraper.render(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "metrics are at /metrics\n".to_string(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n".to_string(),
        ),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&response)?;
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::SdkMeterProvider;

    fn provider() -> (SdkMeterProvider, Scraper) {
        let (reader, scraper) = PullReader::new();
        let provider = SdkMeterProvider::builder()
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("churn")
                    .build(),
            )
            .with_reader(reader)
            .build();
        (provider, scraper)
    }

    #[test]
    fn rpc_metrics_render_in_the_exposition_format() {
        let (provider, scraper) = provider();
        let meter = provider.meter("augur");
        let rpc = crate::metrics::RpcMetrics::new(&meter);
        let mut call = rpc.start("/augur.churn.v1.Churn/PredictChurn");
        call.set_code(0);
        call.finish();
        let mut call = rpc.start("/augur.churn.v1.Churn/PredictChurn");
        call.set_code(5);
        call.finish();
        let labels =
            "rpc_method=\"PredictChurn\",rpc_service=\"augur.churn.v1.Churn\",rpc_system=\"grpc\"";
        // A histogram with the RPC buckets and known values.
        let h = meter
            .f64_histogram("test.latency")
            .with_unit("ms")
            .with_boundaries(crate::metrics::LATENCY_BOUNDS_MS.to_vec())
            .build();
        let attrs = [KeyValue::new("rpc.method", "Recommend")];
        h.record(0.3, &attrs);
        h.record(7.0, &attrs);
        let text = scraper.render();
        let hl = "rpc_method=\"Recommend\"";
        for want in [
            "target_info{service_name=\"churn\"} 1".to_string(),
            "# TYPE rpc_server_requests_total counter".to_string(),
            format!("rpc_server_requests_total{{rpc_grpc_status_code=\"0\",{labels}}} 1"),
            format!("rpc_server_requests_total{{rpc_grpc_status_code=\"5\",{labels}}} 1"),
            format!("rpc_server_errors_total{{rpc_grpc_status_code=\"5\",{labels}}} 1"),
            "# TYPE rpc_server_active_requests gauge".to_string(),
            format!("rpc_server_active_requests{{{labels}}} 0"),
            "# TYPE rpc_server_duration_milliseconds histogram".to_string(),
            "# TYPE test_latency_milliseconds histogram".to_string(),
            // 0.3 ms is above 0.25 and at most 0.5; 7 ms is at most 10.
            format!("test_latency_milliseconds_bucket{{{hl},le=\"0.25\"}} 0"),
            format!("test_latency_milliseconds_bucket{{{hl},le=\"0.5\"}} 1"),
            format!("test_latency_milliseconds_bucket{{{hl},le=\"10\"}} 2"),
            format!("test_latency_milliseconds_bucket{{{hl},le=\"+Inf\"}} 2"),
            format!("test_latency_milliseconds_sum{{{hl}}} 7.3"),
            format!("test_latency_milliseconds_count{{{hl}}} 2"),
        ] {
            assert!(
                text.lines().any(|l| l == want),
                "missing {want:?} in\n{text}"
            );
        }
    }

    #[test]
    fn gauges_up_down_counters_and_escaping() {
        let (provider, scraper) = provider();
        let meter = provider.meter("augur");
        let active = meter
            .i64_up_down_counter("rpc.server.active_requests")
            .build();
        active.add(3, &[KeyValue::new("rpc.method", "Recommend")]);
        active.add(-1, &[KeyValue::new("rpc.method", "Recommend")]);
        let g = meter
            .f64_gauge("model.drift-psi")
            .with_description("line1\nline2")
            .build();
        g.record(0.25, &[KeyValue::new("feature", "a\"b\\c\nd")]);
        let text = scraper.render();
        assert!(
            text.contains("# TYPE rpc_server_active_requests gauge\n"),
            "{text}"
        );
        assert!(
            text.contains("rpc_server_active_requests{rpc_method=\"Recommend\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP model_drift_psi line1\\nline2\n"),
            "{text}"
        );
        assert!(
            text.contains("model_drift_psi{feature=\"a\\\"b\\\\c\\nd\"} 0.25\n"),
            "{text}"
        );
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(sanitize("rpc.server.duration"), "rpc_server_duration");
        assert_eq!(sanitize("9lives-x"), "_9lives_x");
        assert_eq!(sanitize(""), "_");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NEG_INFINITY), "-Inf");
        assert_eq!(number(1e-7), "0.0000001");
    }

    fn get(addr: std::net::SocketAddr, request: &str) -> String {
        let mut c = TcpStream::connect(addr).expect("connect");
        c.write_all(request.as_bytes()).expect("write");
        let mut out = String::new();
        c.read_to_string(&mut out).expect("read");
        out
    }

    #[test]
    fn scrape_endpoint_answers_over_http() {
        let (provider, scraper) = provider();
        let c = provider.meter("augur").u64_counter("jobs").build();
        c.add(5, &[]);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        serve(listener, scraper).expect("thread");
        let ok = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: text/plain; version=0.0.4"),
            "{ok}"
        );
        assert!(ok.ends_with("jobs_total 5\n"), "{ok}");
        // The value is read at scrape time.
        c.add(1, &[]);
        assert!(get(addr, "GET /metrics HTTP/1.1\r\n\r\n").ends_with("jobs_total 6\n"));
        let head = get(addr, "HEAD /metrics HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        assert!(get(addr, "GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
        assert!(get(addr, "POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
        // Garbage and a silent client do not stop the endpoint.
        assert!(get(addr, "\u{0}\u{1}garbage\r\n\r\n").starts_with("HTTP/1.1 405"));
        drop(TcpStream::connect(addr).expect("connect"));
        assert!(get(addr, "GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200"));
        // A client trickling its head a byte at a time is cut off after HEAD_TIMEOUT in all,
        // and the next scrape is answered.
        let trickle = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).expect("connect");
            let start = std::time::Instant::now();
            for b in b"GET /metrics HTTP/1.1\r\nX-Slow: ".iter().cycle() {
                if c.write_all(&[*b]).is_err() || start.elapsed() > 5 * HEAD_TIMEOUT {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            start.elapsed()
        });
        std::thread::sleep(Duration::from_millis(100));
        let t = std::time::Instant::now();
        assert!(get(addr, "GET /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 200"));
        // (Generous bounds for a loaded machine: without the total bound the trickle would
        // hold the endpoint for 5 x HEAD_TIMEOUT.)
        assert!(t.elapsed() < 3 * HEAD_TIMEOUT, "waited {:?}", t.elapsed());
        assert!(trickle.join().expect("join") < 4 * HEAD_TIMEOUT);
    }
}
