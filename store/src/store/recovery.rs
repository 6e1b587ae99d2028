//! Opening a store directory (creating or recovering it) and closing it cleanly.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use super::{now_ms, Inner, StoreOptions};
use crate::blobs::BlobStore;
use crate::catalog::checkpoint::{self, DeltaLog};
use crate::catalog::kv::Overlay;
use crate::catalog::Catalog;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{atomic_write, create_dir_durable, sync_dir};
use crate::lock::DirLock;
use crate::metrics::MetricsStore;
use crate::ops::Op;
use crate::wal::{Wal, WalOptions};

/// The on-disk format this build writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const CLEAN_FILE: &str = "CLEAN";

fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let version = text
                .trim()
                .strip_prefix("quiver-store ")
                .and_then(|v| v.parse::<u32>().ok())
                .ok_or_else(|| {
                    Error::corruption(&path, format!("unrecognized format file: {text:?}"))
                })?;
            if version != FORMAT_VERSION {
                return Err(Error::Internal(format!(
                    "{} holds a format {version} store; this build reads format {FORMAT_VERSION}",
                    dir.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            atomic_write(&path, format!("quiver-store {FORMAT_VERSION}\n").as_bytes())
        }
        Err(e) => Err(Error::io(&path, e)),
    }
}

/// Reads and removes the clean-shutdown marker: the LSN the catalog index was flushed at.
fn take_clean_marker(cat_dir: &Path) -> Result<Option<u64>> {
    let path = cat_dir.join(CLEAN_FILE);
    let lsn = match std::fs::read_to_string(&path) {
        Ok(t) => t.trim().parse::<u64>().ok(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    std::fs::remove_file(&path).at(&path)?;
    sync_dir(cat_dir)?;
    Ok(lsn)
}

/// Opens the catalog index if it was closed cleanly at `clean_lsn` and looks whole.
fn open_trusted_catalog(sled_dir: &Path, clean_lsn: u64) -> Option<Catalog> {
    match Catalog::open(sled_dir) {
        Ok(cat) if cat.applied_lsn().ok() == Some(clean_lsn) => Some(cat),
        Ok(_) => {
            tracing::warn!("catalog index does not match its clean-shutdown marker; rebuilding it");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "catalog index cannot be opened; rebuilding it");
            None
        }
    }
}

/// Opens or creates the store in `dir`.
pub(super) fn open(dir: &Path, options: StoreOptions) -> Result<Inner> {
    create_dir_durable(dir)?;
    let lock = DirLock::acquire(dir)?;
    check_format(dir)?;
    let blobs = BlobStore::open(&dir.join("blobs"))?;
    let metrics = MetricsStore::open(&dir.join("metrics"))?;
    let cat_dir = dir.join("catalog");
    create_dir_durable(&cat_dir)?;
    let sled_dir = cat_dir.join("sled");
    let base_lsn = checkpoint::base_lsn(&cat_dir)?;

    let clean = take_clean_marker(&cat_dir)?;
    let trusted = clean.and_then(|lsn| open_trusted_catalog(&sled_dir, lsn));
    let (catalog, catalog_lsn, delta) = match trusted {
        Some(cat) => {
            let lsn = cat.applied_lsn()?;
            let (delta, _) = DeltaLog::open(&cat_dir, u64::MAX, |_, _| Ok(()))?;
            (cat, lsn, delta)
        }
        None => {
            if sled_dir.exists() {
                std::fs::remove_dir_all(&sled_dir).at(&sled_dir)?;
            }
            let cat = Catalog::open(&sled_dir)?;
            let loaded = checkpoint::load_base(&cat_dir, cat.kv())?;
            let (delta, last) = DeltaLog::open(&cat_dir, loaded, |_, op| cat.apply(&op))?;
            let lsn = loaded.max(last);
            tracing::info!(
                base_lsn = loaded,
                catalog_lsn = lsn,
                "rebuilt the catalog index"
            );
            (cat, lsn, delta)
        }
    };

    let mut delta = delta;
    delta.set_faults(options.faults.clone());
    let metrics_lsn = metrics.persisted_lsn();
    let floor = catalog_lsn.max(metrics_lsn) + 1;
    let after = catalog_lsn.min(metrics_lsn);
    let wal_options = WalOptions {
        segment_bytes: options.wal_segment_bytes,
        faults: options.faults.clone(),
    };
    let (wal, report) = Wal::open(
        &dir.join("wal"),
        wal_options,
        floor,
        after,
        |lsn, payload| {
            let op = Op::decode(payload)?;
            if lsn > catalog_lsn {
                catalog.apply(&op)?;
            }
            if lsn > metrics_lsn {
                if let Op::LogBatch(batch) = &op {
                    metrics.apply(lsn, batch);
                }
            }
            Ok(())
        },
    )?;
    if report.discarded_tail_bytes > 0 {
        tracing::warn!(
            bytes = report.discarded_tail_bytes,
            "discarded a torn tail of the write-ahead log (writes that were never acknowledged)"
        );
    }
    tracing::info!(
        trusted_index = clean.is_some(),
        base_lsn,
        catalog_lsn,
        metrics_lsn,
        wal_last = report.last_lsn,
        replayed = report.records,
        "store recovered"
    );

    let overlay = Arc::new(Overlay::new(catalog.kv())?);
    let staged = catalog.staged(overlay.clone())?;
    let published = wal.next_lsn() - 1;
    let inner = Inner {
        dir: dir.to_path_buf(),
        options,
        commit: Mutex::new(()),
        gate: RwLock::new(()),
        wal,
        catalog,
        staged,
        overlay,
        pending: Mutex::new(VecDeque::new()),
        published: Mutex::new(published),
        last_heal: Mutex::new(None),
        metrics,
        blobs,
        delta: Mutex::new(delta),
        base_lsn: AtomicU64::new(base_lsn),
        base_size: AtomicU64::new(
            std::fs::metadata(cat_dir.join(checkpoint::BASE_FILE)).map_or(0, |m| m.len()),
        ),
        flush_lock: Mutex::new(()),
        gc_lock: RwLock::new(()),
        gc_wanted: AtomicBool::new(true),
        purged_points_pending: AtomicBool::new(true),
        last_gc: Mutex::new(Instant::now()),
        poisoned: AtomicBool::new(false),
        run_index: Default::default(),
        stop: (Mutex::new(false), Condvar::new()),
        closed: AtomicBool::new(false),
        _lock: lock,
    };
    if inner.catalog.experiment(0)?.is_none() {
        let time = now_ms();
        inner.commit(|_| {
            Ok((
                Some(Op::CreateExperiment {
                    id: 0,
                    name: "Default".into(),
                    artifact_location: "mlflow-artifacts:/0".into(),
                    tags: Vec::new(),
                    time,
                }),
                (),
            ))
        })?;
    }
    Ok(inner)
}

/// Flushes everything and marks the catalog index clean.
pub(super) fn close(inner: &Inner) -> Result<()> {
    inner.flush()?;
    let _guard = inner.commit.lock().expect("commit lock");
    let lsn = inner.wal.next_lsn() - 1;
    inner.wal.sync_to(lsn)?;
    inner.publish_through(lsn)?;
    inner.catalog.set_applied_lsn(lsn)?;
    inner.catalog.flush()?;
    atomic_write(
        &inner.dir.join("catalog").join(CLEAN_FILE),
        lsn.to_string().as_bytes(),
    )
}
