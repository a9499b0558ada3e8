//! [`RegionWriter`]: Parquet encoding into a [`storage::ObjectWriter`](crate::storage), which
//! makes the file visible only when finished (a local `.partial` file renamed, or an S3
//! multipart upload completed).
//!
//! Row groups are encoded on threads of their own, as many at once as [`groups_encoding`]
//! says, while the caller goes on writing rows: encoding is most of a region file's cost —
//! mostly compressing the activations, whose pages hint encodes itself
//! ([`ActivationChunks`]; parquet-rs, which encodes the other columns, writes f16 a value at
//! a time, 3× the cost) — and on a GPU node the other cores are otherwise idle. The groups
//! are appended to the file in order, so the file is the one a single thread would write.

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use half::f16;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_writer::{compute_leaves, ArrowColumnChunk, ArrowColumnWriter};
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterPropertiesBuilder};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use super::activation_chunk::{ActivationChunk, ActivationChunks};
use super::reader::parquet_error;
use super::{
    item_field, region_schema, ActivationType, Compression, RegionFileMeta, RegionRows,
    RegionsError, ACTIVATION_LEAF,
};
use crate::storage::{self, ObjectWriter, StorageError};

/// Uncompressed bytes aimed at per row group: big enough for efficient scans (and S3 range
/// reads), small enough that a file's last group, which one thread encodes while nothing
/// else is left to do, is short: at 64 MB it was ~470 images of VGG-16 `features.26` rows,
/// 1.7 s on an H200 node's core, a fifth of an 11,520-image run.
const ROW_GROUP_TARGET_BYTES: usize = 16 << 20;

/// Bytes of one row besides the activation (ids, position, saliency, flag).
const FIXED_ROW_BYTES: usize = 8 + 4 + 2 + 2 + 4 + 1;

/// Row groups being encoded at once, at most: one per core beyond the two that the model and
/// writer threads take, at least 4 and at most [`MAX_GROUPS_ENCODING`]. Each holds its rows
/// and its encoded pages in memory (≈ 2 × [`ROW_GROUP_TARGET_BYTES`]: 450 MB on 16 cores).
/// On an H200 node (16 cores) a fixed 4 bounded VGG-16 `features.26` at 472 images/s, an
/// eighth of the GPU's floor, with 12 cores idle.
pub fn groups_encoding() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .saturating_sub(2)
        .clamp(4, MAX_GROUPS_ENCODING)
}

/// The most row groups encoding at once, however many cores a worker sees (a pod without a
/// CPU limit on a 190-CPU node sees them all), in ≤ 800 MB: 24 encoded ~8,000 images/s of
/// VGG-16 f16 rows — twice an H200's floor — even at the ~3 ms per image that parquet-rs's
/// pages cost on an H200 node's core (hint's own cost ~1.2 ms on the development machine's).
pub const MAX_GROUPS_ENCODING: usize = 24;

/// What a finished [`RegionWriter`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionFileSummary {
    /// The final path of the file.
    pub path: PathBuf,
    /// Rows written.
    pub rows: u64,
    /// Rows with `foreground = true`.
    pub foreground_rows: u64,
    /// Rows with `foreground = false`.
    pub background_rows: u64,
    /// How long the row groups' encoding threads worked, summed over them.
    pub encoding: Duration,
    /// How long the writing thread waited for row groups to be encoded (a group to append
    /// before starting another, or the last ones in `finish`): time the encoders bound it.
    pub waiting: Duration,
}

impl From<&RegionFileSummary> for crate::proto::RegionFile {
    fn from(summary: &RegionFileSummary) -> Self {
        crate::proto::RegionFile {
            url: summary.path.display().to_string(),
            rows: summary.rows,
            foreground_rows: summary.foreground_rows,
            background_rows: summary.background_rows,
        }
    }
}

/// Writes one region file; see the [`regions`](super) docs for the crash-safety rule.
pub struct RegionWriter {
    /// Dropping it unfinished removes the partial file or aborts the upload.
    file: SerializedFileWriter<ObjectWriter>,
    /// Makes each row group's column writers.
    factory: parquet::arrow::arrow_writer::ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    meta: RegionFileMeta,
    path: PathBuf,
    rows: u64,
    foreground_rows: u64,
    rows_per_group: usize,
    /// The next row group's rows, gathered until it is full.
    gathering: Vec<RecordBatch>,
    gathered_rows: usize,
    /// Row groups being encoded, oldest first.
    encoding: VecDeque<JoinHandle<Result<EncodedGroup, ParquetError>>>,
    groups: usize,
    /// The encoding threads' work so far, summed.
    encoded_in: Duration,
    /// The writing thread's waits for encoders so far.
    waited: Duration,
    /// Row groups encoding at once, at most: [`groups_encoding`] unless
    /// [`set_groups_encoding`](Self::set_groups_encoding) says otherwise.
    groups_encoding: usize,
    /// How the activation column is encoded, unless parquet-rs encodes it.
    activation_chunks: Option<ActivationChunks>,
}

