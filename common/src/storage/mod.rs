//! Files and objects by location: one API for local paths and `s3://bucket/key` URLs.
//!
//! A location is a [`Path`] whose text is either a local path or an object-store URL, so the
//! engines' path arithmetic (`join`, `parent`, `file_name`, `with_extension`) works for both.
//! `file:///x` is the local path `/x` ([`location`]). Only `s3://` is remote; other
//! `scheme://` URLs are rejected with "unsupported URL scheme".
//!
//! Everything here is synchronous: the engines run on plain threads. Remote calls run on one
//! process-wide tokio runtime (two threads named `hint-storage`) and are waited for through a
//! channel, so calling from inside another runtime's thread does not panic.
//!
//! - [`read`], [`read_range`], [`read_to_string`], [`write`] (atomic), [`exists`],
//!   [`is_dir`], [`list`], [`rename`], [`remove_all`].
//! - [`create`]: an [`ObjectWriter`] that streams a large file or object and makes it visible
//!   only at [`ObjectWriter::finish`] (locally through `.<name>.partial`, remotely as an S3
//!   multipart upload of [`part_size`] parts).
//! - [`fetch`], [`fetch_dir`]: a local copy of a remote object or prefix in [`cache_dir`],
//!   reused while the object's size and ETag are unchanged; [`upload_dir`]: the reverse.
//!
//! # Configuration (environment)
//!
//! S3 clients are built once per bucket with `object_store`'s `AmazonS3Builder::from_env`:
//!
//! - `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`): credentials;
//!   without them the instance metadata service or web identity is asked.
//! - `AWS_REGION` (or `AWS_DEFAULT_REGION`): the bucket's region, `us-east-1` by default.
//! - `AWS_ENDPOINT` or `AWS_ENDPOINT_URL`: an S3-compatible server (MinIO, moto, Ceph …);
//!   requests use path-style URLs unless `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true`.
//! - `AWS_ALLOW_HTTP=true`: needed for a plain `http://` endpoint.
//! - `HINT_S3_PART_SIZE`: bytes per multipart part (default 8 MiB, at least 5 MiB).
//! - `HINT_CACHE_DIR`: where [`fetch`] keeps its copies (default `<tmp>/hint-cache`).
//! - `HINT_CACHE_LIMIT`: the most bytes of copies it keeps (`500GiB`, `80G`, a number of
//!   bytes; default: no limit), least recently used first out; copies in use are pinned
//!   ([`Cached`]). `hint-worker --cache-limit` sets it ([`set_cache_limit`]).

mod cache;
mod local;
mod remote;
mod runtime;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use cache::{Cache, Cached, LOW_WATER};
pub(crate) use writer::partial_path;
pub use writer::ObjectWriter;

/// What went wrong with which file or object.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {message}")]
pub struct StorageError {
    /// The path or URL concerned.
    pub location: String,
    /// What went wrong, in words ("no such object", "upload failed: …").
    pub message: String,
    /// The file or object does not exist (a missing input rather than an I/O failure).
    pub not_found: bool,
}

impl StorageError {
    pub(crate) fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        StorageError {
            location: location.into(),
            message: message.into(),
            not_found: false,
        }
    }

    pub(crate) fn not_found(location: impl Into<String>, message: impl Into<String>) -> Self {
        StorageError {
            location: location.into(),
            message: message.into(),
            not_found: true,
        }
    }

    /// A local I/O error on `path` while doing `verb` ("" for a plain read, whose message is
    /// then the system's, as `std::fs::read` gives it); "not found" is kept apart.
    pub(crate) fn io(path: &Path, verb: &str, source: std::io::Error) -> Self {
        StorageError {
            location: path.display().to_string(),
            message: if verb.is_empty() {
                source.to_string()
            } else {
                format!("{verb}: {source}")
            },
            not_found: source.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

impl StorageError {
    /// This error as an [`std::io::Error`] for an error type that already names `path`: just
    /// the message when the error is about `path`, the whole text when it is about another
    /// file (a cached copy, say). The kind is `NotFound` when [`not_found`](Self::not_found).
    pub fn into_io_at(self, path: &Path) -> std::io::Error {
        let kind = if self.not_found {
            std::io::ErrorKind::NotFound
        } else {
            std::io::ErrorKind::Other
        };
        let message = if Path::new(&self.location) == path {
            self.message
        } else {
            self.to_string()
        };
        std::io::Error::new(kind, message)
    }
}

impl From<StorageError> for std::io::Error {
    fn from(error: StorageError) -> Self {
        let kind = if error.not_found {
            std::io::ErrorKind::NotFound
        } else {
            std::io::ErrorKind::Other
        };
        std::io::Error::new(kind, error)
    }
}

/// One file or object found by [`list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its full location: a local path, or an `s3://` URL.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// A location taken apart: a local path or an object in a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Local(PathBuf),
    S3(ObjectUrl),
}

/// `s3://bucket/key`; `key` has no leading or trailing `/` (empty for the bucket itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectUrl {
    pub bucket: String,
    pub key: String,
}

