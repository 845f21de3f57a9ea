"""The upstream HTTP/1.1 client against real sockets: keep-alive, framing, and every
bound it promises, each shown holding with a normal request succeeding beside it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trustme
import uvloop

from support.servers import serve_app
from wardgate.errors import UpstreamError, UpstreamTimeout
from wardgate.upstream.http_client import HttpClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


class RawServer:
    """A loopback server answering each request with ``answer(request)`` bytes."""

    def __init__(self, answer: Callable[[bytes], bytes | None]) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                request = await read_request(reader)
                self.requests.append(request)
                data = self.answer(request)
                if data is None:
                    await asyncio.Event().wait()  # hang
                writer.write(data or b"")
                await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def raw_server(
    answer: Callable[[bytes], bytes | None], ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[RawServer, str]]:
    server = RawServer(answer)
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=ssl_context)
    port = listener.sockets[0].getsockname()[1]
    scheme = "https" if ssl_context else "http"
    try:
        yield server, f"{scheme}://localhost:{port}/mcp"
    finally:
        listener.close()


def deadline(seconds: float = 5.0) -> float:
    return asyncio.get_running_loop().time() + seconds


async def get(client: HttpClient, limit: int = 1024) -> tuple[int, bytes]:
    resp = await client.request("POST", "/mcp", {"x": "1"}, b"{}", deadline=deadline())
    return resp.status, await resp.read(limit)


async def test_connections_are_kept_alive_and_reused() -> None:
    async with raw_server(lambda _: OK) as (server, url):
        client = HttpClient("t", url)
        for _ in range(10):
            assert await get(client) == (200, b"{}")
        await client.aclose()
    assert server.connections == 1 and len(server.requests) == 10
    assert server.requests[0].startswith(b"POST /mcp HTTP/1.1\r\nhost: localhost:")


async def test_chunked_bodies_and_streams() -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    async with raw_server(lambda _: chunked) as (server, url):
        client = HttpClient("t", url)
        assert await get(client) == (200, b"abcde")
        resp = await client.request("GET", "/mcp", {}, deadline=deadline())
        assert b"".join([c async for c in resp.chunks()]) == b"abcde"
        resp.release()
        assert await get(client) == (200, b"abcde")
        await client.aclose()
    assert server.connections == 1


async def test_a_stream_abandoned_midway_is_not_reused() -> None:
    endless = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n"
    answers = iter([endless, OK])
    async with raw_server(lambda _: next(answers)) as (server, url):
        client = HttpClient("t", url)
        resp = await client.request("GET", "/mcp", {}, deadline=deadline())
        async for chunk in resp.chunks():
            assert chunk == b"abc"
            break
        resp.release()
        assert await get(client) == (200, b"{}")  # on a fresh connection
        await client.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(
    "answer",
    [
        # status line and headers over 64 KiB
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 70_000 + b"\r\ncontent-length: 0\r\n\r\n",
        # a header that never ends
        b"HTTP/1.1 200 OK\r\nx-big: " + b"a" * 200_000,
        # too many headers
        b"HTTP/1.1 200 OK\r\n" + b"x: y\r\n" * 150 + b"content-length: 0\r\n\r\n",
        # not HTTP
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        # a declared body over the limit
        b"HTTP/1.1 200 OK\r\ncontent-length: 5000\r\n\r\n" + b"a" * 5000,
        # an undeclared (chunked) body over the limit
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"".join(b"400\r\n" + b"a" * 1024 + b"\r\n" for _ in range(5))
        + b"0\r\n\r\n",
        # switching protocols
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    ],
    ids=["head-size", "endless-header", "header-count", "not-http", "declared", "chunked", "101"],
)
async def test_limits_refuse_a_bad_response_and_the_next_call_succeeds(answer: bytes) -> None:
    answers = iter([answer, OK])
    async with raw_server(lambda _: next(answers)) as (_, url):
        client = HttpClient("t", url)
        with pytest.raises(UpstreamError) as failed:
            await get(client, limit=4096)
        assert type(failed.value) is UpstreamError
        assert await get(client) == (200, b"{}")
        await client.aclose()


async def test_redirects_are_not_followed() -> None:
    moved = (
        b"HTTP/1.1 307 Temporary Redirect\r\n"
        b"location: http://127.0.0.2/x\r\ncontent-length: 0\r\n\r\n"
    )
    async with raw_server(lambda _: moved) as (server, url):
        client = HttpClient("t", url)
        assert await get(client) == (307, b"")
        await client.aclose()
    assert len(server.requests) == 1


async def test_header_injection_is_refused_before_sending() -> None:
    async with raw_server(lambda _: OK) as (server, url):
        client = HttpClient("t", url)
        for bad in ("a\r\nx-evil: 1", "a\nb", "a\0b"):
            with pytest.raises(UpstreamError):
                await client.request("POST", "/mcp", {"mcp-name": bad}, b"{}", deadline=deadline())
        assert await get(client) == (200, b"{}")
        await client.aclose()
    assert len(server.requests) == 1


async def test_the_deadline_covers_the_whole_call() -> None:
    trickle_started = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        trickle_started.set()
        with contextlib.suppress(ConnectionError):
            while True:  # a byte of keep-alive every 10 ms, forever
                writer.write(b"1\r\n\n\r\n")
                await writer.drain()
                await asyncio.sleep(0.01)

    listener = await asyncio.start_server(trickle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = HttpClient("t", f"http://127.0.0.1:{port}/")
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await client.request("GET", "/", {}, deadline=started + 0.5)
    with pytest.raises(UpstreamTimeout):
        async for _ in resp.chunks():
            pass
    assert 0.45 <= loop.time() - started < 2
    resp.release()
    listener.close()
    await client.aclose()


async def test_the_connection_cap_queues_calls_within_their_deadline() -> None:
    release = asyncio.Event()

    def answer(request: bytes) -> bytes | None:
        return None if b"x-hold" in request and not release.is_set() else OK

    async with raw_server(answer) as (server, url):
        client = HttpClient("t", url, max_connections=2)
        held = [
            asyncio.create_task(
                client.request("POST", "/mcp", {"x-hold": "1"}, b"{}", deadline=deadline(1))
            )
            for _ in range(2)
        ]
        await asyncio.sleep(0.1)
        # A third call waits for a free connection; it gives up at its deadline.
        with pytest.raises(UpstreamTimeout):
            await client.request("POST", "/mcp", {}, b"{}", deadline=deadline(0.3))
        assert server.connections == 2
        for task in held:
            with pytest.raises(UpstreamTimeout):
                await task
        assert await get(client) == (200, b"{}")
        await client.aclose()


async def test_a_response_never_released_frees_its_slot_at_its_deadline() -> None:
    answers = iter([b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", OK])
    async with raw_server(lambda _: next(answers)) as (_, url):
        client = HttpClient("t", url, max_connections=1)
        dropped = await client.request("GET", "/mcp", {}, deadline=deadline(0.3))
        assert dropped.status == 200  # ...and never read nor released
        status, body = await asyncio.wait_for(get(client), 3)
        assert (status, body) == (200, b"{}")
        await client.aclose()


async def test_https_verifies_the_upstream_certificate(tmp_path: object) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    ca_file = f"{tmp_path}/ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    async with raw_server(lambda _: OK, server_ctx) as (server, url):
        trusted = HttpClient("t", url, ca_file=ca_file)
        assert await get(trusted) == (200, b"{}")
        untrusted = HttpClient("t", url)  # the system store does not know this CA
        with pytest.raises(UpstreamError):
            await get(untrusted)
        wrong_name = HttpClient("t", url.replace("localhost", "127.0.0.1"), ca_file=ca_file)
        with pytest.raises(UpstreamError):
            await get(wrong_name)
        await trusted.aclose()
        await untrusted.aclose()
        await wrong_name.aclose()
    assert len(server.requests) == 1


async def _instant(scope: dict[str, object], receive: object, send: object) -> None:
    send_ = send  # type: ignore[assignment]
    headers = [(b"content-type", b"application/json")]
    await send_({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
    await send_({"type": "http.response.body", "body": b'{"ok":true}'})  # type: ignore[operator]


def test_on_uvloop_against_uvicorn() -> None:
    # The gateway serves on uvloop; its transports are not asyncio.Transport objects.
    async def main() -> None:
        async with serve_app(_instant) as base:
            client = HttpClient("t", base + "/mcp")
            for _ in range(3):
                assert await get(client) == (200, b'{"ok":true}')
            await client.aclose()

    uvloop.run(main())
