//! The global direct model: gradient-boosted trees ([`augur_model::gbdt`]) trained across all
//! series on log1p units relative to each series' recent level, one model for every horizon
//! step (the step is a feature), reading the recent values, the value one season before the
//! target, the known covariates of the target period (own price against its recent mean,
//! promotion flags), the series' static attributes (store, brand) and its static numeric
//! descriptors ([`SeriesIn::statics`], e.g. a store's demographics).
//!
//! It answers non-negative series only (its member slot stays empty, NaN, for the others) and
//! is a member of the combination search like the GRU: it serves only where validation prefers
//! it.

use std::collections::BTreeMap;

use augur_model::gbdt::{Gbdt, GbdtParams};
use serde::{Deserialize, Serialize};

use crate::model::{SeriesIn, cov_history, fill, future_of};

/// Training settings.
#[derive(Debug, Clone)]
pub struct GbmConfig {
    pub horizon: usize,
    /// Most rows of training examples (origins are thinned evenly to stay under it).
    pub max_rows: usize,
    pub params: GbdtParams,
    /// Absolute-error loss (the median of the target) instead of the squared error.
    pub absolute: bool,
    /// Promotion-history features (see [`GlobalGbm::promo_history`]).
    pub promo_history: bool,
    /// The static attributes (store, brand) split as categories rather than as numbered codes.
    pub categorical: bool,
    /// Each covariate's value in the period before the target (see [`GlobalGbm::prev`]).
    pub prev: bool,
    /// The series' static numeric descriptors as features (see [`GlobalGbm::statics`]).
    pub statics: bool,
    /// Also train the direct per-step trees (see [`GlobalGbm::direct`]).
    pub direct: bool,
}

impl GbmConfig {
    /// `leaves` 0: trees grown level-wise to depth 6; otherwise best-first to that many leaves.
    pub fn new(horizon: usize, trees: usize, max_rows: usize, leaves: usize) -> GbmConfig {
        GbmConfig {
            horizon,
            max_rows: max_rows.max(1),
            params: GbdtParams {
                trees,
                depth: if leaves == 0 { 6 } else { 16 },
                learning_rate: 0.05,
                min_leaf: 40,
                l2: 1.0,
                bins: 64,
                subsample: 0.5,
                seed: 42,
                leaves,
            },
            absolute: false,
            promo_history: false,
            categorical: false,
            prev: false,
            statics: true,
            direct: false,
        }
    }
}

/// The trained model and what its features mean.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GlobalGbm {
    pub horizon: usize,
    /// Recent values read (as differences from the level).
    pub lags: usize,
    /// Periods the level averages.
    pub level_window: usize,
    /// Covariates every training series carried (transformed as the covariate model does:
    /// prices in logs).
    pub covariates: Vec<String>,
    /// Static attributes: key and the values seen in training (feature = index, -1 unseen).
    pub attributes: Vec<(String, Vec<String>)>,
    /// Per covariate: whether it is a 0/1 flag (a promotion) in every training series. With
    /// [`GlobalGbm::promo_history`], each flag adds the periods since it was last on and the
    /// mean level-relative value of the window's periods it was on; and the mean of the window's
    /// periods with every flag off (the base level without promotions) is a feature.
    #[serde(default)]
    pub flags: Vec<bool>,
    #[serde(default)]
    pub promo_history: bool,
    /// Each covariate's value in the period before the target, against its recent mean (known
    /// in advance inside the horizon, the last observed value for the first step): a promotion
    /// that follows another lifts sales less than one after a normal week.
    #[serde(default)]
    pub prev: bool,
    /// Static numeric descriptors ([`SeriesIn::statics`]) read as features: key and the mean
    /// over the training series that carry it, which stands in for a series without it. Only
    /// keys that at least half of the training series carry, with at least two distinct values
    /// (so the feature count stays bounded whatever keys single series bring).
    #[serde(default)]
    pub statics: Vec<(String, f32)>,
    pub trees: Gbdt,
    /// The direct model (a second member, `direct_gbm`; empty when not trained): one set of
    /// trees per horizon step over the last [`DIRECT_LAGS`] log1p values themselves (not
    /// against a level), each covariate's (transformed) value in the target period and the
    /// attributes split as categories, predicting the median of log1p units (absolute-error
    /// loss); 200 trees, learning rate 0.1, 31 leaves grown best-first, 50 rows a leaf, 255
    /// bins. The global LightGBM anchor with the design that
    /// `bench/scripts/dominicks_tuning_bounds.py` chose on the four pre-test origins (its
    /// setting 16: 4 lags instead of 8, L1 loss, 200 trees, 50 rows a leaf), as a member the
    /// combination search may choose.
    #[serde(default)]
    pub direct: Vec<Gbdt>,
}

