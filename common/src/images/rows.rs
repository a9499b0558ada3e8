//! A range of a plan's `manifest.csv` without reading the whole file.
//!
//! An ImageNet manifest is about 100 MB and every extract task needs only its shard's rows:
//! read whole, 1,281 tasks would read (or on object storage, download) it 1,281 times. The
//! plan therefore writes `manifest.offsets` beside it ([`ManifestOffsets`], JSON): the byte
//! offset of every [`STRIDE`]-th row. [`read_rows`] reads the bytes of the blocks that hold a
//! range — one positioned read, or one ranged GET — and parses only those rows.
//!
//! The offsets are checked against the manifest as it is read: each block must start just
//! after a line break and end with one, and hold exactly the rows it should; a manifest
//! that no longer matches its offsets is an error naming both files, never wrong rows. A
//! manifest without offsets (job directories planned before they existed, or written by
//! hand) is read whole.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{csv_error, manifest_record, Error, ImageRecord, Result};
use crate::storage;

/// Rows per block: a range costs at most two partial blocks (≈ 200 KB at ImageNet's
/// path lengths) beyond its own rows, and the offsets of 1.28 M rows are about 13 KB.
pub const STRIDE: u64 = 1024;

/// Where the row offsets of `manifest` live: `manifest.offsets` beside `manifest.csv`.
pub fn offsets_path(manifest: &Path) -> PathBuf {
    manifest.with_extension("offsets")
}

/// The byte offsets of a manifest's rows: `offsets[k]` is where row `k · stride` starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestOffsets {
    /// Data rows (the header is not one).
    pub rows: u64,
    /// The manifest's length in bytes.
    pub bytes: u64,
    /// Rows per block.
    pub stride: u64,
    /// Where each block's first row starts.
    pub offsets: Vec<u64>,
}

impl ManifestOffsets {
    /// Offsets of a manifest being written: call [`row`](Self::row) with each row's start
    /// before writing it, then [`finish`](Self::finish) with the total length.
    pub fn new() -> Self {
        ManifestOffsets {
            rows: 0,
            bytes: 0,
            stride: STRIDE,
            offsets: Vec::new(),
        }
    }

    /// The next row starts at byte `at`.
    pub fn row(&mut self, at: u64) {
        if self.rows.is_multiple_of(self.stride) {
            self.offsets.push(at);
        }
        self.rows += 1;
    }

    /// The manifest ended at byte `bytes`.
    pub fn finish(mut self, bytes: u64) -> Self {
        self.bytes = bytes;
        self
    }

    /// The bytes that hold rows `range` and the rows they start with (the block's first).
    fn span(&self, range: &Range<u64>) -> (Range<u64>, u64) {
        let first_block = range.start / self.stride;
        let end_block = range.end.div_ceil(self.stride);
        let to = self
            .offsets
            .get(end_block as usize)
            .copied()
            .unwrap_or(self.bytes);
        (
            self.offsets[first_block as usize]..to,
            first_block * self.stride,
        )
    }

    fn check(&self) -> std::result::Result<(), String> {
        let blocks = self.rows.div_ceil(self.stride.max(1));
        if self.stride == 0 || self.offsets.len() as u64 != blocks {
            return Err(format!(
                "{} offsets for {} rows in blocks of {}",
                self.offsets.len(),
                self.rows,
                self.stride
            ));
        }
        let ascending = self.offsets.windows(2).all(|w| w[0] < w[1]);
        if !ascending || self.offsets.last().is_some_and(|&last| last >= self.bytes) {
            return Err("offsets out of order or beyond the manifest".into());
        }
        Ok(())
    }
}

impl Default for ManifestOffsets {
    fn default() -> Self {
        Self::new()
    }
}

