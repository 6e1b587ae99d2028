//! Columns of metric points of one series, and the orders MLflow defines on them.

use std::cmp::Ordering;
use std::sync::Arc;

use crate::ops::PointExtras;

/// The "latest value" order: greatest `(step, timestamp, value)` wins (MLflow's
/// `_update_latest_metrics_if_necessary`). NaN is ordered by IEEE total order.
pub(crate) fn latest_order(a: &(i64, i64, f64), b: &(i64, i64, f64)) -> Ordering {
    a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.total_cmp(&b.2))
}

/// Points of one series as columns. Storage order is `(step, timestamp, value)`; MLflow's history
/// order is `(timestamp, step, value)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Points {
    pub(crate) step: Vec<i64>,
    pub(crate) timestamp: Vec<i64>,
    pub(crate) value: Vec<f64>,
    /// Per point, its model/dataset references; empty when no point of the series has any.
    pub(crate) extras: Vec<Option<Arc<PointExtras>>>,
}

impl Points {
    /// Number of points.
    pub(crate) fn len(&self) -> usize {
        self.step.len()
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.step.is_empty()
    }

    /// The storage-order key of point `i`.
    pub(crate) fn key(&self, i: usize) -> (i64, i64, f64) {
        (self.step[i], self.timestamp[i], self.value[i])
    }

    /// The extras of point `i`.
    pub(crate) fn extra(&self, i: usize) -> Option<&Arc<PointExtras>> {
        self.extras.get(i).and_then(|e| e.as_ref())
    }

    /// Appends one point.
    pub(crate) fn push(&mut self, step: i64, ts: i64, value: f64, extra: Option<Arc<PointExtras>>) {
        if extra.is_some() && self.extras.len() < self.step.len() {
            self.extras.resize(self.step.len(), None);
        }
        self.step.push(step);
        self.timestamp.push(ts);
        self.value.push(value);
        if !self.extras.is_empty() || extra.is_some() {
            self.extras.push(extra);
        }
    }

    /// Appends all points of `other`.
    pub(crate) fn extend(&mut self, other: &Points) {
        if !other.extras.is_empty() && self.extras.len() < self.step.len() {
            self.extras.resize(self.step.len(), None);
        }
        let had_extras = !self.extras.is_empty();
        self.step.extend_from_slice(&other.step);
        self.timestamp.extend_from_slice(&other.timestamp);
        self.value.extend_from_slice(&other.value);
        if !other.extras.is_empty() {
            self.extras.extend_from_slice(&other.extras);
        } else if had_extras {
            self.extras.resize(self.step.len(), None);
        }
    }

    /// Appends all points of `other`, taking its columns as they are when `self` is empty.
    pub(crate) fn append(&mut self, other: Points) {
        if self.is_empty() {
            *self = other;
        } else {
            self.extend(&other);
        }
    }

    /// Whether the points are strictly increasing in storage order (sorted, no duplicates).
    pub(crate) fn is_strictly_sorted(&self) -> bool {
        (1..self.len()).all(|i| latest_order(&self.key(i - 1), &self.key(i)).is_lt())
    }

    /// Whether timestamps never decrease along the current order.
    pub(crate) fn timestamps_sorted(&self) -> bool {
        self.timestamp.windows(2).all(|w| w[0] <= w[1])
    }

    /// The indexes of the points ordered by `cmp`, without exact duplicates of
    /// (step, timestamp, value) (MLflow's primary key), keeping the first.
    fn sorted_unique(&self, cmp: impl Fn(usize, usize) -> Ordering) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.len()).collect();
        idx.sort_by(|&a, &b| cmp(a, b));
        idx.dedup_by(|b, a| {
            self.step[*a] == self.step[*b]
                && self.timestamp[*a] == self.timestamp[*b]
                && self.value[*a].to_bits() == self.value[*b].to_bits()
        });
        idx
    }

    /// Sorts into storage order `(step, timestamp, value)`, dropping exact duplicates.
    pub(crate) fn sort_storage_order(&mut self) {
        if !self.is_strictly_sorted() {
            let idx = self.sorted_unique(|a, b| latest_order(&self.key(a), &self.key(b)));
            *self = self.take(&idx);
        }
    }

    /// The history-order key of point `i`.
    fn history_key(&self, i: usize) -> (i64, i64, f64) {
        (self.timestamp[i], self.step[i], self.value[i])
    }

    /// Sorts into MLflow history order `(timestamp, step, value)`, dropping exact duplicates.
    pub(crate) fn sort_history_order(&mut self) {
        let sorted = (1..self.len())
            .all(|i| latest_order(&self.history_key(i - 1), &self.history_key(i)).is_lt());
        if !sorted {
            let idx =
                self.sorted_unique(|a, b| latest_order(&self.history_key(a), &self.history_key(b)));
            *self = self.take(&idx);
        }
    }

    /// The points at `idx`, in that order.
    pub(crate) fn take(&self, idx: &[usize]) -> Points {
        Points {
            step: idx.iter().map(|&i| self.step[i]).collect(),
            timestamp: idx.iter().map(|&i| self.timestamp[i]).collect(),
            value: idx.iter().map(|&i| self.value[i]).collect(),
            extras: if self.extras.is_empty() {
                Vec::new()
            } else {
                idx.iter().map(|&i| self.extras[i].clone()).collect()
            },
        }
    }

    /// The points in `range`.
    pub(crate) fn slice(&self, range: std::ops::Range<usize>) -> Points {
        Points {
            step: self.step[range.clone()].to_vec(),
            timestamp: self.timestamp[range.clone()].to_vec(),
            value: self.value[range.clone()].to_vec(),
            extras: if self.extras.is_empty() {
                Vec::new()
            } else {
                self.extras[range].to_vec()
            },
        }
    }
}

/// The rows MLflow's bulk-interval sampling keeps out of `n` rows in storage order: the first row
/// of each of `max` NTILE buckets, with the last row always kept (it replaces the last bucket's
/// row when all `max` are taken). Ascending, at most `max` rows (`max` ≥ 1).
pub(crate) fn ntile_positions(n: u64, max: u64) -> Vec<u64> {
    if n <= max {
        return (0..n).collect();
    }
    let (size, rem) = (n / max, n % max);
    let mut picks: Vec<u64> = (0..max).map(|b| b * size + b.min(rem)).collect();
    if picks.last() != Some(&(n - 1)) {
        picks.pop();
        picks.push(n - 1);
    }
    picks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntile_matches_mlflow_example() {
        assert_eq!(ntile_positions(10, 5), vec![0, 2, 4, 6, 9]);
        assert_eq!(ntile_positions(3, 5), vec![0, 1, 2]);
        assert_eq!(ntile_positions(11, 5), vec![0, 3, 5, 7, 10]);
        assert_eq!(ntile_positions(5, 1), vec![4]);
        assert_eq!(ntile_positions(0, 3), Vec::<u64>::new());
    }

    #[test]
    fn sorting_dedups_exact_duplicates_only() {
        let mut p = Points::default();
        for (s, t, v) in [
            (2, 1, 1.0),
            (1, 5, 2.0),
            (2, 1, 1.0),
            (1, 5, f64::NAN),
            (1, 5, 2.0),
        ] {
            p.push(s, t, v, None);
        }
        p.sort_storage_order();
        assert_eq!(p.step, vec![1, 1, 2]);
        assert!(p.value[1].is_nan());
        p.sort_history_order();
        assert_eq!(p.timestamp, vec![1, 5, 5]);
    }
}
