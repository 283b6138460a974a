//! A BERT encoder for inference (all-MiniLM-L6-v2's architecture), written against
//! `augur-kernels` instead of a module-per-operation framework.
//!
//! The sequences of a batch are concatenated without padding (the projections work row by row,
//! and attention runs per sequence), the query/key/value projections are one matrix product,
//! biases, GELU and the residual layer norms are fused into single passes over the rows, and the
//! activation buffers are allocated once per batch. The matrix products run in bf16 on AMX
//! ([`Precision::Bf16Amx`]) or AVX512-BF16 ([`Precision::Bf16Avx512`]), in 8-bit integers
//! ([`Precision::Int8Avx512`] / [`Precision::Int8Avx2`], see [`Encoder::new`]) where the CPU
//! has them, in f32 elsewhere; the embeddings of every precision match
//! sentence-transformers (test `minilm_parity`).

use std::collections::HashMap;

use augur_kernels::{Epilogue, Linear, Precision, Scratch, padded_rows};
use candle_core::Tensor;

/// The BERT hyper-parameters the encoder needs (from the model's `config.json`).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    pub hidden_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

fn default_eps() -> f64 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    qkv: Linear,
    out: Linear,
    norm1: Norm,
    up: Linear,
    down: Linear,
    norm2: Norm,
}

/// Activation buffers of one forward pass, kept for the next (allocating ~30 MB per batch
/// afresh costs page faults: ~10% of the encoder's time in a profile).
#[derive(Default)]
struct Work {
    x: Vec<f32>,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    ffn: Vec<f32>,
    scratch: Scratch,
}

/// Calibration statistics of one product's inputs: each input's largest magnitude and, for
/// GPTQ rounding, their Gram matrix `X^T X`.
#[derive(Clone)]
struct Stats {
    absmax: Vec<f32>,
    gram: Vec<f32>,
}

impl Stats {
    fn new(k: usize) -> Stats {
        Stats {
            absmax: vec![0.0; k],
            gram: vec![0.0; k * k],
        }
    }

    fn add(&mut self, rows: &[f32]) {
        widen(&mut self.absmax, rows);
        let k = self.absmax.len();
        augur_kernels::gram_add(rows, rows.len() / k, k, &mut self.gram);
    }
}

/// Calibration statistics of a layer's four products' inputs (query/key/value, attention
/// output, feed-forward in and out), gathered on calibration text.
#[derive(Clone)]
struct LayerStats {
    qkv: Stats,
    out: Stats,
    up: Stats,
    down: Stats,
}

/// SmoothQuant exponent of the feed-forward-out product (the others: 1/2). Its input, the GELU
/// output, has the widest outliers; with 1/4 more of their range stays on the activations and
/// less reaches the weight. Chosen on held-out texts, not the parity test's (worst cosine to
/// candle-transformers over the 120 texts of the test `the_int8_mix_holds_on_more_texts`:
/// 0.99922 with 1/4, 0.99919-0.99926 with 1/2 and 8 or 32 outliers; mean 1 - cosine 0.00038
/// against 0.00041-0.00046).
const DOWN_SMOOTHING: f32 = 0.25;
/// Inputs of the feed-forward-out product multiplied in f32 (of 1,536; the others: 8 of 384).
const DOWN_OUTLIERS: usize = 32;

/// The four matrix products of a layer.
#[derive(Clone, Copy)]
enum Product {
    Qkv,
    Out,
    Up,
    Down,
}

/// A product's weight (`[n x k]`), bias, `n` and `k`.
type Weights = (Vec<f32>, Vec<f32>, usize, usize);

fn widen(range: &mut [f32], rows: &[f32]) {
    for row in rows.chunks_exact(range.len()) {
        for (m, v) in range.iter_mut().zip(row) {
            *m = m.max(v.abs());
        }
    }
}

/// The loaded encoder.
pub struct Encoder {
    cfg: BertConfig,
    /// Idle buffers; concurrent calls each take their own.
    pool: std::sync::Mutex<Vec<Work>>,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type0: Vec<f32>,
    norm: Norm,
    layers: Vec<Layer>,
    /// Attention's two products in bf16 (on the AVX512-BF16 engines).
    bf16_attention: bool,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Encoder({} layers x {}, {})",
            self.cfg.num_hidden_layers,
            self.cfg.hidden_size,
            self.precision().name()
        )
    }
}

