//! `quiver import mlflow`: brings an MLflow tracking database (the `sqlite:///mlflow.db` that
//! `mlflow ui` and `mlflow server` create) into a store directory, with its artifacts, checked
//! point by point afterwards.
//!
//! Experiments keep their ids when those are free (else the mapping is printed and written to
//! `<store>/import/<source>.experiment-ids`), runs keep theirs, so `runs:/` URIs still resolve.
//! The import can be run again and resumed after an interruption ([`journal`]).

mod artifacts;
mod feed;
mod journal;
mod mlruns;
mod remote;
mod report;
mod rest;
mod source;
mod sqlite;
pub(crate) mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::ProgressBar;
use quiver_store::{
    ImportExperiment, ImportLoggedModel, LifecycleStage, ModelOutput, RunInfo, Store, IMPORT_BATCH,
};

use crate::admin;
use feed::Reader;
use journal::Journal;
pub(crate) use remote::ServerImporter;
pub(crate) use report::Report;
use source::{Source, SourceFile, SourceLoggedModel, SourceRun};
use verify::SeriesSums;

/// What `quiver import` imports from.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Import an MLflow tracking database (experiments, runs with their params, tags and every
    /// metric point, and their artifacts) into a store directory, then verify it.
    ///
    /// Example: quiver import mlflow --from sqlite:///mlflow.db --artifacts ./mlartifacts
    ///
    /// From a running MLflow server: quiver import mlflow --from http://host:5000
    Mlflow(MlflowArgs),
}

/// The arguments of `quiver import mlflow`.
#[derive(Debug, clap::Args)]
pub(crate) struct MlflowArgs {
    /// The source: an MLflow database file, as `sqlite:///path/to/mlflow.db` or its path; an
    /// `mlruns/` directory (MLflow's file store); or a running MLflow tracking server, any
    /// backend, as `http://host:5000`, read through its REST API (credentials from
    /// MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN).
    #[arg(long)]
    from: String,
    /// The source's artifact root, where `mlflow-artifacts:/` URIs point (the
    /// `--artifacts-destination` of `mlflow server`, `./mlartifacts` by default). Runs whose
    /// artifact URI is a local path are read from that path. Not for a server source: its
    /// artifacts are read through the server.
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// The store directory to import into (created when missing). A store a server has open is
    /// locked: import through that server with --url.
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
    /// Import into the running `quiver server` at this URL instead of a store directory (the
    /// server reads the source from its own disk: it must listen on a loopback address).
    #[arg(long)]
    url: Option<String>,
    /// Print what would be imported, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// On a run that cannot be imported: stop, or skip it and go on (then the import exits
    /// non-zero at the end, naming the runs it skipped).
    #[arg(long, value_enum, default_value = "stop")]
    on_error: OnError,
}

/// What to do with a run that fails to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnError {
    /// Stop the import (what was imported stays; run it again to resume).
    Stop,
    /// Skip the run and go on.
    Skip,
}

/// Runs `quiver import`.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Mlflow(args) => import_mlflow(&args),
    }
}

/// The source a `--from` names: an MLflow database file, an `mlruns/` directory or a running
/// MLflow server.
fn open_source(args: &MlflowArgs) -> anyhow::Result<Box<dyn Source>> {
    let from = args.from.as_str();
    if from.starts_with("http://") || from.starts_with("https://") {
        if args.artifacts.is_some() {
            bail!("--artifacts is for a database source: a server's artifacts are read through the server");
        }
        return Ok(Box::new(rest::Server::open(from)?));
    }
    let file_uri = from.strip_prefix("file://");
    let path = PathBuf::from(file_uri.or(from.strip_prefix("sqlite:///")).unwrap_or(from));
    if !path.exists() && from.starts_with("sqlite:///") && Path::new("/").join(&path).is_file() {
        // SQLAlchemy's rule, which MLflow follows: three slashes and a relative path.
        bail!(
            "{}: no such file (relative to this directory); for the absolute path write \
             sqlite:////{}",
            path.display(),
            path.display()
        );
    }
    if path.is_dir() {
        if from.starts_with("sqlite:") {
            bail!("{}: a directory, not a database file", path.display());
        }
        let skip = args.on_error == OnError::Skip;
        return Ok(Box::new(mlruns::FileStore::open(&path, skip)?));
    }
    if file_uri.is_some() {
        bail!("{}: not an mlruns/ directory", path.display());
    }
    Ok(Box::new(sqlite::DbSource::open(
        &path,
        args.artifacts.clone(),
    )?))
}

/// The user the registry's history names for imported models.
const IMPORT_USER: &str = "quiver-import";

