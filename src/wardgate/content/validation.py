"""Input validation of a tool call: hard limits, closed schema, Unicode tells, injection score.

One :class:`InputValidator` per route; each check is cheap enough for every call
(about ten microseconds for a typical call, see ``bench/validation.py``). The order is
the cheapest refusal first: limits (one pass that also gathers the strings), then the
schema, then per string the Unicode tells and the injection score.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from wardgate.content.generic_errors import SuspiciousContent, json_pointer
from wardgate.content.injection import score_text
from wardgate.content.schema import CompiledSchema, SchemaCache
from wardgate.content.size_limits import Limits, check_limits
from wardgate.content.unicode import Tell, find_tells

__all__ = ["Finding", "InputPolicy", "InputValidator"]

log = logging.getLogger("wardgate.content.validation")

Action = Literal["deny", "flag"]


@dataclass(frozen=True, slots=True)
class InputPolicy:
    """What to check and what to do about it, per route or per tool.

    ``closed``: close the tool's schema (``False`` opts the tool out). ``deny_tells``:
    Unicode tells that refuse the call; the others are flagged. ``injection_action``:
    ``deny`` refuses a call whose best string scores at or over ``injection_threshold``;
    ``flag`` lets it through and reports it.
    """

    limits: Limits = field(default_factory=Limits)
    closed: bool = True
    deny_tells: frozenset[Tell] = frozenset({"bidi", "invisible", "tag"})
    injection_threshold: float = 0.6
    injection_action: Action = "deny"


@dataclass(frozen=True, slots=True)
class Finding:
    """Something flagged but let through: where, and what (never the text)."""

    path: str
    what: str
    score: float = 0.0


class InputValidator:
    """Checks tool arguments; see the module docstring."""

    def __init__(self, cache: SchemaCache | None = None) -> None:
        self.schemas = cache if cache is not None else SchemaCache()

    def check(
        self,
        tool: str,
        schema: CompiledSchema | dict[str, Any] | None,
        arguments: Any,
        policy: InputPolicy,
    ) -> list[Finding]:
        """Check one call's ``arguments`` against ``schema`` (``None``: not known yet).

        Pass the :class:`CompiledSchema` when the caller kept it (a guard compiles each
        tool's schema when the tool is listed); a raw schema is looked up by its hash.

        Returns:
            What was flagged but not refused.

        Raises:
            ArgumentsTooLarge: a hard limit is exceeded.
            ArgumentsInvalid: the arguments do not fit the closed schema.
            ToolHeld: the schema does not compile.
            SuspiciousContent: a Unicode tell or an injection score that ``policy`` denies.
        """
        strings = check_limits(arguments, policy.limits)
        compiled = schema
        if compiled is not None and not isinstance(compiled, CompiledSchema):
            compiled = self.schemas.compile(tool, compiled, closed=policy.closed)
        if compiled is not None:
            compiled.validate(arguments)
        findings: list[Finding] = []
        for path, text in strings:
            if not text.isascii():
                for tell in find_tells(text, identifier=True):
                    if tell in policy.deny_tells:
                        raise SuspiciousContent(
                            f"tool {tool}: {tell} characters at {json_pointer(path)}"
                        )
                    findings.append(Finding(json_pointer(path), tell))
            plain = compiled is not None and compiled.is_plain(path)
            score = score_text(text, plain=plain)
            if score.value >= policy.injection_threshold:
                signals = ",".join(sorted(score.signals))
                if policy.injection_action == "deny":
                    raise SuspiciousContent(
                        f"tool {tool}: injection score {score.value:.2f} ({signals}) "
                        f"at {json_pointer(path)}"
                    )
                findings.append(Finding(json_pointer(path), f"injection:{signals}", score.value))
        if findings:
            log.warning(
                "tool %s: flagged arguments",
                tool,
                extra={"findings": [(f.path, f.what) for f in findings]},
            )
        return findings
