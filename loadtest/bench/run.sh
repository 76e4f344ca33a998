#!/usr/bin/env bash
# Reverse-proxy benchmark harness.
#
# One command runs the whole comparison on 127.0.0.1 and prints a markdown
# table:  backend-direct | nginx | HAProxy | nginx/HAProxy 95/5 canary split |
# optional "gateway" (any command given in GATEWAY_CMD).
#
# Every measurement starts a fresh backend and a fresh proxy, warms up, runs
# one bounded wrk load, samples CPU / memory / upstream connections, and stops
# them again by their recorded PIDs. See README.md for the details.
#
#   ./run.sh                                   # defaults: 3 reps, c64+c256 10 s, c1 5 s
#   GATEWAY_CMD='/path/gw --listen 127.0.0.1:$GATEWAY_PORT --upstream 127.0.0.1:$BACKEND_PORT' ./run.sh
#   REPS=1 DURATION=3 WARMUP=1 LAT_DURATION=2 ./run.sh   # quick smoke run
#   ./run.sh --summarize results/A results/B             # pool earlier runs' raw.csv
set -u -o pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ./run.sh --summarize DIR [DIR...]: re-print the tables from earlier runs'
# raw.csv files (several dirs are pooled); runs nothing.
if [ "${1:-}" = --summarize ]; then
  shift
  [ $# -gt 0 ] || { echo "usage: $0 --summarize RESULT_DIR..." >&2; exit 2; }
  files=(); for d in "$@"; do files+=("$d/raw.csv"); done
  exec awk -F, -f "$HERE/summarize.awk" "${files[@]}"
fi

# ---------------------------------------------------------------- knobs ----
REPS=${REPS:-3}                 # repetitions (medians are reported)
DURATION=${DURATION:-10}        # seconds per measured throughput run
CONNS=${CONNS:-"64 256"}        # wrk connection counts for throughput runs
LAT_DURATION=${LAT_DURATION:-5} # seconds of the -c1 latency probe; 0 = skip it
WARMUP=${WARMUP:-2}             # seconds of discarded warm-up load before each run
WRK_THREADS=${WRK_THREADS:-1}
WRK_TIMEOUT=${WRK_TIMEOUT:-5s}  # a request slower than this counts as an error
LOAD_CPU=${LOAD_CPU:-0}         # wrk + backend (+ this script) run here (a taskset list: 0, 4-7, ...)
PROXY_CPU=${PROXY_CPU:-1}       # the unit under test gets these cores alone (a taskset list)
PROXY_WORKERS=${PROXY_WORKERS:-1}     # nginx worker_processes, HAProxy nbthread, stagegate workers
BACKEND_WORKERS=${BACKEND_WORKERS:-1} # the nginx backend's worker_processes
BASE_PORT=${BASE_PORT:-18080}   # ports BASE_PORT+1 .. BASE_PORT+16 are used
NGINX_KEEPALIVE=${NGINX_KEEPALIVE:-64}  # nginx `upstream { keepalive N; }`
NGINX_BIGPOOL_KEEPALIVE=${NGINX_BIGPOOL_KEEPALIVE:-1024}  # same, for the optional nginx-bigpool
STABLE_WEIGHT=${STABLE_WEIGHT:-95}
CANARY_WEIGHT=${CANARY_WEIGHT:-5}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-20}  # seconds a proxy may take to answer 200
SCENARIOS=${SCENARIOS:-"direct nginx haproxy nginx-canary haproxy-canary gateway gateway-canary"}
REQ_BYTES=${REQ_BYTES:-0}        # > 0: request bodies padded to this size (needs WRK_SCRIPT=lua/post-sticky.lua)
RESP_BYTES=${RESP_BYTES:-0}      # > 0: the backend answers with a JSON document of this size
IDLE_CONNS=${IDLE_CONNS:-0}      # > 0: also measure each proxy's memory per idle keep-alive connection
PERF_RECORD=${PERF_RECORD:-0}    # 1: perf cpu-clock samples (with call graphs) of the proxy core
                                 # during each measured run, in OUT_DIR/perf/ (needs linux-perf)
SYSCALLS=${SYSCALLS:-0}          # 1: count the proxy core's system calls during each measured run
                                 # (perf stat on syscall tracepoints: no ptrace, so it barely
                                 # perturbs the run), per request, in OUT_DIR/syscalls/
SYSCALL_NAMES=${SYSCALL_NAMES:-"epoll_wait epoll_pwait epoll_ctl read write readv writev recvfrom sendto recvmsg sendmsg accept4 connect close setsockopt getsockopt futex io_uring_enter"}
export REQ_BYTES
GATEWAY_CMD=${GATEWAY_CMD:-}
GATEWAY_CANARY_CMD=${GATEWAY_CANARY_CMD:-}
OUT_DIR=${OUT_DIR:-$HERE/results/$(date +%Y%m%d-%H%M%S)}
KEEP_RUNDIR=${KEEP_RUNDIR:-0}   # 1 = keep the temp dir (configs, logs) for debugging

