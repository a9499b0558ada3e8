//! The files the plan writes into the job directory, each atomically (a temporary file in
//! the same directory, flushed to disk, then renamed over the name), so a coordinator that
//! dies mid-plan leaves either the whole file or none of it.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use hint_common::hierarchy::Hierarchy;
use hint_common::images::rows::{self, ManifestOffsets};
use hint_common::images::ImageRecord;
use hint_common::storage;

use super::PlanError;

/// The image manifest: `path,label`, one row per image in id order.
pub const MANIFEST: &str = "manifest.csv";
/// The hierarchy actually used ([`Hierarchy::write_json`]).
pub const CONCEPTS: &str = "concepts.json";
/// The label map by label index, one name per line (line k = label k): what extract tasks
/// pass as `--labels`, so label indices never depend on which classes have rows.
pub const LABELS: &str = "labels.txt";

/// Copies the plan's files from one job directory to another (a layer's job of a job with
/// several layers reads its own): labels, concepts, the manifest, then its offsets.
pub fn copy_plan(from: &Path, to: &Path) -> Result<(), PlanError> {
    let manifest = from.join(MANIFEST);
    for (source, target) in [
        (from.join(LABELS), to.join(LABELS)),
        (from.join(CONCEPTS), to.join(CONCEPTS)),
        (manifest.clone(), to.join(MANIFEST)),
        (
            rows::offsets_path(&manifest),
            rows::offsets_path(&to.join(MANIFEST)),
        ),
    ] {
        // Older plans wrote no offsets: the manifest is then read whole.
        if !storage::exists(&source)? {
            continue;
        }
        let bytes = storage::read(&source)?;
        write_atomically(&target, |tmp| fs::write(tmp, &bytes).map_err(io(tmp)))?;
    }
    Ok(())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PlanError + '_ {
    move |source| PlanError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `path` atomically: `fill` writes the content to a temporary file beside it (for
/// object storage: in the local cache, then streamed up; the object appears only whole).
fn write_atomically(
    path: &Path,
    fill: impl FnOnce(&Path) -> Result<(), PlanError>,
) -> Result<(), PlanError> {
    if storage::is_remote(path) {
        let staging = storage::cache_dir().join("staging");
        fs::create_dir_all(&staging).map_err(io(&staging))?;
        let tmp = tempfile::NamedTempFile::new_in(&staging).map_err(io(&staging))?;
        fill(tmp.path())?;
        let mut writer = storage::create(path)?;
        let mut file = File::open(tmp.path()).map_err(io(tmp.path()))?;
        std::io::copy(&mut file, &mut writer).map_err(io(path))?;
        writer.finish()?;
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_owned());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(".tmp");
    let tmp: PathBuf = dir.join(tmp_name);
    fill(&tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    // The rename itself is durable only once the directory is.
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `manifest.csv`, then `manifest.offsets` (where every 1,024th row starts, so an
/// extract task reads only its rows: `images::rows`). Every path must be valid UTF-8 (the
/// manifest is text) and every label free of surrounding whitespace (the manifest reader
/// trims fields).
pub fn write_manifest(path: &Path, images: &[ImageRecord]) -> Result<(), PlanError> {
    // An earlier plan's offsets (a plan that died) must not outlive its manifest.
    let offsets_path = rows::offsets_path(path);
    storage::remove_all(&offsets_path)?;
    let mut offsets = ManifestOffsets::new();
    write_atomically(path, |tmp| {
        let file = File::create(tmp).map_err(io(tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let header = b"path,label\n";
        out.write_all(header).map_err(io(tmp))?;
        let mut written = header.len() as u64;
        let mut row = Vec::new();
        for image in images {
            let text = image.path.to_str().ok_or_else(|| {
                PlanError::Unrepresentable(format!(
                    "image path {:?} is not valid UTF-8, which manifest.csv cannot hold",
                    image.path
                ))
            })?;
            check_untrimmed("image path", text)?;
            row.clear();
            write_field(&mut row, text).map_err(io(tmp))?;
            row.push(b',');
            write_field(&mut row, &image.label).map_err(io(tmp))?;
            row.push(b'\n');
            offsets.row(written);
            out.write_all(&row).map_err(io(tmp))?;
            written += row.len() as u64;
        }
        out.into_inner()
            .map_err(|e| e.into_error())
            .map_err(io(tmp))?;
        offsets = std::mem::take(&mut offsets).finish(written);
        Ok(())
    })?;
    // After the manifest: offsets never describe a manifest that is not there yet (a plan
    // that dies between the two leaves a manifest that is read whole, or is planned again).
    write_atomically(&offsets_path, |tmp| {
        let bytes = serde_json::to_vec(&offsets).expect("offsets serialise");
        fs::write(tmp, bytes).map_err(io(tmp))
    })
}

/// A label or path that would come back changed from a CSV field or a label-file line.
pub fn check_untrimmed(what: &str, text: &str) -> Result<(), PlanError> {
    if text.trim() != text {
        return Err(PlanError::Unrepresentable(format!(
            "{what} {text:?} begins or ends with whitespace, which the manifest and label \
             readers trim"
        )));
    }
    Ok(())
}

/// One CSV field as the `csv` crate reads it back: quoted (quotes doubled) when it holds a
/// comma, a quote or a line break.
fn write_field(out: &mut impl Write, field: &str) -> std::io::Result<()> {
    if field.contains([',', '"', '\n', '\r']) {
        out.write_all(b"\"")?;
        out.write_all(field.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(field.as_bytes())
    }
}

/// Writes `labels.txt`: label k on line k. Names must be single lines without surrounding
/// whitespace (the label-file reader trims lines).
pub fn write_labels(path: &Path, labels: &[String]) -> Result<(), PlanError> {
    for label in labels {
        check_untrimmed("label", label)?;
        if label.contains(['\n', '\r']) {
            return Err(PlanError::Unrepresentable(format!(
                "label {label:?} spans several lines"
            )));
        }
    }
    write_atomically(path, |tmp| {
        let mut text = labels.join("\n");
        text.push('\n');
        fs::write(tmp, text).map_err(io(tmp))
    })
}

/// Writes `concepts.json`.
pub fn write_concepts(path: &Path, hierarchy: &Hierarchy) -> Result<(), PlanError> {
    write_atomically(path, |tmp| {
        hierarchy.write_json(tmp).map_err(PlanError::WriteConcepts)
    })
}
