//! The synthetic world: labelled images whose classes form a three-level hierarchy of
//! visible parts, with exact boxes and object masks — ground truth for HINT's concepts
//! and for localisation.
//!
//! [`generate`] writes, under [`SynthConfig::out`]:
//!
//! ```text
//! images/<leaf>/<leaf>_<NNNNN>.png       ImageFolder (folders = leaf labels), RGB
//! annotations/<leaf>/<leaf>_<NNNNN>.xml  PASCAL VOC XML (see annotations::voc)
//! masks/<leaf>/<leaf>_<NNNNN>.png        8-bit grey, 255 = object pixel
//! hierarchy.yaml                         the custom-hierarchy format (parent: [children])
//! world.json                             seed, sizes, classes and their parts ([`World`])
//! ```
//!
//! The classes and their parts are in [`world`]; one image is [`render`]. How hard the
//! scenes are — object size, placement, distractors — is [`SceneOptions`] (with
//! [`Preset`]s). Image `k` of a class depends only on `(seed, label, k, size, scene)`
//! (its generators are `seed::rng(seed, &[SYNTH_TAG, label, k])` and, for the hard
//! options only, streams derived from the same parts), so a world is byte-identical for a
//! seed whatever the number of images per class, the first index or the number of
//! threads: a larger world extends a smaller one, and `first_index` writes held-out
//! images of the same world.

mod canvas;
mod objects;
mod options;
mod scene;
pub mod world;

pub use options::{ObjectScale, Preset, SceneOptions};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{GrayImage, RgbImage};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::annotations::{voc, AnnotationError, BoundingBox, ImageAnnotation};
use canvas::{Canvas, Frame};

/// The identity tag of the synthetic world's random streams (`"synth"` in ASCII).
pub const SYNTH_TAG: u64 = 0x73_79_6e_74_68;

/// The last part of the stream that places an object anywhere (`random_position`).
const PLACEMENT_STREAM: u64 = 1;
/// The last part of the stream that draws distractors.
const DISTRACTOR_STREAM: u64 = 2;

/// One more than the largest image index: file names have five digits.
const INDEX_LIMIT: usize = 100_000;

/// Settings of [`generate`]; build with [`SynthConfig::new`] and check with
/// [`SynthConfig::validate`].
#[derive(Clone, Debug, PartialEq)]
pub struct SynthConfig {
    /// The directory to write the world into.
    pub out: PathBuf,
    /// The world's seed.
    pub seed: u64,
    /// Images per leaf class (1 to 99,999).
    pub per_class: usize,
    /// The index of the first image of each class: images `first_index ..
    /// first_index + per_class` are written, under their global index (`cat_00200.png`),
    /// so a later `first_index` writes held-out images of the same world.
    pub first_index: usize,
    /// Image side in pixels (32 to 1024).
    pub size: u32,
    /// Replace an earlier world in `out` (otherwise `out` must be empty or absent).
    pub overwrite: bool,
    /// Object size, placement and distractors.
    pub scene: SceneOptions,
}

impl SynthConfig {
    /// Default images per class.
    pub const DEFAULT_PER_CLASS: usize = 200;
    /// Default image side.
    pub const DEFAULT_SIZE: u32 = 64;

    /// Defaults: seed 0, images 0 to 199 of each class, 64×64, the default scene, no
    /// overwrite.
    pub fn new(out: impl Into<PathBuf>) -> SynthConfig {
        SynthConfig {
            out: out.into(),
            seed: 0,
            per_class: Self::DEFAULT_PER_CLASS,
            first_index: 0,
            size: Self::DEFAULT_SIZE,
            overwrite: false,
            scene: SceneOptions::default(),
        }
    }

    /// Checks the ranges of the settings.
    pub fn validate(&self) -> Result<(), SynthError> {
        if !(1..=99_999).contains(&self.per_class) {
            return Err(SynthError::Setting(format!(
                "images per class must be 1 to 99999 (file names have five digits), not {}",
                self.per_class
            )));
        }
        if !(32..=1024).contains(&self.size) {
            return Err(SynthError::Setting(format!(
                "the image size must be 32 to 1024 pixels, not {}",
                self.size
            )));
        }
        if self.first_index + self.per_class > INDEX_LIMIT {
            return Err(SynthError::Setting(format!(
                "--first-index {} with --per-class {} would write image {}; file names have \
                 five digits (the last image is {})",
                self.first_index,
                self.per_class,
                self.first_index + self.per_class - 1,
                INDEX_LIMIT - 1
            )));
        }
        self.scene.validate(self.size)
    }
}

