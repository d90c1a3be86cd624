#!/usr/bin/env bash
# Interrupts the gate at random moments and checks what is left after each run: the exit code
# (130, or 0/1 when the gate finished first), a report that says interrupted, and no container,
# network or volume carrying the run's label.
# Usage: bench/interrupt-loop.sh [RUNS] [CONFIG]   (default 10 runs on xtask/tests/fixtures/gate)
set -uo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
CONFIG=${2:-xtask/tests/fixtures/gate/harness.toml}
XTASK=target/debug/xtask
OUT=$(mktemp -d)
cargo build -q -p xtask
clean=0
for i in $(seq "$RUNS"); do
    report="$OUT/junit-$i.xml"
    "$XTASK" --config "$CONFIG" mission-critical --junit "$report" 2>"$OUT/gate-$i.log" &
    pid=$!
    delay=$(awk -v s="$RANDOM" 'BEGIN {srand(s); printf "%.1f", 0.3 + rand() * 5}')
    sleep "$delay"
    kill -INT "$pid" 2>/dev/null
    wait "$pid"
    code=$?
    run_id=$(sed -n 's/.*name="run_id" value="\([^"]*\)".*/\1/p' "$report" 2>/dev/null | head -1)
    left=""
    if [ -n "$run_id" ]; then
        left=$( (docker ps -aq --filter "label=io.xtask.run-id=$run_id"; docker network ls -q --filter "label=io.xtask.run-id=$run_id"; docker volume ls -q --filter "label=io.xtask.run-id=$run_id") | wc -l)
    fi
    interrupted=$(grep -c 'name="interrupted" value="true"' "$report" 2>/dev/null)
    verdict=ok
    if [ ! -s "$report" ]; then verdict="NO REPORT"
    elif [ "$code" = 130 ] && [ "$interrupted" != 1 ]; then verdict="report does not say interrupted"
    elif [ "$code" != 130 ] && [ "$code" != 0 ] && [ "$code" != 1 ]; then verdict="exit $code"
    elif [ "${left:-0}" != 0 ]; then verdict="$left resources left"
    fi
    [ "$verdict" = ok ] && clean=$((clean + 1))
    echo "run $i: interrupted after ${delay}s, exit $code, run ${run_id:-?}, leftovers ${left:-?}: $verdict"
done
echo "$clean/$RUNS runs clean (logs in $OUT)"
[ "$clean" = "$RUNS" ]
