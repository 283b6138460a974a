//! The neural component: a sequential next-item recommender in candle. A customer's last
//! `max_len` items (with position embeddings) are pooled by attention with a learned query,
//! passed through a residual ReLU layer, and scored against output item embeddings with a full
//! softmax over the catalogue (cross-entropy on the next item of each training history).
//! Serving runs the same arithmetic in plain Rust on the exported weights.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::data::{Dataset, Ev};

/// Training settings.
#[derive(Debug, Clone)]
pub struct SeqConfig {
    pub dim: usize,
    pub max_len: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub seed: u64,
    /// Uniformly sampled negatives shared by a batch (sampled softmax); the full softmax when
    /// the catalogue has fewer than twice as many items.
    pub negatives: usize,
}

impl Default for SeqConfig {
    fn default() -> Self {
        SeqConfig {
            dim: 48,
            max_len: 20,
            steps: 100,
            batch: 256,
            lr: 1e-2,
            seed: 42,
            negatives: 0,
        }
    }
}

/// The trained model in serving form (row-major f32 buffers).
#[derive(Debug, Clone)]
pub struct SeqModel {
    pub n_items: usize,
    pub dim: usize,
    pub max_len: usize,
    /// `(n_items + 1) x dim`; the last row is padding.
    pub item_in: Vec<f32>,
    pub pos: Vec<f32>,
    pub query: Vec<f32>,
    /// `dim x dim`, applied as `h W^T + b`.
    pub w: Vec<f32>,
    pub wb: Vec<f32>,
    pub item_out: Vec<f32>,
    pub out_bias: Vec<f32>,
    /// `item_out` transposed (`dim x n_items`), for serving.
    pub item_out_t: Vec<f32>,
}

fn transpose(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; m.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = m[r * cols + c];
        }
    }
    t
}

const NAMES: [&str; 7] = [
    "seq.item_in",
    "seq.pos",
    "seq.query",
    "seq.w",
    "seq.wb",
    "seq.item_out",
    "seq.out_bias",
];

fn init(rng: &mut StdRng, shape: (usize, usize), std: f32) -> candle_core::Result<Var> {
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * std * 1.732)
        .collect();
    Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// Training examples: (context items, right-aligned, padded with `n_items`; target).
fn examples(d: &Dataset, max_len: usize) -> Vec<(Vec<u32>, u32)> {
    let pad = d.n_items() as u32;
    let mut out = Vec::new();
    for s in &d.seqs {
        for t in 1..s.len() {
            let from = t.saturating_sub(max_len);
            let mut ctx = vec![pad; max_len - (t - from)];
            ctx.extend(s[from..t].iter().map(|e| e.item));
            out.push((ctx, s[t].item));
        }
    }
    out
}

/// Trains the model from a random start; `on_step(step, loss)` is called every 50 steps.
pub fn train(
    d: &Dataset,
    cfg: &SeqConfig,
    on_step: impl FnMut(usize, f32),
) -> candle_core::Result<SeqModel> {
    train_from(d, cfg, None, on_step)
}

