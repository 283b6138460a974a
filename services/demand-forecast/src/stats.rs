//! Statistical forecasting models in plain Rust: naive, seasonal naive, Naive2 (classical
//! decomposition with the 90% seasonality test of the M competitions), simple / Holt / damped
//! exponential smoothing with parameters and initial states fitted by Nelder-Mead, ETS selection
//! among them by AICc (all on the seasonally adjusted series), the standard Theta method
//! (theta = 2), Croston/SBA for intermittent demand, and as a member AutoETS, the full state-space
//! ETS family with multiplicative errors and seasons (see [`crate::ets`]). Every function returns
//! finite values for any finite input.

/// The members a combination is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Naive = 0,
    SeasonalNaive = 1,
    Naive2 = 2,
    Ses = 3,
    Holt = 4,
    Damped = 5,
    Theta = 6,
    Ets = 7,
    /// The global GRU (computed by the model, not here).
    Gru = 8,
    /// AutoETS: the state-space ETS family fitted on the raw series, chosen by AICc ([`crate::ets`]).
    AutoEts = 9,
    /// The dynamic optimised Theta model on the seasonally adjusted series ([`crate::theta`]).
    Dotm = 10,
    /// The Theta family (STM / OTM / DSTM / DOTM) member with the lowest in-sample error.
    AutoTheta = 11,
    /// The global boosted trees over lags and covariates (computed by the model, not here).
    Gbm = 12,
    /// The series' own regression of log1p(units) on its covariates (computed by the model).
    LocalReg = 13,
    /// The series' own regression on its covariates with ARIMA errors, orders by AICc
    /// ([`crate::arima`]; computed by the model).
    ArimaX = 14,
    /// The direct per-step global trees (the LightGBM anchor; computed by the model).
    DirectGbm = 15,
}

pub const METHODS: [Method; 16] = [
    Method::Naive,
    Method::SeasonalNaive,
    Method::Naive2,
    Method::Ses,
    Method::Holt,
    Method::Damped,
    Method::Theta,
    Method::Ets,
    Method::Gru,
    Method::AutoEts,
    Method::Dotm,
    Method::AutoTheta,
    Method::Gbm,
    Method::LocalReg,
    Method::ArimaX,
    Method::DirectGbm,
];

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Naive => "naive",
            Method::SeasonalNaive => "seasonal_naive",
            Method::Naive2 => "naive2",
            Method::Ses => "ses",
            Method::Holt => "holt",
            Method::Damped => "damped",
            Method::Theta => "theta",
            Method::Ets => "ets",
            Method::Gru => "global_gru",
            Method::AutoEts => "auto_ets",
            Method::Dotm => "dotm",
            Method::AutoTheta => "auto_theta",
            Method::Gbm => "global_gbm",
            Method::LocalReg => "local_regression",
            Method::ArimaX => "arima",
            Method::DirectGbm => "direct_gbm",
        }
    }
}

/// A combination: a bit set over [`METHODS`], forecasts averaged with equal weights.
pub fn combo_name(mask: u32) -> String {
    let names: Vec<&str> = METHODS
        .iter()
        .filter(|m| mask & (1 << (**m as u32)) != 0)
        .map(|m| m.name())
        .collect();
    names.join("+")
}

pub(crate) fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        0.0
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    }
}

/// Autocorrelation at lag `k`.
fn acf(y: &[f64], k: usize) -> f64 {
    let n = y.len();
    let m = mean(y);
    let denom: f64 = y.iter().map(|v| (v - m).powi(2)).sum();
    if denom <= 0.0 || k >= n {
        return 0.0;
    }
    let num: f64 = (k..n).map(|t| (y[t] - m) * (y[t - k] - m)).sum();
    num / denom
}

/// The seasonality test of the M competitions: the autocorrelation at lag `m` is significant at
/// 90% (two-sided), with Bartlett's variance; needs at least `3 m` observations.
pub fn is_seasonal(y: &[f64], m: usize) -> bool {
    let n = y.len();
    if m <= 1 || n < 3 * m {
        return false;
    }
    let s: f64 = (1..m).map(|k| acf(y, k).powi(2)).sum();
    let limit = 1.645 * ((1.0 + 2.0 * s) / n as f64).sqrt();
    acf(y, m).abs() > limit
}

