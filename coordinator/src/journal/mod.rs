//! The coordinator's durable store: a journal of [`Record`]s in the state directory, in
//! numbered segments (`journal-NNNNNNNNNN.log`), compacted by snapshots
//! (`snapshot-NNNNNNNNNN.jsonl`, [`snapshot`]); on start the newest snapshot and the
//! segments after it are replayed.
//!
//! Each line is `<crc32 of the JSON, 8 hex digits> <record as JSON>\n`. Appends are buffered;
//! [`Journal::flush`] hands them to the operating system (under the coordinator's lock, so
//! the file's order is the order of the changes) and returns a ticket, and
//! [`Syncer::sync_through`] makes everything up to a ticket durable (`fsync`) *outside* the
//! lock: callers that arrive while a sync runs are covered by the next one — a group commit,
//! so thousands of commits per second cost one `fsync` per batch. The coordinator answers a
//! commit only once its ticket is synced, and group-commits the rest every few milliseconds.
//! A crash can leave a torn last line: reading stops at the first line that is incomplete or
//! fails its checksum, that tail is cut off, and what was lost is at most the last unsynced
//! batch — every such fact is one the coordinator can redo (an attempt is re-run; its
//! outputs are deterministic and land under the same committed names). The directory is
//! locked while open, so two coordinators never share one state.
//!
//! **Compaction.** Snapshot `s` holds the records that rebuild the state as segments
//! `0..s` left it ([`crate::scheduler::Scheduler::snapshot`]). [`Journal::rotate`] (under
//! the coordinator's lock) syncs the current segment and starts segment `s`; the snapshot is
//! then written outside the lock ([`snapshot::SnapshotFile::write`]: a temporary name,
//! `fsync`, rename, `fsync` of the directory) and only then are segments and snapshots
//! before `s` removed. A crash at any step leaves either the old snapshot with every segment
//! after it, or the new one with every segment after it; see [`snapshot`] for the argument.

pub mod snapshot;
#[cfg(test)]
mod tests;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::scheduler::Record;
use snapshot::SnapshotFile;

/// The journal of versions before segments: read as segment 0 (renamed on open).
pub const LEGACY_JOURNAL_FILE: &str = "journal.log";
const LOCK_FILE: &str = "coordinator.lock";
const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".log";

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
    /// Files of the state directory are missing or damaged in a way no crash leaves.
    #[error("{path}: {message}")]
    Damaged {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong, and what to do.
        message: String,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |source| JournalError::Io { path, source }
}

/// The path of segment `seq`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{seq:010}{SEGMENT_SUFFIX}"))
}

/// The sequence numbers of the files in `dir` named `<prefix><number><suffix>`, sorted.
fn numbered(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<u64>, JournalError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let name = entry.map_err(io(dir))?.file_name();
        let Some(name) = name.to_str() else { continue };
        let number = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .and_then(|digits| digits.parse::<u64>().ok());
        found.extend(number);
    }
    found.sort_unstable();
    Ok(found)
}

/// `fsync` of a directory: makes the names created, renamed or removed in it durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// The bytes the journal takes in `state_dir`: its segments and snapshots.
pub fn disk_bytes(state_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(SEGMENT_PREFIX) || name.contains(snapshot::SNAPSHOT_PREFIX)
        })
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// An open journal (appending to its newest segment).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The segment appended to.
    segment: u64,
    path: PathBuf,
    out: BufWriter<File>,
    /// Whether records were appended since the last flush.
    unflushed: bool,
    /// Flushes so far (the last ticket).
    flushes: u64,
    /// Bytes of the segments after the newest snapshot (what a start replays besides it).
    tail_bytes: u64,
    /// Bytes appended since open.
    appended: u64,
    /// Size of the newest snapshot (0: none).
    snapshot_bytes: u64,
    /// The snapshot being written, if any.
    in_flight: Option<InFlight>,
    /// After a failed snapshot, the next is due only once the tail reaches this.
    retry_at: u64,
    syncer: Arc<Syncer>,
    lock: File,
}

