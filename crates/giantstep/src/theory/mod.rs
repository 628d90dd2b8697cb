//! The theory of docs/theory.md as pure functions: Hermite expansions ([`hermite`]), activation
//! coefficients ([`activation`]), the generic learnable-subspace recursion and leap index
//! ([`subspace`]), the activation-aware representative-neuron recursion ([`neuron`]), closed forms
//! and error floors ([`closed`]). [`analyze`] assembles them into the report of
//! `giantstep theory`.
//!
//! Conventions: `He_k` are the probabilists' Hermite polynomials (`He_1 = x`, `He_2 = x² − 1`);
//! `c_α = E[g*(x) He_α(x)]`; the **leap index** is the smallest batch exponent `ℓ` for which the
//! generic recursion reaches every direction the target depends on; a **staircase** has leap 1.

pub mod activation;
pub mod batch;
pub mod closed;
pub mod dynamics;
pub mod hermite;
pub mod mean_field;
pub mod neuron;
pub mod quadrature;
mod query;
pub mod stability;
pub mod subspace;

use crate::activation::Activation;
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::linalg::dot;
use crate::model::{Preprocess, SecondLayerInit};
use crate::special::hermite as he;
use activation::{ActivationCoefficients, ZERO};
use closed::{OneStepCosine, QuadraticOneStep, RandomFeaturesFloor};
use hermite::{Coefficient, ExpandOptions, Expansion, Method};
use neuron::{NeuronParams, NeuronStep, Points};
use serde::{Deserialize, Serialize};
use subspace::Basis;

pub use query::Query;

/// Largest teacher rank the theory handles.
pub const MAX_RANK: usize = 16;

/// Inputs of [`analyze`].
#[derive(Debug, Clone)]
pub struct TheoryOptions {
    /// Student activation.
    pub activation: Activation,
    /// Number of steps `T`.
    pub steps: usize,
    /// Batch exponent `κ` (`n = d^κ`) of the generic recursion; `ℓ = ⌊κ⌋`.
    pub kappa: f64,
    /// `α = n/d` of the activation-aware recursion and the one-step closed form.
    pub alpha: f64,
    /// `γ = η/p`.
    pub gamma: f64,
    /// `η0` of `η = η0 p sqrt(n/d)` for the `n = βd²` closed form.
    pub eta0: f64,
    /// `β = n/d²` for the quadratic closed form.
    pub beta: f64,
    /// `log p / log d` for the random-features floor.
    pub log_d_p: f64,
    /// Label preprocessing.
    pub preprocess: Preprocess,
    /// Row normalization in the activation-aware recursion.
    pub normalize: bool,
    /// Correlation loss (`e = ỹ`).
    pub correlation: bool,
    /// Hermite degree `K`.
    pub max_degree: u32,
    /// Compute the leap indices (the costliest part; `giantstep run` skips them).
    pub leap: bool,
    /// Second-layer distribution (for the stability of later steps).
    pub second_layer: SecondLayerInit,
    /// `γ` of the steps after the first (default: `gamma`).
    pub gamma_later: Option<f64>,
    /// The `(d, n, γ)` of the one-step closed form at `n = d^κ` (`one_step_at_kappa`).
    pub batch: batch::FiniteBatch,
    /// Stops the recursions between steps (and within a step, between blocks of points) once
    /// set: [`analyze`] then returns [`crate::Error::Cancelled`].
    pub cancel: crate::error::Cancel,
}

impl Default for TheoryOptions {
    fn default() -> Self {
        TheoryOptions {
            activation: "relu".parse().expect("relu"),
            steps: 3,
            kappa: 1.0,
            alpha: 4.0,
            gamma: 2.0,
            eta0: 1.0,
            beta: 1.0,
            log_d_p: 512f64.ln() / 256f64.ln(),
            preprocess: Preprocess::None,
            normalize: false,
            correlation: false,
            max_degree: 6,
            leap: true,
            second_layer: SecondLayerInit::Hypercube,
            gamma_later: None,
            batch: batch::FiniteBatch {
                d: 256.0,
                n: 256.0,
                gamma: 1.0,
            },
            cancel: crate::error::Cancel::default(),
        }
    }
}

