//! One complete simulation: initialization, `T` giant steps with observables after each, the
//! ridge readout on the trained and on the initial first layer (random-features baseline), and the
//! test errors. The JSON form of [`RunResult`] is the schema of `giantstep run --json`.

use crate::config::{AddBack, Config, Loss, Normalize, Preprocess, ReadoutBatch, ValidConfig};
use crate::data::{Purpose, StreamKey};
use crate::engine::{self, Batch, ErrorSignal, Exec, Readout};
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::linalg::{dot, norm};
use crate::network::Network;
use crate::observe::{gradient_geometry, overlaps, GradientGeometry, Overlaps};
use crate::target::{CustomTarget, Target};
use serde::{Deserialize, Serialize};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

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
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
    /// The weights, with [`RunOptions::keep_weights`] (not part of the JSON).
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

/// A phase of a run, reported to an [`Observer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Giant step `t` of `of` starts.
    Step {
        /// The step, from 1.
        t: usize,
        /// The number of steps trained.
        of: usize,
    },
    /// The ridge readouts are fitted.
    Readout,
    /// The test errors are measured.
    Test,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Step { t, of } => write!(f, "step {t}/{of}"),
            Phase::Readout => f.write_str("readout"),
            Phase::Test => f.write_str("test"),
        }
    }
}

/// What a run reports while it works: a progress bar, a log, a notebook's live plot. Every
/// method has an empty default; observers never change results.
pub trait Observer {
    /// A phase starts.
    fn phase(&mut self, _phase: Phase) {}
    /// Step `record.t` finished (its overlaps and gradient geometry are in `record`).
    fn step_finished(&mut self, _record: &StepRecord) {}
}

/// Observes nothing.
impl Observer for () {}

/// A closure receives each phase as a short message (`"step 1/3"`, `"readout"`, `"test"`).
impl<F: FnMut(&str)> Observer for F {
    fn phase(&mut self, phase: Phase) {
        self(&phase.to_string())
    }
}

/// The weights of a run, returned with [`RunOptions::keep_weights`] (row-major matrices).
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
}

/// Optional inputs and controls of a run; `RunOptions::default()` is a plain [`run`].
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Receives the phases and steps (a progress bar, a log).
    pub observer: Option<&'a mut dyn Observer>,
    /// Start from this first layer (`p×d` row-major, finite) instead of drawing it.
    pub first_layer: Option<&'a [f64]>,
    /// Start from this second layer (length `p`, finite) instead of drawing it.
    pub second_layer: Option<&'a [f64]>,
    /// Use this teacher `W*` (`r×d` row-major, orthonormal rows) instead of drawing it.
    pub teacher: Option<&'a [f64]>,
    /// Compute the labels with this function instead of the configured expression (no theory).
    pub target: Option<CustomTarget>,
    /// Stops the run between chunks when set ([`Error::Cancelled`]).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Return the weights in [`RunResult::weights`].
    pub keep_weights: bool,
    /// Random-features baselines shared with other runs (a sweep passes one to all its points):
    /// a run whose baseline is already there reuses it instead of fitting and testing it again.
    /// Ignored when the run is given its own weights, teacher or target.
    pub baselines: Option<Arc<BaselineCache>>,
}

/// Random-features baselines (the ridge readout of the initial layer and its test error) by
/// everything that determines them: the resolved configuration without the learning rate and
/// the number of steps, and the readout batch. Runs that differ only in the learning rate
/// (a sweep over `eta0`) or that read out the same batch share one baseline; a shared baseline
/// is bit-identical to a recomputed one, so records do not depend on sharing.
#[derive(Debug, Default)]
pub struct BaselineCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (Readout, f64)>>,
}

impl BaselineCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Baselines held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no baseline is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, key: &str) -> Option<(Readout, f64)> {
        self.entries.lock().ok()?.get(key).cloned()
    }

    fn insert(&self, key: String, value: (Readout, f64)) {
        if let Ok(mut e) = self.entries.lock() {
            e.entry(key).or_insert(value);
        }
    }
}

/// The part of a resolved configuration a random-features baseline depends on.
fn baseline_config_key(cfg: &ValidConfig) -> String {
    let mut v = serde_json::to_value(cfg).expect("serializable");
    if let Some(train) = v.get_mut("train").and_then(|t| t.as_object_mut()) {
        for k in [
            "steps",
            "eta0",
            "eta_exp",
            "eta",
            "eta_max0",
            "eta_schedule",
            "eta_max0_later",
        ] {
            train.remove(k);
        }
    }
    v.to_string()
}

/// Runs the simulation of docs/model.md §3 for a validated configuration.
///
/// ```
/// use giantstep::{run, Config};
/// let mut config = Config::default();
/// config.network.d = 32;
/// config.network.p = 16;
/// config.eval.n_test = 500;
/// let result = run(&config.resolve()?)?;
/// assert!(result.test_error < result.rf_test_error.unwrap());
/// # Ok::<(), giantstep::Error>(())
/// ```
///
/// # Errors
/// Memory beyond this machine's or a target that is not square-integrable
/// ([`Error::Config`]), non-finite weights ([`Error::NonFinite`]), a singular ridge system.
pub fn run(config: &ValidConfig) -> Result<RunResult> {
    run_with(config, RunOptions::default())
}

