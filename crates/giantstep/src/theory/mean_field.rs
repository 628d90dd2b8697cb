//! The mean-field (`p → ∞`) form of the state evolution (docs/theory.md §6, "Mean field").
//!
//! The finite-p form of [`super::dynamics`] follows the `p` neurons of one network with their
//! whole `p × p` orthogonal Gram matrix. Here the neurons are a *population*: `K` particles drawn
//! from the initial law (second-layer weight `s = √K a` from the network's law, initial teacher
//! overlap `m⁰` of a row on the sphere), each weighing `1/K`, in the limit where the neurons'
//! own orthogonal directions no longer interact. A particle's orthogonal part is then
//!
//! ```text
//! w_k⊥ = t_k w⁰_k⊥  +  Σ_c C_kc u_c  +  (own noise, norm² o_k)
//! ```
//!
//! its initial part scaled by `t_k`, its coordinates `C_k` on the directions the gradient noise
//! gives every neuron in common (orthonormal `u_c`, a few per step), and the accumulated noise of
//! its own. One step with `γ = η/p`, on the grid of teacher coordinates `x` (as in the finite-p
//! form; `λ_k = <m_k, x> + ρ_k ε`, `ρ_k² = t_k² |w⁰_k⊥|² + |C_k|² + o_k`):
//!
//! ```text
//! f(x) = (1/K) Σ_k s_k E_ε σ(λ_k),  e = ỹ − f  (e = ỹ for the correlation loss)
//! m_k ← m_k + γ s_k (E[e σ'(λ_k) x] + ζ_k)
//! t_k ← κ_k t_k,  κ_k = 1 + γ s_k E[e σ''(λ_k)]
//! C   ← diag(κ) C − (γ/K) S E_x[Eσ' Eσ'ᵀ] S C  ⊕  γ √((d − r)/n) S Z     (Z Zᵀ ≈ E_x[(e² + Δ) Eσ' Eσ'ᵀ])
//! o_k ← κ_k² o_k + γ² s_k² (d − r)/n · E[(e² + Δ) Var_ε σ'(λ_k)]
//! ```
//!
//! `⊕` appends this step's common directions: a rank-[`COMMON_RANK`] factor of the noise's common
//! covariance (a randomized range finder on the grid; its captured fraction is reported). The
//! coupling acts on the common coordinates only: on the initial and own parts, which point in
//! different directions for different neurons, it is of order `γ/√K` and vanishes at `K → ∞` —
//! this is what separates the mean field from the finite-p form at moderate width, where `γ/√p`
//! is not small. `ζ_k` (teacher space) is drawn as in the finite-p form.
//!
//! The readout uses `p` particles as the network's features (the first `p`, pairs kept with
//! symmetric init). Their orthogonal parts are carried as vectors in `R^d`, `V = diag(t) W⁰⊥ +
//! C U + O` (random common directions `U` and own-noise vectors `O`, all orthogonal to the
//! teacher), so that the Gram `q = M Mᵀ + V Vᵀ` has the random overlaps of `p` vectors in `d`
//! dimensions, as in simulation; then the ridge formula of [`super::dynamics::ridge_error`].

use super::dynamics::{ridge_error, Model, Moments, Pair};
use crate::data::{fill_normal, Purpose, StreamKey};
use crate::error::{Error, Result};
use crate::linalg::{dot, matmul, symmetric_eigen, Op};
use crate::model::Normalize;

/// Common noise directions kept per step (a randomized range finder of the noise's common
/// covariance over the particles).
pub const COMMON_RANK: usize = 24;
/// Oversampling of the range finder.
const OVERSAMPLE: usize = 8;

