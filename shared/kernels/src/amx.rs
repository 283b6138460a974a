//! bf16 matrix products on Intel AMX (Advanced Matrix Extensions: Sapphire Rapids and later
//! Xeons), with f32 accumulation.
//!
//! `C[M x N] = A[M x K] * W^T` where `W` is a linear layer's `[N x K]` weight: the weight is
//! packed once into AMX's pair-interleaved ("VNNI") tiles of 16 output columns x 32 inputs, the
//! activations are rounded to bf16 per call, and each 32 x 32 block of C accumulates in four
//! tile registers (`tdpbf16ps`, 16 x 16 x 32 multiply-adds each). Rayon splits the columns.
//!
//! Availability is checked at run time: the CPU must report AMX-TILE and AMX-BF16 (CPUID leaf
//! 7) and Linux must grant this process the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM)`);
//! elsewhere [`available`] is false and callers use f32.

use rayon::prelude::*;

/// Whether AMX bf16 products can run in this process (checked once).
pub fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(imp::enable)
}

/// Rows and columns of one block of C handled by the micro-kernel.
pub const BLOCK: usize = 32;

/// f32 to bf16, rounding to nearest even (NaN stays NaN).
#[inline(always)]
pub fn bf16(x: f32) -> u16 {
    if x.is_nan() {
        return ((x.to_bits() >> 16) | 0x40) as u16;
    }
    crate::math::bf16_round(x.to_bits())
}

/// A weight `[n x k]` packed for [`matmul`]: `n` and `k` multiples of [`BLOCK`].
#[derive(Clone)]
pub struct Packed {
    n: usize,
    k: usize,
    /// Tile `(nb, kb)` (16 columns, 32 inputs) at `(nb * k / 32 + kb) * 512`; inside it, row
    /// `p` (input pair) holds `w[col][2p], w[col][2p + 1]` for the 16 columns.
    data: Vec<u16>,
}

impl std::fmt::Debug for Packed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Packed({} x {})", self.n, self.k)
    }
}

impl Packed {
    /// Packs a row-major `[n x k]` weight; `None` unless both are multiples of [`BLOCK`].
    pub fn new(w: &[f32], n: usize, k: usize) -> Option<Packed> {
        if !n.is_multiple_of(BLOCK)
            || !k.is_multiple_of(BLOCK)
            || w.len() != n * k
            || n == 0
            || k == 0
        {
            return None;
        }
        let kbs = k / 32;
        let mut data = vec![0u16; n * k];
        for nb in 0..n / 16 {
            for kb in 0..kbs {
                let tile = &mut data[(nb * kbs + kb) * 512..][..512];
                for p in 0..16 {
                    for j in 0..16 {
                        let row = &w[(nb * 16 + j) * k + kb * 32 + 2 * p..];
                        tile[p * 32 + 2 * j] = bf16(row[0]);
                        tile[p * 32 + 2 * j + 1] = bf16(row[1]);
                    }
                }
            }
        }
        Some(Packed { n, k, data })
    }

