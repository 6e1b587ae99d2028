//! The write-ahead log: every mutation of the store is appended here and made durable before
//! the write is acknowledged.
//!
//! # Layout
//! The log lives in one directory of segment files named `{first_lsn:020}.wal`. Each segment
//! starts with an 8-byte magic and holds consecutive records framed as
//! `[len: u32 LE][crc32: u32 LE][lsn: u64 LE][payload]` (see [`record`]). LSNs grow by one per
//! record across all segments; LSN 0 is never used, so `0` means "nothing".
//!
//! # Concurrency (group commit)
//! * `append` only copies the framed record into an in-memory buffer under the append lock.
//! * `sync_to` elects one leader at a time (the `syncing` flag of the sync state). The leader
//!   takes the whole buffer, writes and fsyncs it under the I/O lock — never under the append
//!   lock — while other callers wait on a condvar; one fsync thus covers every record appended
//!   before the leader took the buffer.
//! * A failed write or fsync poisons the log: its outcome on disk is unknown, and an fsync
//!   cannot be retried safely after the kernel dropped the dirty pages. [`Wal::recover`] brings
//!   it back into service from what is known durable: the active segment is cut back to the end
//!   of its last successful fsync, so nothing written after it can resurface in a later replay.
//!
//! Lock order: `io` → `append` → `closed`; `sync` is never held while taking another lock.

mod reader;
pub(crate) mod record;
mod writer;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};

use crate::error::{Error, Result};
use crate::faults::FaultInjection;
use crate::fsutil::{create_dir_durable, sync_dir};

pub(crate) use record::{decode_frames, decode_frames_with, encode_frame};
use writer::IoState;

/// A log sequence number: the position of a record in the log, consecutive across segments.
pub(crate) type Lsn = u64;

/// Tuning of a [`Wal`].
#[derive(Debug, Clone)]
pub(crate) struct WalOptions {
    /// The active segment is closed and a new one started once it holds at least this many
    /// bytes (the record that crosses the limit stays in the old segment). Default 64 MiB.
    pub(crate) segment_bytes: u64,
    /// Failures to inject (tests).
    pub(crate) faults: Option<Arc<FaultInjection>>,
}

impl Default for WalOptions {
    /// 64 MiB segments.
    fn default() -> Self {
        WalOptions {
            segment_bytes: 64 << 20,
            faults: None,
        }
    }
}

/// Why the log refuses writes.
#[derive(Debug, Clone)]
struct PoisonCause {
    /// What failed (no file paths: it reaches clients).
    message: String,
    /// The failure was a full disk.
    disk_full: bool,
}

impl PoisonCause {
    fn error(&self) -> Error {
        if self.disk_full {
            Error::DiskFull(self.message.clone())
        } else {
            Error::Poisoned(self.message.clone())
        }
    }
}

/// A closed (no longer written) segment file, all of whose records are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentInfo {
    /// The LSN of its first record (also encoded in its file name).
    pub(crate) first_lsn: Lsn,
    /// The LSN of its last record.
    pub(crate) last_lsn: Lsn,
    /// The segment file.
    pub(crate) path: PathBuf,
    /// Its size in bytes, header included.
    pub(crate) bytes: u64,
}

/// What [`Wal::open`] found in the log.
#[derive(Debug, Default)]
pub(crate) struct ReplayReport {
    /// How many records were passed to the replay callback (those with lsn > `replay_after`).
    pub(crate) records: u64,
    /// The last valid LSN in the log, replayed or not; `None` if the log held no record.
    pub(crate) last_lsn: Option<Lsn>,
    /// Bytes cut off the end of the last segment because they were torn or corrupt.
    pub(crate) discarded_tail_bytes: u64,
}

