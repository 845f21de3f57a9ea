"""Key sets are refreshed off the request path; an unknown ``kid`` waits a bounded time.

* A rotated key published by the IdP is picked up by the background refresh before the
  TTL runs out, with no request waiting for it (the request that uses it finds it).
* An unknown ``kid`` at an IdP whose JWKS endpoint hangs is refused within the wait
  bound (not the fetch timeout), and the refetch is made once, not once per request.
* A failing refresh keeps the last good keys serving.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from joserfc.jwk import RSAKey

from wardgate.errors import AuthenticationFailed
from wardgate.identity import FetchPolicy, IssuerConfig, JwtVerifier

from .conftest import RESOURCE, FakeClock, LocalIssuer, Served

WAIT = 5.0  # bound for every wait in these tests


async def wait_for_hits(served: Served, path: str, count: int) -> None:
    async with asyncio.timeout(WAIT):
        while served.hits.count(path) < count:
            await asyncio.sleep(0.01)


@pytest.fixture
async def fresh(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> AsyncIterator[JwtVerifier]:
    http_server.routes["/a/jwks"] = issuer_a.jwks
    v = JwtVerifier(
        [
            IssuerConfig(
                issuer=issuer_a.name, audience=RESOURCE, jwks_uri=f"{http_server.base}/a/jwks"
            )
        ],
        fetch_policy=FetchPolicy(allow_loopback=True, timeout_seconds=2.0),
        clock=clock,
        jwks_ttl_seconds=0.4,
        jwks_min_refetch_seconds=60.0,
    )
    await v.start()
    yield v
    await v.aclose()


async def test_a_rotated_key_arrives_by_background_refresh(
    fresh: JwtVerifier, http_server: Served, issuer_a: LocalIssuer
) -> None:
    rotated = RSAKey.generate_key(2048, parameters={"kid": "rotated"})
    issuer_a.keys.append(rotated)
    before = http_server.hits.count("/a/jwks")
    # No request asks: the refresh runs on its own, before the 0.4 s TTL runs out.
    await wait_for_hits(http_server, "/a/jwks", before + 1)
    await asyncio.sleep(0)  # let the refresh task store what it fetched
    hits = http_server.hits.count("/a/jwks")
    assert (await fresh.verify(issuer_a.mint(rotated))).subject == "user-1"
    # The request found the key in place: it did not cause a fetch of its own.
    assert http_server.hits.count("/a/jwks") == hits


async def test_a_failing_refresh_keeps_the_last_good_keys(
    fresh: JwtVerifier, http_server: Served, issuer_a: LocalIssuer
) -> None:
    http_server.routes["/a/jwks"] = lambda: web.HTTPInternalServerError()
    before = http_server.hits.count("/a/jwks")
    await wait_for_hits(http_server, "/a/jwks", before + 1)
    assert (await fresh.verify(issuer_a.mint())).subject == "user-1"


async def test_an_unknown_kid_at_a_hanging_idp_waits_only_the_bound(
    http_server: Served, issuer_a: LocalIssuer, clock: FakeClock
) -> None:
    release = asyncio.Event()
    served_once: list[bool] = []

    async def hanging() -> Any:
        if served_once:
            await release.wait()
        served_once.append(True)
        return issuer_a.jwks()

    # http_server's handler calls routes synchronously; wrap the coroutine in a response.
    app = web.Application()

    async def handler(request: web.Request) -> web.StreamResponse:
        http_server.hits.append("/hang/jwks")
        return web.json_response(await hanging())

    app.router.add_get("/hang/jwks", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/hang/jwks"
    bound = 0.1
    v = JwtVerifier(
        [IssuerConfig(issuer=issuer_a.name, audience=RESOURCE, jwks_uri=url)],
        fetch_policy=FetchPolicy(allow_loopback=True, timeout_seconds=4.0),
        clock=clock,
        jwks_max_wait_seconds=bound,
    )
    await v.start()
    try:
        stranger = RSAKey.generate_key(2048, parameters={"kid": "stranger"})
        elapsed: list[float] = []
        for _ in range(5):
            started = time.perf_counter()
            with pytest.raises(AuthenticationFailed):
                await v.verify(issuer_a.mint(stranger))
            elapsed.append(time.perf_counter() - started)
        # Each waited about the bound, far from the 4 s fetch timeout (ratio, not ms).
        assert max(elapsed) < 10 * bound, elapsed
        # One refetch for all five requests (start + one on demand).
        assert http_server.hits.count("/hang/jwks") == 2
        # The known key still verifies at once while the refetch hangs.
        started = time.perf_counter()
        assert (await v.verify(issuer_a.mint())).subject == "user-1"
        assert time.perf_counter() - started < bound
    finally:
        release.set()
        await v.aclose()
        await runner.cleanup()
