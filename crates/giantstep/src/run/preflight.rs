//! The checks a run makes before any work: memory and target.

use crate::config::ValidConfig;
use crate::error::{Error, Result};
use crate::expr::Expr;

/// The checks a run makes before any work: the memory it needs against this machine's, and
/// the target (finite, square-integrable). A caller that wants to warn about a long run calls
/// this first, so that a refused run prints nothing else.
///
/// # Errors
/// As [`run`](crate::run()), for what can be known before simulating.
pub fn preflight(config: &ValidConfig) -> Result<()> {
    let evaluated = if config.eval.every_step { config.train.steps } else { 1 };
    check_memory(config.memory_estimate(evaluated), config)?;
    check_target(config.expr(), config.r())
}

/// Total memory of this machine in bytes (`MemTotal` of /proc/meminfo), if known.
/// The memory this process may use, in bytes, and where the limit comes from: the smallest of
/// the machine's memory, a cgroup limit (v2 `memory.max` of this process's cgroup, v1
/// `memory.limit_in_bytes`: containers, JupyterHub, Slurm `--mem`) and the address-space limit
/// (`ulimit -v`, less 512 MB for the program, its libraries and thread stacks).
fn memory_limit() -> Option<(f64, &'static str)> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let number = |t: String| t.trim().parse::<f64>().ok();
    let mut limits: Vec<(f64, &'static str)> = Vec::new();
    if let Some(kb) = read("/proc/meminfo").and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))
    }) {
        limits.push((kb * 1024.0, "this machine has"));
    }
    let v2 = read("/proc/self/cgroup").and_then(|t| {
        t.lines().find_map(|l| {
            l.strip_prefix("0::")
                .map(|p| format!("/sys/fs/cgroup{}/memory.max", p.trim()))
        })
    });
    let cgroup = v2
        .and_then(|p| read(&p))
        .or_else(|| read("/sys/fs/cgroup/memory.max"))
        .or_else(|| read("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
        .and_then(number);
    // v1 reports "no limit" as a number near 2^63.
    if let Some(b) = cgroup.filter(|&b| b < 1e18) {
        limits.push((b, "its cgroup (container or job) allows"));
    }
    let address_space = read("/proc/self/limits").and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("Max address space"))
            .and_then(|l| l.split_whitespace().nth(3).and_then(|v| v.parse::<f64>().ok()))
    });
    if let Some(b) = address_space {
        limits.push(((b - 512e6).max(0.0), "its address-space limit (ulimit -v) leaves"));
    }
    limits.into_iter().min_by(|a, b| a.0.total_cmp(&b.0))
}

fn human_bytes(b: f64) -> String {
    match b {
        b if b >= 1e12 => format!("{:.1} TB", b / 1e12),
        b if b >= 1e9 => format!("{:.1} GB", b / 1e9),
        b => format!("{:.0} MB", b / 1e6),
    }
}

/// Refuses a run that cannot fit in the memory this process may use before allocating anything.
pub(super) fn check_memory(needed: f64, cfg: &ValidConfig) -> Result<()> {
    let Some((have, source)) = memory_limit() else {
        return Ok(());
    };
    if needed > have {
        let (d, p) = (cfg.network.d, cfg.network.p);
        return Err(Error::Memory {
            needed: human_bytes(needed),
            available: format!("{source} {}", human_bytes(have)),
            detail: format!(
                "p·d = {} weights per copy, p² = {} per Gram matrix, {} workspaces × chunk·(d+p) ({} threads{})",
                p as f64 * d as f64,
                p as f64 * p as f64,
                if cfg.threads > 1 { cfg.threads + 1 } else { 1 },
                cfg.threads,
                if cfg.threads > 1 { " and a spare" } else { "" }
            ),
        });
    }
    Ok(())
}

/// Refuses, before any simulation, a target that is not finite or not square-integrable under
/// the Gaussian: for `r <= 4` the checks of the theory's Hermite expansion on its quadrature grid
/// (at least 44 nodes per axis), beyond that finiteness at 2·10⁵ Gaussian samples (coarser grids
/// would flag polynomials as heavy-tailed).
pub(super) fn check_target(expr: &Expr, r: usize) -> Result<()> {
    // A sweep runs many points of one target (and the CLI's preflight checks before the run):
    // the verdict is kept per (expression, r) for the process (at r = 4 the check costs ~0.3 s).
    static CHECKED: std::sync::Mutex<Vec<(String, usize, Option<Error>)>> = std::sync::Mutex::new(Vec::new());
    let key = expr.source().to_string();
    if let Some(verdict) = CHECKED.lock().ok().and_then(|c| {
        c.iter()
            .find(|(k, kr, _)| *k == key && *kr == r)
            .map(|(_, _, v)| v.clone())
    }) {
        return verdict.map_or(Ok(()), Err);
    }
    let verdict = check_target_uncached(expr, r);
    if let Ok(mut c) = CHECKED.lock() {
        c.push((key, r, verdict.as_ref().err().cloned()));
    }
    verdict
}

fn check_target_uncached(expr: &Expr, r: usize) -> Result<()> {
    use crate::theory::hermite::{expand, ExpandOptions};
    let g = |x: &[f64]| expr.eval(x);
    let opts = ExpandOptions {
        max_degree: 0,
        force_monte_carlo: r > 4,
        ..Default::default()
    };
    expand(&g, r, opts).map(|_| ()).map_err(|e| {
        let msg = e.to_string();
        let msg = msg.strip_prefix("numerical failure: ").unwrap_or(&msg).to_string();
        Error::TargetCheck {
            expr: expr.source().chars().take(80).collect(),
            message: msg,
        }
    })
}
