//! What a run costs before it starts: floating-point operations per phase, counted as the
//! streaming kernels perform them (two GEMMs per sample and step, the features and the
//! triangular Gram matrix per readout layer, one GEMM per tested layer).

use crate::config::{ReadoutBatch, ValidConfig};

/// Floating-point operations of one run (or of one group of runs sharing their steps).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flops {
    /// The giant steps: `4·n·d·p` per step (forward pass and gradient).
    pub step: f64,
    /// The readouts: `2·n·d·p + n·p²` per fitted layer (features and the lower triangle of the
    /// Gram matrix).
    pub readout: f64,
    /// The test errors: `2·n_test·d·p` per tested layer (the random-features model once per
    /// readout batch).
    pub test: f64,
}

impl Flops {
    /// Sum of the phases.
    pub fn total(&self) -> f64 {
        self.step + self.readout + self.test
    }
}

impl std::ops::AddAssign for Flops {
    fn add_assign(&mut self, o: Flops) {
        self.step += o.step;
        self.readout += o.readout;
        self.test += o.test;
    }
}

/// The operations of training a resolved configuration for `train.steps` steps and evaluating
/// it after `evaluated` of them (1 for a plain run, `T` with `eval.every_step`).
///
/// With a fresh readout batch the random-features readout is fitted once; with the last training
/// batch it is fitted once per evaluated step.
pub fn run_flops(cfg: &ValidConfig, evaluated: usize) -> Flops {
    let (d, p) = (cfg.network.d as f64, cfg.network.p as f64);
    let n = cfg.train_n() as f64;
    let k = evaluated.max(1) as f64;
    let n_ro = cfg.readout_n() as f64;
    // Random-features readouts: one per readout batch (one fresh batch, or each step's batch).
    let rf = match (cfg.eval.baseline, cfg.readout.batch) {
        (false, _) => 0.0,
        (true, ReadoutBatch::Fresh) => 1.0,
        (true, ReadoutBatch::Last) => k,
    };
    let readout_layers = k + rf;
    Flops {
        step: 4.0 * n * d * p * cfg.train.steps as f64,
        readout: readout_layers * (2.0 * n_ro * d * p + n_ro * p * p),
        test: readout_layers * 2.0 * cfg.eval.n_test as f64 * d * p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn one_step_run_counts_the_kernels() {
        let mut c = Config::default();
        c.network.d = 10;
        c.network.p = 4;
        c.eval.n_test = 100;
        let c = c.resolve().unwrap();
        let f = run_flops(&c, 1);
        // n = 4d = 40: one step 4·40·10·4; readouts of W and W0; tests of both.
        assert_eq!(f.step, 6400.0);
        assert_eq!(f.readout, 2.0 * (2.0 * 40.0 * 40.0 + 40.0 * 16.0));
        assert_eq!(f.test, 2.0 * 2.0 * 100.0 * 40.0);
        assert_eq!(f.total(), f.step + f.readout + f.test);
    }
}