/// A row group's column chunks, and how long encoding them took.
struct EncodedGroup {
    /// Encoded by parquet-rs: every column, or all but the activations.
    chunks: Vec<ArrowColumnChunk>,
    /// The activations, when encoded by [`ActivationChunks`].
    activation: Option<ActivationChunk>,
    took: Duration,
}

impl fmt::Debug for RegionWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegionWriter")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// The temporary name of a local `path` while it is being written: `.<name>.partial` beside
/// it. (An object being uploaded has no name until its upload completes.)
pub fn partial_path(path: &Path) -> PathBuf {
    storage::partial_path(path)
}

/// A storage failure on region file `path` as the region error that names it.
pub(super) fn storage_error(path: &Path, error: StorageError) -> RegionsError {
    RegionsError::Io {
        path: path.to_path_buf(),
        source: error.into_io_at(path),
    }
}

impl RegionWriter {
    /// Starts writing `path` (a local path, written through its partial name, or an `s3://`
    /// URL) with file metadata `meta`, compressed the default way (zstd).
    pub fn create(path: &Path, meta: RegionFileMeta) -> Result<Self, RegionsError> {
        Self::create_compressed(path, meta, Compression::default())
    }

    /// [`create`](Self::create) with the pages compressed by `compression`.
    pub fn create_compressed(
        path: &Path,
        meta: RegionFileMeta,
        compression: Compression,
    ) -> Result<Self, RegionsError> {
        Self::create_with(path, meta, compression, |props| props)
    }

    /// [`create_compressed`](Self::create_compressed) with the Parquet writer settings changed
    /// by `tweak` (tests write the page layouts other tools write).
    pub(super) fn create_with(
        path: &Path,
        meta: RegionFileMeta,
        compression: Compression,
        tweak: impl FnOnce(WriterPropertiesBuilder) -> WriterPropertiesBuilder,
    ) -> Result<Self, RegionsError> {
        meta.validate().map_err(|problem| RegionsError::Metadata {
            path: path.to_path_buf(),
            problem,
        })?;
        let key_values = meta.to_key_values();
        // In the Arrow schema too: pyarrow shows a file's `table.schema.metadata` from the
        // embedded Arrow schema, not from Parquet's key/value list.
        let schema = Arc::new(
            region_schema(meta.channels, meta.activation_type).with_metadata(
                key_values
                    .iter()
                    .cloned()
                    .collect::<std::collections::HashMap<_, _>>(),
            ),
        );
        let row_bytes = FIXED_ROW_BYTES + meta.channels * meta.activation_type.bytes();
        let rows_per_group = (ROW_GROUP_TARGET_BYTES / row_bytes).clamp(1024, 1 << 20);
        let kv = key_values
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let activation_column =
            ColumnPath::new(vec!["activation".into(), "list".into(), "item".into()]);
        let props = WriterProperties::builder()
            .set_compression(compression.parquet())
            .set_max_row_group_row_count(Some(rows_per_group))
            // Activations almost never repeat: a dictionary is wasted work and gets dropped.
            .set_column_dictionary_enabled(activation_column.clone(), false)
            .set_column_statistics_enabled(activation_column, EnabledStatistics::None)
            .set_key_value_metadata(Some(kv));
        let props = tweak(props).build();
        let rows_per_group = props
            .max_row_group_row_count()
            .unwrap_or(rows_per_group)
            .max(1);
        let file = storage::create(path).map_err(|e| storage_error(path, e))?;
        // On failure the ObjectWriter is dropped with the error: nothing is left behind.
        // The ArrowWriter only sets up the file (the Arrow schema in its footer); row groups
        // are encoded apart (see the module docs).
        let (file, factory) = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .and_then(ArrowWriter::into_serialized_writer)
            .map_err(|e| parquet_error(path, e))?;
        let activation_chunks = ActivationChunks::new(
            file.schema_descr().column(ACTIVATION_LEAF),
            file.properties(),
            compression,
            meta.channels,
            meta.activation_type.bytes(),
        );
        Ok(RegionWriter {
            file,
            factory,
            schema,
            meta,
            path: path.to_path_buf(),
            rows: 0,
            foreground_rows: 0,
            rows_per_group,
            gathering: Vec::new(),
            gathered_rows: 0,
            encoding: VecDeque::new(),
            groups: 0,
            encoded_in: Duration::ZERO,
            waited: Duration::ZERO,
            groups_encoding: groups_encoding(),
            activation_chunks,
        })
    }

