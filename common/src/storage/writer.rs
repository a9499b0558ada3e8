//! [`ObjectWriter`]: a file or object written as a stream and made visible only when finished.

use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as KeyPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload};

use super::remote::{self, object_key};
use super::runtime::{block_on, spawn};
use super::{local, ObjectUrl, StorageError};

/// The temporary name of a local file while it is being written: `.<name>.partial` beside it.
/// Readers never take a file with this name as complete, and a restarted job may remove it.
pub(crate) fn partial_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

/// Streams one file or object; implements [`std::io::Write`].
///
/// Nothing is visible at [`path`](ObjectWriter::path) until [`finish`](ObjectWriter::finish)
/// succeeds. A local file is written as `.<name>.partial` beside its final name, synced and
/// renamed. An object is sent as an S3 multipart upload of [`part_size`](super::part_size) parts (a single PUT
/// when it ends up smaller than one part); finishing completes the upload. Dropping the writer
/// unfinished, or any failed write, removes the partial file or aborts the upload. A process
/// killed mid-upload leaves only invisible parts (S3 lifecycle rules reclaim them).
///
/// Memory is bounded by construction: one part being filled plus at most one part in flight
/// (the writer waits for a part's upload before handing over the next), so at most
/// `2 × part_size()` bytes whatever the object's size.
pub struct ObjectWriter {
    path: PathBuf,
    /// `None` once finished or failed.
    sink: Option<Sink>,
    written: u64,
}

enum Sink {
    Local(LocalFile),
    Remote(Box<Upload>),
}

/// A local file being written under its partial name.
struct LocalFile {
    file: BufWriter<File>,
    partial: PathBuf,
    dest: PathBuf,
    /// Renamed into place: Drop leaves it alone.
    finished: bool,
}

impl fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("path", &self.path)
            .field("written", &self.written)
            .finish_non_exhaustive()
    }
}

impl ObjectWriter {
    /// Starts `.<name>.partial` beside `dest` (creating `dest`'s parent directories).
    pub(crate) fn local(path: &Path, dest: &Path) -> Result<Self, StorageError> {
        local::create_parent(dest)?;
        let partial = partial_path(dest);
        let file = File::create(&partial).map_err(|e| StorageError::io(&partial, "create", e))?;
        Ok(ObjectWriter {
            path: path.to_path_buf(),
            sink: Some(Sink::Local(LocalFile {
                file: BufWriter::with_capacity(1 << 16, file),
                partial,
                dest: dest.to_path_buf(),
                finished: false,
            })),
            written: 0,
        })
    }

    /// Prepares an upload to `url` in parts of `part_size` bytes; no request is made until
    /// the first part is full.
    pub(crate) fn remote(
        path: &Path,
        url: ObjectUrl,
        part_size: usize,
    ) -> Result<Self, StorageError> {
        let store = remote::store(&url.bucket)?;
        let key = object_key(&url)?;
        Ok(ObjectWriter {
            path: path.to_path_buf(),
            sink: Some(Sink::Remote(Box::new(Upload {
                url,
                store,
                key,
                part_size,
                buffer: Vec::with_capacity(part_size),
                upload: None,
                in_flight: None,
                parts: 0,
            }))),
            written: 0,
        })
    }

    /// The location being written, as given to [`create`](super::create).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes the file or object visible at [`path`](Self::path); returns the bytes written.
    pub fn finish(mut self) -> Result<u64, StorageError> {
        // Whatever happens, the sink is dropped here: on failure that removes the partial
        // file or aborts the upload.
        let mut sink = self.sink.take().ok_or_else(|| self.failed_earlier())?;
        match &mut sink {
            Sink::Local(file) => file.finish()?,
            Sink::Remote(upload) => upload.finish()?,
        }
        Ok(self.written)
    }

    fn failed_earlier(&self) -> StorageError {
        StorageError::new(
            self.path.display().to_string(),
            "an earlier write failed; nothing was written",
        )
    }
}

impl LocalFile {
    fn finish(&mut self) -> Result<(), StorageError> {
        let partial = &self.partial;
        self.file
            .flush()
            .map_err(|e| StorageError::io(partial, "write", e))?;
        // The data must be on disk before the rename makes the file look complete.
        self.file
            .get_ref()
            .sync_all()
            .map_err(|e| StorageError::io(partial, "sync", e))?;
        std::fs::rename(partial, &self.dest)
            .map_err(|e| StorageError::io(&self.dest, "rename", e))?;
        self.finished = true;
        Ok(())
    }
}

