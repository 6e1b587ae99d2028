//! Reading an MLflow SQL database file (what `mlflow ui` and `mlflow server` create by default:
//! `sqlite:///mlflow.db`), opened read-only. The tables read (experiments, experiment_tags,
//! runs, tags, params, metrics) have the same columns in every schema since MLflow 1.x, except
//! `experiments.creation_time` and `runs.deleted_time` (added in 2.x), which are read when
//! present. `alembic_version` names the schema revision.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver_store::{
    Dataset, DatasetInput, ImportLoggedModel, ImportModelVersion, ImportRegisteredModel,
    LifecycleStage, LoggedModelStatus, Metric, ModelOutput, Param, RunStatus, Stage, Tag,
};
use rusqlite::{Connection, OpenFlags};

use super::artifacts;
use super::source::{
    ModelPoints, PointReader, Source, SourceExperiment, SourceFile, SourceLoggedModel, SourceRun,
};

/// An MLflow database as an import source, with the artifact root its `mlflow-artifacts:/`
/// URIs point into.
#[derive(Debug)]
pub(crate) struct DbSource {
    db: MlflowDb,
    path: PathBuf,
    identity: String,
    artifacts: Option<PathBuf>,
    experiments: Vec<SourceExperiment>,
    runs: Vec<SourceRun>,
}

impl DbSource {
    /// Opens the database at `path` and reads its experiments and runs.
    pub(crate) fn open(path: &Path, artifacts: Option<PathBuf>) -> anyhow::Result<DbSource> {
        let db = MlflowDb::open(path)?;
        let experiments = db.experiments()?;
        let runs = db.runs()?;
        Ok(DbSource {
            identity: std::fs::canonicalize(path)?.display().to_string(),
            db,
            path: path.to_path_buf(),
            artifacts,
            experiments,
            runs,
        })
    }
}

impl Source for DbSource {
    fn describe(&self) -> String {
        format!(
            "{}: MLflow database (schema {})",
            self.path.display(),
            self.db.revision
        )
    }

    fn identity(&self) -> &str {
        &self.identity
    }

    fn experiments(&self) -> &[SourceExperiment] {
        &self.experiments
    }

    fn runs(&self) -> &[SourceRun] {
        &self.runs
    }

    fn point_count(&self) -> anyhow::Result<Option<u64>> {
        self.db.point_count().map(Some)
    }

    fn point_reader(&self) -> anyhow::Result<Box<dyn PointReader>> {
        // A connection of its own: the reader runs on another thread.
        let db = MlflowDb::open(&self.path)?;
        let models = db.model_points()?;
        Ok(Box::new(DbPoints { db, models }))
    }

    fn artifact_files(&self, run: &SourceRun) -> anyhow::Result<Vec<SourceFile>> {
        match artifacts::source_dir(run, self.artifacts.as_deref()) {
            Some(dir) => artifacts::files(&dir),
            None => Ok(Vec::new()),
        }
    }

    fn open_artifact(&self, file: &SourceFile) -> anyhow::Result<Box<dyn std::io::Read + Send>> {
        artifacts::open_local(file)
    }

    fn registered_models(&self) -> anyhow::Result<Vec<ImportRegisteredModel>> {
        self.db.registered_models()
    }

    fn logged_models(&self) -> anyhow::Result<Vec<SourceLoggedModel>> {
        self.db.logged_models()
    }

    fn model_artifact_files(&self, model: &SourceLoggedModel) -> anyhow::Result<Vec<SourceFile>> {
        match artifacts::local_dir(&model.artifact_uri, self.artifacts.as_deref()) {
            Some(dir) => artifacts::files(&dir),
            None => Ok(Vec::new()),
        }
    }
}

/// The database's points, with the logged models they were logged for.
struct DbPoints {
    db: MlflowDb,
    models: ModelPoints,
}

impl PointReader for DbPoints {
    fn metrics(
        &mut self,
        run_id: &str,
        batch: usize,
        each: &mut dyn FnMut(Vec<Metric>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let models = &self.models;
        self.db.metrics(run_id, batch, |mut points| {
            models.attach(run_id, &mut points);
            each(points)
        })
    }
}

/// An open MLflow database.
pub(crate) struct MlflowDb {
    conn: Connection,
    /// The alembic revision of its schema.
    pub(crate) revision: String,
}

impl std::fmt::Debug for MlflowDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MlflowDb(revision {})", self.revision)
    }
}

