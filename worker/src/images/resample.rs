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
//! cores, and its horizontal pass in 16-bit multiply-adds then to 1,453–1,594
//! (`bench_decode`, batch 64; README, Benchmarks).

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

    /// The same taps counting inputs from `part.start`, for a row that holds the inputs
    /// `part` only.
    ///
    /// # Panics
    /// If an output reads an input outside `part`.
    fn counted_from(mut self, part: &Range<usize>) -> AxisTaps {
        let span = self.span();
        assert!(
            part.start <= span.start && span.end <= part.end,
            "the source holds the columns the resize reads"
        );
        for first in &mut self.first {
            *first -= part.start;
        }
        self
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

/// One row of the horizontal pass, for any taps, from output `from` on (the outputs before
/// it are left as they are).
#[inline(always)]
fn horizontal_row_any(row: &[u8], out: &mut [u8], taps: &AxisTaps, from: usize) {
    for (pixel, i) in out[from * RGB..].chunks_exact_mut(RGB).zip(from..) {
        let (first, weights) = taps.of(i);
        let input = &row[first * RGB..(first + weights.len()) * RGB];
        pixel.copy_from_slice(&weighted_pixel(input, weights));
    }
}

/// An interleaved RGB image of `size` to resize — whole, or only the part of it that a
/// resize window reads ([`Source::reads`]), as a JPEG decoded in part gives it.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    /// Rows `rows` of columns `cols`, row after row, 3 bytes a pixel.
    pixels: &'a [u8],
    size: (usize, usize),
    cols: Range<usize>,
    rows: Range<usize>,
}

impl<'a> Source<'a> {
    /// The whole image.
    pub fn whole(pixels: &'a [u8], size: (usize, usize)) -> Self {
        Source::part(pixels, size, 0..size.0, 0..size.1)
    }

    /// Columns `cols` and rows `rows` of an image of `size`.
    ///
    /// # Panics
    /// If `pixels` is not `cols.len() × rows.len()` RGB pixels, or the part is not inside
    /// the image.
    pub fn part(
        pixels: &'a [u8],
        size: (usize, usize),
        cols: Range<usize>,
        rows: Range<usize>,
    ) -> Self {
        assert!(
            cols.end <= size.0 && rows.end <= size.1,
            "a part inside the image"
        );
        assert_eq!(
            pixels.len(),
            cols.len() * rows.len() * RGB,
            "the part's pixels"
        );
        Source {
            pixels,
            size,
            cols,
            rows,
        }
    }

    /// The columns and rows of an image of `size` that [`resize_window`] reads to compute
    /// the output columns `cols` and rows `rows` of an `out_size` resize.
    pub fn reads(
        size: (usize, usize),
        out_size: (usize, usize),
        cols: Range<usize>,
        rows: Range<usize>,
    ) -> (Range<usize>, Range<usize>) {
        let across = if out_size.0 == size.0 {
            cols
        } else {
            let exact = AxisTaps::new(size.0, out_size.0, cols);
            exact.fixed_width(size.0).as_ref().unwrap_or(&exact).span()
        };
        let down = if out_size.1 == size.1 {
            rows
        } else {
            AxisTaps::new(size.1, out_size.1, rows).span()
        };
        (across, down)
    }

    /// The part's pixels of the image's row `y` (its columns `cols`).
    fn row(&self, y: usize) -> &'a [u8] {
        let len = self.cols.len() * RGB;
        let at = (y - self.rows.start) * len;
        &self.pixels[at..at + len]
    }
}

/// Resizes the interleaved RGB image `src` (`width × height`) to `out_width × out_height`
/// exactly as PIL's bilinear `Image.resize` does, computing only the output columns `cols`
/// and rows `rows`; returns them as interleaved RGB, `cols.len() × rows.len()`.
///
/// A side that keeps its size is not resampled (as in PIL, which skips that pass).
///
/// # Panics
/// If `src` is a part that lacks pixels the window reads (see [`Source::reads`]).
///
/// Where the CPU has AVX2, an AVX2 build of the same code runs (module `avx2` here): the
/// vertical pass's integer sums vectorise 8 lanes wide instead of baseline x86-64's 4, and
/// the horizontal pass, whose three interleaved channels the compiler leaves scalar, is
/// written in 16-bit multiply-adds (`pmaddwd`, PIL's 22-bit weights split in two halves)
/// that sum a pixel's channels at two taps, for two outputs at once. Integer arithmetic
/// throughout: the pixels are the same either way (tested).
pub fn resize_window(
    src: &Source,
    out_size: (usize, usize),
    cols: Range<usize>,
    rows: Range<usize>,
) -> Vec<u8> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { avx2::resize_window(src, out_size, cols, rows) };
        }
    }
    resize_window_with::<false>(src, out_size, cols, rows)
}

