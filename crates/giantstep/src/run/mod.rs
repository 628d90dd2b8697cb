//! One complete simulation: initialization, `T` giant steps with observables after each, the
//! ridge readout on the trained and on the initial first layer (random-features baseline), and the
//! test errors. The JSON form of [`RunResult`] is the schema of `giantstep run --json`.

mod baseline;
mod observer;
mod preflight;
mod readouts;
mod result;
mod theory;

pub use baseline::BaselineCache;
pub use observer::{Observer, Phase};
pub use preflight::preflight;
pub use result::{RunResult, RunTheory, StepRecord, StepState, Weights};

use crate::config::{Config, Preprocess, ValidConfig};
use crate::data::Purpose;
use crate::engine::{self, Batch, Exec, Readout};
use crate::error::{Error, Result};
use crate::given::given;
use crate::network::Network;
use crate::observe::{gradient_geometry, overlaps};
use crate::target::{CustomTarget, Target};
use preflight::{check_memory, check_target};
use readouts::{fit_all, test_all, RfError};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;
use theory::{attached, theories};

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
    /// Use this activation function instead of `network.activation` in every pass (no theory).
    pub activation: Option<crate::activation::CustomActivation>,
    /// Stops the run between chunks when set ([`Error::Cancelled`]).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Return the weights in [`RunResult::weights`], with the overlaps `M_t = W_t W*ᵀ` (`p×r`)
    /// and `Q_t = W_t W_tᵀ` (`p×p`) of every step trained.
    pub keep_weights: bool,
    /// With `keep_weights`, also return the first layer `W_t` after every step trained
    /// ([`StepState::w`] in [`Weights::steps`]: `T·p·d` numbers).
    pub keep_every_step: bool,
    /// Continue a run: the layer after its last step and the records of its steps. Steps
    /// `k = steps.len() + 1 ..= train.steps` are trained from there; with the first run's `W0`,
    /// `a` and `W*` given (`first_layer`, `second_layer`, `teacher`) the result equals the
    /// uninterrupted run of `train.steps` steps bit for bit (the batches are keyed by the step).
    pub resume: Option<Resume<'a>>,
    /// Random-features baselines shared with other runs (a sweep passes one to all its points):
    /// a run whose baseline is already there reuses it instead of fitting and testing it again.
    /// Ignored when the run is given its own weights, teacher or target.
    pub baselines: Option<Arc<BaselineCache>>,
}

/// Where a continued run starts ([`RunOptions::resume`]).
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    /// The first layer after the last step done (`p×d`, row-major).
    pub layer: &'a [f64],
    /// The records of the steps done (`t = 1..=k-1`), as the first run returned them.
    pub steps: &'a [StepRecord],
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
/// ([`Error::Memory`], [`Error::TargetCheck`]), non-finite weights ([`Error::NonFinite`]), a singular ridge system.
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
/// As [`run`]; wrong shapes or non-finite values of given arrays ([`Error::Array`]), a failing
/// target function ([`Error::Target`]), cancellation ([`Error::Cancelled`]).
pub fn run_with(config: &ValidConfig, options: RunOptions) -> Result<RunResult> {
    let steps = config.train.steps;
    // A continued run evaluates its own steps; the earlier ones keep what their run measured.
    let first = match options.resume {
        Some(res) => check_resume(config, res)?.len() + 1,
        None => 1,
    };
    let eval_at: Vec<usize> = if config.eval.every_step {
        (first..=steps).collect()
    } else {
        vec![steps]
    };
    let mut outcomes = run_prefixes_with(config, &eval_at, options)?;
    let mut last = outcomes.pop().expect("one outcome per evaluated T")?;
    for (t, outcome) in eval_at.iter().zip(outcomes) {
        let r = outcome?;
        last.steps[t - 1].test_error = Some(r.test_error);
        last.steps[t - 1].train_error = Some(r.train_error);
    }
    if config.eval.every_step {
        last.steps[steps - 1].test_error = Some(last.test_error);
        last.steps[steps - 1].train_error = Some(last.train_error);
        // The result's configuration is the run's (the prefixes' are single-T runs).
        last.config.eval.every_step = true;
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
    run_prefixes_shared(config, eval_at, None, None, None)
}

/// [`run_prefixes`] that stops between chunks when `cancel` is set and shares its
/// random-features baselines through `baselines`.
pub(crate) fn run_prefixes_shared(
    config: &ValidConfig,
    eval_at: &[usize],
    cancel: Option<Arc<AtomicBool>>,
    baselines: Option<Arc<BaselineCache>>,
    target: Option<CustomTarget>,
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
        target,
        ..Default::default()
    };
    run_prefixes_with(&cfg, eval_at, options)
}

