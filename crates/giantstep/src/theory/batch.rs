//! One step at any batch size `n = d^κ` (docs/theory.md §2, "One step at n = d^κ").
//!
//! At initialization a neuron's teacher overlap is `m = κ_i/√d`, `κ_i ~ N(0, I_r)`. Expanding
//! `σ'` in Hermite polynomials, the population gradient's teacher part is
//! `Σ_k c_k(σ) d^{-(k−1)/2} ∇P_k(κ_i)`, where `P_k(x) = Σ_{|α|=k} c_α x^α/α!` is the degree-`k`
//! part of `g*` (so `∇P_1 = μ1`, `∇P_2(x) = Hx`). The empirical gradient adds noise of norm
//! `sqrt(d E[y²] V / n)` per neuron. After one step with `γ = η/p` the normalized row's teacher
//! part is `t/|w|` with
//!
//! `t(κ) = γ Σ_k d^{-(k−1)/2} c_k ∇P_k(κ)`,
//! `|w|² = R_s(κ)² + |t(κ)|² + γ² E[y²] V d/n`, `R_s(κ) = 1 + s γ Σ_j d^{-j/2} c_{j+2} P_j(κ)`
//!
//! (`R` is the radial rescaling by `E[g* σ'']`, `s = sign(a_i)`), so the mean `|cos|` with a
//! direction `v` is `E_{κ,s} |<t(κ), v>| / |w|`. At `n = αd` this is the closed form of §3 as
//! `d → ∞`, at `n = βd²` with `μ1 = 0` the `βd²` form. At `n = d^κ` the degree-`k` term carries
//! the factor `γ d^{-(k−1)/2} ~ sqrt(n/d^k)`: degrees `k > κ` vanish, and among `k ≤ κ` the
//! lowest degree whose `c_k(σ)` is nonzero dominates by `d^{(k'−k)/2}`. A degree-`ℓ` part needs
//! `n = d^ℓ` **and** `c_ℓ(σ) ≠ 0`.

use super::activation::{ActivationCoefficients, ZERO};
use super::hermite::{factorial, Expansion};
use super::subspace::{range, Basis};
use super::SubspaceStep;
use crate::data::{fill_normal, StreamKey, TheoryStream};
use crate::error::Result;
use crate::linalg::dot;
use crate::model::Preprocess;
use serde::{Deserialize, Serialize};

/// A finite batch: the dimension, the batch size and `γ = η/p` of the one-step closed form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FiniteBatch {
    /// Input dimension `d`.
    pub d: f64,
    /// Batch size `n`.
    pub n: f64,
    /// `γ = η/p`.
    pub gamma: f64,
}

/// Label moments of the (preprocessed) target that set the gradient noise: `E[ỹ²]`, and
/// `E[ỹ² x_j²]` per teacher direction (the noise is larger along directions the labels depend
/// on: for `he3(x)`, seven times).
#[derive(Debug, Clone, PartialEq)]
pub struct LabelMoments {
    /// `E[ỹ²]`.
    pub y2: f64,
    /// `E[ỹ² x_j²]`, `j = 1..r`.
    pub y2_x2: Vec<f64>,
}

/// One step at `n = d^κ`: what it learns as `d → ∞`, and the mean `|cos|` at a finite `(n, d)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneStepAtKappa {
    /// Batch exponent `κ`.
    pub kappa: f64,
    /// `d` of the finite-size prediction.
    pub d: f64,
    /// `n` of the finite-size prediction.
    pub n: f64,
    /// `γ = η/p` of the finite-size prediction.
    pub gamma: f64,
    /// The degree that dominates the first step as `d → ∞`: the lowest `k ≤ κ` with `c_k(σ) ≠ 0`
    /// and a nonzero degree-`k` part of the (preprocessed) target; `None` when one step learns
    /// nothing.
    pub dominant_degree: Option<u32>,
    /// The smallest batch exponent at which one step learns anything with this activation: the
    /// lowest degree `k` with `c_k(σ) ≠ 0` and a nonzero degree-`k` part (`None`: never, up to
    /// the expansion's degree).
    pub effective_exponent: Option<u32>,
    /// The subspace one step learns as `d → ∞`: the range of `∇P_k` for the dominant degree.
    pub subspace: SubspaceStep,
    /// Degrees `k ≤ κ` whose part the activation cannot see (`c_k(σ) = 0`), as sentences.
    pub blocked: Vec<String>,
    /// Degrees `k ≤ κ` that the activation sees but a lower degree swamps, as sentences.
    pub suppressed: Vec<String>,
    /// Predicted mean `|cos|` with each teacher direction at the finite `(n, d, γ)`.
    pub mean_abs_cos: Vec<f64>,
}