/// The write-ahead log. `Send + Sync`: share it behind an `Arc` and call it from any thread.
///
/// Dropping it does not flush: records appended but not yet covered by a returned
/// [`Wal::sync_to`] or [`Wal::rotate`] may be lost.
#[derive(Debug)]
pub(crate) struct Wal {
    /// The log directory.
    dir: PathBuf,
    /// Options given to `open`.
    opts: WalOptions,
    /// The in-memory tail: framed records not yet handed to the writer.
    append: Mutex<AppendState>,
    /// Group-commit state; waiters sleep on `synced`.
    sync: Mutex<SyncState>,
    /// Signalled whenever `durable_lsn`, `syncing` or the poison change.
    synced: Condvar,
    /// The active segment file; held by whoever writes (the leader, `rotate`).
    io: Mutex<IoState>,
    /// Closed segments, oldest first.
    closed: Mutex<Vec<SegmentInfo>>,
    /// Set by the first failed write or fsync (or a panic while holding a lock); cleared by
    /// [`Wal::recover`].
    poison: RwLock<Option<PoisonCause>>,
    /// Bytes in all segment files (closed and active).
    size_bytes: AtomicU64,
    /// Number of record fsyncs issued (for tests and metrics).
    fsyncs: AtomicU64,
}

/// The append side: records framed in memory, waiting for the next leader.
struct AppendState {
    /// Framed records, in LSN order.
    buf: Vec<u8>,
    /// The LSN the next append gets.
    next_lsn: Lsn,
}

impl std::fmt::Debug for AppendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendState")
            .field("buffered_bytes", &self.buf.len())
            .field("next_lsn", &self.next_lsn)
            .finish()
    }
}

/// The group-commit state.
#[derive(Debug)]
struct SyncState {
    /// Every record with lsn <= this is written and fsynced.
    durable_lsn: Lsn,
    /// A leader is writing and fsyncing right now.
    syncing: bool,
}

impl Wal {
    /// Opens (creating if needed) the log in `dir` and replays it; returns once replay is done
    /// and a fresh active segment has been created durably.
    ///
    /// Every segment is validated. In the LAST segment a torn or corrupt tail (short frame, bad
    /// crc, len above the maximum, lsn not consecutive) is truncated away at the last valid
    /// record, fsynced, and logged with `tracing::warn!`; the same in an earlier segment, a bad
    /// magic, or a gap in LSNs between segments is [`Error::Corruption`].
    ///
    /// `replay(lsn, payload)` is called for every valid record with lsn > `replay_after`, in
    /// order, before this returns (if a later segment turns out corrupt, records of earlier
    /// segments may already have been replayed when the error is returned). An error from
    /// `replay` aborts the open and is returned as is.
    ///
    /// The next LSN is `max(last valid lsn + 1, next_lsn_floor, 1)`. The store passes its
    /// checkpoint LSN + 1 as `next_lsn_floor`, since truncation can remove every record. If the
    /// floor lies beyond the last record, every existing record is below the checkpoint, so
    /// those segments are deleted (keeping LSNs on disk gap-free). Segments without records are
    /// deleted too. Appends always go to a new segment created here, never to an old file.
    pub(crate) fn open(
        dir: &Path,
        opts: WalOptions,
        next_lsn_floor: Lsn,
        replay_after: Lsn,
        replay: impl FnMut(Lsn, &[u8]) -> Result<()>,
    ) -> Result<(Wal, ReplayReport)> {
        create_dir_durable(dir)?;
        let mut scan = reader::scan(dir, replay_after, replay)?;
        let last_lsn = scan.segments.last().map(|s| s.last_lsn);
        let next_lsn = last_lsn.map_or(0, |l| l + 1).max(next_lsn_floor).max(1);
        if last_lsn.is_some_and(|l| l + 1 < next_lsn) {
            tracing::warn!(
                dir = %dir.display(),
                last_lsn,
                next_lsn_floor,
                "WAL ends below the checkpoint floor; deleting its obsolete segments"
            );
            for seg in scan.segments.drain(..) {
                reader::remove_segment(&seg.path)?;
            }
            sync_dir(dir)?;
        }
        let active = writer::create_segment(dir, next_lsn)?;
        let size = scan.segments.iter().map(|s| s.bytes).sum::<u64>() + active.bytes;
        let wal = Wal {
            dir: dir.to_path_buf(),
            opts,
            append: Mutex::new(AppendState {
                buf: Vec::new(),
                next_lsn,
            }),
            sync: Mutex::new(SyncState {
                durable_lsn: next_lsn - 1,
                syncing: false,
            }),
            synced: Condvar::new(),
            io: Mutex::new(IoState::new(active)),
            closed: Mutex::new(scan.segments),
            poison: RwLock::new(None),
            size_bytes: AtomicU64::new(size),
            fsyncs: AtomicU64::new(0),
        };
        let report = ReplayReport {
            records: scan.replayed,
            last_lsn,
            discarded_tail_bytes: scan.discarded_tail_bytes,
        };
        Ok((wal, report))
    }