fn run_prefixes_with(cfg: &ValidConfig, eval_at: &[usize], options: RunOptions) -> Result<Vec<Result<RunResult>>> {
    if eval_at.is_empty() || eval_at.iter().any(|&t| t == 0 || t > cfg.train.steps) {
        return Err(Error::invalid(
            "steps to evaluate",
            format!("a non-empty list in 1..={}", cfg.train.steps),
            format!("{eval_at:?}"),
        ));
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
        key: cfg.sample_key(Purpose::Train, ((t - 1) / cfg.train.reuse) as u64),
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
    net.custom_activation = options.activation.take();
    if let Some(w0) = options.first_layer {
        net.w = given("the first layer W0", w0, p, d)?;
    }
    if let Some(a) = options.second_layer {
        net.a = given("the second layer a", a, p, 1)?;
    }
    Ok((target, net))
}
/// The records a continued run starts after, checked: steps `1..=k-1` in order, `k <= T`.
fn check_resume<'a>(cfg: &ValidConfig, res: Resume<'a>) -> Result<&'a [StepRecord]> {
    let k = res.steps.len();
    if k >= cfg.train.steps {
        return Err(Error::invalid(
            "train.steps",
            format!("more than the {k} step(s) of the run continued (it counts them)"),
            cfg.train.steps,
        ));
    }
    if let Some((i, s)) = res.steps.iter().enumerate().find(|(i, s)| s.t != i + 1) {
        return Err(Error::invalid(
            "the steps of the run continued",
            format!("steps numbered 1..={k}"),
            format!("step {} at position {}", s.t, i + 1),
        ));
    }
    Ok(res.steps)
}

