//! Reading one series across segments and buffers.
//!
//! A series is a list of parts (its rows in each segment, its points in each buffer). When the
//! parts do not overlap and timestamps never go back (the usual training curve), storage order
//! equals MLflow's history order and positions are global: a page or a sample reads only the rows
//! it returns, whatever the series length. Otherwise the series is read whole and sorted.

use std::ops::Range;
use std::sync::Arc;

use super::points::{latest_order, ntile_positions, Points};
use super::segment::{Segment, SeriesExtent};
use crate::error::Result;

/// One piece of a series.
#[derive(Debug)]
pub(crate) enum Part {
    /// Rows of a Parquet segment.
    Segment(Arc<Segment>, SeriesExtent),
    /// Points from a buffer, sorted into storage order without duplicates (shared, not copied).
    Memory(Arc<Points>),
}

impl Part {
    /// Number of points.
    pub(crate) fn len(&self) -> u64 {
        match self {
            Part::Segment(_, ext) => ext.rows,
            Part::Memory(p) => p.len() as u64,
        }
    }

    fn first(&self) -> (i64, i64, f64) {
        match self {
            Part::Segment(_, ext) => ext.first,
            Part::Memory(p) => p.key(0),
        }
    }

    fn last(&self) -> (i64, i64, f64) {
        match self {
            Part::Segment(_, ext) => ext.last,
            Part::Memory(p) => p.key(p.len() - 1),
        }
    }

    fn ts_sorted(&self) -> bool {
        match self {
            Part::Segment(_, ext) => ext.ts_sorted,
            Part::Memory(p) => p.timestamps_sorted(),
        }
    }

    /// Rows at local `ranges` (ascending, disjoint).
    fn read(&self, ranges: &[Range<u64>]) -> Result<Points> {
        match self {
            Part::Segment(seg, ext) => {
                let abs: Vec<Range<u64>> = ranges
                    .iter()
                    .map(|r| ext.start + r.start..ext.start + r.end)
                    .collect();
                seg.read_rows(&abs, ext.has_extras)
            }
            Part::Memory(p) => {
                let mut out = Points::default();
                for r in ranges {
                    out.append(p.slice(r.start as usize..r.end as usize));
                }
                Ok(out)
            }
        }
    }

    fn read_all(&self) -> Result<Points> {
        self.read(std::slice::from_ref(&(0..self.len())))
    }

    /// How many rows have a step below `step`.
    fn rows_below_step(&self, step: i64) -> Result<u64> {
        match self {
            Part::Segment(seg, ext) => seg.rows_below_step(ext, step),
            Part::Memory(p) => Ok(p.step.partition_point(|&s| s < step) as u64),
        }
    }
}

/// A consistent view of one series at one moment.
#[derive(Debug)]
pub(crate) struct SeriesView {
    parts: Vec<Part>,
    /// True when the parts' key ranges are disjoint, in storage order: no point is in two parts,
    /// so the parts can be read one by one without merging.
    disjoint: bool,
    /// True when parts are disjoint and ordered, and storage order equals history order.
    positional: bool,
}

impl SeriesView {
    /// A view over `parts` (in any order; empty parts are dropped).
    pub(crate) fn new(mut parts: Vec<Part>) -> SeriesView {
        parts.retain(|p| p.len() > 0);
        parts.sort_by(|a, b| latest_order(&a.first(), &b.first()));
        let ordered = parts.windows(2).all(|w| {
            let (a, b) = (w[0].last(), w[1].first());
            latest_order(&a, &b).is_lt() && a.1 <= b.1
        });
        let positional = ordered && parts.iter().all(Part::ts_sorted);
        SeriesView {
            parts,
            disjoint: ordered,
            positional,
        }
    }

    /// The parts, ordered by their first key.
    pub(crate) fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// Whether no point is in two parts (then each part is sorted and free of duplicates on its
    /// own, and the series is the parts one after another); otherwise only
    /// [`SeriesView::materialize`] gives the series.
    pub(crate) fn is_disjoint(&self) -> bool {
        self.disjoint
    }

    /// Number of points in all parts (duplicates across parts counted twice).
    pub(crate) fn total(&self) -> u64 {
        self.parts.iter().map(Part::len).sum()
    }

    /// Every point, sorted into storage order, deduplicated.
    pub(crate) fn materialize(&self) -> Result<Points> {
        let mut all = Points::default();
        for p in &self.parts {
            all.append(p.read_all()?);
        }
        all.sort_storage_order();
        Ok(all)
    }

    /// Reads global positions `ranges` (ascending, disjoint) of the positional view.
    fn read_global(&self, ranges: &[Range<u64>]) -> Result<Points> {
        let mut out = Points::default();
        let mut base = 0u64;
        for part in &self.parts {
            let end = base + part.len();
            let local: Vec<Range<u64>> = ranges
                .iter()
                .filter(|r| r.start < end && r.end > base)
                .map(|r| r.start.max(base) - base..r.end.min(end) - base)
                .collect();
            if !local.is_empty() {
                out.append(part.read(&local)?);
            }
            base = end;
        }
        Ok(out)
    }

    /// Up to `limit` points of MLflow's history order starting at position `offset`, and whether
    /// more follow.
    pub(crate) fn history_page(&self, offset: u64, limit: u64) -> Result<(Points, bool)> {
        if self.positional {
            let total = self.total();
            let end = offset.saturating_add(limit).min(total);
            let page = if offset < end {
                self.read_global(std::slice::from_ref(&(offset..end)))?
            } else {
                Points::default()
            };
            return Ok((page, end < total));
        }
        let mut all = self.materialize()?;
        all.sort_history_order();
        let total = all.len() as u64;
        let end = offset.saturating_add(limit).min(total);
        let start = offset.min(end);
        Ok((all.slice(start as usize..end as usize), end < total))
    }

    /// MLflow's bulk-interval sample: NTILE over the storage order of the points whose step lies
    /// in `steps` (inclusive), at most `max` points, the last one always kept.
    pub(crate) fn sampled(&self, max: u64, steps: Option<(i64, i64)>) -> Result<Points> {
        if self.positional {
            let (lo, hi) = match steps {
                None => (0, self.total()),
                Some((a, b)) => (self.rows_below(a)?, self.rows_below(b.saturating_add(1))?),
            };
            let picks = ntile_positions(hi.saturating_sub(lo), max);
            let ranges: Vec<Range<u64>> = picks.iter().map(|&p| lo + p..lo + p + 1).collect();
            return self.read_global(&coalesce(ranges));
        }
        let all = self.materialize()?;
        let (lo, hi) = match steps {
            None => (0, all.len()),
            Some((a, b)) => (
                all.step.partition_point(|&s| s < a),
                all.step.partition_point(|&s| s <= b),
            ),
        };
        let picks: Vec<usize> = ntile_positions((hi.saturating_sub(lo)) as u64, max)
            .into_iter()
            .map(|p| lo + p as usize)
            .collect();
        Ok(all.take(&picks))
    }

    /// Global count of points with step below `step` (positional views only).
    fn rows_below(&self, step: i64) -> Result<u64> {
        let mut n = 0;
        for p in &self.parts {
            n += p.rows_below_step(step)?;
        }
        Ok(n)
    }
}

/// Merges adjacent single-row ranges into runs.
fn coalesce(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => out.push(r),
        }
    }
    out
}
