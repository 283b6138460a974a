//! Interaction data in index form: users and items numbered densely, each user's history sorted
//! by time, and the chronological per-user split used for validation and for the benchmark.

use std::collections::HashMap;

/// One interaction as it arrives (feature store, request, CSV).
#[derive(Debug, Clone, PartialEq)]
pub struct RawInteraction {
    pub user: String,
    pub item: String,
    /// Event time, seconds since the epoch.
    pub ts: i64,
    /// Strength of the interaction (kind weight); > 0.
    pub weight: f32,
}

/// One event of a user's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ev {
    pub item: u32,
    pub ts: i64,
    pub weight: f32,
}

/// Interactions with dense user and item indices; `seqs[u]` is sorted by time (ties keep input
/// order).
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub seqs: Vec<Vec<Ev>>,
}

impl Dataset {
    /// Builds the dataset; items are numbered in order of first appearance.
    pub fn from_raw(raw: &[RawInteraction]) -> Self {
        let mut users: HashMap<&str, u32> = HashMap::new();
        let mut items: HashMap<&str, u32> = HashMap::new();
        let mut d = Dataset::default();
        for r in raw {
            let u = *users.entry(&r.user).or_insert_with(|| {
                d.users.push(r.user.clone());
                d.seqs.push(Vec::new());
                (d.users.len() - 1) as u32
            });
            let i = *items.entry(&r.item).or_insert_with(|| {
                d.items.push(r.item.clone());
                (d.items.len() - 1) as u32
            });
            d.seqs[u as usize].push(Ev {
                item: i,
                ts: r.ts,
                weight: r.weight,
            });
        }
        for s in &mut d.seqs {
            s.sort_by_key(|e| e.ts);
        }
        d
    }

    pub fn n_items(&self) -> usize {
        self.items.len()
    }

    pub fn n_interactions(&self) -> usize {
        self.seqs.iter().map(Vec::len).sum()
    }

    /// Keeps only users with at least `min` interactions (item numbering unchanged).
    pub fn keep_users_with(&self, min: usize) -> Dataset {
        let mut d = Dataset {
            items: self.items.clone(),
            ..Default::default()
        };
        for (u, s) in self.users.iter().zip(&self.seqs) {
            if s.len() >= min {
                d.users.push(u.clone());
                d.seqs.push(s.clone());
            }
        }
        d
    }

    /// Time range of the interactions (seconds).
    pub fn time_range(&self) -> Option<(i64, i64)> {
        let mut it = self.seqs.iter().flatten().map(|e| e.ts);
        let first = it.next()?;
        Some(it.fold((first, first), |(a, b), t| (a.min(t), b.max(t))))
    }
}

/// A chronological split: for every user the oldest part trains, the newest part is held out.
#[derive(Debug, Clone)]
pub struct Split {
    /// Same users and items as the source; each history truncated to its training part.
    pub train: Dataset,
    /// Held-out items per user (may be empty), only items that occur somewhere in `train`,
    /// without repeats and without items of the user's own training part.
    pub held_out: Vec<Vec<u32>>,
}

/// Number of held-out interactions for a history of `len`: `floor(fraction * len)`, at least one,
/// and none for a single interaction.
pub fn held_out_count(len: usize, fraction: f64) -> usize {
    if len < 2 {
        return 0;
    }
    (((len as f64) * fraction).floor() as usize).clamp(1, len - 1)
}

/// Splits each user's time-sorted history: the last `held_out_count(len, fraction)` interactions
/// are held out. Held-out items absent from every training history are dropped.
pub fn chrono_split(d: &Dataset, fraction: f64) -> Split {
    let mut train = Dataset {
        users: d.users.clone(),
        items: d.items.clone(),
        seqs: Vec::with_capacity(d.seqs.len()),
    };
    let mut tails = Vec::with_capacity(d.seqs.len());
    for s in &d.seqs {
        let n_out = held_out_count(s.len(), fraction);
        let cut = s.len() - n_out;
        train.seqs.push(s[..cut].to_vec());
        tails.push(&s[cut..]);
    }
    let mut in_train = vec![false; d.items.len()];
    for e in train.seqs.iter().flatten() {
        in_train[e.item as usize] = true;
    }
    let held_out = tails
        .iter()
        .zip(&train.seqs)
        .map(|(tail, hist)| {
            let mut own = std::collections::HashSet::new();
            for e in hist {
                own.insert(e.item);
            }
            let mut out = Vec::new();
            for e in tail.iter() {
                if in_train[e.item as usize] && !own.contains(&e.item) && !out.contains(&e.item) {
                    out.push(e.item);
                }
            }
            out
        })
        .collect();
    Split { train, held_out }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(u: &str, i: &str, ts: i64) -> RawInteraction {
        RawInteraction {
            user: u.into(),
            item: i.into(),
            ts,
            weight: 1.0,
        }
    }

    #[test]
    fn split_is_chronological_and_drops_unseen_items() {
        let d = Dataset::from_raw(&[
            raw("u", "a", 5),
            raw("u", "b", 1),
            raw("u", "c", 3),
            raw("u", "d", 4),
            raw("u", "z", 9),
            raw("v", "a", 1),
            raw("v", "d", 2),
        ]);
        assert_eq!(held_out_count(5, 0.2), 1);
        assert_eq!(held_out_count(1, 0.2), 0);
        assert_eq!(held_out_count(12, 0.2), 2);
        let s = chrono_split(&d, 0.4);
        // u: b c d | a z ; z never trains so it is dropped, a trains through v.
        let names = |v: &[u32]| {
            v.iter()
                .map(|&i| d.items[i as usize].clone())
                .collect::<Vec<_>>()
        };
        let hist: Vec<u32> = s.train.seqs[0].iter().map(|e| e.item).collect();
        assert_eq!(names(&hist), ["b", "c", "d"]);
        assert_eq!(names(&s.held_out[0]), ["a"]);
        assert_eq!(s.train.seqs[1].len(), 1);
    }
}
