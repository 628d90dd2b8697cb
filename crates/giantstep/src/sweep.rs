//! Sweeps: a plan (a base configuration plus axes) expands into points; each point runs as an
//! independent [`crate::run()`] and is appended to a JSON-lines record file as soon as it finishes.
//! Rerunning skips finished points (resume), `--shard i/N` runs a deterministic subset, and
//! [`merge`] unions shards. A point's result does not depend on where it ran.
//!
//! Plan format (TOML):
//!
//! ```toml
//! name = "stairway"            # optional
//! figure = "stairway"          # optional: stairway | cosines | overlaps
//! [base]                       # any keys of `giantstep run`
//! target = { preset = "stairway-he124" }
//! network = { d = 128, p = 256 }
//! [axes]                       # dotted keys; first axis varies slowest
//! "train.n" = { from = 0.25, to = 2.25, step = 0.25, power_of_d = true }   # n = d^0.25 ... d^2.25
//! "train.steps" = "1..=3"      # inclusive integer range ("0..3" is exclusive)
//! seed = "0..3"
//! "network.activation" = ["relu", "relu:0.5"]
//! ```

use crate::config::{set_key, Config};
use crate::error::{Error, Result};
use crate::run::RunResult;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// Largest number of points of a plan (and of values of one range axis).
pub const MAX_POINTS: usize = 10_000_000;

/// The figure a plan's records are drawn as (`figure = "stairway"` in a plan,
/// `giantstep plot NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    /// Test error against log n / log d, one curve per number of steps, random features, linear
    /// kernel.
    Stairway,
    /// Per step, the neurons' gradient cosines with (w*1, w*2), unit circle and theory line.
    Cosines,
    /// Mean |cos| per teacher direction against the step, with the theory's prediction.
    Overlaps,
}
crate::names::named!(Figure { Stairway => "stairway", Cosines => "cosines", Overlaps => "overlaps" });

/// One axis of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// Dotted configuration key.
    pub key: String,
    /// Its values, in order.
    pub values: Vec<toml::Value>,
}

/// A sweep plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Optional name.
    pub name: Option<String>,
    /// Optional figure to draw from its records.
    pub figure: Option<Figure>,
    /// Base configuration table.
    pub base: toml::Table,
    /// Axes (first varies slowest).
    pub axes: Vec<Axis>,
}

/// One point of a plan.
#[derive(Debug, Clone)]
pub struct Point {
    /// Position in the plan's enumeration.
    pub index: usize,
    /// Resolved configuration (`threads` normalized to 0: it never changes results).
    pub config: Config,
    /// Hash of the configuration.
    pub hash: String,
    /// The group of points that differ from this one only in `train.steps` (numbered in order
    /// of first appearance): a group trains once, to its largest `T`, and shares a shard.
    pub group: usize,
}

/// The configuration with `train.steps` blanked: points with the same key form a group.
/// Points with `eval.every_step` are never grouped (each is its own run).
fn group_key(config: &Config, index: usize) -> String {
    if config.eval.every_step {
        return format!("point {index}");
    }
    let mut c = config.clone();
    c.train.steps = 0;
    serde_json::to_string(&c).expect("serializable")
}

/// The hash that keys a point's record: [`fnv_hex`] of the configuration's JSON, without the key
/// `stream` when it is 1, so that a point of stream version 1 has the hash its records had
/// before the key existed.
pub fn config_hash(config: &Config) -> String {
    let json = serde_json::to_string(config).expect("serializable");
    if config.stream != 1 {
        return fnv_hex(&json);
    }
    // The fields before `stream` (seed, threads, precision, chunk) are plain numbers and names,
    // so its first occurrence is the top-level key, written between `chunk` and `target`.
    let key = ",\"stream\":1,";
    debug_assert_eq!(json.find(key).map(|at| at + 1), json.find("\"stream\""));
    fnv_hex(&json.replacen(key, ",", 1))
}

