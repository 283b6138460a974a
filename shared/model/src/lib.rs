//! What every Augur model service shares.
//!
//! - [`ModelMeta`]: the JSON metadata saved beside every model (version, trained-at, training data
//!   range, validation metrics) and its protobuf form `augur.common.v1.ModelInfo`.
//! - [`ArtifactStore`]: versioned model directories (`<data_dir>/models/<name>/<version>/` holding
//!   `model.safetensors`, `meta.json` and any extra files), written atomically, newest loaded at start.
//! - [`ModelSlot`]: the serving model behind an atomic pointer, swapped without a restart while
//!   requests keep reading the old one.
//! - [`progress`]: a `Train` RPC's server stream of `TrainProgress` messages.
//! - [`TrainGate`]: one training at a time per service.
//! - [`metrics`] and [`calibrate`]: ROC-AUC, PR-AUC, Brier, log loss; Platt and isotonic calibration.
//! - [`gbdt`]: gradient-boosted trees (log loss for risk's tables, squared error for the
//!   demand-forecast global model).
//! - [`par`]: `par_map`, work spread over the cores with results in order.
//! - [`monitor`]: served-model metrics (inference latency, score distribution, input drift as PSI).
//! - [`reload`]: a [`ReloadWatcher`] that picks up versions another replica saved to a shared
//!   store, without a restart.
//! - [`split`]: scikit-learn's stratified train/test split, index for index (benchmark
//!   protocols whose anchors were run on such a split).

pub mod calibrate;
mod gate;
pub mod gbdt;
mod meta;
pub mod metrics;
pub mod monitor;
pub mod par;
pub mod progress;
pub mod reload;
mod slot;
pub mod split;
mod store;

pub use gate::{TrainGate, TrainPermit};
pub use meta::{ModelMeta, new_version};
pub use reload::ReloadWatcher;
pub use slot::ModelSlot;
pub use store::{Artifact, ArtifactStore};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model artefact I/O at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model metadata at {path}: {source}")]
    Meta {
        path: String,
        source: serde_json::Error,
    },
    #[error("model tensors at {path}: {source}")]
    Tensors {
        path: String,
        source: candle_core::Error,
    },
    #[error("model artefact {path} is missing tensor {name}")]
    MissingTensor { path: String, name: String },
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
