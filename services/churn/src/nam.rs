//! A neural additive model (Agarwal et al. 2021) in candle: the churn log-odds are a bias plus one
//! learned shape function per input column, `f_j(x_j) = l_j x_j + sum_h v_jh relu(w_jh x_j + b_jh)`.
//! Because the network is additive, each column's contribution to the output is exact: the
//! explanation of a prediction is the model itself, not an approximation of it.
//!
//! Optionally the recent order sequence enters through a small GRU: the columns of the last
//! orders (oldest first, a fixed number of fields per order) are read step by step instead of by
//! shape functions, and a linear read-out of the final state is one more additive term, `g(seq)`.
//! The output stays `bias + sum_j f_j(x_j) + g(seq)`, so the explanation stays exact: the
//! sequence is one factor whose contribution is `g(seq)` minus its training mean.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamConfig {
    pub hidden: usize,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    pub weight_decay: f64,
    pub seed: u64,
    /// Hidden units of the order-sequence GRU (when the columns include a sequence).
    #[serde(default = "default_seq_hidden")]
    pub seq_hidden: usize,
}

fn default_seq_hidden() -> usize {
    8
}

impl Default for NamConfig {
    fn default() -> Self {
        NamConfig {
            hidden: 8,
            epochs: 20,
            lr: 0.01,
            batch: 512,
            weight_decay: 1e-4,
            seed: 42,
            seq_hidden: default_seq_hidden(),
        }
    }
}

/// The trained model, as plain arrays for fast inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Nam {
    pub inputs: usize,
    pub hidden: usize,
    /// `[inputs * hidden]`, row-major.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    /// `[inputs]`
    pub lin: Vec<f32>,
    pub bias: f32,
    /// Mean contribution of each column over the training examples (the explanation baseline).
    pub mean_contrib: Vec<f64>,
    /// The order-sequence term, if the columns include a sequence.
    pub seq: Option<SeqNet>,
}

/// Where the order sequence sits among the input columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqLayout {
    /// Column indices, step-major (oldest order first), `fields` per step.
    pub cols: Vec<usize>,
    pub fields: usize,
}

impl SeqLayout {
    pub fn steps(&self) -> usize {
        self.cols.len() / self.fields.max(1)
    }
}

/// A GRU over the order sequence (gates r, z, n as in candle and PyTorch) and a linear read-out of
/// its final state: the sequence's additive term.
#[derive(Debug, Clone, PartialEq)]
pub struct SeqNet {
    pub layout: SeqLayout,
    pub hidden: usize,
    /// [3 hidden, fields], [3 hidden, hidden], [3 hidden], [3 hidden].
    pub w_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub b_hh: Vec<f32>,
    /// `[hidden]` and the read-out bias.
    pub w_out: Vec<f32>,
    pub b_out: f32,
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

impl SeqNet {
    /// The sequence's term for one input row.
    pub fn term(&self, x: &[f32]) -> f32 {
        let (hd, f) = (self.hidden, self.layout.fields);
        let mut h = vec![0f32; hd];
        let mut gi = vec![0f32; 3 * hd];
        let mut gh = vec![0f32; 3 * hd];
        for step in self.layout.cols.chunks(f) {
            let xt: Vec<f32> = step
                .iter()
                .map(|&c| x.get(c).copied().unwrap_or(0.0))
                .collect();
            for j in 0..3 * hd {
                let wi = &self.w_ih[j * f..(j + 1) * f];
                gi[j] = wi.iter().zip(&xt).map(|(a, b)| a * b).sum::<f32>() + self.b_ih[j];
                let wh = &self.w_hh[j * hd..(j + 1) * hd];
                gh[j] = wh.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>() + self.b_hh[j];
            }
            for k in 0..hd {
                let r = sigmoid(gi[k] + gh[k]);
                let z = sigmoid(gi[hd + k] + gh[hd + k]);
                let n = (gi[2 * hd + k] + r * gh[2 * hd + k]).tanh();
                h[k] = z * h[k] + (1.0 - z) * n;
            }
        }
        self.w_out.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>() + self.b_out
    }
}

/// The sequence net's candle parameters.
struct SeqParams {
    layout: SeqLayout,
    hidden: usize,
    /// Column indices as a tensor (for `index_select`).
    cols: Tensor,
    /// [inputs]: 0 for the sequence's columns (no shape function of their own), 1 elsewhere.
    mask: Tensor,
    w_ih: Var,
    w_hh: Var,
    b_ih: Var,
    b_hh: Var,
    w_out: Var,
    b_out: Var,
}

impl SeqParams {
    /// Fresh parameters for `layout` among `inputs` columns (uniform +-1/sqrt(hidden) as in
    /// PyTorch's GRU, a near-zero read-out).
    fn new(
        layout: SeqLayout,
        hidden: usize,
        inputs: usize,
        rng: &mut StdRng,
        dev: &Device,
    ) -> Result<SeqParams> {
        let (f, h) = (layout.fields, hidden.max(1));
        let k = 1.0 / (h as f32).sqrt();
        let net = SeqNet {
            w_ih: uniform(rng, 3 * h * f, k),
            w_hh: uniform(rng, 3 * h * h, k),
            b_ih: uniform(rng, 3 * h, k),
            b_hh: uniform(rng, 3 * h, k),
            w_out: randn(rng, h, 0.01),
            b_out: 0.0,
            layout,
            hidden: h,
        };
        SeqParams::import(&net, inputs, dev)
    }

