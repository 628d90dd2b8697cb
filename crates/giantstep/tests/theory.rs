//! The theory engine (issue 3): a catalog of targets × activations with their expected learnable
//! subspaces, exact values, rotation invariance, and theory against simulation.

use giantstep::config::{apply_set, Config, Preprocess};
use giantstep::expr::Expr;
use giantstep::theory::subspace::principal_angles;
use giantstep::theory::{analyze, TheoryOptions, TheoryReport};
use proptest::prelude::*;

fn theory(expr: &str, act: &str, f: impl FnOnce(&mut TheoryOptions)) -> TheoryReport {
    let text = giantstep::target::preset_expr(expr).unwrap_or(expr);
    let e = Expr::parse(text).unwrap();
    let mut o = TheoryOptions {
        activation: act.parse().unwrap(),
        gamma: 3.0,
        ..Default::default()
    };
    f(&mut o);
    analyze(&e, e.max_var(), &o).unwrap()
}

fn dims(s: &[giantstep::theory::SubspaceStep]) -> Vec<usize> {
    s.iter().map(|u| u.dim).collect()
}

struct Case {
    expr: &'static str,
    act: &'static str,
    generic: &'static [usize],
    aware: &'static [usize],
    leap_raw: Option<u32>,
    leap_linear: Option<u32>,
    blocked: &'static [&'static str],
}

