"""Chat backend: JWT-authenticated WebSocket that runs a deterministic agent.

Endpoints
  GET /health                   liveness, always 200
  GET /ready                    200 when Postgres and Redis answer, else 503 + reasons
  GET /ws                       WebSocket (JWT in "Authorization: Bearer" or ?token=)
  GET /threads                  the caller's threads
  GET /threads/{id}/messages    persisted history of the caller's own thread

Client -> server frames (JSON text)
  {"type": "user_message", "content": str, "thread_id"?: str,
   "request_id"?: str, "step_delay_ms"?: int}
  {"type": "resume", "run_id": str, "after_seq": int}
  {"type": "ping"}

Server -> client: agent_started, agent_thinking, tool_executing,
tool_completed, agent_completed (seq 1..5 per run), error, pong.

Environment: PORT, HOST, STORE (postgres|memory), DATABASE_URL or PG*,
REDIS_URL, JWT_SECRET (required), JWT_ISSUER, AGENT_STEP_DELAY_MS,
EVENT_TTL_S, LOG_LEVEL.
"""

import asyncio
import datetime as dt
import json
import logging
import os
import sys
import time
import uuid

import jwt
from aiohttp import WSMsgType, web

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import calculator  # noqa: E402
from stores import (  # noqa: E402
    EVENT_TTL_S,
    MemoryEventBuffer,
    MemoryStore,
    PostgresStore,
    RedisEventBuffer,
    StoreUnavailable,
    valid_uuid,
)

log = logging.getLogger("backend")

MAX_MESSAGE_BYTES = 64 * 1024          # larger frames get an error event
HARD_FRAME_LIMIT = 4 * 1024 * 1024     # larger frames close the socket (1009)
MAX_STEP_DELAY_MS = 5000
MAX_CONTENT_CHARS = 16 * 1024
MAX_QUEUE = 10000
SHUTDOWN_STEP_S = 1.0                  # each step of a graceful shutdown; see on_shutdown
EVENT_TYPES = ["agent_started", "agent_thinking", "tool_executing", "tool_completed", "agent_completed"]


def now_iso():
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------- auth


class AuthError(Exception):
    def __init__(self, reason, detail):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def extract_token(request):
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthError("malformed_authorization", "Authorization header must be 'Bearer <token>'")
    token = request.query.get("token", "")
    if token:
        return token
    raise AuthError("missing_token", "no bearer token in Authorization header or ?token=")


