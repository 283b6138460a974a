//! Gradient-boosted regression trees over dense `f32` rows: histogram splits on quantile bins,
//! depth-limited trees grown level by level or, with [`GbdtParams::leaves`], best-first (the
//! leaf with the largest gain split next, LightGBM's leaf-wise growth), Newton leaves
//! (`-G / (H + l2)`), row subsampling. Three losses: log loss
//! ([`Gbdt::fit`], the output is the log-odds; the risk service's tabular learner), squared
//! error ([`Gbdt::fit_squared`]; the demand-forecast service's global direct model) and absolute
//! error ([`Gbdt::fit_absolute`]: the conditional median; trees split on the gradient signs and
//! each leaf then takes the median residual of its rows, as LightGBM's L1 objective does).
//!
//! A node's histogram (per bin of every feature: sums of gradients, Hessians and rows) is built
//! from its gradients gathered in row order (LightGBM's ordered gradients), over the features on
//! all cores for large nodes; of a split node's two children only the smaller's is built, the
//! larger's is the parent's minus it (histogram subtraction). The split chosen (largest gain,
//! ties to the lower feature and bin) and so the trees are the same whatever the core count.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

/// A regression tree node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Node {
    Split {
        feature: usize,
        threshold: f32,
        left: usize,
        right: usize,
    },
    Leaf(f32),
    /// A categorical split: rows whose value is one of `values` (sorted) go left, every other
    /// value (including one unseen in training) right.
    SplitIn {
        feature: usize,
        values: Vec<f32>,
        left: usize,
        right: usize,
    },
}

/// Hyper-parameters of [`Gbdt::fit`] and [`Gbdt::fit_squared`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GbdtParams {
    pub trees: usize,
    pub depth: usize,
    pub learning_rate: f32,
    pub min_leaf: usize,
    pub l2: f32,
    /// Quantile bins per feature (at most 256).
    pub bins: usize,
    pub subsample: f64,
    pub seed: u64,
    /// 0: every node splits down to `depth` (level-wise). Otherwise trees grow best-first to at
    /// most this many leaves (`depth` still caps their depth).
    pub leaves: usize,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            trees: 200,
            depth: 3,
            learning_rate: 0.05,
            min_leaf: 20,
            l2: 1.0,
            bins: 32,
            subsample: 0.8,
            seed: 42,
            leaves: 0,
        }
    }
}

/// Boosted trees; [`Gbdt::margin`] is the sum of the base and the trees' scaled leaves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub base: f32,
    pub learning_rate: f32,
    pub trees: Vec<Vec<Node>>,
}

/// Rows at or above which a node's split search is spread over the cores.
const PARALLEL_ROWS: usize = 16_384;

fn leaf_of(tree: &[Node], x: &[f32]) -> f32 {
    match tree.get(leaf_index(tree, x)) {
        Some(Node::Leaf(v)) => *v,
        _ => 0.0,
    }
}

/// The index of the leaf that row `x` reaches.
fn leaf_index(tree: &[Node], x: &[f32]) -> usize {
    let mut i = 0;
    loop {
        match &tree[i] {
            Node::Leaf(_) => return i,
            Node::Split {
                feature,
                threshold,
                left,
                right,
            } => {
                i = if x.get(*feature).copied().unwrap_or(0.0) <= *threshold {
                    *left
                } else {
                    *right
                };
            }
            Node::SplitIn {
                feature,
                values,
                left,
                right,
            } => {
                let v = x.get(*feature).copied().unwrap_or(0.0);
                i = if values.binary_search_by(|c| c.total_cmp(&v)).is_ok() {
                    *left
                } else {
                    *right
                };
            }
        }
    }
}

impl Gbdt {
    /// The model's output for one row: log-odds after [`Gbdt::fit`], the prediction after
    /// [`Gbdt::fit_squared`]. Missing trailing features count as 0.
    pub fn margin(&self, x: &[f32]) -> f32 {
        self.base
            + self
                .trees
                .iter()
                .map(|t| self.learning_rate * leaf_of(t, x))
                .sum::<f32>()
    }

    /// Log-loss boosting for labels `y` (`margin` = log-odds).
    pub fn fit(x: &[Vec<f32>], y: &[bool], p: &GbdtParams) -> Gbdt {
        Self::logistic(x, y, p, Run::all_cores())
    }

    /// Squared-error boosting for targets `y` (`margin` = the prediction); the base is their
    /// mean.
    pub fn fit_squared(x: &[Vec<f32>], y: &[f32], p: &GbdtParams) -> Gbdt {
        Self::regression(x, y, p, false, &[], Run::all_cores())
    }

    /// Absolute-error boosting for targets `y` (`margin` = the conditional median); the base is
    /// their median.
    pub fn fit_absolute(x: &[Vec<f32>], y: &[f32], p: &GbdtParams) -> Gbdt {
        Self::regression(x, y, p, true, &[], Run::all_cores())
    }

    /// [`Gbdt::fit_squared`] (`absolute` false) or [`Gbdt::fit_absolute`] with the features
    /// `categorical` split as categories: codes (at most 256 distinct values) that a node
    /// divides into two sets, LightGBM's way: its categories ordered by their mean gradient
    /// (smoothed), the best prefix of that order going left.
    pub fn fit_regression(
        x: &[Vec<f32>],
        y: &[f32],
        p: &GbdtParams,
        absolute: bool,
        categorical: &[usize],
    ) -> Gbdt {
        Self::regression(x, y, p, absolute, categorical, Run::all_cores())
    }

