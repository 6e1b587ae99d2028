//! The committed sample store (`store/tests/data/format-1/`): proof that what this version wrote
//! to disk opens with every later version.
//!
//! The sample was written by `write_format_sample` (ignored; run it by hand, see
//! `store/tests/data/README.md`) and holds every persisted format: a catalog base checkpoint and
//! delta log, Parquet segments and their manifest, blobs, and a write-ahead log with one op of
//! every [`Op`] variant (and every registry change) that was never flushed, as a crash leaves it.
//! `the_committed_sample_opens_with_everything_in_it` opens a copy and checks what each read path
//! shows. A change to any encoding must keep that test green, or bump [`super::recovery`]'s
//! `FORMAT_VERSION` with a migration the test exercises on this sample.

use std::path::{Path, PathBuf};

use super::Store;
use crate::model_types::{
    CreateDeployment, CreateLoggedModel, CreateModelVersion, LoggedModelStatus, ModelOutput,
};
use crate::ops::{Op, RegistryChange};
use crate::types::{
    CreateRun, Dataset, DatasetInput, LifecycleStage, Metric, Param, RunStatus, Tag, UpdateRun,
    ViewType,
};
use crate::wal::Wal;
use crate::StoreOptions;

/// Where the sample lives in the source tree.
fn sample_dir() -> PathBuf {
    // Read when the test runs, not when it was compiled (a shared target directory may hold
    // a test binary built from another clone).
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("tests/data/format-1")
}

/// Every op variant (and registry change) by name: a new variant does not compile until it is
/// named here, and then the sample test fails until the sample holds one.
fn op_names(op: &Op) -> Vec<&'static str> {
    let one = match op {
        Op::CreateExperiment { .. } => "CreateExperiment",
        Op::RenameExperiment { .. } => "RenameExperiment",
        Op::SetExperimentStage { .. } => "SetExperimentStage",
        Op::SetExperimentTag { .. } => "SetExperimentTag",
        Op::DeleteExperimentTag { .. } => "DeleteExperimentTag",
        Op::CreateRun { .. } => "CreateRun",
        Op::UpdateRun { .. } => "UpdateRun",
        Op::SetRunStage { .. } => "SetRunStage",
        Op::LogBatch(_) => "LogBatch",
        Op::DeleteRunTag { .. } => "DeleteRunTag",
        Op::LogInputs { .. } => "LogInputs",
        Op::PutArtifact(_) => "PutArtifact",
        Op::DeleteArtifacts { .. } => "DeleteArtifacts",
        Op::LoggedModel(_) => "LoggedModel",
        Op::RunModels { .. } => "RunModels",
        Op::PurgeRuns { .. } => "PurgeRuns",
        Op::PurgeExperiment { .. } => "PurgeExperiment",
        Op::Registry { changes, .. } => {
            return changes
                .iter()
                .map(|c| match c {
                    RegistryChange::PutModel { .. } => "Registry/PutModel",
                    RegistryChange::DeleteModel { .. } => "Registry/DeleteModel",
                    RegistryChange::PutModelTag { .. } => "Registry/PutModelTag",
                    RegistryChange::DeleteModelTag { .. } => "Registry/DeleteModelTag",
                    RegistryChange::PutVersion { .. } => "Registry/PutVersion",
                    RegistryChange::DeleteVersion { .. } => "Registry/DeleteVersion",
                    RegistryChange::PutVersionTag { .. } => "Registry/PutVersionTag",
                    RegistryChange::DeleteVersionTag { .. } => "Registry/DeleteVersionTag",
                    RegistryChange::PutAlias { .. } => "Registry/PutAlias",
                    RegistryChange::DeleteAlias { .. } => "Registry/DeleteAlias",
                    RegistryChange::PutDeployment { .. } => "Registry/PutDeployment",
                    RegistryChange::DeleteDeployment { .. } => "Registry/DeleteDeployment",
                })
                .collect();
        }
    };
    vec![one]
}

