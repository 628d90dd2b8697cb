//! Standard normals for many samples at once with explicit SIMD: the same numbers as
//! [`super::normal`] (and so as `rand_distr::StandardNormal` over `rand_chacha::ChaCha8Rng`), bit
//! for bit, faster.
//!
//! Two kernels per instruction set for stream version 1, chosen at run time ([`Isa::detected`]),
//! and one for version 2 (the inverse normal CDF of [`super::icdf`] on 16 or 8 words at a time,
//! several vectors in lockstep, on the same ChaCha8 blocks):
//!
//! - **ChaCha8 across samples.** Sample `i` reads its own ChaCha stream `i`; the streams of 16
//!   (AVX-512) or 8 (AVX2) consecutive samples share their key and differ only in the stream
//!   words of the state, so one vector lane computes one sample's block: the rounds need no
//!   shuffles (the "vertical" layout), and a transpose at the end writes each lane's 64 bytes
//!   to its sample's buffer. A sample gets the blocks its `d` coordinates need plus a margin for
//!   the ziggurat's rejections; the rare sample that needs more continues its stream with the
//!   scalar keystream at the next block.
//! - **Ziggurat fast path on 8 (AVX-512) or 4 (AVX2) words.** Layer index, table gathers, the
//!   candidate `u·x_i` and the test `|x| < x_{i+1}` for a vector of words at once; when all
//!   pass (about 91% / 95% of vectors) they are stored as they are, otherwise the accepted
//!   prefix is stored and the first rejected word goes through the scalar slow path (wedge and
//!   tail), which reads the words after it, exactly as drawing one by one does.
//!
//! Both kernels use the same arithmetic as the scalar code (integer ChaCha, one multiplication
//! and one comparison per attempt), so the numbers are identical; tests compare every ISA the
//! machine has with the scalar path on more than 10⁷ draws, slow paths included.
//!
//! `unsafe` here: SIMD intrinsics behind `#[target_feature]`, each called only after the
//! feature was detected. The crate's other `unsafe` is of the same kind: the GEMM call, the
//! panel kernels (`linalg::panels`) and ReLU's row kernels (`activation::simd`).
#![allow(unsafe_code)]

use super::normal::{slow_path, Keystream, Normals, Tables, TABLES};
use super::icdf;

/// The instruction set the kernels run with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512 F: 16 ChaCha lanes, 8 ziggurat lanes.
    Avx512,
    /// AVX2 with FMA: 8 ChaCha lanes, 4 ziggurat lanes.
    Avx2,
    /// No vector kernels: the keystream of the `chacha20` crate and the scalar ziggurat (stream
    /// version 2: the scalar inverse CDF, whose fused multiply-adds are `libm` calls unless the
    /// build targets FMA; a fallback, about 15 million normals/s here).
    Scalar,
}

impl Isa {
    /// The best set this processor has (detected once).
    pub fn detected() -> Isa {
        static ISA: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *ISA.get_or_init(|| {
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx512f") {
                    return Isa::Avx512;
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    return Isa::Avx2;
                }
            }
            Isa::Scalar
        })
    }

    /// Every set this processor can run, best first (for tests and benchmarks).
    pub fn available() -> Vec<Isa> {
        let all = [Isa::Avx512, Isa::Avx2, Isa::Scalar];
        let best = all.iter().position(|&i| i == Isa::detected()).expect("listed");
        let mut out: Vec<Isa> = all[best..].to_vec();
        // A processor with AVX-512 F has AVX2 and FMA (every one made); checked anyway.
        #[cfg(target_arch = "x86_64")]
        out.retain(|&i| {
            i != Isa::Avx2 || (std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"))
        });
        out
    }

    /// Samples whose blocks one ChaCha call computes.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx512 => 16,
            Isa::Avx2 => 8,
            Isa::Scalar => 1,
        }
    }
}

/// Extra words per sample beyond its coordinates: the rejected attempts take about 1.2% of the
/// words, each costing one to a few more; a sample that needs more than this continues its
/// stream with the scalar keystream.
fn margin(words: usize) -> usize {
    words / 32 + 8
}

/// The ChaCha key as the state's eight little-endian words.
fn key_words(key: &[u8; 32]) -> [u32; 8] {
    std::array::from_fn(|k| u32::from_le_bytes(key[4 * k..4 * k + 4].try_into().expect("4 bytes")))
}

/// Samples `start..start+m` of the stream family `key` (`z` row-major `m×d`, then one noise
/// normal per sample when `noise` is given), with the kernels of `isa`. `isa` must be one of
/// [`Isa::available`].
pub(super) fn gaussian_rows_with(
    isa: Isa,
    key: &[u8; 32],
    start: u64,
    d: usize,
    z: &mut [f64],
    noise: Option<&mut [f64]>,
) {
    let words = d + usize::from(noise.is_some());
    gaussian_rows_margin(isa, key, start, d, z, noise, margin(words));
}

/// [`gaussian_rows_with`] with `margin` extra words per sample in the vector kernels' buffers.
fn gaussian_rows_margin(
    isa: Isa,
    key: &[u8; 32],
    start: u64,
    d: usize,
    z: &mut [f64],
    mut noise: Option<&mut [f64]>,
    margin: usize,
) {
    let m = z.len() / d.max(1);
    if isa == Isa::Scalar || d == 0 {
        for i in 0..m {
            let mut normals = Normals::new(Keystream::new(key, start + i as u64));
            normals.fill(&mut z[i * d..(i + 1) * d]);
            if let Some(xi) = noise.as_deref_mut() {
                xi[i] = normals.next();
            }
        }
        return;
    }
    let words = d + usize::from(noise.is_some());
    let blocks = (words + margin).div_ceil(8);
    let lanes = isa.lanes();
    let row_bytes = blocks * 64;
    let mut buf = vec![0u8; lanes * row_bytes];
    let key_words = key_words(key);
    let t: &Tables = &TABLES;
    for g in (0..m).step_by(lanes) {
        keystream(isa, &key_words, start + g as u64, blocks, &mut buf);
        for j in 0..lanes.min(m - g) {
            let i = g + j;
            let mut src = RowWords {
                buf: &buf[j * row_bytes..(j + 1) * row_bytes],
                pos: 0,
                more: None,
                key,
                stream: start + i as u64,
                blocks: blocks as u64,
            };
            fill_row(isa, t, &mut src, &mut z[i * d..(i + 1) * d]);
            if let Some(xi) = noise.as_deref_mut() {
                xi[i] = one(t, &mut src);
            }
        }
    }
}