/// [`run`] with the inputs and controls of `options`: an observer, given weights or teacher, a
/// target function, a cancel flag, the weights returned.
///
/// With `eval.every_step = true` the readout and test error are also measured after every step
/// `t < T` (one pass over the readout batch and one over the test set for all of them), and
/// stored in `steps[t].test_error` / `steps[t].train_error`; every other field is as without it.
///
/// # Errors
/// As [`run`]; wrong shapes or non-finite values of given arrays ([`Error::Config`]), a failing
/// target function ([`Error::Target`]), cancellation ([`Error::Cancelled`]).
pub fn run_with(config: &ValidConfig, options: RunOptions) -> Result<RunResult> {
    let steps = config.train.steps;
    let eval_at: Vec<usize> = if config.eval.every_step {
        (1..=steps).collect()
    } else {
        vec![steps]
    };
    let mut outcomes = run_prefixes_with(config, &eval_at, options)?;
    let mut last = outcomes.pop().expect("one outcome per evaluated T")?;
    for (t, outcome) in outcomes.into_iter().enumerate() {
        let r = outcome?;
        last.steps[t].test_error = Some(r.test_error);
        last.steps[t].train_error = Some(r.train_error);
    }
    if config.eval.every_step {
        last.steps[steps - 1].test_error = Some(last.test_error);
        last.steps[steps - 1].train_error = Some(last.train_error);
    }
    Ok(last)
}

/// Trains once up to the largest `T` in `eval_at` and returns, for each `T` in `eval_at` (in
/// that order), the result that `run` gives for the same configuration with `train.steps = T`,
/// bit-identical except `elapsed_s`: the steps are the same, the readouts of all `T` are fitted
/// in one pass over the readout batch (one random-features readout when the readout batch is
/// fresh) and tested in one pass over the test set.
///
/// The outcome of a `T` is an error when training diverged at or before step `T`, or when its
/// readout failed; earlier `T` still have their results.
///
/// # Errors
/// An empty `eval_at` or a `T` of 0 or above the step limit (the per-`T` errors are in the
/// vector).
pub fn run_prefixes(config: &ValidConfig, eval_at: &[usize]) -> Result<Vec<Result<RunResult>>> {
    run_prefixes_shared(config, eval_at, None, None)
}

/// [`run_prefixes`] that stops between chunks when `cancel` is set and shares its
/// random-features baselines through `baselines`.
pub(crate) fn run_prefixes_shared(
    config: &ValidConfig,
    eval_at: &[usize],
    cancel: Option<Arc<AtomicBool>>,
    baselines: Option<Arc<BaselineCache>>,
) -> Result<Vec<Result<RunResult>>> {
    let t_max = eval_at.iter().copied().max().unwrap_or(0).max(1);
    let mut cfg = config.with_steps(t_max)?;
    if cfg.eval.every_step {
        let mut c = cfg.into_config();
        c.eval.every_step = false;
        cfg = c.resolve()?;
    }
    let options = RunOptions {
        cancel,
        baselines,
        ..Default::default()
    };
    run_prefixes_with(&cfg, eval_at, options)
}

fn run_prefixes_with(cfg: &ValidConfig, eval_at: &[usize], options: RunOptions) -> Result<Vec<Result<RunResult>>> {
    if eval_at.is_empty() || eval_at.iter().any(|&t| t == 0 || t > cfg.train.steps) {
        return Err(Error::config(format!(
            "steps to evaluate must lie in 1..={}, but are {eval_at:?}",
            cfg.train.steps
        )));
    }
    check_memory(cfg.memory_estimate(eval_at.len()), cfg)?;
    match cfg.precision {
        crate::config::Precision::F64 => run_typed::<f64>(cfg, eval_at, options),
        crate::config::Precision::F32 => run_typed::<f32>(cfg, eval_at, options),
    }
}

/// The configuration a separate run of `T` steps would have.
fn config_at(cfg: &Config, t: usize) -> Config {
    let mut c = cfg.clone();
    c.train.steps = t;
    c.eval.every_step = false;
    c
}

/// The training batch of step `t` (from 1).
fn train_batch(cfg: &ValidConfig, t: usize) -> Batch {
    Batch {
        key: StreamKey::new(cfg.seed, Purpose::Train, ((t - 1) / cfg.train.reuse) as u64),
        n: cfg.train_n(),
    }
}

