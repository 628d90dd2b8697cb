//! End-to-end checks of the simulation against docs/theory.md §3 and docs/model.md §5 (issue 2, "Must hold").

use giantstep::config::{apply_set, Config};
use giantstep::{RunOptions, RunResult};

/// Resolves and runs a raw configuration.
fn run(config: &Config) -> giantstep::Result<RunResult> {
    giantstep::run(&config.resolve()?)
}

fn config(sets: &[&str]) -> Config {
    let mut t = toml::Table::new();
    for s in sets {
        apply_set(&mut t, s).unwrap();
    }
    Config::from_table(t).unwrap()
}

fn simulate(sets: &[&str]) -> RunResult {
    run(&config(sets)).unwrap()
}

/// Relative difference, 0 for two zeros.
fn rel(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        (a - b).abs() / a.abs().max(b.abs())
    }
}

/// Every number of a result except wall time and thread count, flattened in a fixed order.
fn numbers(r: &RunResult) -> Vec<f64> {
    let mut v = vec![
        r.test_error,
        r.train_error,
        r.rf_test_error.unwrap(),
        r.rf_train_error.unwrap(),
        r.test_label_second_moment,
    ];
    for s in &r.steps {
        v.push(s.batch_mse);
        v.extend(&s.overlaps.mean_abs_cos);
        v.extend(&s.overlaps.max_abs_cos);
        v.extend(&s.overlaps.teacher_gram_eigenvalues);
        v.extend(s.overlaps.teacher_gram_eigenvectors.iter().flatten());
        v.push(s.overlaps.outside_mass);
        v.extend(&s.gradient.grad_singular_values);
        v.extend(s.gradient.grad_cos.iter().flatten());
        v.extend(s.gradient.grad_perp_cos.iter().flatten());
    }
    v
}

const SMALL: &[&str] = &[
    "network.d=24",
    "network.p=12",
    "train.n=300",
    "train.steps=2",
    "eval.n_test=257",
    "target.expr=z1 + z1*z2 + tanh(z3)",
    "target.noise=0.1",
    "train.preprocess=linear",
    "network.activation=relu:0.2",
];

/// The random numbers of sample i depend only on (seed, purpose, step, i): chunk sizes 1, 7 and
/// 4096 agree within 1e-12 relative (only the order of additions differs).
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn chunk_size_does_not_change_results() {
    let base = |chunk: &str| {
        let mut s = SMALL.to_vec();
        s.push(chunk);
        s.push("threads=1");
        simulate(&s)
    };
    let a = numbers(&base("chunk=4096"));
    for chunk in ["chunk=1", "chunk=7"] {
        let b = numbers(&base(chunk));
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            // Cosines of near-zero size carry absolute, not relative, rounding: compare at 1e-12
            // relative to the scale of 1 for them.
            assert!(
                rel(*x, *y) < 1e-12 || (x - y).abs() < 1e-13,
                "{chunk} value {i}: {x} vs {y}"
            );
        }
    }
}

/// 1, 2, 3 and 7 threads give bit-identical JSON results (wall time and thread count aside):
/// chunks are summed in chunk order whatever thread computed them.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn thread_count_gives_bit_identical_json() {
    let json = |threads: &str| {
        let mut s = SMALL.to_vec();
        s.push(threads);
        s.push("chunk=16");
        let mut r = simulate(&s);
        r.elapsed_s = 0.0;
        r.config.threads = 0;
        serde_json::to_string(&r).unwrap()
    };
    let one = json("threads=1");
    assert_eq!(one, json("threads=2"));
    assert_eq!(one, json("threads=3"));
    assert_eq!(one, json("threads=7"));
}

/// A pass of fewer chunks than threads shares its chunks' `gemm` products between the threads:
/// the same numbers as one thread, bit for bit, for batches of one chunk (on 2 and 3 threads)
/// and of four with a short last one (on 7 threads; on 2 and 3 they are not shared), with
/// outputs large enough for `gemm` to split them (`chunk·p·d` past its threading threshold).
#[test]
fn workers_without_a_chunk_sharing_products_keep_the_numbers() {
    let json = |threads: &str, n: &str, precision: &str| {
        let mut r = simulate(&[
            "network.d=64",
            "network.p=96",
            n,
            "train.steps=2",
            "chunk=256",
            "eval.n_test=700",
            "train.preprocess=linear",
            precision,
            threads,
        ]);
        r.elapsed_s = 0.0;
        r.config.threads = 0;
        serde_json::to_string(&r).unwrap()
    };
    for n in ["train.n=200", "train.n=1000"] {
        for precision in ["precision=f32", "precision=f64"] {
            let one = json("threads=1", n, precision);
            for threads in ["threads=2", "threads=3", "threads=7"] {
                assert_eq!(one, json(threads, n, precision), "{n}, {precision}, {threads}");
            }
        }
    }
}

/// docs/theory.md §3, docs/model.md §5, staircase2: one step on z1 + z1*z2 (ReLU, symmetric, hypercube, d = 512, p = 256,
/// n = 4d, η = 3p) gives mean |cos(w, w*1)| = 0.640 ± 0.03 (closed form 1.5/sqrt(5.5) = 0.6396),
/// |cos| with w*2 below twice the random level, and the top teacher-Gram eigenvector within 10° of
/// e1; a second step brings |cos| with w*2 above 0.2.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn staircase2_one_and_two_steps() {
    let r = simulate(&[
        "target.preset=staircase2",
        "network.d=512",
        "network.p=256",
        "train.n=4d",
        "train.eta=768",
        "train.steps=2",
        "eval.n_test=1000",
    ]);
    let closed = 1.5 / 5.5f64.sqrt();
    let s1 = &r.steps[0].overlaps;
    assert!(
        (s1.mean_abs_cos[0] - closed).abs() < 0.03,
        "step 1 |cos| e1 = {} vs {closed}",
        s1.mean_abs_cos[0]
    );
    assert!(
        s1.mean_abs_cos[1] < 2.0 * r.random_level,
        "step 1 |cos| e2 = {} vs random {}",
        s1.mean_abs_cos[1],
        r.random_level
    );
    let v = &s1.teacher_gram_eigenvectors[0];
    let angle = v[0].abs().min(1.0).acos().to_degrees();
    assert!(angle < 10.0, "top eigenvector {v:?} is {angle}° from e1");
    let s2 = &r.steps[1].overlaps;
    assert!(s2.mean_abs_cos[1] > 0.2, "step 2 |cos| e2 = {}", s2.mean_abs_cos[1]);
    // One dominant spike in G at n = Θ(d).
    let sv = &r.steps[0].gradient.grad_singular_values;
    assert!(sv[0] > 3.0 * sv[1], "singular values {sv:?}");
}

