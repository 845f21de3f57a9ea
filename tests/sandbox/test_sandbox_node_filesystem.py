"""``@modelcontextprotocol/server-filesystem`` (npm, Node) sandboxed by the gateway under
each runner, called through the gateway by the official Python SDK client: it lists and
reads a directory the operator binds read-only, cannot write there, and, even when its
own guard is opened to ``/``, finds neither ``/etc/shadow`` nor the gateway's files:
they are not in its sandbox."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

import wardgate
from support.servers import run_gateway
from wardgate.upstream.runners import gvisor_works

INDEX = (
    Path(__file__).parents[1]
    / "node/node_modules/@modelcontextprotocol/server-filesystem/dist/index.js"
)
NODE = "/usr/bin/node"

pytestmark = [
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bwrap not installed"),
    pytest.mark.skipif(not Path(NODE).exists(), reason="no node"),
    pytest.mark.skipif(not INDEX.exists(), reason="npm install in tests/node"),
]
RUNNERS = [
    "bubblewrap",
    pytest.param("gvisor", marks=pytest.mark.skipif(not gvisor_works(), reason="no runsc")),
]


def _modules() -> str:
    """The node_modules directory the server (and its dependencies) really live in."""
    real = INDEX.resolve()
    return str(next(p for p in real.parents if p.name == "node_modules"))


def _config(runner: str, data: Path) -> dict[str, Any]:
    def server(root: str) -> dict[str, Any]:
        return {
            "transport": "stdio",
            # V8's heap bounded below the sandbox's memory limit (NODE_OPTIONS may not
            # be set for a sandboxed server; node's own flags may).
            "command": [NODE, "--max-old-space-size=192", str(INDEX.resolve()), root],
            "sandbox": runner,
            "read_only_paths": [_modules(), str(data)],
            "sandbox_limits": {"memory_mib": 512},
        }

    return {
        "sandbox": {"allowed_host_paths": ["/usr", _modules(), str(data)]},
        # "wide": the server's own guard opened to everything; the sandbox still holds.
        "upstreams": {"fs": server(str(data)), "wide": server("/")},
        "routes": {"fs": {"upstreams": ["fs"]}, "wide": {"upstreams": ["wide"]}},
    }


def _text(result: Any) -> str:
    return "".join(getattr(c, "text", "") for c in result.content)


@pytest.mark.parametrize("runner", RUNNERS)
async def test_filesystem_server_sees_only_the_bound_directory(runner: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "docs").mkdir(parents=True)
    (data / "docs" / "note.txt").write_text("hello from the operator's directory\n")
    gateway_file = str(Path(wardgate.__file__).resolve())
    async with run_gateway(_config(runner, data)) as (url, _):
        async with Client(f"{url}/mcp/fs", mode="legacy") as fs:
            listing = await fs.call_tool("list_directory", {"path": str(data / "docs")})
            assert not listing.is_error and "note.txt" in _text(listing)
            read = await fs.call_tool("read_text_file", {"path": str(data / "docs/note.txt")})
            assert "hello from the operator's directory" in _text(read)
            write = await fs.call_tool(
                "write_file", {"path": str(data / "docs/new.txt"), "content": "x"}
            )
            assert write.is_error
            assert not (data / "docs/new.txt").exists()
            outside = await fs.call_tool("read_text_file", {"path": "/etc/shadow"})
            assert outside.is_error

        async with Client(f"{url}/mcp/wide", mode="legacy") as wide:
            for path in ("/etc/shadow", "/etc/passwd", gateway_file, sys.executable):
                result = await wide.call_tool("read_text_file", {"path": path})
                assert result.is_error, path
                assert "root:" not in _text(result)
            root = await wide.call_tool("list_directory", {"path": "/"})
            assert not root.is_error
            entries = _text(root)
            assert "usr" in entries
            assert "home" not in entries and "root" not in entries and "etc" not in entries
            # Still serving what is bound.
            again = await wide.call_tool("read_text_file", {"path": str(data / "docs/note.txt")})
            assert "hello" in _text(again)
