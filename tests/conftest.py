"""Shared fixtures. Endpoints come only from the environment:
BACKEND_URL, BACKEND_WS_URL, AUTH_URL; on the docker target also
XTASK_COMPOSE_PROJECT and XTASK_COMPOSE_FILE.
"""

import asyncio
import os

import pytest

import chatlib


def pytest_report_header(config):
    keys = ["XTASK_TARGET", "XTASK_RUN_ID", "BACKEND_URL", "BACKEND_WS_URL", "AUTH_URL",
            "XTASK_COMPOSE_PROJECT", "XTASK_COMPOSE_FILE"]
    return "chat suites: " + ", ".join(f"{k}={os.environ.get(k, '<unset>')}" for k in keys)


def pytest_collection_modifyitems(config, items):
    target = os.environ.get("XTASK_TARGET", "").strip().lower()
    have_compose = bool(os.environ.get("XTASK_COMPOSE_PROJECT", "").strip()
                        and os.environ.get("XTASK_COMPOSE_FILE", "").strip())
    for item in items:
        if "docker" in item.keywords and not have_compose:
            item.add_marker(pytest.mark.skip(
                reason="needs the docker target: XTASK_COMPOSE_PROJECT and XTASK_COMPOSE_FILE are not set"))
        if "destructive" in item.keywords and target == "staging":
            item.add_marker(pytest.mark.skip(reason="destructive test: never run against shared staging"))


@pytest.fixture(scope="session")
def backend_url():
    return chatlib.backend_url()


@pytest.fixture(scope="session")
def backend_ws_url():
    return chatlib.backend_ws_url()


@pytest.fixture(scope="session")
def auth_url():
    return chatlib.auth_url()


@pytest.fixture
def user_id():
    """A fresh user for this test, so tests never see each other's data."""
    return chatlib.new_user_id()


@pytest.fixture
def token(user_id, auth_url):
    return chatlib.get_token(user_id)


@pytest.fixture
def make_user(auth_url):
    """Factory: make_user() -> (user_id, token)."""

    def make(tag="u"):
        uid = chatlib.new_user_id(tag)
        return uid, chatlib.get_token(uid)

    return make


@pytest.fixture
def run_async():
    """Run a coroutine to completion in a fresh event loop (tests stay sync,
    so no asyncio plugin is needed)."""

    def run(coro):
        return asyncio.run(coro)

    return run


@pytest.fixture(scope="session")
def compose():
    """The compose project of the docker target; skips elsewhere."""
    return chatlib.docker_project()


@pytest.fixture(scope="session")
def jwt_secret():
    """The shared JWT secret, for minting wrong-issuer tokens: JWT_SECRET (or
    XTASK_RUN_SECRET, the secret the harness gives local processes) from the
    environment, else (docker target) read from the backend container."""
    for name in ("JWT_SECRET", "XTASK_RUN_SECRET"):
        secret = os.environ.get(name, "").strip()
        if secret:
            return secret
    if os.environ.get("XTASK_COMPOSE_PROJECT") and os.environ.get("XTASK_COMPOSE_FILE"):
        project = chatlib.ComposeProject(os.environ["XTASK_COMPOSE_PROJECT"], os.environ["XTASK_COMPOSE_FILE"])
        for item in project.inspect("backend")["Config"]["Env"]:
            if item.startswith("JWT_SECRET="):
                return item.split("=", 1)[1]
    pytest.skip("neither JWT_SECRET nor XTASK_RUN_SECRET is set (and not on the docker target): cannot mint a correctly signed token")
