//! How hard a world's scenes are: the object's size, where it sits, and distractors.
//!
//! [`SceneOptions::default`] is the original world — large, nearly central objects, no
//! distractors — and draws it byte for byte as before these options existed (the same
//! random draws in the same order). [`Preset::Hard`] makes localisation non-trivial:
//! smaller objects anywhere in the image next to object-sized distractors.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::SynthError;

/// The side of the square an object is drawn in, as a fraction of the image side, drawn
/// per image uniformly in `[min, max)` (exactly `min` when they are equal). Objects span
/// most of their square's width and about three quarters of its height.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ObjectScale {
    /// Smallest fraction, in `(0, 1]`.
    pub min: f32,
    /// Largest fraction, in `[min, 1]`.
    pub max: f32,
}

impl ObjectScale {
    /// The original world's range.
    pub const DEFAULT: ObjectScale = ObjectScale {
        min: 0.62,
        max: 0.98,
    };

    /// Objects are at least this many pixels wide: smaller ones would lose whole parts
    /// between pixel centres (and could vanish, leaving no box).
    pub const MIN_PIXELS: f32 = 8.0;

    /// Draws this image's fraction. With the default range this is the original draw
    /// (`random_range(0.62f32..0.98)`), which keeps the default world unchanged.
    pub(super) fn draw(self, rng: &mut ChaCha8Rng) -> f32 {
        if self.min < self.max {
            rng.random_range(self.min..self.max)
        } else {
            self.min
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::DEFAULT
    }
}

impl Default for ObjectScale {
    fn default() -> ObjectScale {
        ObjectScale::DEFAULT
    }
}

/// The scene settings of [`super::SynthConfig`]. In `world.json` a setting at its default
/// is left out, so a default world's `world.json` is the original one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SceneOptions {
    /// The object's size (`--object-scale`).
    #[serde(default, skip_serializing_if = "ObjectScale::is_default")]
    pub object_scale: ObjectScale,
    /// Place the object uniformly anywhere its pixels fit in the image
    /// (`--random-position`), instead of placing its square inside the image, which
    /// keeps a large object near the centre.
    #[serde(default, skip_serializing_if = "is_false")]
    pub random_position: bool,
    /// Distractor shapes per image (`--distractors`): opaque line shapes (rings, crosses,
    /// zigzags) in colours no class part has, never touching the object and never in its
    /// mask or box. Fewer are drawn when the free space runs out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub distractors: usize,
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl SceneOptions {
    /// Most distractors per image.
    pub const MAX_DISTRACTORS: usize = 20;

    /// Checks the settings for images `size` pixels wide; errors name the flag.
    pub fn validate(&self, size: u32) -> Result<(), SynthError> {
        let ObjectScale { min, max } = self.object_scale;
        let flag = format!("--object-scale {min},{max}");
        let in_range = |v: f32| v > 0.0 && v <= 1.0;
        if !in_range(min) || !in_range(max) {
            return Err(SynthError::Setting(format!(
                "{flag}: fractions of the image side must be in (0, 1]"
            )));
        }
        if min > max {
            return Err(SynthError::Setting(format!(
                "{flag}: the minimum is above the maximum"
            )));
        }
        let pixels = min * size as f32;
        if pixels < ObjectScale::MIN_PIXELS {
            return Err(SynthError::Setting(format!(
                "{flag}: {min} of {size} px is {pixels:.1} px; objects need at least {} px \
                 (raise the minimum or --size)",
                ObjectScale::MIN_PIXELS
            )));
        }
        if self.distractors > Self::MAX_DISTRACTORS {
            return Err(SynthError::Setting(format!(
                "--distractors must be 0 to {}, not {}",
                Self::MAX_DISTRACTORS,
                self.distractors
            )));
        }
        Ok(())
    }
}

/// Named combinations of [`SceneOptions`] (`--preset`); explicit flags override them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// The original world: objects 0.62–0.98 of the side, inside the image, no distractors.
    Default,
    /// Objects 0.45–0.75 of the side, anywhere, three distractors per image.
    Hard,
}

impl Preset {
    /// The preset's settings.
    pub fn options(self) -> SceneOptions {
        match self {
            Preset::Default => SceneOptions::default(),
            Preset::Hard => SceneOptions {
                object_scale: ObjectScale {
                    min: 0.45,
                    max: 0.75,
                },
                random_position: true,
                distractors: 3,
            },
        }
    }
}
