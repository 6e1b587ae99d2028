//! `quiver run -- CMD ARGS...`: runs a command as a tracked run. The run is created first (on a
//! running server with `--url`, or in a store directory served for the length of the command),
//! then the command starts with `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID` and
//! `MLFLOW_EXPERIMENT_ID` set, so an unmodified script using the mlflow client logs into that
//! same run. Recorded with it: a snapshot of the source directory (see [`crate::snapshot`]),
//! params and tags given here, the git commit, branch, remote and uncommitted diff of the
//! working directory, the environment (`environment.json`, `pip freeze`), and the console
//! output (`logs/stdout.txt`, `logs/stderr.txt`), uploaded while the command runs, and system
//! metrics every few seconds (see [`system`]). The run ends FINISHED (exit 0), FAILED (the exit
//! code is the tag `quiver.exit_code`) or KILLED (interrupted); `quiver run` exits with the
//! command's code.
//!
//! With `--reuse`, a command whose step key (see [`step`]) matches a finished run is not run
//! again: that run's declared outputs are restored instead.

mod child;
mod context;
pub(crate) mod step;
mod system;
pub(crate) mod tracking;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use child::{Captured, Ending};
use quiver_store::{Manifest, ManifestFile};
use tracking::Tracking;

use crate::snapshot::{transfer, walk};

