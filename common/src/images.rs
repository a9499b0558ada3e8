//! Input datasets (ImageFolder trees and CSV manifests) and the map from label names to the
//! model's output indices.
//!
//! # ImageFolder
//!
//! A directory with one sub-folder per class (names may be WordNet ids like `n02084071`).
//! Files ending in `.jpg`, `.jpeg` or `.png` (any case) anywhere below a class folder are
//! images; other files are ignored. A file with an image extension is listed even when it is
//! corrupt — the decoder skips and records it, so nothing disappears silently.
//!
//! Order follows torchvision's `ImageFolder`, so an image's id is its index there (as long as
//! the tree holds no image formats hint does not read, such as `.bmp`): classes sorted by
//! name; within a class, files sorted by (directory path as a string, file name), which is
//! what `sorted(os.walk(...))` then `sorted(fnames)` gives. Two deliberate differences:
//! hidden folders (`.ipynb_checkpoints`, `.git`) are never classes, and a class folder with
//! no image is kept as a class (so label indices do not shift) instead of being an error.
//!
//! # CSV manifest
//!
//! A `.csv` file with a header naming (at least) the columns `path` and `label`; relative
//! paths are relative to the CSV's directory; ids are the row order from 0. Fields are
//! trimmed; an empty path or label is an error naming the line, except that a path naming
//! an image in a tar shard (a [`MemberLocation`], as a job's `manifest.csv` holds them) may
//! have an empty label: an image without one, skipped by the decoder.
//!
//! # Tar shards (WebDataset)
//!
//! A source whose name ends in `.tar` (any case) is one uncompressed tar shard or, with
//! braces, several: `train-{000000..001281}.tar`, `s3://bucket/val-{0..9}.tar`,
//! `{a,b}.tar` ([`braces`]: zero-padded numeric ranges and lists; bad patterns are errors
//! that say why). Shards may be local files or `s3://` objects.
//!
//! - **Members.** A member name splits as WebDataset splits it: the *key* is everything up to
//!   the first dot of its last path component, the *extension* the rest. Members whose
//!   extension is `jpg`, `jpeg` or `png` (any case, exactly: `x.seg.png` is not an image)
//!   are images; `<key>.cls` is the label of every image with that key; everything else
//!   (`.json`, `.txt`, directories, links) is ignored. If a key has two `.cls` members the
//!   later one counts, as a later member of the same name does when a tar is extracted.
//! - **Labels.** A `.cls` member holds one line of UTF-8 text, trimmed. Digits only: a
//!   class index k (WebDataset's convention), which the label map (`data.labels`,
//!   `--labels`) must name, and the image's label is the map's name k — so a shard written
//!   with torchvision ImageFolder indices, with the sorted class names as the label map,
//!   gets the labels the ImageFolder would give. A class index without a label map, or one
//!   it does not name, is an error naming the shard and member. Anything else is the label
//!   name itself, like a class folder's name.
//! - **Ids.** Shards in the order the pattern expands to; within a shard, images in member
//!   order. An image's path is its [`MemberLocation`] (`<shard>#<member>@<offset>+<size>`).
//! - **Bad members are skipped, not dropped.** An image without a label (no `.cls`, an
//!   empty one or one that is not UTF-8) keeps its id with the empty label `""`, belongs to
//!   no class, and the decoder skips it with the reason `no label`; an image that does not
//!   decode is skipped as a loose file is.
//! - **A damaged shard is an error**, naming the shard and the byte offset where it stops
//!   making sense (a header cut off, data running past the end, a checksum mismatch: a
//!   truncated, compressed or corrupt file). Nothing of it is used: skipping its tail would
//!   hide lost images.
//!
//! # Object storage
//!
//! The dataset, its images and the label map may live at `s3://bucket/prefix` URLs (see
//! `hint_common::storage`). A remote ImageFolder is a prefix: classes are the first path
//! segment below it, images the objects with an image extension below a class, in the same
//! order as a local tree (object stores have no empty folders, so every class has an image).
//! Relative paths in a remote CSV resolve against the CSV's "directory" URL; a path that is
//! itself a URL is taken as it is.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::storage;

