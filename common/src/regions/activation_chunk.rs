//! [`ActivationChunks`]: a row group's `activation` column chunk encoded here, not by
//! parquet-rs — the pages parquet-rs writes for it with hint's settings (version 1 data
//! pages, PLAIN values, RLE levels, pages starting on rows, an offset index), at a fraction
//! of the cost.
//!
//! Why: parquet-rs encodes an f16 value at a time (a 32-byte `FixedLenByteArray` handle per
//! value, each a split of a shared buffer), and for either type computes a repetition and a
//! definition level per value and encodes them again: f16 rows cost ~3 ms per VGG-16
//! `features.26` image on an H200 node's core, three times f32, and with decoding they
//! bounded the end-to-end run. A region's activations have no nulls and exactly `D` values a
//! row, so every level is known beforehand: the definition level is the maximum for every
//! value (one RLE run a page), and the repetition level is 0 at a row's first value and 1 at
//! the others (two runs a row). The values are the rows' own little-endian bytes.

use std::collections::VecDeque;

use arrow::array::{Array, FixedSizeListArray, Float16Array, Float32Array};
use arrow::buffer::Buffer;
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::basic::Encoding;
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::ParquetError;
use parquet::file::metadata::ColumnChunkMetaData;
use parquet::file::page_index::offset_index::{OffsetIndexMetaData, PageLocation};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

use super::Compression;

// Parquet's PLAIN values are little-endian; the rows' buffers are written as they lie.
#[cfg(not(target_endian = "little"))]
compile_error!("region files are written from little-endian memory");

/// How a region file's activation chunks are encoded: the column, the pages' size, the codec.
#[derive(Debug, Clone)]
pub(super) struct ActivationChunks {
    descr: ColumnDescPtr,
    compression: Compression,
    /// Values in a row (`D`).
    channels: usize,
    /// Bytes of one value: 2 (f16) or 4 (f32).
    width: usize,
    rows_per_page: usize,
    offset_index: bool,
}

/// One row group's activation column chunk: its pages, and what the row group records of it.
pub(super) struct ActivationChunk {
    bytes: Bytes,
    close: ColumnCloseResult,
}

impl ActivationChunk {
    /// Appends the chunk to `group`, after the columns before it.
    pub(super) fn append_to<W: std::io::Write + Send>(
        self,
        group: &mut parquet::file::writer::SerializedRowGroupWriter<'_, W>,
    ) -> Result<(), ParquetError> {
        group.append_column(&self.bytes, self.close)
    }
}

impl ActivationChunks {
    /// The encoding of column `descr` (the activation values, a leaf of a non-null list of
    /// non-null values) with `props`' page size and offset index, and `compression`; `None`
    /// when `props` ask for what this does not write (a dictionary, version 2 pages, another
    /// encoding, statistics or a bloom filter: tests have parquet-rs write some of those, to
    /// read what other tools write) or the column is not one list deep (`channels` values of
    /// `width` bytes a row).
    pub(super) fn new(
        descr: ColumnDescPtr,
        props: &WriterProperties,
        compression: Compression,
        channels: usize,
        width: usize,
    ) -> Option<ActivationChunks> {
        let column = descr.path();
        if props.dictionary_enabled(column)
            || props.writer_version() != WriterVersion::PARQUET_1_0
            || props.encoding(column).is_some_and(|e| e != Encoding::PLAIN)
            || props.statistics_enabled(column) != EnabledStatistics::None
            || props.bloom_filter_properties(column).is_some()
            || descr.max_rep_level() != 1
            || channels == 0
        {
            return None;
        }
        let rows_per_page = (props.column_data_page_size_limit(column) / (channels * width))
            .clamp(1, props.column_data_page_row_count_limit(column).max(1));
        Some(ActivationChunks {
            compression,
            channels,
            width,
            rows_per_page,
            offset_index: !props.offset_index_disabled(),
            descr,
        })
    }