/// z1*z2 at n = 4d learns nothing: its step-2 mean |cos| falls by at least 1.6x from d = 256 to
/// d = 1024 (random overlaps fall like d^{-1/2}, a factor 2), while the learned e1 of z1 + z1*z2
/// does not fall.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn parity_is_not_learned_at_linear_batch() {
    let at = |target: &str, d: &str| {
        simulate(&[
            target,
            d,
            "network.p=256",
            "train.n=4d",
            "train.steps=2",
            "eval.n_test=100",
            "readout.n=100",
        ])
    };
    let mean = |r: &RunResult| {
        let c = &r.steps[1].overlaps.mean_abs_cos;
        c.iter().sum::<f64>() / c.len() as f64
    };
    let small = mean(&at("target.expr=z1*z2", "network.d=256"));
    let large = mean(&at("target.expr=z1*z2", "network.d=1024"));
    assert!(
        small / large >= 1.6,
        "z1*z2 step-2 |cos|: d=256 {small}, d=1024 {large}"
    );
    let e1_small = at("target.expr=z1 + z1*z2", "network.d=256").steps[1]
        .overlaps
        .mean_abs_cos[0];
    let e1_large = at("target.expr=z1 + z1*z2", "network.d=1024").steps[1]
        .overlaps
        .mean_abs_cos[0];
    assert!(e1_large > 0.9 * e1_small, "e1: d=256 {e1_small}, d=1024 {e1_large}");
}

/// After two steps at n = 8d, d = 256, the trained network beats random features on z1 + z1*z2.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn trained_beats_random_features() {
    let r = simulate(&[
        "target.preset=staircase2",
        "network.d=256",
        "train.n=8d",
        "train.steps=2",
        "eval.n_test=4000",
    ]);
    assert!(
        r.test_error < r.rf_test_error.unwrap(),
        "test {} vs rf {}",
        r.test_error,
        r.rf_test_error.unwrap()
    );
    // Both below predicting 0 (E[y²] = 2).
    assert!(r.rf_test_error.unwrap() < r.test_label_second_moment);
}

/// Symmetric initialization gives f ≡ 0, so the first step's batch error is the label second
/// moment, and the correlation loss gives the same first step as the residual loss.
#[test]
fn symmetric_init_first_step_is_correlation_step() {
    let base = [
        "network.d=32",
        "network.p=16",
        "train.n=200",
        "eval.n_test=50",
        "readout.n=50",
    ];
    let mut a = base.to_vec();
    a.push("train.loss=residual");
    let mut b = base.to_vec();
    b.push("train.loss=correlation");
    let (ra, rb) = (simulate(&a), simulate(&b));
    // The readout on the training batch with an overwhelming ridge predicts 0, so its train error
    // is the batch's mean y²: the first step's batch error must equal it.
    let mut c = base.to_vec();
    c.extend(["readout.batch=last", "readout.lambda=1e12"]);
    let mean_y2 = simulate(&c).train_error;
    assert!(
        rel(ra.steps[0].batch_mse, mean_y2) < 1e-9,
        "{} vs {mean_y2}",
        ra.steps[0].batch_mse
    );
    assert!(mean_y2 > 0.5, "z1 + z1*z2 has E[y²] = 2: {mean_y2}");
    for (x, y) in ra.steps[0]
        .overlaps
        .mean_abs_cos
        .iter()
        .zip(&rb.steps[0].overlaps.mean_abs_cos)
    {
        assert!((x - y).abs() < 1e-12);
    }
}

/// Batch reuse: with reuse = 2, steps 1 and 2 see the same batch (same label moments), and the
/// readout on the last batch trains on it.
#[test]
fn reuse_and_readout_on_last_batch_run() {
    let r = simulate(&[
        "network.d=32",
        "network.p=16",
        "train.n=256",
        "train.steps=3",
        "train.reuse=2",
        "readout.batch=last",
        "train.normalize=spherical",
        "train.preprocess=mean",
        "eval.n_test=100",
    ]);
    assert_eq!(r.steps.len(), 3);
    for s in &r.steps {
        assert!(s.overlaps.mean_abs_cos.iter().all(|v| v.is_finite()));
    }
    // Which batch the last step saw: the readout on it with an overwhelming ridge predicts 0, so
    // its train error is that batch's mean y². With reuse = 2, step 2 reuses batch 1 and step 3
    // draws batch 2; with reuse = 1, step 2 draws batch 2.
    let last_batch_y2 = |steps: &str, reuse: &str| {
        simulate(&[
            "network.d=32",
            "network.p=16",
            "train.n=256",
            steps,
            reuse,
            "readout.batch=last",
            "readout.lambda=1e12",
            "eval.n_test=100",
        ])
        .train_error
    };
    let batch1 = last_batch_y2("train.steps=1", "train.reuse=1");
    let batch2 = last_batch_y2("train.steps=2", "train.reuse=1");
    assert!(
        rel(batch1, batch2) > 1e-3,
        "batches 1 and 2 must differ: {batch1} {batch2}"
    );
    assert!(rel(last_batch_y2("train.steps=2", "train.reuse=2"), batch1) < 1e-9);
    assert!(rel(last_batch_y2("train.steps=3", "train.reuse=2"), batch2) < 1e-9);
}

