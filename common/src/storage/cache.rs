//! Local copies of remote objects: `<root>/s3/<bucket>/<key>`, each with a sidecar in
//! `<root>/meta/s3/<bucket>/<key>.json` recording the size and ETag it was fetched at, so
//! an unchanged object is not downloaded again. Sidecars live in their own tree so a fetched
//! directory holds exactly the objects below its prefix.
//!
//! **A size limit with LRU eviction** ([`Cache::limit`], `HINT_CACHE_LIMIT`). A copy is
//! *pinned* while a [`Cached`] handle to it lives: the handle holds a shared `flock` on the
//! file, and eviction takes an exclusive lock without waiting before it removes a copy, so
//! a pinned copy is never removed — not by this process, nor by another worker sharing the
//! directory. A fetch that brings the cache over its limit removes the least recently used
//! unpinned copies (a copy's modification time is its last use: every hit touches it) down
//! to [`LOW_WATER`] of the limit, so the directory is rescanned only once per that much
//! downloading. When everything left is pinned the cache stays over its limit (a task needs
//! its inputs) and says so in the log. Each process counts its own downloads since its last
//! scan, so processes sharing a directory can together pass the limit by what the others
//! downloaded meanwhile, until one of them rescans.
//!
//! A reader that found a copy and locks it just as another process removed it sees the path
//! no longer names its file and fetches again; a new copy is locked before it is renamed
//! into place, so it is pinned from the moment it is visible; and fetches of one object are
//! serialised (a lock file per stripe of objects), so a second fetcher finds the first's
//! copy instead of renaming its own over it. (A copy replaced because its object changed
//! leaves earlier readers holding the old version, as before.)

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::remote::{self, object_key};
use super::runtime::block_on;
use super::{local, target, ObjectUrl, StorageError, Target};

/// Eviction goes down to this fraction of the limit.
pub const LOW_WATER: f64 = 0.9;

/// Lock files that serialise fetches of one object (objects share them by hash).
const INSTALL_STRIPES: u64 = 256;

/// A local file or directory with the content of a location, pinned in the cache while this
/// lives: a shared lock on each cached file it covers (none for a local path, which is
/// itself). Derefs to its path.
#[derive(Debug)]
pub struct Cached {
    path: PathBuf,
    /// The shared locks that pin the cached copies.
    _pins: Vec<File>,
}