/// Seasonal indices from a classical decomposition (multiplicative when the series is positive,
/// additive otherwise).
/// Seasonal figure of a classical decomposition of `y` (centred moving average), normalised to
/// mean 0 (additive) or 1 (multiplicative); `figure[t % m]` applies at time `t`.
pub(crate) fn classical_figure(y: &[f64], m: usize, mult: bool) -> Option<Vec<f64>> {
    let n = y.len();
    let half = m / 2;
    let (mut sums, mut counts) = (vec![0.0; m], vec![0usize; m]);
    for t in half..n.saturating_sub(half) {
        let trend = if m.is_multiple_of(2) {
            if t + half >= n {
                continue;
            }
            let inner: f64 = y[t + 1 - half..t + half].iter().sum();
            (0.5 * y[t - half] + inner + 0.5 * y[t + half]) / m as f64
        } else {
            y[t - half..=t + half].iter().sum::<f64>() / m as f64
        };
        let r = if mult {
            if trend.is_nan() || trend <= 0.0 {
                return None;
            }
            y[t] / trend
        } else {
            y[t] - trend
        };
        sums[t % m] += r;
        counts[t % m] += 1;
    }
    if counts.contains(&0) {
        return None;
    }
    let mut fig: Vec<f64> = sums
        .iter()
        .zip(&counts)
        .map(|(s, c)| s / *c as f64)
        .collect();
    let avg = mean(&fig);
    for v in &mut fig {
        if mult {
            *v /= avg;
        } else {
            *v -= avg;
        }
    }
    fig.iter().all(|v| v.is_finite()).then_some(fig)
}

#[derive(Debug, Clone)]
pub struct Season {
    idx: Vec<f64>,
    mult: bool,
}

impl Season {
    /// Indices when the series passes the seasonality test, else `None`.
    pub fn detect(y: &[f64], m: usize) -> Option<Season> {
        if !is_seasonal(y, m) {
            return None;
        }
        Self::classical(y, m)
    }

    fn classical(y: &[f64], m: usize) -> Option<Season> {
        let n = y.len();
        if m <= 1 || n < 2 * m + 1 {
            return None;
        }
        let mult = y.iter().all(|v| *v > 0.0);
        let idx = classical_figure(y, m, mult)?;
        if idx.iter().any(|v| !v.is_finite() || (mult && *v <= 0.0)) {
            return None;
        }
        Some(Season { idx, mult })
    }

    pub fn adjust(&self, y: &[f64]) -> Vec<f64> {
        let m = self.idx.len();
        y.iter()
            .enumerate()
            .map(|(t, v)| {
                if self.mult {
                    v / self.idx[t % m]
                } else {
                    v - self.idx[t % m]
                }
            })
            .collect()
    }

    /// Puts the season back on the error standard deviations of forecasts of positions `n, n +
    /// 1, ...` (a multiplicative season scales them; an additive one leaves them).
    pub fn restore_spread(&self, n: usize, sd: &mut [f64]) {
        if self.mult {
            let m = self.idx.len();
            for (h, v) in sd.iter_mut().enumerate() {
                *v *= self.idx[(n + h) % m];
            }
        }
    }

    /// Puts the season back on forecasts of positions `n, n + 1, ...`.
    pub fn restore(&self, n: usize, f: &mut [f64]) {
        let m = self.idx.len();
        for (h, v) in f.iter_mut().enumerate() {
            let s = self.idx[(n + h) % m];
            if self.mult {
                *v *= s;
            } else {
                *v += s;
            }
        }
    }
}

