use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use crate::{ModelError, ModelMeta, Result};

const TENSORS: &str = "model.safetensors";
const META: &str = "meta.json";

/// Versioned model artefacts of one model family: `<data_dir>/models/<name>/<version>/` with
/// `model.safetensors`, `meta.json` and optional extra files (vocabularies, id maps as JSON).
/// A version directory is written under a temporary name and renamed into place, so a crash
/// mid-save never leaves a half-written model that the next start would load.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

/// A loaded model version.
#[derive(Debug)]
pub struct Artifact {
    pub dir: PathBuf,
    pub meta: ModelMeta,
    pub tensors: HashMap<String, Tensor>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |source| ModelError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Artifact {
    /// A tensor that must be present.
    pub fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: self.dir.display().to_string(),
                name: name.to_string(),
            })
    }

    /// An extra file saved with the model.
    pub fn extra(&self, file: &str) -> Result<Vec<u8>> {
        let p = self.dir.join(file);
        std::fs::read(&p).map_err(io(&p))
    }
}

impl ArtifactStore {
    /// The store of model family `name` under `data_dir`.
    pub fn new(data_dir: impl AsRef<Path>, name: &str) -> Self {
        ArtifactStore {
            root: data_dir.as_ref().join("models").join(name),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Saves a model version; returns its directory.
    pub fn save(
        &self,
        meta: &ModelMeta,
        tensors: &HashMap<String, Tensor>,
        extra: &[(&str, &[u8])],
    ) -> Result<PathBuf> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let tmp = self.root.join(format!(".tmp-{}", meta.version));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let tp = tmp.join(TENSORS);
        candle_core::safetensors::save(tensors, &tp).map_err(|source| ModelError::Tensors {
            path: tp.display().to_string(),
            source,
        })?;
        for (name, bytes) in extra {
            let p = tmp.join(name);
            std::fs::write(&p, bytes).map_err(io(&p))?;
        }
        let mp = tmp.join(META);
        let json = serde_json::to_vec_pretty(meta).map_err(|source| ModelError::Meta {
            path: mp.display().to_string(),
            source,
        })?;
        std::fs::write(&mp, json).map_err(io(&mp))?;
        // fsync the files so that the rename publishes complete data.
        for entry in std::fs::read_dir(&tmp).map_err(io(&tmp))? {
            let p = entry.map_err(io(&tmp))?.path();
            std::fs::File::open(&p)
                .and_then(|f| f.sync_all())
                .map_err(io(&p))?;
        }
        let dst = self.root.join(&meta.version);
        std::fs::rename(&tmp, &dst).map_err(io(&dst))?;
        tracing::info!(model = %meta.name, version = %meta.version, dir = %dst.display(), "model saved");
        Ok(dst)
    }

    /// Version directories present, oldest first.
    pub fn versions(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root)(e)),
        };
        for entry in rd {
            let entry = entry.map_err(io(&self.root))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && entry.path().join(META).is_file() {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Loads one version onto the CPU.
    pub fn load(&self, version: &str) -> Result<Artifact> {
        let dir = self.root.join(version);
        let mp = dir.join(META);
        let bytes = std::fs::read(&mp).map_err(io(&mp))?;
        let meta: ModelMeta =
            serde_json::from_slice(&bytes).map_err(|source| ModelError::Meta {
                path: mp.display().to_string(),
                source,
            })?;
        let tp = dir.join(TENSORS);
        let tensors = candle_core::safetensors::load(&tp, &Device::Cpu).map_err(|source| {
            ModelError::Tensors {
                path: tp.display().to_string(),
                source,
            }
        })?;
        Ok(Artifact { dir, meta, tensors })
    }

    /// The newest version, if any was saved.
    pub fn latest(&self) -> Result<Option<Artifact>> {
        match self.versions()?.last() {
            Some(v) => self.load(v).map(Some),
            None => Ok(None),
        }
    }

    /// Deletes all but the newest `keep` versions.
    pub fn prune(&self, keep: usize) -> Result<()> {
        let versions = self.versions()?;
        let n = versions.len().saturating_sub(keep);
        for v in &versions[..n] {
            let p = self.root.join(v);
            std::fs::remove_dir_all(&p).map_err(io(&p))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_latest_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        assert!(store.latest().unwrap().is_none());
        let mut versions = Vec::new();
        for i in 0..3 {
            let mut meta = ModelMeta::new("toy");
            meta.version = format!("2026010{i}T000000Z-0000");
            meta.training_examples = i;
            let t = Tensor::new(&[i as f32, 2.0], &Device::Cpu).unwrap();
            let tensors = HashMap::from([("w".to_string(), t)]);
            store
                .save(&meta, &tensors, &[("ids.json", b"[\"a\"]")])
                .unwrap();
            versions.push(meta.version);
        }
        let a = store.latest().unwrap().unwrap();
        assert_eq!(a.meta.training_examples, 2);
        assert_eq!(
            a.tensor("w").unwrap().to_vec1::<f32>().unwrap(),
            vec![2.0, 2.0]
        );
        assert_eq!(a.extra("ids.json").unwrap(), b"[\"a\"]");
        assert!(a.tensor("nope").is_err());
        store.prune(1).unwrap();
        assert_eq!(store.versions().unwrap(), vec![versions[2].clone()]);
    }

    #[test]
    fn a_half_written_version_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::new(dir.path(), "toy");
        std::fs::create_dir_all(store.root().join(".tmp-x")).unwrap();
        std::fs::create_dir_all(store.root().join("20990101T000000Z-0000")).unwrap();
        assert!(store.versions().unwrap().is_empty());
    }
}
