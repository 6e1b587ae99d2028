"""Browser benchmarks of the pages `quiver server` serves: MLflow's web UI and Quiver Studio.

Starts a quiver server on a store of its own, logs the data the figures need over the MLflow
REST API, then times pages in headless Chromium (Debian's /usr/bin/chromium through Playwright,
no browser download), a fresh browser context (cold cache) for every measurement, and prints
the median, min and max of each figure. See benches/README.md, "Browser bench".

    python benches/browser/bench_ui.py --quiver target/release/quiver \\
        --python /var/tmp/bench-venv/bin/python --keep-store /var/tmp/bench-ui-store

With --against-mlflow, figures 1 and 2 are measured in the same invocation against quiver
server and the real `mlflow server` (its `mlflow` next to --python, one worker, a sqlite store
kept in --mlflow-store and populated there once with the same REST calls; screenshots in
/tmp/bench-shots-mlflow): one unmeasured load on each, then the repetitions alternate between
the two servers; a table gives both medians and their ratio.

Figures (--only NAME runs one):
  runs-table     MLflow UI, experiment of 10,000 runs: navigation to run rows visible
  run-metrics    MLflow UI, run with 50 metrics: navigation to its metric charts drawn
  compare-1      Studio compare, 100 runs x 1 metric x 10,000 steps: to compare-drawn
  compare-10     Studio compare, 100 runs x 10 metrics x 10,000 steps: to compare-drawn
  big-series     Studio compare, one 10M-point series: first draw, then zoom
  studio-weight  Studio page weight: bytes of /studio/ and its assets on a cold load

Times are read inside the page (performance.now(), i.e. since navigation start). Every response
of the server with status >= 400 during a measurement is printed. The Studio figures are skipped
(left "not yet measured") when the binary's Studio has no compare view.
"""