/// Makes flushed records durable; shared by every thread that waits for a commit.
#[derive(Debug)]
pub struct Syncer {
    /// The last ticket handed to the operating system.
    flushed: AtomicU64,
    /// The segment being appended to, and the last ticket known durable; held while an
    /// `fsync` runs, and while the journal moves to a new segment.
    synced: Mutex<Synced>,
}

#[derive(Debug)]
struct Synced {
    path: PathBuf,
    file: File,
    ticket: u64,
}

impl Syncer {
    /// Returns once every record flushed up to `ticket` is on disk. One `fsync` covers every
    /// ticket flushed before it started.
    pub fn sync_through(&self, ticket: u64) -> Result<(), JournalError> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if synced.ticket >= ticket {
            return Ok(());
        }
        let target = self.flushed.load(Ordering::Acquire);
        synced.file.sync_data().map_err(io(&synced.path))?;
        synced.ticket = target;
        Ok(())
    }
}

/// What [`Journal::open_replayed`] found besides the records.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Bytes of a torn tail cut off the last segment.
    pub dropped: u64,
    /// The snapshot replayed, if any.
    pub snapshot: Option<PathBuf>,
    /// Segments replayed after it.
    pub segments: usize,
}

impl Journal {
    /// Opens (or creates) the journal of `state_dir`, returning the records it holds. A torn
    /// tail is cut off (and reported in the returned count of dropped bytes).
    pub fn open(state_dir: &Path) -> Result<(Journal, Vec<Record>, u64), JournalError> {
        let mut records = Vec::new();
        let (journal, replayed) = Journal::open_replayed(state_dir, |r| records.push(r))?;
        Ok((journal, records, replayed.dropped))
    }

