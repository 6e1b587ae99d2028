//! Flushing: metric buffers to segments, the write-ahead log into the catalog's delta log, and
//! catalog checkpoints; and the background thread that decides when.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::Inner;
use crate::catalog::checkpoint;
use crate::error::Result;
use crate::ops::Op;
use crate::wal::Wal;

impl Inner {
    /// See [`super::Store::flush`].
    pub(super) fn flush(&self) -> Result<()> {
        let _flush = self.flush_lock.lock().expect("flush lock");
        let upto = {
            let _commit = self.commit.lock().expect("commit lock");
            let upto = self.wal.rotate()?;
            // Every op up to `upto` is durable now; its points must be in the buffer frozen.
            self.publish_through(upto)?;
            self.metrics.freeze(upto);
            upto
        };
        self.metrics.persist_frozen()?;
        self.retire_wal(upto)?;
        self.maybe_checkpoint()
    }

    /// Carries the catalog part of every closed log file up to `upto` into the delta log, then
    /// deletes those files. Their metric points are in segments already.
    fn retire_wal(&self, upto: u64) -> Result<()> {
        let mut delta = self.delta.lock().expect("delta lock");
        let base = self.base_lsn.load(Ordering::Acquire);
        let segments = self.wal.closed_segments();
        for seg in segments.iter().filter(|s| s.last_lsn <= upto) {
            let mut records = Vec::new();
            Wal::read_segment(&seg.path, |lsn, payload| {
                if lsn > base {
                    if let Some(part) = Op::decode(payload)?.catalog_part() {
                        let mut bytes = Vec::new();
                        part.encode_into(&mut bytes);
                        records.push((lsn, bytes));
                    }
                }
                Ok(())
            })?;
            delta.append(&records)?;
        }
        self.wal.truncate_through(upto)
    }

    /// Writes a new base checkpoint when the delta log has outgrown the old one. Holds writers
    /// off while the catalog is copied, so the copy is exactly the state at one LSN.
    fn maybe_checkpoint(&self) -> Result<()> {
        let mut delta = self.delta.lock().expect("delta lock");
        let threshold = self
            .base_size
            .load(Ordering::Acquire)
            .max(self.options.checkpoint_min_delta_bytes);
        if delta.size() <= threshold {
            return Ok(());
        }
        let _commit = self.commit.lock().expect("commit lock");
        let lsn = self.wal.next_lsn() - 1;
        // The base may only cover ops that are durable in the log, and must hold all of them.
        self.wal.sync_to(lsn)?;
        self.publish_through(lsn)?;
        debug_assert!(self.overlay.is_empty(), "every staged write is published");
        let size = checkpoint::write_base(&self.dir.join("catalog"), self.catalog.kv(), lsn)?;
        delta.reset()?;
        self.base_lsn.store(lsn, Ordering::Release);
        self.base_size.store(size, Ordering::Release);
        tracing::info!(lsn, bytes = size, "wrote a catalog checkpoint");
        Ok(())
    }

    /// Whether buffered points, their age or the log's size call for a flush.
    fn wants_flush(&self, since_flush: Duration) -> bool {
        let buffered = self.metrics.stats().buffered_points as usize;
        buffered >= self.options.flush_points
            || self.wal.size_bytes() >= self.options.flush_wal_bytes
            || (buffered > 0 && since_flush >= self.options.flush_interval)
    }

    /// Builds the search index of every active experiment, stopping early if the store closes.
    pub(super) fn warm_run_index(&self) {
        let cancelled = || self.closed.load(std::sync::atomic::Ordering::Acquire);
        let ids: Vec<u64> = match self.catalog.experiments(crate::types::ViewType::ActiveOnly) {
            Ok(exps) => exps
                .iter()
                .filter_map(|e| e.experiment_id.parse().ok())
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "listing experiments to index failed");
                return;
            }
        };
        let t = Instant::now();
        self.run_index.warm(&self.catalog, &ids, &cancelled);
        if !cancelled() {
            tracing::debug!(
                experiments = ids.len(),
                ms = t.elapsed().as_millis() as u64,
                "run index built"
            );
            crate::memory::release_free_memory();
        }
    }

    /// The background thread: flushes and compacts when needed, until asked to stop.
    pub(super) fn background_loop(&self) {
        let mut last_flush = Instant::now();
        loop {
            {
                let (lock, cv) = &self.stop;
                let stop = lock.lock().expect("stop lock");
                let (stop, _) = cv
                    .wait_timeout(stop, Duration::from_millis(200))
                    .expect("stop lock");
                if *stop {
                    return;
                }
            }
            self.heal_if_refusing();
            if self.wants_flush(last_flush.elapsed()) {
                if let Err(e) = self.flush() {
                    tracing::error!(error = %e, "background flush failed");
                }
                crate::memory::release_free_memory();
                last_flush = Instant::now();
            }
            let o = &self.options;
            if let Err(e) = self
                .metrics
                .compact(o.compact_max_small, o.compact_small_rows)
            {
                tracing::error!(error = %e, "background compaction failed");
            }
            self.maybe_collect_garbage();
        }
    }

    /// Asks the background thread to collect garbage (see [`super::Store::gc`]).
    pub(super) fn want_gc(&self) {
        self.gc_wanted.store(true, Ordering::Release);
    }

    /// Collects garbage if it was asked for and the last collection is `gc_interval` old:
    /// blobs after a delete or overwrite, segment rows once after open (a purge a crash cut
    /// short). Failures are logged and retried at the next interval.
    fn maybe_collect_garbage(&self) {
        let blobs = self.gc_wanted.load(Ordering::Acquire);
        let points = self.purged_points_pending.load(Ordering::Acquire);
        if !blobs && !points {
            return;
        }
        let mut last = self.last_gc.lock().expect("gc time");
        if last.elapsed() < self.options.gc_interval {
            return;
        }
        *last = Instant::now();
        if points {
            match self.drop_purged_points() {
                Ok(0) => {}
                Ok(n) => tracing::info!(metric_points_removed = n, "dropped points of purged runs"),
                Err(e) => tracing::error!(error = %e, "dropping points of purged runs failed"),
            }
        }
        if blobs {
            if let Err(e) = self.collect_blobs() {
                self.want_gc();
                tracing::error!(error = %e, "background blob collection failed");
            }
        }
    }
}
