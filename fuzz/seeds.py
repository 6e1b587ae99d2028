#!/usr/bin/env python3
"""Writes a small seed corpus for the fuzz targets into fuzz/corpus/<target>/ (standard library only).

The seeds are valid inputs of each format, so the fuzzer starts past the magic numbers and CRC checks instead of
having to find them. The `op_decode` seeds are the records of the committed sample store's WAL
(store/tests/data/format-1, written by the store); the WAL and checkpoint framing is built here
from store/src/wal/record.rs and store/src/catalog/checkpoint.rs. Re-run after a format change;
existing files are overwritten, others are kept.

    python3 seeds.py          # from fuzz/

The `segment` seeds are real segments written by the store's own writer (the `segment_seeds`
example of quiver-store, run here through cargo); the `wire_request` seeds are a selector byte
(the route's index in server/src/routes/decoders.rs, `ALL`) followed by a valid body or query.
"""

import json
import os
import struct
import subprocess
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# --- WAL frames: [len u32 LE][crc32 u32 LE][lsn u64 LE][payload], crc over lsn + payload ---------
def frame(lsn, payload):
    body = struct.pack("<Q", lsn) + payload
    return struct.pack("<II", len(payload), zlib.crc32(body)) + body


# --- op payloads: the records of the committed sample store's WAL -------------------------------
# store/tests/data/format-1 is written by the store itself (store/src/store/format_sample.rs) and
# its WAL holds every `Op` variant, so the seeds come from the real encoder, not a second one here.
SAMPLE_WAL = os.path.join(HERE, "..", "store", "tests", "data", "format-1", "wal")
WAL_MAGIC = b"QVWAL\x00\x00\x01"  # MAGIC in store/src/wal/record.rs


def sample_records():
    """(lsn, payload) of every frame of the sample WAL, checked against its CRC."""
    records = []
    for name in sorted(os.listdir(SAMPLE_WAL)):
        with open(os.path.join(SAMPLE_WAL, name), "rb") as f:
            data = f.read()
        assert data.startswith(WAL_MAGIC), name
        at = len(WAL_MAGIC)
        while at + 16 <= len(data):
            length, crc = struct.unpack_from("<II", data, at)
            body = data[at + 8:at + 16 + length]
            assert zlib.crc32(body) == crc, (name, at)
            records.append((struct.unpack_from("<Q", body)[0], body[8:]))
            at += 16 + length
    return records


# --- catalog base checkpoint: magic, lsn, entries [tree u8][klen u32][vlen u32][k][v], 0xff,
# --- count u64, crc32 of everything before it ------------------------------------------------------
CKPT_MAGIC = b"QVCKPT\x00\x01"
TREES = 29  # len(TREES) in store/src/catalog/kv.rs


def checkpoint(lsn, entries):
    body = CKPT_MAGIC + struct.pack("<Q", lsn)
    for t, k, v in entries:
        body += struct.pack("<BII", t, len(k), len(v)) + k + v
    body += b"\xff" + struct.pack("<Q", len(entries))
    return body + struct.pack("<I", zlib.crc32(body))


PATHS = [
    "", ".", "a", "a/b.txt", "./a//b/", "model/weights.bin", "...", "a..b", "../x", "a/../b",
    "/abs", "a\\b", "C:foo", "x/c:/y", "a\x00b", "é/ü/😀", "a" * 255, "a" * 256 + "/b",
]


FILTERS = [
    "metrics.acc > 0.5 and params.lr = '0.01'",
    "tags.`mlflow.runName` LIKE 'a%' AND attributes.status != \"FAILED\"",
    "params.\"opt name\" IS NOT NULL and tag.t IS NULL",
    "run_id NOT IN ('a', 'b') and datasets.context IN ('train')",
    "attributes.start_time >= 1700000000000 AND end_time < -1e3",
    "name ILIKE '%x_%' and experiment_id IN ('0') and creation_time > 5",
    "metrics.`val loss` DESC",
    "a = 'b' OR c = 'd'",
    "name LIKE 'fraud%' AND tag.`mlflow.prompt.is_prompt` != 'true'",
    "version_number >= 2 AND run_id IN ('r1', 'r2') AND source_path = 's3://b'",
    "metrics.acc > 0.5 AND status = 'LOGGED_MODEL_READY' AND params.alpha != '1'",
]


