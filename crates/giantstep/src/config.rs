//! Run configuration: the keys of `giantstep run` (docs/model.md §1–§3), their defaults, TOML loading,
//! dotted `--set key=value` overrides, and validation.
//!
//! | Key | Default | Meaning |
//! |---|---|---|
//! | `seed` | 0 | master seed of every random stream |
//! | `threads` | 0 (all cores) | worker threads; results do not depend on it |
//! | `precision` | `"f64"` | floating-point precision of the hot loops |
//! | `chunk` | 4096 | samples per streamed chunk |
//! | `stream` | 2 | how the samples' Gaussian inputs are drawn: 2, or 1 (every record written before 2 existed; docs/architecture.md, "Stream versions") |
//! | `target.expr` / `target.preset` | preset `staircase2` | `g*` over `z1..zr` (docs/model.md §1, §5) |
//! | `target.r` | largest index used | teacher rank |
//! | `target.teacher` | `"random"` | `"random"` orthonormal rows or `"canonical"` |
//! | `target.noise` | 0 | label noise variance `Δ` |
//! | `network.d` | 256 | input dimension |
//! | `network.p` | 512 | width |
//! | `network.activation` | `"relu"` | `σ`, e.g. `tanh`, `he3`, `relu:0.5` |
//! | `network.first_layer` | `"gaussian"` | rows `N(0, I/d)` or `"sphere"` |
//! | `network.second_layer` | `"hypercube"` | `±1/√p`, `"gaussian"` `N(0,1/p)`, `"uniform"` |
//! | `network.symmetric` | true | paired neurons so that `f ≡ 0` at init |
//! | `train.steps` | 1 | number of giant steps `T` |
//! | `train.n` | `"4d"` | batch size: integer, `"4d"`, `"d^1.5"`, `"0.5 d^2"` |
//! | `train.eta0`, `train.eta_exp` | 1.0, 0.5 | `η = eta0·p·(n/d)^eta_exp` |
//! | `train.eta` | absent | absolute `η` (overrides eta0) |
//! | `train.eta_max0` | absent | cap `η ≤ eta_max0·p` |
//! | `train.eta_max0_later` | absent | the cap of steps 2, 3, … (replaces `eta_max0` there) |
//! | `train.eta_schedule` | absent | per-step multipliers of `η` (the last repeats) |
//! | `train.loss` | `"residual"` | or `"correlation"` (`e = ỹ`) |
//! | `train.reuse` | 1 | a new batch every `reuse` steps |
//! | `train.normalize` | `"none"` | `"project"` or `"spherical"` |
//! | `train.preprocess` | `"none"` | `"mean"` or `"linear"` (docs/model.md §3.1) |
//! | `train.preprocess_from` | absent (1) | the first step whose labels are preprocessed; from 2 on the readout fits raw labels |
//! | `readout.n` | `train.n` | readout batch size |
//! | `readout.lambda` | 1.0 | ridge `λ` |
//! | `readout.batch` | `"fresh"` | or `"last"` (the last training batch) |
//! | `readout.add_back` | `"empirical"` | or `"oracle"`: the exact `μ0 + <W*ᵀμ1, z>` from the theory; or `"test"`: re-estimated on the test set (the authors' notebook) |
//! | `eval.n_test` | 10000 | test samples |
//! | `eval.theory` | true | attach the theory's predictions (docs/theory.md) to the result |
//! | `eval.every_step` | false | readout and test error after every step (docs/stairway.md) |
//! | `eval.baseline` | true | fit and test the random-features baseline (`rf_*` are `null` without) |

/// The stream versions of the samples' Gaussian inputs (the key `stream`).
pub use crate::data::Stream;
use crate::data::{Purpose, StreamKey};
use crate::error::{Error, Result};
use crate::expr::Expr;
pub use crate::model::{
    AddBack, FirstLayerInit, Loss, NetworkConfig, Normalize, Precision, Preprocess, ReadoutBatch, SecondLayerInit,
};
pub use crate::names::parse_named;
use crate::target::preset_expr;
/// How the teacher `W*` is drawn (defined with the teacher, in [`crate::target`]).
pub use crate::target::TeacherKind;
use serde::{Deserialize, Serialize};

/// A batch size: an integer or a power of `d` such as `"4d"`, `"d^1.5"`, `"0.5 d^2"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum BatchSize {
    /// An absolute number of samples.
    Count(u64),
    /// `c·d^e`, rounded down.
    Expr(String),
}

impl BatchSize {
    /// Resolves the batch size for input dimension `d`.
    ///
    /// # Errors
    /// [`Error::Invalid`] naming `key` for malformed text or a size of 0.
    pub fn resolve(&self, d: usize, key: &str) -> Result<usize> {
        let n = match self {
            BatchSize::Count(n) => *n as usize,
            BatchSize::Expr(s) => {
                let (c, e) = parse_power_of_d(s).ok_or_else(|| {
                    Error::invalid(
                        key,
                        "an integer or of the form 'c d^e' (e.g. '4d', 'd^1.5', '0.5 d^2')",
                        format!("'{s}'"),
                    )
                })?;
                let v = c * (d as f64).powf(e);
                if !v.is_finite() || v > 1e15 {
                    return Err(Error::invalid(
                        key,
                        format!("at most 1e15 at d = {d}"),
                        format!("'{s}'"),
                    ));
                }
                // Round down, forgiving the last-bit error of powf (d^2 must give d·d exactly).
                (v * (1.0 + 1e-12)).floor() as usize
            }
        };
        if n == 0 {
            return Err(Error::invalid(key, "> 0", format!("0 at d = {d}")));
        }
        Ok(n)
    }
}

