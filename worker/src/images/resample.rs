//! PIL's antialiased bilinear resize (Pillow's `ImagingResample` with `Image.BILINEAR`, which
//! torchvision's `Resize` calls on PIL images), bit for bit, for a window of the output only.
//!
//! PIL's resize is separable: a horizontal pass into an 8-bit image, rounded, then a
//! vertical pass. Each output pixel's taps start at `trunc(centre − support + ½)` (clamped
//! to the image), with triangle weights over a support widened by the scale when shrinking,
//! normalised to sum 1 in `f64` and then rounded to 22-bit fixed point; sums start at ½
//! and are clipped to 0‥255. Because every output pixel depends on its own taps only, the
//! pixels inside a centre crop come out identical whether the whole image is resized and
//! then cropped, or only the rows and columns the crop needs are computed — which is what
//! [`resize_window`] does (for `Resize(256)` + `CenterCrop(224)` of a 500×375 image it
//! computes 224 of the 341 columns; for a 64 crop, a 64×64 window).
//!
//! The passes always run horizontal first, as Pillow's C code has for years. Pillow 13 runs
//! the vertical pass first for some sizes (257×1000 → 256×996, 400×300 → 390×100; its rule
//! is not replicated here), and there the 8-bit rounding in between differs: values stay
//! within 1 grey level of PIL's. Why our own code rather than `fast_image_resize`: only the
//! crop's pixels are computed, the result is PIL's to the bit in the usual case, and it is
//! faster than Pillow already (500×375 → 341×256 on one core of the development machine:
//! 0.76 ms for the whole image, 0.44 ms for the 224 crop, Pillow 0.89 ms), next to a JPEG
//! decode of about the same time — so no new dependency. The AVX2 build (see
//! [`resize_window`]) took the decoding pool from 1,080–1,102 to 1,374–1,399 images/s on 2
//! cores (`bench_decode`, batch 64; README, Benchmarks).

use std::ops::Range;

/// Fractional bits of PIL's 8-bit-per-channel coefficients (`PRECISION_BITS`).
const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Channels of an interleaved RGB image.
const RGB: usize = 3;

/// One axis's taps for a window of outputs: where each output's input run starts, and its
/// fixed-point weights.
#[derive(Debug)]
struct AxisTaps {
    /// The first input index of each output.
    first: Vec<usize>,
    /// The number of inputs each output reads.
    count: Vec<usize>,
    /// `taps` weights per output (only the first `count` are used).
    weights: Vec<i32>,
    /// The stride of `weights`: PIL's `ksize`, `2·ceil(support) + 1`.
    taps: usize,
}

