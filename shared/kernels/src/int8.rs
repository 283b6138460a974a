//! 8-bit integer matrix products: i32 accumulation of u8 activations times i8 weights, by
//! AVX512-VNNI (`vpdpbusd`) where the CPU has it (AMD Zen 4 and later; Intel Ice Lake and
//! later), else by AVX2 (`vpmaddubsw` + `vpmaddwd`, every x86-64 CPU since Haswell / Zen 1).
//!
//! `out = x W^T` with `W` `[n x k]`, quantised as PyTorch's dynamic quantisation does it, plus
//! SmoothQuant's per-input scaling:
//! - the weight is multiplied by a per-input factor `s_i` (which the activations are divided by,
//!   so the product is unchanged), then rounded to i8 with one scale per output column;
//! - each activation row `v = x / s` is rounded to u8 over its own range at every call:
//!   `v ~ low + scale * u`, `u` in 0..=255 (asymmetric: the whole byte covers the row's span);
//! - `out[r][c] = scale[r] * wscale[c] * sum_i u[r][i] q[c][i] + low[r] * wscale[c] * sum_i
//!   q[c][i]`, the integer sum exact.
//!
//! The per-input factors move outlier input channels' range from the activations into the
//! weight (SmoothQuant, alpha = 1/2: `s_i = sqrt(max|x_i| / max|W_:,i|)`, from calibration
//! statistics); without them a few outlier channels of BERT's hidden states set each row's
//! scale and the rest lose their resolution.
//!
//! The weight is packed once: 16 output columns x 4 consecutive inputs per 64-byte vector (one
//! `vpdpbusd` operand, or two AVX2 vectors of 8 columns). The VNNI micro-kernel keeps an 8-row
//! x 32-column block of i32 sums in 16 registers; each step broadcasts 4 inputs of a row
//! against two weight vectors.
//!
//! AVX2 has no u8 x i8 multiply-add into i32: `vpmaddubsw` adds two u8 x i8 products into a
//! *saturating* i16, which 255 x 127 x 2 overflows. The AVX2 kernel therefore multiplies the
//! centred activations `u - 128` (in -128..=127): their magnitude (at most 128) is the unsigned
//! operand and their sign is moved onto the weight (`vpsignb`), so each pair is at most 2 x 128
//! x 127 = 32,512 and never saturates; `vpmaddwd` by ones widens the pairs to i32, and adding
//! back `128 x sum_i q[c][i]` gives exactly the VNNI kernel's integer sums, hence the same
//! outputs bit for bit. (PyTorch's FBGEMM instead rounds activations to 7 bits on such CPUs.)
//! The activations are stored centred for it ([`Quantized::centred`]), so the loop spends no
//! instruction on the centring. The extra `vpsignb` competes with the multiplies for the same
//! pipes: on AMD Zen 3 the register block runs at 1.05-1.3x the f32 FMA block's rate (about 2x
//! without the sign step, which exact sums need; `bench/scripts/int8_avx2_microbench.c`).

/// Rows of the output one micro-kernel call keeps in registers: activations are padded to a
/// multiple of this ([`quantize_rows`]).
pub const ROWS: usize = 8;
/// Output columns of one micro-kernel block.
const COLS: usize = 32;

/// The instructions an int8 product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// AVX512-VNNI `vpdpbusd` (with AVX512-F/BW).
    Vnni,
    /// AVX2 `vpmaddubsw` / `vpmaddwd` on centred activations (with FMA).
    Avx2,
}

impl Kernel {
    /// Whether this CPU runs the kernel (checked once).
    pub fn available(self) -> bool {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        match self {
            Kernel::Vnni => *VNNI.get_or_init(imp::detect_vnni),
            Kernel::Avx2 => *AVX2.get_or_init(imp::detect_avx2),
        }
    }

    /// The fastest kernel this CPU runs, if any.
    pub fn best() -> Option<Kernel> {
        [Kernel::Vnni, Kernel::Avx2]
            .into_iter()
            .find(|k| k.available())
    }
}

/// Whether [`Kernel::Avx2`] is the CPU's best product: it has AVX2 but no AVX-512 (AMD Zen
/// 1-3, Intel desktop parts). Measured on AMD Zen 3 (2 cores, 2026-12-01): with the MiniLM
/// mix, single 114-token texts 10-20% faster than f32 (p50, 7 of 7 alternated runs), batch
/// throughput within the machine's noise. CPUs with AVX-512 but neither VNNI nor BF16 are not
/// measured and stay on f32.
pub fn avx2_preferred() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| Kernel::Avx2.available() && !imp::has_avx512f())
}

/// `v` rounded to the nearest multiple of `scale`, in steps (-127..=127).
pub(crate) fn weight_step(v: f32, scale: f32) -> f32 {
    (v / scale).round().clamp(-127.0, 127.0)
}

/// A weight `[n x k]` scaled per input and rounded to i8 per output column, packed for
/// [`matmul`]; `n` a multiple of 32 and `k` of 4.
#[derive(Clone)]
pub struct Packed {
    n: usize,
    k: usize,
    /// Column group `g` (16 columns), input quad `q`: 64 bytes at `(g * k / 4 + q) * 64`, column
    /// `j`'s inputs `4q..4q + 4` at `4 j`.
    data: Vec<i8>,
    /// Per output column: the weight's scale.
    scale: Vec<f32>,
    /// Per output column: scale x the sum of its rounded weights (the activations' `low` term).
    offset: Vec<f32>,
    /// Per input: `1 / s_i`, what an activation is multiplied by before rounding (0 for the
    /// outlier inputs, which stay out of the integer product).
    inv_smooth: Vec<f32>,
    /// Inputs multiplied in f32 instead (the widest on calibration data).
    outliers: Vec<usize>,
    /// Their weights, `[outliers x n]`: `wo[j * n + c] = W[c][outliers[j]]`.
    wo: Vec<f32>,
    /// Per output column: `128 x sum_i q[c][i]`, what the AVX2 kernel's centred sums lack.
    wsum128: Vec<i32>,
    /// What [`matmul`] multiplies with.
    kernel: Kernel,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "int8::Packed({} x {})", self.n, self.k)
    }
}

impl Packed {
    /// Packs a row-major `[n x k]` weight with per-input factors `smooth` (`k` positive finite
    /// values; all ones for plain dynamic quantisation); the inputs listed in `outliers` (each
    /// below `k`, at most once) are multiplied in f32 instead, outside the integer product.
    /// `None` unless `n` is a multiple of 32, `k` of 4, and the lengths, factors and outliers are
    /// valid.
    pub fn new(
        w: &[f32],
        n: usize,
        k: usize,
        smooth: &[f32],
        outliers: &[usize],
    ) -> Option<Packed> {
        Packed::new_calibrated(w, n, k, smooth, outliers, None)
    }

