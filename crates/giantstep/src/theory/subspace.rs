//! The generic-activation subspace recursion of docs/theory.md §2, the leap index and the staircase flag.
//!
//! `U_0 = {0}`; `U_{t+1} = U_t ⊕ span{v ⊥ U_t appearing in a nonzero coefficient
//! E[g*(x) He_α(P_{U_t} x) He_β(P_{U_t⊥} x)], 1 ≤ |β| ≤ ℓ}`. The coefficients are computed in an
//! orthonormal basis adapted to the split (the target is re-expanded in rotated coordinates), and
//! the new directions are the range of the coefficient tensor flattened along one `U⊥` index, so
//! the answer is basis-free: a rotated target gives the rotated subspaces.

use super::hermite::{expand, ExpandOptions, Expansion};
use crate::error::Result;
use crate::linalg::{dot, symmetric_eigen};
use std::collections::HashMap;

/// An orthonormal basis (rows) of a subspace of `R^r`.
pub type Basis = Vec<Vec<f64>>;

/// Completes an orthonormal set of rows to an orthonormal basis of `R^r` (Gram–Schmidt against
/// the canonical vectors).
pub fn complete_basis(basis: &Basis, r: usize) -> Basis {
    let mut q = basis.clone();
    for k in 0..r {
        if q.len() == r {
            break;
        }
        let mut v = vec![0.0; r];
        v[k] = 1.0;
        for _ in 0..2 {
            for b in &q {
                let c = dot(b, &v);
                v.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
        }
        let n = dot(&v, &v).sqrt();
        if n > 1e-8 {
            v.iter_mut().for_each(|x| *x /= n);
            q.push(v);
        }
    }
    q
}

/// Expands `g` in coordinates `y` adapted to `basis` (first `basis.len()` coordinates span it):
/// `h(y) = g(Qᵀ y)` with `Q` the completed basis (rows).
///
/// # Errors
/// As [`expand`].
pub fn expand_rotated(g: &dyn Fn(&[f64]) -> f64, r: usize, q: &Basis, opts: ExpandOptions) -> Result<Expansion> {
    let canonical = q.iter().enumerate().all(|(i, row)| {
        row.iter()
            .enumerate()
            .all(|(j, v)| *v == if i == j { 1.0 } else { 0.0 })
    });
    if canonical {
        return expand(g, r, opts);
    }
    let h = |y: &[f64]| {
        // x = Qᵀ y; a stack buffer for the usual small r, the heap beyond.
        let mut stack = [0.0f64; 32];
        let mut heap = Vec::new();
        let x: &mut [f64] = if r <= stack.len() {
            &mut stack[..r]
        } else {
            heap.resize(r, 0.0);
            &mut heap
        };
        for (yi, row) in y.iter().zip(q) {
            for (xj, qj) in x.iter_mut().zip(row) {
                *xj += yi * qj;
            }
        }
        g(x)
    };
    expand(&h, r, opts)
}

/// Orthonormal basis of the range of the vectors `cols` (each of length `m`), dropping directions
/// whose eigenvalue in `Σ v vᵀ` is below `tol²`.
pub fn range(cols: &[Vec<f64>], m: usize, tol: f64) -> Result<Basis> {
    if m == 0 || cols.is_empty() {
        return Ok(vec![]);
    }
    let mut g = vec![0.0; m * m];
    for c in cols {
        for i in 0..m {
            for j in 0..m {
                g[i * m + j] += c[i] * c[j];
            }
        }
    }
    let (vals, vecs) = symmetric_eigen(&g, m)?;
    Ok(vals
        .iter()
        .zip(vecs)
        .filter(|(v, _)| **v > tol * tol)
        .map(|(_, v)| v)
        .collect())
}

/// One step of the recursion: the new directions `v ⊥ U` for batch exponent `ℓ`, in teacher
/// coordinates.
///
/// # Errors
/// As [`expand`].
pub fn new_directions(g: &dyn Fn(&[f64]) -> f64, r: usize, u: &Basis, ell: u32, opts: ExpandOptions) -> Result<Basis> {
    let k = u.len();
    if k >= r {
        return Ok(vec![]);
    }
    let q = complete_basis(u, r);
    let ex = expand_rotated(g, r, &q, opts)?;
    let m = r - k;
    // Flatten the coefficient tensor along one U⊥ index: column key = (α on U, β − e_j on U⊥).
    let mut columns: HashMap<Vec<u32>, Vec<f64>> = HashMap::new();
    for c in &ex.coefficients {
        let beta = &c.alpha[k..];
        let deg: u32 = beta.iter().sum();
        if deg == 0 || deg > ell || !ex.is_nonzero(c) {
            continue;
        }
        for j in 0..m {
            if beta[j] == 0 {
                continue;
            }
            let mut key = c.alpha.clone();
            key[k + j] -= 1;
            columns.entry(key).or_insert_with(|| vec![0.0; m])[j] = c.c;
        }
    }
    let mut cols: Vec<Vec<f64>> = columns.into_values().collect();
    // Deterministic order (HashMap iteration is not).
    cols.sort_by(|a, b| {
        a.iter()
            .zip(b)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let tol = 10.0 * ex.zero_tol.max(1e-12);
    let dirs = range(&cols, m, tol)?;
    Ok(dirs
        .iter()
        .map(|v| {
            let mut x = vec![0.0; r];
            for (j, vj) in v.iter().enumerate() {
                x.iter_mut().zip(&q[k + j]).for_each(|(a, b)| *a += vj * b);
            }
            x
        })
        .collect())
}

/// `U_1..U_T` of the generic recursion (orthonormal bases in teacher coordinates).
///
/// # Errors
/// As [`expand`].
pub fn generic_subspaces(
    g: &dyn Fn(&[f64]) -> f64,
    r: usize,
    ell: u32,
    steps: usize,
    opts: ExpandOptions,
) -> Result<Vec<Basis>> {
    let mut u: Basis = vec![];
    let mut out = Vec::with_capacity(steps);
    while out.len() < steps {
        let new = new_directions(g, r, &u, ell, opts)?;
        let settled = new.is_empty();
        u.extend(new);
        out.push(u.clone());
        // Nothing new: every later step starts from the same `U` and adds nothing either.
        if settled {
            out.resize(steps, u.clone());
        }
    }
    Ok(out)
}

/// The fixed point of the recursion for batch exponent `ℓ` (at most `r` steps).
///
/// # Errors
/// As [`expand`].
pub fn closure(g: &dyn Fn(&[f64]) -> f64, r: usize, ell: u32, opts: ExpandOptions) -> Result<Basis> {
    let mut u: Basis = vec![];
    for _ in 0..r {
        let new = new_directions(g, r, &u, ell, opts)?;
        if new.is_empty() {
            break;
        }
        u.extend(new);
    }
    Ok(u)
}

/// The leap index: the smallest `ℓ` for which the recursion reaches the whole span the target
/// depends on (0 for a constant target; `None` if no `ℓ ≤ K` does, within the expansion degree).
///
/// # Errors
/// As [`expand`].
pub fn leap_index(g: &dyn Fn(&[f64]) -> f64, r: usize, opts: ExpandOptions) -> Result<Option<u32>> {
    let full = closure(g, r, opts.max_degree, opts)?.len();
    if full == 0 {
        return Ok(Some(0));
    }
    for ell in 1..=opts.max_degree {
        if closure(g, r, ell, opts)?.len() == full {
            return Ok(Some(ell));
        }
    }
    Ok(None)
}

/// Principal angles (degrees, increasing) between two subspaces given by orthonormal rows.
pub fn principal_angles(a: &Basis, b: &Basis) -> Result<Vec<f64>> {
    let (ka, kb) = (a.len(), b.len());
    if ka == 0 || kb == 0 {
        return Ok(vec![]);
    }
    let m: Vec<f64> = a.iter().flat_map(|x| b.iter().map(move |y| dot(x, y))).collect();
    let s = crate::linalg::singular_values(&m, ka, kb)?;
    Ok(s.iter().map(|c| c.clamp(-1.0, 1.0).acos().to_degrees()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::Expr;

    fn dims(expr: &str, ell: u32, steps: usize) -> Vec<usize> {
        let e = Expr::parse(expr).unwrap();
        let r = e.max_var();
        generic_subspaces(&|x| e.eval(x), r, ell, steps, ExpandOptions::default())
            .unwrap()
            .iter()
            .map(|b| b.len())
            .collect()
    }

    #[test]
    fn staircases_and_leaps() {
        assert_eq!(dims("z1 + z1*z2 + z1*z2*z3", 1, 4), vec![1, 2, 3, 3]);
        assert_eq!(dims("z1*z2", 1, 2), vec![0, 0]);
        assert_eq!(dims("z1*z2", 2, 1), vec![2]);
        assert_eq!(dims("z1 + z1*z2*z3", 1, 3), vec![1, 1, 1]);
        // At n = d^2: e1 first (degree 1), then e2, e3 through the coefficient of x1·x2·x3.
        assert_eq!(dims("z1 + z1*z2*z3", 2, 2), vec![1, 3]);
        assert_eq!(dims("he3(z1)", 2, 2), vec![0, 0]);
        assert_eq!(dims("he3(z1)", 3, 1), vec![1]);
    }

    #[test]
    fn leap_indices() {
        let leap = |s: &str| {
            let e = Expr::parse(s).unwrap();
            leap_index(&|x| e.eval(x), e.max_var(), ExpandOptions::default()).unwrap()
        };
        assert_eq!(leap("z1 + z1*z2 + z1*z2*z3"), Some(1));
        assert_eq!(leap("z1*z2"), Some(2));
        assert_eq!(leap("he2(z1)"), Some(2));
        assert_eq!(leap("he3(z1)"), Some(3));
        assert_eq!(leap("z1 + z1*z2*z3"), Some(2));
        assert_eq!(leap("3"), Some(0));
    }

    #[test]
    fn principal_angles_of_planes() {
        let a = vec![vec![1.0, 0.0, 0.0]];
        let s = 0.5f64.sqrt();
        let b = vec![vec![s, s, 0.0]];
        let ang = principal_angles(&a, &b).unwrap();
        assert!((ang[0] - 45.0).abs() < 1e-10);
    }
}