/// Every name [`op_names`] can give.
const ALL_OPS: [&str; 29] = [
    "CreateExperiment",
    "RenameExperiment",
    "SetExperimentStage",
    "SetExperimentTag",
    "DeleteExperimentTag",
    "CreateRun",
    "UpdateRun",
    "SetRunStage",
    "LogBatch",
    "DeleteRunTag",
    "LogInputs",
    "PutArtifact",
    "DeleteArtifacts",
    "LoggedModel",
    "RunModels",
    "PurgeRuns",
    "PurgeExperiment",
    "Registry/PutModel",
    "Registry/DeleteModel",
    "Registry/PutModelTag",
    "Registry/DeleteModelTag",
    "Registry/PutVersion",
    "Registry/DeleteVersion",
    "Registry/PutVersionTag",
    "Registry/DeleteVersionTag",
    "Registry/PutAlias",
    "Registry/DeleteAlias",
    "Registry/PutDeployment",
    "Registry/DeleteDeployment",
];

fn points(key: &str, steps: std::ops::Range<i64>) -> Vec<Metric> {
    steps
        .map(|s| Metric::new(key, 1.0 / (s + 1) as f64, 1_760_000_000_000 + s * 10, s))
        .collect()
}

fn log_points(store: &Store, run_id: &str, key: &str, steps: std::ops::Range<i64>) {
    let all = points(key, steps);
    for chunk in all.chunks(1000) {
        store.log_batch(run_id, chunk, &[], &[]).unwrap();
    }
}

fn run_named(store: &Store, experiment_id: &str, name: &str) -> String {
    store
        .create_run(CreateRun {
            experiment_id: Some(experiment_id.into()),
            run_name: Some(name.into()),
            user_id: Some("sample".into()),
            start_time: Some(1_760_000_000_000),
            ..Default::default()
        })
        .unwrap()
        .info
        .run_id
}

fn the_run(store: &Store, experiment_id: &str, name: &str) -> String {
    store
        .list_runs(&[experiment_id], ViewType::All)
        .unwrap()
        .into_iter()
        .find(|r| r.run_name == name)
        .unwrap_or_else(|| panic!("run {name} in the sample"))
        .run_id
}