/// The oracle add-back (exact μ0 + <W*ᵀμ1, z> from the theory) against the empirical one (the
/// mean and `b = Zᵀy/n` estimated on the n = 512 samples of the readout batch), paired over 8
/// seeds: the oracle removes the estimation error of the added-back part, so its test error is
/// lower on average (by more than 3 standard errors of the paired mean), and by less than 10%
/// of the empirical error (measured over 16 seeds: 7.1 ± 0.7%, from 2% to 13% per seed; one
/// seed alone, as this test first checked, says little). The theory section is attached.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn oracle_add_back_and_theory_section() {
    let base = [
        "target.preset=stairway-he124",
        "network.d=64",
        "network.p=128",
        "train.n=d^1.5",
        "train.preprocess=linear",
        "readout.batch=last",
        "eval.n_test=4000",
    ];
    let seeds = 8;
    let (mut emp_sum, mut diffs) = (0.0, Vec::new());
    let mut ora = None;
    for seed in 0..seeds {
        let with_seed = format!("seed={seed}");
        let mut e = base.to_vec();
        e.push(&with_seed);
        let emp = simulate(&e);
        e.push("readout.add_back=oracle");
        let o = simulate(&e);
        emp_sum += emp.test_error;
        diffs.push(emp.test_error - o.test_error);
        ora = Some(o);
    }
    let n = seeds as f64;
    let mean = diffs.iter().sum::<f64>() / n;
    let se = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    let emp_mean = emp_sum / n;
    assert!(
        mean > 3.0 * se,
        "oracle gain {mean} ± {se} (empirical error {emp_mean})"
    );
    assert!(
        mean < 0.10 * emp_mean,
        "oracle gain {mean} ± {se} against empirical error {emp_mean}"
    );
    let ora = ora.expect("eight seeds");
    assert!(ora.test_error < ora.test_label_second_moment);
    let th = ora.theory.as_ref().unwrap();
    assert!((th.linear_kernel_error - 0.270_833_333_333).abs() < 1e-9);
    assert!((th.mu0).abs() < 1e-12 && (th.mu1[0] - 0.5).abs() < 1e-12);
    assert_eq!(th.measured_mean_abs_cos.len(), 1);
    assert_eq!(th.principal_angles_deg.len(), 1);
    // Disabled on request, with a note.
    let mut off = base.to_vec();
    off.push("eval.theory=false");
    let r = simulate(&off);
    assert!(r.theory.is_none() && r.theory_note.is_some());
}

/// The theory section of a staircase run: the predicted subspace matches the measured one.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn predicted_and_measured_subspaces_align() {
    let r = simulate(&[
        "target.preset=staircase2",
        "network.d=512",
        "network.p=256",
        "train.eta=768",
        "train.steps=2",
        "eval.n_test=500",
    ]);
    let th = r.theory.as_ref().unwrap();
    assert_eq!(th.predicted_subspace_dims, vec![1, 2]);
    assert_eq!(th.measured_subspace_dims, vec![1, 2]);
    for angles in &th.principal_angles_deg {
        assert!(angles.iter().all(|a| *a < 10.0), "{angles:?}");
    }
}

/// precision = "f32" (f32 GEMMs, f64 sums across chunks) gives the f64 test errors within 1e-3
/// relative on z1 + z1*z2 (measured: ~1e-8), and the same learned overlaps to 1e-4.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn f32_matches_f64() {
    let base = [
        "target.preset=staircase2",
        "network.d=128",
        "network.p=256",
        "train.n=8d",
        "train.steps=2",
        "eval.n_test=2000",
    ];
    let a = simulate(&base);
    let mut b = base.to_vec();
    b.push("precision=f32");
    let b = simulate(&b);
    for (x, y) in [
        (a.test_error, b.test_error),
        (a.rf_test_error.unwrap(), b.rf_test_error.unwrap()),
        (a.train_error, b.train_error),
    ] {
        assert!((x - y).abs() < 1e-3 * x, "{x} vs {y}");
    }
    for (x, y) in a.steps[1]
        .overlaps
        .mean_abs_cos
        .iter()
        .zip(&b.steps[1].overlaps.mean_abs_cos)
    {
        assert!((x - y).abs() < 1e-4, "{x} vs {y}");
    }
}

/// The JSON of a result without its wall time.
fn json_without_time(r: &RunResult) -> String {
    let mut v = serde_json::to_value(r).unwrap();
    v.as_object_mut().unwrap().remove("elapsed_s");
    v.to_string()
}

/// Evaluating every T = 1..4 in one run gives, for each T, the JSON of a separate `run` with
/// `train.steps = T`, bit for bit: fresh and last-batch readouts, f64 and f32, every add-back,
/// batch reuse, a learning-rate cap and a per-step schedule.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn prefixes_equal_separate_runs_bit_for_bit() {
    let cases: &[&[&str]] = &[
        &[
            "network.d=24",
            "network.p=16",
            "train.n=d^1.5",
            "eval.n_test=400",
            "chunk=50",
        ],
        &[
            "network.d=20",
            "network.p=12",
            "precision=f32",
            "train.preprocess=linear",
            "readout.batch=last",
            "readout.add_back=test",
            "train.reuse=2",
            "eval.n_test=300",
        ],
        &[
            "network.d=16",
            "network.p=8",
            "target.preset=stairway-he124",
            "train.n=d^2",
            "train.eta_max0=5",
            "train.eta_schedule=[1.0, 0.5]",
            "train.preprocess=linear",
            "readout.add_back=oracle",
            "eval.n_test=300",
            "threads=2",
        ],
    ];
    for sets in cases {
        let cfg = config(sets);
        let together = giantstep::run_prefixes(&cfg.resolve().unwrap(), &[1, 2, 3, 4]).unwrap();
        assert_eq!(together.len(), 4);
        for (t, got) in (1..=4).zip(together) {
            let mut c = cfg.clone();
            c.train.steps = t;
            let want = run(&c).unwrap();
            assert_eq!(
                json_without_time(&got.unwrap()),
                json_without_time(&want),
                "{sets:?}, T = {t}"
            );
        }
        // eval.every_step attaches the same per-step errors to one run.
        let mut c = cfg.clone();
        c.train.steps = 4;
        c.eval.every_step = true;
        let every = run(&c).unwrap();
        for t in 1..=4 {
            let mut ct = cfg.clone();
            ct.train.steps = t;
            let single = run(&ct).unwrap();
            assert_eq!(
                every.steps[t - 1].test_error,
                Some(single.test_error),
                "{sets:?}, T = {t}"
            );
            assert_eq!(
                every.steps[t - 1].train_error,
                Some(single.train_error),
                "{sets:?}, T = {t}"
            );
        }
        assert_eq!(every.test_error, every.steps[3].test_error.unwrap());
    }
}

