//! Decoding and preprocessing one image the way torchvision's ImageNet evaluation transform
//! does: `Resize(resize)` (shorter side, bilinear), `CenterCrop(crop)`, `ToTensor()`,
//! `Normalize(mean, std)`.
//!
//! The geometry (output sizes, crop offsets, padding) follows torchvision exactly, and the
//! resize is PIL's antialiased bilinear arithmetic ([`resample`](super::resample)), computed
//! only for the pixels the crop keeps. Checked against torchvision 0.26 / Pillow 13
//! (`images::torchvision_tests`, `imagenet(256, 224)` on 500×375, 375×500, 333×500, 640×427,
//! 1000×750, 200×150 and 257×1000, and a padded crop): PNG values are PIL's exactly, except
//! where Pillow 13 chooses to run its vertical pass first (257×1000 → 256×996 here: within
//! 1 grey level, 80% equal); over all PNGs max 1, mean 0.03 grey levels. JPEGs are the same
//! where this build has libjpeg-turbo ([`turbo`], PIL's own decoder, which decodes only the
//! part of the image the crop reads): PIL's values exactly but at 257×1000. Without it (or
//! for what libjpeg-turbo refuses, such as CMYK) zune-jpeg decodes, and its IDCT and chroma
//! upsampling differ: max 3, mean 0.03, about 99% of values equal. (The `image` crate's
//! triangle filter used before gave JPEG max 3, mean 0.4.) Like torchvision's `pil_loader`,
//! EXIF orientation is ignored and alpha is dropped.
//!
//! **DCT scaling.** A JPEG whose shorter side is at least 8 times the resize target (2,048
//! pixels for 256) is decoded at 1/4 of its size, or at 1/8 from 16 times, by
//! jpeg-decoder's scaled IDCT ([`dct_divisor`]); the scaled image, still at least twice the
//! target, is then resized as usual, to the size the full image would give. At 2740×2055 →
//! 256 the decode stage went 12.7 → 9.1 ms per image and `hint extract` 1.35× faster
//! (`scripts/bench_host.py --size 2740x2055 --images 120 --hint-layers features.6`, before
//! and after). The rule's two limits were measured:
//! - not 1/2: jpeg-decoder at half scale took 2.89–2.94 ms per 1000×750 image, zune-jpeg
//!   (through `image`, which has no scaling) at full size 2.82–2.84 ms;
//! - not a scale that leaves less than twice the target: at 1400×1050 decoded at 1/4
//!   (350×263, resized by only 1.37) ResNet-18 `layer2` masks agreed 98.49% with full
//!   decoding where ±1 grey level of noise keeps 99.11%; with the rule they stay at the
//!   noise level (`images::mask_tests`: pixels within 0.34 grey levels on average).
//!
//! Only extraction's and training's pipeline decodes this way ([`load_into`]);
//! [`read_rgb`] always decodes in full.
//!
//! **Order of decoders** in [`load_into`]: libjpeg-turbo, part of an unscaled JPEG; else
//! jpeg-decoder, a JPEG to scale; else the `image` crate (zune-jpeg, PNG), whose errors are
//! the reasons a skipped image is given.

use std::io::Cursor;
use std::ops::Range;
use std::path::Path;

use image::{ImageReader, RgbImage};

use super::resample::{resize_window, Source};
use super::turbo;

/// How images become model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// The shorter side after resizing (torchvision `Resize(int)`).
    pub resize: u32,
    /// The side of the square centre crop.
    pub crop: u32,
    /// Per-channel mean subtracted from values in `[0, 1]` (RGB order).
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by (RGB order).
    pub std: [f32; 3],
}

