#!/usr/bin/env bash
# What waiting on the engine's health status costs a stack with `depends_on: service_healthy`
# (default: the reference stack, whose backend waits for postgres, redis and auth), measured with
# the harness three ways, alternating, in one run (`docker-up --isolated`, warm images):
#   engine:  stack.start = "compose", probe_interval_ms = 0: compose starts the services and
#            waits for the engine's health status; readiness from the engine's events (before
#            issue 14)
#   probes:  stack.start = "compose", probes on: compose still waits for the engine's status
#            before it starts a dependent; only the last services are seen ready sooner
#   ordered: stack.start = "ordered", probes on (the default with compose v2): `up --no-start`, then each
#            service started by the harness as soon as its conditions hold by the probes
# "probes - ordered" is what compose's own wait for the engine's status costs the stack.
# Prints each run's `waited` (compose up starting to every service ready) and the medians.
#
# Usage: bench/stack-order.sh [ROUNDS] [HARNESS_TOML]   (defaults: 3, harness.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
CONFIG=${2:-harness.toml}
XTASK=$PWD/target/debug/xtask
OUT=target/bench-stack-order
mkdir -p "$OUT"
cargo build -q -p xtask

# Variants of the configuration beside it (so that its relative paths still hold).
dir=$(dirname "$CONFIG")
variant() {
    local name=$1 keys=$2 file="$dir/.bench-$1.toml"
    awk -v keys="$keys" '{print} /^\[stack\]/ {n=split(keys, k, ";"); for (i = 1; i <= n; i++) print k[i]}' \
        "$CONFIG" >"$file"
    echo "$file"
}
engine=$(variant engine 'start = "compose";probe_interval_ms = 0')
probes=$(variant probes 'start = "compose"')
ordered=$(variant ordered 'start = "ordered"')
trap 'rm -f "$engine" "$probes" "$ordered"' EXIT
# Build the images once, outside the timings.
"$XTASK" --config "$ordered" docker-up --isolated --skip-preflight >/dev/null 2>&1 || true
"$XTASK" --config "$ordered" docker-down >/dev/null 2>&1 || true

declare -A waited
for round in $(seq "$ROUNDS"); do
    for name in engine probes ordered; do
        file=${!name}
        json="$OUT/$name-$round.json"
        if ! "$XTASK" --config "$file" docker-up --isolated --skip-preflight --json >"$json" 2>"$OUT/$name-$round.log"; then
            echo "$name run $round failed: $(tail -1 "$OUT/$name-$round.log")" >&2
        fi
        run_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$json" 2>/dev/null || true)
        [ -n "$run_id" ] && "$XTASK" --config "$file" docker-down --run "$run_id" >/dev/null 2>&1 || true
        w=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["waited"])' "$json" 2>/dev/null || echo nan)
        waited[$name]+="$w "
        echo "round $round $name: waited ${w}s  (load $(cut -d' ' -f1 /proc/loadavg))"
    done
done
median() { tr ' ' '\n' | grep -v '^$' | grep -v nan | sort -n | awk '{a[NR]=$1} END {printf "%.2f", (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }
e=$(echo "${waited[engine]}" | median); p=$(echo "${waited[probes]}" | median); o=$(echo "${waited[ordered]}" | median)
echo
echo "$CONFIG, $ROUNDS rounds, medians of compose up starting to every service ready (s):"
echo "  engine (compose starts, engine health only): $e"
echo "  probes (compose starts, harness probes):      $p"
echo "  ordered (harness starts on its probes):       $o"
awk -v e="$e" -v p="$p" -v o="$o" 'BEGIN {printf "  compose waiting on the engine status costs %.2f s (probes - ordered); ordered / engine = %.2f\n", p - o, o / e}'
echo "  machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
