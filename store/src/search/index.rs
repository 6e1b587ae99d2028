//! The run index: per experiment, the runs' attributes, latest metrics, params, tags and dataset
//! inputs as columns in memory, so that a search is a scan of a few columns rather than a catalog
//! read per run, and a page of results is rendered without touching the catalog.
//!
//! # Consistency
//! An experiment's index is built from the catalog the first time it is searched, then kept up to
//! date by [`RunIndex::apply`], which the store calls under its commit lock right after applying
//! each op to the catalog: a search sees every acknowledged write.
//!
//! A build reads the catalog without holding the commit lock, so writes go on meanwhile. The
//! experiment's slot exists (in the `Building` state) before the build reads anything, and every
//! op applied while it is building is queued in the slot; once the build has read the catalog, the
//! queue is replayed onto the result. Replaying is safe because every update here is idempotent
//! (a value is set, a tag removed, a metric offered under the latest-value rule, a stage re-read
//! from the catalog): an op the build already saw gives the same state again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use crate::catalog::Catalog;
use crate::error::Result;
use crate::model_types::ModelOutput;
use crate::ops::{LogBatch, Op, PointExtras};
use crate::search::columns::{MetricCell, MetricColumn, StrColumn};
use crate::types::{
    Dataset, DatasetInput, LifecycleStage, Metric, Param, Run, RunInfo, RunStatus, Tag,
};

/// The tag through which MLflow also carries a run's name.
const RUN_NAME_TAG: &str = crate::catalog::RUN_NAME_TAG;

/// The dataset inputs of one run, by (dataset name, digest), with the input's tags.
type RunInputs = BTreeMap<(String, String), Vec<Tag>>;

/// The columns of the runs of one experiment. Row `r` is the `r`-th run the index learned of.
#[derive(Debug, Default)]
pub(crate) struct ExperimentIndex {
    experiment_id: String,
    row_of: HashMap<Box<str>, u32>,
    pub(crate) run_id: Vec<Box<str>>,
    pub(crate) run_name: Vec<Box<str>>,
    pub(crate) user_id: StrColumn,
    pub(crate) status: Vec<RunStatus>,
    pub(crate) start_time: Vec<i64>,
    pub(crate) end_time: Vec<Option<i64>>,
    pub(crate) stage: Vec<LifecycleStage>,
    deleted_time: Vec<Option<i64>>,
    pub(crate) artifact_uri: Vec<Box<str>>,
    pub(crate) metrics: BTreeMap<Box<str>, MetricColumn>,
    pub(crate) params: BTreeMap<Box<str>, StrColumn>,
    pub(crate) tags: BTreeMap<Box<str>, StrColumn>,
    /// Datasets of the experiment, first description kept (as the catalog does).
    datasets: HashMap<(String, String), Arc<Dataset>>,
    pub(crate) inputs: HashMap<u32, RunInputs>,
    /// Logged models used and produced, for the few runs that have any.
    models: HashMap<u32, RunModels>,
}

/// The logged models a run used (by id) and produced (id → step).
#[derive(Debug, Default)]
struct RunModels {
    inputs: std::collections::BTreeSet<String>,
    outputs: BTreeMap<String, i64>,
}

impl ExperimentIndex {
    /// Number of runs.
    pub(crate) fn rows(&self) -> usize {
        self.run_id.len()
    }

    /// The dataset inputs of `row` with their contexts (`mlflow.data.context` tag).
    pub(crate) fn inputs_of(&self, row: u32) -> impl Iterator<Item = (&str, &str, Option<&str>)> {
        self.inputs
            .get(&row)
            .into_iter()
            .flatten()
            .map(|((n, d), tags)| {
                let context = tags
                    .iter()
                    .find(|t| t.key == crate::types::DATASET_CONTEXT_TAG)
                    .map(|t| t.value.as_str());
                (n.as_str(), d.as_str(), context)
            })
    }

