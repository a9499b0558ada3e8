//! The subcommands of `hint`, one module each.

pub mod classify;
pub mod concepts;
pub mod example;
pub mod extract;
pub mod layers;
pub mod shapley;
pub mod synth;
pub mod train_model;
