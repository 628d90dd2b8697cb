//! Activations `σ` of the student with their first and second derivatives (docs/model.md §2).
//!
//! Every activation accepts a shift `b`: `σ(x − b)`, written `relu:0.5`. A shift makes all Hermite
//! coefficients of ReLU nonzero.

use crate::error::{Error, Result};
use crate::linalg::Real;
use crate::special::hermite;
use serde::{Deserialize, Serialize};

pub(crate) mod simd;

/// The shape of an activation, before the shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationKind {
    /// `max(x, 0)`; derivative at 0 is 0.
    Relu,
    /// `erf(x)`.
    Erf,
    /// `tanh(x)`.
    Tanh,
    /// Probabilists' Hermite polynomial `He_k(x)`, `k = 1..8`.
    Hermite(u32),
    /// `x`.
    Linear,
}

/// An activation `σ(x) = kind(x − shift)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Activation {
    /// The shape.
    pub kind: ActivationKind,
    /// The shift `b` in `σ(x − b)`.
    pub shift: f64,
}

const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

impl Activation {
    /// Unshifted activation of the given kind.
    pub fn new(kind: ActivationKind) -> Self {
        Activation { kind, shift: 0.0 }
    }

    /// `σ(x)`.
    #[inline(always)]
    pub fn f(&self, x: f64) -> f64 {
        let x = x - self.shift;
        match self.kind {
            ActivationKind::Relu => x.max(0.0),
            ActivationKind::Erf => libm::erf(x),
            ActivationKind::Tanh => x.tanh(),
            ActivationKind::Hermite(k) => hermite(k, x),
            ActivationKind::Linear => x,
        }
    }

    /// `σ'(x)` (ReLU: 0 at the kink).
    #[inline(always)]
    pub fn df(&self, x: f64) -> f64 {
        let x = x - self.shift;
        match self.kind {
            ActivationKind::Relu => {
                if x > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            ActivationKind::Erf => TWO_OVER_SQRT_PI * (-x * x).exp(),
            ActivationKind::Tanh => {
                let t = x.tanh();
                1.0 - t * t
            }
            ActivationKind::Hermite(k) => {
                if k == 0 {
                    0.0
                } else {
                    k as f64 * hermite(k - 1, x)
                }
            }
            ActivationKind::Linear => 1.0,
        }
    }

    /// `σ(x)` and `σ'(x)` together (one transcendental call for tanh and erf).
    #[inline(always)]
    pub fn f_df(&self, x: f64) -> (f64, f64) {
        let y = x - self.shift;
        match self.kind {
            ActivationKind::Relu => {
                if y > 0.0 {
                    (y, 1.0)
                } else {
                    (0.0, 0.0)
                }
            }
            ActivationKind::Tanh => {
                let t = y.tanh();
                (t, 1.0 - t * t)
            }
            _ => (self.f(x), self.df(x)),
        }
    }

    /// `σ''(x)` (ReLU: 0 everywhere, the Dirac mass at the kink is not represented).
    #[inline]
    pub fn d2f(&self, x: f64) -> f64 {
        let x = x - self.shift;
        match self.kind {
            ActivationKind::Relu | ActivationKind::Linear => 0.0,
            ActivationKind::Erf => -2.0 * x * TWO_OVER_SQRT_PI * (-x * x).exp(),
            ActivationKind::Tanh => {
                let t = x.tanh();
                -2.0 * t * (1.0 - t * t)
            }
            ActivationKind::Hermite(k) => {
                if k < 2 {
                    0.0
                } else {
                    (k * (k - 1)) as f64 * hermite(k - 2, x)
                }
            }
        }
    }

    /// Whether `σ(−x) = −σ(x)` (odd activations never learn even targets).
    pub fn is_odd(&self) -> bool {
        self.shift == 0.0
            && match self.kind {
                ActivationKind::Erf | ActivationKind::Tanh | ActivationKind::Linear => true,
                ActivationKind::Hermite(k) => k % 2 == 1,
                ActivationKind::Relu => false,
            }
    }
}

/// Largest shift `|b|` of `σ(h + b)`: with `h ~ N(0, 1)`, beyond 10 standard deviations a ReLU
/// is linear or zero on the whole Gaussian and tanh/erf are constant, so larger shifts only
/// bring underflow and slow quadrature.
pub const MAX_SHIFT: f64 = 10.0;

impl std::str::FromStr for Activation {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::Name(format!(
                "must be relu, erf, tanh, he1..he8 or linear, optionally with a shift like 'relu:0.5' (|shift| <= {MAX_SHIFT}), but is '{}'",
                crate::error::cut(s)
            ))
        };
        let (name, shift) = match s.split_once(':') {
            Some((n, b)) => {
                let b: f64 = b.trim().parse().map_err(|_| bad())?;
                if !(b.is_finite() && b.abs() <= MAX_SHIFT) {
                    return Err(bad());
                }
                (n.trim(), b)
            }
            None => (s.trim(), 0.0),
        };
        let kind = match name {
            "relu" => ActivationKind::Relu,
            "erf" => ActivationKind::Erf,
            "tanh" => ActivationKind::Tanh,
            "linear" => ActivationKind::Linear,
            _ => match name.strip_prefix("he").and_then(|k| k.parse::<u32>().ok()) {
                Some(k) if (1..=8).contains(&k) => ActivationKind::Hermite(k),
                _ => return Err(bad()),
            },
        };
        Ok(Activation { kind, shift })
    }
}

