//! The offline evaluation protocol (see BENCHMARKS.md, "Recommendation"): for each user with a
//! non-empty held-out set, rank the whole training catalogue except the user's own training
//! items, and average NDCG@10, Recall@10, Recall@20, HR@10 and MRR@10 over users; catalogue
//! coverage@10 is the share of the training catalogue that appears in at least one top-10 list.

use std::collections::BTreeMap;

use crate::data::{Ev, Split};

/// Anything that scores every item for a user history (oldest event first).
pub trait Scorer: Sync {
    /// Writes one score per item into `out` (length = number of items); higher is better.
    /// `user` is the index of the user in the split (for precomputed scores).
    fn score(&self, user: usize, hist: &[Ev], out: &mut [f32]);
}

impl<F: Fn(usize, &[Ev], &mut [f32]) + Sync> Scorer for F {
    fn score(&self, user: usize, hist: &[Ev], out: &mut [f32]) {
        self(user, hist, out)
    }
}

/// Ranking metrics averaged over evaluated users.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Metrics {
    pub ndcg10: f64,
    pub recall10: f64,
    pub recall20: f64,
    pub hr10: f64,
    pub mrr10: f64,
    pub coverage10: f64,
    pub users: usize,
}

impl Metrics {
    pub fn to_map(&self) -> BTreeMap<String, f64> {
        BTreeMap::from([
            ("ndcg@10".to_string(), self.ndcg10),
            ("recall@10".to_string(), self.recall10),
            ("recall@20".to_string(), self.recall20),
            ("hr@10".to_string(), self.hr10),
            ("mrr@10".to_string(), self.mrr10),
            ("coverage@10".to_string(), self.coverage10),
            ("eval_users".to_string(), self.users as f64),
        ])
    }
}

/// Indices of the `k` best scores, best first, skipping `-inf` (excluded) items. Ties go to the
/// lower index.
pub fn top_k(scores: &[f32], k: usize) -> Vec<u32> {
    if k > 256 {
        let mut all: Vec<(f32, u32)> = scores
            .iter()
            .enumerate()
            .filter(|(_, s)| **s != f32::NEG_INFINITY && !s.is_nan())
            .map(|(i, &s)| (s, i as u32))
            .collect();
        all.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        all.truncate(k);
        return all.into_iter().map(|(_, i)| i).collect();
    }
    let mut best: Vec<(f32, u32)> = Vec::with_capacity(k + 1);
    for (i, &s) in scores.iter().enumerate() {
        if s == f32::NEG_INFINITY || s.is_nan() {
            continue;
        }
        if best.len() == k && best.last().is_some_and(|&(b, _)| s <= b) {
            continue;
        }
        let pos = best.partition_point(|&(b, _)| b >= s);
        best.insert(pos, (s, i as u32));
        best.truncate(k);
    }
    best.into_iter().map(|(_, i)| i).collect()
}

/// Per-user metrics of one ranked list against the held-out items.
fn user_metrics(ranked: &[u32], relevant: &[u32]) -> [f64; 5] {
    let rel = |i: &u32| relevant.contains(i);
    let mut dcg = 0.0;
    let mut hits10 = 0usize;
    let mut hits20 = 0usize;
    let mut rr = 0.0;
    for (pos, i) in ranked.iter().take(20).enumerate() {
        if rel(i) {
            hits20 += 1;
            if pos < 10 {
                hits10 += 1;
                dcg += 1.0 / ((pos + 2) as f64).log2();
                if rr == 0.0 {
                    rr = 1.0 / (pos + 1) as f64;
                }
            }
        }
    }
    let idcg: f64 = (0..relevant.len().min(10))
        .map(|p| 1.0 / ((p + 2) as f64).log2())
        .sum();
    let n = relevant.len() as f64;
    [
        dcg / idcg,
        hits10 as f64 / n,
        hits20 as f64 / n,
        if hits10 > 0 { 1.0 } else { 0.0 },
        rr,
    ]
}

