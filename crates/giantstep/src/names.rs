//! Fixed sets of names (precision, preprocess, figure kind, ...): `FromStr` and `Display` with
//! the configuration's spelling, and one-line errors that list the accepted names.

use crate::error::{Error, Result};

/// `FromStr` and `Display` with the configuration's spelling for a fixed set of names. The
/// error says which names exist ("must be none, mean or linear, but is 'x'"); the caller puts
/// the key or flag in front.
macro_rules! named {
    ($t:ty { $($v:ident => $name:literal),+ $(,)? }) => {
        impl $t {
            /// The accepted names, in order.
            pub const NAMES: &'static [&'static str] = &[$($name),+];
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self { $(Self::$v => $name),+ })
            }
        }
        impl std::str::FromStr for $t {
            type Err = $crate::error::Error;
            fn from_str(s: &str) -> $crate::error::Result<Self> {
                match s {
                    $($name => Ok(Self::$v),)+
                    other => Err($crate::error::Error::Name(format!(
                        "must be {}, but is '{other}'",
                        $crate::names::one_of(<$t>::NAMES)
                    ))),
                }
            }
        }
    };
}
pub(crate) use named;

/// Parses one of a fixed set of names, with `what` (a key or a flag) in the error:
/// `"preprocess must be none, mean or linear, but is 'x'"`.
///
/// # Errors
/// [`Error::Invalid`] naming `what` and the accepted names.
pub fn parse_named<T: std::str::FromStr<Err = Error>>(what: &str, s: &str) -> Result<T> {
    s.parse::<T>().map_err(|e| match e {
        Error::Name(m) => match m.strip_prefix("must be ").and_then(|m| m.split_once(", but is ")) {
            Some((expected, actual)) => Error::invalid(what, expected, actual),
            None => Error::Config(format!("{what} {m}")),
        },
        other => other,
    })
}

/// "a, b or c".
pub(crate) fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}
