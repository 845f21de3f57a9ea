"""SIEM forwarding: formats, transports, and the spooling forwarder."""

from __future__ import annotations

from wardgate.telemetry.siem.forwarder import Forwarder, Transport
from wardgate.telemetry.siem.siem_build import build_forwarder

__all__ = ["Forwarder", "Transport", "build_forwarder"]
