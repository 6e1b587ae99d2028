//! Reading a running MLflow tracking server through its REST API, whatever its backend store:
//! `experiments/search` and `runs/search` (deleted ones included), `metrics/get-history`
//! paged key by key, `artifacts/list` walked directory by directory, artifact bytes through
//! the server's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>` for
//! `mlflow-artifacts:/` URIs, else `/get-artifact`), and the registry
//! (`registered-models/search` with aliases, `model-versions/search`).
//!
//! What REST does not show: a run's `deleted_time` (a deleted run gets the import's time) and
//! deleted model versions (the next version number is one above the highest live one). A
//! metric value comes as a JSON number or, for NaN and ±Inf, as the strings protobuf's JSON
//! writes (`"NaN"`, `"Infinity"`, `"-Infinity"`); MLflow's SQL store answers ±Inf as
//! ±1.7976931348623157e308, which is imported as it comes.
//!
//! Credentials as the MLflow client reads them: `MLFLOW_TRACKING_USERNAME` and
//! `MLFLOW_TRACKING_PASSWORD` (HTTP basic), else `MLFLOW_TRACKING_TOKEN` (bearer).

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context};
use quiver_store::{
    Dataset, DatasetInput, ImportLoggedModel, ImportModelVersion, ImportRegisteredModel,
    LifecycleStage, LoggedModelStatus, Metric, ModelOutput, Param, RunStatus, Stage, Tag,
};
use serde_json::{json, Value};

use super::mlruns::numeric_order;
use super::source::{
    ModelPoints, PointReader, Source, SourceExperiment, SourceFile, SourceLoggedModel, SourceRun,
};
use crate::admin::percent_encode;
use crate::mlflow_rest::{is_code, value_of_json, MlflowRest, Retry};

/// Points asked for per `metrics/get-history` page (the MLflow client asks for 25,000).
const HISTORY_PAGE: usize = 25_000;
/// Runs asked for per `runs/search` page (the server's default and the client's).
const RUNS_PAGE: usize = 1_000;
/// Experiment ids per `runs/search` request.
const EXPERIMENTS_PER_SEARCH: usize = 50;

/// Percent-encodes each segment of a `/`-separated path.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(percent_encode)
        .collect::<Vec<_>>()
        .join("/")
}

/// The path, under the server, of the artifact `rel` of a run whose artifact URI is `uri`:
/// through the artifact proxy for `mlflow-artifacts:` URIs (`mlflow-artifacts:/1/r/artifacts`
/// or `mlflow-artifacts://host:port/1/r/artifacts`, which the server serves itself), else
/// through `/get-artifact`, which reads the run's artifact store on the server's side.
fn artifact_path(uri: &str, run_id: &str, rel: &str) -> String {
    if let Some(rest) = uri.strip_prefix("mlflow-artifacts:") {
        let rest = match rest.strip_prefix("//") {
            Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
            None => rest,
        };
        let root = rest.trim_matches('/');
        let full = if root.is_empty() {
            rel.to_string()
        } else {
            format!("{root}/{rel}")
        };
        return format!("/api/2.0/mlflow-artifacts/artifacts/{}", encode_path(&full));
    }
    format!(
        "/get-artifact?path={}&run_uuid={}",
        percent_encode(rel),
        percent_encode(run_id)
    )
}

/// A field of a JSON object as text (`""` when missing; numbers as written).
fn text(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => String::new(),
    }
}

/// A field that holds a whole number (as a JSON number or numeric string).
fn number(v: &Value, key: &str) -> anyhow::Result<Option<i64>> {
    match &v[key] {
        Value::Null => Ok(None),
        Value::Number(n) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| anyhow!("`{key}` is {n}, not a whole number")),
        Value::String(s) => s
            .parse()
            .map(Some)
            .map_err(|_| anyhow!("`{key}` is {s:?}, not a whole number")),
        other => bail!("`{key}` is {other}, not a whole number"),
    }
}

/// An array of `{key, value}` objects as tags.
fn tags(v: &Value) -> Vec<Tag> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|t| Tag::new(text(t, "key"), text(t, "value")))
                .collect()
        })
        .unwrap_or_default()
}

fn lifecycle(v: &Value) -> LifecycleStage {
    match v["lifecycle_stage"].as_str() {
        Some("deleted") => LifecycleStage::Deleted,
        _ => LifecycleStage::Active,
    }
}

