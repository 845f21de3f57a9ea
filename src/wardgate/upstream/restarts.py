"""When a crashed stdio server may be started again: bounded exponential backoff.

A server that ran for ``stable`` seconds and then died is restarted at once. One that
dies again sooner waits ``initial`` before its next start, then twice that, and so on up
to ``maximum``; a call that needs it meanwhile is refused at once with a clear error
(never held), and a start after a long enough run resets the count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from wardgate.errors import UpstreamError

__all__ = ["RestartBackoff"]


class RestartBackoff:
    """The start times of one server slot (a session's process, a warm pool)."""

    def __init__(
        self,
        *,
        initial: float = 0.5,
        maximum: float = 30.0,
        stable: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.stable = stable
        self._clock = clock
        self._last_start: float | None = None
        self._not_before = 0.0
        #: Starts in a row that each came less than ``stable`` after the one before.
        self.failures = 0

    def admit(self, name: str) -> None:
        """Record a start now, or refuse it.

        Raises:
            UpstreamError: the server crashed too often lately; it may start again at
                the time the message names.
        """
        now = self._clock()
        if now < self._not_before:
            raise UpstreamError(
                f"upstream {name} keeps crashing ({self.failures} quick restarts); "
                f"next start in {self._not_before - now:.1f} s"
            )
        if self._last_start is not None and now - self._last_start < self.stable:
            self.failures += 1
        else:
            self.failures = 0
        delay = 0.0 if self.failures == 0 else self.initial * 2 ** (self.failures - 1)
        self._not_before = now + min(delay, self.maximum)
        self._last_start = now

    @property
    def waiting(self) -> float:
        """Seconds until a start is allowed again (0: now)."""
        return max(0.0, self._not_before - self._clock())
