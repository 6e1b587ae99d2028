//! Exporting one run: `runs/create` (info and tags), params and metric points through
//! `runs/log-batch` in chunks within MLflow's limits, dataset inputs through `runs/log-inputs`,
//! artifacts through the artifact proxy, then `runs/update` (status, end time) and, for a
//! deleted run, `runs/delete`.

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use quiver_store::{LifecycleStage, Metric, Run, Store};
use serde_json::{json, Value};

use crate::admin;
use crate::import::verify::SeriesSums;
use crate::mlflow_rest::{value_json, MlflowRest, Retry};

/// MLflow's limits of one `runs/log-batch` request.
pub(crate) const MAX_METRICS: usize = 1000;
/// Params per request.
pub(crate) const MAX_PARAMS: usize = 100;
/// Bytes of a request body MLflow accepts (1 MB), less room for the envelope.
pub(crate) const MAX_BODY: usize = 900_000;
/// Points read from the store at a time.
const PAGE: u64 = 100_000;

/// The tag that links a child run to its parent.
pub(crate) const PARENT_TAG: &str = "mlflow.parentRunId";

/// What exporting a run did.
#[derive(Debug, Default)]
pub(crate) struct Exported {
    /// The run's id in the target.
    pub(crate) target: String,
    /// The sums of the points sent (±Inf as MLflow's SQL stores keep them, see [`comparable`]).
    pub(crate) sums: SeriesSums,
    /// Artifact files uploaded and their bytes.
    pub(crate) files: u64,
    pub(crate) bytes: u64,
}

/// A metric value as the target will answer it: MLflow's SQL stores keep ±Inf as ±f64::MAX,
/// so both sides are compared that way.
pub(crate) fn comparable(v: f64) -> f64 {
    if v == f64::INFINITY {
        f64::MAX
    } else if v == f64::NEG_INFINITY {
        f64::MIN
    } else {
        v
    }
}

/// Accumulates `runs/log-batch` entries and sends them in requests within MLflow's limits.
#[derive(Debug)]
pub(crate) struct Batcher {
    kind: &'static str,
    limit: usize,
    entries: Vec<Value>,
    bytes: usize,
}

impl Batcher {
    /// A batcher of `kind` (`metrics`, `params` or `tags`), at most `limit` a request.
    pub(crate) fn new(kind: &'static str, limit: usize) -> Batcher {
        Batcher {
            kind,
            limit,
            entries: Vec::new(),
            bytes: 0,
        }
    }

    /// Adds an entry; returns a full request body's entries when the next one would not fit.
    pub(crate) fn push(&mut self, entry: Value) -> Option<Vec<Value>> {
        let size = entry.to_string().len() + 1;
        let full = !self.entries.is_empty()
            && (self.entries.len() == self.limit || self.bytes + size > MAX_BODY);
        let out = full.then(|| {
            self.bytes = 0;
            std::mem::take(&mut self.entries)
        });
        self.entries.push(entry);
        self.bytes += size;
        out
    }

    /// The entries left.
    pub(crate) fn rest(&mut self) -> Option<Vec<Value>> {
        self.bytes = 0;
        (!self.entries.is_empty()).then(|| std::mem::take(&mut self.entries))
    }

    /// Sends `entries` to run `run_id`.
    fn send(&self, rest: &MlflowRest, run_id: &str, entries: Vec<Value>) -> anyhow::Result<()> {
        rest.post(
            "runs/log-batch",
            &json!({"run_id": run_id, self.kind: entries}),
            Retry::Safe,
        )
        .with_context(|| format!("logging {} to run {run_id}", self.kind))?;
        Ok(())
    }
}

/// The tags a run is created with: its own, with the parent link mapped by `parent` (a source
/// run id → its target id, `None` while the parent is not exported), and without a
/// `mlflow.runName` that disagrees with the run name (MLflow refuses those). Returns the tags
/// and whether the parent link still names a source run.
pub(crate) fn creation_tags(
    run: &Run,
    parent: &dyn Fn(&str) -> Option<String>,
) -> (Vec<Value>, bool) {
    let mut pending = false;
    let tags = run
        .tags
        .iter()
        .filter(|t| !(t.key == "mlflow.runName" && t.value != run.info.run_name))
        .map(|t| {
            let value = if t.key == PARENT_TAG {
                parent(&t.value).unwrap_or_else(|| {
                    pending = true;
                    t.value.clone()
                })
            } else {
                t.value.clone()
            };
            json!({"key": t.key, "value": value})
        })
        .collect();
    (tags, pending)
}

/// The path of an artifact URI relative to a proxied artifact root (`mlflow-artifacts:/1/r/
/// artifacts` or `mlflow-artifacts://host:port/1/r/artifacts` → `1/r/artifacts`); `None` for
/// an URI the proxy does not serve (`s3://`, a local path ...).
pub(crate) fn proxied_path(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("mlflow-artifacts:")?;
    let rest = match rest.strip_prefix("//") {
        Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
        None => rest,
    };
    Some(rest.trim_matches('/').to_string())
}

