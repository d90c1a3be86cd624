"""Client helpers shared by the suites: endpoints from the environment,
tokens, WebSocket sessions, event assertions, and docker access.

Endpoints come ONLY from the environment (BACKEND_URL, BACKEND_WS_URL,
AUTH_URL); nothing here knows a port.
"""

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import os
import shutil
import ssl
import subprocess
import time
import uuid

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

EXPECTED_EVENTS = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]
RUN_EVENT_TYPES = set(EXPECTED_EVENTS)
DEFAULT_TIMEOUT = 10.0


# --------------------------------------------------------------------------- environment


def require_env(name):
    value = os.environ.get(name, "").strip()
    if not value:
        pytest.fail(
            f"{name} is not set. The suites read endpoints only from the environment: "
            "set BACKEND_URL, BACKEND_WS_URL and AUTH_URL (cargo xtask sets them).",
            pytrace=False,
        )
    return value.rstrip("/")


def backend_url():
    return require_env("BACKEND_URL")


def backend_ws_url():
    return require_env("BACKEND_WS_URL")


def auth_url():
    return require_env("AUTH_URL")


def new_user_id(tag="u"):
    run = os.environ.get("XTASK_RUN_ID", "adhoc")[:24]
    return f"{tag}-{run}-{uuid.uuid4().hex[:16]}"


_shared_http = None
_tls_context = None


def tls_context():
    """What https and wss endpoints are verified against: SSL_CERT_FILE /
    SSL_CERT_DIR when set (the harness points SSL_CERT_FILE at its CA bundle
    when staging has its own CA), else None: each client's default roots.
    Built here because trust_env=False (no proxy) also makes httpx ignore
    SSL_CERT_FILE. Verification is never turned off."""
    global _tls_context
    cafile = os.environ.get("SSL_CERT_FILE", "").strip() or None
    capath = os.environ.get("SSL_CERT_DIR", "").strip() or None
    if _tls_context is None and (cafile or capath):
        _tls_context = ssl.create_default_context(cafile=cafile, capath=capath)
    return _tls_context


def _httpx_verify():
    return tls_context() or True


def _ws_tls(url):
    """websockets refuses an ssl argument for ws://; for wss:// it gets our context."""
    context = tls_context()
    return {"ssl": context} if context is not None and url.startswith("wss://") else {}


def http_client():
    """The process-wide HTTP client (connection reuse, one SSL context), as a
    context manager that leaves it open. trust_env=False: loopback traffic
    must never go through a proxy."""
    global _shared_http
    if _shared_http is None:
        _shared_http = httpx.Client(timeout=10.0, trust_env=False, verify=_httpx_verify())
    return contextlib.nullcontext(_shared_http)


def async_http_client(**kw):
    return httpx.AsyncClient(timeout=10.0, trust_env=False, verify=_httpx_verify(), **kw)


# --------------------------------------------------------------------------- tokens


def get_token(user_id, expires_in=None):
    body = {"user_id": user_id}
    if expires_in is not None:
        body["expires_in"] = expires_in
    with http_client() as c:
        r = c.post(f"{auth_url()}/token", json=body)
    assert r.status_code == 200, f"auth /token returned {r.status_code}: {r.text}"
    data = r.json()
    assert isinstance(data.get("token"), str) and data["token"].count(".") == 2, data
    return data["token"]


