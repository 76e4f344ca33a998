#!/usr/bin/env bash
# Soak: stagegate under steady wrk load on 127.0.0.1 for MINUTES (default 10) while rollouts
# loop: a bad candidate (v3, 20 % errors) that must be rolled back, then a good one that must
# complete, again and again. Predictions are read from every answer and remembered for
# feedback (up to 50000), and each rollout's first stage mirrors half of stable's requests to
# the candidate. At the end it checks that
#   - RSS stayed flat (the last sample within 10 % of a warm one, a third into the run),
#   - no unexpected error (every non-2xx answer is one of the bad candidate's 500s),
#   - per version, the requests in /metrics (mirrored ones included) equal what the backend
#     counted, and the clients' requests sum to what wrk counted (give or take the requests in
#     flight when wrk stopped),
# and prints one summary line for loadtest/RESULTS.md. Stops by itself; exit 1 on a failed check.
# usage: loadtest/soak.sh [MINUTES]
set -euo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-10}
./scripts/install-deps.sh --bench
BUILD_DIR=build-release BUILD_TYPE=Release ./scripts/build.sh -DSTAGEGATE_TESTS=OFF >/dev/null
bin=build-release
work=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT INT TERM

"$bin/stagegate-mockmodel" --version v1 --listen 127.0.0.1:19101 >/dev/null 2>&1 & pids+=($!)
"$bin/stagegate-mockmodel" --version v2 --listen 127.0.0.1:19102 >/dev/null 2>&1 & pids+=($!)
"$bin/stagegate-mockmodel" --version v3 --listen 127.0.0.1:19103 --error-rate 0.2 >/dev/null 2>&1 & pids+=($!)
cat > "$work/gw.json" <<JSON
{"listeners": [{"address": "127.0.0.1", "port": 19180}],
 "admin": {"address": "127.0.0.1", "port": 19190},
 "state": {"dir": "$work/state"}, "workers": 1,
 "models": [{"name": "m", "stable": "v1",
   "predictions": {"preset": "tfserving", "feedback": {"max_pending": 50000}},
   "versions": [{"name": "v1", "endpoints": ["127.0.0.1:19101"]},
                {"name": "v2", "endpoints": ["127.0.0.1:19102"]},
                {"name": "v3", "endpoints": ["127.0.0.1:19103"]}]}]}
