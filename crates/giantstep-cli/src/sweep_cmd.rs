//! `giantstep sweep` (local, sharded, or as a Slurm job array) and `giantstep merge`.

use anyhow::{bail, Context};
use clap::Args;
use giantstep::sweep::{
    merge, read_records, run_sweep, shard_status, work_units, Plan, Progress, Shard, SweepOptions, SweepSummary,
};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The plan (TOML: `[base]` configuration and `[axes]`).
    #[arg(required_unless_present = "status")]
    plan: Option<PathBuf>,
    /// Record file (JSON lines; finished points in it are skipped), or with --slurm the directory
    /// that receives the scripts, shards and merged records.
    #[arg(long, short = 'o', required_unless_present = "status")]
    out: Option<PathBuf>,
    /// Points run at the same time (each with cores/jobs threads).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Threads per point (default: cores/jobs); results do not depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Run only the points whose training group (points that differ only in train.steps) has
    /// group % N == i. Default inside a Slurm array task:
    /// $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.
    #[arg(long)]
    shard: Option<String>,
    /// No progress bar or summary line.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Write a Slurm job array (OUT/sweep.sbatch) and a dependent merge job (OUT/merge.sbatch).
    #[arg(long)]
    slurm: bool,
    /// Number of array tasks (shards) [default: min(points, 8)].
    #[arg(long, requires = "slurm")]
    array_size: Option<usize>,
    /// Slurm partition.
    #[arg(long, requires = "slurm")]
    partition: Option<String>,
    /// Slurm time limit per task (e.g. 02:00:00).
    #[arg(long, requires = "slurm")]
    time: Option<String>,
    /// CPUs per array task.
    #[arg(long, requires = "slurm", default_value_t = 1)]
    cpus_per_task: usize,
    /// Submit with sbatch and print the job ids.
    #[arg(long, requires = "slurm")]
    submit: bool,
    /// Print the points, the operations per phase and an estimated wall time on this machine
    /// (from a short calibration GEMM), then exit without running or writing anything.
    #[arg(long, conflicts_with_all = ["slurm"])]
    dry_run: bool,
    /// Report points done / missing per shard of a Slurm sweep directory.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["plan", "out", "slurm"])]
    status: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Record files (shards) of one plan.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The merged record file (written atomically).
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Merge even if some points of the plan are missing.
    #[arg(long)]
    partial: bool,
}

/// Loads a plan file.
pub fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    let text =
        giantstep::config::read_text_file(path).with_context(|| format!("cannot read plan {}", path.display()))?;
    Ok(Plan::from_toml(&text, &path.display().to_string())?)
}

/// Runs a sweep with a progress bar on a terminal; returns the summary.
pub fn sweep_with_progress(
    plan: &Plan,
    out: &Path,
    shard: Option<Shard>,
    jobs: usize,
    threads: Option<usize>,
    quiet: bool,
) -> anyhow::Result<SweepSummary> {
    let show = !quiet && std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::hidden();
    if show {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        // Position and length count operations (millions of flops), so the ETA is weighted by
        // the work of each point rather than by the number of points.
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {percent:>3}%  eta {eta}  {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
    }
    let done = std::sync::atomic::AtomicUsize::new(0);
    let todo_points = std::sync::atomic::AtomicUsize::new(0);
    let progress = |p: Progress<'_>| match p {
        Progress::Start { todo, flops, .. } => {
            todo_points.store(todo, std::sync::atomic::Ordering::SeqCst);
            bar.set_length((flops / 1e6).ceil().max(1.0) as u64);
        }
        Progress::Done { point, error, flops } => {
            bar.inc((flops / 1e6).round() as u64);
            let k = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let c = &point.config;
            bar.set_message(format!(
                "{k}/{} points, last: #{} d={} n={} T={} seed={}",
                todo_points.load(std::sync::atomic::Ordering::SeqCst),
                point.index,
                c.network.d,
                train_n(c),
                c.train.steps,
                c.seed
            ));
            if let Some(e) = error {
                bar.suspend(|| eprintln!("giantstep: point {} failed: {e}", point.index));
            }
        }
    };
    let options = SweepOptions {
        shard,
        jobs,
        threads,
        cancel: None,
        target: None,
    };
    let summary = run_sweep(plan, out, &options, &progress)?;
    bar.finish_and_clear();
    Ok(summary)
}