/// The teacher and the network a run starts from: drawn from the seed, or given.
fn setup(cfg: &ValidConfig, options: &mut RunOptions) -> Result<(Target, Network)> {
    let net_cfg = &cfg.network;
    let (d, p, r) = (net_cfg.d, net_cfg.p, cfg.r());
    let mut target = Target::new(cfg.expr().clone(), r, d, cfg.target.teacher, cfg.target.noise, cfg.seed)?;
    if let Some(w_star) = options.teacher {
        target.set_teacher(w_star, "the teacher W_star")?;
    }
    match options.target.take() {
        Some(custom) => target.set_custom(custom),
        None => check_target(cfg.expr(), r)?,
    }
    let mut net = Network::init(net_cfg, cfg.seed);
    if let Some(w0) = options.first_layer {
        net.w = given("the first layer W0", w0, p, d)?;
    }
    if let Some(a) = options.second_layer {
        net.a = given("the second layer a", a, p, 1)?;
    }
    Ok((target, net))
}

/// A copy of a given `rows×cols` array after checking its length and finiteness.
pub(crate) fn given(what: &str, v: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    let shape = if cols == 1 {
        format!("({rows},)")
    } else {
        format!("({rows}, {cols})")
    };
    if v.len() != rows * cols {
        return Err(Error::config(format!(
            "{what} must have shape {shape}, but has {} entries",
            v.len()
        )));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::config(format!(
            "{what} must be finite, but entry {} is {}",
            if cols == 1 {
                format!("{i}")
            } else {
                format!("({}, {})", i / cols, i % cols)
            },
            v[i]
        )));
    }
    Ok(v.to_vec())
}

/// Stops a run whose caller cancelled it or whose target function failed.
fn interrupted(exec: &Exec, target: &Target) -> Result<()> {
    if let Some(e) = target.custom_error() {
        return Err(e);
    }
    if exec.cancelled() {
        return Err(Error::Cancelled);
    }
    Ok(())
}

/// What training produced: the step records, the layer after each evaluated step, and the
/// error that stopped training early.
struct Trained {
    steps: Vec<StepRecord>,
    snapshots: Vec<(usize, Vec<f64>)>,
    diverged: Option<Error>,
}

impl Trained {
    fn layer(&self, t: usize) -> &[f64] {
        &self
            .snapshots
            .iter()
            .find(|(s, _)| *s == t)
            .expect("snapshot of an evaluated step")
            .1
    }
}

/// Context shared by the phases of one run.
struct Ctx<'a> {
    cfg: &'a ValidConfig,
    exec: Exec,
    target: Target,
    eval_at: &'a [usize],
    baselines: Option<&'a BaselineCache>,
}

/// Giant steps `1..=max(eval_at)` (docs/model.md §3), keeping the layer after each evaluated one.
fn train<T: crate::linalg::Real>(ctx: &Ctx, net: &mut Network, observer: &mut dyn Observer) -> Result<Trained> {
    let (cfg, exec, target) = (ctx.cfg, &ctx.exec, &ctx.target);
    let (d, p, r) = (net.d, net.p, target.r);
    let signal = match cfg.train.loss {
        Loss::Residual => ErrorSignal::Residual,
        Loss::Correlation => ErrorSignal::Correlation,
    };
    let t_max = ctx.eval_at.iter().copied().max().expect("non-empty");
    let mut out = Trained {
        steps: Vec::with_capacity(t_max),
        snapshots: Vec::new(),
        diverged: None,
    };
    for t in 1..=t_max {
        observer.phase(Phase::Step { t, of: t_max });
        let eta = cfg.eta_at(t);
        let batch = train_batch(cfg, t);
        let shift = preprocess_shift(exec, target, &batch, cfg.train.preprocess_at(t));
        let grad = engine::gradient::<T>(exec, net, target, &batch, shift.as_ref(), signal);
        interrupted(exec, target)?;
        let mut step = || -> Result<StepRecord> {
            let geometry = gradient_geometry(&grad.g, &net.w, p, d, &target.w_star, r)?;
            apply_step(&mut net.w, &grad.g, eta, p, d, cfg.train.normalize);
            if net.w.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite { step: t, eta });
            }
            Ok(StepRecord {
                t,
                n: batch.n,
                eta,
                batch_mse: grad.batch_mse,
                overlaps: overlaps(&net.w, p, d, &target.w_star, r)?,
                gradient: geometry,
                test_error: None,
                train_error: None,
            })
        };
        match step() {
            Ok(record) => {
                observer.step_finished(&record);
                out.steps.push(record);
            }
            Err(e) => {
                // The results of T >= t fail with this error; earlier T keep theirs.
                out.diverged = Some(e);
                break;
            }
        }
        if ctx.eval_at.contains(&t) {
            out.snapshots.push((t, net.w.clone()));
        }
    }
    Ok(out)
}

/// The trained readout of one `T` and its random-features readout (absent without baseline).
type Fitted = (Result<Readout>, Option<Result<Readout>>);

/// Per evaluated `T`: the trained readout and the random-features readout (unless
/// `eval.baseline = false`), or why not; and the readout group of each `T` (the `T` that share a
/// readout batch share one random-features readout).
struct Fits {
    fitted: Vec<Option<Fitted>>,
    group_of: Vec<usize>,
    /// Per readout group: the baseline's test error when it came from the cache, and the
    /// cache key under which a newly computed baseline is stored.
    rf_known: Vec<Option<f64>>,
    rf_key: Vec<Option<String>>,
}

