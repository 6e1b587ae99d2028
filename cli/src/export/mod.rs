//! `quiver export mlflow`: writes a store (or some of its experiments, or its runs since a
//! time) into a running MLflow tracking server through MLflow's REST API, then reads the
//! target back to check it.
//!
//! The order: experiments (matched by name, else created), runs (created anew, as REST gives
//! new ids: info and tags, params, every metric point, dataset inputs, artifacts through the
//! artifact proxy, status and end time, deleted when deleted here), parent links rewritten to
//! the new ids where a parent came after its child, logged models (made anew, see
//! [`logged_models`]), deleted experiments deleted, then the model registry with the same
//! version numbers. The ids are mapped in a TSV file, and a
//! [`journal`] under `<store>/export/` makes the export repeatable and resumable.

mod journal;
mod logged_models;
mod registry;
mod runs;
mod summary;
mod verify;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{anyhow, bail, Context};
use indicatif::{ProgressBar, ProgressStyle};
use quiver_store::{Experiment, LifecycleStage, Run, RunInfo, Store, ViewType};
use serde_json::json;

use crate::admin;
use crate::import::verify::SeriesSums;
use crate::mlflow_rest::{is_code, MlflowRest, Retry};
use journal::Journal;

/// Where `quiver export` exports to.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Export a store directory (experiments, runs with their params, tags, every metric point,
    /// dataset inputs and artifacts, logged models, and the model registry) into a running
    /// MLflow tracking server through its REST API, then verify it.
    ///
    /// Runs and logged models get new ids there (REST cannot keep them): the mapping is printed
    /// and written to a TSV file. Credentials come from MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or
    /// MLFLOW_TRACKING_TOKEN. Running the same export again adds nothing; an interrupted one
    /// resumes.
    ///
    /// Example: quiver export mlflow --to http://127.0.0.1:5000 --store ./quiver-data
    Mlflow(MlflowArgs),
}

/// The arguments of `quiver export mlflow`.
#[derive(Debug, clap::Args)]
pub(crate) struct MlflowArgs {
    /// The target: the MLflow tracking server's address (e.g. http://127.0.0.1:5000). It must
    /// serve artifacts (`mlflow server` does by default) for runs that have some.
    #[arg(long)]
    to: String,
    /// The store directory to export. A store a server has open is locked: stop the server
    /// first.
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
    /// Only this experiment (its name or id); repeat for several. The model registry is
    /// exported only with the whole store (no --experiment, no --since).
    #[arg(long = "experiment", value_name = "NAME_OR_ID")]
    experiments: Vec<String>,
    /// Only runs started at or after TIME: an RFC 3339 date or date-time (2025-11-27,
    /// 2025-11-27T15:44:01Z) or milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    since: Option<i64>,
    /// Print what would be exported, and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// On a run that cannot be exported: stop, or skip it and go on (then the export exits
    /// non-zero at the end, naming the runs it skipped).
    #[arg(long, value_enum, default_value = "stop")]
    on_error: OnError,
    /// Runs exported at the same time (MLflow servers are slow to ingest; more connections
    /// help a server with several workers).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
}

/// What to do with a run that fails to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OnError {
    /// Stop the export (what was exported stays; run it again to resume).
    Stop,
    /// Skip the run and go on (the model registry then waits for an export without failures).
    Skip,
}

/// Runs `quiver export`.
pub(crate) fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Mlflow(args) => export_mlflow(&args),
    }
}

/// `--since`: an RFC 3339 date-time, a date (midnight UTC) or milliseconds since the epoch.
pub(crate) fn parse_since(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc()
            .timestamp_millis());
    }
    Err(format!(
        "`{s}` is not a time: give an RFC 3339 date (2025-11-27) or date-time \
         (2025-11-27T15:44:01Z), or milliseconds since the epoch"
    ))
}

/// What is to be exported.
struct Selection {
    experiments: Vec<Experiment>,
    /// Runs, parents before their children, else oldest first.
    runs: Vec<RunInfo>,
}

