//! The extraction stage: labelled images → responsible-region Parquet files.
//!
//! ```text
//!  decoder threads ──bounded queue──▶ model thread ──bounded queue──▶ writer thread
//!  (decode, resize, crop,            (forward to l, saliency,          (Parquet, one file
//!   normalise; skips recorded)        ζ, normalise, threshold,          per `images_per_file`
//!                                     gather kept rows)                 images, atomic rename)
//! ```
//!
//! Everything that must be ready before work starts is checked first: the weights fit
//! the architecture, the layer exists, every label has a model output, the output
//! directory holds no earlier region files. A bad image is skipped and recorded, never
//! fatal.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::Instant;

use crossbeam_channel::bounded;
use hint_common::regions::{
    ActivationType, RegionFileMeta, RegionFileSummary, RegionRows, RegionWriter,
};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::images::{self, DecodedBatch, LabelMap, Preprocess, SkippedImage};
use crate::models::{Architecture, Backbone, InputSize, Layer};
use crate::responsible::{self, Aggregation};
use crate::saliency::{self, Method, SaliencyInput};

/// Everything one extraction needs. Build it directly (tests) or from CLI flags.
#[derive(Clone, Debug)]
pub struct ExtractConfig {
    /// The backbone's architecture.
    pub arch: Architecture,
    /// A torchvision `state_dict` as safetensors.
    pub weights: PathBuf,
    /// The hidden layer `l`, by torchvision name.
    pub layer: String,
    /// An ImageFolder directory or a `path,label` CSV manifest.
    pub images: PathBuf,
    /// A label-map file; `None` = sorted class names (torchvision's ImageFolder rule).
    pub label_map: Option<PathBuf>,
    /// The saliency method Λ.
    pub method: Method,
    /// The channel aggregation ζ.
    pub aggregation: Aggregation,
    /// Threshold `t` on the normalised map: `ŝ > t` is responsible.
    pub threshold: f32,
    /// Fraction of background positions kept per image, in [0, 1].
    pub background_ratio: f64,
    /// Precision of the stored activations.
    pub activation_type: ActivationType,
    /// Images per model batch.
    pub batch_size: usize,
    /// Where the model runs.
    pub device: Device,
    /// Job seed: with the image id, the only source of randomness.
    pub seed: u64,
    /// Resize and crop sizes.
    pub input: InputSize,
    /// Decoding threads.
    pub decode_threads: usize,
    /// Output directory for `regions-NNNNN.parquet` and `summary.json`.
    pub out: PathBuf,
    /// Images per Parquet file (the last file may hold fewer).
    pub images_per_file: usize,
    /// Replace region files already in `out` instead of refusing to run.
    pub overwrite: bool,
}

impl ExtractConfig {
    /// A configuration with HINT's defaults for everything but the inputs.
    pub fn new(
        arch: Architecture,
        weights: PathBuf,
        layer: String,
        images: PathBuf,
        out: PathBuf,
    ) -> Self {
        ExtractConfig {
            arch,
            weights,
            layer,
            images,
            label_map: None,
            method: Method::Gradient,
            aggregation: Aggregation::Norm,
            threshold: 0.5,
            background_ratio: 1.0,
            activation_type: ActivationType::F32,
            batch_size: 16,
            device: Device::Cpu,
            seed: 0,
            input: arch.default_input(),
            decode_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            out,
            images_per_file: 10_000,
            overwrite: false,
        }
    }

    /// Checks the values that can be checked without touching files.
    pub fn validate(&self) -> Result<()> {
        self.method.validate()?;
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.threshold) {
            problems.push(format!(
                "threshold must be in [0, 1], got {}",
                self.threshold
            ));
        }
        if !(0.0..=1.0).contains(&self.background_ratio) {
            problems.push(format!(
                "background ratio must be in [0, 1], got {}",
                self.background_ratio
            ));
        }
        if self.batch_size == 0 {
            problems.push("batch size must be at least 1".into());
        }
        if self.images_per_file == 0 {
            problems.push("images per file must be at least 1".into());
        }
        if self.decode_threads == 0 {
            problems.push("decode threads must be at least 1".into());
        }
        if self.input.crop == 0 || self.input.resize < self.input.crop {
            problems.push(format!(
                "input sizes: need 0 < crop ≤ resize, got resize {} crop {}",
                self.input.resize, self.input.crop
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems.join("; ")))
        }
    }
}

