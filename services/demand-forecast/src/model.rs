//! The trained forecaster: a combination of statistical models chosen on validation windows, a
//! global covariate model (price, promotion and other known-in-advance covariates, with
//! per-attribute effects) that removes covariate effects from the history and puts the known
//! future ones back, and empirical interval quantiles per horizon step calibrated on the
//! validation windows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::gbm::{GbmConfig, GlobalGbm};
use crate::gru::{GlobalGru, GruConfig};
use crate::metrics::{Pooled, mase, naive_scale, smape};
use crate::stats::{self, METHODS, Method};

/// Number of quantile levels kept per horizon step: 0.01, 0.02, ..., 0.99.
pub const GRID: usize = 99;

/// One series as the models see it.
#[derive(Debug, Clone, Default)]
pub struct SeriesIn {
    /// Oldest first; NaN = missing (at least one finite value).
    pub values: Vec<f64>,
    /// Season length (1 = none).
    pub season: usize,
    /// Covariates of the history, each as long as `values`.
    pub covariates: BTreeMap<String, Vec<f64>>,
    /// Static descriptors (e.g. store, brand).
    pub attributes: BTreeMap<String, String>,
    /// Static numeric descriptors (e.g. a store's demographics), read as numbers by the global
    /// boosted trees; finite values only.
    pub statics: BTreeMap<String, f64>,
}

/// A forecast: the point and one row of values per requested quantile level.
#[derive(Debug, Clone)]
pub struct Output {
    pub point: Vec<f64>,
    /// `quantiles[k][step]` for the k-th requested level.
    pub quantiles: Vec<Vec<f64>>,
    pub method: String,
}

/// Training settings.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub horizon: usize,
    /// Trailing validation windows of `horizon` periods per series (fewer where a series is
    /// too short) on which the combination is chosen and the intervals are calibrated. 2 since
    /// 2026-11-30: on Dominick's better than 1 at both origins before the test weeks (MASE,
    /// WAPE and coverage), on M3 about even (BENCHMARKS.md, "Two validation windows").
    pub windows: usize,
    /// Ridge penalty of the covariate model.
    pub ridge: f64,
    /// Half-width of the local window the covariate model is fitted within.
    pub window: usize,
    /// Largest number of members in a combination.
    pub max_members: u32,
    /// The members the search may combine (a bit set over [`METHODS`]; all by default).
    pub members: u32,
    /// Weight of relative MASE in the validation score that picks the combination (the rest is
    /// relative sMAPE, both against Naive2); 0.5 is the M4 OWA.
    pub mase_weight: f64,
    /// Also try a small grid of `ridge` x `window` x `lags` on the validation windows.
    pub grid: bool,
    /// Covariates of the previous period too (`name@lag1`).
    pub lags: bool,
    /// Train the global GRU as a member the combination may choose.
    pub gru: bool,
    pub gru_epochs: usize,
    /// Train the GRU on the series with the covariate effects removed, as it reads them when
    /// it forecasts (false: on the raw series, the behaviour before 2026-11-30, kept for the
    /// ablation in BENCHMARKS.md).
    pub gru_adjusted: bool,
    /// Train the global boosted-trees model ([`crate::gbm`]) as a member.
    pub gbm: bool,
    /// Offer the regression with ARIMA errors (`arima_regression`) as a member. Off by
    /// default: it adds about a sixth to Train on the Dominick's and demo data, where validation
    /// never picked it (BENCHMARKS.md).
    pub arima: bool,
    pub gbm_trees: usize,
    /// Most training examples of the boosted trees (origins are thinned evenly to fit).
    pub gbm_rows: usize,
    /// Leaves per tree of the boosted trees grown best-first; 0: level-wise to depth 6.
    pub gbm_leaves: usize,
    /// Fit the boosted trees to the absolute error (the conditional median of the
    /// level-relative log target) instead of the squared error.
    pub gbm_l1: bool,
    /// Promotion-history features for the boosted trees (periods since each 0/1 covariate was
    /// last on, the mean level while on and while off).
    pub gbm_promo: bool,
    /// Each covariate's value in the period before the target as a feature of the boosted
    /// trees.
    pub gbm_prev: bool,
    /// Also train the direct per-step trees (the LightGBM anchor) as the member
    /// `direct_gbm` ([`GlobalGbm::direct`]).
    pub gbm_direct: bool,
    /// The boosted trees split the static attributes (store, brand) as categories.
    pub gbm_categorical: bool,
    /// The boosted trees read the series' static numeric descriptors ([`SeriesIn::statics`]).
    pub gbm_statics: bool,
    /// Interval errors of non-negative series as log ratios (see [`Model::interval_log`]).
    /// Off by default since 2026-12-03: errors scaled by each series' naive MAE give bands
    /// that fit each series' noise, where one table of log ratios gives every series the same
    /// relative band (M3 MSIS 4.22 against 7.00, Dominick's 2.54 against 2.75; BENCHMARKS.md).
    pub interval_log: bool,
    /// Interval errors standardised by each series' own error spread (see [`Model::own_q`]).
    pub interval_own: bool,
    /// When the series carry known covariates (and not all are intermittent, which Croston
    /// answers): train the direct per-step trees
    /// ([`GlobalGbm::direct`]) and serve the blend of the chosen combination and
    /// their forecast ([`Model::direct_blend`]). Without covariates the trees would be a
    /// four-lag autoregression blind to the season, and nothing changes. Chosen on Dominick's
    /// pre-test origins by a rule fixed before the runs (BENCHMARKS.md, 2026-12-03); a blend
    /// gated on the validation windows instead picked it at the one origin where it lost.
    pub direct_blend: bool,
    /// With the blend: the direct trees' weight in periods without a promotion (no 0/1
    /// covariate on); promotion periods keep 1/2 ([`Model::direct_quiet`]). 0.4, chosen on
    /// Dominick's four pre-test origins by a rule fixed before the runs (BENCHMARKS.md, "The
    /// blend's weight by promotion state"; mean MASE / WAPE 0.5798 / 0.4039 against 1/2's
    /// 0.5801 / 0.4041, a small gain).
    pub direct_quiet: f64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            horizon: 18,
            windows: 2,
            ridge: 10.0,
            window: 4,
            max_members: 4,
            members: u32::MAX,
            mase_weight: 0.5,
            grid: true,
            lags: false,
            gru: true,
            gru_epochs: 8,
            gru_adjusted: true,
            gbm: true,
            arima: false,
            gbm_trees: 300,
            gbm_rows: 250_000,
            gbm_leaves: 0,
            gbm_l1: false,
            gbm_promo: false,
            gbm_prev: false,
            gbm_direct: false,
            gbm_categorical: false,
            gbm_statics: true,
            interval_log: false,
            interval_own: false,
            direct_blend: true,
            direct_quiet: 0.4,
        }
    }
}

/// Global linear model of log1p(units) on centred covariates, with one extra effect per
/// attribute value (e.g. a brand's own price elasticity).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CovModel {
    pub names: Vec<String>,
    /// Attribute (key, value) pairs with their own effects.
    pub attrs: Vec<(String, String)>,
    /// `coef[c * (1 + attrs.len()) + 0]` is the base effect of covariate c, `+ 1 + a` its extra
    /// effect for attribute pair a.
    pub coef: Vec<f64>,
}

/// The served model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Model {
    pub horizon: usize,
    /// Bit set over [`METHODS`].
    pub combo: u32,
    /// `err_q[step][g]`: quantile (g + 1) / 100 of the scaled validation errors at that step.
    pub err_q: Vec<Vec<f64>>,
    pub cov: Option<CovModel>,
    /// Models fitted on log1p(units) of non-negative series (chosen on validation).
    #[serde(default)]
    pub log: bool,
    /// (input, hidden, horizon) of the global GRU, when one was trained.
    #[serde(default)]
    pub gru_shape: Option<(usize, usize, usize)>,
    /// The global GRU (weights in the safetensors file).
    #[serde(skip)]
    pub gru: Option<Arc<GlobalGru>>,
    /// Season lengths of the training series, sorted. A series of another season is forecast by
    /// [`FALLBACK_COMBO`]: `combo` was chosen on series of other frequencies and never validated on
    /// such a series (a model trained on daily demo data would answer a monthly series with the
    /// daily winner). Empty in models saved before the field existed: every season counts as seen.
    #[serde(default)]
    pub seasons: Vec<usize>,
    /// When the training series had several season lengths: the combination chosen on the
    /// validation windows of each season's series alone (`combo` is the one chosen on all of
    /// them). Empty with a single season, and in models saved before the field existed.
    #[serde(default)]
    pub season_combos: BTreeMap<usize, u32>,
    /// With several season lengths: each season's own interval quantiles (as `err_q`, from its
    /// series' validation errors); `err_q` (all of them) serves the others.
    #[serde(default)]
    pub season_err_q: BTreeMap<usize, Vec<Vec<f64>>>,
    /// The global boosted-trees model, kept only when a served combination uses it.
    #[serde(default)]
    pub gbm: Option<GlobalGbm>,
    /// Interval quantiles of non-negative series are of log ratios, `ln(1 + actual) - ln(1 +
    /// forecast)`, applied as `(1 + forecast) e^q - 1` (an interval that scales with the
    /// forecast, e.g. in a promotion week); otherwise of errors scaled by the series' naive MAE
    /// and the covariate lift. Absent in models saved before the field existed (false).
    #[serde(default)]
    pub interval_log: bool,
    /// `own_q[step][g]`: quantile (g + 1) / 100 of the validation errors divided by each
    /// series' own error spread at that step (the state-space standard deviation of its
    /// smoothing fits, see [`stats::forecasts_and_spread`]), on the scale the members were fitted
    /// on. When set, a series' band is that table times its own spread, so a smooth series gets
    /// a narrow band and a noisy one a wide band, instead of one width for all (`err_q` then
    /// serves only histories too short for a spread). Empty unless trained with
    /// [`TrainOptions::interval_own`], and in models saved before the field existed.
    #[serde(default)]
    pub own_q: Vec<Vec<f64>>,
    /// With several season lengths: each season's own `own_q`.
    #[serde(default)]
    pub season_own_q: BTreeMap<usize, Vec<Vec<f64>>>,
    /// The point is the blend of the combination and the direct trees (weights:
    /// [`Model::direct_quiet`]; [`GlobalGbm::direct`], the global LightGBM anchor in
    /// the design chosen on Dominick's pre-test origins) where those answer (non-negative
    /// series of a season the trees were trained on); set when trained with [`TrainOptions::direct_blend`] on series
    /// with covariates. Absent in models saved before the field existed (false).
    #[serde(default)]
    pub direct_blend: bool,
    /// The direct trees' weight in the blend in a period where none of the trees' 0/1
    /// covariates (promotion flags) is on; in a promotion period it is [`DIRECT_PROMO`]. Absent in models
    /// saved before the field existed (1/2 everywhere).
    #[serde(default = "half")]
    pub direct_quiet: f64,
}

fn half() -> f64 {
    0.5
}

/// The combination served to a series whose season length the training series did not have: the
/// mean of SES, Holt and damped trend on the seasonally adjusted series, the M4 competition's
/// "Comb" benchmark (a robust default across frequencies that needs no validation).
pub const FALLBACK_COMBO: u32 =
    (1 << Method::Ses as u32) | (1 << Method::Holt as u32) | (1 << Method::Damped as u32);

/// The members the global trees ([`GlobalGbm`]) answer: its own and the direct trees'.
const GBM_BITS: u32 = (1 << Method::Gbm as u32) | (1 << Method::DirectGbm as u32);