    /// The metadata the file is written with.
    pub fn meta(&self) -> &RegionFileMeta {
        &self.meta
    }

    /// The final path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether hint encodes the activation pages ([`ActivationChunks`]), not parquet-rs.
    #[cfg(test)]
    pub(super) fn encodes_activation_pages(&self) -> bool {
        self.activation_chunks.is_some()
    }

    /// Lets at most `groups` row groups (at least 1) encode at once, each on a thread of its
    /// own, instead of [`groups_encoding`]'s default — to keep a worker within the cores it
    /// was given, say, or its memory (each holds about twice a group's rows).
    pub fn set_groups_encoding(&mut self, groups: usize) {
        self.groups_encoding = groups.max(1);
    }

    /// How long [`write`](Self::write) has waited for row groups to be encoded so far.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Appends `rows`, checking column lengths, positions against `H × W` and labels against
    /// the label names (when there are any). Activations are converted to f16 when the file
    /// stores f16.
    pub fn write(&mut self, rows: &RegionRows) -> Result<(), RegionsError> {
        let d = self.meta.channels;
        rows.check_shape(d)
            .map_err(|(column, expected, actual)| RegionsError::RowShape {
                path: self.path.clone(),
                column,
                expected,
                actual,
            })?;
        self.check_ranges(rows)?;
        if rows.is_empty() {
            return Ok(());
        }
        let values: ArrayRef = match self.meta.activation_type {
            ActivationType::F32 => Arc::new(Float32Array::from(rows.activation.clone())),
            ActivationType::F16 => {
                let mut halves = vec![f16::ZERO; rows.activation.len()];
                halves.convert_from_f32_slice(&rows.activation);
                Arc::new(Float16Array::from(halves))
            }
        };
        let arrow_err = |source| RegionsError::Arrow {
            path: self.path.clone(),
            source,
        };
        let size = i32::try_from(d).expect("validated in create");
        let activation =
            FixedSizeListArray::try_new(item_field(self.meta.activation_type), size, values, None)
                .map_err(arrow_err)?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from(rows.image_id.clone())),
            Arc::new(UInt32Array::from(rows.label.clone())),
            Arc::new(UInt16Array::from(rows.y.clone())),
            Arc::new(UInt16Array::from(rows.x.clone())),
            Arc::new(Float32Array::from(rows.saliency.clone())),
            Arc::new(BooleanArray::from(rows.foreground.clone())),
            Arc::new(activation),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(arrow_err)?;
        self.gather(batch)
            .map_err(|e| parquet_error(&self.path, e))?;
        let foreground = rows.foreground.iter().filter(|&&f| f).count() as u64;
        self.rows += rows.len() as u64;
        self.foreground_rows += foreground;
        Ok(())
    }

    /// Rejects positions outside the feature map and labels without a name.
    fn check_ranges(&self, rows: &RegionRows) -> Result<(), RegionsError> {
        let out_of_range = |row, column, value: u64, limit: usize| RegionsError::OutOfRange {
            path: self.path.clone(),
            row,
            column,
            value,
            limit: limit as u64,
        };
        let (h, w) = (self.meta.height, self.meta.width);
        for (i, (&y, &x)) in rows.y.iter().zip(&rows.x).enumerate() {
            if usize::from(y) >= h {
                return Err(out_of_range(i, "y", y.into(), h));
            }
            if usize::from(x) >= w {
                return Err(out_of_range(i, "x", x.into(), w));
            }
        }
        let names = self.meta.labels.len();
        if names > 0 {
            if let Some((i, &label)) = rows
                .label
                .iter()
                .enumerate()
                .find(|(_, &l)| l as usize >= names)
            {
                return Err(out_of_range(i, "label", label.into(), names));
            }
        }
        Ok(())
    }

    /// Adds `batch` to the row groups: each full group goes to be encoded.
    fn gather(&mut self, mut batch: RecordBatch) -> Result<(), ParquetError> {
        while self.gathered_rows + batch.num_rows() >= self.rows_per_group {
            let room = self.rows_per_group - self.gathered_rows;
            self.gathering.push(batch.slice(0, room));
            self.gathered_rows += room;
            batch = batch.slice(room, batch.num_rows() - room);
            self.encode_gathered()?;
        }
        if batch.num_rows() > 0 {
            self.gathered_rows += batch.num_rows();
            self.gathering.push(batch);
        }
        Ok(())
    }

    /// Starts encoding the gathered rows as the next row group, first appending the oldest
    /// group being encoded when [`groups_encoding`] already are.
    fn encode_gathered(&mut self) -> Result<(), ParquetError> {
        if self.gathering.is_empty() {
            return Ok(());
        }
        if self.encoding.len() >= self.groups_encoding {
            self.append_oldest()?;
        }
        let writers = self.factory.create_column_writers(self.groups)?;
        let batches = std::mem::take(&mut self.gathering);
        self.gathered_rows = 0;
        self.groups += 1;
        let schema = self.schema.clone();
        let activation = self.activation_chunks.clone();
        let encoder = std::thread::Builder::new()
            .name("hint-parquet-encode".into())
            .spawn(move || encode_group(&schema, activation, writers, &batches))
            .map_err(|e| ParquetError::External(Box::new(e)))?;
        self.encoding.push_back(encoder);
        Ok(())
    }

    /// Waits for the oldest row group being encoded and appends it to the file.
    fn append_oldest(&mut self) -> Result<(), ParquetError> {
        let Some(encoder) = self.encoding.pop_front() else {
            return Ok(());
        };
        let waiting = Instant::now();
        let encoded = encoder.join();
        self.waited += waiting.elapsed();
        let encoded = encoded.map_err(|_| {
            ParquetError::General("a row group's encoding thread panicked".into())
        })??;
        self.encoded_in += encoded.took;
        let mut group = self.file.next_row_group()?;
        for chunk in encoded.chunks {
            chunk.append_to_row_group(&mut group)?;
        }
        if let Some(activation) = encoded.activation {
            activation.append_to(&mut group)?;
        }
        group.close()?;
        Ok(())
    }

    /// Writes the footer and makes the file visible under its final path: locally flushed to
    /// disk and renamed, remotely the upload completed.
    pub fn finish(mut self) -> Result<RegionFileSummary, RegionsError> {
        self.encode_gathered()
            .map_err(|e| parquet_error(&self.path, e))?;
        while !self.encoding.is_empty() {
            self.append_oldest()
                .map_err(|e| parquet_error(&self.path, e))?;
        }
        let file = self
            .file
            .into_inner()
            .map_err(|e| parquet_error(&self.path, e))?;
        file.finish().map_err(|e| storage_error(&self.path, e))?;
        Ok(RegionFileSummary {
            path: self.path,
            rows: self.rows,
            foreground_rows: self.foreground_rows,
            background_rows: self.rows - self.foreground_rows,
            encoding: self.encoded_in,
            waiting: self.waited,
        })
    }
}

