//! A global recurrent forecaster in candle: one GRU trained across windows of every series, each
//! window scaled by its own mean absolute value, with a linear head that outputs all horizon steps
//! at once, trained with the quantile (pinball) loss at 0.5. It is one member the combination may
//! choose on the validation windows.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use candle_nn::rnn::{GRU, GRUConfig, RNN, gru};
use candle_nn::{Linear, Module, VarBuilder, VarMap, linear};

/// Sizes and training settings.
#[derive(Debug, Clone, Copy)]
pub struct GruConfig {
    /// Periods of history the network reads.
    pub input: usize,
    pub hidden: usize,
    pub horizon: usize,
    pub epochs: usize,
    /// Most training windows taken from one series.
    pub windows_per_series: usize,
    pub seed: u64,
}

/// The weights as plain vectors, for fast single-series inference (candle's per-op overhead
/// dominates at batch 1).
#[derive(Debug, Clone)]
struct Fast {
    w_ih: Vec<f32>,
    w_hh: Vec<f32>,
    b_ih: Vec<f32>,
    b_hh: Vec<f32>,
    w_out: Vec<f32>,
    b_out: Vec<f32>,
}

impl Fast {
    fn from(map: &HashMap<String, Tensor>) -> Option<Fast> {
        let get = |k: &str| -> Option<Vec<f32>> {
            map.get(k)?
                .to_dtype(DType::F32)
                .ok()?
                .flatten_all()
                .ok()?
                .to_vec1()
                .ok()
        };
        Some(Fast {
            w_ih: get("gru.weight_ih_l0")?,
            w_hh: get("gru.weight_hh_l0")?,
            b_ih: get("gru.bias_ih_l0")?,
            b_hh: get("gru.bias_hh_l0")?,
            w_out: get("head.weight")?,
            b_out: get("head.bias")?,
        })
    }

    /// The same computation as candle's GRU step and the linear head (input size 1).
    fn run(&self, x: &[f32], hidden: usize, horizon: usize) -> Vec<f32> {
        let mut h = vec![0f32; hidden];
        let mut gh = vec![0f32; 3 * hidden];
        for &xt in x {
            for (j, g) in gh.iter_mut().enumerate() {
                let row = &self.w_hh[j * hidden..(j + 1) * hidden];
                *g = row.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>() + self.b_hh[j];
            }
            for k in 0..hidden {
                let gi = |j: usize| self.w_ih[j] * xt + self.b_ih[j];
                let r = 1.0 / (1.0 + (-(gi(k) + gh[k])).exp());
                let z = 1.0 / (1.0 + (-(gi(hidden + k) + gh[hidden + k])).exp());
                let n = (gi(2 * hidden + k) + r * gh[2 * hidden + k]).tanh();
                h[k] = z * h[k] + (1.0 - z) * n;
            }
        }
        (0..horizon)
            .map(|o| {
                let row = &self.w_out[o * hidden..(o + 1) * hidden];
                row.iter().zip(&h).map(|(a, b)| a * b).sum::<f32>() + self.b_out[o]
            })
            .collect()
    }
}

/// The trained network.
pub struct GlobalGru {
    gru: GRU,
    head: Linear,
    fast: Option<Fast>,
    pub input: usize,
    pub hidden: usize,
    pub horizon: usize,
}

impl std::fmt::Debug for GlobalGru {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GlobalGru(input {}, hidden {}, horizon {})",
            self.input, self.hidden, self.horizon
        )
    }
}

fn build(
    vb: VarBuilder,
    input: usize,
    hidden: usize,
    horizon: usize,
) -> candle_core::Result<GlobalGru> {
    Ok(GlobalGru {
        gru: gru(1, hidden, GRUConfig::default(), vb.pp("gru"))?,
        head: linear(hidden, horizon, vb.pp("head"))?,
        fast: None,
        input,
        hidden,
        horizon,
    })
}