    /// [`Gbdt::fit_regression`] with a large node's histogram built on `threads` threads (the
    /// trees are the same bit for bit for any count): 1 when the caller fits several models
    /// side by side on the cores.
    pub fn fit_regression_on(
        x: &[Vec<f32>],
        y: &[f32],
        p: &GbdtParams,
        absolute: bool,
        categorical: &[usize],
        threads: usize,
    ) -> Gbdt {
        let run = Run {
            threads: threads.max(1),
            ..Run::all_cores()
        };
        Self::regression(x, y, p, absolute, categorical, run)
    }

    fn logistic(x: &[Vec<f32>], y: &[bool], p: &GbdtParams, run: Run) -> Gbdt {
        let n = x.len();
        let pos = y.iter().filter(|&&b| b).count() as f32;
        let prior = ((pos + 0.5) / (n as f32 + 1.0)).clamp(1e-4, 1.0 - 1e-4);
        let base = (prior / (1.0 - prior)).ln();
        fit_with(x, base, p, &[], run, None, |f, g, h| {
            for i in 0..f.len() {
                let q = 1.0 / (1.0 + (-f[i]).exp());
                g[i] = q - if y[i] { 1.0 } else { 0.0 };
                h[i] = (q * (1.0 - q)).max(1e-6);
            }
        })
    }

    /// Squared-error (`absolute` false: base the mean, Newton leaves) or absolute-error
    /// boosting (base the median; the trees split on the gradient signs and each leaf then
    /// takes the median of its rows' residuals, since the Newton step of sign gradients would
    /// only count them).
    fn regression(
        x: &[Vec<f32>],
        y: &[f32],
        p: &GbdtParams,
        absolute: bool,
        categorical: &[usize],
        run: Run,
    ) -> Gbdt {
        let renew = |rows: &[usize], f: &[f32]| median(rows.iter().map(|&i| y[i] - f[i]).collect());
        let (base, renew): (f32, Option<Renew>) = if absolute {
            (median(y.to_vec()), Some(&renew))
        } else {
            let n = y.len().max(1);
            (
                (y.iter().map(|v| *v as f64).sum::<f64>() / n as f64) as f32,
                None,
            )
        };
        fit_with(x, base, p, categorical, run, renew, |f, g, h| {
            for i in 0..f.len() {
                let r = f[i] - y[i];
                g[i] = if !absolute {
                    r
                } else if r > 0.0 {
                    1.0
                } else if r < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                h[i] = 1.0;
            }
        })
    }
}

/// The median of `v` (0 when empty; the mean of the middle two for an even count).
fn median(mut v: Vec<f32>) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let k = v.len() / 2;
    let (_, hi, _) = v.select_nth_unstable_by(k, f32::total_cmp);
    let hi = *hi;
    if v.len() % 2 == 1 {
        return hi;
    }
    let lo = v[..k].iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (lo + hi) / 2.0
}

/// Replaces a leaf's value by a function of the rows (of the tree's sample) in it and the
/// current outputs.
type Renew<'a> = &'a dyn Fn(&[usize], &[f32]) -> f32;

/// How a fit runs: the threads a large node's histogram is built on, and whether a split
/// node's larger child takes its histogram as the parent's minus the smaller child's
/// (LightGBM's histogram subtraction; off only in tests that compare the two).
#[derive(Debug, Clone, Copy)]
struct Run {
    threads: usize,
    subtract: bool,
    /// Move every row's output by routing it through each new tree (as prediction does)
    /// instead of by the leaf the build put it in (the same leaves, missing values included;
    /// on only in a test that compares the two).
    route: bool,
}

impl Run {
    fn all_cores() -> Run {
        Run {
            threads: std::thread::available_parallelism()
                .map(std::num::NonZeroUsize::get)
                .unwrap_or(1),
            subtract: true,
            route: false,
        }
    }
}

