//! Exponential smoothing in the innovations state-space form of Hyndman, Koehler, Ord and Snyder
//! (2008), with automatic model selection as in R's `forecast::ets` and statsforecast's AutoETS.
//!
//! The family: error additive (A) or multiplicative (M); trend none (N), additive (A) or damped
//! additive (Ad); season none (N), additive (A) or multiplicative (M), with period `m`. Excluded, as
//! in `ets(restrict = TRUE)`: additive errors with a multiplicative season (numerically unstable),
//! and multiplicative trends. Seasonal models need `2 <= m <= 24` and more than `m` observations;
//! multiplicative errors or seasons need strictly positive data.
//!
//! Each model's smoothing parameters (alpha, beta, gamma, phi; the usual bounds
//! `1e-4 <= alpha <= 0.9999`, `1e-4 <= beta <= alpha`, `1e-4 <= gamma <= 1 - alpha`,
//! `0.8 <= phi <= 0.98`, and for seasonal models the admissibility condition that the roots of the
//! characteristic polynomial lie in the unit circle) and its initial states (level, trend, the `m`
//! seasonal states normalised to sum 0 or `m`, so `m - 1` free ones) start from the heuristic of
//! `forecast::ets` (a classical decomposition of the first three seasons, or a line + one Fourier
//! pair regression on shorter series; a regression line through the first `max(10, 2m)`
//! seasonally adjusted points) and are then fitted by maximum likelihood with a bounded Nelder-Mead.
//! The objective is `n ln(sum e_t^2)` plus, for multiplicative errors (`e_t` relative),
//! `2 sum ln |fitted_t|`; the model with the smallest AICc is chosen. Point forecasts are the state
//! recursion run forward without errors. Every public function returns finite values for finite
//! input: a model that diverges is dropped, and when none fits the forecast is the mean of the
//! series.
//!
//! Two settings ([`Options`]) were chosen on validation windows (M3 monthly, the last 18 points
//! of each training part, `examples/ets_validation.rs`; never on test data):
//!
//! - beta is also bounded by `0.2 / m` (`m` the period when seasonal models are fitted, else 1),
//!   the starting alpha of `ets`' seasonal models. statsforecast's AutoETS ends up with that bound
//!   for most trend models: its `initparam` narrows the upper bound of beta to each model's
//!   starting alpha, and the bounds are shared across its model loop. With R's `beta <= alpha`
//!   alone the fitted trends follow recent slopes: validation MASE 0.938 against 0.878.
//! - The Nelder-Mead budget: at most 10 evaluations per optimised coordinate (up to 17 for
//!   ETS(M,Ad,M) with m = 12), stopping earlier when the simplex's `-2 log L` values have a
//!   standard deviation below 1e-4 (statsforecast's tolerance). Fuller optimisation reaches lower
//!   AICc values (below statsforecast's on most series) but forecasts worse on the validation
//!   windows (MASE 0.881 / 0.878 / 0.887 / 0.891 / 0.900 at 5 / 10 / 20 / 30 / 60 evaluations per
//!   coordinate; the free seasonal states overfit) and costs proportionally more time.

use crate::stats::{classical_figure, mean};

/// Error component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Additive,
    Multiplicative,
}

/// Trend component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrendKind {
    None,
    Additive,
    Damped,
}

/// Seasonal component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeasonKind {
    None,
    Additive,
    Multiplicative,
}

/// One member of the family, e.g. ETS(M,Ad,M).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    pub error: ErrorKind,
    pub trend: TrendKind,
    pub season: SeasonKind,
}

impl Spec {
    pub const fn new(error: ErrorKind, trend: TrendKind, season: SeasonKind) -> Spec {
        Spec {
            error,
            trend,
            season,
        }
    }

    /// The usual short name, e.g. "MAdM".
    pub fn code(&self) -> String {
        let e = match self.error {
            ErrorKind::Additive => "A",
            ErrorKind::Multiplicative => "M",
        };
        let t = match self.trend {
            TrendKind::None => "N",
            TrendKind::Additive => "A",
            TrendKind::Damped => "Ad",
        };
        let s = match self.season {
            SeasonKind::None => "N",
            SeasonKind::Additive => "A",
            SeasonKind::Multiplicative => "M",
        };
        format!("{e}{t}{s}")
    }

    fn has_trend(&self) -> bool {
        self.trend != TrendKind::None
    }

    fn seasonal(&self) -> bool {
        self.season != SeasonKind::None
    }

    /// Smoothing parameters estimated (alpha, beta, gamma, phi as they apply).
    fn n_smoothing(&self) -> usize {
        1 + usize::from(self.has_trend())
            + usize::from(self.seasonal())
            + usize::from(self.trend == TrendKind::Damped)
    }

    /// Free initial states: level, trend, `m - 1` seasonal states.
    fn n_states(&self, m: usize) -> usize {
        1 + usize::from(self.has_trend()) + if self.seasonal() { m - 1 } else { 0 }
    }
}

/// Largest season length seasonal models are fitted for (as `forecast::ets`).
pub const MAX_SEASON: usize = 24;

/// The candidate models for a series of length `n` with period `m`: seasonal ones only when
/// `2 <= m <= MAX_SEASON` and `n > m`, multiplicative ones only for strictly positive data.
pub fn family(y: &[f64], m: usize) -> Vec<Spec> {
    let positive = !y.is_empty() && y.iter().all(|v| *v > 0.0);
    let seasonal = (2..=MAX_SEASON).contains(&m) && y.len() > m;
    let mut out = Vec::new();
    for error in [ErrorKind::Additive, ErrorKind::Multiplicative] {
        if error == ErrorKind::Multiplicative && !positive {
            continue;
        }
        for trend in [TrendKind::None, TrendKind::Additive, TrendKind::Damped] {
            for season in [
                SeasonKind::None,
                SeasonKind::Additive,
                SeasonKind::Multiplicative,
            ] {
                if season != SeasonKind::None && !seasonal {
                    continue;
                }
                if season == SeasonKind::Multiplicative
                    && (!positive || error == ErrorKind::Additive)
                {
                    continue;
                }
                out.push(Spec::new(error, trend, season));
            }
        }
    }
    out
}

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
}

