//! Permanent deletion (`Store::purge`, MLflow's `gc`) and garbage collection (`Store::gc`):
//! what a purge removes from every read path, that it survives reopening, and that collecting
//! unreferenced blobs is safe against concurrent uploads of the same content.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use quiver_store::{CreateRun, ErrorCode, Metric, PurgeRequest, Store, ViewType};

use crate::{manual_options, new_run, temp_store};

fn log_points(store: &Store, run_id: &str, key: &str, n: i64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let metrics: Vec<Metric> = chunk
            .iter()
            .map(|&s| Metric::new(key, s as f64, 1_700_000_000_000 + s, s))
            .collect();
        store.log_batch(run_id, &metrics, &[], &[]).unwrap();
    }
}

fn count(store: &Store, sql: &str) -> i64 {
    let batches = store.sql(sql).unwrap();
    let col = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<quiver_store::arrow::array::Int64Array>()
        .unwrap();
    col.value(0)
}

fn blob_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir.join("blobs")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "tmp" || !entry.file_type().unwrap().is_dir() {
            continue;
        }
        for blob in std::fs::read_dir(entry.path()).unwrap() {
            total += blob.unwrap().metadata().unwrap().len();
        }
    }
    total
}

#[test]
fn purging_a_deleted_run_removes_its_metrics_artifacts_and_record_for_good() {
    let (dir, store) = temp_store();
    let gone = new_run(&store);
    let kept = new_run(&store);
    // Half the points in a segment, half still buffered when the purge starts.
    log_points(&store, &gone, "loss", 3000);
    log_points(&store, &kept, "loss", 2000);
    store.flush().unwrap();
    log_points(&store, &gone, "acc", 500);
    let root = |r: &str| format!("0/{r}/artifacts");
    store
        .put_artifact(&format!("{}/model.bin", root(&gone)), &[1u8; 4096][..])
        .unwrap();
    store
        .put_artifact(&format!("{}/model.bin", root(&kept)), &[2u8; 4096][..])
        .unwrap();

    // Only deleted runs can be purged, and nothing is purged then.
    let refused = store
        .purge(&PurgeRequest {
            run_ids: vec![gone.clone()],
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::InvalidParameterValue);
    assert!(refused
        .to_string()
        .contains("not in the deleted lifecycle stage"));

    store.delete_run(&gone).unwrap();
    let report = store.purge(&PurgeRequest::default()).unwrap();
    assert_eq!(report.runs_purged, 1);
    assert_eq!(report.experiments_purged, 0);
    assert_eq!(report.metric_points_removed, 3500);
    assert_eq!(
        (
            report.blobs.blobs_removed,
            report.blobs.bytes_freed,
            report.blobs.blobs_kept
        ),
        (1, 4096, 1)
    );

    let check = |store: &Store| {
        assert_eq!(
            store.get_run(&gone).unwrap_err().code(),
            ErrorCode::ResourceDoesNotExist
        );
        let (history, _) = store.metric_history(&gone, "loss", None, None).unwrap();
        assert!(history.is_empty());
        assert!(store.list_artifacts(&root(&gone)).unwrap().is_empty());
        assert_eq!(count(store, "SELECT count(*) FROM metrics"), 2000);
        assert_eq!(count(store, "SELECT count(*) FROM runs"), 1);
        let (history, _) = store.metric_history(&kept, "loss", None, None).unwrap();
        assert_eq!(history.len(), 2000);
        let (_, bytes) = store
            .map_artifact(&format!("{}/model.bin", root(&kept)))
            .unwrap();
        assert_eq!(&*bytes, &[2u8; 4096][..]);
        assert_eq!(store.metrics_stats().segment_rows, 2000);
    };
    check(&store);
    assert_eq!(blob_bytes(dir.path()), 4096);
    store.close().unwrap();
    let store = Store::open_with(dir.path(), manual_options()).unwrap();
    check(&store);
    // A second purge finds nothing.
    assert_eq!(
        store.purge(&PurgeRequest::default()).unwrap().runs_purged,
        0
    );
}

#[test]
fn purging_a_deleted_experiment_takes_its_runs_and_frees_its_name() {
    let (dir, store) = temp_store();
    let exp = store.create_experiment("doomed", None, &[]).unwrap();
    let run = store
        .create_run(CreateRun {
            experiment_id: Some(exp.clone()),
            ..Default::default()
        })
        .unwrap()
        .info
        .run_id;
    log_points(&store, &run, "loss", 100);
    store
        .put_artifact(
            &format!("{exp}/{run}/artifacts/a.txt"),
            &b"doomed bytes"[..],
        )
        .unwrap();
    // Searched once, so the run index holds the experiment.
    assert_eq!(
        store
            .search_runs(&quiver_store::RunSearch {
                experiment_ids: vec![exp.clone()],
                view: ViewType::All,
                max_results: 100,
                ..Default::default()
            })
            .unwrap()
            .runs
            .len(),
        1
    );
    store.delete_experiment(&exp).unwrap();

    // An experiment younger than --older-than is refused by id.
    let young = store
        .purge(&PurgeRequest {
            experiment_ids: vec![exp.clone()],
            older_than: Some(std::time::Duration::from_secs(3600)),
            ..Default::default()
        })
        .unwrap_err();
    assert!(young.to_string().contains("not older than"), "{young}");

    let report = store
        .purge(&PurgeRequest {
            experiment_ids: vec![exp.clone()],
            ..Default::default()
        })
        .unwrap();
    assert_eq!((report.runs_purged, report.experiments_purged), (1, 1));
    assert_eq!(report.metric_points_removed, 100);
    assert_eq!(report.blobs.blobs_removed, 1);
    assert_eq!(
        store.get_experiment(&exp).unwrap_err().code(),
        ErrorCode::ResourceDoesNotExist
    );
    assert_eq!(
        store.get_run(&run).unwrap_err().code(),
        ErrorCode::ResourceDoesNotExist
    );
    let page = store
        .search_runs(&quiver_store::RunSearch {
            experiment_ids: vec![exp.clone()],
            view: ViewType::All,
            max_results: 100,
            ..Default::default()
        })
        .unwrap();
    assert!(page.runs.is_empty());
    // The name is free again; the id is not reused.
    let again = store.create_experiment("doomed", None, &[]).unwrap();
    assert_ne!(again, exp);
    assert_eq!(blob_bytes(dir.path()), 0);
}

#[test]
fn collecting_blobs_never_removes_one_an_upload_just_referenced() {
    let (_dir, store) = temp_store();
    let store = Arc::new(store);
    let stop = Arc::new(AtomicBool::new(false));
    let collector = {
        let (store, stop) = (store.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut removed = 0;
            while !stop.load(Ordering::Acquire) {
                removed += store.gc().unwrap().blobs.blobs_removed;
            }
            removed
        })
    };
    // Writers upload the same few contents again and again, and delete them: every blob an
    // upload has just pointed a path at must stay readable until that path is deleted.
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..150u32 {
                    let content = vec![(i % 4) as u8; 64 << 10];
                    let path = format!("0/r{w}/artifacts/f");
                    store.put_artifact(&path, &content[..]).unwrap();
                    let (_, bytes) = store.map_artifact(&path).unwrap();
                    assert_eq!(&*bytes, &content[..]);
                    store.delete_artifacts(&path).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Release);
    let removed = collector.join().unwrap();
    assert!(removed > 0, "the collector ran alongside the uploads");
    let report = store.gc().unwrap();
    assert_eq!(report.blobs.blobs_kept, 0);
}
