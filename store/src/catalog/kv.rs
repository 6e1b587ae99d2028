//! The one module that knows the catalog is kept in sled.
//!
//! Everything above speaks of named trees of byte keys and values. sled 0.34 calls itself beta and
//! has open reports of damage after a kill, so it is never the only copy of anything: the store
//! rebuilds it from the catalog checkpoint and the write-ahead log whenever it was not closed
//! cleanly (see [`crate::catalog::checkpoint`]). That is also why sled's own background flushing
//! is turned off: its durability is not relied on.
//!
//! # Staged writes
//! A write is applied to the catalog before it is durable (its validation must see the writes
//! logged before it), but readers must only ever see durable writes. So a catalog can be opened
//! *staged* ([`Kv::staged`]): its trees write into an [`Overlay`] instead of sled, tagged with the
//! LSN of the op being applied, and read through it (overlay first, then sled). The store
//! validates and applies each new op on the staged catalog under its commit lock, and promotes
//! the op's writes into sled ([`Overlay::promote_through`]) only once the log has made it
//! durable; everyone else reads sled, which therefore holds durable writes only. If the log
//! fails, [`Overlay::clear`] forgets what was staged.

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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
    "step_keys",
];

/// An open key-value database.
#[derive(Debug, Clone)]
pub(crate) struct Kv {
    db: sled::Db,
    path: PathBuf,
    /// Where the trees of a staged handle write (see the module docs).
    overlay: Option<Arc<Overlay>>,
}

/// One ordered tree of the database.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    tree: sled::Tree,
    /// The overlay and this tree's index in [`TREES`], for a tree of a staged handle.
    staged: Option<(Arc<Overlay>, usize)>,
}

/// Writes applied but not yet durable, per tree, in the order they were made.
#[derive(Debug)]
pub(crate) struct Overlay {
    /// The trees writes are promoted into, indexed like [`TREES`].
    trees: Vec<sled::Tree>,
    state: Mutex<OverlayState>,
}

#[derive(Debug, Default)]
struct OverlayState {
    /// The LSN the writes being made now belong to.
    lsn: u64,
    /// Per tree: the newest staged value of each key (`None`: removed) and its LSN.
    latest: Vec<StagedTree>,
    /// Every staged write, oldest first.
    log: VecDeque<StagedWrite>,
}

/// The newest staged value of each key of one tree (`None`: removed) and the LSN it belongs to.
type StagedTree = BTreeMap<Vec<u8>, (u64, Option<Value>)>;

#[derive(Debug)]
struct StagedWrite {
    lsn: u64,
    tree: usize,
    key: Vec<u8>,
    value: Option<Value>,
}

