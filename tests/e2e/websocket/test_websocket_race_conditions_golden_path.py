"""E2E: concurrency on the golden path. Concurrent messages on one connection
and across connections of one user, rapid connect/disconnect, a message sent
the instant the socket opens: no lost or duplicated events, no server error."""

import asyncio

import chatlib
from chatlib import assert_run_events, open_ws, recv_quiet, send


def _check_runs(runs, expected_answers):
    answers = {}
    for run_id, events in runs.items():
        assert_run_events(events)  # exactly 5, in order, no duplicates
        answers[run_id] = events[-1]["answer"]
    assert sorted(answers.values()) == sorted(expected_answers), answers
    return answers


def test_concurrent_messages_on_one_connection(token, run_async):
    n = 8

    async def scenario():
        ws = await open_ws(token)
        try:
            await asyncio.gather(*[
                send(ws, {"type": "user_message", "content": f"What is {i} + 100?", "request_id": f"r{i}"})
                for i in range(n)
            ])
            runs, others = await chatlib.collect_runs(ws, n, timeout=20)
            trailing = await recv_quiet(ws, 0.5)
            return runs, others, trailing
        finally:
            await ws.close()

    runs, others, trailing = run_async(scenario())
    assert others == [] and trailing == [], (others, trailing)
    assert len(runs) == n
    _check_runs(runs, [str(i + 100) for i in range(n)])
    by_request = {events[0]["request_id"]: events[-1]["answer"] for events in runs.values()}
    assert by_request == {f"r{i}": str(i + 100) for i in range(n)}


def test_concurrent_messages_across_connections_of_one_user(token, run_async):
    """Every connection the user has open sees every run of that user, once."""
    n_conns = 3

    async def scenario():
        conns = [await open_ws(token) for _ in range(n_conns)]
        try:
            await asyncio.gather(*[
                send(ws, {"type": "user_message", "content": f"What is {i} * 11?"})
                for i, ws in enumerate(conns, start=1)
            ])
            results = await asyncio.gather(*[chatlib.collect_runs(ws, n_conns, timeout=20) for ws in conns])
            trailing = await asyncio.gather(*[recv_quiet(ws, 0.5) for ws in conns])
            return results, trailing
        finally:
            for ws in conns:
                await ws.close()

    results, trailing = run_async(scenario())
    assert trailing == [[]] * n_conns, trailing
    seen = None
    for runs, others in results:
        assert others == []
        assert len(runs) == n_conns
        _check_runs(runs, [str(11 * i) for i in range(1, n_conns + 1)])
        seen = seen or set(runs)
        assert set(runs) == seen, "all connections of a user must see the same runs"


def test_rapid_connect_disconnect_leaves_server_healthy(token, run_async):
    async def scenario():
        for _ in range(25):
            ws = await open_ws(token)
            await ws.close()
        # half-open: connect and drop without a close handshake
        for _ in range(5):
            ws = await open_ws(token)
            ws.transport.abort()
        ws = await open_ws(token)
        try:
            return await chatlib.run_message(ws, "What is 8 + 8?")
        finally:
            await ws.close()

    events = run_async(scenario())
    assert_run_events(events)
    assert events[-1]["answer"] == "16"
    with chatlib.http_client() as c:
        assert c.get(f"{chatlib.backend_url()}/health").status_code == 200


def test_message_sent_immediately_after_connect(make_user, run_async):
    async def one(i):
        _, token = make_user(f"fast{i}")
        ws = await open_ws(token)
        try:
            await send(ws, {"type": "user_message", "content": f"{i} + {i}"})
            runs, others = await chatlib.collect_runs(ws, 1)
            return i, runs, others
        finally:
            await ws.close()

    async def scenario():
        return await asyncio.gather(*[one(i) for i in range(6)])

    for i, runs, others in run_async(scenario()):
        assert others == []
        (events,) = runs.values()
        assert_run_events(events)
        assert events[-1]["answer"] == str(2 * i)


def test_disconnect_with_run_in_flight_does_not_break_anything(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        await send(ws, {"type": "user_message", "content": "What is 9 * 9?", "step_delay_ms": 50})
        first = await chatlib.recv(ws)
        await ws.close()
        await asyncio.sleep(0.5)  # the run finishes with nobody listening
        ws2 = await open_ws(token)
        try:
            events = await chatlib.run_message(ws2, "What is 1 + 1?")
            return first, events
        finally:
            await ws2.close()

    first, events = run_async(scenario())
    assert first["type"] == "agent_started"
    assert_run_events(events)
    history = chatlib.get_history(token, first["thread_id"]).json()["messages"]
    assert [m["content"] for m in history] == ["What is 9 * 9?", "81"], "the run must complete without a listener"


def test_interleaved_users_and_connections_no_duplicates(make_user, run_async):
    users = [make_user(f"mix{i}") for i in range(4)]

    async def per_user(idx, token):
        a, b = await open_ws(token), await open_ws(token)
        try:
            await asyncio.gather(
                send(a, {"type": "user_message", "content": f"{idx} * 3", "step_delay_ms": 5}),
                send(b, {"type": "user_message", "content": f"{idx} * 5", "step_delay_ms": 5}),
            )
            ra, rb = await asyncio.gather(chatlib.collect_runs(a, 2), chatlib.collect_runs(b, 2))
            ta, tb = await asyncio.gather(recv_quiet(a, 0.4), recv_quiet(b, 0.4))
            return idx, ra, rb, ta, tb
        finally:
            await a.close()
            await b.close()

    async def scenario():
        return await asyncio.gather(*[per_user(i, t) for i, (_, t) in enumerate(users)])

    for idx, (runs_a, oa), (runs_b, ob), ta, tb in run_async(scenario()):
        assert oa == ob == ta == tb == []
        assert set(runs_a) == set(runs_b)
        _check_runs(runs_a, [str(idx * 3), str(idx * 5)])
        _check_runs(runs_b, [str(idx * 3), str(idx * 5)])
