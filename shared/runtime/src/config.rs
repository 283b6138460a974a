//! Typed, layered configuration.
//!
//! Layers, later ones winning: compiled defaults, then the TOML file named by `--config` or
//! `AUGUR_CONFIG` (when given), then environment variables with the `AUGUR_` prefix where `__`
//! separates nesting levels (`AUGUR_SERVER__LISTEN=0.0.0.0:50051`, `AUGUR_DATABASE_URL=...`).

pub use augur_discovery::ConsulSettings;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// A configuration problem, found before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration: {field}: {reason}")]
    Invalid { field: String, reason: String },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Checks a loaded configuration before it is used.
pub trait Validate {
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Loads `T` from defaults, an optional TOML file and `AUGUR_` environment variables, then
/// validates it.
pub fn load<T>(defaults: T, file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Serialize + DeserializeOwned + Validate,
{
    let file = file
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("AUGUR_CONFIG").map(Into::into));
    let mut figment = Figment::from(Serialized::defaults(defaults));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment.merge(Env::prefixed("AUGUR_").ignore(&["config"]).split("__"));
    let config: T = figment.extract().map_err(Box::new)?;
    config.validate()?;
    Ok(config)
}

/// Settings of one gRPC server.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Upper bound for a unary call (and for reading a client stream is exempt); the client's
    /// `grpc-timeout` wins when it is shorter.
    pub request_timeout_ms: u64,
    /// Requests handled at once; more are shed with RESOURCE_EXHAUSTED. The ceiling of the
    /// adaptive limit (see `saturation_busy_ratio`).
    pub max_concurrent_requests: usize,
    /// Share of wall time the tokio workers spend running tasks at which the CPU counts as
    /// saturated: sampled every 100 ms; while at or above it the concurrency limit is cut by a
    /// quarter per sample (down to one call per worker), below it the limit grows back to
    /// `max_concurrent_requests`. A cheap RPC offered more than the CPU can take otherwise
    /// accepts every call late (the excess waits in front of the server, not in flight). 1.0
    /// (the default) keeps the limit fixed: the busy time is the whole process's, so in one
    /// process hosting several services (`augur up`) an expensive service's saturation would
    /// cut the limit of the feature store under its own callers. Turn it on for a service in its
    /// own pod whose RPCs are cheap (feature store and recommendation: 0.9 in `k8s/`).
    pub saturation_busy_ratio: f64,
    /// HTTP/2 streams one client connection may have open at once (advertised as
    /// SETTINGS_MAX_CONCURRENT_STREAMS). A client past it waits for a free stream instead of
    /// opening streams a busy server cannot take yet, which it would then cancel (and enough
    /// cancelled, not-yet-accepted streams make the HTTP/2 layer tear the whole connection down).
    /// Keep it above `max_concurrent_requests` so that the concurrency guard, not the transport,
    /// decides what is shed.
    pub max_concurrent_streams: u32,
    /// Streams a client may cancel before the server has taken them up, per connection, before
    /// the server closes the connection (GOAWAY ENHANCE_YOUR_CALM): the HTTP/2 "rapid reset"
    /// guard. An overloaded server takes streams up late and an honest client cancels those
    /// whose deadline passed, so the HTTP/2 stack's default of 20 tears connections down under
    /// overload; the stream limit above still bounds what one connection can hold.
    pub max_pending_accept_reset_streams: usize,
    /// Largest request or response message accepted, in bytes.
    pub max_message_bytes: usize,
    /// On SIGTERM: time spent reporting NOT_SERVING (so load balancers stop routing) before the
    /// server stops accepting.
    pub drain_delay_ms: u64,
    /// On SIGTERM: how long in-flight requests may run after the server stopped accepting.
    pub shutdown_grace_ms: u64,
    /// Consul registration and discovery (`[server.consul]`, env `AUGUR_SERVER__CONSUL__ADDRESS`);
    /// off while `address` is empty.
    pub consul: augur_discovery::ConsulSettings,
    /// TLS / mutual TLS (`[server.tls]`); plaintext while `cert_path` is empty.
    pub tls: crate::security::TlsConfig,
    /// Identity and per-RPC allow lists (`[server.auth]`); off unless `enabled`.
    pub auth: crate::security::AuthConfig,
}

impl ServerConfig {
    pub fn with_port(port: u16) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            ..Self::default()
        }
    }
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            request_timeout_ms: 10_000,
            max_concurrent_requests: 512,
            saturation_busy_ratio: 1.0,
            max_concurrent_streams: 1024,
            max_pending_accept_reset_streams: 1024,
            max_message_bytes: 32 * 1024 * 1024,
            drain_delay_ms: 0,
            shutdown_grace_ms: 10_000,
            consul: augur_discovery::ConsulSettings::default(),
            tls: Default::default(),
            auth: Default::default(),
        }
    }
}

