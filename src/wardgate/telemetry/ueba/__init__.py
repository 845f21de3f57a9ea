"""Behaviour analytics: detectors over calls, state in the shared store."""

from __future__ import annotations

from wardgate.telemetry.ueba.detect import Observation, Ueba, UebaAlert
from wardgate.telemetry.ueba.geo import GeoIp2Fast, GeoLookup, Place, StaticGeo
from wardgate.telemetry.ueba.ueba_guard import (
    BehaviourBlocked,
    CredentialRevoked,
    UebaGuard,
    token_id,
)

__all__ = [
    "BehaviourBlocked",
    "CredentialRevoked",
    "GeoIp2Fast",
    "GeoLookup",
    "Observation",
    "Place",
    "StaticGeo",
    "Ueba",
    "UebaAlert",
    "UebaGuard",
    "token_id",
]
