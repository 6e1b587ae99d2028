//! The write side: the active segment file, flushing the in-memory tail, rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use super::record::{segment_path, FRAME_HEADER, MAGIC};
use super::{reader, Lsn, SegmentInfo, Wal};
use crate::error::{Error, IoContext, Result};
use crate::faults::{injected, FaultPoint};
use crate::fsutil::sync_dir;

/// A spare buffer larger than this is dropped after a flush rather than kept for reuse.
const KEEP_SPARE_BYTES: usize = 4 << 20;

/// The active segment is zero-filled this far ahead of its data. Overwriting bytes that already
/// exist makes `fdatasync` a pure data flush, with no file-size change to journal: about 3.5×
/// faster per commit on the disks measured here (0.7 ms against 2.5 ms). Readers take a run of
/// zeros after the last record for the end of the segment.
const ZERO_AHEAD_BYTES: u64 = 4 << 20;

/// The segment being written.
#[derive(Debug)]
pub(super) struct ActiveSegment {
    /// The open file, positioned at its end.
    file: File,
    /// Its path.
    path: PathBuf,
    /// The LSN of its first record (its name).
    first_lsn: Lsn,
    /// The LSN of its last written record, `None` while it holds none.
    last_lsn: Option<Lsn>,
    /// Bytes written to it, header included.
    pub(super) bytes: u64,
    /// The file's length: `bytes` plus zeros filled ahead.
    allocated: u64,
    /// `bytes` and `last_lsn` as of the last successful fsync: what is known durable.
    synced: (u64, Option<Lsn>),
}

/// State owned by the writer: guarded by `Wal::io`, held during writes and fsyncs.
#[derive(Debug)]
pub(super) struct IoState {
    /// The segment appends go to.
    active: ActiveSegment,
    /// An empty buffer swapped with the append buffer at each flush, so capacity is reused.
    spare: Vec<u8>,
}

impl IoState {
    /// Writer state around a freshly created segment.
    pub(super) fn new(active: ActiveSegment) -> IoState {
        IoState {
            active,
            spare: Vec::new(),
        }
    }
}

/// Creates the segment file for `first_lsn` (failing if it exists), writes and fsyncs its
/// header, and fsyncs the directory; returns once the empty segment is durable.
pub(super) fn create_segment(dir: &Path, first_lsn: Lsn) -> Result<ActiveSegment> {
    let path = segment_path(dir, first_lsn);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .at(&path)?;
    file.write_all(MAGIC).at(&path)?;
    file.sync_data().at(&path)?;
    sync_dir(dir)?;
    Ok(ActiveSegment {
        file,
        path,
        first_lsn,
        last_lsn: None,
        bytes: MAGIC.len() as u64,
        allocated: MAGIC.len() as u64,
        synced: (MAGIC.len() as u64, None),
    })
}

impl Wal {
    /// Takes everything appended so far, writes it (rotating by size), fsyncs it, and — if
    /// `force_rotate` and the active segment holds records — starts a new segment. Returns the
    /// LSN through which everything is durable. Any failure poisons the log.
    pub(super) fn flush(&self, force_rotate: bool) -> Result<Lsn> {
        let mut io = self.lock(&self.io)?;
        // Checked under the io lock: a failed flush poisons before releasing it, so no later
        // flush can report records durable that the failed one lost.
        self.check_poison()?;
        let io = &mut *io;
        let mut batch = std::mem::take(&mut io.spare);
        let last = {
            let mut st = self.lock(&self.append)?;
            std::mem::swap(&mut batch, &mut st.buf);
            st.next_lsn - 1
        };
        let result = self.write_and_sync(io, &batch, last, force_rotate);
        if let Err(e) = result {
            tracing::error!(error = %e, "write-ahead log write failed; refusing writes until it recovers");
            // The refusal's own wording says what a full disk means; add only the OS error.
            let cause = match &e {
                Error::Io { source, .. } => source.to_string(),
                other => other.public_message(),
            };
            let message = format!("write-ahead log write failed: {cause}");
            return Err(self.poison(message, e.is_disk_full()));
        }
        batch.clear();
        if batch.capacity() <= KEEP_SPARE_BYTES {
            io.spare = batch;
        }
        Ok(last)
    }

