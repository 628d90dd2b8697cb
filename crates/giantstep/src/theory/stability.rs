//! Stability of repeated giant steps on the aligned state (docs/stairway.md).
//!
//! A first step with a large batch (`n ≫ d`) moves every neuron along the target's first Hermite
//! direction `u = μ1/|μ1|`: a neuron with second-layer weight `a = α/√p` reaches the teacher
//! overlap `m(α) = γ1 α c1(σ) |μ1|` along `u` and the orthogonal norm `ρ(α) = |1 + γ1 α c2(σ) μ0|`
//! (the `n ≫ d` limit of the one-step closed form). On that state a further residual step with
//! `γ = η/p` acts, in the mean-field limit, on the pair `(m(α), ρ(α))` of every second-layer
//! weight `α`:
//!
//! ```text
//! f(x)  = E_α[ α E_ε σ(m(α) x + ρ(α) ε) ]                       network output along u
//! m(α) ← m(α) + γ α E[(h(x) − f(x)) σ'(m(α) x + ρ(α) ε) x]
//! ρ(α) ← ρ(α) + γ α E[(h(x) − f(x)) σ'(m(α) x + ρ(α) ε) ε]
//! ```
//!
//! with `x = <u, X>`, `ε ~ N(0, 1)` and `h(x) = E[g*(X) | <u, X> = x]`. Its Jacobian is
//! `J = I + γ (S − C)`: `C` couples all neurons through `f` (a Gram matrix of the functions
//! `E_ε σ'(λ) x` and `E_ε σ'(λ) ε`, weighted by `α α'`), `S` is each neuron's own curvature
//! (`E[e σ''(λ) ·]`, computed by Stein's lemma so that ReLU needs no `σ''`). `J` is similar to a
//! symmetric matrix, so its eigenvalues are real. The collective mode of `C` makes the most
//! negative eigenvalue fall like `1 − γ λ_C`: once it passes `−1`, every further step multiplies
//! the deviation (and `|ηG|`) by `|λ_min(J)|` with alternating sign, and the weights blow up. For
//! ReLU with a `±1` second layer `λ_C = 1/4` exactly (whatever `m`, `ρ`), so `λ_min = 1 − γ/4` and
//! the limit is `γ = 8`.

use super::activation::ActivationCoefficients;
use super::hermite::{factorial, Expansion};
use super::quadrature::{gauss_hermite, gauss_legendre};
use crate::activation::Activation;
use crate::error::Result;
use crate::linalg::symmetric_eigen;
use crate::model::SecondLayerInit;
use serde::{Deserialize, Serialize};

/// The stability of steps after the first, at the aligned state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stability {
    /// The direction `u = μ1/|μ1|` the first step aligns the neurons with (teacher coordinates).
    pub direction: Vec<f64>,
    /// `γ1` of the first step.
    pub gamma_first: f64,
    /// `γ` of the later step.
    pub gamma: f64,
    /// Most negative eigenvalue of the step's Jacobian: below −1 the steps diverge, and `|ηG|`
    /// grows by `|lambda_min|` per step.
    pub lambda_min: f64,
    /// Largest eigenvalue (above 1: a slow monotone drift, not the oscillating blow-up).
    pub lambda_max: f64,
    /// Predicted growth of `|ηG|` per step: `max(1, −lambda_min)` (1 = no blow-up).
    pub growth: f64,
    /// Largest `γ` (the same for every step) with `lambda_min >= −1`, if below 200.
    pub stable_gamma_max: Option<f64>,
}

/// Quadrature of the second-layer weights `α = √p a`.
fn second_layer_rule(kind: SecondLayerInit) -> Result<(Vec<f64>, Vec<f64>)> {
    Ok(match kind {
        SecondLayerInit::Hypercube => (vec![-1.0, 1.0], vec![0.5, 0.5]),
        SecondLayerInit::Gaussian => {
            let r = gauss_hermite(24)?;
            (r.nodes, r.weights)
        }
        SecondLayerInit::Uniform => {
            let r = gauss_legendre(24)?;
            (r.nodes, r.weights.iter().map(|w| w / 2.0).collect())
        }
    })
}

