#!/usr/bin/env bash
# The receive-path benchmark: webhookd (in-memory store, the durable SQLite
# store, the PostgreSQL store with one and with two instances) against a bare
# actix-web route that reads the body and answers 202 (bench/floor.rs), built
# and run the same way: release build, servers pinned to CPU 0, wrk pinned to
# CPU 1 with 32 connections, every request a fresh delivery id
# (bench/delivery.lua), runs alternated, medians printed with ratios, plus the
# load generator's own CPU use (it must have some to spare), idle and peak
# RSS, and an end-to-end run: time until a mock GitHub has one API call per
# delivery, and how many TCP connections it accepted.
#
# PostgreSQL (BENCH_DATABASE_URL, a database the script may create databases
# from) is the machine's own service, not pinned: it shares both cores with
# the server and wrk. Every postgres measurement gets a fresh database
# (bench_<random>, dropped after). postgres×2: two instances on the same
# database, both on CPU 0 (the server side keeps one core), each loaded by its
# own wrk with half the connections; rates are summed and the p99 is the
# worse of the two (an upper bound of the combined p99: each side has at most
# 1% of its answers above its own p99). Without an answering PostgreSQL the
# postgres targets are skipped.
#
#
# Then the sustained figure, the one that counts: each store (memory, sqlite,
# postgres) on each payload for SUSTAIN_DURATION (30 s) with a queue of
# SUSTAIN_CAPACITY (20000), loaded by `webhookd send --sustained` (CPU 1):
# deliveries accepted *and* processed per second (all accepted ones
# processed, counted from the first request), the accept rate while sending,
# and the share refused (503 queue_full once the queue is full).
#
#   bench/run.sh                                   # 3 runs of 5 s per target and payload
#   RUNS=5 DURATION=10 CONNECTIONS=64 bench/run.sh
#   BENCH_DATABASE_URL=postgres://me@db:5432/postgres bench/run.sh
#   SECTIONS=sustained SUSTAIN_DURATION=60 bench/run.sh   # only the sustained part
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
E2E_COUNT=${E2E_COUNT:-2000}
SUSTAIN_DURATION=${SUSTAIN_DURATION:-30}
SUSTAIN_CAPACITY=${SUSTAIN_CAPACITY:-20000}
SUSTAIN_RUNS=${SUSTAIN_RUNS:-1}
SECTIONS=${SECTIONS:-accept,sustained,e2e}
GITHUB_CONCURRENCY=${GITHUB_CONCURRENCY:-10}
PORT=${PORT:-18310}
MOCK_PORT=${MOCK_PORT:-18311}
PORT2=${PORT2:-18312}
BENCH_DATABASE_URL=${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
SECRET=bench-secret

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet --bin webhookd --example bench_floor --example bench_mock_github
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release
work=$(mktemp -d)
db=
trap 'kill $(jobs -p) 2>/dev/null || true; drop_db; rm -rf "$work"' EXIT

server_cpu=() load_cpu=()
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  server_cpu=(taskset -c 0) load_cpu=(taskset -c 1)
fi

wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: nothing listens on port $1 after 10 s (did the server start? is the port free?)" >&2
  return 1
}
rss_kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

