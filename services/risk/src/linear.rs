//! L2-regularised logistic regression over sparse rows, fitted with mini-batch Adam.
//!
//! Rows are `(index, value)` pairs so that the same code fits dense tabular encodings,
//! sentence embeddings and hashed TF-IDF vectors with hundreds of thousands of dimensions.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// One example: sorted or unsorted `(feature index, value)` pairs.
pub type SparseRow = Vec<(u32, f32)>;

/// Hyper-parameters of [`Logistic::fit`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticParams {
    /// L2 penalty per example (the loss is mean log loss + l2/2 * |w|^2).
    pub l2: f32,
    pub epochs: usize,
    pub batch: usize,
    pub learning_rate: f32,
    /// Weight of positive examples relative to negatives (1 = unweighted).
    pub positive_weight: f32,
    pub seed: u64,
}

impl Default for LogisticParams {
    fn default() -> Self {
        LogisticParams {
            l2: 1e-3,
            epochs: 60,
            batch: 64,
            learning_rate: 0.02,
            positive_weight: 1.0,
            seed: 42,
        }
    }
}

/// A fitted logistic regression: `p = sigmoid(w . x + b)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub weights: Vec<f32>,
    pub bias: f32,
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

impl Logistic {
    /// The linear score `w . x + b` (the log-odds).
    pub fn margin(&self, row: &[(u32, f32)]) -> f32 {
        let mut z = self.bias;
        for &(i, v) in row {
            if let Some(w) = self.weights.get(i as usize) {
                z += w * v;
            }
        }
        z
    }

    pub fn predict(&self, row: &[(u32, f32)]) -> f32 {
        sigmoid(self.margin(row))
    }

    /// Fits on `rows` (feature indices below `dim`) with labels.
    pub fn fit(rows: &[SparseRow], labels: &[bool], dim: usize, p: &LogisticParams) -> Logistic {
        let n = rows.len().max(1);
        let pos = labels.iter().filter(|&&l| l).count();
        let prior = ((pos as f32 + 0.5) / (n as f32 + 1.0)).clamp(1e-4, 1.0 - 1e-4);
        let mut m = Logistic {
            weights: vec![0.0; dim],
            bias: (prior / (1.0 - prior)).ln(),
        };
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        let mut mw = vec![0.0f32; dim];
        let mut vw = vec![0.0f32; dim];
        let (mut mb, mut vb) = (0.0f32, 0.0f32);
        let mut grad = vec![0.0f32; dim];
        let mut touched: Vec<u32> = Vec::new();
        let mut order: Vec<usize> = (0..rows.len()).collect();
        let mut rng = StdRng::seed_from_u64(p.seed);
        let mut t = 0i32;
        let batch = p.batch.max(1);
        // Lazy L2: the penalty gradient is applied to every weight each step, which keeps the
        // update exact; cheap enough for the dimensions used here.
        for _ in 0..p.epochs {
            order.shuffle(&mut rng);
            for chunk in order.chunks(batch) {
                t += 1;
                let mut gb = 0.0f32;
                let mut wsum = 0.0f32;
                for &k in chunk {
                    let y = if labels[k] { 1.0 } else { 0.0 };
                    let cw = if labels[k] { p.positive_weight } else { 1.0 };
                    let e = (m.predict(&rows[k]) - y) * cw;
                    wsum += cw;
                    gb += e;
                    for &(i, v) in &rows[k] {
                        let i = i as usize;
                        if i < dim {
                            if grad[i] == 0.0 {
                                touched.push(i as u32);
                            }
                            grad[i] += e * v;
                        }
                    }
                }
                let inv = 1.0 / wsum.max(1e-6);
                let lr = p.learning_rate * (1.0 - b2.powi(t)).sqrt() / (1.0 - b1.powi(t));
                for i in 0..dim {
                    let g = grad[i] * inv + p.l2 * m.weights[i];
                    if g == 0.0 && mw[i] == 0.0 {
                        continue;
                    }
                    mw[i] = b1 * mw[i] + (1.0 - b1) * g;
                    vw[i] = b2 * vw[i] + (1.0 - b2) * g * g;
                    m.weights[i] -= lr * mw[i] / (vw[i].sqrt() + eps);
                }
                for &i in &touched {
                    grad[i as usize] = 0.0;
                }
                touched.clear();
                let g = gb * inv;
                mb = b1 * mb + (1.0 - b1) * g;
                vb = b2 * vb + (1.0 - b2) * g * g;
                m.bias -= lr * mb / (vb.sqrt() + eps);
            }
        }
        m
    }
}

