//! A neural additive model (Agarwal et al. 2021) in candle: the churn log-odds are a bias plus one
//! learned shape function per input column, `f_j(x_j) = l_j x_j + sum_h v_jh relu(w_jh x_j + b_jh)`.
//! Because the network is additive, each column's contribution to the output is exact: the
//! explanation of a prediction is the model itself, not an approximation of it.

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
        }
    }
}

/// The trained model, as plain arrays for fast inference.
#[derive(Debug, Clone, PartialEq)]
pub struct Nam {
    pub inputs: usize,
    pub hidden: usize,
    /// [inputs * hidden], row-major.
    pub w1: Vec<f32>,
    pub b1: Vec<f32>,
    pub w2: Vec<f32>,
    /// [inputs]
    pub lin: Vec<f32>,
    pub bias: f32,
    /// Mean contribution of each column over the training examples (the explanation baseline).
    pub mean_contrib: Vec<f64>,
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
    /// Trains on standardised rows `x` (each of length `inputs`) with labels `y` (churned = 1).
    pub fn train(
        x: &[Vec<f32>],
        y: &[bool],
        inputs: usize,
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
        let mut opt = AdamW::new(
            vec![
                p.w1.clone(),
                p.b1.clone(),
                p.w2.clone(),
                p.lin.clone(),
                p.bias.clone(),
            ],
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
                let z = contributions_t(&p, &xb)?
                    .sum(1)?
                    .broadcast_add(p.bias.as_tensor())?;
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

    /// Each column's shape function value `f_j(x_j)`.
    pub fn raw_contributions(&self, x: &[f32]) -> Vec<f64> {
        let h = self.hidden;
        (0..self.inputs)
            .map(|j| {
                let xj = x.get(j).copied().unwrap_or(0.0);
                let mut s = self.lin[j] * xj;
                for k in 0..h {
                    let i = j * h + k;
                    s += self.w2[i] * (self.w1[i] * xj + self.b1[i]).max(0.0);
                }
                f64::from(s)
            })
            .collect()
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
        Ok(Nam {
            inputs: f,
            hidden: h,
            w1: v(w1)?,
            b1: v(get("b1")?)?,
            w2: v(get("w2")?)?,
            lin: v(get("lin")?)?,
            bias: v(get("bias")?)?.first().copied().unwrap_or(0.0),
            mean_contrib: get("mean_contrib")?.to_vec1::<f64>()?,
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
        let xb = Tensor::from_vec(x.to_vec(), (1, f), &dev)?;
        let z = contributions_t(&p, &xb)?
            .sum(1)?
            .broadcast_add(p.bias.as_tensor())?;
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
        let nam = Nam::train(&x, &y, 2, &cfg, |_, _| {}).unwrap();
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
}
