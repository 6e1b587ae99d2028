//! Disk space comes back: deleted and overwritten artifacts are collected by the server in the
//! background, and `quiver gc` deletes deleted runs and experiments for good (metrics,
//! artifacts, records), on a store directory or through `--url`.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{agent, TestServer};

/// `POST /api/2.0/mlflow<path>` that must answer 200; its JSON body.
fn post(s: &TestServer, path: &str, body: Value) -> Value {
    let (status, answer) = s.post_json(&format!("/api/2.0/mlflow{path}"), &body);
    assert_eq!(status, 200, "POST {path} {body}: {answer}");
    answer
}

/// `GET <path and query>`: status and JSON body.
fn get(s: &TestServer, path_and_query: &str) -> (u16, Value) {
    s.get_json(path_and_query)
}

fn create_run(s: &TestServer, experiment_id: &str) -> (String, String) {
    let run = post(s, "/runs/create", json!({ "experiment_id": experiment_id }));
    let info = &run["run"]["info"];
    (
        info["run_id"].as_str().unwrap().to_string(),
        info["artifact_uri"].as_str().unwrap().to_string(),
    )
}

/// The proxy URL of a run's artifact `name` (`mlflow-artifacts:/<exp>/<run>/artifacts`).
fn artifact_url(s: &TestServer, artifact_uri: &str, name: &str) -> String {
    let root = artifact_uri.trim_start_matches("mlflow-artifacts:/");
    s.api(&format!(
        "/api/2.0/mlflow-artifacts/artifacts/{root}/{name}"
    ))
}

fn upload(url: &str, bytes: &[u8]) {
    let r = agent()
        .put(url)
        .content_type("application/octet-stream")
        .send(bytes)
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "PUT {url}");
}

fn delete(url: &str) {
    let r = agent().delete(url).call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "DELETE {url}");
}

/// Bytes of every blob file under the store's `blobs/` (uploads in progress excluded).
fn blob_bytes(store: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(store.join("blobs")).unwrap() {
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

/// Waits (up to a generous deadline) until the blobs take `bytes`; the figure when it gave up.
fn wait_for_blob_bytes(store: &Path, bytes: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = blob_bytes(store);
        if now == bytes || Instant::now() > deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Distinct content of `len` bytes for upload `i`.
fn content(i: u32, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (j as u32 ^ i.wrapping_mul(2_654_435_761)) as u8;
    }
    v[..4].copy_from_slice(&i.to_le_bytes());
    v
}

fn quiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .env("QUIVER_LOG", "warn")
        .env_remove("QUIVER_STORE")
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = quiver(args);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "quiver {args:?}: {stdout}{stderr}");
    stdout
}

/// The reproduction: 32 × 2 MiB uploaded to one path, then the run's artifacts
/// deleted. The server gives the space back by itself, and it stays given back after a restart.
#[test]
fn overwritten_and_deleted_artifacts_leave_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let server = TestServer::spawn(&store, &["--gc-interval", "1s"], |_| {});
    let (_, uri) = create_run(&server, "0");
    let live = content(999, 1 << 20);
    upload(&artifact_url(&server, &uri, "keep/live.bin"), &live);
    let path = artifact_url(&server, &uri, "model/weights.bin");
    for i in 0..32 {
        upload(&path, &content(i, 2 << 20));
    }
    // Only the last upload is referenced: the 31 overwritten ones are collected.
    assert_eq!(
        wait_for_blob_bytes(&store, (1 << 20) + (2 << 20)),
        (1 << 20) + (2 << 20)
    );
    let mut r = agent().get(&path).call().unwrap();
    assert_eq!(r.body_mut().read_to_vec().unwrap(), content(31, 2 << 20));

    delete(&artifact_url(&server, &uri, "model"));
    assert_eq!(wait_for_blob_bytes(&store, 1 << 20), 1 << 20);
    let r = agent().get(&path).call().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert!(server.stop());

    let server = TestServer::start_on(&store);
    assert_eq!(blob_bytes(&store), 1 << 20);
    let mut r = agent()
        .get(&artifact_url(&server, &uri, "keep/live.bin"))
        .call()
        .unwrap();
    assert_eq!(r.body_mut().read_to_vec().unwrap(), live);
}

