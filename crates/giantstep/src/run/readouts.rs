//! The ridge readouts of every evaluated `T` and their test errors, in one pass over each batch.

use super::baseline::baseline_config_key;
use super::{interrupted, preprocess_shift, train_batch, Ctx, RunTheory, ShiftCache, Started, Trained};
use crate::config::{AddBack, Preprocess, ReadoutBatch, ValidConfig};
use crate::data::Purpose;
use crate::engine::{self, Batch, Exec, Readout};
use crate::error::{Error, Result};
use crate::target::Target;

/// The trained readout of one `T` and its random-features readout (absent without baseline).
type Fitted = (Result<Readout>, Option<Result<Readout>>);

/// Per evaluated `T`: the trained readout and the random-features readout (unless
/// `eval.baseline = false`), or why not; and the readout group of each `T` (the `T` that share a
/// readout batch share one random-features readout).
pub(super) struct Fits {
    pub(super) fitted: Vec<Option<Fitted>>,
    pub(super) group_of: Vec<usize>,
    /// Per readout group: the baseline's test error when it came from the cache, and the
    /// cache key under which a newly computed baseline is stored.
    rf_known: Vec<Option<f64>>,
    rf_key: Vec<Option<String>>,
}

/// The ridge readouts of every evaluated `T` (docs/model.md §3.2): the layers that share a
/// readout batch are fitted in one pass.
pub(super) fn fit_all<T: crate::linalg::Real>(
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
            key: cfg.sample_key(Purpose::Readout, 0),
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
        let shift = match readout_shift(cfg, exec, target, batch, &trained.shifts, &theories[members[0]]) {
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
            custom: net.custom_activation.as_ref(),
            target,
            batch,
            shift: shift.as_ref(),
            lambda: cfg.readout.lambda,
        };
        let mut outs = engine::fit_readouts_each::<T>(exec, &layers, &problem);
        interrupted(exec, target, net)?;
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
pub(super) type Tested = (Vec<f64>, Vec<Option<(usize, Option<RfError>)>>, f64);

/// Where a baseline's test error is: a position in the test pass's errors, or known already.
#[derive(Debug, Clone, Copy)]
pub(super) enum RfError {
    Tested(usize),
    Known(f64),
}

pub(super) fn test_all<T: crate::linalg::Real>(
    ctx: &Ctx,
    net: &Started,
    trained: &Trained,
    fits: &Fits,
) -> Result<Tested> {
    let (cfg, exec, target) = (ctx.cfg, &ctx.exec, &ctx.target);
    let test_batch = Batch {
        key: cfg.sample_key(Purpose::Test, 0),
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
            custom: net.custom_activation.as_ref(),
            target,
            batch: &test_batch,
        };
        engine::test_errors::<T>(exec, &pairs, &problem)
    };
    interrupted(exec, target, net)?;
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

/// The label shift of the readout batch: removed from its labels before the ridge fit and (for
/// `empirical` and `oracle`) added back to the test predictions.
fn readout_shift(
    cfg: &ValidConfig,
    exec: &Exec,
    target: &Target,
    batch: &Batch,
    shifts: &ShiftCache,
    theory: &Option<Result<RunTheory>>,
) -> Result<Option<engine::LabelShift>> {
    let d = target.d;
    Ok(match (cfg.readout.add_back, cfg.train.readout_preprocess()) {
        (_, Preprocess::None) => None,
        // A readout on a training batch with that step's preprocessing: the step's shift.
        (AddBack::Empirical | AddBack::Test, pre) => shifts
            .cached(batch, pre)
            .unwrap_or_else(|| preprocess_shift(exec, target, batch, pre)),
        (AddBack::Oracle, pre) => {
            let th = match theory {
                Some(Ok(t)) => t,
                Some(Err(e)) => {
                    return Err(Error::Unsupported(format!(
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
