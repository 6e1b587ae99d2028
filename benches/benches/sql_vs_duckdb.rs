//! SQL over the store (`Store::sql`) against DuckDB over the same Parquet segment files (figures
//! in `README.md`, section "SQL: Quiver against DuckDB").
//!
//! 1. Builds a store of `QUIVER_SQL_BENCH_POINTS` points (default 100,000,000): [`RUNS`] runs ×
//!    [`KEYS`] keys, every series the same number of steps (noisy training curves, ~100 ms
//!    timestamps), logged by [`WRITERS`] threads through `Store::log_batch`, 1000 points per
//!    batch, with the default options (flushes of 2M points on the background thread, as a
//!    server runs); then `flush()` and `compact()` until nothing is left to merge, so that every
//!    point is in a Parquet segment.
//! 2. Times, alternating one run of each, `QUIVER_SQL_BENCH_RUNS` runs (default 7) after one
//!    untimed warm-up each (page cache warm for both):
//!    - Quiver: `SELECT run_id, key, avg(value), max(step) FROM metrics GROUP BY 1, 2` through
//!      `Store::sql_with` (timed from the call to the collected result);
//!    - DuckDB (the `duckdb` Python package of the compat venv, one process kept open, timed
//!      inside it from `execute` to `fetchall`): the same figures from the segment files, grouped
//!      by their `series_id` column and named through Quiver's `metric_series` table (loaded into
//!      a DuckDB table once, before timing):
//!      `SELECT s.run_id, s.key, a.avg_value, a.max_step FROM (SELECT series_id, avg(value) AS
//!      avg_value, max(step) AS max_step FROM read_parquet([...]) GROUP BY series_id) a JOIN
//!      series s USING (series_id)`;
//!    - for context, DuckDB joining first and grouping by the strings as Quiver does.
//!
//!    Both results are checked to agree (same series, same max step, averages equal to 1e-9).
//!    Prints medians, min and max, and points per second.
//!
//! The venv is the one `cargo test -p quiver --test it compat` makes (`$QUIVER_COMPAT_VENV`, else
//! `<target>/compat-venv-<hash of compat/requirements.txt>`), or set `QUIVER_DUCKDB_PYTHON` to a
//! Python that has `duckdb`; without one, only Quiver is timed. In test mode (`cargo test
//! --benches`) the store has 200,000 points and each query runs twice.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_benches::{
    bench_dir, mib, scaled, segment_files, test_mode, timeline, training_curve, CurveShape, BASE_TS,
};
use quiver_store::arrow::array::{Array, Float64Array, Int64Array, StringArray, UInt64Array};
use quiver_store::arrow::record_batch::RecordBatch;
use quiver_store::{CreateRun, Metric, QueryOptions, Store, StoreOptions};
use rand::rngs::SmallRng;
use rand::SeedableRng;
use serde_json::Value;

/// Runs of the store.
const RUNS: usize = 100;
/// Keys per run (so `RUNS × KEYS` series).
const KEYS: usize = 10;
/// Threads logging, each to its own runs.
const WRITERS: usize = 4;
/// Steps per batch: `KEYS × STEPS_PER_BATCH` = 1000 points, MLflow's limit.
const STEPS_PER_BATCH: usize = 100;

/// The query, for Quiver.
const QUERY: &str = "SELECT run_id, key, avg(value), max(step) FROM metrics GROUP BY 1, 2";

/// The DuckDB side: one process that loads the series names, then answers each line of its
/// standard input (`grouped`, `joined`) with one JSON line (seconds, and the rows).
const DUCKDB_SCRIPT: &str = r#"
import json, sys, time
import duckdb
files = json.loads(sys.argv[1])
con = duckdb.connect()
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE series (series_id UBIGINT, run_id VARCHAR, key VARCHAR)")
con.executemany("INSERT INTO series VALUES (?, ?, ?)", json.loads(sys.stdin.readline()))
queries = {
    "grouped": "SELECT s.run_id, s.key, a.avg_value, a.max_step FROM "
               "(SELECT series_id, avg(value) AS avg_value, max(step) AS max_step "
               " FROM read_parquet(?) GROUP BY series_id) a JOIN series s USING (series_id)",
    "joined": "SELECT s.run_id, s.key, avg(p.value), max(p.step) "
              "FROM read_parquet(?) p JOIN series s USING (series_id) GROUP BY 1, 2",
}
print(json.dumps({"version": duckdb.__version__,
                  "threads": con.execute("SELECT current_setting('threads')").fetchone()[0]}),
      flush=True)
