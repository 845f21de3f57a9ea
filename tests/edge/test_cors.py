"""CORS: listed browser origins can call the MCP endpoints (preflight answered, the MCP
headers allowed and exposed); any other origin gets no CORS headers, and an origin the
Origin check refuses is still refused.

The browser tests run Debian's headless Chromium against the real gateway: a page served on
one loopback port calls the gateway on another with ``fetch()``, so every CORS rule is
enforced by a real browser, not by our reading of the spec.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from conftest import stdio_demo_upstream
from support.http import ACCEPT, MODERN, modern_body, modern_headers, post
from support.servers import free_port, run_gateway
from wardgate.config import parse_config
from wardgate.errors import ConfigError

PAGE_PORT = free_port()
LISTED = f"http://127.0.0.1:{PAGE_PORT}"
UNLISTED = "http://localhost:1"  # a loopback origin: the Origin check lets it through
REFUSED = "https://evil.example"  # the Origin check refuses it
MCP_HEADERS = {
    "authorization",
    "content-type",
    "dpop",
    "last-event-id",
    "mcp-method",
    "mcp-name",
    "mcp-protocol-version",
    "mcp-session-id",
}
INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "cors-test", "version": "0"},
    },
}


def _config(cors: list[str]) -> dict[str, Any]:
    return {
        "server": {"cors_origins": cors},
        "upstreams": {"demo": stdio_demo_upstream()},
        "routes": {"demo": {"upstreams": ["demo"], "tools": {"deny": ["delete_*"]}}},
    }


@pytest.fixture
async def gateway() -> AsyncIterator[str]:
    async with run_gateway(_config([LISTED])) as (url, _):
        yield url


async def _preflight(url: str, origin: str, asked: str) -> tuple[int, dict[str, str]]:
    headers = {
        "origin": origin,
        "access-control-request-method": "POST",
        "access-control-request-headers": asked,
    }
    async with aiohttp.ClientSession() as client, client.options(url, headers=headers) as resp:
        await resp.read()
        return resp.status, {k.lower(): v for k, v in resp.headers.items()}


def _cors_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k.startswith("access-control-")}


async def test_a_listed_origin_gets_its_preflight_answered(gateway: str) -> None:
    asked = "content-type, mcp-protocol-version, mcp-session-id, mcp-method, mcp-name, " + (
        "mcp-param-region, authorization, dpop, last-event-id"
    )
    status, headers = await _preflight(f"{gateway}/mcp/demo", LISTED, asked)
    assert status == 204
    assert headers["access-control-allow-origin"] == LISTED
    assert headers["access-control-allow-credentials"] == "true"
    assert {"GET", "POST", "DELETE"} <= {
        m.strip() for m in headers["access-control-allow-methods"].split(",")
    }
    allowed = {h.strip() for h in headers["access-control-allow-headers"].split(",")}
    assert MCP_HEADERS | {"mcp-param-region"} <= allowed
    assert "Origin" in headers["vary"]
    assert "*" not in "".join(_cors_headers(headers).values())


async def test_a_preflight_does_not_tell_which_routes_exist(gateway: str) -> None:
    _, known = await _preflight(f"{gateway}/mcp/demo", LISTED, "content-type")
    status, unknown = await _preflight(f"{gateway}/mcp/nope", LISTED, "content-type")
    assert status == 204 and _cors_headers(known) == _cors_headers(unknown)


async def test_a_listed_origin_can_read_the_session_id(gateway: str) -> None:
    headers = {"origin": LISTED, "content-type": "application/json", "accept": ACCEPT}
    status, got, body = await post(f"{gateway}/mcp/demo", INIT, headers)
    assert status == 200 and body["result"]["serverInfo"]
    assert got["access-control-allow-origin"] == LISTED
    exposed = {h.strip() for h in got["access-control-expose-headers"].split(",")}
    assert {"mcp-session-id", "www-authenticate"} <= exposed
    assert "mcp-session-id" in got and "Origin" in got["vary"]


async def test_an_unlisted_origin_gets_no_cors_headers(gateway: str) -> None:
    status, headers = await _preflight(f"{gateway}/mcp/demo", UNLISTED, "content-type")
    assert _cors_headers(headers) == {}
    assert status != 204  # not answered as a preflight: the browser will refuse the call
    call = modern_headers("tools/call", "echo") | {"origin": UNLISTED}
    body = modern_body("tools/call", {"name": "echo", "arguments": {"text": "hi"}})
    status, got, answer = await post(f"{gateway}/mcp/demo", body, call)
    assert status == 200 and answer["result"]["content"][0]["text"] == "hi"  # not a browser
    assert _cors_headers(got) == {}


async def test_an_origin_the_origin_check_refuses_is_still_refused(gateway: str) -> None:
    status, headers = await _preflight(f"{gateway}/mcp/demo", REFUSED, "content-type")
    assert status == 403 and _cors_headers(headers) == {}
    headers = {"origin": REFUSED, "content-type": "application/json", "accept": ACCEPT}
    status, got, _ = await post(f"{gateway}/mcp/demo", INIT, headers)
    assert status == 403 and _cors_headers(got) == {}


async def test_nothing_is_allowed_by_default() -> None:
    async with run_gateway(_config([])) as (url, _):
        status, headers = await _preflight(f"{url}/mcp/demo", LISTED, "content-type")
        assert _cors_headers(headers) == {} and status != 204


@pytest.mark.parametrize("origin", ["*", "null", "http://a.example/path", "ftp://a.example"])
def test_a_wildcard_or_a_non_origin_is_refused_in_the_config(origin: str) -> None:
    source = f"""
