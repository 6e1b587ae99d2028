"""MLflow's own web UI, served by `quiver server`, driven in headless Chromium as a person uses it.

The server is started here with `--python <this venv's python>`, so it serves the UI bundle of
the `mlflow` package installed in this venv (compat/requirements-ui.txt). Data is logged with
the real mlflow client first; then every page is opened in Debian's Chromium
(`$QUIVER_CHROMIUM`, default /usr/bin/chromium) through Playwright (no browser download).

Each page fails its test on any browser console error and on any request to Quiver answering
404 or 5xx, except the GenAI endpoints (traces, prompts, gateway, scorers...), which Quiver does
not serve (README). Screenshots of every page go to `$QUIVER_UI_SCREENSHOTS` when set.

`cargo test` runs a smoke set (20 runs, 1,000 steps). The whole set (1,000 runs, 3 runs x
10,000 steps) runs with QUIVER_UI_FULL=1:

    QUIVER_UI_FULL=1 QUIVER_UI_SCREENSHOTS=/tmp/ui-shots cargo test -p quiver --test it compat
"""

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import expect, sync_playwright
from browser import launch, screenshot
from quiver_process import start_server, stop_server

FULL = os.environ.get("QUIVER_UI_FULL") == "1"
RUNS = 1000 if FULL else 20
STEPS = 10_000 if FULL else 1_000
# Endpoints Quiver does not serve (README), as `mlflow server` without its extras does not:
# MLflow's GenAI features, and the accounts of its basic-auth app (`users/current`), which
# `mlflow server` also answers 404 without `--app-name basic-auth`.
NOT_SERVED = re.compile(r"/(traces?|prompts?|gateway|scorers?|evaluation-datasets|"
                        r"issues|labeling|webhooks|secrets|judges|assessments|otel|workspaces|"
                        r"assistant|users)(/|\?|$)")
# The logged image: a 64x64 gradient.
IMAGE = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))[:, :, None].repeat(3, axis=2)


@pytest.fixture(scope="module")
def ui():
    """A quiver server serving the MLflow UI of this venv's mlflow package, with data logged:
    returns a dict of the server URL and the ids the pages need."""
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_server(Path(tmp) / "store", "--python", sys.executable)
        try:
            yield {"url": url, **log_data(MlflowClient(tracking_uri=url))}
        finally:
            stop_server(server)


def log_data(client):
    exp = client.create_experiment("web-ui")
    # Many small runs for the runs table.
    for i in range(RUNS):
        run = client.create_run(exp, run_name=f"sweep-{i:04d}")
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("score", (i * 37 % 101) / 100, 1_700_000_000_000 + i, 0)],
            params=[Param("lr", str(0.001 * (1 + i % 10))), Param("layers", str(2 + i % 4))],
            tags=[RunTag("group", "even" if i % 2 == 0 else "odd")],
        )
        client.set_terminated(run.info.run_id)
    # Three long runs for the charts, the run page and comparison.
    long_runs = []
    for r in range(3):
        run = client.create_run(exp, run_name=f"long-{r}")
        rid = run.info.run_id
        points = [Metric("loss", math.exp(-s / 2000) + 0.05 * r + 0.01 * math.sin(s / 50),
                         1_700_000_000_000 + s, s) for s in range(STEPS)]
        for i in range(0, len(points), 1000):
            client.log_batch(rid, metrics=points[i:i + 1000])
        client.log_batch(rid, params=[Param("optimizer", "adam"), Param("seed", str(r))],
                         tags=[RunTag("stage", "long")])
        long_runs.append(rid)
    rich = long_runs[0]
    client.log_inputs(rich, [DatasetInput(
        Dataset(name="wine", digest="d41d8cd9", source_type="local",
                source='{"uri": "/data/wine.csv"}'),
        tags=[InputTag("mlflow.data.context", "training")])])
    client.log_text(rich, "hello from quiver\n", "notes/readme.txt")
    client.log_image(rich, IMAGE, "plots/gradient.png")
    for rid in long_runs[1:]:
        client.set_terminated(rid)
    return {"experiment_id": exp, "runs": long_runs, "model_id": log_model(client, exp, rich)}


class Scaler(PythonModel):
    """A pyfunc model, so that the model pages have a real MLmodel to show."""

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return model_input * 2


def log_model(client, experiment_id, run_id):
    """Logs a Scaler as logged model "wine-model" of run `run_id`, registered as version 1 of
    "wine-classifier"; returns the model id. The fluent API is pointed at this test's server and
    experiment for the call and given back as it was (conftest's experiment is on another
    server)."""
    from mlflow.tracking import fluent

    previous = (mlflow.get_tracking_uri(), fluent._active_experiment_id)
    mlflow.set_tracking_uri(client.tracking_uri)
    try:
        mlflow.set_experiment(experiment_id=experiment_id)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="wine-model", python_model=Scaler(),
                registered_model_name="wine-classifier",
                # An explicit list skips the client's requirement inference (a subprocess).
                pip_requirements=["pandas"])
    finally:
        mlflow.set_tracking_uri(previous[0])
        fluent._active_experiment_id = previous[1]
    return info.model_id


