//! Predicted test errors of a configuration and of a whole stairway (test error per number of
//! steps `T` and batch size `n = d^κ`), from the state evolution of [`crate::theory::dynamics`]
//! (docs/theory.md §6).

use crate::config::NetworkConfig;
use crate::config::{BatchSize, Config, Loss, Preprocess, ReadoutBatch, ValidConfig};
use crate::error::{Cancel, Error, Result};
use crate::linalg::dot;
use crate::network::Network;
use crate::target::Target;
use crate::theory::dynamics::{Grid, Model, Setup, State};
use crate::theory::mean_field::{self, Population};
use crate::theory::Query;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Below this `log n / log d` the prediction is not reported: the measured gap to simulation
/// grows past 0.06 there (docs/theory.md §6, "Where it holds").
pub const KAPPA_MIN: f64 = 1.0;

/// From this `log n / log d` on, the prediction met 0.03 on every case checked (docs/theory.md
/// §6); between [`KAPPA_MIN`] and here it is reported with a warning.
pub const KAPPA_CHECKED: f64 = 1.5;

/// The prediction after one step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictedStep {
    /// Step, from 1.
    pub t: usize,
    /// Predicted test error of the ridge readout on the first layer after step `t`.
    pub test_error: f64,
    /// Predicted mean `|cos|` with each teacher direction.
    pub mean_abs_cos: Vec<f64>,
}

/// The prediction of one configuration: every step up to its `T`, and random features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Per step.
    pub steps: Vec<PredictedStep>,
    /// Predicted test error of the same readout on the initial first layer.
    pub rf_test_error: f64,
    /// `E[ỹ²] + Δ` on the theory's grid (the error of predicting the removed part exactly and 0
    /// for the rest).
    pub label_second_moment: f64,
    /// Whether the configuration lies where the prediction was checked against simulation.
    pub covered: bool,
    /// Why not, or what is approximated.
    pub notes: Vec<String>,
}

/// Why a configuration cannot be predicted at all.
fn unsupported(cfg: &ValidConfig) -> Option<Error> {
    (cfg.train.reuse > 1).then(|| {
        Error::invalid(
            "train.reuse",
            "1 for a prediction (the state evolution assumes a fresh batch every step)",
            cfg.train.reuse,
        )
    })
}

/// The warning a prediction carries below [`KAPPA_CHECKED`]: `None` from there on, where `n`
/// rounded down from `d^1.5` (`log n / log d` = 1.4999…) counts as `d^1.5`.
pub fn below_checked(cfg: &ValidConfig) -> Option<String> {
    let ln_d = (cfg.network.d as f64).ln();
    // n = ⌊d^κ⌋ for some κ ≥ KAPPA_CHECKED exactly when n + 1 > d^KAPPA_CHECKED.
    let kappa_next = ((cfg.train_n() + 1) as f64).ln() / ln_d;
    (kappa_next <= KAPPA_CHECKED).then(|| {
        format!(
            "predicted test error at log n / log d = {:.2} < {KAPPA_CHECKED}: the prediction was measured optimistic there, by 0.03 (stairway-he124) to 0.55 (stairway-pm at T = 6); docs/theory.md §6",
            kappa_of(cfg)
        )
    })
}

/// `log n / log d` of a configuration.
pub fn kappa_of(cfg: &ValidConfig) -> f64 {
    (cfg.train_n() as f64).ln() / (cfg.network.d as f64).ln()
}

/// Predicts the test error after every step `1..=steps` of `cfg` (its own `train.steps` when
/// `steps` is 0) and the random-features error, for the seed of `cfg`. When the predicted steps
/// diverge, the steps before are returned and a note says from which step on there is none.
///
/// # Errors
/// [`Error::Invalid`] for what the state evolution does not model (`train.reuse > 1`),
/// [`Error::Numerical`] when the initial state or its readout cannot be computed.
pub fn predict(cfg: &ValidConfig, steps: usize) -> Result<Prediction> {
    predict_with(cfg, steps, &Cancel::default())
}

