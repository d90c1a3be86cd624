#!/usr/bin/env bash
# Benchmark: the gate against a stack (default: this repository's reference stack), per stage, and
# the harness's own overhead (total minus stack, suites and teardown), as medians over RUNS runs on
# a warm machine (images built, Python environment present: run the gate once before).
#
#   bench/gate-stages.sh [RUNS] [HARNESS_TOML]      (defaults: 3, harness.toml)
#
# Reads the stage table each run prints at its end; prints min, median and max per row.
set -euo pipefail
runs=${1:-3}
config=${2:-harness.toml}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build -q -p xtask
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

for i in $(seq "$runs"); do
    "$root/target/debug/xtask" --config "$config" mission-critical --junit "$work/junit.xml" \
        2>"$work/run$i.log" || { echo "run $i failed:"; tail -20 "$work/run$i.log"; exit 1; }
done

seconds() {  # 1.18s -> 1.18, 4m2s -> 242
    awk '{ v=$1; s=0; if (v ~ /m/) { split(v, a, "m"); s=a[1]*60; v=a[2] } sub(/s$/, "", v); print s + v }'
}
stats() { sort -n | awk '{a[NR]=$1} END {printf "%7.2f %7.2f %7.2f", a[1], (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2, a[NR]}'; }

echo "gate on $config, $runs runs (seconds: min, median, max)"
# Stage rows: the first word is a stage name (or "suite NAME"); the last column is the wall time.
rows=$(grep -hE '^(preflight|engine|target|images|stack|ws|teardown|suite [^ ]+) ' "$work"/run*.log \
    | awk '{ name=$1; if (name == "suite") name=$1 " " $2; print name }' | awk '!seen[$0]++')
while IFS= read -r row; do
    [ -n "$row" ] || continue
    values=$(grep -hE "^$row " "$work"/run*.log | awk '{print $NF}' | seconds | stats)
    printf "  %-24s %s\n" "$row" "$values"
done <<<"$rows"
printf "  %-24s %s\n" "total" "$(grep -ho 'total [0-9.m]*s' "$work"/run*.log | awk '{print $2}' | seconds | stats)"
printf "  %-24s %s\n" "harness overhead" "$(grep -ho 'harness overhead: [0-9.m]*s' "$work"/run*.log | awk '{print $3}' | seconds | stats)"
echo "slowest services of the last run:"
grep -h '^slowest services' "$work/run$runs.log" | sed 's/^/  /'
