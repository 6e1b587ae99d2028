#!/usr/bin/env bash
# Figures of `quiver run` (issue 13), against a release `quiver server`:
#  1. the source snapshot of a 2,000-file, 300 MB tree: the first time, then unchanged
#     (seconds, and bytes the store grew by: the second time should add only the manifest);
#  2. the overhead of `quiver run` on a command that does nothing (median of 10), with and
#     without the snapshot, against the bare command.
# Usage: benches/run/run_bench.sh [path/to/quiver]   (default: target/release/quiver)
set -euo pipefail
Q=$(realpath "${1:-${CARGO_TARGET_DIR:-target}/release/quiver}")
WORK=${WORK:-/var/tmp/quiver-run-bench}
rm -rf "$WORK"
mkdir -p "$WORK/src" "$WORK/empty"
python3 - "$WORK/src" <<'PY'
import os, sys
root = sys.argv[1]
for i in range(2000):  # 2,000 files of 150,000 random bytes: 300 MB, the default limits
    d = os.path.join(root, f"pkg{i % 40}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i}.bin"), "wb") as f:
        f.write(os.urandom(150_000))
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$Q" server --host 127.0.0.1 --port "$PORT" --store "$WORK/store" > "$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
URL="http://127.0.0.1:$PORT"
for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done
store_bytes() { du -sb "$WORK/store" | cut -f1; }
now() { date +%s.%N; }
snapshot() {
  local before t0 t1 after
  before=$(store_bytes); t0=$(now)
  (cd "$WORK/src" && "$Q" run --url "$URL" --experiment bench --system-metrics-interval 0 -- true 2>/dev/null)
  t1=$(now); sync; after=$(store_bytes)
  printf '%s: %.2f s, store +%s bytes\n' "$1" "$(echo "$t1 - $t0" | bc)" "$((after - before))"
}
snapshot "snapshot of 2,000 files / 300 MB, first time"
snapshot "same tree unchanged, second time"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_of() {
  for _ in $(seq 10); do
    local t0 t1; t0=$(now); (cd "$WORK/empty" && "$@" >/dev/null 2>&1); t1=$(now)
    echo "$t1 - $t0" | bc
  done | median
}
echo "bare 'true': $(time_of true) s"
echo "quiver run -- true: $(time_of "$Q" run --url "$URL" --experiment overhead -- true) s"
echo "quiver run --no-snapshot --system-metrics-interval 0 -- true: $(time_of "$Q" run --url "$URL" --experiment overhead --no-snapshot --system-metrics-interval 0 -- true) s"