/// [`predict`] that stops with [`Error::Cancelled`] once `cancel` is set (checked between steps).
///
/// # Errors
/// As [`predict`], and [`Error::Cancelled`].
pub fn predict_with(cfg: &ValidConfig, steps: usize, cancel: &Cancel) -> Result<Prediction> {
    let net = Network::init(&cfg.network, cfg.seed);
    let target = Target::new(
        cfg.expr().clone(),
        cfg.r(),
        cfg.network.d,
        cfg.target.teacher,
        0.0,
        cfg.seed,
    )?;
    predict_from_with(cfg, steps, &net.w, &net.a, &target.w_star, cancel)
}

/// [`predict`] from given initial weights: `w0` (`p×d`), `a` (`p`), `w_star` (`r×d`, orthonormal
/// rows).
///
/// # Errors
/// As [`predict`].
pub fn predict_from(cfg: &ValidConfig, steps: usize, w0: &[f64], a: &[f64], w_star: &[f64]) -> Result<Prediction> {
    predict_from_with(cfg, steps, w0, a, w_star, &Cancel::default())
}

/// [`predict_from`] that stops with [`Error::Cancelled`] once `cancel` is set.
///
/// # Errors
/// As [`predict`], and [`Error::Cancelled`].
pub fn predict_from_with(
    cfg: &ValidConfig,
    steps: usize,
    w0: &[f64],
    a: &[f64],
    w_star: &[f64],
    cancel: &Cancel,
) -> Result<Prediction> {
    let (cfg, steps) = predictable(cfg, steps)?;
    let (d, p, r) = (cfg.network.d, cfg.network.p, cfg.r());
    let models = Models::new(&cfg)?;
    let model = |pre: Preprocess| models.of(pre);
    let readout_model = model(cfg.train.readout_preprocess());
    let mut state = State::from_weights(w0, a, w_star, p, d, r)?;
    let (n_readout, lambda) = (cfg.readout_n() as f64, cfg.readout.lambda);
    let mut prepared = readout_model.prepare(&mut state);
    let rf_test_error = readout_model.readout_error(&prepared, n_readout, lambda)?;
    let mut out = Vec::with_capacity(steps);
    let mut notes = Vec::new();
    // The steps up to a divergence are kept (so that a prediction of T steps is the first T
    // steps of any longer one, as runs are).
    for t in 1..=steps {
        cancel.check()?;
        let gamma = cfg.eta_at(t) / p as f64;
        let stepped = model(cfg.train.preprocess_at(t)).step(prepared, gamma, cfg.train_n() as f64, t);
        prepared = readout_model.prepare(&mut state);
        let error = stepped.and_then(|_| readout_model.readout_error(&prepared, n_readout, lambda));
        match error {
            Ok(test_error) => out.push(PredictedStep {
                t,
                test_error,
                mean_abs_cos: prepared.state().mean_abs_cos(),
            }),
            Err(e) => {
                notes.push(format!("no prediction from step {t} on: {e}"));
                break;
            }
        }
    }
    Ok(finish(&cfg, out, rf_test_error, readout_model, notes))
}

/// The configuration a prediction of `steps` steps (its own `train.steps` when 0) runs on.
///
/// # Errors
/// [`Error::Invalid`] for what the state evolution does not model.
fn predictable(cfg: &ValidConfig, steps: usize) -> Result<(ValidConfig, usize)> {
    if let Some(e) = unsupported(cfg) {
        return Err(e);
    }
    let steps = if steps == 0 { cfg.train.steps } else { steps };
    let cfg = if steps == cfg.train.steps {
        cfg.clone()
    } else {
        cfg.with_steps(steps)?
    };
    Ok((cfg, steps))
}

/// A prediction's steps and random features with the notes on where it holds.
fn finish(
    cfg: &ValidConfig,
    steps: Vec<PredictedStep>,
    rf_test_error: f64,
    readout: &Model,
    mut notes: Vec<String>,
) -> Prediction {
    let kappa = kappa_of(cfg);
    if kappa < KAPPA_MIN {
        notes.push(format!(
            "log n / log d = {kappa:.3} < {KAPPA_MIN}: outside the range checked against simulation"
        ));
    }
    if cfg.readout.batch == ReadoutBatch::Last {
        notes.push("readout.batch = last is treated as a fresh batch".into());
    }
    Prediction {
        steps,
        rf_test_error,
        label_second_moment: readout.label_second_moment(),
        covered: kappa >= KAPPA_MIN,
        notes,
    }
}

