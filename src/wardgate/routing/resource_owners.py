"""Which member of a federated route serves a resource URI.

Members' ``resources/list`` and ``resources/templates/list`` results say what each one
serves. A URI goes to the one member that lists it; failing that, to the one member
whose template matches it (:mod:`wardgate.routing.templates`). A URI (or identical
template) listed by two members, or matched only by templates of two members, is a
*conflict*: it is logged as an error naming both members and routed to neither, so one
member can never capture another's resources; it is served again once a fresh listing
shows a single owner. A member's listing never makes a resource that another member
lists exactly go elsewhere: an exact listing beats any template.

Lookups of URIs that no member serves are bounded: a miss is remembered for a short
time (a bounded LRU), and re-listing the members to learn new resources happens at most
once per ``learn_interval`` (see :meth:`ResourceOwners.may_learn`).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from wardgate.routing.templates import InvalidTemplate, UriTemplate

__all__ = ["Lookup", "ResourceOwners"]

log = logging.getLogger("wardgate.routing.resources")

#: Most URIs and templates remembered per member (a member listing more is cut, logged).
MAX_URIS_PER_MEMBER = 20_000
MAX_TEMPLATES_PER_MEMBER = 1_000


@dataclass(frozen=True, slots=True)
class Lookup:
    """The members that claim a URI: exactly one is an owner, several a conflict."""

    members: frozenset[int]

    @property
    def owner(self) -> int | None:
        return next(iter(self.members)) if len(self.members) == 1 else None

    @property
    def conflict(self) -> bool:
        return len(self.members) > 1


@dataclass(slots=True)
class _Listing:
    uris: set[str] = field(default_factory=set)
    templates: dict[str, UriTemplate] = field(default_factory=dict)


class ResourceOwners:
    """Resource ownership of one federated route; see the module docstring."""

    def __init__(
        self,
        members: Sequence[str],
        *,
        miss_ttl: float = 30.0,
        miss_cap: int = 1024,
        learn_interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._names = tuple(members)
        self._listings = [_Listing() for _ in members]
        self._misses: OrderedDict[str, float] = OrderedDict()
        self._miss_ttl = miss_ttl
        self._miss_cap = miss_cap
        self._learn_interval = learn_interval
        self._last_learn: float | None = None
        self._reported: set[tuple[str, frozenset[int]]] = set()
        self.clock = clock

    # -- what members list ---------------------------------------------------------------

    def add(self, index: int, uris: Iterable[str] = (), templates: Iterable[str] = ()) -> None:
        """Record resources and templates a member listed (one page of a list)."""
        listing = self._listings[index]
        for uri in uris:
            if len(listing.uris) >= MAX_URIS_PER_MEMBER:
                log.warning(
                    "member %s lists too many resources; the rest are not routed",
                    self._names[index],
                )
                break
            if uri not in listing.uris:
                listing.uris.add(uri)
                self._misses.pop(uri, None)
                self._check_claim(uri, exact=True)
        for text in templates:
            if text in listing.templates:
                continue
            if len(listing.templates) >= MAX_TEMPLATES_PER_MEMBER:
                log.warning(
                    "member %s lists too many templates; the rest are not routed",
                    self._names[index],
                )
                break
            try:
                listing.templates[text] = UriTemplate(text)
            except InvalidTemplate as exc:
                log.warning(
                    "member %s lists an invalid URI template %r: %s", self._names[index], text, exc
                )
                continue
            self._misses.clear()  # a new template may match a remembered miss
            self._check_claim(text, exact=False)

    def replace(self, index: int, uris: Iterable[str], templates: Iterable[str]) -> None:
        """A member's complete listing: what it no longer lists is no longer its."""
        self._listings[index] = _Listing()
        self._reported = {r for r in self._reported if index not in r[1]}
        self.add(index, uris, templates)

    def _check_claim(self, value: str, *, exact: bool) -> None:
        claims = frozenset(
            i
            for i, listing in enumerate(self._listings)
            if (value in listing.uris if exact else value in listing.templates)
        )
        if len(claims) > 1:
            self._report(value, claims, "listed by several members")

    def _report(self, value: str, members: frozenset[int], why: str) -> None:
        key = (value, members)
        if key in self._reported:
            return
        if len(self._reported) < 10_000:
            self._reported.add(key)
        log.error(
            "resource conflict: %r is %s (%s); it is routed to none of them",
            value,
            why,
            ", ".join(self._names[i] for i in sorted(members)),
        )

    # -- lookups ---------------------------------------------------------------------------

    def lookup(self, uri: str) -> Lookup:
        """The members that serve ``uri`` (exact listings first, then templates).

        A URI that is itself a template one member lists (a completion's ``ref/resource``)
        is that member's.
        """
        exact = frozenset(i for i, listing in enumerate(self._listings) if uri in listing.uris)
        if not exact:
            exact = frozenset(
                i for i, listing in enumerate(self._listings) if uri in listing.templates
            )
        if exact:
            if len(exact) > 1:
                self._report(uri, exact, "listed by several members")
            return Lookup(exact)
        matched = frozenset(
            i
            for i, listing in enumerate(self._listings)
            if any(t.matches(uri) for t in listing.templates.values())
        )
        if len(matched) > 1:
            self._report(uri, matched, "matched by templates of several members")
        return Lookup(matched)

    def recently_missed(self, uri: str) -> bool:
        """Whether ``uri`` was looked up in vain within the last ``miss_ttl`` seconds."""
        expires = self._misses.get(uri)
        if expires is None:
            return False
        if expires <= self.clock():
            del self._misses[uri]
            return False
        self._misses.move_to_end(uri)
        return True

    def missed(self, uri: str) -> None:
        """Remember a URI no member serves (the least recently used miss goes first)."""
        self._misses[uri] = self.clock() + self._miss_ttl
        self._misses.move_to_end(uri)
        while len(self._misses) > self._miss_cap:
            self._misses.popitem(last=False)

    @property
    def learn_generation(self) -> float | None:
        """When members were last listed to learn (``None``: never)."""
        return self._last_learn

    def may_learn(self) -> bool:
        """Whether listing every member again is allowed now (once per interval)."""
        last = self._last_learn
        return last is None or self.clock() - last >= self._learn_interval

    def learning(self) -> None:
        """Record that a learn step starts now."""
        self._last_learn = self.clock()
