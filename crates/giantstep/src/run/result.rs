//! What a run returns: per-step records, the result (the schema of `giantstep run --json`), the
//! theory attached to it, and the weights.

use crate::config::Config;
use crate::observe::{GradientGeometry, Overlaps};
use serde::{Deserialize, Serialize};

/// What one giant step did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// Step index, from 1.
    pub t: usize,
    /// Batch size.
    pub n: usize,
    /// Learning rate.
    pub eta: f64,
    /// `(1/n) Σ (ỹ − f)²` on the step's batch before the step.
    pub batch_mse: f64,
    /// Overlaps after the step.
    #[serde(flatten)]
    pub overlaps: Overlaps,
    /// Geometry of the step's gradient.
    #[serde(flatten)]
    pub gradient: GradientGeometry,
    /// Test error of the readout fitted after this step (only with `eval.every_step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_error: Option<f64>,
    /// Train error of that readout (only with `eval.every_step`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_error: Option<f64>,
}

/// The result of a run (the object printed by `giantstep run --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// giantstep version that produced it.
    pub version: String,
    /// The fully resolved configuration.
    pub config: Config,
    /// Number of teacher directions.
    pub r: usize,
    /// `sqrt(2/(π d))`: the mean |cos| of a random row with a fixed direction.
    pub random_level: f64,
    /// Overlaps at initialization.
    pub initial: Overlaps,
    /// One record per step.
    pub steps: Vec<StepRecord>,
    /// Test error of the trained network with its ridge readout.
    pub test_error: f64,
    /// Train error of the readout (on the readout batch).
    pub train_error: f64,
    /// Test error of the same readout on the initial first layer (random features); `null` with
    /// `eval.baseline = false`.
    pub rf_test_error: Option<f64>,
    /// Train error of the random-features readout (`null` with `eval.baseline = false`).
    pub rf_train_error: Option<f64>,
    /// `mean y²` on the test set: the error of predicting 0.
    pub test_label_second_moment: f64,
    /// The theory's predictions next to the measurements (absent when `eval.theory = false`,
    /// `r > 8`, or the target has no Hermite expansion; then `theory_note` says why).
    pub theory: Option<RunTheory>,
    /// Why `theory` is absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theory_note: Option<String>,
    /// Warnings about the run that are not the attached theory's: for a target function given at
    /// run time, the stability check of the later steps (docs/stairway.md). Omitted when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// The weights, with [`RunOptions::keep_weights`](crate::RunOptions::keep_weights) (not part of the JSON).
    #[serde(skip)]
    pub weights: Option<Weights>,
}

/// Theory next to simulation, per step (docs/theory.md against docs/model.md §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunTheory {
    /// `E[g²] − μ0² − |μ1|²`.
    pub linear_kernel_error: f64,
    /// `μ0` (used by the `oracle` add-back).
    pub mu0: f64,
    /// `μ1` in teacher coordinates.
    pub mu1: Vec<f64>,
    /// The one-step closed form at `α = n/d`, `γ = η/p` (mean |cos| with `μ1/|μ1|`).
    pub one_step_cosine: f64,
    /// The one-step closed form at `β = n/d²` (mean |cos| per direction).
    pub quadratic_one_step: Vec<f64>,
    /// The one-step closed form at this run's `(n, d, γ)`, any `κ` (mean |cos| per direction).
    #[serde(default)]
    pub one_step_at_kappa: Vec<f64>,
    /// The degree of `g*` that dominates one step at this `κ` as `d → ∞` (`None`: nothing learned).
    #[serde(default)]
    pub dominant_degree: Option<u32>,
    /// Activation-aware predicted mean |cos| per step and direction (`n = αd` recursion).
    pub predicted_mean_abs_cos: Vec<Vec<f64>>,
    /// Measured mean |cos| per step and direction (copied from `steps`).
    pub measured_mean_abs_cos: Vec<Vec<f64>>,
    /// Dimension of the generic `U_t` at `ℓ = ⌊log n / log d⌋`.
    pub generic_subspace_dims: Vec<usize>,
    /// Dimension of the activation-aware subspace per step.
    pub predicted_subspace_dims: Vec<usize>,
    /// Dimension of the measured subspace: teacher-Gram eigenvalues above `10/d`.
    pub measured_subspace_dims: Vec<usize>,
    /// Principal angles (degrees) between predicted and measured subspaces per step.
    pub principal_angles_deg: Vec<Vec<f64>>,
    /// Directions the activation blocks (messages).
    pub blocked: Vec<String>,
    /// Caveats (regime of validity).
    pub warnings: Vec<String>,
    /// Predicted test error after this many steps, from the state evolution of all neurons and
    /// the ridge readout (docs/theory.md §6); `None` where it is not reported (`log n / log d < 1`,
    /// `p > 1024`, `T > 16`, `train.reuse > 1`, a target function given at run time).
    #[serde(default)]
    pub test_error: Option<f64>,
    /// Predicted random-features test error (the same readout on the initial layer).
    #[serde(default)]
    pub rf_test_error: Option<f64>,
}

/// The weights of a run, returned with [`RunOptions::keep_weights`](crate::RunOptions::keep_weights) (row-major matrices).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Weights {
    /// Input dimension `d`.
    pub d: usize,
    /// Width `p`.
    pub p: usize,
    /// Teacher rank `r`.
    pub r: usize,
    /// The first layer at initialization, `p×d`.
    pub w0: Vec<f64>,
    /// The first layer after the last step, `p×d`.
    pub w: Vec<f64>,
    /// The second layer at initialization (fixed during training), length `p`.
    pub a: Vec<f64>,
    /// The teacher `W*`, `r×d` with orthonormal rows.
    pub w_star: Vec<f64>,
    /// The ridge readout `â` on the trained layer, length `p`.
    pub readout: Vec<f64>,
    /// The ridge readout on the initial layer (random features), when the baseline was fitted.
    pub rf_readout: Option<Vec<f64>>,
    /// The state after each step this run trained (a continued run: its own steps only).
    pub steps: Vec<StepState>,
}

/// The first layer's state after step `t` (docs/model.md §4): overlaps with the teacher and
/// between neurons, and the layer itself when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    /// The step, from 1.
    pub t: usize,
    /// `M_t = W_t W*ᵀ`, `p×r` row-major.
    pub m: Vec<f64>,
    /// `Q_t = W_t W_tᵀ`, `p×p` row-major.
    pub q: Vec<f64>,
    /// `W_t`, `p×d` row-major, with [`RunOptions::keep_every_step`](crate::RunOptions::keep_every_step).
    pub w: Option<Vec<f64>>,
}
