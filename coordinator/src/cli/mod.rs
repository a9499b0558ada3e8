//! The subcommands of `hint`, one module each (`client` holds the three small client
//! commands; `progress` the bars and status text they share).

pub mod ablate;
pub mod check;
pub mod classify;
pub mod client;
pub mod concepts;
pub mod evaluate;
pub mod example;
pub mod extract;
pub mod health;
pub mod layers;
pub mod progress;
pub mod report;
pub mod run;
pub mod serve;
pub mod shapley;
pub mod synth;
pub mod train_model;