/// The ridge readouts of every evaluated `T` (docs/model.md §3.2): the layers that share a
/// readout batch are fitted in one pass.
fn fit_all<T: crate::linalg::Real>(
    ctx: &Ctx,
    net: &Started,
    trained: &Trained,
    theories: &[Option<Result<RunTheory>>],
) -> Result<Fits> {
    let (cfg, exec, target) = (ctx.cfg, &ctx.exec, &ctx.target);
    let (d, p) = (net.d, net.p);
    let done = trained.steps.len();
    let readout_batch_of = |t: usize| match cfg.readout.batch {
        ReadoutBatch::Last => train_batch(cfg, t),
        ReadoutBatch::Fresh => Batch {
            key: StreamKey::new(cfg.seed, Purpose::Readout, 0),
            n: cfg.readout_n(),
        },
    };
    let k = ctx.eval_at.len();
    let mut fits = Fits {
        fitted: (0..k).map(|_| None).collect(),
        group_of: vec![usize::MAX; k],
        rf_known: Vec::new(),
        rf_key: Vec::new(),
    };
    let mut groups: Vec<(Batch, Vec<usize>)> = Vec::new();
    for (i, &t) in ctx.eval_at.iter().enumerate() {
        if t > done {
            continue;
        }
        let b = readout_batch_of(t);
        match groups.iter_mut().find(|(gb, _)| gb.key == b.key && gb.n == b.n) {
            Some((_, members)) => members.push(i),
            None => groups.push((b, vec![i])),
        }
    }
    for (g, (_, members)) in groups.iter().enumerate() {
        for &i in members {
            fits.group_of[i] = g;
        }
    }
    let config_key = ctx.baselines.map(|_| baseline_config_key(cfg));
    for (batch, members) in &groups {
        let key = config_key.as_ref().map(|c| format!("{c}|{:?}|{}", batch.key, batch.n));
        let cached = match (ctx.baselines, &key) {
            (Some(cache), Some(key)) if cfg.eval.baseline => cache.get(key),
            _ => None,
        };
        fits.rf_known.push(cached.as_ref().map(|c| c.1));
        fits.rf_key.push(if cached.is_none() { key } else { None });
        let shift = match readout_shift(cfg, exec, target, batch, &theories[members[0]]) {
            Ok(s) => s,
            Err(e) => {
                for &i in members {
                    fits.fitted[i] = Some((Err(e.clone()), None));
                }
                continue;
            }
        };
        let mut layers: Vec<&[f64]> = members.iter().map(|&i| trained.layer(ctx.eval_at[i])).collect();
        let fit_rf = cfg.eval.baseline && cached.is_none();
        if fit_rf {
            layers.push(&net.w0);
        }
        let problem = engine::ReadoutProblem {
            d,
            p,
            activation: net.activation,
            target,
            batch,
            shift: shift.as_ref(),
            lambda: cfg.readout.lambda,
        };
        let mut outs = engine::fit_readouts_each::<T>(exec, &layers, &problem);
        interrupted(exec, target)?;
        let rf = match cached {
            Some((readout, _)) => Some(Ok(readout)),
            None => fit_rf.then(|| outs.pop().expect("the random-features layer")),
        };
        for (&i, out) in members.iter().zip(outs) {
            fits.fitted[i] = Some((out, rf.clone()));
        }
    }
    Ok(fits)
}

/// Test errors of every fitted model in one pass over the test set: per evaluated `T` the
/// positions of (trained, random-features) in the returned errors, and `mean y²`.
type Tested = (Vec<f64>, Vec<Option<(usize, Option<RfError>)>>, f64);

/// Where a baseline's test error is: a position in the test pass's errors, or known already.
#[derive(Debug, Clone, Copy)]
enum RfError {
    Tested(usize),
    Known(f64),
}