/// Samples `start..start+m` of stream version 2 of `key` (see [`super::icdf`]), with the
/// kernels of `isa`: the numbers of [`icdf::gaussian_rows_scalar`], bit for bit.
pub(super) fn gaussian_rows_v2_with(
    isa: Isa,
    key: &[u8; 32],
    start: u64,
    d: usize,
    z: &mut [f64],
    mut noise: Option<&mut [f64]>,
) {
    if isa == Isa::Scalar || d == 0 {
        icdf::gaussian_rows_scalar(key, start, d, z, noise);
        return;
    }
    let m = z.len() / d;
    // With noise, a whole vector of words from word d on (the noise's word first), so that the
    // noise goes through the vector kernel too.
    let blocks = if noise.is_some() { (d + 16).div_ceil(16) } else { d.div_ceil(16) };
    let lanes = isa.lanes();
    let row_bytes = blocks * 64;
    let mut buf = vec![0u8; lanes * row_bytes];
    let key_words = key_words(key);
    for g in (0..m).step_by(lanes) {
        keystream(isa, &key_words, start + g as u64, blocks, &mut buf);
        for j in 0..lanes.min(m - g) {
            let i = g + j;
            let row = &buf[j * row_bytes..(j + 1) * row_bytes];
            normals32(isa, row, &mut z[i * d..(i + 1) * d]);
            if let Some(xi) = noise.as_deref_mut() {
                normals32(isa, &row[4 * d..], &mut xi[i..=i]);
            }
        }
    }
}

/// The normals of the first `out.len()` words of `row` (stream version 2) with the vector
/// kernel of `isa`; `row` holds the whole vectors of 16 words that cover them.
fn normals32(isa: Isa, row: &[u8], out: &mut [f64]) {
    assert!(row.len() >= 4 * out.len().div_ceil(16) * 16, "row buffer too short");
    match isa {
        // SAFETY: the variant is `Isa::Avx512` only where `Isa::available` found AVX-512 F; the
        // row holds the words of every vector (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::normals32_avx512(row, out) },
        // SAFETY: as above, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::normals32_avx2(row, out) },
        _ => {
            for (k, o) in out.iter_mut().enumerate() {
                *o = f64::from(icdf::normal(u32::from_le_bytes(row[4 * k..4 * k + 4].try_into().expect("4 bytes"))));
            }
        }
    }
}

/// The words of one sample's stream: its precomputed blocks, then (rarely) the scalar keystream
/// from the next block on.
struct RowWords<'a> {
    buf: &'a [u8],
    pos: usize,
    more: Option<Keystream>,
    key: &'a [u8; 32],
    stream: u64,
    blocks: u64,
}

impl RowWords<'_> {
    #[inline(always)]
    fn word(&mut self) -> u64 {
        if self.pos + 8 <= self.buf.len() {
            let w = u64::from_le_bytes(self.buf[self.pos..self.pos + 8].try_into().expect("8 bytes"));
            self.pos += 8;
            return w;
        }
        self.more_word()
    }

    #[cold]
    fn more_word(&mut self) -> u64 {
        use super::normal::Words;
        let (key, stream, blocks) = (self.key, self.stream, self.blocks);
        self.more.get_or_insert_with(|| Keystream::at(key, stream, blocks)).word()
    }
}

/// `out` from the words of `src`: vectors of words through the fast path while `src` has them
/// in its buffer, the slow path for a rejected word, one word at a time at the ends.
fn fill_row(isa: Isa, t: &Tables, src: &mut RowWords, out: &mut [f64]) {
    match isa {
        // SAFETY: the variant is `Isa::Avx512` only where `Isa::available` found AVX-512 F.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::fill_avx512(t, src, out) },
        // SAFETY: as above, AVX2.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::fill_avx2(t, src, out) },
        _ => out.iter_mut().for_each(|o| *o = one(t, src)),
    }
}

/// One normal from the next words of `src`, the scalar way.
#[inline(always)]
fn one(t: &Tables, src: &mut RowWords) -> f64 {
    let bits = src.word();
    match t.attempt(bits) {
        (x, true) => x,
        (_, false) => slow_path(t, bits, || src.word()),
    }
}

/// ChaCha8 blocks `0..blocks` of the streams `stream0 + j`, `j < isa.lanes()`, of `key`, lane `j`
/// into `buf[j·64·blocks ..]`.
fn keystream(isa: Isa, key: &[u32; 8], stream0: u64, blocks: usize, buf: &mut [u8]) {
    assert!(buf.len() >= isa.lanes() * blocks * 64, "keystream buffer too short");
    match isa {
        // SAFETY: AVX-512 F detected (see `fill_row`); the buffer holds every lane's blocks
        // (asserted above).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::chacha8_avx512(key, stream0, blocks, buf) },
        // SAFETY: as above, AVX2.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::chacha8_avx2(key, stream0, blocks, buf) },
        _ => unreachable!("the scalar path has no block kernel"),
    }
}

