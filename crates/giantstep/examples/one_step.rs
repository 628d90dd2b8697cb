//! One giant step from Rust: configure, run, read what was learned.
//!
//! `cargo run --release -p giantstep --example one_step`

use giantstep::config::{apply_set, Config};

fn main() -> Result<(), giantstep::Error> {
    // The same keys as `giantstep run --set KEY=VALUE` (docs/model.md).
    let mut table = toml::Table::new();
    for set in [
        "target.preset=staircase2",
        "network.d=256",
        "network.p=256",
        "train.n=4d",
        "train.steps=2",
        "train.eta=768",
        "eval.every_step=true",
    ] {
        apply_set(&mut table, set)?;
    }
    let config = Config::from_table(table)?;
    let result = giantstep::run(&config.resolve()?)?;
    println!("random level sqrt(2/(pi d)) = {:.3}", result.random_level);
    for step in &result.steps {
        println!(
            "step {}: eta = {}, mean |cos| with w*1, w*2 = {:.3?}, test error {:.4}",
            step.t,
            step.eta,
            step.overlaps.mean_abs_cos,
            step.test_error.unwrap_or(f64::NAN)
        );
    }
    println!(
        "test error {:.4} (random features {:.4?}, predicting 0 {:.4})",
        result.test_error, result.rf_test_error, result.test_label_second_moment
    );
    if let Some(th) = &result.theory {
        println!(
            "theory: predicted mean |cos| per step {:.3?}",
            th.predicted_mean_abs_cos
        );
    }
    Ok(())
}
