//! Numeric kernels for transformer inference on CPU (the MiniLM sentence encoder of the risk
//! service): a linear layer that multiplies in bf16 on Intel AMX or with AVX512-BF16, in 8-bit
//! integers with AVX512-VNNI or AVX2 ([`int8`]), or in f32 through the `gemm` crate, whichever
//! the CPU has and the caller asks for; multi-head self-attention over unpadded sequences; and
//! the element-wise steps in [`math`].
//!
//! This is the workspace's only crate with `unsafe` code (inline assembly, raw-pointer matrix
//! products, target-feature dispatch); each block says why it is sound, and the tests compare
//! every kernel with a plain reference.

pub mod amx;
pub mod attention_bf16;
pub mod attention_f32;
pub mod avx512bf16;
pub mod gptq;
pub mod int8;
pub mod math;

use rayon::prelude::*;

/// How a [`Linear`] multiplies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// f32 throughout (the `gemm` crate's kernels; every x86-64 CPU).
    F32,
    /// Weights and activations rounded to bf16, products accumulated in f32 on AMX tiles.
    Bf16Amx,
    /// The same bf16 rounding, products by AVX512-BF16 `vdpbf16ps` (AMD Zen 4 and later).
    Bf16Avx512,
    /// Weights rounded to i8 per output column, activations to u8 per row at every call,
    /// products by AVX512-VNNI `vpdpbusd` with exact i32 sums ([`int8`]).
    Int8Avx512,
    /// The same 8-bit rounding and exact sums by AVX2 `vpmaddubsw` / `vpmaddwd`
    /// ([`int8::Kernel::Avx2`]), for CPUs without AVX512-VNNI.
    Int8Avx2,
}

impl Precision {
    /// The fastest precision this CPU runs: [`Precision::Bf16Amx`] where AMX bf16 is
    /// [`amx::available`], else [`Precision::Int8Avx512`] wherever [`int8::Kernel::Vnni`] runs
    /// (AMD Zen 4 and later; Intel Xeons from Cascade Lake on, and Sapphire Rapids or later
    /// whose AMX the hypervisor hides), else [`Precision::Bf16Avx512`] where
    /// [`avx512bf16::preferred`], else [`Precision::Int8Avx2`] on CPUs with AVX2 and no AVX-512
    /// ([`int8::avx2_preferred`]), else [`Precision::F32`].
    ///
    /// On Intel without AMX the int8 mix runs attention in f32, not bf16 (see the risk
    /// service's `Encoder::new`); measured on a Xeon (family 6 model 207, AMX not exposed,
    /// 2026-12-02): MiniLM 50-69 against 29-34 documents/s at 256 tokens in f32, a 100-word
    /// review p50 11-15 against 22-24 ms (`minilm_speed`, engines alternated twice). Until then
    /// such CPUs stayed on f32.
    pub fn best() -> Precision {
        if amx::available() {
            Precision::Bf16Amx
        } else if int8::Kernel::Vnni.available() {
            Precision::Int8Avx512
        } else if avx512bf16::preferred() {
            Precision::Bf16Avx512
        } else if int8::avx2_preferred() {
            Precision::Int8Avx2
        } else {
            Precision::F32
        }
    }

    /// Whether this CPU can multiply in this precision.
    pub fn available(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16Amx => amx::available(),
            Precision::Bf16Avx512 => avx512bf16::available(),
            Precision::Int8Avx512 => int8::Kernel::Vnni.available(),
            Precision::Int8Avx2 => int8::Kernel::Avx2.available(),
        }
    }

    /// Short name for logs and metadata (`f32`, `bf16-amx`, `bf16-avx512`, `int8-avx512`,
    /// `int8-avx2`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "f32",
            Precision::Bf16Amx => "bf16-amx",
            Precision::Bf16Avx512 => "bf16-avx512",
            Precision::Int8Avx512 => "int8-avx512",
            Precision::Int8Avx2 => "int8-avx2",
        }
    }

    /// The int8 kernel of an int8 precision (the inverse of `Precision::from(kernel)`).
    pub fn int8_kernel(self) -> Option<int8::Kernel> {
        match self {
            Precision::Int8Avx512 => Some(int8::Kernel::Vnni),
            Precision::Int8Avx2 => Some(int8::Kernel::Avx2),
            _ => None,
        }
    }
}

impl From<int8::Kernel> for Precision {
    /// The precision whose products `kernel` runs.
    fn from(kernel: int8::Kernel) -> Precision {
        match kernel {
            int8::Kernel::Vnni => Precision::Int8Avx512,
            int8::Kernel::Avx2 => Precision::Int8Avx2,
        }
    }
}

/// Rows an activation buffer needs for `rows` tokens (AMX writes whole 32-row blocks).
pub fn padded_rows(rows: usize) -> usize {
    rows.div_ceil(amx::BLOCK) * amx::BLOCK
}

/// What [`Linear::forward`] does after the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// Nothing: the caller fuses the bias into a later step (e.g. a residual layer norm).
    None,
    /// Add the bias.
    Bias,
    /// Add the bias, then GELU.
    BiasGelu,
}

/// Inputs of a calibrated int8 layer ([`Linear::new_int8`]) multiplied in f32: the widest on
/// calibration data (at most an eighth of the inputs). Measured on MiniLM (AMD Zen 5): with 8
/// the worst cosine to candle-transformers' f32 over the parity test's 40 texts rose from
/// 0.9985 to 0.9994-0.9995 (16: the same, 10% slower; none: 2% faster).
pub const INT8_OUTLIERS: usize = 8;

