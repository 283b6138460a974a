//! The served recommender: the fitted components, the blend chosen on validation, the training
//! histories of known customers, and its safetensors round trip.

use std::collections::{BTreeMap, HashMap};

use augur_model::{Artifact, ModelMeta};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, Ev};
use crate::models::{Ease, ItemKnn, Popularity, Transitions, input_weights};
use crate::neural::{SeqConfig, SeqModel};

/// The model family name (artefact folder `<data_dir>/models/recommendation/`).
pub const MODEL_NAME: &str = "recommendation";

/// Blend weights and the recency setting; every component score is normalised per customer
/// (divided by its largest value; the neural logits become `exp(logit - max)`) before mixing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Blend {
    /// Recency time constant in events for EASE and kNN inputs (0 = no decay).
    pub tau: f32,
    pub ease: f32,
    pub knn: f32,
    pub trans: f32,
    pub seq: f32,
    pub pop: f32,
}

impl Default for Blend {
    fn default() -> Self {
        Blend {
            tau: 0.0,
            ease: 1.0,
            knn: 0.0,
            trans: 0.0,
            seq: 0.0,
            pop: 0.0,
        }
    }
}

impl Blend {
    pub fn describe(&self) -> String {
        format!(
            "blend of EASE ({}), item-kNN ({}), transitions ({}), neural sequential ({}), popularity ({}); recency tau {}",
            self.ease, self.knn, self.trans, self.seq, self.pop, self.tau
        )
    }
}

/// Hyper-parameters of the components.
#[derive(Debug, Clone)]
pub struct Hyper {
    pub ease_lambda: f32,
    pub ease_min_count: usize,
    pub knn_k: usize,
    pub trans_keep: usize,
    pub seq: SeqConfig,
}

impl Default for Hyper {
    fn default() -> Self {
        Hyper {
            ease_lambda: 200.0,
            ease_min_count: 3,
            knn_k: 100,
            trans_keep: 100,
            seq: SeqConfig::default(),
        }
    }
}

/// The fitted components.
#[derive(Debug, Clone)]
pub struct Components {
    pub pop: Popularity,
    pub knn: ItemKnn,
    pub ease: Ease,
    pub trans: Transitions,
    pub seq: Option<SeqModel>,
}

/// Which raw component scores to compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Pop,
    Knn,
    Ease,
    Trans,
    Seq,
}

impl Components {
    /// Raw (unnormalised) scores of one component.
    pub fn raw(&self, part: Part, hist: &[Ev], tau: f32, out: &mut [f32]) {
        out.iter_mut().for_each(|x| *x = 0.0);
        match part {
            Part::Pop => self.pop.score(out),
            Part::Knn => self.knn.score(&input_weights(hist, tau), out),
            Part::Ease => self.ease.score(&input_weights(hist, tau), out),
            Part::Trans => self.trans.score(hist, out),
            Part::Seq => {
                if let Some(s) = &self.seq {
                    s.score(hist, 1.0, out)
                }
            }
        }
    }

    /// Blended score of every item into `out` (length = items); `tmp` is scratch of the same
    /// length.
    pub fn blend(&self, b: &Blend, hist: &[Ev], out: &mut [f32], tmp: &mut [f32]) {
        out.iter_mut().for_each(|x| *x = 0.0);
        for (part, w) in [
            (Part::Ease, b.ease),
            (Part::Knn, b.knn),
            (Part::Trans, b.trans),
            (Part::Seq, b.seq),
            (Part::Pop, b.pop),
        ] {
            if w == 0.0 || (part == Part::Seq && self.seq.is_none()) {
                continue;
            }
            self.raw(part, hist, b.tau, tmp);
            normalise(part, tmp);
            for (o, t) in out.iter_mut().zip(tmp.iter()) {
                *o += w * t;
            }
        }
    }
}

/// Per-customer normalisation of one component's scores (see [`Blend`]).
pub fn normalise(part: Part, v: &mut [f32]) {
    let mx = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if part == Part::Seq {
        v.iter_mut().for_each(|x| *x = (*x - mx).exp());
    } else if mx > 0.0 {
        let inv = 1.0 / mx;
        v.iter_mut().for_each(|x| *x *= inv);
    }
}

/// The serving model.
#[derive(Debug, Clone)]
pub struct Recommender {
    pub meta: ModelMeta,
    pub items: Vec<String>,
    pub item_index: HashMap<String, u32>,
    pub users: HashMap<String, u32>,
    /// Training history of each known customer, oldest first.
    pub histories: Vec<Vec<Ev>>,
    /// Per history event: was it a purchase.
    pub bought: Vec<Vec<bool>>,
    pub blend: Blend,
    pub parts: Components,
}

