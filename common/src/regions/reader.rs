//! [`read_regions`]: a whole region file back into [`RegionRows`]; [`open_regions`]: a file
//! streamed record batch by record batch, only the columns asked for.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::arrow::ProjectionMask;

use super::pages::ActivationPages;
use super::writer::storage_error;
use super::{region_schema, ActivationType, RegionFileMeta, RegionRows, RegionsError, COLUMNS};
use crate::storage;

/// Reads a whole region file: its metadata and its rows, activations as f32 whichever type
/// the file stores.
pub fn read_regions(path: &Path) -> Result<(RegionFileMeta, RegionRows), RegionsError> {
    let (builder, meta) = open_builder(path)?;
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut rows = RegionRows::with_capacity(total, meta.channels);
    for batch in builder
        .build()
        .map_err(|source| parquet_error(path, source))?
    {
        let batch = batch.map_err(|source| RegionsError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        append_batch(&mut rows, &batch).map_err(|problem| schema_error(path, problem))?;
    }
    Ok((meta, rows))
}

/// Reads only a region file's footer: its metadata and its number of rows. The schema is
/// checked too, so a file that passes here reads without schema errors.
pub fn read_region_meta(path: &Path) -> Result<(RegionFileMeta, u64), RegionsError> {
    let (builder, meta) = open_builder(path)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    Ok((meta, rows))
}

/// Calls `visit(image_id, y, x)` for every responsible (foreground) row of `files`, in file
/// and row order, decoding only the identity columns (never saliency or activations).
pub fn for_each_foreground(
    files: &[PathBuf],
    mut visit: impl FnMut(u64, u16, u16),
) -> Result<(), RegionsError> {
    let identity = RegionProjection {
        saliency: false,
        activation: false,
    };
    for path in files {
        for batch in open_regions(path, identity, 1 << 16)? {
            let batch = batch?;
            for i in (0..batch.len()).filter(|&i| batch.foreground(i)) {
                visit(batch.image_id()[i], batch.y()[i], batch.x()[i]);
            }
        }
    }
    Ok(())
}

/// Opens `path`, parses its metadata and checks its columns against the region schema. A
/// remote file is read from its local copy (fetched into the storage cache once, streamed, and
/// reused while unchanged): Parquet reads footers and column chunks at scattered offsets.
fn open_builder(
    path: &Path,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, RegionFileMeta), RegionsError> {
    open_builder_twice(path).map(|(builder, meta, _)| (builder, meta))
}

/// [`open_builder`], with a second handle of the file that seeks independently (for
/// [`ActivationPages`]), opened while a remote file's local copy is pinned.
fn open_builder_twice(
    path: &Path,
) -> Result<(ParquetRecordBatchReaderBuilder<File>, RegionFileMeta, File), RegionsError> {
    // Pinned in the cache until opened: an open file stays readable if it is evicted.
    let local = if storage::is_remote(path) {
        storage::fetch(path).map_err(|e| storage_error(path, e))?
    } else {
        storage::Cached::local(path.to_path_buf())
    };
    let open = || {
        File::open(&local).map_err(|source| RegionsError::Io {
            path: path.to_path_buf(),
            source,
        })
    };
    let (file, again) = (open()?, open()?);
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_error(path, e))?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    // A file written by another tool may leave `activation_type` out: the `activation`
    // column's item type says it (the schema is checked against it below either way).
    let inferred = (!kv.iter().any(|kv| kv.key == "activation_type"))
        .then(|| activation_type_of(builder.schema()))
        .flatten();
    let meta = RegionFileMeta::from_key_values(
        kv.iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_deref().unwrap_or("")))
            .chain(inferred.map(|t| ("activation_type", t))),
    )
    .and_then(|meta| meta.validate().map(|()| meta))
    .map_err(|problem| RegionsError::Metadata {
        path: path.to_path_buf(),
        problem,
    })?;
    let expected = region_schema(meta.channels, meta.activation_type);
    check_schema(builder.schema(), &expected).map_err(|p| schema_error(path, p))?;
    Ok((builder, meta, again))
}