const LOWER: f64 = 1e-4;
const UPPER: f64 = 0.9999;
const PHI_LOWER: f64 = 0.8;
const PHI_UPPER: f64 = 0.98;
/// Fitted values, seasonal states and levels closer to 0 than this (on the data scaled to a
/// largest absolute value of 1) make a multiplicative model infeasible.
const TINY: f64 = 1e-10;
/// Fitted values beyond this (scaled data) mean the recursion diverged.
const HUGE: f64 = 1e100;

/// `v` limited to `[lo, hi]` (to `lo` when `hi < lo` or `v` is NaN; never panics).
fn within(v: f64, lo: f64, hi: f64) -> f64 {
    v.min(hi).max(lo)
}

/// Whether `v` is NaN or too close to 0 to divide by.
fn near_zero(v: f64) -> bool {
    v.is_nan() || v.abs() <= TINY
}

/// Whether the roots of the characteristic polynomial of a seasonal model lie in the unit circle
/// (the admissible region of Hyndman et al. 2008, ch. 10; `forecast::ets`'s `admissible`).
fn admissible(p: &Params, m: usize) -> bool {
    let (a, b, g, phi) = (p.alpha, p.beta, p.gamma, p.phi);
    if !(2..=MAX_SEASON).contains(&m) {
        return false;
    }
    // Coefficients in increasing powers; the leading one is 1.
    let mut c = [0.0; MAX_SEASON + 2];
    c[0] = phi * (1.0 - a - g);
    c[1] = a + b - a * phi + g - 1.0;
    for v in &mut c[2..m] {
        *v = a + b - a * phi;
    }
    c[m] = a + b - phi;
    c[m + 1] = 1.0;
    // Models without a trend have a unit root at 1 (the level and the seasons are not separately
    // identified); like `forecast::ets` (max |root| <= 1 + 1e-10) allow a hair outside the circle:
    // test the roots of c((1 + eps) w) for |w| < 1.
    let mut r = 1.0;
    for v in c[..m + 2].iter_mut() {
        *v *= r;
        r *= 1.0 + 1e-8;
    }
    roots_inside_unit_circle(&mut c[..m + 2])
}

/// Schur-Cohn test: all roots of `sum c[i] z^i` strictly inside the unit circle (`c`, at most
/// `MAX_SEASON + 2` long, is used as scratch).
fn roots_inside_unit_circle(c: &mut [f64]) -> bool {
    let mut q = [0.0; MAX_SEASON + 2];
    if c.len() > q.len() {
        return false;
    }
    let mut len = c.len();
    while len > 1 {
        let n = len - 1;
        let (a0, an) = (c[0], c[n]);
        if !a0.is_finite() || !an.is_finite() || a0.abs() >= an.abs() {
            return false;
        }
        // (an p(z) - a0 p*(z)) / z keeps the roots inside when |a0| < |an| (Rouche).
        for i in 0..n {
            q[i] = an * c[i + 1] - a0 * c[n - 1 - i];
        }
        let lead = q[n - 1];
        if lead == 0.0 || !lead.is_finite() {
            return false;
        }
        for i in 0..n {
            c[i] = q[i] / lead;
        }
        len = n;
    }
    true
}

/// What one pass of the recursion over the data leaves.
#[derive(Debug, Clone, Copy)]
struct Pass {
    sse: f64,
    /// Sum of ln |fitted| (multiplicative errors only).
    log_abs: f64,
    level: f64,
    trend: f64,
}

/// Runs the model over `y` from the initial states; `season` (length `m`, `season[t % m]` applies
/// at time `t`) holds the initial seasonal states and is left with the final ones. `None` when the
/// recursion diverges or a multiplicative model meets a value near 0.
fn pass(spec: Spec, p: &Params, y: &[f64], l0: f64, b0: f64, season: &mut [f64]) -> Option<Pass> {
    let phi = if spec.trend == TrendKind::Damped {
        p.phi
    } else {
        1.0
    };
    let b0 = if spec.has_trend() { b0 } else { 0.0 };
    let a = (p, phi, y, l0, b0, season);
    // One copy of the loop per structure (the branches leave the loop).
    match (spec.error, spec.has_trend(), spec.season) {
        (ErrorKind::Additive, false, SeasonKind::None) => run::<false, false, 0>(a),
        (ErrorKind::Additive, false, SeasonKind::Additive) => run::<false, false, 1>(a),
        (ErrorKind::Additive, false, SeasonKind::Multiplicative) => run::<false, false, 2>(a),
        (ErrorKind::Additive, true, SeasonKind::None) => run::<false, true, 0>(a),
        (ErrorKind::Additive, true, SeasonKind::Additive) => run::<false, true, 1>(a),
        (ErrorKind::Additive, true, SeasonKind::Multiplicative) => run::<false, true, 2>(a),
        (ErrorKind::Multiplicative, false, SeasonKind::None) => run::<true, false, 0>(a),
        (ErrorKind::Multiplicative, false, SeasonKind::Additive) => run::<true, false, 1>(a),
        (ErrorKind::Multiplicative, false, SeasonKind::Multiplicative) => run::<true, false, 2>(a),
        (ErrorKind::Multiplicative, true, SeasonKind::None) => run::<true, true, 0>(a),
        (ErrorKind::Multiplicative, true, SeasonKind::Additive) => run::<true, true, 1>(a),
        (ErrorKind::Multiplicative, true, SeasonKind::Multiplicative) => run::<true, true, 2>(a),
    }
}

