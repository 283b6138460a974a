//! Element-wise steps of a transformer layer, written so that the compiler vectorises them:
//! branch-free `exp` (Cody-Waite reduction and the Cephes polynomial, relative error < 2e-7)
//! and `erf` (Abramowitz & Stegun 7.1.26: 1.5e-7, under 5e-7 in f32), exact-erf GELU, softmax,
//! bias and residual adds and layer norm. Each public function runs an AVX-512 or AVX2+FMA
//! compilation of the same code when the CPU has it (the build targets baseline x86-64); the
//! polynomials use `mul_add`, fused multiply-adds there (a library call on CPUs without FMA:
//! slower, same results).

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split in two for the Cody-Waite reduction (shared with the AVX-512 exponential of
/// [`crate::attention_bf16`]).
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// The Cephes polynomial of `exp` on the reduced argument, highest degree first.
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];
/// 1.5 x 2^23: adding it rounds to the nearest integer, which then sits in the low mantissa bits.
const ROUND: f32 = 12_582_912.0;

/// `e^x`, for x in about [-87, 88] (clamped there), without branches or libm.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    // Not `clamp`: this keeps NaN in and compiles to two vector min/max instructions.
    #[allow(clippy::manual_clamp)]
    let x = x.max(-87.0).min(88.0);
    let t = x.mul_add(LOG2E, ROUND);
    let n = t - ROUND;
    let r = (-n).mul_add(LN2_LO, (-n).mul_add(LN2_HI, x));
    let mut p = EXP_POLY[0];
    for c in &EXP_POLY[1..] {
        p = p.mul_add(r, *c);
    }
    let y = p.mul_add(r * r, r) + 1.0;
    // The rounded integer n is in t's low mantissa bits (two's complement offset by 2^22).
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    y * scale
}

/// The error function (absolute error below 5e-7 in f32).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let sign = x.to_bits() & 0x8000_0000;
    let a = f32::from_bits(x.to_bits() & 0x7FFF_FFFF);
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let mut poly = 1.061_405_4f32.mul_add(t, -1.453_152_1);
    poly = poly.mul_add(t, 1.421_413_7);
    poly = poly.mul_add(t, -0.284_496_74);
    poly = poly.mul_add(t, 0.254_829_6) * t;
    let y = (-poly).mul_add(exp(-a * a), 1.0);
    f32::from_bits(y.to_bits() | sign)
}

/// GELU with the exact error function (BERT's `gelu`).
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// `bf16_round(gelu(x))` of each value (inlined into vectorised callers such as the int8
/// kernel's fused epilogue).
#[inline(always)]
pub(crate) fn gelu_bf16<const N: usize>(x: &[f32; N]) -> [u16; N] {
    let mut out = [0u16; N];
    for (o, v) in out.iter_mut().zip(x) {
        *o = bf16_round(gelu(*v).to_bits());
    }
    out
}

/// `gelu(x)` of each value (inlined into vectorised callers such as the int8 kernel's fused
/// epilogue).
#[inline(always)]
pub(crate) fn gelu_block<const N: usize>(x: &[f32; N]) -> [f32; N] {
    let mut out = [0.0f32; N];
    for (o, v) in out.iter_mut().zip(x) {
        *o = gelu(*v);
    }
    out
}

/// Sum with 16 independent accumulators (a plain `f32` sum is a serial chain the compiler may
/// not vectorise, since reordering changes the rounding).
#[inline(always)]
pub fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    let mut s: f32 = chunks.remainder().iter().sum();
    for a in acc {
        s += a;
    }
    s
}

/// Maximum with 16 independent accumulators (`NEG_INFINITY` for an empty slice).
#[inline(always)]
pub fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = xs.chunks_exact(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in chunks.remainder().iter().chain(acc.iter()) {
        m = if v > m { v } else { m };
    }
    m
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Level {
    Base,
    Avx2,
    Avx512,
}

fn level() -> Level {
    static LEVEL: std::sync::OnceLock<Level> = std::sync::OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Level::Avx2;
            }
        }
        Level::Base
    })
}

