//! The model's vocabulary (docs/model.md §1–§3): the network's architecture and initialization,
//! the loss, row normalization, label preprocessing, the readout's batch and add-back, and the
//! precision of the hot loops. The configuration ([`crate::config`]) is made of these; the
//! network, the engine and the theory use them without depending on the configuration.

use crate::activation::Activation;
use serde::{Deserialize, Serialize};

/// Floating-point precision of the hot loops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Double precision (default).
    #[default]
    F64,
    /// Single precision in the GEMMs; sums across chunks, the Gram matrix, the gradient total and
    /// the errors stay in `f64`.
    F32,
}

/// First-layer initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FirstLayerInit {
    /// Rows `N(0, I_d/d)`.
    #[default]
    Gaussian,
    /// Rows uniform on the unit sphere.
    Sphere,
}

/// Second-layer initialization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SecondLayerInit {
    /// `±1/√p` with random signs.
    #[default]
    Hypercube,
    /// `N(0, 1/p)`.
    Gaussian,
    /// `√p·a_i ~ U[−1, 1]`.
    Uniform,
}

/// The error used in the gradient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Loss {
    /// `e = ỹ − f(z)` (the gradient of the square loss).
    #[default]
    Residual,
    /// `e = ỹ` (correlation loss; ignores the network output).
    Correlation,
}

/// Row normalization after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Normalize {
    /// No normalization.
    #[default]
    None,
    /// Rows rescaled to unit norm after the step.
    Project,
    /// The gradient row is projected orthogonally to `w_i` before the step, then rows rescaled.
    Spherical,
}

/// Label preprocessing (docs/model.md §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Preprocess {
    /// Raw labels.
    #[default]
    None,
    /// Subtract the batch mean.
    Mean,
    /// Subtract the batch mean and the empirical linear part `Z·(Zᵀy/n)`.
    Linear,
}

/// Which batch the readout is fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReadoutBatch {
    /// A fresh batch.
    #[default]
    Fresh,
    /// The last training batch.
    Last,
}

/// How the part removed by preprocessing is added back to predictions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddBack {
    /// Re-estimated on the readout batch.
    #[default]
    Empirical,
    /// The exact `μ0 + <W*ᵀμ1, z>` from the theory module.
    Oracle,
    /// The authors' single-step notebook: the mean and linear term are re-estimated on the test
    /// set itself (from its labels) and added back to the test predictions. This uses test labels
    /// at prediction time, so its test error is optimistic; it exists to reproduce that notebook.
    Test,
}

use crate::names::named;

named!(Precision { F64 => "f64", F32 => "f32" });
named!(FirstLayerInit { Gaussian => "gaussian", Sphere => "sphere" });
named!(SecondLayerInit { Hypercube => "hypercube", Gaussian => "gaussian", Uniform => "uniform" });
named!(Loss { Residual => "residual", Correlation => "correlation" });
named!(Normalize { None => "none", Project => "project", Spherical => "spherical" });
named!(Preprocess { None => "none", Mean => "mean", Linear => "linear" });
named!(ReadoutBatch { Fresh => "fresh", Last => "last" });
named!(AddBack { Empirical => "empirical", Oracle => "oracle", Test => "test" });

/// The network's architecture and initialization (`[network]` of a configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Input dimension `d`.
    pub d: usize,
    /// Width `p`.
    pub p: usize,
    /// Activation `σ`.
    pub activation: Activation,
    /// First-layer init.
    pub first_layer: FirstLayerInit,
    /// Second-layer init.
    pub second_layer: SecondLayerInit,
    /// Symmetric (paired) initialization.
    pub symmetric: bool,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            d: 256,
            p: 512,
            activation: Activation::new(crate::activation::ActivationKind::Relu),
            first_layer: FirstLayerInit::Gaussian,
            second_layer: SecondLayerInit::Hypercube,
            symmetric: true,
        }
    }
}
