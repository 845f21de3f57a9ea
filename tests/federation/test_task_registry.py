"""The task registry stays bounded: tasks expire with their TTL, caps evict the oldest."""

from __future__ import annotations

import pytest

from wardgate.errors import HeaderMismatch, UnknownTarget
from wardgate.routing.tasks import TaskBinding, TaskRegistry
from wardgate.wire.jsonrpc import Message

ALICE = ("iss", None, "agent", "alice")
BOB = ("iss", None, "agent", "bob")


def _registry(
    *, max_tasks: int = 10_000, max_per_owner: int = 1_000, max_ttl: float = 86_400.0
) -> tuple[TaskRegistry, list[float]]:
    now = [0.0]
    registry = TaskRegistry(
        max_tasks=max_tasks, max_per_owner=max_per_owner, max_ttl=max_ttl, clock=lambda: now[0]
    )
    return registry, now


def test_a_task_expires_with_its_ttl_and_the_ttl_is_capped() -> None:
    registry, now = _registry(max_ttl=600.0)
    assert registry.bind("short", ALICE, 0, ttl=5.0)
    assert registry.bind("forever", ALICE, 0, ttl=10**9)
    now[0] = 6.0
    assert registry.member_of("short") is None
    assert registry.owns("forever", ALICE)
    now[0] = 601.0
    assert registry.member_of("forever") is None
    assert len(registry) == 0


def test_one_caller_flooding_tasks_evicts_only_its_own_oldest() -> None:
    registry, _ = _registry(max_per_owner=100, max_tasks=1000)
    assert registry.bind("bob-1", BOB, 0)
    for i in range(5000):
        registry.bind(f"alice-{i}", ALICE, 0)
    assert len(registry.owned(ALICE)) == 100
    assert registry.owned(ALICE) == {f"alice-{i}" for i in range(4900, 5000)}
    assert registry.owns("bob-1", BOB)  # the flood did not push Bob's task out
    assert len(registry) == 101


def test_the_route_wide_cap_holds() -> None:
    registry, _ = _registry(max_per_owner=10, max_tasks=50)
    for owner in range(20):
        for i in range(10):
            registry.bind(f"{owner}-{i}", ("iss", None, "c", str(owner)), 0)
    assert len(registry) == 50


def test_a_task_id_cannot_be_taken_over_by_another_caller_or_member() -> None:
    registry, _ = _registry()
    assert registry.bind("t", ALICE, 0)
    assert not registry.bind("t", BOB, 0)
    assert not registry.bind("t", ALICE, 1)
    assert registry.owns("t", ALICE) and registry.member_of("t") == 0


def _get(task_id: object) -> Message:
    raw = {"jsonrpc": "2.0", "id": 1, "method": "tasks/get", "params": {"taskId": task_id}}
    return Message(raw, "request")


def test_mcp_name_must_name_the_task_the_body_names() -> None:
    binding = TaskBinding()
    binding.registry.bind("t-1", ALICE, 1)
    assert binding.member_of(_get("t-1"), {"mcp-name": "t-1"}) == 1
    with pytest.raises(HeaderMismatch):
        binding.member_of(_get("t-1"), {"mcp-name": "t-2"})
    with pytest.raises(UnknownTarget):
        binding.member_of(_get("t-2"), {})
