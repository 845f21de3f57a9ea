"""A raw stdio MCP server whose ``deep`` tool answers with a result nested N levels deep
(N from the tool's ``depth`` argument); ``ok`` answers plainly."""

from __future__ import annotations

import json
import sys


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "id" not in request:
            continue
        params = request.get("params") or {}
        method = request.get("method")
        if method == "initialize":
            result = {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "deep", "version": "1"},
            }
            out = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
        elif method == "tools/call" and params.get("name") == "deep":
            depth = int(params.get("arguments", {}).get("depth", 300))
            nested = "[" * depth + "]" * depth
            out = (
                '{"jsonrpc":"2.0","id":' + json.dumps(request["id"]) + ',"result":{"content":'
                '[{"type":"text","text":"deep"}],"structuredContent":{"x":' + nested + "}}}"
            )
        else:
            text = {"type": "text", "text": "ok"}
            out = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"content": [text]}})
        sys.stdout.write(out + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
