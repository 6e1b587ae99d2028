//! Integration tests of quiver-store: one binary (link time dominates rebuilds).

mod api;
mod artifacts;
mod crash;
mod faults;
mod manifests;
mod metrics;
mod models;
mod props;
mod purge;
mod recovery;
mod search;
mod sql;

use quiver_store::{CreateRun, Store, StoreOptions};

/// Options that keep everything in memory until an explicit flush.
pub fn manual_options() -> StoreOptions {
    StoreOptions {
        background: false,
        flush_points: usize::MAX,
        flush_interval: std::time::Duration::from_secs(3600),
        flush_wal_bytes: u64::MAX,
        ..StoreOptions::default()
    }
}

/// A store in a fresh temp dir, flushed only when asked.
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), manual_options()).unwrap();
    (dir, store)
}

/// A new run in experiment `exp`; returns its id.
pub fn new_run_in(s: &Store, exp: &str) -> String {
    s.create_run(CreateRun {
        experiment_id: Some(exp.to_string()),
        ..Default::default()
    })
    .unwrap()
    .info
    .run_id
}

/// A new run in the Default experiment; returns its id.
pub fn new_run(store: &Store) -> String {
    store.create_run(CreateRun::default()).unwrap().info.run_id
}
