"""The content guards, written against the pipeline's phases (:mod:`wardgate.core.pipeline`).

Composed in this order (request phase first to last, reply phase last to first)::

    [..., authorize, RedactGuard, OutputGuard, IntegrityGuard, ValidateGuard, limits, ...]

so that a call to a held tool is refused before its arguments are checked, and on the way
back lists are checked and filtered first, results then genericised, stripped and capped,
and redaction runs last on whatever reaches the client (tool error text let through
included). :func:`content_guards` builds the four from :class:`ContentSettings`.
"""

from __future__ import annotations

import logging
from typing import Any

from wardgate.content.generic_errors import ToolHeld
from wardgate.content.guard_settings import ContentSettings, ToolCatalog
from wardgate.content.integrity import LISTS, Descriptor, descriptors, scan_descriptor
from wardgate.content.output import (
    cap_result,
    generic_error,
    guard_tool_error,
    screen_injection,
    strip_controls,
)
from wardgate.content.pins import MemoryPinStore, PinBook, PinStore
from wardgate.content.redactor import Redactor
from wardgate.content.schema import SchemaCache
from wardgate.content.validation import InputValidator
from wardgate.core.call import Call
from wardgate.telemetry.events import GuardDecision
from wardgate.wire.jsonrpc import Message

__all__ = ["IntegrityGuard", "OutputGuard", "RedactGuard", "ValidateGuard", "content_guards"]

log = logging.getLogger("wardgate.content.guards")

_CALLS = frozenset({"tools/call", "prompts/get", "resources/read"})
_KIND_OF_CALL = {"tools/call": "tool", "prompts/get": "prompt", "resources/read": "resource"}


def _target(call: Call, message: Message) -> str | None:
    """The name as the client sees it (prefixed on a federated route), as lists show it."""
    return message.target_name or call.ctx.target


def _withheld(call: Call, guard: str, target: str, reason: str) -> None:
    """Tell the event sinks that part of a list was withheld (a refusal, not a call's)."""
    ctx = call.ctx
    call.pipeline.events.emit(
        GuardDecision(
            ctx.decision_id, ctx.route, guard, call.method, target, ctx.principal.subject,
            False, ToolHeld.code, reason,
        )
    )  # fmt: skip


class RedactGuard:
    """Replaces secrets in every message of a reply: results, errors, notifications and
    server-to-client requests (sampling, elicitation) alike."""

    name = "redact"
    methods: frozenset[str] | None = None
    fail_open = False

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor

    async def on_message(self, call: Call, message: Message) -> Message | None:
        raw = self.redactor.redact_json(message.raw)
        return message if raw is message.raw else Message(raw, message.kind)


class OutputGuard:
    """Generic upstream errors, tool errors that leak internals, control characters,
    flood caps and injected instructions, on the final response of tools, prompts and
    resource reads."""

    name = "output"
    methods: frozenset[str] | None = _CALLS
    fail_open = False

    def __init__(self, settings: ContentSettings) -> None:
        self.settings = settings

    async def on_message(self, call: Call, message: Message) -> Message | None:
        """Raises: ResultRefused: over the flood caps with ``action = "refuse"``."""
        if message.kind != "response":
            return message
        raw = message.raw
        if "error" in raw:
            data = raw["error"].get("data") if isinstance(raw["error"], dict) else None
            ours = isinstance(data, dict) and str(data.get("code", "")).startswith("wardgate.")
            if ours:
                return message
            error = generic_error(raw["error"], call.ctx.decision_id, where=call.method or "")
            return Message({**raw, "error": error}, "response")
        result = raw.get("result")
        if not isinstance(result, dict):
            return message
        tool = call.ctx.target or call.request.target_name
        policy = self.settings.output_for(tool)
        out = guard_tool_error(
            result, call.ctx.decision_id, tool=tool, allow_text=policy.allow_error_text
        )
        if policy.strip_controls:
            out = strip_controls(out)
        out = cap_result(out, policy.caps)
        out = screen_injection(
            out,
            call.ctx.decision_id,
            threshold=policy.injection_threshold,
            action=policy.injection_action,
        )
        return message if out is result else Message({**raw, "result": out}, "response")