type PassArgs<'a> = (&'a Params, f64, &'a [f64], f64, f64, &'a mut [f64]);

/// The recursion of [`pass`] for multiplicative errors `MULT`, a trend `TREND` and season `SEASON`
/// (0 none, 1 additive, 2 multiplicative); damping is `phi` (1 undamped).
fn run<const MULT: bool, const TREND: bool, const SEASON: u8>(
    (p, phi, y, l0, b0, season): PassArgs<'_>,
) -> Option<Pass> {
    let m = season.len();
    if SEASON > 0 && m == 0 {
        return None;
    }
    let (mut l, mut b) = (l0, b0);
    let (mut sse, mut log_abs, mut prod) = (0.0, 0.0, 1.0);
    let mut j = 0usize;
    for &v in y {
        let phib = if TREND { phi * b } else { 0.0 };
        let q = l + phib;
        // Fitted value and the deviation the level and trend are corrected by.
        let (f, d) = match SEASON {
            0 => (q, v - q),
            1 => {
                let s = season[j];
                (q + s, v - s - q)
            }
            _ => {
                let s = season[j];
                if near_zero(s) {
                    return None;
                }
                (q * s, v / s - q)
            }
        };
        if !f.is_finite() || f.abs() >= HUGE {
            return None;
        }
        let e = if MULT {
            let a = f.abs();
            if near_zero(a) {
                return None;
            }
            prod *= a;
            if !(1e-150..=1e150).contains(&prod) {
                log_abs += prod.ln();
                prod = 1.0;
            }
            (v - f) / f
        } else {
            v - f
        };
        sse += e * e;
        l = q + p.alpha * d;
        if TREND {
            b = phib + p.beta * d;
        }
        if SEASON > 0 {
            let s = season[j];
            let target = if SEASON == 1 {
                v - q
            } else {
                if near_zero(q) {
                    return None;
                }
                v / q
            };
            season[j] = s + p.gamma * (target - s);
            j += 1;
            if j == m {
                j = 0;
            }
        }
    }
    log_abs += prod.ln();
    (sse.is_finite() && log_abs.is_finite() && l.is_finite() && b.is_finite()).then_some(Pass {
        sse,
        log_abs,
        level: l,
        trend: b,
    })
}

/// `-2 log L` up to a constant shared by every model of the same series: `n ln(SSE)` (errors
/// absolute or relative) plus `2 sum ln |fitted|` for multiplicative errors. The SSE is floored at
/// a root mean square error of 1e-10 (of the data scaled to a largest absolute value of 1), so
/// exact fits tie and the AICc prefers the simpler model.
fn neg2_loglik(pass: &Pass, n: usize, spec: Spec) -> f64 {
    let nf = n as f64;
    let mut lik = nf * pass.sse.max(nf * 1e-20).ln();
    if spec.error == ErrorKind::Multiplicative {
        lik += 2.0 * pass.log_abs;
    }
    lik
}

/// Least-squares line through `(1, y[0]), (2, y[1]), ...`: (intercept at 0, slope).
pub(crate) fn line(y: &[f64]) -> (f64, f64) {
    let n = y.len();
    if n < 2 {
        return (y.first().copied().unwrap_or(0.0), 0.0);
    }
    let tbar = (n as f64 + 1.0) / 2.0;
    let ybar = mean(y);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, v) in y.iter().enumerate() {
        let d = i as f64 + 1.0 - tbar;
        sxy += d * (v - ybar);
        sxx += d * d;
    }
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (ybar - b * tbar, b)
}

/// Seasonal values of a regression of `y` on a line and one Fourier pair (for series shorter than
/// three seasons): `y - line` (additive) or `y / line` (multiplicative), each `t`.
fn fourier_detrended(y: &[f64], m: usize, mult: bool) -> Option<Vec<f64>> {
    let n = y.len();
    let w = 2.0 * std::f64::consts::PI / m as f64;
    // For m = 2 the sine column is 0.
    let with_sin = m > 2;
    let row = |t: usize| -> Vec<f64> {
        let tt = t as f64 + 1.0;
        let mut r = vec![1.0, tt, (w * tt).cos()];
        if with_sin {
            r.push((w * tt).sin());
        }
        r
    };
    let p = if with_sin { 4 } else { 3 };
    if n <= p {
        return None;
    }
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    for (t, v) in y.iter().enumerate() {
        let r = row(t);
        for i in 0..p {
            xty[i] += r[i] * v;
            for j in 0..p {
                xtx[i * p + j] += r[i] * r[j];
            }
        }
    }
    let c = crate::model::solve(xtx, xty, p)?;
    let out: Vec<f64> = y
        .iter()
        .enumerate()
        .map(|(t, v)| {
            let tr = c[0] + c[1] * (t as f64 + 1.0);
            if mult { v / tr } else { v - tr }
        })
        .collect();
    out.iter().all(|v| v.is_finite()).then_some(out)
}

