//! The record of an export in progress, so that it can be repeated and resumed:
//! `<store>/export/<digest of the target URL>.journal`, one tab-separated entry per line,
//! appended and fsynced as each step completes.
//!
//! | entry | meaning |
//! |---|---|
//! | `E <source id> <target id> <created 0/1>` | the experiment is in the target (created by an export, or there before) |
//! | `S <source run> <target run>` | the run was created in the target; its data may be incomplete |
//! | `R <source run> <target run> <parent pending 0/1>` | the run is complete in the target (deleted if it is deleted here); its parent link still names a source id when pending |
//! | `X <source run>` | the run's incomplete copy was deleted in the target (to be exported anew) |
//! | `P <source run>` | its parent link was rewritten in a final pass |
//! | `D <source experiment>` | the experiment was deleted in the target |
//! | `V <model> <version>` | the model version is in the target as here (or created and deleted, for a number deleted here) |
//! | `M <model>` | the registered model is complete (tags, description, aliases) |
//! | `l <source model> <target model>` | the logged model was created in the target; its artifacts may be incomplete |
//! | `L <source model> <target model>` | the logged model is complete (params, tags, artifacts, status) |
//! | `O <source run>` | the run's model inputs and outputs are linked to the exported logged models |
//!
//! A run started (`S`) but never completed (`R`) was cut off: the export deletes it in the target
//! and exports it anew.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::line_log::LineLog;

/// What the journal says about a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunEntry {
    /// Its id in the target.
    pub(crate) target: String,
    /// Whether it is complete.
    pub(crate) done: bool,
    /// Whether its `mlflow.parentRunId` still names a source run (its parent was not exported
    /// when it was) and was not rewritten since.
    pub(crate) parent_pending: bool,
}

/// The state of an export into one target, and the file that records it.
#[derive(Debug)]
pub(crate) struct Journal {
    /// The file (a torn last entry is dropped at open and cut off before the next).
    log: LineLog,
    /// Source experiment id → (target id, created by an export).
    pub(crate) experiments: HashMap<String, (String, bool)>,
    /// Source run id → what was done.
    pub(crate) runs: HashMap<String, RunEntry>,
    /// Source experiments deleted in the target.
    pub(crate) deleted_experiments: HashSet<String>,
    /// (model, version) done.
    pub(crate) versions: HashSet<(String, String)>,
    /// Registered models done.
    pub(crate) models: HashSet<String>,
    /// Source logged model id → (target id, complete).
    pub(crate) logged: HashMap<String, (String, bool)>,
    /// Runs whose model inputs and outputs are linked.
    pub(crate) linked: HashSet<String>,
}

impl Journal {
    /// The file of the journal of exporting the store at `store` to `target`.
    pub(crate) fn path(store: &Path, target: &str) -> PathBuf {
        store
            .join("export")
            .join(format!("{}.journal", digest(target)))
    }

    /// The journal of exporting the store at `store` to `target` (an URL), empty when there is
    /// none yet.
    pub(crate) fn open(store: &Path, target: &str) -> anyhow::Result<Journal> {
        let (log, lines) = LineLog::open(&Self::path(store, target))?;
        let mut j = Journal {
            log,
            experiments: HashMap::new(),
            runs: HashMap::new(),
            deleted_experiments: HashSet::new(),
            versions: HashSet::new(),
            models: HashSet::new(),
            logged: HashMap::new(),
            linked: HashSet::new(),
        };
        for line in &lines {
            j.apply(&line.split('\t').collect::<Vec<_>>());
        }
        Ok(j)
    }