impl std::fmt::Display for Activation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ActivationKind::Relu => f.write_str("relu")?,
            ActivationKind::Erf => f.write_str("erf")?,
            ActivationKind::Tanh => f.write_str("tanh")?,
            ActivationKind::Hermite(k) => write!(f, "he{k}")?,
            ActivationKind::Linear => f.write_str("linear")?,
        }
        if self.shift != 0.0 {
            write!(f, ":{}", self.shift)?;
        }
        Ok(())
    }
}

impl Serialize for Activation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Partial sums of the row kernels. Fixed, so that a sum's rounding does not depend on the
/// machine: lane `l` adds the terms `i ≡ l (mod 8)` in order, and the lanes are combined pairwise.
const LANES: usize = 8;

#[inline(always)]
fn lane_sum(acc: [f64; LANES]) -> f64 {
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))
}

/// `Σ_i a_i g(h_i).0` with `h_i ← g(h_i).1`, in the fixed order of [`LANES`].
#[inline(always)]
fn fused_row<T: Real>(h: &mut [T], a: &[f64], g: impl Fn(f64) -> (f64, f64)) -> f64 {
    debug_assert_eq!(h.len(), a.len());
    let mut acc = [0.0; LANES];
    let mut hs = h.chunks_exact_mut(LANES);
    let mut as_ = a.chunks_exact(LANES);
    for (hc, ac) in (&mut hs).zip(&mut as_) {
        for l in 0..LANES {
            let (v, dv) = g(hc[l].to_f64());
            acc[l] += ac[l] * v;
            hc[l] = T::from_f64(dv);
        }
    }
    for (l, (hv, av)) in hs.into_remainder().iter_mut().zip(as_.remainder()).enumerate() {
        let (v, dv) = g(hv.to_f64());
        acc[l] += av * v;
        *hv = T::from_f64(dv);
    }
    lane_sum(acc)
}

/// `Σ_i c_i v_i` in the fixed order of [`LANES`] (the order of the built-in activations' rows, so
/// that an activation given as a function sums exactly as the built-in one).
pub(crate) fn dot_lanes(v: &[f64], c: &[f64]) -> f64 {
    sum_row(v, c, |x| x)
}

/// `Σ_i c_i g(h_i)` in the fixed order of [`LANES`].
#[inline(always)]
fn sum_row<T: Real>(h: &[T], c: &[f64], g: impl Fn(f64) -> f64) -> f64 {
    debug_assert_eq!(h.len(), c.len());
    let mut acc = [0.0; LANES];
    let hs = h.chunks_exact(LANES);
    let cs = c.chunks_exact(LANES);
    let (hr, cr) = (hs.remainder(), cs.remainder());
    for (hc, cc) in hs.zip(cs) {
        for l in 0..LANES {
            acc[l] += cc[l] * g(hc[l].to_f64());
        }
    }
    for (l, (hv, cv)) in hr.iter().zip(cr).enumerate() {
        acc[l] += cv * g(hv.to_f64());
    }
    lane_sum(acc)
}

