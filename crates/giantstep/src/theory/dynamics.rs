//! State evolution of all `p` neurons over `T` giant steps, and the test error of the ridge
//! readout on the features they reach (docs/theory.md §6).
//!
//! The state after step `t` is what the readout and the next step see of the first layer: the
//! teacher overlaps `M` (`p×r`, row `m_i = W* w_i`) and the Gram matrix `Q⊥` of the rows' parts
//! orthogonal to the teacher. `Q⊥ = B Bᵀ + N`: `B` (`p×h`) holds the orthogonal parts inside the
//! span of the initial rows (an orthonormal basis of it, `h` its dimension), `N` the Gram matrix
//! of what the steps added outside that span (sums of fresh gradient noise, whose directions are
//! independent of everything before them). One step with `γ = η/p`, `s_i = √p a_i`,
//! `λ_i = <m_i, x> + ρ_i ε`, `ρ_i² = Q⊥_ii`:
//!
//! ```text
//! f(x)   = (1/p) Σ_j s_j E_ε σ(λ_j)                         e(x) = ỹ(x) − f(x)   (ỹ for correlation loss)
//! m_i   ← m_i + γ s_i ( E[e σ'(λ_i) x] + ζ_i )              ζ_i: the batch's noise in teacher space
//! w_i⊥  ← Σ_j L_ij w_j⊥ + ξ_i,   L = diag(1 + γ s_i E[e σ''(λ_i)]) − (γ/p) S E[σ'(λ_i)σ'(λ_j)] S
//! E[ξ_i ξ_jᵀ] = (γ² s_i s_j / n) E[(e² + Δ) σ'(λ_i) σ'(λ_j)] I       (one such vector per neuron)
//! ```
//!
//! The noise `ξ` is drawn (seeded, purpose `Theory`) inside the span of the initial rows and
//! enters `N` through its Gram matrix outside it, `γ² (d − r − h)/n · S E S`; `ζ` likewise. The
//! expectations over `x` use a tensor Gauss–Hermite grid, those over `ε` the smoother of
//! [`super::activation::Smoother`]; pair expectations over `(λ_i, λ_j)` are closed forms for ReLU
//! and erf (arc-cosine and arcsine kernels) and a Hermite series or a 2-d rule otherwise.
//!
//! The readout's test error is the deterministic equivalent of ridge regression with the
//! population feature moments `K_ij = E[σ(λ_i) σ(λ_j)]`, `b_i = E[ỹ σ(λ_i)]` ([`ridge_error`]).

use super::activation::Smoother;
use super::quadrature::{gauss_hermite, tensor_gauss_hermite, Rule};
use crate::activation::{Activation, ActivationKind};
use crate::data::{fill_normal, Purpose, StreamKey, TheoryStream};
use crate::error::{Error, Result};
use crate::linalg::{dot, gram_lower, matmul, mirror_lower, symmetric_eigen, Op};
use crate::model::Normalize;
use rayon::prelude::*;
use std::f64::consts::PI;

/// At most this many quadrature points over `x` (a tensor Gauss–Hermite grid; seeded Monte Carlo
/// points when fewer than 5 nodes per axis would fit).
pub const MAX_POINTS: usize = 4096;
/// At most this many Gauss–Hermite nodes per axis (exact for polynomials of degree < 64 in each
/// coordinate; the smoothed activations are analytic).
pub const MAX_NODES: usize = 32;

/// Integration points `(x, weight)` over `N(0, I_r)`.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Dimension.
    pub r: usize,
    /// Points, row-major `len×r`.
    pub x: Vec<f64>,
    /// Weights (sum 1).
    pub w: Vec<f64>,
}

impl Grid {
    /// A tensor Gauss–Hermite grid with at most [`MAX_POINTS`] points ([`MAX_NODES`] per axis),
    /// or [`MAX_POINTS`] seeded Gaussian points when fewer than 5 nodes per axis fit.
    ///
    /// # Errors
    /// If the quadrature rule cannot be built.
    pub fn new(r: usize, seed: u64) -> Result<Grid> {
        let nodes = ((MAX_POINTS as f64).powf(1.0 / r.max(1) as f64) + 1e-9).floor() as usize;
        let nodes = nodes.min(MAX_NODES);
        if nodes >= 5 {
            let (x, w) = tensor_gauss_hermite(nodes, r)?;
            Ok(Grid { r, x, w })
        } else {
            let key = StreamKey::theory(seed, TheoryStream::DynamicsGrid);
            let mut x = vec![0.0; MAX_POINTS * r];
            fill_normal(&mut key.rng(0), &mut x);
            Ok(Grid {
                r,
                x,
                w: vec![1.0 / MAX_POINTS as f64; MAX_POINTS],
            })
        }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.w.len()
    }