/// `h(x) = E[g* | <u, X> = x]` as Hermite coefficients `h_k` (`h = Σ h_k he_k(x)`), from the
/// expansion: `h_k = Σ_{|β| = k} c_β u^β / β!`.
fn conditional_along(ex: &Expansion, u: &[f64]) -> Vec<f64> {
    let mut h = vec![0.0; ex.max_degree as usize + 1];
    for c in &ex.coefficients {
        let k: u32 = c.alpha.iter().sum();
        let ua: f64 = c.alpha.iter().zip(u).map(|(a, x)| x.powi(*a as i32)).product();
        h[k as usize] += c.c * ua / factorial(&c.alpha);
    }
    h
}

fn hermite_sum(h: &[f64], x: f64) -> f64 {
    // he_{k+1} = x he_k − k he_{k−1}
    let (mut prev, mut cur) = (0.0, 1.0);
    let mut s = 0.0;
    for (k, hk) in h.iter().enumerate() {
        s += hk * cur;
        let next = x * cur - k as f64 * prev;
        prev = cur;
        cur = next;
    }
    s
}

/// The model of the aligned state: target along `u`, activation, second-layer quadrature.
pub struct AlignedState {
    h: Vec<f64>,
    act: Activation,
    c1_mu1: f64,
    c2_mu0: f64,
    alphas: Vec<f64>,
    pis: Vec<f64>,
    x: (Vec<f64>, Vec<f64>),
    eps: (Vec<f64>, Vec<f64>),
    /// `u`.
    pub direction: Vec<f64>,
}

impl AlignedState {
    /// The aligned state of a target (its expansion) for an activation and a second layer; `None`
    /// when `μ1 = 0` (the first step aligns nothing).
    ///
    /// # Errors
    /// Quadrature failures.
    pub fn new(
        ex: &Expansion,
        act: Activation,
        coefs: &ActivationCoefficients,
        second: SecondLayerInit,
    ) -> Result<Option<AlignedState>> {
        let mu1 = ex.mu1();
        let norm = mu1.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm < 1e-9 {
            return Ok(None);
        }
        let u: Vec<f64> = mu1.iter().map(|v| v / norm).collect();
        let c = |k: usize| coefs.c.get(k).copied().unwrap_or(0.0);
        let (alphas, pis) = second_layer_rule(second)?;
        let x = gauss_hermite(96)?;
        let e = gauss_hermite(64)?;
        Ok(Some(AlignedState {
            h: conditional_along(ex, &u),
            act,
            c1_mu1: c(1) * norm,
            c2_mu0: c(2) * ex.mean(),
            alphas,
            pis,
            x: (x.nodes, x.weights),
            eps: (e.nodes, e.weights),
            direction: u,
        }))
    }

