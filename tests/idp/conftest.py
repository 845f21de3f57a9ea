from __future__ import annotations

from .provider import idp, idp_ready

__all__ = ["idp", "idp_ready"]
