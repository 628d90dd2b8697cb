//! Dense linear algebra: a safe single-threaded GEMM wrapper over the `gemm` crate for the hot
//! products, and small factorizations (Cholesky, symmetric eigenproblem, singular values) from
//! `faer`.
//!
//! All matrices here are row-major slices. Parallelism is explicit at the caller: each worker runs
//! one single-threaded GEMM on its chunk of the batch (the measured fastest way on 2 cores; see
//! README "Performance").

use crate::error::{Error, Result};
use faer::{Mat, Side};

/// Floating-point types of the hot loops (`f64`, and `f32` with `precision = "f32"`).
pub trait Real: Copy + Default + Send + Sync + PartialEq + std::fmt::Debug + 'static {
    /// Conversion from `f64` (rounding for `f32`).
    fn from_f64(x: f64) -> Self;
    /// Exact conversion to `f64`.
    fn to_f64(self) -> f64;
}

impl Real for f64 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

impl Real for f32 {
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
}

/// A strided view of a matrix for [`matmul_strided`]: element `(i, j)` is at
/// `data[offset + i·row_stride + j·col_stride]`.
#[derive(Debug, Clone, Copy)]
pub struct View<'a, T> {
    /// The storage.
    pub data: &'a [T],
    /// Offset of element (0, 0).
    pub offset: usize,
    /// Stride between rows.
    pub row_stride: usize,
    /// Stride between columns.
    pub col_stride: usize,
}

impl<'a, T> View<'a, T> {
    /// Row-major `rows×cols` storage, optionally read transposed.
    pub fn row_major(data: &'a [T], cols: usize, transposed: bool) -> Self {
        if transposed {
            View {
                data,
                offset: 0,
                row_stride: 1,
                col_stride: cols,
            }
        } else {
            View {
                data,
                offset: 0,
                row_stride: cols,
                col_stride: 1,
            }
        }
    }

    fn last_index(&self, rows: usize, cols: usize) -> usize {
        self.offset + (rows - 1) * self.row_stride + (cols - 1) * self.col_stride
    }
}

/// Nanoseconds spent inside GEMM calls, summed over threads (for `giantstep bench`'s non-GEMM
/// share; two clock reads per call, a few per chunk).
static GEMM_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds spent inside GEMM calls so far by all threads of this process together.
pub fn gemm_seconds() -> f64 {
    GEMM_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64 * 1e-9
}

/// The instruction set of the GEMM kernels on this machine (the `gemm` crate picks its kernel at
/// run time): `"AVX-512"`, `"AVX2+FMA"` or `"baseline"`.
pub fn gemm_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "AVX2+FMA";
        }
    }
    "baseline"
}

/// Where [`matmul_strided`] writes `C`: element `(i, j)` at `data[offset + i·row_stride + j]`.
pub struct OutView<'a, T> {
    /// The storage.
    pub data: &'a mut [T],
    /// Index of `C[0, 0]`.
    pub offset: usize,
    /// Distance between rows.
    pub row_stride: usize,
}

