#!/usr/bin/env bash
# stagegate in the harness's gateway slot (bench/run.sh sets the variables): writes a config
# from the environment and execs stagegate in the foreground.
#   gateway:        one model, stable only
#   gateway-canary: stable 95 % / candidate 5 % in basis points, sticky on X-User-Id
#   gateway-canary-nometrics: the same with per-request metrics recording off (its cost)
#   gateway-canary-predict: the canary, reading every answer's prediction (model quality)
#   gateway-canary-mirror:  the same in a rollout stage mirroring 100 % of stable's requests to
#                           the candidate (shadow traffic) and comparing the answers
#   gateway-canary-nopeek:  the canary without the liveness peek before reusing a pooled
#                           upstream connection (upstream_pool.check_idle: false; its cost)
#   gateway-canary-accesslog: the canary with a JSON access log line per request, written to a
#                           file in the run directory (its cost)
#   gateway-canary-base:    the canary run by STAGEGATE_BASE_BIN, a build of another commit: a
#                           change measured against its base in the same blocks (paired A/B)
set -eu
bin="${STAGEGATE_BIN:?STAGEGATE_BIN must point to the stagegate binary}"
if [ "$GATEWAY_SCENARIO" = gateway-canary-base ]; then
  bin="${STAGEGATE_BASE_BIN:?gateway-canary-base needs STAGEGATE_BASE_BIN (a build of the base commit)}"
fi
cfg="$GATEWAY_RUNDIR/stagegate.json"
versions="{\"name\": \"v1\", \"endpoints\": [\"$BACKEND_HOST:$BACKEND_PORT\"]}"
traffic='{"weights": {"v1": 10000}}'
metrics=true
check_idle=true
[ "$GATEWAY_SCENARIO" = gateway-canary-nopeek ] && check_idle=false
if [ "$GATEWAY_SCENARIO" = gateway-canary-nometrics ]; then
  metrics=false
fi
if [ "$GATEWAY_SCENARIO" != gateway ]; then
  versions="$versions, {\"name\": \"v2\", \"endpoints\": [\"$BACKEND_HOST:$CANARY_PORT\"]}"
  traffic="{\"weights\": {\"v1\": $((STABLE_WEIGHT * 100)), \"v2\": $((CANARY_WEIGHT * 100))},
            \"stage\": \"canary-$CANARY_WEIGHT\", \"sticky\": {\"header\": \"X-User-Id\"}}"
fi
predictions=
if [ "$GATEWAY_SCENARIO" = gateway-canary-predict ] || [ "$GATEWAY_SCENARIO" = gateway-canary-mirror ]; then
  predictions='"predictions": {"label": "/prediction", "value": "/prediction"},'
fi
logging=
if [ "$GATEWAY_SCENARIO" = gateway-canary-accesslog ]; then
  logging="\"logging\": {\"access_log\": {\"path\": \"$GATEWAY_RUNDIR/access.log\"}},"
fi
rollout=
if [ "$GATEWAY_SCENARIO" = gateway-canary-mirror ]; then
  # Never promoted during a run: the stage bakes for an hour.
  rollout=", \"rollout\": {\"candidate\": \"v2\", \"mirror\": {\"max_in_flight\": 256, \"queue\": 1024},
    \"stages\": [{\"name\": \"canary-$CANARY_WEIGHT\", \"weight_bp\": $((CANARY_WEIGHT * 100)),
                  \"mirror_percent\": 100, \"min_bake_ms\": 3600000}],
    \"gates\": {\"sequential\": {\"errors\": false, \"latency\": false}}}"
  traffic='{"sticky": {"header": "X-User-Id"}}'
fi
cat >"$cfg" <<CFG
{
  "listeners": [{"address": "$GATEWAY_HOST", "port": $GATEWAY_PORT}],
  "workers": $GATEWAY_THREADS,
  "admin": {"enabled": false},
  "metrics": {"enabled": $metrics},
  "limits": {"max_connections_per_worker": 16000},
  "client_timeouts": {"idle_ms": 75000},
  "upstream_pool": {"max_idle_per_endpoint": 1024, "idle_timeout_ms": 75000, "check_idle": $check_idle},
  "state": {"dir": "$GATEWAY_RUNDIR/state"}, $logging
  "models": [{"name": "m", "stable": "v1", $predictions "versions": [$versions], "traffic": $traffic $rollout}]
}
CFG
exec "$bin" --config "$cfg"
