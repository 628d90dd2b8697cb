//! Record files as tables: the curves and panels behind each figure (drawn by `plot`) and their
//! markdown (written by `reproduce` into summary.md). One place turns records into numbers.

use crate::theory_cmd::vec3 as fmt_vec;
use anyhow::{bail, Context};
use giantstep::sweep::Record;
use std::collections::BTreeMap;
use std::fmt::Write;

/// The preset's name, else the expression.
pub(crate) fn target_name(c: &giantstep::Config) -> &str {
    c.target
        .preset
        .as_deref()
        .unwrap_or(c.target.expr.as_deref().unwrap_or(""))
}

/// Mean and sample standard deviation (0 for a single value).
pub(crate) fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Curves of the stairway figure: per number of steps, (κ, mean, std) points.
#[derive(Debug, Default)]
pub struct StairwayData {
    /// Steps → κ (as an ordered key) → test errors over seeds.
    pub trained: BTreeMap<usize, BTreeMap<i64, Vec<f64>>>,
    /// κ → random-features test errors.
    pub rf: BTreeMap<i64, Vec<f64>>,
    /// The linear-kernel error, if the records carry the theory.
    pub linear_kernel: Option<f64>,
    /// Label second moment (mean over records).
    pub second_moment: f64,
    /// Title.
    pub title: String,
    /// The theory's predicted curves (docs/theory.md §6): steps → κ → test error, and random
    /// features; empty when the theory does not cover the records.
    pub predicted: BTreeMap<usize, BTreeMap<i64, f64>>,
    /// Predicted random-features error per κ.
    pub predicted_rf: BTreeMap<i64, f64>,
    /// Why there is no prediction, if there is none.
    pub predicted_note: Option<String>,
}

/// κ rounded to 1e-6 as an integer key.
pub(crate) fn kappa_key(n: usize, d: usize) -> i64 {
    ((n as f64).ln() / (d as f64).ln() * 1e6).round() as i64
}

pub(crate) fn ok_records(records: &[Record]) -> Vec<&giantstep::RunResult> {
    records.iter().filter_map(|r| r.result.as_ref()).collect()
}

/// Collects the stairway curves.
pub fn stairway_data(records: &[Record]) -> anyhow::Result<StairwayData> {
    let results = ok_records(records);
    if results.is_empty() {
        bail!("no finished points in the records");
    }
    let mut data = StairwayData::default();
    let mut y2 = Vec::new();
    for r in &results {
        let d = r.config.network.d;
        let n = r.steps[0].n;
        let k = kappa_key(n, d);
        data.trained
            .entry(r.steps.len())
            .or_default()
            .entry(k)
            .or_default()
            .push(r.test_error);
        // Every batch size gets an entry; it stays empty when the baseline was skipped.
        let rf = data.rf.entry(k).or_default();
        if let Some(v) = r.rf_test_error {
            rf.push(v);
        }
        y2.push(r.test_label_second_moment);
        if data.linear_kernel.is_none() {
            data.linear_kernel = r.theory.as_ref().map(|t| t.linear_kernel_error);
        }
    }
    data.second_moment = mean_std(&y2).0;
    attach_prediction(&mut data, &results);
    let c = &results[0].config;
    data.title = format!(
        "{} — {}, d = {}, p = {}",
        target_name(c),
        c.network.activation,
        c.network.d,
        c.network.p
    );
    Ok(data)
}

