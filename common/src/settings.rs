//! The named settings of the engines — saliency method, its baseline, channel aggregation,
//! Shapley mode — and their parsing, shared by the job spec, the command line, the
//! coordinator and the worker. The engines that apply them (libtorch) live in the worker;
//! a name is parsed and checked here, once.

use std::fmt;
use std::str::FromStr;

use crate::architecture::{Architecture, Nonlinearity};

/// A setting that names nothing hint has, or a parameter out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingError {
    /// The architecture name is not one hint knows.
    #[error("unknown model architecture '{name}'; known: {}", valid.join(", "))]
    UnknownArchitecture {
        /// What the user asked for.
        name: String,
        /// The architectures hint has.
        valid: Vec<String>,
    },
    /// An invalid option value (an unknown method, aggregation or mode; a parameter out of
    /// range).
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl SettingError {
    /// The message without the generic "invalid configuration: " prefix, for callers that
    /// name the field themselves (the job spec).
    pub fn detail(&self) -> String {
        match self {
            SettingError::Invalid(message) => message.clone(),
            other => other.to_string(),
        }
    }
}

/// Where integrated gradients' path starts, in the model's (normalised) input space.
#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// All zeros after normalisation: the dataset's mean colour.
    Zero,
    /// A black image: pixel value 0 before normalisation, i.e. `−mean/std` per channel.
    Black,
}

/// A saliency method's name: what `[extract] method` and `--method` say; its parameters
/// sit beside it (`samples`, `noise`, `steps`, `baseline`) and [`Method::new`] joins them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum MethodName {
    /// Vanilla gradient.
    Gradient,
    /// Gradient × activation.
    #[serde(rename = "gradient_x_activation")]
    #[value(name = "gradient_x_activation")]
    GradientXActivation,
    /// Guided backpropagation.
    GuidedBackprop,
    /// SmoothGrad (`samples`, `noise`).
    #[serde(rename = "smoothgrad")]
    #[value(name = "smoothgrad")]
    SmoothGrad,
    /// Integrated gradients (`steps`, `baseline`).
    IntegratedGradients,
}

impl MethodName {
    /// Every method, in the order they are listed to users.
    pub const ALL: [MethodName; 5] = [
        MethodName::Gradient,
        MethodName::GradientXActivation,
        MethodName::GuidedBackprop,
        MethodName::SmoothGrad,
        MethodName::IntegratedGradients,
    ];

    /// The name used in specs, on the command line and in region files.
    pub fn name(self) -> &'static str {
        match self {
            MethodName::Gradient => "gradient",
            MethodName::GradientXActivation => "gradient_x_activation",
            MethodName::GuidedBackprop => "guided_backprop",
            MethodName::SmoothGrad => "smoothgrad",
            MethodName::IntegratedGradients => "integrated_gradients",
        }
    }

    /// Parses a name given by [`MethodName::name`].
    pub fn parse(name: &str) -> Result<Self, SettingError> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                SettingError::Invalid(format!(
                    "unknown saliency method '{name}'; known: {}",
                    Self::ALL.map(MethodName::name).join(", ")
                ))
            })
    }
}

impl fmt::Display for MethodName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A saliency method Λ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Method {
    /// Vanilla gradient `∂ y_c / ∂ z`.
    Gradient,
    /// Gradient × activation, `z ⊙ ∂ y_c / ∂ z`.
    GradientTimesActivation,
    /// Guided backpropagation: ReLUs above `l` pass back only positive gradients.
    GuidedBackprop,
    /// SmoothGrad: the mean gradient at `l` over `samples` copies of the input with
    /// Gaussian noise of σ = `noise` × (max(x) − min(x)) per image (the SmoothGrad
    /// paper's "noise level" `σ / (x_max − x_min)` is `noise`).
    SmoothGrad {
        /// Number of noisy copies `n`.
        samples: usize,
        /// Noise level: σ as a fraction of the image's value range.
        noise: f64,
    },
    /// Integrated gradients along the straight input path from a baseline: the mean of
    /// the gradients at `l` for inputs `x₀ + (k/steps)(x − x₀)`, `k = 1..=steps` (right
    /// Riemann sum), times `z(x) − z(x₀)`.
    IntegratedGradients {
        /// Number of points on the path.
        steps: usize,
        /// The path's start.
        baseline: Baseline,
    },
}

