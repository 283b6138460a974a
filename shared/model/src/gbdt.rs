//! Gradient-boosted regression trees over dense `f32` rows: histogram splits on quantile bins,
//! depth-limited trees grown level by level or, with [`GbdtParams::leaves`], best-first (the
//! leaf with the largest gain split next, LightGBM's leaf-wise growth), Newton leaves
//! (`-G / (H + l2)`), row subsampling. Two losses: log loss
//! ([`Gbdt::fit`], the output is the log-odds; the risk service's tabular learner) and squared
//! error ([`Gbdt::fit_squared`]; the demand-forecast service's global direct model).
//!
//! Large nodes search their split over the features on all cores; the split chosen (largest
//! gain, ties to the lower feature and bin) and so the trees are the same whatever the core
//! count.

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
    let mut i = 0;
    loop {
        match &tree[i] {
            Node::Leaf(v) => return *v,
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
        Self::logistic(x, y, p, cores())
    }

    /// Squared-error boosting for targets `y` (`margin` = the prediction); the base is their
    /// mean.
    pub fn fit_squared(x: &[Vec<f32>], y: &[f32], p: &GbdtParams) -> Gbdt {
        Self::squared(x, y, p, cores())
    }

    fn logistic(x: &[Vec<f32>], y: &[bool], p: &GbdtParams, threads: usize) -> Gbdt {
        let n = x.len();
        let pos = y.iter().filter(|&&b| b).count() as f32;
        let prior = ((pos + 0.5) / (n as f32 + 1.0)).clamp(1e-4, 1.0 - 1e-4);
        let base = (prior / (1.0 - prior)).ln();
        fit_with(x, base, p, threads, |f, g, h| {
            for i in 0..f.len() {
                let q = 1.0 / (1.0 + (-f[i]).exp());
                g[i] = q - if y[i] { 1.0 } else { 0.0 };
                h[i] = (q * (1.0 - q)).max(1e-6);
            }
        })
    }

    fn squared(x: &[Vec<f32>], y: &[f32], p: &GbdtParams, threads: usize) -> Gbdt {
        let n = y.len().max(1);
        let base = (y.iter().map(|v| *v as f64).sum::<f64>() / n as f64) as f32;
        fit_with(x, base, p, threads, |f, g, h| {
            for i in 0..f.len() {
                g[i] = f[i] - y[i];
                h[i] = 1.0;
            }
        })
    }
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(std::num::NonZeroUsize::get)
        .unwrap_or(1)
}

