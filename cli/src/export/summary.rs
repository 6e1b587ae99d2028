//! What an export prints apart from its progress: the dry run's account of what would move,
//! and the id mapping (printed, and written to `<store>/export/<target digest>.tsv`).

use std::collections::HashMap;

use anyhow::Context;
use quiver_store::{RunInfo, Store};

use super::journal::{self, Journal};
use super::{logged_models, registry, runs, MlflowArgs, Selection};
use crate::admin;

/// Prints what an export would move (runs, points, artifacts, models), changing nothing.
pub(super) fn dry_run(store: &Store, args: &MlflowArgs, sel: &Selection) -> anyhow::Result<()> {
    let journal = Journal::open(&args.store, &args.to)?;
    let todo: Vec<&RunInfo> = sel
        .runs
        .iter()
        .filter(|r| journal.target_run(&r.run_id).is_none())
        .collect();
    let (mut points, mut files, mut bytes) = (0u64, 0u64, 0u64);
    for r in &todo {
        let run = store.get_run(&r.run_id).map_err(admin::store_error)?;
        for latest in &run.metrics {
            let mut token: Option<String> = None;
            loop {
                let (h, next) = store
                    .metric_history(&r.run_id, &latest.key, token.as_deref(), Some(1_000_000))
                    .map_err(admin::store_error)?;
                points += h.len() as u64;
                match next {
                    Some(t) => token = Some(t),
                    None => break,
                }
            }
        }
        for (_, size) in runs::store_files(store, &run)? {
            files += 1;
            bytes += size;
        }
    }
    for e in &sel.experiments {
        let n = sel
            .runs
            .iter()
            .filter(|r| r.experiment_id == e.experiment_id)
            .count();
        let target = match journal.experiments.get(&e.experiment_id) {
            Some((t, _)) => format!("target experiment {t}"),
            None => "matched by name, or created".to_string(),
        };
        println!(
            "  experiment {} ({}, {}): {n} runs, {target}",
            e.experiment_id,
            e.name,
            e.lifecycle_stage.as_str()
        );
    }
    let exp_ids: Vec<String> = sel
        .experiments
        .iter()
        .map(|e| e.experiment_id.clone())
        .collect();
    let logged = logged_models::models(store, &exp_ids)?;
    let logged_todo = logged
        .iter()
        .filter(|m| journal.target_model(&m.model_id).is_none())
        .count();
    let models = if args.experiments.is_empty() && args.since.is_none() {
        registry::models(store)?
    } else {
        Vec::new()
    };
    println!(
        "dry run: would export {} runs ({} already exported to {}), {points} metric points, \
         {files} artifact files ({bytes} bytes), {logged_todo} logged models, {} registered models; \
         nothing changed",
        todo.len(),
        sel.runs.len() - todo.len(),
        args.to,
        models.len()
            - models
                .iter()
                .filter(|(m, _)| journal.models.contains(&m.name))
                .count()
    );
    Ok(())
}

/// Writes the id mapping (every experiment and run of this store exported to this target) to
/// `<store>/export/<target digest>.tsv` and prints it (the first runs of it).
pub(super) fn write_mapping(
    store: &Store,
    args: &MlflowArgs,
    journal: &Journal,
    sel: &Selection,
) -> anyhow::Result<()> {
    let names: HashMap<&str, &str> = sel
        .experiments
        .iter()
        .map(|e| (e.experiment_id.as_str(), e.name.as_str()))
        .collect();
    let mut lines = vec!["kind\tsource_id\ttarget_id\tname".to_string()];
    let mut exps: Vec<_> = journal.experiments.iter().collect();
    exps.sort();
    let mut moved = Vec::new();
    for (src, (dst, _)) in exps {
        let name = match names.get(src.as_str()) {
            Some(n) => n.to_string(),
            None => store
                .get_experiment(src)
                .map(|e| e.name)
                .unwrap_or_default(),
        };
        if src != dst {
            moved.push(format!("  experiment {src} -> {dst} ({name})"));
        }
        lines.push(format!("experiment\t{src}\t{dst}\t{name}"));
    }
    let mut logged: Vec<_> = journal
        .logged
        .iter()
        .filter(|(_, (_, done))| *done)
        .collect();
    logged.sort();
    for (src, (dst, _)) in logged {
        let name = store
            .get_logged_model(src)
            .map(|m| m.name)
            .unwrap_or_default();
        lines.push(format!("logged_model\t{src}\t{dst}\t{name}"));
    }
    let mut runs: Vec<(&String, &str)> = journal
        .runs
        .iter()
        .filter(|(_, r)| r.done)
        .map(|(s, r)| (s, r.target.as_str()))
        .collect();
    runs.sort();
    for (src, dst) in &runs {
        let name = store
            .get_run(src)
            .map(|r| r.info.run_name)
            .unwrap_or_default();
        lines.push(format!("run\t{src}\t{dst}\t{name}"));
    }
    let path = args
        .store
        .join("export")
        .join(format!("{}.tsv", journal::digest(&args.to)));
    std::fs::write(&path, lines.join("\n") + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    if !moved.is_empty() {
        println!("experiment ids that differ in the target:");
        for m in &moved {
            println!("{m}");
        }
    }
    println!(
        "{} runs have new ids in the target; the mapping (kind, source id, target id, name) is in {}",
        runs.len(),
        path.display()
    );
    for (src, dst) in runs.iter().take(10) {
        println!("  run {src} -> {dst}");
    }
    if runs.len() > 10 {
        println!("  ... ({} more in the file)", runs.len() - 10);
    }
    Ok(())
}