/// Defines `pub fn $name(args)` running `$body` compiled for AVX-512, AVX2+FMA or the baseline,
/// whichever the CPU supports.
macro_rules! dispatch {
    ($(#[$doc:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn generic($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f,avx2,fma")]
            fn avx512($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2,fma")]
            fn avx2($($arg: $ty),*) $(-> $ret)? { generic($($arg),*) }
            match level() {
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `level()` saw these features on this CPU.
                Level::Avx512 => unsafe { avx512($($arg),*) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: as above.
                Level::Avx2 => unsafe { avx2($($arg),*) },
                _ => generic($($arg),*),
            }
        }
    };
}

dispatch! {
    /// `rows[r][c] += bias[c]`, then GELU when `gelu`; `rows` is row-major with `bias.len()` columns.
    pub fn bias_act(rows: &mut [f32], bias: &[f32], gelu_after: bool) {
        let n = bias.len();
        if n == 0 {
            return;
        }
        for row in rows.chunks_exact_mut(n) {
            if gelu_after {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x = gelu(*x + b);
                }
            } else {
                for (x, b) in row.iter_mut().zip(bias) {
                    *x += b;
                }
            }
        }
    }
}

/// The bf16 nearest to the f32 with these bits (ties to even). A NaN may come out as
/// infinity: [`crate::amx::bf16`] keeps NaN.
#[inline(always)]
pub fn bf16_round(bits: u32) -> u16 {
    (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

dispatch! {
    /// `out[i] = bf16_round(x[i])`, vectorised.
    pub fn to_bf16(x: &[f32], out: &mut [u16]) {
        for (o, v) in out.iter_mut().zip(x) {
            *o = bf16_round(v.to_bits());
        }
    }
}

dispatch! {
    /// Softmax of each row of `rows` (row length `n`) after multiplying it by `scale`.
    pub fn softmax_rows(rows: &mut [f32], n: usize, scale: f32) {
        if n == 0 {
            return;
        }
        for row in rows.chunks_exact_mut(n) {
            let m = max(row);
            for x in row.iter_mut() {
                *x = exp((*x - m) * scale);
            }
            let inv = 1.0 / sum(row);
            for x in row.iter_mut() {
                *x *= inv;
            }
        }
    }
}

dispatch! {
    /// `x[r] = layer_norm(x[r] + add[r] + bias) * gamma + beta` for each row (length
    /// `gamma.len()`); `add` (no residual) and `bias` may be empty.
    pub fn add_layer_norm(x: &mut [f32], add: &[f32], bias: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let n = gamma.len();
        if n == 0 {
            return;
        }
        let rows = x.len() / n;
        for r in 0..rows {
            let row = &mut x[r * n..(r + 1) * n];
            if !add.is_empty() {
                for (v, a) in row.iter_mut().zip(&add[r * n..(r + 1) * n]) {
                    *v += a;
                }
            }
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
            let mean = sum(row) / n as f32;
            let mut acc = [0.0f32; 16];
            let mut chunks = row.chunks_exact(16);
            for c in &mut chunks {
                for (a, v) in acc.iter_mut().zip(c) {
                    *a += (v - mean) * (v - mean);
                }
            }
            let rest: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            let var = (sum(&acc) + rest) / n as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

dispatch! {
    /// `x . y` over the shorter of the two, in f64 (eight independent sums, so that the loop
    /// vectorises; fused multiply-adds where the CPU has them). For [`crate::gptq`]'s
    /// factorisations.
    pub fn dot_f64(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len().min(y.len());
        let (x, y) = (&x[..n], &y[..n]);
        let mut acc = [0.0f64; 8];
        let (xc, yc) = (x.chunks_exact(8), y.chunks_exact(8));
        let tail: f64 = xc.remainder().iter().zip(yc.remainder()).map(|(a, b)| a * b).sum();
        for (a, b) in xc.zip(yc) {
            for t in 0..8 {
                acc[t] = a[t].mul_add(b[t], acc[t]);
            }
        }
        acc.iter().sum::<f64>() + tail
    }
}

dispatch! {
    /// `y[i] += a * x[i]` over the shorter of the two, in f64.
    pub fn axpy_f64(y: &mut [f64], a: f64, x: &[f64]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = a.mul_add(x, *y);
        }
    }
}

dispatch! {
    /// `y[i] += a * x[i]` over the shorter of the two, in f32.
    pub fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = a.mul_add(x, *y);
        }
    }
}

/// `e^x` for 16 lanes, for the fused softmax of [`crate::attention_bf16`] and
/// [`crate::attention_f32`].
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512_exp::exp16;

#[cfg(target_arch = "x86_64")]
mod avx512_exp {
    use super::{EXP_POLY, LN2_HI, LN2_LO};
    use std::arch::x86_64::*;

    /// `e^x` for 16 lanes, x in about [-87, 0] (softmax arguments): the Cody-Waite reduction
    /// and Cephes polynomial of [`super::exp`] with fused multiply-adds, `2^n` by
    /// `vscalefps`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let mut p = _mm512_set1_ps(EXP_POLY[0]);
        for c in &EXP_POLY[1..] {
            p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(*c));
        }
        let y = _mm512_add_ps(
            _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r),
            _mm512_set1_ps(1.0),
        );
        _mm512_scalef_ps(y, n)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dot_and_axpy_match_plain_loops() {
        let x: Vec<f64> = (0..37).map(|i| (i as f64 * 0.37).sin()).collect();
        let y: Vec<f64> = (0..37).map(|i| (i as f64 * 0.11).cos()).collect();
        let want: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        assert!((dot_f64(&x, &y) - want).abs() < 1e-12);
        assert!(
            (dot_f64(&x[..5], &y) - x[..5].iter().zip(&y).map(|(a, b)| a * b).sum::<f64>()).abs()
                < 1e-12
        );
        let mut a = y.clone();
        axpy_f64(&mut a, 0.5, &x);
        let mut b: Vec<f32> = y.iter().map(|&v| v as f32).collect();
        let xf: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        axpy_f32(&mut b, 0.5, &xf);
        for ((a, b), (x, y)) in a.iter().zip(&b).zip(x.iter().zip(&y)) {
            assert!((a - (y + 0.5 * x)).abs() < 1e-12);
            assert!((*b as f64 - (y + 0.5 * x)).abs() < 1e-6);
        }
    }

    #[test]
    fn exp_matches_std_to_two_ulps_of_relative_error() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = (x as f64).exp();
            let got = exp(x) as f64;
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
    }

    #[test]
    fn erf_and_gelu_match_references() {
        // erf reference: the f64 series/continued fraction is not in std, so compare with a
        // high-precision numerical integral of 2/sqrt(pi) e^{-t^2}.
        fn erf_ref(x: f64) -> f64 {
            let n = 20_000;
            let h = x / n as f64;
            let mut s = 0.0;
            for i in 0..n {
                let t = (i as f64 + 0.5) * h;
                s += (-t * t).exp();
            }
            s * h * 2.0 / std::f64::consts::PI.sqrt()
        }
        for i in -60..=60 {
            let x = i as f32 * 0.1;
            let want = erf_ref(x as f64);
            assert!(
                (erf(x) as f64 - want).abs() < 5e-7,
                "erf({x}) = {} vs {want}",
                erf(x)
            );
            let g = gelu(x) as f64;
            let gw = 0.5 * x as f64 * (1.0 + erf_ref(x as f64 / 2f64.sqrt()));
            assert!((g - gw).abs() < 1e-6 * (1.0 + x.abs() as f64), "gelu({x})");
        }
    }

    #[test]
    fn softmax_and_layer_norm_match_plain_formulas() {
        let mut rows: Vec<f32> = (0..3 * 37)
            .map(|i| ((i * 7919) % 23) as f32 * 0.3 - 3.0)
            .collect();
        let orig = rows.clone();
        softmax_rows(&mut rows, 37, 0.5);
        for (r, o) in rows.chunks(37).zip(orig.chunks(37)) {
            let m = o.iter().cloned().fold(f32::MIN, f32::max);
            let s: f64 = o.iter().map(|&v| (((v - m) * 0.5) as f64).exp()).sum();
            for (a, &v) in r.iter().zip(o) {
                let want = (((v - m) * 0.5) as f64).exp() / s;
                assert!((*a as f64 - want).abs() < 1e-6);
            }
        }
        let mut x: Vec<f32> = (0..2 * 5).map(|i| i as f32).collect();
        let add = vec![1.0f32; 10];
        let bias = vec![0.5f32; 5];
        add_layer_norm(&mut x, &add, &bias, &[2.0; 5], &[1.0; 5], 1e-12);
        // Row 0: 1.5, 2.5, ..., 5.5: mean 3.5, var 2 -> (v - 3.5) / sqrt(2) * 2 + 1.
        for (i, v) in x[..5].iter().enumerate() {
            let want = (i as f32 - 2.0) / 2f32.sqrt() * 2.0 + 1.0;
            assert!((v - want).abs() < 1e-5);
        }
        // A residual without a bias is still added.
        let mut z = vec![0.0f32, 0.0, 0.0, 0.0];
        add_layer_norm(
            &mut z,
            &[1.0, 3.0, 5.0, 7.0],
            &[],
            &[1.0; 4],
            &[0.0; 4],
            1e-12,
        );
        let want = [-3.0f32, -1.0, 1.0, 3.0].map(|v| v / 5f32.sqrt());
        for (v, w) in z.iter().zip(want) {
            assert!((v - w).abs() < 1e-5, "{z:?}");
        }
        let mut y = vec![1.0f32, -1.0, 0.0, 2.0];
        bias_act(&mut y, &[1.0, 1.0], true);
        assert!((y[0] - gelu(2.0)).abs() < 1e-7 && (y[1] - 0.0).abs() < 1e-7);
    }
}
