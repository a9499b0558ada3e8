//! hint's preprocessing against torchvision's (`tests/python/preprocess_oracle.py`, run with
//! the project's `.venv`) on the same PNG and JPEG files: the numbers in
//! [`decode`](super::decode)'s module docs come from here (`cargo test -p hint-worker --lib
//! torchvision -- --nocapture` prints them).

use std::path::{Path, PathBuf};
use std::process::Command;

use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

use super::decode::{load, Preprocess};
use super::turbo;

/// A photograph-like test image: a coarse grid of random colours, bilinearly blended,
/// with a sharp-edged block and a little pixel noise (a deterministic xorshift).
pub(super) fn picture(width: u32, height: u32, seed: u64) -> RgbImage {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (gw, gh) = (9usize, 7usize);
    let grid: Vec<[f32; 3]> = (0..gw * gh)
        .map(|_| std::array::from_fn(|_| (next() % 256) as f32))
        .collect();
    let noise: Vec<f32> = (0..width * height * 3)
        .map(|_| (next() % 17) as f32 - 8.0)
        .collect();
    RgbImage::from_fn(width, height, |x, y| {
        let gx = x as f32 / width as f32 * (gw - 1) as f32;
        let gy = y as f32 / height as f32 * (gh - 1) as f32;
        let (ix, iy) = (gx as usize, gy as usize);
        let (fx, fy) = (gx - ix as f32, gy - iy as f32);
        let at = |i: usize, j: usize| grid[j.min(gh - 1) * gw + i.min(gw - 1)];
        let block = x > width / 3 && x < width / 2 && y > height / 4 && y < height * 2 / 3;
        Rgb(std::array::from_fn(|c| {
            let v = (at(ix, iy)[c] * (1.0 - fx) + at(ix + 1, iy)[c] * fx) * (1.0 - fy)
                + (at(ix, iy + 1)[c] * (1.0 - fx) + at(ix + 1, iy + 1)[c] * fx) * fy;
            let v = if block { 255.0 - v } else { v };
            let n = noise[((y * width + x) * 3) as usize + c];
            (v + n).clamp(0.0, 255.0) as u8
        }))
    })
}

/// Differences from torchvision, in grey levels of 255, over a set of images.
#[derive(Debug, Default)]
struct Difference {
    max: f32,
    sum: f64,
    values: usize,
    equal: usize,
}

impl Difference {
    fn add(&mut self, ours: &[f32], theirs: &[f32], p: &Preprocess) {
        assert_eq!(ours.len(), theirs.len());
        let plane = ours.len() / 3;
        for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
            let grey = (a - b).abs() * p.std[i / plane] * 255.0;
            self.max = self.max.max(grey);
            self.sum += f64::from(grey);
            self.values += 1;
            // Float noise of the normalisation is far below a grey level.
            self.equal += usize::from(grey < 0.01);
        }
    }

    fn mean(&self) -> f64 {
        self.sum / self.values.max(1) as f64
    }
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/bootstrap.sh first",
        python.display()
    );
    python
}

/// torchvision's values for `files`, in order.
fn torchvision(p: &Preprocess, files: &[PathBuf], out: &Path) -> Vec<Vec<f32>> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/python/preprocess_oracle.py");
    let output = Command::new(python())
        .arg(script)
        .args([p.resize.to_string(), p.crop.to_string()])
        .arg(out)
        .args(files)
        .output()
        .expect("starting the project's python");
    assert!(
        output.status.success(),
        "preprocess_oracle.py failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    files
        .iter()
        .map(|f| {
            let name = format!("{}.f32", f.file_name().unwrap().to_string_lossy());
            std::fs::read(out.join(name))
                .unwrap()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect()
        })
        .collect()
}

/// An image's width and height.
type Size = (u32, u32);

