//! Phase `search`: `runs/search` with a metric and a param filter, ordered by a metric, first 100
//! results, on stores of 2,500 and 100,000 runs of 10 metrics, 10 params and 5 tags each.
//!
//! Each store is written through the library (8 writer threads, as fast as group commit allows),
//! closed, then served by a fresh `quiver server`: the first search after the restart waits for
//! the experiment's run index (built from the catalog by the server's `quiver-index` thread
//! right after it opens the store) and is reported on its own; then sequential requests are
//! timed. The same search through the library (`Store::search_runs`, no HTTP) is timed before
//! closing, so the HTTP and engine shares can be told apart.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_benches::{mib, rss_bytes, scaled, server_options, BASE_TS};
use quiver_store::{CreateRun, Metric, Param, RunSearch, Store, Tag};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use super::{agent, latency_row_with, ms, percentile, post_json, Report, Server};

/// The query: a metric and a param condition, ordered by a metric, first 100 results.
const FILTER: &str = "metrics.acc > 0.5 and params.lr = '0.01'";
const ORDER: &str = "metrics.acc DESC";
const PAGE: usize = 100;
const LRS: [&str; 4] = ["0.001", "0.01", "0.1", "1"];
const WRITERS: usize = 8;

/// Runs the phase for each store size.
pub(super) fn search(bin: &Path, scratch: &Path, r: &mut Report) {
    for (runs, target_ms) in [(scaled(2_500, 300), 1.0), (scaled(100_000, 1_000), 20.0)] {
        one_size(bin, scratch, runs as usize, target_ms, r);
    }
}

fn one_size(bin: &Path, scratch: &Path, runs: usize, target_ms: f64, r: &mut Report) {
    let dir = scratch.join(format!("search-{runs}"));
    let t = Instant::now();
    let store = Arc::new(Store::open_with(&dir, server_options()).expect("open the search store"));
    let exp = store
        .create_experiment("search-bench", None, &[])
        .expect("create the experiment");
    populate(&store, &exp, runs);
    println!(
        "  search: wrote {runs} runs (10 metrics, 10 params, 5 tags each) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let req = RunSearch {
        experiment_ids: vec![exp.clone()],
        filter: FILTER.into(),
        max_results: PAGE,
        order_by: vec![ORDER.into()],
        ..Default::default()
    };
    let rss_before = rss_bytes().unwrap_or(0);
    let t = Instant::now();
    let first = store.search_runs(&req).expect("search through the library");
    let build = t.elapsed();
    let index_rss = rss_bytes().unwrap_or(0).saturating_sub(rss_before);
    let requests = scaled(500, 20) as usize;
    let mut embedded = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let page = store.search_runs(&req).expect("search through the library");
        embedded.push(t.elapsed());
        assert_eq!(page.runs.len(), first.runs.len());
    }
    embedded.sort();
    println!(
        "  search, {runs} runs, library: first search {:.1} ms (RSS +{:.1} MiB; the index was \
         built when the experiment was new and kept current by the writes), then p50 {:.3} ms",
        ms(build),
        mib(index_rss),
        ms(percentile(&embedded, 0.5))
    );
    Arc::try_unwrap(store)
        .expect("no other handle to the store")
        .close()
        .expect("close the search store");

    let log = scratch.join(format!("search-{runs}.log"));
    let (server, _) = Server::start(bin, &dir, &log);
    let agent = agent();
    let url = server.api("/api/2.0/mlflow/runs/search");
    let body = serde_json::json!({
        "experiment_ids": [exp],
        "filter": FILTER,
        "max_results": PAGE,
        "order_by": [ORDER],
    })
    .to_string();
    let t = Instant::now();
    let answer = post_json(&agent, &url, &body);
    let first_http = t.elapsed();
    let v: Value = serde_json::from_slice(&answer).expect("runs/search answers JSON");
    let got = v["runs"].as_array().map_or(0, Vec::len);
    assert_eq!(got, first.runs.len(), "HTTP and library searches disagree");
    let mut latencies = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let resp = post_json(&agent, &url, &body);
        latencies.push(t.elapsed());
        assert_eq!(resp.len(), answer.len(), "response size changed");
    }
    latencies.sort();
    println!(
        "  search, {runs} runs, HTTP: {got} runs ({} bytes) per answer; first after restart \
         {:.1} ms",
        answer.len(),
        ms(first_http)
    );
    latency_row_with(
        r,
        &format!("runs/search `{FILTER}` by {ORDER}, 100 of {runs} runs, {requests} requests"),
        &latencies,
        Duration::from_secs_f64(target_ms / 1e3),
    );
    r.row(
        &format!("  same, through the library (Store::search_runs), {runs} runs"),
        format!("p50 {:.3} ms", ms(percentile(&embedded, 0.5))),
        "–",
        None,
    );
    r.row(
        &format!("  first runs/search after restart (builds the index), {runs} runs"),
        format!(
            "{:.1} ms (library, index kept by the writes: {:.1} ms, RSS +{:.1} MiB)",
            ms(first_http),
            ms(build),
            mib(index_rss)
        ),
        "–",
        None,
    );
    server.stop();
}

/// Writes `runs` runs with 10 metrics, 10 params and 5 tags each, from several threads.
fn populate(store: &Arc<Store>, exp: &str, runs: usize) {
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, exp) = (store.clone(), exp.to_string());
            std::thread::spawn(move || {
                let mut rng = SmallRng::seed_from_u64(w as u64);
                for i in (w..runs).step_by(WRITERS) {
                    let run = store
                        .create_run(CreateRun {
                            experiment_id: Some(exp.clone()),
                            start_time: Some(BASE_TS + i as i64),
                            ..Default::default()
                        })
                        .expect("create a run");
                    let metrics: Vec<Metric> = ["acc", "loss"]
                        .iter()
                        .map(|k| k.to_string())
                        .chain((2..10).map(|k| format!("m{k}")))
                        .map(|k| Metric::new(k, rng.random::<f64>(), BASE_TS + i as i64, 100))
                        .collect();
                    let params: Vec<Param> =
                        std::iter::once(Param::new("lr", LRS[rng.random_range(0..LRS.len())]))
                            .chain((1..10).map(|k| {
                                Param::new(format!("p{k}"), rng.random_range(0..50).to_string())
                            }))
                            .collect();
                    let tags: Vec<Tag> = (0..5)
                        .map(|k| Tag::new(format!("t{k}"), format!("v{}", rng.random_range(0..10))))
                        .collect();
                    store
                        .log_batch(&run.info.run_id, &metrics, &params, &tags)
                        .expect("log a run's data");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
}
