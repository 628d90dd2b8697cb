//! The questions of `giantstep theory` in one validated form, shared by the command line and the
//! Python package: a target and the regime, with the defaults of the command line.

use super::{analyze, TheoryOptions, TheoryReport};
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::model::{Preprocess, SecondLayerInit};
use crate::names::parse_named;
use serde::{Deserialize, Serialize};

/// Largest rank at degree 3 or more, so that every question is answered in seconds (measured
/// on 2 cores: r = 7 takes about 6 s at degree 6, r = 8 about a minute); at degree 2 up to
/// [`super::MAX_RANK`] (r = 16 takes about 10 s).
const MAX_RANK_DEGREE_3: usize = 7;
use super::MAX_RANK as MAX_RANK_DEGREE_2;

/// A theory question (docs/theory.md): the fields and defaults of `giantstep theory`.
///
/// ```
/// let q = giantstep::theory::Query { target: "z1 + z1*z2".into(), steps: 2, ..Default::default() };
/// let report = q.analyze()?;
/// assert_eq!(report.generic_subspaces[1].dim, 2); // e1 at step 1, then e2
/// # Ok::<(), giantstep::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Query {
    /// An expression over `z1..zr` or a preset name.
    pub target: String,
    /// Student activation `σ`.
    pub activation: String,
    /// Number of steps `T` (1 to 100).
    pub steps: usize,
    /// Batch exponent `κ` (`n = d^κ`), in (0, 8].
    pub kappa: f64,
    /// `α = n/d` of the activation-aware recursion and the one-step closed form.
    pub alpha: f64,
    /// Learning-rate prefactor: `γ = eta0·α^eta_exp`.
    pub eta0: f64,
    /// Learning-rate exponent.
    pub eta_exp: f64,
    /// `γ = η/p` directly (overrides `eta0`; otherwise `eta0·α^eta_exp` at `n = αd` and
    /// `eta0·(n/d)^eta_exp` with `n = d^κ` for the one-step closed form at `n = d^κ`).
    pub gamma: Option<f64>,
    /// `β = n/d²` of the quadratic one-step closed form.
    pub beta: f64,
    /// Input dimension (for `log_d p` of the random-features floor and the finite-size closed
    /// form at `n = d^κ`), at least 2.
    pub d: usize,
    /// Width (for `log_d p`).
    pub p: usize,
    /// Label preprocessing: none, mean or linear.
    pub preprocess: String,
    /// Row normalization after each step.
    pub normalize: bool,
    /// Correlation loss (`e = y`).
    pub correlation: bool,
    /// Teacher rank (default: the largest index used).
    pub r: Option<usize>,
    /// Maximal Hermite degree `K` (1 to 12).
    pub degree: u32,
    /// `γ` of the later steps (default: the first step's), for their stability.
    pub gamma_later: Option<f64>,
    /// Second-layer initialization: hypercube, gaussian or uniform.
    pub second_layer: String,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            target: "staircase2".into(),
            activation: "relu".into(),
            steps: 3,
            kappa: 1.0,
            alpha: 4.0,
            eta0: 1.0,
            eta_exp: 0.5,
            gamma: None,
            beta: 1.0,
            d: 256,
            p: 512,
            preprocess: "none".into(),
            normalize: false,
            correlation: false,
            r: None,
            degree: 6,
            gamma_later: None,
            second_layer: "hypercube".into(),
        }
    }
}

