//! The server stream of a `Train` RPC.
//!
//! ```ignore
//! let (progress, stream) = augur_model::progress::channel();
//! tokio::spawn(async move {
//!     progress.stage("fetch", 0.1, "reading interactions").await;
//!     match train(&progress).await {
//!         Ok(meta) => progress.done(meta.to_proto()).await,
//!         Err(e) => progress.fail(e.into()).await,
//!     }
//! });
//! Ok(Response::new(Box::pin(stream)))
//! ```
//! A client that hangs up does not stop the training: the model is still saved and swapped in.

use std::collections::BTreeMap;

use augur_proto::common::{ModelInfo, TrainProgress};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Sends progress to the client that started the training (if it is still listening).
#[derive(Debug, Clone)]
pub struct Progress {
    tx: mpsc::Sender<Result<TrainProgress, Status>>,
}

/// A progress sender and the stream to return from the RPC.
pub fn channel() -> (Progress, ReceiverStream<Result<TrainProgress, Status>>) {
    let (tx, rx) = mpsc::channel(64);
    (Progress { tx }, ReceiverStream::new(rx))
}

impl Progress {
    async fn send(&self, msg: Result<TrainProgress, Status>) {
        // The client may have gone; training carries on regardless.
        let _ = self.tx.send(msg).await;
    }

    /// A stage started or advanced; `fraction` is overall progress in [0, 1].
    pub async fn stage(&self, stage: &str, fraction: f64, message: impl Into<String>) {
        let message = message.into();
        tracing::debug!(stage, fraction, %message, "training progress");
        self.send(Ok(TrainProgress {
            stage: stage.to_string(),
            fraction: fraction.clamp(0.0, 1.0),
            message,
            ..Default::default()
        }))
        .await;
    }

    /// Progress with metrics (e.g. validation loss after an epoch).
    pub async fn metrics(
        &self,
        stage: &str,
        fraction: f64,
        message: impl Into<String>,
        metrics: BTreeMap<String, f64>,
    ) {
        self.send(Ok(TrainProgress {
            stage: stage.to_string(),
            fraction: fraction.clamp(0.0, 1.0),
            message: message.into(),
            metrics,
            ..Default::default()
        }))
        .await;
    }

    /// The new model is saved and serving.
    pub async fn done(&self, model: ModelInfo) {
        tracing::info!(version = %model.model_version, "training done; the new model is serving");
        self.send(Ok(TrainProgress {
            stage: "done".into(),
            fraction: 1.0,
            message: format!("model {} is serving", model.model_version),
            metrics: model.validation_metrics.clone(),
            done: true,
            model: Some(model),
        }))
        .await;
    }

    /// Training failed; the stream ends with this status and the old model keeps serving.
    pub async fn fail(&self, status: Status) {
        tracing::warn!(error = %status.message(), "training failed");
        self.send(Err(status)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn stream_ends_with_done() {
        let (p, mut s) = channel();
        tokio::spawn(async move {
            p.stage("fit", 0.5, "half").await;
            p.done(ModelInfo {
                model_version: "v1".into(),
                ..Default::default()
            })
            .await;
        });
        let first = s.next().await.unwrap().unwrap();
        assert_eq!(first.stage, "fit");
        let last = s.next().await.unwrap().unwrap();
        assert!(last.done);
        assert_eq!(last.model.unwrap().model_version, "v1");
        assert!(s.next().await.is_none());
    }
}
