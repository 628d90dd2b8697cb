//! `giantstep theory`: the predictions of docs/theory.md for a target.

use anyhow::Context;
use clap::Args;
use giantstep::error::Cancel;
use giantstep::prediction::{curve_form_with, Curve, CurveQuery, Form};
use giantstep::theory::{analyze, Query, TheoryReport};
use giantstep::Config;
use std::fmt::Write;

#[derive(Args, Debug)]
pub struct TheoryArgs {
    /// Target: an expression over z1..zr (e.g. "z1 + z1*z2") or a preset name.
    target: String,
    /// Student activation (relu, erf, tanh, he1..he8, linear, shifted relu:0.5).
    #[arg(long, default_value_t = Query::default().activation)]
    activation: String,
    /// Number of steps T.
    #[arg(long, default_value_t = Query::default().steps)]
    steps: usize,
    /// Batch exponent kappa of the generic recursion (n = d^kappa, l = floor(kappa)).
    #[arg(long, default_value_t = Query::default().kappa)]
    kappa: f64,
    /// alpha = n/d of the activation-aware recursion and the one-step closed form.
    #[arg(long, default_value_t = Query::default().alpha)]
    alpha: f64,
    /// Learning-rate prefactor: eta = eta0 · p · (n/d)^eta_exp, so gamma = eta/p = eta0 · alpha^eta_exp.
    #[arg(long, default_value_t = Query::default().eta0)]
    eta0: f64,
    /// Learning-rate exponent.
    #[arg(long, default_value_t = Query::default().eta_exp)]
    eta_exp: f64,
    /// gamma = eta/p directly (overrides eta0 for the n = alpha d predictions).
    #[arg(long)]
    gamma: Option<f64>,
    /// beta = n/d² of the quadratic one-step closed form.
    #[arg(long, default_value_t = Query::default().beta)]
    beta: f64,
    /// Input dimension (for log_d p of the random-features floor).
    #[arg(long, default_value_t = Query::default().d)]
    d: usize,
    /// Width (for log_d p of the random-features floor).
    #[arg(long, default_value_t = Query::default().p)]
    p: usize,
    /// Label preprocessing: none, mean or linear.
    #[arg(long, default_value_t = Query::default().preprocess)]
    preprocess: String,
    /// Row normalization after each step in the activation-aware recursion.
    #[arg(long)]
    normalize: bool,
    /// Correlation loss (e = y) instead of the residual.
    #[arg(long)]
    correlation: bool,
    /// Teacher rank r (default: the largest index used).
    #[arg(long)]
    r: Option<usize>,
    /// Maximal Hermite degree K.
    #[arg(long, default_value_t = Query::default().degree)]
    degree: u32,
    /// gamma of the steps after the first (default: the first step's gamma), for the stability
    /// of repeated steps.
    #[arg(long)]
    gamma_later: Option<f64>,
    /// Second-layer initialization: hypercube, gaussian or uniform (stability of later steps).
    #[arg(long, default_value_t = Query::default().second_layer)]
    second_layer: String,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Predict the stairway instead: test error per number of steps T = 1..steps and batch size
    /// n = d^kappa, and random features (docs/theory.md §6). Uses --d, --p, --activation,
    /// --eta0, --eta-exp, --preprocess, --normalize, --correlation, --second-layer and the flags
    /// below.
    #[arg(long)]
    curve: bool,
    /// Smallest batch exponent of the curve.
    #[arg(long, default_value_t = CurveQuery::default().kappa_from)]
    kappa_from: f64,
    /// Largest batch exponent of the curve.
    #[arg(long, default_value_t = CurveQuery::default().kappa_to)]
    kappa_to: f64,
    /// Step between batch exponents of the curve.
    #[arg(long, default_value_t = CurveQuery::default().kappa_step)]
    kappa_step: f64,
    /// Learning-rate cap of the curve: eta <= eta_max0 · p.
    #[arg(long)]
    eta_max0: Option<f64>,
    /// Per-step learning-rate multipliers of the curve, e.g. "1.0,0.6" (the last repeats).
    #[arg(long)]
    eta_schedule: Option<String>,
    /// Seeds of the curve (the initial layer and the gradient noise), averaged: 0..seeds.
    #[arg(long, default_value_t = CurveQuery::default().seeds)]
    seeds: u64,
    /// Any configuration key of the curve's base configuration (repeatable, applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Take the curve's base configuration, batch sizes, steps and seeds from a sweep plan.
    #[arg(long, value_name = "PLAN.toml", requires = "curve")]
    plan: Option<std::path::PathBuf>,
    /// Form of the curve's state evolution: "finite-p" (the p neurons of the network) or
    /// "mean-field" (a population of --particles neurons, p → ∞; docs/theory.md §6).
    #[arg(long, default_value_t = CurveQuery::default().form, requires = "curve")]
    form: String,
    /// Particles of the mean-field form (at least p are used).
    #[arg(long, default_value_t = CurveQuery::default().particles, requires = "curve")]
    particles: usize,
}

