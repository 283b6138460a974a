//! The `augur` command line: `up` (all services in one process), `import` (bulk load through
//! gRPC), `train` (a model, with progress) and the demo dataset.

pub mod demo;
pub mod import;
pub mod train;
pub mod up;
