//! [`ActivationPages`]: a region file's `activation` column read straight from its data
//! pages, for the files whose pages allow it (plain-encoded values, no dictionary) — what
//! hint's writer and most others write.
//!
//! Why: Arrow decodes a fixed-size list column as a general list — a repetition and a
//! definition level per value, list offsets checked row by row, f16 through a fixed-length
//! byte array — which made the sample stage's reading 3–5 times zstd's own decompression
//! time (perf on 1.2 GB of f16 region files). A region's activations have no nulls and
//! exactly `D` values per row, so the levels say nothing the schema does not: the values of
//! a plain data page are its bytes after the levels, in row order.
//!
//! What is checked instead of decoding the levels: each page's value bytes are exactly
//! `num_values × width` (a null or an empty list would leave a level without a value), a
//! version 2 page counts no nulls, and each row group holds `rows × D` values. A file that
//! cannot be read this way (a dictionary, another value or level encoding) is read by Arrow;
//! [`ActivationPages::open`] says which.

use std::fs::File;
use std::sync::Arc;

use half::f16;
use parquet::basic::Encoding;
use parquet::column::page::Page;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::serialized_reader::SerializedPageReader;

use super::ACTIVATION_LEAF;

/// Values of one data page not yet handed out.
struct PageValues {
    bytes: bytes::Bytes,
    offset: usize,
}

/// The `activation` column of one file as a stream of values across pages and row groups.
pub(super) struct ActivationPages {
    file: Arc<File>,
    metadata: Arc<ParquetMetaData>,
    /// 2 (f16) or 4 (f32).
    width: usize,
    /// `D`.
    channels: usize,
    /// Length-prefixed level blocks at the start of a version 1 page (repetition, then
    /// definition levels, each present when its maximum level is above 0).
    level_blocks: usize,
    /// The next row group to open.
    next_group: usize,
    /// The open row group's pages and the values they still owe it.
    pages: Option<(SerializedPageReader<File>, u64)>,
    current: Option<PageValues>,
}

impl ActivationPages {
    /// The reader of `file` (an independent handle: it seeks on its own) when every row
    /// group stores the activations plainly with RLE levels; `None` when Arrow must read them.
    pub(super) fn open(
        file: File,
        metadata: Arc<ParquetMetaData>,
        width: usize,
        channels: usize,
    ) -> Option<ActivationPages> {
        let plain = metadata.row_groups().iter().all(|group| {
            let Some(chunk) = group.columns().get(ACTIVATION_LEAF) else {
                return false;
            };
            chunk.dictionary_page_offset().is_none()
                && chunk
                    .encodings()
                    .all(|e| matches!(e, Encoding::PLAIN | Encoding::RLE))
        });
        let column = metadata
            .file_metadata()
            .schema_descr()
            .column(ACTIVATION_LEAF);
        let level_blocks =
            usize::from(column.max_rep_level() > 0) + usize::from(column.max_def_level() > 0);
        (plain && channels > 0).then(|| ActivationPages {
            file: Arc::new(file),
            metadata,
            width,
            channels,
            level_blocks,
            next_group: 0,
            pages: None,
            current: None,
        })
    }

    /// Appends the next `rows` rows' values to `out` as f16 (`width` 2).
    pub(super) fn take_f16(&mut self, rows: usize, out: &mut Vec<f16>) -> Result<(), String> {
        self.take(rows, out, f16::from_le_bytes)
    }

    /// Appends the next `rows` rows' values to `out` as f32 (`width` 4).
    pub(super) fn take_f32(&mut self, rows: usize, out: &mut Vec<f32>) -> Result<(), String> {
        self.take(rows, out, f32::from_le_bytes)
    }

    /// Appends the next `rows` rows' values to `out`, each decoded from its `W` bytes. `W` is
    /// a constant so that the loop compiles to vector moves: with the width read at run time
    /// it was one scalar store per value, a fifth of the sample stage's time (perf).
    fn take<T, const W: usize>(
        &mut self,
        rows: usize,
        out: &mut Vec<T>,
        decode: impl Fn([u8; W]) -> T,
    ) -> Result<(), String> {
        debug_assert_eq!(W, self.width);
        let mut values = rows * self.channels;
        out.reserve(values);
        while values > 0 {
            let bytes = self.next_bytes(values)?;
            let (chunks, _) = bytes.as_chunks::<W>();
            out.extend(chunks.iter().map(|&b| decode(b)));
            values -= chunks.len();
        }
        Ok(())
    }

