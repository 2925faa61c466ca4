#!/usr/bin/env bash
# Idle cost of `tagwatch run`: resident memory and CPU while it watches DEPLOYMENTS opted-in
# Deployments over REPOSITORIES repositories that are all on their newest tag (nothing to patch).
#
# Runs the test bed (in-process API server + a real docker-registry), starts tagwatch against it,
# waits for the first discovery and poll cycle, lets it settle for WARMUP seconds, then samples for
# WINDOW seconds. Needs docker-registry (apt-get install -y docker-registry), curl and python3.
#
#   bench/idle.sh                                  # 1000 deployments, 100 repositories, 120 s
#   WINDOW=60 DEPLOYMENTS=200 REPOSITORIES=20 bench/idle.sh
#
# Environment: DEPLOYMENTS (1000), REPOSITORIES (100), TAGS (20), WINDOW (120 s), WARMUP (10 s),
# INTERVAL (30s, tagwatch --interval), SAMPLE_EVERY (5 s), STARTUP_TIMEOUT (600 s),
# SKIP_BUILD (unset: set to 1 to reuse target/release binaries), KEEP_TMP (unset: keep logs),
# TAGWATCH_BIN / TESTBED_BIN (the binaries to measure, e.g. an older build to compare with).
set -euo pipefail

DEPLOYMENTS=${DEPLOYMENTS:-1000}
REPOSITORIES=${REPOSITORIES:-100}
TAGS=${TAGS:-20}
WINDOW=${WINDOW:-120}
WARMUP=${WARMUP:-10}
INTERVAL=${INTERVAL:-30s}
SAMPLE_EVERY=${SAMPLE_EVERY:-5}
STARTUP_TIMEOUT=${STARTUP_TIMEOUT:-600}
NAMESPACE=bench

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

log() { printf '[idle] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

for tool in curl python3 getconf awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ -x /usr/bin/docker-registry ]] ||
    die "docker-registry is missing: apt-get update && apt-get install -y docker-registry"

if [[ -z ${SKIP_BUILD:-} ]]; then
    log "building release binaries"
    cargo build --release --bin tagwatch
    cargo build --release -p tagwatch-testbed --bin testbed
fi
TAGWATCH_BIN=${TAGWATCH_BIN:-$ROOT/target/release/tagwatch}
TESTBED_BIN=${TESTBED_BIN:-$ROOT/target/release/testbed}
[[ -x $TAGWATCH_BIN && -x $TESTBED_BIN ]] || die "release binaries missing (unset SKIP_BUILD)"

TMP=$(mktemp -d -t tagwatch-idle.XXXXXX)
TESTBED_PID=
TAGWATCH_PID=

stop() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop "$TAGWATCH_PID"
    stop "$TESTBED_PID"
    if [[ $status -ne 0 || -n ${KEEP_TMP:-} ]]; then
        log "logs kept in $TMP"
        if [[ $status -ne 0 ]]; then
            for f in testbed.err tagwatch.err; do
                [[ -s $TMP/$f ]] && { log "last lines of $f:"; tail -n 15 "$TMP/$f" >&2; }
            done
        fi
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polls `check` (a command) every 0.5 s until it succeeds or `seconds` pass.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        ((SECONDS < deadline)) || die "timed out after ${seconds}s waiting for $what"
        sleep 0.5
    done
}

