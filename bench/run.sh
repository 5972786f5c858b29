#!/usr/bin/env bash
# The receive-path benchmark: webhookd (in-memory store, then the durable
# SQLite store) against a bare actix-web route that reads the body and answers
# 202 (bench/floor.rs), built and run the same way: release build, server
# pinned to CPU 0, wrk pinned to CPU 1 with 32 connections, every request a
# fresh delivery id (bench/delivery.lua), runs alternated, medians printed with
# ratios, plus the load generator's own CPU use (it must have some to spare),
# idle and peak RSS, and an end-to-end run: time until a mock GitHub has one
# API call per delivery, and how many TCP connections it accepted.
#
#   bench/run.sh                                   # 3 runs of 5 s per target and payload
#   RUNS=5 DURATION=10 CONNECTIONS=64 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
E2E_COUNT=${E2E_COUNT:-2000}
GITHUB_CONCURRENCY=${GITHUB_CONCURRENCY:-10}
PORT=${PORT:-18310}
MOCK_PORT=${MOCK_PORT:-18311}
SECRET=bench-secret

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release --quiet --bin webhookd --example bench_floor --example bench_mock_github
bin=$(realpath "${CARGO_TARGET_DIR:-target}")/release
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

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

start_target() { # target -> pid in $pid
  rm -rf "$work/data"
  case $1 in
    floor) (cd "$work" && exec "${server_cpu[@]}" "$bin/examples/bench_floor" "127.0.0.1:$PORT") >/dev/null 2>&1 & ;;
    memory|sqlite)
      local store=memory; [ "$1" = sqlite ] && store="sqlite:$work/data/webhookd.db"
      (cd "$work" && WEBHOOKD_SECRET=$SECRET WEBHOOKD_LISTEN=127.0.0.1:$PORT WEBHOOKD_STORE=$store RUST_LOG=error \
        exec "${server_cpu[@]}" "$bin/webhookd" serve) >/dev/null 2>&1 & ;;
  esac
  pid=$!
  wait_port "$PORT"
}

measure() { # target event payload-file
  start_target "$1"
  sleep 0.3
  local idle; idle=$(rss_kb "$pid" VmRSS)
  local out="$work/wrk.out"
  TIMEFORMAT='%U %S %R'
  local cpu
  cpu=$( { time BENCH_PAYLOAD=$3 BENCH_EVENT=$2 BENCH_SIGNATURE=$signature "${load_cpu[@]}" \
      wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s bench/delivery.lua "http://127.0.0.1:$PORT/webhook" >"$out"; } 2>&1 )
  local peak; peak=$(rss_kb "$pid" VmHWM)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  python3 - "$out" "$1" "$2" "$idle" "$peak" "$cpu" >>"$work/results" <<'PY'
import json, re, sys
text = open(sys.argv[1]).read()
# The latency distribution's line, not a "+/- Stdev" column ending in 99%.
P99 = re.compile(r"^\s*99%\s+([\d.]+(?:us|ms|s))\s*$", re.M)
if not P99.search(text):
    sys.exit(f"no latency figures in wrk's output:\n{text}")
def ms(value):
    n, unit = re.match(r"([\d.]+)(us|ms|s)", value).groups()
    return float(n) * {"us": 0.001, "ms": 1, "s": 1000}[unit]
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p99 = ms(P99.search(text).group(1))
bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
user, system, real = map(float, sys.argv[6].split())
print(json.dumps({"target": sys.argv[2], "event": sys.argv[3], "rate": rate, "p99_ms": p99,
                  "non_2xx": int(bad.group(1)) if bad else 0, "idle_rss_kb": int(sys.argv[4]),
                  "peak_rss_kb": int(sys.argv[5]), "load_cpu": (user + system) / real}))
PY
}

for spec in push:push/payload.json pull_request:pull_request/opened.payload.json; do
  event=${spec%%:*}
  payload=$PWD/tests/fixtures/github-payloads/${spec#*:}
  signature="sha256=$(python3 -c "import hmac,hashlib,sys;print(hmac.new(b'$SECRET',open(sys.argv[1],'rb').read(),hashlib.sha256).hexdigest())" "$payload")"
  for run in $(seq "$RUNS"); do
    for target in floor memory sqlite; do
      echo "run $run/$RUNS: $target, $event" >&2
      measure "$target" "$event" "$payload"
    done
  done
done

# End to end: every delivery makes one GitHub API call (a rule that labels:
# an idempotent POST; comments are content-creating and GitHub's 80/min,
# 500/h budget would pace the run to hours).
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

python3 - "$work/results" "$RUNS" "$DURATION" "$CONNECTIONS" "$start" "$end" "$stats" "$E2E_COUNT" "$GITHUB_CONCURRENCY" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
runs, duration, conns = sys.argv[2], sys.argv[3], sys.argv[4]
print(f"\n{runs} alternated runs of {duration} s per target, {conns} connections, server on 1 core, wrk on another; medians")
print(f"{'payload':<13} {'server':<8} {'deliveries/s':>13} {'x floor':>8} {'x memory':>9} {'p99 ms':>8} {'non-2xx':>8} {'idle RSS':>9} {'peak RSS':>9} {'wrk CPU':>8}")
for event in ("push", "pull_request"):
    med = {}
    for target in ("floor", "memory", "sqlite"):
        r = [x for x in rows if x["event"] == event and x["target"] == target]
        med[target] = {k: statistics.median(x[k] for x in r) for k in ("rate", "p99_ms", "idle_rss_kb", "peak_rss_kb", "load_cpu")}
        med[target]["non_2xx"] = sum(x["non_2xx"] for x in r)
    for target in ("floor", "memory", "sqlite"):
        m = med[target]
        vs_floor = m["rate"] / med["floor"]["rate"]
        vs_memory = f"{m['rate'] / med['memory']['rate']:.2f}" if target == "sqlite" else ""
        print(f"{event:<13} {target:<8} {m['rate']:>13.0f} {vs_floor:>8.2f} {vs_memory:>9} {m['p99_ms']:>8.2f} {m['non_2xx']:>8} "
              f"{m['idle_rss_kb']/1024:>7.1f}MB {m['peak_rss_kb']/1024:>7.1f}MB {m['load_cpu']*100:>7.0f}%")
stats = json.loads(sys.argv[7])
elapsed = float(sys.argv[6]) - float(sys.argv[5])
print(f"\nend to end: {sys.argv[8]} issues deliveries, one GitHub API call each: {elapsed:.2f} s until the mock had them all "
      f"({int(sys.argv[8]) / elapsed:.0f} deliveries/s); {stats['api_connections']} TCP connections carried its "
      f"{stats['requests']} API requests (cap WEBHOOKD_GITHUB_CONCURRENCY={sys.argv[9]}: "
      f"{'within' if stats['api_connections'] <= int(sys.argv[9]) else 'EXCEEDED'}); "
      f"{stats['connections']} accepted in all, the stats polls included")
PY
