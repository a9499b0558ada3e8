//! A [`RegionSampler`] on disk, so the sample stage can build it once for a job and every
//! train and Shapley task read it instead of streaming all region files again.
//!
//! A stored sample is a directory of two files:
//!
//! - [`SAMPLE_ROWS`] (`sample.parquet`): every row the sampler's pools hold, as a region file
//!   of the documented schema (pyarrow and `hint` read it like any other), sorted by pool
//!   (labels in order, background last) and by sampling key. Its metadata is the source
//!   files' with `hint.param.sample` set; the `saliency` column is not kept (0 throughout),
//!   since the sampler never held it. Activations are stored as the source stores them
//!   (f16 only if every value held converts to f16 unchanged: a set may mix f16 and f32
//!   files): the pools hold f32, to which f16 converts exactly and from which it converts
//!   back exactly, so an f16 source's sample holds the same values in half the bytes before
//!   compression (0.79× after, f16 values held as f32 compressing well; README, Sample
//!   stage). It was stored as f32 while arrow-rs wrote f16 one boxed value at a time, half
//!   the stage's time; hint now encodes those pages itself, and writing f16 takes no longer.
//! - [`SAMPLE_STATE`] (`sample.json`): what the rows alone do not say — the settings it was
//!   drawn with, the source region set ([`RegionSetInfo`]), each pool's population and every
//!   image id seen per label (the train / evaluation split is drawn over all of them).
//!
//! Reading offers the stored rows to an empty sampler of the same settings and restores the
//! populations and image sets; since a pool's rows are its bottom-k by a key that depends on
//! the row alone, the result equals the sampler that was written, and samplers read from
//! the parts of a dataset [`merge`](RegionSampler::merge) into the sample of the whole —
//! exactly what streaming every file in one process gives.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RegionSampler, RegionSetInfo, SampleConfig, SampleError};
use crate::regions::{ActivationType, RegionFileMeta, RegionRow, RegionRows, RegionWriter};
use crate::storage;

/// The stored sample's rows.
pub const SAMPLE_ROWS: &str = "sample.parquet";
/// The stored sample's state.
pub const SAMPLE_STATE: &str = "sample.json";
/// The [`RegionFileMeta::extra`] key that marks a stored sample's rows.
pub const SAMPLE_PARAM: &str = "sample";
/// Version of [`SAMPLE_STATE`]'s layout.
const FORMAT: u32 = 1;
/// Rows per written batch.
const WRITE_ROWS: usize = 8192;

/// [`SAMPLE_STATE`]'s contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SampleState {
    /// Layout version ([`FORMAT`]).
    format: u32,
    /// The settings the sample was drawn with.
    config: SampleConfig,
    /// The region files it was drawn from.
    source: RegionSetInfo,
    /// Rows in [`SAMPLE_ROWS`].
    rows: u64,
    /// Foreground rows offered per label (the pools' populations).
    foreground_offered: Vec<u64>,
    /// Background rows offered.
    background_offered: u64,
    /// Every image id seen per label, ascending.
    images: Vec<Vec<u64>>,
}

impl RegionSetInfo {
    /// Adds another part of the same region set, its files after these and its rows; the
    /// parts must agree on model, layer, `D` and labels (the error names the first file of
    /// each).
    pub fn merge(&mut self, other: RegionSetInfo) -> Result<(), SampleError> {
        let mismatch = |field, found: String, expected: String| SampleError::Inconsistent {
            path: other.files.first().cloned().unwrap_or_default(),
            field,
            found,
            expected,
            reference: self.files.first().cloned().unwrap_or_default(),
        };
        if other.model != self.model {
            return Err(mismatch("model", other.model, self.model.clone()));
        }
        if other.layer != self.layer {
            return Err(mismatch("layer", other.layer, self.layer.clone()));
        }
        if other.channels != self.channels {
            let (found, expected) = (other.channels.to_string(), self.channels.to_string());
            return Err(mismatch("D", found, expected));
        }
        if other.labels != self.labels {
            let (found, expected) = (format!("{:?}", other.labels), format!("{:?}", self.labels));
            return Err(mismatch("labels", found, expected));
        }
        self.files.extend(other.files);
        self.rows += other.rows;
        Ok(())
    }
}

