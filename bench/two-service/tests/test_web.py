# The web service's tests (the same as the gate fixture's, crates/stackgate/tests/fixtures/gate):
# WEB_URL comes from the gate (endpoint `web`), from bench/gate-vs-hand.sh, or from conftest.py.
import json
import os
import urllib.request


def get(path):
    with urllib.request.urlopen(os.environ["WEB_URL"] + path, timeout=5) as response:
        return response.status, json.loads(response.read())


def test_health():
    assert get("/health") == (200, {"ok": True, "path": "/health"})


def test_echoes_the_path():
    status, body = get("/hello")
    assert status == 200 and body["path"] == "/hello"
