"""A handshake done the way ``Route.initialize`` does it: reserve, open upstream, commit."""

from __future__ import annotations

from collections.abc import Mapping

from wardgate.identity.principal import BindingKey, Principal
from wardgate.routing.sessions import GatewaySession, SessionStore
from wardgate.upstream.http import HttpSession, HttpUpstream
from wardgate.upstream.seam import Reply
from wardgate.wire.jsonrpc import JsonObject

VERSION = "2025-11-25"

INITIALIZE: JsonObject = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": VERSION,
        "capabilities": {},
        "clientInfo": {"name": "session-tests", "version": "0"},
    },
}


def principal(subject: str, tenant: str = "t1") -> Principal:
    return Principal(subject=subject, method="jwt", tenant=tenant, issuer="https://idp.test")


class CountingUpstream(HttpUpstream):
    """A real HTTP upstream that counts the sessions the gateway opens on it."""

    opened = 0

    async def open_session(self) -> HttpSession:
        self.opened += 1
        return await super().open_session()


async def final(reply: Reply) -> JsonObject:
    last: JsonObject | None = None
    try:
        async for event in reply.events:
            if event.is_response:
                last = event.message
    finally:
        await reply.aclose()
    assert last is not None
    return last


async def handshake(
    store: SessionStore, upstream: HttpUpstream, owner: BindingKey, route: str = "demo"
) -> GatewaySession:
    """What ``Route.initialize`` does, with the reservation placed as it will be."""
    async with store.reserve(owner) as slot:
        up = await upstream.open_session()
        try:
            answer = await final(await up.request(INITIALIZE, {}))
            assert "result" in answer, answer
            await up.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, _v())
        except BaseException:
            await up.close()
            raise
        session = GatewaySession(
            id=store.new_id(),
            route=route,
            upstreams={0: up},
            versions={0: VERSION},
            protocol_version=VERSION,
            owner=owner,
        )
        slot.commit(session)
    return session


def _v() -> Mapping[str, str]:
    return {"mcp-protocol-version": VERSION}


async def call_echo(session: GatewaySession, text: str) -> JsonObject:
    message: JsonObject = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": text}},
    }
    return await final(await session.upstreams[0].request(message, _v()))