/// The theory's stairway for the records' configuration (their first record's, with every batch
/// size, the largest T and every seed of the records), computed once per process.
fn attach_prediction(data: &mut StairwayData, results: &[&giantstep::RunResult]) {
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<std::collections::HashMap<String, Result<giantstep::prediction::Curve, String>>>> =
        OnceLock::new();
    let base = results[0].config.clone();
    let d = base.network.d;
    let mut kappas: Vec<f64> = Vec::new();
    let mut seeds: Vec<u64> = Vec::new();
    let mut steps = 1;
    for r in results {
        let k = crate::theory_cmd::kappa_of_size(&r.config.train.n, d).unwrap_or(f64::NAN);
        if k.is_finite() && !kappas.iter().any(|v| (v - k).abs() < 1e-9) {
            kappas.push(k);
        }
        if !seeds.contains(&r.config.seed) {
            seeds.push(r.config.seed);
        }
        steps = steps.max(r.steps.len());
    }
    kappas.sort_by(f64::total_cmp);
    seeds.sort_unstable();
    let key = serde_json::json!([base, kappas, steps, seeds]).to_string();
    let cache = CACHE.get_or_init(Default::default);
    let cached = cache.lock().ok().and_then(|c| c.get(&key).cloned());
    let curve = cached.unwrap_or_else(|| {
        let c = giantstep::prediction::curve(&base, &kappas, steps, &seeds).map_err(|e| e.to_string());
        if let Ok(mut m) = cache.lock() {
            m.insert(key, c.clone());
        }
        c
    });
    match curve {
        Ok(c) => {
            for (j, &n) in c.n.iter().enumerate() {
                let k = kappa_key(n, d);
                for (t, row) in c.test_error.iter().enumerate() {
                    if let Some(v) = row[j] {
                        data.predicted.entry(t + 1).or_default().insert(k, v);
                    }
                }
                if let Some(v) = c.rf_test_error[j] {
                    data.predicted_rf.insert(k, v);
                }
            }
        }
        Err(e) => data.predicted_note = Some(e),
    }
}

/// One panel of the cosines figure.
pub struct CosinePanel {
    /// Step.
    pub step: usize,
    /// (cos with w*1, cos with w*2) per neuron.
    pub points: Vec<(f64, f64)>,
    /// (cos of G⊥ with w*1, w*2) per neuron.
    pub perp: Vec<(f64, f64)>,
}

/// Collects the cosine scatter of the record with the most steps (seed 0 if several).
pub fn cosine_data(records: &[Record]) -> anyhow::Result<(Vec<CosinePanel>, Option<Vec<f64>>, String)> {
    let results = ok_records(records);
    let r = results
        .iter()
        .max_by_key(|r| (r.steps.len(), std::cmp::Reverse(r.config.seed)))
        .context("no finished points in the records")?;
    if r.r < 2 {
        bail!(
            "the cosines figure needs r >= 2 teacher directions, but the target has r = {}",
            r.r
        );
    }
    let panels = r
        .steps
        .iter()
        .map(|s| CosinePanel {
            step: s.t,
            points: s.gradient.grad_cos.iter().map(|c| (c[0], c[1])).collect(),
            perp: s.gradient.grad_perp_cos.iter().map(|c| (c[0], c[1])).collect(),
        })
        .collect();
    let mu1 = r.theory.as_ref().map(|t| t.mu1.clone());
    let c = &r.config;
    let title = format!(
        "gradient cosines — {}, {}, d = {}, n = {}",
        target_name(c),
        c.network.activation,
        c.network.d,
        r.steps[0].n
    );
    Ok((panels, mu1, title))
}

/// One panel of the overlaps figure (one activation).
pub struct OverlapPanel {
    /// Activation.
    pub activation: String,
    /// Per direction, per step: measured (mean, std) over seeds.
    pub measured: Vec<Vec<(f64, f64)>>,
    /// Per direction, per step: predicted.
    pub predicted: Option<Vec<Vec<f64>>>,
    /// Random level.
    pub random_level: f64,
}

