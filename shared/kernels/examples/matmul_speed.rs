//! Matrix-product speed of each precision on this CPU: `cargo run --release -p augur-kernels
//! --example matmul_speed` (env `ROWS`, default 2048; `THREADS` for rayon).
#![allow(clippy::unwrap_used)]
use std::time::Instant;

use augur_kernels::{Epilogue, Linear, Precision, padded_rows};

fn main() {
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2048);
    println!(
        "{} rayon threads, AMX bf16 available: {}",
        rayon::current_num_threads(),
        augur_kernels::amx::available()
    );
    {
        let x: Vec<f32> = (0..rows * 1536).map(|i| i as f32).collect();
        let mut b = Vec::new();
        let t = Instant::now();
        for _ in 0..20 {
            augur_kernels::amx::to_bf16_padded(&x, rows, 1536, &mut b);
        }
        println!(
            "bf16 rounding of {rows} x 1536: {:.2} ms",
            t.elapsed().as_secs_f64() * 1e3 / 20.0
        );
    }
    for &(n, k) in &[(1152usize, 384usize), (1536, 384), (384, 1536)] {
        let x: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 500.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 104729 % 1000) as f32 - 500.0) / 5000.0)
            .collect();
        for p in [
            Precision::F32,
            Precision::Bf16Amx,
            Precision::Bf16Avx512,
            Precision::Int8Avx512,
            Precision::Int8Avx2,
        ] {
            let l = Linear::new(w.clone(), vec![0.0; n], n, k, p).unwrap();
            if l.precision() != p {
                continue;
            }
            let mut out = vec![0.0; padded_rows(rows) * n];
            let mut scratch = augur_kernels::Scratch::default();
            l.forward(&x, rows, &mut out, Epilogue::None, &mut scratch);
            let iters = 20;
            let t = Instant::now();
            for _ in 0..iters {
                l.forward(&x, rows, &mut out, Epilogue::None, &mut scratch);
            }
            let s = t.elapsed().as_secs_f64() / iters as f64;
            println!(
                "{rows} x {k} -> {n} {:>8}: {:.2} ms, {:.0} GFLOP/s",
                p.name(),
                s * 1e3,
                2.0 * (rows * n * k) as f64 / s / 1e9
            );
        }
    }
}