/// `C = A·B` (or `C += A·B` with `accumulate`) for strided views, `[m, n, k]` the shape: `A` is
/// `m×k`, `B` is `k×n`, `C` is `m×n`. One single-threaded GEMM of the `gemm` crate.
///
/// # Panics
/// If a view or `c` is too short for its shape.
// The one unsafe call of the crate: gemm's raw-pointer interface, bounds checked below.
#[allow(unsafe_code)]
#[track_caller]
pub fn matmul_strided<T: Real>(
    out: OutView<'_, T>,
    [m, n, k]: [usize; 3],
    a: View<'_, T>,
    b: View<'_, T>,
    accumulate: bool,
) {
    let OutView {
        data: c,
        offset: c_offset,
        row_stride: c_row_stride,
    } = out;
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() > c_offset + (m - 1) * c_row_stride + (n - 1),
        "matmul: c too short"
    );
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                c[c_offset + i * c_row_stride..c_offset + i * c_row_stride + n].fill(T::default());
            }
        }
        return;
    }
    assert!(a.data.len() > a.last_index(m, k), "matmul: a too short");
    assert!(b.data.len() > b.last_index(k, n), "matmul: b too short");
    let started = std::time::Instant::now();
    // SAFETY: the asserts above bound every index the strides reach; `c` is a distinct mutable
    // borrow, so it does not alias `a` or `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr().add(c_offset),
            1,
            c_row_stride as isize,
            accumulate,
            a.data.as_ptr().add(a.offset),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr().add(b.offset),
            b.col_stride as isize,
            b.row_stride as isize,
            T::from_f64(1.0),
            T::from_f64(1.0),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    GEMM_NANOS.fetch_add(
        started.elapsed().as_nanos() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

/// An operand of [`matmul`]: a row-major matrix used as stored or transposed.
#[derive(Clone, Copy)]
pub enum Op<'a, T> {
    /// `A` as stored.
    Plain(&'a [T]),
    /// `Aᵀ`: the slice holds the transpose.
    Transposed(&'a [T]),
}

/// `C (m×n) = op(A)·op(B)` with row-major storage, `[m, n, k]` the shape: `Op::Plain(a)` holds
/// `A` as `m×k`, `Op::Transposed(a)` as `k×m` (likewise `B`, `k×n`). With `accumulate`,
/// `C += ...`.
///
/// # Panics
/// If a slice is shorter than its shape requires.
#[track_caller]
pub fn matmul<T: Real>(c: &mut [T], [m, n, k]: [usize; 3], a: Op<'_, T>, b: Op<'_, T>, accumulate: bool) {
    let (a, trans_a) = match a {
        Op::Plain(a) => (a, false),
        Op::Transposed(a) => (a, true),
    };
    let (b, trans_b) = match b {
        Op::Plain(b) => (b, false),
        Op::Transposed(b) => (b, true),
    };
    assert!(c.len() >= m * n, "matmul: c has {} < {}", c.len(), m * n);
    assert!(a.len() >= m * k, "matmul: a has {} < {}", a.len(), m * k);
    assert!(b.len() >= k * n, "matmul: b has {} < {}", b.len(), k * n);
    let av = View::row_major(a, if trans_a { m } else { k }, trans_a);
    let bv = View::row_major(b, if trans_b { k } else { n }, trans_b);
    let out = OutView {
        data: c,
        offset: 0,
        row_stride: n,
    };
    matmul_strided(out, [m, n, k], av, bv, accumulate);
}

/// Lower triangle (column panels of `block`, diagonal blocks whole) of `XᵀX` for a row-major `m×p`
/// matrix `X`, written to the row-major `p×p` matrix `c` (the strict upper triangle beyond the
/// diagonal blocks is left untouched). About half the flops of the full product; mirror with
/// [`mirror_lower`] after summing.
pub fn gram_lower<T: Real>(c: &mut [T], x: &[T], m: usize, p: usize, block: usize) {
    // Column panels: for the columns `start..start + block`, the rows `start..p` in one GEMM
    // (tall and thin, which the kernels run faster than short block rows).
    let block = block.max(1);
    let mut start = 0;
    while start < p {
        let cols = block.min(p - start);
        let rows = p - start;
        let a = View {
            data: x,
            offset: start,
            row_stride: 1,
            col_stride: p,
        }; // (Xᵀ)[start.., :]
        let b = View {
            data: x,
            offset: start,
            row_stride: p,
            col_stride: 1,
        }; // X[:, start..start + cols]
        let out = OutView {
            data: &mut *c,
            offset: start * p + start,
            row_stride: p,
        };
        matmul_strided(out, [rows, cols, m], a, b, false);
        start += cols;
    }
}

/// Copies the lower triangle of a row-major `p×p` matrix onto its upper triangle.
pub fn mirror_lower(c: &mut [f64], p: usize) {
    for i in 0..p {
        for j in i + 1..p {
            c[i * p + j] = c[j * p + i];
        }
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

    fn op(x: &[f64], transposed: bool) -> Op<'_, f64> {
        if transposed {
            Op::Transposed(x)
        } else {
            Op::Plain(x)
        }
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
                    matmul(&mut c, [m, n, k], op(&a, ta), op(&b, tb), false);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - y).abs() < 1e-12 * (k as f64), "{m} {n} {k} {ta} {tb}");
                    }
                    matmul(&mut c, [m, n, k], op(&a, ta), op(&b, tb), true);
                    for (x, y) in c.iter().zip(&want) {
                        assert!((x - 2.0 * y).abs() < 1e-12 * (k as f64));
                    }
                }
            }
        }
    }

    #[test]
    fn gram_lower_matches_full_product() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for &(m, p, block) in &[(7, 5, 2), (33, 17, 16), (65, 129, 128), (10, 3, 8)] {
            let x: Vec<f64> = (0..m * p).map(|_| rng.random::<f64>() - 0.5).collect();
            let full = naive(p, p, m, &x, true, &x, false);
            let mut c = vec![0.0; p * p];
            gram_lower(&mut c, &x, m, p, block);
            mirror_lower(&mut c, p);
            for (a, b) in c.iter().zip(&full) {
                assert!((a - b).abs() < 1e-12 * m as f64);
            }
            let xf: Vec<f32> = x.iter().map(|v| *v as f32).collect();
            let mut cf = vec![0f32; p * p];
            gram_lower(&mut cf, &xf, m, p, block);
            for i in 0..p {
                for j in 0..=i {
                    assert!((cf[i * p + j] as f64 - full[i * p + j]).abs() < 1e-5 * m as f64);
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