    /// [`Packed::new`], with the weights rounded by GPTQ's error feedback ([`crate::gptq`])
    /// when `gram` (`[k x k]`, the Gram matrix `X^T X` of the unscaled inputs on calibration
    /// data) is given; `None` also when that matrix is unusable.
    pub fn new_calibrated(
        w: &[f32],
        n: usize,
        k: usize,
        smooth: &[f32],
        outliers: &[usize],
        gram: Option<&[f32]>,
    ) -> Option<Packed> {
        let mut seen = vec![false; k];
        if outliers
            .iter()
            .any(|&i| i >= k || std::mem::replace(&mut seen[i], true))
        {
            return None;
        }
        if n == 0
            || k == 0
            || !n.is_multiple_of(COLS)
            || !k.is_multiple_of(4)
            || w.len() != n * k
            || smooth.len() != k
            || smooth.iter().any(|s| !s.is_finite() || *s <= 0.0)
            || w.iter().any(|v| !v.is_finite())
        {
            return None;
        }
        // The scaled weight (outlier inputs zeroed) and each column's step.
        let mut cols = vec![0.0f32; n * k];
        let mut scale = vec![0.0f32; n];
        for c in 0..n {
            let col = &mut cols[c * k..(c + 1) * k];
            for (((v, &x), &s), &out) in col
                .iter_mut()
                .zip(&w[c * k..(c + 1) * k])
                .zip(smooth)
                .zip(&seen)
            {
                *v = if out { 0.0 } else { x * s };
            }
            let max = col.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            scale[c] = if max > 0.0 { max / 127.0 } else { 1.0 };
        }
        let rounded: Vec<i8> = match gram {
            Some(g) => {
                let inv: Vec<f32> = smooth.iter().map(|s| 1.0 / s).collect();
                crate::gptq::round(&mut cols, (n, k), &scale, g, &inv, outliers)?
            }
            None => cols
                .iter()
                .enumerate()
                .map(|(t, &v)| weight_step(v, scale[t / k]) as i8)
                .collect(),
        };
        let quads = k / 4;
        let mut data = vec![0i8; n * k];
        let mut offset = vec![0.0f32; n];
        let mut wsum128 = vec![0i32; n];
        for c in 0..n {
            let (g, j) = (c / 16, c % 16);
            let mut sum = 0i64;
            for (i, &q) in rounded[c * k..(c + 1) * k].iter().enumerate() {
                sum += q as i64;
                data[(g * quads + i / 4) * 64 + 4 * j + i % 4] = q;
            }
            offset[c] = scale[c] * sum as f32;
            // |sum| <= 127 k: fits i32 for any k a weight can have in memory here.
            wsum128[c] = i32::try_from(128 * sum).ok()?;
        }
        let mut wo = vec![0.0f32; outliers.len() * n];
        for (j, &i) in outliers.iter().enumerate() {
            for c in 0..n {
                wo[j * n + c] = w[c * k + i];
            }
        }
        Some(Packed {
            n,
            k,
            data,
            scale,
            offset,
            inv_smooth: smooth
                .iter()
                .zip(&seen)
                .map(|(s, &out)| if out { 0.0 } else { 1.0 / s })
                .collect(),
            outliers: outliers.to_vec(),
            wo,
            wsum128,
            kernel: Kernel::best().unwrap_or(Kernel::Vnni),
        })
    }

    /// The same weight multiplied by `kernel` (by default the fastest the CPU runs).
    pub fn with_kernel(mut self, kernel: Kernel) -> Packed {
        self.kernel = kernel;
        self
    }

    /// What [`matmul`] multiplies this weight with.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The inputs multiplied in f32.
    pub fn outliers(&self) -> &[usize] {
        &self.outliers
    }

    /// The rounded weight `q[c][i]` (for tests and diagnostics).
    pub fn weight(&self, c: usize, i: usize) -> i8 {
        let quads = self.k / 4;
        self.data[((c / 16) * quads + i / 4) * 64 + 4 * (c % 16) + i % 4]
    }

    /// The scale of output column `c`.
    pub fn scale(&self, c: usize) -> f32 {
        self.scale[c]
    }
}

/// Activation rows rounded to u8 for [`matmul`], with each row's `scale` and `low`; rows past
/// the real ones are zeros (u 0, scale 0, low 0).
#[derive(Default, Clone, Debug)]
pub struct Quantized {
    /// Row-major, `k` bytes a row: `u`, or `u ^ 0x80` when [`Quantized::centred`] (read
    /// either as `u` with [`Quantized::u`]).
    pub data: Vec<u8>,
    /// Whether `data` holds `u ^ 0x80`, i.e. `u - 128` as i8: the operand [`Kernel::Avx2`]
    /// multiplies, stored so by [`quantize_rows`] for a weight packed for that kernel (the
    /// centring in its inner loop cost ~15% of the 8-bit block's rate on AMD Zen 3).
    pub centred: bool,
    /// Per row: the value of one step of `u`.
    pub scale: Vec<f32>,
    /// Per row: the value `u = 0` stands for.
    pub low: Vec<f32>,
    /// Per row: the raw values of the weight's outlier inputs (`outliers` a row; zeros in
    /// padding rows).
    pub outlier_values: Vec<f32>,
    /// Rows, padded to a multiple of [`ROWS`].
    pub rows: usize,
}

impl Quantized {
    /// Activation byte `at` (row-major) as the unsigned `u` the row's scale and low apply to.
    pub fn u(&self, at: usize) -> u8 {
        if self.centred {
            self.data[at] ^ 0x80
        } else {
            self.data[at]
        }
    }
}

/// Rounds the first `rows` rows of `x` (row-major, `w`'s `k` columns), divided by `w`'s
/// per-input factors, to u8 over each row's range, into `out` (rows padded with zeros to a
/// multiple of [`ROWS`]), stored as `w`'s kernel multiplies them ([`Quantized::centred`]).
/// Rows are quantised in parallel chunks.
pub fn quantize_rows(x: &[f32], rows: usize, w: &Packed, out: &mut Quantized) {
    use rayon::prelude::*;
    let k = w.k;
    assert!(x.len() >= rows * k, "x is too short");
    let padded = rows.div_ceil(ROWS) * ROWS;
    let centred = w.kernel == Kernel::Avx2;
    let flip = if centred { 0x80 } else { 0 };
    out.centred = centred;
    out.data.resize(padded * k, 0);
    out.data[rows * k..].fill(flip);
    out.scale.resize(padded, 0.0);
    out.low.resize(padded, 0.0);
    out.scale[rows..].fill(0.0);
    out.low[rows..].fill(0.0);
    out.rows = padded;
    let o = w.outliers.len();
    out.outlier_values.resize(padded * o, 0.0);
    out.outlier_values[rows * o..].fill(0.0);
    for r in 0..rows {
        for (v, &i) in out.outlier_values[r * o..(r + 1) * o]
            .iter_mut()
            .zip(&w.outliers)
        {
            *v = x[r * k + i];
        }
    }
    let chunk = 64;
    out.data[..rows * k]
        .par_chunks_mut(chunk * k)
        .zip(out.scale[..rows].par_chunks_mut(chunk))
        .zip(out.low[..rows].par_chunks_mut(chunk))
        .zip(x[..rows * k].par_chunks(chunk * k))
        .for_each(|(((u, s), l), x)| {
            for (((u, s), l), x) in u
                .chunks_exact_mut(k)
                .zip(s.iter_mut())
                .zip(l.iter_mut())
                .zip(x.chunks_exact(k))
            {
                (*s, *l) = quantize_row(x, &w.inv_smooth, u);
                if centred {
                    for b in u.iter_mut() {
                        *b ^= flip;
                    }
                }
            }
        });
}

