//! `hint synth`: generate the synthetic world (images, VOC boxes, masks, hierarchy).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use hint_common::synth::{self, world, ObjectScale, Preset, SceneOptions, SynthConfig};
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
    /// Index of the first image of each class: `--first-index 200 --per-class 50` writes
    /// images 200..249 of the same world (a held-out set).
    #[arg(long, default_value_t = 0, value_name = "K", allow_hyphen_values = true,
          value_parser = count)]
    first_index: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = SynthConfig::DEFAULT_SIZE)]
    size: u32,
    /// Replace an earlier world in --out (otherwise --out must be empty or absent).
    #[arg(long)]
    overwrite: bool,
    /// A combination of the scene flags below; flags given explicitly override it.
    /// default: objects 0.62–0.98 of the side, inside the image, no distractors.
    /// hard: 0.45–0.75, anywhere, 3 distractors.
    #[arg(long, value_enum, value_name = "PRESET")]
    preset: Option<PresetArg>,
    /// The object's size as a fraction of the image side, drawn per image in MIN..MAX
    /// (one value: always that size) [default: 0.62,0.98].
    #[arg(long, value_name = "MIN,MAX", allow_hyphen_values = true, value_parser = scale)]
    object_scale: Option<ObjectScale>,
    /// Place the object uniformly anywhere it fits (`--random-position false` undoes a
    /// preset's) [default: inside the image, nearly central].
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    random_position: Option<bool>,
    /// Distractor shapes per image, never a class part, never in masks or boxes
    /// [default: 0].
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = count)]
    distractors: Option<usize>,
}

/// `--preset`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum PresetArg {
    Default,
    Hard,
}

/// A count: a whole number, 0 or more (clap names the flag in its error).
fn count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if n < 0 => Err(format!("must be 0 or more, not {n}")),
        Ok(n) => usize::try_from(n).map_err(|e| e.to_string()),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// `MIN,MAX` or one fraction; the ranges are checked with the other settings.
fn scale(text: &str) -> Result<ObjectScale, String> {
    let number = |part: &str| {
        part.trim()
            .parse::<f32>()
            .map_err(|_| format!("'{part}' is not a number (expected MIN,MAX, e.g. 0.45,0.75)"))
    };
    match text.split(',').collect::<Vec<_>>()[..] {
        [one] => Ok(ObjectScale {
            min: number(one)?,
            max: number(one)?,
        }),
        [min, max] => Ok(ObjectScale {
            min: number(min)?,
            max: number(max)?,
        }),
        _ => Err(format!(
            "'{text}' is not MIN,MAX or one fraction (e.g. 0.45,0.75)"
        )),
    }
}

impl SynthArgs {
    /// The preset's scene with the explicit flags over it.
    fn scene(&self) -> SceneOptions {
        let preset = match self.preset {
            None | Some(PresetArg::Default) => Preset::Default,
            Some(PresetArg::Hard) => Preset::Hard,
        }
        .options();
        SceneOptions {
            object_scale: self.object_scale.unwrap_or(preset.object_scale),
            random_position: self.random_position.unwrap_or(preset.random_position),
            distractors: self.distractors.unwrap_or(preset.distractors),
        }
    }

    fn config(&self) -> SynthConfig {
        SynthConfig {
            out: self.out.clone(),
            seed: self.seed,
            per_class: self.per_class,
            first_index: self.first_index,
            size: self.size,
            overwrite: self.overwrite,
            scene: self.scene(),
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
    if world.first_index > 0 {
        println!(
            "  images {}..{} of each class",
            world.first_index,
            world.first_index + world.per_class - 1
        );
    }
    let scene = &world.scene;
    if *scene != SceneOptions::default() {
        println!(
            "  scene: objects {}–{} of the side, {}, {} distractor(s) per image",
            scene.object_scale.min,
            scene.object_scale.max,
            if scene.random_position {
                "anywhere in the image"
            } else {
                "inside the image"
            },
            scene.distractors
        );
    }
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