/// Heuristic initial states (as `forecast::ets`'s `initstate`): level, trend and the `m` seasonal
/// states (normalised).
fn initial_states(y: &[f64], m: usize, spec: Spec) -> Option<(f64, f64, Vec<f64>)> {
    let n = y.len();
    let mult = spec.season == SeasonKind::Multiplicative;
    let (season, adjusted) = if spec.seasonal() {
        // Seasonal values by time (the figure repeated, or the detrended values of a short series).
        let by_time: Vec<f64> = if n >= 3 * m {
            let fig = classical_figure(&y[..3 * m], m, mult)?;
            (0..n).map(|t| fig[t % m]).collect()
        } else {
            fourier_detrended(y, m, mult)?
        };
        let mut s: Vec<f64> = by_time[..m].to_vec();
        if mult {
            for v in &mut s {
                *v = v.max(1e-2);
            }
            let k = m as f64 / s.iter().sum::<f64>();
            for v in &mut s {
                *v *= k;
            }
        } else {
            let avg = mean(&s);
            for v in &mut s {
                *v -= avg;
            }
        }
        let adjusted: Vec<f64> = y
            .iter()
            .zip(&by_time)
            .map(|(v, s)| if mult { v / s.max(1e-2) } else { v - s })
            .collect();
        (s, adjusted)
    } else {
        (Vec::new(), y.to_vec())
    };
    let maxn = (2 * m).max(10).min(n);
    let (l0, b0) = if spec.has_trend() {
        let (mut l0, mut b0) = line(&adjusted[..maxn]);
        if spec.error == ErrorKind::Multiplicative && (l0 + b0).abs() < 1e-8 {
            l0 *= 1.0 + 1e-3;
            b0 *= 1.0 - 1e-3;
        }
        (l0, b0)
    } else {
        (mean(&adjusted[..maxn]), 0.0)
    };
    (l0.is_finite() && b0.is_finite() && season.iter().all(|v| v.is_finite()))
        .then_some((l0, b0, season))
}

/// Optimiser settings.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Nelder-Mead evaluations allowed per optimised coordinate (parameters and free initial
    /// states).
    pub evals_per_coord: usize,
    /// Nelder-Mead stops when the standard deviation of the simplex's `-2 log L` values is below
    /// this.
    pub tol: f64,
    /// Bound beta (the trend's smoothing) also by 0.2 / m, `m` the period when seasonal models
    /// are fitted, else 1 (see the module documentation); `false`: only R's `beta <= alpha`.
    pub beta_cap: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            evals_per_coord: 10,
            tol: 1e-4,
            beta_cap: true,
        }
    }
}

/// Puts `x` (value `fx`) in place of simplex row `r`, keeping the running sum of the rows.
fn replace(r: usize, pts: &mut [f64], vals: &mut [f64], sum: &mut [f64], x: &[f64], fx: f64) {
    let d = x.len();
    let row = &mut pts[r * d..(r + 1) * d];
    for ((s, v), new) in sum.iter_mut().zip(row.iter_mut()).zip(x) {
        *s += new - *v;
        *v = *new;
    }
    vals[r] = fx;
}

/// Nelder-Mead minimisation inside a box (trial points are clamped into it, as in statsforecast's
/// ETS optimiser) with the adaptive coefficients of Gao and Han (2012); `f` returns
/// `f64::INFINITY` where infeasible. Stops when the standard deviation of the simplex values is
/// below `tol` or after `max_evals` evaluations. Returns the best point and its value.
fn nelder_mead_box(
    f: impl Fn(&[f64]) -> f64,
    x0: &[f64],
    step: &[f64],
    lower: &[f64],
    upper: &[f64],
    tol: f64,
    max_evals: usize,
) -> (Vec<f64>, f64) {
    let d = x0.len();
    let clamp = |x: &mut [f64]| {
        for ((v, lo), hi) in x.iter_mut().zip(lower).zip(upper) {
            *v = within(*v, *lo, *hi);
        }
    };
    let mut start = x0.to_vec();
    clamp(&mut start);
    if d == 0 {
        let v = f(&start);
        return (start, v);
    }
    let df = d as f64;
    let (expand, contract, shrink) = (1.0 + 2.0 / df, 0.75 - 0.5 / df, 1.0 - 1.0 / df);
    // Simplex rows, flat.
    let mut pts: Vec<f64> = Vec::with_capacity((d + 1) * d);
    pts.extend_from_slice(&start);
    for i in 0..d {
        let mut p = start.clone();
        p[i] += step[i];
        clamp(&mut p);
        if p[i] == start[i] {
            p[i] -= step[i];
            clamp(&mut p);
        }
        pts.extend_from_slice(&p);
    }
    let mut vals: Vec<f64> = (0..=d).map(|r| f(&pts[r * d..(r + 1) * d])).collect();
    let mut evals = d + 1;
    let mut sum = vec![0.0; d];
    let resum = |pts: &[f64], sum: &mut [f64]| {
        sum.iter_mut().for_each(|v| *v = 0.0);
        for r in 0..=d {
            for (s, v) in sum.iter_mut().zip(&pts[r * d..(r + 1) * d]) {
                *s += v;
            }
        }
    };
    resum(&pts, &mut sum);
    let (mut xo, mut xr, mut xt) = (vec![0.0; d], vec![0.0; d], vec![0.0; d]);
    let mut iter = 0usize;
    while evals < max_evals {
        iter += 1;
        // Best, worst and second worst.
        let (mut best, mut worst) = (0, 0);
        for r in 1..=d {
            if vals[r] < vals[best] {
                best = r;
            }
            if vals[r] >= vals[worst] {
                worst = r;
            }
        }
        let mut second = if worst == 0 { 1 } else { 0 };
        for r in 0..=d {
            if r != worst && vals[r] > vals[second] {
                second = r;
            }
        }
        if vals.iter().all(|v| v.is_finite()) {
            let mean = vals.iter().sum::<f64>() / (df + 1.0);
            let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (df + 1.0);
            if var.sqrt() < tol {
                break;
            }
        }
        // Every few hundred iterations, refresh the running sum against rounding drift.
        if iter.is_multiple_of(256) {
            resum(&pts, &mut sum);
        }
        let w = &pts[worst * d..(worst + 1) * d];
        for i in 0..d {
            xo[i] = (sum[i] - w[i]) / df;
            xr[i] = 2.0 * xo[i] - w[i];
        }
        clamp(&mut xr);
        let fr = f(&xr);
        evals += 1;
        if vals[best] <= fr && fr < vals[second] {
            replace(worst, &mut pts, &mut vals, &mut sum, &xr, fr);
            continue;
        }
        if fr < vals[best] {
            for i in 0..d {
                xt[i] = xo[i] + expand * (xr[i] - xo[i]);
            }
            clamp(&mut xt);
            let fe = f(&xt);
            evals += 1;
            if fe < fr {
                replace(worst, &mut pts, &mut vals, &mut sum, &xt, fe);
            } else {
                replace(worst, &mut pts, &mut vals, &mut sum, &xr, fr);
            }
            continue;
        }
        if fr < vals[worst] {
            // Outside contraction.
            for i in 0..d {
                xt[i] = xo[i] + contract * (xr[i] - xo[i]);
            }
            clamp(&mut xt);
            let fc = f(&xt);
            evals += 1;
            if fc <= fr {
                replace(worst, &mut pts, &mut vals, &mut sum, &xt, fc);
                continue;
            }
        } else {
            // Inside contraction.
            for i in 0..d {
                xt[i] = xo[i] - contract * (xr[i] - xo[i]);
            }
            clamp(&mut xt);
            let fc = f(&xt);
            evals += 1;
            if fc < vals[worst] {
                replace(worst, &mut pts, &mut vals, &mut sum, &xt, fc);
                continue;
            }
        }
        // Shrink towards the best point.
        let xb: Vec<f64> = pts[best * d..(best + 1) * d].to_vec();
        for r in 0..=d {
            if r == best {
                continue;
            }
            let row = &mut pts[r * d..(r + 1) * d];
            for i in 0..d {
                row[i] = xb[i] + shrink * (row[i] - xb[i]);
            }
            clamp(row);
            vals[r] = f(row);
            evals += 1;
        }
        resum(&pts, &mut sum);
    }
    let best = (0..=d)
        .min_by(|a, b| vals[*a].total_cmp(&vals[*b]))
        .unwrap_or(0);
    (pts[best * d..(best + 1) * d].to_vec(), vals[best])
}

