from __future__ import annotations

from pathlib import Path

import pytest

from wardgate.core.call import Call
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.errors import WardgateError
from wardgate.policy.engines import PolicyEngine
from wardgate.policy.source import engine_from_files, read_policy_dir
from wardgate.telemetry.events import GatewayEvent
from wardgate.wire.jsonrpc import Message

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "policy"


class Sink:
    """Collects events (a real EventSink, in memory)."""

    def __init__(self) -> None:
        self.events: list[GatewayEvent] = []

    def emit(self, event: GatewayEvent) -> None:
        self.events.append(event)

    def of(self, kind: str) -> list[GatewayEvent]:
        return [e for e in self.events if e.kind == kind]


def example_engine(kind: str, revision: str = "example") -> PolicyEngine:
    return engine_from_files(read_policy_dir(EXAMPLES / kind), revision=revision)


@pytest.fixture(params=["cedar", "rego"])
def example(request: pytest.FixtureRequest) -> PolicyEngine:
    return example_engine(str(request.param))


async def begin(pipeline: Pipeline, ctx: CallContext, message: Message) -> Call:
    """Open and admit a call as the edge does; a refused call is ended, then re-raised."""
    call = pipeline.call(ctx, message)
    try:
        await pipeline.admit(call)
    except WardgateError as exc:
        await call.end(exc.http_status)
        raise
    return call