/// Which form of the state evolution a prediction uses (docs/theory.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Form {
    /// The `p` neurons of the network with their whole orthogonal Gram matrix
    /// ([`crate::theory::dynamics`]).
    #[default]
    FiniteP,
    /// A population of `particles` neurons (at least `p`) whose own orthogonal directions do not
    /// interact: the `p → ∞` limit ([`crate::theory::mean_field`]).
    MeanField {
        /// Particles of the population.
        particles: usize,
    },
}

impl Form {
    /// Default population of the mean-field form.
    pub const PARTICLES: usize = 1024;

    /// `"finite-p"` or `"mean-field"`.
    pub fn name(&self) -> &'static str {
        match self {
            Form::FiniteP => "finite-p",
            Form::MeanField { .. } => "mean-field",
        }
    }

    /// The form named `name` (`"finite-p"`, `"mean-field"`), the mean field with `particles`.
    ///
    /// # Errors
    /// [`Error::Invalid`] (`form`) for another name, (`particles`) for fewer than 2.
    pub fn parse(name: &str, particles: usize) -> Result<Form> {
        match name {
            "finite-p" => Ok(Form::FiniteP),
            "mean-field" if particles >= 2 => Ok(Form::MeanField { particles }),
            "mean-field" => Err(Error::invalid("particles", "at least 2", particles)),
            other => Err(Error::invalid(
                "form",
                "\"finite-p\" or \"mean-field\"",
                format!("{other:?}"),
            )),
        }
    }
}

/// [`predict`] in the given form, stopping with [`Error::Cancelled`] once `cancel` is set.
///
/// # Errors
/// As [`predict`], and [`Error::Cancelled`].
pub fn predict_form_with(cfg: &ValidConfig, steps: usize, form: Form, cancel: &Cancel) -> Result<Prediction> {
    match form {
        Form::FiniteP => predict_with(cfg, steps, cancel),
        Form::MeanField { particles } => predict_mean_field(cfg, steps, particles, cancel),
    }
}

/// The mean-field prediction: a population of `max(p, particles)` neurons drawn by the
/// network's initializer at that width for the seed; the readout's `p` features are its first
/// rows (and their mirrors with symmetric init).
fn predict_mean_field(cfg: &ValidConfig, steps: usize, particles: usize, cancel: &Cancel) -> Result<Prediction> {
    let (cfg, steps) = predictable(cfg, steps)?;
    let (d, p, r) = (cfg.network.d, cfg.network.p, cfg.r());
    let symmetric = cfg.network.symmetric;
    let mut k = particles.max(p);
    if symmetric && k % 2 == 1 {
        k += 1;
    }
    let net = Network::init(&NetworkConfig { p: k, ..cfg.network }, cfg.seed);
    let target = Target::new(cfg.expr().clone(), r, d, cfg.target.teacher, 0.0, cfg.seed)?;
    let features: Vec<usize> = if symmetric {
        (0..p / 2).chain(k / 2..k / 2 + p / 2).collect()
    } else {
        (0..p).collect()
    };
    let mut pop = Population::from_weights(&net.w, &net.a, &target.w_star, d, r, features)?;
    let models = Models::new(&cfg)?;
    let readout_model = models.of(cfg.train.readout_preprocess());
    let (n_readout, lambda) = (cfg.readout_n() as f64, cfg.readout.lambda);
    let mut fl = mean_field::fields(readout_model, &pop);
    let rf_test_error = mean_field::readout_error(readout_model, &pop, &fl, n_readout, lambda)?;
    let mut out = Vec::with_capacity(steps);
    let mut notes = vec![format!("mean-field form with {k} particles")];
    for t in 1..=steps {
        cancel.check()?;
        let gamma = cfg.eta_at(t) / p as f64;
        let model = models.of(cfg.train.preprocess_at(t));
        let error = mean_field::step(model, &mut pop, &fl, gamma, cfg.train_n() as f64, cfg.seed, t).and_then(|_| {
            fl = mean_field::fields(readout_model, &pop);
            mean_field::readout_error(readout_model, &pop, &fl, n_readout, lambda)
        });
        match error {
            Ok(test_error) => out.push(PredictedStep {
                t,
                test_error,
                mean_abs_cos: pop.mean_abs_cos(),
            }),
            Err(e) => {
                notes.push(format!("no prediction from step {t} on: {e}"));
                break;
            }
        }
    }
    if pop.captured < 0.99 {
        notes.push(format!(
            "the common noise directions kept per step captured {:.3} of its covariance",
            pop.captured
        ));
    }
    Ok(finish(&cfg, out, rf_test_error, readout_model, notes))
}