fn test_all<T: crate::linalg::Real>(ctx: &Ctx, net: &Started, trained: &Trained, fits: &Fits) -> Result<Tested> {
    let (cfg, exec, target) = (ctx.cfg, &ctx.exec, &ctx.target);
    let test_batch = Batch {
        key: StreamKey::new(cfg.seed, Purpose::Test, 0),
        n: cfg.eval.n_test,
    };
    let test_shift = (cfg.readout.add_back == AddBack::Test && cfg.train.readout_preprocess() != Preprocess::None)
        .then(|| preprocess_shift(exec, target, &test_batch, cfg.train.readout_preprocess()))
        .flatten();
    // Every (layer, readout) pair to test; the random-features model of a readout group is
    // tested once.
    let mut models: Vec<(&[f64], Readout)> = Vec::new();
    let mut slots: Vec<Option<(usize, Option<RfError>)>> = vec![None; ctx.eval_at.len()];
    let mut rf_slot: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    let with_test_shift = |ro: &Readout| {
        let mut ro = ro.clone();
        if let Some(sh) = &test_shift {
            ro.shift = Some(sh.clone());
        }
        ro
    };
    for (i, f) in fits.fitted.iter().enumerate() {
        let Some((Ok(tr), rf)) = f else { continue };
        let group = fits.group_of[i];
        let irf = match rf {
            Some(Ok(_)) if fits.rf_known[group].is_some() => fits.rf_known[group].map(RfError::Known),
            Some(Ok(rf)) => Some(RfError::Tested(*rf_slot.entry(group).or_insert_with(|| {
                models.push((&net.w0, with_test_shift(rf)));
                models.len() - 1
            }))),
            Some(Err(_)) => continue,
            None => None,
        };
        slots[i] = Some((models.len(), irf));
        models.push((trained.layer(ctx.eval_at[i]), with_test_shift(tr)));
    }
    let pairs: Vec<(&[f64], &Readout)> = models.iter().map(|(w, ro)| (*w, ro)).collect();
    let (errors, y2) = if pairs.is_empty() {
        (vec![], 0.0)
    } else {
        let problem = engine::TestProblem {
            d: net.d,
            p: net.p,
            activation: net.activation,
            target,
            batch: &test_batch,
        };
        engine::test_errors::<T>(exec, &pairs, &problem)
    };
    interrupted(exec, target)?;
    if let Some(cache) = ctx.baselines {
        for (i, f) in fits.fitted.iter().enumerate() {
            let group = fits.group_of[i];
            if let (Some((Ok(_), Some(Ok(rf)))), Some(key), Some((_, Some(RfError::Tested(k))))) =
                (f, &fits.rf_key[group], slots[i])
            {
                cache.insert(key.clone(), (rf.clone(), errors[k]));
            }
        }
    }
    Ok((errors, slots, y2))
}

fn run_typed<T: crate::linalg::Real>(
    cfg: &ValidConfig,
    eval_at: &[usize],
    mut options: RunOptions,
) -> Result<Vec<Result<RunResult>>> {
    let start = Instant::now();
    let (d, r) = (cfg.network.d, cfg.r());
    let custom_name = options.target.as_ref().map(|c| c.name.clone());
    // A baseline is shared only between runs that draw their own weights, teacher and labels.
    let shareable = options.first_layer.is_none()
        && options.second_layer.is_none()
        && options.teacher.is_none()
        && options.target.is_none();
    let baselines = options.baselines.clone().filter(|_| shareable);
    let (target, net) = setup(cfg, &mut options)?;
    let mut exec = Exec::new(cfg.chunk, cfg.threads)?;
    if let Some(flag) = options.cancel.clone() {
        exec = exec.with_cancel(flag);
    }
    let mut noop = ();
    let observer: &mut dyn Observer = match options.observer {
        Some(o) => o,
        None => &mut noop,
    };
    let ctx = Ctx {
        cfg,
        exec,
        target,
        eval_at,
        baselines: baselines.as_deref(),
    };
    let mut net = Started::from(net);
    let initial = overlaps(&net.w0, net.p, d, &ctx.target.w_star, r)?;
    let trained = train::<T>(&ctx, &mut net.net, observer)?;
    let done = trained.steps.len();

    observer.phase(Phase::Readout);
    let theories = theories(&ctx, &net, &trained, custom_name.as_deref());
    let fits = fit_all::<T>(&ctx, &net, &trained, &theories)?;
    observer.phase(Phase::Test);
    let (errors, slots, y2) = test_all::<T>(&ctx, &net, &trained, &fits)?;

    let mut fits = fits;
    let mut out = Vec::with_capacity(eval_at.len());
    for (i, &t) in eval_at.iter().enumerate() {
        if t > done {
            out.push(Err(trained.diverged.clone().expect("training stopped early")));
            continue;
        }
        let (tr, rf) = match fits.fitted[i].take().expect("fitted") {
            (Ok(tr), None) => (tr, None),
            (Ok(tr), Some(Ok(rf))) => (tr, Some(rf)),
            (Err(e), _) | (_, Some(Err(e))) => {
                out.push(Err(e));
                continue;
            }
        };
        let (it, irf) = slots[i].expect("tested");
        let mut cfg_t = config_at(cfg, t);
        if let Some(name) = &custom_name {
            cfg_t.target.expr = Some(name.clone());
            cfg_t.target.preset = None;
        }
        let weights = options
            .keep_weights
            .then(|| net.weights(trained.layer(t), &ctx.target, &tr, rf.as_ref()));
        let (theory, theory_note) = attached(cfg, &theories[i]);
        out.push(Ok(RunResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            r,
            random_level: (2.0 / (std::f64::consts::PI * d as f64)).sqrt(),
            initial: initial.clone(),
            steps: trained.steps[..t].to_vec(),
            test_error: errors[it],
            train_error: tr.train_error,
            rf_test_error: irf.map(|e| match e {
                RfError::Tested(k) => errors[k],
                RfError::Known(e) => e,
            }),
            rf_train_error: rf.map(|ro| ro.train_error),
            test_label_second_moment: y2,
            theory_note,
            theory,
            elapsed_s: start.elapsed().as_secs_f64(),
            config: cfg_t,
            weights,
        }));
    }
    Ok(out)
}

