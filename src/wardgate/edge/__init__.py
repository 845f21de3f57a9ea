"""The edge: the one place that speaks ASGI (or stdio) and parses each message once."""

from __future__ import annotations

from wardgate.edge.app import EdgeApp

__all__ = ["EdgeApp"]
