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
mod sqlite;
pub(crate) mod verify;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use quiver_store::{ImportExperiment, LifecycleStage, RunInfo, Store, IMPORT_BATCH};

use crate::admin;
use feed::Reader;
use journal::Journal;
use sqlite::{MlflowDb, SourceExperiment, SourceRun};
use verify::SeriesSums;

/// What `quiver import` imports from.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Import an MLflow tracking database (experiments, runs with their params, tags and every
    /// metric point, and their artifacts) into a store directory, then verify it.
    ///
    /// Example: quiver import mlflow --from sqlite:///mlflow.db --artifacts ./mlartifacts
    Mlflow(MlflowArgs),
}

/// The arguments of `quiver import mlflow`.
#[derive(Debug, clap::Args)]
pub(crate) struct MlflowArgs {
    /// The source: an MLflow database file, as `sqlite:///path/to/mlflow.db` or its path.
    #[arg(long)]
    from: String,
    /// The source's artifact root, where `mlflow-artifacts:/` URIs point (the
    /// `--artifacts-destination` of `mlflow server`, `./mlartifacts` by default). Runs whose
    /// artifact URI is a local path are read from that path.
    #[arg(long)]
    artifacts: Option<PathBuf>,
    /// The store directory to import into (created when missing). A store a server has open is
    /// locked: stop the server first.
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
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

/// The database file a `--from` names.
fn database_path(from: &str) -> anyhow::Result<PathBuf> {
    if from.starts_with("http://") || from.starts_with("https://") {
        bail!("importing from a running MLflow server is not supported yet: give its database file (sqlite:///path/mlflow.db)");
    }
    let path = PathBuf::from(from.strip_prefix("sqlite:///").unwrap_or(from));
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
        bail!("{}: a directory (an mlruns/ file store?); importing MLflow's file store is not supported yet: give a database file (sqlite:///path/mlflow.db)", path.display());
    }
    Ok(path)
}

/// The user the registry's history names for imported models.
const IMPORT_USER: &str = "quiver-import";

/// What one import did.
#[derive(Debug, Default)]
struct Tally {
    runs: u64,
    runs_already: u64,
    points: u64,
    artifact_files: u64,
    artifact_bytes: u64,
    failed: Vec<(String, String)>,
}

fn import_mlflow(args: &MlflowArgs) -> anyhow::Result<()> {
    let path = database_path(&args.from)?;
    let db = MlflowDb::open(&path)?;
    let experiments = db.experiments()?;
    let runs = db.runs()?;
    let total_points = db.point_count()?;
    let source = std::fs::canonicalize(&path)?.display().to_string();
    println!(
        "{}: MLflow database (schema {}), {} experiments, {} runs, {} metric points",
        path.display(),
        db.revision,
        experiments.len(),
        runs.len(),
        total_points
    );
    if args.dry_run {
        return dry_run(args, &source, &runs);
    }
    let store = Store::open(&args.store)
        .map_err(admin::store_error)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    let src = Source {
        db: &db,
        path: &path,
        id: &source,
        experiments: &experiments,
        runs: &runs,
        total_points,
    };
    let result = import_into(&store, args, &src);
    admin::close(store)?;
    result
}

fn dry_run(args: &MlflowArgs, source: &str, runs: &[SourceRun]) -> anyhow::Result<()> {
    let journal = Journal::open(&args.store, source)?;
    let done = runs.iter().filter(|r| journal.is_done(&r.id)).count();
    let (mut files, mut bytes) = (0u64, 0u64);
    for r in runs {
        if let Some(dir) = artifacts::source_dir(r, args.artifacts.as_deref()) {
            for f in artifacts::files(&dir)? {
                files += 1;
                bytes += f.size;
            }
        }
    }
    println!(
        "dry run: would import {} runs ({} already imported into {}), {} artifact files ({} bytes); nothing changed",
        runs.len() - done,
        done,
        args.store.display(),
        files,
        bytes
    );
    Ok(())
}

/// The source as read once: the database, its path and identity, its experiments and runs.
struct Source<'a> {
    db: &'a MlflowDb,
    path: &'a Path,
    /// The canonical path, which names the import's journal.
    id: &'a str,
    experiments: &'a [SourceExperiment],
    runs: &'a [SourceRun],
    total_points: u64,
}

