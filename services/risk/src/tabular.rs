//! Tabular risk models: an encoding pipeline that handles missing values inside the model
//! (median imputation + missing indicators for numbers, a "missing" level for categories), linear
//! splines over numeric columns, one-hot categories; a logistic regression on top, with optional
//! gradient-boosted trees blended in, Platt calibration on the validation split, and per-column
//! contributions for explanations. Also an isolation forest for the unsupervised anomaly score.

use augur_model::calibrate::Platt;
use augur_model::metrics;
use rand::rngs::StdRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::linear::{Logistic, LogisticParams, sparse};

/// One cell of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cell {
    Num(f64),
    Cat(String),
    Missing,
}

/// A table of examples with optional labels.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub labels: Vec<Option<bool>>,
}

/// How one column is encoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ColumnEncoding {
    Numeric {
        median: f64,
        mean: f64,
        std: f64,
        /// A 0/1 "was missing" feature is emitted when the column had missing values.
        missing_indicator: bool,
        /// Knots (standardised) of the linear-spline hinges `max(0, z - knot)`.
        knots: Vec<f64>,
        /// Mean and std of `ln(1 + x)`, for a standardised log feature of a skewed
        /// non-negative column.
        #[serde(default)]
        log: Option<(f64, f64)>,
    },
    Categorical {
        /// Levels with their own one-hot column; anything else is "other".
        levels: Vec<String>,
    },
}

/// A pairwise log-ratio feature `ln(1 + a) - ln(1 + b)` of two non-negative numeric columns
/// (missing values imputed with the column median first), standardised. Ratios such as loan
/// amount to price or expenses to income carry risk that neither column shows alone, and a
/// linear model cannot form them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioFeature {
    pub a: usize,
    pub b: usize,
    pub mean: f64,
    pub std: f64,
}

/// The fitted encoder: cells to a dense vector, with the source column of every output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub columns: Vec<String>,
    pub encodings: Vec<ColumnEncoding>,
    /// Source column of each of the columns' own output dimensions (the ratio features, encoded
    /// after them, name their two columns in [`Encoder::ratios`]; see [`Encoder::owners`]).
    pub owner: Vec<usize>,
    /// Pairwise log-ratio features, encoded after every column's own dimensions.
    #[serde(default)]
    pub ratios: Vec<RatioFeature>,
}

/// At most this many numeric columns take part in ratio features (n(n-1)/2 features).
pub const MAX_RATIO_COLUMNS: usize = 16;

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

