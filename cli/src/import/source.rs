//! What an import reads, whatever the source's format: experiments, runs (without their
//! points), metric points run by run, artifact files, the model registry. An MLflow database
//! ([`super::sqlite`]), an `mlruns/` file store ([`super::mlruns`]) and a running MLflow server
//! ([`super::rest`]) are sources.

use std::collections::HashMap;
use std::io::Read;

use quiver_store::{
    DatasetInput, ImportLoggedModel, ImportRegisteredModel, LifecycleStage, Metric, ModelOutput,
    Param, RunStatus, Tag,
};

/// An experiment of the source.
#[derive(Debug, Clone)]
pub(crate) struct SourceExperiment {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) stage: LifecycleStage,
    pub(crate) creation_time: i64,
    pub(crate) last_update_time: i64,
    pub(crate) tags: Vec<Tag>,
}

/// A run of the source, without its metrics.
#[derive(Debug, Clone)]
pub(crate) struct SourceRun {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) experiment_id: String,
    pub(crate) user_id: String,
    pub(crate) status: RunStatus,
    pub(crate) start_time: i64,
    pub(crate) end_time: Option<i64>,
    pub(crate) stage: LifecycleStage,
    pub(crate) deleted_time: Option<i64>,
    pub(crate) artifact_uri: String,
    pub(crate) tags: Vec<Tag>,
    pub(crate) params: Vec<Param>,
    /// The datasets it used, with the tags of each use.
    pub(crate) inputs: Vec<DatasetInput>,
    /// The logged models it produced.
    pub(crate) outputs: Vec<ModelOutput>,
    /// The logged models it used.
    pub(crate) model_inputs: Vec<String>,
}

/// A logged model of the source (MLflow 3).
#[derive(Debug, Clone)]
pub(crate) struct SourceLoggedModel {
    /// The model, its `experiment_id` the source's.
    pub(crate) model: ImportLoggedModel,
    /// Deleted in the source.
    pub(crate) deleted: bool,
    /// Where the source keeps its files.
    pub(crate) artifact_uri: String,
}

/// What the source records of a metric point beyond the run's series: the logged model (and
/// dataset) it was logged for. MLflow keeps these apart from the run's points (its
/// `logged_model_metrics`); Quiver keeps them on the point, so they are put back on it.
#[derive(Debug, Clone)]
struct PointModel {
    value: f64,
    model_id: String,
    dataset_name: Option<String>,
    dataset_digest: Option<String>,
}

/// The logged-model metrics of one run, by (key, timestamp, step).
type RunModelPoints = HashMap<(String, i64, i64), Vec<PointModel>>;

/// The logged-model metrics of the source's runs, by run.
#[derive(Debug, Clone, Default)]
pub(crate) struct ModelPoints {
    by_run: HashMap<String, RunModelPoints>,
}

impl ModelPoints {
    /// Records that the point (`key`, `timestamp`, `step`, `value`) of run `run_id` was
    /// logged for model `model_id` (and a dataset).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn add(
        &mut self,
        run_id: &str,
        key: &str,
        timestamp: i64,
        step: i64,
        value: f64,
        model_id: String,
        dataset_name: Option<String>,
        dataset_digest: Option<String>,
    ) {
        self.by_run
            .entry(run_id.to_string())
            .or_default()
            .entry((key.to_string(), timestamp, step))
            .or_default()
            .push(PointModel {
                value,
                model_id,
                dataset_name,
                dataset_digest,
            });
    }

    /// Puts the model (and dataset) back on the points of run `run_id` that were logged for
    /// one: the point of that key, timestamp and step (of that value, when several are).
    pub(crate) fn attach(&self, run_id: &str, points: &mut [Metric]) {
        let Some(run) = self.by_run.get(run_id) else {
            return;
        };
        for m in points {
            let Some(found) = run.get(&(m.key.clone(), m.timestamp, m.step)) else {
                continue;
            };
            let same = |p: &&PointModel| {
                p.value.to_bits() == m.value.to_bits() || (p.value.is_nan() && m.value.is_nan())
            };
            let pick = match found.as_slice() {
                [only] => Some(only),
                many => many.iter().find(same),
            };
            if let Some(p) = pick {
                m.model_id = Some(p.model_id.clone());
                m.dataset_name.clone_from(&p.dataset_name);
                m.dataset_digest.clone_from(&p.dataset_digest);
            }
        }
    }
}

