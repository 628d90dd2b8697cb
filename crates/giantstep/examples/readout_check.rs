//! Separates the two parts of the predicted test error on one configuration: the readout formula
//! applied to the simulation's own trained layer, and the full prediction (state evolution +
//! readout), next to the simulated error.
//! `cargo run --release -p giantstep --example readout_check -- [d] [p] [n] [steps]`.
use giantstep::theory::dynamics::{Model, Setup, State};
use giantstep::{Config, RunOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mut c = Config::default();
    c.network.d = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(256);
    c.network.p = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(512);
    c.train.n = args.get(3).map(|s| s.as_str()).unwrap_or("4d").parse()?;
    c.train.steps = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1);
    c.eval.n_test = 200_000;
    let cfg = c.resolve()?;
    let res = giantstep::run_with(
        &cfg,
        RunOptions {
            keep_weights: true,
            ..Default::default()
        },
    )?;
    let w = res.weights.as_ref().expect("kept");
    let expr = cfg.expr().clone();
    let label = |x: &[f64]| expr.eval(x);
    let model = Model::new(&Setup {
        label: &label,
        r: w.r,
        d: w.d,
        activation: cfg.network.activation,
        correlation: false,
        normalize: cfg.train.normalize,
        noise: 0.0,
        seed: cfg.seed,
    })?;
    let mut st = State::from_weights(&w.w, &w.a, &w.w_star, w.p, w.d, w.r)?;
    let on_trained = model.readout_error(&model.prepare(&mut st), cfg.readout_n() as f64, cfg.readout.lambda)?;
    println!(
        "simulated {:.4}   readout formula on the simulated layer {:.4}   full prediction {:?}",
        res.test_error,
        on_trained,
        res.theory.as_ref().and_then(|t| t.test_error)
    );
    Ok(())
}