/// Collects the overlaps per activation.
pub fn overlap_data(records: &[Record]) -> anyhow::Result<Vec<OverlapPanel>> {
    let results = ok_records(records);
    if results.is_empty() {
        bail!("no finished points in the records");
    }
    // One panel per experiment: activation, and target, d and n when the records hold several.
    let distinct = |f: &dyn Fn(&giantstep::RunResult) -> String| {
        results
            .iter()
            .map(|r| f(r))
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            > 1
    };
    let expr_of = |r: &giantstep::RunResult| r.config.target.expr.clone().unwrap_or_default();
    let (many_targets, many_d, many_n) = (
        distinct(&|r| format!("{} {}", expr_of(r), r.r)),
        distinct(&|r| r.config.network.d.to_string()),
        distinct(&|r| r.steps[0].n.to_string()),
    );
    let mut groups: BTreeMap<String, Vec<&giantstep::RunResult>> = BTreeMap::new();
    for r in results {
        let mut label = r.config.network.activation.to_string();
        if many_targets {
            label += &format!(", {}", expr_of(r));
        }
        if many_d {
            label += &format!(", d = {}", r.config.network.d);
        }
        if many_n {
            label += &format!(", n = {}", r.steps[0].n);
        }
        groups.entry(label).or_default().push(r);
    }
    let mut panels = Vec::new();
    for (act, rs) in groups {
        let steps = rs.iter().map(|r| r.steps.len()).max().unwrap_or(0);
        let rs: Vec<_> = rs.into_iter().filter(|r| r.steps.len() == steps).collect();
        let rr = rs[0].r;
        let measured = (0..rr)
            .map(|k| {
                (0..steps)
                    .map(|t| {
                        mean_std(
                            &rs.iter()
                                .map(|r| r.steps[t].overlaps.mean_abs_cos[k])
                                .collect::<Vec<_>>(),
                        )
                    })
                    .collect()
            })
            .collect();
        let predicted = rs[0].theory.as_ref().map(|th| {
            (0..rr)
                .map(|k| th.predicted_mean_abs_cos.iter().map(|p| p[k]).collect())
                .collect()
        });
        panels.push(OverlapPanel {
            activation: act,
            measured,
            predicted,
            random_level: rs[0].random_level,
        });
    }
    Ok(panels)
}

/// The stairway table: test error (mean ± std over seeds) per log n / log d and number of steps,
/// with the random-features column and the theory's linear-kernel line.
pub fn stairway_markdown(data: &StairwayData) -> String {
    let mut s = String::new();
    let steps: Vec<usize> = data.trained.keys().copied().collect();
    let _ = write!(s, "| log n / log d |");
    for t in &steps {
        let _ = write!(s, " T = {t} | theory |");
    }
    let _ = writeln!(s, " random features | theory |");
    let _ = writeln!(s, "|---|{}---|---|", "---|---|".repeat(steps.len()));
    let theory = |v: Option<&f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    for (k, rf) in &data.rf {
        let _ = write!(s, "| {:.2} |", *k as f64 / 1e6);
        for t in &steps {
            match data.trained[t].get(k) {
                Some(v) => {
                    let (m, sd) = mean_std(v);
                    let _ = write!(s, " {m:.4} ± {sd:.4} |");
                }
                None => {
                    let _ = write!(s, " - |");
                }
            }
            let _ = write!(s, " {} |", theory(data.predicted.get(t).and_then(|c| c.get(k))));
        }
        if rf.is_empty() {
            let _ = write!(s, " skipped |");
        } else {
            let (m, sd) = mean_std(rf);
            let _ = write!(s, " {m:.4} ± {sd:.4} |");
        }
        let _ = writeln!(s, " {} |", theory(data.predicted_rf.get(k)));
    }
    let _ = writeln!(
        s,
        "\nTest error, mean ± std over seeds. E[y²] on the test sets: {:.4}.",
        data.second_moment
    );
    if let Some(lk) = data.linear_kernel {
        let _ = writeln!(s, "Theory: linear-kernel error {lk:.4} (E[g²] − μ0² − |μ1|²).");
    }
    match &data.predicted_note {
        Some(why) => {
            let _ = writeln!(s, "No predicted curve: {why}.");
        }
        None => {
            let _ = writeln!(
                s,
                "\"theory\": the predicted test error of the state evolution of all neurons and the ridge readout (docs/theory.md §6), averaged over the records' seeds; \"-\" below log n / log d = {} where it is not reported.",
                giantstep::prediction::KAPPA_MIN
            );
        }
    }
    s
}