#[derive(Serialize, Deserialize)]
struct Ids {
    items: Vec<String>,
    users: Vec<String>,
    blend: Blend,
}

fn sparse_to_tensors(
    prefix: &str,
    rows: &[Vec<(u32, f32)>],
    out: &mut HashMap<String, Tensor>,
) -> candle_core::Result<()> {
    let mut offsets = vec![0u32];
    let mut idx = Vec::new();
    let mut val = Vec::new();
    for r in rows {
        for &(i, v) in r {
            idx.push(i);
            val.push(v);
        }
        offsets.push(idx.len() as u32);
    }
    let dev = &Device::Cpu;
    out.insert(format!("{prefix}.offsets"), Tensor::new(offsets, dev)?);
    out.insert(format!("{prefix}.items"), Tensor::new(idx, dev)?);
    out.insert(format!("{prefix}.scores"), Tensor::new(val, dev)?);
    Ok(())
}

fn tensor_vec<T: candle_core::WithDType>(a: &Artifact, name: &str) -> Result<Vec<T>, String> {
    a.tensor(name)
        .map_err(|e| e.to_string())?
        .flatten_all()
        .and_then(|t| t.to_vec1::<T>())
        .map_err(|e| format!("tensor {name}: {e}"))
}

fn sparse_from(a: &Artifact, prefix: &str) -> Result<Vec<Vec<(u32, f32)>>, String> {
    let off: Vec<u32> = tensor_vec(a, &format!("{prefix}.offsets"))?;
    let idx: Vec<u32> = tensor_vec(a, &format!("{prefix}.items"))?;
    let val: Vec<f32> = tensor_vec(a, &format!("{prefix}.scores"))?;
    Ok(off
        .windows(2)
        .map(|w| {
            (w[0] as usize..w[1] as usize)
                .filter_map(|k| Some((*idx.get(k)?, *val.get(k)?)))
                .collect()
        })
        .collect())
}