/// A population of particles and the `p` of them that are the readout's features.
#[derive(Debug, Clone)]
pub struct Population {
    /// Particles `K`.
    pub k: usize,
    /// Teacher rank `r`.
    pub r: usize,
    /// `s_k = √K a_k`.
    pub s: Vec<f64>,
    /// Teacher overlaps (`K × r`).
    pub m: Vec<f64>,
    /// Scale of the initial orthogonal part.
    pub t: Vec<f64>,
    /// `|w⁰_k⊥|²`.
    pub rho0: Vec<f64>,
    /// Common-direction coordinates (`K × rc`).
    pub c: Vec<f64>,
    /// Common directions so far.
    pub rc: usize,
    /// Norm² of each particle's own noise.
    pub own: Vec<f64>,
    /// The readout's features (particle indices, `p` of them).
    pub features: Vec<usize>,
    /// The features' initial orthogonal parts `w⁰_i⊥` (`p × d`).
    pub w0_perp: Vec<f64>,
    /// The common directions as vectors (`rc × d`, random, orthogonal to the teacher).
    pub u: Vec<f64>,
    /// The features' own noise as vectors (`p × d`).
    pub own_vec: Vec<f64>,
    /// Teacher rows (`r × d`).
    pub w_star: Vec<f64>,
    /// Input dimension `d`.
    pub d: usize,
    /// Smallest fraction of a step's common noise covariance the kept directions captured.
    pub captured: f64,
}

impl Population {
    /// The population of `k` initial rows `w0` (`k × d`, on the sphere or Gaussian) with
    /// second-layer weights `a` (`k`), teacher `w_star` (`r × d`); `features` are the `p`
    /// particles the readout uses.
    ///
    /// # Errors
    /// [`Error::Invalid`] if a feature index is out of range.
    pub fn from_weights(
        w0: &[f64],
        a: &[f64],
        w_star: &[f64],
        d: usize,
        r: usize,
        features: Vec<usize>,
    ) -> Result<Population> {
        let k = a.len();
        if let Some(&bad) = features.iter().find(|&&i| i >= k) {
            return Err(Error::invalid("features", format!("indices below {k}"), bad));
        }
        let mut m = vec![0.0; k * r];
        matmul(&mut m, [k, r, d], Op::Plain(w0), Op::Transposed(w_star), false);
        let rho0: Vec<f64> = (0..k)
            .map(|i| {
                let row = &w0[i * d..(i + 1) * d];
                let mi = &m[i * r..(i + 1) * r];
                (dot(row, row) - dot(mi, mi)).max(0.0)
            })
            .collect();
        let p = features.len();
        let mut w0_perp = vec![0.0; p * d];
        for (row, &i) in features.iter().enumerate() {
            w0_perp[row * d..(row + 1) * d].copy_from_slice(&w0[i * d..(i + 1) * d]);
        }
        project_out(&mut w0_perp, w_star, d, r);
        let sk = (k as f64).sqrt();
        Ok(Population {
            k,
            r,
            s: a.iter().map(|v| v * sk).collect(),
            m,
            t: vec![1.0; k],
            rho0,
            c: Vec::new(),
            rc: 0,
            own: vec![0.0; k],
            features,
            w0_perp,
            u: Vec::new(),
            own_vec: vec![0.0; p * d],
            w_star: w_star.to_vec(),
            d,
            captured: 1.0,
        })
    }

    /// `ρ_k² = t_k² |w⁰_k⊥|² + |C_k|² + o_k`.
    pub fn rho2(&self) -> Vec<f64> {
        (0..self.k)
            .map(|i| {
                let ci = &self.c[i * self.rc..(i + 1) * self.rc];
                self.t[i] * self.t[i] * self.rho0[i] + dot(ci, ci) + self.own[i]
            })
            .collect()
    }

    /// Mean `|cos(w_k, w*_j)|` over the readout's features, for each teacher direction.
    pub fn mean_abs_cos(&self) -> Vec<f64> {
        let rho2 = self.rho2();
        let r = self.r;
        let mut out = vec![0.0; r];
        let pf = self.features.len() as f64;
        for &i in &self.features {
            let mi = &self.m[i * r..(i + 1) * r];
            let nrm = (dot(mi, mi) + rho2[i]).max(1e-300).sqrt();
            for (o, v) in out.iter_mut().zip(mi) {
                *o += v.abs() / nrm / pf;
            }
        }
        out
    }
}

/// The smoothed activation of every particle on the grid (each `nq × K`) and the particles'
/// orthogonal norms: what both the readout and the next step need of a state ([`fields`]).
pub struct Fields {
    mo: Moments,
    rho: Vec<f64>,
}

