//! [`Store`]: the embedded engine behind one directory.
//!
//! # Directory layout
//! ```text
//! <dir>/FORMAT          format version ("quiver-store 1")
//! <dir>/LOCK            held by the process that has the store open (contains its pid)
//! <dir>/wal/            write-ahead log: every mutation, fsynced before it is acknowledged
//! <dir>/catalog/sled/   the catalog index (derived state, rebuilt when not closed cleanly)
//! <dir>/catalog/base.ckpt, delta.log   durable copies of the catalog
//! <dir>/catalog/CLEAN   present only while the store is closed cleanly
//! <dir>/metrics/        Parquet segments and their MANIFEST
//! <dir>/blobs/          content-addressed artifact blobs
//! ```
//!
//! # Write path
//! A write takes the commit lock, validates against the *staged* catalog (the catalog plus every
//! op logged but not yet durable), appends one [`Op`] to the log, applies it to the staged
//! catalog only, releases the lock, then waits for the log to be fsynced (group commit:
//! concurrent writers share one fsync). Once the op is durable it is *published*, in log order:
//! its catalog writes are promoted into the catalog that readers see, its points enter the
//! metric buffer, the run index takes it. So a reader never sees a write that is not durable, and
//! when a write method returns `Ok`, the write survives `kill -9` and power loss and is visible.
//!
//! If the log fails (a full disk, an I/O error), nothing staged after the last durable op is
//! ever published: the staged writes are dropped and every write is refused
//! ([`Error::DiskFull`] or [`Error::Poisoned`]) until the log has been brought back from its
//! durable state ([`crate::wal`]), which the store retries by itself at most once a second
//! (from the background thread, and from the next write), without a restart.

mod artifacts;
mod deployments;
mod experiments;
#[cfg(test)]
mod format_sample;
mod import;
mod import_models;
mod import_registry;
pub(crate) mod logged_models;
mod maintenance;
mod manifests;
mod metrics;
mod model_versions;
mod purge;
mod recovery;
pub(crate) mod registry;
mod runs;
mod steps;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::blobs::BlobStore;
use crate::catalog::checkpoint::DeltaLog;
use crate::catalog::kv::Overlay;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::faults::FaultInjection;
use crate::lock::DirLock;
use crate::metrics::MetricsStore;
use crate::ops::Op;
use crate::search::index::RunIndex;
use crate::wal::Wal;

pub use import::{ImportExperiment, ImportedExperiment, IMPORT_BATCH};
pub use import_models::ImportLoggedModel;
pub use import_registry::{ImportModelVersion, ImportRegisteredModel};
#[cfg(feature = "fuzzing")]
pub(crate) use manifests::referenced_by_manifest;
pub use manifests::{Manifest, ManifestFile, ManifestKind, MAX_MANIFEST_FILES};
pub use metrics::MetricHistory;
pub use purge::{PurgeReport, PurgeRequest};

