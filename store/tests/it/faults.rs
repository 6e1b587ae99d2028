//! A failing disk: injected write, fsync and delta-log failures. A failed write is never seen by
//! a reader, the store recovers by itself once writes succeed again, and what readers saw before
//! a reopen is exactly what the reopened store holds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_store::*;

use crate::{manual_options, new_run_in};

fn open(dir: &std::path::Path, faults: &Arc<FaultInjection>) -> Store {
    Store::open_with(
        dir,
        StoreOptions {
            faults: Some(faults.clone()),
            index_on_open: false,
            ..manual_options()
        },
    )
    .unwrap()
}

fn points(batch: i64) -> Vec<Metric> {
    (0..10)
        .map(|j| {
            Metric::new(
                "loss",
                (batch * 10 + j) as f64,
                1_700_000_000_000,
                batch * 10 + j,
            )
        })
        .collect()
}

/// Everything a reader can see of `run`, through each read path.
fn observe(s: &Store, exp: &str, run: &str) -> String {
    let r = s.get_run(run).unwrap();
    let mut params: Vec<_> = r.params.iter().map(|p| p.key.clone()).collect();
    params.sort();
    let (history, _) = s.metric_history(run, "loss", None, None).unwrap();
    let count = s.sql("SELECT count(*) AS n FROM metrics").unwrap();
    let count = quiver_store::arrow::util::pretty::pretty_format_batches(&count)
        .unwrap()
        .to_string();
    let page = s
        .search_runs(&RunSearch {
            experiment_ids: vec![exp.to_string()],
            filter: "metrics.loss >= 0".into(),
            max_results: 10,
            ..Default::default()
        })
        .unwrap();
    let searched: Vec<_> = page
        .runs
        .iter()
        .map(|r| r.metrics.iter().map(|m| m.step).collect::<Vec<_>>())
        .collect();
    format!(
        "params={params:?} latest={:?} history={} sql={count} search={searched:?}",
        r.metrics.iter().map(|m| m.step).collect::<Vec<_>>(),
        history.len()
    )
}

/// A new experiment with one run: their ids.
fn setup(s: &Store) -> (String, String) {
    let exp = s.create_experiment("faults", None, &[]).unwrap();
    let run = new_run_in(s, &exp);
    (exp, run)
}

/// The store in `dir` as a crash leaves it: the running store is abandoned (never closed) and its
/// directory, which it keeps locked, is copied and opened.
fn reopen_after_crash(
    s: Store,
    dir: &std::path::Path,
    faults: &Arc<FaultInjection>,
) -> (tempfile::TempDir, Store) {
    std::mem::forget(s);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir, copy.path());
    let reopened = open(copy.path(), faults);
    (copy, reopened)
}

