//! Crash test: a real child process writes under load and is killed with SIGKILL at random
//! moments; every write it acknowledged must be there after reopening, and nothing half-written.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_store::*;
use rand::Rng;

use crate::manual_options;

const CHILD_MODE: &str = "QUIVER_CRASH_CHILD";
const CHILD_DIR: &str = "QUIVER_CRASH_DIR";
const POINTS_PER_BATCH: i64 = 200;
const KEYS: i64 = 3;

/// Options that make the child flush, retire its log, checkpoint and compact all the time, so
/// kills land in every phase.
fn busy_options() -> StoreOptions {
    StoreOptions {
        flush_points: 20_000,
        flush_interval: Duration::from_millis(50),
        flush_wal_bytes: 1 << 20,
        wal_segment_bytes: 256 << 10,
        compact_max_small: 3,
        compact_small_rows: 1_000_000,
        checkpoint_min_delta_bytes: 32 << 10,
        background: true,
        index_on_open: true,
        sql: QueryOptions::default(),
    }
}

/// Not a test of its own: the body of the child process (does nothing unless started as one).
#[test]
fn crash_child_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else {
        return;
    };
    let dir = std::env::var(CHILD_DIR).unwrap();
    let store = Arc::new(Store::open_with(&dir, busy_options()).unwrap());
    let threads = if mode == "writer" { 4 } else { 1 };
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || write_forever(&store))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

/// Logs batches to a new run until killed, printing one line per acknowledged write.
fn write_forever(store: &Store) {
    let run = store.create_run(CreateRun::default()).unwrap().info.run_id;
    let model = format!("model-{run}");
    store
        .create_registered_model(&model, &[], None, "crash")
        .unwrap();
    println!("ACK RUN {run}");
    for b in 0i64.. {
        let key = format!("m{}", b % KEYS);
        let metrics: Vec<Metric> = (0..POINTS_PER_BATCH)
            .map(|j| {
                let step = b * POINTS_PER_BATCH + j;
                Metric::new(key.clone(), step as f64, step, step)
            })
            .collect();
        let params = if b % 10 == 0 {
            vec![Param::new(format!("p{b}"), b.to_string())]
        } else {
            vec![]
        };
        store
            .log_batch(&run, &metrics, &params, &[Tag::new("t", b.to_string())])
            .unwrap();
        if b % 25 == 0 {
            let path = format!("0/{run}/artifacts/f{b}");
            store
                .put_artifact(&path, &*b.to_string().into_bytes())
                .unwrap();
        }
        if b % 20 == 0 {
            // Registry writes: a version and a stage change (which archives the previous one).
            let req = CreateModelVersion {
                name: model.clone(),
                source: format!("runs:/{run}/b{b}"),
                run_id: Some(run.clone()),
                ..Default::default()
            };
            let v = store.create_model_version(&req, "crash").unwrap();
            store
                .transition_model_version_stage(&model, &v.version, "Staging", true, "crash")
                .unwrap();
        }
        println!("ACK {run} {b}");
    }
}

fn spawn_child(dir: &std::path::Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash::crash_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_MODE, "writer")
        .env(CHILD_DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Runs one child, kills it after a random delay, and returns the last acknowledged batch of
/// each run it created (-1 for a run with none).
fn run_and_kill(dir: &std::path::Path, rng: &mut impl Rng) -> BTreeMap<String, i64> {
    let mut child = spawn_child(dir);
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let record = |line: String, acked: &mut BTreeMap<String, i64>| {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["ACK", "RUN", run] => {
                acked.entry(run.to_string()).or_insert(-1);
            }
            ["ACK", run, b] => {
                acked.insert(run.to_string(), b.parse().unwrap());
            }
            _ => {}
        }
    };
    // Wait for the first acknowledgement (or give up after a generous bound), then a bit more.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.values().all(|b| *b < 0) && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            record(line, &mut acked);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("writer child exited early: {status}");
        }
    }
    std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        record(line, &mut acked);
    }
    acked
}