/// A learned subspace after a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubspaceStep {
    /// Step, from 1.
    pub step: usize,
    /// Dimension.
    pub dim: usize,
    /// Orthonormal basis (rows, teacher coordinates).
    pub basis: Basis,
}

/// A direction the generic rule learns but the activation cannot (docs/theory.md §2 drift criterion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    /// The direction's name (`e3`) or its coordinates.
    pub direction: String,
    /// The direction in teacher coordinates.
    pub vector: Vec<f64>,
    /// The step at which the generic rule would learn it.
    pub step: usize,
    /// The coefficients `c_{k+1}(σ)` the drift needs and the activation lacks (values of `k+1`).
    pub missing: Vec<u32>,
    /// A sentence.
    pub message: String,
}

/// Error floors (docs/theory.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Floors {
    /// `E[g²] − μ0² − |μ1|²`.
    pub linear_kernel: f64,
    /// Random features at the given `κ` and `log_d p`.
    pub random_features: RandomFeaturesFloor,
    /// Oracle floor for each generic `U_t`.
    pub oracle: Vec<OracleFloor>,
}

/// Oracle floor of one learned subspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OracleFloor {
    /// Step.
    pub step: usize,
    /// Dimension of `U_t`.
    pub dim: usize,
    /// `E[g²] − E[E[g|P_U x]²] − |P_{U⊥} μ1|²`.
    pub error: f64,
}

/// The report of `giantstep theory` (its JSON schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TheoryReport {
    /// The target.
    pub expr: String,
    /// Teacher rank.
    pub r: usize,
    /// How the expectations were computed.
    pub quadrature: Method,
    /// `μ0 = E[g*]`.
    pub mean: f64,
    /// `E[g*²]`.
    pub second_moment: f64,
    /// `μ1 = E[g* x]`.
    pub mu1: Vec<f64>,
    /// Nonzero Hermite coefficients with `|α| ≤ K`.
    pub hermite: Vec<Coefficient>,
    /// The activation's coefficients.
    pub activation: ActivationCoefficients,
    /// Preprocessing the recursions assume.
    pub preprocess: Preprocess,
    /// Leap index under that preprocessing.
    pub leap_index: Option<u32>,
    /// Leap index of the raw labels.
    pub leap_index_raw: Option<u32>,
    /// Leap index after linear preprocessing.
    pub leap_index_linear: Option<u32>,
    /// Whether the target is a staircase (raw leap index 1).
    pub staircase: bool,
    /// The leap index with this activation: the smallest `ℓ` at which steps with `n = Θ(d^ℓ)`
    /// reach every direction the generic rule reaches (`ℓ = 1`: the representative-neuron
    /// recursion over the report's steps; `ℓ ≥ 2`: the one-step rule at `n = d^ℓ`, then the
    /// generic rule); `None` beyond the expansion's degree or when not computed.
    pub effective_leap_index: Option<u32>,
    /// Batch exponent `κ` and `ℓ = ⌊κ⌋`.
    pub kappa: f64,
    /// `ℓ`.
    pub ell: u32,
    /// Generic `U_1..U_T`.
    pub generic_subspaces: Vec<SubspaceStep>,
    /// `γ = η/p`.
    pub gamma: f64,
    /// `α = n/d`.
    pub alpha: f64,
    /// Activation-aware subspaces per step: the representative-neuron recursion for `κ < 2`; for
    /// `κ ≥ 2` the one-step rule at `n = d^κ`, then the generic rule from there.
    pub activation_subspaces: Vec<SubspaceStep>,
    /// Predicted mean |cos| per step and teacher direction: the recursion at `n = αd` for
    /// `κ < 2`; for `κ ≥ 2` step 1 only (the closed form at the finite `(d, n, γ)`).
    pub predicted_abs_cos: Vec<Vec<f64>>,
    /// The representative neurons after each step.
    pub neurons: Vec<NeuronStep>,
    /// Directions blocked by the activation.
    pub blocked: Vec<Blocked>,
    /// The one-step closed form at `n = αd`.
    pub one_step_cosine: OneStepCosine,
    /// The one-step closed form at `n = βd²`.
    pub quadratic_one_step: QuadraticOneStep,
    /// One step at `n = d^κ`: the activation-aware rule as `d → ∞` and the closed form at the
    /// options' finite `(d, n, γ)` (docs/theory.md §2).
    pub one_step_at_kappa: batch::OneStepAtKappa,
    /// Linear-kernel error.
    pub linear_kernel_error: f64,
    /// Error floors.
    pub floors: Floors,
    /// Largest `γ` for which steps after the first stay stable (the aligned-state Jacobian,
    /// [`stability`]); `None` when the first step aligns nothing (`μ1 = 0` or linear
    /// preprocessing) or nothing diverges below `γ = 200`.
    pub stable_gamma_max: Option<f64>,
    /// The stability analysis at `gamma` (first step) and `gamma_later` (later steps).
    pub stability: Option<stability::Stability>,
    /// Caveats (regime of validity, swamping spike, Monte Carlo fallback).
    pub warnings: Vec<String>,
}

