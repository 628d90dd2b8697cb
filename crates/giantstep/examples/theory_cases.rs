//! The eight cases of docs/theory.md §6 at a given d (p = d), seeds 0..S: simulated and predicted
//! test error per step and random features (finite-p form, then mean field), and the largest
//! |gap| of the seed means for each form.
//! `cargo run --release -p giantstep --example theory_cases -- 512 2`.
use giantstep::error::Cancel;
use giantstep::prediction::{predict_form_with, Form};
use giantstep::Config;

/// A case: its name, the keys it sets, its number of steps.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], usize);

fn set(c: &mut Config, key: &str, value: &str) {
    let mut table = toml::Table::try_from(&*c).unwrap();
    giantstep::config::apply_set(&mut table, &format!("{key}={value}")).unwrap();
    *c = Config::from_table(table).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let d: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(512);
    let seeds: u64 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(2);
    let cases: &[Case] = &[
        (
            "he124, ReLU, n = d^1.5",
            &[("target.preset", "\"stairway-he124\""), ("train.n", "\"d^1.5\"")],
            3,
        ),
        (
            "pm, ReLU, schedule [1, 0.6], n = d^1.75",
            &[
                ("target.preset", "\"stairway-pm\""),
                ("train.n", "\"d^1.75\""),
                ("train.eta_schedule", "[1.0, 0.6]"),
            ],
            3,
        ),
        (
            "he124, erf, gaussian a, n = d^1.5",
            &[
                ("target.preset", "\"stairway-he124\""),
                ("network.activation", "\"erf\""),
                ("network.second_layer", "\"gaussian\""),
                ("train.n", "\"d^1.5\""),
            ],
            2,
        ),
        (
            "staircase2, spherical, n = d^1.5",
            &[
                ("target.preset", "\"staircase2\""),
                ("train.normalize", "\"spherical\""),
                ("train.n", "\"d^1.5\""),
            ],
            3,
        ),
        (
            "pm, linear preprocessing, oracle, n = d^2",
            &[
                ("target.preset", "\"stairway-pm\""),
                ("train.preprocess", "\"linear\""),
                ("readout.add_back", "\"oracle\""),
                ("train.n", "\"d^2\""),
            ],
            2,
        ),
        (
            "he124, plain init, uniform a, n = d^1.75",
            &[
                ("target.preset", "\"stairway-he124\""),
                ("network.symmetric", "false"),
                ("network.second_layer", "\"uniform\""),
                ("train.n", "\"d^1.75\""),
            ],
            2,
        ),
        (
            "staircase2, tanh, n = d^1.5",
            &[
                ("target.preset", "\"staircase2\""),
                ("network.activation", "\"tanh\""),
                ("train.n", "\"d^1.5\""),
            ],
            2,
        ),
        (
            "staircase3, correlation, cap 2, n = d^1.5",
            &[
                ("target.preset", "\"staircase3\""),
                ("train.loss", "\"correlation\""),
                ("train.n", "\"d^1.5\""),
                ("train.eta_max0", "2.0"),
            ],
            2,
        ),
    ];
    println!("d = p = {d}, seeds 0..{seeds}, n_test = 2e5: seed means, simulated / finite p / mean field");
    let forms = [
        Form::FiniteP,
        Form::MeanField {
            particles: Form::PARTICLES,
        },
    ];
    for (name, sets, steps) in cases {
        let mut sim = vec![0.0; steps + 1];
        let mut pred = [vec![0.0; steps + 1], vec![0.0; steps + 1]];
        for seed in 0..seeds {
            let mut c = Config::default();
            c.network.d = d;
            c.network.p = d;
            c.eval.n_test = 200_000;
            c.eval.every_step = true;
            c.eval.theory = false;
            c.train.eta_max0 = Some(5.0);
            c.train.steps = *steps;
            c.seed = seed;
            for (k, v) in sets.iter() {
                set(&mut c, k, v);
            }
            let cfg = c.resolve()?;
            let r = giantstep::run(&cfg)?;
            for t in 0..*steps {
                sim[t] += r.steps[t].test_error.unwrap_or(f64::NAN) / seeds as f64;
            }
            sim[*steps] += r.rf_test_error.unwrap_or(f64::NAN) / seeds as f64;
            for (form, pred) in forms.iter().zip(pred.iter_mut()) {
                let p = predict_form_with(&cfg, 0, *form, &Cancel::default())?;
                for t in 0..*steps {
                    pred[t] += p.steps[t].test_error / seeds as f64;
                }
                pred[*steps] += p.rf_test_error / seeds as f64;
            }
        }
        let worst = |pred: &[f64]| sim.iter().zip(pred).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        let cells: Vec<String> = (0..=*steps)
            .map(|t| format!("{:.3}/{:.3}/{:.3}", sim[t], pred[0][t], pred[1][t]))
            .collect();
        println!(
            "| {name} | {} | {:.3} | {:.3} |",
            cells.join(" "),
            worst(&pred[0]),
            worst(&pred[1])
        );
    }
    Ok(())
}
