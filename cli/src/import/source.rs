//! What an import reads, whatever the source's format: experiments, runs (without their
//! points), metric points run by run, artifact files, the model registry. An MLflow database
//! ([`super::sqlite`]), an `mlruns/` file store ([`super::mlruns`]) and a running MLflow server
//! ([`super::rest`]) are sources.

use std::io::Read;

use quiver_store::{
    DatasetInput, ImportRegisteredModel, LifecycleStage, Metric, Param, RunStatus, Tag,
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
    /// Runs the source holds but could not read, left out with `--on-error skip`: (where,
    /// why). The import exits non-zero when there are any.
    fn unreadable(&self) -> &[(String, String)] {
        &[]
    }
}
