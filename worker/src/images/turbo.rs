//! JPEG decoding through libjpeg-turbo, the decoder PIL itself uses (`csrc/jpeg_turbo.c`,
//! linked statically by `build.rs` where the build machine has libjpeg-turbo): with its
//! default settings a JPEG's pixels are PIL's bit for bit, and only the part of the image
//! that a resize and crop read is decoded — rows above it are skipped (their entropy data
//! decoded only), columns outside it are neither transformed nor colour-converted, and a
//! large image is decoded at a DCT scale.
//!
//! Everything here answers `None` for what libjpeg-turbo refuses — not a JPEG, corrupt or
//! truncated data (any libjpeg warning counts), CMYK — and in a build without libjpeg-turbo
//! ([`AVAILABLE`] false): the caller then decodes with zune-jpeg or jpeg-decoder, whose
//! behaviour and messages for such files are unchanged.

use std::ops::Range;

/// Whether this build has libjpeg-turbo (see `build.rs`).
pub const AVAILABLE: bool = cfg!(hint_libjpeg_turbo);

/// The decoder that JPEGs of a usual size go through in this build: `libjpeg-turbo`
/// and its version, or `zune-jpeg` — for summaries, where it explains a run's speed.
pub fn decoder() -> String {
    #[cfg(hint_libjpeg_turbo)]
    {
        // SAFETY: the shim returns a static NUL-terminated string.
        let version = unsafe { std::ffi::CStr::from_ptr(ffi::hint_jpeg_version()) };
        format!("libjpeg-turbo {}", version.to_string_lossy())
    }
    #[cfg(not(hint_libjpeg_turbo))]
    {
        "zune-jpeg".to_string()
    }
}

#[cfg(hint_libjpeg_turbo)]
mod ffi {
    use std::os::raw::{c_char, c_int, c_uint};

    extern "C" {
        pub fn hint_jpeg_version() -> *const c_char;

        pub fn hint_jpeg_size(
            data: *const u8,
            len: usize,
            width: *mut c_uint,
            height: *mut c_uint,
        ) -> c_int;

        #[allow(clippy::too_many_arguments)]
        pub fn hint_jpeg_decode(
            data: *const u8,
            len: usize,
            denominator: c_uint,
            width: c_uint,
            height: c_uint,
            col0: c_uint,
            col1: c_uint,
            row0: c_uint,
            row1: c_uint,
            out: *mut u8,
        ) -> c_int;
    }
}

/// The image's `(width, height)`, if `bytes` are a JPEG whose header libjpeg-turbo reads.
pub fn size(bytes: &[u8]) -> Option<(u32, u32)> {
    #[cfg(hint_libjpeg_turbo)]
    {
        if !bytes.starts_with(&[0xFF, 0xD8]) {
            return None;
        }
        let (mut width, mut height) = (0, 0);
        // SAFETY: the shim reads `len` bytes from `data` and writes the two sizes.
        let status =
            unsafe { ffi::hint_jpeg_size(bytes.as_ptr(), bytes.len(), &mut width, &mut height) };
        (status == 0).then_some((width, height))
    }
    #[cfg(not(hint_libjpeg_turbo))]
    {
        let _ = bytes;
        None
    }
}

/// Columns `cols` of rows `rows` of the JPEG `bytes` decoded to RGB at 1 / `divisor` of its
/// size (1, 2, 4 or 8), which must be `scaled` (`⌈width / divisor⌉ × ⌈height / divisor⌉`):
/// `cols.len() × rows.len()` pixels, row after row, 3 bytes each — the same bytes as the
/// same part of a whole decode.
pub fn decode_part(
    bytes: &[u8],
    divisor: u32,
    scaled: (u32, u32),
    cols: Range<usize>,
    rows: Range<usize>,
) -> Option<Vec<u8>> {
    if cols.is_empty() || rows.is_empty() {
        return None;
    }
    #[cfg(hint_libjpeg_turbo)]
    {
        let mut out = vec![0u8; cols.len() * rows.len() * 3];
        let bound = |v: usize| u32::try_from(v).ok();
        // SAFETY: the shim checks the window against the scaled image's size, reads `len`
        // bytes from `data` and writes `cols.len() × rows.len() × 3` bytes to `out`.
        let status = unsafe {
            ffi::hint_jpeg_decode(
                bytes.as_ptr(),
                bytes.len(),
                divisor,
                scaled.0,
                scaled.1,
                bound(cols.start)?,
                bound(cols.end)?,
                bound(rows.start)?,
                bound(rows.end)?,
                out.as_mut_ptr(),
            )
        };
        (status == 0).then_some(out)
    }
    #[cfg(not(hint_libjpeg_turbo))]
    {
        let _ = (bytes, divisor, scaled);
        None
    }
}

