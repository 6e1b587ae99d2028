//! Reopening: clean close, a damaged or missing catalog index, a torn log tail.

use std::io::Write;

use quiver_store::*;

use crate::{manual_options, new_run};

/// Writes a little of everything and returns what to check.
fn populate(s: &Store) -> (String, String) {
    let exp = s
        .create_experiment("recover-me", None, &[Tag::new("e", "1")])
        .unwrap();
    let run = s
        .create_run(CreateRun {
            experiment_id: Some(exp.clone()),
            run_name: Some("r".into()),
            ..Default::default()
        })
        .unwrap()
        .info
        .run_id;
    for b in 0..20 {
        let pts: Vec<Metric> = (0..100)
            .map(|j| Metric::new("loss", (b * 100 + j) as f64, 1, b * 100 + j))
            .collect();
        s.log_batch(
            &run,
            &pts,
            &[Param::new(format!("p{b}"), "v")],
            &[Tag::new("t", b.to_string())],
        )
        .unwrap();
        if b % 5 == 4 {
            s.flush().unwrap();
        }
    }
    s.put_artifact(&format!("{exp}/{run}/artifacts/a.txt"), &b"artifact"[..])
        .unwrap();
    s.delete_tag(&run, "t").unwrap();
    s.update_run(
        &run,
        UpdateRun {
            status: Some(RunStatus::Finished),
            end_time: Some(9),
            run_name: None,
        },
    )
    .unwrap();
    (exp, run)
}

fn check(s: &Store, exp: &str, run: &str) {
    let e = s.get_experiment_by_name("recover-me").unwrap();
    assert_eq!((e.experiment_id.as_str(), e.tags.len()), (exp, 1));
    let r = s.get_run(run).unwrap();
    assert_eq!(r.info.status, RunStatus::Finished);
    assert_eq!(r.params.len(), 20);
    assert!(!r.tags.iter().any(|t| t.key == "t"));
    assert_eq!(r.metrics[0].step, 1999);
    let (h, _) = s.metric_history(run, "loss", None, None).unwrap();
    assert_eq!(h.steps(), (0..2000).collect::<Vec<_>>().as_slice());
    assert_eq!(
        &*s.map_artifact(&format!("{exp}/{run}/artifacts/a.txt"))
            .unwrap()
            .1,
        b"artifact"
    );
    // And the store takes new writes with fresh ids.
    assert_ne!(new_run(s), run);
    assert_eq!(
        s.create_experiment("after", None, &[]).unwrap(),
        (exp.parse::<u64>().unwrap() + 1).to_string()
    );
}

fn small_checkpoints() -> StoreOptions {
    StoreOptions {
        checkpoint_min_delta_bytes: 1024,
        ..manual_options()
    }
}

#[test]
fn clean_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let (exp, run) = populate(&s);
    s.close().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    check(&s, &exp, &run);
}

#[test]
fn deleted_catalog_index_is_rebuilt_from_checkpoint_and_log() {
    for opts in [manual_options(), small_checkpoints()] {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open_with(dir.path(), opts.clone()).unwrap();
        let (exp, run) = populate(&s);
        s.close().unwrap();
        std::fs::remove_dir_all(dir.path().join("catalog/sled")).unwrap();
        let s = Store::open_with(dir.path(), opts).unwrap();
        check(&s, &exp, &run);
    }
}

#[test]
fn damaged_catalog_index_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), small_checkpoints()).unwrap();
    let (exp, run) = populate(&s);
    s.close().unwrap();
    assert!(
        dir.path().join("catalog/base.ckpt").exists(),
        "a base checkpoint was written"
    );
    // Overwrite every file of the index with garbage.
    let mut damaged = 0;
    for entry in walk(&dir.path().join("catalog/sled")) {
        let len = std::fs::metadata(&entry).unwrap().len().max(64);
        std::fs::write(&entry, vec![0xA5; len as usize]).unwrap();
        damaged += 1;
    }
    assert!(damaged > 0);
    let s = Store::open_with(dir.path(), small_checkpoints()).unwrap();
    check(&s, &exp, &run);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn torn_log_tail_is_discarded_and_writing_continues() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    let (exp, run) = populate(&s);
    s.close().unwrap();
    // Half a record at the end of the newest log file, as a crash mid-write leaves it.
    let mut logs: Vec<_> = walk(&dir.path().join("wal"));
    logs.sort();
    let last = logs.last().unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(last).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    check(&s, &exp, &run);
    s.log_metric(&run, &Metric::new("after", 1.0, 1, 0))
        .unwrap();
    s.close().unwrap();
    let s = Store::open_with(dir.path(), manual_options()).unwrap();
    assert_eq!(
        s.metric_history(&run, "after", None, None).unwrap().0.len(),
        1
    );
}

#[test]
fn format_version_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    Store::open_with(dir.path(), manual_options())
        .unwrap()
        .close()
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("FORMAT")).unwrap(),
        "quiver-store 1\n"
    );
    std::fs::write(dir.path().join("FORMAT"), "quiver-store 99\n").unwrap();
    let e = Store::open_with(dir.path(), manual_options()).unwrap_err();
    assert!(e.to_string().contains("format 99"), "{e}");
}
