"""Tenancy against a real shared upstream: the official MCP SDK's server, over stdio.

The CRM server trusts the ``tenant`` argument. The policy guard, on a real Pipeline,
stands where the gateway puts it: requests pass ``Pipeline.begin`` before they are
written to the server, replies pass ``Call.message`` before they reach the client.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.policy.conftest import Sink, begin, example_engine
from tests.policy.test_guard import ALICE, BOT, CONFIG, OFFICE
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied, UnknownTarget
from wardgate.identity.principal import Principal
from wardgate.policy.decision_log import PolicyDecided
from wardgate.policy.guard import PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.inputs import InputBuilder
from wardgate.telemetry.events import EventBus
from wardgate.wire.jsonrpc import Message

SERVER = Path(__file__).resolve().parents[1] / "servers" / "crm_server.py"


class Stdio:
    """Raw JSON-RPC over a real server process's stdio (what a gateway relays)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.ids = itertools.count(1)
        self.seen: list[dict[str, Any]] = []

    async def send(self, raw: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.seen.append(raw)
        self.proc.stdin.write(json.dumps(raw).encode() + b"\n")
        await self.proc.stdin.drain()

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        rid = next(self.ids)
        await self.send({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 20)
            assert line, "server closed stdout"
            msg = json.loads(line)
            if msg.get("id") == rid and "method" not in msg:
                return dict(msg)


@pytest.fixture
async def crm() -> AsyncIterator[Stdio]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SERVER),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    io = Stdio(proc)
    init = await io.request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "policy-test", "version": "1"},
        },
    )
    assert "result" in init
    await io.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
    yield io
    proc.kill()
    await proc.wait()


async def _relay(
    pipeline: Pipeline, io: Stdio, who: Principal, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """One call the way the gateway makes it: guards, upstream, reply guards."""
    target = params.get("name")
    ctx = CallContext(
        route="crm",
        principal=who,
        client_addr="10.0.0.5",
        received_at=OFFICE,
        upstream="crm",
        target=target,
    )
    raw = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    call = await begin(pipeline, ctx, Message(raw, "request"))
    try:
        answer = await io.request(method, params)
        out = await call.message(Message(answer, "response"))
        assert out is not None
        return out.raw
    finally:
        await call.end(200)


@pytest.mark.parametrize("kind", ["cedar", "rego"])
async def test_an_acme_user_cannot_read_globex_records_through_the_shared_crm(
    crm: Stdio, kind: str
) -> None:
    sink = Sink()
    holder = PolicyHolder(example_engine(kind, revision="rev-9"))
    pipeline = Pipeline([PolicyGuard(holder, InputBuilder(CONFIG))], events=EventBus([sink]))

    own = await _relay(
        pipeline,
        crm,
        ALICE,
        "tools/call",
        {"name": "read_record", "arguments": {"tenant": "acme", "id": "a-1"}},
    )
    assert "Ann Acme" in json.dumps(own["result"])

    sent_before = len(crm.seen)
    with pytest.raises(Denied) as refused:
        await _relay(
            pipeline,
            crm,
            ALICE,
            "tools/call",
            {"name": "read_record", "arguments": {"tenant": "globex", "id": "g-1"}},
        )
    assert refused.value.code == "wardgate.denied"
    assert len(crm.seen) == sent_before  # the server never saw the request
    denial = [e for e in sink.of("policy.decision") if isinstance(e, PolicyDecided)][-1]
    assert not denial.allowed and denial.reasons == ("tenant-isolation",)
    assert denial.input["resource"]["tenant"] == "globex" and denial.revision == "rev-9"


async def test_the_real_tools_list_is_filtered_and_agent_reads_are_redacted(crm: Stdio) -> None:
    holder = PolicyHolder(example_engine("cedar"))
    pipeline = Pipeline([PolicyGuard(holder, InputBuilder(CONFIG))])
    listed = await _relay(pipeline, crm, ALICE, "tools/list", {})
    assert sorted(t["name"] for t in listed["result"]["tools"]) == ["read_record", "search_records"]
    with pytest.raises(UnknownTarget):  # hidden from staff: answered as absent
        await _relay(
            pipeline,
            crm,
            ALICE,
            "tools/call",
            {"name": "delete_record", "arguments": {"tenant": "acme", "id": "a-2"}},
        )
    record = await _relay(
        pipeline,
        crm,
        BOT,
        "tools/call",
        {"name": "read_record", "arguments": {"tenant": "acme", "id": "a-1"}},
    )
    structured = record["result"]["structuredContent"]
    assert structured == {"name": "Ann Acme", "ssn": "[REDACTED]", "date_of_birth": "[REDACTED]"}


async def test_a_redact_obligation_also_covers_the_text_content(crm: Stdio) -> None:
    holder = PolicyHolder(example_engine("cedar"))
    pipeline = Pipeline([PolicyGuard(holder, InputBuilder(CONFIG))])
    record = await _relay(
        pipeline,
        crm,
        BOT,
        "tools/call",
        {"name": "read_record", "arguments": {"tenant": "acme", "id": "a-1"}},
    )
    # The SDK serialises the record into content[].text too: the SSN must not survive there.
    assert "078-05-1120" not in json.dumps(record["result"])
    assert "Ann Acme" in record["result"]["content"][0]["text"]
