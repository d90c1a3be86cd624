"""E2E: many users at once; nobody receives another user's events and nobody
can read or write another user's thread (HTTP and WebSocket)."""

import asyncio

import chatlib
from chatlib import assert_run_events, open_ws, recv_expected, recv_quiet, run_message, send

N_USERS = 24


def test_many_users_concurrently_receive_only_their_own_events(run_async):
    async def one_user(client, i, connected, start):
        uid = chatlib.new_user_id(f"iso{i}")
        token = await chatlib.aget_token(client, uid)
        ws = await open_ws(token)
        try:
            connected.release()
            await start.wait()
            msgs = [f"What is {i} * 1000 + {k}?" for k in range(2)]
            # two messages back to back, then everything this socket receives
            for m in msgs:
                await send(ws, {"type": "user_message", "content": m, "step_delay_ms": 30})
            runs, others = await chatlib.collect_runs(ws, 2, timeout=20)
            trailing = await recv_quiet(ws, 0.5)
            return uid, i, runs, others, trailing
        finally:
            await ws.close()

    async def scenario():
        start = asyncio.Event()
        connected = asyncio.Semaphore(0)
        async with chatlib.async_http_client() as client:
            tasks = [asyncio.ensure_future(one_user(client, i, connected, start)) for i in range(N_USERS)]
            for _ in range(N_USERS):  # everybody is connected before anybody sends
                await asyncio.wait_for(connected.acquire(), 20)
            start.set()
            return await asyncio.gather(*tasks)

    results = run_async(scenario())
    all_run_ids = {}
    for uid, i, runs, others, trailing in results:
        assert others == [], f"user {i} got unexpected frames {others}"
        assert trailing == [], f"user {i} received frames after its runs: {trailing}"
        assert len(runs) == 2, f"user {i} saw {len(runs)} runs (expected exactly its own 2)"
        answers = set()
        for run_id, events in runs.items():
            assert_run_events(events)
            assert run_id not in all_run_ids, f"run {run_id} delivered to users {all_run_ids[run_id]} and {i}"
            all_run_ids[run_id] = i
            answers.add(events[-1]["answer"])
        assert answers == {str(i * 1000), str(i * 1000 + 1)}, f"user {i} got answers {answers}"
    assert len(all_run_ids) == 2 * N_USERS


def test_user_cannot_read_another_users_thread_over_http(make_user, run_async):
    (_, owner_token), (_, other_token) = make_user("owner"), make_user("intruder")

    async def scenario():
        ws = await open_ws(owner_token)
        try:
            return await run_message(ws, "secret plan 1 + 1")
        finally:
            await ws.close()

    thread_id = run_async(scenario())[0]["thread_id"]
    own = chatlib.get_history(owner_token, thread_id)
    assert own.status_code == 200 and len(own.json()["messages"]) == 2, own.text
    other = chatlib.get_history(other_token, thread_id)
    assert other.status_code == 404, f"another user's thread answered {other.status_code}: {other.text}"
    assert "secret plan" not in other.text
    with chatlib.http_client() as c:
        r = c.get(f"{chatlib.backend_url()}/threads", headers={"Authorization": f"Bearer {other_token}"})
    assert r.status_code == 200 and r.json()["threads"] == [], r.text


def test_user_cannot_post_into_another_users_thread_over_ws(make_user, run_async):
    (_, owner_token), (_, other_token) = make_user("owner"), make_user("intruder")

    async def scenario():
        owner = await open_ws(owner_token)
        intruder = await open_ws(other_token)
        try:
            events = await run_message(owner, "What is 1 + 1?")
            thread_id = events[0]["thread_id"]
            await send(intruder, {"type": "user_message", "content": "What is 6 + 6?", "thread_id": thread_id})
            intruder_frames = await recv_expected(intruder, 1)
            owner_frames = await recv_quiet(owner, 0.3)
            return thread_id, intruder_frames, owner_frames
        finally:
            await owner.close()
            await intruder.close()

    thread_id, intruder_frames, owner_frames = run_async(scenario())
    assert len(intruder_frames) == 1, f"expected exactly one error event, got {intruder_frames}"
    assert intruder_frames[0]["type"] == "error" and intruder_frames[0]["code"] == "thread_not_found"
    assert owner_frames == [], f"the owner must not see anything of the intrusion: {owner_frames}"
    history = chatlib.get_history(owner_token, thread_id).json()["messages"]
    assert [m["content"] for m in history] == ["What is 1 + 1?", "2"], "the intruder's message was persisted"


def test_nonexistent_thread_is_refused_without_a_run(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            for bad in ("00000000-0000-0000-0000-000000000000", "not-a-uuid", 12345):
                await send(ws, {"type": "user_message", "content": "1 + 1", "thread_id": bad})
            return await recv_expected(ws, 3)
        finally:
            await ws.close()

    frames = run_async(scenario())
    assert [f["type"] for f in frames] == ["error"] * 3, frames
    assert all(f["code"] == "thread_not_found" for f in frames), frames


def test_user_cannot_resume_another_users_run(make_user, run_async):
    (_, owner_token), (_, other_token) = make_user("owner"), make_user("intruder")

    async def scenario():
        owner = await open_ws(owner_token)
        intruder = await open_ws(other_token)
        try:
            events = await run_message(owner, "What is 4 + 4?")
            await send(intruder, {"type": "resume", "run_id": events[0]["run_id"], "after_seq": 0})
            return await recv_expected(intruder, 1)
        finally:
            await owner.close()
            await intruder.close()

    frames = run_async(scenario())
    assert len(frames) == 1 and frames[0]["type"] == "error", frames
    assert frames[0]["code"] == "run_not_found"
