//! Implicit-feedback ALS (Hu, Koren & Volinsky 2008), a benchmark baseline: confidence
//! `1 + alpha * x`, preference 1 on observed pairs, alternating exact least-squares solves.

use crate::data::{Dataset, Ev};
use crate::linalg::cholesky_solve;
use crate::models::{par_map, user_rows};

#[derive(Debug, Clone, Copy)]
pub struct AlsConfig {
    pub factors: usize,
    pub reg: f64,
    pub alpha: f64,
    pub iterations: usize,
    pub seed: u64,
}

/// Item factors; user factors are solved from a history at scoring time (fold-in).
#[derive(Debug, Clone)]
pub struct Als {
    pub cfg: AlsConfig,
    pub items: Vec<f64>,
    gram: Vec<f64>,
}

fn solve(fixed: &[f64], gram: &[f64], row: &[(u32, f32)], cfg: &AlsConfig) -> Vec<f64> {
    let f = cfg.factors;
    let mut a = gram.to_vec();
    let mut b = vec![0f64; f];
    for i in 0..f {
        a[i * f + i] += cfg.reg;
    }
    for &(j, x) in row {
        let c = cfg.alpha * x as f64;
        let y = &fixed[j as usize * f..(j as usize + 1) * f];
        for p in 0..f {
            b[p] += (1.0 + c) * y[p];
            for q in 0..f {
                a[p * f + q] += c * y[p] * y[q];
            }
        }
    }
    cholesky_solve(&mut a, &mut b, f);
    b
}

fn gram(m: &[f64], f: usize) -> Vec<f64> {
    let mut g = vec![0f64; f * f];
    for r in m.chunks(f) {
        for p in 0..f {
            for q in 0..f {
                g[p * f + q] += r[p] * r[q];
            }
        }
    }
    g
}

impl Als {
    pub fn fit(d: &Dataset, cfg: AlsConfig) -> Als {
        let f = cfg.factors;
        let rows = user_rows(d);
        let mut cols: Vec<Vec<(u32, f32)>> = vec![Vec::new(); d.n_items()];
        for (u, r) in rows.iter().enumerate() {
            for &(i, w) in r {
                cols[i as usize].push((u as u32, w));
            }
        }
        let mut state = cfg.seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut rnd = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.02
        };
        let mut items: Vec<f64> = (0..d.n_items() * f).map(|_| rnd()).collect();
        let mut users: Vec<f64> = vec![0.0; rows.len() * f];
        for _ in 0..cfg.iterations {
            let g = gram(&items, f);
            users = par_map(rows.len(), |u| solve(&items, &g, &rows[u], &cfg))
                .into_iter()
                .flatten()
                .collect();
            let g = gram(&users, f);
            items = par_map(cols.len(), |i| solve(&users, &g, &cols[i], &cfg))
                .into_iter()
                .flatten()
                .collect();
        }
        let gram = gram(&items, f);
        Als { cfg, items, gram }
    }

    /// Folds the history in (one least-squares solve) and scores every item.
    pub fn score(&self, hist: &[Ev], out: &mut [f32]) {
        let f = self.cfg.factors;
        let row = crate::models::input_weights(hist, 0.0);
        let u = solve(&self.items, &self.gram, &row, &self.cfg);
        for (j, o) in out.iter_mut().enumerate() {
            let y = &self.items[j * f..(j + 1) * f];
            *o = y.iter().zip(&u).map(|(a, b)| a * b).sum::<f64>() as f32;
        }
    }
}