/// The theory per evaluated `T` (also computed for the oracle add-back, which needs it), or
/// `None` when neither asks for it or training stopped before `T`.
/// Widest network for which a run attaches the predicted test error (its cost grows like p³).
const PREDICT_MAX_P: usize = 1024;
/// Most steps for which a run attaches the predicted test error.
const PREDICT_MAX_STEPS: usize = 16;

fn theories(
    ctx: &Ctx,
    start: &Started,
    trained: &Trained,
    custom_name: Option<&str>,
) -> Vec<Option<Result<RunTheory>>> {
    let cfg = ctx.cfg;
    let wanted = cfg.eval.theory || cfg.readout.add_back == AddBack::Oracle;
    let t_max = trained.steps.len();
    let predicted = (cfg.eval.theory
        && custom_name.is_none()
        && cfg.network.p <= PREDICT_MAX_P
        && (1..=PREDICT_MAX_STEPS).contains(&t_max)
        && crate::theory::curve::kappa_of(cfg) >= crate::theory::curve::KAPPA_MIN
        && cfg.train.reuse == 1)
        .then(|| crate::theory::curve::predict_from(cfg, t_max, &start.w0, &start.net.a, &ctx.target.w_star).ok())
        .flatten();
    ctx.eval_at
        .iter()
        .map(|&t| {
            (t <= trained.steps.len() && wanted).then(|| match custom_name {
                Some(name) => Err(Error::config(format!(
                    "the target is a function given at run time ({name}); the theory needs an expression"
                ))),
                None => theory_for(cfg, t, &ctx.target, &trained.steps[..t]).map(|mut th| {
                    if let Some(p) = &predicted {
                        th.test_error = p.steps.get(t - 1).map(|s| s.test_error);
                        th.rf_test_error = Some(p.rf_test_error);
                        let kappa = crate::theory::curve::kappa_of(cfg);
                        if kappa < crate::theory::curve::KAPPA_CHECKED {
                            th.warnings.push(format!(
                                "predicted test error at log n / log d = {kappa:.2} < {}: measured gaps to simulation reach 0.1-0.18 there (e.g. z1 + z1*z2 at n = 4d); docs/theory.md §6",
                                crate::theory::curve::KAPPA_CHECKED
                            ));
                        }
                    }
                    th
                }),
            })
        })
        .collect()
}

/// The theory a result carries, or why not.
fn attached(cfg: &ValidConfig, theory: &Option<Result<RunTheory>>) -> (Option<RunTheory>, Option<String>) {
    match theory {
        None => (None, Some("eval.theory = false".into())),
        Some(Err(e)) => (None, Some(e.to_string())),
        Some(Ok(_)) if !cfg.eval.theory => (None, Some("eval.theory = false".into())),
        Some(Ok(th)) => (Some(th.clone()), None),
    }
}

/// The network being trained and its first layer at initialization.
struct Started {
    net: Network,
    w0: Vec<f64>,
}

impl From<Network> for Started {
    fn from(net: Network) -> Started {
        Started { w0: net.w.clone(), net }
    }
}

impl Started {
    /// The weights of a result: this start, the layer after training, the teacher, the readouts.
    fn weights(&self, w: &[f64], target: &Target, readout: &Readout, rf: Option<&Readout>) -> Weights {
        Weights {
            d: self.net.d,
            p: self.net.p,
            r: target.r,
            w0: self.w0.clone(),
            w: w.to_vec(),
            a: self.net.a.clone(),
            w_star: target.w_star.clone(),
            readout: readout.coef.clone(),
            rf_readout: rf.map(|ro| ro.coef.clone()),
        }
    }
}

impl std::ops::Deref for Started {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.net
    }
}

/// The checks a run makes before any work: the memory it needs against this machine's, and
/// the target (finite, square-integrable). A caller that wants to warn about a long run calls
/// this first, so that a refused run prints nothing else.
///
/// # Errors
/// As [`run`], for what can be known before simulating.
pub fn preflight(config: &ValidConfig) -> Result<()> {
    let evaluated = if config.eval.every_step { config.train.steps } else { 1 };
    check_memory(config.memory_estimate(evaluated), config)?;
    check_target(config.expr(), config.r())
}

/// Total memory of this machine in bytes (`MemTotal` of /proc/meminfo), if known.
fn machine_memory() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb * 1024.0)
}

fn human_bytes(b: f64) -> String {
    match b {
        b if b >= 1e12 => format!("{:.1} TB", b / 1e12),
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b => format!("{:.0} MB", b / 1e6),
    }
}

