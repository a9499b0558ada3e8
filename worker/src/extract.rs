//! The extraction stage: labelled images → responsible-region Parquet files.
//!
//! ```text
//!  decoder threads ──queue──▶ model thread ──queue──▶ gather thread ──queue──▶ writer thread
//!  (decode, resize, crop,     (upload, saliency,      (kept activations     (Parquet, one file
//!   normalise; skips          ζ, normalise, map to     device → pinned →     per `images_per_file`
//!   recorded)                 host, threshold, rows,   rows)                 images, atomic
//!                             launch gather of kept                          rename)
//!                             rows on the device)
//! ```
//!
//! With several layers (`ExtractConfig::more_layers`) one model pass serves them all
//! (`saliency::compute_layers`), and each layer has its own gather and writer threads and
//! output directory.
//!
//! The model thread only waits for the device once per batch (the normalised map, which
//! the host needs to choose rows); the large copy of the kept activations to the host
//! happens on the gather thread while the model thread runs the next batch
//! ([`GatherStage`]). Rows, their order and the files do not depend on this: the gather
//! stage keeps batches in order and copies values bit for bit.
//!
//! Everything that must be ready before work starts is checked first: the weights fit
//! the architecture, the layer exists, every label has a model output, the output
//! directory holds no earlier region files. A bad image is skipped and recorded, never
//! fatal.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use hint_common::job::spec::ExtractSpec;
use hint_common::regions::quality::{self, RegionQuality};
use hint_common::regions::{
    groups_encoding, ActivationType, Compression, RegionFileMeta, RegionFileSummary, RegionRows,
    RegionWriter, RegionsError,
};
use hint_common::storage;
use tch::{Device, Kind, Tensor};

