//! One trace across services: a client span, the feature store's server span (parent: the
//! client span, through the W3C `traceparent` gRPC metadata) and its storage query span (parent:
//! the server span), exported over OTLP to an in-process collector run by this test; and the
//! RPC metrics (`rpc.server.requests` by method and code) exported to the same collector.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use augur_proto::featurestore as fs;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut names = self.metrics.lock().unwrap();
        for rm in req.into_inner().resource_metrics {
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    // name plus the attribute sets of its points, flattened for simple asserts
                    names.push(format!("{} {:?}", m.name, m.data));
                }
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in req.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_one_trace_from_client_to_storage() {
    // The collector.
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let c = collector.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(c.clone()))
            .add_service(MetricsServiceServer::new(c))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });

    let telemetry = augur_runtime::telemetry::init(
        "augur-e2e",
        &augur_runtime::TelemetryConfig {
            otlp_endpoint: format!("http://{addr}"),
            ..Default::default()
        },
    )
    .unwrap();
    let (platform, _dir) = augur_e2e::platform(false).await;

    // A client call inside a client span, with the trace context propagated.
    let span = tracing::info_span!("client.ingest", otel.kind = "client");
    let trace_id = span.context().span().span_context().trace_id().to_string();
    let client_span_id = span.context().span().span_context().span_id().to_string();
    async {
        let channel = augur_runtime::client::lazy_channel(
            &platform.url("feature-store").unwrap(),
            Duration::from_secs(5),
        )
        .unwrap();
        let mut client = fs::feature_store_client::FeatureStoreClient::with_interceptor(
            channel,
            augur_runtime::client::TracePropagation,
        );
        let event = fs::Event {
            payload: Some(fs::event::Payload::Customer(fs::Customer {
                customer_id: "c-trace".into(),
                ts: Some(prost_types::Timestamp {
                    seconds: 1_700_000_000,
                    nanos: 0,
                }),
                country: "DE".into(),
                ..Default::default()
            })),
        };
        let r = client
            .ingest(fs::IngestRequest {
                events: vec![event],
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.accepted, 1, "{r:?}");
    }
    .instrument(span)
    .await;
    platform.shutdown().await.unwrap();
    drop(telemetry); // flushes the batch exporter

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans: Vec<Span> = collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if spans.iter().any(|s| s.name.starts_with("db.")) || std::time::Instant::now() > deadline {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let client = spans
        .iter()
        .find(|s| s.name == "client.ingest")
        .unwrap_or_else(|| panic!("no client span: {names:?}"));
    assert_eq!(hex(&client.span_id), client_span_id);
    let server = spans
        .iter()
        .find(|s| s.name == "augur.featurestore.v1.FeatureStore/Ingest")
        .unwrap_or_else(|| panic!("no server span in the client's trace: {names:?}"));
    assert_eq!(
        hex(&server.parent_span_id),
        client_span_id,
        "server span's parent is the client span"
    );
    let db = spans
        .iter()
        .find(|s| s.name == "db.write_batch")
        .unwrap_or_else(|| panic!("no storage span in the trace: {names:?}"));
    // The storage span descends from the server span.
    let mut parent = db.parent_span_id.clone();
    let mut found = false;
    for _ in 0..10 {
        if parent == server.span_id {
            found = true;
            break;
        }
        match spans.iter().find(|s| s.span_id == parent) {
            Some(p) => parent = p.parent_span_id.clone(),
            None => break,
        }
    }
    assert!(
        found,
        "db.write_batch does not descend from the server span: {names:?}"
    );
}