impl Encoder {
    /// Fits on the given rows. `knots` hinges per numeric column (0 = linear only);
    /// categorical levels need at least `min_level` rows.
    /// `log_skewed` adds a standardised `ln(1 + x)` feature to skewed non-negative columns;
    /// `ratios` adds the [`RatioFeature`] of every pair of non-negative numeric columns (at most
    /// [`MAX_RATIO_COLUMNS`] columns take part: the first ones).
    pub fn fit(
        columns: &[String],
        rows: &[&Vec<Cell>],
        knots: usize,
        min_level: usize,
        log_skewed: bool,
        ratios: bool,
    ) -> Self {
        let mut encodings = Vec::new();
        let mut owner = Vec::new();
        for (c, _) in columns.iter().enumerate() {
            let categorical = rows.iter().any(|r| matches!(r.get(c), Some(Cell::Cat(_))));
            if categorical {
                let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
                for r in rows {
                    if let Some(Cell::Cat(s)) = r.get(c) {
                        *counts.entry(s.clone()).or_default() += 1;
                    }
                }
                let levels: Vec<String> = counts
                    .into_iter()
                    .filter(|(_, n)| *n >= min_level)
                    .map(|(s, _)| s)
                    .collect();
                // levels + other + missing
                owner.extend(std::iter::repeat_n(c, levels.len() + 2));
                encodings.push(ColumnEncoding::Categorical { levels });
            } else {
                let mut vals: Vec<f64> = rows
                    .iter()
                    .filter_map(|r| match r.get(c) {
                        Some(Cell::Num(v)) if v.is_finite() => Some(*v),
                        _ => None,
                    })
                    .collect();
                vals.sort_by(f64::total_cmp);
                let missing_indicator = vals.len() < rows.len();
                let median = quantile(&vals, 0.5);
                let n = vals.len().max(1) as f64;
                let mean = vals.iter().sum::<f64>() / n;
                let var = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
                let std = if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 };
                let mut ks: Vec<f64> = (1..=knots)
                    .map(|k| (quantile(&vals, k as f64 / (knots + 1) as f64) - mean) / std)
                    .collect();
                ks.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
                let skew = vals.iter().map(|v| ((v - mean) / std).powi(3)).sum::<f64>() / n;
                let log = (log_skewed && vals.first().is_some_and(|m| *m >= 0.0) && skew > 1.5)
                    .then(|| {
                        let l: Vec<f64> = vals.iter().map(|v| v.ln_1p()).collect();
                        let m = l.iter().sum::<f64>() / n;
                        let sd = (l.iter().map(|v| (v - m).powi(2)).sum::<f64>() / n).sqrt();
                        (m, if sd > 1e-12 { sd } else { 1.0 })
                    });
                owner.extend(std::iter::repeat_n(
                    c,
                    1 + usize::from(missing_indicator) + ks.len() + usize::from(log.is_some()),
                ));
                encodings.push(ColumnEncoding::Numeric {
                    median,
                    mean,
                    std,
                    missing_indicator,
                    knots: ks,
                    log,
                });
            }
        }
        let mut encoder = Encoder {
            columns: columns.to_vec(),
            encodings,
            owner,
            ratios: Vec::new(),
        };
        if ratios {
            encoder.fit_ratios(rows);
        }
        encoder
    }

    /// `ln(1 + x)` of a numeric cell, the median standing in for a missing value.
    fn log_value(&self, c: usize, cell: &Cell) -> f64 {
        let median = match self.encodings.get(c) {
            Some(ColumnEncoding::Numeric { median, .. }) => *median,
            _ => 0.0,
        };
        let v = match cell {
            Cell::Num(v) if v.is_finite() => *v,
            _ => median,
        };
        v.max(0.0).ln_1p()
    }

    fn fit_ratios(&mut self, rows: &[&Vec<Cell>]) {
        let eligible: Vec<usize> = (0..self.columns.len())
            .filter(|&c| {
                matches!(self.encodings[c], ColumnEncoding::Numeric { .. })
                    && rows.iter().all(|r| match r.get(c) {
                        Some(Cell::Num(v)) if v.is_finite() => *v >= 0.0,
                        _ => true,
                    })
            })
            .take(MAX_RATIO_COLUMNS)
            .collect();
        let n = rows.len().max(1) as f64;
        for (i, &a) in eligible.iter().enumerate() {
            for &b in &eligible[i + 1..] {
                let vals: Vec<f64> = rows
                    .iter()
                    .map(|r| {
                        let m = &Cell::Missing;
                        self.log_value(a, r.get(a).unwrap_or(m))
                            - self.log_value(b, r.get(b).unwrap_or(m))
                    })
                    .collect();
                let mean = vals.iter().sum::<f64>() / n;
                let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
                if sd < 1e-9 {
                    continue;
                }
                self.ratios.push(RatioFeature {
                    a,
                    b,
                    mean,
                    std: sd,
                });
            }
        }
    }

    /// The columns an output dimension depends on (two for a ratio feature).
    pub fn owners(&self, j: usize) -> (usize, Option<usize>) {
        match self.owner.get(j) {
            Some(&c) => (c, None),
            None => {
                let r = &self.ratios[j - self.owner.len()];
                (r.a, Some(r.b))
            }
        }
    }

    pub fn dim(&self) -> usize {
        self.owner.len() + self.ratios.len()
    }

    /// Encodes one row (cells in column order; absent cells are missing).
    pub fn encode(&self, row: &[Cell]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.dim());
        for (c, enc) in self.encodings.iter().enumerate() {
            let cell = row.get(c).unwrap_or(&Cell::Missing);
            match enc {
                ColumnEncoding::Numeric {
                    median,
                    mean,
                    std,
                    missing_indicator,
                    knots,
                    log,
                } => {
                    let (v, missing) = match cell {
                        Cell::Num(v) if v.is_finite() => (*v, false),
                        _ => (*median, true),
                    };
                    let z = ((v - mean) / std).clamp(-8.0, 8.0);
                    out.push(z as f32);
                    if *missing_indicator {
                        out.push(if missing { 1.0 } else { 0.0 });
                    }
                    for k in knots {
                        out.push((z - k).max(0.0) as f32);
                    }
                    if let Some((m, sd)) = log {
                        out.push(((v.max(0.0).ln_1p() - m) / sd).clamp(-8.0, 8.0) as f32);
                    }
                }
                ColumnEncoding::Categorical { levels } => {
                    let start = out.len();
                    out.extend(std::iter::repeat_n(0.0, levels.len() + 2));
                    let slot = match cell {
                        Cell::Cat(s) => levels.binary_search(s).unwrap_or(levels.len()),
                        Cell::Num(v) if v.is_finite() => {
                            levels.binary_search(&v.to_string()).unwrap_or(levels.len())
                        }
                        _ => levels.len() + 1,
                    };
                    out[start + slot] = 1.0;
                }
            }
        }
        for r in &self.ratios {
            let m = &Cell::Missing;
            let v = self.log_value(r.a, row.get(r.a).unwrap_or(m))
                - self.log_value(r.b, row.get(r.b).unwrap_or(m));
            out.push(((v - r.mean) / r.std).clamp(-8.0, 8.0) as f32);
        }
        out
    }
}

// ------------------------------------------------------------------------------------------
// Gradient-boosted trees (histogram, depth-limited, Newton leaves on log loss): shared with the
// demand-forecast service's global model.

pub use augur_model::gbdt::{Gbdt, GbdtParams, Node};

// ------------------------------------------------------------------------------------------
// Isolation forest

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum INode {
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
    Leaf(usize),
}

/// Isolation forest (Liu et al. 2008) over dense rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IsolationForest {
    pub trees: Vec<Vec<INode>>,
    pub sample: usize,
    /// Sorted raw scores of the training rows (a subsample), for the percentile score.
    pub reference: Vec<f32>,
}

fn c_factor(n: usize) -> f64 {
    if n <= 1 {
        return 0.0;
    }
    let n = n as f64;
    2.0 * ((n - 1.0).ln() + 0.577_215_664_9) - 2.0 * (n - 1.0) / n
}

impl IsolationForest {
    pub fn fit(x: &[Vec<f32>], trees: usize, sample: usize, seed: u64) -> IsolationForest {
        let mut rng = StdRng::seed_from_u64(seed);
        let sample = sample.min(x.len()).max(2);
        let limit = (sample as f64).log2().ceil() as usize;
        let mut forest = IsolationForest {
            trees: Vec::with_capacity(trees),
            sample,
            reference: Vec::new(),
        };
        let all: Vec<usize> = (0..x.len()).collect();
        for _ in 0..trees {
            let rows: Vec<usize> = all.choose_multiple(&mut rng, sample).copied().collect();
            let mut nodes = Vec::new();
            grow(&mut nodes, x, rows, 0, limit, &mut rng);
            forest.trees.push(nodes);
        }
        let step = (x.len() / 2000).max(1);
        let mut reference: Vec<f32> = x.iter().step_by(step).map(|r| forest.raw(r)).collect();
        reference.sort_by(f32::total_cmp);
        forest.reference = reference;
        forest
    }

