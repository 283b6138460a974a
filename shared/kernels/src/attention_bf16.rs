//! One head of self-attention with its two products in bf16 (`vdpbf16ps`, f32 accumulation),
//! for CPUs where AVX512-BF16 is preferred ([`crate::avx512bf16::preferred`]: AMD Zen 4 and
//! later).
//!
//! `Q K^T`: the keys are packed 16 at a time as bf16 pairs of the head dimension (one
//! `vdpbf16ps` operand per pair), each query row's pairs broadcast; `softmax`: in f32, the
//! exponentials rounded to bf16 pairs of consecutive keys without normalising; `P V`: the values
//! packed as pairs of consecutive keys per 16 output columns, each probability pair broadcast,
//! and every output row divided by its exponentials' sum at the end. Rows are handled 8 at a
//! time (the query rows padded with zeros), keys padded to 16 (their scores never enter the
//! softmax).

use crate::math;

/// Query rows per register block.
const MR: usize = 8;

/// Whether [`head`] can run a head of dimension `d` here: AVX512-BF16 is available and `d`
/// is 16 or 32.
pub fn supports(d: usize) -> bool {
    crate::avx512bf16::available() && (d == 16 || d == 32)
}

/// Per-thread buffers of [`head`], kept between calls (only what a call reads is written).
#[derive(Default, Debug)]
pub struct Scratch {
    /// Query rows as bf16 (pairs of the head dimension, read as u32).
    q: Vec<u16>,
    k: Vec<u32>,
    v: Vec<u32>,
    s: Vec<f32>,
    /// Exponentials as bf16, `keys` a row (pairs of consecutive keys, read as u32).
    p: Vec<u16>,
    sum: Vec<f32>,
}

fn grow<T: Copy + Default>(v: &mut Vec<T>, n: usize) {
    if v.len() < n {
        v.resize(n, T::default());
    }
}

/// `out[i] = softmax(scale * q_i K^T) V` for the `len` rows of one sequence and head: row `i`'s
/// query at `q[i * stride..][..d]`, key at `k[i * stride..]`, value at `v[i * stride..]` (all
/// already rounded to bf16, [`crate::math::to_bf16`]), output at `out[i * out_stride..][..d]`.
/// Panics unless [`supports`]`(d)` and the slices hold the rows.
///
/// # Safety
/// `out` must address `len` rows of `d` writable f32 at stride `out_stride` that nothing else
/// accesses during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn head(
    (q, k, v): (&[u16], &[u16], &[u16]),
    stride: usize,
    len: usize,
    d: usize,
    scale: f32,
    out: *mut f32,
    out_stride: usize,
    scratch: &mut Scratch,
) {
    assert!(
        supports(d),
        "bf16 attention needs AVX512-BF16 and d of 16 or 32"
    );
    crate::check_head_rows([q, k, v], stride, len, d);
    if len == 0 {
        return;
    }
    let rows = len.div_ceil(MR) * MR;
    let keys = len.div_ceil(16) * 16;
    let pairs = d / 2;
    let groups = d / 16;
    let Scratch {
        q: qp,
        k: kp,
        v: vp,
        s,
        p,
        sum,
    } = scratch;
    // Query rows (rows past `len` are never stored, so their contents do not matter).
    grow(qp, rows * d);
    for i in 0..len {
        qp[i * d..(i + 1) * d].copy_from_slice(&q[i * stride..][..d]);
    }
    // Keys: group g of 16, pair t at kp[(g * pairs + t) * 16 + lane] (scores of padding keys
    // are never read).
    grow(kp, keys * pairs);
    for j in 0..len {
        let row = &k[j * stride..][..d];
        let (g, lane) = (j / 16, j % 16);
        for t in 0..pairs {
            kp[(g * pairs + t) * 16 + lane] = row[2 * t] as u32 | (row[2 * t + 1] as u32) << 16;
        }
    }
    // Values: key pair m, column group c of 16: vp[(m * groups + c) * 16 + lane]; padding keys
    // are zeros (their probabilities are zeros too, and 0 x garbage could be NaN).
    grow(vp, keys / 2 * groups * 16);
    let zeros = [0u16; 32];
    for m in 0..keys / 2 {
        let value = |r: usize| {
            if r < len {
                &v[r * stride..][..d]
            } else {
                &zeros[..d]
            }
        };
        let (row, row2) = (value(2 * m), value(2 * m + 1));
        for c in 0..d {
            vp[(m * groups + c / 16) * 16 + c % 16] = row[c] as u32 | (row2[c] as u32) << 16;
        }
    }
    grow(s, rows * keys);
    grow(p, rows * keys);
    grow(sum, rows);
    // SAFETY: `supports(d)` (asserted) means AVX512-BF16 is available; the buffers hold at
    // least `rows` query rows, `keys` keys, `pairs` pairs and `groups` column groups.
    unsafe { imp::scores(qp, kp, rows, keys, pairs, s) };
    for i in 0..len {
        let srow = &mut s[i * keys..][..len];
        let mut total = 0.0;
        exp_row(srow, scale, &mut total);
        sum[i] = total;
        let prow = &mut p[i * keys..(i + 1) * keys];
        math::to_bf16(srow, &mut prow[..len]);
        prow[len..].fill(0);
    }
    // SAFETY: as above; the caller guarantees `out` holds `len` rows at `out_stride`.
    unsafe { imp::values(p, vp, rows, keys, groups, sum, len, out, out_stride) };
}

