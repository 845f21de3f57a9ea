"""A stdio MCP upstream for the limits tests (raw JSON-RPC, modern era), one thread per
call so that slow calls overlap. Tools:

- ``echo``: answers at once (with ``arguments.text`` when given).
- ``query``: a costly tool; reports ``arguments.cost`` (if any) as its cost in
  ``result._meta["wardgate.dev/costUsd"]``.
- ``slow``: answers after ``arguments.seconds``.
- ``fail``: answers with a JSON-RPC error.
"""

from __future__ import annotations

import json
import sys
import threading
import time

TOOLS = [
    {"name": n, "description": n, "inputSchema": {"type": "object"}}
    for n in ("echo", "query", "slow", "fail", "other")
]
_out = threading.Lock()


def send(message: dict[str, object]) -> None:
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def text(value: str) -> dict[str, object]:
    return {"content": [{"type": "text", "text": value}]}


def handle(request: dict[str, object]) -> None:
    method = request.get("method")
    params = request.get("params")
    params = params if isinstance(params, dict) else {}
    rid = request["id"]
    if method == "initialize":
        result: dict[str, object] = {
            "protocolVersion": params.get("protocolVersion", "2025-11-25"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "limits", "version": "1"},
        }
    elif method == "server/discover":
        result = {
            "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "limits", "version": "1"},
        }
    elif method == "tools/list":
        result = {"tools": TOOLS}
    elif method == "tools/call":
        name = params.get("name")
        args = params.get("arguments") or {}
        assert isinstance(args, dict)
        if name == "fail":
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": "broken"}})
            return
        if name == "slow":
            time.sleep(float(args.get("seconds", 1)))
        result = text(f"{name} ok")
        if name == "echo" and "text" in args:
            result = text(str(args["text"]))
        if name == "query" and "cost" in args:
            result["_meta"] = {"wardgate.dev/costUsd": args["cost"]}
    elif method == "ping":
        result = {}
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no"}})
        return
    send({"jsonrpc": "2.0", "id": rid, "result": result})


def main() -> None:
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if "id" in request and "method" in request:
            threading.Thread(target=handle, args=(request,), daemon=True).start()


if __name__ == "__main__":
    main()
