//! The subcommands of `hint`, one module each.

pub mod example;
pub mod extract;
pub mod layers;