# --- wire_request: [route index u8][JSON body or query string] ------------------------------------
# The order of `ALL` in server/src/routes/decoders.rs; the index one past the end is the log-batch
# body path.
WIRE = [
    ("runs/create", {"experiment_id": "0", "run_name": "r", "start_time": 1700000000000,
                     "tags": [{"key": "mlflow.user", "value": "u"}]}, None),
    ("runs/update", {"run_id": "abc", "status": "FINISHED", "end_time": "1700000000001"}, None),
    ("runs/set-tag", {"run_uuid": "abc", "key": "k", "value": "v"}, None),
    ("runs/log-metric", {"run_id": "abc", "key": "loss", "value": "NaN", "timestamp": 1,
                         "step": "3", "dataset_name": "train"}, None),
    ("runs/log-batch", {"run_id": "abc", "metrics": [{"key": "m", "value": 1.5, "timestamp": 2}],
                        "params": [{"key": "lr", "value": "0.1"}], "tags": []}, None),
    ("runs/log-inputs", {"run_id": "abc", "datasets": [{"tags": [{"key": "k", "value": "v"}],
                         "dataset": {"name": "d", "digest": "x", "source_type": "local",
                                     "source": "{}", "schema": "{}"}}],
                         "models": [{"model_id": "m-1"}]}, None),
    ("runs/outputs", {"run_id": "abc", "models": [{"model_id": "m-1", "step": 4}]}, None),
    ("runs/search", {"experiment_ids": ["0", "1"], "filter": "metrics.loss < 0.5",
                     "run_view_type": "ALL", "max_results": 10, "order_by": ["start_time DESC"]},
     None),
    ("runs/get", None, "run_id=abc"),
    ("experiments/create", {"name": "e", "artifact_location": "/tmp/a",
                            "tags": [{"key": "k", "value": "v"}]}, None),
    ("experiments/search", {"max_results": 5, "view_type": 3, "filter": "name LIKE 'e%'"},
     "max_results=5&view_type=ACTIVE_ONLY&order_by=name&order_by=creation_time+DESC"),
    ("metrics/get-history", None, "run_id=abc&metric_key=loss&max_results=25&page_token=x"),
    ("metrics/get-history-bulk-interval", None,
     "run_ids=a&run_ids=b&metric_key=loss&start_step=0&end_step=100&max_results=50"),
    ("metrics/get-history-bulk", None, "run_id=a&run_id=b&metric_key=val%2Floss&max_results=10"),
    ("logged-models (create)", {"experiment_id": "0", "name": "m", "model_type": "agent",
                                "params": [{"key": "p", "value": "1"}]}, None),
    ("logged-models (finalize)", {"status": "LOGGED_MODEL_READY"}, None),
    ("logged-models/params", {"params": [{"key": "a", "value": "b"}]}, None),
    ("logged-models/tags", {"tags": [{"key": "a", "value": "b"}]}, None),
    ("logged-models/search", {"experiment_ids": ["0"], "filter": "metrics.acc > 0.1",
                              "datasets": [{"dataset_name": "d", "dataset_digest": "x"}],
                              "order_by": [{"field_name": "creation_time", "ascending": False}],
                              "max_results": 5}, None),
    ("logged-models/artifacts/directories", None, "artifact_directory_path=dir%2Fsub"),
    ("registered-models/search", {"filter": "name = 'm'", "max_results": 10,
                                  "order_by": ["name ASC"]}, None),
    ("model-versions/create", {"name": "m", "source": "runs:/abc/model", "run_id": "abc",
                               "tags": [{"key": "k", "value": "v"}]}, None),
    ("model-versions/search", None, "filter=name%3D%27m%27&max_results=3"),
    ("deployments (create)", {"name": "d", "model_name": "m", "version": "1",
                              "target": "local"}, None),
    ("mlflow-artifacts/artifacts", None, "path=a%2Fb"),
    ("artifacts/list", None, "run_id=abc&path=dir&page_token=t"),
    ("get-artifact", None, "run_id=abc&path=dir%2Ffile.txt"),
    ("upload-artifact", None, "run_uuid=abc&path=dir%2Ffile.txt"),
    ("experiments/search-datasets", {"experiment_ids": ["0", "7"]}, None),
]


def wire_seeds():
    for i, (route, body, query) in enumerate(WIRE):
        name = route.replace("/", "-").replace(" ", "").replace("(", "-").replace(")", "")
        if body is not None:
            write("wire_request", "%02d-%s-body" % (i, name), bytes([i]) + json.dumps(body).encode())
        if query is not None:
            write("wire_request", "%02d-%s-query" % (i, name), bytes([i]) + query.encode())
    batch = {"run_id": "abc",
             "metrics": [{"key": "loss", "value": "NaN", "timestamp": "5", "step": 2},
                         {"key": "acc", "value": 1, "timestamp": 6, "modelId": "m-1"}],
             "params": [{"key": "lr", "value": "0.1"}], "tags": [{"key": "t", "value": "v"}]}
    write("wire_request", "%02d-log-batch-fast" % len(WIRE), bytes([len(WIRE)]) + json.dumps(batch).encode())
    legacy = json.dumps(json.dumps({"run_uuid": "abc", "metrics": []}))
    write("wire_request", "%02d-log-batch-legacy" % len(WIRE), bytes([len(WIRE)]) + legacy.encode())


def segment_seeds():
    """Real segments, from the store's own writer (needs cargo)."""
    out = os.path.join(HERE, "corpus", "segment")
    subprocess.run(["cargo", "run", "-q", "-p", "quiver-store", "--features", "fuzzing",
                    "--example", "segment_seeds", "--", out],
                   cwd=os.path.dirname(HERE), check=True)


def main():
    wire_seeds()
    segment_seeds()
    records = sample_records()
    for lsn, payload in records:
        write("op_decode", "wal-%04d" % lsn, payload)
    ops = [(lsn, payload) for lsn, payload in records]

    write("wal_frames", "empty-payload", frame(1, b""))
    write("wal_frames", "one", frame(1, ops[1][1]))
    write("wal_frames", "consecutive", b"".join(frame(10 + i, p) for i, (_, p) in enumerate(ops)))
    with open(os.path.join(SAMPLE_WAL, sorted(os.listdir(SAMPLE_WAL))[0]), "rb") as f:
        write("wal_frames", "sample-segment", f.read()[len(WAL_MAGIC):])
    write("wal_frames", "increasing-gap", frame(5, b"a") + frame(9, b"bc") + frame(20, b""))
    write("wal_frames", "torn-tail", frame(1, b"abc") + frame(2, b"defg")[:-2])

    write("checkpoint", "empty", checkpoint(0, []))
    write("checkpoint", "one", checkpoint(7, [(0, b"version", b"\x01")]))
    write("checkpoint", "all-trees", checkpoint(
        123, [(t, b"key-%d" % t, bytes(range(t * 3))) for t in range(TREES)]))

    for i, p in enumerate(PATHS):
        write("artifact_path", "%02d" % i, p.encode())

    for i, f in enumerate(FILTERS):
        write("search_filter", "%02d" % i, f.encode())


if __name__ == "__main__":
    main()
