"""Settings of the content guards, per route with per-tool overrides, and the tool catalog.

These are plain frozen values: the config loader maps its ``[content]`` section onto them
(see ``docs/content.md`` for the proposed section). :class:`ToolCatalog` is what the
guards of one route learn from the lists they see: each upstream's tools, their compiled
schemas, and which are held back.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from wardgate.content.integrity import ScanLimits
from wardgate.content.output import FloodCaps, InjectionAction
from wardgate.content.schema import CompiledSchema
from wardgate.content.validation import InputPolicy

__all__ = ["CatalogEntry", "ContentSettings", "OutputPolicy", "ToolCatalog"]


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """What the output guard does with one tool's results."""

    caps: FloodCaps = field(default_factory=FloodCaps)
    #: Let this tool's error text reach the model (after redaction) even when it leaks.
    allow_error_text: bool = False
    strip_controls: bool = True
    #: Indirect prompt injection in text results: off, annotate, redact or quarantine.
    injection_action: InjectionAction = "annotate"
    injection_threshold: float = 0.6


@dataclass(frozen=True, slots=True)
class ContentSettings:
    """One route's content settings.

    ``unlisted``: what input validation does with a call to a tool this route has not
    seen listed (so has no schema for): ``check`` (limits, tells and injection only) or
    ``deny``. ``on_new``: pin policy for descriptors never seen before. ``scan_action``:
    a poisoning finding holds the item back or only flags it (logged).
    """

    input: InputPolicy = field(default_factory=InputPolicy)
    input_tools: Mapping[str, InputPolicy] = field(default_factory=dict)
    output: OutputPolicy = field(default_factory=OutputPolicy)
    output_tools: Mapping[str, OutputPolicy] = field(default_factory=dict)
    unlisted: Literal["check", "deny"] = "check"
    on_new: Literal["allow", "hold", "deny"] = "allow"
    scan_action: Literal["hold", "flag"] = "hold"
    scan: ScanLimits = field(default_factory=ScanLimits)
    #: Upstream member name -> its identity (command line or URL) for pins.
    identities: Mapping[str, str] = field(default_factory=dict)

    def input_for(self, tool: str | None) -> InputPolicy:
        return self.input_tools.get(tool, self.input) if tool is not None else self.input

    def output_for(self, tool: str | None) -> OutputPolicy:
        return self.output_tools.get(tool, self.output) if tool is not None else self.output

    def identity(self, upstream: str | None, route: str) -> str:
        """The pin key of an upstream: its configured identity, else route and name."""
        name = upstream or ""
        return self.identities.get(name) or f"route:{route}/{name}"


@dataclass(slots=True)
class CatalogEntry:
    """What is known about one listed tool."""

    upstream: str  # the identity of the upstream that listed it
    schema: CompiledSchema | None = None
    held: str | None = None  # why it is held back (a stable word), None if usable


class ToolCatalog:
    """Tools by (route, name as the client sees it), learnt from lists; bounded (oldest
    out). One catalog may serve every route of a gateway: the shadowing scan then knows
    the tools of every other upstream.

    Client-visible names are the key because they are what both a list result and a call
    carry on every route (a federated route prefixes them; the call's context holds the
    unprefixed name). A tool dropped by the bound is treated as unlisted, never as usable.
    """

    def __init__(self, *, max_entries: int = 10_000) -> None:
        self._max = max_entries
        self._entries: OrderedDict[tuple[str, str], CatalogEntry] = OrderedDict()

    def get(self, route: str, tool: str) -> CatalogEntry | None:
        return self._entries.get((route, tool))

    def entry(self, route: str, tool: str, upstream: str) -> CatalogEntry:
        """The entry for a tool, created if new (or listed now by another upstream)."""
        key = (route, tool)
        found = self._entries.get(key)
        if found is None or found.upstream != upstream:
            found = self._entries[key] = CatalogEntry(upstream)
            if len(self._entries) > self._max:
                self._entries.popitem(last=False)
        return found

    def names(self, *, except_upstream: str) -> list[str]:
        """Tool names listed by every other upstream (for the shadowing scan)."""
        return [name for (_, name), e in self._entries.items() if e.upstream != except_upstream]
