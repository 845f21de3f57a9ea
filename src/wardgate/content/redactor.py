"""The secret redactor: blocks, streams and JSON values, counted by kind, never logged by value.

A found secret is replaced by ``[REDACTED:kind]``. Overlapping matches of different
kinds are merged into one redaction (the earliest kind names it), so a secret inside
another is never half shown. Text without secrets comes back as the very same object.

:class:`StreamRedactor` keeps a carry-over of at most the longest pattern's
``max_len`` (plus one byte of context for word edges) between chunks: a secret split
across any two chunks is still caught, and memory stays bounded whatever the stream's
length.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from wardgate.content.patterns import BUILTIN_PATTERNS, SecretPattern, window
from wardgate.content.scanner import ScanEngine, make_engine

__all__ = ["Redactor", "StreamRedactor"]

log = logging.getLogger("wardgate.content.redact")

#: (start, end, kind, origin) of one redaction; ``origin`` is where the whole match
#: starts (before the start of the secret when a pattern keeps a key name).
Found = tuple[int, int, str, int]


class Redactor:
    """Finds and replaces secrets; thread-compatible, one per gateway is enough.

    ``counts`` totals the redactions by kind since start (for metrics).

    Raises:
        ConfigError: two patterns share a kind, or the engine cannot compile them.
    """

    def __init__(
        self,
        patterns: Sequence[SecretPattern] = BUILTIN_PATTERNS,
        *,
        engine: Literal["auto", "hyperscan", "re"] = "auto",
    ) -> None:
        from wardgate.errors import ConfigError

        kinds = [p.kind for p in patterns]
        if len(set(kinds)) != len(kinds):
            raise ConfigError("secret pattern kinds must be unique")
        self.patterns = tuple(patterns)
        self.engine: ScanEngine = make_engine(self.patterns, engine)
        self.window = window(self.patterns)
        self.counts: Counter[str] = Counter()
        self._markers = {p.kind: b"[REDACTED:" + p.kind.encode() + b"]" for p in self.patterns}

    # -- finding -----------------------------------------------------------------------

    def find(self, data: bytes) -> list[Found]:
        """The redactions ``data`` needs, sorted and disjoint."""
        raw = self.engine.find(data)
        if not raw:
            return []
        found: list[Found] = []
        patterns = self.patterns
        for start, end, index, match in raw:
            origin = start
            pattern = patterns[index]
            if pattern.check is not None:
                keep = pattern.check(data[start:end])
                if not keep:
                    continue
                end = start + keep
            if pattern.group:
                if match.start(pattern.group) < 0:
                    continue
                start, end = match.span(pattern.group)
            found.append((start, end, pattern.kind, origin))
        return _merge(found)

    # -- replacing ---------------------------------------------------------------------

    def _apply(self, data: bytes, found: Sequence[Found], lo: int, hi: int) -> bytes:
        out = bytearray()
        pos = lo
        for start, end, kind, _ in found:
            out += data[pos:start]
            out += self._markers[kind]
            pos = end
            self.counts[kind] += 1
        out += data[pos:hi]
        if found:
            log.info(
                "redacted %d secret(s)",
                len(found),
                extra={"redacted": dict(Counter(f[2] for f in found))},
            )
        return bytes(out)

    def redact_bytes(self, data: bytes) -> bytes:
        """``data`` with every secret replaced (the same object when there is none)."""
        found = self.find(data)
        if not found:
            return data
        return self._apply(data, found, 0, len(data))

    def redact_str(self, text: str) -> str:
        """Like :meth:`redact_bytes`, on text (patterns are ASCII-edged, so UTF-8 is safe)."""
        data = text.encode("utf-8", "surrogatepass")
        found = self.find(data)
        if not found:
            return text
        return self._apply(data, found, 0, len(data)).decode("utf-8", "surrogatepass")

    def redact_json(self, value: Any) -> Any:
        """A JSON value with every string (keys included) redacted; unchanged values are
        returned as the same object, so clean messages are never copied.

        One scan of all the strings joined decides whether anything needs a closer look.
        """
        strings: list[str] = []
        _collect(value, strings)
        if not strings or not self.find("\x00".join(strings).encode("utf-8", "surrogatepass")):
            return value
        return _rebuild(value, self.redact_str)

    def stream(self) -> StreamRedactor:
        """A fresh stream redactor sharing this redactor's patterns and engine."""
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts one stream of bytes chunk by chunk (see the module docstring)."""

    def __init__(self, redactor: Redactor) -> None:
        self._r = redactor
        self._carry = b""
        # Leading bytes of the carry already emitted, kept only as context (word edges).
        self._skip = 0

    @property
    def pending(self) -> int:
        """Bytes held back, waiting for the next chunk (never more than the window + 1)."""
        return len(self._carry) - self._skip

    def feed(self, chunk: bytes) -> bytes:
        """Take the next chunk; return what can be released, redacted."""
        buf = self._carry + chunk if self._carry else chunk
        cut = len(buf) - self._r.window
        if cut <= self._skip:
            self._carry = buf
            return b""
        # Matches that began in what was already released were handled then.
        found = [f for f in self._r.find(buf) if f[3] >= self._skip]
        # A match that starts before the cut is complete: it is at most one window long,
        # and a window's worth of bytes after the cut were seen. Release through its end.
        for f in found:
            if f[3] < len(buf) - self._r.window:
                cut = max(cut, f[1])
        # Whatever lies before the new cut lies inside such a complete match's extent
        # (or before it), so it is complete too and ends by the cut.
        taken = [f for f in found if f[0] < cut]
        out = self._r._apply(buf, taken, self._skip, cut)
        self._skip = 1
        self._carry = buf[cut - 1 :]
        return out

    def close(self) -> bytes:
        """End of stream: release the rest, redacted."""
        buf, skip = self._carry, self._skip
        self._carry, self._skip = b"", 0
        if len(buf) <= skip:
            return b""
        found = [f for f in self._r.find(buf) if f[3] >= skip]
        return self._r._apply(buf, found, skip, len(buf))


def _merge(found: list[Found]) -> list[Found]:
    if len(found) < 2:
        return found
    found.sort()
    merged = [found[0]]
    for start, end, kind, origin in found[1:]:
        last_start, last_end, last_kind, last_origin = merged[-1]
        if start < last_end:
            merged[-1] = (last_start, max(end, last_end), last_kind, min(origin, last_origin))
        else:
            merged.append((start, end, kind, origin))
    return merged


def _collect(value: Any, out: list[str]) -> None:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, dict):
            for key, item in node.items():
                out.append(key)
                stack.append(item)
        elif isinstance(node, list):
            stack.extend(node)


def _rebuild(value: Any, fix: Any) -> Any:
    """Copy-on-change rebuild; JSON from the wire is bounded in depth by the edge."""
    if isinstance(value, str):
        return fix(value)
    if isinstance(value, dict):
        changed = False
        out: dict[str, Any] = {}
        for key, item in value.items():
            new_key, new_item = fix(key), _rebuild(item, fix)
            changed = changed or new_key is not key or new_item is not item
            out[new_key] = new_item
        return out if changed else value
    if isinstance(value, list):
        items = [_rebuild(item, fix) for item in value]
        if any(a is not b for a, b in zip(items, value, strict=True)):
            return items
        return value
    return value
