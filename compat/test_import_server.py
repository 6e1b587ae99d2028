"""`quiver import mlflow --from http://...` from a running `mlflow server`, read through its
REST API.

A real `mlflow server` (mlflow 3.17.2 from this venv, SQLite backend, proxied artifacts) is
started on a free port and filled through `MlflowClient` over HTTP: nested runs, NaN and ±Inf
points, two values at one step and a point logged twice, a series of 30,000 points (more than
one page of `metrics/get-history`), params, tags, a dataset input, artifacts in nested
directories, a deleted run, a deleted experiment with a run, and a registered model with
versions, a stage, tags, an alias and a deleted version. It is imported into a new store; a
`quiver server` on that store is read with the mlflow client and compared with the MLflow
server, run by run, point by point, byte by byte and model by model. Importing again adds
nothing and still verifies; an import killed part-way and run again ends identical. A server
on MLflow's file store (another backend, other JSON for ±Inf) imports too. Retries,
error answers and credentials are checked against a small fake server.
"""

import base64
import http.server
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, ViewType

from mlflow_server import start_mlflow, stop_mlflow
from quiver_process import free_port, quiver_bin, start_server, stop_server

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

LONG = 30_000  # points of the long series: two pages of metrics/get-history (25,000 a page)
POINTS = 3000 + 3 + 1 + 1 + 1 + LONG  # every point the source holds
RUNS = 5


