"""Local keys, a token minter and loopback HTTP servers for the identity tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import ECKey, Key, OKPKey, RSAKey

from wardgate.identity import FetchPolicy, IssuerConfig, JwtVerifier

RESOURCE = "https://mcp.example.com/mcp"
NOW = 1_800_000_000.0


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class LocalIssuer:
    """An issuer whose keys live in the test; it signs what the test asks."""

    name: str
    keys: list[Key] = field(default_factory=list)

    @classmethod
    def create(cls, name: str) -> LocalIssuer:
        rsa = RSAKey.generate_key(2048, parameters={"kid": f"{name}-rsa", "use": "sig"})
        ec = ECKey.generate_key("P-256", parameters={"kid": f"{name}-ec"})
        ed = OKPKey.generate_key("Ed25519", parameters={"kid": f"{name}-ed"})
        return cls(name=name, keys=[rsa, ec, ed])

    @property
    def rsa(self) -> RSAKey:
        key = self.keys[0]
        assert isinstance(key, RSAKey)
        return key

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self.keys]}

    def claims(self, **overrides: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "iss": self.name,
            "sub": "user-1",
            "aud": RESOURCE,
            "iat": int(NOW) - 10,
            "exp": int(NOW) + 300,
            "client_id": "agent-1",
            "tenant": "tenant-a",
            "scope": "tools:read tools:call",
            "jti": uuid.uuid4().hex,
        }
        base.update(overrides)
        return {k: v for k, v in base.items() if v is not None}

    def mint(
        self,
        key: Key | None = None,
        alg: str = "RS256",
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        key = key or self.rsa
        h: dict[str, Any] = {"alg": alg, "typ": "at+jwt", "kid": key.kid}
        h.update(header or {})
        h = {k: v for k, v in h.items() if v is not None}
        return jwt.encode(h, self.claims(**claims), key, algorithms=[alg])


@dataclass
class Served:
    base: str
    hits: list[str]
    routes: dict[str, Callable[[], Any]]


@pytest.fixture
async def http_server() -> AsyncIterator[Served]:
    """A loopback HTTP server; tests add JSON routes to ``served.routes``."""
    hits: list[str] = []
    routes: dict[str, Callable[[], Any]] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        hits.append(request.path)
        make = routes.get(request.path)
        if make is None:
            return web.Response(status=404)
        value = make()
        if isinstance(value, web.HTTPException):
            raise value
        if isinstance(value, web.StreamResponse):
            return value
        return web.json_response(value)

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Served(base=f"http://127.0.0.1:{port}", hits=hits, routes=routes)
    await runner.cleanup()


@pytest.fixture
def issuer_a() -> LocalIssuer:
    return LocalIssuer.create("https://idp-a.example")


@pytest.fixture
def issuer_b() -> LocalIssuer:
    return LocalIssuer.create("https://idp-b.example")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


LOOPBACK = FetchPolicy(allow_loopback=True, timeout_seconds=2.0)


@pytest.fixture
async def verifier(
    http_server: Served, issuer_a: LocalIssuer, issuer_b: LocalIssuer, clock: FakeClock
) -> AsyncIterator[JwtVerifier]:
    """Issuer A: tenant from the ``tenant`` claim; issuer B: fixed tenant ``tenant-b``."""
    http_server.routes["/a/jwks"] = issuer_a.jwks
    http_server.routes["/b/jwks"] = issuer_b.jwks
    v = JwtVerifier(
        [
            IssuerConfig(
                issuer=issuer_a.name,
                audience=RESOURCE,
                jwks_uri=f"{http_server.base}/a/jwks",
                tenant_claim="tenant",
                allowed_tenants=frozenset({"tenant-a", "tenant-a2"}),
            ),
            IssuerConfig(
                issuer=issuer_b.name,
                audience=RESOURCE,
                jwks_uri=f"{http_server.base}/b/jwks",
                tenant="tenant-b",
            ),
        ],
        fetch_policy=LOOPBACK,
        clock=clock,
        max_clock_skew=30,
    )
    await v.start()
    yield v
    await v.aclose()