    /// Whether there are no points.
    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }
}

/// Pair expectations `E[σ(λ_i) σ(λ_j)]` and `E[σ'(λ_i) σ'(λ_j)]` of centred Gaussian pairs with
/// covariance `[[q_ii, q_ij], [q_ij, q_jj]]`.
#[derive(Debug, Clone)]
pub struct PairKernel {
    act: Activation,
    one: Rule,
    two: Rule,
}

/// Which function of the activation a kernel pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pair {
    /// `E[σ(λ_i) σ(λ_j)]`.
    Value,
    /// `E[σ'(λ_i) σ'(λ_j)]`.
    Derivative,
}

/// Terms of the Hermite series of a pair expectation.
const SERIES_TERMS: usize = 60;
/// Beyond this correlation the series is replaced by a 2-d Gauss–Hermite rule.
const SERIES_MAX_CORR: f64 = 0.9;

impl PairKernel {
    /// The kernel of `act`.
    ///
    /// # Errors
    /// If a quadrature rule cannot be built.
    pub fn new(act: Activation) -> Result<PairKernel> {
        Ok(PairKernel {
            act,
            one: gauss_hermite(96)?,
            two: gauss_hermite(64)?,
        })
    }

    fn closed(&self) -> bool {
        self.act.shift == 0.0
            && matches!(
                self.act.kind,
                ActivationKind::Relu | ActivationKind::Erf | ActivationKind::Linear
            )
    }

    fn eval(&self, which: Pair, x: f64) -> f64 {
        match which {
            Pair::Value => self.act.f(x),
            Pair::Derivative => self.act.df(x),
        }
    }

    /// The closed form for ReLU, erf and the identity (unshifted).
    pub fn closed_form(&self, which: Pair, qi: f64, qj: f64, qij: f64) -> Option<f64> {
        if !self.closed() {
            return None;
        }
        Some(match (self.act.kind, which) {
            (ActivationKind::Relu, Pair::Value) => {
                let ab = (qi * qj).sqrt();
                let c = (qij / ab).clamp(-1.0, 1.0);
                let th = c.acos();
                ab / (2.0 * PI) * ((1.0 - c * c).sqrt() + (PI - th) * c)
            }
            (ActivationKind::Relu, Pair::Derivative) => {
                let c = (qij / (qi * qj).sqrt()).clamp(-1.0, 1.0);
                (PI - c.acos()) / (2.0 * PI)
            }
            (ActivationKind::Erf, Pair::Value) => {
                let c = 2.0 * qij / ((1.0 + 2.0 * qi) * (1.0 + 2.0 * qj)).sqrt();
                2.0 / PI * c.clamp(-1.0, 1.0).asin()
            }
            (ActivationKind::Erf, Pair::Derivative) => {
                4.0 / PI
                    / ((1.0 + 2.0 * qi) * (1.0 + 2.0 * qj) - 4.0 * qij * qij)
                        .max(1e-300)
                        .sqrt()
            }
            (_, Pair::Value) => qij,
            (_, Pair::Derivative) => 1.0,
        })
    }

    /// Normalized Hermite coefficients `E[F(√v ξ) He_k(ξ)]/√k!`, `k < SERIES_TERMS`, and `E[F²]`.
    fn coefficients(&self, which: Pair, v: f64) -> (Vec<f64>, f64) {
        let sd = v.max(0.0).sqrt();
        let mut c = vec![0.0; SERIES_TERMS];
        let mut sq = 0.0;
        let mut he = vec![0.0; SERIES_TERMS];
        for (&x, &w) in self.one.nodes.iter().zip(&self.one.weights) {
            let f = self.eval(which, sd * x);
            sq += w * f * f;
            he[0] = 1.0;
            he[1] = x;
            for k in 1..SERIES_TERMS - 1 {
                he[k + 1] = x * he[k] - k as f64 * he[k - 1];
            }
            for k in 0..SERIES_TERMS {
                c[k] += w * f * he[k];
            }
        }
        let mut fact = 1.0f64;
        for (k, ck) in c.iter_mut().enumerate() {
            if k > 0 {
                fact *= k as f64;
            }
            *ck /= fact.sqrt();
        }
        (c, sq)
    }

    /// The 2-d rule for a pair of correlation `c`.
    fn two_d(&self, which: Pair, vi: f64, vj: f64, c: f64) -> f64 {
        let (si, sj) = (vi.sqrt(), vj.sqrt());
        let s = (1.0 - c * c).max(0.0).sqrt();
        let mut acc = 0.0;
        for (&u, &wu) in self.two.nodes.iter().zip(&self.two.weights) {
            let fi = self.eval(which, si * u);
            let mut inner = 0.0;
            for (&z, &wz) in self.two.nodes.iter().zip(&self.two.weights) {
                inner += wz * self.eval(which, sj * (c * u + s * z));
            }
            acc += wu * fi * inner;
        }
        acc
    }