/// Nelder-Mead minimisation; `f` returns `f64::INFINITY` outside the feasible region.
pub fn nelder_mead(f: impl Fn(&[f64]) -> f64, x0: &[f64], step: &[f64], iters: usize) -> Vec<f64> {
    let d = x0.len();
    let mut pts: Vec<Vec<f64>> = vec![x0.to_vec()];
    for i in 0..d {
        let mut p = x0.to_vec();
        p[i] += step[i];
        pts.push(p);
    }
    let mut vals: Vec<f64> = pts.iter().map(|p| f(p)).collect();
    for _ in 0..iters {
        let mut order: Vec<usize> = (0..=d).collect();
        order.sort_by(|a, b| vals[*a].total_cmp(&vals[*b]));
        pts = order.iter().map(|i| pts[*i].clone()).collect();
        vals = order.iter().map(|i| vals[*i]).collect();
        if (vals[d] - vals[0]).abs() <= 1e-10 * (1.0 + vals[0].abs()) {
            break;
        }
        let centroid: Vec<f64> = (0..d)
            .map(|j| pts[..d].iter().map(|p| p[j]).sum::<f64>() / d as f64)
            .collect();
        let along = |t: f64| -> Vec<f64> {
            (0..d)
                .map(|j| centroid[j] + t * (pts[d][j] - centroid[j]))
                .collect()
        };
        let xr = along(-1.0);
        let fr = f(&xr);
        if fr < vals[0] {
            let xe = along(-2.0);
            let fe = f(&xe);
            if fe < fr {
                pts[d] = xe;
                vals[d] = fe;
            } else {
                pts[d] = xr;
                vals[d] = fr;
            }
        } else if fr < vals[d - 1] {
            pts[d] = xr;
            vals[d] = fr;
        } else {
            let xc = if fr < vals[d] {
                along(-0.5)
            } else {
                along(0.5)
            };
            let fc = f(&xc);
            if fc < vals[d].min(fr) {
                pts[d] = xc;
                vals[d] = fc;
            } else {
                let (head, tail) = pts.split_at_mut(1);
                for (p, v) in tail.iter_mut().zip(vals.iter_mut().skip(1)) {
                    for (x, b) in p.iter_mut().zip(&head[0]) {
                        *x = b + 0.5 * (*x - b);
                    }
                    *v = f(p);
                }
            }
        }
    }
    let best = (0..=d)
        .min_by(|a, b| vals[*a].total_cmp(&vals[*b]))
        .unwrap_or(0);
    pts.swap(0, best);
    pts.swap_remove(0)
}

/// Additive-error exponential smoothing without season: level, optional (damped) trend.
#[derive(Debug, Clone, Copy)]
struct Es {
    alpha: f64,
    beta: f64,
    phi: f64,
    l0: f64,
    b0: f64,
    trend: bool,
}

impl Es {
    /// Sum of squared one-step errors and the final (level, trend).
    fn run(&self, y: &[f64]) -> (f64, f64, f64) {
        let (mut l, mut b) = (self.l0, if self.trend { self.b0 } else { 0.0 });
        let mut sse = 0.0;
        for v in y {
            let f = l + self.phi * b;
            let e = v - f;
            sse += e * e;
            let nl = f + self.alpha * e;
            if self.trend {
                b = self.phi * b + self.alpha * self.beta * e;
            }
            l = nl;
        }
        (sse, l, b)
    }

    fn forecast(&self, y: &[f64], h: usize) -> Vec<f64> {
        let (_, l, b) = self.run(y);
        let mut out = Vec::with_capacity(h);
        let mut damp = 0.0;
        let mut p = 1.0;
        for _ in 0..h {
            p *= self.phi;
            damp += p;
            out.push(if self.trend { l + damp * b } else { l });
        }
        out
    }
}

/// A fitted smoothing model with its AICc.
#[derive(Debug, Clone, Copy)]
struct FitEs {
    es: Es,
    aicc: f64,
    /// Sum of squared one-step errors and the number of fitted values (parameters and initial
    /// states).
    sse: f64,
    k: usize,
}

impl FitEs {
    /// Standard deviation of the `j`-step-ahead forecast error, `j = 1..=h`, of the additive-error
    /// state-space model with these parameters (Hyndman et al. 2008, class 1):
    /// `sigma^2 (1 + sum_{i<j} c_i^2)` with `c_i = alpha (1 + beta phi_i)`, `phi_i = phi + ... +
    /// phi^i` (Holt: `phi = 1`; SES: `beta = 0`); `sigma^2` is the one-step error variance with
    /// the fitted values' degrees of freedom taken off.
    fn spread(&self, n: usize, h: usize) -> Vec<f64> {
        let sigma2 = self.sse / n.saturating_sub(self.k).max(1) as f64;
        let es = &self.es;
        let mut out = Vec::with_capacity(h);
        let (mut acc, mut phi_i, mut p) = (1.0, 0.0, 1.0);
        for _ in 0..h {
            out.push((sigma2 * acc).sqrt());
            p *= es.phi;
            phi_i += p;
            let c = es.alpha * (1.0 + if es.trend { es.beta * phi_i } else { 0.0 });
            acc += c * c;
        }
        out
    }
}