#[test]
fn matches_torchvision_on_png_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    // (resize, crop, image sizes): ImageNet's evaluation transform on typical photo sizes,
    // one at least twice the resize, one upscaled, one tall enough that Pillow runs its
    // vertical pass first; and a crop larger than the resize (padding).
    let cases: [(u32, u32, &[Size]); 2] = [
        (
            256,
            224,
            &[
                (500, 375),
                (375, 500),
                (333, 500),
                (640, 427),
                (1000, 750),
                (200, 150),
                (257, 1000),
            ],
        ),
        (40, 48, &[(100, 60), (61, 97)]),
    ];
    let (mut png, mut jpeg) = (Difference::default(), Difference::default());
    for (k, (resize, crop, sizes)) in cases.into_iter().enumerate() {
        let p = Preprocess::imagenet(resize, crop);
        let mut files = Vec::new();
        for (i, &(w, h)) in sizes.iter().enumerate() {
            let image = picture(w, h, (k * 100 + i) as u64);
            let stem = dir.path().join(format!("{k}_{i}_{w}x{h}"));
            let png_path = stem.with_extension("png");
            image.save(&png_path).unwrap();
            let jpeg_path = stem.with_extension("jpg");
            let mut bytes = Vec::new();
            JpegEncoder::new_with_quality(&mut bytes, 90)
                .encode_image(&image)
                .unwrap();
            std::fs::write(&jpeg_path, bytes).unwrap();
            files.extend([png_path, jpeg_path]);
        }
        let expected = torchvision(&p, &files, dir.path());
        for (file, theirs) in files.iter().zip(&expected) {
            let ours = load(file, &p).unwrap();
            let mut one = Difference::default();
            one.add(&ours, theirs, &p);
            eprintln!(
                "{}: max {:.2}, mean {:.4} grey levels, {:.2}% equal",
                file.file_name().unwrap().to_string_lossy(),
                one.max,
                one.mean(),
                100.0 * one.equal as f64 / one.values as f64
            );
            let name = file.file_name().unwrap().to_string_lossy();
            if (name.ends_with(".png") || turbo::AVAILABLE) && !name.contains("257x1000") {
                // Pillow runs its horizontal pass first here, as we do: PIL's bytes — for
                // JPEGs too where libjpeg-turbo, PIL's decoder, decodes them.
                assert_eq!(one.equal, one.values, "{name}: {one:?}");
            }
            let total = if file.extension().unwrap() == "png" {
                &mut png
            } else {
                &mut jpeg
            };
            total.add(&ours, theirs, &p);
        }
    }
    eprintln!(
        "PNG: max {:.2}, mean {:.4}, {:.3}% equal; JPEG: max {:.2}, mean {:.4}, {:.3}% equal",
        png.max,
        png.mean(),
        100.0 * png.equal as f64 / png.values as f64,
        jpeg.max,
        jpeg.mean(),
        100.0 * jpeg.equal as f64 / jpeg.values as f64
    );
    // PNG: PIL's arithmetic exactly, except where Pillow runs the vertical pass first (±1).
    // Measured: max 1, mean 0.029 (all from 257×1000).
    assert!(png.max <= 1.01, "{png:?}");
    assert!(png.mean() < 0.05, "{png:?}");
    if turbo::AVAILABLE {
        // JPEG through libjpeg-turbo: as PNG. Measured: max 1, mean 0.017 (257×1000 only).
        assert!(jpeg.max <= 1.01, "{jpeg:?}");
        assert!(jpeg.mean() < 0.05, "{jpeg:?}");
    } else {
        // zune-jpeg: its IDCT and chroma upsampling differ from libjpeg-turbo's. Measured:
        // max 3, mean 0.028; 98.9% of values equal on the usual photo sizes.
        assert!(jpeg.max <= 4.01, "{jpeg:?}");
        assert!(jpeg.mean() < 0.1, "{jpeg:?}");
    }
}

/// JPEGs as PIL writes them — chroma subsampling 4:4:4, 4:2:2 and 4:2:0, progressive,
/// greyscale, odd sizes whose last blocks are partial — through libjpeg-turbo's part
/// decoding: torchvision's values exactly. A CMYK JPEG, which libjpeg-turbo does not
/// convert to RGB, still loads (through zune-jpeg).
#[cfg(hint_libjpeg_turbo)]
#[test]
fn jpegs_of_every_kind_pil_writes_are_torchvisions_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let p = Preprocess::imagenet(256, 224);
    let kinds = [
        ("444", 500, 375, "quality=95, subsampling=0"),
        ("422", 375, 500, "quality=90, subsampling=1"),
        ("420", 333, 517, "quality=85, subsampling=2"),
        ("progressive", 640, 427, "quality=90, progressive=True"),
        ("optimised", 257, 300, "quality=75, optimize=True"),
        ("grey", 500, 375, "quality=90"),
        ("small", 61, 97, "quality=90"),
        ("cmyk", 300, 200, "quality=90"),
    ];
    let mut script = String::from("from PIL import Image\n");
    let mut files = Vec::new();
    for (i, (kind, w, h, options)) in kinds.iter().enumerate() {
        let png = dir.path().join(format!("{kind}.png"));
        picture(*w, *h, 300 + i as u64).save(&png).unwrap();
        let jpeg = dir.path().join(format!("{kind}.jpg"));
        let mode = match *kind {
            "grey" => "L",
            "cmyk" => "CMYK",
            _ => "RGB",
        };
        script += &format!(
            "Image.open({:?}).convert({mode:?}).save({:?}, {options})\n",
            png.display().to_string(),
            jpeg.display().to_string()
        );
        files.push(jpeg);
    }
    let written = Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        written.status.success(),
        "{}",
        String::from_utf8_lossy(&written.stderr)
    );
    let cmyk = files.pop().unwrap();
    let bytes = std::fs::read(&cmyk).unwrap();
    assert_eq!(turbo::size(&bytes), Some((300, 200)));
    assert!(turbo::decode_part(&bytes, 1, (300, 200), 0..300, 0..200).is_none());
    assert_eq!(load(&cmyk, &p).unwrap().len(), p.pixels_per_image());
    let expected = torchvision(&p, &files, dir.path());
    for (file, theirs) in files.iter().zip(&expected) {
        let ours = load(file, &p).unwrap();
        let mut one = Difference::default();
        one.add(&ours, theirs, &p);
        assert_eq!(one.equal, one.values, "{}: {one:?}", file.display());
    }
}
