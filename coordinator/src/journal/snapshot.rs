//! Snapshots: the records that rebuild the state as the segments before them left it.
//!
//! `snapshot-<s>.jsonl` stands for segments `0..s`. Its first line is a header,
//! `{"snapshot": s, "records": n}`, then `n` records, each line checksummed as in the
//! journal: JSON lines, so one codec, one checksum and one replay path serve both, and an
//! operator can read a snapshot as a journal (a binary form would halve the hex sums, the
//! bulk, but a snapshot is written at most about as often as its size is appended).
//!
//! **Crash safety**, step by step ([`SnapshotFile::write`]); the segment `s` was started
//! by [`super::Journal::rotate`] after segment `s − 1` was synced, so every segment is whole
//! before a snapshot of it exists:
//!
//! 1. the records go to `.snapshot-<s>.jsonl.partial`, which is `fsync`ed — a crash here
//!    leaves a temporary file, removed on open; the old snapshot and all segments replay;
//! 2. renamed to `snapshot-<s>.jsonl` — visible only whole (the header's count and every
//!    line's checksum are checked too), and either name may survive a crash: both replay;
//! 3. the directory is `fsync`ed — the new name is durable;
//! 4. only now are older segments and snapshots removed — a crash in between leaves files
//!    that open ignores and removes (after syncing the directory itself).
//!
//! Open replays the newest snapshot whose segments after it are all there, else an older
//! one, else segment 0 on; a snapshot that fails its checks is skipped, never half used.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};

use super::{
    checked, io, line, numbered, segment_path, sync_dir, JournalError, SEGMENT_PREFIX,
    SEGMENT_SUFFIX,
};
use crate::scheduler::Record;

/// What names a snapshot (and its temporary file).
pub(super) const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_SUFFIX: &str = ".jsonl";
const PARTIAL_SUFFIX: &str = ".partial";

/// The path of snapshot `seq`.
pub fn snapshot_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SNAPSHOT_PREFIX}{seq:010}{SNAPSHOT_SUFFIX}"))
}

fn partial_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!(
        ".{SNAPSHOT_PREFIX}{seq:010}{SNAPSHOT_SUFFIX}{PARTIAL_SUFFIX}"
    ))
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    snapshot: u64,
    records: u64,
}

/// The steps of writing a snapshot, in order (a test stops after any of them, as a crash
/// would).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// The temporary file is written and synced.
    Written,
    /// It has its final name.
    Renamed,
    /// The directory is synced.
    DirSynced,
    /// Older segments and snapshots are removed.
    Removed,
}

/// A snapshot started by [`super::Journal::rotate`], to be written outside the lock. It
/// holds the state directory's lock, so no other coordinator opens the state before it is
/// done.
#[derive(Debug)]
pub struct SnapshotFile {
    dir: PathBuf,
    seq: u64,
    _lock: File,
    /// Tells the journal how it went.
    done: mpsc::Sender<Result<u64, ()>>,
}

impl SnapshotFile {
    pub(super) fn new(
        dir: PathBuf,
        seq: u64,
        lock: File,
        done: mpsc::Sender<Result<u64, ()>>,
    ) -> Self {
        SnapshotFile {
            dir,
            seq,
            _lock: lock,
            done,
        }
    }

    /// The snapshot's final path.
    pub fn path(&self) -> PathBuf {
        snapshot_path(&self.dir, self.seq)
    }

    /// Writes `records` (the state when the journal rotated) as the snapshot, makes it
    /// durable, then removes what it replaces; returns its size. On an error the old files
    /// are intact (and the temporary file removed).
    pub fn write(self, records: &[Record]) -> Result<u64, JournalError> {
        self.write_until(records, Step::Removed)
    }

    /// [`SnapshotFile::write`], stopping after `last` as a crash would. The journal learns
    /// the outcome (a snapshot stopped early counts as written).
    pub fn write_until(self, records: &[Record], last: Step) -> Result<u64, JournalError> {
        let outcome = self.steps(records, last);
        // The state directory is free again before the journal hears of it.
        let SnapshotFile { done, _lock, .. } = self;
        drop(_lock);
        // The journal may be gone (a coordinator stopping): nothing to tell.
        let _ = done.send(outcome.as_ref().map(|&b| b).map_err(|_| ()));
        outcome
    }

    fn steps(&self, records: &[Record], last: Step) -> Result<u64, JournalError> {
        let partial = partial_path(&self.dir, self.seq);
        let written = write_file(&partial, self.seq, records);
        let bytes = match written {
            Ok(bytes) => bytes,
            Err(error) => {
                let _ = std::fs::remove_file(&partial);
                return Err(error);
            }
        };
        if last == Step::Written {
            return Ok(bytes);
        }
        let path = self.path();
        std::fs::rename(&partial, &path).map_err(io(&path))?;
        if last == Step::Renamed {
            return Ok(bytes);
        }
        sync_dir(&self.dir)?;
        if last == Step::DirSynced {
            return Ok(bytes);
        }
        remove_before(&self.dir, self.seq, Some(&path))?;
        Ok(bytes)
    }
}