#[cfg(all(test, hint_libjpeg_turbo))]
mod tests {
    use super::*;
    use crate::images::torchvision_tests::picture;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, GrayImage};

    fn jpeg(width: u32, height: u32, seed: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        JpegEncoder::new_with_quality(&mut bytes, 85)
            .encode_image(&picture(width, height, seed))
            .unwrap();
        bytes
    }

    /// Every part of an image, at every scale, is the same part of the whole decode — the
    /// shim decodes extra columns at a cropped decode's edges, where upsampling differs.
    #[test]
    fn a_part_is_the_same_part_of_the_whole() {
        let mut files = vec![
            ("500×375", jpeg(500, 375, 1)),
            ("333×217", jpeg(333, 217, 2)),
            ("17×9", jpeg(17, 9, 3)),
        ];
        let mut grey = Vec::new();
        JpegEncoder::new_with_quality(&mut grey, 85)
            .encode(
                GrayImage::from_fn(123, 77, |x, y| image::Luma([(x * 2 + y) as u8])).as_raw(),
                123,
                77,
                ExtendedColorType::L8,
            )
            .unwrap();
        files.push(("grey 123×77", grey));
        let mut state = 5u64;
        let mut draw = |n: usize| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize % n
        };
        for (name, bytes) in &files {
            let (width, height) = size(bytes).unwrap();
            for divisor in [1u32, 2, 4, 8] {
                let scaled = (width.div_ceil(divisor), height.div_ceil(divisor));
                let (w, h) = (scaled.0 as usize, scaled.1 as usize);
                let whole = decode_part(bytes, divisor, scaled, 0..w, 0..h).unwrap();
                for _ in 0..40 {
                    let x0 = draw(w);
                    let x1 = x0 + 1 + draw(w - x0);
                    let y0 = draw(h);
                    let y1 = y0 + 1 + draw(h - y0);
                    let part = decode_part(bytes, divisor, scaled, x0..x1, y0..y1).unwrap();
                    for (r, y) in (y0..y1).enumerate() {
                        assert_eq!(
                            &part[r * (x1 - x0) * 3..(r + 1) * (x1 - x0) * 3],
                            &whole[(y * w + x0) * 3..(y * w + x1) * 3],
                            "{name} at 1/{divisor}: {x0}..{x1} × {y0}..{y1}, row {y}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_decoder_names_its_version() {
        let name = decoder();
        let version = name.strip_prefix("libjpeg-turbo ").unwrap();
        assert!(
            version.split('.').all(|n| n.parse::<u32>().is_ok()),
            "{name}"
        );
    }

    /// What libjpeg-turbo refuses is `None`: another format, a wrong size, a window
    /// outside the image, a truncated file (a warning in libjpeg) — at whatever row it ends.
    #[test]
    fn refusals_are_none() {
        let bytes = jpeg(64, 48, 4);
        assert_eq!(size(&bytes), Some((64, 48)));
        assert_eq!(size(b"\x89PNG\r\n\x1a\n"), None);
        assert_eq!(size(&bytes[..20]), None);
        assert!(decode_part(&bytes, 1, (64, 48), 0..64, 0..48).is_some());
        assert!(decode_part(&bytes, 1, (32, 24), 0..32, 0..24).is_none());
        assert!(decode_part(&bytes, 1, (64, 48), 0..65, 0..48).is_none());
        assert!(decode_part(&bytes, 1, (64, 48), 3..3, 0..48).is_none());
        let truncated = &bytes[..bytes.len() * 3 / 4];
        assert!(decode_part(truncated, 1, (64, 48), 0..64, 0..48).is_none());
        assert!(decode_part(truncated, 1, (64, 48), 0..64, 0..8).is_none());
    }
}
