"""``medtl demo``: a complete small dataset-transferability study, end to end.

Pre-train a few ResNet-18 sources (plus a random-initialisation candidate), score every
transferability metric on a target, fine-tune each source on the target (small grid,
early stopping, the study's min-val-loss rule) for the ground truth, correlate, and write
``results/demo/`` with the executed notebooks, tables, figures and an HTML report.

Data: the MedMNIST files under the data root (target pneumoniamnist, whose candidate
sources differ beyond their confidence intervals); where they are missing and the network
answers, the small files are downloaded first (unless ``offline``); otherwise the synthetic
suite, whose answer is known (``texture-a`` transfers best to ``texture-b``). The first line
of output and the report's header say which.
"""

from __future__ import annotations

import html
import os
import shutil
import time
from pathlib import Path

from . import data as D
from . import paths

MEDMNIST_TARGET = "pneumoniamnist"
MEDMNIST_SOURCES = ("bloodmnist", "organamnist", "breastmnist", "retinamnist")
#: Files small enough to fetch for the demo (a few MB each).
MEDMNIST_SMALL = ("pneumoniamnist", "breastmnist", "retinamnist")
SYNTHETIC_TARGET = "texture-b"
SYNTHETIC_SOURCES = ("texture-a", "shape-a", "shape-b", "intensity")


def _present(root) -> set[str]:
    return set(D.available(root))


def _fetch_small(root) -> list[str]:
    """Download the missing small demo files (MD5-verified, progress bar); stop at the first
    network failure. Returns the flags fetched."""
    fetched = []
    for flag in MEDMNIST_SMALL:
        if flag in _present(root):
            continue
        try:
            D.download(flag, 28, root)
        except OSError as err:
            reason = str(getattr(err, "__cause__", None) or err).strip().splitlines()
            print(f"medtl demo: cannot download {flag} ({reason[0] if reason else type(err).__name__}); staying "
                  "offline", flush=True)
            break
        fetched.append(flag)
    return fetched


def choose_data(root=None, prefer: str = "auto", offline: bool = False) -> tuple[str, str, list[str]]:
    """(kind, target, sources): MedMNIST when the target and at least 2 of its sources are
    present at 28 px under the data root (after fetching the small files, unless
    ``offline``), else the synthetic suite. A random-initialisation candidate is always added."""
    if prefer not in ("auto", "medmnist", "synthetic"):
        raise ValueError(f"data must be 'auto', 'medmnist' or 'synthetic', got {prefer!r}")
    if prefer != "synthetic" and not offline and MEDMNIST_TARGET not in _present(root):
        _fetch_small(root)
    present = _present(root)
    sources = [s for s in MEDMNIST_SOURCES if s in present]
    usable = MEDMNIST_TARGET in present and len(sources) >= 2
    if prefer == "synthetic" or (prefer == "auto" and not usable):
        return "synthetic", SYNTHETIC_TARGET, [*SYNTHETIC_SOURCES, "random"]
    if not usable:
        raise FileNotFoundError(f"the demo needs {MEDMNIST_TARGET} and 2 of {MEDMNIST_SOURCES} under "
                                f"{D.resolve_root(root)}; found {sorted(present) or 'none'}")
    return "medmnist", MEDMNIST_TARGET, [*sources, "random"]


def settings(quick: bool, kind: str) -> dict:
    """Sizes of the full demo and of the reduced CI form. On the synthetic suite the
    fine-tuning grid is lr ∈ {0.01, 0.03}: at 0.001 the unrelated sources stay at chance
    for the whole budget, and their runs' low (uninformative) validation loss would win
    the study's selection rule; the demo selects among the runs that learned. Its sources
    are pre-trained for 4 epochs: after 2 the related source's frozen features are too weak
    for most metrics to see the relation that fine-tuning shows (2 of 16 metrics put it
    first, against 12–13 after 4 epochs, at 1 or 2 CPU threads)."""
    synthetic = kind == "synthetic"
    lrs = [1e-2, 3e-2] if synthetic else [1e-3, 1e-2]
    if quick:
        return {"n_train": 700 if synthetic else 300, "n_val": 100, "pretrain_epochs": 4 if synthetic else 2,
                "lrs": lrs if synthetic else [1e-2], "finetune_epochs": 5 if synthetic else 3,
                "patience": None, "n_test": None}
    return {"n_train": 1000, "n_val": 300, "pretrain_epochs": 4 if synthetic else 3, "lrs": lrs,
            "finetune_epochs": 15, "patience": 4, "n_test": None}