impl Activation {
    /// The forward pass of one sample in a gradient step: returns `Σ_i a_i σ(h_i)` and replaces
    /// each pre-activation `h_i` by `σ'(h_i)` (docs/model.md §2). One pass over the row; ReLU
    /// and tanh without a per-element dispatch, so that the compiler vectorizes them.
    pub fn forward_row<T: Real>(&self, h: &mut [T], a: &[f64]) -> f64 {
        let b = self.shift;
        match self.kind {
            ActivationKind::Relu if simd::usable() => {
                let rest = h.len() / LANES * LANES;
                let (whole, tail) = h.split_at_mut(rest);
                let mut acc =
                    simd::relu_forward_lanes(whole, a, b).expect("f32 or f64 rows on a processor with the kernel");
                for (l, (hv, av)) in tail.iter_mut().zip(&a[rest..]).enumerate() {
                    let y = hv.to_f64() - b;
                    let (v, dv) = if y > 0.0 { (y, 1.0) } else { (0.0, 0.0) };
                    acc[l] += av * v;
                    *hv = T::from_f64(dv);
                }
                lane_sum(acc)
            }
            ActivationKind::Relu => fused_row(h, a, |x| {
                let y = x - b;
                if y > 0.0 {
                    (y, 1.0)
                } else {
                    (0.0, 0.0)
                }
            }),
            ActivationKind::Tanh => fused_row(h, a, |x| {
                let t = (x - b).tanh();
                (t, 1.0 - t * t)
            }),
            _ => fused_row(h, a, |x| self.f_df(x)),
        }
    }

    /// `Σ_i c_i σ(h_i)`: the network's output on one sample before the `1/√p` (docs/model.md §2).
    pub fn output_row<T: Real>(&self, h: &[T], c: &[f64]) -> f64 {
        let b = self.shift;
        match self.kind {
            ActivationKind::Relu if simd::usable() => {
                let rest = h.len() / LANES * LANES;
                let mut acc =
                    simd::relu_output_lanes(&h[..rest], c, b).expect("f32 or f64 rows on a processor with the kernel");
                for (l, (hv, cv)) in h[rest..].iter().zip(&c[rest..]).enumerate() {
                    acc[l] += cv * (hv.to_f64() - b).max(0.0);
                }
                lane_sum(acc)
            }
            ActivationKind::Relu => sum_row(h, c, |x| (x - b).max(0.0)),
            _ => sum_row(h, c, |x| self.f(x)),
        }
    }

    /// `h_i ← σ(h_i)` for a block of pre-activations (the readout's features).
    pub fn apply<T: Real>(&self, h: &mut [T]) {
        let b = self.shift;
        match self.kind {
            ActivationKind::Relu => h.iter_mut().for_each(|v| *v = T::from_f64((v.to_f64() - b).max(0.0))),
            _ => h.iter_mut().for_each(|v| *v = T::from_f64(self.f(v.to_f64()))),
        }
    }

    /// `h_i ← σ(h_i)` for one sample's features, then `s_i += σ(h_i)·y` with `σ(h_i)` as stored
    /// (the readout's `Xᵀỹ`, docs/model.md §3.2): the numbers of [`Activation::apply`] followed by
    /// that sum, one row in one pass (ReLU in AVX-512 where the processor has it).
    pub fn apply_and_add<T: Real>(&self, h: &mut [T], y: f64, s: &mut [f64]) {
        debug_assert_eq!(h.len(), s.len());
        let done = match self.kind {
            ActivationKind::Relu => simd::relu_apply_add(h, self.shift, y, s).unwrap_or(0),
            _ => 0,
        };
        let (h, s) = (&mut h[done..], &mut s[done..]);
        self.apply(h);
        s.iter_mut().zip(&*h).for_each(|(a, v)| *a += v.to_f64() * y);
    }
}

