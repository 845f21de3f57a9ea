from __future__ import annotations

from pathlib import Path

import pytest

from wardgate.policy.engine import PolicyEngine
from wardgate.policy.source import engine_from_files, read_policy_dir
from wardgate.telemetry.events import GatewayEvent

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
