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
