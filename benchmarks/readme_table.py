"""Regenerate the README's benchmark rows of the scripts that write a ratio record, from
their JSON records (benchmarks/out/<name>.json), so the table shows what was measured.

    python benchmarks/readme_table.py [--check]

Rows written: ``fit_speed.py`` (fit against a plain loop) and ``metric_speedups.py`` (each
metric against a straightforward implementation). A row whose record is absent is left as it
is. ``--check`` exits 1 when the README differs from what the records give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
README = HERE.parent / "README.md"


def _load(name: str) -> dict | None:
    path = HERE / "out" / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def fit_row(rec: dict) -> str:
    cells = "; ".join(f"{r['size']} px: fit {r['fit_img_s']:,.0f} vs plain {r['plain_img_s']:,.0f} img/s "
                      f"({r['ratio']:.0%})" for r in rec["results"])
    met = all(r["met"] for r in rec["results"])
    return ("| `benchmarks/fit_speed.py` | `medtl.train.fit` against a plain PyTorch loop (same ResNet-18, data, batch "
            "128, SGD; images/s after the first epoch, best of alternating runs) at 28 and 64 px | "
            f"{cells} (goal ≥ 90 %: {'met' if met else 'NOT met'}; commit {rec['git_commit'][:7]}) |")


def metric_row(rec: dict) -> str:
    parts = []
    for size in dict.fromkeys(r["size"] for r in rec["results"]):
        rows = [r for r in rec["results"] if r["size"] == size]
        n, d = rows[0]["n"], rows[0]["d"]
        cells = ", ".join(f"{r['metric']} {r['ratio']:.1f}x" if r["ratio"] is not None else f"{r['metric']} —"
                          for r in rows)
        met = [r for r in rows if r["met"]]
        timed = [r for r in rows if r["ratio"] is not None]
        worst = max((r["rel_diff"] for r in timed), default=float("nan"))
        capped = [r for r in timed if r.get("ceiling") is not None and r["ceiling"] < rec["goal_ratio"]]
        reach = (f"; out of reach because the reference takes under {rec['goal_ratio']:.0f}x the one operation any "
                 "exact implementation must do: "
                 + ", ".join(f"{r['metric']} (≤ {r['ceiling']:.1f}x)" for r in capped)) if capped else ""
        parts.append(f"N={n:,}, D={d:,}: {cells} ({len(met)} of {len(timed)} meet ≥ {rec['goal_ratio']:.0f}x{reach}; "
                     f"values equal to {worst:.0e} relative)")
    return ("| `benchmarks/metric_speedups.py` | each transferability metric and similarity measure against a "
            "straightforward numpy implementation of its published algorithm (loops, the N×N Gram form, covariance "
            f"whitening), values compared | {'; '.join(parts)}; commit {rec['git_commit'][:7]} |")


def regenerate(text: str) -> str:
    lines = text.splitlines()
    for name, make in (("fit_speed", fit_row), ("metric_speedups", metric_row)):
        rec = _load(name)
        if rec is None:
            continue
        row = make(rec)
        key = f"| `benchmarks/{name}.py` |"
        at = [i for i, line in enumerate(lines) if line.startswith(key)]
        if at:
            lines[at[0]] = row
        else:  # a new row: after the table's last row
            start = next(i for i, line in enumerate(lines) if line.startswith("| script | measures |"))
            end = start
            while end + 1 < len(lines) and lines[end + 1].startswith("|"):
                end += 1
            lines.insert(end + 1, row)
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    new = regenerate(text)
    if args.check:
        sys.exit(0 if new == text else 1)
    README.write_text(new)
    print("README benchmark rows regenerated" if new != text else "README benchmark rows already current")


if __name__ == "__main__":
    main()