/// `"1000"` is a count, anything else a power of `d` (checked by [`BatchSize::resolve`]).
impl std::str::FromStr for BatchSize {
    type Err = Error;
    fn from_str(s: &str) -> Result<BatchSize> {
        Ok(match s.trim().parse::<u64>() {
            Ok(n) => BatchSize::Count(n),
            Err(_) => BatchSize::Expr(s.trim().to_string()),
        })
    }
}

impl<'de> Deserialize<'de> for BatchSize {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = BatchSize;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a number of samples (e.g. 1000) or a power of d in quotes (e.g. \"4d\", \"d^1.5\", \"0.5 d^2\")",
                )
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<BatchSize, E> {
                Ok(BatchSize::Count(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<BatchSize, E> {
                u64::try_from(v)
                    .map(BatchSize::Count)
                    .map_err(|_| E::custom(format!("a batch size must be >= 0, but is {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<BatchSize, E> {
                Ok(BatchSize::Expr(v.to_string()))
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// A `u64` seed in TOML, whose integers are signed 64-bit: an integer, or a string of digits
/// for seeds above `i64::MAX` (written back the same way, so the configuration round-trips).
mod seed_serde {
    pub fn serialize<S: serde::Serializer>(seed: &u64, s: S) -> Result<S::Ok, S::Error> {
        if *seed <= i64::MAX as u64 {
            s.serialize_u64(*seed)
        } else {
            s.serialize_str(&seed.to_string())
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "an integer between 0 and {}", u64::MAX)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("a seed must be >= 0, but is {v}")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
                v.trim().parse().map_err(|_| {
                    E::custom(format!(
                        "a seed must be an integer between 0 and {}, but is '{v}'",
                        u64::MAX
                    ))
                })
            }
        }
        de.deserialize_any(Visitor)
    }
}

/// Parses `[c][*]d[^e]` or a plain number into `(c, e)`.
fn parse_power_of_d(s: &str) -> Option<(f64, f64)> {
    let t: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if t.is_empty() {
        return None;
    }
    let Some(pos) = t.find('d') else {
        let c: f64 = t.parse().ok()?;
        return (c.is_finite() && c >= 0.0).then_some((c, 0.0));
    };
    let (coef, rest) = t.split_at(pos);
    let coef = coef.strip_suffix('*').unwrap_or(coef);
    let c: f64 = if coef.is_empty() { 1.0 } else { coef.parse().ok()? };
    let rest = &rest[1..];
    let e: f64 = if rest.is_empty() {
        1.0
    } else {
        rest.strip_prefix('^')?.parse().ok()?
    };
    (c.is_finite() && c >= 0.0 && e.is_finite()).then_some((c, e))
}

/// `[target]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TargetConfig {
    /// Expression over `z1..zr`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    /// Named preset (docs/model.md §5).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preset: Option<String>,
    /// Teacher rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r: Option<usize>,
    /// How `W*` is drawn.
    pub teacher: TeacherKind,
    /// Label noise variance `Δ`.
    pub noise: f64,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Number of giant steps.
    pub steps: usize,
    /// Batch size.
    pub n: BatchSize,
    /// Learning-rate prefactor.
    pub eta0: f64,
    /// Learning-rate exponent.
    pub eta_exp: f64,
    /// Absolute learning rate (overrides `eta0`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta: Option<f64>,
    /// Learning-rate cap: `η ≤ eta_max0·p` (absent: no cap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_max0: Option<f64>,
    /// Per-step multipliers of `η`: step `t` uses entry `t` (the last entry repeats).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_schedule: Option<Vec<f64>>,
    /// The cap of steps `t ≥ 2`: `η ≤ eta_max0_later·p` there (replaces `eta_max0`, which then
    /// caps step 1 only; absent: `eta_max0` caps every step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_max0_later: Option<f64>,
    /// Loss.
    pub loss: Loss,
    /// A fresh batch every `reuse` steps.
    pub reuse: usize,
    /// Row normalization.
    pub normalize: Normalize,
    /// Label preprocessing.
    pub preprocess: Preprocess,
    /// The first step whose labels are preprocessed (absent: 1). From 2 on, the steps before it
    /// and the readout use the raw labels (nothing is added back).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub preprocess_from: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 1,
            n: BatchSize::Expr("4d".into()),
            eta0: 1.0,
            eta_exp: 0.5,
            eta: None,
            eta_max0: None,
            eta_schedule: None,
            eta_max0_later: None,
            loss: Loss::Residual,
            reuse: 1,
            normalize: Normalize::None,
            preprocess: Preprocess::None,
            preprocess_from: None,
        }
    }
}

/// `[readout]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadoutConfig {
    /// Readout batch size (default: `train.n`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub n: Option<BatchSize>,
    /// Ridge `λ`.
    pub lambda: f64,
    /// Fresh batch or the last training batch.
    pub batch: ReadoutBatch,
    /// Add-back of the preprocessed part.
    pub add_back: AddBack,
}

impl Default for ReadoutConfig {
    fn default() -> Self {
        ReadoutConfig {
            n: None,
            lambda: 1.0,
            batch: ReadoutBatch::Fresh,
            add_back: AddBack::Empirical,
        }
    }
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvalConfig {
    /// Test samples.
    pub n_test: usize,
    /// Attach the theory's predictions to the result (docs/theory.md; skipped for r > 8).
    pub theory: bool,
    /// Fit the readout and measure the test error after every step `t = 1..T` (in one run).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub every_step: bool,
    /// Fit and test the random-features baseline (the readout on the initial layer).
    #[serde(skip_serializing_if = "is_true")]
    pub baseline: bool,
}

// Keys added after records existed are written only when they differ from their default, so
// that the configurations (and hashes) of earlier records stay the same.
fn stream_v1() -> u32 {
    1
}

fn is_true(b: &bool) -> bool {
    *b
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            n_test: 10_000,
            theory: true,
            every_step: false,
            baseline: true,
        }
    }
}

/// The whole configuration of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Master seed (any `u64`; above `i64::MAX`, TOML holds it as a string of digits).
    #[serde(with = "seed_serde")]
    pub seed: u64,
    /// Worker threads (0 = all cores).
    pub threads: usize,
    /// Precision of the hot loops.
    pub precision: Precision,
    /// Samples per chunk.
    pub chunk: usize,
    /// Stream version of the samples' Gaussian inputs and label noise (docs/architecture.md,
    /// "Stream versions"): 2, the default of a configuration that does not name one, or 1, the
    /// version of every record written before version 2 existed (a stored configuration without
    /// the key is version 1; a point of version 1 keeps the hash such records have,
    /// [`crate::sweep::config_hash`]).
    #[serde(default = "stream_v1")]
    pub stream: u32,
    /// Target.
    pub target: TargetConfig,
    /// Network.
    pub network: NetworkConfig,
    /// Training.
    pub train: TrainConfig,
    /// Readout.
    pub readout: ReadoutConfig,
    /// Evaluation.
    pub eval: EvalConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 0,
            threads: 0,
            precision: Precision::F64,
            chunk: 4096,
            stream: Stream::LATEST.number(),
            target: TargetConfig::default(),
            network: NetworkConfig::default(),
            train: TrainConfig::default(),
            readout: ReadoutConfig::default(),
            eval: EvalConfig::default(),
        }
    }
}

