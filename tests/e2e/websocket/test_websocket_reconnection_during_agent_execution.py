"""E2E: a client disconnects mid-run, reconnects and resumes; it receives every
event exactly once, in order. `after_seq` semantics: events with seq > n."""

import asyncio

import chatlib
from chatlib import EXPECTED_EVENTS, assert_run_events, open_ws, recv, recv_expected, recv_quiet, send


def _resume(run_id, after_seq):
    return {"type": "resume", "run_id": run_id, "after_seq": after_seq}


async def _read_run_until_complete(ws, run_id, timeout=10):
    events = []
    while not events or events[-1]["type"] != "agent_completed":
        frame = await recv(ws, timeout)
        assert frame.get("run_id") == run_id, f"unexpected frame {frame}"
        events.append(frame)
    return events


def test_disconnect_mid_run_then_resume_gets_the_rest_exactly_once(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        await send(ws, {"type": "user_message", "content": "What is 12 * 12?", "step_delay_ms": 250})
        before = [await recv(ws), await recv(ws)]
        await ws.close()
        await asyncio.sleep(0.3)  # the run goes on while we are away
        ws = await open_ws(token)
        try:
            run_id = before[0]["run_id"]
            await send(ws, _resume(run_id, before[-1]["seq"]))
            after = await _read_run_until_complete(ws, run_id)
            trailing = await recv_quiet(ws, 0.6)
            return before, after, trailing
        finally:
            await ws.close()

    before, after, trailing = run_async(scenario())
    assert [e["seq"] for e in before] == [1, 2]
    assert [e["seq"] for e in after] == [3, 4, 5], "resume must deliver exactly the missing events"
    assert trailing == []
    assert_run_events(before + after)
    assert after[-1]["answer"] == "144"


def test_resume_after_completion_honours_after_seq(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            events = await chatlib.run_message(ws, "What is 3 + 4?")
        finally:
            await ws.close()
        run_id = events[0]["run_id"]
        replays = {}
        for n in (0, 2, 4, 5, 9):
            fresh = await open_ws(token)  # a reconnecting client: a new connection
            try:
                await send(fresh, _resume(run_id, n))
                replays[n] = await recv_expected(fresh, max(0, 5 - n))
            finally:
                await fresh.close()
        return events, replays

    events, replays = run_async(scenario())
    for n, frames in replays.items():
        assert [f["seq"] for f in frames] == [s for s in range(1, 6) if s > n], f"after_seq={n}: {frames}"
        assert frames == events[n:], f"after_seq={n}: replay differs from the live events"


def test_resume_never_repeats_what_the_connection_already_got(token, run_async):
    """Resuming on a connection that already received the events sends nothing twice."""

    async def scenario():
        ws = await open_ws(token)
        try:
            events = await chatlib.run_message(ws, "What is 6 - 1?")
            await send(ws, _resume(events[0]["run_id"], 0))
            await send(ws, _resume(events[0]["run_id"], 3))
            return events, await recv_quiet(ws, 0.5)
        finally:
            await ws.close()

    events, again = run_async(scenario())
    assert_run_events(events)
    assert again == [], f"events repeated on the same connection: {again}"


def test_resume_on_a_new_connection_while_run_in_flight(make_user, run_async):
    """Replay and live delivery race on the new connection: each seq once, in order."""
    cases = [(n, d) for n in (0, 1, 2, 3) for d in (0, 15, 40)]
    tokens = [make_user("race")[1] for _ in cases]

    async def attempt(token, after_seq, delay_ms):
        origin = await open_ws(token)
        await send(origin, {"type": "user_message", "content": "What is 2 * 21?", "step_delay_ms": delay_ms})
        got = []
        while len(got) < max(after_seq, 1):
            got.append(await recv(origin))
        run_id = got[0]["run_id"]
        await origin.close()
        ws = await open_ws(token)
        try:
            await send(ws, _resume(run_id, after_seq))
            events = await _read_run_until_complete(ws, run_id)
            trailing = await recv_quiet(ws, 0.3)
            return after_seq, events, trailing
        finally:
            await ws.close()

    async def scenario():
        return await asyncio.gather(*[attempt(t, n, d) for t, (n, d) in zip(tokens, cases)])

    for after_seq, events, trailing in run_async(scenario()):
        assert [e["seq"] for e in events] == list(range(after_seq + 1, 6)), (after_seq, [e["seq"] for e in events])
        assert [e["type"] for e in events] == EXPECTED_EVENTS[after_seq:]
        assert trailing == []
        assert events[-1]["answer"] == "42"


def test_still_connected_socket_is_not_duplicated_by_another_resume(token, run_async):
    """A second connection resuming must not make the first one see repeats."""

    async def scenario():
        a = await open_ws(token)
        b = await open_ws(token)
        try:
            await send(a, {"type": "user_message", "content": "5 + 5", "step_delay_ms": 100})
            first = await recv(a)
            await send(b, _resume(first["run_id"], 0))
            events_a = [first] + await _read_run_until_complete(a, first["run_id"])
            events_b = await _read_run_until_complete(b, first["run_id"])
            return events_a, events_b, await recv_quiet(a, 0.3), await recv_quiet(b, 0.3)
        finally:
            await a.close()
            await b.close()

    events_a, events_b, ta, tb = run_async(scenario())
    assert_run_events(events_a)
    assert_run_events(events_b)
    assert ta == [] and tb == []


def test_resume_of_unknown_or_malformed_run_is_an_error(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            await send(ws, _resume("6f1c1c3e-0000-4000-8000-000000000000", 0))
            await send(ws, _resume("nope", 0))
            await send(ws, {"type": "resume", "run_id": "6f1c1c3e-0000-4000-8000-000000000000", "after_seq": -1})
            frames = await recv_expected(ws, 3)
            still_works = await chatlib.run_message(ws, "1 + 1")
            return frames, still_works
        finally:
            await ws.close()

    frames, still_works = run_async(scenario())
    assert [f["type"] for f in frames] == ["error"] * 3, frames
    assert frames[0]["code"] == "run_not_found"
    assert still_works[-1]["answer"] == "2"


def test_run_completes_and_persists_while_client_is_away(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        await send(ws, {"type": "user_message", "content": "What is 100 - 1?", "step_delay_ms": 100})
        started = await recv(ws)
        await ws.close()
        await asyncio.sleep(0.8)
        ws = await open_ws(token)
        try:
            await send(ws, _resume(started["run_id"], 0))
            return started, await _read_run_until_complete(ws, started["run_id"])
        finally:
            await ws.close()

    started, replay = run_async(scenario())
    assert_run_events(replay)
    assert replay[0] == started
    history = chatlib.get_history(token, started["thread_id"]).json()["messages"]
    assert [m["content"] for m in history] == ["What is 100 - 1?", "99"]
