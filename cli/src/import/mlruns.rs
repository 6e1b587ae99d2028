//! Reading an MLflow file store (`mlruns/`, MLflow's default before 3.0, still on many
//! laptops): `<experiment>/meta.yaml` with `tags/`, `<experiment>/<run>/meta.yaml` with
//! `metrics/`, `params/`, `tags/` (a key with `/` is a nested file), `inputs/` and `artifacts/`,
//! `<experiment>/datasets/`, deleted experiments under `.trash/`, and the model registry under
//! `models/<name>/` (`meta.yaml`, `tags/`, `aliases/`, `version-<n>/`).
//!
//! A metric file holds one point per line, `<timestamp> <value> <step>` (no step before MLflow
//! 1.0: step 0), the value as Python prints a float (`nan`, `inf`, `-inf` included). The
//! `meta.yaml` files are PyYAML's; every field is read as text and converted, so a field a
//! version of MLflow wrote as a number or a string reads the same.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use quiver_store::{
    Dataset, DatasetInput, ImportLoggedModel, ImportModelVersion, ImportRegisteredModel,
    LifecycleStage, Metric, ModelOutput, Param, RunStatus, Stage, Tag,
};
use yaml_rust2::{Yaml, YamlLoader};

use super::artifacts;
use super::source::{
    ModelPoints, PointReader, Source, SourceExperiment, SourceFile, SourceLoggedModel, SourceRun,
};

/// The directories of an experiment that are not runs.
const NOT_RUNS: [&str; 5] = ["tags", "datasets", "models", "traces", ".trash"];

/// An `mlruns/` directory as an import source.
#[derive(Debug)]
pub(crate) struct FileStore {
    root: PathBuf,
    identity: String,
    experiments: Vec<SourceExperiment>,
    runs: Vec<SourceRun>,
    /// Each run's directory, by run id.
    run_dirs: HashMap<String, PathBuf>,
    /// Runs that could not be read: (what, why).
    unreadable: Vec<(String, String)>,
    /// The logged models, with their directories.
    models: Vec<(SourceLoggedModel, PathBuf)>,
    /// The points logged for those models (their `metrics/` files).
    model_points: ModelPoints,
}

/// A parsed `meta.yaml`.
struct Meta {
    path: PathBuf,
    doc: Yaml,
}