/// Stops a run whose caller cancelled it or whose target function failed.
fn interrupted(exec: &Exec, target: &Target, net: &Network) -> Result<()> {
    if let Some(e) = target.custom_error() {
        return Err(e);
    }
    if let Some(e) = net.custom_activation.as_ref().and_then(|c| c.error()) {
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
    /// With `keep_weights`: per step trained, `M_t` (`p×r`), `Q_t` (`p×p`) and, with
    /// `keep_every_step`, `W_t`.
    state: Vec<StepState>,
    /// The label shifts computed on the training batches, for a later step that reuses the
    /// batch (`train.reuse`) and for a readout on the last batch with the same preprocessing.
    shifts: ShiftCache,
}

/// Label shifts already computed, by (batch, preprocessing): the same pass on the same batch
/// gives the same numbers, so a shift is computed once per batch.
#[derive(Default)]
pub(super) struct ShiftCache(Vec<(Batch, Preprocess, Option<engine::LabelShift>)>);

impl ShiftCache {
    /// The shift of `batch` under `pre`, from the cache or computed (and kept).
    fn get_or_compute(
        &mut self,
        exec: &Exec,
        target: &Target,
        batch: &Batch,
        pre: Preprocess,
    ) -> Option<engine::LabelShift> {
        if let Some(shift) = self.cached(batch, pre) {
            return shift;
        }
        let shift = preprocess_shift(exec, target, batch, pre);
        self.0.push((*batch, pre, shift.clone()));
        shift
    }

    /// The shift of `batch` under `pre` if it was computed.
    pub(super) fn cached(&self, batch: &Batch, pre: Preprocess) -> Option<Option<engine::LabelShift>> {
        self.0
            .iter()
            .find(|(b, p, _)| b.key == batch.key && b.n == batch.n && *p == pre)
            .map(|(_, _, s)| s.clone())
    }
}

/// The state after one trained step ([`Weights::steps`]).
fn step_state(w: &[f64], w_star: &[f64], p: usize, d: usize, r: usize, t: usize, keep_w: bool) -> StepState {
    use crate::linalg::{matmul, Op};
    let mut m = vec![0.0; p * r];
    matmul(&mut m, [p, r, d], Op::Plain(w), Op::Transposed(w_star), false);
    let mut q = vec![0.0; p * p];
    matmul(&mut q, [p, p, d], Op::Plain(w), Op::Transposed(w), false);
    StepState {
        t,
        m,
        q,
        w: keep_w.then(|| w.to_vec()),
    }
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
    /// The records of the steps a continued run starts after ([`RunOptions::resume`]).
    done: &'a [StepRecord],
    /// Keep `M_t`, `Q_t` per step (and `W_t` with the second flag).
    keep_state: (bool, bool),
}

/// Giant steps `1..=max(eval_at)` (docs/model.md §3), keeping the layer after each evaluated one.
fn train<T: crate::linalg::Real>(ctx: &Ctx, net: &mut Network, observer: &mut dyn Observer) -> Result<Trained> {
    let (cfg, exec, target) = (ctx.cfg, &ctx.exec, &ctx.target);
    let (d, p, r) = (net.d, net.p, target.r);
    let t_max = ctx.eval_at.iter().copied().max().expect("non-empty");
    let mut out = Trained {
        steps: Vec::with_capacity(t_max),
        snapshots: Vec::new(),
        diverged: None,
        state: Vec::new(),
        shifts: ShiftCache::default(),
    };
    out.steps.extend_from_slice(ctx.done);
    for t in ctx.done.len() + 1..=t_max {
        observer.phase(Phase::Step { t, of: t_max });
        let eta = cfg.eta_at(t);
        let batch = train_batch(cfg, t);
        let shift = out
            .shifts
            .get_or_compute(exec, target, &batch, cfg.train.preprocess_at(t));
        let grad = engine::gradient::<T>(exec, net, target, &batch, shift.as_ref(), cfg.train.loss);
        interrupted(exec, target, net)?;
        let mut step = || -> Result<StepRecord> {
            let geometry = gradient_geometry(&grad.g, &net.w, p, d, &target.w_star, r)?;
            engine::apply_step(&mut net.w, &grad.g, eta, p, d, cfg.train.normalize);
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
        if ctx.keep_state.0 {
            out.state
                .push(step_state(&net.w, &target.w_star, p, d, r, t, ctx.keep_state.1));
        }
    }
    Ok(out)
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
        && options.target.is_none()
        && options.activation.is_none();
    let baselines = options.baselines.clone().filter(|_| shareable);
    let (target, net) = setup(cfg, &mut options)?;
    // A chunk beyond the largest batch is that batch: the same partition, so the same numbers,
    // without buffers sized for samples that never come.
    let largest = cfg.train_n().max(cfg.readout_n()).max(cfg.eval.n_test);
    let mut exec = Exec::new(cfg.chunk.min(largest), cfg.threads)?;
    if let Some(flag) = options.cancel.clone() {
        exec = exec.with_cancel(flag);
    }
    let mut noop = ();
    let observer: &mut dyn Observer = match options.observer {
        Some(o) => o,
        None => &mut noop,
    };
    let done = match options.resume {
        Some(res) => check_resume(cfg, res)?,
        None => &[],
    };
    let ctx = Ctx {
        cfg,
        exec,
        target,
        eval_at,
        baselines: baselines.as_deref(),
        done,
        keep_state: (options.keep_weights, options.keep_weights && options.keep_every_step),
    };
    let mut net = Started::from(net);
    if let Some(res) = options.resume {
        net.net.w = given("the layer to continue from", res.layer, net.p, d)?;
    }
    let initial = overlaps(&net.w0, net.p, d, &ctx.target.w_star, r)?;
    // The theory needs an expression and a built-in activation.
    let skip = match (&custom_name, net.net.custom_activation.as_ref()) {
        (_, Some(act)) => Some(format!(
            "the activation is a function given at run time ({}); the theory needs a built-in activation",
            act.name
        )),
        (Some(name), None) => Some(format!(
            "the target is a function given at run time ({name}); the theory needs an expression"
        )),
        (None, None) => None,
    };
    // The theory's heavy part depends on the configuration, the start and the teacher only: it
    // is computed on its own thread while the run trains (its serial stretches, an eigen-
    // decomposition at a time, would otherwise leave cores idle between the passes).
    let planned = eval_at.iter().copied().max().expect("non-empty");
    let wants_theory = cfg.eval.theory || cfg.readout.add_back == crate::config::AddBack::Oracle;
    // Set when training fails: the theory is then not needed.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let cancel = ctx.exec.cancel_token().or(stop.clone());
    let (trained, computed) = {
        let (ctx, w0, a, skip, cancel) = (&ctx, &net.w0, net.net.a.clone(), skip.as_deref(), &cancel);
        let net = &mut net.net;
        std::thread::scope(|scope| {
            let theory = scope.spawn(move || theory::compute(ctx, w0, &a, planned, skip, cancel));
            let trained = train::<T>(ctx, net, observer);
            match &trained {
                // What remains of the theory once training is done is its phase.
                Ok(_) if wants_theory => observer.phase(Phase::Theory),
                Ok(_) => {}
                Err(_) => stop.store(true, std::sync::atomic::Ordering::Relaxed),
            }
            let computed = theory.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (trained, computed)
        })
    };
    let trained = trained?;
    let done = trained.steps.len();
    // A run that stopped early has the theory of the steps it made (their own prefixes).
    let computed = if done == planned {
        computed
    } else {
        theory::compute(&ctx, &net.w0, &net.net.a, done, skip.as_deref(), &cancel)
    };
    let theories = theories(&ctx, &computed, &trained, skip.as_deref());
    let warnings = match (ctx.target.custom_target(), &net.custom_activation) {
        (Some(custom), None) => theory::custom_warnings(&ctx, custom, trained.steps.len()),
        _ => vec![Vec::new(); eval_at.len()],
    };
    interrupted(&ctx.exec, &ctx.target, &net)?;
    observer.phase(Phase::Readout);
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
        let weights = options.keep_weights.then(|| {
            let mut w = net.weights(trained.layer(t), &ctx.target, &tr, rf.as_ref());
            w.steps = trained.state.iter().filter(|s| s.t <= t).cloned().collect();
            w
        });
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
            warnings: warnings[i].clone(),
            elapsed_s: start.elapsed().as_secs_f64(),
            config: cfg_t,
            weights,
        }));
    }
    Ok(out)
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
            steps: Vec::new(),
        }
    }
}