def verify_token(cfg, token):
    try:
        claims = jwt.decode(
            token,
            cfg["jwt_secret"],
            algorithms=["HS256"],
            issuer=cfg["jwt_issuer"],
            options={"require": ["exp", "iat", "sub", "iss"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token_expired", "token has expired") from None
    except jwt.InvalidSignatureError:
        raise AuthError("invalid_signature", "token signature does not verify") from None
    except jwt.InvalidIssuerError:
        raise AuthError("invalid_issuer", "token issuer is not accepted") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError("missing_claim", str(exc)) from None
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid_token", f"token is invalid: {type(exc).__name__}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise AuthError("invalid_token", "token has no subject")
    return sub


def authenticate(request):
    """Return the user id, or raise an HTTP 401 with a JSON reason."""
    try:
        return verify_token(request.app["cfg"], extract_token(request))
    except AuthError as exc:
        raise web.HTTPUnauthorized(
            text=json.dumps({"error": "unauthorized", "reason": exc.reason, "detail": exc.detail}),
            content_type="application/json",
            headers={"WWW-Authenticate": 'Bearer realm="chat"'},
        ) from None


# --------------------------------------------------------------------------- connections


class RunView:
    """What one connection has been sent of one run."""

    __slots__ = ("lock", "last_sent")

    def __init__(self, last_sent=0):
        self.lock = asyncio.Lock()
        self.last_sent = last_sent


class Connection:
    def __init__(self, ws, user_id):
        self.id = uuid.uuid4().hex[:12]
        self.ws = ws
        self.user_id = user_id
        self.runs = {}  # run_id -> RunView
        self.queue = asyncio.Queue()
        self.closed = False

    def send(self, obj):
        """Queue a frame; one writer task per connection keeps frames in order."""
        if self.closed:
            return
        if self.queue.qsize() > MAX_QUEUE:
            log.warning("conn %s: send queue overflow, closing", self.id)
            self.closed = True
            asyncio.ensure_future(self.ws.close(code=1011, message=b"send queue overflow"))
            return
        self.queue.put_nowait(json.dumps(obj))

    async def writer(self):
        try:
            while True:
                frame = await self.queue.get()
                if frame is None:
                    return
                await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            return
        except Exception:  # noqa: BLE001
            log.exception("conn %s: writer failed", self.id)


class Hub:
    """In-process registry of the open connections, by user."""

    def __init__(self):
        self.by_user = {}

    def add(self, conn):
        self.by_user.setdefault(conn.user_id, set()).add(conn)

    def remove(self, conn):
        conns = self.by_user.get(conn.user_id)
        if conns is not None:
            conns.discard(conn)
            if not conns:
                del self.by_user[conn.user_id]

    def connections(self, user_id):
        return list(self.by_user.get(user_id, ()))

    def all(self):
        return [c for conns in self.by_user.values() for c in conns]

    def attach_run(self, user_id, run_id):
        """Every connection the owner has open when a run starts follows it."""
        for conn in self.connections(user_id):
            conn.runs.setdefault(run_id, RunView(0))

    async def deliver(self, user_id, event):
        """Send a live event to the owner's connections that follow the run.
        The per-connection per-run lock and last_sent make a concurrent
        resume replay and live delivery produce each seq once, in order."""
        run_id, seq = event["run_id"], event["seq"]
        for conn in self.connections(user_id):
            view = conn.runs.get(run_id)
            if view is None:
                continue
            async with view.lock:
                if seq > view.last_sent:
                    conn.send(event)
                    view.last_sent = seq


# --------------------------------------------------------------------------- agent


def plan_tool(content):
    expr = calculator.find_expression(content)
    if expr is not None:
        return "calculator", {"expression": expr}
    return "echo", {"text": content}


def run_tool(tool, arguments):
    """Returns (result, answer_text, error)."""
    if tool == "calculator":
        try:
            value = calculator.evaluate(arguments["expression"])
        except calculator.CalcError as exc:
            return None, f"I could not compute {arguments['expression']}: {exc}.", str(exc)
        return calculator.to_json_number(value), calculator.format_number(value), None
    return arguments["text"], arguments["text"], None


async def run_agent(app, run_id, user_id, thread_id, content, delay_s, request_id):
    hub, buf, store = app["hub"], app["events"], app["store"]
    seq = 0

    async def emit(etype, **fields):
        nonlocal seq
        seq += 1
        event = {"type": etype, "run_id": run_id, "thread_id": thread_id, "seq": seq,
                 "timestamp": now_iso(), **fields}
        try:
            await buf.append(run_id, event)
        except StoreUnavailable as exc:
            log.error("run %s: event %d not buffered: %s", run_id, seq, exc)
        await hub.deliver(user_id, event)

    started = time.monotonic()
    try:
        extra = {"request_id": request_id} if request_id is not None else {}
        await emit("agent_started", agent="calculator-agent", **extra)
        await asyncio.sleep(delay_s)
        tool, arguments = plan_tool(content)
        await emit("agent_thinking", thought=f"Choosing the {tool} tool for this message.")
        await asyncio.sleep(delay_s)
        await emit("tool_executing", tool=tool, arguments=arguments)
        await asyncio.sleep(delay_s)
        result, answer, error = run_tool(tool, arguments)
        fields = {"tool": tool, "result": result}
        if error:
            fields["error"] = error
        await emit("tool_completed", **fields)
        await asyncio.sleep(delay_s)
        message_id = None
        try:
            msg = await store.add_message(thread_id, "assistant", answer, run_id)
            message_id = msg["id"]
        except StoreUnavailable as exc:
            log.error("run %s: answer not persisted: %s", run_id, exc)
        await emit("agent_completed", answer=answer, message_id=message_id)
        log.info("run completed run_id=%s user=%s thread=%s tool=%s duration_ms=%d",
                 run_id, user_id, thread_id, tool, (time.monotonic() - started) * 1000)
    except asyncio.CancelledError:
        log.info("run cancelled run_id=%s", run_id)
        raise
    except Exception:  # noqa: BLE001
        log.exception("run failed run_id=%s", run_id)
    finally:
        app["runs"].pop(run_id, None)


# --------------------------------------------------------------------------- websocket


def error_event(code, message, **extra):
    return {"type": "error", "code": code, "message": message, "timestamp": now_iso(), **extra}


async def handle_user_message(app, conn, msg):
    request_id = msg.get("request_id")
    extra = {"request_id": request_id} if request_id is not None else {}
    content = msg.get("content")
    if not isinstance(content, str) or not content.strip():
        conn.send(error_event("missing_content", "user_message needs a non-empty string 'content'", **extra))
        return
    if len(content) > MAX_CONTENT_CHARS:
        conn.send(error_event("content_too_long", f"content longer than {MAX_CONTENT_CHARS} characters", **extra))
        return
    delay_ms = msg.get("step_delay_ms", app["cfg"]["step_delay_ms"])
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not 0 <= delay_ms <= MAX_STEP_DELAY_MS:
        conn.send(error_event("invalid_step_delay", f"step_delay_ms must be a number 0..{MAX_STEP_DELAY_MS}", **extra))
        return

    store = app["store"]
    thread_id = msg.get("thread_id")
    try:
        if thread_id is None:
            thread_id = await store.create_thread(conn.user_id)
        else:
            owner = await store.thread_owner(thread_id)
            if owner != conn.user_id:
                # same answer for "not yours" and "does not exist": no existence leak
                conn.send(error_event("thread_not_found", "no such thread for this user",
                                      thread_id=thread_id if isinstance(thread_id, str) else None, **extra))
                return
            thread_id = str(uuid.UUID(thread_id))
        run_id = str(uuid.uuid4())
        await store.add_message(thread_id, "user", content, run_id)
        await app["events"].create_run(run_id, conn.user_id, thread_id)
    except StoreUnavailable as exc:
        log.error("user_message from %s failed: %s", conn.user_id, exc)
        conn.send(error_event("unavailable", "storage temporarily unavailable, retry", **extra))
        return

    app["hub"].attach_run(conn.user_id, run_id)
    log.info("run started run_id=%s user=%s thread=%s conn=%s", run_id, conn.user_id, thread_id, conn.id)
    task = asyncio.ensure_future(
        run_agent(app, run_id, conn.user_id, thread_id, content, delay_ms / 1000.0, request_id))
    app["runs"][run_id] = task


async def handle_resume(app, conn, msg):
    run_id = msg.get("run_id")
    after_seq = msg.get("after_seq", 0)
    if not isinstance(run_id, str) or not valid_uuid(run_id):
        conn.send(error_event("invalid_resume", "resume needs a string 'run_id'"))
        return
    if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
        conn.send(error_event("invalid_resume", "after_seq must be a non-negative integer", run_id=run_id))
        return
    buf = app["events"]
    try:
        info = await buf.run_info(run_id)
    except StoreUnavailable as exc:
        conn.send(error_event("unavailable", f"event buffer unavailable: {exc}", run_id=run_id))
        return
    if info is None or info["owner"] != conn.user_id:
        conn.send(error_event("run_not_found", "no such run for this user", run_id=run_id))
        return

    view = conn.runs.get(run_id)
    if view is None:
        # follow the run from now on; live events wait on the lock below
        view = conn.runs[run_id] = RunView(after_seq)
    async with view.lock:
        try:
            events = await buf.events(run_id)
        except StoreUnavailable as exc:
            conn.send(error_event("unavailable", f"event buffer unavailable: {exc}", run_id=run_id))
            return
        # A connection never receives the same seq of a run twice: replay
        # starts after what was asked for and after what it already got live.
        floor = max(after_seq, view.last_sent)
        seen = set()
        replay = []
        for ev in sorted(events, key=lambda e: e["seq"]):
            if ev["seq"] > floor and ev["seq"] not in seen:
                seen.add(ev["seq"])
                replay.append(ev)
        for ev in replay:
            conn.send(ev)
        view.last_sent = max([floor] + [ev["seq"] for ev in replay])
    log.info("resume run_id=%s user=%s after_seq=%d replayed=%d conn=%s",
             run_id, conn.user_id, after_seq, len(replay), conn.id)


async def websocket(request):
    user_id = authenticate(request)  # 401 before the upgrade
    app = request.app
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=HARD_FRAME_LIMIT)
    await ws.prepare(request)
    conn = Connection(ws, user_id)
    app["hub"].add(conn)
    writer = asyncio.ensure_future(conn.writer())
    log.info("ws connected conn=%s user=%s", conn.id, user_id)
    try:
        async for frame in ws:
            if frame.type == WSMsgType.TEXT:
                await handle_frame(app, conn, frame.data)
            elif frame.type == WSMsgType.BINARY:
                conn.send(error_event("unsupported_frame", "binary frames are not supported"))
            elif frame.type == WSMsgType.ERROR:
                log.info("ws conn=%s error: %s", conn.id, ws.exception())
                break
    finally:
        app["hub"].remove(conn)
        conn.closed = True
        conn.queue.put_nowait(None)
        try:
            await asyncio.wait_for(writer, 2)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            writer.cancel()
        log.info("ws closed conn=%s user=%s", conn.id, user_id)
    return ws


async def handle_frame(app, conn, data):
    if len(data.encode("utf-8", "surrogatepass")) > MAX_MESSAGE_BYTES:
        conn.send(error_event("message_too_large", f"messages are limited to {MAX_MESSAGE_BYTES} bytes"))
        return
    try:
        msg = json.loads(data)
    except ValueError:
        conn.send(error_event("invalid_json", "message is not valid JSON"))
        return
    if not isinstance(msg, dict):
        conn.send(error_event("invalid_message", "message must be a JSON object"))
        return
    mtype = msg.get("type")
    try:
        if mtype == "user_message":
            await handle_user_message(app, conn, msg)
        elif mtype == "resume":
            await handle_resume(app, conn, msg)
        elif mtype == "ping":
            conn.send({"type": "pong", "timestamp": now_iso()})
        else:
            conn.send(error_event("unknown_type", f"unknown message type {str(mtype)[:64]!r}"))
    except Exception:  # noqa: BLE001 - one bad message must not kill the socket
        log.exception("conn %s: handling %r failed", conn.id, str(mtype)[:64])
        conn.send(error_event("internal_error", "the server failed to handle this message"))


# --------------------------------------------------------------------------- http


async def health(request):
    return web.json_response({"status": "ok", "service": "backend", "store": request.app["cfg"]["store"]})


async def ready(request):
    app = request.app
    reasons = {}

    async def check(name, component):
        try:
            await asyncio.wait_for(component.ping(), 5)
        except (StoreUnavailable, asyncio.TimeoutError) as exc:
            reasons[name] = str(exc) or type(exc).__name__

    store, buf = app["store"], app["events"]
    await asyncio.gather(check(store.kind, store), check(buf.kind, buf))
    if reasons:
        return web.json_response({"status": "not_ready", "reasons": reasons}, status=503)
    return web.json_response({"status": "ready", "store": app["cfg"]["store"]})


async def thread_messages(request):
    user_id = authenticate(request)
    thread_id = request.match_info["thread_id"]
    store = request.app["store"]
    try:
        owner = await store.thread_owner(thread_id)
        if owner != user_id:
            return web.json_response({"error": "not_found", "reason": "no such thread for this user"}, status=404)
        messages = await store.list_messages(thread_id)
    except StoreUnavailable as exc:
        return web.json_response({"error": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"thread_id": str(uuid.UUID(thread_id)), "messages": messages})


async def threads(request):
    user_id = authenticate(request)
    try:
        items = await request.app["store"].list_threads(user_id)
    except StoreUnavailable as exc:
        return web.json_response({"error": "unavailable", "reason": str(exc)}, status=503)
    return web.json_response({"threads": items})


@web.middleware
async def access_log(request, handler):
    start = time.monotonic()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        if request.path not in ("/health", "/ready") or status >= 400:
            # path only: the query string may carry a token
            log.info("%s %s %d %.1fms", request.method, request.path, status, (time.monotonic() - start) * 1000)


# --------------------------------------------------------------------------- app


def load_config(env=os.environ):
    secret = env.get("JWT_SECRET", "")
    if not secret:
        raise SystemExit("backend: JWT_SECRET is not set; refusing to start")
    store = env.get("STORE", "postgres").strip().lower()
    if store not in ("postgres", "memory"):
        raise SystemExit(f"backend: STORE must be 'postgres' or 'memory', not {store!r}")
    return {
        "port": int(env.get("PORT", "8000")),
        "host": env.get("HOST", "127.0.0.1"),
        "store": store,
        "database_url": env.get("DATABASE_URL") or None,
        "redis_url": env.get("REDIS_URL", "redis://localhost:6379/0"),
        "jwt_secret": secret,
        "jwt_issuer": env.get("JWT_ISSUER", "chat-auth"),
        "step_delay_ms": float(env.get("AGENT_STEP_DELAY_MS", "20")),
        "event_ttl_s": int(env.get("EVENT_TTL_S", str(EVENT_TTL_S))),
    }


async def on_startup(app):
    await app["store"].start()
    await app["events"].start()


async def on_shutdown(app):
    # All at once and bounded: a client that does not answer the close must not hold up the
    # exit (`docker stop` gives the whole shutdown 10 s, the harness after a signal 2 s).
    closes = [conn.ws.close(code=1001, message=b"server shutdown") for conn in app["hub"].all()]
    if closes:
        try:
            await asyncio.wait_for(asyncio.gather(*closes, return_exceptions=True), SHUTDOWN_STEP_S)
        except asyncio.TimeoutError:
            log.warning("websocket clients did not answer the close within %ss", SHUTDOWN_STEP_S)
    for task in list(app["runs"].values()):
        task.cancel()


async def on_cleanup(app):
    await app["store"].close()
    await app["events"].close()


def make_app(cfg):
    app = web.Application(middlewares=[access_log])
    app["cfg"] = cfg
    app["hub"] = Hub()
    app["runs"] = {}
    if cfg["store"] == "memory":
        app["store"] = MemoryStore()
        app["events"] = MemoryEventBuffer(cfg["event_ttl_s"])
    else:
        app["store"] = PostgresStore(cfg["database_url"])
        app["events"] = RedisEventBuffer(cfg["redis_url"], cfg["event_ttl_s"])
    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/ws", websocket)
    app.router.add_get("/threads", threads)
    app.router.add_get("/threads/{thread_id}/messages", thread_messages)
    return app


def main():
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(), stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    cfg = load_config()
    log.info("backend listening on %s:%d store=%s issuer=%s step_delay_ms=%s",
             cfg["host"], cfg["port"], cfg["store"], cfg["jwt_issuer"], cfg["step_delay_ms"])
    # SIGTERM (and SIGINT) end it gracefully; requests still running get SHUTDOWN_STEP_S, not
    # aiohttp's 60 s, so that a stop finishes well within the engine's grace.
    web.run_app(make_app(cfg), host=cfg["host"], port=cfg["port"], access_log=None, print=None,
                handle_signals=True, shutdown_timeout=SHUTDOWN_STEP_S)


if __name__ == "__main__":
    main()
