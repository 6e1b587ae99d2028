//! The admin commands `quiver deployments` and `quiver models history`, run as the real binary on
//! a store directory prepared through the library, and through a running server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use quiver_store::{CreateModelVersion, Store};
use serde_json::Value;

use crate::TestServer;

/// The words of `line`, split at spaces; a word in single quotes may hold spaces.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Runs `quiver <line> <at...>` (`at`: `--store DIR` or `--url URL`) as user `dora` (unless
/// `--user` says otherwise).
fn quiver(line: &str, at: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(words(line))
        .args(at)
        .env("QUIVER_LOG", "warn")
        .env("USER", "dora")
        .env_remove("QUIVER_STORE")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Runs a command and expects success; its standard output.
fn ok(line: &str, at: &[&str]) -> String {
    let out = quiver(line, at);
    assert!(
        out.status.success(),
        "quiver {line} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// Runs a command and expects success and a JSON answer.
fn ok_json(line: &str, at: &[&str]) -> Value {
    let text = ok(line, at);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Runs a command and expects a failure; its standard error.
fn fails(line: &str, at: &[&str]) -> String {
    let out = quiver(line, at);
    assert!(
        !out.status.success(),
        "quiver {line} succeeded: {}",
        stdout(&out)
    );
    stderr(&out)
}

/// A store at `dir/store` with registered model `fraud` (by alice), its version 1 in Staging and
/// alias `champion` on version 1.
fn registry_store(dir: &Path) -> PathBuf {
    let path = dir.join("store");
    let store = Store::open(&path).unwrap();
    store
        .create_registered_model("fraud", &[], Some("card fraud"), "alice")
        .unwrap();
    let v = store
        .create_model_version(
            &CreateModelVersion {
                name: "fraud".into(),
                source: "s3://models/fraud/1".into(),
                ..Default::default()
            },
            "alice",
        )
        .unwrap();
    assert_eq!(v.version, "1");
    store
        .transition_model_version_stage("fraud", "1", "Staging", false, "alice")
        .unwrap();
    store
        .set_registered_model_alias("fraud", "champion", "1", "alice")
        .unwrap();
    store.close().unwrap();
    path
}

/// The events of a `--format json` history that have `action`.
fn with_action<'a>(events: &'a Value, action: &str) -> Vec<&'a Value> {
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .collect()
}

#[test]
fn deployments_are_created_listed_and_deleted_on_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = registry_store(dir.path());
    let s = store.to_str().unwrap();

    let out = ok(
        "deployments create fraud-prod --model fraud --version 1 --target k8s/prod-eu \
         --description 'eu traffic' --user bob",
        &["--store", s],
    );
    assert!(out.contains("fraud-prod"), "{out}");
    // Without --user, $USER is recorded.
    ok(
        "deployments create fraud-canary --model fraud --alias champion --target k8s/canary",
        &["--store", s],
    );

    let list = ok_json("deployments list --format json", &["--store", s]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let (canary, prod) = (&list[0], &list[1]);
    assert_eq!(canary["name"], "fraud-canary");
    assert_eq!(canary["alias"], "champion");
    assert_eq!(canary["resolved_version"], "1");
    assert_eq!(canary["user_id"], "dora");
    assert_eq!(prod["name"], "fraud-prod");
    assert_eq!(prod["model_name"], "fraud");
    assert_eq!(prod["version"], "1");
    assert_eq!(prod["target"], "k8s/prod-eu");
    assert_eq!(prod["description"], "eu traffic");
    assert_eq!(prod["user_id"], "bob");
    assert!(prod["creation_timestamp"].as_i64().unwrap() > 0);

    let table = ok("deployments list", &["--store", s]);
    for text in [
        "fraud-prod",
        "fraud-canary",
        "k8s/prod-eu",
        "champion",
        "bob",
    ] {
        assert!(table.contains(text), "{text} not in\n{table}");
    }

    // The history: oldest first, with who did what and the values before and after.
    let events = ok_json("models history fraud --format json", &["--store", s]);
    let seqs: Vec<u64> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(events[0]["action"], "create_registered_model");
    assert_eq!(events[0]["user_id"], "alice");
    assert!(events[0]["time_utc"].as_str().unwrap().ends_with('Z'));
    let created = with_action(&events, "create_model_version");
    assert_eq!(created.len(), 1, "{events}");
    assert_eq!(created[0]["version"], "1");
    let moved = with_action(&events, "transition_stage");
    assert_eq!(moved.len(), 1, "{events}");
    assert_eq!(
        (
            &moved[0]["version"],
            &moved[0]["before"],
            &moved[0]["after"]
        ),
        (&"1".into(), &"None".into(), &"Staging".into())
    );
    let deployed = with_action(&events, "create_deployment");
    assert_eq!(deployed.len(), 2, "{events}");
    assert!(deployed
        .iter()
        .any(|e| e["key"] == "fraud-prod" && e["user_id"] == "bob"));

    let table = ok("models history fraud", &["--store", s]);
    for text in [
        "create_registered_model",
        "create_model_version",
        "transition_stage",
        "None → Staging",
        "alice",
    ] {
        assert!(table.contains(text), "{text} not in\n{table}");
    }

    // A deployed version is guarded by the store; the record goes, the guard with it.
    ok("deployments delete fraud-prod --user bob", &["--store", s]);
    ok("deployments delete fraud-canary", &["--store", s]);
    assert_eq!(
        ok_json("deployments list --format json", &["--store", s]),
        Value::Array(vec![])
    );
    let events = ok_json("models history fraud --format json", &["--store", s]);
    let removed = with_action(&events, "delete_deployment");
    assert_eq!(removed.len(), 2, "{events}");
    assert!(removed
        .iter()
        .any(|e| e["key"] == "fraud-prod" && e["user_id"] == "bob"));
}

#[test]
fn admin_command_errors_are_reported_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = registry_store(dir.path());
    let s = store.to_str().unwrap();

    let err = fails(
        "deployments create d --model no-such-model --version 1 --target t",
        &["--store", s],
    );
    assert!(err.contains("error: RESOURCE_DOES_NOT_EXIST: "), "{err}");
    assert!(err.contains("no-such-model"), "{err}");

    // Exactly one of --version and --alias: clap refuses both, and neither.
    let out = quiver(
        "deployments create d --model fraud --version 1 --alias champion --target t",
        &["--store", s],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
    let out = quiver(
        "deployments create d --model fraud --target t",
        &["--store", s],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    ok(
        "deployments create d --model fraud --version 1 --target t",
        &["--store", s],
    );
    let err = fails(
        "deployments create d --model fraud --version 1 --target t",
        &["--store", s],
    );
    assert!(err.contains("error: RESOURCE_ALREADY_EXISTS: "), "{err}");
    let err = fails(
        "deployments create 'no spaces' --model fraud --version 1 --target t",
        &["--store", s],
    );
    assert!(err.contains("error: INVALID_PARAMETER_VALUE: "), "{err}");
    let err = fails("deployments delete no-such-deployment", &["--store", s]);
    assert!(err.contains("error: RESOURCE_DOES_NOT_EXIST: "), "{err}");
    fails("models history no-such-model", &["--store", s]);

    // No store there: said so, and nothing created.
    let missing = dir.path().join("missing");
    let err = fails("deployments list", &["--store", missing.to_str().unwrap()]);
    assert!(err.contains("no Quiver store"), "{err}");
    assert!(!missing.exists());
}

#[test]
fn admin_commands_work_through_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let store = registry_store(dir.path());
    let server = TestServer::start_on(&store);
    let url = server.url.as_str();

    // The server holds the store: the command says to use --url.
    let err = fails("deployments list", &["--store", store.to_str().unwrap()]);
    assert!(err.contains("--url"), "{err}");

    let out = ok(
        "deployments create fraud-prod.eu --model fraud --alias champion --target k8s/prod-eu \
         --user carol",
        &["--url", url],
    );
    assert!(out.contains("fraud-prod.eu"), "{out}");
    let list = ok_json("deployments list --format json", &["--url", url]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["name"], "fraud-prod.eu");
    assert_eq!(list[0]["alias"], "champion");
    assert_eq!(list[0]["resolved_version"], "1");
    assert_eq!(list[0]["user_id"], "carol");
    let table = ok("deployments list", &["--url", url]);
    assert!(table.contains("k8s/prod-eu"), "{table}");

    let err = fails(
        "deployments create x --model no-such-model --version 1 --target t",
        &["--url", url],
    );
    assert!(err.contains("error: RESOURCE_DOES_NOT_EXIST: "), "{err}");

    let events = ok_json("models history fraud --format json", &["--url", url]);
    assert_eq!(events[0]["action"], "create_registered_model");
    assert_eq!(events[0]["user_id"], "alice");
    assert_eq!(
        with_action(&events, "transition_stage").len(),
        1,
        "{events}"
    );
    let deployed = with_action(&events, "create_deployment");
    assert_eq!(deployed.len(), 1, "{events}");
    assert_eq!(deployed[0]["user_id"], "carol");
    assert_eq!(deployed[0]["key"], "fraud-prod.eu");
    let table = ok("models history fraud", &["--url", url]);
    assert!(table.contains("None → Staging"), "{table}");

    ok(
        "deployments delete fraud-prod.eu --user carol",
        &["--url", url],
    );
    let list = ok_json("deployments list --format json", &["--url", url]);
    assert_eq!(list, Value::Array(vec![]));
    let err = fails("deployments delete fraud-prod.eu", &["--url", url]);
    assert!(err.contains("error: RESOURCE_DOES_NOT_EXIST: "), "{err}");
    assert!(server.stop(), "clean exit on SIGTERM");

    // The server's changes are in the store once it is closed.
    let events = ok_json(
        "models history fraud --format json",
        &["--store", store.to_str().unwrap()],
    );
    assert_eq!(
        with_action(&events, "delete_deployment").len(),
        1,
        "{events}"
    );
}