/// [`resize_window`]'s code, compiled into each build of it; `AVX2`: the horizontal pass in
/// AVX2 instructions (only called so where the CPU has them).
#[inline(always)]
fn resize_window_with<const AVX2: bool>(
    src: &Source,
    (out_width, out_height): (usize, usize),
    cols: Range<usize>,
    rows: Range<usize>,
) -> Vec<u8> {
    let (width, height) = src.size;
    debug_assert!(cols.end <= out_width && rows.end <= out_height);
    let row_len = cols.len() * RGB;
    let vertical = (out_height != height).then(|| AxisTaps::new(height, out_height, rows.clone()));
    // The source rows the vertical pass reads (or the window's own rows, without one).
    let src_rows = vertical.as_ref().map_or(rows.clone(), AxisTaps::span);
    assert!(
        src.rows.start <= src_rows.start && src_rows.end <= src.rows.end,
        "the source holds the rows the resize reads"
    );

    // Horizontal pass, on the rows that the vertical pass needs, into 8 bits. The taps
    // count columns from the source's first.
    let mut between = vec![0u8; src_rows.len() * row_len];
    if out_width == width {
        assert!(src.cols.start <= cols.start && cols.end <= src.cols.end);
        let read = (cols.start - src.cols.start) * RGB..(cols.end - src.cols.start) * RGB;
        for (y, out) in src_rows.clone().zip(between.chunks_exact_mut(row_len)) {
            out.copy_from_slice(&src.row(y)[read.clone()]);
        }
    } else {
        let exact = AxisTaps::new(width, out_width, cols.clone());
        let horizontal = exact.fixed_width(width);
        let (exact, horizontal) = (
            exact.counted_from(&src.cols),
            horizontal.map(|h| h.counted_from(&src.cols)),
        );
        #[cfg(target_arch = "x86_64")]
        let split = horizontal
            .as_ref()
            .filter(|_| AVX2)
            .map(avx2::SplitWeights::new);
        for (y, out) in src_rows.clone().zip(between.chunks_exact_mut(row_len)) {
            let row = src.row(y);
            #[cfg(target_arch = "x86_64")]
            if let (Some(h), Some(split)) = (horizontal.as_ref(), split.as_ref()) {
                // SAFETY: `split` exists only in the build that `avx2::resize_window`
                // runs, where the CPU has AVX2.
                unsafe { avx2::horizontal_row(row, out, h, split) };
                continue;
            }
            match horizontal.as_ref() {
                // Shrinking by 1‥2× (5 taps) or 2‥3× (7), or growing (3), with the trip
                // count known to the compiler.
                Some(h) if h.taps == 3 => horizontal_row::<3>(row, out, h),
                Some(h) if h.taps == 5 => horizontal_row::<5>(row, out, h),
                Some(h) if h.taps == 7 => horizontal_row::<7>(row, out, h),
                Some(h) => horizontal_row_any(row, out, h, 0),
                None => horizontal_row_any(row, out, &exact, 0),
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

    use super::{
        horizontal_row_any, resize_window_with, AxisTaps, Source, HALF, PRECISION_BITS, RGB,
    };

    /// [`resize_window`](super::resize_window) compiled for AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn resize_window(
        src: &Source,
        out_size: (usize, usize),
        cols: Range<usize>,
        rows: Range<usize>,
    ) -> Vec<u8> {
        resize_window_with::<true>(src, out_size, cols, rows)
    }

    /// Taps per vector load: 16 bytes hold five RGB pixels.
    const GROUP: usize = 5;
    /// Pairs of taps per group: (0, 1), (2, 3) and (4, none).
    const PAIRS: usize = 3;
    /// Where a 22-bit weight is split into two halves that fit `pmaddwd`'s 16 bits.
    const SPLIT: u32 = 11;

    /// The horizontal weights as `pmaddwd` takes them, for two outputs at once (one per
    /// 128-bit half). PIL's weights have 22 fractional bits, too many for 16-bit
    /// multiplies, so each is split, `w = high · 2¹¹ + low` (`high` at most 2¹¹, `low`
    /// below it), and the pass sums `pixel · high` and `pixel · low` apart:
    /// `(Σ high·p) · 2¹¹ + Σ low·p` is PIL's sum exactly (at most 255 · 2²² ≈ 2³⁰, no
    /// overflow).
    pub(super) struct SplitWeights {
        /// Groups of [`GROUP`] taps per output.
        groups: usize,
        /// Per pair of outputs (0 and 1, 2 and 3, …), group and pair of taps: the high
        /// and the low halves as 16 `i16`, `[wₐ w_b]` four times per output — the pair's
        /// two taps for each of a pixel's lanes R, G, B and a zero lane.
        weights: Vec<[[i16; 16]; 2]>,
    }

    impl SplitWeights {
        pub(super) fn new(taps: &AxisTaps) -> Self {
            let groups = taps.taps.div_ceil(GROUP);
            let mut weights = Vec::with_capacity(taps.first.len() / 2 * groups * PAIRS);
            for two in taps.weights.chunks_exact(2 * taps.taps) {
                let outputs = two.split_at(taps.taps);
                for group in 0..groups {
                    for pair in 0..PAIRS {
                        let mut halves = [[0i16; 16]; 2];
                        for (half, output) in [outputs.0, outputs.1].into_iter().enumerate() {
                            for slot in 0..2 {
                                let k = 2 * pair + slot;
                                // The group's sixth slot belongs to no tap of it.
                                let w = if k < GROUP {
                                    output.get(group * GROUP + k).copied().unwrap_or(0)
                                } else {
                                    0
                                };
                                for lane in 0..4 {
                                    let at = half * 8 + lane * 2 + slot;
                                    halves[0][at] = (w >> SPLIT) as i16;
                                    halves[1][at] = (w & ((1 << SPLIT) - 1)) as i16;
                                }
                            }
                        }
                        weights.push(halves);
                    }
                }
            }
            SplitWeights { groups, weights }
        }
    }

    /// One row of the horizontal pass (`taps` of a fixed width, see
    /// [`AxisTaps::fixed_width`]), two outputs at a time: each output's input pixels are
    /// loaded five at a time (16 bytes, one per 128-bit half), shuffled into 16-bit pairs
    /// of one channel at two taps (R R G G B B 0 0), and `pmaddwd` multiplies them by the
    /// two taps' split weights and adds each pair — PIL's sums and `clip8`, in another
    /// order of integer additions. Outputs whose loads would pass the row's end (the
    /// last few, as the taps' starts never decrease), and an odd last output, are computed
    /// by the scalar code.
    ///
    /// # Safety
    /// The CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn horizontal_row(
        row: &[u8],
        out: &mut [u8],
        taps: &AxisTaps,
        split: &SplitWeights,
    ) {
        // Per pair of taps, the bytes of their pixels' R, G and B as 16-bit lanes
        // (−1 zeroes a byte); the third pair has the group's fifth pixel only.
        let mask = |m: __m128i| _mm256_broadcastsi128_si256(m);
        let masks = [
            mask(_mm_setr_epi8(
                0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
            )),
            mask(_mm_setr_epi8(
                6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,
            )),
            mask(_mm_setr_epi8(
                12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, -1, -1, -1, -1,
            )),
        ];
        let half = _mm256_set1_epi32(HALF);
        let per_pair = split.groups * PAIRS;
        let last_load = GROUP * (split.groups - 1);
        let outputs = taps.first.len();
        let mut i = 0;
        while i + 1 < outputs && (taps.first[i + 1] + last_load) * RGB + 16 <= row.len() {
            let (first0, first1) = (taps.first[i], taps.first[i + 1]);
            let weights = &split.weights[i / 2 * per_pair..(i / 2 + 1) * per_pair];
            let (mut high, mut low) = (_mm256_setzero_si256(), _mm256_setzero_si256());
            for (group, weights) in weights.chunks_exact(PAIRS).enumerate() {
                // SAFETY: 16 bytes from either output's group lie within `row` (the loop's
                // condition, for the later output, whose start is the larger).
                let pixels = unsafe {
                    let at = |first: usize| row.as_ptr().add((first + group * GROUP) * RGB);
                    _mm256_loadu2_m128i(at(first1).cast(), at(first0).cast())
                };
                for (mask, [high_w, low_w]) in masks.iter().zip(weights) {
                    let lanes = _mm256_shuffle_epi8(pixels, *mask);
                    // SAFETY: each is 16 i16, read unaligned.
                    let (high_w, low_w) = unsafe {
                        (
                            _mm256_loadu_si256(high_w.as_ptr().cast()),
                            _mm256_loadu_si256(low_w.as_ptr().cast()),
                        )
                    };
                    high = _mm256_add_epi32(high, _mm256_madd_epi16(lanes, high_w));
                    low = _mm256_add_epi32(low, _mm256_madd_epi16(lanes, low_w));
                }
            }
            let sums = _mm256_add_epi32(
                _mm256_add_epi32(_mm256_slli_epi32::<{ SPLIT as i32 }>(high), low),
                half,
            );
            let shifted = _mm256_srai_epi32::<{ PRECISION_BITS as i32 }>(sums);
            let zero = _mm256_setzero_si256();
            let bytes = _mm256_packus_epi16(_mm256_packs_epi32(shifted, zero), zero);
            let rgb0 = _mm256_cvtsi256_si32(bytes) as u32;
            let rgb1 = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(bytes)) as u32;
            let six = (u64::from(rgb0) & 0xFF_FFFF) | (u64::from(rgb1) << 24);
            out[i * RGB..(i + 2) * RGB].copy_from_slice(&six.to_le_bytes()[..2 * RGB]);
            i += 2;
        }
        horizontal_row_any(row, out, taps, i);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole resized image, for comparing windows against.
    fn full(src: &[u8], size: (usize, usize), out: (usize, usize)) -> Vec<u8> {
        resize_window(&Source::whole(src, size), out, 0..out.0, 0..out.1)
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
                let window =
                    resize_window(&Source::whole(&src, size), out, cols.clone(), rows.clone());
                for (r, y) in rows.clone().enumerate() {
                    let expected =
                        &whole[(y * out.0 + cols.start) * RGB..(y * out.0 + cols.end) * RGB];
                    let got = &window[r * cols.len() * RGB..(r + 1) * cols.len() * RGB];
                    assert_eq!(got, expected, "{size:?} → {out:?}, row {y}");
                }
                // From the part of the image the window reads (as a JPEG decoded in part
                // gives it), in both builds: the same bytes.
                let (read_cols, read_rows) = Source::reads(size, out, cols.clone(), rows.clone());
                let part: Vec<u8> = read_rows
                    .clone()
                    .flat_map(|y| {
                        &src[(y * size.0 + read_cols.start) * RGB
                            ..(y * size.0 + read_cols.end) * RGB]
                    })
                    .copied()
                    .collect();
                let part = Source::part(&part, size, read_cols, read_rows);
                assert_eq!(
                    resize_window(&part, out, cols.clone(), rows.clone()),
                    window,
                    "{size:?} → {out:?}, {cols:?} × {rows:?} from a part"
                );
                assert_eq!(
                    resize_window_with::<false>(&part, out, cols.clone(), rows.clone()),
                    window,
                    "{size:?} → {out:?}, {cols:?} × {rows:?} from a part, portable"
                );
            }
        }
    }

    /// A part that lacks a column the window reads is refused, not read past.
    #[test]
    #[should_panic(expected = "the source holds the columns the resize reads")]
    fn a_part_without_the_columns_read_is_refused() {
        let (size, out) = ((500, 375), (341, 256));
        let (cols, rows) = Source::reads(size, out, 100..200, 0..10);
        let cols = cols.start + 1..cols.end;
        let pixels = vec![0u8; cols.len() * rows.len() * RGB];
        resize_window(
            &Source::part(&pixels, size, cols, rows),
            out,
            100..200,
            0..10,
        );
    }

    /// The AVX2 build (where this CPU has it) gives the portable code's bytes: sizes that
    /// shrink by 1‥2× (5 taps: one group of five), 2‥3× (7: two) and 7.8× (17: four), grow
    /// (3 taps), and windows reaching the rows' ends (where the vector loads fall back to
    /// scalar code).
    #[test]
    fn the_avx2_build_gives_the_portable_bytes() {
        let mut state = 7u64;
        for (size, out) in [
            ((500, 375), (341, 256)),
            ((375, 500), (256, 341)),
            ((640, 427), (383, 256)),
            ((700, 300), (256, 110)),
            ((1000, 750), (341, 256)),
            ((2000, 90), (256, 40)),
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
                let src = Source::whole(&src, size);
                let portable = resize_window_with::<false>(&src, out, cols.clone(), rows.clone());
                assert_eq!(
                    resize_window(&src, out, cols.clone(), rows.clone()),
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
