//! HTTP load benchmark of the real `quiver server` binary (figures in `README.md`, section
//! "HTTP load (quiver server)").
//!
//! Starts the release binary (`cargo build --release -p quiver` first; or `QUIVER_BIN=<path>`)
//! on a fresh store in a temporary directory, listening on 127.0.0.1 only, and measures with
//! blocking HTTP/1.1 clients (ureq, keep-alive) on the same machine:
//!
//! 1. `runs/log-batch` of 1000 metrics per request, 4 clients on their own runs and connections,
//!    for 10 s: points/s and request latency. Then 64 clients × 100 metrics per request (phase
//!    `ingest_64`, see `concurrency.rs`): requests/s, points/s, latency, failures.
//! 2. `metrics/get-history` of a 5,000-point metric: latency of sequential requests.
//! 3. `metrics/get-history-bulk-interval` (`max_results=320`) of a 1,000,000-point metric
//!    logged through log-batch beforehand: latency of sequential requests.
//! 4. Upload (`PUT`) and download (`GET`) of a 64 MiB artifact through the artifact proxy; then
//!    500 downloads of 4 KiB artifacts over 4 kept-alive connections (phase `small_downloads`,
//!    see `concurrency.rs`): files/s.
//! 5. Server memory (`VmRSS`) idle on a fresh store and after the load, and the time from
//!    process start to the first 200 from `/health` when restarting on the store used above.
//! 6. `runs/search` on stores of 2,500 and 100,000 runs (phase `search`, see `search.rs`).
//! 7. The model registry on a store of 1,000 registered models and 10,000 versions: searches,
//!    get, alias lookup and `model-versions/create` (phase `registry`, see `registry.rs`).
//! 8. `SELECT * FROM metrics` over 10,000,000 points streamed as Arrow IPC, on a server of its
//!    own (VmHWM is per process): time, bytes, and the server's peak RSS against the SQL pool
//!    (512 MiB) + 256 MiB (phase `sql_stream`).
//!
//! Everything is bounded in count and time and stops by itself; the temp dir is removed at the
//! end. Without `--bench` (`cargo test --benches`) or with `--test`, a smoke run on small inputs.

use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use quiver_benches::{
    bench_dir, mib, scaled, segment_files, test_mode, timeline, training_curve, CurveShape,
    GeneratedReader, BASE_TS, BATCH,
};
use serde_json::Value;

#[path = "http_load/concurrency.rs"]
mod concurrency;
#[path = "http_load/registry.rs"]
mod registry;
#[path = "http_load/search.rs"]
mod search;

/// Concurrent log-batch clients.
const WRITERS: usize = 4;
/// Keys of the log-batch requests: 4 keys × 250 steps = 1000 metrics, as in the store's
/// `ingest` benchmark.
const INGEST_KEYS: [&str; 4] = ["loss", "accuracy", "lr", "grad_norm"];
/// Every request gives up after this long (keeps the benchmark bounded if the server hangs).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long to wait for a server to answer `/health`.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a server to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Pause before an "idle" memory reading (shorter in test mode).
fn settle() -> Duration {
    Duration::from_millis(scaled(2000, 200))
}