/// A run that diverges at step 3 still yields the results of T = 1 and 2; T >= 3 fail with the
/// error a separate run gives.
#[test]
#[ignore = "slow tier: .ci/run runs it with --ignored"]
fn prefixes_keep_the_steps_before_a_divergence() {
    let cfg = config(&[
        "network.d=16",
        "network.p=8",
        "network.activation=he4",
        "train.eta_schedule=[1, 1, 1e200]",
        "eval.n_test=200",
    ]);
    let out = giantstep::run_prefixes(&cfg.resolve().unwrap(), &[1, 2, 3, 4]).unwrap();
    assert!(out[0].is_ok() && out[1].is_ok());
    for (t, o) in (1..=4).zip(&out) {
        let mut c = cfg.clone();
        c.train.steps = t;
        match (o, run(&c)) {
            (Ok(a), Ok(b)) => assert_eq!(json_without_time(a), json_without_time(&b)),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
            (a, b) => panic!("T = {t}: together {a:?}, separate {b:?}"),
        }
    }
    assert!(out[2].is_err() && out[3].is_err());
}

/// The learning-rate schedule: the cap and the multipliers as documented.
#[test]
fn eta_cap_and_schedule() {
    let c = config(&["network.d=100", "network.p=10", "train.n=d^2"])
        .resolve()
        .unwrap();
    assert_eq!(c.eta_at(1), 10.0 * 10.0); // eta0·p·(n/d)^0.5 = 10·10
    let c = config(&["network.d=100", "network.p=10", "train.n=d^2", "train.eta_max0=5"])
        .resolve()
        .unwrap();
    assert_eq!(c.eta_at(1), 50.0);
    let c = config(&[
        "network.d=100",
        "network.p=10",
        "train.n=d^2",
        "train.eta_max0=5",
        "train.eta_schedule=[1, 0.5, 0.25]",
    ])
    .resolve()
    .unwrap();
    assert_eq!(
        (c.eta_at(1), c.eta_at(2), c.eta_at(3), c.eta_at(7)),
        (50.0, 25.0, 12.5, 12.5)
    );
    let r = run(&{
        let mut c = c.config().clone();
        c.train.steps = 3;
        c.eval.n_test = 100;
        c
    })
    .unwrap();
    let etas: Vec<f64> = r.steps.iter().map(|s| s.eta).collect();
    assert_eq!(etas, vec![50.0, 25.0, 12.5]);
    for bad in [
        "train.eta_max0=0",
        "train.eta_schedule=[]",
        "train.eta_schedule=[1, -1]",
    ] {
        let e = config(&[bad]).resolve().unwrap_err();
        assert_eq!(e.key(), bad.split('=').next(), "{bad}: {e:?}");
    }
}

/// `readout.add_back = "test"` (the authors' notebook) adds back the mean and linear term
/// estimated on the test set itself: on a linear target the test error is then the estimation
/// error of `d + 1` numbers from `n_test` samples (about (d+1)/n_test = 5e-4), while the empirical
/// add-back from a readout batch of 4d samples is off by about (d+1)/(4d) = 0.28.
#[test]
fn test_set_add_back_uses_the_test_set() {
    let base = [
        "target.expr=z1 + 0.5",
        "network.d=8",
        "network.p=8",
        "train.preprocess=linear",
        "eval.n_test=20000",
        "eval.theory=false",
        // A ridge this strong leaves the readout at ~0, so the prediction is the add-back alone.
        "readout.lambda=1e6",
    ];
    let with = |add_back: &str| {
        let mut sets: Vec<&str> = base.to_vec();
        sets.push(add_back);
        simulate(&sets)
    };
    let test = with("readout.add_back=test");
    let empirical = with("readout.add_back=empirical");
    assert!(test.test_error < 2e-3, "test-set add-back: {}", test.test_error);
    assert!(
        empirical.test_error > 0.05,
        "empirical add-back: {}",
        empirical.test_error
    );
    // The readout itself is the same: same train error.
    assert_eq!(test.train_error, empirical.train_error);
}

/// `eval.baseline = false` skips the random-features readout and test: the JSON says
/// `rf_test_error: null`, everything else is bit-identical, and the cost model drops that work.
#[test]
fn baseline_can_be_skipped() {
    for extra in [
        &[][..],
        &["readout.batch=last", "train.steps=2", "eval.every_step=true"][..],
    ] {
        let mut base = vec!["network.d=24", "network.p=16", "eval.n_test=300"];
        base.extend_from_slice(extra);
        let with = simulate(&base);
        let mut off = base.clone();
        off.push("eval.baseline=false");
        let without = simulate(&off);
        assert_eq!(without.rf_test_error, None);
        assert_eq!(without.rf_train_error, None);
        let json = serde_json::to_value(&without).unwrap();
        assert!(json["rf_test_error"].is_null() && json["rf_train_error"].is_null());
        assert_eq!(json["config"]["eval"]["baseline"], false);
        assert_eq!(without.test_error, with.test_error);
        assert_eq!(without.train_error, with.train_error);
        for (a, b) in without.steps.iter().zip(&with.steps) {
            assert_eq!(a.test_error, b.test_error);
        }
        let cfg = |sets: &[&str]| config(sets).resolve().unwrap();
        let (f_on, f_off) = (
            giantstep::cost::run_flops(&cfg(&base), 1),
            giantstep::cost::run_flops(&cfg(&off), 1),
        );
        assert_eq!(f_on.step, f_off.step);
        assert!(f_off.readout < f_on.readout && f_off.test < f_on.test);
    }
    // The default configuration does not mention the key (earlier records keep their hashes).
    let json = serde_json::to_value(config(&[]).resolve().unwrap()).unwrap();
    assert!(json["eval"].get("baseline").is_none());
}

