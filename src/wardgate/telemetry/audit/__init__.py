"""The tamper-evident audit trail: see :mod:`.chain` (format) and :mod:`.sink` (writer)."""

from __future__ import annotations

from wardgate.telemetry.audit.chain import (
    ChainFault,
    VerifyReport,
    load_private_key,
    load_public_key,
    verify_lines,
)
from wardgate.telemetry.audit.sink import DEFAULT_KINDS, AuditSink

__all__ = [
    "DEFAULT_KINDS",
    "AuditSink",
    "ChainFault",
    "VerifyReport",
    "load_private_key",
    "load_public_key",
    "verify_lines",
]