impl TheoryArgs {
    /// The library's question for these flags.
    fn query(&self) -> Query {
        Query {
            target: self.target.clone(),
            activation: self.activation.clone(),
            steps: self.steps,
            kappa: self.kappa,
            alpha: self.alpha,
            eta0: self.eta0,
            eta_exp: self.eta_exp,
            gamma: self.gamma,
            beta: self.beta,
            d: self.d,
            p: self.p,
            preprocess: self.preprocess.clone(),
            normalize: self.normalize,
            correlation: self.correlation,
            r: self.r,
            degree: self.degree,
            gamma_later: self.gamma_later,
            second_layer: self.second_layer.clone(),
        }
    }
}

/// The theory's fields and the flags that set them (one table: the library names the field in
/// [`giantstep::Error::Invalid`], the command line names the flag).
const FLAGS: &[(&str, &str)] = &[
    ("activation", "--activation"),
    ("r", "--r"),
    ("kappa", "--kappa"),
    ("steps", "--steps"),
    ("degree", "--degree"),
    ("d", "--d"),
    ("p", "--p"),
    ("alpha", "--alpha"),
    ("beta", "--beta"),
    ("eta0", "--eta0"),
    ("eta_exp", "--eta-exp"),
    ("gamma", "--gamma"),
    ("gamma_later", "--gamma-later"),
    ("preprocess", "--preprocess"),
    ("second_layer", "--second-layer"),
    ("kappa_from", "--kappa-from"),
    ("kappa_to", "--kappa-to"),
    ("kappa_step", "--kappa-step"),
    ("seeds", "--seeds"),
    ("form", "--form"),
    ("particles", "--particles"),
];

/// A library error in the words of the command line: fields become flags.
fn flag_message(e: giantstep::Error) -> anyhow::Error {
    use giantstep::Error;
    match e {
        Error::Invalid { key, expected, actual } => {
            let flag = FLAGS.iter().find(|(k, _)| *k == key).map_or(key.as_str(), |(_, f)| f);
            anyhow::anyhow!("{flag} must be {expected}, but is {actual}")
        }
        Error::RankLimit { limit, r, .. } => {
            anyhow::anyhow!("giantstep theory handles {limit}, but the target has r = {r}")
        }
        other => anyhow::anyhow!("{}", other.to_string().trim_start_matches("invalid configuration: ")),
    }
}

pub fn cmd_theory(args: &TheoryArgs) -> anyhow::Result<()> {
    let out = if args.curve {
        let (base, kappas, steps, seeds) = match &args.plan {
            Some(plan) => curve_from_plan(plan)?,
            None => curve_from_flags(args)?,
        };
        let form = Form::parse(&args.form, args.particles).map_err(flag_message)?;
        let c = curve_form_with(&base, &kappas, steps, &seeds, form, &Cancel::default()).map_err(flag_message)?;
        if args.json {
            let mut j = serde_json::json!({ "config": base, "curve": c });
            if let Form::MeanField { particles } = form {
                j["form"] = serde_json::json!({ "name": form.name(), "particles": particles });
            }
            serde_json::to_string(&j)? + "\n"
        } else {
            render_curve(&base, &c, form)
        }
    } else {
        let (expr, r, opts) = args.query().resolve().map_err(flag_message)?;
        let report = analyze(&expr, r, &opts).context("theory")?;
        if args.json {
            serde_json::to_string(&report)? + "\n"
        } else {
            render(&report)
        }
    };
    out_no_newline!("{out}");
    Ok(())
}

