//! The source's metric points, read on a thread of their own while the store writes the
//! previous batch: reading SQLite and writing the store each take about half the time of an
//! import, so they overlap. Batches come in run order, each run's followed by its end.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::anyhow;
use quiver_store::{Metric, IMPORT_BATCH};

use super::sqlite::MlflowDb;

/// Batches read ahead of the store: bounds the memory held (a few batches of 50,000 points).
const AHEAD: usize = 3;

/// What the reader sends.
#[derive(Debug)]
pub(crate) enum Feed {
    /// Points of the current run.
    Points(Vec<Metric>),
    /// The current run has no more points (or reading them failed).
    End(anyhow::Result<()>),
}

/// The reader: batches of the runs `run_ids`, in that order, from the database at `path`.
#[derive(Debug)]
pub(crate) struct Reader {
    rx: Receiver<Feed>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading.
    pub(crate) fn start(path: PathBuf, run_ids: Vec<String>) -> Reader {
        let (tx, rx) = sync_channel(AHEAD);
        let thread = std::thread::spawn(move || {
            let db = match MlflowDb::open(&path) {
                Ok(db) => db,
                Err(e) => {
                    let _ = tx.send(Feed::End(Err(e)));
                    return;
                }
            };
            for id in run_ids {
                let read = db.metrics(&id, IMPORT_BATCH, |batch| {
                    tx.send(Feed::Points(batch))
                        .map_err(|_| anyhow!("the import stopped"))
                });
                if tx.send(Feed::End(read)).is_err() {
                    return;
                }
            }
        });
        Reader {
            rx,
            thread: Some(thread),
        }
    }

    /// The next batch of the current run, or `None` at its end.
    pub(crate) fn next(&self) -> anyhow::Result<Option<Vec<Metric>>> {
        match self.rx.recv() {
            Ok(Feed::Points(batch)) => Ok(Some(batch)),
            Ok(Feed::End(result)) => result.map(|()| None),
            Err(_) => Err(anyhow!("the database reader stopped")),
        }
    }

    /// Skips what is left of the current run (after a failure), so the next run starts clean.
    pub(crate) fn skip_run(&self) {
        while let Ok(Feed::Points(_)) = self.rx.recv() {}
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Dropping the receiver first makes a blocked sender fail and the thread end.
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