    /// The whole run of `row`, as [`Catalog::run`] would return it.
    pub(crate) fn run(&self, row: u32) -> Run {
        let r = row as usize;
        let info = RunInfo {
            run_id: self.run_id[r].to_string(),
            run_name: self.run_name[r].to_string(),
            experiment_id: self.experiment_id.clone(),
            user_id: self.user_id.get(row).unwrap_or_default().to_string(),
            status: self.status[r],
            start_time: self.start_time[r],
            end_time: self.end_time[r],
            lifecycle_stage: self.stage[r],
            artifact_uri: self.artifact_uri[r].to_string(),
            deleted_time: self.deleted_time[r],
        };
        let metrics = self
            .metrics
            .iter()
            .filter_map(|(key, col)| {
                let c = col.get(row)?;
                let extras = c.extras.as_deref().cloned().unwrap_or_default();
                Some(Metric {
                    key: key.to_string(),
                    value: c.value,
                    timestamp: c.timestamp,
                    step: c.step,
                    model_id: extras.model_id,
                    dataset_name: extras.dataset_name,
                    dataset_digest: extras.dataset_digest,
                })
            })
            .collect();
        let params = self
            .params
            .iter()
            .filter_map(|(k, col)| col.get(row).map(|v| Param::new(&**k, v)))
            .collect();
        let tags = self
            .tags
            .iter()
            .filter_map(|(k, col)| col.get(row).map(|v| Tag::new(&**k, v)))
            .collect();
        let dataset_inputs = self
            .inputs
            .get(&row)
            .into_iter()
            .flatten()
            .filter_map(|(key, tags)| {
                let ds = self.datasets.get(key)?;
                Some(DatasetInput {
                    tags: tags.clone(),
                    dataset: (**ds).clone(),
                })
            })
            .collect();
        let models = self.models.get(&row);
        Run {
            info,
            metrics,
            params,
            tags,
            dataset_inputs,
            model_inputs: models
                .map(|m| m.inputs.iter().cloned().collect())
                .unwrap_or_default(),
            model_outputs: models
                .map(|m| {
                    m.outputs
                        .iter()
                        .map(|(id, step)| ModelOutput {
                            model_id: id.clone(),
                            step: *step,
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Reads every run of experiment `id` from the catalog; gives up with an error once
    /// `cancelled` says so.
    fn build(catalog: &Catalog, id: u64, cancelled: &dyn Fn() -> bool) -> Result<ExperimentIndex> {
        let mut index = ExperimentIndex {
            experiment_id: id.to_string(),
            ..Default::default()
        };
        catalog.for_each_run_of_experiment(id, |run| {
            if cancelled() {
                return Err(crate::error::Error::Internal(
                    "run index build cancelled".into(),
                ));
            }
            index.load(run);
            Ok(())
        })?;
        Ok(index)
    }

    /// Adds (or overwrites) a whole run.
    fn load(&mut self, run: Run) {
        let row = self.upsert_info(&run.info);
        let rows = self.rows();
        for m in run.metrics {
            let extras =
                (m.model_id.is_some() || m.dataset_name.is_some() || m.dataset_digest.is_some())
                    .then(|| {
                        Box::new(PointExtras {
                            model_id: m.model_id,
                            dataset_name: m.dataset_name,
                            dataset_digest: m.dataset_digest,
                        })
                    });
            let cell = MetricCell {
                value: m.value,
                timestamp: m.timestamp,
                step: m.step,
                extras,
            };
            column(&mut self.metrics, &m.key).offer(row, cell, rows);
        }
        for p in run.params {
            column(&mut self.params, &p.key).set(row, Some(&p.value), rows);
        }
        for t in run.tags {
            column(&mut self.tags, &t.key).set(row, Some(&t.value), rows);
        }
        for input in run.dataset_inputs {
            self.add_input(row, &input);
        }
        self.add_models(row, &run.model_inputs, &run.model_outputs);
    }

    /// Records logged models `row` used and produced.
    fn add_models(&mut self, row: u32, inputs: &[String], outputs: &[ModelOutput]) {
        if inputs.is_empty() && outputs.is_empty() {
            return;
        }
        let m = self.models.entry(row).or_default();
        m.inputs.extend(inputs.iter().cloned());
        for o in outputs {
            m.outputs.insert(o.model_id.clone(), o.step);
        }
    }

    /// The row of `info`'s run, created if new; the info's fields are (re)written.
    fn upsert_info(&mut self, info: &RunInfo) -> u32 {
        let rows = self.rows();
        let row = match self.row_of.get(info.run_id.as_str()) {
            Some(&r) => r,
            None => {
                let r = rows as u32;
                self.row_of.insert(info.run_id.as_str().into(), r);
                self.run_id.push(info.run_id.as_str().into());
                self.run_name.push("".into());
                self.status.push(info.status);
                self.start_time.push(0);
                self.end_time.push(None);
                self.stage.push(info.lifecycle_stage);
                self.deleted_time.push(None);
                self.artifact_uri.push("".into());
                r
            }
        };
        let r = row as usize;
        self.run_name[r] = info.run_name.as_str().into();
        self.user_id.set(row, Some(&info.user_id), self.rows());
        self.status[r] = info.status;
        self.start_time[r] = info.start_time;
        self.end_time[r] = info.end_time;
        self.stage[r] = info.lifecycle_stage;
        self.deleted_time[r] = info.deleted_time;
        self.artifact_uri[r] = info.artifact_uri.as_str().into();
        row
    }

    fn add_input(&mut self, row: u32, input: &DatasetInput) {
        let ds = &input.dataset;
        let key = (ds.name.clone(), ds.digest.clone());
        self.datasets
            .entry(key.clone())
            .or_insert_with(|| Arc::new(ds.clone()));
        self.inputs
            .entry(row)
            .or_default()
            .insert(key, input.tags.clone());
    }

    fn set_tag(&mut self, row: u32, key: &str, value: Option<&str>) {
        let rows = self.rows();
        column(&mut self.tags, key).set(row, value, rows);
    }

    fn apply_batch(&mut self, row: u32, batch: &LogBatch) {
        let rows = self.rows();
        // One offer per series (its greatest point) rather than one per point.
        for (series, point) in batch.series.iter().zip(latest_points(batch)) {
            let Some(p) = point.map(|i| &batch.points[i]) else {
                continue;
            };
            let extras = (p.extra > 0)
                .then(|| batch.extras.get(p.extra as usize - 1))
                .flatten()
                .map(|e| Box::new(e.clone()));
            let cell = MetricCell {
                value: p.value,
                timestamp: p.timestamp,
                step: p.step,
                extras,
            };
            column(&mut self.metrics, &series.key).offer(row, cell, rows);
        }
        for p in &batch.params {
            column(&mut self.params, &p.key).set(row, Some(&p.value), rows);
        }
        for t in &batch.tags {
            self.set_tag(row, &t.key, Some(&t.value));
            if t.key == RUN_NAME_TAG {
                self.run_name[row as usize] = t.value.as_str().into();
            }
        }
    }

    /// Applies one op that concerns this experiment.
    fn apply(&mut self, op: &Op, catalog: &Catalog) -> Result<()> {
        let row_of = |s: &Self, run_id: &str| s.row_of.get(run_id).copied();
        match op {
            Op::CreateRun { info, tags } => {
                let row = self.upsert_info(info);
                for t in tags {
                    self.set_tag(row, &t.key, Some(&t.value));
                }
            }
            Op::UpdateRun {
                run_id,
                status,
                end_time,
                run_name,
            } => {
                let Some(row) = row_of(self, run_id) else {
                    return Ok(());
                };
                let r = row as usize;
                if let Some(s) = status {
                    self.status[r] = *s;
                }
                if let Some(t) = end_time {
                    self.end_time[r] = Some(*t);
                }
                if let Some(n) = run_name {
                    self.run_name[r] = n.as_str().into();
                    self.set_tag(row, RUN_NAME_TAG, Some(n));
                }
            }
            Op::SetRunStage {
                run_id,
                stage,
                time,
            } => {
                if let Some(row) = row_of(self, run_id) {
                    self.stage[row as usize] = *stage;
                    self.deleted_time[row as usize] =
                        (*stage == LifecycleStage::Deleted).then_some(*time);
                }
            }
            Op::SetExperimentStage { .. } => {
                // Which runs follow the experiment depends on their history: re-read the stages.
                for row in 0..self.rows() as u32 {
                    if let Some(info) = catalog.run_info(&self.run_id[row as usize])? {
                        self.stage[row as usize] = info.lifecycle_stage;
                        self.deleted_time[row as usize] = info.deleted_time;
                    }
                }
            }
            Op::LogBatch(batch) => {
                if let Some(row) = row_of(self, &batch.run_id) {
                    self.apply_batch(row, batch);
                }
            }
            Op::DeleteRunTag { run_id, key } => {
                if let Some(row) = row_of(self, run_id) {
                    self.set_tag(row, key, None);
                }
            }
            Op::LogInputs { run_id, inputs, .. } => {
                if let Some(row) = row_of(self, run_id) {
                    for input in inputs {
                        self.add_input(row, input);
                    }
                }
            }
            Op::RunModels {
                run_id,
                inputs,
                outputs,
            } => {
                if let Some(row) = row_of(self, run_id) {
                    self.add_models(row, inputs, outputs);
                }
            }
            Op::CreateExperiment { .. }
            | Op::RenameExperiment { .. }
            | Op::SetExperimentTag { .. }
            | Op::DeleteExperimentTag { .. }
            | Op::PutArtifact(_)
            | Op::DeleteArtifacts { .. }
            | Op::LoggedModel(_)
            | Op::Registry { .. } => {}
            // The run index drops an experiment's index when one of its runs is purged.
            Op::PurgeRuns { .. } | Op::PurgeExperiment { .. } => {}
        }
        Ok(())
    }
}

/// For each series of `batch`, the index of its greatest point (the first of equal ones, as
/// the catalog picks), if the batch has points of it.
fn latest_points(batch: &LogBatch) -> Vec<Option<usize>> {
    let mut best: Vec<Option<usize>> = vec![None; batch.series.len()];
    for (i, p) in batch.points.iter().enumerate() {
        let Some(slot) = best.get_mut(p.series as usize) else {
            continue;
        };
        if slot
            .is_none_or(|b| crate::metrics::latest_order(&p.key(), &batch.points[b].key()).is_gt())
        {
            *slot = Some(i);
        }
    }
    best
}

/// `op` as the index needs it while a build is running: a metric batch reduced to the latest
/// point of each series, so that heavy ingest during a build does not queue every point.
fn reduced(op: &Op) -> Op {
    let Op::LogBatch(batch) = op else {
        return op.clone();
    };
    let points = latest_points(batch)
        .into_iter()
        .flatten()
        .map(|i| batch.points[i])
        .collect();
    Op::LogBatch(Box::new(LogBatch {
        run_id: batch.run_id.clone(),
        series: batch.series.clone(),
        points,
        extras: batch.extras.clone(),
        params: batch.params.clone(),
        tags: batch.tags.clone(),
    }))
}

/// The column of `key`, created empty if new.
fn column<'a, C: Default>(map: &'a mut BTreeMap<Box<str>, C>, key: &str) -> &'a mut C {
    if !map.contains_key(key) {
        map.insert(key.into(), C::default());
    }
    map.get_mut(key).expect("inserted above")
}

/// An experiment's index, or the ops that arrived while it was being built.
#[derive(Debug)]
enum SlotState {
    Building(Vec<Op>),
    Ready(Box<ExperimentIndex>),
}

#[derive(Debug)]
struct Slot {
    /// Held by the search that builds the index; later searches wait on it.
    build: Mutex<()>,
    state: RwLock<SlotState>,
}

/// The indexes of the experiments searched so far.
#[derive(Debug, Default)]
pub(crate) struct RunIndex {
    slots: RwLock<HashMap<u64, Arc<Slot>>>,
}

/// A read view of one experiment's index, held for the duration of a search.
pub(crate) struct IndexGuard {
    slot: Arc<Slot>,
}

impl IndexGuard {
    /// Locks the index for reading.
    pub(crate) fn read(&self) -> IndexRead<'_> {
        IndexRead(self.slot.state.read().expect("run index lock"))
    }
}

/// A read-locked experiment index.
pub(crate) struct IndexRead<'a>(RwLockReadGuard<'a, SlotState>);

impl IndexRead<'_> {
    /// The index.
    pub(crate) fn index(&self) -> &ExperimentIndex {
        match &*self.0 {
            SlotState::Ready(index) => index,
            SlotState::Building(_) => unreachable!("guards are handed out for ready slots only"),
        }
    }
}

impl RunIndex {
    /// Builds the indexes of experiments `ids` ahead of their first search (after the store
    /// opens), until `cancelled` says to stop.
    pub(crate) fn warm(&self, catalog: &Catalog, ids: &[u64], cancelled: &dyn Fn() -> bool) {
        for &id in ids {
            if cancelled() {
                return;
            }
            if let Err(e) = self.experiment(catalog, id, cancelled) {
                if !cancelled() {
                    tracing::warn!(experiment = id, error = %e, "building the run index failed");
                }
            }
        }
    }

