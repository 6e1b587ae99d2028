//! The record of an import in progress: the runs imported completely (and the experiments it
//! created, as `experiment:<id>`), one entry per line in
//! `<store>/import/<source digest>.done`, appended and fsynced as each run completes. A run in
//! the store but not in the journal was cut off (Ctrl-C, kill -9) and is imported again from
//! the start; a run in the journal is skipped. So an import can be repeated and resumed.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// The runs done so far, and the file that records them.
#[derive(Debug)]
pub(crate) struct Journal {
    path: PathBuf,
    done: HashSet<String>,
    file: Option<File>,
}

impl Journal {
    /// The journal of importing `source` (an absolute path or URL) into the store at `store`.
    pub(crate) fn open(store: &Path, source: &str) -> anyhow::Result<Journal> {
        let digest = blake3::hash(source.as_bytes()).to_hex();
        let path = store.join("import").join(format!("{}.done", &digest[..32]));
        let done = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Journal {
            path,
            done,
            file: None,
        })
    }

    /// Whether run `id` was imported completely.
    pub(crate) fn is_done(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    /// Records run `id` as imported completely (durably).
    pub(crate) fn mark_done(&mut self, id: &str) -> anyhow::Result<()> {
        if self.file.is_none() {
            let dir = self.path.parent().expect("the journal is in a directory");
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            self.file = Some(f);
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(format!("{id}\n").as_bytes())?;
        f.sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        self.done.insert(id.to_string());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_marked_done_is_done_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::open(dir.path(), "sqlite:///a.db").unwrap();
        assert!(!j.is_done("r1"));
        j.mark_done("r1").unwrap();
        j.mark_done("r2").unwrap();
        let again = Journal::open(dir.path(), "sqlite:///a.db").unwrap();
        assert!(again.is_done("r1") && again.is_done("r2"));
        // Another source has its own journal.
        assert!(!Journal::open(dir.path(), "sqlite:///b.db")
            .unwrap()
            .is_done("r1"));
    }
}