use crate::busy::{PipelineBusy, StageBusy};
use crate::error::{Error, Result};
use crate::images::memory::pinned_f32;
use crate::images::{self, LabelMap, PinnedPool, PixelBatch, Preprocess, SkippedImage};
use crate::models::{Architecture, Backbone, InputSize, Layer};
use crate::responsible::{self, Aggregate, Aggregation};
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
    /// Further layers extracted in the same pass (one forward and one backward per
    /// gradient for all: [`saliency::compute_layers`]). With any, every layer (`layer`
    /// first) writes its own region dataset and summary into `out/<layer>/`.
    pub more_layers: Vec<String>,
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
    /// How the region files' pages are compressed.
    pub compression: Compression,
    /// Images per model batch.
    pub batch_size: usize,
    /// Where the model runs.
    pub device: Device,
    /// Job seed: with the image id, the only source of randomness.
    pub seed: u64,
    /// Resize and crop sizes.
    pub input: InputSize,
    /// Decoding threads; 0 (the default): [`default_decode_threads`] for `device`,
    /// resolved when the run starts ([`ExtractConfig::decode_threads`]).
    pub decode_threads: usize,
    /// Row groups each layer's region file encodes at once, each on a thread; 0 (the
    /// default): [`groups_encoding`] ([`ExtractConfig::encode_threads`]).
    pub encode_threads: usize,
    /// Output directory for `regions-NNNNN.parquet` and `summary.json`.
    pub out: PathBuf,
    /// Images per Parquet file (the last file may hold fewer).
    pub images_per_file: usize,
    /// Replace region files already in `out` instead of refusing to run.
    pub overwrite: bool,
    /// Only the images at these dataset positions (a distributed extract task's shard);
    /// `None` = every image. Image ids stay the dataset's positions, so the rows of a shard
    /// are the rows a whole run gives those images (bit for bit when the shard starts on a
    /// batch boundary of the whole run: batches are consecutive images).
    pub image_range: Option<Range<u64>>,
    /// Files are named `{file_prefix}-{k:05}.parquet` (default `regions`); a shard's prefix
    /// keeps the files of many tasks apart in one directory.
    pub file_prefix: String,
    /// When set, the extraction stops after the batch in progress; the report then covers
    /// the images done so far (`images_processed + skipped < images_total`).
    pub cancel: Option<Arc<AtomicBool>>,
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
            more_layers: Vec::new(),
            images,
            label_map: None,
            method: Method::Gradient,
            aggregation: Aggregation::Norm,
            threshold: 0.5,
            background_ratio: 1.0,
            activation_type: ActivationType::F32,
            compression: Compression::Zstd,
            batch_size: 16,
            device: Device::Cpu,
            seed: 0,
            input: arch.default_input(),
            decode_threads: 0,
            encode_threads: 0,
            out,
            images_per_file: 10_000,
            overwrite: false,
            image_range: None,
            file_prefix: DEFAULT_FILE_PREFIX.to_string(),
            cancel: None,
        }
    }

    /// Takes an `[extract]` section's saliency and region settings: the method with its
    /// parameters, aggregation, threshold, background ratio, activation type, compression
    /// and batch size.
    /// The one place a section becomes these fields (`hint extract` fills a section from its
    /// flags, an extract task passes its job's).
    pub fn apply(&mut self, section: &ExtractSpec) -> Result<()> {
        self.method = section.saliency()?;
        self.aggregation = section.aggregation;
        self.threshold = section.threshold;
        self.background_ratio = section.background_ratio;
        self.activation_type = section.activation_type;
        self.compression = section.compression;
        self.batch_size = section.batch_size;
        Ok(())
    }

    /// The decoding threads the run uses: [`ExtractConfig::decode_threads`] when set, else
    /// [`default_decode_threads`] for the configured device.
    pub fn decode_threads(&self) -> usize {
        match self.decode_threads {
            0 => default_decode_threads(self.device),
            n => n,
        }
    }

    /// The row groups each region file encodes at once: [`ExtractConfig::encode_threads`]
    /// when set, else [`groups_encoding`] (the cores less two, 4 to 24).
    pub fn encode_threads(&self) -> usize {
        match self.encode_threads {
            0 => groups_encoding(),
            n => n,
        }
    }

    /// Every layer of the pass, `layer` first.
    pub fn layer_names(&self) -> Vec<&str> {
        std::iter::once(self.layer.as_str())
            .chain(self.more_layers.iter().map(String::as_str))
            .collect()
    }

    /// One configuration per layer of the pass, each with its own output directory
    /// (`out/<layer>/` when there are several, else `out`): what the layer's writer and
    /// summary use.
    pub fn per_layer(&self) -> Vec<ExtractConfig> {
        let several = !self.more_layers.is_empty();
        self.layer_names()
            .into_iter()
            .map(|name| ExtractConfig {
                layer: name.to_string(),
                more_layers: Vec::new(),
                out: if several {
                    self.out.join(name)
                } else {
                    self.out.clone()
                },
                ..self.clone()
            })
            .collect()
    }

    /// Checks the values that can be checked without touching files.
    pub fn validate(&self) -> Result<()> {
        self.method.validate()?;
        let mut problems = Vec::new();
        let names = self.layer_names();
        for (k, name) in names.iter().enumerate() {
            if names[..k].contains(name) {
                problems.push(format!("layer {name} is asked for twice"));
            }
        }
        let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        problems.extend(self.arch.pass_problem(&owned));
        problems.extend(self.method.unsupported_on(self.arch));
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
        if let Some(range) = &self.image_range {
            if range.start >= range.end {
                problems.push(format!(
                    "image range {}..{} is empty",
                    range.start, range.end
                ));
            }
        }
        let prefix_ok = !self.file_prefix.is_empty()
            && !self.file_prefix.starts_with('.')
            && !self.file_prefix.contains(['/', '\\']);
        if !prefix_ok {
            problems.push(format!(
                "file prefix '{}' must be a non-empty file name not starting with '.'",
                self.file_prefix
            ));
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

/// The default number of decoding threads beside a model on `device`: the machine's cores
/// minus the threads the model's host side keeps busy, at least 1. On a CPU device the
/// model runs on libtorch's intra-op pool (`tch::get_num_threads()`, `OMP_NUM_THREADS` or
/// the physical cores), so decoding gets what that pool leaves; on a GPU the model's host
/// side is the one model thread that launches its kernels, so decoding gets every core but
/// one. Decoding threads beyond this would only take cores from the model.
pub fn default_decode_threads(device: Device) -> usize {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    let model = match device {
        Device::Cpu => usize::try_from(tch::get_num_threads()).unwrap_or(1).max(1),
        _ => 1,
    };
    cores.saturating_sub(model).max(1)
}

/// Progress of a running extraction, reported after every batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Progress {
    /// Images decoded or skipped so far.
    pub images_done: usize,
    /// All images of the dataset.
    pub images_total: usize,
    /// Foreground (responsible) rows so far, over every layer of the pass.
    pub foreground_rows: u64,
    /// Background rows so far, over every layer of the pass.
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
    /// Region-quality diagnostics of a whole-dataset extraction (`None` for a shard,
    /// `image_range` set: the job measures all its shards' files together).
    pub quality: Option<RegionQuality>,
    /// Each pipeline stage's busy time and utilisation over `seconds`: which stage bounds
    /// the run.
    pub stages: Vec<StageBusy>,
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

/// Runs an extraction, calling `on_progress` after every batch: one report per layer, in
/// [`ExtractConfig::layer_names`]' order.
pub fn run(
    config: &ExtractConfig,
    on_progress: &mut dyn FnMut(Progress),
) -> Result<Vec<ExtractReport>> {
    config.validate()?;
    let model = Backbone::from_safetensors(config.arch, &config.weights, config.device)?;
    model.check_input(config.input.crop)?;
    let sinks = config.per_layer();
    let layers: Vec<Layer> = sinks
        .iter()
        .map(|sink| model.layer(&sink.layer))
        .collect::<Result<_>>()?;
    // The label map first: it names the class indices tar shards' `.cls` members may hold.
    let file_map = match &config.label_map {
        Some(path) => Some(LabelMap::from_file(path)?),
        None => None,
    };
    // A shard of a plan's manifest reads only its rows when the plan wrote their offsets.
    let rows = match (&config.image_range, &file_map) {
        (Some(range), Some(_)) => {
            hint_common::images::rows::read_rows(&config.images, range.clone())?
        }
        _ => None,
    };
    let (dataset, whole) = match rows {
        Some(images) => (hint_common::images::Dataset::of_rows(images), false),
        None => (images::scan_with(&config.images, file_map.as_ref())?, true),
    };
    let label_map = file_map.unwrap_or_else(|| LabelMap::sorted(&dataset.classes));
    label_map.check(&dataset, model.num_classes())?;
    let mut labelled = label_map.labelled(&dataset)?;
    if let (Some(range), true) = (&config.image_range, whole) {
        let images = labelled.len() as u64;
        if range.end > images {
            return Err(Error::Input(format!(
                "image range {}..{} is beyond the {images} images of {}",
                range.start,
                range.end,
                config.images.display()
            )));
        }
        // Ids stay the dataset positions (`labelled[i].id == i`).
        labelled.truncate(range.end as usize);
        labelled.drain(..range.start as usize);
    }
    for sink in &sinks {
        prepare_out_dir(&sink.out, &sink.file_prefix, sink.overwrite)?;
    }

    let preprocess = Preprocess::imagenet(config.input.resize, config.input.crop);
    let normalisation = (preprocess.mean, preprocess.std);
    let images_total = labelled.len();
    let decode_threads = config.decode_threads();
    let pinned = pinned_pool(config, &preprocess);
    let decoded = images::spawn_batch_decoder(
        labelled,
        preprocess,
        config.batch_size,
        decode_threads,
        DECODE_QUEUE_BATCHES,
        pinned,
    )?;

    let started = Instant::now();
    // model thread (this one) ──▶ gather thread ──▶ writer thread, one gather and one
    // writer per layer: while the gather thread copies batch n's activations to the host
    // and the writer encodes earlier ones, the model thread already runs batch n + 1 (see
    // `GatherStage`).
    let labels = label_map.names();
    let mut writers = Vec::with_capacity(sinks.len());
    let mut gathers = Vec::with_capacity(sinks.len());
    for sink in &sinks {
        let (rows_tx, rows_rx) = bounded::<BatchRegions>(WRITE_QUEUE_BATCHES);
        let (writer_config, labels) = (sink.clone(), labels.clone());
        writers.push(thread::spawn(move || {
            write_files(&writer_config, labels, rows_rx)
        }));
        gathers.push(GatherStage::spawn(GATHER_QUEUE_BATCHES, move |batch| {
            rows_tx.send(batch).is_ok()
        }));
    }

    let mut progress = Progress {
        images_total,
        ..Progress::default()
    };
    let mut skipped = Vec::new();
    let mut images_processed = 0;
    let mut layer_shapes = vec![(0, 0, 0); sinks.len()];
    let mut failure = None;
    let mut busy = PipelineBusy::default();
    for mut batch in decoded {
        if config
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            break; // dropping the stream stops the decoder
        }
        busy.decode += batch.busy;
        progress.images_done += batch.len() + batch.skipped.len();
        skipped.append(&mut batch.skipped);
        if batch.is_empty() {
            on_progress(progress);
            continue;
        }
        let model_started = Instant::now();
        let launched =
            launch_regions_at(&model, &layers, config, normalisation, &batch, &mut |_| {});
        busy.model += model_started.elapsed();
        let pendings = match launched {
            Ok(pendings) => pendings,
            Err(e) => {
                failure = Some(e);
                break;
            }
        };
        images_processed += batch.len();
        let mut stopped = false;
        for ((pending, gather), shape) in pendings.into_iter().zip(&gathers).zip(&mut layer_shapes)
        {
            *shape = pending.shape();
            progress.foreground_rows += pending.foreground();
            progress.background_rows += pending.len() as u64 - pending.foreground();
            // false: a gather or writer failed; the error is collected below.
            stopped |= !gather.send(pending);
        }
        if stopped {
            break;
        }
        on_progress(progress);
    }
    // In this order: a writer's queue closes when its gather thread ends.
    let gathered: Vec<Result<()>> = gathers.into_iter().map(GatherStage::finish).collect();
    let written: Vec<_> = writers
        .into_iter()
        .map(|w| w.join().expect("region writer thread panicked"))
        .collect();
    if let Some(e) = failure {
        return Err(e);
    }
    gathered.into_iter().collect::<Result<()>>()?;
    let seconds = started.elapsed().as_secs_f64();
    let mut reports = Vec::with_capacity(sinks.len());
    for ((sink, written), layer_shape) in sinks.iter().zip(written).zip(layer_shapes) {
        let (files, gathering, writing) = written?;
        // Decoding and the model are shared by every layer; each has its own gather and
        // writer.
        (busy.gather, busy.write) = (gathering, writing);
        busy.encode = files.iter().map(|f| f.encoding).sum();
        let quality = match config.image_range {
            Some(_) => None,
            None => {
                let paths: Vec<PathBuf> = files.iter().map(|f| f.path.clone()).collect();
                Some(quality::measure(&paths, images_processed as u64)?)
            }
        };
        let report = ExtractReport {
            images_total,
            images_processed,
            skipped: skipped.clone(),
            files,
            layer_shape,
            seconds,
            quality,
            stages: busy.stages(seconds, decode_threads, config.encode_threads()),
        };
        write_summary(sink, &report)?;
        reports.push(report);
    }
    Ok(reports)
}

/// Decoded batches buffered ahead of the model.
const DECODE_QUEUE_BATCHES: usize = 4;

/// On a GPU, the page-locked buffers the decoders write batches into: one per queued batch,
/// one per chunk being decoded and one being uploaded, so that in a steady run every batch
/// is pinned.
/// `None` on a CPU, or (with a warning) when memory cannot be pinned: batches then use
/// ordinary memory, slower to upload but the same values.
fn pinned_pool(config: &ExtractConfig, preprocess: &Preprocess) -> Option<PinnedPool> {
    if config.device == Device::Cpu {
        return None;
    }
    let elements = config.batch_size * preprocess.pixels_per_image();
    let buffers = DECODE_QUEUE_BATCHES + images::pipeline::CHUNKS_IN_FLIGHT + 1;
    match PinnedPool::new(buffers, elements, config.device) {
        Ok(pool) => Some(pool),
        Err(e) => {
            tracing::warn!(
                "cannot pin {} MB of host memory for input batches ({e}); uploading from \
                 ordinary memory instead, which is slower",
                buffers * elements * 4 / 1_000_000
            );
            None
        }
    }
}
/// Launched batches (activations still on the device) buffered ahead of the gather
/// thread. Two are enough to keep the model thread from waiting; each holds its kept
/// activations in device memory until gathered.
const GATHER_QUEUE_BATCHES: usize = 2;
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
    /// Images the rows come from (some may have no rows).
    pub images: usize,
    /// How long the gather to the host took.
    pub gathered_in: Duration,
}

