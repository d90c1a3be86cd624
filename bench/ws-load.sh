#!/usr/bin/env bash
# Benchmark: `cargo xtask ws-check --users N` (default 500) against a running reference stack,
# and what limits it. Prints the harness's figures, then the CPU time each side used during the
# run: the harness process (GNU time) against the backend, auth, postgres and redis containers (their cgroup
# cpuacct counters, and `docker stats --no-stream` samples taken while the run is going).
#
#   BACKEND_PORT=18100 AUTH_PORT=18101 PROJECT=wsdev bench/ws-load.sh
#
# Environment: USERS (500), MESSAGES (1), PROJECT (compose project of the stack, default chat),
# BACKEND_PORT (8000), AUTH_PORT (8001), or WS_URL and TOKEN_URL for another endpoint.
set -euo pipefail

users=${USERS:-500}
messages=${MESSAGES:-1}
project=${PROJECT:-chat}
url=${WS_URL:-ws://127.0.0.1:${BACKEND_PORT:-8000}/ws}
token_url=${TOKEN_URL:-http://127.0.0.1:${AUTH_PORT:-8001}/token}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

cargo build -q -p xtask
xtask="$root/target/debug/xtask"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

container_id() { docker ps -q --no-trunc --filter "label=com.docker.compose.project=$project" --filter "label=com.docker.compose.service=$1" | head -n1; }
cpu_ns() {  # cumulative CPU of a container, nanoseconds (cgroup v1 or v2)
  local id=$1
  if [ -r "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage" ]; then cat "/sys/fs/cgroup/cpuacct/docker/$id/cpuacct.usage"
  elif [ -r "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat" ]; then awk '/usage_usec/ {print $2 * 1000}' "/sys/fs/cgroup/system.slice/docker-$id.scope/cpu.stat"
  elif [ -r "/sys/fs/cgroup/docker/$id/cpu.stat" ]; then awk '/usage_usec/ {print $2 * 1000}' "/sys/fs/cgroup/docker/$id/cpu.stat"
  else echo 0; fi
}

backend=$(container_id backend); auth=$(container_id auth); postgres=$(container_id postgres); redis=$(container_id redis)
[ -n "$backend" ] || { echo "no backend container of compose project '$project' is running" >&2; exit 3; }
backend_before=$(cpu_ns "$backend"); auth_before=$(cpu_ns "$auth"); pg_before=$(cpu_ns "$postgres"); redis_before=$(cpu_ns "$redis")

# docker stats samples while the check runs (each sample takes about a second).
( while :; do docker stats --no-stream --format '{{.Name}} {{.CPUPerc}}' "$backend" "$auth" 2>/dev/null; done ) > "$work/stats" &
sampler=$!

start=$(date +%s.%N)
set +e
/usr/bin/time -f '%U %S %e' -o "$work/time" \
  "$xtask" --config "$root/harness.toml" ws-check --users "$users" --messages "$messages" \
  --url "$url" --token-url "$token_url" --json > "$work/result.json" 2> "$work/stderr"
status=$?
set -e
end=$(date +%s.%N)
kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true

backend_after=$(cpu_ns "$backend"); auth_after=$(cpu_ns "$auth"); pg_after=$(cpu_ns "$postgres"); redis_after=$(cpu_ns "$redis")
read -r user_s sys_s wall_s < <(tail -n 1 "$work/time")

grep -v '^\[' "$work/stderr" | sed -n '/^check/,$p' || true
grep "^error" "$work/stderr" | head -n 1 || true
python3 - "$work/result.json" "$user_s" "$sys_s" "$wall_s" "$backend_before" "$backend_after" "$auth_before" "$auth_after" "$work/stats" "$status" "$pg_before" "$pg_after" "$redis_before" "$redis_after" <<'PY'
import json, sys
path, user_s, sys_s, wall_s, b0, b1, a0, a1, stats_path, status, p0, p1, r0, r1 = sys.argv[1:]
result = json.load(open(path)) if open(path).read().strip() else {}
s = result.get("stats", {})
wall = float(wall_s)
harness_cpu = float(user_s) + float(sys_s)
backend_cpu = (int(b1) - int(b0)) / 1e9
auth_cpu = (int(a1) - int(a0)) / 1e9
pg_cpu = (int(p1) - int(p0)) / 1e9
redis_cpu = (int(r1) - int(r0)) / 1e9
samples = {}
for line in open(stats_path):
    parts = line.split()
    if len(parts) == 2 and parts[1].endswith('%'):
        samples.setdefault(parts[0], []).append(float(parts[1][:-1]))
print(f"ws-check --users {result.get('users')} --messages {result.get('messages')}: exit {status}, passed {result.get('passed')}")
print(f"  connections  {s.get('connections_succeeded')}/{s.get('connections_attempted')} ({s.get('success_rate_percent')}%)")
print(f"  messages     {s.get('messages_completed')}/{s.get('messages_sent')} complete within timeout_s")
print(f"  events       {s.get('events_received')} received, {s.get('events_misrouted')} misrouted")
for key in ("connect", "first_event", "last_event"):
    p = s.get(key, {})
    print(f"  {key:<12} p50 {p.get('p50_ms')} ms  p95 {p.get('p95_ms')} ms  p99 {p.get('p99_ms')} ms  max {p.get('max_ms')} ms")
print(f"  wall         {s.get('wall_ms')} ms (process {wall:.2f} s)")
print("CPU during the run (seconds of CPU, and share of one core over the process's wall time):")
sides = (("harness", harness_cpu), ("backend", backend_cpu), ("auth", auth_cpu), ("postgres", pg_cpu), ("redis", redis_cpu))
for name, cpu in sides:
    print(f"  {name:<8} {cpu:6.2f} s  {100 * cpu / wall:5.0f}% of a core")
for name, values in samples.items():
    print(f"  docker stats {name}: max {max(values):.0f}%, samples {', '.join(f'{v:.0f}%' for v in values)}")
busiest = max(sides, key=lambda x: x[1])
print(f"busiest: {busiest[0]} ({busiest[1]:.2f} s of CPU over {wall:.2f} s)")
PY
exit "$status"
