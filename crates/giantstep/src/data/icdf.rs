//! Stream version 2: one standard normal per 32-bit word by the inverse of the normal CDF in
//! single precision, with no rejection, laid out for vector units (docs/architecture.md,
//! "Stream versions").
//!
//! A sample reads its own ChaCha8 stream (the key and stream of version 1) as little-endian
//! 32-bit words: coordinate `k` is word `k`, the label noise word `d`. Word `w` gives
//!
//! - the sign from its top bit and the tail probability `t = (f32(w mod 2³¹) + ½)·2⁻³² ∈ (0, ½]`,
//! - `ω = −ln(4t(1 − t))`, with a fixed single-precision logarithm (Cephes' `logf`: exponent and
//!   mantissa split, a polynomial of degree 8),
//! - `|z| = √2 · P(ω) · (1 − 2t)`, Giles' single-precision `erfinv` polynomials `P` (degree 8 in
//!   `ω − 2.5` for `ω < 5`, in `√ω − 3` beyond; M. Giles, "Approximating the erfinv function",
//!   GPU Computing Gems, 2011).
//!
//! Every operation is an IEEE single-precision addition, multiplication, fused multiply-add,
//! square root or an exact bit operation, in the same order on every path: the scalar code here
//! and the vector kernels of [`super::simd`] give the same numbers bit for bit (tested). Every
//! normal is an f32 value: single-precision runs use it exactly, double-precision runs convert
//! it exactly, and both see the same inputs. The tail probability `Φ(−|z|)` of the result is
//! within 10⁻⁵ (relative) of `t` for `t ≥ 3·10⁻⁸` (`|z| ≤ 5.4`; measured 5.5·10⁻⁶) and within 2% (measured 1.6%) down to the
//! smallest `t = 2⁻³³` (`|z| = 6.34`, the largest value drawn; `P(|Z| > 6.34) = 2.3·10⁻¹⁰`).

/// Giles' polynomial for `ω < 5`, in `ω − 2.5`, highest degree first.
#[allow(clippy::excessive_precision)] // as published; the compiler rounds them to f32
pub(super) const CENTRAL: [f32; 9] = [
    2.810_226_36e-8,
    3.432_739_39e-7,
    -3.523_387_7e-6,
    -4.391_506_54e-6,
    2.185_808_7e-4,
    -1.253_725_03e-3,
    -4.177_681_64e-3,
    2.466_407_27e-1,
    1.501_409_41,
];

/// Giles' polynomial for `ω ≥ 5`, in `√ω − 3`, highest degree first.
#[allow(clippy::excessive_precision)] // as published; the compiler rounds them to f32
pub(super) const TAIL: [f32; 9] = [
    -2.002_142_57e-4,
    1.009_505_58e-4,
    1.349_343_22e-3,
    -3.673_428_44e-3,
    5.739_507_73e-3,
    -7.622_461_3e-3,
    9.438_870_47e-3,
    1.001_674_06,
    2.832_976_82,
];

/// Cephes' `logf` polynomial on `[√½ − 1, √2 − 1)`, highest degree first.
#[allow(clippy::excessive_precision)] // as published; the compiler rounds them to f32
pub(super) const LOG: [f32; 9] = [
    7.037_683_629_2e-2,
    -1.151_461_031_0e-1,
    1.167_699_874_0e-1,
    -1.242_014_084_6e-1,
    1.424_932_278_7e-1,
    -1.666_805_766_5e-1,
    2.000_071_476_5e-1,
    -2.499_999_399_3e-1,
    3.333_333_117_4e-1,
];

/// `ln 2` in two parts: `LN2_HI + LN2_LO` (`LN2_HI` has few bits, so `e·LN2_HI` is exact).
pub(super) const LN2_HI: f32 = 355.0 / 512.0;
/// The rest of `ln 2`.
pub(super) const LN2_LO: f32 = -2.121_944_4e-4;
/// `√½`, where the logarithm's mantissa range starts.
pub(super) const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// `ln y` for a normal positive `y` (no infinities, NaN or subnormals reach it: `y ≥ 2⁻³⁰`).
#[inline(always)]
fn ln(y: f32) -> f32 {
    let bits = y.to_bits();
    let mut e = ((bits >> 23) as i32 - 126) as f32;
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000); // [½, 1)
    let m = if m < SQRT_HALF {
        e -= 1.0;
        (m + m) - 1.0
    } else {
        m - 1.0
    };
    let z = m * m;
    let mut p = LOG[0];
    for &c in &LOG[1..] {
        p = p.mul_add(m, c);
    }
    let mut r = p * m * z;
    r = e.mul_add(LN2_LO, r);
    r = (-0.5f32).mul_add(z, r);
    let r = m + r;
    e.mul_add(LN2_HI, r)
}