/// Generic (l = 1) and activation-aware (n = 4d, eta = 3p) subspace dimensions for three steps,
/// leap indices without and with linear preprocessing, and the blocked directions.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn catalog() {
    let cases = [
        Case {
            expr: "z1",
            act: "relu",
            generic: &[1, 1, 1],
            aware: &[1, 1, 1],
            leap_raw: Some(1),
            leap_linear: Some(0),
            blocked: &[],
        },
        Case {
            expr: "z1 + z1*z2",
            act: "relu",
            generic: &[1, 2, 2],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "z1 + z1*z2",
            act: "tanh",
            generic: &[1, 2, 2],
            aware: &[1, 1, 1],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &["e2 is blocked at step 2: needs c2, tanh has c2 = 0"],
        },
        Case {
            expr: "z1*z2",
            act: "relu",
            generic: &[0, 0, 0],
            aware: &[0, 0, 0],
            leap_raw: Some(2),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "z1 + z1*z2*z3",
            act: "relu",
            generic: &[1, 1, 1],
            aware: &[1, 1, 1],
            leap_raw: Some(2),
            leap_linear: Some(3),
            blocked: &[],
        },
        Case {
            expr: "z1 + z1*z2 + z1*z2*z3",
            act: "relu",
            generic: &[1, 2, 3],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &["e3 is blocked at step 3: needs c3, relu has c3 = 0"],
        },
        Case {
            expr: "z1 + z1*z2 + z1*z2*z3",
            act: "relu:0.5",
            generic: &[1, 2, 3],
            aware: &[1, 2, 3],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "he2(z1)",
            act: "relu",
            generic: &[0, 0, 0],
            aware: &[0, 0, 0],
            leap_raw: Some(2),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "he3(z1)",
            act: "relu",
            generic: &[0, 0, 0],
            aware: &[0, 0, 0],
            leap_raw: Some(3),
            leap_linear: Some(3),
            blocked: &[],
        },
        // Even target, odd activation: the population gradient vanishes identically.
        Case {
            expr: "1 + he2(z1) + z1*z2",
            act: "tanh",
            generic: &[0, 0, 0],
            aware: &[0, 0, 0],
            leap_raw: Some(2),
            leap_linear: Some(2),
            blocked: &[],
        },
        // Symmetric in z1 <-> z2: the orthogonal direction enters only through |beta| = 2.
        Case {
            expr: "stairway-he124",
            act: "relu",
            generic: &[1, 1, 1],
            aware: &[1, 1, 1],
            leap_raw: Some(2),
            leap_linear: Some(2),
            blocked: &[],
        },
        // z1^2 - z2^2 = 2 s t in the rotated basis: step 2 splits the neurons onto two lines.
        Case {
            expr: "stairway-pm",
            act: "relu",
            generic: &[1, 2, 2],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        // The orthogonal drift exists (c2 |m| m1/sqrt(17)) but is small: the overlaps stay near slope 1/4.
        Case {
            expr: "stuck-spike",
            act: "relu",
            generic: &[1, 2, 2],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        // A rotated staircase.
        Case {
            expr: "(z1+z2)/sqrt(2) + (z1+z2)*(z1-z2)/2",
            act: "relu",
            generic: &[1, 2, 2],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "tanh(z1) + z1*z2",
            act: "relu",
            generic: &[1, 2, 2],
            aware: &[1, 2, 2],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &[],
        },
        Case {
            expr: "tanh(z1) + z1*z2",
            act: "tanh",
            generic: &[1, 2, 2],
            aware: &[1, 1, 1],
            leap_raw: Some(1),
            leap_linear: Some(2),
            blocked: &["e2 is blocked at step 2: needs c2, tanh has c2 = 0"],
        },
    ];
    assert!(cases.len() >= 12);
    for c in &cases {
        let t = theory(c.expr, c.act, |_| {});
        let msgs: Vec<&str> = t.blocked.iter().map(|b| b.message.as_str()).collect();
        assert_eq!(dims(&t.generic_subspaces), c.generic, "{} {}: generic", c.expr, c.act);
        assert_eq!(
            dims(&t.activation_subspaces),
            c.aware,
            "{} {}: activation-aware {:?}",
            c.expr,
            c.act,
            t.predicted_abs_cos
        );
        assert_eq!(t.leap_index_raw, c.leap_raw, "{} leap", c.expr);
        assert_eq!(
            t.leap_index_linear, c.leap_linear,
            "{} leap after linear preprocessing",
            c.expr
        );
        assert_eq!(msgs, c.blocked, "{} {}", c.expr, c.act);
        assert_eq!(t.staircase, c.leap_raw == Some(1));
    }
    // At n = d^2 the leap-2 targets are learned in one step.
    let t = theory("z1*z2", "relu", |o| o.kappa = 2.0);
    assert_eq!(dims(&t.generic_subspaces), vec![2, 2, 2]);
    let t = theory("z1 + z1*z2*z3", "relu", |o| o.kappa = 2.0);
    assert_eq!(dims(&t.generic_subspaces), vec![1, 3, 3]);
    // The rotated staircase learns the rotated direction first.
    let t = theory("(z1+z2)/sqrt(2) + (z1+z2)*(z1-z2)/2", "relu", |_| {});
    let u = &t.generic_subspaces[0].basis[0];
    assert!(
        (u[0].abs() - 0.5f64.sqrt()).abs() < 1e-9 && (u[0] - u[1]).abs() < 1e-9,
        "{u:?}"
    );
}

#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn exact_values() {
    let t = theory("stairway-he124", "relu", |_| {});
    assert!(
        (t.second_moment - 0.770_833_333_333).abs() < 1e-10,
        "{}",
        t.second_moment
    );
    assert!((t.linear_kernel_error - 0.270_833_333_333).abs() < 1e-10);
    let t = theory("stairway-pm", "relu", |_| {});
    assert!((t.second_moment - 1.5).abs() < 1e-10 && (t.linear_kernel_error - 1.0).abs() < 1e-10);
    // One-step closed form: 1.5/sqrt(5.5) at gamma = 3, alpha = 4 for z1 + z1 z2.
    let t = theory("staircase2", "relu", |_| {});
    assert!((t.one_step_cosine.mean_abs - 1.5 / 5.5f64.sqrt()).abs() < 1e-12);
    // The E[y] correction splits the two signs (docs/theory.md §3).
    let t = theory("1 + z1", "relu", |_| {});
    assert!(t.one_step_cosine.plus < t.one_step_cosine.minus);
    // Oracle floor on the full space is 0 for a polynomial; floors are ordered.
    let t = theory("staircase3", "relu", |_| {});
    assert!(t.floors.oracle[2].error < 1e-10);
    assert!(t.floors.oracle[0].error >= t.floors.oracle[1].error);
    // Random features at kappa = 2.5, p = d^3 carry degrees 0..2 of ReLU: staircase2's error is 0.
    let t = theory("staircase2", "relu", |o| {
        o.kappa = 2.5;
        o.log_d_p = 3.0;
    });
    assert_eq!(t.floors.random_features.carried_degrees, vec![0, 1, 2]);
    assert!(t.floors.random_features.error < 1e-10);
    // ReLU does not carry degree 3: z1 z2 z3 stays in the floor.
    let t = theory("staircase3", "relu", |o| {
        o.kappa = 3.5;
        o.log_d_p = 4.0;
    });
    assert!((t.floors.random_features.error - 1.0).abs() < 1e-9);
}