impl Cached {
    /// A local file or directory, not in the cache (nothing to pin).
    pub fn local(path: PathBuf) -> Self {
        Cached {
            path,
            _pins: Vec::new(),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for Cached {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Cached {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

/// A cache directory and its size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    /// Where copies live.
    pub root: PathBuf,
    /// Bytes of copies at most, unless pinned copies alone exceed it (None: no limit).
    pub limit: Option<u64>,
}

/// Bytes this process believes each cache root holds: the last scan's total plus what it
/// downloaded since (a root is absent until its first download scans it). Its lock makes
/// one eviction run at a time in a process.
static USED: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

/// What a cached copy was fetched at.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    e_tag: String,
}

impl Cache {
    /// A cache at `root` holding at most `limit` bytes.
    pub fn new(root: impl Into<PathBuf>, limit: Option<u64>) -> Self {
        Cache {
            root: root.into(),
            limit,
        }
    }

    fn copy_path(&self, url: &ObjectUrl) -> PathBuf {
        let mut path = self.root.join("s3").join(&url.bucket);
        if !url.key.is_empty() {
            path.push(&url.key);
        }
        path
    }

    fn sidecar_path(&self, url: &ObjectUrl) -> PathBuf {
        let mut path = self.root.join("meta").join("s3").join(&url.bucket);
        path.push(format!("{}.json", url.key));
        path
    }

    /// The pinned copy of `url` when it was fetched at `meta`'s size and ETag and is intact.
    fn cached(&self, url: &ObjectUrl, meta: &ObjectMeta) -> Option<Cached> {
        let e_tag = meta.e_tag.clone()?;
        let expected = Sidecar {
            size: meta.size,
            e_tag,
        };
        let recorded: Sidecar =
            serde_json::from_slice(&std::fs::read(self.sidecar_path(url)).ok()?).ok()?;
        if recorded != expected {
            return None;
        }
        let copy = self.copy_path(url);
        let file = File::open(&copy).ok()?;
        file.lock_shared().ok()?;
        // Eviction may have removed the copy between the open and the lock: then the path
        // no longer names this file.
        let (held, now) = (file.metadata().ok()?, std::fs::metadata(&copy).ok()?);
        if (held.dev(), held.ino()) != (now.dev(), now.ino()) || held.len() != meta.size {
            return None;
        }
        // Its last use, for LRU eviction.
        let _ = file.set_modified(SystemTime::now());
        Some(Cached {
            path: copy,
            _pins: vec![file],
        })
    }

    /// A local file with the content of `path`: a local path is itself; an object is
    /// fetched into the cache (reused while its size and ETag are unchanged) and pinned
    /// there while the returned handle lives.
    pub fn fetch(&self, path: &Path) -> Result<Cached, StorageError> {
        match target(path)? {
            Target::Local(path) if path.is_file() => Ok(Cached::local(path)),
            Target::Local(path) => Err(StorageError::not_found(
                path.display().to_string(),
                "no such file",
            )),
            Target::S3(url) => self.fetch_remote(&url),
        }
    }

    /// A local directory with every file below `dir`: a local directory is itself; a
    /// prefix is fetched object by object, each pinned while the returned handle lives.
    pub fn fetch_dir(&self, dir: &Path) -> Result<Cached, StorageError> {
        match target(dir)? {
            Target::Local(path) => Ok(Cached::local(path)),
            Target::S3(url) => self.fetch_remote_dir(&url),
        }
    }

    /// A pinned local copy of the object at `url`.
    fn fetch_remote(&self, url: &ObjectUrl) -> Result<Cached, StorageError> {
        let meta = remote::head(url)?
            .ok_or_else(|| StorageError::not_found(url.url(), "no such object"))?;
        self.fetch_object(url, &meta)
    }

    /// A pinned local copy of the object at `url`, whose current metadata is `meta`.
    fn fetch_object(&self, url: &ObjectUrl, meta: &ObjectMeta) -> Result<Cached, StorageError> {
        // One fetch of an object at a time, across threads and processes: two downloads
        // of one object would each rename their copy into place, and the first one's pin
        // would then hold a file no longer at the path.
        let _installing = self.install_lock(url)?;
        if let Some(copy) = self.cached(url, meta) {
            return Ok(copy);
        }
        let copy = self.copy_path(url);
        let temp_dir = self.root.join("tmp");
        std::fs::create_dir_all(&temp_dir)
            .map_err(|e| StorageError::io(&temp_dir, "create directory", e))?;
        // In the cache's own directory (same file system, so the rename is atomic) and under
        // a unique name, so concurrent fetches of one object never write the same file.
        let temp = local::temp_path(&temp_dir.join("fetch"));
        let fetched = download(url, &temp).and_then(|meta| {
            // Pinned before it is visible: eviction never sees it unlocked.
            let pin = File::open(&temp).map_err(|e| StorageError::io(&temp, "open", e))?;
            pin.lock_shared()
                .map_err(|e| StorageError::io(&temp, "lock", e))?;
            local::rename(&temp, &copy)?;
            Ok((meta, pin))
        });
        let (fetched, pin) = match fetched {
            Ok(fetched) => fetched,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        // What was downloaded, not what the listing said: the object may have changed since.
        if let Some(e_tag) = fetched.e_tag {
            let sidecar = Sidecar {
                size: fetched.size,
                e_tag,
            };
            let text = serde_json::to_vec(&sidecar).expect("a sidecar serialises");
            local::write_atomic(&self.sidecar_path(url), &text)?;
        }
        self.downloaded(fetched.size);
        Ok(Cached {
            path: copy,
            _pins: vec![pin],
        })
    }

    /// An exclusive lock on the stripe of `url` (one of [`INSTALL_STRIPES`] lock files
    /// under `<root>/locks`), held while its copy is checked and, if need be, installed.
    fn install_lock(&self, url: &ObjectUrl) -> Result<File, StorageError> {
        let dir = self.root.join("locks");
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, "create directory", e))?;
        // FNV-1a: the same stripe in every process.
        let hash = url.url().bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let path = dir.join(format!("{:03}", hash % INSTALL_STRIPES));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, "open", e))?;
        file.lock()
            .map_err(|e| StorageError::io(&path, "lock", e))?;
        Ok(file)
    }