/// The smoothed activation of every particle of `pop` on the grid of `model` (any of a
/// configuration's models: they share the grid and the activation).
pub fn fields(model: &Model, pop: &Population) -> Fields {
    let rho: Vec<f64> = pop.rho2().iter().map(|v| v.max(1e-300).sqrt()).collect();
    Fields {
        mo: model.smoothed(&pop.m, &rho, pop.k, pop.r),
        rho,
    }
}

/// One mean-field step with `γ = η/p` on a batch of `n` samples (the step `t` keys the noise);
/// `fl` are the [`fields`] of `pop`.
///
/// # Errors
/// [`Error::Numerical`] if the state stops being finite or the range finder fails.
pub fn step(model: &Model, pop: &mut Population, fl: &Fields, gamma: f64, n: f64, seed: u64, t: usize) -> Result<()> {
    let (k, r, nq) = (pop.k, pop.r, model.grid.len());
    let (x, w) = (&model.grid.x, &model.grid.w);
    let kf = k as f64;
    let e: Vec<f64> = (0..nq)
        .map(|q| {
            if model.correlation {
                model.y[q]
            } else {
                let f: f64 = fl.mo.a[q * k..(q + 1) * k].iter().zip(&pop.s).map(|(a, s)| a * s).sum();
                model.y[q] - f / kf
            }
        })
        .collect();
    // Drift, curvature, noise variances.
    let mut weighted = vec![0.0; nq * k];
    for q in 0..nq {
        let c = w[q] * e[q];
        for i in 0..k {
            weighted[q * k + i] = c * fl.mo.d1[q * k + i];
        }
    }
    let mut dm = vec![0.0; k * r];
    matmul(&mut dm, [k, r, nq], Op::Transposed(&weighted), Op::Plain(x), false);
    let e2: Vec<f64> = (0..nq).map(|q| w[q] * (e[q] * e[q] + model.noise)).collect();
    let mut curv = vec![0.0; k];
    let mut indiv = vec![0.0; k];
    let mut var_t = vec![0.0; k * r];
    for q in 0..nq {
        let xq = &x[q * r..(q + 1) * r];
        for i in 0..k {
            let j = q * k + i;
            curv[i] += w[q] * e[q] * fl.mo.de[j];
            let v = e2[q] * (fl.mo.s2[j] - fl.mo.d1[j] * fl.mo.d1[j]).max(0.0);
            indiv[i] += v;
            for kk in 0..r {
                var_t[i * r + kk] += v * xq[kk] * xq[kk];
            }
        }
    }
    let kappa: Vec<f64> = (0..k).map(|i| 1.0 + gamma * pop.s[i] * curv[i] / fl.rho[i]).collect();
    // The noise's common part on the grid: G (nq × K), G_qk = √w sign(e) √(e² + Δ) Eσ'_k.
    let mut g = vec![0.0; nq * k];
    for q in 0..nq {
        let c = w[q].sqrt() * e[q].signum() * (e[q] * e[q] + model.noise).sqrt();
        for i in 0..k {
            g[q * k + i] = c * fl.mo.d1[q * k + i];
        }
    }
    let key = StreamKey::new(seed, Purpose::Theory, t as u64);
    // Teacher-space noise ζ: a centred white noise on the grid (common) plus each particle's own.
    let mut white = vec![0.0; nq];
    fill_normal(&mut key.rng(8), &mut white);
    let sw: Vec<f64> = w.iter().map(|v| v.sqrt()).collect();
    let proj: f64 = sw.iter().zip(&white).map(|(a, b)| a * b).sum();
    white.iter_mut().zip(&sw).for_each(|(v, s)| *v -= s * proj);
    let mut sx = vec![0.0; nq * r];
    for q in 0..nq {
        for kk in 0..r {
            sx[q * r + kk] = white[q] * x[q * r + kk];
        }
    }
    let mut zeta = vec![0.0; k * r];
    matmul(&mut zeta, [k, r, nq], Op::Transposed(&g), Op::Plain(&sx), false);
    let mut own_t = vec![0.0; k * r];
    fill_normal(&mut key.rng(9), &mut own_t);
    let inv_sqrt_n = 1.0 / n.sqrt();
    for i in 0..k * r {
        zeta[i] = (zeta[i] + var_t[i].sqrt() * own_t[i]) * inv_sqrt_n;
    }
    // Coupling of the common coordinates through the residual: X = E_x[Eσ' Eσ'ᵀ] S C.
    let rc = pop.rc;
    let mut coupled = vec![0.0; k * rc];
    if !model.correlation && rc > 0 {
        let mut sc = pop.c.clone();
        for i in 0..k {
            sc[i * rc..(i + 1) * rc].iter_mut().for_each(|v| *v *= pop.s[i]);
        }
        let mut y = vec![0.0; nq * rc];
        matmul(&mut y, [nq, rc, k], Op::Plain(&fl.mo.d1), Op::Plain(&sc), false);
        for q in 0..nq {
            y[q * rc..(q + 1) * rc].iter_mut().for_each(|v| *v *= w[q]);
        }
        matmul(
            &mut coupled,
            [k, rc, nq],
            Op::Transposed(&fl.mo.d1),
            Op::Plain(&y),
            false,
        );
        for i in 0..k {
            let f = gamma * pop.s[i] / kf;
            coupled[i * rc..(i + 1) * rc].iter_mut().for_each(|v| *v *= f);
        }
    }
    // Spherical normalization: the step's component along w_k comes off first.
    let rho2 = pop.rho2();
    let mut shrink = vec![0.0; k];
    if model.normalize == Normalize::Spherical {
        for i in 0..k {
            let mi = &pop.m[i * r..(i + 1) * r];
            let mut along = 0.0;
            for kk in 0..r {
                along += gamma * pop.s[i] * (dm[i * r + kk] + zeta[i * r + kk]) * mi[kk];
            }
            along += (kappa[i] - 1.0) * rho2[i];
            along -= dot(&coupled[i * rc..(i + 1) * rc], &pop.c[i * rc..(i + 1) * rc]);
            shrink[i] = along / (dot(mi, mi) + rho2[i]).max(1e-300);
        }
    }
    let (z, captured) = common_factor(&g, nq, k, seed, t)?;
    pop.captured = pop.captured.min(captured);
    let rz = z.len() / k.max(1);
    let scale = gamma * ((pop.d as f64 - r as f64).max(0.0) / n).sqrt();
    let rc_new = rc + rz;
    let mut c_new = vec![0.0; k * rc_new];
    for i in 0..k {
        let l = kappa[i] - shrink[i];
        for cc in 0..rc {
            c_new[i * rc_new + cc] = l * pop.c[i * rc + cc] - coupled[i * rc + cc];
        }
        for cc in 0..rz {
            c_new[i * rc_new + rc + cc] = scale * pop.s[i] * z[i * rz + cc];
        }
        for kk in 0..r {
            let v = &mut pop.m[i * r + kk];
            *v = (1.0 - shrink[i]) * *v + gamma * pop.s[i] * (dm[i * r + kk] + zeta[i * r + kk]);
        }
        pop.t[i] *= l;
        pop.own[i] = l * l * pop.own[i] + (scale * pop.s[i]).powi(2) * indiv[i];
    }
    // The features' vectors: new common directions, own noise drawn as a vector.
    let p = pop.features.len();
    let new_u = directions(pop, rz, seed, t, 11);
    let fresh = directions(pop, p, seed, t, 12);
    for (row, &i) in pop.features.iter().enumerate() {
        let l = kappa[i] - shrink[i];
        let sd = (scale * pop.s[i]).abs() * indiv[i].sqrt();
        let o = &mut pop.own_vec[row * pop.d..(row + 1) * pop.d];
        o.iter_mut()
            .zip(&fresh[row * pop.d..(row + 1) * pop.d])
            .for_each(|(x, g)| *x = l * *x + sd * g);
    }
    pop.u.extend_from_slice(&new_u);
    pop.c = c_new;
    pop.rc = rc_new;
    if model.normalize != Normalize::None {
        renormalize(pop);
    }
    if pop
        .m
        .iter()
        .chain(&pop.c)
        .chain(&pop.t)
        .chain(&pop.own)
        .any(|v| !v.is_finite())
    {
        return Err(Error::Numerical(format!(
            "the mean-field first layer overflowed at step {t} (gamma = {gamma}): the steps diverge"
        )));
    }
    Ok(())
}

