//! # giantstep
//!
//! Simulation and theory of feature learning in two-layer networks trained by a few giant
//! gradient steps, after Dandi, Krzakala, Loureiro, Pesce, Stephan, *How Two-Layer Neural
//! Networks Learn, One (Giant) Step at a Time* (arXiv 2305.18270). The model and its notation
//! are in [`docs::model`], the theory in [`docs::theory`], the multi-step stairway in
//! [`docs::stairway`] (the files `docs/*.md` of the repository; "§" numbers refer to them).
//!
//! - [`Config`]: every knob of a run, with defaults, TOML and `--set` overrides.
//! - [`run()`]: one simulation, returning a [`RunResult`] (the schema of `giantstep run --json`).
//! - [`expr::Expr`]: the target language over `z1..zr`; [`target::Target`] the teacher.
//! - [`activation::Activation`]: σ, σ', σ''.
//! - [`ValidConfig`]: a configuration after [`Config::resolve`] checked every value.
//! - [`RunOptions`]: an [`Observer`], your own initial weights or teacher, a target function,
//!   a cancel flag, the weights returned, a [`BaselineCache`] shared with other runs.
//! - [`theory::analyze`]: the theory of a target (docs/theory.md); [`sweep`]: plans of many runs.
//!
//! ```
//! use giantstep::{run, Config};
//! let mut cfg = Config::default();
//! cfg.network.d = 32;
//! cfg.network.p = 16;
//! cfg.eval.n_test = 500;
//! let result = run(&cfg.resolve()?)?;
//! // One step at n = 4d learns e1 of z1 + z1*z2 far above the random level.
//! assert!(result.steps[0].overlaps.mean_abs_cos[0] > 3.0 * result.random_level);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod activation;
pub mod docs {
    //! The repository's documents, rendered here.

    /// The model, its notation, the training protocol and the observables.
    pub mod model {
        #![doc = include_str!("../../../docs/model.md")]
    }
    /// The theory: Hermite expansions, learnable subspaces, closed forms, error floors.
    pub mod theory {
        #![doc = include_str!("../../../docs/theory.md")]
    }
    /// The stairway to accuracy: schedules, stability of later steps, per-step evaluation.
    pub mod stairway {
        #![doc = include_str!("../../../docs/stairway.md")]
    }
}
pub mod bench;
pub mod config;
pub mod cost;
// The streaming kernels and their building blocks are internal; the feature `internals` makes
// them public (hidden from the docs, not a stable API) for the criterion benches of
// `cargo bench -p giantstep --features internals`.
macro_rules! internal {
    ($($name:ident),*) => {$(
        #[cfg(feature = "internals")]
        #[doc(hidden)]
        pub mod $name;
        #[cfg(not(feature = "internals"))]
        pub(crate) mod $name;
    )*};
}
internal!(data, engine, linalg, network);
pub mod error;
pub mod expr;
mod given;
pub mod model;
mod names;
mod observe;
pub mod prediction;
mod run;
pub mod special;
pub mod sweep;
pub mod target;
pub mod theory;

pub use config::{Config, ValidConfig};
pub use error::{Error, Result};
pub use observe::{GradientGeometry, Overlaps};
pub use run::{
    preflight, run, run_prefixes, run_with, BaselineCache, Observer, Phase, Resume, RunOptions, RunResult, RunTheory,
    StepRecord, StepState, Weights,
};
pub use target::{CustomTarget, LabelFn};
