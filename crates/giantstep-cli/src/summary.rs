//! The human-readable report of `giantstep run`.

use giantstep::RunResult;
use std::fmt::Write;

/// A direction counts as learned in the summary when its mean |cos| exceeds this many times the
/// random level sqrt(2/(π d)) (a display heuristic; the JSON has the numbers).
const LEARNED_FACTOR: f64 = 3.0;
/// At most this many teacher directions get a column.
const MAX_COLUMNS: usize = 6;

/// The configuration spelling of an option (`"random"`, `"hypercube"`, ...).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

pub fn render(res: &RunResult) -> String {
    let mut s = String::new();
    setup(&mut s, res);
    steps_table(&mut s, res);
    learned(&mut s, res);
    readout(&mut s, res);
    theory(&mut s, res);
    let _ = writeln!(s, "elapsed {:.2} s on {} thread(s)", res.elapsed_s, res.config.threads);
    s
}

/// The target, the network and the training protocol.
fn setup(s: &mut String, res: &RunResult) {
    let c = &res.config;
    let expr = c.target.expr.as_deref().unwrap_or("?");
    let preset = c
        .target
        .preset
        .as_deref()
        .map(|p| format!(" [{p}]"))
        .unwrap_or_default();
    let d = c.network.d as f64;
    let _ = writeln!(
        s,
        "target  y = {expr}{preset}   (r = {}, {} teacher{})",
        res.r,
        name(&c.target.teacher),
        if c.target.noise > 0.0 {
            format!(", noise {}", c.target.noise)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        s,
        "network d = {}, p = {}, activation {}, {} rows, {} second layer{}",
        c.network.d,
        c.network.p,
        c.network.activation,
        name(&c.network.first_layer),
        name(&c.network.second_layer),
        if c.network.symmetric { ", symmetric" } else { "" }
    );
    if let Some(st) = res.steps.first() {
        let _ = writeln!(
            s,
            "train   {} step(s), n = {} = {:.2} d = d^{:.2}, eta = {:.4} = {:.3} p, {} loss, preprocess {}, normalize {}",
            res.steps.len(),
            st.n,
            st.n as f64 / d,
            (st.n as f64).ln() / d.ln(),
            st.eta,
            st.eta / c.network.p as f64,
            name(&c.train.loss),
            match c.train.preprocess_from {
                Some(k) if k > 1 && c.train.preprocess != giantstep::config::Preprocess::None => {
                    format!("{} from step {k}", name(&c.train.preprocess))
                }
                _ => name(&c.train.preprocess).to_string(),
            },
            name(&c.train.normalize),
        );
    }
    if res.steps.iter().any(|st| st.eta != res.steps[0].eta) {
        let gammas: Vec<String> = res
            .steps
            .iter()
            .map(|st| format!("{:.3}", st.eta / c.network.p as f64))
            .collect();
        let _ = writeln!(s, "        eta/p per step: {}", gammas.join(", "));
    }
}

/// Overlaps and gradient geometry per step, with the theory's prediction under each.
fn steps_table(s: &mut String, res: &RunResult) {
    let cols = res.r.min(MAX_COLUMNS);
    let _ = writeln!(s);
    let mut header = format!("{:>4} {:>10}", "step", "batch mse");
    for k in 0..cols {
        header += &format!(" {:>9}", format!("|cos|w*{}", k + 1));
    }
    header += &format!(" {:>10} {:>9} {:>10}", "top S eig", "outside", "G s1/s2");
    let _ = writeln!(s, "{header}");
    let mut row = format!("{:>4} {:>10}", 0, "-");
    for k in 0..cols {
        row += &format!(" {:>9.4}", res.initial.mean_abs_cos[k]);
    }
    row += &format!(
        " {:>10.4} {:>9.4} {:>10}",
        res.initial.teacher_gram_eigenvalues[0], res.initial.outside_mass, "-"
    );
    let _ = writeln!(s, "{row}");
    for st in &res.steps {
        let mut row = format!("{:>4} {:>10.4}", st.t, st.batch_mse);
        for k in 0..cols {
            row += &format!(" {:>9.4}", st.overlaps.mean_abs_cos[k]);
        }
        let sv = &st.gradient.grad_singular_values;
        let ratio = if sv.len() > 1 && sv[1] > 0.0 {
            format!("{:.1}", sv[0] / sv[1])
        } else {
            "-".into()
        };
        row += &format!(
            " {:>10.4} {:>9.4} {:>10}",
            st.overlaps.teacher_gram_eigenvalues[0], st.overlaps.outside_mass, ratio
        );
        let _ = writeln!(s, "{row}");
        if let Some(pred) = res.theory.as_ref().and_then(|t| t.predicted_mean_abs_cos.get(st.t - 1)) {
            let mut row = format!("{:>4} {:>10}", "", "theory");
            for v in pred.iter().take(cols) {
                row += &format!(" {:>9.4}", v);
            }
            let _ = writeln!(s, "{row}");
        }
    }
    if res.r > cols {
        let _ = writeln!(s, "({} more teacher directions in --json)", res.r - cols);
    }
}

/// Per-step test errors and which directions were learned.
fn learned(s: &mut String, res: &RunResult) {
    if res.steps.iter().any(|st| st.test_error.is_some()) {
        let errs: Vec<String> = res
            .steps
            .iter()
            .filter_map(|st| st.test_error.map(|e| format!("T={} {e:.4}", st.t)))
            .collect();
        let _ = writeln!(s, "test error after each step (eval.every_step): {}", errs.join(", "));
    }
    let _ = writeln!(
        s,
        "mean |cos| of a random row with a fixed direction: sqrt(2/(pi d)) = {:.4}",
        res.random_level
    );
    if let Some(last) = res.steps.last() {
        let (mut learned, mut not) = (vec![], vec![]);
        for (k, v) in last.overlaps.mean_abs_cos.iter().enumerate() {
            let ratio = v / res.random_level;
            if ratio > LEARNED_FACTOR {
                learned.push(format!("w*{} ({:.2}, {:.0}x random)", k + 1, v, ratio));
            } else {
                not.push(format!("w*{}", k + 1));
            }
        }
        let _ = writeln!(
            s,
            "learned after {} step(s): {}{}",
            res.steps.len(),
            if learned.is_empty() {
                "nothing".to_string()
            } else {
                learned.join(", ")
            },
            if !not.is_empty() {
                format!("; at the random level: {}", not.join(", "))
            } else {
                String::new()
            }
        );
    }
}

/// The readout and the test errors next to the baselines.
fn readout(s: &mut String, res: &RunResult) {
    let c = &res.config;
    let _ = writeln!(s);
    let rn = match c.readout.batch {
        giantstep::config::ReadoutBatch::Last => "the last training batch".to_string(),
        giantstep::config::ReadoutBatch::Fresh => format!("{} fresh samples", readout_n(c)),
    };
    let _ = writeln!(
        s,
        "ridge readout (lambda = {}) on {rn}; test on {} fresh samples",
        c.readout.lambda, c.eval.n_test
    );
    if c.train.readout_preprocess() != giantstep::config::Preprocess::None {
        let how = match c.readout.add_back {
            giantstep::config::AddBack::Empirical => "re-estimated on the readout batch",
            giantstep::config::AddBack::Oracle => "the exact mu0 + <W* mu1, z> (oracle)",
            giantstep::config::AddBack::Test => {
                "re-estimated on the test set from its own labels (the authors' notebook; optimistic)"
            }
        };
        let _ = writeln!(s, "  the part removed by preprocessing is added back: {how}");
    }
    let _ = writeln!(
        s,
        "  trained network   test error {:.4}   train error {:.4}",
        res.test_error, res.train_error
    );
    match (res.rf_test_error, res.rf_train_error) {
        (Some(test), Some(train)) => {
            let _ = writeln!(
                s,
                "  random features   test error {test:.4}   train error {train:.4}   (same readout on the initial W0)"
            );
        }
        _ => {
            let _ = writeln!(s, "  random features   skipped (eval.baseline = false)");
        }
    }
    let _ = writeln!(
        s,
        "  predicting 0      test error {:.4}   (E[y^2] on the test set)",
        res.test_label_second_moment
    );
}

/// The theory's lines: the linear-kernel error, blocked directions, caveats.
fn theory(s: &mut String, res: &RunResult) {
    if let Some(t) = &res.theory {
        let _ = writeln!(
            s,
            "  linear kernel     error {:.4}        (theory: E[g^2] - mu0^2 - |mu1|^2)",
            t.linear_kernel_error
        );
        if let (Some(te), Some(rf)) = (t.test_error, t.rf_test_error) {
            let _ = writeln!(
                s,
                "  predicted         test error {te:.4}   random features {rf:.4}   (theory: state evolution + ridge, docs/theory.md §6)"
            );
        }
        let _ = writeln!(
            s,
            "theory rows: the activation-aware recursion of docs/theory.md §2 at n = {:.2} d",
            res.steps[0].n as f64 / res.config.network.d as f64
        );
        for b in &t.blocked {
            let _ = writeln!(s, "theory: {b}");
        }
        for w in &t.warnings {
            let _ = writeln!(s, "theory note: {w}");
        }
    } else if let Some(note) = &res.theory_note {
        let _ = writeln!(s, "theory: not attached ({note})");
    }
}

/// The readout batch size of a recorded configuration (`?` when it does not resolve).
fn readout_n(c: &giantstep::Config) -> String {
    c.resolve().map_or_else(|_| "?".into(), |v| v.readout_n().to_string())
}