/// `σ` (and, when asked, `σ'`) of a block of pre-activations, computed by a function given at
/// run time: `f(h, sigma, dsigma)` fills `sigma` (and `dsigma` when `Some`) with one value per
/// entry of `h` (row-major `m×p`, one chunk of samples). An `Err(message)` stops the run.
pub type ActivationFn = dyn Fn(&[f64], &mut [f64], Option<&mut [f64]>) -> std::result::Result<(), String> + Send + Sync;

/// An activation given as a function at run time (a notebook's pair of callables): used instead
/// of the configured `network.activation` in every pass (the gradient, the readout, the test),
/// called once per chunk. The theory needs a built-in activation and is skipped.
#[derive(Clone)]
pub struct CustomActivation {
    /// Shown in the result's `theory_note` (e.g. `"<python: softplus>"`).
    pub name: String,
    /// The function.
    pub f: std::sync::Arc<ActivationFn>,
    /// The first error it returned (later calls are skipped).
    error: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

impl std::fmt::Debug for CustomActivation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CustomActivation({})", self.name)
    }
}

/// The same function (the same allocation) under the same name.
impl PartialEq for CustomActivation {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && std::sync::Arc::ptr_eq(&self.f, &other.f)
    }
}

impl CustomActivation {
    /// An activation from a function of blocks.
    pub fn new(name: impl Into<String>, f: std::sync::Arc<ActivationFn>) -> CustomActivation {
        CustomActivation {
            name: name.into(),
            f,
            error: Default::default(),
        }
    }

    /// The first error the function returned, as the run reports it.
    pub fn error(&self) -> Option<Error> {
        let e = self.error.lock().ok()?.clone()?;
        Some(Error::Activation(format!("{}: {e}", self.name)))
    }

    /// `(σ(h), σ'(h))` of a block (`σ'` empty unless `derivative`); zeros once the function has
    /// failed (the run stops at its next check).
    pub fn block<T: Real>(&self, h: &[T], derivative: bool) -> (Vec<f64>, Vec<f64>) {
        let x: Vec<f64> = h.iter().map(|v| v.to_f64()).collect();
        let mut s = vec![0.0; x.len()];
        let mut ds = vec![0.0; if derivative { x.len() } else { 0 }];
        let failed = self.error.lock().map_or(true, |e| e.is_some());
        if !failed {
            let out = (self.f)(&x, &mut s, derivative.then_some(&mut ds[..]));
            let bad = s.iter().chain(&ds).position(|v| !v.is_finite());
            let err = match (out, bad) {
                (Err(e), _) => Some(e),
                (Ok(()), Some(i)) => Some(format!(
                    "returned a non-finite value at entry {i} of a block (pre-activation {})",
                    x[i % x.len().max(1)]
                )),
                (Ok(()), None) => None,
            };
            if let Some(e) = err {
                if let Ok(mut slot) = self.error.lock() {
                    slot.get_or_insert(e);
                }
                s.fill(0.0);
                ds.fill(0.0);
            }
        }
        (s, ds)
    }

    /// `h ← σ(h)` for a block (the readout's features).
    pub fn apply<T: Real>(&self, h: &mut [T]) {
        let (s, _) = self.block(h, false);
        h.iter_mut().zip(s).for_each(|(v, x)| *v = T::from_f64(x));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ReLU's rows by the AVX-512 kernels (where the processor has them) are the generic
    /// rows' numbers bit for bit: both precisions, shifts, every length up to 40 and a long row,
    /// zeros of both signs, NaN, infinities, subnormals.
    /// Numbers uniform on (−2, 2) from a xorshift stream (the row kernels' test inputs).
    fn uniform(seed: u64) -> impl FnMut() -> f64 {
        let mut x = seed | 1;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            4.0 * ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        }
    }

