//! The subcommands `hint` runs itself, one module each (`client` holds the small client
//! commands). The stages that need libtorch live in `worker/src/bin/hint-worker/`.

pub mod check;
pub mod client;
pub mod concepts;
pub mod depth;
pub mod health;
pub mod report;
pub mod sample;
pub mod serve;
pub mod synth;