/// `x_j = exp((x_j - max) * scale)` in place; `total` = their sum. (Only called where
/// [`supports`] holds, so AVX-512 is there.)
fn exp_row(row: &mut [f32], scale: f32, total: &mut f32) {
    // SAFETY: callers run only where `supports` holds: AVX512-F is available.
    unsafe { imp::exp_row(row, scale, total) }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::MR;
    use crate::math::exp16;
    use std::arch::x86_64::*;

    /// See [`super::exp_row`].
    ///
    /// # Safety
    /// AVX512-F must be available.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn exp_row(row: &mut [f32], scale: f32, total: &mut f32) {
        let m = crate::math::max(row);
        let full = row.len() / 16 * 16;
        let (vm, vs) = (_mm512_set1_ps(m), _mm512_set1_ps(scale));
        let mut acc = _mm512_setzero_ps();
        let ptr = row.as_mut_ptr();
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= row.len().
            unsafe {
                let e = exp16(_mm512_mul_ps(
                    _mm512_sub_ps(_mm512_loadu_ps(ptr.add(i)), vm),
                    vs,
                ));
                acc = _mm512_add_ps(acc, e);
                _mm512_storeu_ps(ptr.add(i), e);
            }
        }
        let mut s = _mm512_reduce_add_ps(acc);
        for x in &mut row[full..] {
            *x = crate::math::exp((*x - m) * scale);
            s += *x;
        }
        *total = s;
    }

    /// `s[i][j] = q_i . k_j` for `rows` query rows and `keys` keys.
    ///
    /// # Safety
    /// AVX512-F/BF16 must be available; `qp` holds `rows x pairs`, `kp` `keys x pairs` (in
    /// groups of 16 keys), `s` `rows x keys`; `rows` a multiple of `MR`, `keys` of 16.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn scores(
        qp: &[u16],
        kp: &[u32],
        rows: usize,
        keys: usize,
        pairs: usize,
        s: &mut [f32],
    ) {
        assert!(qp.len() >= rows * 2 * pairs && kp.len() >= keys * pairs && s.len() >= rows * keys);
        let q32 = qp.as_ptr().cast::<u32>();
        for rb in (0..rows).step_by(MR) {
            for g in 0..keys / 16 {
                let mut acc = [_mm512_setzero_ps(); MR];
                for t in 0..pairs {
                    // SAFETY: group g, pair t: 16 u32 inside `kp`; query rows rb..rb+MR, pair t
                    // inside `qp` (asserted sizes).
                    unsafe {
                        let kv: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            kp.as_ptr().add((g * pairs + t) * 16).cast::<__m512i>(),
                        ));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                                q32.add((rb + r) * pairs + t).read_unaligned() as i32,
                            ));
                            *acc = _mm512_dpbf16_ps(*acc, x, kv);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    // SAFETY: row rb + r < rows, keys g*16..g*16+16 <= keys: inside `s`.
                    unsafe { _mm512_storeu_ps(s.as_mut_ptr().add((rb + r) * keys + g * 16), *acc) };
                }
            }
        }
    }

    /// `out[i] = (sum_j p[i][j] v_j) / sum[i]` for the first `len` of `rows` rows.
    ///
    /// # Safety
    /// AVX512-F/BF16 must be available; `p` holds `rows x keys / 2` pairs, `vp` `keys / 2 x
    /// groups x 16`, `sum` `rows`; `groups` is 1 or 2; `out` addresses `len` rows of `16 x
    /// groups` f32 at `out_stride` that nothing else accesses.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn values(
        p: &[u16],
        vp: &[u32],
        rows: usize,
        keys: usize,
        groups: usize,
        sum: &[f32],
        len: usize,
        out: *mut f32,
        out_stride: usize,
    ) {
        let half = keys / 2;
        assert!(groups == 1 || groups == 2);
        assert!(p.len() >= rows * keys && vp.len() >= half * groups * 16 && sum.len() >= rows);
        // Pairs of consecutive keys' probabilities as one 32-bit lane.
        let p32 = p.as_ptr().cast::<u32>();
        for rb in (0..rows).step_by(MR) {
            let mut acc = [[_mm512_setzero_ps(); 2]; MR];
            for m in 0..half {
                // SAFETY: key pair m, groups 0..groups: inside `vp`; probability pairs of rows
                // rb..rb+MR inside `p` (asserted sizes).
                unsafe {
                    let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                        vp.as_ptr().add(m * groups * 16).cast::<__m512i>(),
                    ));
                    if groups == 2 {
                        let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            vp.as_ptr().add((m * groups + 1) * 16).cast::<__m512i>(),
                        ));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                                p32.add((rb + r) * half + m).read_unaligned() as i32,
                            ));
                            acc[0] = _mm512_dpbf16_ps(acc[0], x, v0);
                            acc[1] = _mm512_dpbf16_ps(acc[1], x, v1);
                        }
                    } else {
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                                p32.add((rb + r) * half + m).read_unaligned() as i32,
                            ));
                            acc[0] = _mm512_dpbf16_ps(acc[0], x, v0);
                        }
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let i = rb + r;
                if i >= len {
                    break;
                }
                let inv = _mm512_set1_ps(1.0 / sum[i]);
                for (g, a) in acc.iter().enumerate().take(groups) {
                    // SAFETY: row i < len, columns g*16..g*16+16 <= d: inside the caller's
                    // output rows.
                    unsafe {
                        _mm512_storeu_ps(out.add(i * out_stride + g * 16), _mm512_mul_ps(*a, inv));
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    /// Never called: `supports` is false here.
    pub(super) unsafe fn exp_row(_: &mut [f32], _: f32, _: &mut f32) {
        unreachable!("AVX-512 is not available on this platform")
    }

    /// Never called: `supports` is false here.
    pub(super) unsafe fn scores(_: &[u16], _: &[u32], _: usize, _: usize, _: usize, _: &mut [f32]) {
        unreachable!("AVX512-BF16 is not available on this platform")
    }

    /// Never called: `supports` is false here.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn values(
        _: &[u16],
        _: &[u32],
        _: usize,
        _: usize,
        _: usize,
        _: &[f32],
        _: usize,
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("AVX512-BF16 is not available on this platform")
    }
}
