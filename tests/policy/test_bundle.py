"""Signed bundles: verified before parsed; a bad bundle never replaces the one in force."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.policy.conftest import EXAMPLES, Sink, begin
from wardgate.core.context import CallContext
from wardgate.core.pipeline import Pipeline
from wardgate.errors import Denied
from wardgate.identity.principal import Principal
from wardgate.net.fetch import FetchPolicy, SafeFetcher
from wardgate.policy.bundle import build_bundle, load_bundle
from wardgate.policy.decision_log import PolicyDecided
from wardgate.policy.engines import BundleRejected, PolicyLintError
from wardgate.policy.guard import PolicyGuard
from wardgate.policy.holder import PolicyHolder
from wardgate.policy.registry import BundlePuller, PullResult, registry_document
from wardgate.telemetry.events import EventBus
from wardgate.wire.jsonrpc import Message

KEY = Ed25519PrivateKey.generate()
OTHER_KEY = Ed25519PrivateKey.generate()
ALICE = Principal("alice@acme", "jwt", tenant="acme", claims={"groups": ["staff"]})


def _list_call() -> Message:
    return Message({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, "request")


def _retar(archive: bytes, members: dict[str, bytes]) -> bytes:
    """A tarball holding ``members`` (a forger's archive: any names, any content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


def test_a_bundle_round_trips_and_carries_its_revision() -> None:
    bundle = build_bundle(EXAMPLES / "cedar", "2026-11-30.1", KEY)
    engine = load_bundle(bundle.archive, bundle.signature, KEY.public_key())
    assert (engine.name, engine.revision) == ("cedar", "2026-11-30.1")
    again = build_bundle(EXAMPLES / "cedar", "2026-11-30.1", KEY)
    assert again.archive == bundle.archive  # deterministic


def test_a_tampered_bundle_is_refused() -> None:
    bundle = build_bundle(EXAMPLES / "cedar", "r1", KEY)
    flipped = bytearray(bundle.archive)
    flipped[len(flipped) // 2] ^= 1
    with pytest.raises(BundleRejected):
        load_bundle(bytes(flipped), bundle.signature, KEY.public_key())
    with pytest.raises(BundleRejected):  # signed by someone else
        load_bundle(bundle.archive, OTHER_KEY.sign(bundle.archive), KEY.public_key())


@pytest.mark.parametrize(
    "members",
    [
        {"../../etc/cron.d/x.cedar": b"permit(principal, action, resource);"},
        {"sub/p.cedar": b""},
        {".wardgate-bundle.json": b'{"revision": "x", "files": {}}', "extra.cedar": b"x"},
        {"p.cedar": b"\xff\xfe"},
    ],
    ids=["traversal", "path", "unlisted-file", "not-utf8"],
)
def test_a_signed_but_malformed_archive_is_refused(members: dict[str, bytes]) -> None:
    # Signed with the right key: the unpacking itself must hold.
    archive = _retar(b"", members)
    with pytest.raises(BundleRejected):
        load_bundle(archive, KEY.sign(archive), KEY.public_key())


def test_a_gzip_bomb_is_refused() -> None:
    archive = gzip.compress(b"\0" * (40 * 1024 * 1024))
    with pytest.raises(BundleRejected):
        load_bundle(archive, KEY.sign(archive), KEY.public_key())


def test_a_wildcard_policy_is_never_signed(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES / "cedar", tmp_path / "set")
    (tmp_path / "set" / "oops.cedar").write_text("permit (principal, action, resource);")
    with pytest.raises(PolicyLintError):
        build_bundle(tmp_path / "set", "r2", KEY)


class Registry:
    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/bundles/authz", self._get)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        assert site._server is not None
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}/bundles/authz"

    async def _get(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def registry() -> AsyncIterator[Registry]:
    reg = Registry()
    await reg.start()
    yield reg
    await reg.stop()


@pytest.fixture
async def fetcher() -> AsyncIterator[SafeFetcher]:
    f = SafeFetcher(FetchPolicy(timeout_seconds=2, max_bytes=2 * 1024 * 1024, allow_loopback=True))
    yield f
    await f.aclose()


async def test_pull_swaps_in_a_good_bundle_and_keeps_it_against_a_tampered_one(
    registry: Registry, fetcher: SafeFetcher, tmp_path: Path
) -> None:
    sink = Sink()
    holder = PolicyHolder()
    pipeline = Pipeline([PolicyGuard(holder)], events=EventBus([sink]))
    ctx = CallContext(route="crm", principal=ALICE, received_at=1.0, upstream="crm")
    with pytest.raises(Denied):  # nothing loaded yet: default deny
        await begin(pipeline, ctx, _list_call())

    puller = BundlePuller(holder, fetcher, registry.url, KEY.public_key())
    registry.document = registry_document(build_bundle(EXAMPLES / "cedar", "r1", KEY))
    assert (await puller.pull()).swapped
    call = await begin(pipeline, ctx, _list_call())
    await call.end(200)
    assert holder.revision == "r1"

    # A second revision that the attacker tampered with in the registry.
    shutil.copytree(EXAMPLES / "cedar", tmp_path / "r2")
    good = build_bundle(tmp_path / "r2", "r2", KEY)
    tampered = registry_document(good)
    tampered["bundle"] = registry_document(build_bundle(EXAMPLES / "rego", "r2", OTHER_KEY))[
        "bundle"
    ]
    registry.document = tampered
    result = await puller.pull()
    assert not result.swapped and result.error is not None and "BundleRejected" in result.error
    assert holder.revision == "r1"  # the old one keeps serving
    call = await begin(pipeline, ctx, _list_call())
    await call.end(200)
    revisions = {e.revision for e in sink.of("policy.decision") if isinstance(e, PolicyDecided)}
    assert revisions == {"none", "r1"}

    registry.document = registry_document(good)
    assert (await puller.pull()).swapped and holder.revision == "r2"
    assert not (await puller.pull()).swapped  # same revision: not rebuilt


async def test_the_registry_is_fetched_through_the_ssrf_guard(registry: Registry) -> None:
    holder = PolicyHolder()
    strict = SafeFetcher(FetchPolicy(timeout_seconds=2))  # loopback not allowed
    try:
        registry.document = registry_document(build_bundle(EXAMPLES / "cedar", "r1", KEY))
        result = await BundlePuller(holder, strict, registry.url, KEY.public_key()).pull()
    finally:
        await strict.aclose()
    assert not result.swapped and result.error is not None and "FetchRefused" in result.error
    assert holder.revision == "none"


async def test_a_reload_during_a_call_neither_drops_it_nor_mixes_policy_sets(
    tmp_path: Path,
) -> None:
    sink = Sink()
    holder = PolicyHolder()
    holder.reload_dir(EXAMPLES / "cedar", revision="r1")
    pipeline = Pipeline([PolicyGuard(holder)], events=EventBus([sink]))
    ctx = CallContext(route="crm", principal=ALICE, received_at=1.0, upstream="crm")
    call = await begin(pipeline, ctx, _list_call())  # decided by r1
    # A broken candidate arrives mid-call: refused, r1 stays.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "p.cedar").write_text("permit (principal, action, resource);")
    with pytest.raises(PolicyLintError):
        holder.reload_dir(broken, revision="bad")
    holder.reload_dir(EXAMPLES / "rego", revision="r2")  # a good one replaces it
    reply = Message(
        {"jsonrpc": "2.0", "id": 1, "result": {"tools": [{"name": "read_record"}]}}, "response"
    )
    out = await call.message(reply)  # the call goes on, its reply decided by r2
    await call.end(200)
    assert out is not None and out.raw["result"]["tools"] == [{"name": "read_record"}]
    revisions = [e.revision for e in sink.of("policy.decision") if isinstance(e, PolicyDecided)]
    assert revisions == ["r1", "r2"]


async def test_the_puller_runs_until_stopped(registry: Registry, fetcher: SafeFetcher) -> None:
    import asyncio

    holder = PolicyHolder()
    registry.document = registry_document(build_bundle(EXAMPLES / "cedar", "r1", KEY))
    stop = asyncio.Event()
    puller = BundlePuller(holder, fetcher, registry.url, KEY.public_key())
    pulled = asyncio.Event()
    real = puller.pull

    async def pull() -> PullResult:
        result = await real()
        pulled.set()
        return result

    puller.pull = pull  # type: ignore[method-assign]
    task = asyncio.create_task(puller.run(3600, stop))
    await asyncio.wait_for(pulled.wait(), 10)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert holder.revision == "r1"