    /// `(n, k)`: output columns and inputs.
    pub(crate) fn dims(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The packed tiles.
    pub(crate) fn data(&self) -> &[u16] {
        &self.data
    }
}

/// Rounds the first `rows` rows of `x` (row-major, `k` columns) to bf16 into `out`, padded with
/// zero rows to a multiple of [`BLOCK`]; returns the padded row count. (Activations are finite:
/// unlike [`bf16`], a NaN may come out as infinity here.)
pub fn to_bf16_padded(x: &[f32], rows: usize, k: usize, out: &mut Vec<u16>) -> usize {
    to_bf16_padded_to(x, rows, k, BLOCK, out)
}

/// [`to_bf16_padded`] with the rows padded to a multiple of `multiple` (the AVX512-BF16 kernel
/// needs only [`crate::avx512bf16::ROWS`]).
pub fn to_bf16_padded_to(
    x: &[f32],
    rows: usize,
    k: usize,
    multiple: usize,
    out: &mut Vec<u16>,
) -> usize {
    let multiple = multiple.max(1);
    let padded = rows.div_ceil(multiple) * multiple;
    out.resize(padded * k, 0);
    out[rows * k..].fill(0);
    let chunk = 64 * k;
    out[..rows * k]
        .par_chunks_mut(chunk)
        .zip(x[..rows * k].par_chunks(chunk))
        .for_each(|(o, x)| crate::math::to_bf16(x, o));
    padded
}

/// `out[m][c] = sum_i a[m][i] * w[c][i]` for the `padded_rows` rows of `a` (bf16, as many
/// columns as `w` has inputs, from [`to_bf16_padded`]); `out` is row-major with `w`'s output
/// columns and at least `padded_rows` rows. Panics if AMX is not [`available`] or the sizes disagree.
pub fn matmul(a: &[u16], padded_rows: usize, w: &Packed, out: &mut [f32]) {
    assert!(available(), "AMX bf16 is not available on this CPU");
    by_column_blocks(a, (padded_rows, BLOCK), w, out, |first, last, out| {
        // SAFETY: AMX is available (asserted above); `by_column_blocks` checked that `a` and
        // `out` hold every row and column the kernel touches and hands each call its own
        // column blocks [first, last) of `out`.
        unsafe { imp::blocks(a, padded_rows, w, out, first, last) }
    });
}

/// Checks the operands of a bf16 product `out = a * w^T` (as [`matmul`] takes them) and runs
/// `blocks(first, last, out)` over ranges of 32-column blocks that together cover `w`'s output
/// columns once: one range for a small product, else about two per rayon thread in parallel.
/// `padded_rows` must be a multiple of `row_multiple` (the kernel's row block).
pub(crate) fn by_column_blocks(
    a: &[u16],
    (padded_rows, row_multiple): (usize, usize),
    w: &Packed,
    out: &mut [f32],
    blocks: impl Fn(usize, usize, *mut f32) + Sync,
) {
    assert!(
        padded_rows.is_multiple_of(row_multiple),
        "rows must be padded to {row_multiple}"
    );
    assert!(a.len() >= padded_rows * w.k, "a is too short");
    assert!(out.len() >= padded_rows * w.n, "out is too short");
    crate::over_column_blocks(w.n / BLOCK, padded_rows * w.n * w.k, out, blocks);
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::Packed;
    use std::arch::asm;

    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// Every tile 16 rows x 64 bytes (16 f32 or 32 bf16 per row).
    static CONFIG: TileConfig = {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        let mut t = 0;
        while t < 8 {
            c[16 + 2 * t] = 64; // bytes per row (u16 little-endian)
            c[48 + t] = 16; // rows
            t += 1;
        }
        TileConfig(c)
    };

    pub(super) fn enable() -> bool {
        // CPUID.(EAX=7, ECX=0):EDX bit 24 AMX-TILE, bit 22 AMX-BF16.
        let leaf0 = std::arch::x86_64::__cpuid(0);
        if leaf0.eax < 7 {
            return false;
        }
        let l7 = std::arch::x86_64::__cpuid_count(7, 0);
        if l7.edx & (1 << 24) == 0 || l7.edx & (1 << 22) == 0 {
            return false;
        }
        // arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA): Linux hands out the 8 KiB tile
        // state only on request (kernel 5.16+); it fails where the kernel or VM does not allow it.
        const SYS_ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: a plain Linux system call; it reads two integer arguments, touches no memory
        // of ours, and clobbers only rcx and r11 (declared).
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }

    /// Column blocks `[first, last)` (32 columns each) of `out = a * w^T`, all row blocks.
    ///
    /// # Safety
    /// AMX must be enabled for this process; `a` must hold `rows x w.k` bf16 and `out` at
    /// least `rows x w.n` f32 with nothing else writing columns `[first * 32, last * 32)`.
    pub(super) unsafe fn blocks(
        a: &[u16],
        rows: usize,
        w: &Packed,
        out: *mut f32,
        first: usize,
        last: usize,
    ) {
        let kbs = w.k / 32;
        let a_stride = w.k * 2;
        let c_stride = w.n * 4;
        // SAFETY: the configuration is a valid palette-1 layout (8 tiles of 16 x 64 bytes).
        unsafe { asm!("ldtilecfg [{0}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
        for cb in first..last {
            let b0 = w.data[(2 * cb) * kbs * 512..].as_ptr();
            let b1 = w.data[(2 * cb + 1) * kbs * 512..].as_ptr();
            for rb in 0..rows / 32 {
                let a0 = a[rb * 32 * w.k..].as_ptr();
                let a1 = a[(rb * 32 + 16) * w.k..].as_ptr();
                // SAFETY: every load reads 16 rows of 64 bytes inside `a` (rows rb*32..rb*32+32,
                // inputs kb*32..kb*32+32) or inside one packed tile of `w`.
                unsafe {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for kb in 0..kbs {
                        asm!(
                            "tileloadd tmm4, [{a0} + {sa}]",
                            "tileloadd tmm5, [{a1} + {sa}]",
                            "tileloadd tmm6, [{b0} + {sb}]",
                            "tileloadd tmm7, [{b1} + {sb}]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0.add(kb * 32),
                            a1 = in(reg) a1.add(kb * 32),
                            b0 = in(reg) b0.add(kb * 512),
                            b1 = in(reg) b1.add(kb * 512),
                            sa = in(reg) a_stride,
                            sb = in(reg) 64usize,
                            options(nostack, readonly),
                        );
                    }
                    let c = out.add(rb * 32 * w.n + cb * 32);
                    asm!(
                        "tilestored [{c0} + {sc}], tmm0",
                        "tilestored [{c1} + {sc}], tmm1",
                        "tilestored [{c2} + {sc}], tmm2",
                        "tilestored [{c3} + {sc}], tmm3",
                        c0 = in(reg) c,
                        c1 = in(reg) c.add(16),
                        c2 = in(reg) c.add(16 * w.n),
                        c3 = in(reg) c.add(16 * w.n + 16),
                        sc = in(reg) c_stride,
                        options(nostack),
                    );
                }
            }
        }
        // SAFETY: releases this thread's tile state (the next use loads the config again).
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use super::Packed;

    pub(super) fn enable() -> bool {
        false
    }

    /// Never called: [`super::available`] is false here.
    pub(super) unsafe fn blocks(_: &[u16], _: usize, _: &Packed, _: *mut f32, _: usize, _: usize) {
        unreachable!("AMX is not available on this platform")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tests::{f32_of, lcg};

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(f32_of(bf16(1.0)), 1.0);
        assert_eq!(f32_of(bf16(-2.5)), -2.5);
        // 1 + 2^-8 is halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(f32_of(bf16(1.0 + 1.0 / 256.0)), 1.0);
        assert_eq!(f32_of(bf16(1.0 + 3.0 / 256.0)), 1.0 + 4.0 / 256.0);
        assert!(f32_of(bf16(f32::NAN)).is_nan());
        let x = 0.123_456_7f32;
        assert!((f32_of(bf16(x)) - x).abs() <= x * 2f32.powi(-8));
    }

    #[test]
    fn packed_tiles_hold_the_weight() {
        let (n, k) = (64, 96);
        let mut s = 7;
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut s)).collect();
        let p = Packed::new(&w, n, k).unwrap();
        let kbs = k / 32;
        for c in 0..n {
            for i in 0..k {
                let tile = (c / 16) * kbs + i / 32;
                let at = tile * 512 + ((i % 32) / 2) * 32 + (c % 16) * 2 + i % 2;
                assert_eq!(p.data[at], bf16(w[c * k + i]));
            }
        }
        assert!(Packed::new(&w[..10], 2, 5).is_none());
    }

    #[test]
    fn matmul_matches_a_plain_product_of_the_rounded_inputs() {
        if !available() {
            eprintln!("\n*** SKIPPED: this CPU has no AMX bf16 (the f32 path serves) ***\n");
            return;
        }
        crate::tests::check_bf16_product(matmul);
    }
}