/// Recent values read by the direct trees.
pub const DIRECT_LAGS: usize = 4;

/// Most training rows of one step's direct trees (origins thinned evenly beyond it): every
/// origin of Dominick's 913 series fits under it; the demo's 300 daily series are thinned to
/// every third day, which keeps its Train near a minute at horizon 28.
pub const DIRECT_ROWS: usize = 100_000;

/// Recent values read by a model for season length `season`.
fn lags_for(season: usize) -> usize {
    (season + 1).clamp(8, 26)
}

fn level_window_for(season: usize) -> usize {
    if season > 1 { season.min(52) } else { 8 }
}

/// Per-series inputs shared by every origin.
struct Prepared {
    z: Vec<f64>,
    covs: Vec<Option<Vec<f64>>>,
    attrs: Vec<f32>,
    statics: Vec<f32>,
    season: usize,
}

impl GlobalGbm {
    fn prepare(&self, s: &SeriesIn) -> Option<Prepared> {
        let y = fill(&s.values);
        if y.is_empty() || y.iter().any(|v| *v < 0.0) {
            return None;
        }
        let covs = self
            .covariates
            .iter()
            .map(|name| {
                s.covariates
                    .get(name)
                    .map(|v| cov_history(name, &v[..v.len().min(y.len())]).0)
            })
            .collect();
        let attrs = self
            .attributes
            .iter()
            .map(|(k, values)| {
                s.attributes
                    .get(k)
                    .and_then(|v| values.iter().position(|x| x == v))
                    .map_or(-1.0, |i| i as f32)
            })
            .collect();
        let statics = self
            .statics
            .iter()
            .map(|(k, mean)| {
                s.statics
                    .get(k)
                    .filter(|v| v.is_finite())
                    .map_or(*mean, |v| *v as f32)
            })
            .collect();
        Some(Prepared {
            z: y.iter().map(|v| v.ln_1p()).collect(),
            covs,
            attrs,
            statics,
            season: s.season.max(1),
        })
    }

    /// Level (mean log1p of the last `level_window` values before `t0`).
    fn level(&self, z: &[f64], t0: usize) -> f64 {
        let lo = t0.saturating_sub(self.level_window);
        let w = &z[lo..t0];
        w.iter().sum::<f64>() / w.len().max(1) as f64
    }

