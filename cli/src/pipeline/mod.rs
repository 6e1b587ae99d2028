//! `quiver pipeline run|status FILE`: the steps of a pipeline file (see [`file`]) run as child
//! runs of one pipeline run, in dependency order, independent steps side by side up to
//! `--jobs`. Each step is a `quiver run --reuse`: a step whose code, inputs and params have
//! not changed is not run again, its outputs are restored. A failing step stops the steps
//! after it and fails the pipeline run, which names it.

mod file;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use clap::Parser;
use serde_json::{json, Value};

use crate::runcmd::tracking::{Place, Tracking};
use crate::runcmd::{self, Decision, RunArgs};
use file::{Pipeline, Step};

/// `quiver pipeline ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum Command {
    /// Run the steps of a pipeline file that changed (and those after them), reusing the
    /// others; exits 1 if a step failed.
    ///
    /// Example: quiver pipeline run pipeline.toml --jobs 2
    Run {
        /// The pipeline file (TOML).
        file: PathBuf,
        /// Most steps running at once.
        #[arg(long, default_value_t = 1)]
        jobs: usize,
        #[command(flatten)]
        target: Place,
    },
    /// Which steps would run and why (changed code, input, param or command; no earlier
    /// run), and which would be reused.
    ///
    /// Example: quiver pipeline status pipeline.toml
    Status {
        /// The pipeline file (TOML).
        file: PathBuf,
        #[command(flatten)]
        target: Place,
    },
}

/// Runs a `quiver pipeline` command; returns the exit code.
pub(crate) fn run(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Run { file, jobs, target } => {
            let pipeline = file::load(&file)?;
            let tracking = target.open()?;
            let result = run_pipeline(&pipeline, &tracking, jobs.max(1));
            tracking.close()?;
            result
        }
        Command::Status { file, target } => {
            let pipeline = file::load(&file)?;
            let tracking = target.open()?;
            let result = status(&pipeline, &tracking);
            tracking.close()?;
            result.map(|()| 0)
        }
    }
}

/// The `quiver run` arguments of `step` (what follows `quiver run`).
fn step_args(pipeline: &Pipeline, step: &Step, url: &str, extra: &[String]) -> Vec<String> {
    let mut argv: Vec<String> = vec![
        "--url".into(),
        url.into(),
        "--experiment".into(),
        pipeline.experiment.clone(),
        "--name".into(),
        step.name.clone(),
        "--reuse".into(),
        "--tag".into(),
        format!("quiver.pipeline={}", pipeline.name),
    ];
    argv.extend(extra.iter().cloned());
    if step.reuse_env {
        argv.push("--reuse-env".into());
    }
    if let Some(source) = &step.source {
        argv.extend(["--source".into(), source.display().to_string()]);
    }
    let mut flag = |name: &str, values: &[String]| {
        for v in values {
            argv.extend([name.to_string(), v.clone()]);
        }
    };
    // What other steps write is no part of this one's source, nor is the pipeline file (what
    // it says of this step is in these arguments).
    let written: Vec<String> = pipeline
        .steps
        .iter()
        .filter(|s| s.name != step.name)
        .flat_map(|s| s.outputs.iter().cloned())
        .chain([pipeline.file.display().to_string()])
        .collect();
    flag("--exclude", &written);
    flag("--code", &step.code);
    flag("--input", &step.inputs);
    flag("--output", &step.outputs);
    let params: Vec<String> = step
        .params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    flag("--param", &params);
    argv.push("--".into());
    argv.extend(step.command.iter().cloned());
    argv
}

/// The parsed `quiver run` arguments of a step (for [`runcmd::explain`]).
fn parsed_step_args(argv: Vec<String>) -> anyhow::Result<RunArgs> {
    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RunArgs,
    }
    let argv = std::iter::once("quiver-run".to_string()).chain(argv);
    Ok(Wrapper::try_parse_from(argv)
        .map_err(|e| anyhow!("{e}"))?
        .args)
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Its command ran and succeeded.
    Ran(String),
    /// An earlier run was reused.
    Reused(String),
    /// It failed (its run, if one was made).
    Failed(Option<String>),
    /// It did not start: a step it waits for failed (named) or the pipeline was interrupted.
    Skipped(String),
}

/// A step running as a child `quiver run`.
struct Running {
    child: Child,
    report: PathBuf,
    started: Instant,
}