/// The steps of one batch on the model thread, in order. [`launch_regions`] calls its
/// `on_phase` with each step as the step ends: the benchmark's `--profile` synchronises
/// the device there and reads the clock; [`run`] does nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Pixels and labels are on the device.
    Upload,
    /// Saliency at `l` is computed (forward to `l`, the method's backward passes).
    Saliency,
    /// ζ and normalisation are done and the normalised map is on the host.
    NormaliseToHost,
    /// The kept positions are chosen and the rows' scalar columns built, on the host.
    HostLoop,
}

/// One batch's region rows whose activations are still on the device: what the model
/// thread hands to the gather stage. Every column but `activation` is filled.
#[derive(Debug)]
pub struct PendingRegions {
    rows: RegionRows,
    /// `[rows, D]` f32 activations of the kept positions in row order, on the model's
    /// device. The gather is launched, not necessarily finished.
    activation: Tensor,
    foreground: u64,
    shape: (usize, usize, usize),
    images: usize,
}

impl PendingRegions {
    /// Rows of the batch.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the batch kept no row at all.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// How many rows are foreground.
    pub fn foreground(&self) -> u64 {
        self.foreground
    }

    /// `(D, H, W)` of the layer.
    pub fn shape(&self) -> (usize, usize, usize) {
        self.shape
    }