    /// Applies one entry to the state (unknown or torn entries are ignored: a torn last line is
    /// a step that did not complete).
    fn apply(&mut self, f: &[&str]) {
        match f {
            ["E", src, dst, created] => {
                self.experiments
                    .insert(src.to_string(), (dst.to_string(), *created == "1"));
            }
            ["S", src, dst] => {
                self.runs.insert(
                    src.to_string(),
                    RunEntry {
                        target: dst.to_string(),
                        done: false,
                        parent_pending: false,
                    },
                );
            }
            ["R", src, dst, pending] => {
                self.runs.insert(
                    src.to_string(),
                    RunEntry {
                        target: dst.to_string(),
                        done: true,
                        parent_pending: *pending == "1",
                    },
                );
            }
            ["X", src] if self.runs.get(*src).is_some_and(|r| !r.done) => {
                self.runs.remove(*src);
            }
            ["P", src] => {
                if let Some(r) = self.runs.get_mut(*src) {
                    r.parent_pending = false;
                }
            }
            ["D", src] => {
                self.deleted_experiments.insert(src.to_string());
            }
            ["V", model, version] => {
                self.versions
                    .insert((model.to_string(), version.to_string()));
            }
            ["M", model] => {
                self.models.insert(model.to_string());
            }
            ["l", src, dst] => {
                self.logged
                    .insert(src.to_string(), (dst.to_string(), false));
            }
            ["L", src, dst] => {
                self.logged.insert(src.to_string(), (dst.to_string(), true));
            }
            ["O", run] => {
                self.linked.insert(run.to_string());
            }
            _ => {}
        }
    }

    /// Records an entry (fields joined by tabs) durably and applies it.
    pub(crate) fn record(&mut self, fields: &[&str]) -> anyhow::Result<()> {
        self.log.append(&fields.join("\t"))?;
        self.apply(fields);
        Ok(())
    }

    /// The target id of a source logged model exported completely.
    pub(crate) fn target_model(&self, src: &str) -> Option<&str> {
        self.logged
            .get(src)
            .filter(|(_, done)| *done)
            .map(|(t, _)| t.as_str())
    }

    /// The target id of a source run exported completely.
    pub(crate) fn target_run(&self, src: &str) -> Option<&str> {
        self.runs
            .get(src)
            .filter(|r| r.done)
            .map(|r| r.target.as_str())
    }
}

/// 32 hex digits naming a target.
pub(crate) fn digest(target: &str) -> String {
    blake3::hash(target.trim_end_matches('/').as_bytes()).to_hex()[..32].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    #[test]
    fn entries_survive_reopening_and_a_torn_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:5000";
        let mut j = Journal::open(dir.path(), url).unwrap();
        j.record(&["E", "1", "7", "1"]).unwrap();
        j.record(&["S", "a", "x"]).unwrap();
        j.record(&["S", "b", "y"]).unwrap();
        j.record(&["R", "b", "y", "1"]).unwrap();
        j.record(&["P", "b"]).unwrap();
        j.record(&["V", "fraud", "2"]).unwrap();
        j.record(&["S", "c", "z"]).unwrap();
        j.record(&["X", "c"]).unwrap();
        j.record(&["X", "b"]).unwrap(); // a complete run is not discarded
        drop(j);
        let mut f = OpenOptions::new()
            .append(true)
            .open(Journal::path(dir.path(), url))
            .unwrap();
        f.write_all(b"R\ta\tx\t1").unwrap(); // cut off before its newline
        let mut j = Journal::open(dir.path(), &format!("{url}/")).unwrap();
        assert!(!j.runs["a"].done, "a torn entry does not count");
        j.record(&["M", "fraud"]).unwrap();
        let j = Journal::open(dir.path(), url).unwrap();
        assert!(
            j.models.contains("fraud"),
            "the entry after a torn one is whole"
        );
        assert_eq!(j.experiments["1"], ("7".to_string(), true));
        assert!(!j.runs["a"].done, "a torn entry does not count");
        assert_eq!(j.target_run("b"), Some("y"));
        assert!(!j.runs.contains_key("c"), "discarded");
        assert!(!j.runs["b"].parent_pending);
        assert!(j.versions.contains(&("fraud".into(), "2".into())));
        assert!(Journal::open(dir.path(), "http://other:5000")
            .unwrap()
            .runs
            .is_empty());
    }
}