impl AxisTaps {
    /// PIL's `precompute_coeffs` followed by `normalize_coeffs_8bpc`, for the outputs in
    /// `window` of an `input` → `output` resize; the arithmetic (and its order) is PIL's,
    /// so the rounded weights are the same integers.
    fn new(input: usize, output: usize, window: Range<usize>) -> Self {
        let scale = input as f64 / output as f64;
        let filterscale = scale.max(1.0);
        // The bilinear filter's support is 1, widened by the scale when shrinking.
        let support = filterscale;
        let taps = support.ceil() as usize * 2 + 1;
        let ss = 1.0 / filterscale;
        let mut taps_of = AxisTaps {
            first: Vec::with_capacity(window.len()),
            count: Vec::with_capacity(window.len()),
            weights: Vec::with_capacity(window.len() * taps),
            taps,
        };
        let mut k = vec![0f64; taps];
        for xx in window {
            let center = (xx as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero, as `as` does; both ends then clamp.
            let xmin = ((center - support + 0.5) as i64).max(0);
            let xmax = ((center + support + 0.5) as i64).min(input as i64) - xmin;
            let (xmin, xmax) = (xmin as usize, xmax.max(0) as usize);
            let mut ww = 0.0;
            for (x, kx) in k.iter_mut().enumerate().take(xmax) {
                let w = triangle(((x + xmin) as f64 - center + 0.5) * ss);
                *kx = w;
                ww += w;
            }
            for kx in &mut k[..xmax] {
                if ww != 0.0 {
                    *kx /= ww;
                }
            }
            taps_of.first.push(xmin);
            taps_of.count.push(xmax);
            taps_of
                .weights
                .extend(k[..xmax].iter().map(|&kx| fixed_point(kx)));
            taps_of
                .weights
                .resize(taps_of.weights.len() + taps - xmax, 0);
        }
        taps_of
    }

    /// The inputs that the window's outputs read, as one range.
    fn span(&self) -> Range<usize> {
        let start = self.first.iter().copied().min().unwrap_or(0);
        let end = self
            .first
            .iter()
            .zip(&self.count)
            .map(|(f, c)| f + c)
            .max()
            .unwrap_or(start);
        start..end
    }

    /// Output `i`'s first input and its weights.
    fn of(&self, i: usize) -> (usize, &[i32]) {
        let from = i * self.taps;
        (self.first[i], &self.weights[from..from + self.count[i]])
    }

    /// The same sums with every output reading exactly `taps` inputs: a run that would
    /// pass the end of the `input` inputs starts earlier, its weights shifted right behind
    /// zeros (which add nothing, so the sums are unchanged). A fixed trip count lets the
    /// compiler unroll the horizontal pass. `None` if the input is shorter than `taps`.
    fn fixed_width(&self, input: usize) -> Option<AxisTaps> {
        if input < self.taps {
            return None;
        }
        let mut fixed = AxisTaps {
            first: Vec::with_capacity(self.first.len()),
            count: vec![self.taps; self.first.len()],
            weights: vec![0; self.weights.len()],
            taps: self.taps,
        };
        for i in 0..self.first.len() {
            let (first, weights) = self.of(i);
            let start = first.min(input - self.taps);
            let shift = first - start;
            fixed.first.push(start);
            let row = &mut fixed.weights[i * self.taps..(i + 1) * self.taps];
            row[shift..shift + weights.len()].copy_from_slice(weights);
        }
        Some(fixed)
    }
}

/// PIL's `bilinear_filter`: the triangle `max(0, 1 − |x|)`.
fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// A normalised weight as PIL's 8-bit passes use it: `(int)(±0.5 + k · 2²²)`.
fn fixed_point(k: f64) -> i32 {
    let scaled = k * f64::from(1u32 << PRECISION_BITS);
    if k < 0.0 {
        (-0.5 + scaled) as i32
    } else {
        (0.5 + scaled) as i32
    }
}

/// The sum's starting value: ½ in fixed point, so the final shift rounds.
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// PIL's `clip8`: a fixed-point sum back to 0‥255. PIL branches (255 from `2³⁰`, 0 at or
/// below 0, else the sum shifted); shifting first and clamping gives the same byte without
/// a branch (a sum in `(−2²², 0]` shifts to −1 or 0).
#[inline(always)]
fn clip8(sum: i32) -> u8 {
    (sum >> PRECISION_BITS).clamp(0, 255) as u8
}

/// One output pixel of the horizontal pass: the fixed-point sums of `weights` over the RGB
/// pixels of `input`, clipped to 8 bits. Always inlined, so that under
/// [`horizontal_row`]'s fixed `N` the loop's trip count is a constant the compiler unrolls.
#[inline(always)]
fn weighted_pixel(input: &[u8], weights: &[i32]) -> [u8; RGB] {
    let mut sums = [HALF; RGB];
    for (&w, rgb) in weights.iter().zip(input.chunks_exact(RGB)) {
        sums[0] += i32::from(rgb[0]) * w;
        sums[1] += i32::from(rgb[1]) * w;
        sums[2] += i32::from(rgb[2]) * w;
    }
    sums.map(clip8)
}

/// One row of the horizontal pass, every output reading `N` inputs (see
/// [`AxisTaps::fixed_width`]).
#[inline(always)]
fn horizontal_row<const N: usize>(row: &[u8], out: &mut [u8], taps: &AxisTaps) {
    for ((pixel, &first), weights) in out
        .chunks_exact_mut(RGB)
        .zip(&taps.first)
        .zip(taps.weights.chunks_exact(N))
    {
        let input = &row[first * RGB..(first + N) * RGB];
        pixel.copy_from_slice(&weighted_pixel(input, weights));
    }
}

/// One row of the horizontal pass, for any taps.
#[inline(always)]
fn horizontal_row_any(row: &[u8], out: &mut [u8], taps: &AxisTaps) {
    for (i, pixel) in out.chunks_exact_mut(RGB).enumerate() {
        let (first, weights) = taps.of(i);
        let input = &row[first * RGB..(first + weights.len()) * RGB];
        pixel.copy_from_slice(&weighted_pixel(input, weights));
    }
}

/// Resizes the interleaved RGB image `src` (`width × height`) to `out_width × out_height`
/// exactly as PIL's bilinear `Image.resize` does, computing only the output columns `cols`
/// and rows `rows`; returns them as interleaved RGB, `cols.len() × rows.len()`.
///
/// A side that keeps its size is not resampled (as in PIL, which skips that pass).
///
/// Where the CPU has AVX2, an AVX2 build of the same code runs (module `avx2` here): the
/// vertical pass's integer sums vectorise 8 lanes wide instead of baseline x86-64's 4, and
/// the horizontal pass, whose three interleaved channels the compiler leaves scalar, is
/// written in vector instructions that sum a pixel's channels and two taps at once. Integer
/// arithmetic throughout: the pixels are the same either way (tested).
pub fn resize_window(
    src: &[u8],
    size: (usize, usize),
    out_size: (usize, usize),
    cols: Range<usize>,
    rows: Range<usize>,
) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2::resize_window(src, size, out_size, cols, rows) };
        }
    }
    resize_window_with::<false>(src, size, out_size, cols, rows)
}

