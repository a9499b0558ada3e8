//! The decoding pipeline alone: images/s of `spawn_batch_decoder` and how busy its threads
//! are, on generated JPEGs, with nothing downstream (the batches are dropped as they come).
//!
//! ```text
//! cargo run --release -p hint-worker --example bench_decode -- \
//!     [--images 960] [--size 500x375] [--threads 2] [--batches 3,64] [--runs 3]
//! ```
//!
//! Writes `--images` JPEGs (quality 90, smooth random content with grain) to a temporary
//! directory, then for each batch size decodes them all `--runs` times (resize 256, crop
//! 224) and prints the best run's images/s and the pool's utilisation: the summed
//! per-image decode time over wall time × threads. Below 100%, threads waited — at the end
//! of a chunk for its last images, say. With T threads and batches of B, a pool that
//! finishes each chunk before starting the next idles at every chunk's tail: batches of 3 on
//! 2 threads are the 2-core picture of batches of 64 on 15.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hint_worker::images::{spawn_batch_decoder, LabelledImage, Preprocess};
use image::codecs::jpeg::JpegEncoder;
use image::{Rgb, RgbImage};

fn main() {
    // As `hint-worker` does first: batch buffers reuse freed heap instead of fresh pages.
    hint_worker::allocator::keep_freed_blocks();
    let mut images = 960usize;
    let (mut width, mut height) = (500u32, 375u32);
    let mut threads = 2usize;
    let mut batches = vec![3usize, 64];
    let mut runs = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--images" => images = value.parse().expect("--images N"),
            "--size" => {
                let (w, h) = value.split_once('x').expect("--size WIDTHxHEIGHT");
                (width, height) = (w.parse().expect("width"), h.parse().expect("height"));
            }
            "--threads" => threads = value.parse().expect("--threads N"),
            "--batches" => {
                batches = value
                    .split(',')
                    .map(|b| b.parse().expect("--batches N,M"))
                    .collect()
            }
            "--runs" => runs = value.parse().expect("--runs N"),
            other => panic!("unknown flag {other}"),
        }
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<LabelledImage> = (0..images)
        .map(|i| LabelledImage {
            id: i as u64,
            path: write_jpeg(dir.path(), i, width, height),
            label: Some(0),
        })
        .collect();
    println!(
        "{images} JPEGs of {width}x{height}, {threads} decoding threads, resize 256, crop 224, \
         decoded by {}",
        hint_worker::images::turbo::decoder()
    );
    for &batch in &batches {
        let best = (0..runs)
            .map(|_| decode_all(&files, batch, threads))
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .expect("at least one run");
        println!(
            "  batch {batch:>4}: {:8.1} images/s, pool busy {:5.1}%",
            best.0,
            100.0 * best.1
        );
    }
}

/// One pass over `files`: images/s and the pool's utilisation.
fn decode_all(files: &[LabelledImage], batch: usize, threads: usize) -> (f64, f64) {
    let started = Instant::now();
    let stream = spawn_batch_decoder(
        files.to_vec(),
        Preprocess::imagenet(256, 224),
        batch,
        threads,
        4,
        None,
    )
    .expect("the decoder starts");
    let (mut decoded, mut busy) = (0usize, Duration::ZERO);
    for b in stream {
        assert!(b.skipped.is_empty(), "generated JPEGs decode");
        decoded += b.len();
        busy += b.busy;
    }
    let wall = started.elapsed().as_secs_f64();
    (
        decoded as f64 / wall,
        busy.as_secs_f64() / (wall * threads as f64),
    )
}

/// A picture like a photograph to a JPEG encoder: smooth colour fields with some grain.
fn write_jpeg(dir: &Path, i: usize, width: u32, height: u32) -> PathBuf {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let corners: Vec<f32> = (0..12).map(|_| (next() % 256) as f32).collect();
    let picture = RgbImage::from_fn(width, height, |x, y| {
        let (fx, fy) = (x as f32 / width as f32, y as f32 / height as f32);
        let grain = (next() % 9) as f32 - 4.0;
        Rgb(std::array::from_fn(|c| {
            let [a, b, d, e] = [0, 3, 6, 9].map(|k| corners[k + c]);
            let top = a + (b - a) * fx;
            let bottom = d + (e - d) * fx;
            (top + (bottom - top) * fy + grain).clamp(0.0, 255.0) as u8
        }))
    });
    let path = dir.join(format!("img_{i:05}.jpg"));
    let file = std::fs::File::create(&path).expect("create a JPEG");
    JpegEncoder::new_with_quality(std::io::BufWriter::new(file), 90)
        .encode_image(&picture)
        .expect("encode a JPEG");
    path
}
