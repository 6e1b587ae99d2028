//! The everyday verbs through the real binary (`quiver experiments|runs|metrics|artifacts`),
//! their formats, their quietness when piped, completions, and the documented exit codes.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::TestServer;

fn quiver(args: &[&str]) -> Output {
    quiver_in(Path::new("."), args)
}

fn quiver_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .current_dir(dir)
        .env_remove("QUIVER_LOG")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// An experiment `verbs` with one run: a param, a tag, 5 points of `loss`, two artifacts.
fn fill(s: &TestServer) -> String {
    let (_, e) = s.post_json(
        "/api/2.0/mlflow/experiments/create",
        &json!({"name": "verbs"}),
    );
    let exp = e["experiment_id"].as_str().unwrap().to_string();
    let (_, r) = s.post_json(
        "/api/2.0/mlflow/runs/create",
        &json!({"experiment_id": exp, "run_name": "first", "start_time": 1000}),
    );
    let run = r["run"]["info"]["run_id"].as_str().unwrap().to_string();
    let metrics: Vec<Value> = (0..5)
        .map(|i| json!({"key": "loss", "value": 1.0 / (i as f64 + 1.0), "timestamp": 1000 + i, "step": i}))
        .collect();
    let (status, _) = s.post_json(
        "/api/2.0/mlflow/runs/log-batch",
        &json!({"run_id": run, "metrics": metrics,
                "params": [{"key": "lr", "value": "0.1"}],
                "tags": [{"key": "team", "value": "vision"}]}),
    );
    assert_eq!(status, 200);
    let root = r["run"]["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:/")
        .to_string();
    for (path, body) in [
        ("model/weights.bin", "w".repeat(1000)),
        ("notes.txt", "hi".into()),
    ] {
        let status = crate::agent()
            .put(&s.api(&format!(
                "/api/2.0/mlflow-artifacts/artifacts/{root}/{path}"
            )))
            .send(body)
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    run
}

#[test]
fn the_verbs_list_and_show_in_each_format() {
    let s = TestServer::start();
    let url = s.addr();
    let run = fill(&s);

    let o = quiver(&["experiments", "list", "--url", &url, "--format", "json"]);
    let list: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "verbs"),
        "{list}"
    );
    assert!(
        o.stderr.is_empty(),
        "quiet when piped: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let csv = ok(&quiver(&[
        "experiments",
        "list",
        "--url",
        &url,
        "--format",
        "csv",
    ]));
    assert!(
        csv.starts_with("experiment_id,name,lifecycle_stage,creation_time\n"),
        "{csv}"
    );
    let shown = ok(&quiver(&["experiments", "show", "verbs", "--url", &url]));
    assert!(
        shown.contains("| name ") && shown.contains("verbs"),
        "{shown}"
    );

    let o = quiver(&[
        "runs",
        "list",
        "--url",
        &url,
        "--experiment",
        "verbs",
        "--filter",
        "params.lr = '0.1'",
        "--format",
        "json",
    ]);
    let runs: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
    assert_eq!(runs[0]["info"]["run_id"], run.as_str());
    let none = ok(&quiver(&[
        "runs",
        "list",
        "--url",
        &url,
        "--experiment",
        "verbs",
        "--filter",
        "params.lr = '9'",
        "--format",
        "csv",
    ]));
    assert_eq!(none.lines().count(), 1, "{none}");
    let o = quiver(&["runs", "list", "--url", &url, "--filter", "params.lr = "]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("INVALID_PARAMETER_VALUE"));

    let shown = ok(&quiver(&["runs", "show", &run, "--url", &url]));
    for part in [
        "| param ",
        "| lr ",
        "0.1",
        "| tag ",
        "vision",
        "| metric ",
        "0.2 (step 4)",
        "model/weights.bin",
        "notes.txt",
    ] {
        assert!(shown.contains(part), "{part:?} not in\n{shown}");
    }
    let json: Value = serde_json::from_str(&ok(&quiver(&[
        "runs", "show", &run, "--url", &url, "--format", "json",
    ])))
    .unwrap();
    assert_eq!(json["artifacts"].as_array().unwrap().len(), 2);

    let csv = ok(&quiver(&[
        "metrics", "history", &run, "loss", "--url", &url, "--format", "csv",
    ]));
    assert_eq!(csv.lines().count(), 6, "{csv}");
    assert!(csv.contains("\n4,1004,0.2\n"), "{csv}");
    let sampled = ok(&quiver(&[
        "metrics",
        "history",
        &run,
        "loss",
        "--url",
        &url,
        "--format",
        "json",
        "--sampled",
        "2",
    ]));
    let points: Value = serde_json::from_str(&sampled).unwrap();
    assert!(points.as_array().unwrap().len() <= 3, "{points}");
    let o = quiver(&["metrics", "history", &run, "nope", "--url", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no metric 'nope' (its metrics: loss)"));
}

#[test]
fn artifacts_go_up_and_come_down_unchanged() {
    let s = TestServer::start();
    let url = s.addr();
    let run = fill(&s);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let listed = ok(&quiver_in(
        d,
        &["artifacts", "ls", &run, "--url", &url, "--format", "csv"],
    ));
    assert_eq!(listed, "path,type,size\nmodel,dir,\nnotes.txt,file,2\n");
    let listed = ok(&quiver_in(
        d,
        &[
            "artifacts",
            "ls",
            &run,
            "-r",
            "--url",
            &url,
            "--format",
            "csv",
        ],
    ));
    assert_eq!(
        listed,
        "path,type,size\nmodel/weights.bin,file,1000\nnotes.txt,file,2\n"
    );

    std::fs::create_dir_all(d.join("up/sub")).unwrap();
    std::fs::write(d.join("up/a.txt"), "alpha").unwrap();
    std::fs::write(d.join("up/sub/b.bin"), vec![7u8; 70_000]).unwrap();
    ok(&quiver_in(
        d,
        &[
            "artifacts",
            "put",
            &run,
            "up",
            "--path",
            "data",
            "--url",
            &url,
        ],
    ));
    ok(&quiver_in(
        d,
        &["artifacts", "put", &run, "up/a.txt", "--url", &url],
    ));
    ok(&quiver_in(
        d,
        &[
            "artifacts",
            "get",
            &run,
            "data",
            "-o",
            "down",
            "--url",
            &url,
        ],
    ));
    assert_eq!(std::fs::read(d.join("down/a.txt")).unwrap(), b"alpha");
    assert_eq!(
        std::fs::read(d.join("down/sub/b.bin")).unwrap(),
        vec![7u8; 70_000]
    );
    ok(&quiver_in(
        d,
        &["artifacts", "get", &run, "a.txt", "--url", &url],
    ));
    assert_eq!(std::fs::read(d.join("a.txt")).unwrap(), b"alpha");
    let out = ok(&quiver_in(
        d,
        &[
            "artifacts",
            "get",
            &run,
            "notes.txt",
            "-o",
            "-",
            "--url",
            &url,
        ],
    ));
    assert_eq!(out, "hi");
    let o = quiver_in(d, &["artifacts", "get", &run, "missing.txt", "--url", &url]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn exit_codes_completions_and_quiet_store_commands() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    // On a store directory: quiet (nothing on stderr), the same answers.
    let o = quiver(&["experiments", "list", "--store", store, "--format", "json"]);
    let list: Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(list[0]["name"], "Default");
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = quiver(&["-v", "experiments", "list", "--store", store]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("INFO"),
        "-v logs"
    );

    // 4: the store is held by a server; the message says to use --url.
    let s = TestServer::start_on(Path::new(store));
    let o = quiver(&["runs", "list", "--store", store]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("--url"));
    drop(s);
    // 2: wrong usage.
    assert_eq!(
        quiver(&["runs", "list", "--format", "yaml"]).status.code(),
        Some(2)
    );
    // 3: a damaged store.
    std::fs::write(Path::new(store).join("FORMAT"), "not a format").unwrap();
    let o = quiver(&["experiments", "list", "--store", store]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    let bash = ok(&quiver(&["completions", "bash"]));
    assert!(
        bash.contains("quiver") && bash.contains("experiments"),
        "{bash}"
    );
    let help = ok(&quiver(&["--help"]));
    assert!(help.contains("Exit codes"), "{help}");
}
