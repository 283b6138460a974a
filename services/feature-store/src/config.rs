//! Feature-store configuration.

use std::path::PathBuf;

use augur_runtime::config::{ConfigError, Validate};
use augur_runtime::{Secret, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

pub const DEFAULT_PORT: u16 = 50051;

/// Settings of the feature store. Top-level keys may be shared with other services in one file
/// (`augur up`), so unknown top-level keys are ignored; nested tables reject unknown keys.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Config {
    pub server: ServerConfig,
    pub telemetry: TelemetryConfig,
    /// Folder for the embedded SQLite database and the generated hash key.
    pub data_dir: PathBuf,
    /// `sqlite://path?mode=rwc` or `postgres://user@host:5432/db`; empty means
    /// `<data_dir>/feature-store.db`. Environment: `AUGUR_DATABASE_URL`.
    pub database_url: Secret,
    pub database_max_connections: u32,
    /// SQLite `synchronous`: "full" (default; survives power loss) or "normal" (survives a
    /// process crash).
    pub sqlite_synchronous: String,
    /// Key for the keyed hashes of fingerprints and customer ids in logs (a secret; from a
    /// Kubernetes Secret via `AUGUR_HASH_KEY`). Empty: generated once into the data directory.
    pub hash_key: Secret,
    /// Largest batch accepted by one Ingest call or one stream message.
    pub max_batch_events: usize,
    /// Largest number of entities / rows in one feature request.
    pub max_feature_rows: usize,
    /// Largest review text / product description, in bytes.
    pub max_text_bytes: usize,
    /// How often to apply events written by other replicas (PostgreSQL with several
    /// replicas); 0 disables. Ignored on SQLite, which has a single writer process.
    pub follow_interval_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::with_port(DEFAULT_PORT),
            telemetry: TelemetryConfig::default(),
            data_dir: PathBuf::from("data"),
            database_url: Secret::default(),
            database_max_connections: 8,
            sqlite_synchronous: "full".into(),
            hash_key: Secret::default(),
            max_batch_events: 10_000,
            max_feature_rows: 100_000,
            max_text_bytes: 20_000,
            follow_interval_ms: 1_000,
        }
    }
}

impl Config {
    /// The database URL to use.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("feature-store.db").display()
            )
        } else {
            self.database_url.expose().trim().to_string()
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }
}

impl Validate for Config {
    fn validate(&self) -> Result<(), ConfigError> {
        self.server.validate()?;
        self.telemetry.validate()?;
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::invalid(
                "database_url",
                "must start with sqlite:, postgres:// or postgresql://",
            ));
        }
        if !matches!(
            self.sqlite_synchronous.to_ascii_lowercase().as_str(),
            "full" | "normal"
        ) {
            return Err(ConfigError::invalid(
                "sqlite_synchronous",
                "must be \"full\" or \"normal\"",
            ));
        }
        if self.database_max_connections == 0 {
            return Err(ConfigError::invalid(
                "database_max_connections",
                "must be at least 1",
            ));
        }
        if self.max_batch_events == 0 || self.max_batch_events > 1_000_000 {
            return Err(ConfigError::invalid(
                "max_batch_events",
                "must be 1 to 1,000,000",
            ));
        }
        if self.max_feature_rows == 0 {
            return Err(ConfigError::invalid(
                "max_feature_rows",
                "must be at least 1",
            ));
        }
        if !self.hash_key.is_empty() && self.hash_key.expose().len() < 16 {
            return Err(ConfigError::invalid(
                "hash_key",
                "must be at least 16 characters",
            ));
        }
        Ok(())
    }
}
