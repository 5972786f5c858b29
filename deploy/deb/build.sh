#!/usr/bin/env bash
# Builds the Debian package (target/deb/webhookd_VERSION-1_ARCH.deb) and
# checks it: the expected files are in it, lintian has nothing to say beyond
# the overrides in deploy/deb/lintian-overrides, and the packaged binary
# validates the packaged configuration from an extracted tree. Run by .ci/run;
# docs/install.md says how to install what it makes.
#
# Needs cargo (rustup) and dpkg-deb; installs the pinned cargo-deb with cargo,
# and with apt-get (as root) what is missing of dpkg-dev (dpkg-shlibdeps works
# out the package's dependencies), lintian and man-db.
set -euo pipefail
cd "$(dirname "$0")/../.."

CARGO_DEB_VERSION=3.8.0
# Generated inputs and the output. Cargo.toml's [package.metadata.deb] names
# these paths, so this is ./target/deb whatever CARGO_TARGET_DIR says.
stage=target/deb
started=$SECONDS

fail() { echo "deploy/deb/build.sh: $*" >&2; exit 1; }

missing=()
command -v dpkg-shlibdeps >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v man >/dev/null 2>&1 || missing+=(man-db)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

cargo build --locked --release --bin webhookd

# 1. The inputs cargo-deb packages but nobody commits.
rm -rf "$stage"
mkdir -p "$stage/units"
# The units: deploy/ holds the one copy, written for the manual install under
# /usr/local; the package puts the binary and the docs under /usr.
for unit in webhookd.service webhookd.socket; do
  sed -e 's#/usr/local/bin/webhookd#/usr/bin/webhookd#g' \
      -e 's#/usr/local/share/doc/webhookd#/usr/share/doc/webhookd#g' \
      "deploy/$unit" >"$stage/units/$unit"
  ! grep -n '/usr/local' "$stage/units/$unit" || fail "$unit still names /usr/local"
done
grep -qx 'ExecStart=/usr/bin/webhookd serve' "$stage/units/webhookd.service" \
  || fail "the packaged unit does not run /usr/bin/webhookd"

# The last commit's date, so that rebuilding one commit gives the same pages.
if commit=$(git rev-parse --short HEAD 2>/dev/null); then
  date_rfc=$(git log -1 --format=%aD)
  git diff --quiet HEAD -- 2>/dev/null || commit="$commit with local changes"
else
  commit="an unknown commit (not a git checkout)"
  date_rfc=$(date -R)
fi
# Man pages and completions from the clap definitions (dev profile: the
# generator needs no optimisation, and `cargo test` reuses the build).
cargo run --locked --quiet --example deb_assets -- "$stage" "$(date -d "$date_rfc" +%Y-%m-%d)"

# A one-entry Debian changelog: the version and the commit it was built from.
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml)
maintainer=$(sed -n 's/^maintainer = "\(.*\)"$/\1/p' Cargo.toml)
[ -n "$version" ] && [ -n "$maintainer" ] || fail "no version or maintainer"
cat >"$stage/changelog" <<EOF
webhookd ($version-1) unstable; urgency=medium

  * Built from the webhookd sources at git commit $commit.

 -- $maintainer  $date_rfc
EOF

# 2. The package.
cargo deb --locked --no-build --output "$stage/"
deb=$(echo "$stage"/webhookd_"$version"-1_*.deb)
[ -f "$deb" ] || fail "cargo deb made no $stage/webhookd_$version-1_*.deb"

# 3. What is in it.
echo "== $deb"
dpkg-deb --info "$deb" | sed -n '/Package:/,$p'
dpkg-deb --contents "$deb"
listing=$(dpkg-deb --contents "$deb" | awk '{print $6}' | sed 's#^\./#/#')
for path in /usr/bin/webhookd \
  /lib/systemd/system/webhookd.service /lib/systemd/system/webhookd.socket \
  /etc/webhookd/webhookd.env \
  /usr/share/doc/webhookd/copyright /usr/share/doc/webhookd/changelog.Debian.gz \
  /usr/share/doc/webhookd/README.md /usr/share/doc/webhookd/docs/operations.md \
  /usr/share/doc/webhookd/docs/install.md \
  /usr/share/doc/webhookd/examples/rules.toml /usr/share/doc/webhookd/examples/env.example \
  /usr/share/man/man1/webhookd.1.gz /usr/share/man/man1/webhookd-check.1.gz \
  /usr/share/man/man1/webhookd-deliveries-replay.1.gz \
  /usr/share/bash-completion/completions/webhookd \
  /usr/share/zsh/vendor-completions/_webhookd \
  /usr/share/fish/vendor_completions.d/webhookd.fish; do
  grep -qx "$path" <<<"$listing" || fail "$path is not in the package"