/// Refuses a run that cannot fit in this machine's memory before allocating anything.
fn check_memory(needed: f64, cfg: &ValidConfig) -> Result<()> {
    let Some(have) = machine_memory() else { return Ok(()) };
    if needed > have {
        let (d, p) = (cfg.network.d, cfg.network.p);
        return Err(Error::config(format!(
            "this run needs about {} of memory (p·d = {} weights per copy, p² = {} per Gram matrix, {} threads × chunk·(d+p)); this machine has {}",
            human_bytes(needed),
            p as f64 * d as f64,
            p as f64 * p as f64,
            cfg.threads,
            human_bytes(have)
        )));
    }
    Ok(())
}

/// Refuses, before any simulation, a target that is not finite or not square-integrable under
/// the Gaussian: for `r <= 4` the checks of the theory's Hermite expansion on its quadrature grid
/// (at least 44 nodes per axis), beyond that finiteness at 2·10⁵ Gaussian samples (coarser grids
/// would flag polynomials as heavy-tailed).
fn check_target(expr: &Expr, r: usize) -> Result<()> {
    // A sweep runs many points of one target (and the CLI's preflight checks before the run):
    // the verdict is kept per (expression, r) for the process (at r = 4 the check costs ~0.3 s).
    static CHECKED: std::sync::Mutex<Vec<(String, usize, Option<String>)>> = std::sync::Mutex::new(Vec::new());
    let key = expr.source().to_string();
    if let Some(verdict) = CHECKED.lock().ok().and_then(|c| {
        c.iter()
            .find(|(k, kr, _)| *k == key && *kr == r)
            .map(|(_, _, v)| v.clone())
    }) {
        return verdict.map_or(Ok(()), |msg| Err(Error::config(msg)));
    }
    let verdict = check_target_uncached(expr, r);
    if let Ok(mut c) = CHECKED.lock() {
        let msg = verdict.as_ref().err().map(|e| match e {
            Error::Config(m) => m.clone(),
            other => other.to_string(),
        });
        c.push((key, r, msg));
    }
    verdict
}

fn check_target_uncached(expr: &Expr, r: usize) -> Result<()> {
    use crate::theory::hermite::{expand, ExpandOptions};
    let g = |x: &[f64]| expr.eval(x);
    let opts = ExpandOptions {
        max_degree: 0,
        force_monte_carlo: r > 4,
        ..Default::default()
    };
    expand(&g, r, opts).map(|_| ()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("numerical failure: ").unwrap_or(&msg).to_string();
        let shown: String = expr.source().chars().take(80).collect();
        Error::config(format!("target '{shown}': {msg}"))
    })
}

/// The label shift of the readout batch: removed from its labels before the ridge fit and (for
/// `empirical` and `oracle`) added back to the test predictions.
fn readout_shift(
    cfg: &ValidConfig,
    exec: &Exec,
    target: &Target,
    batch: &Batch,
    theory: &Option<Result<RunTheory>>,
) -> Result<Option<engine::LabelShift>> {
    let d = target.d;
    Ok(match (cfg.readout.add_back, cfg.train.readout_preprocess()) {
        (_, Preprocess::None) => None,
        (AddBack::Empirical | AddBack::Test, pre) => preprocess_shift(exec, target, batch, pre),
        (AddBack::Oracle, pre) => {
            let th = match theory {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    return Err(Error::config(format!(
                        "readout.add_back = \"oracle\" needs the theory: {e}"
                    )))
                }
                None => unreachable!("theory computed for the oracle add-back"),
            };
            Some(engine::LabelShift {
                mean: th.mu0,
                linear: (pre == Preprocess::Linear).then(|| {
                    // W*ᵀ μ1 in input coordinates.
                    let mut b = vec![0.0; d];
                    for (k, m) in th.mu1.iter().enumerate() {
                        b.iter_mut()
                            .zip(&target.w_star[k * d..(k + 1) * d])
                            .for_each(|(x, w)| *x += m * w);
                    }
                    b
                }),
            })
        }
    })
}

/// Largest rank for which `run` attaches the theory (its cost grows like nodes^r).
const RUN_THEORY_MAX_RANK: usize = 8;