    /// The features of predicting period `t0 + j` from the first `t0` values; `fut[c]` is
    /// covariate c's transformed value in that period and `before[c]` in the period before (when
    /// known).
    fn features(
        &self,
        p: &Prepared,
        t0: usize,
        j: usize,
        fut: &[Option<f64>],
        before: &[Option<f64>],
        out: &mut Vec<f32>,
    ) {
        out.clear();
        let z = &p.z[..t0];
        let level = self.level(z, t0);
        out.push(j as f32 + 1.0);
        out.push(level as f32);
        for i in 0..self.lags {
            out.push(if i < t0 {
                (z[t0 - 1 - i] - level) as f32
            } else {
                0.0
            });
        }
        // The same period one (or more) seasons before the target.
        let m = p.season;
        let mut seasonal = 0.0f32;
        if m > 1 {
            let target = t0 + j;
            let back = (j / m + 1) * m;
            if target >= back && target - back < t0 {
                seasonal = (z[target - back] - level) as f32;
            }
        }
        out.push(seasonal);
        // Volatility and the change of level over the previous window.
        let lo = t0.saturating_sub(self.level_window);
        let w = &z[lo..t0];
        let var = w.iter().map(|v| (v - level).powi(2)).sum::<f64>() / w.len().max(1) as f64;
        out.push(var.sqrt() as f32);
        let prev = self.level(z, lo);
        out.push(if lo > 0 { (level - prev) as f32 } else { 0.0 });
        for (c, hist) in p.covs.iter().enumerate() {
            let Some(hist) = hist else {
                out.extend([0.0, 0.0, 0.0]);
                if self.prev {
                    out.push(0.0);
                }
                continue;
            };
            let hist = &hist[..t0.min(hist.len())];
            let lo = hist.len().saturating_sub(self.level_window);
            let recent = &hist[lo..];
            let mean = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
            let last = hist.last().copied().unwrap_or(mean);
            let at = fut.get(c).copied().flatten().unwrap_or(last);
            out.push(at as f32);
            out.push((at - mean) as f32);
            out.push((last - mean) as f32);
            if self.prev {
                let b = before.get(c).copied().flatten().unwrap_or(last);
                out.push((b - mean) as f32);
            }
        }
        if self.promo_history {
            self.promo_features(p, t0, level, out);
        }
        out.extend_from_slice(&p.statics);
        out.extend_from_slice(&p.attrs);
    }

    /// Promotion history before `t0` (see [`GlobalGbm::flags`]).
    fn promo_features(&self, p: &Prepared, t0: usize, level: f64, out: &mut Vec<f32>) {
        let lo = t0.saturating_sub(self.level_window);
        let cap = self.level_window as f32 + 1.0;
        let on = |c: usize, t: usize| -> bool {
            p.covs[c]
                .as_ref()
                .and_then(|h| h.get(t))
                .is_some_and(|v| *v > 0.5)
        };
        let flags: Vec<usize> = (0..self.flags.len()).filter(|&c| self.flags[c]).collect();
        for &c in &flags {
            let since = (lo..t0)
                .rev()
                .position(|t| on(c, t))
                .map_or(cap, |k| k as f32 + 1.0);
            let (sum, n) = (lo..t0)
                .filter(|&t| on(c, t))
                .fold((0.0, 0usize), |(s, n), t| (s + p.z[t] - level, n + 1));
            out.push(since);
            out.push(if n > 0 { (sum / n as f64) as f32 } else { 0.0 });
        }
        let (sum, n) = (lo..t0)
            .filter(|&t| flags.iter().all(|&c| !on(c, t)))
            .fold((0.0, 0usize), |(s, n), t| (s + p.z[t] - level, n + 1));
        out.push(if n > 0 { (sum / n as f64) as f32 } else { 0.0 });
    }