impl Query {
    /// Checks every field and returns the parsed target, its rank and the options of
    /// [`analyze`]. Messages name the field as spelled here (`kappa must be in (0, 8] ...`).
    ///
    /// # Errors
    /// [`Error::Invalid`], [`Error::RankLimit`] or [`Error::Expr`] naming the first invalid field.
    pub fn resolve(&self) -> Result<(Expr, usize, TheoryOptions)> {
        let text = crate::target::preset_expr(&self.target)
            .map(str::to_string)
            .unwrap_or_else(|_| self.target.clone());
        let expr = crate::target::parse_target(&text, "target")?;
        let r = self.r.unwrap_or(expr.max_var().max(1));
        if r < expr.max_var() {
            return Err(Error::invalid(
                "r",
                format!(">= {} (the target uses z{})", expr.max_var(), expr.max_var()),
                r,
            ));
        }
        if r > MAX_RANK_DEGREE_3 && self.degree > 2 {
            return Err(Error::RankLimit {
                what: "the theory".into(),
                limit: format!(
                    "r <= {MAX_RANK_DEGREE_3} teacher directions at degree 3 or more (up to r = {MAX_RANK_DEGREE_2} at degree 2)"
                ),
                r,
            });
        }
        let preprocess: Preprocess = parse_named("preprocess", &self.preprocess)?;
        let second_layer: SecondLayerInit = parse_named("second_layer", &self.second_layer)?;
        if self.d < 2 {
            return Err(Error::invalid("d", ">= 2", self.d));
        }
        if self.p == 0 {
            return Err(Error::invalid("p", "> 0", self.p));
        }
        if self.degree == 0 || self.degree > 12 {
            return Err(Error::invalid("degree", "between 1 and 12", self.degree));
        }
        if self.steps == 0 || self.steps > 100 {
            return Err(Error::invalid("steps", "between 1 and 100", self.steps));
        }
        if !(self.kappa > 0.0 && self.kappa <= 8.0) {
            return Err(Error::invalid("kappa", "in (0, 8] (n = d^kappa)", self.kappa));
        }
        // Ranges where the formulas mean something: beyond them a batch is more samples than
        // any machine draws (α, β ≤ 1e9) or a step moves a neuron by more than 1e6 of its norm.
        for (name, v, max) in [
            ("alpha", Some(self.alpha), 1e9),
            ("beta", Some(self.beta), 1e9),
            ("eta0", Some(self.eta0), 1e6),
            ("eta_exp", Some(self.eta_exp), 10.0),
            ("gamma", self.gamma, 1e6),
            ("gamma_later", self.gamma_later, 1e6),
        ] {
            if let Some(v) = v {
                let positive = matches!(name, "alpha" | "beta");
                if !v.is_finite() || v < 0.0 || (positive && v == 0.0) || v > max {
                    let low = if positive { "in (0" } else { "in [0" };
                    let shown = if v.abs() >= 1e6 {
                        format!("{v:e}")
                    } else {
                        v.to_string()
                    };
                    return Err(Error::invalid(name, format!("{low}, {max:e}]"), shown));
                }
            }
        }
        let d = self.d as f64;
        let n = d.powf(self.kappa);
        let batch = super::batch::FiniteBatch {
            d,
            n,
            gamma: self.gamma.unwrap_or(self.eta0 * (n / d).powf(self.eta_exp)),
        };
        let opts = TheoryOptions {
            activation: parse_named("activation", &self.activation)?,
            steps: self.steps,
            kappa: self.kappa,
            alpha: self.alpha,
            gamma: self.gamma.unwrap_or(self.eta0 * self.alpha.powf(self.eta_exp)),
            eta0: self.eta0,
            beta: self.beta,
            log_d_p: (self.p as f64).ln() / (self.d as f64).ln(),
            preprocess,
            normalize: self.normalize,
            correlation: self.correlation,
            max_degree: self.degree,
            leap: true,
            second_layer,
            gamma_later: self.gamma_later,
            batch,
            cancel: crate::error::Cancel::default(),
        };
        Ok((expr, r, opts))
    }

    /// Resolves and answers the question (the object of `giantstep theory --json`).
    ///
    /// # Errors
    /// As [`Query::resolve`] and [`analyze`].
    pub fn analyze(&self) -> Result<TheoryReport> {
        self.analyze_with(crate::error::Cancel::default())
    }

    /// [`Query::analyze`] that stops with [`crate::Error::Cancelled`] once `cancel` is set (checked
    /// between the recursions' steps and within them).
    ///
    /// # Errors
    /// As [`Query::analyze`], and [`crate::Error::Cancelled`].
    pub fn analyze_with(&self, cancel: crate::error::Cancel) -> Result<TheoryReport> {
        let (expr, r, mut opts) = self.resolve()?;
        opts.cancel = cancel;
        analyze(&expr, r, &opts)
    }
}