for line in sys.stdin:
    name = line.strip()
    start = time.perf_counter()
    rows = con.execute(queries[name], [files]).fetchall()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rows": rows}), flush=True)
"#;

/// One result row: run_id, key, avg(value), max(step).
type Row = (String, String, f64, i64);

fn main() {
    let points = std::env::var("QUIVER_SQL_BENCH_POINTS")
        .ok()
        .map(|v| {
            v.replace('_', "")
                .parse::<u64>()
                .expect("QUIVER_SQL_BENCH_POINTS: a number")
        })
        .unwrap_or(scaled(100_000_000, 200_000));
    let runs = std::env::var("QUIVER_SQL_BENCH_RUNS")
        .ok()
        .map(|v| v.parse::<usize>().expect("QUIVER_SQL_BENCH_RUNS: a number"))
        .unwrap_or(scaled(7, 2) as usize);
    let series = (RUNS * KEYS) as u64;
    let steps = (points / series).max(1);
    let steps = steps.div_ceil(STEPS_PER_BATCH as u64) * STEPS_PER_BATCH as u64;
    println!(
        "sql_vs_duckdb: {} points ({RUNS} runs × {KEYS} keys × {steps} steps){}",
        steps * series,
        if test_mode() { ", test mode" } else { "" }
    );

    let dir = bench_dir("sql_vs_duckdb");
    let store_dir = dir.path().join("store");
    let store = Arc::new(Store::open_with(&store_dir, StoreOptions::default()).expect("open"));
    let started = Instant::now();
    build(&store, steps as i64);
    let built = started.elapsed();
    store.flush().expect("flush");
    while store.compact().expect("compact") {}
    let stats = store.metrics_stats();
    assert_eq!(stats.buffered_points, 0, "every point is in a segment");
    assert_eq!(stats.segment_rows, steps * series);
    let (bytes, files) = segment_files(&store_dir).expect("segment files");
    println!(
        "  built in {:.1} s (logging {:.1} s, {:.2} M points/s); {files} segments, {:.1} MiB, {:.2} bytes/point",
        started.elapsed().as_secs_f64(),
        built.as_secs_f64(),
        (steps * series) as f64 / built.as_secs_f64() / 1e6,
        mib(bytes),
        bytes as f64 / (steps * series) as f64
    );

    let options = QueryOptions {
        timeout: Duration::from_secs(1800),
        ..QueryOptions::default()
    };
    let quiver = || -> (Duration, Vec<Row>) {
        let t = Instant::now();
        let batches = store.sql_with(QUERY, &options).expect("the query runs");
        (t.elapsed(), rows(&batches))
    };
    let mut duck = DuckDb::start(&store, &store_dir);

    // Warm-up (and the check that both agree).
    let (_, ours) = quiver();
    assert_eq!(ours.len(), series as usize);
    for r in &ours {
        assert_eq!(r.3, steps as i64 - 1, "max(step) of {}/{}", r.0, r.1);
    }
    if let Some(d) = duck.as_mut() {
        for query in ["grouped", "joined"] {
            let (_, theirs) = d.run(query);
            compare(&ours, &theirs, query);
        }
    }

    let mut times: Vec<(&str, Vec<Duration>)> = vec![
        ("Quiver: Store::sql, GROUP BY run_id, key", Vec::new()),
        ("DuckDB: GROUP BY series_id, then name", Vec::new()),
        ("DuckDB: join, then GROUP BY run_id, key", Vec::new()),
    ];
    for _ in 0..runs {
        times[0].1.push(quiver().0);
        if let Some(d) = duck.as_mut() {
            times[1].1.push(d.run("grouped").0);
            times[2].1.push(d.run("joined").0);
        }
    }
    drop(duck);

    let total = (steps * series) as f64;
    println!("\n| engine, query | median | min | max | M points/s (median) |");
    println!("|---|---|---|---|---|");
    let mut medians = Vec::new();
    for (name, t) in &mut times {
        if t.is_empty() {
            println!("| {name} | SKIPPED (no Python with duckdb) | | | |");
            continue;
        }
        t.sort();
        let median = t[t.len() / 2];
        medians.push(median);
        println!(
            "| {name} | {:.3} s | {:.3} s | {:.3} s | {:.1} |",
            median.as_secs_f64(),
            t[0].as_secs_f64(),
            t[t.len() - 1].as_secs_f64(),
            total / median.as_secs_f64() / 1e6
        );
    }
    if medians.len() >= 2 {
        println!(
            "\nQuiver / DuckDB (grouped by series_id): {:.2}× ({runs} runs each, medians)",
            medians[0].as_secs_f64() / medians[1].as_secs_f64()
        );
    }
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().expect("close"),
        Err(_) => unreachable!("the writers are done"),
    }
}