pub mod braces;
pub mod rows;
pub mod shards;
pub mod tar;

pub use shards::{read_image, MemberLocation};

/// A dataset or label map that cannot be used as a whole (a single bad image is skipped and
/// recorded by the decoder instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The images or the label map are unusable, and why.
    #[error("{0}")]
    Input(String),
    /// Reading a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result of reading a dataset or a label map.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An image with its label resolved to a model output: what the decoder reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledImage {
    /// The image's id in the dataset.
    pub id: u64,
    /// The image file.
    pub path: PathBuf,
    /// The model output index of its label; `None` for an image without a label (a tar
    /// member without a `.cls`), which the decoder skips.
    pub label: Option<u32>,
}

/// Extensions (lower case) of the files hint reads as images.
pub const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// One past the largest output index a label map may name (2^20 outputs, far beyond any
/// classifier head; ImageNet-21k has 21,843).
pub const MAX_LABEL_INDEX: u32 = 1 << 20;

/// Deepest folder nesting followed below a class folder; a guard against symlink loops.
const MAX_DEPTH: usize = 32;

/// One input image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Position in the dataset's order (see the module docs).
    pub id: u64,
    /// The image file.
    pub path: PathBuf,
    /// Its label name (class folder name, the CSV's `label`, a shard's `.cls`); `""` for a
    /// tar member without a label.
    pub label: String,
}

/// An input dataset: its images in id order and its label names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dataset {
    /// The images; `images[i].id == i` (except for [`Dataset::of_rows`]: consecutive ids
    /// from the first row's).
    pub images: Vec<ImageRecord>,
    /// Sorted unique label names (for ImageFolder, every class folder, even empty ones).
    pub classes: Vec<String>,
}

impl Dataset {
    /// Rows of a manifest read by id range (`rows::read_rows`): ids are their rows, not
    /// `0..`, and the classes are those the rows name.
    pub fn of_rows(images: Vec<ImageRecord>) -> Dataset {
        let classes: BTreeSet<String> = images
            .iter()
            .filter(|i| !i.label.is_empty())
            .map(|i| i.label.clone())
            .collect();
        Dataset {
            images,
            classes: classes.into_iter().collect(),
        }
    }
}

/// Reads the dataset at `source`: a directory is an ImageFolder tree, a `.csv` file a
/// manifest, a name ending in `.tar` tar shards. A dataset without images is an error.
/// Tar shards whose `.cls` members hold class indices need [`scan_with`] and a label map.
pub fn scan(source: &Path) -> Result<Dataset> {
    scan_with(source, None)
}

/// [`scan`], with the label map that names class indices in tar shards' `.cls` members
/// (other sources do not use it).
pub fn scan_with(source: &Path, labels: Option<&LabelMap>) -> Result<Dataset> {
    let dataset = if shards::names_shards(source) {
        shards::scan(source, labels)?
    } else if storage::is_remote(source) {
        if has_extension(source, &["csv"]) {
            scan_csv(source)?
        } else {
            scan_remote_image_folder(source)?
        }
    } else {
        scan_local(source)?
    };
    if dataset.images.is_empty() {
        return Err(Error::Input(format!(
            "{}: no images (looked for files ending in {})",
            source.display(),
            IMAGE_EXTENSIONS.map(|e| format!(".{e}")).join(", ")
        )));
    }
    Ok(dataset)
}

fn scan_local(source: &Path) -> Result<Dataset> {
    let meta = fs::metadata(source).map_err(|e| Error::io(source, e))?;
    Ok(if meta.is_dir() {
        scan_image_folder(source)?
    } else if has_extension(source, &["csv"]) {
        scan_csv(source)?
    } else {
        return Err(Error::Input(format!(
            "{}: not a directory (ImageFolder) or a .csv manifest",
            source.display()
        )));
    })
}