    /// The `p×p` matrix of pair expectations for the row-major Gram matrix `q` of the fields.
    pub fn matrix(&self, which: Pair, q: &[f64], p: usize) -> Vec<f64> {
        self.matrix_with(which, q, p, self.closed())
    }

    /// [`PairKernel::matrix`] by the Hermite series and the 2-d rule even where a closed form
    /// exists (to check one against the other).
    pub fn matrix_numeric(&self, which: Pair, q: &[f64], p: usize) -> Vec<f64> {
        self.matrix_with(which, q, p, false)
    }

    fn matrix_with(&self, which: Pair, q: &[f64], p: usize, closed: bool) -> Vec<f64> {
        let diag: Vec<f64> = (0..p).map(|i| q[i * p + i].max(1e-300)).collect();
        let mut out = vec![0.0; p * p];
        if closed {
            out.par_chunks_mut(p).enumerate().for_each(|(i, row)| {
                for j in 0..p {
                    row[j] = self.closed_form(which, diag[i], diag[j], q[i * p + j]).unwrap_or(0.0);
                }
            });
            return out;
        }
        let coefs: Vec<(Vec<f64>, f64)> = diag.par_iter().map(|&v| self.coefficients(which, v)).collect();
        let exact_series = matches!(self.act.kind, ActivationKind::Hermite(_) | ActivationKind::Linear);
        out.par_chunks_mut(p).enumerate().for_each(|(i, row)| {
            for j in 0..p {
                if i == j {
                    row[j] = coefs[i].1;
                    continue;
                }
                let c = (q[i * p + j] / (diag[i] * diag[j]).sqrt()).clamp(-1.0, 1.0);
                row[j] = if exact_series || c.abs() <= SERIES_MAX_CORR {
                    let mut pow = 1.0;
                    let mut acc = 0.0;
                    for k in 0..SERIES_TERMS {
                        acc += coefs[i].0[k] * coefs[j].0[k] * pow;
                        pow *= c;
                    }
                    acc
                } else {
                    self.two_d(which, diag[i], diag[j], c)
                };
            }
        });
        out
    }
}

/// The first layer as the theory sees it (docs/theory.md §6): teacher overlaps, the orthogonal
/// parts inside the span of the initial rows, and the Gram matrix of what lies outside.
#[derive(Debug, Clone)]
pub struct State {
    /// Width `p`.
    pub p: usize,
    /// Teacher rank `r`.
    pub r: usize,
    /// Dimension `h` of the span of the initial rows' orthogonal parts.
    pub h: usize,
    /// `s_i = √p a_i`.
    pub s: Vec<f64>,
    /// `M` (`p×r`, row-major).
    pub m: Vec<f64>,
    /// `B` (`p×h`): the orthogonal parts in an orthonormal basis of the initial span.
    pub b: Vec<f64>,
    /// `N` (`p×p`): Gram matrix of the orthogonal parts outside that span.
    pub n_out: Vec<f64>,
    /// Dimension of the orthogonal complement outside the span, `d − r − h`.
    pub d_out: f64,
}

impl State {
    /// The state of given weights: `w0` (`p×d`), `a` (`p`), `w_star` (`r×d`, orthonormal rows).
    ///
    /// # Errors
    /// [`Error::Numerical`] if the eigensolver fails.
    pub fn from_weights(w0: &[f64], a: &[f64], w_star: &[f64], p: usize, d: usize, r: usize) -> Result<State> {
        let mut m = vec![0.0; p * r];
        matmul(&mut m, [p, r, d], Op::Plain(w0), Op::Transposed(w_star), false);
        let mut q = vec![0.0; p * p];
        matmul(&mut q, [p, p, d], Op::Plain(w0), Op::Transposed(w0), false);
        let mut mm = vec![0.0; p * p];
        matmul(&mut mm, [p, p, r], Op::Plain(&m), Op::Transposed(&m), false);
        q.iter_mut().zip(&mm).for_each(|(a, b)| *a -= b);
        let (values, vectors) = symmetric_eigen(&q, p)?;
        let top = values.first().copied().unwrap_or(0.0).max(0.0);
        let kept: Vec<usize> = (0..p).filter(|&k| values[k] > 1e-10 * top.max(1e-300)).collect();
        let h = kept.len();
        let mut b = vec![0.0; p * h];
        for (col, &k) in kept.iter().enumerate() {
            let sv = values[k].sqrt();
            for i in 0..p {
                b[i * h + col] = vectors[k][i] * sv;
            }
        }
        let sp = (p as f64).sqrt();
        Ok(State {
            p,
            r,
            h,
            s: a.iter().map(|v| v * sp).collect(),
            m,
            b,
            n_out: vec![0.0; p * p],
            d_out: (d as f64 - r as f64 - h as f64).max(0.0),
        })
    }

