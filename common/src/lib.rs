//! Types shared by hint's coordinator and workers.
//!
//! - [`proto`]: the generated messages of `proto/hint.proto` (package `hint.v1`).
//! - [`regions`]: the region dataset's Arrow schema, its Parquet writer and (streaming)
//!   reader, and [`regions::sample`]: bounded, seeded samples per concept.
//! - [`hierarchy`]: concept hierarchies ([`hierarchy::Hierarchy`]) from WordNet 3.0 or a
//!   custom YAML/JSON file, selection rules, `concepts.json`.
//! - [`annotations`]: bounding boxes from PASCAL VOC / ImageNet XML and CUB-200-2011.
//! - [`synth`]: the synthetic world, a dataset whose concept hierarchy is known.
//! - [`shapley`]: Shapley games, permutations, exact partial sums, stopping rules, Φ files.
//! - [`job`]: the job spec, ids of jobs, tasks and workers, proto conversions.
//! - [`seed`]: deterministic seeds derived from a job seed and an identity.
//! - [`stats`]: paired differences with bootstrap intervals and their verdicts.
//! - [`wsol`]: `wsol.json`, localisation with classifiers re-fitted on selected neurons.
//! - [`ablation`]: `ablation.json`, the causal ablation of selected neurons.
//! - [`architecture`], [`settings`]: the architectures by name (layer names without building
//!   a model) and the engines' named settings (saliency method, aggregation, Shapley mode).
//! - [`images`]: datasets (ImageFolder, CSV manifests) and label maps.
//! - [`classify`]: `metrics.json`, the concept classifiers' metrics.
#![deny(missing_docs)]

pub mod ablation;
pub mod annotations;
pub mod architecture;
pub mod attack;
pub mod classify;
pub mod explain;
pub mod hierarchy;
pub mod images;
pub mod job;
pub mod proto;
pub mod regions;
pub mod sanity;
pub mod seed;
pub mod settings;
pub mod shapley;
pub mod stats;
pub mod storage;
pub mod synth;
pub mod transport;
pub mod wsol;