/// A fitted model (on the data divided by `scale`).
#[derive(Debug, Clone)]
pub struct Fit {
    pub spec: Spec,
    pub m: usize,
    pub params: Params,
    /// `-2 log L` (up to a constant shared by the family) and the AICc.
    pub neg2_loglik: f64,
    pub aicc: f64,
    n: usize,
    scale: f64,
    level: f64,
    trend: f64,
    /// Final seasonal states, `season[t % m]` for time `t`.
    season: Vec<f64>,
}

impl Fit {
    /// Point forecasts for `h` steps after the data (finite or `None`).
    pub fn forecast(&self, h: usize) -> Option<Vec<f64>> {
        let phi = match self.spec.trend {
            TrendKind::None => 0.0,
            TrendKind::Additive => 1.0,
            TrendKind::Damped => self.params.phi,
        };
        let (mut damp, mut pw) = (0.0, 1.0);
        let mut out = Vec::with_capacity(h);
        for i in 0..h {
            pw *= phi;
            damp += pw;
            let base = if self.spec.has_trend() {
                self.level + damp * self.trend
            } else {
                self.level
            };
            let f = match self.spec.season {
                SeasonKind::None => base,
                SeasonKind::Additive => base + self.season[(self.n + i) % self.m],
                SeasonKind::Multiplicative => base * self.season[(self.n + i) % self.m],
            };
            out.push(f * self.scale);
        }
        out.iter().all(|v| v.is_finite()).then_some(out)
    }
}

/// Data divided by its largest absolute value (so huge or tiny magnitudes fit alike).
fn scaled(y: &[f64]) -> (Vec<f64>, f64) {
    let top = y.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    let scale = if top > 0.0 && top.is_finite() {
        top
    } else {
        1.0
    };
    (y.iter().map(|v| v / scale).collect(), scale)
}

/// Fits one model of the family by maximum likelihood; `None` when the series is too short for
/// it (AICc undefined) or no feasible fit is found.
pub fn fit(y: &[f64], m: usize, spec: Spec, opts: &Options) -> Option<Fit> {
    if y.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let (ys, scale) = scaled(y);
    fit_scaled(&ys, scale, m, spec, opts)
}

