"""Signed bundles from a registry, configured in ``[policy]``: hot reload through the
running gateway; a bundle signed by another key never replaces the one in force."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from mcp import Client, MCPError

from support.servers import run_gateway
from tests.policy.test_bundle import KEY, OTHER_KEY
from tests.wiring.conftest import SESSION, shifty_upstream_toml, tool_permit
from wardgate.config import parse_config
from wardgate.policy.bundle import build_bundle
from wardgate.policy.registry import registry_document


class Registry:
    """A policy registry on loopback that counts the pulls it answered."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.pulls = 0
        self.pulled = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/authz", self._get)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/authz"

    async def _get(self, request: web.Request) -> web.Response:
        self.pulls += 1
        self.pulled.set()
        return web.json_response(self.document)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def _bundle(tmp_path: Path, revision: str, tools: list[str], key: Any) -> dict[str, str]:
    folder = tmp_path / revision
    folder.mkdir()
    (folder / "policies.cedar").write_text(SESSION + tool_permit("tools", tools))
    return registry_document(build_bundle(folder, revision, key))


async def _until(predicate: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def _next_pull(registry: Registry) -> None:
    """Wait until the registry answered one more pull."""
    registry.pulled.clear()
    await asyncio.wait_for(registry.pulled.wait(), 15)


async def test_a_new_bundle_is_served_without_restart_and_a_forged_one_refused(
    tmp_path: Path,
) -> None:
    pub = tmp_path / "signer.pub.pem"
    pub.write_bytes(
        KEY.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    registry = Registry()
    await registry.start()
    registry.document = _bundle(tmp_path, "r1", ["get_weather"], KEY)
    config = parse_config(
        shifty_upstream_toml()
        + '[routes.weather]\nupstreams = ["shifty"]\n'
        + f'[policy]\nregistry_url = "{registry.url}"\npublic_key_file = "{pub}"\n'
        + "pull_interval_seconds = 1\nregistry_allow_loopback = true\n"
    )
    try:
        async with (
            run_gateway(config) as (base, gateway),
            Client(f"{base}/mcp/weather") as client,
        ):
            runtime = gateway.guards.policy
            assert runtime is not None and runtime.holder.revision == "r1"
            assert [t.name for t in (await client.list_tools()).tools] == ["get_weather"]

            # A bundle signed by another key: pulled, refused, r1 keeps serving.
            registry.document = _bundle(tmp_path, "forged", ["get_weather", "flip"], OTHER_KEY)
            # The puller is sequential: a second pull means the first was handled.
            await _next_pull(registry)
            await _next_pull(registry)
            assert runtime.holder.revision == "r1"
            with pytest.raises(MCPError):
                await client.call_tool("flip", {})

            # A good r2 allows flip too: in force without a restart, same session.
            registry.document = _bundle(tmp_path, "r2", ["get_weather", "flip"], KEY)
            await _until(lambda: runtime.holder.revision == "r2")
            assert {t.name for t in (await client.list_tools()).tools} == {"get_weather", "flip"}
            assert (await client.call_tool("flip", {})).content[0].text == "flipped"  # type: ignore[union-attr]
    finally:
        await registry.stop()