/// FNV-1a 64-bit hash as 16 hex digits (stable across platforms and versions).
pub fn fnv_hex(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

fn axis_values(key: &str, v: &toml::Value) -> Result<Vec<toml::Value>> {
    let bad = |message: String| Error::Value {
        key: format!("axes.\"{key}\""),
        message,
    };
    let values = match v {
        toml::Value::Array(a) => a.clone(),
        toml::Value::String(s) if s.contains("..") => {
            let (lo, hi, inclusive) = match s.split_once("..=") {
                Some((a, b)) => (a, b, true),
                None => {
                    let (a, b) = s.split_once("..").expect("contains ..");
                    (a, b, false)
                }
            };
            let lo: i64 = lo.trim().parse().map_err(|_| {
                bad(format!(
                    "expected an integer range like \"0..10\" or \"1..=6\", but got \"{s}\""
                ))
            })?;
            let hi: i64 = hi.trim().parse().map_err(|_| {
                bad(format!(
                    "expected an integer range like \"0..10\" or \"1..=6\", but got \"{s}\""
                ))
            })?;
            let hi = if inclusive { hi.saturating_add(1) } else { hi };
            if hi.saturating_sub(lo) > MAX_POINTS as i64 {
                return Err(bad(format!(
                    "the range \"{s}\" has {} values; a plan holds at most {MAX_POINTS} points",
                    hi.saturating_sub(lo)
                )));
            }
            (lo..hi).map(toml::Value::Integer).collect()
        }
        toml::Value::Table(t) => {
            for k in t.keys() {
                if !["from", "to", "step", "power_of_d"].contains(&k.as_str()) {
                    return Err(bad(format!(
                        "unknown range key '{k}' (known: from, to, step, power_of_d)"
                    )));
                }
            }
            let num = |k: &str| -> Result<f64> {
                match t.get(k) {
                    Some(toml::Value::Float(f)) => Ok(*f),
                    Some(toml::Value::Integer(i)) => Ok(*i as f64),
                    _ => Err(bad(format!("a range needs a number '{k}'"))),
                }
            };
            let (from, to, step) = (num("from")?, num("to")?, num("step")?);
            if step.is_nan() || step <= 0.0 || !from.is_finite() || !to.is_finite() {
                return Err(bad(format!(
                    "a range needs finite from/to and step > 0, but got from = {from}, to = {to}, step = {step}"
                )));
            }
            let count = ((to - from) / step + 1e-9).floor();
            if !(0.0..=MAX_POINTS as f64).contains(&count) {
                return Err(bad(format!("the range {from}..{to} by {step} is empty or too long")));
            }
            let power = t.get("power_of_d").and_then(|v| v.as_bool()).unwrap_or(false);
            (0..=count as usize)
                .map(|i| {
                    // Round to 1e-9 so that 0.1 + 0.2 prints as 0.3.
                    let x = ((from + i as f64 * step) * 1e9).round() / 1e9;
                    if power {
                        toml::Value::String(format!("d^{x}"))
                    } else {
                        toml::Value::Float(x)
                    }
                })
                .collect()
        }
        other => vec![other.clone()],
    };
    if values.is_empty() {
        return Err(bad("the axis has no values".into()));
    }
    Ok(values)
}

impl Plan {
    /// Parses a plan.
    ///
    /// # Errors
    /// Malformed TOML (with line), unknown plan keys, empty axes, invalid ranges.
    pub fn from_toml(text: &str, source_name: &str) -> Result<Plan> {
        Plan::from_table(crate::config::parse_table(text, source_name)?)
    }

    /// A plan from its table (the parsed TOML: `name`, `figure`, `base`, `axes`).
    ///
    /// # Errors
    /// As [`Plan::from_toml`], except TOML syntax.
    pub fn from_table(mut t: toml::Table) -> Result<Plan> {
        for k in t.keys() {
            if !["name", "figure", "base", "axes"].contains(&k.as_str()) {
                return Err(Error::UnknownKey {
                    key: k.clone(),
                    section: " of a plan".into(),
                    known: "name, figure, base, axes".into(),
                });
            }
        }
        let text_of = |key: &str, v: Option<toml::Value>| match v {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(Error::WrongType {
                key: key.into(),
                message: format!("invalid type: {}, expected a string", other.type_str()),
            }),
        };
        let name = text_of("name", t.remove("name"))?;
        let figure = match text_of("figure", t.remove("figure"))? {
            Some(f) => Some(crate::config::parse_named::<Figure>("figure", &f)?),
            None => None,
        };
        let base = match t.remove("base") {
            Some(toml::Value::Table(b)) => b,
            None => toml::Table::new(),
            Some(v) => return Err(Error::invalid("base", "a table", v.type_str())),
        };
        let axes_table = match t.remove("axes") {
            Some(toml::Value::Table(a)) => a,
            None => toml::Table::new(),
            Some(v) => return Err(Error::invalid("axes", "a table", v.type_str())),
        };
        // toml::Table keeps keys sorted; axes are ordered by key name, which is deterministic.
        let mut axes = Vec::new();
        for (key, v) in axes_table {
            axes.push(Axis {
                values: axis_values(&key, &v)?,
                key,
            });
        }
        let total = axes
            .iter()
            .try_fold(1usize, |acc, a| acc.checked_mul(a.values.len()))
            .filter(|n| *n <= MAX_POINTS);
        if total.is_none() {
            let sizes: Vec<String> = axes.iter().map(|a| format!("{} ({})", a.key, a.values.len())).collect();
            return Err(Error::invalid(
                "axes",
                format!("at most {MAX_POINTS} points in all (split the plan into several)"),
                format!("more ({})", sizes.join(" × ")),
            ));
        }
        let plan = Plan {
            name,
            figure,
            base,
            axes,
        };
        plan.points()?; // validate every point now
        Ok(plan)
    }

    /// The plan's identity: a hash of its base and axes.
    pub fn id(&self) -> String {
        let axes: Vec<(String, Vec<toml::Value>)> =
            self.axes.iter().map(|a| (a.key.clone(), a.values.clone())).collect();
        fnv_hex(&serde_json::to_string(&(&self.base, axes)).expect("serializable"))
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.values.len()).product()
    }

    /// Whether the plan has no points (never: an axis with no values is refused).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All points, validated.
    ///
    /// # Errors
    /// The first invalid point's configuration error, naming the point.
    pub fn points(&self) -> Result<Vec<Point>> {
        self.points_in(None)
    }

    /// Whether the plan names a stream version (`stream` in its base or as an axis).
    pub fn names_stream(&self) -> bool {
        self.base.contains_key("stream") || self.axes.iter().any(|a| a.key == "stream")
    }

    /// The points that continue the records `done` of this plan: drawn with the stream version
    /// of those records when the plan names none (a record file started before stream version
    /// 2 existed resumes with version 1, and one started with a version keeps it), otherwise
    /// [`Plan::points`].
    ///
    /// # Errors
    /// As [`Plan::points`].
    pub fn points_for(&self, done: &[Record]) -> Result<Vec<Point>> {
        match done.first() {
            Some(r) if !self.names_stream() => self.points_in(Some(r.config.stream)),
            _ => self.points(),
        }
    }

    /// [`Plan::points`], with `stream` set in every point when given.
    fn points_in(&self, stream: Option<u32>) -> Result<Vec<Point>> {
        let total = self.len();
        let mut out = Vec::with_capacity(total);
        let mut groups: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for index in 0..total {
            let mut table = self.base.clone();
            let mut rem = index;
            let mut assignment = Vec::new();
            for axis in self.axes.iter().rev() {
                let v = &axis.values[rem % axis.values.len()];
                rem /= axis.values.len();
                assignment.push((axis.key.clone(), v.clone()));
            }
            for (k, v) in assignment.into_iter().rev() {
                set_key(&mut table, &k, v)?;
            }
            if let Some(v) = stream {
                table.insert("stream".into(), toml::Value::Integer(i64::from(v)));
            }
            let mut config = Config::from_table(table)
                .and_then(|c| c.resolve())
                .map_err(|e| Error::PlanPoint {
                    index,
                    error: Box::new(e),
                })?
                .into_config();
            config.threads = 0;
            let hash = config_hash(&config);
            // Two points of one configuration would be one record: a plan never completes.
            if let Some(first) = seen.insert(hash.clone(), index) {
                return Err(Error::invalid(
                    "axes",
                    "values that give every point its own configuration",
                    format!(
                        "point {index} the same as point {first} (axis values that resolve equal); remove the repeat"
                    ),
                ));
            }
            let next = groups.len();
            let group = *groups.entry(group_key(&config, index)).or_insert(next);
            out.push(Point {
                index,
                config,
                hash,
                group,
            });
        }
        Ok(out)
    }
}