/// The degree-`k` parts of the target as gradients: for each degree, the terms
/// `(j, coefficient, exponents)` of `∂_j P_k(x) = Σ coefficient · x^exponents`.
struct Parts {
    r: usize,
    /// `grads[k]`: the terms of `∇P_k`.
    grads: Vec<Vec<(usize, f64, Vec<u32>)>>,
    /// `values[k]`: the terms `(coefficient, exponents)` of `P_k`.
    values: Vec<Vec<(f64, Vec<u32>)>>,
}

impl Parts {
    fn new(ex: &Expansion, pre: Preprocess) -> Parts {
        let r = ex.r;
        let kmax = ex.max_degree as usize;
        let mut grads = vec![Vec::new(); kmax + 1];
        let mut values = vec![Vec::new(); kmax + 1];
        for c in ex.nonzero() {
            let k: u32 = c.alpha.iter().sum();
            let removed = (k == 0 && pre != Preprocess::None) || (k == 1 && pre == Preprocess::Linear);
            if removed {
                continue;
            }
            let coef = c.c / factorial(&c.alpha);
            values[k as usize].push((coef, c.alpha.clone()));
            for j in 0..r {
                if c.alpha[j] > 0 {
                    let mut e = c.alpha.clone();
                    e[j] -= 1;
                    grads[k as usize].push((j, coef * c.alpha[j] as f64, e));
                }
            }
        }
        Parts { r, grads, values }
    }

    fn has(&self, k: u32) -> bool {
        self.grads.get(k as usize).is_some_and(|g| !g.is_empty())
    }

    /// `⌊κ⌋`, capped at the expansion's degree (`log n / log d` of `n = d^3` can come out as
    /// 2.9999999999999996).
    fn top_degree(kappa: f64, kmax: u32) -> u32 {
        ((kappa + 1e-9).floor().max(0.0) as u32).min(kmax)
    }

    /// The degree that dominates one step at `n = d^κ`: the lowest `k ≤ κ` with a nonzero part
    /// and `c_k(σ) ≠ 0`.
    fn dominant(&self, act: &ActivationCoefficients, kappa: f64, kmax: u32) -> Option<u32> {
        (1..=Parts::top_degree(kappa, kmax))
            .find(|&k| self.has(k) && act.c.get(k as usize).is_some_and(|c| c.abs() >= ZERO))
    }

    fn monomial(x: &[f64], e: &[u32]) -> f64 {
        x.iter().zip(e).map(|(v, &p)| v.powi(p as i32)).product()
    }

    /// `∇P_k(x)` into `out`.
    fn grad(&self, k: usize, x: &[f64], out: &mut [f64]) {
        out.iter_mut().for_each(|v| *v = 0.0);
        for (j, c, e) in &self.grads[k] {
            out[*j] += c * Parts::monomial(x, e);
        }
    }

    /// `P_k(x)`.
    fn value(&self, k: usize, x: &[f64]) -> f64 {
        self.values[k].iter().map(|(c, e)| c * Parts::monomial(x, e)).sum()
    }