/// Largest number of giant steps accepted.
pub const MAX_STEPS: usize = 1000;
/// Largest batch or test-set size accepted (10¹², days of GEMM at any width).
pub const MAX_SAMPLES: usize = 1_000_000_000_000;
/// Most worker threads of one run (each holds a chunk and a partial gradient).
pub const MAX_THREADS: usize = 1024;
/// Most samples per chunk (2²⁴; a chunk's samples and features take `8·chunk·(d + p)` bytes per
/// thread, and a run never uses more than its largest batch).
pub const MAX_CHUNK: usize = 1 << 24;

/// Allowed keys per section (for precise unknown-key messages).
/// A deserialization error as one line that names the key: serde's own `unknown field` (its list
/// of the fields it expects is the list of known keys: no hand-kept copy) becomes
/// [`Error::UnknownKey`], everything else "invalid value for KEY: ...".
fn deserialize_error(text: &str, e: &toml::de::Error) -> Error {
    let message = e.message().trim().replace('\n', " ");
    let key = e.span().and_then(|span| key_at(text, span.start));
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let field = rest.split('`').next().unwrap_or_default();
        let known: Vec<&str> = rest
            .split_once("expected ")
            .map(|(_, list)| list.split('`').skip(1).step_by(2).collect())
            .unwrap_or_default();
        let section = key
            .as_deref()
            .and_then(|k| k.rsplit_once('.'))
            .map(|(s, _)| s.to_string())
            .unwrap_or_default();
        return Error::UnknownKey {
            key: if section.is_empty() {
                field.to_string()
            } else {
                format!("{section}.{field}")
            },
            section: if section.is_empty() {
                String::new()
            } else {
                format!(" in [{section}]")
            },
            known: known.join(", "),
        };
    }
    let message = match message.split_once(", expected struct ") {
        Some((what, _)) => format!("{what}, expected a table"),
        None => message,
    };
    match key {
        Some(key) if message.starts_with("invalid type") => Error::WrongType { key, message },
        // A value's own parser names what it accepts ("must be relu, erf, ..., but is 'x'").
        Some(key) => match message
            .strip_prefix("must be ")
            .and_then(|m| m.rsplit_once(", but is "))
        {
            Some((expected, actual)) => Error::invalid(key, expected, actual),
            None => Error::Value { key, message },
        },
        None => Error::config(message),
    }
}

/// The dotted key defined on the line of `text` that contains byte `pos`.
fn key_at(text: &str, pos: usize) -> Option<String> {
    let before = &text[..pos.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split('=').next()?.trim().trim_matches('"');
    let section = before[..line_start]
        .lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix('[').and_then(|l| l.strip_suffix(']')))
        .map(|s| format!("{s}."))
        .unwrap_or_default();
    (!key.is_empty()).then(|| format!("{section}{key}"))
}

/// Converts a TOML parse error to a one-line [`Error::Toml`] with line and column.
fn toml_error(source_name: &str, text: &str, e: &toml::de::Error) -> Error {
    let (line, column) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
            (line, column)
        }
        None => (1, 1),
    };
    Error::Toml {
        source_name: source_name.to_string(),
        line,
        column,
        message: e.message().trim().replace('\n', " "),
    }
}

/// Largest configuration or plan file read (16 MiB: a plan with a million axis values fits).
pub const MAX_TEXT_FILE: u64 = 16 << 20;

/// Reads a configuration or plan file of at most [`MAX_TEXT_FILE`] bytes (`/dev/zero` or a
/// data file given by mistake is refused, not read until memory runs out).
///
/// # Errors
/// [`Error::Io`] naming the path: unreadable, not UTF-8, or larger than [`MAX_TEXT_FILE`].
pub fn read_text_file(path: &std::path::Path) -> Result<String> {
    use std::io::Read as _;
    let io = |error| Error::Io {
        path: path.display().to_string(),
        error,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    file.take(MAX_TEXT_FILE + 1).read_to_string(&mut text).map_err(io)?;
    if text.len() as u64 > MAX_TEXT_FILE {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "larger than {} MiB: not a configuration or plan file",
                MAX_TEXT_FILE >> 20
            ),
        )));
    }
    Ok(text)
}

/// Parses TOML text into a table (no key checks yet).
///
/// # Errors
/// [`Error::Toml`] with the line and column of the problem.
pub fn parse_table(text: &str, source_name: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .map_err(|e| toml_error(source_name, text, &e))
}

