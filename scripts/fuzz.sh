#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan) and runs each for the
# given number of seconds (default 60) on a copy of its seed corpus. Fails on any crash, leak
# or sanitizer report; a finding is left in build-fuzz/findings/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
./scripts/install-deps.sh --fuzz
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$(nproc)"
mkdir -p build-fuzz/findings
for name in config routing session admin predictions; do
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$name"/* "$work"/
  echo "fuzz_$name: ${seconds}s"
  build-fuzz/tests/fuzz/fuzz_"$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix=build-fuzz/findings/"$name"- -print_final_stats=1 "$work" 2>&1 | tail -12
  rm -rf "$work"
done