/// The normal of word `w`.
#[inline(always)]
pub(super) fn normal(w: u32) -> f32 {
    let t = ((w & 0x7fff_ffff) as f32 + 0.5) * (1.0 / 4_294_967_296.0);
    let omega = -ln((4.0 * t) * (1.0 - t));
    let (coefs, x) = if omega < 5.0 { (&CENTRAL, omega - 2.5) } else { (&TAIL, omega.sqrt() - 3.0) };
    let mut p = coefs[0];
    for &c in &coefs[1..] {
        p = p.mul_add(x, c);
    }
    let magnitude = (std::f32::consts::SQRT_2 * p) * (-2.0f32).mul_add(t, 1.0);
    f32::from_bits(magnitude.to_bits() ^ (w & 0x8000_0000))
}

/// Samples `start..start+m` of stream version 2 of `key`, the scalar way (the reference of the
/// vector kernels): `z` row-major `m×d`, then one noise normal per sample when `noise` is given.
pub(super) fn gaussian_rows_scalar(key: &[u8; 32], start: u64, d: usize, z: &mut [f64], mut noise: Option<&mut [f64]>) {
    let m = z.len().checked_div(d).unwrap_or_else(|| noise.as_deref().map_or(0, <[f64]>::len));
    let words = d + usize::from(noise.is_some());
    let mut buf = vec![0u8; words.div_ceil(16) * 64];
    for i in 0..m {
        let mut ks = super::normal::Keystream::new(key, start + i as u64);
        ks.fill(&mut buf);
        let word = |k: usize| u32::from_le_bytes(buf[4 * k..4 * k + 4].try_into().expect("4 bytes"));
        for (k, o) in z[i * d..(i + 1) * d].iter_mut().enumerate() {
            *o = f64::from(normal(word(k)));
        }
        if let Some(xi) = noise.as_deref_mut() {
            xi[i] = f64::from(normal(word(d)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Φ(−|z|)`, the tail probability of `z`, in double precision.
    fn tail(z: f64) -> f64 {
        0.5 * libm::erfc(z.abs() / std::f64::consts::SQRT_2)
    }

    #[test]
    fn inverts_the_normal_cdf() {
        // Words whose t runs over 2^-32 … 1/2 geometrically (every exponent, 64 mantissas each).
        let mut worst_bulk: f64 = 0.0;
        let mut worst_far: f64 = 0.0;
        for e in 0..31u32 {
            for j in 0..64u32 {
                let m = (1u32 << e) - 1 + (j << e.saturating_sub(6)).min((1 << e) - 1);
                for sign in [0, 0x8000_0000] {
                    let w = m | sign;
                    let z = f64::from(normal(w));
                    let t = (f64::from(m as f32) + 0.5) / 4_294_967_296.0;
                    assert_eq!(z < 0.0 || (z == 0.0 && sign != 0), sign != 0, "sign of word {w:#x}: {z}");
                    let err = (tail(z) / t - 1.0).abs();
                    if t >= 3e-8 {
                        worst_bulk = worst_bulk.max(err);
                    } else {
                        worst_far = worst_far.max(err);
                    }
                }
            }
        }
        eprintln!("tail probability relative error: {worst_bulk:e} (t >= 3e-8), {worst_far:e} (below)");
        // The approximation's own error is 2e-6; rounding z to f32 adds |z|²·6e-8.
        assert!(worst_bulk < 1e-5, "relative error of the tail probability {worst_bulk:e}");
        assert!(worst_far < 0.02, "relative error of the far tail probability {worst_far:e}");
        // The extremes: the largest value, and zero at t = 1/2.
        let largest = f64::from(normal(0));
        assert!((tail(largest) * 2f64.powi(33) - 1.0).abs() < 0.02, "{largest}");
        assert_eq!(normal(0x7fff_ffff), 0.0);
    }

    #[test]
    fn logarithm_is_accurate() {
        let mut y = 1.0f32;
        while y > 1e-9 {
            let want = f64::from(y).ln();
            let got = f64::from(ln(y));
            assert!((got - want).abs() <= 2.5e-7 * want.abs().max(1.0), "ln {y}: {got} vs {want}");
            y *= 0.987_654;
        }
    }
}