import argparse
import http.client
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("QUIVER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("BENCH_SHOTS", "/tmp/bench-shots"))
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 120_000
T0_MS = 1_700_000_000_000  # timestamps of the logged points: T0 + 100 ms per step
COMPARE_KEYS = [f"m{k}" for k in range(10)]  # the metrics of the compare view's 100 runs

MLFLOW_UI_FIGURES = ["runs-table", "run-metrics"]  # measurable against mlflow server too
STUDIO_FIGURES = ["compare-1", "compare-10", "big-series", "studio-weight"]
# The data sets each figure needs (populated once per store, see Datasets).
NEEDS = {"runs-table": ["runs10k"], "run-metrics": ["run50"], "compare-1": ["compare100"],
         "compare-10": ["compare100"], "big-series": ["big"], "studio-weight": []}

# The rows each figure adds to the table: (label, unit, target).
ROWS = {
    "runs-table": [("1. MLflow UI runs table, 10,000 runs", "ms", 1500)],
    "run-metrics": [("2. MLflow UI run page, 50 metrics", "ms", 1000)],
    "compare-1": [("3. Studio compare, 100 runs x 1 metric x 10k steps", "ms", 1000)],
    "compare-10": [("4. Studio compare, 100 runs x 10 metrics x 10k steps", "ms", 1000)],
    "big-series": [("5a. Studio 10M-point series, first draw", "ms", 200),
                   ("5b. Studio 10M-point series, zoom", "ms", 200)],
    "studio-weight": [("6. Studio page weight", "bytes", 100_000)],
}

# A run row of the MLflow UI's runs table (an ag-grid row showing a run's name), and the
# metric charts of its run page (Plotly: a drawn trace is an svg path with a non-empty `d`).
RUN_ROW_VISIBLE = """() => [...document.querySelectorAll('.ag-row')]
    .some(r => r.getBoundingClientRect().height > 0 && /run-\\d{5}/.test(r.textContent))"""
CHARTS_IN_VIEW = 6  # the run page's charts in a 1400x900 viewport: two rows of three
CHARTS_DRAWN = """(n) => document.querySelectorAll('.js-plotly-plot').length >= n &&
    [...document.querySelectorAll('.js-plotly-plot')].slice(0, n)
      .every(p => [...p.querySelectorAll('path.js-line')]
        .some(l => (l.getAttribute('d') || '').length > 20))"""


# ---------------------------------------------------------------------------------------------
# The server and its REST API


def free_port():
    """A TCP port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(quiver, python, store, log_path):
    """Starts `quiver server` on `store` (its log to `log_path`) and waits for /health;
    returns (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [quiver, "server", "--host", "127.0.0.1", "--port", str(port), "--store", str(store),
         "--python", python],
        env={**os.environ, "QUIVER_LOG": os.environ.get("QUIVER_LOG", "warn")},
        stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"quiver server did not start (exit code {proc.poll()}), see {log_path}")
            time.sleep(0.1)


def start_mlflow(mlflow, root, log_path):
    """Starts the real `mlflow server` (one worker) on the sqlite store `root`/mlflow.db, in a
    process group of its own (it runs uvicorn as a child), and waits for /health; returns
    (process, base URL)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        [mlflow, "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=log, stderr=log, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=5).read()
            return proc, url
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, 9)
                sys.exit(f"mlflow server did not start (exit code {proc.poll()}), see {log_path}")
            time.sleep(0.2)


def stop_server(proc, group=False):
    """Stops the server (SIGTERM, then SIGKILL after 10 s); `group`: its whole process group
    (the one start_mlflow made for it)."""
    def signal(sig):
        if group:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        else:
            proc.send_signal(sig)

    if proc.poll() is None:
        signal(15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            signal(9)
            proc.wait()


class Api:
    """MLflow REST calls over one keep-alive connection per thread."""

    def __init__(self, url):
        self.netloc = urlsplit(url).netloc
        self.local = threading.local()

    def post(self, path, body):
        """POSTs `body` (a dict, or JSON text) to /api/2.0/mlflow/`path`; returns the answer."""
        data = body if isinstance(body, str) else json.dumps(body)
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection(self.netloc, timeout=300)
        conn.request("POST", f"/api/2.0/mlflow/{path}", data.encode(),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"POST {path}: {resp.status} {answer[:300]!r}")
        return json.loads(answer)

    def experiment(self, name):
        """Creates experiment `name` (suffixed with the time, so reruns never collide)."""
        answer = self.post("experiments/create", {"name": f"{name}-{time.time_ns()}"})
        return answer["experiment_id"]

    def run(self, experiment_id, name, tags=(), start=T0_MS):
        """Creates a run started at `start` (ms); returns its id."""
        body = {"experiment_id": experiment_id, "run_name": name, "start_time": start,
                "tags": [{"key": k, "value": v} for k, v in tags]}
        return self.post("runs/create", body)["run"]["info"]["run_id"]

    def finish(self, run_id, start=T0_MS):
        """Marks a run started at `start` FINISHED, a minute later."""
        self.post("runs/update",
                  {"run_id": run_id, "status": "FINISHED", "end_time": start + 60_000})


# ---------------------------------------------------------------------------------------------
# Data


def curve(rng, seed, step, scale):
    """A noisy decaying training curve: its value at `step` of a series of `scale` steps."""
    return (1.5 + seed % 7 / 10) * math.exp(-3 * step / scale) + 0.1 + 0.02 * rng.random()


def metric_batches(run_id, keys, steps, seed, per_request=1000):
    """log-batch bodies (JSON text) logging `keys` x range(`steps`) of run `run_id`, about
    `per_request` points each, steps in order."""
    rng = random.Random(seed)
    steps_per = max(1, per_request // len(keys))
    head = '{"run_id":"%s","metrics":[' % run_id
    for first in range(0, steps, steps_per):
        points = ['{"key":"%s","value":%.6g,"timestamp":%d,"step":%d}'
                  % (k, curve(rng, seed + i, s, steps), T0_MS + 100 * s, s)
                  for s in range(first, min(steps, first + steps_per)) for i, k in enumerate(keys)]
        yield head + ",".join(points) + "]}"


def populate_runs10k(api):
    """10,000 small runs in one experiment (3 params, 2 tags, 3 metrics each) for the runs
    table."""
    exp = api.experiment("bench-runs-10k")

    def one(i):
        start = T0_MS + 1000 * i
        rid = api.run(exp, f"run-{i:05d}", [("team", f"team-{i % 5}"), ("stage", "sweep")], start)
        api.post("runs/log-batch", {
            "run_id": rid,
            "params": [{"key": "lr", "value": str(0.001 * (1 + i % 10))},
                       {"key": "layers", "value": str(2 + i % 4)},
                       {"key": "optimizer", "value": ("adam", "sgd")[i % 2]}],
            "metrics": [{"key": k, "value": v, "timestamp": T0_MS + i, "step": 0}
                        for k, v in (("loss", 1 / (1 + i % 97)), ("accuracy", i % 101 / 100),
                                     ("f1", i % 89 / 89))]})
        api.finish(rid, start)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(10_000)))
    return {"experiment_id": exp}


def populate_run50(api):
    """One run with 50 metric keys of 300 steps each, for the run page."""
    exp = api.experiment("bench-run-50-metrics")
    rid = api.run(exp, "fifty-metrics")
    for body in metric_batches(rid, [f"metric_{k:02d}" for k in range(50)], 300, seed=50):
        api.post("runs/log-batch", body)
    api.finish(rid)
    return {"experiment_id": exp, "run_id": rid}


def populate_compare100(api):
    """100 runs, each 10 metrics x 10,000 steps (10M points), for the compare view."""
    exp = api.experiment("bench-compare-100")

    def one(i):
        rid = api.run(exp, f"cmp-{i:03d}")
        for body in metric_batches(rid, COMPARE_KEYS, 10_000, seed=i):
            api.post("runs/log-batch", body)
        api.finish(rid)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(100)))
    return {"experiment_id": exp}


def populate_big(api):
    """One run with one metric `big` of 10,000,000 steps (10,000 requests of 1000 points)."""
    exp = api.experiment("bench-big-series")
    rid = api.run(exp, "big-series")
    for body in metric_batches(rid, ["big"], 10_000_000, seed=7):
        api.post("runs/log-batch", body)
    api.finish(rid)
    return {"experiment_id": exp, "run_id": rid}


def populate_probe(api):
    """A run with one short metric: enough to see whether Studio has a compare view."""
    exp = api.experiment("bench-probe")
    rid = api.run(exp, "probe")
    for body in metric_batches(rid, ["probe"], 100, seed=1):
        api.post("runs/log-batch", body)
    return {"experiment_id": exp, "run_id": rid}


POPULATE = {"runs10k": populate_runs10k, "run50": populate_run50,
            "compare100": populate_compare100, "big": populate_big, "probe": populate_probe}


class Datasets:
    """The data sets logged into a store, remembered in `<dir>/datasets.json` so that a kept
    store is populated once."""

    def __init__(self, path, api):
        self.path = path
        self.api = api
        self.known = json.loads(path.read_text()) if path.exists() else {}

    def get(self, name):
        """The ids of data set `name`, logging it first if the store lacks it."""
        if name not in self.known:
            print(f"populating {name}...", flush=True)
            t = time.monotonic()
            self.known[name] = POPULATE[name](self.api)
            print(f"  {name}: {time.monotonic() - t:.1f} s", flush=True)
            self.path.write_text(json.dumps(self.known, indent=1))
        return self.known[name]


# ---------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Figure:
    """One row of the result table: measured values in `unit` and a target (<=)."""
    name: str
    unit: str
    target: float
    values: list = field(default_factory=list)
    errors: dict = field(default_factory=dict)  # "status METHOD url" -> count

    def row(self):
        """The table row: figure, median, min-max, target, met?"""
        if not self.values:
            return [self.name, "not yet measured", "-", f"<= {fmt(self.target, self.unit)}", "-"]
        med = statistics.median(self.values)
        span = f"{fmt(min(self.values), self.unit)}-{fmt(max(self.values), self.unit)}"
        return [self.name, fmt(med, self.unit), span, f"<= {fmt(self.target, self.unit)}",
                "yes" if med <= self.target else "no"]


def rows_of(name):
    """The empty Figures of figure `name` (see ROWS)."""
    return [Figure(label, unit, target) for label, unit, target in ROWS[name]]


def fmt(value, unit):
    """`value` for the table: ms as ms (or s above 10 s), bytes as KB."""
    if unit == "bytes":
        return f"{value / 1000:.1f} KB"
    return f"{value:.0f} ms" if value < 10_000 else f"{value / 1000:.2f} s"


class Browser:
    """Headless Chromium; each measurement gets a fresh context (empty cache)."""

    def __init__(self, playwright, base):
        self.browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                  args=CHROMIUM_ARGS)
        self.base = base

    def page(self, figure):
        """A new page in a new context; its responses >= 400 from the server are counted in
        `figure.errors`."""
        context = self.browser.new_context(viewport=VIEWPORT)
        page = context.new_page()

        def check(response):
            if response.url.startswith(self.base) and response.status >= 400:
                path = response.url[len(self.base):]
                what = f"{response.status} {response.request.method} {path}"
                figure.errors[what] = figure.errors.get(what, 0) + 1

        page.on("response", check)
        return page

    def close(self):
        """Closes Chromium."""
        self.browser.close()


def shoot(page, name, rep, until=None):
    """On the first repetition of a figure: screenshots it to SHOTS/<name>.png and, given the
    measured time `until` (ms since navigation start), prints where the time went."""
    if rep == 0:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"))
        if until is not None:
            print_timeline(page, until)


TIMELINE = """(until) => {
  const nav = performance.getEntriesByType('navigation')[0];
  const res = performance.getEntriesByType('resource').filter(r => r.startTime <= until);
  const api = res.filter(r => /\\/(ajax-)?api\\//.test(r.name));
  const rest = res.filter(r => !api.includes(r));
  return {
    dcl: nav.domContentLoadedEventEnd,
    assets: rest.length,
    assetBytes: rest.reduce((n, r) => n + r.encodedBodySize, 0),
    assetsEnd: Math.max(0, ...rest.map(r => r.responseEnd)),
    api: api.map(r => [r.startTime, r.responseEnd, new URL(r.name).pathname]),
  };
}"""


def print_timeline(page, until):
    """Prints the page's timeline up to `until` ms: DOMContentLoaded, the static assets
    (count, bytes, last byte) and each API request started before it (start, end)."""
    t = page.evaluate(TIMELINE, until)
    print(f"    timeline: DOMContentLoaded {t['dcl']:.0f} ms; {t['assets']} assets, "
          f"{t['assetBytes'] / 1000:.0f} KB, last byte at {t['assetsEnd']:.0f} ms; "
          f"{len(t['api'])} API requests:")
    for start, end, path in sorted(t["api"]):
        print(f"      {start:6.0f} -> {end:6.0f} ms ({end - start:4.0f} ms)  {path}")
    print(f"    measured: {until:.0f} ms")


def time_until(page, url, predicate, arg=None):
    """Opens `url` and returns performance.now() (ms since navigation start) of the first
    animation frame at which `predicate(arg)` holds in the page."""
    page.goto(url, wait_until="commit")
    page.wait_for_function(
        f"""(a) => {{ if (!({predicate})(a)) return false;
                      window.__benchT ??= performance.now(); return true; }}""",
        arg=arg, polling="raf", timeout=TIMEOUT_MS)
    return page.evaluate("window.__benchT")


def studio_timing(page, what, after=0, timeout=TIMEOUT_MS):
    """Waits for the (after+1)-th `{what, ms}` entry of window.studioTimings; returns its ms."""
    handle = page.wait_for_function(
        """([what, after]) => { const t = (window.studioTimings || []).filter(e => e.what === what);
             return t.length > after ? t[after].ms : null; }""",
        arg=[what, after], polling="raf", timeout=timeout)
    return handle.json_value()


def repeat(browser, figure, repeats, measure):
    """Runs `measure(page, rep)` in `repeats` fresh pages, adding the values it returns to
    `figure.values` and printing each."""
    for rep in range(repeats):
        page = browser.page(figure)
        try:
            value = measure(page, rep)
        finally:
            page.context.close()
        figure.values.append(value)
        print(f"  {figure.name} #{rep + 1}: {fmt(value, figure.unit)}", flush=True)


def bench_runs_table(browser, data, repeats):
    """Figure 1: the runs table of an experiment of 10,000 runs, until a run row is visible.
    The URL names the runs tab: `#/experiments/<id>` alone opens the GenAI overview in MLflow
    3.17's default (GenAI) workflow."""
    [fig] = rows_of("runs-table")
    url = f"{browser.base}/#/experiments/{data['runs10k']['experiment_id']}/runs"

    def measure(page, rep):
        ms = time_until(page, url, RUN_ROW_VISIBLE)
        shoot(page, "1-runs-table", rep, ms)
        return ms

    repeat(browser, fig, repeats, measure)
    return [fig]


def bench_run_metrics(browser, data, repeats):
    """Figure 2: the model-metrics tab of a run with 50 metrics, until the charts in view
    have drawn their lines (the tab renders charts lazily, as they scroll into view)."""
    [fig] = rows_of("run-metrics")
    d = data["run50"]
    url = f"{browser.base}/#/experiments/{d['experiment_id']}/runs/{d['run_id']}/model-metrics"

    def measure(page, rep):
        ms = time_until(page, url, CHARTS_DRAWN, CHARTS_IN_VIEW)
        shoot(page, "2-run-metrics", rep, ms)
        return ms

    repeat(browser, fig, repeats, measure)
    return [fig]


def compare_url(base, **params):
    """The URL of Studio's compare view with `params`."""
    return f"{base}/studio/#compare?" + "&".join(f"{k}={v}" for k, v in params.items())


def bench_compare(browser, data, repeats, figure, metrics, shot):
    """Figures 3 and 4: the compare view of the experiment's 100 runs with `metrics`, until
    compare-drawn."""
    [fig] = rows_of(figure)
    d = data["compare100"]
    url = compare_url(browser.base, experiment=d["experiment_id"], max=100,
                      metrics=",".join(metrics))

    def measure(page, rep):
        page.goto(url, wait_until="commit")
        ms = studio_timing(page, "compare-drawn")
        shoot(page, shot, rep, ms)
        return ms

    repeat(browser, fig, repeats, measure)
    return [fig]


def zoom(page):
    """Drags across 30%..60% of the first chart's last canvas (the contract's zoom gesture)."""
    box = page.locator("div.chart canvas:last-of-type").first.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.3 * box["width"], y)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.6 * box["width"], y, steps=5)
    page.mouse.up()


