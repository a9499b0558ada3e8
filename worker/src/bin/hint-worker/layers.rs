//! `hint layers`: the layers an architecture can be cut at.

use clap::Args;
use hint_worker::models::{Architecture, Backbone};

/// Flags of `hint layers`.
#[derive(Args, Debug)]
pub struct LayersArgs {
    /// Architecture.
    #[arg(long, value_enum)]
    model: Architecture,
}

/// Prints every addressable layer name, in forward order.
pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let arch = args.model;
    // The layer list does not depend on the weights; build with random ones on the CPU.
    let model = Backbone::new(arch, 1, tch::Device::Cpu);
    for name in model.layer_names() {
        println!("{name}");
    }
    Ok(())
}