    /// Eigenvalues (min, max) of the Jacobian of a step with `gamma` at the state reached by a
    /// first step with `gamma_first`.
    ///
    /// # Errors
    /// Eigensolver failure.
    pub fn eigen_range(&self, gamma_first: f64, gamma: f64) -> Result<(f64, f64)> {
        let k = self.alphas.len();
        let m: Vec<f64> = self.alphas.iter().map(|a| gamma_first * a * self.c1_mu1).collect();
        let rho: Vec<f64> = self
            .alphas
            .iter()
            .map(|a| (1.0 + gamma_first * a * self.c2_mu0).abs().max(1e-6))
            .collect();
        let (xs, xw) = &self.x;
        let (es, ew) = &self.eps;
        let nx = xs.len();
        // Per neuron class and x node: E_ε σ, E_ε σ' x, E_ε σ' ε, and the Stein forms of σ''.
        let mut fx = vec![0.0; nx];
        let mut p = vec![vec![0.0; nx]; k];
        let mut q = vec![vec![0.0; nx]; k];
        let mut s0 = vec![vec![0.0; nx]; k];
        let mut s1 = vec![vec![0.0; nx]; k];
        let mut s2 = vec![vec![0.0; nx]; k];
        for a in 0..k {
            for (i, &x) in xs.iter().enumerate() {
                let (mut ef, mut e1, mut ee, mut e2, mut e3) = (0.0, 0.0, 0.0, 0.0, 0.0);
                for (&e, &w) in es.iter().zip(ew) {
                    let (f, df) = self.act.f_df(m[a] * x + rho[a] * e);
                    ef += w * f;
                    e1 += w * df;
                    ee += w * df * e;
                    e2 += w * df * (e * e - 1.0);
                    e3 += w * df * (e * e * e - 2.0 * e);
                }
                fx[i] += self.pis[a] * self.alphas[a] * ef;
                p[a][i] = e1 * x;
                q[a][i] = ee;
                s0[a][i] = ee / rho[a];
                s1[a][i] = e2 / rho[a];
                s2[a][i] = e3 / rho[a];
            }
        }
        let resid: Vec<f64> = xs.iter().zip(&fx).map(|(&x, f)| hermite_sum(&self.h, x) - f).collect();
        let ex = |f: &dyn Fn(usize) -> f64| -> f64 { (0..nx).map(|i| xw[i] * f(i)).sum() };
        // Symmetrized Jacobian: index a for m(α_a), k + a for ρ(α_a).
        let n = 2 * k;
        let mut j = vec![0.0; n * n];
        let fun = |a: usize, which: usize| -> &Vec<f64> {
            if which == 0 {
                &p[a]
            } else {
                &q[a]
            }
        };
        for a in 0..k {
            for b in 0..k {
                let scale = -gamma * self.alphas[a] * self.alphas[b] * (self.pis[a] * self.pis[b]).sqrt();
                for wa in 0..2 {
                    for wb in 0..2 {
                        let (fa, fb) = (fun(a, wa), fun(b, wb));
                        let g = ex(&|i| fa[i] * fb[i]);
                        j[(wa * k + a) * n + wb * k + b] += scale * g;
                    }
                }
            }
            let ga = gamma * self.alphas[a];
            let mm = ga * ex(&|i| resid[i] * xs[i] * xs[i] * s0[a][i]);
            let mr = ga * ex(&|i| resid[i] * xs[i] * s1[a][i]);
            let rr = ga * ex(&|i| resid[i] * s2[a][i]);
            j[a * n + a] += 1.0 + mm;
            j[a * n + k + a] += mr;
            j[(k + a) * n + a] += mr;
            j[(k + a) * n + k + a] += 1.0 + rr;
        }
        let (values, _) = symmetric_eigen(&j, n)?;
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        Ok((min, max))
    }

    /// The largest `γ` (used at every step, the first included) for which a later step is
    /// stable (`λ_min(J) ≥ −1`), by a geometric scan (ratio 1.15 from 0.25) refined by bisection
    /// to a relative 1e-6; `None` if stable up to 200.
    ///
    /// # Errors
    /// Eigensolver failure.
    pub fn stable_gamma_max(&self) -> Result<Option<f64>> {
        let stable = |g: f64| -> Result<bool> { Ok(self.eigen_range(g, g)?.0 >= -1.0) };
        let mut lo = 0.0;
        let mut g = 0.25;
        while g <= 200.0 {
            if !stable(g)? {
                let mut hi = g;
                while hi - lo > 1e-6 * hi {
                    let mid = 0.5 * (lo + hi);
                    if stable(mid)? {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                return Ok(Some(lo));
            }
            lo = g;
            g *= 1.15;
        }
        Ok(None)
    }

    /// The full report for a first step with `gamma_first` and later steps with `gamma`.
    ///
    /// # Errors
    /// Eigensolver failure.
    pub fn report(&self, gamma_first: f64, gamma: f64) -> Result<Stability> {
        self.report_with_limit(gamma_first, gamma, self.stable_gamma_max()?)
    }

    /// [`AlignedState::report`] with a limit computed before.
    ///
    /// # Errors
    /// Eigensolver failure.
    pub fn report_with_limit(&self, gamma_first: f64, gamma: f64, limit: Option<f64>) -> Result<Stability> {
        let (lambda_min, lambda_max) = self.eigen_range(gamma_first, gamma)?;
        Ok(Stability {
            direction: self.direction.clone(),
            gamma_first,
            gamma,
            lambda_min,
            lambda_max,
            growth: (-lambda_min).max(1.0),
            stable_gamma_max: limit,
        })
    }
}