impl Validate for ServerConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.tls.validate()?;
        self.auth.validate()?;
        let consul = &self.consul.address;
        if !(consul.trim().is_empty()
            || consul.starts_with("http://")
            || consul.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "server.consul.address",
                "must start with http:// or https://",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "server.request_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.max_concurrent_requests == 0 {
            return Err(ConfigError::invalid(
                "server.max_concurrent_requests",
                "must be greater than 0",
            ));
        }
        if !(self.saturation_busy_ratio > 0.0 && self.saturation_busy_ratio <= 1.0) {
            return Err(ConfigError::invalid(
                "server.saturation_busy_ratio",
                "must be in (0, 1] (1 keeps the concurrency limit fixed)",
            ));
        }
        if self.max_concurrent_streams == 0 {
            return Err(ConfigError::invalid(
                "server.max_concurrent_streams",
                "must be greater than 0",
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(ConfigError::invalid(
                "server.max_message_bytes",
                "must be at least 1024",
            ));
        }
        Ok(())
    }
}

/// Log format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One line per event, for people.
    #[default]
    Compact,
    /// Multi-line, for people debugging.
    Pretty,
    /// JSON lines, for log collectors.
    Json,
}

/// Logging and tracing settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    pub log_format: LogFormat,
    /// `tracing` filter directives; `RUST_LOG` wins when set.
    pub log_filter: String,
    /// OTLP/gRPC endpoint for traces, e.g. `http://otel-collector:4317`. When empty, the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` variable is used; when both are empty nothing is exported.
    pub otlp_endpoint: String,
    /// How often metrics are pushed to the OTLP endpoint, in seconds.
    pub metrics_interval_s: u64,
    /// Address of a Prometheus scrape endpoint (`GET /metrics`), e.g. `0.0.0.0:9464`; empty: none.
    /// Independent of OTLP: either, both or neither.
    pub prometheus_listen: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Compact,
            log_filter: "info".into(),
            otlp_endpoint: String::new(),
            metrics_interval_s: 15,
            prometheus_listen: String::new(),
        }
    }
}

impl TelemetryConfig {
    /// The OTLP endpoint to use, if any.
    pub fn otlp_endpoint(&self) -> Option<String> {
        let configured = self.otlp_endpoint.trim();
        if !configured.is_empty() {
            return Some(configured.to_string());
        }
        std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.trim().is_empty())
    }

    /// The Prometheus scrape address, if one is configured.
    pub fn prometheus_listen(&self) -> Option<&str> {
        Some(self.prometheus_listen.trim()).filter(|a| !a.is_empty())
    }
}

impl Validate for TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(ep) = self.otlp_endpoint()
            && !(ep.starts_with("http://") || ep.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "telemetry.otlp_endpoint",
                format!("must start with http:// or https://, got {ep:?}"),
            ));
        }
        if let Some(addr) = self.prometheus_listen()
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            return Err(ConfigError::invalid(
                "telemetry.prometheus_listen",
                format!("must be host:port with an IP address (e.g. 0.0.0.0:9464), got {addr:?}"),
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log_filter).map_err(|e| {
            ConfigError::invalid("telemetry.log_filter", format!("not a valid filter: {e}"))
        })?;
        Ok(())
    }
}

/// Address of another Augur service, e.g. `http://127.0.0.1:50051` or
/// `http://feature-store.augur.svc.cluster.local:50051`.
pub fn validate_endpoint(field: &str, value: &str) -> Result<(), ConfigError> {
    if !(value.starts_with("http://") || value.starts_with("https://")) {
        return Err(ConfigError::invalid(
            field,
            format!("must be an http:// or https:// URL, got {value:?}"),
        ));
    }
    value
        .parse::<http::Uri>()
        .map_err(|e| ConfigError::invalid(field, format!("not a valid URL: {e}")))?;
    Ok(())
}