    /// Copies the kept activations to the host straight into the rows' own vector, waiting
    /// for the device. From a GPU the values go by DMA into `staging`'s pinned buffer and
    /// from there by one memcpy into the rows (a copy into pageable memory would go through
    /// the driver's bounce buffer and hold the device's stream for far longer); from the
    /// CPU, one memcpy.
    pub fn gather(self, staging: &mut HostStaging) -> Result<BatchRegions> {
        let started = Instant::now();
        let PendingRegions {
            mut rows,
            activation,
            foreground,
            shape,
            images,
        } = self;
        let numel = activation.numel();
        // Zeroed by calloc: the pages are only mapped when the copy first writes them.
        let mut values = vec![0f32; numel];
        if numel > 0 {
            match activation.device() {
                Device::Cpu => activation.f_copy_data(&mut values, numel)?,
                device => {
                    let mut pinned = staging.buffer(numel, device)?;
                    // Not `non_blocking`: the copy must be complete before the memcpy reads
                    // the buffer, and libtorch then synchronises the stream for us.
                    pinned.f_copy_(&activation.f_reshape([-1])?)?;
                    pinned.f_copy_data(&mut values, numel)?;
                }
            }
        }
        rows.activation = values;
        Ok(BatchRegions {
            rows,
            foreground,
            shape,
            images,
            gathered_in: started.elapsed(),
        })
    }
}