#[test]
fn bad_targets_are_refused() {
    let e = Expr::parse("exp(z1^2)").unwrap();
    let err = analyze(&e, 1, &TheoryOptions::default()).unwrap_err().to_string();
    assert!(err.contains("not square-integrable"), "{err}");
    let e = Expr::parse("1/z1").unwrap();
    assert!(analyze(&e, 1, &TheoryOptions::default()).is_err());
}

/// Rotation `R` of the (z1, z2) plane by `theta`, then of (z2, z3) by `phi`, as text.
fn rotate(expr: &str, theta: f64, phi: f64) -> (String, [[f64; 3]; 3]) {
    let (c1, s1, c2, s2) = (theta.cos(), theta.sin(), phi.cos(), phi.sin());
    // R = R23(phi) · R12(theta); x' = R x, and g_R(x) = g(R x).
    let r12 = [[c1, -s1, 0.0], [s1, c1, 0.0], [0.0, 0.0, 1.0]];
    let r23 = [[1.0, 0.0, 0.0], [0.0, c2, -s2], [0.0, s2, c2]];
    let mut r = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] = (0..3).map(|k| r23[i][k] * r12[k][j]).sum();
        }
    }
    let row = |i: usize| format!("({:.17}*z1 + {:.17}*z2 + {:.17}*z3)", r[i][0], r[i][1], r[i][2]);
    let mut out = String::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'z' {
            let k = (bytes[i + 1] - b'1') as usize;
            out += &row(k);
            i += 2;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    (out, r)
}

