"""Circuit breakers per tool and per upstream, shared by every replica through the store.

Closed: every ``tools/call`` that reached the upstream is counted in a sliding window
of counters in the store (calls, failures, calls slower than ``p99_seconds``: constant
work per call, however busy the tool). Once the window holds ``min_calls`` calls and the
error rate or the p99 latency is over its threshold, the breaker opens: its state document says
"open until T" for every replica, callers get :class:`ToolDisabled` (503,
``Retry-After``), and a page is sent. After T it is half-open: up to
``half_open_calls`` trial calls pass (slots in the store); a trial that succeeds in time
closes it (and pages "resolve"), one that fails opens it again. Operators open and
close breakers by hand (``wardgate breaker``); a breaker opened by hand stays open until
closed by hand.

Each closing starts a new generation: a fresh window, and a fresh latch, so that
of several replicas that see the same window go bad, exactly one opens the breaker and
pages (``add_once`` on the latch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from wardgate.config.limits import BreakerConfig
from wardgate.core.call import Call, Outcome
from wardgate.limits.fallback import part
from wardgate.limits.limit_events import BreakerChanged, LimitsObserver
from wardgate.limits.pager import Pager
from wardgate.limits.refusals import ToolDisabled
from wardgate.state.store import StateStore
from wardgate.telemetry.events import EventBus
from wardgate.wire.jsonrpc import Message

__all__ = ["BreakerGuard", "breaker_key", "set_breaker"]

#: Latches and trial slots outlive any open period by far; they are per generation.
_LATCH_SECONDS = 86_400.0


def breaker_key(upstream: str | None, tool: str | None = None) -> str:
    """The breaker of a tool (``tool`` given) or of a whole upstream."""
    if tool is None:
        return f"bk:up={part(upstream)}"
    return f"bk:tool={part(upstream)}/{part(tool)}"


def _failed(outcome: Outcome) -> bool:
    if outcome.status in ("upstream_error", "timeout"):
        return True
    return outcome.status == "error" and (outcome.code or "").startswith("jsonrpc:")


def _counts(outcome: Outcome) -> bool:
    """Whether the call tells anything about the upstream's health."""
    return outcome.status in ("ok", "error", "upstream_error", "timeout")


async def set_breaker(
    store: StateStore,
    key: str,
    state: Literal["open", "closed"],
    *,
    reason: str,
    by: str,
    until: float | None = None,
) -> dict[str, Any]:
    """Open (until ``until``; ``None``: until closed) or close a breaker; returns its document.

    Raises:
        StateStoreUnavailable: the store failed.
    """
    doc = await store.doc_get(key + ":state") or {"state": "closed", "gen": 0}
    gen = int(doc.get("gen", 0))
    if state == "open":
        new = {"state": "open", "gen": gen, "until": until, "by": by, "reason": reason}
    else:
        new = {"state": "closed", "gen": gen + 1, "by": by, "reason": reason}
    await store.doc_put(key + ":state", new, None)
    return new


@dataclass(slots=True)
class _Held:
    key: str
    gen: int
    trial: bool
    upstream: str | None
    tool: str | None