/// Removes the teacher rows' components from every row of `v` (`· × d`).
fn project_out(v: &mut [f64], w_star: &[f64], d: usize, r: usize) {
    for row in v.chunks_exact_mut(d) {
        for k in 0..r {
            let wk = &w_star[k * d..(k + 1) * d];
            let c = dot(row, wk);
            row.iter_mut().zip(wk).for_each(|(x, w)| *x -= c * w);
        }
    }
}

/// `rows` Gaussian vectors orthogonal to the teacher, scaled to norm about 1, from stream `index`
/// of step `t`.
fn directions(pop: &Population, rows: usize, seed: u64, t: usize, index: u64) -> Vec<f64> {
    let d = pop.d;
    let mut v = vec![0.0; rows * d];
    fill_normal(&mut StreamKey::new(seed, Purpose::Theory, t as u64).rng(index), &mut v);
    project_out(&mut v, &pop.w_star, d, pop.r);
    let s = 1.0 / ((d as f64 - pop.r as f64).max(1.0)).sqrt();
    v.iter_mut().for_each(|x| *x *= s);
    v
}

/// Every particle back to norm 1.
fn renormalize(pop: &mut Population) {
    let rho2 = pop.rho2();
    let (r, rc, d) = (pop.r, pop.rc, pop.d);
    let norms: Vec<f64> = (0..pop.k)
        .map(|i| {
            let mi = &pop.m[i * r..(i + 1) * r];
            (dot(mi, mi) + rho2[i]).max(1e-300).sqrt()
        })
        .collect();
    for (i, nrm) in norms.iter().enumerate() {
        pop.m[i * r..(i + 1) * r].iter_mut().for_each(|v| *v /= nrm);
        pop.c[i * rc..(i + 1) * rc].iter_mut().for_each(|v| *v /= nrm);
        pop.t[i] /= nrm;
        pop.own[i] /= nrm * nrm;
    }
    for (row, &i) in pop.features.iter().enumerate() {
        pop.own_vec[row * d..(row + 1) * d]
            .iter_mut()
            .for_each(|v| *v /= norms[i]);
    }
}