/// Writes the sample into `store/tests/data/format-1/` (replacing it). Run by hand:
/// `cargo test -p quiver-store --lib write_format_sample -- --ignored`.
#[test]
#[ignore = "writes the committed sample store; run by hand when bumping the format"]
fn write_format_sample() {
    let work = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        background: false,
        index_on_open: false,
        flush_points: usize::MAX,
        flush_wal_bytes: u64::MAX,
        flush_interval: std::time::Duration::from_secs(3600),
        wal_segment_bytes: 1 << 20,
        checkpoint_min_delta_bytes: 1,
        ..StoreOptions::default()
    };
    let store = Store::open_with(work.path(), options).unwrap();

    // 1. Into a segment and the base checkpoint.
    let pinned = store
        .create_experiment("pinned", None, &[Tag::new("team", "core")])
        .unwrap();
    let base = run_named(&store, &pinned, "base-run");
    store
        .log_batch(
            &base,
            &[],
            &[Param::new("lr", "0.01"), Param::new("layers", "12")],
            &[Tag::new("stage", "base")],
        )
        .unwrap();
    log_points(&store, &base, "loss", 0..3000);
    let doomed = run_named(&store, &pinned, "doomed-run");
    log_points(&store, &doomed, "loss", 0..500);
    let gone = store.create_experiment("gone", None, &[]).unwrap();
    let gone_run = run_named(&store, &gone, "gone-run");
    log_points(&store, &gone_run, "loss", 0..200);
    store
        .put_artifact(
            &format!("{pinned}/{base}/artifacts/base.txt"),
            &b"base bytes"[..],
        )
        .unwrap();
    store.flush().unwrap();

    // 2. Into a second segment and the delta log.
    log_points(&store, &base, "acc", 0..1000);
    store.set_tag(&base, "stage", "delta").unwrap();
    store.flush().unwrap();

    // 3. Only in the write-ahead log: one op of every kind.
    let scratch = store.create_experiment("scratch", None, &[]).unwrap();
    store
        .rename_experiment(&scratch, "scratch-renamed")
        .unwrap();
    store.set_experiment_tag(&scratch, "note", "kept").unwrap();
    store
        .set_experiment_tag(&scratch, "tmp", "dropped")
        .unwrap();
    store.delete_experiment_tag(&scratch, "tmp").unwrap();
    let wal_run = run_named(&store, &scratch, "wal-run");
    store
        .log_batch(
            &wal_run,
            &points("loss", 0..50),
            &[Param::new("optimizer", "adam")],
            &[Tag::new("keep", "yes"), Tag::new("drop", "no")],
        )
        .unwrap();
    store.delete_tag(&wal_run, "drop").unwrap();
    store
        .log_inputs(
            &wal_run,
            &[DatasetInput {
                tags: vec![Tag::new("mlflow.data.context", "training")],
                dataset: Dataset {
                    name: "digits".into(),
                    digest: "d1g1t5".into(),
                    source_type: "local".into(),
                    source: "/data/digits".into(),
                    schema: None,
                    profile: None,
                },
            }],
        )
        .unwrap();
    let wal_root = format!("{scratch}/{wal_run}/artifacts");
    store
        .put_artifact(&format!("{wal_root}/kept.txt"), &b"kept bytes"[..])
        .unwrap();
    store
        .put_artifact(&format!("{wal_root}/removed.txt"), &b"removed bytes"[..])
        .unwrap();
    store
        .delete_artifacts(&format!("{wal_root}/removed.txt"))
        .unwrap();
    let model = store
        .create_logged_model(&CreateLoggedModel {
            experiment_id: scratch.clone(),
            name: Some("wal-model".into()),
            source_run_id: Some(wal_run.clone()),
            ..Default::default()
        })
        .unwrap();
    store
        .finalize_logged_model(&model.model_id, LoggedModelStatus::Ready)
        .unwrap();
    store
        .log_run_outputs(
            &wal_run,
            &[ModelOutput {
                model_id: model.model_id.clone(),
                step: 7,
            }],
        )
        .unwrap();
    store
        .update_run(
            &wal_run,
            UpdateRun {
                status: Some(RunStatus::Finished),
                end_time: Some(1_760_000_100_000),
                run_name: Some("wal-run".into()),
            },
        )
        .unwrap();
    let user = "sample";
    store
        .create_registered_model("pinned-model", &[], Some("kept"), user)
        .unwrap();
    store
        .set_registered_model_tag("pinned-model", &Tag::new("tier", "gold"), user)
        .unwrap();
    store
        .set_registered_model_tag("pinned-model", &Tag::new("tmp", "x"), user)
        .unwrap();
    store
        .delete_registered_model_tag("pinned-model", "tmp", user)
        .unwrap();
    for _ in 0..2 {
        store
            .create_model_version(
                &CreateModelVersion {
                    name: "pinned-model".into(),
                    source: format!("models:/{}", model.model_id),
                    run_id: Some(wal_run.clone()),
                    ..Default::default()
                },
                user,
            )
            .unwrap();
    }
    store
        .set_model_version_tag("pinned-model", "1", &Tag::new("validated", "true"), user)
        .unwrap();
    store
        .set_model_version_tag("pinned-model", "1", &Tag::new("tmp", "x"), user)
        .unwrap();
    store
        .delete_model_version_tag("pinned-model", "1", "tmp", user)
        .unwrap();
    store
        .set_registered_model_alias("pinned-model", "champion", "1", user)
        .unwrap();
    store
        .set_registered_model_alias("pinned-model", "tmp", "1", user)
        .unwrap();
    store
        .delete_registered_model_alias("pinned-model", "tmp", user)
        .unwrap();
    for name in ["prod", "canary"] {
        store
            .create_deployment(
                &CreateDeployment {
                    name: name.into(),
                    model_name: "pinned-model".into(),
                    version: None,
                    alias: Some("champion".into()),
                    target: format!("k8s/{name}"),
                    description: None,
                },
                user,
            )
            .unwrap();
    }
    store.delete_deployment("canary", user).unwrap();
    store
        .delete_model_version("pinned-model", "2", user)
        .unwrap();
    store
        .create_registered_model("dropped-model", &[], None, user)
        .unwrap();
    store
        .delete_registered_model("dropped-model", user)
        .unwrap();
    // Purged without a flush (Store::purge flushes), so the purge ops stay in the log.
    store.delete_run(&doomed).unwrap();
    assert_eq!(
        store
            .purge_runs(std::slice::from_ref(&doomed), None)
            .unwrap(),
        1
    );
    store.delete_experiment(&gone).unwrap();
    let gone_id: u64 = gone.parse().unwrap();
    assert_eq!(
        store
            .purge_runs(std::slice::from_ref(&gone_run), Some(gone_id))
            .unwrap(),
        1
    );
    store
        .inner
        .commit(|_| Ok((Some(Op::PurgeExperiment { id: gone_id }), ())))
        .unwrap();

    // Copy what a crash leaves (the sled index is derived state and is rebuilt; LOCK is ours).
    let out = sample_dir();
    if out.exists() {
        std::fs::remove_dir_all(&out).unwrap();
    }
    copy_tree(work.path(), &out, &|rel| {
        rel.starts_with("catalog/sled") || rel == Path::new("LOCK")
    });
    drop(store);
    for entry in std::fs::read_dir(out.join("wal")).unwrap() {
        cut_fill_ahead(&entry.unwrap().path());
    }
    assert_eq!(wal_op_names(&out), sorted(ALL_OPS.to_vec()));
}