@pytest.fixture(scope="module")
def source():
    """The URL of a running `mlflow server` filled by the mlflow client."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_mlflow(tmp)
        try:
            fill(MlflowClient(tracking_uri=url), Path(tmp))
            yield url
        finally:
            stop_mlflow(proc)


def fill(c, tmp):
    exp = c.create_experiment("served", tags={"team": "a"})
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
    c.log_metric(child, "acc", 0.5, step=1, timestamp=6)  # the same point again
    c.log_metric(child, "acc", float("-inf"), step=2, timestamp=7)
    c.log_metric(child, "val/loss: a b", 0.25, step=0, timestamp=9)  # a key to percent-encode
    c.log_text(parent, "hello, quiver", "notes/a.txt")
    files = tmp / "upload"
    (files / "deep").mkdir(parents=True)
    (files / "deep" / "b.bin").write_bytes(bytes(range(256)) * 40)
    (files / "c d.txt").write_text("a name with a space")
    c.log_artifacts(child, str(files), "outputs")
    c.log_inputs(parent, [DatasetInput(
        Dataset(name="wine", digest="d41d8cd9", source_type="local",
                source='{"uri": "/data/wine.csv"}', schema='{"cols": 3}'),
        tags=[InputTag("mlflow.data.context", "training")])])
    c.set_terminated(parent)
    c.set_terminated(child, "FAILED")
    c.create_registered_model("fraud", tags={"team": "risk"}, description="old model")
    c.create_model_version("fraud", f"runs:/{parent}/model", run_id=parent, tags={"v": "1"})
    c.create_model_version("fraud", f"runs:/{child}/model", run_id=child)
    c.create_model_version("fraud", f"runs:/{parent}/model2", run_id=parent, description="third")
    c.transition_model_version_stage("fraud", "1", "Archived")
    c.transition_model_version_stage("fraud", "3", "Production")
    c.set_registered_model_alias("fraud", "champion", "3")
    c.delete_model_version("fraud", "2")
    gone = c.create_run(exp, run_name="gone").info.run_id
    c.log_metric(gone, "m", 1.0)
    c.delete_run(gone)
    old = c.create_experiment("old")
    kept = c.create_run(old, run_name="in a deleted experiment").info.run_id
    c.log_metric(kept, "m", 2.0, step=3)
    c.delete_experiment(old)
    long_exp = c.create_experiment("long")
    big = c.create_run(long_exp, run_name="big").info.run_id
    for start in range(0, LONG, 1000):
        c.log_batch(big, metrics=[Metric("wave", math.sin(s / 100), s, s)
                                  for s in range(start, start + 1000)])


def quiver_import(url, store, *extra, env=None):
    return subprocess.run(
        [quiver_bin(), "import", "mlflow", "--from", url, "--store", str(store), *extra],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "QUIVER_LOG": "warn", **(env or {})})


def history(client, run_id, key):
    """The points of one series, comparable (NaN as a marker, since NaN != NaN)."""
    return sorted((m.step, m.timestamp, "nan" if math.isnan(m.value) else m.value)
                  for m in client.get_metric_history(run_id, key))


def artifact_files(client, run_id, path=None):
    """Every artifact file of a run, recursively, with its size."""
    out = []
    for f in client.list_artifacts(run_id, path):
        if f.is_dir:
            out.extend(artifact_files(client, run_id, f.path))
        else:
            out.append((f.path, f.file_size))
    return sorted(out)


def datasets(run):
    return sorted((i.dataset.name, i.dataset.digest, i.dataset.source_type, i.dataset.source,
                   i.dataset.schema, tuple(sorted((t.key, t.value) for t in i.tags)))
                  for i in run.inputs.dataset_inputs)


def assert_identical(src, dst):
    """Every experiment, run, param, tag, point and artifact of `src` is in `dst` as it is
    there; returns how many runs were compared."""
    runs = 0
    for e in src.search_experiments(view_type=ViewType.ALL):
        d = dst.get_experiment_by_name(e.name)
        assert d is not None, e.name
        assert d.lifecycle_stage == e.lifecycle_stage, e.name
        assert d.tags == e.tags, e.name
        for r in src.search_runs([e.experiment_id], run_view_type=ViewType.ALL):
            runs += 1
            rid = r.info.run_id
            q = dst.get_run(rid)
            for field in ("run_name", "status", "start_time", "end_time", "lifecycle_stage",
                          "user_id"):
                assert getattr(q.info, field) == getattr(r.info, field), (field, rid)
            assert q.info.experiment_id == d.experiment_id
            assert q.data.params == r.data.params
            assert q.data.tags == r.data.tags
            assert datasets(q) == datasets(src.get_run(rid))
            assert set(q.data.metrics) == set(r.data.metrics)
            for key in r.data.metrics:
                assert history(dst, rid, key) == history(src, rid, key), (rid, key)
            files = artifact_files(src, rid)
            assert artifact_files(dst, rid) == files, rid
            for path, _ in files:
                with tempfile.TemporaryDirectory() as out:
                    a = Path(src.download_artifacts(rid, path, out)).read_bytes()
                with tempfile.TemporaryDirectory() as out:
                    b = Path(dst.download_artifacts(rid, path, out)).read_bytes()
                assert a == b, (rid, path)
    return runs


def assert_registry_identical(src, dst):
    models = src.search_registered_models()
    assert [m.name for m in models] == ["fraud"]
    for m in models:
        d = dst.get_registered_model(m.name)
        assert (d.description, d.tags, d.aliases) == (m.description, m.tags, m.aliases)
        versions = src.search_model_versions(f"name='{m.name}'")
        assert sorted(v.version for v in versions) == ["1", "3"]
        for v in versions:
            a, b = src.get_model_version(m.name, v.version), dst.get_model_version(m.name, v.version)
            for field in ("current_stage", "source", "run_id", "description", "tags", "aliases",
                          "creation_timestamp", "user_id"):
                assert (getattr(b, field) or "") == (getattr(a, field) or ""), (v.version, field)
    # REST does not show deleted versions: the next number is above the highest live one (3).
    assert dst.create_model_version("fraud", "runs:/0123456789abcdef0123456789abcdef/m").version == "4"


def test_a_running_mlflow_server_imports_identically(source):
    url = source
    src = MlflowClient(tracking_uri=url)
    # The source as the test means it: the repeated point is kept once, ±Inf as the SQL store
    # answers them (±1.7976931348623157e308).
    child = src.search_runs([src.get_experiment_by_name("served").experiment_id],
                            "attributes.run_name = 'child'")[0].info.run_id
    assert [p[2] for p in history(src, child, "acc")] == [sys.float_info.max, 0.5,
                                                          -sys.float_info.max]
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        dry = quiver_import(url, store, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        assert f"would import {RUNS} runs" in dry.stdout, dry.stdout
        assert "MLflow server 3.17.2" in dry.stdout, dry.stdout
        assert not store.exists(), "a dry run changes nothing"
        done = quiver_import(url, store)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"imported {RUNS} runs (0 imported before), 0 logged models, {POINTS} metric points, 3 artifact files" \
            in done.stdout, done.stdout
        assert f"verified {RUNS} runs and {POINTS} metric points: identical to the source" \
            in done.stdout, done.stdout
        # Again (with a trailing slash: the same source): nothing new, still verified.
        again = quiver_import(url + "/", store)
        assert again.returncode == 0, again.stdout + again.stderr
        assert f"imported 0 runs ({RUNS} imported before)" in again.stdout, again.stdout
        assert "identical to the source" in again.stdout, again.stdout
        server, qurl = start_server(store)
        try:
            dst = MlflowClient(tracking_uri=qurl)
            assert assert_identical(src, dst) == RUNS
            assert_registry_identical(src, dst)
        finally:
            stop_server(server)


def test_an_import_killed_part_way_resumes_to_the_same_store(source):
    url = source
    with tempfile.TemporaryDirectory() as out:
        store = Path(out) / "store"
        proc = subprocess.Popen(
            [quiver_bin(), "import", "mlflow", "--from", url, "--store", str(store)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            env={**os.environ, "QUIVER_LOG": "warn"})
        deadline = time.monotonic() + 60
        while not (store / "FORMAT").exists() and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        # Resumed: the runs done are checked against the server again (read afresh), the
        # rest imported now.
        done = quiver_import(url, store)
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"verified {RUNS} runs and {POINTS} metric points: identical to the source" \
            in done.stdout, done.stdout
        server, qurl = start_server(store)
        try:
            assert assert_identical(MlflowClient(tracking_uri=url),
                                    MlflowClient(tracking_uri=qurl)) == RUNS
        finally:
            stop_server(server)


def test_a_server_on_a_file_store_imports_too():
    """Another backend behind the same REST API: MLflow's file store answers ±Inf as the
    strings "Infinity" and "-Infinity" and a point logged twice twice; the import keeps ±Inf
    and the point once."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_mlflow(tmp, backend=str(Path(tmp) / "mlruns"))
        try:
            c = MlflowClient(tracking_uri=url)
            exp = c.create_experiment("filed", tags={"k": "v"})
            rid = c.create_run(exp, run_name="r").info.run_id
            c.log_metric(rid, "acc", float("inf"), step=1, timestamp=5)
            c.log_metric(rid, "acc", 0.5, step=1, timestamp=6)
            c.log_metric(rid, "acc", 0.5, step=1, timestamp=6)
            c.log_metric(rid, "acc", float("-inf"), step=2, timestamp=7)
            c.log_metric(rid, "acc", float("nan"), step=3, timestamp=8)
            c.log_param(rid, "p", "1")
            c.log_text(rid, "filed text", "d/e/f.txt")
            c.set_terminated(rid)
            raw = urllib.request.urlopen(
                f"{url}/api/2.0/mlflow/metrics/get-history?run_id={rid}&metric_key=acc").read()
            assert b'"Infinity"' in raw and b'"-Infinity"' in raw, raw
            with tempfile.TemporaryDirectory() as out:
                store = Path(out) / "store"
                done = quiver_import(url, store)
                assert done.returncode == 0, done.stdout + done.stderr
                assert "verified 1 runs and 4 metric points: identical to the source" \
                    in done.stdout, done.stdout
                server, qurl = start_server(store)
                try:
                    dst = MlflowClient(tracking_uri=qurl)
                    assert history(dst, rid, "acc") == [
                        (1, 5, math.inf), (1, 6, 0.5), (2, 7, -math.inf), (3, 8, "nan")]
                    assert dst.get_run(rid).data.params == {"p": "1"}
                    assert dst.get_experiment_by_name("filed").tags == {"k": "v"}
                    with tempfile.TemporaryDirectory() as d:
                        got = Path(dst.download_artifacts(rid, "d/e/f.txt", d)).read_text()
                    assert got == "filed text"
                finally:
                    stop_server(server)
        finally:
            stop_mlflow(proc)


