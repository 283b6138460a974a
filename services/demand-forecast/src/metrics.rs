//! Forecast accuracy: sMAPE (M3 definition), MASE, WAPE and interval coverage.

/// sMAPE in percent, M3 definition: mean of 200 |y - f| / (|y| + |f|); a point where both are 0
/// counts as 0.
pub fn smape(y: &[f64], f: &[f64]) -> f64 {
    let n = y.len().min(f.len());
    if n == 0 {
        return 0.0;
    }
    let s: f64 = y
        .iter()
        .zip(f)
        .map(|(a, b)| {
            let d = a.abs() + b.abs();
            if d == 0.0 {
                0.0
            } else {
                200.0 * (a - b).abs() / d
            }
        })
        .sum();
    s / n as f64
}

/// In-sample MAE of the seasonal naive forecast with season `m` (1 = one-step naive); falls back
/// to the one-step naive when the history is too short for `m`, and to the mean absolute value
/// (or 1) when that is 0.
pub fn naive_scale(history: &[f64], m: usize) -> f64 {
    let m = if m >= 1 && history.len() > m { m } else { 1 };
    let n = history.len();
    let mae = if n > m {
        (m..n)
            .map(|t| (history[t] - history[t - m]).abs())
            .sum::<f64>()
            / (n - m) as f64
    } else {
        0.0
    };
    if mae > 0.0 && mae.is_finite() {
        return mae;
    }
    let avg = history.iter().map(|v| v.abs()).sum::<f64>() / n.max(1) as f64;
    if avg > 0.0 && avg.is_finite() {
        avg
    } else {
        1.0
    }
}

/// MAE of `f` scaled by `scale`.
pub fn mase(y: &[f64], f: &[f64], scale: f64) -> f64 {
    let n = y.len().min(f.len());
    if n == 0 {
        return 0.0;
    }
    let mae = y.iter().zip(f).map(|(a, b)| (a - b).abs()).sum::<f64>() / n as f64;
    mae / scale
}

/// Scaled interval score of a central `1 - alpha` interval (the M4 competition's MSIS): the mean
/// over steps of the width plus `2 / alpha` times the distance by which the actual falls outside,
/// divided by `scale` (the in-sample seasonal naive MAE, as for MASE). Lower is better; it
/// rewards intervals that are narrow and still hold the outcomes.
pub fn msis(y: &[f64], lo: &[f64], hi: &[f64], alpha: f64, scale: f64) -> f64 {
    let n = y.len().min(lo.len()).min(hi.len());
    if n == 0 {
        return 0.0;
    }
    let s: f64 = (0..n)
        .map(|i| {
            (hi[i] - lo[i])
                + 2.0 / alpha * (lo[i] - y[i]).max(0.0)
                + 2.0 / alpha * (y[i] - hi[i]).max(0.0)
        })
        .sum();
    s / n as f64 / scale
}

/// Pooled sums for WAPE and coverage.
#[derive(Debug, Default, Clone, Copy)]
pub struct Pooled {
    pub abs_err: f64,
    pub abs_y: f64,
    pub inside: u64,
    pub points: u64,
}

impl Pooled {
    pub fn add(&mut self, y: &[f64], f: &[f64], lo: &[f64], hi: &[f64]) {
        for i in 0..y.len() {
            self.abs_err += (y[i] - f[i]).abs();
            self.abs_y += y[i].abs();
            if y[i] >= lo[i] && y[i] <= hi[i] {
                self.inside += 1;
            }
            self.points += 1;
        }
    }
    pub fn merge(&mut self, o: &Pooled) {
        self.abs_err += o.abs_err;
        self.abs_y += o.abs_y;
        self.inside += o.inside;
        self.points += o.points;
    }
    pub fn wape(&self) -> f64 {
        if self.abs_y > 0.0 {
            self.abs_err / self.abs_y
        } else if self.abs_err == 0.0 {
            0.0
        } else {
            1.0
        }
    }
    pub fn coverage(&self) -> f64 {
        if self.points == 0 {
            0.0
        } else {
            self.inside as f64 / self.points as f64
        }
    }
}

/// Mean sMAPE and mean MASE (seasonal naive scale with period `m`) of `forecasts` against
/// `(history, actual)` windows, in order.
pub fn mean_smape_mase(
    windows: &[(Vec<f64>, Vec<f64>)],
    forecasts: &[Vec<f64>],
    m: usize,
) -> (f64, f64) {
    let (mut a, mut b) = (0.0, 0.0);
    for ((y, actual), f) in windows.iter().zip(forecasts) {
        a += smape(actual, f);
        b += mase(actual, f, naive_scale(y, m));
    }
    let n = windows.len().max(1) as f64;
    (a / n, b / n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions() {
        assert_eq!(smape(&[100.0], &[100.0]), 0.0);
        assert!((smape(&[100.0], &[50.0]) - 200.0 * 50.0 / 150.0).abs() < 1e-9);
        assert_eq!(smape(&[0.0], &[0.0]), 0.0);
        let s = naive_scale(&[1.0, 2.0, 4.0], 1);
        assert!((s - 1.5).abs() < 1e-12);
        assert!((mase(&[5.0], &[2.0], s) - 2.0).abs() < 1e-12);
        let mut p = Pooled::default();
        p.add(&[10.0, 0.0], &[8.0, 1.0], &[5.0, 0.5], &[12.0, 2.0]);
        assert!((p.wape() - 0.3).abs() < 1e-12);
        assert!((p.coverage() - 0.5).abs() < 1e-12);
        // Width 2 inside; the second step misses by 1 above an interval of width 1: 1 + 10 * 1.
        let v = msis(&[1.0, 4.0], &[0.0, 2.0], &[2.0, 3.0], 0.2, 2.0);
        assert!((v - (2.0 + 11.0) / 2.0 / 2.0).abs() < 1e-12);
    }
}
