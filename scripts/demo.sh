#!/usr/bin/env bash
# Installs what is missing, builds, then runs the demo: stagegate (config/demo.json) on
# :8080 in front of three stagegate-mockmodel processes playing v1 (stable, :9001), v2 (a
# good candidate, as fast and as right as v1: its rollout starts at 5 %) and v3 (a bad build:
# 5 % errors and twice as slow, for the second act). The script sends traffic itself (about
# 200 requests a second from 500 sticky users), so v2 is seen promoted stage by stage within a
# few minutes. Ctrl-C stops everything.
# Rollout state lives in demo-state/ (delete it to start the rollout over).
# --with-prometheus also runs Debian's Prometheus on 127.0.0.1:9090 with deploy/prometheus/
# (scrape config, recording and alerting rules) scraping the demo gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
with_prometheus=0
case "${1:-}" in
  --with-prometheus) with_prometheus=1 ;;
  "") ;;
  *) echo "usage: $0 [--with-prometheus]" >&2; exit 2 ;;
esac
./scripts/install-deps.sh
./scripts/build.sh >/dev/null
bin=build
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/stagegate-mockmodel" --version v1 --listen 127.0.0.1:9001 --latency-ms 2 --jitter-ms 1 &
pids+=($!)
"$bin/stagegate-mockmodel" --version v2 --listen 127.0.0.1:9002 --latency-ms 2 --jitter-ms 1 --bias 0.02 &
pids+=($!)
"$bin/stagegate-mockmodel" --version v3 --listen 127.0.0.1:9003 --latency-ms 4 --jitter-ms 2 \
  --error-rate 0.05 --error-status 503 &
pids+=($!)
"$bin/stagegate" --config config/demo.json &
gw=$!
pids+=($gw)
if ((with_prometheus)); then
  mkdir -p demo-state/prometheus
  prometheus --config.file=deploy/prometheus/prometheus.yml \
    --storage.tsdb.path=demo-state/prometheus --web.listen-address=127.0.0.1:9090 \
    --log.level=warn &
  pids+=($!)
fi
for _ in $(seq 100); do
  curl -s -o /dev/null -X POST localhost:8080/v1/models/demo:predict -d '{"instances":[[1,2]]}' && break
  sleep 0.1
done
# Traffic: batches of 50 requests over one keep-alive connection, each batch from one of 500
# users (sticky: a user keeps their version), about 200 requests a second.
traffic() {
  local urls=()
  for _ in $(seq 50); do urls+=(http://127.0.0.1:8080/v1/models/demo:predict); done
  while :; do
    curl -s -o /dev/null -X POST -H "X-User-Id: user-$((RANDOM % 500))" \
      -d '{"instances":[[1,2]]}' "${urls[@]}" >/dev/null 2>&1 || sleep 1
    sleep 0.2
  done
}
traffic &
pids+=($!)
cat <<'MSG'

stagegate demo is up: model "demo", stable v1, rollout of v2 in progress (5 % -> 25 % -> 50 %
-> stable; each stage needs 20 s, enough candidate requests, and passing gates). This script
sends about 200 requests a second, so v2 becomes stable within a few minutes: watch it.
  curl -i -X POST localhost:8080/v1/models/demo:predict -d '{"instances":[[1,2]]}'
  curl -i -X POST localhost:8080/v1/models/demo:predict -H 'X-User-Id: alice' -d '{"instances":[[1,2]]}'
  curl -i -X POST localhost:8080/v1/models/demo:predict -H 'X-Stagegate-Force-Version: v2' -d '{"instances":[[1,2]]}'
  curl -i -X POST localhost:8080/v1/chat/completions -d '{"model":"demo","messages":[]}'
Watch it:   build/stagegatectl status demo --watch     (or curl -s localhost:9901/api/v1/rollouts/demo)
Steer it:   build/stagegatectl pause demo --reason "look first"; build/stagegatectl promote demo
History:    build/stagegatectl events demo --follow
Metrics:    curl -s localhost:9901/api/v1/models/demo/metrics    (Prometheus: :9901/metrics)
Feedback:   curl -s -X POST localhost:9901/api/v1/feedback -d '{"request_id":"<X-Request-Id of an answer>","label":0.8}'
Act two:    once v2 is stable, roll out the bad v3 and watch the gates roll it back, with why:
            build/stagegatectl start demo -f config/demo-bad-rollout.json
            build/stagegatectl status demo --watch;  build/stagegatectl events demo
Versions that answered 200 sample requests:
MSG
for _ in $(seq 200); do
  curl -s -o /dev/null -D - -X POST localhost:8080/v1/models/demo:predict -d '{"instances":[[1,2]]}' \
    | tr -d '\r' | grep -i '^x-stagegate-version'
done | sort | uniq -c
"$bin/stagegatectl" rollouts
if ((with_prometheus)); then
  cat <<'MSG'
Prometheus: http://127.0.0.1:9090/graph?g0.expr=stagegate%3Aversion_requests%3Arate1m
            http://127.0.0.1:9090/alerts   (rules from deploy/prometheus/)
Grafana:    import deploy/grafana/stagegate-rollouts.json with this Prometheus as its data source
MSG
fi
echo "Ctrl-C to stop."
wait "$gw"