/// What calibration data says about a product's inputs, for [`Linear::new_int8_calibrated`].
#[derive(Clone, Copy, Debug)]
pub struct Calibration<'a> {
    /// Each input's largest magnitude.
    pub absmax: &'a [f32],
    /// The inputs' Gram matrix `X^T X` (`[k x k]`, [`gram_add`]): the weight is then rounded
    /// by GPTQ's error feedback ([`gptq`]) instead of to nearest.
    pub gram: Option<&'a [f32]>,
    /// SmoothQuant's exponent: `s_i = (absmax_i / max_c |W[c][i]|)^alpha`.
    pub alpha: f32,
    /// How many of the inputs widest after smoothing are multiplied in f32 (at most `k / 8`).
    pub outliers: usize,
}

impl<'a> Calibration<'a> {
    /// Ranges only: alpha 1/2, [`INT8_OUTLIERS`] outliers, rounding to nearest.
    pub fn new(absmax: &'a [f32]) -> Calibration<'a> {
        Calibration {
            absmax,
            gram: None,
            alpha: 0.5,
            outliers: INT8_OUTLIERS,
        }
    }
}

/// Per-call buffers of [`Linear::forward`], kept by the caller between calls.
#[derive(Default, Debug)]
pub struct Scratch {
    bf16: Vec<u16>,
    int8: int8::Quantized,
}

/// A dense layer `y = x W^T + b` with `W` given `[n x k]` (PyTorch's layout).
pub struct Linear {
    n: usize,
    k: usize,
    /// `W^T`, `[k x n]` row-major: the layout whose columns the `gemm` crate reads as
    /// contiguous runs (with `W` itself it re-gathered the weight with stride `k` on every call,
    /// a fifth of a single text's encoder time in a profile).
    wt: Vec<f32>,
    bias: Vec<f32>,
    packed: Option<amx::Packed>,
    /// The i8 copy (for the int8 precisions).
    int8: Option<int8::Packed>,
    /// What `packed` or `int8` is multiplied with (F32 when there is no packed copy).
    precision: Precision,
}

impl std::fmt::Debug for Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Linear({} -> {}, {})",
            self.k,
            self.n,
            self.precision().name()
        )
    }
}

impl Linear {
    /// A layer from its `[n x k]` weight and `n` biases; with a bf16 precision the weight is
    /// packed once (falling back to f32 when the CPU lacks that precision or the sizes are not
    /// multiples of 32); an int8 precision is [`Linear::new_int8`] with its kernel and without
    /// calibration (every input's factor 1). `None` when the lengths disagree.
    pub fn new(
        w: Vec<f32>,
        bias: Vec<f32>,
        n: usize,
        k: usize,
        precision: Precision,
    ) -> Option<Linear> {
        if let Some(kernel) = precision.int8_kernel() {
            return Linear::new_int8(w, bias, n, k, None, kernel);
        }
        if w.len() != n * k || bias.len() != n || n == 0 || k == 0 {
            return None;
        }
        let packed = match precision {
            Precision::Bf16Amx | Precision::Bf16Avx512 if precision.available() => {
                amx::Packed::new(&w, n, k)
            }
            _ => None,
        };
        let precision = if packed.is_some() {
            precision
        } else {
            Precision::F32
        };
        Some(Linear::assemble(w, bias, n, k, packed, None, precision))
    }

    /// A layer multiplying in 8-bit integers ([`int8`]) with `kernel` where the CPU runs it
    /// (else f32). `absmax`, when given, is each input's largest magnitude seen on calibration
    /// data: input `i` is then scaled by SmoothQuant's `s_i = sqrt(absmax_i / max_c |W[c][i]|)`
    /// (clamped to [1e-2, 1e2]) before rounding, and the [`INT8_OUTLIERS`] inputs still widest
    /// after that scaling are multiplied in f32 ([`Calibration::new`]). `None` when the lengths
    /// disagree.
    pub fn new_int8(
        w: Vec<f32>,
        bias: Vec<f32>,
        n: usize,
        k: usize,
        absmax: Option<&[f32]>,
        kernel: int8::Kernel,
    ) -> Option<Linear> {
        let calibration = absmax.map(Calibration::new);
        Linear::new_int8_calibrated(w, bias, n, k, calibration.as_ref(), kernel)
    }

    /// [`Linear::new_int8`] with the [`Calibration`] spelt out (smoothing exponent, outlier
    /// count, and GPTQ rounding when it carries the inputs' Gram matrix). `None` when the
    /// lengths disagree.
    pub fn new_int8_calibrated(
        w: Vec<f32>,
        bias: Vec<f32>,
        n: usize,
        k: usize,
        calibration: Option<&Calibration>,
        kernel: int8::Kernel,
    ) -> Option<Linear> {
        if w.len() != n * k || bias.len() != n || n == 0 || k == 0 {
            return None;
        }
        if calibration
            .is_some_and(|c| c.absmax.len() != k || c.gram.is_some_and(|g| g.len() != k * k))
        {
            return None;
        }
        let (smooth, outliers) = match calibration {
            Some(c) => {
                let a = c.absmax;
                let smooth: Vec<f32> = (0..k)
                    .map(|i| {
                        let wmax = (0..n).fold(0.0f32, |m, c| m.max(w[c * k + i].abs()));
                        let s = (a[i].max(1e-5) / wmax.max(1e-5)).powf(c.alpha);
                        if s.is_finite() {
                            s.clamp(1e-2, 1e2)
                        } else {
                            1.0
                        }
                    })
                    .collect();
                let mut order: Vec<usize> = (0..k).collect();
                order.sort_by(|&i, &j| (a[j] / smooth[j]).total_cmp(&(a[i] / smooth[i])));
                order.truncate(c.outliers.min(k / 8));
                order.sort_unstable();
                (smooth, order)
            }
            None => (vec![1.0; k], Vec::new()),
        };
        let gram = calibration.and_then(|c| c.gram);
        let packed = if kernel.available() {
            // A Gram matrix GPTQ cannot use (not positive definite) falls back to rounding
            // each weight to nearest.
            gram.and_then(|g| int8::Packed::new_calibrated(&w, n, k, &smooth, &outliers, Some(g)))
                .or_else(|| int8::Packed::new(&w, n, k, &smooth, &outliers))
                .map(|p| p.with_kernel(kernel))
        } else {
            None
        };
        let precision = if packed.is_some() {
            Precision::from(kernel)
        } else {
            Precision::F32
        };
        Some(Linear::assemble(w, bias, n, k, None, packed, precision))
    }

