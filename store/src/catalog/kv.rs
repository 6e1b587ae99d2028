//! The one module that knows the catalog is kept in sled.
//!
//! Everything above speaks of named trees of byte keys and values. sled 0.34 calls itself beta and
//! has open reports of damage after a kill, so it is never the only copy of anything: the store
//! rebuilds it from the catalog checkpoint and the write-ahead log whenever it was not closed
//! cleanly (see [`crate::catalog::checkpoint`]). That is also why sled's own background flushing
//! is turned off: its durability is not relied on.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A value read from the catalog.
pub(crate) type Value = sled::IVec;

/// The names of the catalog's trees. Their index in this list is their id in checkpoints.
pub(crate) const TREES: &[&str] = &[
    "meta",
    "experiments",
    "experiment_names",
    "experiment_tags",
    "runs",
    "runs_by_experiment",
    "params",
    "tags",
    "latest_metrics",
    "series",
    "series_by_id",
    "datasets",
    "run_inputs",
    "artifacts",
    "logged_models",
    "logged_models_by_experiment",
    "logged_model_tags",
    "logged_model_params",
    "logged_model_metrics",
    "run_model_inputs",
    "run_model_outputs",
    "registered_models",
    "registered_model_names",
    "registered_model_tags",
    "model_versions",
    "model_version_tags",
    "model_aliases",
    "deployments",
    "registry_events",
];

/// An open key-value database.
#[derive(Debug, Clone)]
pub(crate) struct Kv {
    db: sled::Db,
    path: PathBuf,
}

/// One ordered tree of the database.
#[derive(Debug, Clone)]
pub(crate) struct Tree(sled::Tree);

fn err(path: &Path, e: sled::Error) -> Error {
    Error::Internal(format!("catalog database {}: {e}", path.display()))
}

impl Kv {
    /// Opens or creates the database in `path`. A damaged database gives an error, never a panic
    /// (a panic inside sled is caught and turned into an error).
    pub(crate) fn open(path: &Path) -> Result<Kv> {
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput);
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()));
        match opened {
            Ok(Ok(db)) => Ok(Kv {
                db,
                path: path.to_path_buf(),
            }),
            Ok(Err(e)) => Err(err(path, e)),
            Err(_) => Err(Error::corruption(
                path,
                "the catalog database panicked on open",
            )),
        }
    }

    /// The tree called `name` (one of [`TREES`]).
    pub(crate) fn tree(&self, name: &str) -> Result<Tree> {
        self.db
            .open_tree(name)
            .map(Tree)
            .map_err(|e| err(&self.path, e))
    }

    /// Writes everything to sled's files. Only used before a clean close.
    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| err(&self.path, e))
    }
}

impl Tree {
    /// The value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.0.get(key).map_err(|e| Error::Internal(e.to_string()))
    }

    /// Whether `key` is present.
    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        self.0
            .contains_key(key)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Sets `key` to `value`.
    pub(crate) fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        self.0
            .insert(key.as_ref(), value.as_ref())
            .map(|_| ())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Removes `key`; true if it was there.
    pub(crate) fn remove(&self, key: &[u8]) -> Result<bool> {
        self.0
            .remove(key)
            .map(|v| v.is_some())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.0
            .scan_prefix(prefix)
            .map(|r| r.map_err(|e| Error::Internal(e.to_string())))
    }

    /// Every entry with key in `[from, ..)`, in key order.
    pub(crate) fn range_from(
        &self,
        from: &[u8],
    ) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.0
            .range(from.to_vec()..)
            .map(|r| r.map_err(|e| Error::Internal(e.to_string())))
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.0
            .iter()
            .map(|r| r.map_err(|e| Error::Internal(e.to_string())))
    }
}
