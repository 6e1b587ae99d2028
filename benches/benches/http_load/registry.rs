//! Phase `registry`: the model registry's reads and writes over HTTP, on a store of 1,000
//! registered models (`model-0000` ...) with 2 tags each (`team`, 10 distinct values, and
//! `owner`) and 10 versions each (10,000 versions; sources `s3://bucket/model-0042/7`), every
//! model's version 10 in Production and its alias `champion` on version 9.
//!
//! The store is written through the library (8 writer threads, one model at a time each, every
//! write a durable commit), closed, then served by a fresh `quiver server`. Timed, sequentially,
//! after a few untimed requests:
//!
//! - `GET registered-models/search` with the filter the mlflow client sends for
//!   `search_registered_models("name LIKE 'model-01%'")` (it adds the prompt condition), 100 per page;
//! - `GET registered-models/get?name=model-0500`;
//! - `GET model-versions/search` of one model's versions (`name='model-0500'`, `max_results=10000`);
//! - `GET registered-models/alias?name=model-0500&alias=champion`;
//! - `POST model-versions/create` on the live server (each a durable commit): one client, then 4
//!   clients on their own models (context).
//!
//! The two searches are also timed through the library (`Store::search_registered_models`,
//! `Store::search_model_versions`) before the store is closed, so that the HTTP and engine shares
//! can be told apart.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use quiver_benches::{mib, scaled, server_options};
use quiver_store::{CreateModelVersion, RegistrySearch, Stage, Store, Tag};
use serde_json::Value;

use super::{
    agent, get_body, latency_row_noted, ms, percentile, post_json, timed_gets, Report, Server,
};

/// The filter the mlflow client sends for `search_registered_models("name LIKE 'model-01%'")`.
const MODELS_FILTER: &str = "name LIKE 'model-01%' AND tag.`mlflow.prompt.is_prompt` != 'true'";
/// Page size of the registered-model search (the client's default).
const MODELS_PAGE: usize = 100;
/// Page size of the model-version search (as asked of the server; one model has 10 versions).
const VERSIONS_PAGE: usize = 10_000;
/// Versions per registered model.
const VERSIONS: u64 = 10;
/// Distinct values of the `team` tag.
const TEAMS: usize = 10;
/// Library writer threads filling the store.
const WRITERS: usize = 8;
/// Concurrent clients of the multi-client model-versions/create figure.
const WRITE_CLIENTS: usize = 4;
/// The registry has no target in the issue: this one is informational only.
const TARGET: Duration = Duration::from_millis(20);
/// Who the registry writes are recorded as.
const USER: &str = "bench";

fn model_name(i: usize) -> String {
    format!("model-{i:04}")
}