fn import_into(store: &Store, args: &MlflowArgs, src: &Source<'_>) -> anyhow::Result<()> {
    let started = Instant::now();
    let (db, source, experiments, runs) = (src.db, src.id, src.experiments, src.runs);
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
        println!(
            "{} experiment ids were taken here (source id, Quiver id, name written to {}):",
            moved.len(),
            file.display()
        );
        for line in &moved {
            let cols: Vec<&str> = line.split('\t').collect();
            println!("  {} -> {} ({})", cols[0], cols[1], cols[2]);
        }
    }

    // Runs, one at a time, each recorded in the journal when complete.
    let bar = ProgressBar::new(src.total_points).with_style(
        ProgressStyle::with_template(
            "{prefix} [{bar:30}] {human_pos}/{human_len} points, {per_sec} {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_prefix("runs");
    let mut tally = Tally::default();
    let mut sums: HashMap<String, SeriesSums> = HashMap::new();
    let todo: Vec<&SourceRun> = runs.iter().filter(|r| !journal.is_done(&r.id)).collect();
    tally.runs_already = (runs.len() - todo.len()) as u64;
    let reader = Reader::start(
        src.path.to_path_buf(),
        todo.iter().map(|r| r.id.clone()).collect(),
    );
    for (i, run) in todo.iter().enumerate() {
        bar.set_message(format!("run {}/{}", i + 1, todo.len()));
        match import_run(store, &reader, args, run, &ids, &bar) {
            Ok((run_sums, files, bytes)) => {
                journal.mark_done(&run.id)?;
                tally.runs += 1;
                tally.points += run_sums.points();
                tally.artifact_files += files;
                tally.artifact_bytes += bytes;
                sums.insert(run.id.clone(), run_sums);
            }
            Err(e) if args.on_error == OnError::Skip => {
                bar.println(format!("skipped run {}: {e:#}", run.id));
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
    let models = db.registered_models()?;
    let mut made = 0;
    for m in &models {
        let created = store
            .import_registered_model(m, IMPORT_USER)
            .map_err(admin::store_error)
            .with_context(|| format!("registered model {}", m.name))?;
        made += u64::from(created);
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {} runs ({} imported before), {} metric points, {} artifact files ({} bytes) in {:.1} s ({:.0} points/s)",
        tally.runs,
        tally.runs_already,
        tally.points,
        tally.artifact_files,
        tally.artifact_bytes,
        secs,
        tally.points as f64 / secs.max(1e-9)
    );
    println!(
        "imported {made} registered models with {} versions ({} were here before)",
        models.iter().map(|m| m.versions.len()).sum::<usize>(),
        models.len() as u64 - made
    );
    let mut verified = verify_all(store, db, args, runs, &tally, &mut sums);
    let registry = verify::registry_differences(store, &models);
    if verified.is_ok() && !registry.is_empty() {
        for p in registry.iter().take(50) {
            eprintln!("{p}");
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

/// Imports one run completely: info, tags, params, metric points (from `reader`, whose
/// batches of this run are consumed whatever happens), artifacts, stage.
fn import_run(
    store: &Store,
    reader: &Reader,
    args: &MlflowArgs,
    run: &SourceRun,
    ids: &HashMap<String, String>,
    bar: &ProgressBar,
) -> anyhow::Result<(SeriesSums, u64, u64)> {
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
    let (files, bytes) = match artifacts::source_dir(run, args.artifacts.as_deref()) {
        Some(dir) => artifacts::copy(store, &run.id, &dir)?,
        None => (0, 0),
    };
    store
        .finish_imported_run(&run.id, run.stage, run.deleted_time)
        .map_err(admin::store_error)?;
    Ok((sums, files, bytes))
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
    Ok(())
}

/// Compares every run of the source with the store; an error when any differs.
fn verify_all(
    store: &Store,
    db: &MlflowDb,
    args: &MlflowArgs,
    runs: &[SourceRun],
    tally: &Tally,
    sums: &mut HashMap<String, SeriesSums>,
) -> anyhow::Result<()> {
    let failed: Vec<&str> = tally.failed.iter().map(|(id, _)| id.as_str()).collect();
    let mut problems = Vec::new();
    let mut points = 0;
    for run in runs.iter().filter(|r| !failed.contains(&r.id.as_str())) {
        let src = match sums.remove(&run.id) {
            Some(s) => s,
            None => {
                let mut s = SeriesSums::default();
                db.metrics(&run.id, IMPORT_BATCH, |b| {
                    s.add(&b);
                    Ok(())
                })?;
                s
            }
        };
        points += src.points();
        let mut diffs = verify::differences(store, run, &src).map_err(admin::store_error)?;
        if let Some(dir) = artifacts::source_dir(run, args.artifacts.as_deref()) {
            diffs.extend(artifacts::differences(store, &run.id, &dir)?);
        }
        problems.extend(diffs.into_iter().map(|d| format!("run {}: {d}", run.id)));
    }
    if problems.is_empty() {
        println!(
            "verified {} runs and {} metric points: identical to the source",
            runs.len() - failed.len(),
            points
        );
        return Ok(());
    }
    for p in problems.iter().take(50) {
        eprintln!("{p}");
    }
    bail!(
        "verification found {} differences between the source and the store",
        problems.len()
    )
}

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