/// Boosting with the gradients and Hessians `grad(f, g, h)` writes for the current outputs `f`;
/// large nodes build their histograms as `run` says; `renew`, when given, sets every leaf's
/// value from its rows once the tree is grown; the features `categorical` (with at most 256
/// distinct values; others stay numeric) split as categories.
fn fit_with(
    x: &[Vec<f32>],
    base: f32,
    p: &GbdtParams,
    categorical: &[usize],
    run: Run,
    renew: Option<Renew>,
    grad: impl Fn(&[f32], &mut [f32], &mut [f32]),
) -> Gbdt {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    let bins = p.bins.clamp(2, 256);
    // Candidate thresholds per feature: quantiles of the training values; a categorical
    // feature's "cuts" are its values (a bin per category).
    let mut cuts: Vec<Vec<f32>> = Vec::with_capacity(d);
    let mut is_cat = vec![false; d];
    for j in 0..d {
        let mut v: Vec<f32> = x.iter().map(|r| r[j]).collect();
        v.sort_by(f32::total_cmp);
        // Categories are told apart as `SplitIn` tells them (`total_cmp`, NaN one of them).
        v.dedup_by(|a, b| a.total_cmp(b).is_eq());
        if categorical.contains(&j) && v.len() <= 256 {
            is_cat[j] = true;
            cuts.push(v);
            continue;
        }
        // Numeric cuts from the known values; with missing (NaN) values, one fewer quantile and
        // a last cut at +inf: every known value lies left of it, a missing one (in the bin
        // after it) right, where prediction sends it (`NaN <= t` is false).
        let n = v.len();
        v.retain(|v| !v.is_nan());
        let missing = v.len() < n;
        v.dedup();
        let bins = if missing { bins - 1 } else { bins };
        let mut c: Vec<f32> = if v.len() <= bins {
            v.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
        } else {
            let mut c: Vec<f32> = (1..bins).map(|k| v[k * v.len() / bins]).collect();
            c.dedup();
            c
        };
        if missing && c.last() != Some(&f32::INFINITY) {
            c.push(f32::INFINITY);
        }
        cuts.push(c);
    }
    // Binned data by feature (a node's histogram reads one feature's column at a time): a
    // numeric value's bin = number of cuts below it, a missing (NaN) one the last bin, right of
    // every cut; a category's bin = its position among the values (by `total_cmp`, as
    // `SplitIn` matches, NaN included).
    let binned: Vec<Vec<u8>> = (0..d)
        .map(|j| {
            let c = &cuts[j];
            x.iter()
                .map(|r| {
                    let v = r[j];
                    let bin = if is_cat[j] {
                        c.partition_point(|c| c.total_cmp(&v).is_lt())
                    } else if v.is_nan() {
                        c.len()
                    } else {
                        c.partition_point(|&c| c < v)
                    };
                    bin as u8
                })
                .collect()
        })
        .collect();
    let mut model = Gbdt {
        base,
        learning_rate: p.learning_rate,
        trees: Vec::new(),
    };
    let mut f = vec![base; n];
    let mut g = vec![0.0f32; n];
    let mut h = vec![0.0f32; n];
    let mut rng = StdRng::seed_from_u64(p.seed);
    let mut idx: Vec<usize> = (0..n).collect();
    // Feature j's bins sit at offsets[j]..offsets[j + 1] of a node's histogram.
    let mut offsets = Vec::with_capacity(d + 1);
    offsets.push(0);
    for c in &cuts {
        offsets.push(offsets.last().copied().unwrap_or(0) + c.len() + 1);
    }
    let data = Data {
        binned: &binned,
        cuts: &cuts,
        is_cat: &is_cat,
        offsets,
        run,
    };
    for _ in 0..p.trees {
        grad(&f, &mut g, &mut h);
        idx.shuffle(&mut rng);
        let take = ((n as f64) * p.subsample).ceil() as usize;
        let sample = &idx[..take.min(n)];
        let mut tree = Vec::new();
        // Every leaf with the sampled rows the build sent there.
        let leaves = if p.leaves == 0 {
            let mut leaves = Vec::new();
            build(&mut tree, &mut leaves, sample, None, &data, &g, &h, p, 0);
            leaves
        } else {
            build_best_first(&mut tree, sample.to_vec(), &data, &g, &h, p)
        };
        // `Run::route` (tests): every row routed through the tree as prediction routes it.
        if run.route {
            renew_and_update(&mut tree, sample, x, &mut f, p.learning_rate, renew);
            model.trees.push(tree);
            continue;
        }
        if let Some(renew) = renew {
            for (node, rows) in &leaves {
                if let Some(Node::Leaf(v)) = tree.get_mut(*node)
                    && !rows.is_empty()
                {
                    *v = renew(rows, &f);
                }
            }
        }
        // The sampled rows' outputs move by their leaf's value; the rows outside the sample
        // (the rest of the shuffled order, with `subsample` < 1) are routed through the tree.
        for (node, rows) in &leaves {
            let v = match tree.get(*node) {
                Some(Node::Leaf(v)) => *v,
                _ => 0.0,
            };
            for &i in rows {
                f[i] += p.learning_rate * v;
            }
        }
        for &i in &idx[sample.len()..] {
            f[i] += p.learning_rate * leaf_of(&tree, &x[i]);
        }
        model.trees.push(tree);
    }
    model
}

/// Leaf values renewed from the sampled rows each reaches, and every row's output moved by
/// its leaf, with the rows routed through the tree as prediction routes them.
fn renew_and_update(
    tree: &mut [Node],
    sample: &[usize],
    x: &[Vec<f32>],
    f: &mut [f32],
    learning_rate: f32,
    renew: Option<Renew>,
) {
    if let Some(renew) = renew {
        let mut rows: Vec<Vec<usize>> = vec![Vec::new(); tree.len()];
        for &i in sample {
            rows[leaf_index(tree, &x[i])].push(i);
        }
        for (node, rows) in tree.iter_mut().zip(&rows) {
            if let Node::Leaf(v) = node
                && !rows.is_empty()
            {
                *v = renew(rows, f);
            }
        }
    }
    for (fi, row) in f.iter_mut().zip(x) {
        *fi += learning_rate * leaf_of(tree, row);
    }
}

struct Data<'a> {
    binned: &'a [Vec<u8>],
    cuts: &'a [Vec<f32>],
    is_cat: &'a [bool],
    offsets: Vec<usize>,
    run: Run,
}

/// Where a split sends rows left: bins up to this one (numeric), or the bins of a set
/// (categorical; a bit per bin).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    Le(usize),
    In([u64; 4]),
}

impl Cut {
    fn left(&self, bin: usize) -> bool {
        match self {
            Cut::Le(b) => bin <= *b,
            Cut::In(m) => m[bin / 64] >> (bin % 64) & 1 == 1,
        }
    }
}

/// A node's chosen split.
type Split = (f32, usize, Cut);

/// Smoothing of a category's mean gradient when ordering categories, and the extra L2 penalty
/// of categorical splits (LightGBM's `cat_smooth` and `cat_l2`, both 10 by default there).
const CAT_SMOOTH: f32 = 10.0;
const CAT_L2: f32 = 10.0;

/// A node's sums of gradients, Hessians and rows per bin of every feature (feature j's bins
/// at `Data::offsets[j]..offsets[j + 1]`).
#[derive(Debug, Clone, PartialEq)]
struct Hist {
    g: Vec<f32>,
    h: Vec<f32>,
    c: Vec<u32>,
}

