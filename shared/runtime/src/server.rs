//! One gRPC bootstrap for every service.
//!
//! [`GrpcServer`] adds to the service's own gRPC services:
//! - `grpc.health.v1.Health`, NOT_SERVING until the server runs, SERVING while it runs, and
//!   NOT_SERVING again as soon as shutdown starts;
//! - server reflection, both `grpc.reflection.v1` and `v1alpha` (grpcurl 1.8 and Python's client
//!   speak only v1alpha), listing only the services this server hosts;
//! - a [`GuardLayer`]: a global concurrency limit that sheds excess requests at once with
//!   RESOURCE_EXHAUSTED instead of queueing them (optionally lowered while the CPU is
//!   saturated, see [`crate::limit`]), a request timeout (DEADLINE_EXCEEDED; the client's
//!   shorter `grpc-timeout` wins), and a tracing span per call that continues the caller's W3C
//!   trace;
//! - graceful shutdown: NOT_SERVING, wait `drain_delay`, stop accepting, let in-flight calls
//!   finish within `shutdown_grace`;
//! - background tasks tied to the server's life ([`GrpcServer::with_background`], e.g. model
//!   reload watchers): started when serving starts, told to stop ([`GrpcServer::stopping`]) as
//!   soon as shutdown starts, aborted when the server has stopped.

use std::collections::HashSet;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::config::ServerConfig;
use crate::limit::{AdaptiveLimit, InFlight};

const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_PREFIX: &str = "/grpc.reflection.";
const HEALTH_PREFIX: &str = "/grpc.health.v1.Health/";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reflection setup failed: {0}")]
    Reflection(String),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Builder for one gRPC server hosting one or more services.
pub struct GrpcServer {
    name: String,
    config: ServerConfig,
    routes: RoutesBuilder,
    services: Vec<&'static str>,
    no_timeout: HashSet<String>,
    reporter: HealthReporter,
    health: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    background: Vec<Pin<Box<dyn Future<Output = ()> + Send>>>,
    stopping: watch::Sender<bool>,
}