impl Method {
    /// Why this method finds no responsible region at `layer` of `arch`, if it cannot: a
    /// method that does not multiply by the activation (gradient, guided backpropagation,
    /// SmoothGrad) is the same at every position of a layer whose only consumer is global
    /// average pooling, so its normalised map is 0 everywhere. At a layer the head never
    /// reads (ViT's last encoder layer) every method is zero.
    pub fn spatially_constant_at(&self, arch: Architecture, layer: &str) -> Option<String> {
        if arch.unseen_by_head(layer) {
            return Some(format!(
                "{} at {arch} {layer} is zero everywhere: the head reads only the class token, \
                 and no attention after {layer} mixes its patch tokens into it, so no position \
                 would be a responsible region: use an earlier encoder layer",
                self.name()
            ));
        }
        let ignores_activation = matches!(
            self,
            Method::Gradient | Method::GuidedBackprop | Method::SmoothGrad { .. }
        );
        (ignores_activation && arch.pools_globally_after(layer)).then(|| {
            format!(
                "{} at {arch} {layer} is the same at every position ({layer} feeds only global \
                 average pooling), so no position would be a responsible region: use \
                 gradient_x_activation or integrated_gradients there, or an earlier layer",
                self.name()
            )
        })
    }

    /// Why `aggregation` of this method's saliency finds no responsible region at `layer`
    /// of `arch`, if it cannot: where the gradient sums to zero over channels
    /// ([`Architecture::channel_sum_vanishes_at`]), the `sum` of a method that does not
    /// multiply by the activation is zero up to rounding, and its normalised map noise.
    pub fn vanishes_under(
        &self,
        aggregation: Aggregation,
        arch: Architecture,
        layer: &str,
    ) -> Option<String> {
        let plain_gradient = matches!(
            self,
            Method::Gradient | Method::GuidedBackprop | Method::SmoothGrad { .. }
        );
        (plain_gradient && aggregation == Aggregation::Sum && arch.channel_sum_vanishes_at(layer))
            .then(|| {
                format!(
                    "{} with aggregation sum at {arch} {layer} is zero up to rounding: every \
                     path from {layer} to the logits goes through a LayerNorm over channels, \
                     so the gradient sums to zero over them and the regions would be noise: \
                     use aggregation norm, or gradient_x_activation or integrated_gradients",
                    self.name()
                )
            })
    }

    /// Why this method cannot run on `arch`, if it cannot. Guided backpropagation is
    /// defined for ReLU (a gradient passes back only where it and the ReLU's input are
    /// positive); SiLU and GELU are not ReLUs, they have no agreed guided rule, and
    /// treating them as ReLUs would be another method under the same name — so it is
    /// refused on EfficientNet and ConvNeXt.
    pub fn unsupported_on(&self, arch: Architecture) -> Option<String> {
        let nonlinearity = arch.nonlinearity();
        (matches!(self, Method::GuidedBackprop) && nonlinearity != Nonlinearity::Relu).then(|| {
            format!(
                "guided_backprop is defined for ReLU networks, and {arch} uses {}, which hint \
                 does not treat as a ReLU: use gradient, gradient_x_activation, smoothgrad or \
                 integrated_gradients",
                nonlinearity.name()
            )
        })
    }

    /// The method's name.
    pub fn kind(&self) -> MethodName {
        match self {
            Method::Gradient => MethodName::Gradient,
            Method::GradientTimesActivation => MethodName::GradientXActivation,
            Method::GuidedBackprop => MethodName::GuidedBackprop,
            Method::SmoothGrad { .. } => MethodName::SmoothGrad,
            Method::IntegratedGradients { .. } => MethodName::IntegratedGradients,
        }
    }

