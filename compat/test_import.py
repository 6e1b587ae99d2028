"""`quiver import mlflow` from an MLflow database made by the real mlflow client.

The source is a `sqlite:///` tracking store written by mlflow 3.17.2 itself (nested runs, a
deleted run and a deleted experiment, NaN and Inf points, duplicates at one step, params, tags,
a dataset input, a text artifact in a subdirectory, a registered model with stages, tags, an
alias and a deleted version). It is imported into a new store directory; then a `quiver
server` on that store is read with the mlflow client and compared with the source, run by run,
point by point and byte by byte. Importing again adds nothing; an import killed part-way
(kill -9) and run again ends identical.
"""

import math
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, ViewType

from quiver_process import quiver_bin, start_server, stop_server

# Model registry stages are deprecated in the client; the import must still carry them.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

BIG = 200_000  # points of the long series, enough to be killed part-way through


@pytest.fixture(scope="module")
def source():
    """(directory, database URI, artifact root) of an MLflow store written by mlflow."""
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/mlflow.db"
        arts = Path(tmp) / "artifacts"
        c = MlflowClient(tracking_uri=db)
        exp = c.create_experiment("imported", artifact_location=str(arts), tags={"team": "a"})
        parent = c.create_run(exp, run_name="parent").info.run_id
        child = c.create_run(exp, run_name="child", tags={"mlflow.parentRunId": parent}).info.run_id
        for i, rid in enumerate([parent, child]):
            c.log_param(rid, "lr", str(0.1 * (i + 1)))
            c.set_tag(rid, "phase", f"p{i}")
        points = [Metric("loss", float("nan") if s == 7 else 1 / (s + 1), 1000 + s, s)
                  for s in range(3000)]
        for start in range(0, len(points), 1000):
            c.log_batch(parent, metrics=points[start:start + 1000])
        c.log_metric(child, "acc", float("inf"), step=1, timestamp=5)
        c.log_metric(child, "acc", 0.5, step=1, timestamp=6)
        c.log_metric(child, "acc", float("-inf"), step=2, timestamp=7)
        c.log_text(parent, "hello, quiver", "notes/a.txt")
        c.log_inputs(parent, [DatasetInput(
            Dataset(name="wine", digest="d41d8cd9", source_type="local",
                    source='{"uri": "/data/wine.csv"}', schema='{"cols": 3}'),
            tags=[InputTag("mlflow.data.context", "training")])])
        c.set_terminated(parent)
        c.set_terminated(child, "FAILED")
        c.create_registered_model("fraud", tags={"team": "risk"}, description="old model")
        c.create_model_version("fraud", f"runs:/{parent}/model", run_id=parent, tags={"v": "1"})
        c.create_model_version("fraud", f"runs:/{child}/model", run_id=child)
        c.create_model_version("fraud", f"runs:/{parent}/model2", run_id=parent,
                               description="third")
        c.transition_model_version_stage("fraud", "1", "Archived")
        c.transition_model_version_stage("fraud", "3", "Production")
        c.set_registered_model_alias("fraud", "champion", "3")
        c.delete_model_version("fraud", "2")
        gone = c.create_run(exp, run_name="gone").info.run_id
        c.log_metric(gone, "m", 1.0)
        c.delete_run(gone)
        old = c.create_experiment("old")
        c.delete_experiment(old)
        long_exp = c.create_experiment("long")
        big = c.create_run(long_exp, run_name="big").info.run_id
        for start in range(0, BIG, 1000):
            c.log_batch(big, metrics=[Metric("wave", math.sin(s / 100), s, s)
                                      for s in range(start, start + 1000)])
        yield tmp, db, arts


def quiver_import(db, store, *extra):
    return subprocess.run(
        [quiver_bin(), "import", "mlflow", "--from", db, "--store", str(store), *extra],
        capture_output=True, text=True, env={**os.environ, "QUIVER_LOG": "warn"}, timeout=600)