/// A logged model of a `logged-models/search` answer; its metrics go into `points`.
fn logged_model(m: &Value, points: &mut ModelPoints) -> anyhow::Result<SourceLoggedModel> {
    let info = &m["info"];
    let model_id = text(info, "model_id");
    for p in m["data"]["metrics"].as_array().into_iter().flatten() {
        let value = value_of_json(&p["value"])
            .with_context(|| format!("a metric of logged model {model_id}: {p} has no value"))?;
        let optional = |k: &str| p[k].as_str().filter(|s| !s.is_empty()).map(str::to_string);
        points.add(
            &text(p, "run_id"),
            &text(p, "key"),
            number(p, "timestamp")?.unwrap_or(0),
            number(p, "step")?.unwrap_or(0),
            value,
            model_id.clone(),
            optional("dataset_name"),
            optional("dataset_digest"),
        );
    }
    Ok(SourceLoggedModel {
        model: ImportLoggedModel {
            experiment_id: text(info, "experiment_id"),
            name: text(info, "name"),
            status: LoggedModelStatus::parse(&text(info, "status"))
                .unwrap_or(LoggedModelStatus::Pending),
            status_message: text(info, "status_message"),
            model_type: text(info, "model_type"),
            source_run_id: text(info, "source_run_id"),
            creation_time: number(info, "creation_timestamp_ms")?.unwrap_or(0),
            last_updated_time: number(info, "last_updated_timestamp_ms")?.unwrap_or(0),
            tags: tags(&info["tags"]),
            params: tags(&m["data"]["params"])
                .into_iter()
                .map(|t| Param::new(t.key, t.value))
                .collect(),
            model_id,
        },
        deleted: false,
        artifact_uri: text(info, "artifact_uri"),
    })
}

fn experiment(v: &Value) -> anyhow::Result<SourceExperiment> {
    Ok(SourceExperiment {
        id: text(v, "experiment_id"),
        name: text(v, "name"),
        stage: lifecycle(v),
        creation_time: number(v, "creation_time")?.unwrap_or(0),
        last_update_time: number(v, "last_update_time")?.unwrap_or(0),
        tags: tags(&v["tags"]),
    })
}

/// A run of a `runs/search` answer, and the keys of its metrics.
fn run(v: &Value) -> anyhow::Result<(SourceRun, Vec<String>)> {
    let info = &v["info"];
    let data = &v["data"];
    let mut id = text(info, "run_id");
    if id.is_empty() {
        id = text(info, "run_uuid");
    }
    if id.is_empty() {
        bail!("a run without a run_id: {info}");
    }
    let run_tags = tags(&data["tags"]);
    let mut name = text(info, "run_name");
    if name.is_empty() {
        if let Some(t) = run_tags.iter().find(|t| t.key == "mlflow.runName") {
            name = t.value.clone();
        }
    }
    let status = info["status"].as_str().unwrap_or("FINISHED");
    let params = data["params"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| Param::new(text(p, "key"), text(p, "value")))
                .collect()
        })
        .unwrap_or_default();
    let mut inputs = Vec::new();
    for i in v["inputs"]["dataset_inputs"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let d = &i["dataset"];
        let optional = |key: &str| d[key].as_str().map(str::to_string);
        inputs.push(DatasetInput {
            tags: tags(&i["tags"]),
            dataset: Dataset {
                name: text(d, "name"),
                digest: text(d, "digest"),
                source_type: text(d, "source_type"),
                source: text(d, "source"),
                schema: optional("schema"),
                profile: optional("profile"),
            },
        });
    }
    inputs.sort_by(|a, b| {
        (&a.dataset.name, &a.dataset.digest).cmp(&(&b.dataset.name, &b.dataset.digest))
    });
    let mut keys: Vec<String> = data["metrics"]
        .as_array()
        .map(|a| a.iter().map(|m| text(m, "key")).collect())
        .unwrap_or_default();
    keys.sort();
    keys.dedup();
    // MLflow 3: the logged models it produced and used (imported when the source's logged
    // models are; see `Source::logged_models`).
    let outputs = v["outputs"]["model_outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| ModelOutput {
            model_id: text(o, "model_id"),
            step: number(o, "step").ok().flatten().unwrap_or(0),
        })
        .collect();
    let model_inputs = v["inputs"]["model_inputs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| text(m, "model_id"))
        .collect();
    let run = SourceRun {
        outputs,
        model_inputs,
        name,
        experiment_id: text(info, "experiment_id"),
        user_id: text(info, "user_id"),
        status: RunStatus::parse(status)
            .with_context(|| format!("run {id}: status {status:?} is not MLflow's"))?,
        start_time: number(info, "start_time")?.unwrap_or(0),
        end_time: number(info, "end_time")?,
        stage: lifecycle(info),
        deleted_time: None,
        artifact_uri: text(info, "artifact_uri"),
        tags: run_tags,
        params,
        inputs,
        id,
    };
    Ok((run, keys))
}

