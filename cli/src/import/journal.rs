//! The record of an import in progress: the runs imported completely (and the experiments it
//! created, as `experiment:<id>`), one entry per line in
//! `<store>/import/<source digest>.done`, appended and fsynced as each run completes. A run in
//! the store but not in the journal was cut off (Ctrl-C, kill -9) and is imported again from
//! the start; a run in the journal is skipped. So an import can be repeated and resumed.

use std::collections::HashSet;
use std::path::Path;

use crate::line_log::LineLog;

/// The runs done so far, and the file that records them.
#[derive(Debug)]
pub(crate) struct Journal {
    log: LineLog,
    done: HashSet<String>,
}

impl Journal {
    /// The journal of importing `source` (an absolute path or URL) into the store at `store`.
    pub(crate) fn open(store: &Path, source: &str) -> anyhow::Result<Journal> {
        let digest = blake3::hash(source.as_bytes()).to_hex();
        let path = store.join("import").join(format!("{}.done", &digest[..32]));
        let (log, lines) = LineLog::open(&path)?;
        let done = lines.into_iter().filter(|l| !l.is_empty()).collect();
        Ok(Journal { log, done })
    }

    /// Whether run `id` was imported completely.
    pub(crate) fn is_done(&self, id: &str) -> bool {
        self.done.contains(id)
    }

    /// Records run `id` as imported completely (durably).
    pub(crate) fn mark_done(&mut self, id: &str) -> anyhow::Result<()> {
        self.log.append(id)?;
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