    /// Writes `batch` (whole frames, the last one record `last`) to the active segment, rotating
    /// whenever it has reached `segment_bytes`, and fsyncs it; then, if `force_rotate` and the
    /// active segment holds records, starts a new segment at `last + 1`.
    fn write_and_sync(
        &self,
        io: &mut IoState,
        batch: &[u8],
        last: Lsn,
        force_rotate: bool,
    ) -> Result<()> {
        let mut chunk_start = 0; // first byte of `batch` not yet written
        let mut pos = 0;
        while pos < batch.len() {
            let frame = &batch[pos..];
            let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
            let lsn = u64::from_le_bytes(frame[8..16].try_into().expect("8 bytes"));
            let pending = (pos - chunk_start) as u64;
            let has_records = io.active.last_lsn.is_some() || pending > 0;
            if has_records && io.active.bytes + pending >= self.opts.segment_bytes {
                self.write_chunk(&mut io.active, &batch[chunk_start..pos], lsn - 1)?;
                self.fsync(&mut io.active)?;
                self.start_segment(io, lsn)?;
                chunk_start = pos;
            }
            pos += FRAME_HEADER + len;
        }
        if chunk_start < batch.len() {
            self.write_chunk(&mut io.active, &batch[chunk_start..], last)?;
            self.fsync(&mut io.active)?;
        }
        if force_rotate && io.active.last_lsn.is_some() {
            self.start_segment(io, last + 1)?;
        }
        Ok(())
    }

