//! The theory attached to a run: the closed forms and recursions of docs/theory.md next to the
//! measured steps, and the predicted test error of the state evolution (docs/theory.md §6).

use super::{Ctx, RunTheory, StepRecord, Trained};
use crate::config::{AddBack, Loss, Normalize, ValidConfig};
use crate::error::{Cancel, Error, Result};
use crate::target::Target;
use crate::theory::TheoryReport;

/// Widest network for which a run attaches the predicted test error (its cost grows like p³).
const PREDICT_MAX_P: usize = 1024;
/// Most steps for which a run attaches the predicted test error.
const PREDICT_MAX_STEPS: usize = 16;
/// Most steps for which a run attaches the theory at all: its recursions cost up to about a
/// second per step at rank 3, which past this would dominate a many-step run
/// (`giantstep theory --steps T` computes any number of steps).
pub const RUN_THEORY_MAX_STEPS: usize = 16;

/// The theory's heavy part for a run of `t_max` steps: the predicted test error and the
/// analyses, which depend on the configuration, the start and the teacher only (not on the
/// trained layers), so that a run computes them beside its training ([`theories`] attaches them).
pub(super) struct Computed {
    /// The steps they were computed for.
    t_max: usize,
    predicted: Option<crate::prediction::Prediction>,
    reports: Vec<(Option<u64>, usize, Result<TheoryReport>)>,
}

/// Computes [`Computed`] for a run of `t_max` steps from its start `w0` and second layer `a`
/// (nothing when neither the theory nor the oracle add-back asks for it), until `cancel`.
///
/// One analysis serves every evaluated `T` with the same learning rate of the later steps
/// (the recursions of `T` steps begin with those of fewer): the largest such `T` is computed,
/// the others are its prefixes.
pub(super) fn compute(ctx: &Ctx, w0: &[f64], a: &[f64], t_max: usize, skip: Option<&str>, cancel: &Cancel) -> Computed {
    let cfg = ctx.cfg;
    let wanted = cfg.eval.theory || cfg.readout.add_back == AddBack::Oracle;
    let predictable = cfg.eval.theory
        && skip.is_none()
        && cfg.network.p <= PREDICT_MAX_P
        && (1..=PREDICT_MAX_STEPS).contains(&t_max)
        && crate::prediction::kappa_of(cfg) >= crate::prediction::KAPPA_MIN
        && cfg.train.reuse == 1;
    let evaluated: Vec<usize> = ctx.eval_at.iter().copied().filter(|&t| t <= t_max).collect();
    // The analyses to make: the largest evaluated T of each learning rate of the later steps.
    let mut wanted_t: Vec<(Option<u64>, usize)> = Vec::new();
    if wanted && skip.is_none() {
        for &t in evaluated.iter().rev() {
            let key = gamma_later(cfg, t).map(f64::to_bits);
            if t <= RUN_THEORY_MAX_STEPS && !wanted_t.iter().any(|(k, _)| *k == key) {
                wanted_t.push((key, t));
            }
        }
    }
    // The prediction and the analyses are independent computations, each on its own inputs:
    // they run side by side on the machine's threads, with the same results as one after the
    // other.
    use rayon::prelude::*;
    let (predicted, reports) = rayon::join(
        || {
            predictable
                .then(|| crate::prediction::predict_from_with(cfg, t_max, w0, a, &ctx.target.w_star, cancel).ok())
                .flatten()
        },
        || {
            wanted_t
                .par_iter()
                .map(|&(key, t)| (key, t, analysis(cfg, t, &ctx.target, cancel)))
                .collect::<Vec<(Option<u64>, usize, Result<TheoryReport>)>>()
        },
    );
    Computed {
        t_max,
        predicted,
        reports,
    }
}