/// Background tasks of a running server; aborted when dropped (the server stopped or failed).
struct Background(Vec<JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl GrpcServer {
    /// `name` is the process-level name used in logs ("feature-store").
    pub fn new(name: impl Into<String>, config: ServerConfig) -> Self {
        let reporter = HealthReporter::new();
        let health = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );
        Self {
            name: name.into(),
            config,
            routes: RoutesBuilder::default(),
            services: Vec::new(),
            no_timeout: HashSet::new(),
            reporter,
            health,
            background: Vec::new(),
            stopping: watch::channel(false).0,
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// Adds a generated tonic service. Its name is reported by health and reflection.
    pub fn add_service<S>(mut self, svc: S) -> Self
    where
        S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.services.push(S::NAME);
        self.routes.add_service(svc);
        self
    }

    /// Exempts a method (full path, `/pkg.Service/Method`) from the request timeout: for
    /// client-streaming calls whose length is set by the client (bulk import).
    pub fn without_timeout(mut self, method_path: &str) -> Self {
        self.no_timeout.insert(method_path.to_string());
        self
    }

    /// Runs `task` in the background while the server serves: spawned when serving starts,
    /// aborted once the server has stopped (or failed). A task that should finish cleanly awaits
    /// [`GrpcServer::stopping`], which resolves as soon as shutdown starts.
    pub fn with_background(mut self, task: impl Future<Output = ()> + Send + 'static) -> Self {
        self.background.push(Box::pin(task));
        self
    }

    /// Resolves when this server starts shutting down (or is dropped without serving).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// The health reporter, to mark services NOT_SERVING when a dependency is lost.
    pub fn health_reporter(&self) -> HealthReporter {
        self.reporter.clone()
    }

    /// Binds `config.listen` and serves until `shutdown` resolves (then drains gracefully).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        self.serve_with_listener(listener, shutdown).await
    }

    /// Binds `config.listen` (port 0 picks a free port) and serves in a background task.
    pub async fn spawn(self) -> Result<ServerHandle, ServerError> {
        let addr = self.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve_with_listener(listener, async move {
            let _ = rx.await;
        }));
        Ok(ServerHandle {
            addr: local,
            shutdown: Some(tx),
            task,
        })
    }

    /// Serves on an already bound listener until `shutdown` resolves.
    pub async fn serve_with_listener(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let Self {
            name,
            config,
            mut routes,
            services,
            no_timeout,
            reporter,
            health,
            mut background,
            stopping,
        } = self;
        let local = listener.local_addr().ok();

        for svc in &services {
            reporter
                .set_service_status(*svc, ServingStatus::NotServing)
                .await;
        }
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;

        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(augur_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE);
        let mut reflection_alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(augur_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(HEALTH_SERVICE);
        for svc in &services {
            reflection = reflection.with_service_name(*svc);
            reflection_alpha = reflection_alpha.with_service_name(*svc);
        }
        let reflection = reflection
            .build_v1()
            .map_err(|e| ServerError::Reflection(e.to_string()))?;
        let reflection_alpha = reflection_alpha
            .build_v1alpha()
            .map_err(|e| ServerError::Reflection(e.to_string()))?;
        routes.add_service(health);
        routes.add_service(reflection);
        routes.add_service(reflection_alpha);

        let guard = GuardLayer::new(&config, no_timeout);
        // The concurrency limit follows the CPU's saturation while the server runs.
        background.push(Box::pin(guard.limit().run_sampler()));
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = config
            .tls
            .server_config()
            .map_err(|e| ServerError::Tls(e.to_string()))?
        {
            builder = builder.tls_config(tls)?;
        }
        let server = builder
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // h2 (0.4.20) closes a connection with GOAWAY(ENHANCE_YOUR_CALM) once the small
            // DATA frames it holds unread cost more than half the connection window (each
            // frame under 256 bytes costs 256 minus its size: about 2,500 waiting gRPC
            // requests at hyper's default 1 MiB): an overloaded server with that many calls
            // waiting to be taken up or shed killed its clients' connections, every call on
            // them failing. The platform's client window (8 MiB) gives room for about 20,000.
            .initial_connection_window_size(Some(augur_discovery::CONNECTION_WINDOW))
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_max_pending_accept_reset_streams(Some(config.max_pending_accept_reset_streams))
            .layer(guard)
            .add_routes(routes.routes())
            .serve_with_incoming_shutdown(incoming, async move {
                let _ = stop_rx.await;
            });
        let mut server = tokio::spawn(server);

        for svc in &services {
            reporter
                .set_service_status(*svc, ServingStatus::Serving)
                .await;
        }
        reporter
            .set_service_status("", ServingStatus::Serving)
            .await;
        tracing::info!(server = %name, addr = ?local, services = ?services, "serving");
        let _background = Background(background.into_iter().map(tokio::spawn).collect());
        let registration = local.and_then(|l| consul_registration(&name, &config, l));
        let (reg_stop, reg_task) = match registration.clone() {
            Some((agent, reg)) => {
                let (tx, rx) = oneshot::channel::<()>();
                (
                    Some(tx),
                    Some(tokio::spawn(register_until_done(agent, reg, rx))),
                )
            }
            None => (None, None),
        };

        tokio::select! {
            () = shutdown => {}
            res = &mut server => {
                // The server stopped on its own: a transport error.
                return match res {
                    Ok(r) => r.map_err(ServerError::from),
                    Err(e) => Err(ServerError::Reflection(format!("server task failed: {e}"))),
                };
            }
        }

        tracing::info!(server = %name, "shutting down: NOT_SERVING, draining");
        stopping.send_replace(true);
        if let Some(tx) = reg_stop {
            let _ = tx.send(());
        }
        if let (Some(task), Some((agent, reg))) = (reg_task, registration) {
            // Leave Consul first so that clients stop picking this instance.
            if matches!(task.await, Ok(true)) {
                match tokio::time::timeout(Duration::from_secs(3), agent.deregister(&reg.id)).await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(server = %name, error = %e, "consul deregistration failed")
                    }
                    Err(_) => tracing::warn!(server = %name, "consul deregistration timed out"),
                }
            }
        }
        for svc in &services {
            reporter
                .set_service_status(*svc, ServingStatus::NotServing)
                .await;
        }
        reporter
            .set_service_status("", ServingStatus::NotServing)
            .await;
        tokio::time::sleep(config.drain_delay()).await;
        let _ = stop_tx.send(());
        match tokio::time::timeout(config.shutdown_grace(), &mut server).await {
            Ok(Ok(res)) => res?,
            Ok(Err(e)) => tracing::error!(server = %name, error = %e, "server task failed"),
            Err(_) => {
                tracing::warn!(server = %name, "grace period over; abandoning in-flight calls");
                server.abort();
            }
        }
        tracing::info!(server = %name, "stopped");
        Ok(())
    }
}

