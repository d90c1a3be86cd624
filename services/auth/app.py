"""Auth service: mints HS256 JWTs for the chat backend.

POST /token  {"user_id": "...", "expires_in": seconds (optional, -3600..86400)}
             -> {"token": "...", "expires_in": n, "token_type": "Bearer"}
GET  /health -> {"status": "ok"}

Environment: JWT_SECRET (required), JWT_ISSUER (default "chat-auth"),
PORT (default 8001), HOST (default 127.0.0.1; the image sets 0.0.0.0).
Tokens and secrets are never logged.
"""

import json
import logging
import os
import sys
import time

import jwt
from aiohttp import web

DEFAULT_EXPIRES_IN = 3600
MIN_EXPIRES_IN = -3600  # negative values let tests mint already-expired tokens
MAX_EXPIRES_IN = 86400
MAX_USER_ID_LEN = 128

log = logging.getLogger("auth")


def _bad_request(reason: str) -> web.Response:
    return web.json_response({"error": "bad_request", "reason": reason}, status=400)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "service": "auth"})


async def token(request: web.Request) -> web.Response:
    try:
        body = await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return _bad_request("body must be JSON")
    if not isinstance(body, dict):
        return _bad_request("body must be a JSON object")
    user_id = body.get("user_id")
    if not isinstance(user_id, str) or not user_id.strip():
        return _bad_request("user_id must be a non-empty string")
    if len(user_id) > MAX_USER_ID_LEN:
        return _bad_request(f"user_id longer than {MAX_USER_ID_LEN} characters")
    expires_in = body.get("expires_in", DEFAULT_EXPIRES_IN)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int):
        return _bad_request("expires_in must be an integer number of seconds")
    if not MIN_EXPIRES_IN <= expires_in <= MAX_EXPIRES_IN:
        return _bad_request(f"expires_in must be between {MIN_EXPIRES_IN} and {MAX_EXPIRES_IN}")

    cfg = request.app["cfg"]
    now = int(time.time())
    claims = {"sub": user_id, "iat": now, "exp": now + expires_in, "iss": cfg["issuer"]}
    encoded = jwt.encode(claims, cfg["secret"], algorithm="HS256")
    if isinstance(encoded, bytes):  # PyJWT < 2
        encoded = encoded.decode()
    return web.json_response({"token": encoded, "expires_in": expires_in, "token_type": "Bearer"})


@web.middleware
async def access_log(request: web.Request, handler):
    start = time.monotonic()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        # Path only: never the query string, body or headers (they may carry tokens).
        log.info("%s %s %d %.1fms", request.method, request.path, status,
                 (time.monotonic() - start) * 1000)


def make_app(secret: str, issuer: str) -> web.Application:
    app = web.Application(middlewares=[access_log], client_max_size=64 * 1024)
    app["cfg"] = {"secret": secret, "issuer": issuer}
    app.router.add_get("/health", health)
    app.router.add_post("/token", token)
    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    secret = os.environ.get("JWT_SECRET", "")
    if not secret:
        print("auth: JWT_SECRET is not set; refusing to start", file=sys.stderr)
        sys.exit(2)
    issuer = os.environ.get("JWT_ISSUER", "chat-auth")
    port = int(os.environ.get("PORT", "8001"))
    host = os.environ.get("HOST", "127.0.0.1")
    log.info("auth listening on %s:%d issuer=%s", host, port, issuer)
    # SIGTERM (and SIGINT) end it gracefully; requests still running get 1 s, not aiohttp's 60.
    web.run_app(make_app(secret, issuer), host=host, port=port, access_log=None,
                print=None, handle_signals=True, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
