"""Circuit breakers: a failing and a slow upstream of our own drive a breaker open
(across replicas, through the store), callers get "temporarily disabled", the page is
caught by a local HTTP receiver; half-open trials close or reopen it; operators open
and close it by hand."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from limits.conftest import REDIS_URL, Clock, call_tool, gateway_config, make_call
from support.servers import gateway_events, run_gateway, serve_app
from wardgate.config.limits import BreakerConfig, PagerConfig
from wardgate.core.pipeline import Pipeline
from wardgate.errors import UpstreamError
from wardgate.limits import ToolDisabled
from wardgate.limits.breaker import BreakerGuard
from wardgate.limits.breaker_commands import main as breaker_cli
from wardgate.limits.limit_events import BreakerChanged
from wardgate.limits.pager import Pager
from wardgate.state import MemoryStateStore
from wardgate.telemetry.events import EventBus
from wardgate.telemetry.sinks import MemorySink


class Receiver:
    """A local HTTP receiver of pages (an ASGI app served by uvicorn)."""

    def __init__(self) -> None:
        self.pages: list[tuple[str, dict[str, Any]]] = []
        self.arrived = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if not event.get("more_body"):
                break
        self.pages.append((scope["path"], json.loads(body)))
        self.arrived.set()
        await send({"type": "http.response.start", "status": 202, "headers": []})
        await send({"type": "http.response.body", "body": b'{"status":"success"}'})

    async def wait_for(self, count: int) -> None:
        async def enough() -> None:
            while len(self.pages) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(enough(), 10)


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, Receiver]]:
    app = Receiver()
    async with serve_app(app) as url:
        yield url, app


def _pager(url: str) -> dict[str, Any]:
    return {
        "pagerduty_url": f"{url}/v2/enqueue",
        "webhook_url": f"{url}/hook",
        "allow_loopback": True,
    }


async def test_a_failing_tool_is_disabled_paged_and_closed_by_hand(
    receiver: tuple[str, Receiver], redis_prefix: str, tmp_path: Path
) -> None:
    url, pages = receiver
    limits = {
        "store": "redis",
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
        "breaker": {"min_calls": 5, "error_rate": 0.1, "per": ["tool"]},
        "pager": _pager(url),
    }
    async with run_gateway(gateway_config(limits)) as (base, gw):
        for i in range(5):
            status, _, answer = await call_tool(base, "fail", request_id=i)
            assert answer["error"]["code"] == -32603  # the upstream's own error, passed on
        await pages.wait_for(2)  # sent once the breaker opened, after the fifth call ended
        status, headers, answer = await call_tool(base, "fail")
        assert status == 503 and 290 < int(headers["retry-after"]) <= 300
        assert answer["error"]["code"] == -32031
        assert answer["error"]["data"]["code"] == "wardgate.tool_disabled"
        # The rest of the upstream is served.
        status, _, answer = await call_tool(base, "echo")
        assert status == 200 and "result" in answer
        # Another replica sharing the store sees the breaker open.
        async with run_gateway(gateway_config(limits)) as (other, _):
            status, _, answer = await call_tool(other, "fail")
            assert status == 503 and answer["error"]["data"]["code"] == "wardgate.tool_disabled"
        by_path = dict(pages.pages)
        pd = by_path["/v2/enqueue"]
        assert (
            pd["event_action"] == "trigger"
            and pd["dedup_key"] == "wardgate-breaker:bk:tool=lim/fail"
        )
        assert pd["payload"]["severity"] == "critical" and pd["payload"]["source"] == "wardgate"
        assert "error rate" in pd["payload"]["summary"]
        assert by_path["/hook"]["event"] == "breaker.opened"
        opened = gateway_events(gw).of(BreakerChanged)
        assert [(e.breaker, e.state, e.by) for e in opened] == [
            ("bk:tool=lim/fail", "open", "auto")
        ]

        # The operator closes it; a second gateway sharing the store sees it closed.
        cfg = tmp_path / "g.toml"
        cfg.write_text(
            f'[upstreams.lim]\ntransport = "http"\nurl = "http://127.0.0.1:9/"\n'
            f'[routes.lim]\nupstreams = ["lim"]\n'
            f'[limits]\nstore = "redis"\n[limits.redis]\nurl = "{REDIS_URL}"\n'
            f'key_prefix = "{redis_prefix}"\n'
        )
        args = ["breaker", "status", "-c", str(cfg), "--upstream", "lim", "--tool", "fail"]
        assert await asyncio.to_thread(breaker_cli, args) == 0
        args[1] = "close"
        assert await asyncio.to_thread(breaker_cli, args) == 0
        status, _, answer = await call_tool(base, "fail")
        assert answer["error"]["code"] == -32603  # through to the upstream again
        # ... and opens it by hand, until closed by hand.
        args[1] = "open"
        assert await asyncio.to_thread(breaker_cli, args) == 0
        status, headers, answer = await call_tool(base, "fail")
        assert status == 503 and "retry-after" not in headers


async def test_a_slow_upstream_opens_its_breaker(redis_prefix: str) -> None:
    limits = {
        "store": "redis",
        "redis": {"url": REDIS_URL, "key_prefix": redis_prefix},
        "breaker": {"min_calls": 3, "p99_seconds": 0.2, "per": ["upstream"]},
    }
    async with run_gateway(gateway_config(limits)) as (base, gw):
        await asyncio.gather(*(call_tool(base, "slow", {"seconds": 0.3}, i) for i in range(3)))
        # The end hooks run once the answers are sent: wait (bounded) for the opening.
        for _ in range(250):
            if gateway_events(gw).of(BreakerChanged):
                break
            await asyncio.sleep(0.02)
        status, _, answer = await call_tool(base, "echo")
        # The whole upstream is out of service, other tools included.
        assert status == 503 and answer["error"]["data"]["code"] == "wardgate.tool_disabled"
        (opened,) = gateway_events(gw).of(BreakerChanged)
        assert opened.breaker == "bk:up=lim" and "p99 latency" in opened.reason


class _Flaky:
    """Stands in for the upstream in a guard-level test: fails calls while ``broken``."""

    name = "flaky"
    methods = None
    fail_open = False
    broken = True

    async def on_request(self, call: Any, message: Any) -> Any:
        if self.broken:
            raise UpstreamError("down")
        return message


async def test_half_open_trials_close_or_reopen(receiver: tuple[str, Receiver]) -> None:
    url, pages = receiver
    wall = Clock(0.0)
    store = MemoryStateStore()
    sink = MemorySink()
    events = EventBus([sink])
    pager = Pager(PagerConfig(**_pager(url)))
    config = BreakerConfig(min_calls=4, open_seconds=300, half_open_calls=1, per=("tool",))
    flaky = _Flaky()
    pipeline = Pipeline(
        [BreakerGuard(store, config, pager, events, wall_clock=wall), flaky], events=events
    )

    async def once() -> str:
        call = make_call(pipeline, "fail")
        try:
            await pipeline.admit(call)
            return "ok"
        except ToolDisabled:
            return "disabled"
        except UpstreamError:
            return "failed"
        finally:
            await call.end(200)

    assert [await once() for _ in range(5)] == ["failed"] * 4 + ["disabled"]
    wall.now += 301  # half-open: one trial passes, fails, and the breaker opens again
    assert await once() == "failed"
    assert await once() == "disabled"
    wall.now += 301
    flaky.broken = False
    assert await once() == "ok"  # the trial succeeds: closed
    assert [await once() for _ in range(3)] == ["ok"] * 3
    states = [e.state for e in sink.of(BreakerChanged)]
    assert states == ["open", "open", "closed"]
    await pager.drain()
    actions = [p["event_action"] for path, p in pages.pages if path == "/v2/enqueue"]
    assert actions == ["trigger", "resolve"]
    await pager.aclose()


async def test_p99_counts_one_slow_call_in_a_hundred_as_noise_and_two_as_a_trip() -> None:
    clock = Clock(0.0)
    events = EventBus([MemorySink()])
    config = BreakerConfig(min_calls=100, p99_seconds=2.0, per=("tool",))
    guard = BreakerGuard(MemoryStateStore(), config, Pager(PagerConfig()), events)
    pipeline = Pipeline([guard], events=events, clock=clock)

    async def once(latency: float) -> None:
        call = make_call(pipeline, "query")
        await pipeline.admit(call)
        clock.now += latency
        await call.end(200)

    for _ in range(98):
        await once(0.1)
    await once(2.5)  # 1 slow in 99
    await once(0.1)  # 1 slow in 100: the p99 is still 0.1 s
    sink = events.sinks[0]
    assert isinstance(sink, MemorySink) and not sink.of(BreakerChanged)
    await once(2.5)  # 2 slow in 101: the p99 is 2.5 s
    (opened,) = sink.of(BreakerChanged)
    assert opened.state == "open" and "p99" in opened.reason