BACKEND_PORT=$((BASE_PORT + 1))
CANARY_PORT=$((BASE_PORT + 2))
STATUS_PORT=$((BASE_PORT + 9))
declare -A PORT_OF=(
  [nginx]=$((BASE_PORT + 10)) [haproxy]=$((BASE_PORT + 11))
  [nginx-canary]=$((BASE_PORT + 12)) [haproxy-canary]=$((BASE_PORT + 13))
  [gateway]=$((BASE_PORT + 14)) [gateway-canary]=$((BASE_PORT + 15))
  [nginx-bigpool]=$((BASE_PORT + 16))
  [gateway-canary-nometrics]=$((BASE_PORT + 17))
  [gateway-canary-predict]=$((BASE_PORT + 18)) [gateway-canary-mirror]=$((BASE_PORT + 19))
  [gateway-canary-nopeek]=$((BASE_PORT + 20)) [gateway-canary-accesslog]=$((BASE_PORT + 21))
  [gateway-canary-base]=$((BASE_PORT + 22))
  [direct]=$BACKEND_PORT
)
PREDICT_PATH=/v1/models/m:predict
PROBE_BODY='{"instances":[[0.5,1.5,2.5,3.5]]}'
CLK_TCK=$(getconf CLK_TCK)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

for tool in wrk nginx haproxy curl taskset timeout ss awk; do
  command -v "$tool" >/dev/null || die "missing '$tool' (apt-get install -y wrk nginx-light haproxy curl)"
