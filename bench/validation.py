"""What input validation costs for a typical tool call, and the heuristic's corpus rates.

A typical call: four arguments (two identifiers, a sentence, a small options object)
against a closed schema, with the default policy (limits, schema, Unicode tells,
injection score). Target (issue 8): at most 20 µs per call.

Run: ``.venv/bin/python bench/validation.py [--calls N]``
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from wardgate.content.validation import InputPolicy, InputValidator

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "sheet": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"},
        "cell": {"type": "string", "pattern": "^[A-Z]+[0-9]+$"},
        "value": {"type": "string"},
        "options": {"type": "object", "properties": {"bold": {"type": "boolean"}}},
    },
    "required": ["sheet", "cell", "value"],
}
ARGS = {
    "sheet": "Q3_revenue",
    "cell": "B12",
    "value": "Total revenue for the third quarter, in euros",
    "options": {"bold": True},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=20000)
    args = parser.parse_args()
    validator = InputValidator()
    policy = InputPolicy()
    # As the guard does: compiled once when the tool is listed, kept with the tool.
    compiled = validator.schemas.compile("set_cell", SCHEMA)
    validator.check("set_cell", compiled, ARGS, policy)
    samples = []
    for _ in range(args.calls):
        t0 = time.perf_counter_ns()
        validator.check("set_cell", compiled, ARGS, policy)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    p50 = statistics.median(samples) / 1000
    p99 = samples[int(len(samples) * 0.99)] / 1000
    print(f"validate typical tools/call: p50 {p50:.1f} µs, p99 {p99:.1f} µs (target p50 <= 20)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.content.corpus import load, rates

    false_positive, detection, misses, alarms = rates()
    print(
        f"injection heuristic on tests/content/corpus: {len(load('benign'))} benign, "
        f"false positives {false_positive:.1%} {alarms}; {len(load('attacks'))} attacks, "
        f"detection {detection:.1%} missed {misses}"
    )


if __name__ == "__main__":
    main()