/// An artifact file of a source run.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    /// Its path relative to the run's artifact root, with `/` separators.
    pub(crate) rel: String,
    /// Where the source keeps it (a local path for the file-based sources).
    pub(crate) location: String,
    pub(crate) size: u64,
}

/// Reads metric points, run by run; owned by the thread that reads ahead of the store.
pub(crate) trait PointReader: Send {
    /// Tells the reader that [`PointReader::metrics`] will be asked for these runs, in this
    /// order (a reader may fetch ahead). Nothing by default.
    fn will_read(&mut self, _run_ids: &[String]) {}

    /// Calls `each` with the metric points of run `run_id` in batches of at most `batch`.
    fn metrics(
        &mut self,
        run_id: &str,
        batch: usize,
        each: &mut dyn FnMut(Vec<Metric>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()>;
}

/// A source of MLflow history, read once into memory except for points and artifact bytes.
pub(crate) trait Source {
    /// What the source is, for the first line the import prints.
    fn describe(&self) -> String;
    /// The source's identity (a canonical path or URL), which names the import's journal.
    fn identity(&self) -> &str;
    /// Every experiment, deleted ones included.
    fn experiments(&self) -> &[SourceExperiment];
    /// Every run of every experiment, deleted ones included, with tags, params and inputs.
    fn runs(&self) -> &[SourceRun];
    /// How many metric points the runs hold, for the progress bar; `None` when the source
    /// cannot tell without reading them all (a server).
    fn point_count(&self) -> anyhow::Result<Option<u64>>;
    /// A reader of metric points that can move to another thread.
    fn point_reader(&self) -> anyhow::Result<Box<dyn PointReader>>;
    /// The artifact files of `run`, by relative path (none when the source has no copy of
    /// them, as for runs whose artifacts are in a cloud bucket).
    fn artifact_files(&self, run: &SourceRun) -> anyhow::Result<Vec<SourceFile>>;
    /// The bytes of one of those files.
    fn open_artifact(&self, file: &SourceFile) -> anyhow::Result<Box<dyn Read + Send>>;
    /// The model registry: each registered model with its versions, tags and aliases.
    fn registered_models(&self) -> anyhow::Result<Vec<ImportRegisteredModel>>;
    /// Every logged model (MLflow 3), deleted ones included.
    fn logged_models(&self) -> anyhow::Result<Vec<SourceLoggedModel>> {
        Ok(Vec::new())
    }
    /// The artifact files of a logged model.
    fn model_artifact_files(&self, _model: &SourceLoggedModel) -> anyhow::Result<Vec<SourceFile>> {
        Ok(Vec::new())
    }
    /// Runs the source holds but could not read, left out with `--on-error skip`: (where,
    /// why). The import exits non-zero when there are any.
    fn unreadable(&self) -> &[(String, String)] {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_metrics_go_back_on_their_points() {
        let mut mp = ModelPoints::default();
        let m = |id: &str| id.to_string();
        mp.add(
            "r",
            "acc",
            5,
            1,
            0.5,
            m("m-1"),
            Some("ds".into()),
            Some("d1".into()),
        );
        mp.add("r", "loss", 5, 1, 0.0, m("m-2"), None, None);
        mp.add("r", "x", 5, 1, 1.0, m("m-3"), None, None);
        mp.add("r", "x", 5, 1, 2.0, m("m-4"), None, None);
        let mut points = vec![
            Metric::new("acc", 0.5, 5, 1),
            // MLflow's database keeps a model's NaN as 0: one candidate, so it is the one.
            Metric::new("loss", f64::NAN, 5, 1),
            Metric::new("x", 2.0, 5, 1),
            Metric::new("x", 3.0, 5, 1),
            Metric::new("acc", 0.5, 6, 1),
        ];
        mp.attach("r", &mut points);
        let ids: Vec<Option<&str>> = points.iter().map(|p| p.model_id.as_deref()).collect();
        assert_eq!(ids, [Some("m-1"), Some("m-2"), Some("m-4"), None, None]);
        assert_eq!(points[0].dataset_digest.as_deref(), Some("d1"));
        let mut other = vec![Metric::new("acc", 0.5, 5, 1)];
        mp.attach("other run", &mut other);
        assert_eq!(other[0].model_id, None);
    }
}