/// A deterministic `1/count` of the points: those whose group has `group % count == index`
/// (a group is the set of points that differ only in `train.steps`; without such an axis every
/// point is its own group and the shard is `point index % count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = Error;
    fn from_str(s: &str) -> Result<Shard> {
        let bad = || Error::invalid("shard", "i/N with 0 <= i < N", format!("'{s}'"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether a point belongs to this shard.
    pub fn contains(&self, point: &Point) -> bool {
        point.group % self.count == self.index
    }
}

/// One line of a record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Hash of the point's configuration.
    pub hash: String,
    /// Identity of the plan it belongs to.
    pub plan: String,
    /// Index of the point in the plan.
    pub index: usize,
    /// Number of points in the plan (lets `merge` tell a complete set from a partial one).
    pub points: usize,
    /// Resolved configuration.
    pub config: Config,
    /// The result (absent when the point failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<RunResult>,
    /// Why the point failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// giantstep version.
    pub version: String,
    /// Wall time of the point.
    pub wall_s: f64,
}

/// How every record line starts (its first field is the hash).
const RECORD_START: &str = "{\"hash\":\"";

/// Longest line of a record file read (64 MiB; a record is a few kilobytes).
pub const MAX_RECORD_LINE: u64 = 64 << 20;

/// Reads a record file. A last line without its newline that does not parse (a write cut short by
/// a kill) is dropped, and the byte length of the valid prefix is returned so that the caller can
/// truncate before appending.
///
/// # Errors
/// [`Error::Io`] if unreadable; [`Error::RecordFile`] for a line that is not a JSON record or
/// is longer than [`MAX_RECORD_LINE`].
pub fn read_records(path: &Path) -> Result<(Vec<Record>, u64)> {
    let io = |e| Error::Io {
        path: path.display().to_string(),
        error: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut reader = std::io::BufReader::new(file);
    let mut records = Vec::new();
    let mut valid = 0u64;
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = std::io::Read::take(&mut reader, MAX_RECORD_LINE + 1)
            .read_line(&mut line)
            .map_err(io)?;
        if n == 0 {
            break;
        }
        number += 1;
        if n as u64 > MAX_RECORD_LINE {
            return Err(Error::RecordFile {
                path: path.display().to_string(),
                message: format!(
                    "is not a giantstep records file (line {number} is longer than {} MiB)",
                    MAX_RECORD_LINE >> 20
                ),
            });
        }
        let complete = line.ends_with('\n');
        if line.trim().is_empty() {
            valid += n as u64;
            continue;
        }
        match serde_json::from_str::<Record>(line.trim_end()) {
            Ok(r) if complete => {
                records.push(r);
                valid += n as u64;
            }
            // A last line without its newline is a record cut short by a kill: drop it and redo
            // its point. Anything else there means this is not a giantstep records file.
            // Only what a record's start can be: a user's note without its newline is not cut.
            Ok(_) | Err(_) if !complete && (line.starts_with(RECORD_START) || RECORD_START.starts_with(line.as_str())) => {
                break
            }
            Ok(_) | Err(_) if !complete => {
                return Err(Error::RecordFile {
                    path: path.display().to_string(),
                    message: format!(
                        "is not a giantstep records file (line {number} is not a JSON record); write the records to another file"
                    ),
                })
            }
            Ok(_) => unreachable!(),
            Err(e) => {
                return Err(Error::RecordFile {
                    path: path.display().to_string(),
                    message: format!("line {number} is not a giantstep JSON record: {e}"),
                })
            }
        }
    }
    Ok((records, valid))
}

/// What a sweep did.
#[derive(Debug, Clone, Default)]
pub struct SweepSummary {
    /// Points of this shard.
    pub shard_points: usize,
    /// Points skipped because they were already in the file.
    pub skipped: usize,
    /// Points run now.
    pub ran: usize,
    /// Points that failed (recorded with their error).
    pub failed: usize,
}

/// Progress events of [`run_sweep`].
pub enum Progress<'a> {
    /// The sweep starts: points to run now, of how many in the shard.
    Start {
        /// Points left to run.
        todo: usize,
        /// Points of the shard.
        total: usize,
        /// Floating-point operations of the points left to run ([`crate::cost`]).
        flops: f64,
    },
    /// A point finished (or failed).
    Done {
        /// The point.
        point: &'a Point,
        /// Its error, if it failed.
        error: Option<&'a str>,
        /// Its share of the operations (a group's operations split evenly over its points).
        flops: f64,
    },
}