    #[test]
    fn relu_row_kernels_are_bit_identical_to_the_generic_rows() {
        fn check<T: Real>(b: f64, len: usize, seed: u64) {
            let act: Activation = format!("relu:{b}").parse().unwrap();
            let mut next = uniform(seed);
            let specials = [
                0.0,
                -0.0,
                b,
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                1e-310,
                -1e-310,
            ];
            let h: Vec<T> = (0..len)
                .map(|i| {
                    T::from_f64(if i % 5 == 3 {
                        specials[(i / 5) % specials.len()]
                    } else {
                        next()
                    })
                })
                .collect();
            let c: Vec<f64> = (0..len).map(|_| next()).collect();
            let relu = |x: f64| (x - b).max(0.0);
            let generic = sum_row(&h, &c, relu);
            assert_eq!(
                act.output_row(&h, &c).to_bits(),
                generic.to_bits(),
                "output, b = {b}, {len} entries"
            );
            let (mut fast, mut slow) = (h.clone(), h.clone());
            let got = act.forward_row(&mut fast, &c);
            let want = fused_row(&mut slow, &c, |x| {
                let y = x - b;
                if y > 0.0 {
                    (y, 1.0)
                } else {
                    (0.0, 0.0)
                }
            });
            assert_eq!(got.to_bits(), want.to_bits(), "forward, b = {b}, {len} entries");
            assert!(
                fast.iter()
                    .zip(&slow)
                    .all(|(u, v)| u.to_f64().to_bits() == v.to_f64().to_bits()),
                "slopes, b = {b}, {len} entries"
            );
            // The readout's row: σ stored, then `s += σ·y` (as `apply` and a loop).
            let y = next();
            let (mut fast, mut slow) = (h.clone(), h.clone());
            let (mut s_fast, mut s_slow) = (c.clone(), c.clone());
            act.apply_and_add(&mut fast, y, &mut s_fast);
            slow.iter_mut().for_each(|v| *v = T::from_f64(relu(v.to_f64())));
            s_slow.iter_mut().zip(&slow).for_each(|(a, v)| *a += v.to_f64() * y);
            let bits = |v: &[T]| v.iter().map(|x| x.to_f64().to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&slow), "features, b = {b}, {len} entries");
            let sums = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(sums(&s_fast), sums(&s_slow), "sums, b = {b}, {len} entries");
        }
        for b in [0.0, 0.5, -0.3] {
            for len in (0..=40).chain([1029]) {
                check::<f64>(b, len, 7 + len as u64);
                check::<f32>(b, len, 11 + len as u64);
            }
        }
    }

    /// The gradient's row scaling `h ← (h·e)·a` in AVX-512 against the scalar loop, bit for bit
    /// (the slopes 0 and 1 of ReLU, other values, zeros of both signs, NaN, infinities, results
    /// that round to subnormals or overflow in f32).
    #[test]
    fn gradient_row_scaling_is_bit_identical() {
        fn check<T: Real>(len: usize, e: f64, seed: u64) {
            let mut next = uniform(seed);
            let specials = [0.0, -0.0, 1.0, f64::NAN, f64::INFINITY, 1e-30, 3e38, -7.5];
            let h: Vec<T> = (0..len)
                .map(|i| {
                    T::from_f64(if i % 3 == 0 {
                        specials[(i / 3) % specials.len()]
                    } else {
                        next()
                    })
                })
                .collect();
            let a: Vec<f64> = (0..len).map(|i| if i % 7 == 1 { 1e-20 } else { next() }).collect();
            let mut fast = h.clone();
            let done = simd::scale_row(&mut fast, e, &a).unwrap_or(0);
            for (hi, ai) in fast[done..].iter_mut().zip(&a[done..]) {
                *hi = T::from_f64(hi.to_f64() * e * ai);
            }
            let want: Vec<u64> = h
                .iter()
                .zip(&a)
                .map(|(v, ai)| T::from_f64(v.to_f64() * e * ai).to_f64().to_bits())
                .collect();
            let got: Vec<u64> = fast.iter().map(|v| v.to_f64().to_bits()).collect();
            assert_eq!(got, want, "{len} entries, e = {e}");
        }
        for e in [0.37, -2.5, 0.0, -0.0, 1e-10, 1e300] {
            for len in (0..=20).chain([1029]) {
                check::<f64>(len, e, 5 + len as u64);
                check::<f32>(len, e, 9 + len as u64);
            }
        }
    }

    fn all() -> Vec<Activation> {
        let mut v: Vec<Activation> = ["relu", "erf", "tanh", "linear", "relu:0.5", "tanh:-0.3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for k in 1..=8 {
            v.push(format!("he{k}").parse().unwrap());
            v.push(format!("he{k}:0.25").parse().unwrap());
        }
        v
    }

    /// Central finite differences, step 1e-5, away from ReLU's kink.
    #[test]
    fn derivatives_match_finite_differences() {
        let h = 1e-5;
        for act in all() {
            for i in 0..81 {
                let x = -4.0 + 0.1 * i as f64 + 0.0123;
                if act.kind == ActivationKind::Relu && (x - act.shift).abs() < 2.0 * h {
                    continue;
                }
                let fd1 = (act.f(x + h) - act.f(x - h)) / (2.0 * h);
                let fd2 = (act.df(x + h) - act.df(x - h)) / (2.0 * h);
                let scale = 1.0 + act.f(x).abs() + act.df(x).abs();
                assert!(
                    (fd1 - act.df(x)).abs() < 1e-6 * scale * 100.0,
                    "{act} σ' at {x}: fd {fd1} vs {}",
                    act.df(x)
                );
                assert!(
                    (fd2 - act.d2f(x)).abs() < 1e-6 * scale * 100.0,
                    "{act} σ'' at {x}: fd {fd2} vs {}",
                    act.d2f(x)
                );
                let (a, b) = act.f_df(x);
                assert_eq!((a, b), (act.f(x), act.df(x)));
            }
        }
    }

    #[test]
    fn relu_derivative_at_zero_is_zero() {
        let r: Activation = "relu".parse().unwrap();
        assert_eq!(r.df(0.0), 0.0);
        let s: Activation = "relu:0.5".parse().unwrap();
        assert_eq!(s.f(0.5), 0.0);
        assert_eq!(s.f(1.5), 1.0);
        assert_eq!(s.df(0.5), 0.0);
    }

    #[test]
    fn parse_and_display_round_trip() {
        for s in ["relu", "erf", "tanh", "linear", "he3", "relu:0.5", "he8:-1.25"] {
            let a: Activation = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        for s in [
            "sigmoid",
            "he0",
            "he9",
            "relu:x",
            "relu:inf",
            "",
            "relu:10.5",
            "tanh:-1e6",
        ] {
            let e = s.parse::<Activation>().unwrap_err();
            assert!(matches!(&e, Error::Name(m) if m.starts_with("must be relu")), "{e:?}");
            let e = crate::names::parse_named::<Activation>("network.activation", s).unwrap_err();
            assert_eq!(e.key(), Some("network.activation"));
        }
    }

    #[test]
    fn row_kernels_match_the_element_functions() {
        let kinds = ["relu", "relu:0.3", "tanh", "erf", "he3", "linear", "tanh:-0.2"];
        for name in kinds {
            let act: Activation = name.parse().unwrap();
            for len in [0usize, 1, 7, 8, 9, 1024, 1031] {
                let h: Vec<f64> = (0..len).map(|i| ((i * 37 % 101) as f64 - 50.0) / 17.0).collect();
                let a: Vec<f64> = (0..len).map(|i| ((i * 13 % 29) as f64 - 14.0) / 9.0).collect();
                let mut row = h.clone();
                let f = act.forward_row(&mut row, &a);
                let (mut naive, mut scale) = (0.0, 0.0);
                for i in 0..len {
                    let (v, dv) = act.f_df(h[i]);
                    naive += a[i] * v;
                    scale += (a[i] * v).abs();
                    assert_eq!(row[i], dv, "{name}: sigma' at {}", h[i]);
                }
                // Only the order of the additions differs: a few roundings of the terms' scale.
                let tol = 4.0 * f64::EPSILON * scale.max(f64::MIN_POSITIVE);
                assert!((f - naive).abs() <= tol, "{name}, len {len}: {f} vs {naive}");
                let out = act.output_row(&h, &a);
                assert_eq!(out.to_bits(), f.to_bits(), "{name}: output_row is forward_row's sum");
                let mut feats = h.clone();
                act.apply(&mut feats);
                for i in 0..len {
                    assert_eq!(feats[i], act.f(h[i]), "{name}: apply at {}", h[i]);
                }
            }
        }
    }
}
