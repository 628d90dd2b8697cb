//! Multi-index targets `y = g*(W* z) + sqrt(Δ)·ξ` (docs/model.md §1) and the named presets of docs/model.md §5.

use crate::data::{fill_normal, Purpose, StreamKey};
use crate::error::{Error, Result};
use crate::expr::Expr;
use crate::linalg::{lanes, matmul, orthonormalize_rows, panels::gemm_depth_block, Op};
use crate::names::named;

/// How the teacher `W*` is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TeacherKind {
    /// Random orthonormal rows (QR of a seeded Gaussian matrix).
    #[default]
    Random,
    /// The first `r` canonical basis vectors.
    Canonical,
}

named!(TeacherKind { Random => "random", Canonical => "canonical" });

/// The presets of docs/model.md §5: `(name, expression, note)`.
pub const PRESETS: &[(&str, &str, &str)] = &[
    (
        "stairway-he124",
        "(he1(z1) + he2(z1)/2 + he4(z1)/24 + he1(z2) + he2(z2)/2 + he4(z2)/24)/2",
        "(f(z1)+f(z2))/2 with f = he1 + he2/2 + he4/24; E[y^2] = 0.7708",
    ),
    (
        "stairway-pm",
        "(z1 + z1^2 + z2 - z2^2)/2",
        "E[y^2] = 1.5, linear-kernel error 1.0",
    ),
    (
        "stuck-spike",
        "((4*z1 + z1^2) + z2)/2",
        "gradients stay on the line of slope 1/4",
    ),
    ("staircase2", "z1 + z1*z2", "e1 at step 1, e2 at step 2"),
    (
        "staircase3",
        "z1 + z1*z2 + z1*z2*z3",
        "one new direction per step (generic activation)",
    ),
    ("parity2", "z1*z2", "leap 2: needs n = Θ(d²)"),
    ("hard-he2", "he2(z1)", "no first Hermite coefficient: needs n = Θ(d²)"),
];

/// Parses a target given as text that is not a preset's name. A name-like text that is not an
/// expression (`staircase4`, `stairway-he999`) is reported as neither, with the presets listed
/// nearest first; other texts keep the parser's message (with its column).
///
/// # Errors
/// [`Error::Invalid`] naming `key` for a name-like text, [`Error::Expr`] otherwise.
pub fn parse_target(text: &str, key: &str) -> Result<Expr> {
    Expr::parse(text).map_err(|e| {
        let name_like = text.starts_with(|c: char| c.is_ascii_alphabetic())
            && text.len() > 2
            && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !name_like {
            return e;
        }
        let mut names: Vec<&str> = PRESETS.iter().map(|(n, _, _)| *n).collect();
        names.sort_by_key(|n| (edit_distance(n, text), *n));
        Error::invalid(
            key,
            format!("a preset ({}) or an expression over z1..zr", names.join(", ")),
            format!("'{}'", crate::error::cut(text)),
        )
    })
}

/// The Levenshtein distance between two short names.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().take(200).collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The expression of a named preset.
///
/// # Errors
/// [`Error::Invalid`] (`target.preset`) listing the known presets.
pub fn preset_expr(name: &str) -> Result<&'static str> {
    PRESETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, e, _)| *e)
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|(n, _, _)| *n).collect();
            Error::invalid(
                "target.preset",
                format!("a known preset ({})", names.join(", ")),
                format!("'{name}'"),
            )
        })
}

/// A target function given at run time instead of an expression: it receives the teacher
/// coordinates of a chunk of samples (`m×r` row-major, `m` = the chunk's length) and writes the
/// `m` values of `g*` into its second argument. It is called once per chunk, from the worker
/// threads, so its cost adds to every pass; it must be a pure function of its input for runs to
/// stay deterministic. An `Err(message)` stops the run with [`Error::Target`].
pub type LabelFn = dyn Fn(&[f64], &mut [f64]) -> std::result::Result<(), String> + Send + Sync;

/// A target function given at run time, with a name for the records.
#[derive(Clone)]
pub struct CustomTarget {
    /// Shown as `target.expr` in the result's configuration (e.g. `"<python: my_target>"`).
    pub name: String,
    /// The function.
    pub f: std::sync::Arc<LabelFn>,
}

impl std::fmt::Debug for CustomTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomTarget({})", self.name)
    }
}

