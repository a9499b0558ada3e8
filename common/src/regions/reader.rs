//! [`read_regions`]: a whole region file back into [`RegionRows`].

use std::fs::File;
use std::path::Path;

use arrow::array::{
    Array, BooleanArray, FixedSizeListArray, Float16Array, Float32Array, UInt16Array, UInt32Array,
    UInt64Array,
};
use arrow::datatypes::{DataType, Schema};
use arrow::record_batch::RecordBatch;
use half::slice::HalfFloatSliceExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{region_schema, RegionFileMeta, RegionRows, RegionsError, COLUMNS};

/// Reads a whole region file: its metadata and its rows, activations as f32 whichever type
/// the file stores.
pub fn read_regions(path: &Path) -> Result<(RegionFileMeta, RegionRows), RegionsError> {
    let parquet_err = |source| RegionsError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let schema_err = |problem: String| RegionsError::Schema {
        path: path.to_path_buf(),
        problem,
    };
    let file = File::open(path).map_err(|source| RegionsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet_err)?;
    let kv = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    let meta = RegionFileMeta::from_key_values(
        kv.iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_deref().unwrap_or(""))),
    )
    .map_err(|problem| RegionsError::Metadata {
        path: path.to_path_buf(),
        problem,
    })?;
    let expected = region_schema(meta.channels, meta.activation_type);
    check_schema(builder.schema(), &expected).map_err(schema_err)?;
    let total = usize::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    let mut rows = RegionRows::with_capacity(total, meta.channels);
    for batch in builder.build().map_err(parquet_err)? {
        let batch = batch.map_err(|source| RegionsError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        append_batch(&mut rows, &batch).map_err(schema_err)?;
    }
    Ok((meta, rows))
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