/// Boosting with the gradients and Hessians `grad(f, g, h)` writes for the current outputs `f`;
/// large nodes search their split on `threads` threads.
fn fit_with(
    x: &[Vec<f32>],
    base: f32,
    p: &GbdtParams,
    threads: usize,
    grad: impl Fn(&[f32], &mut [f32], &mut [f32]),
) -> Gbdt {
    let n = x.len();
    let d = x.first().map_or(0, Vec::len);
    let bins = p.bins.clamp(2, 256);
    // Candidate thresholds per feature: quantiles of the training values.
    let mut cuts: Vec<Vec<f32>> = Vec::with_capacity(d);
    for j in 0..d {
        let mut v: Vec<f32> = x.iter().map(|r| r[j]).collect();
        v.sort_by(f32::total_cmp);
        v.dedup();
        let c: Vec<f32> = if v.len() <= bins {
            v.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
        } else {
            let mut c: Vec<f32> = (1..bins).map(|k| v[k * v.len() / bins]).collect();
            c.dedup();
            c
        };
        cuts.push(c);
    }
    // Binned data by feature (a node's histogram reads one feature's column at a time): bin
    // index = number of cuts below the value.
    let binned: Vec<Vec<u8>> = (0..d)
        .map(|j| {
            x.iter()
                .map(|r| cuts[j].partition_point(|&c| c < r[j]) as u8)
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
    let data = Data {
        binned: &binned,
        cuts: &cuts,
        threads,
    };
    for _ in 0..p.trees {
        grad(&f, &mut g, &mut h);
        idx.shuffle(&mut rng);
        let take = ((n as f64) * p.subsample).ceil() as usize;
        let sample: Vec<usize> = idx[..take.min(n)].to_vec();
        let mut tree = Vec::new();
        if p.leaves == 0 {
            build(&mut tree, &sample, &data, &g, &h, p, 0);
        } else {
            build_best_first(&mut tree, sample, &data, &g, &h, p);
        }
        for (fi, row) in f.iter_mut().zip(x) {
            *fi += p.learning_rate * leaf_of(&tree, row);
        }
        model.trees.push(tree);
    }
    model
}

struct Data<'a> {
    binned: &'a [Vec<u8>],
    cuts: &'a [Vec<f32>],
    threads: usize,
}

/// The best split `(gain, feature, bin)` of `rows` over features `features`.
fn best_split(
    rows: &[usize],
    features: std::ops::Range<usize>,
    data: &Data,
    g: &[f32],
    h: &[f32],
    (gs, hs): (f32, f32),
    p: &GbdtParams,
) -> Option<(f32, usize, usize)> {
    let parent = gs * gs / (hs + p.l2);
    let mut best: Option<(f32, usize, usize)> = None;
    let mut hg = [0.0f32; 257];
    let mut hh = [0.0f32; 257];
    let mut hc = [0usize; 257];
    for j in features {
        let nb = data.cuts[j].len() + 1;
        if nb < 2 {
            continue;
        }
        hg[..nb].fill(0.0);
        hh[..nb].fill(0.0);
        hc[..nb].fill(0);
        let col = &data.binned[j];
        for &i in rows {
            let b = col[i] as usize;
            hg[b] += g[i];
            hh[b] += h[i];
            hc[b] += 1;
        }
        let (mut gl, mut hl, mut cl) = (0.0f32, 0.0f32, 0usize);
        for b in 0..nb - 1 {
            gl += hg[b];
            hl += hh[b];
            cl += hc[b];
            let cr = rows.len() - cl;
            if cl < p.min_leaf || cr < p.min_leaf {
                continue;
            }
            let (gr, hr) = (gs - gl, hs - hl);
            let gain = gl * gl / (hl + p.l2) + gr * gr / (hr + p.l2) - parent;
            if gain > 1e-6 && best.is_none_or(|(bg, _, _)| gain > bg) {
                best = Some((gain, j, b));
            }
        }
    }
    best
}

/// The split of a node: its best `(gain, feature, bin)` over all features, the search spread
/// over the cores for large nodes.
fn split_of(
    rows: &[usize],
    data: &Data,
    g: &[f32],
    h: &[f32],
    (gs, hs): (f32, f32),
    p: &GbdtParams,
) -> Option<(f32, usize, usize)> {
    let d = data.cuts.len();
    let parts = if rows.len() >= PARALLEL_ROWS {
        data.threads.min(d).max(1)
    } else {
        1
    };
    if parts <= 1 {
        return best_split(rows, 0..d, data, g, h, (gs, hs), p);
    }
    let per = d.div_ceil(parts);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..parts)
            .map(|k| {
                let range = (k * per).min(d)..((k + 1) * per).min(d);
                s.spawn(move || best_split(rows, range, data, g, h, (gs, hs), p))
            })
            .collect();
        // Features in order: a later range wins only with a strictly larger gain, as in the
        // sequential search.
        let mut best: Option<(f32, usize, usize)> = None;
        for hd in handles {
            let here = hd.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            if let Some(c) = here
                && best.is_none_or(|(bg, _, _)| c.0 > bg)
            {
                best = Some(c);
            }
        }
        best
    })
}

/// Pushes the leaf of `rows` (its Newton value) and finds its best split, unless it sits at the
/// depth cap or has too few rows: (its node index, the split).
fn new_leaf(
    nodes: &mut Vec<Node>,
    rows: &[usize],
    depth: usize,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
) -> (usize, Option<(f32, usize, usize)>) {
    let gs: f32 = rows.iter().map(|&i| g[i]).sum();
    let hs: f32 = rows.iter().map(|&i| h[i]).sum();
    let me = nodes.len();
    nodes.push(Node::Leaf(-gs / (hs + p.l2)));
    let split = if depth >= p.depth || rows.len() < 2 * p.min_leaf {
        None
    } else {
        split_of(rows, data, g, h, (gs, hs), p)
    };
    (me, split)
}