impl Encoder {
    /// Builds the encoder from a BERT checkpoint's tensors (names as in Hugging Face's
    /// `BertModel`, with or without a `bert.` prefix).
    ///
    /// [`Precision::Int8Avx512`] and [`Precision::Int8Avx2`] are a mix: the four matrix
    /// products of every layer run in 8-bit integers, scaled per input (SmoothQuant) by the
    /// ranges a bf16 (AMD) or f32 pass over `calibration` (token-id sequences) shows, the
    /// widest inputs in f32 ([`augur_kernels::INT8_OUTLIERS`]; 32 (`DOWN_OUTLIERS`) for the
    /// feed-forward-out product, whose input, the GELU output, has the widest outliers), and
    /// the weights rounded by GPTQ's error feedback on the same pass's inputs
    /// ([`augur_kernels::gptq`]); attention's two products run in bf16 on AVX512-BF16, else
    /// f32. Without calibration sequences the int8 products are unscaled and rounded to
    /// nearest. Other precisions ignore `calibration`.
    pub fn new(
        cfg: BertConfig,
        tensors: &HashMap<String, Tensor>,
        precision: Precision,
        calibration: &[&[u32]],
    ) -> Result<Encoder, String> {
        if cfg.hidden_act != "gelu" {
            return Err(format!(
                "hidden_act {:?} (only \"gelu\" is supported)",
                cfg.hidden_act
            ));
        }
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        if h == 0 || cfg.num_attention_heads == 0 || h % cfg.num_attention_heads != 0 {
            return Err(format!(
                "hidden_size {h} does not split into {} heads",
                cfg.num_attention_heads
            ));
        }
        let get = |name: &str, len: usize| -> Result<Vec<f32>, String> {
            let t = tensors
                .get(name)
                .or_else(|| tensors.get(&format!("bert.{name}")))
                .ok_or_else(|| format!("tensor {name} missing"))?;
            let v: Vec<f32> = t
                .flatten_all()
                .and_then(|t| t.to_dtype(candle_core::DType::F32))
                .and_then(|t| t.to_vec1())
                .map_err(|e| format!("tensor {name}: {e}"))?;
            if v.len() != len {
                return Err(format!("tensor {name}: {} values, expected {len}", v.len()));
            }
            Ok(v)
        };
        let norm = |prefix: &str| -> Result<Norm, String> {
            Ok(Norm {
                gamma: get(&format!("{prefix}.LayerNorm.weight"), h)?,
                beta: get(&format!("{prefix}.LayerNorm.bias"), h)?,
            })
        };
        // The int8 mix starts as bf16 where the CPU prefers AVX512-BF16 (AMD), else f32, and
        // is calibrated below.
        let int8 = precision.int8_kernel().filter(|_| precision.available());
        let base = match precision {
            Precision::Int8Avx512 if augur_kernels::avx512bf16::preferred() => {
                Precision::Bf16Avx512
            }
            Precision::Int8Avx512 | Precision::Int8Avx2 => Precision::F32,
            p => p,
        };
        // Weight ([n x k]), bias, n and k of one product of layer `l`.
        let weights = |l: usize, product: Product| -> Result<Weights, String> {
            let p = format!("encoder.layer.{l}");
            let dense = |name: &str, n: usize, k: usize| -> Result<Weights, String> {
                Ok((
                    get(&format!("{p}.{name}.weight"), n * k)?,
                    get(&format!("{p}.{name}.bias"), n)?,
                    n,
                    k,
                ))
            };
            match product {
                Product::Qkv => {
                    let (mut w, mut b) = (Vec::with_capacity(3 * h * h), Vec::with_capacity(3 * h));
                    for part in ["query", "key", "value"] {
                        let (pw, pb, _, _) = dense(&format!("attention.self.{part}"), h, h)?;
                        w.extend(pw);
                        b.extend(pb);
                    }
                    Ok((w, b, 3 * h, h))
                }
                Product::Out => dense("attention.output.dense", h, h),
                Product::Up => dense("intermediate.dense", i, h),
                Product::Down => dense("output.dense", h, i),
            }
        };
        let linear = |l: usize, product: Product| -> Result<Linear, String> {
            let (w, b, n, k) = weights(l, product)?;
            Linear::new(w, b, n, k, base).ok_or_else(|| format!("linear {k} -> {n}"))
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            layers.push(Layer {
                qkv: linear(l, Product::Qkv)?,
                out: linear(l, Product::Out)?,
                norm1: norm(&format!("{p}.attention.output"))?,
                up: linear(l, Product::Up)?,
                down: linear(l, Product::Down)?,
                norm2: norm(&format!("{p}.output"))?,
            });
        }
        let token_types = get("embeddings.token_type_embeddings.weight", 2 * h)
            .or_else(|_| get("embeddings.token_type_embeddings.weight", h))?;
        let mut encoder = Encoder {
            word: get("embeddings.word_embeddings.weight", cfg.vocab_size * h)?,
            position: get(
                "embeddings.position_embeddings.weight",
                cfg.max_position_embeddings * h,
            )?,
            token_type0: token_types[..h].to_vec(),
            norm: norm("embeddings")?,
            layers,
            cfg,
            pool: std::sync::Mutex::new(Vec::new()),
            bf16_attention: false,
        };
        if let Some(kernel) = int8 {
            let stats = encoder.calibration_stats(calibration)?;
            let quantised = |l: usize, product: Product, st: &Stats| -> Result<Linear, String> {
                let (w, b, n, k) = weights(l, product)?;
                let c = (!calibration.is_empty()).then(|| {
                    let mut c = augur_kernels::Calibration::new(&st.absmax);
                    c.gram = Some(&st.gram);
                    if let Product::Down = product {
                        c.alpha = DOWN_SMOOTHING;
                        c.outliers = DOWN_OUTLIERS;
                    }
                    c
                });
                Linear::new_int8_calibrated(w, b, n, k, c.as_ref(), kernel)
                    .ok_or_else(|| format!("linear {k} -> {n}"))
            };
            // One layer at a time (GPTQ's loops are parallel inside), each layer's statistics
            // dropped once it is quantised: the 1,536-input factorisations take ~28 MB each,
            // and side by side they raised the load's peak memory by ~170 MB.
            for (l, (layer, r)) in encoder.layers.iter_mut().zip(stats).enumerate() {
                layer.qkv = quantised(l, Product::Qkv, &r.qkv)?;
                layer.out = quantised(l, Product::Out, &r.out)?;
                layer.up = quantised(l, Product::Up, &r.up)?;
                layer.down = quantised(l, Product::Down, &r.down)?;
            }
        }
        // Only where AVX512-BF16 is the preferred bf16 path (AMD); AMX CPUs keep f32 attention.
        encoder.bf16_attention = matches!(
            encoder.precision(),
            Precision::Bf16Avx512 | Precision::Int8Avx512
        ) && augur_kernels::avx512bf16::preferred();
        Ok(encoder)
    }

