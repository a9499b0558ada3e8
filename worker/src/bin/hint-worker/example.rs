//! `hint example`: a small generated ImageFolder and a seeded tiny CNN, so that
//! `hint extract` can be tried on a laptop with nothing downloaded.
//!
//! The model's weights are random (seeded), not trained, and one image is corrupt on
//! purpose: a seconds-long smoke test of extraction (the tests use it). For a trained model
//! and meaningful concepts use `hint synth` + `hint train-model`, as `make demo` does.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use hint_worker::models::{Architecture, Backbone};
use image::{Rgb, RgbImage};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Flags of `hint example`.
#[derive(Args, Debug)]
pub struct ExampleArgs {
    /// Output directory: images/ (an ImageFolder) and tiny_cnn.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 16)]
    per_class: usize,
    /// Seed of the images and of the model's weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

const CLASSES: [&str; 3] = ["disc", "square", "stripes"];
const SIDE: u32 = 80;

/// Writes the example dataset and model.
pub fn run(args: ExampleArgs) -> anyhow::Result<()> {
    let images = args.out.join("images");
    let mut rng = ChaCha8Rng::seed_from_u64(args.seed);
    for class in CLASSES {
        let dir = images.join(class);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        for i in 0..args.per_class {
            let picture = draw(class, &mut rng);
            // Both formats the pipeline reads.
            let name = if i % 2 == 0 {
                format!("{class}_{i:03}.png")
            } else {
                format!("{class}_{i:03}.jpg")
            };
            let path = dir.join(name);
            picture
                .save(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
    }
    // A corrupt file, to show that bad images are skipped and reported, not fatal.
    let broken = images.join(CLASSES[0]).join("broken.jpg");
    write(&broken, b"\xFF\xD8\xFF\xE0 this is not really a JPEG")?;

    tch::manual_seed(args.seed as i64);
    let model = Backbone::new(
        Architecture::TinyCnn,
        CLASSES.len() as i64,
        tch::Device::Cpu,
    );
    let weights = args.out.join("tiny_cnn.safetensors");
    model.save_safetensors(&weights)?;
    println!(
        "wrote {} images in {} classes (+1 corrupt file) under {}",
        args.per_class * CLASSES.len(),
        CLASSES.len(),
        images.display()
    );
    println!(
        "wrote a tiny CNN with seeded random weights to {}",
        weights.display()
    );
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// A noisy background with one object of the class at a random place and colour.
fn draw(class: &str, rng: &mut ChaCha8Rng) -> RgbImage {
    let base: [u8; 3] = [
        rng.random_range(0..120),
        rng.random_range(0..120),
        rng.random_range(0..120),
    ];
    let colour: [u8; 3] = [
        rng.random_range(130..=255),
        rng.random_range(130..=255),
        rng.random_range(130..=255),
    ];
    let size = rng.random_range(18..32) as i64;
    let cx = rng.random_range(size..SIDE as i64 - size);
    let cy = rng.random_range(size..SIDE as i64 - size);
    let mut picture = RgbImage::new(SIDE, SIDE);
    for (x, y, pixel) in picture.enumerate_pixels_mut() {
        let (dx, dy) = (x as i64 - cx, y as i64 - cy);
        let inside = match class {
            "disc" => dx * dx + dy * dy <= size * size,
            "square" => dx.abs() <= size && dy.abs() <= size,
            _ => dx.abs() <= size && dy.abs() <= size && (x / 4) % 2 == 0,
        };
        let noise: i16 = rng.random_range(-20..=20);
        let value = if inside { colour } else { base };
        *pixel = Rgb(value.map(|v| (v as i16 + noise).clamp(0, 255) as u8));
    }
    picture
}