def bench_big_series(browser, data, repeats):
    """Figure 5: one 10M-point series; first draw (compare-drawn since navigation) and the
    zoom (zoom-drawn, from the mouseup)."""
    first, zoomed = rows_of("big-series")
    url = compare_url(browser.base, runs=data["big"]["run_id"], metrics="big")
    for rep in range(repeats):
        page = browser.page(first)
        try:
            page.goto(url, wait_until="commit")
            first.values.append(studio_timing(page, "compare-drawn"))
            shoot(page, "5-big-series", rep, first.values[-1])
            zoom(page)
            zoomed.values.append(studio_timing(page, "zoom-drawn"))
            shoot(page, "5-big-series-zoomed", rep)
        finally:
            page.context.close()
        print(f"  big series #{rep + 1}: first draw {fmt(first.values[-1], 'ms')}, "
              f"zoom {fmt(zoomed.values[-1], 'ms')}", flush=True)
    return [first, zoomed]


def bench_studio_weight(browser, data, repeats):
    """Figure 6: bytes of the responses for /studio/ and the assets it loads (not the API
    calls), on a cold load; the decoded body sizes (the wire size is printed too)."""
    [fig] = rows_of("studio-weight")

    def measure(page, rep):
        responses = []
        page.on("response", lambda r: responses.append(r)
                if r.request.resource_type not in ("fetch", "xhr") else None)
        page.goto(f"{browser.base}/studio/", wait_until="networkidle")
        shoot(page, "6-studio", rep)
        if rep == 0:
            for r in responses:
                print(f"    {len(r.body()):>7} B  {r.url[len(browser.base):]}")
            wire = sum(max(0, r.request.sizes()["responseBodySize"]) for r in responses)
            print(f"    wire (encoded) total: {wire} B")
        return sum(len(r.body()) for r in responses)

    repeat(browser, fig, repeats, measure)
    return [fig]