/// The work of a sweep: groups of points that train once (see [`Point::group`]).
#[derive(Debug, Clone)]
pub struct WorkUnit<'a> {
    /// The points of the group still to run, in plan order.
    pub points: Vec<&'a Point>,
    /// Operations of running them together.
    pub flops: crate::cost::Flops,
}

/// Groups points into work units: the points of a group run as one training to their largest
/// `T`, evaluated at each of their `T` ([`crate::run_prefixes`]).
pub fn work_units<'a>(points: &[&'a Point]) -> Vec<WorkUnit<'a>> {
    let mut units: Vec<WorkUnit<'a>> = Vec::new();
    let mut by_group: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for p in points {
        match by_group.get(&p.group) {
            Some(&u) => units[u].points.push(p),
            None => {
                by_group.insert(p.group, units.len());
                units.push(WorkUnit {
                    points: vec![p],
                    flops: Default::default(),
                });
            }
        }
    }
    for u in &mut units {
        let longest = u.points.iter().max_by_key(|p| p.config.train.steps).expect("non-empty");
        if let Ok(valid) = longest.config.resolve() {
            u.flops = crate::cost::run_flops(&valid, u.points.len());
        }
    }
    units
}

/// Runs a work unit: one result per point, in the unit's order.
fn run_unit(
    unit: &WorkUnit<'_>,
    threads: usize,
    cancel: &Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    baselines: &std::sync::Arc<crate::run::BaselineCache>,
    target: Option<&crate::CustomTarget>,
) -> Vec<(Result<RunResult>, f64)> {
    let start = std::time::Instant::now();
    if let [point] = unit.points[..] {
        let mut cfg = point.config.clone();
        cfg.threads = threads;
        let options = crate::run::RunOptions {
            cancel: cancel.clone(),
            baselines: Some(baselines.clone()),
            target: target.cloned(),
            ..Default::default()
        };
        let r = cfg.resolve().and_then(|cfg| crate::run::run_with(&cfg, options));
        return vec![(r, start.elapsed().as_secs_f64())];
    }
    let longest = unit
        .points
        .iter()
        .max_by_key(|p| p.config.train.steps)
        .expect("non-empty");
    let mut cfg = longest.config.clone();
    cfg.threads = threads;
    let eval_at: Vec<usize> = unit.points.iter().map(|p| p.config.train.steps).collect();
    let outcomes = match cfg.resolve().and_then(|cfg| {
        crate::run::run_prefixes_shared(&cfg, &eval_at, cancel.clone(), Some(baselines.clone()), target.cloned())
    }) {
        Ok(o) => o,
        Err(e) => unit.points.iter().map(|_| Err(e.clone())).collect(),
    };
    // The group's wall time, split evenly over its points.
    let wall = start.elapsed().as_secs_f64() / unit.points.len() as f64;
    outcomes.into_iter().map(|o| (o, wall)).collect()
}