done
[ "$PERF_RECORD" != 1 ] || command -v perf >/dev/null || die "PERF_RECORD=1 needs perf (apt-get install -y linux-perf)"
[ "$SYSCALLS" != 1 ] || command -v perf >/dev/null || die "SYSCALLS=1 needs perf (apt-get install -y linux-perf)"
NCPU=$(nproc)
# "0-2,5" -> "0 1 2 5"
cpu_list() {
  local part out=()
  for part in ${1//,/ }; do
    if [[ $part == *-* ]]; then out+=($(seq "${part%-*}" "${part#*-}")); else out+=("$part"); fi
  done
  echo "${out[@]}"
}
for c in $(cpu_list "$LOAD_CPU") $(cpu_list "$PROXY_CPU"); do
  [[ $c =~ ^[0-9]+$ ]] && [ "$c" -lt "$NCPU" ] || die "LOAD_CPU/PROXY_CPU: '$c' is not a cpu below $NCPU"
done
for c in $(cpu_list "$PROXY_CPU"); do
  [[ " $(cpu_list "$LOAD_CPU") " == *" $c "* ]] && log "WARNING: cpu $c is in LOAD_CPU and PROXY_CPU: the proxy shares it with wrk"
done

# ------------------------------------------------------ process tracking ----
RUNDIR=$(mktemp -d -t rpbench.XXXXXX) || die "mktemp failed"
chmod 0755 "$RUNDIR"            # nginx workers run as 'nobody'
PIDS_FILE=$RUNDIR/pids          # "pid starttime" of everything we started
: >"$PIDS_FILE"
declare -A PSTART=()
FAILURES=0

# /proc/PID/stat fields after the ")" of comm: $1=state(3) ... utime(14)=$12
# stime(15)=$13 starttime(22)=$20.
stat_fields() { local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1; echo "${s##*) }"; }
proc_start() { local f; f=$(stat_fields "$1") || return 1; set -- $f; echo "${20}"; }
proc_cpu_ticks() { local f; f=$(stat_fields "$1") || { echo 0; return; }; set -- $f; echo $(( ${12} + ${13} )); }
# alive = exists, is not a zombie, and is still the process we started (same
# start time as recorded: a recycled PID is never signalled)
alive_as() {  # alive_as PID STARTTIME
  local want=$2 f; f=$(stat_fields "$1") || return 1
  set -- $f
  [ "$1" != Z ] && [ "${20}" = "$want" ]
}
alive_pid() {
  local pid=$1 f
  if [ -n "${PSTART[$pid]:-}" ]; then alive_as "$pid" "${PSTART[$pid]}"; return; fi
  f=$(stat_fields "$pid") || return 1
  set -- $f
  [ "$1" != Z ]
}
record_pid() {
  local pid=$1 st
  [ -n "${PSTART[$pid]:-}" ] && return 0
  st=$(proc_start "$pid") || return 0
  PSTART[$pid]=$st
  echo "$pid $st" >>"$PIDS_FILE"
}
# pid + all its descendants (live ones)
tree_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { par[$1] = $2; n++; ids[n] = $1 }
    END {
      keep[root] = 1; changed = 1
      while (changed) {
        changed = 0
        for (i = 1; i <= n; i++) { p = ids[i]; if (!(p in keep) && (par[p] in keep)) { keep[p] = 1; changed = 1 } }
      }
      for (p in keep) print p
    }'
}
record_tree() { local p; for p in $(tree_pids "$1"); do record_pid "$p"; done; }
stop_tree() {  # TERM the root; then TERM descendants left over; KILL after 5 s; reap
  local root=$1 p i left
  [ -n "$root" ] || return 0
  record_tree "$root"
  local pids; pids=$(tree_pids "$root")
  alive_pid "$root" && kill -TERM "$root" 2>/dev/null
  for i in $(seq 50); do
    left=0; for p in $pids; do alive_pid "$p" && left=1; done
    [ $left = 0 ] && break
    [ "$i" = 20 ] && for p in $pids; do alive_pid "$p" && kill -TERM "$p" 2>/dev/null; done
    sleep 0.1
  done
  for p in $pids; do alive_pid "$p" && { log "  pid $p still running after SIGTERM, sending SIGKILL"; kill -KILL "$p" 2>/dev/null; }; done
  for i in $(seq 20); do alive_pid "$root" || break; sleep 0.1; done
  alive_pid "$root" && { log "  WARNING: pid $root survived SIGKILL"; return 0; }
  wait "$root" 2>/dev/null   # reap (it is our child)
  return 0
}
cleanup() {
  local pid st any=0
  trap - EXIT INT TERM HUP
  while read -r pid st; do
    if alive_as "$pid" "$st"; then any=1; kill -TERM "$pid" 2>/dev/null; fi
  done <"$PIDS_FILE"
  if [ $any = 1 ]; then
    sleep 1
    while read -r pid st; do alive_as "$pid" "$st" && kill -KILL "$pid" 2>/dev/null; done <"$PIDS_FILE"
  fi
  while read -r pid st; do alive_as "$pid" "$st" || wait "$pid" 2>/dev/null; done <"$PIDS_FILE"
  if [ "$KEEP_RUNDIR" = 1 ]; then log "kept $RUNDIR"; else rm -rf "$RUNDIR"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM HUP

# This script (and every curl it runs) stays off the proxy core.
taskset -pc "$LOAD_CPU" $$ >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null  # root may raise it: IDLE_CONNS needs room

# --------------------------------------------------------------- helpers ----
port_busy() { [ -n "$(ss -Hltn "sport = :$1" 2>/dev/null)" ]; }

# render TEMPLATE OUT NAME LISTEN_PORT UPSTREAM_LINES(with \n)
render() {
  awk -v ups="$5" '{ if ($0 ~ /@UPSTREAM_SERVERS@/) print ups; else print }' "$1" |
    sed -e "s#@RUNDIR@#$RUNDIR#g" -e "s/@NAME@/$3/g" -e "s/@LISTEN_PORT@/$4/g" \
        -e "s/@BACKEND_PORT@/$BACKEND_PORT/g" -e "s/@CANARY_PORT@/$CANARY_PORT/g" \
        -e "s/@STATUS_PORT@/$STATUS_PORT/g" -e "s/@KEEPALIVE@/${RENDER_KEEPALIVE:-$NGINX_KEEPALIVE}/g" \
        -e "s/@WORKERS@/${RENDER_WORKERS:-1}/g" -e "s/@REUSEPORT@/${RENDER_REUSEPORT:-}/g" \
        -e "s#@ANSWER_V1@#$ANSWER_V1#" -e "s#@ANSWER_V2@#$ANSWER_V2#" >"$2"
}

# the backend's answer for VERSION: a small inline JSON, or (RESP_BYTES > 0) a padded JSON file
# served by nginx's static module (405 for POST turned into the file, so POST works)
answer() {
  local doc="{\"model\":\"m\",\"version\":\"$1\",\"prediction\":[$2]}"
  if [ "$RESP_BYTES" -gt 0 ]; then
    awk -v v="$1" -v p="$2" -v n="$RESP_BYTES" 'BEGIN {
      head = "{\"model\":\"m\",\"version\":\"" v "\",\"prediction\":[" p "],\"pad\":\""
      pad = n - length(head) - 2; s = "x"; while (length(s) < pad) s = s s
      printf "%s%s\"}", head, substr(s, 1, pad) }' >"$RUNDIR/answer-$1.json"
    echo "alias $RUNDIR/answer-$1.json; error_page 405 =200 \$uri;"
  else
    echo "return 200 '$doc';"
  fi
}

# written once per run: every backend the run starts serves the same answers
ANSWER_V1=$(answer v1 0.1,0.9)
ANSWER_V2=$(answer v2 0.2,0.8)

# wait until POST to the port returns 200 with a prediction; fail if pid dies
wait_ready() {
  local port=$1 pid=$2 logf=$3 deadline=$((SECONDS + STARTUP_TIMEOUT)) code
  while [ $SECONDS -lt $deadline ]; do
    alive_pid "$pid" || { log "  process $pid exited during startup; log tail:"; tail -n 20 "$logf" >&2; return 1; }
    code=$(curl -s -o "$RUNDIR/ready.body" -w '%{http_code}' --max-time 2 -X POST \
      -H 'Content-Type: application/json' --data "$PROBE_BODY" "http://127.0.0.1:$port$PREDICT_PATH" 2>/dev/null)
    if [ "$code" = 200 ] && grep -q '"prediction"' "$RUNDIR/ready.body"; then return 0; fi
    sleep 0.1
  done
  log "  port $port not answering 200 after ${STARTUP_TIMEOUT}s (last code '$code'); log tail:"; tail -n 20 "$logf" >&2
  return 1
}

