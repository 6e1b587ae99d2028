//! Routes of metric reads: `metrics/get-history` (paged), `metrics/get-history-bulk-interval`
//! (sampled, several runs), the web UI's `ajax-api/.../metrics/get-history-bulk`, and Quiver's
//! columnar `quiver/metrics/sampled` that Studio's charts draw from.
//!
//! Histories can hold millions of points, so responses are written straight from the
//! [`MetricHistory`] columns into one buffer (no `serde_json::Value` per point), on the blocking
//! pool next to the store read.

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use quiver_store::{MetricHistory, Store};

use super::runs::search::invalid_max_results;
use super::{mlflow, quiver};
use crate::error::{ApiError, ApiResult};
use crate::json::{json_response, put, put_double};
use crate::wire::Fields;
use crate::{blocking, AppState};

/// Most runs in one bulk request.
const MAX_RUNS_PER_BULK_REQUEST: usize = 100;
/// Most points per run of `get-history-bulk-interval` (and its default).
const MAX_RESULTS_PER_RUN: i64 = 2500;
/// Most points of `get-history-bulk` (and its default).
const MAX_HISTORY_BULK_RESULTS: i64 = 25_000;

/// Registers this module's routes.
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let r = mlflow(router, "2.0", "/metrics/get-history", get(get_history));
    let r = mlflow(
        r,
        "2.0",
        "/metrics/get-history-bulk-interval",
        get(get_history_bulk_interval),
    );
    let r = quiver(r, "/metrics/sampled", get(get_sampled));
    // Not a proto RPC: the web UI's endpoint, served under /ajax-api only.
    r.route(
        "/ajax-api/2.0/mlflow/metrics/get-history-bulk",
        get(get_history_bulk),
    )
}

/// Appends the points of `h` as metric objects, each preceded by a comma unless it is the first
/// element of the enclosing array (`*first`). With `run_id`, each point carries it and only the
/// `MetricWithRunId` fields; without, points carry their model and dataset.
fn put_points(buf: &mut Vec<u8>, h: &MetricHistory, run_id: Option<&str>, first: &mut bool) {
    let mut key = Vec::with_capacity(h.key().len() + 2);
    put(&mut key, h.key());
    let run = run_id.map(|r| {
        let mut v = Vec::with_capacity(r.len() + 2);
        put(&mut v, r);
        v
    });
    buf.reserve(h.len() * (key.len() + run.as_ref().map_or(0, Vec::len) + 80));
    let (values, timestamps, steps) = (h.values(), h.timestamps(), h.steps());
    for i in 0..h.len() {
        if !std::mem::take(first) {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"key\":");
        buf.extend_from_slice(&key);
        buf.extend_from_slice(b",\"value\":");
        put_double(buf, values[i]);
        buf.extend_from_slice(b",\"timestamp\":");
        put(buf, &timestamps[i]);
        buf.extend_from_slice(b",\"step\":");
        put(buf, &steps[i]);
        match &run {
            Some(run) => {
                buf.extend_from_slice(b",\"run_id\":");
                buf.extend_from_slice(run);
            }
            None => {
                if let Some(m) = h.model_id(i) {
                    buf.extend_from_slice(b",\"model_id\":");
                    put(buf, m);
                }
                let (name, digest) = h.dataset(i);
                if let Some(n) = name {
                    buf.extend_from_slice(b",\"dataset_name\":");
                    put(buf, n);
                }
                if let Some(d) = digest {
                    buf.extend_from_slice(b",\"dataset_digest\":");
                    put(buf, d);
                }
            }
        }
        buf.push(b'}');
    }
}

/// The body of a `get-history` page: `{"metrics": [...], "next_page_token": ...}`, with empty
/// and unset fields omitted.
pub(crate) fn history_page_json(h: &MetricHistory, next_page_token: Option<&str>) -> Vec<u8> {
    let mut buf = Vec::new();
    buf.push(b'{');
    if !h.is_empty() {
        buf.extend_from_slice(b"\"metrics\":[");
        put_points(&mut buf, h, None, &mut true);
        buf.push(b']');
    }
    if let Some(token) = next_page_token {
        if !h.is_empty() {
            buf.push(b',');
        }
        buf.extend_from_slice(b"\"next_page_token\":");
        put(&mut buf, token);
    }
    buf.push(b'}');
    buf
}