fn select(store: &Store, args: &MlflowArgs) -> anyhow::Result<Selection> {
    let all = store
        .list_experiments(ViewType::All)
        .map_err(admin::store_error)?;
    for want in &args.experiments {
        if !all
            .iter()
            .any(|e| &e.experiment_id == want || &e.name == want)
        {
            bail!("no experiment named or numbered `{want}` in the store");
        }
    }
    let experiments: Vec<Experiment> = all
        .into_iter()
        .filter(|e| {
            args.experiments.is_empty()
                || args
                    .experiments
                    .iter()
                    .any(|w| w == &e.experiment_id || w == &e.name)
        })
        .collect();
    let ids: Vec<&str> = experiments
        .iter()
        .map(|e| e.experiment_id.as_str())
        .collect();
    let mut runs = store
        .list_runs(&ids, ViewType::All)
        .map_err(admin::store_error)?;
    runs.retain(|r| args.since.is_none_or(|t| r.start_time >= t));
    runs.sort_by(|a, b| {
        a.start_time
            .cmp(&b.start_time)
            .then(a.run_id.cmp(&b.run_id))
    });
    let parents: HashMap<String, String> = runs
        .iter()
        .filter_map(|r| {
            let run = store.get_run(&r.run_id).ok()?;
            let p = run.tags.iter().find(|t| t.key == runs::PARENT_TAG)?;
            Some((r.run_id.clone(), p.value.clone()))
        })
        .collect();
    Ok(Selection {
        experiments,
        runs: parents_first(runs, &parents),
    })
}

/// `runs` reordered so that a parent (by `parents`: child → parent id) comes before its
/// children, otherwise in the given order.
fn parents_first(runs: Vec<RunInfo>, parents: &HashMap<String, String>) -> Vec<RunInfo> {
    let index: HashMap<String, usize> = runs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.run_id.clone(), i))
        .collect();
    let mut placed = vec![false; runs.len()];
    let mut order = Vec::with_capacity(runs.len());
    for i in 0..runs.len() {
        // The chain of ancestors not yet placed, placed oldest ancestor first.
        let mut chain = Vec::new();
        let mut at = Some(i);
        while let Some(j) = at.filter(|&j| !placed[j] && !chain.contains(&j)) {
            chain.push(j);
            at = parents
                .get(&runs[j].run_id)
                .and_then(|p| index.get(p).copied());
        }
        for &j in chain.iter().rev() {
            placed[j] = true;
            order.push(j);
        }
    }
    let mut slots: Vec<Option<RunInfo>> = runs.into_iter().map(Some).collect();
    order
        .into_iter()
        .map(|i| slots[i].take().expect("each run placed once"))
        .collect()
}

fn open_store(dir: &Path) -> anyhow::Result<Store> {
    if !dir.join("FORMAT").exists() {
        bail!("no Quiver store at {} (give --store DIR)", dir.display());
    }
    match Store::open(dir) {
        Ok(store) => Ok(store),
        Err(e @ quiver_store::Error::Locked { .. }) => Err(anyhow!(
            "{e}\nA server has this store open: stop it, then export"
        )),
        Err(e) => Err(anyhow::Error::new(e))
            .with_context(|| format!("cannot open the store at {}", dir.display())),
    }
}

fn export_mlflow(args: &MlflowArgs) -> anyhow::Result<()> {
    let rest = MlflowRest::new(&args.to)?;
    let store = open_store(&args.store)?;
    let result = select(&store, args).and_then(|sel| {
        if args.dry_run {
            summary::dry_run(&store, args, &sel)
        } else {
            export_into(&store, &rest, args, &sel)
        }
    });
    admin::close(store)?;
    result
}

/// What the export of the runs did.
#[derive(Debug, Default)]
struct Tally {
    runs: u64,
    points: u64,
    files: u64,
    bytes: u64,
    failed: Vec<(String, String)>,
    /// Sums of the points sent, by source run (for the verification).
    sums: HashMap<String, SeriesSums>,
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .expect("a valid template")
        .progress_chars("=> ")
}