/// Encodes one row group's `batches` (in order): the activations with `activation` when it
/// is given, the other columns (or all of them) with their parquet-rs column writers.
fn encode_group(
    schema: &SchemaRef,
    activation: Option<ActivationChunks>,
    mut writers: Vec<ArrowColumnWriter>,
    batches: &[RecordBatch],
) -> Result<EncodedGroup, ParquetError> {
    let started = Instant::now();
    let activation = activation
        .map(|chunks| chunks.encode(batches))
        .transpose()?;
    // The activations are the last field and the last leaf; each field before it is one leaf.
    let parquet_rs_columns = if activation.is_some() {
        writers.truncate(ACTIVATION_LEAF);
        ACTIVATION_LEAF
    } else {
        schema.fields().len()
    };
    for batch in batches {
        let mut leaves_writers = writers.iter_mut();
        for (field, column) in schema
            .fields()
            .iter()
            .zip(batch.columns())
            .take(parquet_rs_columns)
        {
            for leaf in compute_leaves(field, column)? {
                leaves_writers
                    .next()
                    .expect("one writer per leaf column")
                    .write(&leaf)?;
            }
        }
    }
    let chunks = writers
        .into_iter()
        .map(ArrowColumnWriter::close)
        .collect::<Result<_, _>>()?;
    Ok(EncodedGroup {
        chunks,
        activation,
        took: started.elapsed(),
    })
}
