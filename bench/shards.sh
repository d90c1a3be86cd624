#!/usr/bin/env bash
# How evenly `--shard K/N` splits the suites (default: this repository's reference suites), in
# wall time under the worker plan each shard runs with (the default `--jobs`, or JOBS=N): one
# unsharded gate (it leaves target/xtask/durations.json with how each suite ran in its plan and,
# with --reuse, a warm stack the shards then take), then every shard split by duration and every
# shard split by hash (`--durations /dev/null` holds no durations). Per shard: the suites stage's
# wall time as measured, the wall time the split predicted for it (printed by the gate in its
# "shards split by the test durations" note), and its test count; then slowest / fastest for
# each split.
#
# Usage: [JOBS=N] bench/shards.sh [N] [HARNESS_TOML]   (defaults: 2, harness.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2}
CONFIG=${2:-harness.toml}
JOBS_ARGS=()
[ -n "${JOBS:-}" ] && JOBS_ARGS=(--jobs "$JOBS")
XTASK=$PWD/target/debug/xtask
OUT=$PWD/target/bench-shards
mkdir -p "$OUT"
cargo build -q -p xtask

# The suites stage's wall time (from its end line) and the prediction, from a gate's log; the
# tests run, from its JUnit report.
measure() {
    python3 - "$1" "$2" <<'PY'
import re, sys, xml.etree.ElementTree as ET
log = open(sys.argv[1], encoding="utf-8", errors="replace").read()
def seconds(text):
    m = re.fullmatch(r"(?:(\d+)m)?([\d.]+)s", text)
    return int(m.group(1) or 0) * 60 + float(m.group(2)) if m else float("nan")
stage = re.findall(r"── suites \w+ \(([\dm.]+s)\)", log)
wall = seconds(stage[-1]) if stage else float("nan")
pred = re.search(r"this shard, \d+/\d+: ([\d.]+)s", log)
tests = 0
root = ET.parse(sys.argv[2]).getroot()
for suite in root.iter("testsuite"):
    if suite.get("name") != "harness":
        tests += sum(1 for case in suite.iter("testcase") if case.find("skipped") is None)
print(f"{wall:.2f} {pred.group(1) if pred else '-'} {tests}")
PY
}

"$XTASK" --config "$CONFIG" mission-critical --reuse "${JOBS_ARGS[@]}" --junit "$OUT/full.xml" 2>"$OUT/full.log" \
    || { echo "the unsharded run failed: $(tail -3 "$OUT/full.log")" >&2; exit 1; }
read -r wall _ tests < <(measure "$OUT/full.log" "$OUT/full.xml")
echo "unsharded: suites ${wall} s, $tests tests run"
for mode in duration hash; do
    extra=()
    [ $mode = hash ] && extra=(--durations /dev/null)
    walls=()
    for k in $(seq "$N"); do
        "$XTASK" --config "$CONFIG" mission-critical --reuse "${JOBS_ARGS[@]}" --shard "$k/$N" "${extra[@]}" \
            --junit "$OUT/$mode-$k.xml" 2>"$OUT/$mode-$k.log" \
            || echo "  ($mode shard $k/$N failed: $(tail -1 "$OUT/$mode-$k.log"))" >&2
        read -r wall predicted tests < <(measure "$OUT/$mode-$k.log" "$OUT/$mode-$k.xml")
        walls+=("$wall")
        echo "  by $mode, shard $k/$N: suites ${wall} s (predicted ${predicted} s), $tests tests run"
    done
    printf '%s\n' "${walls[@]}" | awk -v mode="$mode" 'NR == 1 {lo = hi = $1} {if ($1 < lo) lo = $1; if ($1 > hi) hi = $1} END {printf "by %s: slowest / fastest = %.2f\n", mode, (lo > 0) ? hi / lo : 0}'
done
# The warm stack goes; the images stay for the next run.
"$XTASK" --config "$CONFIG" docker-down >/dev/null 2>&1 || true
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); jobs: ${JOBS:-the default}"
