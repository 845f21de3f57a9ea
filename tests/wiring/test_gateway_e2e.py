"""``[policy]`` and ``[content]`` from a config file, through the real gateway, with the
official Python SDK client and a real stdio upstream of our own (``shifty``)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from mcp import Client, MCPError

from support.servers import run_gateway
from tests.content.secrets import SAMPLES
from tests.wiring.conftest import (
    policy_dir,
    shifty_upstream_toml,
    tool_permit,
    wardgate_cli,
)
from wardgate.config import load_config

AWS = SAMPLES["aws_access_key_id"][0]


def _code(exc: MCPError) -> str | None:
    data = exc.error.data
    return data.get("code") if isinstance(data, dict) else None


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wardgate.toml"
    path.write_text(text)
    return path


async def test_policy_filters_denies_and_secrets_are_redacted(tmp_path: Path) -> None:
    authz = policy_dir(tmp_path, tool_permit("weather-read", ["get_weather"]))
    config = _write(
        tmp_path,
        shifty_upstream_toml()
        + '[routes.weather]\nupstreams = ["shifty"]\n'
        + f'[policy]\nengine = "cedar"\ndir = "{authz}"\n',
    )
    async with (
        run_gateway(load_config(config)) as (base, _),
        Client(f"{base}/mcp/weather") as client,
    ):
        # The list shows only what the policy lets the caller use.
        assert [t.name for t in (await client.list_tools()).tools] == ["get_weather"]
        # A tool the policy does not allow is answered as one that does not exist.
        with pytest.raises(MCPError) as denied:
            await client.call_tool("flip", {})
        assert _code(denied.value) == "wardgate.unknown_target"
        with pytest.raises(MCPError) as absent:
            await client.call_tool("no_such_tool", {})
        assert (absent.value.error.code, absent.value.error.message) == (
            denied.value.error.code,
            denied.value.error.message,
        )
        # The allowed call goes through; the secret the upstream echoes is redacted by
        # default (no [content] section written).
        result = await client.call_tool("get_weather", {"city": f"Paris {AWS}"})
        text = result.content[0].text  # type: ignore[union-attr]
        assert text.startswith("Sunny in Paris ") and AWS not in text
        assert "[REDACTED:aws_access_key_id]" in text


async def test_a_policy_section_with_nothing_allowing_denies_everything(tmp_path: Path) -> None:
    authz = tmp_path / "authz"
    authz.mkdir()
    # Only a permit for another route: nothing on this one is allowed.
    (authz / "p.cedar").write_text(
        '@id("other")\npermit (principal, action == Wardgate::Action::"tools/call", resource)\n'
        'when { resource.route == "elsewhere" && resource.name == "x" };\n'
    )
    config = _write(
        tmp_path,
        shifty_upstream_toml()
        + '[routes.weather]\nupstreams = ["shifty"]\n'
        + f'[policy]\ndir = "{authz}"\n',
    )
    async with run_gateway(load_config(config)) as (base, _):
        # Even the handshake is refused: no policy allows it on this route.
        with pytest.raises(BaseException) as refused:
            async with Client(f"{base}/mcp/weather") as client:
                await client.list_tools()
        errors = _leaves(refused.value)
        assert errors and all(_code(e) == "wardgate.denied" for e in errors)


def _leaves(exc: BaseException) -> list[MCPError]:
    """The MCP errors inside an exception (group)."""
    if isinstance(exc, MCPError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        return [e for inner in exc.exceptions for e in _leaves(inner)]
    return _leaves(exc.__context__) if exc.__context__ is not None else []


async def test_federated_route_policy_sees_member_and_unprefixed_name(tmp_path: Path) -> None:
    # Two members serve the same tool names; the policy allows get_weather of "north"
    # only, by its unprefixed name and its upstream.
    authz = policy_dir(tmp_path, tool_permit("north-weather", ["get_weather"], "north"))
    config = _write(
        tmp_path,
        shifty_upstream_toml("north")
        + shifty_upstream_toml("south")
        + '[routes.weather]\nupstreams = ["north", "south"]\n'
        + f'[policy]\ndir = "{authz}"\n',
    )
    async with (
        run_gateway(load_config(config)) as (base, _),
        Client(f"{base}/mcp/weather") as client,
    ):
        assert [t.name for t in (await client.list_tools()).tools] == ["north__get_weather"]
        result = await client.call_tool("north__get_weather", {"city": "Oslo"})
        assert result.content[0].text == "Sunny in Oslo"  # type: ignore[union-attr]
        with pytest.raises(MCPError) as denied:
            await client.call_tool("south__get_weather", {"city": "Oslo"})
        assert _code(denied.value) == "wardgate.unknown_target"


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    prefix = f"wardgate-test-wiring-{uuid.uuid4().hex[:8]}:"
    yield prefix
    client = aioredis.Redis()
    try:
        keys = [k async for k in client.scan_iter(f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_a_changed_description_is_withheld_until_approved_with_the_cli(
    tmp_path: Path, redis_prefix: str
) -> None:
    authz = policy_dir(tmp_path, tool_permit("weather", ["get_weather", "flip"]))
    config = _write(
        tmp_path,
        shifty_upstream_toml()
        + '[routes.weather]\nupstreams = ["shifty"]\n'
        + f'[policy]\ndir = "{authz}"\n'
        # The poisoning scan only flags here, so that the pin alone withholds the tool.
        + '[content]\nguards = ["redact", "controls", "integrity", "validate"]\n'
        + 'scan_action = "flag"\n'
        + f'[content.pins]\nstore = "redis"\nkey_prefix = "{redis_prefix}"\n',
    )
    async with (
        run_gateway(load_config(config)) as (base, _),
        Client(f"{base}/mcp/weather") as client,
    ):
        assert [t.name for t in (await client.list_tools()).tools] == ["get_weather", "flip"]
        assert (await client.call_tool("flip", {})).content[0].text == "flipped"  # type: ignore[union-attr]
        # The rug pull: the new description is withheld and calls to it refused.
        assert [t.name for t in (await client.list_tools()).tools] == ["flip"]
        with pytest.raises(MCPError) as held:
            await client.call_tool("get_weather", {"city": "Paris"})
        assert _code(held.value) == "wardgate.tool_held"

        # The operator reviews and approves from the command line (the same Redis).
        listed = wardgate_cli("pins", "list", "--config", str(config))
        assert listed.returncode == 0, listed.stderr
        assert "get_weather" in listed.stdout and "changed, held" in listed.stdout
        diff = wardgate_cli(
            "pins", "diff", "--config", str(config), "--upstream", "shifty", "tool", "get_weather"
        )
        assert diff.returncode == 0 and "IMPORTANT" in diff.stdout
        approved = wardgate_cli(
            "pins", "approve", "--config", str(config), "--upstream", "shifty", "tool",
            "get_weather",
        )  # fmt: skip
        assert approved.returncode == 0, approved.stderr
        # (shifty re-added the tool, so it now lists second)
        assert {t.name for t in (await client.list_tools()).tools} == {"get_weather", "flip"}
        missing = wardgate_cli(
            "pins", "approve", "--config", str(config), "--upstream", "shifty", "tool", "nope"
        )
        assert missing.returncode == 2 and "Traceback" not in missing.stderr