/// Waits (bounded) until the store accepts writes again.
fn wait_writable(s: &Store) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = s.writable() {
        assert!(Instant::now() < deadline, "store still refuses writes: {e}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_failed_fsync_is_never_visible_and_writes_resume_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjection::default());
    let s = open(dir.path(), &faults);
    let (exp, run) = setup(&s);
    s.log_batch(&run, &points(0), &[Param::new("a", "1")], &[])
        .unwrap();
    // Search once so the run index exists and must stay in step.
    let before = observe(&s, &exp, &run);

    // The disk is full: every write of the log fails, also the recovery's claim of space.
    faults.fail_wal_writes(u32::MAX);
    let err = s
        .log_batch(&run, &points(1), &[Param::new("b", "1")], &[])
        .unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    assert_eq!(err.code(), ErrorCode::ResourceExhausted);
    assert!(!err
        .public_message()
        .contains(&*dir.path().to_string_lossy()));
    assert_eq!(
        observe(&s, &exp, &run),
        before,
        "the failed batch is not visible"
    );
    // While the disk stays full, writes are refused with the reason, and nothing changes.
    std::thread::sleep(Duration::from_millis(1100));
    let refusal = s.writable().unwrap_err();
    assert!(refusal.is_disk_full(), "{refusal}");
    assert!(s.log_batch(&run, &points(2), &[], &[]).is_err());
    assert!(s.create_experiment("nope", None, &[]).is_err());
    assert_eq!(observe(&s, &exp, &run), before);

    // Space is back: within seconds the store writes again, without reopening.
    faults.fail_wal_writes(0);
    wait_writable(&s);
    s.log_batch(&run, &points(3), &[Param::new("c", "1")], &[])
        .unwrap();
    // A failed fsync (data written, durability unknown) is refused the same way.
    faults.fail_wal_syncs(1);
    assert!(s
        .log_batch(&run, &points(4), &[Param::new("d", "1")], &[])
        .is_err());
    wait_writable(&s);
    s.log_batch(&run, &points(5), &[], &[]).unwrap();
    let seen = observe(&s, &exp, &run);
    assert!(seen.contains(r#"params=["a", "c"]"#), "{seen}");
    assert!(seen.contains("history=30"), "{seen}");

    // What readers saw is exactly what the log holds: after a crash ...
    let (copy, s2) = reopen_after_crash(s, dir.path(), &faults);
    assert_eq!(observe(&s2, &exp, &run), seen);
    s2.close().unwrap();
    // ... and after a clean close.
    let s3 = open(copy.path(), &faults);
    assert_eq!(observe(&s3, &exp, &run), seen);
}

#[test]
fn writers_racing_a_failing_log_leave_what_readers_saw_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjection::default());
    let s = Arc::new(open(dir.path(), &faults));
    let (exp, _) = setup(&s);
    let runs: Vec<String> = (0..4).map(|_| new_run_in(&s, &exp)).collect();
    let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads: Vec<_> = runs
        .iter()
        .cloned()
        .map(|run| {
            let (s, acked) = (s.clone(), acked.clone());
            std::thread::spawn(move || {
                for b in 0..60i64 {
                    let p = Param::new(format!("p{b}"), "v");
                    if s.log_batch(&run, &points(b), &[p], &[]).is_ok() {
                        acked.lock().unwrap().push((run.clone(), b));
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(30));
        if i % 2 == 0 {
            faults.fail_wal_syncs(1);
        } else {
            faults.fail_wal_writes(1);
        }
    }
    for t in threads {
        t.join().unwrap();
    }
    wait_writable(&s);
    let seen: Vec<String> = runs.iter().map(|r| observe(&s, &exp, r)).collect();
    for (run, b) in acked.lock().unwrap().iter() {
        let r = s.get_run(run).unwrap();
        assert!(
            r.params.iter().any(|p| p.key == format!("p{b}")),
            "acknowledged batch {b} lost"
        );
    }
    let store = Arc::try_unwrap(s).unwrap();
    store.close().unwrap();
    let s2 = open(dir.path(), &faults);
    let after: Vec<String> = runs.iter().map(|r| observe(&s2, &exp, r)).collect();
    assert_eq!(after, seen);
}

#[test]
fn a_failed_delta_log_append_is_retried_by_the_next_flush() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjection::default());
    let s = open(dir.path(), &faults);
    let (exp, run) = setup(&s);
    s.log_batch(&run, &points(0), &[Param::new("a", "1")], &[])
        .unwrap();
    faults.fail_delta_appends(1);
    assert!(s.flush().is_err());
    s.log_batch(&run, &points(1), &[Param::new("b", "1")], &[])
        .unwrap();
    s.flush().unwrap();
    s.log_batch(&run, &points(2), &[Param::new("c", "1")], &[])
        .unwrap();
    s.flush().unwrap();
    let seen = observe(&s, &exp, &run);
    // Crash (no clean close): the catalog is rebuilt from base + delta + log.
    let (_copy, s2) = reopen_after_crash(s, dir.path(), &faults);
    assert_eq!(observe(&s2, &exp, &run), seen);
    assert!(seen.contains(r#"params=["a", "b", "c"]"#), "{seen}");
}

/// Copies a store directory as a crash would leave it (without its lock holder).
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
