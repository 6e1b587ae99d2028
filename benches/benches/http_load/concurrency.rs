//! Phases `ingest_64` and `small_downloads`: many clients, and many small responses on kept-alive
//! connections.
//!
//! - `ingest_64`: 64 clients, each on its own run and keep-alive connection, send `runs/log-batch`
//!   of 100 metrics back to back for 10 s (what a 64-thread Python client does; it measured 886
//!   requests/s against this server, bound by the client). Every failure (a non-2xx, a
//!   transport error) is counted, not fatal: the figure must show zero.
//! - `small_downloads`: 500 artifacts of 4 KiB are uploaded (untimed), then downloaded by 4
//!   clients on their own kept-alive connections (each its quarter of the files, sequentially),
//!   7 rounds after an untimed one: files/s per round (median) and per-download latency. The
//!   target, 5,000 files/s, is what the server does once replies are not held back by Nagle's
//!   algorithm (160 files/s before `TCP_NODELAY` on accepted sockets; MLflow 271).

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use quiver_benches::scaled;

use super::{agent, ms, percentile, process_cpu, IngestBatch, Report, Server};

/// Clients of `ingest_64`.
const CLIENTS: usize = 64;
/// Metrics per request of `ingest_64`.
const METRICS: usize = 100;

/// Phase `ingest_64`.
pub(super) fn ingest_64(server: &Server, r: &mut Report) {
    let duration = Duration::from_secs(scaled(10, 1));
    let runs: Vec<String> = (0..CLIENTS)
        .map(|i| server.create_run(&format!("ingest-64-{i}")))
        .collect();
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let url = server.api("/api/2.0/mlflow/runs/log-batch");
    let threads: Vec<_> = runs
        .into_iter()
        .enumerate()
        .map(|(i, run)| {
            let url = url.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut batch = IngestBatch::new(run, 100 + i as u64, METRICS);
                let mut body = String::new();
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
                barrier.wait();
                let start = Instant::now();
                while start.elapsed() < duration {
                    batch.write_next(&mut body);
                    let t = Instant::now();
                    let sent = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(&body)
                        .and_then(|mut resp| resp.body_mut().read_to_vec());
                    latencies.push(t.elapsed());
                    if let Err(e) = sent {
                        errors.push(e.to_string());
                    }
                }
                (latencies, errors, start.elapsed())
            })
        })
        .collect();
    let before = server.cpu();
    let client_before = process_cpu("self");
    barrier.wait();
    let wall = Instant::now();
    let (mut latencies, mut errors, mut longest) = (Vec::new(), Vec::new(), Duration::ZERO);
    for t in threads {
        let (l, e, elapsed) = t.join().expect("ingest_64 client panicked");
        latencies.extend(l);
        errors.extend(e);
        longest = longest.max(elapsed);
    }
    let wall = wall.elapsed().max(longest);
    let server_cpu = server.cpu() - before;
    let client_cpu = process_cpu("self") - client_before;
    let requests = latencies.len();
    let ok = requests - errors.len();
    let secs = wall.as_secs_f64();
    latencies.sort();
    println!(
        "  ingest_64: {requests} requests × {METRICS} points from {CLIENTS} clients in {secs:.2} \
         s, {} failed; CPU: server {:.2} cores, bench clients {:.2} cores",
        errors.len(),
        server_cpu.as_secs_f64() / secs,
        client_cpu.as_secs_f64() / secs
    );
    for e in errors.iter().take(5) {
        println!("    failure: {e}");
    }
    r.row(
        &format!(
            "log-batch, {METRICS} metrics/request, {CLIENTS} clients × own run, {} s",
            duration.as_secs()
        ),
        format!(
            "{:.0} requests/s, {:.3} M points/s",
            ok as f64 / secs,
            (ok * METRICS) as f64 / secs / 1e6
        ),
        "– (Python client: 886 req/s)",
        None,
    );
    r.row(
        "  its request latency / failed requests",
        format!(
            "p50 {:.2} / p99 {:.2} ms; {} of {requests} failed",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            errors.len()
        ),
        "0 failed",
        Some(errors.is_empty()),
    );
}

