//! One step at n = d^κ against the theory, scanning d (docs/theory.md §2, "One step at n = d^κ").
//!
//! `cargo run --release -p giantstep --example kappa_scan [seeds]`
//!
//! For each (target, activation, κ) and d, the mean over seeds of the measured mean |cos| per
//! teacher direction next to the closed form at the same (n, d, γ), and the closed form at
//! d = 10^6 (the d → ∞ trend). p = 128, η = p·sqrt(n/d), raw labels.

use giantstep::config::apply_set;
use giantstep::theory::Query;
use giantstep::Config;

fn main() -> Result<(), giantstep::Error> {
    let seeds: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(6);
    let cases: &[(&str, &str, f64, &[usize])] = &[
        ("he3(z1)", "relu", 3.0, &[24, 32, 48]),
        ("he3(z1)", "tanh", 3.0, &[24, 32, 48]),
        ("he3(z1)", "he3", 3.0, &[24, 32, 48]),
        ("z1*z2*z3", "tanh", 3.0, &[24, 32, 40]),
        ("z1*z2*z3", "relu", 3.0, &[24, 32, 40]),
        ("he2(z1) + he3(z2)", "relu", 3.0, &[24, 32, 40]),
        ("he2(z1) + he3(z2)", "tanh", 3.0, &[24, 32, 40]),
        ("he2(z1)", "tanh", 2.0, &[64, 128, 256]),
        ("he2(z1)", "relu", 2.0, &[64, 128, 256]),
    ];
    println!("| target | σ | κ | d | measured mean abs cos (seed mean) | closed form at (n, d) | d = 10⁶ | d → ∞ |");
    println!("|---|---|---|---|---|---|---|---|");
    for &(target, act, kappa, ds) in cases {
        for &d in ds {
            let mut sum: Vec<f64> = vec![];
            let mut pred = vec![];
            let mut dominant = None;
            for seed in 0..seeds {
                let mut t = toml::Table::new();
                for s in [
                    format!("network.d={d}"),
                    "network.p=128".into(),
                    format!("train.n=d^{kappa}"),
                    format!("network.activation={act}"),
                    format!("seed={seed}"),
                    "eval.n_test=500".into(),
                    "eval.baseline=false".into(),
                ] {
                    apply_set(&mut t, &s)?;
                }
                let mut cfg = Config::from_table(t)?;
                cfg.target.expr = Some(target.into());
                let r = giantstep::run(&cfg.resolve()?)?;
                let m = &r.steps[0].overlaps.mean_abs_cos;
                if sum.is_empty() {
                    sum = vec![0.0; m.len()];
                }
                sum.iter_mut().zip(m).for_each(|(a, b)| *a += b / seeds as f64);
                if let Some(th) = &r.theory {
                    pred = th.one_step_at_kappa.clone();
                    dominant = th.dominant_degree;
                }
            }
            let far = Query {
                target: target.into(),
                activation: act.into(),
                kappa,
                d: 1_000_000,
                steps: 1,
                degree: 4,
                ..Default::default()
            }
            .analyze()?;
            let fmt = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join(", ");
            println!(
                "| `{target}` | {act} | {kappa} | {d} | ({}) | ({}) | ({}) | {} |",
                fmt(&sum),
                fmt(&pred),
                fmt(&far.one_step_at_kappa.mean_abs_cos),
                match dominant {
                    Some(k) => format!("degree {k} learned, dim {}", far.one_step_at_kappa.subspace.dim),
                    None => "nothing".into(),
                }
            );
        }
    }
    Ok(())
}
