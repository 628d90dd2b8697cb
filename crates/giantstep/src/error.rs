//! Errors of the library.
//!
//! Every message is a single lowercase line that names what was expected and what was given,
//! so that the command-line tool can print it as is.

use thiserror::Error;

/// The most characters of a user's value that a message echoes.
pub const SHOWN_CHARS: usize = 80;

/// A value as a message echoes it: control characters escaped (a newline is `\n`), cut to
/// [`SHOWN_CHARS`] characters with `...` and the full length when longer.
///
/// ```
/// assert_eq!(giantstep::error::cut("a\nb"), "a\\nb");
/// assert!(giantstep::error::cut(&"x".repeat(10_000)).ends_with("... (10000 characters)"));
/// ```
pub fn cut(value: &str) -> String {
    cut_to(value, SHOWN_CHARS)
}

/// [`cut`] to `n` characters (messages that quote a value inside a longer text).
pub fn cut_to(value: &str, n: usize) -> String {
    let escaped: String = value
        .chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if escaped.chars().count() <= n {
        escaped
    } else {
        let head: String = escaped.chars().take(n).collect();
        format!("{head}... ({} characters)", value.chars().count())
    }
}

/// Result type of the library.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in giantstep.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A target expression could not be parsed or refers to something unknown.
    #[error("target expression '{expr}': {message} (at column {column})")]
    Expr {
        /// The expression as the user gave it.
        expr: String,
        /// 1-based column of the offending character.
        column: usize,
        /// What was wrong.
        message: String,
    },
    /// A configuration value is invalid (a message that does not fit [`Error::Invalid`]).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A value outside what its key accepts: "`key` must be `expected`, but is `actual`".
    #[error("invalid configuration: {} must be {expected}, but is {actual}", cut(key))]
    Invalid {
        /// The key (`network.d`) or, for the theory's questions, the field (`kappa`).
        key: String,
        /// What it must be (`> 0`, `between 1 and 12`).
        expected: String,
        /// The value given.
        actual: String,
    },
    /// A value of the wrong type for its key (a list where a number belongs).
    #[error("invalid configuration: invalid value for {}: {}", cut(key), cut_to(message, 3 * SHOWN_CHARS))]
    WrongType {
        /// The dotted key.
        key: String,
        /// The deserializer's message (`invalid type: sequence, expected usize`).
        message: String,
    },
    /// A value its key's type cannot hold (a name outside its set, a negative count): the
    /// deserializer's message.
    #[error("invalid configuration: invalid value for {}: {}", cut(key), cut_to(message, 3 * SHOWN_CHARS))]
    Value {
        /// The dotted key.
        key: String,
        /// The deserializer's message (`unknown variant `x`, expected ...`).
        message: String,
    },
    /// An array given at run time (weights, a teacher) of the wrong shape or with a bad entry:
    /// "`what` must `expected`, but `actual`".
    #[error("{what} must {expected}, but {actual}")]
    Array {
        /// The array (`the first layer W0`).
        what: String,
        /// What it must do (`have shape (8, 16)`, `be finite`).
        expected: String,
        /// What it does (`has 12 entries`, `entry (0, 3) is NaN`).
        actual: String,
    },
    /// A run that needs more memory than this machine has.
    #[error("this run needs about {needed} of memory ({detail}); {available}")]
    Memory {
        /// The estimate, human-readable.
        needed: String,
        /// What may be used and why (`this machine has 33.6 GB`, `its cgroup (container or
        /// job) allows 4.0 GB`, `its address-space limit (ulimit -v) leaves 5.6 GB`).
        available: String,
        /// Where it goes (weights, Gram matrices, chunks).
        detail: String,
    },
    /// A teacher rank beyond what a computation handles.
    #[error("{what} handles {limit}, but the target has r = {r}")]
    RankLimit {
        /// The computation ("the theory").
        what: String,
        /// Its limit in words ("r <= 7 teacher directions at degree 3 or more").
        limit: String,
        /// The target's rank.
        r: usize,
    },
    /// A record file another sweep holds.
    #[error("{path} is in use by another giantstep sweep; wait for it to finish or write to another file")]
    Locked {
        /// The record file.
        path: String,
    },
    /// A file that is not a giantstep record file, or a line that is not a record.
    #[error("{path} {message}")]
    RecordFile {
        /// The record file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A point of a sweep plan whose configuration is invalid.
    #[error("plan point {index}: {}", error.to_string().trim_start_matches("invalid configuration: "))]
    PlanPoint {
        /// The point's index in the plan.
        index: usize,
        /// What is wrong with its configuration.
        error: Box<Error>,
    },
    /// Merged records that do not cover every point of their plan.
    #[error("the records cover {covered} of {total} points (missing {missing}); finish the sweep, or merge partially")]
    Incomplete {
        /// Points with a record.
        covered: usize,
        /// Points of the plan.
        total: usize,
        /// The first missing indices (`2, 3, 8, ...`).
        missing: String,
    },
    /// A target expression that fails the checks a run makes before it starts (not integrable
    /// against the Gaussian, heavy-tailed).
    #[error("invalid configuration: target '{expr}': {message}")]
    TargetCheck {
        /// The expression (its first 80 characters).
        expr: String,
        /// What is wrong.
        message: String,
    },
    /// A combination of valid values that a computation does not handle (the oracle add-back
    /// without a theory, a theory for a target given as a function).
    #[error("invalid configuration: {0}")]
    Unsupported(String),
    /// An unknown configuration key.
    #[error("unknown configuration key '{}' (known keys{section}: {known})", cut(key))]
    UnknownKey {
        /// The dotted key as given.
        key: String,
        /// `" in [section]"` or `""`.
        section: String,
        /// Comma-separated list of the keys that are allowed there.
        known: String,
    },
    /// The TOML configuration could not be parsed.
    #[error("malformed TOML in {source_name} at line {line}, column {column}: {message}")]
    Toml {
        /// File name, or "--set" for command-line overrides.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The weights became NaN or infinite during training.
    #[error("the first-layer weights became non-finite after step {step} (eta = {eta}); try a smaller eta0")]
    NonFinite {
        /// 1-based step index.
        step: usize,
        /// Learning rate used at that step.
        eta: f64,
    },
    /// The ridge system was not positive definite (lambda = 0 with rank-deficient features).
    #[error("the ridge system is not positive definite (lambda = {lambda}); use lambda > 0")]
    NotPositiveDefinite {
        /// The ridge parameter in use.
        lambda: f64,
    },
    /// A name outside a fixed set (`"must be none, mean or linear, but is 'x'"`); the caller
    /// names the key or flag ([`crate::config::parse_named`]).
    #[error("{0}")]
    Name(String),
    /// A target function given at run time failed (its message).
    #[error("the target function failed: {0}")]
    Target(String),
    /// An activation function given at run time failed or returned a non-finite value.
    #[error("the activation function failed: {0}")]
    Activation(String),
    /// The run was cancelled (by its caller's cancel flag).
    #[error("cancelled")]
    Cancelled,
    /// A numerical routine failed.
    #[error("numerical failure: {0}")]
    Numerical(String),
    /// An input/output error with the path involved.
    #[error("{path}: {error}")]
    Io {
        /// The path being read or written.
        path: String,
        /// The underlying error (printed in the message, not chained, so that it appears once).
        error: std::io::Error,
    },
}

impl Clone for Error {
    /// A copy of the error; an [`Error::Io`] keeps its kind and message.
    fn clone(&self) -> Self {
        match self {
            Error::Expr { expr, column, message } => Error::Expr {
                expr: expr.clone(),
                column: *column,
                message: message.clone(),
            },
            Error::Config(m) => Error::Config(m.clone()),
            Error::Invalid { key, expected, actual } => Error::Invalid {
                key: key.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::Memory {
                needed,
                available,
                detail,
            } => Error::Memory {
                needed: needed.clone(),
                available: available.clone(),
                detail: detail.clone(),
            },
            Error::RankLimit { what, limit, r } => Error::RankLimit {
                what: what.clone(),
                limit: limit.clone(),
                r: *r,
            },
            Error::Locked { path } => Error::Locked { path: path.clone() },
            Error::PlanPoint { index, error } => Error::PlanPoint {
                index: *index,
                error: error.clone(),
            },
            Error::Incomplete {
                covered,
                total,
                missing,
            } => Error::Incomplete {
                covered: *covered,
                total: *total,
                missing: missing.clone(),
            },
            Error::WrongType { key, message } => Error::WrongType {
                key: key.clone(),
                message: message.clone(),
            },
            Error::Array { what, expected, actual } => Error::Array {
                what: what.clone(),
                expected: expected.clone(),
                actual: actual.clone(),
            },
            Error::Value { key, message } => Error::Value {
                key: key.clone(),
                message: message.clone(),
            },
            Error::RecordFile { path, message } => Error::RecordFile {
                path: path.clone(),
                message: message.clone(),
            },
            Error::UnknownKey { key, section, known } => Error::UnknownKey {
                key: key.clone(),
                section: section.clone(),
                known: known.clone(),
            },
            Error::Toml {
                source_name,
                line,
                column,
                message,
            } => Error::Toml {
                source_name: source_name.clone(),
                line: *line,
                column: *column,
                message: message.clone(),
            },
            Error::NonFinite { step, eta } => Error::NonFinite { step: *step, eta: *eta },
            Error::NotPositiveDefinite { lambda } => Error::NotPositiveDefinite { lambda: *lambda },
            Error::Numerical(m) => Error::Numerical(m.clone()),
            Error::Unsupported(m) => Error::Unsupported(m.clone()),
            Error::Activation(m) => Error::Activation(m.clone()),
            Error::TargetCheck { expr, message } => Error::TargetCheck {
                expr: expr.clone(),
                message: message.clone(),
            },
            Error::Name(m) => Error::Name(m.clone()),
            Error::Target(m) => Error::Target(m.clone()),
            Error::Cancelled => Error::Cancelled,
            Error::Io { path, error } => Error::Io {
                path: path.clone(),
                error: std::io::Error::new(error.kind(), error.to_string()),
            },
        }
    }
}

impl Error {
    /// Shorthand for [`Error::Config`].
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }

    /// Shorthand for [`Error::Invalid`]; the value is cut to [`SHOWN_CHARS`] characters
    /// ([`cut`]).
    pub fn invalid(key: impl Into<String>, expected: impl Into<String>, actual: impl std::fmt::Display) -> Self {
        Error::Invalid {
            key: key.into(),
            expected: expected.into(),
            actual: cut(&actual.to_string()),
        }
    }

    /// The key or field a configuration error names, where it names one.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Invalid { key, .. }
            | Error::UnknownKey { key, .. }
            | Error::WrongType { key, .. }
            | Error::Value { key, .. } => Some(key),
            Error::PlanPoint { error, .. } => error.key(),
            _ => None,
        }
    }
}

/// A cancel flag as the long computations check it: a run's passes, the theory's recursions,
/// the predicted curve. `Cancel::default()` never cancels.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Vec<std::sync::Arc<std::sync::atomic::AtomicBool>>);

impl Cancel {
    /// A token that cancels once `flag` is set.
    pub fn new(flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Cancel {
        Cancel(vec![flag])
    }

    /// A token of an optional flag (`None` never cancels).
    pub fn from_option(flag: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>) -> Cancel {
        Cancel(flag.into_iter().collect())
    }

    /// This token, also cancelled once `flag` is set.
    pub fn or(mut self, flag: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Cancel {
        self.0.push(flag);
        self
    }

    /// Whether a flag is set.
    pub fn is_set(&self) -> bool {
        self.0.iter().any(|f| f.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// `Err(Error::Cancelled)` once a flag is set.
    ///
    /// # Errors
    /// [`Error::Cancelled`] when the flag is set.
    pub fn check(&self) -> Result<()> {
        if self.is_set() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}