/// The theory of a run of `t` steps next to its measured steps.
fn theory_for(cfg: &ValidConfig, t: usize, target: &Target, steps: &[StepRecord]) -> Result<RunTheory> {
    let (n, eta) = (cfg.train_n(), cfg.eta());
    use crate::theory::{self, subspace::principal_angles, TheoryOptions};
    let r = target.r;
    if r > RUN_THEORY_MAX_RANK {
        return Err(Error::config(format!(
            "the theory is attached for r <= {RUN_THEORY_MAX_RANK}, but r is {r}; run giantstep theory"
        )));
    }
    let (d, p) = (cfg.network.d as f64, cfg.network.p as f64);
    let nf = n as f64;
    let opts = TheoryOptions {
        activation: cfg.network.activation,
        steps: t,
        kappa: nf.ln() / d.ln(),
        alpha: nf / d,
        gamma: eta / p,
        eta0: eta / (p * (nf / d).sqrt()),
        beta: nf / (d * d),
        log_d_p: p.ln() / d.ln(),
        preprocess: cfg.train.preprocess_at(1),
        normalize: cfg.train.normalize != Normalize::None,
        correlation: cfg.train.loss == Loss::Correlation,
        max_degree: 6,
        leap: false,
        second_layer: cfg.network.second_layer,
        // The largest γ of the later steps decides whether they blow up.
        gamma_later: (2..=t).map(|s| cfg.eta_at(s) / p).reduce(f64::max),
        batch: crate::theory::batch::FiniteBatch {
            d,
            n: nf,
            gamma: eta / p,
        },
    };
    let rep = theory::analyze(&target.expr, r, &opts)?;
    // The quadratic closed form's caveat only matters when the batch is quadratic.
    let mut warnings: Vec<String> = rep
        .warnings
        .iter()
        .filter(|w| opts.kappa >= 2.0 || !w.contains("quadratic_one_step"))
        .cloned()
        .collect();
    if cfg.train.reuse > 1 {
        warnings.push("the recursions assume fresh batches; train.reuse > 1 is outside their scope".into());
    }
    let threshold = 10.0 / d;
    let mut measured_dims = Vec::new();
    let mut angles = Vec::new();
    for (st, pred) in steps.iter().zip(&rep.activation_subspaces) {
        let o = &st.overlaps;
        let measured: Vec<Vec<f64>> = o
            .teacher_gram_eigenvalues
            .iter()
            .zip(&o.teacher_gram_eigenvectors)
            .filter(|(v, _)| **v > threshold)
            .map(|(_, e)| e.clone())
            .collect();
        measured_dims.push(measured.len());
        angles.push(principal_angles(&pred.basis, &measured)?);
    }
    Ok(RunTheory {
        linear_kernel_error: rep.linear_kernel_error,
        mu0: rep.mean,
        mu1: rep.mu1.clone(),
        one_step_cosine: rep.one_step_cosine.mean_abs,
        quadratic_one_step: rep.quadratic_one_step.mean_abs_cos.clone(),
        one_step_at_kappa: rep.one_step_at_kappa.mean_abs_cos.clone(),
        dominant_degree: rep.one_step_at_kappa.dominant_degree,
        predicted_mean_abs_cos: rep.predicted_abs_cos.clone(),
        measured_mean_abs_cos: steps.iter().map(|s| s.overlaps.mean_abs_cos.clone()).collect(),
        generic_subspace_dims: rep.generic_subspaces.iter().map(|u| u.dim).collect(),
        predicted_subspace_dims: rep.activation_subspaces.iter().map(|u| u.dim).collect(),
        measured_subspace_dims: measured_dims,
        principal_angles_deg: angles,
        blocked: rep.blocked.iter().map(|b| b.message.clone()).collect(),
        warnings,
        test_error: None,
        rf_test_error: None,
    })
}

fn preprocess_shift(exec: &Exec, target: &Target, batch: &Batch, pre: Preprocess) -> Option<engine::LabelShift> {
    match pre {
        Preprocess::None => None,
        Preprocess::Mean => Some(engine::label_shift(exec, target, batch, false)),
        Preprocess::Linear => Some(engine::label_shift(exec, target, batch, true)),
    }
}

/// `W ← W + η G`, with the optional row normalization of docs/model.md §3.
pub fn apply_step(w: &mut [f64], g: &[f64], eta: f64, p: usize, d: usize, normalize: Normalize) {
    for i in 0..p {
        let row = &mut w[i * d..(i + 1) * d];
        let gi = &g[i * d..(i + 1) * d];
        if normalize == Normalize::Spherical {
            let nrm2 = dot(row, row);
            let c = if nrm2 > 0.0 { dot(gi, row) / nrm2 } else { 0.0 };
            for k in 0..d {
                row[k] += eta * (gi[k] - c * row[k]);
            }
        } else {
            row.iter_mut().zip(gi).for_each(|(w, g)| *w += eta * g);
        }
        if normalize != Normalize::None {
            let nrm = norm(row);
            if nrm > 0.0 {
                row.iter_mut().for_each(|w| *w /= nrm);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spherical_step_keeps_unit_rows_and_moves_orthogonally() {
        let d = 3;
        let mut w = vec![1.0, 0.0, 0.0];
        let g = vec![5.0, 1.0, 0.0];
        apply_step(&mut w, &g, 1.0, 1, d, Normalize::Spherical);
        // The radial part (5) is removed: w = (1, 1, 0)/√2.
        let s = 1.0 / 2f64.sqrt();
        assert!((w[0] - s).abs() < 1e-15 && (w[1] - s).abs() < 1e-15);
        let mut w = vec![1.0, 0.0, 0.0];
        apply_step(&mut w, &g, 1.0, 1, d, Normalize::Project);
        assert!((norm(&w) - 1.0).abs() < 1e-15 && (w[0] - 6.0 / 37f64.sqrt()).abs() < 1e-15);
    }
}