    /// Appends `bytes` (frames ending with record `last_lsn`) to the active segment.
    fn write_chunk(&self, active: &mut ActiveSegment, bytes: &[u8], last_lsn: Lsn) -> Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if let Some(e) = injected(&self.opts.faults, FaultPoint::WalWrite) {
            let half = &bytes[..bytes.len() / 2];
            let _ = active.file.write_all_at(half, active.bytes);
            return Err(e).at(&active.path);
        }
        let end = active.bytes + bytes.len() as u64;
        if end > active.allocated {
            // Extend with zeros well past the data; the next fsync journals the new size once.
            let target = end + ZERO_AHEAD_BYTES;
            let zeros = vec![0u8; (target - active.allocated) as usize];
            active
                .file
                .write_all_at(&zeros, active.allocated)
                .at(&active.path)?;
            active.allocated = target;
        }
        active
            .file
            .write_all_at(bytes, active.bytes)
            .at(&active.path)?;
        active.bytes += bytes.len() as u64;
        active.last_lsn = Some(last_lsn);
        self.size_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `sync_data` on the active segment, counted; records what it made durable.
    fn fsync(&self, active: &mut ActiveSegment) -> Result<()> {
        if let Some(e) = injected(&self.opts.faults, FaultPoint::WalSync) {
            return Err(e).at(&active.path);
        }
        active.file.sync_data().at(&active.path)?;
        active.synced = (active.bytes, active.last_lsn);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Closes the active segment (already fsynced, holding records) and makes a new, durable
    /// one starting at `first_lsn` the active segment.
    fn start_segment(&self, io: &mut IoState, first_lsn: Lsn) -> Result<()> {
        // Drop the zeros filled ahead, so a closed segment ends with its last record (readers
        // accept a zero tail anyway, should a crash come first).
        if io.active.allocated > io.active.bytes {
            io.active
                .file
                .set_len(io.active.bytes)
                .at(&io.active.path)?;
            io.active.file.sync_all().at(&io.active.path)?;
        }
        let new = create_segment(&self.dir, first_lsn)?;
        self.size_bytes.fetch_add(new.bytes, Ordering::Relaxed);
        let old = std::mem::replace(&mut io.active, new);
        let info = SegmentInfo {
            first_lsn: old.first_lsn,
            last_lsn: old
                .last_lsn
                .expect("only segments holding records are closed"),
            path: old.path,
            bytes: old.bytes,
        };
        self.lock(&self.closed)?.push(info);
        Ok(())
    }
}

impl Wal {
    /// Brings a log that refuses writes (after a failed write or fsync) back into service, from
    /// what is known durable, and returns the last durable LSN: records up to it are on disk
    /// (some may have been made durable by the failed flush before it failed) and will be
    /// replayed after a restart; every record after it is forgotten, and the next append gets
    /// the LSN after it.
    ///
    /// The active segment is cut back to the end of its last successful fsync (so bytes whose
    /// fsync failed can never resurface in a replay), files of segments that were being created
    /// are removed, and space for the next writes is claimed and fsynced: if the disk is still
    /// full this fails, and the log keeps refusing writes.
    ///
    /// The caller must make sure no append or sync runs or starts meanwhile (the store holds its
    /// commit gate exclusively). Does nothing but return the durable LSN if the log is healthy.
    pub(crate) fn recover(&self) -> Result<Lsn> {
        let mut io = self.io.lock().unwrap_or_else(PoisonError::into_inner);
        self.io.clear_poison();
        let durable_end = |a: &ActiveSegment| a.synced.1.unwrap_or(a.first_lsn - 1);
        if self.check_poison().is_ok() {
            return Ok(durable_end(&io.active));
        }
        let active = &mut io.active;
        let (synced_bytes, synced_lsn) = active.synced;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&active.path)
            .at(&active.path)?;
        file.set_len(synced_bytes).at(&active.path)?;
        file.sync_all().at(&active.path)?;
        // Claim room for the next writes now: a disk that is still full fails here.
        let zeros = vec![0u8; ZERO_AHEAD_BYTES as usize];
        let claimed = match injected(&self.opts.faults, FaultPoint::WalWrite) {
            Some(e) => Err(e),
            None => file
                .write_all_at(&zeros, synced_bytes)
                .and_then(|_| file.sync_all()),
        };
        if let Err(e) = claimed {
            let _ = file.set_len(synced_bytes);
            return Err(e).at(&active.path);
        }
        for entry in std::fs::read_dir(&self.dir).at(&self.dir)? {
            let path = entry.at(&self.dir)?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(super::record::parse_segment_name);
            if first.is_some_and(|first| first > active.first_lsn) {
                reader::remove_segment(&path)?;
            }
        }
        sync_dir(&self.dir)?;
        active.file = file;
        active.bytes = synced_bytes;
        active.allocated = synced_bytes + ZERO_AHEAD_BYTES;
        active.last_lsn = synced_lsn;
        let durable = durable_end(active);
        let closed_bytes: u64 = self.lock(&self.closed)?.iter().map(|s| s.bytes).sum();
        self.size_bytes
            .store(closed_bytes + active.bytes, Ordering::Relaxed);
        {
            let mut append = self.append.lock().unwrap_or_else(PoisonError::into_inner);
            append.buf.clear();
            append.next_lsn = durable + 1;
        }
        self.append.clear_poison();
        {
            let mut sync = self.sync.lock().unwrap_or_else(PoisonError::into_inner);
            sync.durable_lsn = durable;
            sync.syncing = false;
        }
        self.sync.clear_poison();
        *self.poison.write().unwrap_or_else(PoisonError::into_inner) = None;
        tracing::warn!(
            durable_lsn = durable,
            "write-ahead log recovered; writes resume"
        );
        Ok(durable)
    }
}

#[cfg(test)]
impl Wal {
    /// Swaps the active file handle for a read-only one, so the next write fails.
    pub(super) fn break_active_file_for_test(&self) {
        let mut io = self.io.lock().unwrap();
        io.active.file = File::open(&io.active.path).unwrap();
    }
}