    /// The index of experiment `id`, built from the catalog on first use (unless `cancelled`
    /// says to stop first).
    pub(crate) fn experiment(
        &self,
        catalog: &Catalog,
        id: u64,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<IndexGuard> {
        let slot = {
            let slots = self.slots.read().expect("run index lock");
            slots.get(&id).cloned()
        };
        let slot = match slot {
            Some(s) => s,
            None => self
                .slots
                .write()
                .expect("run index lock")
                .entry(id)
                .or_insert_with(|| {
                    Arc::new(Slot {
                        build: Mutex::new(()),
                        state: RwLock::new(SlotState::Building(Vec::new())),
                    })
                })
                .clone(),
        };
        let _building = slot.build.lock().expect("run index build lock");
        let ready = matches!(
            *slot.state.read().expect("run index lock"),
            SlotState::Ready(_)
        );
        if !ready {
            let mut index = match ExperimentIndex::build(catalog, id, cancelled) {
                Ok(index) => index,
                Err(e) => {
                    self.slots.write().expect("run index lock").remove(&id);
                    return Err(e);
                }
            };
            let mut state = slot.state.write().expect("run index lock");
            if let SlotState::Building(pending) = &*state {
                for op in pending {
                    index.apply(op, catalog)?;
                }
            }
            *state = SlotState::Ready(Box::new(index));
        }
        drop(_building);
        Ok(IndexGuard { slot })
    }

    /// Forgets every index (they are rebuilt on the next search).
    pub(crate) fn clear(&self) {
        self.slots.write().expect("run index lock").clear();
    }

    /// Brings the indexes up to date with `op`, just applied to `catalog`. Called under the
    /// store's commit lock, so ops arrive in log order.
    pub(crate) fn apply(&self, op: &Op, catalog: &Catalog) -> Result<()> {
        let purged: Vec<u64> = match op {
            Op::PurgeRuns { runs } => runs.iter().map(|r| r.experiment_id).collect(),
            Op::PurgeExperiment { id } => vec![*id],
            _ => Vec::new(),
        };
        if !purged.is_empty() {
            // Rows are not removed from a built index: it is dropped and rebuilt from the
            // catalog on the next search. Purges are rare administrative acts.
            let mut slots = self.slots.write().expect("run index lock");
            for id in purged {
                slots.remove(&id);
            }
            return Ok(());
        }
        let slots = self.slots.read().expect("run index lock");
        if slots.is_empty() {
            return Ok(());
        }
        let experiment = match op {
            Op::CreateRun { info, .. } => info.experiment_id.parse::<u64>().ok(),
            Op::SetExperimentStage { id, .. } => Some(*id),
            Op::LogInputs { experiment_id, .. } => Some(*experiment_id),
            Op::UpdateRun { run_id, .. }
            | Op::SetRunStage { run_id, .. }
            | Op::DeleteRunTag { run_id, .. }
            | Op::RunModels { run_id, .. } => experiment_of(catalog, run_id)?,
            Op::LogBatch(batch) => experiment_of(catalog, &batch.run_id)?,
            Op::CreateExperiment { .. }
            | Op::RenameExperiment { .. }
            | Op::SetExperimentTag { .. }
            | Op::DeleteExperimentTag { .. }
            | Op::PutArtifact(_)
            | Op::DeleteArtifacts { .. }
            | Op::LoggedModel(_)
            | Op::Registry { .. }
            | Op::PurgeRuns { .. }
            | Op::PurgeExperiment { .. } => None,
        };
        let Some(slot) = experiment.and_then(|e| slots.get(&e)) else {
            return Ok(());
        };
        let mut state = slot.state.write().expect("run index lock");
        match &mut *state {
            SlotState::Building(pending) => pending.push(reduced(op)),
            SlotState::Ready(index) => index.apply(op, catalog)?,
        }
        Ok(())
    }
}

fn experiment_of(catalog: &Catalog, run_id: &str) -> Result<Option<u64>> {
    Ok(catalog
        .run_info(run_id)?
        .and_then(|i| i.experiment_id.parse().ok()))
}
