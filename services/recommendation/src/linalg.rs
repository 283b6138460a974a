//! Dense linear algebra the models need and candle lacks: the inverse of a symmetric positive
//! definite matrix (recursive 2x2 block inversion through the Schur complement, so that nearly
//! all the work is candle matrix products), and small Cholesky solves for ALS.

use candle_core::{Result, Tensor};

/// Below this size the inverse is plain Gauss-Jordan in f64.
const BASE: usize = 192;

/// Inverse of a symmetric positive definite `n x n` f32 matrix.
pub fn spd_inverse(a: &Tensor) -> Result<Tensor> {
    let n = a.dim(0)?;
    if n <= BASE {
        let v: Vec<f32> = a.flatten_all()?.to_vec1()?;
        let inv = gauss_jordan_inverse(&v.iter().map(|&x| x as f64).collect::<Vec<_>>(), n);
        let inv: Vec<f32> = inv.into_iter().map(|x| x as f32).collect();
        return Tensor::from_vec(inv, (n, n), a.device());
    }
    let h = n / 2;
    let m = n - h;
    let a11 = a.narrow(0, 0, h)?.narrow(1, 0, h)?.contiguous()?;
    let a12 = a.narrow(0, 0, h)?.narrow(1, h, m)?.contiguous()?;
    let a22 = a.narrow(0, h, m)?.narrow(1, h, m)?.contiguous()?;
    let i11 = spd_inverse(&a11)?;
    let x = i11.matmul(&a12)?; // h x m
    let s = (a22 - a12.t()?.matmul(&x)?)?;
    // Keep the Schur complement exactly symmetric.
    let s = ((&s + s.t()?)? * 0.5)?.contiguous()?;
    let si = spd_inverse(&s)?;
    let y = x.matmul(&si)?; // h x m
    let tl = (i11 + y.matmul(&x.t()?)?)?;
    let tr = y.neg()?;
    let top = Tensor::cat(&[&tl, &tr], 1)?;
    let bottom = Tensor::cat(&[&tr.t()?, &si], 1)?;
    Tensor::cat(&[&top, &bottom], 0)?.contiguous()
}

/// Gauss-Jordan inverse of a row-major `n x n` matrix with partial pivoting.
pub fn gauss_jordan_inverse(a: &[f64], n: usize) -> Vec<f64> {
    let mut m = a.to_vec();
    let mut inv = vec![0.0; n * n];
    for i in 0..n {
        inv[i * n + i] = 1.0;
    }
    for c in 0..n {
        let p = (c..n)
            .max_by(|&x, &y| m[x * n + c].abs().total_cmp(&m[y * n + c].abs()))
            .unwrap_or(c);
        if p != c {
            for j in 0..n {
                m.swap(p * n + j, c * n + j);
                inv.swap(p * n + j, c * n + j);
            }
        }
        let d = m[c * n + c];
        let d = if d.abs() < 1e-300 { 1e-300 } else { d };
        for j in 0..n {
            m[c * n + j] /= d;
            inv[c * n + j] /= d;
        }
        for r in 0..n {
            if r != c {
                let f = m[r * n + c];
                if f != 0.0 {
                    for j in 0..n {
                        m[r * n + j] -= f * m[c * n + j];
                        inv[r * n + j] -= f * inv[c * n + j];
                    }
                }
            }
        }
    }
    inv
}

/// Solves `a x = b` for a symmetric positive definite row-major `n x n` matrix (Cholesky);
/// `a` is overwritten.
pub fn cholesky_solve(a: &mut [f64], b: &mut [f64], n: usize) {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        let d = d.max(1e-12).sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn block_inverse_matches_identity() {
        let n = 450;
        // A = M M^T / n + I, symmetric positive definite.
        let m: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919 % 1000) as f32) / 1000.0 - 0.5)
            .collect();
        let m = Tensor::from_vec(m, (n, n), &Device::Cpu).unwrap();
        let a = ((m.matmul(&m.t().unwrap()).unwrap() / n as f64).unwrap()
            + Tensor::eye(n, candle_core::DType::F32, &Device::Cpu).unwrap())
        .unwrap();
        let inv = spd_inverse(&a).unwrap();
        let prod: Vec<f32> = a
            .matmul(&inv)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (prod[i * n + j] - want).abs() < 1e-3,
                    "{i},{j}: {}",
                    prod[i * n + j]
                );
            }
        }
    }

    #[test]
    fn cholesky_solves() {
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&mut a, &mut b, 2);
        // [4 2; 2 3] x = [2 1] -> x = [0.5, 0]
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12);
    }
}