/// A factor `Z` (`K × R`) with `Z Zᵀ ≈ Gᵀ G` for `G` (`nq × K`): a randomized range finder with
/// [`COMMON_RANK`] directions (seeded), and the fraction of `tr Gᵀ G` it captures.
fn common_factor(g: &[f64], nq: usize, k: usize, seed: u64, t: usize) -> Result<(Vec<f64>, f64)> {
    let total: f64 = g.iter().map(|v| v * v).sum();
    if total <= 0.0 || k == 0 {
        return Ok((Vec::new(), 1.0));
    }
    let l = (COMMON_RANK + OVERSAMPLE).min(nq).min(k);
    let mut omega = vec![0.0; k * l];
    fill_normal(&mut StreamKey::new(seed, Purpose::Theory, t as u64).rng(10), &mut omega);
    // Y = G Ω (nq × l): the range of G in grid space; orthonormalize (Cholesky-free, by eigen).
    let mut y = vec![0.0; nq * l];
    matmul(&mut y, [nq, l, k], Op::Plain(g), Op::Plain(&omega), false);
    let q = orthonormal_columns(&y, nq, l)?;
    let lq = q.len() / nq;
    // B = Qᵀ G (lq × K); Gᵀ G ≈ Bᵀ B; keep the top COMMON_RANK of B Bᵀ's eigenvectors.
    let mut b = vec![0.0; lq * k];
    matmul(&mut b, [lq, k, nq], Op::Transposed(&q), Op::Plain(g), false);
    let mut bb = vec![0.0; lq * lq];
    matmul(&mut bb, [lq, lq, k], Op::Plain(&b), Op::Transposed(&b), false);
    let (values, vectors) = symmetric_eigen(&bb, lq)?;
    let keep = COMMON_RANK.min(lq);
    let mut z = vec![0.0; k * keep];
    let mut kept = 0.0;
    for (col, (val, vec)) in values.iter().zip(&vectors).take(keep).enumerate() {
        if *val <= 0.0 {
            continue;
        }
        kept += val;
        // Column of Z: Bᵀ v (its norm² is the eigenvalue).
        for i in 0..k {
            let mut acc = 0.0;
            for (j, vj) in vec.iter().enumerate() {
                acc += b[j * k + i] * vj;
            }
            z[i * keep + col] = acc;
        }
    }
    Ok((z, (kept / total).min(1.0)))
}

