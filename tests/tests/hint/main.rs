//! hint's end-to-end suite: one test binary, one module per area. PyTorch (the
//! project's `.venv`) is the oracle for numerics; pyarrow reads what hint writes.

mod ablate;
mod architectures;
mod attack;
mod classify;
mod cluster;
mod deploy;
mod executables;
mod extract_cli;
mod harness;
mod hierarchy;
mod job_spec;
mod moto;
mod regions_pyarrow;
mod report;
mod s3;
mod s3_job;
mod saliency;
mod sample_cli;
mod sanity_check;
mod security;
mod shapley;
mod support;
mod synth_world;
mod tar_shards;
mod train_model;
mod vit_job;
mod wsol;