fn mu1_norm(ex: &Expansion) -> f64 {
    let m = ex.mu1();
    dot(&m, &m).sqrt()
}

fn name_direction(v: &[f64]) -> String {
    for (k, x) in v.iter().enumerate() {
        if x.abs() > 1.0 - 1e-9 {
            return format!("e{}", k + 1);
        }
    }
    format!(
        "({})",
        v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ")
    )
}

fn orthonormal_span(vectors: &[Vec<f64>], r: usize) -> Result<Basis> {
    let scale = vectors.iter().map(|v| dot(v, v).sqrt()).fold(0.0, f64::max);
    // Overlaps of learned directions are O(0.01..1); below 1e-9 is quadrature rounding.
    subspace::range(vectors, r, (1e-7 * scale).max(1e-9))
}

/// Expands the target with its preprocessing: returns the raw expansion and the function the
/// recursions use (`g`, `g − μ0` or `g − μ0 − <μ1, x>`).
pub fn preprocessed<'a>(g: &'a dyn Fn(&[f64]) -> f64, ex: &Expansion, pre: Preprocess) -> impl Fn(&[f64]) -> f64 + 'a {
    let mu0 = if pre == Preprocess::None { 0.0 } else { ex.mean() };
    let mu1 = if pre == Preprocess::Linear {
        ex.mu1()
    } else {
        vec![0.0; ex.r]
    };
    move |x: &[f64]| g(x) - mu0 - dot(&mu1, x)
}