fn aicc(sse: f64, n: usize, k: usize) -> f64 {
    let n_f = n as f64;
    let k_f = k as f64;
    let sig = (sse / n_f).max(1e-300);
    let base = n_f * sig.ln() + 2.0 * k_f;
    if n > k + 1 {
        base + 2.0 * k_f * (k_f + 1.0) / (n_f - k_f - 1.0)
    } else {
        f64::INFINITY
    }
}

/// Fits SES (`kind` 0), Holt (1) or damped Holt (2) by Nelder-Mead on the parameters and the
/// initial states.
fn fit_es(y: &[f64], kind: u8) -> FitEs {
    let n = y.len();
    let scale = y.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-9);
    let l0 = y[0];
    let b0 = if n > 1 { y[1] - y[0] } else { 0.0 };
    let trend = kind > 0;
    let make = |p: &[f64]| -> Option<Es> {
        let alpha = p[0];
        if !(1e-4..=0.9999).contains(&alpha) {
            return None;
        }
        let (beta, phi, l, b) = match kind {
            0 => (0.0, 1.0, p[1], 0.0),
            1 => (p[1], 1.0, p[2], p[3]),
            _ => (p[1], p[2], p[3], p[4]),
        };
        if trend && !(1e-4..=0.9999).contains(&beta) {
            return None;
        }
        if kind == 2 && !(0.8..=0.98).contains(&phi) {
            return None;
        }
        Some(Es {
            alpha,
            beta,
            phi,
            l0: l * scale,
            b0: b * scale,
            trend,
        })
    };
    let obj = |p: &[f64]| match make(p) {
        Some(es) => es.run(y).0,
        None => f64::INFINITY,
    };
    let (x0, step): (Vec<f64>, Vec<f64>) = match kind {
        0 => (vec![0.3, l0 / scale], vec![0.2, 0.1]),
        1 => (
            vec![0.3, 0.1, l0 / scale, b0 / scale],
            vec![0.2, 0.1, 0.1, 0.02],
        ),
        _ => (
            vec![0.3, 0.1, 0.9, l0 / scale, b0 / scale],
            vec![0.2, 0.1, 0.04, 0.1, 0.02],
        ),
    };
    let best = nelder_mead(obj, &x0, &step, 120 * x0.len());
    let es = make(&best).unwrap_or(Es {
        alpha: 0.3,
        beta: 0.1,
        phi: if kind == 2 { 0.9 } else { 1.0 },
        l0,
        b0,
        trend,
    });
    let sse = es.run(y).0;
    let k = match kind {
        0 => 2,
        1 => 4,
        _ => 5,
    };
    FitEs {
        es,
        aicc: aicc(sse, n, k),
        sse,
        k,
    }
}

/// SES with only alpha optimised (l0 = y0), as the Theta method uses it.
fn ses_alpha(y: &[f64]) -> (f64, f64) {
    let run = |a: f64| {
        let mut l = y[0];
        let mut sse = 0.0;
        for v in &y[1..] {
            let e = v - l;
            sse += e * e;
            l += a * e;
        }
        (sse, l)
    };
    // Golden-section search on alpha.
    let (mut lo, mut hi) = (0.001f64, 0.999f64);
    let g = 0.618_033_988_75;
    let mut c = hi - g * (hi - lo);
    let mut d = lo + g * (hi - lo);
    for _ in 0..40 {
        if run(c).0 < run(d).0 {
            hi = d;
        } else {
            lo = c;
        }
        c = hi - g * (hi - lo);
        d = lo + g * (hi - lo);
    }
    let a = 0.5 * (lo + hi);
    (a, run(a).1)
}

