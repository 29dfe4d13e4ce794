#!/usr/bin/env bash
# Checks that the `rdubbo` facade builds with every feature set a user can pick on its own:
# no features, each feature alone, the defaults, and all features. The features are read
# from `cargo metadata`, so a feature added to crates/rdubbo/Cargo.toml is covered without
# editing this script. Each set is checked with clippy, warnings as errors (an import
# unused under some feature set fails) and `unwrap()` denied: library code only (the tests
# assume the defaults and may unwrap), which covers every library crate the facade pulls in.
# Usage: scripts/check-features.sh [package] (default: rdubbo). Needs jq.
set -euo pipefail
cd "$(dirname "$0")/.."
pkg="${1:-rdubbo}"
command -v jq >/dev/null 2>&1 || {
  echo "check-features: jq is needed (apt-get install jq)" >&2
  exit 2
}

mapfile -t features < <(
  cargo metadata --format-version 1 --no-deps --locked |
    jq -r --arg pkg "$pkg" '.packages[] | select(.name == $pkg) | .features | keys[] | select(. != "default")'
)
if [ "${#features[@]}" -eq 0 ]; then
  echo "check-features: package $pkg has no features (or does not exist)" >&2
  exit 2
fi

sets=("--no-default-features")
for f in "${features[@]}"; do
  sets+=("--no-default-features --features $f")
done
sets+=("" "--all-features")

failed=()
for set in "${sets[@]}"; do
  label="${set:-(default features)}"
  start=$SECONDS
  # shellcheck disable=SC2086 # $set is a list of flags
  if cargo clippy --locked --quiet -p "$pkg" --lib $set -- -D warnings -D clippy::unwrap_used; then
    echo "   ok    $pkg $label ($((SECONDS - start)) s)"
  else
    echo "   FAIL  $pkg $label"
    failed+=("$label")
  fi
done
echo "check-features: ${#sets[@]} feature sets of $pkg checked (features: ${features[*]})"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'check-features: %s does not build with:\n' "$pkg" >&2
  printf '   %s\n' "${failed[@]}" >&2
  exit 1
fi