/// Adds the rows to the bins of features `first..` (as many as `g.len()` covers), reading
/// `gg[k]` / `hh[k]` as the gradient / Hessian of `rows[k]`.
#[allow(clippy::too_many_arguments)]
fn fill(
    rows: &[usize],
    gg: &[f32],
    hh: &[f32],
    data: &Data,
    first: usize,
    g: &mut [f32],
    h: &mut [f32],
    c: &mut [u32],
) {
    let base = data.offsets[first];
    let mut j = first;
    while data.offsets[j] - base < g.len() {
        let (lo, hi) = (data.offsets[j] - base, data.offsets[j + 1] - base);
        let (g, h, c) = (&mut g[lo..hi], &mut h[lo..hi], &mut c[lo..hi]);
        let col = &data.binned[j];
        for ((&i, &gi), &hi) in rows.iter().zip(gg).zip(hh) {
            let b = col[i] as usize;
            g[b] += gi;
            h[b] += hi;
            c[b] += 1;
        }
        j += 1;
    }
}

/// The histogram of `rows`, over the features in parallel for large nodes. Each bin sums its
/// rows in the order of `rows`, whatever the thread count, so it is the same with one core.
fn histogram(rows: &[usize], data: &Data, g: &[f32], h: &[f32]) -> Hist {
    let d = data.cuts.len();
    let total = data.offsets[d];
    let mut out = Hist {
        g: vec![0.0; total],
        h: vec![0.0; total],
        c: vec![0; total],
    };
    // The node's gradients gathered once (LightGBM's ordered gradients): every feature then
    // reads them in sequence instead of at scattered rows.
    let gg: Vec<f32> = rows.iter().map(|&i| g[i]).collect();
    let hh: Vec<f32> = rows.iter().map(|&i| h[i]).collect();
    let parts = if rows.len() >= PARALLEL_ROWS {
        data.run.threads.min(d).max(1)
    } else {
        1
    };
    if parts <= 1 {
        fill(rows, &gg, &hh, data, 0, &mut out.g, &mut out.h, &mut out.c);
        return out;
    }
    let per = d.div_ceil(parts);
    std::thread::scope(|s| {
        let (mut g, mut h, mut c) = (&mut out.g[..], &mut out.h[..], &mut out.c[..]);
        let (gg, hh) = (&gg, &hh);
        for k in 0..parts {
            let (first, last) = ((k * per).min(d), ((k + 1) * per).min(d));
            if first == last {
                break;
            }
            let len = data.offsets[last] - data.offsets[first];
            let (g0, g1) = std::mem::take(&mut g).split_at_mut(len);
            let (h0, h1) = std::mem::take(&mut h).split_at_mut(len);
            let (c0, c1) = std::mem::take(&mut c).split_at_mut(len);
            (g, h, c) = (g1, h1, c1);
            s.spawn(move || fill(rows, gg, hh, data, first, g0, h0, c0));
        }
    });
    out
}

/// `parent` minus `child`, bin by bin: the histogram of the parent's other child.
fn subtract(mut parent: Hist, child: &Hist) -> Hist {
    for (a, b) in parent.g.iter_mut().zip(&child.g) {
        *a -= b;
    }
    for (a, b) in parent.h.iter_mut().zip(&child.h) {
        *a -= b;
    }
    for (a, b) in parent.c.iter_mut().zip(&child.c) {
        *a -= b;
    }
    parent
}

/// The best split `(gain, feature, cut)` of a node of `n` rows with histogram `hist` and sums
/// `(gs, hs)`: largest gain, ties to the lower feature and bin.
fn best_split(
    hist: &Hist,
    n: usize,
    data: &Data,
    (gs, hs): (f32, f32),
    p: &GbdtParams,
) -> Option<Split> {
    let parent = gs * gs / (hs + p.l2);
    let mut best: Option<Split> = None;
    for j in 0..data.cuts.len() {
        let (lo, hi) = (data.offsets[j], data.offsets[j + 1]);
        let nb = hi - lo;
        if nb < 2 {
            continue;
        }
        let (hg, hh, hc) = (&hist.g[lo..hi], &hist.h[lo..hi], &hist.c[lo..hi]);
        let mut offer = |gain: f32, cut: Cut| {
            if gain > 1e-6 && best.is_none_or(|(bg, _, _)| gain > bg) {
                best = Some((gain, j, cut));
            }
        };
        if data.is_cat[j] {
            // Categories present, ordered by smoothed mean gradient (ties by bin); each
            // prefix of the order is a candidate left set.
            let mut order: Vec<usize> = (0..nb).filter(|&b| hc[b] > 0).collect();
            order.sort_by(|&a, &b| {
                let ka = hg[a] / (hh[a] + CAT_SMOOTH);
                let kb = hg[b] / (hh[b] + CAT_SMOOTH);
                ka.total_cmp(&kb).then(a.cmp(&b))
            });
            let parent = gs * gs / (hs + p.l2 + CAT_L2);
            let (mut gl, mut hl, mut cl) = (0.0f32, 0.0f32, 0usize);
            let mut mask = [0u64; 4];
            for &b in order.iter().take(order.len().saturating_sub(1)) {
                gl += hg[b];
                hl += hh[b];
                cl += hc[b] as usize;
                mask[b / 64] |= 1 << (b % 64);
                let cr = n - cl;
                if cl < p.min_leaf || cr < p.min_leaf {
                    continue;
                }
                let (gr, hr) = (gs - gl, hs - hl);
                let gain = gl * gl / (hl + p.l2 + CAT_L2) + gr * gr / (hr + p.l2 + CAT_L2) - parent;
                offer(gain, Cut::In(mask));
            }
            continue;
        }
        let (mut gl, mut hl, mut cl) = (0.0f32, 0.0f32, 0usize);
        for b in 0..nb - 1 {
            gl += hg[b];
            hl += hh[b];
            cl += hc[b] as usize;
            let cr = n - cl;
            if cl < p.min_leaf || cr < p.min_leaf {
                continue;
            }
            let (gr, hr) = (gs - gl, hs - hl);
            let gain = gl * gl / (hl + p.l2) + gr * gr / (hr + p.l2) - parent;
            offer(gain, Cut::Le(b));
        }
    }
    best
}

