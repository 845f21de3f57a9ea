"""Tool integrity: fingerprints of what an upstream lists, and a poisoning scan of it.

A fingerprint covers everything that can change what a model does with a tool, prompt,
resource or the server's instructions: name, title, description, schemas, annotations and
``_meta`` (UI resources live there). A second hash leaves the name out, so a tool that
comes back under a new name with the same body is recognised as a rename.

The poisoning scan reads descriptions (the tool's, its parameters', a prompt's, the
server instructions) for hidden instructions, invisible characters, references to other
servers' tools (shadowing), exfiltration phrasing and oversize text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from wardgate.content.injection import score_text
from wardgate.content.unicode import find_tells

__all__ = [
    "LISTS",
    "Descriptor",
    "Kind",
    "ScanFinding",
    "ScanLimits",
    "descriptors",
    "scan_descriptor",
]

Kind = Literal["tool", "prompt", "resource", "resource_template", "instructions"]

#: Result key of each list method, the kind of its items and the field naming them.
LISTS: dict[str, tuple[str, Kind, str]] = {
    "tools/list": ("tools", "tool", "name"),
    "prompts/list": ("prompts", "prompt", "name"),
    "resources/list": ("resources", "resource", "uri"),
    "resources/templates/list": ("resourceTemplates", "resource_template", "uriTemplate"),
}
_FIELDS = (
    "name", "title", "description", "inputSchema", "outputSchema", "annotations", "_meta",
    "arguments", "uri", "uriTemplate", "mimeType", "icons", "instructions",
)  # fmt: skip


def _digest(value: Any) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One listed item, fingerprinted."""

    kind: Kind
    name: str
    body: dict[str, Any]
    fingerprint: str
    body_hash: str

    @classmethod
    def of(cls, kind: Kind, name: str, item: dict[str, Any]) -> Descriptor:
        body = {k: item[k] for k in _FIELDS if k in item}
        nameless = {k: v for k, v in body.items() if k not in ("name", "uri", "uriTemplate")}
        return cls(kind, name, body, _digest(body), _digest(nameless))


def descriptors(method: str, result: dict[str, Any]) -> Iterator[Descriptor]:
    """The descriptors in a list result (items without a name are skipped)."""
    key, kind, name_field = LISTS[method]
    for item in result.get(key) or ():
        if isinstance(item, dict) and isinstance(item.get(name_field), str):
            yield Descriptor.of(kind, item[name_field], item)


@dataclass(frozen=True, slots=True)
class ScanLimits:
    max_description: int = 2048
    max_parameter_description: int = 1024
    #: Score from :func:`~wardgate.content.injection.score_text` that counts as a finding.
    threshold: float = 0.4


@dataclass(frozen=True, slots=True)
class ScanFinding:
    """One finding: what (a stable name) and where (a field path), never the text."""

    what: str
    where: str


def _texts(body: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(where, text, is a parameter's) for every description-like text in a descriptor."""
    for key in ("name", "title", "description", "instructions"):
        if isinstance(body.get(key), str):
            yield key, body[key], False
    schema = body.get("inputSchema")
    props = schema.get("properties") if isinstance(schema, dict) else None
    if isinstance(props, dict):
        for pname, prop in props.items():
            yield f"inputSchema/{pname}", str(pname), True
            if isinstance(prop, dict):
                for key in ("description", "title", "default"):
                    if isinstance(prop.get(key), str):
                        yield f"inputSchema/{pname}/{key}", prop[key], True
    for i, arg in enumerate(body.get("arguments") or ()):
        if isinstance(arg, dict) and isinstance(arg.get("description"), str):
            yield f"arguments/{i}/description", arg["description"], True


def scan_descriptor(
    descriptor: Descriptor,
    *,
    other_tools: Iterable[str] = (),
    limits: ScanLimits = ScanLimits(),
) -> list[ScanFinding]:
    """Findings for one descriptor (empty: nothing suspicious).

    ``other_tools`` names the tools of the route's other upstreams: a description that
    mentions one of them is trying to steer how the model uses another server.
    """
    found: list[ScanFinding] = []
    others = [t for t in other_tools if len(t) >= 4 and t != descriptor.name]
    shadow = (
        re.compile(r"\b(?:" + "|".join(re.escape(t) for t in others) + r")\b") if others else None
    )
    for where, text, param in _texts(descriptor.body):
        cap = limits.max_parameter_description if param else limits.max_description
        if len(text) > cap:
            found.append(ScanFinding("oversize", where))
        for tell in sorted(find_tells(text, identifier=where in ("name", "title"))):
            found.append(ScanFinding(f"unicode:{tell}", where))
        score = score_text(text, plain=False)
        if score.value >= limits.threshold:
            found.extend(ScanFinding(f"injection:{s}", where) for s in sorted(score.signals))
        if shadow is not None and shadow.search(text):
            found.append(ScanFinding("shadowing", where))
    return found
