"""``medtl demo``: a complete small dataset-transferability study, end to end.

Pre-train a few ResNet-18 sources, score every transferability metric on a target,
fine-tune each source on the target (small grid, min-val-loss rule) for the ground truth,
correlate, and write ``results/demo/`` with the executed notebooks, tables, figures and an
HTML report. Uses the MedMNIST files under the data root when present, otherwise the
synthetic suite — and says which on its first line.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from pathlib import Path

from . import data as D

MEDMNIST_TARGET = "bloodmnist"
MEDMNIST_SOURCES = ("pneumoniamnist", "organamnist", "breastmnist", "retinamnist")
SYNTHETIC_TARGET = "texture-b"
SYNTHETIC_SOURCES = ("texture-a", "shape-a", "shape-b", "intensity")


def choose_data(root=None, prefer: str = "auto") -> tuple[str, str, list[str]]:
    """(kind, target, sources): MedMNIST when the target and at least 3 sources are present
    at 28 px under the data root (``prefer="auto"``), else the synthetic suite."""
    present = set(D.available(root))
    sources = [s for s in MEDMNIST_SOURCES if s in present]
    if prefer == "synthetic" or (prefer == "auto" and (MEDMNIST_TARGET not in present or len(sources) < 3)):
        return "synthetic", SYNTHETIC_TARGET, list(SYNTHETIC_SOURCES)
    if prefer == "medmnist" and (MEDMNIST_TARGET not in present or len(sources) < 3):
        raise FileNotFoundError(f"the demo needs {MEDMNIST_TARGET} and 3 of {MEDMNIST_SOURCES} under "
                                f"{D.resolve_root(root)}; found {sorted(present) or 'none'}")
    return "medmnist", MEDMNIST_TARGET, sources


def settings(quick: bool) -> dict:
    """Sizes of the full demo and of the reduced CI form."""
    if quick:
        return {"n_train": 300, "n_val": 100, "pretrain_epochs": 1, "lrs": [1e-3], "finetune_epochs": 1,
                "n_test": 300, "metrics": ["leep", "nleep", "logme", "parc", "sfda", "ncti", "hscore", "lp", "fu",
                                           "lp_fu"]}
    return {"n_train": 2000, "n_val": 500, "pretrain_epochs": 3, "lrs": [1e-3, 1e-2], "finetune_epochs": 5,
            "n_test": 2000, "metrics": ["leep", "nleep", "logme", "parc", "sfda", "ncti", "hscore", "lp", "fu",
                                        "lp_fu"]}


def run_demo(out_dir: str | os.PathLike = "results/demo", root=None, prefer: str = "auto", quick: bool = False,
             fresh: bool = False) -> Path:
    """Run the demo study into ``out_dir``; returns the report's index.html. Finished steps
    are reused when run again (``fresh=True`` starts over)."""
    from . import experiments, report

    t0 = time.perf_counter()
    kind, target, sources = choose_data(root, prefer)
    root_text = str(D.resolve_root(root))
    if kind == "medmnist":
        first = (f"medtl demo: using the MedMNIST files under {root_text} — target {target}, "
                 f"sources {', '.join(sources)}")
    else:
        first = (f"medtl demo: no MedMNIST files for the demo under {root_text}; using the synthetic suite — "
                 f"target {target}, sources {', '.join(sources)} (related source: {', '.join(D.related(target))})")
    print(first, flush=True)
    out = Path(out_dir).resolve()
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings(quick)
    common = {"sources": sources, "data_root": str(D.resolve_root(root)), "models_dir": str(out / "models")}
    steps = [
        ("pretrain", {**common, "n_train": s["n_train"], "n_val": s["n_val"], "epochs": s["pretrain_epochs"]}),
        ("transferability", {**common, "target": target, "metrics": s["metrics"]}),
        ("finetune", {**common, "target": target, "lrs": s["lrs"], "epochs": s["finetune_epochs"],
                      "n_test": s["n_test"]}),
    ]
    for name, params in steps:
        t = time.perf_counter()
        r = experiments.run(f"experiments/{name}", params, out_dir=out / name, skip_finished=True)
        print(f"  {name}: {r.status} in {time.perf_counter() - t:.0f} s -> {r.run_dir}", flush=True)
    header = (f"<p><b>{html.escape(first)}</b></p><p>Demo: {len(sources)} ResNet-18 sources pre-trained by medtl, "
              f"scored with every metric on {target}'s fold-1 training subset and fine-tuned on it "
              f"({'reduced CI form' if quick else 'full demo'}).</p>")
    index = report.build_report(out, out / "report", header=header, progress=False)
    summary = report.tau_summary(out)
    print("\nweighted Kendall τ_w per metric (higher = ranks the sources like fine-tuning does):")
    print(summary.round(3).to_string())
    print(f"\nreport: {index}\nfinished in {time.perf_counter() - t0:.0f} s", flush=True)
    return index
