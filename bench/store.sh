#!/usr/bin/env bash
# Accept throughput and latency of the durable SQLite store against the
# in-memory queue: same machine, same run, runs alternated, medians printed.
# The server is pinned to CPU 0 and the load generator (webhookd send) to
# CPU 1 when the machine has two or more.
#
#   bench/store.sh                      # 3 runs x 20000 push deliveries, 64 senders
#   RUNS=5 COUNT=50000 CONCURRENCY=32 bench/store.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
COUNT=${COUNT:-20000}
CONCURRENCY=${CONCURRENCY:-64}
PAYLOAD=${PAYLOAD:-tests/fixtures/github-payloads/push/payload.json}
EVENT=${EVENT:-push}
PORT=${PORT:-18199}

cargo build --release --quiet
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/webhookd
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

server_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi

export WEBHOOKD_SECRET=bench-secret WEBHOOKD_LISTEN=127.0.0.1:$PORT RUST_LOG=warn
run_one() { # store label
  rm -rf "$work/data"
  (cd "$work" && WEBHOOKD_STORE=$1 exec "${server_cpu[@]}" "$bin" serve) >"$work/server.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.05; done
  "${load_cpu[@]}" "$bin" send "$PAYLOAD" --event "$EVENT" --count "$COUNT" --concurrency "$CONCURRENCY" --json \
    | sed "s/^/$2 /" >>"$work/results"
  kill -TERM "$pid" && wait "$pid"
}
for _ in $(seq "$RUNS"); do
  run_one memory memory
  run_one "sqlite:./data/webhookd.db" sqlite
done

python3 - "$work/results" "$COUNT" "$CONCURRENCY" "$PAYLOAD" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    store, data = line.split(" ", 1)
    rows.setdefault(store, []).append(json.loads(data))
print(f"{sys.argv[2]} deliveries of {sys.argv[4]}, {sys.argv[3]} senders, {len(rows['memory'])} runs each (medians)")
print(f"{'store':<8} {'deliveries/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'non-2xx':>8}")
med = {}
for store in ("memory", "sqlite"):
    r = rows[store]
    med[store] = statistics.median(x["deliveries_per_second"] for x in r)
    p50 = statistics.median(x["latency_ms"]["p50"] for x in r)
    p99 = statistics.median(x["latency_ms"]["p99"] for x in r)
    bad = sum(n for x in r for code, n in x["status"].items() if not code.startswith("2")) + sum(x["errors"] for x in r)
    print(f"{store:<8} {med[store]:>13.0f} {p50:>8.2f} {p99:>8.2f} {bad:>8}")
print(f"sqlite / memory throughput: {med['sqlite'] / med['memory']:.2f}")
PY
