"""`quiver run`: an unmodified script using the mlflow client logs into the run quiver made.

Quiver only (needs `$QUIVER_BIN`, as test_import.py). The script calls `mlflow.start_run()`
without arguments, logs params, metrics and an artifact; it must land in the run `quiver run`
created (its name, params and tags), which ends FINISHED, or FAILED with the exit code.
"""

import json
import subprocess
import sys
import textwrap

from mlflow import MlflowClient

from quiver_process import quiver_bin

SCRIPT = textwrap.dedent("""
    import sys
    import mlflow
    with mlflow.start_run() as run:
        mlflow.log_params({"epochs": 3})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_text("weights", "model/weights.txt")
        print("run", run.info.run_id)
    sys.exit(int(sys.argv[1]))
""")


def quiver_run(tracking_uri, experiment, tmp_path, *args):
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.run(
        [quiver_bin(), "run", "--url", tracking_uri, "--experiment", experiment,
         "--name", "trained", "--param", "lr=0.01", "--", sys.executable, str(script), *args],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_the_mlflow_client_logs_into_the_run_quiver_run_made(tracking_uri, experiment, tmp_path):
    done = quiver_run(tracking_uri, experiment.name, tmp_path, "0")
    assert done.returncode == 0, done.stdout + done.stderr
    c = MlflowClient(tracking_uri)
    [run] = c.search_runs([experiment.experiment_id])
    assert done.stdout.startswith(f"run {run.info.run_id}"), done.stdout
    assert run.info.run_name == "trained"
    assert run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.01", "epochs": "3"}
    assert [m.value for m in c.get_metric_history(run.info.run_id, "loss")] == [1.0, 0.5, 1 / 3]
    assert run.data.tags["quiver.exit_code"] == "0"
    files = {f.path for f in c.list_artifacts(run.info.run_id)}
    assert {"environment.json", "logs", "model"} <= files, files
    stdout = c.download_artifacts(run.info.run_id, "logs/stdout.txt", str(tmp_path))
    assert open(stdout).read().startswith(f"run {run.info.run_id}")


def test_a_failing_script_fails_its_run_and_quiver_run_exits_with_its_code(
        tracking_uri, experiment, tmp_path):
    done = quiver_run(tracking_uri, experiment.name, tmp_path, "4")
    assert done.returncode == 4, done.stdout + done.stderr
    [run] = MlflowClient(tracking_uri).search_runs([experiment.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.tags["quiver.exit_code"] == "4"


def test_the_source_snapshot_is_an_artifact_the_client_reads(tracking_uri, experiment, tmp_path):
    (tmp_path / "notes.log").write_text("ignored")
    (tmp_path / ".gitignore").write_text("*.log\n")
    done = quiver_run(tracking_uri, experiment.name, tmp_path, "0")
    assert done.returncode == 0, done.stdout + done.stderr
    c = MlflowClient(tracking_uri)
    [run] = c.search_runs([experiment.experiment_id])
    local = c.download_artifacts(run.info.run_id, ".quiver/snapshot.json", str(tmp_path / "dl"))
    manifest = json.load(open(local))
    assert [f["path"] for f in manifest["files"]] == [".gitignore", "train.py"]
    assert manifest["files"][1]["size"] == len(SCRIPT.encode())
    assert run.data.tags["quiver.snapshot.root"] == manifest["root"]
    assert run.data.tags["quiver.snapshot.files"] == "2"
