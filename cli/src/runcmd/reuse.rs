//! What `quiver run` works out before its command starts, and what it keeps after: the source
//! snapshot and the step key ([`prepare`]), the reuse of an earlier run of the same step
//! ([`reuse`], [`explain`]), and the declared outputs ([`record_outputs`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use quiver_store::{Manifest, ManifestFile};
use serde_json::{json, Value};

use super::tracking::Tracking;
use super::{context, create_run, end_run, step, Created, RunArgs};
use crate::snapshot::{transfer, walk};

/// What is worked out before anything runs: the source snapshot (whose limits may stop the
/// run) and the step key.
pub(super) struct Prepared {
    /// The source directory and the manifest entries of its files.
    pub(super) snapshot: Option<(PathBuf, Vec<ManifestFile>)>,
    /// The parts of the step key.
    pub(super) step: step::Parts,
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

pub(super) fn prepare(args: &RunArgs, dir: &Path, env: Option<String>) -> anyhow::Result<Prepared> {
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
        skip.extend(args.excludes.iter().map(|e| dir.join(e)));
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
pub(super) fn environment_hash(environment: &Value, pip: Option<&str>) -> String {
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

/// Records the source snapshot of run `created`, sending only what the store lacks.
pub(super) fn record_snapshot(
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
pub(super) fn record_outputs(
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

/// The newest finished run with this step key whose declared outputs are stored, with its
/// outputs manifest (`None` when no outputs are declared).
fn reusable(
    args: &RunArgs,
    tracking: &Tracking,
    prepared: &Prepared,
) -> anyhow::Result<Option<(String, Option<Manifest>)>> {
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
        if outputs.is_empty() {
            return Ok(Some((earlier.to_string(), None)));
        }
        if let Some(m) = transfer::fetch(&tracking.remote, earlier, "outputs")? {
            if covers(&m, &outputs) {
                return Ok(Some((earlier.to_string(), Some(m))));
            }
        }
    }
    Ok(None)
}

/// With `--reuse`: when a finished run has this step key and its declared outputs are
/// stored, restores them, records a run that says so, and returns it; `None` when the
/// command has to run.
pub(super) fn reuse(
    args: &RunArgs,
    tracking: &Tracking,
    git: Option<&context::Git>,
    prepared: &Prepared,
    dir: &Path,
) -> anyhow::Result<Option<Created>> {
    let Some((earlier, stored)) = reusable(args, tracking, prepared)? else {
        eprintln!(
            "quiver run: no finished run of this step to reuse (step key {})",
            prepared.step.key()
        );
        return Ok(None);
    };
    if let Some(m) = &stored {
        transfer::restore(&tracking.remote, &earlier, "outputs", m, dir)?;
    }
    let mut tags = prepared.step.tags();
    tags.push((step::REUSED_FROM_TAG.to_string(), earlier.clone()));
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
    Ok(Some(created))
}

/// What `quiver run --reuse` would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Reuse this finished run.
    Reuse(String),
    /// Run the command, for these reasons.
    Run(Vec<String>),
}

/// What `quiver run --reuse` with `args` in directory `dir` would do, and if it would run the
/// command, why: compared with the newest finished run of the same step name (`--name`) in
/// the experiment, the code, inputs, params, command or environment that changed.
pub(crate) fn explain(args: &RunArgs, tracking: &Tracking, dir: &Path) -> anyhow::Result<Decision> {
    let env = args.reuse_env.then(|| {
        let (environment, pip) = context::environment(&args.command, dir);
        environment_hash(&environment, pip.as_deref())
    });
    let prepared = prepare(args, dir, env)?;
    if let Some((run_id, _)) = reusable(args, tracking, &prepared)? {
        return Ok(Decision::Reuse(run_id));
    }
    let Some(earlier) = latest_of_step(args, tracking)? else {
        return Ok(Decision::Run(vec!["no earlier finished run".into()]));
    };
    let tag = |key: &str| {
        earlier["data"]["tags"]
            .as_array()
            .and_then(|tags| tags.iter().find(|t| t["key"] == key))
            .and_then(|t| t["value"].as_str())
            .map(str::to_string)
    };
    let parsed = |key: &str| -> BTreeMap<String, String> {
        tag(key)
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default()
    };
    let now = &prepared.step;
    let mut why = Vec::new();
    if tag(step::CODE_TAG) != now.code {
        why.push("changed code".to_string());
    }
    let (inputs, params) = (parsed(step::INPUTS_TAG), parsed(step::PARAMS_TAG));
    for (what, before, after) in [
        ("input", &inputs, &now.inputs),
        ("param", &params, &now.params),
    ] {
        for key in before
            .keys()
            .chain(after.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            match (before.get(key), after.get(key)) {
                (Some(b), Some(a)) if a == b => {}
                (Some(_), None) => why.push(format!("{what} {key} removed")),
                (None, Some(_)) => why.push(format!("new {what} {key}")),
                _ if what == "param" => why.push(format!(
                    "changed param {key} ({} → {})",
                    before[key], after[key]
                )),
                _ => why.push(format!("changed input {key}")),
            }
        }
    }
    if tag(step::COMMAND_TAG) != Some(serde_json::to_string(&now.command)?) {
        why.push("changed command".into());
    }
    if why.is_empty() {
        why.push(if args.reuse_env {
            "changed environment, or the earlier run's outputs are no longer stored".into()
        } else {
            "the earlier run's outputs are no longer stored".into()
        });
    }
    Ok(Decision::Run(why))
}

/// The newest finished run named like this one (`--name`) in its experiment, if any.
fn latest_of_step(args: &RunArgs, tracking: &Tracking) -> anyhow::Result<Option<Value>> {
    let Some(name) = &args.name else {
        return Ok(None);
    };
    let experiment_id = match tracking.experiment_id_if_exists(&args.experiment)? {
        Some(id) => id,
        None => return Ok(None),
    };
    let filter = format!(
        "attributes.run_name = '{}' AND attributes.status = 'FINISHED'",
        name.replace('\'', "\\'")
    );
    let found = tracking.mlflow(
        "/runs/search",
        &json!({
            "experiment_ids": [experiment_id],
            "filter": filter,
            "order_by": ["attributes.start_time DESC"],
            "max_results": 1,
        }),
    )?;
    Ok(found["runs"].as_array().and_then(|r| r.first()).cloned())
}