[server]
cors_origins = ["{origin}"]

[upstreams.web]
transport = "http"
url = "http://127.0.0.1:9/mcp"

[routes.main]
upstreams = ["web"]
"""
    with pytest.raises(ConfigError) as caught:
        parse_config(source, "g.toml")
    assert "g.toml:3: server.cors_origins" in caught.value.detail


# -- a real browser ------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PAGE = """<!doctype html><meta charset="utf-8"><title>cors</title><script>
const G = "__GATEWAY__/mcp/demo";
async function body(r) {
  const text = await r.text();
  if (!text.startsWith("event:") && !text.startsWith("data:") && !text.startsWith("id:"))
    return JSON.parse(text);
  const data = text.split("\\n").filter(l => l.startsWith("data:")).map(l => l.slice(5));
  return JSON.parse(data[data.length - 1]);
}
async function run() {
  const out = {};
  try {
    const h = {"content-type": "application/json", "accept": "__ACCEPT__",
               "mcp-protocol-version": "2025-11-25"};
    let r = await fetch(G, {method: "POST", headers: h, body: JSON.stringify(__INIT__)});
    out.initStatus = r.status;
    out.sessionId = r.headers.get("mcp-session-id");
    out.init = await body(r);
    h["mcp-session-id"] = out.sessionId;
    r = await fetch(G, {method: "POST", headers: h,
      body: JSON.stringify({jsonrpc: "2.0", method: "notifications/initialized"})});
    out.initializedStatus = r.status;
    r = await fetch(G, {method: "POST", headers: h, body: JSON.stringify({jsonrpc: "2.0",
      id: 2, method: "tools/call", params: {name: "echo", arguments: {text: "from the page"}}})});
    out.call = await body(r);
    r = await fetch(G, {method: "POST", headers: __MODERN_HEADERS__,
      body: JSON.stringify(__MODERN_BODY__)});
    out.modern = await body(r);
    r = await fetch(G, {method: "DELETE", headers: h});
    out.deleteStatus = r.status;
  } catch (e) {
    out.error = e.name;
  }
  await fetch("/result", {method: "POST", body: JSON.stringify(out)});
}
run();
</script>"""


@contextlib.contextmanager
def _chromium(url: str, profile: Path) -> Iterator[subprocess.Popen[bytes]]:
    assert CHROMIUM is not None
    argv = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # the machine runs tests as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        url,
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


async def _browser_run(gateway: str, page_port: int, profile: Path) -> dict[str, Any]:
    """Serve the page on ``page_port`` (its origin), open it in Chromium, return what it
    reports."""
    result: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    modern = modern_headers("tools/call", "echo")
    html = (
        PAGE.replace("__GATEWAY__", gateway)
        .replace("__ACCEPT__", ACCEPT)
        .replace("__INIT__", orjson.dumps(INIT).decode())
        .replace("__MODERN_HEADERS__", orjson.dumps(modern).decode())
        .replace(
            "__MODERN_BODY__",
            orjson.dumps(
                modern_body("tools/call", {"name": "echo", "arguments": {"text": MODERN}}, 3)
            ).decode(),
        )
    )

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    async def report(request: web.Request) -> web.Response:
        if not result.done():
            result.set_result(orjson.loads(await request.read()))
        return web.Response(status=204)

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_post("/result", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", page_port).start()
    try:
        with _chromium(f"http://127.0.0.1:{page_port}/", profile):
            return await asyncio.wait_for(result, 60)
    finally:
        await runner.cleanup()


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_a_real_browser_on_a_listed_origin_runs_a_session(
    gateway: str, tmp_path: Path
) -> None:
    out = await _browser_run(gateway, PAGE_PORT, tmp_path)
    assert "error" not in out, out
    assert out["initStatus"] == 200 and out["sessionId"]  # exposed, so the page reads it
    assert out["initializedStatus"] == 202
    assert out["call"]["result"]["content"][0]["text"] == "from the page"
    assert out["modern"]["result"]["content"][0]["text"] == MODERN  # mcp-method / mcp-name
    assert out["deleteStatus"] in (200, 204)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian chromium is not installed")
async def test_a_real_browser_on_an_unlisted_origin_is_blocked(
    gateway: str, tmp_path: Path
) -> None:
    out = await _browser_run(gateway, free_port(), tmp_path)
    # fetch() rejects with a TypeError: the browser kept the answer from the page.
    assert out == {"error": "TypeError"}