/// Asks the kernel to read all of `file` ahead, asynchronously (advice: its failure only
/// loses the overlap). Cold, the sample pass over 2.3 GB of region files on 2 threads ran at
/// 354 MB/s against 487 MB/s warm: each thread waited on the disk between decoding pages.
fn read_ahead(file: &File) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is an open descriptor for the whole call; the call reads no memory.
        unsafe {
            libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
}

/// `f32` or `f16` from the `activation` column's list item type, if it is one of them.
fn activation_type_of(schema: &Schema) -> Option<&'static str> {
    let field = schema.field_with_name("activation").ok()?;
    match field.data_type() {
        DataType::FixedSizeList(item, _) => match item.data_type() {
            DataType::Float32 => Some("f32"),
            DataType::Float16 => Some("f16"),
            _ => None,
        },
        _ => None,
    }
}

/// A Parquet failure on region file `path` as the region error that names it.
pub(super) fn parquet_error(path: &Path, source: parquet::errors::ParquetError) -> RegionsError {
    RegionsError::Parquet {
        path: path.to_path_buf(),
        source,
    }
}

fn schema_error(path: &Path, problem: String) -> RegionsError {
    RegionsError::Schema {
        path: path.to_path_buf(),
        problem,
    }
}

/// Which of the optional columns a [`RegionBatchReader`] decodes. The identity columns
/// (`image_id`, `label`, `y`, `x`, `foreground`) are always read; skipping `activation`
/// skips almost all of a file's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionProjection {
    /// Decode `saliency`.
    pub saliency: bool,
    /// Decode `activation`.
    pub activation: bool,
}

impl RegionProjection {
    /// Every column.
    pub const ALL: RegionProjection = RegionProjection {
        saliency: true,
        activation: true,
    };
}

/// Streams a region file record batch by record batch (see [`open_regions`]), so memory is
/// one batch, not the file.
pub struct RegionBatchReader {
    path: PathBuf,
    meta: RegionFileMeta,
    rows: u64,
    projection: RegionProjection,
    inner: ParquetRecordBatchReader,
    /// The activations, when read from their pages rather than by Arrow.
    pages: Option<ActivationPages>,
}

impl std::fmt::Debug for RegionBatchReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionBatchReader")
            .field("path", &self.path)
            .field("rows", &self.rows)
            .finish_non_exhaustive()
    }
}

