//! Region-file writing speed: rows shaped like VGG-16 `features.26`'s (512 channels, 147
//! rows per image, as `hint extract` keeps them with background ratio 0.1) through
//! `RegionWriter`, as f16 with zstd (the job default for big runs) and LZ4, and as f32.
//!
//! ```text
//! cargo run --release -p hint-common --example bench_writer [-- --batches 16]
//! ```
//! Prints images/s and MB/s of stored activations for each, the row groups' encoding time
//! per image summed over their threads (what a core pays per image, however many encode at
//! once), and the writing thread's own time per image in `write` (checks, f16 conversion,
//! handing rows to the encoders; waits for encoders excluded): the most images/s one
//! extraction's writer thread can take. The file goes to the system's temporary directory
//! and is removed.

use std::time::Instant;

use hint_common::regions::{ActivationType, Compression, RegionFileMeta, RegionRows, RegionWriter};

const CHANNELS: usize = 512;
const ROWS_PER_IMAGE: usize = 147;
const IMAGES_PER_BATCH: usize = 64;

fn main() {
    let batches: usize = std::env::args()
        .skip_while(|a| a != "--batches")
        .nth(1)
        .map_or(16, |v| v.parse().expect("--batches N"));
    let rows = batch_rows();
    let path =
        std::env::temp_dir().join(format!("hint-bench-writer-{}.parquet", std::process::id()));
    println!(
        "{batches} batches of {IMAGES_PER_BATCH} images × {ROWS_PER_IMAGE} rows × {CHANNELS} \
         channels, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    for (activation_type, compression) in [
        (ActivationType::F16, Compression::Zstd),
        (ActivationType::F16, Compression::Lz4),
        (ActivationType::F32, Compression::Zstd),
    ] {
        let started = Instant::now();
        let mut writer = RegionWriter::create_compressed(&path, meta(activation_type), compression)
            .expect("create");
        let mut writing = std::time::Duration::ZERO;
        for _ in 0..batches {
            let write = Instant::now();
            writer.write(&rows).expect("write");
            writing += write.elapsed();
        }
        let writing = writing.saturating_sub(writer.waited());
        let summary = writer.finish().expect("finish");
        let seconds = started.elapsed().as_secs_f64();
        let images = (batches * IMAGES_PER_BATCH) as f64;
        let stored = (batches * rows.len() * CHANNELS * activation_type.bytes()) as f64;
        println!(
            "  {activation_type:?} {compression}: {:7.0} images/s, {:5.0} MB/s of activations, \
             encoding {:.2} ms per image, writing thread {:.3} ms per image, file {} MB",
            images / seconds,
            stored / seconds / 1e6,
            summary.encoding.as_secs_f64() * 1e3 / images,
            writing.as_secs_f64() * 1e3 / images,
            std::fs::metadata(&path).map_or(0, |m| m.len() / 1_000_000)
        );
        let _ = std::fs::remove_file(&path);
    }
}

/// One batch's rows: post-ReLU-like activations (half zeros), from a fixed generator.
fn batch_rows() -> RegionRows {
    let n = IMAGES_PER_BATCH * ROWS_PER_IMAGE;
    let mut state = 1u64;
    let mut rows = RegionRows::default();
    for i in 0..n {
        rows.image_id.push((i / ROWS_PER_IMAGE) as u64);
        rows.label.push((i % 2) as u32);
        rows.y.push((i % 14) as u16);
        rows.x.push((i / 14 % 14) as u16);
        rows.saliency.push(0.5);
        rows.foreground.push(i % ROWS_PER_IMAGE < 134);
    }
    rows.activation = (0..n * CHANNELS)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = (state >> 40) as f32 / (1u64 << 24) as f32;
            if v < 0.5 {
                0.0
            } else {
                v * 3.0
            }
        })
        .collect();
    rows
}

fn meta(activation_type: ActivationType) -> RegionFileMeta {
    RegionFileMeta {
        model: "vgg16".into(),
        layer: "features.26".into(),
        method: "gradient".into(),
        aggregation: "norm".into(),
        threshold: 0.5,
        channels: CHANNELS,
        height: 14,
        width: 14,
        activation_type,
        labels: vec!["a".into(), "b".into()],
        job_id: None,
        task_id: None,
        extra: Default::default(),
    }
}
