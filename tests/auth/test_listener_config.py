"""What the listener's address demands, and DPoP ``htu`` never following the Host header.

* ``wardgate serve --host/--port`` goes through the same validation as the file: a
  non-loopback bind without ``[auth]`` never starts (exit code 2, the message names the
  problem), nor one with DPoP but no ``auth.public_url``; a loopback override starts.
* DPoP proofs are checked against ``auth.public_url`` (or, without one on loopback,
  the listener's own address), never against the Host header the client chose.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from joserfc.jwk import ECKey

import wardgate
from support.servers import run_gateway, spawn_http_server
from wardgate.config import parse_config
from wardgate.errors import ConfigError

from ._support import RESOURCE, LocalIssuer, dpop_proof, exchange, jwks_server, modern_call

SRC = str(Path(wardgate.__file__).resolve().parent.parent)
NO_AUTH = """
[upstreams.demo]
transport = "http"
url = "http://127.0.0.1:9/mcp"

[routes.demo]
upstreams = ["demo"]
"""
WITH_AUTH = (
    """
[auth]
resource = "https://mcp.example.com/mcp"
{extra}

[[auth.issuers]]
issuer = "https://idp.example"
jwks_uri = "https://idp.example/jwks"
"""
    + NO_AUTH
)


def wardgate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "wardgate.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"{uuid.uuid4().hex}.toml"
    path.write_text(text)
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- command line


def test_serve_host_override_without_auth_never_starts(tmp_path: Path) -> None:
    config = write(tmp_path, NO_AUTH)
    result = wardgate_cli("serve", "-c", config, "--host", "0.0.0.0")
    assert result.returncode == 2, result
    assert "--host 0.0.0.0" in result.stderr
    assert "[auth]" in result.stderr


def test_serve_host_override_with_dpop_needs_a_public_url(tmp_path: Path) -> None:
    config = write(tmp_path, WITH_AUTH.format(extra=""))
    result = wardgate_cli("serve", "-c", config, "--host", "0.0.0.0")
    assert result.returncode == 2, result
    assert "public_url" in result.stderr


def test_serve_port_override_is_range_checked(tmp_path: Path) -> None:
    result = wardgate_cli("serve", "-c", write(tmp_path, NO_AUTH), "--port", "70000")
    assert result.returncode == 2, result
    assert "server.port" in result.stderr


def test_a_loopback_override_still_serves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    config = write(tmp_path, NO_AUTH)
    argv = [sys.executable, "-m", "wardgate.cli", "serve", "-c", config]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    monkeypatch.setenv("PYTHONPATH", SRC)  # the child imports this checkout
    with spawn_http_server(argv, port) as proc:
        assert proc.poll() is None


@pytest.mark.parametrize(
    ("extra", "host", "ok"),
    [
        ("", "0.0.0.0", False),
        ('public_url = "https://mcp.example.com"', "0.0.0.0", True),
        ("dpop = false", "0.0.0.0", True),
        ("", "127.0.0.1", True),
        ("", "::1", True),
        ("dpop = false\nfailure_status = 401", "0.0.0.0", False),
        ('dpop = false\nfailure_status = 401\npublic_url = "https://m.example"', "0.0.0.0", True),
    ],
)
def test_dpop_on_a_public_listener_needs_a_public_url(extra: str, host: str, ok: bool) -> None:
    text = f'[server]\nhost = "{host}"\n' + WITH_AUTH.format(extra=extra)
    if ok:
        assert parse_config(text).auth is not None
    else:
        with pytest.raises(ConfigError) as info:
            parse_config(text)
        assert "public_url" in info.value.detail


# ------------------------------------------------------------------- DPoP htu


@asynccontextmanager
async def dpop_gateway(upstream: str, **auth: Any) -> AsyncIterator[tuple[str, LocalIssuer]]:
    issuer = LocalIssuer.create("https://idp-dpop.example", "dpop")
    async with jwks_server({"/jwks": issuer.jwks}) as jwks:
        config = {
            "server": {"allowed_hosts": ["evil.example", "127.0.0.1", "localhost"]},
            "auth": {
                "resource": RESOURCE,
                "issuers": [{"issuer": issuer.name, "jwks_uri": f"{jwks.base}/jwks"}],
                "allow_loopback_jwks": True,
                "failure_floor_ms": 5,
                **auth,
            },
            "upstreams": {"demo": {"transport": "http", "url": upstream}},
            "routes": {"demo": {"upstreams": ["demo"]}},
        }
        async with run_gateway(config) as (base, _):
            yield base, issuer


async def _dpop_call(base: str, issuer: LocalIssuer, htu: str, host: str | None = None) -> int:
    key = ECKey.generate_key("P-256")
    token = issuer.mint(cnf={"jkt": key.thumbprint()})
    body, headers = modern_call("add", {"a": 2, "b": 3})
    headers |= {
        "authorization": f"DPoP {token}",
        "dpop": dpop_proof(key, "POST", htu, access_token=token),
    }
    if host is not None:
        headers["host"] = host
    async with aiohttp.ClientSession() as s:
        answer = await exchange(s, "POST", f"{base}/mcp/demo", body=body, headers=headers)
    return answer.status


async def test_htu_is_checked_against_the_public_url_not_the_host_header(
    demo_http_upstream: str,
) -> None:
    async with dpop_gateway(demo_http_upstream, public_url="https://mcp.example.com") as (
        base,
        issuer,
    ):
        assert await _dpop_call(base, issuer, "https://mcp.example.com/mcp/demo") == 200
        # The client names a host of its choosing and makes its proof match it.
        assert await _dpop_call(base, issuer, "http://evil.example/mcp/demo", "evil.example") == 421
        # The listener's own address is not the public URL either.
        assert await _dpop_call(base, issuer, f"{base}/mcp/demo") == 421


async def test_without_public_url_a_loopback_listener_uses_its_own_address(
    demo_http_upstream: str,
) -> None:
    async with dpop_gateway(demo_http_upstream) as (base, issuer):
        port = base.rsplit(":", 1)[1]
        assert await _dpop_call(base, issuer, f"{base}/mcp/demo") == 200
        assert await _dpop_call(base, issuer, f"http://localhost:{port}/mcp/demo") == 200
        forged = f"http://evil.example:{port}/mcp/demo"
        assert await _dpop_call(base, issuer, forged, f"evil.example:{port}") == 421
        assert await _dpop_call(base, issuer, "http://127.0.0.1:1/mcp/demo") == 421
