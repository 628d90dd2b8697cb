//! Standard normals from a ChaCha8 stream, bit-identical to `rand_distr::StandardNormal`.
//!
//! `rand_distr` draws one `u64` per attempt of its 256-layer ziggurat (ZIGNOR variant, Doornik
//! 2005) through the generator's `next_u64`, which re-checks the generator's buffer on every
//! call. This sampler reads the same words in the same order from a 1 KiB block filled in bulk
//! ([`RngWords`] from a `rand_chacha` generator, [`Keystream`] from the `chacha20` crate's
//! SIMD keystream for a sample's own stream), runs the same fast path (one table lookup, one
//! multiplication, one comparison) with the block and its offset in registers, and the same slow
//! paths (the wedge test and the tail). Same words, same arithmetic, same tables: the same
//! numbers (tested against `rand_distr` on millions of draws, slow paths included). One thread,
//! d = 256 rows (`cargo bench -p giantstep --features internals -- data`): 195 million normals/s before, 285 after
//! (of which the keystream, with its AVX-512 backend, is about 45%).
//!
//! The batches' samples now come from the vector kernels of [`super::simd`] (the same numbers,
//! 1.6–1.8× faster); this module is their reference and scalar fallback, draws single streams
//! ([`super::fill_normal`]: weights, the theory's point sets) and continues a sample's stream
//! past the vector kernels' buffer ([`Keystream::at`], [`slow_path`]).

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::ChaCha8;
use rand::RngCore;
use rand_chacha::ChaCha8Rng;
use std::sync::LazyLock;

/// Start of the tail (`x_1` of the ziggurat).
const R: f64 = 3.654_152_885_361_009;
/// Area of each of the 256 layers.
const V: f64 = 0.004_928_673_233_99;

/// The ziggurat's abscissae `x_0 > x_1 = R > … > x_255 > x_256 = 0` and the density there.
pub(super) struct Tables {
    pub(super) x: [f64; 257],
    f: [f64; 257],
}

impl Tables {
    /// The fast path of one attempt: the candidate `x = u·x_i` of word `bits` (layer `i` from
    /// its low 8 bits, `u ∈ [-1, 1)` from its top 52) and whether it lies in the layer's
    /// rectangle, `|x| < x_{i+1}` (accepted as is).
    #[inline(always)]
    pub(super) fn attempt(&self, bits: u64) -> (f64, bool) {
        let i = (bits & 0xff) as usize;
        let x = symmetric_unit(bits) * self.x[i];
        (x, x.abs() < self.x[i + 1])
    }
}

#[inline]
fn pdf(x: f64) -> f64 {
    (-x * x / 2.0).exp()
}

/// The layer recursion `x_{i+1} = f⁻¹(f(x_i) + V/x_i)`, rounded like `rand_distr`'s published
/// tables (18 decimals), which it reproduces exactly (`x`) or to the last bit of one entry (`f`,
/// whose only use, the wedge test, would need a draw within one ulp of it to differ).
pub(super) static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let round = |t: f64| format!("{t:.18}").parse::<f64>().expect("a formatted f64 parses");
    let mut x = [0.0; 257];
    x[0] = V / pdf(R);
    x[1] = R;
    for i in 2..256 {
        x[i] = (-2.0 * (V / x[i - 1] + pdf(x[i - 1])).ln()).sqrt();
    }
    let mut f = [0.0; 257];
    for i in 0..257 {
        f[i] = round(pdf(x[i]));
        x[i] = round(x[i]);
    }
    Tables { x, f }
});

/// A source of the stream's `u64` words, in order, served from a block of `BLOCK` bytes.
pub(super) trait Words {
    /// The block and the byte offset of the next unread word in it (refilled if all read).
    fn block(&mut self) -> (&[u8; BLOCK], usize);
    /// Marks the words before byte offset `pos` of the block as read.
    fn set_pos(&mut self, pos: usize);
    /// The next word.
    #[inline(always)]
    fn word(&mut self) -> u64 {
        let (block, pos) = self.block();
        let w = word_at(block, pos);
        self.set_pos(pos + 8);
        w
    }
}

/// Bytes per bulk fill (16 ChaCha blocks).
const BLOCK: usize = 1024;

#[inline(always)]
fn word_at(block: &[u8; BLOCK], pos: usize) -> u64 {
    u64::from_le_bytes(block[pos..pos + 8].try_into().expect("8 bytes"))
}