/// Whether `path`'s extension is one of `extensions` (lower case), ignoring case.
fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(OsStr::to_str)
        .is_some_and(|ext| extensions.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

fn scan_image_folder(root: &Path) -> Result<Dataset> {
    let mut classes = Vec::new();
    for entry in fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        let path = entry.path();
        // fs::metadata follows symlinks, as torchvision's scandir().is_dir() does.
        if is_hidden(&entry.file_name()) || !fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        let name = entry.file_name().into_string().map_err(|name| {
            Error::Input(format!(
                "{}: class folder name {name:?} is not valid UTF-8",
                root.display()
            ))
        })?;
        classes.push(name);
    }
    classes.sort();
    let mut images = Vec::new();
    for class in &classes {
        let mut files = Vec::new();
        collect_images(&root.join(class), 0, &mut files)?;
        push_class(&mut images, class, files);
    }
    Ok(Dataset { images, classes })
}

/// Appends one class's image files to `images` in torchvision's order.
fn push_class(images: &mut Vec<ImageRecord>, class: &str, mut files: Vec<PathBuf>) {
    // torchvision walks sorted (dirpath, filenames): compare the directory as a whole
    // string first, then the file name (this differs from component-wise Path ordering).
    files.sort_by(|a, b| {
        let key = |p: &PathBuf| {
            (
                p.parent()
                    .map(|d| d.as_os_str().as_encoded_bytes().to_vec()),
                p.file_name().map(|n| n.as_encoded_bytes().to_vec()),
            )
        };
        key(a).cmp(&key(b))
    });
    for path in files {
        images.push(ImageRecord {
            id: images.len() as u64,
            path,
            label: class.to_string(),
        });
    }
}

/// An ImageFolder under an object-store prefix: one listing, grouped by the first segment.
fn scan_remote_image_folder(root: &Path) -> Result<Dataset> {
    let mut by_class: std::collections::BTreeMap<String, Vec<PathBuf>> = Default::default();
    for entry in storage::list(root).map_err(|e| Error::io(root, e.into_io_at(root)))? {
        let Ok(relative) = entry.path.strip_prefix(root) else {
            continue;
        };
        let mut parts = relative.components();
        let class = parts.next().map(|c| c.as_os_str());
        // Objects directly under the root are not in a class; hidden folders are never classes.
        let (Some(class), true) = (class, parts.next().is_some()) else {
            continue;
        };
        if is_hidden(class) {
            continue;
        }
        let class = class.to_string_lossy().into_owned();
        let files = by_class.entry(class).or_default();
        if has_extension(&entry.path, &IMAGE_EXTENSIONS) {
            files.push(entry.path);
        }
    }
    let mut images = Vec::new();
    for (class, files) in &by_class {
        push_class(&mut images, class, files.clone());
    }
    Ok(Dataset {
        images,
        classes: by_class.into_keys().collect(),
    })
}

/// A CSV reader over a local file or an object (read whole: manifests are small).
fn csv_reader(path: &Path) -> Result<csv::Reader<Box<dyn Read>>> {
    let source: Box<dyn Read> = if storage::is_remote(path) {
        let bytes = storage::read(path).map_err(|e| Error::io(path, e.into_io_at(path)))?;
        Box::new(std::io::Cursor::new(bytes))
    } else {
        Box::new(fs::File::open(path).map_err(|e| Error::io(path, e))?)
    };
    Ok(csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(source))
}

/// Appends the image files below `dir` (following symlinks) to `out`.
fn collect_images(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::Input(format!(
            "{}: folders nested deeper than {MAX_DEPTH} levels (a symlink loop?)",
            dir.display()
        )));
    }
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() => collect_images(&path, depth + 1, out)?,
            // A dangling symlink with an image name is listed: the decoder reports it.
            _ if has_extension(&path, &IMAGE_EXTENSIONS) => out.push(path),
            _ => {}
        }
    }
    Ok(())
}

