#!/usr/bin/env bash
# Import from, and export to, a running `mlflow server`: points per second and the MLflow
# server's CPU seconds (user + system of all its processes, from /proc).
#
#   benches/import/mlflow_server_bench.sh VENV QUIVER SOURCE_DB WORKDIR
#
# VENV: a venv with the full mlflow (its bin/mlflow starts the server); QUIVER: the quiver
# binary; SOURCE_DB: an MLflow SQLite database to serve as the source (e.g. 20 runs x 50,000
# points logged with MlflowClient.log_batch); WORKDIR: scratch space (emptied).
# The servers run with mlflow's default 4 workers.
set -euo pipefail
VENV=$1 QUIVER=$2 SOURCE_DB=$3 WORK=$4
rm -rf "$WORK" && mkdir -p "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cpu() { # CPU seconds of process group $1
  local tck tot=0 u s
  tck=$(getconf CLK_TCK)
  for p in $(pgrep -g "$1"); do
    read -r u s < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null) || continue
    tot=$((tot + u + s))
  done
  echo "scale=1; $tot / $tck" | bc
}
serve() { # serve() DB ARTIFACTS PORT LOG: starts mlflow server in its own process group
  setsid "$VENV/bin/mlflow" server --backend-store-uri "sqlite:///$1" --artifacts-destination "$2" \
    --host 127.0.0.1 --port "$3" >"$4" 2>&1 &
  local pid=$!
  for _ in $(seq 1 120); do
    curl -sf "http://127.0.0.1:$3/health" >/dev/null && { echo "$pid"; return; }
    sleep 0.5
  done
  echo "mlflow server did not start (see $4)" >&2; exit 1
}
cp "$SOURCE_DB" "$WORK/source.db"
P1=$(free_port); S1=$(serve "$WORK/source.db" "$WORK/source-arts" "$P1" "$WORK/source.log")
P2=$(free_port); S2=$(serve "$WORK/target.db" "$WORK/target-arts" "$P2" "$WORK/target.log")
trap 'kill -- -$S1 -$S2 2>/dev/null || true' EXIT
echo "load before: $(cat /proc/loadavg)"

a=$(cpu "$S1")
/usr/bin/time -f "import: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  env QUIVER_LOG=warn "$QUIVER" import mlflow --from "http://127.0.0.1:$P1" --store "$WORK/store" 2>&1 \
  | tr '\r' '\n' | grep -E "^imported [0-9]+ runs|^verified|import:"
b=$(cpu "$S1"); echo "source mlflow server CPU during the import: $(echo "$b - $a" | bc) s"

a=$(cpu "$S2")
/usr/bin/time -f "export: %e s wall, %U s user, %S s sys, %M KB max RSS" \
  env QUIVER_LOG=warn "$QUIVER" export mlflow --to "http://127.0.0.1:$P2" --store "$WORK/store" --jobs 4 2>&1 \
  | tr '\r' '\n' | grep -E "^exported|^verified|export:"
b=$(cpu "$S2"); echo "target mlflow server CPU during the export: $(echo "$b - $a" | bc) s"
echo "load after: $(cat /proc/loadavg)"
