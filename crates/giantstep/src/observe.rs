//! Observables of docs/model.md §4: overlaps with the teacher, the teacher-space Gram matrix, the mass
//! outside the teacher space, and the geometry of the gradient.

use crate::error::Result;
use crate::linalg::{dot, norm, singular_values, symmetric_eigen};
use serde::{Deserialize, Serialize};

/// How many neurons keep their per-neuron gradient cosines.
pub const GRADIENT_NEURONS: usize = 64;
/// How many singular values of `G` are recorded.
pub const GRADIENT_SINGULAR_VALUES: usize = 4;

/// Overlaps of the first layer with the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlaps {
    /// `mean_i |cos(w_i, w*_k)|` per teacher direction `k`.
    pub mean_abs_cos: Vec<f64>,
    /// `max_i |cos(w_i, w*_k)|` per teacher direction `k`.
    pub max_abs_cos: Vec<f64>,
    /// Eigenvalues (non-increasing) of `S = (1/p) Σ u_i u_iᵀ`, `u_i = W* w_i/|w_i|`.
    pub teacher_gram_eigenvalues: Vec<f64>,
    /// The matching unit eigenvectors in teacher coordinates.
    pub teacher_gram_eigenvectors: Vec<Vec<f64>>,
    /// `1 − tr S`: the mean squared norm of the normalized rows outside the teacher space.
    pub outside_mass: f64,
}

/// Computes [`Overlaps`] of `W` (row-major `p×d`) with `W*` (row-major `r×d`).
///
/// # Errors
/// [`crate::Error::Numerical`] if the `r×r` eigensolver fails.
pub fn overlaps(w: &[f64], p: usize, d: usize, w_star: &[f64], r: usize) -> Result<Overlaps> {
    let mut mean = vec![0.0; r];
    let mut max = vec![0.0f64; r];
    let mut s = vec![0.0; r * r];
    let mut u = vec![0.0; r];
    for i in 0..p {
        let row = &w[i * d..(i + 1) * d];
        let nrm = norm(row);
        let inv = if nrm > 0.0 { 1.0 / nrm } else { 0.0 };
        for k in 0..r {
            u[k] = dot(row, &w_star[k * d..(k + 1) * d]) * inv;
            mean[k] += u[k].abs();
            max[k] = max[k].max(u[k].abs());
        }
        for a in 0..r {
            for b in 0..r {
                s[a * r + b] += u[a] * u[b];
            }
        }
    }
    let pf = p as f64;
    mean.iter_mut().for_each(|v| *v /= pf);
    s.iter_mut().for_each(|v| *v /= pf);
    let trace: f64 = (0..r).map(|k| s[k * r + k]).sum();
    let (values, vectors) = symmetric_eigen(&s, r)?;
    Ok(Overlaps {
        mean_abs_cos: mean,
        max_abs_cos: max,
        teacher_gram_eigenvalues: values,
        teacher_gram_eigenvectors: vectors,
        outside_mass: (1.0 - trace).max(0.0),
    })
}

/// Geometry of one step's gradient `G` (docs/model.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradientGeometry {
    /// Top singular values of `G` (one dominant spike when `n = Θ(d)`).
    pub grad_singular_values: Vec<f64>,
    /// For the first 64 neurons: `cos(G_i, w*_k)` per teacher direction.
    pub grad_cos: Vec<Vec<f64>>,
    /// For the first 64 neurons: `cos(G_i⊥, w*_k)`, `G_i⊥ = G_i − <G_i, ŵ_i> ŵ_i`.
    pub grad_perp_cos: Vec<Vec<f64>>,
}

/// Computes [`GradientGeometry`] of `G` at the pre-step weights `W`.
///
/// # Errors
/// [`crate::Error::Numerical`] if the SVD fails.
pub fn gradient_geometry(
    g: &[f64],
    w: &[f64],
    p: usize,
    d: usize,
    w_star: &[f64],
    r: usize,
) -> Result<GradientGeometry> {
    let mut sv = singular_values(g, p, d)?;
    sv.truncate(GRADIENT_SINGULAR_VALUES);
    let count = p.min(GRADIENT_NEURONS);
    let mut grad_cos = Vec::with_capacity(count);
    let mut grad_perp_cos = Vec::with_capacity(count);
    let mut perp = vec![0.0; d];
    for i in 0..count {
        let gi = &g[i * d..(i + 1) * d];
        let wi = &w[i * d..(i + 1) * d];
        let wn = norm(wi);
        let c = if wn > 0.0 { dot(gi, wi) / (wn * wn) } else { 0.0 };
        perp.iter_mut()
            .zip(gi.iter().zip(wi))
            .for_each(|(q, (a, b))| *q = a - c * b);
        let cosines = |v: &[f64]| -> Vec<f64> {
            let n = norm(v);
            (0..r)
                .map(|k| {
                    if n > 0.0 {
                        dot(v, &w_star[k * d..(k + 1) * d]) / n
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        grad_cos.push(cosines(gi));
        grad_perp_cos.push(cosines(&perp));
    }
    Ok(GradientGeometry {
        grad_singular_values: sv,
        grad_cos,
        grad_perp_cos,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlaps_of_a_known_layer() {
        // d = 3, r = 2 (canonical e1, e2); rows: e1, (e2+e3)/√2 scaled by 2, e3.
        let s2 = 2f64.sqrt();
        let w = [1.0, 0.0, 0.0, 0.0, 2.0 / s2, 2.0 / s2, 0.0, 0.0, 1.0];
        let ws = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0];
        let o = overlaps(&w, 3, 3, &ws, 2).unwrap();
        assert!((o.mean_abs_cos[0] - 1.0 / 3.0).abs() < 1e-15);
        assert!((o.mean_abs_cos[1] - (1.0 / s2) / 3.0).abs() < 1e-15);
        assert_eq!(o.max_abs_cos[0], 1.0);
        assert!((o.max_abs_cos[1] - 1.0 / s2).abs() < 1e-15);
        // S = diag(1/3, 1/6): outside mass 1 − 1/2.
        assert!((o.teacher_gram_eigenvalues[0] - 1.0 / 3.0).abs() < 1e-15);
        assert!((o.teacher_gram_eigenvalues[1] - 1.0 / 6.0).abs() < 1e-15);
        assert!((o.teacher_gram_eigenvectors[0][0] - 1.0).abs() < 1e-15);
        assert!((o.outside_mass - 0.5).abs() < 1e-15);
    }

    #[test]
    fn gradient_geometry_of_rank_one() {
        // G_i = c_i · e1 (rank one), w_i = e2: perpendicular part is G_i itself.
        let d = 3;
        let g = [2.0, 0.0, 0.0, -1.0, 0.0, 0.0];
        let w = [0.0, 1.0, 0.0, 0.0, 1.0, 0.0];
        let ws = [1.0, 0.0, 0.0];
        let geo = gradient_geometry(&g, &w, 2, d, &ws, 1).unwrap();
        assert!((geo.grad_singular_values[0] - 5f64.sqrt()).abs() < 1e-14);
        assert!(geo.grad_singular_values[1].abs() < 1e-14);
        assert_eq!(geo.grad_cos, vec![vec![1.0], vec![-1.0]]);
        assert_eq!(geo.grad_perp_cos, geo.grad_cos);
    }
}
