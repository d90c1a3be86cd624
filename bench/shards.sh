#!/usr/bin/env bash
# How evenly `--shard K/N` splits the suites (default: this repository's reference suites), by
# the per-test durations of the last unsharded report against the hash split: one unsharded gate
# (it leaves target/xtask/durations.json and, with --reuse, a warm stack the shards then take),
# then every shard split by duration and every shard split by hash (`--durations /dev/null`
# holds no durations). Per shard: the suites' time (the sum of the suites' own times in its
# JUnit report) and its test count; then slowest / fastest for each split. Every run is
# `--jobs 1` (JOBS=N to change it): this measures the split itself; with workers a shard's suites
# overlap, and their times no longer add up to the shard's.
#
# Usage: [JOBS=1] bench/shards.sh [N] [HARNESS_TOML]   (defaults: 3, harness.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}
CONFIG=${2:-harness.toml}
JOBS=${JOBS:-1}
XTASK=$PWD/target/debug/xtask
OUT=$PWD/target/bench-shards
mkdir -p "$OUT"
cargo build -q -p xtask

suites_time() {
    python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
time = tests = 0
for suite in root.iter("testsuite"):
    if suite.get("name") != "harness":
        time += float(suite.get("time") or 0)
        tests += sum(1 for case in suite.iter("testcase") if case.find("skipped") is None)
print(f"{time:.2f} {tests}")
EOF
}

"$XTASK" --config "$CONFIG" mission-critical --reuse --jobs "$JOBS" --junit "$OUT/full.xml" 2>"$OUT/full.log" \
    || { echo "the unsharded run failed: $(tail -3 "$OUT/full.log")" >&2; exit 1; }
echo "unsharded: suites $(suites_time "$OUT/full.xml" | awk '{print $1 " s, " $2 " tests run"}')"
for mode in duration hash; do
    extra=()
    [ $mode = hash ] && extra=(--durations /dev/null)
    times=()
    for k in $(seq "$N"); do
        "$XTASK" --config "$CONFIG" mission-critical --reuse --jobs "$JOBS" --shard "$k/$N" "${extra[@]}" \
            --junit "$OUT/$mode-$k.xml" 2>"$OUT/$mode-$k.log" \
            || echo "  ($mode shard $k/$N failed: $(tail -1 "$OUT/$mode-$k.log"))" >&2
        read -r t n < <(suites_time "$OUT/$mode-$k.xml")
        times+=("$t")
        echo "  by $mode, shard $k/$N: suites ${t} s, $n tests run"
    done
    printf '%s\n' "${times[@]}" | awk -v mode="$mode" 'NR == 1 {lo = hi = $1} {if ($1 < lo) lo = $1; if ($1 > hi) hi = $1} END {printf "by %s: slowest / fastest = %.2f\n", mode, (lo > 0) ? hi / lo : 0}'
done
# The warm stack goes; the images stay for the next run.
"$XTASK" --config "$CONFIG" docker-down >/dev/null 2>&1 || true
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); --jobs $JOBS"