/// The words of a `rand_chacha` generator, read in bulk; on drop the generator is left just
/// after the last word used, as drawing word by word would leave it.
pub(super) struct RngWords<'a> {
    rng: &'a mut ChaCha8Rng,
    start: u128,
    block: [u8; BLOCK],
    pos: usize,
    fills: u64,
}

impl<'a> RngWords<'a> {
    /// Reads `rng` from its current position.
    pub(super) fn new(rng: &'a mut ChaCha8Rng) -> Self {
        RngWords {
            start: rng.get_word_pos(),
            rng,
            block: [0; BLOCK],
            pos: BLOCK,
            fills: 0,
        }
    }
}

impl Words for RngWords<'_> {
    #[inline(always)]
    fn block(&mut self) -> (&[u8; BLOCK], usize) {
        if self.pos == BLOCK {
            self.rng.fill_bytes(&mut self.block);
            self.fills += 1;
            self.pos = 0;
        }
        (&self.block, self.pos)
    }

    #[inline(always)]
    fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }
}

impl Drop for RngWords<'_> {
    fn drop(&mut self) {
        // Words read: all filled blocks but the unread rest of the last (none before a fill).
        let read = self.fills * (BLOCK / 4) as u64 - ((BLOCK - self.pos) / 4) as u64;
        self.rng.set_word_pos(self.start + u128::from(read));
    }
}

/// The words of stream `stream` of a `rand_chacha::ChaCha8Rng` seeded with `key`, from its
/// start, computed by the `chacha20` crate's keystream (SIMD, AVX-512 where the build enables
/// it). `rand_chacha` puts a 64-bit block counter in state words 12–13 and the stream in 14–15;
/// the RFC 8439 layout has a 32-bit counter in word 12 and the nonce in 13–15, so the nonce
/// `(0, stream)` gives the same blocks for the first 2³² blocks (256 GiB) of every stream.
pub(super) struct Keystream {
    cipher: ChaCha8,
    block: [u8; BLOCK],
    pos: usize,
}

impl Keystream {
    /// Stream `stream` of `key`, from its first word.
    pub(super) fn new(key: &[u8; 32], stream: u64) -> Self {
        Keystream::at(key, stream, 0)
    }

    /// Stream `stream` of `key`, from the first word of its 64-byte block `block`.
    pub(super) fn at(key: &[u8; 32], stream: u64, block: u64) -> Self {
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&stream.to_le_bytes());
        let mut cipher = ChaCha8::new(key.into(), &nonce.into());
        if block > 0 {
            cipher.seek(block * 64);
        }
        Keystream {
            cipher,
            block: [0; BLOCK],
            pos: BLOCK,
        }
    }
}

impl Keystream {
    /// Fills `out` with the stream's next bytes (from its start for a new `Keystream`; not
    /// mixed with [`Words`] reads).
    pub(super) fn fill(&mut self, out: &mut [u8]) {
        out.fill(0);
        self.cipher.apply_keystream(out);
    }
}

impl Words for Keystream {
    #[inline(always)]
    fn block(&mut self) -> (&[u8; BLOCK], usize) {
        if self.pos == BLOCK {
            self.block = [0; BLOCK];
            self.cipher.apply_keystream(&mut self.block);
            self.pos = 0;
        }
        (&self.block, self.pos)
    }

    #[inline(always)]
    fn set_pos(&mut self, pos: usize) {
        self.pos = pos;
    }
}

/// Standard normals from a word source: `rand_distr::StandardNormal`'s algorithm, word for word.
pub(super) struct Normals<W> {
    words: W,
    tables: &'static Tables,
}

impl<W: Words> Normals<W> {
    /// A sampler over `words`.
    pub(super) fn new(words: W) -> Self {
        Normals { words, tables: &TABLES }
    }

    /// One standard normal.
    #[inline(always)]
    pub(super) fn next(&mut self) -> f64 {
        let bits = self.words.word();
        match self.tables.attempt(bits) {
            (x, true) => x,
            (_, false) => self.slow(bits),
        }
    }

    /// The rest of the ziggurat after the attempt `bits` fell outside its layer's rectangle.
    #[cold]
    fn slow(&mut self, bits: u64) -> f64 {
        slow_path(self.tables, bits, || self.words.word())
    }