/// The direct trees' weight in the blend in a promotion period (see [`Model::direct_quiet`]
/// for the others).
pub const DIRECT_PROMO: f64 = 0.5;

/// The blend of a combination's point and the direct trees' forecast, where `on` and the
/// trees answered (a non-finite value leaves the combination's): the trees weigh
/// [`DIRECT_PROMO`] in a promotion period (`promo[j]`) and `quiet` in the others.
fn blend(mut point: Vec<f64>, direct: &[f64], on: bool, promo: &[bool], quiet: f64) -> Vec<f64> {
    if on {
        for (j, (v, d)) in point.iter_mut().zip(direct).enumerate() {
            if d.is_finite() {
                let w = if promo.get(j).copied().unwrap_or(false) {
                    DIRECT_PROMO
                } else {
                    quiet
                };
                *v = (1.0 - w) * *v + w * d;
            }
        }
    }
    point
}

/// Per period of the `h` ahead: whether any of the trees' 0/1 covariates (promotion flags,
/// [`GlobalGbm::flags`]) is on, as the request gives it (absent: off).
fn promoted(
    gbm: Option<&GlobalGbm>,
    s: &SeriesIn,
    future: &BTreeMap<String, Vec<f64>>,
    h: usize,
) -> Vec<bool> {
    let mut on = vec![false; h];
    let Some(g) = gbm else { return on };
    for (name, _) in g.covariates.iter().zip(&g.flags).filter(|(_, f)| **f) {
        for (o, v) in on.iter_mut().zip(future_of(s, future, name, h)) {
            *o |= v > 0.5;
        }
    }
    on
}

/// The `method` reported for a series answered by [`FALLBACK_COMBO`].
pub const FALLBACK_NAME: &str = "comb_fallback";

fn transform(name: &str, v: f64) -> f64 {
    if name.contains("price") {
        v.max(1e-9).ln()
    } else {
        v
    }
}

/// Missing values filled: linearly between finite values, flat at the ends; 0 when none.
pub fn fill(values: &[f64]) -> Vec<f64> {
    let known: Vec<usize> = (0..values.len())
        .filter(|i| values[*i].is_finite())
        .collect();
    let Some(&first) = known.first() else {
        return vec![0.0; values.len()];
    };
    let mut out = values.to_vec();
    let mut prev = first;
    for v in out.iter_mut().take(first) {
        *v = values[first];
    }
    for &k in &known[1..] {
        for (t, slot) in out.iter_mut().enumerate().take(k).skip(prev + 1) {
            let w = (t - prev) as f64 / (k - prev) as f64;
            *slot = values[prev] * (1.0 - w) + values[k] * w;
        }
        prev = k;
    }
    let last = values[prev];
    for v in out.iter_mut().skip(prev + 1) {
        *v = last;
    }
    out
}

/// Suffix of a covariate's value one period earlier (e.g. the dip after a promotion).
const LAG: &str = "@lag1";

/// Raw history of a covariate or of a lagged one.
fn history_of(s: &SeriesIn, name: &str) -> Option<Vec<f64>> {
    match name.strip_suffix(LAG) {
        Some(base) => {
            let v = s.covariates.get(base)?;
            let first = v.first().copied().unwrap_or(f64::NAN);
            Some(
                std::iter::once(first)
                    .chain(v.iter().copied())
                    .take(v.len())
                    .collect(),
            )
        }
        None => s.covariates.get(name).cloned(),
    }
}

/// Transformed values of a covariate over `h` future periods: the given ones; when missing, the
/// last value for prices and 0 for flags; a lagged covariate starts with the last history value.
pub(crate) fn future_of(
    s: &SeriesIn,
    future: &BTreeMap<String, Vec<f64>>,
    name: &str,
    h: usize,
) -> Vec<f64> {
    if let Some(base) = name.strip_suffix(LAG) {
        let hist = history_of(s, base).map(|v| cov_history(base, &v).0);
        let last = hist.and_then(|x| x.last().copied()).unwrap_or(0.0);
        let f = future_of(s, future, base, h.saturating_sub(1));
        return std::iter::once(last).chain(f).take(h).collect();
    }
    let x = history_of(s, name).map(|v| cov_history(name, &v).0);
    let last = x.and_then(|x| x.last().copied()).unwrap_or(0.0);
    let given = future.get(name);
    (0..h)
        .map(|i| {
            let v = given
                .and_then(|g| g.get(i))
                .copied()
                .filter(|v| v.is_finite());
            match v {
                Some(v) => transform(name, v),
                None if name.contains("price") => last,
                None => transform(name, 0.0),
            }
        })
        .collect()
}

/// Transformed covariate of the history (filled) and its mean.
pub(crate) fn cov_history(name: &str, values: &[f64]) -> (Vec<f64>, f64) {
    let t: Vec<f64> = values.iter().map(|v| transform(name, *v)).collect();
    let t = fill(&t);
    let mean = if t.is_empty() {
        0.0
    } else {
        t.iter().sum::<f64>() / t.len() as f64
    };
    (t, mean)
}

impl CovModel {
    fn width(&self) -> usize {
        1 + self.attrs.len()
    }

    fn attr_hits(&self, s: &SeriesIn) -> Vec<usize> {
        self.attrs
            .iter()
            .enumerate()
            .filter(|(_, (k, v))| s.attributes.get(k) == Some(v))
            .map(|(i, _)| i)
            .collect()
    }

    /// Log effects of the covariates on the history and on `h` future periods. A covariate
    /// missing from `future` keeps its last value (prices) or is 0 (flags).
    pub fn effects(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
    ) -> (Vec<f64>, Vec<f64>) {
        let n = s.values.len();
        let mut hist = vec![0.0; n];
        let mut fut = vec![0.0; h];
        let hits = self.attr_hits(s);
        let w = self.width();
        for (c, name) in self.names.iter().enumerate() {
            let Some(values) = history_of(s, name) else {
                continue;
            };
            let (x, mean) = cov_history(name, &values);
            let mut beta = self.coef[c * w];
            for a in &hits {
                beta += self.coef[c * w + 1 + a];
            }
            if !beta.is_finite() {
                continue;
            }
            for t in 0..n.min(x.len()) {
                hist[t] += beta * (x[t] - mean);
            }
            for (slot, xv) in fut.iter_mut().zip(future_of(s, future, name, h)) {
                *slot += beta * (xv - mean);
            }
        }
        for v in hist.iter_mut().chain(fut.iter_mut()) {
            if !v.is_finite() {
                *v = 0.0;
            }
            *v = v.clamp(-5.0, 5.0);
        }
        (hist, fut)
    }

    /// Fits the global model on the first `cut(s)` periods of every series.
    fn fit(
        series: &[SeriesIn],
        cut: impl Fn(&SeriesIn) -> usize,
        names: &[String],
        opts: &TrainOptions,
    ) -> Option<CovModel> {
        if names.is_empty() {
            return None;
        }
        // Attribute values seen in at least 2 series get their own effects.
        let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
        for s in series {
            for (k, v) in &s.attributes {
                *counts.entry((k.clone(), v.clone())).or_default() += 1;
            }
        }
        let attrs: Vec<(String, String)> = counts
            .into_iter()
            .filter(|(_, c)| *c >= 2)
            .map(|(k, _)| k)
            .collect();
        let mut model = CovModel {
            names: names.to_vec(),
            attrs,
            coef: Vec::new(),
        };
        let w = model.width();
        let p = names.len() * w;
        let mut xtx = vec![0.0; p * p];
        let mut xty = vec![0.0; p];
        let k = opts.window.max(1);
        let mut rows = 0usize;
        for s in series {
            let n = cut(s).min(s.values.len());
            if n < 2 * k + 2 || s.values.iter().any(|v| *v < 0.0) {
                continue;
            }
            let y: Vec<f64> = fill(&s.values[..n]).iter().map(|v| v.ln_1p()).collect();
            let xs: Vec<Option<Vec<f64>>> = names
                .iter()
                .map(|nm| history_of(s, nm).map(|v| cov_history(nm, &v[..n]).0))
                .collect();
            let hits = model.attr_hits(s);
            let local = |v: &[f64], t: usize| -> f64 {
                let lo = t.saturating_sub(k);
                let hi = (t + k + 1).min(n);
                v[t] - v[lo..hi].iter().sum::<f64>() / (hi - lo) as f64
            };
            for t in 0..n {
                let target = local(&y, t);
                let mut feats: Vec<(usize, f64)> = Vec::new();
                for (c, x) in xs.iter().enumerate() {
                    let Some(x) = x else { continue };
                    let d = local(x, t);
                    if d == 0.0 {
                        continue;
                    }
                    feats.push((c * w, d));
                    for a in &hits {
                        feats.push((c * w + 1 + a, d));
                    }
                }
                for (i, vi) in &feats {
                    xty[*i] += vi * target;
                    for (j, vj) in &feats {
                        xtx[i * p + j] += vi * vj;
                    }
                }
                rows += 1;
            }
        }
        if rows == 0 {
            return None;
        }
        for i in 0..p {
            let base = i % w == 0;
            xtx[i * p + i] += if base { 1e-6 } else { opts.ridge };
        }
        model.coef = solve(xtx, xty, p)?;
        Some(model)
    }
}