    fn vars(&self) -> Vec<Var> {
        vec![
            self.w_ih.clone(),
            self.w_hh.clone(),
            self.b_ih.clone(),
            self.b_hh.clone(),
            self.w_out.clone(),
            self.b_out.clone(),
        ]
    }

    /// The sequence term [n] of a batch [n, inputs].
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let n = x.dim(0)?;
        let (hd, f) = (self.hidden, self.layout.fields);
        let steps = self.layout.steps();
        let seq = x.index_select(&self.cols, 1)?.reshape((n, steps, f))?;
        let mut h = Tensor::zeros((n, hd), DType::F32, x.device())?;
        let w_ih = self.w_ih.as_tensor().t()?;
        let w_hh = self.w_hh.as_tensor().t()?;
        for t in 0..steps {
            let xt = seq.narrow(1, t, 1)?.squeeze(1)?;
            let gi = xt.matmul(&w_ih)?.broadcast_add(self.b_ih.as_tensor())?;
            let gh = h.matmul(&w_hh)?.broadcast_add(self.b_hh.as_tensor())?;
            let r = candle_nn::ops::sigmoid(&(gi.narrow(1, 0, hd)? + gh.narrow(1, 0, hd)?)?)?;
            let z = candle_nn::ops::sigmoid(&(gi.narrow(1, hd, hd)? + gh.narrow(1, hd, hd)?)?)?;
            let cand = (gi.narrow(1, 2 * hd, hd)? + (r * gh.narrow(1, 2 * hd, hd)?)?)?.tanh()?;
            h = ((&z * &h)? + ((z.ones_like()? - &z)? * cand)?)?;
        }
        h.broadcast_mul(self.w_out.as_tensor())?
            .sum(1)?
            .broadcast_add(self.b_out.as_tensor())
    }

    fn export(&self) -> Result<SeqNet> {
        let v =
            |t: &Var| -> Result<Vec<f32>> { Ok(t.as_tensor().flatten_all()?.to_vec1::<f32>()?) };
        Ok(SeqNet {
            layout: self.layout.clone(),
            hidden: self.hidden,
            w_ih: v(&self.w_ih)?,
            w_hh: v(&self.w_hh)?,
            b_ih: v(&self.b_ih)?,
            b_hh: v(&self.b_hh)?,
            w_out: v(&self.w_out)?,
            b_out: v(&self.b_out)?.first().copied().unwrap_or(0.0),
        })
    }

    fn import(s: &SeqNet, inputs: usize, dev: &Device) -> Result<SeqParams> {
        let (h, f) = (s.hidden, s.layout.fields);
        let var = |v: &[f32], shape: &[usize]| -> Result<Var> {
            Ok(Var::from_tensor(&Tensor::from_vec(
                v.to_vec(),
                shape,
                dev,
            )?)?)
        };
        let cols: Vec<u32> = s.layout.cols.iter().map(|&c| c as u32).collect();
        let n = cols.len();
        let mut mask = vec![1f32; inputs];
        for &c in &s.layout.cols {
            mask[c] = 0.0;
        }
        Ok(SeqParams {
            layout: s.layout.clone(),
            hidden: h,
            cols: Tensor::from_vec(cols, n, dev)?,
            mask: Tensor::from_vec(mask, inputs, dev)?,
            w_ih: var(&s.w_ih, &[3 * h, f])?,
            w_hh: var(&s.w_hh, &[3 * h, h])?,
            b_ih: var(&s.b_ih, &[3 * h])?,
            b_hh: var(&s.b_hh, &[3 * h])?,
            w_out: var(&s.w_out, &[h])?,
            b_out: var(&[s.b_out], &[1])?,
        })
    }
}