/// Clients of `small_downloads`, each on one kept-alive connection.
const DOWNLOADERS: usize = 4;
/// Size of each small artifact.
const SMALL: usize = 4 << 10;

/// Phase `small_downloads`.
pub(super) fn small_downloads(server: &Server, r: &mut Report) {
    let files = scaled(500, 40) as usize;
    let rounds = scaled(7, 2) as usize;
    let run = server.create_run("small-downloads");
    let urls: Vec<String> = (0..files)
        .map(|i| {
            server.api(&format!(
                "/api/2.0/mlflow-artifacts/artifacts/0/{run}/artifacts/small/{i:04}.bin"
            ))
        })
        .collect();
    let content = |i: usize| -> Vec<u8> {
        (0..SMALL)
            .map(|j| (j as u64 * 31 + i as u64 * 7919) as u8)
            .collect()
    };
    let up = agent();
    for (i, url) in urls.iter().enumerate() {
        let mut resp = up
            .put(url)
            .header("Content-Type", "application/octet-stream")
            .send(&content(i)[..])
            .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
        resp.body_mut()
            .read_to_vec()
            .expect("read the PUT response");
    }
    // The content of a few, checked once, untimed.
    for i in [0, files / 2, files - 1] {
        let mut resp = up.get(&urls[i]).call().expect("GET a small artifact");
        let body = resp
            .body_mut()
            .read_to_vec()
            .expect("read a small artifact");
        assert!(body == content(i), "small artifact {i} differs");
    }

    let urls = Arc::new(urls);
    let barrier = Arc::new(Barrier::new(DOWNLOADERS + 1));
    let threads: Vec<_> = (0..DOWNLOADERS)
        .map(|c| {
            let urls = urls.clone();
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let agent = agent();
                let mut buf = vec![0u8; 64 << 10];
                let mut latencies = Vec::new();
                // Round 0 is the untimed warm-up (and opens the connection).
                for round in 0..=rounds {
                    barrier.wait();
                    for url in urls.iter().skip(c).step_by(DOWNLOADERS) {
                        let t = Instant::now();
                        let mut resp = agent
                            .get(url)
                            .call()
                            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
                        let mut reader = resp.body_mut().as_reader();
                        let mut got = 0;
                        loop {
                            let n = reader.read(&mut buf).expect("read a small artifact");
                            if n == 0 {
                                break;
                            }
                            got += n;
                        }
                        if round > 0 {
                            latencies.push(t.elapsed());
                        }
                        assert_eq!(got, SMALL, "{url}: {got} bytes");
                    }
                    barrier.wait();
                }
                latencies
            })
        })
        .collect();
    let mut walls = Vec::new();
    let mut server_cpu = Duration::ZERO;
    for round in 0..=rounds {
        let before = server.cpu();
        barrier.wait();
        let t = Instant::now();
        barrier.wait();
        if round > 0 {
            walls.push(t.elapsed());
            server_cpu += server.cpu() - before;
        }
    }
    let busy: Duration = walls.iter().sum();
    let mut latencies = Vec::new();
    for t in threads {
        latencies.extend(t.join().expect("download client panicked"));
    }
    latencies.sort();
    let rates: Vec<f64> = walls
        .iter()
        .map(|w| files as f64 / w.as_secs_f64())
        .collect();
    println!(
        "  small_downloads: files/s per round: {} (server CPU {:.2} cores over all rounds, {:.1} \
         µs per download)",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(" "),
        server_cpu.as_secs_f64() / busy.as_secs_f64().max(1e-9),
        server_cpu.as_secs_f64() * 1e6 / (files * rounds) as f64
    );
    walls.sort();
    let median = files as f64 / percentile(&walls, 0.5).as_secs_f64();
    r.row(
        &format!(
            "{files} downloads of {} KiB over {DOWNLOADERS} kept-alive connections, median of \
             {rounds} rounds",
            SMALL >> 10
        ),
        format!("{median:.0} files/s"),
        "≥ 5,000 files/s",
        Some(median >= 5_000.0),
    );
    r.row(
        "  per-download latency",
        format!(
            "p50 {:.3} / p99 {:.3} ms",
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99))
        ),
        "–",
        None,
    );
}