    /// Encodes the activations of `batches` (a row group's rows, in order; the activation
    /// column last) as one column chunk.
    pub(super) fn encode(&self, batches: &[RecordBatch]) -> Result<ActivationChunk, ParquetError> {
        let values = batches
            .iter()
            .map(|batch| self.value_bytes(batch))
            .collect::<Result<Vec<_>, _>>()?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut compressor = PageCompressor::new(self.compression)?;
        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let mut values = ValueCursor::new(values);
        let mut locations = Vec::new();
        let (mut compressed_size, mut uncompressed_size) = (0, 0);
        let mut page_bytes = Vec::new();
        for first_row in (0..rows).step_by(self.rows_per_page) {
            let page_rows = self.rows_per_page.min(rows - first_row);
            let page = self.page(page_rows, &mut values, &mut compressor, &mut page_bytes)?;
            let spec = pages.write_page(page)?;
            compressed_size += spec.compressed_size;
            uncompressed_size += spec.uncompressed_size;
            locations.push(PageLocation {
                offset: to_i64(spec.offset)?,
                compressed_page_size: i32::try_from(spec.bytes_written)
                    .map_err(|_| ParquetError::General("a page over 2 GiB".into()))?,
                first_row_index: to_i64(first_row as u64)?,
            });
        }
        pages.close()?;
        let bytes = Bytes::from(sink.into_inner()?);
        let num_values = to_i64((rows * self.channels) as u64)?;
        let metadata = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(self.compression.parquet())
            .set_encodings(vec![Encoding::PLAIN, Encoding::RLE])
            .set_num_values(num_values)
            .set_total_compressed_size(to_i64(compressed_size as u64)?)
            .set_total_uncompressed_size(to_i64(uncompressed_size as u64)?)
            .set_data_page_offset(0)
            .build()?;
        let close = ColumnCloseResult {
            bytes_written: bytes.len() as u64,
            rows_written: rows as u64,
            metadata,
            bloom_filter: None,
            column_index: None,
            offset_index: self.offset_index.then_some(OffsetIndexMetaData {
                page_locations: locations,
                unencoded_byte_array_data_bytes: None,
            }),
        };
        Ok(ActivationChunk { bytes, close })
    }

    /// The buffer of `batch`'s activation values (little-endian bytes, row after row).
    fn value_bytes(&self, batch: &RecordBatch) -> Result<Buffer, ParquetError> {
        let wrong =
            || ParquetError::General("the activation column is not a list of f16/f32".into());
        let list = batch
            .columns()
            .last()
            .and_then(|c| c.as_any().downcast_ref::<FixedSizeListArray>())
            .ok_or_else(wrong)?;
        let values = list.values();
        let bytes = if let Some(halves) = values.as_any().downcast_ref::<Float16Array>() {
            halves.values().inner()
        } else if let Some(floats) = values.as_any().downcast_ref::<Float32Array>() {
            floats.values().inner()
        } else {
            return Err(wrong());
        };
        if bytes.len() != batch.num_rows() * self.channels * self.width || list.null_count() > 0 {
            return Err(wrong());
        }
        Ok(bytes.clone())
    }