    /// Fills `out` with standard normals: `next` in a loop, with the block and its offset in
    /// registers between rejections (about one word in 80).
    #[inline]
    pub(super) fn fill(&mut self, out: &mut [f64]) {
        let t = self.tables;
        let mut k = 0;
        while k < out.len() {
            let (block, mut pos) = self.words.block();
            let mut rejected = None;
            while pos < BLOCK && k < out.len() {
                let bits = word_at(block, pos);
                pos += 8;
                match t.attempt(bits) {
                    (x, true) => {
                        out[k] = x;
                        k += 1;
                    }
                    (_, false) => {
                        rejected = Some(bits);
                        break;
                    }
                }
            }
            self.words.set_pos(pos);
            if let Some(bits) = rejected {
                out[k] = self.slow(bits);
                k += 1;
            }
        }
    }
}

/// The rest of the ziggurat after the attempt `bits` fell outside its layer's rectangle, reading
/// further words from `word`: the wedge test, the next attempts, and the tail beyond `R`.
#[cold]
pub(super) fn slow_path(t: &Tables, mut bits: u64, mut word: impl FnMut() -> u64) -> f64 {
    loop {
        let i = (bits & 0xff) as usize;
        let u = symmetric_unit(bits);
        let x = u * t.x[i];
        if i == 0 {
            // The tail beyond R (Marsaglia's method).
            let (mut tx, mut ty) = (1.0f64, 0.0f64);
            while -2.0 * ty < tx * tx {
                let a = open_unit(word());
                let b = open_unit(word());
                tx = a.ln() / R;
                ty = b.ln();
            }
            return if u < 0.0 { tx - R } else { R - tx };
        }
        let uniform = (word() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
        if t.f[i + 1] + (t.f[i] - t.f[i + 1]) * uniform < pdf(x) {
            return x;
        }
        bits = word();
        if let (x, true) = t.attempt(bits) {
            return x;
        }
    }
}

/// The top 52 bits as a float in `[-1, 1)`.
#[inline(always)]
fn symmetric_unit(bits: u64) -> f64 {
    f64::from_bits((bits >> 12) | (1024u64 << 52)) - 3.0
}

/// The top 52 bits as a float in `(0, 1)`.
#[inline(always)]
fn open_unit(bits: u64) -> f64 {
    f64::from_bits((bits >> 12) | (1023u64 << 52)) - (1.0 - f64::EPSILON / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    use rand_distr::StandardNormal;

    fn reference(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.sample(StandardNormal)).collect()
    }

    #[test]
    fn identical_to_rand_distr_slow_paths_included() {
        // 4·10^6 draws: about 1% take the wedge test and 2.6·10^-4 the tail.
        let mut tail = 0;
        let mut wedge = 0;
        for (seed, stream) in [(1u8, 0u64), (2, 5), (3, 1 << 40)] {
            let mut a = ChaCha8Rng::from_seed([seed; 32]);
            a.set_stream(stream);
            let mut b = a.clone();
            let want = reference(&mut a, 1_333_333);
            let mut got = vec![0.0; want.len()];
            Normals::new(RngWords::new(&mut b)).fill(&mut got);
            for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                assert_eq!(w.to_bits(), g.to_bits(), "draw {k}: {w} vs {g}");
            }
            tail += want.iter().filter(|x| x.abs() > R).count();
            wedge += want.len();
            // The generator is left where word-by-word drawing leaves it.
            assert_eq!(a.get_word_pos(), b.get_word_pos());
            assert_eq!(a.next_u64(), b.next_u64());
        }
        assert!(tail > 500, "the tail path ran {tail} times of {wedge}");
    }

    #[test]
    fn keystream_words_are_the_generator_words() {
        for stream in [0u64, 1, 77, u64::MAX] {
            let key = [5u8; 32];
            let mut rng = ChaCha8Rng::from_seed(key);
            rng.set_stream(stream);
            let mut ks = Keystream::new(&key, stream);
            for j in 0..3 * BLOCK / 8 + 5 {
                assert_eq!(rng.next_u64(), ks.word(), "stream {stream}, word {j}");
            }
        }
    }

    #[test]
    fn short_fills_keep_the_stream_position() {
        let mut a = ChaCha8Rng::from_seed([9; 32]);
        let mut b = a.clone();
        for len in [0, 1, 3, 63, 64, 65, 200] {
            let want = reference(&mut a, len);
            let mut got = vec![0.0; len];
            Normals::new(RngWords::new(&mut b)).fill(&mut got);
            assert_eq!(want, got, "length {len}");
        }
        assert_eq!(a.get_word_pos(), b.get_word_pos());
    }
}
