//! hint's end-to-end suite: one test binary, one module per area. PyTorch (the
//! project's `.venv`) is the oracle for numerics; pyarrow reads what hint writes.

mod architectures;
mod classify;
mod cluster;
mod extract_cli;
mod hierarchy;
mod job_spec;
mod regions_pyarrow;
mod report;
mod saliency;
mod shapley;
mod support;
mod synth_world;
mod train_model;
mod wsol;