    /// The method's name as written on the command line and in region files.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The method `name` with the parameters of the parametrised ones, checked.
    pub fn new(
        name: MethodName,
        samples: usize,
        noise: f64,
        steps: usize,
        baseline: Baseline,
    ) -> Result<Self, SettingError> {
        let method = match name {
            MethodName::Gradient => Method::Gradient,
            MethodName::GradientXActivation => Method::GradientTimesActivation,
            MethodName::GuidedBackprop => Method::GuidedBackprop,
            MethodName::SmoothGrad => Method::SmoothGrad { samples, noise },
            MethodName::IntegratedGradients => Method::IntegratedGradients { steps, baseline },
        };
        method.validate()?;
        Ok(method)
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), SettingError> {
        match *self {
            Method::SmoothGrad { samples, noise } => {
                if samples == 0 {
                    return Err(SettingError::Invalid(
                        "smoothgrad needs at least 1 sample".into(),
                    ));
                }
                if !(noise.is_finite() && noise >= 0.0) {
                    return Err(SettingError::Invalid(format!(
                        "smoothgrad noise level must be a finite number ≥ 0, got {noise}"
                    )));
                }
            }
            Method::IntegratedGradients { steps: 0, .. } => {
                return Err(SettingError::Invalid(
                    "integrated gradients needs at least 1 step".into(),
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// The parameters worth recording next to the method's name (region-file metadata).
    pub fn parameters(&self) -> Vec<(&'static str, String)> {
        match *self {
            Method::SmoothGrad { samples, noise } => {
                vec![
                    ("samples", samples.to_string()),
                    ("noise", noise.to_string()),
                ]
            }
            Method::IntegratedGradients { steps, baseline } => vec![
                ("steps", steps.to_string()),
                ("baseline", baseline.to_string()),
            ],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Baseline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Baseline::Zero => "zero",
            Baseline::Black => "black",
        })
    }
}

impl Baseline {
    /// Parses `zero` or `black`.
    pub fn parse(name: &str) -> Result<Self, SettingError> {
        match name {
            "zero" => Ok(Baseline::Zero),
            "black" => Ok(Baseline::Black),
            _ => Err(SettingError::Invalid(format!(
                "unknown integrated-gradients baseline '{name}'; known: zero, black"
            ))),
        }
    }
}

/// Channel aggregation ζ: `[B, D, H, W]` saliency to a `[B, H, W]` map.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// L2 norm over channels (HINT's default).
    Norm,
    /// Sum over channels.
    Sum,
    /// L2 norm of the positive part.
    #[value(name = "filter_norm")]
    FilterNorm,
    /// Maximum over channels.
    Max,
    /// Sum of absolute values.
    #[value(name = "abs_sum")]
    AbsSum,
    /// Maximum absolute value.
    #[value(name = "abs_max")]
    AbsMax,
}

impl Aggregation {
    /// Every aggregation, in the order they are listed to users.
    pub const ALL: [Aggregation; 6] = [
        Aggregation::Norm,
        Aggregation::Sum,
        Aggregation::FilterNorm,
        Aggregation::Max,
        Aggregation::AbsSum,
        Aggregation::AbsMax,
    ];

    /// The name used on the command line and in region files.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Norm => "norm",
            Aggregation::Sum => "sum",
            Aggregation::FilterNorm => "filter_norm",
            Aggregation::Max => "max",
            Aggregation::AbsSum => "abs_sum",
            Aggregation::AbsMax => "abs_max",
        }
    }

    /// Parses a name given by [`Aggregation::name`].
    pub fn parse(name: &str) -> Result<Self, SettingError> {
        Self::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                SettingError::Invalid(format!(
                    "unknown aggregation '{name}'; known: {}",
                    Self::ALL.map(Aggregation::name).join(", ")
                ))
            })
    }
}

impl fmt::Display for Aggregation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How the value of a Shapley coalition is computed.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The classifier trained once on all neurons.
    #[default]
    Fixed,
    /// A classifier re-fitted on each coalition (the paper's `L*_e`).
    Retrain,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fixed" => Ok(Mode::Fixed),
            "retrain" => Ok(Mode::Retrain),
            _ => Err(format!("unknown mode '{s}' (expected fixed or retrain)")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Fixed => "fixed",
            Mode::Retrain => "retrain",
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    /// The command line's names are the names the spec, the region files and the errors use.
    #[test]
    fn command_line_names_are_the_settings_names() {
        for a in Aggregation::ALL {
            assert_eq!(a.to_possible_value().unwrap().get_name(), a.name());
        }
        assert_eq!(Aggregation::value_variants(), Aggregation::ALL);
        for b in Baseline::value_variants() {
            let name = b.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(
                (Baseline::parse(&name).unwrap(), name.clone()),
                (*b, b.to_string())
            );
        }
        for m in Mode::value_variants() {
            let name = m.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(
                (name.parse::<Mode>().unwrap(), name.clone()),
                (*m, m.to_string())
            );
        }
    }

    #[test]
    fn guided_backprop_is_refused_on_networks_without_relu() {
        for arch in Architecture::ALL {
            let refusal = Method::GuidedBackprop.unsupported_on(arch);
            let relu = arch.nonlinearity() == Nonlinearity::Relu;
            assert_eq!(refusal.is_none(), relu, "{arch}");
            assert_eq!(Method::Gradient.unsupported_on(arch), None, "{arch}");
        }
        let why = Method::GuidedBackprop
            .unsupported_on(Architecture::EfficientnetB0)
            .unwrap();
        assert!(why.contains("efficientnet_b0 uses SiLU"), "{why}");
        let why = Method::GuidedBackprop
            .unsupported_on(Architecture::ConvnextTiny)
            .unwrap();
        assert!(why.contains("convnext_tiny uses GELU"), "{why}");
    }
}
