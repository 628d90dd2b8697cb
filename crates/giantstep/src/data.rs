//! Seeded Gaussian data, one random stream per sample.
//!
//! The random numbers of sample `i` depend only on `(seed, purpose, step, i)`: a ChaCha8 key is
//! derived from `(seed, purpose, step)` and sample `i` reads its own ChaCha stream `i`. Results
//! are therefore independent of the chunk size, the thread count and the sharding of a sweep.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod normal;
mod simd;
use normal::{Normals, RngWords};
pub use simd::Isa;

/// What a random stream is used for; part of the key of every stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Purpose {
    /// The teacher matrix `W*`.
    Teacher = 1,
    /// The first layer at initialization.
    FirstLayer = 2,
    /// The second layer at initialization.
    SecondLayer = 3,
    /// Training batches (the step index is the batch index).
    Train = 4,
    /// The readout batch.
    Readout = 5,
    /// The test set.
    Test = 6,
    /// The gradient noise of the theory's state evolution (`theory::dynamics`; the step index is
    /// the giant step).
    Theory = 7,
    /// The theory's fixed Monte-Carlo point sets (the step index is a [`TheoryStream`]).
    TheoryMonteCarlo = 8,
}

/// Which of the theory's Monte-Carlo point sets a stream of [`Purpose::TheoryMonteCarlo`] draws;
/// its value is the stream's step index, so that no two share a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum TheoryStream {
    /// Hermite coefficients by Monte Carlo (`r > 4`).
    Hermite = 0,
    /// The representative neuron's Gaussian points where a tensor rule is too large.
    Neuron = 1,
    /// The quadratic one-step closed form (`n = βd²`).
    QuadraticOneStep = 2,
    /// The range of a Hermite part's gradient (the learnable subspace at finite batch).
    SubspaceRange = 3,
    /// The one-step closed form at finite batch, any `κ`.
    OneStepAtKappa = 4,
    /// The state evolution's Gaussian points where a tensor rule is too large.
    DynamicsGrid = 5,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The key of the family of streams `(seed, purpose, step)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKey([u8; 32]);

impl StreamKey {
    /// Derives the key from `(seed, purpose, step)`.
    pub fn new(seed: u64, purpose: Purpose, step: u64) -> Self {
        let mut h = splitmix(seed ^ 0x6769_616E_7473_7465); // "giantste"
        h = splitmix(h ^ purpose as u64);
        h = splitmix(h ^ step);
        let mut key = [0u8; 32];
        let mut s = h;
        for part in key.chunks_exact_mut(8) {
            s = splitmix(s);
            part.copy_from_slice(&s.to_le_bytes());
        }
        StreamKey(key)
    }

    /// The key of one of the theory's Monte-Carlo point sets: `(seed, TheoryMonteCarlo, stream)`.
    pub fn theory(seed: u64, stream: TheoryStream) -> Self {
        StreamKey::new(seed, Purpose::TheoryMonteCarlo, stream as u64)
    }

    /// The random generator of sample (or row) `index`.
    pub fn rng(&self, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.0);
        rng.set_stream(index);
        rng
    }
}

/// Fills `out` with independent standard normals from `rng`: the numbers, and the position
/// `rng` is left at, of `rand_distr::StandardNormal` drawn one by one, computed faster.
#[inline]
pub fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f64]) {
    Normals::new(RngWords::new(rng)).fill(out);
}

/// Generates samples `start..start+m` of the stream family `key`: `z` (row-major `m×d`, each
/// row `N(0, I_d)`) and, when `noise` is given, one extra standard normal per sample (the label
/// noise `ξ`), drawn after that sample's `d` coordinates.
pub fn gaussian_rows(key: &StreamKey, start: u64, d: usize, z: &mut [f64], noise: Option<&mut [f64]>) {
    simd::gaussian_rows_with(Isa::detected(), &key.0, start, d, z, noise);
}

/// [`gaussian_rows`] with the kernels of one instruction set (one of [`Isa::available`]): the same
/// numbers on every one, at different speeds (for tests and benchmarks).
///
/// # Panics
/// If `isa` is not available on this processor.
pub fn gaussian_rows_isa(isa: Isa, key: &StreamKey, start: u64, d: usize, z: &mut [f64], noise: Option<&mut [f64]>) {
    assert!(Isa::available().contains(&isa), "{isa:?} is not available on this processor");
    simd::gaussian_rows_with(isa, &key.0, start, d, z, noise);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_depends_only_on_its_index() {
        let key = StreamKey::new(3, Purpose::Train, 2);
        let d = 5;
        let mut all = vec![0.0; 10 * d];
        gaussian_rows(&key, 0, d, &mut all, None);
        let mut part = vec![0.0; 3 * d];
        gaussian_rows(&key, 4, d, &mut part, None);
        assert_eq!(&all[4 * d..7 * d], &part[..]);
    }

    #[test]
    fn rows_are_rand_distr_draws_of_their_stream() {
        use rand::Rng;
        // The numbers every stored record was computed from: sample i is `d` draws of
        // `rand_distr::StandardNormal` from stream i, then its noise.
        let key = StreamKey::new(11, Purpose::Readout, 3);
        for d in [1, 5, 127, 128, 129, 512] {
            let m = 9;
            let mut z = vec![0.0; m * d];
            let mut xi = vec![0.0; m];
            gaussian_rows(&key, 1000, d, &mut z, Some(&mut xi));
            for i in 0..m {
                let mut rng = key.rng(1000 + i as u64);
                for k in 0..d {
                    let want: f64 = rng.sample(rand_distr::StandardNormal);
                    assert_eq!(
                        want.to_bits(),
                        z[i * d + k].to_bits(),
                        "d {d}, sample {i}, coordinate {k}"
                    );
                }
                let want: f64 = rng.sample(rand_distr::StandardNormal);
                assert_eq!(want.to_bits(), xi[i].to_bits(), "d {d}, noise of sample {i}");
            }
        }
    }

    #[test]
    fn purposes_steps_and_seeds_differ() {
        let a = StreamKey::new(0, Purpose::Train, 1);
        assert_ne!(a, StreamKey::new(0, Purpose::Train, 2));
        assert_ne!(a, StreamKey::new(0, Purpose::Readout, 1));
        assert_ne!(a, StreamKey::new(1, Purpose::Train, 1));
    }

    #[test]
    fn moments_are_standard() {
        let key = StreamKey::new(7, Purpose::Test, 0);
        let d = 4;
        let n = 50_000;
        let mut z = vec![0.0; n * d];
        gaussian_rows(&key, 0, d, &mut z, None);
        let mean = z.iter().sum::<f64>() / z.len() as f64;
        let var = z.iter().map(|x| x * x).sum::<f64>() / z.len() as f64;
        // Standard errors: 1/sqrt(2e5) ≈ 0.0022 for the mean, sqrt(2/2e5) ≈ 0.0032 for the variance.
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.015, "var {var}");
        // Neighbouring coordinates and neighbouring samples are uncorrelated.
        let c: f64 = (0..n).map(|i| z[i * d] * z[i * d + 1]).sum::<f64>() / n as f64;
        let c2: f64 = (0..n - 1).map(|i| z[i * d] * z[(i + 1) * d]).sum::<f64>() / n as f64;
        assert!(c.abs() < 0.02 && c2.abs() < 0.02, "{c} {c2}");
    }
}
