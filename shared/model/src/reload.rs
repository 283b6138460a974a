//! Picking up models that another replica trained into a shared [`ArtifactStore`].
//!
//! Replicas of a model service share one artefact volume (Kubernetes: a ReadWriteMany volume).
//! A replica that trains saves a new version there and swaps it in at once; the others run a
//! [`ReloadWatcher`], which every `interval` lists the store's versions (a directory listing, no
//! weights read) and, when a version newer than the served one appears, loads it and hands it to
//! the service's own swap path.
//!
//! - Only complete versions are seen: [`ArtifactStore::save`] writes a version under a temporary
//!   dot-name and renames it into place, and [`ArtifactStore::versions`] skips dot-names and
//!   directories without `meta.json`.
//! - Only newer versions, by the store's order (version strings sort by training time): never a
//!   downgrade, never the version already served (say, the one this replica just trained).
//! - A version that cannot be loaded (corrupt, pruned between listing and loading, written by an
//!   incompatible build) is logged once and skipped; the current model keeps serving, and an
//!   older version that is still newer than the served one is tried instead.

use std::collections::HashSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::ArtifactStore;

type Loader<M> = dyn Fn(&ArtifactStore, &str) -> Result<M, String> + Send + Sync;

/// What one [`ReloadWatcher::poll`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// Nothing newer than the served version (or only versions that failed to load before).
    UpToDate,
    /// This version was loaded and handed to the swap callback.
    Reloaded(String),
    /// This version could not be loaded; it is skipped from now on.
    Failed(String),
    /// The store could not be listed (logged once until it can be again).
    Unlisted,
}

/// Watches one [`ArtifactStore`] for versions newer than the served one (see the module docs).
pub struct ReloadWatcher<M> {
    store: ArtifactStore,
    served: Box<dyn Fn() -> Option<String> + Send + Sync>,
    load: Arc<Loader<M>>,
    swap: Box<dyn Fn(M) + Send + Sync>,
    /// Versions that failed to load: logged once, never tried again.
    failed: HashSet<String>,
    /// Whether the last listing failed (so a lasting problem is logged once).
    unlisted: bool,
}

