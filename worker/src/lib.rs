//! hint's worker library: everything that touches images and the model.
//!
//! - [`models`]: backbones with torchvision layer names ([`models::Backbone`]), weights from
//!   safetensors `state_dict`s.
//! - [`images`]: ImageFolder trees and CSV manifests, the label map, parallel decoding and
//!   preprocessing through a bounded queue; bad images are skipped and recorded.
//! - [`saliency`]: hidden-layer saliency (gradient, gradient × activation, guided
//!   backpropagation, SmoothGrad, integrated gradients), batched, stopped at layer `l`.
//! - [`responsible`]: channel aggregation, normalisation and thresholding into responsible
//!   regions.
//! - [`extract`]: the extraction stage end to end: images → region Parquet files.
//! - [`train`]: training the tiny CNN (`hint train-model`).
//! - [`classify`]: concept classifiers on region samples (batched Newton), their files.
//! - [`wsol`]: weakly supervised object localisation with concept classifiers on selected neurons.
//! - [`shapley`]: the Shapley engine — Monte-Carlo φ of every neuron for a concept.
//! - [`ablate`]: causal ablation of the neurons each selection names, in the real network.
#![deny(missing_docs)]

pub mod ablate;
pub mod allocator;
pub mod attack;
pub mod busy;
pub mod classify;
pub mod device;
pub mod error;
pub mod explain;
pub mod extract;
pub mod guided;
pub mod images;
pub mod models;
pub mod responsible;
pub mod runtime;
pub mod saliency;
pub mod sanity;
pub mod shapley;
pub mod tasks;
pub mod train;
pub mod wsol;

pub use error::{Error, Result};