    /// Trains on the first `cut(s)` values of every series.
    pub fn train(
        series: &[SeriesIn],
        cut: impl Fn(&SeriesIn) -> usize,
        covariates: &[String],
        cfg: &GbmConfig,
    ) -> Option<GlobalGbm> {
        let h = cfg.horizon.max(1);
        // Lags and level window follow the first series' season (a training set of several
        // seasons shares one model; the seasonal-lag feature still uses each series' own).
        let season = series.first().map_or(1, |s| s.season.max(1));
        let mut attributes: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for s in series {
            for (k, v) in &s.attributes {
                let values = attributes.entry(k.clone()).or_default();
                if !values.contains(v) {
                    values.push(v.clone());
                }
            }
        }
        for values in attributes.values_mut() {
            values.sort();
        }
        let mut statics: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        if cfg.statics {
            for s in series {
                for (k, v) in &s.statics {
                    if v.is_finite() {
                        statics.entry(k.clone()).or_default().push(*v);
                    }
                }
            }
        }
        let mut model = GlobalGbm {
            horizon: h,
            lags: lags_for(season),
            level_window: level_window_for(season),
            covariates: covariates.to_vec(),
            // An attribute with one value says nothing; one with more than 256 values (ids
            // rather than groups, whose codes the trees would split like numbers) is left out.
            attributes: attributes
                .into_iter()
                .filter(|(_, v)| v.len() >= 2 && v.len() <= 256)
                .collect(),
            flags: covariates
                .iter()
                .map(|name| {
                    let mut any = false;
                    let all = series.iter().all(|s| {
                        s.covariates.get(name).is_none_or(|v| {
                            any |= !v.is_empty();
                            v.iter().all(|x| !x.is_finite() || *x == 0.0 || *x == 1.0)
                        })
                    });
                    all && any
                })
                .collect(),
            promo_history: cfg.promo_history,
            prev: cfg.prev,
            statics: statics
                .into_iter()
                .filter(|(_, v)| 2 * v.len() >= series.len() && v.iter().any(|x| *x != v[0]))
                .map(|(k, v)| {
                    let mean = v.iter().sum::<f64>() / v.len() as f64;
                    (k, mean as f32)
                })
                .collect(),
            trees: Gbdt {
                base: 0.0,
                learning_rate: 0.0,
                trees: Vec::new(),
            },
            direct: Vec::new(),
        };
        // Origins: every period from `min_hist` on whose first target is known, thinned evenly
        // (newest kept) so that the rows stay under `max_rows`.
        let min_hist = 4usize;
        let heads: Vec<SeriesIn> = series
            .iter()
            .filter_map(|s| {
                let n = cut(s).min(s.values.len());
                let mut head = s.clone();
                head.values.truncate(n);
                for v in head.covariates.values_mut() {
                    v.truncate(n);
                }
                (n > min_hist).then_some(head)
            })
            .collect();
        let prepared: Vec<(Prepared, usize)> = heads
            .iter()
            .filter_map(|s| model.prepare(s).map(|p| (p, s.values.len())))
            .collect();
        let total: usize = prepared.iter().map(|(_, n)| (n - min_hist) * h).sum();
        if total == 0 {
            return None;
        }
        let stride = total.div_ceil(cfg.max_rows).max(1);
        let mut x: Vec<Vec<f32>> = Vec::new();
        let mut y: Vec<f32> = Vec::new();
        let mut row = Vec::new();
        let nc = model.covariates.len();
        for (p, n) in &prepared {
            let n = *n;
            let mut t0 = n - 1;
            loop {
                let level = model.level(&p.z, t0);
                let at = |t: usize| -> Vec<Option<f64>> {
                    (0..nc)
                        .map(|c| p.covs[c].as_ref().and_then(|v| v.get(t).copied()))
                        .collect()
                };
                for j in 0..h.min(n - t0) {
                    // The period before the target only when the model reads it.
                    let before = if model.prev {
                        at(t0 + j - 1)
                    } else {
                        Vec::new()
                    };
                    model.features(p, t0, j, &at(t0 + j), &before, &mut row);
                    x.push(row.clone());
                    y.push((p.z[t0 + j] - level) as f32);
                }
                if t0 < min_hist + stride {
                    break;
                }
                t0 -= stride;
            }
        }
        // The attributes are the last features.
        let d = x.first().map_or(0, Vec::len);
        let categorical: Vec<usize> = if cfg.categorical {
            (d.saturating_sub(model.attributes.len())..d).collect()
        } else {
            Vec::new()
        };
        model.trees = Gbdt::fit_regression(&x, &y, &cfg.params, cfg.absolute, &categorical);
        if cfg.direct {
            model.direct = model.train_direct(&prepared, h, cfg.max_rows);
        }
        Some(model)
    }

