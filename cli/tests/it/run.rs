//! `quiver run` through the real binary: the command's console output, exit code and status,
//! its own logging into the run (through `MLFLOW_TRACKING_URI` and `MLFLOW_RUN_ID`), the live
//! upload of its output, signals passed on, and the embedded server on a store directory.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::TestServer;

fn quiver_run(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .arg("run")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// The runs of experiment `name` on the server, newest first.
pub(crate) fn runs(s: &TestServer, name: &str) -> Vec<Value> {
    let (_, exp) = s.get_json(&format!(
        "/api/2.0/mlflow/experiments/get-by-name?experiment_name={name}"
    ));
    let Some(id) = exp["experiment"]["experiment_id"].as_str() else {
        return Vec::new(); // not made yet
    };
    let (status, found) = s.post_json(
        "/api/2.0/mlflow/runs/search",
        &json!({"experiment_ids": [id], "order_by": ["attributes.start_time DESC"]}),
    );
    assert_eq!(status, 200, "{found}");
    found["runs"].as_array().cloned().unwrap_or_default()
}

/// The value of a run's tag `key` (a run as the REST API returns it).
pub(crate) fn tag<'a>(run: &'a Value, key: &str) -> Option<&'a str> {
    run["data"]["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)?["value"]
        .as_str()
}

/// An artifact of a run through the proxy: its text, or `None` when it is not there yet.
fn artifact(s: &TestServer, run: &Value, path: &str) -> Option<String> {
    let root = run["info"]["artifact_uri"]
        .as_str()
        .unwrap()
        .trim_start_matches("mlflow-artifacts:/");
    let mut r = crate::agent()
        .get(&s.api(&format!(
            "/api/2.0/mlflow-artifacts/artifacts/{root}/{path}"
        )))
        .call()
        .unwrap();
    (r.status() == 200).then(|| r.body_mut().read_to_string().unwrap())
}

#[test]
fn a_command_runs_as_a_run_that_it_logs_into() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    // The command logs a metric into "its" run with nothing but the variables quiver sets.
    let script = r#"
import json, os, sys, urllib.request
body = json.dumps({"run_id": os.environ["MLFLOW_RUN_ID"], "key": "acc", "value": 0.9,
                   "timestamp": 1, "step": 0}).encode()
req = urllib.request.Request(os.environ["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric",
                             data=body, headers={"Content-Type": "application/json"})
urllib.request.urlopen(req).read()
print("to stdout")
print("to stderr", file=sys.stderr)
sys.exit(3)
"#;
    let out = quiver_run(
        dir.path(),
        &[
            "--url",
            &s.url,
            "--experiment",
            "runcmd",
            "--name",
            "r1",
            "--param",
            "lr=0.1",
            "--tag",
            "team=a",
            "--",
            "python3",
            "-c",
            script,
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "to stdout\n",
        "passed through"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("to stderr"));
    let found = runs(&s, "runcmd");
    assert_eq!(found.len(), 1);
    let run = &found[0];
    assert_eq!(run["info"]["run_name"], "r1");
    assert_eq!(run["info"]["status"], "FAILED");
    assert_eq!(tag(run, "quiver.exit_code"), Some("3"));
    assert_eq!(tag(run, "team"), Some("a"));
    assert_eq!(tag(run, "mlflow.source.name"), Some("python3"));
    assert_eq!(
        run["data"]["params"][0],
        json!({"key": "lr", "value": "0.1"})
    );
    assert_eq!(run["data"]["metrics"][0]["key"], "acc");
    assert_eq!(
        artifact(&s, run, "logs/stdout.txt").as_deref(),
        Some("to stdout\n")
    );
    assert_eq!(
        artifact(&s, run, "logs/stderr.txt").as_deref(),
        Some("to stderr\n")
    );
    let env: Value = serde_json::from_str(&artifact(&s, run, "environment.json").unwrap()).unwrap();
    assert_eq!(env["command"][0], "python3");

    // Exit 0: FINISHED. A command that cannot start: FAILED, exit 127... as an error.
    let ok = quiver_run(
        dir.path(),
        &["--url", &s.url, "--experiment", "runcmd", "--", "true"],
    );
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
    assert_eq!(runs(&s, "runcmd")[0]["info"]["status"], "FINISHED");
    let missing = quiver_run(
        dir.path(),
        &[
            "--url",
            &s.url,
            "--experiment",
            "runcmd",
            "--",
            "no-such-program-here",
        ],
    );
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot start no-such-program-here"));
    assert_eq!(runs(&s, "runcmd")[0]["info"]["status"], "FAILED");
}

#[test]
fn output_is_readable_while_the_command_runs_and_signals_are_passed_on() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args([
            "run",
            "--url",
            &s.url,
            "--experiment",
            "live",
            "--log-interval",
            "1",
            "--",
        ])
        .args([
            "sh",
            "-c",
            "echo started; while [ ! -f go ]; do sleep 0.1; done; echo go seen; exec sleep 60",
        ])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first line reaches the server while the command still runs (it waits for `go`).
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        assert!(Instant::now() < deadline, "the live log never arrived");
        if let Some(run) = runs(&s, "live").into_iter().next() {
            if artifact(&s, &run, "logs/stdout.txt").as_deref() == Some("started\n") {
                break run;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(run["info"]["status"], "RUNNING");
    std::fs::write(dir.path().join("go"), "").unwrap();
    while artifact(&s, &run, "logs/stdout.txt").as_deref() != Some("started\ngo seen\n") {
        assert!(Instant::now() < deadline, "the second line never arrived");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGTERM to quiver run reaches the command (sleeping 60 s): the run ends KILLED.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + libc::SIGTERM), "{status:?}");
    let run = &runs(&s, "live")[0];
    assert_eq!(run["info"]["status"], "KILLED");
}

#[test]
fn on_a_store_directory_the_run_is_served_to_the_command_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = quiver_run(
        dir.path(),
        &[
            "--store",
            store.to_str().unwrap(),
            "--experiment",
            "local",
            "--",
            "sh",
            "-c",
            "test -n \"$MLFLOW_RUN_ID\" && echo \"$MLFLOW_TRACKING_URI\"",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("http://127.0.0.1:"));
    let s = TestServer::start_on(&store);
    let found = runs(&s, "local");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["info"]["status"], "FINISHED");
}

#[test]
fn system_metrics_are_sampled_while_the_command_runs() {
    let s = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args([
            "run",
            "--url",
            &s.url,
            "--experiment",
            "sys",
            "--system-metrics-interval",
            "1",
            "--",
        ])
        .args(["sh", "-c", "while [ ! -f go ]; do sleep 0.1; done"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no system metrics arrived");
        let found = runs(&s, "sys");
        let keys: Vec<&str> = found
            .first()
            .and_then(|r| r["data"]["metrics"].as_array())
            .map(|m| m.iter().filter_map(|m| m["key"].as_str()).collect())
            .unwrap_or_default();
        if keys.contains(&"system/cpu_utilization_percentage") {
            for key in [
                "system/process_cpu_utilization_percentage",
                "system/process_memory_rss_megabytes",
                "system/system_memory_usage_megabytes",
                "system/disk_usage_percentage",
                "system/network_receive_megabytes",
            ] {
                assert!(keys.contains(&key), "{key} in {keys:?}");
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::write(dir.path().join("go"), "").unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(runs(&s, "sys")[0]["info"]["status"], "FINISHED");
}