/// One state-evolution model per label preprocessing a configuration uses: the steps before
/// `preprocess_from` and the readout may see raw labels while later steps see preprocessed ones.
struct Models(Vec<(Preprocess, Model)>);

impl Models {
    fn new(cfg: &ValidConfig) -> Result<Models> {
        let (d, r) = (cfg.network.d, cfg.r());
        let expr = cfg.expr().clone();
        let grid = Grid::new(r, cfg.seed)?;
        let g = |x: &[f64]| expr.eval(x);
        let (mut mu0, mut mu1) = (0.0, vec![0.0; r]);
        for (x, w) in grid.x.chunks_exact(r.max(1)).zip(&grid.w) {
            let v = g(x);
            mu0 += w * v;
            mu1.iter_mut().zip(x).for_each(|(m, xk)| *m += w * v * xk);
        }
        let model_of = |pre: Preprocess| -> Result<Model> {
            let shift0 = if pre == Preprocess::None { 0.0 } else { mu0 };
            let shift1 = if pre == Preprocess::Linear {
                mu1.clone()
            } else {
                vec![0.0; r]
            };
            let label = |x: &[f64]| g(x) - shift0 - dot(&shift1, x);
            Model::new(&Setup {
                label: &label,
                r,
                d,
                activation: cfg.network.activation,
                correlation: cfg.train.loss == Loss::Correlation,
                normalize: cfg.train.normalize,
                noise: cfg.target.noise,
                seed: cfg.seed,
            })
        };
        let mut models: Vec<(Preprocess, Model)> = Vec::new();
        for pre in (1..=cfg.train.steps)
            .map(|t| cfg.train.preprocess_at(t))
            .chain(std::iter::once(cfg.train.readout_preprocess()))
        {
            if !models.iter().any(|(p, _)| *p == pre) {
                models.push((pre, model_of(pre)?));
            }
        }
        Ok(Models(models))
    }

    fn of(&self, pre: Preprocess) -> &Model {
        &self.0.iter().find(|(p, _)| *p == pre).expect("built for every step").1
    }
}

/// The predicted stairway: one list per `T = 1..=steps`, aligned with `kappa`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// `log n / log d` of each batch size.
    pub kappa: Vec<f64>,
    /// The batch sizes.
    pub n: Vec<usize>,
    /// Seeds averaged over.
    pub seeds: Vec<u64>,
    /// `test_error[T−1][j]`: predicted test error after `T` steps at `kappa[j]` (`None` where the
    /// prediction is not covered).
    pub test_error: Vec<Vec<Option<f64>>>,
    /// Random features at `kappa[j]`.
    pub rf_test_error: Vec<Option<f64>>,
    /// Mean `|cos|` with each teacher direction: `mean_abs_cos[T−1][j]`.
    pub mean_abs_cos: Vec<Vec<Option<Vec<f64>>>>,
    /// The smallest `log n / log d` reported.
    pub kappa_min: f64,
    /// Notes (approximations, points left out).
    pub notes: Vec<String>,
}