impl ObjectUrl {
    /// The URL text, `s3://bucket/key`.
    pub fn url(&self) -> String {
        if self.key.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.key)
        }
    }
}

/// Splits `scheme://rest` into its scheme when the text starts with a URL scheme.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let valid = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some(scheme)
}

/// Takes a location apart, rejecting URLs this module cannot reach.
pub(crate) fn target(path: &Path) -> Result<Target, StorageError> {
    let text = path.to_string_lossy();
    let Some(scheme) = url_scheme(&text) else {
        return Ok(Target::Local(path.to_path_buf()));
    };
    match scheme {
        "file" => Ok(Target::Local(location(&text))),
        "s3" => {
            let rest = &text["s3://".len()..];
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::new(text, "no bucket in the URL"));
            }
            Ok(Target::S3(ObjectUrl {
                bucket: bucket.to_string(),
                key: key.trim_matches('/').to_string(),
            }))
        }
        other => Err(StorageError::new(
            text.as_ref(),
            format!(
                "unsupported URL scheme \"{other}://\" (only s3:// URLs and local paths are supported)"
            ),
        )),
    }
}

/// Whether `path` names an object-store URL (`s3://…` or another `scheme://`) rather than a
/// local file. `file://` URLs are local.
pub fn is_remote(path: &Path) -> bool {
    let text = path.to_string_lossy();
    url_scheme(&text).is_some_and(|scheme| scheme != "file")
}

/// The location named by `text`: `file:///x` is the local path `/x`; anything else unchanged.
pub fn location(text: &str) -> PathBuf {
    match text.strip_prefix("file://") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(text),
    }
}

/// Where [`fetch`] keeps local copies: `$HINT_CACHE_DIR`, else `<tmp>/hint-cache`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("HINT_CACHE_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => std::env::temp_dir().join("hint-cache"),
    }
}

/// A limit set by [`set_cache_limit`], over `HINT_CACHE_LIMIT` (Some(None): no limit).
static LIMIT: Mutex<Option<Option<u64>>> = Mutex::new(None);

/// Sets the most bytes [`fetch`] keeps in [`cache_dir`] (None: no limit), over
/// `HINT_CACHE_LIMIT`.
pub fn set_cache_limit(limit: Option<u64>) {
    *LIMIT.lock().unwrap_or_else(|e| e.into_inner()) = Some(limit);
}

/// The cache [`fetch`] uses: [`cache_dir`], with the limit of [`set_cache_limit`] or else
/// `HINT_CACHE_LIMIT`.
pub fn cache() -> Result<Cache, StorageError> {
    let set = *LIMIT.lock().unwrap_or_else(|e| e.into_inner());
    let limit = match set {
        Some(limit) => limit,
        None => match std::env::var("HINT_CACHE_LIMIT") {
            Ok(text) if !text.trim().is_empty() => {
                Some(parse_bytes(&text).map_err(|e| StorageError::new("HINT_CACHE_LIMIT", e))?)
            }
            _ => None,
        },
    };
    Ok(Cache::new(cache_dir(), limit))
}

/// Bytes from `500GiB`, `80G`, `300Gi` (Kubernetes' spelling), `1.5TB`, `4096` (binary and
/// decimal units; `G` is GiB).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (like 500GiB, 80G or 4096)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "ki" | "kib" => 1024.0,
        "m" | "mi" | "mib" => 1024f64.powi(2),
        "g" | "gi" | "gib" => 1024f64.powi(3),
        "t" | "ti" | "tib" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)"
            ))
        }
    };
    Ok((value * scale).round() as u64)
}

/// S3's smallest part (except the last one of an upload).
pub const MIN_PART_SIZE: usize = 5 << 20;

