"""Persistence (threads, messages) and the per-run event buffer.

Two implementations of each, with the same behaviour:
  MemoryStore / MemoryEventBuffer      STORE=memory, in-process
  PostgresStore / RedisEventBuffer     STORE=postgres (default)

The Postgres and Redis clients are created lazily and every call is retried
once on a connection error, so the backend recovers by itself after either
server restarts.
"""

import asyncio
import datetime as dt
import json
import logging
import os
import time
import uuid

log = logging.getLogger("backend.store")

EVENT_TTL_S = 3600


def _now_iso():
    return dt.datetime.now(dt.timezone.utc).isoformat()


def valid_uuid(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
        return True
    except ValueError:
        return False


class StoreUnavailable(RuntimeError):
    """Raised when the backing service cannot be reached."""


# --------------------------------------------------------------------------- memory


class MemoryStore:
    kind = "memory"

    def __init__(self):
        self.threads = {}   # thread_id -> {"user_id", "created_at"}
        self.messages = {}  # thread_id -> [message]
        self._next_id = 1

    async def start(self):
        pass

    async def close(self):
        pass

    async def ping(self):
        return True

    async def create_thread(self, user_id):
        thread_id = str(uuid.uuid4())
        self.threads[thread_id] = {"user_id": user_id, "created_at": _now_iso()}
        self.messages[thread_id] = []
        return thread_id

    async def thread_owner(self, thread_id):
        if not valid_uuid(thread_id):
            return None
        t = self.threads.get(str(uuid.UUID(thread_id)))
        return t["user_id"] if t else None

    async def add_message(self, thread_id, role, content, run_id=None):
        msg = {
            "id": self._next_id,
            "thread_id": thread_id,
            "role": role,
            "content": content,
            "run_id": run_id,
            "created_at": _now_iso(),
        }
        self._next_id += 1
        self.messages[thread_id].append(msg)
        return msg

    async def list_messages(self, thread_id):
        return list(self.messages.get(str(uuid.UUID(thread_id)), []))

    async def list_threads(self, user_id):
        return [
            {"thread_id": tid, "created_at": t["created_at"]}
            for tid, t in self.threads.items()
            if t["user_id"] == user_id
        ]


class MemoryEventBuffer:
    kind = "memory"

    def __init__(self, ttl_s=EVENT_TTL_S):
        self.ttl_s = ttl_s
        self.runs = {}  # run_id -> {"owner", "thread_id", "events", "expires"}

    async def start(self):
        pass

    async def close(self):
        pass

    async def ping(self):
        return True

    def _gc(self):
        now = time.monotonic()
        for run_id in [r for r, v in self.runs.items() if v["expires"] < now]:
            del self.runs[run_id]

    async def create_run(self, run_id, owner, thread_id):
        self._gc()
        self.runs[run_id] = {
            "owner": owner,
            "thread_id": thread_id,
            "events": [],
            "expires": time.monotonic() + self.ttl_s,
        }

    async def run_info(self, run_id):
        self._gc()
        r = self.runs.get(run_id)
        return {"owner": r["owner"], "thread_id": r["thread_id"]} if r else None

    async def append(self, run_id, event):
        r = self.runs.get(run_id)
        if r is not None:
            r["events"].append(json.loads(json.dumps(event)))
            r["expires"] = time.monotonic() + self.ttl_s

    async def events(self, run_id):
        r = self.runs.get(run_id)
        return [dict(e) for e in r["events"]] if r else []


# --------------------------------------------------------------------------- postgres

SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id          uuid PRIMARY KEY,
    user_id     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS threads_user_idx ON threads (user_id);
CREATE TABLE IF NOT EXISTS messages (
    id          bigserial PRIMARY KEY,
    thread_id   uuid NOT NULL REFERENCES threads (id) ON DELETE CASCADE,
    role        text NOT NULL,
    content     text NOT NULL,
    run_id      uuid,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS messages_thread_idx ON messages (thread_id, id);
"""


class PostgresStore:
    kind = "postgres"

    def __init__(self, dsn=None, timeout_s=3.0):
        self.dsn = dsn  # None: asyncpg reads PGHOST, PGUSER, ... itself
        self.timeout_s = timeout_s
        # Connecting fails fast (timeout_s) so that an outage shows at once; waiting for a busy
        # pool's free connection may take longer under a burst of hundreds of messages.
        self.pool_size = int(os.environ.get("PG_POOL_SIZE", "20"))
        self.acquire_timeout_s = float(os.environ.get("PG_ACQUIRE_TIMEOUT_S", "10"))
        self._pool = None
        self._schema_ready = False
        self._lock = asyncio.Lock()

    async def start(self):
        try:
            await self._ensure()
        except StoreUnavailable as exc:
            log.warning("postgres not reachable at startup (%s); will retry lazily", exc)

    async def close(self):
        if self._pool is not None:
            try:
                # Bounded: a connection busy on a postgres that is going away must not hold up
                # the backend's exit.
                await asyncio.wait_for(self._pool.close(), 1)
            except Exception:  # noqa: BLE001 - shutting down anyway
                self._pool.terminate()

    async def _ensure(self):
        import asyncpg

        async with self._lock:
            try:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        dsn=self.dsn,
                        min_size=1,
                        max_size=self.pool_size,
                        timeout=self.timeout_s,
                        command_timeout=self.timeout_s,
                        max_inactive_connection_lifetime=60,
                    )
                if not self._schema_ready:
                    async with self._pool.acquire(timeout=self.timeout_s) as con:
                        await con.execute("SELECT pg_advisory_lock(4242)")
                        try:
                            await con.execute(SCHEMA)
                        finally:
                            await con.execute("SELECT pg_advisory_unlock(4242)")
                    self._schema_ready = True
                    log.info("postgres schema ready")
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                raise StoreUnavailable(f"postgres: {type(exc).__name__}: {exc}") from exc
        return self._pool

    async def _run(self, fn):
        """Run fn(connection); retry once on connection failure (server restarted)."""
        import asyncpg

        last = None
        for attempt in range(3):
            pool = await self._ensure()
            try:
                async with pool.acquire(timeout=self.acquire_timeout_s) as con:
                    return await fn(con)
            except (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
                    asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
                    asyncpg.AdminShutdownError) as exc:
                last = exc
                log.warning("postgres call failed (attempt %d): %s: %s", attempt + 1, type(exc).__name__, exc)
                if attempt == 0:
                    # the pool drops broken connections on release; retry at once
                    continue
                await asyncio.sleep(0.2)
        raise StoreUnavailable(f"postgres: {type(last).__name__}: {last}")

    async def ping(self):
        return await self._run(lambda con: con.fetchval("SELECT 1")) == 1

    async def create_thread(self, user_id):
        thread_id = uuid.uuid4()
        await self._run(lambda con: con.execute(
            "INSERT INTO threads (id, user_id) VALUES ($1, $2)", thread_id, user_id))
        return str(thread_id)

    async def thread_owner(self, thread_id):
        if not valid_uuid(thread_id):
            return None
        return await self._run(lambda con: con.fetchval(
            "SELECT user_id FROM threads WHERE id = $1", uuid.UUID(thread_id)))

    @staticmethod
    def _msg(row):
        return {
            "id": row["id"],
            "thread_id": str(row["thread_id"]),
            "role": row["role"],
            "content": row["content"],
            "run_id": str(row["run_id"]) if row["run_id"] else None,
            "created_at": row["created_at"].isoformat(),
        }

    async def add_message(self, thread_id, role, content, run_id=None):
        row = await self._run(lambda con: con.fetchrow(
            "INSERT INTO messages (thread_id, role, content, run_id) VALUES ($1, $2, $3, $4) "
            "RETURNING id, thread_id, role, content, run_id, created_at",
            uuid.UUID(thread_id), role, content, uuid.UUID(run_id) if run_id else None))
        return self._msg(row)

    async def list_messages(self, thread_id):
        rows = await self._run(lambda con: con.fetch(
            "SELECT id, thread_id, role, content, run_id, created_at FROM messages "
            "WHERE thread_id = $1 ORDER BY id", uuid.UUID(thread_id)))
        return [self._msg(r) for r in rows]

    async def list_threads(self, user_id):
        rows = await self._run(lambda con: con.fetch(
            "SELECT id, created_at FROM threads WHERE user_id = $1 ORDER BY created_at", user_id))
        return [{"thread_id": str(r["id"]), "created_at": r["created_at"].isoformat()} for r in rows]


# --------------------------------------------------------------------------- redis


class RedisEventBuffer:
    """Events of a run in a Redis list `run:{id}:events`, owner in a hash
    `run:{id}`; both expire EVENT_TTL_S after the last write."""

    kind = "redis"

    def __init__(self, url, ttl_s=EVENT_TTL_S, timeout_s=2.0):
        self.url = url
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._client = None

    def _redis(self):
        if self._client is None:
            import redis.asyncio as aioredis

            self._client = aioredis.from_url(
                self.url,
                socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s,
                health_check_interval=5,
                decode_responses=True,
            )
        return self._client

    async def start(self):
        try:
            await self.ping()
        except StoreUnavailable as exc:
            log.warning("redis not reachable at startup (%s); will retry lazily", exc)

    async def close(self):
        if self._client is not None:
            try:
                await self._client.close()
                await self._client.connection_pool.disconnect()
            except Exception:  # noqa: BLE001
                pass

    async def _run(self, fn):
        import redis.exceptions as rexc

        last = None
        for attempt in range(3):
            try:
                return await asyncio.wait_for(fn(self._redis()), self.timeout_s * 2)
            except (rexc.ConnectionError, rexc.TimeoutError, OSError, asyncio.TimeoutError) as exc:
                last = exc
                log.warning("redis call failed (attempt %d): %s: %s", attempt + 1, type(exc).__name__, exc)
                if attempt > 0:
                    await asyncio.sleep(0.2)
        raise StoreUnavailable(f"redis: {type(last).__name__}: {last}")

    async def ping(self):
        return bool(await self._run(lambda r: r.ping()))

    async def create_run(self, run_id, owner, thread_id):
        async def fn(r):
            async with r.pipeline(transaction=True) as p:
                p.hset(f"run:{run_id}", mapping={"owner": owner, "thread_id": thread_id})
                p.expire(f"run:{run_id}", self.ttl_s)
                return await p.execute()

        await self._run(fn)

    async def run_info(self, run_id):
        if not valid_uuid(run_id):
            return None
        data = await self._run(lambda r: r.hgetall(f"run:{run_id}"))
        return {"owner": data["owner"], "thread_id": data["thread_id"]} if data else None

    async def append(self, run_id, event):
        payload = json.dumps(event)

        async def fn(r):
            async with r.pipeline(transaction=True) as p:
                p.rpush(f"run:{run_id}:events", payload)
                p.expire(f"run:{run_id}:events", self.ttl_s)
                p.expire(f"run:{run_id}", self.ttl_s)
                return await p.execute()

        await self._run(fn)

    async def events(self, run_id):
        raw = await self._run(lambda r: r.lrange(f"run:{run_id}:events", 0, -1))
        return [json.loads(x) for x in raw]
