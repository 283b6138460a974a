//! Weight rounding with error feedback (GPTQ, Frantar et al. 2022) for the int8 products.
//!
//! Rounding each weight to the nearest step (what [`crate::int8::Packed::new`] does without
//! calibration data) makes every output's error the sum of independent rounding errors. Given
//! the Gram matrix `H = X^T X` of the layer's inputs on calibration data, GPTQ rounds the
//! inputs one at a time and moves each rounding error onto the inputs not yet rounded, in the
//! proportions that minimise `|X (W - Q)^T|^2`, the outputs' squared error on that data:
//! with `U` the upper Cholesky factor of `H^-1`, after rounding input `i` of a row,
//! `w[j] -= (w[i] - q[i]) / U[i][i] * U[i][j]` for every `j > i`.
//!
//! `U` is obtained without inverting `H`: with `R` the upper-triangular factor of `H = R R^T`
//! (a Cholesky factorisation in reversed order), `H^-1 = R^-T R^-1`, so `U = R^-1`.

use crate::math::{axpy_f32, axpy_f64, dot_f64};
use rayon::prelude::*;

/// Rounds `w` (`[n x k]` row-major, already multiplied by the per-input factors `s_i`; changed
/// in place by the error feedback) to i8 with the per-row `scale` (a row's step; values clamp
/// at ±127 steps), minimising the outputs' error on the calibration inputs whose Gram matrix
/// `X^T X` is `gram` (`[k x k]` row-major, of the unscaled inputs; the scaled inputs are
/// `x_i / s_i`, so `inv_smooth[i]` = `1 / s_i`). Inputs listed in `skip` (multiplied elsewhere)
/// are left at 0 and take no error. Returns the `[n x k]` rounded weights; `None` if the Gram
/// matrix is not usable (wrong size, not finite, or not positive definite after damping).
pub fn round(
    w: &mut [f32],
    (n, k): (usize, usize),
    scale: &[f32],
    gram: &[f32],
    inv_smooth: &[f32],
    skip: &[usize],
) -> Option<Vec<i8>> {
    if w.len() != n * k || scale.len() != n || gram.len() != k * k || inv_smooth.len() != k {
        return None;
    }
    let mut skipped = vec![false; k];
    for &i in skip {
        *skipped.get_mut(i)? = true;
    }
    let mut h: Vec<f64> = gram
        .par_chunks(k)
        .enumerate()
        .flat_map_iter(|(i, row)| {
            row.iter()
                .zip(inv_smooth)
                .map(move |(&g, &sj)| g as f64 * (inv_smooth[i] * sj) as f64)
        })
        .collect();
    if h.iter().any(|v| !v.is_finite()) {
        return None;
    }
    // Inputs that never moved on the calibration data (or are skipped) take no error: a unit
    // diagonal and no coupling.
    for i in 0..k {
        if skipped[i] || h[i * k + i] <= 0.0 {
            for j in 0..k {
                h[i * k + j] = 0.0;
                h[j * k + i] = 0.0;
            }
            h[i * k + i] = 1.0;
        }
    }
    // Damping: 1% of the mean diagonal (GPTQ's default), which also makes a Gram matrix of
    // fewer calibration rows than inputs invertible.
    let mean = (0..k).map(|i| h[i * k + i]).sum::<f64>() / k as f64;
    for i in 0..k {
        h[i * k + i] += 0.01 * mean;
    }
    let u = inverse_upper_factor(h, k)?;
    let mut q = vec![0i8; n * k];
    // Rows are independent; a block of rows goes through the inputs together, so that each row
    // of `U` is read from memory once per block (`U` is 9 MB for 1,536 inputs). Blocks in
    // parallel.
    w.par_chunks_mut(ROW_BLOCK * k)
        .zip(q.par_chunks_mut(ROW_BLOCK * k))
        .zip(scale.par_chunks(ROW_BLOCK))
        .for_each(|((block, q), sc)| {
            for i in 0..k {
                if skipped[i] {
                    continue;
                }
                let ui = &u[i * k + i + 1..(i + 1) * k];
                for (r, &sc) in sc.iter().enumerate() {
                    let row = &mut block[r * k..(r + 1) * k];
                    let v = row[i];
                    let rounded = crate::int8::weight_step(v, sc);
                    q[r * k + i] = rounded as i8;
                    let err = (v - rounded * sc) / u[i * k + i];
                    if err != 0.0 {
                        axpy_f32(&mut row[i + 1..], -err, ui);
                    }
                }
            }
        });
    Some(q)
}