# PostgreSQL: the URL shown without its password, the URL of another
# database on the same server, and psql against the configured one.
shown_url() { python3 -c 'import sys,urllib.parse as u;p=u.urlsplit(sys.argv[1]);print(u.urlunsplit(p._replace(netloc=p.netloc.replace(":"+p.password+"@",":***@") if p.password else p.netloc)))' "$1"; }
db_url() { python3 -c 'import sys,urllib.parse as u;print(u.urlunsplit(u.urlsplit(sys.argv[1])._replace(path="/"+sys.argv[2])))' "$BENCH_DATABASE_URL" "$1"; }
pg() { PGCONNECT_TIMEOUT=5 psql "$BENCH_DATABASE_URL" -X -q -A -t -v ON_ERROR_STOP=1 -c "$1"; }
drop_db() { if [ -n "$db" ]; then pg "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null || true; db=; fi; }
# CPU seconds used so far by the server processes of database $1 (its
# backends; not the shared WAL writer and checkpointer).
pg_cpu() {
  python3 - "$1" <<'PY'
import os, sys
total = 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        if cmd.startswith("postgres: ") and f" {sys.argv[1]} " in cmd:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        pass
print(total / os.sysconf("SC_CLK_TCK"))
PY
}

targets=(floor memory sqlite)
if ! command -v psql >/dev/null 2>&1; then
  echo "bench: no psql on this machine: the postgres targets are skipped" >&2
elif pg_version=$(pg "SHOW server_version" 2>"$work/psql.err"); then
  targets+=(postgres postgres×2)
else
  echo "bench: PostgreSQL at $(shown_url "$BENCH_DATABASE_URL") does not answer ($(head -n1 "$work/psql.err")): the postgres targets are skipped" >&2
fi

start_target() { # target [queue capacity] -> pids in $pids, ports in $ports
  rm -rf "$work/data"
  pids=() ports=("$PORT")
  # The backlog a postgres run leaves is dropped with its database: no drain.
  local store drain=30s
  case $1 in
    floor) (cd "$work" && exec "${server_cpu[@]}" "$bin/examples/bench_floor" "127.0.0.1:$PORT") >/dev/null 2>&1 & ;;
    memory) store=memory ;;
    sqlite) store="sqlite:$work/data/webhookd.db" ;;
    postgres*)
      db=bench_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
      pg "CREATE DATABASE $db" >/dev/null
      store=$(db_url "$db") drain=1s
      if [ "$1" = postgres×2 ]; then ports+=("$PORT2"); fi ;;
  esac
  local port
  if [ "$1" = floor ]; then pids+=($!); else for port in "${ports[@]}"; do
    (cd "$work" && WEBHOOKD_SECRET=$SECRET WEBHOOKD_LISTEN=127.0.0.1:$port WEBHOOKD_STORE=$store RUST_LOG=error \
      WEBHOOKD_QUEUE_CAPACITY=${2:-} WEBHOOKD_SHUTDOWN_TIMEOUT=$drain exec "${server_cpu[@]}" "$bin/webhookd" serve) >>"$work/server.log" 2>&1 &
    pids+=($!)
  done; fi
  for port in "${ports[@]}"; do
    wait_port "$port" || { tail -n5 "$work/server.log" >&2; return 1; }
  done
}

