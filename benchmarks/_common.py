"""Shared by the benchmark scripts: write a JSON record with the environment."""

from __future__ import annotations

import json
import time
from pathlib import Path

from medtl.results import environment


def save_record(name: str, **fields) -> dict:
    """Print and write ``benchmarks/out/<name>.json``: the fields plus medtl's environment
    (version, git commit, package versions, device)."""
    record = {"benchmark": name, **fields, **environment()}
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(record, indent=2, default=str))
    print(json.dumps(record, default=str))
    return record


def timed(fn, repeat: int):
    """(best seconds over ``repeat`` calls of ``fn``, its last value)."""
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value