/// Rows of the weight (or of `U`) one pass handles together.
const ROW_BLOCK: usize = 16;

/// `U` with `H^-1 = U^T U`, `U` upper triangular (row-major `[k x k]`, computed in f64 and
/// stored in f32), for a symmetric positive definite `h`; `None` if it is not.
fn inverse_upper_factor(mut h: Vec<f64>, k: usize) -> Option<Vec<f32>> {
    // H = R R^T with R upper triangular: the Cholesky factorisation run from the last index
    // down, R written over H's upper triangle. Column j: R[j][j] = sqrt(H[j][j] - |R[j][j+1..]|^2)
    // and R[i][j] = (H[i][j] - R[i][j+1..] . R[j][j+1..]) / R[j][j] for i < j. Columns go in
    // blocks of ROW_BLOCK: the block's own rows first, then every row above it (in parallel),
    // each running through the block's columns while its row stays in cache.
    let mut j1 = k;
    while j1 > 0 {
        let j0 = j1.saturating_sub(ROW_BLOCK);
        for j in (j0..j1).rev() {
            let tail = dot_f64(
                &h[j * k + j + 1..(j + 1) * k],
                &h[j * k + j + 1..(j + 1) * k],
            );
            let d = h[j * k + j] - tail;
            // Not positive (or NaN): not positive definite.
            if d.is_nan() || d <= 0.0 {
                return None;
            }
            let d = d.sqrt();
            h[j * k + j] = d;
            for i in j0..j {
                let t = dot_f64(
                    &h[i * k + j + 1..(i + 1) * k],
                    &h[j * k + j + 1..(j + 1) * k],
                );
                h[i * k + j] = (h[i * k + j] - t) / d;
            }
        }
        let (above, block) = h.split_at_mut(j0 * k);
        let block = &*block;
        above.par_chunks_mut(k).for_each(|row| {
            for j in (j0..j1).rev() {
                let rj = &block[(j - j0) * k..(j - j0 + 1) * k];
                let t = dot_f64(&row[j + 1..], &rj[j + 1..]);
                row[j] = (row[j] - t) / rj[j];
            }
        });
        j1 = j0;
    }
    // U = R^-1 (upper triangular), row by row from U R = I: u[i][l] = (delta_il - sum_{m=i}^{l-1}
    // u[i][m] r[m][l]) / r[l][l], the sums accumulated along rows of R as each u[i][l] is known.
    // Rows in blocks (each row of R read once per block), blocks in parallel.
    let r = &h;
    let mut u = vec![0.0f32; k * k];
    u.par_chunks_mut(ROW_BLOCK * k)
        .enumerate()
        .for_each(|(b, rows)| {
            let i0 = b * ROW_BLOCK;
            let count = rows.len() / k;
            let mut acc = vec![0.0f64; count * k];
            for l in i0..k {
                let rl = &r[l * k + l + 1..(l + 1) * k];
                for t in 0..count.min(l - i0 + 1) {
                    let i = i0 + t;
                    let a = &mut acc[t * k..(t + 1) * k];
                    let v = (if l == i { 1.0 } else { 0.0 } - a[l]) / r[l * k + l];
                    rows[t * k + l] = v as f32;
                    if v != 0.0 {
                        axpy_f64(&mut a[l + 1..], v, rl);
                    }
                }
            }
        });
    Some(u)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tests::lcg;

    /// `U^T U` equals `H^-1`, i.e. `H U^T U = I` (to f32 rounding); 40 inputs are three column
    /// blocks, one of them partial.
    #[test]
    fn the_factor_inverts_the_gram_matrix() {
        let (k, rows) = (40, 100);
        let mut seed = 3u64;
        let x: Vec<f64> = (0..rows * k).map(|_| lcg(&mut seed) as f64).collect();
        let mut h = vec![0.0; k * k];
        for r in 0..rows {
            for i in 0..k {
                for j in 0..k {
                    h[i * k + j] += x[r * k + i] * x[r * k + j];
                }
            }
        }
        let u = inverse_upper_factor(h.clone(), k).unwrap();
        for i in 0..k {
            for j in 0..i {
                assert_eq!(u[i * k + j], 0.0);
            }
        }
        for i in 0..k {
            for j in 0..k {
                // (H U^T U)[i][j]
                let mut s = 0.0;
                for a in 0..k {
                    let mut hinv = 0.0;
                    for l in 0..k {
                        hinv += u[l * k + a] as f64 * u[l * k + j] as f64;
                    }
                    s += h[i * k + a] * hinv;
                }
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-4, "({i},{j}): {s}");
            }
        }
    }

    /// On correlated inputs the rounded weights' output error is well below plain rounding's.
    #[test]
    fn error_feedback_beats_rounding_to_nearest_on_the_data() {
        let (n, k, rows) = (8, 64, 400);
        let mut seed = 11u64;
        // Inputs with shared factors (correlated, as a layer's inputs are).
        let f: Vec<f32> = (0..rows * 4).map(|_| lcg(&mut seed)).collect();
        let mix: Vec<f32> = (0..4 * k).map(|_| lcg(&mut seed)).collect();
        let x: Vec<f32> = (0..rows * k)
            .map(|t| {
                let (r, i) = (t / k, t % k);
                (0..4).map(|m| f[r * 4 + m] * mix[m * k + i]).sum::<f32>() + 0.1 * lcg(&mut seed)
            })
            .collect();
        let w: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed)).collect();
        let scale: Vec<f32> = (0..n)
            .map(|c| {
                w[c * k..(c + 1) * k]
                    .iter()
                    .fold(0.0f32, |m, v| m.max(v.abs()))
                    / 127.0
            })
            .collect();
        let mut gram = vec![0.0f32; k * k];
        for r in 0..rows {
            for i in 0..k {
                for j in 0..k {
                    gram[i * k + j] += x[r * k + i] * x[r * k + j];
                }
            }
        }
        let error = |q: &[i8]| -> f64 {
            let mut e = 0.0;
            for r in 0..rows {
                for c in 0..n {
                    let mut d = 0.0f64;
                    // Input 5 is multiplied elsewhere (exactly).
                    for i in (0..k).filter(|&i| i != 5) {
                        d +=
                            (x[r * k + i] * (w[c * k + i] - q[c * k + i] as f32 * scale[c])) as f64;
                    }
                    e += d * d;
                }
            }
            e
        };
        let nearest: Vec<i8> = (0..n * k)
            .map(|t| (w[t] / scale[t / k]).round().clamp(-127.0, 127.0) as i8)
            .collect();
        let mut work = w.clone();
        let ones = vec![1.0f32; k];
        let q = round(&mut work, (n, k), &scale, &gram, &ones, &[5]).unwrap();
        assert!((0..n).all(|c| q[c * k + 5] == 0), "a skipped input stays 0");
        let skipped_nearest: Vec<i8> = nearest
            .iter()
            .enumerate()
            .map(|(t, &v)| if t % k == 5 { 0 } else { v })
            .collect();
        let (e_gptq, e_rtn) = (error(&q), error(&skipped_nearest));
        assert!(e_gptq < 0.5 * e_rtn, "GPTQ {e_gptq} vs nearest {e_rtn}");
        assert!(round(&mut w.clone(), (n, k), &scale, &gram[1..], &ones, &[]).is_none());
    }
}
