//! Source snapshots, step reuse and pipelines through the real binary: what a snapshot holds
//! and refuses, `quiver snapshot diff|restore`, `quiver run --reuse` hits and misses for each
//! kind of change, and `quiver pipeline run|status` re-running exactly the changed steps.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::json;

use crate::run::{runs, tag};
use crate::TestServer;

fn quiver(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quiver"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn snapshot_paths(s: &TestServer, run_id: &str) -> Vec<String> {
    let (status, m) = s.get_json(&format!(
        "/api/2.0/quiver/runs/manifest?run_id={run_id}&kind=snapshot"
    ));
    assert_eq!(status, 200, "{m}");
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn snapshots_leave_out_what_is_ignored_and_refuse_oversized_sources() {
    let s = TestServer::start();
    let url = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "print('train')");
    write(d, "lib/util.py", "X = 1");
    write(d, ".gitignore", "*.log\ndata/\n");
    write(d, ".quiverignore", "scratch/\n");
    write(d, "run.log", "noise");
    write(d, "data/big.csv", "1,2,3");
    write(d, "scratch/tmp.txt", "t");
    write(d, "lib/__pycache__/util.pyc", "c");
    write(d, "venv/pyvenv.cfg", "home = /usr/bin");
    write(d, "venv/lib/site.py", "s");
    write(d, ".git/HEAD", "ref: refs/heads/main");
    let o = quiver(
        d,
        &["run", "--url", &url, "--experiment", "snap", "--", "true"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let found = runs(&s, "snap");
    let run_id = found[0]["info"]["run_id"].as_str().unwrap();
    assert_eq!(
        snapshot_paths(&s, run_id),
        [".gitignore", ".quiverignore", "lib/util.py", "train.py"]
    );
    assert_eq!(tag(&found[0], "quiver.snapshot.files"), Some("4"));

    // Over a limit, the command does not start and no run is made; the message names the
    // largest entries.
    write(d, "models/weights.bin", &"w".repeat(3000));
    let o = quiver(
        d,
        &[
            "run",
            "--url",
            &url,
            "--experiment",
            "snap",
            "--snapshot-max-files",
            "3",
            "--",
            "touch",
            "started",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("5 files") && err.contains("models/weights.bin"),
        "{err}"
    );
    assert!(err.contains(".quiverignore"), "{err}");
    assert!(!d.join("started").exists());
    assert_eq!(runs(&s, "snap").len(), 1);
}

#[test]
fn snapshots_diff_and_restore_between_runs() {
    let s = TestServer::start();
    let url = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "train.py", "lr = 0.1\nepochs = 3\nprint(lr)\n");
    write(d, "gone.py", "old\n");
    write(d, "run.sh", "echo run\n");
    std::fs::set_permissions(d.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = |exp: &str| {
        let o = quiver(
            d,
            &["run", "--url", &url, "--experiment", exp, "--", "true"],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run("diff");
    write(d, "train.py", "lr = 0.2\nepochs = 3\nprint(lr)\n");
    std::fs::remove_file(d.join("gone.py")).unwrap();
    write(d, "new.py", "new\n");
    run("diff");
    let found = runs(&s, "diff");
    let (b, a) = (
        found[0]["info"]["run_id"].as_str().unwrap(),
        found[1]["info"]["run_id"].as_str().unwrap(),
    );
    let o = quiver(d, &["snapshot", "diff", a, b, "--url", &url]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    for expected in [
        "removed   gone.py",
        "added     new.py",
        "modified  train.py",
        "--- a/train.py\n+++ b/train.py\n",
        "-lr = 0.1\n+lr = 0.2\n epochs = 3\n",
        "+++ b/new.py\n@@ -0,0 +1 @@\n+new\n",
    ] {
        assert!(text.contains(expected), "{expected:?} not in:\n{text}");
    }
    let o = quiver(d, &["snapshot", "diff", a, a, "--url", &url]);
    assert!(stdout(&o).contains("identical"));

    let restored = d.join("restored");
    let o = quiver(
        d,
        &[
            "snapshot",
            "restore",
            a,
            restored.to_str().unwrap(),
            "--url",
            &url,
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_to_string(restored.join("train.py")).unwrap(),
        "lr = 0.1\nepochs = 3\nprint(lr)\n"
    );
    assert_eq!(
        std::fs::read_to_string(restored.join("gone.py")).unwrap(),
        "old\n"
    );
    let mode = std::fs::metadata(restored.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    let o = quiver(d, &["snapshot", "ls", "nosuchrun", "--url", &url]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("RESOURCE_DOES_NOT_EXIST"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn reuse_hits_and_misses_for_each_kind_of_change() {
    let s = TestServer::start();
    let url = s.addr();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The command counts its executions in a file the snapshot leaves out.
    write(d, ".gitignore", "ran.log\n");
    write(
        d,
        "step.sh",
        "cat in.txt > out.txt; echo \"$1\" >> out.txt; echo x >> ran.log\n",
    );
    write(d, "in.txt", "input v1\n");
    let ran = || {
        std::fs::read_to_string(d.join("ran.log"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    };
    let step = |param: &str, arg: &str| {
        let o = quiver(
            d,
            &[
                "run",
                "--url",
                &url,
                "--experiment",
                "reuse",
                "--reuse",
                "--input",
                "in.txt",
                "--output",
                "out.txt",
                "--param",
                param,
                "--",
                "sh",
                "step.sh",
                arg,
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        stderr(&o)
    };
    step("lr=0.1", "a");
    assert_eq!(ran(), 1);
    // Nothing changed: not run, the output restored from the store.
    std::fs::remove_file(d.join("out.txt")).unwrap();
    let said = step("lr=0.1", "a");
    assert!(said.contains("reused run"), "{said}");
    assert_eq!(ran(), 1);
    assert_eq!(
        std::fs::read_to_string(d.join("out.txt")).unwrap(),
        "input v1\na\n"
    );
    let found = runs(&s, "reuse");
    assert_eq!(
        tag(&found[0], "quiver.reused_from"),
        found[1]["info"]["run_id"].as_str()
    );
    assert_eq!(found[0]["info"]["status"], "FINISHED");

    // Each kind of change runs the command once, then it is reused again.
    let changes: [(&str, &dyn Fn(), &str, &str); 4] = [
        ("param", &|| {}, "lr=0.2", "a"),
        ("input", &|| write(d, "in.txt", "input v2\n"), "lr=0.2", "a"),
        (
            "code",
            &|| {
                write(
                    d,
                    "step.sh",
                    "cat in.txt > out.txt; echo \"$1!\" >> out.txt; echo x >> ran.log\n",
                )
            },
            "lr=0.2",
            "a",
        ),
        ("command", &|| {}, "lr=0.2", "b"),
    ];
    for (i, (what, change, param, arg)) in changes.iter().enumerate() {
        change();
        let said = step(param, arg);
        assert!(
            said.contains("no finished run of this step"),
            "{what}: {said}"
        );
        assert_eq!(ran(), 2 + i, "a changed {what} runs the command");
        let said = step(param, arg);
        assert!(said.contains("reused run"), "{what}: {said}");
        assert_eq!(ran(), 2 + i);
    }
    assert_eq!(
        std::fs::read_to_string(d.join("out.txt")).unwrap(),
        "input v2\nb!\n"
    );

    // A run that did not leave its declared output fails, and is never reused.
    let o = quiver(
        d,
        &[
            "run",
            "--url",
            &url,
            "--experiment",
            "reuse",
            "--reuse",
            "--output",
            "never.txt",
            "--",
            "true",
        ],
    );
    assert!(stderr(&o).contains("without writing its declared output never.txt"));
    assert_eq!(runs(&s, "reuse")[0]["info"]["status"], "FAILED");
}

#[test]
fn a_pipeline_reruns_exactly_the_changed_step_and_those_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let store = store.to_str().unwrap();
    write(
        d,
        "pipeline.toml",
        r#"
name = "flow"
[steps.prepare]
cmd = "sh prepare.sh"
code = ["prepare.sh"]
inputs = ["raw.txt"]
outputs = ["clean.txt"]
[steps.train]
cmd = "sh train.sh"
code = ["train.sh"]
inputs = ["clean.txt"]
outputs = ["model/"]
params = { lr = 0.1 }
[steps.evaluate]
cmd = "sh evaluate.sh"
code = ["evaluate.sh"]
inputs = ["model"]
outputs = ["score.txt"]
"#,
    );
    write(d, "raw.txt", "raw\n");
    write(
        d,
        "prepare.sh",
        "tr a-z A-Z < raw.txt > clean.txt; echo prepare >> ran.log\n",
    );
    write(
        d,
        "train.sh",
        "mkdir -p model; cat clean.txt clean.txt > model/w.txt; echo train >> ran.log\n",
    );
    write(
        d,
        "evaluate.sh",
        "wc -l < model/w.txt > score.txt; echo evaluate >> ran.log\n",
    );
    let ran = || std::fs::read_to_string(d.join("ran.log")).unwrap_or_default();
    let pipeline = |verb: &str| quiver(d, &["pipeline", verb, "pipeline.toml", "--store", store]);

    let o = pipeline("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ran(), "prepare\ntrain\nevaluate\n");
    let o = pipeline("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        ran(),
        "prepare\ntrain\nevaluate\n",
        "nothing changed: nothing runs"
    );
    assert_eq!(stdout(&o).matches("| reused ").count(), 3, "{}", stdout(&o));

    write(
        d,
        "train.sh",
        "mkdir -p model; cat clean.txt > model/w.txt; echo train >> ran.log\n",
    );
    let o = pipeline("status");
    let table = stdout(&o);
    assert!(table.contains("| prepare  | reused"), "{table}");
    assert!(table.contains("changed code"), "{table}");
    assert!(table.contains("after train"), "{table}");
    let o = pipeline("run");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(ran(), "prepare\ntrain\nevaluate\ntrain\nevaluate\n");
    assert_eq!(
        std::fs::read_to_string(d.join("score.txt")).unwrap().trim(),
        "1"
    );

    // A changed param says so.
    let toml = std::fs::read_to_string(d.join("pipeline.toml")).unwrap();
    write(d, "pipeline.toml", &toml.replace("lr = 0.1", "lr = 0.3"));
    let table = stdout(&pipeline("status"));
    assert!(table.contains("changed param lr (0.1 → 0.3)"), "{table}");

    // A failing step stops the steps after it and fails the pipeline run, naming it.
    write(d, "train.sh", "exit 4\n");
    let o = pipeline("run");
    assert_eq!(o.status.code(), Some(1));
    let table = stdout(&o);
    assert!(table.contains("| train    | FAILED"), "{table}");
    assert!(table.contains("not run: train did not finish"), "{table}");
    assert!(stderr(&o).contains("failed: train"), "{}", stderr(&o));
    let s = TestServer::start_on(Path::new(store));
    let found = runs(&s, "flow");
    let parent = found
        .iter()
        .find(|r| r["info"]["run_name"] == "flow")
        .unwrap();
    assert_eq!(parent["info"]["status"], "FAILED");
    assert_eq!(tag(parent, "quiver.pipeline.failed_steps"), Some("train"));
    let children = found
        .iter()
        .filter(|r| tag(r, "mlflow.parentRunId") == parent["info"]["run_id"].as_str())
        .count();
    assert_eq!(children, 2, "prepare (reused) and train (failed)");
}

#[test]
fn manifest_routes_refuse_bad_requests() {
    let s = TestServer::start();
    let put = |digest: &str, body: &str| {
        crate::agent()
            .put(&s.api(&format!("/api/2.0/quiver/blobs/{digest}")))
            .send(body)
            .unwrap()
            .status()
            .as_u16()
    };
    let digest = blake3::hash(b"abc").to_hex().to_string();
    assert_eq!(put(&digest, "abd"), 400);
    assert_eq!(put("nothex", "abc"), 400);
    assert_eq!(put(&digest, "abc"), 200);
    let (status, v) = s.post_json("/api/2.0/quiver/blobs/missing", &json!({"digests": ["zz"]}));
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let (status, v) = s.post_json(
        "/api/2.0/quiver/blobs/missing",
        &json!({"digests": [digest, "0".repeat(64)]}),
    );
    assert_eq!(status, 200);
    assert_eq!(v["missing"], json!(["0".repeat(64)]));
    let (status, _) = s.post_json(
        "/api/2.0/quiver/runs/manifest",
        &json!({"run_id": "nosuchrun", "files": []}),
    );
    assert_eq!(status, 404);
    let (status, v) = s.get_json("/api/2.0/quiver/runs/manifest?run_id=x&kind=other");
    assert_eq!(
        (status, v["error_code"].as_str()),
        (400, Some("INVALID_PARAMETER_VALUE"))
    );
    let (status, _) = s.get_json("/api/2.0/quiver/runs/by-step-key");
    assert_eq!(status, 400);
}
