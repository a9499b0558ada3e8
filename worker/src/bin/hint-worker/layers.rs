//! `hint layers`: the layers an architecture can be cut at.

use clap::Args;
use hint_worker::models::{Architecture, Backbone};

/// Flags of `hint layers`.
#[derive(Args, Debug)]
pub struct LayersArgs {
    /// Architecture: tiny_cnn, vgg11, vgg16, vgg19, resnet18, resnet50, inception_v3.
    #[arg(long)]
    model: String,
}

/// Prints every addressable layer name, in forward order.
pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let arch = Architecture::parse(&args.model)?;
    // The layer list does not depend on the weights; build with random ones on the CPU.
    let model = Backbone::new(arch, 1, tch::Device::Cpu);
    for name in model.layer_names() {
        println!("{name}");
    }
    Ok(())
}
