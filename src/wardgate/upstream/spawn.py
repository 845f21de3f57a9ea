"""What a spawned upstream process inherits: its three stdio pipes and nothing else.

asyncio's own event loop honours ``close_fds=True``. uvloop (which ``wardgate serve``
runs on when it is installed) spawns through libuv, which ignores ``close_fds``: the
child got the originals of its stdio socketpairs, ``/dev/null`` and every inheritable
descriptor of the gateway. :func:`spawn_options` adds a ``preexec_fn`` on such loops
that marks every descriptor above 2 close-on-exec in the child, before libuv puts the
pipes on 0, 1 and 2 (``dup2`` clears the flag on those three only).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
from typing import Any

__all__ = ["cloexec_above_stdio", "spawn_options"]

_SYS_CLOSE_RANGE = 436  # the same number on every Linux architecture (5.9+)
_CLOSE_RANGE_CLOEXEC = 4
try:
    # Resolved in the parent: nothing may be loaded in the child between fork and exec.
    _syscall: Any = ctypes.CDLL(None, use_errno=True).syscall
except (OSError, AttributeError):  # pragma: no cover - not Linux
    _syscall = None


def cloexec_above_stdio() -> None:
    """Mark every descriptor above 2 close-on-exec (runs in the child, before exec)."""
    if (
        _syscall is not None
        and _syscall(_SYS_CLOSE_RANGE, 3, ~0 & 0xFFFFFFFF, _CLOSE_RANGE_CLOEXEC) == 0
    ):
        return
    # Older kernels; plain os calls, as little as possible runs between fork and exec.
    for name in os.listdir("/proc/self/fd"):  # noqa: PTH208
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)


def spawn_options(loop: asyncio.AbstractEventLoop | None = None) -> dict[str, Any]:
    """Extra ``create_subprocess_exec`` keywords that keep descriptors out of the child."""
    loop = loop or asyncio.get_running_loop()
    if isinstance(loop, asyncio.BaseEventLoop):
        return {"close_fds": True}
    return {"close_fds": True, "preexec_fn": cloexec_above_stdio}