    /// An orthonormal basis of the range of `∇P_k` (from `∇P_k` at seeded Gaussian points).
    fn range_of(&self, k: u32) -> Result<Basis> {
        let key = StreamKey::theory(0x7261_6e67, TheoryStream::SubspaceRange);
        let mut x = vec![0.0; self.r];
        let mut cols = Vec::new();
        for i in 0..(8 * self.r).max(16) {
            fill_normal(&mut key.rng(i as u64), &mut x);
            let mut g = vec![0.0; self.r];
            self.grad(k as usize, &x, &mut g);
            cols.push(g);
        }
        let scale = cols.iter().map(|v| dot(v, v).sqrt()).fold(0.0, f64::max);
        range(&cols, self.r, (1e-8 * scale).max(1e-12))
    }
}

fn names(basis: &Basis) -> String {
    basis
        .iter()
        .map(|v| super::name_direction(v))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Removes from each vector its part in `u` and returns the range of what is left.
fn outside(b: &Basis, u: &Basis, r: usize) -> Result<Basis> {
    let rest: Vec<Vec<f64>> = b
        .iter()
        .map(|v| {
            let mut w = v.clone();
            for q in u {
                let c = dot(q, &w);
                w.iter_mut().zip(q).for_each(|(x, y)| *x -= c * y);
            }
            w
        })
        .collect();
    range(&rest, r, 1e-6)
}

/// The dimension of the span of all directions the (preprocessed) target depends on, up to the
/// expansion's degree: the ranges of every `∇P_k` together.
///
/// # Errors
/// A numerical failure of the range computation.
pub fn relevant_dim(ex: &Expansion, pre: Preprocess) -> Result<usize> {
    let parts = Parts::new(ex, pre);
    let mut all: Vec<Vec<f64>> = Vec::new();
    for k in 1..=ex.max_degree {
        if parts.has(k) {
            all.extend(parts.range_of(k)?);
        }
    }
    Ok(range(&all, ex.r, 1e-6)?.len())
}

/// The subspace one step at `n = d^κ` learns as `d → ∞` (the range of `∇P_k` for the lowest
/// degree `k ≤ κ` with `c_k(σ) ≠ 0`; empty when there is none).
///
/// # Errors
/// A numerical failure of the range computation.
pub fn one_step_subspace(ex: &Expansion, act: &ActivationCoefficients, pre: Preprocess, kappa: f64) -> Result<Basis> {
    let parts = Parts::new(ex, pre);
    match parts.dominant(act, kappa, ex.max_degree) {
        Some(k) => parts.range_of(k),
        None => Ok(vec![]),
    }
}

/// One step at `n = d^κ` (module docs): the `d → ∞` rule and the finite-size closed form.
/// `v` is `E[σ'²]` for raw labels and `E[σ'²] − c1²` after linear preprocessing; `moments` are
/// those of the preprocessed labels.
///
/// # Errors
/// A numerical failure of the range computation.
pub fn one_step_at_kappa(
    ex: &Expansion,
    act: &ActivationCoefficients,
    pre: Preprocess,
    kappa: f64,
    batch: FiniteBatch,
    v: f64,
    moments: &LabelMoments,
) -> Result<OneStepAtKappa> {
    let r = ex.r;
    let parts = Parts::new(ex, pre);
    let c = |k: u32| act.c.get(k as usize).copied().unwrap_or(0.0);
    let kmax = ex.max_degree;
    let effective_exponent = parts.dominant(act, f64::from(kmax), kmax);
    let top = Parts::top_degree(kappa, kmax);
    let dominant_degree = parts.dominant(act, kappa, kmax);
    let subspace = match dominant_degree {
        Some(k) => parts.range_of(k)?,
        None => vec![],
    };
    let mut blocked = Vec::new();
    let mut suppressed = Vec::new();
    for k in 1..=top {
        if !parts.has(k) {
            continue;
        }
        let dirs = parts.range_of(k)?;
        if c(k).abs() < ZERO {
            blocked.push(format!(
                "the degree-{k} part of g* ({}) needs c{k} at n = d^{kappa}; {} has c{k} = 0 (at finite d its overlap comes from the gradient noise and falls like d^-1/2)",
                names(&dirs),
                act.activation
            ));
        } else if let Some(k0) = dominant_degree.filter(|&k0| k0 < k) {
            let new = outside(&dirs, &subspace, r)?;
            if !new.is_empty() {
                suppressed.push(format!(
                    "the degree-{k} part of g* ({}) is swamped by the degree-{k0} part, amplified by d^{}: its overlaps fall like d^-{} (preprocess the labels or use more steps)",
                    names(&new),
                    (k - k0) as f64 / 2.0,
                    (k - k0) as f64 / 2.0
                ));
            }
        }
    }
    let mean_abs_cos = finite_cosines(&parts, act, batch, v, moments);
    Ok(OneStepAtKappa {
        kappa,
        d: batch.d,
        n: batch.n,
        gamma: batch.gamma,
        dominant_degree,
        effective_exponent,
        subspace: SubspaceStep {
            step: 1,
            dim: subspace.len(),
            basis: subspace,
        },
        blocked,
        suppressed,
        mean_abs_cos,
    })
}

/// `E |R_s κ_v/√d + t_v(κ) + ξ_v| / |w|` per teacher direction `v`, with the gradient noise
/// `ξ_v ~ N(0, γ² V E[ỹ² x_v²]/n)` along it (a folded normal), by 2·10⁴ seeded draws of `κ` and
/// both signs `s`. `|w|² = R_s² + |t|² + γ² V (E[ỹ²](d − r) + Σ_j E[ỹ² x_j²])/n`.
fn finite_cosines(
    parts: &Parts,
    act: &ActivationCoefficients,
    batch: FiniteBatch,
    v: f64,
    moments: &LabelMoments,
) -> Vec<f64> {
    let r = parts.r;
    let FiniteBatch { d, n, gamma } = batch;
    let c = |k: usize| act.c.get(k).copied().unwrap_or(0.0);
    let kmax = parts.grads.len() - 1;
    let along: Vec<f64> = moments.y2_x2.iter().map(|m| gamma * gamma * v * m / n).collect();
    let noise2 = gamma * gamma * v * moments.y2 * (d - r as f64).max(0.0) / n + along.iter().sum::<f64>();
    let draws = 20_000;
    let key = StreamKey::theory(0x6b61_7070, TheoryStream::OneStepAtKappa);
    let (mut x, mut g, mut t) = (vec![0.0; r], vec![0.0; r], vec![0.0; r]);
    let mut sum = vec![0.0; r];
    for i in 0..draws {
        fill_normal(&mut key.rng(i as u64), &mut x);
        t.iter_mut().for_each(|v| *v = 0.0);
        for k in 1..=kmax {
            if parts.grads[k].is_empty() || c(k).abs() < ZERO {
                continue;
            }
            parts.grad(k, &x, &mut g);
            let f = gamma * c(k) * d.powf(-((k - 1) as f64) / 2.0);
            t.iter_mut().zip(&g).for_each(|(a, b)| *a += f * b);
        }
        // E[g* σ''] along the neuron: c_{j+2} d^{-j/2} P_j(κ).
        let mut radial = 0.0;
        for j in 0..=kmax.saturating_sub(2) {
            if !parts.values[j].is_empty() {
                radial += c(j + 2) * d.powf(-(j as f64) / 2.0) * parts.value(j, &x);
            }
        }
        let t2 = dot(&t, &t);
        for s in [1.0, -1.0] {
            let rs = 1.0 + s * gamma * radial;
            let w = (rs * rs + t2 + noise2).sqrt();
            for k in 0..r {
                let mean = rs * x[k] / d.sqrt() + t[k];
                sum[k] += 0.5 * folded_normal_mean(mean, along[k].sqrt()) / w;
            }
        }
    }
    sum.iter().map(|s| s / draws as f64).collect()
}

/// `E|a + σ ξ|`, `ξ ~ N(0, 1)`.
fn folded_normal_mean(a: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return a.abs();
    }
    sigma * (2.0 / std::f64::consts::PI).sqrt() * (-a * a / (2.0 * sigma * sigma)).exp()
        + a * libm::erf(a / (sigma * std::f64::consts::SQRT_2))
}