/// The shard of this process: `--shard`, else the Slurm array task variables.
fn resolve_shard(arg: &Option<String>) -> anyhow::Result<Option<Shard>> {
    if let Some(s) = arg {
        return Ok(Some(s.parse::<Shard>().map_err(|e| match e {
            giantstep::Error::Invalid { expected, actual, .. } => {
                anyhow::anyhow!("--shard must be {expected}, but is {actual}")
            }
            other => other.into(),
        })?));
    }
    match (
        std::env::var("SLURM_ARRAY_TASK_ID"),
        std::env::var("SLURM_ARRAY_TASK_COUNT"),
    ) {
        (Ok(i), Ok(n)) => Ok(Some(
            format!("{i}/{n}")
                .parse::<Shard>()
                .context("SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT")?,
        )),
        _ => Ok(None),
    }
}

pub fn cmd_sweep(args: &SweepArgs) -> anyhow::Result<bool> {
    if let Some(dir) = &args.status {
        return cmd_status(dir);
    }
    let (plan_path, out) = (args.plan.as_ref().expect("clap"), args.out.as_ref().expect("clap"));
    let plan = load_plan(plan_path)?;
    if args.jobs == 0 {
        bail!("--jobs must be >= 1, but is 0");
    }
    if args.threads == Some(0) {
        bail!("--threads must be >= 1, but is 0");
    }
    if args.slurm {
        return cmd_slurm(args, plan_path, &plan, out).map(|_| true);
    }
    let shard = resolve_shard(&args.shard)?;
    if args.dry_run {
        out_no_newline!("{}", dry_run(&plan, Some(out), shard, args.jobs)?);
        return Ok(true);
    }
    crate::check_writable_append(out)?;
    let s = sweep_with_progress(&plan, out, shard, args.jobs, args.threads, args.quiet)?;
    if !args.quiet {
        eprintln!(
            "sweep: {} points{}, {} already done, {} ran, {} failed -> {}",
            s.shard_points,
            shard
                .map(|s| format!(" in shard {}/{}", s.index, s.count))
                .unwrap_or_default(),
            s.skipped,
            s.ran,
            s.failed,
            out.display()
        );
    }
    Ok(s.failed == 0)
}