    /// One data page (version 1: the levels, each block prefixed with its length, then the
    /// values, compressed together) of the next `rows` rows; `scratch` is reused.
    fn page(
        &self,
        rows: usize,
        values: &mut ValueCursor,
        compressor: &mut PageCompressor,
        scratch: &mut Vec<u8>,
    ) -> Result<CompressedPage, ParquetError> {
        let value_count = rows * self.channels;
        let num_values = u32::try_from(value_count)
            .map_err(|_| ParquetError::General("a page of over 2^32 values".into()))?;
        let repetition = self.repetition_levels(rows);
        let definition = definition_levels(self.descr.max_def_level(), value_count);
        scratch.clear();
        for levels in [&repetition, &definition] {
            if !levels.is_empty() {
                scratch.extend_from_slice(&(levels.len() as u32).to_le_bytes());
                scratch.extend_from_slice(levels);
            }
        }
        values.take_into(value_count * self.width, scratch);
        let page = Page::DataPage {
            buf: Bytes::from(compressor.compress(scratch)?),
            num_values,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        Ok(CompressedPage::new(page, scratch.len()))
    }

    /// `rows` rows' repetition levels, RLE: 0 at each row's first value, 1 at its others.
    fn repetition_levels(&self, rows: usize) -> Vec<u8> {
        let mut out = Vec::new();
        if self.channels == 1 {
            rle_run(&mut out, 0, rows);
        } else {
            for _ in 0..rows {
                rle_run(&mut out, 0, 1);
                rle_run(&mut out, 1, self.channels - 1);
            }
        }
        out
    }
}

/// `values` definition levels, all `max_level` (no nulls), RLE; none when the maximum is 0.
fn definition_levels(max_level: i16, values: usize) -> Vec<u8> {
    let mut out = Vec::new();
    if max_level > 0 {
        let level = u8::try_from(max_level).expect("a column nested under 256 levels");
        rle_run(&mut out, level, values);
    }
    out
}

/// Appends an RLE run of `count` times `level` (a level of at most 8 bits: one byte), as
/// Parquet's RLE/bit-packing hybrid writes it: the count shifted left once as a ULEB128
/// varint, then the value.
fn rle_run(out: &mut Vec<u8>, level: u8, count: usize) {
    let mut header = (count as u64) << 1;
    while header >= 0x80 {
        out.push((header as u8) | 0x80);
        header >>= 7;
    }
    out.push(header as u8);
    out.push(level);
}

fn to_i64(n: u64) -> Result<i64, ParquetError> {
    i64::try_from(n).map_err(|_| ParquetError::General(format!("{n} does not fit an i64")))
}

/// The row group's activation bytes, batch after batch, handed out a page at a time.
struct ValueCursor {
    batches: VecDeque<Buffer>,
}

impl ValueCursor {
    fn new(batches: Vec<Buffer>) -> Self {
        ValueCursor {
            batches: batches.into(),
        }
    }

    /// Appends the next `len` bytes to `out`.
    fn take_into(&mut self, mut len: usize, out: &mut Vec<u8>) {
        out.reserve(len);
        while len > 0 {
            let front = self.batches.front_mut().expect("as many bytes as rows");
            let n = len.min(front.len());
            out.extend_from_slice(&front.as_slice()[..n]);
            *front = front.slice(n);
            len -= n;
            if front.is_empty() {
                self.batches.pop_front();
            }
        }
    }
}

/// The page codec, with its state kept across a chunk's pages.
enum PageCompressor {
    Zstd(zstd::bulk::Compressor<'static>),
    Lz4,
}

impl PageCompressor {
    fn new(compression: Compression) -> Result<Self, ParquetError> {
        Ok(match compression {
            Compression::Zstd => PageCompressor::Zstd(
                zstd::bulk::Compressor::new(super::meta::ZSTD_LEVEL)
                    .map_err(|e| ParquetError::External(Box::new(e)))?,
            ),
            Compression::Lz4 => PageCompressor::Lz4,
        })
    }

    /// `input` compressed as Parquet's codec stores it (zstd frames; LZ4_RAW blocks).
    fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>, ParquetError> {
        match self {
            PageCompressor::Zstd(compressor) => compressor
                .compress(input)
                .map_err(|e| ParquetError::External(Box::new(e))),
            PageCompressor::Lz4 => Ok(lz4_flex::block::compress(input)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::rle_run;

    /// Runs as Parquet's RLE/bit-packing hybrid spells them: `(count << 1)` as a ULEB128
    /// varint, then the value's byte.
    #[test]
    fn rle_runs_are_a_varint_count_and_the_level() {
        let mut out = Vec::new();
        rle_run(&mut out, 0, 1);
        assert_eq!(out, [0x02, 0x00]);
        out.clear();
        rle_run(&mut out, 1, 63);
        assert_eq!(out, [0x7e, 0x01]);
        out.clear();
        // 300 << 1 = 600 = 0b100_1011000: low seven bits with the continuation bit, then 4.
        rle_run(&mut out, 1, 300);
        assert_eq!(out, [0xd8, 0x04, 0x01]);
        out.clear();
        rle_run(&mut out, 3, 1 << 30);
        assert_eq!(out, [0x80, 0x80, 0x80, 0x80, 0x08, 0x03]);
    }
}