impl Preprocess {
    /// ImageNet normalisation with the given sizes (the classic evaluation transform is
    /// `imagenet(256, 224)`; Inception-v3 uses `imagenet(342, 299)`).
    pub fn imagenet(resize: u32, crop: u32) -> Self {
        Preprocess {
            resize,
            crop,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Values per preprocessed image: `3 × crop × crop`.
    pub fn pixels_per_image(&self) -> usize {
        3 * self.crop as usize * self.crop as usize
    }

    /// Size of an image after `Resize(resize)`: the shorter side becomes `resize` and the
    /// longer side `floor(resize × long / short)`, as torchvision computes it.
    pub fn resized_size(&self, width: u32, height: u32) -> (u32, u32) {
        let (short, long) = if width <= height {
            (width, height)
        } else {
            (height, width)
        };
        // u64 so that large images cannot overflow the product.
        let new_long = (u64::from(self.resize) * u64::from(long) / u64::from(short.max(1))) as u32;
        if width <= height {
            (self.resize, new_long)
        } else {
            (new_long, self.resize)
        }
    }
}

/// Where a centre crop of `crop` starts along a side of `size` pixels, as torchvision's
/// `CenterCrop` does: `round((size − crop) / 2)` with Python's round-half-to-even, or, when
/// the image is smaller than the crop, minus the left/top zero padding `(crop − size) // 2`.
pub fn crop_offset(size: u32, crop: u32) -> i64 {
    if crop > size {
        -i64::from((crop - size) / 2)
    } else {
        (f64::from(size - crop) / 2.0).round_ties_even() as i64
    }
}

/// Reads (a local file, an `s3://` object or a tar member), decodes and preprocesses the image
/// at `path` into CHW `f32` values (length
/// [`Preprocess::pixels_per_image`]). Any problem — unreadable file, unknown format,
/// truncated or corrupt data — is returned as a short human reason, for the skip record.
pub fn load(path: &Path, p: &Preprocess) -> Result<Vec<f32>, String> {
    let mut out = vec![0f32; p.pixels_per_image()];
    load_into(path, p, &mut out)?;
    Ok(out)
}

/// [`load`] into `out` (length [`Preprocess::pixels_per_image`]), for instance an image's
/// slot in a batch's buffer; on an error `out` is left as it was or partly written.
pub fn load_into(path: &Path, p: &Preprocess, out: &mut [f32]) -> Result<(), String> {
    let bytes = hint_common::images::read_image(path)?;
    if preprocess_jpeg_part(&bytes, p, out) {
        return Ok(());
    }
    match decode_jpeg_scaled(&bytes, p.resize) {
        Some((rgb, full_size)) => preprocess_source(
            &Source::whole(rgb.as_raw(), (rgb.width() as usize, rgb.height() as usize)),
            full_size,
            p,
            out,
        ),
        None => preprocess_into(&decode_rgb(bytes)?, p, out),
    }
    Ok(())
}

/// [`load_into`]'s fast path, for a JPEG that libjpeg-turbo decodes ([`turbo`]) and that
/// [`dct_divisor`] does not scale: only the columns and rows that the resize of the crop
/// reads are decoded. `false` (with `out` untouched) when libjpeg-turbo refuses the file or
/// is not in this build, or the image is one to decode scaled — that stays with
/// jpeg-decoder, whose scaled IDCT is the one the rule was measured with (libjpeg-turbo's
/// at 1/4 left VGG-11 `features.10` masks 98.94% equal where ±1 grey level of noise keeps
/// 99.00%: below the ≥ 99% criterion of `images::mask_tests`).
fn preprocess_jpeg_part(bytes: &[u8], p: &Preprocess, out: &mut [f32]) -> bool {
    let Some(size) = turbo::size(bytes) else {
        return false;
    };
    if dct_divisor(size.0.min(size.1), p.resize) != 1 {
        return false;
    }
    let window = CropWindow::new(size, p);
    let whole = (size.0 as usize, size.1 as usize);
    let (cols, rows) = Source::reads(whole, window.resized, window.cols, window.rows);
    let Some(pixels) = turbo::decode_part(bytes, 1, size, cols.clone(), rows.clone()) else {
        return false;
    };
    preprocess_source(&Source::part(&pixels, whole, cols, rows), size, p, out);
    true
}

/// The DCT scaling divisor for a JPEG whose shorter side is `short` pixels, resized so that
/// it becomes `resize`: 8 or 4, the larger that leaves the shorter side at least twice
/// `resize`, or 1 (no scaling) — the rule and its measured limits are in the module docs.
pub fn dct_divisor(short: u32, resize: u32) -> u32 {
    [8, 4]
        .into_iter()
        .find(|&d| u64::from(short) >= 2 * u64::from(d) * u64::from(resize.max(1)))
        .unwrap_or(1)
}

/// `bytes` decoded at a reduced scale, with the full image's `(width, height)`, when they
/// are a JPEG that [`dct_divisor`] scales (8-bit RGB or greyscale); `None` otherwise —
/// other images, CMYK and 16-bit JPEGs, and any error, which the full decoder then reports
/// in its own words.
pub fn decode_jpeg_scaled(bytes: &[u8], resize: u32) -> Option<(RgbImage, (u32, u32))> {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let divisor = dct_divisor(width.min(height), resize);
    if divisor == 1 {
        return None;
    }
    let (w, h) = decoder
        .scale(
            width.div_ceil(divisor) as u16,
            height.div_ceil(divisor) as u16,
        )
        .ok()?;
    let pixels = decoder.decode().ok()?;
    let (w, h) = (u32::from(w), u32::from(h));
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => RgbImage::from_raw(w, h, pixels),
        jpeg_decoder::PixelFormat::L8 => {
            let rgb = pixels.iter().flat_map(|&v| [v, v, v]).collect();
            RgbImage::from_raw(w, h, rgb)
        }
        _ => None,
    }?;
    Some((rgb, (width, height)))
}

/// Reads (a local file, an `s3://` object or a member of a tar shard) and decodes the image
/// at `path` to RGB; a problem is a short human reason, as for [`load`].
pub fn read_rgb(path: &Path) -> Result<RgbImage, String> {
    // A local read fails with the system's message, as `std::fs::read` gives it; an image
    // in a tar shard is one ranged read of the member.
    decode_rgb(hint_common::images::read_image(path)?)
}

/// Decodes an image file's `bytes` (JPEG or PNG, by content) to RGB at full size; a JPEG
/// with libjpeg-turbo where it can ([`turbo`]).
fn decode_rgb(bytes: Vec<u8>) -> Result<RgbImage, String> {
    if let Some((width, height)) = turbo::size(&bytes) {
        let whole = (0..width as usize, 0..height as usize);
        if let Some(pixels) = turbo::decode_part(&bytes, 1, (width, height), whole.0, whole.1) {
            return Ok(RgbImage::from_raw(width, height, pixels).expect("a whole image's pixels"));
        }
    }
    // The format comes from the content, not the extension: some datasets (ImageNet among
    // them) hold PNGs named .JPEG.
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read: {e}"))?;
    if reader.format().is_none() {
        return Err("not a JPEG or PNG image (unrecognised content)".to_string());
    }
    let image = reader.decode().map_err(|e| format!("decode error: {e}"))?;
    if image.width() == 0 || image.height() == 0 {
        return Err(format!(
            "empty image ({}×{})",
            image.width(),
            image.height()
        ));
    }
    // No copy when the decoder already produced 8-bit RGB (most JPEGs).
    Ok(image.into_rgb8())
}

/// Resizes, centre-crops and normalises a decoded RGB image into CHW `f32` values.
pub fn preprocess(rgb: &RgbImage, p: &Preprocess) -> Vec<f32> {
    let mut out = vec![0f32; p.pixels_per_image()];
    preprocess_into(rgb, p, &mut out);
    out
}

/// [`preprocess`] into `out`, which must hold [`Preprocess::pixels_per_image`] values. Only
/// the resized pixels inside the crop are computed (see [`resample`](super::resample)).
pub fn preprocess_into(rgb: &RgbImage, p: &Preprocess, out: &mut [f32]) {
    let size = (rgb.width() as usize, rgb.height() as usize);
    preprocess_source(
        &Source::whole(rgb.as_raw(), size),
        (rgb.width(), rgb.height()),
        p,
        out,
    );
}

/// Where an image's centre crop falls in it once resized.
struct CropWindow {
    /// The resized image's size.
    resized: (usize, usize),
    /// The crop's left and top in the resized image (negative where it is padded).
    left: i64,
    top: i64,
    /// The resized image's columns and rows inside the crop (all of the crop unless it is
    /// padded; empty for a zero `resize`).
    cols: Range<usize>,
    rows: Range<usize>,
}

impl CropWindow {
    /// The window of `p` on an image of `full_size`.
    fn new(full_size: (u32, u32), p: &Preprocess) -> Self {
        let (w, h) = p.resized_size(full_size.0, full_size.1);
        let (left, top) = (crop_offset(w, p.crop), crop_offset(h, p.crop));
        let inside = |offset: i64, size: u32| {
            offset.max(0) as usize..(offset + i64::from(p.crop)).min(i64::from(size)) as usize
        };
        CropWindow {
            resized: (w as usize, h as usize),
            left,
            top,
            cols: inside(left, w),
            rows: inside(top, h),
        }
    }
}

/// [`preprocess_into`] of an image of `full_size` that `src` holds, possibly at a reduced
/// scale (a DCT-scaled decode) and possibly in part (the part the crop reads): the output's
/// geometry — resized size, crop offsets — is the full image's, and the resize reads `src`.
fn preprocess_source(src: &Source, full_size: (u32, u32), p: &Preprocess, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        p.pixels_per_image(),
        "an image's slot holds 3 × crop × crop values"
    );
    let CropWindow {
        resized,
        left,
        top,
        cols,
        rows,
    } = CropWindow::new(full_size, p);
    let crop = p.crop as usize;
    let plane = crop * crop;
    // Each channel's 256 possible values, normalised once.
    let table: [[f32; 256]; 3] = std::array::from_fn(|c| {
        let scale = 1.0 / (255.0 * p.std[c]);
        let shift = -p.mean[c] / p.std[c];
        std::array::from_fn(|v| v as f32 * scale + shift)
    });
    // Padding (an image smaller than the crop) is black before normalisation, as in
    // torchvision, so padded values are -mean/std.
    if cols.len() < crop || rows.len() < crop {
        for (c, channel) in out.chunks_exact_mut(plane).enumerate() {
            channel.fill(table[c][0]);
        }
    }
    if cols.is_empty() || rows.is_empty() {
        return; // a zero `resize`: nothing but padding
    }
    let window = resize_window(src, resized, cols.clone(), rows.clone());
    let (x0, y0) = (
        (cols.start as i64 - left) as usize,
        (rows.start as i64 - top) as usize,
    );
    for (c, channel) in out.chunks_exact_mut(plane).enumerate() {
        let table = &table[c];
        for (r, pixels) in window.chunks_exact(cols.len() * 3).enumerate() {
            let from = (y0 + r) * crop + x0;
            for (o, rgb) in channel[from..from + cols.len()]
                .iter_mut()
                .zip(pixels.chunks_exact(3))
            {
                *o = table[usize::from(rgb[c])];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage, Luma, Rgb, RgbaImage};

    fn unit(p: &Preprocess) -> Preprocess {
        // Identity normalisation so values are plain [0, 1] intensities.
        Preprocess {
            mean: [0.0; 3],
            std: [1.0; 3],
            ..*p
        }
    }

    #[test]
    fn resize_geometry_matches_torchvision() {
        let p = Preprocess::imagenet(256, 224);
        assert_eq!(p.resized_size(500, 375), (341, 256)); // int(256 * 500 / 375) = 341
        assert_eq!(p.resized_size(375, 500), (256, 341));
        assert_eq!(p.resized_size(300, 300), (256, 256));
        assert_eq!(p.resized_size(100, 50), (512, 256));
        // torchvision: round((341 - 224) / 2) = round(58.5) = 58 (half to even).
        assert_eq!(crop_offset(341, 224), 58);
        assert_eq!(crop_offset(343, 224), 60); // round(59.5) = 60
        assert_eq!(crop_offset(256, 224), 16);
        assert_eq!(crop_offset(224, 224), 0);
        assert_eq!(crop_offset(221, 224), -1); // padding (224 - 221) // 2 = 1
    }

    #[test]
    fn dct_scaling_only_leaves_twice_the_target_or_more() {
        assert_eq!(dct_divisor(375, 256), 1);
        assert_eq!(dct_divisor(1536, 256), 1); // 1/2 does not pay; 1/4 would leave 384
        assert_eq!(dct_divisor(2048, 256), 4);
        assert_eq!(dct_divisor(4095, 256), 4);
        assert_eq!(dct_divisor(4096, 256), 8);
        assert_eq!(dct_divisor(100, 0), 8); // a zero target: scale as far as possible
    }

    #[test]
    fn a_large_grey_jpeg_decodes_scaled_close_to_full_decoding() {
        // 2100×2050 with a gradient: scaled at 1/4 (dct_divisor(2050, 256) = 4).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grey.jpg");
        let grey = GrayImage::from_fn(2100, 2050, |x, y| Luma([((x / 9 + y / 7) % 256) as u8]));
        grey.save(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let (scaled, full_size) = decode_jpeg_scaled(&bytes, 256).expect("scaled");
        assert_eq!(full_size, (2100, 2050));
        assert_eq!(scaled.dimensions(), (525, 513)); // ⌈2100 / 4⌉ × ⌈2050 / 4⌉
        let p = unit(&Preprocess::imagenet(256, 224));
        let mut ours = vec![0f32; p.pixels_per_image()];
        load_into(&path, &p, &mut ours).unwrap();
        let full = preprocess(&read_rgb(&path).unwrap(), &p);
        let mean = ours
            .iter()
            .zip(&full)
            .map(|(a, b)| (a - b).abs())
            .sum::<f32>()
            / full.len() as f32;
        assert!(
            mean * 255.0 < 1.0,
            "mean difference {} grey levels",
            mean * 255.0
        );
        // Small JPEGs and PNGs take the full decoder.
        assert!(decode_jpeg_scaled(b"\x89PNG", 256).is_none());
    }

    #[test]
    fn crop_takes_the_centre_and_normalises() {
        // 8×6 image, no resize needed (shorter side 6); crop 4 → left = 2, top = 1.
        let p = Preprocess {
            resize: 6,
            crop: 4,
            mean: [0.5, 0.25, 0.0],
            std: [0.5, 0.25, 2.0],
        };
        let img = RgbImage::from_fn(8, 6, |x, y| Rgb([(10 * x + y) as u8, 255, 0]));
        let out = preprocess(&img, &p);
        assert_eq!(out.len(), p.pixels_per_image());
        for oy in 0..4 {
            for ox in 0..4 {
                let r = (10 * (ox + 2) + (oy + 1)) as f32 / 255.0;
                let got = out[oy * 4 + ox];
                assert!((got - (r - 0.5) / 0.5).abs() < 1e-6, "({oy},{ox}) {got}");
                assert!((out[16 + oy * 4 + ox] - 3.0).abs() < 1e-6); // (1 − 0.25) / 0.25
                assert_eq!(out[32 + oy * 4 + ox], 0.0);
            }
        }
    }

    #[test]
    fn resize_keeps_flat_colour_and_aspect() {
        let p = unit(&Preprocess::imagenet(32, 24));
        // A wide image whose left half is black and right half white: after resizing the
        // shorter side to 32 (64×32) and cropping 24 centred (left = 20), the crop's left
        // part stays black, its right part white.
        let img = RgbImage::from_fn(200, 100, |x, _| {
            if x < 100 {
                Rgb([0, 0, 0])
            } else {
                Rgb([255, 255, 255])
            }
        });
        let out = preprocess(&img, &p);
        let at = |c: usize, y: usize, x: usize| out[c * 576 + y * 24 + x];
        assert_eq!(at(0, 5, 0), 0.0);
        assert_eq!(at(1, 12, 9), 0.0); // source column 29 of 64: still black
        assert_eq!(at(2, 20, 14), 1.0); // source column 34: white
        assert_eq!(at(0, 23, 23), 1.0);
        // The edge (source 32) is blurred, not shifted.
        assert!(at(0, 0, 11) < 0.5 && at(0, 0, 12) > 0.5);
    }

    #[test]
    fn small_images_are_padded_with_black() {
        let p = unit(&Preprocess::imagenet(2, 4));
        let img = RgbImage::from_pixel(2, 2, Rgb([255, 255, 255]));
        let out = preprocess(&img, &p);
        // Padding (4 − 2) // 2 = 1 on each side.
        let row = |y: usize| &out[y * 4..y * 4 + 4];
        assert_eq!(row(0), [0.0; 4]);
        assert_eq!(row(1), [0.0, 1.0, 1.0, 0.0]);
        assert_eq!(row(3), [0.0; 4]);
    }

    #[test]
    fn grey_and_rgba_files_become_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let p = unit(&Preprocess::imagenet(4, 4));
        let grey = dir.path().join("g.png");
        GrayImage::from_pixel(4, 4, Luma([51])).save(&grey).unwrap();
        let out = load(&grey, &p).unwrap();
        assert!(out.iter().all(|v| (v - 0.2).abs() < 1e-6));
        let rgba = dir.path().join("a.png");
        RgbaImage::from_pixel(4, 4, image::Rgba([255, 0, 0, 0]))
            .save(&rgba)
            .unwrap();
        let out = load(&rgba, &p).unwrap();
        assert_eq!((out[0], out[16], out[32]), (1.0, 0.0, 0.0));
        // A JPEG named .png decodes by content.
        let jpeg = dir.path().join("really_a_jpeg.png");
        RgbImage::from_pixel(8, 8, Rgb([200, 100, 50]))
            .save_with_format(&jpeg, image::ImageFormat::Jpeg)
            .unwrap();
        let out = load(&jpeg, &p).unwrap();
        assert!((out[0] - 200.0 / 255.0).abs() < 0.02, "{}", out[0]);
    }

    #[test]
    fn bad_files_give_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let p = Preprocess::imagenet(8, 8);
        let err = load(&dir.path().join("missing.jpg"), &p).unwrap_err();
        assert!(err.starts_with("cannot read: "), "{err}");
        let garbage = dir.path().join("garbage.jpg");
        std::fs::write(&garbage, b"definitely not an image").unwrap();
        let err = load(&garbage, &p).unwrap_err();
        assert!(err.contains("not a JPEG or PNG"), "{err}");
        // A real PNG cut in half.
        let png = dir.path().join("cut.png");
        RgbImage::from_fn(64, 64, |x, y| Rgb([x as u8, y as u8, 7]))
            .save(&png)
            .unwrap();
        let bytes = std::fs::read(&png).unwrap();
        std::fs::write(&png, &bytes[..bytes.len() / 2]).unwrap();
        let err = load(&png, &p).unwrap_err();
        assert!(err.starts_with("decode error: "), "{err}");
    }
}