/// Applies a dotted `key=value` override to a table. The value is read as a TOML value
/// (`4`, `0.5`, `true`, `"text"`), and as a bare string when it is not one (`relu`, `4d`); then
/// [`set_key`] puts it in place.
///
/// # Errors
/// [`Error::Invalid`] (key `override`) when the text has no `=` or the key is empty; as
/// [`set_key`].
pub fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, value) = assignment.split_once('=').ok_or_else(|| {
        Error::invalid(
            "override",
            "KEY=VALUE (e.g. train.eta_exp=0)",
            format!("'{assignment}'"),
        )
    })?;
    let value = value.trim();
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    set_key(table, key.trim(), parsed)
}

/// Sets the dotted `key` (`network.d`) of a configuration table to a typed value, creating its
/// sections: the one way a key is set — by [`apply_set`] (`--set`), the command line's short
/// flags, a sweep's axes and the Python package's keyword arguments. Whether the key exists and
/// the value fits is checked when the table becomes a [`Config`].
///
/// # Errors
/// [`Error::Invalid`] (key `override`) for an empty key or an empty part (`network.`);
/// [`Error::Invalid`] naming the part when a part before the last is a value, not a section.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.trim().is_empty()) {
        return Err(Error::invalid(
            "override",
            "a dotted key like network.d",
            format!("'{key}'"),
        ));
    }
    let (leaf, sections) = parts.split_last().expect("split yields a part");
    let mut cur = table;
    for (i, part) in sections.iter().enumerate() {
        let entry = cur
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| Error::invalid(parts[..=i].join("."), "a section (a table of keys)", "a value"))?;
    }
    cur.insert(leaf.to_string(), value);
    Ok(())
}

impl Config {
    /// Builds a configuration from a table, checking every key.
    ///
    /// # Errors
    /// [`Error::UnknownKey`] for keys that do not exist, [`Error::WrongType`] for values of the
    /// wrong type, [`Error::Invalid`] or [`Error::Value`] for values their key does not accept.
    pub fn from_table(mut table: toml::Table) -> Result<Config> {
        // A configuration that names no stream version runs the newest (a stored one, read
        // with serde, is version 1: see `Config::stream`).
        table
            .entry("stream")
            .or_insert_with(|| toml::Value::Integer(i64::from(Stream::LATEST.number())));
        // Deserialize from text so that an error carries a span, which names the key.
        let text = toml::to_string(&table).map_err(|e| Error::config(e.to_string()))?;
        toml::from_str::<Config>(&text).map_err(|e| deserialize_error(&text, &e))
    }

    /// Parses TOML text.
    ///
    /// # Errors
    /// As [`parse_table`] and [`Config::from_table`].
    pub fn from_toml(text: &str, source_name: &str) -> Result<Config> {
        Config::from_table(parse_table(text, source_name)?)
    }

    /// The key of the samples' streams of `(purpose, step)` of this configuration's seed, with
    /// its [`Stream`] version (version 1 for a number `resolve` would refuse).
    pub(crate) fn sample_key(&self, purpose: Purpose, step: u64) -> StreamKey {
        StreamKey::new(self.seed, purpose, step).with_stream(Stream::from_number(self.stream).unwrap_or_default())
    }

    /// The target expression after resolving presets (default: preset `staircase2`).
    ///
    /// # Errors
    /// [`Error::Invalid`] (`target.preset`) for an unknown preset or both `expr` and `preset` given.
    pub fn target_expr(&self) -> Result<String> {
        match (&self.target.expr, &self.target.preset) {
            (Some(e), None) => Ok(e.clone()),
            (None, Some(p)) => preset_expr(p).map(str::to_string),
            (Some(e), Some(p)) => {
                let pe = preset_expr(p)?;
                if pe == e {
                    Ok(e.clone())
                } else {
                    Err(Error::invalid(
                        "target.preset",
                        format!("absent when target.expr is given (expr '{e}')"),
                        format!("'{p}' = '{pe}'"),
                    ))
                }
            }
            (None, None) => preset_expr("staircase2").map(str::to_string),
        }
    }

    /// Validates every value and returns the [`ValidConfig`]: this configuration with every
    /// default made explicit (`threads` as the actual count, the target expression and `r`, the
    /// readout `n`) together with what the run derives from it (the parsed target, the batch
    /// sizes, the learning rate of every step). Everything a run needs is then known to be valid.
    ///
    /// # Errors
    /// [`Error::Invalid`] or [`Error::Expr`] naming the first invalid value.
    pub fn resolve(&self) -> Result<ValidConfig> {
        let mut c = self.clone();
        if c.threads == 0 {
            c.threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        }
        if c.threads > MAX_THREADS {
            return Err(Error::invalid(
                "threads",
                format!("between 0 (all cores) and {MAX_THREADS}"),
                c.threads,
            ));
        }
        if c.chunk == 0 || c.chunk > MAX_CHUNK {
            return Err(Error::invalid("chunk", format!("between 1 and {MAX_CHUNK}"), c.chunk));
        }
        if Stream::from_number(c.stream).is_none() {
            return Err(Error::invalid("stream", "1 or 2", c.stream));
        }
        check_network(&c.network)?;
        let (expr, r) = resolve_target(&mut c)?;
        check_train(&c.train)?;
        let d = c.network.d;
        let train_n = c.train.n.resolve(d, "train.n")?;
        let fresh_n = c
            .readout
            .n
            .get_or_insert_with(|| c.train.n.clone())
            .resolve(d, "readout.n")?;
        let readout_n = match c.readout.batch {
            ReadoutBatch::Last => train_n,
            ReadoutBatch::Fresh => fresh_n,
        };
        if !(c.readout.lambda >= 0.0 && c.readout.lambda.is_finite()) {
            return Err(Error::invalid("readout.lambda", ">= 0", c.readout.lambda));
        }
        if c.eval.n_test == 0 {
            return Err(Error::invalid("eval.n_test", "> 0", 0));
        }
        if c.eval.n_test > MAX_SAMPLES {
            return Err(Error::invalid(
                "eval.n_test",
                format!("<= {MAX_SAMPLES:.0e}"),
                c.eval.n_test,
            ));
        }
        for (key, n) in [("train.n", train_n), ("readout.n", readout_n)] {
            if n > MAX_SAMPLES {
                return Err(Error::invalid(
                    key,
                    format!("<= {MAX_SAMPLES:.0e} samples"),
                    format!("{n} at d = {d}"),
                ));
            }
        }
        let etas = (1..=c.train.steps).map(|t| eta_formula(&c, train_n, t)).collect();
        Ok(ValidConfig {
            config: c,
            expr,
            r,
            train_n,
            readout_n,
            etas,
        })
    }
}

