//! Image input: from a dataset on disk to batches of preprocessed pixels.
//!
//! - `hint_common::images` (re-exported here, libtorch-free so the coordinator plans with
//!   it): [`scan`] reads an ImageFolder tree or a CSV manifest into a [`Dataset`];
//!   [`LabelMap`] maps its label names to model outputs and [`LabelMap::check`]s them before
//!   any work starts.
//! - [`decode`]: [`load`] decodes one JPEG/PNG and applies the torchvision evaluation
//!   transform described by [`Preprocess`] ([`decode::load_into`]: into a slot of a batch's
//!   buffer); [`resample`] is PIL's antialiased bilinear resize, computed for the crop only;
//!   [`turbo`] decodes JPEGs with libjpeg-turbo (PIL's decoder) where the build has it,
//!   only the part the crop reads.
//! - [`pipeline`]: [`spawn_batch_decoder`] decodes in parallel, ahead of the model, through
//!   a bounded queue, yielding [`PixelBatch`]es (one `[n, 3, crop, crop]` buffer each) in
//!   input order; bad images become [`SkippedImage`]s, never silent drops.
//! - [`memory`]: a batch's [`Pixels`], in ordinary memory or, on a GPU, in a
//!   [`PinnedPool`]'s page-locked buffer that the upload reads by DMA.

pub mod decode;
#[cfg(test)]
mod mask_tests;
pub mod memory;
pub mod pipeline;
pub mod resample;
#[cfg(test)]
mod torchvision_tests;
pub mod turbo;

pub use decode::{load, Preprocess};
pub use hint_common::images::{
    scan, scan_with, Dataset, ImageRecord, LabelMap, MemberLocation, IMAGE_EXTENSIONS,
};
pub use memory::{PinnedPool, Pixels};
pub use pipeline::{spawn_batch_decoder, DecodeStream, LabelledImage, PixelBatch, SkippedImage};