/// The arguments of `quiver run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The experiment to record the run in (created when missing).
    #[arg(long, default_value = "Default")]
    experiment: String,
    /// The run's name (a generated one when not given).
    #[arg(long)]
    name: Option<String>,
    /// A param of the run, as key=value (repeatable).
    #[arg(long = "param", value_parser = key_value)]
    params: Vec<(String, String)>,
    /// A tag of the run, as key=value (repeatable).
    #[arg(long = "tag", value_parser = key_value)]
    tags: Vec<(String, String)>,
    /// Record the run on the `quiver server` (or any MLflow server) at this URL.
    #[arg(long)]
    url: Option<String>,
    /// Record the run in this store directory (when no --url is given); it is served to the
    /// command on a loopback port while it runs.
    #[arg(long, env = "QUIVER_STORE", default_value = "./quiver-data")]
    store: PathBuf,
    /// Seconds between uploads of the console output while the command runs.
    #[arg(long, default_value_t = 5)]
    log_interval: u64,
    /// Seconds between samples of the system metrics (`system/...`; 0: none).
    #[arg(long, default_value_t = 10)]
    system_metrics_interval: u64,
    /// The directory whose files are the run's source snapshot (default: the working
    /// directory). `.gitignore` and `.quiverignore` files say what to leave out.
    #[arg(long)]
    source: Option<PathBuf>,
    /// Record no source snapshot (needed with an MLflow server that is not Quiver).
    #[arg(long)]
    no_snapshot: bool,
    /// Most files the source snapshot may hold; beyond, the command does not start.
    #[arg(long, default_value_t = 2000)]
    snapshot_max_files: usize,
    /// Most megabytes (10^6 bytes) the source snapshot may hold.
    #[arg(long, default_value_t = 300)]
    snapshot_max_mb: u64,
    /// A file or directory of the source that is this step's code, for --reuse (repeatable;
    /// default: the whole snapshot).
    #[arg(long = "code", value_name = "PATH")]
    code: Vec<String>,
    /// A file or directory the command reads: its content is part of the step key
    /// (repeatable).
    #[arg(long = "input", value_name = "PATH")]
    inputs: Vec<PathBuf>,
    /// A file or directory (under the working directory) the command writes: stored when the
    /// run finishes, restored when a later run reuses it (repeatable).
    #[arg(long = "output", value_name = "PATH")]
    outputs: Vec<String>,
    /// Do not run the command if a finished run with the same step key (command, code,
    /// inputs, params) exists and its outputs are stored: restore them instead.
    #[arg(long)]
    reuse: bool,
    /// Make the environment (Python and its packages, OS, GPUs) part of the step key.
    #[arg(long)]
    reuse_env: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got '{s}'")),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn tag_list(tags: &[(String, String)]) -> Value {
    Value::Array(
        tags.iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

/// Runs `quiver run`; returns the exit code to leave with (the command's).
pub(crate) fn run(args: RunArgs) -> anyhow::Result<i32> {
    let tracking = match &args.url {
        Some(url) => Tracking::remote(url),
        None => Tracking::embedded(&args.store)?,
    };
    let result = run_tracked(&args, &tracking);
    let closed = tracking.close();
    let code = result?;
    closed?;
    Ok(code)
}

/// The run as created: its id, experiment and artifact path through the proxy.
struct Created {
    run_id: String,
    experiment_id: String,
    /// `<experiment>/<run>/artifacts`, where `mlflow-artifacts:/` points.
    artifact_root: String,
}

/// What is worked out before anything runs: the source snapshot (whose limits may stop the
/// run) and the step key.
struct Prepared {
    /// The source directory and the manifest entries of its files.
    snapshot: Option<(PathBuf, Vec<ManifestFile>)>,
    /// The parts of the step key.
    step: step::Parts,
}

/// Paths relative to the working directory, normalized; one that leaves it is refused.
fn output_paths(outputs: &[String]) -> anyhow::Result<Vec<String>> {
    outputs
        .iter()
        .map(|o| match quiver_store::artifact_path::normalize(o) {
            Ok(p) if !p.is_empty() => Ok(p),
            _ => bail!("--output {o}: give a path under the working directory"),
        })
        .collect()
}

fn prepare(args: &RunArgs, dir: &Path, env: Option<String>) -> anyhow::Result<Prepared> {
    let outputs = output_paths(&args.outputs)?;
    let snapshot = if args.no_snapshot {
        if !args.code.is_empty() {
            bail!("--code names files of the source snapshot: it cannot go with --no-snapshot");
        }
        None
    } else {
        let source = args.source.clone().unwrap_or_else(|| dir.to_path_buf());
        // Declared inputs and outputs are recorded by their own hashes, and the store is no
        // part of the source.
        let mut skip: Vec<PathBuf> = args.inputs.iter().map(|p| dir.join(p)).collect();
        skip.extend(outputs.iter().map(|o| dir.join(o)));
        if args.url.is_none() {
            skip.push(args.store.clone());
        }
        let limits = walk::Limits {
            max_bytes: args.snapshot_max_mb.saturating_mul(1_000_000),
            max_files: args.snapshot_max_files,
        };
        let files = walk::collect(&source, &skip, limits)?;
        Some((source, walk::hash(&files)?))
    };
    let code = match &snapshot {
        Some((_, files)) => Some(step::code_root(files, &args.code)?),
        None => None,
    };
    let mut inputs = BTreeMap::new();
    for p in &args.inputs {
        inputs.insert(p.display().to_string(), step::input_hash(&dir.join(p))?);
    }
    Ok(Prepared {
        snapshot,
        step: step::Parts {
            command: args.command.clone(),
            code,
            inputs,
            params: args.params.iter().cloned().collect(),
            env,
        },
    })
}

/// The part of the environment that `--reuse-env` puts in the step key, hashed.
fn environment_hash(environment: &Value, pip: Option<&str>) -> String {
    let picked = json!({
        "os": environment["os"],
        "distribution": environment["distribution"],
        "python": environment["python"],
        "gpus": environment["gpus"],
        "packages": pip,
    });
    blake3::hash(picked.to_string().as_bytes())
        .to_hex()
        .to_string()
}

fn run_tracked(args: &RunArgs, tracking: &Tracking) -> anyhow::Result<i32> {
    let dir = std::env::current_dir()?;
    let git = context::Git::of(&dir);
    // Describing the environment runs Python and `pip freeze` (a second or so): meanwhile,
    // not before the command starts (unless the step key needs it).
    let described = {
        let (command, dir) = (args.command.clone(), dir.clone());
        std::thread::spawn(move || context::environment(&command, &dir))
    };
    let join = |d: std::thread::JoinHandle<(Value, Option<String>)>| {
        d.join()
            .map_err(|_| anyhow!("describing the environment failed"))
    };
    let (described, env_key) = if args.reuse_env {
        let (environment, pip) = join(described)?;
        let key = environment_hash(&environment, pip.as_deref());
        (Err((environment, pip)), Some(key))
    } else {
        (Ok(described), None)
    };
    let prepared = prepare(args, &dir, env_key)?;
    if args.reuse {
        if let Some(code) = reuse(args, tracking, git.as_ref(), &prepared, &dir)? {
            return Ok(code);
        }
    }
    let created = create_run(args, tracking, git.as_ref(), prepared.step.tags())?;
    eprintln!(
        "quiver run: run {} in experiment {} at {}",
        created.run_id, created.experiment_id, tracking.url
    );
    record_snapshot(tracking, &created, &prepared)?;
    let upload = |path: &str, body: &[u8]| put_artifact(tracking, &created, path, body);
    if let Some(git) = git.as_ref().filter(|g| g.dirty) {
        upload("git/uncommitted.diff", git.diff.as_bytes())?;
    }

    let env = vec![
        ("MLFLOW_TRACKING_URI".to_string(), tracking.url.clone()),
        ("MLFLOW_RUN_ID".to_string(), created.run_id.clone()),
        (
            "MLFLOW_EXPERIMENT_ID".to_string(),
            created.experiment_id.clone(),
        ),
    ];
    let running = match child::start(&args.command, &env) {
        Ok(r) => r,
        Err(e) => {
            end_run(tracking, &created.run_id, "FAILED", Some(127))?;
            return Err(e);
        }
    };
    let logs_every = Duration::from_secs(args.log_interval.max(1));
    let sample_every = Duration::from_secs(args.system_metrics_interval);
    let mut sampler = (args.system_metrics_interval > 0)
        .then(|| (system::Sampler::new(running.pid(), &dir), 0i64));
    if let Some((s, _)) = &mut sampler {
        s.sample(); // the baseline of the CPU figures
    }
    let (environment, pip) = match described {
        Ok(thread) => join(thread)?,
        Err(described) => described,
    };
    upload(
        "environment.json",
        serde_json::to_string_pretty(&environment)?.as_bytes(),
    )?;
    if let Some(pip) = pip {
        upload("environment/requirements.txt", pip.as_bytes())?;
    }
    let (mut logged, mut sampled) = (Instant::now(), Instant::now());
    let (ending, stdout, stderr) = running.wait(Duration::from_millis(250), |r| {
        if logged.elapsed() >= logs_every {
            logged = Instant::now();
            for c in [&r.stdout, &r.stderr] {
                if let Err(e) = upload_log(tracking, &created, c, false) {
                    eprintln!("quiver run: could not upload {}: {e:#}", c.artifact);
                }
            }
        }
        if let Some((s, step)) = &mut sampler {
            if sampled.elapsed() >= sample_every {
                sampled = Instant::now();
                if let Err(e) = log_system_metrics(tracking, &created.run_id, s.sample(), *step) {
                    eprintln!("quiver run: could not log system metrics: {e:#}");
                }
                *step += 1;
            }
        }
    })?;
    for c in [&stdout, &stderr] {
        upload_log(tracking, &created, c, true)?;
    }
    let Ending { code, interrupted } = ending;
    let mut status = if interrupted {
        "KILLED"
    } else if code == 0 {
        "FINISHED"
    } else {
        "FAILED"
    };
    if status == "FINISHED" && !args.outputs.is_empty() {
        if let Err(e) = record_outputs(args, tracking, &created, &dir) {
            // A step that did not leave what it declared must not be reused.
            eprintln!("quiver run: {e:#}");
            status = "FAILED";
        }
    }
    end_run(tracking, &created.run_id, status, Some(code))?;
    eprintln!(
        "quiver run: run {} {status} (exit code {code})",
        created.run_id
    );
    Ok(code)
}

/// Records the source snapshot of run `created`, sending only what the store lacks.
fn record_snapshot(
    tracking: &Tracking,
    created: &Created,
    prepared: &Prepared,
) -> anyhow::Result<()> {
    let Some((source, files)) = &prepared.snapshot else {
        return Ok(());
    };
    let (summary, sent) =
        transfer::record(&tracking.remote, &created.run_id, "snapshot", source, files).context(
            "recording the source snapshot (with a server that is not Quiver, give --no-snapshot)",
        )?;
    eprintln!(
        "quiver run: source snapshot of {}: {} files, {} ({} new)",
        source.display(),
        summary["files"],
        walk::human_bytes(summary["bytes"].as_u64().unwrap_or(0)),
        walk::human_bytes(sent.bytes)
    );
    Ok(())
}

/// The files of the declared outputs as they are now, paths relative to `dir`.
fn output_files(args: &RunArgs, dir: &Path) -> anyhow::Result<Vec<ManifestFile>> {
    let mut files = Vec::new();
    for out in output_paths(&args.outputs)? {
        let path = dir.join(&out);
        if !path.exists() {
            bail!("the command finished without writing its declared output {out}");
        }
        let mut found = walk::collect_all(&path)?;
        if path.is_dir() {
            for f in &mut found {
                f.rel = format!("{out}/{}", f.rel);
            }
        } else if let Some(f) = found.first_mut() {
            f.rel = out.clone();
        }
        files.extend(walk::hash(&found)?);
    }
    Ok(files)
}

/// Stores the declared outputs of run `created` (their bytes as blobs, their list as the
/// run's outputs manifest).
fn record_outputs(
    args: &RunArgs,
    tracking: &Tracking,
    created: &Created,
    dir: &Path,
) -> anyhow::Result<()> {
    let files = output_files(args, dir)?;
    let (summary, _) = transfer::record(&tracking.remote, &created.run_id, "outputs", dir, &files)
        .context("storing the declared outputs")?;
    eprintln!(
        "quiver run: outputs stored: {} files, {}",
        summary["files"],
        walk::human_bytes(summary["bytes"].as_u64().unwrap_or(0))
    );
    Ok(())
}

/// Whether `manifest` holds every declared output (a file, or a directory with files).
fn covers(manifest: &Manifest, outputs: &[String]) -> bool {
    outputs.iter().all(|o| {
        manifest
            .files
            .iter()
            .any(|f| f.path == *o || f.path.starts_with(&format!("{o}/")))
    })
}

/// With `--reuse`: when a finished run has this step key and its declared outputs are
/// stored, restores them, records a run that says so, and returns the exit code (0);
/// `None` when the command has to run.
fn reuse(
    args: &RunArgs,
    tracking: &Tracking,
    git: Option<&context::Git>,
    prepared: &Prepared,
    dir: &Path,
) -> anyhow::Result<Option<i32>> {
    let key = prepared.step.key();
    let found = tracking
        .remote
        .get(&format!("/api/2.0/quiver/runs/by-step-key?key={key}"))
        .context("looking for an earlier run of this step (--reuse needs a Quiver server)")?;
    let outputs = output_paths(&args.outputs)?;
    let candidates = found["runs"].as_array().cloned().unwrap_or_default();
    for candidate in candidates.iter().filter(|r| r["status"] == "FINISHED") {
        let Some(earlier) = candidate["run_id"].as_str() else {
            continue;
        };
        let stored = if outputs.is_empty() {
            None
        } else {
            match transfer::fetch(&tracking.remote, earlier, "outputs")? {
                Some(m) if covers(&m, &outputs) => Some(m),
                _ => continue,
            }
        };
        if let Some(m) = &stored {
            transfer::restore(&tracking.remote, earlier, "outputs", m, dir)?;
        }
        let mut tags = prepared.step.tags();
        tags.push((step::REUSED_FROM_TAG.to_string(), earlier.to_string()));
        let created = create_run(args, tracking, git, tags)?;
        record_snapshot(tracking, &created, prepared)?;
        if let Some(m) = &stored {
            // The blobs are there: only the list is sent.
            transfer::record(&tracking.remote, &created.run_id, "outputs", dir, &m.files)?;
        }
        end_run(tracking, &created.run_id, "FINISHED", Some(0))?;
        eprintln!(
            "quiver run: reused run {earlier} (same command, code, inputs and params): {}the \
             command was not run; recorded as run {}",
            if stored.is_some() {
                "its outputs are restored, "
            } else {
                ""
            },
            created.run_id
        );
        return Ok(Some(0));
    }
    eprintln!("quiver run: no finished run of this step to reuse (step key {key})");
    Ok(None)
}

fn create_run(
    args: &RunArgs,
    tracking: &Tracking,
    git: Option<&context::Git>,
    step_tags: Vec<(String, String)>,
) -> anyhow::Result<Created> {
    let experiment_id = tracking.experiment_id(&args.experiment)?;
    let user = std::env::var("USER").unwrap_or_default();
    let mut tags = vec![
        ("mlflow.source.type".to_string(), "LOCAL".to_string()),
        ("mlflow.source.name".to_string(), args.command[0].clone()),
        ("mlflow.user".to_string(), user.clone()),
        ("quiver.command".to_string(), shell_words(&args.command)),
    ];
    if let Some(g) = git {
        tags.extend(g.tags());
    }
    tags.extend(step_tags);
    tags.extend(args.tags.iter().cloned());
    let mut body = json!({
        "experiment_id": experiment_id,
        "start_time": now_ms(),
        "user_id": user,
        "tags": tag_list(&tags),
    });
    if let Some(name) = &args.name {
        body["run_name"] = json!(name);
    }
    let run = tracking.mlflow("/runs/create", &body)?;
    let info = &run["run"]["info"];
    let run_id = info["run_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's run has no id: {run}"))?
        .to_string();
    let artifact_uri = info["artifact_uri"].as_str().unwrap_or_default();
    let Some(artifact_root) = artifact_uri.strip_prefix("mlflow-artifacts:/") else {
        bail!("the run's artifacts are at {artifact_uri}: quiver run uploads through the server's artifact proxy (mlflow-artifacts:/)");
    };
    for chunk in args.params.chunks(100) {
        let params: Vec<Value> = chunk
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        tracking.mlflow(
            "/runs/log-batch",
            &json!({"run_id": run_id, "params": params}),
        )?;
    }
    Ok(Created {
        run_id,
        experiment_id,
        artifact_root: artifact_root.trim_start_matches('/').to_string(),
    })
}

