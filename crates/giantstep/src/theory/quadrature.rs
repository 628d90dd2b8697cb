//! Gauss quadrature rules by the Golub–Welsch algorithm (eigenvalues of the Jacobi matrix, from
//! `faer`'s symmetric eigensolver).

use crate::error::Result;
use crate::linalg::symmetric_eigen;

/// Nodes and weights of a one-dimensional quadrature rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Nodes, increasing.
    pub nodes: Vec<f64>,
    /// Weights (summing to the measure's mass).
    pub weights: Vec<f64>,
}

fn golub_welsch(off_diagonal: &[f64], mass: f64) -> Result<Rule> {
    let n = off_diagonal.len() + 1;
    let mut j = vec![0.0; n * n];
    for (k, b) in off_diagonal.iter().enumerate() {
        j[k * n + k + 1] = *b;
        j[(k + 1) * n + k] = *b;
    }
    let (values, vectors) = symmetric_eigen(&j, n)?;
    let mut pairs: Vec<(f64, f64)> = values
        .iter()
        .zip(&vectors)
        .map(|(x, v)| (*x, mass * v[0] * v[0]))
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Symmetrize (the rules below are symmetric about 0) to remove eigensolver rounding.
    let m = pairs.len();
    for i in 0..m / 2 {
        let (a, b) = (pairs[i], pairs[m - 1 - i]);
        let x = 0.5 * (b.0 - a.0);
        let w = 0.5 * (a.1 + b.1);
        pairs[i] = (-x, w);
        pairs[m - 1 - i] = (x, w);
    }
    if m % 2 == 1 {
        pairs[m / 2].0 = 0.0;
    }
    Ok(Rule {
        nodes: pairs.iter().map(|p| p.0).collect(),
        weights: pairs.iter().map(|p| p.1).collect(),
    })
}

/// Gauss–Hermite rule for the standard normal density (probabilists' convention): weights sum to
/// 1 and `Σ w_i f(x_i) = E[f(ξ)]` exactly for polynomials of degree `< 2n`.
///
/// # Errors
/// [`crate::Error::Numerical`] if the eigensolver fails.
pub fn gauss_hermite(n: usize) -> Result<Rule> {
    let off: Vec<f64> = (1..n).map(|k| (k as f64).sqrt()).collect();
    golub_welsch(&off, 1.0)
}

/// The tensor product of the `nodes`-point Gauss–Hermite rule in `r` dimensions: points
/// (row-major `nodes^r × r`, the last coordinate varying fastest) and weights (sum 1).
///
/// # Errors
/// [`crate::Error::Numerical`] if the eigensolver fails.
pub fn tensor_gauss_hermite(nodes: usize, r: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let rule = gauss_hermite(nodes)?;
    let total = nodes.pow(r as u32);
    let mut x = vec![0.0; total * r];
    let mut w = vec![1.0; total];
    for flat in 0..total {
        let mut rem = flat;
        for j in (0..r).rev() {
            let i = rem % nodes;
            rem /= nodes;
            x[flat * r + j] = rule.nodes[i];
            w[flat] *= rule.weights[i];
        }
    }
    Ok((x, w))
}

/// Gauss–Legendre rule on `[-1, 1]` (weights sum to 2).
///
/// # Errors
/// [`crate::Error::Numerical`] if the eigensolver fails.
pub fn gauss_legendre(n: usize) -> Result<Rule> {
    let off: Vec<f64> = (1..n)
        .map(|k| {
            let k = k as f64;
            k / (4.0 * k * k - 1.0).sqrt()
        })
        .collect();
    golub_welsch(&off, 2.0)
}

/// `∫ f(x) φ(x) dx` over the real line for a function that is smooth except at the points
/// `breaks` (e.g. an activation's kink), by composite 8-point Gauss–Legendre on `[-L, L]`,
/// `L = 14 + max |break|`, with panel edges at the breaks. Accurate to ~1e-14 for polynomially
/// bounded, piecewise smooth `f`.
///
/// # Errors
/// [`crate::Error::Numerical`] if the Legendre rule cannot be built.
pub fn gaussian_integral(f: impl Fn(f64) -> f64, breaks: &[f64]) -> Result<f64> {
    let gl = gauss_legendre(8)?;
    let l = 14.0 + breaks.iter().fold(0.0f64, |a, b| a.max(b.abs()));
    let mut edges = vec![-l, l];
    edges.extend(breaks.iter().copied().filter(|b| b.abs() < l));
    edges.sort_by(f64::total_cmp);
    let inv_sqrt_2pi = 1.0 / (2.0 * std::f64::consts::PI).sqrt();
    let mut total = 0.0;
    for seg in edges.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let panels = ((b - a) / 0.05).ceil().max(1.0) as usize;
        let h = (b - a) / panels as f64;
        for k in 0..panels {
            let lo = a + k as f64 * h;
            for (x, w) in gl.nodes.iter().zip(&gl.weights) {
                let t = lo + 0.5 * h * (x + 1.0);
                total += 0.5 * h * w * f(t) * (-0.5 * t * t).exp() * inv_sqrt_2pi;
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hermite_rule_integrates_gaussian_moments() {
        let r = gauss_hermite(10).unwrap();
        let moment = |k: i32| r.nodes.iter().zip(&r.weights).map(|(x, w)| w * x.powi(k)).sum::<f64>();
        assert!((moment(0) - 1.0).abs() < 1e-14);
        assert!(moment(1).abs() < 1e-14);
        assert!((moment(2) - 1.0).abs() < 1e-13);
        assert!((moment(4) - 3.0).abs() < 1e-12);
        assert!((moment(18) - 34_459_425.0).abs() < 1e-5 * 34_459_425.0); // 17!! (degree 18 < 20)
    }

    #[test]
    fn legendre_rule_is_exact_for_polynomials() {
        let r = gauss_legendre(8).unwrap();
        let int = |k: i32| r.nodes.iter().zip(&r.weights).map(|(x, w)| w * x.powi(k)).sum::<f64>();
        assert!((int(0) - 2.0).abs() < 1e-14);
        assert!((int(14) - 2.0 / 15.0).abs() < 1e-14);
    }

    #[test]
    fn gaussian_integral_of_kinked_functions() {
        let relu = gaussian_integral(|x| x.max(0.0), &[0.0]).unwrap();
        assert!((relu - 1.0 / (2.0 * std::f64::consts::PI).sqrt()).abs() < 1e-13);
        let step = gaussian_integral(|x| if x > 0.5 { 1.0 } else { 0.0 }, &[0.5]).unwrap();
        assert!((step - 0.5 * libm::erfc(0.5 / 2f64.sqrt())).abs() < 1e-13);
        let x4 = gaussian_integral(|x| x.powi(4), &[]).unwrap();
        assert!((x4 - 3.0).abs() < 1e-12);
    }
}