/// Checks every acknowledged write of `run` up to batch `last`, and that every batch present is
/// complete.
fn verify_run(store: &Store, run: &str, last: i64) {
    let info = store
        .get_run(run)
        .unwrap_or_else(|e| panic!("run {run} lost: {e}"));
    let mut batches_present = std::collections::BTreeSet::new();
    for k in 0..KEYS {
        let key = format!("m{k}");
        let (h, next) = store.metric_history(run, &key, None, None).unwrap();
        assert!(next.is_none());
        let mut per_batch: BTreeMap<i64, i64> = BTreeMap::new();
        for (i, &step) in h.steps().iter().enumerate() {
            assert_eq!(h.values()[i], step as f64, "value of step {step}");
            assert_eq!(h.timestamps()[i], step);
            *per_batch.entry(step / POINTS_PER_BATCH).or_default() += 1;
        }
        for (b, n) in per_batch {
            assert_eq!(b % KEYS, k, "batch {b} under the wrong key");
            assert_eq!(n, POINTS_PER_BATCH, "batch {b} of run {run} is half there");
            batches_present.insert(b);
        }
        if let Some(latest) = info.metrics.iter().find(|m| m.key == key) {
            assert_eq!(
                Some(&latest.step),
                h.steps().iter().max(),
                "latest of {key}"
            );
        }
    }
    for b in 0..=last {
        assert!(
            batches_present.contains(&b),
            "acknowledged batch {b} of run {run} lost"
        );
        if b % 10 == 0 {
            let p = info.params.iter().find(|p| p.key == format!("p{b}"));
            assert_eq!(
                p.map(|p| p.value.as_str()),
                Some(b.to_string().as_str()),
                "param p{b}"
            );
        }
        if b % 25 == 0 {
            let (_, bytes) = store
                .map_artifact(&format!("0/{run}/artifacts/f{b}"))
                .unwrap();
            assert_eq!(&*bytes, b.to_string().as_bytes());
        }
    }
    // Registry: the model exists; every acknowledged version is there; every version has its
    // creation event and no event outlives its change (both are one op).
    let model = format!("model-{run}");
    store
        .get_registered_model(&model)
        .unwrap_or_else(|e| panic!("registered model of run {run} lost: {e}"));
    let versions = store
        .search_model_versions(&RegistrySearch {
            filter: format!("name = '{model}'"),
            max_results: 100_000,
            ..Default::default()
        })
        .unwrap()
        .model_versions;
    for b in (0..=last).filter(|b| b % 20 == 0) {
        let source = format!("runs:/{run}/b{b}");
        assert!(
            versions.iter().any(|v| v.source == source),
            "acknowledged model version of batch {b} of run {run} lost"
        );
    }
    let events = store.registry_events(Some(&model)).unwrap();
    let created = events
        .iter()
        .filter(|e| e.action == "create_model_version")
        .count();
    assert_eq!(
        created,
        versions.len(),
        "versions and their events of {model}"
    );
    // Batches are contiguous: nothing after a gap.
    let max = batches_present.iter().max().copied().unwrap_or(-1);
    assert_eq!(
        batches_present.len() as i64,
        max + 1,
        "gap in batches of run {run}"
    );
    if last >= 0 {
        let t = info.tags.iter().find(|t| t.key == "t").expect("tag t");
        assert!(t.value.parse::<i64>().unwrap() >= last);
    }
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let cycles: usize = std::env::var("QUIVER_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::rng();
    let mut all: BTreeMap<String, i64> = BTreeMap::new();
    for cycle in 0..cycles {
        let acked = run_and_kill(dir.path(), &mut rng);
        assert!(
            acked.values().any(|b| *b >= 0),
            "cycle {cycle}: nothing acknowledged"
        );
        all.extend(acked);
        // Every other cycle the parent recovers and checks; otherwise the next child recovers
        // the crashed store itself, and the check happens later.
        if cycle % 2 == 1 || cycle + 1 == cycles {
            let store = Store::open_with(dir.path(), manual_options()).unwrap();
            for (run, last) in &all {
                verify_run(&store, run, *last);
            }
            store.close().unwrap();
        }
    }
}