/// Tuning of a [`Store`]. The defaults suit a server; tests use smaller thresholds.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Persist buffered metric points as a Parquet segment once this many are held.
    pub flush_points: usize,
    /// ... or once the oldest buffered point is this old.
    pub flush_interval: Duration,
    /// ... or once the write-ahead log holds this many bytes.
    pub flush_wal_bytes: u64,
    /// Size of one write-ahead-log file.
    pub wal_segment_bytes: u64,
    /// Merge segments smaller than `compact_small_rows` once there are more than this many.
    pub compact_max_small: usize,
    /// See `compact_max_small`.
    pub compact_small_rows: u64,
    /// Fold the catalog's delta log into a new base checkpoint once it is larger than both the
    /// old base and this many bytes.
    pub checkpoint_min_delta_bytes: u64,
    /// Run flushes and compactions on a background thread (otherwise only [`Store::flush`] and
    /// [`Store::close`] do).
    pub background: bool,
    /// Build the search index of every active experiment on a background thread right after
    /// opening, so that the first search after a restart does not pay for it (about 2.6 s and
    /// 1.3 KB per run at 100,000 runs). Otherwise an experiment is indexed on its first search.
    pub index_on_open: bool,
    /// How often, at most, the background thread collects garbage after a change that may have
    /// left some (an overwritten or deleted artifact, a purge, and once after opening): blobs
    /// no artifact refers to and segment rows of purged runs (see [`Store::gc`]).
    pub gc_interval: Duration,
    /// I/O failures to inject, for tests of the store's behaviour on a failing disk.
    pub faults: Option<Arc<FaultInjection>>,
    /// Limits of each SQL query ([`Store::sql`], [`Store::sql_stream`]): its memory pool and
    /// time limit.
    pub sql: crate::QueryOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            flush_points: 2_000_000,
            flush_interval: Duration::from_secs(30),
            flush_wal_bytes: 512 << 20,
            wal_segment_bytes: 64 << 20,
            compact_max_small: 8,
            compact_small_rows: 1_000_000,
            checkpoint_min_delta_bytes: 16 << 20,
            background: true,
            index_on_open: true,
            gc_interval: Duration::from_secs(60),
            faults: None,
            sql: crate::QueryOptions::default(),
        }
    }
}