/// `quiver gc --url` against a running server, then `quiver gc --store` on the stopped store:
/// deleted runs and experiments are gone from every read path, live ones are untouched.
#[test]
fn quiver_gc_purges_deleted_runs_and_experiments() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // A long interval: only `quiver gc` collects here.
    let server = TestServer::spawn(&store, &["--gc-interval", "1h"], |_| {});
    let points = |run: &str, n: i64| {
        let metrics: Vec<Value> = (0..n)
            .map(|s| json!({"key": "loss", "value": s, "timestamp": 1000 + s, "step": s}))
            .collect();
        post(
            &server,
            "/runs/log-batch",
            json!({"run_id": run, "metrics": metrics}),
        );
    };
    let (gone, gone_uri) = create_run(&server, "0");
    let (kept, kept_uri) = create_run(&server, "0");
    points(&gone, 1000);
    points(&kept, 500);
    upload(
        &artifact_url(&server, &gone_uri, "a.bin"),
        &content(1, 100_000),
    );
    upload(
        &artifact_url(&server, &kept_uri, "a.bin"),
        &content(2, 50_000),
    );

    // A run that is not deleted is refused by id, and nothing changes.
    let out = quiver(&["gc", "--url", &server.url, "--run-ids", &gone]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INVALID_PARAMETER_VALUE"), "{stderr}");
    assert!(
        stderr.contains("not in the deleted lifecycle stage"),
        "{stderr}"
    );

    post(&server, "/runs/delete", json!({ "run_id": gone }));
    let said = ok(&["gc", "--url", &server.url]);
    assert!(said.contains("purged 1 runs and 0 experiments"), "{said}");
    assert!(
        said.contains("removed 1000 metric points and 1 blobs"),
        "{said}"
    );
    let (status, body) = get(&server, &format!("/api/2.0/mlflow/runs/get?run_id={gone}"));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (404, Some("RESOURCE_DOES_NOT_EXIST"))
    );
    let (status, body) = get(
        &server,
        &format!("/api/2.0/mlflow/metrics/get-history?run_id={kept}&metric_key=loss"),
    );
    assert_eq!(status, 200);
    assert_eq!(body["metrics"].as_array().unwrap().len(), 500);
    assert_eq!(blob_bytes(&store), 50_000);

    // An experiment with a run, deleted, then purged from the stopped store directly.
    let exp = post(&server, "/experiments/create", json!({"name": "scratch"}))["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (run, uri) = create_run(&server, &exp);
    points(&run, 10);
    upload(&artifact_url(&server, &uri, "x.bin"), &content(3, 10_000));
    post(
        &server,
        "/experiments/delete",
        json!({ "experiment_id": exp }),
    );
    assert!(server.stop());

    let store_arg = store.to_str().unwrap();
    let out = quiver(&[
        "gc",
        "--store",
        store_arg,
        "--experiment-ids",
        &exp,
        "--older-than",
        "1d",
    ]);
    assert!(!out.status.success(), "too young to purge");
    let said = ok(&["gc", "--store", store_arg, "--experiment-ids", &exp]);
    assert!(said.contains("purged 1 runs and 1 experiments"), "{said}");
    assert!(
        said.contains("removed 10 metric points and 1 blobs"),
        "{said}"
    );
    assert_eq!(blob_bytes(&store), 50_000);

    let server = TestServer::start_on(&store);
    let (status, _) = get(
        &server,
        &format!("/api/2.0/mlflow/experiments/get?experiment_id={exp}"),
    );
    assert_eq!(status, 404);
    // The name is free again.
    post(&server, "/experiments/create", json!({"name": "scratch"}));
    let (status, body) = get(&server, &format!("/api/2.0/mlflow/runs/get?run_id={kept}"));
    assert_eq!(status, 200, "{body}");
}
