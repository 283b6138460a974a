//! scikit-learn's stratified train/test split, reproduced index for index.
//!
//! Benchmark protocols that quote anchors from scikit-learn runs (`train_test_split(X, y,
//! test_size=..., stratify=y, random_state=seed)`) are only comparable with our figures on the
//! very same rows. [`sklearn_stratified_split`] draws that split: numpy's legacy `RandomState`
//! (MT19937 seeded by `init_genrand`, bounded integers by masked rejection of 32-bit draws, the
//! Fisher-Yates `shuffle`) driven through `StratifiedShuffleSplit`'s steps (`_approximate_mode`
//! for the per-class counts, one permutation per class in sorted class order). Reference
//! outputs for the tests were produced with numpy 2 / scikit-learn 1.9 (see the tests).

/// MT19937 as numpy's legacy `RandomState(seed)` runs it.
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// `init_genrand(seed)`: what `np.random.RandomState(seed)` does for an integer seed.
    pub fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, pos: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    /// `genrand_int32`.
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// numpy's `random_interval(max)`: uniform in `0..=max` by masked rejection (`max` below
    /// 2^32, as every index here is).
    pub fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        loop {
            let v = self.next_u32() & mask;
            if v <= max {
                return v;
            }
        }
    }

    /// `RandomState.shuffle` of a one-dimensional array.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.interval(i as u32) as usize;
            xs.swap(i, j);
        }
    }

    /// `RandomState.permutation(n)`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut xs: Vec<usize> = (0..n).collect();
        self.shuffle(&mut xs);
        xs
    }
}

/// scikit-learn's `_approximate_mode`: `n_draws` spread over classes in proportion to
/// `counts`, the remainders' ties broken at random (`rng.choice(..., replace=False)`).
fn approximate_mode(counts: &[usize], n_draws: usize, rng: &mut Mt19937) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    if total == 0 {
        return vec![0; counts.len()];
    }
    let continuous: Vec<f64> = counts
        .iter()
        .map(|&c| (c * n_draws) as f64 / total as f64)
        .collect();
    let mut floored: Vec<usize> = continuous.iter().map(|c| c.floor() as usize).collect();
    let mut need = n_draws.saturating_sub(floored.iter().sum());
    if need > 0 {
        let remainder: Vec<f64> = continuous
            .iter()
            .zip(&floored)
            .map(|(c, &f)| c - f as f64)
            .collect();
        let mut values = remainder.clone();
        values.sort_by(|a, b| b.total_cmp(a));
        values.dedup();
        for value in values {
            let inds: Vec<usize> = (0..remainder.len())
                .filter(|&i| remainder[i] == value)
                .collect();
            let add_now = inds.len().min(need);
            // `choice(inds, add_now, replace=False)` = `inds[permutation(len)[:add_now]]`.
            for k in rng.permutation(inds.len()).into_iter().take(add_now) {
                floored[inds[k]] += 1;
            }
            need -= add_now;
            if need == 0 {
                break;
            }
        }
    }
    floored
}

/// `train_test_split(range(len(labels)), test_size=test_fraction, stratify=labels,
/// random_state=seed)`: the (train, test) row indices, each sorted ascending. The test part
/// has `ceil(test_fraction * n)` rows. Classes are taken in sorted order, as numpy's `unique`
/// gives them.
pub fn sklearn_stratified_split<T: Ord + Clone>(
    labels: &[T],
    test_fraction: f64,
    seed: u32,
) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let n_test = ((test_fraction * n as f64).ceil() as usize).min(n);
    let n_train = n - n_test;
    let mut classes: Vec<T> = labels.to_vec();
    classes.sort();
    classes.dedup();
    // Row indices of each class in ascending order (numpy's stable argsort of the codes).
    let class_indices: Vec<Vec<usize>> = classes
        .iter()
        .map(|c| (0..n).filter(|&i| labels[i] == *c).collect())
        .collect();
    let counts: Vec<usize> = class_indices.iter().map(Vec::len).collect();
    let mut rng = Mt19937::new(seed);
    let n_i = approximate_mode(&counts, n_train, &mut rng);
    let remaining: Vec<usize> = counts.iter().zip(&n_i).map(|(c, k)| c - k).collect();
    let t_i = approximate_mode(&remaining, n_test, &mut rng);
    let (mut train, mut test) = (Vec::with_capacity(n_train), Vec::with_capacity(n_test));
    for (i, idx) in class_indices.iter().enumerate() {
        let perm = rng.permutation(counts[i]);
        train.extend(perm[..n_i[i]].iter().map(|&p| idx[p]));
        test.extend(perm[n_i[i]..n_i[i] + t_i[i]].iter().map(|&p| idx[p]));
    }
    // scikit-learn shuffles the order of both parts afterwards; membership is settled here.
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values: Python 3.11, numpy 2.x, scikit-learn 1.9.1, e.g.
    //   np.random.RandomState(42).permutation(10)
    //   train_test_split(np.arange(len(y)), test_size=0.3, stratify=y, random_state=7)

    #[test]
    fn mt19937_matches_numpy_randomstate() {
        let mut r = Mt19937::new(42);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [1_608_637_542, 3_421_126_067, 4_083_286_876]
        );
        assert_eq!(
            Mt19937::new(42).permutation(10),
            vec![8, 1, 5, 0, 7, 2, 9, 4, 3, 6]
        );
    }

    #[test]
    fn stratified_split_matches_scikit_learn() {
        let y = [0, 1, 0, 1, 1, 0, 0, 0, 1, 0, 1, 0, 0];
        assert_eq!(
            sklearn_stratified_split(&y, 0.3, 7),
            (vec![0, 2, 4, 5, 6, 8, 9, 10, 11], vec![1, 3, 7, 12])
        );
        let y: Vec<bool> = (0..11).map(|i| i < 5).collect();
        assert_eq!(
            sklearn_stratified_split(&y, 0.5, 3),
            (vec![2, 4, 8, 9, 10], vec![0, 1, 3, 5, 6, 7])
        );
    }

    #[test]
    fn tied_remainders_are_broken_as_scikit_learn_does() {
        // Two classes of 5 and half the rows for testing: 2.5 rows each, one class gets 3 by
        // numpy's `choice`, which draws from the same generator.
        let y: Vec<u8> = (0..10).map(|i| i % 2).collect();
        let cases = [
            (0, vec![3, 4, 7, 8, 9], vec![0, 1, 2, 5, 6]),
            (5, vec![3, 4, 6, 8, 9], vec![0, 1, 2, 5, 7]),
            (11, vec![1, 2, 4, 7, 8], vec![0, 3, 5, 6, 9]),
        ];
        for (seed, train, test) in cases {
            assert_eq!(
                sklearn_stratified_split(&y, 0.5, seed),
                (train, test),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn every_row_lands_in_exactly_one_part() {
        for seed in 0..20u32 {
            let y: Vec<u8> = (0..97u32).map(|i| (i * 7 + seed) as u8 % 3).collect();
            let (train, test) = sklearn_stratified_split(&y, 0.25, seed);
            assert_eq!(test.len(), 25);
            let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
            all.sort_unstable();
            assert_eq!(all, (0..97).collect::<Vec<_>>());
        }
    }
}
