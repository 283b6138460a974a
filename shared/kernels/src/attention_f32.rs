//! One head of self-attention fused in f32 with AVX-512F: for CPUs with AVX-512 where bf16
//! attention does not pay (Intel without AMX, where `vdpbf16ps` runs on one port at half the
//! f32 FMA's instruction rate: the same multiply-adds per cycle, plus the rounding), and for the
//! f32 engine.
//!
//! Where the `gemm` crate's path writes a `len x len` score matrix, runs a separate softmax pass
//! over it with the generic vectorised `exp`, and multiplies again, this kernel works on blocks
//! of 8 query rows: their scores against every key (the keys packed 16 at a time per head
//! dimension, each query value broadcast against two such groups), the exponentials of those 8
//! rows with the fused-multiply-add `exp` it shares with [`crate::attention_bf16`]
//! ([`crate::math`]; without normalising),
//! then `P V` straight from the value rows (each probability broadcast against the row's 16 or 32
//! values), every output row divided by its exponentials' sum at the end. The block's scores
//! (8 x keys f32: 8 KiB at 256 keys) stay in L1 between the three steps. Keys are padded to 32
//! (their scores never enter the softmax); query rows past the sequence repeat its last row
//! and are not stored.

/// Query rows per register block.
const MR: usize = 8;
/// Keys per register block of the scores (two vectors).
const NK: usize = 32;

/// Whether [`head`] can run a head of dimension `d` here: AVX-512F is available and `d` is
/// 16 or 32.
pub fn supports(d: usize) -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(imp::detect) && (d == 16 || d == 32)
}

/// Per-thread buffers of [`head`], kept between calls (only what a call reads is written).
#[derive(Default, Debug)]
pub struct Scratch {
    /// Keys: group g of 16, dimension t at `k[(g * d + t) * 16 + lane]`.
    k: Vec<f32>,
    /// Values, row j at `v[j * d..][..d]` (the rows of `qkv` lie 3 x hidden apart, which maps
    /// a head's values onto a few L1 sets).
    v: Vec<f32>,
    /// Scores, then exponentials, of one block of query rows (`MR x keys`).
    s: Vec<f32>,
}

