"""Concurrency caps per tool and per subject: wait briefly for a slot, then refuse.

Slots live in the store with a time to live (a replica that dies gives its slots back
when they expire) and are released in the call's end hook, which the core runs exactly
once whatever happened, a client that went away included.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping

from wardgate.config.limits import ConcurrencyConfig
from wardgate.core.call import Call, Outcome
from wardgate.limits.fallback import part
from wardgate.limits.rate import tool_entry
from wardgate.limits.refusals import ConcurrencyLimited
from wardgate.state.store import StateStore
from wardgate.wire.jsonrpc import Message

__all__ = ["ConcurrencyGuard"]

#: How often a waiting call looks for a free slot (slots may free on another replica).
_POLL_SECONDS = 0.02


class ConcurrencyGuard:
    """Holds a slot per tool and per subject for the length of a ``tools/call``."""

    name = "concurrency"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    fail_open = False

    def __init__(
        self,
        store: StateStore,
        route: str,
        config: ConcurrencyConfig,
        tool_caps: Mapping[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._route = part(route)
        self._config = config
        self._tool_caps = dict(tool_caps)
        self._clock = clock

    def _slots(self, call: Call) -> list[tuple[str, int]]:
        ctx = call.ctx
        wanted: list[tuple[str, int]] = []
        entry = tool_entry(self._tool_caps, ctx.upstream, ctx.target)
        cap = self._tool_caps[entry] if entry is not None else self._config.per_tool
        if cap:
            wanted.append((f"cc:{self._route}:tool={part(ctx.upstream)}/{part(ctx.target)}", cap))
        if self._config.per_subject:
            wanted.append(
                (f"cc:{self._route}:s={part(ctx.principal.subject)}", self._config.per_subject)
            )
        return wanted

    async def _try(self, slots: list[tuple[str, int]], holder: str) -> list[str] | None:
        taken: list[str] = []
        ttl = self._config.slot_ttl_seconds
        for key, cap in slots:
            if not await self._store.slot_acquire(key, holder, cap, ttl):
                for k in taken:
                    await self._store.slot_release(k, holder)
                return None
            taken.append(key)
        return taken

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        ConcurrencyLimited: no slot came free within ``queue_seconds``.
        StateStoreUnavailable: the store failed (deny).
        """
        slots = self._slots(call)
        if not slots:
            return message
        holder = call.ctx.decision_id
        deadline = self._clock() + self._config.queue_seconds
        while True:
            taken = await self._try(slots, holder)
            if taken is not None:
                call.state[self.name] = taken
                return message
            left = deadline - self._clock()
            if left <= 0:
                raise ConcurrencyLimited(
                    f"no free slot for {call.ctx.target} / {call.ctx.principal.subject}",
                    retry_after=1.0,
                )
            await asyncio.sleep(min(_POLL_SECONDS, left))

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        """Give the slots back."""
        for key in call.state.pop(self.name, ()):
            await self._store.slot_release(key, call.ctx.decision_id)