/// The (key, value) rows a statement answers for `params`, as tags (a NULL value is "").
fn key_values(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> rusqlite::Result<Vec<Tag>> {
    stmt.query_map(params, |r| {
        Ok(Tag::new(
            r.get::<_, String>(0)?,
            r.get::<_, Option<String>>(1)?.unwrap_or_default(),
        ))
    })?
    .collect()
}

/// MLflow's logged-model status numbers (`LoggedModelStatus` of its protos).
pub(crate) fn model_status(n: i64) -> LoggedModelStatus {
    match n {
        2 => LoggedModelStatus::Ready,
        3 => LoggedModelStatus::UploadFailed,
        _ => LoggedModelStatus::Pending,
    }
}

fn stage(s: Option<String>) -> LifecycleStage {
    match s.as_deref() {
        Some("deleted") => LifecycleStage::Deleted,
        _ => LifecycleStage::Active,
    }
}

impl MlflowDb {
    /// Opens `path` read-only; an error names the file when it is not an MLflow database.
    pub(crate) fn open(path: &Path) -> anyhow::Result<MlflowDb> {
        if !path.is_file() {
            bail!("{}: no such file", path.display());
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .with_context(|| format!("opening {}", path.display()))?;
        let revision: String = conn
            .query_row("SELECT version_num FROM alembic_version", [], |r| r.get(0))
            .with_context(|| {
                format!(
                    "{} is not an MLflow database (no alembic_version table)",
                    path.display()
                )
            })?;
        Ok(MlflowDb { conn, revision })
    }

    fn has_column(&self, table: &str, column: &str) -> anyhow::Result<bool> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
        let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
        for n in names {
            if n? == column {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every experiment with its tags, by id.
    pub(crate) fn experiments(&self) -> anyhow::Result<Vec<SourceExperiment>> {
        let created = if self.has_column("experiments", "creation_time")? {
            "creation_time, last_update_time"
        } else {
            "NULL, NULL"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT experiment_id, name, lifecycle_stage, {created} FROM experiments \
             ORDER BY experiment_id"
        ))?;
        let rows = stmt.query_map([], |r| {
            Ok(SourceExperiment {
                id: r.get::<_, i64>(0)?.to_string(),
                name: r.get(1)?,
                stage: stage(r.get(2)?),
                creation_time: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                last_update_time: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                tags: Vec::new(),
            })
        })?;
        let mut out = rows.collect::<Result<Vec<_>, _>>()?;
        let mut tags = self.conn.prepare(
            "SELECT key, value FROM experiment_tags WHERE experiment_id = ?1 ORDER BY key",
        )?;
        for e in &mut out {
            let id: i64 = e.id.parse()?;
            e.tags = key_values(&mut tags, [id])?;
        }
        Ok(out)
    }

    /// Every run (of every experiment) with its tags and params, by experiment then start.
    pub(crate) fn runs(&self) -> anyhow::Result<Vec<SourceRun>> {
        let deleted = if self.has_column("runs", "deleted_time")? {
            "deleted_time"
        } else {
            "NULL"
        };
        let mut stmt = self.conn.prepare(&format!(
            "SELECT run_uuid, name, experiment_id, user_id, status, start_time, end_time, \
             lifecycle_stage, {deleted}, artifact_uri FROM runs \
             ORDER BY experiment_id, start_time, run_uuid"
        ))?;
        let rows = stmt.query_map([], |r| {
            let status: Option<String> = r.get(4)?;
            Ok(SourceRun {
                id: r.get(0)?,
                name: r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                experiment_id: r.get::<_, Option<i64>>(2)?.unwrap_or(0).to_string(),
                user_id: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                status: status
                    .as_deref()
                    .and_then(RunStatus::parse)
                    .unwrap_or(RunStatus::Finished),
                start_time: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                end_time: r.get(6)?,
                stage: stage(r.get(7)?),
                deleted_time: r.get(8)?,
                artifact_uri: r.get::<_, Option<String>>(9)?.unwrap_or_default(),
                tags: Vec::new(),
                params: Vec::new(),
                inputs: Vec::new(),
                outputs: Vec::new(),
                model_inputs: Vec::new(),
            })
        })?;
        let mut runs = rows.collect::<Result<Vec<_>, _>>()?;
        let mut tags = self
            .conn
            .prepare("SELECT key, value FROM tags WHERE run_uuid = ?1 ORDER BY key")?;
        let mut params = self
            .conn
            .prepare("SELECT key, value FROM params WHERE run_uuid = ?1 ORDER BY key")?;
        for run in &mut runs {
            run.tags = key_values(&mut tags, [&run.id])?;
            run.params = key_values(&mut params, [&run.id])?
                .into_iter()
                .map(|t| Param::new(t.key, t.value))
                .collect();
        }
        if self.has_table("inputs")? && self.has_table("datasets")? {
            for run in &mut runs {
                run.inputs = self.inputs(&run.id)?;
            }
        }
        if self.has_table("inputs")? && self.has_column("inputs", "step")? {
            // MLflow 3: the logged models a run produced and used.
            let mut outputs = self.conn.prepare(
                "SELECT destination_id, step FROM inputs WHERE source_type = 'RUN_OUTPUT' \
                 AND source_id = ?1 AND destination_type = 'MODEL_OUTPUT' ORDER BY destination_id",
            )?;
            let mut used = self.conn.prepare(
                "SELECT destination_id FROM inputs WHERE source_type = 'RUN_INPUT' \
                 AND source_id = ?1 AND destination_type = 'MODEL_INPUT' ORDER BY destination_id",
            )?;
            for run in &mut runs {
                run.outputs = outputs
                    .query_map([&run.id], |r| {
                        Ok(ModelOutput {
                            model_id: r.get(0)?,
                            step: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                        })
                    })?
                    .collect::<Result<_, _>>()?;
                run.model_inputs = used
                    .query_map([&run.id], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
            }
        }
        Ok(runs)
    }

    /// Every logged model (MLflow 3's `logged_models`), with its tags and params.
    pub(crate) fn logged_models(&self) -> anyhow::Result<Vec<SourceLoggedModel>> {
        if !self.has_table("logged_models")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT model_id, experiment_id, name, artifact_location, creation_timestamp_ms, \
             last_updated_timestamp_ms, status, lifecycle_stage, model_type, source_run_id, \
             status_message FROM logged_models ORDER BY creation_timestamp_ms, model_id",
        )?;
        let text = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<String> {
            Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
        };
        let mut models = stmt
            .query_map([], |r| {
                Ok(SourceLoggedModel {
                    model: ImportLoggedModel {
                        model_id: r.get(0)?,
                        experiment_id: r.get::<_, i64>(1)?.to_string(),
                        name: text(r, 2)?,
                        creation_time: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                        last_updated_time: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                        status: model_status(r.get::<_, Option<i64>>(6)?.unwrap_or(0)),
                        model_type: text(r, 8)?,
                        source_run_id: text(r, 9)?,
                        status_message: text(r, 10)?,
                        tags: Vec::new(),
                        params: Vec::new(),
                    },
                    artifact_uri: text(r, 3)?,
                    deleted: stage(r.get(7)?) == LifecycleStage::Deleted,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut tags = self.conn.prepare(
            "SELECT tag_key, tag_value FROM logged_model_tags WHERE model_id = ?1 ORDER BY tag_key",
        )?;
        let mut params = self.conn.prepare(
            "SELECT param_key, param_value FROM logged_model_params WHERE model_id = ?1 \
             ORDER BY param_key",
        )?;
        for m in &mut models {
            m.model.tags = key_values(&mut tags, [&m.model.model_id])?;
            m.model.params = key_values(&mut params, [&m.model.model_id])?
                .into_iter()
                .map(|t| Param::new(t.key, t.value))
                .collect();
        }
        Ok(models)
    }

    /// The points logged for a logged model (`logged_model_metrics`), to put back on the
    /// runs' points.
    fn model_points(&self) -> anyhow::Result<ModelPoints> {
        let mut out = ModelPoints::default();
        if !self.has_table("logged_model_metrics")? {
            return Ok(out);
        }
        let mut stmt = self.conn.prepare(
            "SELECT run_id, metric_name, metric_timestamp_ms, metric_step, metric_value, \
             model_id, dataset_name, dataset_digest FROM logged_model_metrics",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            out.add(
                &r.get::<_, String>(0)?,
                &r.get::<_, String>(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get::<_, Option<f64>>(4)?.unwrap_or(f64::NAN),
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            );
        }
        Ok(out)
    }

    /// Every registered model with its live versions (MLflow marks a deleted version with the
    /// stage `Deleted_Internal`; its number still counts), tags and aliases.
    pub(crate) fn registered_models(&self) -> anyhow::Result<Vec<ImportRegisteredModel>> {
        if !self.has_table("registered_models")? {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare(
            "SELECT name, creation_time, last_updated_time, description FROM registered_models \
             ORDER BY name",
        )?;
        let mut models = stmt
            .query_map([], |r| {
                Ok(ImportRegisteredModel {
                    name: r.get(0)?,
                    creation_time: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    last_updated_time: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    description: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    ..Default::default()
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let text = |r: &rusqlite::Row<'_>, i: usize| -> rusqlite::Result<String> {
            Ok(r.get::<_, Option<String>>(i)?.unwrap_or_default())
        };
        let mut tags = self
            .conn
            .prepare("SELECT key, value FROM registered_model_tags WHERE name = ?1 ORDER BY key")?;
        let mut versions = self.conn.prepare(
            "SELECT version, creation_time, last_updated_time, user_id, current_stage, \
             description, source, run_id, run_link FROM model_versions WHERE name = ?1 \
             ORDER BY version",
        )?;
        let mut version_tags = self.conn.prepare(
            "SELECT key, value FROM model_version_tags WHERE name = ?1 AND version = ?2 ORDER BY key",
        )?;
        let mut aliases = self.conn.prepare(
            "SELECT alias, version FROM registered_model_aliases WHERE name = ?1 ORDER BY alias",
        )?;
        for m in &mut models {
            m.tags = key_values(&mut tags, [&m.name])?;
            let all = versions
                .query_map([&m.name], |r| {
                    let stage: String = text(r, 4)?;
                    Ok((
                        stage,
                        ImportModelVersion {
                            version: r.get::<_, i64>(0)?.max(0) as u64,
                            creation_time: r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                            last_updated_time: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                            user_id: text(r, 3)?,
                            description: text(r, 5)?,
                            source: text(r, 6)?,
                            run_id: text(r, 7)?,
                            run_link: text(r, 8)?,
                            ..Default::default()
                        },
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            m.next_version = all.iter().map(|(_, v)| v.version).max().unwrap_or(0) + 1;
            for (stage, mut v) in all {
                let Some(stage) = Stage::parse(&stage) else {
                    continue; // Deleted_Internal
                };
                v.stage = stage;
                v.tags = key_values(
                    &mut version_tags,
                    rusqlite::params![&m.name, v.version as i64],
                )?;
                m.versions.push(v);
            }
            let live: Vec<u64> = m.versions.iter().map(|v| v.version).collect();
            m.aliases = aliases
                .query_map([&m.name], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                })?
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .filter(|(_, v)| live.contains(v))
                .collect();
        }
        Ok(models)
    }

    fn has_table(&self, name: &str) -> anyhow::Result<bool> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get(0),
        )?;
        Ok(n > 0)
    }

    /// The dataset inputs of run `run_id` (MLflow 2.4+), with their tags.
    fn inputs(&self, run_id: &str) -> anyhow::Result<Vec<DatasetInput>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT i.input_uuid, d.name, d.digest, d.dataset_source_type, d.dataset_source, \
             d.dataset_schema, d.dataset_profile FROM inputs i \
             JOIN datasets d ON d.dataset_uuid = i.source_id \
             WHERE i.destination_type = 'RUN' AND i.destination_id = ?1 \
             AND i.source_type = 'DATASET' ORDER BY d.name, d.digest",
        )?;
        let rows = stmt.query_map([run_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                Dataset {
                    name: r.get(1)?,
                    digest: r.get(2)?,
                    source_type: r.get(3)?,
                    source: r.get(4)?,
                    schema: r.get(5)?,
                    profile: r.get(6)?,
                },
            ))
        })?;
        let mut tags = self.conn.prepare_cached(
            "SELECT name, value FROM input_tags WHERE input_uuid = ?1 ORDER BY name",
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (uuid, dataset) = row?;
            let tags = key_values(&mut tags, [&uuid])?;
            out.push(DatasetInput { tags, dataset });
        }
        Ok(out)
    }

    /// The number of metric points of every run.
    pub(crate) fn point_count(&self) -> anyhow::Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM metrics", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Calls `each` with the metric points of run `run_id` in batches of at most `batch`
    /// (NaN where MLflow stored `is_nan`; ±Inf as MLflow stored them, ±f64::MAX).
    pub(crate) fn metrics(
        &self,
        run_id: &str,
        batch: usize,
        mut each: impl FnMut(Vec<Metric>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value, timestamp, step, is_nan FROM metrics WHERE run_uuid = ?1",
        )?;
        let mut rows = stmt.query([run_id])?;
        let mut buf: Vec<Metric> = Vec::with_capacity(batch.min(65_536));
        while let Some(r) = rows.next()? {
            let is_nan: bool = r.get::<_, Option<bool>>(4)?.unwrap_or(false);
            let value: f64 = if is_nan { f64::NAN } else { r.get(1)? };
            buf.push(Metric::new(
                r.get::<_, String>(0)?,
                value,
                r.get(2)?,
                r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            ));
            if buf.len() == batch {
                each(std::mem::replace(
                    &mut buf,
                    Vec::with_capacity(batch.min(65_536)),
                ))?;
            }
        }
        if !buf.is_empty() {
            each(buf)?;
        }
        Ok(())
    }
}