/// The Consul agent and this instance's registration, when Consul is configured.
fn consul_registration(
    name: &str,
    config: &ServerConfig,
    local: SocketAddr,
) -> Option<(Arc<augur_discovery::Consul>, augur_discovery::Registration)> {
    let settings = &config.consul;
    if !settings.enabled() || !settings.register {
        return None;
    }
    let address = if !settings.advertise_address.trim().is_empty() {
        settings.advertise_address.trim().to_string()
    } else if let Ok(ip) = std::env::var("POD_IP") {
        ip
    } else if !local.ip().is_unspecified() {
        local.ip().to_string()
    } else {
        tracing::warn!(
            server = %name,
            "consul: listening on all interfaces without server.consul.advertise_address or POD_IP; not registering"
        );
        return None;
    };
    let reg = augur_discovery::Registration {
        id: format!("{name}-{address}-{}", local.port()),
        name: name.to_string(),
        address,
        port: local.port(),
        tags: settings.tags.clone(),
        meta: [("version".to_string(), env!("CARGO_PKG_VERSION").to_string())].into(),
        tls: config.tls.enabled(),
    };
    Some((
        Arc::new(augur_discovery::Consul::new(settings.clone())),
        reg,
    ))
}

/// Registers, retrying every 5 s while the agent is unreachable, until registered (true) or told
/// to stop (false).
async fn register_until_done(
    agent: Arc<augur_discovery::Consul>,
    reg: augur_discovery::Registration,
    mut stop: oneshot::Receiver<()>,
) -> bool {
    loop {
        match agent.register(&reg).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(id = %reg.id, error = %e, "consul registration failed; retrying in 5 s")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
            _ = &mut stop => return false,
        }
    }
}

/// A server running in the background (tests, `augur up`).
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl ServerHandle {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://addr`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// Graceful shutdown; waits until the server stopped.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Reflection(format!("server task failed: {e}"))),
        }
    }
    /// Waits until the server stops by itself (an error) without asking it to.
    pub async fn join(mut self) -> Result<(), ServerError> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(ServerError::Reflection(format!("server task failed: {e}"))),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Guard layer

/// Concurrency limit with load shedding, request timeout and per-call tracing span.
#[derive(Clone)]
pub struct GuardLayer {
    shared: Arc<GuardShared>,
}

struct GuardShared {
    metrics: crate::metrics::RpcMetrics,
    auth: crate::security::Authorizer,
    limit: Arc<AdaptiveLimit>,
    timeout: Duration,
    no_timeout: HashSet<String>,
    /// Methods whose requests or responses stream: their permit is held until the response
    /// body ends. A unary call's goes when its handler returns.
    streaming: HashSet<String>,
}

/// The full paths (`/pkg.Service/Method`) of the client-, server- or bidirectionally streaming
/// methods in an encoded `FileDescriptorSet` (what the server registers for reflection).
fn streaming_methods(encoded: &[u8]) -> HashSet<String> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
        return HashSet::new();
    };
    let mut out = HashSet::new();
    for file in &set.file {
        let package = file.package();
        for service in &file.service {
            let full = if package.is_empty() {
                service.name().to_string()
            } else {
                format!("{package}.{}", service.name())
            };
            for m in &service.method {
                if m.client_streaming() || m.server_streaming() {
                    out.insert(format!("/{full}/{}", m.name()));
                }
            }
        }
    }
    out
}

impl GuardLayer {
    pub fn new(config: &ServerConfig, no_timeout: HashSet<String>) -> Self {
        Self::with_metrics(config, no_timeout, crate::metrics::RpcMetrics::global())
    }

