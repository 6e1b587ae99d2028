"""Quiver Studio (`/studio/`), the SQL console and the compare view, driven in headless
Chromium.

Runs are logged with the real mlflow client, then the page is opened with a query in its URL
(`#q=...`): the grid must show the rows, bad SQL must show the error with its position, the CSV
and Arrow downloads must arrive, and a result must draw as a chart. The compare view
(`#compare?...`) must chart every run, never fetch more points per line than the chart is wide,
and fetch the detail of the range a drag selects. Fails on any browser console error and on any
404/5xx. Screenshots go to `$QUIVER_UI_SCREENSHOTS` when set.
"""

import math
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
LONG = 20_000  # points of the one series of experiment "long"


@pytest.fixture(scope="module")
def server():
    """A quiver server (without the MLflow UI) with RUNS runs in experiment "studio", each with
    250 `loss` points, and one run in experiment "long" with LONG points of `wave`."""
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
            long_exp = client.create_experiment("long")
            rid = client.create_run(long_exp, run_name="long").info.run_id
            for start in range(0, LONG, 1000):
                client.log_batch(rid, metrics=[Metric("wave", math.sin(s / 500) + s / LONG, 1000 + s, s)
                                               for s in range(start, start + 1000)])
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


@pytest.fixture(scope="module")
def ids(server):
    """(experiment id of "studio", run id of the long run)."""
    client = MlflowClient(tracking_uri=server)
    exp = client.get_experiment_by_name("studio").experiment_id
    long_exp = client.get_experiment_by_name("long").experiment_id
    return exp, client.search_runs([long_exp])[0].info.run_id


def drawn(pg, what, count=1):
    """Waits until the page has recorded `count` timings `what` (window.studioTimings)."""
    pg.wait_for_function(
        "([w, n]) => (window.studioTimings || []).filter(t => t.what === w).length >= n",
        arg=[what, count], timeout=20000)


def inked(pg, selector):
    """The number of painted pixels of the canvas `selector`."""
    return pg.eval_on_selector(selector, """c => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
        return n;
    }""")


def shot(pg, name):
    screenshot(pg, f"studio-{name}")


def test_a_shared_query_runs_and_pages(server, page):
    pg, problems = page
    query = ("SELECT m.run_id, m.step, m.value FROM metrics m WHERE m.key = 'loss' "
             "ORDER BY m.run_id, m.step")
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


def test_a_query_draws_as_a_chart(server, page):
    pg, problems = page
    query = ("SELECT m.step AS x, m.value AS y, r.run_name AS series "
             "FROM metrics m JOIN runs r USING (run_id) WHERE m.key = 'loss'")
    pg.goto(f"{server}/studio/#q={quote(query)}&chart=")
    drawn(pg, "sql-chart-drawn")
    expect(pg.locator("#sql-chart")).to_be_visible()
    expect(pg.locator("#grid")).to_be_hidden()
    assert [pg.input_value(s) for s in ("#cx", "#cy", "#cs")] == ["x", "y", "series"]
    assert "&chart=x%2Cy%2Cseries" in pg.url
    assert inked(pg, "#sql-chart canvas") > 2000
    # Hovering a line reads out its series and point.
    box = pg.locator("#sql-chart canvas").last.bounding_box()
    pg.mouse.move(box["x"] + 62, box["y"] + 12)
    for dx in range(0, int(box["width"]) - 80, 40):
        pg.mouse.move(box["x"] + 62 + dx, box["y"] + box["height"] - 60)
        if pg.locator("#sql-chart .tip").is_visible():
            break
    expect(pg.locator("#sql-chart .tip")).to_contain_text("run-")
    shot(pg, "sql-chart")
    # One series, then back to the table.
    pg.select_option("#cs", "")
    assert "&chart=x%2Cy%2C" in pg.url and "series" not in pg.url.split("chart=")[1]
    pg.click("#as-table")
    expect(pg.locator("#grid tbody tr")).to_have_count(100)
    assert "chart=" not in pg.url
    assert problems == []


def test_compare_charts_every_run_of_an_experiment(server, ids, page):
    pg, problems = page
    exp, _ = ids
    pg.goto(f"{server}/studio/#compare?experiment={exp}")
    drawn(pg, "compare-drawn")
    expect(pg.locator("#cmp-legend .run")).to_have_count(RUNS)
    expect(pg.locator("#cmp-charts .chart")).to_have_count(1)
    expect(pg.locator("#cmp-charts .chart h3")).to_have_text("loss")
    expect(pg.locator("#cmp-metrics .chip.on")).to_have_text(["loss"])
    expect(pg.locator("#cmp-status")).to_contain_text(f"{RUNS} runs × 1 metric")
    expect(pg.locator("#cmp-exp")).to_have_value(exp)
    assert inked(pg, "#cmp-charts canvas") > 2000
    shot(pg, "compare")
    # Hiding a run redraws without it; a filter narrows the runs and lands in the URL.
    before = inked(pg, "#cmp-charts canvas")
    pg.locator("#cmp-legend .run input").first.uncheck()
    assert inked(pg, "#cmp-charts canvas") < before
    pg.fill("#cmp-filter", "params.lr = '0.1'")
    pg.click("#cmp-form button[type=submit]")
    drawn(pg, "compare-drawn", 2)
    expect(pg.locator("#cmp-legend .run")).to_have_count(1)
    assert "filter=params.lr" in pg.url
    assert problems == []


def test_compare_fetches_no_more_points_than_pixels_and_zooms_into_detail(server, ids, page):
    pg, problems = page
    _, run = ids
    sampled = []
    pg.on("response", lambda r: "/quiver/metrics/sampled" in r.url and sampled.append(r))
    pg.goto(f"{server}/studio/#compare?runs={run}&metrics=wave")
    drawn(pg, "compare-drawn")
    canvas = pg.locator("#cmp-charts .chart canvas").last
    width = canvas.bounding_box()["width"]
    first = sampled[-1]
    steps = first.json()["series"][0]["steps"]
    asked = int(re.search(r"max_results=(\d+)", first.url).group(1))
    assert asked <= width and len(steps) == asked, (asked, width, len(steps))
    assert steps[0] == 0 and steps[-1] == LONG - 1
    assert "start_step" not in first.url

    # Drag across the middle: the chart fetches the selected steps, more finely.
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    pg.mouse.move(box["x"] + box["width"] * 0.3, y)
    pg.mouse.down()
    pg.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    pg.mouse.up()
    drawn(pg, "zoom-drawn")
    zoom = sampled[-1]
    lo = int(re.search(r"start_step=(-?\d+)", zoom.url).group(1))
    hi = int(re.search(r"end_step=(-?\d+)", zoom.url).group(1))
    detail = zoom.json()["series"][0]["steps"]
    assert 0 < lo < hi < LONG - 1
    assert all(lo <= s <= hi for s in detail)
    assert (detail[-1] - detail[0]) / len(detail) < (steps[-1] - steps[0]) / len(steps) / 2
    shot(pg, "compare-zoomed")
    # Double-click: the whole series again.
    canvas.dblclick()
    drawn(pg, "zoom-drawn", 2)
    assert "start_step" not in sampled[-1].url
    assert problems == []
