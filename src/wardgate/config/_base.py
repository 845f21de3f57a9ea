"""What every config model shares: strict types, and faults that carry their key path."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from wardgate.errors import ConfigError

__all__ = ["ConfigFault", "StrictModel"]


class ConfigFault(ConfigError):
    """A fault found across keys; ``loc`` is the path of the key to blame.

    Raised from model validators. It is deliberately not a ``ValueError``, so pydantic
    lets it through unchanged and the loader can turn ``loc`` into a line number.
    """

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(f"{'.'.join(str(p) for p in loc)}: {message}")
        self.loc = loc
        self.message = message


def _tuples(value: Any) -> Any:
    """TOML (and JSON) arrays as tuples, all the way down: strict mode wants the type
    the field declares, and every array field here is a tuple."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value


class StrictModel(BaseModel):
    """Config models: unknown keys are errors, values are immutable, types are strict
    (no ``"1"`` for 1, no ``true`` for 1, no ``1.5`` for an integer)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _arrays_as_tuples(cls, data: Any) -> Any:
        return _tuples(data)