backend_accepts() { curl -s --max-time 2 "http://127.0.0.1:$STATUS_PORT/status" | awk 'NR == 3 { print $1 }'; }

# "busy idle user" jiffies summed over a cpu list (user: user + nice; the rest of busy is the
# kernel's: system, irq, softirq, steal)
core_jiffies() {
  awk -v cpus=" $(cpu_list "$1") " 'index(cpus, " " substr($1, 4) " ") && $1 ~ /^cpu[0-9]/ {
      busy += $2 + $3 + $4 + $7 + $8 + $9; idle += $5 + $6; user += $2 + $3 }
    END { print busy + 0, idle + 0, user + 0 }' /proc/stat
}
tree_cpu_ticks() { local p t=0; for p in $(tree_pids "$1"); do t=$((t + $(proc_cpu_ticks "$p"))); done; echo $t; }
# "sum max" of a /proc/PID/status field (kB) over the tree
tree_mem() {
  local p v sum=0 max=0
  for p in $(tree_pids "$1"); do
    v=$(awk -v k="$2:" '$1 == k { print $2 }' "/proc/$p/status" 2>/dev/null)
    [ -n "$v" ] || continue
    sum=$((sum + v)); [ "$v" -gt "$max" ] && max=$v
  done
  echo "$sum $max"
}

BACKEND_PID=""
UUT_PID=""   # unit under test: the proxy, or the backend in "direct"

start_backend() {  # $1 = cpu
  port_busy "$BACKEND_PORT" && { log "  port $BACKEND_PORT already in use"; return 1; }
  RENDER_WORKERS=$BACKEND_WORKERS render "$HERE/conf/backend.nginx.conf" "$RUNDIR/backend.conf" backend 0 ""
  taskset -c "$1" nginx -p "$RUNDIR" -c "$RUNDIR/backend.conf" -e "$RUNDIR/backend.error.log" \
    >>"$RUNDIR/backend.out" 2>&1 &
  BACKEND_PID=$!
  record_pid "$BACKEND_PID"
  wait_ready "$BACKEND_PORT" "$BACKEND_PID" "$RUNDIR/backend.error.log" || return 1
  record_tree "$BACKEND_PID"
}

start_proxy() {  # $1 = scenario; sets UUT_PID
  local s=$1 port=${PORT_OF[$1]} conf logf ups cmd
  port_busy "$port" && { log "  port $port already in use"; return 1; }
  logf="$RUNDIR/$s.log"
  case "$s" in
    nginx|nginx-canary|nginx-bigpool)
      local ka=$NGINX_KEEPALIVE
      if [ "$s" = nginx-canary ]; then ups="        server 127.0.0.1:$BACKEND_PORT weight=$STABLE_WEIGHT;\n        server 127.0.0.1:$CANARY_PORT weight=$CANARY_WEIGHT;"
      else ups="        server 127.0.0.1:$BACKEND_PORT;"; fi
      [ "$s" = nginx-bigpool ] && ka=$NGINX_BIGPOOL_KEEPALIVE
      conf="$RUNDIR/$s.conf"
      # Several workers get a listening socket each (SO_REUSEPORT), as stagegate's do.
      local reuse=""; [ "$PROXY_WORKERS" -gt 1 ] && reuse=reuseport
      RENDER_KEEPALIVE=$ka RENDER_WORKERS=$PROXY_WORKERS RENDER_REUSEPORT=$reuse \
        render "$HERE/conf/proxy.nginx.conf" "$conf" "$s" "$port" "$ups"
      taskset -c "$PROXY_CPU" nginx -p "$RUNDIR" -c "$conf" -e "$RUNDIR/$s.error.log" >>"$logf" 2>&1 &
      UUT_PID=$!; logf="$RUNDIR/$s.error.log" ;;
    haproxy|haproxy-canary)
      if [ "$s" = haproxy ]; then ups="    server stable 127.0.0.1:$BACKEND_PORT"
      else ups="    server stable 127.0.0.1:$BACKEND_PORT weight $STABLE_WEIGHT\n    server canary 127.0.0.1:$CANARY_PORT weight $CANARY_WEIGHT"; fi
      conf="$RUNDIR/$s.cfg"
      RENDER_WORKERS=$PROXY_WORKERS render "$HERE/conf/haproxy.cfg" "$conf" "$s" "$port" "$ups"
      taskset -c "$PROXY_CPU" haproxy -db -f "$conf" >>"$logf" 2>&1 &
      UUT_PID=$! ;;
    gateway|gateway-canary*)  # the variants gateway.sh knows (PORT_OF lists them)
      if [ "$s" = gateway ]; then cmd=$GATEWAY_CMD; else cmd=$GATEWAY_CANARY_CMD; fi
      mkdir -p "$RUNDIR/$s"
      # The command runs under bash (so $GATEWAY_PORT etc. may appear in it),
      # pinned to the proxy core; it must stay in the foreground.
      GATEWAY_HOST=127.0.0.1 GATEWAY_PORT=$port BACKEND_HOST=127.0.0.1 BACKEND_PORT=$BACKEND_PORT \
      CANARY_PORT=$CANARY_PORT STABLE_WEIGHT=$STABLE_WEIGHT CANARY_WEIGHT=$CANARY_WEIGHT \
      GATEWAY_THREADS=$PROXY_WORKERS GATEWAY_CPU=$PROXY_CPU GATEWAY_RUNDIR="$RUNDIR/$s" GATEWAY_SCENARIO=$s \
        taskset -c "$PROXY_CPU" bash -c "$cmd" >>"$logf" 2>&1 &
      UUT_PID=$! ;;
    *) log "  unknown scenario '$s'"; return 1 ;;
  esac
  record_pid "$UUT_PID"
  wait_ready "$port" "$UUT_PID" "$logf" || return 1
  record_tree "$UUT_PID"
}