    /// A local directory holding every object below `url` (and nothing else), each pinned.
    fn fetch_remote_dir(&self, url: &ObjectUrl) -> Result<Cached, StorageError> {
        let dir = self.copy_path(url);
        let mut files = Vec::new();
        for meta in remote::list_meta(url)? {
            let object = remote::object_url(url, &meta.location);
            files.push(self.fetch_object(&object, &meta)?);
        }
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, "create directory", e))?;
        // Copies of objects deleted since an earlier fetch must not show up in the directory.
        let wanted: HashSet<&Path> = files.iter().map(Cached::path).collect();
        for entry in local::list(&dir)? {
            if !wanted.contains(entry.path.as_path()) {
                local::remove_all(&entry.path)?;
            }
        }
        Ok(Cached {
            path: dir,
            _pins: files.into_iter().flat_map(|file| file._pins).collect(),
        })
    }

    /// Counts `bytes` just downloaded and, over the limit, evicts.
    fn downloaded(&self, bytes: u64) {
        let Some(limit) = self.limit else {
            return;
        };
        let mut used = USED.lock().unwrap_or_else(|e| e.into_inner());
        let known = used.iter_mut().find(|(root, _)| *root == self.root);
        let over = match known {
            Some((_, total)) => {
                *total += bytes;
                *total > limit
            }
            None => true,
        };
        if over {
            let left = self.evict(limit);
            match used.iter_mut().find(|(root, _)| *root == self.root) {
                Some((_, total)) => *total = left,
                None => used.push((self.root.clone(), left)),
            }
        }
    }

    /// Removes the least recently used unpinned copies until at most [`LOW_WATER`] of
    /// `limit` is left (nothing when the cache is within `limit`); returns the bytes left.
    pub fn evict(&self, limit: u64) -> u64 {
        let mut copies = Vec::new();
        scan(&self.root.join("s3"), &mut copies);
        let mut total: u64 = copies.iter().map(|c| c.size).sum();
        if total <= limit {
            return total;
        }
        let target = (limit as f64 * LOW_WATER) as u64;
        copies.sort_by_key(|c| (c.used, c.path.clone()));
        for copy in copies {
            if total <= target {
                break;
            }
            if self.remove_unpinned(&copy.path) {
                total -= copy.size;
            }
        }
        if total > limit {
            // Once per process: with a limit below a task's inputs, every fetch lands here.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| {
                tracing::warn!(
                    "the cache {} holds {total} bytes, over its limit of {limit}: the rest \
                     is pinned by tasks reading it (said once)",
                    self.root.display()
                )
            });
        }
        total
    }

    /// Removes a copy (and its sidecar) unless someone holds it pinned.
    fn remove_unpinned(&self, path: &Path) -> bool {
        let Ok(file) = File::open(path) else {
            return false;
        };
        if file.try_lock().is_err() {
            return false;
        }
        if std::fs::remove_file(path).is_err() {
            return false;
        }
        if let Ok(relative) = path.strip_prefix(&self.root) {
            let mut sidecar = self.root.join("meta").join(relative).into_os_string();
            sidecar.push(".json");
            let _ = std::fs::remove_file(sidecar);
        }
        tracing::debug!("evicted {} from the cache", path.display());
        true
    }
}