fn scan_csv(manifest: &Path) -> Result<Dataset> {
    let at = |line: u64, problem: &str| {
        Error::Input(format!("{}: line {line}: {problem}", manifest.display()))
    };
    let mut reader = csv_reader(manifest)?;
    let headers = reader
        .headers()
        .map_err(|e| csv_error(manifest, e))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            at(
                1,
                &format!(
                    "header must name the columns path and label, found: {}",
                    headers.iter().collect::<Vec<_>>().join(",")
                ),
            )
        })
    };
    let (path_col, label_col) = (column("path")?, column("label")?);
    let base = manifest.parent().unwrap_or(Path::new(""));
    let mut images = Vec::new();
    let mut classes = BTreeSet::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(manifest, e))?;
        let line = record.position().map_or(0, |p| p.line());
        let path = record.get(path_col).unwrap_or_default();
        let label = record.get(label_col).unwrap_or_default();
        let image = manifest_record(manifest, base, images.len() as u64, line, path, label)?;
        if !label.is_empty() {
            classes.insert(label.to_string());
        }
        images.push(image);
    }
    Ok(Dataset {
        images,
        classes: classes.into_iter().collect(),
    })
}

/// Image `id` of a manifest: its `path` (relative to the manifest's directory unless a URL)
/// and `label`, read on `line`.
fn manifest_record(
    manifest: &Path,
    base: &Path,
    id: u64,
    line: u64,
    path: &str,
    label: &str,
) -> Result<ImageRecord> {
    let at =
        |problem: String| Error::Input(format!("{}: line {line}: {problem}", manifest.display()));
    if path.is_empty() {
        return Err(at("empty path".into()));
    }
    let location = if storage::is_remote(Path::new(path)) || path.starts_with("file://") {
        storage::location(path)
    } else {
        base.join(path)
    };
    // A tar member may be unlabelled (the decoder skips it); a file may not.
    if label.is_empty() && MemberLocation::parse(&location).is_none() {
        return Err(at(format!("empty label for {path}")));
    }
    Ok(ImageRecord {
        id,
        path: location,
        label: label.to_string(),
    })
}

/// A CSV error as the worker's error: I/O errors stay I/O errors, format errors keep the
/// csv crate's message, which names the record and line.
fn csv_error(file: &Path, e: csv::Error) -> Error {
    if !e.is_io_error() {
        return Error::Input(format!("{}: {e}", file.display()));
    }
    match e.into_kind() {
        csv::ErrorKind::Io(io) => Error::io(file, io),
        kind => Error::Input(format!("{}: {kind:?}", file.display())),
    }
}

/// Maps label names to the model's output indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMap {
    /// Name by output index; `None` where the label file gives no name.
    by_index: Vec<Option<String>>,
    by_name: HashMap<String, u32>,
}

impl LabelMap {
    /// The ImageFolder rule: a label's index is its position among the sorted unique names.
    pub fn sorted(classes: &[String]) -> Self {
        let names: BTreeSet<&String> = classes.iter().collect();
        let by_index: Vec<Option<String>> = names.into_iter().map(|n| Some(n.clone())).collect();
        Self::from_indexed(by_index)
    }

