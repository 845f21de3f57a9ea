"""The policy set the demo ships (``wardgate demo``): what it allows, nothing more."""

from __future__ import annotations

from importlib import resources

from wardgate.policy.engines import PolicyEngine

__all__ = ["demo_engine"]


def demo_engine() -> PolicyEngine:
    """The demo's Cedar engine (route ``demo``: session, echo/add/utc_now, greet, readme).

    Raises:
        PolicyLoadError: never for the shipped file, unless cedarpy is missing.
    """
    from wardgate.policy.cedar import CedarEngine

    text = resources.files(__name__).joinpath("policies.cedar").read_text("utf-8")
    return CedarEngine(text, revision="demo")