    pub fn with_metrics(
        config: &ServerConfig,
        no_timeout: HashSet<String>,
        metrics: crate::metrics::RpcMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(GuardShared {
                metrics,
                auth: crate::security::Authorizer::new(&config.auth),
                limit: AdaptiveLimit::new(
                    tokio::runtime::Handle::try_current().map_or(1, |h| h.metrics().num_workers()),
                    config.max_concurrent_requests,
                    config.saturation_busy_ratio,
                ),
                timeout: config.request_timeout(),
                streaming: streaming_methods(augur_proto::FILE_DESCRIPTOR_SET)
                    .into_iter()
                    .chain(no_timeout.iter().cloned())
                    .collect(),
                no_timeout,
            }),
        }
    }

    /// The concurrency limit (lowered while the CPU is saturated, see [`crate::limit`]).
    pub fn limit(&self) -> Arc<AdaptiveLimit> {
        self.shared.limit.clone()
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = Guard<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Guard {
            inner,
            shared: self.shared.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Guard<S> {
    inner: S,
    shared: Arc<GuardShared>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S> Guard<S> {
    /// The answer to a call over the concurrency limit: RESOURCE_EXHAUSTED at once.
    fn shed<E: Send + 'static>(&self, path: &str) -> BoxFuture<Result<Response<Body>, E>> {
        let limit = &self.shared.limit;
        let current = limit.current();
        let status = Status::resource_exhausted(if current < limit.max() {
            format!(
                "server overloaded: {current} requests in flight (limit lowered from {} while the CPU is saturated); retry with backoff",
                limit.max()
            )
        } else {
            format!("server overloaded: {current} requests in flight; retry with backoff")
        });
        let mut record = self.shared.metrics.start(path);
        record.set_code(Code::ResourceExhausted as i32);
        record.finish();
        tracing::trace!(path, "shed");
        Box::pin(async move { Ok(status.into_http()) })
    }
}

impl<S, B> Service<Request<Body>> for Guard<S>
where
    S: Service<Request<Body>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let path = req.uri().path().to_string();
        // Health checks and reflection are never shed: an overloaded pod must still answer its
        // probes, or Kubernetes restarts it and makes the overload worse.
        let exempt = path.starts_with(HEALTH_PREFIX) || path.starts_with(REFLECTION_PREFIX);
        // Shed before anything else: when the CPU is what runs short, every microsecond a
        // refusal costs is taken from the calls being served, so a refused call builds no
        // trace span and skips the identity check (an unauthenticated caller of an overloaded
        // server is refused as overloaded); it is still counted in the RPC metrics.
        let permit: Option<InFlight> = if exempt {
            None
        } else {
            match self.shared.limit.try_acquire() {
                Some(p) => Some(p),
                None => return self.shed(&path),
            }
        };
        let span = crate::telemetry::server_span(req.headers(), &path);
        let mut record = self.shared.metrics.start(&path);
        // Identity and allow list; health stays open for probes.
        if self.shared.auth.enabled() && !path.starts_with(HEALTH_PREFIX) {
            let checked = self
                .shared
                .auth
                .authenticate(&req)
                .and_then(|p| self.shared.auth.authorize(&p, &path).map(|()| p));
            match checked {
                Ok(p) => span.record("enduser.id", p.0.as_str()),
                Err(status) => {
                    span.record("rpc.grpc.status_code", status.code() as i32);
                    record.set_code(status.code() as i32);
                    record.finish();
                    tracing::info!(parent: &span, code = ?status.code(), reason = %status.message(), "call refused");
                    return Box::pin(async move { Ok(status.into_http()) });
                }
            };
        }
        let deadline = if self.shared.no_timeout.contains(&path) {
            client_timeout(req.headers())
        } else {
            Some(
                client_timeout(req.headers())
                    .map_or(self.shared.timeout, |c| c.min(self.shared.timeout)),
            )
        };
        // Take the service that was driven to readiness, leave a fresh clone behind.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let fut_span = span.clone();
        let streaming = self.shared.streaming.contains(&path);
        Box::pin(
            async move {
                let fut = inner.call(req);
                let res = match deadline {
                    Some(d) => match tokio::time::timeout(d, fut).await {
                        Ok(r) => r,
                        Err(_) => {
                            span.record("rpc.grpc.status_code", Code::DeadlineExceeded as i32);
                            record.set_code(Code::DeadlineExceeded as i32);
                            record.finish();
                            return Ok(Status::deadline_exceeded(format!(
                                "request did not finish within {} ms",
                                d.as_millis()
                            ))
                            .into_http());
                        }
                    },
                    None => fut.await,
                };
                // A unary call's work is done when its handler returns: its place goes now, so
                // that a response its client is slow to take (a client short of CPU, HTTP/2
                // flow control) holds none. A streaming response keeps its place to the end.
                let permit = if streaming {
                    permit
                } else {
                    drop(permit);
                    None
                };
                res.map(|mut resp| {
                    reclassify_decode_error(resp.headers_mut());
                    if let Some(code) = crate::metrics::grpc_status(resp.headers()) {
                        span.record("rpc.grpc.status_code", code);
                        record.set_code(code);
                    }
                    // A streaming call's permit lives as long as the response body, so streams
                    // count as in flight; every call is recorded when the body ends (status
                    // from the trailers).
                    resp.map(|body| {
                        if http_body::Body::is_end_stream(&body) {
                            // Trailers-only (or empty) response: it ends here.
                            record.finish();
                        }
                        Body::new(PermitBody {
                            inner: body,
                            _permit: permit,
                            record,
                        })
                    })
                })
            }
            .instrument(fut_span),
        )
    }
}

