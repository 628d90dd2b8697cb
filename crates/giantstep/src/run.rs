//! One complete simulation: initialization, `T` giant steps with observables after each, the
//! ridge readout on the trained and on the initial first layer (random-features baseline), and the
//! test errors. The JSON form of [`RunResult`] is the schema of `giantstep run --json`.

use crate::config::{AddBack, Config, Loss, Normalize, Preprocess, ReadoutBatch};
use crate::data::{Purpose, StreamKey};
use crate::engine::{self, Batch, ErrorSignal, Exec, Readout};
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::linalg::{dot, norm};
use crate::network::Network;
use crate::observe::{gradient_geometry, overlaps, GradientGeometry, Overlaps};
use crate::target::Target;
use serde::{Deserialize, Serialize};
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
}

/// Runs the simulation of docs/model.md §3 for a configuration.
///
/// # Errors
/// Invalid configuration ([`Error::Config`], [`Error::Expr`]), non-finite weights
/// ([`Error::NonFinite`]), a singular ridge system.
pub fn run(config: &Config) -> Result<RunResult> {
    run_with(config, &mut ())
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

/// [`run`], reporting its phases and steps to `observer` (a closure `|msg: &str|` receives
/// each phase as a message).
///
/// With `eval.every_step = true` the readout and test error are also measured after every step
/// `t < T` (one pass over the readout batch and one over the test set for all of them), and
/// stored in `steps[t].test_error` / `steps[t].train_error`; every other field is as without it.
///
/// # Errors
/// As [`run`].
pub fn run_with(config: &Config, progress: &mut dyn Observer) -> Result<RunResult> {
    let cfg = config.resolve()?;
    let steps = cfg.train.steps;
    let eval_at: Vec<usize> = if cfg.eval.every_step {
        (1..=steps).collect()
    } else {
        vec![steps]
    };
    let mut outcomes = run_prefixes_resolved(&cfg, &eval_at, progress)?;
    let mut last = outcomes.pop().expect("one outcome per evaluated T")?;
    for (t, outcome) in outcomes.into_iter().enumerate() {
        let r = outcome?;
        last.steps[t].test_error = Some(r.test_error);
        last.steps[t].train_error = Some(r.train_error);
    }
    if cfg.eval.every_step {
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
/// Invalid configuration or an empty `eval_at` (the per-`T` errors are in the vector).
pub fn run_prefixes(config: &Config, eval_at: &[usize]) -> Result<Vec<Result<RunResult>>> {
    let mut cfg = config.clone();
    cfg.eval.every_step = false;
    cfg.train.steps = eval_at.iter().copied().max().unwrap_or(0).max(1);
    let cfg = cfg.resolve()?;
    run_prefixes_resolved(&cfg, eval_at, &mut ())
}

fn run_prefixes_resolved(
    cfg: &Config,
    eval_at: &[usize],
    progress: &mut dyn Observer,
) -> Result<Vec<Result<RunResult>>> {
    if eval_at.is_empty() || eval_at.iter().any(|&t| t == 0 || t > cfg.train.steps) {
        return Err(Error::config(format!(
            "steps to evaluate must lie in 1..={}, but are {eval_at:?}",
            cfg.train.steps
        )));
    }
    check_memory(cfg.memory_estimate(eval_at.len()), cfg)?;
    match cfg.precision {
        crate::config::Precision::F64 => run_typed::<f64>(cfg, eval_at, progress),
        crate::config::Precision::F32 => run_typed::<f32>(cfg, eval_at, progress),
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
fn train_batch(cfg: &Config, t: usize, n: usize) -> Batch {
    Batch {
        key: StreamKey::new(cfg.seed, Purpose::Train, ((t - 1) / cfg.train.reuse) as u64),
        n,
    }
}

fn run_typed<T: crate::linalg::Real>(
    cfg: &Config,
    eval_at: &[usize],
    progress: &mut dyn Observer,
) -> Result<Vec<Result<RunResult>>> {
    let start = Instant::now();
    let net_cfg = &cfg.network;
    let (d, p) = (net_cfg.d, net_cfg.p);
    let expr = Expr::parse(cfg.target.expr.as_deref().expect("resolved"))?;
    let r = cfg.target.r.expect("resolved");
    check_target(&expr, r)?;
    let target = Target::new(expr, r, d, cfg.target.teacher, cfg.target.noise, cfg.seed)?;
    let exec = Exec::new(cfg.chunk, cfg.threads)?;
    let mut net = Network::init(
        d,
        p,
        net_cfg.activation,
        net_cfg.first_layer,
        net_cfg.second_layer,
        net_cfg.symmetric,
        cfg.seed,
    );
    let w0 = net.w.clone();
    let initial = overlaps(&net.w, p, d, &target.w_star, r)?;
    let n = cfg.train_n();
    let signal = match cfg.train.loss {
        Loss::Residual => ErrorSignal::Residual,
        Loss::Correlation => ErrorSignal::Correlation,
    };
    let t_max = eval_at.iter().copied().max().expect("non-empty");
    let mut steps = Vec::with_capacity(t_max);
    // The first layer after each evaluated step.
    let mut snapshots: Vec<(usize, Vec<f64>)> = Vec::new();
    let mut diverged: Option<Error> = None;
    for t in 1..=t_max {
        progress.phase(Phase::Step { t, of: t_max });
        let eta = cfg.eta_at(t);
        let mut step = || -> Result<StepRecord> {
            let batch = train_batch(cfg, t, n);
            let shift = preprocess_shift(&exec, &target, &batch, cfg.train.preprocess);
            let grad = engine::gradient::<T>(&exec, &net, &target, &batch, shift.as_ref(), signal);
            let geometry = gradient_geometry(&grad.g, &net.w, p, d, &target.w_star, r)?;
            apply_step(&mut net.w, &grad.g, eta, p, d, cfg.train.normalize);
            if net.w.iter().any(|v| !v.is_finite()) {
                return Err(Error::NonFinite { step: t, eta });
            }
            Ok(StepRecord {
                t,
                n,
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
                progress.step_finished(&record);
                steps.push(record);
            }
            Err(e) => {
                // The results of T >= t fail with this error; earlier T keep theirs.
                diverged = Some(e);
                break;
            }
        }
        if eval_at.contains(&t) {
            snapshots.push((t, net.w.clone()));
        }
    }
    let trained = steps.len();

    progress.phase(Phase::Readout);
    // Theory per evaluated T (the oracle add-back needs it too).
    let theories: Vec<Option<Result<RunTheory>>> = eval_at
        .iter()
        .map(|&t| {
            (t <= trained && (cfg.eval.theory || cfg.readout.add_back == AddBack::Oracle))
                .then(|| theory_for(&config_at(cfg, t), &target, n, cfg.eta(), &steps[..t]))
        })
        .collect();
    // Readouts: the layers that share a readout batch are fitted in one pass.
    let readout_batch_of = |t: usize| match cfg.readout.batch {
        ReadoutBatch::Last => train_batch(cfg, t, n),
        ReadoutBatch::Fresh => Batch {
            key: StreamKey::new(cfg.seed, Purpose::Readout, 0),
            n: cfg.readout_n(),
        },
    };
    // For each evaluated T: (trained readout, random-features readout), or why not.
    // (trained readout, random-features readout unless eval.baseline = false), or why not.
    type Fitted = (Result<Readout>, Option<Result<Readout>>);
    let mut fitted: Vec<Option<Fitted>> = (0..eval_at.len()).map(|_| None).collect();
    // The readout group of each evaluated T (its random-features readout is shared).
    let mut group_of: Vec<usize> = vec![usize::MAX; eval_at.len()];
    let mut groups: Vec<(Batch, Vec<usize>)> = Vec::new();
    for (i, &t) in eval_at.iter().enumerate() {
        if t > trained {
            continue;
        }
        let b = readout_batch_of(t);
        match groups.iter_mut().find(|(gb, _)| gb.key == b.key && gb.n == b.n) {
            Some((_, members)) => members.push(i),
            None => groups.push((b, vec![i])),
        }
    }
    let act = net_cfg.activation;
    for (g, (_, members)) in groups.iter().enumerate() {
        for &i in members {
            group_of[i] = g;
        }
    }
    for (batch, members) in &groups {
        let shift = match readout_shift(cfg, &exec, &target, batch, &theories[members[0]], d) {
            Ok(s) => s,
            Err(e) => {
                for &i in members {
                    fitted[i] = Some((Err(e.clone()), None));
                }
                continue;
            }
        };
        let mut layers: Vec<&[f64]> = members.iter().map(|&i| snapshot(&snapshots, eval_at[i])).collect();
        if cfg.eval.baseline {
            layers.push(&w0);
        }
        let mut outs = engine::fit_readouts_each::<T>(
            &exec,
            &layers,
            d,
            p,
            act,
            &target,
            batch,
            shift.as_ref(),
            cfg.readout.lambda,
        );
        let rf = cfg
            .eval
            .baseline
            .then(|| outs.pop().expect("the random-features layer"));
        for (&i, out) in members.iter().zip(outs) {
            fitted[i] = Some((out, rf.clone()));
        }
    }

    progress.phase(Phase::Test);
    let test_batch = Batch {
        key: StreamKey::new(cfg.seed, Purpose::Test, 0),
        n: cfg.eval.n_test,
    };
    let test_shift = (cfg.readout.add_back == AddBack::Test && cfg.train.preprocess != Preprocess::None)
        .then(|| preprocess_shift(&exec, &target, &test_batch, cfg.train.preprocess))
        .flatten();
    // Every (layer, readout) pair to test, with its position.
    // The random-features model of a readout group is tested once.
    let mut models: Vec<(&[f64], Readout)> = Vec::new();
    let mut slots: Vec<Option<(usize, Option<usize>)>> = vec![None; eval_at.len()];
    let mut rf_slot: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for (i, f) in fitted.iter().enumerate() {
        let Some((Ok(tr), rf)) = f else { continue };
        let with_test_shift = |ro: &Readout| {
            let mut ro = ro.clone();
            if let Some(sh) = &test_shift {
                ro.shift = Some(sh.clone());
            }
            ro
        };
        let irf = match rf {
            Some(Ok(rf)) => Some(*rf_slot.entry(group_of[i]).or_insert_with(|| {
                models.push((&w0, with_test_shift(rf)));
                models.len() - 1
            })),
            Some(Err(_)) => continue,
            None => None,
        };
        slots[i] = Some((models.len(), irf));
        models.push((snapshot(&snapshots, eval_at[i]), with_test_shift(tr)));
    }
    let pairs: Vec<(&[f64], &Readout)> = models.iter().map(|(w, ro)| (*w, ro)).collect();
    let (errors, y2) = if pairs.is_empty() {
        (vec![], 0.0)
    } else {
        engine::test_errors::<T>(&exec, &pairs, d, p, act, &target, &test_batch)
    };

    let mut out = Vec::with_capacity(eval_at.len());
    for (i, &t) in eval_at.iter().enumerate() {
        if t > trained {
            out.push(Err(diverged.clone().expect("training stopped early")));
            continue;
        }
        let (tr, rf) = match fitted[i].take().expect("fitted") {
            (Ok(tr), None) => (tr, None),
            (Ok(tr), Some(Ok(rf))) => (tr, Some(rf)),
            (Err(e), _) | (_, Some(Err(e))) => {
                out.push(Err(e));
                continue;
            }
        };
        let (it, irf) = slots[i].expect("tested");
        let theory = theories[i].clone();
        let cfg_t = config_at(cfg, t);
        out.push(Ok(RunResult {
            version: env!("CARGO_PKG_VERSION").to_string(),
            r,
            random_level: (2.0 / (std::f64::consts::PI * d as f64)).sqrt(),
            initial: initial.clone(),
            steps: steps[..t].to_vec(),
            test_error: errors[it],
            train_error: tr.train_error,
            rf_test_error: irf.map(|k| errors[k]),
            rf_train_error: rf.map(|ro| ro.train_error),
            test_label_second_moment: y2,
            theory_note: match &theory {
                None => Some("eval.theory = false".into()),
                Some(Err(e)) => Some(e.to_string()),
                Some(Ok(_)) if !cfg.eval.theory => Some("eval.theory = false".into()),
                Some(Ok(_)) => None,
            },
            theory: match theory {
                Some(Ok(th)) if cfg.eval.theory => Some(th),
                _ => None,
            },
            elapsed_s: start.elapsed().as_secs_f64(),
            config: cfg_t,
        }));
    }
    Ok(out)
}

/// The checks a run makes before any work: the configuration, the memory it needs against this
/// machine's, and the target (finite, square-integrable). A caller that wants to warn about a
/// long run calls this first, so that a refused run prints nothing else.
///
/// # Errors
/// As [`run`], for what can be known before simulating.
pub fn preflight(config: &Config) -> Result<()> {
    let cfg = config.resolve()?;
    let evaluated = if cfg.eval.every_step { cfg.train.steps } else { 1 };
    check_memory(cfg.memory_estimate(evaluated), &cfg)?;
    let expr = Expr::parse(cfg.target.expr.as_deref().expect("resolved"))?;
    check_target(&expr, cfg.target.r.expect("resolved"))
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
fn check_memory(needed: f64, cfg: &Config) -> Result<()> {
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

fn snapshot(snapshots: &[(usize, Vec<f64>)], t: usize) -> &[f64] {
    &snapshots
        .iter()
        .find(|(s, _)| *s == t)
        .expect("snapshot of an evaluated step")
        .1
}

/// The label shift of the readout batch: removed from its labels before the ridge fit and (for
/// `empirical` and `oracle`) added back to the test predictions.
fn readout_shift(
    cfg: &Config,
    exec: &Exec,
    target: &Target,
    batch: &Batch,
    theory: &Option<Result<RunTheory>>,
    d: usize,
) -> Result<Option<engine::LabelShift>> {
    Ok(match (cfg.readout.add_back, cfg.train.preprocess) {
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

fn theory_for(cfg: &Config, target: &Target, n: usize, eta: f64, steps: &[StepRecord]) -> Result<RunTheory> {
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
        steps: cfg.train.steps,
        kappa: nf.ln() / d.ln(),
        alpha: nf / d,
        gamma: eta / p,
        eta0: eta / (p * (nf / d).sqrt()),
        beta: nf / (d * d),
        log_d_p: p.ln() / d.ln(),
        preprocess: cfg.train.preprocess,
        normalize: cfg.train.normalize != Normalize::None,
        correlation: cfg.train.loss == Loss::Correlation,
        max_degree: 6,
        leap: false,
        second_layer: cfg.network.second_layer,
        // The largest γ of the later steps decides whether they blow up.
        gamma_later: (2..=cfg.train.steps).map(|t| cfg.eta_at(t) / p).reduce(f64::max),
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
        predicted_mean_abs_cos: rep.predicted_abs_cos.clone(),
        measured_mean_abs_cos: steps.iter().map(|s| s.overlaps.mean_abs_cos.clone()).collect(),
        generic_subspace_dims: rep.generic_subspaces.iter().map(|u| u.dim).collect(),
        predicted_subspace_dims: rep.activation_subspaces.iter().map(|u| u.dim).collect(),
        measured_subspace_dims: measured_dims,
        principal_angles_deg: angles,
        blocked: rep.blocked.iter().map(|b| b.message.clone()).collect(),
        warnings,
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
