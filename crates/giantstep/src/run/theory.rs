//! The theory attached to a run: the closed forms and recursions of docs/theory.md next to the
//! measured steps, and the predicted test error of the state evolution (docs/theory.md §6).

use super::{Ctx, RunTheory, Started, StepRecord, Trained};
use crate::config::{AddBack, Loss, Normalize, ValidConfig};
use crate::error::{Error, Result};
use crate::target::Target;

/// Widest network for which a run attaches the predicted test error (its cost grows like p³).
const PREDICT_MAX_P: usize = 1024;
/// Most steps for which a run attaches the predicted test error.
const PREDICT_MAX_STEPS: usize = 16;

/// The theory per evaluated `T` (also computed for the oracle add-back, which needs it), or
/// `None` when neither asks for it or training stopped before `T`.
pub(super) fn theories(
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
        && crate::prediction::kappa_of(cfg) >= crate::prediction::KAPPA_MIN
        && cfg.train.reuse == 1)
        .then(|| crate::prediction::predict_from(cfg, t_max, &start.w0, &start.net.a, &ctx.target.w_star).ok())
        .flatten();
    ctx.eval_at
        .iter()
        .map(|&t| {
            (t <= trained.steps.len() && wanted).then(|| match custom_name {
                Some(name) => Err(Error::Unsupported(format!(
                    "the target is a function given at run time ({name}); the theory needs an expression"
                ))),
                None => theory_for(cfg, t, &ctx.target, &trained.steps[..t]).map(|mut th| {
                    if let Some(p) = &predicted {
                        th.test_error = p.steps.get(t - 1).map(|s| s.test_error);
                        th.rf_test_error = Some(p.rf_test_error);
                        if let Some(w) = crate::prediction::below_checked(cfg) {
                            th.warnings.push(w);
                        }
                    }
                    th
                }),
            })
        })
        .collect()
}

/// The theory a result carries, or why not.
pub(super) fn attached(cfg: &ValidConfig, theory: &Option<Result<RunTheory>>) -> (Option<RunTheory>, Option<String>) {
    match theory {
        None => (None, Some("eval.theory = false".into())),
        Some(Err(e)) => (None, Some(e.to_string())),
        Some(Ok(_)) if !cfg.eval.theory => (None, Some("eval.theory = false".into())),
        Some(Ok(th)) => (Some(th.clone()), None),
    }
}

/// Largest rank for which `run` attaches the theory (its cost grows like nodes^r).
const RUN_THEORY_MAX_RANK: usize = 8;

/// The theory of a run of `t` steps next to its measured steps.
fn theory_for(cfg: &ValidConfig, t: usize, target: &Target, steps: &[StepRecord]) -> Result<RunTheory> {
    let (n, eta) = (cfg.train_n(), cfg.eta());
    use crate::theory::{self, subspace::principal_angles, TheoryOptions};
    let r = target.r;
    if r > RUN_THEORY_MAX_RANK {
        return Err(Error::RankLimit {
            what: "the theory attached to a run".into(),
            limit: format!("r <= {RUN_THEORY_MAX_RANK} (giantstep theory handles more)"),
            r,
        });
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
