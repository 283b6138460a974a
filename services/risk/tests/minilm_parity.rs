//! MiniLM in candle matches the reference sentence-transformers output.
//!
//! Reference vectors (`minilm_reference.json`, full 384-d, 7 decimals) were produced once,
//! outside the repository, in a throwaway venv (`python3 -m venv /tmp/stv; /tmp/stv/bin/pip
//! install torch sentence-transformers` from PyPI) with the same model files that
//! `scripts/fetch-minilm.sh` installs:
//!
//! ```python
//! from sentence_transformers import SentenceTransformer
//! m = SentenceTransformer("models/minilm", device="cpu")   # max_seq_length 256
//! e = m.encode(texts, normalize_embeddings=True, batch_size=8)
//! ```
//! (sentence-transformers 6.2.0, torch 2.15.0, CPU; the JSON records it too.) The fifth text
//! is longer than 256 tokens, so truncation is checked as well.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use augur_risk::embed::{self, Embedder};

fn model_dir() -> Option<std::path::PathBuf> {
    let dir = embed::default_dir();
    if embed::present(&dir) {
        return Some(dir);
    }
    let msg = format!(
        "MiniLM not found in {} (run `make minilm` or set AUGUR_MINILM_DIR)",
        dir.display()
    );
    if augur_testkit::required("AUGUR_REQUIRE_MINILM") {
        panic!("{msg}; AUGUR_REQUIRE_MINILM=1");
    }
    eprintln!("\n*** SKIPPED: {msg} ***\n");
    None
}

#[test]
fn embeddings_match_sentence_transformers() {
    let Some(dir) = model_dir() else { return };
    let reference: serde_json::Value =
        serde_json::from_str(include_str!("minilm_reference.json")).unwrap();
    let texts: Vec<String> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let want: Vec<Vec<f32>> = reference["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    let e = Embedder::load(&dir).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = e.embed(&refs).unwrap();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g.len(), embed::DIM);
        let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
        let wn: f32 = w.iter().map(|x| x * x).sum::<f32>().sqrt();
        let cos = embed::dot(g, w) / wn;
        assert!(cos >= 0.999, "text {i}: cosine {cos} to the reference");
        eprintln!("text {i}: cosine {cos:.6}");
    }
    // Batched and one-by-one give the same vectors (padding does not leak into the mean).
    let single = e.embed(&refs[..1]).unwrap();
    assert!(embed::dot(&single[0], &got[0]) > 0.99999);
    assert_eq!(e.token_counts(&refs[4..5]).unwrap()[0], embed::MAX_TOKENS);
}
