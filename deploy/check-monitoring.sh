#!/usr/bin/env bash
# Checks the monitoring files: the Prometheus alert rules parse and pass
# their unit tests (promtool), and the Grafana dashboard is JSON in the shape
# Grafana imports. That their metric names exist is the integration test
# tests/api/monitoring.rs (it scrapes the real daemon).
#
# promtool comes from PATH, or from Debian's `prometheus` package: only the
# promtool binary is unpacked (into a cache folder) from the downloaded .deb,
# since installing the package would add a system user, a dozen JavaScript
# packages and a Prometheus server that its maintainer scripts start.
# The .deb is about 19 MB (promtool: 48 MB unpacked; the whole package
# installed: about 96 MB); fetching and unpacking take a few seconds.
set -euo pipefail
cd "$(dirname "$0")"

promtool_bin() {
  if command -v promtool >/dev/null 2>&1; then
    command -v promtool
    return
  fi
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/webhookd-ci"
  if [[ ! -x "$cache/usr/bin/promtool" ]]; then
    echo "promtool not found: unpacking it from Debian's prometheus package" >&2
    # A fresh machine may have no package lists yet.
    if ! apt-cache show prometheus >/dev/null 2>&1; then
      apt-get update -qq >&2
    fi
    local download
    download="$(mktemp -d)"
    # APT::Sandbox::User=root: the unprivileged _apt user cannot write to
    # a private temporary folder.
    (cd "$download" && apt-get download -qq -o APT::Sandbox::User=root prometheus >&2)
    mkdir -p "$cache"
    dpkg-deb --fsys-tarfile "$download"/prometheus_*.deb | tar -x -C "$cache" ./usr/bin/promtool
    rm -rf "$download"
  fi
  echo "$cache/usr/bin/promtool"
}

promtool="$(promtool_bin)"
"$promtool" --version | head -n 1
"$promtool" check rules prometheus/alerts.yml
"$promtool" test rules prometheus/alerts.test.yml

# The dashboard: JSON, with the datasource and instance variables and a
# PromQL expression in every panel target (python3 is on every machine of
# this project's kind; jq need not be). Its expressions, with Grafana's
# variables given values, are written out as recording rules so promtool
# checks their PromQL too.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 - grafana/webhookd.json "$scratch/dashboard-rules.yml" <<'EOF'
import json, sys

path = sys.argv[1]
try:
    with open(path) as f:
        dashboard = json.load(f)
except (OSError, ValueError) as e:
    sys.exit(f"{path}: not valid JSON: {e}")

problems = []
variables = {v.get("name") for v in dashboard.get("templating", {}).get("list", [])}
for needed in ("datasource", "instance"):
    if needed not in variables:
        problems.append(f"no `{needed}` template variable")
panels = [p for p in dashboard.get("panels", []) if p.get("type") != "row"]
if not panels:
    problems.append("no panels")
ids = [p.get("id") for p in dashboard.get("panels", [])]
if len(ids) != len(set(ids)):
    problems.append("panel ids are not unique")
for panel in panels:
    title = panel.get("title", "?")
    if panel.get("datasource", {}).get("uid") != "${datasource}":
        problems.append(f"panel {title!r} does not use the datasource variable")
    targets = panel.get("targets", [])
    if not targets or not all(t.get("expr", "").strip() for t in targets):
        problems.append(f"panel {title!r} has a target without an expression")
if problems:
    sys.exit(f"{path}: " + "; ".join(problems))
print(f"{path}: {len(panels)} panels, valid JSON")

grafana_values = {"$__rate_interval": "5m", "$instance": ".*"}
with open(sys.argv[2], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for panel in panels:
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in grafana_values.items():
                expr = expr.replace(variable, value)
            # JSON strings are valid YAML scalars.
            out.write(f"      - record: dashboard:{panel['id']}:{target['refId']}\n")
            out.write(f"        expr: {json.dumps(expr)}\n")
EOF
"$promtool" check rules "$scratch/dashboard-rules.yml" >/dev/null ||
  { echo "grafana/webhookd.json: a panel expression is not valid PromQL (above)" >&2; exit 1; }
echo "grafana/webhookd.json: every panel expression is valid PromQL"
