"""E2E (docker target): the WebSocket through the backend's published port,
and the backend container's logs show the run."""

import asyncio
import time
from urllib.parse import urlparse

import pytest

import chatlib
from chatlib import assert_run_events, open_ws, run_message

pytestmark = pytest.mark.docker


def test_backend_ws_url_is_the_published_port(compose):
    ip, port = compose.published_port("backend", 8000)
    url = urlparse(chatlib.backend_ws_url())
    assert url.scheme in ("ws", "wss")
    assert url.port == port, f"BACKEND_WS_URL port {url.port} is not the published port {port}"
    assert ip == "127.0.0.1"


def test_websocket_through_published_port(compose, token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 11 + 31?")
        finally:
            await ws.close()

    events = run_async(scenario())
    assert_run_events(events)
    assert events[-1]["answer"] == "42"


def test_backend_logs_show_the_run(compose, user_id, token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 1 + 2?")
        finally:
            await ws.close()

    events = run_async(scenario())
    run_id = events[0]["run_id"]
    deadline = time.monotonic() + 10
    logs = ""
    while time.monotonic() < deadline:
        logs = compose.logs("backend", since="5m")
        if run_id in logs and f"run completed run_id={run_id}" in logs:
            break
        time.sleep(0.2)
    assert f"run started run_id={run_id}" in logs, "backend logs do not show the run start"
    assert f"run completed run_id={run_id}" in logs, "backend logs do not show the run completion"
    line = next(l for l in logs.splitlines() if f"run started run_id={run_id}" in l)
    assert user_id in line and events[0]["thread_id"] in line, line


def test_logs_never_contain_tokens(compose, token, jwt_secret, run_async):
    async def scenario():
        ws = await open_ws(token, via="query")  # token in the URL: must not reach the logs
        try:
            await run_message(ws, "What is 2 * 2?")
        finally:
            await ws.close()

    run_async(scenario())
    chatlib.get_history(token, "00000000-0000-0000-0000-000000000000")
    time.sleep(0.3)
    signature = token.split(".")[2]
    for svc in ("backend", "auth"):
        logs = compose.logs(svc, since="5m")
        assert signature not in logs, f"{svc} logs contain a token"
        assert jwt_secret not in logs, f"{svc} logs contain the JWT secret"


def test_two_users_through_docker_do_not_mix(compose, make_user, run_async):
    (_, ta), (_, tb) = make_user(), make_user()

    async def scenario():
        a, b = await open_ws(ta), await open_ws(tb)
        try:
            ea, eb = await asyncio.gather(run_message(a, "What is 100 + 1?"), run_message(b, "What is 200 + 2?"))
            await chatlib.expect_no_frames(a, 0.3)
            await chatlib.expect_no_frames(b, 0.3)
            return ea, eb
        finally:
            await a.close()
            await b.close()

    ea, eb = run_async(scenario())
    assert ea[-1]["answer"] == "101" and eb[-1]["answer"] == "202"
    assert ea[0]["run_id"] != eb[0]["run_id"]
