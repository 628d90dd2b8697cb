//! Dense linear algebra: a safe single-threaded GEMM wrapper over the `gemm` crate for the hot
//! products, and small factorizations (Cholesky, symmetric eigenproblem, singular values) from
//! `faer`.
//!
//! All matrices here are row-major slices. Parallelism is explicit at the caller: each worker runs
//! one single-threaded GEMM on its chunk of the batch (the measured fastest way on 2 cores; see
//! README "Performance").

use crate::error::{Error, Result};
use faer::{Mat, Side};

/// `C (m×n) = Aᵀ? · B?` with row-major storage and optional transposes:
/// `C = op(A) · op(B)` where `op(A)` is `m×k` and `op(B)` is `k×n`.
///
/// `a` holds `A` row-major: if `trans_a`, `A` is stored `k×m`, else `m×k`. Likewise `b`.
/// With `accumulate`, `C += op(A)·op(B)`, else `C = op(A)·op(B)`.
///
/// # Panics
/// If a slice is shorter than its shape requires.
#[allow(clippy::too_many_arguments)]
#[track_caller]
pub fn matmul(
    c: &mut [f64],
    m: usize,
    n: usize,
    k: usize,
    a: &[f64],
    trans_a: bool,
    b: &[f64],
    trans_b: bool,
    accumulate: bool,
) {
    assert!(c.len() >= m * n, "matmul: c has {} < {}", c.len(), m * n);
    assert!(a.len() >= m * k, "matmul: a has {} < {}", a.len(), m * k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}", b.len(), k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // (row stride, column stride) of op(A) (m×k) and op(B) (k×n).
    let (a_rs, a_cs) = if trans_a { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if trans_b { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the asserts above guarantee every index the strides can reach is in bounds, and
    // `c` does not alias `a` or `b` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Solves `A x = b` for a symmetric positive definite `A` (row-major `n×n`) by Cholesky.
///
/// # Errors
/// `None` if `A` is not numerically positive definite.
pub fn cholesky_solve(a: &[f64], n: usize, b: &[f64]) -> Option<Vec<f64>> {
    let m = Mat::<f64>::from_fn(n, n, |i, j| a[i * n + j]);
    let llt = m.llt(Side::Lower).ok()?;
    let rhs = Mat::<f64>::from_fn(n, 1, |i, _| b[i]);
    use faer::linalg::solvers::Solve;
    let x = llt.solve(&rhs);
    Some((0..n).map(|i| x[(i, 0)]).collect())
}

/// Eigen-decomposition of a symmetric `n×n` matrix (row-major): eigenvalues in non-increasing
/// order and the matching unit eigenvectors (`vectors[j]` belongs to `values[j]`), each signed so
/// that its largest-magnitude component is positive (a deterministic convention).
///
/// # Errors
/// [`Error::Numerical`] if the solver does not converge.
pub fn symmetric_eigen(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    if n == 0 {
        return Ok((vec![], vec![]));
    }
    let m = Mat::<f64>::from_fn(n, n, |i, j| 0.5 * (a[i * n + j] + a[j * n + i]));
    let evd = m
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| Error::Numerical(format!("symmetric eigensolver failed: {e:?}")))?;
    let s = evd.S();
    let u = evd.U();
    let mut values = Vec::with_capacity(n);
    let mut vectors = Vec::with_capacity(n);
    for j in (0..n).rev() {
        values.push(s[j]);
        let mut v: Vec<f64> = (0..n).map(|i| u[(i, j)]).collect();
        let big = v
            .iter()
            .cloned()
            .fold(0.0f64, |acc, x| if x.abs() > acc.abs() { x } else { acc });
        if big < 0.0 {
            v.iter_mut().for_each(|x| *x = -*x);
        }
        vectors.push(v);
    }
    Ok((values, vectors))
}

/// Singular values (non-increasing) of a row-major `m×n` matrix.
///
/// # Errors
/// [`Error::Numerical`] if the SVD does not converge.
pub fn singular_values(a: &[f64], m: usize, n: usize) -> Result<Vec<f64>> {
    if m == 0 || n == 0 {
        return Ok(vec![]);
    }
    let mat = Mat::<f64>::from_fn(m, n, |i, j| a[i * n + j]);
    mat.singular_values()
        .map_err(|e| Error::Numerical(format!("singular value decomposition failed: {e:?}")))
}

/// Dot product.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Euclidean norm.
#[inline]
pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Orthonormalizes the rows of a row-major `r×d` matrix in place by modified Gram–Schmidt with one
/// re-orthogonalization pass (equal to the Q factor of a QR with positive diagonal).
///
/// # Errors
/// [`Error::Numerical`] if the rows are linearly dependent.
pub fn orthonormalize_rows(a: &mut [f64], r: usize, d: usize) -> Result<()> {
    for k in 0..r {
        for _pass in 0..2 {
            for j in 0..k {
                let (done, rest) = a.split_at_mut(k * d);
                let qj = &done[j * d..(j + 1) * d];
                let row = &mut rest[..d];
                let c = dot(qj, row);
                row.iter_mut().zip(qj).for_each(|(x, q)| *x -= c * q);
            }
        }
        let row = &mut a[k * d..(k + 1) * d];
        let nrm = norm(row);
        if nrm.is_nan() || nrm <= 1e-12 {
            return Err(Error::Numerical(format!(
                "teacher rows are linearly dependent at row {}",
                k + 1
            )));
        }
        row.iter_mut().for_each(|x| *x /= nrm);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn naive(m: usize, n: usize, k: usize, a: &[f64], ta: bool, b: &[f64], tb: bool) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for l in 0..k {
                    let x = if ta { a[l * m + i] } else { a[i * k + l] };
                    let y = if tb { b[j * k + l] } else { b[l * n + j] };
                    s += x * y;
                }
                c[i * n + j] = s;
            }
        }
        c
    }

    #[test]
    fn matmul_matches_naive_across_block_boundaries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        for &(m, n, k) in &[(1, 1, 1), (15, 16, 17), (127, 129, 128), (33, 7, 65), (3, 200, 1)] {
            for &ta in &[false, true] {
                for &tb in &[false, true] {
                    let a: Vec<f64> = (0..m * k).map(|_| rng.random::<f64>() - 0.5).collect();
                    let b: Vec<f64> = (0..k * n).map(|_| rng.random::<f64>() - 0.5).collect();
                    let want = naive(m, n, k, &a, ta, &b, tb);
                    let mut c = vec![1.0; m * n];
                    matmul(&mut c, m, n, k, &a, ta, &b, tb, false);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-12 * (k as f64), "{m} {n} {k} {ta} {tb}");
                    }
                    matmul(&mut c, m, n, k, &a, ta, &b, tb, true);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 2.0 * y).abs() < 1e-12 * (k as f64));
                    }
                }
            }
        }
    }

    #[test]
    fn cholesky_solves_spd_system() {
        let a = [4.0, 1.0, 0.5, 1.0, 3.0, 0.2, 0.5, 0.2, 2.0];
        let x_true = [1.0, -2.0, 0.5];
        let b: Vec<f64> = (0..3).map(|i| (0..3).map(|j| a[i * 3 + j] * x_true[j]).sum()).collect();
        let x = cholesky_solve(&a, 3, &b).unwrap();
        for i in 0..3 {
            assert!((x[i] - x_true[i]).abs() < 1e-14);
        }
        assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0]).is_none());
    }

    #[test]
    fn eigen_of_known_matrix() {
        // [[2,1],[1,2]]: eigenvalues 3 (1,1)/√2 and 1 (1,-1)/√2.
        let (vals, vecs) = symmetric_eigen(&[2.0, 1.0, 1.0, 2.0], 2).unwrap();
        assert!((vals[0] - 3.0).abs() < 1e-14 && (vals[1] - 1.0).abs() < 1e-14);
        assert!((vecs[0][0] - vecs[0][1]).abs() < 1e-14 && vecs[0][0] > 0.0);
        assert!((vecs[1][0] + vecs[1][1]).abs() < 1e-14);
    }

    #[test]
    fn singular_values_of_rank_one() {
        let u = [1.0, 2.0, 2.0];
        let v = [0.6, 0.8];
        let a: Vec<f64> = (0..3).flat_map(|i| (0..2).map(move |j| u[i] * v[j])).collect();
        let s = singular_values(&a, 3, 2).unwrap();
        assert!((s[0] - 3.0).abs() < 1e-13 && s[1].abs() < 1e-13);
    }

    #[test]
    fn gram_schmidt_gives_orthonormal_rows() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let (r, d) = (4, 9);
        let mut a: Vec<f64> = (0..r * d).map(|_| rng.random::<f64>() - 0.5).collect();
        orthonormalize_rows(&mut a, r, d).unwrap();
        for i in 0..r {
            for j in 0..r {
                let g = dot(&a[i * d..(i + 1) * d], &a[j * d..(j + 1) * d]);
                assert!((g - if i == j { 1.0 } else { 0.0 }).abs() < 1e-14);
            }
        }
        let mut dep = vec![1.0, 2.0, 2.0, 4.0];
        assert!(orthonormalize_rows(&mut dep, 2, 2).is_err());
    }
}