fn run_pipeline(pipeline: &Pipeline, tracking: &Tracking, jobs: usize) -> anyhow::Result<i32> {
    let experiment_id = tracking.experiment_id(&pipeline.experiment)?;
    let created = tracking.mlflow(
        "/runs/create",
        &json!({
            "experiment_id": experiment_id,
            "run_name": pipeline.name,
            "start_time": now_ms(),
            "tags": [
                {"key": "quiver.pipeline", "value": pipeline.name},
                {"key": "quiver.pipeline.file", "value": pipeline.file.display().to_string()},
                {"key": "mlflow.source.name", "value": pipeline.file.display().to_string()},
                {"key": "mlflow.source.type", "value": "LOCAL"},
            ],
        }),
    )?;
    let parent = created["run"]["info"]["run_id"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's run has no id: {created}"))?
        .to_string();
    eprintln!(
        "quiver pipeline: {} ({} steps), run {parent} in experiment {} at {}",
        pipeline.name,
        pipeline.steps.len(),
        pipeline.experiment,
        tracking.url
    );
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted))?;
    }
    let reports = tempfile::tempdir()?;
    let exe = std::env::current_exe()?;
    let mut outcomes: BTreeMap<String, (Outcome, Duration)> = BTreeMap::new();
    let mut running: BTreeMap<String, Running> = BTreeMap::new();
    let mut forwarded = false;
    while outcomes.len() < pipeline.steps.len() {
        let stop = interrupted.load(Ordering::Relaxed);
        if stop && !forwarded {
            forwarded = true;
            for r in running.values() {
                // SAFETY: signalling a child we started and have not reaped.
                unsafe { libc::kill(r.child.id() as libc::pid_t, libc::SIGTERM) };
            }
        }
        for step in &pipeline.steps {
            if outcomes.contains_key(&step.name) || running.contains_key(&step.name) {
                continue;
            }
            if stop {
                outcomes.insert(
                    step.name.clone(),
                    (Outcome::Skipped("interrupted".into()), Duration::ZERO),
                );
                continue;
            }
            let blocked = step.after.iter().find(|d| {
                matches!(
                    outcomes.get(*d),
                    Some((Outcome::Failed(_) | Outcome::Skipped(_), _))
                )
            });
            if let Some(d) = blocked {
                outcomes.insert(
                    step.name.clone(),
                    (
                        Outcome::Skipped(format!("{d} did not finish")),
                        Duration::ZERO,
                    ),
                );
                continue;
            }
            let ready = step.after.iter().all(|d| {
                matches!(
                    outcomes.get(d),
                    Some((Outcome::Ran(_) | Outcome::Reused(_), _))
                )
            });
            if !ready || running.len() >= jobs {
                continue;
            }
            let report = reports.path().join(format!("{}.json", step.name));
            let extra = [
                "--tag".to_string(),
                format!("mlflow.parentRunId={parent}"),
                "--report".to_string(),
                report.display().to_string(),
            ];
            eprintln!("quiver pipeline: step {} starts", step.name);
            let child = match Process::new(&exe)
                .arg("run")
                .args(step_args(pipeline, step, &tracking.url, &extra))
                .current_dir(&pipeline.dir)
                .stdin(Stdio::null())
                .spawn()
            {
                Ok(child) => child,
                Err(e) => {
                    eprintln!("quiver pipeline: step {} could not start: {e}", step.name);
                    outcomes.insert(step.name.clone(), (Outcome::Failed(None), Duration::ZERO));
                    continue;
                }
            };
            running.insert(
                step.name.clone(),
                Running {
                    child,
                    report,
                    started: Instant::now(),
                },
            );
        }
        let mut ended = Vec::new();
        for (name, r) in running.iter_mut() {
            if let Some(status) = r.child.try_wait()? {
                let report: Option<Value> = std::fs::read_to_string(&r.report)
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok());
                let run_id = report
                    .as_ref()
                    .and_then(|v| v["run_id"].as_str())
                    .map(str::to_string);
                let outcome = match (&report, run_id) {
                    (Some(v), Some(id)) if status.success() && v["reused"] == true => {
                        Outcome::Reused(id)
                    }
                    (Some(v), Some(id)) if status.success() && v["status"] == "FINISHED" => {
                        Outcome::Ran(id)
                    }
                    (_, id) => Outcome::Failed(id),
                };
                ended.push((name.clone(), outcome, r.started.elapsed()));
            }
        }
        for (name, outcome, took) in ended {
            running.remove(&name);
            let word = match &outcome {
                Outcome::Ran(_) => "finished",
                Outcome::Reused(_) => "reused an earlier run",
                Outcome::Failed(_) => "FAILED",
                Outcome::Skipped(_) => "skipped",
            };
            eprintln!(
                "quiver pipeline: step {name} {word} ({:.1} s)",
                took.as_secs_f64()
            );
            outcomes.insert(name, (outcome, took));
        }
        if !running.is_empty() || outcomes.len() < pipeline.steps.len() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    finish(
        pipeline,
        tracking,
        &parent,
        &outcomes,
        interrupted.load(Ordering::Relaxed),
    )
}