/// Trains the model, starting from `start`'s weights when it has the same shape (warm start,
/// e.g. the refit on all the data after the validation fit on the older part).
pub fn train_from(
    d: &Dataset,
    cfg: &SeqConfig,
    start: Option<&SeqModel>,
    mut on_step: impl FnMut(usize, f32),
) -> candle_core::Result<SeqModel> {
    let n = d.n_items();
    let (dim, len) = (cfg.dim, cfg.max_len);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut item_in = init(&mut rng, (n + 1, dim), 0.1)?;
    let mut pos = init(&mut rng, (len, dim), 0.1)?;
    let mut query = init(&mut rng, (dim, 1), 0.1)?;
    let mut w = init(&mut rng, (dim, dim), (1.0 / dim as f32).sqrt())?;
    let mut wb = Var::from_tensor(&Tensor::zeros((1, dim), DType::F32, &Device::Cpu)?)?;
    let mut item_out = init(&mut rng, (n, dim), 0.1)?;
    let mut out_bias = Var::from_tensor(&Tensor::zeros((1, n), DType::F32, &Device::Cpu)?)?;
    if let Some(m) = start
        && m.n_items == n
        && m.dim == dim
        && m.max_len == len
    {
        let var = |v: &Vec<f32>, shape: (usize, usize)| {
            Var::from_tensor(&Tensor::from_slice(v, shape, &Device::Cpu)?)
        };
        item_in = var(&m.item_in, (n + 1, dim))?;
        pos = var(&m.pos, (len, dim))?;
        query = var(&m.query, (dim, 1))?;
        w = var(&m.w, (dim, dim))?;
        wb = var(&m.wb, (1, dim))?;
        item_out = var(&m.item_out, (n, dim))?;
        out_bias = var(&m.out_bias, (1, n))?;
    }
    let vars = [&item_in, &pos, &query, &w, &wb, &item_out, &out_bias];
    let mut opt = AdamW::new(
        vars.iter().map(|v| (*v).clone()).collect(),
        ParamsAdamW {
            lr: cfg.lr,
            weight_decay: 1e-4,
            ..Default::default()
        },
    )?;
    let ex = examples(d, len);
    if !ex.is_empty() {
        let scale = 1.0 / (dim as f64).sqrt();
        for step in 0..cfg.steps {
            let b = cfg.batch.min(ex.len());
            let mut idx = Vec::with_capacity(b * len);
            let mut tgt = Vec::with_capacity(b);
            for _ in 0..b {
                let (ctx, t) = &ex[rng.random_range(0..ex.len())];
                idx.extend_from_slice(ctx);
                tgt.push(*t);
            }
            let mask: Vec<f32> = idx
                .iter()
                .map(|&i| if i as usize == n { -1e9 } else { 0.0 })
                .collect();
            let idx = Tensor::from_vec(idx, (b * len,), &Device::Cpu)?;
            let mask = Tensor::from_vec(mask, (b, len), &Device::Cpu)?;
            let tgt = Tensor::from_vec(tgt, (b,), &Device::Cpu)?;
            let emb = item_in
                .as_tensor()
                .index_select(&idx, 0)?
                .reshape((b, len, dim))?
                .broadcast_add(&pos.as_tensor().unsqueeze(0)?)?;
            let att = (emb
                .reshape((b * len, dim))?
                .matmul(query.as_tensor())?
                .reshape((b, len))?
                * scale)?;
            let att = candle_nn::ops::softmax_last_dim(&(att + mask)?)?;
            let h = att.unsqueeze(2)?.broadcast_mul(&emb)?.sum(1)?;
            let u = (&h
                + h.matmul(&w.as_tensor().t()?)?
                    .broadcast_add(wb.as_tensor())?
                    .relu()?)?;
            let loss = if cfg.negatives > 0 && n >= 2 * cfg.negatives {
                // Sampled softmax: the target's logit against shared uniform negatives.
                let negs: Vec<u32> = (0..cfg.negatives)
                    .map(|_| rng.random_range(0..n as u32))
                    .collect();
                let negs = Tensor::from_vec(negs, (cfg.negatives,), &Device::Cpu)?;
                let bias = out_bias.as_tensor().squeeze(0)?;
                let pos_w = item_out.as_tensor().index_select(&tgt, 0)?;
                let pos_b = bias.index_select(&tgt, 0)?;
                let pos = ((&u * pos_w)?.sum(1)? + pos_b)?.unsqueeze(1)?;
                let neg_w = item_out.as_tensor().index_select(&negs, 0)?;
                let neg_b = bias.index_select(&negs, 0)?.unsqueeze(0)?;
                let neg = u.matmul(&neg_w.t()?)?.broadcast_add(&neg_b)?;
                // A negative equal to the target is masked out.
                let same = tgt
                    .unsqueeze(1)?
                    .broadcast_eq(&negs.unsqueeze(0)?)?
                    .to_dtype(DType::F32)?;
                let neg = (neg - (same * 1e9)?)?;
                let logits = Tensor::cat(&[&pos, &neg], 1)?;
                let zeros = Tensor::zeros((b,), DType::U32, &Device::Cpu)?;
                candle_nn::loss::cross_entropy(&logits, &zeros)?
            } else {
                let logits = u
                    .matmul(&item_out.as_tensor().t()?)?
                    .broadcast_add(out_bias.as_tensor())?;
                candle_nn::loss::cross_entropy(&logits, &tgt)?
            };
            opt.backward_step(&loss)?;
            if step % 50 == 0 || step + 1 == cfg.steps {
                on_step(step, loss.to_scalar::<f32>()?);
            }
        }
    }
    let flat =
        |v: &Var| -> candle_core::Result<Vec<f32>> { v.as_tensor().flatten_all()?.to_vec1() };
    Ok(SeqModel {
        n_items: n,
        dim,
        max_len: len,
        item_in: flat(&item_in)?,
        pos: flat(&pos)?,
        query: flat(&query)?,
        w: flat(&w)?,
        wb: flat(&wb)?,
        item_out_t: transpose(&flat(&item_out)?, n, dim),
        item_out: flat(&item_out)?,
        out_bias: flat(&out_bias)?,
    })
}

