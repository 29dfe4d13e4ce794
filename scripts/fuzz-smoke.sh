#!/usr/bin/env bash
# Bounded fuzzing with cargo-fuzz (libFuzzer), each target for FUZZ_SECONDS (default 30)
# starting from the seeds in fuzz/seeds: the Hessian2 decoder, the Dubbo frame/body
# decoder, the Dubbo provider and consumer over loopback TCP, and the HTTP/2 server and
# client under tri:// (the connection targets: any bytes a hostile client sends, or a
# hostile provider answers two calls with; no panic, the connection ends with the peer's
# bytes, nothing of it outlives it). Installs cargo-fuzz when missing. Works on the stable
# toolchain (RUSTC_BOOTSTRAP lets cargo-fuzz pass its -Z flags; no sanitizer needed for
# safe code). A crash fails the script and leaves the input under fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-30}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install --locked cargo-fuzz >/dev/null
fi
for target in hessian_decode dubbo_frame dubbo_server dubbo_client http2_server http2_client; do
  echo "== fuzzing $target for ${secs}s"
  mkdir -p "fuzz/corpus/$target"
  set +e
  RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none "$target" \
    "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 2>&1 |
    grep -E "^(stat::number_of_executed_units|stat::peak_rss|==|.*(panicked|deadly signal|ERROR|Test unit written))"
  status="${PIPESTATUS[0]}"
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzzing $target failed (exit $status); input under fuzz/artifacts/$target/"
    exit 1
  fi
done
