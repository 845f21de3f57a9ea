"""The guarded listener over TLS: the app still sees the ASGI TLS extension, and
TLS sockets that trickle their head are cut at the deadline like plain ones."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import trustme
from tls.helpers import SERVER_NAME, Pki, client_context, echo_tls_app, https_get

from support.servers import serve_app
from wardgate.config.model import GatewayConfig
from wardgate.edge.connections import ListenerLimits
from wardgate.edge.listener import GuardedHttpToolsProtocol, guarded_protocol
from wardgate.edge.serve import uvicorn_options
from wardgate.tls import uvicorn_ssl_kwargs

from ._gateway import Attacker, http_exchange, mcp_request, open_attackers, wardgate_serve

SLACK = 1.5


def _pki(tmp_path: Path) -> Pki:
    ca, client_ca, rogue_ca = trustme.CA(), trustme.CA(), trustme.CA()
    pki = Pki(
        dir=tmp_path,
        ca=ca,
        server=ca.issue_cert(SERVER_NAME),
        client_ca=client_ca,
        client=client_ca.issue_cert("alice@example.test"),
        rogue_ca=rogue_ca,
        rogue_client=rogue_ca.issue_cert("mallory@example.test"),
    )
    ca.cert_pem.write_to_path(str(pki.ca_file))
    pki.install_server_cert(pki.server)
    return pki


async def test_tls_heads_are_bounded_and_the_tls_extension_survives(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    limits = ListenerLimits(header_timeout=2.0, max_connections=10)
    options = {**uvicorn_ssl_kwargs(pki.settings()), "http": guarded_protocol(limits)}
    async with serve_app(echo_tls_app, **options) as url:
        port = int(url.rsplit(":", 1)[1])
        ctx = client_context(pki)
        attackers = []
        for _ in range(30):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname=SERVER_NAME, local_addr=("127.0.0.2", 0)
            )
            writer.write(b"GET / HTTP/1.1\r\nhost: " + SERVER_NAME.encode() + b"\r\n")
            attackers.append(Attacker(reader, writer, time.monotonic()))
        watchers = [asyncio.ensure_future(a.watch()) for a in attackers]
        response = await asyncio.to_thread(https_get, port, ctx)
        assert response.status == 200 and response.body["tls"]["tls_version"] == 0x0304
        await asyncio.wait(watchers, timeout=2.0 + SLACK + 1)
        closed = [a.closed_after for a in attackers]
        assert None not in closed and max(c for c in closed if c is not None) < 2.0 + SLACK
        for attacker in attackers:
            attacker.close()


def test_serve_runs_tls_through_the_guarded_protocol(tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    config = GatewayConfig.model_validate(
        {
            "server": {
                "tls": {
                    "cert_file": str(pki.cert_file),
                    "key_file": str(pki.key_file),
                    "server_names": [SERVER_NAME],
                },
                "max_connections": 5,
            },
            "upstreams": {"up": {"transport": "http", "url": "http://127.0.0.1:9/mcp"}},
            "routes": {"main": {"upstreams": ["up"]}},
        }
    )
    options = uvicorn_options(config)
    assert issubclass(options["http"], GuardedHttpToolsProtocol)
    assert options["http"].limits.max_connections == 5
    assert "ssl_context_factory" in options and options["ws"] == "none"


async def test_wardgate_serve_cuts_stalled_tls_handshakes_and_slow_tls_heads(
    tmp_path: Path,
) -> None:
    pki = _pki(tmp_path)
    tls = {"cert_file": str(pki.cert_file), "key_file": str(pki.key_file)}
    server = {"tls": {**tls, "server_names": [SERVER_NAME]}, "header_timeout_seconds": 2.0}
    client = (client_context(pki), SERVER_NAME)
    with wardgate_serve(tmp_path, server, tls=client) as gw:
        # Never sends a ClientHello: not a connection yet, cut by the handshake deadline.
        silent = await open_attackers(gw.port, 40, ["127.0.0.2", "127.0.0.3"])
        watchers = [asyncio.ensure_future(a.watch()) for a in silent]
        status, _, body = await http_exchange(gw.port, mcp_request("procs"), tls=client)
        assert status == 200 and b'"tools"' in body
        await asyncio.wait(watchers, timeout=2.0 + SLACK + 1)
        closed = [a.closed_after for a in silent]
        assert None not in closed and max(c for c in closed if c is not None) < 2.0 + SLACK
        status, _, _ = await http_exchange(gw.port, mcp_request("procs"), tls=client)
        assert status == 200
        for attacker in silent:
            attacker.close()
