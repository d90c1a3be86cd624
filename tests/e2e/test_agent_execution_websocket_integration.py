"""E2E: the agent's tool calls (arguments and results) and the error events for
malformed input, which never close the socket nor disturb other users."""

import asyncio
import json

import chatlib
from chatlib import assert_run_events, open_ws, recv, recv_expected, recv_quiet, run_message, send


def _run(token, content, run_async, **extra):
    async def scenario():
        ws = await open_ws(token)
        try:
            return await run_message(ws, content, **extra)
        finally:
            await ws.close()

    return run_async(scenario())


def test_calculator_tool_arguments_and_result(token, run_async):
    events = _run(token, "Can you work out 12 * (3 + 4) for me?", run_async)
    assert_run_events(events)
    executing, completed = events[2], events[3]
    assert executing["tool"] == "calculator"
    assert executing["arguments"] == {"expression": "12 * (3 + 4)"}
    assert completed["tool"] == "calculator"
    assert completed["result"] == 84
    assert "error" not in completed
    assert events[4]["answer"] == "84"


def test_fractional_result(token, run_async):
    events = _run(token, "1 / 4 + 0.5", run_async)
    assert events[3]["result"] == 0.75
    assert events[4]["answer"] == "0.75"


def test_echo_tool_for_text_without_arithmetic(token, run_async):
    events = _run(token, "Tell me a story", run_async)
    assert_run_events(events)
    assert events[2]["tool"] == "echo"
    assert events[2]["arguments"] == {"text": "Tell me a story"}
    assert events[3]["result"] == "Tell me a story"
    assert events[4]["answer"] == "Tell me a story"


def test_division_by_zero_still_completes(token, run_async):
    events = _run(token, "What is 1 / 0?", run_async)
    assert_run_events(events)
    assert events[3]["result"] is None
    assert "division by zero" in events[3]["error"]
    assert "division by zero" in events[4]["answer"]


def _error_case(token, run_async, raw):
    """Send one bad frame; expect exactly one error event and a socket that still works."""

    async def scenario():
        ws = await open_ws(token)
        try:
            await ws.send(raw)
            frames = await recv_expected(ws, 1)
            events = await run_message(ws, "What is 2 + 2?")
            return frames, events
        finally:
            await ws.close()

    frames, events = run_async(scenario())
    assert len(frames) == 1, f"expected exactly one frame, got {frames}"
    assert frames[0]["type"] == "error", frames
    assert frames[0].get("message"), frames
    assert_run_events(events)
    assert events[-1]["answer"] == "4", "the socket must keep working after an error"
    return frames[0]


def test_invalid_json_is_an_error_event(token, run_async):
    assert _error_case(token, run_async, "{not json")["code"] == "invalid_json"


def test_non_object_json_is_an_error_event(token, run_async):
    assert _error_case(token, run_async, "[1, 2, 3]")["code"] == "invalid_message"


def test_unknown_type_is_an_error_event(token, run_async):
    assert _error_case(token, run_async, json.dumps({"type": "launch_rockets"}))["code"] == "unknown_type"


def test_missing_content_is_an_error_event(token, run_async):
    assert _error_case(token, run_async, json.dumps({"type": "user_message"}))["code"] == "missing_content"


def test_oversized_message_is_an_error_event(token, run_async):
    raw = json.dumps({"type": "user_message", "content": "x" * (100 * 1024)})
    assert _error_case(token, run_async, raw)["code"] == "message_too_large"


def test_invalid_step_delay_is_an_error_event(token, run_async):
    raw = json.dumps({"type": "user_message", "content": "1 + 1", "step_delay_ms": 999999})
    assert _error_case(token, run_async, raw)["code"] == "invalid_step_delay"


def test_binary_frame_is_an_error_event(token, run_async):
    assert _error_case(token, run_async, b"\x00\x01\x02")["code"] == "unsupported_frame"


def test_bad_input_does_not_disturb_other_users(make_user, run_async):
    (_, bad_token), (_, good_token) = make_user("bad"), make_user("good")

    async def scenario():
        bad, good = await open_ws(bad_token), await open_ws(good_token)
        try:
            await send(good, {"type": "user_message", "content": "What is 50 + 50?", "step_delay_ms": 60})
            garbage = ["{", "null", json.dumps({"type": "??"}), "x" * (70 * 1024), json.dumps({"type": "user_message"})]
            for g in garbage:
                await bad.send(g)
            good_runs, good_other = await chatlib.collect_runs(good, 1)
            bad_frames = await recv_expected(bad, len(garbage))
            good_trailing = await recv_quiet(good, 0.2)
            bad_alive = await chatlib.closed_or_open(bad)
            return good_runs, good_other, good_trailing, bad_frames, bad_alive
        finally:
            await bad.close()
            await good.close()

    good_runs, good_other, good_trailing, bad_frames, bad_alive = run_async(scenario())
    (events,) = good_runs.values()
    assert_run_events(events)
    assert events[-1]["answer"] == "100"
    assert good_other == [] and good_trailing == [], "errors leaked to another user"
    assert [f["type"] for f in bad_frames] == ["error"] * 5, bad_frames
    assert bad_alive, "the misbehaving user's socket must stay open"


def test_ping_gets_pong(token, run_async):
    async def scenario():
        ws = await open_ws(token)
        try:
            await send(ws, {"type": "ping"})
            return await recv(ws)
        finally:
            await ws.close()

    assert run_async(scenario())["type"] == "pong"
