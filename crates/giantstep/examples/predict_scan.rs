//! Prints the predicted test errors of a stairway preset at every batch size, next to nothing:
//! `cargo run --release -p giantstep --example predict_scan -- stairway-he124 512 512 5.0 1.0,0.6`.
use giantstep::prediction::predict;
use giantstep::Config;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let preset = args.get(1).map(String::as_str).unwrap_or("stairway-he124");
    let d: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let p: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let cap: f64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let sched: Vec<f64> = args
        .get(5)
        .filter(|s| !s.is_empty() && *s != "-")
        .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
        .unwrap_or_default();
    let kappas: Vec<f64> = args
        .get(6)
        .map(|s| s.split(',').map(|v| v.parse().unwrap()).collect())
        .unwrap_or_else(|| (0..17).map(|i| 0.25 + 0.125 * i as f64).collect());
    for k in kappas {
        let t0 = std::time::Instant::now();
        let mut c = Config::default();
        c.target.preset = Some(preset.into());
        c.target.expr = None;
        c.network.d = d;
        c.network.p = p;
        c.train.eta_max0 = Some(cap);
        if !sched.is_empty() {
            c.train.eta_schedule = Some(sched.clone());
        }
        c.train.n = format!("d^{k}").parse()?;
        c.train.steps = 6;
        c.seed = std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
        let pr = predict(&c.resolve()?, 6)?;
        print!("{k:.3} RF {:.4}", pr.rf_test_error);
        for s in &pr.steps {
            print!(" {:.4}", s.test_error);
        }
        println!("  ({:.2} s)", t0.elapsed().as_secs_f64());
    }
    Ok(())
}