impl Meta {
    fn read(path: &Path) -> anyhow::Result<Meta> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Meta::parse(path, &text)
    }

    /// Parses the text of the `meta.yaml` at `path` (named in errors).
    fn parse(path: &Path, text: &str) -> anyhow::Result<Meta> {
        let mut docs = YamlLoader::load_from_str(text)
            .map_err(|e| anyhow!("{}: not valid YAML: {e}", path.display()))?;
        if docs.is_empty() {
            bail!("{}: empty", path.display());
        }
        let doc = docs.swap_remove(0);
        if doc.as_hash().is_none() {
            bail!("{}: not a mapping of fields", path.display());
        }
        Ok(Meta {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// Field `key` as text (`None` when missing or null).
    fn text(&self, key: &str) -> Option<String> {
        scalar_text(&self.doc[key])
    }

    /// Field `key`, which must be there.
    fn required(&self, key: &str) -> anyhow::Result<String> {
        self.text(key)
            .ok_or_else(|| anyhow!("{}: no `{key}`", self.path.display()))
    }

    /// Field `key` as a number (`None` when missing or null).
    fn number(&self, key: &str) -> anyhow::Result<Option<i64>> {
        match self.text(key) {
            None => Ok(None),
            Some(t) => t.parse::<i64>().map(Some).map_err(|_| {
                anyhow!(
                    "{}: `{key}` is {t:?}, not a whole number",
                    self.path.display()
                )
            }),
        }
    }

    /// Field `key`, a mapping of text to text (`tags: {k: v}`), sorted by key.
    fn map(&self, key: &str) -> Vec<Tag> {
        let mut out: Vec<Tag> = self.doc[key]
            .as_hash()
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| {
                        Some(Tag::new(
                            scalar_text(k)?,
                            scalar_text(v).unwrap_or_default(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

/// A YAML scalar as the text it stands for.
fn scalar_text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(if *b { "true" } else { "false" }.to_string()),
        _ => None,
    }
}

fn lifecycle(meta: &Meta) -> LifecycleStage {
    match meta.text("lifecycle_stage").as_deref() {
        Some("deleted") => LifecycleStage::Deleted,
        _ => LifecycleStage::Active,
    }
}

/// MLflow's run status numbers (`RunStatus` of its protos).
fn run_status(meta: &Meta) -> RunStatus {
    match meta.text("status").as_deref() {
        Some("1" | "RUNNING") => RunStatus::Running,
        Some("2" | "SCHEDULED") => RunStatus::Scheduled,
        Some("4" | "FAILED") => RunStatus::Failed,
        Some("5" | "KILLED") => RunStatus::Killed,
        _ => RunStatus::Finished,
    }
}

/// The sub-directories of `dir`, by name (none when it does not exist).
fn subdirs(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if entry.file_type()?.is_dir() {
            out.push((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// The files under `dir` as (key, path): a key with `/` is a nested file. Sorted by key.
fn keyed_files(dir: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    Ok(artifacts::files(dir)?
        .into_iter()
        .map(|f| (f.rel, PathBuf::from(f.location)))
        .collect())
}

/// The (key, content) pairs of a `params/` or `tags/` directory.
fn key_values(dir: &Path) -> anyhow::Result<Vec<Tag>> {
    keyed_files(dir)?
        .into_iter()
        .map(|(key, path)| {
            let value = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            Ok(Tag::new(key, value))
        })
        .collect()
}

impl FileStore {
    /// Reads the experiments and runs of the file store at `root`. A run whose files cannot
    /// be read is an error naming the file, or with `skip_unreadable`, left out and listed by
    /// [`Source::unreadable`].
    pub(crate) fn open(root: &Path, skip_unreadable: bool) -> anyhow::Result<FileStore> {
        let mut store = FileStore {
            root: root.to_path_buf(),
            identity: std::fs::canonicalize(root)?.display().to_string(),
            experiments: Vec::new(),
            runs: Vec::new(),
            run_dirs: HashMap::new(),
            unreadable: Vec::new(),
            models: Vec::new(),
            model_points: ModelPoints::default(),
        };
        let mut dirs: Vec<PathBuf> = Vec::new();
        for parent in [root.to_path_buf(), root.join(".trash")] {
            for (name, dir) in subdirs(&parent)? {
                if name.parse::<i64>().is_ok() && dir.join("meta.yaml").is_file() {
                    dirs.push(dir);
                }
            }
        }
        if dirs.is_empty() {
            bail!(
                "{}: not an MLflow file store (no <experiment id>/meta.yaml in it)",
                root.display()
            );
        }
        for dir in dirs {
            let meta = Meta::read(&dir.join("meta.yaml"))?;
            let experiment = SourceExperiment {
                id: meta.required("experiment_id")?,
                name: meta.required("name")?,
                stage: lifecycle(&meta),
                creation_time: meta.number("creation_time")?.unwrap_or(0),
                last_update_time: meta.number("last_update_time")?.unwrap_or(0),
                tags: key_values(&dir.join("tags"))?,
            };
            let datasets = Datasets::new(&dir);
            for (name, run_dir) in subdirs(&dir)? {
                if NOT_RUNS.contains(&name.as_str()) || !run_dir.join("meta.yaml").is_file() {
                    continue;
                }
                match read_run(&run_dir, &experiment.id, &datasets) {
                    Ok(run) => {
                        store.run_dirs.insert(run.id.clone(), run_dir);
                        store.runs.push(run);
                    }
                    Err(e) if skip_unreadable => store
                        .unreadable
                        .push((run_dir.display().to_string(), format!("{e:#}"))),
                    Err(e) => {
                        return Err(e.context(format!(
                            "the run in {} (--on-error skip leaves it out)",
                            run_dir.display()
                        )))
                    }
                }
            }
            for (_, model_dir) in subdirs(&dir.join("models"))? {
                if model_dir.join("meta.yaml").is_file() {
                    let model = read_model(&model_dir, &experiment.id, &mut store.model_points)
                        .with_context(|| format!("the logged model in {}", model_dir.display()))?;
                    store.models.push((model, model_dir));
                }
            }
            store.experiments.push(experiment);
        }
        store
            .experiments
            .sort_by(|a, b| numeric_order(&a.id, &b.id));
        store.runs.sort_by(|a, b| {
            numeric_order(&a.experiment_id, &b.experiment_id)
                .then(a.start_time.cmp(&b.start_time))
                .then(a.id.cmp(&b.id))
        });
        Ok(store)
    }

    /// The directory holding run `run`'s artifacts: its artifact URI's when that is a local
    /// directory outside this file store (a custom artifact location), else the run's own
    /// `artifacts/` (also when the file store was moved since the runs were made).
    fn artifact_dir(&self, run: &SourceRun) -> Option<PathBuf> {
        let own = self.run_dirs.get(&run.id).map(|d| d.join("artifacts"));
        let uri = run.artifact_uri.as_str();
        let local = uri
            .strip_prefix("file://")
            .or_else(|| uri.starts_with('/').then_some(uri))
            .map(PathBuf::from);
        let default_layout = uri.ends_with(&format!("/{}/artifacts", run.id));
        match local {
            Some(dir) if !default_layout && dir.is_dir() => Some(dir),
            _ => own
                .filter(|d| d.is_dir())
                .or_else(|| local.filter(|d| d.is_dir())),
        }
    }
}

/// Experiment ids are numbers; compares them as such.
pub(super) fn numeric_order(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<i64>(), b.parse::<i64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The datasets of an experiment (`<experiment>/datasets/<id>/meta.yaml`), read when a run
/// names one.
struct Datasets {
    dir: PathBuf,
}

impl Datasets {
    fn new(experiment_dir: &Path) -> Datasets {
        Datasets {
            dir: experiment_dir.join("datasets"),
        }
    }

    fn get(&self, id: &str) -> anyhow::Result<Dataset> {
        let meta = Meta::read(&self.dir.join(id).join("meta.yaml"))?;
        Ok(Dataset {
            name: meta.required("name")?,
            digest: meta.required("digest")?,
            source_type: meta.text("source_type").unwrap_or_default(),
            source: meta.text("source").unwrap_or_default(),
            schema: meta.text("schema"),
            profile: meta.text("profile"),
        })
    }
}

/// Reads the run in `dir` (everything but its points and artifacts).
fn read_run(dir: &Path, experiment_id: &str, datasets: &Datasets) -> anyhow::Result<SourceRun> {
    let meta = Meta::read(&dir.join("meta.yaml"))?;
    let id = meta
        .text("run_id")
        .or_else(|| meta.text("run_uuid"))
        .ok_or_else(|| anyhow!("{}: no `run_id`", meta.path.display()))?;
    let tags = key_values(&dir.join("tags"))?;
    // Before MLflow 1.29 the name was only the `mlflow.runName` tag.
    let name = meta
        .text("run_name")
        .filter(|n| !n.is_empty())
        .or_else(|| {
            tags.iter()
                .find(|t| t.key == "mlflow.runName")
                .map(|t| t.value.clone())
        })
        .unwrap_or_default();
    let params = key_values(&dir.join("params"))?
        .into_iter()
        .map(|t| Param::new(t.key, t.value))
        .collect();
    let (mut inputs, mut model_inputs, mut outputs) = (Vec::new(), Vec::new(), Vec::new());
    for (_, output_dir) in subdirs(&dir.join("outputs"))? {
        let output = Meta::read(&output_dir.join("meta.yaml"))?;
        if output.text("destination_type").as_deref() == Some("MODEL_OUTPUT") {
            outputs.push(ModelOutput {
                model_id: output.required("destination_id")?,
                step: output.number("step")?.unwrap_or(0),
            });
        }
    }
    outputs.sort_by(|a, b| a.model_id.cmp(&b.model_id));
    for (_, input_dir) in subdirs(&dir.join("inputs"))? {
        let input = Meta::read(&input_dir.join("meta.yaml"))?;
        if input.text("destination_type").as_deref() == Some("MODEL_INPUT") {
            model_inputs.push(input.required("destination_id")?);
            continue;
        }
        if input.text("source_type").as_deref() != Some("DATASET") {
            continue;
        }
        let dataset = datasets.get(&input.required("source_id")?)?;
        inputs.push(DatasetInput {
            tags: input.map("tags"),
            dataset,
        });
    }
    inputs.sort_by(|a, b| {
        (&a.dataset.name, &a.dataset.digest).cmp(&(&b.dataset.name, &b.dataset.digest))
    });
    Ok(SourceRun {
        id,
        name,
        experiment_id: meta
            .text("experiment_id")
            .unwrap_or_else(|| experiment_id.to_string()),
        user_id: meta.text("user_id").unwrap_or_default(),
        status: run_status(&meta),
        start_time: meta.number("start_time")?.unwrap_or(0),
        end_time: meta.number("end_time")?,
        stage: lifecycle(&meta),
        deleted_time: meta.number("deleted_time")?,
        artifact_uri: meta.text("artifact_uri").unwrap_or_default(),
        tags,
        params,
        inputs,
        outputs,
        model_inputs,
    })
}

/// Reads the logged model in `dir` (MLflow 3), adding the points of its `metrics/` files
/// (`<timestamp> <value> <step> <run> [<dataset name> <dataset digest>]`) to `points`.
fn read_model(
    dir: &Path,
    experiment_id: &str,
    points: &mut ModelPoints,
) -> anyhow::Result<SourceLoggedModel> {
    let meta = Meta::read(&dir.join("meta.yaml"))?;
    let model_id = meta.required("model_id")?;
    for (key, path) in keyed_files(&dir.join("metrics"))? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            let (Some(point), Some(run)) = (parse_point(&key, line), fields.get(3)) else {
                bail!(
                    "{}: {line:?} is not `<timestamp> <value> <step> <run>`",
                    path.display()
                );
            };
            points.add(
                run,
                &key,
                point.timestamp,
                point.step,
                point.value,
                model_id.clone(),
                fields.get(4).map(|s| s.to_string()),
                fields.get(5).map(|s| s.to_string()),
            );
        }
    }
    let artifacts = dir.join("artifacts");
    Ok(SourceLoggedModel {
        model: ImportLoggedModel {
            experiment_id: meta
                .text("experiment_id")
                .unwrap_or_else(|| experiment_id.to_string()),
            name: meta.text("name").unwrap_or_default(),
            status: super::sqlite::model_status(meta.number("status")?.unwrap_or(0)),
            status_message: meta.text("status_message").unwrap_or_default(),
            model_type: meta.text("model_type").unwrap_or_default(),
            source_run_id: meta.text("source_run_id").unwrap_or_default(),
            creation_time: meta.number("creation_timestamp")?.unwrap_or(0),
            last_updated_time: meta.number("last_updated_timestamp")?.unwrap_or(0),
            tags: key_values(&dir.join("tags"))?,
            params: key_values(&dir.join("params"))?
                .into_iter()
                .map(|t| Param::new(t.key, t.value))
                .collect(),
            model_id,
        },
        deleted: lifecycle(&meta) == LifecycleStage::Deleted,
        artifact_uri: meta
            .text("artifact_location")
            .unwrap_or_else(|| artifacts.display().to_string()),
    })
}

/// Parses one line of a metric file: `<timestamp> <value> [<step>]` (a logged model's file
/// adds the run and dataset after the step; they are not part of the point).
fn parse_point(key: &str, line: &str) -> Option<Metric> {
    let mut fields = line.split_ascii_whitespace();
    let timestamp: i64 = fields.next()?.parse().ok()?;
    let value: f64 = fields.next()?.parse().ok()?;
    let step: i64 = match fields.next() {
        Some(s) => s.parse().ok()?,
        None => 0,
    };
    Some(Metric::new(key.to_string(), value, timestamp, step))
}

/// Reads the metric files of runs, given their directories.
///
/// The file store appends every logged point, so a file can repeat one (same timestamp, step
/// and value: the client's retries, `log_model` linking metrics). MLflow's database and Quiver
/// store such a repeat once; it is dropped here too, so the verification compares like with
/// like. That takes a set of the points of the file being read (about 50 bytes a point).
struct FilePoints {
    run_dirs: HashMap<String, PathBuf>,
    models: ModelPoints,
}

impl PointReader for FilePoints {
    fn metrics(
        &mut self,
        run_id: &str,
        batch: usize,
        each: &mut dyn FnMut(Vec<Metric>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let dir = self
            .run_dirs
            .get(run_id)
            .with_context(|| format!("run {run_id} is not in the file store"))?;
        let mut buf: Vec<Metric> = Vec::with_capacity(batch.min(65_536));
        let mut seen: HashSet<(i64, i64, u64)> = HashSet::new();
        for (key, path) in keyed_files(&dir.join("metrics"))? {
            seen.clear();
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            for (n, line) in BufReader::with_capacity(1 << 20, file).lines().enumerate() {
                let line = line.with_context(|| format!("reading {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                let point = parse_point(&key, &line).with_context(|| {
                    format!(
                        "{} line {}: {line:?} is not `<timestamp> <value> <step>`",
                        path.display(),
                        n + 1
                    )
                })?;
                let bits = if point.value.is_nan() {
                    f64::NAN.to_bits()
                } else {
                    point.value.to_bits()
                };
                if !seen.insert((point.timestamp, point.step, bits)) {
                    continue;
                }
                buf.push(point);
                if buf.len() == batch {
                    let mut full =
                        std::mem::replace(&mut buf, Vec::with_capacity(batch.min(65_536)));
                    self.models.attach(run_id, &mut full);
                    each(full)?;
                }
            }
        }
        if !buf.is_empty() {
            self.models.attach(run_id, &mut buf);
            each(buf)?;
        }
        Ok(())
    }
}

/// The number of lines of the file at `path` that are not blank.
fn count_lines(path: &Path) -> anyhow::Result<u64> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, mut in_line) = (0u64, false);
    loop {
        let got = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if got == 0 {
            break;
        }
        for &b in &buf[..got] {
            if b == b'\n' {
                n += u64::from(in_line);
                in_line = false;
            } else if !b.is_ascii_whitespace() {
                in_line = true;
            }
        }
    }
    Ok(n + u64::from(in_line))
}

/// The registry's versions directory names: `version-<n>`.
fn version_number(name: &str) -> Option<u64> {
    name.strip_prefix("version-")?.parse().ok()
}

impl FileStore {
    fn registered_model(&self, dir: &Path) -> anyhow::Result<ImportRegisteredModel> {
        let meta = Meta::read(&dir.join("meta.yaml"))?;
        let mut model = ImportRegisteredModel {
            name: meta.required("name")?,
            creation_time: meta.number("creation_timestamp")?.unwrap_or(0),
            last_updated_time: meta.number("last_updated_timestamp")?.unwrap_or(0),
            description: meta.text("description").unwrap_or_default(),
            tags: key_values(&dir.join("tags"))?,
            ..Default::default()
        };
        let mut highest = 0;
        for (name, vdir) in subdirs(dir)? {
            let Some(number) = version_number(&name) else {
                continue;
            };
            highest = highest.max(number);
            let v = Meta::read(&vdir.join("meta.yaml"))?;
            let Some(stage) = Stage::parse(&v.text("current_stage").unwrap_or_default()) else {
                continue; // Deleted_Internal: deleted, its number still counts
            };
            model.versions.push(ImportModelVersion {
                version: number,
                creation_time: v.number("creation_timestamp")?.unwrap_or(0),
                last_updated_time: v.number("last_updated_timestamp")?.unwrap_or(0),
                user_id: v.text("user_id").unwrap_or_default(),
                stage,
                description: v.text("description").unwrap_or_default(),
                source: v.text("source").unwrap_or_default(),
                run_id: v.text("run_id").unwrap_or_default(),
                run_link: v.text("run_link").unwrap_or_default(),
                tags: key_values(&vdir.join("tags"))?,
            });
        }
        model.versions.sort_by_key(|v| v.version);
        model.next_version = highest + 1;
        let live: Vec<u64> = model.versions.iter().map(|v| v.version).collect();
        // Aliases: one file each (`aliases/<alias>` holding the version), as the file store
        // writes them.
        model.aliases = keyed_files(&dir.join("aliases"))?
            .into_iter()
            .filter_map(|(alias, path)| {
                let v = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
                live.contains(&v).then_some((alias, v))
            })
            .collect();
        Ok(model)
    }
}

impl Source for FileStore {
    fn describe(&self) -> String {
        format!("{}: MLflow file store", self.root.display())
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
        let mut n = 0;
        for dir in self.run_dirs.values() {
            for (_, path) in keyed_files(&dir.join("metrics"))? {
                n += count_lines(&path)?;
            }
        }
        Ok(Some(n))
    }

    fn point_reader(&self) -> anyhow::Result<Box<dyn PointReader>> {
        Ok(Box::new(FilePoints {
            run_dirs: self.run_dirs.clone(),
            models: self.model_points.clone(),
        }))
    }

    fn artifact_files(&self, run: &SourceRun) -> anyhow::Result<Vec<SourceFile>> {
        match self.artifact_dir(run) {
            Some(dir) => artifacts::files(&dir),
            None => Ok(Vec::new()),
        }
    }

    fn open_artifact(&self, file: &SourceFile) -> anyhow::Result<Box<dyn Read + Send>> {
        artifacts::open_local(file)
    }

    fn registered_models(&self) -> anyhow::Result<Vec<ImportRegisteredModel>> {
        let mut out = Vec::new();
        for (_, dir) in subdirs(&self.root.join("models"))? {
            if dir.join("meta.yaml").is_file() {
                out.push(self.registered_model(&dir)?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn unreadable(&self) -> &[(String, String)] {
        &self.unreadable
    }

    fn logged_models(&self) -> anyhow::Result<Vec<SourceLoggedModel>> {
        Ok(self.models.iter().map(|(m, _)| m.clone()).collect())
    }

    fn model_artifact_files(&self, model: &SourceLoggedModel) -> anyhow::Result<Vec<SourceFile>> {
        // The model's own `artifacts/` (also when the file store was moved), else its location.
        let own = self
            .models
            .iter()
            .find(|(m, _)| m.model.model_id == model.model.model_id)
            .map(|(_, dir)| dir.join("artifacts"))
            .filter(|d| d.is_dir());
        match own.or_else(|| artifacts::local_dir(&model.artifact_uri, None)) {
            Some(dir) => artifacts::files(&dir),
            None => Ok(Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_parse_as_mlflow_writes_them() {
        let p = parse_point("k", "1796524632294 -inf 3").unwrap();
        assert_eq!((p.timestamp, p.step), (1796524632294, 3));
        assert_eq!(p.value, f64::NEG_INFINITY);
        assert!(parse_point("k", "5 nan 0").unwrap().value.is_nan());
        assert_eq!(parse_point("k", "5 1e-05").unwrap().step, 0);
        let model = parse_point("k", "5 0.5 2 ccf8ff99b55146ee8e2da7a8d19afc30").unwrap();
        assert_eq!((model.value, model.step), (0.5, 2));
        assert!(parse_point("k", "5 x 0").is_none());
        assert!(parse_point("k", "5").is_none());
    }

    #[test]
    fn meta_fields_read_as_text_whatever_their_yaml_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.yaml");
        std::fs::write(
            &path,
            "experiment_id: '12'\nname: exp a\nstatus: 3\nend_time: null\n\
             source: '{\"a\": 1, \"b\":\n  2}'\ntags:\n  k: v\n  n: 1\n",
        )
        .unwrap();
        let m = Meta::read(&path).unwrap();
        assert_eq!(m.required("experiment_id").unwrap(), "12");
        assert_eq!(m.text("name").as_deref(), Some("exp a"));
        assert_eq!(run_status(&m), RunStatus::Finished);
        assert_eq!(m.number("end_time").unwrap(), None);
        assert_eq!(m.text("source").as_deref(), Some("{\"a\": 1, \"b\": 2}"));
        assert_eq!(m.map("tags"), vec![Tag::new("k", "v"), Tag::new("n", "1")]);
        assert!(m.number("name").is_err());
        std::fs::write(&path, "- a\n").unwrap();
        assert!(Meta::read(&path).is_err());
    }

    proptest::proptest! {
        #[test]
        fn written_points_parse_back(ts in 0i64.., step: i64, value: f64) {
            let p = parse_point("k", &format!("{ts} {value:?} {step}")).unwrap();
            proptest::prop_assert_eq!((p.timestamp, p.step), (ts, step));
            proptest::prop_assert!(
                p.value.to_bits() == value.to_bits() || (p.value.is_nan() && value.is_nan())
            );
        }

        #[test]
        fn any_line_parses_or_is_refused(line in "\\PC*") {
            let _ = parse_point("k", &line);
        }

        #[test]
        fn any_meta_yaml_reads_or_is_refused(text in "\\PC*") {
            if let Ok(m) = Meta::parse(Path::new("meta.yaml"), &text) {
                let _ = (m.text("name"), m.number("status").ok(), m.map("tags"));
                let _ = run_status(&m);
            }
        }
    }

    #[test]
    fn blank_lines_are_not_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        std::fs::write(&path, "1 0.5 0\n\n2 0.5 1").unwrap();
        assert_eq!(count_lines(&path).unwrap(), 2);
    }
}