fn projector(b: &[Vec<f64>]) -> [[f64; 3]; 3] {
    let mut p = [[0.0; 3]; 3];
    for v in b {
        for i in 0..3 {
            for j in 0..3 {
                p[i][j] += v[i] * v[j];
            }
        }
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Both recursions are basis-free: the subspaces of g(R x) are Rᵀ times those of g, and the
    /// representative neurons' overlaps rotate the same way.
    #[test]
    #[ignore = "slow tier: .ci/run runs it with --ignored"]
    fn recursions_are_rotation_invariant(theta in -3.0f64..3.0, phi in -3.0f64..3.0) {
        let base = "z1 + z1*z2 + z1*z2*z3";
        let (rotated, r) = rotate(base, theta, phi);
        let a = theory(base, "relu:0.5", |_| {});
        let b = theory(&rotated, "relu:0.5", |_| {});
        for (ua, ub) in a.generic_subspaces.iter().zip(&b.generic_subspaces) {
            prop_assert_eq!(ua.dim, ub.dim);
            let (pa, pb) = (projector(&ua.basis), projector(&ub.basis));
            // P_b = Rᵀ P_a R.
            for i in 0..3 {
                for j in 0..3 {
                    let want: f64 = (0..3).map(|k| (0..3).map(|l| r[k][i] * pa[k][l] * r[l][j]).sum::<f64>()).sum();
                    prop_assert!((want - pb[i][j]).abs() < 1e-7, "generic {} {}: {} vs {}", i, j, want, pb[i][j]);
                }
            }
        }
        for (na, nb) in a.neurons.iter().zip(&b.neurons) {
            // m_b = Rᵀ m_a.
            for i in 0..3 {
                let want: f64 = (0..3).map(|k| r[k][i] * na.m_plus[k]).sum();
                prop_assert!((want - nb.m_plus[i]).abs() < 1e-4 * (1.0 + want.abs()), "m+ {}: {} vs {}", i, want, nb.m_plus[i]);
            }
            prop_assert!((na.rho_plus - nb.rho_plus).abs() < 1e-4);
        }
        prop_assert_eq!(dims(&a.activation_subspaces), dims(&b.activation_subspaces));
    }
}

// ---------------------------------------------------------------------------------------------
// Theory against simulation.

fn simulate(sets: &[String]) -> giantstep::RunResult {
    let mut t = toml::Table::new();
    for s in sets {
        apply_set(&mut t, s).unwrap();
    }
    giantstep::run(&Config::from_table(t).unwrap().resolve().unwrap()).unwrap()
}

/// d = 1024, n = 4d, eta = 3p, two seeds, against the closed form and the activation-aware
/// recursion: step-1 |cos| within 0.03 of the closed form; each newly entering direction within
/// 25% of the recursion at the step it enters; every direction predicted unlearned within a factor
/// 3 of the random level sqrt(2/(pi d)).
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn theory_matches_simulation_at_linear_batch() {
    let d = 1024usize;
    let random = (2.0 / (std::f64::consts::PI * d as f64)).sqrt();
    for (expr, act, steps) in [
        ("z1 + z1*z2", "relu", 2usize),
        ("z1 + z1*z2", "tanh", 2),
        ("z1 + z1*z2 + z1*z2*z3", "relu", 3),
    ] {
        let t = theory(expr, act, |o| o.steps = steps);
        for seed in 0..2 {
            let r = simulate(&[
                format!("target.expr={expr}"),
                format!("network.activation={act}"),
                format!("network.d={d}"),
                "network.p=256".into(),
                "train.n=4d".into(),
                "train.eta=768".into(),
                format!("train.steps={steps}"),
                format!("seed={seed}"),
                "eval.n_test=100".into(),
                "readout.n=100".into(),
            ]);
            let step1 = r.steps[0].overlaps.mean_abs_cos[0];
            assert!(
                (step1 - t.one_step_cosine.mean_abs).abs() < 0.03,
                "{expr} {act} seed {seed}: step 1 {step1} vs {}",
                t.one_step_cosine.mean_abs
            );
            for k in 0..r.r {
                let enters = t.predicted_abs_cos.iter().position(|c| c[k] > 1e-6);
                for s in 0..steps {
                    let measured = r.steps[s].overlaps.mean_abs_cos[k];
                    let predicted = t.predicted_abs_cos[s][k];
                    if enters == Some(s) {
                        assert!(
                            (measured - predicted).abs() < 0.25 * predicted,
                            "{expr} {act} seed {seed} e{} step {}: {measured} vs {predicted}",
                            k + 1,
                            s + 1
                        );
                    } else if predicted < 1e-6 {
                        assert!(
                            measured < 3.0 * random && measured > random / 3.0,
                            "{expr} {act} seed {seed} e{} step {}: {measured} vs random {random}",
                            k + 1,
                            s + 1
                        );
                    }
                }
            }
        }
    }
}

/// n = beta d^2 closed form against simulation for he2(z1) and z1*z2 at d = 128, beta = 1 (ReLU):
/// mean |cos| within 0.05.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn quadratic_closed_form_matches_simulation() {
    for expr in ["he2(z1)", "z1*z2"] {
        let t = theory(expr, "relu", |o| {
            o.eta0 = 1.0;
            o.beta = 1.0;
            o.preprocess = Preprocess::None;
        });
        let r = simulate(&[
            format!("target.expr={expr}"),
            "network.d=128".into(),
            "network.p=256".into(),
            "train.n=d^2".into(),
            "eval.n_test=100".into(),
            "readout.n=100".into(),
        ]);
        for (k, want) in t.quadratic_one_step.mean_abs_cos.iter().enumerate() {
            let got = r.steps[0].overlaps.mean_abs_cos[k];
            assert!(
                (got - want).abs() < 0.05,
                "{expr} e{}: simulated {got} vs closed form {want}",
                k + 1
            );
        }
    }
}

