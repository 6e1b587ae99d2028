//! Logging metrics (with params and tags in one atomic batch) and reading them back.

use std::collections::HashMap;

use super::runs::active_run;
use super::Store;
use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::metrics::Points;
use crate::ops::{LogBatch, Op, PointExtras, PointRecord, SeriesRef};
use crate::types::{Metric, Param, Tag};
use crate::validate;

/// Most points one history page returns when no limit is given.
pub(crate) const MAX_HISTORY_PAGE: u64 = 25_000_000;

/// Points of one metric series, as columns (cheap to produce and to serialize; no per-point
/// allocation). Index `i` of every column is the same point.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MetricHistory {
    key: String,
    points: Points,
}

impl MetricHistory {
    /// The metric's key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Steps of the points.
    pub fn steps(&self) -> &[i64] {
        &self.points.step
    }

    /// Timestamps (ms) of the points.
    pub fn timestamps(&self) -> &[i64] {
        &self.points.timestamp
    }

    /// Values of the points (NaN and ±Inf as logged).
    pub fn values(&self) -> &[f64] {
        &self.points.value
    }

    /// The model id of point `i`, if it has one.
    pub fn model_id(&self, i: usize) -> Option<&str> {
        self.points.extra(i).and_then(|e| e.model_id.as_deref())
    }

    /// The dataset (name, digest) of point `i`, if it has one.
    pub fn dataset(&self, i: usize) -> (Option<&str>, Option<&str>) {
        let e = self.points.extra(i);
        (
            e.and_then(|e| e.dataset_name.as_deref()),
            e.and_then(|e| e.dataset_digest.as_deref()),
        )
    }

    /// Point `i` as an owned [`Metric`].
    pub fn get(&self, i: usize) -> Metric {
        let e = self.points.extra(i);
        Metric {
            key: self.key.clone(),
            value: self.points.value[i],
            timestamp: self.points.timestamp[i],
            step: self.points.step[i],
            model_id: e.and_then(|e| e.model_id.clone()),
            dataset_name: e.and_then(|e| e.dataset_name.clone()),
            dataset_digest: e.and_then(|e| e.dataset_digest.clone()),
        }
    }

    /// Every point as an owned [`Metric`].
    pub fn to_metrics(&self) -> Vec<Metric> {
        (0..self.len()).map(|i| self.get(i)).collect()
    }
}

/// Encodes a history position as an opaque page token.
fn encode_token(offset: u64) -> String {
    format!("h1.{offset}")
}

fn decode_token(token: &str) -> Result<u64> {
    token
        .strip_prefix("h1.")
        .and_then(|o| o.parse().ok())
        .ok_or_else(|| Error::InvalidParameter(format!("Invalid page token: {token:?}")))
}

impl Store {
    /// Logs one metric point to an active run.
    pub fn log_metric(&self, run_id: &str, metric: &Metric) -> Result<()> {
        self.log_batch(run_id, std::slice::from_ref(metric), &[], &[])
    }