/// Rows `range` of a plan's manifest (ids are row numbers), read through its offsets; None
/// when the manifest has none (read it whole then).
pub fn read_rows(manifest: &Path, range: Range<u64>) -> Result<Option<Vec<ImageRecord>>> {
    let offsets_file = offsets_path(manifest);
    let text = match storage::read(&offsets_file) {
        Ok(bytes) => bytes,
        Err(e) if e.not_found => return Ok(None),
        Err(e) => return Err(Error::io(&offsets_file, e.into_io_at(&offsets_file))),
    };
    let damaged = |why: String| {
        Error::Input(format!(
            "{} does not match {}: {why}",
            offsets_file.display(),
            manifest.display()
        ))
    };
    let offsets: ManifestOffsets =
        serde_json::from_slice(&text).map_err(|e| damaged(e.to_string()))?;
    offsets.check().map_err(damaged)?;
    if range.start >= range.end || range.end > offsets.rows {
        return Err(Error::Input(format!(
            "image range {}..{} is beyond the {} images of {}",
            range.start,
            range.end,
            offsets.rows,
            manifest.display()
        )));
    }
    let (bytes, first_row) = offsets.span(&range);
    // One byte before the block: the line break that ends the row (or header) before it.
    let read = storage::read_range(manifest, bytes.start - 1..bytes.end)
        .map_err(|e| Error::io(manifest, e.into_io_at(manifest)))?;
    if read.first() != Some(&b'\n') || read.last() != Some(&b'\n') {
        return Err(damaged(format!(
            "bytes {}..{} are not whole rows",
            bytes.start, bytes.end
        )));
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .from_reader(&read[1..]);
    let base = manifest.parent().unwrap_or(Path::new(""));
    let mut rows = Vec::with_capacity((range.end - range.start) as usize);
    for (k, record) in reader.records().enumerate() {
        let id = first_row + k as u64;
        if id >= range.end {
            break;
        }
        let record = record.map_err(|e| csv_error(manifest, e))?;
        if id < range.start {
            continue;
        }
        let field = |i: usize| record.get(i).unwrap_or_default();
        // The plan writes `path,label` (the header line is row 0's predecessor).
        rows.push(manifest_record(
            manifest,
            base,
            id,
            id + 2,
            field(0),
            field(1),
        )?);
    }
    if rows.len() as u64 != range.end - range.start {
        return Err(damaged(format!(
            "rows {}..{} hold {} rows",
            range.start,
            range.end,
            rows.len()
        )));
    }
    Ok(Some(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u64, path: &str, label: &str) -> ImageRecord {
        ImageRecord {
            id,
            path: PathBuf::from(path),
            label: label.into(),
        }
    }

    /// A manifest of `n` rows as the plan writes it, with its offsets.
    fn write(dir: &Path, n: u64, stride: u64) -> (PathBuf, Vec<ImageRecord>) {
        let manifest = dir.join("manifest.csv");
        let mut text = String::from("path,label\n");
        let mut offsets = ManifestOffsets {
            stride,
            ..ManifestOffsets::new()
        };
        let mut rows = Vec::new();
        for id in 0..n {
            offsets.row(text.len() as u64);
            // Some paths need quoting: a comma, a quote.
            let path = match id % 3 {
                0 => format!("/images/a/{id}.png"),
                1 => format!("\"/images/b,{id}.png\""),
                _ => format!("\"/images/c\"\"{id}.png\""),
            };
            let label = ["cat", "dog"][(id % 2) as usize];
            text += &format!("{path},{label}\n");
            let unquoted = path.trim_matches('"').replace("\"\"", "\"");
            rows.push(record(id, &unquoted, label));
        }
        std::fs::write(&manifest, &text).unwrap();
        let offsets = offsets.finish(text.len() as u64);
        std::fs::write(
            offsets_path(&manifest),
            serde_json::to_vec(&offsets).unwrap(),
        )
        .unwrap();
        (manifest, rows)
    }

    #[test]
    fn every_range_gives_the_rows_a_whole_read_gives() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, rows) = write(dir.path(), 23, 4);
        let whole = super::super::scan(&manifest).unwrap().images;
        assert_eq!(whole, rows);
        for start in 0..23 {
            for end in start + 1..=23 {
                let read = read_rows(&manifest, start..end).unwrap().unwrap();
                assert_eq!(read, rows[start as usize..end as usize], "{start}..{end}");
            }
        }
    }

    #[test]
    fn a_manifest_without_offsets_is_read_whole_and_a_changed_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (manifest, _) = write(dir.path(), 10, 4);
        assert!(read_rows(&manifest, 0..12).is_err(), "beyond the rows");

        // A row longer than when the offsets were written: blocks no longer fall on rows.
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replacen("/images/a/0.png", "/images/a/00.png", 1),
        )
        .unwrap();
        let err = read_rows(&manifest, 5..6).unwrap_err().to_string();
        assert!(err.contains("manifest.offsets does not match"), "{err}");

        std::fs::remove_file(offsets_path(&manifest)).unwrap();
        assert!(read_rows(&manifest, 0..2).unwrap().is_none());
    }
}