fn stored_error(path: &Path, message: impl std::fmt::Display) -> SampleError {
    SampleError::Stored {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl RegionSampler {
    /// Whether every activation held converts to f16 and back unchanged (bit for bit).
    fn holds_f16_values_only(&self) -> bool {
        let exact = |v: f32| half::f16::from_f32(v).to_f32().to_bits() == v.to_bits();
        self.foreground
            .iter()
            .chain([&self.background])
            .all(|pool| pool.activations().all(|row| row.iter().all(|&v| exact(v))))
    }

    /// Writes the sampler into `dir` (local or object storage): [`SAMPLE_ROWS`] with
    /// `meta` (the source files' metadata; `D` must be the sampler's) and [`SAMPLE_STATE`]
    /// with `source`. Returns the rows written.
    pub fn write_to(
        &self,
        dir: &Path,
        source: &RegionSetInfo,
        mut meta: RegionFileMeta,
    ) -> Result<u64, SampleError> {
        if meta.channels != self.d {
            return Err(SampleError::Config(format!(
                "the sample's metadata says D = {}, the sampler holds D = {}",
                meta.channels, self.d
            )));
        }
        // f16 only where it changes no value: a region set may mix f16 and f32 files, and
        // `meta` is one file's.
        if meta.activation_type == ActivationType::F16 && !self.holds_f16_values_only() {
            meta.activation_type = ActivationType::F32;
        }
        meta.extra.insert(
            SAMPLE_PARAM.into(),
            "bottom-k rows of a hint sample; saliency not kept".into(),
        );
        let rows_path = dir.join(SAMPLE_ROWS);
        let mut writer = RegionWriter::create(&rows_path, meta)?;
        let pools = self
            .foreground
            .iter()
            .map(|pool| (pool, true))
            .chain([(&self.background, false)]);
        let mut batch = RegionRows::with_capacity(WRITE_ROWS, self.d);
        for (pool, foreground) in pools {
            for (entry, activation) in pool.sorted_rows() {
                batch.push(RegionRow {
                    image_id: entry.key.image_id,
                    label: entry.label,
                    y: entry.key.y,
                    x: entry.key.x,
                    saliency: 0.0,
                    foreground,
                    activation,
                });
                if batch.len() == WRITE_ROWS {
                    writer.write(&batch)?;
                    batch = RegionRows::with_capacity(WRITE_ROWS, self.d);
                }
            }
        }
        writer.write(&batch)?;
        let rows = writer.finish()?.rows;

        let (foreground_offered, background_offered) = self.population();
        let state = SampleState {
            format: FORMAT,
            config: self.config.clone(),
            source: source.clone(),
            rows,
            foreground_offered,
            background_offered,
            images: self
                .images
                .iter()
                .map(|ids| {
                    let mut ids: Vec<u64> = ids.iter().copied().collect();
                    ids.sort_unstable();
                    ids
                })
                .collect(),
        };
        let state_path = dir.join(SAMPLE_STATE);
        let text = serde_json::to_vec(&state).expect("a sample state serialises");
        storage::write(&state_path, &text).map_err(|e| stored_error(&state_path, e))?;
        Ok(rows)
    }

    /// Reads a sampler written by [`write_to`](Self::write_to) in `dir`, checking that it
    /// was drawn with `config`; returns it with the region set it was drawn from.
    pub fn read_from(
        dir: &Path,
        config: &SampleConfig,
    ) -> Result<(RegionSampler, RegionSetInfo), SampleError> {
        let state = read_state(dir, config)?;
        let labels = state.source.labels.len();
        let mut sampler = RegionSampler::new(config, state.source.channels, labels)?;
        let rows_path: PathBuf = dir.join(SAMPLE_ROWS);
        sampler.offer_file(&rows_path, &mut |_| {})?;
        if sampler.held_rows() as u64 != state.rows {
            return Err(stored_error(
                &rows_path,
                format!(
                    "{} distinct rows fit the pools, but {} says {} were stored",
                    sampler.held_rows(),
                    SAMPLE_STATE,
                    state.rows
                ),
            ));
        }
        for (pool, &offered) in sampler.foreground.iter_mut().zip(&state.foreground_offered) {
            pool.restore_offered(offered);
        }
        sampler.background.restore_offered(state.background_offered);
        for (seen, ids) in sampler.images.iter_mut().zip(state.images) {
            seen.extend(ids);
        }
        Ok((sampler, state.source))
    }

    /// The region set the sample stored in `dir` was drawn from, checking that it was drawn
    /// with `config`: [`read_from`](Self::read_from)'s answer from `sample.json` alone,
    /// without reading the rows.
    pub fn stored_source(dir: &Path, config: &SampleConfig) -> Result<RegionSetInfo, SampleError> {
        Ok(read_state(dir, config)?.source)
    }
}

/// `dir`'s [`SAMPLE_STATE`], checked: its layout version, drawn with `config`, and one
/// population and one image list per label.
fn read_state(dir: &Path, config: &SampleConfig) -> Result<SampleState, SampleError> {
    let state_path = dir.join(SAMPLE_STATE);
    let text = storage::read(&state_path).map_err(|e| stored_error(&state_path, e))?;
    let state: SampleState = serde_json::from_slice(&text)
        .map_err(|e| stored_error(&state_path, format!("not a sample state: {e}")))?;
    if state.format != FORMAT {
        return Err(stored_error(
            &state_path,
            format!(
                "layout version {} (this hint reads version {FORMAT})",
                state.format
            ),
        ));
    }
    if &state.config != config {
        return Err(stored_error(
            &state_path,
            format!(
                "drawn with other settings ({:?}) than asked for ({config:?})",
                state.config
            ),
        ));
    }
    let labels = state.source.labels.len();
    if state.foreground_offered.len() != labels || state.images.len() != labels {
        return Err(stored_error(
            &state_path,
            format!(
                "{} labels, but {} foreground populations and {} image lists",
                labels,
                state.foreground_offered.len(),
                state.images.len()
            ),
        ));
    }
    Ok(state)
}