fn main() {
    let Some(bin) = quiver_binary() else {
        // Not a failure, so that `cargo bench -p quiver-benches` still runs the other targets.
        println!(
            "http_load: SKIPPED, no quiver binary: run `cargo build --release -p quiver` first \
             (or set QUIVER_BIN)"
        );
        return;
    };
    let phases = Phases::from_args();
    if phases.0.is_empty() {
        println!(
            "http_load: no phase matches the arguments (phases: {}); nothing to run",
            Phases::ALL.join(" ")
        );
        return;
    }
    let mut r = Report::default();
    println!("http_load: server binary {}", bin.display());
    warn_if_stale(&bin);
    if test_mode() {
        println!("http_load: test mode, small inputs (figures not comparable with the targets)");
    }
    let dir = bench_dir("http_load");
    let store = dir.path().join("store");
    let log = dir.path().join("server.log");

    // 5a. Idle memory on a fresh store.
    let (server, first_start) = Server::start(&bin, &store, &log);
    println!("  server pid {}", server.pid());
    std::thread::sleep(settle());
    let idle = server.memory();
    println!(
        "  started on a fresh store in {:.1} ms; idle: {}",
        ms(first_start),
        idle.describe()
    );
    r.row(
        &format!(
            "idle RSS, fresh store (VmRSS, {:.1} s after the first 200 from /health)",
            settle().as_secs_f64()
        ),
        format!("{:.1} MiB", mib(idle.rss)),
        "≤ 30 MiB",
        Some(idle.rss <= 30 << 20),
    );

    let mut reads = Vec::new();
    if phases.has("ingest") {
        ingest(&server, &mut r);
        print_segments(&store);
    }
    if phases.has("ingest_64") {
        concurrency::ingest_64(&server, &mut r);
        print_segments(&store);
    }
    if phases.has("history") {
        reads.push(history(&server, &mut r));
    }
    if phases.has("bulk_interval") {
        reads.push(bulk_interval(&server, &mut r));
        print_segments(&store);
    }
    if phases.has("artifacts") {
        artifacts(&server, dir.path(), &mut r);
    }
    if phases.has("small_downloads") {
        concurrency::small_downloads(&server, &mut r);
    }

    // 5b. Memory after the load.
    std::thread::sleep(settle());
    let after = server.memory();
    println!("  after the load: {}", after.describe());
    r.row(
        &format!(
            "RSS after the load (VmRSS, {:.1} s after the last request)",
            settle().as_secs_f64()
        ),
        format!(
            "{:.1} MiB (peak VmHWM {:.1} MiB)",
            mib(after.rss),
            mib(after.hwm)
        ),
        "– (≤ 30 MiB idle)",
        None,
    );
    // Once more after the store's interval flush (`flush_interval`, 30 s by default) has moved
    // the buffered points to segments.
    let later = Duration::from_secs(scaled(35, 0));
    if !later.is_zero() {
        std::thread::sleep(later);
        let idle = server.memory();
        println!(
            "  {} s after the load: {}",
            (settle() + later).as_secs(),
            idle.describe()
        );
        print_segments(&store);
        r.row(
            &format!(
                "RSS idle {} s after the load (after the 30 s interval flush)",
                (settle() + later).as_secs()
            ),
            format!("{:.1} MiB", mib(idle.rss)),
            "– (≤ 30 MiB idle)",
            None,
        );
    }

    // 5c. Restarts on the existing store.
    let shutdown = server.stop();
    println!("  clean shutdown after the load: {:.1} ms", ms(shutdown));
    print_segments(&store);
    if phases.has("restart") {
        restarts(&bin, &store, &log, &reads, &mut r);
    }
    if phases.has("search") {
        search::search(&bin, dir.path(), &mut r);
    }
    if phases.has("registry") {
        registry::registry(&bin, dir.path(), &mut r);
    }
    if phases.has("sql_stream") {
        sql_stream(&bin, dir.path(), &mut r);
    }

    r.print();
    drop(dir);
}

/// The phases to run: all, or those named by the arguments that are not flags
/// (`cargo bench -p quiver-benches --bench http_load -- ingest artifacts`). Other arguments are
/// ignored: `cargo bench -p quiver-benches -- history_1m` passes criterion's filter here too, and
/// then no phase runs.
struct Phases(Vec<&'static str>);

impl Phases {
    const ALL: [&'static str; 10] = [
        "ingest",
        "ingest_64",
        "history",
        "bulk_interval",
        "artifacts",
        "small_downloads",
        "restart",
        "search",
        "registry",
        "sql_stream",
    ];

    fn from_args() -> Phases {
        let names: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| !a.starts_with('-'))
            .collect();
        if names.is_empty() {
            return Phases(Phases::ALL.to_vec());
        }
        Phases(
            Phases::ALL
                .into_iter()
                .filter(|p| names.iter().any(|n| n == p))
                .collect(),
        )
    }

    fn has(&self, phase: &str) -> bool {
        self.0.contains(&phase)
    }
}

/// Prints the number and size of the store's metric segments (where the points are).
fn print_segments(store: &Path) {
    if let Ok((bytes, files)) = segment_files(store) {
        println!("  store: {files} metric segments, {:.1} MiB", mib(bytes));
    }
}

// ------------------------------------------------------------------------------------------
// The benchmarks.