/// The rows of a node on each side of the split at bin `b` of feature `j`.
fn divide(rows: &[usize], data: &Data, j: usize, b: usize) -> (Vec<usize>, Vec<usize>) {
    let col = &data.binned[j];
    rows.iter().partition(|&&i| col[i] as usize <= b)
}

/// A leaf waiting to be split in best-first growth.
struct Open {
    node: usize,
    rows: Vec<usize>,
    depth: usize,
    split: Option<(f32, usize, usize)>,
}

/// Grows one tree best-first: the open leaf whose split gains most is split next (ties to the
/// older leaf), until `p.leaves` leaves or no leaf can split.
fn build_best_first(
    nodes: &mut Vec<Node>,
    rows: Vec<usize>,
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
) {
    let open_leaf = |nodes: &mut Vec<Node>, rows: Vec<usize>, depth: usize| -> Open {
        let (node, split) = new_leaf(nodes, &rows, depth, data, g, h, p);
        Open {
            node,
            rows,
            depth,
            split,
        }
    };
    // Open leaves in creation order (children are always the newest nodes).
    let mut open = vec![open_leaf(nodes, rows, 0)];
    let mut leaves = 1;
    while leaves < p.leaves {
        let mut pick: Option<(usize, (f32, usize, usize))> = None;
        for (k, o) in open.iter().enumerate() {
            if let Some(split) = o.split
                && pick.is_none_or(|(_, best)| split.0 > best.0)
            {
                pick = Some((k, split));
            }
        }
        let Some((k, (_, j, b))) = pick else { break };
        let o = open.remove(k);
        let (l, r) = divide(&o.rows, data, j, b);
        let left = open_leaf(nodes, l, o.depth + 1);
        let right = open_leaf(nodes, r, o.depth + 1);
        nodes[o.node] = Node::Split {
            feature: j,
            threshold: data.cuts[j][b],
            left: left.node,
            right: right.node,
        };
        open.push(left);
        open.push(right);
        leaves += 1;
    }
}

fn build(
    nodes: &mut Vec<Node>,
    rows: &[usize],
    data: &Data,
    g: &[f32],
    h: &[f32],
    p: &GbdtParams,
    depth: usize,
) -> usize {
    let (me, best) = new_leaf(nodes, rows, depth, data, g, h, p);
    let Some((_, j, b)) = best else {
        return me;
    };
    let (l, r) = divide(rows, data, j, b);
    let left = build(nodes, &l, data, g, h, p, depth + 1);
    let right = build(nodes, &r, data, g, h, p, depth + 1);
    nodes[me] = Node::Split {
        feature: j,
        threshold: data.cuts[j][b],
        left,
        right,
    };
    me
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data(n: usize) -> (Vec<Vec<f32>>, Vec<f32>) {
        let mut s = 7u64;
        let mut u = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 24) as f32
        };
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
        let m = Gbdt::squared(&x, &y, &p, 3);
        let labels: Vec<bool> = y.iter().map(|v| *v > 0.5).collect();
        let l = Gbdt::logistic(&x, &labels, &p, 3);
        assert_eq!(m, Gbdt::squared(&x, &y, &p, 1));
        assert_eq!(l, Gbdt::logistic(&x, &labels, &p, 1));
        // Splits near the root exist and are on the informative features.
        match &m.trees[0][0] {
            Node::Split { feature, .. } => assert!(*feature <= 2),
            Node::Leaf(_) => panic!("no split at the root"),
        }
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
        let lw = Gbdt::logistic(&x, &labels, &p, 3);
        let bf = Gbdt::logistic(&x, &labels, &GbdtParams { leaves: 1000, ..p }, 1);
        for r in &x[..500] {
            assert_eq!(lw.margin(r), bf.margin(r));
        }
    }
}
