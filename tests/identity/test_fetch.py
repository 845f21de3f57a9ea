"""The JWKS fetch refuses SSRF targets by the address it would connect to."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from aiohttp import web

from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher, address_allowed

from .conftest import Served

SSRF_LIST = Path("/work/shared/ssrf-127.txt")
STRICT = FetchPolicy(timeout_seconds=1.0)


async def test_loopback_http_is_fetched_only_when_allowed(http_server: Served) -> None:
    http_server.routes["/doc"] = lambda: {"ok": True}
    allowed = SafeFetcher(FetchPolicy(allow_loopback=True))
    assert await allowed.get_json(f"{http_server.base}/doc") == {"ok": True}
    await allowed.aclose()
    strict = SafeFetcher(STRICT)
    with pytest.raises(FetchRefused):
        await strict.get_json(f"{http_server.base}/doc")
    await strict.aclose()
    assert http_server.hits == ["/doc"]


async def test_a_name_resolving_to_loopback_is_refused_on_its_address(http_server: Served) -> None:
    port = http_server.base.rsplit(":", 1)[1]
    http_server.routes["/doc"] = lambda: {"ok": True}
    # allow_loopback permits http only to loopback *literals*; https to a name that
    # resolves to loopback is refused when loopback is not allowed.
    fetcher = SafeFetcher(STRICT)
    with pytest.raises(FetchRefused, match="refused addresses"):
        await fetcher.get_json(f"https://localhost:{port}/doc")
    await fetcher.aclose()
    assert http_server.hits == []


async def test_redirects_are_not_followed(http_server: Served) -> None:
    http_server.routes["/jump"] = lambda: web.HTTPFound("http://127.0.0.1:1/elsewhere")
    fetcher = SafeFetcher(FetchPolicy(allow_loopback=True))
    with pytest.raises(FetchRefused, match="302"):
        await fetcher.get_json(f"{http_server.base}/jump")
    await fetcher.aclose()


async def test_oversized_and_non_object_bodies_are_refused(http_server: Served) -> None:
    http_server.routes["/big"] = lambda: {"keys": ["x" * 5000]}
    http_server.routes["/list"] = lambda: [1, 2]
    http_server.routes["/text"] = lambda: web.Response(text="<html>")
    fetcher = SafeFetcher(FetchPolicy(allow_loopback=True, max_bytes=1024))
    for path in ("/big", "/list", "/text"):
        with pytest.raises(FetchRefused):
            await fetcher.get_json(f"{http_server.base}{path}")
    await fetcher.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://idp.example/jwks",
        "file:///etc/passwd",
        "http://idp.example/jwks",
        "https://user:pw@idp.example/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.1/jwks",
        "https://[::ffff:127.0.0.1]/jwks",
        "https://[64:ff9b::7f00:1]/jwks",
        "https://0.0.0.0/jwks",
        "https:///jwks",
    ],
)
def test_obvious_ssrf_targets_are_refused_before_any_io(url: str) -> None:
    with pytest.raises(FetchRefused):
        SafeFetcher(STRICT).check_url(url)


async def test_every_127_encoding_is_refused_when_loopback_is_not_allowed() -> None:
    if not SSRF_LIST.exists():
        pytest.skip("shared SSRF list not present")
    lines = [ln.strip() for ln in SSRF_LIST.read_text().splitlines()]
    targets = [ln for ln in lines if ln and not ln.startswith("#")]
    fetcher = SafeFetcher(FetchPolicy(timeout_seconds=1.0))
    for target in targets:
        # https, so that only the address can be the reason for refusal
        url = "https://" + target.split("://", 1)[1] if "://" in target else f"https://{target}/"
        with pytest.raises(FetchRefused):
            await fetcher.get_json(url)
    await fetcher.aclose()


@pytest.mark.parametrize(
    ("ip", "strict", "private"),
    [
        ("8.8.8.8", True, True),
        ("127.0.0.1", False, False),
        ("10.1.2.3", False, True),
        ("192.168.1.1", False, True),
        ("fd00::1", False, True),
        ("169.254.169.254", False, False),
        ("::ffff:10.0.0.1", False, True),
        ("224.0.0.1", False, False),
        ("::", False, False),
    ],
)
def test_address_policy(ip: str, strict: bool, private: bool) -> None:
    addr = ipaddress.ip_address(ip)
    assert address_allowed(addr, FetchPolicy()) is strict
    assert address_allowed(addr, FetchPolicy(allow_private=True)) is private