/// Ends the pipeline run, prints the summary and returns the exit code.
fn finish(
    pipeline: &Pipeline,
    tracking: &Tracking,
    parent: &str,
    outcomes: &BTreeMap<String, (Outcome, Duration)>,
    interrupted: bool,
) -> anyhow::Result<i32> {
    let failed: Vec<&str> = pipeline
        .steps
        .iter()
        .filter(|s| matches!(outcomes[&s.name].0, Outcome::Failed(_)))
        .map(|s| s.name.as_str())
        .collect();
    let count = |f: fn(&Outcome) -> bool| outcomes.values().filter(|(o, _)| f(o)).count();
    let ran = count(|o| matches!(o, Outcome::Ran(_)));
    let reused = count(|o| matches!(o, Outcome::Reused(_)));
    let now = now_ms();
    let mut tags = Vec::new();
    if !failed.is_empty() {
        tags.push(json!({"key": "quiver.pipeline.failed_steps", "value": failed.join(",")}));
    }
    tracking.mlflow(
        "/runs/log-batch",
        &json!({
            "run_id": parent,
            "metrics": [
                {"key": "steps_run", "value": ran, "timestamp": now, "step": 0},
                {"key": "steps_reused", "value": reused, "timestamp": now, "step": 0},
                {"key": "steps_failed", "value": failed.len(), "timestamp": now, "step": 0},
            ],
            "tags": tags,
        }),
    )?;
    let status = if interrupted {
        "KILLED"
    } else if failed.is_empty() {
        "FINISHED"
    } else {
        "FAILED"
    };
    tracking.mlflow(
        "/runs/update",
        &json!({"run_id": parent, "status": status, "end_time": now_ms()}),
    )?;
    let rows: Vec<Vec<String>> = pipeline
        .steps
        .iter()
        .map(|s| {
            let (outcome, took) = &outcomes[&s.name];
            let (what, run) = match outcome {
                Outcome::Ran(id) => ("ran".to_string(), id.clone()),
                Outcome::Reused(id) => ("reused".to_string(), id.clone()),
                Outcome::Failed(id) => ("FAILED".to_string(), id.clone().unwrap_or_default()),
                Outcome::Skipped(why) => (format!("not run: {why}"), String::new()),
            };
            vec![
                s.name.clone(),
                what,
                run,
                format!("{:.1}", took.as_secs_f64()),
            ]
        })
        .collect();
    crate::admin::print_table(&["step", "result", "run", "seconds"], &rows)?;
    eprintln!(
        "quiver pipeline: run {parent} {status}: {ran} ran, {reused} reused{}",
        if failed.is_empty() {
            String::new()
        } else {
            format!(", failed: {}", failed.join(", "))
        }
    );
    Ok(match status {
        "FINISHED" => 0,
        "KILLED" => 130,
        _ => 1,
    })
}

/// Prints, step by step, whether it would run and why, or which run it would reuse.
fn status(pipeline: &Pipeline, tracking: &Tracking) -> anyhow::Result<()> {
    let mut will_run: BTreeSet<String> = BTreeSet::new();
    let mut rows = Vec::new();
    for step in &pipeline.steps {
        let upstream: Vec<&String> = step
            .after
            .iter()
            .filter(|d| will_run.contains(*d))
            .collect();
        let (what, why) = if !upstream.is_empty() {
            let names: Vec<&str> = upstream.iter().map(|s| s.as_str()).collect();
            (
                "runs".to_string(),
                format!("after {} (what it reads may change)", names.join(", ")),
            )
        } else {
            let args = parsed_step_args(step_args(pipeline, step, &tracking.url, &[]))?;
            match runcmd::explain(&args, tracking, &pipeline.dir) {
                Ok(Decision::Reuse(run)) => {
                    ("reused".to_string(), format!("up to date: run {run}"))
                }
                Ok(Decision::Run(why)) => ("runs".to_string(), why.join("; ")),
                Err(e) => ("runs".to_string(), format!("{e:#}")),
            }
        };
        if what == "runs" {
            will_run.insert(step.name.clone());
        }
        rows.push(vec![step.name.clone(), what, why]);
    }
    crate::admin::print_table(&["step", "would be", "why"], &rows)?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steps_arguments_parse_as_quiver_run_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(
            &path,
            "[steps.train]\ncmd = 'python train.py --x'\ninputs = ['d.csv']\noutputs = ['m']\n\
             code = ['train.py']\nparams = { lr = 0.5 }\n",
        )
        .unwrap();
        let p = file::load(&path).unwrap();
        let argv = step_args(&p, &p.steps[0], "http://127.0.0.1:1", &[]);
        let args = parsed_step_args(argv).unwrap();
        let shown = format!("{args:?}");
        assert!(shown.contains("reuse: true"), "{shown}");
        assert!(shown.contains("\"lr\", \"0.5\""), "{shown}");
        assert!(shown.contains("\"python train.py --x\""), "{shown}");
    }
}