    /// The classic score `2^(-E[h(x)] / c(sample))` in (0, 1]; higher is more anomalous.
    pub fn raw(&self, x: &[f32]) -> f32 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let mut total = 0.0f64;
        for t in &self.trees {
            let mut i = 0;
            let mut depth = 0.0;
            loop {
                match &t[i] {
                    INode::Leaf(n) => {
                        total += depth + c_factor(*n);
                        break;
                    }
                    INode::Split {
                        feature,
                        threshold,
                        left,
                        right,
                    } => {
                        depth += 1.0;
                        i = if x.get(*feature).copied().unwrap_or(0.0) < *threshold {
                            *left
                        } else {
                            *right
                        };
                    }
                }
            }
        }
        let mean = total / self.trees.len() as f64;
        2f64.powf(-mean / c_factor(self.sample).max(1e-9)) as f32
    }

    /// Share of training rows less anomalous than `x`, in [0, 1].
    pub fn percentile(&self, x: &[f32]) -> f64 {
        let s = self.raw(x);
        if self.reference.is_empty() {
            return s as f64;
        }
        self.reference.partition_point(|&r| r < s) as f64 / self.reference.len() as f64
    }
}

fn grow(
    nodes: &mut Vec<INode>,
    x: &[Vec<f32>],
    rows: Vec<usize>,
    depth: usize,
    limit: usize,
    rng: &mut StdRng,
) -> usize {
    let me = nodes.len();
    nodes.push(INode::Leaf(rows.len()));
    if depth >= limit || rows.len() <= 1 {
        return me;
    }
    let d = x[rows[0]].len();
    // Try a few features until one varies.
    for _ in 0..8 {
        let j = rng.random_range(0..d.max(1));
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for &i in &rows {
            lo = lo.min(x[i][j]);
            hi = hi.max(x[i][j]);
        }
        if hi > lo {
            let t = rng.random_range(lo..hi);
            let (l, r): (Vec<usize>, Vec<usize>) = rows.iter().partition(|&&i| x[i][j] < t);
            let left = grow(nodes, x, l, depth + 1, limit, rng);
            let right = grow(nodes, x, r, depth + 1, limit, rng);
            nodes[me] = INode::Split {
                feature: j,
                threshold: t,
                left,
                right,
            };
            return me;
        }
    }
    me
}

// ------------------------------------------------------------------------------------------
// The supervised tabular model with model selection on a validation split

/// Which learner a [`TabularModel`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Learner {
    /// Logistic regression on the plain encoding (no splines).
    Linear,
    /// Logistic regression with linear-spline hinges on numeric columns.
    Spline,
    /// Gradient-boosted trees.
    Gbdt,
    /// Mean of the spline logistic regression's and the trees' log-odds.
    Blend,
}

impl Learner {
    pub fn name(self) -> &'static str {
        match self {
            Learner::Linear => "logistic",
            Learner::Spline => "spline_logistic",
            Learner::Gbdt => "gbdt",
            Learner::Blend => "blend",
        }
    }
}

/// A candidate configuration: learner, L2 penalty, pairwise log-ratio features.
type Candidate = (Learner, f32, bool);

/// Options of [`TabularModel::fit`].
#[derive(Debug, Clone, PartialEq)]
pub struct FitOptions {
    /// Candidate learners; the best on the validation split (log loss) wins.
    pub learners: Vec<Learner>,
    /// Candidate L2 penalties of the logistic regressions.
    pub l2: Vec<f32>,
    pub knots: usize,
    pub gbdt: GbdtParams,
    pub epochs: usize,
    pub seed: u64,
    /// Also try every learner with pairwise log-ratio features ([`RatioFeature`]); validation
    /// decides.
    pub ratio_features: bool,
    /// After the choice on the validation split, refit the chosen candidate on training +
    /// validation rows, calibrated (Platt) on the out-of-fold margins of this many stratified
    /// folds of them. 0 or 1: serve the candidate fitted on the training rows, calibrated on
    /// the validation rows.
    pub refit_folds: usize,
    /// With this many (>= 2) stratified folds, choose the candidate by the log loss of its
    /// Platt-calibrated out-of-fold predictions over training + validation rows together
    /// instead of by the one validation split; the chosen candidate is then fitted on all of
    /// them, calibrated on its out-of-fold margins. 0 or 1: the validation split chooses.
    pub select_folds: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            learners: vec![
                Learner::Linear,
                Learner::Spline,
                Learner::Gbdt,
                Learner::Blend,
            ],
            l2: vec![1e-4, 1e-3, 1e-2, 3e-2],
            knots: 4,
            gbdt: GbdtParams::default(),
            epochs: 60,
            seed: 42,
            ratio_features: true,
            refit_folds: 5,
            select_folds: 5,
        }
    }
}

/// A fitted, calibrated tabular classifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularModel {
    pub learner: Learner,
    pub encoder: Encoder,
    pub linear: Option<Logistic>,
    pub gbdt: Option<Gbdt>,
    pub platt: Platt,
    /// Mean of each encoded dimension on the training rows (the contribution baseline).
    pub means: Vec<f32>,
    pub l2: f32,
}