/// One cached copy as eviction sees it.
struct CachedCopy {
    path: PathBuf,
    size: u64,
    used: SystemTime,
}

/// Every file below `dir`.
fn scan(dir: &Path, out: &mut Vec<CachedCopy>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() {
            scan(&entry.path(), out);
        } else if meta.is_file() {
            out.push(CachedCopy {
                path: entry.path(),
                size: meta.len(),
                used: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
}

/// Streams the object at `url` into the local file `temp`, chunk by chunk; returns the
/// metadata of what was downloaded.
fn download(url: &ObjectUrl, temp: &Path) -> Result<ObjectMeta, StorageError> {
    let store = remote::store(&url.bucket)?;
    let key = object_key(url)?;
    let temp = temp.to_path_buf();
    let source = url.clone();
    block_on(async move {
        let got = store
            .get(&key)
            .await
            .map_err(|e| remote::error(&source, "download", e))?;
        let meta = got.meta.clone();
        let io_error = |verb: &str, e: std::io::Error| StorageError::io(&temp, verb, e);
        let mut file = tokio::fs::File::create(&temp)
            .await
            .map_err(|e| io_error("create", e))?;
        let mut chunks = got.into_stream();
        while let Some(chunk) = chunks
            .try_next()
            .await
            .map_err(|e| remote::error(&source, "download", e))?
        {
            file.write_all(&chunk)
                .await
                .map_err(|e| io_error("write", e))?;
        }
        file.sync_all().await.map_err(|e| io_error("sync", e))?;
        Ok(meta)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn copy(cache: &Cache, name: &str, bytes: usize, age_s: u64) -> PathBuf {
        let path = cache.root.join("s3/bucket").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, vec![1u8; bytes]).unwrap();
        let sidecar = cache
            .root
            .join("meta/s3/bucket")
            .join(format!("{name}.json"));
        std::fs::create_dir_all(sidecar.parent().unwrap()).unwrap();
        std::fs::write(&sidecar, "{}").unwrap();
        let used = SystemTime::now() - Duration::from_secs(age_s);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(used)
            .unwrap();
        path
    }

    /// Over the limit, the least recently used copies go first, with their sidecars, down to
    /// the low-water mark; a pinned copy stays however old; within the limit nothing goes.
    #[test]
    fn eviction_removes_the_least_recently_used_unpinned_copies() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path(), Some(300));
        let oldest = copy(&cache, "a/oldest", 100, 50);
        let pinned = copy(&cache, "pinned", 100, 40);
        let old = copy(&cache, "old", 100, 30);
        let recent = copy(&cache, "b/recent", 100, 20);
        let newest = copy(&cache, "newest", 100, 10);
        assert_eq!(cache.evict(1000), 500, "within the limit");

        let pin = File::open(&pinned).unwrap();
        pin.lock_shared().unwrap();
        // 500 bytes over a limit of 300: down to 270, so three unpinned copies go.
        assert_eq!(cache.evict(300), 200);
        for (path, kept) in [
            (&oldest, false),
            (&pinned, true),
            (&old, false),
            (&recent, false),
            (&newest, true),
        ] {
            assert_eq!(path.exists(), kept, "{}", path.display());
        }
        assert!(!dir.path().join("meta/s3/bucket/a/oldest.json").exists());
        assert!(dir.path().join("meta/s3/bucket/newest.json").exists());

        // Everything pinned: the cache stays over its limit.
        let newest_pin = File::open(&newest).unwrap();
        newest_pin.lock_shared().unwrap();
        assert_eq!(cache.evict(100), 200);
        drop((pin, newest_pin));
        assert_eq!(cache.evict(100), 0);
    }
}