/// An orthonormal basis of the columns of `y` (`rows × cols`), by the eigenvectors of `yᵀy`
/// (columns with a negligible eigenvalue dropped).
fn orthonormal_columns(y: &[f64], rows: usize, cols: usize) -> Result<Vec<f64>> {
    let mut yy = vec![0.0; cols * cols];
    matmul(&mut yy, [cols, cols, rows], Op::Transposed(y), Op::Plain(y), false);
    let (values, vectors) = symmetric_eigen(&yy, cols)?;
    let top = values.first().copied().unwrap_or(0.0).max(1e-300);
    let kept: Vec<usize> = (0..cols).filter(|&j| values[j] > 1e-12 * top).collect();
    let lq = kept.len();
    let mut v = vec![0.0; cols * lq];
    for (c, &j) in kept.iter().enumerate() {
        let s = 1.0 / values[j].sqrt();
        for i in 0..cols {
            v[i * lq + c] = vectors[j][i] * s;
        }
    }
    let mut q = vec![0.0; rows * lq];
    matmul(&mut q, [rows, lq, cols], Op::Plain(y), Op::Plain(&v), false);
    Ok(q)
}

/// Test error of the ridge readout (`n` samples, `λ`) on the `p` feature particles; `fl` are
/// the [`fields`] of `pop`.
///
/// # Errors
/// [`Error::Numerical`] if the eigensolver fails or the readout is degenerate.
pub fn readout_error(model: &Model, pop: &Population, fl: &Fields, n: f64, lambda: f64) -> Result<f64> {
    let (r, rc, p) = (pop.r, pop.rc, pop.features.len());
    let (k, nq) = (pop.k, model.grid.len());
    let mut b = vec![0.0; p];
    for q in 0..nq {
        let c = model.grid.w[q] * model.y[q];
        for (bi, &i) in b.iter_mut().zip(&pop.features) {
            *bi += c * fl.mo.a[q * k + i];
        }
    }
    // V = diag(t) W⁰⊥ + C U + O (p × d): the features' orthogonal parts as vectors, so that
    // their Gram carries the random overlaps of p vectors in d dimensions, as in simulation.
    let d = pop.d;
    let mut v = pop.own_vec.clone();
    let mut cf = vec![0.0; p * rc];
    let mut mf = vec![0.0; p * r];
    for (row, &i) in pop.features.iter().enumerate() {
        let ti = pop.t[i];
        v[row * d..(row + 1) * d]
            .iter_mut()
            .zip(&pop.w0_perp[row * d..(row + 1) * d])
            .for_each(|(x, w)| *x += ti * w);
        cf[row * rc..(row + 1) * rc].copy_from_slice(&pop.c[i * rc..(i + 1) * rc]);
        mf[row * r..(row + 1) * r].copy_from_slice(&pop.m[i * r..(i + 1) * r]);
    }
    if rc > 0 {
        matmul(&mut v, [p, d, rc], Op::Plain(&cf), Op::Plain(&pop.u), true);
    }
    let mut q = vec![0.0; p * p];
    matmul(&mut q, [p, p, d], Op::Plain(&v), Op::Transposed(&v), false);
    matmul(&mut q, [p, p, r], Op::Plain(&mf), Op::Transposed(&mf), true);
    let kmat = model.kernel.matrix(Pair::Value, &q, p);
    ridge_error(&kmat, &b, model.label_second_moment(), p, n, lambda * p as f64 / n)
}