    /// Features of the direct trees predicting period `t0 + j` (`at[c]`: covariate c there).
    fn direct_features(&self, p: &Prepared, t0: usize, at: &[Option<f64>], out: &mut Vec<f32>) {
        out.clear();
        for i in 1..=DIRECT_LAGS {
            out.push(t0.checked_sub(i).map_or(f32::NAN, |t| p.z[t] as f32));
        }
        for (c, v) in at.iter().enumerate() {
            let last = p.covs[c]
                .as_ref()
                .and_then(|h| h[..t0.min(h.len())].last().copied());
            out.push(v.or(last).map_or(f32::NAN, |v| v as f32));
        }
        out.extend_from_slice(&p.attrs);
    }

    /// One set of trees per step (see [`GlobalGbm::direct`]), each over every origin of every
    /// series (thinned evenly to `max_rows`, at most [`DIRECT_ROWS`], a step); the steps are
    /// fitted side by side on the cores.
    fn train_direct(&self, prepared: &[(Prepared, usize)], h: usize, max_rows: usize) -> Vec<Gbdt> {
        let max_rows = max_rows.min(DIRECT_ROWS);
        let params = GbdtParams {
            trees: 200,
            depth: 64,
            learning_rate: 0.1,
            min_leaf: 50,
            l2: 0.0,
            bins: 255,
            subsample: 1.0,
            seed: 42,
            leaves: 31,
        };
        let nc = self.covariates.len();
        let d = DIRECT_LAGS + nc + self.attributes.len();
        let categorical: Vec<usize> = (DIRECT_LAGS + nc..d).collect();
        let fit_step = |j: usize| {
            let total: usize = prepared
                .iter()
                .map(|(_, n)| n.saturating_sub(DIRECT_LAGS + j))
                .sum();
            let stride = total.div_ceil(max_rows.max(1)).max(1);
            let (mut x, mut y) = (Vec::new(), Vec::new());
            let mut row = Vec::new();
            for (p, n) in prepared {
                let mut t0 = DIRECT_LAGS;
                while t0 + j < *n {
                    let at: Vec<Option<f64>> = (0..nc)
                        .map(|c| p.covs[c].as_ref().and_then(|v| v.get(t0 + j).copied()))
                        .collect();
                    self.direct_features(p, t0, &at, &mut row);
                    x.push(row.clone());
                    y.push(p.z[t0 + j] as f32);
                    t0 += stride;
                }
            }
            Gbdt::fit_regression_on(&x, &y, &params, true, &categorical, 1)
        };
        augur_model::par::par_map(h, fit_step)
    }

    /// Each covariate's values over the `h` forecast periods.
    fn futures(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
    ) -> Vec<Vec<f64>> {
        self.covariates
            .iter()
            .map(|name| future_of(s, future, name, h))
            .collect()
    }

    /// The direct trees' forecast of `h` steps (later steps than trained repeat the last
    /// step's trees), `None` without them or for a series with negative values.
    pub fn forecast_direct(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
    ) -> Option<Vec<f64>> {
        if self.direct.is_empty() {
            return None;
        }
        let p = self.prepare(s)?;
        let t0 = p.z.len();
        let futs = self.futures(s, future, h);
        let mut row = Vec::new();
        Some(
            (0..h)
                .map(|j| {
                    let trees = &self.direct[j.min(self.direct.len() - 1)];
                    // A covariate the series has no history of reached the trees as missing in
                    // training (`train_direct`); so it does here, whatever the request gives.
                    let at: Vec<Option<f64>> = futs
                        .iter()
                        .zip(&p.covs)
                        .map(|(f, hist)| hist.as_ref().and(f.get(j).copied()))
                        .collect();
                    self.direct_features(&p, t0, &at, &mut row);
                    let v = f64::from(trees.margin(&row)).min(700.0).exp_m1();
                    if v.is_finite() { v.max(0.0) } else { 0.0 }
                })
                .collect(),
        )
    }

