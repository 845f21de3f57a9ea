"""Tasks belong to the caller who created them: another principal reading, cancelling or
listing them gets what an unknown task id gets; the owner is served."""

from __future__ import annotations

import itertools
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import orjson
import pytest
from auth._local import LocalGateway, local_gateway
from federation_helpers import MEMBER, member

from support.http import modern_body, modern_headers, post
from support.servers import free_port, spawn_http_server

HANDSHAKE = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
INVALID_PARAMS = -32602
_ids = itertools.count(1)


class RawSession:
    """A handshake-era session over raw HTTP, so every answer is seen as sent."""

    def __init__(self, http: aiohttp.ClientSession, url: str, auth: dict[str, str]) -> None:
        self.http, self.url, self.auth = http, url, auth
        self.sid: str | None = None

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": ACCEPT, **self.auth}
        if self.sid is not None:
            headers |= {"mcp-session-id": self.sid, "mcp-protocol-version": HANDSHAKE}
        return headers

    async def open(self) -> RawSession:
        params = {
            "protocolVersion": HANDSHAKE,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        }
        await self.rpc("initialize", params)
        body = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        async with self.http.post(
            self.url, data=orjson.dumps(body), headers=self._headers()
        ) as resp:
            assert resp.status == 202
        return self

    async def rpc(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The final response to one request (from JSON or SSE)."""
        request_id = next(_ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        async with self.http.post(
            self.url, data=orjson.dumps(body), headers=self._headers()
        ) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
            if self.sid is None:
                self.sid = resp.headers.get("mcp-session-id")
            raw = await resp.read()
            if resp.content_type == "text/event-stream":
                messages = [
                    orjson.loads(line[5:])
                    for line in raw.decode().splitlines()
                    if line.startswith("data:") and line[5:].strip()
                ]
            else:
                messages = [orjson.loads(raw)]
        final: dict[str, Any] = next(
            m for m in messages if m.get("id") == request_id and "method" not in m
        )
        return final


@pytest.fixture(scope="module")
def second_tasks_member() -> Iterator[str]:
    port = free_port()
    argv = [sys.executable, str(MEMBER), "--name", "b", "--tasks", "--port", str(port)]
    with spawn_http_server(argv, port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def tasks_member() -> Iterator[str]:
    """One member process shared by every session, as an HTTP MCP server is."""
    port = free_port()
    argv = [
        sys.executable,
        str(MEMBER),
        "--name",
        "a",
        "--tasks",
        "--port",
        str(port),
    ]
    with spawn_http_server(argv, port):
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture
async def gw(tasks_member: str) -> AsyncIterator[LocalGateway]:
    upstreams = {"a": {"transport": "http", "url": tasks_member}, "b": member("b", "--tools", "1")}
    routes = {"fed": {"upstreams": ["a", "b"]}, "solo": {"upstreams": ["a"]}}
    async with local_gateway(upstreams, routes) as g:
        yield g


def _error_code(answer: dict[str, Any]) -> int | None:
    error = answer.get("error")
    return error.get("code") if isinstance(error, dict) else None


@pytest.mark.parametrize(
    ("route", "tool"), [("fed", "a__slow"), ("solo", "slow")], ids=["federated", "transparent"]
)
async def test_only_the_creator_reaches_a_task(
    gw: LocalGateway, tasks_member: str, route: str, tool: str
) -> None:
    url = gw.url(route)
    async with aiohttp.ClientSession() as http:
        alice = await RawSession(http, url, gw.bearer(sub="alice")).open()
        bob = await RawSession(http, url, gw.bearer(sub="bob")).open()
        other_client = await RawSession(http, url, gw.bearer(sub="alice", client_id="other")).open()

        created = await alice.rpc("tools/call", {"name": tool, "arguments": {}})
        assert "result" in created, created
        task_id = created["result"]["task"]["taskId"]

        # The member itself would serve anyone who names the task: the gateway must not.
        direct = await RawSession(http, tasks_member, {}).open()
        assert (await direct.rpc("tasks/get", {"taskId": task_id}))["result"]["taskId"] == task_id

        unknown = await bob.rpc("tasks/get", {"taskId": "a-task-999999"})
        assert _error_code(unknown) == INVALID_PARAMS
        for intruder in (bob, other_client):
            for method in ("tasks/get", "tasks/result", "tasks/cancel"):
                answer = await intruder.rpc(method, {"taskId": task_id})
                assert _error_code(answer) == INVALID_PARAMS, (method, answer)
                # The same answer as an unknown task id, but for the decision id.
                assert answer["error"]["message"] == unknown["error"]["message"]
            listed = await intruder.rpc("tasks/list")
            assert task_id not in {t["taskId"] for t in listed["result"]["tasks"]}

        # The owner still sees, reads and cancels its task.
        got = await alice.rpc("tasks/get", {"taskId": task_id})
        assert got["result"]["taskId"] == task_id and got["result"]["status"] == "working"
        result = await alice.rpc("tasks/result", {"taskId": task_id})
        assert result["result"]["content"][0]["text"] == f"a:result:{task_id}"
        listed = await alice.rpc("tasks/list")
        assert task_id in {t["taskId"] for t in listed["result"]["tasks"]}
        cancelled = await alice.rpc("tasks/cancel", {"taskId": task_id})
        assert cancelled["result"]["status"] == "cancelled"


async def test_stateless_task_requests_go_to_the_member_that_made_the_task(
    tasks_member: str, second_tasks_member: str
) -> None:
    upstreams = {
        "a": {"transport": "http", "url": tasks_member},
        "b": {"transport": "http", "url": second_tasks_member},
    }
    async with local_gateway(upstreams, {"fed": {"upstreams": ["a", "b"]}}) as g:
        url = g.url("fed")
        alice, bob = g.bearer(sub="alice"), g.bearer(sub="bob")

        async def call(
            auth: dict[str, str], method: str, params: dict[str, Any], name: str | None = None
        ) -> tuple[int, dict[str, Any]]:
            headers = modern_headers(method, name) | auth
            status, _, answer = await post(url, modern_body(method, params), headers)
            return status, answer

        status, created = await call(alice, "tools/call", {"name": "b__slow"}, "b__slow")
        assert status == 200, created
        task_id = created["result"]["task"]["taskId"]
        assert task_id.startswith("b-task-")  # made by member b; member a knows no such task

        status, got = await call(alice, "tasks/get", {"taskId": task_id}, task_id)
        assert status == 200 and got["result"]["taskId"] == task_id
        status, refused = await call(bob, "tasks/get", {"taskId": task_id}, task_id)
        assert status == 200 and _error_code(refused) == INVALID_PARAMS
        status, mismatch = await call(alice, "tasks/get", {"taskId": task_id}, "another-task")
        assert _error_code(mismatch) == -32020
        status, cancelled = await call(alice, "tasks/cancel", {"taskId": task_id}, task_id)
        assert cancelled["result"]["status"] == "cancelled"