alive() { kill -0 "$1" 2>/dev/null; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- test bed ---------------------------------------------------------------------------------
KUBECONFIG_PATH=$TMP/kubeconfig
log "starting the test bed: $REPOSITORIES repositories x $TAGS tags, $DEPLOYMENTS deployments"
"$TESTBED_BIN" --deployments "$DEPLOYMENTS" --repositories "$REPOSITORIES" --tags "$TAGS" \
    --namespace "$NAMESPACE" --kubeconfig "$KUBECONFIG_PATH" --ready-file "$TMP/ready" \
    >"$TMP/testbed.out" 2>"$TMP/testbed.err" &
TESTBED_PID=$!

testbed_ready() {
    alive "$TESTBED_PID" || die "the test bed exited early"
    [[ -e $TMP/ready ]]
}
wait_for "the test bed" "$STARTUP_TIMEOUT" testbed_ready
REGISTRY_HOST=$(sed -n 's/^READY registry=\([^ ]*\) .*/\1/p' "$TMP/testbed.out")
SEED_SECONDS=$(sed -n 's/^SEEDED .* seconds=\([0-9.]*\).*/\1/p' "$TMP/testbed.out")
[[ -n $REGISTRY_HOST ]] || die "no READY line from the test bed"
log "test bed ready: registry $REGISTRY_HOST, pushes took ${SEED_SECONDS}s"

# --- tagwatch ---------------------------------------------------------------------------------
PORT=$(free_port)
METRICS_URL=http://127.0.0.1:$PORT/metrics
CLK_TCK=$(getconf CLK_TCK)

# utime + stime of a process, in clock ticks (fields 14 and 15; the name in field 2 may hold spaces).
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# A /proc/<pid>/status field in kB (VmRSS, VmHWM).
status_kb() { awk -v key="$2:" '$1 == key { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }

# The sum of every sample of `name` whose labels contain `match` (an empty `match`: all).
metric_sum() {
    local name=$1 match=${2:-}
    curl -fsS --max-time 5 "$METRICS_URL" | awk -v name="$name" -v match_="$match" '
        $1 ~ ("^" name "([{]|$)") && (match_ == "" || index($1, match_) > 0) { sum += $NF; seen = 1 }
        END { if (seen) printf "%.0f\n", sum; else print 0 }'
}

log "starting tagwatch (listen 127.0.0.1:$PORT, interval $INTERVAL)"
START_TIME=$(now)
TAGWATCH_LEASE_NAMESPACE=$NAMESPACE "$TAGWATCH_BIN" run --kubeconfig "$KUBECONFIG_PATH" \
    -n "$NAMESPACE" --insecure-registry "$REGISTRY_HOST" --interval "$INTERVAL" \
    --listen "127.0.0.1:$PORT" --log-format json \
    >"$TMP/tagwatch.out" 2>"$TMP/tagwatch.err" &
TAGWATCH_PID=$!

tagwatch_ready() {
    alive "$TAGWATCH_PID" || die "tagwatch exited early"
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$PORT/readyz" || true) == 200 ]]
}
synced() {
    alive "$TAGWATCH_PID" || die "tagwatch exited early"
    (($(metric_sum tagwatch_workloads_watched) >= DEPLOYMENTS)) &&
        (($(metric_sum tagwatch_poll_cycles_total) >= 1))
}
wait_for "tagwatch /readyz" "$STARTUP_TIMEOUT" tagwatch_ready
READY_TIME=$(now)
wait_for "$DEPLOYMENTS watched workloads and a first poll cycle" "$STARTUP_TIMEOUT" synced
SYNCED_TIME=$(now)
STARTUP_TICKS=$(cpu_ticks "$TAGWATCH_PID")
STARTUP_RSS=$(status_kb "$TAGWATCH_PID" VmRSS)
log "first sync done; warming up ${WARMUP}s"
sleep "$WARMUP"

# --- the window -------------------------------------------------------------------------------
log "sampling for ${WINDOW}s"
TAGS_BEFORE=$(metric_sum tagwatch_registry_requests_total 'operation="tags"')
CYCLES_BEFORE=$(metric_sum tagwatch_poll_cycles_total)
UPDATES_BEFORE=$(metric_sum tagwatch_updates_total 'result="applied"')
TICKS_BEFORE=$(cpu_ticks "$TAGWATCH_PID")
WINDOW_START=$(now)
RSS_MIN=
RSS_MAX=0
RSS_SUM=0
RSS_N=0
while :; do
    alive "$TAGWATCH_PID" || die "tagwatch exited during the window"
    rss=$(status_kb "$TAGWATCH_PID" VmRSS)
    ((rss > RSS_MAX)) && RSS_MAX=$rss
    [[ -z $RSS_MIN ]] || ((rss < RSS_MIN)) && RSS_MIN=$rss
    RSS_SUM=$((RSS_SUM + rss))
    RSS_N=$((RSS_N + 1))
    elapsed=$(awk -v a="$WINDOW_START" -v b="$(now)" 'BEGIN { print int(b - a) }')
    ((elapsed >= WINDOW)) && break
    left=$((WINDOW - elapsed))
    sleep $((left < SAMPLE_EVERY ? left : SAMPLE_EVERY))
done
TICKS_AFTER=$(cpu_ticks "$TAGWATCH_PID")
WINDOW_END=$(now)
RSS_END=$(status_kb "$TAGWATCH_PID" VmRSS)
HWM=$(status_kb "$TAGWATCH_PID" VmHWM)
TAGS_AFTER=$(metric_sum tagwatch_registry_requests_total 'operation="tags"')
CYCLES_AFTER=$(metric_sum tagwatch_poll_cycles_total)
UPDATES_AFTER=$(metric_sum tagwatch_updates_total 'result="applied"')
REPOS_WATCHED=$(metric_sum tagwatch_repositories_watched)
WORKLOADS_WATCHED=$(metric_sum tagwatch_workloads_watched)

stop "$TAGWATCH_PID"
TAGWATCH_PID=
stop "$TESTBED_PID"
TESTBED_PID=
REGISTRY_TAG_LISTS=$(sed -n 's/^REQUESTS tags_list=\([0-9]*\) .*/\1/p' "$TMP/testbed.out")
APISERVER_REQUESTS=$(sed -n 's/^REQUESTS .*apiserver=\([0-9]*\).*/\1/p' "$TMP/testbed.out")

# --- report -----------------------------------------------------------------------------------
INTERVAL_SECONDS=$(python3 -c 'import re, sys
total = 0
for n, unit in re.findall(r"(\d+(?:\.\d+)?)\s*(ms|h|m|s)", sys.argv[1]):
    total += float(n) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
print(total)' "$INTERVAL")

awk \
    -v deployments="$DEPLOYMENTS" -v repositories="$REPOSITORIES" -v tags="$TAGS" \
    -v window="$WINDOW" -v warmup="$WARMUP" -v interval="$INTERVAL" -v interval_s="$INTERVAL_SECONDS" \
    -v hz="$CLK_TCK" -v seed_s="$SEED_SECONDS" \
    -v start="$START_TIME" -v ready="$READY_TIME" -v synced="$SYNCED_TIME" \
    -v startup_ticks="$STARTUP_TICKS" -v startup_rss="$STARTUP_RSS" \
    -v t0="$TICKS_BEFORE" -v t1="$TICKS_AFTER" -v w0="$WINDOW_START" -v w1="$WINDOW_END" \
    -v rss_min="$RSS_MIN" -v rss_max="$RSS_MAX" -v rss_sum="$RSS_SUM" -v rss_n="$RSS_N" \
    -v rss_end="$RSS_END" -v hwm="$HWM" \
    -v tags0="$TAGS_BEFORE" -v tags1="$TAGS_AFTER" -v cycles0="$CYCLES_BEFORE" -v cycles1="$CYCLES_AFTER" \
    -v updates0="$UPDATES_BEFORE" -v updates1="$UPDATES_AFTER" \
    -v repos_watched="$REPOS_WATCHED" -v workloads_watched="$WORKLOADS_WATCHED" \
    -v registry_lists="${REGISTRY_TAG_LISTS:-?}" -v apiserver_requests="${APISERVER_REQUESTS:-?}" '
    function mib(kb) { return sprintf("%.1f MiB", kb / 1024) }
    BEGIN {
        measured = w1 - w0
        cpu_s = (t1 - t0) / hz
        expected = measured / interval_s * repositories
        printf "\n### tagwatch idle: %d deployments, %d repositories x %d tags, interval %s\n\n", \
            deployments, repositories, tags, interval
        print "| measure | value |"
        print "|---|---|"
        printf "| workloads / repositories watched | %d / %d |\n", workloads_watched, repos_watched
        printf "| registry seeding (%d pushes) | %s s |\n", repositories * tags, seed_s
        printf "| start-up: /readyz 200 after | %.1f s |\n", ready - start
        printf "| start-up: first poll cycle done after | %.1f s |\n", synced - start
        printf "| start-up: CPU until first poll cycle done | %.2f s |\n", startup_ticks / hz
        printf "| start-up: RSS after first poll cycle | %s |\n", mib(startup_rss)
        printf "| window (after %d s warm-up) | %.0f s |\n", warmup, measured
        printf "| idle CPU (%% of one core, window avg) | %.2f %% (%.2f CPU s) |\n", 100 * cpu_s / measured, cpu_s
        printf "| idle RSS min / avg / max (%d samples) | %s / %s / %s |\n", rss_n, mib(rss_min), mib(rss_sum / rss_n), mib(rss_max)
        printf "| RSS at window end | %s |\n", mib(rss_end)
        printf "| peak RSS (VmHWM, whole run) | %s |\n", mib(hwm)
        printf "| tag listings in window (tagwatch metric) | %d (expected ~%.0f = %.0f s / %g s x %d) |\n", \
            tags1 - tags0, expected, measured, interval_s, repositories
        printf "| poll cycles in window | %d |\n", cycles1 - cycles0
        printf "| patches applied in window | %d |\n", updates1 - updates0
        printf "| tag listings seen by registry (whole run) | %s |\n", registry_lists
        printf "| API server requests (whole run) | %s |\n", apiserver_requests
    }'