/// One column's share of a prediction, in log-odds.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub column: usize,
    pub value: f64,
}

/// A fold number in `0..k` for each row, each class spread evenly over the folds (seeded
/// shuffle within each class, then round robin).
pub fn stratified_folds(labels: &[bool], k: usize, seed: u64) -> Vec<usize> {
    let k = k.max(1);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut fold = vec![0; labels.len()];
    let mut next = 0;
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        for i in idx {
            fold[i] = next % k;
            next += 1;
        }
    }
    fold
}

/// Stratified split of `0..labels.len()` into (first, second) with `fraction` in the second.
pub fn stratified_split(labels: &[bool], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == class).collect();
        idx.shuffle(&mut rng);
        let k = (idx.len() as f64 * fraction).round() as usize;
        b.extend_from_slice(&idx[..k]);
        a.extend_from_slice(&idx[k..]);
    }
    a.sort_unstable();
    b.sort_unstable();
    (a, b)
}

impl TabularModel {
    fn raw_margin(&self, x: &[f32]) -> f64 {
        let lin = self.linear.as_ref().map(|m| m.margin(&sparse(x)) as f64);
        let tree = self.gbdt.as_ref().map(|m| m.margin(x) as f64);
        match (lin, tree) {
            (Some(a), Some(b)) => (a + b) / 2.0,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => 0.0,
        }
    }

    /// Calibrated probability of the positive class.
    pub fn predict(&self, row: &[Cell]) -> f64 {
        self.platt.apply(self.raw_margin(&self.encoder.encode(row)))
    }