/// Why a world could not be generated.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A setting is out of range.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// The output directory holds files and overwriting was not asked for.
    #[error("{} is not empty (pass --overwrite to replace an earlier world)", .0.display())]
    NotEmpty(PathBuf),
    /// A file or directory could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// An image could not be encoded or written.
    #[error("writing {}: {source}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// The encoder's error.
        source: image::ImageError,
    },
    /// An annotation could not be written.
    #[error(transparent)]
    Annotation(#[from] AnnotationError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> SynthError + '_ {
    move |source| SynthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One rendered image with its ground truth.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The picture.
    pub image: RgbImage,
    /// The object mask: 255 where the object is, 0 elsewhere.
    pub mask: GrayImage,
    /// The mask's box (0-based half-open), labelled with the class.
    pub bbox: BoundingBox,
    /// Visible pixels of each named part (the names in [`world`]'s tables, plus `body`
    /// for surfaces that are no concept's part).
    pub parts: std::collections::BTreeMap<String, usize>,
    /// The distractors' pixels: 255 where one was painted (never in `mask`).
    pub distractor_mask: GrayImage,
    /// How many distractors were painted (fewer than asked when the object left no room).
    pub distractors: usize,
}

/// Renders image `index` of class `label` (an index into [`world::LEAVES`]) at
/// `size × size` in the default scene, deterministically from `seed`.
///
/// # Panics
///
/// If `label` is not a class of the world or `size` is under 32.
pub fn render(seed: u64, label: usize, index: usize, size: u32) -> Sample {
    render_scene(seed, label, index, size, &SceneOptions::default())
}

/// Renders image `index` of class `label` in `scene` (checked with
/// [`SceneOptions::validate`]).
///
/// The default scene makes exactly the original draws in the original order, so its
/// images are the original ones. The hard options draw from streams of their own
/// (placement, distractors), so an image with distractors is the same image without
/// them plus the distractors' pixels.
///
/// # Panics
///
/// If `label` is not a class of the world or `size` is under 32.
pub fn render_scene(
    seed: u64,
    label: usize,
    index: usize,
    size: u32,
    options: &SceneOptions,
) -> Sample {
    assert!(label < world::LEAVES.len(), "no class {label}");
    assert!(size >= 32, "images are at least 32 pixels wide");
    let parts = [SYNTH_TAG, label as u64, index as u64];
    let stream = |last: u64| crate::seed::rng(seed, &[parts[0], parts[1], parts[2], last]);
    let mut rng = crate::seed::rng(seed, &parts);
    let mut canvas = Canvas::new(size);
    scene::background(&mut canvas, &mut rng);
    scene::clutter(&mut canvas, &mut rng);
    let side = size as f32 * options.object_scale.draw(&mut rng);
    let frame = if options.random_position {
        let flip = rng.random_bool(0.5);
        anywhere(size, side, flip, label, &rng, &mut stream(PLACEMENT_STREAM))
    } else {
        let slack = size as f32 - side;
        Frame {
            x0: rng.random_range(0.0..=slack),
            y0: rng.random_range(0.0..=slack),
            side,
            flip: rng.random_bool(0.5),
        }
    };
    objects::draw(&mut canvas, frame, label, &mut rng);
    let distractors = if options.distractors > 0 {
        scene::distractors(
            &mut canvas,
            &mut stream(DISTRACTOR_STREAM),
            options.distractors,
        )
    } else {
        0
    };
    canvas.add_noise(10.0, || rng.random_range(-1.0f32..1.0));
    let (xmin, ymin, xmax, ymax) = canvas
        .mask_box()
        .expect("every object paints pixels inside the image");
    let parts = canvas
        .part_pixels()
        .into_iter()
        .map(|(name, n)| (name.to_string(), n))
        .collect();
    let image = RgbImage::from_raw(size, size, canvas.rgb_bytes()).expect("size × size × 3");
    let mask = GrayImage::from_raw(size, size, canvas.mask_bytes()).expect("size × size");
    let distractor_mask =
        GrayImage::from_raw(size, size, canvas.distractor_bytes()).expect("size × size");
    Sample {
        image,
        mask,
        bbox: BoundingBox {
            label: world::LEAVES[label].name.to_string(),
            xmin: xmin as f32,
            ymin: ymin as f32,
            xmax: xmax as f32,
            ymax: ymax as f32,
            difficult: false,
        },
        parts,
        distractor_mask,
        distractors,
    }
}