impl Overlay {
    /// An empty overlay over the trees of `kv`.
    pub(crate) fn new(kv: &Kv) -> Result<Overlay> {
        let trees = TREES
            .iter()
            .map(|name| kv.db.open_tree(name).map_err(|e| err(&kv.path, e)))
            .collect::<Result<_>>()?;
        Ok(Overlay {
            trees,
            state: Mutex::new(OverlayState {
                lsn: 0,
                latest: vec![BTreeMap::new(); TREES.len()],
                log: VecDeque::new(),
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, OverlayState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Tags the writes that follow with `lsn` (the op about to be applied).
    pub(crate) fn begin(&self, lsn: u64) {
        self.state().lsn = lsn;
    }

    fn put(&self, tree: usize, key: &[u8], value: Option<Value>) {
        let mut st = self.state();
        let lsn = st.lsn;
        st.latest[tree].insert(key.to_vec(), (lsn, value.clone()));
        st.log.push_back(StagedWrite {
            lsn,
            tree,
            key: key.to_vec(),
            value,
        });
    }

    /// The staged value of `key`: `Some(None)` if it was removed, `None` if nothing is staged.
    fn get(&self, tree: usize, key: &[u8]) -> Option<Option<Value>> {
        self.state().latest[tree].get(key).map(|(_, v)| v.clone())
    }

    /// The staged entries of `tree` from `from` on whose keys start with `prefix`, in key order.
    fn range(&self, tree: usize, from: &[u8], prefix: &[u8]) -> Vec<(Vec<u8>, Option<Value>)> {
        let st = self.state();
        st.latest[tree]
            .range(from.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, (_, v))| (k.clone(), v.clone()))
            .collect()
    }

    /// Writes every staged write of ops up to `lsn` into sled, in order, and forgets it. Staged
    /// reads see the same values before and after (the overlay is locked throughout).
    pub(crate) fn promote_through(&self, lsn: u64) -> Result<()> {
        let mut st = self.state();
        while st.log.front().is_some_and(|w| w.lsn <= lsn) {
            let w = st.log.pop_front().expect("front checked");
            let tree = &self.trees[w.tree];
            match &w.value {
                Some(v) => tree.insert(w.key.as_slice(), v.clone()).map(|_| ()),
                None => tree.remove(w.key.as_slice()).map(|_| ()),
            }
            .map_err(|e| Error::Internal(format!("catalog tree {}: {e}", TREES[w.tree])))?;
            let latest = &mut st.latest[w.tree];
            if latest.get(&w.key).is_some_and(|(l, _)| *l <= lsn) {
                latest.remove(&w.key);
            }
        }
        Ok(())
    }

    /// Forgets every staged write (their ops will never be durable).
    pub(crate) fn clear(&self) {
        let mut st = self.state();
        st.log.clear();
        for tree in &mut st.latest {
            tree.clear();
        }
    }

    /// Whether nothing is staged.
    pub(crate) fn is_empty(&self) -> bool {
        self.state().log.is_empty()
    }
}

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
                overlay: None,
            }),
            Ok(Err(e)) => Err(err(path, e)),
            Err(_) => Err(Error::corruption(
                path,
                "the catalog database panicked on open",
            )),
        }
    }

    /// A handle on the same database whose trees stage their writes in `overlay` and read
    /// through it (see the module docs).
    pub(crate) fn staged(&self, overlay: Arc<Overlay>) -> Kv {
        Kv {
            overlay: Some(overlay),
            ..self.clone()
        }
    }

    /// The tree called `name` (one of [`TREES`]).
    pub(crate) fn tree(&self, name: &str) -> Result<Tree> {
        let tree = self.db.open_tree(name).map_err(|e| err(&self.path, e))?;
        let staged = match &self.overlay {
            None => None,
            Some(overlay) => {
                let index = TREES
                    .iter()
                    .position(|t| *t == name)
                    .ok_or_else(|| Error::Internal(format!("no catalog tree called {name}")))?;
                Some((overlay.clone(), index))
            }
        };
        Ok(Tree { tree, staged })
    }

    /// Writes everything to sled's files. Only used before a clean close.
    pub(crate) fn flush(&self) -> Result<()> {
        self.db.flush().map(|_| ()).map_err(|e| err(&self.path, e))
    }
}

impl Tree {
    /// The value under `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        if let Some((overlay, tree)) = &self.staged {
            if let Some(v) = overlay.get(*tree, key) {
                return Ok(v);
            }
        }
        self.tree
            .get(key)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Whether `key` is present.
    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        if let Some((overlay, tree)) = &self.staged {
            if let Some(v) = overlay.get(*tree, key) {
                return Ok(v.is_some());
            }
        }
        self.tree
            .contains_key(key)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Sets `key` to `value`.
    pub(crate) fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        if let Some((overlay, tree)) = &self.staged {
            overlay.put(*tree, key.as_ref(), Some(Value::from(value.as_ref())));
            return Ok(());
        }
        self.tree
            .insert(key.as_ref(), value.as_ref())
            .map(|_| ())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Removes `key`; true if it was there.
    pub(crate) fn remove(&self, key: &[u8]) -> Result<bool> {
        if let Some((overlay, tree)) = &self.staged {
            let was = self.contains(key)?;
            overlay.put(*tree, key, None);
            return Ok(was);
        }
        self.tree
            .remove(key)
            .map(|v| v.is_some())
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// Removes every entry whose key starts with `prefix`; returns how many there were.
    pub(crate) fn remove_prefix(&self, prefix: &[u8]) -> Result<usize> {
        let keys: Vec<Value> = self
            .scan_prefix(prefix)
            .map(|e| e.map(|(k, _)| k))
            .collect::<Result<_>>()?;
        for k in &keys {
            self.remove(k)?;
        }
        Ok(keys.len())
    }

    /// Every entry whose key starts with `prefix`, in key order.
    pub(crate) fn scan_prefix(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.merged(self.tree.scan_prefix(prefix), prefix, prefix)
    }

    /// Every entry with key in `[from, ..)`, in key order.
    pub(crate) fn range_from(
        &self,
        from: &[u8],
    ) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.merged(self.tree.range(from.to_vec()..), from, b"")
    }

    /// Every entry, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Result<(Value, Value)>> + use<> {
        self.merged(self.tree.iter(), b"", b"")
    }

    /// `base` with the staged entries from `from` under `prefix` laid over it.
    fn merged(&self, base: sled::Iter, from: &[u8], prefix: &[u8]) -> Merged {
        let staged = match &self.staged {
            Some((overlay, tree)) => overlay.range(*tree, from, prefix),
            None => Vec::new(),
        };
        Merged {
            staged: staged.into_iter().peekable(),
            base: base.peekable(),
        }
    }
}