fn uniform(rng: &mut StdRng, n: usize, k: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * k)
        .collect()
}

struct Params {
    w1: Var,
    b1: Var,
    w2: Var,
    lin: Var,
    bias: Var,
}

fn randn(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            // Box-Muller.
            let u1: f32 = rng.random::<f32>().max(1e-7);
            let u2: f32 = rng.random();
            scale * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
        })
        .collect()
}

/// The log-odds [n] of a batch [n, inputs]: bias, the shape functions of the columns that are
/// not in the sequence, and the sequence term.
fn logits_t(p: &Params, seq: Option<&SeqParams>, x: &Tensor) -> candle_core::Result<Tensor> {
    let c = contributions_t(p, x)?;
    match seq {
        Some(s) => {
            let z = c
                .broadcast_mul(&s.mask)?
                .sum(1)?
                .broadcast_add(p.bias.as_tensor())?;
            z + s.forward(x)?
        }
        None => c.sum(1)?.broadcast_add(p.bias.as_tensor()),
    }
}

/// Per-column contributions [n, inputs] of a batch [n, inputs].
fn contributions_t(p: &Params, x: &Tensor) -> candle_core::Result<Tensor> {
    let xe = x.unsqueeze(2)?; // [n, f, 1]
    let h = xe
        .broadcast_mul(p.w1.as_tensor())?
        .broadcast_add(p.b1.as_tensor())?
        .relu()?; // [n, f, h]
    let nl = h.broadcast_mul(p.w2.as_tensor())?.sum(D::Minus1)?; // [n, f]
    nl + x.broadcast_mul(p.lin.as_tensor())?
}

fn bce_with_logits(z: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    // max(z, 0) - z y + ln(1 + exp(-|z|))
    let a = z.relu()?;
    let b = (z * y)?;
    let c = ((z.abs()?.neg()?.exp()? + 1.0)?).log()?;
    ((a - b)? + c)?.mean_all()
}

