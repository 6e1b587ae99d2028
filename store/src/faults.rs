//! Injected I/O failures, for tests of what the store does when its disk fails.
//!
//! The store's own files are written through a few narrow places (the write-ahead log, the
//! catalog's delta log); each asks the store's [`FaultInjection`], if it has one
//! ([`crate::StoreOptions::faults`]), whether its next operation should fail. A failing write
//! writes half of its bytes first, as a full disk does; a failing fsync has already written
//! everything. The errors are `ENOSPC` ("No space left on device") unless set otherwise.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// Counters of operations to fail. Share it (`Arc`) between the test and the store.
#[derive(Debug)]
pub struct FaultInjection {
    wal_writes: AtomicU32,
    wal_syncs: AtomicU32,
    delta_appends: AtomicU32,
    errno: AtomicI32,
}

impl Default for FaultInjection {
    fn default() -> Self {
        FaultInjection {
            wal_writes: AtomicU32::new(0),
            wal_syncs: AtomicU32::new(0),
            delta_appends: AtomicU32::new(0),
            errno: AtomicI32::new(libc::ENOSPC),
        }
    }
}

/// The places that can be made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultPoint {
    /// A write into a write-ahead-log segment.
    WalWrite,
    /// An fsync of a write-ahead-log segment.
    WalSync,
    /// An append to the catalog's delta log.
    DeltaAppend,
}

impl FaultInjection {
    /// Makes the next `n` writes into the write-ahead log fail (after writing half their bytes).
    pub fn fail_wal_writes(&self, n: u32) {
        self.wal_writes.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` fsyncs of the write-ahead log fail (after the data was written).
    pub fn fail_wal_syncs(&self, n: u32) {
        self.wal_syncs.store(n, Ordering::SeqCst);
    }

    /// Makes the next `n` appends to the catalog's delta log fail (after half was written).
    pub fn fail_delta_appends(&self, n: u32) {
        self.delta_appends.store(n, Ordering::SeqCst);
    }

    /// The `errno` of the injected errors (default `ENOSPC`).
    pub fn set_errno(&self, errno: i32) {
        self.errno.store(errno, Ordering::SeqCst);
    }

    /// The injected error for the next operation at `point`, if it is to fail.
    pub(crate) fn take(&self, point: FaultPoint) -> Option<std::io::Error> {
        let counter = match point {
            FaultPoint::WalWrite => &self.wal_writes,
            FaultPoint::WalSync => &self.wal_syncs,
            FaultPoint::DeltaAppend => &self.delta_appends,
        };
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .ok()
            .map(|_| std::io::Error::from_raw_os_error(self.errno.load(Ordering::SeqCst)))
    }
}

/// `faults.take(point)` when there are faults to inject.
pub(crate) fn injected(
    faults: &Option<std::sync::Arc<FaultInjection>>,
    point: FaultPoint,
) -> Option<std::io::Error> {
    faults.as_ref().and_then(|f| f.take(point))
}
