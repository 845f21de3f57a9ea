"""SIEM forwarding: formats, transports, and the spooling forwarder."""

from __future__ import annotations

from wardgate.telemetry.siem.build import build_forwarder
from wardgate.telemetry.siem.forwarder import Forwarder, Transport

__all__ = ["Forwarder", "Transport", "build_forwarder"]
