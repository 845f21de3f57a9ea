"""Multi-pattern scan engines: Hyperscan when installed, one ``re`` alternation when not.

Both find the same matches: for each pattern, the leftmost-first, non-overlapping,
greedy matches that Python's ``finditer`` gives. Hyperscan finds where matches start
(``HS_FLAG_SOM_LEFTMOST``) for all patterns in one pass over the data; a confirm step
then runs the pattern's own Python regex at each such start to get its exact extent.
The fallback runs one combined alternation to find the first place anything matches
(most text has none, and this single pass is all it costs), then each pattern from there.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from wardgate.content.patterns import SecretPattern
from wardgate.errors import ConfigError

__all__ = [
    "HyperscanEngine",
    "ReEngine",
    "ScanEngine",
    "Span",
    "hyperscan_available",
    "make_engine",
]

log = logging.getLogger("wardgate.content.engine")

#: (start, end, pattern index, the match) of one match; the match object lets the
#: redactor read the secret's group without matching again.
Span = tuple[int, int, int, "re.Match[bytes]"]


class ScanEngine(Protocol):
    """Finds every pattern's matches in a block of bytes."""

    name: str

    def find(self, data: bytes) -> list[Span]:
        """Every pattern's matches, sorted by start."""
        ...


class ReEngine:
    """The pure-Python engine: one combined alternation as a prefilter."""

    name = "re"

    def __init__(self, patterns: Sequence[SecretPattern]) -> None:
        self._patterns = tuple(patterns)
        parts = [
            b"(?i:%s)" % p.regex if p.caseless else b"(?:%s)" % p.regex for p in self._patterns
        ]
        self._any = re.compile(b"|".join(parts)) if parts else None

    def find(self, data: bytes) -> list[Span]:
        if self._any is None:
            return []
        first = self._any.search(data)
        if first is None:
            return []
        begin = first.start()
        spans: list[Span] = []
        for index, pattern in enumerate(self._patterns):
            # No pattern matches before ``begin``, so starting there changes nothing.
            spans.extend(
                (m.start(), m.end(), index, m) for m in pattern.compiled.finditer(data, begin)
            )
        spans.sort(key=_order)
        return spans


class HyperscanEngine:
    """One compiled Hyperscan database for every pattern, plus a confirm step.

    Raises:
        ConfigError: hyperscan is missing, or a pattern is outside what it compiles.
    """

    name = "hyperscan"

    def __init__(self, patterns: Sequence[SecretPattern]) -> None:
        try:
            import hyperscan
        except ImportError as exc:
            raise ConfigError(
                "the hyperscan engine needs the hyperscan package: pip install 'wardgate[content]'"
            ) from exc
        self._patterns = tuple(patterns)
        self._db: Any = None
        if not self._patterns:
            return
        db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        flags = [
            hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if p.caseless else 0)
            for p in self._patterns
        ]
        try:
            db.compile(
                expressions=[p.scan_regex for p in self._patterns],
                ids=list(range(len(self._patterns))),
                elements=len(self._patterns),
                flags=flags,
            )
        except hyperscan.error as exc:
            raise ConfigError(f"secret patterns do not compile for hyperscan: {exc}") from None
        self._db = db
        self._scratch = hyperscan.Scratch(db)

    def scan_only(self, data: bytes) -> int:
        """The bare Hyperscan pass (no confirm step): how many matches it reports."""
        count = 0

        def on_match(index: int, start: int, end: int, flags: int, ctx: object) -> None:
            nonlocal count
            count += 1

        if self._db is not None and data:
            self._db.scan(data, match_event_handler=on_match, scratch=self._scratch)
        return count

    def find(self, data: bytes) -> list[Span]:
        if self._db is None or not data:
            return []
        starts: set[tuple[int, int]] = set()
        add = starts.add

        def on_match(index: int, start: int, end: int, flags: int, ctx: object) -> None:
            add((start, index))

        self._db.scan(data, match_event_handler=on_match, scratch=self._scratch)
        if not starts:
            return []
        spans: list[Span] = []
        ends = [0] * len(self._patterns)
        patterns = self._patterns
        for start, index in sorted(starts):
            # Mirror finditer: a pattern's next match starts at or after its last end.
            if start < ends[index]:
                continue
            found = patterns[index].compiled.match(data, start)
            if found is None or found.end() == start:
                continue
            ends[index] = found.end()
            spans.append((start, found.end(), index, found))
        return spans


def _order(span: Span) -> tuple[int, int, int]:
    return span[0], span[1], span[2]


def hyperscan_available() -> bool:
    """Whether the ``hyperscan`` package imports on this machine."""
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


def make_engine(
    patterns: Sequence[SecretPattern], prefer: Literal["auto", "hyperscan", "re"] = "auto"
) -> ScanEngine:
    """The engine to use: ``auto`` takes Hyperscan when it is installed.

    Raises:
        ConfigError: ``hyperscan`` was asked for and is missing or cannot compile.
    """
    if prefer == "re" or (prefer == "auto" and not hyperscan_available()):
        if prefer == "auto":
            log.info("hyperscan not installed: secret redaction uses the re engine")
        return ReEngine(patterns)
    return HyperscanEngine(patterns)
