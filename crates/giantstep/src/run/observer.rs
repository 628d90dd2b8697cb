//! What a run reports while it works.

use super::StepRecord;

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
    /// The theory attached to the run is finished (`eval.theory`, or the oracle add-back): it is
    /// computed beside the steps, and this phase is the wait for what remains once they are done.
    Theory,
    /// The ridge readouts are fitted.
    Readout,
    /// The test errors are measured.
    Test,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Phase::Step { t, of } => write!(f, "step {t}/{of}"),
            Phase::Theory => f.write_str("theory"),
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

/// A closure receives each phase as a short message (`"step 1/3"`, `"theory"`, `"readout"`, `"test"`).
impl<F: FnMut(&str)> Observer for F {
    fn phase(&mut self, phase: Phase) {
        self(&phase.to_string())
    }
}
