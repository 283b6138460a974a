//! Probability calibration fitted on a held-out slice: Platt scaling (a logistic curve over the raw
//! score) and isotonic regression (pool-adjacent-violators, monotone step function).

use serde::{Deserialize, Serialize};

/// `p = 1 / (1 + exp(-(a * score + b)))`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    /// Fits by Newton's method on the log-likelihood, with Platt's smoothed targets
    /// (`(n+ + 1) / (n+ + 2)` and `1 / (n- + 2)`) so that separable data does not diverge.
    pub fn fit(scores: &[f64], labels: &[bool]) -> Platt {
        let pos = labels.iter().filter(|&&y| y).count() as f64;
        let neg = labels.len() as f64 - pos;
        let hi = (pos + 1.0) / (pos + 2.0);
        let lo = 1.0 / (neg + 2.0);
        let t: Vec<f64> = labels.iter().map(|&y| if y { hi } else { lo }).collect();
        let (mut a, mut b) = (1.0, 0.0);
        for _ in 0..100 {
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 1e-9, 0.0, 1e-9);
            for (&s, &ti) in scores.iter().zip(&t) {
                let p = sigmoid(a * s + b);
                let d = p - ti;
                let w = p * (1.0 - p);
                ga += d * s;
                gb += d;
                haa += w * s * s;
                hab += w * s;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-18 {
                break;
            }
            let da = (hbb * ga - hab * gb) / det;
            let db = (haa * gb - hab * ga) / det;
            a -= da;
            b -= db;
            if da.abs() < 1e-10 && db.abs() < 1e-10 {
                break;
            }
        }
        Platt { a, b }
    }

    pub fn apply(&self, score: f64) -> f64 {
        sigmoid(self.a * score + self.b)
    }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Monotone non-decreasing map from score to probability; linear interpolation between block
/// centres, constant beyond the ends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Isotonic {
    pub x: Vec<f64>,
    pub y: Vec<f64>,
}

impl Isotonic {
    pub fn fit(scores: &[f64], labels: &[bool]) -> Isotonic {
        let mut v: Vec<(f64, f64)> = scores
            .iter()
            .zip(labels)
            .map(|(&s, &y)| (s, if y { 1.0 } else { 0.0 }))
            .collect();
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        // blocks: (sum_x, sum_y, n)
        let mut blocks: Vec<(f64, f64, f64)> = Vec::with_capacity(v.len());
        for (s, y) in v {
            blocks.push((s, y, 1.0));
            while blocks.len() > 1 {
                let n = blocks.len();
                let (a, b) = (blocks[n - 2], blocks[n - 1]);
                if a.1 / a.2 >= b.1 / b.2 {
                    blocks.pop();
                    blocks[n - 2] = (a.0 + b.0, a.1 + b.1, a.2 + b.2);
                } else {
                    break;
                }
            }
        }
        Isotonic {
            x: blocks.iter().map(|b| b.0 / b.2).collect(),
            y: blocks.iter().map(|b| b.1 / b.2).collect(),
        }
    }

    pub fn apply(&self, score: f64) -> f64 {
        let n = self.x.len();
        if n == 0 {
            return 0.5;
        }
        if score <= self.x[0] {
            return self.y[0];
        }
        if score >= self.x[n - 1] {
            return self.y[n - 1];
        }
        let i = self.x.partition_point(|&x| x <= score);
        let (x0, x1, y0, y1) = (self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]);
        if x1 > x0 {
            y0 + (y1 - y0) * (score - x0) / (x1 - x0)
        } else {
            y1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platt_recovers_a_logistic_curve() {
        let mut scores = Vec::new();
        let mut labels = Vec::new();
        // deterministic sample of p = sigmoid(2s - 1)
        for i in 0..4000 {
            let s = (i % 400) as f64 / 100.0 - 2.0;
            let p = sigmoid(2.0 * s - 1.0);
            let u = ((i as f64 * 0.618_033_988_7) % 1.0 + (i / 400) as f64 * 0.1) % 1.0;
            scores.push(s);
            labels.push(u < p);
        }
        let c = Platt::fit(&scores, &labels);
        assert!((c.a - 2.0).abs() < 0.3, "{c:?}");
        assert!((c.b + 1.0).abs() < 0.3, "{c:?}");
    }

    #[test]
    fn isotonic_is_monotone_and_fits_steps() {
        let s = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
        let y = [false, true, false, true, true, true];
        let iso = Isotonic::fit(&s, &y);
        let out: Vec<f64> = s.iter().map(|&x| iso.apply(x)).collect();
        assert!(out.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        assert_eq!(iso.apply(0.0), 0.0);
        assert_eq!(iso.apply(1.0), 1.0);
    }
}
