//! `hint layers`: the layers an architecture can be cut at, optionally with their shapes.

use clap::Args;
use hint_worker::models::{Architecture, Backbone};

/// Flags of `hint layers`.
#[derive(Args, Debug)]
pub struct LayersArgs {
    /// Architecture.
    #[arg(long, value_enum)]
    model: Architecture,
    /// Also print each layer's output shape (D × H × W: D neurons, H × W positions) for one
    /// image of the architecture's crop (or --crop), from a forward pass on the CPU.
    #[arg(long)]
    shapes: bool,
    /// Centre-crop side for --shapes (default: the architecture's).
    #[arg(long, requires = "shapes")]
    crop: Option<u32>,
}

/// Prints every addressable layer name, in forward order (aliases after the stages).
pub fn run(args: LayersArgs) -> anyhow::Result<()> {
    let arch = args.model;
    // Neither the names nor the shapes depend on the weights: random ones on the CPU (a
    // ViT's position embeddings sized for the crop).
    let crop = args.crop.unwrap_or(arch.default_input().crop);
    anyhow::ensure!(crop > 0, "--crop must be at least 1");
    let model = Backbone::for_crop(arch, 1, crop, tch::Device::Cpu);
    if !args.shapes {
        for name in model.layer_names() {
            println!("{name}");
        }
        return Ok(());
    }
    model.check_input(crop)?;
    let shapes = model.layer_shapes(i64::from(crop));
    let width = shapes.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    println!("{arch} on {crop}×{crop} images: layer, D × H × W");
    for (name, shape) in shapes {
        let dims: Vec<String> = shape.iter().map(i64::to_string).collect();
        println!("{name:<width$}  {}", dims.join(" × "));
    }
    Ok(())
}