/// Logs `steps` steps of every series from [`WRITERS`] threads, each owning every
/// `WRITERS`-th run and logging its runs in turn, [`STEPS_PER_BATCH`] steps × [`KEYS`] keys per
/// batch.
fn build(store: &Arc<Store>, steps: i64) {
    let run_ids: Vec<String> = (0..RUNS)
        .map(|r| {
            store
                .create_run(CreateRun {
                    run_name: Some(format!("run-{r:03}")),
                    start_time: Some(BASE_TS),
                    ..CreateRun::default()
                })
                .expect("create a run")
                .info
                .run_id
        })
        .collect();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("metric_{k}")).collect();
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            let mine: Vec<(usize, String)> = run_ids
                .iter()
                .enumerate()
                .filter(|(r, _)| r % WRITERS == w)
                .map(|(r, id)| (r, id.clone()))
                .collect();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(w as u64);
                let mut state: Vec<_> = mine
                    .iter()
                    .map(|(r, _)| {
                        let curves: Vec<_> = (0..KEYS)
                            .map(|k| {
                                let seed = (*r * KEYS + k) as u64;
                                training_curve(CurveShape::random(&mut rng), seed)
                            })
                            .collect();
                        (curves, timeline(*r as u64))
                    })
                    .collect();
                let mut batch: Vec<Metric> = Vec::with_capacity(KEYS * STEPS_PER_BATCH);
                for first in (0..steps).step_by(STEPS_PER_BATCH) {
                    for ((_, run_id), (curves, times)) in mine.iter().zip(&mut state) {
                        batch.clear();
                        for step in first..(first + STEPS_PER_BATCH as i64).min(steps) {
                            let ts = times.next().expect("timelines are endless");
                            for (key, curve) in keys.iter().zip(curves.iter_mut()) {
                                batch.push(Metric::new(key.as_str(), curve.value(step), ts, step));
                            }
                        }
                        store
                            .log_batch(run_id, &batch, &[], &[])
                            .expect("log_batch");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a writer panicked");
    }
}

