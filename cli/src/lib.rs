//! The `augur` command line: `up` (all services in one process), `import` (bulk load through
//! gRPC), `train` (a model, with progress) and the demo dataset. `connect` holds the TLS and
//! token flags of the commands that call a service.

pub mod connect;
pub mod demo;
pub mod import;
pub mod train;
pub mod up;
