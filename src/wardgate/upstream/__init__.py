"""Upstream MCP servers: how the gateway reaches them and keeps sessions with them."""

from __future__ import annotations

from wardgate.upstream.seam import Event, Reply, Upstream, UpstreamSession

__all__ = ["Event", "Reply", "Upstream", "UpstreamSession"]
