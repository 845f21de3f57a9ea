"""Tasks (the MCP tasks extension) bound to the caller who created them.

A ``tools/call`` whose result is a task (2025-11-25: ``{"task": {"taskId": …}}``; the
``io.modelcontextprotocol/tasks`` extension: ``{"resultType": "task", "taskId": …}``)
binds that task id to the caller (:attr:`Principal.binding_key
<wardgate.identity.principal.Principal.binding_key>`, tenant included) and to the member
that made it. A task-addressed request (``tasks/get``, ``tasks/result``,
``tasks/cancel``, ``tasks/update``, any ``tasks/*`` naming a ``taskId``) from anyone
else, or for an id the gateway never saw, gets one answer: an unknown target (-32602,
in-band), the same whether the task exists or not. ``tasks/list`` shows a caller only
its own tasks.

The registry is bounded: each task expires with its TTL (capped), a caller holds at most
``max_per_owner`` tasks and the route ``max_tasks``; past a cap the oldest binding goes
first, and its task becomes unreachable through the gateway (fail closed).

A route uses one :class:`TaskBinding`: :meth:`TaskBinding.member_of` while resolving
(which member owns the task), :meth:`TaskBinding.check` before forwarding (does the
caller own it), :meth:`TaskBinding.watch` on the upstream's reply (bind new tasks,
filter ``tasks/list``).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from wardgate.core.call import Call
from wardgate.errors import HeaderMismatch, InvalidParams, UnknownTarget
from wardgate.upstream.seam import Event, Reply
from wardgate.wire.jsonrpc import JsonObject, Message
from wardgate.wire.mcp import H_NAME, decode_header_value

__all__ = ["TASK_LIST", "TaskBinding", "TaskRegistry", "task_id_of"]

log = logging.getLogger("wardgate.routing.tasks")

TASK_LIST = "tasks/list"
_CREATES = frozenset({"tools/call"})


def task_id_of(message: Message) -> str | None:
    """The task a request addresses (``None``: not a task-addressed request).

    Raises:
        InvalidParams: a ``tasks/*`` request whose ``taskId`` is not a string.
    """
    method = message.method or ""
    if not method.startswith("tasks/") or method == TASK_LIST or message.kind != "request":
        return None
    task_id = message.params.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise InvalidParams("taskId must be a non-empty string")
    return task_id


def _created_task(result: Any) -> tuple[str, float | None] | None:
    """The task id (and TTL in seconds) a result creates, if it is a task."""
    if not isinstance(result, dict):
        return None
    task = result.get("task")
    if isinstance(task, dict) and isinstance(task.get("taskId"), str):
        source: Mapping[str, Any] = task
    elif result.get("resultType") == "task" and isinstance(result.get("taskId"), str):
        source = result
    else:
        return None
    ttl = source.get("ttl", source.get("ttlMs"))
    seconds = ttl / 1000 if isinstance(ttl, int | float) and not isinstance(ttl, bool) else None
    return source["taskId"], seconds


@dataclass(slots=True)
class _Entry:
    owner: Hashable
    member: int
    expires: float


class TaskRegistry:
    """Task id -> (owner, member), bounded; see the module docstring."""

    def __init__(
        self,
        *,
        max_tasks: int = 10_000,
        max_per_owner: int = 1_000,
        default_ttl: float = 3600.0,
        max_ttl: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._tasks: OrderedDict[str, _Entry] = OrderedDict()
        self._by_owner: dict[Hashable, OrderedDict[str, None]] = {}
        self.max_tasks = max_tasks
        self.max_per_owner = max_per_owner
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.clock = clock

    def __len__(self) -> int:
        return len(self._tasks)

    def _drop(self, task_id: str) -> None:
        entry = self._tasks.pop(task_id, None)
        if entry is None:
            return
        mine = self._by_owner.get(entry.owner)
        if mine is not None:
            mine.pop(task_id, None)
            if not mine:
                del self._by_owner[entry.owner]

    def _live(self, task_id: str) -> _Entry | None:
        entry = self._tasks.get(task_id)
        if entry is None:
            return None
        if entry.expires <= self.clock():
            self._drop(task_id)
            return None
        return entry

    def bind(self, task_id: str, owner: Hashable, member: int, ttl: float | None = None) -> bool:
        """Bind a new task to its creator; ``False`` when another caller or member holds it."""
        now = self.clock()
        life = min(self.max_ttl, ttl if ttl is not None and ttl > 0 else self.default_ttl)
        entry = self._live(task_id)
        if entry is not None:
            if entry.owner != owner or entry.member != member:
                log.error(
                    "task id %r was created again for another caller or member; "
                    "the first binding stands",
                    task_id,
                )
                return False
            entry.expires = max(entry.expires, now + life)
            return True
        # Expired bindings at the old end go first, whatever the caps.
        while self._tasks:
            oldest, first = next(iter(self._tasks.items()))
            if first.expires > now:
                break
            self._drop(oldest)
        mine = self._by_owner.setdefault(owner, OrderedDict())
        while len(mine) >= self.max_per_owner:
            self._drop(next(iter(mine)))
            mine = self._by_owner.setdefault(owner, OrderedDict())
        while len(self._tasks) >= self.max_tasks:
            self._drop(next(iter(self._tasks)))
            mine = self._by_owner.setdefault(owner, OrderedDict())
        self._tasks[task_id] = _Entry(owner, member, now + life)
        mine[task_id] = None
        return True

    def member_of(self, task_id: str) -> int | None:
        """The member that made a live task, whoever owns it (for routing only)."""
        entry = self._live(task_id)
        return None if entry is None else entry.member

    def owns(self, task_id: str, owner: Hashable) -> bool:
        entry = self._live(task_id)
        return entry is not None and entry.owner == owner

    def owned(self, owner: Hashable, member: int | None = None) -> set[str]:
        """The live tasks of ``owner`` (made by ``member`` when given)."""
        return {
            t
            for t in list(self._by_owner.get(owner, ()))
            if (e := self._live(t)) is not None and (member is None or e.member == member)
        }


class TaskBinding:
    """The hook a route uses to bind tasks to callers; see the module docstring."""

    def __init__(self, registry: TaskRegistry | None = None) -> None:
        self.registry = registry if registry is not None else TaskRegistry()

    def member_of(self, message: Message, headers: Mapping[str, str]) -> int | None:
        """For a task-addressed request, the member that owns the task (else ``None``).

        Raises:
            InvalidParams: the request's ``taskId`` is malformed.
            HeaderMismatch: ``Mcp-Name`` is present and names another task.
            UnknownTarget: the gateway knows no live task with that id.
        """
        task_id = task_id_of(message)
        if task_id is None:
            return None
        named = headers.get(H_NAME)
        if named is not None and decode_header_value(named) != task_id:
            raise HeaderMismatch("Mcp-Name does not match params.taskId")
        member = self.registry.member_of(task_id)
        if member is None:
            raise UnknownTarget("unknown task")
        return member

    def check(self, call: Call, member: int = 0) -> None:
        """Refuse a task-addressed request from anyone but the task's creator.

        ``member`` is the member the call was routed to; the task must be its.

        Raises:
            InvalidParams: the request's ``taskId`` is malformed.
            UnknownTarget: the task is unknown or another caller's (the same answer).
        """
        task_id = task_id_of(call.request)
        if task_id is None:
            return
        owner = call.ctx.principal.binding_key
        if not self.registry.owns(task_id, owner) or self.registry.member_of(task_id) != member:
            raise UnknownTarget("unknown task")

    def watch(self, call: Call, reply: Reply, member: int) -> Reply:
        """The reply with its tasks bound to the caller and ``tasks/list`` filtered."""
        method = call.request.method
        if method not in _CREATES and method != TASK_LIST:
            return reply
        return Reply(
            self._watch(call, reply, member),
            status=reply.status,
            streaming=reply.streaming,
            headers=reply.headers,
        )

    async def _watch(self, call: Call, reply: Reply, member: int) -> AsyncIterator[Event]:
        owner = call.ctx.principal.binding_key
        try:
            async for event in reply.events:
                raw = event.message
                if raw is not None and event.is_response and isinstance(raw.get("result"), dict):
                    if call.request.method == TASK_LIST:
                        filtered = self.filter_list(raw, owner, member)
                        event = Event(filtered, event.event_id, event.retry_ms)
                    else:
                        created = _created_task(raw["result"])
                        if created is not None:
                            self.registry.bind(created[0], owner, member, created[1])
                yield event
        finally:
            await reply.aclose()

    def filter_list(self, response: JsonObject, owner: Hashable, member: int | None) -> JsonObject:
        """A ``tasks/list`` response with only ``owner``'s tasks (made by ``member``)."""
        result = response.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("tasks"), list):
            return response
        mine = self.registry.owned(owner, member)
        tasks = [t for t in result["tasks"] if isinstance(t, dict) and t.get("taskId") in mine]
        return {**response, "result": {**result, "tasks": tasks}}
