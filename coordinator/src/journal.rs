//! The coordinator's durable store: an append-only journal of [`Record`]s in the state
//! directory (`journal.log`), replayed on start.
//!
//! Each line is `<crc32 of the JSON, 8 hex digits> <record as JSON>\n`. Appends are buffered;
//! [`Journal::flush`] hands them to the operating system (under the coordinator's lock, so
//! the file's order is the order of the changes) and returns a ticket, and
//! [`Syncer::sync_through`] makes everything up to a ticket durable (`fsync`) *outside* the
//! lock: callers that arrive while a sync runs are covered by the next one — a group commit,
//! so thousands of commits per second cost one `fsync` per batch. The coordinator answers a
//! commit only once its ticket is synced, and group-commits the rest every few milliseconds. A crash can leave a torn last line:
//! reading stops at the first line that is incomplete or fails its checksum, that tail is cut
//! off, and what was lost is at most the last unsynced batch — every such fact is one the
//! coordinator can redo (an attempt is re-run; its outputs are deterministic and land under
//! the same committed names). The directory is locked while open, so two coordinators never
//! share one state.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::scheduler::Record;

/// The journal's file name in the state directory.
pub const JOURNAL_FILE: &str = "journal.log";
const LOCK_FILE: &str = "coordinator.lock";

/// Errors of the journal, each naming the file.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading, writing or syncing failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Another coordinator holds the state directory.
    #[error("{0} is in use by another coordinator (its lock file is held)")]
    Locked(PathBuf),
    /// A checksummed line that does not decode: written by an incompatible version.
    #[error("{path}:{line}: a record this version cannot read: {message}")]
    Record {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The decoder's message.
        message: String,
    },
}

/// An open journal (appending).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    out: BufWriter<File>,
    /// Whether records were appended since the last flush.
    unflushed: bool,
    /// Flushes so far (the last ticket).
    flushes: u64,
    syncer: Arc<Syncer>,
    _lock: File,
}

/// Makes flushed records durable; shared by every thread that waits for a commit.
#[derive(Debug)]
pub struct Syncer {
    path: PathBuf,
    file: File,
    /// The last ticket handed to the operating system.
    flushed: AtomicU64,
    /// The last ticket known durable; held while an `fsync` runs.
    synced: Mutex<u64>,
}

impl Syncer {
    /// Returns once every record flushed up to `ticket` is on disk. One `fsync` covers every
    /// ticket flushed before it started.
    pub fn sync_through(&self, ticket: u64) -> Result<(), JournalError> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= ticket {
            return Ok(());
        }
        let target = self.flushed.load(Ordering::Acquire);
        self.file.sync_data().map_err(|source| JournalError::Io {
            path: self.path.clone(),
            source,
        })?;
        *synced = target;
        Ok(())
    }
}

impl Journal {
    /// Opens (or creates) the journal of `state_dir`, returning the records it holds. A torn
    /// tail is cut off (and reported in the returned count of dropped bytes).
    pub fn open(state_dir: &Path) -> Result<(Journal, Vec<Record>, u64), JournalError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
        let lock_path = state_dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(JournalError::Locked(state_dir.to_path_buf()));
        }
        let path = state_dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        let (records, good_len) = read_records(&path, &file)?;
        let total = file.metadata().map_err(io(&path))?.len();
        if good_len < total {
            file.set_len(good_len).map_err(io(&path))?;
            file.sync_data().map_err(io(&path))?;
        }
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let syncer = Arc::new(Syncer {
            path: path.clone(),
            file: file.try_clone().map_err(io(&path))?,
            flushed: AtomicU64::new(0),
            synced: Mutex::new(0),
        });
        Ok((
            Journal {
                path,
                out: BufWriter::with_capacity(1 << 20, file),
                unflushed: false,
                flushes: 0,
                syncer,
                _lock: lock,
            },
            records,
            total - good_len,
        ))
    }

    /// Appends records (buffered; durable once flushed and synced).
    pub fn append(&mut self, records: &[Record]) -> Result<(), JournalError> {
        for record in records {
            let json = serde_json::to_string(record).expect("records serialise");
            let crc = crc32fast::hash(json.as_bytes());
            writeln!(self.out, "{crc:08x} {json}").map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.unflushed = true;
        }
        Ok(())
    }

    /// Hands the appended records to the operating system; returns the ticket to pass to
    /// [`Syncer::sync_through`].
    pub fn flush(&mut self) -> Result<u64, JournalError> {
        if self.unflushed {
            self.out.flush().map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
            self.unflushed = false;
            self.flushes += 1;
            self.syncer.flushed.store(self.flushes, Ordering::Release);
        }
        Ok(self.flushes)
    }

    /// What makes flushed records durable (usable without the journal's lock).
    pub fn syncer(&self) -> Arc<Syncer> {
        Arc::clone(&self.syncer)
    }

    /// Flushes and syncs at once (start-up and tests; the coordinator syncs outside its lock).
    pub fn sync(&mut self) -> Result<(), JournalError> {
        let ticket = self.flush()?;
        self.syncer.sync_through(ticket)
    }
}

/// The records of a journal file and the length of its intact prefix.
fn read_records(path: &Path, file: &File) -> Result<(Vec<Record>, u64), JournalError> {
    let mut reader = BufReader::new(file);
    let mut records = Vec::new();
    let mut good_len = 0u64;
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .map_err(|source| JournalError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        number += 1;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let Some((crc, json)) = line.trim_end_matches('\n').split_once(' ') else {
            break;
        };
        if u32::from_str_radix(crc, 16).ok() != Some(crc32fast::hash(json.as_bytes())) {
            break;
        }
        let record = serde_json::from_str(json).map_err(|e| JournalError::Record {
            path: path.to_path_buf(),
            line: number,
            message: e.to_string(),
        })?;
        records.push(record);
        good_len += n as u64;
    }
    Ok((records, good_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::records::Outcome;
    use hint_common::job::JobId;

    fn finished(n: u64) -> Record {
        Record::Finished {
            job: JobId::numbered(n),
            outcome: Outcome::Succeeded,
            error: None,
        }
    }

    #[test]
    fn records_survive_reopening_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, records, dropped) = Journal::open(dir.path()).unwrap();
            assert!(records.is_empty());
            assert_eq!(dropped, 0);
            journal.append(&[finished(1), finished(2)]).unwrap();
            journal.sync().unwrap();
        }
        // A crash mid-write: half a line at the end.
        let path = dir.path().join(JOURNAL_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("0badc0de {\"record\":\"fin");
        std::fs::write(&path, &text).unwrap();
        let (mut journal, records, dropped) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![finished(1), finished(2)]);
        assert_eq!(dropped, 23);
        journal.append(&[finished(3)]).unwrap();
        journal.sync().unwrap();
        drop(journal);
        let (_journal, records, _) = Journal::open(dir.path()).unwrap();
        assert_eq!(records.len(), 3);
    }

    #[test]
    fn a_corrupted_line_ends_the_intact_prefix() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut journal, _, _) = Journal::open(dir.path()).unwrap();
            journal.append(&[finished(1), finished(2)]).unwrap();
            journal.sync().unwrap();
        }
        let path = dir.path().join(JOURNAL_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("job-0002", "job-0009");
        std::fs::write(&path, text).unwrap();
        let (_journal, records, dropped) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![finished(1)]);
        assert!(dropped > 0);
    }

    #[test]
    fn a_second_coordinator_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (_first, _, _) = Journal::open(dir.path()).unwrap();
        let error = Journal::open(dir.path()).unwrap_err();
        assert!(matches!(error, JournalError::Locked(_)), "{error}");
    }
}
