"""Content guards: secret redaction, input validation, output guards and tool integrity.

The engines live in small modules named after what they hold; :mod:`.guards` wraps them
as pipeline guards. Hyperscan and ``jsonschema-rs`` come with ``wardgate[content]``.
"""

from __future__ import annotations

from wardgate.content.patterns import BUILTIN_PATTERNS, SecretPattern, pattern_from_config
from wardgate.content.redactor import Redactor, StreamRedactor

__all__ = [
    "BUILTIN_PATTERNS",
    "Redactor",
    "SecretPattern",
    "StreamRedactor",
    "pattern_from_config",
]