/// The theory per evaluated `T` (also computed for the oracle add-back, which needs it), or
/// `None` when neither asks for it or training stopped before `T`: `computed` (computed for
/// the steps the run trained, [`compute`]) next to the measured steps.
pub(super) fn theories(
    ctx: &Ctx,
    computed: &Computed,
    trained: &Trained,
    skip: Option<&str>,
) -> Vec<Option<Result<RunTheory>>> {
    let cfg = ctx.cfg;
    let wanted = cfg.eval.theory || cfg.readout.add_back == AddBack::Oracle;
    let t_max = trained.steps.len();
    assert_eq!(computed.t_max, t_max, "the theory is computed for the steps trained");
    let (predicted, reports) = (&computed.predicted, &computed.reports);
    ctx.eval_at
        .iter()
        .map(|&t| {
            (t <= t_max && wanted).then(|| {
                if let Some(why) = skip {
                    return Err(Error::Unsupported(why.to_string()));
                }
                if t > RUN_THEORY_MAX_STEPS {
                    return Err(Error::Unsupported(format!(
                        "a run attaches the theory up to {RUN_THEORY_MAX_STEPS} steps, this one has {t} (giantstep theory --steps {t} computes it)"
                    )));
                }
                let key = gamma_later(cfg, t).map(f64::to_bits);
                let rep = match reports.iter().find(|(k, _, _)| *k == key) {
                    Some((_, _, Ok(rep))) => rep,
                    Some((_, _, Err(e))) => return Err(e.clone()),
                    None => unreachable!("an analysis for every evaluated T"),
                };
                let mut th = attach(cfg, &prefix(rep, t), &trained.steps[..t])?;
                if let Some(p) = &predicted {
                    th.test_error = p.steps.get(t - 1).map(|s| s.test_error);
                    th.rf_test_error = Some(p.rf_test_error);
                    if let Some(w) = crate::prediction::below_checked(cfg) {
                        th.warnings.push(w);
                    }
                }
                Ok(th)
            })
        })
        .collect()
}

/// The largest `γ = η_t / p` of the steps `2..=t`, which decides whether they blow up.
fn gamma_later(cfg: &ValidConfig, t: usize) -> Option<f64> {
    (2..=t).map(|s| cfg.eta_at(s) / cfg.network.p as f64).reduce(f64::max)
}

/// The report of the first `t` steps of a report of more (the recursions' prefix).
fn prefix(rep: &TheoryReport, t: usize) -> TheoryReport {
    let mut rep = rep.clone();
    rep.generic_subspaces.truncate(t);
    rep.activation_subspaces.truncate(t);
    rep.predicted_abs_cos.truncate(t);
    rep.neurons.truncate(t);
    rep.blocked.retain(|b| b.step <= t);
    rep
}

/// The theory a result carries, or why not.
pub(super) fn attached(cfg: &ValidConfig, theory: &Option<Result<RunTheory>>) -> (Option<RunTheory>, Option<String>) {
    match theory {
        None => (None, Some("eval.theory = false".into())),
        Some(Err(Error::Unsupported(why))) => (None, Some(why.clone())),
        Some(Err(e)) => (None, Some(e.to_string())),
        Some(Ok(_)) if !cfg.eval.theory => (None, Some("eval.theory = false".into())),
        Some(Ok(th)) => (Some(th.clone()), None),
    }
}

/// Largest rank for which `run` attaches the theory (its cost grows like nodes^r).
const RUN_THEORY_MAX_RANK: usize = 8;

/// The theory of a run of `t` steps next to its measured steps.
/// The theory of `t` steps of a run's configuration (`giantstep theory`'s report).
fn analysis(cfg: &ValidConfig, t: usize, target: &Target, cancel: &Cancel) -> Result<TheoryReport> {
    let r = target.r;
    if r > RUN_THEORY_MAX_RANK {
        return Err(Error::RankLimit {
            what: "the theory attached to a run".into(),
            limit: format!("r <= {RUN_THEORY_MAX_RANK} (giantstep theory handles more)"),
            r,
        });
    }
    crate::theory::analyze(&target.expr, r, &options(cfg, t, cancel))
}

/// The theory's options for `t` steps of a run's configuration.
fn options(cfg: &ValidConfig, t: usize, cancel: &Cancel) -> crate::theory::TheoryOptions {
    let (n, eta) = (cfg.train_n(), cfg.eta());
    let (d, p) = (cfg.network.d as f64, cfg.network.p as f64);
    let nf = n as f64;
    crate::theory::TheoryOptions {
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
        gamma_later: gamma_later(cfg, t),
        batch: crate::theory::batch::FiniteBatch {
            d,
            n: nf,
            gamma: eta / p,
        },
        cancel: cancel.clone(),
    }
}