/// An observer sees every phase in order and every step's record as the result holds it.
#[test]
fn observer_sees_phases_and_steps() {
    struct Log {
        phases: Vec<String>,
        steps: Vec<giantstep::StepRecord>,
    }
    impl giantstep::Observer for Log {
        fn phase(&mut self, phase: giantstep::Phase) {
            self.phases.push(phase.to_string());
        }
        fn step_finished(&mut self, record: &giantstep::StepRecord) {
            self.steps.push(record.clone());
        }
    }
    let cfg = config(&["network.d=16", "network.p=8", "train.steps=2", "eval.n_test=100"]);
    let mut log = Log {
        phases: vec![],
        steps: vec![],
    };
    let cfg = cfg.resolve().unwrap();
    let options = RunOptions {
        observer: Some(&mut log),
        ..Default::default()
    };
    let r = giantstep::run_with(&cfg, options).unwrap();
    assert_eq!(log.phases, ["step 1/2", "step 2/2", "theory", "readout", "test"]);
    assert_eq!(log.steps, r.steps);
    // A closure receives the phases as messages.
    let mut messages = Vec::new();
    let mut log_messages = |m: &str| messages.push(m.to_string());
    let options = RunOptions {
        observer: Some(&mut log_messages),
        ..Default::default()
    };
    giantstep::run_with(&cfg, options).unwrap();
    assert_eq!(messages, log.phases);
}

/// A run whose theory takes about a second per step (a rank-3 target, no fixed point without
/// normalization: 16 s uncancelled), cancelled when the observer first sees the phase `at`:
/// the outcome, the phases seen and the seconds the run took.
fn cancelled_at(at: &str) -> (giantstep::Result<RunResult>, Vec<String>, f64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = flag.clone();
    let mut phases = Vec::new();
    let mut observer = |m: &str| {
        phases.push(m.to_string());
        if m == at {
            raised.store(true, Ordering::SeqCst);
        }
    };
    let cfg = config(&[
        "network.d=32",
        "network.p=8",
        "network.activation=\"tanh\"",
        "target.expr=\"tanh(z1*z2*z3)\"",
        "train.steps=16",
        "eval.n_test=100",
    ])
    .resolve()
    .unwrap();
    let start = std::time::Instant::now();
    let options = RunOptions {
        observer: Some(&mut observer),
        cancel: Some(flag),
        ..Default::default()
    };
    let outcome = giantstep::run_with(&cfg, options);
    (outcome, phases, start.elapsed().as_secs_f64())
}

/// The theory runs beside the training: a run cancelled during its first step stops the
/// theory too, with `Error::Cancelled` and no theory phase, at once (< 5 s against 16 s).
#[test]
fn cancel_during_training_stops_the_theory_beside_it() {
    let (outcome, phases, seconds) = cancelled_at("step 1/16");
    assert!(matches!(outcome, Err(giantstep::Error::Cancelled)), "{outcome:?}");
    assert_eq!(phases, ["step 1/16"]);
    assert!(seconds < 5.0, "{seconds} s");
}

/// A run cancelled when its theory phase starts stops inside the theory with
/// `Error::Cancelled` (at the next check: < 5 s against 16 s), and a run without the theory has
/// no theory phase.
#[test]
fn cancel_during_the_theory_stops_it() {
    let (outcome, phases, seconds) = cancelled_at("theory");
    assert!(matches!(outcome, Err(giantstep::Error::Cancelled)), "{outcome:?}");
    assert_eq!(phases.last().map(String::as_str), Some("theory"));
    assert!(seconds < 5.0, "{seconds} s");
    let mut phases = Vec::new();
    let mut observer = |m: &str| phases.push(m.to_string());
    let mut cfg = config(&["network.d=16", "network.p=8", "eval.n_test=100", "eval.theory=false"]);
    cfg.train.steps = 1;
    let options = RunOptions {
        observer: Some(&mut observer),
        ..Default::default()
    };
    giantstep::run_with(&cfg.resolve().unwrap(), options).unwrap();
    assert_eq!(phases, ["step 1/1", "readout", "test"]);
}

/// A run cancelled from its own observer when step 2 starts stops with `Error::Cancelled`
/// inside that step: step 1 finished, step 2 never did, no readout was fitted. Driven by the
/// run's events, not by timing.
#[test]
fn cancel_from_the_observer_stops_inside_the_step() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    struct CancelAtStep2 {
        flag: Arc<AtomicBool>,
        phases: Vec<String>,
        finished: Vec<usize>,
    }
    impl giantstep::Observer for CancelAtStep2 {
        fn phase(&mut self, phase: giantstep::Phase) {
            self.phases.push(phase.to_string());
            if phase == (giantstep::Phase::Step { t: 2, of: 3 }) {
                self.flag.store(true, Ordering::SeqCst);
            }
        }
        fn step_finished(&mut self, record: &giantstep::StepRecord) {
            self.finished.push(record.t);
        }
    }
    // Small chunks: the flag is read between chunks, and step 2 has many of them.
    let cfg = config(&[
        "network.d=32",
        "network.p=16",
        "train.steps=3",
        "train.n=4096",
        "chunk=64",
        "eval.n_test=500",
    ])
    .resolve()
    .unwrap();
    let flag = Arc::new(AtomicBool::new(false));
    let mut obs = CancelAtStep2 {
        flag: flag.clone(),
        phases: vec![],
        finished: vec![],
    };
    let options = RunOptions {
        observer: Some(&mut obs),
        cancel: Some(flag),
        ..Default::default()
    };
    let r = giantstep::run_with(&cfg, options);
    assert!(matches!(r, Err(giantstep::Error::Cancelled)), "{r:?}");
    assert_eq!(obs.finished, [1]);
    assert_eq!(obs.phases, ["step 1/3", "step 2/3"]);
}

