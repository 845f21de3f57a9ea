"""The content guards in front of @modelcontextprotocol/server-everything (stdio): its
normal output passes unchanged, and its sampling and long-running tools stream through
the redactor."""

from __future__ import annotations

from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from upstreams.upstream_helpers import EVERYTHING, NODE, Recorder, bounded, full_client, needs_node

from support.servers import run_gateway
from tests.content.secrets import SAMPLES
from wardgate.content.guard_settings import ContentSettings
from wardgate.content.guards import content_guards

GITHUB = SAMPLES["github_token"][0]


def _config() -> dict[str, Any]:
    assert NODE is not None
    return {
        "upstreams": {
            "everything": {
                "transport": "stdio",
                "command": [NODE, str(EVERYTHING), "stdio"],
                "sandbox": "insecure-none",
            }
        },
        "routes": {"ev": {"upstreams": ["everything"]}},
    }


@needs_node
async def test_everything_lists_the_same_and_its_streams_are_redacted() -> None:
    assert NODE is not None
    rec = Recorder()
    guards = {"ev": content_guards(ContentSettings())}
    async with (
        run_gateway(_config(), extra_guards=guards) as (base, _),
        full_client(f"{base}/mcp/ev", rec) as client,
    ):
        through = (await client.list_tools()).model_dump()
        echo = await bounded(client.call_tool("echo", {"message": f"my token {GITHUB}"}))
        sampled = await bounded(
            client.call_tool(
                "trigger-sampling-request", {"prompt": f"use {GITHUB}", "maxTokens": 5}
            ),
            30,
        )
        long_run = await bounded(
            client.call_tool("trigger-long-running-operation", {"duration": 1, "steps": 3}),
            30,
        )
    params = StdioServerParameters(command=NODE, args=[str(EVERYTHING), "stdio"])
    async with Client(
        params,
        sampling_callback=rec.on_sampling,
        elicitation_callback=rec.on_elicitation,
        list_roots_callback=rec.on_roots,
        logging_callback=rec.on_log,
    ) as direct:
        expected = (await direct.list_tools()).model_dump()
    withheld = {t["name"] for t in expected["tools"]} - {t["name"] for t in through["tools"]}
    assert withheld == set()
    assert through == expected  # a real server's normal output, unchanged
    assert GITHUB not in str(echo.model_dump())
    assert "[REDACTED:github_token]" in str(echo.model_dump())
    # The sampling request the upstream sent inside the call reached the client redacted.
    assert rec.sampling and GITHUB not in str(rec.sampling[0].model_dump())
    assert "[REDACTED:github_token]" in str(rec.sampling[0].model_dump())
    assert sampled.is_error is not True
    assert long_run.is_error is not True
