#!/usr/bin/env bash
# Checks the systemd units: `systemd-analyze verify` reports nothing, and the
# service's offline security exposure stays at 2.0 or lower. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "installing systemd (for systemd-analyze)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null
fi

# verify wants ExecStart to exist: check a copy pointing at a binary that does.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
sed 's#/usr/local/bin/webhookd#/bin/true#' webhookd.service >"$scratch/webhookd.service"
cp webhookd.socket "$scratch/"
out=$(systemd-analyze verify "$scratch/webhookd.service" "$scratch/webhookd.socket" 2>&1) || { echo "$out"; exit 1; }
if [ -n "$out" ]; then
  echo "systemd-analyze verify reported:"; echo "$out"; exit 1
fi

# --threshold is on the 0-100 scale: 20 = an exposure of 2.0.
systemd-analyze security --offline=true --threshold=20 webhookd.service | tail -1
echo "systemd units: verify clean, exposure within 2.0"
