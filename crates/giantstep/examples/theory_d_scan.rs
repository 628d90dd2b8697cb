//! The predicted test error against simulation at growing d (docs/theory.md §6): for each d,
//! seeds 0..S, the simulated and predicted test error after T = 1..3 steps and random features on
//! the same seeds, and the mean |gap|.
//! `cargo run --release -p giantstep --example theory_d_scan -- stairway-he124 1.5 3`.
use giantstep::prediction::predict;
use giantstep::Config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map(String::as_str).unwrap_or("stairway-he124");
    let kappa: f64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(1.5);
    let seeds: u64 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
    println!("{preset}, p = d, n = d^{kappa}, eta capped at 5p, T = 1..3, seeds 0..{seeds}, n_test = 2e5");
    println!(
        "{:>5} {:>9} {:>9} {:>9} {:>9}   mean |simulated - predicted| per T and RF",
        "d", "T=1", "T=2", "T=3", "RF"
    );
    for d in [64usize, 128, 256, 512] {
        let mut gaps = [0.0f64; 4];
        for seed in 0..seeds {
            let mut c = Config::default();
            c.target.preset = Some(preset.into());
            c.target.expr = None;
            c.network.d = d;
            c.network.p = d;
            c.seed = seed;
            c.train.eta_max0 = Some(5.0);
            c.train.n = format!("d^{kappa}").parse()?;
            c.train.steps = 3;
            c.eval.every_step = true;
            c.eval.n_test = 200_000;
            c.eval.theory = false;
            let cfg = c.resolve()?;
            let sim = giantstep::run(&cfg)?;
            let pred = predict(&cfg, 3)?;
            for t in 0..3 {
                gaps[t] +=
                    (sim.steps[t].test_error.unwrap_or(f64::NAN) - pred.steps[t].test_error).abs() / seeds as f64;
            }
            gaps[3] += (sim.rf_test_error.unwrap_or(f64::NAN) - pred.rf_test_error).abs() / seeds as f64;
        }
        println!(
            "{d:>5} {:>9.4} {:>9.4} {:>9.4} {:>9.4}",
            gaps[0], gaps[1], gaps[2], gaps[3]
        );
    }
    Ok(())
}