    /// Logs metrics, params and tags of an active run atomically: all of them are durable when
    /// this returns `Ok`, none of them if it fails. MLflow's limits apply (1000 metrics, 100
    /// params, 100 tags, 1000 in all); params are write-once; long param and tag values are
    /// truncated. Points keep NaN and ±Inf; exact duplicates are stored once.
    pub fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[Param],
        tags: &[Tag],
    ) -> Result<()> {
        validate::batch_limits(metrics.len(), params.len(), tags.len())?;
        check_metrics(metrics)?;
        self.inner.commit(|cat| {
            active_run(cat, run_id)?;
            Ok((batch_op(cat, run_id, metrics, params, tags)?, ()))
        })
    }

    fn series_view(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<Option<crate::metrics::read::SeriesView>> {
        validate::run_id(run_id)?;
        let Some(id) = self.inner.catalog.series_id(run_id, key)? else {
            return Ok(None);
        };
        Ok(Some(self.inner.metrics.series(id)))
    }

    /// One page of the history of metric `key` of a run, in MLflow's order (timestamp, step,
    /// value), starting where `page_token` says, at most `max_results` points (all by default).
    /// Returns the page and the token of the next one. An unknown run or key gives an empty
    /// history, as in MLflow. Only the points of the page are read when the series is in order.
    pub fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        page_token: Option<&str>,
        max_results: Option<u64>,
    ) -> Result<(MetricHistory, Option<String>)> {
        if max_results == Some(0) {
            return Err(Error::InvalidParameter(
                "max_results must be a positive integer".into(),
            ));
        }
        let offset = page_token
            .filter(|t| !t.is_empty())
            .map(decode_token)
            .transpose()?
            .unwrap_or(0);
        let empty = MetricHistory {
            key: key.to_string(),
            points: Points::default(),
        };
        let Some(view) = self.series_view(run_id, key)? else {
            return Ok((empty, None));
        };
        let limit = max_results.unwrap_or(MAX_HISTORY_PAGE);
        let (points, more) = view.history_page(offset, limit)?;
        let next = more.then(|| encode_token(offset + points.len() as u64));
        Ok((
            MetricHistory {
                key: key.to_string(),
                points,
            },
            next,
        ))
    }

    /// A sample of at most `max_results` points of metric `key` of a run, in step order, with
    /// MLflow's bulk-interval semantics: NTILE buckets over (step, timestamp, value) of the points
    /// whose step is in `steps` (inclusive), the last point always kept. Its cost follows
    /// `max_results`, not the series length, when the series is in order.
    pub fn sampled_metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: u64,
        steps: Option<(i64, i64)>,
    ) -> Result<MetricHistory> {
        if max_results == 0 {
            return Err(Error::InvalidParameter(
                "max_results must be a positive integer".into(),
            ));
        }
        if let Some((a, b)) = steps {
            if a > b {
                return Err(Error::InvalidParameter(format!(
                    "end_step must be greater than start_step. Found start_step={a} and end_step={b}."
                )));
            }
        }
        let points = match self.series_view(run_id, key)? {
            Some(view) => view.sampled(max_results, steps)?,
            None => Points::default(),
        };
        Ok(MetricHistory {
            key: key.to_string(),
            points,
        })
    }

    /// The latest value of every metric of a run (greatest step, then timestamp, then value).
    pub fn latest_metrics(&self, run_id: &str) -> Result<Vec<Metric>> {
        validate::run_id(run_id)?;
        self.inner.catalog.latest_metrics(run_id)
    }
}

/// Checks the keys and timestamps of metric points.
pub(super) fn check_metrics(metrics: &[Metric]) -> Result<()> {
    let mut checked_keys: HashMap<&str, ()> = HashMap::new();
    for m in metrics {
        if checked_keys.insert(&m.key, ()).is_none() {
            validate::entity_key("metric", &m.key)?;
        }
        validate::metric_timestamp(&m.key, m.timestamp)?;
    }
    Ok(())
}

/// The op that logs `metrics`, `params` and `tags` to run `run_id` (checked), or `None` when
/// there is nothing to log: series ids are looked up or allocated, point extras interned.
pub(super) fn batch_op(
    cat: &Catalog,
    run_id: &str,
    metrics: &[Metric],
    params: &[Param],
    tags: &[Tag],
) -> Result<Option<Op>> {
    let mut batch = LogBatch {
        run_id: run_id.to_string(),
        ..LogBatch::default()
    };
    Store::prepare_params_and_tags(cat, run_id, params, tags, &mut batch)?;
    let mut series_index: HashMap<&str, u32> = HashMap::new();
    let mut extras_index: HashMap<PointExtras, u32> = HashMap::new();
    let mut next_series = cat.next_series_id()?;
    for m in metrics {
        let series = match series_index.get(m.key.as_str()) {
            Some(i) => *i,
            None => {
                let (id, new) = match cat.series_id(run_id, &m.key)? {
                    Some(id) => (id, false),
                    None => {
                        next_series += 1;
                        (next_series - 1, true)
                    }
                };
                let i = batch.series.len() as u32;
                batch.series.push(SeriesRef {
                    key: m.key.clone(),
                    id,
                    new,
                });
                series_index.insert(&m.key, i);
                i
            }
        };
        let extra =
            if m.model_id.is_some() || m.dataset_name.is_some() || m.dataset_digest.is_some() {
                let e = PointExtras {
                    model_id: m.model_id.clone(),
                    dataset_name: m.dataset_name.clone(),
                    dataset_digest: m.dataset_digest.clone(),
                };
                let next = extras_index.len() as u32 + 1;
                *extras_index.entry(e.clone()).or_insert_with(|| {
                    batch.extras.push(e);
                    next
                })
            } else {
                0
            };
        batch.points.push(PointRecord {
            series,
            value: m.value,
            timestamp: m.timestamp,
            step: m.step,
            extra,
        });
    }
    if batch.points.is_empty() && batch.params.is_empty() && batch.tags.is_empty() {
        return Ok(None);
    }
    Ok(Some(Op::LogBatch(Box::new(batch))))
}
