//! Heatmap PNGs: a concept classifier's normalised map over the crop the model saw, with
//! the ground-truth box (green) and the predicted box (blue).

use image::imageops::FilterType;
use image::{Rgb, RgbImage};

use super::geometry::{CropFrame, Rect};

/// Smallest side a heatmap is drawn at: small crops (64 px) are enlarged by a whole factor,
/// nearest pixel, so they can be looked at.
const MIN_SIDE: u32 = 192;

/// The `crop × crop` RGB image the model saw (resize with the decoder's filter, centre crop,
/// black padding), before normalisation.
pub fn crop_rgb(rgb: &RgbImage, frame: &CropFrame) -> RgbImage {
    let (w, h) = frame.resized;
    let resized = if (w, h) == rgb.dimensions() {
        rgb.clone()
    } else {
        image::imageops::resize(rgb, w, h, FilterType::Triangle)
    };
    let c = frame.crop;
    RgbImage::from_fn(c, c, |x, y| {
        let (sx, sy) = (i64::from(x) + frame.offset.0, i64::from(y) + frame.offset.1);
        if sx >= 0 && sy >= 0 && sx < i64::from(w) && sy < i64::from(h) {
            *resized.get_pixel(sx as u32, sy as u32)
        } else {
            Rgb([0, 0, 0])
        }
    })
}

/// Red (0) to yellow (1).
fn colour(v: f32) -> [f32; 3] {
    [255.0, 255.0 * v.clamp(0.0, 1.0), 0.0]
}

/// The overlay: each pixel is the image blended with the colour of the normalised map
/// `norm` (`crop × crop`) at opacity `v / 2` (½ at the map's maximum, so cold regions show
/// the image), then the boxes' outlines, enlarged to at least [`MIN_SIDE`].
pub fn render(image: &RgbImage, norm: &[f32], truth: &[Rect], predicted: Option<Rect>) -> RgbImage {
    let c = image.width();
    assert_eq!(norm.len(), (c * c) as usize, "map is crop × crop");
    let factor = MIN_SIDE.div_ceil(c).max(1);
    let side = c * factor;
    let mut out = RgbImage::from_fn(side, side, |x, y| {
        let (ix, iy) = (x / factor, y / factor);
        let v = norm[(iy * c + ix) as usize];
        let alpha = 0.5 * v.clamp(0.0, 1.0);
        let p = image.get_pixel(ix, iy).0;
        let k = colour(v);
        Rgb(std::array::from_fn(|i| {
            ((1.0 - alpha) * f32::from(p[i]) + alpha * k[i]).round() as u8
        }))
    });
    for b in truth {
        outline(&mut out, b, factor, Rgb([0, 220, 0]));
    }
    if let Some(b) = predicted {
        outline(&mut out, &b, factor, Rgb([0, 120, 255]));
    }
    out
}

/// Draws a box's outline (crop-frame coordinates scaled by `factor`).
fn outline(img: &mut RgbImage, b: &Rect, factor: u32, colour: Rgb<u8>) {
    let side = img.width();
    let scale = |v: f64| ((v * f64::from(factor)).round() as i64).clamp(0, i64::from(side));
    let (x0, y0) = (scale(b.xmin) as u32, scale(b.ymin) as u32);
    let (x1, y1) = (scale(b.xmax) as u32, scale(b.ymax) as u32);
    if x1 <= x0 || y1 <= y0 {
        return;
    }
    for x in x0..x1 {
        img.put_pixel(x, y0, colour);
        img.put_pixel(x, y1 - 1, colour);
    }
    for y in y0..y1 {
        img.put_pixel(x0, y, colour);
        img.put_pixel(x1 - 1, y, colour);
    }
}

/// A name (a concept's, an image's) as part of a file name.
pub fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Preprocess;

    #[test]
    fn the_crop_is_the_decoders_and_the_overlay_is_enlarged() {
        // 4 × 2 image, Resize(2), CenterCrop(2): no resampling, offset (1, 0).
        let rgb = RgbImage::from_fn(4, 2, |x, y| Rgb([x as u8 * 10, y as u8, 0]));
        let frame = CropFrame::new(4, 2, &Preprocess::imagenet(2, 2));
        let crop = crop_rgb(&rgb, &frame);
        assert_eq!(crop.dimensions(), (2, 2));
        assert_eq!(crop.get_pixel(0, 0).0, [10, 0, 0]);
        assert_eq!(crop.get_pixel(1, 1).0, [20, 1, 0]);
        let image = RgbImage::from_pixel(2, 2, Rgb([100, 100, 100]));
        let out = render(&image, &[0.0, 1.0, 0.0, 0.0], &[], None);
        assert_eq!(out.dimensions(), (192, 192));
        // Cold: the image; hot: half yellow.
        assert_eq!(out.get_pixel(0, 0).0, [100, 100, 100]);
        assert_eq!(out.get_pixel(191, 0).0, [178, 178, 50]);
        let boxed = render(
            &image,
            &[0.0; 4],
            &[Rect {
                xmin: 0.0,
                ymin: 0.0,
                xmax: 1.0,
                ymax: 1.0,
            }],
            None,
        );
        assert_eq!(boxed.get_pixel(0, 50).0, [0, 220, 0]);
        assert_eq!(boxed.get_pixel(50, 50).0, [100, 100, 100]);
    }
}