/// The theory of a run of `t` steps (`rep`, a report of `t` steps) next to its measured steps.
fn attach(cfg: &ValidConfig, rep: &TheoryReport, steps: &[StepRecord]) -> Result<RunTheory> {
    use crate::theory::subspace::principal_angles;
    let d = cfg.network.d as f64;
    let kappa = (cfg.train_n() as f64).ln() / d.ln();
    // The quadratic closed form's caveat only matters when the batch is quadratic.
    let mut warnings: Vec<String> = rep
        .warnings
        .iter()
        .filter(|w| kappa >= 2.0 || !w.contains("quadratic_one_step"))
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

/// Most points on which a target function is called for its stability check (two grids).
const CUSTOM_MAX_POINTS: f64 = 65536.0;

/// The stability warnings of a run whose target is a function given at run time, per evaluated
/// `T` (empty where stable): the later steps' blow-up depends on the target only through its
/// Hermite expansion, which the function's values on a Gauss–Hermite grid give. The function is
/// called on the grid in blocks, like the engine calls it on a batch.
pub(super) fn custom_warnings(ctx: &Ctx, custom: &crate::target::CustomTarget, t_max: usize) -> Vec<Vec<String>> {
    let (cfg, r) = (ctx.cfg, ctx.target.r);
    let nodes = (CUSTOM_MAX_POINTS.powf(1.0 / r.max(1) as f64).floor() as usize).min(64);
    if !cfg.eval.theory || nodes < 8 || !ctx.eval_at.iter().any(|&t| t >= 2 && t <= t_max) {
        return vec![Vec::new(); ctx.eval_at.len()];
    }
    let table = match tabulate(custom, r, nodes) {
        Ok(t) => t,
        Err(e) => return vec![vec![format!("no stability check of the target function: {e}")]; ctx.eval_at.len()],
    };
    let g = |x: &[f64]| {
        let key: Vec<u64> = x.iter().map(|v| v.to_bits()).collect();
        table.get(&key).copied().unwrap_or(f64::NAN)
    };
    let cancel = ctx.exec.cancel_token();
    ctx.eval_at
        .iter()
        .map(|&t| {
            if t > t_max {
                return Vec::new();
            }
            match crate::theory::stability_warning_of(&g, r, nodes, &options(cfg, t, &cancel)) {
                Ok(w) => w.into_iter().collect(),
                Err(e) => vec![format!("no stability check of the target function: {e}")],
            }
        })
        .collect()
}

/// The values of a target function on the tensor Gauss–Hermite grids of `nodes` and of the
/// coarser check [`crate::theory::hermite::expand`] makes, keyed by the point's bits.
fn tabulate(
    custom: &crate::target::CustomTarget,
    r: usize,
    nodes: usize,
) -> Result<std::collections::HashMap<Vec<u64>, f64>> {
    const BLOCK: usize = 4096;
    let mut table = std::collections::HashMap::new();
    for n in [nodes, (3 * nodes / 4).max(8)] {
        let rule = crate::theory::quadrature::gauss_hermite(n)?;
        let total = n.pow(r as u32);
        let mut x = Vec::with_capacity(BLOCK * r);
        let mut y = vec![0.0; BLOCK];
        for start in (0..total).step_by(BLOCK) {
            let m = BLOCK.min(total - start);
            x.clear();
            for flat in start..start + m {
                let mut rem = flat;
                let mut row = vec![0.0; r];
                for j in (0..r).rev() {
                    row[j] = rule.nodes[rem % n];
                    rem /= n;
                }
                x.extend_from_slice(&row);
            }
            (custom.f)(&x, &mut y[..m]).map_err(Error::Target)?;
            for (row, v) in x.chunks_exact(r).zip(&y[..m]) {
                table.insert(row.iter().map(|v| v.to_bits()).collect(), *v);
            }
        }
    }
    Ok(table)
}
