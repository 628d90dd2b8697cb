//! The state evolution and readout theory of docs/theory.md §6 against closed forms, a naive
//! Monte Carlo ridge, and simulation.

use giantstep::error::Cancel;
use giantstep::prediction::{predict_form_with, Form};
use giantstep::theory::dynamics::{ridge_error, Pair, PairKernel};
use giantstep::Config;

/// Gram matrices of three neurons with various norms and correlations (|c| up to 0.95).
fn grams() -> Vec<Vec<f64>> {
    vec![
        vec![1.0, 0.3, -0.2, 0.3, 0.8, 0.1, -0.2, 0.1, 1.5],
        vec![2.0, 1.9, 0.5, 1.9, 2.0, -0.4, 0.5, -0.4, 0.3],
        vec![0.5, -0.45, 0.0, -0.45, 0.45, 0.2, 0.0, 0.2, 3.0],
    ]
}

/// Saad–Solla's erf integrals (closed forms) against the Hermite series / 2-d rule: 1e-6.
#[test]
fn erf_pair_integrals_match_saad_solla_closed_forms() {
    let k = PairKernel::new("erf".parse().unwrap()).unwrap();
    for q in grams() {
        for which in [Pair::Value, Pair::Derivative] {
            let closed = k.matrix(which, &q, 3);
            let numeric = k.matrix_numeric(which, &q, 3);
            for (a, b) in closed.iter().zip(&numeric) {
                assert!((a - b).abs() < 1e-6, "{which:?} {q:?}: closed {a} vs numeric {b}");
            }
        }
    }
}

/// ReLU's arc-cosine kernel against the numeric path (the kink limits the series and the 2-d rule
/// to about 1e-3; σ' is a step, which a Gauss rule does not resolve, so the closed forms are what
/// the theory uses for ReLU).
#[test]
fn relu_pair_integrals_match_arc_cosine_kernels() {
    let k = PairKernel::new("relu".parse().unwrap()).unwrap();
    for q in grams() {
        for which in [Pair::Value] {
            let closed = k.matrix(which, &q, 3);
            let numeric = k.matrix_numeric(which, &q, 3);
            for (a, b) in closed.iter().zip(&numeric) {
                assert!((a - b).abs() < 2e-3, "{which:?} {q:?}: closed {a} vs numeric {b}");
            }
        }
    }
}