/// 1. 4 clients, each on its own run and keep-alive connection, send log-batch requests of 1000
///    metrics back to back for 10 s.
fn ingest(server: &Server, r: &mut Report) {
    let duration = Duration::from_secs(scaled(10, 1));
    let runs: Vec<String> = (0..WRITERS)
        .map(|i| server.create_run(&format!("ingest-{i}")))
        .collect();
    let barrier = Arc::new(Barrier::new(WRITERS + 1));
    let before = server.cpu();
    let client_before = process_cpu("self");
    let threads: Vec<_> = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| {
            let url = server.api("/api/2.0/mlflow/runs/log-batch");
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut batch = IngestBatch::new(run, i as u64 + 1, BATCH);
                let mut body = String::new();
                let mut latencies = Vec::new();
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < duration {
                    batch.write_next(&mut body);
                    let t = Instant::now();
                    post_json(&agent, &url, &body);
                    latencies.push(t.elapsed());
                }
                (latencies, start.elapsed())
            })
        })
        .collect();
    barrier.wait();
    let wall = Instant::now();
    let mut latencies = Vec::new();
    let mut longest = Duration::ZERO;
    for t in threads {
        let (l, elapsed) = t.join().expect("ingest client panicked");
        latencies.extend(l);
        longest = longest.max(elapsed);
    }
    let wall = wall.elapsed().max(longest);
    let server_cpu = server.cpu() - before;
    let client_cpu = process_cpu("self") - client_before;
    let requests = latencies.len();
    let points = (requests * BATCH) as f64;
    let rate = points / wall.as_secs_f64();
    latencies.sort();
    println!(
        "  log-batch: {requests} requests × {BATCH} points in {:.2} s; CPU: server {:.2} cores, \
         bench clients {:.2} cores",
        wall.as_secs_f64(),
        server_cpu.as_secs_f64() / wall.as_secs_f64(),
        client_cpu.as_secs_f64() / wall.as_secs_f64()
    );
    r.row(
        &format!(
            "log-batch, 1000 metrics/request, 4 clients × own run, {} s",
            duration.as_secs()
        ),
        format!("{:.3} M points/s", rate / 1e6),
        "≥ 1,000,000 points/s",
        Some(rate >= 1e6),
    );
    r.row(
        "  its request latency",
        format!(
            "p50 {:.2} / p99 {:.2} ms",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99))
        ),
        "–",
        None,
    );
}

/// 2. `metrics/get-history` of a 5,000-point metric, ≥ 1,000 sequential requests.
fn history(server: &Server, r: &mut Report) -> ReadCheck {
    let points = scaled(5_000, 5_000);
    let requests = scaled(2_000, 50) as usize;
    let run = server.create_run("history");
    let agent = agent();
    log_series(&agent, server, &run, "loss", points);
    let path = format!("/api/2.0/mlflow/metrics/get-history?run_id={run}&metric_key=loss");
    let url = server.api(&path);
    let first = get_body(&agent, &url);
    let n = count_metrics(&first);
    assert_eq!(n, points as usize, "get-history returned {n} points");
    let latencies = timed_gets(&agent, &url, requests, first.len());
    println!(
        "  get-history: {requests} requests, {} points ({} bytes) each",
        n,
        first.len()
    );
    let label = format!("get-history, {points}-point metric, {requests} sequential requests");
    latency_row(r, &label, &latencies);
    ReadCheck {
        label,
        path,
        len: first.len(),
        requests,
    }
}

/// 3. `metrics/get-history-bulk-interval` with `max_results=320` of a long metric logged through
///    log-batch beforehand, ≥ 1,000 sequential requests.
fn bulk_interval(server: &Server, r: &mut Report) -> ReadCheck {
    let points = scaled(1_000_000, 20_000);
    let requests = scaled(2_000, 50) as usize;
    let run = server.create_run("bulk-interval");
    let agent = agent();
    let t = Instant::now();
    log_series(&agent, server, &run, "loss", points);
    let fill = t.elapsed();
    println!(
        "  bulk-interval: logged {points} points in {:.2} s ({:.2} M points/s, 1 client)",
        fill.as_secs_f64(),
        points as f64 / fill.as_secs_f64() / 1e6
    );
    let path = format!(
        "/api/2.0/mlflow/metrics/get-history-bulk-interval?run_ids={run}&metric_key=loss&max_results=320"
    );
    let url = server.api(&path);
    let first = get_body(&agent, &url);
    let n = count_metrics(&first);
    assert!(
        (300..=321).contains(&n),
        "get-history-bulk-interval returned {n} points"
    );
    let latencies = timed_gets(&agent, &url, requests, first.len());
    println!(
        "  bulk-interval: {requests} requests, {n} points ({} bytes) each",
        first.len()
    );
    let label = format!(
        "get-history-bulk-interval, 320 of {points} points, {requests} sequential requests"
    );
    latency_row(r, &label, &latencies);
    ReadCheck {
        label,
        path,
        len: first.len(),
        requests,
    }
}