/// [`resize_window`]'s code, compiled into each build of it; `AVX2`: the horizontal pass in
/// AVX2 instructions (only called so where the CPU has them).
#[inline(always)]
fn resize_window_with<const AVX2: bool>(
    src: &[u8],
    (width, height): (usize, usize),
    (out_width, out_height): (usize, usize),
    cols: Range<usize>,
    rows: Range<usize>,
) -> Vec<u8> {
    debug_assert_eq!(src.len(), width * height * RGB);
    debug_assert!(cols.end <= out_width && rows.end <= out_height);
    let row_len = cols.len() * RGB;
    let vertical = (out_height != height).then(|| AxisTaps::new(height, out_height, rows.clone()));
    // The source rows the vertical pass reads (or the window's own rows, without one).
    let src_rows = vertical.as_ref().map_or(rows.clone(), AxisTaps::span);

    // Horizontal pass, on the rows that the vertical pass needs, into 8 bits.
    let mut between = vec![0u8; src_rows.len() * row_len];
    if out_width == width {
        for (y, out) in src_rows.clone().zip(between.chunks_exact_mut(row_len)) {
            let row = &src[y * width * RGB..(y + 1) * width * RGB];
            out.copy_from_slice(&row[cols.start * RGB..cols.end * RGB]);
        }
    } else {
        let exact = AxisTaps::new(width, out_width, cols.clone());
        let horizontal = exact.fixed_width(width);
        #[cfg(target_arch = "x86_64")]
        let paired = horizontal
            .as_ref()
            .filter(|_| AVX2)
            .map(avx2::PairedWeights::new);
        for (y, out) in src_rows.clone().zip(between.chunks_exact_mut(row_len)) {
            let row = &src[y * width * RGB..(y + 1) * width * RGB];
            #[cfg(target_arch = "x86_64")]
            if let (Some(h), Some(paired)) = (horizontal.as_ref(), paired.as_ref()) {
                // SAFETY: `paired` exists only in the build that `avx2::resize_window`
                // runs, where the CPU has AVX2.
                unsafe { avx2::horizontal_row(row, out, h, paired) };
                continue;
            }
            match horizontal.as_ref() {
                // Shrinking by 1‥2× (5 taps) or 2‥3× (7), or growing (3), with the trip
                // count known to the compiler.
                Some(h) if h.taps == 3 => horizontal_row::<3>(row, out, h),
                Some(h) if h.taps == 5 => horizontal_row::<5>(row, out, h),
                Some(h) if h.taps == 7 => horizontal_row::<7>(row, out, h),
                Some(h) => horizontal_row_any(row, out, h),
                None => horizontal_row_any(row, out, &exact),
            }
        }
    }
    let Some(vertical) = vertical else {
        return between;
    };

    // Vertical pass: each output row is a weighted sum of whole rows of `between`, which
    // the compiler vectorises.
    let mut out = vec![0u8; rows.len() * row_len];
    let mut sums = vec![0i32; row_len];
    for (i, out_row) in out.chunks_exact_mut(row_len).enumerate() {
        let (first, weights) = vertical.of(i);
        sums.fill(HALF);
        for (j, &w) in weights.iter().enumerate() {
            let y = first + j - src_rows.start;
            let row = &between[y * row_len..(y + 1) * row_len];
            for (sum, &v) in sums.iter_mut().zip(row) {
                *sum += i32::from(v) * w;
            }
        }
        for (o, &sum) in out_row.iter_mut().zip(&sums) {
            *o = clip8(sum);
        }
    }
    out
}