impl Nam {
    /// Trains on standardised rows `x` (each of length `inputs`) with labels `y` (churned = 1);
    /// the columns of `seq` (if any) are read by the sequence GRU instead of shape functions.
    pub fn train(
        x: &[Vec<f32>],
        y: &[bool],
        inputs: usize,
        seq: Option<SeqLayout>,
        cfg: &NamConfig,
        mut on_epoch: impl FnMut(usize, f64),
    ) -> Result<Nam> {
        let dev = Device::Cpu;
        let h = cfg.hidden.max(1);
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let w1 = randn(&mut rng, inputs * h, 1.0);
        let b1 = randn(&mut rng, inputs * h, 1.0);
        let w2 = randn(&mut rng, inputs * h, 0.01);
        let base = {
            let pos = y.iter().filter(|&&v| v).count() as f64;
            let p = ((pos + 1.0) / (y.len() as f64 + 2.0)).clamp(1e-4, 1.0 - 1e-4);
            (p / (1.0 - p)).ln() as f32
        };
        let p = Params {
            w1: Var::from_tensor(&Tensor::from_vec(w1, (inputs, h), &dev)?)?,
            b1: Var::from_tensor(&Tensor::from_vec(b1, (inputs, h), &dev)?)?,
            w2: Var::from_tensor(&Tensor::from_vec(w2, (inputs, h), &dev)?)?,
            lin: Var::from_tensor(&Tensor::zeros(inputs, DType::F32, &dev)?)?,
            bias: Var::from_tensor(&Tensor::new(&[base], &dev)?)?,
        };
        let seq = match seq.filter(|l| l.fields > 0 && !l.cols.is_empty()) {
            Some(l) => {
                if l.cols.len() % l.fields != 0 || l.cols.iter().any(|&c| c >= inputs) {
                    return Err(crate::error::Error::Internal(format!(
                        "sequence layout {:?} does not fit {inputs} columns",
                        l
                    )));
                }
                Some(SeqParams::new(l, cfg.seq_hidden, inputs, &mut rng, &dev)?)
            }
            None => None,
        };
        let mut vars = vec![
            p.w1.clone(),
            p.b1.clone(),
            p.w2.clone(),
            p.lin.clone(),
            p.bias.clone(),
        ];
        if let Some(s) = &seq {
            vars.extend(s.vars());
        }
        let mut opt = AdamW::new(
            vars,
            ParamsAdamW {
                lr: cfg.lr,
                weight_decay: cfg.weight_decay,
                ..Default::default()
            },
        )?;
        let n = x.len();
        let mut order: Vec<usize> = (0..n).collect();
        for epoch in 0..cfg.epochs {
            order.shuffle(&mut rng);
            let mut total = 0.0;
            let mut batches = 0usize;
            for chunk in order.chunks(cfg.batch.max(1)) {
                let flat: Vec<f32> = chunk.iter().flat_map(|&i| x[i].iter().copied()).collect();
                let xb = Tensor::from_vec(flat, (chunk.len(), inputs), &dev)?;
                let yb: Vec<f32> = chunk.iter().map(|&i| f32::from(u8::from(y[i]))).collect();
                let yb = Tensor::from_vec(yb, chunk.len(), &dev)?;
                let z = logits_t(&p, seq.as_ref(), &xb)?;
                let loss = bce_with_logits(&z, &yb)?;
                opt.backward_step(&loss)?;
                total += f64::from(loss.to_scalar::<f32>()?);
                batches += 1;
            }
            on_epoch(epoch, total / batches.max(1) as f64);
        }
        let v =
            |t: &Var| -> Result<Vec<f32>> { Ok(t.as_tensor().flatten_all()?.to_vec1::<f32>()?) };
        let mut nam = Nam {
            inputs,
            hidden: h,
            w1: v(&p.w1)?,
            b1: v(&p.b1)?,
            w2: v(&p.w2)?,
            lin: v(&p.lin)?,
            bias: v(&p.bias)?.first().copied().unwrap_or(0.0),
            mean_contrib: vec![0.0; inputs],
            seq: seq.as_ref().map(SeqParams::export).transpose()?,
        };
        let mut sums = vec![0.0; inputs];
        for row in x {
            for (s, c) in sums.iter_mut().zip(nam.raw_contributions(row)) {
                *s += c;
            }
        }
        nam.mean_contrib = sums.iter().map(|s| s / n.max(1) as f64).collect();
        Ok(nam)
    }

    /// Each column's shape function value `f_j(x_j)`; with a sequence net, its columns carry 0
    /// but the first, which carries the whole sequence term `g(seq)`.
    pub fn raw_contributions(&self, x: &[f32]) -> Vec<f64> {
        let h = self.hidden;
        let mut out: Vec<f64> = (0..self.inputs)
            .map(|j| {
                let xj = x.get(j).copied().unwrap_or(0.0);
                let mut s = self.lin[j] * xj;
                for k in 0..h {
                    let i = j * h + k;
                    s += self.w2[i] * (self.w1[i] * xj + self.b1[i]).max(0.0);
                }
                f64::from(s)
            })
            .collect();
        if let Some(seq) = &self.seq {
            for &c in &seq.layout.cols {
                out[c] = 0.0;
            }
            if let Some(&first) = seq.layout.cols.first() {
                out[first] = f64::from(seq.term(x));
            }
        }
        out
    }

    /// The log-odds of churn.
    pub fn logit(&self, x: &[f32]) -> f64 {
        f64::from(self.bias) + self.raw_contributions(x).iter().sum::<f64>()
    }

    /// Base value and per-column contributions centred on the training mean:
    /// `base + sum(contributions) == logit(x)` exactly (up to floating point).
    pub fn explain(&self, x: &[f32]) -> (f64, Vec<f64>) {
        let base = f64::from(self.bias) + self.mean_contrib.iter().sum::<f64>();
        let c = self
            .raw_contributions(x)
            .iter()
            .zip(&self.mean_contrib)
            .map(|(c, m)| c - m)
            .collect();
        (base, c)
    }

