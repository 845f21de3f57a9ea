"""Behaviour detectors: patterns that no single request shows, with state in the shared store.

Each call becomes an :class:`Observation`; :meth:`Ueba.observe` runs the detectors over it
and returns the alerts (each an event for the sinks). State lives in the
:class:`~wardgate.state.store.StateStore` under hashed subject and token keys, so every
replica sees the same history (memory for one process, Redis for many):

* ``impossible_travel``: the subject's last place and time; a move faster than
  ``travel_kmh`` over more than ``travel_min_km`` fires.
* ``token_continents``: continents a token (by hash) was used from; a second continent
  within ``token_seconds`` fires.
* ``scripting``: the subject's recent (time, tool) calls; more than ``scripting_tools``
  distinct tools within ``scripting_seconds`` fires (once per window).
* ``new_asn`` / ``first_seen_tool``: first use of a network / a tool by a subject that
  has history (a brand-new subject teaches, it does not alert).

Times come from the observation (the gateway's injected clock), so a recorded sequence
replays the same way. The read-modify-write of a document is not atomic across
replicas: two replicas racing can each miss the other's last step, never invent one.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from wardgate.config.telemetry import UebaConfig
from wardgate.state.store import StateStore
from wardgate.telemetry.events import GatewayEvent
from wardgate.telemetry.ueba.geo import GeoLookup, distance_km, place_of

__all__ = ["Observation", "Ueba", "UebaAlert"]


@dataclass(slots=True)
class UebaAlert(GatewayEvent):
    """A detector fired; ``detail`` names what it saw (places, counts), no secrets."""

    kind: ClassVar[str] = "ueba.alert"
    detector: str
    subject: str
    tenant: str | None
    client_addr: str | None
    detail: str
    blocked_seconds: float = 0.0
    #: How long the call's session and token are refused after this alert (0: not).
    revoked_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class Observation:
    ts: float
    subject: str
    tenant: str | None
    client_addr: str | None
    token_id: str | None
    tool: str | None
    decision_id: str | None = None
    route: str | None = None


@functools.lru_cache(maxsize=8192)
def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:32]


class Ueba:
    """The detectors of one gateway; see the module docstring."""

    def __init__(
        self,
        config: UebaConfig,
        store: StateStore,
        geo: GeoLookup | None,
        *,
        prefix: str = "ueba:",
    ) -> None:
        self.config = config
        self._store = store
        self._geo = geo
        self._p = prefix
        self._memory = config.memory_days * 86_400
        self.checks: list[Callable[..., Any]] = []

    async def observe(self, obs: Observation) -> list[UebaAlert]:
        """Run every enabled detector on one call.

        Raises:
            StateStoreUnavailable: the store failed (the guard decides what that means).
        """
        c = self.config
        subject = _h(f"{obs.tenant}|{obs.subject}")
        place = self._geo.lookup(obs.client_addr) if self._geo and obs.client_addr else None
        found: list[tuple[str, str]] = []
        if place is not None and c.impossible_travel:
            found.extend(await self._travel(subject, obs, place))
        if place is not None and obs.token_id and c.token_continents:
            found.extend(await self._token(obs, place.continent))
        if obs.tool is not None and c.scripting:
            found.extend(await self._scripting(subject, obs))
        if place is not None and place.asn and c.new_asn:
            found.extend(await self._first(subject, "asn", place.asn, "new_asn"))
        if obs.tool is not None and c.first_seen_tool:
            found.extend(await self._first(subject, "tool", obs.tool, "first_seen_tool"))
        return [
            UebaAlert(
                obs.decision_id,
                obs.route,
                name,
                obs.subject,
                obs.tenant,
                obs.client_addr,
                detail,
                c.block_seconds if name in c.block_on else 0.0,
                c.revoke_seconds if name in c.revoke_on else 0.0,
            )
            for name, detail in found
        ]

    async def _travel(self, subject: str, obs: Observation, place: Any) -> list[tuple[str, str]]:
        key = f"{self._p}loc:{subject}"
        last = await self._store.doc_get(key)
        # Documents hold one string (see _scripting): "<ts> <country>".
        await self._store.doc_put(key, {"v": f"{obs.ts!r} {place.country}"}, self._memory)
        if last is None:
            return []
        ts_text, _, country = str(last.get("v", "")).partition(" ")
        before = place_of(country)
        if before is None or country == place.country:
            return []
        km = distance_km(before, place)
        hours = max(obs.ts - float(ts_text), 1e-3) / 3600
        if km >= self.config.travel_min_km and km / hours > self.config.travel_kmh:
            return [("impossible_travel", f"{before.country}->{place.country} {km:.0f} km "
                     f"in {hours * 60:.1f} min")]  # fmt: skip
        return []

    async def _token(self, obs: Observation, continent: str) -> list[tuple[str, str]]:
        key = f"{self._p}tok:{obs.token_id}"
        doc = await self._store.doc_get(key) or {}
        window = self.config.token_seconds
        # "<continent> <ts>,…": the continents this token was used from, and when.
        seen = (e.split(" ") for e in str(doc.get("v", "")).split(",") if e)
        recent = {k: float(v) for k, v in seen if obs.ts - float(v) <= window}
        others = sorted(k for k in recent if k != continent)
        recent[continent] = obs.ts
        packed = ",".join(f"{k} {v!r}" for k, v in recent.items())
        await self._store.doc_put(key, {"v": packed}, window)
        if others:
            return [("token_continents", f"token used from {continent} and {','.join(others)}")]
        return []

    async def _scripting(self, subject: str, obs: Observation) -> list[tuple[str, str]]:
        key = f"{self._p}rate:{subject}"
        window = self.config.scripting_seconds
        doc: dict[str, Any] = await self._store.doc_get(key) or {}
        # One string, not a list: the store copies documents, and a string copies free.
        # Each entry is "<time> <tool hash>" (hex, so no separator can hide in a name).
        calls = [
            (float(t), n)
            for t, n in (e.split(" ") for e in str(doc.get("c", "")).split(",") if e)
            if obs.ts - float(t) < window
        ]
        calls.append((obs.ts, _h(str(obs.tool))[:12]))
        # Keep it bounded: only the last few calls can matter for the threshold.
        calls = calls[-(self.config.scripting_tools * 4 + 4) :]
        tools = {n for _, n in calls}
        quiet_until = float(doc.get("q", 0))
        fire = len(tools) > self.config.scripting_tools and obs.ts >= quiet_until
        if fire:
            quiet_until = obs.ts + window
        packed = ",".join(f"{t!r} {n}" for t, n in calls)
        await self._store.doc_put(key, {"c": packed, "q": quiet_until}, max(window * 2, 1.0))
        if fire:
            return [("scripting", f"{len(tools)} tools in {obs.ts - calls[0][0]:.3f} s")]
        return []

    async def _first(self, subject: str, what: str, value: str, name: str) -> list[tuple[str, str]]:
        # A subject with no history learns its first value silently.
        known = not await self._store.add_once(f"{self._p}{what}-any:{subject}", self._memory)
        new = await self._store.add_once(f"{self._p}{what}:{subject}:{_h(value)}", self._memory)
        if known and new:
            return [(name, f"first {what} {value[:64]}")]
        return []

    # -- blocking ------------------------------------------------------------------------

    async def block(self, subject: str, tenant: str | None, seconds: float) -> None:
        """Refuse the subject's calls for ``seconds`` (every replica sees it)."""
        await self._store.doc_put(f"{self._p}block:{_h(f'{tenant}|{subject}')}", {"b": 1}, seconds)

    async def blocked(self, subject: str, tenant: str | None) -> bool:
        return await self._store.doc_get(f"{self._p}block:{_h(f'{tenant}|{subject}')}") is not None

    # -- revoking ------------------------------------------------------------------------

    async def revoke(self, session_id: str | None, token_id: str | None, seconds: float) -> None:
        """Refuse a session id and a token (by hash) for ``seconds`` on every replica."""
        if session_id is not None:
            await self._store.doc_put(f"{self._p}rs:{_h(session_id)}", {"r": 1}, seconds)
        if token_id is not None:
            await self._store.doc_put(f"{self._p}rt:{token_id}", {"r": 1}, seconds)

    async def session_revoked(self, session_id: str) -> bool:
        return await self._store.doc_get(f"{self._p}rs:{_h(session_id)}") is not None

    async def token_revoked(self, token_id: str) -> bool:
        return await self._store.doc_get(f"{self._p}rt:{token_id}") is not None
