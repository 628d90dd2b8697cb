//! The two-layer student `f(z; W, a) = (1/√p) Σ_i a_i σ(<w_i, z>)` and its initialization
//! (docs/model.md §2).

use crate::activation::Activation;
use crate::data::{fill_normal, Purpose, StreamKey};
use crate::linalg::norm;
use crate::model::{FirstLayerInit, NetworkConfig, SecondLayerInit};
use rand::Rng;

/// Student network: first layer `W` (row-major `p×d`), second layer `a` (length `p`), activation.
#[derive(Debug, Clone, PartialEq)]
pub struct Network {
    /// Input dimension.
    pub d: usize,
    /// Width.
    pub p: usize,
    /// First layer, row-major `p×d`.
    pub w: Vec<f64>,
    /// Second layer.
    pub a: Vec<f64>,
    /// Activation.
    pub activation: Activation,
    /// An activation given at run time, used instead of `activation` by the passes.
    pub custom_activation: Option<crate::activation::CustomActivation>,
}

impl Network {
    /// Initializes a network from the streams `(seed, FirstLayer, 0)` (row `i` reads stream `i`)
    /// and `(seed, SecondLayer, 0)`.
    ///
    /// With `symmetric`, `p` must be even: neurons `i` and `i + p/2` share their row and have
    /// opposite `a`, so that `f ≡ 0`.
    ///
    /// # Panics
    /// If `symmetric` and `p` is odd (validated earlier by [`crate::Config::resolve`]).
    pub fn init(config: &NetworkConfig, seed: u64) -> Network {
        let NetworkConfig {
            d,
            p,
            activation,
            first_layer: first,
            second_layer: second,
            symmetric,
        } = *config;
        assert!(!symmetric || p.is_multiple_of(2), "symmetric init needs an even width");
        let drawn = if symmetric { p / 2 } else { p };
        let mut w = vec![0.0; p * d];
        let wkey = StreamKey::new(seed, Purpose::FirstLayer, 0);
        for i in 0..drawn {
            let row = &mut w[i * d..(i + 1) * d];
            fill_normal(&mut wkey.rng(i as u64), row);
            let scale = match first {
                FirstLayerInit::Gaussian => 1.0 / (d as f64).sqrt(),
                FirstLayerInit::Sphere => 1.0 / norm(row),
            };
            row.iter_mut().for_each(|x| *x *= scale);
        }
        let mut a = vec![0.0; p];
        let mut rng = StreamKey::new(seed, Purpose::SecondLayer, 0).rng(0);
        let inv_sqrt_p = 1.0 / (p as f64).sqrt();
        for ai in a.iter_mut().take(drawn) {
            *ai = inv_sqrt_p
                * match second {
                    SecondLayerInit::Hypercube => {
                        if rng.random::<bool>() {
                            1.0
                        } else {
                            -1.0
                        }
                    }
                    SecondLayerInit::Gaussian => rng.sample::<f64, _>(rand_distr::StandardNormal),
                    SecondLayerInit::Uniform => rng.random_range(-1.0..=1.0),
                };
        }
        if symmetric {
            let (top, bottom) = w.split_at_mut(drawn * d);
            bottom.copy_from_slice(top);
            for i in 0..drawn {
                a[i + drawn] = -a[i];
            }
        }
        Network {
            d,
            p,
            w,
            a,
            activation,
            custom_activation: None,
        }
    }

    /// The output `f(z)` for one input (the naive reference of the tests).
    #[cfg(any(test, feature = "internals"))]
    pub fn output(&self, z: &[f64]) -> f64 {
        let d = self.d;
        let mut s = 0.0;
        for i in 0..self.p {
            let h = crate::linalg::dot(&self.w[i * d..(i + 1) * d], z);
            s += self.a[i] * self.activation.f(h);
        }
        s / (self.p as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act() -> Activation {
        "relu".parse().unwrap()
    }

    #[test]
    fn symmetric_init_has_zero_output() {
        let net = Network::init(
            &NetworkConfig {
                d: 10,
                p: 8,
                activation: act(),
                first_layer: FirstLayerInit::Gaussian,
                second_layer: SecondLayerInit::Gaussian,
                symmetric: true,
            },
            3,
        );
        let z: Vec<f64> = (0..10).map(|i| (i as f64).cos()).collect();
        assert!(net.output(&z).abs() < 1e-15);
        assert_eq!(&net.w[..40], &net.w[40..]);
        for i in 0..4 {
            assert_eq!(net.a[i], -net.a[i + 4]);
        }
    }

    #[test]
    fn scales_of_inits() {
        let (d, p) = (400, 200);
        let g = Network::init(
            &NetworkConfig {
                d,
                p,
                activation: act(),
                first_layer: FirstLayerInit::Gaussian,
                second_layer: SecondLayerInit::Hypercube,
                symmetric: false,
            },
            1,
        );
        let mean_sq: f64 = (0..p).map(|i| norm(&g.w[i * d..(i + 1) * d]).powi(2)).sum::<f64>() / p as f64;
        assert!((mean_sq - 1.0).abs() < 0.02, "{mean_sq}");
        assert!(g.a.iter().all(|a| (a.abs() - 1.0 / (p as f64).sqrt()).abs() < 1e-15));
        let s = Network::init(
            &NetworkConfig {
                d,
                p,
                activation: act(),
                first_layer: FirstLayerInit::Sphere,
                second_layer: SecondLayerInit::Uniform,
                symmetric: false,
            },
            1,
        );
        assert!((0..p).all(|i| (norm(&s.w[i * d..(i + 1) * d]) - 1.0).abs() < 1e-13));
        assert!(s.a.iter().all(|a| a.abs() <= 1.0 / (p as f64).sqrt()));
        let n = Network::init(
            &NetworkConfig {
                d,
                p,
                activation: act(),
                first_layer: FirstLayerInit::Gaussian,
                second_layer: SecondLayerInit::Gaussian,
                symmetric: false,
            },
            1,
        );
        let var: f64 = n.a.iter().map(|a| a * a).sum::<f64>();
        assert!((var - 1.0).abs() < 0.3, "{var}");
    }
}