/// The request of `metrics/get-history`: run id, metric key, page size, page token.
pub(crate) fn get_history_request(
    f: &Fields,
) -> ApiResult<(String, String, Option<u64>, Option<String>)> {
    let run_id = f.run_id()?;
    let key = f.req_str("metric_key")?;
    let max_results = match f.opt_i64("max_results")? {
        None => None,
        Some(n) if n > 0 => Some(n as u64),
        Some(n) => return Err(invalid_max_results(n, "It must be a positive integer")),
    };
    let token = f.opt_str("page_token")?.filter(|t| !t.is_empty());
    Ok((run_id, key, max_results, token))
}

/// `GET metrics/get-history?run_id=&metric_key=&max_results=&page_token=` → one page of the
/// history in (timestamp, step, value) order; an unknown run gives `{}`.
async fn get_history(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let (run_id, key, max_results, token) = get_history_request(&f)?;
    let body = blocking(move || {
        let (h, next) = s
            .store
            .metric_history(&run_id, &key, token.as_deref(), max_results)?;
        Ok(history_page_json(&h, next.as_deref()))
    })
    .await?;
    Ok(json_response(body))
}

/// `GET metrics/get-history-bulk-interval?run_ids=..&metric_key=&start_step=&end_step=&max_results=`
/// → `{"metrics": [{key, value, timestamp, step, run_id}]}`: up to `max_results` sampled points
/// per run (the last one always kept), by run id, then in step order.
async fn get_history_bulk_interval(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let (run_ids, key, steps, max_results) = bulk_interval_request(&f)?;
    let body = blocking(move || {
        let mut buf = Vec::new();
        buf.push(b'{');
        let mut first = true;
        for (run_id, h) in bulk_interval(&s.store, &run_ids, &key, steps, max_results)? {
            if first {
                buf.extend_from_slice(b"\"metrics\":[");
            }
            put_points(&mut buf, &h, Some(&run_id), &mut first);
        }
        if !first {
            buf.push(b']');
        }
        buf.push(b'}');
        Ok(buf)
    })
    .await?;
    Ok(json_response(body))
}

/// `GET quiver/metrics/sampled?run_ids=..&metric_key=&start_step=&end_step=&max_results=`: the
/// sample of `get-history-bulk-interval` (same parameters, same limits), written in columns for
/// charts: `{"key": k, "series": [{"run_id": r, "steps": [..], "values": [..]}]}`, one series per
/// run that has points, steps ascending. A value that is not finite (NaN, ±Infinity) is `null`,
/// which a chart draws as a gap. About a fifth of the bytes of the MLflow answer, which repeats
/// the key, the run id and the field names in every point.
async fn get_sampled(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let (run_ids, key, steps, max_results) = bulk_interval_request(&f)?;
    let body = blocking(move || {
        let sampled = bulk_interval(&s.store, &run_ids, &key, steps, max_results)?;
        Ok(series_json(&key, &sampled))
    })
    .await?;
    Ok(json_response(body))
}

/// The body of `quiver/metrics/sampled`.
fn series_json(key: &str, sampled: &[(String, MetricHistory)]) -> Vec<u8> {
    let points: usize = sampled.iter().map(|(_, h)| h.len()).sum();
    let mut buf = Vec::with_capacity(64 + points * 24);
    buf.extend_from_slice(b"{\"key\":");
    put(&mut buf, key);
    buf.extend_from_slice(b",\"series\":[");
    for (i, (run_id, h)) in sampled.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        buf.extend_from_slice(b"{\"run_id\":");
        put(&mut buf, run_id);
        buf.extend_from_slice(b",\"steps\":");
        put(&mut buf, h.steps());
        buf.extend_from_slice(b",\"values\":[");
        for (j, v) in h.values().iter().enumerate() {
            if j > 0 {
                buf.push(b',');
            }
            if v.is_finite() {
                put(&mut buf, v);
            } else {
                buf.extend_from_slice(b"null");
            }
        }
        buf.extend_from_slice(b"]}");
    }
    buf.extend_from_slice(b"]}");
    buf
}

/// The sampled histories of `get-history-bulk-interval` (REST and GraphQL): up to `max_results`
/// points of metric `key` per run, for each run in `run_ids` that has any, in that order.
pub(crate) fn bulk_interval(
    store: &Store,
    run_ids: &[String],
    key: &str,
    steps: StepBounds,
    max_results: i64,
) -> ApiResult<Vec<(String, MetricHistory)>> {
    let mut out = Vec::with_capacity(run_ids.len());
    for run_id in run_ids {
        let h = store.sampled_metric_history(run_id, key, max_results as u64, steps)?;
        if !h.is_empty() {
            out.push((run_id.clone(), h));
        }
    }
    Ok(out)
}