/// Opens `path` for streaming: metadata and schema are checked now, rows are decoded
/// `batch_rows` at a time as the reader is iterated, only the columns in `projection`.
pub fn open_regions(
    path: &Path,
    projection: RegionProjection,
    batch_rows: usize,
) -> Result<RegionBatchReader, RegionsError> {
    let (builder, meta, again) = open_builder_twice(path)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let pages = if projection.activation {
        // The whole file will be read: let the disk fetch it while this thread decodes.
        read_ahead(&again);
        let width = meta.activation_type.bytes();
        ActivationPages::open(again, builder.metadata().clone(), width, meta.channels)
    } else {
        None
    };
    // Column indices in COLUMNS order; the region schema has no nesting above them.
    let mut roots = vec![0, 1, 2, 3, 5];
    if projection.saliency {
        roots.push(4);
    }
    if projection.activation && pages.is_none() {
        roots.push(6);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let inner = builder
        .with_projection(mask)
        .with_batch_size(batch_rows.max(1))
        .build()
        .map_err(|e| parquet_error(path, e))?;
    Ok(RegionBatchReader {
        path: path.to_path_buf(),
        meta,
        rows,
        projection,
        inner,
        pages,
    })
}

impl RegionBatchReader {
    /// The file's metadata.
    pub fn meta(&self) -> &RegionFileMeta {
        &self.meta
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Rows in the whole file (from the footer).
    pub fn total_rows(&self) -> u64 {
        self.rows
    }

    /// Whether the activations are read from their pages (not by Arrow).
    #[cfg(test)]
    pub(super) fn reads_pages(&self) -> bool {
        self.pages.is_some()
    }

    fn convert(&mut self, batch: &RecordBatch) -> Result<RegionBatch, String> {
        fn column<T: Array + Clone + 'static>(
            batch: &RecordBatch,
            name: &'static str,
        ) -> Result<T, String> {
            let array = batch
                .column_by_name(name)
                .ok_or_else(|| format!("column {name} is missing from a record batch"))?;
            if array.null_count() > 0 {
                return Err(format!("column {name} has nulls"));
            }
            array
                .as_any()
                .downcast_ref::<T>()
                .cloned()
                .ok_or_else(|| format!("column {name} has an unexpected array type"))
        }
        let activation = if let Some(pages) = &mut self.pages {
            Some(match self.meta.activation_type {
                ActivationType::F16 => {
                    let mut values = Vec::new();
                    pages.take_f16(batch.num_rows(), &mut values)?;
                    BatchActivations::F16(Float16Array::from(values))
                }
                ActivationType::F32 => {
                    let mut values = Vec::new();
                    pages.take_f32(batch.num_rows(), &mut values)?;
                    BatchActivations::F32(Float32Array::from(values))
                }
            })
        } else if self.projection.activation {
            let list = column::<FixedSizeListArray>(batch, "activation")?;
            // A sliced FixedSizeListArray slices its child too: values() starts at row 0.
            let values = list.values();
            let len = list.len() * self.meta.channels;
            if values.len() != len {
                return Err(format!(
                    "activation has {} values for {} rows of D = {}",
                    values.len(),
                    list.len(),
                    self.meta.channels
                ));
            }
            let values = if let Some(f32s) = values.as_any().downcast_ref::<Float32Array>() {
                BatchActivations::F32(f32s.clone())
            } else if let Some(f16s) = values.as_any().downcast_ref::<Float16Array>() {
                BatchActivations::F16(f16s.clone())
            } else {
                return Err(format!("activation values are {}", values.data_type()));
            };
            Some(values)
        } else {
            None
        };
        Ok(RegionBatch {
            d: self.meta.channels,
            image_id: column(batch, "image_id")?,
            label: column(batch, "label")?,
            y: column(batch, "y")?,
            x: column(batch, "x")?,
            foreground: column(batch, "foreground")?,
            saliency: if self.projection.saliency {
                Some(column(batch, "saliency")?)
            } else {
                None
            },
            activation,
        })
    }
}

impl Iterator for RegionBatchReader {
    type Item = Result<RegionBatch, RegionsError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.inner.next()? {
            Ok(batch) => batch,
            Err(source) => {
                return Some(Err(RegionsError::Arrow {
                    path: self.path.clone(),
                    source,
                }))
            }
        };
        Some(
            self.convert(&batch)
                .map_err(|problem| schema_error(&self.path, problem)),
        )
    }
}

/// Activation values of a batch as stored: converted to f32 only when asked for.
#[derive(Debug, Clone)]
enum BatchActivations {
    F32(Float32Array),
    F16(Float16Array),
}

/// One record batch of a region file, columns as Arrow decoded them (no copies).
#[derive(Debug, Clone)]
pub struct RegionBatch {
    d: usize,
    image_id: UInt64Array,
    label: UInt32Array,
    y: UInt16Array,
    x: UInt16Array,
    foreground: BooleanArray,
    saliency: Option<Float32Array>,
    activation: Option<BatchActivations>,
}

