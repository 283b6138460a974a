//! MiniLM matches the reference sentence-transformers output on every engine: candle-transformers'
//! BERT, our encoder in f32 and, where the CPU has them, in bf16 products (AMX, AVX512-BF16)
//! and in the int8 mix (AVX512-VNNI).
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

use augur_kernels::Precision;
use augur_risk::embed::{self, Embedder, Engine};

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

/// The embedder on `engine`, or `None` (said loudly) where this CPU cannot run it.
fn load(dir: &std::path::Path, engine: Engine) -> Option<Embedder> {
    let e = Embedder::load_with(dir, engine).unwrap();
    if e.engine() != engine {
        eprintln!(
            "\n*** SKIPPED {}: this CPU lacks that precision ***\n",
            engine.name()
        );
        return None;
    }
    Some(e)
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
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    for engine in [
        Engine::Candle,
        Engine::Kernels(Precision::F32),
        Engine::Kernels(Precision::Bf16Amx),
        Engine::Kernels(Precision::Bf16Avx512),
        Engine::Kernels(Precision::Int8Avx512),
        Engine::Kernels(Precision::Int8Avx2),
    ] {
        let Some(e) = load(&dir, engine) else {
            continue;
        };
        let got = e.embed(&refs).unwrap();
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.len(), embed::DIM);
            let norm: f32 = g.iter().map(|x| x * x).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
            let wn: f32 = w.iter().map(|x| x * x).sum::<f32>().sqrt();
            let cos = embed::dot(g, w) / wn;
            assert!(
                cos >= 0.999,
                "{}: text {i}: cosine {cos} to the reference",
                engine.name()
            );
            eprintln!("{}: text {i}: cosine {cos:.6}", engine.name());
        }
        // Batched and one-by-one give the same vectors (other texts do not leak in).
        let single = e.embed(&refs[..1]).unwrap();
        assert!(embed::dot(&single[0], &got[0]) > 0.99999);
    }
    let e = Embedder::load(&dir).unwrap();
    assert_eq!(e.token_counts(&refs[4..5]).unwrap()[0], embed::MAX_TOKENS);
}

/// Long texts are tokenised from a prefix (`Embedder::token_ids`): the ids must be exactly those
/// of the whole text, truncated, whatever the text looks like around the cut.
#[test]
fn prefix_tokenisation_gives_the_whole_texts_ids() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let Some(dir) = model_dir() else { return };
    let e = Embedder::load(&dir).unwrap();
    let mut whole = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    whole
        .with_truncation(Some(tokenizers::TruncationParams {
            max_length: embed::MAX_TOKENS,
            ..Default::default()
        }))
        .unwrap();
    whole.with_padding(None);

    let words = [
        "order",
        "refund",
        "Ünïcödé",
        "naïve",
        "東京",
        "déjà-vu",
        "e-mail:",
        "https://x.example/a?b=c",
        "ROFL!!!",
        "42.5%",
        "can't",
        "\u{1F600}",
        "antidisestablishmentarianism",
        "\t",
        "\n\n",
    ];
    let mut rng = StdRng::seed_from_u64(7);
    let mut texts: Vec<String> = Vec::new();
    for n in [10, 300, 420, 600, 900, 3_000] {
        for _ in 0..4 {
            let mut t = String::new();
            for _ in 0..n {
                t.push_str(words[rng.random_range(0..words.len())]);
                t.push(if rng.random_bool(0.9) { ' ' } else { '.' });
            }
            texts.push(t);
        }
    }
    let b = embed::PREFIX_BYTES;
    // No whitespace at all; whitespace only past the first cut; a short word run then a long
    // blank stretch (the first prefix falls short of 256 tokens and must be lengthened); a cut
    // exactly at the budget; CJK without spaces.
    texts.push("x".repeat(3 * b));
    texts.push(format!("{} {}", "y".repeat(b + 10), "word ".repeat(400)));
    texts.push(format!(
        "few words {} {}",
        " ".repeat(3 * b),
        "later ".repeat(400)
    ));
    texts.push(format!("{} {}", "z".repeat(b - 1), "tail ".repeat(400)));
    texts.push("東京タワー".repeat(b));
    // Real long documents, when the dataset is here.
    let spam = augur_testkit::datasets::dir().join("spam/spamassassin_dev.jsonl");
    if let Ok(raw) = std::fs::read_to_string(&spam) {
        texts.extend(
            raw.lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .filter_map(|v| v["text"].as_str().map(str::to_string))
                .take(300),
        );
    } else {
        eprintln!(
            "spam corpus not found at {}: synthetic texts only",
            spam.display()
        );
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let got = e.token_ids(&refs).unwrap();
    let mut long = 0;
    for (i, t) in refs.iter().enumerate() {
        let want = whole.encode(*t, true).unwrap().get_ids().to_vec();
        assert_eq!(got[i], want, "text {i} ({} bytes)", t.len());
        long += usize::from(t.len() > b && want.len() == embed::MAX_TOKENS);
    }
    assert!(long >= 16, "only {long} texts went through the prefix path");
}