/// A custom target and the first error it returned (later calls are skipped).
#[derive(Debug, Clone)]
pub(crate) struct Custom {
    target: CustomTarget,
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// A teacher with its target function.
#[derive(Debug, Clone)]
pub struct Target {
    /// `g*`.
    pub expr: Expr,
    /// A target function given at run time, used instead of `expr` for the labels.
    pub(crate) custom: Option<Custom>,
    /// Number of teacher directions `r`.
    pub r: usize,
    /// Input dimension `d`.
    pub d: usize,
    /// `W*` (row-major `r×d`, orthonormal rows).
    pub w_star: Vec<f64>,
    /// Whether `W*` is the first `r` canonical vectors (teacher coordinates are then `z[..r]`).
    pub canonical: bool,
    /// Label noise variance `Δ`.
    pub noise: f64,
}

impl Target {
    /// Builds the teacher: canonical rows, or random orthonormal rows from the stream
    /// `(seed, Teacher, 0)` (Gram–Schmidt of Gaussian rows = QR with positive diagonal).
    ///
    /// # Errors
    /// [`Error::Invalid`] (`target.r`) if `r > d` or the expression uses a variable above `r`.
    pub fn new(expr: Expr, r: usize, d: usize, teacher: TeacherKind, noise: f64, seed: u64) -> Result<Target> {
        if r > d {
            return Err(Error::invalid("target.r", format!("<= network.d = {d}"), r));
        }
        if expr.max_var() > r {
            return Err(Error::invalid(
                "target.r",
                format!(">= {} (the target uses z{})", expr.max_var(), expr.max_var()),
                r,
            ));
        }
        let mut w_star = vec![0.0; r * d];
        let canonical = teacher == TeacherKind::Canonical;
        if canonical {
            for k in 0..r {
                w_star[k * d + k] = 1.0;
            }
        } else {
            let key = StreamKey::new(seed, Purpose::Teacher, 0);
            for k in 0..r {
                fill_normal(&mut key.rng(k as u64), &mut w_star[k * d..(k + 1) * d]);
            }
            orthonormalize_rows(&mut w_star, r, d)?;
        }
        Ok(Target {
            expr,
            custom: None,
            r,
            d,
            w_star,
            canonical,
            noise,
        })
    }

    /// Replaces the teacher `W*` by given rows (`r×d` row-major), which must be finite and
    /// orthonormal to 1e-6 (the overlaps are cosines with them).
    ///
    /// # Errors
    /// [`Error::Array`] naming the problem (`what` names the input, e.g. `"W_star"`).
    pub fn set_teacher(&mut self, w_star: &[f64], what: &str) -> Result<()> {
        let (r, d) = (self.r, self.d);
        let w_star = crate::given::given(what, w_star, r, d)?;
        for k in 0..r {
            for l in 0..=k {
                let g = crate::linalg::dot(&w_star[k * d..(k + 1) * d], &w_star[l * d..(l + 1) * d]);
                let want = if k == l { 1.0 } else { 0.0 };
                if (g - want).abs() > 1e-6 {
                    return Err(Error::Array {
                        what: what.into(),
                        expected: "have orthonormal rows (orthonormalize it, e.g. by QR)".into(),
                        actual: format!("<row {l}, row {k}> = {g:.3e}"),
                    });
                }
            }
        }
        self.w_star = w_star;
        self.canonical = false;
        Ok(())
    }

    /// Uses `custom` instead of the expression for the labels.
    pub(crate) fn set_custom(&mut self, custom: CustomTarget) {
        self.custom = Some(Custom {
            target: custom,
            error: Default::default(),
        });
    }

    /// The target function given at run time, if any.
    pub(crate) fn custom_target(&self) -> Option<&CustomTarget> {
        self.custom.as_ref().map(|c| &c.target)
    }

    /// The first error the custom target returned, if any.
    pub(crate) fn custom_error(&self) -> Option<Error> {
        let c = self.custom.as_ref()?;
        let e = c.error.lock().ok()?.clone()?;
        Some(Error::Target(format!("{}: {e}", c.target.name)))
    }

    /// Teacher coordinates `x = W* z` of `m` samples (`z` row-major `m×d`) into `x` (`m×r`).
    pub fn coordinates(&self, z: &[f64], m: usize, x: &mut [f64]) {
        self.coordinates_and_dots(z, m, x, None);
    }

    /// [`Target::coordinates`], and with `dots = Some((b, out))` also `out[i] = <z_i, b>`
    /// (the numbers of `linalg::dot`, a multiply and an add per term in order) where they come
    /// from the same reading of the samples (AVX-512: `linalg::lanes`, docs/architecture.md,
    /// "Passes over the data"); returns whether `out` was written.
    pub fn coordinates_and_dots(&self, z: &[f64], m: usize, x: &mut [f64], dots: Option<(&[f64], &mut [f64])>) -> bool {
        let (r, d) = (self.r, self.d);
        if self.canonical {
            for i in 0..m {
                x[i * r..(i + 1) * r].copy_from_slice(&z[i * d..i * d + r]);
            }
            return false;
        }
        if r <= lanes::MAX_R && lanes::gemm_general(m, r, d) {
            let dotted = dots.is_some();
            let w = (&self.w_star[..], gemm_depth_block::<f64>(d));
            if lanes::coordinates_and_dots(&z[..m * d], d, Some(w), &mut x[..m * r], dots) {
                return dotted;
            }
        }
        matmul(
            &mut x[..m * r],
            [m, r, d],
            Op::Plain(&z[..m * d]),
            Op::Transposed(&self.w_star),
            false,
        );
        false
    }