fn raw_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    varmap
        .data()
        .lock()
        .map(|d| {
            d.iter()
                .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// The last `len` values, padded at the front with the first one, scaled by their mean absolute
/// value; returns the scaled window and the scale.
fn window(y: &[f64], len: usize) -> (Vec<f32>, f64) {
    let tail = &y[y.len().saturating_sub(len)..];
    let first = tail.first().copied().unwrap_or(0.0);
    let mut w: Vec<f64> = std::iter::repeat_n(first, len - tail.len())
        .chain(tail.iter().copied())
        .collect();
    let scale = w.iter().map(|v| v.abs()).sum::<f64>() / len.max(1) as f64;
    let scale = if scale > 0.0 && scale.is_finite() {
        scale
    } else {
        1.0
    };
    for v in &mut w {
        *v /= scale;
    }
    (w.iter().map(|v| *v as f32).collect(), scale)
}

impl GlobalGru {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let states = self.gru.seq(x)?;
        let last = states
            .last()
            .ok_or_else(|| candle_core::Error::Msg("empty sequence".into()))?;
        self.head.forward(last.h())
    }

    /// Trains on windows of `series` (each already cut before any validation data).
    pub fn train(series: &[Vec<f64>], cfg: &GruConfig) -> candle_core::Result<(GlobalGru, VarMap)> {
        let dev = Device::Cpu;
        let (l, h) = (cfg.input, cfg.horizon);
        let mut xs: Vec<f32> = Vec::new();
        let mut ys: Vec<f32> = Vec::new();
        let mut rng = cfg
            .seed
            .wrapping_mul(2_862_933_555_777_941_757)
            .wrapping_add(3_037_000_493);
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for y in series {
            if y.len() < h + 4 {
                continue;
            }
            let ends: Vec<usize> = ((y.len() / 2).max(3)..=y.len() - h).collect();
            for _ in 0..cfg.windows_per_series.min(ends.len()) {
                let end = ends[(next() % ends.len() as u64) as usize];
                let (w, scale) = window(&y[..end], l);
                xs.extend(w);
                ys.extend(y[end..end + h].iter().map(|v| (v / scale) as f32));
            }
        }
        let n = xs.len() / l;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
        let mut model = build(vb, l, cfg.hidden, h)?;
        // Seeded initialisation (candle's CPU generator cannot be seeded): every parameter
        // uniform in +-1/sqrt(hidden), as PyTorch initialises a GRU.
        let bound = 1.0 / (cfg.hidden as f64).sqrt();
        if let Ok(data) = varmap.data().lock() {
            let mut names: Vec<&String> = data.keys().collect();
            names.sort();
            for name in names {
                let var = &data[name];
                let shape = var.as_tensor().shape().clone();
                let vals: Vec<f32> = (0..shape.elem_count())
                    .map(|_| ((next() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * bound)
                    .map(|v| v as f32)
                    .collect();
                var.set(&Tensor::from_vec(vals, shape, &dev)?)?;
            }
        }
        if n == 0 {
            model.fast = Fast::from(&raw_tensors(&varmap));
            return Ok((model, varmap));
        }
        let x_all = Tensor::from_vec(xs, (n, l, 1), &dev)?;
        let y_all = Tensor::from_vec(ys, (n, h), &dev)?;
        let mut opt = AdamW::new(
            varmap.all_vars(),
            ParamsAdamW {
                lr: 1e-2,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let batch = 256;
        for _ in 0..cfg.epochs {
            let mut order: Vec<u32> = (0..n as u32).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, (next() % (i as u64 + 1)) as usize);
            }
            for chunk in order.chunks(batch) {
                let idx = Tensor::new(chunk, &dev)?;
                let x = x_all.index_select(&idx, 0)?;
                let y = y_all.index_select(&idx, 0)?;
                let f = model.forward(&x)?;
                // Pinball loss at 0.5 (half the mean absolute error).
                let loss = ((y - f)?.abs()? * 0.5)?.mean_all()?;
                opt.backward_step(&loss)?;
            }
        }
        model.fast = Fast::from(&raw_tensors(&varmap));
        Ok((model, varmap))
    }

    /// Weights by name, for saving.
    pub fn tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
        raw_tensors(varmap)
            .into_iter()
            .map(|(k, v)| (format!("gru_model.{k}"), v))
            .collect()
    }

    /// Rebuilds the network from saved weights.
    pub fn load(
        tensors: &HashMap<String, Tensor>,
        input: usize,
        hidden: usize,
        horizon: usize,
    ) -> candle_core::Result<GlobalGru> {
        let own: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("gru_model.")
                    .map(|s| (s.to_string(), v.clone()))
            })
            .collect();
        let fast = Fast::from(&own);
        let vb = VarBuilder::from_tensors(own, DType::F32, &Device::Cpu);
        let mut m = build(vb, input, hidden, horizon)?;
        m.fast = fast;
        Ok(m)
    }

    /// Forecast of `h` (<= horizon) steps from the history `y`; finite values only.
    pub fn forecast(&self, y: &[f64], h: usize) -> Option<Vec<f64>> {
        let (w, scale) = window(y, self.input);
        let out: Vec<f32> = match &self.fast {
            Some(f) => f.run(&w, self.hidden, self.horizon),
            None => {
                let x = Tensor::from_vec(w, (1, self.input, 1), &Device::Cpu).ok()?;
                self.forward(&x).ok()?.flatten_all().ok()?.to_vec1().ok()?
            }
        };
        let f: Vec<f64> = out.iter().take(h).map(|v| *v as f64 * scale).collect();
        (f.len() == h && f.iter().all(|v| v.is_finite())).then_some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_season_and_round_trips() {
        let series: Vec<Vec<f64>> = (0..30)
            .map(|k| {
                (0..80)
                    .map(|t| (10.0 + k as f64) * (1.0 + 0.5 * ((t % 6) as f64 / 5.0)))
                    .collect()
            })
            .collect();
        let cfg = GruConfig {
            input: 12,
            hidden: 16,
            horizon: 6,
            epochs: 300,
            windows_per_series: 8,
            seed: 1,
        };
        let (m, vm) = GlobalGru::train(&series, &cfg).unwrap();
        let f = m.forecast(&series[3][..78], 2).unwrap();
        let truth = &series[3][78..80];
        for (a, b) in f.iter().zip(truth) {
            // Roughly the level of the series (the phase is not always learnt in so few steps).
            assert!((a - b).abs() / b < 0.45, "{f:?} {truth:?}");
        }
        let mut re = GlobalGru::load(&GlobalGru::tensors(&vm), 12, 16, 6).unwrap();
        assert_eq!(re.forecast(&series[3][..78], 2).unwrap(), f);
        // The plain-Rust inference equals candle's.
        re.fast = None;
        let slow = re.forecast(&series[3][..78], 2).unwrap();
        for (a, b) in slow.iter().zip(&f) {
            assert!((a - b).abs() < 1e-3 * b.abs().max(1.0), "{slow:?} {f:?}");
        }
    }
}
