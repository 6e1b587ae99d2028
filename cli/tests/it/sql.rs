//! SQL through the server (`POST /api/2.0/quiver/sql`) and the `quiver sql` command.

use std::process::Command;

use serde_json::{json, Value};

use crate::{agent, TestServer};

fn post(s: &TestServer, path: &str, body: Value) -> (u16, Value) {
    s.post_json(path, &body)
}

/// A server with one run that has 3 points of `loss` and a param `lr`, on a store in `dir`.
fn server_with_a_run(dir: &std::path::Path) -> (TestServer, String) {
    let s = TestServer::start_on(&dir.join("store"));
    let (_, run) = post(
        &s,
        "/api/2.0/mlflow/runs/create",
        json!({"experiment_id": "0"}),
    );
    let run_id = run["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let metrics: Vec<Value> = (0..3)
        .map(|i| json!({"key": "loss", "value": 1.0 / (i as f64 + 1.0), "timestamp": 1000 + i, "step": i}))
        .collect();
    let (status, _) = post(
        &s,
        "/api/2.0/mlflow/runs/log-batch",
        json!({"run_id": run_id, "metrics": metrics, "params": [{"key": "lr", "value": "0.1"}]}),
    );
    assert_eq!(status, 200);
    (s, run_id)
}

const QUERY: &str = "SELECT m.key, count(*) AS n, min(m.value) AS best, p.value AS lr \
                     FROM metrics m JOIN params p ON p.run_id = m.run_id AND p.key = 'lr' \
                     GROUP BY m.key, p.value";

#[test]
fn the_server_answers_sql_as_json_rows_or_arrow() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = server_with_a_run(dir.path());
    let (status, body) = post(&s, "/api/2.0/quiver/sql", json!({"query": QUERY}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["rows"],
        json!([{"key": "loss", "n": 3, "best": 1.0 / 3.0, "lr": "0.1"}])
    );
    assert_eq!(body["columns"][0], json!({"name": "key", "type": "Utf8"}));

    let mut r = agent()
        .post(&s.api("/api/2.0/quiver/sql"))
        .header("Accept", "application/vnd.apache.arrow.stream")
        .content_type("application/json")
        .send(json!({"query": QUERY}).to_string())
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.body_mut().read_to_vec().unwrap();
    let batches = quiver_store::sql_output::from_arrow_ipc(&bytes).unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);

    let (status, body) = post(
        &s,
        "/api/2.0/quiver/sql",
        json!({"query": "DROP TABLE runs"}),
    );
    assert_eq!(
        (status, body["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let (status, body) = post(&s, "/api/2.0/quiver/sql", json!({}));
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("'query'"),
        "{body}"
    );
}

fn quiver(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .env("QUIVER_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_sql_command_queries_a_server_or_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let (s, run_id) = server_with_a_run(dir.path());
    let out = quiver(&["sql", QUERY, "--url", &s.url, "--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["n"], 3);

    // The running server holds the store: the command says to use --url.
    let store = s.store.to_str().unwrap().to_string();
    let out = quiver(&["sql", "SELECT 1", "--store", &store]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));

    assert!(s.stop(), "clean exit on SIGTERM");
    let q = format!("SELECT step, value FROM metrics WHERE run_id = '{run_id}' ORDER BY step");
    let out = quiver(&["sql", &q, "--store", &store, "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "step,value\n0,1.0\n1,0.5\n2,0.3333333333333333\n"
    );
    let out = quiver(&["sql", "SELECT count(*) AS n FROM runs", "--store", &store]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 1 |"));
    let out = quiver(&["sql", "DELETE FROM runs", "--store", &store]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("read-only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One-shot commands are quiet: on a store directory, without `QUIVER_LOG`, stderr holds
/// nothing (no log line about opening the store) and stdout only the answer; with
/// `QUIVER_LOG=info` the log is back, without colour codes when not on a terminal.
#[test]
fn one_shot_commands_say_nothing_but_their_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = server_with_a_run(dir.path());
    let store = s.store.to_str().unwrap().to_string();
    assert!(s.stop());
    let run = |log: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quiver"));
        cmd.args([
            "sql",
            "SELECT count(*) AS n FROM runs",
            "--store",
            &store,
            "--format",
            "json",
        ])
        .env_remove("QUIVER_LOG");
        if let Some(level) = log {
            cmd.env("QUIVER_LOG", level);
        }
        cmd.output().unwrap()
    };
    let quiet = run(None);
    assert!(quiet.status.success());
    assert_eq!(String::from_utf8_lossy(&quiet.stderr), "");
    let rows: Value = serde_json::from_slice(&quiet.stdout).unwrap();
    assert_eq!(rows[0]["n"], 1);
    let logged = run(Some("info"));
    let err = String::from_utf8_lossy(&logged.stderr);
    assert!(err.contains("INFO") && !err.contains('\u{1b}'), "{err}");
    assert_eq!(
        logged.stdout, quiet.stdout,
        "logs never mix with the answer"
    );
}