    fn assemble(
        w: Vec<f32>,
        bias: Vec<f32>,
        n: usize,
        k: usize,
        packed: Option<amx::Packed>,
        int8: Option<int8::Packed>,
        precision: Precision,
    ) -> Linear {
        // The f32 product's copy (none when a packed one serves).
        let mut wt = Vec::new();
        if packed.is_none() && int8.is_none() {
            wt = vec![0.0; n * k];
            for (c, row) in w.chunks_exact(k).enumerate() {
                for (i, &v) in row.iter().enumerate() {
                    wt[i * n + c] = v;
                }
            }
        }
        Linear {
            n,
            k,
            wt,
            bias,
            packed,
            int8,
            precision,
        }
    }

    /// The precision this layer actually multiplies in.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// `out[r] = x[r] W^T`, then `then`, for the first `rows` rows of `x` (row-major, `k`
    /// columns). `out` is row-major with `n` columns and must hold [`padded_rows`]`(rows)`
    /// rows; rows past `rows` are scratch.
    pub fn forward(
        &self,
        x: &[f32],
        rows: usize,
        out: &mut [f32],
        then: Epilogue,
        scratch: &mut Scratch,
    ) {
        assert!(x.len() >= rows * self.k, "input too short");
        assert!(out.len() >= padded_rows(rows) * self.n, "output too short");
        if rows == 0 {
            return;
        }
        match (&self.packed, &self.int8) {
            (_, Some(q)) => {
                int8::quantize_rows(x, rows, q, &mut scratch.int8);
                if then == Epilogue::None {
                    int8::matmul(&scratch.int8, q, out);
                } else {
                    // The bias (and GELU) on the product's register blocks: no second pass.
                    let gelu = then == Epilogue::BiasGelu;
                    int8::matmul_bias(&scratch.int8, q, &self.bias, gelu, out);
                }
                return;
            }
            (Some(p), None) => {
                let b = &mut scratch.bf16;
                if self.precision == Precision::Bf16Amx {
                    let padded = amx::to_bf16_padded(x, rows, self.k, b);
                    amx::matmul(b, padded, p, out);
                } else {
                    // Only to the kernel's 8-row block: less work on padding rows.
                    let padded = amx::to_bf16_padded_to(x, rows, self.k, avx512bf16::ROWS, b);
                    avx512bf16::matmul(b, padded, p, out);
                }
            }
            (None, None) => {
                let par = if rows * self.n * self.k >= 1 << 20 {
                    gemm::Parallelism::Rayon(0)
                } else {
                    gemm::Parallelism::None
                };
                // SAFETY: dst is `rows x n` row-major inside `out`, lhs `rows x k` row-major
                // inside `x`, rhs(i, c) = wt[i * n + c] inside `wt` (all asserted above); the
                // three do not overlap (distinct allocations, `out` borrowed mutably).
                unsafe {
                    gemm_f32(
                        (rows, self.n, self.k),
                        (out.as_mut_ptr(), self.n as isize),
                        (x.as_ptr(), 1, self.k as isize),
                        (self.wt.as_ptr(), 1, self.n as isize),
                        par,
                    );
                }
            }
        }
        // (The int8 kernel applies it itself and has returned.)
        if then != Epilogue::None {
            let gelu = then == Epilogue::BiasGelu;
            out[..rows * self.n]
                .par_chunks_mut(64 * self.n)
                .for_each(|c| math::bias_act(c, &self.bias, gelu));
        }
    }

    /// A transformer's feed-forward block: `out = gelu(x W^T + b) next.W^T` (without `next`'s
    /// bias, as [`Epilogue::None`]), for the first `rows` rows of `x`. `mid` (`n` columns,
    /// [`padded_rows`]`(rows)` rows) holds the GELU output where the two steps run apart; `out`
    /// is as for `next`'s [`Linear::forward`].
    ///
    /// An int8 layer followed by a bf16 one on AVX512-BF16 (the `int8-avx512` mix until the
    /// feed-forward-out product went to int8 too, 2026-12-01) runs fused:
    /// the bias, GELU and bf16 rounding are applied to the int8 product's register blocks
    /// ([`int8::matmul_gelu_bf16`]) and the bf16 rows go straight to `next`'s product, with the
    /// same values as the two [`Linear::forward`] calls (which every other pair runs, the
    /// all-int8 one of the MiniLM mix included; `mid` is then left holding the GELU output).
    pub fn forward_gelu_then(
        &self,
        x: &[f32],
        rows: usize,
        mid: &mut [f32],
        next: &Linear,
        out: &mut [f32],
        scratch: &mut Scratch,
    ) {
        assert_eq!(next.k, self.n, "the next layer takes this one's outputs");
        match (&self.int8, &next.packed) {
            (Some(q), Some(p)) if next.precision == Precision::Bf16Avx512 => {
                assert!(x.len() >= rows * self.k, "input too short");
                assert!(out.len() >= padded_rows(rows) * next.n, "output too short");
                if rows == 0 {
                    return;
                }
                int8::quantize_rows(x, rows, q, &mut scratch.int8);
                // int8 pads rows to its block, a multiple of the bf16 kernel's.
                const _: () = assert!(int8::ROWS.is_multiple_of(avx512bf16::ROWS));
                let padded = scratch.int8.rows;
                scratch.bf16.resize(padded * self.n, 0);
                int8::matmul_gelu_bf16(&scratch.int8, q, &self.bias, &mut scratch.bf16);
                avx512bf16::matmul(&scratch.bf16, padded, p, out);
            }
            _ => {
                self.forward(x, rows, mid, Epilogue::BiasGelu, scratch);
                next.forward(mid, rows, out, Epilogue::None, scratch);
            }
        }
    }