/// The command line as a shell would need it typed.
fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| {
            if !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
            {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn put_artifact(
    tracking: &Tracking,
    run: &Created,
    path: &str,
    body: impl std::io::Read,
) -> anyhow::Result<()> {
    let target = format!(
        "/api/2.0/mlflow-artifacts/artifacts/{}/{path}",
        run.artifact_root
    );
    tracking
        .remote
        .put(&target, body)
        .with_context(|| format!("uploading {path}"))?;
    Ok(())
}

/// Uploads a console log when it changed since the last upload (or, at the end, if it was
/// ever written to).
fn upload_log(
    tracking: &Tracking,
    run: &Created,
    log: &Captured,
    last: bool,
) -> anyhow::Result<()> {
    use std::sync::atomic::Ordering;
    if !log.dirty.swap(false, Ordering::AcqRel) && !last {
        return Ok(());
    }
    put_artifact(tracking, run, log.artifact, log.reader()?)
}

/// Logs one sample of the system metrics at `step`.
fn log_system_metrics(
    tracking: &Tracking,
    run_id: &str,
    sample: Vec<(String, f64)>,
    step: i64,
) -> anyhow::Result<()> {
    let timestamp = now_ms();
    let metrics: Vec<Value> = sample
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .map(|(key, value)| json!({"key": key, "value": value, "timestamp": timestamp, "step": step}))
        .collect();
    tracking.mlflow(
        "/runs/log-batch",
        &json!({"run_id": run_id, "metrics": metrics}),
    )?;
    Ok(())
}

fn end_run(
    tracking: &Tracking,
    run_id: &str,
    status: &str,
    code: Option<i32>,
) -> anyhow::Result<()> {
    if let Some(code) = code {
        tracking.mlflow(
            "/runs/set-tag",
            &json!({"run_id": run_id, "key": "quiver.exit_code", "value": code.to_string()}),
        )?;
    }
    tracking.mlflow(
        "/runs/update",
        &json!({"run_id": run_id, "status": status, "end_time": now_ms()}),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_and_command_lines() {
        assert_eq!(
            key_value("lr=0.1=x").unwrap(),
            ("lr".into(), "0.1=x".into())
        );
        assert!(key_value("=1").is_err() && key_value("nokey").is_err());
        let words: Vec<String> = ["python", "train.py", "--msg", "it's ok", ""]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            shell_words(&words),
            "python train.py --msg 'it'\\''s ok' ''"
        );
    }
}
