//! Products of many samples with a few vectors, one sample per vector lane (AVX-512): the
//! teacher's coordinates `x = W* z` (`r ≤ 4` rows of `W*`) with the `gemm` crate's numbers, and
//! the label shift's `<b, z>` with [`super::dot`]'s, sixteen samples at a time
//! ([`coordinates_and_dots`]).
//!
//! **Why the numbers are the same.** Each result is one chain over the coordinates in order:
//! `gemm`'s entry of `Z W*ᵀ` is, for each of its depth blocks of `kc` terms, a chain of fused
//! multiply-adds from zero, the first block's sum stored and each later one added with one
//! rounding (see [`super::panels`]); `dot` multiplies and adds each term in order from the empty
//! sum. With the samples in the lanes, each lane runs its sample's chains unchanged, so a tile
//! of eight samples' rows times eight coordinates is transposed in registers (24 shuffles) and
//! then each coordinate is one vector operation per chain. `gemm` reaches these chains only past
//! its small-product paths ([`gemm_general`]); other shapes stay with it.
//!
//! **Why it is faster.** `gemm` computes an `m×r` product with two to four useful columns out of
//! its kernel's six and packs the samples first (a copy of the block); the coordinates and the
//! shift had taken about 3% of a notebook run's CPU time, against one multiply-add per
//! coordinate and sample.
//!
//! `unsafe`: intrinsics behind `#[target_feature]`, called only after AVX-512 F was detected,
//! with every load and store inside the slices (masked at a row's end).
#![allow(unsafe_code)]

/// The most rows of `W*` the kernel takes (its accumulators stay in registers).
pub const MAX_R: usize = 4;