fn copy_tree(from: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
    fn walk(root: &Path, dir: &Path, to: &Path, skip: &dyn Fn(&Path) -> bool) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path.strip_prefix(root).unwrap();
            if skip(rel) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, to, skip);
            } else {
                let target = to.join(rel);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::copy(&path, &target).unwrap();
            }
        }
    }
    walk(from, from, to, skip);
}

/// Cuts the zeros the log writer fills ahead off a log file, after its last frame (the reader
/// accepts either), so that the committed sample is small.
fn cut_fill_ahead(path: &Path) {
    use crate::wal::record::{FRAME_HEADER, MAGIC};
    let bytes = std::fs::read(path).unwrap();
    let mut end = MAGIC.len();
    while end + FRAME_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[end..end + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += FRAME_HEADER + len;
    }
    std::fs::write(path, &bytes[..end]).unwrap();
}

fn sorted(mut v: Vec<&'static str>) -> Vec<&'static str> {
    v.sort_unstable();
    v.dedup();
    v
}

/// The op kinds in the sample's write-ahead log.
fn wal_op_names(store_dir: &Path) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(store_dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        Wal::read_segment(&file, |_, payload| {
            names.extend(op_names(&Op::decode(payload)?));
            Ok(())
        })
        .unwrap();
    }
    sorted(names)
}

#[test]
fn the_committed_sample_opens_with_everything_in_it() {
    let sample = sample_dir();
    assert_eq!(
        std::fs::read_to_string(sample.join("FORMAT")).unwrap(),
        "quiver-store 1\n"
    );
    assert_eq!(wal_op_names(&sample), sorted(ALL_OPS.to_vec()));
    assert!(sample.join("catalog/base.ckpt").is_file());
    assert!(
        std::fs::metadata(sample.join("catalog/delta.log"))
            .unwrap()
            .len()
            > 0
    );

    // Opening recovers (and may rewrite) the directory: work on a copy.
    let work = tempfile::tempdir().unwrap();
    copy_tree(&sample, work.path(), &|_| false);
    let options = StoreOptions {
        background: false,
        ..StoreOptions::default()
    };
    let store = Store::open_with(work.path(), options.clone()).unwrap();
    check_sample(&store);
    // A purge cut short by the crash finishes with the next collection.
    let collected = store.gc().unwrap();
    assert_eq!(collected.metric_points_removed, 700);
    assert_eq!(store.metrics_stats().segment_rows, 4000);
    store.close().unwrap();
    // And everything is still there after a clean close and reopen.
    let store = Store::open_with(work.path(), options).unwrap();
    check_sample(&store);
    store.close().unwrap();
}