/// Exports run `run` into target experiment `experiment`: everything but its parent link when
/// `parent` does not know the parent yet. `created` is called with the target id as soon as
/// the run exists there (so a cut-off export can find and discard it).
pub(crate) fn export_run(
    store: &Store,
    rest: &MlflowRest,
    run: &Run,
    experiment: &str,
    parent: &dyn Fn(&str) -> Option<String>,
    created: &mut dyn FnMut(&str) -> anyhow::Result<()>,
    bar: &ProgressBar,
) -> anyhow::Result<(Exported, bool)> {
    let info = &run.info;
    let (tags, pending) = creation_tags(run, parent);
    let mut body = json!({
        "experiment_id": experiment,
        "user_id": info.user_id,
        "start_time": info.start_time,
        "tags": tags,
    });
    if !info.run_name.is_empty() {
        body["run_name"] = json!(info.run_name);
    }
    let made = rest
        .post("runs/create", &body, Retry::NotSent)
        .context("creating the run")?;
    let target = admin::json_str(&made["run"]["info"], "run_id");
    if target.is_empty() {
        bail!("the target's answer to runs/create has no run id: {made}");
    }
    created(&target)?;
    let target_uri = admin::json_str(&made["run"]["info"], "artifact_uri");

    let mut params = Batcher::new("params", MAX_PARAMS);
    for p in &run.params {
        if let Some(b) = params.push(json!({"key": p.key, "value": p.value})) {
            params.send(rest, &target, b)?;
        }
    }
    if let Some(b) = params.rest() {
        params.send(rest, &target, b)?;
    }
    for chunk in run.dataset_inputs.chunks(1000) {
        let datasets: Vec<Value> = chunk
            .iter()
            .map(|i| {
                let d = &i.dataset;
                let mut ds = json!({"name": d.name, "digest": d.digest,
                    "source_type": d.source_type, "source": d.source});
                if let Some(s) = &d.schema {
                    ds["schema"] = json!(s);
                }
                if let Some(p) = &d.profile {
                    ds["profile"] = json!(p);
                }
                let tags: Vec<Value> = i
                    .tags
                    .iter()
                    .map(|t| json!({"key": t.key, "value": t.value}))
                    .collect();
                json!({"tags": tags, "dataset": ds})
            })
            .collect();
        rest.post(
            "runs/log-inputs",
            &json!({"run_id": target, "datasets": datasets}),
            Retry::Safe,
        )
        .context("logging dataset inputs")?;
    }

    let sums = export_points(store, rest, &info.run_id, &target, bar)?;
    let (files, bytes) = export_artifacts(store, rest, run, &target_uri)?;

    let mut update = json!({"run_id": target, "status": info.status.as_str()});
    if let Some(end) = info.end_time {
        update["end_time"] = json!(end);
    }
    rest.post("runs/update", &update, Retry::Safe)
        .context("setting the run's status")?;
    if info.lifecycle_stage == LifecycleStage::Deleted {
        rest.post("runs/delete", &json!({"run_id": target}), Retry::Safe)
            .context("deleting the run")?;
    }
    Ok((
        Exported {
            target,
            sums,
            files,
            bytes,
        },
        pending,
    ))
}