/// Evaluates `scorer` on `split` with the protocol above, on all available cores.
pub fn evaluate(scorer: &dyn Scorer, split: &Split) -> Metrics {
    let n = split.train.n_items();
    let mut in_catalogue = vec![false; n];
    for e in split.train.seqs.iter().flatten() {
        in_catalogue[e.item as usize] = true;
    }
    let catalogue = in_catalogue.iter().filter(|&&b| b).count().max(1);
    let users: Vec<usize> = (0..split.train.seqs.len())
        .filter(|&u| !split.held_out[u].is_empty() && !split.train.seqs[u].is_empty())
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let chunk = users.len().div_ceil(threads).max(1);
    let parts: Vec<([f64; 5], Vec<bool>)> = std::thread::scope(|s| {
        let handles: Vec<_> = users
            .chunks(chunk)
            .map(|us| {
                let in_catalogue = &in_catalogue;
                s.spawn(move || {
                    let mut sum = [0.0; 5];
                    let mut shown = vec![false; n];
                    let mut buf = vec![0f32; n];
                    for &u in us {
                        let hist = &split.train.seqs[u];
                        buf.iter_mut().for_each(|x| *x = 0.0);
                        scorer.score(u, hist, &mut buf);
                        for (i, ok) in in_catalogue.iter().enumerate() {
                            if !ok {
                                buf[i] = f32::NEG_INFINITY;
                            }
                        }
                        for e in hist {
                            buf[e.item as usize] = f32::NEG_INFINITY;
                        }
                        let ranked = top_k(&buf, 20);
                        for i in ranked.iter().take(10) {
                            shown[*i as usize] = true;
                        }
                        let m = user_metrics(&ranked, &split.held_out[u]);
                        for (a, b) in sum.iter_mut().zip(m) {
                            *a += b;
                        }
                    }
                    (sum, shown)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| ([0.0; 5], Vec::new())))
            .collect()
    });
    let mut sum = [0.0; 5];
    let mut shown = vec![false; n];
    for (s, sh) in parts {
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
        for (a, b) in shown.iter_mut().zip(sh) {
            *a |= b;
        }
    }
    let u = users.len().max(1) as f64;
    Metrics {
        ndcg10: sum[0] / u,
        recall10: sum[1] / u,
        recall20: sum[2] / u,
        hr10: sum[3] / u,
        mrr10: sum[4] / u,
        coverage10: shown.iter().filter(|&&b| b).count() as f64 / catalogue as f64,
        users: users.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Dataset, RawInteraction, chrono_split};

    #[test]
    fn top_k_orders_and_skips_excluded() {
        let s = [0.1, f32::NEG_INFINITY, 0.9, 0.5, 0.9];
        assert_eq!(top_k(&s, 3), vec![2, 4, 3]);
        assert_eq!(top_k(&s, 10).len(), 4);
        assert_eq!(top_k(&s, 1000), vec![2, 4, 3, 0]);
    }

    #[test]
    fn metrics_of_a_known_ranking() {
        // Relevant {7, 3}; ranked 3 at position 2 (index 1) and 7 at position 12.
        let ranked: Vec<u32> = vec![1, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 7];
        let [ndcg, r10, r20, hr, mrr] = user_metrics(&ranked, &[7, 3]);
        let idcg = 1.0 + 1.0 / 3f64.log2();
        assert!((ndcg - (1.0 / 3f64.log2()) / idcg).abs() < 1e-12);
        assert_eq!((r10, r20, hr, mrr), (0.5, 1.0, 1.0, 0.5));
    }

    #[test]
    fn an_oracle_scores_perfectly_on_a_tiny_set() {
        // Two users; the held-out item of each is known to the oracle.
        let mut raw = Vec::new();
        for (u, items) in [
            ("u", ["a", "b", "c", "d", "e"]),
            ("v", ["e", "d", "c", "b", "a"]),
        ] {
            for (t, i) in items.iter().enumerate() {
                raw.push(RawInteraction {
                    user: u.into(),
                    item: (*i).into(),
                    ts: t as i64,
                    weight: 1.0,
                });
            }
        }
        let d = Dataset::from_raw(&raw);
        let split = chrono_split(&d, 0.2);
        let truth = split.held_out.clone();
        let oracle = move |u: usize, _: &[Ev], out: &mut [f32]| {
            for &i in &truth[u] {
                out[i as usize] = 1.0;
            }
        };
        let m = evaluate(&oracle, &split);
        assert_eq!(m.users, 2);
        assert!((m.ndcg10 - 1.0).abs() < 1e-12 && m.recall20 == 1.0 && m.mrr10 == 1.0);
        // A scorer that prefers the wrong items gets nothing.
        let zero = |_: usize, _: &[Ev], out: &mut [f32]| out.iter_mut().for_each(|x| *x = 0.0);
        let m0 = evaluate(&zero, &split);
        assert!(m0.ndcg10 <= 1.0);
    }
}