/// Whether a node of `n` rows at `depth` may split at all.
fn may_split(n: usize, depth: usize, p: &GbdtParams) -> bool {
    depth < p.depth && n >= 2 * p.min_leaf
}

/// Pushes the leaf of `rows` (its Newton value) and finds its best split, unless it sits at the
/// depth cap or has too few rows: (its node index, the split, the histogram when there is a
/// split: its children's come from it). `hist` is the node's histogram when already known.
#[allow(clippy::too_many_arguments)]
fn new_leaf(
    nodes: &mut Vec<Node>,
    rows: &[usize],
    depth: usize,
    hist: Option<Hist>,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
) -> (usize, Option<Split>, Option<Hist>) {
    let gs: f32 = rows.iter().map(|&i| g[i]).sum();
    let hs: f32 = rows.iter().map(|&i| h[i]).sum();
    let me = nodes.len();
    nodes.push(Node::Leaf(-gs / (hs + p.l2)));
    if !may_split(rows.len(), depth, p) {
        return (me, None, None);
    }
    let hist = hist.unwrap_or_else(|| histogram(rows, data, g, h));
    let split = best_split(&hist, rows.len(), data, (gs, hs), p);
    let keep = split.is_some() && data.run.subtract;
    (me, split, keep.then_some(hist))
}

/// The histograms of the children `l` and `r` (at `depth`) of a node whose histogram is
/// `parent`: the smaller child's built from its rows, the larger's by subtraction; `None` for a
/// child that cannot split, or for both when there is no parent histogram.
#[allow(clippy::too_many_arguments)]
fn child_hists(
    parent: Option<Hist>,
    l: &[usize],
    r: &[usize],
    depth: usize,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
) -> (Option<Hist>, Option<Hist>) {
    let Some(parent) = parent else {
        return (None, None);
    };
    let left_small = l.len() <= r.len();
    let (small, large) = if left_small { (l, r) } else { (r, l) };
    if !may_split(large.len(), depth, p) {
        // The smaller child cannot split either.
        return (None, None);
    }
    let hs = histogram(small, data, g, h);
    let hl = subtract(parent, &hs);
    let hs = may_split(small.len(), depth, p).then_some(hs);
    if left_small {
        (hs, Some(hl))
    } else {
        (Some(hl), hs)
    }
}

/// The rows of a node on each side of the split `cut` of feature `j`.
fn divide(rows: &[usize], data: &Data, j: usize, cut: Cut) -> (Vec<usize>, Vec<usize>) {
    let col = &data.binned[j];
    rows.iter().partition(|&&i| cut.left(col[i] as usize))
}

/// The node of the split `cut` of feature `j` with children `left` and `right`.
fn split_node(data: &Data, j: usize, cut: Cut, left: usize, right: usize) -> Node {
    match cut {
        Cut::Le(b) => Node::Split {
            feature: j,
            threshold: data.cuts[j][b],
            left,
            right,
        },
        Cut::In(_) => Node::SplitIn {
            feature: j,
            values: data.cuts[j]
                .iter()
                .enumerate()
                .filter(|(b, _)| cut.left(*b))
                .map(|(_, v)| *v)
                .collect(),
            left,
            right,
        },
    }
}

/// A leaf waiting to be split in best-first growth.
struct Open {
    node: usize,
    rows: Vec<usize>,
    depth: usize,
    split: Option<Split>,
    hist: Option<Hist>,
}

/// Grows one tree best-first: the open leaf whose split gains most is split next (ties to the
/// older leaf), until `p.leaves` leaves or no leaf can split. Returns every leaf with its rows.
fn build_best_first(
    nodes: &mut Vec<Node>,
    rows: Vec<usize>,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
) -> Vec<(usize, Vec<usize>)> {
    let open_leaf =
        |nodes: &mut Vec<Node>, rows: Vec<usize>, depth: usize, hist: Option<Hist>| -> Open {
            let (node, split, hist) = new_leaf(nodes, &rows, depth, hist, data, g, h, p);
            Open {
                node,
                rows,
                depth,
                split,
                hist,
            }
        };
    // Open leaves in creation order (children are always the newest nodes).
    let mut open = vec![open_leaf(nodes, rows, 0, None)];
    let mut leaves = 1;
    while leaves < p.leaves {
        let mut pick: Option<(usize, Split)> = None;
        for (k, o) in open.iter().enumerate() {
            if let Some(split) = o.split
                && pick.is_none_or(|(_, best)| split.0 > best.0)
            {
                pick = Some((k, split));
            }
        }
        let Some((k, (_, j, cut))) = pick else { break };
        let o = open.remove(k);
        let (l, r) = divide(&o.rows, data, j, cut);
        let (hl, hr) = child_hists(o.hist, &l, &r, o.depth + 1, data, g, h, p);
        let left = open_leaf(nodes, l, o.depth + 1, hl);
        let right = open_leaf(nodes, r, o.depth + 1, hr);
        nodes[o.node] = split_node(data, j, cut, left.node, right.node);
        open.push(left);
        open.push(right);
        leaves += 1;
    }
    open.into_iter().map(|o| (o.node, o.rows)).collect()
}