fn normal(state: &mut u64) -> f64 {
    // Box–Muller on a 64-bit LCG: enough for a Monte Carlo check.
    let mut u = || {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let (a, b) = (u(), u());
    (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
}

/// The deterministic equivalent against ridge regressions on Gaussian features (y = <θ, φ> +
/// noise): mean test error over 400 draws within 4% (its Monte Carlo error is below 1%; the
/// equivalent is exact only as n, p → ∞, here p = 20, n = 40 and 200).
#[test]
fn ridge_deterministic_equivalent_matches_monte_carlo() {
    let p = 20;
    let spectrum: Vec<f64> = (0..p).map(|i| 1.0 / (1.0 + i as f64)).collect();
    let theta: Vec<f64> = (0..p).map(|i| if i % 3 == 0 { 0.8 } else { -0.3 }).collect();
    let noise = 0.25;
    let k: Vec<f64> = (0..p * p)
        .map(|ij| if ij / p == ij % p { spectrum[ij / p] } else { 0.0 })
        .collect();
    let b: Vec<f64> = (0..p).map(|i| spectrum[i] * theta[i]).collect();
    let ey2 = noise + (0..p).map(|i| spectrum[i] * theta[i] * theta[i]).sum::<f64>();
    let mut rng = 7u64;
    for &(n, lam) in &[(40usize, 0.05f64), (200, 0.01)] {
        let predicted = ridge_error(&k, &b, ey2, p, n as f64, lam).unwrap();
        let mut total = 0.0;
        let trials = 400;
        for _ in 0..trials {
            let mut xtx = vec![0.0; p * p];
            let mut xty = vec![0.0; p];
            for _ in 0..n {
                let x: Vec<f64> = spectrum.iter().map(|s| s.sqrt() * normal(&mut rng)).collect();
                let y: f64 = x.iter().zip(&theta).map(|(a, t)| a * t).sum::<f64>() + noise.sqrt() * normal(&mut rng);
                for i in 0..p {
                    xty[i] += x[i] * y;
                    for j in 0..p {
                        xtx[i * p + j] += x[i] * x[j];
                    }
                }
            }
            for i in 0..p {
                xtx[i * p + i] += lam * n as f64;
            }
            let coef = solve_spd(&xtx, p, &xty);
            // Test error in closed form: noise + (coef − θ)ᵀ K (coef − θ).
            total += noise + (0..p).map(|i| spectrum[i] * (coef[i] - theta[i]).powi(2)).sum::<f64>();
        }
        let mc = total / trials as f64;
        assert!(
            (mc - predicted).abs() < 0.04 * mc,
            "n = {n}: Monte Carlo {mc} vs predicted {predicted}"
        );
    }
}

/// Seeds each case of [`check`] averages (`GIANTSTEP_TEST_SEEDS` overrides, for surveys).
fn seeds() -> u64 {
    std::env::var("GIANTSTEP_TEST_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// One configuration at d = 256 on seeds `0..seeds()` (the default stream): the simulated test
/// error per step and of random features, averaged over the seeds, against the average of each
/// seed's prediction (the theory starts from that seed's initial weights), in both forms (finite
/// p, then mean field): the worst gap of the averages and a line per form. One seed's simulated
/// error moves with its samples by up to about 0.025 (staircase2, T = 1), as much as the
/// tolerances, so one seed would pass or fail by its draws; the line also gives the gaps'
/// standard deviation over the seeds.
fn check(name: &str, edit: impl Fn(&mut Config)) -> [(f64, String); 2] {
    let forms = [
        Form::FiniteP,
        Form::MeanField {
            particles: Form::PARTICLES,
        },
    ];
    // Per form: the (simulated, predicted) pairs of each seed, per step then random features.
    let mut pairs: [Vec<Vec<(f64, f64)>>; 2] = [Vec::new(), Vec::new()];
    let mut steps = 0;
    let n_seeds = seeds();
    for seed in 0..n_seeds {
        let mut c = Config {
            seed,
            ..Config::default()
        };
        c.network.d = 256;
        c.network.p = 256;
        c.eval.n_test = 200_000;
        c.eval.every_step = true;
        c.eval.baseline = true;
        c.train.eta_max0 = Some(5.0);
        edit(&mut c);
        let cfg = c.resolve().unwrap();
        let sim = giantstep::run(&cfg).unwrap();
        steps = sim.steps.len();
        for (f, form) in forms.iter().enumerate() {
            let pred = predict_form_with(&cfg, 0, *form, &Cancel::default()).unwrap();
            let mut row: Vec<(f64, f64)> = sim
                .steps
                .iter()
                .zip(&pred.steps)
                .map(|(s, p)| (s.test_error.unwrap(), p.test_error))
                .collect();
            row.push((sim.rf_test_error.unwrap(), pred.rf_test_error));
            pairs[f].push(row);
        }
    }
    let k = n_seeds as f64;
    std::array::from_fn(|f| {
        let rows = &pairs[f];
        let mut lines = Vec::new();
        let mut worst: f64 = 0.0;
        for j in 0..=steps {
            let sim = rows.iter().map(|r| r[j].0).sum::<f64>() / k;
            let pred = rows.iter().map(|r| r[j].1).sum::<f64>() / k;
            let gap = sim - pred;
            let sd = (rows.iter().map(|r| (r[j].0 - r[j].1 - gap).powi(2)).sum::<f64>() / (k - 1.0).max(1.0)).sqrt();
            worst = worst.max(gap.abs());
            let what = if j < steps {
                format!("T = {}", j + 1)
            } else {
                "RF".to_string()
            };
            lines.push(format!("{what}: {sim:.4} vs {pred:.4} (gap sd {sd:.4})"));
        }
        let line = format!(
            "{name} ({}, {} seeds): {} (worst {worst:.4})",
            forms[f].name(),
            n_seeds,
            lines.join(", ")
        );
        println!("{line}");
        (worst, line)
    })
}

/// Runs every case and fails listing those whose worst |simulated − predicted| exceeds `tol[0]`
/// (finite p) or `tol[1]` (mean field), or a case's own tolerances in `own`.
fn assert_within(cases: &[Case], tol: [f64; 2], own: &[(&str, [f64; 2])]) {
    let results: Vec<[(f64, String); 2]> = cases.iter().map(|(name, edit)| check(name, edit)).collect();
    let bad: Vec<&String> = results
        .iter()
        .zip(cases)
        .flat_map(|(r, (name, _))| {
            let t = own.iter().find(|(n, _)| n == name).map_or(tol, |(_, t)| *t);
            r.iter().zip(t)
        })
        .filter(|((w, _), t)| w > t)
        .map(|((_, l), _)| l)
        .collect();
    assert!(bad.is_empty(), "|simulated − predicted| above {tol:?}: {bad:#?}");
}

/// A named edit of the base configuration.
type Case = (&'static str, Box<dyn Fn(&mut Config)>);

fn set(c: &mut Config, key: &str, value: &str) {
    let mut table = toml::Table::try_from(&*c).unwrap();
    giantstep::config::apply_set(&mut table, &format!("{key}={value}")).unwrap();
    *c = Config::from_table(table).unwrap();
}

/// Seven cases of docs/theory.md §6's table, CI-sized (d = p = 256, 8 seeds each, each seed's
/// theory from its own initial weights; about 3 s per seed and case). Tolerance 0.03 absolute
/// on the seed means of every step and of random features for the finite-p form, the band the
/// paper-scale figure meets for n ≥ d^1.5 (measured worst 0.009: pm's first step, whose gap has
/// a standard deviation of 0.019 over seeds, so 0.007 on the mean of 8); the test set has
/// 2·10^5 samples, so its own sampling error (up to 0.04 at 2·10^4 on the heavy-tailed staircase
/// targets) stays below 0.01. The mean-field form (1024 particles) is held to 0.04 (measured
/// worst 0.009). Spherical normalization on staircase2 misses more: 0.031 at step 1 (per-seed
/// standard deviation 0.022; mean field 0.035, standard deviation 0.035), a gap that the one
/// seed of stream version 1 checked before (0.025) passed under 0.03 by chance, and that grows to
/// 0.05 at d = 512; it is held to 0.05 and 0.08 (2.5 and 3.6 standard errors above its means).
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn predicted_errors_match_simulation_at_d256() {
    let cases: Vec<Case> = vec![
        (
            "he124 relu",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-he124\"");
                set(c, "train.n", "\"d^1.5\"");
                c.train.steps = 3;
            }),
        ),
        (
            "pm relu schedule",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-pm\"");
                set(c, "train.n", "\"d^1.75\"");
                set(c, "train.eta_schedule", "[1.0, 0.6]");
                c.train.steps = 3;
            }),
        ),
        (
            "he124 erf gaussian a",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-he124\"");
                set(c, "network.activation", "\"erf\"");
                set(c, "network.second_layer", "\"gaussian\"");
                set(c, "train.n", "\"d^1.5\"");
                c.train.steps = 2;
            }),
        ),
        (
            "staircase2 spherical",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"staircase2\"");
                set(c, "train.normalize", "\"spherical\"");
                set(c, "train.n", "\"d^1.5\"");
                c.train.steps = 3;
            }),
        ),
        (
            "pm linear from step 2, later cap 3",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-pm\"");
                set(c, "train.preprocess", "\"linear\"");
                set(c, "train.preprocess_from", "2");
                set(c, "train.eta_max0_later", "3.0");
                set(c, "train.n", "\"d^1.75\"");
                c.train.steps = 3;
            }),
        ),
        (
            "pm linear preprocessing",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-pm\"");
                set(c, "train.preprocess", "\"linear\"");
                set(c, "readout.add_back", "\"oracle\"");
                set(c, "train.n", "\"d^2\"");
                c.train.steps = 2;
            }),
        ),
        (
            "he124 plain init uniform a",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"stairway-he124\"");
                set(c, "network.symmetric", "false");
                set(c, "network.second_layer", "\"uniform\"");
                set(c, "train.n", "\"d^1.75\"");
                c.train.steps = 2;
            }),
        ),
    ];
    assert_within(&cases, [0.03, 0.04], &[("staircase2 spherical", [0.05, 0.08])]);
}

