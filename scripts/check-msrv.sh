#!/usr/bin/env bash
# What can be checked of the minimum supported Rust version (the workspace's `rust-version`)
# without a second toolchain:
# 1. every workspace member declares that `rust-version` (clippy's `incompatible_msrv` lint,
#    which the clippy step of scripts/test-all.sh runs with warnings as errors, reads it and
#    rejects standard-library APIs stabilised after it);
# 2. every crate the build uses (normal and build dependencies, all features, locked
#    versions) declares a `rust-version` no newer than ours; dev-only dependencies (tests,
#    benches) are listed but do not fail the check.
# The compiler of that version itself is NOT run: only the current toolchain is installed
# and no other can be fetched here, so language features newer than the MSRV (which clippy
# does not see) are not caught. Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v jq >/dev/null 2>&1 || {
  echo "check-msrv: jq is needed (apt-get install jq)" >&2
  exit 2
}

meta=$(cargo metadata --format-version 1 --all-features --locked)
msrv=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' Cargo.toml | head -n 1)
[ -n "$msrv" ] || {
  echo "check-msrv: no rust-version in [workspace.package] of Cargo.toml" >&2
  exit 2
}
echo "check-msrv: workspace MSRV $msrv, toolchain $(rustc --version)"

# newer A B: true when version A is newer than version B ("1.85" == "1.85.0").
newer() {
  local a="$1" b="$2"
  [[ "$a" =~ ^[0-9]+\.[0-9]+$ ]] && a="$a.0"
  [[ "$b" =~ ^[0-9]+\.[0-9]+$ ]] && b="$b.0"
  [ "$a" != "$b" ] && [ "$(printf '%s\n%s\n' "$a" "$b" | sort -V | tail -n 1)" = "$a" ]
}

status=0
# 1. Members.
while IFS=$'\t' read -r name rv; do
  if [ "$rv" = "null" ]; then
    echo "   FAIL  member $name declares no rust-version (add rust-version.workspace = true)"
    status=1
  elif [ "$rv" != "$msrv" ]; then
    echo "   FAIL  member $name declares rust-version $rv, the workspace $msrv"
    status=1
  fi
done < <(jq -r '.workspace_members as $m | .packages[] | select(.id as $id | $m | index($id))
  | [.name, (.rust_version // "null")] | @tsv' <<<"$meta")

# 2. Dependencies, by name and version: those the build needs, then all (dev included).
host=$(rustc -vV | sed -n 's/^host: //p')
build_deps=$(cargo tree --workspace --all-features --locked --target "$host" -e normal,build \
  --prefix none --format '{p}' | awk '{print $1" "$2}' | sort -u)
all_deps=$(cargo tree --workspace --all-features --locked --target "$host" -e normal,build,dev \
  --prefix none --format '{p}' | awk '{print $1" "$2}' | sort -u)
declared=$(jq -r '.packages[] | select(.source != null) | [.name, "v" + .version, (.rust_version // "-")] | @tsv' <<<"$meta")

checked=0
undeclared=0
while IFS=$'\t' read -r name version rv; do
  grep -qxF "$name $version" <<<"$all_deps" || continue
  checked=$((checked + 1))
  if [ "$rv" = "-" ]; then
    undeclared=$((undeclared + 1))
    continue
  fi
  if newer "$rv" "$msrv"; then
    if grep -qxF "$name $version" <<<"$build_deps"; then
      echo "   FAIL  $name $version needs Rust $rv (> $msrv)"
      status=1
    else
      echo "   note  $name $version (dev-dependency only) needs Rust $rv (> $msrv): tests need a newer compiler"
    fi
  fi
done <<<"$declared"
echo "check-msrv: $checked registry crates in the graph, $undeclared of them declare no rust-version"
echo "check-msrv: NOTE the Rust $msrv compiler itself was not run (no second toolchain can be"
echo "check-msrv:      fetched on this machine); this is a declared-versions and std-API check only."
exit "$status"