#[allow(clippy::too_many_arguments)]
fn build(
    nodes: &mut Vec<Node>,
    leaves: &mut Vec<(usize, Vec<usize>)>,
    rows: &[usize],
    hist: Option<Hist>,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
    depth: usize,
) -> usize {
    let (me, best, hist) = new_leaf(nodes, rows, depth, hist, data, g, h, p);
    let Some((_, j, cut)) = best else {
        leaves.push((me, rows.to_vec()));
        return me;
    };
    let (l, r) = divide(rows, data, j, cut);
    let (hl, hr) = child_hists(hist, &l, &r, depth + 1, data, g, h, p);
    let left = build(nodes, leaves, &l, hl, data, g, h, p, depth + 1);
    let right = build(nodes, leaves, &r, hr, data, g, h, p, depth + 1);
    nodes[me] = split_node(data, j, cut, left, right);
    me
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn threads(threads: usize) -> Run {
        Run {
            threads,
            subtract: true,
            route: false,
        }
    }

    /// Uniform draws on [0, 1) in steps of 2^-24 from a fixed linear congruential sequence.
    fn uniform(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        }
    }

    fn data(n: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut u = uniform(7);
        let x: Vec<Vec<f32>> = (0..n).map(|_| (0..4).map(|_| u()).collect()).collect();
        let y = x
            .iter()
            .map(|r| if r[0] > 0.5 { 2.0 } else { -1.0 } + 3.0 * r[1] * r[2])
            .collect();
        (x, y)
    }

    #[test]
    fn squared_boosting_learns_a_step_and_an_interaction() {
        let (x, y) = data(4000);
        let m = Gbdt::fit_squared(
            &x,
            &y,
            &GbdtParams {
                trees: 300,
                depth: 4,
                learning_rate: 0.1,
                ..Default::default()
            },
        );
        let (tx, ty) = data(4500);
        let mse: f32 = tx[4000..]
            .iter()
            .zip(&ty[4000..])
            .map(|(r, t)| (m.margin(r) - t).powi(2))
            .sum::<f32>()
            / 500.0;
        let var: f32 = {
            let mean = ty[4000..].iter().sum::<f32>() / 500.0;
            ty[4000..].iter().map(|t| (t - mean).powi(2)).sum::<f32>() / 500.0
        };
        assert!(mse < 0.05 * var, "mse {mse} against variance {var}");
    }

    #[test]
    fn the_parallel_split_search_builds_the_same_trees() {
        // 40,000 rows: the root and first levels search in parallel.
        let (x, y) = data(40_000);
        let p = GbdtParams {
            trees: 5,
            depth: 4,
            ..Default::default()
        };
        let m = Gbdt::regression(&x, &y, &p, false, &[], threads(3));
        let labels: Vec<bool> = y.iter().map(|v| *v > 0.5).collect();
        let l = Gbdt::logistic(&x, &labels, &p, threads(3));
        assert_eq!(m, Gbdt::regression(&x, &y, &p, false, &[], threads(1)));
        assert_eq!(l, Gbdt::logistic(&x, &labels, &p, threads(1)));
        // Splits near the root exist and are on the informative features.
        match &m.trees[0][0] {
            Node::Split { feature, .. } => assert!(*feature <= 2),
            _ => panic!("no numeric split at the root"),
        }
    }

    #[test]
    fn absolute_boosting_follows_the_median_not_the_mean() {
        // y = a step in x0 plus skewed noise: -ln(u) (exponential, median ln 2 = 0.693, mean 1).
        let (x, _) = data(6000);
        // Draws moved half a step up, off 0.
        let mut draw = uniform(11);
        let mut u = || draw() + 0.5 / (1u64 << 24) as f32;
        let y: Vec<f32> = x
            .iter()
            .map(|r| if r[0] > 0.5 { 3.0 } else { 0.0 } - u().ln())
            .collect();
        let p = GbdtParams {
            trees: 200,
            depth: 3,
            learning_rate: 0.1,
            ..Default::default()
        };
        let l1 = Gbdt::fit_absolute(&x, &y, &p);
        let l2 = Gbdt::fit_squared(&x, &y, &p);
        let mean_at = |m: &Gbdt, high: bool| -> f32 {
            let rows: Vec<&Vec<f32>> = x
                .iter()
                .filter(|r| (r[0] > 0.6) == high && (r[0] < 0.4 || high))
                .collect();
            rows.iter().map(|r| m.margin(r)).sum::<f32>() / rows.len() as f32
        };
        for (high, step) in [(false, 0.0f32), (true, 3.0)] {
            let (a, b) = (mean_at(&l1, high), mean_at(&l2, high));
            assert!(
                (a - step - std::f32::consts::LN_2).abs() < 0.08,
                "median fit {a} at step {step}"
            );
            assert!((b - step - 1.0).abs() < 0.08, "mean fit {b} at step {step}");
        }
        // The absolute loss on the rows is lower for the median fit.
        let loss = |m: &Gbdt| {
            x.iter()
                .zip(&y)
                .map(|(r, t)| (m.margin(r) - t).abs())
                .sum::<f32>()
        };
        assert!(loss(&l1) < loss(&l2));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(Vec::new()), 0.0);
    }

    #[test]
    fn a_categorical_split_takes_a_scattered_set_of_codes_at_once() {
        // Category codes 0..20 (feature 1); codes 3, 7, 11, 15 and 19 add 2; feature 0 is noise.
        let hot = [3.0f32, 7.0, 11.0, 15.0, 19.0];
        let mut u = uniform(5);
        let x: Vec<Vec<f32>> = (0..4000).map(|_| vec![u(), (u() * 20.0).floor()]).collect();
        let y: Vec<f32> = x
            .iter()
            .map(|r| if hot.contains(&r[1]) { 2.0 } else { 0.0 } + 0.1 * (u() - 0.5))
            .collect();
        let p = GbdtParams {
            trees: 30,
            depth: 1,
            learning_rate: 0.3,
            l2: 0.0,
            subsample: 1.0,
            ..Default::default()
        };
        let cat = Gbdt::fit_regression(&x, &y, &p, false, &[1]);
        let num = Gbdt::fit_regression(&x, &y, &p, false, &[]);
        match &cat.trees[0][0] {
            Node::SplitIn {
                feature, values, ..
            } => {
                assert_eq!(*feature, 1);
                // One side holds exactly the hot codes.
                let other: Vec<f32> = (0..20)
                    .map(|c| c as f32)
                    .filter(|c| !hot.contains(c))
                    .collect();
                assert!(
                    values[..] == hot[..] || values[..] == other[..],
                    "{values:?}"
                );
            }
            n => panic!("root {n:?}"),
        }
        let mse = |m: &Gbdt| {
            x.iter()
                .zip(&y)
                .map(|(r, t)| (m.margin(r) - t).powi(2))
                .sum::<f32>()
                / x.len() as f32
        };
        // Stumps on the codes as numbers cannot isolate the scattered set.
        assert!(mse(&cat) < 0.01, "categorical {}", mse(&cat));
        assert!(
            mse(&num) > 10.0 * mse(&cat),
            "numeric {} vs {}",
            mse(&num),
            mse(&cat)
        );
        // A code never seen in training goes with the non-listed side; serialised and back,
        // the same model.
        let unseen = cat.margin(&[0.5, 42.0]);
        assert!(unseen.is_finite());
        let back: Gbdt = serde_json::from_str(&serde_json::to_string(&cat).unwrap()).unwrap();
        assert_eq!(back, cat);
        // The absolute loss takes categorical splits too.
        let l1 = Gbdt::fit_regression(&x, &y, &p, true, &[1]);
        assert!(matches!(l1.trees[0][0], Node::SplitIn { .. }));
    }

    fn leaves_of(tree: &[Node]) -> usize {
        tree.iter().filter(|n| matches!(n, Node::Leaf(_))).count()
    }

    #[test]
    fn best_first_growth_stops_at_the_leaf_count() {
        let (x, y) = data(4000);
        let p = GbdtParams {
            trees: 20,
            depth: 64,
            leaves: 7,
            learning_rate: 0.1,
            ..Default::default()
        };
        let m = Gbdt::fit_squared(&x, &y, &p);
        for t in &m.trees {
            assert_eq!(leaves_of(t), 7);
        }
        // Best-first trees of 7 leaves fit better than level-wise trees of depth 2 (4 leaves).
        let lw = Gbdt::fit_squared(
            &x,
            &y,
            &GbdtParams {
                depth: 2,
                leaves: 0,
                ..p
            },
        );
        let mse = |m: &Gbdt| -> f32 {
            x.iter()
                .zip(&y)
                .map(|(r, t)| (m.margin(r) - t).powi(2))
                .sum::<f32>()
                / x.len() as f32
        };
        assert!(mse(&m) < mse(&lw), "{} vs {}", mse(&m), mse(&lw));
    }

    #[test]
    fn best_first_growth_without_a_leaf_cap_is_level_wise_growth() {
        // With more leaves allowed than the depth can make, best-first growth splits the same
        // nodes with the same splits as level-wise growth: the same predictions.
        let (x, y) = data(3000);
        let p = GbdtParams {
            trees: 10,
            depth: 3,
            ..Default::default()
        };
        let lw = Gbdt::fit_squared(&x, &y, &p);
        let bf = Gbdt::fit_squared(&x, &y, &GbdtParams { leaves: 1000, ..p });
        for r in &x[..500] {
            assert_eq!(lw.margin(r), bf.margin(r));
        }
        let labels: Vec<bool> = y.iter().map(|v| *v > 0.5).collect();
        let lw = Gbdt::logistic(&x, &labels, &p, threads(3));
        let bf = Gbdt::logistic(&x, &labels, &GbdtParams { leaves: 1000, ..p }, threads(1));
        for r in &x[..500] {
            assert_eq!(lw.margin(r), bf.margin(r));
        }
    }

    #[test]
    fn a_histogram_by_subtraction_is_the_directly_built_one() {
        // Four numeric features of 32 quantile bins and one categorical code of 7 values.
        let (x, y) = data(30_000);
        let n = x.len();
        let mut cuts: Vec<Vec<f32>> = (0..4)
            .map(|k| (1..32).map(|b| b as f32 / 32.0 + k as f32 * 1e-3).collect())
            .collect();
        cuts.push((0..7).map(|v| v as f32).collect());
        let mut binned: Vec<Vec<u8>> = (0..4)
            .map(|j| {
                x.iter()
                    .map(|r| cuts[j].partition_point(|&c| c < r[j]) as u8)
                    .collect()
            })
            .collect();
        binned.push((0..n).map(|i| (i % 7) as u8).collect());
        let mut offsets = vec![0];
        for c in &cuts {
            offsets.push(offsets.last().unwrap() + c.len() + 1);
        }
        let is_cat = [false, false, false, false, true];
        let data = Data {
            binned: &binned,
            cuts: &cuts,
            is_cat: &is_cat,
            offsets,
            run: threads(2),
        };
        let g: Vec<f32> = y.iter().map(|v| v - 0.3).collect();
        let h: Vec<f32> = x.iter().map(|r| 0.5 + r[3]).collect();
        let rows: Vec<usize> = (0..n).filter(|i| i % 5 != 0).collect();
        let parent = histogram(&rows, &data, &g, &h);
        let (l, r) = divide(&rows, &data, 0, Cut::Le(12));
        assert!(
            l.len() >= PARALLEL_ROWS / 2 && r.len() > 1000,
            "{} / {}",
            l.len(),
            r.len()
        );
        let direct = histogram(&r, &data, &g, &h);
        let by_subtraction = subtract(parent, &histogram(&l, &data, &g, &h));
        assert_eq!(direct.c, by_subtraction.c);
        let close = |a: &[f32], b: &[f32]| {
            a.iter()
                .zip(b)
                .all(|(a, b)| (a - b).abs() <= 1e-3 * (1.0 + a.abs()))
        };
        assert!(close(&direct.g, &by_subtraction.g));
        assert!(close(&direct.h, &by_subtraction.h));
        // The bins of feature 0 the right child has no rows in are exactly empty.
        for b in 0..=12 {
            assert_eq!((by_subtraction.g[b], by_subtraction.h[b]), (0.0, 0.0));
        }
        // One thread builds the same histogram, bit for bit.
        let one = Data {
            run: threads(1),
            ..data
        };
        assert_eq!(histogram(&r, &one, &g, &h), direct);
    }

    #[test]
    fn outputs_moved_by_the_build_leaves_equal_routing_every_row() {
        // Squared and absolute error, level-wise and best-first, all rows and a subsample, a
        // categorical feature: the trees are the same bit for bit whether each row's output moves
        // by the leaf the build sent it to or by routing it through the tree.
        // Feature 3 is missing (NaN) in every 9th row: the build and prediction agree on where a
        // missing value goes.
        let (mut x, y) = data(6_000);
        for (i, r) in x.iter_mut().enumerate() {
            r.push((i % 7) as f32);
            if i % 9 == 0 {
                r[3] = f32::NAN;
            }
        }
        for (leaves, subsample, absolute) in [(0, 1.0, false), (15, 1.0, true), (15, 0.7, false)] {
            let p = GbdtParams {
                trees: 15,
                depth: 5,
                leaves,
                subsample,
                learning_rate: 0.2,
                ..Default::default()
            };
            let by_leaves = Gbdt::regression(&x, &y, &p, absolute, &[4], threads(2));
            let routed = Gbdt::regression(
                &x,
                &y,
                &p,
                absolute,
                &[4],
                Run {
                    route: true,
                    ..threads(2)
                },
            );
            assert_eq!(by_leaves, routed, "leaves {leaves} subsample {subsample}");
            let grown = by_leaves.trees.iter().filter(|t| t.len() > 7).count();
            assert!(grown >= 10, "leaves {leaves}: {grown} trees grew");
        }
    }

    #[test]
    fn a_missing_value_is_predicted_where_training_put_it() {
        // Rows missing feature 0 (numeric) or 1 (categorical, codes 0-3) have their own target;
        // the rest follow the known values. Prediction must send a missing value where the fit
        // put it (it once went left of every cut in training and right in prediction).
        let mut u = uniform(11);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..4_000 {
            let (a, c) = (u(), (i % 4) as f32);
            let (a, c) = match i % 10 {
                0 => (f32::NAN, c),
                1 => (a, f32::NAN),
                _ => (a, c),
            };
            x.push(vec![a, c]);
            y.push(if a.is_nan() {
                -3.0
            } else if c.is_nan() {
                4.0
            } else {
                2.0 * a + c
            });
        }
        for leaves in [0, 15] {
            let p = GbdtParams {
                trees: 200,
                depth: 5,
                leaves,
                learning_rate: 0.1,
                min_leaf: 10,
                ..Default::default()
            };
            let m = Gbdt::fit_regression(&x, &y, &p, false, &[1]);
            for (row, want) in [
                (vec![f32::NAN, 2.0], -3.0),
                (vec![0.1, f32::NAN], 4.0),
                (vec![0.05, 0.0], 0.1),
                (vec![0.95, 3.0], 4.9),
            ] {
                let got = m.margin(&row);
                assert!(
                    (got - want).abs() < 0.3,
                    "leaves {leaves} {row:?}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn histogram_subtraction_grows_the_same_trees_when_the_sums_are_exact() {
        // Absolute-error boosting: gradients +-1 and Hessians 1, so every sum is an exact
        // integer and subtraction changes nothing; level-wise and best-first, a categorical
        // feature among them.
        let (mut x, y) = data(20_000);
        for (i, r) in x.iter_mut().enumerate() {
            r.push((i % 11) as f32);
        }
        for leaves in [0, 15] {
            let p = GbdtParams {
                trees: 20,
                depth: 5,
                leaves,
                learning_rate: 0.2,
                ..Default::default()
            };
            let on = Gbdt::regression(&x, &y, &p, true, &[4], threads(2));
            let off = Gbdt::regression(
                &x,
                &y,
                &p,
                true,
                &[4],
                Run {
                    threads: 2,
                    subtract: false,
                    route: false,
                },
            );
            assert_eq!(on, off, "leaves {leaves}");
            let sizes: Vec<usize> = on.trees.iter().map(Vec::len).collect();
            assert!(
                sizes.iter().filter(|&&s| s > 7).count() >= 15,
                "trees grew: {sizes:?}"
            );
        }
    }
}