/// Croston's method with the SBA bias correction (alpha 0.1).
pub fn croston_sba(y: &[f64], h: usize) -> Vec<f64> {
    let alpha = 0.1;
    // Initial states: the mean demand size and the mean interval between demands.
    let nz: Vec<usize> = (0..y.len()).filter(|t| y[*t] > 0.0).collect();
    if nz.is_empty() {
        return vec![0.0; h];
    }
    let z0 = nz.iter().map(|t| y[*t]).sum::<f64>() / nz.len() as f64;
    let p0 = (nz[nz.len() - 1] + 1) as f64 / nz.len() as f64;
    let mut z = Some(z0);
    let mut p = Some(p0);
    let mut since = 1.0;
    for v in y {
        if *v > 0.0 {
            z = z.map(|z| z + alpha * (v - z));
            p = p.map(|p| p + alpha * (since - p));
            since = 1.0;
        } else {
            since += 1.0;
        }
    }
    let f = match (z, p) {
        (Some(z), Some(p)) if p > 0.0 => (1.0 - alpha / 2.0) * z / p,
        _ => 0.0,
    };
    vec![f; h]
}

/// Whether a series is intermittent (many zeros among non-negative values).
pub fn is_intermittent(y: &[f64]) -> bool {
    if y.len() < 4 || y.iter().any(|v| *v < 0.0) {
        return false;
    }
    let zeros = y.iter().filter(|v| **v == 0.0).count();
    zeros as f64 >= 0.3 * y.len() as f64
}

/// Standard normal quantile (Acklam's rational approximation).
pub fn normal_quantile(p: f64) -> f64 {
    let a = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    let b = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    let c = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    let d = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let pl = 0.02425;
    if p < pl {
        let q = (-2.0 * p.ln()).sqrt();
        (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5])
            / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0)
    } else if p <= 1.0 - pl {
        let q = p - 0.5;
        let r = q * q;
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q
            / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1.0)
    } else {
        -normal_quantile(1.0 - p)
    }
}

/// Forecasts of every method in [`METHODS`] for `h` steps (index = method as usize). The GRU's slot
/// holds a copy of Theta (its stand-in when the network gives no forecast); the model fills it.
pub fn all_forecasts(y: &[f64], m: usize, h: usize) -> Vec<Vec<f64>> {
    some_forecasts(y, m, h, u32::MAX)
}

/// [`all_forecasts`] where the costly members (AutoETS and the Theta family's fits) are fitted
/// only when `needed` (a bit set over [`METHODS`]) has them; otherwise their slots hold the
/// Theta forecast. Serving needs only the chosen combination's members.
pub fn some_forecasts(y: &[f64], m: usize, h: usize, needed: u32) -> Vec<Vec<f64>> {
    forecasts_and_spread(y, m, h, needed).0
}

