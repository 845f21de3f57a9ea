"""Guards: small objects, each one check on the call path."""

from __future__ import annotations

from wardgate.guards.tool_access import ToolAccessGuard

__all__ = ["ToolAccessGuard"]