/// How a sweep runs: which shard, how many points at a time, threads per point, a cancel flag.
#[derive(Debug, Clone, Default)]
pub struct SweepOptions {
    /// Run only this shard of the points (all when absent).
    pub shard: Option<Shard>,
    /// Points (training groups) run at a time (at least 1).
    pub jobs: usize,
    /// Threads per point (default: cores / jobs).
    pub threads: Option<usize>,
    /// Stops the sweep when set: no new point starts, points in flight stop between chunks and
    /// are not recorded, and [`run_sweep`] returns [`Error::Cancelled`]; finished records stay.
    pub cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Labels of every point from this function instead of the plan's target (a notebook's
    /// callable); the records show its name as `target.expr`. Points are still keyed by the
    /// plan: another function into the same record file would skip the points already there.
    pub target: Option<crate::CustomTarget>,
}

/// Runs the points of `options.shard` that `out` does not hold yet, `options.jobs` at a time,
/// appending each record as it finishes.
///
/// # Errors
/// Records of a different plan in `out`, an unreadable or unwritable `out`, cancellation.
pub fn run_sweep(
    plan: &Plan,
    out: &Path,
    options: &SweepOptions,
    progress: &(dyn Fn(Progress<'_>) + Sync),
) -> Result<SweepSummary> {
    let SweepOptions {
        shard,
        jobs,
        threads,
        ref cancel,
        ref target,
    } = *options;
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let plan_id = plan.id();
    let (file, valid, done) = open_records(out, &plan_id)?;
    let points: Vec<Point> = plan
        .points_for(&done)?
        .into_iter()
        .filter(|p| shard.is_none_or(|s| s.contains(p)))
        .collect();
    let done_hashes: std::collections::HashSet<String> = done
        .into_iter()
        .filter(|r| r.result.is_some())
        .map(|r| r.hash)
        .collect();
    let todo: Vec<&Point> = points
        .iter()
        .filter(|p| !done_hashes.contains(p.hash.as_str()))
        .collect();
    let summary = SweepSummary {
        shard_points: points.len(),
        skipped: points.len() - todo.len(),
        ..Default::default()
    };
    let units = work_units(&todo);
    progress(Progress::Start {
        todo: todo.len(),
        total: points.len(),
        flops: units.iter().map(|u| u.flops.total()).sum(),
    });
    let jobs = jobs.clamp(1, units.len().max(1));
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let threads_per_job = threads.unwrap_or(cores / jobs).max(1);
    let next = AtomicUsize::new(0);
    // Points that differ only in the learning rate share their random-features baseline.
    let baselines = std::sync::Arc::new(crate::run::BaselineCache::new());
    let writer = RecordWriter {
        out,
        plan_id: &plan_id,
        total_points: plan.len(),
        state: Mutex::new(WriterState {
            file,
            summary,
            failure: None,
            kept: valid,
        }),
    };
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= units.len() || cancelled() || writer.failed() {
                    break;
                }
                let unit = &units[i];
                let share = unit.flops.total() / unit.points.len() as f64;
                for (point, (outcome, wall_s)) in
                    unit.points
                        .iter()
                        .zip(run_unit(unit, threads_per_job, cancel, &baselines, target.as_ref()))
                {
                    if matches!(outcome, Err(Error::Cancelled)) {
                        continue;
                    }
                    let Some(error) = writer.write(point, outcome, wall_s) else {
                        return;
                    };
                    progress(Progress::Done {
                        point,
                        error: error.as_deref(),
                        flops: share,
                    });
                }
            });
        }
    });
    let state = writer.state.into_inner().expect("sweep state");
    match state.failure {
        Some(e) => Err(e),
        None if cancelled() => Err(Error::Cancelled),
        None => Ok(state.summary),
    }
}

/// Opens and locks the record file of a sweep, checks that its records belong to `plan_id`,
/// drops a truncated last line, and returns the file (positioned at its end), the length of its
/// complete records and the records (the points with a result are done; failed points are run
/// again).
fn open_records(out: &Path, plan_id: &str) -> Result<(std::fs::File, u64, Vec<Record>)> {
    let io = |e| Error::Io {
        path: out.display().to_string(),
        error: e,
    };
    // Lock the record file for the whole sweep before reading it: a second sweep on the same
    // file would otherwise truncate and interleave it. The lock is advisory (flock) and released
    // when the file is closed, also when the process is killed.
    if std::fs::metadata(out).is_ok_and(|m| !m.is_file()) {
        return Err(Error::RecordFile {
            path: out.display().to_string(),
            message: "must be a regular file (records are appended to it and resumed from it)".into(),
        });
    }
    let existed = out.exists();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(out)
        .map_err(io)?;
    if let Err(e) = file.try_lock() {
        return Err(match e {
            std::fs::TryLockError::WouldBlock => Error::Locked {
                path: out.display().to_string(),
            },
            std::fs::TryLockError::Error(e) => io(e),
        });
    }
    let refuse = |e: Error| {
        if !existed {
            let _ = std::fs::remove_file(out);
        }
        e
    };
    let (done, valid) = read_records(out).map_err(refuse)?;
    if let Some(other) = done.iter().find(|r| r.plan != plan_id) {
        return Err(Error::RecordFile {
            path: out.display().to_string(),
            message: format!(
                "holds records of a different plan ({}; this plan is {plan_id}); write the records to another file",
                other.plan
            ),
        });
    }
    // Drop a truncated last line before appending.
    file.set_len(valid).map_err(io)?;
    file.seek(std::io::SeekFrom::End(0)).map_err(io)?;
    Ok((file, valid, done))
}