/// Runs the whole theory of docs/theory.md on a target expression.
///
/// # Errors
/// [`Error::RankLimit`] for `r > 16`, [`Error::Invalid`] for invalid options, [`Error::Numerical`] for targets that are not
/// finite or not square-integrable.
pub fn analyze(expr: &Expr, r: usize, opts: &TheoryOptions) -> Result<TheoryReport> {
    check_options(expr, r, opts)?;
    let g = |x: &[f64]| expr.eval(x);
    let eo = ExpandOptions {
        max_degree: opts.max_degree,
        ..Default::default()
    };
    let ex = hermite::expand(&g, r, eo)?;
    let act = activation::coefficients(&opts.activation, opts.max_degree + 1)?;
    // log n / log d of n = d^2 can come out as 1.9999999999999998.
    let ell = ((opts.kappa + 1e-9).floor() as u32).max(1);
    let mut warnings = regime_warnings(&ex, opts, ell);
    let g_used = preprocessed(&g, &ex, opts.preprocess);
    let g_lin = preprocessed(&g, &ex, Preprocess::Linear);
    let [leap_index, leap_index_raw, leap_index_linear] = if opts.leap {
        [&g_used as &dyn Fn(&[f64]) -> f64, &g, &g_lin].map(|f| subspace::leap_index(f, r, eo))
    } else {
        [Ok(None), Ok(None), Ok(None)]
    };
    let (leap_index, leap_index_raw, leap_index_linear) = (leap_index?, leap_index_raw?, leap_index_linear?);
    let mu1 = ex.mu1();
    let generic_subspaces = generic_steps(&g_used, r, ell, opts.steps, eo)?;
    // Activation-aware recursion (n = αd).
    let params = NeuronParams {
        gamma: opts.gamma,
        alpha: opts.alpha,
        normalize: opts.normalize,
        correlation: opts.correlation,
        steps: opts.steps,
    };
    let neurons = neuron::neuron_recursion(&g_used, r, opts.activation, params, &opts.cancel)?;
    let v = if opts.preprocess == Preprocess::Linear {
        act.e_dsigma2 - act.c[1].powi(2)
    } else {
        act.e_dsigma2
    };
    let moments = label_moments(&g_used, r)?;
    let at_kappa = batch::one_step_at_kappa(&ex, &act, opts.preprocess, opts.kappa, opts.batch, v, &moments)?;
    let problem = Drift {
        g: &g_used,
        r,
        eo,
        act: &act,
        second_moment: ex.second_moment,
        opts,
    };
    let aware = activation_aware(&problem, ell, &neurons, &at_kappa)?;
    if opts.kappa >= 2.0 {
        warnings.push(
            "at kappa >= 2 the activation-aware prediction is for one step (one_step_at_kappa); later steps follow the generic rule from there".into(),
        );
    }
    warnings.extend(at_kappa.suppressed.iter().cloned());
    let (activation_subspaces, predicted_abs_cos, blocked) = aware;
    let effective_leap_index = if opts.leap {
        effective_leap(&g_used, &ex, &act, opts, &neurons, eo)?
    } else {
        None
    };

    let one_step_cosine = closed::one_step_cosine(&ex, &act, opts.gamma, opts.alpha);
    let quadratic_one_step = closed::quadratic_one_step(&ex, &act, opts.eta0, opts.beta, v);
    let linear_kernel_error = closed::linear_kernel_error(&ex);
    let floors = floors_of(&g, &ex, &act, opts, &generic_subspaces, eo)?;
    let stability = stability_of(expr, &ex, &act, opts)?;
    warnings.extend(stability.as_ref().and_then(|st| instability_warning(st, opts.steps)));
    Ok(TheoryReport {
        stable_gamma_max: stability.as_ref().and_then(|s| s.stable_gamma_max),
        stability,
        expr: expr.source().to_string(),
        r,
        quadrature: ex.method.clone(),
        mean: ex.mean(),
        second_moment: ex.second_moment,
        mu1,
        hermite: ex.nonzero(),
        activation: act,
        preprocess: opts.preprocess,
        leap_index,
        leap_index_raw,
        leap_index_linear,
        staircase: leap_index_raw == Some(1),
        effective_leap_index,
        kappa: opts.kappa,
        ell,
        generic_subspaces,
        gamma: opts.gamma,
        alpha: opts.alpha,
        predicted_abs_cos,
        activation_subspaces,
        one_step_at_kappa: at_kappa,
        neurons,
        blocked,
        one_step_cosine,
        quadratic_one_step,
        linear_kernel_error,
        floors,
        warnings,
    })
}

/// The generic subspaces `U_1 ⊆ U_2 ⊆ …` of steps `1..=steps` at `n = d^ℓ`.
fn generic_steps(
    g: &dyn Fn(&[f64]) -> f64,
    r: usize,
    ell: u32,
    steps: usize,
    eo: ExpandOptions,
) -> Result<Vec<SubspaceStep>> {
    Ok(subspace::generic_subspaces(g, r, ell, steps, eo)?
        .into_iter()
        .enumerate()
        .map(|(t, b)| SubspaceStep {
            step: t + 1,
            dim: b.len(),
            basis: b,
        })
        .collect())
}