fn check_network(net: &NetworkConfig) -> Result<()> {
    if net.d == 0 {
        return Err(Error::invalid("network.d", "> 0", 0));
    }
    if net.p == 0 {
        return Err(Error::invalid("network.p", "> 0", 0));
    }
    if net.symmetric && !net.p.is_multiple_of(2) {
        return Err(Error::invalid("network.p", "even with network.symmetric = true", net.p));
    }
    Ok(())
}

/// Parses the target, checks `r` and the noise, and writes the expression and `r` into `c`.
fn resolve_target(c: &mut Config) -> Result<(Expr, usize)> {
    let expr_text = c.target_expr()?;
    let expr = crate::target::parse_target(&expr_text, "target.expr")?;
    let r = match c.target.r {
        Some(r) => {
            if r < expr.max_var() {
                return Err(Error::invalid(
                    "target.r",
                    format!(">= {} (the target uses z{})", expr.max_var(), expr.max_var()),
                    r,
                ));
            }
            r
        }
        None => expr.max_var().max(1),
    };
    if r == 0 {
        return Err(Error::invalid("target.r", "> 0", 0));
    }
    if r > c.network.d {
        return Err(Error::invalid("target.r", format!("<= network.d = {}", c.network.d), r));
    }
    c.target.expr = Some(expr_text);
    c.target.r = Some(r);
    if !(c.target.noise >= 0.0 && c.target.noise.is_finite()) {
        return Err(Error::invalid("target.noise", ">= 0", c.target.noise));
    }
    Ok((expr, r))
}

fn check_train(t: &TrainConfig) -> Result<()> {
    if t.steps == 0 {
        return Err(Error::invalid("train.steps", "> 0", 0));
    }
    if t.steps > MAX_STEPS {
        return Err(Error::invalid(
            "train.steps",
            format!("<= {MAX_STEPS} (each step is a pass over a fresh batch)"),
            t.steps,
        ));
    }
    if t.reuse == 0 {
        return Err(Error::invalid("train.reuse", "> 0", 0));
    }
    if !t.eta0.is_finite() {
        return Err(Error::invalid("train.eta0", "finite", t.eta0));
    }
    if !t.eta_exp.is_finite() {
        return Err(Error::invalid("train.eta_exp", "finite", t.eta_exp));
    }
    if t.eta0 < 0.0 {
        return Err(Error::invalid(
            "train.eta0",
            ">= 0 (a negative learning rate climbs the loss)",
            t.eta0,
        ));
    }
    if let Some(eta) = t.eta {
        if eta < 0.0 {
            return Err(Error::invalid(
                "train.eta",
                ">= 0 (a negative learning rate climbs the loss)",
                eta,
            ));
        }
        if !eta.is_finite() {
            return Err(Error::invalid("train.eta", "finite", eta));
        }
    }
    if let Some(cap) = t.eta_max0 {
        if !(cap > 0.0 && cap.is_finite()) {
            return Err(Error::invalid("train.eta_max0", "> 0 and finite", cap));
        }
    }
    if let Some(cap) = t.eta_max0_later {
        if !(cap > 0.0 && cap.is_finite()) {
            return Err(Error::invalid("train.eta_max0_later", "> 0 and finite", cap));
        }
    }
    if let Some(k) = t.preprocess_from {
        if !(1..=MAX_STEPS).contains(&k) {
            return Err(Error::invalid(
                "train.preprocess_from",
                format!("a step between 1 and {MAX_STEPS}"),
                k,
            ));
        }
    }
    if let Some(s) = &t.eta_schedule {
        if s.is_empty() {
            return Err(Error::invalid(
                "train.eta_schedule",
                "a list of at least one multiplier (e.g. [1.0, 0.5])",
                "[]",
            ));
        }
        if let Some(bad) = s.iter().find(|m| !(**m >= 0.0 && m.is_finite())) {
            return Err(Error::invalid(
                "train.eta_schedule",
                "multipliers >= 0 and finite",
                format!("a list containing {bad}"),
            ));
        }
    }
    Ok(())
}

/// The learning rate of step `t` (from 1), docs/model.md §3: the base `η = eta0·p·(n/d)^eta_exp`
/// (or `train.eta` when given), capped at `eta_max0·p` when `train.eta_max0` is given, times the
/// step's multiplier in `train.eta_schedule` (the last entry repeats; 1 when absent). The one
/// copy of the formula.
fn eta_formula(c: &Config, n: usize, t: usize) -> f64 {
    let p = c.network.p as f64;
    let mut eta = match c.train.eta {
        Some(eta) => eta,
        None => c.train.eta0 * p * (n as f64 / c.network.d as f64).powf(c.train.eta_exp),
    };
    let cap = match c.train.eta_max0_later {
        Some(later) if t >= 2 => Some(later),
        _ => c.train.eta_max0,
    };
    if let Some(cap) = cap {
        eta = eta.min(cap * p);
    }
    if let Some(s) = c.train.eta_schedule.as_deref().filter(|s| !s.is_empty()) {
        eta *= s[(t.max(1) - 1).min(s.len() - 1)];
    }
    eta
}