def compare_available(browser, probe):
    """Whether this binary's Studio has the compare view: the probe run's compare view must
    push `compare-drawn` within 30 s."""
    page = browser.page(Figure("probe", "ms", 0))
    try:
        page.goto(compare_url(browser.base, runs=probe["run_id"], metrics="probe"),
                  wait_until="commit")
        studio_timing(page, "compare-drawn", timeout=30_000)
        return True
    except Exception:  # Playwright's TimeoutError, or a page without the view
        return False
    finally:
        page.context.close()


BENCHES = {
    "runs-table": bench_runs_table,
    "run-metrics": bench_run_metrics,
    "compare-1": lambda b, d, n: bench_compare(b, d, n, "compare-1", ["m0"], "3-compare-1"),
    "compare-10": lambda b, d, n: bench_compare(
        b, d, n, "compare-10", COMPARE_KEYS, "4-compare-10"),
    "big-series": bench_big_series,
    "studio-weight": bench_studio_weight,
}


# ---------------------------------------------------------------------------------------------
# Main


def print_table(figures):
    """The result table, as Markdown."""
    rows = [["figure", "median", "min-max", "target", "met?"]] + [f.row() for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for n, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def print_errors(figures):
    """The server's answers >= 400 during the measurements, per figure."""
    for f in figures:
        for what, count in sorted(f.errors.items()):
            print(f"  {f.name}: {what} (x{count})")
    if not any(f.errors for f in figures):
        print("  none")


def run_benches(browser, datasets, names, repeats):
    """Populates what `names` need and measures them; returns the figures (Studio ones left
    unmeasured when the binary's Studio has no compare view)."""
    figures = []
    studio = [n for n in names if n in STUDIO_FIGURES]
    if studio and not compare_available(browser, datasets.get("probe")):
        print("studio compare view not available in this binary", flush=True)
        for n in studio:
            figures += rows_of(n)
        names = [n for n in names if n not in studio]
    for name in names:
        data = {d: datasets.get(d) for d in NEEDS[name]}
        print(f"measuring {name} (load average {os.getloadavg()[0]:.2f})...", flush=True)
        figures += BENCHES[name](browser, data, repeats)
    return figures


def print_ratio_table(quiver, mlflow):
    """Figures measured against both servers, as Markdown: both medians and their ratio."""
    rows = [["figure", "quiver median", "mlflow server median", "ratio quiver/mlflow"]]
    for q, m in zip(quiver, mlflow):
        if q.values and m.values:
            mq, mm = statistics.median(q.values), statistics.median(m.values)
            rows.append([q.name, fmt(mq, q.unit), fmt(mm, m.unit), f"{mq / mm:.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def measure_quiver(args, names):
    """Figures `names` against `quiver server`."""
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep_store or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        proc, url = start_server(args.quiver, args.python, root / "store", root / "server.log")
        try:
            datasets = Datasets(root / "datasets.json", Api(url))
            with sync_playwright() as p:
                browser = Browser(p, url)
                try:
                    return run_benches(browser, datasets, names, args.repeat)
                finally:
                    browser.close()
        finally:
            stop_server(proc)


def ui_page(name, base, data):
    """Figure `name` (runs-table or run-metrics) on the server at `base`: (URL, predicate,
    its argument, screenshot name), as bench_runs_table and bench_run_metrics measure it."""
    if name == "runs-table":
        url = f"{base}/#/experiments/{data['runs10k']['experiment_id']}/runs"
        return url, RUN_ROW_VISIBLE, None, "1-runs-table"
    d = data["run50"]
    url = f"{base}/#/experiments/{d['experiment_id']}/runs/{d['run_id']}/model-metrics"
    return url, CHARTS_DRAWN, CHARTS_IN_VIEW, "2-run-metrics"


def measure_against_mlflow(args, names):
    """Figures `names` (MLflow UI ones) against `quiver server` and the real `mlflow server`
    (one worker, its sqlite store kept in --mlflow-store and populated there once through the
    same REST calls), both up at once. Each figure starts with one unmeasured load on each
    server (mlflow server answers its first requests after a start slowly, ~2.5 s), then
    alternates: quiver, mlflow, quiver, ... so that both see the same machine load. Returns
    (quiver figures, mlflow figures)."""
    global SHOTS
    shots = {"quiver": SHOTS,
             "mlflow": Path(os.environ.get("BENCH_SHOTS_MLFLOW", "/tmp/bench-shots-mlflow"))}
    qroot = args.keep_store or Path(tempfile.mkdtemp(prefix="bench-ui-"))
    mroot = args.mlflow_store
    for root in (qroot, mroot):
        root.mkdir(parents=True, exist_ok=True)
    mlflow = args.mlflow or str(Path(args.python).parent / "mlflow")
    qproc, qurl = start_server(args.quiver, args.python, qroot / "store", qroot / "server.log")
    mproc = None
    try:
        t = time.monotonic()
        mproc, murl = start_mlflow(mlflow, mroot, mroot / "server.log")
        print(f"mlflow server up at {murl} in {time.monotonic() - t:.1f} s", flush=True)
        servers = {"quiver": (qurl, Datasets(qroot / "datasets.json", Api(qurl))),
                   "mlflow": (murl, Datasets(mroot / "datasets.json", Api(murl)))}
        result = {"quiver": [], "mlflow": []}
        with sync_playwright() as p:
            browsers = {k: Browser(p, url) for k, (url, _) in servers.items()}
            try:
                for name in names:
                    data = {k: {d: ds.get(d) for d in NEEDS[name]}
                            for k, (_, ds) in servers.items()}
                    print(f"measuring {name} (load average {os.getloadavg()[0]:.2f})...",
                          flush=True)
                    figs = {k: rows_of(name)[0] for k in servers}
                    for rep in range(-1, args.repeat):  # -1: the unmeasured warm-up load
                        for k, browser in browsers.items():
                            SHOTS = shots[k]
                            url, predicate, arg, shot = ui_page(name, browser.base, data[k])
                            page = browser.page(figs[k] if rep >= 0 else Figure("", "ms", 0))
                            try:
                                ms = time_until(page, url, predicate, arg)
                                if rep == 0:
                                    print(f"  {k} server, first repetition:", flush=True)
                                if rep >= 0:
                                    shoot(page, shot, rep, ms)
                            finally:
                                page.context.close()
                            if rep >= 0:
                                figs[k].values.append(ms)
                            print(f"  {k:6} {figs[k].name} "
                                  f"{'warm-up' if rep < 0 else '#' + str(rep + 1)}: "
                                  f"{fmt(ms, 'ms')}", flush=True)
                    print(f"  (load average {os.getloadavg()[0]:.2f})", flush=True)
                    for k in servers:
                        result[k].append(figs[k])
            finally:
                for browser in browsers.values():
                    browser.close()
    finally:
        stop_server(qproc)
        if mproc is not None:
            stop_server(mproc, group=True)
    return result["quiver"], result["mlflow"]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quiver", default="target/release/quiver", help="the quiver binary")
    parser.add_argument("--python", default=sys.executable,
                        help="Python whose mlflow package's UI the server serves")
    parser.add_argument("--repeat", type=int, default=5, help="measurements per figure")
    parser.add_argument("--only", choices=list(BENCHES), help="run one figure")
    parser.add_argument("--keep-store", type=Path,
                        help="keep the store (and what was logged) in this directory and reuse it")
    parser.add_argument("--against-mlflow", action="store_true",
                        help="measure the MLflow UI figures (1, 2) against quiver server and "
                             "the real `mlflow server` (alternating), and print both medians "
                             "and their ratio")
    parser.add_argument("--mlflow", help="the mlflow command (default: next to --python)")
    parser.add_argument("--mlflow-store", type=Path, default=Path("/var/tmp/bench-mlflow-store"),
                        help="the mlflow server's sqlite store, kept and reused")
    args = parser.parse_args()

    names = [args.only] if args.only else list(BENCHES)
    if args.against_mlflow:
        names = [n for n in names if n in MLFLOW_UI_FIGURES]
        if not names:
            sys.exit(f"--against-mlflow measures only {', '.join(MLFLOW_UI_FIGURES)}")
    if args.against_mlflow:
        figures, theirs = measure_against_mlflow(args, names)
    else:
        figures = measure_quiver(args, names)
    print("\nresponses >= 400 from quiver server during the measurements:")
    print_errors(figures)
    if args.against_mlflow:
        print("responses >= 400 from mlflow server during the measurements:")
        print_errors(theirs)
    print()
    print_table(figures)
    if args.against_mlflow:
        print("\nmlflow server:")
        print_table(theirs)
        print()
        print_ratio_table(figures, theirs)


if __name__ == "__main__":
    main()