    /// The bias, for callers that fuse it into a later step.
    pub fn bias(&self) -> &[f32] {
        &self.bias
    }
}

/// Multi-head self-attention over unpadded sequences.
///
/// `qkv` holds, for every token row, its query, key and value (`3 x hidden` columns, head
/// `h` at columns `h * d..(h + 1) * d` of each part, `d = hidden / heads`); `seqs` lists each
/// sequence's first row and length. Writes `softmax(Q K^T / sqrt(d)) V` per sequence and head
/// into `ctx` (`hidden` columns). Sequences and heads run in parallel, in f32.
pub fn attention(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    seqs: &[(usize, usize)],
    ctx: &mut [f32],
) {
    attention_in(qkv, hidden, heads, seqs, ctx, false);
}

/// [`attention`], with its two products in bf16 ([`attention_bf16`]) when `bf16` is set and
/// the CPU and head size allow it; else fused in f32 where AVX-512F runs ([`attention_f32`]),
/// else by the `gemm` crate.
pub fn attention_in(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    seqs: &[(usize, usize)],
    ctx: &mut [f32],
    bf16: bool,
) {
    let want = if bf16 {
        AttentionKernel::Bf16
    } else {
        AttentionKernel::FusedF32
    };
    attention_by(qkv, hidden, heads, seqs, ctx, want);
}

/// Runs `head((q, k, v), stride, len, out)` for every `(start, len, head)` job in parallel:
/// the job's query, key and value rows of `x` (a Q/K/V buffer of `3 x hidden` columns, in f32
/// or bf16) from its first row on, their row stride, and where its output rows begin in `out`
/// (rows `start..start + len`, columns `head * d..(head + 1) * d` of a `hidden`-column buffer).
/// The caller's jobs must not overlap (distinct heads or disjoint sequences) and `x` and `out`
/// must hold their rows, so that each call owns its part of `out`.
fn for_each_head<T: Sync>(
    x: &[T],
    jobs: &[(usize, usize, usize)],
    hidden: usize,
    d: usize,
    out: SendPtr<f32>,
    head: impl Fn((&[T], &[T], &[T]), usize, usize, *mut f32) + Sync,
) {
    let stride = 3 * hidden;
    jobs.par_iter().for_each(|&(start, len, h)| {
        let base = start * stride + h * d;
        let end = (start + len) * stride;
        head(
            (
                &x[base..end],
                &x[base + hidden..end],
                &x[base + 2 * hidden..end],
            ),
            stride,
            len,
            out.get().wrapping_add(start * hidden + h * d),
        );
    });
}

/// The kernels [`attention_in`] chooses from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AttentionKernel {
    /// Scores, softmax and `P V` as three passes, the products by the `gemm` crate.
    Gemm,
    /// [`attention_f32`], where it [`attention_f32::supports`] the head size (else `Gemm`).
    FusedF32,
    /// [`attention_bf16`], where it [`attention_bf16::supports`] the head size (else
    /// `FusedF32`).
    Bf16,
}