/// `(a, b, c)` with 3 decimals, tiny values printed as 0.
pub(crate) fn vec3(v: &[f64]) -> String {
    format!(
        "({})",
        v.iter()
            .map(|x| format!("{:.3}", if x.abs() < 5e-4 { 0.0 } else { *x }))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn alpha_name(a: &[u32]) -> String {
    let parts: Vec<String> = a
        .iter()
        .enumerate()
        .filter(|(_, &k)| k > 0)
        .map(|(j, &k)| {
            if k == 1 {
                format!("He1(z{})", j + 1)
            } else {
                format!("He{k}(z{})", j + 1)
            }
        })
        .collect();
    if parts.is_empty() {
        "1".into()
    } else {
        parts.join("·")
    }
}

pub fn render(t: &TheoryReport) -> String {
    let mut s = String::new();
    expansion(&mut s, t);
    learnable(&mut s, t);
    closed_forms(&mut s, t);
    floors(&mut s, t);
    s
}

/// The target's and the activation's Hermite coefficients.
fn expansion(s: &mut String, t: &TheoryReport) {
    let _ = writeln!(s, "target  g*(x) = {}   (r = {})", t.expr, t.r);
    let _ = writeln!(
        s,
        "        E[g] = {:.5}   E[g^2] = {:.5}   mu1 = {}",
        t.mean,
        t.second_moment,
        vec3(&t.mu1)
    );
    let _ = writeln!(
        s,
        "        computed by {}",
        match &t.quadrature {
            giantstep::theory::hermite::Method::Quadrature { nodes, points } =>
                format!("Gauss-Hermite quadrature ({nodes} nodes per axis, {points} points)"),
            giantstep::theory::hermite::Method::MonteCarlo { samples } =>
                format!("Monte Carlo ({samples} samples; grid too large)"),
        }
    );
    let _ = writeln!(s, "Hermite coefficients c_a = E[g He_a] (nonzero, |a| <= K):");
    for c in t.hermite.iter().take(24) {
        let se = if c.std_error > 0.0 {
            format!(" ± {:.1e}", c.std_error)
        } else {
            String::new()
        };
        let _ = writeln!(s, "  {:<28} {:>10.5}{se}", alpha_name(&c.alpha), c.c);
    }
    if t.hermite.len() > 24 {
        let _ = writeln!(s, "  ... {} more in --json", t.hermite.len() - 24);
    }
    let a = &t.activation;
    let _ = writeln!(
        s,
        "activation {}: c_k = {}   E[s'^2] = {:.4}",
        a.activation,
        a.c.iter()
            .enumerate()
            .map(|(k, v)| format!("c{k} {v:.4}"))
            .collect::<Vec<_>>()
            .join(", "),
        a.e_dsigma2
    );
}

/// Leap indices, the generic and the activation-aware subspaces, blocked directions.
fn learnable(s: &mut String, t: &TheoryReport) {
    let a = &t.activation;
    let leap = |l: Option<u32>| l.map_or("> K".to_string(), |v| v.to_string());
    let _ = writeln!(
        s,
        "\nleap index {} (raw {}, after linear preprocessing {}); staircase: {}",
        leap(t.leap_index),
        leap(t.leap_index_raw),
        leap(t.leap_index_linear),
        if t.staircase { "yes" } else { "no" }
    );
    let _ = writeln!(
        s,
        "generic subspaces at n = d^{} (l = {}), preprocess {:?}:",
        t.kappa, t.ell, t.preprocess
    );
    for u in &t.generic_subspaces {
        let _ = writeln!(
            s,
            "  step {}: dim {}  {}",
            u.step,
            u.dim,
            u.basis.iter().map(|b| vec3(b)).collect::<Vec<_>>().join(" ")
        );
    }
    let _ = writeln!(
        s,
        "effective leap index with {}: {}",
        a.activation,
        leap(t.effective_leap_index)
    );
    if t.kappa < 2.0 {
        let _ = writeln!(
            s,
            "activation-aware prediction at n = {} d, eta/p = {}:",
            t.alpha, t.gamma
        );
    } else {
        let _ = writeln!(
            s,
            "activation-aware prediction at n = d^{} (step 1; later steps by the generic rule):",
            t.kappa
        );
    }
    for (i, u) in t.activation_subspaces.iter().enumerate() {
        let cos = t
            .predicted_abs_cos
            .get(i)
            .map_or(String::new(), |c| format!("  mean |cos| per direction {}", vec3(c)));
        let _ = writeln!(s, "  step {}: dim {}{cos}", u.step, u.dim);
    }
    for b in &t.blocked {
        let _ = writeln!(s, "  {}", b.message);
    }
}

/// The one-step closed forms at n = αd, βd² and d^κ.
fn closed_forms(s: &mut String, t: &TheoryReport) {
    let o = &t.one_step_cosine;
    let _ = writeln!(
        s,
        "\none step at n = {} d, eta/p = {}: cos with mu1/|mu1| = {:.4} (a > 0), {:.4} (a < 0), mean |cos| {:.4}",
        o.alpha, o.gamma, o.plus, o.minus, o.mean_abs
    );
    let q = &t.quadratic_one_step;
    let _ = writeln!(
        s,
        "one step at n = {} d^2, eta0 = {}: mean |cos| per direction {}",
        q.beta,
        q.eta0,
        vec3(&q.mean_abs_cos)
    );
    let k = &t.one_step_at_kappa;
    let _ = writeln!(
        s,
        "one step at n = d^{} (d = {}, eta/p = {:.4}): mean |cos| per direction {}; as d -> infinity {}",
        k.kappa,
        k.d,
        k.gamma,
        vec3(&k.mean_abs_cos),
        match k.dominant_degree {
            Some(deg) => format!("the degree-{deg} part dominates and dim {} is learned", k.subspace.dim),
            None => "nothing is learned".to_string(),
        }
    );
    for m in k.blocked.iter().filter(|_| k.kappa < 2.0).chain(&k.suppressed) {
        let _ = writeln!(s, "  {m}");
    }
}

/// Error floors and caveats.
fn floors(s: &mut String, t: &TheoryReport) {
    let f = &t.floors;
    let _ = writeln!(s, "\nerror floors: linear kernel {:.5}", f.linear_kernel);
    let rf = &f.random_features;
    let _ = writeln!(
        s,
        "  random features (n = d^{}, p = d^{:.2}): degree <= {} (carried {:?}): {:.5}",
        rf.kappa, rf.log_d_p, rf.degree, rf.carried_degrees, rf.error
    );
    for o in &f.oracle {
        let _ = writeln!(s, "  oracle on generic U_{} (dim {}): {:.5}", o.step, o.dim, o.error);
    }
    for w in &t.warnings {
        let _ = writeln!(s, "note: {w}");
    }
}

/// The curve's base configuration from the flags.
fn curve_from_flags(args: &TheoryArgs) -> anyhow::Result<(Config, Vec<f64>, usize, Vec<u64>)> {
    let eta_schedule = match &args.eta_schedule {
        Some(s) => Some(
            s.split(',')
                .map(|x| x.trim().parse::<f64>())
                .collect::<Result<Vec<f64>, _>>()
                .map_err(|_| {
                    anyhow::anyhow!("--eta-schedule must be numbers separated by commas, e.g. 1.0,0.6, but is '{s}'")
                })?,
        ),
        None => None,
    };
    let c = CurveQuery {
        kappa_from: args.kappa_from,
        kappa_to: args.kappa_to,
        kappa_step: args.kappa_step,
        seeds: args.seeds,
        eta_max0: args.eta_max0,
        eta_schedule,
        form: args.form.clone(),
        particles: args.particles,
    };
    let query = args.query();
    let mut table = c.base_table(&query).map_err(flag_message)?;
    for s in &args.set {
        giantstep::config::apply_set(&mut table, s).map_err(|e| anyhow::anyhow!("--set {s}: {e}"))?;
    }
    let base = Config::from_table(table)?;
    let kappas = c.kappas().map_err(flag_message)?;
    let seeds = c.seed_list().map_err(flag_message)?;
    Ok((base, kappas, query.steps, seeds))
}

/// The curve's base configuration, batch sizes, steps and seeds from a sweep plan.
fn curve_from_plan(path: &std::path::Path) -> anyhow::Result<(Config, Vec<f64>, usize, Vec<u64>)> {
    let text = giantstep::config::read_text_file(path).with_context(|| format!("cannot read {}", path.display()))?;
    let plan = giantstep::sweep::Plan::from_toml(&text, &path.display().to_string())?;
    for axis in &plan.axes {
        if !["train.n", "train.steps", "seed"].contains(&axis.key.as_str()) {
            anyhow::bail!(
                "--plan: the curve takes the axes train.n, train.steps and seed, but {} also varies {}",
                path.display(),
                axis.key
            );
        }
    }
    let points = plan.points()?;
    let first = points
        .first()
        .ok_or_else(|| anyhow::anyhow!("--plan: {} has no points", path.display()))?;
    let mut kappas: Vec<f64> = Vec::new();
    let mut seeds: Vec<u64> = Vec::new();
    let mut steps = 1;
    for p in &points {
        let c = &p.config;
        let k = kappa_of_size(&c.train.n, c.network.d)?;
        if !kappas.iter().any(|v| (v - k).abs() < 1e-9) {
            kappas.push(k);
        }
        if !seeds.contains(&c.seed) {
            seeds.push(c.seed);
        }
        steps = steps.max(c.train.steps);
    }
    Ok((first.config.clone(), kappas, steps, seeds))
}

/// The exponent of a batch size written `d^x` (or `log n / log d` of a count).
pub(crate) fn kappa_of_size(n: &giantstep::config::BatchSize, d: usize) -> anyhow::Result<f64> {
    if let giantstep::config::BatchSize::Expr(s) = n {
        if let Some(x) = s.trim().strip_prefix("d^").and_then(|x| x.trim().parse::<f64>().ok()) {
            return Ok(x);
        }
    }
    let n = n.resolve(d, "train.n")?;
    Ok((n as f64).ln() / (d as f64).ln())
}

/// The curve as a table.
fn render_curve(base: &Config, c: &Curve, form: Form) -> String {
    let mut s = String::new();
    let what = match form {
        Form::FiniteP => "state evolution of all neurons".to_string(),
        Form::MeanField { particles } => format!("mean-field state evolution, {particles} particles"),
    };
    let _ = writeln!(s, "Predicted test error ({what} + ridge readout; docs/theory.md §6)");
    let _ = writeln!(
        s,
        "target {}, {}, d = {}, p = {}, seeds {:?}\n",
        base.target_expr().unwrap_or_default(),
        base.network.activation,
        base.network.d,
        base.network.p,
        c.seeds
    );
    let _ = write!(s, "{:>8} {:>10}", "kappa", "n");
    for t in 1..=c.test_error.len() {
        let _ = write!(s, " {:>8}", format!("T = {t}"));
    }
    let _ = writeln!(s, " {:>8}", "RF");
    let cell = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.4}"));
    for (j, k) in c.kappa.iter().enumerate() {
        let _ = write!(s, "{k:>8.3} {:>10}", c.n[j]);
        for row in &c.test_error {
            let _ = write!(s, " {:>8}", cell(row[j]));
        }
        let _ = writeln!(s, " {:>8}", cell(c.rf_test_error[j]));
    }
    for note in &c.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}