    /// `Q⊥ = B Bᵀ + N` (`p×p`).
    pub fn q_perp(&self) -> Vec<f64> {
        let p = self.p;
        let mut q = self.n_out.clone();
        if self.h > 0 {
            matmul(
                &mut q,
                [p, p, self.h],
                Op::Plain(&self.b),
                Op::Transposed(&self.b),
                true,
            );
        }
        q
    }

    /// The Gram matrix of the rows, `M Mᵀ + Q⊥`.
    pub fn q_full(&self) -> Vec<f64> {
        let p = self.p;
        let mut q = self.q_perp();
        matmul(
            &mut q,
            [p, p, self.r],
            Op::Plain(&self.m),
            Op::Transposed(&self.m),
            true,
        );
        q
    }

    /// Mean over neurons of `|cos(w_i, w*_k)|` for each teacher direction `k`.
    pub fn mean_abs_cos(&self) -> Vec<f64> {
        let (p, r) = (self.p, self.r);
        let qp = self.q_perp();
        let mut out = vec![0.0; r];
        for i in 0..p {
            let mi = &self.m[i * r..(i + 1) * r];
            let nrm = (dot(mi, mi) + qp[i * p + i]).max(1e-300).sqrt();
            for k in 0..r {
                out[k] += mi[k].abs() / nrm / p as f64;
            }
        }
        out
    }
}

/// What the state evolution needs besides the state.
pub struct Setup<'a> {
    /// The labels the steps see, `ỹ(x)` (after preprocessing), as a function of `x = W* z`.
    pub label: &'a dyn Fn(&[f64]) -> f64,
    /// Teacher rank `r`.
    pub r: usize,
    /// Input dimension `d`.
    pub d: usize,
    /// Activation.
    pub activation: Activation,
    /// Correlation loss (`e = ỹ`) instead of the residual.
    pub correlation: bool,
    /// Row normalization.
    pub normalize: Normalize,
    /// Label noise variance `Δ`.
    pub noise: f64,
    /// Seed of the gradient noise.
    pub seed: u64,
}

/// The state evolution of a problem: quadrature grid, labels on it, smoother and pair kernels.
pub struct Model {
    pub(crate) grid: Grid,
    pub(crate) y: Vec<f64>,
    ey2: f64,
    pub(crate) smoother: Smoother,
    pub(crate) kernel: PairKernel,
    pub(crate) correlation: bool,
    pub(crate) normalize: Normalize,
    pub(crate) noise: f64,
    seed: u64,
}

/// A state with what both the readout and the next step need of it.
pub struct Prepared<'s> {
    state: &'s mut State,
    qp: Vec<f64>,
    rho: Vec<f64>,
    mo: Moments,
}

impl Prepared<'_> {
    /// The state.
    pub fn state(&self) -> &State {
        self.state
    }
}

/// The smoothed activation on the grid: `E_ε σ(λ)`, `E σ'`, `E σ' ε`, `E σ'²` (each `len×p`).
/// The sampling noise's covariances of one step.
struct NoiseCov {
    /// `w_q (e_q² + Δ)` on the grid.
    e2: Vec<f64>,
    /// `E[(e² + Δ) σ'_i σ'_j]` (`p × p`).
    ecom: Vec<f64>,
    /// Each neuron's own variance.
    indiv: Vec<f64>,
}

/// The noise drawn for one step: in the span of the orthogonal parts (`ξ`, `p × h`) and in
/// teacher space (`ζ`, `p × r`).
struct StepNoise {
    xi: Vec<f64>,
    zeta: Vec<f64>,
}

pub(crate) struct Moments {
    pub(crate) a: Vec<f64>,
    pub(crate) d1: Vec<f64>,
    pub(crate) de: Vec<f64>,
    pub(crate) s2: Vec<f64>,
}

impl Model {
    /// A model of `setup`.
    ///
    /// # Errors
    /// [`Error::Numerical`] if the labels are not finite on the grid or a rule cannot be built.
    pub fn new(setup: &Setup) -> Result<Model> {
        let grid = Grid::new(setup.r, setup.seed)?;
        let y: Vec<f64> = grid.x.chunks_exact(setup.r.max(1)).map(|x| (setup.label)(x)).collect();
        if y.iter().any(|v| !v.is_finite()) {
            return Err(Error::Numerical(
                "the target is not finite on the theory's quadrature grid".into(),
            ));
        }
        let ey2 = y.iter().zip(&grid.w).map(|(v, w)| w * v * v).sum::<f64>() + setup.noise;
        Ok(Model {
            grid,
            y,
            ey2,
            smoother: Smoother::new(setup.activation)?,
            kernel: PairKernel::new(setup.activation)?,
            correlation: setup.correlation,
            normalize: setup.normalize,
            noise: setup.noise,
            seed: setup.seed,
        })
    }