    /// Labels `y = g*(W* z) + sqrt(Δ) ξ` of `m` samples; `x` is scratch of length `m·r`.
    pub fn labels(&self, z: &[f64], m: usize, xi: Option<&[f64]>, x: &mut [f64], y: &mut [f64]) {
        self.labels_and_dots(z, m, xi, x, y, None);
    }

    /// [`Target::labels`], and the dots of [`Target::coordinates_and_dots`] where they come at
    /// no extra reading of the samples; returns whether they were written.
    pub fn labels_and_dots(
        &self,
        z: &[f64],
        m: usize,
        xi: Option<&[f64]>,
        x: &mut [f64],
        y: &mut [f64],
        dots: Option<(&[f64], &mut [f64])>,
    ) -> bool {
        let dotted = self.coordinates_and_dots(z, m, x, dots);
        match &self.custom {
            None => self.expr.eval_rows(&x[..m * self.r], self.r, &mut y[..m]),
            Some(c) => {
                let failed = c.error.lock().map_or(true, |e| e.is_some());
                let outcome = if failed {
                    Ok(())
                } else {
                    (c.target.f)(&x[..m * self.r], &mut y[..m])
                };
                if failed || outcome.is_err() {
                    y[..m].iter_mut().for_each(|v| *v = 0.0);
                }
                if let Err(e) = outcome {
                    if let Ok(mut slot) = c.error.lock() {
                        slot.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(xi) = xi {
            let s = self.noise.sqrt();
            for (yi, e) in y[..m].iter_mut().zip(xi) {
                *yi += s * e;
            }
        }
        dotted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::dot;

    #[test]
    fn presets_parse() {
        for (name, e, _) in PRESETS {
            let ex = Expr::parse(e).unwrap();
            assert!(ex.max_var() >= 1, "{name}");
        }
        assert!(matches!(preset_expr("nope"), Err(Error::Invalid { key, .. }) if key == "target.preset"));
        // A preset's typo is neither a preset nor an expression: the nearest presets come first.
        match parse_target("stairway-he999", "target.expr") {
            Err(Error::Invalid { key, expected, .. }) => {
                assert_eq!(key, "target.expr");
                assert!(
                    expected.starts_with("a preset (stairway-he124, stairway-pm,"),
                    "{expected}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse_target("staircase4", "t"), Err(Error::Invalid { expected, .. }) if expected.starts_with("a preset (staircase2, staircase3"))
        );
        // An expression's error keeps its column.
        assert!(matches!(parse_target("z1 + foo(z2)", "t"), Err(Error::Expr { .. })));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn random_teacher_is_orthonormal_and_seeded() {
        let e = Expr::parse("z1 + z1*z2*z3").unwrap();
        let t = Target::new(e.clone(), 3, 50, TeacherKind::Random, 0.0, 9).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let g = dot(&t.w_star[i * 50..(i + 1) * 50], &t.w_star[j * 50..(j + 1) * 50]);
                assert!((g - (i == j) as u8 as f64).abs() < 1e-13);
            }
        }
        let t2 = Target::new(e.clone(), 3, 50, TeacherKind::Random, 0.0, 9).unwrap();
        assert_eq!(t.w_star, t2.w_star);
        let t3 = Target::new(e, 3, 50, TeacherKind::Random, 0.0, 10).unwrap();
        assert_ne!(t.w_star, t3.w_star);
    }

    #[test]
    fn canonical_and_random_coordinates_agree_with_definition() {
        let e = Expr::parse("z1 + z1*z2").unwrap();
        let d = 6;
        let z: Vec<f64> = (0..3 * d).map(|i| (i as f64 * 0.37).sin()).collect();
        for kind in [TeacherKind::Canonical, TeacherKind::Random] {
            let t = Target::new(e.clone(), 2, d, kind, 0.0, 1).unwrap();
            let mut x = vec![0.0; 6];
            let mut y = vec![0.0; 3];
            t.labels(&z, 3, None, &mut x, &mut y);
            for i in 0..3 {
                let x1 = dot(&z[i * d..(i + 1) * d], &t.w_star[..d]);
                let x2 = dot(&z[i * d..(i + 1) * d], &t.w_star[d..]);
                assert!((y[i] - (x1 + x1 * x2)).abs() < 1e-13);
            }
        }
    }

    #[test]
    fn rank_checks() {
        let e = Expr::parse("z1*z3").unwrap();
        assert!(Target::new(e.clone(), 2, 5, TeacherKind::Random, 0.0, 0).is_err());
        assert!(Target::new(e, 6, 5, TeacherKind::Random, 0.0, 0).is_err());
    }
}
