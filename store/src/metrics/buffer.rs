//! The in-memory part of the metric store: points logged since the last flush, grouped by series.
//!
//! Each series keeps its own columns (plain vectors that become Arrow arrays without a copy at
//! flush time), so that a read of one series never touches another's points. A series' points
//! are sealed into shared, immutable chunks as they accumulate, so that a reader takes a
//! snapshot by cloning a few `Arc`s and copying at most one small tail, not the whole series.

use std::collections::HashMap;
use std::sync::Arc;

use super::points::{latest_order, Points};
use crate::ops::{LogBatch, PointExtras};

/// Points per sealed chunk.
const CHUNK_POINTS: usize = 16 * 1024;

/// The buffered points of one series.
#[derive(Debug, Default)]
pub(crate) struct SeriesBuffer {
    sealed: Vec<Arc<Points>>,
    tail: Points,
    /// Whether all points so far are strictly increasing in storage order (no sort needed).
    sorted: bool,
    len: usize,
}

/// A reader's copy of one series' buffered points, taken under the buffer's lock.
#[derive(Debug)]
pub(crate) struct SeriesSnapshot {
    /// Chunks in logging order (the tail last).
    pub(crate) chunks: Vec<Arc<Points>>,
    /// Whether the chunks, concatenated, are strictly increasing in storage order.
    pub(crate) sorted: bool,
}

impl SeriesBuffer {
    fn push(&mut self, step: i64, ts: i64, value: f64, extra: Option<Arc<PointExtras>>) {
        let key = (step, ts, value);
        let last = if self.tail.is_empty() {
            self.sealed.last().map(|c| c.key(c.len() - 1))
        } else {
            Some(self.tail.key(self.tail.len() - 1))
        };
        self.sorted = match last {
            None => true,
            Some(last) => self.sorted && latest_order(&last, &key).is_lt(),
        };
        self.tail.push(step, ts, value, extra);
        self.len += 1;
        if self.tail.len() >= CHUNK_POINTS {
            self.sealed.push(Arc::new(std::mem::take(&mut self.tail)));
        }
    }

    /// A snapshot for a reader: shared chunks plus a copy of the unsealed tail.
    pub(crate) fn snapshot(&self) -> SeriesSnapshot {
        let mut chunks = self.sealed.clone();
        if !self.tail.is_empty() {
            chunks.push(Arc::new(self.tail.clone()));
        }
        SeriesSnapshot {
            chunks,
            sorted: self.sorted,
        }
    }

    /// All points, sorted into storage order without duplicates.
    fn sorted_points(&self) -> Points {
        let mut all = Points::default();
        for c in &self.sealed {
            all.extend(c);
        }
        all.extend(&self.tail);
        if !self.sorted {
            all.sort_storage_order();
        }
        all
    }
}

impl SeriesSnapshot {
    /// The points as one sorted, deduplicated column set (only needed when not `sorted`).
    pub(crate) fn merged_sorted(&self) -> Points {
        let mut all = Points::default();
        for c in &self.chunks {
            all.extend(c);
        }
        all.sort_storage_order();
        all
    }
}

/// Points not yet in a Parquet segment.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    series: HashMap<u64, SeriesBuffer>,
    points: usize,
    /// Every op up to this LSN is in the buffer or in a segment.
    pub(crate) max_lsn: u64,
}

impl Buffer {
    /// Adds the points of one logged batch.
    pub(crate) fn append(&mut self, lsn: u64, batch: &LogBatch) {
        let extras: Vec<Arc<PointExtras>> = batch.extras.iter().cloned().map(Arc::new).collect();
        let mut current: Option<(u32, &mut SeriesBuffer)> = None;
        for p in &batch.points {
            // Batches usually hold long runs of one series: look it up once per run.
            let series = match current.take() {
                Some((idx, s)) if idx == p.series => s,
                _ => {
                    let id = batch.series[p.series as usize].id;
                    self.series.entry(id).or_default()
                }
            };
            let extra = (p.extra > 0).then(|| extras[p.extra as usize - 1].clone());
            series.push(p.step, p.timestamp, p.value, extra);
            current = Some((p.series, series));
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

    /// The buffered points of one series.
    pub(crate) fn series(&self, id: u64) -> Option<&SeriesBuffer> {
        self.series.get(&id).filter(|s| s.len > 0)
    }

    /// Copies of all series, by id, each sorted into storage order without duplicates (for
    /// writing a segment from a frozen buffer that readers may still be using).
    pub(crate) fn sorted_copy(&self) -> Vec<(u64, Points)> {
        let mut all: Vec<(u64, Points)> = self
            .series
            .iter()
            .map(|(id, s)| (*id, s.sorted_points()))
            .collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }
}