    /// [`Journal::open`], handing each record to `each` as it is read (the newest snapshot's,
    /// then the segments' after it) and saying which files it replayed. The segments are
    /// streamed, never held whole: a start replays a journal of any size in the memory of the
    /// state it rebuilds (a coordinator's heap keeps what it once held). On an error, the
    /// records handed over so far are not a state to act on.
    pub fn open_replayed(
        state_dir: &Path,
        mut each: impl FnMut(Record),
    ) -> Result<(Journal, Replayed), JournalError> {
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
        migrate_legacy(state_dir)?;
        snapshot::remove_partial(state_dir)?;
        let segments = numbered(state_dir, SEGMENT_PREFIX, SEGMENT_SUFFIX)?;
        let (base, snapshot_records, snapshot_bytes, used) =
            snapshot::newest_usable(state_dir, &segments)?;
        snapshot_records.into_iter().for_each(&mut each);
        let mut replayed = Replayed {
            snapshot: used.clone(),
            ..Replayed::default()
        };
        let tail: Vec<u64> = segments.iter().copied().filter(|&s| s >= base).collect();
        let mut tail_bytes = 0;
        let mut last = None;
        for (i, &seq) in tail.iter().enumerate() {
            let path = segment_path(state_dir, seq);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io(&path))?;
            let good_len = read_records(&path, &file, &mut each)?;
            let total = file.metadata().map_err(io(&path))?.len();
            if good_len < total {
                if i + 1 < tail.len() {
                    // Earlier segments were synced before the next was started.
                    return Err(JournalError::Damaged {
                        path,
                        message: format!(
                            "damaged at byte {good_len} of {total}, and later segments follow \
                             (a crash cannot do this: the disk lost written data)"
                        ),
                    });
                }
                file.set_len(good_len).map_err(io(&path))?;
                file.sync_data().map_err(io(&path))?;
                replayed.dropped = total - good_len;
            }
            replayed.segments += 1;
            tail_bytes += good_len;
            last = Some((seq, path, file));
        }
        snapshot::remove_before(state_dir, base, used.as_deref())?;
        let (segment, path, mut file) = match last {
            Some(last) => last,
            None => {
                let path = segment_path(state_dir, base);
                let file = create_segment(state_dir, &path)?;
                (base, path, file)
            }
        };
        file.seek(SeekFrom::End(0)).map_err(io(&path))?;
        let syncer = Arc::new(Syncer {
            flushed: AtomicU64::new(0),
            synced: Mutex::new(Synced {
                path: path.clone(),
                file: file.try_clone().map_err(io(&path))?,
                ticket: 0,
            }),
        });
        let journal = Journal {
            dir: state_dir.to_path_buf(),
            segment,
            path,
            out: BufWriter::with_capacity(1 << 20, file),
            unflushed: false,
            flushes: 0,
            tail_bytes,
            appended: 0,
            snapshot_bytes,
            in_flight: None,
            retry_at: 0,
            syncer,
            lock,
        };
        Ok((journal, replayed))
    }

    /// Appends records (buffered; durable once flushed and synced).
    pub fn append(&mut self, records: &[Record]) -> Result<(), JournalError> {
        for record in records {
            let line = line(record);
            self.out
                .write_all(line.as_bytes())
                .map_err(io(&self.path))?;
            self.tail_bytes += line.len() as u64;
            self.appended += line.len() as u64;
            self.unflushed = true;
        }
        Ok(())
    }

    /// Hands the appended records to the operating system; returns the ticket to pass to
    /// [`Syncer::sync_through`].
    pub fn flush(&mut self) -> Result<u64, JournalError> {
        if self.unflushed {
            self.out.flush().map_err(io(&self.path))?;
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

    /// Size of the newest snapshot (0: none yet).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// Bytes appended since the journal was opened (what it would hold without snapshots).
    pub fn appended_bytes(&self) -> u64 {
        self.appended
    }

    /// Bytes of the segments a start would replay after the newest snapshot.
    pub fn tail_bytes(&self) -> u64 {
        self.tail_bytes
    }

    /// Whether a snapshot is due: none is in flight and the segments since the newest
    /// snapshot hold at least `min_bytes` and at least that snapshot's size (so writing
    /// snapshots costs at most about as much as the appends, and the journal on disk stays
    /// within a few times the state's size plus `min_bytes`). Takes in the outcome of a
    /// snapshot that finished since the last call.
    pub fn snapshot_due(&mut self, min_bytes: u64) -> bool {
        self.poll_snapshot();
        self.in_flight.is_none()
            && self.tail_bytes >= min_bytes.max(self.snapshot_bytes).max(self.retry_at)
    }

    /// Waits for the snapshot in flight, if any, and takes in its outcome.
    pub fn wait_snapshot(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let outcome = in_flight.done.recv().unwrap_or(Err(()));
            self.snapshot_finished(in_flight.tail_at, outcome);
        }
    }

    /// Starts a snapshot of the state the records appended so far leave: syncs the current
    /// segment and starts the next one (its name synced into the directory), so that what is
    /// appended from now on lands after the snapshot. Call it under the lock that orders
    /// appends, with every change applied so far appended; write the returned file (on any
    /// thread) with the scheduler's [`snapshot`](crate::scheduler::Scheduler::snapshot)
    /// taken under the same lock. An error here is a journal failure; a failed snapshot
    /// write is not (the segments it would replace are intact).
    pub fn rotate(&mut self) -> Result<SnapshotFile, JournalError> {
        self.wait_snapshot();
        let ticket = self.flush()?;
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        {
            let mut synced = self.syncer.synced.lock().unwrap_or_else(|p| p.into_inner());
            synced.file.sync_data().map_err(io(&synced.path))?;
            synced.ticket = ticket;
            let file = create_segment(&self.dir, &path)?;
            synced.file = file.try_clone().map_err(io(&path))?;
            synced.path = path.clone();
            self.out = BufWriter::with_capacity(1 << 20, file);
        }
        self.segment = next;
        self.path = path;
        let lock = self.lock.try_clone().map_err(io(&self.dir))?;
        let (done, receiver) = mpsc::channel();
        self.in_flight = Some(InFlight {
            tail_at: self.tail_bytes,
            done: receiver,
        });
        Ok(SnapshotFile::new(self.dir.clone(), next, lock, done))
    }

    fn poll_snapshot(&mut self) {
        let Some(in_flight) = &self.in_flight else {
            return;
        };
        let outcome = match in_flight.done.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Empty) => return,
            Err(mpsc::TryRecvError::Disconnected) => Err(()),
        };
        let tail_at = in_flight.tail_at;
        self.in_flight = None;
        self.snapshot_finished(tail_at, outcome);
    }

    /// A snapshot started when the tail was `tail_at` bytes was written (its size) or not;
    /// after a failure the next is tried once the tail has doubled.
    fn snapshot_finished(&mut self, tail_at: u64, outcome: Result<u64, ()>) {
        match outcome {
            Ok(bytes) => {
                self.tail_bytes -= tail_at;
                self.snapshot_bytes = bytes;
                self.retry_at = 0;
            }
            Err(()) => self.retry_at = self.tail_bytes.saturating_mul(2),
        }
    }
}