/// tonic answers a request message it cannot decode (invalid UTF-8 in a string field, a
/// truncated or malformed frame) with INTERNAL before any service code runs. The fault is the
/// caller's input, not the server: INVALID_ARGUMENT, keeping tonic's message (it names the
/// field).
fn reclassify_decode_error(headers: &mut http::HeaderMap) {
    let internal = headers
        .get("grpc-status")
        .is_some_and(|v| v.as_bytes() == b"13");
    let decode = headers.get("grpc-message").is_some_and(|v| {
        let m = v.as_bytes();
        [
            &b"decode%20Protobuf%20message"[..],
            &b"decode Protobuf message"[..],
        ]
        .iter()
        .any(|needle| m.windows(needle.len()).any(|w| w == *needle))
    });
    if internal && decode {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// Parses the `grpc-timeout` header ("100m", "5S", ...).
fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let v = headers.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 {
        return None;
    }
    let (num, unit) = v.split_at(v.len() - 1);
    let n: u64 = num.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

pin_project_lite::pin_project! {
    /// A response body that holds a concurrency permit until it is finished, and records the
    /// call's metrics when it ends.
    struct PermitBody<B> {
        #[pin]
        inner: B,
        _permit: Option<InFlight>,
        record: crate::metrics::CallRecord,
    }
}

impl<B> http_body::Body for PermitBody<B>
where
    B: http_body::Body,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let poll = this.inner.poll_frame(cx);
        match &poll {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(crate::metrics::grpc_status) {
                    this.record.set_code(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.record.set_code(Code::Internal as i32);
                this.record.finish();
            }
            Poll::Ready(None) => this.record.finish(),
            Poll::Pending => {}
        }
        poll
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    #[test]
    fn undecodable_requests_are_invalid_argument_other_internals_stay() {
        let headers = |status: &'static str, message: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert("grpc-status", http::HeaderValue::from_static(status));
            h.insert("grpc-message", http::HeaderValue::from_static(message));
            h
        };
        let mut h = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20GetCustomerProfileRequest.customer_id:%20invalid%20string%20value",
        );
        reclassify_decode_error(&mut h);
        assert_eq!(h["grpc-status"], "3");
        let mut h = headers("13", "database%20exploded");
        reclassify_decode_error(&mut h);
        assert_eq!(h["grpc-status"], "13");
        let mut h = headers("5", "failed%20to%20decode%20Protobuf%20message");
        reclassify_decode_error(&mut h);
        assert_eq!(h["grpc-status"], "5");
    }

    fn slow_service(
        delay: Duration,
    ) -> impl Service<
        Request<Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        tower::service_fn(move |_req: Request<Body>| async move {
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(Response::new(Body::empty()))
        })
    }

    fn request(path: &str) -> Request<Body> {
        Request::builder().uri(path).body(Body::empty()).unwrap()
    }

    fn grpc_status(resp: &Response<Body>) -> Option<i32> {
        resp.headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
    }

    fn layer(limit: usize, timeout_ms: u64) -> GuardLayer {
        let config = ServerConfig {
            max_concurrent_requests: limit,
            request_timeout_ms: timeout_ms,
            ..ServerConfig::default()
        };
        GuardLayer::new(&config, HashSet::from(["/x.S/Stream".to_string()]))
    }

    #[tokio::test]
    async fn records_calls_by_method_and_status_code() {
        use http_body_util::BodyExt;
        use opentelemetry::metrics::MeterProvider as _;
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        use opentelemetry_sdk::metrics::{
            InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        };

        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = crate::metrics::RpcMetrics::new(&provider.meter("test"));
        let config = ServerConfig {
            max_concurrent_requests: 1,
            request_timeout_ms: 100,
            ..ServerConfig::default()
        };
        let inner = tower::service_fn(|req: Request<Body>| async move {
            match req.uri().path() {
                "/x.S/Slow" => {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok::<_, Infallible>(Response::new(Body::empty()))
                }
                // Status in the trailers, after the body, as gRPC does.
                path => {
                    let code = if path == "/x.S/Missing" { "5" } else { "0" };
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", code.parse().unwrap());
                    let frames = futures_frames(trailers);
                    Ok(Response::new(Body::new(http_body_util::StreamBody::new(
                        frames,
                    ))))
                }
            }
        });
        // "/x.S/Held" streams (exempt from the timeout, so taken as streaming).
        let svc =
            GuardLayer::with_metrics(&config, HashSet::from(["/x.S/Held".to_string()]), metrics)
                .layer(inner);

        let ok = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        ok.into_body().collect().await.unwrap();
        let missing = svc.clone().oneshot(request("/x.S/Missing")).await.unwrap();
        missing.into_body().collect().await.unwrap();
        let late = svc.clone().oneshot(request("/x.S/Slow")).await.unwrap();
        assert_eq!(grpc_status(&late), Some(Code::DeadlineExceeded as i32));
        // A streaming response whose body is still open holds the only permit: the next call
        // is shed.
        let held = svc.clone().oneshot(request("/x.S/Held")).await.unwrap();
        let shed = svc.clone().oneshot(request("/x.S/B")).await.unwrap();
        assert_eq!(grpc_status(&shed), Some(Code::ResourceExhausted as i32));
        // The client goes away before the body ends: CANCELLED.
        drop(held);

        provider.force_flush().unwrap();
        let mut counts = std::collections::BTreeMap::new();
        let mut errors = 0;
        let mut histogram_count = 0;
        for rm in exporter.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    match (m.name(), m.data()) {
                        ("rpc.server.requests", AggregatedMetrics::U64(MetricData::Sum(sum))) => {
                            for dp in sum.data_points() {
                                let get = |k: &str| {
                                    dp.attributes()
                                        .find(|kv| kv.key.as_str() == k)
                                        .map(|kv| kv.value.to_string())
                                        .unwrap_or_default()
                                };
                                counts.insert(
                                    (get("rpc.method"), get("rpc.grpc.status_code")),
                                    dp.value(),
                                );
                            }
                        }
                        ("rpc.server.errors", AggregatedMetrics::U64(MetricData::Sum(sum))) => {
                            errors = sum.data_points().map(|d| d.value()).sum::<u64>();
                        }
                        (
                            "rpc.server.duration",
                            AggregatedMetrics::F64(MetricData::Histogram(h)),
                        ) => {
                            histogram_count = h.data_points().map(|d| d.count()).sum::<u64>();
                        }
                        _ => {}
                    }
                }
            }
        }
        let key = |m: &str, c: i32| (m.to_string(), c.to_string());
        assert_eq!(counts.get(&key("A", 0)), Some(&1), "{counts:?}");
        assert_eq!(counts.get(&key("Missing", 5)), Some(&1), "{counts:?}");
        assert_eq!(counts.get(&key("Slow", 4)), Some(&1), "{counts:?}");
        assert_eq!(counts.get(&key("B", 8)), Some(&1), "{counts:?}");
        assert_eq!(counts.get(&key("Held", 1)), Some(&1), "{counts:?}");
        assert_eq!(errors, 4);
        assert_eq!(histogram_count, 5);
    }

    /// A body stream of one data frame and then `trailers`.
    fn futures_frames(
        trailers: http::HeaderMap,
    ) -> impl tokio_stream::Stream<Item = Result<http_body::Frame<bytes::Bytes>, Infallible>>
    + Send
    + 'static {
        tokio_stream::iter(vec![
            Ok(http_body::Frame::data(bytes::Bytes::from_static(b"x"))),
            Ok(http_body::Frame::trailers(trailers)),
        ])
    }

    #[tokio::test]
    async fn a_limit_lowered_by_cpu_saturation_sheds_earlier_and_says_why() {
        let config = ServerConfig {
            max_concurrent_requests: 8,
            saturation_busy_ratio: 0.9,
            ..ServerConfig::default()
        };
        let guard = GuardLayer::new(&config, HashSet::new());
        let limit = guard.limit();
        let svc = guard.layer(slow_service(Duration::from_millis(300)));
        // Saturated samples while calls are being served: 8 -> 6 -> 5 -> 4 -> 3 -> 2 -> 1.
        while limit.current() > 1 {
            let _admitted = limit.try_acquire();
            limit.observe(1.0);
        }
        let first = tokio::spawn(svc.clone().oneshot(request("/x.S/A")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shed = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&shed), Some(Code::ResourceExhausted as i32));
        let message = shed.headers()["grpc-message"].to_str().unwrap().to_string();
        assert!(message.contains("saturated"), "{message}");
        assert_eq!(grpc_status(&first.await.unwrap().unwrap()), None);
        // Quiet samples bring the limit back up to the ceiling.
        for _ in 0..40 {
            limit.observe(0.1);
        }
        assert_eq!(limit.current(), 8);
    }

    #[tokio::test]
    async fn sheds_over_the_limit_but_never_health_checks() {
        let svc = layer(1, 5_000).layer(slow_service(Duration::from_millis(300)));
        let first = tokio::spawn(svc.clone().oneshot(request("/x.S/A")));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let shed = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&shed), Some(Code::ResourceExhausted as i32));
        let health = tokio::spawn(svc.clone().oneshot(request("/grpc.health.v1.Health/Check")));
        let ok = first.await.unwrap().unwrap();
        assert_eq!(grpc_status(&ok), None, "accepted request completes");
        assert_eq!(
            grpc_status(&health.await.unwrap().unwrap()),
            None,
            "health is exempt"
        );
        // A unary call's permit went when its handler returned, its body still unread.
        let again = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&again), None);
        drop(ok);
    }

    /// A unary response its client has not taken yet (slow reader, HTTP/2 flow control) holds
    /// no place; a streaming one holds its place until its body ends.
    #[tokio::test]
    async fn unary_calls_free_their_place_when_the_handler_returns_streams_when_they_end() {
        let guard = layer(1, 5_000);
        let limit = guard.limit();
        // Every response has a message and trailers, as gRPC's do.
        let svc = guard.layer(tower::service_fn(|_req: Request<Body>| async move {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            Ok::<_, Infallible>(Response::new(Body::new(http_body_util::StreamBody::new(
                futures_frames(trailers),
            ))))
        }));
        let unread = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(limit.in_flight(), 0);
        let next = svc.clone().oneshot(request("/x.S/B")).await.unwrap();
        assert_eq!(
            grpc_status(&next),
            None,
            "admitted beside an unread unary response"
        );
        let stream = svc.clone().oneshot(request("/x.S/Stream")).await.unwrap();
        assert_eq!(limit.in_flight(), 1);
        let shed = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&shed), Some(Code::ResourceExhausted as i32));
        drop(stream);
        assert_eq!(limit.in_flight(), 0);
        let again = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&again), None);
        drop((unread, next, again));
    }

    #[test]
    fn streaming_methods_come_from_the_descriptor_set() {
        let s = streaming_methods(augur_proto::FILE_DESCRIPTOR_SET);
        for path in [
            "/augur.risk.v1.Risk/ScoreOrderStream",
            "/augur.risk.v1.Risk/Train",
            "/augur.forecast.v1.DemandForecast/Train",
        ] {
            assert!(s.contains(path), "{path} in {s:?}");
        }
        for path in [
            "/augur.risk.v1.Risk/ScoreOrder",
            "/augur.featurestore.v1.FeatureStore/GetOnlineFeatures",
        ] {
            assert!(!s.contains(path), "{path} is unary");
        }
        assert!(streaming_methods(b"not a descriptor set \xff").is_empty());
    }

    #[tokio::test]
    async fn times_out_unary_calls_but_not_exempt_streams() {
        let svc = layer(8, 50).layer(slow_service(Duration::from_millis(200)));
        let late = svc.clone().oneshot(request("/x.S/A")).await.unwrap();
        assert_eq!(grpc_status(&late), Some(Code::DeadlineExceeded as i32));
        let stream = svc.clone().oneshot(request("/x.S/Stream")).await.unwrap();
        assert_eq!(grpc_status(&stream), None);
        // A shorter client deadline wins.
        let svc = layer(8, 5_000).layer(slow_service(Duration::from_millis(200)));
        let mut req = request("/x.S/A");
        req.headers_mut()
            .insert("grpc-timeout", "20m".parse().unwrap());
        assert_eq!(
            grpc_status(&svc.oneshot(req).await.unwrap()),
            Some(Code::DeadlineExceeded as i32)
        );
    }

    #[tokio::test]
    async fn shutdown_reports_not_serving_before_it_stops() {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            drain_delay_ms: 400,
            ..ServerConfig::default()
        };
        let handle = GrpcServer::new("t", config).spawn().await.unwrap();
        let url = handle.url();
        let channel = tonic::transport::Endpoint::from_shared(url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let check = tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        let status = health
            .check(check.clone())
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let stopping = tokio::spawn(handle.shutdown());
        tokio::time::sleep(Duration::from_millis(150)).await;
        let status = health.check(check).await.unwrap().into_inner().status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
        );
        stopping.await.unwrap().unwrap();
        assert!(
            tonic::transport::Endpoint::from_shared(url)
                .unwrap()
                .connect()
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_client_past_the_stream_limit_waits_for_a_free_stream() {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            max_concurrent_streams: 2,
            ..ServerConfig::default()
        };
        let handle = GrpcServer::new("t", config).spawn().await.unwrap();
        let channel = tonic::transport::Endpoint::from_shared(handle.url())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut health = HealthClient::new(channel);
        let req = || HealthCheckRequest {
            service: String::new(),
        };
        // Two open Watch streams use up the connection's two streams.
        let mut first = health.watch(req()).await.unwrap().into_inner();
        let mut second = health.watch(req()).await.unwrap().into_inner();
        assert!(first.message().await.unwrap().is_some());
        assert!(second.message().await.unwrap().is_some());
        // A third call on the same connection waits in the client; it is not refused.
        let mut third = health.clone();
        let waiting = tokio::spawn(async move { third.check(req()).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "the stream limit was not applied");
        drop(first);
        let answered = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("answered once a stream is free")
            .unwrap();
        assert!(answered.is_ok(), "{answered:?}");
        drop(second);
        handle.shutdown().await.unwrap();
    }

    /// The connection window a server grants (RFC 9113: 65,535 plus the increment of its first
    /// WINDOW_UPDATE on stream 0) is the platform's 8 MiB: at hyper's default (1 MiB) a few
    /// thousand requests waiting to be taken up or shed made h2 close the connection (GOAWAY
    /// ENHANCE_YOUR_CALM), failing every call on it (BENCHMARKS, load and overload).
    #[tokio::test]
    async fn advertises_the_platform_connection_window() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        let handle = GrpcServer::new("t", config).spawn().await.unwrap();
        let mut tcp = tokio::net::TcpStream::connect(handle.addr()).await.unwrap();
        // Client preface and an empty SETTINGS frame.
        tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
        let window = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let mut head = [0u8; 9];
                tcp.read_exact(&mut head).await.unwrap();
                let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let mut payload = vec![0u8; len];
                tcp.read_exact(&mut payload).await.unwrap();
                // WINDOW_UPDATE (type 8) for the connection (stream 0).
                if head[3] == 8 && stream == 0 {
                    let inc = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                    return 65_535 + (inc & 0x7fff_ffff);
                }
            }
        })
        .await
        .expect("the server sends a connection WINDOW_UPDATE after its SETTINGS");
        assert_eq!(window, augur_discovery::CONNECTION_WINDOW);
        drop(tcp);
        handle.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn background_tasks_run_while_serving_and_stop_on_shutdown() {
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..ServerConfig::default()
        };
        let server = GrpcServer::new("t", config);
        let (started_tx, started) = oneshot::channel::<()>();
        let (stopped_tx, stopped) = oneshot::channel::<()>();
        let stopping = server.stopping();
        let server = server.with_background(async move {
            let _ = started_tx.send(());
            stopping.await;
            let _ = stopped_tx.send(());
        });
        // A task that never looks at `stopping` is aborted.
        let (guard_tx, mut guard_rx) = oneshot::channel::<()>();
        let server = server.with_background(async move {
            let _guard = guard_tx;
            std::future::pending::<()>().await;
        });
        let handle = server.spawn().await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), started)
            .await
            .expect("background task started")
            .unwrap();
        assert!(matches!(
            guard_rx.try_recv(),
            Err(oneshot::error::TryRecvError::Empty)
        ));
        handle.shutdown().await.unwrap();
        stopped.await.expect("told to stop");
        // The pending task was aborted: its sender is dropped without sending.
        let aborted = tokio::time::timeout(Duration::from_secs(5), guard_rx)
            .await
            .expect("pending task aborted");
        assert!(aborted.is_err());
    }

    #[test]
    fn parses_grpc_timeout() {
        let mut h = http::HeaderMap::new();
        h.insert("grpc-timeout", "250m".parse().unwrap());
        assert_eq!(client_timeout(&h), Some(Duration::from_millis(250)));
        h.insert("grpc-timeout", "3S".parse().unwrap());
        assert_eq!(client_timeout(&h), Some(Duration::from_secs(3)));
        h.insert("grpc-timeout", "x".parse().unwrap());
        assert_eq!(client_timeout(&h), None);
    }
}
