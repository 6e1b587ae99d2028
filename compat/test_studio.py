"""Quiver Studio (`/studio/`), the SQL console, driven in headless Chromium.

Runs are logged with the real mlflow client, then the page is opened with a query in its URL
(`#q=...`): the grid must show the rows, bad SQL must show the error with its position, and the
CSV and Arrow downloads must arrive. Fails on any browser console error and on any 404/5xx.
Screenshots go to `$QUIVER_UI_SCREENSHOTS` when set.
"""

import re
import tempfile
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from playwright.sync_api import expect, sync_playwright
from browser import launch, screenshot
from quiver_process import start_server, stop_server

RUNS = 5


@pytest.fixture(scope="module")
def server():
    """A quiver server (without the MLflow UI) with RUNS runs, each with 250 `loss` points."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_server(Path(tmp) / "store")
        try:
            client = MlflowClient(tracking_uri=url)
            exp = client.create_experiment("studio")
            for i in range(RUNS):
                run = client.create_run(exp, run_name=f"run-{i}")
                rid = run.info.run_id
                metrics = [Metric("loss", 1.0 / (s + 1 + i), 1000 + s, s) for s in range(250)]
                client.log_batch(rid, metrics=metrics)
                client.log_param(rid, "lr", str(0.1 * (i + 1)))
                client.set_terminated(rid)
            yield url
        finally:
            stop_server(proc)


@pytest.fixture()
def page(server):
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
        pg = context.new_page()
        problems = []
        pg.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.on("response", lambda r: (r.status == 404 or r.status >= 500)
              and problems.append(f"{r.status} {r.url}"))
        yield pg, problems
        browser.close()


def shot(pg, name):
    screenshot(pg, f"studio-{name}")


def test_a_shared_query_runs_and_pages(server, page):
    pg, problems = page
    query = "SELECT m.run_id, m.step, m.value FROM metrics m ORDER BY m.run_id, m.step"
    pg.goto(f"{server}/studio#q={quote(query)}")
    expect(pg.locator("#status")).to_contain_text(f"{RUNS * 250} rows", timeout=15000)
    expect(pg.locator("#grid tbody tr")).to_have_count(100)
    expect(pg.locator("#grid thead th")).to_have_count(3)
    expect(pg.locator("#pager")).to_be_visible()
    expect(pg.locator("#page")).to_contain_text("page 1 of 13")
    pg.click("#next")
    expect(pg.locator("#page")).to_contain_text("page 2 of 13")
    # The table browser lists the tables and their columns.
    expect(pg.locator("#table-list summary", has_text=re.compile("^metrics$"))).to_have_count(1)
    pg.locator("#table-list summary", has_text=re.compile("^runs$")).click()
    expect(pg.locator("#table-list .col", has_text="run_name").first).to_be_visible()
    shot(pg, "grid")

    # Downloads: CSV and Arrow of the whole result.
    with pg.expect_download() as d:
        pg.click("button[data-format=csv]")
    csv = Path(d.value.path()).read_text()
    assert csv.startswith("run_id,step,value\n")
    assert csv.count("\n") == RUNS * 250 + 1
    with pg.expect_download() as d:
        pg.click("button[data-format=parquet]")
    table = pq.read_table(d.value.path())
    assert table.num_rows == RUNS * 250
    assert table.column_names == ["run_id", "step", "value"]
    with pg.expect_download() as d:
        pg.click("button[data-format=arrow]")
    arrow = Path(d.value.path()).read_bytes()
    assert arrow[:4] == b"\xff\xff\xff\xff" and len(arrow) > 1000
    assert d.value.suggested_filename.endswith(".arrows")
    assert problems == []


def test_bad_sql_shows_the_error_at_its_position(server, page):
    pg, problems = page
    pg.goto(f"{server}/studio/")
    pg.fill("#editor", "SELECT run_id\nFROM runs WHERE run_id = )")
    pg.press("#editor", "Control+Enter")
    err = pg.locator("#error")
    expect(err).to_be_visible()
    expect(err).to_contain_text("Line: 2")
    expect(err.locator(".caret")).to_have_count(1)
    assert "#q=" in pg.url
    shot(pg, "error")
    # Console errors from the failed fetch (a 400) are expected; nothing else.
    assert [p for p in problems if "400" not in p] == []


def test_the_grid_caps_what_it_loads(server, page):
    pg, problems = page
    pg.goto(f"{server}/studio/?q={quote('SELECT value FROM generate_series(1, 25000) AS t(value)')}")
    expect(pg.locator("#status")).to_contain_text("10000 rows (showing the first 10000",
                                                  timeout=15000)
    expect(pg.locator("#page")).to_contain_text("page 1 of 100")
    assert problems == []
