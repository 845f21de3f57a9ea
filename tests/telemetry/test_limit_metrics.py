"""The metrics the limits and the redactor feed: breaker states, money spent, budgets
refused, secrets redacted by kind; driven by real calls through the gateway and scraped
from the ops listener."""

from __future__ import annotations

from typing import Any

from limits.conftest import SERVER, Clock, call_tool, make_call
from prometheus_client import generate_latest

from support.http import modern_body, modern_headers, post
from support.servers import free_port, run_gateway
from telemetry.test_metrics import _get, _samples
from wardgate.config.limits import BreakerConfig, PagerConfig
from wardgate.core.pipeline import Pipeline
from wardgate.errors import UpstreamError
from wardgate.limits import ToolDisabled
from wardgate.limits.breaker import BreakerGuard
from wardgate.limits.pager import Pager
from wardgate.state import MemoryStateStore
from wardgate.telemetry.events import EventBus
from wardgate.telemetry.metrics import Metrics
from wardgate.telemetry.sinks import MemorySink

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


def _config(metrics_port: int) -> dict[str, Any]:
    return {
        "upstreams": {"lim": {"transport": "stdio", "command": SERVER, "sandbox": "insecure-none"}},
        "routes": {"lim": {"upstreams": ["lim"]}},
        "limits": {
            "store": "memory",
            "breaker": {"min_calls": 3, "error_rate": 0.1, "per": ["tool"]},
            "budgets": {"monthly_usd": 10.0},
            "tools": {"query": {"max_cost_usd": 5.0}},
        },
        "telemetry": {"metrics_port": metrics_port},
    }


def _values(samples: list[tuple[str, dict[str, str], float]], name: str) -> dict[Any, float]:
    return {tuple(sorted(lb.items())): v for n, lb, v in samples if n == name}


async def test_breaker_states_spend_budgets_and_redactions_are_scraped() -> None:
    port = free_port()
    async with run_gateway(_config(port)) as (url, _):
        await post(f"{url}/mcp/lim", modern_body("tools/list", {}, 1), modern_headers("tools/list"))
        for i in range(3):
            status, _, answer = await call_tool(url, "fail", request_id=10 + i)
            assert answer["error"]["code"] == -32603
        status, _, answer = await call_tool(url, "fail", request_id=20)
        assert status == 503 and answer["error"]["data"]["code"] == "wardgate.tool_disabled"
        # A legitimate call on the same upstream still works, and its secret is redacted.
        status, _, answer = await call_tool(url, "echo", {"text": f"id {AWS_KEY} ok"}, 21)
        text = answer["result"]["content"][0]["text"]
        assert status == 200 and AWS_KEY not in text and "[REDACTED:aws_access_key_id]" in text
        # Money: 2 USD reported by the upstream, then the full 5 (no report), then the
        # tenant's 10 USD budget refuses a third reservation of 5.
        assert "result" in (await call_tool(url, "query", {"cost": 2}, 22))[2]
        assert "result" in (await call_tool(url, "query", {}, 23))[2]
        status, _, answer = await call_tool(url, "query", {}, 24)
        assert answer["error"]["data"]["code"] == "wardgate.budget_exhausted"
        status, body = await _get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
    samples = _samples(body.decode())
    breakers = _values(samples, "wardgate_breaker_state")

    def state(tool: str, name: str) -> float:
        return breakers[(("state", name), ("tool", tool), ("upstream", "lim"))]

    assert (state("fail", "open"), state("fail", "closed"), state("fail", "half_open")) == (1, 0, 0)
    assert (state("echo", "closed"), state("echo", "open")) == (1, 0)
    spend = _values(samples, "wardgate_quota_spend_usd_total")
    assert spend == {(("route", "lim"), ("tool", "query")): 7.0}
    refused = _values(samples, "wardgate_budget_exhausted_total")
    assert refused == {(("route", "lim"), ("scope", "tenant")): 1.0}
    redactions = _values(samples, "wardgate_redactions_total")
    assert redactions[(("kind", "aws_access_key_id"),)] == 1.0
    assert all(v == 0 for k, v in redactions.items() if k != (("kind", "aws_access_key_id"),))
    denials = _values(samples, "wardgate_denials_total")
    assert (
        denials[(("code", "wardgate.tool_disabled"), ("guard", "breaker"), ("route", "lim"))] == 1
    )


class _Flaky:
    name = "flaky"
    methods = None
    fail_open = False
    broken = True

    async def on_request(self, call: Any, message: Any) -> Any:
        if self.broken:
            raise UpstreamError("down")
        return message


async def test_the_breaker_gauge_goes_open_half_open_and_closed_with_the_clock() -> None:
    wall = Clock(0.0)
    events = EventBus([MemorySink()])
    metrics = Metrics(["lim"], wall_clock=wall)
    metrics.known_upstreams(["lim"])
    metrics.learn_tools(["fail"])
    config = BreakerConfig(min_calls=2, open_seconds=300, half_open_calls=1, per=("tool",))
    guard = BreakerGuard(
        MemoryStateStore(), config, Pager(PagerConfig()), events, wall_clock=wall, observer=metrics
    )
    flaky = _Flaky()
    pipeline = Pipeline([guard, flaky], events=events)

    async def once() -> str:
        call = make_call(pipeline, "fail")
        try:
            await pipeline.admit(call)
            return "ok"
        except (ToolDisabled, UpstreamError) as exc:
            return type(exc).__name__
        finally:
            await call.end(200)

    def gauge() -> str:
        text = generate_latest(metrics.registry).decode()
        on = [n for n, lb, v in _samples(text) if n == "wardgate_breaker_state" and v == 1]
        (state,) = [
            lb["state"]
            for n, lb, v in _samples(text)
            if n == "wardgate_breaker_state" and v == 1 and lb["tool"] == "fail"
        ]
        assert len(on) == 1
        return state

    assert await once() == "UpstreamError" and gauge() == "closed"
    assert await once() == "UpstreamError" and gauge() == "open"
    wall.now += 301  # no call yet: the gauge reads the open period's end
    assert gauge() == "half_open"
    flaky.broken = False
    assert await once() == "ok" and gauge() == "closed"  # the trial closed it
