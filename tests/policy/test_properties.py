"""Property tests: the redactor, the Rego lint and the bundle reader hold on any input."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from wardgate.policy.bundle import load_bundle
from wardgate.policy.decision_log import REDACTED, redact_value
from wardgate.policy.engines import BundleRejected
from wardgate.policy.lint import lint_rego

KEY = Ed25519PrivateKey.generate()
SECRET_KEYS = st.sampled_from(["password", "api_key", "Authorization", "client_secret", "token"])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _leaks(value: Any, secret: str) -> bool:
    if isinstance(value, dict):
        return any(_leaks(v, secret) for v in value.values())
    if isinstance(value, list):
        return any(_leaks(v, secret) for v in value)
    return value == secret


@settings(deadline=None)
@given(json_values, SECRET_KEYS, st.text(min_size=12, max_size=30).filter(lambda s: s.isalnum()))
def test_a_value_under_a_credential_key_never_survives(doc: Any, key: str, secret: str) -> None:
    nested = {"outer": [{key: secret}, doc], key: {"inner": secret}}
    out = redact_value(nested)
    assert not _leaks(out, secret) or _leaks(doc, secret)
    assert out[key] == REDACTED


@settings(deadline=None)
@given(st.text(max_size=300))
def test_the_rego_lint_never_crashes(source: str) -> None:
    for finding in lint_rego(source, "x.rego"):
        assert finding.where.startswith("x.rego:")


@settings(max_examples=60, deadline=None)  # a loaded machine is slow, not wrong
@given(st.binary(max_size=2000))
def test_any_signed_bytes_are_a_bundle_or_a_rejection(blob: bytes) -> None:
    for archive in (blob, gzip.compress(blob), _tar_of(blob)):
        with contextlib.suppress(BundleRejected):  # anything else fails the test
            load_bundle(archive, KEY.sign(archive), KEY.public_key())


def _tar_of(blob: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("p.cedar")
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    return gzip.compress(raw.getvalue())
