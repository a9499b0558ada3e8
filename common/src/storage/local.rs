//! The local side: atomic writes, recursive listings, renames and removals on the file system.

use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Entry, StorageError};

/// Creates the parent directory of `path` when it has one.
pub(crate) fn create_parent(path: &Path) -> Result<(), StorageError> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => std::fs::create_dir_all(parent)
            .map_err(|e| StorageError::io(parent, "create directory", e)),
        _ => Ok(()),
    }
}

/// A temporary name beside `path`, unique within this machine's processes and threads, so
/// concurrent writers of the same file never share one.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// The bytes `range` of the file (positioned reads; a range past the end is an error).
pub(crate) fn read_range(path: &Path, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| StorageError::io(path, "", e))?;
    let mut bytes = vec![0; (range.end - range.start) as usize];
    file.read_exact_at(&mut bytes, range.start).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            StorageError::new(
                path.display().to_string(),
                format!("read: the file ends before byte {}", range.end),
            )
        } else {
            StorageError::io(path, "read", e)
        }
    })?;
    Ok(bytes)
}

/// Writes `bytes` to a temporary name, syncs it and renames it over `path`.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StorageError> {
    create_parent(path)?;
    let temp = temp_path(path);
    let result = (|| {
        let mut file =
            std::fs::File::create(&temp).map_err(|e| StorageError::io(&temp, "create", e))?;
        file.write_all(bytes)
            .map_err(|e| StorageError::io(&temp, "write", e))?;
        // The data must be on disk before the rename makes the file look complete.
        file.sync_all()
            .map_err(|e| StorageError::io(&temp, "sync", e))?;
        std::fs::rename(&temp, path).map_err(|e| StorageError::io(path, "rename", e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Every file below `dir`, recursively, sorted by path; a missing `dir` lists as empty.
pub(crate) fn list(dir: &Path) -> Result<Vec<Entry>, StorageError> {
    let mut entries = Vec::new();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => walk(dir, &mut entries)?,
        Ok(_) => {
            return Err(StorageError::new(
                dir.display().to_string(),
                "not a directory",
            ))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io(dir, "stat", e)),
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

fn walk(dir: &Path, entries: &mut Vec<Entry>) -> Result<(), StorageError> {
    let read = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, "read directory", e))?;
    for entry in read {
        let entry = entry.map_err(|e| StorageError::io(dir, "read directory", e))?;
        let path = entry.path();
        // Follows symbolic links, as reading the file would.
        let meta = std::fs::metadata(&path).map_err(|e| StorageError::io(&path, "stat", e))?;
        if meta.is_dir() {
            walk(&path, entries)?;
        } else {
            entries.push(Entry {
                path,
                size: meta.len(),
            });
        }
    }
    Ok(())
}

/// Renames one file, creating the destination's parents.
pub(crate) fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    create_parent(to)?;
    std::fs::rename(from, to).map_err(|e| {
        let mut error = StorageError::io(from, "rename", e);
        error.message = format!("{} (to {})", error.message, to.display());
        error
    })
}

/// Removes a file or a directory tree; a missing one is fine.
pub(crate) fn remove_all(path: &Path) -> Result<(), StorageError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StorageError::io(path, "stat", e)),
    };
    let result = if meta.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(StorageError::io(path, "remove", e))
        }
        _ => Ok(()),
    }
}