/// Bytes per multipart part: `$HINT_S3_PART_SIZE` (at least [`MIN_PART_SIZE`]), else 8 MiB.
pub fn part_size() -> usize {
    std::env::var("HINT_S3_PART_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(8 << 20, |bytes| bytes.max(MIN_PART_SIZE))
}

/// The whole content of a file or object.
pub fn read(path: &Path) -> Result<Vec<u8>, StorageError> {
    match target(path)? {
        Target::Local(path) => std::fs::read(&path).map_err(|e| StorageError::io(&path, "", e)),
        Target::S3(url) => remote::read(&url),
    }
}

/// The bytes `range` of a file or object (one ranged GET on S3). A range that runs past the
/// end is an error, not a short read.
pub fn read_range(path: &Path, range: std::ops::Range<u64>) -> Result<Vec<u8>, StorageError> {
    match target(path)? {
        Target::Local(path) => local::read_range(&path, range),
        Target::S3(url) => remote::read_range(&url, range),
    }
}

/// The whole content of a file or object as UTF-8 text.
pub fn read_to_string(path: &Path) -> Result<String, StorageError> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|e| {
        StorageError::new(
            path.display().to_string(),
            format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Writes `bytes` as the whole file or object, atomically: readers see the old content or the
/// new, never a part. Local parent directories are created.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    match target(path)? {
        Target::Local(path) => local::write_atomic(&path, bytes),
        Target::S3(url) => remote::put(&url, bytes::Bytes::copy_from_slice(bytes)),
    }
}

/// Starts streaming a file or object; see [`ObjectWriter`].
pub fn create(path: &Path) -> Result<ObjectWriter, StorageError> {
    match target(path)? {
        Target::Local(local) => ObjectWriter::local(path, &local),
        Target::S3(url) => ObjectWriter::remote(path, url, part_size()),
    }
}

/// Whether a file (locally) or an object (remotely: a HEAD request) exists at `path`.
/// Directories and prefixes are not files: see [`is_dir`].
pub fn exists(path: &Path) -> Result<bool, StorageError> {
    match target(path)? {
        Target::Local(path) => match std::fs::metadata(&path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(StorageError::io(&path, "stat", e)),
        },
        Target::S3(url) => Ok(remote::head(&url)?.is_some()),
    }
}

/// Whether `path` is a local directory, or a prefix with at least one object below it.
pub fn is_dir(path: &Path) -> Result<bool, StorageError> {
    match target(path)? {
        Target::Local(path) => Ok(path.is_dir()),
        Target::S3(url) => remote::has_objects_below(&url),
    }
}

/// Every file or object below `dir`, at any depth, sorted by path. A directory or prefix that
/// does not exist lists as empty.
pub fn list(dir: &Path) -> Result<Vec<Entry>, StorageError> {
    match target(dir)? {
        Target::Local(dir) => local::list(&dir),
        Target::S3(url) => remote::list(&url),
    }
}

/// Moves one file or object to `to`, replacing what is there. Locally: parents are created and
/// the file renamed; within a bucket: copy, then delete; otherwise the content is streamed.
pub fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    match (target(from)?, target(to)?) {
        (Target::Local(from), Target::Local(to)) => local::rename(&from, &to),
        (Target::S3(from), Target::S3(to)) if from.bucket == to.bucket => {
            remote::rename(&from, &to)
        }
        (source, _) => {
            copy_streaming(from, to)?;
            match source {
                Target::Local(path) => {
                    std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, "remove", e))
                }
                Target::S3(url) => remote::delete(&url),
            }
        }
    }
}

/// Removes a file or object, or everything below a directory or prefix. Missing is fine.
pub fn remove_all(path: &Path) -> Result<(), StorageError> {
    match target(path)? {
        Target::Local(path) => local::remove_all(&path),
        Target::S3(url) => remote::remove_all(&url),
    }
}

/// A local file with the content of `path`: a local path is itself; an object is streamed
/// into `cache_dir()/s3/<bucket>/<key>` (reused while its size and ETag are unchanged) and
/// pinned there while the returned handle lives ([`Cache::fetch`] on [`cache`]).
pub fn fetch(path: &Path) -> Result<Cached, StorageError> {
    cache()?.fetch(path)
}

/// A local directory with every file below `dir`: a local directory is itself; a prefix is
/// fetched object by object into the cache (see [`fetch`]), each pinned while the returned
/// handle lives.
pub fn fetch_dir(dir: &Path) -> Result<Cached, StorageError> {
    cache()?.fetch_dir(dir)
}

/// Copies every file below the local directory `local` to `dest/<relative path>`.
pub fn upload_dir(local: &Path, dest: &Path) -> Result<(), StorageError> {
    let local = match target(local)? {
        Target::Local(path) => path,
        Target::S3(url) => {
            return Err(StorageError::new(
                url.url(),
                "upload_dir needs a local source directory",
            ))
        }
    };
    for entry in local::list(&local)? {
        let relative = entry
            .path
            .strip_prefix(&local)
            .expect("listed below the directory");
        copy_streaming(&entry.path, &dest.join(relative))?;
    }
    Ok(())
}

/// Copies `from` to `to` through an [`ObjectWriter`], a buffer at a time.
fn copy_streaming(from: &Path, to: &Path) -> Result<(), StorageError> {
    let source = fetch(from)?;
    let mut file =
        std::fs::File::open(&source).map_err(|e| StorageError::io(&source, "open", e))?;
    let mut writer = create(to)?;
    std::io::copy(&mut file, &mut writer).map_err(|e| {
        StorageError::new(
            to.display().to_string(),
            format!("copy from {} failed: {e}", from.display()),
        )
    })?;
    writer.finish()?;
    Ok(())
}
