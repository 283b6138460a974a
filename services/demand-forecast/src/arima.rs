//! Regression with ARIMA errors and automatic order selection, non-seasonal, in plain Rust:
//! `y_t = X_t beta + u_t` where the d-th difference of `u` is an ARMA(p, q) process with an
//! optional mean (intercept when d = 0, drift when d = 1).
//!
//! The procedure follows R's `forecast::auto.arima` (Hyndman & Khandakar, 2008), as
//! statsforecast's AutoARIMA does: d from repeated KPSS tests (5%) on the residuals of the
//! regression of `y` on `X`, then the stepwise search over p, q <= 5 and the constant, by AICc.
//! Estimation is conditional sum of squares (CSS, the method those libraries use to search on long
//! series) rather than exact maximum likelihood: for given ARMA coefficients the residual filter is
//! linear, so the constant and the regression coefficients are solved exactly by least squares on
//! the filtered series, and Nelder-Mead searches only the ARMA coefficients, parametrised by
//! partial autocorrelations (`tanh`) so that every candidate is stationary and invertible.

use crate::stats::nelder_mead;

/// Search limits.
#[derive(Debug, Clone)]
pub struct AutoOptions {
    pub max_p: usize,
    pub max_q: usize,
    pub max_d: usize,
    /// Most models the stepwise search fits.
    pub max_models: usize,
}

impl Default for AutoOptions {
    fn default() -> Self {
        AutoOptions {
            max_p: 5,
            max_q: 5,
            max_d: 2,
            max_models: 94,
        }
    }
}

/// A fitted regression with ARIMA(p, d, q) errors.
#[derive(Debug, Clone)]
pub struct ArimaFit {
    pub p: usize,
    pub d: usize,
    pub q: usize,
    /// AR coefficients: `w_t = phi_1 w_{t-1} + ... + e_t + theta_1 e_{t-1} + ...`.
    pub phi: Vec<f64>,
    pub theta: Vec<f64>,
    /// Mean of the differenced errors (0 when the model has no constant).
    pub constant: Option<f64>,
    /// Regression coefficients, one per column of `X`.
    pub beta: Vec<f64>,
    /// Innovation variance (CSS).
    pub sigma2: f64,
    pub aicc: f64,
    /// The regression errors `u = y - X beta` of the history (needed to forecast).
    u: Vec<f64>,
}

/// Durbin-Levinson: AR coefficients from partial autocorrelations in (-1, 1) (stationary).
fn pacf_to_ar(r: &[f64]) -> Vec<f64> {
    let mut phi: Vec<f64> = Vec::with_capacity(r.len());
    for (k, &rk) in r.iter().enumerate() {
        let prev = phi.clone();
        for j in 0..k {
            phi[j] = prev[j] - rk * prev[k - 1 - j];
        }
        phi.push(rk);
    }
    phi
}

/// Differences `y` `d` times.
fn diff(y: &[f64], d: usize) -> Vec<f64> {
    let mut v = y.to_vec();
    for _ in 0..d {
        v = v.windows(2).map(|w| w[1] - w[0]).collect();
    }
    v
}