measure() { # target event payload-file
  start_target "$1"
  sleep 0.3
  local pid idle=0 peak=0 rss
  for pid in "${pids[@]}"; do rss=$(rss_kb "$pid" VmRSS); if [ "$rss" -gt "$idle" ]; then idle=$rss; fi; done
  local pg_before=0
  if [ -n "$db" ]; then pg_before=$(pg_cpu "$db"); fi
  # One wrk per port, side by side, sharing CPU 1 and the connections.
  local i wrks=() conns=$((CONNECTIONS / ${#ports[@]}))
  for i in "${!ports[@]}"; do
    ( TIMEFORMAT='%U %S %R'
      { time BENCH_TAG="w$i-" BENCH_PAYLOAD=$3 BENCH_EVENT=$2 BENCH_SIGNATURE=$signature "${load_cpu[@]}" \
          wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s bench/delivery.lua "http://127.0.0.1:${ports[$i]}/webhook" \
          >"$work/wrk.$i.out"; } 2>"$work/wrk.$i.cpu" ) &
    wrks+=($!)
  done
  wait "${wrks[@]}"
  local pg_used=0 stored=-1
  if [ -n "$db" ]; then
    pg_used=$(python3 -c "import sys;print(float(sys.argv[2])-float(sys.argv[1]))" "$pg_before" "$(pg_cpu "$db")")
  fi
  for pid in "${pids[@]}"; do rss=$(rss_kb "$pid" VmHWM); if [ "$rss" -gt "$peak" ]; then peak=$rss; fi; done
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  if [ -n "$db" ]; then
    stored=$(PGCONNECT_TIMEOUT=5 psql "$(db_url "$db")" -X -q -A -t -c "SELECT count(*) FROM webhookd_deliveries")
    drop_db
  fi
  python3 - "$1" "$2" "$idle" "$peak" "$pg_used" "$stored" "$work"/wrk.[0-9].out >>"$work/results" <<'PY'
import json, re, sys
target, event, idle, peak, pg_used, stored = sys.argv[1:7]
# The latency distribution's line, not a "+/- Stdev" column ending in 99%.
P99 = re.compile(r"^\s*99%\s+([\d.]+(?:us|ms|s))\s*$", re.M)
def ms(value):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rate = p99 = load_cpu = real = 0.0
non_2xx = answered = 0
for out in sys.argv[7:]:
    text = open(out).read()
    if not P99.search(text):
        sys.exit(f"no latency figures in wrk's output:\n{text}")
    user, system, wall = map(float, open(out[:-4] + ".cpu").read().split()[-3:])
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    rate += float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    p99 = max(p99, ms(P99.search(text).group(1)))
    non_2xx += int(bad.group(1)) if bad else 0
    answered += int(re.search(r"(\d+) requests in", text).group(1))
    load_cpu += (user + system) / wall
    real = max(real, wall)
print(json.dumps({"target": target, "event": event, "rate": rate, "p99_ms": p99, "non_2xx": non_2xx,
                  "idle_rss_kb": int(idle), "peak_rss_kb": int(peak), "load_cpu": load_cpu,
                  "pg_cpu": float(pg_used) / real, "answered_2xx": answered - non_2xx, "stored": int(stored)}))
PY
  rm -f "$work"/wrk.*
}

if [[ $SECTIONS == *accept* ]]; then
for spec in push:push/payload.json pull_request:pull_request/opened.payload.json; do
  event=${spec%%:*}
  payload=$PWD/tests/fixtures/github-payloads/${spec#*:}
  signature="sha256=$(python3 -c "import hmac,hashlib,sys;print(hmac.new(b'$SECRET',open(sys.argv[1],'rb').read(),hashlib.sha256).hexdigest())" "$payload")"
  for run in $(seq "$RUNS"); do
    for target in "${targets[@]}"; do
      echo "run $run/$RUNS: $target, $event" >&2
      measure "$target" "$event" "$payload"
    done
  done
done
fi

# Sustained: accepted and processed, each store, a queue that fills.
sustained() { # target event payload-file
  start_target "$1" "$SUSTAIN_CAPACITY"
  WEBHOOKD_SECRET=$SECRET "${load_cpu[@]}" "$bin/webhookd" send "$3" --event "$2" --url "http://127.0.0.1:$PORT/webhook" \
    --duration "${SUSTAIN_DURATION}s" --concurrency "$CONNECTIONS" --sustained --json >"$work/sustained.out" || true
  kill -TERM "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  drop_db
  python3 - "$1" "$2" "$work/sustained.out" >>"$work/sustained" <<'PY'
import json, sys
target, event, out = sys.argv[1:4]
r = json.load(open(out))
s = r["sustained"]
print(json.dumps({"target": target, "event": event, "sustained": s["deliveries_per_second"] or 0.0,
                  "accept": r["deliveries_per_second"], "refused": s["refused_share"], "p99_ms": r["latency_ms"]["p99"],
                  "drained": s["seconds_until_processed"] is not None}))
PY
}

if [[ $SECTIONS == *sustained* ]]; then
  for spec in push:push/payload.json pull_request:pull_request/opened.payload.json; do
    event=${spec%%:*}
    payload=$PWD/tests/fixtures/github-payloads/${spec#*:}
    for run in $(seq "$SUSTAIN_RUNS"); do
      for target in "${targets[@]}"; do
        case $target in floor|postgres×2) continue ;; esac
        echo "sustained run $run/$SUSTAIN_RUNS: $target, $event (${SUSTAIN_DURATION} s)" >&2
        sustained "$target" "$event" "$payload"
      done
    done
  done
fi

# End to end: every delivery makes one GitHub API call (a rule that labels:
# an idempotent POST; comments are content-creating and GitHub's 80/min,
# 500/h budget would pace the run to hours).
if [[ $SECTIONS == *e2e* ]]; then
cat >"$work/rules.toml" <<'TOML'
[[rule]]
name = "label"
on = "issues.opened"
[[rule.actions]]
add_labels = ["seen"]
TOML
(exec "${load_cpu[@]}" "$bin/examples/bench_mock_github" "127.0.0.1:$MOCK_PORT") >/dev/null 2>&1 &
mock=$!
wait_port "$MOCK_PORT"
rm -rf "$work/data"
(cd "$work" && WEBHOOKD_SECRET=$SECRET WEBHOOKD_LISTEN=127.0.0.1:$PORT WEBHOOKD_STORE=memory RUST_LOG=error \
  WEBHOOKD_RULES=$work/rules.toml WEBHOOKD_GITHUB_TOKEN=bench-token WEBHOOKD_GITHUB_API_URL=http://127.0.0.1:$MOCK_PORT \
  WEBHOOKD_GITHUB_WRITE_INTERVAL=0s WEBHOOKD_GITHUB_CONCURRENCY=$GITHUB_CONCURRENCY WEBHOOKD_QUEUE_CAPACITY=100000 \
  exec "${server_cpu[@]}" "$bin/webhookd" serve) >/dev/null 2>&1 &
e2e=$!
wait_port "$PORT"
start=$(date +%s.%N)
WEBHOOKD_SECRET=$SECRET "${load_cpu[@]}" "$bin/webhookd" send tests/fixtures/github-payloads/issues/opened.payload.json \
  --event issues --url "http://127.0.0.1:$PORT/webhook" --count "$E2E_COUNT" --concurrency "$CONNECTIONS" >/dev/null
until python3 -c "import json,sys,urllib.request;s=json.load(urllib.request.urlopen('http://127.0.0.1:$MOCK_PORT/_stats'));sys.exit(0 if s['requests']>=$E2E_COUNT else 1)"; do
  sleep 0.02
done
end=$(date +%s.%N)
stats=$(python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:$MOCK_PORT/_stats').read().decode())")
kill -TERM "$e2e" "$mock"; wait "$e2e" "$mock" 2>/dev/null || true
fi

touch "$work/results" "$work/sustained"
python3 - "$work/sustained" "$SUSTAIN_DURATION" "$SUSTAIN_CAPACITY" "$CONNECTIONS" "$SUSTAIN_RUNS" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
if rows:
    duration, capacity, conns, runs = sys.argv[2:6]
    print(f"\nSUSTAINED: {duration} s of load per store and payload, WEBHOOKD_QUEUE_CAPACITY={capacity}, {conns} senders "
          f"(webhookd send --sustained on CPU 1), server on CPU 0, no rules; median of {runs}; accepted and processed "
          f"= every 2xx delivery processed, per second from the first request")
    print(f"{'payload':<13} {'store':<9} {'accepted+processed/s':>21} {'x memory':>9} {'accept/s while sending':>23} "
          f"{'refused':>8} {'p99 ms (all answers)':>21}")
    for event in ("push", "pull_request"):
        med = {}
        for target in ("memory", "sqlite", "postgres"):
            r = [x for x in rows if x["event"] == event and x["target"] == target]
            if r:
                med[target] = {k: statistics.median(x[k] for x in r) for k in ("sustained", "accept", "refused", "p99_ms")}
                med[target]["drained"] = all(x["drained"] for x in r)
        for target, m in med.items():
            ratio = f"{m['sustained'] / med['memory']['sustained']:.2f}" if "memory" in med and med["memory"]["sustained"] else ""
            note = "" if m["drained"] else "  NOT DRAINED within --drain-limit"
            print(f"{event:<13} {target:<9} {m['sustained']:>21.0f} {ratio:>9} {m['accept']:>23.0f} "
                  f"{m['refused'] * 100:>7.1f}% {m['p99_ms']:>21.2f}{note}")
PY

python3 - "$work/results" "$RUNS" "$DURATION" "$CONNECTIONS" "${start:-0}" "${end:-0}" "${stats:-}" "$E2E_COUNT" "$GITHUB_CONCURRENCY" \
  "${pg_version:-}" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
if not rows and not sys.argv[7]:
    sys.exit(0)
runs, duration, conns, pg_version = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[10]
if rows:
    targets = [t for t in ("floor", "memory", "sqlite", "postgres", "postgres×2") if any(x["target"] == t for x in rows)]
    print(f"\n{runs} alternated runs of {duration} s per target, {conns} connections, server on 1 core, wrk on another; medians")
    if pg_version:
        print(f"PostgreSQL {pg_version}: a system service on the same machine, not pinned (it shares both cores with the "
              f"server and wrk); a fresh database per measurement; postgres×2: two instances on one database, both on the "
              f"server's core, each with {int(conns) // 2} connections from its own wrk, rates summed, p99 the worse of the two, "
              f"RSS the larger; pg CPU: the bench database's backends, in cores")
    else:
        print("PostgreSQL: not measured (no server answered)")
    print(f"{'payload':<13} {'server':<10} {'deliveries/s':>13} {'x floor':>8} {'x memory':>9} {'x sqlite':>9} {'p99 ms':>8} "
          f"{'non-2xx':>8} {'idle RSS':>9} {'peak RSS':>9} {'wrk CPU':>8} {'pg CPU':>7}")
    short = []
    for event in ("push", "pull_request"):
        med = {}
        for target in targets:
            r = [x for x in rows if x["event"] == event and x["target"] == target]
            med[target] = {k: statistics.median(x[k] for x in r)
                           for k in ("rate", "p99_ms", "idle_rss_kb", "peak_rss_kb", "load_cpu", "pg_cpu")}
            med[target]["non_2xx"] = sum(x["non_2xx"] for x in r)
            short += [(event, target, x["answered_2xx"], x["stored"]) for x in r if 0 <= x["stored"] < x["answered_2xx"]]
        for target in targets:
            m = med[target]
            ratio = lambda base, shown: f"{m['rate'] / med[base]['rate']:.2f}" if target in shown else ""
            pg_cpu = f"{m['pg_cpu'] * 100:>6.0f}%" if target.startswith("postgres") else ""
            print(f"{event:<13} {target:<10} {m['rate']:>13.0f} {m['rate'] / med['floor']['rate']:>8.2f} "
                  f"{ratio('memory', ('sqlite', 'postgres', 'postgres×2')):>9} {ratio('sqlite', ('postgres', 'postgres×2')):>9} "
                  f"{m['p99_ms']:>8.2f} {m['non_2xx']:>8} "
                  f"{m['idle_rss_kb']/1024:>7.1f}MB {m['peak_rss_kb']/1024:>7.1f}MB {m['load_cpu']*100:>7.0f}% {pg_cpu:>7}")
    if pg_version:
        print("every 2xx answer had its row in the database" if not short else
              "FEWER ROWS THAN 2xx ANSWERS (duplicate ids?): " + "; ".join(f"{e} {t}: {a} answered, {s} stored" for e, t, a, s in short))
if sys.argv[7]:
    stats = json.loads(sys.argv[7])
    elapsed = float(sys.argv[6]) - float(sys.argv[5])
    print(f"\nend to end: {sys.argv[8]} issues deliveries, one GitHub API call each: {elapsed:.2f} s until the mock had them all "
          f"({int(sys.argv[8]) / elapsed:.0f} deliveries/s); {stats['api_connections']} TCP connections carried its "
          f"{stats['requests']} API requests (cap WEBHOOKD_GITHUB_CONCURRENCY={sys.argv[9]}: "
          f"{'within' if stats['api_connections'] <= int(sys.argv[9]) else 'EXCEEDED'}); "
          f"{stats['connections']} accepted in all, the stats polls included")
PY
