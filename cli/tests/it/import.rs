//! `quiver import mlflow` through the real binary: a small `mlruns/` file store written here in
//! MLflow's layout, imported into a store directory and into a running server (`--url`); the
//! import route's errors. (The real mlflow client writes the sources of compat/test_import*.py.)

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::TestServer;

const RUN: &str = "0123456789abcdef0123456789abcdef";

/// Writes an `mlruns/` with experiment 7 ("small") and one run: a param, a tag, a metric of
/// three points (NaN and a duplicate line among them), an artifact.
fn write_mlruns(root: &Path) {
    let exp = root.join("7");
    let run = exp.join(RUN);
    for d in ["metrics/loss", "params", "tags", "artifacts/notes"] {
        std::fs::create_dir_all(run.join(d)).unwrap();
    }
    std::fs::write(
        exp.join("meta.yaml"),
        "artifact_location: file:///nowhere/7\ncreation_time: 1700000000000\n\
         experiment_id: '7'\nlast_update_time: 1700000000000\nlifecycle_stage: active\n\
         name: small\n",
    )
    .unwrap();
    std::fs::write(
        run.join("meta.yaml"),
        format!(
            "artifact_uri: file:///nowhere/7/{RUN}/artifacts\nend_time: 1700000005000\n\
             entry_point_name: ''\nexperiment_id: '7'\nlifecycle_stage: active\n\
             run_id: {RUN}\nrun_name: tiny\nsource_type: 4\nstart_time: 1700000001000\n\
             status: 4\ntags: []\nuser_id: ana\n"
        ),
    )
    .unwrap();
    std::fs::write(
        run.join("metrics/loss/train"),
        "1700000001000 0.5 0\n1700000002000 nan 1\n1700000001000 0.5 0\n1700000003000 -inf 2\n",
    )
    .unwrap();
    std::fs::write(run.join("params/lr"), "0.01").unwrap();
    std::fs::write(run.join("tags/mlflow.runName"), "tiny").unwrap();
    std::fs::write(run.join("artifacts/notes/a.txt"), "hello").unwrap();
}

fn quiver(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .env("QUIVER_LOG", "warn")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The run as the server answers it, and its `loss/train` history.
fn run_and_history(s: &TestServer) -> (Value, Vec<Value>) {
    let (status, run) = s.get_json(&format!("/api/2.0/mlflow/runs/get?run_id={RUN}"));
    assert_eq!(status, 200, "{run}");
    let (status, history) = s.get_json(&format!(
        "/api/2.0/mlflow/metrics/get-history?run_id={RUN}&metric_key=loss/train"
    ));
    assert_eq!(status, 200, "{history}");
    (run, history["metrics"].as_array().unwrap().clone())
}

fn check_imported(s: &TestServer) {
    let (run, history) = run_and_history(s);
    let info = &run["run"]["info"];
    assert_eq!(info["run_name"], "tiny");
    assert_eq!(info["status"], "FAILED");
    assert_eq!(info["user_id"], "ana");
    assert_eq!(info["experiment_id"], "7");
    assert_eq!(info["start_time"], 1700000001000i64);
    let values: Vec<String> = history.iter().map(|m| m["value"].to_string()).collect();
    assert_eq!(values, ["0.5", "\"NaN\"", "\"-Infinity\""], "{history:?}");
    let (status, files) = s.get_json(&format!(
        "/api/2.0/mlflow/artifacts/list?run_id={RUN}&path=notes"
    ));
    assert_eq!(status, 200);
    assert_eq!(files["files"][0]["path"], "notes/a.txt", "{files}");
}

#[test]
fn an_mlruns_directory_imports_into_a_store_and_into_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let mlruns = dir.path().join("mlruns");
    write_mlruns(&mlruns);

    // Into a store directory, then served.
    let store = dir.path().join("store");
    let out = quiver(&[
        "import",
        "mlflow",
        "--from",
        mlruns.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("identical to the source"),
        "{}",
        text(&out)
    );
    let s = TestServer::start_on(&store);
    check_imported(&s);
    drop(s);

    // Into a running server: the same result, and a second time adds nothing.
    let s = TestServer::start();
    for expected in [
        "imported 1 runs (0 imported before)",
        "imported 0 runs (1 imported before)",
    ] {
        let out = quiver(&[
            "import",
            "mlflow",
            "--from",
            mlruns.to_str().unwrap(),
            "--url",
            &s.url,
        ]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
        assert!(
            text(&out).contains("identical to the source"),
            "{}",
            text(&out)
        );
    }
    check_imported(&s);

    // A source the server cannot read: the reason, exit 1.
    let missing = dir.path().join("none");
    let out = quiver(&[
        "import",
        "mlflow",
        "--from",
        missing.to_str().unwrap(),
        "--url",
        &s.url,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("no such file"), "{}", text(&out));
}

#[test]
fn the_import_route_refuses_bad_requests_and_says_when_it_fails() {
    let s = TestServer::start();
    let (status, body) = s.post_json("/api/2.0/quiver/import", &json!({}));
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let (status, body) = s.post_json(
        "/api/2.0/quiver/import",
        &json!({"from": "/x", "on_error": "maybe"}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("on_error"),
        "{body}"
    );
    let mut r = crate::agent()
        .post(&s.api("/api/2.0/quiver/import"))
        .content_type("application/json")
        .send(json!({"from": "/no/such/mlflow.db"}).to_string())
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let answer = r.body_mut().read_to_string().unwrap();
    let last = answer.lines().last().unwrap();
    assert!(
        last.starts_with("quiver-import: failed: ") && last.contains("no such file"),
        "{answer}"
    );

    let out = quiver(&[
        "import",
        "mlflow",
        "--from",
        "/x",
        "--url",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("cannot reach"), "{}", text(&out));
}

#[test]
fn a_store_a_server_holds_points_at_url() {
    let dir = tempfile::tempdir().unwrap();
    let mlruns = dir.path().join("mlruns");
    write_mlruns(&mlruns);
    let s = TestServer::start();
    let out = quiver(&[
        "import",
        "mlflow",
        "--from",
        mlruns.to_str().unwrap(),
        "--store",
        s.store.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("locked") && text(&out).contains("--url"),
        "{}",
        text(&out)
    );
}