    /// `E[ỹ²] + Δ`: the test error of predicting 0.
    pub fn label_second_moment(&self) -> f64 {
        self.ey2
    }

    fn moments(&self, st: &State, rho: &[f64]) -> Moments {
        self.smoothed(&st.m, rho, st.p, st.r)
    }

    /// The smoothed activation of `p` neurons with teacher overlaps `m` (`p × r`) and orthogonal
    /// norms `rho` on the grid (each `len × p`).
    pub(crate) fn smoothed(&self, m: &[f64], rho: &[f64], p: usize, r: usize) -> Moments {
        let nq = self.grid.len();
        let mut fields = vec![0.0; nq * p];
        matmul(
            &mut fields,
            [nq, p, r],
            Op::Plain(&self.grid.x),
            Op::Transposed(m),
            false,
        );
        let mut mo = Moments {
            a: vec![0.0; nq * p],
            d1: vec![0.0; nq * p],
            de: vec![0.0; nq * p],
            s2: vec![0.0; nq * p],
        };
        mo.a.par_chunks_mut(p)
            .zip(mo.d1.par_chunks_mut(p))
            .zip(mo.de.par_chunks_mut(p))
            .zip(mo.s2.par_chunks_mut(p))
            .zip(fields.par_chunks(p))
            .for_each(|((((a, d1), de), s2), t)| {
                for i in 0..p {
                    let m = self.smoother.moments(t[i], rho[i]);
                    a[i] = m[0];
                    d1[i] = m[1];
                    de[i] = m[2];
                    s2[i] = m[3];
                }
            });
        mo
    }