/// The entries of a sled iterator with staged writes laid over them, in key order.
struct Merged {
    staged: Peekable<std::vec::IntoIter<(Vec<u8>, Option<Value>)>>,
    base: Peekable<sled::Iter>,
}

impl Iterator for Merged {
    type Item = Result<(Value, Value)>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::cmp::Ordering;
        loop {
            let order = match (self.staged.peek(), self.base.peek()) {
                (None, None) => return None,
                (_, Some(Err(_))) | (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some((k, _)), Some(Ok((b, _)))) => k.as_slice().cmp(b.as_ref()),
            };
            if order == Ordering::Greater {
                let next = self.base.next()?;
                return Some(next.map_err(|e| Error::Internal(e.to_string())));
            }
            if order == Ordering::Equal {
                self.base.next();
            }
            let (key, value) = self.staged.next()?;
            if let Some(value) = value {
                return Some(Ok((Value::from(key), value)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(it: impl Iterator<Item = Result<(Value, Value)>>) -> Vec<(Vec<u8>, Vec<u8>)> {
        it.map(|e| {
            let (k, v) = e.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
    }

    #[test]
    fn staged_writes_are_seen_by_the_staged_handle_only_until_promoted() {
        let dir = tempfile::tempdir().unwrap();
        let kv = Kv::open(dir.path()).unwrap();
        let runs = kv.tree("runs").unwrap();
        runs.insert(b"a1", b"old").unwrap();
        runs.insert(b"a3", b"gone").unwrap();
        runs.insert(b"b1", b"other").unwrap();
        let overlay = Arc::new(Overlay::new(&kv).unwrap());
        let staged = kv.staged(overlay.clone()).tree("runs").unwrap();
        overlay.begin(7);
        staged.insert(b"a1", b"new").unwrap();
        staged.insert(b"a2", b"added").unwrap();
        assert!(staged.remove(b"a3").unwrap());
        overlay.begin(8);
        staged.insert(b"a4", b"later").unwrap();

        let want_staged = vec![
            (b"a1".to_vec(), b"new".to_vec()),
            (b"a2".to_vec(), b"added".to_vec()),
            (b"a4".to_vec(), b"later".to_vec()),
        ];
        assert_eq!(entries(staged.scan_prefix(b"a")), want_staged);
        assert_eq!(staged.get(b"a3").unwrap(), None);
        assert!(staged.contains(b"a2").unwrap());
        assert_eq!(entries(staged.range_from(b"a2")).len(), 3);
        // Readers see sled, untouched.
        assert_eq!(
            entries(runs.scan_prefix(b"a")),
            vec![
                (b"a1".to_vec(), b"old".to_vec()),
                (b"a3".to_vec(), b"gone".to_vec())
            ]
        );

        overlay.promote_through(7).unwrap();
        assert_eq!(entries(staged.scan_prefix(b"a")), want_staged);
        assert_eq!(
            entries(runs.scan_prefix(b"a")),
            vec![
                (b"a1".to_vec(), b"new".to_vec()),
                (b"a2".to_vec(), b"added".to_vec())
            ]
        );
        assert!(!overlay.is_empty());
        overlay.clear();
        assert!(overlay.is_empty());
        assert_eq!(
            entries(staged.iter()).len(),
            3,
            "a1, a2, b1: the lsn-8 write is gone"
        );
    }
}