impl std::ops::Deref for Started {
    type Target = Network;
    fn deref(&self) -> &Network {
        &self.net
    }
}
fn preprocess_shift(exec: &Exec, target: &Target, batch: &Batch, pre: Preprocess) -> Option<engine::LabelShift> {
    match pre {
        Preprocess::None => None,
        Preprocess::Mean => Some(engine::label_shift(exec, target, batch, false)),
        Preprocess::Linear => Some(engine::label_shift(exec, target, batch, true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::StreamKey;
    use crate::expr::Expr;
    use crate::target::TeacherKind;

    /// A batch's label shift is computed once per preprocessing and then read from the cache;
    /// another batch, size or preprocessing is not served from it.
    #[test]
    fn shift_cache_computes_a_batch_once() {
        let exec = Exec::new(256, 1).unwrap();
        let target = Target::new(Expr::parse("z1 + z1*z2").unwrap(), 2, 16, TeacherKind::Random, 0.0, 3).unwrap();
        let batch = Batch {
            key: StreamKey::new(1, Purpose::Train, 0),
            n: 700,
        };
        let mut cache = ShiftCache::default();
        assert_eq!(cache.cached(&batch, Preprocess::Linear), None);
        let first = cache.get_or_compute(&exec, &target, &batch, Preprocess::Linear);
        assert_eq!(first, preprocess_shift(&exec, &target, &batch, Preprocess::Linear));
        assert!(first.as_ref().is_some_and(|s| s.linear.is_some()));
        assert_eq!(cache.get_or_compute(&exec, &target, &batch, Preprocess::Linear), first);
        assert_eq!(cache.0.len(), 1);
        assert_eq!(cache.cached(&batch, Preprocess::Mean), None);
        let other = Batch { n: 701, ..batch };
        assert_eq!(cache.cached(&other, Preprocess::Linear), None);
        let next = Batch {
            key: StreamKey::new(1, Purpose::Train, 1),
            ..batch
        };
        assert_eq!(cache.cached(&next, Preprocess::Linear), None);
        let mean = cache.get_or_compute(&exec, &target, &batch, Preprocess::Mean);
        assert!(mean.is_some_and(|s| s.linear.is_none()));
        assert_eq!(cache.0.len(), 2);
    }
}
