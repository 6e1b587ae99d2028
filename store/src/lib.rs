//! # quiver-store
//!
//! Quiver's embedded engine: a run-history store for machine learning that other tools open on a
//! directory. It speaks MLflow's concepts (experiments, runs, params, tags, metrics, dataset
//! inputs, artifacts) and rules (identifiers, limits, write-once params, lifecycle), so that a
//! server can map MLflow's REST API onto it one-to-one.
//!
//! - **Durable**: every mutation goes through a checksummed write-ahead log with group commit;
//!   a write that returned `Ok` survives `kill -9` and power loss.
//! - **Columnar metrics**: points are buffered per series and persisted as sorted Parquet
//!   segments; reading one series touches only that series' rows, and sampled reads cost what
//!   they return.
//! - **Content-addressed artifacts**: blake3-named blobs, stored once whatever logs them.
//! - **SQL** over all of it through DataFusion ([`Store::sql`]): read-only, with a memory and
//!   time limit per query.
//! - **Catalog** in sled, never trusted alone: rebuilt from its checkpoint and the log whenever
//!   the store was not closed cleanly.
//!
//! ```
//! # fn main() -> quiver_store::Result<()> {
//! use quiver_store::{CreateRun, Metric, Param, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::open(dir.path())?;
//! let run = store.create_run(CreateRun::default())?; // in the "Default" experiment
//! let id = &run.info.run_id;
//! store.log_batch(id, &[Metric::new("loss", 0.5, 1_700_000_000_000, 0)], &[Param::new("lr", "0.01")], &[])?;
//! assert_eq!(store.get_run(id)?.params[0].value, "0.01");
//! # Ok(()) }
//! ```
//!
//! See `ARCHITECTURE.md` in the repository for the design module by module.

pub mod artifact_path;
pub mod blobs;
mod catalog;
mod error;
mod faults;
mod fsutil;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod lock;
mod memory;
mod metrics;
mod model_types;
mod ops;
mod query;
mod search;
pub mod sql_output;
mod store;
mod types;
pub mod validate;
mod wal;

/// The Arrow crate SQL results are made of, re-exported so users match its version.
pub use arrow;
pub use blobs::{BlobBytes, Digest, GcReport};
pub use catalog::STEP_KEY_TAG;
pub use error::{Error, ErrorCode, Result};
pub use faults::FaultInjection;
pub use metrics::MetricsStats;
pub use model_types::*;
pub use query::{QueryOptions, SqlStream};
pub use search::{ExperimentPage, ExperimentSearch, RunPage, RunSearch, SEARCH_MAX_RESULTS};
pub use store::{
    ImportExperiment, ImportLoggedModel, ImportModelVersion, ImportRegisteredModel,
    ImportedExperiment, Manifest, ManifestFile, ManifestKind, MetricHistory, PurgeReport,
    PurgeRequest, Store, StoreOptions, IMPORT_BATCH, MAX_MANIFEST_FILES,
};
pub use types::*;