/// Writes and syncs a snapshot file; its size.
fn write_file(path: &Path, seq: u64, records: &[Record]) -> Result<u64, JournalError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let header = serde_json::to_string(&Header {
        snapshot: seq,
        records: records.len() as u64,
    })
    .expect("a header serialises");
    let mut bytes = 0;
    let mut put = |text: &str| {
        bytes += text.len() as u64;
        out.write_all(text.as_bytes())
    };
    put(&format!(
        "{:08x} {header}\n",
        crc32fast::hash(header.as_bytes())
    ))
    .map_err(io(path))?;
    for record in records {
        put(&line(record)).map_err(io(path))?;
    }
    let file = out.into_inner().map_err(|e| io(path)(e.into_error()))?;
    file.sync_all().map_err(io(path))?;
    Ok(bytes)
}

/// Why a snapshot cannot be used (it is then skipped), or a hard error.
enum Unusable {
    Damaged(String),
    Error(JournalError),
}

/// Reads snapshot `seq`: its records and size.
fn read(path: &Path, seq: u64) -> Result<(Vec<Record>, u64), Unusable> {
    let error = |e| Unusable::Error(io(path)(e));
    let file = File::open(path).map_err(error)?;
    let size = file.metadata().map_err(error)?.len();
    let mut reader = BufReader::new(file);
    let mut text = String::new();
    let mut next = |text: &mut String| -> Result<bool, Unusable> {
        text.clear();
        let n = reader.read_line(text).map_err(error)?;
        Ok(n > 0)
    };
    if !next(&mut text)? {
        return Err(Unusable::Damaged("empty".into()));
    }
    let header: Header = checked(&text)
        .and_then(|json| serde_json::from_str(json).ok())
        .ok_or_else(|| Unusable::Damaged("its header is damaged".into()))?;
    if header.snapshot != seq {
        return Err(Unusable::Damaged(format!(
            "its header names snapshot {}",
            header.snapshot
        )));
    }
    let mut records = Vec::with_capacity(header.records.min(1 << 20) as usize);
    for number in 0..header.records {
        if !next(&mut text)? {
            return Err(Unusable::Damaged(format!(
                "it ends after {number} of its {} records",
                header.records
            )));
        }
        let json = checked(&text)
            .ok_or_else(|| Unusable::Damaged(format!("record {} is damaged", number + 1)))?;
        let record = serde_json::from_str(json).map_err(|e| {
            Unusable::Error(JournalError::Record {
                path: path.to_path_buf(),
                line: number as usize + 2,
                message: e.to_string(),
            })
        })?;
        records.push(record);
    }
    if next(&mut text)? {
        return Err(Unusable::Damaged("it goes on after its last record".into()));
    }
    Ok((records, size))
}

/// The snapshot to replay and the segment the replay goes on from: (that segment, the
/// snapshot's records, its size, its path). The newest snapshot whose later segments are
/// all there (`s, s+1, …` up to the last, or none yet); without one, segment 0 on.
pub(super) type Base = (u64, Vec<Record>, u64, Option<PathBuf>);

pub(super) fn newest_usable(dir: &Path, segments: &[u64]) -> Result<Base, JournalError> {
    let contiguous_from = |start: u64| {
        segments
            .iter()
            .filter(|&&s| s >= start)
            .enumerate()
            .all(|(i, &s)| s == start + i as u64)
    };
    for seq in numbered(dir, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX)?
        .into_iter()
        .rev()
    {
        let path = snapshot_path(dir, seq);
        if !contiguous_from(seq) {
            tracing::warn!(
                "{}: skipped: journal segments after it are missing",
                path.display()
            );
            continue;
        }
        match read(&path, seq) {
            Ok((records, size)) => return Ok((seq, records, size, Some(path))),
            Err(Unusable::Damaged(why)) => {
                tracing::warn!("{}: skipped: {why}", path.display());
            }
            Err(Unusable::Error(error)) => return Err(error),
        }
    }
    if segments.first().is_none_or(|&first| first == 0) && contiguous_from(0) {
        return Ok((0, Vec::new(), 0, None));
    }
    Err(JournalError::Damaged {
        path: dir.to_path_buf(),
        message: format!(
            "no snapshot covers the journal before segment {} (segments {:?}): restore the \
             state directory from a backup",
            segments.first().copied().unwrap_or(0),
            segments
        ),
    })
}

/// Removes the segments before `base` and every snapshot but `keep`, once `keep` (if any)
/// is durable: what a snapshot replaced, and snapshots skipped as unusable.
pub(super) fn remove_before(
    dir: &Path,
    base: u64,
    keep: Option<&Path>,
) -> Result<(), JournalError> {
    sync_dir(dir)?;
    for seq in numbered(dir, SEGMENT_PREFIX, SEGMENT_SUFFIX)? {
        if seq < base {
            let path = segment_path(dir, seq);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    for seq in numbered(dir, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX)? {
        let path = snapshot_path(dir, seq);
        if Some(path.as_path()) != keep && (seq < base || keep.is_some()) {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

/// Removes temporary snapshot files a crash left.
pub(super) fn remove_partial(dir: &Path) -> Result<(), JournalError> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&format!(".{SNAPSHOT_PREFIX}")) && name.ends_with(PARTIAL_SUFFIX) {
            let path = dir.join(&*name);
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}