/// The stability of steps after the first for a target given only as a function `g` of the
/// teacher coordinates (no expression): its Hermite expansion on `nodes` Gauss–Hermite nodes per
/// axis, then the aligned-state analysis of docs/stairway.md at `opts.gamma` (first step) and
/// `opts.gamma_later`. Returns the warning a run prints when the later steps blow up, `None` when
/// they are stable or the analysis does not apply (preprocessed labels, `μ1 = 0`).
///
/// # Errors
/// When `g` is not finite or not square-integrable on the grid, or a quadrature fails.
pub fn stability_warning_of(
    g: &dyn Fn(&[f64]) -> f64,
    r: usize,
    nodes: usize,
    opts: &TheoryOptions,
) -> Result<Option<String>> {
    if opts.preprocess != Preprocess::None || opts.steps < 2 {
        return Ok(None);
    }
    let eo = ExpandOptions {
        max_degree: opts.max_degree,
        nodes: Some(nodes),
        ..Default::default()
    };
    let ex = hermite::expand(g, r, eo)?;
    let act = activation::coefficients(&opts.activation, opts.max_degree + 1)?;
    let Some(state) = stability::AlignedState::new(&ex, opts.activation, &act, opts.second_layer)? else {
        return Ok(None);
    };
    let limit = state.stable_gamma_max()?;
    let st = state.report_with_limit(opts.gamma, opts.gamma_later.unwrap_or(opts.gamma), limit)?;
    Ok(instability_warning(&st, opts.steps))
}

/// The warning when steps after the first are unstable at the learning rate asked.
fn instability_warning(st: &stability::Stability, steps: usize) -> Option<String> {
    (steps >= 2 && st.lambda_min < -1.0).then(|| {
        format!(
            "steps after the first are unstable at gamma = {:.3} (stable up to {}): |eta G| grows about {:.2}x per step; cap the learning rate (train.eta_max0) or lower later steps (train.eta_schedule)",
            st.gamma,
            st.stable_gamma_max.map_or("-".to_string(), |g| format!("{g:.2}")),
            st.growth
        )
    })
}

/// Caveats on the regime: the quadratic form's assumption, Monte Carlo coefficients, batches
/// below `d`, the amplified first-order spike at `ℓ ≥ 2`.
fn regime_warnings(ex: &Expansion, opts: &TheoryOptions, ell: u32) -> Vec<String> {
    let mut warnings = Vec::new();
    let raw_spike = mu1_norm(ex) > ex.zero_tol && opts.preprocess == Preprocess::None;
    if raw_spike {
        warnings.push(
            "quadratic_one_step assumes mu1 = 0 or linear preprocessing; here mu1 != 0 and labels are raw".into(),
        );
    }
    if let Method::MonteCarlo { samples } = ex.method {
        warnings.push(format!(
            "the quadrature grid would exceed 1e8 points at r = {}: coefficients are Monte Carlo estimates from {samples} samples",
            ex.r
        ));
    }
    if opts.kappa < 1.0 {
        warnings.push(format!(
            "kappa = {} < 1: a batch n = o(d) learns nothing; the generic recursion is shown for l = 1",
            opts.kappa
        ));
    }
    if ell >= 2 && raw_spike {
        warnings.push("with n = d^l, l >= 2, and mu1 != 0, the amplified first-order spike swamps every neuron unless labels are preprocessed (use preprocess = linear)".into());
    }
    warnings
}

fn check_options(expr: &Expr, r: usize, opts: &TheoryOptions) -> Result<()> {
    if r == 0 || r > MAX_RANK {
        return Err(Error::RankLimit {
            what: "the theory".into(),
            limit: format!("1 <= r <= {MAX_RANK}"),
            r,
        });
    }
    if r < expr.max_var() {
        return Err(Error::invalid(
            "r",
            format!(">= {} (the target uses z{})", expr.max_var(), expr.max_var()),
            r,
        ));
    }
    for (name, v) in [("kappa", opts.kappa), ("alpha", opts.alpha), ("beta", opts.beta)] {
        if !(v.is_finite() && v > 0.0) {
            return Err(Error::invalid(name, "> 0", v));
        }
    }
    for (name, v) in [("eta0", opts.eta0), ("gamma", opts.gamma)] {
        if !v.is_finite() {
            return Err(Error::invalid(name, "finite", v));
        }
    }
    Ok(())
}

