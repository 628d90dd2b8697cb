//! Arrays given by a caller (weights, a teacher): checked for shape and finiteness.

use crate::error::{Error, Result};

/// A copy of a given `rows×cols` array after checking its length and finiteness.
pub(crate) fn given(what: &str, v: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    let shape = if cols == 1 {
        format!("({rows},)")
    } else {
        format!("({rows}, {cols})")
    };
    if v.len() != rows * cols {
        return Err(Error::Array {
            what: what.into(),
            expected: format!("have shape {shape}"),
            actual: format!("has {} entries", v.len()),
        });
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        let at = if cols == 1 {
            format!("{i}")
        } else {
            format!("({}, {})", i / cols, i % cols)
        };
        return Err(Error::Array {
            what: what.into(),
            expected: "be finite".into(),
            actual: format!("entry {at} is {}", v[i]),
        });
    }
    Ok(v.to_vec())
}