def same_value(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def datasets(run):
    """The dataset inputs of a run, comparable."""
    return sorted((i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source,
                   i.dataset.schema, tuple(sorted((t.key, t.value) for t in i.tags)))
                  for i in run.inputs.dataset_inputs)


def assert_identical(src, dst):
    """Every experiment, run, param, tag, metric point and artifact of `src` is in `dst`."""
    for e in src.search_experiments(view_type=ViewType.ALL):
        d = dst.get_experiment_by_name(e.name)
        assert d is not None, e.name
        assert d.lifecycle_stage == e.lifecycle_stage, e.name
        assert {k: v for k, v in d.tags.items()} == e.tags, e.name
        for r in src.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
            q = dst.get_run(r.info.run_id)
            for field in ("run_name", "status", "start_time", "end_time", "lifecycle_stage",
                          "user_id"):
                assert getattr(q.info, field) == getattr(r.info, field), (field, r.info.run_id)
            assert q.info.experiment_id == d.experiment_id
            assert q.data.params == r.data.params
            assert datasets(q) == datasets(src.get_run(r.info.run_id))
            assert q.data.tags == r.data.tags
            assert set(q.data.metrics) == set(r.data.metrics)
            for key in r.data.metrics:
                a = sorted((m.step, m.timestamp, m.value) for m in
                           src.get_metric_history(r.info.run_id, key) if not math.isnan(m.value))
                b = sorted((m.step, m.timestamp, m.value) for m in
                           dst.get_metric_history(r.info.run_id, key) if not math.isnan(m.value))
                assert a == b, (r.info.run_id, key)
                nans = [len([m for m in c.get_metric_history(r.info.run_id, key)
                             if math.isnan(m.value)]) for c in (src, dst)]
                assert nans[0] == nans[1]
            files = [f.path for f in src.list_artifacts(r.info.run_id, "notes")]
            assert [f.path for f in dst.list_artifacts(r.info.run_id, "notes")] == files
            for f in files:
                with tempfile.TemporaryDirectory() as out:
                    a = Path(src.download_artifacts(r.info.run_id, f, out)).read_bytes()
                with tempfile.TemporaryDirectory() as out:
                    b = Path(dst.download_artifacts(r.info.run_id, f, out)).read_bytes()
                assert a == b


def assert_registry_identical(src, dst):
    """Every registered model and live version of `src` is in `dst` as it is in `src`."""
    models = src.search_registered_models()
    assert [m.name for m in models] == ["fraud"]
    for m in models:
        d = dst.get_registered_model(m.name)
        # (aliases: the SQL store answers version numbers, the REST client strings)
        assert (d.description, d.tags) == (m.description, m.tags)
        assert {k: str(v) for k, v in d.aliases.items()} == {k: str(v) for k, v in m.aliases.items()}
        versions = src.search_model_versions(f"name='{m.name}'")
        assert sorted(str(v.version) for v in versions) == ["1", "3"]
        for v in versions:
            a, b = src.get_model_version(m.name, v.version), dst.get_model_version(m.name, v.version)
            for field in ("current_stage", "source", "run_id", "description", "tags", "aliases",
                          "creation_timestamp", "user_id"):
                # (an unset string: None from the SQL store, "" over REST)
                want = getattr(a, field)
                assert getattr(b, field) == ("" if want is None else want), (v.version, field)
            assert str(b.version) == str(a.version)
    # Version numbers are never reused: version 2 was deleted, the next one is 4.
    new = dst.create_model_version("fraud", "runs:/0123456789abcdef0123456789abcdef/m")
    assert new.version == "4"


def test_an_mlflow_database_imports_identically(source):
    tmp, db, arts = source
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        done = quiver_import(db, store, "--artifacts", str(arts))
        assert done.returncode == 0, done.stderr
        assert "identical to the source" in done.stdout, done.stdout
        assert f"{3000 + 3 + 1 + BIG} metric points" in done.stdout, done.stdout
        # Again: nothing more, still identical.
        again = quiver_import(db, store, "--artifacts", str(arts))
        assert again.returncode == 0, again.stderr
        assert "imported 0 runs (4 imported before)" in again.stdout, again.stdout
        server, url = start_server(store)
        try:
            assert_identical(MlflowClient(tracking_uri=db), MlflowClient(tracking_uri=url))
            assert_registry_identical(MlflowClient(tracking_uri=db),
                                      MlflowClient(tracking_uri=url))
        finally:
            stop_server(server)


def test_an_import_killed_part_way_resumes_to_the_same_store(source):
    tmp, db, arts = source
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        proc = subprocess.Popen(
            [quiver_bin(), "import", "mlflow", "--from", db, "--store", str(store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "QUIVER_LOG": "warn"})
        # Kill it once it has started writing (wherever it is then: any point must resume).
        deadline = time.monotonic() + 60
        while not (store / "FORMAT").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        done = quiver_import(db, store, "--artifacts", str(arts))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "identical to the source" in done.stdout, done.stdout
        server, url = start_server(store)
        try:
            assert_identical(MlflowClient(tracking_uri=db), MlflowClient(tracking_uri=url))
        finally:
            stop_server(server)


def test_bad_sources_get_clear_errors(source):
    tmp, _, _ = source
    with tempfile.TemporaryDirectory() as out:
        missing = quiver_import(f"sqlite:///{out}/none.db", Path(out) / "s")
        assert missing.returncode == 1 and "no such file" in missing.stderr, missing.stderr
        not_mlflow = Path(out) / "other.db"
        import sqlite3
        sqlite3.connect(not_mlflow).execute("CREATE TABLE t (x)").connection.commit()
        wrong = quiver_import(str(not_mlflow), Path(out) / "s")
        assert wrong.returncode == 1 and "is not an MLflow database" in wrong.stderr, wrong.stderr
        dry = quiver_import(f"sqlite:///{tmp}/mlflow.db", Path(out) / "s", "--dry-run")
        assert dry.returncode == 0 and "would import 4 runs" in dry.stdout, dry.stdout
        assert not (Path(out) / "s").exists(), "a dry run changes nothing"


def test_an_experiment_that_was_here_keeps_its_stage(source):
    """The source's deleted experiment "old" is matched by name with an active one already in
    the store: that one stays active (only experiments the import creates take the source's
    stage)."""
    _, db, _ = source
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        server, url = start_server(store)
        try:
            MlflowClient(tracking_uri=url).create_experiment("old")
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
        done = quiver_import(db, store)
        assert done.returncode == 0, done.stdout + done.stderr
        server, url = start_server(store)
        try:
            c = MlflowClient(tracking_uri=url)
            assert c.get_experiment_by_name("old").lifecycle_stage == "active"
            assert c.get_experiment_by_name("imported").lifecycle_stage == "active"
        finally:
            stop_server(server)
