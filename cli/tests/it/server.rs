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
