"""SSRF battery: mcp-server-fetch sandboxed (bubblewrap and gVisor), egress allowed to one loopback
test site only (an operator exception for the test). Every trick of
/work/shared/ssrf-127.txt (rewritten to a loopback port that is not allowed), the
metadata address and names, a name resolving to a loopback address and a redirect from
the allowed site all fail: a canary server proves nothing reached it. The allowed site
still works, and each refusal is an ``egress.refused`` event."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from support.servers import free_port
from support.stdio_driver import StdioDriver
from wardgate.net.egress import EgressProxy, EgressRefused, EgressRules
from wardgate.telemetry.events import GatewayEvent
from wardgate.upstream._process import stop_process_group
from wardgate.upstream.bwrap import BubblewrapRunner
from wardgate.upstream.gvisor import GVisorRunner
from wardgate.upstream.profile import SandboxProfile
from wardgate.upstream.runners import gvisor_works

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed")

SSRF_LIST = Path("/work/shared/ssrf-127.txt")
FETCH = Path(sys.prefix) / "bin" / "mcp-server-fetch"
BASE = Path(os.path.realpath(sys.executable)).parent.parent
SITE = "127.0.0.2"  # the allowed test site; the canary listens on 127.0.0.1


@dataclass
class Canary:
    """Counts every connection; a proof that nothing reached it."""

    hits: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits.append(await reader.read(1024))
        writer.close()


def _site(canary_port: int) -> object:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if b" /redirect " in head:
            writer.write(
                f"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{canary_port}/x\r\n"
                "Content-Length: 0\r\nConnection: close\r\n\r\n".encode()
            )
        else:
            body = b"allowed-site-body"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        await writer.drain()
        writer.close()

    return handle


@dataclass
class Battery:
    fetch: StdioDriver
    canary: Canary
    site_port: int
    canary_port: int
    events: list[GatewayEvent]

    async def get(self, url: str) -> tuple[bool, str]:
        reply = await self.fetch.request(
            "tools/call", {"name": "fetch", "arguments": {"url": url, "raw": True}}
        )
        result = reply.get("result", {})
        text = "".join(c.get("text", "") for c in result.get("content", []))
        return bool(result.get("isError")) or "error" in reply, text


@pytest.fixture(
    params=[
        "bubblewrap",
        pytest.param("gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="no runsc")),
    ]
)
async def battery(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Battery]:
    canary = Canary()
    canary_port = free_port()
    canary_server = await asyncio.start_server(canary.handle, "127.0.0.1", canary_port)
    site_port = free_port()
    site = await asyncio.start_server(_site(canary_port), SITE, site_port)  # type: ignore[arg-type]
    events: list[GatewayEvent] = []
    rules = EgressRules.parse(
        (
            f"{SITE}:{site_port}",
            # Listed by an operator's mistake: still refused by address or by name.
            f"localhost:{canary_port}",
            "169.254.169.254:80",
            "metadata.google.internal:80",
        ),
        (SITE,),
    )
    proxy = EgressProxy("fetch", rules, tmp_path / "egress" / "egress.sock", events.append)
    runner = (BubblewrapRunner if request.param == "bubblewrap" else GVisorRunner)(
        SandboxProfile(
            upstream="fetch",
            read_only=(sys.prefix, str(BASE)),
            egress_socket=proxy.path,
            memory_bytes=1024 * 1024 * 1024,
        ),
        root=tmp_path / "state",
        egress=proxy,
    )
    # Its own private-address guard off: this battery tests the gateway's control.
    proc = await runner.spawn([str(FETCH), "--ignore-robots-txt", "--allow-private-ips"], {}, None)
    driver = StdioDriver(proc)
    await driver.initialize()
    yield Battery(driver, canary, site_port, canary_port, events)
    await stop_process_group(proc)
    await runner.aclose()
    site.close()
    canary_server.close()


def _rewritten(canary_port: int) -> list[str]:
    urls = []
    for line in SSRF_LIST.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            urls.append(line.replace(":80", f":{canary_port}"))
    return urls


async def test_allowed_site_works_and_every_ssrf_trick_fails(battery: Battery) -> None:
    failed, text = await battery.get(f"http://{SITE}:{battery.site_port}/page")
    assert not failed and "allowed-site-body" in text

    for url in _rewritten(battery.canary_port):
        failed, text = await battery.get(url)
        assert failed or "allowed-site-body" in text, url
    assert battery.canary.hits == []

    # Metadata address and name, a name resolving to loopback, a redirect.
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://[::ffff:169.254.169.254]/",
        f"http://localhost:{battery.canary_port}/",
        f"http://{SITE}:{battery.site_port}/redirect",
        f"https://127.0.0.1:{battery.canary_port}/",
    ):
        failed, _ = await battery.get(url)
        assert failed, url
    assert battery.canary.hits == []

    refused = [e for e in battery.events if isinstance(e, EgressRefused)]
    reasons = {(e.host, e.reason) for e in refused}
    assert ("169.254.169.254", "address-refused") in reasons
    assert ("metadata.google.internal", "metadata-name") in reasons
    assert ("localhost", "address-refused") in reasons
    assert ("127.0.0.1", "not-on-allow-list") in reasons  # the redirect's target
    assert all(e.upstream == "fetch" for e in refused)

    failed, text = await battery.get(f"http://{SITE}:{battery.site_port}/again")
    assert not failed and "allowed-site-body" in text