/// One row of [`quantize_rows`]: `u[i] = floor((x[i] * inv[i] - low) / scale + 1/2)`;
/// returns `(scale, low)` (scale 0 when the row is constant). Vectorised where the CPU has
/// AVX512-BW or AVX2, with exactly [`quantize_row_scalar`]'s arithmetic.
pub fn quantize_row(x: &[f32], inv: &[f32], u: &mut [u8]) -> (f32, f32) {
    assert!(x.len() == inv.len() && x.len() == u.len(), "lengths differ");
    // The vector code takes whole 16-value runs; the rest is done one value at a time.
    let full = x.len() / 16 * 16;
    if Kernel::Vnni.available() {
        quantize_row_with(
            x,
            inv,
            u,
            full,
            // SAFETY: AVX512-F/BW are available; the slices have the same length, a multiple
            // of 16 (`quantize_row_with` hands the first `full` values of each).
            |x, inv| unsafe { imp::range_avx512(x, inv) },
            // SAFETY: as above.
            |x, inv, u, lo, step| unsafe { imp::bytes_avx512(x, inv, u, lo, step) },
        )
    } else if Kernel::Avx2.available() {
        quantize_row_with(
            x,
            inv,
            u,
            full,
            // SAFETY: AVX2 is available; the slices as above.
            |x, inv| unsafe { imp::range_avx2(x, inv) },
            // SAFETY: as above.
            |x, inv, u, lo, step| unsafe { imp::bytes_avx2(x, inv, u, lo, step) },
        )
    } else {
        quantize_row_scalar(x, inv, u)
    }
}

/// [`quantize_row`] one value at a time (the reference, and the path of CPUs without AVX2,
/// which never multiply in int8 but may quantise for tests).
pub fn quantize_row_scalar(x: &[f32], inv: &[f32], u: &mut [u8]) -> (f32, f32) {
    quantize_row_with(
        x,
        inv,
        u,
        0,
        |_, _| (f32::INFINITY, f32::NEG_INFINITY),
        |_, _, _, _, _| {},
    )
}

