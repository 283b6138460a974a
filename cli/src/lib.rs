//! The `augur` command line: `up` (all services in one process), `import` (bulk load through
//! gRPC) and the demo dataset.

pub mod demo;
pub mod import;
pub mod up;
