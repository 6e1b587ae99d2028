"""`quiver import mlflow --from ./mlruns`: MLflow's file store, written by the real mlflow client.

The source is an `mlruns/` directory written by mlflow 3.17.2's own file store (kept working
with `MLFLOW_ALLOW_FILE_STORE=true`): nested runs, NaN and ±Inf points, several values at one
step, a long series, keys with `/`, a dataset input, artifacts in a subdirectory, a logged model
(`mlflow.pyfunc.log_model`) registered as a version, a registry with stages, tags, an alias and a
deleted version, a deleted run and a deleted experiment (in `.trash`). It is imported into a new
store; a `quiver server` on it is read with the mlflow client and compared with the file store,
run by run, point by point, byte by byte, and the registered logged model loads and predicts.
"""

import math
import os
import tempfile
from pathlib import Path

import pandas as pd
import pytest

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric, ViewType

from quiver_process import start_server, stop_server
from test_import import datasets, quiver_import, same_value

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

LONG = 20_000


class Echo(mlflow.pyfunc.PythonModel):
    """A model that needs no ML framework: it answers its input doubled."""

    def predict(self, context, model_input):
        return model_input * 2


@pytest.fixture(scope="module")
def mlruns():
    """(mlruns directory, file-store client, the logged model's id)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "mlruns"
        uri = root.as_uri()
        allow = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
        previous = mlflow.get_tracking_uri()
        try:
            mlflow.set_tracking_uri(uri)
            c = MlflowClient(tracking_uri=uri, registry_uri=uri)
            exp = c.create_experiment("files", tags={"team": "a"})
            with mlflow.start_run(experiment_id=exp, run_name="parent") as parent:
                mlflow.log_params({"lr": "0.1", "opt/name": "adam"})
                mlflow.set_tag("phase/kind", "train")
                mlflow.log_metric("nan", float("nan"), step=0)
                mlflow.log_metric("inf", float("inf"), step=1)
                mlflow.log_metric("inf", float("-inf"), step=1)
                for v in (0.25, 0.5):
                    mlflow.log_metric("loss/train", v, step=3)
                c.log_batch(parent.info.run_id, metrics=[
                    Metric("wave", math.sin(s / 50), 1_000 + s, s) for s in range(LONG)][:1000])
                for start in range(1000, LONG, 1000):
                    c.log_batch(parent.info.run_id, metrics=[
                        Metric("wave", math.sin(s / 50), 1_000 + s, s)
                        for s in range(start, start + 1000)])
                mlflow.log_text("hello, quiver", "notes/a.txt")
                mlflow.log_dict({"k": [1, 2]}, "notes/deep/b.json")
                mlflow.log_input(mlflow.data.from_pandas(pd.DataFrame({"a": [1, 2]}), name="ds"),
                                 context="training")
                info = mlflow.pyfunc.log_model(name="echo", python_model=Echo(),
                                               registered_model_name="echo")
                with mlflow.start_run(run_name="child", nested=True, experiment_id=exp):
                    mlflow.log_metric("acc", 0.75, step=2)
            model_id = info.model_id
            c.create_model_version("echo", f"runs:/{parent.info.run_id}/other",
                                   run_id=parent.info.run_id, description="second")
            c.create_model_version("echo", f"runs:/{parent.info.run_id}/third",
                                   run_id=parent.info.run_id)
            c.delete_model_version("echo", "2")
            c.transition_model_version_stage("echo", "1", "Production")
            c.set_registered_model_alias("echo", "champion", "1")
            c.set_model_version_tag("echo", "3", "k", "v")
            c.set_registered_model_tag("echo", "owner", "me")
            gone = c.create_run(exp, run_name="gone").info.run_id
            c.log_metric(gone, "m", 1.0)
            c.delete_run(gone)
            old = c.create_experiment("old")
            c.log_param(c.create_run(old).info.run_id, "p", "1")
            c.delete_experiment(old)
            # The tests' own experiments (conftest) go to the tracking server, not in here.
            mlflow.set_tracking_uri(previous)
            yield root, c, model_id
        finally:
            mlflow.set_tracking_uri(previous)
            if allow is None:
                os.environ.pop("MLFLOW_ALLOW_FILE_STORE", None)
            else:
                os.environ["MLFLOW_ALLOW_FILE_STORE"] = allow


def history(client, run_id, key):
    """The distinct points of a series. The file store repeats a point when it is logged again
    (`log_model` re-logs the run's metrics for the model); MLflow's database, and Quiver, keep
    one (timestamp, step, value) once."""
    return sorted({(m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value)
                   for m in client.get_metric_history(run_id, key)}, key=str)


def walk(client, run_id, path=None):
    """Every artifact file of a run: path -> size."""
    out = {}
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.update(walk(client, run_id, f.path))
        else:
            out[f.path] = f.file_size
    return out


def test_an_mlruns_directory_imports_identically(mlruns):
    root, src, model_id = mlruns
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        done = quiver_import(str(root), store)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "MLflow file store" in done.stdout, done.stdout
        assert "identical to the source" in done.stdout, done.stdout
        assert "1 logged models" in done.stdout, done.stdout
        again = quiver_import(str(root), store)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "imported 0 runs (4 imported before)" in again.stdout, again.stdout
        server, url = start_server(store)
        try:
            dst = MlflowClient(tracking_uri=url)
            experiments = src.search_experiments(view_type=ViewType.ALL)
            assert sorted(e.name for e in experiments) == ["Default", "files", "old"]
            runs = 0
            for e in experiments:
                d = dst.get_experiment_by_name(e.name)
                assert d is not None, e.name
                assert (d.experiment_id, d.lifecycle_stage, d.tags) == \
                    (e.experiment_id, e.lifecycle_stage, e.tags), e.name
                for r in src.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
                    runs += 1
                    rid = r.info.run_id
                    q = dst.get_run(rid)
                    for field in ("run_name", "status", "start_time", "end_time",
                                  "lifecycle_stage", "user_id"):
                        assert getattr(q.info, field) == getattr(r.info, field), (field, rid)
                    assert (q.data.params, q.data.tags) == (r.data.params, r.data.tags)
                    assert datasets(q) == datasets(src.get_run(rid))
                    assert set(q.data.metrics) == set(r.data.metrics), rid
                    for key in r.data.metrics:
                        assert history(dst, rid, key) == history(src, rid, key), (rid, key)
                        assert same_value(q.data.metrics[key], r.data.metrics[key]), (rid, key)
                    files = walk(src, rid)
                    assert walk(dst, rid) == files, rid
                    for f in files:
                        with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
                            assert Path(src.download_artifacts(rid, f, a)).read_bytes() == \
                                Path(dst.download_artifacts(rid, f, b)).read_bytes(), f
            assert runs == 4
            parent = [r for r in dst.search_runs([dst.get_experiment_by_name("files").experiment_id])
                      if r.info.run_name == "parent"][0]
            assert len(dst.get_metric_history(parent.info.run_id, "wave")) == LONG
            assert sorted(v.value for v in dst.get_metric_history(parent.info.run_id, "inf")) == \
                [float("-inf"), float("inf")]

            # The logged model: same id, record, params, tags, files; it loads and predicts.
            a, b = src.get_logged_model(model_id), dst.get_logged_model(model_id)
            for field in ("name", "status", "source_run_id", "params", "creation_timestamp"):
                assert getattr(b, field) == getattr(a, field), field
            assert b.tags == a.tags
            assert sorted(m.key for m in b.metrics) == sorted(m.key for m in a.metrics)
            assert [o.model_id for o in dst.get_run(a.source_run_id).outputs.model_outputs] == \
                [model_id]
            previous = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(url)
            try:
                loaded = mlflow.pyfunc.load_model("models:/echo@champion")
                assert list(loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"]) == [2, 4]
            finally:
                mlflow.set_tracking_uri(previous)

            # The registry: versions 1 and 3 (2 was deleted), stage, alias, tags.
            m, d = src.get_registered_model("echo"), dst.get_registered_model("echo")
            assert (d.tags, {k: str(v) for k, v in d.aliases.items()}) == \
                (m.tags, {k: str(v) for k, v in m.aliases.items()})
            versions = sorted(src.search_model_versions("name='echo'"), key=lambda v: int(v.version))
            assert [str(v.version) for v in versions] == ["1", "3"]
            for v in versions:
                g = dst.get_model_version("echo", v.version)
                for field in ("current_stage", "source", "run_id", "tags", "creation_timestamp"):
                    assert getattr(g, field) == getattr(v, field), (v.version, field)
                assert (g.description or "") == (v.description or "")
            assert dst.create_model_version("echo", "runs:/" + "0" * 32 + "/m").version == "4"
        finally:
            stop_server(server)


def test_a_damaged_run_is_named_and_can_be_skipped(mlruns):
    root, src, _ = mlruns
    with tempfile.TemporaryDirectory() as out:
        import shutil
        copy = Path(out) / "mlruns"
        shutil.copytree(root, copy)
        exp = src.get_experiment_by_name("files").experiment_id
        child = [r for r in src.search_runs([exp]) if r.info.run_name == "child"][0].info.run_id
        (copy / exp / child / "meta.yaml").write_text("run_id: [unclosed\n")
        stop = quiver_import(str(copy), Path(out) / "a")
        assert stop.returncode == 1, stop.stdout + stop.stderr
        assert str(copy / exp / child) in stop.stderr and "--on-error skip" in stop.stderr, \
            stop.stderr
        skip = quiver_import(str(copy), Path(out) / "b", "--on-error", "skip")
        assert skip.returncode == 1, skip.stdout + skip.stderr
        assert "imported 3 runs" in skip.stdout and "identical to the source" in skip.stdout, \
            skip.stdout
        assert "1 runs were skipped" in skip.stderr, skip.stderr
        bad_point = copy / exp / child / "metrics" / "acc"
        (copy / exp / child / "meta.yaml").write_text((root / exp / child / "meta.yaml").read_text())
        bad_point.write_text("12 not-a-number 2\n")
        point = quiver_import(str(copy), Path(out) / "c")
        assert point.returncode == 1, point.stdout + point.stderr
        assert f"{bad_point} line 1" in point.stderr, point.stderr