/// The frame that puts the object `rng` is about to draw uniformly anywhere its pixels
/// fit in the image.
///
/// The object's extent depends on its random pose, so it is first drawn on a scratch
/// canvas (with a copy of `rng`, hence the same pose) at a whole-pixel offset; moving the
/// frame by whole pixels moves the raster exactly, so the extent measured there is the
/// extent in the image. An object wider than the image (possible only near scale 1) is
/// centred and cut at both sides.
fn anywhere(
    size: u32,
    side: f32,
    flip: bool,
    label: usize,
    rng: &ChaCha8Rng,
    placement: &mut ChaCha8Rng,
) -> Frame {
    // Parts may reach a little outside the object's unit square; half a side is ample.
    let pad = (side / 2.0).ceil() + 2.0;
    let mut scratch = Canvas::new((side + 2.0 * pad).ceil() as u32);
    let probe = Frame {
        x0: pad,
        y0: pad,
        side,
        flip,
    };
    objects::draw(&mut scratch, probe, label, &mut rng.clone());
    let (bx0, by0, bx1, by1) = scratch
        .mask_box()
        .expect("every object paints pixels on its scratch canvas");
    let mut offset = |lo: u32, hi: u32| {
        // Shifts d keep [lo + d, hi + d) inside [0, size).
        let (first, last) = (-(lo as i64), size as i64 - hi as i64);
        let d = if first <= last {
            placement.random_range(first..=last)
        } else {
            (first + last) / 2
        };
        pad + d as f32
    };
    let x0 = offset(bx0, bx1);
    let y0 = offset(by0, by1);
    Frame { x0, y0, side, flip }
}

/// `world.json`: what was generated, how, and what each class is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct World {
    /// Always `"hint-synthetic-world"`.
    pub format: String,
    /// Version of the generator's drawing; a new version draws different images.
    pub version: u32,
    /// The seed.
    pub seed: u64,
    /// Image side in pixels.
    pub size: u32,
    /// Images per class.
    pub per_class: usize,
    /// The first image index of each class (absent when 0): images `first_index ..
    /// first_index + per_class` were written.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub first_index: usize,
    /// Images in all.
    pub images: usize,
    /// Object size, placement and distractors (each absent when at its default).
    #[serde(flatten)]
    pub scene: SceneOptions,
    /// The classes by label index.
    pub classes: Vec<WorldClass>,
    /// The concepts above the leaves, root first, with their parts.
    pub concepts: Vec<WorldConcept>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A leaf class in `world.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldClass {
    /// Label index (position among the sorted class names).
    pub label: u32,
    /// The class name (folder name).
    pub name: String,
    /// Concepts above it, root first.
    pub ancestors: Vec<String>,
    /// Every part it draws, inherited ones first.
    pub parts: Vec<String>,
    /// The parts only this class draws.
    pub own_parts: Vec<String>,
    /// Its colours, in words.
    pub colour: String,
}

/// A concept above the leaves in `world.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorldConcept {
    /// The name in `hierarchy.yaml`.
    pub name: String,
    /// 0 for the root, 1 and 2 below it.
    pub level: u32,
    /// Its children.
    pub children: Vec<String>,
    /// The parts every class under it draws.
    pub parts: Vec<String>,
}

/// The generator version written to `world.json`.
pub const VERSION: u32 = 1;

/// The description of a world generated with `config`.
pub fn describe(config: &SynthConfig) -> World {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let classes = world::LEAVES
        .iter()
        .enumerate()
        .map(|(label, leaf)| WorldClass {
            label: label as u32,
            name: leaf.name.to_string(),
            ancestors: strings(&world::ancestors(leaf)),
            parts: strings(&world::parts(leaf)),
            own_parts: strings(leaf.parts),
            colour: leaf.colour.to_string(),
        })
        .collect();
    let mut concepts = vec![WorldConcept {
        name: world::ROOT.to_string(),
        level: 0,
        children: strings(&world::children(world::ROOT)),
        parts: Vec::new(),
    }];
    for group in world::GROUPS {
        let level = if group.parent == world::ROOT { 1 } else { 2 };
        concepts.push(WorldConcept {
            name: group.name.to_string(),
            level,
            children: strings(&world::children(group.name)),
            parts: strings(group.parts),
        });
    }
    World {
        format: "hint-synthetic-world".to_string(),
        version: VERSION,
        seed: config.seed,
        size: config.size,
        per_class: config.per_class,
        first_index: config.first_index,
        images: config.per_class * world::LEAVES.len(),
        scene: config.scene,
        classes,
        concepts,
    }
}

