#!/usr/bin/env bash
# How fast the PostgreSQL store processes a backlog, and what each delivery
# costs the server: COUNT `push` rows are copied into a fresh database, then
# `webhookd serve` (CPU 0 when there are two, no rules) is started on it and
# timed until none is left queued or running. The CPU of every PostgreSQL
# process is summed from /proc, so the server must run on this machine.
# Extra arguments are set in the server's environment (A/B runs).
#
#   bench/postgres-drain.sh                         # 3 runs of 20000
#   RUNS=1 bench/postgres-drain.sh WEBHOOKD_WORKERS=8
#   BENCH_DATABASE_URL=postgres://me@127.0.0.1:5432/postgres bench/postgres-drain.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
COUNT=${COUNT:-20000}
PORT=${PORT:-18320}
BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
PAYLOAD=tests/fixtures/github-payloads/push/payload.json

cargo build --release --quiet --bin webhookd
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release/webhookd
server_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then server_cpu=(taskset -c 0); fi
db= pid=
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$db" ]; then psql "$BENCH_DATABASE_URL" -qAtc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; fi
}
trap cleanup EXIT
db_url() { python3 -c 'import sys, urllib.parse as u; p = u.urlsplit(sys.argv[1]); print(u.urlunsplit(p._replace(path="/" + sys.argv[2])))' "$BENCH_DATABASE_URL" "$1"; }
postgres_cpu_ticks() { # utime + stime of every process named postgres
  python3 - <<'PY'
import glob
total = 0
for proc in glob.glob("/proc/[0-9]*"):
    try:
        if open(proc + "/comm").read().strip() != "postgres":
            continue
        fields = open(proc + "/stat").read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
print(total)
PY
}
serve() { # url [VAR=value...]
  local url=$1; shift
  env "$@" WEBHOOKD_SECRET=bench-secret WEBHOOKD_LISTEN="127.0.0.1:$PORT" WEBHOOKD_STORE="$url" RUST_LOG=error \
    WEBHOOKD_SHUTDOWN_TIMEOUT=1s "${server_cpu[@]}" "$bin" serve >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -fs "127.0.0.1:$PORT/healthz" >/dev/null && return; sleep 0.1; done
  echo "bench: webhookd did not start" >&2; exit 1
}
stop() { kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=; }

tick=$(getconf CLK_TCK)
printf '%-6s %12s %28s\n' run "drained /s" "PostgreSQL CPU per delivery"
for run in $(seq "$RUNS"); do
  db=bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
  psql "$BENCH_DATABASE_URL" -qAtc "CREATE DATABASE $db" >/dev/null
  url=$(db_url "$db")
  # One real delivery, stored and processed, is the template of the backlog.
  serve "$url"
  WEBHOOKD_SECRET=bench-secret "$bin" send "$PAYLOAD" --event push --url "http://127.0.0.1:$PORT/webhook" >/dev/null
  until [ "$(psql "$url" -qAtc "SELECT count(*) FROM webhookd_deliveries WHERE state = 'done'")" = 1 ]; do sleep 0.1; done
  stop
  psql "$url" -qAt >/dev/null <<SQL
INSERT INTO webhookd_deliveries (delivery_id, event, action, hook_id, target_type, target_id, content_kind,
                                 received_at, state, next_attempt_at, received_by, installation_id, body)
SELECT 'drain-' || g, event, action, hook_id, target_type, target_id, content_kind,
       received_at, 'queued', 0, received_by, installation_id, body
FROM webhookd_deliveries, generate_series(1, $COUNT) g;
VACUUM ANALYZE webhookd_deliveries;
CHECKPOINT;
SQL
  before=$(postgres_cpu_ticks) started=$(date +%s.%N)
  serve "$url" "$@"
  until [ "$(psql "$url" -qAtc "SELECT count(*) FROM webhookd_deliveries WHERE state IN ('queued', 'running')")" = 0 ]; do
    sleep 0.05
  done
  ended=$(date +%s.%N) after=$(postgres_cpu_ticks)
  stop
  psql "$BENCH_DATABASE_URL" -qAtc "DROP DATABASE $db WITH (FORCE)" >/dev/null; db=
  python3 -c "import sys; n, t, c, hz = map(float, sys.argv[1:5]); print(f'{int(sys.argv[5]):<6} {n / t:>12.0f} {c / hz / n * 1e6:>25.0f} µs')" \
    "$COUNT" "$(python3 -c "print($ended - $started)")" "$((after - before))" "$tick" "$run"
done