fn check_sample(store: &Store) {
    let pinned = store.get_experiment_by_name("pinned").unwrap();
    assert_eq!(pinned.tags, vec![Tag::new("team", "core")]);
    let base = the_run(store, &pinned.experiment_id, "base-run");
    let run = store.get_run(&base).unwrap();
    let mut params = run.params.clone();
    params.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        params,
        vec![Param::new("layers", "12"), Param::new("lr", "0.01")]
    );
    assert!(run.tags.contains(&Tag::new("stage", "delta")));
    let (loss, _) = store.metric_history(&base, "loss", None, None).unwrap();
    assert_eq!(loss.len(), 3000);
    assert_eq!(loss.to_metrics()[2999], points("loss", 2999..3000)[0]);
    let (acc, _) = store.metric_history(&base, "acc", None, None).unwrap();
    assert_eq!(acc.len(), 1000);
    let (_, bytes) = store
        .map_artifact(&format!(
            "{}/{base}/artifacts/base.txt",
            pinned.experiment_id
        ))
        .unwrap();
    assert_eq!(&*bytes, b"base bytes");
    assert!(store
        .list_runs(&[&pinned.experiment_id], ViewType::All)
        .unwrap()
        .iter()
        .all(|r| r.run_name != "doomed-run"));
    assert!(store.get_experiment_by_name("gone").is_err());

    let scratch = store.get_experiment_by_name("scratch-renamed").unwrap();
    assert_eq!(scratch.tags, vec![Tag::new("note", "kept")]);
    assert_eq!(scratch.lifecycle_stage, LifecycleStage::Active);
    let wal_run = the_run(store, &scratch.experiment_id, "wal-run");
    let run = store.get_run(&wal_run).unwrap();
    assert_eq!(run.info.status, RunStatus::Finished);
    assert_eq!(run.info.end_time, Some(1_760_000_100_000));
    assert_eq!(run.params, vec![Param::new("optimizer", "adam")]);
    assert!(run.tags.contains(&Tag::new("keep", "yes")));
    assert!(!run.tags.iter().any(|t| t.key == "drop"));
    assert_eq!(run.dataset_inputs.len(), 1);
    assert_eq!(run.dataset_inputs[0].dataset.digest, "d1g1t5");
    assert_eq!(run.model_outputs.len(), 1);
    let (loss, _) = store.metric_history(&wal_run, "loss", None, None).unwrap();
    assert_eq!(loss.len(), 50);
    let root = format!("{}/{wal_run}/artifacts", scratch.experiment_id);
    let listed: Vec<String> = store
        .list_artifacts(&root)
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(listed, vec!["kept.txt".to_string()]);
    let logged = store
        .get_logged_model(&run.model_outputs[0].model_id)
        .unwrap();
    assert_eq!(logged.name, "wal-model");
    assert_eq!(logged.status, LoggedModelStatus::Ready);

    let rm = store.get_registered_model("pinned-model").unwrap();
    assert_eq!(rm.tags, vec![Tag::new("tier", "gold")]);
    assert_eq!(rm.description, "kept");
    assert_eq!(rm.aliases.len(), 1);
    let v1 = store.get_model_version("pinned-model", "1").unwrap();
    assert_eq!(v1.tags, vec![Tag::new("validated", "true")]);
    assert!(store.get_model_version("pinned-model", "2").is_err());
    assert!(store.get_registered_model("dropped-model").is_err());
    let deployments: Vec<String> = store
        .deployments()
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(deployments, vec!["prod".to_string()]);
    assert!(!store
        .registry_events(Some("pinned-model"))
        .unwrap()
        .is_empty());
    let total: i64 = {
        let batches = store.sql("SELECT count(*) FROM metrics").unwrap();
        let col = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        col.value(0)
    };
    assert_eq!(total, 3000 + 1000 + 50);
}
