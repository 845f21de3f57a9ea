"""Small pre-exec steps for sandbox launchers (run in the child between fork and exec)."""

from __future__ import annotations

import ctypes
import signal
from collections.abc import Callable
from typing import Any

__all__ = ["chain", "die_with_parent"]

_PR_SET_PDEATHSIG = 1
try:
    # Resolved in the parent: nothing may be loaded in the child between fork and exec.
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _prctl = None


def die_with_parent() -> None:
    """SIGKILL this process when the gateway dies (even by SIGKILL)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def chain(*steps: Callable[[], None] | None) -> Callable[[], None] | None:
    """One pre-exec function running ``steps`` in order (None if there is none)."""
    todo = [s for s in steps if s is not None]
    if not todo:
        return None

    def run() -> None:
        for step in todo:
            step()

    return run