    /// Per-column contributions to the (uncalibrated) log-odds relative to the training mean:
    /// exact for the linear part; for trees, the change when the column is set to its
    /// training baseline (imputed median / most frequent level).
    pub fn contributions(&self, row: &[Cell]) -> Vec<Contribution> {
        let x = self.encoder.encode(row);
        let ncol = self.encoder.columns.len();
        let mut out = vec![0.0f64; ncol];
        if let Some(m) = &self.linear {
            let share = if self.gbdt.is_some() { 0.5 } else { 1.0 };
            for (j, (&v, &mu)) in x.iter().zip(&self.means).enumerate() {
                let w = m.weights.get(j).copied().unwrap_or(0.0);
                let c = share * (w * (v - mu)) as f64;
                // A ratio feature's share is split evenly between its two columns.
                match self.encoder.owners(j) {
                    (a, Some(b)) => {
                        out[a] += c / 2.0;
                        out[b] += c / 2.0;
                    }
                    (a, None) => out[a] += c,
                }
            }
        }
        if let Some(g) = &self.gbdt {
            let share = if self.linear.is_some() { 0.5 } else { 1.0 };
            let full = g.margin(&x) as f64;
            for (c, o) in out.iter_mut().enumerate() {
                let mut y = x.clone();
                for (j, v) in y.iter_mut().enumerate() {
                    let (a, b) = self.encoder.owners(j);
                    if a == c || b == Some(c) {
                        *v = self.means[j];
                    }
                }
                *o += share * (full - g.margin(&y) as f64);
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(column, value)| Contribution { column, value })
            .collect()
    }

    fn fit_one(
        table_cols: &[String],
        rows: &[&Vec<Cell>],
        y: &[bool],
        (learner, l2, ratios): Candidate,
        o: &FitOptions,
    ) -> TabularModel {
        let mut models = Self::fit_group(table_cols, rows, y, (learner, ratios), &[l2], o);
        models.swap_remove(0)
    }

    /// One model per L2 penalty of `l2s` for `learner` (with or without ratio features): the
    /// encoder and the trees do not depend on the penalty, so they are fitted once and shared.
    fn fit_group(
        table_cols: &[String],
        rows: &[&Vec<Cell>],
        y: &[bool],
        (learner, ratios): (Learner, bool),
        l2s: &[f32],
        o: &FitOptions,
    ) -> Vec<TabularModel> {
        let knots = if learner == Learner::Linear || learner == Learner::Gbdt {
            0
        } else {
            o.knots
        };
        let encoder = Encoder::fit(
            table_cols,
            rows,
            knots,
            5,
            matches!(learner, Learner::Spline | Learner::Blend),
            ratios,
        );
        let x: Vec<Vec<f32>> = rows.iter().map(|r| encoder.encode(r)).collect();
        let dim = encoder.dim();
        let mut means = vec![0.0f32; dim];
        for r in &x {
            for (m, v) in means.iter_mut().zip(r) {
                *m += v / x.len().max(1) as f32;
            }
        }
        let gbdt =
            matches!(learner, Learner::Gbdt | Learner::Blend).then(|| Gbdt::fit(&x, y, &o.gbdt));
        let sx: Vec<_> = if dim > 400 {
            x.iter().map(|r| sparse(r)).collect()
        } else {
            Vec::new()
        };
        l2s.iter()
            .map(|&l2| {
                let linear = matches!(learner, Learner::Linear | Learner::Spline | Learner::Blend)
                    .then(|| {
                        if dim <= 400 {
                            return Logistic::fit_newton(&x, y, l2, 50);
                        }
                        Logistic::fit(
                            &sx,
                            y,
                            dim,
                            &LogisticParams {
                                l2,
                                epochs: o.epochs,
                                batch: 64,
                                learning_rate: 0.02,
                                positive_weight: 1.0,
                                seed: o.seed,
                            },
                        )
                    });
                TabularModel {
                    learner,
                    encoder: encoder.clone(),
                    linear,
                    gbdt: gbdt.clone(),
                    platt: Platt { a: 1.0, b: 0.0 },
                    means: means.clone(),
                    l2,
                }
            })
            .collect()
    }

    /// [`Self::candidates`] grouped by (learner, ratio features), in the same order, each with
    /// its penalties.
    fn candidate_groups(o: &FitOptions) -> Vec<((Learner, bool), Vec<f32>)> {
        let mut groups: Vec<((Learner, bool), Vec<f32>)> = Vec::new();
        for (learner, l2, ratios) in Self::candidates(o) {
            match groups.last_mut() {
                Some((key, l2s)) if *key == (learner, ratios) => l2s.push(l2),
                _ => groups.push(((learner, ratios), vec![l2])),
            }
        }
        groups
    }

    /// Fits every candidate (learner x L2) on `train`, picks the one with the lowest validation
    /// log loss, calibrates it (Platt) on `valid`; then, with [`FitOptions::refit_folds`] >= 2,
    /// refits that candidate on `train` + `valid` and calibrates it on out-of-fold margins (see
    /// [`TabularModel::refit`]). Returns the model and the chosen candidate's validation metrics
    /// (plus `refit_rows` and the out-of-fold `oof_roc_auc` / `oof_log_loss` when refitted).
    pub fn fit(
        columns: &[String],
        train: (&[&Vec<Cell>], &[bool]),
        valid: (&[&Vec<Cell>], &[bool]),
        o: &FitOptions,
    ) -> (TabularModel, std::collections::BTreeMap<String, f64>) {
        if o.select_folds >= 2 {
            let rows: Vec<&Vec<Cell>> = train.0.iter().chain(valid.0).copied().collect();
            let y: Vec<bool> = train.1.iter().chain(valid.1).copied().collect();
            if let Some(out) = Self::fit_cross_validated(columns, &rows, &y, o) {
                return out;
            }
        }
        let mut best: Option<(f64, TabularModel)> = None;
        let fitted = Self::candidate_groups(o)
            .into_iter()
            .flat_map(|(group, l2s)| Self::fit_group(columns, train.0, train.1, group, &l2s, o));
        for m in fitted {
            let (learner, l2, ratios) = (m.learner, m.l2, !m.encoder.ratios.is_empty());
            let p: Vec<f64> = valid
                .0
                .iter()
                .map(|r| augur_model::calibrate::sigmoid(m.raw_margin(&m.encoder.encode(r))))
                .collect();
            let ll = metrics::log_loss(&p, valid.1);
            tracing::debug!(
                learner = learner.name(),
                l2,
                ratios,
                log_loss = ll,
                "candidate"
            );
            if best.as_ref().is_none_or(|(b, _)| ll < *b) {
                best = Some((ll, m));
            }
        }
        let Some((_, mut model)) = best else {
            return (
                Self::fit_one(columns, train.0, train.1, (Learner::Linear, 1e-3, false), o),
                Default::default(),
            );
        };
        let margins: Vec<f64> = valid
            .0
            .iter()
            .map(|r| model.raw_margin(&model.encoder.encode(r)))
            .collect();
        if valid.1.iter().any(|&b| b) && valid.1.iter().any(|&b| !b) {
            model.platt = Platt::fit(&margins, valid.1);
        }
        let p: Vec<f64> = margins.iter().map(|&m| model.platt.apply(m)).collect();
        let mut vm = std::collections::BTreeMap::new();
        if let Some(a) = metrics::roc_auc(&p, valid.1) {
            vm.insert("roc_auc".into(), a);
        }
        if let Some(a) = metrics::pr_auc(&p, valid.1) {
            vm.insert("pr_auc".into(), a);
        }
        vm.insert("brier".into(), metrics::brier(&p, valid.1));
        vm.insert("log_loss".into(), metrics::log_loss(&p, valid.1));
        if o.refit_folds >= 2 {
            let rows: Vec<&Vec<Cell>> = train.0.iter().chain(valid.0).copied().collect();
            let y: Vec<bool> = train.1.iter().chain(valid.1).copied().collect();
            if let Some((refit, oof)) = Self::refit(columns, &rows, &y, &model, o) {
                vm.insert("refit_rows".into(), rows.len() as f64);
                if let Some(a) = metrics::roc_auc(&oof, &y) {
                    vm.insert("oof_roc_auc".into(), a);
                }
                vm.insert("oof_log_loss".into(), metrics::log_loss(&oof, &y));
                model = refit;
            }
        }
        (model, vm)
    }

    /// Every candidate configuration of `o`.
    fn candidates(o: &FitOptions) -> Vec<Candidate> {
        let ratio_choices: &[bool] = if o.ratio_features {
            &[false, true]
        } else {
            &[false]
        };
        let mut out = Vec::new();
        for &learner in &o.learners {
            for &ratios in ratio_choices {
                let l2s: &[f32] = if learner == Learner::Gbdt {
                    &[0.0]
                } else {
                    &o.l2
                };
                out.extend(l2s.iter().map(|&l2| (learner, l2, ratios)));
            }
        }
        out
    }

    /// Raw margins of each row from each penalty of `group` fitted without that row's fold
    /// (`fold[i]` in `0..k`): `out[penalty][row]`. The folds are fitted on all cores; the
    /// result does not depend on their number.
    #[allow(clippy::too_many_arguments)]
    fn oof_margins(
        columns: &[String],
        rows: &[&Vec<Cell>],
        y: &[bool],
        group: (Learner, bool),
        l2s: &[f32],
        fold: &[usize],
        k: usize,
        o: &FitOptions,
    ) -> Vec<Vec<f64>> {
        // Per penalty, the (row, margin) pairs of one fold's held-out rows.
        type FoldMargins = Vec<Vec<(usize, f64)>>;
        let one_fold = |f: usize| -> FoldMargins {
            let (fit_rows, fit_y): (Vec<&Vec<Cell>>, Vec<bool>) = (0..rows.len())
                .filter(|&i| fold[i] != f)
                .map(|i| (rows[i], y[i]))
                .unzip();
            Self::fit_group(columns, &fit_rows, &fit_y, group, l2s, o)
                .iter()
                .map(|m| {
                    (0..rows.len())
                        .filter(|&i| fold[i] == f)
                        .map(|i| (i, m.raw_margin(&m.encoder.encode(rows[i]))))
                        .collect()
                })
                .collect()
        };
        let per_fold: Vec<FoldMargins> = augur_model::par::par_map(k, one_fold);
        let mut out = vec![vec![0.0f64; rows.len()]; l2s.len()];
        for fold_margins in per_fold {
            for (p, margins) in fold_margins.into_iter().enumerate() {
                for (i, m) in margins {
                    out[p][i] = m;
                }
            }
        }
        out
    }

    /// [`FitOptions::select_folds`]: every candidate scored by the log loss of its Platt-
    /// calibrated out-of-fold predictions, the best fitted on all rows with that calibration;
    /// its metrics (`roc_auc`, `pr_auc`, `brier`, `log_loss`, as the validation split's would
    /// be) are those out-of-fold predictions'.
    /// `None` when a class has fewer rows than folds.
    fn fit_cross_validated(
        columns: &[String],
        rows: &[&Vec<Cell>],
        y: &[bool],
        o: &FitOptions,
    ) -> Option<(TabularModel, std::collections::BTreeMap<String, f64>)> {
        let k = o.select_folds;
        let positives = y.iter().filter(|&&b| b).count();
        if k < 2 || positives < k || y.len() - positives < k {
            return None;
        }
        let fold = stratified_folds(y, k, o.seed);
        let mut best: Option<(f64, Candidate, Platt, Vec<f64>)> = None;
        let scored = Self::candidate_groups(o)
            .into_iter()
            .flat_map(|(group, l2s)| {
                let oofs = Self::oof_margins(columns, rows, y, group, &l2s, &fold, k, o);
                l2s.into_iter()
                    .zip(oofs)
                    .map(move |(l2, oof)| ((group.0, l2, group.1), oof))
                    .collect::<Vec<_>>()
            });
        for (config, oof) in scored {
            let platt = Platt::fit(&oof, y);
            let p: Vec<f64> = oof.iter().map(|&m| platt.apply(m)).collect();
            let ll = metrics::log_loss(&p, y);
            tracing::debug!(
                learner = config.0.name(),
                l2 = config.1,
                ratios = config.2,
                cv_log_loss = ll,
                "candidate"
            );
            if best.as_ref().is_none_or(|(b, ..)| ll < *b) {
                best = Some((ll, config, platt, p));
            }
        }
        let (ll, config, platt, p) = best?;
        let mut model = Self::fit_one(columns, rows, y, config, o);
        model.platt = platt;
        let mut vm = std::collections::BTreeMap::new();
        vm.insert("cv_folds".into(), k as f64);
        vm.insert("cv_log_loss".into(), ll);
        vm.insert("refit_rows".into(), rows.len() as f64);
        vm.insert("oof_log_loss".into(), ll);
        // The usual validation keys, here of the out-of-fold predictions over every row.
        if let Some(a) = metrics::roc_auc(&p, y) {
            vm.insert("oof_roc_auc".into(), a);
            vm.insert("roc_auc".into(), a);
        }
        if let Some(a) = metrics::pr_auc(&p, y) {
            vm.insert("pr_auc".into(), a);
        }
        vm.insert("brier".into(), metrics::brier(&p, y));
        vm.insert("log_loss".into(), ll);
        Some((model, vm))
    }

    /// `chosen`'s learner, L2 and ratio features fitted on all `rows`, with the Platt
    /// calibration of the out-of-fold margins of [`FitOptions::refit_folds`] stratified folds
    /// (each margin from the same candidate fitted without that row's fold), and those
    /// calibrated out-of-fold probabilities. `None` when a class is missing or a fold would
    /// hold no row of one class.
    pub fn refit(
        columns: &[String],
        rows: &[&Vec<Cell>],
        y: &[bool],
        chosen: &TabularModel,
        o: &FitOptions,
    ) -> Option<(TabularModel, Vec<f64>)> {
        let k = o.refit_folds;
        let positives = y.iter().filter(|&&b| b).count();
        if k < 2 || positives < k || y.len() - positives < k {
            return None;
        }
        let config = (chosen.learner, chosen.l2, !chosen.encoder.ratios.is_empty());
        let fold = stratified_folds(y, k, o.seed);
        let oof = Self::oof_margins(
            columns,
            rows,
            y,
            (config.0, config.2),
            &[config.1],
            &fold,
            k,
            o,
        )
        .swap_remove(0);
        let platt = Platt::fit(&oof, y);
        let mut model = Self::fit_one(columns, rows, y, config, o);
        model.platt = platt;
        let p = oof.iter().map(|&m| model.platt.apply(m)).collect();
        Some((model, p))
    }
}

/// Seeded random number generator helper for callers.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize, seed: u64) -> (Vec<Vec<Cell>>, Vec<bool>) {
        let mut r = rng(seed);
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a: f64 = r.random_range(-2.0..2.0);
            let cat = if r.random_bool(0.5) { "x" } else { "y" };
            let z = 1.5 * a * a - 2.0 + if cat == "x" { 1.0 } else { -1.0 };
            let p = 1.0 / (1.0 + (-z).exp());
            let a_cell = if r.random_bool(0.1) {
                Cell::Missing
            } else {
                Cell::Num(a)
            };
            rows.push(vec![a_cell, Cell::Cat(cat.into())]);
            y.push(r.random_bool(p));
        }
        (rows, y)
    }

    /// A stratified 70/30 (train, validation) split of test rows.
    #[allow(clippy::type_complexity)]
    fn split_70_30<'a>(
        rows: &'a [Vec<Cell>],
        y: &[bool],
    ) -> (
        (Vec<&'a Vec<Cell>>, Vec<bool>),
        (Vec<&'a Vec<Cell>>, Vec<bool>),
    ) {
        let (tr, va) = stratified_split(y, 0.3, 7);
        let pick = |ix: &[usize]| -> (Vec<&'a Vec<Cell>>, Vec<bool>) {
            (
                ix.iter().map(|&i| &rows[i]).collect(),
                ix.iter().map(|&i| y[i]).collect(),
            )
        };
        (pick(&tr), pick(&va))
    }

    #[test]
    fn stratified_folds_spread_each_class_evenly() {
        let y: Vec<bool> = (0..103).map(|i| i % 7 == 0).collect();
        let f = stratified_folds(&y, 5, 3);
        for k in 0..5 {
            let n = f.iter().filter(|&&x| x == k).count();
            let pos = (0..y.len()).filter(|&i| f[i] == k && y[i]).count();
            assert!((20..=21).contains(&n), "fold {k}: {n} rows");
            assert!((2..=4).contains(&pos), "fold {k}: {pos} positives");
        }
        assert_eq!(f, stratified_folds(&y, 5, 3));
    }

    /// Quick fits for the toy tables: 40 trees, 30 epochs, one L2 penalty.
    fn small_options() -> FitOptions {
        FitOptions {
            gbdt: GbdtParams {
                trees: 40,
                ..Default::default()
            },
            epochs: 30,
            l2: vec![1e-3],
            ..Default::default()
        }
    }

    /// The refit keeps the chosen candidate, uses every row, and its out-of-fold probabilities
    /// are calibrated; too few positives for the folds keeps the model fitted on `train`.
    #[test]
    fn refit_keeps_the_choice_and_uses_all_rows() {
        let cols = vec!["a".to_string(), "c".to_string()];
        let (rows, y) = toy(600, 5);
        let ((trx, tryy), (vax, vay)) = split_70_30(&rows, &y);
        let base = FitOptions {
            refit_folds: 0,
            // The validation split chooses (the refit is what is tested here).
            select_folds: 0,
            ..small_options()
        };
        let (plain, vm0) = TabularModel::fit(&cols, (&trx, &tryy), (&vax, &vay), &base);
        let (refit, vm) = TabularModel::fit(
            &cols,
            (&trx, &tryy),
            (&vax, &vay),
            &FitOptions {
                refit_folds: 5,
                ..base.clone()
            },
        );
        assert_eq!((refit.learner, refit.l2), (plain.learner, plain.l2));
        assert_eq!(vm["refit_rows"], (trx.len() + vax.len()) as f64);
        assert_eq!(vm0.get("refit_rows"), None);
        assert!(vm["oof_roc_auc"] > 0.75, "{vm:?}");
        assert!(refit.platt != plain.platt);
        // Too few positives for 5 folds: no refit.
        let few: Vec<bool> = (0..vay.len()).map(|i| i < 2).collect();
        let none: Vec<bool> = vec![false; tryy.len()];
        let all: Vec<&Vec<Cell>> = trx.iter().chain(&vax).copied().collect();
        let ally: Vec<bool> = none.iter().chain(&few).copied().collect();
        assert!(TabularModel::refit(&cols, &all, &ally, &plain, &FitOptions::default()).is_none());
        assert!(TabularModel::refit(&cols, &all, &ally, &plain, &base).is_none());
    }

    #[test]
    fn cross_validated_selection_uses_every_row_and_calibrates_out_of_fold() {
        let cols = vec!["a".to_string(), "c".to_string()];
        let (rows, y) = toy(1500, 1);
        let ((trx, try_), (vax, vay)) = split_70_30(&rows, &y);
        let o = FitOptions {
            select_folds: 4,
            ..small_options()
        };
        let (m, vm) = TabularModel::fit(&cols, (&trx, &try_), (&vax, &vay), &o);
        assert_ne!(
            m.learner,
            Learner::Linear,
            "a quadratic effect needs splines or trees"
        );
        assert_eq!(vm["cv_folds"], 4.0);
        assert_eq!(vm["refit_rows"], rows.len() as f64);
        assert!(vm["oof_roc_auc"] > 0.75, "{vm:?}");
        // The usual keys report the out-of-fold predictions.
        assert_eq!(vm["roc_auc"], vm["oof_roc_auc"]);
        assert_eq!(vm["log_loss"], vm["cv_log_loss"]);
        // The served candidate is the one with the lowest cross-validated log loss: refitting
        // each candidate alone the same way gives no lower one.
        for learner in [
            Learner::Linear,
            Learner::Spline,
            Learner::Gbdt,
            Learner::Blend,
        ] {
            let (_, alone) = TabularModel::fit(
                &cols,
                (&trx, &try_),
                (&vax, &vay),
                &FitOptions {
                    learners: vec![learner],
                    ..o.clone()
                },
            );
            assert!(
                alone["cv_log_loss"] >= vm["cv_log_loss"] - 1e-12,
                "{learner:?}"
            );
        }
        // The penalties of one learner share its encoder and trees: the same models as fitting
        // each alone.
        let l2s = [1e-3f32, 3e-2];
        let group = TabularModel::fit_group(&cols, &trx, &try_, (Learner::Blend, true), &l2s, &o);
        for (m, &l2) in group.iter().zip(&l2s) {
            let alone = TabularModel::fit_one(&cols, &trx, &try_, (Learner::Blend, l2, true), &o);
            assert_eq!(m, &alone);
        }
        assert_ne!(group[0].linear, group[1].linear);
        // Too few positives for the folds: back to the validation split.
        let few: Vec<bool> = (0..try_.len()).map(|i| i < 3).collect();
        let none = vec![false; vay.len()];
        let (_, vm2) = TabularModel::fit(&cols, (&trx, &few), (&vax, &none), &o);
        assert_eq!(vm2.get("cv_folds"), None);
    }

    #[test]
    fn selects_a_nonlinear_learner_and_calibrates() {
        let cols = vec!["a".to_string(), "c".to_string()];
        let (rows, y) = toy(1500, 1);
        let ((trx, try_), (vax, vay)) = split_70_30(&rows, &y);
        let o = small_options();
        let (m, vm) = TabularModel::fit(&cols, (&trx, &try_), (&vax, &vay), &o);
        assert_ne!(
            m.learner,
            Learner::Linear,
            "a quadratic effect needs splines or trees"
        );
        assert!(vm["roc_auc"] > 0.75, "{vm:?}");
        let p = m.predict(&[Cell::Num(1.9), Cell::Cat("x".into())]);
        let q = m.predict(&[Cell::Num(0.0), Cell::Cat("y".into())]);
        assert!(p > q, "{p} {q}");
        let c = m.contributions(&[Cell::Num(1.9), Cell::Cat("x".into())]);
        assert!(c[0].value > 0.0, "{c:?}");
        // missing values and unknown levels are handled
        let _ = m.predict(&[Cell::Missing, Cell::Cat("zzz".into())]);
    }

    /// Risk that depends on a ratio (amount against price) and on neither column alone: a
    /// logistic regression finds it only with the ratio features, validation picks them, and
    /// the linear contributions (split between the two columns) still add up to the margin.
    #[test]
    fn ratio_features_are_chosen_when_the_signal_is_a_ratio() {
        let cols = vec![
            "amount".to_string(),
            "price".to_string(),
            "noise".to_string(),
        ];
        let mut r = rng(3);
        let mut rows = Vec::new();
        let mut y = Vec::new();
        for _ in 0..2000 {
            let price: f64 = (r.random_range(4.0..9.0f64)).exp();
            let amount = price * r.random_range(0.2..1.2f64);
            let z = 6.0 * ((1.0 + amount).ln() - (1.0 + price).ln() + 0.45);
            y.push(r.random_bool(1.0 / (1.0 + (-z).exp())));
            let amount = if r.random_bool(0.05) {
                Cell::Missing
            } else {
                Cell::Num(amount)
            };
            rows.push(vec![
                amount,
                Cell::Num(price),
                Cell::Num(r.random_range(0.0..1.0)),
            ]);
        }
        let ((trx, try_), (vax, vay)) = split_70_30(&rows, &y);
        let o = FitOptions {
            learners: vec![Learner::Linear],
            l2: vec![1e-3],
            ..Default::default()
        };
        let (m, vm) = TabularModel::fit(&cols, (&trx, &try_), (&vax, &vay), &o);
        assert_eq!(
            m.encoder.ratios.len(),
            3,
            "three non-negative columns, three pairs"
        );
        assert!(vm["roc_auc"] > 0.85, "{vm:?}");
        let without = TabularModel::fit(
            &cols,
            (&trx, &try_),
            (&vax, &vay),
            &FitOptions {
                ratio_features: false,
                ..o.clone()
            },
        );
        assert!(without.0.encoder.ratios.is_empty());
        assert!(
            vm["log_loss"] < without.1["log_loss"] - 0.04 && vm["roc_auc"] > without.1["roc_auc"],
            "with ratios {vm:?}, without {:?}",
            without.1
        );
        // Linear contributions sum to the margin minus the margin at the training means.
        let row = vec![Cell::Num(900.0), Cell::Num(1000.0), Cell::Num(0.5)];
        let x = m.encoder.encode(&row);
        assert_eq!(x.len(), m.encoder.dim());
        let lin = m.linear.as_ref().expect("linear");
        let margin = lin.margin(&sparse(&x)) as f64;
        let base = lin.margin(&sparse(&m.means)) as f64;
        let total: f64 = m.contributions(&row).iter().map(|c| c.value).sum();
        assert!(
            (total - (margin - base)).abs() < 1e-3,
            "{total} vs {}",
            margin - base
        );
        // A high amount-to-price ratio is riskier than a low one at the same price.
        assert!(
            m.predict(&row) > m.predict(&[Cell::Num(300.0), Cell::Num(1000.0), Cell::Num(0.5)])
        );
        // A negative value never seen in training is still encoded finitely.
        let odd = m
            .encoder
            .encode(&[Cell::Num(-5.0), Cell::Missing, Cell::Num(f64::NAN)]);
        assert!(odd.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn isolation_forest_flags_outliers() {
        let mut r = rng(3);
        let x: Vec<Vec<f32>> = (0..500)
            .map(|_| vec![r.random_range(-1.0..1.0), r.random_range(-1.0..1.0)])
            .collect();
        let f = IsolationForest::fit(&x, 50, 128, 5);
        assert!(f.percentile(&[6.0, 6.0]) > 0.95);
        assert!(f.percentile(&[0.0, 0.0]) < 0.6);
    }
}