/// The cosines table of the record with the most steps: measured and predicted mean |cos| per
/// step, and the fraction of gradient rows within 10° of the μ1 line.
pub fn cosine_markdown(records: &[Record]) -> anyhow::Result<String> {
    let mut s = String::new();
    let results = ok_records(records);
    let r = results
        .iter()
        .max_by_key(|r| r.steps.len())
        .ok_or_else(|| anyhow::anyhow!("no finished points"))?;
    if r.r < 2 {
        bail!(
            "the cosines table needs r >= 2 teacher directions, but the target has r = {}",
            r.r
        );
    }
    let th = r.theory.as_ref();
    let _ = writeln!(
        s,
        "| step | measured mean abs cos | predicted (theory) | fraction of G_i within 10° of the mu1 line |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    let line = th.map(|t| t.mu1.clone());
    for (t, st) in r.steps.iter().enumerate() {
        let pred = th
            .and_then(|t2| t2.predicted_mean_abs_cos.get(t))
            .map(|p| fmt_vec(p))
            .unwrap_or_else(|| "-".into());
        let frac = line.as_ref().map_or("-".to_string(), |m| {
            let n = (m[0] * m[0] + m[1] * m[1]).sqrt();
            let on: usize = st
                .gradient
                .grad_cos
                .iter()
                .filter(|c| {
                    let cn = (c[0] * c[0] + c[1] * c[1]).sqrt();
                    cn > 0.0
                        && ((c[0] * m[0] + c[1] * m[1]).abs() / (cn * n))
                            .min(1.0)
                            .acos()
                            .to_degrees()
                            < 10.0
                })
                .count();
            format!("{:.2}", on as f64 / st.gradient.grad_cos.len().max(1) as f64)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            st.t,
            fmt_vec(&st.overlaps.mean_abs_cos),
            pred,
            frac
        );
    }
    if let Some(m) = line {
        let _ = writeln!(
            s,
            "\nTheory line: mu1 = {} (slope {:.4}).",
            fmt_vec(&m),
            m[1] / m[0] + 0.0
        );
    }
    Ok(s)
}

/// The overlaps tables, one per panel, and the blocked directions the theory names.
pub fn overlap_markdown(records: &[Record]) -> anyhow::Result<String> {
    let mut s = String::new();
    let results = ok_records(records);
    let panels = overlap_data(records)?;
    for p in &panels {
        let _ = writeln!(s, "## activation {}\n", p.activation);
        let _ = writeln!(s, "| step | direction | measured mean abs cos (± std) | predicted |");
        let _ = writeln!(s, "|---|---|---|---|");
        let steps = p.measured.first().map_or(0, |m| m.len());
        for t in 0..steps {
            for (k, m) in p.measured.iter().enumerate() {
                let pred = p
                    .predicted
                    .as_ref()
                    .and_then(|pr| pr[k].get(t))
                    .map_or("-".to_string(), |v| format!("{v:.4}"));
                let _ = writeln!(
                    s,
                    "| {} | w*{} | {:.4} ± {:.4} | {} |",
                    t + 1,
                    k + 1,
                    m[t].0,
                    m[t].1,
                    pred
                );
            }
        }
        let _ = writeln!(s, "\nRandom level sqrt(2/(pi d)) = {:.4}.\n", p.random_level);
    }
    let mut seen = std::collections::BTreeSet::new();
    for r in &results {
        if let Some(t) = &r.theory {
            for b in &t.blocked {
                if seen.insert((r.config.network.activation.to_string(), b.clone())) {
                    let _ = writeln!(s, "- {}: {b}", r.config.network.activation);
                }
            }
        }
    }
    Ok(s)
}