impl<M> std::fmt::Debug for ReloadWatcher<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadWatcher")
            .field("store", &self.store.root())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<M: Send + 'static> ReloadWatcher<M> {
    /// A watcher over `store`. `served` says which version is being served now (None: no model);
    /// `load` reads one version (it runs on a blocking thread); `swap` serves a loaded model,
    /// the same way the service serves a model it trained itself.
    pub fn new<E: Display>(
        store: ArtifactStore,
        served: impl Fn() -> Option<String> + Send + Sync + 'static,
        load: impl Fn(&ArtifactStore, &str) -> Result<M, E> + Send + Sync + 'static,
        swap: impl Fn(M) + Send + Sync + 'static,
    ) -> Self {
        ReloadWatcher {
            store,
            served: Box::new(served),
            load: Arc::new(move |s: &ArtifactStore, v: &str| load(s, v).map_err(|e| e.to_string())),
            swap: Box::new(swap),
            failed: HashSet::new(),
            unlisted: false,
        }
    }

    fn model_name(&self) -> String {
        self.store
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// The newest listed version newer than `served` that has not failed before.
    fn candidate(&self, versions: &[String], served: Option<&str>) -> Option<String> {
        versions
            .iter()
            .rev()
            .filter(|v| served.is_none_or(|s| v.as_str() > s))
            .find(|v| !self.failed.contains(*v))
            .cloned()
    }

    /// One check: lists the store and, when a newer version is there, loads and swaps it in.
    pub async fn poll(&mut self) -> Polled {
        let model = self.model_name();
        let versions = match self.store.versions() {
            Ok(v) => {
                if std::mem::take(&mut self.unlisted) {
                    tracing::info!(%model, "model store readable again");
                }
                v
            }
            Err(e) => {
                if !std::mem::replace(&mut self.unlisted, true) {
                    tracing::warn!(%model, error = %e, "model store unreadable; keeping the served model");
                }
                return Polled::Unlisted;
            }
        };
        // Forget failures of versions that are gone (pruned), so the set stays small.
        self.failed.retain(|v| versions.contains(v));
        let Some(version) = self.candidate(&versions, (self.served)().as_deref()) else {
            return Polled::UpToDate;
        };
        let (load, store, v) = (self.load.clone(), self.store.clone(), version.clone());
        let loaded = match tokio::task::spawn_blocking(move || load(&store, &v)).await {
            Ok(r) => r,
            Err(e) => Err(format!("loading task: {e}")),
        };
        match loaded {
            Ok(m) => {
                // A Train of this replica may have finished while the version loaded.
                if (self.served)().is_some_and(|s| s.as_str() >= version.as_str()) {
                    return Polled::UpToDate;
                }
                (self.swap)(m);
                tracing::info!(%model, %version, "model reloaded from shared store");
                Polled::Reloaded(version)
            }
            Err(error) => {
                tracing::warn!(
                    %model,
                    %version,
                    %error,
                    "model version in the shared store unreadable; skipped, the served model stays"
                );
                self.failed.insert(version.clone());
                Polled::Failed(version)
            }
        }
    }

    /// Polls every `interval` (the first time one interval from now) until `shutdown` resolves;
    /// a load in progress is abandoned then.
    pub async fn run(mut self, interval: Duration, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = async {
                    tick.tick().await;
                    self.poll().await
                } => {}
            }
        }
        tracing::debug!(model = %self.model_name(), "model reload watcher stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use candle_core::{Device, Tensor};

    use super::*;
    use crate::ModelMeta;

    fn save(store: &ArtifactStore, version: &str, value: f32) {
        let mut meta = ModelMeta::new("toy");
        meta.version = version.to_string();
        let t = Tensor::new(&[value], &Device::Cpu).unwrap();
        store
            .save(&meta, &HashMap::from([("w".to_string(), t)]), &[])
            .unwrap();
    }

    /// A served "model": its version and weight.
    type Served = Arc<Mutex<Option<(String, f32)>>>;

    fn watcher(store: &ArtifactStore, served: &Served) -> ReloadWatcher<(String, f32)> {
        let (s1, s2) = (served.clone(), served.clone());
        ReloadWatcher::new(
            store.clone(),
            move || s1.lock().unwrap().as_ref().map(|m| m.0.clone()),
            |store: &ArtifactStore, v: &str| -> Result<(String, f32), String> {
                let a = store.load(v).map_err(|e| e.to_string())?;
                let w = a.tensor("w").map_err(|e| e.to_string())?;
                let w = w.to_vec1::<f32>().map_err(|e| e.to_string())?;
                Ok((a.meta.version, w[0]))
            },
            move |m| *s2.lock().unwrap() = Some(m),
        )
    }

    const V1: &str = "20260101T000000Z-0001";
    const V2: &str = "20260102T000000Z-0001";
    const V3: &str = "20260103T000000Z-0001";

    #[tokio::test]
    async fn a_newer_version_is_loaded_and_swapped_in() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        let served: Served = Arc::new(Mutex::new(None));
        let mut w = watcher(&store, &served);
        // An empty (even missing) store: nothing to do.
        assert_eq!(w.poll().await, Polled::UpToDate);
        save(&store, V1, 1.0);
        assert_eq!(w.poll().await, Polled::Reloaded(V1.into()));
        assert_eq!(*served.lock().unwrap(), Some((V1.to_string(), 1.0)));
        save(&store, V2, 2.0);
        save(&store, V3, 3.0);
        // Straight to the newest.
        assert_eq!(w.poll().await, Polled::Reloaded(V3.into()));
        assert_eq!(*served.lock().unwrap(), Some((V3.to_string(), 3.0)));
        assert_eq!(w.poll().await, Polled::UpToDate);
    }

    #[tokio::test]
    async fn the_served_version_and_older_ones_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        save(&store, V1, 1.0);
        save(&store, V2, 2.0);
        // This replica serves V2 (it trained it): not reloaded, V1 never served again.
        let served: Served = Arc::new(Mutex::new(Some((V2.to_string(), 22.0))));
        let mut w = watcher(&store, &served);
        assert_eq!(w.poll().await, Polled::UpToDate);
        // Serving a version newer than anything in the store (not saved yet): no downgrade.
        *served.lock().unwrap() = Some((V3.to_string(), 33.0));
        assert_eq!(w.poll().await, Polled::UpToDate);
        assert_eq!(*served.lock().unwrap(), Some((V3.to_string(), 33.0)));
    }

    #[tokio::test]
    async fn half_written_and_unreadable_versions_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        save(&store, V1, 1.0);
        let served: Served = Arc::new(Mutex::new(Some((V1.to_string(), 1.0))));
        let mut w = watcher(&store, &served);
        // A save in progress (temporary dot-name) and a directory without meta.json are invisible.
        std::fs::create_dir_all(store.root().join(format!(".tmp-{V3}"))).unwrap();
        std::fs::create_dir_all(store.root().join(V3)).unwrap();
        assert_eq!(w.poll().await, Polled::UpToDate);
        // A complete-looking version whose weights are garbage: tried once, then skipped.
        save(&store, V2, 2.0);
        std::fs::write(store.root().join(V2).join("model.safetensors"), b"garbage").unwrap();
        assert_eq!(w.poll().await, Polled::Failed(V2.into()));
        assert_eq!(w.poll().await, Polled::UpToDate);
        assert_eq!(*served.lock().unwrap(), Some((V1.to_string(), 1.0)));
        // A good, newer version after the broken one is picked up.
        std::fs::remove_dir_all(store.root().join(V3)).unwrap();
        save(&store, V3, 3.0);
        assert_eq!(w.poll().await, Polled::Reloaded(V3.into()));
        assert_eq!(*served.lock().unwrap(), Some((V3.to_string(), 3.0)));
    }

    #[tokio::test]
    async fn an_older_good_version_is_used_when_the_newest_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        save(&store, V2, 2.0);
        save(&store, V3, 3.0);
        std::fs::write(store.root().join(V3).join("model.safetensors"), b"x").unwrap();
        let served: Served = Arc::new(Mutex::new(None));
        let mut w = watcher(&store, &served);
        assert_eq!(w.poll().await, Polled::Failed(V3.into()));
        assert_eq!(w.poll().await, Polled::Reloaded(V2.into()));
        assert_eq!(w.poll().await, Polled::UpToDate);
    }

    #[tokio::test]
    async fn run_polls_every_interval_and_stops_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        let served: Served = Arc::new(Mutex::new(None));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let every = Duration::from_millis(50);
        let task = tokio::spawn(watcher(&store, &served).run(every, async {
            let _ = stopped.await;
        }));
        save(&store, V1, 1.0);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while served.lock().unwrap().is_none() {
            assert!(tokio::time::Instant::now() < deadline, "V1 not picked up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        save(&store, V2, 2.0);
        while served.lock().unwrap().as_ref().unwrap().0 != V2 {
            assert!(tokio::time::Instant::now() < deadline, "V2 not picked up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the watcher stops on shutdown")
            .unwrap();
        // Stopped: a newer version is no longer picked up.
        save(&store, V3, 3.0);
        tokio::time::sleep(every * 6).await;
        assert_eq!(served.lock().unwrap().as_ref().unwrap().0, V2);
    }
}