/// A page-locked (pinned) host buffer that the gather reuses batch after batch: pinning is
/// slow, so it happens only when a batch needs more room than any before it.
#[derive(Debug, Default)]
pub struct HostStaging {
    pinned: Option<Tensor>,
}

impl HostStaging {
    /// The first `numel` f32 of the buffer, pinned for copies from `device`.
    fn buffer(&mut self, numel: usize, device: Device) -> Result<Tensor> {
        if self.pinned.as_ref().is_none_or(|p| p.numel() < numel) {
            // Headroom: the number of kept rows varies from batch to batch.
            self.pinned = Some(pinned_f32(numel + numel / 8, device)?);
        }
        let pinned = self.pinned.as_ref().expect("pinned just above");
        Ok(pinned.f_narrow(0, 0, numel as i64)?)
    }
}

/// The model-side work of extraction for one batch of decoded images — upload, saliency,
/// aggregation, normalisation, threshold and background subsampling — ending with the
/// gather of the kept rows *launched* on the device. [`PendingRegions::gather`] brings
/// them to the host; in [`run`] a [`GatherStage`] does that on its own thread while the
/// model thread starts the next batch.
pub fn launch_regions(
    model: &Backbone,
    layer: Layer,
    config: &ExtractConfig,
    normalisation: ([f32; 3], [f32; 3]),
    images: &PixelBatch,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<PendingRegions> {
    let single = ExtractConfig {
        more_layers: Vec::new(),
        ..config.clone()
    };
    let mut one = launch_regions_at(model, &[layer], &single, normalisation, images, on_phase)?;
    Ok(one.pop().expect("one layer"))
}

/// [`launch_regions`] at every layer of `config` (`layers`: them resolved, in
/// [`ExtractConfig::layer_names`]' order) from one saliency pass
/// ([`saliency::compute_layers`]): one [`PendingRegions`] per layer, in that order.
pub fn launch_regions_at(
    model: &Backbone,
    layers: &[Layer],
    config: &ExtractConfig,
    normalisation: ([f32; 3], [f32; 3]),
    images: &PixelBatch,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<Vec<PendingRegions>> {
    let device = model.device();
    let (x, targets) = batch_tensors(images, i64::from(config.input.crop), device)?;
    on_phase(Phase::Upload);
    let input = SaliencyInput {
        images: &x,
        targets: &targets,
        image_ids: &images.ids,
        seed: config.seed,
        normalisation,
    };
    let results = saliency::compute_layers(model, layers, &config.method, &input)?;
    on_phase(Phase::Saliency);
    results
        .iter()
        .zip(config.layer_names())
        .map(|(result, name)| pending_regions(result, name, config, images, on_phase))
        .collect()
}

/// The rows one layer's saliency keeps for a batch, their activations' gather launched on
/// the device.
fn pending_regions(
    result: &saliency::LayerSaliency,
    layer: &str,
    config: &ExtractConfig,
    images: &PixelBatch,
    on_phase: &mut dyn FnMut(Phase),
) -> Result<PendingRegions> {
    let device = result.activation.device();
    let (d, h, w) = match result.activation.size().as_slice() {
        &[_, d, h, w] => (d as usize, h as usize, w as usize),
        other => {
            return Err(Error::Config(format!(
                "layer {layer} gives a {}-d activation {other:?}; HINT needs a [B, D, H, W] \
                 feature map",
                other.len()
            )))
        }
    };
    tch::no_grad(|| {
        let normalised = responsible::normalise(&config.aggregation.apply(&result.saliency));
        // The model thread's one wait for the device: background subsampling draws from a
        // generator seeded per image on the host, so the choice of rows needs the map
        // here. The map is 1/D of the activations, so bringing all of it back (rather
        // than a device-side mask plus the kept values) costs next to nothing.
        let normalised = Vec::<f32>::try_from(normalised.to_device(Device::Cpu).flatten(0, -1))?;
        on_phase(Phase::NormaliseToHost);
        let mut rows = RegionRows::default();
        let mut flat_indices = Vec::new();
        let mut foreground = 0u64;
        for (b, (&id, &label)) in images.ids.iter().zip(&images.labels).enumerate() {
            let map = &normalised[b * h * w..(b + 1) * h * w];
            let kept = responsible::kept_positions(
                map,
                config.threshold,
                config.background_ratio,
                config.seed,
                id,
            );
            foreground += kept.foreground.len() as u64;
            for (positions, is_foreground) in [(&kept.foreground, true), (&kept.background, false)]
            {
                for &p in positions {
                    rows.image_id.push(id);
                    rows.label.push(label);
                    rows.y.push((p / w) as u16);
                    rows.x.push((p % w) as u16);
                    rows.saliency.push(map[p]);
                    rows.foreground.push(is_foreground);
                    flat_indices.push((b * h * w + p) as i64);
                }
            }
        }
        on_phase(Phase::HostLoop);
        // Gather only the kept positions on the device: far less to copy than the map
        // when backgrounds are subsampled. Only launched here; the copy to the host is
        // the gather stage's.
        let index = Tensor::from_slice(&flat_indices).to_device(device);
        let activation = result
            .activation
            .permute([0, 2, 3, 1])
            .reshape([-1, d as i64])
            .index_select(0, &index)
            .to_kind(Kind::Float);
        Ok(PendingRegions {
            rows,
            activation,
            foreground,
            shape: (d, h, w),
            images: images.len(),
        })
    })
}

/// [`launch_regions`] and [`PendingRegions::gather`] one after the other, with a staging
/// buffer of its own: for a single batch. Many batches go faster through a
/// [`GatherStage`], or at least with one [`HostStaging`] kept across batches.
pub fn regions_of_batch(
    model: &Backbone,
    layer: Layer,
    config: &ExtractConfig,
    normalisation: ([f32; 3], [f32; 3]),
    images: &PixelBatch,
) -> Result<BatchRegions> {
    launch_regions(model, layer, config, normalisation, images, &mut |_| {})?
        .gather(&mut HostStaging::default())
}

/// The gather stage: a thread that takes [`PendingRegions`] in order, gathers each to the
/// host and hands the finished [`BatchRegions`] on, in the same order.
///
/// Why a thread: the device→host copy and the memcpy into the rows (tens of MB per batch
/// for a big layer) would otherwise run on the model thread while the device idles. Here
/// the model thread launches batch `n + 1` while this thread waits for and copies batch
/// `n`. Both threads use the device's default stream, so the copy of batch `n` is ordered
/// with the model's work; it never races it, and with pinned memory it holds the stream
/// only for a DMA at full bandwidth.
#[derive(Debug)]
pub struct GatherStage {
    pending: Option<crossbeam_channel::Sender<PendingRegions>>,
    thread: thread::JoinHandle<Result<()>>,
}

impl GatherStage {
    /// Starts the thread with room for `queue` launched batches. `deliver` gets every
    /// gathered batch in order; when it returns `false` (its receiver is gone) the stage
    /// stops.
    pub fn spawn(
        queue: usize,
        mut deliver: impl FnMut(BatchRegions) -> bool + Send + 'static,
    ) -> GatherStage {
        let (pending, batches) = bounded::<PendingRegions>(queue);
        let thread = thread::spawn(move || {
            let mut staging = HostStaging::default();
            for batch in batches {
                if !deliver(batch.gather(&mut staging)?) {
                    break;
                }
            }
            Ok(())
        });
        GatherStage {
            pending: Some(pending),
            thread,
        }
    }

    /// Queues a launched batch, waiting while the queue is full. `false` means the stage
    /// has stopped (a failed gather, or `deliver` said stop): send no more and call
    /// [`GatherStage::finish`] for the reason.
    pub fn send(&self, batch: PendingRegions) -> bool {
        let pending = self.pending.as_ref().expect("open until finish");
        pending.send(batch).is_ok()
    }

    /// Waits until every queued batch is gathered and delivered, and ends the thread.
    pub fn finish(mut self) -> Result<()> {
        drop(self.pending.take());
        self.thread.join().expect("gather thread panicked")
    }
}

/// A batch's pixels as `[B, 3, crop, crop]` and its class indices as `[B]` (i64), on
/// `device`. The pixels are already one buffer in the model's layout: from pinned memory
/// (a GPU run's decoders write there) the upload is one DMA straight from that buffer;
/// from ordinary memory, one copy into a tensor and one upload.
pub fn batch_tensors(batch: &PixelBatch, crop: i64, device: Device) -> Result<(Tensor, Tensor)> {
    let host = batch.pixels.to_tensor()?;
    let host = match (batch.pixels.is_pinned(), device) {
        // The view must not outlive the batch, whose buffer goes back to its pool: on a
        // CPU `to_device` would return the view itself.
        (true, Device::Cpu) => host.f_detach_copy()?,
        _ => host,
    };
    // Not `non_blocking`: the buffer returns to the pool, to be written by the decoders,
    // when the batch is dropped, so the copy must be complete when this returns.
    let x = host
        .f_view([batch.len() as i64, 3, crop, crop])?
        .f_to_device(device)?;
    let labels: Vec<i64> = batch.labels.iter().map(|&l| i64::from(l)).collect();
    Ok((x, Tensor::f_from_slice(&labels)?.f_to_device(device)?))
}

/// The writer thread: rolls over to a new file every `images_per_file` images. Returns
/// the files, the batches' gather time and its own busy time (not its waits for row groups
/// to be encoded: the encode stage bounds those).
///
/// A full file is finished on a thread of its own while the next one fills: its last row
/// groups take about a second to encode on a GPU node (a row group's rows on one thread),
/// and waiting for them stalled the whole pipeline at every file. One file finishes at a
/// time, so at most two files' row groups are in memory.
fn write_files(
    config: &ExtractConfig,
    labels: Vec<String>,
    batches: crossbeam_channel::Receiver<BatchRegions>,
) -> Result<(Vec<RegionFileSummary>, Duration, Duration)> {
    let mut files = Vec::new();
    let mut finishing: Option<thread::JoinHandle<Result<RegionFileSummary, RegionsError>>> = None;
    let (mut gathering, mut writing, mut waiting) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut written = || -> Result<()> {
        let mut current: Option<(RegionWriter, usize)> = None;
        for BatchRegions {
            rows,
            images,
            shape: (d, h, w),
            gathered_in,
            ..
        } in &batches
        {
            gathering += gathered_in;
            let started = Instant::now();
            let (writer, images_in_file) = match current.as_mut() {
                Some(open) => open,
                None => {
                    let path = config.out.join(format!(
                        "{}-{:05}.parquet",
                        config.file_prefix,
                        files.len() + usize::from(finishing.is_some())
                    ));
                    let meta = file_meta(config, &labels, d, h, w);
                    let mut writer =
                        RegionWriter::create_compressed(&path, meta, config.compression)?;
                    writer.set_groups_encoding(config.encode_threads());
                    current.insert((writer, 0))
                }
            };
            writer.write(&rows)?;
            *images_in_file += images;
            if *images_in_file >= config.images_per_file {
                let (writer, _) = current.take().expect("open file");
                waiting += writer.waited();
                if let Some(previous) = finishing.take() {
                    let joined = Instant::now();
                    files.push(finished(previous)?);
                    waiting += joined.elapsed();
                }
                finishing = Some(thread::spawn(move || writer.finish()));
            }
            writing += started.elapsed();
        }
        let started = Instant::now();
        if let Some(previous) = finishing.take() {
            files.push(finished(previous)?);
        }
        waiting += started.elapsed();
        if let Some((writer, _)) = current {
            let summary = writer.finish()?;
            // Its waits in `write` above too: they were counted in `writing`.
            waiting += summary.waiting;
            files.push(summary);
        }
        writing += started.elapsed();
        Ok(())
    };
    let outcome = written();
    // Only after an error is a file still finishing: it must not outlive the task.
    if let Some(previous) = finishing.take() {
        let _ = previous.join();
    }
    outcome?;
    Ok((files, gathering, writing.saturating_sub(waiting)))
}

/// The summary of a file finished on its own thread.
fn finished(
    finishing: thread::JoinHandle<Result<RegionFileSummary, RegionsError>>,
) -> Result<RegionFileSummary> {
    Ok(finishing
        .join()
        .expect("a region file's finishing thread panicked")?)
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

/// The default [`ExtractConfig::file_prefix`].
pub const DEFAULT_FILE_PREFIX: &str = "regions";

/// Creates `out`, refusing to mix a new run with region files of an earlier one. An `s3://`
/// prefix needs no creating; its objects are checked the same way.
fn prepare_out_dir(out: &Path, prefix: &str, overwrite: bool) -> Result<()> {
    let storage_error = |path: &Path, e: storage::StorageError| Error::io(path, e.into_io_at(path));
    let children: Vec<PathBuf> = if storage::is_remote(out) {
        storage::list(out)
            .map_err(|e| storage_error(out, e))?
            .into_iter()
            .map(|entry| entry.path)
            .filter(|path| path.parent() == Some(out))
            .collect()
    } else {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
        entries
            .map(|entry| entry.map(|e| e.path()).map_err(|e| Error::io(out, e)))
            .collect::<Result<_>>()?
    };
    for path in children {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let region_file = (name.starts_with("regions-") || name.starts_with(&format!("{prefix}-")))
            && name.ends_with(".parquet");
        let ours = region_file || name == SUMMARY_FILE;
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
        if storage::is_remote(&path) {
            storage::remove_all(&path).map_err(|e| storage_error(&path, e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
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
        "stages": report.stages,
        "jpeg_decoder": crate::images::turbo::decoder(),
        "region_quality": report.quality,
    });
    let path = config.out.join(SUMMARY_FILE);
    let text = serde_json::to_string_pretty(&summary).expect("JSON values serialise");
    if storage::is_remote(&path) {
        storage::write(&path, (text + "\n").as_bytes())
            .map_err(|e| Error::io(&path, e.into_io_at(&path)))
    } else {
        std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_batch(first_id: u64, n: usize) -> PixelBatch {
        let ids: Vec<u64> = (first_id..first_id + n as u64).collect();
        PixelBatch {
            labels: ids.iter().map(|id| (id % 3) as u32).collect(),
            ids,
            pixels: Vec::<f32>::try_from(Tensor::randn(
                [n as i64 * 3 * 64 * 64],
                (Kind::Float, Device::Cpu),
            ))
            .unwrap()
            .into(),
            ..PixelBatch::default()
        }
    }

    fn tiny_setup() -> (Backbone, Layer, ExtractConfig) {
        tch::manual_seed(5);
        let model = Backbone::new(Architecture::TinyCnn, 3, Device::Cpu);
        let layer = model.layer("features.4").unwrap();
        let mut config = ExtractConfig::new(
            Architecture::TinyCnn,
            "random".into(),
            "features.4".into(),
            ".".into(),
            ".".into(),
        );
        config.background_ratio = 0.3;
        config.seed = 11;
        (model, layer, config)
    }

    const IMAGENET: ([f32; 3], [f32; 3]) = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]);

    #[test]
    fn a_batch_in_a_pools_buffer_becomes_an_input_that_outlives_it() {
        let n = 2;
        let values = Vec::<f32>::try_from(tiny_batch(0, n).pixels.to_tensor().unwrap()).unwrap();
        let pool = PinnedPool::of(
            vec![Tensor::zeros(
                [values.len() as i64],
                (Kind::Float, Device::Cpu),
            )],
            values.len(),
        );
        let mut pixels = pool.lend(values.len()).expect("a free buffer");
        pixels.copy_from_slice(&values);
        let batch = PixelBatch {
            ids: vec![0, 1],
            labels: vec![0, 1],
            pixels,
            ..PixelBatch::default()
        };
        let (x, labels) = batch_tensors(&batch, 64, Device::Cpu).unwrap();
        drop(batch); // the buffer goes back to the pool and is written again
        let mut again = pool.lend(values.len()).expect("the buffer, returned");
        again.fill(0.0);
        assert_eq!(Vec::<f32>::try_from(x.flatten(0, -1)).unwrap(), values);
        assert_eq!(Vec::<i64>::try_from(labels).unwrap(), [0, 1]);
    }

    #[test]
    fn gathered_rows_hold_the_activation_at_their_position() {
        let (model, layer, config) = tiny_setup();
        let images = tiny_batch(0, 3);
        let batch = regions_of_batch(&model, layer, &config, IMAGENET, &images).unwrap();
        let (d, h, w) = batch.shape;
        let rows = &batch.rows;
        assert_eq!(batch.images, 3);
        assert_eq!(rows.activation.len(), rows.len() * d);
        assert_eq!(
            batch.foreground,
            rows.foreground.iter().filter(|f| **f).count() as u64
        );
        // Some background is dropped (ratio 0.3), so the rows are a proper subset.
        assert!(!rows.is_empty() && rows.len() < 3 * h * w);

        let (x, targets) = batch_tensors(&images, 64, Device::Cpu).unwrap();
        let input = SaliencyInput {
            images: &x,
            targets: &targets,
            image_ids: &images.ids,
            seed: config.seed,
            normalisation: IMAGENET,
        };
        let z = saliency::compute(&model, layer, &config.method, &input)
            .unwrap()
            .activation;
        for r in 0..rows.len() {
            let expected = Vec::<f32>::try_from(
                z.get(rows.image_id[r] as i64)
                    .select(1, i64::from(rows.y[r]))
                    .select(1, i64::from(rows.x[r])),
            )
            .unwrap();
            assert_eq!(
                &rows.activation[r * d..(r + 1) * d],
                expected.as_slice(),
                "row {r}"
            );
        }
    }

    #[test]
    fn the_gather_stage_delivers_batches_in_order_as_computed_one_at_a_time() {
        let (model, layer, config) = tiny_setup();
        let batches: Vec<_> = (0..4).map(|k| tiny_batch(10 * k, 2)).collect();
        let expected: Vec<RegionRows> = batches
            .iter()
            .map(|b| {
                regions_of_batch(&model, layer, &config, IMAGENET, b)
                    .unwrap()
                    .rows
            })
            .collect();

        let (tx, rx) = crossbeam_channel::unbounded();
        let stage = GatherStage::spawn(1, move |batch| tx.send(batch.rows).is_ok());
        for images in &batches {
            let pending =
                launch_regions(&model, layer, &config, IMAGENET, images, &mut |_| {}).unwrap();
            assert!(stage.send(pending));
        }
        stage.finish().unwrap();
        let delivered: Vec<RegionRows> = rx.iter().collect();
        assert_eq!(delivered, expected);
    }

    #[test]
    fn phases_are_reported_in_order_and_the_stage_stops_when_delivery_does() {
        let (model, layer, config) = tiny_setup();
        let images = tiny_batch(0, 1);
        let mut phases = Vec::new();
        let pending = launch_regions(&model, layer, &config, IMAGENET, &images, &mut |p| {
            phases.push(p)
        })
        .unwrap();
        assert_eq!(
            phases,
            [
                Phase::Upload,
                Phase::Saliency,
                Phase::NormaliseToHost,
                Phase::HostLoop
            ]
        );
        // A receiver that is gone: the stage stops after the first batch and refuses more.
        let stage = GatherStage::spawn(1, |_| false);
        assert!(stage.send(pending));
        let refused = (0..3).any(|_| {
            let again = launch_regions(&model, layer, &config, IMAGENET, &images, &mut |_| {});
            !stage.send(again.unwrap())
        });
        assert!(refused);
        stage.finish().unwrap();
    }
}