fn attention_by(
    qkv: &[f32],
    hidden: usize,
    heads: usize,
    seqs: &[(usize, usize)],
    ctx: &mut [f32],
    want: AttentionKernel,
) {
    assert!(
        heads > 0 && hidden.is_multiple_of(heads),
        "hidden must split into heads"
    );
    let rows = seqs.iter().map(|&(s, l)| s + l).max().unwrap_or(0);
    assert!(qkv.len() >= rows * 3 * hidden, "qkv too short");
    assert!(ctx.len() >= rows * hidden, "ctx too short");
    for (i, &(s, l)) in seqs.iter().enumerate() {
        for &(s2, l2) in &seqs[i + 1..] {
            assert!(s + l <= s2 || s2 + l2 <= s, "sequences overlap");
        }
    }
    let d = hidden / heads;
    let scale = 1.0 / (d as f32).sqrt();
    let out = SendPtr(ctx.as_mut_ptr());
    let jobs: Vec<(usize, usize, usize)> = seqs
        .iter()
        .filter(|&&(_, l)| l > 0)
        .flat_map(|&(s, l)| (0..heads).map(move |h| (s, l, h)))
        .collect();
    thread_local! {
        // One score matrix per worker thread, kept between calls (a fresh 256 KiB buffer per
        // call costs page faults).
        static SCORES: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
        static BF16: std::cell::RefCell<attention_bf16::Scratch> =
            std::cell::RefCell::new(attention_bf16::Scratch::default());
        static F32: std::cell::RefCell<attention_f32::Scratch> =
            std::cell::RefCell::new(attention_f32::Scratch::default());
    }
    let bf16 = want == AttentionKernel::Bf16 && attention_bf16::supports(d);
    let fused = !bf16 && want != AttentionKernel::Gemm && attention_f32::supports(d);
    if fused {
        for_each_head(qkv, &jobs, hidden, d, out, |qkv3, stride, len, out| {
            F32.with_borrow_mut(|scratch| {
                // SAFETY: `for_each_head` hands each job its own rows and head columns of
                // `ctx`. (The kernel calls no rayon code, so no nested job can find this
                // thread's scratch borrowed.)
                unsafe {
                    attention_f32::head(qkv3, stride, len, d, scale, out, hidden, scratch);
                }
            })
        });
        return;
    }
    if bf16 {
        // Q, K and V rounded to bf16 in one pass (per head, 3 x len calls of d values each
        // cost their call overhead), into the calling thread's buffer. The buffer is taken
        // out for the call and put back after: while this thread waits for the heads below,
        // rayon may run another caller's attention on it, which then finds none and makes its
        // own (a borrow held across the parallel loop would panic there).
        thread_local! {
            static QKV: std::cell::Cell<Vec<u16>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let mut q16 = QKV.take();
        let n = rows * 3 * hidden;
        if q16.len() < n {
            q16.resize(n, 0);
        }
        math::to_bf16(&qkv[..n], &mut q16[..n]);
        for_each_head(
            &q16[..n],
            &jobs,
            hidden,
            d,
            out,
            |qkv3, stride, len, out| {
                BF16.with_borrow_mut(|scratch| {
                    // SAFETY: `for_each_head` hands each job its own rows and head columns of
                    // `ctx`.
                    unsafe {
                        attention_bf16::head(qkv3, stride, len, d, scale, out, hidden, scratch);
                    }
                })
            },
        );
        // Keep the larger of this buffer and any a nested call left.
        let other = QKV.take();
        QKV.set(if other.len() > q16.len() { other } else { q16 });
        return;
    }
    jobs.par_iter().for_each(|&(start, len, h)| {
        SCORES.with_borrow_mut(|scores| {
            scores.resize(len * len, 0.0);
            let scores = &mut scores[..len * len];
            let stride = (3 * hidden) as isize;
            let q = qkv[start * 3 * hidden + h * d..].as_ptr();
            let k = qkv[start * 3 * hidden + hidden + h * d..].as_ptr();
            let v = qkv[start * 3 * hidden + 2 * hidden + h * d..].as_ptr();
            // SAFETY: Q, K and V of this sequence are rows start..start+len of `qkv` (asserted
            // above); `scores` is len x len; the gemm reads Q (len x d, row stride 3 hidden) and
            // K^T (d x len: element (i, j) = K[j][i]).
            unsafe {
                gemm_f32(
                    (len, len, d),
                    (scores.as_mut_ptr(), len as isize),
                    (q, 1, stride),
                    (k, stride, 1),
                    gemm::Parallelism::None,
                );
            }
            math::softmax_rows(scores, len, scale);
            // SAFETY: writes rows start..start+len, columns h*d..(h+1)*d of `ctx`: inside it
            // (asserted above) and disjoint from every other job (sequences do not overlap, each
            // (sequence, head) is one job); reads `scores` (len x len) and V (len x d).
            unsafe {
                gemm_f32(
                    (len, d, len),
                    (out.get().add(start * hidden + h * d), hidden as isize),
                    (scores.as_ptr(), 1, len as isize),
                    (v, 1, stride),
                    gemm::Parallelism::None,
                );
            }
        })
    });
}

/// `gram += X^T X` for the first `rows` rows of `x` (row-major, `k` columns); `gram` is `[k x
/// k]` row-major. For calibration statistics ([`Linear::new_int8_calibrated`]).
pub fn gram_add(x: &[f32], rows: usize, k: usize, gram: &mut [f32]) {
    assert!(x.len() >= rows * k, "x too short");
    assert_eq!(gram.len(), k * k, "gram must be k x k");
    if rows == 0 || k == 0 {
        return;
    }
    // SAFETY: dst is k x k row-major (asserted); lhs = X^T (k x rows: element (i, r) at
    // x[r * k + i]) and rhs = X (rows x k) lie inside `x` (asserted); `gram` is borrowed
    // mutably and does not overlap `x`.
    unsafe {
        gemm::gemm(
            k,
            k,
            rows,
            gram.as_mut_ptr(),
            1,
            k as isize,
            true,
            x.as_ptr(),
            k as isize,
            1,
            x.as_ptr(),
            1,
            k as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// `x[r] = layer_norm(x[r] + add[r] + bias) * gamma + beta` for every row (`gamma.len()`
/// columns), rows in parallel; `add` is empty or as long as `x`.
pub fn add_layer_norm(
    x: &mut [f32],
    add: &[f32],
    bias: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    let n = gamma.len();
    assert!(n > 0 && x.len().is_multiple_of(n), "x must be whole rows");
    assert!(add.is_empty() || add.len() == x.len(), "add must match x");
    let chunk = 64 * n;
    if add.is_empty() {
        x.par_chunks_mut(chunk)
            .for_each(|c| math::add_layer_norm(c, &[], bias, gamma, beta, eps));
    } else {
        x.par_chunks_mut(chunk)
            .zip(add.par_chunks(chunk))
            .for_each(|(c, a)| math::add_layer_norm(c, a, bias, gamma, beta, eps));
    }
}

/// `dst = lhs * rhs` in f32 through the `gemm` crate, for `(m, n, k)`: `dst` row-major with row
/// stride `dst_rs`; `lhs` (m x k) and `rhs` (k x n) given by pointer, column stride and row
/// stride (in elements), so transposed operands need no copy.
///
/// # Safety
/// Every element the strides address must lie inside a live allocation; `dst` must not overlap
/// the operands, and nothing else may access it during the call.
#[allow(clippy::type_complexity)]
unsafe fn gemm_f32(
    (m, n, k): (usize, usize, usize),
    (dst, dst_rs): (*mut f32, isize),
    (lhs, lhs_cs, lhs_rs): (*const f32, isize, isize),
    (rhs, rhs_cs, rhs_rs): (*const f32, isize, isize),
    parallelism: gemm::Parallelism,
) {
    // SAFETY: the caller's contract; alpha = 0 with read_dst = false overwrites dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs,
            false,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Runs `blocks(first, last, out)` over ranges of 32-column blocks that together cover
/// `col_blocks` blocks once: one range for a small product (`work` = rows x n x k below 2^21),
/// else about two per rayon thread in parallel. Each call gets its own range; `out` is the
/// product's output, which the calls write in disjoint column ranges.
pub(crate) fn over_column_blocks<T>(
    col_blocks: usize,
    work: usize,
    out: &mut [T],
    blocks: impl Fn(usize, usize, *mut T) + Sync,
) {
    let threads = rayon::current_num_threads().max(1);
    // Enough pieces to balance, few enough that each sets its kernel up once.
    let pieces = if work < 1 << 21 {
        1
    } else {
        (threads * 2).min(col_blocks).max(1)
    };
    let per = col_blocks.div_ceil(pieces);
    let out_ptr = SendPtr(out.as_mut_ptr());
    let run = |first: usize| blocks(first, (first + per).min(col_blocks), out_ptr.get());
    if pieces == 1 {
        run(0);
    } else {
        (0..pieces).into_par_iter().for_each(|p| run(p * per));
    }
}

/// The checks both fused attention kernels make of one head's rows: `q`, `k` and `v` hold
/// `len` rows of `d` at `stride` (nothing to check when `len` is 0).
pub(crate) fn check_head_rows<T>(qkv: [&[T]; 3], stride: usize, len: usize, d: usize) {
    if len > 0 {
        for x in qkv {
            assert!(x.len() >= (len - 1) * stride + d, "rows out of range");
        }
    }
}

/// A raw output pointer handed to rayon workers that write disjoint parts of one buffer.
pub(crate) struct SendPtr<T>(pub(crate) *mut T);
// Not derived: a derive would require `T: Copy`.
impl<T> Clone for SendPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SendPtr<T> {}
// SAFETY: every user hands each worker a disjoint part of one output buffer (column ranges in
// `amx::matmul` and `int8::matmul`, (sequence, head) blocks in `attention`) that outlives the
// parallel section.
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A seeded uniform value in [-1, 1) (test data without a random-number crate).
    pub(crate) fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    /// bf16 to f32 (exact).
    pub(crate) fn f32_of(x: u16) -> f32 {
        f32::from_bits((x as u32) << 16)
    }

    /// Checks a bf16 product (`amx::matmul`, `avx512bf16::matmul`) against a plain product of
    /// the rounded inputs, padding rows included, on shapes from one row to MiniLM's.
    pub(crate) fn check_bf16_product(matmul: fn(&[u16], usize, &amx::Packed, &mut [f32])) {
        for &(rows, n, k) in &[
            (1usize, 32usize, 32usize),
            (45, 96, 384),
            (300, 1152, 384),
            (64, 384, 1536),
        ] {
            let mut s = (rows * n + k) as u64;
            let a: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s)).collect();
            let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
            let p = amx::Packed::new(&w, n, k).unwrap();
            let mut ab = Vec::new();
            let padded = amx::to_bf16_padded(&a, rows, k, &mut ab);
            let mut out = vec![f32::NAN; padded * n];
            matmul(&ab, padded, &p, &mut out);
            let round = |x: f32| f32_of(amx::bf16(x)) as f64;
            for r in 0..rows {
                for c in 0..n {
                    let want: f64 = (0..k)
                        .map(|i| round(a[r * k + i]) * round(w[c * k + i]))
                        .sum();
                    let got = out[r * n + c] as f64;
                    assert!(
                        (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                        "({rows},{n},{k}) [{r}][{c}]: {got} vs {want}"
                    );
                }
            }
            // Padding rows are products of zeros.
            assert!(out[rows * n..padded * n].iter().all(|&v| v == 0.0));
        }
    }

    fn plain_linear(x: &[f32], rows: usize, w: &[f32], b: &[f32], n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * n];
        for r in 0..rows {
            for c in 0..n {
                y[r * n + c] = b[c] + (0..k).map(|i| x[r * k + i] * w[c * k + i]).sum::<f32>();
            }
        }
        y
    }

    /// Activations with a few outlier channels (BERT's hidden states have them): calibrated
    /// int8 (SmoothQuant factors and the widest inputs in f32) must stay close to the f32
    /// product where plain per-row int8 loses the other channels' resolution.
    #[test]
    fn calibrated_int8_handles_outlier_channels() {
        for kernel in [int8::Kernel::Vnni, int8::Kernel::Avx2] {
            if kernel.available() {
                calibrated_int8_with(kernel);
            } else {
                eprintln!("\n*** SKIPPED the {kernel:?} kernel: not available on this CPU ***\n");
            }
        }
    }

    fn calibrated_int8_with(kernel: int8::Kernel) {
        let precision = Precision::from(kernel);
        let (rows, n, k) = (40, 64, 128);
        let mut s = 17;
        // Three far outliers (for the f32 inputs) and twelve milder ones (more than the f32
        // inputs can take: SmoothQuant's factors must narrow them).
        let outliers = [5usize, 77, 100];
        let mild: Vec<usize> = (0..12).map(|j| 3 + 10 * j).collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|i| {
                let v = lcg(&mut s);
                if outliers.contains(&(i % k)) {
                    v * 60.0
                } else if mild.contains(&(i % k)) {
                    v * 12.0
                } else {
                    v
                }
            })
            .collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s) * 0.1).collect();
        let b = vec![0.0; n];
        let want = plain_linear(&x, rows, &w, &b, n, k);
        let mut absmax = vec![0.0f32; k];
        for row in x.chunks_exact(k) {
            for (m, v) in absmax.iter_mut().zip(row) {
                *m = m.max(v.abs());
            }
        }
        let err = |l: &Linear| {
            assert_eq!(l.precision(), precision);
            let mut out = vec![0.0; padded_rows(rows) * n];
            l.forward(&x, rows, &mut out, Epilogue::Bias, &mut Scratch::default());
            out.iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max)
        };
        let plain = Linear::new_int8(w.clone(), b.clone(), n, k, None, kernel).unwrap();
        let calibrated =
            Linear::new_int8(w.clone(), b.clone(), n, k, Some(&absmax), kernel).unwrap();
        let q = calibrated.int8.as_ref().unwrap();
        for o in outliers {
            assert!(
                q.outliers().contains(&o),
                "{o} not among {:?}",
                q.outliers()
            );
        }
        let (e_plain, e_cal) = (err(&plain), err(&calibrated));
        eprintln!("max abs error: plain int8 {e_plain}, calibrated {e_cal}");
        assert!(
            e_cal < e_plain / 4.0,
            "calibrated {e_cal} vs plain {e_plain}"
        );
        // Measured: plain 0.258, calibrated 0.033; without the SmoothQuant factors 0.053.
        assert!(e_cal < 0.04, "calibrated error {e_cal}");
        // GPTQ rounding on the same inputs' Gram matrix: a lower squared error on them.
        let mut gram = vec![0.0f32; k * k];
        gram_add(&x, rows, k, &mut gram);
        let mut c = Calibration::new(&absmax);
        c.gram = Some(&gram);
        let gptq =
            Linear::new_int8_calibrated(w.clone(), b.clone(), n, k, Some(&c), kernel).unwrap();
        let sq = |l: &Linear| {
            let mut out = vec![0.0; padded_rows(rows) * n];
            l.forward(&x, rows, &mut out, Epilogue::Bias, &mut Scratch::default());
            out.iter()
                .zip(&want)
                .map(|(g, w)| ((g - w) as f64).powi(2))
                .sum::<f64>()
        };
        let (s_cal, s_gptq) = (sq(&calibrated), sq(&gptq));
        eprintln!("squared error: calibrated {s_cal}, with GPTQ {s_gptq}");
        assert!(s_gptq < 0.8 * s_cal, "GPTQ {s_gptq} vs {s_cal}");
        assert!(Linear::new_int8(w.clone(), b.clone(), n, k, Some(&absmax[..5]), kernel).is_none());
        c.gram = Some(&gram[1..]);
        assert!(Linear::new_int8_calibrated(w, b, n, k, Some(&c), kernel).is_none());
    }

    #[test]
    fn linear_matches_the_plain_product_in_each_precision() {
        let (rows, n, k) = (37, 64, 96);
        let mut s = 3;
        let x: Vec<f32> = (0..rows * k).map(|_| lcg(&mut s)).collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let b: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
        let want = plain_linear(&x, rows, &w, &b, n, k);
        for p in [
            Precision::F32,
            Precision::Bf16Amx,
            Precision::Bf16Avx512,
            Precision::Int8Avx512,
            Precision::Int8Avx2,
        ] {
            let l = Linear::new(w.clone(), b.clone(), n, k, p).unwrap();
            if l.precision() != p {
                eprintln!(
                    "\n*** SKIPPED {}: not available on this CPU ***\n",
                    p.name()
                );
                continue;
            }
            let mut out = vec![0.0; padded_rows(rows) * n];
            l.forward(&x, rows, &mut out, Epilogue::Bias, &mut Scratch::default());
            // bf16 keeps 8 significant bits, int8 about 8 bits of each row's and column's
            // range: 96 products of |x| <= 1 stay within ~0.1.
            let tol = if p == Precision::F32 { 1e-4 } else { 0.1 };
            for (g, w) in out.iter().zip(&want) {
                assert!((g - w).abs() < tol, "{p:?}: {g} vs {w}");
            }
            let mut act = vec![0.0; padded_rows(rows) * n];
            l.forward(
                &x,
                rows,
                &mut act,
                Epilogue::BiasGelu,
                &mut Scratch::default(),
            );
            for (a, o) in act.iter().zip(&out).take(rows * n) {
                assert!((a - math::gelu(*o)).abs() < 1e-6);
            }
        }
        assert!(Linear::new(vec![0.0; 5], vec![0.0; 2], 2, 3, Precision::F32).is_none());
    }

    #[test]
    fn fused_feed_forward_gives_the_two_products_values() {
        // A calibrated int8 layer (outlier inputs included) into a bf16 one: the fused path
        // must give exactly what the two `forward` calls give; other pairs run those calls.
        let (rows, k, n, m) = (37, 64, 96, 64);
        let mut s = 29;
        let x: Vec<f32> = (0..rows * k)
            .map(|i| lcg(&mut s) * if i % k == 7 { 40.0 } else { 2.0 })
            .collect();
        let mut absmax = vec![0.0f32; k];
        for (i, v) in x.iter().enumerate() {
            absmax[i % k] = absmax[i % k].max(v.abs());
        }
        let w1: Vec<f32> = (0..n * k).map(|_| lcg(&mut s) * 0.3).collect();
        let b1: Vec<f32> = (0..n).map(|_| lcg(&mut s)).collect();
        let w2: Vec<f32> = (0..m * n).map(|_| lcg(&mut s) * 0.3).collect();
        let b2: Vec<f32> = (0..m).map(|_| lcg(&mut s)).collect();
        let pairs = [
            (
                Linear::new_int8(
                    w1.clone(),
                    b1.clone(),
                    n,
                    k,
                    Some(&absmax),
                    int8::Kernel::Vnni,
                )
                .unwrap(),
                Linear::new(w2.clone(), b2.clone(), m, n, Precision::Bf16Avx512).unwrap(),
            ),
            // The AVX2 kernel's fused form where bf16 runs (else both unfused).
            (
                Linear::new_int8(
                    w1.clone(),
                    b1.clone(),
                    n,
                    k,
                    Some(&absmax),
                    int8::Kernel::Avx2,
                )
                .unwrap(),
                Linear::new(w2.clone(), b2.clone(), m, n, Precision::Bf16Avx512).unwrap(),
            ),
            (
                Linear::new(w1.clone(), b1.clone(), n, k, Precision::F32).unwrap(),
                Linear::new(w2.clone(), b2.clone(), m, n, Precision::F32).unwrap(),
            ),
        ];
        if (pairs[0].0.precision(), pairs[0].1.precision())
            != (Precision::Int8Avx512, Precision::Bf16Avx512)
        {
            eprintln!(
                "\n*** SKIPPED the fused int8 -> bf16 kernel: no AVX512-VNNI + BF16 here (only the unfused path is checked) ***\n"
            );
        }
        for (up, down) in &pairs {
            let name = format!("{} -> {}", up.precision().name(), down.precision().name());
            let pr = padded_rows(rows);
            let (mut mid, mut want) = (vec![0.0; pr * n], vec![0.0; pr * m]);
            up.forward(
                &x,
                rows,
                &mut mid,
                Epilogue::BiasGelu,
                &mut Scratch::default(),
            );
            down.forward(
                &mid,
                rows,
                &mut want,
                Epilogue::None,
                &mut Scratch::default(),
            );
            let (mut mid2, mut got) = (vec![0.0; pr * n], vec![0.0; pr * m]);
            let mut scratch = Scratch::default();
            up.forward_gelu_then(&x, rows, &mut mid2, down, &mut got, &mut scratch);
            for r in 0..rows {
                for c in 0..m {
                    let (g, w) = (got[r * m + c], want[r * m + c]);
                    assert_eq!(g.to_bits(), w.to_bits(), "{name}: [{r}][{c}] {g} vs {w}");
                }
            }
            // And again with the scratch of a previous, longer call.
            up.forward_gelu_then(&x, rows - 5, &mut mid2, down, &mut got, &mut scratch);
            assert_eq!(
                got[..(rows - 5) * m],
                want[..(rows - 5) * m],
                "{name}: reused scratch"
            );
        }
    }

    #[test]
    fn attention_matches_the_plain_formula_per_sequence() {
        for (hidden, heads) in [(64, 4), (128, 4)] {
            check_attention(hidden, heads, AttentionKernel::Gemm, 1e-4);
            check_attention(hidden, heads, AttentionKernel::FusedF32, 1e-4);
            check_attention(hidden, heads, AttentionKernel::Bf16, 0.03);
        }
    }

    #[test]
    fn attention_runs_nested_in_parallel_callers() {
        // The encoder runs groups of texts in parallel and each group's attention runs its
        // heads in parallel: a worker waiting inside one call may run another group's call.
        // Every call must give what it gives alone (and not trip over a per-thread buffer).
        let (hidden, heads) = (128, 4);
        let seqs = [
            (0usize, 90usize),
            (90, 61),
            (151, 9),
            (160, 128),
            (288, 33),
            (321, 80),
        ];
        let rows = 401;
        let mut s = 41;
        let qkv: Vec<f32> = (0..rows * 3 * hidden).map(|_| lcg(&mut s)).collect();
        if !attention_bf16::supports(hidden / heads) {
            eprintln!("\n*** SKIPPED nested bf16 attention: no AVX512-BF16 here (f32 only) ***\n");
        }
        if !attention_f32::supports(hidden / heads) {
            eprintln!(
                "\n*** SKIPPED nested fused f32 attention: no AVX-512 here (gemm only) ***\n"
            );
        }
        for bf16 in [false, true] {
            let mut want = vec![0.0; rows * hidden];
            attention_in(&qkv, hidden, heads, &seqs, &mut want, bf16);
            // More workers than cores: more stealing.
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(6)
                .build()
                .unwrap();
            let got: Vec<Vec<f32>> = pool.install(|| {
                (0..300)
                    .into_par_iter()
                    .map(|_| {
                        let mut ctx = vec![0.0; rows * hidden];
                        attention_in(&qkv, hidden, heads, &seqs, &mut ctx, bf16);
                        ctx
                    })
                    .collect()
            });
            for g in &got {
                assert_eq!(g, &want, "bf16 {bf16}");
            }
        }
    }

    /// Every (sequence, head) of `attention_by` with `kernel` against the formula in f64,
    /// where the CPU runs the kernel (said loudly where not).
    fn check_attention(hidden: usize, heads: usize, kernel: AttentionKernel, tol: f64) {
        let d = hidden / heads;
        let runs = match kernel {
            AttentionKernel::Gemm => true,
            AttentionKernel::FusedF32 => attention_f32::supports(d),
            AttentionKernel::Bf16 => attention_bf16::supports(d),
        };
        if !runs {
            eprintln!("\n*** SKIPPED {kernel:?} attention (d = {d}): not on this CPU ***\n");
            return;
        }
        // Lengths around the kernels' blocks: 8 query rows, 16 and 32 keys.
        let seqs = [
            (0usize, 5usize),
            (5, 1),
            (6, 40),
            (46, 17),
            (63, 8),
            (71, 32),
            (103, 33),
            (136, 16),
            (152, 64),
            (216, 61),
            (277, 100),
        ];
        let rows = 377;
        let mut s = 11;
        let qkv: Vec<f32> = (0..rows * 3 * hidden).map(|_| lcg(&mut s) * 2.0).collect();
        let mut ctx = vec![f32::NAN; rows * hidden];
        attention_by(&qkv, hidden, heads, &seqs, &mut ctx, kernel);
        for &(start, len) in &seqs {
            for h in 0..heads {
                for i in 0..len {
                    let q = &qkv[(start + i) * 3 * hidden + h * d..][..d];
                    let logits: Vec<f64> = (0..len)
                        .map(|j| {
                            let k = &qkv[(start + j) * 3 * hidden + hidden + h * d..][..d];
                            q.iter().zip(k).map(|(a, b)| (*a * *b) as f64).sum::<f64>()
                                / (d as f64).sqrt()
                        })
                        .collect();
                    let m = logits.iter().cloned().fold(f64::MIN, f64::max);
                    let z: f64 = logits.iter().map(|l| (l - m).exp()).sum();
                    for c in 0..d {
                        let want: f64 = (0..len)
                            .map(|j| {
                                (logits[j] - m).exp() / z
                                    * qkv[(start + j) * 3 * hidden + 2 * hidden + h * d + c] as f64
                            })
                            .sum();
                        let got = ctx[(start + i) * hidden + h * d + c] as f64;
                        assert!(
                            (got - want).abs() < tol,
                            "{kernel:?}: seq {start} head {h} [{i}][{c}]: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