fn fit_scaled(ys: &[f64], scale: f64, m: usize, spec: Spec, opts: &Options) -> Option<Fit> {
    let n = ys.len();
    let seasonal = spec.seasonal();
    if seasonal && !((2..=MAX_SEASON).contains(&m) && n > m) {
        return None;
    }
    let mult_season = spec.season == SeasonKind::Multiplicative;
    if (spec.error == ErrorKind::Multiplicative || mult_season) && ys.iter().any(|v| *v <= 0.0) {
        return None;
    }
    let m_eff = if seasonal { m } else { 1 };
    // Parameters counted by the AICc: smoothing parameters, free initial states, the variance.
    let k = spec.n_smoothing() + spec.n_states(m_eff) + 1;
    if n <= k + 1 {
        return None;
    }
    let (l0, b0, s0) = initial_states(ys, m_eff, spec)?;
    // Unit of the level-like coordinates: the mean absolute value of the (scaled) data.
    let unit = (ys.iter().map(|v| v.abs()).sum::<f64>() / n as f64).max(1e-12);
    let has_b = spec.has_trend();
    let damped = spec.trend == TrendKind::Damped;
    // Coordinates: alpha, beta / min(alpha, beta_max), gamma / (1 - alpha), phi, then l0, b0 (in `unit`s) and
    // the seasonal states 1..m (in `unit`s when additive); state 0 normalises them.
    let alpha0 = LOWER + 0.2 * (UPPER - LOWER) / m_eff as f64;
    // The optional bound on beta: the starting alpha of a seasonal model of this series (of a
    // non-seasonal one when no seasonal model is fitted).
    let period = if (2..=MAX_SEASON).contains(&m) && n > m {
        m
    } else {
        1
    };
    let beta_max = if opts.beta_cap {
        LOWER + 0.2 * (UPPER - LOWER) / period as f64
    } else {
        UPPER
    };
    let (mut x0, mut step, mut lower, mut upper) =
        (vec![alpha0], vec![0.1], vec![LOWER], vec![UPPER]);
    let mut bounded = |x: f64, st: f64, lo: f64, hi: f64| {
        x0.push(x);
        step.push(st);
        lower.push(lo);
        upper.push(hi);
    };
    if has_b {
        bounded(0.1, 0.1, 0.0, 1.0);
    }
    if seasonal {
        bounded(0.05, 0.1, 0.0, 1.0);
    }
    if damped {
        bounded(
            PHI_LOWER + 0.99 * (PHI_UPPER - PHI_LOWER),
            -0.05,
            PHI_LOWER,
            PHI_UPPER,
        );
    }
    let np = spec.n_smoothing();
    let s_unit = if mult_season { 1.0 } else { unit };
    let mut free = |x: f64, st: f64| bounded(x, st, f64::NEG_INFINITY, f64::INFINITY);
    free(l0 / unit, 0.1);
    if has_b {
        free(b0 / unit, 0.01);
    }
    if seasonal {
        for v in &s0[1..] {
            free(v / s_unit, 0.05);
        }
    }
    // Parameters and initial states of a coordinate vector; the seasonal states go to `season`.
    let decode = |x: &[f64], season: &mut [f64]| -> Option<(Params, f64, f64)> {
        let alpha = within(x[0], LOWER, UPPER);
        let mut i = 1;
        let mut beta = 0.0;
        if has_b {
            let top = alpha.min(beta_max);
            beta = within(top * within(x[i], 0.0, 1.0), LOWER, top);
            i += 1;
        }
        let mut gamma = 0.0;
        if seasonal {
            gamma = within((1.0 - alpha) * within(x[i], 0.0, 1.0), LOWER, 1.0 - alpha);
            i += 1;
        }
        let mut phi = 1.0;
        if damped {
            phi = within(x[i], PHI_LOWER, PHI_UPPER);
        }
        let p = Params {
            alpha,
            beta,
            gamma,
            phi,
        };
        let l = x[np] * unit;
        let b = if has_b { x[np + 1] * unit } else { 0.0 };
        if seasonal {
            let rest = &x[np + 1 + usize::from(has_b)..];
            let mut sum = 0.0;
            for (slot, v) in season[1..].iter_mut().zip(rest) {
                *slot = v * s_unit;
                sum += *slot;
            }
            season[0] = if mult_season { m as f64 - sum } else { -sum };
            if mult_season && season.iter().any(|v| v.is_nan() || *v <= TINY) {
                return None;
            }
            if !admissible(&p, m) {
                return None;
            }
        }
        Some((p, l, b))
    };
    let objective = |x: &[f64]| -> f64 {
        let mut buf = [0.0; MAX_SEASON];
        let season = &mut buf[..if seasonal { m } else { 0 }];
        let Some((p, l, b)) = decode(x, season) else {
            return f64::INFINITY;
        };
        match pass(spec, &p, ys, l, b, season) {
            Some(r) => {
                let v = neg2_loglik(&r, n, spec);
                if v.is_finite() { v } else { f64::INFINITY }
            }
            None => f64::INFINITY,
        }
    };
    if !objective(&x0).is_finite() {
        return None;
    }
    let max_evals = opts.evals_per_coord * x0.len();
    let (best, _) = nelder_mead_box(objective, &x0, &step, &lower, &upper, opts.tol, max_evals);
    let mut season = vec![0.0; if seasonal { m } else { 0 }];
    let (params, l, b) = decode(&best, &mut season)?;
    let r = pass(spec, &params, ys, l, b, &mut season)?;
    let lik = neg2_loglik(&r, n, spec);
    let kf = k as f64;
    let aicc = lik + 2.0 * kf + 2.0 * kf * (kf + 1.0) / (n as f64 - kf - 1.0);
    if !aicc.is_finite() {
        return None;
    }
    Some(Fit {
        spec,
        m: m_eff,
        params,
        neg2_loglik: lik,
        aicc,
        n,
        scale,
        level: r.level,
        trend: r.trend,
        season,
    })
}

/// Every model of [`family`] fitted, best AICc first.
pub fn fit_all(y: &[f64], m: usize, opts: &Options) -> Vec<Fit> {
    if y.iter().any(|v| !v.is_finite()) {
        return Vec::new();
    }
    let (ys, scale) = scaled(y);
    let mut fits: Vec<Fit> = family(y, m)
        .into_iter()
        .filter_map(|spec| fit_scaled(&ys, scale, m, spec, opts))
        .collect();
    fits.sort_by(|a, b| a.aicc.total_cmp(&b.aicc));
    fits
}

/// The AICc-best model of the family (`None` when no model fits, e.g. fewer than 4 points).
pub fn auto(y: &[f64], m: usize, opts: &Options) -> Option<Fit> {
    fit_all(y, m, opts)
        .into_iter()
        .find(|f| f.forecast(1).is_some())
}

/// AutoETS forecasts for `h` steps: the AICc-best model whose forecast is finite; the mean of the
/// series (0 when empty or not finite) when no model fits.
pub fn forecast(y: &[f64], m: usize, h: usize) -> Vec<f64> {
    forecast_with(y, m, h, &Options::default())
}

