"""Quiver's metric segments are standard Parquet: pyarrow and DuckDB read them, and what they
read is what `quiver sql` answers for the same points.

Unlike the other tests, this one runs its own `quiver server` on a fresh store (the binary is
`$QUIVER_BIN`, which `cargo test -p quiver --test it compat` sets, else `target/debug/quiver`
or `target/release/quiver` of this workspace): it logs known points through the mlflow client,
stops the server with SIGTERM (a clean shutdown closes the store, which writes every buffered
point into a segment), then reads `<store>/metrics/*.parquet` directly.
"""

import json
import math
import os
import signal
import subprocess
from collections import defaultdict

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric
from quiver_process import quiver_bin, start_server, stop_server

T0 = 1_700_000_000_000
STEPS = 3000


def expected_points():
    """The points logged, by key: sorted lists of (step, timestamp, value)."""
    return {
        "loss": [(s, T0 + 100 * s, 1.0 / (s + 1)) for s in range(STEPS)],
        "acc": [(s, T0 + 100 * s, s / STEPS) for s in range(STEPS)],
        "eval_acc": [(s, T0 + 100 * s + 7, 0.5 + s / 10_000) for s in range(0, STEPS, 100)],
    }


@pytest.fixture
def flushed_store(tmp_path):
    """A store holding expected_points() in Parquet segments, closed; returns its directory and
    the run id."""
    store = tmp_path / "store"
    server, url = start_server(store)
    try:
        client = MlflowClient(tracking_uri=url)
        experiment_id = client.create_experiment("parquet-interop")
        run_id = client.create_run(experiment_id).info.run_id
        metrics = []
        for key, points in expected_points().items():
            for step, ts, value in points:
                m = Metric(key, value, ts, step)
                if key == "eval_acc":
                    m = Metric(key, value, ts, step, dataset_name="imdb", dataset_digest="d1")
                metrics.append(m)
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0, "the server did not shut down cleanly"
    finally:
        stop_server(server)
    return store, run_id


def quiver_sql(store, query):
    """`quiver sql QUERY --store STORE --format json`: the rows as dicts."""
    out = subprocess.run(
        [quiver_bin(), "sql", query, "--store", str(store), "--format", "json"],
        env={**os.environ, "QUIVER_LOG": "warn"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def series_keys(store, run_id):
    """The key of each `series_id` of the run's metrics, from the `metric_series` table."""
    rows = quiver_sql(store, f"SELECT series_id, key FROM metric_series WHERE run_id = '{run_id}'")
    return {r["series_id"]: r["key"] for r in rows}


def segments(store):
    files = sorted((store / "metrics").glob("*.parquet"))
    assert files, f"no Parquet segment under {store / 'metrics'}"
    return files


def test_pyarrow_reads_the_segments(flushed_store):
    store, run_id = flushed_store
    expected = expected_points()
    total = sum(len(p) for p in expected.values())

    rows = 0
    by_series = defaultdict(list)
    for path in segments(store):
        f = pq.ParquetFile(path)
        schema = f.schema_arrow
        assert schema.names == [
            "series_id",
            "step",
            "timestamp",
            "value",
            "model_id",
            "dataset_name",
            "dataset_digest",
        ]
        assert [schema.field(n).type for n in schema.names] == [
            pa.uint64(),
            pa.int64(),
            pa.int64(),
            pa.float64(),
            pa.string(),
            pa.string(),
            pa.string(),
        ]
        # The encodings Quiver writes, which pyarrow decodes below.
        meta = f.metadata
        column = {meta.schema.column(i).name: i for i in range(meta.num_columns)}
        encodings = meta.row_group(0).column(column["step"]).encodings
        assert "DELTA_BINARY_PACKED" in encodings, encodings
        assert "BYTE_STREAM_SPLIT" in meta.row_group(0).column(column["value"]).encodings
        assert meta.row_group(0).column(column["value"]).compression == "ZSTD"
        assert b"quiver.series" in meta.metadata
        table = f.read()
        rows += table.num_rows
        d = table.to_pydict()
        for i in range(table.num_rows):
            by_series[d["series_id"][i]].append(
                (d["step"][i], d["timestamp"][i], d["value"][i], d["dataset_name"][i])
            )
    assert rows == total

    # Each series is one key's points (`metric_series` names them), sorted by step, values bit
    # for bit; the dataset reference of `eval_acc` is in its string column.
    key_of = series_keys(store, run_id)
    assert sorted(key_of[i] for i in by_series) == sorted(expected)
    for series_id, points in by_series.items():
        key = key_of[series_id]
        assert [p[:3] for p in points] == expected[key], key
        assert {p[3] for p in points} == {"imdb" if key == "eval_acc" else None}, key

    # `quiver sql` answers the same rows for the same series.
    loss = quiver_sql(
        store,
        f"SELECT step, timestamp, value FROM metrics "
        f"WHERE run_id = '{run_id}' AND key = 'loss' ORDER BY step",
    )
    assert [(r["step"], r["timestamp"], r["value"]) for r in loss] == expected["loss"]


def test_duckdb_reads_the_segments(flushed_store):
    store, run_id = flushed_store
    files = [str(p) for p in segments(store)]
    con = duckdb.connect()
    count, total = con.execute(
        "SELECT count(*), sum(value) FROM read_parquet(?)", [files]
    ).fetchone()
    answer = quiver_sql(store, "SELECT count(*) AS n, sum(value) AS total FROM metrics")[0]
    expected = expected_points()
    assert count == answer["n"] == sum(len(p) for p in expected.values())
    exact = math.fsum(v for points in expected.values() for _, _, v in points)
    assert total == pytest.approx(exact, rel=1e-12)
    assert answer["total"] == pytest.approx(exact, rel=1e-12)

    # Per key: DuckDB groups the files by series_id and names the series through
    # `metric_series`; quiver sql groups its `metrics` table by key. The same figures.
    con.execute("CREATE TABLE series (series_id UBIGINT, key VARCHAR)")
    con.executemany("INSERT INTO series VALUES (?, ?)", list(series_keys(store, run_id).items()))
    duck = con.execute(
        "SELECT s.key, count(*), sum(value), min(step), max(step), max(timestamp), "
        "       count(dataset_name) "
        "FROM read_parquet(?) JOIN series s USING (series_id) GROUP BY s.key ORDER BY s.key",
        [files],
    ).fetchall()
    ours = quiver_sql(
        store,
        f"SELECT key, count(*) AS n, sum(value) AS total, min(step) AS lo, max(step) AS hi, "
        f"       max(timestamp) AS ts, count(dataset_name) AS ds "
        f"FROM metrics WHERE run_id = '{run_id}' GROUP BY key ORDER BY key",
    )
    assert [row[0] for row in duck] == [r["key"] for r in ours] == sorted(expected)
    for (key, n, t, lo, hi, ts, ds), r in zip(duck, ours):
        assert (n, lo, hi, ts, ds) == (r["n"], r["lo"], r["hi"], r["ts"], r["ds"]), key
        assert t == pytest.approx(r["total"], rel=1e-12), key
        assert n == len(expected[key])
        assert ds == (n if key == "eval_acc" else 0)