    #[cfg_attr(not(test), allow(dead_code))] // used by the log's own tests
    /// Appends `payload` to the in-memory tail and returns its LSN at once. The record is NOT
    /// durable until [`Wal::sync_to`] for that LSN returns. LSN order is call order. The tail
    /// stays in memory until the next `sync_to` or `rotate`, so call one of them regularly.
    ///
    /// Fails with [`Error::Poisoned`] once any earlier write or fsync failed, and with
    /// [`Error::InvalidParameter`] if the payload exceeds 64 MiB.
    pub(crate) fn append(&self, payload: &[u8]) -> Result<Lsn> {
        self.append_with(|buf| buf.extend_from_slice(payload))
    }

    /// Like [`Wal::append`], but `encode` writes the payload straight into the log buffer (no
    /// intermediate copy). `encode` must only append to the `Vec` it is given; it runs under the
    /// append lock, so keep it short and do not call back into the `Wal` from it (deadlock).
    /// If it panics, the log is poisoned.
    pub(crate) fn append_with(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<Lsn> {
        self.check_poison()?;
        let mut st = self.lock(&self.append)?;
        let lsn = st.next_lsn;
        let start = record::begin_frame(&mut st.buf);
        encode(&mut st.buf);
        record::finish_frame(&mut st.buf, start, lsn).map_err(|len| {
            Error::InvalidParameter(format!(
                "WAL record of {len} bytes exceeds the maximum of {} bytes",
                record::MAX_PAYLOAD
            ))
        })?;
        st.next_lsn += 1;
        Ok(lsn)
    }

    /// Blocks until every record with lsn <= `lsn` is written and fsynced (`File::sync_data`),
    /// then returns `Ok`. Returns at once if that is already the case.
    ///
    /// Group commit: if no fsync is in progress the caller becomes the leader, takes everything
    /// appended so far, and writes and fsyncs it (rotating segments by size) outside the append
    /// lock; other callers wait on a condvar and are usually covered by the leader's fsync.
    /// Appenders are never blocked by an fsync in progress.
    ///
    /// If the write or fsync fails the log is poisoned: this and every later call return
    /// [`Error::Poisoned`]. An `lsn` that was never appended is [`Error::InvalidParameter`].
    pub(crate) fn sync_to(&self, lsn: Lsn) -> Result<()> {
        let next = self.next_lsn();
        if lsn >= next {
            return Err(Error::InvalidParameter(format!(
                "cannot sync the WAL to lsn {lsn}: the last appended lsn is {}",
                next - 1
            )));
        }
        let mut st = self.lock(&self.sync)?;
        loop {
            self.check_poison()?;
            if st.durable_lsn >= lsn {
                return Ok(());
            }
            if !st.syncing {
                break;
            }
            st = self.synced.wait(st).map_err(|_| self.poisoned_lock())?;
        }
        st.syncing = true;
        drop(st);
        // Clears `syncing` and wakes the waiters however the flush ends (error or panic too).
        let mut leader = Leader {
            wal: self,
            durable: None,
        };
        leader.durable = Some(self.flush(false)?);
        Ok(())
    }

    #[cfg_attr(not(test), allow(dead_code))] // used by the log's own tests
    /// The highest LSN known durable (0 if none since the log was opened empty).
    pub(crate) fn durable_lsn(&self) -> Lsn {
        self.sync
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .durable_lsn
    }

    /// The LSN the next append will get.
    pub(crate) fn next_lsn(&self) -> Lsn {
        self.append
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next_lsn
    }

    /// Makes everything appended so far durable, then closes the active segment and starts a new
    /// one (fsyncing the directory). Returns, once all that is durable, the last LSN of the
    /// closed segment(s) (= `next_lsn() - 1` as of the call). Records appended after the call
    /// starts go to the new segment. If the active segment holds no record, nothing is rotated.
    pub(crate) fn rotate(&self) -> Result<Lsn> {
        let last = self.flush(true)?;
        let mut st = self.lock(&self.sync)?;
        st.durable_lsn = st.durable_lsn.max(last);
        self.synced.notify_all();
        Ok(last)
    }

    /// The closed segments (never the active one), oldest first. All their records are durable;
    /// the store carries the ones it still needs forward before calling
    /// [`Wal::truncate_through`].
    pub(crate) fn closed_segments(&self) -> Vec<SegmentInfo> {
        self.closed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads every record of the closed segment file at `path`, calling `f(lsn, payload)` in
    /// order, and returns once all were read. A closed segment must be intact: a bad header,
    /// an invalid frame, or a first LSN other than the file name's is [`Error::Corruption`].
    pub(crate) fn read_segment(path: &Path, f: impl FnMut(Lsn, &[u8]) -> Result<()>) -> Result<()> {
        reader::read_closed_segment(path, f)
    }

    /// Deletes the closed segment files whose records all have lsn <= `lsn` (never the active
    /// segment), then fsyncs the directory; returns once the deletions are durable. Safe to call
    /// concurrently with appends, syncs and rotations.
    pub(crate) fn truncate_through(&self, lsn: Lsn) -> Result<()> {
        let victims: Vec<SegmentInfo> = self
            .lock(&self.closed)?
            .iter()
            .filter(|s| s.last_lsn <= lsn)
            .cloned()
            .collect();
        if victims.is_empty() {
            return Ok(());
        }
        for seg in &victims {
            reader::remove_segment(&seg.path)?;
        }
        sync_dir(&self.dir)?;
        let mut closed = self.lock(&self.closed)?;
        closed.retain(|s| {
            let gone = victims.iter().any(|v| v.first_lsn == s.first_lsn);
            if gone {
                self.size_bytes.fetch_sub(s.bytes, Ordering::Relaxed);
            }
            !gone
        });
        Ok(())
    }

    /// Total bytes in the closed segments plus the active segment as written so far (records
    /// still in the in-memory tail are not counted).
    pub(crate) fn size_bytes(&self) -> u64 {
        self.size_bytes.load(Ordering::Relaxed)
    }

    #[cfg_attr(not(test), allow(dead_code))] // used by the log's own tests
    /// How many record fsyncs the log has issued since it was opened.
    pub(crate) fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// `Err(Poisoned)` (or `Err(DiskFull)`) if an earlier write or fsync failed.
    fn check_poison(&self) -> Result<()> {
        match &*self.poison.read().unwrap_or_else(PoisonError::into_inner) {
            Some(cause) => Err(cause.error()),
            None => Ok(()),
        }
    }

    /// Why the log refuses writes, if it does.
    pub(crate) fn refusal(&self) -> Option<Error> {
        self.check_poison().err()
    }

    /// Poisons the log (the first reason wins) and returns the error to report.
    fn poison(&self, message: String, disk_full: bool) -> Error {
        let mut poison = self.poison.write().unwrap_or_else(PoisonError::into_inner);
        poison
            .get_or_insert(PoisonCause { message, disk_full })
            .error()
    }

    /// Poisons the log because a thread panicked while holding one of its locks.
    fn poisoned_lock(&self) -> Error {
        self.poison(
            "a thread panicked while holding a WAL lock".to_string(),
            false,
        )
    }

    /// Locks `m`; a lock poisoned by a panic poisons the log.
    fn lock<'a, T>(&self, m: &'a Mutex<T>) -> Result<MutexGuard<'a, T>> {
        m.lock().map_err(|_| self.poisoned_lock())
    }
}

/// The group-commit leader's duty on the way out: publish what it made durable, clear the
/// `syncing` flag and wake everyone waiting — also when the flush failed or panicked.
struct Leader<'a> {
    /// The log being synced.
    wal: &'a Wal,
    /// What the flush made durable, if it succeeded.
    durable: Option<Lsn>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.wal
                .poison("a WAL writer panicked during a sync".to_string(), false);
        }
        let mut st = self.wal.sync.lock().unwrap_or_else(PoisonError::into_inner);
        st.syncing = false;
        if let Some(lsn) = self.durable {
            st.durable_lsn = st.durable_lsn.max(lsn);
        }
        self.wal.synced.notify_all();
    }
}