class ValidateGuard:
    """Checks tool arguments (limits, closed schema, tells, injection); learns each tool's
    schema from ``tools/list`` and holds back tools whose schema does not compile."""

    name = "validate"
    methods: frozenset[str] | None = frozenset({"tools/call"})
    response_methods: frozenset[str] | None = frozenset({"tools/list"})
    fail_open = False

    def __init__(
        self, settings: ContentSettings, catalog: ToolCatalog, validator: InputValidator
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.validator = validator

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises: ArgumentsInvalid, ArgumentsTooLarge, SuspiciousContent, ToolHeld."""
        tool = _target(call, message) or ""
        entry = self.catalog.get(call.ctx.route, tool)
        if entry is not None and entry.held:
            raise ToolHeld(f"tool {tool!r} is held: {entry.held}")
        if entry is None and self.settings.unlisted == "deny":
            raise ToolHeld(f"tool {tool!r} was not listed on this route")
        arguments = message.params.get("arguments", {})
        schema = entry.schema if entry is not None else None
        findings = self.validator.check(tool, schema, arguments, self.settings.input_for(tool))
        if findings:
            call.state[self.name] = findings
        return message

    async def on_message(self, call: Call, message: Message) -> Message | None:
        result = message.raw.get("result")
        if message.kind != "response" or not isinstance(result, dict):
            return message
        tools = result.get("tools")
        if not isinstance(tools, list):
            return message
        kept = []
        for item in tools:
            name = item.get("name") if isinstance(item, dict) else None
            if not isinstance(name, str):
                continue
            identity = self.settings.identity(call.ctx.upstream, call.ctx.route)
            entry = self.catalog.entry(call.ctx.route, name, identity)
            try:
                entry.schema = self.validator.schemas.compile(
                    name, item.get("inputSchema"), closed=self.settings.input_for(name).closed
                )
            except ToolHeld:
                entry.held, entry.schema = "schema", None
                _withheld(call, self.name, name, "input schema does not compile")
                continue
            if entry.held == "schema":
                entry.held = None  # a new version compiles; integrity decides next
            kept.append(item)
        if len(kept) == len(tools):
            return message
        return Message({**message.raw, "result": {**result, "tools": kept}}, "response")


class IntegrityGuard:
    """Pins what upstreams list (tools, prompts, resources, server instructions) and
    withholds what changed, was renamed, is new under a ``hold`` policy or fails the
    poisoning scan; refuses calls to anything withheld until an operator approves."""

    name = "integrity"
    methods: frozenset[str] | None = _CALLS
    response_methods: frozenset[str] | None = frozenset({*LISTS, "initialize"})
    fail_open = False

    def __init__(self, settings: ContentSettings, catalog: ToolCatalog, book: PinBook) -> None:
        self.settings = settings
        self.catalog = catalog
        self.book = book
        # Held prompts and resources by (upstream, kind, name); tools live in the catalog.
        self._held: set[tuple[str, str, str]] = set()

    async def on_request(self, call: Call, message: Message) -> Message:
        """Raises: ToolHeld: the target is withheld. StateStoreUnavailable: pins unreadable."""
        target = _target(call, message)
        method = message.method or ""
        if target is None or method not in _KIND_OF_CALL:
            return message
        kind = _KIND_OF_CALL[method]
        route = call.ctx.route
        if kind == "tool":
            entry = self.catalog.get(route, target)
            if entry is not None:
                if entry.held:
                    raise ToolHeld(f"tool {target!r} is held: {entry.held}")
                return message
        elif (route, kind, target) in self._held:
            raise ToolHeld(f"{kind} {target!r} is held")
        # Not seen listed by this replica: another may have seen it change. A list is
        # pinned under its upstream's identity, or the route's when it merges several.
        for identity in {
            self.settings.identity(call.ctx.upstream, route),
            self.settings.identity(None, route),
        }:
            pin = await self.book.store.get(identity, f"{kind}|{target}")
            if pin is not None and (pin.status != "approved" or pin.pending is not None):
                raise ToolHeld(f"{kind} {target!r} is pending review")
        return message

    async def on_message(self, call: Call, message: Message) -> Message | None:
        """Raises: StateStoreUnavailable: pins unreadable (the list is refused whole)."""
        result = message.raw.get("result")
        if message.kind != "response" or not isinstance(result, dict):
            return message
        method = call.method or ""
        if method == "initialize":
            return await self._instructions(call, message, result)
        if method not in LISTS:
            return message
        key, _, name_field = LISTS[method]
        identity = self.settings.identity(call.ctx.upstream, call.ctx.route)
        held: set[str] = set()
        for d in descriptors(method, result):
            reason = await self._verdict(call, identity, d)
            self._mark(call, identity, d, reason)
            if reason is not None:
                held.add(d.name)
                _withheld(call, self.name, d.name, reason)
        if not held:
            return message
        items = [i for i in result[key] if not (isinstance(i, dict) and i.get(name_field) in held)]
        return Message({**message.raw, "result": {**result, key: items}}, "response")

    async def _verdict(self, call: Call, identity: str, d: Descriptor) -> str | None:
        """Why ``d`` is withheld, or ``None`` to show it."""
        verdict = await self.book.check(identity, d)
        if verdict not in ("pinned", "same"):
            log.warning(
                "%s %s withheld: %s",
                d.kind,
                d.name,
                verdict,
                extra={"decision_id": call.ctx.decision_id, "upstream": identity},
            )
            return f"descriptor {verdict}"
        others = self.catalog.names(except_upstream=identity)
        findings = scan_descriptor(d, other_tools=others, limits=self.settings.scan)
        if not findings:
            return None
        what = sorted({f"{f.what}@{f.where}" for f in findings})
        log.warning(
            "%s %s: poisoning scan findings %s",
            d.kind,
            d.name,
            what,
            extra={"decision_id": call.ctx.decision_id, "upstream": identity},
        )
        return "poisoning scan" if self.settings.scan_action == "hold" else None

    def _mark(self, call: Call, identity: str, d: Descriptor, reason: str | None) -> None:
        route = call.ctx.route
        if d.kind == "tool":
            entry = self.catalog.entry(route, d.name, identity)
            if reason is not None or entry.held != "schema":
                entry.held = reason
        elif reason is None:
            self._held.discard((route, d.kind, d.name))
        else:
            self._held.add((route, d.kind, d.name))

    async def _instructions(
        self, call: Call, message: Message, result: dict[str, Any]
    ) -> Message | None:
        text = result.get("instructions")
        if not isinstance(text, str):
            return message
        identity = self.settings.identity(call.ctx.upstream, call.ctx.route)
        d = Descriptor.of("instructions", "", {"instructions": text})
        reason = await self._verdict(call, identity, d)
        if reason is None:
            return message
        _withheld(call, self.name, "instructions", reason)
        trimmed = {k: v for k, v in result.items() if k != "instructions"}
        return Message({**message.raw, "result": trimmed}, "response")


def content_guards(
    settings: ContentSettings,
    *,
    redactor: Redactor | None = None,
    pins: PinStore | None = None,
    schemas: SchemaCache | None = None,
    catalog: ToolCatalog | None = None,
) -> list[RedactGuard | OutputGuard | IntegrityGuard | ValidateGuard]:
    """The four content guards of one route, in pipeline order, sharing one catalog.

    ``redactor``, ``schemas`` and ``catalog`` may be shared across routes (pass the same
    catalog to every route so the shadowing scan sees every upstream's tools); ``pins``
    is the fleet's pin store (memory when ``None``: one replica only).

    Raises:
        ConfigError: hyperscan or jsonschema-rs are missing or cannot compile.
    """
    catalog = catalog if catalog is not None else ToolCatalog()
    book = PinBook(pins if pins is not None else MemoryPinStore(), on_new=settings.on_new)
    return [
        RedactGuard(redactor if redactor is not None else Redactor()),
        OutputGuard(settings),
        IntegrityGuard(settings, catalog, book),
        ValidateGuard(settings, catalog, InputValidator(schemas)),
    ]
