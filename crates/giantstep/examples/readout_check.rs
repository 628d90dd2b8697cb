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
    if let Ok(a) = std::env::var("ACT") {
        c.network.activation = a.parse()?;
    }
    if let Ok(t) = std::env::var("TARGET") {
        c.target.preset = Some(t);
        c.target.expr = None;
    }
    c.seed = std::env::var("SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
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
    // The theory's own state after the same steps from the same start.
    let mut th = State::from_weights(&w.w0, &w.a, &w.w_star, w.p, w.d, w.r)?;
    for t in 1..=cfg.train.steps {
        model.step(
            model.prepare(&mut th),
            cfg.eta_at(t) / w.p as f64,
            cfg.train_n() as f64,
            t,
        )?;
    }
    let stats = |name: &str, s: &State| {
        let (p, r) = (s.p, s.r);
        let q = s.q_perp();
        for sign in [1.0, -1.0] {
            let idx: Vec<usize> = (0..p).filter(|&i| s.s[i] * sign > 0.0).collect();
            let k = idx.len() as f64;
            let mut line = format!("{name} s = {sign:+}:");
            for c in 0..r {
                let mean = idx.iter().map(|&i| s.m[i * r + c]).sum::<f64>() / k;
                let sd = (idx.iter().map(|&i| (s.m[i * r + c] - mean).powi(2)).sum::<f64>() / k).sqrt();
                line += &format!("  m{} {mean:+.4} ± {sd:.4}", c + 1);
            }
            let diag = idx.iter().map(|&i| q[i * p + i]).sum::<f64>() / k;
            let mut off = Vec::new();
            for &i in &idx {
                for &j in &idx {
                    if i != j {
                        off.push(q[i * p + j]);
                    }
                }
            }
            let om = off.iter().sum::<f64>() / off.len() as f64;
            let osd = (off.iter().map(|v| (v - om).powi(2)).sum::<f64>() / off.len() as f64).sqrt();
            line += &format!("  Q⊥ diag {diag:.4} off {om:+.4} ± {osd:.4}");
            println!("{line}");
        }
    };
    stats("simulated", &st);
    stats("theory   ", &th);
    let mut mixed = th.clone();
    mixed.m = st.m.clone();
    let mixed_err = model.readout_error(&model.prepare(&mut mixed), cfg.readout_n() as f64, cfg.readout.lambda)?;
    println!("readout on (simulated M, theory Q⊥): {mixed_err:.4}");
    println!(
        "simulated {:.4}   readout formula on the simulated layer {:.4}   full prediction {:?}",
        res.test_error,
        on_trained,
        res.theory.as_ref().and_then(|t| t.test_error)
    );
    Ok(())
}