impl RegionBatch {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.image_id.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.image_id.is_empty()
    }

    /// Image id per row.
    pub fn image_id(&self) -> &[u64] {
        self.image_id.values()
    }

    /// Label index per row.
    pub fn label(&self) -> &[u32] {
        self.label.values()
    }

    /// Feature-map row per row.
    pub fn y(&self) -> &[u16] {
        self.y.values()
    }

    /// Feature-map column per row.
    pub fn x(&self) -> &[u16] {
        self.x.values()
    }

    /// Whether row `i` is foreground.
    ///
    /// # Panics
    /// If `i` is out of range.
    pub fn foreground(&self, i: usize) -> bool {
        self.foreground.value(i)
    }

    /// Saliency per row, when the projection read it.
    pub fn saliency(&self) -> Option<&[f32]> {
        self.saliency.as_ref().map(|s| s.values().as_ref())
    }

    /// Whether the projection read the activations.
    pub fn has_activations(&self) -> bool {
        self.activation.is_some()
    }

    /// Writes row `i`'s `D` activations, as f32, into `out` (f16 files are converted).
    ///
    /// # Panics
    /// If the activations were not projected, `i` is out of range or `out` is not `D` long.
    pub fn activation_into(&self, i: usize, out: &mut [f32]) {
        let range = i * self.d..(i + 1) * self.d;
        match self
            .activation
            .as_ref()
            .expect("activation column projected")
        {
            BatchActivations::F32(values) => out.copy_from_slice(&values.values()[range]),
            BatchActivations::F16(values) => values.values()[range].convert_to_f32_slice(out),
        }
    }
}

/// Checks `actual` has the region columns with the expected types, in order.
fn check_schema(actual: &Schema, expected: &Schema) -> Result<(), String> {
    for (i, want) in expected.fields().iter().enumerate() {
        let Some(got) = actual.fields().get(i) else {
            return Err(format!("missing column {}", want.name()));
        };
        let same_type = match (got.data_type(), want.data_type()) {
            // The item field's name and nullability do not change how values read.
            (DataType::FixedSizeList(a, n), DataType::FixedSizeList(b, m)) => {
                n == m && a.data_type() == b.data_type()
            }
            (a, b) => a == b,
        };
        if got.name() != want.name() || !same_type {
            return Err(format!(
                "column {i} is {} {}, expected {} {} (per the file's D and activation_type)",
                got.name(),
                got.data_type(),
                want.name(),
                want.data_type()
            ));
        }
    }
    Ok(())
}

/// Appends a batch already checked against the region schema.
fn append_batch(rows: &mut RegionRows, batch: &RecordBatch) -> Result<(), String> {
    fn column<T: 'static>(batch: &RecordBatch, i: usize) -> Result<&T, String> {
        let array = batch.column(i);
        if array.null_count() > 0 {
            return Err(format!("column {} has nulls", COLUMNS[i]));
        }
        array
            .as_any()
            .downcast_ref::<T>()
            .ok_or_else(|| format!("column {} has an unexpected array type", COLUMNS[i]))
    }
    rows.image_id
        .extend_from_slice(column::<UInt64Array>(batch, 0)?.values());
    rows.label
        .extend_from_slice(column::<UInt32Array>(batch, 1)?.values());
    rows.y
        .extend_from_slice(column::<UInt16Array>(batch, 2)?.values());
    rows.x
        .extend_from_slice(column::<UInt16Array>(batch, 3)?.values());
    rows.saliency
        .extend_from_slice(column::<Float32Array>(batch, 4)?.values());
    rows.foreground
        .extend(column::<BooleanArray>(batch, 5)?.values().iter());
    let list = column::<FixedSizeListArray>(batch, 6)?;
    let values = list.values();
    if let Some(f32s) = values.as_any().downcast_ref::<Float32Array>() {
        rows.activation.extend_from_slice(f32s.values());
    } else if let Some(f16s) = values.as_any().downcast_ref::<Float16Array>() {
        let start = rows.activation.len();
        rows.activation.resize(start + f16s.len(), 0.0);
        f16s.values()
            .convert_to_f32_slice(&mut rows.activation[start..]);
    } else {
        return Err(format!("activation values are {}", values.data_type()));
    }
    Ok(())
}
