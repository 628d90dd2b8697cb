//! Closed forms for one step (docs/theory.md §3) and error floors (docs/theory.md §4).

use super::activation::{ActivationCoefficients, ZERO};
use super::hermite::{expand, ExpandOptions, Expansion};
use super::subspace::{complete_basis, expand_rotated, Basis};
use crate::data::{fill_normal, StreamKey, TheoryStream};
use crate::error::Result;
use crate::linalg::dot;
use serde::{Deserialize, Serialize};

/// The one-step cosine at `n = αd` (docs/theory.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OneStepCosine {
    /// `γ = η/p`.
    pub gamma: f64,
    /// `α = n/d`.
    pub alpha: f64,
    /// Signed cosine `sign(a c1) cos(w, u)` of the `a > 0` neurons.
    pub plus: f64,
    /// The same for the `a < 0` neurons.
    pub minus: f64,
    /// Mean |cos| with `u = μ1/|μ1|` over both signs.
    pub mean_abs: f64,
    /// The direction `u` in teacher coordinates (empty when `μ1 = 0`).
    pub direction: Vec<f64>,
}

/// `γ |c1| |μ1| / sqrt((1 + s γ c2 E[y])² + γ² (c1² |μ1|² + E[y²] E[σ'²]/α))` for `s = ±1`.
pub fn one_step_cosine(ex: &Expansion, act: &ActivationCoefficients, gamma: f64, alpha: f64) -> OneStepCosine {
    let mu1 = ex.mu1();
    let norm = dot(&mu1, &mu1).sqrt();
    let (c1, c2) = (act.c[1], act.c.get(2).copied().unwrap_or(0.0));
    let (ey, ey2) = (ex.mean(), ex.second_moment);
    let cos = |s: f64| {
        gamma * c1.abs() * norm
            / ((1.0 + s * gamma * c2 * ey).powi(2)
                + gamma * gamma * (c1 * c1 * norm * norm + ey2 * act.e_dsigma2 / alpha))
                .sqrt()
    };
    let (plus, minus) = (cos(1.0), cos(-1.0));
    OneStepCosine {
        gamma,
        alpha,
        plus,
        minus,
        mean_abs: 0.5 * (plus + minus),
        direction: if norm > ex.zero_tol {
            mu1.iter().map(|v| v / norm).collect()
        } else {
            vec![]
        },
    }
}

/// The one-step prediction at `n = βd²` (docs/theory.md §3, `μ1 = 0` or linear preprocessing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuadraticOneStep {
    /// `β = n/d²`.
    pub beta: f64,
    /// `η0` in `η = η0 p sqrt(n/d)`.
    pub eta0: f64,
    /// Predicted mean |cos| with each teacher direction.
    pub mean_abs_cos: Vec<f64>,
}

/// Mean over `κ ~ N(0, I_r)` of `|<e_k, η0 c2 sqrt(β) H κ>| / sqrt(1 + η0² (c2² β |Hκ|² + E[y²] V))`,
/// by 10^5 seeded samples of `κ`. `v` is `E[σ'²]` for raw labels and `E[σ'²] − c1²` after
/// linear preprocessing.
pub fn quadratic_one_step(
    ex: &Expansion,
    act: &ActivationCoefficients,
    eta0: f64,
    beta: f64,
    v: f64,
) -> QuadraticOneStep {
    let r = ex.r;
    let h = ex.hessian();
    let c2 = act.c.get(2).copied().unwrap_or(0.0);
    let ey2 = ex.second_moment;
    let n = 100_000;
    let key = StreamKey::theory(0x6265_7461, TheoryStream::QuadraticOneStep);
    let mut kappa = vec![0.0; r];
    let mut sum = vec![0.0; r];
    for i in 0..n {
        fill_normal(&mut key.rng(i as u64), &mut kappa);
        let hk: Vec<f64> = (0..r).map(|a| dot(&h[a * r..(a + 1) * r], &kappa)).collect();
        let hk2 = dot(&hk, &hk);
        let den = (1.0 + eta0 * eta0 * (c2 * c2 * beta * hk2 + ey2 * v)).sqrt();
        for k in 0..r {
            sum[k] += (eta0 * c2 * beta.sqrt() * hk[k]).abs() / den;
        }
    }
    QuadraticOneStep {
        beta,
        eta0,
        mean_abs_cos: sum.iter().map(|s| s / n as f64).collect(),
    }
}

/// Random-features floor (docs/theory.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RandomFeaturesFloor {
    /// `κ = log n / log d`.
    pub kappa: f64,
    /// `log p / log d`.
    pub log_d_p: f64,
    /// Largest degree `k` with `n, p ≫ d^k`.
    pub degree: u32,
    /// Degrees up to `k` the activation carries (`c_j(σ) ≠ 0`).
    pub carried_degrees: Vec<u32>,
    /// `E[g²] − Σ_{carried |α| ≤ k} c_α²/α!`.
    pub error: f64,
}

/// The random-features floor for `n = d^κ`, `p = d^{log_d p}`.
pub fn random_features_floor(
    ex: &Expansion,
    act: &ActivationCoefficients,
    kappa: f64,
    log_d_p: f64,
) -> RandomFeaturesFloor {
    let lim = kappa.min(log_d_p);
    // n, p ≫ d^k: the largest integer strictly below lim.
    let degree = if lim <= 0.0 {
        0
    } else {
        (lim.ceil() as u32).saturating_sub(1)
    };
    let degree = degree.min(ex.max_degree);
    let carried: Vec<u32> = (0..=degree)
        .filter(|&j| act.c.get(j as usize).is_some_and(|c| c.abs() > ZERO))
        .collect();
    let learned = ex.energy(|a| carried.contains(&a.iter().sum::<u32>()));
    RandomFeaturesFloor {
        kappa,
        log_d_p,
        degree,
        carried_degrees: carried,
        error: (ex.second_moment - learned).max(0.0),
    }
}

/// Linear-kernel floor `E[g²] − μ0² − |μ1|²`.
pub fn linear_kernel_error(ex: &Expansion) -> f64 {
    let mu1 = ex.mu1();
    (ex.second_moment - ex.mean().powi(2) - dot(&mu1, &mu1)).max(0.0)
}

/// Oracle floor for a learned subspace `U`: `E[g²] − E[E[g|P_U x]²] − |P_{U⊥} μ1|²`, with
/// `E[E[g|P_U x]²]` summed over the Hermite coefficients supported on `U` (up to degree `K`).
///
/// # Errors
/// As [`expand`].
pub fn oracle_floor(g: &dyn Fn(&[f64]) -> f64, ex: &Expansion, u: &Basis, opts: ExpandOptions) -> Result<f64> {
    let r = ex.r;
    let k = u.len();
    let rotated = if k == 0 {
        expand(g, r, opts)?
    } else {
        expand_rotated(g, r, &complete_basis(u, r), opts)?
    };
    let on_u = rotated.energy(|a| a[k..].iter().all(|&b| b == 0));
    let mu1 = ex.mu1();
    let mut perp = mu1.clone();
    for b in u {
        let c = dot(b, &mu1);
        perp.iter_mut().zip(b).for_each(|(p, q)| *p -= c * q);
    }
    Ok((ex.second_moment - on_u - dot(&perp, &perp)).max(0.0))
}
