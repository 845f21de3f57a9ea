"""A minimal raw JSON-RPC stdio MCP server whose every move the tests control.

Tools (``tools/call`` with ``name``):
  echo {text}        answer at once.
  wait {tag}         send progress (when the caller asked for it), then hold the request
                     until ``release {tag}`` or a ``notifications/cancelled`` naming it.
  release {tag}      answer the held request ``tag``.
  status             which tags are held and which were cancelled (by the id the server saw).
  notify             answer, then send a notification that belongs to no request.
  ask                send a server-to-client request (``roots/list``), then answer.
  freeze             stop answering anything (keeps reading stdin).
  deaf               stop reading stdin altogether (the process stays alive).
  spawn              start a grandchild (``sleep``) in the process group; answer its pid.
  fds                the descriptors this process holds.
  pid                this process's pid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

held: dict[str, Any] = {}  # tag -> upstream request id
cancelled: list[str] = []
cancels: list[Any] = []  # every requestId a notifications/cancelled named
answers: list[Any] = []  # ids of the responses the client sent
frozen = False


def send(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def result(request_id: Any, value: Any) -> None:
    send({"jsonrpc": "2.0", "id": request_id, "result": value})


def text(request_id: Any, value: str) -> None:
    result(request_id, {"content": [{"type": "text", "text": value}]})


def call(request_id: Any, params: dict[str, Any]) -> None:
    global frozen
    name = params.get("name")
    args = params.get("arguments") or {}
    token = (params.get("_meta") or {}).get("progressToken")
    if name == "echo":
        text(request_id, str(args.get("text", "")))
    elif name == "wait":
        tag = str(args["tag"])
        held[tag] = request_id
        if token is not None:
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "notifications/progress",
                    "params": {"progressToken": token, "progress": 1, "message": tag},
                }
            )
    elif name == "release":
        tag = str(args["tag"])
        if tag in held:
            text(held.pop(tag), f"released {tag}")
        text(request_id, "ok")
    elif name == "status":
        result(
            request_id,
            {
                "content": [],
                "held": sorted(held),
                "cancelled": sorted(cancelled),
                "cancels": cancels,
                "answers": answers,
            },
        )
    elif name == "notify":
        # Answer first: the notification then comes while other calls may be in flight.
        text(request_id, "notified")
        send(
            {
                "jsonrpc": "2.0",
                "method": "notifications/message",
                "params": {"level": "info", "data": "unrelated"},
            }
        )
    elif name == "ask":
        send({"jsonrpc": "2.0", "id": "srv-1", "method": "roots/list"})
        text(request_id, "asked")
    elif name == "freeze":
        frozen = True
    elif name == "deaf":
        text(request_id, "deaf")
        while True:
            time.sleep(3600)
    elif name == "spawn":
        child = subprocess.Popen(["sleep", "600"])
        text(request_id, str(child.pid))
    elif name == "fds":
        text(request_id, json.dumps(sorted(int(fd.name) for fd in Path("/proc/self/fd").iterdir())))
    elif name == "pid":
        text(request_id, str(os.getpid()))
    else:
        send({"jsonrpc": "2.0", "id": request_id, "error": {"code": -32602, "message": "?"}})


def main() -> None:
    for line in sys.stdin:
        message = json.loads(line)
        method = message.get("method")
        params = message.get("params") or {}
        if frozen:
            continue
        if method is None:
            answers.append([message.get("id"), "error" if "error" in message else "result"])
            continue
        if method == "initialize":
            result(
                message["id"],
                {
                    "protocolVersion": params.get("protocolVersion"),
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "raw", "version": "1"},
                },
            )
        elif method == "ping":
            result(message["id"], {})
        elif method == "tools/call":
            call(message["id"], params)
        elif method == "notifications/cancelled":
            cancels.append(params.get("requestId"))
            for tag, request_id in list(held.items()):
                if request_id == params.get("requestId"):
                    held.pop(tag)
                    cancelled.append(tag)
        elif "id" in message and method is not None:
            send(
                {
                    "jsonrpc": "2.0",
                    "id": message["id"],
                    "error": {"code": -32601, "message": "Method not found"},
                }
            )


if __name__ == "__main__":
    main()
