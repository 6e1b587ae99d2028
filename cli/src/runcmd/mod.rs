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
mod reuse;
pub(crate) mod step;
pub(crate) use reuse::{explain, Decision};
mod system;
pub(crate) mod tracking;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use child::{Captured, Ending};
use tracking::Tracking;

use crate::snapshot::transfer;

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
    /// A file or directory to leave out of the source snapshot, besides what `.gitignore` and
    /// `.quiverignore` exclude (repeatable).
    #[arg(long = "exclude", value_name = "PATH")]
    excludes: Vec<PathBuf>,
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
    /// Write how the run ended to this file as JSON (`{run_id, status, reused}`): how
    /// `quiver pipeline` learns what its steps did.
    #[arg(long, hide = true)]
    report: Option<PathBuf>,
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
pub(super) struct Created {
    run_id: String,
    experiment_id: String,
    /// `<experiment>/<run>/artifacts`, where `mlflow-artifacts:/` points.
    artifact_root: String,
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
        let key = reuse::environment_hash(&environment, pip.as_deref());
        (Err((environment, pip)), Some(key))
    } else {
        (Ok(described), None)
    };
    let prepared = reuse::prepare(args, &dir, env_key)?;
    if args.reuse {
        if let Some(created) = reuse::reuse(args, tracking, git.as_ref(), &prepared, &dir)? {
            write_report(args, &created.run_id, "FINISHED", true)?;
            return Ok(0);
        }
    }
    if prepared.snapshot.is_some() {
        transfer::check_server(&tracking.remote).with_context(|| {
            format!(
                "{} keeps no source snapshots (is it an MLflow server? give --no-snapshot)",
                tracking.url
            )
        })?;
    }
    let created = create_run(args, tracking, git.as_ref(), prepared.step.tags())?;
    eprintln!(
        "quiver run: run {} in experiment {} at {}",
        created.run_id, created.experiment_id, tracking.url
    );
    if let Err(e) = reuse::record_snapshot(tracking, &created, &prepared) {
        end_run(tracking, &created.run_id, "FAILED", None)?;
        return Err(e);
    }
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
        if let Err(e) = reuse::record_outputs(args, tracking, &created, &dir) {
            // A step that did not leave what it declared must not be reused.
            eprintln!("quiver run: {e:#}");
            status = "FAILED";
        }
    }
    end_run(tracking, &created.run_id, status, Some(code))?;
    write_report(args, &created.run_id, status, false)?;
    eprintln!(
        "quiver run: run {} {status} (exit code {code})",
        created.run_id
    );
    Ok(code)
}

pub(super) fn create_run(
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

/// Writes the `--report` file, if asked for.
fn write_report(args: &RunArgs, run_id: &str, status: &str, reused: bool) -> anyhow::Result<()> {
    if let Some(path) = &args.report {
        let report = json!({ "run_id": run_id, "status": status, "reused": reused });
        std::fs::write(path, report.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
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

pub(super) fn end_run(
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