done
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dpkg-deb --control "$deb" "$scratch/control"
[ "$(cat "$scratch/control/conffiles")" = /etc/webhookd/webhookd.env ] \
  || fail "conffiles is not exactly /etc/webhookd/webhookd.env: $(cat "$scratch/control/conffiles")"
for script in postinst prerm postrm; do
  [ -x "$scratch/control/$script" ] || fail "no $script in the package"
done

# 4. lintian: nothing left but the justified overrides (deploy/deb/
# lintian-overrides, packaged where lintian reads them).
echo "== lintian (O: an override, N: its justification)"
lintian --fail-on none --display-info --show-overrides "$deb"
# The verdict: any error, warning or info not overridden fails.
lintian --fail-on error,warning,info --display-info "$deb" >/dev/null

# 5. The packaged binary against the packaged configuration, from an extracted
# tree, in a clean environment (no .env, no WEBHOOKD_* from this shell).
root="$scratch/root"
dpkg-deb --extract "$deb" "$root"
env_file="$root/etc/webhookd/webhookd.env"
if grep -nEv '^[[:space:]]*(#|$)' "$env_file"; then
  fail "the packaged webhookd.env sets the variables above: it must only comment"
fi
for unit in webhookd.service webhookd.socket; do
  cmp "$stage/units/$unit" "$root/lib/systemd/system/$unit" || fail "packaged $unit differs"
done
# run VAR=value... -- ARGS: the extracted webhookd with only these variables.
run() {
  local vars=()
  while [ "$1" != -- ]; do vars+=("$1"); shift; done
  shift
  (cd "$scratch" && env -i PATH=/usr/bin:/bin "${vars[@]}" "$root/usr/bin/webhookd" "$@")
}
[ "$(run -- --version)" = "webhookd $version" ] || fail "webhookd --version is not webhookd $version"
run -- --help | grep -q '^  check ' || fail "webhookd --help lists no check command"
# As shipped, before the admin adds the secret: refused, naming what is missing.
status=0
out=$(run -- --env-file "$env_file" check 2>&1) || status=$?
[ "$status" = 2 ] && grep -q WEBHOOKD_SECRET <<<"$out" \
  || fail "check without a secret: exit $status, not 2 naming WEBHOOKD_SECRET: $out"
# With a secret passed as the unit passes it, and the packaged example rules.
printf 'test-secret-%s\n' "$RANDOM$RANDOM" >"$scratch/webhook-secret"
status=0
out=$(run WEBHOOKD_SECRET_FILE="$scratch/webhook-secret" \
  WEBHOOKD_STORE="sqlite:$scratch/webhookd.db" \
  WEBHOOKD_RULES="$root/usr/share/doc/webhookd/examples/rules.toml" \
  -- --env-file "$env_file" check 2>&1) || status=$?
echo "$out"
[ "$status" = 0 ] && grep -q '^configuration OK' <<<"$out" \
  && grep -q 'rules .* rules in .*examples/rules.toml' <<<"$out" \
  || fail "the packaged webhookd check with a secret and the example rules: exit $status"
grep -q test-secret <<<"$out" && fail "check printed the secret"

# 6. The man pages render without warnings, the bash completion loads.
for page in "$root"/usr/share/man/man1/*.1.gz; do
  warnings=$(MANWIDTH=80 man --warnings -E UTF-8 -l "$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || fail "man $(basename "$page"): $warnings"
done
MANWIDTH=80 man -l "$root/usr/share/man/man1/webhookd.1.gz" 2>/dev/null | grep -q '^FILES' \
  || fail "webhookd(1) has no FILES section"
bash -c 'source "$1" && complete -p webhookd' _ "$root/usr/share/bash-completion/completions/webhookd" >/dev/null \
  || fail "the bash completion does not register for webhookd"

echo "deploy/deb/build.sh: $deb built and checked in $((SECONDS - started)) s"