/// Runs the phase.
pub(super) fn registry(bin: &Path, scratch: &Path, r: &mut Report) {
    let models = scaled(1_000, 120) as usize;
    let requests = scaled(200, 20) as usize;
    let probe = model_name(models / 2);
    let expected_models = (0..models)
        .filter(|&i| model_name(i).starts_with("model-01"))
        .count()
        .min(MODELS_PAGE);
    let dir = scratch.join("registry");

    // The store, through the library.
    let t = Instant::now();
    let store =
        Arc::new(Store::open_with(&dir, server_options()).expect("open the registry store"));
    populate(&store, models);
    let fill = t.elapsed();
    let commits = models * (1 + VERSIONS as usize + 2);
    println!(
        "  registry: wrote {models} registered models × {VERSIONS} versions ({commits} durable \
         commits, {WRITERS} threads) in {:.1} s ({:.0} commits/s)",
        fill.as_secs_f64(),
        commits as f64 / fill.as_secs_f64()
    );

    // (f) The two searches through the library.
    let models_req = RegistrySearch {
        filter: MODELS_FILTER.into(),
        max_results: MODELS_PAGE,
        ..Default::default()
    };
    let versions_req = RegistrySearch {
        filter: format!("name='{probe}'"),
        max_results: VERSIONS_PAGE,
        ..Default::default()
    };
    let lib_models = timed_library(requests, || {
        let page = store
            .search_registered_models(&models_req)
            .expect("search registered models through the library");
        assert_eq!(page.registered_models.len(), expected_models);
    });
    let lib_versions = timed_library(requests, || {
        let page = store
            .search_model_versions(&versions_req)
            .expect("search model versions through the library");
        assert_eq!(page.model_versions.len(), VERSIONS as usize);
    });
    let lib_get = timed_library(requests, || {
        let m = store
            .get_registered_model(&probe)
            .expect("get a registered model through the library");
        assert_eq!(m.latest_versions.len(), 2);
    });
    println!(
        "  registry, library: models search p50 {:.3} ms, versions search p50 {:.3} ms, get \
         p50 {:.3} ms",
        ms(percentile(&lib_models, 0.5)),
        ms(percentile(&lib_versions, 0.5)),
        ms(percentile(&lib_get, 0.5)),
    );
    Arc::try_unwrap(store)
        .expect("no other handle to the store")
        .close()
        .expect("close the registry store");

    // The same store served by a fresh server.
    let log = scratch.join("registry.log");
    let (server, started) = Server::start(bin, &dir, &log);
    println!("  registry: server started in {:.1} ms", ms(started));
    let agent = agent();
    let label_n = format!("{models} models, {} versions", models as u64 * VERSIONS);

    // (a) registered-models/search, as the mlflow client sends it.
    let url = server.api(&format!(
        "/api/2.0/mlflow/registered-models/search?filter={}&max_results={MODELS_PAGE}",
        encode(MODELS_FILTER)
    ));
    let t = Instant::now();
    let first = get_body(&agent, &url);
    let first_time = t.elapsed();
    let v: Value = serde_json::from_slice(&first).expect("registered-models/search answers JSON");
    let got = v["registered_models"].as_array().map_or(0, Vec::len);
    assert_eq!(
        got, expected_models,
        "registered-models/search returned {got} models"
    );
    let latencies = timed_gets(&agent, &url, requests, first.len());
    println!(
        "  registry, registered-models/search: {got} models ({} bytes) per answer; first after \
         the restart {:.2} ms",
        first.len(),
        ms(first_time)
    );
    row(
        r,
        &format!(
            "registered-models/search `name LIKE 'model-01%'` (+ prompt condition), {got} of \
             {label_n}, {requests} requests"
        ),
        &latencies,
    );
    library_row(r, "Store::search_registered_models", &lib_models);

    // (b) registered-models/get.
    let url = server.api(&format!(
        "/api/2.0/mlflow/registered-models/get?name={}",
        encode(&probe)
    ));
    let first = get_body(&agent, &url);
    let v: Value = serde_json::from_slice(&first).expect("registered-models/get answers JSON");
    assert_eq!(v["registered_model"]["name"], probe.as_str());
    let latencies = timed_gets(&agent, &url, requests, first.len());
    row(
        r,
        &format!(
            "registered-models/get ({} bytes), {requests} requests",
            first.len()
        ),
        &latencies,
    );
    library_row(r, "Store::get_registered_model", &lib_get);

    // (c) model-versions/search of one model's versions.
    let url = server.api(&format!(
        "/api/2.0/mlflow/model-versions/search?filter={}&max_results={VERSIONS_PAGE}",
        encode(&versions_req.filter)
    ));
    let first = get_body(&agent, &url);
    let v: Value = serde_json::from_slice(&first).expect("model-versions/search answers JSON");
    let got = v["model_versions"].as_array().map_or(0, Vec::len);
    assert_eq!(
        got, VERSIONS as usize,
        "model-versions/search returned {got} versions"
    );
    let latencies = timed_gets(&agent, &url, requests, first.len());
    row(
        r,
        &format!(
            "model-versions/search `name='{probe}'`, {got} of {} versions, {requests} requests",
            models as u64 * VERSIONS
        ),
        &latencies,
    );
    library_row(r, "Store::search_model_versions", &lib_versions);

    // (d) registered-models/alias.
    let url = server.api(&format!(
        "/api/2.0/mlflow/registered-models/alias?name={}&alias=champion",
        encode(&probe)
    ));
    let first = get_body(&agent, &url);
    let v: Value = serde_json::from_slice(&first).expect("registered-models/alias answers JSON");
    assert_eq!(v["model_version"]["version"], "9");
    let latencies = timed_gets(&agent, &url, requests, first.len());
    row(
        r,
        &format!("registered-models/alias `champion` ({requests} requests)"),
        &latencies,
    );

    // (e) model-versions/create on the live server, one client, then several.
    let before = server.cpu();
    let (latencies, wall) = create_versions(&server, 0, models, requests, 1);
    let cpu = server.cpu() - before;
    let rate = latencies.len() as f64 / wall.as_secs_f64();
    println!(
        "  registry, model-versions/create: {} sequential in {:.2} s, server CPU {:.2} ms per \
         request",
        latencies.len(),
        wall.as_secs_f64(),
        ms(cpu) / latencies.len() as f64
    );
    r.row(
        &format!("model-versions/create, 1 client, {requests} sequential (durable commits)"),
        format!(
            "{rate:.0} versions/s (p50 {:.3} / p99 {:.3} ms)",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99))
        ),
        "–",
        None,
    );
    let (latencies, wall) = create_versions(&server, 1, models, requests, WRITE_CLIENTS);
    let rate = latencies.len() as f64 / wall.as_secs_f64();
    r.row(
        &format!("  same, {WRITE_CLIENTS} clients on their own models, {requests} each (context)"),
        format!(
            "{rate:.0} versions/s (p50 {:.3} / p99 {:.3} ms)",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99))
        ),
        "–",
        None,
    );
    let after = server.memory();
    println!("  registry, server after the phase: {}", after.describe());
    println!("  registry, store on disk: {:.1} MiB", mib(dir_size(&dir)));
    server.stop();
}