pub fn cmd_merge(args: &MergeArgs) -> anyhow::Result<()> {
    crate::check_writable(&args.out)?;
    crate::refuse_alias(&args.out, &args.inputs.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    // A record file a running sweep holds is not replaced under it.
    let _lock = match std::fs::File::open(&args.out) {
        Ok(f) if !crate::is_special(&args.out) => match f.try_lock_shared() {
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(giantstep::Error::Locked {
                    path: args.out.display().to_string(),
                }
                .into())
            }
            _ => Some(f),
        },
        _ => None,
    };
    let records = merge(&args.inputs, args.partial).map_err(|e| match e {
        giantstep::Error::Incomplete {
            covered,
            total,
            missing,
        } => anyhow::anyhow!(
            "the records cover {covered} of {total} points (missing {missing}); finish the sweep or pass --partial"
        ),
        other => other.into(),
    })?;
    if records.is_empty() {
        bail!(
            "{} hold no records; nothing to merge",
            args.inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let mut text = String::new();
    for r in &records {
        text += &serde_json::to_string(r)?;
        text.push('\n');
    }
    crate::write_atomic(&args.out, &text)?;
    eprintln!(
        "merge: {} records from {} files -> {}",
        records.len(),
        args.inputs.len(),
        args.out.display()
    );
    Ok(())
}

/// What `--slurm` records in its directory, to recognize it later.
#[derive(serde::Serialize, serde::Deserialize)]
struct SlurmMeta {
    plan: String,
    array_size: usize,
    points: usize,
}

/// Quotes a string for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Checks a Slurm partition list: names of letters, digits, `_`, `.`, `-`, separated by commas
/// (nothing a shell or an `#SBATCH` line could read as more than a value).
fn check_partition(p: &str) -> anyhow::Result<()> {
    let ok = !p.is_empty()
        && p.len() <= 256
        && p.split(',')
            .all(|name| !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
    if !ok {
        bail!(
            "--partition must be Slurm partition names (letters, digits, _ . -) separated by commas, but is {}",
            crate::shown(p)
        );
    }
    Ok(())
}

/// Checks a Slurm time limit: `minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
/// `days-hours:minutes` or `days-hours:minutes:seconds`, or `infinite`/`UNLIMITED`.
fn check_time(t: &str) -> anyhow::Result<()> {
    let numbers = |s: &str, most: usize| {
        let parts: Vec<&str> = s.split(':').collect();
        parts.len() <= most
            && parts
                .iter()
                .all(|x| !x.is_empty() && x.len() <= 9 && x.bytes().all(|b| b.is_ascii_digit()))
    };
    let ok = matches!(t, "infinite" | "INFINITE" | "unlimited" | "UNLIMITED")
        || match t.split_once('-') {
            Some((days, rest)) => numbers(days, 1) && numbers(rest, 3),
            None => numbers(t, 3),
        };
    if !ok {
        bail!(
            "--time must be a Slurm time limit (minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS), but is {}",
            crate::shown(t)
        );
    }
    Ok(())
}

/// A plan name as a job name: letters, digits, `_`, `.`, `-` kept, anything else `_`, at most 64
/// characters.
fn job_stem(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn cmd_slurm(args: &SweepArgs, plan_path: &Path, plan: &Plan, dir: &Path) -> anyhow::Result<()> {
    if let Some(p) = &args.partition {
        check_partition(p)?;
    }
    if let Some(t) = &args.time {
        check_time(t)?;
    }
    // The directory appears in #SBATCH lines, which are read line by line and expand `%`.
    if dir.display().to_string().chars().any(|c| c.is_control() || c == '%') {
        bail!(
            "--out for --slurm must be a directory path without control characters or '%', but is {}",
            crate::shown(&dir.display().to_string())
        );
    }
    let points = plan.len();
    let n = args.array_size.unwrap_or(points.min(8));
    if n == 0 || n > points {
        bail!("--array-size must be between 1 and the plan's {points} points, but is {n}");
    }
    if args.cpus_per_task == 0 {
        bail!("--cpus-per-task must be >= 1, but is 0");
    }
    let sbatch = if args.submit {
        Some(which("sbatch").context("--submit needs sbatch on PATH, but there is none (write the scripts without --submit and submit them elsewhere)")?)
    } else {
        None
    };
    let id = plan.id();
    check_slurm_dir(dir, &id, n)?;
    std::fs::create_dir_all(dir.join("shards")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let dir = dir.canonicalize()?;
    let exe = std::env::current_exe()?.canonicalize()?;
    let text = giantstep::config::read_text_file(plan_path)?;
    crate::write_atomic(&dir.join("plan.toml"), &text)?;
    crate::write_atomic(
        &meta_path_in(&dir),
        &serde_json::to_string(&SlurmMeta {
            plan: id,
            array_size: n,
            points,
        })?,
    )?;
    let (sweep, merge) = slurm_scripts(args, plan, &dir, &exe, n);
    crate::write_atomic(&dir.join("sweep.sbatch"), &sweep)?;
    crate::write_atomic(&dir.join("merge.sbatch"), &merge)?;
    submit_or_explain(sbatch.as_deref(), &dir, n)
}

/// Refuses a Slurm directory set up for another plan or another array size.
fn check_slurm_dir(dir: &Path, id: &str, n: usize) -> anyhow::Result<()> {
    let meta_path = dir.join("slurm.json");
    if meta_path.exists() {
        let meta: SlurmMeta = serde_json::from_str(&std::fs::read_to_string(&meta_path)?)
            .with_context(|| format!("{} is not a giantstep Slurm directory file", meta_path.display()))?;
        if meta.plan != id {
            bail!(
                "{} holds shards of a different plan ({}; this plan is {id}); use another directory",
                dir.display(),
                meta.plan
            );
        }
        if meta.array_size != n {
            bail!(
                "{} was set up with {} array tasks, but --array-size is {n}; use the same size to resume",
                dir.display(),
                meta.array_size
            );
        }
    }
    Ok(())
}

/// The array script (task i runs shard i/n) and the merge script (records, then figures).
fn slurm_scripts(args: &SweepArgs, plan: &Plan, dir: &Path, exe: &Path, n: usize) -> (String, String) {
    let q = |p: &Path| sh_quote(&p.display().to_string());
    let name = job_stem(plan.name.as_deref().unwrap_or("sweep"));
    let mut sweep = format!(
        "#!/bin/bash\n# giantstep sweep as a Slurm job array: task i runs shard i/{n} of the plan.\n\
         #SBATCH --job-name=giantstep-{name}\n#SBATCH --array=0-{}\n#SBATCH --cpus-per-task={}\n\
         #SBATCH --requeue\n#SBATCH --open-mode=append\n#SBATCH --output={}/logs/sweep-%A_%a.out\n",
        n - 1,
        args.cpus_per_task,
        dir.display()
    );
    if let Some(p) = &args.partition {
        sweep += &format!("#SBATCH --partition={p}\n");
    }
    if let Some(t) = &args.time {
        sweep += &format!("#SBATCH --time={t}\n");
    }
    sweep += &format!(
        "set -euo pipefail\n# A requeued task resumes its own shard: finished points are skipped.\n\
         exec {} sweep {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{n}\" --out {}/\"shard-${{SLURM_ARRAY_TASK_ID}}.jsonl\" \\\n    --threads \"${{SLURM_CPUS_PER_TASK:-1}}\" --quiet\n",
        q(exe),
        q(&dir.join("plan.toml")),
        q(&dir.join("shards"))
    );
    let mut merge = format!(
        "#!/bin/bash\n# Merges the shards of the array into records.jsonl (refuses while points are missing).\n\
         #SBATCH --job-name=giantstep-{name}-merge\n#SBATCH --output={}/logs/merge-%j.out\n",
        dir.display()
    );
    if let Some(p) = &args.partition {
        merge += &format!("#SBATCH --partition={p}\n");
    }
    merge += &format!(
        "set -euo pipefail\n{} merge {}/shard-*.jsonl --out {}\n",
        q(exe),
        q(&dir.join("shards")),
        q(&dir.join("records.jsonl"))
    );
    if let Some(fig) = &plan.figure {
        for ext in ["svg", "png"] {
            merge += &format!(
                "{} plot {fig} {} -o {}\n",
                q(exe),
                q(&dir.join("records.jsonl")),
                q(&dir.join(format!("{fig}.{ext}")))
            );
        }
    }
    (sweep, merge)
}

/// Submits the array and the merge after it (with `sbatch`), or prints how to.
fn submit_or_explain(sbatch: Option<&Path>, dir: &Path, n: usize) -> anyhow::Result<()> {
    let q = |p: &Path| sh_quote(&p.display().to_string());
    if let Some(sbatch) = sbatch {
        let submit = |extra: &[String], script: &Path| -> anyhow::Result<String> {
            let out = std::process::Command::new(sbatch)
                .arg("--parsable")
                .args(extra)
                .arg(script)
                .output()?;
            if !out.status.success() {
                bail!("sbatch failed: {}", String::from_utf8_lossy(&out.stderr).trim());
            }
            // --parsable prints "jobid" or "jobid;cluster": anything else is not a submission.
            let id = String::from_utf8_lossy(&out.stdout)
                .trim()
                .split(';')
                .next()
                .unwrap_or("")
                .to_string();
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
                bail!(
                    "sbatch reported no job id for {} (it printed {}); check the queue before resubmitting",
                    script.display(),
                    crate::shown(String::from_utf8_lossy(&out.stdout).trim())
                );
            }
            Ok(id)
        };
        let array = submit(&[], &dir.join("sweep.sbatch"))?;
        let merged = submit(&[format!("--dependency=afterok:{array}")], &dir.join("merge.sbatch"))?;
        out!("array job {array} ({n} tasks)\nmerge job {merged} (after the array succeeds)");
        out!("status: giantstep sweep --status {}", dir.display());
    } else {
        out!(
            "wrote {} ({n} array tasks) and {}",
            dir.join("sweep.sbatch").display(),
            dir.join("merge.sbatch").display()
        );
        out!(
            "submit: jid=$(sbatch --parsable {}) && sbatch --dependency=afterok:$jid {}",
            q(&dir.join("sweep.sbatch")),
            q(&dir.join("merge.sbatch"))
        );
    }
    Ok(())
}

fn meta_path_in(dir: &Path) -> PathBuf {
    dir.join("slurm.json")
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|p| p.join(name)).find(|p| {
            use std::os::unix::fs::PermissionsExt;
            p.is_file()
                && p.metadata()
                    .map(|m| m.permissions().mode() & 0o111 != 0)
                    .unwrap_or(false)
        })
    })
}

fn cmd_status(dir: &Path) -> anyhow::Result<bool> {
    let meta_path = meta_path_in(dir);
    let meta: SlurmMeta = serde_json::from_str(&std::fs::read_to_string(&meta_path).with_context(|| {
        format!(
            "{} is not a giantstep Slurm sweep directory (no slurm.json)",
            dir.display()
        )
    })?)
    .with_context(|| format!("{} is not a giantstep Slurm metadata file", meta_path.display()))?;
    let plan = load_plan(&dir.join("plan.toml"))?;
    let files: Vec<PathBuf> = (0..meta.array_size)
        .map(|i| dir.join("shards").join(format!("shard-{i}.jsonl")))
        .collect();
    let status = shard_status(&plan, &files)?;
    out!(
        "{:>5} {:>7} {:>6} {:>8} {:>7}",
        "shard",
        "points",
        "done",
        "missing",
        "failed"
    );
    let (mut total, mut done) = (0, 0);
    for s in &status {
        out!(
            "{:>5} {:>7} {:>6} {:>8} {:>7}",
            s.shard,
            s.points,
            s.done,
            s.points - s.done,
            s.failed
        );
        total += s.points;
        done += s.done;
    }
    out!(
        "{done} of {total} points done; {}",
        if done == total { "complete" } else { "incomplete" }
    );
    if dir.join("records.jsonl").exists() {
        out!("merged: {}", dir.join("records.jsonl").display());
    }
    Ok(true)
}

/// Human units for operations.
fn flops_text(f: f64) -> String {
    if f >= 1e15 {
        format!("{:.2} PFLOP", f / 1e15)
    } else if f >= 1e12 {
        format!("{:.2} TFLOP", f / 1e12)
    } else {
        format!("{:.2} GFLOP", f / 1e9)
    }
}

fn seconds_text(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.1} h", s / 3600.0)
    } else if s >= 60.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{s:.1} s")
    }
}