    /// The state with its orthogonal Gram matrix and the smoothed activation on the grid.
    pub fn prepare<'s>(&self, state: &'s mut State) -> Prepared<'s> {
        let p = state.p;
        let qp = state.q_perp();
        let rho: Vec<f64> = (0..p).map(|i| qp[i * p + i].max(1e-300).sqrt()).collect();
        let mo = self.moments(state, &rho);
        Prepared { state, qp, rho, mo }
    }

    /// One giant step with `γ = η/p` on a batch of `n` samples (the step index `t` keys the noise).
    ///
    /// # Errors
    /// [`Error::Numerical`] if the state stops being finite.
    pub fn step(&self, prepared: Prepared<'_>, gamma: f64, n: f64, t: usize) -> Result<()> {
        let Prepared { state: st, qp, rho, mo } = prepared;
        let e = self.residual(st, &mo);
        let dm = self.drift(st, &mo, &e);
        let cov = self.noise_covariances(st, &mo, &rho, &qp, &e);
        let noise = self.draw_noise(st, &mo, &e, &cov, gamma, n, t);
        let mut l = self.coupling(st, &mo, &rho, &e, gamma);
        let shrink = self.spherical_shrink(st, &qp, &dm, &noise, &mut l, gamma);
        Self::update(st, &dm, noise, &l, &shrink, &cov.ecom, gamma, n);
        if self.normalize != Normalize::None {
            Self::renormalize(st);
        }
        if st.m.iter().chain(&st.b).chain(&st.n_out).any(|v| !v.is_finite()) {
            return Err(Error::Numerical(format!(
                "the predicted first layer overflowed at step {t} (gamma = {gamma}): the steps diverge"
            )));
        }
        Ok(())
    }

    /// The residual `e = y − f` on the grid (`e = y` for the correlation loss).
    fn residual(&self, st: &State, mo: &Moments) -> Vec<f64> {
        let p = st.p;
        (0..self.grid.len())
            .map(|q| {
                if self.correlation {
                    self.y[q]
                } else {
                    let f: f64 = mo.a[q * p..(q + 1) * p].iter().zip(&st.s).map(|(a, s)| a * s).sum();
                    self.y[q] - f / p as f64
                }
            })
            .collect()
    }

    /// The population drift in teacher space: `dm_i = E[e σ'(λ_i) x]` (`p × r`).
    fn drift(&self, st: &State, mo: &Moments, e: &[f64]) -> Vec<f64> {
        let (p, r, nq) = (st.p, st.r, self.grid.len());
        let (x, w) = (&self.grid.x, &self.grid.w);
        let mut weighted = vec![0.0; nq * p];
        for q in 0..nq {
            let c = w[q] * e[q];
            for i in 0..p {
                weighted[q * p + i] = c * mo.d1[q * p + i];
            }
        }
        let mut dm = vec![0.0; p * r];
        matmul(&mut dm, [p, r, nq], Op::Transposed(&weighted), Op::Plain(x), false);
        dm
    }

    /// The covariances of the gradient's sampling noise, `E[(e² + Δ) σ'_i σ'_j]` to first order
    /// in the orthogonal correlation, and each neuron's own part.
    fn noise_covariances(&self, st: &State, mo: &Moments, rho: &[f64], qp: &[f64], e: &[f64]) -> NoiseCov {
        let (p, nq) = (st.p, self.grid.len());
        let w = &self.grid.w;
        let e2: Vec<f64> = (0..nq).map(|q| w[q] * (e[q] * e[q] + self.noise)).collect();
        // Transposed (p × nq): the Gram matrices below are symmetric products (half the flops).
        let mut ut = vec![0.0; p * nq]; // sqrt(w (e² + Δ)) E σ'
        let mut u2t = vec![0.0; p * nq]; // sqrt(w (e² + Δ)) E σ''
        for q in 0..nq {
            let c = e2[q].sqrt();
            for i in 0..p {
                ut[i * nq + q] = c * mo.d1[q * p + i];
                u2t[i * nq + q] = c * mo.de[q * p + i] / rho[i];
            }
        }
        let mut scratch = Vec::new();
        let mut ecom = vec![0.0; p * p];
        gram_lower(&mut ecom, &ut, nq, p, &mut scratch);
        mirror_lower(&mut ecom, p);
        let mut ecom2 = vec![0.0; p * p];
        gram_lower(&mut ecom2, &u2t, nq, p, &mut scratch);
        mirror_lower(&mut ecom2, p);
        for ((a, b), c) in ecom.iter_mut().zip(&ecom2).zip(qp) {
            *a += b * c;
        }
        let indiv: Vec<f64> = (0..p)
            .map(|i| {
                (0..nq)
                    .map(|q| e2[q] * (mo.s2[q * p + i] - mo.d1[q * p + i].powi(2)))
                    .sum::<f64>()
                    .max(0.0)
            })
            .collect();
        for i in 0..p {
            ecom[i * p + i] = (0..nq).map(|q| e2[q] * mo.s2[q * p + i]).sum();
        }
        NoiseCov { e2, ecom, indiv }
    }

    /// The batch's noise: a centred white noise on the grid (inside the span, `ξ`, and in teacher
    /// space, `ζ`) plus each neuron's own part, drawn from the stream of step `t`.
    #[allow(clippy::too_many_arguments)]
    fn draw_noise(
        &self,
        st: &State,
        mo: &Moments,
        e: &[f64],
        cov: &NoiseCov,
        gamma: f64,
        n: f64,
        t: usize,
    ) -> StepNoise {
        let (p, r, h, nq) = (st.p, st.r, st.h, self.grid.len());
        let (x, w) = (&self.grid.x, &self.grid.w);
        let key = StreamKey::new(self.seed, Purpose::Theory, t as u64);
        let sw: Vec<f64> = w.iter().map(|v| v.sqrt()).collect();
        let mut white = vec![0.0; nq * (h + 1)];
        fill_normal(&mut key.rng(0), &mut white);
        let cols = h + 1;
        for c in 0..cols {
            let proj: f64 = (0..nq).map(|q| sw[q] * white[q * cols + c]).sum();
            for q in 0..nq {
                white[q * cols + c] -= sw[q] * proj;
            }
        }
        let mut signed = vec![0.0; nq * p]; // sqrt(w) sign(e) sqrt(e² + Δ) E σ'
        for q in 0..nq {
            let c = sw[q] * e[q].signum() * (e[q] * e[q] + self.noise).sqrt();
            for i in 0..p {
                signed[q * p + i] = c * mo.d1[q * p + i];
            }
        }
        let mut eta = vec![0.0; p * cols];
        matmul(
            &mut eta,
            [p, cols, nq],
            Op::Transposed(&signed),
            Op::Plain(&white),
            false,
        );
        let mut own = vec![0.0; p * h];
        fill_normal(&mut key.rng(1), &mut own);
        let inv_sqrt_n = 1.0 / n.sqrt();
        let mut xi = vec![0.0; p * h];
        for i in 0..p {
            let scale = gamma * st.s[i] * inv_sqrt_n;
            let own_sd = cov.indiv[i].sqrt();
            for c in 0..h {
                xi[i * h + c] = scale * (eta[i * cols + c] + own_sd * own[i * h + c]);
            }
        }
        // Teacher-space noise ζ (the last white-noise column, times x).
        let mut zeta = vec![0.0; p * r];
        let mut own_t = vec![0.0; p * r];
        fill_normal(&mut key.rng(2), &mut own_t);
        let mut sx = vec![0.0; nq * r];
        for q in 0..nq {
            for kk in 0..r {
                sx[q * r + kk] = white[q * cols + h] * x[q * r + kk];
            }
        }
        matmul(&mut zeta, [p, r, nq], Op::Transposed(&signed), Op::Plain(&sx), false);
        for i in 0..p {
            for kk in 0..r {
                let var: f64 = (0..nq)
                    .map(|q| cov.e2[q] * (mo.s2[q * p + i] - mo.d1[q * p + i].powi(2)) * x[q * r + kk].powi(2))
                    .sum();
                zeta[i * r + kk] = (zeta[i * r + kk] + var.max(0.0).sqrt() * own_t[i * r + kk]) * inv_sqrt_n;
            }
        }
        StepNoise { xi, zeta }
    }

    /// `L = diag(k) − (γ/p) S E[σ'σ'] S` (no coupling for the correlation loss), with
    /// `k_i = 1 + γ s_i E[e σ''(λ_i)]` and `E[e σ''] = E[e σ' ε]/ρ`.
    fn coupling(&self, st: &State, mo: &Moments, rho: &[f64], e: &[f64], gamma: f64) -> Vec<f64> {
        let (p, nq) = (st.p, self.grid.len());
        let w = &self.grid.w;
        let k: Vec<f64> = (0..p)
            .map(|i| {
                let b: f64 = (0..nq).map(|q| w[q] * e[q] * mo.de[q * p + i]).sum::<f64>() / rho[i];
                1.0 + gamma * st.s[i] * b
            })
            .collect();
        let mut l = vec![0.0; p * p];
        if !self.correlation {
            let bq = self.kernel.matrix(Pair::Derivative, &st.q_full(), p);
            for i in 0..p {
                for j in 0..p {
                    l[i * p + j] = -gamma / p as f64 * st.s[i] * st.s[j] * bq[i * p + j];
                }
            }
        }
        for i in 0..p {
            l[i * p + i] += k[i];
        }
        l
    }

    /// Spherical normalization: the step's component along `w_i` is removed before the step
    /// (the shrink of each neuron, also taken off `L`'s diagonal); zeros otherwise.
    fn spherical_shrink(
        &self,
        st: &State,
        qp: &[f64],
        dm: &[f64],
        noise: &StepNoise,
        l: &mut [f64],
        gamma: f64,
    ) -> Vec<f64> {
        let (p, r, h) = (st.p, st.r, st.h);
        let mut shrink = vec![0.0; p];
        if self.normalize != Normalize::Spherical {
            return shrink;
        }
        for i in 0..p {
            let mi = &st.m[i * r..(i + 1) * r];
            let mut along = 0.0;
            for kk in 0..r {
                along += gamma * st.s[i] * (dm[i * r + kk] + noise.zeta[i * r + kk]) * mi[kk];
            }
            for j in 0..p {
                let lij = l[i * p + j] - if i == j { 1.0 } else { 0.0 };
                along += lij * qp[j * p + i];
            }
            along += dot(&noise.xi[i * h..(i + 1) * h], &st.b[i * h..(i + 1) * h]);
            let norm2 = dot(mi, mi) + qp[i * p + i];
            shrink[i] = along / norm2.max(1e-300);
            l[i * p + i] -= shrink[i];
        }
        shrink
    }

    /// The update of the state: teacher overlaps, the structured orthogonal part `B ← L B + ξ`
    /// and the outside covariance `N ← L N Lᵀ + (γ² d_out/n) S E S`.
    #[allow(clippy::too_many_arguments)]
    fn update(
        st: &mut State,
        dm: &[f64],
        noise: StepNoise,
        l: &[f64],
        shrink: &[f64],
        ecom: &[f64],
        gamma: f64,
        n: f64,
    ) {
        let (p, r, h) = (st.p, st.r, st.h);
        for i in 0..p {
            for kk in 0..r {
                st.m[i * r + kk] =
                    (1.0 - shrink[i]) * st.m[i * r + kk] + gamma * st.s[i] * (dm[i * r + kk] + noise.zeta[i * r + kk]);
            }
        }
        let mut b_new = noise.xi;
        if h > 0 {
            matmul(&mut b_new, [p, h, p], Op::Plain(l), Op::Plain(&st.b), true);
        }
        st.b = b_new;
        let mut ln = vec![0.0; p * p];
        matmul(&mut ln, [p, p, p], Op::Plain(l), Op::Plain(&st.n_out), false);
        let mut n_new = vec![0.0; p * p];
        matmul(&mut n_new, [p, p, p], Op::Plain(&ln), Op::Transposed(l), false);
        let scale = gamma * gamma * st.d_out / n;
        for i in 0..p {
            for j in 0..p {
                n_new[i * p + j] += scale * st.s[i] * st.s[j] * ecom[i * p + j];
            }
        }
        st.n_out = n_new;
    }

    /// Row normalization: every neuron back to norm 1 (overlaps, structured and outside parts).
    fn renormalize(st: &mut State) {
        let (p, r, h) = (st.p, st.r, st.h);
        for i in 0..p {
            let mi = &st.m[i * r..(i + 1) * r];
            let bi = &st.b[i * h..(i + 1) * h];
            let nrm = (dot(mi, mi) + dot(bi, bi) + st.n_out[i * p + i]).max(1e-300).sqrt();
            st.m[i * r..(i + 1) * r].iter_mut().for_each(|v| *v /= nrm);
            st.b[i * h..(i + 1) * h].iter_mut().for_each(|v| *v /= nrm);
            for j in 0..p {
                st.n_out[i * p + j] /= nrm;
                st.n_out[j * p + i] /= nrm;
            }
        }
    }

    /// Test error of the ridge readout (`n` samples, `λ`) on the features of `st`.
    ///
    /// # Errors
    /// [`Error::Numerical`] if the eigensolver fails or the readout is degenerate.
    pub fn readout_error(&self, prepared: &Prepared<'_>, n: f64, lambda: f64) -> Result<f64> {
        let Prepared { state: st, mo, .. } = prepared;
        let p = st.p;
        let nq = self.grid.len();
        let mut b = vec![0.0; p];
        for q in 0..nq {
            let c = self.grid.w[q] * self.y[q];
            for i in 0..p {
                b[i] += c * mo.a[q * p + i];
            }
        }
        let k = self.kernel.matrix(Pair::Value, &st.q_full(), p);
        ridge_error(&k, &b, self.ey2, p, n, lambda * p as f64 / n)
    }
}

