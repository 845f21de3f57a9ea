"""URI templates (RFC 6570, levels 1-3) matched against concrete resource URIs.

A federated route routes ``resources/read`` for a URI that no member lists to the member
whose resource template matches it. Matching must be exact: a template matches a URI
only if some values of its variables expand to exactly that URI. Variables are matched
the way MCP servers' SDKs match them (a simple ``{var}`` never spans a ``/``), so
``users://{id}/profile`` matches ``users://7/profile`` but not ``users://7/profile/x``.

Operators: ``{var}`` (simple), ``{+var}`` (reserved: may span ``/``), ``{#var}``
(fragment), ``{.var}`` (label), ``{/var}`` (path segment), ``{;var}`` (path parameter),
``{?var}`` and ``{&var}`` (form-style query). Several variables in one expression
(``{x,y}``) are separated as RFC 6570 separates them. The level-4 modifiers ``:N`` and
``*`` are tolerated (a prefix is still a value; an exploded list spans its separator).

Templates whose matching would be ambiguous or slow are refused: two expressions with no
literal between them (``{a}{b}``), or more than one expression whose value may span
delimiters (reserved, fragment or exploded). URIs longer than :data:`MAX_URI` match
nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["MAX_URI", "InvalidTemplate", "UriTemplate"]

_VARNAME = re.compile(r"^(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2})(?:\.?(?:[A-Za-z0-9_]|%[0-9A-Fa-f]{2}))*$")
_MODIFIER = re.compile(r"^(.*?)(\*|:[1-9][0-9]{0,3})?$")
#: What one value may contain, by operator: never the operator's own separator, and
#: never a character that simple expansion would have percent-encoded as a delimiter.
_VALUE = {
    "": r"[^/?#,]+",
    "+": r"[^,]+",
    "#": r"[^,]+",
    ".": r"[^/?#.,]+",
    "/": r"[^/?#,]+",
    ";": r"[^/?#;,]*",
    "?": r"[^&#,]*",
    "&": r"[^&#,]*",
}
#: Exploded lists may span the separator of their operator.
_EXPLODED = {
    "": r"[^/?#]+",
    "+": r".+",
    "#": r".+",
    ".": r"[^/?#]+",
    "/": r"[^?#]+",
    ";": r"[^/?#]*",
    "?": r"[^#]*",
    "&": r"[^#]*",
}
_RESERVED_OPERATORS = frozenset("=,!@|")
#: Longest URI matched against templates.
MAX_URI = 8192
_MAX_TEMPLATE = 2048


class InvalidTemplate(ValueError):
    """The template is not RFC 6570 (unbalanced braces, bad variable, reserved operator)."""


@dataclass(frozen=True, slots=True)
class _Var:
    name: str
    exploded: bool


def _parse_vars(body: str) -> list[_Var]:
    out: list[_Var] = []
    for spec in body.split(","):
        found = _MODIFIER.match(spec)
        name, modifier = (found[1], found[2]) if found else (spec, None)
        if not _VARNAME.match(name):
            raise InvalidTemplate(f"bad variable {spec!r}")
        out.append(_Var(name, modifier == "*"))
    return out


def _expression(op: str, variables: list[_Var]) -> str:
    """The regex for one ``{…}`` expression."""
    values = [_EXPLODED[op] if v.exploded else _VALUE[op] for v in variables]
    if op in ("", "+"):
        return ",".join(f"(?:{v})" for v in values)
    if op == "#":
        return "#" + ",".join(f"(?:{v})" for v in values)
    if op in (".", "/"):
        sep = re.escape(op)
        return "".join(f"{sep}(?:{v})" for v in values)
    if op == ";":
        return "".join(
            f";{re.escape(var.name)}(?:=(?:{v}))?" for var, v in zip(variables, values, strict=True)
        )
    # Form-style query: undefined variables are omitted, so every pair is optional, in order.
    names = [re.escape(var.name) for var in variables]
    pairs = [f"{n}=(?:{v})" for n, v in zip(names, values, strict=True)]
    if op == "&":
        return "".join(f"(?:&{p})?" for p in pairs)
    # "?": the first pair present starts with "?", the following with "&".
    alternatives = []
    for i in range(len(pairs)):
        rest = "".join(f"(?:&{p})?" for p in pairs[i + 1 :])
        alternatives.append(f"\\?{pairs[i]}{rest}")
    return f"(?:{'|'.join(alternatives)})?"


def _compile(template: str) -> re.Pattern[str]:
    if len(template) > _MAX_TEMPLATE:
        raise InvalidTemplate("template too long")
    parts: list[str] = []
    pos = 0
    spanning = 0
    previous_end = -1
    while pos < len(template):
        start = template.find("{", pos)
        close = template.find("}", pos)
        if start < 0:
            if close >= 0:
                raise InvalidTemplate("unbalanced '}'")
            parts.append(re.escape(template[pos:]))
            break
        if 0 <= close < start:
            raise InvalidTemplate("unbalanced '}'")
        end = template.find("}", start)
        if end < 0:
            raise InvalidTemplate("unclosed '{'")
        parts.append(re.escape(template[pos:start]))
        body = template[start + 1 : end]
        if "{" in body or not body:
            raise InvalidTemplate("empty or nested expression")
        op = body[0] if body[0] in _VALUE or body[0] in _RESERVED_OPERATORS else ""
        if op in _RESERVED_OPERATORS:
            raise InvalidTemplate(f"reserved operator {op!r}")
        variables = _parse_vars(body[len(op) :])
        if op in ("", "+") and previous_end == start:
            # "{a}{b}": where one value ends is anyone's guess (and a backtracking trap).
            raise InvalidTemplate("adjacent expressions are ambiguous")
        spanning += (op in ("+", "#")) + sum(v.exploded for v in variables)
        if spanning > 1:
            # Two values that may span delimiters make matching polynomial in the URI's
            # length: a member could slow every lookup down. MCP servers use one.
            raise InvalidTemplate("more than one reserved or exploded expression")
        parts.append(_expression(op, variables))
        pos = previous_end = end + 1
    return re.compile("".join(parts), re.DOTALL)


class UriTemplate:
    """A compiled RFC 6570 template; see the module docstring.

    Raises:
        InvalidTemplate: the template cannot be parsed (at construction).
    """

    __slots__ = ("_pattern", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self._pattern = _compile(template)

    @property
    def literal(self) -> bool:
        """A template without expressions names one URI."""
        return "{" not in self.template

    def matches(self, uri: str) -> bool:
        """Whether some expansion of this template is exactly ``uri`` (URIs longer than
        ``MAX_URI`` characters match no template)."""
        return len(uri) <= MAX_URI and self._pattern.fullmatch(uri) is not None

    def __repr__(self) -> str:
        return f"UriTemplate({self.template!r})"
