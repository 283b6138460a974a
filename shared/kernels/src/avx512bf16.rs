//! bf16 matrix products with AVX512-BF16 (`vdpbf16ps`), f32 accumulation, for CPUs that have
//! it but no AMX (AMD Zen 4 and Zen 5; Intel Cooper Lake).
//!
//! Same operands as [`crate::amx`]: the weight packed once into [`crate::amx::Packed`]'s
//! pair-interleaved tiles (one 64-byte row of a tile is exactly one `vdpbf16ps` operand: the
//! input pair `(2q, 2q + 1)` of 16 output columns), the activations rounded to bf16 by
//! [`crate::amx::to_bf16_padded`]. The micro-kernel keeps an 8-row x 32-column block of C in 16
//! vector registers; each step broadcasts one input pair of a row against two weight vectors.
//!
//! Whether it pays depends on the CPU: on AMD Zen 4 / Zen 5 one `vdpbf16ps` does twice the
//! multiply-adds of an f32 FMA at a comparable rate; on Intel Sapphire Rapids it issues at
//! half the rate (slower than f32 there, and AMX serves anyway). [`available`] only says the
//! instructions exist; `Precision::best` decides.

use crate::amx::Packed;

/// Rows of C one micro-kernel call keeps in registers.
const MR: usize = 8;

/// What this kernel needs the activation rows padded to ([`crate::amx::to_bf16_padded_to`]):
/// its row block, where AMX needs whole 32-row tiles. A 114-token review is multiplied as
/// 120 rows instead of 128.
pub const ROWS: usize = MR;

/// Whether the CPU runs AVX512-F and AVX512-BF16 (checked once).
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(imp::detect)
}

/// Whether the CPU is one where `vdpbf16ps` outruns the f32 FMA path: AMD (Zen 4 and later
/// have AVX512-BF16), not Intel (where AMX is the bf16 path).
pub fn preferred() -> bool {
    available() && imp::is_amd()
}

/// `out[m][c] = sum_i a[m][i] * w[c][i]`, exactly as [`crate::amx::matmul`] (same inputs, same
/// output layout), except that `padded_rows` need only be a multiple of [`ROWS`]. Panics if
/// AVX512-BF16 is not [`available`] or the sizes disagree.
pub fn matmul(a: &[u16], padded_rows: usize, w: &Packed, out: &mut [f32]) {
    assert!(available(), "AVX512-BF16 is not available on this CPU");
    crate::amx::by_column_blocks(a, (padded_rows, ROWS), w, out, |first, last, out| {
        // SAFETY: AVX512-BF16 is available (asserted above); `by_column_blocks` checked that
        // `a` and `out` hold every row and column the kernel touches and hands each call its
        // own column blocks [first, last) of `out`.
        unsafe { imp::blocks(a, padded_rows, w, out, first, last) }
    });
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::{MR, Packed};
    use std::arch::x86_64::*;

    pub(super) fn detect() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bf16")
    }

    pub(super) fn is_amd() -> bool {
        let v = __cpuid(0);
        // "AuthenticAMD" in ebx, edx, ecx.
        v.ebx == u32::from_le_bytes(*b"Auth")
            && v.edx == u32::from_le_bytes(*b"enti")
            && v.ecx == u32::from_le_bytes(*b"cAMD")
    }

    /// Column blocks `[first, last)` (32 columns each) of `out = a * w^T`, all rows.
    ///
    /// # Safety
    /// The CPU must have AVX512-F and AVX512-BF16; `a` must hold `rows x w.k` bf16 (`rows` a
    /// multiple of `MR`) and `out` at least `rows x w.n` f32 with nothing else writing columns
    /// `[first * 32, last * 32)`.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn blocks(
        a: &[u16],
        rows: usize,
        w: &Packed,
        out: *mut f32,
        first: usize,
        last: usize,
    ) {
        let (n, k) = w.dims();
        let pairs = k / 2;
        // Input pairs of a row as one 32-bit lane each.
        let a32 = a.as_ptr().cast::<i32>();
        let data = w.data().as_ptr();
        for cb in first..last {
            // Column group g's weight is `pairs` consecutive 32-u16 vectors (tile rows of
            // consecutive tiles follow each other).
            let b0 = data.wrapping_add(2 * cb * pairs * 32);
            let b1 = data.wrapping_add((2 * cb + 1) * pairs * 32);
            for rb in (0..rows).step_by(MR) {
                let mut acc = [[_mm512_setzero_ps(); 2]; MR];
                let ar = a32.wrapping_add(rb * pairs);
                for q in 0..pairs {
                    // SAFETY: pair q of column groups 2cb and 2cb+1 lies inside the packed
                    // weight (n x k u16); rows rb..rb+MR of `a` hold `pairs` i32 each.
                    unsafe {
                        let v0: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            b0.add(q * 32).cast::<__m512i>(),
                        ));
                        let v1: __m512bh = std::mem::transmute(_mm512_loadu_si512(
                            b1.add(q * 32).cast::<__m512i>(),
                        ));
                        for (r, acc) in acc.iter_mut().enumerate() {
                            let x: __m512bh = std::mem::transmute(_mm512_set1_epi32(
                                ar.add(r * pairs + q).read_unaligned(),
                            ));
                            acc[0] = _mm512_dpbf16_ps(acc[0], x, v0);
                            acc[1] = _mm512_dpbf16_ps(acc[1], x, v1);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    // SAFETY: row rb + r < rows, columns cb*32..cb*32+32 < n: inside `out`,
                    // and in this call's own column range.
                    unsafe {
                        let c = out.add((rb + r) * n + cb * 32);
                        _mm512_storeu_ps(c, acc[0]);
                        _mm512_storeu_ps(c.add(16), acc[1]);
                    }
                }
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod imp {
    use super::Packed;

    pub(super) fn detect() -> bool {
        false
    }

    pub(super) fn is_amd() -> bool {
        false
    }

    /// Never called: [`super::available`] is false here.
    pub(super) unsafe fn blocks(_: &[u16], _: usize, _: &Packed, _: *mut f32, _: usize, _: usize) {
        unreachable!("AVX512-BF16 is not available on this platform")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn matmul_matches_a_plain_product_of_the_rounded_inputs() {
        if !super::available() {
            eprintln!("\n*** SKIPPED: this CPU has no AVX512-BF16 ***\n");
            return;
        }
        crate::tests::check_bf16_product(super::matmul);
    }
}