/// A service target: an http(s) URL, `dns://host:port` or `consul://service`.
pub fn validate_target(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.starts_with("dns://") || value.starts_with("consul://") {
        return augur_discovery::Target::parse(value)
            .map(|_| ())
            .map_err(|e| ConfigError::invalid(field, e.to_string()));
    }
    validate_endpoint(field, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Like the service configs: unknown top-level keys (other AUGUR_* variables such as
    // AUGUR_DATASETS) are ignored, nested tables reject unknown keys.
    #[derive(Debug, Serialize, Deserialize, Default)]
    #[serde(default)]
    struct Sample {
        server: ServerConfig,
        telemetry: TelemetryConfig,
        name: String,
    }
    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            self.server.validate()?;
            self.telemetry.validate()
        }
    }

    #[test]
    fn file_overrides_defaults_and_validation_names_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "name = \"x\"\n[server]\nlisten = \"0.0.0.0:9000\"\nrequest_timeout_ms = 5\n",
        )
        .unwrap();
        let c: Sample = load(Sample::default(), Some(&path)).unwrap();
        assert_eq!(c.name, "x");
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(c.server.request_timeout_ms, 5);
        assert_eq!(c.server.max_concurrent_requests, 512);

        std::fs::write(&path, "[server]\nrequest_timeout_ms = 0\n").unwrap();
        let err = load(Sample::default(), Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("server.request_timeout_ms"),
            "{err}"
        );

        std::fs::write(&path, "[server]\nmax_concurrent_streams = 0\n").unwrap();
        let err = load(Sample::default(), Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("server.max_concurrent_streams"),
            "{err}"
        );

        for bad in ["1.5", "0.0", "nan"] {
            std::fs::write(&path, format!("[server]\nsaturation_busy_ratio = {bad}\n")).unwrap();
            let err = load(Sample::default(), Some(&path)).unwrap_err();
            assert!(
                err.to_string().contains("server.saturation_busy_ratio"),
                "{bad}: {err}"
            );
        }

        std::fs::write(&path, "[server]\nlisten_typo = 1\n").unwrap();
        // A typo inside a table is an error.
        assert!(load(Sample::default(), Some(&path)).is_err());

        let missing = dir.path().join("nope.toml");
        assert!(matches!(
            load(Sample::default(), Some(&missing)),
            Err(ConfigError::MissingFile(_))
        ));
    }

    #[test]
    fn endpoint_validation() {
        assert!(validate_endpoint("x", "http://127.0.0.1:50051").is_ok());
        assert!(validate_endpoint("x", "127.0.0.1:50051").is_err());
    }
}

/// A configuration value that must never be logged (keys, tokens, URLs with passwords). Its
/// `Debug` form is `<redacted>`.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    /// The value itself; do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

#[cfg(test)]
mod secret_tests {
    use super::Secret;

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("postgres://u:hunter2@db/x");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(s.expose(), "postgres://u:hunter2@db/x");
    }
}

/// Default bound of one request-path feature-store call of a model service
/// ([`ModelServiceConfig::feature_store_timeout_ms`]).
pub const DEFAULT_FEATURE_STORE_TIMEOUT: Duration = Duration::from_millis(2_000);

/// Default longest silence of the feature store during a training read
/// ([`ModelServiceConfig::training_read_idle_timeout_ms`]).
pub const DEFAULT_TRAINING_READ_IDLE_TIMEOUT: Duration = Duration::from_millis(30_000);

/// Settings shared by the model services (recommendation, demand forecast, churn, risk).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelServiceConfig {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Folder for model artefacts (`<data_dir>/models/<service>/`).
    pub data_dir: std::path::PathBuf,
    /// Where the feature store answers: `http://127.0.0.1:50051`, `dns://feature-store:50051`
    /// (every pod behind a headless Service, balanced) or `consul://feature-store`.
    pub feature_store_url: String,
    /// How long one request-path feature-store call (a prediction's feature lookup) may take
    /// before the prediction answers UNAVAILABLE; env `AUGUR_FEATURE_STORE_TIMEOUT_MS`. Must be
    /// below `server.request_timeout_ms`, so a hung feature store is reported well before the
    /// server's own deadline. Training scans are not bound by it.
    pub feature_store_timeout_ms: u64,
    /// Longest silence of the feature store during a training read: each answer (a unary reply,
    /// one page, the opening of a scan and every message of it) must come within it, however
    /// long the whole read takes; env `AUGUR_TRAINING_READ_IDLE_TIMEOUT_MS`. A hung feature
    /// store fails the Train with UNAVAILABLE after this long instead of holding it.
    pub training_read_idle_timeout_ms: u64,
    /// How this service calls the feature store: TLS and bearer token (`[client]`).
    pub client: crate::client::ClientConfig,
    /// How often the model store under `data_dir` is checked for a version newer than the one
    /// served (one another replica sharing the volume trained), which is then loaded and swapped
    /// in without a restart; env `AUGUR_MODEL_RELOAD_INTERVAL_MS`. 0 turns reloading off; else
    /// at least 100.
    pub model_reload_interval_ms: u64,
}

impl ModelServiceConfig {
    pub fn with_port(port: u16) -> Self {
        Self {
            server: ServerConfig::with_port(port),
            telemetry: TelemetryConfig::default(),
            data_dir: "data".into(),
            feature_store_url: "http://127.0.0.1:50051".into(),
            feature_store_timeout_ms: DEFAULT_FEATURE_STORE_TIMEOUT.as_millis() as u64,
            training_read_idle_timeout_ms: DEFAULT_TRAINING_READ_IDLE_TIMEOUT.as_millis() as u64,
            client: Default::default(),
            model_reload_interval_ms: 30_000,
        }
    }

