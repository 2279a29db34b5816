"""Key checks: constant-time over all keys, bearer parsing, the ASGI middleware."""

from __future__ import annotations

import httpx
from pydantic import SecretStr
from starlette.types import Receive, Scope, Send

from tara.gateway.auth import KeyAuth, KeyChecker, bearer_token, check_admin


def test_checker_accepts_any_configured_key_only() -> None:
    checker = KeyChecker([SecretStr("k1"), "k2"])
    assert checker.check(b"k1")
    assert checker.check(b"k2")
    assert not checker.check(b"k3")
    assert not checker.check(b"")
    assert not checker.check(None)
    assert not KeyChecker([]).check(b"k1")


def test_bearer_token_parsing() -> None:
    assert bearer_token([(b"authorization", b"Bearer abc ")]) == b"abc"
    assert bearer_token([(b"authorization", b"bearer abc")]) == b"abc"
    assert bearer_token([(b"authorization", b"Basic abc")]) is None
    assert bearer_token([(b"x-other", b"Bearer abc")]) is None


def test_check_admin() -> None:
    admin = KeyChecker(["adm"])
    good = {"headers": [(b"authorization", b"Bearer adm")]}
    bad = {"headers": [(b"authorization", b"Bearer client")]}
    assert check_admin(good, admin) is None
    error = check_admin(bad, admin)
    assert error is not None
    assert error.status == 401


async def test_middleware_guards_prefixes_only() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"in"})

    rejected: list[int] = []
    guarded = KeyAuth(
        app, [("/v1/", KeyChecker(["c"])), ("/admin/", KeyChecker(["a"]))], rejected.append
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=guarded), base_url="http://t"
    ) as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/x", headers={"Authorization": "Bearer c"})).text == "in"
        r = await client.get("/v1/x", headers={"Authorization": "Bearer a"})
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/admin/x", headers={"Authorization": "Bearer a"})).text == "in"
        assert (await client.get("/admin/x")).status_code == 401
    assert rejected == [401, 401]