/// KPSS level-stationarity statistic with Newey-West long-run variance, lag
/// `trunc(3 sqrt(n) / 13)` (as `forecast::ndiffs`).
pub fn kpss(y: &[f64]) -> f64 {
    let n = y.len();
    if n < 3 {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let e: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let mut s = 0.0;
    let mut eta = 0.0;
    for v in &e {
        s += v;
        eta += s * s;
    }
    eta /= (n * n) as f64;
    let lags = (3.0 * (n as f64).sqrt() / 13.0) as usize;
    let mut lrv = e.iter().map(|v| v * v).sum::<f64>() / n as f64;
    for l in 1..=lags.min(n - 1) {
        let gamma = (l..n).map(|t| e[t] * e[t - l]).sum::<f64>() / n as f64;
        lrv += 2.0 * (1.0 - l as f64 / (lags as f64 + 1.0)) * gamma;
    }
    if lrv <= 1e-12 { 0.0 } else { eta / lrv }
}

/// 5% critical value of the KPSS level test.
const KPSS_CRITICAL: f64 = 0.463;

/// Number of differences that make `y` level-stationary by repeated KPSS tests.
pub fn ndiffs(y: &[f64], max_d: usize) -> usize {
    let mut d = 0;
    let mut v = y.to_vec();
    while d < max_d && v.len() > 5 {
        let spread = v.iter().fold(0.0f64, |m, x| m.max((x - v[0]).abs()));
        if spread < 1e-12 || kpss(&v) <= KPSS_CRITICAL {
            break;
        }
        d += 1;
        v = diff(&v, 1);
    }
    d
}

/// Least squares `y ~ cols` (no implicit intercept), lightly ridged; coefficients and SSE.
fn least_squares(cols: &[Vec<f64>], y: &[f64], from: usize) -> (Vec<f64>, f64) {
    let k = cols.len();
    if k == 0 {
        return (Vec::new(), y[from..].iter().map(|v| v * v).sum());
    }
    let mut xtx = vec![0.0; k * k];
    let mut xty = vec![0.0; k];
    for t in from..y.len() {
        for i in 0..k {
            xty[i] += cols[i][t] * y[t];
            for j in 0..=i {
                xtx[i * k + j] += cols[i][t] * cols[j][t];
            }
        }
    }
    for i in 0..k {
        for j in 0..i {
            xtx[j * k + i] = xtx[i * k + j];
        }
        xtx[i * k + i] += 1e-9 * (1.0 + xtx[i * k + i]);
    }
    let b = crate::model::solve(xtx, xty, k).unwrap_or_else(|| vec![0.0; k]);
    let sse = (from..y.len())
        .map(|t| {
            let r = y[t] - (0..k).map(|i| b[i] * cols[i][t]).sum::<f64>();
            r * r
        })
        .sum();
    (b, sse)
}

/// The CSS residual filter: `e_t = w_t - sum phi_i w_{t-i} - sum theta_j e_{t-j}` for t >= p
/// (0 before).
fn filter(w: &[f64], phi: &[f64], theta: &[f64], out: &mut Vec<f64>) {
    let p = phi.len();
    out.clear();
    out.resize(w.len(), 0.0);
    for t in p..w.len() {
        let mut e = w[t];
        for (i, f) in phi.iter().enumerate() {
            e -= f * w[t - 1 - i];
        }
        for (j, th) in theta.iter().enumerate() {
            if t > j {
                e -= th * out[t - 1 - j];
            }
        }
        out[t] = e;
    }
}

/// The differenced data a fit of one order works on.
struct Problem {
    /// d-th difference of y.
    y: Vec<f64>,
    /// The columns whose coefficients least squares solves: a column of ones when the model has
    /// a constant, then the d-th differences of the regressors.
    x: Vec<Vec<f64>>,
}

impl Problem {
    /// CSS of ARMA coefficients (transformed) `a` with the coefficients of `x` solved: (SSE,
    /// those coefficients, phi, theta).
    fn css(&self, p: usize, a: &[f64]) -> (f64, Vec<f64>, Vec<f64>, Vec<f64>) {
        let r: Vec<f64> = a.iter().map(|v| v.tanh()).collect();
        let phi = pacf_to_ar(&r[..p]);
        let theta: Vec<f64> = pacf_to_ar(&r[p..]).iter().map(|v| -v).collect();
        let mut fy = Vec::new();
        filter(&self.y, &phi, &theta, &mut fy);
        let cols: Vec<Vec<f64>> = self
            .x
            .iter()
            .map(|c| {
                let mut out = Vec::new();
                filter(c, &phi, &theta, &mut out);
                out
            })
            .collect();
        let (coef, sse) = least_squares(&cols, &fy, p);
        (sse, coef, phi, theta)
    }
}

/// Fits ARIMA(p, d, q) errors (d given) on `y` with regressor columns `x`.
pub fn fit(
    y: &[f64],
    x: &[Vec<f64>],
    p: usize,
    d: usize,
    q: usize,
    constant: bool,
) -> Option<ArimaFit> {
    let n = y.len();
    if x.iter().any(|c| c.len() != n) || y.iter().chain(x.iter().flatten()).any(|v| !v.is_finite())
    {
        return None;
    }
    let yd = diff(y, d);
    let ones = constant.then(|| vec![1.0; yd.len()]);
    let prob = Problem {
        x: ones
            .into_iter()
            .chain(x.iter().map(|c| diff(c, d)))
            .collect(),
        y: yd,
    };
    let m = prob.y.len().checked_sub(p)?;
    let k = p + q + usize::from(constant) + x.len() + 1;
    if m < k + 2 {
        return None;
    }
    let dims = p + q;
    let a = if dims == 0 {
        Vec::new()
    } else {
        nelder_mead(
            |a| {
                if a.iter().any(|v| v.abs() > 6.0) {
                    return f64::INFINITY;
                }
                prob.css(p, a).0
            },
            &vec![0.0; dims],
            &vec![0.3; dims],
            120 * dims + 100,
        )
    };
    let (sse, coef, phi, theta) = prob.css(p, &a);
    let sigma2 = (sse / m as f64).max(1e-300);
    let loglik = -0.5 * m as f64 * ((2.0 * std::f64::consts::PI * sigma2).ln() + 1.0);
    let kf = k as f64;
    let aicc = -2.0 * loglik + 2.0 * kf + 2.0 * kf * (kf + 1.0) / (m as f64 - kf - 1.0);
    let (c, beta) = if constant {
        (Some(coef[0]), coef[1..].to_vec())
    } else {
        (None, coef)
    };
    let u: Vec<f64> = (0..n)
        .map(|t| y[t] - beta.iter().zip(x).map(|(b, col)| b * col[t]).sum::<f64>())
        .collect();
    aicc.is_finite().then_some(ArimaFit {
        p,
        d,
        q,
        phi,
        theta,
        constant: c,
        beta,
        sigma2,
        aicc,
        u,
    })
}

/// Automatic order selection: d by KPSS on the regression residuals, then the stepwise search.
pub fn auto(y: &[f64], x: &[Vec<f64>], opts: &AutoOptions) -> Option<ArimaFit> {
    let n = y.len();
    if n < 8 {
        return None;
    }
    // d from the residuals of y on [1, X].
    let mut cols = vec![vec![1.0; n]];
    cols.extend(x.iter().cloned());
    let (b, _) = least_squares(&cols, y, 0);
    let resid: Vec<f64> = (0..n)
        .map(|t| y[t] - cols.iter().zip(&b).map(|(c, bi)| c[t] * bi).sum::<f64>())
        .collect();
    let d = ndiffs(&resid, opts.max_d);
    let allow_constant = d <= 1;
    let mut tried: Vec<(usize, usize, bool)> = Vec::new();
    let mut best: Option<ArimaFit> = None;
    let mut consider = |p: usize, q: usize, c: bool, best: &mut Option<ArimaFit>| -> bool {
        if p > opts.max_p || q > opts.max_q || (c && !allow_constant) {
            return false;
        }
        if tried.contains(&(p, q, c)) || tried.len() >= opts.max_models {
            return false;
        }
        tried.push((p, q, c));
        match fit(y, x, p, d, q, c) {
            Some(f) if best.as_ref().is_none_or(|b| f.aicc < b.aicc - 1e-9) => {
                *best = Some(f);
                true
            }
            _ => false,
        }
    };
    for (p, q) in [(2, 2), (0, 0), (1, 0), (0, 1)] {
        consider(p, q, allow_constant, &mut best);
    }
    if allow_constant {
        consider(0, 0, false, &mut best);
    }
    while let Some(cur) = best.as_ref() {
        let (p, q, c) = (cur.p, cur.q, cur.constant.is_some());
        let mut moves: Vec<(isize, isize, bool)> = Vec::new();
        for (dp, dq) in [
            (-1, 0),
            (1, 0),
            (0, -1),
            (0, 1),
            (-1, -1),
            (1, 1),
            (-1, 1),
            (1, -1),
        ] {
            moves.push((dp, dq, c));
        }
        moves.push((0, 0, !c));
        let mut improved = false;
        for (dp, dq, cc) in moves {
            let (np, nq) = (p as isize + dp, q as isize + dq);
            if np < 0 || nq < 0 {
                continue;
            }
            if consider(np as usize, nq as usize, cc, &mut best) {
                improved = true;
                break;
            }
        }
        if !improved {
            break;
        }
    }
    best
}

impl ArimaFit {
    /// Forecast of `h` steps given the regressors of those steps (`x_future[c][i]`; a missing
    /// value repeats the column's last known one).
    pub fn forecast(&self, x_future: &[Vec<f64>], h: usize) -> Vec<f64> {
        // Differences of u at every order 0..=d (their last values integrate the forecast back).
        let mut levels: Vec<Vec<f64>> = vec![self.u.clone()];
        for _ in 0..self.d {
            let next = diff(levels.last().map_or(&[][..], Vec::as_slice), 1);
            levels.push(next);
        }
        let w = levels.last().cloned().unwrap_or_default();
        let c = self.constant.unwrap_or(0.0);
        let centred: Vec<f64> = w.iter().map(|v| v - c).collect();
        let mut e = Vec::new();
        filter(&centred, &self.phi, &self.theta, &mut e);
        let mut wc = centred;
        let m = wc.len();
        for i in 0..h {
            let t = m + i;
            let mut v = 0.0;
            for (k, f) in self.phi.iter().enumerate() {
                if t > k {
                    v += f * wc[t - 1 - k];
                }
            }
            for (j, th) in self.theta.iter().enumerate() {
                if t > j && t - 1 - j < m {
                    v += th * e[t - 1 - j];
                }
            }
            wc.push(v);
        }
        let mut f: Vec<f64> = wc[m..].iter().map(|v| v + c).collect();
        // Integrate back through each difference order.
        for level in levels[..self.d].iter().rev() {
            let mut last = level.last().copied().unwrap_or(0.0);
            for v in f.iter_mut() {
                last += *v;
                *v = last;
            }
        }
        f.iter()
            .enumerate()
            .map(|(i, u)| {
                let xb: f64 = self
                    .beta
                    .iter()
                    .zip(x_future)
                    .map(|(b, col)| {
                        let v = col.get(i).or(col.last()).copied().unwrap_or(0.0);
                        b * v
                    })
                    .sum();
                let v = u + xb;
                if v.is_finite() {
                    v
                } else {
                    self.u.last().copied().unwrap_or(0.0)
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Deterministic standard normal draws (Box-Muller over a xorshift generator).
    fn noise(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut uni = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| (-2.0 * uni().ln()).sqrt() * (2.0 * std::f64::consts::PI * uni()).cos())
            .collect()
    }

    #[test]
    fn pacf_transform_gives_stationary_ar() {
        // AR(2) from pacf (0.5, 0.3): phi2 = 0.3, phi1 = 0.5 - 0.3 * 0.5 = 0.35.
        let phi = pacf_to_ar(&[0.5, 0.3]);
        assert!((phi[0] - 0.35).abs() < 1e-12 && (phi[1] - 0.3).abs() < 1e-12);
    }

    #[test]
    fn kpss_tells_a_random_walk_from_noise() {
        let e = noise(1, 300);
        assert_eq!(ndiffs(&e, 2), 0, "white noise is stationary");
        let mut walk = Vec::new();
        let mut s = 0.0;
        for v in &e {
            s += v;
            walk.push(s);
        }
        assert_eq!(ndiffs(&walk, 2), 1, "a random walk needs one difference");
    }

    #[test]
    fn recovers_an_ar1_with_a_regressor() {
        // u_t = 0.5 u_{t-1} + e_t, y = 2 + 1.5 x + u, x a promotion flag.
        let e = noise(7, 600);
        let x: Vec<f64> = (0..600).map(|t| f64::from(t % 7 == 0)).collect();
        let mut u = 0.0;
        let y: Vec<f64> = (0..600)
            .map(|t| {
                u = 0.5 * u + 0.5 * e[t];
                2.0 + 1.5 * x[t] + u
            })
            .collect();
        let f = fit(&y, std::slice::from_ref(&x), 1, 0, 0, true).unwrap();
        assert!((f.phi[0] - 0.5).abs() < 0.08, "phi {:?}", f.phi);
        assert!((f.beta[0] - 1.5).abs() < 0.1, "beta {:?}", f.beta);
        assert!((f.constant.unwrap() - 2.0).abs() < 0.3);
        assert!((f.sigma2 - 0.25).abs() < 0.05, "sigma2 {}", f.sigma2);
        // The automatic search keeps d = 0 (KPSS on the regression residuals) and the
        // forecast lifts in the promotion step.
        let a = auto(&y, &[x], &AutoOptions::default()).unwrap();
        assert_eq!(a.d, 0, "{a:?}");
        let fc = a.forecast(&[vec![0.0, 1.0, 0.0]], 3);
        assert!(fc[1] - fc[0] > 1.2 && fc[1] - fc[2] > 1.2, "{fc:?}");
        assert!(fc.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn a_random_walk_with_drift_is_differenced_and_forecast_along_the_drift() {
        let e = noise(3, 400);
        let mut s = 10.0;
        let y: Vec<f64> = e
            .iter()
            .map(|v| {
                s += 0.5 + 0.2 * v;
                s
            })
            .collect();
        let a = auto(&y, &[], &AutoOptions::default()).unwrap();
        assert_eq!(a.d, 1);
        let fc = a.forecast(&[], 10);
        let last = *y.last().unwrap();
        // About last + 0.5 i.
        for (i, v) in fc.iter().enumerate() {
            let want = last + 0.5 * (i + 1) as f64;
            assert!(
                (v - want).abs() < 0.25 * (i + 1) as f64,
                "step {i}: {v} vs {want}"
            );
        }
    }

    #[test]
    fn an_ma1_is_found_and_short_or_bad_input_gives_none() {
        let e = noise(11, 500);
        let y: Vec<f64> = (0..500)
            .map(|t| e[t] + if t > 0 { 0.6 * e[t - 1] } else { 0.0 })
            .collect();
        let f = fit(&y, &[], 0, 0, 1, true).unwrap();
        assert!((f.theta[0] - 0.6).abs() < 0.1, "theta {:?}", f.theta);
        assert!(auto(&y[..5], &[], &AutoOptions::default()).is_none());
        let mut bad = y.clone();
        bad[3] = f64::NAN;
        assert!(fit(&bad, &[], 1, 0, 0, true).is_none());
    }
}