#[test]
fn principal_angles_between_predicted_and_measured() {
    let t = theory("staircase2", "relu", |o| o.steps = 1);
    let angles = principal_angles(&t.activation_subspaces[0].basis, &vec![vec![1.0, 0.0]]).unwrap();
    assert!(angles[0] < 1e-6);
}

/// Stability of later steps (issue 14): for ReLU with a ±1 second layer the collective mode of
/// the aligned-state Jacobian is exactly `1 − γ/4` (docs/stairway.md), so the limit is γ = 8;
/// saturating activations (tanh, erf) do not blow up; `μ1 = 0` has no aligned state.
#[test]
fn stability_closed_form_for_relu_and_saturating_activations() {
    for gamma in [2.0, 5.0, 11.3] {
        // stairway-pm: μ0 = 0 and the self-curvature vanishes for ReLU, so λ_min = 1 − γ/4.
        let r = theory("stairway-pm", "relu", |o| o.gamma = gamma);
        let st = r.stability.as_ref().unwrap();
        assert!(
            (st.lambda_min - (1.0 - gamma / 4.0)).abs() < 1e-3,
            "γ = {gamma}: {st:?}"
        );
        assert!((st.growth - (gamma / 4.0 - 1.0).max(1.0)).abs() < 1e-3, "{st:?}");
    }
    let r = theory("stairway-pm", "relu", |_| {});
    assert!(
        (r.stable_gamma_max.unwrap() - 8.0).abs() < 0.01,
        "{:?}",
        r.stable_gamma_max
    );
    let r = theory("stairway-he124", "relu", |_| {});
    let g = r.stable_gamma_max.unwrap();
    assert!((7.8..=8.05).contains(&g), "he124: {g}");
    for act in ["tanh", "erf"] {
        let r = theory("stairway-he124", act, |o| o.gamma = 11.3);
        assert_eq!(r.stable_gamma_max, None, "{act}");
        assert!(r.stability.unwrap().lambda_min > -1.0);
    }
    assert!(theory("z1*z2", "relu", |_| {}).stability.is_none());
    // The warning is given for multi-step runs above the limit only.
    let warn = |gamma: f64, steps: usize| {
        theory("stairway-he124", "relu", |o| {
            o.gamma = gamma;
            o.steps = steps;
        })
        .warnings
        .iter()
        .any(|w| w.contains("unstable"))
    };
    assert!(warn(11.3, 2) && !warn(11.3, 1) && !warn(5.0, 3));
}