    /// Forecast of `h` steps (at most the trained horizon; later steps repeat the last one),
    /// `None` for a series with negative values.
    pub fn forecast(
        &self,
        s: &SeriesIn,
        future: &BTreeMap<String, Vec<f64>>,
        h: usize,
    ) -> Option<Vec<f64>> {
        let p = self.prepare(s)?;
        let t0 = p.z.len();
        let level = self.level(&p.z, t0);
        let futs = self.futures(s, future, h);
        let mut row = Vec::new();
        let out = (0..h)
            .map(|j| {
                let step = j.min(self.horizon.saturating_sub(1));
                let fut: Vec<Option<f64>> = futs.iter().map(|f| f.get(j).copied()).collect();
                // The period before the first step is the history's last (`features` falls
                // back to it); nothing to gather for a model without the feature.
                let before: Vec<Option<f64>> = match j.checked_sub(1) {
                    Some(i) if self.prev => futs.iter().map(|f| f.get(i).copied()).collect(),
                    _ => Vec::new(),
                };
                self.features(&p, t0, step, &fut, &before, &mut row);
                let v = (level + self.trees.margin(&row) as f64).min(700.0).exp_m1();
                if v.is_finite() { v.max(0.0) } else { 0.0 }
            })
            .collect();
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// [`crate::model::tests::promo_series`] with a brand (attribute) whose level is 1, 2 or 3
    /// times the base.
    fn promo_series(seed: u64, n: usize) -> SeriesIn {
        let mut s = crate::model::tests::promo_series(seed, n);
        let brand = seed % 3;
        for v in &mut s.values {
            *v *= 1.0 + brand as f64;
        }
        s.season = 1;
        s.attributes
            .insert("brand".to_string(), format!("b{brand}"));
        s
    }

    #[test]
    fn learns_the_promotion_lift_and_answers_only_non_negative_series() {
        let series: Vec<SeriesIn> = (0..30).map(|i| promo_series(i, 80)).collect();
        let m = GlobalGbm::train(
            &series,
            |s| s.values.len(),
            &["promotion".to_string()],
            &GbmConfig::new(4, 150, 250_000, 0),
        )
        .unwrap();
        assert_eq!(m.attributes.len(), 1);
        let s = &series[4];
        let with = BTreeMap::from([("promotion".to_string(), vec![1.0; 4])]);
        let without = BTreeMap::from([("promotion".to_string(), vec![0.0; 4])]);
        let a = m.forecast(s, &with, 4).unwrap();
        let b = m.forecast(s, &without, 4).unwrap();
        // Brand b1: about 40-50 a day, twice that with a promotion.
        for (x, y) in a.iter().zip(&b) {
            assert!(x.is_finite() && y.is_finite());
            assert!(
                *x > 1.6 * *y && *y > 35.0 && *y < 60.0,
                "with {x}, without {y}"
            );
        }
        // Longer than trained: the last step repeats; a negative series gets no forecast.
        assert_eq!(m.forecast(s, &without, 7).unwrap().len(), 7);
        let mut neg = s.clone();
        neg.values[3] = -1.0;
        assert!(m.forecast(&neg, &without, 4).is_none());
        // Serialised and back, the same forecast.
        let back: GlobalGbm = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back.forecast(s, &with, 4).unwrap(), a);
    }

    /// Daily series whose promotions lift sales 2x after a normal day and 1.2x on a day after
    /// another promotion (the stock bought the day before).
    fn fatigue_series(seed: u64, n: usize) -> SeriesIn {
        let mut s = crate::model::tests::promo_series(seed, n);
        let promo = s.covariates["promotion"].clone();
        for t in 0..n {
            let base = 20.0 + 5.0 * ((t % 7) as f64 / 7.0);
            let lift = match (promo[t] > 0.5, t > 0 && promo[t - 1] > 0.5) {
                (false, _) => 1.0,
                (true, false) => 2.0,
                (true, true) => 1.2,
            };
            let noise = 0.9 + 0.2 * ((seed * 31 + t as u64 * 17) % 11) as f64 / 10.0;
            s.values[t] = (base * lift * noise).round();
        }
        s.season = 1;
        s
    }