    /// Up to `values` values' bytes from the current page, opening pages and row groups as
    /// needed.
    fn next_bytes(&mut self, values: usize) -> Result<bytes::Bytes, String> {
        loop {
            if let Some(page) = &mut self.current {
                let left = (page.bytes.len() - page.offset) / self.width;
                if left > 0 {
                    let n = left.min(values);
                    let start = page.offset;
                    page.offset += n * self.width;
                    return Ok(page.bytes.slice(start..page.offset));
                }
                self.current = None;
            }
            self.current = Some(self.next_page()?);
        }
    }

    fn next_page(&mut self) -> Result<PageValues, String> {
        loop {
            if self.pages.is_none() {
                let group = self
                    .metadata
                    .row_groups()
                    .get(self.next_group)
                    .ok_or("activation: more rows asked for than the file's pages hold")?;
                let chunk = &group.columns()[ACTIVATION_LEAF];
                let rows = usize::try_from(group.num_rows()).unwrap_or(0);
                let reader = SerializedPageReader::new(self.file.clone(), chunk, rows, None)
                    .map_err(|e| format!("activation, row group {}: {e}", self.next_group))?;
                let owed = rows as u64 * self.channels as u64;
                self.pages = Some((reader, owed));
                self.next_group += 1;
            }
            let group = self.next_group - 1;
            let (reader, owed) = self.pages.as_mut().expect("opened above");
            let Some(page) = reader.next() else {
                if *owed != 0 {
                    return Err(format!(
                        "activation, row group {group}: the pages end {owed} values short of \
                         rows × D"
                    ));
                }
                self.pages = None;
                continue;
            };
            let page = page.map_err(|e| format!("activation, row group {group}: {e}"))?;
            let (bytes, offset, num_values) = values_of(page, group, self.level_blocks)?;
            let n = (bytes.len() - offset) as u64 / self.width as u64;
            if n != num_values {
                return Err(format!(
                    "activation, row group {group}: a page has {num_values} levels but {n} \
                     values (a null or an empty list)"
                ));
            }
            *owed = owed.checked_sub(n).ok_or_else(|| {
                format!("activation, row group {group}: more values than rows × D")
            })?;
            return Ok(PageValues { bytes, offset });
        }
    }
}

/// A data page's buffer, where its values start, and its level count.
fn values_of(
    page: Page,
    group: usize,
    level_blocks: usize,
) -> Result<(bytes::Bytes, usize, u64), String> {
    let unsupported = |what: String| format!("activation, row group {group}: {what}");
    match page {
        Page::DataPage {
            buf,
            num_values,
            encoding: Encoding::PLAIN,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            ..
        } => {
            // Repetition, then definition levels, each a 4-byte length and its RLE runs.
            let mut offset = 0;
            for _ in 0..level_blocks {
                let len = buf
                    .get(offset..offset + 4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                    .ok_or_else(|| unsupported("a page ends inside its levels".into()))?;
                offset += 4 + len;
            }
            if offset > buf.len() {
                return Err(unsupported("a page ends inside its levels".into()));
            }
            Ok((buf, offset, u64::from(num_values)))
        }
        Page::DataPageV2 {
            buf,
            num_values,
            encoding: Encoding::PLAIN,
            num_nulls: 0,
            def_levels_byte_len,
            rep_levels_byte_len,
            ..
        } => {
            let offset = (def_levels_byte_len + rep_levels_byte_len) as usize;
            if offset > buf.len() {
                return Err(unsupported("a page ends inside its levels".into()));
            }
            Ok((buf, offset, u64::from(num_values)))
        }
        other => Err(unsupported(format!(
            "a {:?} page this reader does not decode",
            other.page_type()
        ))),
    }
}