class FakeServer(http.server.BaseHTTPRequestHandler):
    """Answers 503 to the first two requests, then 401 with an MLflow error body; records
    the path and Authorization header of each request."""

    seen = []

    def do_GET(self):
        self.answer()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.answer()

    def answer(self):
        FakeServer.seen.append((self.path, self.headers.get("Authorization")))
        if len(FakeServer.seen) <= 3:  # /version, then two tries of the first search
            status, body = 503, b"overloaded"
        else:
            status, body = 401, json.dumps({"error_code": "UNAUTHENTICATED",
                                            "message": "who are you?"}).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_errors_name_the_url_and_the_servers_code_after_retries():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeServer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with tempfile.TemporaryDirectory() as out:
            done = quiver_import(url, Path(out) / "s", env={
                "MLFLOW_TRACKING_USERNAME": "ann", "MLFLOW_TRACKING_PASSWORD": "s3cret",
                "MLFLOW_TRACKING_TOKEN": "ignored when a password is set"})
            assert done.returncode == 1, done.stdout + done.stderr
            assert f"{url}/api/2.0/mlflow/experiments/search: UNAUTHENTICATED: who are you?" \
                in done.stderr, done.stderr
            searches = [p for p, _ in FakeServer.seen if p.endswith("experiments/search")]
            assert len(searches) == 3, FakeServer.seen  # two 503s retried, then the 401
            basic = "Basic " + base64.b64encode(b"ann:s3cret").decode()
            assert {a for _, a in FakeServer.seen} == {basic}
            assert not (Path(out) / "s").exists()
            FakeServer.seen.clear()
            bearer = quiver_import(url, Path(out) / "s", env={"MLFLOW_TRACKING_TOKEN": "tok"})
            assert bearer.returncode == 1
            assert {a for _, a in FakeServer.seen} == {"Bearer tok"}
    finally:
        httpd.shutdown()
    with tempfile.TemporaryDirectory() as out:
        nobody = quiver_import(f"http://127.0.0.1:{free_port()}", Path(out) / "s",
                               env={"MLFLOW_TRACKING_USERNAME": "", "MLFLOW_TRACKING_TOKEN": ""})
        assert nobody.returncode == 1
        assert "cannot reach" in nobody.stderr, nobody.stderr
        tls = quiver_import("https://127.0.0.1:1", Path(out) / "s")
        assert tls.returncode == 1 and "built without TLS" in tls.stderr, tls.stderr
        arts = quiver_import("http://127.0.0.1:1", Path(out) / "s", "--artifacts", out)
        assert arts.returncode == 1 and "--artifacts is for a database source" in arts.stderr, \
            arts.stderr