# send N requests on one keep-alive connection, print "v2_count N"
canary_check() {
  local port=$1 n=${2:-400} urls=() i
  for ((i = 0; i < n; i++)); do urls+=("http://127.0.0.1:$port$PREDICT_PATH"); done
  local v2
  v2=$(curl -s --max-time 30 -X POST -H 'Content-Type: application/json' --data "$PROBE_BODY" "${urls[@]}" |
    grep -o '"version":"v2"' | wc -l)
  echo "$v2 $n"
}

run_wrk() {  # $1 url $2 conns $3 seconds $4 outfile
  timeout -k 5 $(($3 + 30)) taskset -c "$LOAD_CPU" wrk -t"$WRK_THREADS" -c"$2" -d"$3"s \
    --timeout "$WRK_TIMEOUT" --latency -s "${WRK_SCRIPT:-$HERE/lua/post.lua}" "$1" >"$4" 2>&1 &
  local w=$!
  record_pid "$w"
  wait "$w"
}

# Time a fixed single-threaded CPU loop on one core (ms). On a shared VM the
# vCPU speed drifts; this records it next to every measurement.
cal_one() {
  local t0=$EPOCHREALTIME t1
  taskset -c "$1" awk 'BEGIN { for (i = 0; i < 1e7; i++) s += i }' &
  local p=$!; record_pid "$p"; wait "$p"
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }'
}
calibrate() { echo "$(cal_one "$LOAD_CPU") $(cal_one "$PROXY_CPU")"; }
CAL_LOAD=0; CAL_PROXY=0

CSV="$OUT_DIR/raw.csv"
CSV_HEADER="rep,scenario,conns,duration_s,status,rps,p50_us,p90_us,p99_us,p999_us,max_us,errors,uut_core_busy_pct,load_core_busy_pct,uut_core_us_per_req,uut_proc_cpu_pct,uut_proc_us_per_req,uut_vmhwm_kb,uut_vmhwm_max_proc_kb,uut_idle_rss_kb,uut_idle_rss_max_proc_kb,backend_accepts,canary_v2,canary_n,calib_load_cpu_ms,calib_proxy_cpu_ms,uut_core_user_us_per_req,uut_core_kernel_us_per_req"
declare -A CANARY_RESULT=()

