"""Fixtures for the MLflow client compatibility suite.

The suite drives the real `mlflow` Python client (mlflow-skinny, pinned in requirements.txt)
against a running tracking server whose URL is in the environment variable
MLFLOW_TRACKING_URI. `cargo test -p quiver --test it compat` starts a `quiver server` and
runs this suite against it; see README.md to run it by hand.

Every test gets its own experiment (a fresh, uniquely named one, made the active experiment
with `mlflow.set_experiment`), so tests are independent of each other and of their order.
"""

import contextlib
import os
import re
import time
import uuid

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException


def pytest_configure(config):
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        raise pytest.UsageError(
            "MLFLOW_TRACKING_URI is not set: point it at a running tracking server, "
            "e.g. MLFLOW_TRACKING_URI=http://127.0.0.1:5055 (see compat/README.md)"
        )
    # A 5xx should fail the test at once, not after minutes of client-side retries.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # MLflow 3 reports usage to an outside endpoint unless told not to.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    # Noise from inside the client library, not about the server under test.
    config.addinivalue_line("filterwarnings", "ignore:Starting with pandas version 4.0")
    config.addinivalue_line("filterwarnings", "ignore:Hint. Inferred schema contains integer")
    config.addinivalue_line("filterwarnings", "ignore:The ``noload`` loader strategy")


@pytest.fixture(scope="session")
def tracking_uri():
    """The tracking server's URL, from MLFLOW_TRACKING_URI."""
    uri = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture(scope="session")
def client(tracking_uri):
    """An `MlflowClient` bound to the server under test."""
    return MlflowClient(tracking_uri=tracking_uri)


def unique_name(prefix):
    """A name no other test (or earlier run of the suite against the same store) uses."""
    prefix = re.sub(r"[^\w.\-]+", "-", prefix).strip("-")[:80]
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(autouse=True)
def experiment(request, tracking_uri):
    """A fresh experiment, created with `mlflow.set_experiment` and active for the test.

    Teardown ends any run the test left active (as FAILED) and switches async logging
    back off, so that a failing test cannot leak state into the next one.
    """
    exp = mlflow.set_experiment(unique_name("compat-" + request.node.name))
    yield exp
    mlflow.config.enable_async_logging(False)
    while mlflow.active_run() is not None:
        try:
            mlflow.end_run("FAILED")
        except Exception:
            # The server may be what failed; end_run has already popped the run off the
            # client's stack before calling the server, so the loop still ends.
            pass


@pytest.fixture
def experiment_id(experiment):
    return experiment.experiment_id


@pytest.fixture
def now_ms():
    """A function returning the current time in milliseconds since the epoch."""
    return lambda: int(time.time() * 1000)


@pytest.fixture
def artifact_tree(tmp_path):
    """A small directory tree to upload:

    tree/x.txt          "x-content"
    tree/e/y.txt        "y-content"
    tree/e/f/z.bin      256 bytes 0..255
    """
    root = tmp_path / "tree"
    (root / "e" / "f").mkdir(parents=True)
    (root / "x.txt").write_text("x-content")
    (root / "e" / "y.txt").write_text("y-content")
    (root / "e" / "f" / "z.bin").write_bytes(bytes(range(256)))
    return root


@contextlib.contextmanager
def raises_mlflow(error_code, *phrases):
    """A `with` block that must raise MlflowException with `error_code` and a message containing
    every one of `phrases`."""
    with pytest.raises(MlflowException) as info:
        yield info
    err = info.value
    assert err.error_code == error_code, f"error_code {err.error_code!r}: {err.message}"
    for phrase in phrases:
        assert phrase in err.message, f"{phrase!r} not in {err.message!r}"