/// Predicted against measured growth of |ηG| per step at γ = √128 (n = d², d = 128, p = 256),
/// the measured ratios averaged over 4 seeds: ReLU on stairway-he124 (predicted 1.83; measured
/// 1.85–1.96 per seed and window, 6 seeds) within 10%; ReLU on stairway-pm (predicted 1.83)
/// grows faster at this size: between steps 2 and 3 by 2.33–2.51 (12 seeds, both stream
/// versions; +33% on average), between 3 and 4 by 2.00–2.14 (+14%). That gap is asserted as
/// known (the growth above the prediction and at most 45% / 25% above it); the test first
/// checked one seed within 30%, which seed 0 of stream version 1 met (2.35) and most other seeds
/// do not. tanh (predicted stable) shrinks on every seed.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn stability_growth_matches_simulation() {
    const SEEDS: u64 = 4;
    for (target, act) in [
        ("stairway-he124", "relu"),
        ("stairway-pm", "relu"),
        ("stairway-he124", "tanh"),
    ] {
        let mut growth = [0.0; 2];
        let mut predicted = 0.0;
        for seed in 0..SEEDS {
            let mut t = toml::Table::new();
            for s in [
                format!("target.preset={target}"),
                format!("network.activation={act}"),
                "network.d=128".into(),
                "network.p=256".into(),
                "train.n=d^2".into(),
                "train.steps=4".into(),
                "eval.n_test=500".into(),
                format!("seed={seed}"),
            ] {
                apply_set(&mut t, &s).unwrap();
            }
            let r = giantstep::run(&Config::from_table(t).unwrap().resolve().unwrap()).unwrap();
            let th = r.theory.as_ref().unwrap();
            assert!(
                th.warnings.iter().any(|w| w.contains("unstable")) == (act == "relu"),
                "{:?}",
                th.warnings
            );
            let g: Vec<f64> = r
                .steps
                .iter()
                .map(|s| s.eta * s.gradient.grad_singular_values[0])
                .collect();
            let gamma = r.steps[0].eta / 256.0;
            predicted = theory(target, act, |o| o.gamma = gamma).stability.unwrap().growth;
            for (k, w) in g[1..].windows(2).enumerate() {
                let measured = w[1] / w[0];
                if act == "tanh" {
                    assert!(
                        measured < 1.0 && predicted == 1.0,
                        "{target} {act} seed {seed}: {measured} vs {predicted}"
                    );
                }
                growth[k] += measured / SEEDS as f64;
            }
        }
        let excess = growth.map(|m| m / predicted - 1.0);
        let ok = match (target, act) {
            ("stairway-he124", "relu") => excess.iter().all(|e| e.abs() < 0.10),
            ("stairway-pm", "relu") => excess[0] > 0.0 && excess[0] < 0.45 && excess[1] > 0.0 && excess[1] < 0.25,
            _ => true,
        };
        assert!(
            ok,
            "{target} {act}: seed-mean growth {growth:?} against predicted {predicted}"
        );
    }
}