class Echo:
    """Built lazily: a pyfunc model needing no ML framework (its input doubled)."""

    @staticmethod
    def model():
        import mlflow.pyfunc

        class _Echo(mlflow.pyfunc.PythonModel):
            def predict(self, context, model_input):
                return model_input * 2

        return _Echo()


def test_a_logged_model_imports_from_a_server_and_loads():
    """MLflow 3's logged models come through REST too: the model (same id, record, params,
    tags, files), the metric logged for it, the run that produced it, and a registered version
    made from it, which loads and predicts from the imported store."""
    import mlflow
    import pandas as pd
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_mlflow(tmp)
        previous = mlflow.get_tracking_uri()
        try:
            mlflow.set_tracking_uri(url)
            exp = MlflowClient(url).create_experiment("models")
            with mlflow.start_run(experiment_id=exp) as run:
                info = mlflow.pyfunc.log_model(name="echo", python_model=Echo.model(),
                                               registered_model_name="echo",
                                               params={"depth": "3"})
                mlflow.log_metric("acc", 0.75, step=2, model_id=info.model_id)
            mlflow.set_tracking_uri(previous)
            store = Path(tmp) / "store"
            done = quiver_import(url, store)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "1 logged models" in done.stdout and "verified 1 logged models" in done.stdout, \
                done.stdout
            server, qurl = start_server(store)
            try:
                src, dst = MlflowClient(url), MlflowClient(qurl)
                a, b = src.get_logged_model(info.model_id), dst.get_logged_model(info.model_id)
                for field in ("name", "status", "source_run_id", "params", "tags",
                              "creation_timestamp"):
                    assert getattr(b, field) == getattr(a, field), field
                assert [(m.key, m.value, m.run_id) for m in b.metrics] == \
                    [(m.key, m.value, m.run_id) for m in a.metrics]
                assert [o.model_id for o in dst.get_run(run.info.run_id).outputs.model_outputs] \
                    == [info.model_id]
                mlflow.set_tracking_uri(qurl)
                loaded = mlflow.pyfunc.load_model("models:/echo/1")
                assert list(loaded.predict(pd.DataFrame({"x": [1, 2]}))["x"]) == [2, 4]
            finally:
                stop_server(server)
        finally:
            mlflow.set_tracking_uri(previous)
            stop_mlflow(proc)
