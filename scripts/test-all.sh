#!/usr/bin/env bash
# Runs every test of rdubbo on a Debian machine that has only the Rust toolchain:
# installs the real peers the tests talk to (curl as a foreign JSON-RPC client, the Debian
# ZooKeeper server and its zkCli.sh, a JDK and Caucho Hessian (libhessian-java) for the
# Hessian2 conformance peer that the codec's tests compile, which the tests start on loopback ports of their own
# and stop by PID; Node.js for the official npm `nacos` client and Debian's Chromium for
# the registry console, both driven by tests that install their npm packages into
# target/tmp on first use), then checks
# formatting and lints, then runs every test of the workspace (unit, integration, interop,
# property tests, doc tests), then fuzzes the Hessian2 and Dubbo frame decoders for a
# bounded time (scripts/fuzz-smoke.sh). Servers the tests need are started and stopped by the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/hessian.jar ] || need+=(libhessian-java)
[ -f /usr/share/java/zookeeper.jar ] && [ -x /usr/share/zookeeper/bin/zkCli.sh ] || need+=(zookeeper)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing test peers: ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked --no-fail-fast
echo "== fuzz smoke run (cargo-fuzz, ${FUZZ_SECONDS:-30}s per decoder)"
./scripts/fuzz-smoke.sh
