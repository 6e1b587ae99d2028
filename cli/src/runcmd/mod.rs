//! `quiver run -- CMD ARGS...`: runs a command as a tracked run. The run is created first (on a
//! running server with `--url`, or in a store directory served for the length of the command),
//! then the command starts with `MLFLOW_TRACKING_URI`, `MLFLOW_RUN_ID` and
//! `MLFLOW_EXPERIMENT_ID` set, so an unmodified script using the mlflow client logs into that
//! same run. Recorded with it: params and tags given here, the git commit, branch, remote and
//! uncommitted diff of the working directory, the environment (`environment.json`, `pip
//! freeze`), and the console output (`logs/stdout.txt`, `logs/stderr.txt`), uploaded while the
//! command runs, and system metrics every few seconds (see [`system`]). The run ends FINISHED (exit 0), FAILED (the exit code is the tag
//! `quiver.exit_code`) or KILLED (interrupted); `quiver run` exits with the command's code.

mod child;
mod context;
mod system;
mod tracking;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use child::{Captured, Ending};
use tracking::Tracking;

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

fn run_tracked(args: &RunArgs, tracking: &Tracking) -> anyhow::Result<i32> {
    let dir = std::env::current_dir()?;
    let git = context::Git::of(&dir);
    // Describing the environment runs Python and `pip freeze` (a second or so): meanwhile,
    // not before the command starts.
    let described = {
        let (command, dir) = (args.command.clone(), dir.clone());
        std::thread::spawn(move || context::environment(&command, &dir))
    };
    let created = create_run(args, tracking, git.as_ref())?;
    eprintln!(
        "quiver run: run {} in experiment {} at {}",
        created.run_id, created.experiment_id, tracking.url
    );
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
    let (environment, pip) = described
        .join()
        .map_err(|_| anyhow!("describing the environment failed"))?;
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
    let status = if interrupted {
        "KILLED"
    } else if code == 0 {
        "FINISHED"
    } else {
        "FAILED"
    };
    end_run(tracking, &created.run_id, status, Some(code))?;
    eprintln!(
        "quiver run: run {} {status} (exit code {code})",
        created.run_id
    );
    Ok(code)
}

fn create_run(
    args: &RunArgs,
    tracking: &Tracking,
    git: Option<&context::Git>,
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
