//! `giantstep`: the command-line front end. Thin: it turns flags into a validated configuration,
//! calls the library, and prints. Errors print as one line on stderr and exit with code 2.

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use giantstep::bench::Workload;

/// `println!` that returns an error instead of panicking when stdout cannot be written (a full
/// disk, `> /dev/full`); a closed pipe ends the program quietly (see `main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err(crate::StdoutError)?
    }};
}
/// `print!` as [`out!`].
macro_rules! out_no_newline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut o = std::io::stdout().lock();
        write!(o, $($arg)*).and_then(|_| o.flush()).map_err(crate::StdoutError)?
    }};
}

/// A failed write to stdout: exit 1 with one line (a closed pipe: exit 0, quietly).
#[derive(Debug)]
pub(crate) struct StdoutError(pub(crate) std::io::Error);

impl std::fmt::Display for StdoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot write to stdout")
    }
}

impl std::error::Error for StdoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}
use giantstep::config::{apply_set, parse_table, set_key};
use giantstep::{Config, RunResult};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod plot;
mod reproduce;
mod summary;
mod sweep_cmd;
mod tables;
mod theory_cmd;

/// Feature learning in two-layer networks after a few giant gradient steps: simulation and theory.
#[derive(Parser, Debug)]
#[command(name = "giantstep", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Simulate T giant steps, fit the ridge readout, and report overlaps and errors.
    Run(RunArgs),
    /// Predict what a few giant steps learn (docs/theory.md): Hermite coefficients, leap index,
    /// learnable subspaces, blocked directions, closed forms, error floors.
    Theory(theory_cmd::TheoryArgs),
    /// Run a plan (base configuration × axes) into a JSON-lines record file; resumable, shardable.
    Sweep(sweep_cmd::SweepArgs),
    /// Union record files (shards) of one plan without duplicates.
    Merge(sweep_cmd::MergeArgs),
    /// Draw a figure from a record file (.svg or .png).
    Plot(PlotArgs),
    /// Reproduce an experiment of the paper: records, figures and a markdown summary.
    Reproduce(reproduce::ReproduceArgs),
    /// Time each phase of a standard workload against the bare GEMM rate of this binary.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
