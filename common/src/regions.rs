//! The region dataset: one row per kept feature-map position, in Parquet files that pyarrow,
//! polars and DuckDB read without help.
//!
//! # Schema
//!
//! | column       | Arrow type                              | meaning                               |
//! |--------------|-----------------------------------------|---------------------------------------|
//! | `image_id`   | `UInt64`                                | the image's id in the input dataset   |
//! | `label`      | `UInt32`                                | the image's label (index in `labels`) |
//! | `y`, `x`     | `UInt16`                                | position in the `H × W` feature map   |
//! | `saliency`   | `Float32`                               | normalised saliency of the position   |
//! | `foreground` | `Boolean`                               | inside the responsible region?        |
//! | `activation` | `FixedSizeList<Float32 \| Float16, D>`  | the `D` channel activations there     |
//!
//! Every column is non-nullable. The file's key/value metadata ([`RegionFileMeta`]) says which
//! model, layer and method produced the rows and names the labels, so a region file plus a
//! hierarchy is enough to train and score concept classifiers.
//!
//! # Reading
//!
//! [`open_regions`] streams a file batch by batch, only the columns asked for. Activations
//! stored plainly (hint's writer, and most others) are read straight from their data pages
//! (`pages.rs`), since Arrow's general list decoding costs several times the decompression;
//! other files (a dictionary, say) are read by Arrow. Both give the same values.
//!
//! # Writing
//!
//! [`RegionWriter`] writes to `.<name>.partial` beside the final path and renames on
//! [`RegionWriter::finish`]; dropping an unfinished writer removes the partial file. A file
//! under its final name is therefore always complete, whatever crashes.

mod activation_chunk;
mod meta;
mod pages;
pub mod quality;
mod reader;
mod rows;
pub mod sample;
mod writer;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use arrow::error::ArrowError;
use parquet::errors::ParquetError;

pub use meta::{ActivationType, Compression, MetadataProblem, RegionFileMeta, PARAM_PREFIX};
pub use reader::{
    for_each_foreground, open_regions, read_region_meta, read_regions, RegionBatch,
    RegionBatchReader, RegionProjection,
};
pub use rows::{RegionRow, RegionRows};
pub use writer::{groups_encoding, partial_path, RegionFileSummary, RegionWriter};

/// Index of the activation values among the leaf columns (image_id, label, y, x, saliency,
/// foreground, activation.list.item).
const ACTIVATION_LEAF: usize = 6;

/// Column names of the region schema, in order.
pub const COLUMNS: [&str; 7] = [
    "image_id",
    "label",
    "y",
    "x",
    "saliency",
    "foreground",
    "activation",
];

/// Errors reading or writing region files; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum RegionsError {
    /// Creating, renaming, removing or opening the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The Parquet encoder or decoder failed.
    #[error("{path}: parquet: {source}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        source: ParquetError,
    },
    /// Building or reading Arrow arrays failed.
    #[error("{path}: arrow: {source}")]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The Arrow error.
        source: ArrowError,
    },
    /// The file-level metadata is missing a key or holds an unusable value.
    #[error("{path}: region metadata: {problem}")]
    Metadata {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: MetadataProblem,
    },
    /// The file's columns are not the region schema.
    #[error("{path}: not a region file: {problem}")]
    Schema {
        /// The file.
        path: PathBuf,
        /// Which column is missing or has which wrong type.
        problem: String,
    },
    /// Rows handed to the writer have inconsistent column lengths.
    #[error("{path}: column {column} has {actual} values, expected {expected}")]
    RowShape {
        /// The file being written.
        path: PathBuf,
        /// The column whose length is wrong.
        column: &'static str,
        /// Values expected (rows, or rows × D for `activation`).
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A row holds a value outside what the metadata allows (a position outside `H × W`, a
    /// label without a name).
    #[error("{path}: row {row}: {column} = {value} is out of range (must be < {limit})")]
    OutOfRange {
        /// The file being written.
        path: PathBuf,
        /// Row index within the rows handed to [`RegionWriter::write`].
        row: usize,
        /// The column.
        column: &'static str,
        /// The offending value.
        value: u64,
        /// The exclusive upper bound.
        limit: u64,
    },
}

/// The Arrow schema of a region file with `d` channels stored as `t`.
///
/// # Panics
/// If `d` does not fit an `i32` (Arrow's list size type).
pub fn region_schema(d: usize, t: ActivationType) -> Schema {
    let size = i32::try_from(d).expect("D fits an i32");
    Schema::new(vec![
        Field::new("image_id", DataType::UInt64, false),
        Field::new("label", DataType::UInt32, false),
        Field::new("y", DataType::UInt16, false),
        Field::new("x", DataType::UInt16, false),
        Field::new("saliency", DataType::Float32, false),
        Field::new("foreground", DataType::Boolean, false),
        Field::new(
            "activation",
            DataType::FixedSizeList(item_field(t), size),
            false,
        ),
    ])
}

/// The list item field of the `activation` column.
fn item_field(t: ActivationType) -> FieldRef {
    Arc::new(Field::new("item", t.arrow_type(), false))
}
