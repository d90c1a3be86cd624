"""E2E: the backend refuses missing, expired, forged and wrong-issuer tokens
with HTTP 401 before the WebSocket upgrade, and the auth service mints sane tokens."""

import time

import pytest

import chatlib
from chatlib import make_jwt, tamper_subject, ws_handshake_status


def _claims(sub, **over):
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 600, "iss": "chat-auth"}
    claims.update(over)
    return claims


def test_auth_mints_hs256_token_with_claims(user_id):
    with chatlib.http_client() as c:
        r = c.post(f"{chatlib.auth_url()}/token", json={"user_id": user_id})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["expires_in"] == 3600
    claims = chatlib.jwt_claims(body["token"])
    assert claims["sub"] == user_id
    assert claims["iss"]
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60


@pytest.mark.parametrize("body", [{}, {"user_id": ""}, {"user_id": 7}, {"user_id": "a", "expires_in": 10**9},
                                  {"user_id": "a", "expires_in": "soon"}])
def test_auth_rejects_bad_token_requests(body):
    with chatlib.http_client() as c:
        r = c.post(f"{chatlib.auth_url()}/token", json=body)
    assert r.status_code == 400, (body, r.status_code, r.text)


def test_missing_token_is_401(run_async):
    status, body = run_async(ws_handshake_status())
    assert status == 401
    assert body["reason"] == "missing_token"


def test_expired_token_is_401(user_id, run_async):
    expired = chatlib.get_token(user_id, expires_in=-60)
    status, body = run_async(ws_handshake_status({"Authorization": f"Bearer {expired}"}))
    assert status == 401
    assert body["reason"] == "token_expired"


def test_forged_signature_is_401(user_id, run_async):
    forged = make_jwt(_claims(user_id), "not-the-secret")
    status, body = run_async(ws_handshake_status({"Authorization": f"Bearer {forged}"}))
    assert status == 401
    assert body["reason"] == "invalid_signature"


def test_tampered_subject_is_401(make_user, run_async):
    _, token = make_user()
    victim, _ = make_user()
    tampered = tamper_subject(token, victim)
    status, body = run_async(ws_handshake_status({"Authorization": f"Bearer {tampered}"}))
    assert status == 401
    assert body["reason"] == "invalid_signature"


def test_alg_none_is_401(user_id, run_async):
    token = make_jwt(_claims(user_id), "", alg="none")
    status, body = run_async(ws_handshake_status({"Authorization": f"Bearer {token}"}))
    assert status == 401


def test_garbage_token_is_401(run_async):
    for headers, query in (({"Authorization": "Bearer abc.def"}, None), ({"Authorization": "Basic dXNlcjpwdw=="}, None),
                           ({}, "garbage")):
        status, body = run_async(ws_handshake_status(headers, token_query=query))
        assert status == 401, (headers, query, status)
        assert body["error"] == "unauthorized"


def test_wrong_issuer_is_401(user_id, jwt_secret, run_async):
    token = make_jwt(_claims(user_id, iss="someone-else"), jwt_secret)
    status, body = run_async(ws_handshake_status({"Authorization": f"Bearer {token}"}))
    assert status == 401
    assert body["reason"] == "invalid_issuer"
    # the same claims with the right issuer are accepted: the secret is right
    good = make_jwt(_claims(user_id, iss=chatlib.jwt_claims(chatlib.get_token(user_id))["iss"]), jwt_secret)
    status, _ = run_async(ws_handshake_status({"Authorization": f"Bearer {good}"}))
    assert status == 101


def test_expired_token_in_query_is_401(user_id, run_async):
    expired = chatlib.get_token(user_id, expires_in=-3600)
    status, body = run_async(ws_handshake_status(token_query=expired))
    assert status == 401 and body["reason"] == "token_expired"


def test_valid_token_upgrades(token, run_async):
    status, _ = run_async(ws_handshake_status({"Authorization": f"Bearer {token}"}))
    assert status == 101
    status, _ = run_async(ws_handshake_status(token_query=token))
    assert status == 101


def test_history_endpoint_refuses_bad_tokens(user_id):
    expired = chatlib.get_token(user_id, expires_in=-60)
    forged = make_jwt(_claims(user_id), "not-the-secret")
    tid = "00000000-0000-0000-0000-000000000000"
    for bad, reason in ((expired, "token_expired"), (forged, "invalid_signature")):
        r = chatlib.get_history(bad, tid)
        assert r.status_code == 401, r.text
        assert r.json()["reason"] == reason
