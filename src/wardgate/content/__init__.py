"""Content guards: secret redaction, input validation, output guards and tool integrity.

The engines live in small modules named after what they hold; :mod:`.guards` wraps them
as pipeline guards. Hyperscan and ``jsonschema-rs`` come with ``wardgate[content]``.
"""

from __future__ import annotations

from wardgate.content.guard_settings import ContentSettings, OutputPolicy
from wardgate.content.guards import (
    IntegrityGuard,
    OutputGuard,
    RedactGuard,
    ValidateGuard,
    content_guards,
)
from wardgate.content.patterns import BUILTIN_PATTERNS, SecretPattern, pattern_from_config
from wardgate.content.pins import MemoryPinStore, PinBook, PinStore, RedisPinStore
from wardgate.content.redactor import Redactor, StreamRedactor
from wardgate.content.validation import InputPolicy

__all__ = [
    "BUILTIN_PATTERNS",
    "ContentSettings",
    "InputPolicy",
    "IntegrityGuard",
    "MemoryPinStore",
    "OutputGuard",
    "OutputPolicy",
    "PinBook",
    "PinStore",
    "RedactGuard",
    "Redactor",
    "RedisPinStore",
    "SecretPattern",
    "StreamRedactor",
    "ValidateGuard",
    "content_guards",
    "pattern_from_config",
]
