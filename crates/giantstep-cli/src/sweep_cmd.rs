//! `giantstep sweep` and `giantstep merge`.

use anyhow::Context;
use clap::Args;
use giantstep::sweep::{merge, run_sweep, Plan, Progress, Shard, SweepSummary};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The plan (TOML: [base] configuration and [axes]).
    plan: PathBuf,
    /// Record file (JSON lines); finished points in it are skipped.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Points run at the same time (each with cores/jobs threads).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Run only the points with index % N == i (e.g. $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).
    #[arg(long)]
    shard: Option<String>,
    /// No progress bar.
    #[arg(long, short = 'q')]
    quiet: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Record files (shards) of one plan.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// The merged record file (written atomically).
    #[arg(long, short = 'o')]
    out: PathBuf,
}

/// Loads a plan file.
pub fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read plan {}", path.display()))?;
    Ok(Plan::from_toml(&text, &path.display().to_string())?)
}

/// Runs a sweep with a progress bar on a terminal; returns the summary.
pub fn sweep_with_progress(
    plan: &Plan,
    out: &Path,
    shard: Option<Shard>,
    jobs: usize,
    quiet: bool,
) -> anyhow::Result<SweepSummary> {
    let show = !quiet && std::io::stderr().is_terminal();
    let bar = indicatif::ProgressBar::hidden();
    if show {
        bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} points  eta {eta}  {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
    }
    let progress = |p: Progress<'_>| match p {
        Progress::Start { todo, .. } => bar.set_length(todo as u64),
        Progress::Done { point, error } => {
            bar.inc(1);
            let c = &point.config;
            bar.set_message(format!(
                "last: #{} d={} n={} T={} seed={}",
                point.index,
                c.network.d,
                c.train_n(),
                c.train.steps,
                c.seed
            ));
            if let Some(e) = error {
                bar.suspend(|| eprintln!("giantstep: point {} failed: {e}", point.index));
            }
        }
    };
    let summary = run_sweep(plan, out, shard, jobs, &progress)?;
    bar.finish_and_clear();
    Ok(summary)
}

pub fn cmd_sweep(args: &SweepArgs) -> anyhow::Result<bool> {
    let plan = load_plan(&args.plan)?;
    let shard = match &args.shard {
        Some(s) => Some(s.parse::<Shard>()?),
        None => None,
    };
    if args.jobs == 0 {
        anyhow::bail!("--jobs must be >= 1, but is 0");
    }
    crate::check_writable_append(&args.out)?;
    let s = sweep_with_progress(&plan, &args.out, shard, args.jobs, args.quiet)?;
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
            args.out.display()
        );
    }
    Ok(s.failed == 0)
}

pub fn cmd_merge(args: &MergeArgs) -> anyhow::Result<()> {
    crate::check_writable(&args.out)?;
    let records = merge(&args.inputs)?;
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