/// Whether the kernel runs here (AVX-512 F, detected once).
pub fn usable() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static DETECTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *DETECTED.get_or_init(|| std::arch::is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether `gemm` sums `Z W*ᵀ` (`m` samples, `r` rows of `W*`, `d` coordinates) in the chains of
/// its general path, in depth blocks of [`super::panels::gemm_depth_block`]: more than 64 samples,
/// more than 256 entries, at least two columns and a depth of at least three (smaller products
/// take its vector or small-matrix paths, with other orders).
pub fn gemm_general(m: usize, r: usize, d: usize) -> bool {
    m > 64 && m * r > 256 && r >= 2 && d >= 3
}

/// For each sample `z_i` (the rows of `z`, `d` coordinates each): with `w = Some((W*, kc))`,
/// `x[i·r + j] = Σ_κ z_iκ W*_jκ` summed as `gemm` sums it in depth blocks of `kc`
/// (`r = W*.len() / d`, `1 ≤ r ≤` [`MAX_R`]); with `dots = Some((b, out))`,
/// `out[i] = dot(z_i, b)` ([`super::dot`]'s numbers). Returns `false`, writing nothing, where the
/// kernel does not run ([`usable`], `r`, or `d = 0`); the caller then computes them its way.
pub fn coordinates_and_dots(
    z: &[f64],
    d: usize,
    w: Option<(&[f64], usize)>,
    x: &mut [f64],
    dots: Option<(&[f64], &mut [f64])>,
) -> bool {
    let r = w.map_or(0, |(w, _)| w.len() / d.max(1));
    if !usable() || d == 0 || r > MAX_R || (w.is_none() && dots.is_none()) {
        return false;
    }
    let m = z.len() / d;
    let (wv, kc) = w.unwrap_or((&[], d));
    assert!(wv.len() == r * d && kc >= 1, "W* holds r rows of d");
    assert!(x.len() >= m * r, "one coordinate per sample and row");
    let (b, out) = match dots {
        Some((b, out)) => {
            assert!(b.len() == d && out.len() >= m, "a coefficient per coordinate, a dot per sample");
            (Some(b), Some(out))
        }
        None => (None, None),
    };
    #[cfg(target_arch = "x86_64")]
    {
        let zero: f64 = std::iter::empty::<f64>().sum();
        let shape = x86::Shape { d, kc, zero };
        // SAFETY: AVX-512 F was detected (`usable`); the lengths are checked above and in
        // `x86::run`.
        unsafe {
            match r {
                0 => x86::run::<0>(z, &shape, wv, x, b, out),
                1 => x86::run::<1>(z, &shape, wv, x, b, out),
                2 => x86::run::<2>(z, &shape, wv, x, b, out),
                3 => x86::run::<3>(z, &shape, wv, x, b, out),
                _ => x86::run::<4>(z, &shape, wv, x, b, out),
            }
        }
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kc, b, out);
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// Samples per group: two vectors of eight, in lockstep (one vector's chains wait on their
    /// own latency).
    const GROUP: usize = 16;

    pub(super) struct Shape {
        pub(super) d: usize,
        pub(super) kc: usize,
        /// The start of `dot`'s sum.
        pub(super) zero: f64,
    }

    /// All groups of `z`'s rows (see [`super::coordinates_and_dots`]).
    ///
    /// # Safety
    /// AVX-512 F; `w.len() == R·d`, `x.len() ≥ m·R`, `out.len() ≥ m`, `b.len() == d`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn run<const R: usize>(
        z: &[f64],
        s: &Shape,
        w: &[f64],
        x: &mut [f64],
        b: Option<&[f64]>,
        mut out: Option<&mut [f64]>,
    ) {
        let d = s.d;
        let m = z.len() / d;
        assert!(w.len() == R * d && x.len() >= m * R, "shapes");
        let mut i0 = 0;
        while i0 < m {
            let rows = GROUP.min(m - i0);
            let mut xs = [[0.0f64; GROUP]; R];
            let mut ds = [0.0f64; GROUP];
            // SAFETY: rows `i0..i0 + rows` of `z` exist; `w` and `b` as asserted.
            unsafe { group::<R>(z.as_ptr().add(i0 * d), rows, s, w, b, &mut xs, &mut ds) };
            for l in 0..rows {
                for (j, xj) in xs.iter().enumerate() {
                    x[(i0 + l) * R + j] = xj[l];
                }
            }
            if let Some(o) = out.as_deref_mut() {
                o[i0..i0 + rows].copy_from_slice(&ds[..rows]);
            }
            i0 += rows;
        }
    }

    /// Eight rows × eight coordinates from `p` (row stride `d`, the first `cols` coordinates of
    /// the first `rows` rows; the rest zero), transposed: vector `κ` holds coordinate `κ` of
    /// the eight rows.
    ///
    /// # Safety
    /// AVX-512 F; `p[i·d .. i·d + cols]` readable for `i < rows`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn tile(p: *const f64, d: usize, rows: usize, cols: usize) -> [__m512d; 8] {
        let mask: __mmask8 = if cols >= 8 { 0xff } else { (1u8 << cols) - 1 };
        let a: [__m512d; 8] = std::array::from_fn(|i| {
            if i < rows {
                // SAFETY: the masked lanes are the first `cols` entries of row `i` (contract).
                unsafe { _mm512_maskz_loadu_pd(mask, p.add(i * d)) }
            } else {
                _mm512_setzero_pd()
            }
        });
        // Pairs of rows, then quadruples, then all eight (lane i = row i).
        let t: [__m512d; 8] = std::array::from_fn(|k| {
            let (u, v) = (a[2 * (k / 2)], a[2 * (k / 2) + 1]);
            if k % 2 == 0 {
                _mm512_unpacklo_pd(u, v)
            } else {
                _mm512_unpackhi_pd(u, v)
            }
        });
        // t0 = [a0_0 a1_0 a0_2 a1_2 a0_4 a1_4 a0_6 a1_6], t1 = the odd coordinates, t2, t3 of
        // rows 2, 3, ...
        let lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        // q[h][e]: rows 4h..4h+4, coordinates {e', e' + 4} for e' = [0, 2, 1, 3][e].
        let q = |h: usize| {
            let (e0, o0, e1, o1) = (t[4 * h], t[4 * h + 1], t[4 * h + 2], t[4 * h + 3]);
            [
                _mm512_permutex2var_pd(e0, lo, e1),
                _mm512_permutex2var_pd(e0, hi, e1),
                _mm512_permutex2var_pd(o0, lo, o1),
                _mm512_permutex2var_pd(o0, hi, o1),
            ]
        };
        let (q0, q1) = (q(0), q(1));
        // Coordinate κ < 4 from the low halves, κ + 4 from the high halves.
        let order = [0usize, 2, 1, 3];
        let mut c = [_mm512_setzero_pd(); 8];
        for (e, &k) in order.iter().enumerate() {
            c[k] = _mm512_shuffle_f64x2::<0x44>(q0[e], q1[e]);
            c[k + 4] = _mm512_shuffle_f64x2::<0xee>(q0[e], q1[e]);
        }
        c
    }

    /// One group of up to sixteen rows from `p`.
    ///
    /// # Safety
    /// AVX-512 F; `p` holds `rows` rows of `s.d`; `w` `R` rows of `s.d`; `b` `s.d` numbers.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn group<const R: usize>(
        p: *const f64,
        rows: usize,
        s: &Shape,
        w: &[f64],
        b: Option<&[f64]>,
        xs: &mut [[f64; GROUP]; R],
        ds: &mut [f64; GROUP],
    ) {
        let d = s.d;
        let zero = _mm512_setzero_pd();
        // Chains of the current depth block, and the sums of the blocks before it.
        let mut acc = [[zero; 2]; R];
        let mut done = [[zero; 2]; R];
        let mut first = true;
        let mut next_fold = s.kc;
        let mut dot = [_mm512_set1_pd(s.zero); 2];
        let (ra, rb) = (rows.min(8), rows.saturating_sub(8));
        let mut k0 = 0;
        while k0 < d {
            let cols = (d - k0).min(8);
            // SAFETY: rows `< rows` and coordinates `k0..k0 + cols` are inside the group.
            // (The second half's pointer is made without `add`: with no rows there, it may lie
            // past the slice, and is then not read.)
            let (ca, cb) = unsafe { (tile(p.add(k0), d, ra, cols), tile(p.wrapping_add(8 * d + k0), d, rb, cols)) };
            for kk in 0..cols {
                let k = k0 + kk;
                if R > 0 && k == next_fold {
                    for j in 0..R {
                        for h in 0..2 {
                            done[j][h] = if first { acc[j][h] } else { _mm512_add_pd(done[j][h], acc[j][h]) };
                            acc[j][h] = zero;
                        }
                    }
                    first = false;
                    next_fold += s.kc;
                }
                for j in 0..R {
                    let wj = _mm512_set1_pd(w[j * d + k]);
                    acc[j][0] = _mm512_fmadd_pd(ca[kk], wj, acc[j][0]);
                    acc[j][1] = _mm512_fmadd_pd(cb[kk], wj, acc[j][1]);
                }
                if let Some(b) = b {
                    let bk = _mm512_set1_pd(b[k]);
                    dot[0] = _mm512_add_pd(dot[0], _mm512_mul_pd(ca[kk], bk));
                    dot[1] = _mm512_add_pd(dot[1], _mm512_mul_pd(cb[kk], bk));
                }
            }
            k0 += 8;
        }
        for j in 0..R {
            for h in 0..2 {
                let v = if first { acc[j][h] } else { _mm512_add_pd(done[j][h], acc[j][h]) };
                // SAFETY: eight f64 into lanes 8h..8h+8 of a row of sixteen.
                unsafe { _mm512_storeu_pd(xs[j].as_mut_ptr().add(8 * h), v) };
            }
        }
        for h in 0..2 {
            // SAFETY: as above.
            unsafe { _mm512_storeu_pd(ds.as_mut_ptr().add(8 * h), dot[h]) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linalg::{dot, matmul, panels::gemm_depth_block, Op};

    /// Deterministic numbers of both signs and many scales, with exact zeros of both signs.
    fn numbers(len: usize, seed: u64) -> Vec<f64> {
        let mut s = seed | 1;
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                let u = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                match i % 97 {
                    5 => 0.0,
                    6 => -0.0,
                    7 => u * 1e-300,
                    _ => u * (1.0 + (i % 13) as f64),
                }
            })
            .collect()
    }

    /// Against `gemm` (the coordinates) and `dot` (the shift), bit for bit, on shapes on both
    /// sides of a group's sixteen rows, a tile's eight coordinates and `gemm`'s depth blocks
    /// (up to five blocks), for every `r` the kernel takes.
    #[test]
    fn coordinates_and_dots_match_gemm_and_dot() {
        if !usable() {
            eprintln!("no AVX-512 F here: the kernel does not run (its callers use gemm and dot)");
            return;
        }
        let kc = gemm_depth_block::<f64>(4096);
        let mut depths = vec![3, 7, 8, 9, 15, 16, 17, 100, 511, 512, 513];
        depths.extend([kc - 1, kc, kc + 1, 2 * kc + 3, 5 * kc - 2]);
        let mut checked = 0;
        for &d in &depths {
            let block = gemm_depth_block::<f64>(d);
            for m in [65, 97, 130, 257] {
                for r in 1..=MAX_R {
                    let z = numbers(m * d, (m * d + r) as u64);
                    let w = numbers(r * d, (7 * d + r) as u64);
                    let b = numbers(d, d as u64 + 3);
                    let mut x = vec![f64::NAN; m * r];
                    let mut dots = vec![f64::NAN; m];
                    assert!(coordinates_and_dots(&z, d, Some((&w, block)), &mut x, Some((&b, &mut dots))));
                    for (i, row) in z.chunks_exact(d).enumerate() {
                        assert_eq!(dots[i].to_bits(), dot(row, &b).to_bits(), "dot, m = {m}, d = {d}, row {i}");
                    }
                    if gemm_general(m, r, d) {
                        let mut want = vec![0.0; m * r];
                        matmul(&mut want, [m, r, d], Op::Plain(&z), Op::Transposed(&w), false);
                        let same = x.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "coordinates, m = {m}, r = {r}, d = {d} (depth block {block})");
                        checked += 1;
                    }
                    // The dots alone, and the coordinates alone, give the same numbers.
                    let mut alone = vec![f64::NAN; m];
                    assert!(coordinates_and_dots(&z, d, None, &mut [], Some((&b, &mut alone))));
                    assert!(alone.iter().zip(&dots).all(|(a, b)| a.to_bits() == b.to_bits()));
                    let mut x2 = vec![f64::NAN; m * r];
                    assert!(coordinates_and_dots(&z, d, Some((&w, block)), &mut x2, None));
                    assert!(x2.iter().zip(&x).all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
        assert!(checked > 100, "{checked} shapes compared with gemm");
        // A sum of negative zeros keeps `dot`'s start (the empty sum's zero).
        let (z, b) = (vec![-0.0; 70 * 9], vec![1.0; 9]);
        let mut dots = vec![f64::NAN; 70];
        assert!(coordinates_and_dots(&z, 9, None, &mut [], Some((&b, &mut dots))));
        assert!(dots.iter().all(|v| v.to_bits() == dot(&z[..9], &b).to_bits()));
        assert!(kc < 5 * kc - 2 && depths.iter().any(|&d| gemm_depth_block::<f64>(d) < d), "several depth blocks tested");
    }
}