fn small(extra: &[&str]) -> giantstep::ValidConfig {
    let mut sets = vec!["network.d=24", "network.p=12", "train.steps=2", "eval.n_test=400"];
    sets.extend_from_slice(extra);
    config(&sets).resolve().unwrap()
}

/// A run of 3 steps equals a run of 1 step continued (from its returned layer and records) for
/// 2 more, bit for bit: every step record, the errors, the weights, with and without
/// `eval.every_step`, with a learning-rate schedule and label preprocessing from step 2. The
/// per-step state (`M_t`, `Q_t`, `W_t`) is the product of the layers it reports.
#[test]
fn continued_run_equals_the_uninterrupted_one() {
    for every_step in [false, true] {
        let mut sets = vec![
            "train.eta_schedule=[1.0, 0.5, 0.25]",
            "train.preprocess=\"linear\"",
            "train.preprocess_from=2",
        ];
        if every_step {
            sets.push("eval.every_step=true");
        }
        let full_cfg = small(&[&sets[..], &["train.steps=3"]].concat());
        let keep =
            |cfg: &giantstep::ValidConfig, resume: Option<giantstep::Resume>, w: Option<(&[f64], &[f64], &[f64])>| {
                giantstep::run_with(
                    cfg,
                    RunOptions {
                        keep_weights: true,
                        keep_every_step: true,
                        resume,
                        first_layer: w.map(|w| w.0),
                        second_layer: w.map(|w| w.1),
                        teacher: w.map(|w| w.2),
                        ..Default::default()
                    },
                )
                .unwrap()
            };
        let full = keep(&full_cfg, None, None);
        let first = keep(&small(&[&sets[..], &["train.steps=1"]].concat()), None, None);
        let fw = first.weights.as_ref().unwrap();
        let resume = giantstep::Resume {
            layer: &fw.w,
            steps: &first.steps,
        };
        let cont = keep(&full_cfg, Some(resume), Some((&fw.w0, &fw.a, &fw.w_star)));
        assert_eq!(cont.steps, full.steps, "every_step = {every_step}");
        assert_eq!(cont.test_error, full.test_error);
        assert_eq!(cont.train_error, full.train_error);
        assert_eq!(cont.rf_test_error, full.rf_test_error);
        let (a, b) = (cont.weights.as_ref().unwrap(), full.weights.as_ref().unwrap());
        assert_eq!(a.w, b.w);
        assert_eq!(a.readout, b.readout);
        // The continued run reports the state of its own steps 2 and 3, the same as the full run's.
        assert_eq!(a.steps.iter().map(|s| s.t).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(a.steps[..], b.steps[1..]);
        let (p, d, r) = (b.p, b.d, b.r);
        for s in &b.steps {
            let w = s.w.as_ref().unwrap();
            for i in 0..p {
                for k in 0..r {
                    let m: f64 = (0..d).map(|j| w[i * d + j] * b.w_star[k * d + j]).sum();
                    assert!((m - s.m[i * r + k]).abs() < 1e-12);
                }
                for k in 0..p {
                    let q: f64 = (0..d).map(|j| w[i * d + j] * w[k * d + j]).sum();
                    assert!((q - s.q[i * p + k]).abs() < 1e-12);
                }
            }
        }
        assert_eq!(b.steps.last().unwrap().w.as_ref().unwrap(), &b.w);
    }
    // Nothing left to train, or records out of order, are refused.
    let cfg = small(&["train.steps=1"]);
    let first = giantstep::run_with(
        &cfg,
        RunOptions {
            keep_weights: true,
            ..Default::default()
        },
    )
    .unwrap();
    let w = first.weights.as_ref().unwrap();
    let resume = giantstep::Resume {
        layer: &w.w,
        steps: &first.steps,
    };
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            resume: Some(resume),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.key(), Some("train.steps"), "{e}");
    let mut renumbered = first.steps.clone();
    renumbered[0].t = 2;
    let resume = giantstep::Resume {
        layer: &w.w,
        steps: &renumbered,
    };
    let cfg = small(&["train.steps=2"]);
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            resume: Some(resume),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("step 2 at position 1"), "{e}");
}

