//! Seeded Gaussian data, one random stream per sample.
//!
//! The random numbers of sample `i` depend only on `(seed, purpose, step, i)`: a ChaCha8 key is
//! derived from `(seed, purpose, step)` and sample `i` reads its own ChaCha stream `i`. Results
//! are therefore independent of the chunk size, the thread count and the sharding of a sweep.

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

mod normal;
mod icdf;
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

/// How a sample's random words become its Gaussian inputs: the stream version, part of every
/// run's configuration (`stream`) and of its records (docs/architecture.md, "Stream versions").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stream {
    /// Version 1: `rand_distr::StandardNormal` (256-layer ziggurat, 64-bit words, f64) drawn in
    /// order from the sample's `rand_chacha::ChaCha8Rng` stream; the version of every record
    /// written before version 2 existed, and of a new `StreamKey`.
    #[default]
    V1,
    /// Version 2: one 32-bit word of the same stream per coordinate through the inverse normal
    /// CDF in single precision, with no rejection, made for vector units (about twice the
    /// normals per second of version 1 here); the default of a configuration.
    V2,
}

impl Stream {
    /// The newest version: what a configuration that does not name one runs.
    pub const LATEST: Stream = Stream::V2;

    /// The version's number (1, 2).
    pub fn number(self) -> u32 {
        match self {
            Stream::V1 => 1,
            Stream::V2 => 2,
        }
    }

    /// The version of number `n`, if there is one.
    pub fn from_number(n: u32) -> Option<Stream> {
        match n {
            1 => Some(Stream::V1),
            2 => Some(Stream::V2),
            _ => None,
        }
    }
}

/// The key of the family of streams `(seed, purpose, step)`, and the [`Stream`] version its
/// samples' inputs are drawn with ([`gaussian_rows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamKey {
    bytes: [u8; 32],
    stream: Stream,
}

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
        StreamKey {
            bytes: key,
            stream: Stream::V1,
        }
    }

    /// The same key, its samples drawn with stream version `stream` (a new key is version 1).
    pub fn with_stream(self, stream: Stream) -> Self {
        StreamKey { stream, ..self }
    }

    /// The stream version of the samples' inputs.
    pub fn stream(&self) -> Stream {
        self.stream
    }

    /// The key of one of the theory's Monte-Carlo point sets: `(seed, TheoryMonteCarlo, stream)`.
    pub fn theory(seed: u64, stream: TheoryStream) -> Self {
        StreamKey::new(seed, Purpose::TheoryMonteCarlo, stream as u64)
    }

    /// The random generator of sample (or row) `index`.
    pub fn rng(&self, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.bytes);
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
/// noise `ξ`), drawn after that sample's `d` coordinates; with the key's [`Stream`] version.
pub fn gaussian_rows(key: &StreamKey, start: u64, d: usize, z: &mut [f64], noise: Option<&mut [f64]>) {
    gaussian_rows_isa(Isa::detected(), key, start, d, z, noise);
}