/// Solves the symmetric positive definite system `a x = b` (Gaussian elimination with partial
/// pivoting).
pub fn solve(mut a: Vec<f64>, mut b: Vec<f64>, p: usize) -> Option<Vec<f64>> {
    for col in 0..p {
        let piv = (col..p).max_by(|x, y| a[x * p + col].abs().total_cmp(&a[y * p + col].abs()))?;
        if a[piv * p + col].abs() < 1e-12 {
            return None;
        }
        if piv != col {
            for j in 0..p {
                a.swap(col * p + j, piv * p + j);
            }
            b.swap(col, piv);
        }
        for r in col + 1..p {
            let f = a[r * p + col] / a[col * p + col];
            if f == 0.0 {
                continue;
            }
            for j in col..p {
                a[r * p + j] -= f * a[col * p + j];
            }
            b[r] -= f * b[col];
        }
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        let s: f64 = (i + 1..p).map(|j| a[i * p + j] * x[j]).sum();
        x[i] = (b[i] - s) / a[i * p + i];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// A series' covariate names and their transformed histories (as the covariate model's: log
/// prices; filled, `n` long, a short one extended with its last value).
fn own_covariates(s: &SeriesIn, n: usize) -> (Vec<&String>, Vec<Vec<f64>>) {
    let names: Vec<&String> = s.covariates.keys().collect();
    let xs = names
        .iter()
        .map(|nm| {
            let v = &s.covariates[*nm];
            let mut x = cov_history(nm, &v[..v.len().min(n)]).0;
            let last = x.last().copied().unwrap_or(0.0);
            x.resize(n, last);
            x
        })
        .collect();
    (names, xs)
}

/// The series' own least-squares regression of log1p(units) on its covariates (transformed as
/// the covariate model's: log prices; a small ridge on the slopes), forecast with the known
/// future covariates: a level and the series' own elasticities, no dynamics. `None` without
/// covariates or with fewer than 8 periods.
fn local_regression(
    s: &SeriesIn,
    future: &BTreeMap<String, Vec<f64>>,
    h: usize,
) -> Option<Vec<f64>> {
    let n = s.values.len();
    if s.covariates.is_empty() || n < 8 {
        return None;
    }
    let y: Vec<f64> = fill(&s.values).iter().map(|v| v.max(0.0).ln_1p()).collect();
    let (names, xs) = own_covariates(s, n);
    let p = 1 + names.len();
    let mut xtx = vec![0.0; p * p];
    let mut xty = vec![0.0; p];
    let mut row = vec![0.0; p];
    for t in 0..n {
        row[0] = 1.0;
        for (c, x) in xs.iter().enumerate() {
            row[1 + c] = x[t];
        }
        for i in 0..p {
            xty[i] += row[i] * y[t];
            for j in 0..p {
                xtx[i * p + j] += row[i] * row[j];
            }
        }
    }
    for i in 1..p {
        xtx[i * p + i] += 1e-3 * n as f64;
    }
    let beta = solve(xtx, xty, p)?;
    let futs: Vec<Vec<f64>> = names.iter().map(|nm| future_of(s, future, nm, h)).collect();
    Some(
        (0..h)
            .map(|i| {
                let z = beta[0]
                    + futs
                        .iter()
                        .enumerate()
                        .map(|(c, f)| beta[1 + c] * f[i])
                        .sum::<f64>();
                let v = z.min(700.0).exp_m1();
                if v.is_finite() { v.max(0.0) } else { 0.0 }
            })
            .collect(),
    )
}

/// The series' own regression of log1p(units) on its covariates (transformed as the covariate
/// model's) with ARIMA errors, orders chosen by AICc ([`crate::arima::auto`]), forecast with the
/// known future covariates. `None` without covariates, for a negative series, or when no order
/// can be fitted (fewer than 12 periods).
pub(crate) fn arima_regression(
    s: &SeriesIn,
    future: &BTreeMap<String, Vec<f64>>,
    h: usize,
) -> Option<Vec<f64>> {
    let n = s.values.len();
    if s.covariates.is_empty() || n < 12 {
        return None;
    }
    let y = fill(&s.values);
    if y.iter().any(|v| *v < 0.0) {
        return None;
    }
    let y: Vec<f64> = y.iter().map(|v| v.ln_1p()).collect();
    let (names, xs) = own_covariates(s, n);
    // A constant regressor (a flag never set) says nothing and would make the fit singular.
    let keep: Vec<usize> = (0..xs.len())
        .filter(|&c| xs[c].iter().any(|v| (v - xs[c][0]).abs() > 1e-12))
        .collect();
    let xs: Vec<Vec<f64>> = keep.iter().map(|&c| xs[c].clone()).collect();
    let fit = crate::arima::auto(&y, &xs, &crate::arima::AutoOptions::default())?;
    let futs: Vec<Vec<f64>> = keep
        .iter()
        .map(|&c| future_of(s, future, names[c], h))
        .collect();
    Some(
        fit.forecast(&futs, h)
            .into_iter()
            .map(|z| {
                let v = z.min(700.0).exp_m1();
                if v.is_finite() { v.max(0.0) } else { 0.0 }
            })
            .collect(),
    )
}

/// The member forecasts of one series (covariate effects removed, then put back).
struct Prepared {
    members: Vec<Vec<f64>>,
    croston: Option<Vec<f64>>,
    /// For an intermittent series of whole counts (the Croston-answered ones): the negative
    /// binomial size fitted to its history by moments (infinite: Poisson, when the history is
    /// not over-dispersed). Its intervals are that distribution's quantiles around the forecast
    /// mean: a table of log-ratio errors pooled over all series gives a slow seller bands such
    /// as 0.15-0.19 units, which no day's sales (0 or at least 1) fall in.
    count_size: Option<f64>,
    /// The error standard deviation per step of the smoothing models (SES, Holt, damped)
    /// fitted to this series (on the log scale when `log_fit`; `None` for histories under 4
    /// points). A series of a season length training never saw (answered by
    /// [`FALLBACK_COMBO`]) gets normal quantiles of it, not the validation errors of series of
    /// another frequency; with [`Model::own_q`], every series gets that table times it.
    spread: Option<Vec<f64>>,
    /// The statistical members were fitted to `ln(1 + y)` (less the covariate effects).
    log_fit: bool,
    /// Multiplier of the interval scale per step (the future covariate lift).
    lift: Vec<f64>,
    scale: f64,
    nonneg: bool,
    /// Per period: a promotion flag is on (see [`promoted`]; all off unless set).
    promo: Vec<bool>,
}

#[allow(clippy::too_many_arguments)]
fn prepare(
    cov: Option<&CovModel>,
    gru: Option<&GlobalGru>,
    gbm: Option<&GlobalGbm>,
    log: bool,
    s: &SeriesIn,
    future: &BTreeMap<String, Vec<f64>>,
    h: usize,
    needed: u32,
) -> Prepared {
    let y = fill(&s.values);
    let nonneg = y.iter().all(|v| *v >= 0.0);
    let (hist, fut) = match cov {
        Some(c) if nonneg => c.effects(s, future, h),
        _ => (vec![0.0; y.len()], vec![0.0; h]),
    };
    let log = log && nonneg;
    // The level series without the covariate effects (what the GRU reads), and the series the
    // statistical members fit: the same, or its log1p.
    let level = without_effects(&y, &hist);
    let adj: Vec<f64> = if log {
        y.iter().zip(&hist).map(|(v, e)| v.ln_1p() - e).collect()
    } else {
        level.clone()
    };
    let back = |f: Vec<f64>| -> Vec<f64> {
        f.iter()
            .zip(&fut)
            .map(|(v, e)| {
                let r = if log {
                    (v + e).min(700.0).exp_m1()
                } else if *e == 0.0 {
                    *v
                } else {
                    (1.0 + v) * e.exp() - 1.0
                };
                let r = if r.is_finite() { r } else { 0.0 };
                if nonneg { r.max(0.0) } else { r }
            })
            .collect()
    };
    let m = s.season.max(1);
    let intermittent = stats::is_intermittent(&y);
    let (members, own_spread) = stats::forecasts_and_spread(&adj, m, h, needed);
    let mut members: Vec<Vec<f64>> = members.into_iter().map(&back).collect();
    // The GRU's slot: its forecast, or without a network no member at all (NaN, which `combine`
    // skips).
    members[Method::Gru as usize] = vec![f64::NAN; h];
    if let Some(g) = gru {
        // The network reads the level series with the covariate effects removed (as it was
        // trained, see `gru_history`).
        let f = g
            .forecast(&level, h)
            .map(|f| {
                f.iter()
                    .zip(&fut)
                    .map(|(v, e)| {
                        let r = if *e == 0.0 {
                            *v
                        } else {
                            (1.0 + v) * e.exp() - 1.0
                        };
                        if nonneg { r.max(0.0) } else { r }
                    })
                    .collect()
            })
            .unwrap_or_else(|| members[Method::Theta as usize].clone());
        members[Method::Gru as usize] = f;
    }
    // The local regression only where it is wanted (`needed`: every member on validation
    // windows, the served combination's on a Forecast call).
    members[Method::LocalReg as usize] =
        if nonneg && needed & (1 << Method::LocalReg as u32) != 0 {
            local_regression(s, future, h)
        } else {
            None
        }
        .unwrap_or_else(|| vec![f64::NAN; h]);
    members[Method::ArimaX as usize] = if nonneg && needed & (1 << Method::ArimaX as u32) != 0 {
        arima_regression(s, future, h)
    } else {
        None
    }
    .unwrap_or_else(|| vec![f64::NAN; h]);
    // The boosted trees read the raw series and the covariates themselves.
    let wants = |m: Method| needed & (1 << m as u32) != 0;
    members[Method::Gbm as usize] = gbm
        .filter(|_| wants(Method::Gbm))
        .and_then(|g| g.forecast(s, future, h))
        .unwrap_or_else(|| vec![f64::NAN; h]);
    members[Method::DirectGbm as usize] = gbm
        .filter(|_| wants(Method::DirectGbm))
        .and_then(|g| g.forecast_direct(s, future, h))
        .unwrap_or_else(|| vec![f64::NAN; h]);
    // (Intermittent series are non-negative, so `level` is their adjusted series.)
    let count_size = (intermittent && y.iter().all(|v| v.fract() == 0.0)).then(|| {
        let n = y.len() as f64;
        let mean = y.iter().sum::<f64>() / n;
        let var = y.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
        if var > mean && mean > 0.0 {
            mean * mean / (var - mean)
        } else {
            f64::INFINITY
        }
    });
    let croston = intermittent.then(|| {
        stats::croston_sba(&level, h)
            .iter()
            .zip(&fut)
            .map(|(v, e)| ((1.0 + v) * e.exp() - 1.0).max(0.0))
            .collect()
    });
    let scale = naive_scale(&y, m);
    // A history the smoothing models fit exactly still gets a (thin) band.
    let floor = if log { 1e-3 } else { 1e-3 * scale };
    Prepared {
        members,
        croston,
        count_size,
        spread: own_spread.map(|sd| sd.into_iter().map(|v| v.max(floor)).collect()),
        log_fit: log,
        lift: fut.iter().map(|e| e.exp()).collect(),
        scale,
        nonneg,
        promo: Vec::new(),
    }
}

/// A level series with the covariate effects `hist` (log-scale, per period) taken out.
fn without_effects(y: &[f64], hist: &[f64]) -> Vec<f64> {
    y.iter()
        .zip(hist)
        .map(|(v, e)| {
            if *e == 0.0 {
                *v
            } else {
                ((1.0 + v) * (-e).exp() - 1.0).max(0.0)
            }
        })
        .collect()
}

/// What the GRU learns from and reads: the filled history with the covariate effects of `cov`
/// removed where the series is non-negative (as [`prepare`] does before forecasting).
fn gru_history(cov: Option<&CovModel>, s: &SeriesIn) -> Vec<f64> {
    let y = fill(&s.values);
    match cov {
        Some(c) if y.iter().all(|v| *v >= 0.0) => {
            without_effects(&y, &c.effects(s, &BTreeMap::new(), 0).0)
        }
        _ => y,
    }
}

/// Linear interpolation in a grid of levels 0.01..0.99.
fn grid_value(row: &[f64], level: f64) -> f64 {
    let pos = (level * 100.0 - 1.0).clamp(0.0, (GRID - 1) as f64);
    let i = pos.floor() as usize;
    let j = (i + 1).min(GRID - 1);
    let w = pos - i as f64;
    row[i] * (1.0 - w) + row[j] * w
}

/// The `level` quantile of a count with mean `mu` (> 0): negative binomial of size `size`
/// (variance mu + mu^2 / size), Poisson when `size` is infinite; the smallest k whose
/// cumulative probability reaches `level`. 0 for a mean of 0; `None` for a non-finite mean or
/// one so large that P(0) underflows (the caller keeps the error table then).
pub fn count_quantile(mu: f64, size: f64, level: f64) -> Option<f64> {
    if mu == 0.0 {
        return Some(0.0);
    }
    if !(mu.is_finite() && mu > 0.0) {
        return None;
    }
    // Negative binomial of size `size` (q = mu / (size + mu)) or Poisson: P(0), then
    // P(k + 1) = P(k) * (k + size) / (k + 1) * q, or P(k) * mu / (k + 1).
    let nb = size.is_finite() && size > 0.0;
    let q = if nb { mu / (size + mu) } else { 0.0 };
    let mut pk = if nb {
        (size * (1.0 - q).ln()).exp()
    } else {
        (-mu).exp()
    };
    if pk.is_nan() || pk <= 0.0 {
        return None;
    }
    // Far enough into the tail for any level below 1 (and a bound on the loop).
    let variance = if nb { mu + mu * mu / size } else { mu };
    let last = (mu + 40.0 * variance.sqrt() + 40.0).ceil();
    let (mut cdf, mut k) = (pk, 0.0);
    while cdf < level && k < last {
        pk *= if nb {
            (k + size) / (k + 1.0) * q
        } else {
            mu / (k + 1.0)
        };
        k += 1.0;
        cdf += pk;
    }
    Some(k)
}

impl Model {
    /// The combination that answers a series of season length `season`: the trained one, or
    /// [`FALLBACK_COMBO`] for a season no training series had.
    pub fn combo_for(&self, season: usize) -> u32 {
        if self.seen(season) {
            self.season_combos
                .get(&season)
                .copied()
                .unwrap_or(self.combo)
        } else {
            FALLBACK_COMBO
        }
    }

    /// Whether training had series of this season length (models saved before `seasons`
    /// existed: every season counts as seen).
    fn seen(&self, season: usize) -> bool {
        self.seasons.is_empty() || self.seasons.contains(&season)
    }

    fn point_of(&self, p: &Prepared, combo: u32, fallback: bool) -> (Vec<f64>, String) {
        match &p.croston {
            Some(c) => (c.clone(), "croston".to_string()),
            None => (
                blend(
                    stats::combine(&p.members, combo, p.nonneg),
                    &p.members[Method::DirectGbm as usize],
                    self.direct_blend && !fallback,
                    &p.promo,
                    self.direct_quiet,
                ),
                if fallback {
                    FALLBACK_NAME.to_string()
                } else if combo.count_ones() > 1 {
                    "ensemble".to_string()
                } else {
                    stats::combo_name(combo)
                },
            ),
        }
    }

    fn quantiles_of(
        &self,
        p: &Prepared,
        point: &[f64],
        levels: &[f64],
        season: usize,
    ) -> Vec<Vec<f64>> {
        // Set only for intermittent whole-unit series, which Croston answers.
        if let Some(size) = p.count_size {
            let counts: Option<Vec<Vec<f64>>> = levels
                .iter()
                .map(|&l| {
                    point
                        .iter()
                        .map(|&mu| count_quantile(mu, size, l))
                        .collect()
                })
                .collect();
            if let Some(counts) = counts {
                return counts;
            }
        }
        let err_q = self.season_err_q.get(&season).unwrap_or(&self.err_q);
        let own_q = self.season_own_q.get(&season).unwrap_or(&self.own_q);
        // A season training never saw: normal quantiles of the fallback's own error spread.
        // Otherwise the standardised validation errors times the spread, when trained so.
        let own = match &p.spread {
            Some(sd) if !self.seen(season) => Some((None, sd)),
            Some(sd) if !own_q.is_empty() => Some((Some(own_q), sd)),
            _ => None,
        };
        let mut out: Vec<Vec<f64>> = levels
            .iter()
            .map(|&l| {
                let z = stats::normal_quantile(l);
                point
                    .iter()
                    .enumerate()
                    .map(|(i, &f)| {
                        // Offset from the point: a log ratio, or in the series' units.
                        let (offset, log) = match own {
                            // On the scale the members were fitted on.
                            Some((table, sd)) => {
                                let q = table.map_or(z, |t| {
                                    grid_value(&t[i.min(t.len().saturating_sub(1))], l)
                                });
                                if p.log_fit {
                                    (q * sd[i], true)
                                } else {
                                    (q * sd[i] * p.lift[i], false)
                                }
                            }
                            // The validation errors' quantiles.
                            None => {
                                let row = &err_q[i.min(err_q.len().saturating_sub(1))];
                                let q = grid_value(row, l);
                                if self.interval_log && p.nonneg {
                                    (q, true)
                                } else {
                                    (q * p.scale * p.lift[i], false)
                                }
                            }
                        };
                        let v = if log {
                            (1.0 + f.max(0.0)) * offset.min(700.0).exp() - 1.0
                        } else {
                            f + offset
                        };
                        let v = if v.is_finite() { v } else { f };
                        if p.nonneg { v.max(0.0) } else { v }
                    })
                    .collect()
            })
            .collect();
        // Non-decreasing across levels.
        for k in 1..out.len() {
            let (done, rest) = out.split_at_mut(k);
            for (v, prev) in rest[0].iter_mut().zip(&done[k - 1]) {
                *v = v.max(*prev);
            }
        }
        out
    }

    /// Every member's point forecast of `h` steps, indexed by [`Method`] (NaN where a member
    /// has no forecast, e.g. the boosted trees when no served combination kept them): for
    /// diagnostics of the combination (`forecast-bench`'s `FORECAST_DUMP`), not for serving.
    pub fn member_forecasts(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
    ) -> Vec<Vec<f64>> {
        let p = prepare(
            self.cov.as_ref(),
            self.gru.as_deref(),
            self.gbm.as_ref(),
            self.log,
            s,
            future,
            h,
            !(1 << Method::ArimaX as u32),
        );
        p.members
    }

    /// Forecast of `h` steps with the quantile `levels` (sorted, in (0, 1)).
    pub fn forecast(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
        levels: &[f64],
    ) -> Output {
        let combo = self.combo_for(s.season);
        // The GRU runs only when the combination uses it.
        let gru = self
            .gru
            .as_deref()
            .filter(|_| combo & (1 << Method::Gru as u32) != 0);
        let direct = if self.direct_blend && self.seen(s.season) {
            1 << Method::DirectGbm as u32
        } else {
            0
        };
        let gbm = self
            .gbm
            .as_ref()
            .filter(|_| (combo | direct) & GBM_BITS != 0);
        let mut p = prepare(
            self.cov.as_ref(),
            gru,
            gbm,
            self.log,
            s,
            future,
            h,
            combo | direct,
        );
        if direct != 0 {
            p.promo = promoted(gbm, s, future, h);
        }
        let (point, method) = self.point_of(&p, combo, !self.seen(s.season));
        let quantiles = self.quantiles_of(&p, &point, levels, s.season);
        Output {
            point,
            quantiles,
            method,
        }
    }
}

/// Result of training: the model and its validation metrics.
pub struct Trained {
    pub model: Model,
    pub validation: BTreeMap<String, f64>,
    pub examples: usize,
    /// Covariate-model settings chosen on the validation windows.
    pub ridge: f64,
    pub window: usize,
    pub lags: bool,
    /// Weights of the global GRU, to save with the model.
    pub gru_tensors: std::collections::HashMap<String, candle_core::Tensor>,
}

/// One validation window of one series.
struct ValWindow {
    prep: Prepared,
    actual: Vec<f64>,
    season: usize,
}

fn slice_series(s: &SeriesIn, n: usize) -> SeriesIn {
    SeriesIn {
        values: s.values[..n].to_vec(),
        season: s.season,
        covariates: s
            .covariates
            .iter()
            .map(|(k, v)| (k.clone(), v[..n.min(v.len())].to_vec()))
            .collect(),
        attributes: s.attributes.clone(),
        statics: s.statics.clone(),
    }
}

/// Trains on `series`: fits the covariate model on the part before the validation windows,
/// chooses the combination and calibrates the intervals on the windows, then refits the
/// covariate model on everything.
pub fn train(series: &[SeriesIn], opts: &TrainOptions) -> Trained {
    let mut gru_tensors = std::collections::HashMap::new();
    let h = opts.horizon.max(1);
    let windows = opts.windows.max(1);
    // Covariates every series carries.
    let mut names: Option<BTreeSet<String>> = None;
    for s in series {
        let here: BTreeSet<String> = s.covariates.keys().cloned().collect();
        names = Some(match names {
            None => here,
            Some(n) => n.intersection(&here).cloned().collect(),
        });
    }
    let names: Vec<String> = names.unwrap_or_default().into_iter().collect();
    let held = h * windows;
    // Covariate-model settings tried on the validation windows (the given one alone when the
    // series carry no covariates or the grid is off).
    let mut settings: Vec<(f64, usize, bool)> = vec![(opts.ridge, opts.window, opts.lags)];
    if opts.grid && !names.is_empty() {
        for ridge in [1.0, 10.0, 100.0] {
            for window in [4, 8] {
                // Lagged covariates are tried only when asked for (they double the grid).
                let lag_options: &[bool] = if opts.lags { &[false, true] } else { &[false] };
                for &lags in lag_options {
                    if (ridge, window, lags) != (opts.ridge, opts.window, opts.lags) {
                        settings.push((ridge, window, lags));
                    }
                }
            }
        }
    }
    let with_lags = |lags: bool| -> Vec<String> {
        let mut n = names.clone();
        if lags {
            n.extend(names.iter().map(|x| format!("{x}{LAG}")));
        }
        n
    };
    let covs: Vec<Option<CovModel>> = settings
        .iter()
        .map(|(ridge, window, lags)| {
            let o = TrainOptions {
                ridge: *ridge,
                window: *window,
                ..opts.clone()
            };
            CovModel::fit(
                series,
                |s| s.values.len().saturating_sub(held),
                &with_lags(*lags),
                &o,
            )
        })
        .collect();
    // The global GRU, trained on the part before the validation windows.
    let gru: Option<Arc<GlobalGru>> = if opts.gru {
        let season = series.first().map_or(1, |s| s.season);
        let cfg = GruConfig {
            input: (2 * season).clamp(12, 36),
            hidden: 32,
            horizon: h,
            epochs: opts.gru_epochs,
            windows_per_series: 8,
            seed: 42,
        };
        // The training parts with the covariate effects removed, as the network reads series
        // when it forecasts (by the covariate model of the default setting, fitted on the
        // same parts).
        let cov0 = covs
            .first()
            .and_then(Option::as_ref)
            .filter(|_| opts.gru_adjusted);
        let prefixes: Vec<Vec<f64>> = series
            .iter()
            .map(|s| gru_history(cov0, &slice_series(s, s.values.len().saturating_sub(held))))
            .collect();
        match GlobalGru::train(&prefixes, &cfg) {
            Ok((g, vm)) => {
                gru_tensors = GlobalGru::tensors(&vm);
                Some(Arc::new(g))
            }
            Err(e) => {
                tracing::warn!(error = %e, "GRU training failed; the combination goes without it");
                None
            }
        }
    } else {
        None
    };
    // The global boosted trees, trained on the part before the validation windows (refitted on
    // everything below when a chosen combination uses them).
    let mut gbm_config = GbmConfig::new(h, opts.gbm_trees, opts.gbm_rows, opts.gbm_leaves);
    gbm_config.absolute = opts.gbm_l1;
    gbm_config.promo_history = opts.gbm_promo;
    gbm_config.prev = opts.gbm_prev;
    // (Croston answers intermittent series whatever the blend, so a set of only those skips it.)
    let blend_direct = opts.direct_blend
        && !names.is_empty()
        && series
            .iter()
            .any(|s| !stats::is_intermittent(&fill(&s.values)));
    gbm_config.direct = opts.gbm_direct || blend_direct;
    gbm_config.categorical = opts.gbm_categorical;
    gbm_config.statics = opts.gbm_statics;
    let gbm: Option<GlobalGbm> = if opts.gbm {
        GlobalGbm::train(
            series,
            |s| s.values.len().saturating_sub(held),
            &names,
            &gbm_config,
        )
    } else {
        None
    };
    // The history and known covariates of validation window `w` of a series (None when the
    // series is too short for it).
    let window_of =
        |s: &SeriesIn, w: usize| -> Option<(usize, SeriesIn, BTreeMap<String, Vec<f64>>)> {
            let n = s.values.len();
            let origin = n as isize - (h * (windows - w)) as isize;
            if origin < 3 {
                return None;
            }
            let origin = origin as usize;
            let future: BTreeMap<String, Vec<f64>> = s
                .covariates
                .iter()
                .map(|(k, v)| {
                    let a = origin.min(v.len());
                    let b = (origin + h).min(v.len());
                    (k.clone(), v[a..b].to_vec())
                })
                .collect();
            Some((origin, slice_series(s, origin), future))
        };
    // Fitting the members (AutoETS above all) dominates Train: the series are split over the
    // cores, the windows kept in series order so the choice does not depend on the core count.
    let threads = std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
        .min(series.len().max(1));
    let chunk = series.len().div_ceil(threads.max(1)).max(1);
    // `f(offset, part)` over contiguous parts of the series on every core, results in order.
    fn over_cores<T: Send>(
        series: &[SeriesIn],
        chunk: usize,
        f: impl Fn(usize, &[SeriesIn]) -> Vec<T> + Sync,
    ) -> Vec<T> {
        if chunk >= series.len() {
            return f(0, series);
        }
        std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = series
                .chunks(chunk)
                .enumerate()
                .map(|(i, part)| scope.spawn(move || f(i * chunk, part)))
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }
    // The regression with ARIMA errors reads neither the covariate model nor the scale: it is
    // fitted once per series and window (the costliest member), and only when it may be chosen.
    let arima_bit = 1u32 << Method::ArimaX as u32;
    let arima_cache: Vec<Vec<Option<Vec<f64>>>> = if opts.arima && opts.members & arima_bit != 0 {
        over_cores(series, chunk, |_, part| {
            part.iter()
                .map(|s| {
                    (0..windows)
                        .map(|w| {
                            window_of(s, w).and_then(|(_, prefix, future)| {
                                arima_regression(&prefix, &future, h)
                            })
                        })
                        .collect()
                })
                .collect()
        })
    } else {
        Vec::new()
    };
    // The boosted trees read neither the covariate model nor the scale either: their forecasts
    // (and the direct trees', with the periods the blend counts as promoted) of every series
    // and window, once for all candidates.
    type TreeForecasts = ([Vec<f64>; 2], Vec<bool>);
    let gbm_cache: Vec<Vec<Option<TreeForecasts>>> = match gbm.as_ref() {
        Some(g) => over_cores(series, chunk, |_, part| {
            part.iter()
                .map(|s| {
                    (0..windows)
                        .map(|w| {
                            window_of(s, w).map(|(_, prefix, future)| {
                                let nan = || vec![f64::NAN; h];
                                (
                                    [
                                        g.forecast(&prefix, &future, h).unwrap_or_else(nan),
                                        g.forecast_direct(&prefix, &future, h).unwrap_or_else(nan),
                                    ],
                                    promoted(Some(g), &prefix, &future, h),
                                )
                            })
                        })
                        .collect()
                })
                .collect()
        }),
        None => Vec::new(),
    };
    // The validation windows of a slice of the series starting at `offset` (every member model
    // fitted on each).
    let windows_of = |offset: usize,
                      part: &[SeriesIn],
                      cov_val: Option<&CovModel>,
                      log: bool|
     -> Vec<ValWindow> {
        let mut vals: Vec<ValWindow> = Vec::new();
        for (i, s) in part.iter().enumerate() {
            for w in 0..windows {
                let Some((origin, prefix, future)) = window_of(s, w) else {
                    continue;
                };
                let actual = fill(&s.values)[origin..origin + h].to_vec();
                let mut prep = prepare(
                    cov_val,
                    gru.as_deref(),
                    None,
                    log,
                    &prefix,
                    &future,
                    h,
                    !arima_bit,
                );
                if let Some(Some(f)) = arima_cache.get(offset + i).and_then(|c| c.get(w)) {
                    prep.members[Method::ArimaX as usize] = f.clone();
                }
                if let Some(Some(([f, d], promo))) =
                    gbm_cache.get(offset + i).and_then(|c| c.get(w))
                {
                    prep.members[Method::Gbm as usize] = f.clone();
                    prep.members[Method::DirectGbm as usize] = d.clone();
                    prep.promo = promo.clone();
                }
                vals.push(ValWindow {
                    prep,
                    actual,
                    season: s.season,
                });
            }
        }
        vals
    };
    let windows_for = |cov_val: Option<&CovModel>, log: bool| -> Vec<ValWindow> {
        over_cores(series, chunk, |offset, part| {
            windows_of(offset, part, cov_val, log)
        })
    };
    // Choose the combination: relative sMAPE + relative MASE against Naive2 (the M4 OWA).
    fn score_of<'a>(vals: impl Iterator<Item = &'a ValWindow>, mask: u32) -> (f64, f64) {
        let (mut s_sum, mut m_sum, mut c) = (0.0, 0.0, 0usize);
        for v in vals.filter(|v| v.prep.croston.is_none()) {
            let f = stats::combine(&v.prep.members, mask, v.prep.nonneg);
            s_sum += smape(&v.actual, &f);
            m_sum += mase(&v.actual, &f, v.prep.scale);
            c += 1;
        }
        let c = c.max(1) as f64;
        (s_sum / c, m_sum / c)
    }
    let any_positive = series
        .iter()
        .any(|s| s.values.iter().all(|v| !v.is_finite() || *v >= 0.0));
    let mut candidates: Vec<(usize, bool, Vec<ValWindow>)> = Vec::new();
    for (ci, cov) in covs.iter().enumerate() {
        candidates.push((ci, false, windows_for(cov.as_ref(), false)));
        if any_positive {
            candidates.push((ci, true, windows_for(cov.as_ref(), true)));
        }
    }
    let (ref_s, ref_m) = score_of(candidates[0].2.iter(), 1 << Method::Naive2 as u32);
    let w = opts.mase_weight.clamp(0.0, 1.0);
    let allowed: Vec<u32> = (1u32..(1 << METHODS.len()))
        .filter(|&mask| {
            let needs_gru = mask & (1 << Method::Gru as u32) != 0;
            let needs_gbm = mask & (1 << Method::Gbm as u32) != 0;
            let needs_direct = mask & (1 << Method::DirectGbm as u32) != 0;
            let needs_arima = mask & arima_bit != 0;
            mask.count_ones() <= opts.max_members
                && (opts.arima || !needs_arima)
                && mask & !opts.members == 0
                && !(needs_gru && gru.is_none())
                && !(needs_gbm && gbm.is_none())
                && !(needs_direct
                    && (!opts.gbm_direct || gbm.as_ref().is_none_or(|g| g.direct.is_empty())))
        })
        .collect();
    // The lowest OWA (against Naive2 on the same windows) of the allowed combinations.
    let best_of = |vals: &[&ValWindow], ref_s: f64, ref_m: f64| -> (f64, u32) {
        let mut best = (f64::INFINITY, 1u32 << Method::Theta as u32);
        for &mask in &allowed {
            let (s, m) = score_of(vals.iter().copied(), mask);
            let owa = (1.0 - w) * s / ref_s.max(1e-9) + w * m / ref_m.max(1e-9);
            if owa < best.0 {
                best = (owa, mask);
            }
        }
        best
    };
    let mut best = (f64::INFINITY, 1u32 << Method::Theta as u32, 0usize);
    for (k, (_, _, vals)) in candidates.iter().enumerate() {
        let refs: Vec<&ValWindow> = vals.iter().collect();
        let (owa, mask) = best_of(&refs, ref_s, ref_m);
        if owa < best.0 {
            best = (owa, mask, k);
        }
    }
    let (ci, log, vals) = candidates.swap_remove(best.2);
    let (ridge, window, lags) = settings[ci];
    let cov_val = covs.into_iter().nth(ci).flatten();
    let combo = best.1;
    let seasons: Vec<usize> = series
        .iter()
        .map(|s| s.season)
        .collect::<BTreeSet<usize>>()
        .into_iter()
        .collect();
    // Several season lengths: each gets the combination its own series' windows prefer (with
    // the covariate model and scale chosen on all of them).
    let mut season_combos = BTreeMap::new();
    if seasons.len() > 1 {
        for &season in &seasons {
            let part: Vec<&ValWindow> = vals
                .iter()
                .filter(|v| v.season == season && v.prep.croston.is_none())
                .collect();
            if part.is_empty() {
                continue;
            }
            let (rs, rm) = score_of(part.iter().copied(), 1 << Method::Naive2 as u32);
            season_combos.insert(season, best_of(&part, rs, rm).1);
        }
    }
    let mut model = Model {
        horizon: h,
        combo,
        err_q: Vec::new(),
        cov: cov_val,
        log,
        gru_shape: gru.as_ref().map(|g| (g.input, g.hidden, g.horizon)),
        gru: gru.clone(),
        seasons,
        season_combos,
        season_err_q: BTreeMap::new(),
        gbm: None,
        interval_log: opts.interval_log,
        own_q: Vec::new(),
        season_own_q: BTreeMap::new(),
        direct_blend: false,
        direct_quiet: opts.direct_quiet,
    };
    // The blend with the direct trees (the validation points and interval errors below are
    // the blend's too).
    model.direct_blend = blend_direct && gbm.as_ref().is_some_and(|g| !g.direct.is_empty());
    // Interval quantiles per step from the validation errors (log ratios or scaled errors, see
    // `Model::interval_log`; of all windows, and of each season's own when there are several).
    let points: Vec<Vec<f64>> = vals
        .iter()
        .map(|v| model.point_of(&v.prep, model.combo_for(v.season), false).0)
        .collect();
    // The grid of quantiles of a set of errors (a wide symmetric band when there are none).
    fn grid_of(mut e: Vec<f64>) -> Vec<f64> {
        e.sort_by(f64::total_cmp);
        (1..=GRID)
            .map(|g| {
                if e.is_empty() {
                    return (g as f64 / 100.0 - 0.5) * 4.0;
                }
                let pos = g as f64 / 100.0 * (e.len() - 1) as f64;
                let i = pos.floor() as usize;
                let j = (i + 1).min(e.len() - 1);
                e[i] + (e[j] - e[i]) * (pos - i as f64)
            })
            .collect()
    }
    // Quantiles per step of the validation errors (of every window, or of one season's):
    // log ratios or errors scaled by the naive MAE (`err_q`), or with `own` the errors divided
    // by each series' own spread on the members' fitting scale (`own_q`; windows without a
    // spread left out).
    let grid = |season: Option<usize>, own: bool| -> Vec<Vec<f64>> {
        let mut errs: Vec<Vec<f64>> = vec![Vec::new(); h];
        for (v, f) in vals.iter().zip(&points) {
            let sd = v.prep.spread.as_deref().filter(|_| own);
            if season.is_some_and(|s| s != v.season) || (own && sd.is_none()) {
                continue;
            }
            for i in 0..h {
                let log_ratio = || v.actual[i].max(0.0).ln_1p() - f[i].max(0.0).ln_1p();
                let e = match sd {
                    Some(sd) if v.prep.log_fit => log_ratio() / sd[i],
                    Some(sd) => (v.actual[i] - f[i]) / (sd[i] * v.prep.lift[i]),
                    None if model.interval_log && v.prep.nonneg => log_ratio(),
                    None => (v.actual[i] - f[i]) / (v.prep.scale * v.prep.lift[i]),
                };
                if e.is_finite() {
                    errs[i].push(e);
                }
            }
        }
        errs.into_iter().map(grid_of).collect()
    };
    model.err_q = grid(None, false);
    if opts.interval_own {
        model.own_q = grid(None, true);
    }
    if model.seasons.len() > 1 {
        let trained: Vec<usize> = model
            .seasons
            .iter()
            .copied()
            .filter(|&season| vals.iter().any(|v| v.season == season))
            .collect();
        model.season_err_q = trained
            .iter()
            .map(|&season| (season, grid(Some(season), false)))
            .collect();
        if opts.interval_own {
            model.season_own_q = trained
                .iter()
                .map(|&season| (season, grid(Some(season), true)))
                .collect();
        }
    }
    // Validation metrics of the chosen model.
    let (mut s_sum, mut m_sum) = (0.0, 0.0);
    let mut pooled = Pooled::default();
    for (v, f) in vals.iter().zip(&points) {
        s_sum += smape(&v.actual, f);
        m_sum += mase(&v.actual, f, v.prep.scale);
        let q = model.quantiles_of(&v.prep, f, &[0.1, 0.9], v.season);
        pooled.add(&v.actual, f, &q[0], &q[1]);
    }
    let c = vals.len().max(1) as f64;
    let mut validation = BTreeMap::new();
    validation.insert("smape".to_string(), s_sum / c);
    validation.insert("mase".to_string(), m_sum / c);
    validation.insert("wape".to_string(), pooled.wape());
    validation.insert("coverage_80".to_string(), pooled.coverage());
    validation.insert("windows".to_string(), vals.len() as f64);
    // Final covariate model on all the data.
    let chosen = TrainOptions {
        ridge,
        window,
        ..opts.clone()
    };
    model.cov = CovModel::fit(series, |s| s.values.len(), &with_lags(lags), &chosen);
    // The boosted trees, when served, relearn on everything (as the covariate model).
    let served = || std::iter::once(model.combo).chain(model.season_combos.values().copied());
    let uses_gbm = model.direct_blend || served().any(|c| c & GBM_BITS != 0);
    if uses_gbm {
        // The direct trees only when a served combination or the blend reads them.
        gbm_config.direct =
            model.direct_blend || served().any(|c| c & (1 << Method::DirectGbm as u32) != 0);
        model.gbm = GlobalGbm::train(series, |s| s.values.len(), &names, &gbm_config);
    }
    Trained {
        model,
        validation,
        examples: series.iter().map(|s| s.values.len()).sum(),
        ridge,
        window,
        lags,
        gru_tensors,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Uniform draws on [0, 1) from a fixed linear congruential sequence.
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        }
    }

    /// A daily series (weekly pattern around 20-25) whose promotions (one day in five) double
    /// the sales.
    pub(crate) fn promo_series(seed: u64, n: usize) -> SeriesIn {
        let mut rnd = uniform(seed);
        let mut values = Vec::new();
        let mut promo = Vec::new();
        for t in 0..n {
            let p = if rnd() < 0.2 { 1.0 } else { 0.0 };
            let base = 20.0 + 5.0 * ((t % 7) as f64 / 7.0);
            values.push((base * if p > 0.0 { 2.0 } else { 1.0 } * (0.8 + 0.4 * rnd())).round());
            promo.push(p);
        }
        SeriesIn {
            values,
            season: 7,
            covariates: BTreeMap::from([("promotion".to_string(), promo)]),
            attributes: BTreeMap::new(),
            statics: BTreeMap::new(),
        }
    }

    /// A model trained on daily series (season 7) only.
    fn daily_model() -> Trained {
        let series: Vec<SeriesIn> = (0..12).map(|i| promo_series(i, 120)).collect();
        train(
            &series,
            &TrainOptions {
                horizon: 7,
                gru: false,
                ..Default::default()
            },
        )
    }

    #[test]
    fn a_series_of_an_unseen_season_gets_the_fallback_combination() {
        let t = daily_model();
        assert_eq!(t.model.seasons, vec![7]);
        let none = BTreeMap::new();
        // A monthly series with trend and a yearly pattern: never seen in training.
        let monthly = SeriesIn {
            values: (0..96)
                .map(|t| 100.0 + t as f64 + 20.0 * (t as f64 * std::f64::consts::PI / 6.0).sin())
                .collect(),
            season: 12,
            covariates: BTreeMap::new(),
            attributes: BTreeMap::new(),
            statics: BTreeMap::new(),
        };
        let f = t.model.forecast(&monthly, &none, 18, &[0.1, 0.5, 0.9]);
        assert_eq!(f.method, FALLBACK_NAME);
        // The same as a model whose chosen combination is the fallback one (and that serves no
        // blend with the direct trees, which the fallback never reads).
        let mut direct = t.model.clone();
        direct.combo = FALLBACK_COMBO;
        direct.seasons = vec![12];
        direct.direct_blend = false;
        let expected = direct.forecast(&monthly, &none, 18, &[0.1, 0.5, 0.9]);
        assert_eq!(f.point, expected.point);
        assert!(f.point.iter().all(|v| v.is_finite()));
        // The trained season keeps the trained combination.
        let weekly = promo_series(99, 120);
        let w = t.model.forecast(&weekly, &none, 7, &[0.5]);
        assert_ne!(w.method, FALLBACK_NAME);
        // A model saved before `seasons` existed serves its combination everywhere.
        let mut old = t.model.clone();
        old.seasons.clear();
        assert_eq!(old.combo_for(12), t.model.combo);
        assert_eq!(t.model.combo_for(12), FALLBACK_COMBO);
    }

    /// A local level series around 1,000 (the level a random walk moved by `alpha` times each
    /// Gaussian error of relative size `sd`: the process simple exponential smoothing is optimal
    /// for), season 1.
    fn local_level(seed: u64, n: usize, alpha: f64, sd: f64) -> Vec<f64> {
        let mut rnd = uniform(seed);
        let mut level = 1000.0;
        (0..n)
            .map(|_| {
                let (u1, u2) = (1.0 - rnd(), rnd());
                let e = sd * 1000.0 * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                let y = level + e;
                level += alpha * e;
                y
            })
            .collect()
    }

    #[test]
    fn per_series_intervals_fit_quiet_and_noisy_series_alike() {
        // Quiet (1% noise) and noisy (10%) local level series trained together.
        let level = |seed: u64, n: usize| {
            let sd = if seed.is_multiple_of(2) { 0.01 } else { 0.1 };
            local_level(seed, n, 0.3, sd)
        };
        let h = 6;
        let series: Vec<SeriesIn> = (0..40)
            .map(|i| SeriesIn {
                values: level(i, 80),
                season: 1,
                ..Default::default()
            })
            .collect();
        let opts = |own: bool, log: bool| TrainOptions {
            horizon: h,
            gru: false,
            gbm: false,
            interval_own: own,
            interval_log: log,
            ..Default::default()
        };
        let t = train(&series, &opts(true, false));
        assert_eq!(t.model.own_q.len(), h);
        let scaled = train(&series, &opts(false, false));
        let ratios = train(&series, &opts(false, true));
        assert!(scaled.model.own_q.is_empty() && ratios.model.own_q.is_empty());
        let none = BTreeMap::new();
        // Coverage of the 80% interval on fresh series of each kind, and the mean band width
        // relative to the point at the last step.
        let check = |m: &Model, quiet: bool| -> (f64, f64) {
            let (mut inside, mut total, mut width) = (0usize, 0usize, 0.0);
            for k in 0..100u64 {
                let seed = 10_000 + 2 * k + u64::from(!quiet);
                let y = level(seed, 80 + h);
                let s = SeriesIn {
                    values: y[..80].to_vec(),
                    season: 1,
                    ..Default::default()
                };
                let f = m.forecast(&s, &none, h, &[0.1, 0.9]);
                for i in 0..h {
                    let (lo, hi) = (f.quantiles[0][i], f.quantiles[1][i]);
                    inside += usize::from(lo <= y[80 + i] && y[80 + i] <= hi);
                    total += 1;
                }
                width += (f.quantiles[1][h - 1] - f.quantiles[0][h - 1]) / f.point[h - 1];
            }
            (inside as f64 / total as f64, width / 100.0)
        };
        let (cq, wq) = check(&t.model, true);
        let (cn, wn) = check(&t.model, false);
        assert!((0.7..=0.9).contains(&cq), "quiet coverage {cq}");
        assert!((0.7..=0.9).contains(&cn), "noisy coverage {cn}");
        assert!(wn > 5.0 * wq, "noisy width {wn} vs quiet {wq}");
        // Errors scaled by each series' naive MAE (the default) also fit both kinds.
        let (sq, sn) = (check(&scaled.model, true).0, check(&scaled.model, false).0);
        assert!(
            (0.7..=0.9).contains(&sq),
            "scaled errors, quiet coverage {sq}"
        );
        assert!(
            (0.7..=0.9).contains(&sn),
            "scaled errors, noisy coverage {sn}"
        );
        // One table of log ratios for all: too wide for the quiet series and too narrow for the
        // noisy ones.
        let (pq, pn) = (check(&ratios.model, true).0, check(&ratios.model, false).0);
        assert!(pq > 0.95 && pn < 0.7, "log ratios: quiet {pq}, noisy {pn}");
        // Saved and loaded, the same; a model saved before the field existed has no own table.
        let json = serde_json::to_string(&t.model).unwrap();
        let back: Model = serde_json::from_str(&json).unwrap();
        // (JSON keeps f64 to within an ulp.)
        let (a, b) = (back.own_q.concat(), t.model.own_q.concat());
        assert_eq!(a.len(), b.len());
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| (x - y).abs() <= 1e-12 * y.abs().max(1.0))
        );
        let mut old: serde_json::Value = serde_json::from_str(&json).unwrap();
        old.as_object_mut().unwrap().remove("own_q");
        let old: Model = serde_json::from_value(old).unwrap();
        assert!(old.own_q.is_empty());
    }

    #[test]
    fn an_unseen_season_gets_intervals_from_its_own_errors() {
        let t = daily_model();
        let none = BTreeMap::new();
        let h = 6;
        let (mut inside, mut total) = (0usize, 0usize);
        let (mut first, mut last) = (0.0, 0.0);
        for seed in 0..150 {
            let y = local_level(1000 + seed, 60 + h, 0.3, 0.03);
            let s = SeriesIn {
                values: y[..60].to_vec(),
                season: 1,
                ..Default::default()
            };
            let f = t.model.forecast(&s, &none, h, &[0.1, 0.9]);
            assert_eq!(f.method, FALLBACK_NAME);
            for i in 0..h {
                let (lo, hi) = (f.quantiles[0][i], f.quantiles[1][i]);
                assert!(lo < f.point[i] && f.point[i] < hi, "{f:?}");
                inside += usize::from(lo <= y[60 + i] && y[60 + i] <= hi);
                total += 1;
            }
            first += f.quantiles[1][0] - f.quantiles[0][0];
            last += f.quantiles[1][h - 1] - f.quantiles[0][h - 1];
        }
        // The 80% interval holds about 80% of the outcomes of the process the members model,
        // and widens with the horizon (the level's uncertainty accumulates).
        let coverage = inside as f64 / total as f64;
        assert!((0.74..=0.86).contains(&coverage), "coverage {coverage}");
        assert!(
            last > 1.1 * first,
            "width at step 1 {first}, at step {h} {last}"
        );
    }

    #[test]
    fn the_local_regression_recovers_a_price_elasticity() {
        // units = 1000 * price^-2 (exactly, in log1p terms up to the +1), price varying.
        let prices: Vec<f64> = (0..60)
            .map(|t| 1.0 + 2.0 * ((t * 7 % 11) as f64 / 10.0))
            .collect();
        let values: Vec<f64> = prices.iter().map(|p| 1000.0 * p.powf(-2.0) - 1.0).collect();
        let s = SeriesIn {
            values,
            season: 1,
            covariates: BTreeMap::from([("price".to_string(), prices)]),
            attributes: BTreeMap::new(),
            statics: BTreeMap::new(),
        };
        let future = BTreeMap::from([("price".to_string(), vec![1.0, 2.0])]);
        let f = local_regression(&s, &future, 2).unwrap();
        // (The small ridge on the slope shrinks the elasticity by about 1% here.)
        assert!((f[0] - 999.0).abs() < 50.0, "{f:?}");
        assert!((f[1] - 249.0).abs() < 12.0, "{f:?}");
        // A missing future price keeps the last one; no covariates: no forecast.
        let g = local_regression(&s, &BTreeMap::new(), 1).unwrap();
        let last = s.covariates["price"][59];
        let want = 1000.0 * last.powf(-2.0);
        assert!((g[0] + 1.0 - want).abs() < 0.05 * want, "{g:?} vs {want}");
        let bare = SeriesIn {
            covariates: BTreeMap::new(),
            ..s.clone()
        };
        assert!(local_regression(&bare, &future, 2).is_none());
    }

    #[test]
    fn the_arima_member_follows_the_promotion_and_serves_when_chosen() {
        let s = promo_series(5, 150);
        let up = BTreeMap::from([("promotion".to_string(), vec![0.0, 1.0, 0.0])]);
        let f = arima_regression(&s, &up, 3).unwrap();
        // About 22 units a day, twice that with the promotion.
        assert!(f[1] > 1.6 * f[0] && f[1] > 1.6 * f[2], "{f:?}");
        assert!(f[0] > 15.0 && f[0] < 32.0, "{f:?}");
        // A flag never set is left out rather than making the fit singular; no covariates, a
        // negative value or a short series: no forecast.
        let mut flat = s.clone();
        flat.covariates
            .insert("feat".to_string(), vec![0.0; s.values.len()]);
        assert!(arima_regression(&flat, &up, 3).is_some());
        let bare = SeriesIn {
            covariates: BTreeMap::new(),
            ..s.clone()
        };
        assert!(arima_regression(&bare, &up, 3).is_none());
        let mut neg = s.clone();
        neg.values[4] = -1.0;
        assert!(arima_regression(&neg, &up, 3).is_none());
        assert!(arima_regression(&slice_series(&s, 10), &up, 3).is_none());
        // Trained with only this member allowed, the model serves it: the forecast equals the
        // member's (the model computes it only for a combination that uses it).
        let series: Vec<SeriesIn> = (0..6).map(|i| promo_series(i, 120)).collect();
        let t = train(
            &series,
            &TrainOptions {
                horizon: 3,
                members: 1 << Method::ArimaX as u32,
                arima: true,
                gru: false,
                gbm: false,
                grid: false,
                ..Default::default()
            },
        );
        assert_eq!(t.model.combo, 1 << Method::ArimaX as u32);
        let served = t.model.forecast(&series[0], &up, 3, &[0.1, 0.9]);
        let direct = prepare(
            t.model.cov.as_ref(),
            None,
            None,
            t.model.log,
            &series[0],
            &up,
            3,
            1 << Method::ArimaX as u32,
        );
        assert_eq!(served.point, direct.members[Method::ArimaX as usize]);
        assert!(served.point[1] > served.point[0], "{:?}", served.point);
    }

    #[test]
    fn member_forecasts_recombine_to_the_served_point() {
        let series: Vec<SeriesIn> = (0..12).map(|i| promo_series(i, 120)).collect();
        let s = promo_series(3, 120);
        let up = BTreeMap::from([(
            "promotion".to_string(),
            vec![1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
        )]);
        // With covariates the default serves the combination blended with the direct
        // trees; without the blend, the combination alone.
        let mut blended = None;
        for blend in [true, false] {
            let t = train(
                &series,
                &TrainOptions {
                    horizon: 7,
                    gru: false,
                    gbm_trees: 50,
                    direct_blend: blend,
                    ..Default::default()
                },
            );
            assert_eq!(t.model.direct_blend, blend);
            let served = t.model.forecast(&s, &up, 7, &[0.5]);
            let members = t.model.member_forecasts(&s, &up, 7);
            assert_eq!(members.len(), METHODS.len());
            let chosen: Vec<&Vec<f64>> = METHODS
                .iter()
                .filter(|m| t.model.combo & (1 << **m as u32) != 0)
                .map(|m| &members[*m as usize])
                .collect();
            assert!(!chosen.is_empty());
            let direct = &members[Method::DirectGbm as usize];
            assert_eq!(direct.iter().all(|v| v.is_finite()), blend, "{direct:?}");
            for j in 0..7 {
                let mean = chosen.iter().map(|f| f[j]).sum::<f64>() / chosen.len() as f64;
                // The trees weigh 1/2 in a promotion period, the quiet weight elsewhere.
                let w = if up["promotion"][j] > 0.5 {
                    DIRECT_PROMO
                } else {
                    t.model.direct_quiet
                };
                let want = if blend {
                    (1.0 - w) * mean.max(0.0) + w * direct[j]
                } else {
                    mean.max(0.0)
                };
                assert!(
                    (want - served.point[j]).abs() < 1e-9,
                    "step {j} (blend {blend}): members give {want}, served {}",
                    served.point[j]
                );
            }
            if blend {
                blended = Some(members);
            }
        }
        let members = blended.unwrap();
        // The members that need no trained network are all there; promotion steps lifted.
        let ses = &members[Method::Ses as usize];
        assert!(ses.iter().all(|v| v.is_finite()));
        assert!(ses[0] > ses[1], "{ses:?}");
    }

    #[test]
    fn the_boosted_trees_serve_when_chosen_and_survive_a_save() {
        let series: Vec<SeriesIn> = (0..12).map(|i| promo_series(i, 120)).collect();
        let only_gbm = TrainOptions {
            horizon: 7,
            gru: false,
            gbm_trees: 100,
            members: 1 << Method::Gbm as u32,
            direct_blend: false,
            ..Default::default()
        };
        let t = train(&series, &only_gbm);
        assert_eq!(t.model.combo, 1 << Method::Gbm as u32);
        assert!(
            t.model.gbm.is_some(),
            "the chosen trees are kept for serving"
        );
        let s = promo_series(5, 120);
        let promo = BTreeMap::from([("promotion".to_string(), vec![1.0; 7])]);
        let none = BTreeMap::from([("promotion".to_string(), vec![0.0; 7])]);
        let with = t.model.forecast(&s, &promo, 7, &[0.1, 0.5, 0.9]);
        let without = t.model.forecast(&s, &none, 7, &[0.1, 0.5, 0.9]);
        assert_eq!(with.method, "global_gbm");
        for (a, b) in with.point.iter().zip(&without.point) {
            assert!(a.is_finite() && *a > 1.5 * b, "promotion {a} vs none {b}");
        }
        // Saved as JSON (as the service does) and loaded: the same forecast.
        let back: Model = serde_json::from_slice(&serde_json::to_vec(&t.model).unwrap()).unwrap();
        assert_eq!(back.forecast(&s, &promo, 7, &[0.5]).point, with.point);
        // Off: neither trained nor offered.
        let off = train(
            &series,
            &TrainOptions {
                gbm: false,
                members: u32::MAX,
                ..only_gbm
            },
        );
        assert!(off.model.gbm.is_none());
        assert_eq!(off.model.combo & (1 << Method::Gbm as u32), 0);
    }

    /// The default (blended) model on 12 daily promotion series, horizon 7, 50 boosted trees,
    /// no GRU: its series, options and the trained model.
    fn blended() -> (Vec<SeriesIn>, TrainOptions, Trained) {
        let opts = TrainOptions {
            horizon: 7,
            gru: false,
            gbm_trees: 50,
            ..Default::default()
        };
        let series: Vec<SeriesIn> = (0..12).map(|i| promo_series(i, 120)).collect();
        let t = train(&series, &opts);
        (series, opts, t)
    }

    #[test]
    fn the_direct_blend_serves_with_covariates_only_and_survives_a_save() {
        let (series, opts, t) = blended();
        assert!(t.model.direct_blend);
        let g = t.model.gbm.as_ref().expect("the blend keeps the trees");
        assert_eq!(g.direct.len(), 7, "one set of direct trees per step");
        // The blended point still follows a promotion.
        let s = promo_series(5, 120);
        let promo = BTreeMap::from([("promotion".to_string(), vec![1.0; 7])]);
        let none = BTreeMap::from([("promotion".to_string(), vec![0.0; 7])]);
        let with = t.model.forecast(&s, &promo, 7, &[0.1, 0.5, 0.9]);
        let without = t.model.forecast(&s, &none, 7, &[0.1, 0.5, 0.9]);
        for (a, b) in with.point.iter().zip(&without.point) {
            assert!(a.is_finite() && a > b, "promotion {a} vs none {b}");
        }
        // Saved and loaded: the same forecast; a model saved before the field: no blend.
        let json = serde_json::to_value(&t.model).unwrap();
        let back: Model = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.forecast(&s, &promo, 7, &[0.5]).point, with.point);
        let mut old = json;
        old.as_object_mut().unwrap().remove("direct_blend");
        let old: Model = serde_json::from_value(old).unwrap();
        assert!(!old.direct_blend);
        assert_ne!(old.forecast(&s, &promo, 7, &[0.5]).point, with.point);
        // Without covariates: no direct trees, no blend.
        let plain: Vec<SeriesIn> = series
            .iter()
            .map(|s| SeriesIn {
                covariates: BTreeMap::new(),
                ..s.clone()
            })
            .collect();
        let p = train(&plain, &opts);
        assert!(!p.model.direct_blend);
        assert!(p.model.gbm.as_ref().is_none_or(|g| g.direct.is_empty()));
    }

    #[test]
    fn the_direct_trees_weigh_half_in_promotion_periods_and_the_quiet_weight_elsewhere() {
        // The blend itself: 1/2 where promoted, `quiet` elsewhere, the combination's where the
        // trees gave nothing.
        let b = blend(
            vec![10.0, 10.0, 10.0, 10.0],
            &[20.0, 20.0, f64::NAN, 20.0],
            true,
            &[true, false, false],
            0.4,
        );
        assert_eq!(b, vec![15.0, 14.0, 10.0, 14.0]);
        assert_eq!(blend(vec![10.0], &[20.0], false, &[true], 0.4), vec![10.0]);
        // Promotion periods as the request gives them, per flag the trees know.
        let (_, _, t) = blended();
        let g = t.model.gbm.as_ref();
        let s = promo_series(5, 120);
        let some = BTreeMap::from([(
            "promotion".to_string(),
            vec![1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
        )]);
        assert_eq!(
            promoted(g, &s, &some, 7),
            vec![true, false, true, false, false, false, false]
        );
        assert_eq!(promoted(g, &s, &BTreeMap::new(), 7), vec![false; 7]);
        assert_eq!(promoted(None, &s, &some, 3), vec![false; 3]);
        // Served: a quiet weight of 1/2 and of 0.4 give the same promotion periods and
        // different quiet ones (the combination and the trees differ there).
        let quiet = Model {
            direct_quiet: 0.4,
            ..t.model.clone()
        };
        let half = Model {
            direct_quiet: 0.5,
            ..t.model.clone()
        };
        let a = quiet.forecast(&s, &some, 7, &[0.5]).point;
        let b = half.forecast(&s, &some, 7, &[0.5]).point;
        assert_eq!((a[0], a[2]), (b[0], b[2]));
        assert!(a[1] != b[1] && a[3] != b[3], "{a:?} vs {b:?}");
        // A model saved before the field: 1/2 everywhere.
        let mut old = serde_json::to_value(&quiet).unwrap();
        old.as_object_mut().unwrap().remove("direct_quiet");
        let old: Model = serde_json::from_value(old).unwrap();
        assert_eq!(old.direct_quiet, 0.5);
        assert_eq!(old.forecast(&s, &some, 7, &[0.5]).point, b);
    }

    #[test]
    fn each_season_of_a_mixed_training_set_gets_its_own_combination() {
        let none = BTreeMap::new();
        // Weekly-season series: a strong, exactly repeating pattern (seasonal naive is exact).
        let pattern = |i: u64, t: usize| {
            50.0 + 10.0 * i as f64 + [0.0, 30.0, -20.0, 5.0, 40.0, -35.0, 10.0][t % 7]
        };
        let weekly: Vec<SeriesIn> = (0..10)
            .map(|i| SeriesIn {
                values: (0..140).map(|t| pattern(i, t)).collect(),
                season: 7,
                ..Default::default()
            })
            .collect();
        // Non-seasonal series with a steady trend (a trend method is exact, seasonal naive
        // lags behind).
        let trend: Vec<SeriesIn> = (0..10)
            .map(|i| SeriesIn {
                values: (0..120)
                    .map(|t| 100.0 + (2.0 + i as f64) * t as f64)
                    .collect(),
                season: 1,
                ..Default::default()
            })
            .collect();
        let opts = TrainOptions {
            horizon: 7,
            gru: false,
            grid: false,
            ..Default::default()
        };
        let mixed: Vec<SeriesIn> = weekly.iter().chain(&trend).cloned().collect();
        let t = train(&mixed, &opts);
        assert_eq!(t.model.seasons, vec![1, 7]);
        assert_eq!(
            t.model.season_combos.keys().copied().collect::<Vec<_>>(),
            vec![1, 7]
        );
        // Each season gets what its series alone would have chosen.
        let alone_w = train(&weekly, &opts).model;
        let alone_t = train(&trend, &opts).model;
        assert!(alone_w.season_combos.is_empty() && alone_t.season_combos.is_empty());
        // Intervals too: each season's own validation errors, pooled ones for a single season.
        assert_eq!(
            t.model.season_err_q.keys().copied().collect::<Vec<_>>(),
            vec![1, 7]
        );
        assert!(alone_w.season_err_q.is_empty());
        let mut pooled = t.model.clone();
        pooled.season_err_q.clear();
        let q_own = t
            .model
            .forecast(&weekly[3], &none, 7, &[0.1, 0.9])
            .quantiles;
        let q_pooled = pooled.forecast(&weekly[3], &none, 7, &[0.1, 0.9]).quantiles;
        assert_ne!(q_own, q_pooled, "season 7 answered with its own quantiles");
        assert_eq!(t.model.combo_for(7), alone_w.combo);
        assert_eq!(t.model.combo_for(1), alone_t.combo);
        assert_ne!(t.model.combo_for(7), t.model.combo_for(1));
        // Served: each season forecast with its own combination, nearly exact on both; an
        // unseen season still gets the fallback.
        let w = t.model.forecast(&weekly[3], &none, 7, &[0.5]);
        let expect_w: Vec<f64> = (140..147).map(|t| pattern(3, t)).collect();
        for (f, e) in w.point.iter().zip(&expect_w) {
            assert!(
                (f - e).abs() < 0.05 * e.abs(),
                "{:?} vs {expect_w:?}",
                w.point
            );
        }
        let tr = t.model.forecast(&trend[3], &none, 7, &[0.5]);
        for (k, f) in tr.point.iter().enumerate() {
            let e = 100.0 + 5.0 * (120 + k) as f64;
            assert!((f - e).abs() < 0.02 * e, "{:?}", tr.point);
        }
        assert_ne!(w.method, FALLBACK_NAME);
        assert_ne!(tr.method, FALLBACK_NAME);
        let monthly = SeriesIn {
            values: (0..60).map(|t| 10.0 + t as f64).collect(),
            season: 12,
            ..Default::default()
        };
        assert_eq!(
            t.model.forecast(&monthly, &none, 6, &[0.5]).method,
            FALLBACK_NAME
        );
    }

    #[test]
    fn fill_interpolates() {
        let f = fill(&[f64::NAN, 1.0, f64::NAN, 3.0, f64::NAN]);
        assert_eq!(f, vec![1.0, 1.0, 2.0, 3.0, 3.0]);
        assert_eq!(fill(&[f64::NAN]), vec![0.0]);
    }

    #[test]
    fn count_quantiles_are_those_of_the_poisson_and_negative_binomial() {
        // Poisson(0.19): P(0) = 0.827, so the 10% and 50% quantiles are 0 and the 90% is 1.
        let q = |mu, size, l| count_quantile(mu, size, l).unwrap();
        assert_eq!(
            [
                q(0.19, f64::INFINITY, 0.1),
                q(0.19, f64::INFINITY, 0.5),
                q(0.19, f64::INFINITY, 0.9)
            ],
            [0.0, 0.0, 1.0]
        );
        // Poisson(3): CDF(2) = 0.423, CDF(3) = 0.647.
        assert_eq!(q(3.0, f64::INFINITY, 0.5), 3.0);
        // Size 1 is the geometric law: P(X > k) = (2/3)^(k+1) for mean 2, so the 90% quantile
        // is the smallest k with (2/3)^(k+1) <= 0.1, k = 5.
        assert_eq!(q(2.0, 1.0, 0.9), 5.0);
        // Over-dispersion widens the band.
        assert!(q(5.0, 0.5, 0.9) > q(5.0, f64::INFINITY, 0.9));
        assert_eq!(count_quantile(0.0, 1.0, 0.9), Some(0.0));
        assert_eq!(count_quantile(1e6, f64::INFINITY, 0.9), None);
        assert_eq!(count_quantile(f64::NAN, 1.0, 0.9), None);
    }

    /// A slow seller: whole units on about one day in six, in bursts (over-dispersed).
    fn slow_seller(seed: u64, n: usize) -> SeriesIn {
        let mut rnd = uniform(seed);
        let values = (0..n)
            .map(|_| {
                if rnd() < 0.17 {
                    1.0 + (rnd() * 3.0).floor()
                } else {
                    0.0
                }
            })
            .collect();
        SeriesIn {
            values,
            season: 7,
            covariates: BTreeMap::new(),
            attributes: BTreeMap::new(),
            statics: BTreeMap::new(),
        }
    }

    #[test]
    fn a_slow_seller_of_whole_units_gets_count_intervals_that_hold_its_sales() {
        let series: Vec<SeriesIn> = (0..20).map(|i| slow_seller(i, 150)).collect();
        let t = train(
            &series,
            &TrainOptions {
                horizon: 7,
                gru: false,
                gbm: false,
                ..Default::default()
            },
        );
        let s = slow_seller(99, 150);
        let o = t.model.forecast(&s, &BTreeMap::new(), 7, &[0.1, 0.5, 0.9]);
        assert_eq!(o.method, "croston");
        for i in 0..7 {
            assert!(o.point[i] > 0.1 && o.point[i] < 1.5, "{:?}", o.point);
            // Whole units, 0 at the bottom, a sale at the top.
            for k in 0..3 {
                assert_eq!(o.quantiles[k][i].fract(), 0.0, "{:?}", o.quantiles);
            }
            assert_eq!(o.quantiles[0][i], 0.0);
            assert!(o.quantiles[2][i] >= 1.0, "{:?}", o.quantiles);
        }
        // On the validation windows the 80% band now holds about as many days as it should
        // (a discrete law cannot hit 80% exactly; the pooled log-ratio table held few).
        let cov80 = t.validation["coverage_80"];
        assert!((0.75..=0.99).contains(&cov80), "{cov80}");
        // A series of fractional amounts keeps the error table.
        let mut kg = slow_seller(98, 150);
        for v in kg.values.iter_mut() {
            *v *= 0.37;
        }
        let o = t.model.forecast(&kg, &BTreeMap::new(), 7, &[0.1, 0.9]);
        assert!(
            o.quantiles[1].iter().any(|v| v.fract() != 0.0),
            "{:?}",
            o.quantiles
        );
    }

    #[test]
    fn promotion_lifts_forecast_and_quantiles_are_ordered() {
        let series: Vec<SeriesIn> = (0..20).map(|i| promo_series(i, 120)).collect();
        let t = train(
            &series,
            &TrainOptions {
                horizon: 7,
                ..Default::default()
            },
        );
        let cov = t.model.cov.as_ref().expect("covariate model");
        assert!(cov.coef[0] > 0.4, "{cov:?}");
        let s = promo_series(99, 120);
        let on = BTreeMap::from([("promotion".to_string(), vec![1.0; 7])]);
        let off = BTreeMap::from([("promotion".to_string(), vec![0.0; 7])]);
        let a = t.model.forecast(&s, &on, 7, &[0.1, 0.5, 0.9]);
        let b = t.model.forecast(&s, &off, 7, &[0.1, 0.5, 0.9]);
        for i in 0..7 {
            assert!(a.point[i] > 1.5 * b.point[i], "{:?} {:?}", a.point, b.point);
            assert!(a.quantiles[0][i] <= a.quantiles[1][i]);
            assert!(a.quantiles[1][i] <= a.quantiles[2][i]);
        }
        let cov80 = t.validation["coverage_80"];
        assert!((0.6..=0.95).contains(&cov80), "{cov80}");
    }

    #[test]
    fn log_intervals_scale_with_the_forecast_and_survive_a_save() {
        let series: Vec<SeriesIn> = (0..20).map(|i| promo_series(i, 120)).collect();
        let opts = |log: bool| TrainOptions {
            horizon: 7,
            gru: false,
            gbm: false,
            interval_log: log,
            ..Default::default()
        };
        let s = promo_series(99, 120);
        let on = BTreeMap::from([("promotion".to_string(), vec![1.0; 7])]);
        let off = BTreeMap::from([("promotion".to_string(), vec![0.0; 7])]);
        // Log-ratio quantiles: the band is the same in ratio terms, so the promotion's is wider
        // in units by the forecast's ratio.
        let t = train(&series, &opts(true));
        assert!(t.model.interval_log);
        let ratio = |o: &Output, i: usize| (1.0 + o.quantiles[1][i]) / (1.0 + o.quantiles[0][i]);
        let a = t.model.forecast(&s, &on, 7, &[0.1, 0.9]);
        let b = t.model.forecast(&s, &off, 7, &[0.1, 0.9]);
        for i in 0..7 {
            assert!((ratio(&a, i) - ratio(&b, i)).abs() < 1e-9 * ratio(&b, i));
            assert!(ratio(&a, i) > 1.1, "a real band: {}", ratio(&a, i));
            assert!(a.quantiles[0][i] <= a.point[i] && a.point[i] <= a.quantiles[1][i]);
        }
        let cov80 = t.validation["coverage_80"];
        assert!((0.7..=0.9).contains(&cov80), "{cov80}");
        // Saved and loaded, the same intervals; a model saved before the field existed reads
        // as the scaled-error kind.
        let json = serde_json::to_string(&t.model).unwrap();
        let back: Model = serde_json::from_str(&json).unwrap();
        let reloaded = back.forecast(&s, &on, 7, &[0.1, 0.9]).quantiles;
        for (r, q) in reloaded.iter().flatten().zip(a.quantiles.iter().flatten()) {
            assert!((r - q).abs() <= 1e-9 * q.abs().max(1.0), "{r} vs {q}");
        }
        let old: Model =
            serde_json::from_str(&json.replace("\"interval_log\":true", "\"x\":0")).unwrap();
        assert!(!old.interval_log);
        // The scaled kind differs.
        let scaled = train(&series, &opts(false));
        assert!(!scaled.model.interval_log);
        assert_ne!(
            scaled.model.forecast(&s, &on, 7, &[0.1, 0.9]).quantiles,
            a.quantiles
        );
    }
}