/// The ziggurat's `(x_i, x_{i+1})` for each layer `i`, 16-byte aligned: one load per attempt.
#[derive(Clone, Copy)]
#[repr(align(16))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Pair([f64; 2]);

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
static PAIRS: std::sync::LazyLock<[Pair; 256]> = std::sync::LazyLock::new(|| {
    let x = &TABLES.x;
    std::array::from_fn(|i| Pair([x[i], x[i + 1]]))
});

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::icdf::{CENTRAL, LN2_HI, LN2_LO, LOG, SQRT_HALF, TAIL};
    use super::{one, Pair, RowWords, Tables, PAIRS};
    use std::arch::x86_64::*;

    const SIGMA: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

    /// The stream words (14: low half, 15: high half) of the lanes `stream0 + j`.
    fn stream_words<const L: usize>(stream0: u64) -> ([u32; L], [u32; L]) {
        let s = |j: usize| stream0.wrapping_add(j as u64);
        (
            std::array::from_fn(|j| s(j) as u32),
            std::array::from_fn(|j| (s(j) >> 32) as u32),
        )
    }

    /// 16 lanes of ChaCha8 (see `super::keystream`).
    ///
    /// # Safety
    /// The processor must have AVX-512 F; `buf` must hold `16·64·blocks` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn chacha8_avx512(key: &[u32; 8], stream0: u64, blocks: usize, buf: &mut [u8]) {
        let (lo, hi) = stream_words::<16>(stream0);
        let mut init = [_mm512_setzero_si512(); 16];
        for (k, c) in SIGMA.iter().enumerate() {
            init[k] = _mm512_set1_epi32(*c as i32);
        }
        for k in 0..8 {
            init[4 + k] = _mm512_set1_epi32(key[k] as i32);
        }
        // SAFETY: reads 16 u32 from arrays of 16.
        init[14] = unsafe { _mm512_loadu_si512(lo.as_ptr().cast()) };
        init[15] = unsafe { _mm512_loadu_si512(hi.as_ptr().cast()) };
        // The transpose: level b swaps, between rows k and k + b (bit b of k clear), the
        // entries of row k whose column has bit b set with those of row k + b that have it
        // clear; after the levels 1, 2, 4, 8 row j holds lane j's block.
        let index = |f: &dyn Fn(usize) -> usize| -> __m512i {
            let v: [i32; 16] = std::array::from_fn(|j| f(j) as i32);
            // SAFETY: reads 16 i32 from an array of 16.
            unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
        };
        // Entry j of the new row k: row k's own (source index j) or row k + b's entry j − b
        // (16 + j − b); of the new row k + b: row k's entry j + b or its own (16 + j).
        let lower = |b: usize| index(&|j| if j & b == 0 { j } else { 16 + j - b });
        let upper = |b: usize| index(&|j| if j & b == 0 { j + b } else { 16 + j });
        let levels = [1usize, 2, 4, 8].map(|b| (b, lower(b), upper(b)));
        debug_assert!(levels.iter().enumerate().all(|(i, l)| l.0 == 1 << i));
        let row_bytes = 64 * blocks;
        for c in 0..blocks {
            let mut s = init;
            s[12] = _mm512_set1_epi32(c as u32 as i32);
            s[13] = _mm512_set1_epi32((c as u64 >> 32) as u32 as i32);
            let mut x = s;
            macro_rules! qr {
                ($a:expr, $b:expr, $c:expr, $d:expr) => {
                    x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm512_rol_epi32::<16>(_mm512_xor_si512(x[$d], x[$a]));
                    x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                    x[$b] = _mm512_rol_epi32::<12>(_mm512_xor_si512(x[$b], x[$c]));
                    x[$a] = _mm512_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm512_rol_epi32::<8>(_mm512_xor_si512(x[$d], x[$a]));
                    x[$c] = _mm512_add_epi32(x[$c], x[$d]);
                    x[$b] = _mm512_rol_epi32::<7>(_mm512_xor_si512(x[$b], x[$c]));
                };
            }
            for _ in 0..4 {
                qr!(0, 4, 8, 12);
                qr!(1, 5, 9, 13);
                qr!(2, 6, 10, 14);
                qr!(3, 7, 11, 15);
                qr!(0, 5, 10, 15);
                qr!(1, 6, 11, 12);
                qr!(2, 7, 8, 13);
                qr!(3, 4, 9, 14);
            }
            for k in 0..16 {
                x[k] = _mm512_add_epi32(x[k], s[k]);
            }
            // Unrolled by hand so that the rows stay in registers.
            macro_rules! swap {
                ($level:expr; $(($k:expr, $l:expr)),*) => {
                    let (lower, upper) = ($level.1, $level.2);
                    $(
                        let (r0, r1) = (x[$k], x[$l]);
                        x[$k] = _mm512_permutex2var_epi32(r0, lower, r1);
                        x[$l] = _mm512_permutex2var_epi32(r0, upper, r1);
                    )*
                };
            }
            swap!(levels[0]; (0, 1), (2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13), (14, 15));
            swap!(levels[1]; (0, 2), (1, 3), (4, 6), (5, 7), (8, 10), (9, 11), (12, 14), (13, 15));
            swap!(levels[2]; (0, 4), (1, 5), (2, 6), (3, 7), (8, 12), (9, 13), (10, 14), (11, 15));
            swap!(levels[3]; (0, 8), (1, 9), (2, 10), (3, 11), (4, 12), (5, 13), (6, 14), (7, 15));
            for (j, row) in x.iter().enumerate() {
                let at = j * row_bytes + c * 64;
                debug_assert!(at + 64 <= buf.len());
                // SAFETY: `at + 64 <= 16·row_bytes <= buf.len()` (the caller's contract).
                unsafe { _mm512_storeu_si512(buf.as_mut_ptr().add(at).cast(), *row) };
            }
        }
    }

    /// 8 lanes of ChaCha8 (see `super::keystream`).
    ///
    /// # Safety
    /// The processor must have AVX2; `buf` must hold `8·64·blocks` bytes.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn chacha8_avx2(key: &[u32; 8], stream0: u64, blocks: usize, buf: &mut [u8]) {
        let (lo, hi) = stream_words::<8>(stream0);
        let mut init = [_mm256_setzero_si256(); 16];
        for (k, c) in SIGMA.iter().enumerate() {
            init[k] = _mm256_set1_epi32(*c as i32);
        }
        for k in 0..8 {
            init[4 + k] = _mm256_set1_epi32(key[k] as i32);
        }
        // SAFETY: reads 8 u32 from arrays of 8.
        init[14] = unsafe { _mm256_loadu_si256(lo.as_ptr().cast()) };
        init[15] = unsafe { _mm256_loadu_si256(hi.as_ptr().cast()) };
        let rot16 = _mm256_setr_epi8(
            2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13,
        );
        let rot8 = _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, 3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
        );
        // Opaque to the compiler, which otherwise turns the rotation by 16 into two shuffles of
        // 16-bit halves (two operations on the shuffle pipes instead of one).
        let rot16 = std::hint::black_box(rot16);
        let row_bytes = 64 * blocks;
        for c in 0..blocks {
            let mut s = init;
            s[12] = _mm256_set1_epi32(c as u32 as i32);
            s[13] = _mm256_set1_epi32((c as u64 >> 32) as u32 as i32);
            let mut x = s;
            macro_rules! qr {
                ($a:expr, $b:expr, $c:expr, $d:expr) => {
                    x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot16);
                    x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                    let v = _mm256_xor_si256(x[$b], x[$c]);
                    x[$b] = _mm256_or_si256(_mm256_slli_epi32::<12>(v), _mm256_srli_epi32::<20>(v));
                    x[$a] = _mm256_add_epi32(x[$a], x[$b]);
                    x[$d] = _mm256_shuffle_epi8(_mm256_xor_si256(x[$d], x[$a]), rot8);
                    x[$c] = _mm256_add_epi32(x[$c], x[$d]);
                    let v = _mm256_xor_si256(x[$b], x[$c]);
                    x[$b] = _mm256_or_si256(_mm256_slli_epi32::<7>(v), _mm256_srli_epi32::<25>(v));
                };
            }
            for _ in 0..4 {
                qr!(0, 4, 8, 12);
                qr!(1, 5, 9, 13);
                qr!(2, 6, 10, 14);
                qr!(3, 7, 11, 15);
                qr!(0, 5, 10, 15);
                qr!(1, 6, 11, 12);
                qr!(2, 7, 8, 13);
                qr!(3, 4, 9, 14);
            }
            for k in 0..16 {
                x[k] = _mm256_add_epi32(x[k], s[k]);
            }
            // Two 8×8 transposes: words 0..8 and 8..16 of the 8 lanes.
            for half in 0..2 {
                let r = &x[8 * half..8 * half + 8];
                let t0 = _mm256_unpacklo_epi32(r[0], r[1]);
                let t1 = _mm256_unpackhi_epi32(r[0], r[1]);
                let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
                let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
                let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
                let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
                let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
                let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
                let u0 = _mm256_unpacklo_epi64(t0, t2);
                let u1 = _mm256_unpackhi_epi64(t0, t2);
                let u2 = _mm256_unpacklo_epi64(t1, t3);
                let u3 = _mm256_unpackhi_epi64(t1, t3);
                let u4 = _mm256_unpacklo_epi64(t4, t6);
                let u5 = _mm256_unpackhi_epi64(t4, t6);
                let u6 = _mm256_unpacklo_epi64(t5, t7);
                let u7 = _mm256_unpackhi_epi64(t5, t7);
                // Lane j (0..4) is in the low 128 bits of u_j, lane 4 + j in the high bits.
                let out = [
                    _mm256_permute2x128_si256::<0x20>(u0, u4),
                    _mm256_permute2x128_si256::<0x20>(u1, u5),
                    _mm256_permute2x128_si256::<0x20>(u2, u6),
                    _mm256_permute2x128_si256::<0x20>(u3, u7),
                    _mm256_permute2x128_si256::<0x31>(u0, u4),
                    _mm256_permute2x128_si256::<0x31>(u1, u5),
                    _mm256_permute2x128_si256::<0x31>(u2, u6),
                    _mm256_permute2x128_si256::<0x31>(u3, u7),
                ];
                for (j, v) in out.iter().enumerate() {
                    let at = j * row_bytes + c * 64 + 32 * half;
                    debug_assert!(at + 32 <= buf.len());
                    // SAFETY: `at + 32 <= 8·row_bytes <= buf.len()` (the caller's contract).
                    unsafe { _mm256_storeu_si256(buf.as_mut_ptr().add(at).cast(), *v) };
                }
            }
        }
    }

    /// Stream version 2 on 16 words at a time: the operations of `super::icdf::normal` on
    /// vectors, in the same order, on eight vectors at once in lockstep (each step of one
    /// vector depends on the one before; the polynomials' chains of eight multiply-adds keep
    /// the two vector units busy only with eight chains in flight: 1.08× four vectors, which
    /// ran 1.2× one), then four, then one vector for the rest of the row.
    ///
    /// # Safety
    /// The processor must have AVX-512 F; `row` must hold `4·16·⌈out.len()/16⌉` bytes.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn normals32_avx512(row: &[u8], out: &mut [f64]) {
        let mut at = 0;
        // SAFETY: the contract, passed on.
        unsafe {
            at = normals32_groups::<8>(row, out, at);
            at = normals32_groups::<4>(row, out, at);
        }
        while at < out.len() {
            // SAFETY: `4·at + 64 <= row.len()` (the contract).
            let w = unsafe { _mm512_loadu_si512(row.as_ptr().add(4 * at).cast()) };
            let [x] = icdf_avx512([w]);
            let low = _mm512_cvtps_pd(_mm512_castps512_ps256(x));
            let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))));
            let left = out.len() - at;
            let mask = |from: usize| ((1u32 << left.saturating_sub(from).min(8)) - 1) as u8;
            // SAFETY: the masks store only entries `at + k < out.len()`.
            unsafe {
                _mm512_mask_storeu_pd(out.as_mut_ptr().add(at), mask(0), low);
                _mm512_mask_storeu_pd(out.as_mut_ptr().add(at + 8), mask(8), high);
            }
            at += 16;
        }
    }

    /// The normals of words `from..` of `row` in whole groups of `U` vectors; returns where the
    /// groups end.
    ///
    /// # Safety
    /// As [`normals32_avx512`].
    #[target_feature(enable = "avx512f")]
    unsafe fn normals32_groups<const U: usize>(row: &[u8], out: &mut [f64], from: usize) -> usize {
        let end = from + (out.len() - from) / (16 * U) * (16 * U);
        for at in (from..end).step_by(16 * U) {
            // SAFETY: `4·(at + 16·U) <= 4·out.len() <= row.len()` (the contract).
            let w: [__m512i; U] = std::array::from_fn(|k| unsafe { _mm512_loadu_si512(row.as_ptr().add(4 * (at + 16 * k)).cast()) });
            let x = icdf_avx512(w);
            for (k, x) in x.iter().enumerate() {
                let low = _mm512_cvtps_pd(_mm512_castps512_ps256(*x));
                let high = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(*x))));
                // SAFETY: `at + 16k + 16 <= end <= out.len()`.
                unsafe {
                    _mm512_storeu_pd(out.as_mut_ptr().add(at + 16 * k), low);
                    _mm512_storeu_pd(out.as_mut_ptr().add(at + 16 * k + 8), high);
                }
            }
        }
        end
    }

    /// The normals of `U` vectors of 16 words, every step applied to all of them in turn. The
    /// values of the scalar path's operations with fewer of them where AVX-512 has one for two:
    /// the logarithm's exponent and mantissa by `vgetexpps` / `vgetmantps` (exact), `ω − 2.5` as
    /// `−2.5 − ln y` (the same rounding, no negation), the sign by one ternary logic operation.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn icdf_avx512<const U: usize>(w: [__m512i; U]) -> [__m512; U] {
        let c = |v: f32| _mm512_set1_ps(v);
        let ci = |v: u32| _mm512_set1_epi32(v as i32);
        let map = |f: &dyn Fn(usize) -> __m512| -> [__m512; U] { std::array::from_fn(f) };
        let poly = |coefs: &[f32; 9], x: &[__m512; U]| -> [__m512; U] {
            let mut p = [c(coefs[0]); U];
            for &k in &coefs[1..] {
                for u in 0..U {
                    p[u] = _mm512_fmadd_ps(p[u], x[u], c(k));
                }
            }
            p
        };
        let t = map(&|u| {
            _mm512_mul_ps(
                _mm512_add_ps(_mm512_cvtepi32_ps(_mm512_and_si512(w[u], ci(0x7fff_ffff))), c(0.5)),
                c(1.0 / 4_294_967_296.0),
            )
        });
        let y = map(&|u| _mm512_mul_ps(_mm512_mul_ps(c(4.0), t[u]), _mm512_sub_ps(c(1.0), t[u])));
        // ln y
        let m = map(&|u| _mm512_getmant_ps::<_MM_MANT_NORM_P5_1, _MM_MANT_SIGN_ZERO>(y[u]));
        let low: [__mmask16; U] = std::array::from_fn(|u| _mm512_cmp_ps_mask::<_CMP_LT_OQ>(m[u], c(SQRT_HALF)));
        let e = map(&|u| {
            let g = _mm512_getexp_ps(y[u]);
            _mm512_mask_add_ps(g, !low[u], g, c(1.0))
        });
        let m = map(&|u| _mm512_sub_ps(_mm512_mask_add_ps(m[u], low[u], m[u], m[u]), c(1.0)));
        let z = map(&|u| _mm512_mul_ps(m[u], m[u]));
        let p = poly(&LOG, &m);
        let r = map(&|u| _mm512_mul_ps(_mm512_mul_ps(p[u], m[u]), z[u]));
        let r = map(&|u| _mm512_fmadd_ps(e[u], c(LN2_LO), r[u]));
        let r = map(&|u| _mm512_fmadd_ps(c(-0.5), z[u], r[u]));
        let r = map(&|u| _mm512_add_ps(m[u], r[u]));
        let ln = map(&|u| _mm512_fmadd_ps(e[u], c(LN2_HI), r[u]));
        // ω = −ln y: ω < 5 is ln y > −5, and ω − 2.5 is (−2.5) − ln y (the same rounding).
        let central: [__mmask16; U] = std::array::from_fn(|u| _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ln[u], c(-5.0)));
        let mut p = poly(&CENTRAL, &map(&|u| _mm512_sub_ps(c(-2.5), ln[u])));
        // The tail (ω ≥ 5, about one word in 300): its lanes of all `U` vectors are gathered
        // into as few vectors as they fill, computed there (each lane's operations are the same
        // wherever it sits) and put back, instead of the square root and polynomial on all of
        // them whenever one lane needs it.
        let tails = (0..U).fold(0u32, |acc, u| acc | (u32::from(central[u] != 0xffff) << u));
        if tails != 0 {
            // Room for eight vectors' lanes and one vector past them.
            assert!(U <= 8, "at most eight vectors in lockstep");
            let mut buf = [[0.0f32; 16]; 9];
            let base = buf.as_mut_ptr().cast::<f32>();
            let at = |n: usize| -> *mut f32 { base.wrapping_add(n) };
            let (mut n, mut left) = (0, tails);
            while left != 0 {
                let u = left.trailing_zeros() as usize;
                left &= left - 1;
                let k = !central[u];
                let omega = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(ln[u]), ci(0x8000_0000)));
                // SAFETY: `n + 16 <= 16·u + 16 <= 16·9`: inside `buf`.
                unsafe { _mm512_storeu_ps(at(n), _mm512_maskz_compress_ps(k, omega)) };
                n += k.count_ones() as usize;
            }
            for v in (0..n).step_by(16) {
                // SAFETY: `v + 16 <= n + 15 < 16·9`.
                let omega = unsafe { _mm512_loadu_ps(at(v)) };
                let x = _mm512_sub_ps(_mm512_sqrt_ps(omega), c(3.0));
                let mut q = c(TAIL[0]);
                for &k in &TAIL[1..] {
                    q = _mm512_fmadd_ps(q, x, c(k));
                }
                // SAFETY: as above.
                unsafe { _mm512_storeu_ps(at(v), q) };
            }
            let (mut n, mut left) = (0, tails);
            while left != 0 {
                let u = left.trailing_zeros() as usize;
                left &= left - 1;
                let k = !central[u];
                // SAFETY: as for the stores above.
                p[u] = _mm512_mask_expand_ps(p[u], k, unsafe { _mm512_loadu_ps(at(n)) });
                n += k.count_ones() as usize;
            }
        }
        map(&|u| {
            let magnitude = _mm512_mul_ps(
                _mm512_mul_ps(c(std::f32::consts::SQRT_2), p[u]),
                _mm512_fmadd_ps(c(-2.0), t[u], c(1.0)),
            );
            // magnitude ^ (w & sign bit), one operation.
            _mm512_castsi512_ps(_mm512_ternarylogic_epi32::<0x78>(_mm512_castps_si512(magnitude), w[u], ci(0x8000_0000)))
        })
    }

    /// [`normals32_avx512`] on 8 words at a time, eight vectors in lockstep. On an AVX2-only
    /// Zen 3 (2 FMA pipes of latency 4), one vector at a time ran at half the rate of four, and
    /// eight ran 5–8% faster than four (d = 64 … 1000, both measured in one process) although
    /// they spill registers: the polynomials' chains of dependent multiply-adds, not the
    /// arithmetic, bound it. Splitting the work into stages over blocks of 32 vectors, each
    /// stage in lockstep, was no faster than this.
    ///
    /// # Safety
    /// The processor must have AVX2 and FMA; `row` must hold `4·16·⌈out.len()/16⌉` bytes.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn normals32_avx2(row: &[u8], out: &mut [f64]) {
        const U: usize = 8;
        let store = |at: usize, x: __m256, out: &mut [f64]| {
            let low = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
            let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
            if at + 8 <= out.len() {
                // SAFETY: `at + 8 <= out.len()`.
                unsafe {
                    _mm256_storeu_pd(out.as_mut_ptr().add(at), low);
                    _mm256_storeu_pd(out.as_mut_ptr().add(at + 4), high);
                }
            } else {
                let mut v = [0.0f64; 8];
                // SAFETY: two stores of 4 f64 into an array of 8.
                unsafe {
                    _mm256_storeu_pd(v.as_mut_ptr(), low);
                    _mm256_storeu_pd(v.as_mut_ptr().add(4), high);
                }
                let n = out.len() - at;
                out[at..].copy_from_slice(&v[..n]);
            }
        };
        let full = out.len() / (8 * U) * (8 * U);
        for at in (0..full).step_by(8 * U) {
            // SAFETY: `4·(at + 8·U) <= 4·out.len() <= row.len()` (the contract).
            let w: [__m256i; U] = std::array::from_fn(|k| unsafe { _mm256_loadu_si256(row.as_ptr().add(4 * (at + 8 * k)).cast()) });
            let x = icdf_avx2(w);
            for (k, x) in x.into_iter().enumerate() {
                let low = _mm256_cvtps_pd(_mm256_castps256_ps128(x));
                let high = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(x));
                // SAFETY: `at + 8k + 8 <= full <= out.len()`. (Through the tail loop's checked
                // `store`, the stores were about 270 of this loop's 840 instructions here.)
                unsafe {
                    _mm256_storeu_pd(out.as_mut_ptr().add(at + 8 * k), low);
                    _mm256_storeu_pd(out.as_mut_ptr().add(at + 8 * k + 4), high);
                }
            }
        }
        for at in (full..out.len()).step_by(8) {
            // SAFETY: `4·at + 32 <= row.len()` (the contract).
            let w = unsafe { _mm256_loadu_si256(row.as_ptr().add(4 * at).cast()) };
            let [x] = icdf_avx2([w]);
            store(at, x, out);
        }
    }

    /// The normals of `U` vectors of 8 words, every step applied to all of them in turn (as
    /// [`icdf_avx512`]).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn icdf_avx2<const U: usize>(w: [__m256i; U]) -> [__m256; U] {
        let c = |v: f32| _mm256_set1_ps(v);
        let ci = |v: u32| _mm256_set1_epi32(v as i32);
        let map = |f: &dyn Fn(usize) -> __m256| -> [__m256; U] { std::array::from_fn(f) };
        let map_i = |f: &dyn Fn(usize) -> __m256i| -> [__m256i; U] { std::array::from_fn(f) };
        let poly = |coefs: &[f32; 9], x: &[__m256; U]| -> [__m256; U] {
            let mut p = [c(coefs[0]); U];
            for &k in &coefs[1..] {
                for u in 0..U {
                    p[u] = _mm256_fmadd_ps(p[u], x[u], c(k));
                }
            }
            p
        };
        // The exact scalings by 2⁻³² and by 4 as additions to the exponent field (every value is
        // normal: t ≥ 2⁻³³): the scalar path's products bit for bit, two fewer multiplications
        // on the pipes the polynomials need.
        let t = map(&|u| {
            let x = _mm256_add_ps(_mm256_cvtepi32_ps(_mm256_and_si256(w[u], ci(0x7fff_ffff))), c(0.5));
            _mm256_castsi256_ps(_mm256_sub_epi32(_mm256_castps_si256(x), ci(32 << 23)))
        });
        let y = map(&|u| {
            let four_t = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(t[u]), ci(2 << 23)));
            _mm256_mul_ps(four_t, _mm256_sub_ps(c(1.0), t[u]))
        });
        // ln y
        // The mantissa m ∈ [½, 1) and exponent e of y, with (m, e) → (2m, e − 1) where m < √½,
        // in integers: m < √½ compares the bit patterns (same sign and exponent), 2m adds one to
        // the exponent field, e − 1 adds the comparison's all-ones mask before the exact
        // conversion: the values of the scalar path's float operations, fewer float operations.
        let bits = map_i(&|u| _mm256_or_si256(_mm256_and_si256(_mm256_castps_si256(y[u]), ci(0x007f_ffff)), ci(0x3f00_0000)));
        let low = map_i(&|u| _mm256_cmpgt_epi32(ci(SQRT_HALF.to_bits()), bits[u]));
        let e = map(&|u| {
            _mm256_cvtepi32_ps(_mm256_add_epi32(
                _mm256_sub_epi32(_mm256_srli_epi32::<23>(_mm256_castps_si256(y[u])), ci(126)),
                low[u],
            ))
        });
        let m = map(&|u| {
            _mm256_sub_ps(
                _mm256_castsi256_ps(_mm256_add_epi32(bits[u], _mm256_and_si256(low[u], ci(0x0080_0000)))),
                c(1.0),
            )
        });
        let z = map(&|u| _mm256_mul_ps(m[u], m[u]));
        let p = poly(&LOG, &m);
        let r = map(&|u| _mm256_mul_ps(_mm256_mul_ps(p[u], m[u]), z[u]));
        let r = map(&|u| _mm256_fmadd_ps(e[u], c(LN2_LO), r[u]));
        let r = map(&|u| _mm256_fmadd_ps(c(-0.5), z[u], r[u]));
        let r = map(&|u| _mm256_add_ps(m[u], r[u]));
        let ln = map(&|u| _mm256_fmadd_ps(e[u], c(LN2_HI), r[u]));
        let omega = map(&|u| _mm256_xor_ps(ln[u], _mm256_castsi256_ps(ci(0x8000_0000))));
        let central = map(&|u| _mm256_cmp_ps::<_CMP_LT_OQ>(omega[u], c(5.0)));
        let mut p = poly(&CENTRAL, &map(&|u| _mm256_sub_ps(omega[u], c(2.5))));
        if _mm256_movemask_ps(central.iter().fold(_mm256_castsi256_ps(ci(u32::MAX)), |a, k| _mm256_and_ps(a, *k))) != 0xff {
            let q = poly(&TAIL, &map(&|u| _mm256_sub_ps(_mm256_sqrt_ps(omega[u]), c(3.0))));
            p = map(&|u| _mm256_blendv_ps(q[u], p[u], central[u]));
        }
        map(&|u| {
            let magnitude = _mm256_mul_ps(
                _mm256_mul_ps(c(std::f32::consts::SQRT_2), p[u]),
                _mm256_fmadd_ps(c(-2.0), t[u], c(1.0)),
            );
            _mm256_xor_ps(magnitude, _mm256_castsi256_ps(_mm256_and_si256(w[u], ci(0x8000_0000))))
        })
    }

    /// `out` from the words of `src` (see `super::fill_row`): the fast path 8 words at a time,
    /// a rejected word and the ends through `super::one`.
    ///
    /// # Safety
    /// The processor must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn fill_avx512(t: &Tables, src: &mut RowWords, out: &mut [f64]) {
        // SAFETY: AVX-512 F (this function's contract).
        fill_with(t, src, out, |buf, pos, out| unsafe { fast_avx512(buf, pos, out) });
    }

    /// The loop of `fill_avx512` and `fill_avx2` around their fast path `fast` (inlined into
    /// each, so that `fast` is compiled with its instruction set).
    #[inline(always)]
    fn fill_with(t: &Tables, src: &mut RowWords, out: &mut [f64], fast: impl Fn(&[u8], usize, &mut [f64]) -> usize) {
        let mut k = 0;
        while k < out.len() {
            let done = fast(src.buf, src.pos, &mut out[k..]);
            src.pos += 8 * done;
            k += done;
            if k < out.len() {
                out[k] = one(t, src);
                k += 1;
            }
        }
    }

    /// The fast path on the words of `buf` from byte `pos`, 8 at a time, into `out`: returns the
    /// number of words accepted and stored before the first rejected one or before fewer than 8
    /// words or outputs were left.
    ///
    /// # Safety
    /// The processor must have AVX-512 F.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn fast_avx512(buf: &[u8], pos: usize, out: &mut [f64]) -> usize {
        let pairs: &[Pair; 256] = &PAIRS;
        let exponent = _mm512_set1_epi64(1024 << 52);
        let three = _mm512_set1_pd(3.0);
        let magnitude = _mm512_set1_epi64(i64::MAX);
        let (mut done, mut at) = (0, pos);
        while done + 8 <= out.len() && at + 64 <= buf.len() {
            // SAFETY: `at + 64 <= buf.len()`.
            let w = unsafe { _mm512_loadu_si512(buf.as_ptr().add(at).cast()) };
            // The layer of word k is its first byte (little-endian); its pair (x_i, x_{i+1}) is
            // one 16-byte load (a gather costs more on processors with the gather-data-sampling
            // fix). Pairs 0, 2, 4, 6 and 1, 3, 5, 7 in the 128-bit lanes of two vectors, so that
            // the unpacks give the x_i and x_{i+1} of words 0..8 in order.
            let pair = |k: usize| -> __m128d {
                // SAFETY: `at + 8k < at + 64 <= buf.len()` (the loop condition); `pairs` holds 256
                // aligned pairs and a byte is below 256.
                unsafe {
                    let i = usize::from(*buf.get_unchecked(at + 8 * k));
                    _mm_load_pd(pairs.get_unchecked(i).0.as_ptr())
                }
            };
            let even = _mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(0)), pair(2))),
                _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(4)), pair(6)),
            );
            let odd = _mm512_insertf64x4::<1>(
                _mm512_castpd256_pd512(_mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(1)), pair(3))),
                _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(5)), pair(7)),
            );
            let (xi, xn) = (_mm512_unpacklo_pd(even, odd), _mm512_unpackhi_pd(even, odd));
            let u = _mm512_sub_pd(_mm512_castsi512_pd(_mm512_or_si512(_mm512_srli_epi64::<12>(w), exponent)), three);
            let x = _mm512_mul_pd(u, xi);
            let ax = _mm512_castsi512_pd(_mm512_and_si512(_mm512_castpd_si512(x), magnitude));
            let ok = _mm512_cmp_pd_mask::<_CMP_LT_OQ>(ax, xn);
            if ok == 0xff {
                // SAFETY: `done + 8 <= out.len()`.
                unsafe { _mm512_storeu_pd(out.as_mut_ptr().add(done), x) };
                done += 8;
                at += 64;
                continue;
            }
            let first = (!ok).trailing_zeros() as usize;
            // SAFETY: the mask stores lanes `< first < 8` at `done..done + first <= out.len()`.
            unsafe { _mm512_mask_storeu_pd(out.as_mut_ptr().add(done), (1u8 << first) - 1, x) };
            return done + first;
        }
        done
    }

    /// [`fill_avx512`] with 4 words at a time.
    ///
    /// # Safety
    /// The processor must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn fill_avx2(t: &Tables, src: &mut RowWords, out: &mut [f64]) {
        // SAFETY: AVX2 (this function's contract).
        fill_with(t, src, out, |buf, pos, out| unsafe { fast_avx2(buf, pos, out) });
    }

    /// [`fast_avx512`] on 4 words at a time.
    ///
    /// # Safety
    /// The processor must have AVX2.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn fast_avx2(buf: &[u8], pos: usize, out: &mut [f64]) -> usize {
        let pairs: &[Pair; 256] = &PAIRS;
        let exponent = _mm256_set1_epi64x(1024 << 52);
        let three = _mm256_set1_pd(3.0);
        let magnitude = _mm256_set1_epi64x(i64::MAX);
        let (mut done, mut at) = (0, pos);
        while done + 4 <= out.len() && at + 32 <= buf.len() {
            // SAFETY: `at + 32 <= buf.len()`.
            let w = unsafe { _mm256_loadu_si256(buf.as_ptr().add(at).cast()) };
            // As in `fast_avx512`: pairs 0, 2 and 1, 3 in the 128-bit lanes of two vectors.
            let pair = |k: usize| -> __m128d {
                // SAFETY: `at + 8k < at + 32 <= buf.len()` (the loop condition); `pairs` holds 256
                // aligned pairs and a byte is below 256.
                unsafe {
                    let i = usize::from(*buf.get_unchecked(at + 8 * k));
                    _mm_load_pd(pairs.get_unchecked(i).0.as_ptr())
                }
            };
            let even = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(0)), pair(2));
            let odd = _mm256_insertf128_pd::<1>(_mm256_castpd128_pd256(pair(1)), pair(3));
            let (xi, xn) = (_mm256_unpacklo_pd(even, odd), _mm256_unpackhi_pd(even, odd));
            let u = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_or_si256(_mm256_srli_epi64::<12>(w), exponent)), three);
            let x = _mm256_mul_pd(u, xi);
            let ax = _mm256_castsi256_pd(_mm256_and_si256(_mm256_castpd_si256(x), magnitude));
            let ok = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_LT_OQ>(ax, xn)) as u32;
            if ok == 0xf {
                // SAFETY: `done + 4 <= out.len()`.
                unsafe { _mm256_storeu_pd(out.as_mut_ptr().add(done), x) };
                done += 4;
                at += 32;
                continue;
            }
            let first = (!ok).trailing_zeros() as usize;
            let mut lanes = [0.0; 4];
            // SAFETY: stores 4 f64 into an array of 4.
            unsafe { _mm256_storeu_pd(lanes.as_mut_ptr(), x) };
            out[done..done + first].copy_from_slice(&lanes[..first]);
            return done + first;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Draws of every available ISA against the scalar path, bit for bit: `rows` samples of
    /// dimension `d` (and noise) from `start`, with the given buffer margin; returns the number of
    /// draws and how many went through the tail (|x| > R) or beyond the buffer.
    fn compare(isa: Isa, d: usize, rows: usize, start: u64, noise: bool, margin: Option<usize>) -> (usize, usize) {
        let key: [u8; 32] = std::array::from_fn(|k| (k * 37 + d) as u8);
        let mut want = vec![0.0; rows * d];
        let mut want_xi = vec![0.0; rows];
        gaussian_rows_with(Isa::Scalar, &key, start, d, &mut want, noise.then_some(&mut want_xi[..]));
        let mut got = vec![0.0; rows * d];
        let mut got_xi = vec![0.0; rows];
        let xi = noise.then_some(&mut got_xi[..]);
        match margin {
            Some(mg) => gaussian_rows_margin(isa, &key, start, d, &mut got, xi, mg),
            None => gaussian_rows_with(isa, &key, start, d, &mut got, xi),
        }
        for (k, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.to_bits(), g.to_bits(), "{isa:?}, d {d}, start {start}: sample {}, coordinate {}", k / d, k % d);
        }
        if noise {
            for (i, (w, g)) in want_xi.iter().zip(&got_xi).enumerate() {
                assert_eq!(w.to_bits(), g.to_bits(), "{isa:?}, d {d}: noise of sample {i}");
            }
        }
        let tail = want.iter().chain(if noise { &want_xi[..] } else { &[] }).filter(|x| x.abs() > 3.654_152_885_361_009).count();
        (want.len() + if noise { rows } else { 0 }, tail)
    }

    /// `(d, rows, start, noise)` of the comparisons with the scalar path: long rows (the batches'
    /// shape), short rows, rows of one vector or a few and their remainders, odd sizes and
    /// starts, partial lane groups, noise after a full vector and inside a partial one.
    const SHAPES: &[(usize, usize, u64, bool)] = &[
        (512, 12_000, 0, true),
        (256, 20_001, 77, false),
        (1000, 2_003, 1 << 40, true),
        (1, 3_000, 5, true),
        (7, 1_001, 13, false),
        (8, 999, u64::MAX - 2000, true),
        (15, 999, u64::MAX - 4000, true),
        (16, 500, 9, true),
        (33, 517, 3, true),
    ];

    #[test]
    fn every_isa_draws_the_scalar_numbers() {
        for isa in Isa::available() {
            let mut draws = 0;
            let mut tail = 0;
            for &(d, rows, start, noise) in SHAPES {
                let (n, t) = compare(isa, d, rows, start, noise, None);
                draws += n;
                tail += t;
            }
            assert!(draws > 10_000_000, "{draws} draws");
            // 2.6e-4 of the draws take the tail (and about 1% the wedge test before it).
            assert!(tail > 2_000, "{isa:?}: the tail path ran {tail} times in {draws} draws");
        }
    }

    #[test]
    fn samples_beyond_their_buffer_continue_their_stream() {
        // Without a margin every rejection in a sample's last block reads past its buffer.
        for isa in Isa::available() {
            for &(d, noise) in &[(64usize, true), (63, false), (5, true), (300, false)] {
                compare(isa, d, 3_000, 11, noise, Some(0));
            }
        }
    }

    #[test]
    fn every_isa_draws_the_scalar_numbers_of_version_2() {
        for isa in Isa::available() {
            let mut draws = 0;
            let mut far = 0;
            for &(d, rows, start, noise) in SHAPES {
                let key: [u8; 32] = std::array::from_fn(|k| (k * 41 + d) as u8);
                let mut want = vec![0.0; rows * d];
                let mut want_xi = vec![0.0; rows];
                icdf::gaussian_rows_scalar(&key, start, d, &mut want, noise.then_some(&mut want_xi[..]));
                let mut got = vec![0.0; rows * d];
                let mut got_xi = vec![0.0; rows];
                gaussian_rows_v2_with(isa, &key, start, d, &mut got, noise.then_some(&mut got_xi[..]));
                for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(w.to_bits(), g.to_bits(), "{isa:?}, d {d}: sample {}, coordinate {}", k / d, k % d);
                }
                for (i, (w, g)) in want_xi.iter().zip(&got_xi).enumerate() {
                    assert_eq!(w.to_bits(), g.to_bits(), "{isa:?}, d {d}: noise of sample {i}");
                }
                draws += want.len() + if noise { rows } else { 0 };
                // |z| > 2.9: the polynomial of the tail (ω ≥ 5), about 0.37% of the draws.
                far += want.iter().filter(|x| x.abs() > 2.9).count();
            }
            assert!(draws > 10_000_000, "{draws} draws");
            assert!(far > 20_000, "{isa:?}: the tail polynomial ran {far} times in {draws} draws");
        }
    }

    #[test]
    fn version_2_words_at_every_extreme_agree() {
        // Every sign, the smallest and largest tail probabilities and the switch between the two
        // polynomials (ω = 5 near t = 0.0017), through every vector kernel.
        let mut words: Vec<u32> = Vec::new();
        for m in [0u32, 1, 2, 3, 255, 1 << 20, 7_300_000, 7_301_000, 7_400_000, (1 << 31) - 1, (1 << 30) + 12345] {
            for near in 0..64u32 {
                words.push(m.saturating_add(near) & 0x7fff_ffff);
                words.push((m.saturating_add(near) & 0x7fff_ffff) | 0x8000_0000);
            }
        }
        let row: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let want: Vec<f64> = words.iter().map(|&w| f64::from(icdf::normal(w))).collect();
        for isa in Isa::available() {
            // Whole rows, and shorter ones that end in groups of four vectors, single vectors
            // and a partial vector.
            for len in [words.len(), 1300, 1100, 999, 77, 5] {
                let mut got = vec![0.0; len];
                normals32(isa, &row, &mut got);
                for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                    assert_eq!(w.to_bits(), g.to_bits(), "{isa:?}, {len} words: word {:#x}", words[k]);
                }
            }
        }
    }

    #[test]
    fn available_sets_start_with_the_detected_one() {
        let all = Isa::available();
        assert_eq!(all[0], Isa::detected());
        assert_eq!(*all.last().expect("scalar"), Isa::Scalar);
    }
}
