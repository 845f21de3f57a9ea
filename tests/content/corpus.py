"""The benign and attack corpora of tests/content/corpus, and their rates."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from wardgate.content.injection import score_text
from wardgate.content.unicode import find_tells
from wardgate.content.validation import InputPolicy

CORPUS = Path(__file__).parent / "corpus"


@dataclass(frozen=True)
class Sample:
    text: str
    plain: bool
    note: str


def load(name: str) -> list[Sample]:
    lines = (CORPUS / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [Sample(**json.loads(line)) for line in lines if line.strip()]


DEFAULT = InputPolicy()


def caught(sample: Sample, policy: InputPolicy = DEFAULT) -> bool:
    """Whether the input checks would flag or refuse this text."""
    if find_tells(sample.text, identifier=True) & policy.deny_tells:
        return True
    return score_text(sample.text, plain=sample.plain).value >= policy.injection_threshold


def rates() -> tuple[float, float, list[str], list[str]]:
    """(false-positive rate on benign, detection rate on attacks, misses, false alarms)."""
    benign, attacks = load("benign"), load("attacks")
    alarms = [s.note for s in benign if caught(s)]
    misses = [s.note for s in attacks if not caught(s)]
    return len(alarms) / len(benign), 1 - len(misses) / len(attacks), misses, alarms
