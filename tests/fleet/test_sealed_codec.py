"""The sealed-session codec: what a handle carries, and every way one is refused."""

from __future__ import annotations

import base64
import secrets

import pytest

from wardgate.errors import ConfigError
from wardgate.routing.sealed import SealedState, SealKeys, SessionSealer, load_keys
from wardgate.routing.sessions import GatewaySession
from wardgate.state.memory import MemoryStateStore
from wardgate.upstream.http import HttpSession

ALICE = ("https://idp", "t1", "app", "alice")
MALLORY = ("https://idp", "t1", "app", "mallory")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _session(sid: str = "up-1") -> GatewaySession:
    up = HttpSession.__new__(HttpSession)  # only its session_id is read when sealing
    up.session_id = sid
    return GatewaySession(
        id="",
        route="crm",
        upstreams={0: up},
        versions={0: "2025-11-25"},
        protocol_version="2025-11-25",
        owner=ALICE,
    )


def _sealer(*keys: bytes, clock: Clock | None = None) -> SessionSealer:
    return SessionSealer(
        SealKeys(list(keys)),
        MemoryStateStore(),
        lifetime=60.0,
        replica="a",
        clock=clock or Clock(),
    )


def test_a_handle_round_trips_and_is_visible_ascii() -> None:
    clock = Clock()
    sealer = _sealer(secrets.token_bytes(32), clock=clock)
    handle = sealer.id_for(_session())
    assert handle.startswith("s") and all(0x21 <= ord(c) <= 0x7E for c in handle)
    state = sealer.open(handle, "crm", ALICE)
    assert state is not None
    assert state.members == ((0, "up-1", "2025-11-25"),)
    assert state.owner == ALICE and state.expires == clock.now + 60.0
    # Two seals of one session differ (random nonce and handle id).
    assert sealer.id_for(_session()) != handle


def test_tampered_foreign_other_route_other_principal_and_expired_are_refused() -> None:
    clock = Clock()
    key = secrets.token_bytes(32)
    sealer = _sealer(key, clock=clock)
    handle = sealer.id_for(_session())
    raw = bytearray(base64.urlsafe_b64decode(handle[1:] + "=" * (-len(handle[1:]) % 4)))
    raw[-1] ^= 1
    tampered = "s" + base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    assert sealer.open(tampered, "crm", ALICE) is None
    assert sealer.open(handle[:-2], "crm", ALICE) is None
    assert sealer.open("s!!!", "crm", ALICE) is None
    assert sealer.open("s" + "A" * 9000, "crm", ALICE) is None
    assert _sealer(secrets.token_bytes(32), clock=clock).open(handle, "crm", ALICE) is None
    assert sealer.open(handle, "other", ALICE) is None  # the route is associated data
    assert sealer.open(handle, "crm", MALLORY) is None
    assert sealer.open(handle, "crm", ALICE) is not None
    clock.now += 60.0
    assert sealer.open(handle, "crm", ALICE) is None


def test_rotation_old_key_opens_while_listed_new_key_seals() -> None:
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    clock = Clock()
    before = _sealer(old, clock=clock).id_for(_session())
    during = _sealer(new, old, clock=clock)
    assert during.open(before, "crm", ALICE) is not None
    fresh = during.id_for(_session())
    assert _sealer(new, clock=clock).open(fresh, "crm", ALICE) is not None
    assert _sealer(new, clock=clock).open(before, "crm", ALICE) is None


async def test_a_revoked_handle_is_not_restored() -> None:
    sealer = _sealer(secrets.token_bytes(32))
    session = _session()
    session.id = sealer.id_for(session)
    session.sealed = True
    await sealer.revoke(session)
    assert await sealer.restore(session.id, "crm", ALICE, []) is None


def test_sessions_with_other_members_are_pinned_to_the_replica() -> None:
    sealer = _sealer(secrets.token_bytes(32))
    session = _session()
    session.upstreams = {0: object()}  # type: ignore[dict-item]
    handle = sealer.id_for(session)
    assert handle.startswith("ra.") and sealer.replica_of(handle) == "a"
    assert sealer.open(handle, "crm", ALICE) is None


def test_keys_come_from_named_variables_and_must_be_32_bytes() -> None:
    key = secrets.token_bytes(32)
    env = {"K1": base64.b64encode(key).decode(), "K2": "c2hvcnQ="}
    assert load_keys(["K1"], env) == [key]
    for names in (["K2"], ["MISSING"]):
        with pytest.raises(ConfigError) as bad:
            load_keys(names, env)
        assert bad.value.code == "wardgate.config"
    with pytest.raises(ValueError):
        SealKeys([key, key])


def test_state_load_refuses_other_shapes() -> None:
    assert SealedState.load(b"[]") is None
    assert SealedState.load(b"{}") is None
    assert SealedState.load(b"not json") is None