impl Logistic {
    /// Exact fit by Newton's method (IRLS) on dense rows: for up to a few hundred dimensions.
    /// Minimises mean log loss + l2/2 * |w|^2 (bias not penalised).
    pub fn fit_newton(x: &[Vec<f32>], labels: &[bool], l2: f32, iterations: usize) -> Logistic {
        let d = x.first().map_or(0, Vec::len);
        let n = x.len().max(1) as f64;
        let mut w = vec![0.0f64; d + 1]; // last = bias
        let pos = labels.iter().filter(|&&l| l).count() as f64;
        let prior = ((pos + 0.5) / (n + 1.0)).clamp(1e-4, 1.0 - 1e-4);
        w[d] = (prior / (1.0 - prior)).ln();
        for _ in 0..iterations {
            let mut g = vec![0.0f64; d + 1];
            let mut h = vec![vec![0.0f64; d + 1]; d + 1];
            for (r, &y) in x.iter().zip(labels) {
                let z: f64 = r.iter().zip(&w).map(|(a, b)| *a as f64 * b).sum::<f64>() + w[d];
                let p = 1.0 / (1.0 + (-z).exp());
                let e = p - if y { 1.0 } else { 0.0 };
                let s = (p * (1.0 - p)).max(1e-9);
                let xi: Vec<f64> = r
                    .iter()
                    .map(|v| *v as f64)
                    .chain(std::iter::once(1.0))
                    .collect();
                for i in 0..=d {
                    if xi[i] == 0.0 {
                        continue;
                    }
                    g[i] += e * xi[i];
                    let sx = s * xi[i];
                    for (hj, xj) in h[i].iter_mut().zip(&xi) {
                        *hj += sx * xj;
                    }
                }
            }
            for i in 0..=d {
                g[i] /= n;
                for v in h[i].iter_mut() {
                    *v /= n;
                }
                if i < d {
                    g[i] += l2 as f64 * w[i];
                    h[i][i] += l2 as f64;
                }
                h[i][i] += 1e-9;
            }
            let step = solve(h, g);
            let mut max = 0.0f64;
            for (wi, si) in w.iter_mut().zip(&step) {
                *wi -= si;
                max = max.max(si.abs());
            }
            if max < 1e-7 {
                break;
            }
        }
        Logistic {
            weights: w[..d].iter().map(|v| *v as f32).collect(),
            bias: w[d] as f32,
        }
    }
}

/// Solves `a x = b` (Gaussian elimination with partial pivoting).
#[allow(clippy::needless_range_loop)] // index arithmetic over a small dense matrix
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let d = b.len();
    for col in 0..d {
        let piv = (col..d)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let pv = a[col][col];
        if pv.abs() < 1e-15 {
            continue;
        }
        for r in col + 1..d {
            let f = a[r][col] / pv;
            if f != 0.0 {
                for k in col..d {
                    a[r][k] -= f * a[col][k];
                }
                b[r] -= f * b[col];
            }
        }
    }
    let mut x = vec![0.0; d];
    for i in (0..d).rev() {
        let s: f64 = (i + 1..d).map(|k| a[i][k] * x[k]).sum();
        x[i] = if a[i][i].abs() < 1e-15 {
            0.0
        } else {
            (b[i] - s) / a[i][i]
        };
    }
    x
}

/// Dense row to sparse pairs (zeros dropped).
pub fn sparse(dense: &[f32]) -> SparseRow {
    dense
        .iter()
        .enumerate()
        .filter(|(_, v)| **v != 0.0)
        .map(|(i, v)| (i as u32, *v))
        .collect()
}

