#!/usr/bin/env bash
# cargo-deny with the policy in deny.toml: licenses (an allow-list), bans (duplicate
# versions reported, wildcard versions denied), sources (crates.io only) must pass;
# advisories (the RustSec database) are checked when the database can be had.
# Installs cargo-deny from crates.io when it is missing (a few minutes of compiling).
#
# The advisory database is a git repository on GitHub, which this project's machines
# cannot reach: then a copy already on the machine is used (saying how old it is), and
# without one the check is SKIPPED, which this script says loudly; it is never faked.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deny --version >/dev/null 2>&1; then
  echo "== installing cargo-deny (cargo install --locked)"
  cargo install --locked cargo-deny >/dev/null
fi

echo "-- cargo deny: licenses, bans, sources"
cargo deny --locked check --hide-inclusion-graph --show-stats licenses bans sources

echo "-- cargo deny: advisories"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cargo deny --locked --log-level error check advisories >"$log" 2>&1; then
  cat "$log"
  echo "advisories ok (RustSec database fetched now)"
  exit 0
fi
if ! grep -q "failed to fetch advisory database" "$log"; then
  cat "$log"
  echo "cargo deny: advisories FAILED (see above)" >&2
  exit 1
fi
db=$(find "${CARGO_HOME:-$HOME/.cargo}/advisory-dbs" -mindepth 2 -maxdepth 2 -name crates -type d 2>/dev/null | head -n 1)
if [ -n "$db" ]; then
  age=$(git -C "$(dirname "$db")" log -1 --format=%cr 2>/dev/null || echo "of unknown age")
  echo "!! the RustSec advisory database cannot be fetched; using the copy on this machine ($age)"
  cargo deny --locked --log-level error check --disable-fetch advisories
  exit $?
fi
grep -m 3 -E "fatal|ERROR" "$log" | sed 's/^/   /' || true
cat <<'TXT'
!! ========================================================================================
!! ADVISORIES NOT CHECKED: the RustSec advisory database (a git repository on GitHub)
!! cannot be fetched from this machine and no copy of it is here. Licenses, bans and
!! sources were checked; known vulnerabilities in dependencies were NOT. Run
!! `scripts/check-deny.sh` where GitHub is reachable (or put a clone of the database under
!! ~/.cargo/advisory-dbs/) to check them.
!! ========================================================================================
TXT
