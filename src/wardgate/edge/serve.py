"""``wardgate serve``: the gateway on uvicorn, with listener bounds and a clean shutdown.

Shutdown, on SIGTERM or SIGINT (a second signal skips the drain):

1. stop accepting; idle keep-alive connections close, busy ones close after their
   response;
2. calls in flight get ``shutdown_drain_seconds`` to finish;
3. past that, the gateway closes its upstream sessions (``Gateway.aclose``), which
   ends each call still waiting on an upstream with a JSON-RPC error; a call that
   still has not answered a moment later is cancelled and its connection closed;
4. every process group led by a child of the gateway (stdio servers and whatever they
   forked), and every process below the gateway (it is a child subreaper, so even
   double-forked orphans stay below it), is killed
   (:class:`~wardgate.upstream.reaper.ProcessGroups`);
5. the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import socket
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import uvicorn

from wardgate.config.model import GatewayConfig, StdioUpstreamConfig
from wardgate.edge.connections import ListenerLimits
from wardgate.edge.listener import guarded_protocol
from wardgate.upstream.reaper import ProcessGroups, become_subreaper

__all__ = ["GatewayServer", "fit_descriptors", "serve", "uvicorn_options"]

log = logging.getLogger("wardgate")

#: After the drain deadline, how long cut calls get to deliver their error.
_CUT_GRACE = 2.0
#: How long closing the upstreams may take before the sweep kills what is left.
_CLOSE_BUDGET = 6.0
#: How often the live children's process groups are noted.
_NOTE_EVERY = 5.0
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Descriptors kept for everything but client sockets: the listener, logs, upstream
#: pipes and pools, the loop's own.
_FD_RESERVE = 64
#: The highest soft descriptor limit ``serve`` asks for.
_FD_CEILING = 1 << 20


def fit_descriptors(limits: ListenerLimits) -> ListenerLimits:
    """Make room for ``max_connections`` sockets under ``RLIMIT_NOFILE``.

    Raises the soft limit to the hard one (at most 2**20); if that is not enough,
    lowers the connection cap instead (logged): past the descriptor limit
    accept() fails and the loop drops new sockets unread, the legitimate with the rest,
    while under the cap the listener can still choose whom to displace.
    """
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return limits
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # As high as allowed: sockets still in their TLS handshake are not counted by the
    # connection table yet, and need descriptors beyond the cap.
    target = _FD_CEILING if hard == resource.RLIM_INFINITY else min(hard, _FD_CEILING)
    if soft != resource.RLIM_INFINITY and target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    want = limits.max_connections + _FD_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= want:
        return limits
    fitted = max(1, soft - _FD_RESERVE)
    log.warning(
        "the descriptor limit (%d) leaves room for %d connections, not max_connections = %d",
        soft,
        fitted,
        limits.max_connections,
    )
    return dataclasses.replace(limits, max_connections=fitted)


def uvicorn_options(config: GatewayConfig, limits: ListenerLimits | None = None) -> dict[str, Any]:
    """How ``serve`` runs uvicorn: quiet, no server header, bounded listener, TLS when set.

    Raises:
        ConfigError: a certificate, key or CA file is unusable.
    """
    from wardgate.tls import uvicorn_ssl_kwargs

    server = config.server
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "lifespan": "off",
        "access_log": False,
        "log_level": "warning",
        "server_header": False,
        "date_header": False,
        "loop": "auto",
        "ws": "none",
        "timeout_keep_alive": server.keepalive_timeout_seconds,
    }
    if server.tls is not None:
        options.update(uvicorn_ssl_kwargs(server.tls.settings()))
    # After the TLS options: the guarded protocol adds the TLS scope extension itself.
    options["http"] = guarded_protocol(limits or ListenerLimits.from_config(server))
    return options


class GatewayServer(uvicorn.Server):
    """uvicorn's server with the gateway's signals and drain.

    uvicorn re-raises a caught SIGTERM after serving, which would kill the process
    before the gateway closes its upstreams; here signals only start the shutdown.
    """

    def __init__(
        self,
        config: uvicorn.Config,
        *,
        drain_seconds: float,
        on_drain_timeout: Callable[[], Awaitable[None]],
        handshake_timeout: float = 60.0,
    ) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.handshake_timeout = handshake_timeout
        self._on_drain_timeout = on_drain_timeout
        self._hurry = asyncio.Event()
        self.cut = 0

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # ``install_signals`` covers the whole run, closing included.
        yield

    @contextlib.contextmanager
    def install_signals(self) -> Generator[None, None, None]:
        """SIGTERM and SIGINT start the shutdown (a second one skips the drain)."""
        loop = asyncio.get_running_loop()
        installed = []
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._signalled, sig)
                installed.append(sig)
        try:
            yield
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup, with a TLS handshake deadline.

        uvicorn leaves asyncio's 60 s default, and a socket still in its handshake is
        not yet a connection the listener can count or cut: a client that never sends
        its ClientHello would hold a descriptor that long. uvicorn has no option for it,
        so ``create_server`` gets it for the duration of the call.
        """
        loop = asyncio.get_running_loop()
        if self.config.ssl is None:
            await super().startup(sockets)
            return
        create_server = loop.create_server
        setattr(  # noqa: B010 - shadow the bound method on this loop instance only
            loop,
            "create_server",
            functools.partial(create_server, ssl_handshake_timeout=self.handshake_timeout),
        )
        try:
            await super().startup(sockets)
        finally:
            delattr(loop, "create_server")

    def _signalled(self, sig: int) -> None:
        if self.should_exit:
            log.warning("second %s: skipping the drain", signal.Signals(sig).name)
            self.force_exit = True
            self._hurry.set()
            return
        log.info("%s: shutting down", signal.Signals(sig).name)
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        tasks = self.server_state.tasks
        if tasks and not self.force_exit:
            log.info("draining %d call(s) for up to %gs", len(tasks), self.drain_seconds)
            await self._wait(tasks, self.drain_seconds)
        if tasks:
            self.cut = len(tasks)
            log.warning("drain deadline passed: cutting %d call(s)", len(tasks))
            await self._on_drain_timeout()
            await self._wait(tasks, _CUT_GRACE)
            for task in list(tasks):
                task.cancel(msg="gateway shutting down")
            await self._wait(tasks, _CUT_GRACE, hurry=False)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.close()

    async def _wait(
        self, tasks: set[asyncio.Task[None]], within: float, hurry: bool = True
    ) -> None:
        """Until ``tasks`` (uvicorn's live set) is empty, ``within`` seconds pass or (with
        ``hurry``) a second signal arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        hurried = asyncio.ensure_future(self._hurry.wait())
        try:
            while tasks and not (hurry and self._hurry.is_set()):
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                waiting: set[asyncio.Future[Any]] = {*tasks}
                if hurry:
                    waiting.add(hurried)
                await asyncio.wait(waiting, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hurried.cancel()


def serve(
    config: GatewayConfig,
    banner: str | None = None,
    sockets: list[socket.socket] | None = None,
) -> int:
    """Run the gateway until SIGTERM or SIGINT, then shut down as the module says.

    ``sockets``: listen on these (already bound, shared by ``--workers``) instead of
    binding ``config.server``'s address.

    Raises:
        ConfigError: the configuration cannot be served (bad TLS files, a missing
            stdio command).
    """
    from wardgate.gateway import Gateway

    gateway = Gateway(config)
    children = ProcessGroups()
    closing: asyncio.Future[None] | None = None

    async def close_gateway() -> None:
        nonlocal closing
        children.note()  # the servers are still alive: learn their groups first
        if closing is None:
            closing = asyncio.ensure_future(gateway.aclose())
        try:
            await asyncio.wait_for(asyncio.shield(closing), _CLOSE_BUDGET)
        except TimeoutError:
            log.error("closing the upstreams took over %gs; killing what is left", _CLOSE_BUDGET)
        except Exception:
            log.exception("closing the upstreams failed")

    limits = fit_descriptors(ListenerLimits.from_config(config.server))
    server = GatewayServer(
        uvicorn.Config(gateway.app, **uvicorn_options(config, limits)),
        drain_seconds=config.server.shutdown_drain_seconds,
        on_drain_timeout=close_gateway,
        handshake_timeout=config.server.header_timeout_seconds,
    )

    async def note_children() -> None:
        while True:
            await asyncio.sleep(_NOTE_EVERY)
            children.note()
            children.reap_adopted()

    async def run() -> None:
        with server.install_signals():
            await gateway.start()
            await serve_started()

    async def serve_started() -> None:
        stdio = any(isinstance(u, StdioUpstreamConfig) for u in config.upstreams.values())
        # Orphans of stdio servers (double forks included) stay below the gateway.
        if stdio and not become_subreaper():
            log.warning("cannot become a child subreaper: escaped orphans may outlive exit")
        noting = asyncio.create_task(note_children()) if stdio else None
        try:
            if banner:
                print(banner, flush=True)
            log.info(
                "serving %d route(s) on %s:%d",
                len(gateway.routes),
                config.server.host,
                config.server.port,
            )
            await server.serve(sockets=sockets)
        finally:
            if noting is not None:
                noting.cancel()
            await close_gateway()
            children.note()
            await children.kill()
            children.reap_adopted()

    # asyncio.run would ignore uvicorn's loop choice (uvloop when installed).
    with asyncio.Runner(loop_factory=server.config.get_loop_factory()) as runner:
        runner.run(run())
    return 0