struct BenchArgs {
    /// What to time: "standard" (each kernel phase of one step and two readouts), "notebook" (the
    /// notebook's six one-step runs) or "stairway" (one T = 1..6 group of the paper-scale
    /// stairway figure); the last two as whole runs, each phase beside its GEMM floor.
    #[arg(long, default_value = "standard")]
    workload: String,
    /// The smaller variant (standard: d = 256, p = 512 instead of d = 512, p = 1024; notebook:
    /// d = 256, p = 512; stairway: d = p = 256).
    #[arg(long)]
    small: bool,
    /// f64 or f32 [default: f32 for the stairway, as its plan; f64 otherwise].
    #[arg(long)]
    precision: Option<String>,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Samples per chunk.
    #[arg(long, default_value_t = 4096)]
    chunk: usize,
    /// Stream version of the samples (the configuration key `stream`: 2, or 1 as in records
    /// written before version 2).
    #[arg(long, default_value_t = 2)]
    stream: u32,
    /// Send every product to the `gemm` crate, with the panel kernel (the features' products, the
    /// gradient's and the readout's Gram triangle) off: the numbers are the same; for timing the
    /// two side by side.
    #[arg(long)]
    gemm_only: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

fn cmd_bench(args: &BenchArgs) -> anyhow::Result<()> {
    giantstep::bench::gemm_only(args.gemm_only);
    let runs = match args.workload.as_str() {
        "standard" => None,
        "notebook" => Some(giantstep::bench::Runs::Notebook),
        "stairway" => Some(giantstep::bench::Runs::Stairway),
        other => bail!(
            "--workload must be standard, notebook or stairway, but is {}",
            shown(other)
        ),
    };
    let default = if runs == Some(giantstep::bench::Runs::Stairway) {
        "f32"
    } else {
        "f64"
    };
    let precision: giantstep::config::Precision =
        giantstep::config::parse_named("--precision", args.precision.as_deref().unwrap_or(default))?;
    if args.chunk == 0 {
        bail!("--chunk must be > 0, but is 0");
    }
    if giantstep::config::Stream::from_number(args.stream).is_none() {
        bail!("--stream must be 1 or 2, but is {}", args.stream);
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads = if args.threads > 4 * cores {
        eprintln!(
            "giantstep: warning: {} threads on {cores} cores would only add overhead; using {}",
            args.threads,
            4 * cores
        );
        4 * cores
    } else {
        args.threads
    };
    if let Some(runs) = runs {
        if args.chunk != 4096 {
            bail!("--chunk applies to the standard workload; the notebook and stairway workloads run their configurations as they are");
        }
        return bench_runs_report(runs, args, precision, threads);
    }
    let mut workload = if args.small {
        Workload::small()
    } else {
        Workload::standard()
    };
    workload.precision = precision;
    workload.threads = threads;
    workload.chunk = args.chunk;
    workload.stream = args.stream;
    let r = giantstep::bench::bench(&workload)?;
    if args.json {
        out!("{}", serde_json::to_string(&r)?);
    } else {
        out!(
            "workload {}: d = {}, p = {}, n = {} (= d^2), n_test = {}, {:?}, {} threads, chunk {}",
            r.workload,
            r.d,
            r.p,
            r.n,
            r.n_test,
            r.precision,
            r.threads,
            r.chunk
        );
        out!(
            "{:<8} {:>9} {:>9} {:>11} {:>9} {:>12}",
            "phase",
            "seconds",
            "GFLOP/s",
            "efficiency",
            "non-GEMM",
            "samples/s"
        );
        for ph in &r.phases {
            let (g, e) = if ph.flops > 0.0 {
                (format!("{:.1}", ph.gflops), format!("{:.0}%", 100.0 * ph.efficiency))
            } else {
                ("-".into(), "-".into())
            };
            out!(
                "{:<8} {:>9.2} {:>9} {:>11} {:>8.1}% {:>12.3e}",
                ph.name,
                ph.seconds,
                g,
                e,
                100.0 * ph.non_gemm_share,
                ph.samples_per_s
            );
        }
        out!(
            "bare GEMM ({}x{} by {}x{} on each thread, {} kernels): {:.1} GFLOP/s",
            r.chunk,
            r.d,
            r.d,
            r.p,
            r.gemm_isa,
            r.bare_gemm_gflops
        );
        let time_of = |name: &str| r.phases.iter().find(|ph| ph.name == name).map_or(0.0, |ph| ph.seconds);
        if time_of("step") > 0.0 {
            out!(
                "Gaussian generation: {:.1}% of a step's time; inputs and labels: {:.1}%",
                100.0 * time_of("gaussian") / time_of("step"),
                100.0 * time_of("data") / time_of("step")
            );
            let other = if r.gaussian_stream == 1 { 2 } else { 1 };
            out!(
                "Gaussian kernels ({}, stream {}): {:.0} M normals/s per thread, {:.2}x the scalar path ({:.0} M/s), {:.2}x stream {other} ({:.0} M/s), measured beside them",
                r.gaussian_isa,
                r.gaussian_stream,
                r.gaussian_per_s / 1e6,
                r.gaussian_per_s / r.gaussian_scalar_per_s,
                r.gaussian_scalar_per_s / 1e6,
                r.gaussian_per_s / r.gaussian_other_per_s,
                r.gaussian_other_per_s / 1e6
            );
        }
        out!("step + readout efficiency: {:.0}% of bare GEMM", 100.0 * r.efficiency);
        if !r.shapes.is_empty() {
            let shapes: Vec<String> = r
                .shapes
                .iter()
                .skip(1)
                .map(|s| format!("{} {:.2}", s.name, s.of_bare))
                .collect();
            out!(
                "GEMM shapes of a chunk against the bare one (one thread, best of {}): {}",
                giantstep::bench::SHAPE_TRIALS,
                shapes.join(", ")
            );
        }
        out!(
            "peak RSS {:.0} MB, total {:.1} s",
            r.peak_rss_bytes as f64 / 1e6,
            r.total_seconds
        );
    }
    Ok(())
}

/// `giantstep bench --workload notebook|stairway`: the runs' phases beside their GEMM floor.
fn bench_runs_report(
    runs: giantstep::bench::Runs,
    args: &BenchArgs,
    precision: giantstep::config::Precision,
    threads: usize,
) -> anyhow::Result<()> {
    let r = giantstep::bench::bench_runs(runs, args.small, precision, threads, args.stream)?;
    if args.json {
        out!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    out!(
        "workload {}: {:?}, {} threads, {} run(s):",
        r.workload,
        r.precision,
        r.threads,
        r.runs.len()
    );
    for run in &r.runs {
        out!("  {run}");
    }
    out!("{:<8} {:>9} {:>11} {:>8}", "phase", "seconds", "GEMM floor", "ratio");
    for ph in &r.phases {
        let ratio = if ph.floor_seconds > 0.0 {
            format!("{:.2}x", ph.seconds / ph.floor_seconds)
        } else {
            "-".into()
        };
        out!(
            "{:<8} {:>9.2} {:>11.2} {:>8}",
            ph.name,
            ph.seconds,
            ph.floor_seconds,
            ratio
        );
    }
    out!(
        "{:<8} {:>9.2} {:>11.2} {:>7.2}x",
        "total",
        r.wall_seconds,
        r.floor_seconds,
        r.wall_seconds / r.floor_seconds
    );
    if r.per_run.len() > 1 {
        out!("per run (seconds / GEMM floor):");
        out!(
            "  {:<44} {:>12} {:>12} {:>12} {:>12}",
            "run",
            "step",
            "readout",
            "test",
            "total"
        );
        for run in &r.per_run {
            let cell = |name: &str| {
                run.phases
                    .iter()
                    .find(|ph| ph.name == name && ph.floor_seconds > 0.0)
                    .map_or("-".to_string(), |ph| {
                        format!("{:.2} {:.2}x", ph.seconds, ph.seconds / ph.floor_seconds)
                    })
            };
            out!(
                "  {:<44} {:>12} {:>12} {:>12} {:>12}",
                run.run,
                cell("step"),
                cell("readout"),
                cell("test"),
                format!("{:.2} {:.2}x", run.wall_seconds, run.wall_seconds / run.floor_seconds)
            );
        }
    }
    out!(
        "GEMM floor: each run's operations at the mean of the bare GEMM rates of this process measured just before and after it ({:.1} GFLOP/s in effect; {:.1} to {:.1} over {} measurements, {} kernels); peak RSS {:.0} MB",
        r.bare_gemm_gflops,
        r.bare_gemm_rates.iter().copied().fold(f64::INFINITY, f64::min),
        r.bare_gemm_rates.iter().copied().fold(0.0, f64::max),
        r.bare_gemm_rates.len(),
        r.gemm_isa,
        r.peak_rss_bytes as f64 / 1e6
    );
    Ok(())
}

#[derive(Args, Debug)]
struct PlotArgs {
    /// stairway, cosines or overlaps.
    #[arg(value_enum)]
    figure: plot::Figure,
    /// Record file written by `giantstep sweep`.
    records: PathBuf,
    /// Output figure (.svg or .png).
    #[arg(long, short = 'o')]
    out: PathBuf,
}

#[derive(Args, Debug, Default)]
struct RunArgs {
    /// TOML configuration file (keys as in the README); flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override any configuration key, e.g. --set train.eta_exp=0 (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Target: an expression over z1..zr (e.g. "z1 + z1*z2") or a preset name (e.g. staircase2).
    #[arg(long)]
    target: Option<String>,
    /// Input dimension d.
    #[arg(long)]
    d: Option<String>,
    /// Width p.
    #[arg(long)]
    p: Option<String>,
    /// Batch size per step: an integer, "4d", "d^1.5", "0.5 d^2".
    #[arg(long)]
    n: Option<String>,
    /// Number of giant steps T.
    #[arg(long)]
    steps: Option<String>,
    /// Activation: relu, erf, tanh, he1..he8, linear, optionally shifted (relu:0.5).
    #[arg(long)]
    activation: Option<String>,
    /// Learning-rate prefactor: eta = eta0 · p · (n/d)^eta_exp.
    #[arg(long)]
    eta0: Option<String>,
    /// Master seed.
    #[arg(long)]
    seed: Option<String>,
    /// Worker threads (0 = all cores); results do not depend on it.
    #[arg(long)]
    threads: Option<String>,
    /// Print one JSON object (the schema is in the README) instead of the summary.
    #[arg(long)]
    json: bool,
    /// Also write the JSON result to this file (written atomically at the end).
    #[arg(long, short = 'o', value_name = "FILE")]
    out: Option<PathBuf>,
    /// No progress messages on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl RunArgs {
    /// Builds the configuration: file, then short flags, then --set.
    fn config(&self) -> anyhow::Result<Config> {
        let mut table = match &self.config {
            Some(path) => {
                let text = giantstep::config::read_text_file(path)
                    .with_context(|| format!("cannot read configuration file {}", path.display()))?;
                parse_table(&text, &path.display().to_string())?
            }
            None => toml::Table::new(),
        };
        if let Some(t) = &self.target {
            if let Some(section) = table.get_mut("target").and_then(|v| v.as_table_mut()) {
                section.remove("expr");
                section.remove("preset");
            }
            let key = if giantstep::target::preset_expr(t).is_ok() {
                "target.preset"
            } else {
                "target.expr"
            };
            // A string as given (expressions may contain '=' or quotes).
            set_key(&mut table, key, toml::Value::String(t.clone()))?;
        }
        let short: [(&str, &Option<String>); 8] = [
            ("network.d", &self.d),
            ("network.p", &self.p),
            ("train.n", &self.n),
            ("train.steps", &self.steps),
            ("network.activation", &self.activation),
            ("train.eta0", &self.eta0),
            ("seed", &self.seed),
            ("threads", &self.threads),
        ];
        for (key, value) in short {
            if let Some(v) = value {
                apply_set(&mut table, &format!("{key}={v}"))?;
            }
        }
        for s in &self.sets {
            apply_set(&mut table, s).map_err(|e| {
                anyhow::anyhow!("--set: {}", e.to_string().trim_start_matches("invalid configuration: "))
            })?;
        }
        // Validated by the caller after the thread count is clamped (see cmd_run).
        Ok(Config::from_table(table)?)
    }
}

/// A user's value in a message: quoted, control characters escaped, cut to 80 characters.
pub(crate) fn shown(value: &str) -> String {
    format!("'{}'", giantstep::error::cut(value))
}

/// Checks that a record file can be appended to (it may exist).
pub(crate) fn check_writable_append(path: &Path) -> anyhow::Result<()> {
    if is_special(path) {
        bail!(
            "--out must be a regular file (records are appended to it and resumed from it), but {} is not",
            path.display()
        );
    }
    if path.exists() {
        if path.is_dir() {
            bail!("cannot write output {}: it is a directory", path.display());
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(|_| ())
            .with_context(|| format!("cannot write output {}", path.display()))
    } else {
        check_writable(path)
    }
}

/// Checks up front that `path` can be written, so that a long run does not fail at the end.
pub(crate) fn check_writable(path: &Path) -> anyhow::Result<()> {
    if is_special(path) {
        // Written through at the end (opening a FIFO now would wait for its reader).
        return Ok(());
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if path.is_dir() {
        bail!("cannot write output {}: it is a directory", path.display());
    }
    let probe = dir.join(format!(".giantstep-probe-{}", std::process::id()));
    std::fs::File::create(&probe).map(|_| ()).with_context(|| {
        format!(
            "cannot write output {}: directory {} is not writable",
            path.display(),
            dir.display()
        )
    })?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Refuses an output that is also one of the command's inputs (the same file: by device and
/// inode, so that links and `./` spellings are caught), which writing would replace.
pub(crate) fn refuse_alias(out: &Path, inputs: &[&Path]) -> anyhow::Result<()> {
    let Ok(o) = std::fs::metadata(out) else {
        return Ok(()); // not there yet: no input can be it
    };
    for input in inputs {
        if let Ok(i) = std::fs::metadata(input) {
            if same_file(&o, &i) {
                bail!(
                    "the output {} is also an input ({}); write it to another file",
                    out.display(),
                    input.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata) -> bool {
    false
}

/// Whether `path` exists and is neither a regular file nor a directory (`/dev/null`,
/// `/dev/stdout`, a FIFO, a device): such an output is written through, never replaced.
pub(crate) fn is_special(path: &Path) -> bool {
    // `/dev/stdout` with stdout redirected to a file resolves to that regular file: it is
    // still written through (replacing it would swap the file under the shell's redirection).
    let device_path = path.starts_with("/dev") || path.starts_with("/proc");
    let fd_link = std::fs::read_link(path).is_ok_and(|t| t.starts_with("/proc") || t.starts_with("/dev"));
    (device_path || fd_link) && std::fs::metadata(path).is_ok_and(|m| !m.is_dir())
        || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

/// The library's long-run warning ([`giantstep::bench::long_run_warning`]) on stderr.
fn warn_if_long(resolved: &giantstep::ValidConfig) {
    if let Some(w) = giantstep::bench::long_run_warning(resolved) {
        eprintln!("giantstep: warning: {w}; -q silences this");
    }
}

/// Writes `text` to `path` atomically (temporary file in the same directory, then rename); an
/// existing special file (`/dev/null`, `/dev/stdout`, a FIFO) is written through instead.
pub(crate) fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    if is_special(path) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .with_context(|| format!("cannot write output {}", path.display()));
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write output {}", path.display()))
}

fn cmd_run(args: &RunArgs) -> anyhow::Result<()> {
    let mut cfg = args.config()?;
    if let Some(out) = &args.out {
        check_writable(out)?;
        refuse_alias(out, &args.config.iter().map(PathBuf::as_path).collect::<Vec<_>>())?;
    }
    if let Some(w) = giantstep::config::cap_threads(&mut cfg) {
        if !args.quiet {
            eprintln!("giantstep: warning: {w}");
        }
    }
    let cfg = cfg.resolve()?;
    giantstep::preflight(&cfg)?;
    if !args.quiet {
        warn_if_long(&cfg);
    }
    let show_progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut progress = |msg: &str| {
        if show_progress {
            eprint!("\r\x1b[2K{msg} ...");
        }
    };
    let options = giantstep::RunOptions {
        observer: Some(&mut progress),
        ..Default::default()
    };
    let result: RunResult = giantstep::run_with(&cfg, options)?;
    if show_progress {
        eprint!("\r\x1b[2K");
    }
    let json = serde_json::to_string(&result)?;
    if let Some(out) = &args.out {
        write_atomic(out, &(json.clone() + "\n"))?;
    }
    if args.json {
        out!("{json}");
    } else {
        out_no_newline!("{}", summary::render(&result));
    }
    Ok(())
}

/// Caps rayon's global pool (used by the theory's curves) at 4 threads per core: a huge
/// `RAYON_NUM_THREADS` would otherwise start that many threads and hang the machine.
fn cap_global_threads() {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let asked = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok());
    if asked.is_some_and(|n| n > 4 * cores) {
        let _ = rayon::ThreadPoolBuilder::new().num_threads(4 * cores).build_global();
    }
}

fn main() -> ExitCode {
    cap_global_threads();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match &cli.command {
        Command::Run(args) => cmd_run(args).map(|_| true),
        Command::Theory(args) => theory_cmd::cmd_theory(args).map(|_| true),
        Command::Sweep(args) => sweep_cmd::cmd_sweep(args),
        Command::Merge(args) => sweep_cmd::cmd_merge(args).map(|_| true),
        Command::Plot(args) => check_writable(&args.out)
            .and_then(|_| refuse_alias(&args.out, &[&args.records]))
            .and_then(|_| plot::cmd_plot(args.figure, &args.records, &args.out))
            .map(|_| true),
        Command::Reproduce(args) => reproduce::cmd_reproduce(args),
        Command::Bench(args) => cmd_bench(args).map(|_| true),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        // Some sweep points failed: they were reported and recorded.
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            // A closed pipe (e.g. `| head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("giantstep: error: {}", one_line(&format!("{e:#}")));
            // Output that could not be written is a failure of the environment, not of the input.
            if e.chain().any(|c| c.downcast_ref::<StdoutError>().is_some()) {
                return ExitCode::from(1);
            }
            ExitCode::from(2)
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
