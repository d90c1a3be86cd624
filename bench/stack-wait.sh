#!/usr/bin/env bash
# Times bringing the reference stack (services/compose.yaml, warm images) up until every service
# is healthy, two ways, alternating, in the same run:
#   harness: `cargo xtask docker-up --isolated` (pre-flight, engine, smoke container, images,
#            labels, compose up -d --build, waiting on the engine's event stream, endpoints)
#   by hand: `docker-compose up -d --build`, `ps -q` once, then one-second polling of
#            `docker inspect` health
# For each: the total from the command's start to all healthy, each service's time from its
# container's start to healthy (from the engine's own events), and the notice latency: how long
# after the engine's last health event the waiter knew (the harness also reports its own
# per-service figure, event time to noticed). Prints every run, then medians and the ratio.
#
# Usage: bench/stack-wait.sh [RUNS]   (default 3)
# Env:   XTASK  how to run the harness (default "cargo xtask"; e.g. a built target/debug/xtask)
# Needs: a running engine, docker-compose (or docker compose), python3. Public tools only.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
XTASK=${XTASK:-cargo xtask}
FILE=services/compose.yaml
OUT=target/bench-stack
mkdir -p "$OUT"
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi

now_ns() { date +%s%N; }

# Records the project's container start and health events (engine time, ns) until killed.
follow_events() {
    docker events --filter "label=com.docker.compose.project=$1" \
        --filter type=container --filter event=start --filter event=health_status \
        --format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.Action}}' \
        >"$2" &
    EVENTS_PID=$!
    sleep 0.3
}
stop_events() { kill "$EVENTS_PID" 2>/dev/null || true; wait "$EVENTS_PID" 2>/dev/null || true; }
trap 'stop_events' EXIT

# Warm the images once, outside the timings (both ways build with the cache afterwards).
case "$XTASK" in cargo*) cargo build -q -p xtask ;; esac
"${COMPOSE[@]}" -p stackbenchwarm -f "$FILE" build -q >/dev/null
"${COMPOSE[@]}" -p stackbenchwarm -f "$FILE" down -v >/dev/null 2>&1 || true

harness_run() {
    local n=$1 events="$OUT/harness-$1.events" json="$OUT/harness-$1.json"
    # The project name is only known once docker-up ran: follow every compose project, filter later.
    docker events --filter type=container --filter event=start --filter event=health_status \
        --format '{{.TimeNano}} {{index .Actor.Attributes "com.docker.compose.service"}} {{.Action}} {{index .Actor.Attributes "com.docker.compose.project"}}' \
        >"$events" &
    EVENTS_PID=$!
    sleep 0.3
    local start end
    local status=0
    start=$(now_ns)
    $XTASK docker-up --isolated --json >"$json" 2>"$OUT/harness-$n.log" || status=$?
    end=$(now_ns)
    stop_events
    $XTASK docker-down >/dev/null 2>&1 || true
    if [ $status != 0 ]; then
        echo "harness run $n failed (exit $status), left out: $(tail -1 "$OUT/harness-$n.log")" >&2
        return
    fi
    echo "harness $start $end $json $events"
}

hand_run() {
    local n=$1 project="stackbenchhand$$x$1" events="$OUT/hand-$1.events"
    follow_events "$project" "$events"
    local start end ids all
    start=$(now_ns)
    BACKEND_PORT= AUTH_PORT= "${COMPOSE[@]}" -p "$project" -f "$FILE" up -d --build >/dev/null 2>&1
    # `up -d` returns once every container exists: list them once, then poll the engine only.
    ids=$("${COMPOSE[@]}" -p "$project" -f "$FILE" ps -q)
    local deadline=$((SECONDS + 300))
    while :; do
        all=1
        for id in $ids; do
            [ "$(docker inspect -f '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$id")" = healthy ] || all=0
        done
        [ -n "$ids" ] && [ $all = 1 ] && break
        [ $SECONDS -gt $deadline ] && { echo "by hand: not healthy within 300 s" >&2; break; }
        sleep 1
    done
    end=$(now_ns)
    stop_events
    BACKEND_PORT= AUTH_PORT= "${COMPOSE[@]}" -p "$project" -f "$FILE" down -v >/dev/null 2>&1
    echo "hand $start $end - $events $project"
}

