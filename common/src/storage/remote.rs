//! The object-store side: one S3 client per bucket and the requests behind the public API.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as KeyPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};

use super::runtime::block_on;
use super::{Entry, ObjectUrl, StorageError};

/// The client for `bucket`, built from the environment the first time it is asked for
/// (see the module docs for the variables). Clients are shared: each holds a connection pool.
pub(crate) fn store(bucket: &str) -> Result<Arc<dyn ObjectStore>, StorageError> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<dyn ObjectStore>>>> = OnceLock::new();
    let mut stores = STORES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(store) = stores.get(bucket) {
        return Ok(store.clone());
    }
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .build()
            .map_err(|e| {
                StorageError::new(
                    format!("s3://{bucket}"),
                    format!("cannot configure the S3 client: {e}"),
                )
            })?,
    );
    stores.insert(bucket.to_string(), store.clone());
    Ok(store)
}

/// The object-store key of `url`, which must name an object (not a bare bucket).
pub(crate) fn object_key(url: &ObjectUrl) -> Result<KeyPath, StorageError> {
    if url.key.is_empty() {
        return Err(StorageError::new(
            url.url(),
            "names a bucket, not an object",
        ));
    }
    prefix_key(url).map(|key| key.expect("not empty"))
}

/// The key of `url` taken as a prefix; `None` for the whole bucket.
fn prefix_key(url: &ObjectUrl) -> Result<Option<KeyPath>, StorageError> {
    if url.key.is_empty() {
        return Ok(None);
    }
    KeyPath::parse(&url.key)
        .map(Some)
        .map_err(|e| StorageError::new(url.url(), format!("not a valid object key: {e}")))
}

/// Says what failed in words: a missing bucket or object apart from other failures.
pub(crate) fn error(url: &ObjectUrl, verb: &str, e: object_store::Error) -> StorageError {
    // S3 answers a missing bucket with a 404 (HEAD, GET) or another error (listings); only
    // the body's code tells it apart from a missing object.
    if format!("{e}").contains("NoSuchBucket") {
        return StorageError::not_found(url.url(), format!("no such bucket \"{}\"", url.bucket));
    }
    match e {
        object_store::Error::NotFound { .. } => {
            StorageError::not_found(url.url(), "no such object")
        }
        other => StorageError::new(url.url(), format!("{verb} failed: {other}")),
    }
}

/// The whole object.
pub(crate) fn read(url: &ObjectUrl) -> Result<Vec<u8>, StorageError> {
    let store = store(&url.bucket)?;
    let key = object_key(url)?;
    let bytes = block_on(async move { store.get(&key).await?.bytes().await })
        .map_err(|e| error(url, "read", e))?;
    Ok(bytes.to_vec())
}

/// The bytes `range` of the object: one ranged GET. A range past the end is an error.
pub(crate) fn read_range(url: &ObjectUrl, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
    let store = store(&url.bucket)?;
    let key = object_key(url)?;
    let wanted = range.end - range.start;
    let bytes = block_on(async move { store.get_range(&key, range).await })
        .map_err(|e| error(url, "read", e))?;
    if bytes.len() as u64 != wanted {
        return Err(StorageError::new(
            url.url(),
            format!(
                "read: {} of {wanted} bytes (the object is shorter)",
                bytes.len()
            ),
        ));
    }
    Ok(bytes.to_vec())
}

/// One PUT of the whole object (atomic on S3).
pub(crate) fn put(url: &ObjectUrl, bytes: Bytes) -> Result<(), StorageError> {
    let store = store(&url.bucket)?;
    let key = object_key(url)?;
    block_on(async move { store.put(&key, PutPayload::from(bytes)).await })
        .map_err(|e| error(url, "upload", e))?;
    Ok(())
}

/// The object's metadata, `None` when there is no object at `url`.
pub(crate) fn head(url: &ObjectUrl) -> Result<Option<ObjectMeta>, StorageError> {
    let store = store(&url.bucket)?;
    let key = object_key(url)?;
    match block_on(async move { store.head(&key).await }) {
        Ok(meta) => Ok(Some(meta)),
        Err(object_store::Error::NotFound { .. }) => {
            // A HEAD answer has no body to tell a missing bucket (a configuration problem)
            // from a missing object; a listing below the key does, and is usually empty.
            has_objects_below(url)?;
            Ok(None)
        }
        Err(e) => Err(error(url, "HEAD", e)),
    }
}

/// Every object below `url` taken as a prefix, with its metadata, in no particular order.
pub(crate) fn list_meta(url: &ObjectUrl) -> Result<Vec<ObjectMeta>, StorageError> {
    let store = store(&url.bucket)?;
    let prefix = prefix_key(url)?;
    block_on(async move { store.list(prefix.as_ref()).try_collect::<Vec<_>>().await })
        .map_err(|e| error(url, "list", e))
}

/// The URL of an object found by a listing of `url`'s bucket.
pub(crate) fn object_url(url: &ObjectUrl, key: &KeyPath) -> ObjectUrl {
    ObjectUrl {
        bucket: url.bucket.clone(),
        key: key.to_string(),
    }
}

/// Every object below `url`, as sorted entries with full URLs.
pub(crate) fn list(url: &ObjectUrl) -> Result<Vec<Entry>, StorageError> {
    let mut entries: Vec<Entry> = list_meta(url)?
        .into_iter()
        .map(|meta| Entry {
            path: PathBuf::from(object_url(url, &meta.location).url()),
            size: meta.size,
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Whether at least one object lies below `url`: one page of a listing is enough.
pub(crate) fn has_objects_below(url: &ObjectUrl) -> Result<bool, StorageError> {
    let store = store(&url.bucket)?;
    let prefix = prefix_key(url)?;
    let first = block_on(async move { store.list(prefix.as_ref()).next().await });
    match first {
        None => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(error(url, "list", e)),
    }
}

/// Copy then delete, within one bucket. S3 has no rename.
pub(crate) fn rename(from: &ObjectUrl, to: &ObjectUrl) -> Result<(), StorageError> {
    let store = store(&from.bucket)?;
    let (source, dest) = (object_key(from)?, object_key(to)?);
    let copy_store = store.clone();
    let copy_source = source.clone();
    block_on(async move { copy_store.copy(&copy_source, &dest).await }).map_err(|e| {
        let mut e = error(from, "copy", e);
        e.message = format!("{} (renaming to {})", e.message, to.url());
        e
    })?;
    block_on(async move { store.delete(&source).await }).map_err(|e| error(from, "delete", e))
}

/// Deletes one object; a missing one is fine.
pub(crate) fn delete(url: &ObjectUrl) -> Result<(), StorageError> {
    let store = store(&url.bucket)?;
    let key = object_key(url)?;
    match block_on(async move { store.delete(&key).await }) {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(error(url, "delete", e)),
    }
}

/// Deletes the object at `url` and every object below it.
pub(crate) fn remove_all(url: &ObjectUrl) -> Result<(), StorageError> {
    if !url.key.is_empty() {
        delete(url)?;
    }
    let keys: Vec<KeyPath> = list_meta(url)?.into_iter().map(|m| m.location).collect();
    if keys.is_empty() {
        return Ok(());
    }
    let store = store(&url.bucket)?;
    block_on(async move {
        let locations = futures::stream::iter(keys.into_iter().map(Ok)).boxed();
        store.delete_stream(locations).try_collect::<Vec<_>>().await
    })
    .map_err(|e| error(url, "delete", e))?;
    Ok(())
}
