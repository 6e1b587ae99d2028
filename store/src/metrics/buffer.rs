//! The in-memory part of the metric store: points logged since the last flush, grouped by series.
//!
//! Each series keeps its own columns (plain vectors that become Arrow arrays without a copy at
//! flush time), so that a read of one series never touches another's points.

use std::collections::HashMap;
use std::sync::Arc;

use super::points::Points;
use crate::ops::{LogBatch, PointExtras};

/// Points not yet in a Parquet segment.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    series: HashMap<u64, Points>,
    points: usize,
    /// Every op up to this LSN is in the buffer or in a segment.
    pub(crate) max_lsn: u64,
}

impl Buffer {
    /// Adds the points of one logged batch.
    pub(crate) fn append(&mut self, lsn: u64, batch: &LogBatch) {
        let extras: Vec<Arc<PointExtras>> = batch.extras.iter().cloned().map(Arc::new).collect();
        for p in &batch.points {
            let id = batch.series[p.series as usize].id;
            let extra = (p.extra > 0).then(|| extras[p.extra as usize - 1].clone());
            self.series
                .entry(id)
                .or_default()
                .push(p.step, p.timestamp, p.value, extra);
        }
        self.points += batch.points.len();
        self.max_lsn = self.max_lsn.max(lsn);
    }

    /// Number of points held.
    pub(crate) fn len(&self) -> usize {
        self.points
    }

    /// Whether no point is held.
    pub(crate) fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// The points of one series, in logging order.
    pub(crate) fn series(&self, id: u64) -> Option<&Points> {
        self.series.get(&id)
    }

    /// Copies of all series, sorted (for writing a segment from a frozen buffer still being read).
    pub(crate) fn sorted_copy(&self) -> Vec<(u64, Points)> {
        let mut all: Vec<(u64, Points)> =
            self.series.iter().map(|(id, p)| (*id, p.clone())).collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        for (_, p) in &mut all {
            p.sort_storage_order();
        }
        all
    }
}