/// Test error of ridge regression on `n` samples of features with second moments `K` (`p×p`),
/// cross moments `b = E[y φ]`, `E[y²]`, and ridge `λ_eff` (the penalty per sample on the
/// coefficients of the raw features), by the deterministic equivalent of Gaussian-design ridge:
/// `κ − λ_eff = (κ/n) tr K(K + κ)⁻¹`, error `= (σ² + κ² θᵀK(K + κ)⁻²θ) / (1 − tr K²(K + κ)⁻²/n)`
/// with `θ = K⁻¹b` and `σ² = E[y²] − bᵀK⁻¹b` (docs/theory.md §6).
///
/// # Errors
/// [`Error::Numerical`] if the eigensolver fails or the fixed point leaves the interpolation bound.
pub fn ridge_error(k: &[f64], b: &[f64], ey2: f64, p: usize, n: f64, lambda_eff: f64) -> Result<f64> {
    let (values, vectors) = symmetric_eigen(k, p)?;
    let top = values.first().copied().unwrap_or(0.0).max(1e-300);
    let mut ell = Vec::with_capacity(p);
    let mut ub2 = Vec::with_capacity(p);
    for (v, vec) in values.iter().zip(&vectors) {
        if *v > 1e-12 * top {
            ell.push(*v);
            ub2.push(dot(vec, b).powi(2));
        }
    }
    let explained: f64 = ell.iter().zip(&ub2).map(|(l, u)| u / l).sum();
    let sigma2 = (ey2 - explained).max(0.0);
    let f = |kap: f64| kap - lambda_eff - kap / n * ell.iter().map(|l| l / (l + kap)).sum::<f64>();
    let kap = if lambda_eff <= 0.0 && (ell.len() as f64) < n {
        0.0
    } else {
        let mut lo = lambda_eff.max(1e-300);
        let mut hi = lambda_eff + ell.iter().sum::<f64>() / n + 1e-300;
        for _ in 0..200 {
            let mid = (lo * hi).sqrt();
            if f(mid) > 0.0 {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        (lo * hi).sqrt()
    };
    let bias: f64 = ell
        .iter()
        .zip(&ub2)
        .map(|(l, u)| kap * kap * u / (l * (l + kap).powi(2)))
        .sum();
    let df2: f64 = ell.iter().map(|l| (l / (l + kap)).powi(2)).sum();
    let denom = 1.0 - df2 / n;
    if denom <= 1e-9 {
        return Err(Error::Numerical(
            "the readout interpolates its batch (no ridge and fewer samples than features)".into(),
        ));
    }
    Ok((sigma2 + bias) / denom)
}
