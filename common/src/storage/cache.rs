//! Local copies of remote objects: `cache_dir()/s3/<bucket>/<key>`, each with a sidecar in
//! `cache_dir()/meta/s3/<bucket>/<key>.json` recording the size and ETag it was fetched at, so
//! an unchanged object is not downloaded again. Sidecars live in their own tree so a fetched
//! directory holds exactly the objects below its prefix.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use object_store::{ObjectMeta, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::remote::{self, object_key};
use super::runtime::block_on;
use super::{cache_dir, local, ObjectUrl, StorageError};

/// What a cached copy was fetched at.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    size: u64,
    e_tag: String,
}

fn copy_path(url: &ObjectUrl) -> PathBuf {
    let mut path = cache_dir().join("s3").join(&url.bucket);
    if !url.key.is_empty() {
        path.push(&url.key);
    }
    path
}

fn sidecar_path(url: &ObjectUrl) -> PathBuf {
    let mut path = cache_dir().join("meta").join("s3").join(&url.bucket);
    path.push(format!("{}.json", url.key));
    path
}

/// The cached copy of `url` when it was fetched at `meta`'s size and ETag and is intact.
fn cached(url: &ObjectUrl, meta: &ObjectMeta) -> Option<PathBuf> {
    let e_tag = meta.e_tag.clone()?;
    let expected = Sidecar {
        size: meta.size,
        e_tag,
    };
    let recorded: Sidecar = serde_json::from_slice(&std::fs::read(sidecar_path(url)).ok()?).ok()?;
    let copy = copy_path(url);
    let size = std::fs::metadata(&copy).ok()?.len();
    (recorded == expected && size == meta.size).then_some(copy)
}

/// A local copy of the object at `url`.
pub(crate) fn fetch(url: &ObjectUrl) -> Result<PathBuf, StorageError> {
    let meta =
        remote::head(url)?.ok_or_else(|| StorageError::not_found(url.url(), "no such object"))?;
    fetch_object(url, &meta)
}

/// A local copy of the object at `url`, whose current metadata is `meta`.
fn fetch_object(url: &ObjectUrl, meta: &ObjectMeta) -> Result<PathBuf, StorageError> {
    if let Some(copy) = cached(url, meta) {
        return Ok(copy);
    }
    let copy = copy_path(url);
    let temp_dir = cache_dir().join("tmp");
    std::fs::create_dir_all(&temp_dir)
        .map_err(|e| StorageError::io(&temp_dir, "create directory", e))?;
    // In the cache's own directory (same file system, so the rename is atomic) and under a
    // unique name, so concurrent fetches of one object never write the same file.
    let temp = local::temp_path(&temp_dir.join("fetch"));
    let fetched = download(url, &temp);
    let fetched = fetched.and_then(|meta| {
        local::rename(&temp, &copy)?;
        Ok(meta)
    });
    let fetched = match fetched {
        Ok(meta) => meta,
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
        local::write_atomic(&sidecar_path(url), &text)?;
    }
    Ok(copy)
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

/// A local directory holding every object below `url` (and nothing else).
pub(crate) fn fetch_dir(url: &ObjectUrl) -> Result<PathBuf, StorageError> {
    let dir = copy_path(url);
    let mut wanted = HashSet::new();
    for meta in remote::list_meta(url)? {
        let object = remote::object_url(url, &meta.location);
        wanted.insert(fetch_object(&object, &meta)?);
    }
    std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, "create directory", e))?;
    // Copies of objects deleted since an earlier fetch must not show up in the directory.
    for entry in local::list(&dir)? {
        if !wanted.contains(&entry.path) {
            local::remove_all(&entry.path)?;
        }
    }
    Ok(dir)
}
