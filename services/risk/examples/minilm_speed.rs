//! MiniLM encoder speed on this machine, for profiling and for the benchmark report's notes:
//! documents of exactly 256 tokens from the spam corpus at several batch sizes, and single texts of
//! about 100 words (the `ScoreReview` case) one at a time.
//!
//! `cargo run --release -p augur-risk --example minilm_speed` (needs `make minilm` and the spam
//! dataset under `AUGUR_DATASETS`, default `../shared/datasets`). Env: `MINILM_DOCS` (default 64),
//! `MINILM_BATCHES` (tokens per forward pass, default `256,512,1024,4096`), `MINILM_SINGLE` (single calls, default 50),
//! `AUGUR_MINILM_ENGINE` (`f32`, `bf16-amx`, `bf16-avx512`, `int8-avx512`, `candle`: see `augur_risk::embed`).

use std::time::Instant;

use augur_risk::embed::{self, Embedder};

/// The allocator of the service binaries (see `services/risk/src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn env_or<T: std::str::FromStr>(k: &str, d: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn main() -> anyhow::Result<()> {
    let dir = embed::default_dir();
    anyhow::ensure!(
        embed::present(&dir),
        "MiniLM not found in {} (make minilm)",
        dir.display()
    );
    let data = augur_testkit::datasets::dir().join("spam/spamassassin_dev.jsonl");
    anyhow::ensure!(
        data.is_file(),
        "spam dataset not found at {}",
        data.display()
    );
    let t = Instant::now();
    let mut e = Embedder::load(&dir).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "loaded MiniLM ({}) in {:.2} s",
        e.engine().name(),
        t.elapsed().as_secs_f64()
    );
    let docs: Vec<String> = std::fs::read_to_string(&data)?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_string))
        .collect();
    let all: Vec<&str> = docs.iter().map(String::as_str).collect();
    let t = Instant::now();
    let tokens = e.token_counts(&all).map_err(|e| anyhow::anyhow!("{e}"))?;
    println!(
        "tokenised the {} corpus documents ({:.1} MB) in {:.2} s",
        all.len(),
        all.iter().map(|d| d.len()).sum::<usize>() as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let n: usize = env_or("MINILM_DOCS", 64);
    let long: Vec<&str> = (0..all.len())
        .filter(|&i| tokens[i] == embed::MAX_TOKENS)
        .take(n)
        .map(|i| all[i])
        .collect();
    println!(
        "MiniLM speed: {} CPU(s), engine {}, {} documents of 256 tokens",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        e.engine().name(),
        long.len()
    );
    let batches: Vec<usize> = std::env::var("MINILM_BATCHES")
        .unwrap_or_else(|_| "256,512,1024,4096".into())
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .collect();
    // Warm-up (thread pools, allocator).
    e.embed(&long[..long.len().min(4)])
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for b in batches {
        e.batch_tokens = b;
        let t = Instant::now();
        e.embed(&long).map_err(|e| anyhow::anyhow!("{e}"))?;
        let s = t.elapsed().as_secs_f64();
        println!(
            "{b:>4} tokens per pass: {:.1} docs/s at 256 tokens ({:.1} ms per document)",
            long.len() as f64 / s,
            1e3 * s / long.len() as f64
        );
    }
    // One ~100-word text at a time.
    let words: Vec<&str> = all
        .iter()
        .flat_map(|d| d.split_whitespace())
        .filter(|w| w.chars().all(char::is_alphabetic))
        .take(100 * 64)
        .collect();
    let texts: Vec<String> = words.chunks(100).map(|c| c.join(" ")).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let single_tokens = e.token_counts(&refs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let calls: usize = env_or("MINILM_SINGLE", 50);
    if calls == 0 {
        return Ok(());
    }
    let mut ms = Vec::with_capacity(calls);
    for i in 0..calls {
        let t = Instant::now();
        e.embed(&refs[i % refs.len()..i % refs.len() + 1])
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    let q = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    println!(
        "single text of 100 words (mean {:.0} tokens), {calls} calls: p50 {:.1} ms, p99 {:.1} ms",
        single_tokens.iter().sum::<usize>() as f64 / single_tokens.len() as f64,
        q(0.5),
        q(0.99)
    );
    Ok(())
}
