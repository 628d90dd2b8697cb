//! One complete simulation: initialization, `T` giant steps with observables after each, the
//! ridge readout on the trained and on the initial first layer (random-features baseline), and the
//! test errors. The JSON form of [`RunResult`] is the schema of `giantstep run --json`.

use crate::config::{Config, Loss, Normalize, Preprocess, ReadoutBatch};
use crate::data::{Purpose, StreamKey};
use crate::engine::{self, Batch, ErrorSignal, Exec};
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
    /// Test error of the same readout on the initial first layer (random features).
    pub rf_test_error: f64,
    /// Train error of the random-features readout.
    pub rf_train_error: f64,
    /// `mean y²` on the test set: the error of predicting 0.
    pub test_label_second_moment: f64,
    /// Wall time of the run in seconds.
    pub elapsed_s: f64,
}

/// Runs the simulation of SPEC §3 for a configuration.
///
/// # Errors
/// Invalid configuration ([`Error::Config`], [`Error::Expr`]), non-finite weights
/// ([`Error::NonFinite`]), a singular ridge system.
pub fn run(config: &Config) -> Result<RunResult> {
    run_with(config, &mut |_| {})
}

/// [`run`], calling `progress` with a short message before each phase.
///
/// # Errors
/// As [`run`].
pub fn run_with(config: &Config, progress: &mut dyn FnMut(&str)) -> Result<RunResult> {
    let start = Instant::now();
    let cfg = config.resolve()?;
    let net_cfg = &cfg.network;
    let (d, p) = (net_cfg.d, net_cfg.p);
    let expr = Expr::parse(cfg.target.expr.as_deref().expect("resolved"))?;
    let r = cfg.target.r.expect("resolved");
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
    let eta = cfg.eta();
    let signal = match cfg.train.loss {
        Loss::Residual => ErrorSignal::Residual,
        Loss::Correlation => ErrorSignal::Correlation,
    };
    let mut steps = Vec::with_capacity(cfg.train.steps);
    let mut last_batch = None;
    for t in 1..=cfg.train.steps {
        progress(&format!("step {t}/{}", cfg.train.steps));
        let batch_index = ((t - 1) / cfg.train.reuse) as u64;
        let batch = Batch {
            key: StreamKey::new(cfg.seed, Purpose::Train, batch_index),
            n,
        };
        let shift = preprocess_shift(&exec, &target, &batch, cfg.train.preprocess);
        let grad = engine::gradient(&exec, &net, &target, &batch, shift.as_ref(), signal);
        let geometry = gradient_geometry(&grad.g, &net.w, p, d, &target.w_star, r)?;
        apply_step(&mut net.w, &grad.g, eta, p, d, cfg.train.normalize);
        if net.w.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite { step: t, eta });
        }
        steps.push(StepRecord {
            t,
            n,
            eta,
            batch_mse: grad.batch_mse,
            overlaps: overlaps(&net.w, p, d, &target.w_star, r)?,
            gradient: geometry,
        });
        last_batch = Some(batch);
    }

    progress("readout");
    let readout_batch = match cfg.readout.batch {
        ReadoutBatch::Last => last_batch.expect("at least one step"),
        ReadoutBatch::Fresh => Batch {
            key: StreamKey::new(cfg.seed, Purpose::Readout, 0),
            n: cfg.readout_n(),
        },
    };
    let shift = preprocess_shift(&exec, &target, &readout_batch, cfg.train.preprocess);
    let act = net_cfg.activation;
    let readouts = engine::fit_readouts(
        &exec,
        &[&net.w, &w0],
        d,
        p,
        act,
        &target,
        &readout_batch,
        shift.as_ref(),
        cfg.readout.lambda,
    )?;
    progress("test");
    let test_batch = Batch {
        key: StreamKey::new(cfg.seed, Purpose::Test, 0),
        n: cfg.eval.n_test,
    };
    let (errors, y2) = engine::test_errors(
        &exec,
        &[(&net.w, &readouts[0]), (&w0, &readouts[1])],
        d,
        p,
        act,
        &target,
        &test_batch,
    );
    Ok(RunResult {
        version: env!("CARGO_PKG_VERSION").to_string(),
        r,
        random_level: (2.0 / (std::f64::consts::PI * d as f64)).sqrt(),
        initial,
        steps,
        test_error: errors[0],
        train_error: readouts[0].train_error,
        rf_test_error: errors[1],
        rf_train_error: readouts[1].train_error,
        test_label_second_moment: y2,
        elapsed_s: start.elapsed().as_secs_f64(),
        config: cfg,
    })
}

fn preprocess_shift(exec: &Exec, target: &Target, batch: &Batch, pre: Preprocess) -> Option<engine::LabelShift> {
    match pre {
        Preprocess::None => None,
        Preprocess::Mean => Some(engine::label_shift(exec, target, batch, false)),
        Preprocess::Linear => Some(engine::label_shift(exec, target, batch, true)),
    }
}

/// `W ← W + η G`, with the optional row normalization of SPEC §3.
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