/// Progress of a running extraction, reported after every batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Images decoded or skipped so far.
    pub images_done: usize,
    /// All images of the dataset.
    pub images_total: usize,
    /// Foreground (responsible) rows so far.
    pub foreground_rows: u64,
    /// Background rows so far.
    pub background_rows: u64,
}

/// What an extraction did.
#[derive(Debug)]
pub struct ExtractReport {
    /// Images in the dataset.
    pub images_total: usize,
    /// Images that went through the model.
    pub images_processed: usize,
    /// Images that could not be used, with the reason.
    pub skipped: Vec<SkippedImage>,
    /// The region files written, in order.
    pub files: Vec<RegionFileSummary>,
    /// `(D, H, W)` of the layer.
    pub layer_shape: (usize, usize, usize),
    /// Wall-clock seconds, from the first batch to the last file closed.
    pub seconds: f64,
}

impl ExtractReport {
    /// Responsible rows written.
    pub fn foreground_rows(&self) -> u64 {
        self.files.iter().map(|f| f.foreground_rows).sum()
    }

    /// Background rows written.
    pub fn background_rows(&self) -> u64 {
        self.files.iter().map(|f| f.background_rows).sum()
    }
}

/// Runs an extraction, calling `on_progress` after every batch.
pub fn run(config: &ExtractConfig, on_progress: &mut dyn FnMut(Progress)) -> Result<ExtractReport> {
    config.validate()?;
    let model = Backbone::from_safetensors(config.arch, &config.weights, config.device)?;
    let layer = model.layer(&config.layer)?;
    let dataset = images::scan(&config.images)?;
    let label_map = match &config.label_map {
        Some(path) => LabelMap::from_file(path)?,
        None => LabelMap::sorted(&dataset.classes),
    };
    label_map.check(&dataset, model.num_classes())?;
    prepare_out_dir(&config.out, config.overwrite)?;

    let preprocess = Preprocess::imagenet(config.input.resize, config.input.crop);
    let normalisation = (preprocess.mean, preprocess.std);
    let labelled = label_map.labelled(&dataset)?;
    let images_total = labelled.len();
    let decoded = images::spawn_decoder(
        labelled,
        preprocess,
        config.batch_size,
        config.decode_threads,
        DECODE_QUEUE_BATCHES,
    )?;

    let started = Instant::now();
    let (rows_tx, rows_rx) = bounded::<RowBatch>(WRITE_QUEUE_BATCHES);
    let writer_config = config.clone();
    let labels = label_map.names();
    let writer = thread::spawn(move || write_files(&writer_config, labels, rows_rx));

    let mut progress = Progress {
        images_total,
        ..Progress::default()
    };
    let mut skipped = Vec::new();
    let mut images_processed = 0;
    let mut layer_shape = None;
    let mut failure = None;
    for batch in decoded {
        let DecodedBatch {
            images,
            skipped: batch_skipped,
        } = batch;
        progress.images_done += images.len() + batch_skipped.len();
        skipped.extend(batch_skipped);
        if images.is_empty() {
            on_progress(progress);
            continue;
        }
        let rows = match regions_of_batch(&model, layer, config, normalisation, &images) {
            Ok(rows) => rows,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        layer_shape = Some(rows.shape);
        images_processed += images.len();
        progress.foreground_rows += rows.foreground;
        progress.background_rows += rows.rows.len() as u64 - rows.foreground;
        if rows_tx
            .send(RowBatch {
                rows: rows.rows,
                images: images.len(),
                shape: rows.shape,
            })
            .is_err()
        {
            break; // the writer failed; its error is collected below
        }
        on_progress(progress);
    }
    drop(rows_tx);
    let files = writer.join().expect("region writer thread panicked");
    if let Some(e) = failure {
        return Err(e);
    }
    let files = files?;
    let report = ExtractReport {
        images_total,
        images_processed,
        skipped,
        files,
        layer_shape: layer_shape.unwrap_or((0, 0, 0)),
        seconds: started.elapsed().as_secs_f64(),
    };
    write_summary(config, &report)?;
    Ok(report)
}

/// Decoded batches buffered ahead of the model.
const DECODE_QUEUE_BATCHES: usize = 4;
/// Region batches buffered ahead of the Parquet writer.
const WRITE_QUEUE_BATCHES: usize = 4;

/// The region rows of one batch.
#[derive(Debug)]
pub struct BatchRegions {
    /// The kept rows, foreground then background per image.
    pub rows: RegionRows,
    /// How many of `rows` are foreground.
    pub foreground: u64,
    /// `(D, H, W)` of the layer.
    pub shape: (usize, usize, usize),
}

/// The model-side work of extraction for one batch of decoded images: saliency,
/// aggregation, normalisation, threshold, and gathering the kept rows to the CPU.
/// Public for the benchmark, which times it against the bare libtorch floor.
pub fn regions_of_batch(
    model: &Backbone,
    layer: Layer,
    config: &ExtractConfig,
    normalisation: ([f32; 3], [f32; 3]),
    images: &[images::DecodedImage],
) -> Result<BatchRegions> {
    let device = model.device();
    let (x, targets) = batch_tensors(images, i64::from(config.input.crop), device);
    let ids: Vec<u64> = images.iter().map(|i| i.id).collect();
    let input = SaliencyInput {
        images: &x,
        targets: &targets,
        image_ids: &ids,
        seed: config.seed,
        normalisation,
    };
    let result = saliency::compute(model, layer, &config.method, &input)?;
    let (d, h, w) = match result.activation.size().as_slice() {
        &[_, d, h, w] => (d as usize, h as usize, w as usize),
        other => {
            return Err(Error::Config(format!(
                "layer {} gives a {}-d activation {other:?}; HINT needs a [B, D, H, W] feature map",
                config.layer,
                other.len()
            )))
        }
    };
    tch::no_grad(|| {
        let normalised = responsible::normalise(&config.aggregation.apply(&result.saliency));
        let normalised = Vec::<f32>::try_from(normalised.to_device(Device::Cpu).flatten(0, -1))?;
        let mut rows = RegionRows::default();
        let mut flat_indices = Vec::new();
        let mut foreground = 0u64;
        for (b, image) in images.iter().enumerate() {
            let map = &normalised[b * h * w..(b + 1) * h * w];
            let kept = responsible::kept_positions(
                map,
                config.threshold,
                config.background_ratio,
                config.seed,
                image.id,
            );
            foreground += kept.foreground.len() as u64;
            for (positions, is_foreground) in [(&kept.foreground, true), (&kept.background, false)]
            {
                for &p in positions {
                    rows.image_id.push(image.id);
                    rows.label.push(image.label);
                    rows.y.push((p / w) as u16);
                    rows.x.push((p % w) as u16);
                    rows.saliency.push(map[p]);
                    rows.foreground.push(is_foreground);
                    flat_indices.push((b * h * w + p) as i64);
                }
            }
        }
        // Gather only the kept positions on the device: far less to copy than the map.
        let index = Tensor::from_slice(&flat_indices).to_device(device);
        let activation = result
            .activation
            .permute([0, 2, 3, 1])
            .reshape([-1, d as i64])
            .index_select(0, &index)
            .to_kind(Kind::Float)
            .to_device(Device::Cpu)
            .contiguous();
        rows.activation = Vec::<f32>::try_from(activation.flatten(0, -1))?;
        Ok(BatchRegions {
            rows,
            foreground,
            shape: (d, h, w),
        })
    })
}

/// A batch's pixels as `[B, 3, crop, crop]` and its class indices as `[B]` (i64), on `device`.
pub fn batch_tensors(
    images: &[images::DecodedImage],
    crop: i64,
    device: Device,
) -> (Tensor, Tensor) {
    let pixels: Vec<f32> = images
        .iter()
        .flat_map(|i| i.pixels.iter().copied())
        .collect();
    let x = Tensor::from_slice(&pixels)
        .view([images.len() as i64, 3, crop, crop])
        .to_device(device);
    let labels: Vec<i64> = images.iter().map(|i| i64::from(i.label)).collect();
    (x, Tensor::from_slice(&labels).to_device(device))
}

/// The rows of one batch on their way to the writer, with how many images they cover.
struct RowBatch {
    rows: RegionRows,
    images: usize,
    /// `(D, H, W)` of the layer, for the metadata of the file the rows open.
    shape: (usize, usize, usize),
}

/// The writer thread: rolls over to a new file every `images_per_file` images.
fn write_files(
    config: &ExtractConfig,
    labels: Vec<String>,
    rows: crossbeam_channel::Receiver<RowBatch>,
) -> Result<Vec<RegionFileSummary>> {
    let mut files = Vec::new();
    let mut current: Option<(RegionWriter, usize)> = None;
    for RowBatch {
        rows,
        images,
        shape: (d, h, w),
    } in rows
    {
        let (writer, images_in_file) = match current.as_mut() {
            Some(open) => open,
            None => {
                let path = config
                    .out
                    .join(format!("regions-{:05}.parquet", files.len()));
                let meta = file_meta(config, &labels, d, h, w);
                current.insert((RegionWriter::create(&path, meta)?, 0))
            }
        };
        writer.write(&rows)?;
        *images_in_file += images;
        if *images_in_file >= config.images_per_file {
            let (writer, _) = current.take().expect("open file");
            files.push(writer.finish()?);
        }
    }
    if let Some((writer, _)) = current {
        files.push(writer.finish()?);
    }
    Ok(files)
}

fn file_meta(
    config: &ExtractConfig,
    labels: &[String],
    d: usize,
    h: usize,
    w: usize,
) -> RegionFileMeta {
    let mut extra: std::collections::BTreeMap<String, String> = config
        .method
        .parameters()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    extra.insert("seed".into(), config.seed.to_string());
    extra.insert(
        "background_ratio".into(),
        config.background_ratio.to_string(),
    );
    extra.insert("input_resize".into(), config.input.resize.to_string());
    extra.insert("input_crop".into(), config.input.crop.to_string());
    extra.insert("weights".into(), config.weights.display().to_string());
    RegionFileMeta {
        model: config.arch.name().to_string(),
        layer: config.layer.clone(),
        method: config.method.name().to_string(),
        aggregation: config.aggregation.name().to_string(),
        threshold: config.threshold,
        channels: d,
        height: h,
        width: w,
        activation_type: config.activation_type,
        labels: labels.to_vec(),
        job_id: None,
        task_id: None,
        extra,
    }
}

/// Creates `out`, refusing to mix a new run with region files of an earlier one.
fn prepare_out_dir(out: &Path, overwrite: bool) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
    for entry in entries {
        let path = entry.map_err(|e| Error::io(out, e))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let ours =
            name.starts_with("regions-") && name.ends_with(".parquet") || name == SUMMARY_FILE;
        if !ours {
            continue;
        }
        if !overwrite {
            return Err(Error::Config(format!(
                "{} already holds region files of an earlier run ({}); choose another \
                 output directory or pass --overwrite",
                out.display(),
                name
            )));
        }
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// The run summary written beside the region files.
pub const SUMMARY_FILE: &str = "summary.json";

fn write_summary(config: &ExtractConfig, report: &ExtractReport) -> Result<()> {
    let (d, h, w) = report.layer_shape;
    let summary = serde_json::json!({
        "model": config.arch.name(),
        "weights": config.weights,
        "layer": config.layer,
        "layer_shape": { "D": d, "H": h, "W": w },
        "method": config.method.name(),
        "method_parameters": config.method.parameters().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
        "aggregation": config.aggregation.name(),
        "threshold": config.threshold,
        "background_ratio": config.background_ratio,
        "seed": config.seed,
        "images_total": report.images_total,
        "images_processed": report.images_processed,
        "images_skipped": report.skipped.len(),
        "skipped": report.skipped.iter().map(|s| serde_json::json!({
            "id": s.id, "path": s.path, "reason": s.reason,
        })).collect::<Vec<_>>(),
        "foreground_rows": report.foreground_rows(),
        "background_rows": report.background_rows(),
        "files": report.files.iter().map(|f| serde_json::json!({
            "path": f.path, "rows": f.rows,
            "foreground_rows": f.foreground_rows, "background_rows": f.background_rows,
        })).collect::<Vec<_>>(),
        "seconds": report.seconds,
    });
    let path = config.out.join(SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&summary).expect("JSON values serialise");
    std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
}
