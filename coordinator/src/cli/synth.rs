//! `hint synth`: generate the synthetic world (images, VOC boxes, masks, hierarchy).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hint_common::synth::{self, world, SynthConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Flags of `hint synth`.
#[derive(Args, Debug)]
pub struct SynthArgs {
    /// Output directory: images/, annotations/, masks/, hierarchy.yaml, world.json.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the world (the same seed writes the same files).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per leaf class.
    #[arg(long, default_value_t = SynthConfig::DEFAULT_PER_CLASS)]
    per_class: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthConfig::DEFAULT_SIZE)]
    size: u32,
    /// Replace an earlier world in --out (otherwise --out must be empty or absent).
    #[arg(long)]
    overwrite: bool,
}

impl SynthArgs {
    fn config(&self) -> SynthConfig {
        SynthConfig {
            out: self.out.clone(),
            seed: self.seed,
            per_class: self.per_class,
            size: self.size,
            overwrite: self.overwrite,
        }
    }
}

/// Generates the world and prints what was written where.
pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let config = args.config();
    config.validate()?;
    let total = config.per_class * world::LEAVES.len();
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} synth [{bar:30}] {pos}/{len} images ({eta})")
            .context("progress template")?
            .progress_chars("=> "),
    );
    let started = std::time::Instant::now();
    let world = synth::generate(&config, &|| bar.inc(1))
        .with_context(|| format!("generating the synthetic world in {}", config.out.display()))?;
    bar.finish_and_clear();
    println!(
        "wrote {} images ({} classes × {}, {}×{} px, seed {}) to {} in {:.1} s",
        world.images,
        world.classes.len(),
        world.per_class,
        world.size,
        world.size,
        world.seed,
        config.out.display(),
        started.elapsed().as_secs_f64()
    );
    println!("hierarchy (parts each concept adds):");
    for concept in &world.concepts {
        let parts = if concept.parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", concept.parts.join(", "))
        };
        println!(
            "  {}{}{} → {}",
            "  ".repeat(concept.level as usize),
            concept.name,
            parts,
            concept.children.join(", ")
        );
    }
    println!("classes (label: name — own parts; colour):");
    for class in &world.classes {
        println!(
            "  {}: {} — {}; {}",
            class.label,
            class.name,
            class.own_parts.join(", "),
            class.colour
        );
    }
    let out = config.out.display();
    println!("  {out}/images/<class>/<class>_NNNNN.png       ImageFolder (RGB)");
    println!("  {out}/annotations/<class>/<class>_NNNNN.xml  PASCAL VOC boxes");
    println!("  {out}/masks/<class>/<class>_NNNNN.png        object masks (255 = object)");
    println!("  {out}/hierarchy.yaml                         class hierarchy");
    println!("  {out}/world.json                             seed, sizes, classes, parts");
    Ok(())
}
