//! The catalog: experiments, runs, params, tags, inputs, latest metric values, the ids of metric
//! series and the artifact index, in named trees of a key-value database.
//!
//! Keys are laid out for prefix scans: everything of a run starts with its 32-hex id and a NUL,
//! everything of an experiment with its id as 8 big-endian bytes, so "all params of run R" or "all
//! runs of experiment E" is one ordered scan.
//!
//! The catalog is state derived from the write-ahead log: [`Catalog::apply`] is the only writer,
//! and it applies [`Op`]s that were validated before they were logged.

pub(crate) mod checkpoint;
pub(crate) mod kv;
pub(crate) mod models;

use std::path::Path;
use std::sync::Arc;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::blobs::Digest;
use crate::error::{Error, Result};
use crate::ops::{LogBatch, Op};
use crate::types::{
    ArtifactEntry, Dataset, DatasetInput, Experiment, LifecycleStage, Metric, Param, Run, RunInfo,
    Tag, ViewType,
};
use kv::{Kv, Tree};

/// The tag through which MLflow also carries a run's name.
pub(crate) const RUN_NAME_TAG: &str = "mlflow.runName";

/// The tag holding a run's step key (see `quiver run --reuse`): indexed by value in the tree
/// `step_keys`, so finding the runs of a key is a probe, not a scan of every run.
pub const STEP_KEY_TAG: &str = "quiver.step.key";

const META_NEXT_EXPERIMENT: &[u8] = b"next_experiment_id";
const META_NEXT_SERIES: &[u8] = b"next_series_id";
const META_APPLIED_LSN: &[u8] = b"applied_lsn";

/// An experiment as stored (tags live in their own tree).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExperimentRecord {
    name: String,
    artifact_location: String,
    stage: LifecycleStage,
    creation_time: i64,
    last_update_time: i64,
}

/// The catalog of one store.
#[derive(Debug)]
pub(crate) struct Catalog {
    kv: Kv,
    meta: Tree,
    experiments: Tree,
    experiment_names: Tree,
    experiment_tags: Tree,
    runs: Tree,
    runs_by_experiment: Tree,
    params: Tree,
    tags: Tree,
    latest_metrics: Tree,
    series: Tree,
    series_by_id: Tree,
    datasets: Tree,
    run_inputs: Tree,
    artifacts: Tree,
    /// `<step key> NUL <run id>` for every run tagged [`STEP_KEY_TAG`].
    step_keys: Tree,
    /// Logged models, the registry and deployments.
    pub(crate) models: models::ModelTrees,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).expect("encode catalog record")
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes)
        .map_err(|e| Error::Internal(format!("undecodable catalog record: {e}")))
}

fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `run_id NUL key`: the key of a run's param, tag, latest metric or series.
fn run_key(run_id: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(run_id.len() + 1 + key.len());
    k.extend_from_slice(run_id.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `run_id NUL`: the prefix of everything of a run in one tree.
fn run_prefix(run_id: &str) -> Vec<u8> {
    run_key(run_id, "")
}

fn exp_key(id: u64, rest: &[u8]) -> Vec<u8> {
    let mut k = id.to_be_bytes().to_vec();
    k.extend_from_slice(rest);
    k
}

fn dataset_key(name: &str, digest: &str) -> Vec<u8> {
    let mut k = name.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(digest.as_bytes());
    k
}

/// An artifact index entry from its key (the path) and value (digest, size).
fn artifact_entry(key: &[u8], value: &[u8]) -> Result<ArtifactEntry> {
    let (digest, size): (Digest, u64) = dec(value)?;
    Ok(ArtifactEntry {
        path: utf8(key),
        digest,
        size,
    })
}

/// Every entry of a tree keyed `run_id NUL key`, as `(run_id, key, decoded value)`.
fn run_entries<T>(
    tree: &Tree,
    value: impl Fn(&[u8]) -> Result<T>,
) -> Result<Vec<(String, String, T)>> {
    tree.iter()
        .map(|e| {
            let (k, v) = e?;
            let nul = k.iter().position(|&b| b == 0).unwrap_or(k.len());
            let key = k.get(nul + 1..).unwrap_or_default();
            Ok((utf8(&k[..nul]), utf8(key), value(&v)?))
        })
        .collect()
}

fn u64_value(v: Option<kv::Value>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

impl Catalog {
    /// Opens the catalog database in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<Catalog> {
        Catalog::on(Kv::open(dir)?)
    }

    /// The same catalog, staged: its writes go into `overlay` (and its reads see them) until
    /// promoted into the database (see [`kv`]'s "Staged writes").
    pub(crate) fn staged(&self, overlay: Arc<kv::Overlay>) -> Result<Catalog> {
        Catalog::on(self.kv.staged(overlay))
    }

    fn on(kv: Kv) -> Result<Catalog> {
        let t = |name: &str| kv.tree(name);
        Ok(Catalog {
            meta: t("meta")?,
            experiments: t("experiments")?,
            experiment_names: t("experiment_names")?,
            experiment_tags: t("experiment_tags")?,
            runs: t("runs")?,
            runs_by_experiment: t("runs_by_experiment")?,
            params: t("params")?,
            tags: t("tags")?,
            latest_metrics: t("latest_metrics")?,
            series: t("series")?,
            series_by_id: t("series_by_id")?,
            datasets: t("datasets")?,
            run_inputs: t("run_inputs")?,
            artifacts: t("artifacts")?,
            step_keys: t("step_keys")?,
            models: models::ModelTrees::open(&kv)?,
            kv,
        })
    }

    /// The underlying database, for checkpoints.
    pub(crate) fn kv(&self) -> &Kv {
        &self.kv
    }

    /// Writes everything to disk; used before a clean close.
    pub(crate) fn flush(&self) -> Result<()> {
        self.kv.flush()
    }

    /// The LSN of the last op applied, as recorded by [`Catalog::set_applied_lsn`].
    pub(crate) fn applied_lsn(&self) -> Result<u64> {
        Ok(u64_value(self.meta.get(META_APPLIED_LSN)?))
    }

    /// Records that every op up to `lsn` is applied.
    pub(crate) fn set_applied_lsn(&self, lsn: u64) -> Result<()> {
        self.meta.insert(META_APPLIED_LSN, lsn.to_be_bytes())
    }

    /// The id the next experiment gets.
    pub(crate) fn next_experiment_id(&self) -> Result<u64> {
        Ok(u64_value(self.meta.get(META_NEXT_EXPERIMENT)?))
    }

    /// The id the next metric series gets.
    pub(crate) fn next_series_id(&self) -> Result<u64> {
        Ok(u64_value(self.meta.get(META_NEXT_SERIES)?))
    }

    // ----- reads -----

    /// The experiment with id `id`.
    pub(crate) fn experiment(&self, id: u64) -> Result<Option<Experiment>> {
        let Some(bytes) = self.experiments.get(&id.to_be_bytes())? else {
            return Ok(None);
        };
        let rec: ExperimentRecord = dec(&bytes)?;
        let mut tags = Vec::new();
        for entry in self.experiment_tags.scan_prefix(&id.to_be_bytes()) {
            let (k, v) = entry?;
            tags.push(Tag::new(utf8(&k[8..]), utf8(&v)));
        }
        Ok(Some(Experiment {
            experiment_id: id.to_string(),
            name: rec.name,
            artifact_location: rec.artifact_location,
            lifecycle_stage: rec.stage,
            creation_time: rec.creation_time,
            last_update_time: rec.last_update_time,
            tags,
        }))
    }

    /// The id of the experiment called `name` (deleted experiments included).
    pub(crate) fn experiment_id_by_name(&self, name: &str) -> Result<Option<u64>> {
        Ok(self
            .experiment_names
            .get(name.as_bytes())?
            .map(|v| u64_value(Some(v))))
    }

    /// Every experiment in `view`, by id.
    pub(crate) fn experiments(&self, view: ViewType) -> Result<Vec<Experiment>> {
        let mut out = Vec::new();
        for entry in self.experiments.iter() {
            let (k, _) = entry?;
            let id = u64_value(Some(k));
            if let Some(e) = self.experiment(id)? {
                if view.includes(e.lifecycle_stage) {
                    out.push(e);
                }
            }
        }
        Ok(out)
    }

    /// The info of run `run_id`.
    pub(crate) fn run_info(&self, run_id: &str) -> Result<Option<RunInfo>> {
        self.runs
            .get(run_id.as_bytes())?
            .map(|b| dec(&b))
            .transpose()
    }

    /// The ids of the runs of experiment `id`.
    pub(crate) fn run_ids_of_experiment(&self, id: u64) -> Result<Vec<String>> {
        self.runs_by_experiment
            .scan_prefix(&id.to_be_bytes())
            .map(|e| e.map(|(k, _)| utf8(&k[8..])))
            .collect()
    }

    /// The distinct `(name, digest, context)` of the dataset inputs of the runs of experiment
    /// `id` (context: the input's `mlflow.data.context` tag), reading each run's inputs by
    /// prefix; stops once `out` holds `limit` entries.
    pub(crate) fn dataset_uses_of_experiment(
        &self,
        id: u64,
        limit: usize,
        out: &mut std::collections::BTreeSet<(String, String, Option<String>)>,
    ) -> Result<()> {
        for run_id in self.run_ids_of_experiment(id)? {
            let prefix = run_prefix(&run_id);
            for e in self.run_inputs.scan_prefix(&prefix) {
                if out.len() >= limit {
                    return Ok(());
                }
                let (k, v) = e?;
                let (_, tags): (u64, Vec<Tag>) = dec(&v)?;
                let ds_key = &k[prefix.len()..];
                let nul = ds_key.iter().position(|&b| b == 0).unwrap_or(ds_key.len());
                let context = tags
                    .into_iter()
                    .find(|t| t.key == crate::types::DATASET_CONTEXT_TAG)
                    .map(|t| t.value);
                out.insert((
                    utf8(&ds_key[..nul]),
                    utf8(ds_key.get(nul + 1..).unwrap_or_default()),
                    context,
                ));
            }
        }
        Ok(())
    }

    /// A whole run: info, latest metrics, params, tags and dataset inputs.
    pub(crate) fn run(&self, run_id: &str) -> Result<Option<Run>> {
        let Some(info) = self.run_info(run_id)? else {
            return Ok(None);
        };
        let prefix = run_prefix(run_id);
        let strip = |k: &[u8]| utf8(&k[prefix.len()..]);
        let mut params = Vec::new();
        for e in self.params.scan_prefix(&prefix) {
            let (k, v) = e?;
            params.push(Param::new(strip(&k), utf8(&v)));
        }
        let mut tags = Vec::new();
        for e in self.tags.scan_prefix(&prefix) {
            let (k, v) = e?;
            tags.push(Tag::new(strip(&k), utf8(&v)));
        }
        let metrics = self.latest_metrics(run_id)?;
        Ok(Some(Run {
            info,
            metrics,
            params,
            tags,
            dataset_inputs: self.run_dataset_inputs(run_id)?,
            model_inputs: self.models.run_model_inputs(run_id)?,
            model_outputs: self.models.run_model_outputs(run_id)?,
        }))
    }

    /// Calls `f` with every run of experiment `id`, whole (as [`Catalog::run`] returns each), in
    /// run id order. When the experiment holds a large share of the store's runs (rebuilding a
    /// search index at 100k runs), each tree is read in one ordered pass, a merge join on the run
    /// id, instead of four prefix scans per run.
    pub(crate) fn for_each_run_of_experiment(
        &self,
        id: u64,
        mut f: impl FnMut(Run) -> Result<()>,
    ) -> Result<()> {
        let ids = self.run_ids_of_experiment(id)?;
        let total = self.runs_by_experiment.iter().count();
        if ids.len() * 4 < total {
            for run_id in ids {
                if let Some(run) = self.run(&run_id)? {
                    f(run)?;
                }
            }
            return Ok(());
        }
        let mut params = Cursor::new(&self.params);
        let mut tags = Cursor::new(&self.tags);
        let mut metrics = Cursor::new(&self.latest_metrics);
        let mut inputs = Cursor::new(&self.run_inputs);
        for run_id in ids {
            let Some(info) = self.run_info(&run_id)? else {
                continue;
            };
            let prefix = run_prefix(&run_id);
            let strip = |k: &[u8]| utf8(&k[prefix.len()..]);
            let mut run = Run {
                info,
                metrics: Vec::new(),
                params: Vec::new(),
                tags: Vec::new(),
                dataset_inputs: Vec::new(),
                model_inputs: self.models.run_model_inputs(&run_id)?,
                model_outputs: self.models.run_model_outputs(&run_id)?,
            };
            for (k, v) in params.take(&prefix)? {
                run.params.push(Param::new(strip(&k), utf8(&v)));
            }
            for (k, v) in tags.take(&prefix)? {
                run.tags.push(Tag::new(strip(&k), utf8(&v)));
            }
            for (_, v) in metrics.take(&prefix)? {
                run.metrics.push(dec(&v)?);
            }
            for (k, v) in inputs.take(&prefix)? {
                let (exp, input_tags): (u64, Vec<Tag>) = dec(&v)?;
                if let Some(ds) = self.datasets.get(&exp_key(exp, &k[prefix.len()..]))? {
                    run.dataset_inputs.push(DatasetInput {
                        tags: input_tags,
                        dataset: dec(&ds)?,
                    });
                }
            }
            f(run)?;
        }
        Ok(())
    }

    /// The latest value of every metric of a run, by key.
    pub(crate) fn latest_metrics(&self, run_id: &str) -> Result<Vec<Metric>> {
        self.latest_metrics
            .scan_prefix(&run_prefix(run_id))
            .map(|e| e.and_then(|(_, v)| dec(&v)))
            .collect()
    }

    /// The latest value of one metric of a run.
    pub(crate) fn latest_metric(&self, run_id: &str, key: &str) -> Result<Option<Metric>> {
        self.latest_metrics
            .get(&run_key(run_id, key))?
            .map(|v| dec(&v))
            .transpose()
    }

    /// The value of param `key` of a run.
    pub(crate) fn param(&self, run_id: &str, key: &str) -> Result<Option<String>> {
        Ok(self.params.get(&run_key(run_id, key))?.map(|v| utf8(&v)))
    }

    /// The value of tag `key` of a run.
    pub(crate) fn tag(&self, run_id: &str, key: &str) -> Result<Option<String>> {
        Ok(self.tags.get(&run_key(run_id, key))?.map(|v| utf8(&v)))
    }

    /// The id of a run's metric series `key`.
    pub(crate) fn series_id(&self, run_id: &str, key: &str) -> Result<Option<u64>> {
        Ok(self
            .series
            .get(&run_key(run_id, key))?
            .map(|v| u64_value(Some(v))))
    }

    /// The artifact at exactly `path`.
    pub(crate) fn artifact(&self, path: &str) -> Result<Option<ArtifactEntry>> {
        self.artifacts
            .get(path.as_bytes())?
            .map(|v| {
                let (digest, size): (Digest, u64) = dec(&v)?;
                Ok(ArtifactEntry {
                    path: path.to_string(),
                    digest,
                    size,
                })
            })
            .transpose()
    }

    /// Every artifact whose path starts with `prefix`, in path order.
    pub(crate) fn artifacts_with_prefix(
        &self,
        prefix: &str,
    ) -> impl Iterator<Item = Result<ArtifactEntry>> + use<> {
        self.artifacts
            .scan_prefix(prefix.as_bytes())
            .map(|e| e.and_then(|(k, v)| artifact_entry(&k, &v)))
    }

    /// Every artifact path whose key is `>= from`, in order (for listing a directory level by
    /// skipping whole subdirectories).
    pub(crate) fn artifacts_from(
        &self,
        from: &str,
    ) -> impl Iterator<Item = Result<ArtifactEntry>> + use<> {
        self.artifacts
            .range_from(from.as_bytes())
            .map(|e| e.and_then(|(k, v)| artifact_entry(&k, &v)))
    }

    // ----- whole-catalog scans (the SQL tables) -----

    /// Every run's info, in run id order (deleted runs included).
    pub(crate) fn all_run_infos(&self) -> Result<Vec<RunInfo>> {
        self.runs
            .iter()
            .map(|e| e.and_then(|(_, v)| dec(&v)))
            .collect()
    }

    /// Every param of every run as `(run_id, key, value)`, in (run, key) order.
    pub(crate) fn all_params(&self) -> Result<Vec<(String, String, String)>> {
        run_entries(&self.params, |v| Ok(utf8(v)))
    }

    /// Every tag of every run as `(run_id, key, value)`, in (run, key) order.
    pub(crate) fn all_tags(&self) -> Result<Vec<(String, String, String)>> {
        run_entries(&self.tags, |v| Ok(utf8(v)))
    }

    /// The latest value of every metric of every run as `(run_id, key, metric)`.
    pub(crate) fn all_latest_metrics(&self) -> Result<Vec<(String, String, Metric)>> {
        run_entries(&self.latest_metrics, dec)
    }

    /// The metric series of run `run_id` as `(key, series id)`, in key order.
    pub(crate) fn series_of_run(&self, run_id: &str) -> Result<Vec<(String, u64)>> {
        let prefix = run_prefix(run_id);
        self.series
            .scan_prefix(&prefix)
            .map(|e| e.map(|(k, v)| (utf8(&k[prefix.len()..]), u64_value(Some(v)))))
            .collect()
    }

    /// Every metric series as `(series id, run_id, key)`, in id order.
    pub(crate) fn all_series(&self) -> Result<Vec<(u64, String, String)>> {
        self.series_by_id
            .iter()
            .map(|e| {
                let (k, v) = e?;
                let (run_id, key): (String, String) = dec(&v)?;
                Ok((u64_value(Some(k)), run_id, key))
            })
            .collect()
    }

    /// The dataset inputs of run `run_id`, in (dataset name, digest) order; an input whose
    /// dataset record is missing is left out.
    pub(crate) fn run_dataset_inputs(&self, run_id: &str) -> Result<Vec<DatasetInput>> {
        let prefix = run_prefix(run_id);
        let mut out = Vec::new();
        for e in self.run_inputs.scan_prefix(&prefix) {
            let (k, v) = e?;
            let (exp, input_tags): (u64, Vec<Tag>) = dec(&v)?;
            let ds_key = &k[prefix.len()..];
            if let Some(ds) = self.datasets.get(&exp_key(exp, ds_key))? {
                out.push(DatasetInput {
                    tags: input_tags,
                    dataset: dec(&ds)?,
                });
            }
        }
        Ok(out)
    }

    /// Every dataset of every experiment as `(experiment id, dataset)`, in (experiment, name,
    /// digest) order.
    pub(crate) fn all_datasets(&self) -> Result<Vec<(u64, Dataset)>> {
        self.datasets
            .iter()
            .map(|e| {
                let (k, v) = e?;
                let id = k
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
                    .ok_or_else(|| Error::Internal("dataset key without experiment id".into()))?;
                Ok((id, dec(&v)?))
            })
            .collect()
    }

    /// Every dataset input of every run as `(run_id, experiment id, input)`, in (run, dataset
    /// name, digest) order. The dataset comes from the `datasets` tree (as in [`Catalog::run`]);
    /// an input whose dataset record is missing is left out.
    pub(crate) fn all_run_inputs(&self) -> Result<Vec<(String, u64, DatasetInput)>> {
        let mut out = Vec::new();
        for e in self.run_inputs.iter() {
            let (k, v) = e?;
            let nul = k.iter().position(|&b| b == 0).unwrap_or(k.len());
            let ds_key = k.get(nul + 1..).unwrap_or_default();
            let (exp, tags): (u64, Vec<Tag>) = dec(&v)?;
            if let Some(ds) = self.datasets.get(&exp_key(exp, ds_key))? {
                out.push((
                    utf8(&k[..nul]),
                    exp,
                    DatasetInput {
                        tags,
                        dataset: dec(&ds)?,
                    },
                ));
            }
        }
        Ok(out)
    }

    // ----- the one writer -----

    /// Applies one logged op. Ops were validated before they were logged, so this only fails on
    /// I/O or a damaged database.
    pub(crate) fn apply(&self, op: &Op) -> Result<()> {
        match op {
            Op::CreateExperiment {
                id,
                name,
                artifact_location,
                tags,
                time,
            } => {
                let rec = ExperimentRecord {
                    name: name.clone(),
                    artifact_location: artifact_location.clone(),
                    stage: LifecycleStage::Active,
                    creation_time: *time,
                    last_update_time: *time,
                };
                self.experiments.insert(id.to_be_bytes(), enc(&rec))?;
                self.experiment_names.insert(name, id.to_be_bytes())?;
                for t in tags {
                    self.experiment_tags
                        .insert(exp_key(*id, t.key.as_bytes()), &t.value)?;
                }
                if *id >= self.next_experiment_id()? {
                    self.meta
                        .insert(META_NEXT_EXPERIMENT, (id + 1).to_be_bytes())?;
                }
            }
            Op::RenameExperiment { id, name, time } => {
                self.update_experiment(*id, *time, |rec| {
                    self.experiment_names.remove(rec.name.as_bytes())?;
                    self.experiment_names.insert(name, id.to_be_bytes())?;
                    rec.name = name.clone();
                    Ok(())
                })?;
            }
            Op::SetExperimentStage { id, stage, time } => {
                let mut deleted_at = None;
                self.update_experiment(*id, *time, |rec| {
                    deleted_at = Some(rec.last_update_time);
                    rec.stage = *stage;
                    Ok(())
                })?;
                // Deleting takes the active runs along; restoring brings back the runs deleted
                // with the experiment, not those deleted on their own before.
                for run_id in self.run_ids_of_experiment(*id)? {
                    let Some(info) = self.run_info(&run_id)? else {
                        continue;
                    };
                    let follows = match stage {
                        LifecycleStage::Deleted => info.lifecycle_stage == LifecycleStage::Active,
                        LifecycleStage::Active => {
                            info.deleted_time.unwrap_or(i64::MIN) >= deleted_at.unwrap_or(i64::MIN)
                        }
                    };
                    if follows {
                        self.set_run_stage(&run_id, *stage, *time)?;
                    }
                }
            }
            Op::SetExperimentTag { id, tag, time } => {
                self.experiment_tags
                    .insert(exp_key(*id, tag.key.as_bytes()), &tag.value)?;
                self.update_experiment(*id, *time, |_| Ok(()))?;
            }
            Op::DeleteExperimentTag { id, key, time } => {
                self.experiment_tags.remove(&exp_key(*id, key.as_bytes()))?;
                self.update_experiment(*id, *time, |_| Ok(()))?;
            }
            Op::CreateRun { info, tags } => {
                self.runs.insert(&info.run_id, enc(info))?;
                let exp = info.experiment_id.parse::<u64>().unwrap_or_default();
                self.runs_by_experiment
                    .insert(exp_key(exp, info.run_id.as_bytes()), [])?;
                for t in tags {
                    self.set_run_tag(&info.run_id, &t.key, &t.value)?;
                }
            }
            Op::UpdateRun {
                run_id,
                status,
                end_time,
                run_name,
            } => {
                self.update_run(run_id, |info| {
                    if let Some(s) = status {
                        info.status = *s;
                    }
                    if let Some(t) = end_time {
                        info.end_time = Some(*t);
                    }
                    if let Some(n) = run_name {
                        info.run_name = n.clone();
                    }
                })?;
                if let Some(n) = run_name {
                    self.tags.insert(run_key(run_id, RUN_NAME_TAG), n)?;
                }
            }
            Op::SetRunStage {
                run_id,
                stage,
                time,
            } => self.set_run_stage(run_id, *stage, *time)?,
            Op::LogBatch(batch) => self.apply_batch(batch)?,
            Op::DeleteRunTag { run_id, key } => self.remove_run_tag(run_id, key)?,
            Op::LogInputs {
                run_id,
                experiment_id,
                inputs,
            } => {
                for input in inputs {
                    let ds = &input.dataset;
                    let dkey = dataset_key(&ds.name, &ds.digest);
                    let full = exp_key(*experiment_id, &dkey);
                    if !self.datasets.contains(&full)? {
                        self.datasets.insert(full, enc::<Dataset>(ds))?;
                    }
                    let mut rkey = run_prefix(run_id);
                    rkey.extend_from_slice(&dkey);
                    self.run_inputs
                        .insert(rkey, enc(&(*experiment_id, &input.tags)))?;
                }
            }
            Op::PutArtifact(entry) => {
                self.artifacts
                    .insert(&entry.path, enc(&(entry.digest, entry.size)))?;
            }
            Op::DeleteArtifacts { path } => {
                self.artifacts.remove(path.as_bytes())?;
                let dir = format!("{path}/");
                let under: Vec<_> = self
                    .artifacts
                    .scan_prefix(dir.as_bytes())
                    .map(|e| e.map(|(k, _)| k))
                    .collect::<Result<_>>()?;
                for k in under {
                    self.artifacts.remove(&k)?;
                }
            }
            Op::LoggedModel(change) => self.models.apply_logged_model(change)?,
            Op::RunModels {
                run_id,
                inputs,
                outputs,
            } => self.models.apply_run_models(run_id, inputs, outputs)?,
            Op::Registry { changes, events } => self.models.apply_registry(changes, events)?,
            Op::PurgeRuns { runs } => {
                for r in runs {
                    self.purge_run(&r.run_id, r.experiment_id)?;
                }
            }
            Op::PurgeExperiment { id } => self.purge_experiment(*id)?,
        }
        Ok(())
    }

    /// Removes everything of run `run_id` (of experiment `experiment_id`): record, params,
    /// tags, latest metrics, series ids, inputs, model links and the artifact paths under its
    /// artifact root. Its series ids are not reused; their points are dropped from segments by
    /// a rewrite that asks [`Catalog::series_exists`]. A run that is not there is a no-op.
    fn purge_run(&self, run_id: &str, experiment_id: u64) -> Result<()> {
        let Some(info) = self.run_info(run_id)? else {
            return Ok(());
        };
        // A root the store does not serve (s3:, file: ...) holds nothing here; an unparsable
        // one cannot have been written to either.
        if let Ok(Some(root)) = crate::artifact_path::served_root(&info.artifact_uri) {
            if !root.is_empty() {
                self.artifacts.remove(root.as_bytes())?;
                self.artifacts
                    .remove_prefix(format!("{root}/").as_bytes())?;
            }
        }
        self.remove_run_tag(run_id, STEP_KEY_TAG)?;
        let prefix = run_prefix(run_id);
        for (_, id) in self.series_of_run(run_id)? {
            self.series_by_id.remove(&id.to_be_bytes())?;
        }
        for tree in [
            &self.series,
            &self.params,
            &self.tags,
            &self.latest_metrics,
            &self.run_inputs,
        ] {
            tree.remove_prefix(&prefix)?;
        }
        self.models.purge_run(run_id)?;
        self.runs_by_experiment
            .remove(&exp_key(experiment_id, run_id.as_bytes()))?;
        self.runs.remove(run_id.as_bytes())?;
        Ok(())
    }

    /// Removes experiment `id` with its name, tags, datasets and every run it holds.
    fn purge_experiment(&self, id: u64) -> Result<()> {
        for run_id in self.run_ids_of_experiment(id)? {
            self.purge_run(&run_id, id)?;
        }
        if let Some(bytes) = self.experiments.get(&id.to_be_bytes())? {
            let rec: ExperimentRecord = dec(&bytes)?;
            if self.experiment_id_by_name(&rec.name)? == Some(id) {
                self.experiment_names.remove(rec.name.as_bytes())?;
            }
        }
        self.experiment_tags.remove_prefix(&id.to_be_bytes())?;
        self.datasets.remove_prefix(&id.to_be_bytes())?;
        self.experiments.remove(&id.to_be_bytes())?;
        Ok(())
    }

    /// Whether metric series `id` still belongs to a run (false once its run is purged).
    pub(crate) fn series_exists(&self, id: u64) -> Result<bool> {
        self.series_by_id.contains(&id.to_be_bytes())
    }

    /// Sets a run's tag, keeping the step-key index in step.
    fn set_run_tag(&self, run_id: &str, key: &str, value: &str) -> Result<()> {
        if key == STEP_KEY_TAG {
            self.remove_run_tag(run_id, key)?;
            self.step_keys.insert(run_key(value, run_id), [])?;
        }
        self.tags.insert(run_key(run_id, key), value)
    }

    /// Removes a run's tag, keeping the step-key index in step.
    fn remove_run_tag(&self, run_id: &str, key: &str) -> Result<()> {
        if key == STEP_KEY_TAG {
            if let Some(old) = self.tag(run_id, key)? {
                self.step_keys.remove(&run_key(&old, run_id))?;
            }
        }
        self.tags.remove(&run_key(run_id, key))?;
        Ok(())
    }

    /// The ids of the runs whose [`STEP_KEY_TAG`] is `key` (deleted ones included).
    pub(crate) fn runs_with_step_key(&self, key: &str) -> Result<Vec<String>> {
        let prefix = run_key(key, "");
        self.step_keys
            .scan_prefix(&prefix)
            .map(|e| e.map(|(k, _)| utf8(&k[prefix.len()..])))
            .collect()
    }

    fn apply_batch(&self, batch: &LogBatch) -> Result<()> {
        let run_id = &batch.run_id;
        for s in batch.series.iter().filter(|s| s.new) {
            self.series
                .insert(run_key(run_id, &s.key), s.id.to_be_bytes())?;
            self.series_by_id
                .insert(s.id.to_be_bytes(), enc(&(run_id, &s.key)))?;
            if s.id >= self.next_series_id()? {
                self.meta
                    .insert(META_NEXT_SERIES, (s.id + 1).to_be_bytes())?;
            }
        }
        // The greatest point of each series in this batch, then one comparison with the stored one.
        let mut best: Vec<Option<usize>> = vec![None; batch.series.len()];
        for (i, p) in batch.points.iter().enumerate() {
            let slot = &mut best[p.series as usize];
            if slot.is_none_or(|b| {
                crate::metrics::latest_order(&p.key(), &batch.points[b].key()).is_gt()
            }) {
                *slot = Some(i);
            }
        }
        for (series, point) in best.iter().enumerate() {
            let Some(i) = point else { continue };
            let p = &batch.points[*i];
            let key = &batch.series[series].key;
            let stored = self.latest_metric(run_id, key)?;
            let newer = stored.is_none_or(|m| {
                crate::metrics::latest_order(&p.key(), &(m.step, m.timestamp, m.value)).is_ge()
            });
            if newer {
                let extra = (p.extra > 0).then(|| &batch.extras[p.extra as usize - 1]);
                let m = Metric {
                    key: key.clone(),
                    value: p.value,
                    timestamp: p.timestamp,
                    step: p.step,
                    model_id: extra.and_then(|e| e.model_id.clone()),
                    dataset_name: extra.and_then(|e| e.dataset_name.clone()),
                    dataset_digest: extra.and_then(|e| e.dataset_digest.clone()),
                };
                self.latest_metrics.insert(run_key(run_id, key), enc(&m))?;
            }
        }
        // Points logged against a logged model also update that model's metrics: the greatest
        // point of each series and model/dataset reference is offered (one catalog read each).
        let mut best_per_extra: std::collections::BTreeMap<(u32, u32), usize> =
            std::collections::BTreeMap::new();
        for (i, p) in batch.points.iter().enumerate().filter(|(_, p)| p.extra > 0) {
            let slot = best_per_extra.entry((p.series, p.extra)).or_insert(i);
            if crate::metrics::latest_order(&p.key(), &batch.points[*slot].key()).is_gt() {
                *slot = i;
            }
        }
        for &i in best_per_extra.values() {
            let p = &batch.points[i];
            let extra = &batch.extras[p.extra as usize - 1];
            if extra.model_id.is_some() {
                let m = Metric {
                    key: batch.series[p.series as usize].key.clone(),
                    value: p.value,
                    timestamp: p.timestamp,
                    step: p.step,
                    model_id: extra.model_id.clone(),
                    dataset_name: extra.dataset_name.clone(),
                    dataset_digest: extra.dataset_digest.clone(),
                };
                self.models.offer_model_metric(run_id, &m)?;
            }
        }
        for p in &batch.params {
            self.params.insert(run_key(run_id, &p.key), &p.value)?;
        }
        for t in &batch.tags {
            self.set_run_tag(run_id, &t.key, &t.value)?;
            if t.key == RUN_NAME_TAG {
                self.update_run(run_id, |info| info.run_name = t.value.clone())?;
            }
        }
        Ok(())
    }

    fn update_experiment(
        &self,
        id: u64,
        time: i64,
        f: impl FnOnce(&mut ExperimentRecord) -> Result<()>,
    ) -> Result<()> {
        let Some(bytes) = self.experiments.get(&id.to_be_bytes())? else {
            return Ok(());
        };
        let mut rec: ExperimentRecord = dec(&bytes)?;
        f(&mut rec)?;
        rec.last_update_time = time;
        self.experiments.insert(id.to_be_bytes(), enc(&rec))
    }

    fn update_run(&self, run_id: &str, f: impl FnOnce(&mut RunInfo)) -> Result<()> {
        if let Some(mut info) = self.run_info(run_id)? {
            f(&mut info);
            self.runs.insert(run_id, enc(&info))?;
        }
        Ok(())
    }

    fn set_run_stage(&self, run_id: &str, stage: LifecycleStage, time: i64) -> Result<()> {
        self.update_run(run_id, |info| {
            info.lifecycle_stage = stage;
            info.deleted_time = (stage == LifecycleStage::Deleted).then_some(time);
        })
    }
}

/// An ordered pass over a tree keyed `run_id NUL key`, handing out one run's entries at a time.
struct Cursor<I: Iterator<Item = Result<(kv::Value, kv::Value)>>> {
    entries: std::iter::Peekable<I>,
}

impl Cursor<Box<dyn Iterator<Item = Result<(kv::Value, kv::Value)>>>> {
    fn new(tree: &Tree) -> Self {
        Cursor {
            entries: (Box::new(tree.iter()) as Box<dyn Iterator<Item = _>>).peekable(),
        }
    }
}

impl<I: Iterator<Item = Result<(kv::Value, kv::Value)>>> Cursor<I> {
    /// The entries under `prefix`, skipping those before it; run ids must be asked in order.
    fn take(&mut self, prefix: &[u8]) -> Result<Vec<(kv::Value, kv::Value)>> {
        let mut out = Vec::new();
        loop {
            let key = match self.entries.peek() {
                None => return Ok(out),
                Some(Err(_)) => {
                    return Err(self
                        .entries
                        .next()
                        .and_then(|e| e.err())
                        .expect("peeked an error"))
                }
                Some(Ok((k, _))) => k,
            };
            if key.starts_with(prefix) {
                out.push(self.entries.next().expect("peeked")?);
            } else if key.as_ref() < prefix {
                self.entries.next();
            } else {
                return Ok(out);
            }
        }
    }
}