/// A read benchmark to repeat after a restart, when every point is in a segment.
struct ReadCheck {
    label: String,
    path: String,
    len: usize,
    requests: usize,
}

/// 4. Upload and download of a 64 MiB artifact, new content each repetition (no deduplication),
///    the whole body in memory on the client side. Each repetition also writes the same bytes to
///    a new plain file (write + fsync) next to the store, as a baseline for the disk.
///
///    On a VM whose memory is backed lazily by the host, the first write of a guest page is
///    slow (a host page fault), and page-cache writes into never-used memory run at a fraction
///    of their usual speed. A warm-up first writes and deletes a scratch file larger than what
///    this phase writes, so that the page cache reuses pages the guest has touched before.
fn artifacts(server: &Server, scratch: &Path, r: &mut Report) {
    let size = scaled(64 << 20, 4 << 20);
    let reps = scaled(7, 2) as usize;
    let warm_up = page_cache_warm_up(scratch, 2 * reps as u64 * size + (256 << 20));
    println!(
        "  page-cache warm-up: wrote and deleted {:.0} MiB at {:.2} GiB/s",
        mib(warm_up.0),
        gib_per_s(warm_up.0, warm_up.1)
    );
    let run = server.create_run("artifacts");
    let url = server.api(&format!(
        "/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts/big.bin"
    ));
    let agent = agent();
    let mut data = Vec::with_capacity(size as usize);
    let mut buf = vec![0u8; 1 << 20];
    let (mut puts, mut gets, mut files) = (Vec::new(), Vec::new(), Vec::new());
    let (mut put_cpu, mut get_cpu) = (Duration::ZERO, Duration::ZERO);
    for rep in 0..reps {
        data.clear();
        GeneratedReader::new(size, 1000 + rep as u64)
            .read_to_end(&mut data)
            .expect("generate the artifact");

        files.push(write_fsync(
            &scratch.join(format!("baseline-{rep}.bin")),
            &data,
        ));

        let cpu = server.cpu();
        let t = Instant::now();
        let mut resp = agent
            .put(&url)
            .header("Content-Type", "application/octet-stream")
            .send(&data[..])
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        resp.body_mut()
            .read_to_vec()
            .expect("read the PUT response");
        puts.push(t.elapsed());
        put_cpu += server.cpu() - cpu;

        let cpu = server.cpu();
        let t = Instant::now();
        let mut resp = agent
            .get(&url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let mut reader = resp.body_mut().as_reader();
        let mut got = 0u64;
        loop {
            let n = reader.read(&mut buf).expect("read the download");
            if n == 0 {
                break;
            }
            got += n as u64;
        }
        gets.push(t.elapsed());
        get_cpu += server.cpu() - cpu;
        assert_eq!(got, size, "downloaded {got} of {size} bytes");
    }
    // Check the content once, outside the timings.
    let mut resp = agent.get(&url).call().expect("GET the artifact");
    let mut back = Vec::with_capacity(size as usize);
    resp.body_mut()
        .as_reader()
        .read_to_end(&mut back)
        .expect("read the download");
    assert!(
        back == data,
        "the downloaded artifact differs from the upload"
    );

    let show = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.2}", gib_per_s(size, *d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let busy = |cpu: Duration, v: &[Duration]| {
        cpu.as_secs_f64() / v.iter().sum::<Duration>().as_secs_f64()
    };
    println!(
        "  artifact PUT GiB/s: {} (server CPU {:.2} cores)",
        show(&puts),
        busy(put_cpu, &puts)
    );
    println!(
        "  artifact GET GiB/s: {} (server CPU {:.2} cores)",
        show(&gets),
        busy(get_cpu, &gets)
    );
    println!("  plain write + fsync GiB/s: {}", show(&files));
    puts.sort();
    gets.sort();
    files.sort();
    let median = |v: &[Duration]| percentile(v, 0.5);
    let (put, get) = (
        gib_per_s(size, median(&puts)),
        gib_per_s(size, median(&gets)),
    );
    r.row(
        &format!("artifact PUT of {} MiB, median of {reps}", size >> 20),
        format!("{put:.2} GiB/s ({:.0} ms)", ms(median(&puts))),
        "≥ 1 GiB/s",
        Some(put >= 1.0),
    );
    r.row(
        &format!(
            "  baseline: plain write + fsync of the same {} MiB to a new file",
            size >> 20
        ),
        format!(
            "{:.2} GiB/s ({:.0} ms)",
            gib_per_s(size, median(&files)),
            ms(median(&files))
        ),
        "(context)",
        None,
    );
    r.row(
        &format!("artifact GET of {} MiB, median of {reps}", size >> 20),
        format!("{get:.2} GiB/s ({:.0} ms)", ms(median(&gets))),
        "≥ 1 GiB/s",
        Some(get >= 1.0),
    );
}

