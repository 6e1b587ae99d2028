//! The source's metric points, read on a thread of their own while the store writes the
//! previous batch: reading the source and writing the store each take about half the time of an
//! import, so they overlap. Batches come in run order, each run's followed by its end.

use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

use anyhow::anyhow;
use quiver_store::{Metric, IMPORT_BATCH};

use super::source::PointReader;

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

/// The reader: batches of the runs it was given, in that order.
#[derive(Debug)]
pub(crate) struct Reader {
    rx: Receiver<Feed>,
    thread: Option<JoinHandle<()>>,
}

impl Reader {
    /// Starts reading the runs `run_ids` with `source`.
    pub(crate) fn start(mut source: Box<dyn PointReader>, run_ids: Vec<String>) -> Reader {
        let (tx, rx) = sync_channel(AHEAD);
        source.will_read(&run_ids);
        let thread = std::thread::spawn(move || {
            for id in run_ids {
                let read = source.metrics(&id, IMPORT_BATCH, &mut |batch| {
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
            Err(_) => Err(anyhow!("the source reader stopped")),
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
