//! The column types of the run index: dictionary-encoded strings and latest-metric cells, each
//! stored dense (a slot per run) or sparse (a map from row to value) depending on how many runs
//! have the key.
//!
//! A key that every run has (`lr`, `loss`) is a dense vector scanned in row order; a key that a
//! few runs have (a per-run tag, a one-off param) is a small map, so an experiment with many
//! distinct keys costs memory in proportion to the values, not keys × runs.

use std::collections::HashMap;

use crate::ops::PointExtras;

/// The code of "no value" in a dense string column.
const NONE: u32 = u32::MAX;

/// Sparse columns turn dense once more than one row in this many has a value.
const DENSE_RATIO: usize = 8;

/// Row storage of one column: a slot per row, or a map for columns few rows have.
#[derive(Debug, Clone)]
enum Cells<T> {
    Dense(Vec<T>),
    Sparse(HashMap<u32, T>),
}

impl<T> Default for Cells<T> {
    fn default() -> Self {
        Cells::Sparse(HashMap::new())
    }
}

/// A string column, dictionary-encoded: each distinct value is held once and rows hold its code,
/// so an equality or `LIKE` test is decided once per distinct value, then checked per row by
/// comparing integers.
#[derive(Debug, Clone, Default)]
pub(crate) struct StrColumn {
    cells: Cells<u32>,
    dict: Vec<Box<str>>,
    lookup: HashMap<Box<str>, u32>,
}

impl StrColumn {
    /// The value of `row`.
    pub(crate) fn get(&self, row: u32) -> Option<&str> {
        self.code(row).map(|c| &*self.dict[c as usize])
    }

    /// The dictionary code of `row`'s value.
    pub(crate) fn code(&self, row: u32) -> Option<u32> {
        match &self.cells {
            Cells::Dense(v) => v.get(row as usize).copied().filter(|&c| c != NONE),
            Cells::Sparse(m) => m.get(&row).copied(),
        }
    }

    /// For every dictionary code, whether its value passes `test`.
    pub(crate) fn matching(&self, test: impl Fn(&str) -> bool) -> Vec<bool> {
        self.dict.iter().map(|v| test(v)).collect()
    }

    /// Sets (`Some`) or clears (`None`) the value of `row` in an index of `rows` rows.
    pub(crate) fn set(&mut self, row: u32, value: Option<&str>, rows: usize) {
        let code = value.map(|v| self.intern(v));
        match (&mut self.cells, code) {
            (Cells::Dense(v), Some(c)) => {
                if v.len() <= row as usize {
                    v.resize(row as usize + 1, NONE);
                }
                v[row as usize] = c;
            }
            (Cells::Dense(v), None) => {
                if let Some(slot) = v.get_mut(row as usize) {
                    *slot = NONE;
                }
            }
            (Cells::Sparse(m), Some(c)) => {
                m.insert(row, c);
                if m.len() * DENSE_RATIO > rows.max(64) {
                    let mut dense = vec![NONE; rows];
                    for (&r, &c) in m.iter() {
                        if dense.len() <= r as usize {
                            dense.resize(r as usize + 1, NONE);
                        }
                        dense[r as usize] = c;
                    }
                    self.cells = Cells::Dense(dense);
                }
            }
            (Cells::Sparse(m), None) => {
                m.remove(&row);
            }
        }
    }

    fn intern(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.lookup.get(value) {
            return c;
        }
        let c = self.dict.len() as u32;
        self.dict.push(value.into());
        self.lookup.insert(value.into(), c);
        c
    }
}

/// The latest value of one metric of a run, with the step and time it was logged at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MetricCell {
    pub(crate) value: f64,
    pub(crate) timestamp: i64,
    pub(crate) step: i64,
    /// Model and dataset of the point, when it has them (rare: boxed to keep cells small).
    pub(crate) extras: Option<Box<PointExtras>>,
}

/// The latest values of one metric key across the runs of an experiment.
#[derive(Debug, Clone, Default)]
pub(crate) struct MetricColumn {
    cells: Cells<Option<MetricCell>>,
}

impl MetricColumn {
    /// The latest point of `row`.
    pub(crate) fn get(&self, row: u32) -> Option<&MetricCell> {
        match &self.cells {
            Cells::Dense(v) => v.get(row as usize).and_then(Option::as_ref),
            Cells::Sparse(m) => m.get(&row).and_then(Option::as_ref),
        }
    }

    /// The latest value of `row`.
    pub(crate) fn value(&self, row: u32) -> Option<f64> {
        self.get(row).map(|c| c.value)
    }

    /// Stores `cell` as `row`'s latest point if it is later than the one held (MLflow's rule:
    /// greatest step, then timestamp, then value), in an index of `rows` rows. Idempotent.
    pub(crate) fn offer(&mut self, row: u32, cell: MetricCell, rows: usize) {
        let later = |held: &Option<MetricCell>| {
            held.as_ref().is_none_or(|h| {
                crate::metrics::latest_order(
                    &(cell.step, cell.timestamp, cell.value),
                    &(h.step, h.timestamp, h.value),
                )
                .is_ge()
            })
        };
        match &mut self.cells {
            Cells::Dense(v) => {
                if v.len() <= row as usize {
                    v.resize(row as usize + 1, None);
                }
                if later(&v[row as usize]) {
                    v[row as usize] = Some(cell);
                }
            }
            Cells::Sparse(m) => {
                let slot = m.entry(row).or_default();
                if later(slot) {
                    *slot = Some(cell);
                }
                if m.len() * DENSE_RATIO > rows.max(64) {
                    let mut dense = vec![None; rows];
                    for (r, c) in m.drain() {
                        if dense.len() <= r as usize {
                            dense.resize(r as usize + 1, None);
                        }
                        dense[r as usize] = c;
                    }
                    self.cells = Cells::Dense(dense);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_columns_turn_dense_and_keep_values() {
        let mut c = StrColumn::default();
        let rows = 1000;
        for r in 0..rows as u32 {
            if r % 3 == 0 {
                c.set(r, Some(if r % 2 == 0 { "even" } else { "odd" }), rows);
            }
        }
        assert!(matches!(c.cells, Cells::Dense(_)));
        assert_eq!(c.get(0), Some("even"));
        assert_eq!(c.get(3), Some("odd"));
        assert_eq!(c.get(1), None);
        assert_eq!(c.get(5000), None);
        c.set(3, None, rows);
        assert_eq!(c.get(3), None);
        assert_eq!(c.matching(|v| v.starts_with('e')), vec![true, false]);
        let mut sparse = StrColumn::default();
        sparse.set(7, Some("x"), rows);
        assert!(matches!(sparse.cells, Cells::Sparse(_)));
        assert_eq!(sparse.get(7), Some("x"));
    }

    #[test]
    fn metric_cells_keep_the_latest_point() {
        let mut m = MetricColumn::default();
        let cell = |step, value| MetricCell {
            value,
            timestamp: 1,
            step,
            extras: None,
        };
        m.offer(4, cell(5, 1.0), 10);
        m.offer(4, cell(3, 9.0), 10);
        assert_eq!(m.value(4), Some(1.0));
        m.offer(4, cell(5, 2.0), 10);
        assert_eq!(
            m.value(4),
            Some(2.0),
            "same step and time: the greater value"
        );
        assert_eq!(m.value(0), None);
    }
}
