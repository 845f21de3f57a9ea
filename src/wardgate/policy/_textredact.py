"""Redaction inside text content that carries JSON: now applied by the core with every
redact obligation (:func:`wardgate.core.obligations.redact_text_content`); re-exported
here for the policy package's callers."""

from __future__ import annotations

from wardgate.core.obligations import redact_text_content

__all__ = ["redact_text_content"]