def _disk(folder: Path) -> str:
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return f"{size / 2**20:.0f} MB"


def run_demo(out_dir: str | os.PathLike | None = None, root=None, prefer: str = "auto", quick: bool = False,
             fresh: bool = False, offline: bool = False, keep_checkpoints: bool = False) -> Path:
    """Run the demo study into ``out_dir`` (default ``<results root>/demo``); returns the
    report's index.html. Finished steps are reused when run again (``fresh=True`` starts
    over); only the best weights are kept unless ``keep_checkpoints``."""
    from . import experiments, report

    t0 = time.perf_counter()
    kind, target, sources = choose_data(root, prefer, offline)
    root_text = str(D.resolve_root(root))
    if kind == "medmnist":
        first = (f"medtl demo: using the MedMNIST files under {root_text} — target {target}, "
                 f"sources {', '.join(sources)}")
    else:
        first = (f"medtl demo: no MedMNIST files for the demo under {root_text}; using the synthetic suite — "
                 f"target {target}, sources {', '.join(sources)} (related source: {', '.join(D.related(target))})")
    print(first, flush=True)
    out = Path(out_dir).resolve() if out_dir is not None else paths.results_dir() / "demo"
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    s = settings(quick, kind)
    common = {"sources": sources, "data_root": str(D.resolve_root(root)), "models_dir": str(out / "models"),
              "progress": "lines"}
    steps = [
        ("pretrain", "pre-training the sources",  # the demo owns its models folder: a re-run may redo it
         {**common, "n_train": s["n_train"], "n_val": s["n_val"], "epochs": s["pretrain_epochs"], "overwrite": True}),
        ("transferability", "scoring every metric", {**common, "target": target}),
        ("finetune", "fine-tuning every source for the ground truth",
         {**common, "target": target, "lrs": s["lrs"], "epochs": s["finetune_epochs"], "patience": s["patience"],
          "n_test": s["n_test"], "keep_checkpoints": keep_checkpoints, "selection": "min_val_loss_learned"}),
    ]
    for i, (name, what, params) in enumerate(steps, 1):
        t = time.perf_counter()
        print(f"[{i}/{len(steps) + 1}] {what} ({name} notebook)", flush=True)
        r = experiments.run(f"experiments/{name}", params, out_dir=out / name, skip_finished=True, stream=True)
        print(f"  {name}: {r.status} in {time.perf_counter() - t:.0f} s -> {r.run_dir}", flush=True)
    print(f"[{len(steps) + 1}/{len(steps) + 1}] writing the report (analysis notebooks)", flush=True)
    header = (f"<p><b>{html.escape(first)}</b></p><p>Demo: {len(sources)} ResNet-18 candidate sources "
              f"({len(sources) - 1} pre-trained by medtl on their datasets, 1 randomly initialised), scored with every "
              f"metric on {target}'s training subset and fine-tuned on it "
              f"({'reduced CI form: 3 epochs, one learning rate' if quick else 'full demo'}).</p>")
    index = report.build_report(out, out / "report", header=header, progress=False)
    print("\nweighted Kendall τ_w per metric (higher = ranks the sources like fine-tuning does):")
    print(report.tau_summary(out).round(3).to_string())
    print(f"\nreport: {index}\nresults: {out} ({_disk(out)} on disk)\nfinished in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return index