results="$OUT/results.txt"
: >"$results"
for n in $(seq 1 "$RUNS"); do
    echo "run $n/$RUNS: harness" >&2
    harness_run "$n" >>"$results"
    echo "run $n/$RUNS: by hand" >&2
    hand_run "$n" >>"$results"
done

python3 - "$results" <<'EOF'
import json, statistics, sys

def events(path, project=None):
    starts, healthy = {}, {}
    for line in open(path):
        parts = line.split()
        if len(parts) < 3:
            continue
        t, service, action = int(parts[0]), parts[1], " ".join(parts[2:])
        if project is not None:
            if not action.endswith(" " + project):
                continue
            action = action[: -len(project) - 1]
        if action == "start":
            starts.setdefault(service, t)
        elif action == "health_status: healthy":
            healthy.setdefault(service, t)
    return starts, healthy

rows = {"harness": [], "hand": []}
for line in open(sys.argv[1]):
    kind, start, end, json_path, events_path, *rest = line.split()
    start, end = int(start), int(end)
    if kind == "harness":
        report = json.load(open(json_path))
        project = report["project"]
        starts, healthy = events(events_path, project)
        own = {s["service"]: s["noticed_after"] for s in report["services"]}
        stack_part = report["waited"]
    else:
        starts, healthy = events(events_path)
        own = {}
        stack_part = None
    last = max(healthy.values())
    per = {s: (healthy[s] - starts[s]) / 1e9 for s in healthy if s in starts}
    rows[kind].append({
        "total": (end - start) / 1e9,
        "to_last_healthy": (last - start) / 1e9,
        "after_last_event_ms": (end - last) / 1e6,
        "per": per,
        "own_ms": {s: (v or 0) * 1000 for s, v in own.items()},
        # by hand, the whole run is `up -d` plus polling
        "stack_part": stack_part if stack_part is not None else (end - start) / 1e9,
    })

def show(kind, label):
    for i, r in enumerate(rows[kind], 1):
        per = ", ".join(f"{s} {v:.2f}s" for s, v in sorted(r["per"].items()))
        own = ""
        if r["own_ms"]:
            own = "; noticed (own, event->noticed) " + ", ".join(
                f"{s} {v:.1f}ms" for s, v in r["own_ms"].items())
        print(f"{label} run {i}: total {r['total']:.2f}s, compose up to all healthy {r['stack_part']:.2f}s (last healthy event at {r['to_last_healthy']:.2f}s, "
              f"done {r['after_last_event_ms']:.0f} ms after it); to healthy: {per}{own}")

show("harness", "harness")
show("hand", "by hand")
med = lambda kind, key: statistics.median(r[key] for r in rows[kind])
h, b = med("harness", "total"), med("hand", "total")
hl, bl = med("harness", "after_last_event_ms"), med("hand", "after_last_event_ms")
hs, bs = med("harness", "stack_part"), med("hand", "stack_part")
own_all = [v for r in rows["harness"] for v in r["own_ms"].values()]
print()
print(f"median total to all healthy: harness {h:.2f}s, by hand (up -d + 1 s polling) {b:.2f}s, "
      f"ratio hand/harness {b / h:.2f}")
print(f"median from `compose up` starting to all healthy (the stack part; the harness's total also "
      f"has pre-flight, engine, smoke container, images): harness {hs:.2f}s, by hand {bs:.2f}s, "
      f"ratio hand/harness {bs / hs:.2f}")
print(f"median from the engine's last health event to done: harness {hl:.0f} ms "
      f"(includes endpoints, state, exit), by hand {bl:.0f} ms")
if own_all:
    print(f"harness notice latency, event -> noticed, over {len(own_all)} service events: "
          f"median {statistics.median(own_all):.1f} ms, max {max(own_all):.1f} ms (target < 100 ms)")
EOF
