//! The `quiver server` command itself: health, unknown routes, clean shutdown, locked store.

use crate::{agent, TestServer};

#[test]
fn serves_health_and_answers_unknown_routes_in_mlflow_format() {
    let s = TestServer::start();
    let a = agent();
    let mut r = a.get(&s.api("/health")).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "OK");
    let mut r = a.get(&s.api("/api/3.0/mlflow/server-info")).call().unwrap();
    let info: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(info["artifact_serving_enabled"], true);
    assert_eq!(info["multipart_uploads_enabled"], false);
    let mut r = a
        .post(&s.api("/api/2.0/mlflow/no-such-thing"))
        .content_type("application/json")
        .send("{}")
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["error_code"], "ENDPOINT_NOT_FOUND");
    // A known route with the wrong method: 405, still in MLflow's error format.
    let mut r = a.get(&s.api("/api/2.0/mlflow/runs/create")).call().unwrap();
    assert_eq!(r.status(), 405);
    let body: serde_json::Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["error_code"], "ENDPOINT_NOT_FOUND");
    assert!(s.stop(), "clean exit on SIGTERM");
}

#[test]
fn a_second_server_on_the_same_store_is_refused_clearly() {
    let s = TestServer::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["server", "--port", "0", "--store"])
        .arg(&s.store)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is locked by pid"), "{err}");
}

#[test]
fn a_taken_port_is_reported_clearly() {
    let s = TestServer::start();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(["server", "--port", &port, "--store"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot listen on"), "{err}");
}

/// Writes acknowledged over HTTP survive `kill -9` of the server: a client logs batches while the
/// server is killed; after a restart every batch that got a 200 is there, and every batch that
/// is there is whole.
#[test]
fn acknowledged_http_writes_survive_kill_9() {
    use serde_json::{json, Value};
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let s = TestServer::start_on(&store);
    let a = agent();
    let mut r = a
        .post(&s.api("/api/2.0/mlflow/runs/create"))
        .content_type("application/json")
        .send(r#"{"experiment_id":"0"}"#)
        .unwrap();
    let run: Value = r.body_mut().read_json().unwrap();
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();

    let (tx, rx) = std::sync::mpsc::channel::<i64>();
    let url = s.api("/api/2.0/mlflow/runs/log-batch");
    let writer_run = run_id.clone();
    let writer = std::thread::spawn(move || {
        let a = agent();
        for b in 0i64.. {
            let metrics: Vec<Value> = (0..100)
                .map(|j| json!({"key": "m", "value": (b * 100 + j) as f64, "timestamp": b * 100 + j, "step": b * 100 + j}))
                .collect();
            let body = json!({"run_id": writer_run, "metrics": metrics}).to_string();
            match a.post(&url).content_type("application/json").send(body) {
                Ok(r) if r.status() == 200 => {
                    if tx.send(b).is_err() {
                        return;
                    }
                }
                _ => return, // the server is gone
            }
        }
    });
    // Let a few dozen batches through, then kill the server mid-stream.
    let mut last_acked = -1;
    while last_acked < 30 {
        last_acked = rx.recv().unwrap();
    }
    drop(s); // SIGKILL
    writer.join().unwrap();
    last_acked = rx.try_iter().last().unwrap_or(last_acked).max(last_acked);

    let s = TestServer::start_on(&store);
    let mut r = a
        .get(&s.api(&format!(
            "/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=m"
        )))
        .call()
        .unwrap();
    let body: Value = r.body_mut().read_json().unwrap();
    let steps: Vec<i64> = body["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect();
    let acked_points = (last_acked + 1) * 100;
    assert!(
        steps.len() as i64 >= acked_points,
        "{} points after restart, {acked_points} acknowledged",
        steps.len()
    );
    assert_eq!(steps.len() % 100, 0, "a batch is half there");
    assert_eq!(steps, (0..steps.len() as i64).collect::<Vec<_>>());
}