/// The rows of Quiver's result, sorted by (run_id, key).
fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let s = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
        };
        let (run, key) = (s(0), s(1));
        let avg = b
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .expect("f64");
        let max = b
            .column(3)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("i64");
        for i in 0..b.num_rows() {
            out.push((
                run.value(i).to_string(),
                key.value(i).to_string(),
                avg.value(i),
                max.value(i),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

/// Panics unless the two results hold the same series with the same figures.
fn compare(ours: &[Row], theirs: &[Row], what: &str) {
    assert_eq!(ours.len(), theirs.len(), "DuckDB {what}: number of series");
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!((&a.0, &a.1, a.3), (&b.0, &b.1, b.3), "DuckDB {what}");
        assert!(
            (a.2 - b.2).abs() <= 1e-9 * a.2.abs().max(1e-300),
            "DuckDB {what}: avg of {}/{}: {} against {}",
            a.0,
            a.1,
            a.2,
            b.2
        );
    }
}

/// The DuckDB process.
struct DuckDb {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl DuckDb {
    /// Starts DuckDB over the segment files of the store, with its series names; `None` (and a
    /// message) when there is no Python with `duckdb`.
    fn start(store: &Store, store_dir: &Path) -> Option<DuckDb> {
        let Some(python) = python_with_duckdb() else {
            println!(
                "  DuckDB: SKIPPED, no Python with duckdb (run `cargo test -p quiver --test it \
                 compat` once to make the compat venv, or set QUIVER_DUCKDB_PYTHON)"
            );
            return None;
        };
        let mut files: Vec<String> = std::fs::read_dir(store_dir.join("metrics"))
            .expect("metrics dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut child = Command::new(&python)
            .args(["-c", DUCKDB_SCRIPT])
            .arg(serde_json::to_string(&files).expect("json"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
        let mut stdin = child.stdin.take().expect("stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        // The series names, from Quiver's catalog table.
        let names = store
            .sql("SELECT series_id, run_id, key FROM metric_series")
            .expect("metric_series");
        let mut list = Vec::new();
        for b in &names {
            let ids = b
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .expect("u64");
            let s = |i: usize| {
                b.column(i)
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .expect("utf8")
            };
            for i in 0..b.num_rows() {
                list.push(serde_json::json!([
                    ids.value(i),
                    s(1).value(i),
                    s(2).value(i)
                ]));
            }
        }
        writeln!(stdin, "{}", Value::Array(list)).expect("send the series names");
        let mut line = String::new();
        stdout.read_line(&mut line).expect("DuckDB answers");
        let hello: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("DuckDB's first line {line:?}: {e}"));
        println!(
            "  DuckDB {} (Python {}), threads={}, over {} files",
            hello["version"].as_str().unwrap_or("?"),
            python.display(),
            hello["threads"],
            files.len()
        );
        Some(DuckDb {
            child,
            stdin,
            stdout,
        })
    }

    /// Runs query `name`; returns its time (measured in the DuckDB process) and sorted rows.
    fn run(&mut self, name: &str) -> (Duration, Vec<Row>) {
        writeln!(self.stdin, "{name}").expect("ask DuckDB");
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("DuckDB answers");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("DuckDB's answer: {e}"));
        let seconds = v["seconds"].as_f64().expect("seconds");
        let mut rows: Vec<Row> = v["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                (
                    r[0].as_str().expect("run_id").to_string(),
                    r[1].as_str().expect("key").to_string(),
                    r[2].as_f64().expect("avg"),
                    r[3].as_i64().expect("max"),
                )
            })
            .collect();
        rows.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        (Duration::from_secs_f64(seconds), rows)
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        // Killed, not asked to quit: after a failure it may be blocked writing an answer that
        // nobody will read.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `$QUIVER_DUCKDB_PYTHON`, else the compat venv's Python if it has `duckdb`.
fn python_with_duckdb() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUIVER_DUCKDB_PYTHON").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()?
        .to_path_buf();
    let venv = match std::env::var_os("QUIVER_COMPAT_VENV").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let requirements = std::fs::read(root.join("compat").join("requirements.txt")).ok()?;
            let target = match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
                Some(dir) => root.join(dir),
                None => root.join("target"),
            };
            let hash = format!("{:016x}", fnv1a64(&requirements));
            target.join(format!("compat-venv-{}", &hash[..12]))
        }
    };
    let python = venv.join("bin").join("python");
    let ok = Command::new(&python)
        .args(["-c", "import duckdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(python)
}

/// 64-bit FNV-1a, as `cli/tests/it/compat.rs` names the venv.
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}