/// What one import did.
#[derive(Debug, Default)]
struct Tally {
    models: u64,
    runs: u64,
    runs_already: u64,
    points: u64,
    artifact_files: u64,
    artifact_bytes: u64,
    failed: Vec<(String, String)>,
}

fn import_mlflow(args: &MlflowArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.url {
        return remote::import(url, args);
    }
    let report = Report::terminal();
    let source = open_source(args)?;
    if args.dry_run {
        return dry_run(args, source.as_ref(), &report);
    }
    let store = match Store::open(&args.store) {
        Ok(store) => store,
        Err(e @ quiver_store::Error::Locked { .. }) => bail!(
            "{e}\nA server has this store open: import through it with --url http://<its address>"
        ),
        Err(e) => {
            return Err(admin::store_error(e))
                .with_context(|| format!("opening the store {}", args.store.display()))
        }
    };
    let result = import_into(&store, args, source.as_ref(), &report);
    admin::close(store)?;
    result
}

/// Imports from the source `args` names into `store` (open at `args.store`), saying what it
/// does to `report`: what `quiver import` does, in this process or inside a server.
pub(crate) fn import_with(
    store: &Store,
    args: &MlflowArgs,
    report: &Report<'_>,
) -> anyhow::Result<()> {
    let source = open_source(args)?;
    if args.dry_run {
        return dry_run(args, source.as_ref(), report);
    }
    import_into(store, args, source.as_ref(), report)
}

/// Says what the source holds; returns its point count when the source knows it.
fn describe(source: &dyn Source, report: &Report<'_>) -> anyhow::Result<Option<u64>> {
    let total_points = source.point_count()?;
    report.say(format!(
        "{}, {} experiments, {} runs, {} metric points",
        source.describe(),
        source.experiments().len(),
        source.runs().len(),
        total_points.map_or("an unknown number of".to_string(), |n| n.to_string())
    ));
    Ok(total_points)
}

fn dry_run(args: &MlflowArgs, source: &dyn Source, report: &Report<'_>) -> anyhow::Result<()> {
    describe(source, report)?;
    let journal = Journal::open(&args.store, source.identity())?;
    let runs = source.runs();
    let done = runs.iter().filter(|r| journal.is_done(&r.id)).count();
    let (mut files, mut bytes) = (0u64, 0u64);
    for r in runs {
        for f in source.artifact_files(r)? {
            files += 1;
            bytes += f.size;
        }
    }
    report.say(format!(
        "dry run: would import {} runs ({} already imported into {}), {} artifact files ({} bytes); nothing changed",
        runs.len() - done,
        done,
        args.store.display(),
        files,
        bytes
    ));
    Ok(())
}