/// `out[i] = softmax(scale * q_i K^T) V` for the `len` rows of one sequence and head: row
/// `i`'s query at `q[i * stride..][..d]`, key at `k[i * stride..]`, value at `v[i * stride..]`,
/// output at `out[i * out_stride..][..d]`. Panics unless [`supports`]`(d)` and the slices hold
/// the rows.
///
/// # Safety
/// `out` must address `len` rows of `d` writable f32 at stride `out_stride` that nothing else
/// accesses during the call.
#[allow(clippy::too_many_arguments)]
pub unsafe fn head(
    (q, k, v): (&[f32], &[f32], &[f32]),
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
        "f32 attention needs AVX-512F and d of 16 or 32"
    );
    crate::check_head_rows([q, k, v], stride, len, d);
    if len == 0 {
        return;
    }
    let keys = len.div_ceil(NK) * NK;
    let Scratch { k: kp, v: vp, s } = scratch;
    if kp.len() < keys * d {
        kp.resize(keys * d, 0.0);
    }
    if vp.len() < len * d {
        vp.resize(len * d, 0.0);
    }
    for (j, row) in vp[..len * d].chunks_exact_mut(d).enumerate() {
        row.copy_from_slice(&v[j * stride..][..d]);
    }
    if s.len() < MR * keys {
        s.resize(MR * keys, 0.0);
    }
    for j in 0..keys {
        let (g, lane) = (j / 16, j % 16);
        let dst = &mut kp[g * d * 16..(g + 1) * d * 16];
        if j < len {
            for (t, &x) in k[j * stride..][..d].iter().enumerate() {
                dst[t * 16 + lane] = x;
            }
        } else {
            // Padding keys: zeros, so their (unread) scores are finite.
            for t in 0..d {
                dst[t * 16 + lane] = 0.0;
            }
        }
    }
    // SAFETY: `supports(d)` (asserted) means AVX-512F is available; `q` holds `len` rows at
    // `stride` (asserted), `vp` `len x d`, `kp` `keys x d`, `s` `MR x keys`; the caller
    // guarantees `out`.
    unsafe { imp::blocks(q, vp, stride, len, d, scale, kp, keys, s, out, out_stride) }
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{MR, NK};
    use crate::math::exp16;
    use std::arch::x86_64::*;

    pub(super) fn detect() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    /// Every block of `MR` query rows: scores (with each row's largest over the real keys),
    /// exponentials, `P V`.
    ///
    /// # Safety
    /// AVX-512F must be available; `d` is 16 or 32; `q` holds `len` rows of `d` at `stride`;
    /// `v` holds `len` rows of `d` back to back; `kp` holds `keys x d` packed keys, `keys` a
    /// multiple of `NK`; `s` holds `MR x keys`; `out` addresses `len` rows of `d` at
    /// `out_stride` that nothing else accesses.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn blocks(
        q: &[f32],
        v: &[f32],
        stride: usize,
        len: usize,
        d: usize,
        scale: f32,
        kp: &[f32],
        keys: usize,
        s: &mut [f32],
        out: *mut f32,
        out_stride: usize,
    ) {
        debug_assert_eq!(keys % NK, 0);
        // Lanes of key group g (16 keys) that are real keys.
        let lanes = |g: usize| -> __mmask16 {
            let n = len.saturating_sub(g * 16).min(16);
            ((1u32 << n) - 1) as __mmask16
        };
        let mut sum = [0.0f32; MR];
        for rb in (0..len).step_by(MR) {
            // Rows past the sequence repeat its last row (computed, never stored).
            let row = |r: usize| (rb + r).min(len - 1);
            let mut top = [_mm512_set1_ps(f32::NEG_INFINITY); MR];
            // SAFETY: rows `row(r)` < len of `q`; groups of 16 keys below `keys` of `kp`; `s`
            // rows r < MR of `keys` (the caller's sizes); AVX-512F is available.
            unsafe {
                for g in (0..keys / 16).step_by(2) {
                    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                    let k0 = kp.as_ptr().add(g * d * 16);
                    let k1 = kp.as_ptr().add((g + 1) * d * 16);
                    for t in 0..d {
                        let a = _mm512_loadu_ps(k0.add(t * 16));
                        let b = _mm512_loadu_ps(k1.add(t * 16));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x = _mm512_set1_ps(*q.get_unchecked(row(r) * stride + t));
                            acc[0] = _mm512_fmadd_ps(x, a, acc[0]);
                            acc[1] = _mm512_fmadd_ps(x, b, acc[1]);
                        }
                    }
                    let (m0, m1) = (lanes(g), lanes(g + 1));
                    for (r, acc) in acc.iter().enumerate() {
                        let dst = s.as_mut_ptr().add(r * keys + g * 16);
                        _mm512_storeu_ps(dst, acc[0]);
                        _mm512_storeu_ps(dst.add(16), acc[1]);
                        top[r] = _mm512_mask_max_ps(top[r], m0, top[r], acc[0]);
                        top[r] = _mm512_mask_max_ps(top[r], m1, top[r], acc[1]);
                    }
                }
            }
            let vs = _mm512_set1_ps(scale);
            let groups = len.div_ceil(16);
            let last = lanes(groups - 1);
            for (r, total) in sum.iter_mut().enumerate() {
                let shift = _mm512_set1_ps(_mm512_reduce_max_ps(top[r]) * scale);
                let p = s[r * keys..].as_mut_ptr();
                // Four independent sums: the additions do not wait on each other.
                let mut acc = [_mm512_setzero_ps(); 4];
                let mut g = 0;
                // SAFETY: groups below `groups` lie inside row r of `s` (keys >= 16 groups).
                unsafe {
                    // The last group (which may hold padding lanes) is left to the masked loop.
                    while g + 4 < groups {
                        for (u, a) in acc.iter_mut().enumerate() {
                            let x = p.add((g + u) * 16);
                            let e = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x), vs, shift));
                            _mm512_storeu_ps(x, e);
                            *a = _mm512_add_ps(*a, e);
                        }
                        g += 4;
                    }
                    while g < groups {
                        let x = p.add(g * 16);
                        let e = exp16(_mm512_fmsub_ps(_mm512_loadu_ps(x), vs, shift));
                        _mm512_storeu_ps(x, e);
                        // Padding keys' exponentials are stored (never read) but not summed.
                        let m = if g + 1 == groups { last } else { !0 };
                        acc[0] = _mm512_mask_add_ps(acc[0], m, acc[0], e);
                        g += 1;
                    }
                }
                let all =
                    _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
                *total = _mm512_reduce_add_ps(all);
            }
            // SAFETY: as this function's contract, with d = 16 G.
            unsafe {
                if d == 32 {
                    values::<2>(s, v, len, keys, rb, &sum, out, out_stride);
                } else {
                    values::<1>(s, v, len, keys, rb, &sum, out, out_stride);
                }
            }
        }
    }

    /// `out[rb + r] = (sum_j s[r][j] v_j) / sum[r]` for the block's rows below `len`, `G`
    /// groups of 16 columns.
    ///
    /// # Safety
    /// As [`blocks`], with `d = 16 G` (`v` holds `len` rows of `d` back to back).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn values<const G: usize>(
        s: &[f32],
        v: &[f32],
        len: usize,
        keys: usize,
        rb: usize,
        sum: &[f32; MR],
        out: *mut f32,
        out_stride: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); G]; MR];
        for j in 0..len {
            // SAFETY: value row j < len; probabilities s[r][j], r < MR, j < len <= keys.
            unsafe {
                let vr = v.as_ptr().add(j * 16 * G);
                let mut vv = [_mm512_setzero_ps(); G];
                for (c, x) in vv.iter_mut().enumerate() {
                    *x = _mm512_loadu_ps(vr.add(c * 16));
                }
                for (r, acc) in acc.iter_mut().enumerate() {
                    let p = _mm512_set1_ps(*s.get_unchecked(r * keys + j));
                    for (a, x) in acc.iter_mut().zip(&vv) {
                        *a = _mm512_fmadd_ps(p, *x, *a);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            let i = rb + r;
            if i >= len {
                break;
            }
            let inv = _mm512_set1_ps(1.0 / sum[r]);
            for (c, a) in acc.iter().enumerate() {
                // SAFETY: row i < len, columns c*16..c*16+16 <= d: inside the caller's rows.
                unsafe {
                    _mm512_storeu_ps(out.add(i * out_stride + c * 16), _mm512_mul_ps(*a, inv))
                };
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    pub(super) fn detect() -> bool {
        false
    }

    /// Never called: `supports` is false here.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn blocks(
        _: &[f32],
        _: &[f32],
        _: usize,
        _: usize,
        _: usize,
        _: f32,
        _: &[f32],
        _: usize,
        _: &mut [f32],
        _: *mut f32,
        _: usize,
    ) {
        unreachable!("AVX-512 is not available on this platform")
    }
}
