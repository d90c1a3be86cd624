#!/usr/bin/env bash
# Benchmark: what `cargo xtask monitor` reports about a known outage. Against the stack recorded by
# `cargo xtask docker-up` (plain or --isolated), it runs `monitor --every 1s --for 20s` and, from
# second STOP_AT (7.5: between two rounds, not in step with them), stops the backend container
# for OUTAGE seconds (5) with `docker stop` / `docker start`. It prints the monitor's summary and,
# beside it, what was done and when, so the reported outage (start, length) can be read against the
# real one.
#
#   cargo xtask docker-up [--isolated] && bench/monitor-outage.sh
#
# Environment: SERVICE (backend), STOP_AT (7.5), OUTAGE (5), EVERY (1s), FOR (20s).
# The ideal uptime for the defaults is 15 of 20 rounds (75 %); the monitor also counts the time the
# engine takes to stop and start the container and the first passing healthcheck after it.
set -euo pipefail

service=${SERVICE:-backend}
stop_at=${STOP_AT:-7.5}
outage=${OUTAGE:-5}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build -q -p xtask
xtask="$root/target/debug/xtask"
project=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["stack"]["project"])' target/xtask/state.json)
container=$(docker ps -q --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$service" | head -n1)
[ -n "$container" ] || { echo "no running $service container in compose project $project" >&2; exit 3; }

stamp() { date -u +%H:%M:%S.%3N; }
(
  sleep "$stop_at"
  echo "[$(stamp)] bench: docker stop $service"
  docker stop "$container" >/dev/null
  echo "[$(stamp)] bench: stopped; starting again in ${outage}s"
  sleep "$outage"
  docker start "$container" >/dev/null
  echo "[$(stamp)] bench: docker start $service returned"
) &
saboteur=$!
trap 'kill $saboteur 2>/dev/null || true; docker start "$container" >/dev/null 2>&1 || true' EXIT

status=0
"$xtask" monitor --every "${EVERY:-1s}" --for "${FOR:-20s}" || status=$?
wait "$saboteur" || true
echo "bench: monitor exited $status (1 is expected: some rounds failed)"