/// The weights a run returns start a second run that equals the first bit for bit; a different
/// first layer changes the result.
#[test]
fn given_weights_reproduce_a_run() {
    let cfg = small(&[]);
    let first = giantstep::run_with(
        &cfg,
        RunOptions {
            keep_weights: true,
            ..Default::default()
        },
    )
    .unwrap();
    let w = first.weights.clone().unwrap();
    assert_eq!(
        (w.w0.len(), w.w.len(), w.a.len(), w.w_star.len()),
        (12 * 24, 12 * 24, 12, 2 * 24)
    );
    assert_eq!(w.readout.len(), 12);
    assert_eq!(w.rf_readout.as_ref().map(Vec::len), Some(12));
    let again = giantstep::run_with(
        &cfg,
        RunOptions {
            first_layer: Some(&w.w0),
            second_layer: Some(&w.a),
            teacher: Some(&w.w_star),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(json_without_time(&again), json_without_time(&first));
    let mut other = w.w0.clone();
    other.iter_mut().for_each(|v| *v *= -1.0);
    let changed = giantstep::run_with(
        &cfg,
        RunOptions {
            first_layer: Some(&other),
            ..Default::default()
        },
    )
    .unwrap();
    assert_ne!(changed.test_error, first.test_error);
    // Shapes, finiteness and orthonormality are checked, naming the input.
    let bad: &[(RunOptions, (&str, &str, &str))] = &[
        (
            RunOptions {
                first_layer: Some(&w.a),
                ..Default::default()
            },
            ("the first layer W0", "have shape (12, 24)", "has 12 entries"),
        ),
        (
            RunOptions {
                second_layer: Some(&[f64::NAN; 12]),
                ..Default::default()
            },
            ("the second layer a", "be finite", "entry 0 is NaN"),
        ),
        (
            RunOptions {
                teacher: Some(&w.w0[..48]),
                ..Default::default()
            },
            ("the teacher W_star", "have orthonormal rows", "<row 0, row 0>"),
        ),
    ];
    for (options, want) in bad {
        let options = RunOptions {
            first_layer: options.first_layer,
            second_layer: options.second_layer,
            teacher: options.teacher,
            ..Default::default()
        };
        let e = giantstep::run_with(&cfg, options).unwrap_err();
        let (w, x, a) = want;
        assert!(
            matches!(&e, giantstep::Error::Array { what, expected, actual }
                if what == w && expected.starts_with(x) && actual.starts_with(a)),
            "{e:?}"
        );
    }
}

/// A target function equal to the expression gives the same numbers; its errors stop the run.
#[test]
fn custom_target_equals_the_expression() {
    let cfg = small(&["target.expr=z1 + z1*z2", "threads=2"]);
    let expr = giantstep::run(&cfg).unwrap();
    let f = |x: &[f64], y: &mut [f64]| {
        for (yi, row) in y.iter_mut().zip(x.chunks(2)) {
            *yi = row[0] + row[0] * row[1];
        }
        Ok(())
    };
    let custom = giantstep::CustomTarget {
        name: "<rust: staircase>".into(),
        f: std::sync::Arc::new(f),
    };
    let got = giantstep::run_with(
        &cfg,
        RunOptions {
            target: Some(custom),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(got.test_error, expr.test_error);
    assert_eq!(got.rf_test_error, expr.rf_test_error);
    assert_eq!(got.steps, expr.steps);
    assert_eq!(got.config.target.expr.as_deref(), Some("<rust: staircase>"));
    assert!(got.theory.is_none() && got.theory_note.unwrap().contains("given at run time"));
    let failing = giantstep::CustomTarget {
        name: "bad".into(),
        f: std::sync::Arc::new(|_: &[f64], _: &mut [f64]| Err("boom".to_string())),
    };
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            target: Some(failing),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "the target function failed: bad: boom");
}

/// The stability check also covers a target function: above the limit the run warns as the
/// expression's theory does (the same first-step and later γ), below it stays silent.
#[test]
fn custom_target_gets_the_stability_check() {
    let text = giantstep::target::preset_expr("stairway-he124").unwrap();
    let expr = giantstep::expr::Expr::parse(text).unwrap();
    let r = expr.max_var();
    let custom = || {
        let e = expr.clone();
        giantstep::CustomTarget {
            name: "<rust: he124>".into(),
            f: std::sync::Arc::new(move |x: &[f64], y: &mut [f64]| {
                for (yi, row) in y.iter_mut().zip(x.chunks(r)) {
                    *yi = e.eval(row);
                }
                Ok(())
            }),
        }
    };
    // γ = η/p = 11.3 (ReLU, ±1 second layer: stable up to γ ≈ 8) and γ = 5.
    for (eta, unstable) in [("180.8", true), ("80", false)] {
        let cfg = small(&["target.preset=\"stairway-he124\"", "network.p=16", "train.n=\"d^1.5\""]);
        let mut c = cfg.into_config();
        c.train.eta = Some(eta.parse().unwrap());
        let cfg = c.resolve().unwrap();
        let by_expr = giantstep::run(&cfg).unwrap();
        let expected: Vec<&String> = by_expr
            .theory
            .as_ref()
            .unwrap()
            .warnings
            .iter()
            .filter(|w| w.contains("unstable"))
            .collect();
        let by_fn = giantstep::run_with(
            &cfg,
            RunOptions {
                target: Some(custom()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(expected.len(), usize::from(unstable), "{expected:?}");
        assert_eq!(by_fn.warnings.len(), usize::from(unstable), "{:?}", by_fn.warnings);
        if unstable {
            // The same γ and the same limit to the digits shown (the grids differ).
            let head = |w: &str| w.split(" (stable up to").next().unwrap().to_string();
            assert_eq!(head(&by_fn.warnings[0]), head(expected[0]));
        }
    }
}

/// A first layer too large for double precision is named as an overflow, not as a ridge
/// parameter to raise (λ = 1 here).
#[test]
fn overflowing_first_layer_is_named() {
    let cfg = small(&["train.steps=1", "train.eta=0"]);
    let (p, d) = (cfg.network.p, cfg.network.d);
    let w0 = vec![1e150; p * d];
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            first_layer: Some(&w0),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("overflow"), "{e}");
    assert!(!e.to_string().contains("use lambda > 0"), "{e}");
}

/// An activation given as a function that computes what the built-in one does (tanh and its
/// derivative) gives the same run bit for bit, in both precisions; the theory is skipped with a
/// note, and a failing or non-finite function stops the run naming it.
#[test]
fn custom_activation_equals_the_built_in() {
    use giantstep::activation::CustomActivation;
    let tanh = || {
        CustomActivation::new(
            "<rust: tanh>",
            std::sync::Arc::new(|h: &[f64], s: &mut [f64], ds: Option<&mut [f64]>| {
                for (x, y) in h.iter().zip(s.iter_mut()) {
                    *y = x.tanh();
                }
                if let Some(ds) = ds {
                    for (x, y) in h.iter().zip(ds.iter_mut()) {
                        let t = x.tanh();
                        *y = 1.0 - t * t;
                    }
                }
                Ok(())
            }),
        )
    };
    for precision in ["f64", "f32"] {
        let cfg = small(&[
            "network.activation=\"tanh\"",
            &format!("precision=\"{precision}\""),
            "threads=2",
        ]);
        let want = giantstep::run(&cfg).unwrap();
        let got = giantstep::run_with(
            &cfg,
            RunOptions {
                activation: Some(tanh()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(got.steps, want.steps, "{precision}");
        assert_eq!(got.test_error, want.test_error, "{precision}");
        assert_eq!(got.rf_test_error, want.rf_test_error, "{precision}");
        assert!(got.theory.is_none() && got.theory_note.as_deref().unwrap().contains("<rust: tanh>"));
    }
    let cfg = small(&[]);
    let bad = CustomActivation::new(
        "<rust: nan>",
        std::sync::Arc::new(|_: &[f64], s: &mut [f64], _: Option<&mut [f64]>| {
            s.fill(f64::NAN);
            Ok(())
        }),
    );
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            activation: Some(bad),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("<rust: nan>") && e.to_string().contains("non-finite"),
        "{e}"
    );
}

/// A set cancel flag stops the run before its first chunk is done.
#[test]
fn cancel_flag_stops_a_run() {
    let cfg = small(&[]);
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let e = giantstep::run_with(
        &cfg,
        RunOptions {
            cancel: Some(flag),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, giantstep::Error::Cancelled), "{e}");
}

/// Runs that differ only in the learning rate share one random-features baseline: the second
/// run reuses the first's, and every number equals an unshared run bit for bit. Different
/// readout batches, or weights given by the caller, are not shared.
#[test]
fn baselines_are_shared_across_learning_rates_and_equal_recomputed_ones() {
    use giantstep::BaselineCache;
    use std::sync::Arc;
    let shared = |cfg: &giantstep::ValidConfig, cache: &Arc<BaselineCache>| {
        let options = RunOptions {
            baselines: Some(cache.clone()),
            ..Default::default()
        };
        giantstep::run_with(cfg, options).unwrap()
    };
    let same = |a: &RunResult, b: &RunResult| {
        assert_eq!(a.test_error.to_bits(), b.test_error.to_bits());
        assert_eq!(a.train_error.to_bits(), b.train_error.to_bits());
        assert_eq!(a.rf_test_error.unwrap().to_bits(), b.rf_test_error.unwrap().to_bits());
        assert_eq!(a.rf_train_error.unwrap().to_bits(), b.rf_train_error.unwrap().to_bits());
    };
    for batch in ["fresh", "last"] {
        let cache = Arc::new(BaselineCache::new());
        let b = format!("readout.batch={batch}");
        let runs: Vec<RunResult> = ["train.eta0=0.5", "train.eta0=2", "train.eta0=2"]
            .iter()
            .map(|eta| shared(&small(&[&b, eta]), &cache))
            .collect();
        // One baseline for the three learning rates.
        assert_eq!(cache.len(), 1, "{batch}");
        for (r, eta) in runs.iter().zip(["train.eta0=0.5", "train.eta0=2", "train.eta0=2"]) {
            same(r, &giantstep::run(&small(&[&b, eta])).unwrap());
        }
        assert_ne!(runs[0].test_error, runs[1].test_error, "the trained layers differ");
        // Another number of steps reads out another batch when the readout uses the last one.
        shared(&small(&[&b, "train.steps=3"]), &cache);
        assert_eq!(cache.len(), if batch == "last" { 2 } else { 1 }, "{batch}");
        // Another seed is another baseline.
        shared(&small(&[&b, "seed=5"]), &cache);
        assert_eq!(cache.len(), if batch == "last" { 3 } else { 2 }, "{batch}");
    }
    // A run given its own first layer does not use or fill the cache.
    let cfg = small(&[]);
    let w0 = vec![0.1; cfg.network.p * cfg.network.d];
    let cache = Arc::new(BaselineCache::new());
    let options = RunOptions {
        first_layer: Some(&w0),
        baselines: Some(cache.clone()),
        ..Default::default()
    };
    giantstep::run_with(&cfg, options).unwrap();
    assert!(cache.is_empty());
}

/// The two stream versions of the samples give the same simulation in distribution: over 16
/// seeds each (staircase2, d = 64, p = 64, n = d^1.5, two steps), the seed means of the test
/// error, of random features' and of the step-1 overlap with `w*1` agree within 4 standard
/// errors of their difference; and the versions do draw different samples.
#[test]
fn stream_versions_agree_in_distribution() {
    let stats = |stream: &str| -> Vec<[f64; 3]> {
        (0..16)
            .map(|seed| {
                let r = simulate(&[
                    &format!("stream={stream}"),
                    &format!("seed={seed}"),
                    "target.preset=staircase2",
                    "network.d=64",
                    "network.p=64",
                    "train.n=d^1.5",
                    "train.steps=2",
                    "eval.n_test=4000",
                    "eval.theory=false",
                ]);
                [
                    r.test_error,
                    r.rf_test_error.unwrap(),
                    r.steps[0].overlaps.mean_abs_cos[0],
                ]
            })
            .collect()
    };
    let (a, b) = (stats("1"), stats("2"));
    let mut differ = false;
    for k in 0..3 {
        let mean = |v: &[[f64; 3]]| v.iter().map(|x| x[k]).sum::<f64>() / v.len() as f64;
        let var = |v: &[[f64; 3]], m: f64| v.iter().map(|x| (x[k] - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
        let (ma, mb) = (mean(&a), mean(&b));
        let se = ((var(&a, ma) + var(&b, mb)) / a.len() as f64).sqrt();
        assert!(
            (ma - mb).abs() < 4.0 * se,
            "statistic {k}: version 1 {ma} vs version 2 {mb} (se {se})"
        );
        differ |= a.iter().zip(&b).any(|(x, y)| x[k] != y[k]);
    }
    assert!(differ, "the two versions gave the same numbers");
}
