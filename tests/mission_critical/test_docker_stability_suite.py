"""Mission critical (docker target): every service container is healthy, the
backend survives a redis and a postgres restart, and nothing restarts on its own."""

import json
import os
import socket
import tempfile

import pytest

import chatlib
from chatlib import assert_run_events, open_ws, run_message, wait_ready

pytestmark = pytest.mark.docker

SERVICES = ["postgres", "redis", "auth", "backend"]
RECOVERY_DEADLINE_S = 60


@pytest.fixture(scope="module")
def baseline(compose):
    """Start times and restart counts before any test of this run acted on anything: the first
    look of the run, whichever test (and whichever pytest process: the harness may spread the
    tests over several) took it. Every test that restarts a service asks for it before it acts,
    so the order the tests run in does not matter."""
    now = {
        svc: [info["State"]["StartedAt"], info["RestartCount"]]
        for svc, info in compose.services().items()
    }
    run_id = os.environ.get("XTASK_RUN_ID", "").strip()
    if not run_id:
        return now  # one pytest process: the module's first look is the run's
    path = os.path.join(tempfile.gettempdir(), f"chat-baseline-{compose.project}-{run_id}.json")
    # Written whole under another name, then linked: a reader never sees half of it, and the
    # link fails when another process of this run looked first.
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as out:
        json.dump(now, out)
    try:
        os.link(out.name, path)
    except FileExistsError:
        with open(path, encoding="utf-8") as first:
            return json.load(first)
    finally:
        os.unlink(out.name)
    return now


def _one_run(content="What is 20 + 22?", thread_id=None, token=None):
    import asyncio

    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, content, thread_id=thread_id, timeout=15)
        finally:
            await ws.close()

    return asyncio.run(scenario())


def test_every_service_container_is_running_and_healthy(compose, baseline):
    services = compose.services()
    missing = [s for s in SERVICES if s not in services]
    assert not missing, f"services without a container in {compose.project}: {missing}"
    for svc in SERVICES:
        state = services[svc]["State"]
        assert state["Status"] == "running", f"{svc}: {state['Status']}"
        assert "Health" in state, f"{svc} has no healthcheck"
        # A service a destructive test restarted just before is ready (the tests wait for the
        # backend's /ready) before the engine's next check says so: healthy within the deadline.
        compose.wait_healthy(svc, RECOVERY_DEADLINE_S)


def test_published_ports_are_loopback_only(compose):
    for svc, info in compose.services().items():
        for port, bindings in (info["NetworkSettings"]["Ports"] or {}).items():
            for b in bindings or []:
                assert b["HostIp"] in ("127.0.0.1", "::1"), f"{svc} {port} published on {b['HostIp']}"


def test_backend_ready_reports_postgres_and_redis(compose):
    wait_ready(10)
    with chatlib.http_client() as c:
        r = c.get(f"{chatlib.backend_url()}/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready", r.text


def _survives_restart(compose, service, make_user):
    user_id, token = make_user("restart")
    before = _one_run(token=token)
    assert_run_events(before)
    thread_id = before[0]["thread_id"]

    compose.restart(service)
    # Recovered when the backend can use it again (/ready checks postgres and redis); the
    # engine's own healthcheck, a second apart, is test_every_service_container_is_running_and_healthy's.
    took = wait_ready(RECOVERY_DEADLINE_S)

    after = _one_run("What is 5 * 5?", thread_id=thread_id, token=token)
    assert_run_events(after, thread_id=thread_id)
    assert after[-1]["answer"] == "25"
    history = chatlib.get_history(token, thread_id)
    assert history.status_code == 200, history.text
    contents = [m["content"] for m in history.json()["messages"]]
    assert contents == ["What is 20 + 22?", "42", "What is 5 * 5?", "25"], contents
    return took


@pytest.mark.destructive
def test_redis_restart_is_survived(compose, baseline, make_user):
    _survives_restart(compose, "redis", make_user)


@pytest.mark.destructive
def test_postgres_restart_is_survived(compose, baseline, make_user):
    _survives_restart(compose, "postgres", make_user)


@pytest.mark.destructive
def test_resume_works_after_redis_restart(compose, baseline, make_user):
    """The event buffer is rebuilt for new runs after redis lost its data."""
    import asyncio

    compose.restart("redis")
    wait_ready(RECOVERY_DEADLINE_S)
    _, token = make_user("resume-redis")

    async def scenario():
        ws = await open_ws(token)
        try:
            events = await run_message(ws, "What is 3 * 3?")
        finally:
            await ws.close()
        ws = await open_ws(token)  # a reconnecting client
        try:
            await chatlib.send(ws, {"type": "resume", "run_id": events[0]["run_id"], "after_seq": 2})
            replay = [await chatlib.recv(ws) for _ in range(3)]
            return events, replay
        finally:
            await ws.close()

    events, replay = asyncio.run(scenario())
    assert [e["seq"] for e in replay] == [3, 4, 5]
    assert replay == events[2:]


@pytest.mark.destructive
def test_ready_names_the_missing_dependency_and_recovers(compose, baseline):
    """With redis stopped /ready is 503 and names redis; after a start it is 200 again."""
    import time

    compose.docker("stop", "-t", "5", compose.container("redis"), timeout=60)
    try:
        deadline = time.monotonic() + 20
        last = None
        with chatlib.http_client() as c:
            while time.monotonic() < deadline:
                r = c.get(f"{chatlib.backend_url()}/ready", timeout=10)
                last = r
                if r.status_code == 503:
                    break
                time.sleep(0.2)
        assert last is not None and last.status_code == 503, f"/ready still {last.status_code if last else None} with redis stopped"
        body = last.json()
        assert body["status"] == "not_ready" and "redis" in body["reasons"], body
        assert "postgres" not in body["reasons"], body
        with chatlib.http_client() as c:
            assert c.get(f"{chatlib.backend_url()}/health").status_code == 200, "liveness must not depend on redis"
    finally:
        compose.docker("start", compose.container("redis"), timeout=60)
    wait_ready(RECOVERY_DEADLINE_S)


def test_no_container_restarted_unexpectedly(compose, baseline):
    """Only the services this module restarted on purpose may have a new start
    time; no container may have been restarted by its restart policy."""
    restarted_on_purpose = {"redis", "postgres"}
    for svc, info in compose.services().items():
        started_at, restart_count = baseline[svc]
        assert info["RestartCount"] == 0, f"{svc} was restarted {info['RestartCount']} times by docker"
        assert info["State"]["Status"] == "running", f"{svc}: {info['State']['Status']}"
        if svc not in restarted_on_purpose:
            assert info["State"]["StartedAt"] == started_at, f"{svc} restarted: {started_at} -> {info['State']['StartedAt']}"


def test_postgres_and_redis_publish_reachable_loopback_ports(compose):
    """postgres and redis publish only ephemeral loopback ports."""
    for svc, port in (("postgres", 5432), ("redis", 6379)):
        ip, host_port = compose.published_port(svc, port)
        assert ip == "127.0.0.1"
        with socket.create_connection((ip, host_port), timeout=3):
            pass