/// Our encoder against candle-transformers' BERT on 40 texts of 1 to ~400 words (some beyond
/// the 256-token cap), embedded in one call (groups of several texts): f32 agrees to 1e-5 in
/// cosine, bf16 products and the int8 mix to 1e-3 (measured on an AMD Zen 5: bf16 0.99996,
/// int8 0.99944 at worst with the feed-forward-out product in bf16; int8 without its f32
/// outlier inputs got 0.99848 on the one-word text "great", whose three tokens average no
/// rounding error away; on an AMD Zen 4, 2026-12-01, with all four products in int8 and GPTQ
/// rounding: 0.99928, int8-avx2 0.99940).
#[test]
fn our_encoder_matches_candle_transformers_on_varied_texts() {
    let Some(dir) = model_dir() else { return };
    let words = [
        "great",
        "product",
        "arrived",
        "broken",
        "refund",
        "click",
        "here",
        "free",
        "money",
        "the",
        "battery",
        "lasts",
        "two",
        "days",
        "and",
        "screen",
        "is",
        "bright",
        "!!!",
        "www.example.com",
        "5",
        "stars",
        "never",
        "again",
        "shipping",
        "was",
        "slow",
    ];
    let (texts, reference) = texts_with_reference(
        &dir,
        &words,
        40,
        |i| 1 + (i * i * 7 + i * 13) % 400,
        |i, j| i * 31 + j * j * 17 + j,
    );
    for (engine, min_cos) in [
        (Engine::Kernels(Precision::F32), 0.99999f32),
        (Engine::Kernels(Precision::Bf16Amx), 0.999),
        (Engine::Kernels(Precision::Bf16Avx512), 0.999),
        (Engine::Kernels(Precision::Int8Avx512), 0.999),
        (Engine::Kernels(Precision::Int8Avx2), 0.999),
    ] {
        let Some(e) = load(&dir, engine) else {
            continue;
        };
        let worst = cosines(&e, &texts, &reference)
            .into_iter()
            .fold(1.0f32, f32::min);
        eprintln!(
            "{}: worst cosine to candle-transformers {worst:.7}",
            engine.name()
        );
        assert!(worst >= min_cos, "{}: cosine {worst}", engine.name());
    }
}

/// The int8 mix on 120 more texts of 1 to ~300 words from another vocabulary (shop reviews,
/// spam phrases, symbols): the texts its feed-forward-out settings (`bert::DOWN_SMOOTHING`,
/// `DOWN_OUTLIERS`) were chosen on, kept apart from the parity test above. Measured on an AMD
/// Zen 4 (2026-12-01): worst cosine 0.99925, mean 1 - cosine 0.00038 (int8-avx512).
#[test]
fn the_int8_mix_holds_on_more_texts() {
    let Some(dir) = model_dir() else { return };
    let words = [
        "the",
        "delivery",
        "came",
        "late",
        "but",
        "quality",
        "excellent",
        "would",
        "buy",
        "again",
        "terrible",
        "customer",
        "service",
        "win",
        "a",
        "prize",
        "now",
        "cheap",
        "watches",
        "unsubscribe",
        "my",
        "kids",
        "love",
        "it",
        "size",
        "runs",
        "small",
        "ok",
        "not",
        "worth",
        "price",
        "fits",
        "perfectly",
        "colour",
        "faded",
        "after",
        "wash",
        "€20",
        "discount",
        "code",
        "SAVE50",
        "http://bit.ly/xyz",
        "★★★★★",
        "meh",
        "returned",
    ];
    let (texts, reference) = texts_with_reference(
        &dir,
        &words,
        120,
        |i| 1 + (i * i * 11 + i * 5) % 300,
        |i, j| i * 17 + j * j * 13 + 3 * j + i * j,
    );
    for engine in [
        Engine::Kernels(Precision::Int8Avx512),
        Engine::Kernels(Precision::Int8Avx2),
    ] {
        let Some(e) = load(&dir, engine) else {
            continue;
        };
        let cos = cosines(&e, &texts, &reference);
        let worst = cos.iter().copied().fold(1.0f32, f32::min);
        let mean = cos.iter().map(|c| 1.0 - c).sum::<f32>() / cos.len() as f32;
        eprintln!(
            "{}: 120 texts, worst cosine {worst:.7}, mean 1 - cosine {mean:.7}",
            engine.name()
        );
        assert!(worst >= 0.999, "{}: cosine {worst}", engine.name());
    }
}

/// `count` texts: text `i` has `len(i)` words, its word `j` is `words[pick(i, j) % words.len()]`;
/// with candle-transformers' embeddings of them (the reference).
fn texts_with_reference(
    dir: &std::path::Path,
    words: &[&str],
    count: usize,
    len: impl Fn(usize) -> usize,
    pick: impl Fn(usize, usize) -> usize,
) -> (Vec<String>, Vec<Vec<f32>>) {
    let texts: Vec<String> = (0..count)
        .map(|i| {
            (0..len(i))
                .map(|j| words[pick(i, j) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let reference = Embedder::load_with(dir, Engine::Candle)
        .unwrap()
        .embed(&refs)
        .unwrap();
    (texts, reference)
}

/// Each text's cosine between its embedding by `e` and the reference's.
fn cosines(e: &Embedder, texts: &[String], reference: &[Vec<f32>]) -> Vec<f32> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    e.embed(&refs)
        .unwrap()
        .iter()
        .zip(reference)
        .map(|(g, r)| embed::dot(g, r))
        .collect()
}