/// [`some_forecasts`] and, beside them, the forecast error standard deviation per step of the
/// M4 "Comb" members (SES, Holt, damped trend: the mean of the three models' state-space
/// standard deviations, seasonality put back as for the forecasts); `None` for histories too
/// short to fit them (under 4 points).
pub fn forecasts_and_spread(
    y: &[f64],
    m: usize,
    h: usize,
    needed: u32,
) -> (Vec<Vec<f64>>, Option<Vec<f64>>) {
    let wants = |k: Method| needed & (1 << k as u32) != 0;
    let n = y.len();
    let last = y.last().copied().unwrap_or(0.0);
    let naive = vec![last; h];
    let snaive: Vec<f64> = if m > 1 && n >= m {
        (0..h).map(|i| y[n - m + i % m]).collect()
    } else {
        naive.clone()
    };
    if n < 4 {
        let mut out = vec![naive.clone(); METHODS.len()];
        out[Method::SeasonalNaive as usize] = snaive;
        // Short history: the mean is steadier than the last value.
        let avg = vec![mean(y); h];
        for k in [
            Method::Ses,
            Method::Theta,
            Method::Ets,
            Method::Damped,
            Method::Gru,
            Method::AutoEts,
            Method::Dotm,
            Method::AutoTheta,
            Method::Gbm,
            Method::LocalReg,
            Method::ArimaX,
            Method::DirectGbm,
        ] {
            out[k as usize] = avg.clone();
        }
        return (out, None);
    }
    let season = Season::detect(y, m);
    let adj = match &season {
        Some(s) => s.adjust(y),
        None => y.to_vec(),
    };
    let restore = |mut f: Vec<f64>| {
        if let Some(s) = &season {
            s.restore(n, &mut f);
        }
        f
    };
    let naive2 = restore(vec![adj[n - 1]; h]);
    let fits = [fit_es(&adj, 0), fit_es(&adj, 1), fit_es(&adj, 2)];
    let ses = restore(fits[0].es.forecast(&adj, h));
    let holt = restore(fits[1].es.forecast(&adj, h));
    let damped = restore(fits[2].es.forecast(&adj, h));
    let best = fits
        .iter()
        .min_by(|a, b| a.aicc.total_cmp(&b.aicc))
        .map(|f| f.es)
        .unwrap_or(fits[0].es);
    let ets = restore(best.forecast(&adj, h));
    let spread = {
        let each: Vec<Vec<f64>> = fits.iter().map(|f| f.spread(n, h)).collect();
        let mut sd: Vec<f64> = (0..h)
            .map(|i| each.iter().map(|s| s[i]).sum::<f64>() / each.len() as f64)
            .collect();
        if let Some(s) = &season {
            s.restore_spread(n, &mut sd);
        }
        sd.iter().all(|v| v.is_finite()).then_some(sd)
    };
    // Theta (theta = 2): SES plus half the slope of the linear trend.
    let (a, l) = ses_alpha(&adj);
    let tbar = (n as f64 - 1.0) / 2.0;
    let ybar = mean(&adj);
    let sxx: f64 = (0..n).map(|t| (t as f64 - tbar).powi(2)).sum();
    let sxy: f64 = (0..n).map(|t| (t as f64 - tbar) * (adj[t] - ybar)).sum();
    let b = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    let theta = restore(
        (1..=h)
            .map(|i| l + 0.5 * b * ((i as f64 - 1.0) + 1.0 / a - (1.0 - a).powi(n as i32) / a))
            .collect(),
    );
    let auto_ets = if wants(Method::AutoEts) {
        crate::ets::forecast(y, m, h)
    } else {
        theta.clone()
    };
    let theta_family = if wants(Method::AutoTheta) {
        crate::theta::auto(&adj)
    } else if wants(Method::Dotm) {
        crate::theta::fit(&adj, crate::theta::DOTM).map(|f| (f, f))
    } else {
        None
    };
    let (auto_theta, dotm) = match theta_family {
        Some((best, dotm)) => (
            restore(crate::theta::forecast(&adj, &best, h)),
            restore(crate::theta::forecast(&adj, &dotm, h)),
        ),
        None => (theta.clone(), theta.clone()),
    };
    let all = vec![
        naive,
        snaive,
        naive2,
        ses,
        holt,
        damped,
        theta.clone(),
        ets,
        theta.clone(),
        auto_ets,
        dotm,
        auto_theta,
        // The slots of the global boosted trees, the local regression, the regression with
        // ARIMA errors and the direct trees, filled by the model.
        theta.clone(),
        theta.clone(),
        theta.clone(),
        theta,
    ];
    (all, spread)
}