    /// The trees for horizon 4 on whole series with a "promotion" covariate, 150 trees, one
    /// setting changed by `set`.
    fn train_promotion(series: &[SeriesIn], set: impl Fn(&mut GbmConfig)) -> GlobalGbm {
        let mut cfg = GbmConfig::new(4, 150, 250_000, 0);
        set(&mut cfg);
        GlobalGbm::train(series, |s| s.values.len(), &["promotion".to_string()], &cfg).unwrap()
    }

    #[test]
    fn the_previous_periods_promotion_tells_a_first_promotion_day_from_a_later_one() {
        let series: Vec<SeriesIn> = (0..30).map(|i| fatigue_series(i, 120)).collect();
        let fit = |prev: bool| train_promotion(&series, |c| c.prev = prev);
        let m = fit(true);
        // A history ending on a normal day, then four promotion days: the first lifts 2x,
        // the next three 1.2x.
        let mut s = series[3].clone();
        *s.values.last_mut().unwrap() = 22.0;
        *s.covariates
            .get_mut("promotion")
            .unwrap()
            .last_mut()
            .unwrap() = 0.0;
        let run = BTreeMap::from([("promotion".to_string(), vec![1.0; 4])]);
        let f = m.forecast(&s, &run, 4).unwrap();
        for later in &f[1..] {
            assert!(f[0] > 1.35 * later, "{f:?}");
        }
        // Without the feature the steps look alike.
        let m = fit(false);
        let f = m.forecast(&s, &run, 4).unwrap();
        assert!(f[0] < 1.2 * f[1], "{f:?}");
        // A model saved before the feature reads back without it.
        let mut json: serde_json::Value = serde_json::to_value(&m).unwrap();
        json.as_object_mut().unwrap().remove("prev");
        let back: GlobalGbm = serde_json::from_value(json).unwrap();
        assert_eq!(back.forecast(&s, &run, 4).unwrap(), f);
    }

    #[test]
    fn the_direct_trees_read_a_series_without_a_covariate_as_training_did() {
        // Half the series carry no "promotion" history: their promotions went unrecorded and
        // double the sales on about 70% of days. The direct trees learned them with the
        // covariate missing; such a series must reach them missing at serving too, not as "no
        // promotion" (the value a request's absent future falls back to).
        let mut series: Vec<SeriesIn> = (0..20)
            .map(|i| crate::model::tests::promo_series(i, 120))
            .collect();
        for seed in 20..40u64 {
            let mut s = crate::model::tests::promo_series(seed, 120);
            s.covariates.clear();
            for (t, v) in s.values.iter_mut().enumerate() {
                let base = 20.0 + 5.0 * ((t % 7) as f64 / 7.0);
                let hash =
                    (seed.wrapping_mul(2_654_435_761) ^ (t as u64).wrapping_mul(40_503)) >> 5;
                *v = (base * if hash % 10 < 7 { 2.0 } else { 1.0 }).round();
            }
            series.push(s);
        }
        for s in &mut series {
            s.season = 1;
        }
        let m = train_promotion(&series, |c| c.direct = true);
        assert_eq!(m.direct.len(), 4);
        let none = BTreeMap::new();
        let hidden = m.forecast_direct(&series[25], &none, 4).unwrap();
        for v in &hidden {
            assert!(*v > 36.0, "a series without the covariate: {hidden:?}");
        }
        // A series with the covariate and no promotion ahead still sells its base.
        let quiet = m.forecast_direct(&series[5], &none, 4).unwrap();
        for v in &quiet {
            assert!(*v > 15.0 && *v < 32.0, "no promotion ahead: {quiet:?}");
        }
    }