fn gib_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / (1u64 << 30) as f64
}

/// Writes `data` to a new file at `path` and fsyncs it; returns how long that took.
fn write_fsync(path: &Path, data: &[u8]) -> Duration {
    use std::io::Write;
    let t = Instant::now();
    let mut f = std::fs::File::create(path).expect("create a baseline file");
    f.write_all(data).expect("write a baseline file");
    f.sync_all().expect("fsync a baseline file");
    t.elapsed()
}

/// Writes `bytes` of zeros to a scratch file in `dir` in 1 MiB writes, fsyncs and deletes it;
/// returns the bytes and the time the writes and the fsync took.
fn page_cache_warm_up(dir: &Path, bytes: u64) -> (u64, Duration) {
    use std::io::Write;
    let path = dir.join("page-cache-warm-up.bin");
    let block = vec![0u8; 1 << 20];
    let t = Instant::now();
    let mut f = std::fs::File::create(&path).expect("create the warm-up file");
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n]).expect("write the warm-up file");
        left -= n as u64;
    }
    f.sync_all().expect("fsync the warm-up file");
    let took = t.elapsed();
    drop(f);
    std::fs::remove_file(&path).expect("delete the warm-up file");
    (bytes, took)
}

/// 5c. Restarts on the store used above: time from spawning the process to the first 200 from
///     `/health`, each restart followed by a clean SIGTERM shutdown.
fn restarts(bin: &Path, store: &Path, log: &Path, reads: &[ReadCheck], r: &mut Report) {
    let n = scaled(7, 2) as usize;
    let mut starts = Vec::new();
    let mut stops = Vec::new();
    let mut idle = None;
    for i in 0..n {
        let (server, started) = Server::start(bin, store, log);
        starts.push(started);
        if i == 0 {
            std::thread::sleep(settle());
            idle = Some(server.memory());
            let agent = agent();
            for read in reads {
                let url = server.api(&read.path);
                let latencies = timed_gets(&agent, &url, read.requests, read.len);
                let label = format!("{}, after a restart (all in segments)", read.label);
                latency_row(r, &label, &latencies);
            }
        }
        stops.push(server.stop());
    }
    let show = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.1}", ms(*d)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  restart to first 200, ms: {}", show(&starts));
    println!("  shutdown after SIGTERM, ms: {}", show(&stops));
    if let Some(idle) = idle {
        println!(
            "  idle after a restart on the loaded store: {}",
            idle.describe()
        );
        r.row(
            "idle RSS after a restart on the loaded store (context)",
            format!("{:.1} MiB", mib(idle.rss)),
            "–",
            None,
        );
    }
    starts.sort();
    let start = percentile(&starts, 0.5);
    r.row(
        &format!("restart on the loaded store to the first 200 from /health, median of {n}"),
        format!("{:.1} ms", ms(start)),
        "≤ 100 ms",
        Some(start <= Duration::from_millis(100)),
    );
}

// ------------------------------------------------------------------------------------------
// Requests.

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(REQUEST_TIMEOUT))
        .build()
        .into()
}

/// POSTs a JSON body and reads the (small) response; panics on anything but a 2xx.
fn post_json(agent: &ureq::Agent, url: &str, body: &str) -> Vec<u8> {
    let mut resp = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    resp.body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("POST {url}: reading the response: {e}"))
}

/// GETs `url` and returns the body; panics on anything but a 2xx.
fn get_body(agent: &ureq::Agent, url: &str) -> Vec<u8> {
    let mut resp = agent
        .get(url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    resp.body_mut()
        .read_to_vec()
        .unwrap_or_else(|e| panic!("GET {url}: reading the response: {e}"))
}

/// `requests` sequential GETs of `url` after a few untimed ones; latencies sorted. Every body must
/// have `len` bytes.
fn timed_gets(agent: &ureq::Agent, url: &str, requests: usize, len: usize) -> Vec<Duration> {
    for _ in 0..requests / 20 {
        get_body(agent, url);
    }
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let body = get_body(agent, url);
        latencies.push(t.elapsed());
        assert_eq!(body.len(), len, "response size changed");
    }
    latencies.sort();
    latencies
}

