"""Start real servers for tests: the gateway in-process, upstreams as subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import orjson
import uvicorn

from wardgate.config.model import GatewayConfig
from wardgate.core.pipeline import Guard
from wardgate.gateway import Gateway
from wardgate.telemetry.sinks import MemorySink

__all__ = ["free_port", "run_gateway", "serve_app", "spawn_http_server", "wait_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(
    port: int, timeout: float = 20.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


@contextlib.asynccontextmanager
async def serve_app(app: Any, port: int | None = None, **uvicorn_kwargs: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop; yields ``http(s)://127.0.0.1:PORT``.

    ``uvicorn_kwargs`` go to ``uvicorn.Config`` (e.g. ``uvicorn_ssl_kwargs(settings)``).
    """
    port = port or free_port()
    scheme = "https" if uvicorn_kwargs else "http"
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
            timeout_graceful_shutdown=2,
            **uvicorn_kwargs,
        )
    )
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + 10
    while not server.started:
        if task.done():
            task.result()
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@contextlib.asynccontextmanager
async def run_gateway(
    config: dict[str, Any] | GatewayConfig,
    port: int | None = None,
    *,
    extra_guards: Mapping[str, Sequence[Guard]] | None = None,
) -> AsyncIterator[tuple[str, Gateway]]:
    """Build, start and serve a gateway as ``wardgate serve`` would (TLS when configured);
    yields its base URL and the gateway. Its events go to a :class:`MemorySink`
    (``gateway_events(gateway)``), not to stderr."""
    from wardgate.tls import uvicorn_ssl_kwargs

    cfg = config if isinstance(config, GatewayConfig) else GatewayConfig.model_validate(config)
    tls = uvicorn_ssl_kwargs(cfg.server.tls.settings()) if cfg.server.tls is not None else {}
    gateway = Gateway(cfg, sinks=[MemorySink()], extra_guards=extra_guards)
    await gateway.start()
    try:
        async with serve_app(gateway.app, port, **tls) as url:
            yield url, gateway
    finally:
        await gateway.aclose()


def gateway_events(gateway: Gateway) -> MemorySink:
    """The in-memory event sink :func:`run_gateway` gave the gateway."""
    sink = gateway.events.sinks[0]
    assert isinstance(sink, MemorySink)
    return sink


@contextlib.contextmanager
def spawn_http_server(
    argv: Sequence[str], port: int, timeout: float = 30.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server subprocess until it listens on ``port``; kill it afterwards."""
    proc = subprocess.Popen(list(argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_port(port, timeout, proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def demo_server_argv(port: int | None = None) -> list[str]:
    argv = [sys.executable, "-m", "wardgate.demo.server"]
    return [*argv, "--http", str(port)] if port is not None else argv


def answering_app(result: dict[str, Any]) -> Any:
    """A minimal HTTP MCP upstream (ASGI) that answers every request with ``result``."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = orjson.loads(body)
        answer = {"jsonrpc": "2.0", "id": request["id"], "result": result}
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": orjson.dumps(answer)})

    return app