/// The record file of a running sweep, shared by its workers.
struct RecordWriter<'a> {
    out: &'a Path,
    plan_id: &'a str,
    total_points: usize,
    state: Mutex<WriterState>,
}

/// The file, the summary so far, the first write error, and the length of the complete records.
struct WriterState {
    file: std::fs::File,
    summary: SweepSummary,
    failure: Option<Error>,
    kept: u64,
}

impl RecordWriter<'_> {
    /// Whether a write failed (the sweep then stops).
    fn failed(&self) -> bool {
        self.state.lock().map(|s| s.failure.is_some()).unwrap_or(true)
    }

    /// Appends the record of `point`; returns its error message (`Some(None)` for a success), or
    /// `None` when the write failed. One record is one buffer written under the lock; a failed
    /// write (a full disk) is cut back to the last complete record, so the file stays resumable.
    fn write(&self, point: &Point, outcome: Result<RunResult>, wall_s: f64) -> Option<Option<String>> {
        let (result, error) = match outcome {
            Ok(mut r) => {
                r.config.threads = 0;
                (Some(r), None)
            }
            Err(e) => (None, Some(e.to_string())),
        };
        let record = Record {
            hash: point.hash.clone(),
            plan: self.plan_id.to_string(),
            index: point.index,
            points: self.total_points,
            config: point.config.clone(),
            result,
            error: error.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            wall_s,
        };
        let line = serde_json::to_string(&record).expect("serializable") + "\n";
        let mut guard = self.state.lock().expect("sweep state");
        let st = &mut *guard;
        if let Err(e) = st
            .file
            .write_all(line.as_bytes())
            .and_then(|_| st.file.flush())
            .and_then(|_| st.file.sync_data())
        {
            let cut = st
                .file
                .set_len(st.kept)
                .and_then(|_| st.file.seek(std::io::SeekFrom::Start(st.kept)));
            let records = st.summary.skipped + st.summary.ran;
            st.failure = Some(Error::RecordFile {
                path: self.out.display().to_string(),
                message: format!(
                    "cannot be written: {e}{}; {records} points kept, rerun to resume",
                    if cut.is_ok() {
                        ""
                    } else {
                        " (and cutting the partial record failed)"
                    }
                ),
            });
            return None;
        }
        st.kept += line.len() as u64;
        st.summary.ran += 1;
        if error.is_some() {
            st.summary.failed += 1;
        }
        Some(error)
    }
}

/// Unions record files of the same plan without duplicates, sorted by point index. Unless
/// `partial`, every point of the plan must be present.
///
/// # Errors
/// Unreadable inputs, lines that are not records, records of different plans, or (without
/// `partial`) missing points.
pub fn merge(inputs: &[PathBuf], partial: bool) -> Result<Vec<Record>> {
    let mut all: Vec<Record> = Vec::new();
    let mut plan: Option<(String, String)> = None;
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for path in inputs {
        let (records, _) = read_records(path)?;
        for r in records {
            match &plan {
                None => plan = Some((r.plan.clone(), path.display().to_string())),
                Some((p, from)) if *p != r.plan => {
                    return Err(Error::RecordFile {
                        path: path.display().to_string(),
                        message: format!(
                            "holds records of plan {} but {from} holds plan {p}: refusing to merge different plans",
                            r.plan
                        ),
                    })
                }
                _ => {}
            }
            // One record per point; a successful one replaces a failed one (a retried point).
            match seen.get(&r.hash) {
                None => {
                    seen.insert(r.hash.clone(), all.len());
                    all.push(r);
                }
                Some(&i) if all[i].result.is_none() && r.result.is_some() => all[i] = r,
                Some(_) => {}
            }
        }
    }
    all.sort_by_key(|r| r.index);
    if !partial {
        if let Some(first) = all.first() {
            let total = first.points;
            // A record is trusted no further than a plan can be large: it claims its plan's size.
            if let Some(bad) = all
                .iter()
                .find(|r| r.points != total || r.points > MAX_POINTS || r.index >= r.points)
            {
                return Err(Error::RecordFile {
                    path: inputs.first().map(|p| p.display().to_string()).unwrap_or_default(),
                    message: format!(
                        "holds inconsistent records (point {} of {} beside records of {total} points, at most {MAX_POINTS}); not giantstep's records",
                        bad.index, bad.points
                    ),
                });
            }
            let present: std::collections::HashSet<usize> = all.iter().map(|r| r.index).collect();
            if present.len() < total {
                let shown: Vec<String> = (0..total)
                    .filter(|i| !present.contains(i))
                    .take(11)
                    .map(|i| i.to_string())
                    .collect();
                return Err(Error::Incomplete {
                    covered: present.len(),
                    total,
                    missing: format!(
                        "{}{}",
                        shown[..shown.len().min(10)].join(", "),
                        if shown.len() > 10 { ", ..." } else { "" }
                    ),
                });
            }
        }
    }
    Ok(all)
}