/// The number of elements of `metrics` in a JSON response.
fn count_metrics(body: &[u8]) -> usize {
    let v: Value = serde_json::from_slice(body).expect("a JSON response");
    v["metrics"].as_array().map_or(0, Vec::len)
}

/// Logs `n` points of `key` to `run` through log-batch, steps `0..n` in order, 1000 per request,
/// values of a noisy training curve, timestamps ~100 ms apart.
fn log_series(agent: &ureq::Agent, server: &Server, run: &str, key: &str, n: u64) {
    let url = server.api("/api/2.0/mlflow/runs/log-batch");
    let mut curve = training_curve(CurveShape::default(), 1);
    let mut times = timeline(2);
    let mut body = String::new();
    let mut step = 0u64;
    while step < n {
        let end = (step + BATCH as u64).min(n);
        body.clear();
        write!(body, "{{\"run_id\":\"{run}\",\"metrics\":[").unwrap();
        for s in step..end {
            if s > step {
                body.push(',');
            }
            let ts = times.next().expect("timelines are endless");
            write_metric(
                &mut body,
                key,
                &json_f64(curve.value(s as i64)),
                ts,
                s as i64,
            );
        }
        body.push_str("]}");
        post_json(agent, &url, &body);
        step = end;
    }
}

fn write_metric(body: &mut String, key: &str, value: &str, ts: i64, step: i64) {
    write!(
        body,
        "{{\"key\":\"{key}\",\"value\":{value},\"timestamp\":{ts},\"step\":{step}}}"
    )
    .unwrap();
}

/// `v` as JSON (shortest round-trip form).
fn json_f64(v: f64) -> String {
    serde_json::to_string(&v).expect("finite")
}

/// The log-batch requests of one ingest client: `size` metrics (the 4 [`INGEST_KEYS`] ×
/// `size / 4` steps; 1000 = 4 × 250), values of noisy curves computed once and formatted once,
/// steps and timestamps (100 ms per step) advanced each request, as a training job logs.
struct IngestBatch {
    run: String,
    values: Vec<String>,
    next_step: i64,
}

impl IngestBatch {
    fn new(run: String, seed: u64, size: usize) -> IngestBatch {
        let steps = size / INGEST_KEYS.len();
        let mut curves: Vec<_> = (0..INGEST_KEYS.len() as u64)
            .map(|k| training_curve(CurveShape::default(), seed * 1000 + k))
            .collect();
        let mut values = Vec::with_capacity(steps * INGEST_KEYS.len());
        for step in 0..steps as i64 {
            for c in &mut curves {
                values.push(json_f64(c.value(step)));
            }
        }
        IngestBatch {
            run,
            values,
            next_step: 0,
        }
    }

    /// Writes the next request body into `body`.
    fn write_next(&mut self, body: &mut String) {
        body.clear();
        write!(body, "{{\"run_id\":\"{}\",\"metrics\":[", self.run).unwrap();
        let keys = INGEST_KEYS.len();
        for (i, value) in self.values.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            let step = self.next_step + (i / keys) as i64;
            write_metric(
                body,
                INGEST_KEYS[i % keys],
                value,
                BASE_TS + 100 * step,
                step,
            );
        }
        body.push_str("]}");
        self.next_step += (self.values.len() / keys) as i64;
    }
}

// ------------------------------------------------------------------------------------------
// The server process.

/// The quiver binary: `$QUIVER_BIN`, else `release/quiver` next to this benchmark's profile
/// directory (`<target>/<profile>/deps/http_load-*` → `<target>/<profile>/quiver`, then
/// `<target>/release/quiver`), else under `$CARGO_TARGET_DIR` or the workspace's `target`.
fn quiver_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QUIVER_BIN") {
        return Some(PathBuf::from(p));
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            if let Some(target) = profile_dir.parent() {
                candidates.push(target.join("release/quiver"));
            }
            candidates.push(profile_dir.join("quiver"));
        }
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(t).join("release/quiver"));
    }
    candidates.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/quiver"));
    candidates.into_iter().find(|p| p.is_file())
}

/// Warns if a source file of the server (`cli`, `server`, `store`) is newer than `bin`: the
/// figures would be those of an older build.
fn warn_if_stale(bin: &Path) {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut latest = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let t = if path.is_dir() {
                newest(&path)
            } else {
                entry.metadata().and_then(|m| m.modified()).ok()
            };
            latest = latest.max(t);
        }
        latest
    }

    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for krate in ["cli", "server", "store"] {
        if newest(&root.join(krate).join("src")).is_some_and(|t| t > built) {
            println!(
                "http_load: WARNING: {krate}/src has changed since {} was built; rebuild with \
                 `cargo build --release -p quiver`",
                bin.display()
            );
        }
    }
}