# measure REP SCENARIO CONNS SECONDS -> appends one CSV row
measure() {
  local rep=$1 s=$2 c=$3 d=$4 port url out status=ok
  local rps=0 p50=0 p90=0 p99=0 p999=0 pmax=0 errs=0
  local ub=0 lb=0 uus=0 pcpu=0 pus=0 uuser=0 ukern=0 hwm="0 0" idle_sum=0 idle_max=0 acc="" cv="" cn=""
  BACKEND_PID=""; UUT_PID=""
  if [ "$s" = direct ]; then
    start_backend "$PROXY_CPU" || status=startfail
    UUT_PID=$BACKEND_PID
  else
    start_backend "$LOAD_CPU" || status=startfail
    [ $status = ok ] && { start_proxy "$s" || status=startfail; }
  fi
  port=${PORT_OF[$s]}; url="http://127.0.0.1:$port$PREDICT_PATH"
  out="$RUNDIR/wrk.$s.c$c.r$rep.txt"

  if [ $status = ok ]; then
    if [[ $s == *canary* && -z "${CANARY_RESULT[$s]:-}" ]]; then
      read -r cv cn < <(canary_check "$port" 400)
      CANARY_RESULT[$s]="$cv $cn"
      log "  canary split check: $cv/$cn responses from the canary (v2)"
    fi
    read -r idle_sum idle_max < <(tree_mem "$UUT_PID" VmRSS)
    [ "$WARMUP" -gt 0 ] && run_wrk "$url" "$c" "$WARMUP" "$out.warmup"
    local b0 i0 u0 b1 i1 u1 lb0 li0 lb1 li1 t0 t1 a0 a1
    read -r b0 i0 u0 < <(core_jiffies "$PROXY_CPU"); read -r lb0 li0 _ < <(core_jiffies "$LOAD_CPU")
    t0=$(tree_cpu_ticks "$UUT_PID"); a0=$(backend_accepts)
    local perf_pid=""
    if [ "$PERF_RECORD" = 1 ]; then
      mkdir -p "$OUT_DIR/perf"
      perf record -q -e cpu-clock -F 4999 -g -C "$PROXY_CPU" -o "$OUT_DIR/perf/$s.c$c.r$rep.data" \
        -- sleep "$d" >/dev/null 2>&1 &
      perf_pid=$!; record_pid "$perf_pid"
    fi
    local sys_pid="" sys_out="$OUT_DIR/syscalls/$s.c$c.r$rep.csv" name events=(-e raw_syscalls:sys_enter)
    if [ "$SYSCALLS" = 1 ]; then
      mkdir -p "$OUT_DIR/syscalls"
      for name in $SYSCALL_NAMES; do events+=(-e "syscalls:sys_enter_$name"); done
      # The whole proxy core (the proxy has it alone), for as long as wrk's measured run.
      perf stat -x, -o "$sys_out" -C "$PROXY_CPU" "${events[@]}" -- sleep "$d" >/dev/null 2>&1 &
      sys_pid=$!; record_pid "$sys_pid"
    fi
    run_wrk "$url" "$c" "$d" "$out"
    [ -n "$perf_pid" ] && wait "$perf_pid"
    [ -n "$sys_pid" ] && wait "$sys_pid"
    read -r b1 i1 u1 < <(core_jiffies "$PROXY_CPU"); read -r lb1 li1 _ < <(core_jiffies "$LOAD_CPU")
    t1=$(tree_cpu_ticks "$UUT_PID"); a1=$(backend_accepts)
    hwm=$(tree_mem "$UUT_PID" VmHWM)
    alive_pid "$UUT_PID" || { log "  unit under test died during the run"; status=died; }
    local line; line=$(grep '^WRKRESULT' "$out" | tail -n 1)
    if [ -z "$line" ]; then
      log "  wrk produced no result:"; tail -n 5 "$out" >&2; status=wrkfail
    else
      eval "$(echo "$line" | tr ' ' '\n' | grep '=' | sed 's/^/W_/')"
      rps=$W_rps; p50=$W_p50_us; p90=$W_p90_us; p99=$W_p99_us; p999=$W_p999_us; pmax=$W_max_us
      errs=$((W_err_connect + W_err_read + W_err_write + W_err_status + W_err_timeout))
      [ "$errs" -gt 0 ] && log "  wrk errors: connect=$W_err_connect read=$W_err_read write=$W_err_write status=$W_err_status timeout=$W_err_timeout"
      read -r ub lb uus pcpu pus uuser ukern < <(awk -v b=$((b1 - b0)) -v i=$((i1 - i0)) -v lb=$((lb1 - lb0)) -v li=$((li1 - li0)) \
        -v u=$((u1 - u0)) -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="$W_requests" -v secs="$W_duration_s" 'BEGIN {
          printf "%.1f %.1f %.2f %.1f %.2f %.2f %.2f\n", 100 * b / (b + i + 1e-9), 100 * lb / (lb + li + 1e-9),
            b * 1e6 / hz / (n + 1e-9), 100 * t / hz / secs, t * 1e6 / hz / (n + 1e-9),
            u * 1e6 / hz / (n + 1e-9), (b - u) * 1e6 / hz / (n + 1e-9) }')
      [ -n "$a0" ] && [ -n "$a1" ] && acc=$((a1 - a0 - 1))
      if [ -n "$sys_pid" ] && [ -s "$sys_out" ]; then
        # count,,event,... lines -> "event per-request" lines beside perf's own output
        awk -F, -v n="$W_requests" '$3 ~ /sys_enter/ && $1 ~ /^[0-9]+$/ {
            name = $3; sub(/.*sys_enter_?/, "", name); if (name == "") name = "all"
            printf "%s %.3f\n", name, $1 / (n + 1e-9) }' "$sys_out" >"${sys_out%.csv}.per-request"
        log "  system calls per request: $(tr '\n' ' ' <"${sys_out%.csv}.per-request")"
      fi
    fi
  fi
  [ $status = ok ] || FAILURES=$((FAILURES + 1))
  read -r cv cn <<<"${CANARY_RESULT[$s]:-}"
  [ -n "$UUT_PID" ] && [ "$UUT_PID" != "$BACKEND_PID" ] && stop_tree "$UUT_PID"
  stop_tree "$BACKEND_PID"
  echo "$rep,$s,$c,$d,$status,$rps,$p50,$p90,$p99,$p999,$pmax,$errs,$ub,$lb,$uus,$pcpu,$pus,${hwm% *},${hwm#* },$idle_sum,$idle_max,$acc,$cv,$cn,$CAL_LOAD,$CAL_PROXY,$uuser,$ukern" >>"$CSV"
  log "  -> $status rps=$rps p50=${p50}us p99=${p99}us errors=$errs proxy-core=${ub}% load-core=${lb}% VmHWM=${hwm% *}kB upstream-conns=$acc"
}