/// A validated configuration ([`Config::resolve`]): the configuration with every default made
/// explicit, and what a run derives from it. Its fields cannot be changed, so a `ValidConfig`
/// is always valid; it reads like a [`Config`] (through `Deref`) for every key.
///
/// ```
/// use giantstep::Config;
/// let mut config = Config::default();
/// config.network.d = 64;
/// config.train.n = "d^2".parse()?;
/// let valid = config.resolve()?;
/// assert_eq!(valid.train_n(), 4096);
/// assert_eq!(valid.r(), 2); // the default target z1 + z1*z2
/// assert_eq!(valid.eta_at(1), 512.0 * 8.0); // eta0·p·(n/d)^0.5
/// # Ok::<(), giantstep::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConfig {
    config: Config,
    expr: Expr,
    r: usize,
    train_n: usize,
    readout_n: usize,
    etas: Vec<f64>,
}

/// Serializes as the resolved [`Config`].
impl Serialize for ValidConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.config.serialize(s)
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = Config;
    fn deref(&self) -> &Config {
        &self.config
    }
}

impl TrainConfig {
    /// The label preprocessing of step `t` (from 1): `preprocess` from `preprocess_from` on,
    /// raw labels before.
    pub fn preprocess_at(&self, t: usize) -> Preprocess {
        if t >= self.preprocess_from.unwrap_or(1) {
            self.preprocess
        } else {
            Preprocess::None
        }
    }

    /// The label preprocessing of the readout (and its add-back): `preprocess` when every step
    /// preprocesses, raw labels when `preprocess_from > 1`.
    pub fn readout_preprocess(&self) -> Preprocess {
        if self.preprocess_from.unwrap_or(1) > 1 {
            Preprocess::None
        } else {
            self.preprocess
        }
    }
}

impl ValidConfig {
    /// The resolved configuration (what records store).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The resolved configuration, by value.
    pub fn into_config(self) -> Config {
        self.config
    }

    /// The target `g*` (docs/model.md §1).
    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// The teacher rank `r`.
    pub fn r(&self) -> usize {
        self.r
    }

    /// Training batch size `n`.
    pub fn train_n(&self) -> usize {
        self.train_n
    }

    /// Readout batch size (the training batch size when `readout.batch = "last"`).
    pub fn readout_n(&self) -> usize {
        self.readout_n
    }

    /// The learning rate of step 1 (see [`ValidConfig::eta_at`]).
    pub fn eta(&self) -> f64 {
        self.eta_at(1)
    }

    /// The learning rate of step `t` (from 1; steps beyond `train.steps` continue the schedule):
    /// `η = eta0·p·(n/d)^eta_exp` (or `train.eta`), capped at `eta_max0·p`, times the step's
    /// multiplier in `train.eta_schedule` (docs/model.md §3).
    pub fn eta_at(&self, t: usize) -> f64 {
        match self.etas.get(t.max(1) - 1) {
            Some(&eta) => eta,
            None => eta_formula(&self.config, self.train_n, t),
        }
    }

    /// The same configuration trained for `steps` steps (every other value as here).
    ///
    /// # Errors
    /// [`Error::Invalid`] when `steps` is 0 or above [`MAX_STEPS`].
    pub fn with_steps(&self, steps: usize) -> Result<ValidConfig> {
        let mut c = self.config.clone();
        c.train.steps = steps;
        check_train(&c.train)?;
        let etas = (1..=steps).map(|t| eta_formula(&c, self.train_n, t)).collect();
        Ok(ValidConfig {
            config: c,
            etas,
            ..self.clone()
        })
    }

    /// Bytes a run of this configuration holds at its peak, roughly: the first layer, its initial
    /// copy and one snapshot per evaluated step (`p·d` each), per workspace (one per thread and
    /// a spare with several threads) a chunk of samples and features (`chunk·(d + p)`), a partial
    /// gradient (`p·d`) and partial Gram matrices (`p²` per readout layer), and the reduced Gram
    /// matrices.
    pub fn memory_estimate(&self, evaluated: usize) -> f64 {
        let (d, p) = (self.network.d as f64, self.network.p as f64);
        let workspaces = match self.threads.max(1) {
            1 => 1.0,
            t => t as f64 + 1.0,
        };
        let chunk = self.chunk.min(self.train_n.max(self.eval.n_test)) as f64;
        let layers = evaluated.max(1) as f64 + 1.0;
        8.0 * (p * d * (3.0 + layers) + workspaces * (3.0 * chunk * (d + p) + p * d + layers * p * p) + layers * p * p)
    }
}