/// The steps asked for, inclusive.
pub(crate) type StepBounds = Option<(i64, i64)>;

/// The request of `metrics/get-history-bulk-interval`: run ids (sorted, distinct), metric key,
/// step bounds, points per run.
pub(crate) fn bulk_interval_request(
    f: &Fields,
) -> ApiResult<(Vec<String>, String, StepBounds, i64)> {
    let mut run_ids = f.str_list("run_ids")?;
    if run_ids.is_empty() {
        return Err(f.missing("run_ids"));
    }
    if run_ids.len() > MAX_RUNS_PER_BULK_REQUEST {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulkInterval request must specify at most \
             {MAX_RUNS_PER_BULK_REQUEST} run_ids. Received {} run_ids.",
            run_ids.len()
        )));
    }
    let key = f.req_str("metric_key")?;
    let steps = match (f.opt_i64("start_step")?, f.opt_i64("end_step")?) {
        (None, None) => None,
        (Some(start), Some(end)) => {
            if start > end {
                return Err(ApiError::invalid(format!(
                    "end_step must be greater than start_step. Found start_step={start} and \
                     end_step={end}."
                )));
            }
            Some((start, end))
        }
        _ => {
            return Err(ApiError::invalid(
                "If either start step or end step are specified, both must be specified.",
            ))
        }
    };
    let max_results = f.opt_i64("max_results")?.unwrap_or(MAX_RESULTS_PER_RUN);
    if !(1..=MAX_RESULTS_PER_RUN).contains(&max_results) {
        return Err(ApiError::invalid(format!(
            "max_results must be between 1 and {MAX_RESULTS_PER_RUN}."
        )));
    }
    run_ids.sort();
    run_ids.dedup();
    Ok((run_ids, key, steps, max_results))
}

/// `GET /ajax-api/2.0/mlflow/metrics/get-history-bulk?run_id=..&metric_key=&max_results=` →
/// `{"metrics": [{key, value, timestamp, step, run_id}]}`: the histories of the runs, sorted by
/// run id, each in history order, at most `max_results` points in all.
async fn get_history_bulk(State(s): State<AppState>, f: Fields) -> ApiResult<Response> {
    let (run_ids, key, max_results) = bulk_request(&f)?;
    let body = blocking(move || {
        let mut buf = Vec::new();
        buf.extend_from_slice(b"{\"metrics\":[");
        let mut first = true;
        let mut left = max_results as u64;
        for run_id in &run_ids {
            if left == 0 {
                break;
            }
            let (h, _) = s.store.metric_history(run_id, &key, None, Some(left))?;
            left -= h.len() as u64;
            put_points(&mut buf, &h, Some(run_id), &mut first);
        }
        buf.extend_from_slice(b"]}");
        Ok(buf)
    })
    .await?;
    Ok(json_response(body))
}

/// The request of `metrics/get-history-bulk`: run ids (sorted), metric key, points in all.
pub(crate) fn bulk_request(f: &Fields) -> ApiResult<(Vec<String>, String, i64)> {
    let mut run_ids = f.str_list("run_id")?;
    if run_ids.is_empty() {
        return Err(ApiError::invalid(
            "GetMetricHistoryBulk request must specify at least one run_id.",
        ));
    }
    if run_ids.len() > MAX_RUNS_PER_BULK_REQUEST {
        return Err(ApiError::invalid(format!(
            "GetMetricHistoryBulk request cannot specify more than {MAX_RUNS_PER_BULK_REQUEST} \
             run_ids. Received {} run_ids.",
            run_ids.len()
        )));
    }
    let key = f
        .opt_str("metric_key")?
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::invalid("GetMetricHistoryBulk request must specify a metric_key.")
        })?;
    let max_results = f
        .opt_i64("max_results")?
        .unwrap_or(MAX_HISTORY_BULK_RESULTS)
        .min(MAX_HISTORY_BULK_RESULTS);
    if max_results < 1 {
        return Err(invalid_max_results(
            max_results,
            "It must be a positive integer",
        ));
    }
    run_ids.sort();
    Ok((run_ids, key, max_results))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_history_is_an_empty_object() {
        let h = MetricHistory::default();
        assert_eq!(history_page_json(&h, None), b"{}");
        assert_eq!(
            history_page_json(&h, Some("t")),
            br#"{"next_page_token":"t"}"#
        );
    }
}