impl Drop for LocalFile {
    fn drop(&mut self) {
        if !self.finished {
            // Removing a file still open is fine on Unix; the handle closes right after.
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

impl Write for ObjectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let result = match self.sink.as_mut() {
            None => return Err(self.failed_earlier().into()),
            Some(Sink::Local(local)) => local
                .file
                .write(buf)
                .map_err(|e| StorageError::io(&local.partial, "write", e)),
            Some(Sink::Remote(upload)) => upload.write(buf).map(|()| buf.len()),
        };
        match result {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                // Drop removes the partial file or aborts the upload now, not at the end.
                drop(self.sink.take());
                Err(e.into())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self.sink.as_mut() {
            Some(Sink::Local(local)) => local.file.flush(),
            // Parts have a fixed size; a remote object is flushed only by `finish`.
            _ => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.abort();
    }
}

/// An S3 upload in progress: the part being filled and the part being sent.
struct Upload {
    url: ObjectUrl,
    store: Arc<dyn ObjectStore>,
    key: KeyPath,
    part_size: usize,
    buffer: Vec<u8>,
    /// Started when the first part is full, so small objects need one PUT.
    upload: Option<Box<dyn MultipartUpload>>,
    /// The part being sent, with its size.
    in_flight: Option<(Receiver<object_store::Result<()>>, usize)>,
    parts: usize,
}

impl Upload {
    fn write(&mut self, mut buf: &[u8]) -> Result<(), StorageError> {
        while !buf.is_empty() {
            let take = buf.len().min(self.part_size - self.buffer.len());
            self.buffer.extend_from_slice(&buf[..take]);
            buf = &buf[take..];
            if self.buffer.len() == self.part_size {
                self.send_part()?;
            }
        }
        Ok(())
    }

    /// Waits for the part in flight, then starts sending the buffer as the next part.
    fn send_part(&mut self) -> Result<(), StorageError> {
        self.wait_in_flight()?;
        let upload = match &mut self.upload {
            Some(upload) => upload,
            None => {
                let (store, key) = (self.store.clone(), self.key.clone());
                let started = block_on(async move { store.put_multipart(&key).await })
                    .map_err(|e| remote::error(&self.url, "starting the upload", e))?;
                self.upload.insert(started)
            }
        };
        let part = std::mem::replace(&mut self.buffer, Vec::with_capacity(self.part_size));
        let size = part.len();
        let sending = upload.put_part(PutPayload::from(Bytes::from(part)));
        self.in_flight = Some((spawn(sending), size));
        self.parts += 1;
        Ok(())
    }

    fn wait_in_flight(&mut self) -> Result<(), StorageError> {
        let Some((done, _)) = self.in_flight.take() else {
            return Ok(());
        };
        let part = self.parts;
        done.recv()
            .expect("a storage task panicked (see the message above)")
            .map_err(|e| remote::error(&self.url, &format!("uploading part {part}"), e))
    }

    /// Sends what is left and completes the upload (or PUTs a small object whole).
    fn finish(&mut self) -> Result<(), StorageError> {
        if self.upload.is_none() {
            let bytes = Bytes::from(std::mem::take(&mut self.buffer));
            return remote::put(&self.url, bytes);
        }
        if !self.buffer.is_empty() {
            self.send_part()?;
        }
        self.wait_in_flight()?;
        let mut upload = self.upload.take().expect("started above");
        let (upload, result) = block_on(async move {
            let result = upload.complete().await;
            (upload, result)
        });
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                // Put it back so Drop aborts it and the parts do not linger.
                self.upload = Some(upload);
                Err(remote::error(&self.url, "completing the upload", e))
            }
        }
    }

    /// Aborts a started upload: its parts are deleted and no object appears.
    fn abort(&mut self) {
        let _ = self.wait_in_flight();
        if let Some(mut upload) = self.upload.take() {
            // Errors have nowhere to go here; an upload never completed stays invisible.
            let _ = block_on(async move { upload.abort().await });
        }
    }
}