/// The batch sizes, seeds, learning-rate cap and schedule of a predicted stairway, with the
/// defaults of `giantstep theory --curve` and of the Python package's `theory(curve=True)`; the
/// rest of the question (target, `d`, `p`, activation, …) is a [`Query`].
///
/// ```
/// use giantstep::prediction::CurveQuery;
/// let c = CurveQuery { kappa_from: 1.5, kappa_to: 2.0, kappa_step: 0.25, ..Default::default() };
/// assert_eq!(c.kappas()?, [1.5, 1.75, 2.0]);
/// # Ok::<(), giantstep::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CurveQuery {
    /// Smallest batch exponent `κ` (`n = d^κ`).
    pub kappa_from: f64,
    /// Largest batch exponent.
    pub kappa_to: f64,
    /// Step between batch exponents.
    pub kappa_step: f64,
    /// Seeds `0..seeds` averaged over (1 to [`CurveQuery::MAX_SEEDS`]).
    pub seeds: u64,
    /// Learning-rate cap `η ≤ eta_max0·p` (`train.eta_max0`).
    pub eta_max0: Option<f64>,
    /// Per-step learning-rate multipliers (`train.eta_schedule`; the last repeats).
    pub eta_schedule: Option<Vec<f64>>,
    /// Form of the state evolution: `"finite-p"` or `"mean-field"` ([`Form::parse`]).
    pub form: String,
    /// Particles of the mean-field form (at least `p` are used).
    pub particles: usize,
}

impl Default for CurveQuery {
    fn default() -> Self {
        CurveQuery {
            kappa_from: 0.25,
            kappa_to: 2.25,
            kappa_step: 0.125,
            seeds: 1,
            eta_max0: None,
            eta_schedule: None,
            form: Form::FiniteP.name().into(),
            particles: Form::PARTICLES,
        }
    }
}

impl CurveQuery {
    /// Most seeds of one curve.
    pub const MAX_SEEDS: u64 = 100;
    /// Most batch sizes of one curve.
    pub const MAX_KAPPAS: usize = 1001;

    /// `κ_from, κ_from + step, …` up to `κ_to` (each rounded to 1e-9, so that 0.1 + 0.2 is 0.3).
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `kappa_from`, `kappa_to` or `kappa_step`.
    pub fn kappas(&self) -> Result<Vec<f64>> {
        let (from, to, step) = (self.kappa_from, self.kappa_to, self.kappa_step);
        if !(from.is_finite() && from > 0.0) {
            return Err(Error::invalid("kappa_from", "finite and > 0", from));
        }
        if !(to.is_finite() && to >= from) {
            return Err(Error::invalid(
                "kappa_to",
                format!("finite and >= kappa_from ({from})"),
                to,
            ));
        }
        if !(step.is_finite() && step > 0.0) {
            return Err(Error::invalid("kappa_step", "finite and > 0", step));
        }
        let count = ((to - from) / step + 1e-9).floor();
        if count >= Self::MAX_KAPPAS as f64 {
            let least = (to - from) / (Self::MAX_KAPPAS - 1) as f64;
            return Err(Error::invalid(
                "kappa_step",
                format!("at least {least} (at most {} batch sizes)", Self::MAX_KAPPAS),
                step,
            ));
        }
        Ok((0..=count as usize)
            .map(|i| ((from + i as f64 * step) * 1e9).round() / 1e9)
            .collect())
    }

    /// The form of the state evolution.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `form` or `particles`.
    pub fn form(&self) -> Result<Form> {
        Form::parse(&self.form, self.particles)
    }

    /// The seeds `0..seeds`.
    ///
    /// # Errors
    /// [`Error::Invalid`] (`seeds`) outside 1 to [`CurveQuery::MAX_SEEDS`].
    pub fn seed_list(&self) -> Result<Vec<u64>> {
        if self.seeds == 0 || self.seeds > Self::MAX_SEEDS {
            return Err(Error::invalid(
                "seeds",
                format!("between 1 and {}", Self::MAX_SEEDS),
                self.seeds,
            ));
        }
        Ok((0..self.seeds).collect())
    }