/// Writes `models` registered models with their tags, versions, stage and alias, from
/// [`WRITERS`] threads, each owning every [`WRITERS`]th model.
fn populate(store: &Arc<Store>, models: usize) {
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in (w..models).step_by(WRITERS) {
                    let name = model_name(i);
                    let tags = [
                        Tag::new("team", format!("team-{}", i % TEAMS)),
                        Tag::new("owner", format!("user-{}", i % 37)),
                    ];
                    store
                        .create_registered_model(&name, &tags, None, USER)
                        .expect("create a registered model");
                    for v in 1..=VERSIONS {
                        let req = CreateModelVersion {
                            name: name.clone(),
                            source: format!("s3://bucket/{name}/{v}"),
                            ..Default::default()
                        };
                        store
                            .create_model_version(&req, USER)
                            .expect("create a model version");
                    }
                    let last = VERSIONS.to_string();
                    let mv = store
                        .transition_model_version_stage(&name, &last, "Production", false, USER)
                        .expect("move a version to Production");
                    assert_eq!(mv.current_stage, Stage::Production);
                    store
                        .set_registered_model_alias(
                            &name,
                            "champion",
                            &(VERSIONS - 1).to_string(),
                            USER,
                        )
                        .expect("set an alias");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("registry writer thread");
    }
}

/// `requests` timed calls of `f` after a few untimed ones; sorted latencies.
fn timed_library(requests: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..requests / 20 {
        f();
    }
    let mut latencies: Vec<Duration> = (0..requests)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    latencies.sort();
    latencies
}

/// `per_client` model-versions/create requests from each of `clients` threads (after a few
/// untimed ones), client `c` creating versions of models `c`, `c + clients`, ... in turn
/// (`round` keeps the sources of successive calls apart). Returns the sorted latencies and the
/// wall time of the timed requests.
fn create_versions(
    server: &Server,
    round: usize,
    models: usize,
    per_client: usize,
    clients: usize,
) -> (Vec<Duration>, Duration) {
    let url = server.api("/api/2.0/mlflow/model-versions/create");
    let barrier = Arc::new(Barrier::new(clients + 1));
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let mut k = c;
                let mut create = |agent: &ureq::Agent| {
                    let name = model_name(k % models);
                    let body = serde_json::json!({
                        "name": name,
                        "source": format!("s3://bucket/{name}/bench-{round}-{k}"),
                    })
                    .to_string();
                    k += clients;
                    let t = Instant::now();
                    let resp = post_json(agent, &url, &body);
                    let took = t.elapsed();
                    let v: Value =
                        serde_json::from_slice(&resp).expect("model-versions/create answers JSON");
                    assert_eq!(v["model_version"]["name"], name.as_str());
                    took
                };
                for _ in 0..(per_client / 20).max(1) {
                    create(&agent);
                }
                barrier.wait();
                let start = Instant::now();
                let latencies: Vec<Duration> = (0..per_client).map(|_| create(&agent)).collect();
                (latencies, start.elapsed())
            })
        })
        .collect();
    barrier.wait();
    let mut latencies = Vec::new();
    let mut wall = Duration::ZERO;
    for t in threads {
        let (l, elapsed) = t.join().expect("model-versions/create client panicked");
        latencies.extend(l);
        wall = wall.max(elapsed);
    }
    latencies.sort();
    (latencies, wall)
}

/// A row of p50 / p99 against the informational [`TARGET`].
fn row(r: &mut Report, label: &str, sorted: &[Duration]) {
    latency_row_noted(r, label, sorted, TARGET, " (informational)");
}

/// A context row of the same read through the library.
fn library_row(r: &mut Report, call: &str, sorted: &[Duration]) {
    r.row(
        &format!("  same, through the library ({call})"),
        format!(
            "p50 {:.3} / p99 {:.3} ms",
            ms(percentile(sorted, 0.5)),
            ms(percentile(sorted, 0.99))
        ),
        "–",
        None,
    );
}

/// `s` percent-encoded for a query string (everything but RFC 3986's unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Bytes of the files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