/// Sends every point of every series of source run `run_id` to target run `target`, a page of
/// the store at a time; the sums of what was sent.
fn export_points(
    store: &Store,
    rest: &MlflowRest,
    run_id: &str,
    target: &str,
    bar: &ProgressBar,
) -> anyhow::Result<SeriesSums> {
    let mut sums = SeriesSums::default();
    let mut batch = Batcher::new("metrics", MAX_METRICS);
    let mut sent = 0u64;
    let flush = |entries: Vec<Value>, sent: &mut u64| -> anyhow::Result<()> {
        let n = entries.len() as u64;
        batch_send(rest, target, entries)?;
        *sent += n;
        bar.inc(n);
        Ok(())
    };
    for latest in store.latest_metrics(run_id).map_err(admin::store_error)? {
        let key = latest.key;
        let mut token: Option<String> = None;
        loop {
            let (h, next) = store
                .metric_history(run_id, &key, token.as_deref(), Some(PAGE))
                .map_err(admin::store_error)?;
            let mut page = Vec::with_capacity(h.len());
            for i in 0..h.len() {
                let (step, ts, v) = (h.steps()[i], h.timestamps()[i], h.values()[i]);
                page.push(Metric::new(&key, comparable(v), ts, step));
                let entry =
                    json!({"key": key, "value": value_json(v), "timestamp": ts, "step": step});
                if let Some(full) = batch.push(entry) {
                    flush(full, &mut sent)?;
                }
            }
            sums.add(&page);
            match next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    if let Some(rest_) = batch.rest() {
        flush(rest_, &mut sent)?;
    }
    Ok(sums)
}

/// One `runs/log-batch` of metrics.
fn batch_send(rest: &MlflowRest, target: &str, metrics: Vec<Value>) -> anyhow::Result<()> {
    rest.post(
        "runs/log-batch",
        &json!({"run_id": target, "metrics": metrics}),
        Retry::Safe,
    )
    .with_context(|| format!("logging metrics to run {target}"))?;
    Ok(())
}

/// The store path of run `run`'s artifacts.
pub(crate) fn store_root(run: &Run) -> anyhow::Result<String> {
    proxied_path(&run.info.artifact_uri).with_context(|| {
        format!(
            "the run's artifact location {} is not in this store",
            run.info.artifact_uri
        )
    })
}

/// Every artifact file of run `run` in the store, as (path relative to the run's root, size).
pub(crate) fn store_files(store: &Store, run: &Run) -> anyhow::Result<Vec<(String, u64)>> {
    files_under(store, &store_root(run)?)
}

/// Every artifact file under store path `root`, as (path relative to it, size).
pub(crate) fn files_under(store: &Store, root: &str) -> anyhow::Result<Vec<(String, u64)>> {
    let root = root.to_string();
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(rel) = stack.pop() {
        let dir = if rel.is_empty() {
            root.clone()
        } else {
            format!("{root}/{rel}")
        };
        for e in store.list_artifacts(&dir).map_err(admin::store_error)? {
            let name = e.path.rsplit('/').next().unwrap_or(&e.path);
            let child = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if e.is_dir {
                stack.push(child);
            } else {
                out.push((child, e.size.unwrap_or(0)));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Uploads the artifacts of `run` under the target run's artifact URI; (files, bytes).
fn export_artifacts(
    store: &Store,
    rest: &MlflowRest,
    run: &Run,
    target_uri: &str,
) -> anyhow::Result<(u64, u64)> {
    upload_tree(store, rest, &store_root(run)?, target_uri)
}

/// Uploads every artifact file under store path `root` under the target's artifact URI
/// `target_uri`; (files, bytes).
pub(crate) fn upload_tree(
    store: &Store,
    rest: &MlflowRest,
    root: &str,
    target_uri: &str,
) -> anyhow::Result<(u64, u64)> {
    let files = files_under(store, root)?;
    if files.is_empty() {
        return Ok((0, 0));
    }
    let Some(dest) = proxied_path(target_uri) else {
        bail!(
            "the target stores these artifacts at {target_uri}, which its artifact proxy does \
             not serve: start the target with --serve-artifacts (the default of `mlflow server`)"
        );
    };
    let (mut n, mut bytes) = (0, 0);
    for (rel, size) in files {
        let from = format!("{root}/{rel}");
        rest.upload_with(&format!("{dest}/{rel}"), &|| {
            let (_, f) = store.open_artifact(&from).map_err(admin::store_error)?;
            Ok(Box::new(f))
        })
        .with_context(|| format!("uploading artifact {rel}"))?;
        n += 1;
        bytes += size;
    }
    Ok((n, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_count_and_size_limits() {
        let mut b = Batcher::new("metrics", MAX_METRICS);
        let mut sent = Vec::new();
        for i in 0..2500 {
            if let Some(full) = b.push(json!({"key": "m", "value": i, "timestamp": 0, "step": i})) {
                sent.push(full.len());
            }
        }
        sent.extend(b.rest().map(|r| r.len()));
        assert_eq!(sent, vec![1000, 1000, 500]);
        assert!(b.rest().is_none());

        // Long keys: the 1 MB body limit cuts first.
        let key = "k".repeat(250);
        let mut b = Batcher::new("metrics", MAX_METRICS);
        let mut sizes = Vec::new();
        for i in 0..5000 {
            let e = json!({"key": format!("{key}{i}"), "value": "NaN", "timestamp": 1, "step": i});
            if let Some(full) = b.push(e) {
                sizes.push(serde_json::to_string(&full).unwrap().len());
                assert!(full.len() <= MAX_METRICS);
            }
        }
        assert!(!sizes.is_empty() && sizes.iter().all(|&s| s <= MAX_BODY + 2));

        let mut p = Batcher::new("params", MAX_PARAMS);
        let full: Vec<usize> = (0..250)
            .filter_map(|i| p.push(json!({"key": i.to_string(), "value": ""})))
            .map(|v| v.len())
            .collect();
        assert_eq!(full, vec![100, 100]);
        assert_eq!(p.rest().map(|r| r.len()), Some(50));
    }

    #[test]
    fn proxied_paths_of_artifact_uris() {
        assert_eq!(
            proxied_path("mlflow-artifacts:/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(
            proxied_path("mlflow-artifacts://h:5000/1/abc/artifacts").as_deref(),
            Some("1/abc/artifacts")
        );
        assert_eq!(proxied_path("s3://bucket/1/abc/artifacts"), None);
        assert_eq!(proxied_path("/tmp/mlruns/1/abc/artifacts"), None);
    }

    #[test]
    fn infinities_compare_as_mlflow_keeps_them() {
        assert_eq!(comparable(f64::INFINITY), f64::MAX);
        assert_eq!(comparable(f64::NEG_INFINITY), f64::MIN);
        assert_eq!(comparable(1.5), 1.5);
        assert!(comparable(f64::NAN).is_nan());
    }
}