/// Equal-weight mean of the members in `mask`, made finite and non-negative when `nonneg`.
pub fn combine(all: &[Vec<f64>], mask: u32, nonneg: bool) -> Vec<f64> {
    let h = all.first().map_or(0, Vec::len);
    let members: Vec<&Vec<f64>> = all
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, f)| f)
        .collect();
    let fallback = &all[Method::Naive as usize];
    (0..h)
        .map(|i| {
            let vals: Vec<f64> = members
                .iter()
                .map(|f| f[i])
                .filter(|v| v.is_finite())
                .collect();
            let mut v = if vals.is_empty() {
                fallback[i]
            } else {
                mean(&vals)
            };
            if !v.is_finite() {
                v = 0.0;
            }
            if nonneg { v.max(0.0) } else { v }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seasonal_series(n: usize) -> Vec<f64> {
        (0..n)
            .map(|t| 100.0 + t as f64 + 20.0 * ((t % 12) as f64 * std::f64::consts::PI / 6.0).sin())
            .collect()
    }

    #[test]
    fn normal_quantiles() {
        assert!(normal_quantile(0.5).abs() < 1e-9);
        assert!((normal_quantile(0.9) - 1.281_551_565_5).abs() < 1e-6);
        assert!((normal_quantile(0.025) + 1.959_963_985).abs() < 1e-6);
        assert!((normal_quantile(0.001) + 3.090_232_306).abs() < 1e-6);
    }

    #[test]
    fn smoothing_spread_is_the_state_space_variance() {
        let es = |alpha, beta, phi, trend| Es {
            alpha,
            beta,
            phi,
            l0: 0.0,
            b0: 0.0,
            trend,
        };
        // One-step variance sse / (n - k) = 1.
        let damped = FitEs {
            es: es(0.5, 0.2, 0.9, true),
            aicc: 0.0,
            sse: 40.0,
            k: 5,
        };
        // c_j = alpha (1 + beta (phi + ... + phi^j)).
        let c = [
            0.5 * (1.0 + 0.2 * 0.9),
            0.5 * (1.0 + 0.2 * 1.71),
            0.5 * (1.0 + 0.2 * 2.439),
        ];
        let mut acc = 1.0;
        let mut want = vec![1.0];
        for cj in c {
            acc += cj * cj;
            want.push(f64::sqrt(acc));
        }
        let got = damped.spread(45, 4);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12, "{got:?} vs {want:?}");
        }
        // SES: sigma sqrt(1 + (j - 1) alpha^2).
        let ses = FitEs {
            es: es(0.3, 0.0, 1.0, false),
            aicc: 0.0,
            sse: 4.0 * 18.0,
            k: 2,
        };
        for (j, g) in ses.spread(20, 6).iter().enumerate() {
            assert!((g - 2.0 * (1.0 + j as f64 * 0.09).sqrt()).abs() < 1e-12);
        }
    }

    #[test]
    fn detects_monthly_season() {
        let y = seasonal_series(72);
        assert!(is_seasonal(&y, 12));
        let flat: Vec<f64> = (0..72).map(|t| 100.0 + (t % 2) as f64).collect();
        assert!(!is_seasonal(&flat, 12));
    }

    #[test]
    fn methods_follow_trend_and_season() {
        let y = seasonal_series(96);
        let truth: Vec<f64> = seasonal_series(114)[96..].to_vec();
        let all = all_forecasts(&y, 12, 18);
        for m in [
            Method::Theta,
            Method::Damped,
            Method::Ets,
            Method::Naive2,
            Method::AutoEts,
            Method::Dotm,
            Method::AutoTheta,
        ] {
            let f = &all[m as usize];
            let mape: f64 = f
                .iter()
                .zip(&truth)
                .map(|(a, b)| (a - b).abs() / b)
                .sum::<f64>()
                / 18.0;
            assert!(mape < 0.1, "{m:?} {mape} {f:?}");
        }
    }

    #[test]
    fn serving_fits_only_the_needed_members_and_they_match() {
        let y = seasonal_series(90);
        let all = all_forecasts(&y, 12, 18);
        for needed in [
            1 << Method::AutoEts as u32,
            1 << Method::Dotm as u32,
            1 << Method::AutoTheta as u32,
            (1 << Method::Damped as u32) | (1 << Method::Dotm as u32),
        ] {
            let some = some_forecasts(&y, 12, 18, needed);
            assert_eq!(some.len(), all.len());
            for m in METHODS {
                if needed & (1 << m as u32) != 0 {
                    assert_eq!(some[m as usize], all[m as usize], "{m:?}");
                }
            }
        }
    }

    #[test]
    fn never_nan() {
        for y in [
            vec![0.0; 10],
            vec![5.0],
            vec![1.0, 2.0],
            vec![0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            vec![1e12, -1e12, 1e12, -1e12, 0.0],
        ] {
            let all = all_forecasts(&y, 7, 5);
            assert_eq!(all.len(), METHODS.len());
            for f in &all {
                assert!(f.iter().all(|v| v.is_finite()), "{y:?} {f:?}");
            }
            assert!(croston_sba(&y, 3).iter().all(|v| v.is_finite()));
        }
    }

    #[test]
    fn croston_rate() {
        let y: Vec<f64> = (0..40)
            .map(|t| if t % 4 == 0 { 4.0 } else { 0.0 })
            .collect();
        let f = croston_sba(&y, 2);
        assert!((f[0] - 0.95).abs() < 0.1, "{f:?}");
    }
}