    /// The curve's base configuration as a table, from the fields of `q` that configure a run
    /// (target, `r`, `d`, `p`, activation, second layer, `eta0`, `eta_exp`, preprocessing, steps,
    /// `normalize` as `"project"`, `correlation` as the correlation loss) and this cap and
    /// schedule. Further keys are set on the table with [`crate::config::set_key`] before it
    /// becomes a [`Config`].
    ///
    /// # Errors
    /// [`Error::Invalid`] (`steps`) for 0 steps.
    pub fn base_table(&self, q: &Query) -> Result<toml::Table> {
        use toml::Value;
        if q.steps == 0 {
            return Err(Error::invalid("steps", ">= 1", 0));
        }
        let target_key = if crate::target::preset_expr(&q.target).is_ok() {
            "target.preset"
        } else {
            "target.expr"
        };
        let int = |v: usize| Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
        let mut keys = vec![
            (target_key, Value::String(q.target.clone())),
            ("network.d", int(q.d)),
            ("network.p", int(q.p)),
            ("network.activation", Value::String(q.activation.clone())),
            ("network.second_layer", Value::String(q.second_layer.clone())),
            ("train.eta0", Value::Float(q.eta0)),
            ("train.eta_exp", Value::Float(q.eta_exp)),
            ("train.preprocess", Value::String(q.preprocess.clone())),
            ("train.steps", int(q.steps)),
        ];
        if q.normalize {
            keys.push(("train.normalize", Value::String("project".into())));
        }
        if q.correlation {
            keys.push(("train.loss", Value::String("correlation".into())));
        }
        if let Some(r) = q.r {
            keys.push(("target.r", int(r)));
        }
        if let Some(c) = self.eta_max0 {
            keys.push(("train.eta_max0", Value::Float(c)));
        }
        if let Some(s) = &self.eta_schedule {
            keys.push((
                "train.eta_schedule",
                Value::Array(s.iter().map(|&v| Value::Float(v)).collect()),
            ));
        }
        let mut table = toml::Table::new();
        for (key, value) in keys {
            crate::config::set_key(&mut table, key, value)?;
        }
        Ok(table)
    }
}

/// The predicted stairway of `base` over `n = d^κ` for `κ` in `kappas` and `T = 1..=steps`,
/// averaged over `seeds` (each seed is one draw of the initial layer and of the gradient noise,
/// as in simulation).
///
/// # Errors
/// An invalid configuration at some `κ`, or a configuration the state evolution does not model.
pub fn curve(base: &Config, kappas: &[f64], steps: usize, seeds: &[u64]) -> Result<Curve> {
    curve_with(base, kappas, steps, seeds, &Cancel::default())
}

/// [`curve`] that stops with [`Error::Cancelled`] once `cancel` is set (checked between the
/// steps of every point).
///
/// # Errors
/// As [`curve`], and [`Error::Cancelled`].
pub fn curve_with(base: &Config, kappas: &[f64], steps: usize, seeds: &[u64], cancel: &Cancel) -> Result<Curve> {
    curve_form_with(base, kappas, steps, seeds, Form::FiniteP, cancel)
}