impl SeqModel {
    /// Adds the model's score of every item for this history to `out`, times `weight`.
    pub fn score(&self, hist: &[Ev], weight: f32, out: &mut [f32]) {
        let (d, len) = (self.dim, self.max_len);
        let take = hist.len().min(len);
        if take == 0 {
            return;
        }
        let recent = &hist[hist.len() - take..];
        let first_pos = len - take;
        let mut embs = vec![0f32; take * d];
        let mut att = vec![0f32; take];
        let scale = 1.0 / (d as f32).sqrt();
        for (k, e) in recent.iter().enumerate() {
            let item = (e.item as usize).min(self.n_items);
            let p = first_pos + k;
            let row = &mut embs[k * d..(k + 1) * d];
            for (c, r) in row.iter_mut().enumerate() {
                *r = self.item_in[item * d + c] + self.pos[p * d + c];
            }
            att[k] = row.iter().zip(&self.query).map(|(a, b)| a * b).sum::<f32>() * scale;
        }
        let mx = att.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let z: f32 = att
            .iter_mut()
            .map(|a| {
                *a = (*a - mx).exp();
                *a
            })
            .sum();
        let mut h = vec![0f32; d];
        for k in 0..take {
            for c in 0..d {
                h[c] += att[k] / z * embs[k * d + c];
            }
        }
        let mut u = h.clone();
        for (r, ur) in u.iter_mut().enumerate() {
            let v: f32 = (0..d).map(|c| self.w[r * d + c] * h[c]).sum::<f32>() + self.wb[r];
            *ur += v.max(0.0);
        }
        // out += weight * (item_out u + bias), as `dim` column passes over the transposed
        // output embeddings so that the inner loop vectorises.
        let n = self.n_items.min(out.len());
        let out = &mut out[..n];
        for (o, b) in out.iter_mut().zip(&self.out_bias) {
            *o += weight * b;
        }
        if self.item_out_t.len() == n * d {
            for (c, uc) in u.iter().enumerate() {
                let wu = weight * uc;
                let col = &self.item_out_t[c * n..(c + 1) * n];
                for (o, x) in out.iter_mut().zip(col) {
                    *o += wu * x;
                }
            }
        } else {
            for (j, o) in out.iter_mut().enumerate() {
                let row = &self.item_out[j * d..(j + 1) * d];
                *o += weight * row.iter().zip(&u).map(|(a, b)| a * b).sum::<f32>();
            }
        }
    }

    pub fn to_tensors(&self) -> candle_core::Result<HashMap<String, Tensor>> {
        let (n, d, l) = (self.n_items, self.dim, self.max_len);
        let dev = &Device::Cpu;
        let bufs: [(&Vec<f32>, (usize, usize)); 7] = [
            (&self.item_in, (n + 1, d)),
            (&self.pos, (l, d)),
            (&self.query, (d, 1)),
            (&self.w, (d, d)),
            (&self.wb, (1, d)),
            (&self.item_out, (n, d)),
            (&self.out_bias, (1, n)),
        ];
        let mut out = HashMap::new();
        for (name, (v, shape)) in NAMES.iter().zip(bufs) {
            out.insert(name.to_string(), Tensor::from_slice(v, shape, dev)?);
        }
        Ok(out)
    }

    pub fn from_tensors(t: &HashMap<String, Tensor>) -> Option<SeqModel> {
        let get = |k: &str| -> Option<(Vec<f32>, (usize, usize))> {
            let x = t.get(k)?;
            let dims = x.dims2().ok()?;
            Some((x.flatten_all().ok()?.to_vec1().ok()?, dims))
        };
        let (item_in, (n1, dim)) = get(NAMES[0])?;
        let (pos, (max_len, _)) = get(NAMES[1])?;
        Some(SeqModel {
            n_items: n1.checked_sub(1)?,
            dim,
            max_len,
            item_in,
            pos,
            query: get(NAMES[2])?.0,
            w: get(NAMES[3])?.0,
            wb: get(NAMES[4])?.0,
            item_out_t: transpose(&get(NAMES[5])?.0, n1.checked_sub(1)?, dim),
            item_out: get(NAMES[5])?.0,
            out_bias: get(NAMES[6])?.0,
        })
    }
}

/// Index of the largest value.
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RawInteraction;

    #[test]
    fn learns_a_deterministic_sequence_and_round_trips() {
        // Every user walks the items 0 -> 1 -> 2 -> ... -> 7 from a random start.
        let mut raw = Vec::new();
        for u in 0..40 {
            for t in 0..6 {
                raw.push(RawInteraction {
                    user: format!("u{u}"),
                    item: format!("i{}", (u % 3 + t) % 8),
                    ts: t as i64,
                    weight: 1.0,
                });
            }
        }
        let d = Dataset::from_raw(&raw);
        let cfg = SeqConfig {
            dim: 16,
            max_len: 4,
            steps: 150,
            batch: 64,
            lr: 1e-2,
            seed: 1,
            negatives: 0,
        };
        let mut losses = Vec::new();
        let m = train(&d, &cfg, |_, l| losses.push(l)).unwrap();
        assert!(losses.last().unwrap() < &(losses[0] * 0.5), "{losses:?}");
        // After item "i3" comes "i4".
        let i3 = d.items.iter().position(|s| s == "i3").unwrap() as u32;
        let i2 = d.items.iter().position(|s| s == "i2").unwrap() as u32;
        let i4 = d.items.iter().position(|s| s == "i4").unwrap();
        let hist = [
            Ev {
                item: i2,
                ts: 0,
                weight: 1.0,
            },
            Ev {
                item: i3,
                ts: 1,
                weight: 1.0,
            },
        ];
        let mut s = vec![0f32; d.n_items()];
        m.score(&hist, 1.0, &mut s);
        assert_eq!(argmax(&s), i4);
        let back = SeqModel::from_tensors(&m.to_tensors().unwrap()).unwrap();
        let mut s2 = vec![0f32; d.n_items()];
        back.score(&hist, 1.0, &mut s2);
        assert_eq!(s, s2);
    }
}
