"""A real `mlflow server` for the tests that need one (the source of `quiver import mlflow
--from http://...`, the target of `quiver export mlflow`): the full mlflow of this venv
(compat/requirements-ui.txt), started in its own process group on a free port."""

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from quiver_process import free_port


def start_mlflow(tmp, *flags, backend=None, artifacts=True):
    """Starts `mlflow server` in directory `tmp` (SQLite backend `tmp/mlflow.db` unless
    `backend` says otherwise; proxied artifacts under `tmp/artifacts` unless `artifacts` is
    false; `flags` added) with one worker; returns (process, url) once it answers /health.
    Its output goes to `tmp/mlflow-server.log`, shown when it does not start."""
    mlflow_bin = Path(sys.executable).parent / "mlflow"
    if not mlflow_bin.exists():
        pytest.fail(f"no {mlflow_bin}: install compat/requirements-ui.txt (the full mlflow)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    store = ["--artifacts-destination", str(Path(tmp) / "artifacts")] if artifacts else []
    log_path = Path(tmp) / "mlflow-server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(mlflow_bin), "server", "--backend-store-uri",
             backend or f"sqlite:///{tmp}/mlflow.db", *store, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", *flags],
            env={**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true"},
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                stop_mlflow(proc)
                pytest.fail("mlflow server did not start: " + log_path.read_text()[-3000:])
            time.sleep(0.2)


def stop_mlflow(proc):
    """Stops the server and the processes it started (uvicorn workers, its job runner)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
