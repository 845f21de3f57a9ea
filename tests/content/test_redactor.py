"""The secret redactor: every kind caught, in blocks, streams and JSON; clean text untouched."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.content.secrets import NOT_CARDS, SAMPLES, SERVICE_ACCOUNT
from wardgate.content.patterns import BUILTIN_PATTERNS, pattern_from_config
from wardgate.content.redactor import Redactor
from wardgate.content.scanner import hyperscan_available
from wardgate.errors import ConfigError

ENGINES = ["re", "hyperscan"] if hyperscan_available() else ["re"]
REDACTORS = {name: Redactor(engine=name) for name in ENGINES}  # type: ignore[arg-type]

# Text that cannot form a secret: lowercase words, punctuation, non-ASCII, newlines.
CLEAN = st.text(alphabet="abcdefghij klmnop.,;:\n-_é日ß", max_size=3000)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_kind_is_redacted_and_counted(engine: str, kind: str) -> None:
    redactor = Redactor(engine=engine)  # type: ignore[arg-type]
    text, secret = SAMPLES[kind]
    out = redactor.redact_str(f"before {text} after")
    assert secret not in out
    assert f"[REDACTED:{kind}]" in out
    assert out.startswith("before ") and out.endswith(" after")
    assert redactor.counts[kind] == 1


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("number", NOT_CARDS)
def test_numbers_failing_luhn_pass_untouched(engine: str, number: str) -> None:
    text = f"order {number} shipped"
    assert REDACTORS[engine].redact_str(text) is text


@pytest.mark.parametrize("engine", ENGINES)
def test_a_card_followed_by_another_number_is_still_found(engine: str) -> None:
    out = REDACTORS[engine].redact_str("card 4111 1111 1111 1111 123 done")
    assert "4111" not in out


def test_service_account_json_loses_key_and_key_id() -> None:
    for redactor in REDACTORS.values():
        out = redactor.redact_str(SERVICE_ACCOUNT)
        assert "0123456789abcdef0123456789abcdef01234567" not in out
        assert "MIIEowIBAAKCAQEA" not in out
        assert "svc@demo-project" in out


def test_operator_patterns_join_the_builtins() -> None:
    extra = pattern_from_config("acme_key", r"\bacme-[0-9a-f]{24}\b", max_len=29)
    redactor = Redactor((*BUILTIN_PATTERNS, extra), engine=ENGINES[-1])  # type: ignore[arg-type]
    out = redactor.redact_str("use acme-0123456789abcdef01234567 now")
    assert out == "use [REDACTED:acme_key] now"
    with pytest.raises(ConfigError):
        pattern_from_config("bad", r"(?<=x)y", max_len=2)
    with pytest.raises(ConfigError):
        Redactor((extra, extra))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=CLEAN,
    after=CLEAN,
    kind=st.sampled_from(sorted(SAMPLES)),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    engine=st.sampled_from(ENGINES),
)
def test_a_secret_anywhere_in_any_chunking_is_removed(
    before: str, after: str, kind: str, cuts: list[int], engine: str
) -> None:
    text, secret = SAMPLES[kind]
    data = f"{before} {text} {after}".encode()
    stream = REDACTORS[engine].stream()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = b"".join(stream.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    out += stream.close()
    assert secret.encode() not in out
    assert out == REDACTORS[engine].redact_bytes(data)


@settings(max_examples=150, deadline=None)
@given(
    text=CLEAN,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=8),
    engine=st.sampled_from(ENGINES),
)
def test_text_without_secrets_streams_through_byte_for_byte(
    text: str, cuts: list[int], engine: str
) -> None:
    data = text.encode()
    stream = REDACTORS[engine].stream()
    bounds = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    out = b"".join(stream.feed(data[a:b]) for a, b in itertools.pairwise(bounds))
    assert out + stream.close() == data
    assert REDACTORS[engine].redact_str(text) is text


@pytest.mark.skipif(len(ENGINES) < 2, reason="hyperscan not installed")
@settings(max_examples=100, deadline=None)
@given(
    parts=st.lists(
        st.one_of(
            CLEAN, st.sampled_from([s for s, _ in SAMPLES.values()]), st.sampled_from(NOT_CARDS)
        ),
        max_size=8,
    )
)
def test_both_engines_find_the_same(parts: list[str]) -> None:
    data = " ".join(parts).encode()
    assert REDACTORS["re"].find(data) == REDACTORS["hyperscan"].find(data)
    raw_re = [s[:3] for s in REDACTORS["re"].engine.find(data)]
    assert raw_re == [s[:3] for s in REDACTORS["hyperscan"].engine.find(data)]


def test_stream_memory_stays_bounded_whatever_its_length() -> None:
    redactor = REDACTORS[ENGINES[-1]]
    stream = redactor.stream()
    chunk = b"lorem ipsum dolor sit amet " * 40 + b"AKIAIOSFODNN7EXAMPLE "
    released = 0
    for _ in range(2000):  # about 2 MB in 1 kB chunks
        out = stream.feed(chunk)
        assert b"AKIAIOSFODNN7EXAMPLE" not in out
        released += len(out)
        assert stream.pending <= redactor.window + 1
    assert released > 0
    assert b"AKIA" not in stream.close()


def _message(text: str) -> dict[str, object]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {
            "content": [
                {"type": "text", "text": text},
                {"type": "resource", "resource": {"uri": "file:///x", "text": text}},
            ],
            "structuredContent": {"rows": [{"note": text}]},
        },
    }


@pytest.mark.parametrize("engine", ENGINES)
def test_json_messages_are_redacted_in_every_string(engine: str) -> None:
    redactor = REDACTORS[engine]
    secret = SAMPLES["github_token"][0]
    out = redactor.redact_json(_message(f"token {secret}"))
    dumped = json.dumps(out)
    assert secret not in dumped
    assert dumped.count("[REDACTED:github_token]") == 3
    sampling = {
        "jsonrpc": "2.0",
        "id": 9,
        "method": "sampling/createMessage",
        "params": {"messages": [{"role": "user", "content": {"type": "text", "text": secret}}]},
    }
    assert secret not in json.dumps(redactor.redact_json(sampling))


@pytest.mark.parametrize("engine", ENGINES)
def test_secrets_in_json_escaped_text_are_redacted(engine: str) -> None:
    # A tool that returns a JSON document as text: the key arrives with escapes.
    doubly = json.dumps(json.dumps({"password": "correct-horse-battery"}))
    inner = json.dumps(json.loads(SERVICE_ACCOUNT))
    for text in (doubly, inner, json.dumps(SERVICE_ACCOUNT)):
        out = json.dumps(REDACTORS[engine].redact_json(_message(text)))
        assert "correct-horse-battery" not in out
        assert "0123456789abcdef0123456789abcdef01234567" not in out
        assert "MIIEowIBAAKCAQEA" not in out


def test_clean_messages_are_returned_as_the_same_object() -> None:
    message = _message("nothing secret here, just 1234 and text")
    for redactor in REDACTORS.values():
        assert redactor.redact_json(message) is message


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | CLEAN,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(alphabet="abcxyz", max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(value=JSON_VALUES, kind=st.sampled_from(sorted(SAMPLES)), seed=st.integers(0, 1000))
def test_a_secret_in_any_string_of_any_json_value_is_removed(
    value: object, kind: str, seed: int
) -> None:
    text, secret = SAMPLES[kind]
    message = {"jsonrpc": "2.0", "id": 1, "result": {"structuredContent": value, "n": seed}}
    # Plant the secret in a string somewhere: a new leaf beside the value, or a key.
    planted = {**message, "result": {**message["result"], f"k{seed}": [value, f"x {text} y"]}}
    for redactor in REDACTORS.values():
        out = redactor.redact_json(planted)
        assert secret not in json.dumps(out)
        assert out["result"]["structuredContent"] == value  # clean parts are kept as they were
        assert redactor.redact_json(message) is message