/// A point of a `metrics/get-history` answer.
fn point(key: &str, v: &Value) -> anyhow::Result<Metric> {
    let value = value_of_json(&v["value"])
        .with_context(|| format!("a point of {key}: {v} has no value"))?;
    Ok(Metric::new(
        key.to_string(),
        value,
        number(v, "timestamp")?.unwrap_or(0),
        number(v, "step")?.unwrap_or(0),
    ))
}

fn model_version(v: &Value) -> anyhow::Result<ImportModelVersion> {
    let version = text(v, "version");
    let stage = text(v, "current_stage");
    Ok(ImportModelVersion {
        version: version
            .parse()
            .map_err(|_| anyhow!("version {version:?} is not a number"))?,
        creation_time: number(v, "creation_timestamp")?.unwrap_or(0),
        last_updated_time: number(v, "last_updated_timestamp")?.unwrap_or(0),
        user_id: text(v, "user_id"),
        stage: Stage::parse(&stage).unwrap_or(Stage::None),
        description: text(v, "description"),
        source: text(v, "source"),
        run_id: text(v, "run_id"),
        run_link: text(v, "run_link"),
        tags: tags(&v["tags"]),
    })
}

/// Reads the pages of a search: calls `page` with each page token (none first) and collects
/// what `items` takes from each answer, until the server gives no `next_page_token`.
fn pages(
    mut page: impl FnMut(Option<&str>) -> anyhow::Result<Value>,
    field: &str,
    mut each: impl FnMut(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut token: Option<String> = None;
    loop {
        let answer = page(token.as_deref())?;
        for item in answer[field].as_array().into_iter().flatten() {
            each(item)?;
        }
        match answer["next_page_token"].as_str() {
            Some(t) if !t.is_empty() && Some(t) != token.as_deref() => token = Some(t.to_string()),
            _ => return Ok(()),
        }
    }
}

/// A running MLflow server as an import source.
#[derive(Debug)]
pub(crate) struct Server {
    client: MlflowRest,
    version: Option<String>,
    experiments: Vec<SourceExperiment>,
    runs: Vec<SourceRun>,
    /// The metric keys of each run, by run id.
    metric_keys: HashMap<String, Vec<String>>,
    /// The logged models (live ones: REST does not show deleted ones).
    logged: Vec<SourceLoggedModel>,
    /// The points logged for them.
    model_points: ModelPoints,
}

impl Server {
    /// Reads the experiments and runs of the server at `url`, with credentials from the
    /// environment as the MLflow client takes them.
    pub(crate) fn open(url: &str) -> anyhow::Result<Server> {
        let client = MlflowRest::new(url).map_err(|e| {
            if url.trim().to_ascii_lowercase().starts_with("https://") {
                e.context("import over http://, or from the server's database file (sqlite:///path/mlflow.db)")
            } else {
                e
            }
        })?;
        // Only for the first line printed: any failure is no version.
        let version = client.version();
        let mut server = Server {
            client,
            version,
            experiments: Vec::new(),
            runs: Vec::new(),
            metric_keys: HashMap::new(),
            logged: Vec::new(),
            model_points: ModelPoints::default(),
        };
        server.read_experiments()?;
        server.read_runs()?;
        server.read_logged_models()?;
        Ok(server)
    }

    /// Reads the logged models (MLflow 3's `logged-models/search`; a server without the route
    /// has none) and the metrics recorded against them, to put back on the run points.
    fn read_logged_models(&mut self) -> anyhow::Result<()> {
        let ids: Vec<String> = self.experiments.iter().map(|e| e.id.clone()).collect();
        let client = &self.client;
        let (mut models, mut points) = (Vec::new(), ModelPoints::default());
        for chunk in ids.chunks(EXPERIMENTS_PER_SEARCH) {
            let read = pages(
                |token| {
                    let mut body = json!({"experiment_ids": chunk, "max_results": 50});
                    if let Some(t) = token {
                        body["page_token"] = json!(t);
                    }
                    client.post("logged-models/search", &body, Retry::Safe)
                },
                "models",
                |m| {
                    models.push(logged_model(m, &mut points)?);
                    Ok(())
                },
            );
            match read {
                Ok(()) => {}
                Err(e) if is_code(&e, "ENDPOINT_NOT_FOUND") || is_code(&e, "NOT_FOUND") => {
                    break; // an MLflow 2 server: no logged models
                }
                Err(e) => return Err(e.context("searching the logged models")),
            }
        }
        models.sort_by(|a, b| {
            (a.model.creation_time, &a.model.model_id)
                .cmp(&(b.model.creation_time, &b.model.model_id))
        });
        models.dedup_by(|a, b| a.model.model_id == b.model.model_id);
        self.logged = models;
        self.model_points = points;
        Ok(())
    }

    fn read_experiments(&mut self) -> anyhow::Result<()> {
        let client = &self.client;
        let mut out = Vec::new();
        pages(
            |token| {
                let mut body = json!({"max_results": 1000, "view_type": "ALL"});
                if let Some(t) = token {
                    body["page_token"] = json!(t);
                }
                client.post("experiments/search", &body, Retry::Safe)
            },
            "experiments",
            |e| {
                out.push(experiment(e)?);
                Ok(())
            },
        )?;
        out.sort_by(|a, b| numeric_order(&a.id, &b.id));
        self.experiments = out;
        Ok(())
    }

    fn read_runs(&mut self) -> anyhow::Result<()> {
        let ids: Vec<String> = self.experiments.iter().map(|e| e.id.clone()).collect();
        let client = &self.client;
        let mut runs = Vec::new();
        let mut keys = HashMap::new();
        for chunk in ids.chunks(EXPERIMENTS_PER_SEARCH) {
            pages(
                |token| {
                    let mut body = json!({
                        "experiment_ids": chunk,
                        "run_view_type": "ALL",
                        "max_results": RUNS_PAGE,
                    });
                    if let Some(t) = token {
                        body["page_token"] = json!(t);
                    }
                    client.post("runs/search", &body, Retry::Safe)
                },
                "runs",
                |r| {
                    let (run, run_keys) = run(r)?;
                    keys.insert(run.id.clone(), run_keys);
                    runs.push(run);
                    Ok(())
                },
            )?;
        }
        runs.sort_by(|a, b| {
            numeric_order(&a.experiment_id, &b.experiment_id)
                .then(a.start_time.cmp(&b.start_time))
                .then(a.id.cmp(&b.id))
        });
        runs.dedup_by(|a, b| a.id == b.id);
        self.runs = runs;
        self.metric_keys = keys;
        Ok(())
    }
}

/// Reads one page after another of every history of run `run_id` (keys in order), calling
/// `page` with the key and the page's points.
fn fetch_history(
    client: &MlflowRest,
    run_id: &str,
    keys: &[String],
    page: &mut dyn FnMut(&str, Vec<Metric>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    for key in keys {
        let mut token: Option<String> = None;
        loop {
            let mut path = format!(
                "/api/2.0/mlflow/metrics/get-history?run_id={}&metric_key={}&max_results={HISTORY_PAGE}",
                percent_encode(run_id),
                percent_encode(key)
            );
            if let Some(t) = &token {
                path.push_str("&page_token=");
                path.push_str(&percent_encode(t));
            }
            let answer = client.get_path(&path)?;
            let points = answer["metrics"]
                .as_array()
                .map(|a| a.iter().map(|m| point(key, m)).collect())
                .unwrap_or(Ok(Vec::new()))
                .with_context(|| format!("the history of {key} of run {run_id}"))?;
            page(key, points)?;
            match answer["next_page_token"].as_str() {
                Some(t) if !t.is_empty() && Some(t) != token.as_deref() => {
                    token = Some(t.to_string())
                }
                _ => break,
            }
        }
    }
    Ok(())
}

/// Runs whose histories are fetched at once, ahead of the one being imported: an
/// `mlflow server` answers with 4 worker processes by default.
const FETCHERS: usize = 4;
/// Pages of a run fetched ahead and held until its turn.
const PAGES_AHEAD: usize = 2;

/// A page of history: the key and its points.
type Page = anyhow::Result<(String, Vec<Metric>)>;

/// Reads metric histories from the server, key by key, page by page; told the runs to come
/// ([`PointReader::will_read`]), it fetches up to [`FETCHERS`] of them at once on threads of
/// its own, each at most [`PAGES_AHEAD`] pages ahead of the import.
///
/// A backend may answer a point more than once (MLflow's file store keeps every logged line);
/// MLflow's SQL store and Quiver keep one, so a repeat is dropped here, as the file-store
/// source does. That takes a set of the points of the key being read (about 50 bytes a point).
struct HistoryReader {
    client: MlflowRest,
    metric_keys: Arc<HashMap<String, Vec<String>>>,
    /// The pages of runs being fetched ahead, by run id.
    ahead: HashMap<String, Receiver<Page>>,
    /// Those runs in the order given.
    order: VecDeque<String>,
    /// Tells the fetchers to end (the reader is gone).
    stop: Arc<AtomicBool>,
    /// The points logged for logged models.
    models: ModelPoints,
}

impl HistoryReader {
    fn new(
        client: MlflowRest,
        metric_keys: HashMap<String, Vec<String>>,
        models: ModelPoints,
    ) -> HistoryReader {
        HistoryReader {
            client,
            metric_keys: Arc::new(metric_keys),
            ahead: HashMap::new(),
            order: VecDeque::new(),
            stop: Arc::new(AtomicBool::new(false)),
            models,
        }
    }
}

impl Drop for HistoryReader {
    fn drop(&mut self) {
        // The receivers go with the reader: a fetcher's next send fails, it sees the flag
        // and ends.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Drops repeated points of one key and gathers the rest into batches.
struct Batcher<'a> {
    batch: usize,
    buf: Vec<Metric>,
    key: String,
    seen: HashSet<(i64, i64, u64)>,
    each: &'a mut dyn FnMut(Vec<Metric>) -> anyhow::Result<()>,
}

impl Batcher<'_> {
    fn add(&mut self, key: &str, points: Vec<Metric>) -> anyhow::Result<()> {
        if key != self.key {
            key.clone_into(&mut self.key);
            self.seen.clear();
        }
        for p in points {
            let bits = if p.value.is_nan() {
                f64::NAN.to_bits()
            } else {
                p.value.to_bits()
            };
            if !self.seen.insert((p.timestamp, p.step, bits)) {
                continue;
            }
            self.buf.push(p);
            if self.buf.len() >= self.batch {
                let full =
                    std::mem::replace(&mut self.buf, Vec::with_capacity(self.batch.min(65_536)));
                (self.each)(full)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        (self.each)(self.buf)
    }
}

impl PointReader for HistoryReader {
    fn will_read(&mut self, run_ids: &[String]) {
        let mut queue = VecDeque::new();
        for id in run_ids {
            if self.metric_keys.get(id).is_some_and(|k| !k.is_empty()) {
                let (tx, rx) = sync_channel::<Page>(PAGES_AHEAD);
                queue.push_back((id.clone(), tx));
                self.ahead.insert(id.clone(), rx);
                self.order.push_back(id.clone());
            }
        }
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..FETCHERS.min(run_ids.len()) {
            let (queue, client) = (Arc::clone(&queue), self.client.clone());
            let (keys, stop) = (Arc::clone(&self.metric_keys), Arc::clone(&self.stop));
            std::thread::spawn(move || loop {
                // Runs are taken in order, so the run being imported always has a fetcher.
                let next = queue.lock().map(|mut q| q.pop_front());
                let Ok(Some((run_id, tx))) = next else {
                    return;
                };
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let read = fetch_history(&client, &run_id, &keys[&run_id], &mut |key, points| {
                    tx.send(Ok((key.to_string(), points)))
                        .map_err(|_| anyhow!("the import stopped reading run {run_id}"))
                });
                if let Err(e) = read {
                    let _ = tx.send(Err(e));
                }
            });
        }
    }

    fn metrics(
        &mut self,
        run_id: &str,
        batch: usize,
        each: &mut dyn FnMut(Vec<Metric>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        // The models (and datasets) the points were logged for go back on them.
        let models = &self.models;
        let mut attach = |mut points: Vec<Metric>| {
            models.attach(run_id, &mut points);
            each(points)
        };
        let mut batcher = Batcher {
            batch,
            buf: Vec::with_capacity(batch.min(65_536)),
            key: String::new(),
            seen: HashSet::new(),
            each: &mut attach,
        };
        if self.ahead.contains_key(run_id) {
            // Runs given before this one and not asked for are not wanted: dropping their
            // pages frees their fetchers.
            while let Some(id) = self.order.pop_front() {
                if id == run_id {
                    break;
                }
                self.ahead.remove(&id);
            }
        }
        if let Some(rx) = self.ahead.remove(run_id) {
            // Fetched ahead: its pages until the fetcher is done with it.
            for page in rx {
                let (key, points) = page?;
                batcher.add(&key, points)?;
            }
        } else if let Some(keys) = self.metric_keys.get(run_id) {
            fetch_history(&self.client, run_id, keys, &mut |key, points| {
                batcher.add(key, points)
            })?;
        }
        batcher.finish()
    }
}

impl Source for Server {
    fn describe(&self) -> String {
        match &self.version {
            Some(v) => format!("{}: MLflow server {v}", self.client.url()),
            None => format!("{}: MLflow server", self.client.url()),
        }
    }

    fn identity(&self) -> &str {
        self.client.url()
    }

    fn experiments(&self) -> &[SourceExperiment] {
        &self.experiments
    }

    fn runs(&self) -> &[SourceRun] {
        &self.runs
    }

    /// Unknown: the server has no cheap count of points.
    fn point_count(&self) -> anyhow::Result<Option<u64>> {
        Ok(None)
    }

    fn point_reader(&self) -> anyhow::Result<Box<dyn PointReader>> {
        Ok(Box::new(HistoryReader::new(
            self.client.clone(),
            self.metric_keys.clone(),
            self.model_points.clone(),
        )))
    }

    fn logged_models(&self) -> anyhow::Result<Vec<SourceLoggedModel>> {
        Ok(self.logged.clone())
    }

    /// Through the artifact proxy for `mlflow-artifacts:` locations, else through the
    /// logged model's own artifact routes (which read any artifact store on the server's side).
    fn model_artifact_files(&self, model: &SourceLoggedModel) -> anyhow::Result<Vec<SourceFile>> {
        let base = self.client.url();
        if let Some(rest) = model.artifact_uri.strip_prefix("mlflow-artifacts:") {
            let rest = match rest.strip_prefix("//") {
                Some(hosted) => hosted.split_once('/').map_or("", |(_, p)| p),
                None => rest,
            };
            let root = rest.trim_matches('/');
            return Ok(self
                .client
                .walk_proxied(root)?
                .into_iter()
                .map(|(rel, size)| SourceFile {
                    location: format!(
                        "{base}/api/2.0/mlflow-artifacts/artifacts/{}",
                        encode_path(&format!("{root}/{rel}"))
                    ),
                    size,
                    rel,
                })
                .collect());
        }
        let id = percent_encode(&model.model.model_id);
        let (mut out, mut dirs) = (Vec::new(), vec![String::new()]);
        while let Some(dir) = dirs.pop() {
            let listing = self.client.get_path(&format!(
                "/api/2.0/mlflow/logged-models/{id}/artifacts/directories?artifact_directory_path={}",
                percent_encode(&dir)
            ))?;
            for f in listing["files"].as_array().into_iter().flatten() {
                let rel = text(f, "path");
                if rel.is_empty() || rel.split('/').any(|s| s == "..") {
                    bail!("logged model {id}: the server lists an artifact {rel:?}");
                }
                if f["is_dir"].as_bool().unwrap_or(false) {
                    dirs.push(rel);
                } else {
                    out.push(SourceFile {
                        location: format!(
                            "{base}/ajax-api/2.0/mlflow/logged-models/{id}/artifacts/files?artifact_file_path={}",
                            percent_encode(&rel)
                        ),
                        size: number(f, "file_size")?.unwrap_or(0).max(0) as u64,
                        rel,
                    });
                }
            }
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn artifact_files(&self, run: &SourceRun) -> anyhow::Result<Vec<SourceFile>> {
        let mut out = Vec::new();
        let mut dirs = vec![String::new()];
        while let Some(dir) = dirs.pop() {
            pages(
                |token| {
                    let mut path = format!(
                        "/api/2.0/mlflow/artifacts/list?run_id={}",
                        percent_encode(&run.id)
                    );
                    if !dir.is_empty() {
                        path.push_str("&path=");
                        path.push_str(&percent_encode(&dir));
                    }
                    if let Some(t) = token {
                        path.push_str("&page_token=");
                        path.push_str(&percent_encode(t));
                    }
                    self.client
                        .get_path(&path)
                        .with_context(|| format!("listing the artifacts of run {}", run.id))
                },
                "files",
                |f| {
                    let rel = text(f, "path");
                    // Run-relative paths; a server that answers names only gets them joined.
                    let rel = if dir.is_empty() || rel.starts_with(&format!("{dir}/")) {
                        rel
                    } else {
                        format!("{dir}/{rel}")
                    };
                    if rel.is_empty() || rel == dir || rel.split('/').any(|s| s == "..") {
                        bail!("run {}: the server lists an artifact {rel:?}", run.id);
                    }
                    if f["is_dir"].as_bool().unwrap_or(false) {
                        dirs.push(rel);
                    } else {
                        out.push(SourceFile {
                            location: format!(
                                "{}{}",
                                self.client.url(),
                                artifact_path(&run.artifact_uri, &run.id, &rel)
                            ),
                            size: number(f, "file_size")?.unwrap_or(0).max(0) as u64,
                            rel,
                        });
                    }
                    Ok(())
                },
            )?;
        }
        out.sort_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out)
    }

    fn open_artifact(&self, file: &SourceFile) -> anyhow::Result<Box<dyn Read + Send>> {
        let path = file
            .location
            .strip_prefix(self.client.url())
            .with_context(|| format!("{} is not on {}", file.location, self.client.url()))?;
        self.client.open(path)
    }

    fn registered_models(&self) -> anyhow::Result<Vec<ImportRegisteredModel>> {
        let mut models: Vec<ImportRegisteredModel> = Vec::new();
        let mut aliases: HashMap<String, Vec<(String, u64)>> = HashMap::new();
        pages(
            |token| {
                let mut path =
                    "/api/2.0/mlflow/registered-models/search?max_results=1000".to_string();
                if let Some(t) = token {
                    path.push_str("&page_token=");
                    path.push_str(&percent_encode(t));
                }
                self.client.get_path(&path)
            },
            "registered_models",
            |m| {
                let name = text(m, "name");
                let mut pairs = Vec::new();
                for a in m["aliases"].as_array().into_iter().flatten() {
                    if let Ok(v) = text(a, "version").parse::<u64>() {
                        pairs.push((text(a, "alias"), v));
                    }
                }
                aliases.insert(name.clone(), pairs);
                models.push(ImportRegisteredModel {
                    name,
                    creation_time: number(m, "creation_timestamp")?.unwrap_or(0),
                    last_updated_time: number(m, "last_updated_timestamp")?.unwrap_or(0),
                    description: text(m, "description"),
                    tags: tags(&m["tags"]),
                    ..Default::default()
                });
                Ok(())
            },
        )?;
        let mut versions: HashMap<String, Vec<ImportModelVersion>> = HashMap::new();
        pages(
            |token| {
                let mut path =
                    "/api/2.0/mlflow/model-versions/search?max_results=10000".to_string();
                if let Some(t) = token {
                    path.push_str("&page_token=");
                    path.push_str(&percent_encode(t));
                }
                self.client.get_path(&path)
            },
            "model_versions",
            |v| {
                let name = text(v, "name");
                let version =
                    model_version(v).with_context(|| format!("a version of model {name}"))?;
                versions.entry(name).or_default().push(version);
                Ok(())
            },
        )?;
        for m in &mut models {
            let mut vs = versions.remove(&m.name).unwrap_or_default();
            vs.sort_by_key(|v| v.version);
            vs.dedup_by_key(|v| v.version);
            // Deleted versions are not shown: the next number is above the highest live one.
            m.next_version = vs.last().map_or(1, |v| v.version + 1);
            let live: HashSet<u64> = vs.iter().map(|v| v.version).collect();
            m.aliases = aliases
                .remove(&m.name)
                .unwrap_or_default()
                .into_iter()
                .filter(|(_, v)| live.contains(v))
                .collect();
            m.aliases.sort();
            m.versions = vs;
        }
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_uris_map_to_the_proxy_or_get_artifact() {
        let r = "0123abcd";
        assert_eq!(
            artifact_path("mlflow-artifacts:/1/0123abcd/artifacts", r, "notes/a b.txt"),
            "/api/2.0/mlflow-artifacts/artifacts/1/0123abcd/artifacts/notes/a%20b.txt"
        );
        assert_eq!(
            artifact_path("mlflow-artifacts://h:5000/2/x/artifacts/", r, "f"),
            "/api/2.0/mlflow-artifacts/artifacts/2/x/artifacts/f"
        );
        assert_eq!(
            artifact_path("s3://bucket/1/x/artifacts", r, "d/f?.txt"),
            "/get-artifact?path=d%2Ff%3F.txt&run_uuid=0123abcd"
        );
        assert_eq!(
            artifact_path("file:///data/1/x/artifacts", r, "f"),
            "/get-artifact?path=f&run_uuid=0123abcd"
        );
    }

    #[test]
    fn nan_and_infinities_decode_as_protobuf_writes_them() {
        let history: Value = serde_json::from_str(
            r#"{"metrics": [
                {"key": "m", "value": "NaN", "timestamp": 1, "step": 0},
                {"key": "m", "value": "Infinity", "timestamp": 2, "step": 1},
                {"key": "m", "value": "-Infinity", "timestamp": "3", "step": "-2"},
                {"key": "m", "value": 1.7976931348623157e+308, "timestamp": 4, "step": 3},
                {"key": "m", "value": 0.1, "timestamp": 5}
            ]}"#,
        )
        .unwrap();
        let points: Vec<Metric> = history["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| point("m", v).unwrap())
            .collect();
        assert!(points[0].value.is_nan());
        assert_eq!(points[1].value, f64::INFINITY);
        assert_eq!(
            (points[2].value, points[2].timestamp, points[2].step),
            (f64::NEG_INFINITY, 3, -2)
        );
        assert_eq!(points[3].value, f64::MAX);
        assert_eq!((points[4].value, points[4].step), (0.1, 0));
        assert!(point("m", &json!({"key": "m", "value": "x", "timestamp": 1})).is_err());
        assert!(point("m", &json!({"key": "m", "timestamp": 1})).is_err());
    }

    #[test]
    fn a_run_decodes_with_its_params_tags_inputs_and_metric_keys() {
        let v: Value = serde_json::from_str(
            r#"{"info": {"run_uuid": "r1", "experiment_id": "3", "run_name": "",
                         "user_id": "ann", "status": "FAILED", "start_time": 10,
                         "end_time": 20, "artifact_uri": "mlflow-artifacts:/3/r1/artifacts",
                         "lifecycle_stage": "deleted"},
                "data": {"metrics": [{"key": "loss", "value": "NaN", "timestamp": 1, "step": 0},
                                     {"key": "acc", "value": 0.5, "timestamp": 1, "step": 0}],
                         "params": [{"key": "lr", "value": "0.1"}],
                         "tags": [{"key": "mlflow.runName", "value": "old name"}]},
                "inputs": {"dataset_inputs": [{"tags": [{"key": "mlflow.data.context",
                                                         "value": "training"}],
                                               "dataset": {"name": "wine", "digest": "d4",
                                                           "source_type": "local",
                                                           "source": "{}", "schema": "{\"c\":3}"}}]}}"#,
        )
        .unwrap();
        let (run, keys) = run(&v).unwrap();
        assert_eq!(run.id, "r1");
        assert_eq!(run.name, "old name");
        assert_eq!(run.experiment_id, "3");
        assert_eq!(run.status, RunStatus::Failed);
        assert_eq!((run.start_time, run.end_time), (10, Some(20)));
        assert_eq!(run.stage, LifecycleStage::Deleted);
        assert_eq!(run.params, vec![Param::new("lr", "0.1")]);
        assert_eq!(run.tags, vec![Tag::new("mlflow.runName", "old name")]);
        assert_eq!(run.inputs.len(), 1);
        assert_eq!(run.inputs[0].dataset.schema.as_deref(), Some("{\"c\":3}"));
        assert_eq!(run.inputs[0].dataset.profile, None);
        assert_eq!(
            run.inputs[0].tags,
            vec![Tag::new("mlflow.data.context", "training")]
        );
        assert_eq!(keys, vec!["acc", "loss"]);
        let running = json!({"info": {"run_id": "r2", "status": "RUNNING", "start_time": 1}});
        assert_eq!(super::run(&running).unwrap().0.end_time, None);
        assert!(super::run(&json!({"info": {"status": "RUNNING"}})).is_err());
        assert!(super::run(&json!({"info": {"run_id": "r", "status": "DONE"}})).is_err());
    }

    #[test]
    fn repeated_points_of_a_key_are_dropped_and_batches_stay_small() {
        let mut got: Vec<Vec<Metric>> = Vec::new();
        let mut each = |b: Vec<Metric>| {
            got.push(b);
            Ok(())
        };
        let mut b = Batcher {
            batch: 2,
            buf: Vec::new(),
            key: String::new(),
            seen: HashSet::new(),
            each: &mut each,
        };
        let m = |k: &str, v: f64, t: i64| Metric::new(k, v, t, 0);
        b.add(
            "a",
            vec![m("a", f64::NAN, 1), m("a", 0.5, 1), m("a", f64::NAN, 1)],
        )
        .unwrap();
        b.add("a", vec![m("a", 0.5, 1), m("a", 0.5, 2)]).unwrap();
        b.add("b", vec![m("b", 0.5, 1)]).unwrap();
        b.finish().unwrap();
        let sizes: Vec<usize> = got.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![2, 2]);
        let points: Vec<(String, i64)> = got
            .into_iter()
            .flatten()
            .map(|p| (p.key, p.timestamp))
            .collect();
        assert_eq!(
            points,
            vec![
                ("a".into(), 1),
                ("a".into(), 1),
                ("a".into(), 2),
                ("b".into(), 1)
            ]
        );
    }

    #[test]
    fn search_pages_follow_the_token_until_it_ends() {
        let answers = [
            json!({"runs": [1, 2], "next_page_token": "a"}),
            json!({"runs": [3], "next_page_token": "b"}),
            json!({"runs": [4], "next_page_token": ""}),
        ];
        let mut asked = Vec::new();
        let mut got = Vec::new();
        pages(
            |t| {
                asked.push(t.map(str::to_string));
                Ok(answers[asked.len() - 1].clone())
            },
            "runs",
            |v| {
                got.push(v.as_i64().unwrap());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(got, vec![1, 2, 3, 4]);
        assert_eq!(asked, vec![None, Some("a".into()), Some("b".into())]);
    }
}