/// What [`generate`] writes at the top of the output directory.
const OUTPUTS: [&str; 5] = [
    "images",
    "annotations",
    "masks",
    "hierarchy.yaml",
    "world.json",
];

/// Generates the world `config` describes; `on_image` is called once per image written
/// (from worker threads). Returns the description written to `world.json`.
///
/// `out` must be absent or empty unless `config.overwrite`, which removes an earlier
/// world's outputs (only the entries listed in the module docs) first.
pub fn generate(config: &SynthConfig, on_image: &(dyn Fn() + Sync)) -> Result<World, SynthError> {
    config.validate()?;
    prepare(config)?;
    let leaves = &world::LEAVES;
    for kind in ["images", "annotations", "masks"] {
        for leaf in leaves {
            let dir = config.out.join(kind).join(leaf.name);
            std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
    }
    let written = AtomicUsize::new(0);
    let total = config.per_class * leaves.len();
    (0..total).into_par_iter().try_for_each(|id| {
        let (label, k) = (id / config.per_class, id % config.per_class);
        write_sample(config, id as u64, label, config.first_index + k)?;
        written.fetch_add(1, Ordering::Relaxed);
        on_image();
        Ok::<(), SynthError>(())
    })?;
    let hierarchy = config.out.join("hierarchy.yaml");
    std::fs::write(&hierarchy, world::hierarchy_yaml(config.seed)).map_err(io_error(&hierarchy))?;
    let description = describe(config);
    let json = config.out.join("world.json");
    let text = serde_json::to_string_pretty(&description).expect("World serialises");
    std::fs::write(&json, text + "\n").map_err(io_error(&json))?;
    debug_assert_eq!(written.load(Ordering::Relaxed), total);
    Ok(description)
}

/// Checks that `out` may be written and clears an earlier world when overwriting.
fn prepare(config: &SynthConfig) -> Result<(), SynthError> {
    let out = &config.out;
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                if !config.overwrite {
                    return Err(SynthError::NotEmpty(out.clone()));
                }
                for name in OUTPUTS {
                    let path = out.join(name);
                    let removed = if path.is_dir() {
                        std::fs::remove_dir_all(&path)
                    } else if path.exists() {
                        std::fs::remove_file(&path)
                    } else {
                        Ok(())
                    };
                    removed.map_err(io_error(&path))?;
                }
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(out).map_err(io_error(out))
        }
        Err(e) => Err(io_error(out)(e)),
    }
}

/// The file stem of image `index` of `leaf`: `<leaf>_<NNNNN>`.
pub fn stem(leaf: &str, index: usize) -> String {
    format!("{leaf}_{index:05}")
}

fn write_sample(
    config: &SynthConfig,
    id: u64,
    label: usize,
    index: usize,
) -> Result<(), SynthError> {
    let leaf = world::LEAVES[label].name;
    let sample = render_scene(config.seed, label, index, config.size, &config.scene);
    let stem = stem(leaf, index);
    let image_path = config
        .out
        .join("images")
        .join(leaf)
        .join(format!("{stem}.png"));
    let mask_path = config
        .out
        .join("masks")
        .join(leaf)
        .join(format!("{stem}.png"));
    let xml_path = config
        .out
        .join("annotations")
        .join(leaf)
        .join(format!("{stem}.xml"));
    for (picture, path) in [
        (&sample.image as &dyn Savable, &image_path),
        (&sample.mask, &mask_path),
    ] {
        picture.save_png(path).map_err(|source| SynthError::Image {
            path: path.clone(),
            source,
        })?;
    }
    let annotation = ImageAnnotation {
        id,
        path: PathBuf::from(format!("{stem}.png")),
        label: leaf.to_string(),
        width: Some(config.size),
        height: Some(config.size),
        boxes: vec![sample.bbox],
    };
    voc::write_file(&annotation, leaf, &xml_path)?;
    Ok(())
}

/// An image buffer that can be written as PNG (RGB pictures and grey masks alike).
trait Savable {
    fn save_png(&self, path: &Path) -> image::ImageResult<()>;
}

impl Savable for RgbImage {
    fn save_png(&self, path: &Path) -> image::ImageResult<()> {
        self.save_with_format(path, image::ImageFormat::Png)
    }
}

impl Savable for GrayImage {
    fn save_png(&self, path: &Path) -> image::ImageResult<()> {
        self.save_with_format(path, image::ImageFormat::Png)
    }
}

#[cfg(test)]
mod tests;
