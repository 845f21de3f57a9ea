from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support.servers import demo_server_argv, free_port, spawn_http_server


@pytest.fixture(scope="session")
def demo_http_upstream() -> Iterator[str]:
    """The bundled demo server (official Python SDK) on Streamable HTTP."""
    port = free_port()
    with spawn_http_server(demo_server_argv(port), port):
        yield f"http://127.0.0.1:{port}/mcp"


def stdio_demo_upstream() -> dict[str, object]:
    return {"transport": "stdio", "command": demo_server_argv(), "sandbox": "insecure-none"}