fn import_into(
    store: &Store,
    args: &MlflowArgs,
    src: &dyn Source,
    report: &Report<'_>,
) -> anyhow::Result<()> {
    let total_points = describe(src, report)?;
    let started = Instant::now();
    let (source, experiments, runs) = (src.identity(), src.experiments(), src.runs());
    let mut journal = Journal::open(&args.store, source)?;

    // Experiments: matched by name, ids kept where free.
    let mut ids: HashMap<String, String> = HashMap::new();
    let mut moved = Vec::new();
    for e in experiments {
        let got = store
            .import_experiment(&ImportExperiment {
                experiment_id: e.id.clone(),
                name: e.name.clone(),
                lifecycle_stage: e.stage,
                creation_time: e.creation_time,
                tags: e.tags.clone(),
            })
            .map_err(admin::store_error)
            .with_context(|| format!("experiment {} ({})", e.id, e.name))?;
        if got.created {
            // Recorded so that a resumed import still gives it its stage (below).
            journal.mark_done(&experiment_entry(&got.experiment_id))?;
        }
        if got.experiment_id != e.id {
            moved.push(format!("{}\t{}\t{}", e.id, got.experiment_id, e.name));
        }
        ids.insert(e.id.clone(), got.experiment_id);
    }
    if !moved.is_empty() {
        let file = journal_sibling(&args.store, source, "experiment-ids");
        std::fs::write(
            &file,
            format!("source_id\tquiver_id\tname\n{}\n", moved.join("\n")),
        )?;
        report.say(format!(
            "{} experiment ids were taken here (source id, Quiver id, name written to {}):",
            moved.len(),
            file.display()
        ));
        for line in &moved {
            let cols: Vec<&str> = line.split('\t').collect();
            report.say(format!("  {} -> {} ({})", cols[0], cols[1], cols[2]));
        }
    }

    // Logged models, before the runs that produced them and the points logged for them.
    let mut tally = Tally::default();
    let logged = import_logged_models(
        store,
        src,
        &ids,
        &mut journal,
        &mut tally,
        args.on_error,
        report,
    )?;

    // Runs, one at a time, each recorded in the journal when complete.
    let bar = report.bar("runs", "points", total_points);
    for (what, why) in src.unreadable() {
        report.say(format!("skipped {what}: {why}"));
        tally.failed.push((what.clone(), why.clone()));
    }
    let mut sums: HashMap<String, Imported> = HashMap::new();
    let todo: Vec<&SourceRun> = runs.iter().filter(|r| !journal.is_done(&r.id)).collect();
    tally.runs_already = (runs.len() - todo.len()) as u64;
    let reader = Reader::start(
        src.point_reader()?,
        todo.iter().map(|r| r.id.clone()).collect(),
    );
    for (i, run) in todo.iter().enumerate() {
        if report.abandoned() {
            bail!(
                "stopped after {} runs: the client went away (run the same import again to resume)",
                tally.runs
            );
        }
        bar.set_message(format!("run {}/{}", i + 1, todo.len()));
        report.progress(|| {
            format!(
                "runs {}/{}, {} points, {:.0} points/s",
                i,
                todo.len(),
                tally.points,
                tally.points as f64 / started.elapsed().as_secs_f64().max(1e-9)
            )
        });
        match import_run(store, &reader, src, run, &ids, &bar) {
            Ok((imported, bytes)) => {
                journal.mark_done(&run.id)?;
                tally.runs += 1;
                tally.points += imported.sums.points();
                tally.artifact_files += imported.files.len() as u64;
                tally.artifact_bytes += bytes;
                sums.insert(run.id.clone(), imported);
            }
            Err(e) if args.on_error == OnError::Skip => {
                report.warn_over(&bar, format!("skipped run {}: {e:#}", run.id));
                tally.failed.push((run.id.clone(), format!("{e:#}")));
            }
            Err(e) => {
                bar.abandon();
                return Err(e.context(format!(
                    "run {} (run the same import again to resume)",
                    run.id
                )));
            }
        }
    }
    bar.finish_and_clear();
    // Logged models deleted in the source are deleted once the runs naming them are in.
    for m in logged.iter().filter(|m| m.deleted) {
        if store.get_logged_model(&m.model.model_id).is_ok() {
            store
                .delete_logged_model(&m.model.model_id)
                .map_err(admin::store_error)?;
        }
    }
    // Deleted experiments are deleted, but only those this import created: an experiment of the
    // same name that was here before keeps its stage.
    for e in experiments {
        let id = &ids[&e.id];
        if journal.is_done(&experiment_entry(id)) {
            store
                .finish_imported_experiment(id, e.stage, e.last_update_time)
                .map_err(admin::store_error)?;
        }
    }
    // The registry, each model whole, after the runs its versions name.
    let models = src.registered_models()?;
    let mut made = 0;
    for m in &models {
        let created = store
            .import_registered_model(m, IMPORT_USER)
            .map_err(admin::store_error)
            .with_context(|| format!("registered model {}", m.name))?;
        made += u64::from(created);
    }
    let secs = started.elapsed().as_secs_f64();
    report.say(format!(
        "imported {} runs ({} imported before), {} logged models, {} metric points, {} artifact files ({} bytes) in {:.1} s ({:.0} points/s)",
        tally.runs,
        tally.runs_already,
        tally.models,
        tally.points,
        tally.artifact_files,
        tally.artifact_bytes,
        secs,
        tally.points as f64 / secs.max(1e-9)
    ));
    report.say(format!(
        "imported {made} registered models with {} versions ({} were here before)",
        models.iter().map(|m| m.versions.len()).sum::<usize>(),
        models.len() as u64 - made
    ));
    let mut verified = verify_all(store, src, &tally, &mut sums, report);
    if verified.is_ok() {
        verified = verify_logged_models(store, src, &logged, &ids, &tally, report);
    }
    let registry = verify::registry_differences(store, &models);
    if verified.is_ok() && !registry.is_empty() {
        for p in registry.iter().take(50) {
            report.warn(p.clone());
        }
        verified = Err(anyhow::anyhow!(
            "verification found {} differences in the model registry",
            registry.len()
        ));
    }
    if !tally.failed.is_empty() {
        bail!(
            "{} runs were skipped: {}",
            tally.failed.len(),
            tally
                .failed
                .iter()
                .map(|(id, e)| format!("{id} ({e})"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    verified
}

/// The journal's entry for a logged model imported completely.
fn model_entry(id: &str) -> String {
    format!("model:{id}")
}

/// Imports the logged models the journal does not list (record, tags, params, files);
/// returns all the source's logged models.
fn import_logged_models(
    store: &Store,
    src: &dyn Source,
    ids: &HashMap<String, String>,
    journal: &mut Journal,
    tally: &mut Tally,
    on_error: OnError,
    report: &Report<'_>,
) -> anyhow::Result<Vec<SourceLoggedModel>> {
    let logged = src.logged_models()?;
    for m in &logged {
        if journal.is_done(&model_entry(&m.model.model_id)) {
            continue;
        }
        let result = (|| {
            let experiment_id = ids.get(&m.model.experiment_id).with_context(|| {
                format!(
                    "its experiment {} is not in the source",
                    m.model.experiment_id
                )
            })?;
            let model = ImportLoggedModel {
                experiment_id: experiment_id.clone(),
                ..m.model.clone()
            };
            // Here already but not in the journal: cut off while its files were copied.
            store
                .import_logged_model(&model)
                .map_err(admin::store_error)?;
            let (files, bytes) = artifacts::copy_model(store, src, m)?;
            tally.artifact_files += files;
            tally.artifact_bytes += bytes;
            anyhow::Ok(())
        })();
        match result {
            Ok(()) => {
                journal.mark_done(&model_entry(&m.model.model_id))?;
                tally.models += 1;
            }
            Err(e) if on_error == OnError::Skip => {
                report.say(format!("skipped logged model {}: {e:#}", m.model.model_id));
                tally
                    .failed
                    .push((m.model.model_id.clone(), format!("{e:#}")));
            }
            Err(e) => {
                return Err(e.context(format!(
                    "logged model {} (run the same import again to resume)",
                    m.model.model_id
                )))
            }
        }
    }
    Ok(logged)
}

/// Compares the logged models of the source with the store's.
fn verify_logged_models(
    store: &Store,
    src: &dyn Source,
    logged: &[SourceLoggedModel],
    ids: &HashMap<String, String>,
    tally: &Tally,
    report: &Report<'_>,
) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    for m in logged {
        let id = &m.model.model_id;
        if tally.failed.iter().any(|(f, _)| f == id) {
            continue;
        }
        let expected = ImportLoggedModel {
            experiment_id: ids.get(&m.model.experiment_id).cloned().unwrap_or_default(),
            ..m.model.clone()
        };
        problems.extend(
            verify::logged_model_differences(store, &expected, m.deleted)
                .into_iter()
                .map(|d| format!("logged model {id}: {d}")),
        );
        if !m.deleted {
            problems.extend(
                artifacts::model_differences(store, src, m)?
                    .into_iter()
                    .map(|d| format!("logged model {id}: {d}")),
            );
        }
    }
    if problems.is_empty() {
        if !logged.is_empty() {
            report.say(format!(
                "verified {} logged models: identical to the source",
                logged.len()
            ));
        }
        return Ok(());
    }
    for p in problems.iter().take(50) {
        report.warn(p.clone());
    }
    bail!(
        "verification found {} differences in the logged models",
        problems.len()
    )
}

/// What the import read of a run, kept for its verification (so the source is not read twice).
struct Imported {
    sums: SeriesSums,
    /// Its artifact files as the source listed them.
    files: Vec<SourceFile>,
}

/// Imports one run completely: info, tags, params, metric points (from `reader`, whose
/// batches of this run are consumed whatever happens), artifacts, stage. Returns what it read
/// and the artifact bytes copied.
fn import_run(
    store: &Store,
    reader: &Reader,
    src: &dyn Source,
    run: &SourceRun,
    ids: &HashMap<String, String>,
    bar: &ProgressBar,
) -> anyhow::Result<(Imported, u64)> {
    if let Err(e) = create_run(store, run, ids) {
        reader.skip_run();
        return Err(e);
    }
    let mut sums = SeriesSums::default();
    while let Some(batch) = reader.next()? {
        if let Err(e) = store.import_metrics(&run.id, &batch) {
            reader.skip_run();
            return Err(admin::store_error(e));
        }
        sums.add(&batch);
        bar.inc(batch.len() as u64);
    }
    let files = src.artifact_files(run)?;
    let (_, bytes) = artifacts::copy(store, src, run, &files)?;
    store
        .finish_imported_run(&run.id, run.stage, run.deleted_time)
        .map_err(admin::store_error)?;
    Ok((Imported { sums, files }, bytes))
}

/// Creates the run with its info, tags and params. A run the store has but the journal does
/// not was cut off earlier: it is discarded and created anew.
fn create_run(store: &Store, run: &SourceRun, ids: &HashMap<String, String>) -> anyhow::Result<()> {
    if store.get_run(&run.id).is_ok() {
        store
            .discard_imported_run(&run.id)
            .map_err(admin::store_error)?;
    }
    let experiment_id = ids
        .get(&run.experiment_id)
        .with_context(|| format!("its experiment {} is not in the source", run.experiment_id))?;
    let info = RunInfo {
        run_id: run.id.clone(),
        run_name: run.name.clone(),
        experiment_id: experiment_id.clone(),
        user_id: run.user_id.clone(),
        status: run.status,
        start_time: run.start_time,
        end_time: run.end_time,
        lifecycle_stage: LifecycleStage::Active,
        artifact_uri: String::new(),
        deleted_time: None,
    };
    store
        .import_run(&info, &run.tags, &run.params)
        .map_err(admin::store_error)?;
    for chunk in run.inputs.chunks(1000) {
        store
            .log_inputs(&run.id, chunk)
            .map_err(admin::store_error)?;
    }
    // Links to logged models the store has (one that failed to import is reported already).
    let here = |id: &String| store.get_logged_model(id).is_ok();
    let outputs: Vec<ModelOutput> = run
        .outputs
        .iter()
        .filter(|o| here(&o.model_id))
        .cloned()
        .collect();
    let inputs: Vec<String> = run
        .model_inputs
        .iter()
        .filter(|id| here(id))
        .cloned()
        .collect();
    for chunk in outputs.chunks(1000) {
        store
            .log_run_outputs(&run.id, chunk)
            .map_err(admin::store_error)?;
    }
    for chunk in inputs.chunks(1000) {
        store
            .log_model_inputs(&run.id, chunk)
            .map_err(admin::store_error)?;
    }
    Ok(())
}

/// Compares every run of the source with the store; an error when any differs.
fn verify_all(
    store: &Store,
    src: &dyn Source,
    tally: &Tally,
    sums: &mut HashMap<String, Imported>,
    report: &Report<'_>,
) -> anyhow::Result<()> {
    let runs = src.runs();
    let mut reader = None;
    let failed: Vec<&str> = tally.failed.iter().map(|(id, _)| id.as_str()).collect();
    let mut problems = Vec::new();
    let (mut points, mut verified) = (0, 0);
    let bar = report.bar("verify", "runs", Some(runs.len() as u64));
    for run in runs.iter().filter(|r| !failed.contains(&r.id.as_str())) {
        bar.inc(1);
        verified += 1;
        let (expected, listed) = match sums.remove(&run.id) {
            Some(i) => (i.sums, Some(i.files)),
            None => {
                // Imported before: read again from the source.
                let reader = match &mut reader {
                    Some(r) => r,
                    None => {
                        let mut r = src.point_reader()?;
                        // This run and those after it that were imported before.
                        let again: Vec<String> = runs
                            .iter()
                            .skip_while(|r| r.id != run.id)
                            .filter(|r| {
                                !failed.contains(&r.id.as_str())
                                    && (r.id == run.id || !sums.contains_key(&r.id))
                            })
                            .map(|r| r.id.clone())
                            .collect();
                        r.will_read(&again);
                        reader.insert(r)
                    }
                };
                let mut s = SeriesSums::default();
                reader.metrics(&run.id, IMPORT_BATCH, &mut |b| {
                    s.add(&b);
                    Ok(())
                })?;
                (s, None)
            }
        };
        points += expected.points();
        let mut diffs = verify::differences(store, run, &expected).map_err(admin::store_error)?;
        let files = match listed {
            Some(files) => files,
            None => src.artifact_files(run)?,
        };
        diffs.extend(artifacts::differences(store, run, files)?);
        problems.extend(diffs.into_iter().map(|d| format!("run {}: {d}", run.id)));
    }
    bar.finish_and_clear();
    if problems.is_empty() {
        report.say(format!(
            "verified {} runs and {} metric points: identical to the source",
            verified, points
        ));
        return Ok(());
    }
    for p in problems.iter().take(50) {
        report.warn(p.clone());
    }
    bail!(
        "verification found {} differences between the source and the store",
        problems.len()
    )
}

/// A bar of points against the total, or a spinner with the count and rate when the source
/// cannot tell the total.
/// The journal's entry for an experiment this import created.
fn experiment_entry(id: &str) -> String {
    format!("experiment:{id}")
}

/// A file next to the import's journal.
fn journal_sibling(store: &Path, source: &str, what: &str) -> PathBuf {
    let digest = blake3::hash(source.as_bytes()).to_hex();
    let dir = store.join("import");
    let _ = std::fs::create_dir_all(&dir);
    dir.join(format!("{}.{what}", &digest[..32]))
}
