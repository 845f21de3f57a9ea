"""A minimal stdio MCP server (raw JSON-RPC, both eras) whose one tool, ``meta``,
answers with the ``_meta`` the request carried: it shows what reached the upstream."""

from __future__ import annotations

import json
import sys

TOOL = {
    "name": "meta",
    "description": "Echo the request's _meta",
    "inputSchema": {"type": "object"},
}


def answer(request: dict[str, object]) -> dict[str, object] | None:
    method = request.get("method")
    params = request.get("params")
    params = params if isinstance(params, dict) else {}
    if "id" not in request:
        return None
    if method == "initialize":
        result: dict[str, object] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "meta-echo", "version": "1"},
        }
    elif method == "server/discover":
        result = {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "meta-echo", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        meta = params.get("_meta", {})
        result = {
            "content": [{"type": "text", "text": json.dumps(meta)}],
            "structuredContent": meta,
        }
    elif method == "ping":
        result = {}
    else:
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "no"}}
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        reply = answer(json.loads(line))
        if reply is not None:
            sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
