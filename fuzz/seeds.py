#!/usr/bin/env python3
"""Writes a small seed corpus for the fuzz targets into fuzz/corpus/<target>/ (standard library only).

The seeds are valid inputs of each format, built here from the format descriptions in the store
(store/src/wal/record.rs, store/src/catalog/checkpoint.rs, store/src/ops.rs,
store/src/artifact_path.rs), so the fuzzer starts past the magic numbers and CRC checks instead of
having to find them. Re-run after a format change; existing files are overwritten, others are kept.

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


# --- postcard (serde) encoding of ops, enough for a few variants ---------------------------------
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return varint((n << 1) ^ (n >> 63) if n < 0 else n << 1)


def s(text):
    b = text.encode()
    return varint(len(b)) + b


def seq(items):
    return varint(len(items)) + b"".join(items)


def tag(k, v):
    return s(k) + s(v)


# Variant indices follow the declaration order of `enum Op` in store/src/ops.rs.
OPS = {
    "create_experiment": varint(0) + varint(1) + s("exp") + s("file:///tmp/a")
    + seq([tag("team", "ml")]) + zigzag(1_700_000_000_000),
    "rename_experiment": varint(1) + varint(7) + s("renamed") + zigzag(1_700_000_000_001),
    "set_experiment_stage": varint(2) + varint(7) + varint(1) + zigzag(-5),
    "set_experiment_tag": varint(3) + varint(7) + tag("k", "v") + zigzag(3),
    "delete_experiment_tag": varint(4) + varint(7) + s("k") + zigzag(3),
    "update_run": varint(6) + s("0123456789abcdef") + b"\x00" + b"\x01" + zigzag(42)
    + b"\x01" + s("name"),
    "set_run_stage": varint(7) + s("r1") + varint(0) + zigzag(9),
    "log_batch": varint(8) + s("r1")
    + seq([s("loss") + varint(3) + b"\x01", s("acc") + varint(4) + b"\x00"])
    + seq([
        varint(0) + struct.pack("<d", 0.5) + zigzag(10) + zigzag(1) + varint(0),
        varint(1) + struct.pack("<d", float("nan")) + zigzag(11) + zigzag(2) + varint(1),
    ])
    + seq([b"\x01" + s("model-1") + b"\x00" + b"\x01" + s("digest")])
    + seq([tag("lr", "0.01")])
    + seq([tag("mlflow.runName", "r")]),
    "delete_run_tag": varint(9) + s("r1") + s("k"),
    "delete_artifacts": varint(12) + s("model/weights"),
    # LoggedModel(LoggedModelChange { model_id, record, set_tags, delete_tags, params })
    "logged_model": varint(13) + s("m-1")
    + varint(0) + s("model") + s("mlflow-artifacts:/0/models/m-1/artifacts") + varint(1)
    + s("") + s("sklearn") + s("r1") + zigzag(5) + zigzag(6) + b"\x00"
    + seq([tag("team", "risk")]) + seq([s("old")]) + seq([tag("alpha", "0.5")]),
    "run_models": varint(14) + s("r1") + seq([s("m-1")]) + seq([s("m-2") + zigzag(3)]),
    # Registry { changes: [PutAlias { id, alias, version }], events: [EventRecord] }
    "registry": varint(15)
    + seq([varint(8) + varint(0) + s("champion") + varint(2)])
    + seq([varint(0) + varint(1) + zigzag(7) + s("alice") + s("set_alias") + s("fraud")
           + b"\x01" + s("2") + b"\x01" + s("champion") + b"\x00" + b"\x01" + s("2")]),
}

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
    ops = list(OPS.items())
    for name, payload in ops:
        write("op_decode", name, payload)

    write("wal_frames", "empty-payload", frame(1, b""))
    write("wal_frames", "one", frame(1, ops[1][1]))
    write("wal_frames", "consecutive", b"".join(frame(10 + i, p) for i, (_, p) in enumerate(ops)))
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
