"""E2E (docker target): every service is reachable from the host through its
published port, and from inside the compose network by service name."""

import json
import socket
import textwrap

import pytest

import chatlib

pytestmark = pytest.mark.docker


def test_backend_and_auth_reachable_from_host(compose):
    with chatlib.http_client() as c:
        rb = c.get(f"{chatlib.backend_url()}/health")
        ra = c.get(f"{chatlib.auth_url()}/health")
    assert rb.status_code == 200 and rb.json()["status"] == "ok", rb.text
    assert ra.status_code == 200 and ra.json()["status"] == "ok", ra.text


def test_postgres_reachable_from_host_on_published_port(compose):
    ip, port = compose.published_port("postgres", 5432)
    # SSLRequest: a PostgreSQL server answers with a single byte, 'S' or 'N'
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
        assert s.recv(1) in (b"S", b"N")


def test_redis_reachable_from_host_on_published_port(compose):
    ip, port = compose.published_port("redis", 6379)
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall(b"PING\r\n")
        assert s.recv(64).startswith(b"+PONG")


IN_NETWORK_PROBE = textwrap.dedent(
    """
    import json, socket, urllib.request
    out = {}
    try:
        r = urllib.request.urlopen("http://auth:8001/health", timeout=3)
        out["auth"] = [r.status, json.loads(r.read())["status"]]
    except Exception as e:
        out["auth"] = repr(e)
    try:
        s = socket.create_connection(("redis", 6379), timeout=3)
        s.sendall(b"PING\\r\\n"); out["redis"] = s.recv(64).decode(); s.close()
    except Exception as e:
        out["redis"] = repr(e)
    try:
        s = socket.create_connection(("postgres", 5432), timeout=3)
        s.sendall((8).to_bytes(4, "big") + (80877103).to_bytes(4, "big"))
        out["postgres"] = s.recv(1).decode(); s.close()
    except Exception as e:
        out["postgres"] = repr(e)
    try:
        r = urllib.request.urlopen("http://backend:8000/ready", timeout=3)
        out["backend"] = [r.status, json.loads(r.read())["status"]]
    except Exception as e:
        out["backend"] = repr(e)
    print(json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def in_network(compose):
    proc = compose.exec_python("backend", IN_NETWORK_PROBE)
    assert proc.returncode == 0, f"probe failed: {proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_auth_reachable_by_service_name(in_network):
    assert in_network["auth"] == [200, "ok"], in_network


def test_redis_reachable_by_service_name(in_network):
    assert in_network["redis"].startswith("+PONG"), in_network


def test_postgres_reachable_by_service_name(in_network):
    assert in_network["postgres"] in ("S", "N"), in_network


def test_backend_reachable_by_service_name(in_network):
    assert in_network["backend"] == [200, "ready"], in_network


def test_websocket_handshake_from_host(compose, token, run_async):
    async def scenario():
        ws = await chatlib.open_ws(token)
        try:
            await chatlib.send(ws, {"type": "ping"})
            return await chatlib.recv(ws)
        finally:
            await ws.close()

    assert run_async(scenario())["type"] == "pong"
