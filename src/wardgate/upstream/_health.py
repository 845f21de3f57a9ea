"""Is an upstream channel that stopped answering still alive? Asked after a timeout."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from wardgate.errors import UpstreamError

if TYPE_CHECKING:
    from wardgate.upstream.channel import ChannelSession

__all__ = ["HealthProbe"]

log = logging.getLogger("wardgate.upstream")


class HealthProbe:
    """After a request times out, ``ping`` the server once (one probe at a time); a
    server that does not answer within ``timeout`` is aborted, which fails every call in
    flight on it with :class:`UpstreamError` and restarts it on the next call."""

    def __init__(self, channel: ChannelSession, timeout: float) -> None:
        self._channel = channel
        self.timeout = timeout
        self.task: asyncio.Task[None] | None = None

    def check(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._ping())

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    async def _ping(self) -> None:
        channel = self._channel
        if not channel._running():
            return
        try:
            answer = await channel._internal({"jsonrpc": "2.0", "method": "ping"}, self.timeout)
        except UpstreamError:
            answer = None
        if answer is None and channel._running():
            log.error("upstream %s stopped answering; restarting it", channel._name)
            await channel._abort("upstream stopped answering")