/// [`gaussian_rows`] with the kernels of one instruction set (one of [`Isa::available`]): the same
/// numbers on every one, at different speeds (for tests and benchmarks).
///
/// # Panics
/// If `isa` is not available on this processor.
pub fn gaussian_rows_isa(isa: Isa, key: &StreamKey, start: u64, d: usize, z: &mut [f64], noise: Option<&mut [f64]>) {
    assert!(Isa::available().contains(&isa), "{isa:?} is not available on this processor");
    match key.stream() {
        Stream::V1 => simd::gaussian_rows_with(isa, &key.bytes, start, d, z, noise),
        Stream::V2 => simd::gaussian_rows_v2_with(isa, &key.bytes, start, d, z, noise),
    }
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

    /// Both stream versions against the standard normal on 4·10^6 draws (with the label
    /// noise): the Kolmogorov–Smirnov distance to Φ (`libm::erfc`) below its 1% critical value
    /// 1.63/√n, mean, variance and fourth moment within 4 standard errors, the frequency beyond
    /// 3 within 4 standard errors of 2.70·10⁻³, and no correlation between a coordinate and the
    /// next, the same coordinate of the next sample, or the noise.
    #[test]
    fn both_stream_versions_are_standard_normal() {
        for stream in [Stream::V1, Stream::V2] {
            let key = StreamKey::new(21, Purpose::Train, 4).with_stream(stream);
            let (d, m) = (63, 62_500);
            let mut z = vec![0.0; m * d];
            let mut xi = vec![0.0; m];
            gaussian_rows(&key, 1 << 33, d, &mut z, Some(&mut xi));
            let mut all: Vec<f64> = z.iter().chain(&xi).copied().collect();
            let n = all.len() as f64;
            let moment = |k: i32| all.iter().map(|x| x.powi(k)).sum::<f64>() / n;
            let (mean, var, fourth) = (moment(1), moment(2), moment(4));
            assert!(mean.abs() < 4.0 / n.sqrt(), "{stream:?}: mean {mean}");
            assert!((var - 1.0).abs() < 4.0 * 2f64.sqrt() / n.sqrt(), "{stream:?}: variance {var}");
            assert!((fourth - 3.0).abs() < 4.0 * 96f64.sqrt() / n.sqrt(), "{stream:?}: fourth moment {fourth}");
            let beyond = all.iter().filter(|x| x.abs() > 3.0).count() as f64 / n;
            let p3 = libm::erfc(3.0 / std::f64::consts::SQRT_2);
            assert!((beyond - p3).abs() < 4.0 * (p3 / n).sqrt(), "{stream:?}: P(|z| > 3) = {beyond}");
            let corr = |pairs: &mut dyn Iterator<Item = (f64, f64)>| {
                let (s, c) = pairs.fold((0.0, 0usize), |(s, c), (a, b)| (s + a * b, c + 1));
                (s / c as f64, c as f64)
            };
            for (what, (r, c)) in [
                ("next coordinate", corr(&mut (0..m).flat_map(|i| (0..d - 1).map(move |k| (i, k))).map(|(i, k)| (z[i * d + k], z[i * d + k + 1])))),
                ("next sample", corr(&mut (0..m - 1).map(|i| (z[i * d + 5], z[(i + 1) * d + 5])))),
                ("noise", corr(&mut (0..m).map(|i| (z[i * d + d - 1], xi[i])))),
            ] {
                assert!(r.abs() < 4.0 / c.sqrt(), "{stream:?}: correlation with the {what} {r}");
            }
            all.sort_by(f64::total_cmp);
            let ks = all
                .iter()
                .enumerate()
                .map(|(i, &x)| {
                    let cdf = 0.5 * libm::erfc(-x / std::f64::consts::SQRT_2);
                    (cdf - i as f64 / n).abs().max((cdf - (i + 1) as f64 / n).abs())
                })
                .fold(0.0, f64::max);
            assert!(ks < 1.63 / n.sqrt(), "{stream:?}: Kolmogorov–Smirnov distance {ks}");
        }
    }

    #[test]
    fn stream_versions_differ_and_keep_their_layout() {
        // Version 2's sample i is its own stream: the same numbers from any start.
        let key = StreamKey::new(3, Purpose::Train, 2).with_stream(Stream::V2);
        let d = 37;
        let mut all = vec![0.0; 40 * d];
        let mut xi = vec![0.0; 40];
        gaussian_rows(&key, 0, d, &mut all, Some(&mut xi));
        let mut part = vec![0.0; 17 * d];
        let mut part_xi = vec![0.0; 17];
        gaussian_rows(&key, 20, d, &mut part, Some(&mut part_xi));
        assert_eq!(&all[20 * d..37 * d], &part[..]);
        assert_eq!(&xi[20..37], &part_xi[..]);
        // Every value is an f32: single-precision runs see the same inputs.
        assert!(all.iter().all(|&x| f64::from(x as f32) == x));
        // Version 1 draws other numbers from the same streams.
        let mut v1 = vec![0.0; 40 * d];
        gaussian_rows(&key.with_stream(Stream::V1), 0, d, &mut v1, None);
        assert!(all.iter().zip(&v1).all(|(a, b)| a != b));
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
