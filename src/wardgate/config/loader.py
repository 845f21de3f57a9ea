"""Read the TOML file and turn every fault into a :class:`ConfigError` naming file and line."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from wardgate.config._base import ConfigFault
from wardgate.config.model import GatewayConfig
from wardgate.errors import ConfigError

__all__ = ["load_config", "locate", "parse_config"]

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=""")


def _split_dotted(text: str) -> list[str]:
    parts = re.findall(r"""("[^"]*"|'[^']*'|[^.\s]+)""", text)
    return [p.strip("\"'") for p in parts]


def locate(source: str, path: Sequence[str | int]) -> int | None:
    """The 1-based line where the deepest existing key of ``path`` is written."""
    keys = [str(p) for p in path if isinstance(p, str)]
    best: tuple[int, int] | None = None  # (matched depth, line)
    table: list[str] = []
    for number, line in enumerate(source.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            table = _split_dotted(header.group(1))
            depth = _common(table, keys)
            if depth == len(table) and (best is None or depth > best[0]):
                best = (depth, number)
            continue
        key = _KEY.match(line)
        if key:
            full = table + _split_dotted(key.group(1))
            depth = _common(full, keys)
            if depth == len(full) and (best is None or depth > best[0]):
                best = (depth, number)
    return None if best is None else best[1]


def _common(a: Sequence[str], b: Sequence[str]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def parse_config(source: str, filename: str = "<config>") -> GatewayConfig:
    """Validate TOML text.

    Raises:
        ConfigError: the text is not TOML or does not fit the schema; the message
            names the file, line and key of every fault.
    """
    try:
        data: dict[str, Any] = tomllib.loads(source)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{filename}: not valid TOML: {exc}") from None
    try:
        return GatewayConfig.model_validate(data)
    except ConfigFault as fault:
        line = _line(source, filename, fault.loc, fault.message)
        raise ConfigError(f"invalid configuration\n  {line}") from None
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            loc = [p for p in error["loc"] if not (isinstance(p, str) and p in _UNION_TAGS)]
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = "unknown key"
            lines.append(_line(source, filename, loc, message))
        raise ConfigError("invalid configuration\n  " + "\n  ".join(lines)) from None


def _line(source: str, filename: str, loc: Sequence[str | int], message: str) -> str:
    key = ".".join(str(p) for p in loc) or "(top level)"
    where = locate(source, loc)
    at = f"{filename}:{where}" if where else filename
    return f"{at}: {key}: {message}"


_UNION_TAGS = frozenset({"stdio", "http", "sse", "function-after[_check_url(), str]"})


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a config file.

    Raises:
        ConfigError: the file cannot be read or is invalid.
    """
    file = Path(path)
    try:
        source = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text") from None
    return parse_config(source, str(file))