/// The error floors (docs/theory.md §4): linear kernel, random features, the oracle floor of
/// each generic subspace.
fn floors_of(
    g: &dyn Fn(&[f64]) -> f64,
    ex: &Expansion,
    act: &ActivationCoefficients,
    opts: &TheoryOptions,
    generic: &[SubspaceStep],
    eo: ExpandOptions,
) -> Result<Floors> {
    let mut oracle = Vec::new();
    for s in generic {
        oracle.push(OracleFloor {
            step: s.step,
            dim: s.dim,
            error: closed::oracle_floor(g, ex, &s.basis, eo)?,
        });
    }
    Ok(Floors {
        linear_kernel: closed::linear_kernel_error(ex),
        random_features: closed::random_features_floor(ex, act, opts.kappa, opts.log_d_p),
        oracle,
    })
}

/// Activation-aware subspaces, predicted mean |cos| per step, blocked directions.
type Aware = (Vec<SubspaceStep>, Vec<Vec<f64>>, Vec<Blocked>);

/// The activation-aware prediction: the representative-neuron recursion and the drift criterion
/// for `κ < 2`; the one-step rule at `n = d^κ` and then the generic rule for `κ ≥ 2`.
fn activation_aware(
    problem: &Drift,
    ell: u32,
    neurons: &[NeuronStep],
    at_kappa: &batch::OneStepAtKappa,
) -> Result<Aware> {
    let opts = problem.opts;
    if opts.kappa < 2.0 {
        let subspaces = spans_of(neurons, problem.r)?;
        let blocked = blocked_directions(problem, neurons, &subspaces)?;
        return Ok((subspaces, neurons.iter().map(|n| n.abs_cos.clone()).collect(), blocked));
    }
    let subspaces = later_steps(problem.g, problem.r, ell, opts.steps, &at_kappa.subspace, problem.eo)?;
    let blocked = at_kappa
        .blocked
        .iter()
        .map(|m| Blocked {
            direction: String::new(),
            vector: vec![],
            step: 1,
            missing: vec![],
            message: m.clone(),
        })
        .collect();
    Ok((subspaces, vec![at_kappa.mean_abs_cos.clone()], blocked))
}

/// The smallest `ℓ` at which the activation-aware rules reach the generic closure (see
/// [`TheoryReport::effective_leap_index`]).
fn effective_leap(
    g: &dyn Fn(&[f64]) -> f64,
    ex: &Expansion,
    act: &ActivationCoefficients,
    opts: &TheoryOptions,
    neurons: &[NeuronStep],
    eo: ExpandOptions,
) -> Result<Option<u32>> {
    let r = ex.r;
    let all = batch::relevant_dim(ex, opts.preprocess)?;
    if all == 0 {
        return Ok(None);
    }
    for ell in 1..=opts.max_degree {
        let reached = if ell == 1 {
            spans_of(neurons, r)?.last().map_or(0, |s| s.dim)
        } else {
            let first = batch::one_step_subspace(ex, act, opts.preprocess, ell as f64)?;
            let first = SubspaceStep {
                step: 1,
                dim: first.len(),
                basis: first,
            };
            later_steps(g, r, ell, r + 1, &first, eo)?.last().map_or(0, |s| s.dim)
        };
        if reached >= all {
            return Ok(Some(ell));
        }
    }
    Ok(None)
}

/// `E[ỹ²]` and `E[ỹ² x_j²]` of the labels the steps see, on the quadrature grid.
fn label_moments(g: &dyn Fn(&[f64]) -> f64, r: usize) -> Result<batch::LabelMoments> {
    let pts = Points::new(r)?;
    let mut m = batch::LabelMoments {
        y2: 0.0,
        y2_x2: vec![0.0; r],
    };
    for i in 0..pts.len() {
        let x = &pts.x[i * r..(i + 1) * r];
        let y2 = pts.w[i] * g(x).powi(2);
        m.y2 += y2;
        for j in 0..r {
            m.y2_x2[j] += y2 * x[j] * x[j];
        }
    }
    Ok(m)
}