    /// How often to look for a newer model in the shared store; None when reloading is off.
    pub fn model_reload_interval(&self) -> Option<Duration> {
        (self.model_reload_interval_ms > 0)
            .then(|| Duration::from_millis(self.model_reload_interval_ms))
    }

    /// Bound of one request-path feature-store call.
    pub fn feature_store_timeout(&self) -> Duration {
        Duration::from_millis(self.feature_store_timeout_ms)
    }

    /// Longest silence of the feature store during a training read.
    pub fn training_read_idle_timeout(&self) -> Duration {
        Duration::from_millis(self.training_read_idle_timeout_ms)
    }
}

impl Default for ModelServiceConfig {
    fn default() -> Self {
        Self::with_port(50052)
    }
}

impl Validate for ModelServiceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        if self.feature_store_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "feature_store_timeout_ms",
                "must be greater than 0",
            ));
        }
        if self.feature_store_timeout_ms >= self.server.request_timeout_ms {
            return Err(ConfigError::invalid(
                "feature_store_timeout_ms",
                format!(
                    "must be below server.request_timeout_ms ({} ms), got {} ms",
                    self.server.request_timeout_ms, self.feature_store_timeout_ms
                ),
            ));
        }
        if self.training_read_idle_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "training_read_idle_timeout_ms",
                "must be greater than 0",
            ));
        }
        if (1..MIN_MODEL_RELOAD_INTERVAL_MS).contains(&self.model_reload_interval_ms) {
            return Err(ConfigError::invalid(
                "model_reload_interval_ms",
                format!(
                    "must be 0 (off) or at least {MIN_MODEL_RELOAD_INTERVAL_MS} ms, got {} ms",
                    self.model_reload_interval_ms
                ),
            ));
        }
        validate_target("feature_store_url", &self.feature_store_url)
    }
}

/// Shortest accepted `model_reload_interval_ms` (besides 0, off): each check lists a directory on
/// a shared volume.
pub const MIN_MODEL_RELOAD_INTERVAL_MS: u64 = 100;

#[cfg(test)]
mod model_reload_tests {
    use super::*;

    #[test]
    fn model_reload_interval_defaults_to_30_s_and_0_turns_it_off() {
        let c = ModelServiceConfig::default();
        assert_eq!(c.model_reload_interval(), Some(Duration::from_secs(30)));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "model_reload_interval_ms = 0\n").unwrap();
        let c = load(ModelServiceConfig::default(), Some(&path)).unwrap();
        assert_eq!(c.model_reload_interval(), None);
        std::fs::write(&path, "model_reload_interval_ms = 200\n").unwrap();
        let c = load(ModelServiceConfig::default(), Some(&path)).unwrap();
        assert_eq!(c.model_reload_interval(), Some(Duration::from_millis(200)));
        for bad in [
            "model_reload_interval_ms = 1\n",
            "model_reload_interval_ms = 99\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load(ModelServiceConfig::default(), Some(&path)).unwrap_err();
            assert!(
                err.to_string().contains("model_reload_interval_ms"),
                "{bad}: {err}"
            );
        }
    }
}

#[cfg(test)]
mod model_service_tests {
    use super::*;

    #[test]
    fn feature_store_timeout_defaults_and_is_checked_against_the_request_timeout() {
        let c = ModelServiceConfig::default();
        assert_eq!(c.feature_store_timeout(), Duration::from_millis(2_000));
        assert!(c.validate().is_ok());

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "feature_store_timeout_ms = 500\n").unwrap();
        let c = load(ModelServiceConfig::default(), Some(&path)).unwrap();
        assert_eq!(c.feature_store_timeout(), Duration::from_millis(500));

        for bad in [
            "feature_store_timeout_ms = 0\n",
            "feature_store_timeout_ms = 10000\n",
            "feature_store_timeout_ms = 3000\n[server]\nrequest_timeout_ms = 2000\n",
        ] {
            std::fs::write(&path, bad).unwrap();
            let err = load(ModelServiceConfig::default(), Some(&path)).unwrap_err();
            assert!(
                err.to_string().contains("feature_store_timeout_ms"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn training_read_idle_timeout_defaults_and_must_be_positive() {
        let c = ModelServiceConfig::default();
        assert_eq!(c.training_read_idle_timeout(), Duration::from_secs(30));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.toml");
        std::fs::write(&path, "training_read_idle_timeout_ms = 750\n").unwrap();
        let c = load(ModelServiceConfig::default(), Some(&path)).unwrap();
        assert_eq!(c.training_read_idle_timeout(), Duration::from_millis(750));
        std::fs::write(&path, "training_read_idle_timeout_ms = 0\n").unwrap();
        let err = load(ModelServiceConfig::default(), Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("training_read_idle_timeout_ms"),
            "{err}"
        );
    }
}