/// The two cases of docs/theory.md §6's table where the prediction misses by more than the 0.03
/// of the other cases (seed means over 8 seeds, finite p / mean field: tanh on staircase2 0.042 /
/// 0.054 at step 1, staircase3 with correlation loss 0.046 / 0.054 at step 1): known gaps of
/// the theory, held to 0.08 so that they cannot grow unnoticed. staircase3's gap has a standard
/// deviation of 0.038 over seeds (the heavy-tailed labels' test error; random features' 0.033),
/// 0.013 on the mean of 8: the bound is 2.6 of those above the measured mean.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn predicted_errors_known_gaps_stay_bounded_at_d256() {
    let cases: Vec<Case> = vec![
        (
            "staircase2 tanh",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"staircase2\"");
                set(c, "network.activation", "\"tanh\"");
                set(c, "train.n", "\"d^1.5\"");
                c.train.steps = 2;
            }),
        ),
        (
            "staircase3 correlation",
            Box::new(|c: &mut Config| {
                set(c, "target.preset", "\"staircase3\"");
                set(c, "train.loss", "\"correlation\"");
                set(c, "train.n", "\"d^1.5\"");
                set(c, "train.eta_max0", "2.0");
                c.train.steps = 2;
            }),
        ),
    ];
    assert_within(&cases, [0.08, 0.08], &[]);
}