# memory per idle keep-alive connection: the proxy's RSS (all its processes) before and after
# IDLE_CONNS connections have each made one request and stay open, idle. The client opens them
# at most 64 at a time, so the proxy needs no more upstream connections than a normal load.
IDLE_CSV="$OUT_DIR/idle.csv"
measure_idle() {
  local s=$1 port=${PORT_OF[$1]} status=ok before=0 after=0 ok=0 failed=0 word client hold i
  local fifo="$RUNDIR/idle.fifo" out="$RUNDIR/idle.$1.out" n=$IDLE_CONNS
  # HAProxy needs two descriptors per connection it may hold (maxconn 9950 in haproxy.cfg fits
  # a 20000-descriptor limit that an unprivileged container cannot raise): it gets what fits.
  [[ $s == haproxy* && $n -gt 9900 ]] && n=9900
  BACKEND_PID=""; UUT_PID=""
  start_backend "$LOAD_CPU" || status=startfail
  [ $status = ok ] && { start_proxy "$s" || status=startfail; }
  if [ $status = ok ]; then
    read -r before _ < <(tree_mem "$UUT_PID" VmRSS)
    rm -f "$fifo"; mkfifo "$fifo"
    taskset -c "$LOAD_CPU" python3 "$HERE/idle_conns.py" --port "$port" --count "$n" <"$fifo" >"$out" 2>&1 &
    client=$!; record_pid "$client"
    exec {hold}>"$fifo"   # the client holds its connections until this closes
    for i in $(seq 1200); do grep -q '^ready' "$out" && break; alive_pid "$client" || break; sleep 0.1; done
    read -r word ok failed < <(grep '^ready' "$out" || echo "none 0 $n")
    read -r after _ < <(tree_mem "$UUT_PID" VmRSS)
    alive_pid "$UUT_PID" || status=died
    exec {hold}>&-
    wait "$client" 2>/dev/null
    [ "$failed" = 0 ] || { log "  $failed of $n idle connections failed:"; tail -n 5 "$out" >&2; status=connfail; }
  fi
  [ $status = ok ] || FAILURES=$((FAILURES + 1))
  [ -n "$UUT_PID" ] && stop_tree "$UUT_PID"
  stop_tree "$BACKEND_PID"
  echo "$s,$n,$status,$ok,$before,$after,$(( (after - before) * 1024 / n ))" >>"$IDLE_CSV"
  log "  -> $status: RSS ${before} -> ${after} kB with $ok idle connections = $(( (after - before) * 1024 / n )) B each"
}

# ------------------------------------------------------------------ main ----
mkdir -p "$OUT_DIR" || die "cannot create $OUT_DIR"
echo "$CSV_HEADER" >"$CSV"

ACTIVE=()
SKIPPED=()
for s in $SCENARIOS; do
  case "$s" in
    gateway) [ -n "$GATEWAY_CMD" ] || { SKIPPED+=("gateway (GATEWAY_CMD unset)"); continue; } ;;
    gateway-canary*) [ -n "$GATEWAY_CANARY_CMD" ] || { SKIPPED+=("$s (GATEWAY_CANARY_CMD unset)"); continue; } ;;
  esac
  [ -n "${PORT_OF[$s]:-}" ] || die "unknown scenario '$s'"
  ACTIVE+=("$s")
