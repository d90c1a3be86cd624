"""Mission critical: a user message produces the five agent events, in order,
with their fields, and the right answer."""

import uuid

import pytest

import chatlib
from chatlib import EXPECTED_EVENTS, assert_run_events, open_ws, run_message


def test_single_message_emits_five_events_in_order(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 2 + 3?")
        finally:
            await ws.close()

    events = run_async(scenario())
    assert [e["type"] for e in events] == EXPECTED_EVENTS
    assert_run_events(events)


def test_event_fields_are_complete(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "What is 6 * 7?", request_id="req-fields")
        finally:
            await ws.close()

    events = run_async(scenario())
    run_id, thread_id = assert_run_events(events)
    for e in events:
        for field in ("type", "run_id", "thread_id", "seq", "timestamp"):
            assert field in e, f"{e['type']} lacks {field}: {e}"
        assert isinstance(e["seq"], int)
    uuid.UUID(run_id)
    started, thinking, executing, completed_tool, completed = events
    assert started.get("request_id") == "req-fields", started
    assert executing["tool"] == "calculator"
    assert executing["arguments"] == {"expression": "6 * 7"}
    assert completed_tool["tool"] == "calculator"
    assert completed_tool["result"] == 42
    assert completed["answer"] == "42"


@pytest.mark.parametrize(
    "content,answer",
    [
        ("What is 2 + 3?", "5"),
        ("Please compute (4 + 6) * 3", "30"),
        ("what's 7 / 2", "3.5"),
        ("10 - 2 * 3 = ?", "4"),
        ("((1 + 2) * (3 + 4)) / 7", "3"),
    ],
)
def test_answer_is_correct(token, run_async, content, answer):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, content)
        finally:
            await ws.close()

    events = run_async(scenario())
    assert_run_events(events)
    assert events[-1]["answer"] == answer, f"{content!r}: answer {events[-1].get('answer')!r} != {answer!r}"


def test_repeated_messages_each_get_the_full_sequence(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            results = []
            thread_id = None
            for i in range(1, 5):
                events = await run_message(ws, f"What is {i} + {i}?", thread_id=thread_id)
                results.append(events)
                thread_id = events[0]["thread_id"]
            # nothing trails after the last run
            await chatlib.expect_no_frames(ws, 0.3)
            return results
        finally:
            await ws.close()

    results = run_async(scenario())
    run_ids = set()
    thread_ids = set()
    for i, events in enumerate(results, start=1):
        run_id, thread_id = assert_run_events(events)
        assert events[-1]["answer"] == str(2 * i)
        run_ids.add(run_id)
        thread_ids.add(thread_id)
    assert len(run_ids) == 4, "every message must start its own run"
    assert len(thread_ids) == 1, "messages naming the thread must stay in it"


def test_new_thread_per_message_without_thread_id(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            a = await run_message(ws, "1 + 1")
            b = await run_message(ws, "2 + 2")
            return a, b
        finally:
            await ws.close()

    a, b = run_async(scenario())
    assert a[0]["thread_id"] != b[0]["thread_id"]


def test_token_in_query_string_is_accepted(token, run_async):
    async def scenario():
        ws = await open_ws(token, via="query")
        try:
            return await run_message(ws, "What is 9 - 4?")
        finally:
            await ws.close()

    events = run_async(scenario())
    assert_run_events(events)
    assert events[-1]["answer"] == "5"


def test_plain_text_completes_deterministically(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, "hello there"), await run_message(ws, "hello there")
        finally:
            await ws.close()

    first, second = run_async(scenario())
    for events in (first, second):
        assert_run_events(events)
        assert events[2]["tool"] == "echo"
        assert events[-1]["answer"] == "hello there"
    strip = lambda evs: [{k: v for k, v in e.items() if k not in ("run_id", "thread_id", "timestamp", "message_id")} for e in evs]  # noqa: E731
    assert strip(first) == strip(second), "the agent must be deterministic"
