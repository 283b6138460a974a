//! Support shared by tests and benchmarks.
//!
//! - [`datasets`]: where the public datasets are (`AUGUR_DATASETS`, default
//!   `../shared/datasets` next to the repository) and loaders for them. When a dataset is
//!   missing, [`datasets::require`] says so loudly; with `AUGUR_REQUIRE_DATASETS=1` it fails.
//! - [`postgres`]: a fresh PostgreSQL database per test (`AUGUR_TEST_POSTGRES_URL`, default
//!   `postgres://postgres@127.0.0.1:5432/test`), skipped loudly when the server is unreachable
//!   unless `AUGUR_REQUIRE_POSTGRES=1`.
//! - [`consul`]: a stand-in Consul agent (documented HTTP API subset, runs gRPC health checks).

pub mod consul;
pub mod datasets;
pub mod postgres;

/// True when an environment flag is set to 1.
pub fn required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| v == "1")
}
