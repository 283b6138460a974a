//! Logs and traces in one `init`.
//!
//! `tracing` is the API everywhere. `init` installs an env filter, a log formatter (compact,
//! pretty or JSON) and an OpenTelemetry layer. When an OTLP endpoint is configured
//! (`telemetry.otlp_endpoint` or `OTEL_EXPORTER_OTLP_ENDPOINT`) spans are exported over OTLP/gRPC
//! with `service.name` set, and metrics pushed every `telemetry.metrics_interval_s`. When
//! `telemetry.prometheus_listen` is set, the same metrics are also served for scraping at
//! `http://<addr>/metrics` (see [`crate::prometheus`]). The W3C trace-context propagator is
//! always installed: servers pick up the caller's `traceparent` ([`server_span`]) and clients
//! send theirs ([`inject_context`]).

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TelemetryConfig};

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the OTLP exporter for {endpoint}: {reason}")]
    Exporter { endpoint: String, reason: String },
    #[error("invalid log filter: {0}")]
    Filter(String),
    #[error("cannot serve Prometheus metrics on {addr}: {reason}")]
    Prometheus { addr: String, reason: String },
}

/// Flushes and shuts down the trace pipeline when dropped.
#[must_use = "dropping the guard shuts telemetry down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<opentelemetry_sdk::metrics::SdkMeterProvider>,
    metrics_addr: Option<std::net::SocketAddr>,
}

impl TelemetryGuard {
    /// Where the Prometheus scrape endpoint listens (`telemetry.prometheus_listen`, with the port
    /// the OS chose for `:0`), when this call installed one.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            let _ = provider.shutdown();
        }
        if let Some(meters) = self.meters.take() {
            let _ = meters.force_flush();
            let _ = meters.shutdown();
        }
    }
}

/// Installs logging and tracing for the process. Calling it again (tests, several services in
/// one process) keeps the first installation.
pub fn init(
    service_name: &str,
    config: &TelemetryConfig,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&config.log_filter),
    }
    .map_err(|e| TelemetryError::Filter(e.to_string()))?;

    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meter_builder =
        opentelemetry_sdk::metrics::SdkMeterProvider::builder().with_resource(resource);
    // Bound now, so that a taken port fails the start instead of silently serving nothing.
    let mut scrape = None;
    if let Some(addr) = config.prometheus_listen() {
        let failed = |reason: String| TelemetryError::Prometheus {
            addr: addr.to_string(),
            reason,
        };
        let listener = std::net::TcpListener::bind(addr).map_err(|e| failed(e.to_string()))?;
        let (reader, scraper) = crate::prometheus::PullReader::new();
        meter_builder = meter_builder.with_reader(reader);
        scrape = Some((listener, scraper, failed));
    }
    let otlp = config.otlp_endpoint();
    if let Some(endpoint) = &otlp {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
            .with_interval(std::time::Duration::from_secs(
                config.metrics_interval_s.max(1),
            ))
            .build();
        meter_builder = meter_builder.with_reader(reader);
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|e| TelemetryError::Exporter {
                endpoint: endpoint.clone(),
                reason: e.to_string(),
            })?;
        builder = builder.with_batch_exporter(exporter);
    }
    let meters = (scrape.is_some() || otlp.is_some()).then(|| meter_builder.build());
    let provider = builder.build();
    let tracer = provider.tracer(service_name.to_string());
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);

    let fmt = match config.log_format {
        LogFormat::Compact => tracing_subscriber::fmt::layer()
            .compact()
            .with_target(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().pretty().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init()
        .is_ok();
    if installed {
        opentelemetry::global::set_tracer_provider(provider.clone());
        if let Some(m) = &meters {
            opentelemetry::global::set_meter_provider(m.clone());
        }
        let mut metrics_addr = None;
        if let Some((listener, scraper, failed)) = scrape {
            metrics_addr = listener.local_addr().ok();
            crate::prometheus::serve(listener, scraper).map_err(|e| failed(e.to_string()))?;
            if let Some(addr) = metrics_addr {
                tracing::info!(%addr, "Prometheus metrics at http://{addr}/metrics");
            }
        }
        Ok(TelemetryGuard {
            provider: Some(provider),
            meters,
            metrics_addr,
        })
    } else {
        let _ = provider.shutdown();
        if let Some(m) = meters {
            let _ = m.shutdown();
        }
        Ok(TelemetryGuard {
            provider: None,
            meters: None,
            metrics_addr: None,
        })
    }
}

/// Reads W3C trace-context headers from an HTTP/2 request.
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes W3C trace-context headers into outgoing gRPC metadata.
pub struct MetadataInjector<'a>(pub &'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(k, v);
        }
    }
}

/// The span of one incoming gRPC call, child of the caller's span when the request carries a
/// `traceparent` header.
pub fn server_span(headers: &http::HeaderMap, path: &str) -> tracing::Span {
    let (service, method) = split_path(path);
    let span = tracing::info_span!(
        "grpc.server",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        enduser.id = tracing::field::Empty,
    );
    let parent =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    let _ = span.set_parent(parent);
    span
}

/// Adds the current span's trace context to outgoing metadata.
pub fn inject_context(metadata: &mut tonic::metadata::MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata))
    });
}

/// `/pkg.Service/Method` -> (`pkg.Service`, `Method`).
pub fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/augur.featurestore.v1.FeatureStore/Ingest"),
            ("augur.featurestore.v1.FeatureStore", "Ingest")
        );
        assert_eq!(split_path("/weird"), ("weird", ""));
    }
}
