#!/usr/bin/env bash
# Interrupts the gate at moments spread over the stack and the suites, with SIGINT and SIGTERM in
# turn, and times each run from the signal to the harness's exit. A run is clean when it exits 130
# within the budget, writes a report that is valid and says interrupted, and leaves no container,
# network or volume labelled with its run id.
#
#   bench/interrupt-loop.sh [CONFIG]          (default: harness.toml, the reference stack)
#
# Environment:
#   MOMENTS   the runs, as STAGE+SECONDS:SIGNAL words: STAGE is `start` (the harness started) or a
#             stage whose start the gate prints (`preflight`, `engine`, `stack`, `ws`, `suites`,
#             `teardown`); SIGNAL is INT or TERM. Default: ten runs over the reference stack.
#   BUDGET_S  seconds from the signal to the exit (default 5; `none` only reports the times)
#   XTASK     the harness binary (default: target/debug/xtask, built first)
# Times vary with the machine's load: run it on a quiet machine, or say that it was not.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
CONFIG=${1:-harness.toml}
MOMENTS=${MOMENTS:-"start+0.5:INT stack+1:TERM stack+4:INT stack+8:TERM ws+0:INT suites+3:TERM suites+6:INT suites+9:TERM suites+12:INT suites+18:TERM"}
BUDGET_S=${BUDGET_S:-5}
if [ -z "${XTASK:-}" ]; then
    cargo build -q -p xtask || exit 2
    XTASK="$root/target/debug/xtask"
fi
XSD="$root/crates/stackgate/src/junit-10.xsd"
command -v xmllint >/dev/null || echo "note: xmllint not found: reports are not checked against the schema"
OUT=$(mktemp -d)

leftovers() {  # label filter -> count of containers, networks and volumes carrying it
    { docker ps -aq --filter "label=$1"; docker network ls -q --filter "label=$1"; docker volume ls -q --filter "label=$1"; } | wc -l
}

runs=0 clean=0 times=()
for moment in $MOMENTS; do
    runs=$((runs + 1))
    stage=${moment%%+*}
    rest=${moment#*+}
    offset=${rest%%:*}
    signal=${rest#*:}
    report="$OUT/junit-$runs.xml"
    log="$OUT/gate-$runs.log"
    "$XTASK" --config "$CONFIG" mission-critical --junit "$report" 2>"$log" >/dev/null &
    pid=$!
    # The moment: the stage's start line in the gate's output, then the offset.
    missed=""
    if [ "$stage" != start ]; then
        until grep -qE "── $stage\$" "$log" 2>/dev/null; do
            kill -0 "$pid" 2>/dev/null || { missed="the gate ended before stage $stage began"; break; }
            sleep 0.02
        done
    fi
    sleep "$offset"
    kill -0 "$pid" 2>/dev/null || missed=${missed:-"the gate ended before the signal"}
    sent=$(date +%s.%N)
    kill "-$signal" "$pid" 2>/dev/null
    wait "$pid"
    code=$?
    took=$(awk -v from="$sent" -v to="$(date +%s.%N)" 'BEGIN { printf "%.3f", to - from }')
    run_id=$(sed -n 's/.*name="run_id" value="\([^"]*\)".*/\1/p' "$report" 2>/dev/null | head -1)
    [ -n "$run_id" ] || run_id=$(sed -n 's/.*mission-critical: run \([^ ]*\) .*/\1/p' "$log" | head -1)
    # By run id (it holds the pid, so it is unique); the pid alone may be another process's by now.
    if [ -n "$run_id" ]; then left=$(leftovers "io.xtask.run-id=$run_id"); else left="?"; fi
    verdict=ok
    if [ -n "$missed" ]; then verdict="missed: $missed"
    elif [ "$code" != 130 ]; then verdict="exit $code, not 130"
    elif [ ! -s "$report" ]; then verdict="no report"
    elif ! grep -q 'name="interrupted" value="true"' "$report"; then verdict="the report does not say interrupted"
    elif command -v xmllint >/dev/null && ! xmllint --noout --schema "$XSD" "$report" 2>"$OUT/xmllint-$runs.log"; then
        verdict="the report is not valid JUnit: $(head -1 "$OUT/xmllint-$runs.log")"
    elif [ "$left" = "?" ]; then verdict="no run id: leftovers not checked"
    elif [ "$left" != 0 ]; then verdict="$left resources left"
    elif [ "$BUDGET_S" != none ] && awk -v t="$took" -v b="$BUDGET_S" 'BEGIN { exit !(t > b) }'; then
        verdict="over the ${BUDGET_S}s budget"
    fi
    [ -z "$missed" ] && times+=("$took")
    [ "$verdict" = ok ] && clean=$((clean + 1))
    printf 'run %2d: SIG%-4s at %-11s exit %3s in %5.2fs, run %s, leftovers %s: %s\n' \
        "$runs" "$signal" "$stage+${offset}s" "$code" "$took" "${run_id:-?}" "$left" "$verdict"
done
if [ "${#times[@]}" -gt 0 ]; then
    printf '%s\n' "${times[@]}" | sort -n | awk -v budget="$BUDGET_S" '{a[NR]=$1} END {
        median = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2
        printf "signal to exit: min %.2fs, median %.2fs, max %.2fs over %d runs (budget %s s)\n", a[1], median, a[NR], NR, budget }'
fi
echo "$clean/$runs runs clean (logs and reports in $OUT)"
[ "$clean" = "$runs" ]