    /// Daily series whose promotions lift sales by `1 + sensitivity`, a static numeric
    /// descriptor of the series (like a store's demographics driving its price response).
    fn sensitive_series(seed: u64, n: usize, sensitivity: f64) -> SeriesIn {
        let mut s = crate::model::tests::promo_series(seed, n);
        let promo = s.covariates["promotion"].clone();
        for (t, v) in s.values.iter_mut().enumerate() {
            let lift = if promo[t] > 0.5 {
                1.0 + sensitivity
            } else {
                1.0
            };
            let noise = 0.9 + 0.2 * ((seed * 31 + t as u64 * 17) % 11) as f64 / 10.0;
            *v = (30.0 * lift * noise).round();
        }
        s.season = 1;
        s.statics = BTreeMap::from([
            ("sensitivity".to_string(), sensitivity),
            // The same for every series: says nothing, left out.
            ("country".to_string(), 1.0),
            // Carried by one series in eight: left out too.
            (format!("rare{}", seed % 8), seed as f64),
        ]);
        s
    }

    #[test]
    fn static_numeric_descriptors_tell_the_series_promotion_response_apart() {
        let series: Vec<SeriesIn> = (0..48)
            .map(|i| sensitive_series(i, 100, 0.2 + 1.6 * (i % 8) as f64 / 7.0))
            .collect();
        let fit = |statics: bool| train_promotion(&series, |c| c.statics = statics);
        let with = BTreeMap::from([("promotion".to_string(), vec![1.0; 4])]);
        let without = BTreeMap::from([("promotion".to_string(), vec![0.0; 4])]);
        let lift = |m: &GlobalGbm, s: &SeriesIn| {
            let a = m.forecast(s, &with, 4).unwrap();
            let b = m.forecast(s, &without, 4).unwrap();
            a.iter().zip(&b).map(|(x, y)| x / y).sum::<f64>() / 4.0
        };
        // Two series with 8 periods of history and no promotion in it yet (new stores, say):
        // only the descriptor tells how they will respond.
        let fresh = |s: &SeriesIn| {
            let mut s = s.clone();
            s.values = (0..8).map(|t| 30.0 + (t % 3) as f64).collect();
            s.covariates.insert("promotion".to_string(), vec![0.0; 8]);
            s
        };
        let (low, high) = (fresh(&series[0]), fresh(&series[7]));
        let m = fit(true);
        assert_eq!(m.statics.len(), 1, "{:?}", m.statics);
        assert_eq!(m.statics[0].0, "sensitivity");
        assert!((m.statics[0].1 - 1.0).abs() < 1e-6, "{:?}", m.statics);
        let (l, h) = (lift(&m, &low), lift(&m, &high));
        assert!(
            l < 1.5 && h > 2.4,
            "lifts {l} (1.2 true) and {h} (2.8 true)"
        );
        // A series without the descriptor is read at the training mean: a lift in between.
        let mut bare = high.clone();
        bare.statics.clear();
        let mid = lift(&m, &bare);
        assert!(mid > l + 0.2 && mid < h - 0.2, "{l} < {mid} < {h}");
        // Without the descriptors the trees see one average response.
        let m0 = fit(false);
        assert!(m0.statics.is_empty());
        let (l0, h0) = (lift(&m0, &low), lift(&m0, &high));
        assert!(
            (h0 - l0).abs() < 0.25 * (h - l),
            "{l0} / {h0} against {l} / {h}"
        );
        // A model saved before the field reads back without it.
        let mut json: serde_json::Value = serde_json::to_value(&m0).unwrap();
        json.as_object_mut().unwrap().remove("statics");
        let back: GlobalGbm = serde_json::from_value(json).unwrap();
        assert_eq!(
            back.forecast(&high, &with, 4).unwrap(),
            m0.forecast(&high, &with, 4).unwrap()
        );
    }
}