/// Ridge regression `y ~ w . x + b` on dense rows, solved in closed form (normal equations with
/// Gaussian elimination); for a few hundred dimensions.
#[allow(clippy::needless_range_loop)] // index arithmetic over a small dense matrix
pub fn ridge(rows: &[Vec<f32>], y: &[f32], l2: f64) -> (Vec<f32>, f32) {
    let d = rows.first().map_or(0, Vec::len);
    let n = rows.len().max(1) as f64;
    let ym = y.iter().map(|&v| v as f64).sum::<f64>() / n;
    let mut xm = vec![0.0f64; d];
    for r in rows {
        for (j, v) in r.iter().enumerate() {
            xm[j] += *v as f64 / n;
        }
    }
    let mut a = vec![vec![0.0f64; d + 1]; d];
    for (r, &yy) in rows.iter().zip(y) {
        let c: Vec<f64> = r.iter().zip(&xm).map(|(v, m)| *v as f64 - m).collect();
        let yc = yy as f64 - ym;
        for i in 0..d {
            for j in i..d {
                a[i][j] += c[i] * c[j];
            }
            a[i][d] += c[i] * yc;
        }
    }
    for i in 0..d {
        for j in 0..i {
            a[i][j] = a[j][i];
        }
        a[i][i] += l2 * n;
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..d {
        let piv = (col..d)
            .max_by(|&p, &q| a[p][col].abs().total_cmp(&a[q][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        let pv = a[col][col];
        if pv.abs() < 1e-12 {
            continue;
        }
        for r in 0..d {
            if r != col {
                let f = a[r][col] / pv;
                if f != 0.0 {
                    for k in col..=d {
                        a[r][k] -= f * a[col][k];
                    }
                }
            }
        }
    }
    let w: Vec<f64> = (0..d)
        .map(|i| {
            if a[i][i].abs() < 1e-12 {
                0.0
            } else {
                a[i][d] / a[i][i]
            }
        })
        .collect();
    let b = ym - w.iter().zip(&xm).map(|(w, m)| w * m).sum::<f64>();
    (w.into_iter().map(|v| v as f32).collect(), b as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_a_linear_problem() {
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for i in 0..400 {
            let x = (i as f32 / 200.0) - 1.0;
            let y = ((i * 7919) % 13) as f32 / 13.0 - 0.5;
            rows.push(sparse(&[x, y]));
            labels.push(x + 0.2 * y > 0.1);
        }
        let m = Logistic::fit(&rows, &labels, 2, &LogisticParams::default());
        let acc = rows
            .iter()
            .zip(&labels)
            .filter(|(r, l)| (m.predict(r) > 0.5) == **l)
            .count();
        assert!(acc > 380, "accuracy {acc}/400");
        assert!(m.weights[0] > 0.0);
        let dense: Vec<Vec<f32>> = rows
            .iter()
            .map(|r| {
                let mut d = vec![0.0; 2];
                for &(i, v) in r {
                    d[i as usize] = v;
                }
                d
            })
            .collect();
        let n = Logistic::fit_newton(&dense, &labels, 1e-3, 50);
        let acc = rows
            .iter()
            .zip(&labels)
            .filter(|(r, l)| (n.predict(r) > 0.5) == **l)
            .count();
        assert!(acc > 380, "newton accuracy {acc}/400");
    }

    #[test]
    fn ridge_recovers_coefficients() {
        let rows: Vec<Vec<f32>> = (0..50)
            .map(|i| vec![i as f32, ((i * 37) % 11) as f32])
            .collect();
        let y: Vec<f32> = rows.iter().map(|r| 2.0 * r[0] - r[1] + 3.0).collect();
        let (w, b) = ridge(&rows, &y, 0.0);
        assert!(
            (w[0] - 2.0).abs() < 1e-3 && (w[1] + 1.0).abs() < 1e-3,
            "{w:?}"
        );
        assert!((b - 3.0).abs() < 1e-2, "{b}");
    }
}
