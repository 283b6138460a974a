//! Small sampling helpers on top of `rand` (the workspace does not carry `rand_distr`).
//!
//! Everything takes the caller's RNG so that the whole dataset stays a pure function of the seed.

use rand::Rng;

/// Standard normal draw (Box-Muller; one of the pair is discarded, which keeps the helper stateless).
pub(crate) fn normal<R: Rng>(rng: &mut R) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // (0, 1]
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Log-normal draw with the given median and log-scale standard deviation.
pub(crate) fn lognormal<R: Rng>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// Exponential draw with the given rate (mean `1 / rate`).
pub(crate) fn exponential<R: Rng>(rng: &mut R, rate: f64) -> f64 {
    let u: f64 = rng.random::<f64>();
    -(1.0 - u).ln() / rate
}

/// Gamma draw (Marsaglia-Tsang), shape `k > 0`, scale `theta` (mean `k * theta`).
pub(crate) fn gamma<R: Rng>(rng: &mut R, shape: f64, scale: f64) -> f64 {
    if shape < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(rng, shape + 1.0, scale) * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = 1.0 - rng.random::<f64>();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v * scale;
        }
    }
}

/// Index drawn with probability proportional to `weights`; `None` when every weight is zero.
pub(crate) fn weighted<R: Rng>(rng: &mut R, weights: &[f64]) -> Option<usize> {
    let total: f64 = weights.iter().filter(|w| w.is_finite() && **w > 0.0).sum();
    if total <= 0.0 {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, &w) in weights.iter().enumerate() {
        if !(w.is_finite() && w > 0.0) {
            continue;
        }
        last = Some(i);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    last
}

/// Lower-case hex token of `n` characters.
pub(crate) fn hex<R: Rng>(rng: &mut R, n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..n)
        .map(|_| char::from(HEX[rng.random_range(0..16usize)]))
        .collect()
}

/// Uniform integer in `[lo, hi)`; `lo` when the range is empty.
pub(crate) fn between<R: Rng>(rng: &mut R, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// Uniform float in `[lo, hi)`.
pub(crate) fn uniform<R: Rng>(rng: &mut R, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * rng.random::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn moments_are_plausible() {
        let mut rng = StdRng::seed_from_u64(7);
        let n = 20_000;
        let g: f64 = (0..n).map(|_| gamma(&mut rng, 0.8, 2.0)).sum::<f64>() / f64::from(n);
        assert!((g - 1.6).abs() < 0.1, "gamma mean {g}");
        let e: f64 = (0..n).map(|_| exponential(&mut rng, 4.0)).sum::<f64>() / f64::from(n);
        assert!((e - 0.25).abs() < 0.02, "exp mean {e}");
        let z: f64 = (0..n).map(|_| normal(&mut rng)).sum::<f64>() / f64::from(n);
        assert!(z.abs() < 0.05, "normal mean {z}");
        let mut hits = [0u32; 3];
        for _ in 0..n {
            if let Some(i) = weighted(&mut rng, &[1.0, 0.0, 3.0]) {
                hits[i] += 1;
            }
        }
        assert_eq!(hits[1], 0);
        assert!(hits[2] > 2 * hits[0]);
        assert_eq!(weighted(&mut rng, &[0.0, 0.0]), None);
    }
}
