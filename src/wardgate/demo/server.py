"""A small MCP server for trying Wardgate: tools, a resource and a prompt.

Run: ``python -m wardgate.demo.server`` (stdio), ``--http PORT`` (Streamable HTTP) or
``--sse PORT`` (legacy HTTP+SSE, 2024-11-05).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

try:
    from mcp.server import MCPServer
except ImportError:  # pragma: no cover - exercised by hand
    sys.exit("the demo server needs the MCP SDK: pip install 'wardgate[demo]'")

server = MCPServer("wardgate-demo", version="1.0")


@server.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@server.tool()
def add(a: float, b: float) -> float:
    """Add two numbers."""
    return a + b


@server.tool()
def utc_now() -> str:
    """The current time in UTC, ISO 8601."""
    return datetime.now(UTC).isoformat()


@server.tool()
def delete_everything(confirm: bool) -> str:
    """A dangerous tool the demo route denies."""
    return "everything deleted" if confirm else "nothing deleted"


@server.resource("demo://readme")
def readme() -> str:
    """What this server is."""
    return "This is Wardgate's demo MCP server."


@server.prompt()
def greet(name: str) -> str:
    """A greeting prompt."""
    return f"Please greet {name} warmly."


def main() -> None:
    parser = argparse.ArgumentParser(prog="wardgate-demo-server")
    parser.add_argument("--http", type=int, metavar="PORT", help="serve Streamable HTTP on PORT")
    parser.add_argument("--sse", type=int, metavar="PORT", help="serve legacy HTTP+SSE on PORT")
    args = parser.parse_args()
    if args.http is not None:
        server.run("streamable-http", host="127.0.0.1", port=args.http)
    elif args.sse is not None:
        server.run("sse", host="127.0.0.1", port=args.sse)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
