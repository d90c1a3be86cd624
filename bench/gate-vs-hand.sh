#!/usr/bin/env bash
# Times the gate against the same steps done by hand, on the small two-service stack in
# bench/two-service (warm images), and prints the medians and ratios:
#   hand:          docker-compose up -d, one-second health polling, one pytest run, docker-compose down
#   pytest-docker: the same through pytest-docker with 0.1 s readiness polling
#   gate:          cargo xtask mission-critical (which also checks the engine, smoke container,
#                  pre-flight, endpoints, and writes a JUnit report)
# Usage: bench/gate-vs-hand.sh [RUNS]   (default 5). Needs a running engine and docker-compose.
#        bench/gate-vs-hand.sh --leg by_hand|with_pytest_docker|gate   runs one leg once (for other timers).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=5
LEG=
if [ "${1:-}" = "--leg" ]; then LEG=$2; else RUNS=${1:-5}; fi
STACK=bench/two-service
VENV=target/bench-venv
XTASK=target/debug/xtask

[ -z "$LEG" ] && cargo build -q -p xtask
mkdir -p target/xtask
if [ ! -x "$VENV/bin/pytest" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pytest==8.3.4 pytest-docker==3.2.6
fi
# Warm the images once, outside the timings (a single leg assumes a full run warmed them).
if [ -z "$LEG" ]; then
    docker-compose -p benchwarm -f "$STACK/compose.yaml" build -q
    docker-compose -p benchwarm -f "$STACK/compose.yaml" down -v >/dev/null 2>&1 || true
fi

now() { date +%s.%N; }

by_hand() {
    local project=benchhand$$
    export WEB_PORT=18181
    if ! docker-compose -p "$project" -f "$STACK/compose.yaml" up -d >/dev/null 2>&1; then
        docker-compose -p "$project" -f "$STACK/compose.yaml" down -v >/dev/null 2>&1
        echo "by hand: docker-compose up -d failed" >&2
        return 1
    fi
    local deadline=$((SECONDS + 60))
    while :; do
        local unhealthy=0
        for id in $(docker-compose -p "$project" -f "$STACK/compose.yaml" ps -q); do
            [ "$(docker inspect -f '{{.State.Health.Status}}' "$id")" = healthy ] || unhealthy=1
        done
        [ $unhealthy = 0 ] && break
        [ $SECONDS -gt $deadline ] && { echo "by hand: not healthy in 60 s" >&2; break; }
        sleep 1
    done
    local status=0
    WEB_URL=http://127.0.0.1:18181 "$VENV/bin/pytest" -q -p no:cacheprovider "$STACK/tests" >/dev/null || status=$?
    docker-compose -p "$project" -f "$STACK/compose.yaml" down -v >/dev/null 2>&1
    unset WEB_PORT
    return $status
}

with_pytest_docker() {
    (cd "$STACK" && BENCH_PYTEST_DOCKER=1 WEB_PORT= "$ROOT/$VENV/bin/pytest" -q -p no:cacheprovider tests >/dev/null)
}

gate() {
    "$XTASK" --config "$STACK/harness.toml" mission-critical --junit target/xtask/bench-junit.xml 2>target/xtask/bench-gate.log
}

if [ -n "$LEG" ]; then "$LEG"; exit; fi

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

declare -A times
for leg in by_hand with_pytest_docker gate; do
    for _ in $(seq "$RUNS"); do
        start=$(now); $leg; end=$(now)
        times[$leg]+="$(awk "BEGIN {printf \"%.2f\", $end - $start}") "
    done
done

hand=$(echo "${times[by_hand]}" | tr ' ' '\n' | grep . | median)
pyd=$(echo "${times[with_pytest_docker]}" | tr ' ' '\n' | grep . | median)
g=$(echo "${times[gate]}" | tr ' ' '\n' | grep . | median)
echo "two-service stack, $RUNS runs each, medians:"
printf "  by hand (up -d, 1 s polling, pytest, down):  %6.2f s   [%s]\n" "$hand" "${times[by_hand]}"
printf "  pytest-docker (0.1 s polling):               %6.2f s   [%s]\n" "$pyd" "${times[with_pytest_docker]}"
printf "  cargo xtask mission-critical:                %6.2f s   [%s]\n" "$g" "${times[gate]}"
awk -v g="$g" -v h="$hand" -v p="$pyd" 'BEGIN {printf "  gate / by hand = %.2f, gate / pytest-docker = %.2f\n", g / h, g / p}'
echo "last gate run, per stage and harness overhead:"
grep -E "overhead|^(preflight|engine|images|stack|ws|suites|teardown|suite) " target/xtask/bench-gate.log | sed 's/^/  /' || true