JSON
rollout() {  # candidate -> a rollout file
  cat > "$work/r-$1.json" <<JSON
{"candidate": "$1", "interval_ms": 1000, "fast_rollback_consecutive_errors": 0,
 "stages": [{"weight_bp": 1000, "mirror_percent": 50, "min_bake_ms": 5000, "min_requests": 300},
            {"weight_bp": 5000, "min_bake_ms": 5000, "min_requests": 1000}],
 "gates": {"min_requests": 200, "max_error_rate": 0.05, "sequential": {"latency": false}}}
JSON
}
rollout v1; rollout v2; rollout v3
"$bin/stagegate" --config "$work/gw.json" 2>"$work/gw.log" & gw=$!; pids+=($gw)
ctl() { "$bin/stagegatectl" --server http://127.0.0.1:19190 "$@"; }
for _ in $(seq 100); do ctl models >/dev/null 2>&1 && break; sleep 0.1; done

wrk -t1 -c32 -d"${minutes}m" -s loadtest/bench/lua/post.lua \
  http://127.0.0.1:19180/v1/models/m:predict > "$work/wrk.out" 2>&1 & wrk_pid=$!

# RSS every 10 s.
( while kill -0 "$wrk_pid" 2>/dev/null; do
    awk '/VmRSS/ {print $2}' "/proc/$gw/status"; sleep 10
  done ) > "$work/rss" & pids+=($!)

# Rollouts, bad then good, until the load stops.
stable=v1; good=v2; rolled_back=0; completed=0; wrong=0
phase() { ctl -o json rollouts | python3 -c 'import json,sys; r=json.load(sys.stdin)["rollouts"]; print(r[0]["phase"] if r else "none")'; }
while kill -0 "$wrk_pid" 2>/dev/null; do
  for cand in v3 "$good"; do
    kill -0 "$wrk_pid" 2>/dev/null || break
    ctl start m -f "$work/r-$cand.json" --reason soak >/dev/null || { wrong=$((wrong+1)); continue; }
    while kill -0 "$wrk_pid" 2>/dev/null && [[ $(phase) == progressing ]]; do sleep 1; done
    p=$(phase)
    if [[ $cand == v3 ]]; then
      [[ $p == rolled_back ]] && rolled_back=$((rolled_back+1)) || { [[ $p == progressing ]] || wrong=$((wrong+1)); }
    elif [[ $p == completed ]]; then
      completed=$((completed+1)); good=$stable; stable=$cand
    elif [[ $p != progressing ]]; then
      wrong=$((wrong+1))
    fi
    [[ $p == progressing ]] && ctl abort m --reason "soak over" >/dev/null 2>&1 || true
  done
done
wait "$wrk_pid" || true
sleep 1  # let the last answers be counted (the metrics collect once a second)

wrk_requests=$(sed -n 's/.*WRKRESULT requests=\([0-9]*\).*/\1/p' "$work/wrk.out")
non2xx=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$work/wrk.out"); non2xx=${non2xx:-0}
metrics=$(curl -s http://127.0.0.1:19190/metrics)
# Sum of the samples of stagegate_requests_total for model m whose line matches all patterns.
sum_requests() {
  local lines
  lines=$(grep '^stagegate_requests_total{model="m"' <<<"$metrics" || true)
  for pattern in "$@"; do lines=$(grep -E -- "$pattern" <<<"$lines" || true); done
  awk '{s+=$2} END {print s+0}' <<<"$lines"
}
gw_count() { sum_requests "version=\"$1\""; }
gw_errors_not_v3=$(( $(sum_requests 'code="5') - $(sum_requests 'version="v3"' 'code="5') ))
v3_500=$(sum_requests 'version="v3"' 'code="500"')
status=0
total=0
for v in v1 v2 v3; do
  port=$((19100 + ${v#v}))
  backend=$(( $(curl -s "http://127.0.0.1:$port/mock/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])') - 1 ))
  gateway=$(gw_count "$v")
  total=$((total + gateway - $(sum_requests "version=\"$v\"" 'stage="[^"]*/mirror"')))
  echo "$v: gateway counted $gateway, backend $backend"
  [[ $gateway -eq $backend ]] || { echo "FAIL: $v counts differ"; status=1; }
done
mirrored=$(sum_requests 'stage="[^"]*/mirror"')
# (a family with no samples, such as no mirror ever dropped, sums to 0)
parsed=$({ grep '^stagegate_predictions_total{model="m".*outcome="parsed"' <<<"$metrics" || true; } | awk '{s+=$2} END {print s+0}')
dropped=$({ grep '^stagegate_mirror_dropped_total{model="m"' <<<"$metrics" || true; } | awk '{s+=$2} END {print s+0}')
echo "mirrored requests answered $mirrored (dropped $dropped), predictions read $parsed"
inflight=$((total - wrk_requests))
echo "wrk counted $wrk_requests, the gateway $total (in flight when wrk stopped: $inflight)"
(( inflight >= 0 && inflight <= 32 )) || { echo "FAIL: totals differ by more than the 32 connections"; status=1; }
[[ $gw_errors_not_v3 -eq 0 ]] || { echo "FAIL: $gw_errors_not_v3 5xx from versions that never fail"; status=1; }
(( non2xx <= v3_500 )) || { echo "FAIL: $non2xx non-2xx answers, the bad candidate gave $v3_500"; status=1; }
(( wrong == 0 )) || { echo "FAIL: $wrong rollouts ended the wrong way"; status=1; }
mapfile -t rss < "$work/rss"
# The baseline is taken once warm: a third into the run (at least the first minute's end).
n=${#rss[@]}; i=$(( n / 3 > 6 ? n / 3 : (n > 6 ? 6 : n / 2) ))
base=${rss[$i]}; last=${rss[-1]}
echo "RSS KiB: warm (sample $i of $n, 10 s apart) $base, at the end $last, max $(sort -n "$work/rss" | tail -1)"
echo "RSS KiB each minute: $(awk 'NR % 6 == 1' "$work/rss" | tr '\n' ' ')"
(( last * 10 <= base * 11 )) || { echo "FAIL: RSS grew more than 10 %"; status=1; }
echo "SOAKRESULT minutes=$minutes requests=$wrk_requests rps=$(sed -n 's/.*WRKRESULT.* rps=\([0-9.]*\).*/\1/p' "$work/wrk.out") bad_rolled_back=$rolled_back good_completed=$completed wrong=$wrong rss_kib_warm=$base rss_kib_end=$last non2xx=$non2xx v3_500=$v3_500 mirrored=$mirrored mirror_dropped=$dropped predictions=$parsed status=$status"
exit $status
