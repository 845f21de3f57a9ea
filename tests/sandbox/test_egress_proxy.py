"""The egress proxy on its own: CONNECT and absolute-form, allowed and refused, each
refusal an event; numeric and IPv6 spellings judged by the address they carry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from support.servers import free_port
from wardgate.net.egress import EgressProxy, EgressRefused, EgressRules
from wardgate.telemetry.events import GatewayEvent


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[EgressProxy, int, list[bytes], list[GatewayEvent]]]:
    seen: list[bytes] = []

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.read(4096)
        seen.append(data)
        if data.startswith(b"GET"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        else:
            writer.write(b"echo:" + data)
        await writer.drain()
        writer.close()

    port = free_port()
    server = await asyncio.start_server(echo, "127.0.0.2", port)
    events: list[GatewayEvent] = []
    rules = EgressRules.parse(
        (f"127.0.0.2:{port}", f"127.0.0.1:{port}", f"[::ffff:127.0.0.1]:{port}", "2130706433:80"),
        ("127.0.0.2",),
    )
    proxy = EgressProxy("up", rules, tmp_path / "e" / "egress.sock", events.append)
    await proxy.start()
    yield proxy, port, seen, events
    await proxy.aclose()
    server.close()


async def _ask(proxy: EgressProxy, data: bytes) -> bytes:
    reader, writer = await asyncio.open_unix_connection(proxy.path)
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(10):
        answer = await reader.read()
    writer.close()
    return answer


async def test_connect_tunnel_to_a_listed_allowed_address(setup: tuple) -> None:  # type: ignore[type-arg]
    proxy, port, _, _ = setup
    answer = await _ask(proxy, f"CONNECT 127.0.0.2:{port} HTTP/1.1\r\n\r\nhello".encode())
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"echo:hello")


async def test_absolute_form_one_request_per_connection(setup: tuple) -> None:  # type: ignore[type-arg]
    proxy, port, seen, _ = setup
    answer = await _ask(
        proxy,
        f"GET http://127.0.0.2:{port}/x HTTP/1.1\r\nHost: a\r\nProxy-Authorization: s\r\n\r\n"
        f"GET http://127.0.0.1:{port}/smuggled HTTP/1.1\r\n\r\n".encode(),
    )
    assert answer.endswith(b"ok")
    assert seen[0].startswith(b"GET /x HTTP/1.1\r\n")
    assert b"Proxy-Authorization" not in seen[0] and b"Connection: close" in seen[0]
    assert b"smuggled" not in b"".join(seen)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:{port}", "address-refused"),  # listed, but loopback is not the exception
        ("[::ffff:127.0.0.1]:{port}", "address-refused"),
        ("2130706433:80", "address-refused"),  # decimal spelling of 127.0.0.1
        ("127.0.0.2:1", "not-on-allow-list"),
        ("example.com:443", "not-on-allow-list"),
    ],
)
async def test_refusals_are_403_and_events(setup: tuple, target: str, reason: str) -> None:  # type: ignore[type-arg]
    proxy, port, seen, events = setup
    target = target.format(port=port)
    answer = await _ask(proxy, f"CONNECT {target} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403")
    assert seen == []
    [event] = [e for e in events if isinstance(e, EgressRefused)]
    assert event.reason == reason and event.upstream == "up"