/// [`forecast`] with explicit optimiser settings.
pub fn forecast_with(y: &[f64], m: usize, h: usize, opts: &Options) -> Vec<f64> {
    for f in fit_all(y, m, opts) {
        if let Some(out) = f.forecast(h) {
            return out;
        }
    }
    let avg = mean(y);
    vec![if avg.is_finite() { avg } else { 0.0 }; h]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers in [0, 1).
    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// Standard normal (Box-Muller).
    fn normals(seed: u64, n: usize) -> Vec<f64> {
        let mut u = rng(seed);
        (0..n)
            .map(|_| {
                let a = u().max(1e-12);
                let b = u();
                (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
            })
            .collect()
    }

    fn mape(f: &[f64], truth: &[f64]) -> f64 {
        f.iter()
            .zip(truth)
            .map(|(a, b)| (a - b).abs() / b.abs())
            .sum::<f64>()
            / truth.len() as f64
    }

    const PEAKS: [f64; 12] = [
        0.7, 0.75, 0.9, 1.0, 1.1, 1.25, 1.4, 1.3, 1.1, 0.95, 0.8, 0.7,
    ];

    /// Level with a trend times a strong multiplicative season, small relative noise.
    fn mult_seasonal(n: usize, noise: f64) -> (Vec<f64>, Vec<f64>) {
        let e = normals(7, n);
        let sum: f64 = PEAKS.iter().sum();
        let season: Vec<f64> = PEAKS.iter().map(|v| v * 12.0 / sum).collect();
        let truth: Vec<f64> = (0..n)
            .map(|t| (200.0 + 2.0 * t as f64) * season[t % 12])
            .collect();
        let y = truth
            .iter()
            .zip(&e)
            .map(|(v, e)| v * (1.0 + noise * e))
            .collect();
        (y, truth)
    }

    #[test]
    fn family_respects_data_and_season() {
        let pos: Vec<f64> = (1..=40).map(f64::from).collect();
        assert_eq!(family(&pos, 12).len(), 15);
        assert_eq!(family(&pos, 1).len(), 6);
        // Not strictly positive: additive only, never a multiplicative season.
        let mut zero = pos.clone();
        zero[3] = 0.0;
        let f = family(&zero, 12);
        assert_eq!(f.len(), 6);
        assert!(f.iter().all(|s| s.error == ErrorKind::Additive));
        assert!(f.iter().all(|s| s.season != SeasonKind::Multiplicative));
        // Too short for a season, or a season too long.
        assert!(family(&pos[..12], 12).iter().all(|s| !s.seasonal()));
        assert!(family(&pos, 30).iter().all(|s| !s.seasonal()));
        // Never additive error with multiplicative season.
        assert!(
            !family(&pos, 12)
                .iter()
                .any(|s| s.error == ErrorKind::Additive && s.season == SeasonKind::Multiplicative)
        );
    }

    #[test]
    fn admissible_region() {
        // Ordinary Holt-Winters parameters are admissible, with or without a trend.
        let p = Params {
            alpha: 0.3,
            beta: 0.05,
            gamma: 0.1,
            phi: 0.95,
        };
        assert!(admissible(&p, 12));
        let no_trend = Params {
            beta: 0.0,
            phi: 1.0,
            ..p
        };
        assert!(admissible(&no_trend, 12));
        assert!(admissible(&no_trend, 4));
        // Large smoothing on both level and season is not (roots outside the circle).
        let wild = Params {
            alpha: 0.99,
            beta: 0.99,
            gamma: 0.9,
            phi: 0.98,
        };
        assert!(!admissible(&wild, 12));
        // The Schur-Cohn test itself.
        assert!(roots_inside_unit_circle(&mut [0.25, -1.0, 1.0])); // (z - 0.5)^2
        assert!(!roots_inside_unit_circle(&mut [-2.0, -1.0, 1.0])); // (z - 2)(z + 1)
        assert!(roots_inside_unit_circle(&mut [0.1, 0.2, -0.3, 1.0]));
    }

    #[test]
    fn recovers_multiplicative_season() {
        let (y, truth) = mult_seasonal(96 + 18, 0.01);
        let fit = auto(&y[..96], 12, &Options::default()).expect("a model");
        assert_eq!(fit.spec.season, SeasonKind::Multiplicative, "{fit:?}");
        assert_eq!(fit.spec.error, ErrorKind::Multiplicative, "{fit:?}");
        assert_ne!(fit.spec.trend, TrendKind::None, "{fit:?}");
        let f = fit.forecast(18).expect("finite");
        let err = mape(&f, &truth[96..]);
        assert!(err < 0.03, "{err} {:?} {f:?}", fit.spec);
        // The seasonal states are close to the true indices (ordered like them).
        let s = &fit.season;
        let sum: f64 = PEAKS.iter().sum();
        for t in 0..12 {
            let true_idx = PEAKS[t] * 12.0 / sum;
            assert!((s[t] - true_idx).abs() < 0.08, "{t} {s:?}");
        }
    }

    #[test]
    fn fitted_parameters_respect_bounds() {
        let (y, _) = mult_seasonal(72, 0.05);
        let fits = fit_all(&y, 12, &Options::default());
        assert_eq!(fits.len(), 15);
        let cap = LOWER + 0.2 * (UPPER - LOWER) / 12.0;
        for f in &fits {
            let p = f.params;
            assert!((LOWER..=UPPER).contains(&p.alpha), "{f:?}");
            if f.spec.has_trend() {
                assert!(
                    p.beta >= LOWER && p.beta <= p.alpha.min(cap) + 1e-12,
                    "{f:?}"
                );
            }
            if f.spec.seasonal() {
                assert!(
                    p.gamma >= LOWER && p.gamma <= 1.0 - p.alpha + 1e-12,
                    "{f:?}"
                );
                assert!(admissible(&p, 12), "{f:?}");
                assert_eq!(f.season.len(), 12);
            }
            if f.spec.trend == TrendKind::Damped {
                assert!((PHI_LOWER..=PHI_UPPER).contains(&p.phi), "{f:?}");
            }
            assert!(f.aicc.is_finite() && f.neg2_loglik.is_finite());
        }
        // Sorted by AICc; R's bounds without the cap allow a faster trend.
        assert!(fits.windows(2).all(|w| w[0].aicc <= w[1].aicc));
        let free = Options {
            beta_cap: false,
            ..Options::default()
        };
        let spec = Spec::new(ErrorKind::Additive, TrendKind::Additive, SeasonKind::None);
        let f = fit(&y, 12, spec, &free).expect("fits");
        assert!(f.params.beta <= f.params.alpha);
    }

    #[test]
    fn short_seasonal_series_use_the_fourier_start() {
        // Two and a half seasons: the initial season comes from the regression on a line and one
        // Fourier pair; the forecast still follows the season.
        let truth: Vec<f64> = (0..42)
            .map(|t| 50.0 + 10.0 * (t as f64 * std::f64::consts::PI / 6.0).sin())
            .collect();
        let e = normals(11, 30);
        let y: Vec<f64> = truth[..30]
            .iter()
            .zip(&e)
            .map(|(v, e)| v + 0.3 * e)
            .collect();
        let fit = auto(&y, 12, &Options::default()).expect("a model");
        assert!(fit.spec.seasonal(), "{fit:?}");
        let f = fit.forecast(12).expect("finite");
        let err = mape(&f, &truth[30..]);
        assert!(err < 0.05, "{err} {f:?}");
    }

    #[test]
    fn selects_damped_trend_for_trend_and_level_for_noise() {
        let e = normals(3, 80);
        // A strong trend that flattens out: ETS(A,Ad,N) should win over ETS(A,N,N).
        let mut level = 100.0;
        let mut slope = 5.0;
        let trended: Vec<f64> = e
            .iter()
            .map(|e| {
                slope *= 0.97;
                level += slope;
                level + e - 300.0
            })
            .collect();
        let fit = auto(&trended, 1, &Options::default()).expect("a model");
        assert_eq!(fit.spec.trend, TrendKind::Damped, "{fit:?}");
        // Flat noise around a negative mean: ETS(A,N,N), forecast near the mean.
        let flat: Vec<f64> = e.iter().map(|e| e - 50.0).collect();
        let fit = auto(&flat, 1, &Options::default()).expect("a model");
        assert_eq!(fit.spec.code(), "ANN", "{fit:?}");
        let f = fit.forecast(5).expect("finite");
        assert!(f.iter().all(|v| (v + 50.0).abs() < 1.0), "{f:?}");
    }

    #[test]
    fn negative_data_fit_additive_models_only() {
        let e = normals(5, 60);
        let y: Vec<f64> = (0..60)
            .map(|t| -100.0 + 10.0 * ((t % 4) as f64 - 1.5) + e[t])
            .collect();
        let fits = fit_all(&y, 4, &Options::default());
        assert!(!fits.is_empty());
        assert!(
            fits.iter().all(|f| f.spec.error == ErrorKind::Additive
                && f.spec.season != SeasonKind::Multiplicative)
        );
        assert_eq!(fits[0].spec.season, SeasonKind::Additive, "{:?}", fits[0]);
        let f = forecast(&y, 4, 8);
        for (t, v) in f.iter().enumerate() {
            let truth = -100.0 + 10.0 * (((60 + t) % 4) as f64 - 1.5);
            assert!((v - truth).abs() < 2.0, "{t} {f:?}");
        }
    }

    #[test]
    fn finite_on_odd_series() {
        let mut cases: Vec<Vec<f64>> = vec![
            vec![],
            vec![5.0],
            vec![1.0, 2.0],
            vec![3.0; 40],
            vec![-3.0; 40],
            vec![0.0; 30],
            vec![
                0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 5.0,
            ],
            vec![1e12, -1e12, 1e12, -1e12, 0.0, 1e12, -1e12, 1e12],
            (0..30).map(|t| 1e300 * (1.0 + (t % 12) as f64)).collect(),
            (0..30).map(|t| 1e-300 * (1.0 + (t % 5) as f64)).collect(),
            (0..40)
                .map(|t| f64::MAX / 2.0 * if t % 2 == 0 { 1.0 } else { -1.0 })
                .collect(),
            (0..50).map(|t| (1.5f64).powi(t)).collect(),
        ];
        // Shorter than two seasons.
        cases.push((0..20).map(|t| 10.0 + (t % 12) as f64).collect());
        cases.push((0..13).map(|t| 10.0 + (t % 12) as f64).collect());
        for y in &cases {
            for m in [1, 4, 12, 52] {
                let f = forecast(y, m, 18);
                assert_eq!(f.len(), 18);
                assert!(f.iter().all(|v| v.is_finite()), "{m} {y:?} {f:?}");
            }
        }
        // A constant series is forecast as itself.
        let f = forecast(&[3.0; 40], 12, 6);
        assert!(f.iter().all(|v| (v - 3.0).abs() < 1e-6), "{f:?}");
        assert!(forecast(&[0.0; 30], 12, 3).iter().all(|v| v.abs() < 1e-9));
        // A huge-magnitude series keeps its scale.
        let big: Vec<f64> = (0..60).map(|t| 1e200 * (10.0 + (t % 12) as f64)).collect();
        let f = forecast(&big, 12, 12);
        for (i, v) in f.iter().enumerate() {
            let truth = 1e200 * (10.0 + ((60 + i) % 12) as f64);
            assert!((v / truth - 1.0).abs() < 0.05, "{i} {f:?}");
        }
    }
}