done
[ ${#ACTIVE[@]} -gt 0 ] || die "no scenario to run"

LOADS=()
[ "$LAT_DURATION" -gt 0 ] && LOADS+=("1:$LAT_DURATION")
for c in $CONNS; do LOADS+=("$c:$DURATION"); done

{
  echo "date: $(date -Is)"
  echo "kernel: $(uname -srm)"
  echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo) x $NCPU"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
  echo "haproxy: $(haproxy -v 2>&1 | head -n 1)"
  echo "wrk: $(wrk -v 2>&1 | head -n 1)"
  echo "params: REPS=$REPS DURATION=$DURATION CONNS='$CONNS' LAT_DURATION=$LAT_DURATION WARMUP=$WARMUP" \
       "WRK_THREADS=$WRK_THREADS LOAD_CPU=$LOAD_CPU PROXY_CPU=$PROXY_CPU NGINX_KEEPALIVE=$NGINX_KEEPALIVE" \
       "PROXY_WORKERS=$PROXY_WORKERS BACKEND_WORKERS=$BACKEND_WORKERS" \
       "NGINX_BIGPOOL_KEEPALIVE=$NGINX_BIGPOOL_KEEPALIVE" \
       "split=$STABLE_WEIGHT/$CANARY_WEIGHT BASE_PORT=$BASE_PORT"
  echo "scenarios: ${ACTIVE[*]}"
  [ -n "$GATEWAY_CMD" ] && echo "GATEWAY_CMD: $GATEWAY_CMD"
  [ -n "$GATEWAY_CANARY_CMD" ] && echo "GATEWAY_CANARY_CMD: $GATEWAY_CANARY_CMD"
} >"$OUT_DIR/env.txt"

total=$((REPS * ${#ACTIVE[@]} * ${#LOADS[@]}))
est=0; for l in "${LOADS[@]}"; do est=$((est + ${l#*:} + WARMUP + 1)); done
est=$((est * REPS * ${#ACTIVE[@]}))
log "results -> $OUT_DIR ; $total measurements, about $((est / 60 + 1)) min"
[ ${#SKIPPED[@]} -gt 0 ] && log "skipped: ${SKIPPED[*]}"

k=0
n=${#ACTIVE[@]}
for ((rep = 1; rep <= REPS; rep++)); do
  for l in "${LOADS[@]}"; do
    # All scenarios of one (rep, load) block run back to back, so the
    # comparison with `direct` is paired in time; the order rotates per rep.
    read -r CAL_LOAD CAL_PROXY < <(calibrate)
    log "calibration: ${CAL_LOAD} ms on cpu$LOAD_CPU, ${CAL_PROXY} ms on cpu$PROXY_CPU (fixed CPU loop; higher = slower vCPU)"
    for ((j = 0; j < n; j++)); do
      s=${ACTIVE[$(((j + rep - 1) % n))]}
      k=$((k + 1))
      log "[$k/$total] rep $rep  $s  c=${l%%:*}  ${l#*:}s"
      measure "$rep" "$s" "${l%%:*}" "${l#*:}"
    done
  done
done

if [ "$IDLE_CONNS" -gt 0 ]; then
  echo "scenario,conns,status,connected,rss_before_kb,rss_after_kb,bytes_per_conn" >"$IDLE_CSV"
  for s in "${ACTIVE[@]}"; do
    [ "$s" = direct ] && continue
    log "idle memory: $s with $IDLE_CONNS idle keep-alive connections"
    measure_idle "$s"
  done
fi

# --------------------------------------------------------------- summary ----
SUMMARY="$OUT_DIR/summary.md"
{
  echo "## Reverse-proxy benchmark ($(date -Is))"
  echo
  sed 's/^/    /' "$OUT_DIR/env.txt"
  echo
  awk -F, -f "$HERE/summarize.awk" "$CSV"
  echo
  for s in "${!CANARY_RESULT[@]}"; do
    read -r cv cn <<<"${CANARY_RESULT[$s]}"
    echo "- canary split check, $s: $cv of $cn responses came from the canary (v2) = $(awk -v a="$cv" -v b="$cn" 'BEGIN { printf "%.1f", 100 * a / b }')% (configured $CANARY_WEIGHT%)"
  done
  if [ -f "$IDLE_CSV" ]; then
    echo
    echo "| scenario | idle keep-alive connections | RSS before kB | RSS after kB | bytes per connection |"
    echo "|---|---:|---:|---:|---:|"
    awk -F, 'NR > 1 { printf "| %s | %d%s | %d | %d | %d |\n", $1, $4, ($3 == "ok" ? "" : " (" $3 ")"), $5, $6, $7 }' "$IDLE_CSV"
    echo
  fi
  if [ "$SYSCALLS" = 1 ] && compgen -G "$OUT_DIR/syscalls/*.per-request" >/dev/null; then
    echo
    echo "System calls per request on the proxy core (perf stat, syscall tracepoints; median of the repetitions):"
    echo
    for f in "$OUT_DIR"/syscalls/*.per-request; do
      b=$(basename "$f" .per-request); awk -v k="${b%.r*}" '{ print k, $1, $2 }' "$f"
    done | sort -k1,1 -k2,2 -k3,3g | awk '
      { key = $1 SUBSEP $2; v[key, ++n[key]] = $3; if (!(key in seen)) { seen[key] = 1; order[++m] = key } }
      END { printf "| scenario.conns | call | per request |\n|---|---|---:|\n"
            for (i = 1; i <= m; i++) { k = order[i]; c = n[k]
              med = (c % 2) ? v[k, (c + 1) / 2] : (v[k, c / 2] + v[k, c / 2 + 1]) / 2
              if (med >= 0.005) { split(k, p, SUBSEP); printf "| %s | %s | %.2f |\n", p[1], p[2], med } } }'
  fi
  for sk in ${SKIPPED[@]+"${SKIPPED[@]}"}; do echo "- skipped: $sk"; done
  echo "- raw per-run data: $CSV"
} >"$SUMMARY"
cat "$SUMMARY"

if [ "$FAILURES" -gt 0 ]; then
  log "$FAILURES measurement(s) failed (see status column in $CSV)"
  KEEP_RUNDIR=1
  exit 1
fi
exit 0