/// The arithmetic of [`quantize_row`], with the first `full` values done by vector code:
/// `range` gives the least and greatest `x[i] * inv[i]` of those, `bytes(x, inv, u, low,
/// step)` writes their `u[i] = (x[i] * inv[i] - low) * step + 1/2` truncated (both given the
/// `full`-value prefixes of the slices); the rest runs here one value at a time.
fn quantize_row_with(
    x: &[f32],
    inv: &[f32],
    u: &mut [u8],
    full: usize,
    range: impl FnOnce(&[f32], &[f32]) -> (f32, f32),
    bytes: impl FnOnce(&[f32], &[f32], &mut [u8], f32, f32),
) -> (f32, f32) {
    let (mut lo, mut hi) = range(&x[..full], &inv[..full]);
    for (a, b) in x[full..].iter().zip(&inv[full..]) {
        let v = a * b;
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if hi > lo {
        let scale = (hi - lo) / 255.0;
        let step = 1.0 / scale;
        bytes(&x[..full], &inv[..full], &mut u[..full], lo, step);
        for ((o, a), b) in u[full..].iter_mut().zip(&x[full..]).zip(&inv[full..]) {
            // In [0, 255.5] up to rounding (v >= lo exactly): the cast truncates and saturates.
            *o = ((a * b - lo) * step + 0.5) as u8;
        }
        (scale, lo)
    } else {
        u.fill(0);
        (0.0, if lo.is_finite() { lo } else { 0.0 })
    }
}

/// `out[r][c] = scale[r] * wscale[c] * sum_i u[r][i] q[c][i] + low[r] * offset[c]` plus the
/// outlier inputs' f32 products, for the `a.rows` rows (see the module documentation); `out`
/// row-major with `w`'s `n` columns and at least `a.rows` rows. Panics if `w`'s
/// [`Kernel`] is not available or the sizes disagree.
pub fn matmul(a: &Quantized, w: &Packed, out: &mut [f32]) {
    check(a, w, out.len());
    crate::over_column_blocks(w.n / COLS, a.rows * w.n * w.k, out, |first, last, out| {
        // SAFETY: `w`'s kernel is available and `a` holds `a.rows` rows of `w.k` bytes and
        // their parameters, `out` `a.rows x w.n` (`check`), and `over_column_blocks` hands
        // each call its own column blocks [first, last).
        unsafe {
            blocks(
                a,
                w,
                Out::F32 {
                    out,
                    bias: std::ptr::null(),
                    gelu: false,
                },
                first,
                last,
            )
        }
    });
}

/// [`matmul`] with `bias` added to every row and, with `gelu`, GELU ([`crate::math::gelu`])
/// applied after it, on each block while it is in registers (instead of a second pass over the
/// stored product): the same values as [`matmul`] followed by [`crate::math::bias_act`].
/// Panics as [`matmul`] does, or if `bias` does not hold `n` values.
pub fn matmul_bias(a: &Quantized, w: &Packed, bias: &[f32], gelu: bool, out: &mut [f32]) {
    check(a, w, out.len());
    assert_eq!(bias.len(), w.n, "one bias per output column");
    crate::over_column_blocks(w.n / COLS, a.rows * w.n * w.k, out, |first, last, out| {
        let bias = bias.as_ptr();
        // SAFETY: as in `matmul`; `bias` holds `w.n` values (asserted above).
        unsafe { blocks(a, w, Out::F32 { out, bias, gelu }, first, last) }
    });
}

/// `out[r][c] = bf16(gelu(y[r][c] + bias[c]))` with `y` the product of [`matmul`]: the bias,
/// GELU ([`crate::math::gelu`]) and the bf16 rounding ([`crate::math::bf16_round`]) applied to
/// each block while it is in registers, so that the f32 product is never stored (the
/// feed-forward-in product of a transformer layer, whose output feeds a bf16 product). The
/// same values as [`matmul`] followed by those steps. Panics as [`matmul`] does, or if `bias`
/// does not hold `n` values.
pub fn matmul_gelu_bf16(a: &Quantized, w: &Packed, bias: &[f32], out: &mut [u16]) {
    check(a, w, out.len());
    assert_eq!(bias.len(), w.n, "one bias per output column");
    crate::over_column_blocks(w.n / COLS, a.rows * w.n * w.k, out, |first, last, out| {
        let bias = bias.as_ptr();
        // SAFETY: as in `matmul`; `bias` holds `w.n` values (asserted above).
        unsafe { blocks(a, w, Out::GeluBf16 { bias, out }, first, last) }
    });
}

/// Column blocks `[first, last)` by `w`'s kernel.
///
/// # Safety
/// As [`imp::blocks`] / [`imp::blocks_avx2`], for `w`'s kernel.
unsafe fn blocks(a: &Quantized, w: &Packed, out: Out, first: usize, last: usize) {
    // SAFETY: forwarded from the caller.
    unsafe {
        match w.kernel {
            Kernel::Vnni => imp::blocks(a, w, out, first, last),
            Kernel::Avx2 => imp::blocks_avx2(a, w, out, first, last),
        }
    }
}

/// The checks shared by [`matmul`] and [`matmul_gelu_bf16`] (`out` values in the output).
fn check(a: &Quantized, w: &Packed, out: usize) {
    assert!(
        w.kernel.available(),
        "the {:?} int8 kernel is not available on this CPU",
        w.kernel
    );
    assert!(a.rows.is_multiple_of(ROWS), "rows must be padded to {ROWS}");
    assert!(
        a.centred == (w.kernel == Kernel::Avx2),
        "a was quantised for another int8 kernel than {:?}",
        w.kernel
    );
    assert!(
        a.data.len() >= a.rows * w.k
            && a.scale.len() >= a.rows
            && a.low.len() >= a.rows
            && a.outlier_values.len() >= a.rows * w.outliers.len(),
        "a is too short (quantised for another weight?)"
    );
    assert!(out >= a.rows * w.n, "out is too short");
}

/// Where the kernel writes its blocks: f32 products (plus `bias` unless it is null, then GELU
/// if `gelu`), or `bf16(gelu(product + bias))`.
#[derive(Clone, Copy)]
enum Out {
    F32 {
        out: *mut f32,
        bias: *const f32,
        gelu: bool,
    },
    GeluBf16 {
        bias: *const f32,
        out: *mut u16,
    },
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{COLS, Out, Packed, Quantized, ROWS};
    use std::arch::x86_64::*;

    pub(super) fn detect_vnni() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }

    pub(super) fn detect_avx2() -> bool {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }

    pub(super) fn has_avx512f() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// The least and greatest `x[i] * inv[i]`, 16 at a time.
    ///
    /// # Safety
    /// The CPU must have AVX512-F; `x` and `inv` must have the same length, a multiple of 16.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn range_avx512(x: &[f32], inv: &[f32]) -> (f32, f32) {
        let (xp, ip) = (x.as_ptr(), inv.as_ptr());
        let mut vlo = _mm512_set1_ps(f32::INFINITY);
        let mut vhi = _mm512_set1_ps(f32::NEG_INFINITY);
        for i in (0..x.len()).step_by(16) {
            // SAFETY: i + 16 <= the slices' common length.
            let v =
                unsafe { _mm512_mul_ps(_mm512_loadu_ps(xp.add(i)), _mm512_loadu_ps(ip.add(i))) };
            vlo = _mm512_min_ps(vlo, v);
            vhi = _mm512_max_ps(vhi, v);
        }
        (_mm512_reduce_min_ps(vlo), _mm512_reduce_max_ps(vhi))
    }

    /// `u[i] = (x[i] * inv[i] - lo) * step + 1/2` truncated, 16 at a time (the scalar
    /// operations in the same order, so the same bytes for finite input).
    ///
    /// # Safety
    /// The CPU must have AVX512-F/BW; the three slices must have the same length, a multiple
    /// of 16.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn bytes_avx512(x: &[f32], inv: &[f32], u: &mut [u8], lo: f32, step: f32) {
        let (xp, ip, up) = (x.as_ptr(), inv.as_ptr(), u.as_mut_ptr());
        let (vl, vs, half) = (
            _mm512_set1_ps(lo),
            _mm512_set1_ps(step),
            _mm512_set1_ps(0.5),
        );
        for i in (0..x.len()).step_by(16) {
            // SAFETY: i + 16 <= the slices' common length: 16 floats each, 16 bytes of u.
            unsafe {
                let v = _mm512_mul_ps(_mm512_loadu_ps(xp.add(i)), _mm512_loadu_ps(ip.add(i)));
                let t = _mm512_add_ps(_mm512_mul_ps(_mm512_sub_ps(v, vl), vs), half);
                let b = _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(t));
                _mm_storeu_si128(up.add(i).cast::<__m128i>(), b);
            }
        }
    }

    /// Column blocks `[first, last)` (32 columns each) of the product, all rows.
    ///
    /// # Safety
    /// The CPU must have AVX512-F/BW/VNNI; `a` must hold `a.rows` (a multiple of `ROWS`) rows
    /// of `w.k` bytes with their scale and low, `out` at least `a.rows x w.n` values (and the
    /// bias `w.n`) with nothing else writing columns `[first * 32, last * 32)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn blocks(a: &Quantized, w: &Packed, out: Out, first: usize, last: usize) {
        let (n, k) = (w.n, w.k);
        let quads = k / 4;
        let data = w.data.as_ptr();
        let u = a.data.as_ptr();
        for cb in first..last {
            let b0 = data.wrapping_add(2 * cb * quads * 64);
            let b1 = data.wrapping_add((2 * cb + 1) * quads * 64);
            // SAFETY: columns cb*32..cb*32+32 < n of the per-column vectors.
            let (s0, s1, o0, o1) = unsafe {
                (
                    _mm512_loadu_ps(w.scale.as_ptr().add(cb * COLS)),
                    _mm512_loadu_ps(w.scale.as_ptr().add(cb * COLS + 16)),
                    _mm512_loadu_ps(w.offset.as_ptr().add(cb * COLS)),
                    _mm512_loadu_ps(w.offset.as_ptr().add(cb * COLS + 16)),
                )
            };
            for rb in (0..a.rows).step_by(ROWS) {
                let mut acc = [[_mm512_setzero_si512(); 2]; ROWS];
                let ar = u.wrapping_add(rb * k);
                for q in 0..quads {
                    // SAFETY: quad q of column groups 2cb and 2cb+1 lies inside the packed
                    // weight (n x k bytes); rows rb..rb+ROWS of `a` hold k bytes each.
                    unsafe {
                        let v0 = _mm512_loadu_si512(b0.add(q * 64).cast::<__m512i>());
                        let v1 = _mm512_loadu_si512(b1.add(q * 64).cast::<__m512i>());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = _mm512_set1_epi32(
                                ar.add(r * k + 4 * q).cast::<i32>().read_unaligned(),
                            );
                            acc[0] = _mm512_dpbusd_epi32(acc[0], x, v0);
                            acc[1] = _mm512_dpbusd_epi32(acc[1], x, v1);
                        }
                    }
                }
                let outs = w.outliers.len();
                let mut y = [[_mm512_setzero_ps(); 2]; ROWS];
                for (r, (y, acc)) in y.iter_mut().zip(&acc).enumerate() {
                    let (sv, lv) = (
                        _mm512_set1_ps(a.scale[rb + r]),
                        _mm512_set1_ps(a.low[rb + r]),
                    );
                    y[0] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(acc[0]),
                        _mm512_mul_ps(sv, s0),
                        _mm512_mul_ps(lv, o0),
                    );
                    y[1] = _mm512_fmadd_ps(
                        _mm512_cvtepi32_ps(acc[1]),
                        _mm512_mul_ps(sv, s1),
                        _mm512_mul_ps(lv, o1),
                    );
                }
                // The outlier inputs in f32: each weight pair loaded once for the 8 rows.
                let xo = &a.outlier_values[rb * outs..(rb + ROWS) * outs];
                for j in 0..outs {
                    // SAFETY: outlier j's weights for columns cb*32..cb*32+32 < n lie inside
                    // `wo` (outliers x n).
                    let (w0, w1) = unsafe {
                        let wj = w.wo.as_ptr().add(j * n + cb * COLS);
                        (_mm512_loadu_ps(wj), _mm512_loadu_ps(wj.add(16)))
                    };
                    for (r, y) in y.iter_mut().enumerate() {
                        let xv = _mm512_set1_ps(xo[r * outs + j]);
                        y[0] = _mm512_fmadd_ps(xv, w0, y[0]);
                        y[1] = _mm512_fmadd_ps(xv, w1, y[1]);
                    }
                }
                for (r, y) in y.iter().enumerate() {
                    let (y0, y1) = (y[0], y[1]);
                    let at = (rb + r) * n + cb * COLS;
                    // SAFETY: row rb + r < a.rows, columns cb*32..cb*32+32 < n: inside `out`
                    // (and `bias`), and in this call's own column range.
                    unsafe {
                        match out {
                            Out::F32 { out, bias, gelu } => {
                                let (mut y0, mut y1) = (y0, y1);
                                if !bias.is_null() {
                                    let b = bias.add(cb * COLS);
                                    y0 = _mm512_add_ps(y0, _mm512_loadu_ps(b));
                                    y1 = _mm512_add_ps(y1, _mm512_loadu_ps(b.add(16)));
                                }
                                if gelu {
                                    let mut t = [0.0f32; COLS];
                                    _mm512_storeu_ps(t.as_mut_ptr(), y0);
                                    _mm512_storeu_ps(t.as_mut_ptr().add(16), y1);
                                    let o = crate::math::gelu_block(&t);
                                    y0 = _mm512_loadu_ps(o.as_ptr());
                                    y1 = _mm512_loadu_ps(o.as_ptr().add(16));
                                }
                                _mm512_storeu_ps(out.add(at), y0);
                                _mm512_storeu_ps(out.add(at + 16), y1);
                            }
                            Out::GeluBf16 { bias, out } => {
                                let b = bias.add(cb * COLS);
                                let mut t = [0.0f32; COLS];
                                _mm512_storeu_ps(
                                    t.as_mut_ptr(),
                                    _mm512_add_ps(y0, _mm512_loadu_ps(b)),
                                );
                                _mm512_storeu_ps(
                                    t.as_mut_ptr().add(16),
                                    _mm512_add_ps(y1, _mm512_loadu_ps(b.add(16))),
                                );
                                let o = crate::math::gelu_bf16(&t);
                                _mm512_storeu_si512(
                                    out.add(at).cast::<__m512i>(),
                                    _mm512_loadu_si512(o.as_ptr().cast::<__m512i>()),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    /// [`range_avx512`] 8 at a time.
    ///
    /// # Safety
    /// The CPU must have AVX; `x` and `inv` must have the same length, a multiple of 8.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn range_avx2(x: &[f32], inv: &[f32]) -> (f32, f32) {
        let (xp, ip) = (x.as_ptr(), inv.as_ptr());
        let mut vlo = _mm256_set1_ps(f32::INFINITY);
        let mut vhi = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..x.len()).step_by(8) {
            // SAFETY: i + 8 <= the slices' common length.
            let v =
                unsafe { _mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(ip.add(i))) };
            vlo = _mm256_min_ps(vlo, v);
            vhi = _mm256_max_ps(vhi, v);
        }
        let (mut los, mut his) = ([0.0f32; 8], [0.0f32; 8]);
        // SAFETY: 8 floats each.
        unsafe {
            _mm256_storeu_ps(los.as_mut_ptr(), vlo);
            _mm256_storeu_ps(his.as_mut_ptr(), vhi);
        }
        (
            los.iter().fold(f32::INFINITY, |m, &v| m.min(v)),
            his.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
        )
    }

    /// [`bytes_avx512`] on AVX2, 16 at a time (the same bytes).
    ///
    /// # Safety
    /// The CPU must have AVX2; the three slices must have the same length, a multiple of 16.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn bytes_avx2(x: &[f32], inv: &[f32], u: &mut [u8], lo: f32, step: f32) {
        let (xp, ip, up) = (x.as_ptr(), inv.as_ptr(), u.as_mut_ptr());
        let (vl, vs, half) = (
            _mm256_set1_ps(lo),
            _mm256_set1_ps(step),
            _mm256_set1_ps(0.5),
        );
        for i in (0..x.len()).step_by(16) {
            // SAFETY: i + 16 <= the slices' common length: 16 floats each, 16 bytes of u.
            unsafe {
                let t0 = _mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), _mm256_loadu_ps(ip.add(i)));
                let t1 = _mm256_mul_ps(
                    _mm256_loadu_ps(xp.add(i + 8)),
                    _mm256_loadu_ps(ip.add(i + 8)),
                );
                let t0 = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(t0, vl), vs), half);
                let t1 = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(t1, vl), vs), half);
                // Truncation as the scalar cast (values in [0.5, 255.5]); the packs saturate
                // per 128-bit lane, the permutation puts the lanes back in order.
                let w = _mm256_packus_epi32(_mm256_cvttps_epi32(t0), _mm256_cvttps_epi32(t1));
                let w = _mm256_permute4x64_epi64::<0b11_01_10_00>(w);
                let b =
                    _mm_packus_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256::<1>(w));
                _mm_storeu_si128(up.add(i).cast::<__m128i>(), b);
            }
        }
    }

    /// [`blocks`] on AVX2: the same outputs bit for bit. Each 32-column block runs as two
    /// 16-column groups (one packed 64-byte vector: columns 0-7 and 8-15 of the group), four
    /// rows at a time: 8 registers of i32 sums.
    ///
    /// # Safety
    /// As [`blocks`], with AVX2 and FMA instead of AVX-512.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn blocks_avx2(
        a: &Quantized,
        w: &Packed,
        out: Out,
        first: usize,
        last: usize,
    ) {
        const R: usize = 4;
        const _: () = assert!(ROWS.is_multiple_of(R));
        let (n, k) = (w.n, w.k);
        let quads = k / 4;
        let data = w.data.as_ptr();
        let u = a.data.as_ptr();
        let ones = _mm256_set1_epi16(1);
        let outs = w.outliers.len();
        for g in 2 * first..2 * last {
            let bg = data.wrapping_add(g * quads * 64);
            let c0 = g * 16;
            // SAFETY: columns c0..c0+16 < n of the per-column vectors.
            let (s, o, ws) = unsafe {
                (
                    [
                        _mm256_loadu_ps(w.scale.as_ptr().add(c0)),
                        _mm256_loadu_ps(w.scale.as_ptr().add(c0 + 8)),
                    ],
                    [
                        _mm256_loadu_ps(w.offset.as_ptr().add(c0)),
                        _mm256_loadu_ps(w.offset.as_ptr().add(c0 + 8)),
                    ],
                    [
                        _mm256_loadu_si256(w.wsum128.as_ptr().add(c0).cast::<__m256i>()),
                        _mm256_loadu_si256(w.wsum128.as_ptr().add(c0 + 8).cast::<__m256i>()),
                    ],
                )
            };
            for rb in (0..a.rows).step_by(R) {
                let mut acc = [[_mm256_setzero_si256(); 2]; R];
                let ar = u.wrapping_add(rb * k);
                for q in 0..quads {
                    // SAFETY: quad q of column group g lies inside the packed weight (n x k
                    // bytes); rows rb..rb+R of `a` hold k bytes each.
                    unsafe {
                        let v0 = _mm256_loadu_si256(bg.add(q * 64).cast::<__m256i>());
                        let v1 = _mm256_loadu_si256(bg.add(q * 64 + 32).cast::<__m256i>());
                        for (r, acc) in acc.iter_mut().enumerate() {
                            // u - 128 as i8 (stored centred); its magnitude times the
                            // weight with its sign.
                            let c = _mm256_set1_epi32(
                                ar.add(r * k + 4 * q).cast::<i32>().read_unaligned(),
                            );
                            let m = _mm256_abs_epi8(c);
                            let p0 = _mm256_maddubs_epi16(m, _mm256_sign_epi8(v0, c));
                            let p1 = _mm256_maddubs_epi16(m, _mm256_sign_epi8(v1, c));
                            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(p0, ones));
                            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(p1, ones));
                        }
                    }
                }
                // The VNNI kernel's arithmetic on the restored sums.
                let mut y = [[_mm256_setzero_ps(); 2]; R];
                for (r, (y, acc)) in y.iter_mut().zip(&acc).enumerate() {
                    let (sv, lv) = (
                        _mm256_set1_ps(a.scale[rb + r]),
                        _mm256_set1_ps(a.low[rb + r]),
                    );
                    for h in 0..2 {
                        y[h] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(_mm256_add_epi32(acc[h], ws[h])),
                            _mm256_mul_ps(sv, s[h]),
                            _mm256_mul_ps(lv, o[h]),
                        );
                    }
                }
                let xo = &a.outlier_values[rb * outs..(rb + R) * outs];
                for j in 0..outs {
                    // SAFETY: outlier j's weights for columns c0..c0+16 < n lie inside `wo`.
                    let (w0, w1) = unsafe {
                        let wj = w.wo.as_ptr().add(j * n + c0);
                        (_mm256_loadu_ps(wj), _mm256_loadu_ps(wj.add(8)))
                    };
                    for (r, y) in y.iter_mut().enumerate() {
                        let xv = _mm256_set1_ps(xo[r * outs + j]);
                        y[0] = _mm256_fmadd_ps(xv, w0, y[0]);
                        y[1] = _mm256_fmadd_ps(xv, w1, y[1]);
                    }
                }
                for (r, y) in y.iter().enumerate() {
                    let at = (rb + r) * n + c0;
                    // SAFETY: row rb + r < a.rows, columns c0..c0+16 < n: inside `out` (and
                    // `bias`), and in this call's own column range.
                    unsafe {
                        match out {
                            Out::F32 { out, bias, gelu } => {
                                let (mut y0, mut y1) = (y[0], y[1]);
                                if !bias.is_null() {
                                    let b = bias.add(c0);
                                    y0 = _mm256_add_ps(y0, _mm256_loadu_ps(b));
                                    y1 = _mm256_add_ps(y1, _mm256_loadu_ps(b.add(8)));
                                }
                                if gelu {
                                    let mut t = [0.0f32; 16];
                                    _mm256_storeu_ps(t.as_mut_ptr(), y0);
                                    _mm256_storeu_ps(t.as_mut_ptr().add(8), y1);
                                    let o = crate::math::gelu_block(&t);
                                    y0 = _mm256_loadu_ps(o.as_ptr());
                                    y1 = _mm256_loadu_ps(o.as_ptr().add(8));
                                }
                                _mm256_storeu_ps(out.add(at), y0);
                                _mm256_storeu_ps(out.add(at + 8), y1);
                            }
                            Out::GeluBf16 { bias, out } => {
                                let b = bias.add(c0);
                                let mut t = [0.0f32; 16];
                                _mm256_storeu_ps(
                                    t.as_mut_ptr(),
                                    _mm256_add_ps(y[0], _mm256_loadu_ps(b)),
                                );
                                _mm256_storeu_ps(
                                    t.as_mut_ptr().add(8),
                                    _mm256_add_ps(y[1], _mm256_loadu_ps(b.add(8))),
                                );
                                let o = crate::math::gelu_bf16(&t);
                                _mm256_storeu_si256(
                                    out.add(at).cast::<__m256i>(),
                                    _mm256_loadu_si256(o.as_ptr().cast::<__m256i>()),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::{Out, Packed, Quantized};

    pub(super) fn detect_vnni() -> bool {
        false
    }

    pub(super) fn detect_avx2() -> bool {
        false
    }

    pub(super) fn has_avx512f() -> bool {
        false
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn range_avx512(_: &[f32], _: &[f32]) -> (f32, f32) {
        unreachable!("AVX-512 is not available on this platform")
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn bytes_avx512(_: &[f32], _: &[f32], _: &mut [u8], _: f32, _: f32) {
        unreachable!("AVX-512 is not available on this platform")
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn range_avx2(_: &[f32], _: &[f32]) -> (f32, f32) {
        unreachable!("AVX2 is not available on this platform")
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn bytes_avx2(_: &[f32], _: &[f32], _: &mut [u8], _: f32, _: f32) {
        unreachable!("AVX2 is not available on this platform")
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn blocks(_: &Quantized, _: &Packed, _: Out, _: usize, _: usize) {
        unreachable!("AVX512-VNNI is not available on this platform")
    }

    /// Never called: no kernel is available here.
    pub(super) unsafe fn blocks_avx2(_: &Quantized, _: &Packed, _: Out, _: usize, _: usize) {
        unreachable!("AVX2 is not available on this platform")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tests::lcg;

    #[test]
    fn packing_rounds_each_column_to_its_own_scale() {
        let (n, k) = (32, 8);
        let mut s = 5;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let smooth: Vec<f32> = (0..k).map(|i| 0.5 + i as f32 * 0.25).collect();
        let p = Packed::new(&w, n, k, &smooth, &[]).unwrap();
        for c in 0..n {
            let max = (0..k)
                .map(|i| (w[c * k + i] * smooth[i]).abs())
                .fold(0.0, f32::max);
            assert!((p.scale(c) - max / 127.0).abs() < 1e-7);
            for i in 0..k {
                let want = w[c * k + i] * smooth[i] / p.scale(c);
                assert!((p.weight(c, i) as f32 - want).abs() <= 0.5 + 1e-4);
            }
            assert!((0..k).any(|i| p.weight(c, i).unsigned_abs() == 127));
        }
        assert!(Packed::new(&w, n, k, &vec![0.0; k], &[]).is_none());
        assert!(Packed::new(&w[..16 * k], 16, k, &smooth, &[]).is_none());
        assert!(Packed::new(&w, n, k, &smooth, &[1, 1]).is_none());
        assert!(Packed::new(&w, n, k, &smooth, &[k]).is_none());
    }

    #[test]
    fn rows_round_over_their_own_range() {
        let (n, k) = (32, 12);
        let w = vec![0.1; n * k];
        let smooth = vec![2.0; k];
        let p = Packed::new(&w, n, k, &smooth, &[]).unwrap();
        let mut s = 9;
        let rows = 3;
        let mut x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s) * 3.0).collect();
        x[2 * k..].fill(0.7); // a constant row
        let mut q = Quantized::default();
        quantize_rows(&x, rows, &p, &mut q);
        assert_eq!(q.rows, ROWS);
        for r in 0..rows {
            for i in 0..k {
                let v = x[r * k + i] / 2.0;
                let back = q.low[r] + q.scale[r] * q.u(r * k + i) as f32;
                assert!(
                    (back - v).abs() <= q.scale[r] * 0.5 + 1e-5,
                    "[{r}][{i}] {back} vs {v}"
                );
            }
        }
        assert_eq!(q.scale[2], 0.0);
        assert!((q.low[2] - 0.35).abs() < 1e-6);
        // Both ends of a varying row are hit exactly.
        let u = |r: std::ops::Range<usize>| r.map(|i| q.u(i)).collect::<Vec<u8>>();
        assert!(u(0..k).contains(&0) && u(0..k).contains(&255));
        assert!(u(rows * k..q.rows * k).iter().all(|&b| b == 0));
        assert!(q.scale[rows..].iter().all(|&v| v == 0.0));
    }

    #[test]
    fn vector_quantisation_gives_the_scalar_bytes() {
        let mut s = 21;
        for k in [1usize, 4, 15, 16, 17, 384, 1536] {
            for scale in [1e-3f32, 1.0, 300.0] {
                let x: Vec<f32> = (0..k).map(|_| lcg(&mut s) * scale).collect();
                let inv: Vec<f32> = (0..k).map(|_| 0.25 + lcg(&mut s).abs()).collect();
                let (mut a, mut b) = (vec![7u8; k], vec![9u8; k]);
                let pa = quantize_row(&x, &inv, &mut a);
                let pb = quantize_row_scalar(&x, &inv, &mut b);
                assert_eq!(pa, pb, "k {k}");
                assert_eq!(a, b, "k {k}");
                if Kernel::Avx2.available() {
                    let mut c = vec![3u8; k];
                    let full = k / 16 * 16;
                    let pc = quantize_row_with(
                        &x,
                        &inv,
                        &mut c,
                        full,
                        // SAFETY: AVX2 is available; equal lengths, multiples of 16.
                        |x, inv| unsafe { imp::range_avx2(x, inv) },
                        // SAFETY: as above.
                        |x, inv, u, lo, step| unsafe { imp::bytes_avx2(x, inv, u, lo, step) },
                    );
                    assert_eq!(pc, pb, "avx2, k {k}");
                    assert_eq!(c, b, "avx2, k {k}");
                }
            }
        }
        let (mut a, mut b) = (vec![1u8; 20], vec![2u8; 20]);
        assert_eq!(
            quantize_row(&[3.0; 20], &[0.5; 20], &mut a),
            quantize_row_scalar(&[3.0; 20], &[0.5; 20], &mut b)
        );
        assert_eq!(a, b);
    }

    /// The kernel's output is exactly the formula over the rounded operands (integer sums in
    /// f64), on shapes from one row to MiniLM's.
    #[test]
    fn matmul_matches_the_formula_over_the_rounded_operands() {
        let kernels: Vec<Kernel> = [Kernel::Vnni, Kernel::Avx2]
            .into_iter()
            .filter(|k| {
                let ok = k.available();
                if !ok {
                    eprintln!("\n*** SKIPPED the {k:?} kernel: not available on this CPU ***\n");
                }
                ok
            })
            .collect();
        for kernel in kernels {
            formula_holds(kernel);
        }
    }

    fn formula_holds(kernel: Kernel) {
        for &(rows, n, k) in &[
            (1usize, 32usize, 4usize),
            (45, 96, 384),
            (300, 1152, 384),
            (64, 384, 1536),
        ] {
            let mut s = (rows * n + k) as u64;
            let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s) * 4.0).collect();
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
            let smooth: Vec<f32> = (0..k).map(|_| 1.0 + lcg(&mut s).abs()).collect();
            // Every third input of the first 48 (some) in f32.
            let outliers: Vec<usize> = (0..k.min(48)).step_by(3).collect();
            let p = Packed::new(&w, n, k, &smooth, &outliers)
                .unwrap()
                .with_kernel(kernel);
            assert!(
                outliers
                    .iter()
                    .all(|&i| (0..n).all(|c| p.weight(c, i) == 0))
            );
            let mut q = Quantized::default();
            quantize_rows(&x, rows, &p, &mut q);
            let mut out = vec![f32::NAN; q.rows * n];
            matmul(&q, &p, &mut out);
            for r in 0..q.rows {
                for c in 0..n {
                    let dot: i64 = (0..k)
                        .map(|i| q.u(r * k + i) as i64 * p.weight(c, i) as i64)
                        .sum();
                    let wsum: i64 = (0..k).map(|i| p.weight(c, i) as i64).sum();
                    let exact: f64 = if r < rows {
                        outliers
                            .iter()
                            .map(|&i| x[r * k + i] as f64 * w[c * k + i] as f64)
                            .sum()
                    } else {
                        0.0
                    };
                    let want = q.scale[r] as f64 * p.scale(c) as f64 * dot as f64
                        + q.low[r] as f64 * p.scale(c) as f64 * wsum as f64
                        + exact;
                    let got = out[r * n + c] as f64;
                    let mag = q.scale[r] as f64 * p.scale(c) as f64 * 255.0 * 127.0 * k as f64
                        + (q.low[r] as f64 * p.scale(c) as f64 * wsum as f64).abs();
                    assert!(
                        (got - want).abs() <= 1e-6 * (1.0 + mag),
                        "{kernel:?} ({rows},{n},{k}) [{r}][{c}]: {got} vs {want}"
                    );
                }
            }
            // Padding rows are zeros.
            assert!(out[rows * n..].iter().all(|&v| v == 0.0));
            // And the whole is close to the real product (8-bit operands).
            for r in 0..rows {
                for c in 0..n {
                    let exact: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                    let got = out[r * n + c];
                    assert!(
                        (got - exact).abs() < 0.05 * (1.0 + (k as f32).sqrt()),
                        "{kernel:?} ({rows},{n},{k}) [{r}][{c}]: {got} vs {exact}"
                    );
                }
            }
        }
    }

    /// The operands' extremes (activations at 0 and 255, weights at +-127 in every pair) must
    /// not saturate the AVX2 kernel's 16-bit pair sums: its integer sums are exact.
    #[test]
    fn avx2_sums_are_exact_at_the_operands_extremes() {
        if !Kernel::Avx2.available() {
            eprintln!("\n*** SKIPPED: this CPU has no AVX2 ***\n");
            return;
        }
        let (rows, n, k) = (8usize, 32usize, 64usize);
        // Row r: +-1 in a pattern, so every value rounds to 0 or 255.
        let x: Vec<f32> = (0..rows * k)
            .map(|i| if (i / k + i / 3) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        // Weights +-1: every one rounds to +-127.
        let w: Vec<f32> = (0..n * k)
            .map(|i| if (i / k + i % 5) % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let p = Packed::new(&w, n, k, &vec![1.0; k], &[])
            .unwrap()
            .with_kernel(Kernel::Avx2);
        let mut q = Quantized::default();
        quantize_rows(&x, rows, &p, &mut q);
        assert!(q.centred);
        assert!((0..q.data.len()).all(|i| q.u(i) == 0 || q.u(i) == 255));
        assert!((0..n).all(|c| (0..k).all(|i| p.weight(c, i).unsigned_abs() == 127)));
        let mut out = vec![f32::NAN; rows * n];
        matmul(&q, &p, &mut out);
        for r in 0..rows {
            for c in 0..n {
                // The product of +-1 values, exact in the rounded operands.
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum();
                assert!(
                    (out[r * n + c] - want).abs() < 1e-3,
                    "[{r}][{c}]: {} vs {want}",
                    out[r * n + c]
                );
            }
        }
    }

    /// The bias (and GELU) applied on the register blocks give exactly the values of the
    /// product stored and then passed over by `math::bias_act`, on every kernel this CPU runs.
    #[test]
    fn fused_bias_and_gelu_give_the_separate_pass_values() {
        let (rows, n, k) = (21usize, 64usize, 96usize);
        let mut s = 91;
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s) * 2.0).collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut s) * 4.0).collect();
        let mut ran = 0;
        for kernel in [Kernel::Vnni, Kernel::Avx2] {
            if !kernel.available() {
                continue;
            }
            ran += 1;
            let p = Packed::new(&w, n, k, &vec![1.0; k], &[1, 40])
                .unwrap()
                .with_kernel(kernel);
            let mut q = Quantized::default();
            quantize_rows(&x, rows, &p, &mut q);
            for gelu in [false, true] {
                let mut want = vec![0.0f32; q.rows * n];
                matmul(&q, &p, &mut want);
                crate::math::bias_act(&mut want, &bias, gelu);
                let mut got = vec![f32::NAN; q.rows * n];
                matmul_bias(&q, &p, &bias, gelu, &mut got);
                assert!(
                    want.iter()
                        .zip(&got)
                        .all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{kernel:?}, gelu {gelu}"
                );
                // And the bias did something (a kernel ignoring it would fail above too).
                let mut plain = vec![0.0f32; q.rows * n];
                matmul(&q, &p, &mut plain);
                assert!(plain.iter().zip(&got).any(|(a, b)| a != b));
            }
        }
        if ran == 0 {
            eprintln!("\n*** SKIPPED: this CPU runs no int8 kernel ***\n");
        }
    }

    /// Where the CPU has both kernels they give the same outputs bit for bit (f32 and the
    /// fused GELU -> bf16 form), outlier inputs included.
    #[test]
    fn avx2_and_vnni_kernels_agree_bit_for_bit() {
        if !(Kernel::Vnni.available() && Kernel::Avx2.available()) {
            eprintln!("\n*** SKIPPED: this CPU does not run both int8 kernels ***\n");
            return;
        }
        let (rows, n, k) = (45usize, 96usize, 384usize);
        let mut s = 77;
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s) * 3.0).collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
        let smooth: Vec<f32> = (0..k).map(|_| 1.0 + lcg(&mut s).abs()).collect();
        let vnni = Packed::new(&w, n, k, &smooth, &[3, 50, 200])
            .unwrap()
            .with_kernel(Kernel::Vnni);
        let avx2 = vnni.clone().with_kernel(Kernel::Avx2);
        let (mut q, mut qc) = (Quantized::default(), Quantized::default());
        quantize_rows(&x, rows, &vnni, &mut q);
        quantize_rows(&x, rows, &avx2, &mut qc);
        // The same bytes, stored centred for the AVX2 kernel.
        assert!(!q.centred && qc.centred);
        assert!(q.data.iter().zip(&qc.data).all(|(u, c)| *c == u ^ 0x80));
        let (mut a, mut b) = (vec![0.0f32; q.rows * n], vec![1.0f32; q.rows * n]);
        matmul(&q, &vnni, &mut a);
        matmul(&qc, &avx2, &mut b);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
        let (mut a, mut b) = (vec![0u16; q.rows * n], vec![1u16; q.rows * n]);
        matmul_gelu_bf16(&q, &vnni, &bias, &mut a);
        matmul_gelu_bf16(&qc, &avx2, &bias, &mut b);
        assert_eq!(a, b);
    }
}