class BreakerGuard:
    """See the module docstring."""

    name = "breaker"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    fail_open = False

    def __init__(
        self,
        store: StateStore,
        config: BreakerConfig,
        pager: Pager,
        events: EventBus,
        *,
        wall_clock: Callable[[], float] = time.time,
        observer: LimitsObserver | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._pager = pager
        self._events = events
        self._wall = wall_clock
        self._observer = observer

    def _keys(self, call: Call) -> list[tuple[str, str | None]]:
        """The breakers of the call: (key, tool or ``None`` for the upstream's own)."""
        ctx = call.ctx
        keys: list[tuple[str, str | None]] = []
        if "tool" in self._config.per:
            keys.append((breaker_key(ctx.upstream, ctx.target), ctx.target))
        if "upstream" in self._config.per:
            keys.append((breaker_key(ctx.upstream), None))
        return keys

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises:
        ToolDisabled: a breaker of this tool or its upstream is open.
        StateStoreUnavailable: the store failed (deny).
        """
        held: list[_Held] = []
        call.state[self.name] = held
        upstream = call.ctx.upstream
        observer = self._observer
        for key, tool in self._keys(call):
            doc = await self._store.doc_get(key + ":state")
            if doc is None or doc.get("state") != "open":
                held.append(_Held(key, int(doc.get("gen", 0)) if doc else 0, False, upstream, tool))
                if observer is not None:
                    observer.breaker_state(upstream, tool, "closed", None)
                continue
            gen = int(doc.get("gen", 0))
            until = doc.get("until")
            now = self._wall()
            if until is None or now < float(until):
                if observer is not None:
                    observer.breaker_state(
                        upstream, tool, "open", None if until is None else float(until)
                    )
                retry = None if until is None else float(until) - now
                raise ToolDisabled(f"breaker {key} open ({doc.get('reason')})", retry_after=retry)
            if observer is not None:
                observer.breaker_state(upstream, tool, "half_open", None)
            # A trial slot of a replica that died comes back after one open period.
            trial = await self._store.slot_acquire(
                f"{key}:trial:{gen}",
                call.ctx.decision_id,
                self._config.half_open_calls,
                self._config.open_seconds,
            )
            if not trial:
                raise ToolDisabled(f"breaker {key} half-open, trials busy", retry_after=1.0)
            held.append(_Held(key, gen, True, upstream, tool))
        return message

    async def on_end(self, call: Call, outcome: Outcome) -> None:
        """Add the sample; open, close or reopen the breaker when the window says so."""
        held: list[_Held] = call.state.pop(self.name, [])
        c = self._config
        bad = _failed(outcome) or outcome.latency_s > c.p99_seconds
        for h in held:
            if h.trial:
                await self._store.slot_release(f"{h.key}:trial:{h.gen}", call.ctx.decision_id)
                if not _counts(outcome):
                    continue
                if bad:
                    await self._reopen(call, h, outcome)
                elif await self._store.add_once(f"{h.key}:close:{h.gen}", _LATCH_SECONDS):
                    await set_breaker(
                        self._store, h.key, "closed", reason="trial call ok", by="auto"
                    )
                    self._changed(call, h, "closed", None, "trial call succeeded")
                    self._pager.page("resolve", h.key, f"{h.key} closed", {})
                continue
            if not _counts(outcome):
                continue
            failed = _failed(outcome)
            window = await self._store.window_add(
                f"{h.key}:window:{h.gen}",
                {"n": 1, "e": int(failed), "s": int(outcome.latency_s > c.p99_seconds)},
                c.window_seconds,
                c.slices,
            )
            reason = self._verdict(window)
            if reason is not None and await self._store.add_once(
                f"{h.key}:open:{h.gen}", _LATCH_SECONDS
            ):
                until = self._wall() + c.open_seconds
                await set_breaker(self._store, h.key, "open", reason=reason, by="auto", until=until)
                self._changed(call, h, "open", until, reason)
                self._pager.page("trigger", h.key, f"{h.key} opened: {reason}", {"reason": reason})

    def _verdict(self, window: dict[str, int]) -> str | None:
        """Why the window says open, or ``None``.

        The p99 latency is over the threshold exactly when more than the fastest
        ``ceil(0.99 n) - 1`` calls were slower than it, so the window only counts
        calls (``n``), failures (``e``) and calls over the threshold (``s``).
        """
        c = self._config
        n, errors, slow = window.get("n", 0), window.get("e", 0), window.get("s", 0)
        if n < c.min_calls:
            return None
        if errors / n > c.error_rate:
            return f"error rate {errors / n:.0%} over {n} calls"
        if slow >= n - math.ceil(0.99 * n) + 1:
            return f"p99 latency over {c.p99_seconds}s ({slow} of {n} calls)"
        return None

    async def _reopen(self, call: Call, h: _Held, outcome: Outcome) -> None:
        doc = await self._store.doc_get(h.key + ":state")
        if doc is None or doc.get("state") != "open" or int(doc.get("gen", 0)) != h.gen:
            return
        until = doc.get("until")
        if until is not None and self._wall() < float(until):
            return  # another trial reopened it already
        reason = f"trial call failed ({outcome.status})"
        until = self._wall() + self._config.open_seconds
        await set_breaker(self._store, h.key, "open", reason=reason, by="auto", until=until)
        self._changed(call, h, "open", until, reason)

    def _changed(
        self,
        call: Call,
        h: _Held,
        state: Literal["open", "closed"],
        until: float | None,
        reason: str,
    ) -> None:
        self._events.emit(
            BreakerChanged(call.ctx.decision_id, call.ctx.route, h.key, state, "auto", reason)
        )
        if self._observer is not None:
            self._observer.breaker_state(h.upstream, h.tool, state, until)