/// Lowers `threads` to four per core of this machine when it asks for more (more only add
/// overhead; results do not depend on the thread count) and says so in a one-line warning.
pub fn cap_threads(cfg: &mut Config) -> Option<String> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    (cfg.threads > 4 * cores).then(|| {
        let w = format!(
            "{} threads on {cores} cores would only add overhead; using {}",
            cfg.threads,
            4 * cores
        );
        cfg.threads = 4 * cores;
        w
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_estimate_counts_a_spare_workspace_with_several_threads() {
        let est = |threads: usize| {
            let text = format!("threads = {threads}\n[network]\nd = 64\np = 32\n[train]\nn = 10000\n");
            Config::from_toml(&text, "test")
                .unwrap()
                .resolve()
                .unwrap()
                .memory_estimate(1)
        };
        let (d, p, chunk) = (64.0, 32.0, 4096.0);
        let workspace = 8.0 * (3.0 * chunk * (d + p) + p * d + 2.0 * p * p);
        // One thread: one workspace; two: two and a spare; three: three and a spare.
        assert!((est(2) - est(1) - 2.0 * workspace).abs() < 1e-6 * workspace);
        assert!((est(3) - est(2) - workspace).abs() < 1e-6 * workspace);
    }

    #[test]
    fn batch_sizes() {
        let b = |s: &str| BatchSize::Expr(s.into());
        assert_eq!(b("4d").resolve(256, "n").unwrap(), 1024);
        assert_eq!(b("d").resolve(256, "n").unwrap(), 256);
        assert_eq!(b("d^2").resolve(512, "n").unwrap(), 262_144);
        assert_eq!(b("0.5 d^2").resolve(512, "n").unwrap(), 131_072);
        assert_eq!(b("0.5*d^2").resolve(512, "n").unwrap(), 131_072);
        assert_eq!(b("d^1.5").resolve(256, "n").unwrap(), 4096);
        assert_eq!(
            b("d^1.3").resolve(512, "n").unwrap(),
            (512f64.powf(1.3)).floor() as usize
        );
        assert_eq!(b("1000").resolve(3, "n").unwrap(), 1000);
        assert_eq!(BatchSize::Count(77).resolve(3, "n").unwrap(), 77);
        for bad in ["", "x", "4e", "d^", "d^x", "-2d", "2dd"] {
            let e = b(bad).resolve(10, "train.n").unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { key, .. } if key == "train.n"),
                "{bad}: {e:?}"
            );
        }
        assert!(BatchSize::Count(0)
            .resolve(3, "train.n")
            .unwrap_err()
            .to_string()
            .contains("must be > 0"));
        assert!(b("0.001d").resolve(10, "n").is_err());
    }

    #[test]
    fn defaults_resolve() {
        let c = Config::default().resolve().unwrap();
        assert_eq!(c.target.expr.as_deref(), Some("z1 + z1*z2"));
        assert_eq!(c.target.r, Some(2));
        assert_eq!(c.train_n(), 1024);
        assert_eq!(c.eta(), 512.0 * 2.0);
        assert!(c.threads >= 1);
    }

    #[test]
    fn set_overrides_and_types() {
        let mut t = toml::Table::new();
        for s in [
            "network.d=64",
            "train.eta_exp=0",
            "network.activation=tanh",
            "train.n=8d",
            "target.expr=z1*z2",
            "seed=5",
        ] {
            apply_set(&mut t, s).unwrap();
        }
        let c = Config::from_table(t).unwrap().resolve().unwrap();
        assert_eq!(c.network.d, 64);
        assert_eq!(c.train.eta_exp, 0.0);
        assert_eq!(c.network.activation.to_string(), "tanh");
        assert_eq!(c.train_n(), 512);
        assert_eq!(c.seed, 5);
        let mut t = toml::Table::new();
        apply_set(&mut t, "train.n=300").unwrap();
        assert_eq!(Config::from_table(t).unwrap().resolve().unwrap().train_n(), 300);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("[train]\netaa = 1\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown configuration key 'train.etaa'"), "{e}");
        assert!(e.contains("eta0"), "{e}");
        let e = Config::from_toml("foo = 1\n", "f.toml").unwrap_err().to_string();
        assert!(e.contains("'foo'"), "{e}");
    }

    #[test]
    fn set_key_keeps_the_type_and_names_the_part_that_is_not_a_section() {
        let mut t = toml::Table::new();
        // A string with '=' and quotes stays the string given; numbers stay numbers.
        set_key(&mut t, "target.expr", toml::Value::String("z1 + \"=\"".into())).unwrap();
        set_key(&mut t, "network.d", toml::Value::Integer(8)).unwrap();
        assert_eq!(t["target"]["expr"].as_str(), Some("z1 + \"=\""));
        assert_eq!(t["network"]["d"].as_integer(), Some(8));
        // apply_set reads text as TOML, then sets it the same way.
        let mut u = toml::Table::new();
        apply_set(&mut u, "network.d = 8").unwrap();
        assert_eq!(u["network"], t["network"]);
        let e = set_key(&mut t, "network.d.x", toml::Value::Integer(1)).unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { key, actual, .. } if key == "network.d" && actual == "a value"),
            "{e:?}"
        );
        for bad in ["", ".d", "network.", "network..d"] {
            let e = set_key(&mut t, bad, toml::Value::Integer(1)).unwrap_err();
            assert_eq!(e.key(), Some("override"), "{bad}: {e:?}");
        }
        let e = apply_set(&mut t, "novalue").unwrap_err();
        assert!(matches!(&e, Error::Invalid { key, actual, .. } if key == "override" && actual == "'novalue'"));
    }

    #[test]
    fn malformed_toml_names_the_line() {
        let e = Config::from_toml("seed = 1\n[network\nd = 3\n", "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("malformed TOML in f.toml at line 2"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn invalid_values_are_rejected_naming_their_key() {
        let invalid = |e: &Error| matches!(e, Error::Invalid { .. });
        let value = |e: &Error| matches!(e, Error::Value { .. });
        let wrong_type = |e: &Error| matches!(e, Error::WrongType { .. });
        type Kind = fn(&Error) -> bool;
        let cases: &[(&str, &str, Kind)] = &[
            ("network.d=0", "network.d", invalid),
            ("network.p=0", "network.p", invalid),
            ("network.p=5", "network.p", invalid),
            ("readout.lambda=-1", "readout.lambda", invalid),
            ("target.noise=-0.1", "target.noise", invalid),
            ("train.n=0", "train.n", invalid),
            ("train.n=4x", "train.n", invalid),
            ("target.r=300", "target.r", invalid),
            ("target.preset=nope", "target.preset", invalid),
            ("network.activation=sigmoid", "network.activation", invalid),
            ("train.eta0=-1", "train.eta0", invalid),
            ("train.eta_schedule=[]", "train.eta_schedule", invalid),
            ("train.eta_schedule=[1.0, -0.5]", "train.eta_schedule", invalid),
            ("threads=2000", "threads", invalid),
            ("chunk=0", "chunk", invalid),
            ("chunk=100000000", "chunk", invalid),
            ("train.loss=hinge", "train.loss", value),
            ("seed=-1", "seed", value),
            ("network.d=abc", "network.d", wrong_type),
        ];
        for (set, key, kind) in cases {
            let mut t = toml::Table::new();
            apply_set(&mut t, set).unwrap();
            let e = Config::from_table(t).and_then(|c| c.resolve()).unwrap_err();
            assert!(kind(&e) && e.key() == Some(key), "{set}: {e:?}");
            // The message is one line that names the key.
            let msg = e.to_string();
            assert!(msg.contains(key) && !msg.contains('\n'), "{set}: {msg}");
        }
        let mut t = toml::Table::new();
        apply_set(&mut t, "target.expr=z1+foo(z2)").unwrap();
        let e = Config::from_table(t).unwrap().resolve().unwrap_err();
        assert!(matches!(&e, Error::Expr { column: 4, .. }), "{e:?}");
        let mut t = toml::Table::new();
        apply_set(&mut t, "target.expr=z1*z3").unwrap();
        apply_set(&mut t, "target.r=2").unwrap();
        let e = Config::from_table(t).unwrap().resolve().unwrap_err();
        assert!(
            matches!(&e, Error::Invalid { key, actual, .. } if key == "target.r" && actual == "2"),
            "{e:?}"
        );
    }

    /// Display, FromStr and the configuration files spell every name the same way.
    #[test]
    fn named_enums_round_trip_and_match_serde() {
        fn check<T>(all: &[T])
        where
            T: std::fmt::Display + std::str::FromStr<Err = Error> + Serialize + PartialEq + std::fmt::Debug,
        {
            for v in all {
                let name = v.to_string();
                assert_eq!(&name.parse::<T>().unwrap(), v);
                assert_eq!(serde_json::to_value(v).unwrap(), serde_json::Value::String(name));
            }
            let e = parse_named::<T>("key", "nope").unwrap_err();
            assert!(
                matches!(&e, Error::Invalid { key, actual, .. } if key == "key" && actual == "'nope'"),
                "{e:?}"
            );
        }
        check(&[Precision::F64, Precision::F32]);
        check(&[TeacherKind::Random, TeacherKind::Canonical]);
        check(&[FirstLayerInit::Gaussian, FirstLayerInit::Sphere]);
        check(&[
            SecondLayerInit::Hypercube,
            SecondLayerInit::Gaussian,
            SecondLayerInit::Uniform,
        ]);
        check(&[Loss::Residual, Loss::Correlation]);
        check(&[Normalize::None, Normalize::Project, Normalize::Spherical]);
        check(&[Preprocess::None, Preprocess::Mean, Preprocess::Linear]);
        check(&[ReadoutBatch::Fresh, ReadoutBatch::Last]);
        check(&[AddBack::Empirical, AddBack::Oracle, AddBack::Test]);
        assert_eq!(crate::names::one_of(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn any_u64_seed_is_accepted_and_round_trips() {
        let mut t = toml::Table::new();
        apply_set(&mut t, "seed=18446744073709551615").unwrap();
        let c = Config::from_table(t).unwrap().resolve().unwrap();
        assert_eq!(c.seed, u64::MAX);
        let back = Config::from_toml(&toml::to_string(&c).unwrap(), "x").unwrap();
        assert_eq!(back.seed, u64::MAX);
        let json: Config = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(json.seed, u64::MAX);
        // Ordinary seeds stay integers in JSON.
        let v = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(v["seed"], 0);
    }

    #[test]
    fn resolved_config_round_trips() {
        let c = Config::default().resolve().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back = Config::from_toml(&text, "x").unwrap();
        assert_eq!(&back, c.config());
    }

    /// A configuration that names no stream version runs the newest; a stored one without the
    /// key (every record written before version 2) is version 1, and a point of version 1 hashes
    /// as such records do; version 1 is written and read back as 1; other numbers are refused.
    #[test]
    fn stream_version_defaults_and_stored_records() {
        assert_eq!(Config::from_toml("", "x").unwrap().stream, 2);
        assert_eq!(Config::default().stream, 2);
        assert_eq!(Config::from_toml("stream = 1", "x").unwrap().stream, 1);
        // A record's JSON configuration without the key.
        let mut json = serde_json::to_value(Config::default()).unwrap();
        assert_eq!(json["stream"], 2, "version 2 is written");
        json.as_object_mut().unwrap().remove("stream");
        let stored: Config = serde_json::from_value(json).unwrap();
        assert_eq!(stored.stream, 1);
        // A point of version 1 has the hash of a record written before the key existed (the
        // JSON text as the earlier binaries wrote it: fields in their order, no `stream`).
        let before = serde_json::to_string(&stored).unwrap().replace(",\"stream\":1,", ",");
        assert!(!before.contains("stream"));
        assert_eq!(crate::sweep::config_hash(&stored), crate::sweep::fnv_hex(&before));
        assert_ne!(
            crate::sweep::config_hash(&Config::default()),
            crate::sweep::fnv_hex(&before)
        );
        // Version 1 is written and read back as 1 (TOML and JSON).
        let text = toml::to_string(&stored).unwrap();
        assert_eq!(Config::from_toml(&text, "x").unwrap().stream, 1, "{text}");
        // The stream reaches the samples' keys, and only theirs.
        let key = stored.sample_key(Purpose::Test, 0);
        assert_eq!(key.stream(), Stream::V1);
        assert_eq!(Config::default().sample_key(Purpose::Test, 0).stream(), Stream::V2);
        assert_eq!(
            key.with_stream(Stream::V2),
            Config::default().sample_key(Purpose::Test, 0)
        );
        let e = Config::from_toml("stream = 3", "x")
            .unwrap()
            .resolve()
            .unwrap_err()
            .to_string();
        assert!(e.contains("stream") && e.contains("1 or 2") && e.contains('3'), "{e}");
    }
}