class Watched:
    """A browser page that records console errors and failed requests to the server."""

    def __init__(self, page, base):
        self.page = page
        self.problems = []
        page.on("console", self.console)
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        page.on("response", lambda r: self.check(r, base))

    def console(self, message):
        if message.type != "error":
            return
        # A failed request is logged to the console too; it is judged by check().
        if message.text.startswith("Failed to load resource"):
            return
        self.problems.append(f"console error: {message.text} at {message.location.get('url')}")

    def check(self, response, base):
        if not response.url.startswith(base) or NOT_SERVED.search(response.url):
            return
        if response.status == 404 or response.status >= 500:
            self.problems.append(f"{response.status} {response.request.method} {response.url}")

    def open(self, url, *texts, name):
        """Opens `url`, waits until every text in `texts` is visible, screenshots it as `name`,
        and fails on anything recorded."""
        self.page.goto(url)
        self.await_texts(texts, name)

    def await_texts(self, texts, name):
        """Waits until every text in `texts` is visible, then settles (see settle())."""
        missing = []
        for text in texts:
            try:
                self.page.get_by_text(text, exact=False).first.wait_for(timeout=20_000)
            except PlaywrightTimeout:
                missing.append(text)
        self.settle(name, [f"never shown: {t!r}" for t in missing])

    def settle(self, name, problems=()):
        """Lets the page's requests answer, screenshots it as `name`, and fails on anything
        recorded. The UI polls (run lists refresh), so the network never goes idle: the
        requests the page made get a moment to answer before they are judged."""
        self.page.wait_for_timeout(1500)
        screenshot(self.page, name)
        problems = list(problems) + self.problems
        assert not problems, f"{name}:\n" + "\n".join(problems)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser, ui):
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    yield Watched(context.new_page(), ui["url"])
    context.close()


def test_experiment_list(page, ui):
    page.open(f"{ui['url']}/#/experiments", "web-ui", name="experiments")


def test_runs_table_filter_and_sort(page, ui):
    exp = ui["experiment_id"]
    page.open(f"{ui['url']}/#/experiments/{exp}/runs", "long-2", name="runs-table")
    sweeps = page.page.get_by_text(re.compile(r"^sweep-\d{4}$"))
    box = page.page.get_by_placeholder(re.compile(r"metrics\.rmse"))
    # layers = 2 + i % 4 and lr = 0.001 * (1 + i % 10): this keeps the runs with i % 20 == 1.
    box.fill('params.layers = "3" and params.lr = "0.002"')
    box.press("Enter")
    expect(page.page.get_by_text("long-0", exact=True)).to_have_count(0)
    expect(sweeps.first).to_be_visible()
    shown = sweeps.all_inner_texts()
    assert shown and all(int(n[-4:]) % 20 == 1 for n in shown), shown
    page.settle("runs-table-filtered")
    # Sort by the score metric, highest first, from the sort menu.
    page.page.get_by_role("button", name=re.compile("^Sort")).click()
    page.page.get_by_text("score", exact=True).last.click()
    page.settle("runs-table-sorted")
    names = in_screen_order(sweeps)
    scores = {f"sweep-{i:04d}": (i * 37 % 101) / 100 for i in range(RUNS)}
    shown = [scores[n] for n in names]
    assert shown == sorted(shown) or shown == sorted(shown, reverse=True), names


def in_screen_order(locator):
    """The texts of the elements `locator` matches, top to bottom as drawn: the run table
    moves its rows with CSS when it sorts, so their order in the DOM is not the order shown."""
    drawn = [(el.bounding_box(), el.inner_text()) for el in locator.all()]
    return [text for box, text in sorted((d for d in drawn if d[0]), key=lambda d: d[0]["y"])]


def test_compare_runs(page, ui):
    exp, runs = ui["experiment_id"], ui["runs"]
    ids = json.dumps(runs)
    page.open(f"{ui['url']}/#/compare-runs?runs={quote(ids)}&experiments={quote(json.dumps([exp]))}",
              "long-0", "long-2", "optimizer", name="compare-runs")


def test_run_page(page, ui):
    exp, run = ui["experiment_id"], ui["runs"][0]
    page.open(f"{ui['url']}/#/experiments/{exp}/runs/{run}", "optimizer", "wine",
              name="run-page")


def test_run_artifacts(page, ui):
    exp, run = ui["experiment_id"], ui["runs"][0]
    page.open(f"{ui['url']}/#/experiments/{exp}/runs/{run}/artifacts/notes/readme.txt",
              "hello from quiver", name="artifact-text")
    # The image, as a person reaches it: through the artifact tree.
    page.page.get_by_text("plots", exact=True).click()
    page.page.get_by_text("gradient.png", exact=True).click()
    page.settle("artifact-image")
    # The preview is the downloaded file shown from a blob: URL, decoded at its real size.
    sizes = page.page.locator("img[src^='blob:']").evaluate_all(
        "els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert [64, 64] in sizes, sizes


def test_metric_charts(page, ui):
    exp, run = ui["experiment_id"], ui["runs"][0]
    page.open(f"{ui['url']}/#/experiments/{exp}/runs/{run}/model-metrics", "loss",
              name="run-metrics")


def test_models(page, ui):
    page.open(f"{ui['url']}/#/models", "wine-classifier", name="registered-models")
    page.open(f"{ui['url']}/#/models/wine-classifier/versions/1", "Version 1",
              name="model-version")
    exp, model = ui["experiment_id"], ui["model_id"]
    page.open(f"{ui['url']}/#/experiments/{exp}/models/{model}", "wine-model",
              name="logged-model")