/// The report of `--dry-run`: points left (those in `out` are skipped), training groups,
/// operations per phase against running every point alone, and an estimated wall time from a
/// calibration GEMM of the largest point's shape on all cores.
pub fn dry_run(plan: &Plan, out: Option<&Path>, shard: Option<Shard>, jobs: usize) -> anyhow::Result<String> {
    use std::fmt::Write;
    if plan.len() > 100_000 {
        eprintln!(
            "giantstep: dry run: expanding the plan's {} points (about {:.0} s)",
            plan.len(),
            plan.len() as f64 / 1e5
        );
    }
    let points: Vec<_> = plan
        .points()?
        .into_iter()
        .filter(|p| shard.is_none_or(|s| s.contains(p)))
        .collect();
    let done: std::collections::HashSet<String> = match out {
        Some(o) if o.is_file() => read_records(o)?.0.into_iter().map(|r| r.hash).collect(),
        _ => Default::default(),
    };
    let todo: Vec<&giantstep::sweep::Point> = points.iter().filter(|p| !done.contains(&p.hash)).collect();
    let units = work_units(&todo);
    let mut grouped = giantstep::cost::Flops::default();
    let mut alone = giantstep::cost::Flops::default();
    for u in &units {
        grouped += u.flops;
    }
    for p in &todo {
        if let Ok(valid) = p.config.resolve() {
            alone += giantstep::cost::run_flops(&valid, 1);
        }
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "plan {}: {} points{}, {} already done, {} to run in {} training groups (points that differ only in train.steps train once)",
        plan.name.as_deref().unwrap_or("(unnamed)"),
        points.len(),
        shard.map(|s| format!(" in shard {}/{}", s.index, s.count)).unwrap_or_default(),
        points.len() - todo.len(),
        todo.len(),
        units.len()
    );
    let _ = writeln!(
        s,
        "operations: steps {}, readouts {}, tests {}; total {} ({} if every point ran alone: {:.2}x)",
        flops_text(grouped.step),
        flops_text(grouped.readout),
        flops_text(grouped.test),
        flops_text(grouped.total()),
        flops_text(alone.total()),
        alone.total() / grouped.total().max(1.0)
    );
    let Some(big) = units.iter().max_by(|a, b| a.flops.total().total_cmp(&b.flops.total())) else {
        let _ = writeln!(s, "nothing to run");
        return Ok(s);
    };
    let c = &big.points[0].config;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rate = giantstep::bench::calibrate_gemm(c.precision, c.network.d, c.network.p, cores, c.chunk)?;
    // Step and readout reach about 85% of the bare GEMM; data generation and elementwise work
    // take the rest (README, Performance).
    let efficiency = 0.85;
    let secs = grouped.total() / (rate * 1e9 * efficiency);
    let _ = writeln!(
        s,
        "bare GEMM here: {rate:.1} GFLOP/s ({:?}, {cores} threads, {}x{} by {}x{}); GEMM floor {} (the operations at that rate); estimated wall time {} at {:.0}% of it with --jobs {jobs}",
        c.precision,
        c.chunk,
        c.network.d,
        c.network.d,
        c.network.p,
        seconds_text(grouped.total() / (rate * 1e9)),
        seconds_text(secs),
        efficiency * 100.0
    );
    let _ = writeln!(
        s,
        "largest group: {} point(s), d = {}, p = {}, n = {}, T up to {}: {} ({})",
        big.points.len(),
        c.network.d,
        c.network.p,
        train_n(c),
        big.points.iter().map(|p| p.config.train.steps).max().unwrap_or(0),
        flops_text(big.flops.total()),
        seconds_text(big.flops.total() / (rate * 1e9 * efficiency))
    );
    Ok(s)
}