    fn from_indexed(by_index: Vec<Option<String>>) -> Self {
        let by_name = by_index
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (n.clone(), i as u32)))
            .collect();
        LabelMap { by_index, by_name }
    }

    /// Reads a label file, by extension:
    ///
    /// - `.txt`: one class name per line, line k (from 0) is output k; the whole trimmed
    ///   line is the name. An empty line leaves its index unnamed; trailing empty lines
    ///   are ignored.
    /// - `.csv`: a header with the columns `label` and `index`, one row per named output.
    ///
    /// A name given twice, or an index given twice, is an error naming the line.
    pub fn from_file(path: &Path) -> Result<Self> {
        let at = |line: usize, problem: String| {
            Error::Input(format!("{}: line {line}: {problem}", path.display()))
        };
        // (line number, index, name) triples.
        let mut entries: Vec<(usize, usize, String)> = Vec::new();
        if has_extension(path, &["txt"]) {
            let text = if storage::is_remote(path) {
                storage::read_to_string(path).map_err(|e| Error::io(path, e.into_io_at(path)))?
            } else {
                fs::read_to_string(path).map_err(|e| Error::io(path, e))?
            };
            for (k, line) in text.lines().enumerate() {
                let name = line.trim();
                if !name.is_empty() {
                    entries.push((k + 1, k, name.to_string()));
                }
            }
        } else if has_extension(path, &["csv"]) {
            let mut reader = csv_reader(path)?;
            let headers = reader.headers().map_err(|e| csv_error(path, e))?.clone();
            let col = |name: &str| {
                headers.iter().position(|h| h == name).ok_or_else(|| {
                    at(
                        1,
                        "header must name the columns label and index".to_string(),
                    )
                })
            };
            let (label_col, index_col) = (col("label")?, col("index")?);
            for record in reader.records() {
                let record = record.map_err(|e| csv_error(path, e))?;
                let line = record.position().map_or(0, |p| p.line() as usize);
                let name = record.get(label_col).unwrap_or_default();
                let index = record.get(index_col).unwrap_or_default();
                if name.is_empty() {
                    return Err(at(line, "empty label".into()));
                }
                let index = index
                    .parse::<u32>()
                    .map_err(|_| at(line, format!("index '{index}' is not a whole number")))?;
                // The map is a table by index: a stray huge index would size it.
                if index >= MAX_LABEL_INDEX {
                    return Err(at(
                        line,
                        format!("index {index} is beyond any model's outputs (at most {MAX_LABEL_INDEX})"),
                    ));
                }
                entries.push((line, index as usize, name.to_string()));
            }
        } else {
            return Err(Error::Input(format!(
                "{}: a label map is a .txt (one name per line) or .csv (label,index) file",
                path.display()
            )));
        }
        let size = entries.iter().map(|(_, i, _)| i + 1).max().unwrap_or(0);
        let mut by_index: Vec<Option<String>> = vec![None; size];
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (line, index, name) in &entries {
            if let Some(first) = seen.insert(name, *line) {
                return Err(at(
                    *line,
                    format!("label '{name}' is already given on line {first}"),
                ));
            }
            if by_index[*index].is_some() {
                return Err(at(*line, format!("index {index} is given twice")));
            }
            by_index[*index] = Some(name.clone());
        }
        if by_index.is_empty() {
            return Err(Error::Input(format!(
                "{}: the label map names no label",
                path.display()
            )));
        }
        Ok(Self::from_indexed(by_index))
    }

    /// The output index of `label`, if the map names it.
    pub fn index(&self, label: &str) -> Option<u32> {
        self.by_name.get(label).copied()
    }

    /// Names by output index, for the region files' `labels` metadata; an index the map
    /// does not name gets `""` (hint does not invent names).
    pub fn names(&self) -> Vec<String> {
        self.by_index
            .iter()
            .map(|n| n.clone().unwrap_or_default())
            .collect()
    }

    /// Checks, before any work starts, that every label of `dataset` maps to one of the
    /// model's `num_outputs` outputs; one error lists every label that does not.
    pub fn check(&self, dataset: &Dataset, num_outputs: i64) -> Result<()> {
        let problems: Vec<String> = dataset
            .classes
            .iter()
            .filter_map(|label| match self.index(label) {
                None => Some(format!("{label} (not in the label map)")),
                Some(i) if i64::from(i) >= num_outputs => {
                    Some(format!("{label} (index {i} ≥ {num_outputs} outputs)"))
                }
                Some(_) => None,
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(Error::Input(format!(
            "{} dataset label(s) have no model output: {}",
            problems.len(),
            problems.join(", ")
        )))
    }

    /// The dataset's images with their output indices, in id order; errors like
    /// [`check`](Self::check) (without the output count) when a label is not mapped. An
    /// unlabelled image (`""`) has no index.
    pub fn labelled(&self, dataset: &Dataset) -> Result<Vec<LabelledImage>> {
        self.check(dataset, i64::MAX)?;
        dataset
            .images
            .iter()
            .map(|image| {
                let label = match image.label.as_str() {
                    "" => None,
                    name => Some(self.index(name).ok_or_else(|| {
                        Error::Input(format!(
                            "{}: label '{name}' is not one of the dataset's classes",
                            image.path.display()
                        ))
                    })?),
                };
                Ok(LabelledImage {
                    id: image.id,
                    path: image.path.clone(),
                    label,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"not really an image").unwrap();
    }

    #[test]
    fn image_folder_follows_torchvision_order() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for f in [
            "n02/b.jpg",
            "n02/a.PNG",
            "n01/z.jpeg",
            "n01/sub/y.jpg",
            "n01/sub b/x.jpg",
            "n01/sub/a/k.png",
            "n01/sub-x/j.jpg",
            "n01/Zed.jpg",
            "n01/readme.txt",
            "n01/notes.jpg.bak",
            ".hidden/c.jpg",
            "n03/deep/er/q.jpg",
        ] {
            touch(&root.join(f));
        }
        fs::create_dir(root.join("n00_empty")).unwrap();
        touch(&root.join("stray.jpg")); // a file at top level is no class

        let ds = scan(root).unwrap();
        assert_eq!(ds.classes, ["n00_empty", "n01", "n02", "n03"]);
        let rel: Vec<String> = ds
            .images
            .iter()
            .map(|i| {
                i.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        // Exactly torchvision 0.26's ImageFolder order for this tree: directories compare
        // as whole strings, so "sub" < "sub b" < "sub-x" < "sub/a" (' ' < '-' < '/').
        assert_eq!(
            rel,
            [
                "n01/Zed.jpg",
                "n01/z.jpeg",
                "n01/sub/y.jpg",
                "n01/sub b/x.jpg",
                "n01/sub-x/j.jpg",
                "n01/sub/a/k.png",
                "n02/a.PNG",
                "n02/b.jpg",
                "n03/deep/er/q.jpg"
            ]
        );
        assert!(ds.images.iter().enumerate().all(|(i, r)| r.id == i as u64));
        assert_eq!(ds.images[6].label, "n02");
    }

    #[test]
    fn empty_dataset_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("cls")).unwrap();
        touch(&dir.path().join("cls/readme.md"));
        let err = scan(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no images"), "{err}");
    }

    #[test]
    fn missing_source_is_an_io_error_naming_it() {
        let err = scan(Path::new("/no/such/dataset")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().starts_with("/no/such/dataset: "), "{err}");
    }

    #[test]
    fn csv_paths_are_relative_to_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("lists");
        fs::create_dir(&sub).unwrap();
        let csv = sub.join("train.csv");
        fs::write(
            &csv,
            "path,label\nimgs/a.png,dog\n/abs/b.jpg,cat\n  imgs/c.png , dog \n",
        )
        .unwrap();
        let ds = scan(&csv).unwrap();
        assert_eq!(ds.classes, ["cat", "dog"]);
        let paths: Vec<_> = ds.images.iter().map(|i| i.path.clone()).collect();
        assert_eq!(
            paths,
            [
                sub.join("imgs/a.png"),
                PathBuf::from("/abs/b.jpg"),
                sub.join("imgs/c.png")
            ]
        );
        assert_eq!(ds.images[2].label, "dog");
        assert_eq!(ds.images[2].id, 2);
    }

    #[test]
    fn bad_csv_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("m.csv");
        fs::write(&csv, "path,label\na.png,dog\nb.png,\n").unwrap();
        let err = scan(&csv).unwrap_err().to_string();
        assert!(err.contains("m.csv: line 3: empty label"), "{err}");

        fs::write(&csv, "path,label\na.png,dog\nb.png,cat,extra\n").unwrap();
        let err = scan(&csv).unwrap_err().to_string();
        assert!(err.contains("m.csv") && err.contains("line: 3"), "{err}");

        fs::write(&csv, "file,class\na.png,dog\n").unwrap();
        let err = scan(&csv).unwrap_err().to_string();
        assert!(err.contains("line 1: header must name"), "{err}");
    }

    #[test]
    fn label_map_sorted_and_from_files() {
        let classes = vec!["b".to_string(), "a".into(), "b".into()];
        let sorted = LabelMap::sorted(&classes);
        assert_eq!(sorted.index("a"), Some(0));
        assert_eq!(sorted.index("b"), Some(1));
        assert_eq!(sorted.names(), ["a", "b"]);

        let dir = tempfile::tempdir().unwrap();
        let txt = dir.path().join("labels.txt");
        fs::write(&txt, "n01\n\nn03 \n\n").unwrap();
        let map = LabelMap::from_file(&txt).unwrap();
        assert_eq!(map.index("n03"), Some(2));
        assert_eq!(map.names(), ["n01", "", "n03"]);

        let csv = dir.path().join("labels.csv");
        fs::write(&csv, "label,index\ndog,5\ncat,1\n").unwrap();
        let map = LabelMap::from_file(&csv).unwrap();
        assert_eq!(map.index("dog"), Some(5));
        assert_eq!(map.names(), ["", "cat", "", "", "", "dog"]);

        fs::write(&csv, "label,index\ndog,5\ncat,x\n").unwrap();
        let err = LabelMap::from_file(&csv).unwrap_err().to_string();
        assert!(err.contains("line 3: index 'x'"), "{err}");
        // An index sizes the table: one beyond any model is an error, not 100 GB.
        fs::write(&csv, "label,index\ndog,4000000000\n").unwrap();
        let err = LabelMap::from_file(&csv).unwrap_err().to_string();
        assert!(
            err.contains("line 2: index 4000000000 is beyond any model's outputs"),
            "{err}"
        );
        fs::write(&txt, "dog\ncat\ndog\n").unwrap();
        let err = LabelMap::from_file(&txt).unwrap_err().to_string();
        assert!(
            err.contains("line 3: label 'dog' is already given on line 1"),
            "{err}"
        );
    }

    #[test]
    fn check_lists_every_label_without_an_output() {
        let dataset = Dataset {
            images: vec![],
            classes: vec!["a".into(), "b".into(), "c".into(), "zebra".into()],
        };
        let map = LabelMap::sorted(&["a".to_string(), "b".into(), "c".into()]);
        assert!(map.check(&dataset, 4).is_err());
        let err = map.check(&dataset, 2).unwrap_err().to_string();
        assert_eq!(
            err,
            "2 dataset label(s) have no model output: c (index 2 ≥ 2 outputs), \
             zebra (not in the label map)"
        );
        let fine = Dataset {
            images: vec![],
            classes: vec!["a".into(), "c".into()],
        };
        assert!(map.check(&fine, 3).is_ok());
    }

    #[test]
    fn labelled_maps_images_to_outputs() {
        let dataset = Dataset {
            images: vec![
                ImageRecord {
                    id: 0,
                    path: "x.png".into(),
                    label: "b".into(),
                },
                ImageRecord {
                    id: 1,
                    path: "y.png".into(),
                    label: "a".into(),
                },
            ],
            classes: vec!["a".into(), "b".into()],
        };
        let map = LabelMap::sorted(&dataset.classes);
        let labelled = map.labelled(&dataset).unwrap();
        assert_eq!(labelled[0].label, Some(1));
        assert_eq!(labelled[1].label, Some(0));
        assert_eq!(labelled[1].path, PathBuf::from("y.png"));
    }
}