/// [`curve_with`] in the given form of the state evolution.
///
/// # Errors
/// As [`curve`], and [`Error::Cancelled`].
pub fn curve_form_with(
    base: &Config,
    kappas: &[f64],
    steps: usize,
    seeds: &[u64],
    form: Form,
    cancel: &Cancel,
) -> Result<Curve> {
    if steps == 0 {
        return Err(Error::invalid("steps", ">= 1", 0));
    }
    if seeds.is_empty() {
        return Err(Error::invalid("seeds", "at least one seed", "none"));
    }
    // A readout batch resolved to the base's own training batch follows every batch size.
    let mut base = base.clone();
    if base.readout.n.is_some() && base.readout.n.as_ref() == Some(&base.train.n) {
        base.readout.n = None;
    }
    let computed: Vec<f64> = kappas.iter().copied().filter(|&k| k >= KAPPA_MIN).collect();
    let mut configs = Vec::with_capacity(computed.len() * seeds.len());
    for &k in &computed {
        for &seed in seeds {
            let mut c = base.clone();
            c.train.n = BatchSize::Expr(format!("d^{}", (k * 1e9).round() / 1e9));
            c.train.steps = steps;
            c.seed = seed;
            configs.push(c.resolve()?);
        }
    }
    let preds: Vec<Result<Prediction>> = configs
        .par_iter()
        .map(|c| predict_form_with(c, steps, form, cancel))
        .collect();
    cancel.check()?;
    let ns = seeds.len() as f64;
    let n = kappas
        .iter()
        .map(|&k| {
            let mut c = base.clone();
            c.train.n = BatchSize::Expr(format!("d^{}", (k * 1e9).round() / 1e9));
            c.train.n.resolve(c.network.d, "train.n")
        })
        .collect::<Result<Vec<usize>>>()?;
    let mut out = Curve {
        kappa: kappas.to_vec(),
        n,
        seeds: seeds.to_vec(),
        test_error: vec![vec![None; kappas.len()]; steps],
        rf_test_error: vec![None; kappas.len()],
        mean_abs_cos: vec![vec![None; kappas.len()]; steps],
        kappa_min: KAPPA_MIN,
        notes: Vec::new(),
    };
    for (jc, &k) in computed.iter().enumerate() {
        let j = kappas.iter().position(|&v| v == k).expect("from kappas");
        let group = &preds[jc * seeds.len()..(jc + 1) * seeds.len()];
        let mut ok = Vec::with_capacity(seeds.len());
        for p in group {
            match p {
                Ok(p) => ok.push(p),
                Err(e) => {
                    out.notes.push(format!("log n / log d = {k}: {e}"));
                    break;
                }
            }
        }
        if ok.len() < seeds.len() || !ok[0].covered {
            continue;
        }
        out.rf_test_error[j] = Some(ok.iter().map(|p| p.rf_test_error).sum::<f64>() / ns);
        // Every seed must reach step t (a diverged seed leaves the later steps unreported).
        let reached = ok.iter().map(|p| p.steps.len()).min().unwrap_or(0);
        for t in 0..steps.min(reached) {
            out.test_error[t][j] = Some(ok.iter().map(|p| p.steps[t].test_error).sum::<f64>() / ns);
            let r = ok[0].steps[t].mean_abs_cos.len();
            let cos = (0..r)
                .map(|kk| ok.iter().map(|p| p.steps[t].mean_abs_cos[kk]).sum::<f64>() / ns)
                .collect();
            out.mean_abs_cos[t][j] = Some(cos);
        }
        for note in ok.iter().flat_map(|p| &p.notes) {
            if !out.notes.contains(note) && !note.starts_with("log n") {
                out.notes.push(note.clone());
            }
        }
    }
    if kappas.iter().any(|&k| k < KAPPA_MIN) {
        out.notes.push(format!(
            "not reported below log n / log d = {KAPPA_MIN}: there the predicted errors drift from simulation by more than 0.06 (docs/theory.md §6)"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(d: usize, n: &str) -> ValidConfig {
        let mut c = Config::default();
        c.network.d = d;
        c.network.p = 8;
        c.train.n = match n.parse::<u64>() {
            Ok(v) => BatchSize::Count(v),
            Err(_) => BatchSize::Expr(n.into()),
        };
        c.resolve().unwrap()
    }

    #[test]
    fn the_warning_below_kappa_checked_spares_n_rounded_down_from_d_to_the_1_5() {
        // 48^1.5 = 332.55: n = 332 has log n / log d = 1.4996 but is d^1.5 rounded down.
        assert!(kappa_of(&cfg(48, "d^1.5")) < KAPPA_CHECKED);
        assert_eq!(below_checked(&cfg(48, "d^1.5")), None);
        assert!(below_checked(&cfg(48, "331")).is_some());
        assert!(below_checked(&cfg(48, "d^1.4")).is_some());
        // 64^1.5 = 512 exactly.
        assert_eq!(below_checked(&cfg(64, "512")), None);
        assert!(below_checked(&cfg(64, "511")).is_some());
        assert_eq!(below_checked(&cfg(64, "d^2")), None);
    }
}