/// A snapshot being written: the tail when it was started, and where its outcome arrives.
#[derive(Debug)]
struct InFlight {
    tail_at: u64,
    done: mpsc::Receiver<Result<u64, ()>>,
}

/// A journal line: checksum, JSON, newline.
fn line(record: &Record) -> String {
    let json = serde_json::to_string(record).expect("records serialise");
    let crc = crc32fast::hash(json.as_bytes());
    format!("{crc:08x} {json}\n")
}

/// Creates an empty segment and makes its name durable.
fn create_segment(dir: &Path, path: &Path) -> Result<File, JournalError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(io(path))?;
    sync_dir(dir)?;
    Ok(file)
}

/// A state directory of an earlier version holds one `journal.log`: it becomes segment 0.
fn migrate_legacy(dir: &Path) -> Result<(), JournalError> {
    let legacy = dir.join(LEGACY_JOURNAL_FILE);
    if !legacy.exists() {
        return Ok(());
    }
    let first = segment_path(dir, 0);
    if !numbered(dir, SEGMENT_PREFIX, SEGMENT_SUFFIX)?.is_empty() {
        return Err(JournalError::Damaged {
            path: legacy,
            message: "a journal of an earlier version beside journal segments: keep one".into(),
        });
    }
    std::fs::rename(&legacy, &first).map_err(io(&legacy))?;
    sync_dir(dir)
}

/// The records of a journal file and the length of its intact prefix.
/// Hands a segment's records to `each`, returning the length of its whole, checked lines
/// (a torn tail ends it).
fn read_records(
    path: &Path,
    file: &File,
    each: &mut impl FnMut(Record),
) -> Result<u64, JournalError> {
    let mut reader = BufReader::new(file);
    let mut good_len = 0u64;
    let mut line = String::new();
    let mut number = 0;
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io(path))?;
        number += 1;
        if n == 0 || !line.ends_with('\n') {
            break;
        }
        let Some(json) = checked(&line) else {
            break;
        };
        let record = serde_json::from_str(json).map_err(|e| JournalError::Record {
            path: path.to_path_buf(),
            line: number,
            message: e.to_string(),
        })?;
        each(record);
        good_len += n as u64;
    }
    Ok(good_len)
}

/// The JSON of a whole line whose checksum holds.
fn checked(line: &str) -> Option<&str> {
    let (crc, json) = line.strip_suffix('\n')?.split_once(' ')?;
    (u32::from_str_radix(crc, 16).ok() == Some(crc32fast::hash(json.as_bytes()))).then_some(json)
}
