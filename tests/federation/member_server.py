"""A configurable MCP server (official Python SDK, low-level ``Server``) for federation tests.

Run over stdio (or Streamable HTTP with ``--port``: one process, shared by every session)::

    python member_server.py --name a --tools 12 --page-size 5 \\
        --resources a://one,shared://x --templates 'users://{id}/profile' --tasks

* ``--tools N`` tools named ``t0`` … ``t{N-1}``; ``tools/list`` pages ``--page-size`` at a
  time (cursor: the offset), so a client that does not paginate sees only the first page.
* ``--resources`` / ``--templates``: what ``resources/list`` and ``resources/templates/list``
  return; reading a URI answers ``"{name}:{uri}"`` (any URI: routing is the gateway's job).
* ``--tasks``: the tasks extension: ``tools/call`` of ``slow`` answers a task (a
  ``CreateTaskResult`` with ``task.taskId``) and ``tasks/get``, ``tasks/result``,
  ``tasks/cancel`` and ``tasks/list`` serve the tasks it made (2025-11-25 shapes). Unknown
  task ids are -32602.
* ``--listen``: ``subscriptions/listen`` (2026) served; ``tools/call`` of ``announce``
  publishes a tools list change, or with ``{"uri": U}`` an update of resource ``U``.
* Every list call is counted; ``tools/call`` of ``count`` answers the counts as JSON.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import anyio
import mcp.types as types
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.subscriptions import (
    InMemorySubscriptionBus,
    ListenHandler,
    ResourceUpdated,
    ToolsListChanged,
)
from mcp.shared.exceptions import MCPError

Ctx = ServerRequestContext[Any]


def build(args: argparse.Namespace) -> Server[Any]:
    name: str = args.name
    tools = [
        types.Tool(name=f"t{i}", description=f"tool {i} of {name}", input_schema={"type": "object"})
        for i in range(args.tools)
    ] + [types.Tool(name="count", input_schema={"type": "object"})]
    if args.tasks:
        tools.append(types.Tool(name="slow", input_schema={"type": "object"}))
    bus = InMemorySubscriptionBus()
    if args.listen:
        tools.append(types.Tool(name="announce", input_schema={"type": "object"}))
    resources = [types.Resource(uri=u, name=u) for u in args.resources.split(",") if u]
    templates = [
        types.ResourceTemplate(uri_template=t, name=t) for t in args.templates.split(",") if t
    ]
    counts: Counter[str] = Counter()
    tasks: dict[str, dict[str, Any]] = {}
    ids = itertools.count(1)

    def page(
        items: list[Any], params: types.PaginatedRequestParams | None
    ) -> tuple[list[Any], str | None]:
        start = int(params.cursor) if params is not None and params.cursor else 0
        end = start + args.page_size
        return items[start:end], (str(end) if end < len(items) else None)

    async def list_tools(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        counts["tools/list"] += 1
        found, nxt = page(tools, params)
        return types.ListToolsResult(tools=found, next_cursor=nxt)

    async def list_resources(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        counts["resources/list"] += 1
        found, nxt = page(resources, params)
        return types.ListResourcesResult(resources=found, next_cursor=nxt)

    async def list_templates(
        ctx: Ctx, params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        counts["resources/templates/list"] += 1
        found, nxt = page(templates, params)
        return types.ListResourceTemplatesResult(resource_templates=found, next_cursor=nxt)

    async def read(ctx: Ctx, params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        uri = str(params.uri)
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=uri, text=f"{name}:{uri}")]
        )

    async def call_tool(ctx: Ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
        if params.name == "count":
            value = json.dumps(dict(counts))
        elif params.name == "announce" and args.listen:
            uri = (params.arguments or {}).get("uri")
            await bus.publish(ResourceUpdated(uri) if isinstance(uri, str) else ToolsListChanged())
            value = "announced"
        elif any(t.name == params.name for t in tools):
            value = f"{name}:{params.name}"
        else:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
        return types.CallToolResult(content=[types.TextContent(type="text", text=value)])

    def task_of(params: Mapping[str, Any]) -> dict[str, Any]:
        task_id = params.get("taskId")
        if not isinstance(task_id, str) or task_id not in tasks:
            raise MCPError(types.INVALID_PARAMS, "Failed to retrieve task: Task not found")
        return tasks[task_id]

    def tasks_extension(method: str, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The task methods, answered whole (the SDK has no server side for them)."""
        if method == "tools/call" and params.get("name") == "slow":
            task_id = f"{name}-task-{next(ids)}"
            task = {
                "taskId": task_id,
                "status": "working",
                "ttl": 60_000,
                "createdAt": "2026-01-01T00:00:00Z",
                "lastUpdatedAt": "2026-01-01T00:00:00Z",
            }
            tasks[task_id] = task
            return {"task": task}
        if method == "tasks/get":
            return dict(task_of(params))
        if method == "tasks/result":
            task_id = task_of(params)["taskId"]
            return {"content": [{"type": "text", "text": f"{name}:result:{task_id}"}]}
        if method == "tasks/cancel":
            task = task_of(params)
            task["status"] = "cancelled"
            return dict(task)
        if method == "tasks/list":
            return {"tasks": list(tasks.values())}
        return None

    class Tasks:
        async def __call__(self, ctx: Ctx, call_next: CallNext) -> HandlerResult:
            params = ctx.params if isinstance(ctx.params, Mapping) else {}
            answer = tasks_extension(ctx.method, params) if ctx.request_id is not None else None
            return answer if answer is not None else await call_next(ctx)

    server: Server[Any] = Server(
        name,
        version="0.1.0",
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_list_resource_templates=list_templates,
        on_read_resource=read,
        on_subscriptions_listen=ListenHandler(bus) if args.listen else None,
    )
    if args.tasks:
        server.middleware.append(Tasks())
    return server


async def _serve(args: argparse.Namespace) -> None:
    from mcp.server.stdio import stdio_server

    server = build(args)
    async with stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())


def _serve_http(args: argparse.Namespace) -> None:
    import uvicorn

    app = build(args).streamable_http_app(streamable_http_path="/mcp", host="127.0.0.1")
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", lifespan="on")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--tools", type=int, default=0)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--resources", default="")
    parser.add_argument("--templates", default="")
    parser.add_argument("--tasks", action="store_true")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--port", type=int, help="serve Streamable HTTP on 127.0.0.1:PORT/mcp")
    args = parser.parse_args()
    if args.port is not None:
        _serve_http(args)
    else:
        anyio.run(_serve, args)


if __name__ == "__main__":
    main()
