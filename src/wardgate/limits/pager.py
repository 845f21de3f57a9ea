"""On-call pages for breakers: PagerDuty Events API v2 and a generic JSON webhook.

Pages go through the SSRF-safe fetcher (no redirects, no private or loopback addresses
unless the operator allows loopback for a test or a sidecar). Sending never blocks a
call: each page is a background task, and a failure is logged, not raised.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any, Literal

from wardgate.config.limits import PagerConfig
from wardgate.net.fetch import FetchPolicy, FetchRefused, SafeFetcher

__all__ = ["Pager"]

log = logging.getLogger("wardgate.limits")


class Pager:
    """Sends ``trigger`` on open and ``resolve`` on close, deduplicated per breaker."""

    def __init__(self, config: PagerConfig, *, fetcher: SafeFetcher | None = None) -> None:
        self._config = config
        self._fetcher = fetcher or SafeFetcher(FetchPolicy(allow_loopback=config.allow_loopback))
        self._routing_key = (
            os.environ.get(config.pagerduty_routing_key_env, "")
            if config.pagerduty_routing_key_env
            else ""
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def configured(self) -> bool:
        return bool(self._config.pagerduty_url or self._config.webhook_url)

    def page(
        self,
        action: Literal["trigger", "resolve"],
        breaker: str,
        summary: str,
        details: dict[str, Any],
    ) -> None:
        """Send the page in the background."""
        if not self.configured:
            return
        task = asyncio.get_running_loop().create_task(self._send(action, breaker, summary, details))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for the pages in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*tuple(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self._fetcher.aclose()

    async def _send(
        self,
        action: Literal["trigger", "resolve"],
        breaker: str,
        summary: str,
        details: dict[str, Any],
    ) -> None:
        c = self._config
        dedup = f"wardgate-breaker:{breaker}"
        if c.pagerduty_url:
            event: dict[str, Any] = {
                "routing_key": self._routing_key,
                "event_action": action,
                "dedup_key": dedup,
            }
            if action == "trigger":
                event["payload"] = {
                    "summary": summary[:1024],
                    "source": c.source,
                    "severity": "critical",
                    "component": breaker,
                    "group": "wardgate-breakers",
                    "class": "circuit_breaker",
                    "custom_details": details,
                }
            await self._post(c.pagerduty_url, event)
        if c.webhook_url:
            await self._post(
                c.webhook_url,
                {
                    "event": "breaker.opened" if action == "trigger" else "breaker.closed",
                    "breaker": breaker,
                    "summary": summary,
                    "source": c.source,
                    "at": time.time(),
                    "details": details,
                },
            )

    async def _post(self, url: str, body: dict[str, Any]) -> None:
        try:
            await self._fetcher.post_json(url, body)
        except FetchRefused as exc:
            log.error("breaker page to %s failed: %s", url, exc)