/// `U_1` from the one-step rule at `n = d^κ`, then `U_{t+1} = U_t ⊕` the generic rule's new
/// directions at `ℓ`.
fn later_steps(
    g: &dyn Fn(&[f64]) -> f64,
    r: usize,
    ell: u32,
    steps: usize,
    first: &SubspaceStep,
    eo: ExpandOptions,
) -> Result<Vec<SubspaceStep>> {
    let mut out = vec![first.clone()];
    let mut u = first.basis.clone();
    for t in 2..=steps {
        // With nothing learned, a later step starts where the first did and learns nothing either.
        let new = if u.is_empty() {
            vec![]
        } else {
            subspace::new_directions(g, r, &u, ell, eo)?
        };
        if new.is_empty() {
            // The same `U` again: so are all later steps.
            let last = out.last().expect("the first step").clone();
            out.extend((t..=steps).map(|s| SubspaceStep {
                step: s,
                ..last.clone()
            }));
            break;
        }
        u.extend(new);
        let b = orthonormal_span(&u, r)?;
        u = b.clone();
        out.push(SubspaceStep {
            step: t,
            dim: b.len(),
            basis: b,
        });
    }
    Ok(out)
}

/// The span of the neurons' overlaps `m±` up to each step (the activation-aware subspaces).
fn spans_of(neurons: &[NeuronStep], r: usize) -> Result<Vec<SubspaceStep>> {
    let mut seen: Vec<Vec<f64>> = Vec::new();
    let mut out = Vec::with_capacity(neurons.len());
    for (i, st) in neurons.iter().enumerate() {
        // A step that repeats the last (a fixed point) spans what it spanned.
        if let (Some(prev), Some(last)) = (i.checked_sub(1).map(|j| &neurons[j]), out.last()) {
            if prev.m_plus == st.m_plus && prev.m_minus == st.m_minus {
                let last: SubspaceStep = SubspaceStep {
                    step: st.step,
                    ..Clone::clone(last)
                };
                out.push(last);
                continue;
            }
        }
        seen.push(st.m_plus.clone());
        seen.push(st.m_minus.clone());
        let b = orthonormal_span(&seen, r)?;
        out.push(SubspaceStep {
            step: st.step,
            dim: b.len(),
            basis: b,
        });
    }
    Ok(out)
}

/// What the drift criterion needs: the (preprocessed) target and the activation's coefficients.
struct Drift<'a> {
    g: &'a dyn Fn(&[f64]) -> f64,
    r: usize,
    eo: ExpandOptions,
    act: &'a ActivationCoefficients,
    second_moment: f64,
    opts: &'a TheoryOptions,
}

/// The directions the activation blocks (docs/theory.md): what the generic rule (`ℓ = 1`) would
/// add from where the neurons are, minus what they actually learn, with the Hermite
/// coefficients of `σ` each would need.
fn blocked_directions(
    problem: &Drift,
    neurons: &[NeuronStep],
    activation_subspaces: &[SubspaceStep],
) -> Result<Vec<Blocked>> {
    let Drift { g, r, eo, opts, .. } = *problem;
    let pts = Points::new(r)?;
    let mut blocked: Vec<Blocked> = Vec::new();
    let mut blocked_span: Basis = vec![];
    // The generic rule's new directions from the last `U` seen (the same `U` gives the same).
    let mut memo: Option<(Basis, Basis)> = None;
    for t in 0..opts.steps {
        opts.cancel.check()?;
        let prev: Basis = if t == 0 {
            vec![]
        } else {
            activation_subspaces[t - 1].basis.clone()
        };
        let generic_new = match &memo {
            Some((u, new)) if *u == prev => new.clone(),
            _ => {
                let new = subspace::new_directions(g, r, &prev, 1, eo)?;
                memo = Some((prev.clone(), new.clone()));
                new
            }
        };
        let now = &activation_subspaces[t].basis;
        let mut residuals = Vec::new();
        for v in &generic_new {
            let mut res = v.clone();
            for b in now.iter().chain(&blocked_span) {
                let c = dot(b, &res);
                res.iter_mut().zip(b).for_each(|(x, y)| *x -= c * y);
            }
            residuals.push(res);
        }
        for v in subspace::range(&residuals, r, 1e-6)? {
            let overlaps: Vec<Vec<f64>> = if t == 0 {
                vec![vec![0.0; r]]
            } else {
                vec![neurons[t - 1].m_plus.clone(), neurons[t - 1].m_minus.clone()]
            };
            let missing = missing_coefficients(problem, &pts, &v, &overlaps);
            let name = name_direction(&v);
            let message = if missing.is_empty() {
                format!(
                    "{name} is blocked at step {}: the drift vanishes at the overlaps the neurons reach",
                    t + 1
                )
            } else {
                let needs: Vec<String> = missing.iter().map(|k| format!("c{k}")).collect();
                let has: Vec<String> = missing.iter().map(|k| format!("c{k} = 0")).collect();
                format!(
                    "{name} is blocked at step {}: needs {}, {} has {}",
                    t + 1,
                    needs.join(" or "),
                    opts.activation,
                    has.join(", ")
                )
            };
            blocked_span.push(v.clone());
            blocked.push(Blocked {
                direction: name,
                vector: v,
                step: t + 1,
                missing,
                message,
            });
        }
    }
    Ok(blocked)
}