/// The smoothed erf of the state evolution (closed forms) against a 200-node Gauss–Hermite rule
/// and the Gaussian integral of erf: `E erf(u + ρε) = erf(u / √(1 + 2ρ²))`, to 1e-6.
#[test]
fn erf_smoothing_matches_quadrature() {
    let sm = giantstep::theory::activation::Smoother::new("erf".parse().unwrap()).unwrap();
    let rule = giantstep::theory::quadrature::gauss_hermite(200).unwrap();
    let act: giantstep::activation::Activation = "erf".parse().unwrap();
    for &(u, rho) in &[(0.0, 1.0), (0.7, 0.5), (-1.3, 1.5), (2.0, 0.2), (0.3, 2.5)] {
        let m = sm.moments(u, rho);
        let mut want = [0.0; 4];
        for (e, w) in rule.nodes.iter().zip(&rule.weights) {
            let (f, df) = act.f_df(u + rho * e);
            want[0] += w * f;
            want[1] += w * df;
            want[2] += w * df * e;
            want[3] += w * df * df;
        }
        assert!((m[0] - libm::erf(u / (1.0 + 2.0 * rho * rho).sqrt())).abs() < 1e-12);
        for k in 0..4 {
            assert!(
                (m[k] - want[k]).abs() < 1e-6,
                "u = {u}, rho = {rho}, moment {k}: {} vs {}",
                m[k],
                want[k]
            );
        }
    }
}

/// One population step (n → ∞, correlation loss) of the state evolution by quadrature against the
/// closed forms of the erf integrals (Saad and Solla's `I2 = (2/π) asin(2c/√((1+2a)(1+2q)))` for
/// `σ = erf`, differentiated by Price's theorem), on two targets `erf(z1)` and `erf(z1) + erf(z2)`:
/// the teacher drift `E[g* σ'(λ_i) x]` and the orthogonal factor `1 + γ s_i E[g* σ''(λ_i)]`, to 1e-6.
#[test]
fn population_step_matches_erf_closed_forms_on_two_targets() {
    use giantstep::theory::dynamics::{Model, Setup, State};
    use std::f64::consts::PI;
    for r in [1usize, 2] {
        let label = move |x: &[f64]| x.iter().take(r).map(|v| libm::erf(*v)).sum::<f64>();
        let model = Model::new(&Setup {
            label: &label,
            r,
            d: 1000,
            activation: "erf".parse().unwrap(),
            correlation: true,
            normalize: Default::default(),
            noise: 0.0,
            seed: 0,
        })
        .unwrap();
        let p = 3;
        let m0: Vec<f64> = [0.3, -0.5, 0.8, 0.1, -0.2, 0.6][..p * r].to_vec();
        let rho = [1.0, 0.6, 1.4];
        let s = vec![1.0, -1.0, 0.5];
        let mut b = vec![0.0; p * p];
        for i in 0..p {
            b[i * p + i] = rho[i];
        }
        let mut st = State {
            p,
            r,
            h: p,
            s: s.clone(),
            m: m0.clone(),
            b: b.clone(),
            n_out: vec![0.0; p * p],
            d_out: 0.0,
        };
        let gamma = 0.7;
        model.step(model.prepare(&mut st), gamma, 1e300, 1).unwrap();
        for i in 0..p {
            let m = &m0[i * r..(i + 1) * r];
            let q = m.iter().map(|v| v * v).sum::<f64>() + rho[i] * rho[i];
            // E[erf'(x_j) erf'(λ)] and E[erf(x_j) erf''(λ)] = 2 ∂I2/∂q, with c = m_j, a = 1.
            let d11 = |c: f64| 4.0 / PI / (3.0 * (1.0 + 2.0 * q) - 4.0 * c * c).sqrt();
            let d02 = |c: f64| {
                let x = 2.0 * c / (3.0 * (1.0 + 2.0 * q)).sqrt();
                let dx = -2.0 * c / (3.0f64.sqrt() * (1.0 + 2.0 * q).powf(1.5));
                4.0 / PI * dx / (1.0 - x * x).sqrt()
            };
            let e2: f64 = (0..r).map(|j| d02(m[j])).sum();
            for k in 0..r {
                let drift = d11(m[k]) + m[k] * e2;
                let want = m[k] + gamma * s[i] * drift;
                let got = st.m[i * r + k];
                assert!((got - want).abs() < 1e-6, "r = {r}, neuron {i}, m{k}: {got} vs {want}");
            }
            let k_want = 1.0 + gamma * s[i] * e2;
            let k_got = st.b[i * p + i] / rho[i];
            assert!(
                (k_got - k_want).abs() < 1e-6,
                "r = {r}, neuron {i}: factor {k_got} vs {k_want}"
            );
        }
    }
}

