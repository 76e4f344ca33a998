#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan) and runs each for the given
# number of seconds (default 60) on a copy of its seed corpus. Fails on any crash, leak or
# sanitizer report; a finding is left in <build dir>/findings/.
# The harnesses come from the asan preset's build (the one CI builds for the ASan test run, at
# -O0); FUZZ_PRESET=fuzz builds them alone at -O2 for long runs.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
preset=${FUZZ_PRESET:-asan}
build_dir=build-$preset
targets=()
for name in config routing session h2 admin predictions request_head answer_head; do targets+=(fuzz_"$name"); done
./scripts/install-deps.sh --build  # clang, with libFuzzer
cmake --preset "$preset" >/dev/null
cmake --build --preset "$preset" -j"$(nproc)" --target "${targets[@]}"
mkdir -p "$build_dir"/findings
for name in config routing session h2 admin predictions request_head answer_head; do
  work=$(mktemp -d)
  cp tests/fuzz/corpus/"$name"/* "$work"/
  echo "fuzz_$name: ${seconds}s"
  "$build_dir"/tests/fuzz/fuzz_"$name" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
    -artifact_prefix="$build_dir"/findings/"$name"- -print_final_stats=1 "$work" 2>&1 | tail -12
  rm -rf "$work"
done
