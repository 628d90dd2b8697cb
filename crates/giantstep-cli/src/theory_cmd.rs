//! `giantstep theory`: the predictions of docs/theory.md for a target.

use anyhow::Context;
use clap::Args;
use giantstep::config::Preprocess;
use giantstep::expr::Expr;
use giantstep::theory::{analyze, TheoryOptions, TheoryReport};
use std::fmt::Write;

#[derive(Args, Debug)]
pub struct TheoryArgs {
    /// Target: an expression over z1..zr (e.g. "z1 + z1*z2") or a preset name.
    target: String,
    /// Student activation (relu, erf, tanh, he1..he8, linear, shifted relu:0.5).
    #[arg(long, default_value = "relu")]
    activation: String,
    /// Number of steps T.
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Batch exponent kappa of the generic recursion (n = d^kappa, l = floor(kappa)).
    #[arg(long, default_value_t = 1.0)]
    kappa: f64,
    /// alpha = n/d of the activation-aware recursion and the one-step closed form.
    #[arg(long, default_value_t = 4.0)]
    alpha: f64,
    /// Learning-rate prefactor: eta = eta0 · p · (n/d)^eta_exp, so gamma = eta/p = eta0 · alpha^eta_exp.
    #[arg(long, default_value_t = 1.0)]
    eta0: f64,
    /// Learning-rate exponent.
    #[arg(long, default_value_t = 0.5)]
    eta_exp: f64,
    /// gamma = eta/p directly (overrides eta0 for the n = alpha d predictions).
    #[arg(long)]
    gamma: Option<f64>,
    /// beta = n/d² of the quadratic one-step closed form.
    #[arg(long, default_value_t = 1.0)]
    beta: f64,
    /// Input dimension (for log_d p of the random-features floor).
    #[arg(long, default_value_t = 256)]
    d: usize,
    /// Width (for log_d p of the random-features floor).
    #[arg(long, default_value_t = 512)]
    p: usize,
    /// Label preprocessing: none, mean or linear.
    #[arg(long, default_value = "none")]
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
    #[arg(long, default_value_t = 6)]
    degree: u32,
    /// gamma of the steps after the first (default: the first step's gamma), for the stability
    /// of repeated steps.
    #[arg(long)]
    gamma_later: Option<f64>,
    /// Second-layer initialization: hypercube, gaussian or uniform (stability of later steps).
    #[arg(long, default_value = "hypercube")]
    second_layer: String,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

pub fn cmd_theory(args: &TheoryArgs) -> anyhow::Result<()> {
    let text = giantstep::target::preset_expr(&args.target)
        .map(str::to_string)
        .unwrap_or_else(|_| args.target.clone());
    let expr = Expr::parse(&text)?;
    let r = args.r.unwrap_or(expr.max_var().max(1));
    // Measured here (2 cores): r = 7 takes about 6 s at the default degree 6, r = 8 about a
    // minute and r >= 9 longer; at --degree 2, r = 16 takes about 10 s.
    const MAX_THEORY_RANK: usize = 7;
    if r > MAX_THEORY_RANK && args.degree > 2 {
        anyhow::bail!(
            "giantstep theory handles r <= {MAX_THEORY_RANK} teacher directions at --degree 3 or more (up to r = 16 with --degree 2), but the target has r = {r}"
        );
    }
    let preprocess: Preprocess = giantstep::config::parse_named("--preprocess", &args.preprocess)?;
    if args.d < 2 || args.p == 0 {
        anyhow::bail!("--d must be >= 2 and --p > 0, but they are {} and {}", args.d, args.p);
    }
    if args.degree == 0 || args.degree > 12 {
        anyhow::bail!("--degree must be between 1 and 12, but is {}", args.degree);
    }
    if args.steps == 0 || args.steps > 100 {
        anyhow::bail!("--steps must be between 1 and 100, but is {}", args.steps);
    }
    if !(args.kappa > 0.0 && args.kappa <= 8.0) {
        anyhow::bail!("--kappa must be in (0, 8] (n = d^kappa), but is {}", args.kappa);
    }
    let opts = TheoryOptions {
        activation: args.activation.parse()?,
        steps: args.steps,
        kappa: args.kappa,
        alpha: args.alpha,
        gamma: args.gamma.unwrap_or(args.eta0 * args.alpha.powf(args.eta_exp)),
        eta0: args.eta0,
        beta: args.beta,
        log_d_p: (args.p as f64).ln() / (args.d as f64).ln(),
        preprocess,
        normalize: args.normalize,
        correlation: args.correlation,
        max_degree: args.degree,
        leap: true,
        second_layer: giantstep::config::parse_named("--second-layer", &args.second_layer)?,
        gamma_later: args.gamma_later,
    };
    if let Some(g) = args.gamma_later {
        if !(g.is_finite() && g >= 0.0) {
            anyhow::bail!("--gamma-later must be >= 0 and finite, but is {g}");
        }
    }
    let report = analyze(&expr, r, &opts).context("theory")?;
    let out = if args.json {
        serde_json::to_string(&report)? + "\n"
    } else {
        render(&report)
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
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
        "activation-aware prediction at n = {} d, eta/p = {}:",
        t.alpha, t.gamma
    );
    for (u, c) in t.activation_subspaces.iter().zip(&t.predicted_abs_cos) {
        let _ = writeln!(
            s,
            "  step {}: dim {}  mean |cos| per direction {}",
            u.step,
            u.dim,
            vec3(c)
        );
    }
    for b in &t.blocked {
        let _ = writeln!(s, "  {}", b.message);
    }
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
    s
}
