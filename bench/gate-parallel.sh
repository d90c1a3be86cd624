#!/usr/bin/env bash
# Benchmark: the gate on a stack (default: this repository's reference stack) with `--jobs 1` (one
# test at a time, as before plans) against the default (the tests of `parallel` suites spread over
# the default number of workers, tests with a serial marker alone), alternating, PAIRS pairs. Prints
# each run's wall time, the medians and their ratio (default / --jobs 1), checks that both legs
# passed the same tests, and checks every parallel run's trace: no other test overlaps a test that
# carries a serial marker (`destructive`). Also prints the machine's load, which disturbs the figures.
#
#   bench/gate-parallel.sh [PAIRS] [HARNESS_TOML]         (defaults: 3, harness.toml)
#   bench/gate-parallel.sh repeat N [HARNESS_TOML]        N default gates in a row, each checked
#   bench/gate-parallel.sh sweep ROUNDS [HARNESS_TOML]    --jobs 1..4, ROUNDS rounds, the order
#                                                         rotating each round; medians per jobs
#
# Run the gate once before (images built, Python environment present). Needs python3 (3.11+).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=pairs
if [ "${1:-}" = repeat ] || [ "${1:-}" = sweep ]; then
    mode=$1
    shift
fi
count=${1:-3}
config=${2:-harness.toml}
cargo build -q -p xtask
xtask="$root/target/debug/xtask"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The trace of a run: every test with a serial marker of its suite (found by pytest itself, with
# `-m MARKER --collect-only` over the suite's args) ran, and no test on another worker overlapped it.
check_trace() {  # TRACE
    python3 - "$config" "$1" <<'EOF'
import json, os, subprocess, sys, tomllib
config_path, trace_path = sys.argv[1], sys.argv[2]
config = tomllib.load(open(config_path, "rb"))
root = os.path.dirname(os.path.abspath(config_path))
venv = os.path.join(root, config.get("python", {}).get("venv", "target/xtask/venv"))
serial = set()
for suite in config.get("suite", []):
    markers = suite.get("serial_markers", ["destructive"])
    if suite.get("runner") != "pytest" or not suite.get("parallel") or not markers:
        continue
    listed = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-m", "pytest", *suite.get("args", []),
         "-m", " or ".join(markers), "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=root, capture_output=True, text=True)
    for line in listed.stdout.splitlines():
        if "::" in line:
            serial.add((suite["name"], line.split("::")[-1].strip()))
events = json.load(open(trace_path))["traceEvents"]
tests = [(e["args"]["suite"], e["name"], e["tid"], e["ts"], e["ts"] + e["dur"])
         for e in events if e.get("ph") == "X" and str(e.get("cat", "")).startswith("test,")]
problems = []
for suite, name in sorted(serial):
    mine = [t for t in tests if (t[0], t[1]) == (suite, name)]
    if not mine:
        problems.append(f"{suite}::{name} (serial) is not in the trace")
        continue
    _, _, tid, start, end = mine[0]
    # Tests of one worker run one after the other in one process: only other workers count.
    others = [f"{s}::{n}" for s, n, t, a, b in tests if t != tid and a < end and b > start]
    if others:
        problems.append(f"{suite}::{name} overlaps {', '.join(others)}")
if problems:
    print("trace check FAILED: " + "; ".join(problems))
    sys.exit(1)
print(f"trace check ok: {len(serial)} serial tests, none overlapped by another of {len(tests)}")
EOF
}

# The passed tests of a JUnit report, one `suite::classname::name` a line, sorted.
passed_tests() {  # JUNIT
    python3 - "$1" <<'EOF'
import sys, xml.etree.ElementTree as ET
passed = []
for suite in ET.parse(sys.argv[1]).getroot().iter("testsuite"):
    if suite.get("name") == "harness":
        continue
    for case in suite.iter("testcase"):
        if not any(case.find(kind) is not None for kind in ("failure", "error", "skipped")):
            passed.append(f"{suite.get('name')}::{case.get('classname')}::{case.get('name')}")
# The suites end in another order with workers (load first): compared as sets.
print("\n".join(sorted(passed)))
EOF
}

gate() {  # NAME [ARGS...]: runs the gate, prints its wall time in seconds
    local name=$1
    shift
    local start end
    start=$(date +%s.%N)
    if ! "$xtask" --config "$config" mission-critical --junit "$work/$name.xml" "$@" \
        2>"$work/$name.log"; then
        echo "run $name failed:" >&2
        grep -E 'FAIL|ERROR|error' "$work/$name.log" | tail -20 >&2
        exit 1
    fi
    end=$(date +%s.%N)
    echo "$end - $start" | bc
}

trace_of() {  # NAME: the run's own trace (target/xtask/trace.json is the latest run's)
    local run_id
    run_id=$(grep -o 'name="run_id" value="[^"]*"' "$work/$1.xml" | sed 's/.*value="//; s/"$//')
    echo "$(dirname "$config")/target/xtask/runs/$run_id/trace.json"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2}'; }

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min) on $(nproc) cores"
if [ "$mode" = repeat ]; then
    for i in $(seq "$count"); do
        seconds=$(gate "repeat$i")
        printf "  run %2d passed in %6.1fs; " "$i" "$seconds"
        check_trace "$(trace_of "repeat$i")"
    done
    echo "$count default gates in a row passed; load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi
if [ "$mode" = sweep ]; then
    sweep=(1 2 3 4)
    for round in $(seq "$count"); do
        # Each round starts one further along, so that no jobs value always runs first.
        for k in "${!sweep[@]}"; do
            jobs=${sweep[$(((k + round - 1) % ${#sweep[@]}))]}
            seconds=$(gate "sweep$round-$jobs" --jobs "$jobs")
            echo "$seconds" >>"$work/jobs$jobs.times"
            printf "  round %d --jobs %d %6.1fs (load %s)\n" "$round" "$jobs" "$seconds" \
                "$(cut -d' ' -f1 /proc/loadavg)"
        done
    done
    for jobs in "${sweep[@]}"; do
        printf "  --jobs %d: median %.1fs over %d runs\n" "$jobs" "$(median <"$work/jobs$jobs.times")" "$count"
    done
    echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
    exit 0
fi

: >"$work/serial.times"
: >"$work/parallel.times"
for i in $(seq "$count"); do
    # Alternating, the leg that goes first swapping each pair, so that a trend in the machine's
    # load does not favour one leg.
    if [ $((i % 2)) -eq 1 ]; then order="serial parallel"; else order="parallel serial"; fi
    for leg in $order; do
        if [ "$leg" = serial ]; then
            seconds=$(gate "serial$i" --jobs 1)
        else
            seconds=$(gate "parallel$i")
        fi
        echo "$seconds" >>"$work/$leg.times"
        printf "  pair %d %-8s %6.1fs\n" "$i" "$leg" "$seconds"
    done
    check_trace "$(trace_of "parallel$i")" | sed 's/^/    /'
    if ! diff <(passed_tests "$work/serial$i.xml") <(passed_tests "$work/parallel$i.xml") >"$work/diff"; then
        echo "pair $i: the legs passed different tests:" >&2
        cat "$work/diff" >&2
        exit 1
    fi
    echo "    same $(passed_tests "$work/parallel$i.xml" | wc -l) tests passed in both legs"
done
serial=$(median <"$work/serial.times")
parallel=$(median <"$work/parallel.times")
jobs=$(grep -ho 'plan: worker w[0-9]*' "$work"/parallel*.log | sort -u | wc -l)
printf "gate on %s, %d pairs (medians): --jobs 1 %.1fs, default (%d workers) %.1fs, ratio %.2f\n" \
    "$config" "$count" "$serial" "$jobs" "$parallel" "$(echo "$parallel / $serial" | bc -l)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