async def aget_token(client, user_id):
    r = await client.post(f"{auth_url()}/token", json={"user_id": user_id})
    assert r.status_code == 200, f"auth /token returned {r.status_code}: {r.text}"
    return r.json()["token"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def make_jwt(claims, secret, alg="HS256"):
    """Mint a JWT by hand (for forged / wrong-issuer / alg=none tokens)."""
    header = _b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    if alg == "none":
        return f"{header}.{payload}."
    sig = hmac.new(secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(sig)}"


def jwt_claims(token):
    return json.loads(_b64url_decode(token.split(".")[1]))


def tamper_subject(token, new_sub):
    """Swap the subject of a real token, keeping its (now wrong) signature."""
    header, _, sig = token.split(".")
    claims = jwt_claims(token)
    claims["sub"] = new_sub
    return f"{header}.{_b64url(json.dumps(claims).encode())}.{sig}"


# --------------------------------------------------------------------------- websocket


def ws_url(token=None):
    url = backend_ws_url()
    if token is not None:
        url += ("&" if "?" in url else "?") + "token=" + token
    return url


async def open_ws(token, via="header"):
    """Open an authenticated WebSocket (token in the header, or ?token=)."""
    if via == "query":
        url = ws_url(token)
        return await ws_connect(url, proxy=None, max_size=8 * 1024 * 1024, open_timeout=10, compression=None,
                                **_ws_tls(url))
    return await ws_connect(
        ws_url(), additional_headers={"Authorization": f"Bearer {token}"},
        proxy=None, max_size=8 * 1024 * 1024, open_timeout=10, compression=None, **_ws_tls(ws_url()),
    )


async def ws_handshake_status(headers=None, token_query=None):
    """Try to open /ws; return (status, json_body) of a refused handshake,
    or (101, None) when it was accepted."""
    url = ws_url(token_query) if token_query is not None else ws_url()
    try:
        ws = await ws_connect(url, additional_headers=headers or {}, proxy=None, open_timeout=10, **_ws_tls(url))
    except InvalidStatus as exc:
        body = bytes(exc.response.body or b"")
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        return exc.response.status_code, parsed
    await ws.close()
    return 101, None


async def send(ws, obj):
    await ws.send(json.dumps(obj))


async def recv(ws, timeout=DEFAULT_TIMEOUT):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    return json.loads(raw)


async def recv_quiet(ws, quiet=0.5):
    """Collect every frame that arrives until `quiet` seconds pass with none."""
    frames = []
    while True:
        try:
            frames.append(await recv(ws, timeout=quiet))
        except asyncio.TimeoutError:
            return frames


async def recv_expected(ws, count, quiet=0.3, timeout=DEFAULT_TIMEOUT):
    """The `count` frames a test expects, each given up to `timeout` (a busy server answers late,
    not never), then every further frame that arrives until `quiet` seconds pass with none: a
    test that checks the frames sees an unexpected extra one too."""
    frames = []
    try:
        while len(frames) < count:
            frames.append(await recv(ws, timeout=timeout))
    except asyncio.TimeoutError:
        return frames
    return frames + await recv_quiet(ws, quiet)


async def collect_runs(ws, n_runs, timeout=DEFAULT_TIMEOUT, stop_on_error=True):
    """Read frames until `n_runs` runs have completed. Returns (runs, others):
    runs maps run_id -> [events in arrival order]; others holds every non-run frame."""
    runs, others = {}, []
    completed = set()
    deadline = time.monotonic() + timeout
    while len(completed) < n_runs:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(
                f"timed out: {len(completed)}/{n_runs} runs completed; runs so far "
                f"{ {k: [e['type'] for e in v] for k, v in runs.items()} }, other frames {others}")
        frame = await recv(ws, timeout=left)
        if frame.get("type") in RUN_EVENT_TYPES:
            runs.setdefault(frame["run_id"], []).append(frame)
            if frame["type"] == "agent_completed":
                completed.add(frame["run_id"])
        else:
            others.append(frame)
            if stop_on_error and frame.get("type") == "error":
                raise AssertionError(f"unexpected error event: {frame}")
    return runs, others


async def run_message(ws, content, thread_id=None, timeout=DEFAULT_TIMEOUT, **extra):
    """Send one user_message and return the events of its run."""
    msg = {"type": "user_message", "content": content, **extra}
    if thread_id is not None:
        msg["thread_id"] = thread_id
    await send(ws, msg)
    runs, _ = await collect_runs(ws, 1, timeout=timeout)
    assert len(runs) == 1, f"expected exactly one run, got {list(runs)}"
    return next(iter(runs.values()))


def parse_ts(value):
    assert isinstance(value, str), f"timestamp must be an ISO-8601 string, got {value!r}"
    ts = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert ts.tzinfo is not None, f"timestamp without timezone: {value}"
    return ts


def assert_run_events(events, thread_id=None):
    """The five events, in order, seq 1..5, one run_id and thread_id, timestamps sane."""
    types = [e.get("type") for e in events]
    assert types == EXPECTED_EVENTS, f"event order {types} != {EXPECTED_EVENTS}"
    assert [e.get("seq") for e in events] == [1, 2, 3, 4, 5], f"seq {[e.get('seq') for e in events]}"
    run_ids = {e.get("run_id") for e in events}
    assert len(run_ids) == 1, f"events carry several run_ids: {run_ids}"
    run_id = run_ids.pop()
    uuid.UUID(str(run_id))
    thread_ids = {e.get("thread_id") for e in events}
    assert len(thread_ids) == 1, f"events carry several thread_ids: {thread_ids}"
    tid = thread_ids.pop()
    assert isinstance(tid, str) and tid, f"bad thread_id {tid!r}"
    if thread_id is not None:
        assert tid == thread_id, f"thread_id {tid} != expected {thread_id}"
    stamps = [parse_ts(e.get("timestamp")) for e in events]
    assert stamps == sorted(stamps), f"timestamps go backwards: {[e['timestamp'] for e in events]}"
    now = dt.datetime.now(dt.timezone.utc)
    assert abs((now - stamps[0]).total_seconds()) < 300, f"timestamp far from now: {stamps[0]}"
    return run_id, tid


def answer_of(events):
    return events[-1].get("answer")


# --------------------------------------------------------------------------- http


def get_history(token, thread_id):
    with http_client() as c:
        return c.get(f"{backend_url()}/threads/{thread_id}/messages",
                     headers={"Authorization": f"Bearer {token}"})


def wait_ready(deadline_s=60.0):
    """Poll /ready until 200; returns the seconds it took."""
    start = time.monotonic()
    last = None
    with http_client() as c:
        while time.monotonic() - start < deadline_s:
            try:
                r = c.get(f"{backend_url()}/ready", timeout=5)
                last = f"{r.status_code} {r.text}"
                if r.status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError as exc:
                last = repr(exc)
            time.sleep(0.1)
    raise AssertionError(f"/ready not 200 within {deadline_s}s; last answer: {last}")


# --------------------------------------------------------------------------- docker


class ComposeProject:
    """The harness's compose project, reached through the docker CLI filtered
    by the label com.docker.compose.project (works for compose v1 and v2)."""

    def __init__(self, project, compose_file):
        self.project = project
        self.compose_file = compose_file

    @staticmethod
    def docker(*args, check=True, timeout=60, input=None):
        proc = subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=timeout, input=input)
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def containers(self, service=None, all_=True):
        args = ["ps", "-q", "--no-trunc", "--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        if all_:
            args.insert(1, "-a")
        return [x for x in self.docker(*args).stdout.split() if x]

    def container(self, service):
        ids = self.containers(service)
        assert len(ids) == 1, f"expected one {service} container in project {self.project}, found {len(ids)}"
        return ids[0]

    def inspect(self, service):
        return json.loads(self.docker("inspect", self.container(service)).stdout)[0]

    def services(self):
        out = {}
        for cid in self.containers():
            info = json.loads(self.docker("inspect", cid).stdout)[0]
            out[info["Config"]["Labels"]["com.docker.compose.service"]] = info
        return out

    def logs(self, service, since=None):
        args = ["logs"]
        if since:
            args += ["--since", since]
        proc = self.docker(*args, self.container(service))
        return proc.stdout + proc.stderr

    def exec_python(self, service, code, timeout=30):
        return self.docker("exec", "-i", self.container(service), "python3", "-", check=False,
                           timeout=timeout, input=code)

    def restart(self, service, timeout_s=10):
        self.docker("restart", "-t", str(timeout_s), self.container(service), timeout=120)

    def wait_healthy(self, service, deadline_s=60.0):
        start = time.monotonic()
        state = None
        while time.monotonic() - start < deadline_s:
            state = self.inspect(service)["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return time.monotonic() - start
            time.sleep(0.25)
        raise AssertionError(f"{service} not healthy within {deadline_s}s: {state}")

    def published_port(self, service, container_port):
        ports = self.inspect(service)["NetworkSettings"]["Ports"].get(f"{container_port}/tcp") or []
        assert ports, f"{service}:{container_port} is not published"
        return ports[0]["HostIp"], int(ports[0]["HostPort"])


def docker_project():
    project = os.environ.get("XTASK_COMPOSE_PROJECT", "").strip()
    compose_file = os.environ.get("XTASK_COMPOSE_FILE", "").strip()
    if not project or not compose_file:
        pytest.skip("docker target only: XTASK_COMPOSE_PROJECT and XTASK_COMPOSE_FILE are not set")
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not found on PATH: this test acts on the stack's containers with `docker`")
    return ComposeProject(project, compose_file)


async def expect_no_frames(ws, quiet=0.5):
    frames = await recv_quiet(ws, quiet)
    assert frames == [], f"expected no frames, got {frames}"


async def closed_or_open(ws):
    """True when the socket is still open (answers a ping)."""
    try:
        pong = await ws.ping()
        await asyncio.wait_for(pong, 5)
        return True
    except (ConnectionClosed, asyncio.TimeoutError):
        return False