/// The orders `k + 1` at which the drift along `v` from the overlaps `m` is non-zero while the
/// activation's coefficient `c_{k+1}` vanishes.
fn missing_coefficients(problem: &Drift, pts: &Points, v: &[f64], overlaps: &[Vec<f64>]) -> Vec<u32> {
    let Drift {
        g,
        r,
        act,
        second_moment,
        opts,
        ..
    } = *problem;
    let mut missing: Vec<u32> = Vec::new();
    for m in overlaps {
        let nm = dot(m, m).sqrt();
        let kmax = if nm > 0.0 { opts.max_degree } else { 0 };
        for k in 0..=kmax {
            let mut tk = 0.0;
            for i in 0..pts.len() {
                let x = &pts.x[i * r..(i + 1) * r];
                let proj = if nm > 0.0 { dot(m, x) / nm } else { 0.0 };
                tk += pts.w[i] * g(x) * dot(v, x) * he(k, proj);
            }
            let c = act.c.get(k as usize + 1).copied().unwrap_or(0.0);
            if tk.abs() > 1e-8 * second_moment.sqrt().max(1.0) && c.abs() < ZERO && !missing.contains(&(k + 1)) {
                missing.push(k + 1);
            }
        }
    }
    missing.sort_unstable();
    missing
}

/// The stability of steps after the first (docs/stairway.md), for raw labels.
fn stability_of(
    expr: &Expr,
    ex: &Expansion,
    act: &ActivationCoefficients,
    opts: &TheoryOptions,
) -> Result<Option<stability::Stability>> {
    if opts.preprocess != Preprocess::None {
        return Ok(None);
    }
    let Some(state) = stability::AlignedState::new(ex, opts.activation, act, opts.second_layer)? else {
        return Ok(None);
    };
    // The limit depends on (target, activation, second layer) only: computed once per process (a
    // sweep asks for it at every point).
    static LIMITS: std::sync::Mutex<Vec<(String, Option<f64>)>> = std::sync::Mutex::new(Vec::new());
    let key = format!(
        "{}|{}|{:?}|{}",
        expr.source(),
        opts.activation,
        opts.second_layer,
        opts.max_degree
    );
    let cached = LIMITS
        .lock()
        .ok()
        .and_then(|l| l.iter().find(|(k, _)| *k == key).map(|(_, v)| *v));
    let limit = match cached {
        Some(v) => v,
        None => {
            let v = state.stable_gamma_max()?;
            if let Ok(mut l) = LIMITS.lock() {
                l.push((key, v));
            }
            v
        }
    };
    Ok(Some(state.report_with_limit(
        opts.gamma,
        opts.gamma_later.unwrap_or(opts.gamma),
        limit,
    )?))
}