/// `x` with `a x = b` for a symmetric positive definite `p × p` matrix (row-major), by a textbook
/// Cholesky factorization: the test's own reference, independent of the library's solver.
fn solve_spd(a: &[f64], p: usize, b: &[f64]) -> Vec<f64> {
    let mut l = vec![0.0; p * p];
    for i in 0..p {
        for j in 0..=i {
            let s = a[i * p + j] - (0..j).map(|k| l[i * p + k] * l[j * p + k]).sum::<f64>();
            l[i * p + j] = if i == j { s.sqrt() } else { s / l[j * p + j] };
        }
    }
    let mut y = vec![0.0; p];
    for i in 0..p {
        y[i] = (b[i] - (0..i).map(|k| l[i * p + k] * y[k]).sum::<f64>()) / l[i * p + i];
    }
    let mut x = vec![0.0; p];
    for i in (0..p).rev() {
        x[i] = (y[i] - (i + 1..p).map(|k| l[k * p + i] * x[k]).sum::<f64>()) / l[i * p + i];
    }
    x
}

/// The stairway of one pm configuration in both forms (`d`, `p`, `n = d^κ`, T = 2).
fn both_forms(d: usize, p: usize, kappa: f64) -> [Vec<f64>; 2] {
    let mut c = Config::default();
    c.network.d = d;
    c.network.p = p;
    c.train.steps = 2;
    c.train.eta_max0 = Some(8.0);
    set(&mut c, "target.preset", "\"stairway-pm\"");
    set(&mut c, "network.second_layer", "\"uniform\"");
    set(&mut c, "train.n", &format!("\"d^{kappa}\""));
    let cfg = c.resolve().unwrap();
    [Form::FiniteP, Form::MeanField { particles: 1024 }].map(|form| {
        let pred = predict_form_with(&cfg, 0, form, &Cancel::default()).unwrap();
        let mut v: Vec<f64> = pred.steps.iter().map(|s| s.test_error).collect();
        v.push(pred.rf_test_error);
        v
    })
}

/// Without gradient noise (`n = d³`: `d/n` = 6·10⁻⁵) the two forms differ only by the coupling
/// of the neurons' own directions, of order `γ/√p` in the weights but second order in the
/// errors: measured 3·10⁻⁴ at d = p = 512; held to 2·10⁻³ at d = p = 128. Random features are
/// the same formula on the same initial layer in both: 10⁻¹².
#[test]
fn mean_field_agrees_with_finite_p_without_gradient_noise() {
    let [fp, mf] = both_forms(128, 128, 3.0);
    for (t, (a, b)) in fp.iter().zip(&mf).enumerate() {
        let tol = if t == fp.len() - 1 { 1e-12 } else { 2e-3 };
        assert!((a - b).abs() < tol, "entry {t}: finite p {a} vs mean field {b}");
    }
}

/// With gradient noise the forms differ at moderate p and meet as p grows (d = 128,
/// n = d^1.75): measured gaps 0.014, 0.022, 0.011, 0.011, 0.004 at p = 64 … 1024; at p = 8d
/// held to 0.01.
#[test]
fn mean_field_meets_finite_p_at_large_width() {
    let [fp, mf] = both_forms(128, 1024, 1.75);
    for (t, (a, b)) in fp.iter().zip(&mf).enumerate() {
        assert!((a - b).abs() < 0.01, "entry {t}: finite p {a} vs mean field {b}");
    }
}