/// A running `quiver server`; killed if dropped without [`Server::stop`].
struct Server {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Server {
    /// Starts the server on `store` and a free loopback port; returns it with the time from
    /// spawning the process to the first 200 from `/health` (polled every 0.5 ms).
    fn start(bin: &Path, store: &Path, log: &Path) -> (Server, Duration) {
        let port = free_port();
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the server log");
        let url = format!("http://127.0.0.1:{port}");
        let health = format!("{url}/health");
        let probe: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let t = Instant::now();
        let child = Command::new(bin)
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string()])
            .arg("--store")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut server = Server {
            child,
            url,
            log: log.to_path_buf(),
        };
        loop {
            if let Ok(resp) = probe.get(&health).call() {
                if resp.status() == 200 {
                    break;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                server.fail(&format!("exited before answering /health ({status})"));
            }
            if t.elapsed() > START_TIMEOUT {
                server.fail("did not answer /health in time");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        let started = t.elapsed();
        (server, started)
    }

    fn fail(&mut self, what: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!("quiver server {what}; end of its log:\n{}", tail.join("\n"));
    }

    fn api(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates a run in the default experiment and returns its id.
    fn create_run(&self, name: &str) -> String {
        let body = serde_json::json!({
            "experiment_id": "0",
            "run_name": name,
            "start_time": BASE_TS,
        })
        .to_string();
        let resp = post_json(&agent(), &self.api("/api/2.0/mlflow/runs/create"), &body);
        let v: Value = serde_json::from_slice(&resp).expect("runs/create answers JSON");
        v["run"]["info"]["run_id"]
            .as_str()
            .expect("runs/create returns a run id")
            .to_string()
    }

    /// The server's memory figures from `/proc/<pid>/status`.
    fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read the server's /proc status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Memory {
            rss: field("VmRSS"),
            hwm: field("VmHWM"),
            anon: field("RssAnon"),
            file: field("RssFile"),
            threads: status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// Resets the server's peak RSS (`VmHWM`) to its current RSS (`/proc/<pid>/clear_refs` ← 5,
    /// which the process's owner may write); returns whether it could.
    fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").is_ok()
    }

    /// CPU time (user + system) the server has used so far.
    fn cpu(&self) -> Duration {
        process_cpu(&self.pid().to_string())
    }

    /// Sends SIGTERM and waits for a clean exit; returns how long the exit took.
    fn stop(mut self) -> Duration {
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's pid, which has not been reaped yet.
        let rc = unsafe { libc::kill(self.pid() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "SIGTERM the server");
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) if status.success() => return t.elapsed(),
                Ok(Some(status)) => self.fail(&format!("exited with {status} after SIGTERM")),
                Ok(None) if t.elapsed() > STOP_TIMEOUT => self.fail("did not exit after SIGTERM"),
                Ok(None) => std::thread::sleep(Duration::from_micros(500)),
                Err(e) => self.fail(&format!("cannot be waited for: {e}")),
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free port on 127.0.0.1 (free when asked; the server binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("find a free loopback port")
        .port()
}

/// User + system CPU time of process `pid` (`"self"` for this one), from `/proc/<pid>/stat`.
fn process_cpu(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Memory figures of the server process.
struct Memory {
    rss: u64,
    hwm: u64,
    anon: u64,
    file: u64,
    threads: u64,
}

impl Memory {
    fn describe(&self) -> String {
        format!(
            "VmRSS {:.1} MiB (RssAnon {:.1}, RssFile {:.1}), VmHWM {:.1} MiB, {} threads",
            mib(self.rss),
            mib(self.anon),
            mib(self.file),
            mib(self.hwm),
            self.threads
        )
    }
}

// ------------------------------------------------------------------------------------------
// Figures.

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A row of p50 / p99 of sorted read latencies, against the reads' target (p50 ≤ 2 ms).
fn latency_row(r: &mut Report, label: &str, sorted: &[Duration]) {
    latency_row_with(r, label, sorted, Duration::from_millis(2));
}

/// A row of p50 / p99 of sorted latencies, against a p50 target.
fn latency_row_with(r: &mut Report, label: &str, sorted: &[Duration], target: Duration) {
    latency_row_noted(r, label, sorted, target, "");
}

/// [`latency_row_with`], with `note` after the target (e.g. " (informational)").
fn latency_row_noted(
    r: &mut Report,
    label: &str,
    sorted: &[Duration],
    target: Duration,
    note: &str,
) {
    let p50 = percentile(sorted, 0.50);
    r.row(
        label,
        format!(
            "p50 {:.3} / p99 {:.3} ms",
            ms(p50),
            ms(percentile(sorted, 0.99))
        ),
        &format!("p50 ≤ {} ms{note}", ms(target)),
        Some(p50 <= target),
    );
}

/// The `p` quantile (nearest rank) of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    assert!(!sorted.is_empty(), "no samples");
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The results table, printed at the end.
#[derive(Default)]
struct Report {
    rows: Vec<(String, String, String, &'static str)>,
}

impl Report {
    fn row(&mut self, figure: &str, value: String, target: &str, met: Option<bool>) {
        let verdict = match met {
            Some(_) if test_mode() => "(test mode)",
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        };
        self.rows
            .push((figure.to_string(), value, target.to_string(), verdict));
    }

    fn print(&self) {
        let width = |f: fn(&(String, String, String, &str)) -> usize| {
            self.rows.iter().map(f).max().unwrap_or(0)
        };
        let w0 = width(|r| r.0.chars().count());
        let w1 = width(|r| r.1.chars().count());
        let w2 = width(|r| r.2.chars().count());
        let pad = |s: &str, w: usize| format!("{s}{}", " ".repeat(w - s.chars().count()));
        println!();
        println!("HTTP load (quiver server) results");
        println!(
            "{} | {} | {} | verdict",
            pad("figure", w0),
            pad("median / value", w1),
            pad("target", w2)
        );
        println!("{}", "-".repeat(w0 + w1 + w2 + 16));
        for (figure, value, target, verdict) in &self.rows {
            println!(
                "{} | {} | {} | {verdict}",
                pad(figure, w0),
                pad(value, w1),
                pad(target, w2)
            );
        }
    }
}

/// Phase `sql_stream`: the peak RSS of a server streaming `SELECT * FROM metrics` over 10 M
/// points (10 runs × 1 M) as Arrow IPC, read by a client that counts the bytes as they come.
fn sql_stream(bin: &Path, dir: &Path, r: &mut Report) {
    let store = dir.join("sql-store");
    let log = dir.join("sql-server.log");
    let (server, _) = Server::start(bin, &store, &log);
    let agent = agent();
    let runs = 10;
    let per_run = scaled(1_000_000, 10_000);
    let t = Instant::now();
    for i in 0..runs {
        let run = server.create_run(&format!("sql-{i}"));
        log_series(&agent, &server, &run, "loss", per_run);
    }
    let points = runs * per_run;
    println!(
        "  sql_stream: logged {points} points in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    std::thread::sleep(settle());
    let logged = server.memory();
    // The peak of the query alone, not of the logging above.
    let reset = server.reset_peak();
    let before = server.memory();
    let t = Instant::now();
    let resp = agent
        .post(&server.api("/api/2.0/quiver/sql"))
        .header("Accept", "application/vnd.apache.arrow.stream")
        .content_type("application/json")
        .send(r#"{"query": "SELECT * FROM metrics"}"#)
        .expect("SQL request");
    assert_eq!(resp.status(), 200);
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = reader.read(&mut buf).expect("reading the Arrow stream");
        if n == 0 {
            break;
        }
        bytes += n as u64;
    }
    let took = t.elapsed();
    std::thread::sleep(settle());
    let after = server.memory();
    println!(
        "  sql_stream: after logging: {}; VmHWM reset before the query: {reset}",
        logged.describe()
    );
    println!(
        "  sql_stream: {bytes} bytes in {:.2} s; before: {}; after: {}",
        took.as_secs_f64(),
        before.describe(),
        after.describe()
    );
    r.row(
        &format!(
            "SELECT * FROM metrics, {points} points as Arrow IPC: time ({} MiB)",
            bytes >> 20
        ),
        format!("{:.2} s", took.as_secs_f64()),
        "–",
        None,
    );
    r.row(
        &format!(
            "  peak server RSS (VmHWM{}) during it / RSS before / after",
            if reset {
                " reset before it"
            } else {
                ", whole life"
            }
        ),
        format!(
            "{:.1} MiB / {:.1} MiB / {:.1} MiB",
            mib(after.hwm),
            mib(before.rss),
            mib(after.rss)
        ),
        "< 768 MiB (pool 512 + 256)",
        Some(after.hwm < 768 << 20),
    );
    server.stop();
}
