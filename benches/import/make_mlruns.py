"""Writes an MLflow file store (`mlruns/`) for the import bench: RUNS runs in one experiment,
each with KEYS metrics of STEPS points (RUNS * KEYS * STEPS points in all), 5 params and the
tags the mlflow client sets. The experiment and one seed run are made by mlflow's own file store
(its meta.yaml layout); the bulk runs are then written in the same layout (meta.yaml, params/,
tags/, one `<timestamp> <value> <step>` line per point in metrics/), far faster than through
the client, which opens and appends to a file per point.

    MLFLOW_ALLOW_FILE_STORE=true python make_mlruns.py /var/tmp/import-bench/mlruns --runs 1000 --keys 10 --steps 1000
"""

import argparse
import math
import os
import uuid
from pathlib import Path

import mlflow
from mlflow import MlflowClient


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=10)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    root = Path(a.path).resolve()
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=root.as_uri())
    exp = client.create_experiment("import-bench")
    seed = client.create_run(exp, run_name="seed").info.run_id
    client.log_metric(seed, "m", 1.0)
    client.log_param(seed, "p", "1")
    client.set_terminated(seed)
    # The seed run's meta.yaml is the template of the others: only ids, names, times change.
    template = (root / exp / seed / "meta.yaml").read_text()
    points = 1
    for r in range(a.runs):
        rid = uuid.uuid4().hex
        run = root / exp / rid
        for d in ("metrics", "params", "tags", "artifacts"):
            (run / d).mkdir(parents=True)
        meta = []
        for line in template.splitlines():
            k = line.split(":", 1)[0]
            v = {"run_id": rid, "run_uuid": rid, "run_name": f"run-{r}",
                 "start_time": str(1_700_000_000_000 + r), "end_time": str(1_700_000_100_000 + r),
                 "user_id": "bench",
                 "artifact_uri": (run / "artifacts").as_uri()}.get(k)
            meta.append(line if v is None else f"{k}: {v}")
        (run / "meta.yaml").write_text("\n".join(meta) + "\n")
        for i in range(5):
            (run / "params" / f"p{i}").write_text(str(i * r))
        (run / "tags" / "mlflow.runName").write_text(f"run-{r}")
        for k in range(a.keys):
            with open(run / "metrics" / f"metric_{k}", "w") as f:
                f.write("".join(f"{1_700_000_000_000 + s} {math.sin(s / 50 + k) + s / a.steps!r} {s}\n"
                                for s in range(a.steps)))
            points += a.steps
    print(f"{root}: {a.runs + 1} runs, {points} metric points")


if __name__ == "__main__":
    mlflow.set_tracking_uri("")  # only the explicit URI above
    main()