/// Points done and missing per shard of a plan, given each shard's record file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardStatus {
    /// Shard index.
    pub shard: usize,
    /// Points of the plan in this shard.
    pub points: usize,
    /// Points with a successful record.
    pub done: usize,
    /// Points whose records are all failures (a rerun retries them).
    pub failed: usize,
}

/// Counts finished points per shard (`files[i]` is shard `i`'s record file; a missing file counts
/// as nothing done).
///
/// # Errors
/// Unreadable files or records of another plan.
pub fn shard_status(plan: &Plan, files: &[PathBuf]) -> Result<Vec<ShardStatus>> {
    let count = files.len();
    let id = plan.id();
    let mut all = Vec::with_capacity(count);
    for f in files {
        let (records, _) = if f.exists() { read_records(f)? } else { (vec![], 0) };
        if let Some(r) = records.iter().find(|r| r.plan != id) {
            return Err(Error::RecordFile {
                path: f.display().to_string(),
                message: format!("holds records of a different plan ({}, expected {id})", r.plan),
            });
        }
        all.push(records);
    }
    // Every shard resumes in the stream version of its own records (`run_sweep`): the points
    // of each version once.
    let mut by_version: std::collections::HashMap<Option<u32>, Vec<Point>> = std::collections::HashMap::new();
    for records in &all {
        let version = records.first().map(|r| r.config.stream);
        if let std::collections::hash_map::Entry::Vacant(e) = by_version.entry(version) {
            e.insert(plan.points_for(records)?);
        }
    }
    let mut out = Vec::with_capacity(count);
    for (i, records) in all.iter().enumerate() {
        let shard = Shard { index: i, count };
        let points = &by_version[&records.first().map(|r| r.config.stream)];
        let mine: std::collections::HashSet<&str> = points
            .iter()
            .filter(|p| shard.contains(p))
            .map(|p| p.hash.as_str())
            .collect();
        let done: std::collections::HashSet<&str> = records
            .iter()
            .filter(|r| r.result.is_some())
            .map(|r| r.hash.as_str())
            .filter(|h| mine.contains(h))
            .collect();
        let failed: std::collections::HashSet<&str> = records
            .iter()
            .filter(|r| r.error.is_some() && mine.contains(r.hash.as_str()) && !done.contains(r.hash.as_str()))
            .map(|r| r.hash.as_str())
            .collect();
        out.push(ShardStatus {
            shard: i,
            points: mine.len(),
            done: done.len(),
            failed: failed.len(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed paper-scale record files (docs/figures, written before stream version 2
    /// existed): every record's hash is [`config_hash`] of its stored configuration (read as
    /// version 1), and their plan's points in the records' version are exactly the records, so
    /// a sweep onto them runs nothing; the same plan in version 2 shares no point with them.
    #[test]
    fn committed_records_resume_with_their_stream_version() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/figures");
        let mut checked = 0;
        for dir in std::fs::read_dir(&root).unwrap() {
            let dir = dir.unwrap().path();
            let (plan, gz) = (dir.join("plan.toml"), dir.join("records.jsonl.gz"));
            if !plan.exists() || !gz.exists() {
                continue;
            }
            let out = std::process::Command::new("python3")
                .args([
                    "-c",
                    "import gzip, sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())",
                ])
                .arg(&gz)
                .output()
                .unwrap();
            assert!(out.status.success(), "gunzip {}", gz.display());
            let file = std::env::temp_dir().join(format!("giantstep-records-{}-{checked}.jsonl", std::process::id()));
            std::fs::write(&file, &out.stdout).unwrap();
            let (records, _) = read_records(&file).unwrap();
            std::fs::remove_file(&file).unwrap();
            let plan = Plan::from_toml(&std::fs::read_to_string(&plan).unwrap(), "plan").unwrap();
            assert!(records.iter().all(|r| r.config.stream == 1 && r.plan == plan.id()));
            for r in &records {
                assert_eq!(config_hash(&r.config), r.hash, "{}: record {}", dir.display(), r.index);
            }
            let want: std::collections::BTreeSet<&str> = records.iter().map(|r| r.hash.as_str()).collect();
            let points = plan.points_for(&records).unwrap();
            let got: std::collections::BTreeSet<&str> = points.iter().map(|p| p.hash.as_str()).collect();
            assert_eq!(got, want, "{}", dir.display());
            let fresh = plan.points().unwrap();
            assert!(fresh
                .iter()
                .all(|p| p.config.stream == 2 && !want.contains(p.hash.as_str())));
            checked += 1;
        }
        assert!(checked >= 2, "{checked} record files in {}", root.display());
    }

    #[test]
    fn only_a_cut_record_is_dropped_from_the_end() {
        let record = Record {
            hash: "h0".into(),
            plan: "p".into(),
            index: 0,
            points: 1,
            config: Config::default(),
            result: None,
            error: Some("failed".into()),
            version: "0".into(),
            wall_s: 0.0,
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.starts_with(RECORD_START));
        let dir = std::env::temp_dir().join(format!("giantstep-cut-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.jsonl");
        let good = format!("{line}\n");
        for (tail, dropped) in [
            (&line[..line.len() / 2], true),
            ("{\"ha", true),
            ("{", true),
            ("my note", false),
            ("{\"a\": 1}", false),
        ] {
            std::fs::write(&path, format!("{good}{tail}")).unwrap();
            match read_records(&path) {
                Ok((records, valid)) => {
                    assert!(dropped, "{tail}");
                    assert_eq!((records.len(), valid), (1, good.len() as u64));
                }
                Err(e) => assert!(!dropped && matches!(e, Error::RecordFile { .. }), "{tail}: {e:?}"),
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    const PLAN: &str = r#"
name = "t"
[base]
network = { d = 8, p = 4 }
eval = { n_test = 16, theory = false }
[axes]
"train.n" = { from = 0.5, to = 1.5, step = 0.5, power_of_d = true }
seed = "0..2"
"train.steps" = [1, 2]
"#;

    #[test]
    fn plan_expands_to_the_cartesian_product() {
        let p = Plan::from_toml(PLAN, "p").unwrap();
        assert_eq!(p.len(), 12);
        let pts = p.points().unwrap();
        let hashes: std::collections::HashSet<_> = pts.iter().map(|p| p.hash.clone()).collect();
        assert_eq!(hashes.len(), 12);
        // seed is the first axis in key order, "train.n" next, "train.steps" fastest.
        assert_eq!(pts[0].config.train.n, crate::config::BatchSize::Expr("d^0.5".into()));
        assert_eq!(pts[1].config.train.steps, 2);
        assert_eq!(pts[6].config.seed, 1);
    }

    #[test]
    fn plan_errors() {
        // Each error names its key; its kind is the variant.
        let unknown = |e: &Error| matches!(e, Error::UnknownKey { .. });
        let value = |e: &Error| matches!(e, Error::Value { .. });
        let invalid = |e: &Error| matches!(e, Error::Invalid { .. });
        let point0 = |e: &Error| matches!(e, Error::PlanPoint { index: 0, .. });
        type Kind = fn(&Error) -> bool;
        let wrong_type = |e: &Error| matches!(e, Error::WrongType { .. });
        let cases: [(&str, &str, Kind); 13] = [
            ("[axes]\nseed = [1, 1]", "axes", invalid),
            (
                "[axes]\n\"train.eta0\" = { from = 1.0, to = 1.0000000004, step = 0.0000000001 }",
                "axes",
                invalid,
            ),
            ("name = 3", "name", wrong_type),
            ("figure = [1]", "figure", wrong_type),
            ("foo = 1", "foo", unknown),
            ("[axes]\nseed = []", "axes.\"seed\"", value),
            ("[axes]\nseed = \"3..3\"", "axes.\"seed\"", value),
            ("[axes]\n\"train.etta\" = [1]", "train.etta", point0),
            ("[axes]\nseed = \"a..b\"", "axes.\"seed\"", value),
            ("[axes]\nx = { from = 0, to = 1, step = 0 }", "axes.\"x\"", value),
            ("figure = \"pie\"", "figure", invalid),
            ("base = 3", "base", invalid),
            ("[base]\nnetwork = { p = 3 }", "network.p", point0),
        ];
        for (text, key, kind) in cases {
            let e = Plan::from_toml(text, "p").unwrap_err();
            assert!(kind(&e) && e.key() == Some(key), "{text}: {e:?}");
            assert!(!e.to_string().contains('\n'));
        }
    }

    #[test]
    fn shards_partition_the_points() {
        let plan = Plan::from_toml(PLAN, "p").unwrap();
        let points = plan.points().unwrap();
        // "train.steps" = [1, 2] varies fastest: points 2k and 2k+1 form group k.
        for p in &points {
            assert_eq!(p.group, p.index / 2);
        }
        let shards: Vec<Shard> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        for p in &points {
            let owners: Vec<usize> = shards.iter().filter(|s| s.contains(p)).map(|s| s.index).collect();
            assert_eq!(owners, vec![p.group % 3]);
        }
        for bad in ["3/3", "1", "a/b", "0/0"] {
            assert!(bad.parse::<Shard>().is_err());
        }
    }
}