    /// The weights as named tensors (for safetensors).
    pub fn tensors(&self, prefix: &str) -> Result<HashMap<String, Tensor>> {
        let dev = Device::Cpu;
        let (f, h) = (self.inputs, self.hidden);
        let mut m = HashMap::new();
        m.insert(
            format!("{prefix}.w1"),
            Tensor::from_vec(self.w1.clone(), (f, h), &dev)?,
        );
        m.insert(
            format!("{prefix}.b1"),
            Tensor::from_vec(self.b1.clone(), (f, h), &dev)?,
        );
        m.insert(
            format!("{prefix}.w2"),
            Tensor::from_vec(self.w2.clone(), (f, h), &dev)?,
        );
        m.insert(
            format!("{prefix}.lin"),
            Tensor::from_vec(self.lin.clone(), f, &dev)?,
        );
        m.insert(
            format!("{prefix}.bias"),
            Tensor::from_vec(vec![self.bias], 1, &dev)?,
        );
        m.insert(
            format!("{prefix}.mean_contrib"),
            Tensor::from_vec(self.mean_contrib.clone(), f, &dev)?,
        );
        if let Some(s) = &self.seq {
            let (h, sf) = (s.hidden, s.layout.fields);
            let cols: Vec<u32> = s.layout.cols.iter().map(|&c| c as u32).collect();
            let n = cols.len();
            let steps = s.layout.steps();
            m.insert(
                format!("{prefix}.seq.cols"),
                Tensor::from_vec(cols, (steps, n / steps.max(1)), &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.w_ih"),
                Tensor::from_vec(s.w_ih.clone(), (3 * h, sf), &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.w_hh"),
                Tensor::from_vec(s.w_hh.clone(), (3 * h, h), &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.b_ih"),
                Tensor::from_vec(s.b_ih.clone(), 3 * h, &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.b_hh"),
                Tensor::from_vec(s.b_hh.clone(), 3 * h, &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.w_out"),
                Tensor::from_vec(s.w_out.clone(), h, &dev)?,
            );
            m.insert(
                format!("{prefix}.seq.b_out"),
                Tensor::from_vec(vec![s.b_out], 1, &dev)?,
            );
        }
        Ok(m)
    }

    /// Loads the weights saved by [`Nam::tensors`].
    pub fn from_tensors(t: &HashMap<String, Tensor>, prefix: &str) -> Result<Nam> {
        let get = |n: &str| -> Result<Tensor> {
            t.get(&format!("{prefix}.{n}")).cloned().ok_or_else(|| {
                crate::error::Error::Internal(format!("model tensor {prefix}.{n} missing"))
            })
        };
        let w1 = get("w1")?;
        let (f, h) = w1.dims2()?;
        let v = |x: Tensor| -> Result<Vec<f32>> { Ok(x.flatten_all()?.to_vec1::<f32>()?) };
        let seq = match t.get(&format!("{prefix}.seq.cols")) {
            Some(cols) => {
                let (_, fields) = cols.dims2()?;
                let w_hh = get("seq.w_hh")?;
                let (_, hidden) = w_hh.dims2()?;
                Some(SeqNet {
                    layout: SeqLayout {
                        cols: cols
                            .flatten_all()?
                            .to_vec1::<u32>()?
                            .into_iter()
                            .map(|c| c as usize)
                            .collect(),
                        fields,
                    },
                    hidden,
                    w_ih: v(get("seq.w_ih")?)?,
                    w_hh: v(w_hh)?,
                    b_ih: v(get("seq.b_ih")?)?,
                    b_hh: v(get("seq.b_hh")?)?,
                    w_out: v(get("seq.w_out")?)?,
                    b_out: v(get("seq.b_out")?)?.first().copied().unwrap_or(0.0),
                })
            }
            None => None,
        };
        Ok(Nam {
            inputs: f,
            hidden: h,
            w1: v(w1)?,
            b1: v(get("b1")?)?,
            w2: v(get("w2")?)?,
            lin: v(get("lin")?)?,
            bias: v(get("bias")?)?.first().copied().unwrap_or(0.0),
            mean_contrib: get("mean_contrib")?.to_vec1::<f64>()?,
            seq,
        })
    }

    /// The candle forward pass (used to check the fast inference path).
    pub fn logit_candle(&self, x: &[f32]) -> Result<f64> {
        let dev = Device::Cpu;
        let (f, h) = (self.inputs, self.hidden);
        let p = Params {
            w1: Var::from_tensor(&Tensor::from_vec(self.w1.clone(), (f, h), &dev)?)?,
            b1: Var::from_tensor(&Tensor::from_vec(self.b1.clone(), (f, h), &dev)?)?,
            w2: Var::from_tensor(&Tensor::from_vec(self.w2.clone(), (f, h), &dev)?)?,
            lin: Var::from_tensor(&Tensor::from_vec(self.lin.clone(), f, &dev)?)?,
            bias: Var::from_tensor(&Tensor::new(&[self.bias], &dev)?)?,
        };
        let seq = self
            .seq
            .as_ref()
            .map(|s| SeqParams::import(s, f, &dev))
            .transpose()?;
        let xb = Tensor::from_vec(x.to_vec(), (1, f), &dev)?;
        let z = logits_t(&p, seq.as_ref(), &xb)?;
        Ok(f64::from(
            z.to_vec1::<f32>()?.first().copied().unwrap_or(0.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_signal_and_explanations_add_up() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 2_000;
        let x: Vec<Vec<f32>> = (0..n)
            .map(|_| {
                vec![
                    rng.random::<f32>() * 4.0 - 2.0,
                    rng.random::<f32>() * 4.0 - 2.0,
                ]
            })
            .collect();
        // Churn when the first input is high; the second is noise.
        let y: Vec<bool> = x.iter().map(|r| r[0] + 0.3 * (r[0] * r[0]) > 0.5).collect();
        let cfg = NamConfig {
            epochs: 30,
            ..Default::default()
        };
        let nam = Nam::train(&x, &y, 2, None, &cfg, |_, _| {}).unwrap();
        let acc = x
            .iter()
            .zip(&y)
            .filter(|(r, l)| (nam.logit(r) > 0.0) == **l)
            .count() as f64
            / n as f64;
        assert!(acc > 0.9, "accuracy {acc}");
        for r in x.iter().take(50) {
            let (base, c) = nam.explain(r);
            let sum = base + c.iter().sum::<f64>();
            assert!((sum - nam.logit(r)).abs() < 1e-5);
            assert!((nam.logit_candle(r).unwrap() - nam.logit(r)).abs() < 1e-4);
        }
        // The informative column moves the output more than the noise column.
        let spread = |j: usize| {
            let v: Vec<f64> = x.iter().map(|r| nam.explain(r).1[j]).collect();
            v.iter().cloned().fold(f64::MIN, f64::max) - v.iter().cloned().fold(f64::MAX, f64::min)
        };
        assert!(spread(0) > 3.0 * spread(1));
        // Round trip through tensors.
        let back = Nam::from_tensors(&nam.tensors("nam").unwrap(), "nam").unwrap();
        assert_eq!(back, nam);
    }

    #[test]
    fn the_sequence_term_learns_an_interaction_the_additive_part_cannot() {
        // Columns: [noise, seq step 1 (a, b), seq step 2 (a, b)]. Churn when the two orders'
        // `a` have the same sign: not a sum of one-column functions.
        let mut rng = StdRng::seed_from_u64(7);
        let n = 4_000;
        let x: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..5).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect())
            .collect();
        let y: Vec<bool> = x.iter().map(|r| r[1] * r[3] > 0.0).collect();
        let layout = SeqLayout {
            cols: vec![1, 2, 3, 4],
            fields: 2,
        };
        let cfg = NamConfig {
            epochs: 60,
            lr: 0.02,
            seq_hidden: 8,
            ..Default::default()
        };
        let acc = |nam: &Nam| {
            x.iter()
                .zip(&y)
                .filter(|(r, l)| (nam.logit(r) > 0.0) == **l)
                .count() as f64
                / n as f64
        };
        let with = Nam::train(&x, &y, 5, Some(layout.clone()), &cfg, |_, _| {}).unwrap();
        let without = Nam::train(&x, &y, 5, None, &cfg, |_, _| {}).unwrap();
        assert!(acc(&with) > 0.85, "with the sequence: {}", acc(&with));
        assert!(acc(&without) < 0.65, "additive only: {}", acc(&without));
        for r in x.iter().take(50) {
            let (base, c) = with.explain(r);
            assert!((base + c.iter().sum::<f64>() - with.logit(r)).abs() < 1e-5);
            // The sequence is one factor: carried by its first column, the others are 0.
            assert_eq!(c[2], -with.mean_contrib[2]);
            assert!((with.logit_candle(r).unwrap() - with.logit(r)).abs() < 1e-4);
        }
        let back = Nam::from_tensors(&with.tensors("nam").unwrap(), "nam").unwrap();
        assert_eq!(back, with);
    }
}
