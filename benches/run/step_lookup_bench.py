"""`quiver run --reuse`'s lookup at 100,000 runs, over HTTP against a running `quiver server`:
the step-key index (`GET /api/2.0/quiver/runs/by-step-key`) against the same question asked as
a search (`runs/search` with `tags.quiver.step.key = '...'`). Prints medians of 200 lookups.

Usage: python3 benches/run/step_lookup_bench.py http://127.0.0.1:5000 [runs]
"""

import hashlib
import json
import statistics
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

URL = sys.argv[1].rstrip("/")
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000


def call(path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(URL + path, data=data,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def key(i):
    return hashlib.sha256(str(i).encode()).hexdigest()


exp = call("/api/2.0/mlflow/experiments/create", {"name": f"lookup-{time.time()}"})["experiment_id"]


def create(i):
    call("/api/2.0/mlflow/runs/create", {
        "experiment_id": exp, "start_time": i,
        "tags": [{"key": "quiver.step.key", "value": key(i)}]})


t0 = time.time()
with ThreadPoolExecutor(8) as pool:
    list(pool.map(create, range(RUNS)))
print(f"created {RUNS} runs in {time.time() - t0:.1f} s")


def timed(f, n=200):
    times = []
    for j in range(n):
        i = (j * 7919) % RUNS
        t = time.perf_counter()
        found = f(i)
        times.append(time.perf_counter() - t)
        assert found == 1, found
    return statistics.median(times) * 1000


search = lambda i: len(call("/api/2.0/mlflow/runs/search", {
    "experiment_ids": [exp], "max_results": 10,
    "filter": f"tags.`quiver.step.key` = '{key(i)}'"})["runs"])
probe = lambda i: len(call(f"/api/2.0/quiver/runs/by-step-key?key={key(i)}")["runs"])
search(0)  # the first search builds the experiment's run index: not measured
print(f"index probe (runs/by-step-key): median {timed(probe):.2f} ms")
print(f"search filter (runs/search):    median {timed(search):.2f} ms")
