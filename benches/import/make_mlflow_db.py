"""Writes an MLflow tracking database for the import bench: RUNS runs in one experiment, each
with KEYS metrics of STEPS points (RUNS * KEYS * STEPS points in all), 5 params and the tags the
mlflow client sets. The schema is made by mlflow itself (one run logged through its SQL store);
the bulk rows are then inserted with sqlite3 in the same shape (`is_nan`, the primary key), far
faster than through the client.

    python make_mlflow_db.py /var/tmp/import-bench/mlflow.db --runs 1000 --keys 10 --steps 1000
"""

import argparse
import math
import sqlite3
import uuid

import mlflow
from mlflow import MlflowClient


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    client = MlflowClient(tracking_uri=f"sqlite:///{a.path}")
    exp = client.create_experiment("import-bench")
    seed = client.create_run(exp, run_name="seed").info.run_id  # makes the schema
    client.log_metric(seed, "m", 1.0)
    db = sqlite3.connect(a.path)
    for r in range(a.runs):
        rid = uuid.uuid4().hex
        db.execute("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name,"
                   " user_id, status, start_time, end_time, source_version, lifecycle_stage,"
                   " artifact_uri, experiment_id) VALUES (?, ?, 'LOCAL', '', '', 'bench',"
                   " 'FINISHED', ?, ?, '', 'active', ?, ?)",
                   (rid, f"run-{r}", 1_700_000_000_000 + r, 1_700_000_100_000 + r,
                    f"mlflow-artifacts:/{exp}/{rid}/artifacts", int(exp)))
        db.executemany("INSERT INTO params (key, value, run_uuid) VALUES (?, ?, ?)",
                       [(f"p{i}", str(i * r), rid) for i in range(5)])
        db.execute("INSERT INTO tags (key, value, run_uuid) VALUES ('mlflow.runName', ?, ?)",
                   (f"run-{r}", rid))
        rows = ((f"metric_{k}", math.sin(s / 50 + k) + s / a.steps, 1_700_000_000_000 + s, rid, s, 0)
                for k in range(a.keys) for s in range(a.steps))
        db.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan)"
                       " VALUES (?, ?, ?, ?, ?, ?)", rows)
        if r % 100 == 99:
            db.commit()
    db.commit()
    n = db.execute("SELECT count(*) FROM metrics").fetchone()[0]
    print(f"{a.path}: {a.runs + 1} runs, {n} metric points")


if __name__ == "__main__":
    mlflow.set_tracking_uri("")  # only the explicit URI above
    main()
