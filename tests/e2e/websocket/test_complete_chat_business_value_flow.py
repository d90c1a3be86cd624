"""E2E golden path: token -> connect -> message -> events -> answer -> history
persisted -> a second message in the same thread."""

import chatlib
from chatlib import assert_run_events, open_ws, run_message


def test_golden_path_chat_flow(user_id, run_async):
    token = chatlib.get_token(user_id)
    claims = chatlib.jwt_claims(token)
    assert claims["sub"] == user_id and claims["exp"] > claims["iat"]

    async def scenario():
        ws = await open_ws(token)
        try:
            first = await run_message(ws, "What is 2 + 3?")
            second = await run_message(ws, "And what is 5 * 8?", thread_id=first[0]["thread_id"])
            return first, second
        finally:
            await ws.close()

    first, second = run_async(scenario())
    run1, thread_id = assert_run_events(first)
    run2, _ = assert_run_events(second, thread_id=thread_id)
    assert run1 != run2
    assert first[-1]["answer"] == "5"
    assert second[-1]["answer"] == "40"

    r = chatlib.get_history(token, thread_id)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["thread_id"] == thread_id
    msgs = body["messages"]
    assert [(m["role"], m["content"]) for m in msgs] == [
        ("user", "What is 2 + 3?"),
        ("assistant", "5"),
        ("user", "And what is 5 * 8?"),
        ("assistant", "40"),
    ]
    assert [m["run_id"] for m in msgs] == [run1, run1, run2, run2]
    assert first[-1]["message_id"] == msgs[1]["id"]
    ids = [m["id"] for m in msgs]
    assert ids == sorted(ids) and len(set(ids)) == 4


def test_history_survives_reconnect(token, run_async):
    async def first_session():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 12 / 4?")
        finally:
            await ws.close()

    async def second_session(thread_id):
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 3 + 3?", thread_id=thread_id)
        finally:
            await ws.close()

    first = run_async(first_session())
    thread_id = first[0]["thread_id"]
    second = run_async(second_session(thread_id))
    assert second[-1]["answer"] == "6"
    msgs = chatlib.get_history(token, thread_id).json()["messages"]
    assert [m["content"] for m in msgs] == ["What is 12 / 4?", "3", "What is 3 + 3?", "6"]


def test_threads_listing_shows_own_threads(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            a = await run_message(ws, "1 + 1")
            b = await run_message(ws, "2 + 2")
            return {a[0]["thread_id"], b[0]["thread_id"]}
        finally:
            await ws.close()

    mine = run_async(scenario())
    with chatlib.http_client() as c:
        r = c.get(f"{chatlib.backend_url()}/threads", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert {t["thread_id"] for t in r.json()["threads"]} == mine


def test_history_requires_a_token(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "1 + 2")
        finally:
            await ws.close()

    thread_id = run_async(scenario())[0]["thread_id"]
    with chatlib.http_client() as c:
        r = c.get(f"{chatlib.backend_url()}/threads/{thread_id}/messages")
    assert r.status_code == 401, r.text
    assert r.json()["reason"] == "missing_token"
