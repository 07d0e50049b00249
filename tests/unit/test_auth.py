"""API keys and signed tokens (flight_server.auth): constant-time checks, stateless tokens any
node accepts, expiry, tampering, the REST check as an ASGI wrapper."""

from __future__ import annotations

import asyncio
import base64

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from clients import errors
from flight_server import auth

KEYS = ("production-key-1", "production-key-2")


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def keys() -> auth.ApiKeys:
    return auth.ApiKeys(KEYS, rounds=1000)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode().rstrip("=")


def test_keys_are_checked_and_named_without_revealing_them(keys) -> None:
    p1, p2 = keys.check_key(KEYS[0]), keys.check_key(KEYS[1])
    assert p1 and p2 and p1 != p2
    assert p1.startswith("key-") and KEYS[0] not in p1
    assert keys.check_key("production-key-3") is None
    assert keys.check_key("") is None
    assert keys.check_key(KEYS[0] + " ") is None


def test_tokens_validate_on_any_node_with_the_same_keys(keys) -> None:
    principal = keys.check_key(KEYS[1])
    token = keys.issue(principal)
    assert token.startswith("mdb1.") and KEYS[1] not in token
    assert keys.check_token(token) == principal
    other_node = auth.ApiKeys(reversed(KEYS), rounds=1000)  # order does not matter
    assert other_node.check_token(token) == principal
    assert other_node.check_bearer(token) == principal


def test_tokens_expire_and_die_with_their_key() -> None:
    clock = Clock()
    keys = auth.ApiKeys(KEYS, token_ttl=60, clock=clock, rounds=1000)
    token = keys.issue(keys.check_key(KEYS[0]))
    clock.now += 59
    assert keys.check_token(token)
    clock.now += 2
    assert keys.check_token(token) is None
    fresh = keys.issue(keys.check_key(KEYS[0]))
    rotated = auth.ApiKeys(KEYS[1:], clock=clock, rounds=1000)
    assert rotated.check_token(fresh) is None


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # signature
    lambda t: t.replace(".", ".f", 2).replace(".f", ".", 1),  # expiry field changed
    lambda t: "mdb2" + t[4:],
    lambda t: t + ".x",
    lambda t: "",
])
def test_tampered_tokens_are_refused(keys, mutate) -> None:
    token = keys.issue(keys.check_key(KEYS[0]))
    assert keys.check_token(mutate(token)) is None


def test_authenticate_headers(keys) -> None:
    p0 = keys.check_key(KEYS[0])
    assert auth.authenticate(keys, basic("anyone", KEYS[0])) == (p0, True)
    assert auth.authenticate(keys, f"Bearer {KEYS[0]}") == (p0, False)
    assert auth.authenticate(keys, f"bearer {keys.issue(p0)}") == (p0, False)
    with pytest.raises(errors.Unauthenticated) as missing:
        auth.authenticate(keys, None)
    bad = []
    for header in (basic("u", "wrong"), "Bearer wrong", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode(),
                   "Digest abc", "Bearer"):
        with pytest.raises(errors.Unauthenticated) as exc:
            auth.authenticate(keys, header)
        bad.append(exc.value.message)
    assert set(bad) == {auth.INVALID}  # one message, nothing that helps guessing
    assert "key" in missing.value.message.lower()


def _app() -> Starlette:
    async def ok(request):
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/api/v1/health", ok), Route("/api/v1/query", ok, methods=["GET", "POST"])])


def test_rest_check(keys) -> None:
    failures = []
    app = auth.RestAuth(_app(), keys, on_failure=lambda: failures.append(1))
    token = keys.issue(keys.check_key(KEYS[0]))

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            assert (await client.get("/api/v1/health")).status_code == 200
            r = await client.get("/api/v1/query")
            assert r.status_code == 401 and r.json() == {"ok": False, "error": auth.MISSING,
                                                         "code": "unauthenticated", "status": 401}
            assert r.headers["www-authenticate"].startswith("Bearer")
            wrong = await client.post("/api/v1/query", headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401 and wrong.json()["error"] == auth.INVALID
            for header in (f"Bearer {KEYS[1]}", basic("x", KEYS[0]), f"Bearer {token}"):
                assert (await client.get("/api/v1/query", headers={"Authorization": header})).text == "ok"

    asyncio.run(run())
    assert len(failures) == 2