/// An open store: the catalog of experiments and runs, the columnar metric store and the
/// artifact blobs of one directory. Cheap to share between threads (`Arc<Store>`); all methods
/// take `&self`.
///
/// ```
/// # fn main() -> quiver_store::Result<()> {
/// use quiver_store::{CreateRun, Metric, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path())?;
/// let exp = store.create_experiment("demo", None, &[])?;
/// let run = store.create_run(CreateRun { experiment_id: Some(exp), ..Default::default() })?;
/// let id = &run.info.run_id;
/// for step in 0..100 {
///     store.log_metric(id, &Metric::new("loss", 1.0 / (step + 1) as f64, 1_700_000_000_000 + step, step))?;
/// }
/// let (history, _) = store.metric_history(id, "loss", None, None)?;
/// assert_eq!(history.len(), 100);
/// store.close()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Store {
    inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    indexer: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    options: StoreOptions,
    /// Serializes validate + log append + staged apply, so the log order is the apply order.
    commit: Mutex<()>,
    /// Held shared by every write from before its append until it is published or failed;
    /// held exclusively while the store recovers from a failed log write.
    gate: RwLock<()>,
    wal: Wal,
    /// The catalog readers see: durable writes only.
    catalog: Catalog,
    /// The same catalog with the writes of logged but not yet durable ops laid over it: what
    /// writes are validated against and applied to first.
    staged: Catalog,
    /// Where `staged` keeps those writes until they are promoted into `catalog`.
    overlay: Arc<Overlay>,
    /// Ops appended to the log and staged, not yet published, in LSN order.
    pending: Mutex<VecDeque<(u64, Op)>>,
    /// The LSN of the last published op; held while publishing, so ops publish in order.
    published: Mutex<u64>,
    /// When the store last tried to recover from a failed log write.
    last_heal: Mutex<Option<Instant>>,
    metrics: MetricsStore,
    blobs: BlobStore,
    delta: Mutex<DeltaLog>,
    /// LSN and size of the catalog's base checkpoint.
    base_lsn: AtomicU64,
    base_size: AtomicU64,
    /// Serializes flushes (log retirement, checkpoints).
    flush_lock: Mutex<()>,
    /// Artifact puts hold it shared; blob garbage collection exclusively.
    gc_lock: RwLock<()>,
    /// Set by changes that may have left blobs or segment rows unreferenced (and at open); the
    /// background thread then collects them ([`StoreOptions::gc_interval`]).
    gc_wanted: AtomicBool,
    /// Set at open: segments may hold points of runs whose purge a crash cut short; the
    /// background thread then rewrites them once.
    purged_points_pending: AtomicBool,
    /// When the background thread last collected garbage.
    last_gc: Mutex<Instant>,
    /// Set once an op reached the log but could not be applied: memory no longer matches it.
    poisoned: AtomicBool,
    /// Columnar index of runs for searches, per experiment searched so far.
    run_index: RunIndex,
    /// Wakes the background flusher; `true` asks it to stop.
    stop: (Mutex<bool>, Condvar),
    closed: AtomicBool,
    _lock: DirLock,
}

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens the store in `dir`, creating it if needed, with default options.
    ///
    /// Recovers from whatever state a crash left: replays the write-ahead log, drops a torn log
    /// tail (with a warning), rebuilds the catalog index from its checkpoint if it was not closed
    /// cleanly. Fails with [`Error::Locked`] if another process has the store open.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        Store::open_with(dir, StoreOptions::default())
    }

    /// Opens the store in `dir` with `options`.
    pub fn open_with(dir: impl AsRef<Path>, options: StoreOptions) -> Result<Store> {
        let inner = Arc::new(recovery::open(dir.as_ref(), options)?);
        let flusher = inner.options.background.then(|| {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("quiver-flush".into())
                .spawn(move || inner.background_loop())
                .expect("spawn flusher thread")
        });
        let indexer = inner.options.index_on_open.then(|| {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("quiver-index".into())
                .spawn(move || inner.warm_run_index())
                .expect("spawn run index thread")
        });
        Ok(Store {
            inner,
            flusher: Mutex::new(flusher),
            indexer: Mutex::new(indexer),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Persists buffered metric points as a Parquet segment, retires the write-ahead log they
    /// were in, and checkpoints the catalog when its delta log has grown. Writes may continue
    /// meanwhile. Everything was already durable before; this bounds recovery time and memory.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// `Ok` if the store accepts writes now, else why not: [`Error::DiskFull`] or
    /// [`Error::Poisoned`] after a failed write to its log, until the store has recovered from
    /// its durable state (it retries by itself at most once a second; this call retries too).
    /// What a health check reports.
    pub fn writable(&self) -> Result<()> {
        match self.inner.write_refusal() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Merges small metric segments if there are many. Returns whether it did.
    pub fn compact(&self) -> Result<bool> {
        let o = &self.inner.options;
        self.inner
            .metrics
            .compact(o.compact_max_small, o.compact_small_rows)
    }

    /// Figures about the metric store (buffered points, segments).
    pub fn metrics_stats(&self) -> crate::metrics::MetricsStats {
        self.inner.metrics.stats()
    }

    /// Closes the store cleanly: stops the background thread, flushes everything, checkpoints
    /// and marks the catalog clean so the next open is fast. Dropping a store does the same,
    /// ignoring errors; call this to see them.
    pub fn close(self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        {
            let (lock, cv) = &self.inner.stop;
            *lock.lock().expect("stop lock") = true;
            cv.notify_all();
        }
        if let Some(handle) = self.flusher.lock().expect("flusher lock").take() {
            let _ = handle.join();
        }
        if let Some(handle) = self.indexer.lock().expect("indexer lock").take() {
            let _ = handle.join();
        }
        recovery::close(&self.inner)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::error!(error = %e, "closing the store failed; it will recover on next open");
        }
    }
}

impl Store {
    /// The shared state, for readers that outlive a borrow of the store (SQL queries).
    pub(crate) fn shared(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }
}

impl Inner {
    /// The catalog (read access for queries).
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The run index of searches.
    pub(crate) fn run_index(&self) -> &RunIndex {
        &self.run_index
    }

    /// The metric store (read access for queries).
    pub(crate) fn metrics(&self) -> &MetricsStore {
        &self.metrics
    }

    /// Runs one write: `build` validates against the staged catalog and returns the op to log
    /// (or none for a no-op) and the caller's result. Returns once the op is durable and
    /// published (visible to readers).
    fn commit<T>(&self, build: impl FnOnce(&Catalog) -> Result<(Option<Op>, T)>) -> Result<T> {
        self.heal_if_refusing();
        let gate = self
            .gate
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check_writable()?;
        let guard = self.commit.lock().expect("commit lock");
        let (op, out) = build(&self.staged)?;
        let Some(op) = op else {
            return Ok(out);
        };
        let lsn = self.wal.append_with(|buf| op.encode_into(buf))?;
        self.overlay.begin(lsn);
        if let Err(e) = self.staged.apply(&op) {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(error = %e, lsn, "applying a logged op failed; refusing writes");
            return Err(e);
        }
        self.pending
            .lock()
            .expect("pending ops")
            .push_back((lsn, op));
        drop(guard);
        self.wal.sync_to(lsn)?;
        self.publish_through(lsn)?;
        drop(gate);
        Ok(out)
    }

    /// Fails with the reason if the store refuses writes.
    fn check_writable(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(Error::Poisoned(
                "an earlier write could not be applied to the catalog; restart the server \
                 (or reopen the store) to recover it from the log"
                    .into(),
            ));
        }
        match self.wal.refusal() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Publishes, in log order, every pending op that is durable, at least up to `lsn` (which
    /// must be durable): promotes its staged catalog writes, adds its points to the metric
    /// buffer, updates the run index. Returns once ops up to `lsn` are visible to readers.
    pub(super) fn publish_through(&self, lsn: u64) -> Result<()> {
        let mut published = self.published.lock().expect("publish lock");
        if *published >= lsn {
            return Ok(());
        }
        let durable = self.wal.durable_lsn().max(lsn);
        loop {
            let next = {
                let mut pending = self.pending.lock().expect("pending ops");
                match pending.front() {
                    Some((l, _)) if *l <= durable => pending.pop_front(),
                    _ => None,
                }
            };
            let Some((l, op)) = next else { break };
            if let Err(e) = self.overlay.promote_through(l) {
                self.poisoned.store(true, Ordering::Release);
                tracing::error!(error = %e, lsn = l, "publishing a durable op failed; refusing writes");
                return Err(e);
            }
            self.apply_derived(l, &op);
            *published = l;
        }
        *published = (*published).max(lsn);
        Ok(())
    }

    /// Applies a published op to the state derived from the catalog and the log: the metric
    /// buffer and the run index.
    fn apply_derived(&self, lsn: u64, op: &Op) {
        if let Op::LogBatch(batch) = op {
            self.metrics.apply(lsn, batch);
        }
        if let Err(e) = self.run_index.apply(op, &self.catalog) {
            // The index is derived state: forget it and rebuild it on the next search rather
            // than fail a write that is already logged and applied.
            tracing::warn!(error = %e, "run index update failed; it will be rebuilt");
            self.run_index.clear();
        }
    }

    /// Why the store refuses writes right now, if it does (a failed log write it has not yet
    /// recovered from, a full disk). Tries to recover first when that is due.
    pub(crate) fn write_refusal(&self) -> Option<Error> {
        self.heal_if_refusing();
        self.check_writable().err()
    }

    /// If the log refuses writes and no attempt was made in the last second, brings the store
    /// back from its durable state: waits for every write in flight to end (they fail), then
    /// publishes the ops the log made durable before it failed, drops every other staged write,
    /// and recovers the log ([`Wal::recover`]), which fails while the disk is still full.
    pub(crate) fn heal_if_refusing(&self) {
        if self.wal.refusal().is_none() {
            return;
        }
        {
            let mut last = self.last_heal.lock().expect("heal lock");
            if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *last = Some(Instant::now());
        }
        let _gate = self
            .gate
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _commit = self.commit.lock().expect("commit lock");
        if let Err(e) = self.heal() {
            tracing::warn!(error = %e, "the store still cannot write; will retry");
        }
    }

    fn heal(&self) -> Result<()> {
        let durable = self.wal.recover()?;
        {
            let mut pending = self.pending.lock().expect("pending ops");
            while pending.back().is_some_and(|(l, _)| *l > durable) {
                pending.pop_back();
            }
        }
        self.publish_through(durable)?;
        self.overlay.clear();
        debug_assert!(self.pending.lock().expect("pending ops").is_empty());
        Ok(())
    }
}