    /// Each layer's [`LayerStats`] over the calibration sequences (zeros without any).
    fn calibration_stats(&self, calibration: &[&[u32]]) -> Result<Vec<LayerStats>, String> {
        let (h, i) = (self.cfg.hidden_size, self.cfg.intermediate_size);
        let mut stats = vec![
            LayerStats {
                qkv: Stats::new(h),
                out: Stats::new(h),
                up: Stats::new(h),
                down: Stats::new(i),
            };
            self.layers.len()
        ];
        let mut w = Work::default();
        for s in calibration {
            let s = &s[..s.len().min(self.max_len())];
            if s.is_empty() {
                continue;
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(format!("calibration token id {bad} outside the vocabulary"));
            }
            self.forward(&[s], &[(0, s.len())], s.len(), &mut w, Some(&mut stats));
        }
        Ok(stats)
    }

    /// The precision the matrix products run in.
    pub fn precision(&self) -> Precision {
        self.layers
            .first()
            .map_or(Precision::F32, |l| l.qkv.precision())
    }

    /// Longest sequence the position embeddings allow.
    pub fn max_len(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    /// Mean-pooled, L2-normalised last hidden states of each sequence of token ids (all token
    /// type 0, every token attended). Empty sequences give zero vectors; ids past the
    /// vocabulary or sequences past [`Encoder::max_len`] are an error.
    pub fn embed(&self, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, String> {
        let h = self.cfg.hidden_size;
        let max = self.max_len();
        let mut spans = Vec::with_capacity(seqs.len());
        let mut rows = 0usize;
        for s in seqs {
            if s.len() > max {
                return Err(format!("sequence of {} tokens (at most {max})", s.len()));
            }
            if let Some(&bad) = s.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
                return Err(format!("token id {bad} outside the vocabulary"));
            }
            spans.push((rows, s.len()));
            rows += s.len();
        }
        if rows == 0 {
            return Ok(vec![vec![0.0; h]; seqs.len()]);
        }
        let mut w = self
            .pool
            .lock()
            .map(|mut p| p.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        self.forward(seqs, &spans, rows, &mut w, None);
        let out = spans
            .iter()
            .map(|&(start, len)| {
                let mut mean = vec![0.0f64; h];
                for r in start..start + len {
                    for (m, v) in mean.iter_mut().zip(&w.x[r * h..(r + 1) * h]) {
                        *m += *v as f64;
                    }
                }
                let norm = mean.iter().map(|m| m * m).sum::<f64>().sqrt().max(1e-12);
                // Mean then normalise: the 1/len factor cancels in the normalisation.
                mean.iter().map(|m| (m / norm) as f32).collect()
            })
            .collect();
        if let Ok(mut p) = self.pool.lock() {
            p.push(w);
        }
        Ok(out)
    }

    /// The last hidden states of the `rows` tokens of `seqs` (at `spans`) into `w.x`; with
    /// `stats`, each layer's product inputs are added to them.
    fn forward(
        &self,
        seqs: &[&[u32]],
        spans: &[(usize, usize)],
        rows: usize,
        w: &mut Work,
        mut stats: Option<&mut Vec<LayerStats>>,
    ) {
        let h = self.cfg.hidden_size;
        let pr = padded_rows(rows);
        let eps = self.cfg.layer_norm_eps as f32;
        // Every row a step reads was written earlier in this pass; padding rows are scratch.
        for (buf, width) in [
            (&mut w.x, h),
            (&mut w.qkv, 3 * h),
            (&mut w.ctx, h),
            (&mut w.tmp, h),
            (&mut w.ffn, self.cfg.intermediate_size),
        ] {
            buf.resize(pr * width, 0.0);
        }
        let Work {
            x,
            qkv,
            ctx,
            tmp,
            ffn,
            scratch,
        } = w;
        for (s, &(start, _)) in seqs.iter().zip(spans) {
            for (p, &t) in s.iter().enumerate() {
                let row = &mut x[(start + p) * h..(start + p + 1) * h];
                let wv = &self.word[t as usize * h..(t as usize + 1) * h];
                let pos = &self.position[p * h..(p + 1) * h];
                for (((v, a), b), c) in row.iter_mut().zip(wv).zip(pos).zip(&self.token_type0) {
                    *v = a + b + c;
                }
            }
        }
        augur_kernels::add_layer_norm(
            &mut x[..rows * h],
            &[],
            &[],
            &self.norm.gamma,
            &self.norm.beta,
            eps,
        );
        for (li, l) in self.layers.iter().enumerate() {
            let mut range = stats.as_deref_mut().and_then(|r| r.get_mut(li));
            if let Some(r) = &mut range {
                r.qkv.add(&x[..rows * h]);
            }
            l.qkv.forward(x, rows, qkv, Epilogue::Bias, scratch);
            augur_kernels::attention_in(
                qkv,
                h,
                self.cfg.num_attention_heads,
                spans,
                ctx,
                self.bf16_attention,
            );
            if let Some(r) = &mut range {
                r.out.add(&ctx[..rows * h]);
            }
            l.out.forward(ctx, rows, tmp, Epilogue::None, scratch);
            augur_kernels::add_layer_norm(
                &mut tmp[..rows * h],
                &x[..rows * h],
                l.out.bias(),
                &l.norm1.gamma,
                &l.norm1.beta,
                eps,
            );
            std::mem::swap(x, tmp);
            if let Some(r) = &mut range {
                r.up.add(&x[..rows * h]);
            }
            l.up.forward_gelu_then(x, rows, ffn, &l.down, tmp, scratch);
            if let Some(r) = &mut range {
                // Calibration runs the unfused pair (bf16 or f32 products): `ffn` holds the
                // GELU output.
                r.down.add(&ffn[..rows * self.cfg.intermediate_size]);
            }
            augur_kernels::add_layer_norm(
                &mut tmp[..rows * h],
                &x[..rows * h],
                l.down.bias(),
                &l.norm2.gamma,
                &l.norm2.beta,
                eps,
            );
            std::mem::swap(x, tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A random 2-layer BERT with hidden 32 (two heads), intermediate 64, vocabulary 50.
    fn tiny(precision: Precision) -> Encoder {
        let cfg = BertConfig {
            hidden_size: 32,
            num_attention_heads: 2,
            num_hidden_layers: 2,
            intermediate_size: 64,
            max_position_embeddings: 40,
            vocab_size: 50,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
        };
        let mut seed = 17u64;
        let mut t = HashMap::new();
        let mut put = |name: String, shape: &[usize], scale: f32| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale
                })
                .collect();
            t.insert(
                name,
                Tensor::from_vec(v, shape, &candle_core::Device::Cpu).unwrap(),
            );
        };
        put("embeddings.word_embeddings.weight".into(), &[50, 32], 2.0);
        put(
            "embeddings.position_embeddings.weight".into(),
            &[40, 32],
            0.5,
        );
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &[2, 32],
            0.5,
        );
        put("embeddings.LayerNorm.weight".into(), &[32], 2.0);
        put("embeddings.LayerNorm.bias".into(), &[32], 0.2);
        for l in 0..2 {
            let p = format!("encoder.layer.{l}");
            for part in ["query", "key", "value"] {
                put(format!("{p}.attention.self.{part}.weight"), &[32, 32], 0.6);
                put(format!("{p}.attention.self.{part}.bias"), &[32], 0.1);
            }
            put(format!("{p}.attention.output.dense.weight"), &[32, 32], 0.6);
            put(format!("{p}.attention.output.dense.bias"), &[32], 0.1);
            put(format!("{p}.attention.output.LayerNorm.weight"), &[32], 2.0);
            put(format!("{p}.attention.output.LayerNorm.bias"), &[32], 0.2);
            put(format!("{p}.intermediate.dense.weight"), &[64, 32], 0.6);
            put(format!("{p}.intermediate.dense.bias"), &[64], 0.1);
            put(format!("{p}.output.dense.weight"), &[32, 64], 0.4);
            put(format!("{p}.output.dense.bias"), &[32], 0.1);
            put(format!("{p}.output.LayerNorm.weight"), &[32], 2.0);
            put(format!("{p}.output.LayerNorm.bias"), &[32], 0.2);
        }
        Encoder::new(
            cfg,
            &t,
            precision,
            &[&[1, 2, 3, 4, 5, 6, 7, 8], &[9, 30, 49]],
        )
        .unwrap()
    }

    #[test]
    fn a_batch_embeds_each_text_as_if_alone() {
        for precision in [
            Precision::F32,
            Precision::Bf16Amx,
            Precision::Bf16Avx512,
            Precision::Int8Avx512,
            Precision::Int8Avx2,
        ] {
            let e = tiny(precision);
            let seqs: Vec<Vec<u32>> = (1..=9u32)
                .map(|n| (0..n * 4).map(|i| (i * 7 + n) % 50).collect())
                .collect();
            let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
            let together = e.embed(&refs).unwrap();
            for (s, v) in refs.iter().zip(&together) {
                let alone = e.embed(&[s]).unwrap();
                let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!((norm - 1.0).abs() < 1e-5);
                for (a, b) in alone[0].iter().zip(v) {
                    assert!((a - b).abs() < 1e-5, "{precision:?}: {a} vs {b}");
                }
            }
            // Different texts give different vectors (the layers are not degenerate).
            let d: f32 = together[0]
                .iter()
                .zip(&together[8])
                .map(|(a, b)| a * b)
                .sum();
            assert!(d < 0.999, "{precision:?}: cosine {d}");
        }
    }

    #[test]
    fn bad_sequences_are_errors_and_empty_ones_zero() {
        let e = tiny(Precision::F32);
        assert!(e.embed(&[&[3, 50]]).unwrap_err().contains("token id 50"));
        let long = vec![1u32; 41];
        assert!(e.embed(&[&long]).unwrap_err().contains("41 tokens"));
        let out = e.embed(&[&[], &[4, 5]]).unwrap();
        assert!(out[0].iter().all(|&x| x == 0.0));
        assert!(out[1].iter().any(|&x| x != 0.0));
        assert!(e.embed(&[]).unwrap().is_empty());
        let mut cfg_err = tiny(Precision::F32).cfg.clone();
        cfg_err.hidden_act = "relu".into();
        assert!(Encoder::new(cfg_err, &HashMap::new(), Precision::F32, &[]).is_err());
    }
}