/// The GEMM floor of the points of `plan` that `out` does not hold yet: their operations (run
/// in training groups) and the bare GEMM rate of their largest group's shape on all cores, in
/// GFLOP/s (`None` when nothing is left to run).
pub fn plan_floor(plan: &Plan, out: &Path) -> anyhow::Result<Option<(f64, f64)>> {
    let points = plan.points()?;
    let done: std::collections::HashSet<String> = if out.is_file() {
        read_records(out)?.0.into_iter().map(|r| r.hash).collect()
    } else {
        Default::default()
    };
    let todo: Vec<&giantstep::sweep::Point> = points.iter().filter(|p| !done.contains(&p.hash)).collect();
    let units = work_units(&todo);
    let flops: f64 = units.iter().map(|u| u.flops.total()).sum();
    let Some(big) = units.iter().max_by(|a, b| a.flops.total().total_cmp(&b.flops.total())) else {
        return Ok(None);
    };
    let c = &big.points[0].config;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rate = giantstep::bench::calibrate_gemm(c.precision, c.network.d, c.network.p, cores, c.chunk)?;
    Ok(Some((flops, rate)))
}

/// The training batch size of a point's configuration (`?` when it does not resolve).
fn train_n(c: &giantstep::Config) -> String {
    c.resolve().map_or_else(|_| "?".into(), |v| v.train_n().to_string())
}