/// The AVX2 build of [`resize_window`], and its horizontal pass.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;
    use std::ops::Range;

    use super::{resize_window_with, weighted_pixel, AxisTaps, HALF, PRECISION_BITS, RGB};

    /// [`resize_window`](super::resize_window) compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn resize_window(
        src: &[u8],
        size: (usize, usize),
        out_size: (usize, usize),
        cols: Range<usize>,
        rows: Range<usize>,
    ) -> Vec<u8> {
        resize_window_with::<true>(src, size, out_size, cols, rows)
    }

    /// Each output's weights for two taps at a time, each repeated for the four lanes of a
    /// pixel (R, G, B and a zero lane): `[w₀ w₀ w₀ w₀ w₁ w₁ w₁ w₁]`, `[w₂ … w₃ …]`, …, a
    /// zero weight after an odd last tap.
    pub(super) struct PairedWeights {
        pairs: usize,
        weights: Vec<[i32; 8]>,
    }

    impl PairedWeights {
        pub(super) fn new(taps: &AxisTaps) -> Self {
            let pairs = taps.taps.div_ceil(2);
            let mut weights = Vec::with_capacity(taps.first.len() * pairs);
            for output in taps.weights.chunks_exact(taps.taps) {
                for pair in 0..pairs {
                    let w = |k: usize| output.get(k).copied().unwrap_or(0);
                    let (a, b) = (w(2 * pair), w(2 * pair + 1));
                    weights.push([a, a, a, a, b, b, b, b]);
                }
            }
            PairedWeights { pairs, weights }
        }
    }

    /// One row of the horizontal pass (`taps` of a fixed width, see
    /// [`AxisTaps::fixed_width`]): per output pixel, two input pixels at a time are loaded,
    /// spread to eight 32-bit lanes (R G B 0 R G B 0), multiplied by their weights and
    /// added; the two halves are then added, shifted and clamped to 0‥255 by saturating
    /// packs — PIL's sums and `clip8`, in another order of integer additions. An output
    /// whose 8-byte loads would pass the row's end is computed by the scalar code.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_row(
        row: &[u8],
        out: &mut [u8],
        taps: &AxisTaps,
        paired: &PairedWeights,
    ) {
        // Bytes 0‥2 and 3‥5 of the load to lanes 0‥2 and 4‥6; -1 zeroes a byte.
        let spread = _mm_setr_epi8(0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1, -1, -1, -1, -1);
        let half = _mm_set1_epi32(HALF);
        for (i, (pixel, &first)) in out.chunks_exact_mut(RGB).zip(&taps.first).enumerate() {
            let pairs = &paired.weights[i * paired.pairs..(i + 1) * paired.pairs];
            if (first + 2 * (paired.pairs - 1)) * RGB + 8 > row.len() {
                let (_, weights) = taps.of(i);
                let input = &row[first * RGB..(first + weights.len()) * RGB];
                pixel.copy_from_slice(&weighted_pixel(input, weights));
                continue;
            }
            let mut sums = _mm256_setzero_si256();
            for (k, weights) in pairs.iter().enumerate() {
                // SAFETY: the 8 bytes from input pixel `first + 2k` lie within `row`
                // (checked above for the last pair).
                let bytes = unsafe {
                    _mm_loadl_epi64(row.as_ptr().add((first + 2 * k) * RGB).cast::<__m128i>())
                };
                let lanes = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(bytes, spread));
                // SAFETY: `weights` is 8 i32, read unaligned.
                let weights = unsafe { _mm256_loadu_si256(weights.as_ptr().cast::<__m256i>()) };
                sums = _mm256_add_epi32(sums, _mm256_mullo_epi32(lanes, weights));
            }
            let sum = _mm_add_epi32(
                _mm_add_epi32(
                    _mm256_castsi256_si128(sums),
                    _mm256_extracti128_si256::<1>(sums),
                ),
                half,
            );
            let shifted = _mm_srai_epi32::<{ PRECISION_BITS as i32 }>(sum);
            let bytes = _mm_packus_epi16(_mm_packs_epi32(shifted, shifted), _mm_setzero_si128());
            let rgb0 = (_mm_cvtsi128_si32(bytes) as u32).to_le_bytes();
            pixel.copy_from_slice(&rgb0[..RGB]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole resized image, for comparing windows against.
    fn full(src: &[u8], size: (usize, usize), out: (usize, usize)) -> Vec<u8> {
        resize_window(src, size, out, 0..out.0, 0..out.1)
    }

    fn pattern(width: usize, height: usize) -> Vec<u8> {
        (0..width * height * RGB)
            .map(|i| ((i * 7919) % 251 + (i / (width * 3)) % 5) as u8)
            .collect()
    }

    #[test]
    fn weights_are_pils() {
        // 500 → 341 (scale 1.466…): support 1.466, ksize 2·2 + 1 = 5.
        let taps = AxisTaps::new(500, 341, 0..341);
        assert_eq!(taps.taps, 5);
        for i in 0..341 {
            let (_, w) = taps.of(i);
            let sum: i32 = w.iter().sum();
            // Rounding each weight moves the sum by at most half a unit per tap.
            assert!((sum - (1 << PRECISION_BITS)).abs() <= 3, "{i}: {sum}");
        }
        // The first output: centre 0.733, taps from trunc(-0.233) = 0 to trunc(2.7) = 2.
        assert_eq!((taps.first[0], taps.count[0]), (0, 2));
        // Upscaling keeps the support at 1: output 0 of 2 → 4 (centre 0.25) reads inputs
        // trunc(-0.25) = 0 up to trunc(1.75) = 1, that is input 0 alone.
        let up = AxisTaps::new(2, 4, 0..4);
        assert_eq!(up.of(0), (0, &[1 << PRECISION_BITS][..]));
    }

    #[test]
    fn a_window_equals_the_same_part_of_the_whole() {
        for (size, out) in [
            ((500, 375), (341, 256)),
            ((375, 500), (256, 341)),
            ((40, 30), (85, 64)),   // upscale
            ((64, 300), (64, 300)), // no resize at all
            ((64, 300), (64, 150)), // vertical pass only
            ((300, 64), (150, 64)), // horizontal pass only
        ] {
            let src = pattern(size.0, size.1);
            let whole = full(&src, size, out);
            for (cols, rows) in [
                (0..out.0, 0..out.1),
                (out.0 / 4..out.0 * 3 / 4, out.1 / 3..out.1 - 1),
                (out.0 - 1..out.0, 0..1),
            ] {
                let window = resize_window(&src, size, out, cols.clone(), rows.clone());
                for (r, y) in rows.clone().enumerate() {
                    let expected =
                        &whole[(y * out.0 + cols.start) * RGB..(y * out.0 + cols.end) * RGB];
                    let got = &window[r * cols.len() * RGB..(r + 1) * cols.len() * RGB];
                    assert_eq!(got, expected, "{size:?} → {out:?}, row {y}");
                }
            }
        }
    }

    /// The AVX2 build (where this CPU has it) gives the portable code's bytes: sizes that
    /// shrink by 1‥2× (5 taps), 2‥3× (7) and more (the generic path), grow (3 taps), and
    /// windows reaching the rows' ends (where the vector loads fall back to scalar code).
    #[test]
    fn the_avx2_build_gives_the_portable_bytes() {
        let mut state = 7u64;
        for (size, out) in [
            ((500, 375), (341, 256)),
            ((375, 500), (256, 341)),
            ((640, 427), (383, 256)),
            ((700, 300), (256, 110)),
            ((1000, 750), (341, 256)),
            ((40, 30), (85, 64)),
            ((9, 4), (3, 2)),
            ((5, 5), (2, 7)),
        ] {
            // Noise, and blocks of 0 and 255 where the sums clip.
            let src: Vec<u8> = (0..size.0 * size.1 * RGB)
                .map(|i| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                    match (i / RGB / 7) % 5 {
                        0 => 0,
                        1 => 255,
                        _ => (state >> 56) as u8,
                    }
                })
                .collect();
            for (cols, rows) in [(0..out.0, 0..out.1), (out.0 / 3..out.0, 1..out.1 / 2 + 1)] {
                let portable =
                    resize_window_with::<false>(&src, size, out, cols.clone(), rows.clone());
                assert_eq!(
                    resize_window(&src, size, out, cols.clone(), rows.clone()),
                    portable,
                    "{size:?} → {out:?}, {cols:?} × {rows:?}"
                );
            }
        }
    }

    #[test]
    fn clipping_is_pils() {
        let pil = |sum: i32| {
            if sum >= (1 << PRECISION_BITS << 8) {
                255
            } else if sum <= 0 {
                0
            } else {
                (sum >> PRECISION_BITS) as u8
            }
        };
        let one = 1 << PRECISION_BITS;
        let edges = [
            i32::MIN,
            -one - 1,
            -one,
            -1,
            0,
            1,
            one - 1,
            one,
            256 * one - 1,
        ];
        for sum in edges
            .into_iter()
            .chain([256 * one, i32::MAX])
            .chain((-3 * one..300 * one).step_by(4093))
        {
            assert_eq!(clip8(sum), pil(sum), "{sum}");
        }
    }

    #[test]
    fn flat_colour_stays_flat() {
        let src: Vec<u8> = [10u8, 128, 255].repeat(123 * 77);
        let out = full(&src, (123, 77), (57, 31));
        assert!(out.chunks_exact(3).all(|p| p == [10, 128, 255]));
    }
}