/// One step at n = d^κ (docs/theory.md §2): the seed mean of the measured mean |cos| against the
/// closed form at the same (n, d, γ) for nine (target, activation, κ) cases and two d each, and
/// the d → ∞ rule (which directions keep an order-one overlap). Tolerance: 0.04 + 25% of the
/// prediction on the mean of 4 seeds (the neurons share the gradient noise, so one seed's
/// mean |cos| fluctuates by about 0.06; the closed form runs 5–20% high at these d).
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn one_step_at_any_kappa_matches_simulation() {
    struct Case {
        expr: &'static str,
        act: &'static str,
        kappa: f64,
        ds: [usize; 2],
        /// Directions with an order-one overlap as d → ∞.
        learned: &'static [bool],
        dominant: Option<u32>,
        blocked: Option<&'static str>,
    }
    let cases = [
        Case {
            expr: "he3(z1)",
            act: "relu",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[false],
            dominant: None,
            blocked: Some("needs c3"),
        },
        Case {
            expr: "he3(z1)",
            act: "tanh",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[true],
            dominant: Some(3),
            blocked: None,
        },
        Case {
            expr: "he3(z1)",
            act: "he3",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[true],
            dominant: Some(3),
            blocked: None,
        },
        Case {
            expr: "z1*z2*z3",
            act: "tanh",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[true, true, true],
            dominant: Some(3),
            blocked: None,
        },
        Case {
            expr: "z1*z2*z3",
            act: "relu",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[false, false, false],
            dominant: None,
            blocked: Some("needs c3"),
        },
        Case {
            expr: "he2(z1) + he3(z2)",
            act: "relu",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[true, false],
            dominant: Some(2),
            blocked: Some("needs c3"),
        },
        Case {
            expr: "he2(z1) + he3(z2)",
            act: "tanh",
            kappa: 3.0,
            ds: [24, 32],
            learned: &[false, true],
            dominant: Some(3),
            blocked: Some("needs c2"),
        },
        Case {
            expr: "he2(z1)",
            act: "tanh",
            kappa: 2.0,
            ds: [64, 128],
            learned: &[false],
            dominant: None,
            blocked: Some("needs c2"),
        },
        Case {
            expr: "he2(z1)",
            act: "relu",
            kappa: 2.0,
            ds: [64, 128],
            learned: &[true],
            dominant: Some(2),
            blocked: None,
        },
    ];
    for c in &cases {
        for d in c.ds {
            let mut measured: Vec<f64> = vec![0.0; c.learned.len()];
            let mut predicted = vec![];
            for seed in 0..4 {
                let r = simulate(&[
                    format!("target.expr={}", c.expr),
                    format!("network.activation={}", c.act),
                    format!("network.d={d}"),
                    "network.p=128".into(),
                    format!("train.n=d^{}", c.kappa),
                    format!("seed={seed}"),
                    "eval.n_test=200".into(),
                    "eval.baseline=false".into(),
                ]);
                measured
                    .iter_mut()
                    .zip(&r.steps[0].overlaps.mean_abs_cos)
                    .for_each(|(a, b)| *a += b / 4.0);
                let th = r.theory.expect("theory attached");
                assert_eq!(th.dominant_degree, c.dominant, "{} {}", c.expr, c.act);
                predicted = th.one_step_at_kappa;
            }
            for (k, (m, p)) in measured.iter().zip(&predicted).enumerate() {
                assert!(
                    (m - p).abs() <= 0.04 + 0.25 * p,
                    "{} {} kappa {} d {d} e{}: measured {m:.3}, closed form {p:.3}",
                    c.expr,
                    c.act,
                    c.kappa,
                    k + 1
                );
            }
        }
        // As d → ∞: order-one overlaps exactly where the rule says.
        let far = giantstep::theory::Query {
            target: c.expr.into(),
            activation: c.act.into(),
            kappa: c.kappa,
            d: 1_000_000,
            steps: 1,
            degree: 4,
            ..Default::default()
        }
        .analyze()
        .unwrap();
        let at = &far.one_step_at_kappa;
        for (k, (&learned, cos)) in c.learned.iter().zip(&at.mean_abs_cos).enumerate() {
            assert_eq!(*cos > 0.1, learned, "{} {} e{}: {cos}", c.expr, c.act, k + 1);
            assert!(learned || *cos < 0.01, "{} {} e{}: {cos}", c.expr, c.act, k + 1);
        }
        assert_eq!(at.subspace.dim, c.learned.iter().filter(|l| **l).count());
        if let Some(b) = c.blocked {
            assert!(
                at.blocked.iter().any(|m| m.contains(b)),
                "{} {}: {:?}",
                c.expr,
                c.act,
                at.blocked
            );
        }
        // No "for n = alpha d" caveat at kappa >= 2.
        assert!(
            far.warnings.iter().all(|w| !w.contains("n = alpha d")),
            "{:?}",
            far.warnings
        );
    }
}

/// At n = αd the finite-size form tends to the n = αd closed form, and at n = βd² with μ1 = 0
/// to the βd² form, as d grows.
#[test]
fn one_step_at_kappa_reduces_to_the_known_closed_forms() {
    let big = 1e7;
    let linear = theory("z1 + z1*z2", "relu", |o| {
        o.alpha = 4.0;
        o.gamma = 3.0;
        o.batch = giantstep::theory::batch::FiniteBatch {
            d: big,
            n: 4.0 * big,
            gamma: 3.0,
        };
    });
    let u = &linear.one_step_cosine;
    let got = &linear.one_step_at_kappa.mean_abs_cos;
    // The n = αd form is the cosine with u = μ1/|μ1| = e1.
    assert!((got[0] - u.mean_abs).abs() < 0.01, "{} vs {}", got[0], u.mean_abs);
    let quad = theory("he2(z1)", "relu", |o| {
        o.kappa = 2.0;
        o.beta = 1.0;
        o.eta0 = 1.0;
        o.batch = giantstep::theory::batch::FiniteBatch {
            d: big,
            n: big * big,
            gamma: big.sqrt(),
        };
    });
    let q = quad.quadratic_one_step.mean_abs_cos[0];
    let got = quad.one_step_at_kappa.mean_abs_cos[0];
    assert!((got - q).abs() < 0.01, "{got} vs {q}");
}