impl Recommender {
    /// Assembles a served model from its fitted parts and the full training data.
    pub fn new(
        meta: ModelMeta,
        data: &Dataset,
        bought: Vec<Vec<bool>>,
        blend: Blend,
        parts: Components,
    ) -> Self {
        Recommender {
            meta,
            item_index: data
                .items
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            items: data.items.clone(),
            users: data
                .users
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            histories: data.seqs.clone(),
            bought,
            blend,
            parts,
        }
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    /// Tensors and the extra `ids.json` to save.
    pub fn to_artifact(&self) -> Result<(HashMap<String, Tensor>, Vec<u8>), String> {
        let e = |e: candle_core::Error| e.to_string();
        let dev = &Device::Cpu;
        let mut t = HashMap::new();
        t.insert(
            "pop.counts".into(),
            Tensor::new(self.parts.pop.counts.clone(), dev).map_err(e)?,
        );
        sparse_to_tensors("knn", &self.parts.knn.neighbours, &mut t).map_err(e)?;
        sparse_to_tensors("trans", &self.parts.trans.next, &mut t).map_err(e)?;
        let m = self.parts.ease.items.len();
        t.insert(
            "ease.items".into(),
            Tensor::new(self.parts.ease.items.clone(), dev).map_err(e)?,
        );
        t.insert(
            "ease.b".into(),
            Tensor::from_slice(&self.parts.ease.b, (m, m), dev).map_err(e)?,
        );
        if let Some(s) = &self.parts.seq {
            t.extend(s.to_tensors().map_err(e)?);
        }
        let mut off = vec![0u32];
        let (mut items, mut ts, mut w, mut bought) = (vec![], vec![], vec![], vec![]);
        for (h, b) in self.histories.iter().zip(&self.bought) {
            for (ev, &bb) in h.iter().zip(b) {
                items.push(ev.item);
                ts.push(ev.ts);
                w.push(ev.weight);
                bought.push(u8::from(bb));
            }
            off.push(items.len() as u32);
        }
        t.insert("hist.offsets".into(), Tensor::new(off, dev).map_err(e)?);
        t.insert("hist.items".into(), Tensor::new(items, dev).map_err(e)?);
        t.insert("hist.ts".into(), Tensor::new(ts, dev).map_err(e)?);
        t.insert("hist.weights".into(), Tensor::new(w, dev).map_err(e)?);
        t.insert("hist.bought".into(), Tensor::new(bought, dev).map_err(e)?);
        let mut users = vec![String::new(); self.users.len()];
        for (u, &i) in &self.users {
            users[i as usize] = u.clone();
        }
        let ids = serde_json::to_vec(&Ids {
            items: self.items.clone(),
            users,
            blend: self.blend,
        })
        .map_err(|e| e.to_string())?;
        Ok((t, ids))
    }

    /// Loads a saved model.
    pub fn from_artifact(a: &Artifact) -> Result<Self, String> {
        let ids: Ids = serde_json::from_slice(&a.extra("ids.json").map_err(|e| e.to_string())?)
            .map_err(|e| format!("ids.json: {e}"))?;
        let n = ids.items.len();
        let ease_items: Vec<u32> = tensor_vec(a, "ease.items")?;
        let mut index = vec![u32::MAX; n];
        for (k, &i) in ease_items.iter().enumerate() {
            if let Some(slot) = index.get_mut(i as usize) {
                *slot = k as u32;
            }
        }
        let b: Vec<f32> = tensor_vec(a, "ease.b")?;
        if b.len() != ease_items.len() * ease_items.len() {
            return Err("ease.b has the wrong size".into());
        }
        let off: Vec<u32> = tensor_vec(a, "hist.offsets")?;
        let items: Vec<u32> = tensor_vec(a, "hist.items")?;
        let ts: Vec<i64> = tensor_vec(a, "hist.ts")?;
        let w: Vec<f32> = tensor_vec(a, "hist.weights")?;
        let bought_flat: Vec<u8> = tensor_vec(a, "hist.bought")?;
        let mut histories = Vec::new();
        let mut bought = Vec::new();
        for win in off.windows(2) {
            let r = win[0] as usize..win[1] as usize;
            let mut h = Vec::with_capacity(r.len());
            let mut bb = Vec::with_capacity(r.len());
            for k in r {
                h.push(Ev {
                    item: *items.get(k).ok_or("hist.items too short")?,
                    ts: *ts.get(k).ok_or("hist.ts too short")?,
                    weight: *w.get(k).ok_or("hist.weights too short")?,
                });
                bb.push(*bought_flat.get(k).ok_or("hist.bought too short")? != 0);
            }
            histories.push(h);
            bought.push(bb);
        }
        let seq = SeqModel::from_tensors(&a.tensors);
        let parts = Components {
            pop: Popularity {
                counts: tensor_vec(a, "pop.counts")?,
            },
            knn: ItemKnn {
                neighbours: sparse_from(a, "knn")?,
            },
            ease: Ease {
                items: ease_items,
                index,
                b,
            },
            trans: Transitions {
                next: sparse_from(a, "trans")?,
            },
            seq,
        };
        Ok(Recommender {
            meta: a.meta.clone(),
            item_index: ids
                .items
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            items: ids.items,
            users: ids
                .users
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect(),
            histories,
            bought,
            blend: ids.blend,
            parts,
        })
    }

    /// The history item that contributes most to item `j` for this history (for the reason).
    /// `x` is `input_weights(hist, blend.tau)`.
    pub fn strongest_link(&self, x: &[(u32, f32)], j: u32) -> Option<u32> {
        let mut best: Option<(u32, f32)> = None;
        for &(i, w) in x {
            let mut c = w * self.parts.ease.weight(i, j).max(0.0);
            if let Some(nb) = self.parts.knn.neighbours.get(i as usize)
                && let Some(&(_, s)) = nb.iter().find(|(n, _)| *n == j)
            {
                c += w * s * 0.01;
            }
            if c > 0.0 && best.is_none_or(|(_, b)| c > b) {
                best = Some((i, c));
            }
        }
        best.map(|(i, _)| i)
    }

    pub fn parameters(hyper: &Hyper, blend: &Blend) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("ease.lambda".into(), hyper.ease_lambda.to_string()),
            ("ease.min_count".into(), hyper.ease_min_count.to_string()),
            ("knn.neighbours".into(), hyper.knn_k.to_string()),
            ("seq.dim".into(), hyper.seq.dim.to_string()),
            ("seq.max_len".into(), hyper.seq.max_len.to_string()),
            ("seq.steps".into(), hyper.seq.steps.to_string()),
            ("blend.tau".into(), blend.tau.to_string()),
            ("blend.ease".into(), blend.ease.to_string()),
            ("blend.knn".into(), blend.knn.to_string()),
            ("blend.trans".into(), blend.trans.to_string()),
            ("blend.seq".into(), blend.seq.to_string()),
            ("blend.pop".into(), blend.pop.to_string()),
        ])
    }
}
