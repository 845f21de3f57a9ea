"""Secret redaction throughput: clean text, and text with a secret every 4 kB.

Prints, for each engine available (Hyperscan, the ``re`` fallback): the raw Hyperscan
pass alone, the engine's matches with the confirm step (``find``), the redactor's block
speed, and the stream redactor's speed
with 64 kB chunks, all in CPU time of the one thread. Targets (issue 8): at least
1 GB/s on 2 MB of clean text and at least 300 MB/s with a secret every 4 kB (Hyperscan).

Run: ``.venv/bin/python bench/redaction.py [--mb 2] [--repeat 20]``
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from wardgate.content.redactor import Redactor
from wardgate.content.scanner import HyperscanEngine, hyperscan_available

_WORDS = (  # noqa: SIM905 - a sentence reads better than a list of words
    "the gateway relays every message to the upstream server and back again while "
    "guards check what passes def main(): return 0 if ok else 1 curl -s https://example.org/x "
    "order 1234 shipped on 2026-11-30 at 12:00 UTC; total 99.95 EUR, ref 5531-2209 "
    "Die Anfrage wurde abgelehnt. Le serveur a répondu. サーバーが応答しました。 "
    '{"id": 7, "name": "widget", "tags": ["a", "b"], "price": 12.5} `code` **bold** '
).split(" ")

SECRETS = (
    b"AKIAIOSFODNN7EXAMPLE",
    b"ghp_" + b"A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
    b"4111 1111 1111 1111",
    b"Authorization: Bearer abcdefghijklmnop1234567890",
    b"postgres://app:s3cr3tpass@db.internal:5432/app",
    b"ya29.a0AfH6SMBc1234567890abcdefghijklmn",
)


def clean_text(size: int, rng: random.Random) -> bytes:
    out: list[str] = []
    total = 0
    while total < size:
        word = rng.choice(_WORDS)
        out.append(word)
        total += len(word.encode()) + 1
    return " ".join(out).encode()[:size]


def with_secrets(size: int, every: int, rng: random.Random) -> bytes:
    base = bytearray(clean_text(size, rng))
    pos = every // 2
    i = 0
    while pos < len(base) - 100:
        secret = b" " + SECRETS[i % len(SECRETS)] + b" "
        base[pos : pos + len(secret)] = secret
        pos += every
        i += 1
    return bytes(base)


def rate(fn: Callable[[], object], nbytes: int, repeat: int) -> float:
    """MB/s from the best of ``repeat`` runs, in this thread's CPU time: the machines
    this runs on are shared, and wall time there measures the neighbours too."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.thread_time()
        fn()
        best = min(best, time.thread_time() - t0)
    return nbytes / best / 1e6


def stream_all(r: Redactor, data: bytes, chunk: int) -> bytes:
    s = r.stream()
    out = [s.feed(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    out.append(s.close())
    return b"".join(out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    rng = random.Random(8)
    size = int(args.mb * 1024 * 1024)
    datasets = {"clean": clean_text(size, rng), "secret/4kB": with_secrets(size, 4096, rng)}
    engines = ["hyperscan", "re"] if hyperscan_available() else ["re"]
    print(
        f"{'engine':10} {'data':11} {'raw scan':>9} {'find':>9} {'redact':>9} {'stream 64k':>11}"
        "  MB/s"
    )
    for name in engines:
        r = Redactor(engine=name)  # type: ignore[arg-type]
        for label, data in datasets.items():
            repeat = args.repeat if name == "hyperscan" else max(2, args.repeat // 5)
            engine = r.engine
            if isinstance(engine, HyperscanEngine):
                raw = f"{rate(lambda e=engine, d=data: e.scan_only(d), len(data), repeat):9.0f}"
            else:
                raw = f"{'-':>9}"
            found = rate(lambda r=r, d=data: r.engine.find(d), len(data), repeat)
            red = rate(lambda r=r, d=data: r.redact_bytes(d), len(data), repeat)
            st = rate(lambda r=r, d=data: stream_all(r, d, 65536), len(data), repeat)
            print(f"{name:10} {label:11} {raw} {found:9.0f} {red:9.0f} {st:11.0f}")
        assert r.redact_bytes(datasets["clean"]) is datasets["clean"]


if __name__ == "__main__":
    main()