fn export_into(
    store: &Store,
    rest: &MlflowRest,
    args: &MlflowArgs,
    sel: &Selection,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut journal = Journal::open(&args.store, &args.to)?;
    rest.post(
        "experiments/search",
        &json!({"max_results": 1}),
        Retry::Safe,
    )
    .with_context(|| format!("{} does not answer as an MLflow tracking server", args.to))?;
    check_same_target(rest, args, &journal)?;

    // Experiments: matched by name, else created. Those whose target is deleted are restored
    // while runs go in, and deleted again at the end.
    let bar = ProgressBar::new(sel.experiments.len() as u64)
        .with_style(bar_style("{prefix:>11} [{bar:30}] {pos}/{len} {per_sec}"))
        .with_prefix("experiments");
    let todo_exps: HashSet<&str> = sel
        .runs
        .iter()
        .filter(|r| journal.target_run(&r.run_id).is_none())
        .map(|r| r.experiment_id.as_str())
        .collect();
    let mut restored = Vec::new();
    for e in &sel.experiments {
        bar.inc(1);
        let target = match journal.experiments.get(&e.experiment_id) {
            Some((t, _)) => t.clone(),
            None => {
                let (t, created) = match rest.experiment_by_name(&e.name)? {
                    Some(t) => (admin::json_str(&t, "experiment_id"), false),
                    None => {
                        let tags: Vec<_> = e
                            .tags
                            .iter()
                            .map(|t| json!({"key": t.key, "value": t.value}))
                            .collect();
                        let made = rest
                            .post(
                                "experiments/create",
                                &json!({"name": e.name, "tags": tags}),
                                Retry::NotSent,
                            )
                            .with_context(|| format!("creating experiment {}", e.name))?;
                        (admin::json_str(&made, "experiment_id"), true)
                    }
                };
                journal.record(&["E", &e.experiment_id, &t, if created { "1" } else { "0" }])?;
                t
            }
        };
        if todo_exps.contains(e.experiment_id.as_str()) {
            let got = rest.get("experiments/get", &[("experiment_id", &target)])?;
            if admin::json_str(&got["experiment"], "lifecycle_stage") == "deleted" {
                rest.post(
                    "experiments/restore",
                    &json!({"experiment_id": target}),
                    Retry::Safe,
                )?;
                println!(
                    "restored experiment {} ({target}) in the target, deleted there, to add runs{}",
                    e.name,
                    if e.lifecycle_stage == LifecycleStage::Deleted {
                        " (deleted again at the end, as it is here)"
                    } else {
                        ""
                    }
                );
                restored.push(e.experiment_id.clone());
            }
        }
    }
    bar.finish_and_clear();

    // Runs cut off by an earlier export: deleted in the target, exported again.
    let stale: Vec<(String, String)> = journal
        .runs
        .iter()
        .filter(|(_, r)| !r.done)
        .map(|(s, r)| (s.clone(), r.target.clone()))
        .collect();
    for (src, target) in &stale {
        match rest.post("runs/delete", &json!({"run_id": target}), Retry::Safe) {
            Ok(_) => {}
            Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => {}
            Err(e) => return Err(e.context(format!("discarding the cut-off run {target}"))),
        }
        journal.record(&["X", src])?;
        println!("discarded run {target} of an interrupted export (source run {src}); exporting it again");
    }

    let before = sel
        .runs
        .iter()
        .filter(|r| journal.target_run(&r.run_id).is_some())
        .count();
    let todo: Vec<&RunInfo> = sel
        .runs
        .iter()
        .filter(|r| journal.target_run(&r.run_id).is_none())
        .collect();
    let tally = export_runs(store, rest, args, &todo, journal)?;
    let mut journal = Journal::open(&args.store, &args.to)?;

    // Parent links that named a source id: now that every run is there, rewritten (a deleted
    // run is restored for it, then deleted again).
    let pending: Vec<(String, String)> = journal
        .runs
        .iter()
        .filter(|(_, r)| r.done && r.parent_pending)
        .map(|(s, r)| (s.clone(), r.target.clone()))
        .collect();
    let mut relinked = 0;
    for (src, target) in pending {
        let run = store.get_run(&src).map_err(admin::store_error)?;
        let Some(parent) = run.tags.iter().find(|t| t.key == runs::PARENT_TAG) else {
            continue;
        };
        let Some(mapped) = journal.target_run(&parent.value).map(str::to_owned) else {
            continue;
        };
        let deleted = run.info.lifecycle_stage == LifecycleStage::Deleted;
        if deleted {
            rest.post("runs/restore", &json!({"run_id": target}), Retry::Safe)?;
        }
        rest.post(
            "runs/set-tag",
            &json!({"run_id": target, "key": runs::PARENT_TAG, "value": mapped}),
            Retry::Safe,
        )?;
        if deleted {
            rest.post("runs/delete", &json!({"run_id": target}), Retry::Safe)?;
        }
        journal.record(&["P", &src])?;
        relinked += 1;
    }
    if relinked > 0 {
        println!("rewrote the parent links of {relinked} runs exported before their parents");
    }

    // Logged models, after the runs that made them and before experiments are deleted; then
    // the runs' model inputs and outputs.
    let exp_ids: Vec<String> = sel
        .experiments
        .iter()
        .map(|e| e.experiment_id.clone())
        .collect();
    let logged = logged_models::models(store, &exp_ids)?;
    let (n_logged, logged_files) = logged_models::export(store, rest, &mut journal, &logged)?;
    let run_ids: Vec<String> = sel.runs.iter().map(|r| r.run_id.clone()).collect();
    logged_models::link_runs(store, rest, &mut journal, &run_ids)?;

    // Deleted experiments: those the export created, and deleted ones it restored.
    for e in &sel.experiments {
        let Some((target, created)) = journal.experiments.get(&e.experiment_id).cloned() else {
            continue;
        };
        let again =
            restored.contains(&e.experiment_id) && e.lifecycle_stage == LifecycleStage::Deleted;
        let due = e.lifecycle_stage == LifecycleStage::Deleted
            && created
            && !journal.deleted_experiments.contains(&e.experiment_id);
        if again || due {
            rest.post(
                "experiments/delete",
                &json!({"experiment_id": target}),
                Retry::Safe,
            )
            .with_context(|| format!("deleting experiment {}", e.name))?;
            if due {
                journal.record(&["D", &e.experiment_id])?;
            }
        }
    }

    // The registry, after the runs its versions name; only with the whole store, as its
    // versions name runs anywhere in it.
    let whole = args.experiments.is_empty() && args.since.is_none();
    let models = if !whole {
        println!("the model registry is exported only with the whole store (no --experiment, no --since): left out");
        Vec::new()
    } else if !tally.failed.is_empty() {
        println!(
            "the model registry is left out: {} runs were skipped (its versions may name them)",
            tally.failed.len()
        );
        Vec::new()
    } else {
        registry::models(store)?
    };
    let bar = ProgressBar::new(models.len() as u64)
        .with_style(bar_style("{prefix:>11} [{bar:30}] {pos}/{len} {per_sec}"))
        .with_prefix("registry");
    let (n_models, n_versions) = registry::export(store, rest, &mut journal, &models, &bar)?;
    bar.finish_and_clear();

    let secs = started.elapsed().as_secs_f64();
    println!(
        "exported {} runs ({} exported before), {} metric points, {} artifact files ({} bytes) in {:.1} s ({:.0} points/s)",
        tally.runs,
        before,
        tally.points,
        tally.files,
        tally.bytes,
        secs,
        tally.points as f64 / secs.max(1e-9)
    );
    println!(
        "exported {n_logged} logged models ({logged_files} artifact files; {} were exported before)",
        logged.len() as u64 - n_logged
    );
    println!(
        "exported {n_models} registered models with {n_versions} versions ({} were exported before)",
        models.len() as u64 - n_models
    );
    summary::write_mapping(store, args, &journal, sel)?;

    let mut sums = tally.sums;
    let verified = verify::all(
        store,
        rest,
        &journal,
        sel,
        &mut sums,
        verify::Models {
            registry: &models,
            logged: &logged,
        },
        args.jobs,
    );
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

/// Refuses a target that lacks what an earlier export to the same address recorded (a server
/// reset, or another server now at that address).
fn check_same_target(
    rest: &MlflowRest,
    args: &MlflowArgs,
    journal: &Journal,
) -> anyhow::Result<()> {
    let Some((src, (target, _))) = journal.experiments.iter().next() else {
        return Ok(());
    };
    match rest.get("experiments/get", &[("experiment_id", target)]) {
        Ok(_) => Ok(()),
        Err(e) if is_code(&e, "RESOURCE_DOES_NOT_EXIST") => bail!(
            "{} has no experiment {target}, which an earlier export to it created or matched \
             (for experiment {src} here): was the server reset? To export into it anew, remove {}",
            args.to,
            Journal::path(&args.store, &args.to).display()
        ),
        Err(e) => Err(e),
    }
}

/// Exports `todo`, `args.jobs` at a time; consumes the journal (reopen it after).
fn export_runs(
    store: &Store,
    rest: &MlflowRest,
    args: &MlflowArgs,
    todo: &[&RunInfo],
    journal: Journal,
) -> anyhow::Result<Tally> {
    // Runs done, and points sent as they go (a long series moves the second bar).
    let multi = indicatif::MultiProgress::new();
    let bar = multi.add(
        ProgressBar::new(todo.len() as u64)
            .with_style(bar_style(
                "{prefix:>11} [{bar:30}] {pos}/{len} runs ({elapsed})",
            ))
            .with_prefix("runs"),
    );
    let points = multi.add(
        ProgressBar::no_length()
            .with_style(bar_style("{prefix:>11} {human_pos} points, {per_sec}"))
            .with_prefix("points"),
    );
    let journal = Mutex::new(journal);
    let tally = Mutex::new(Tally::default());
    let next = AtomicUsize::new(0);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    let worker = || loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(info) = todo.get(i) else { return };
        let outcome = export_one(store, rest, &journal, info, &points);
        bar.inc(1);
        let mut t = tally.lock().expect("tally");
        match outcome {
            Ok(done) => {
                t.runs += 1;
                t.points += done.sums.points();
                t.files += done.files;
                t.bytes += done.bytes;
                t.sums.insert(info.run_id.clone(), done.sums);
            }
            Err(e) if args.on_error == OnError::Skip => {
                bar.println(format!("skipped run {}: {e:#}", info.run_id));
                t.failed.push((info.run_id.clone(), format!("{e:#}")));
            }
            Err(e) => {
                stop.store(true, Ordering::Relaxed);
                first_error
                    .lock()
                    .expect("error")
                    .get_or_insert(e.context(format!(
                        "run {} (run the same export again to resume)",
                        info.run_id
                    )));
                return;
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 0..args.jobs {
            s.spawn(worker);
        }
    });
    if let Some(e) = first_error.into_inner().expect("error") {
        bar.abandon();
        points.abandon();
        return Err(e);
    }
    bar.finish_and_clear();
    points.finish_and_clear();
    Ok(tally.into_inner().expect("tally"))
}

/// Exports one run, recording it in the journal as it goes.
fn export_one(
    store: &Store,
    rest: &MlflowRest,
    journal: &Mutex<Journal>,
    info: &RunInfo,
    points: &ProgressBar,
) -> anyhow::Result<runs::Exported> {
    let run: Run = store.get_run(&info.run_id).map_err(admin::store_error)?;
    let experiment = journal
        .lock()
        .expect("journal")
        .experiments
        .get(&info.experiment_id)
        .map(|(t, _)| t.clone())
        .with_context(|| format!("its experiment {} was not exported", info.experiment_id))?;
    let parent = |src: &str| {
        journal
            .lock()
            .expect("journal")
            .target_run(src)
            .map(str::to_owned)
    };
    let mut created = |target: &str| {
        journal
            .lock()
            .expect("journal")
            .record(&["S", &info.run_id, target])
    };
    let (done, pending) = runs::export_run(
        store,
        rest,
        &run,
        &experiment,
        &parent,
        &mut created,
        points,
    )?;
    journal.lock().expect("journal").record(&[
        "R",
        &info.run_id,
        &done.target,
        if pending { "1" } else { "0" },
    ])?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::RunStatus;

    #[test]
    fn since_takes_dates_datetimes_and_millis() {
        assert_eq!(parse_since("1764258241123"), Ok(1_764_258_241_123));
        assert_eq!(
            parse_since("2025-11-27T15:44:01.123Z"),
            Ok(1_764_258_241_123)
        );
        assert_eq!(
            parse_since("2025-11-27T16:44:01.123+01:00"),
            Ok(1_764_258_241_123)
        );
        assert_eq!(parse_since("1970-01-02"), Ok(86_400_000));
        assert!(parse_since("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_since("2025-13-01").is_err());
    }

    fn info(id: &str, start: i64) -> RunInfo {
        RunInfo {
            run_id: id.into(),
            run_name: id.into(),
            experiment_id: "1".into(),
            user_id: String::new(),
            status: RunStatus::Finished,
            start_time: start,
            end_time: None,
            lifecycle_stage: LifecycleStage::Active,
            artifact_uri: String::new(),
            deleted_time: None,
        }
    }

    #[test]
    fn parents_come_before_their_children() {
        // c's parent b started after it, b's parent a after both; x's parent is elsewhere.
        let runs = vec![info("c", 1), info("x", 2), info("b", 3), info("a", 4)];
        let parents: HashMap<String, String> = [("c", "b"), ("b", "a"), ("x", "gone")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ids: Vec<String> = parents_first(runs, &parents)
            .into_iter()
            .map(|r| r.run_id)
            .collect();
        assert_eq!(ids, ["a", "b", "c", "x"]);
        // A cycle does not hang and keeps every run.
        let cyc: HashMap<String, String> = [("p", "q"), ("q", "p")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            parents_first(vec![info("p", 1), info("q", 2)], &cyc).len(),
            2
        );
    }
}
