"""Data for a study, from any registered dataset family (:func:`medtl.data.get`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .. import data as D
from ..runtime import cores

#: The source name of an untrained (randomly initialised) candidate.
RANDOM = "random"


def data_kind(datasets: Sequence[str], root: str | os.PathLike | None = None, size: int = 28) -> str:
    """The family of ``datasets`` (``"medmnist"``, ``"synthetic"``, ``"folder"``, … or
    ``"mixed: a, b"``), after checking that each can be loaded now: a dataset whose files
    are missing raises (never a silent stand-in)."""
    if isinstance(datasets, str):
        datasets = [datasets]
    datasets = [d for d in datasets if d != RANDOM]
    fams = [D.family_of(d).name for d in datasets]
    missing = [d for d in datasets if not D.is_available(d, size, root)]
    if missing:
        raise FileNotFoundError(f"no {size} px files for {missing} under {D.resolve_root(root)}; download them "
                                "(medtl data download FLAG) or use synthetic-suite names")
    kinds = list(dict.fromkeys(fams))
    return kinds[0] if len(kinds) == 1 else "mixed: " + ", ".join(kinds)


def split(name: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
          n: int | None = None, seed: int = 0) -> D.ImageSet:
    """One split of any dataset (:func:`medtl.data.get`); ``n`` draws a seeded stratified
    subset (all images when ``n`` is None or larger than the split)."""
    return D.get(name, split, size, root, n=n, seed=seed)


def target_fold(name: str, size: int = 28, root: str | os.PathLike | None = None, fold: int = 1,
                n_test: int | None = None, seed: int = 0) -> tuple[D.ImageSet, D.ImageSet, D.ImageSet]:
    """A target's (train, val, test) under its family's protocol (:func:`medtl.data.target_splits`:
    MedMNIST targets use the study's fold subsets and the official test split)."""
    return D.target_splits(name, size, root, fold, n_test, seed)


def set_threads() -> int:
    """Use every core this process may run on (:func:`medtl.runtime.cores`) for torch's
    intra-op pool (notebook kernels start with defaults), or the OMP_NUM_THREADS the
    environment sets (a cluster job's share, a test worker's)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = int(env) if env.isdigit() and int(env) > 0 else cores()
    torch.set_num_threads(n)
    return n


def epoch_lines(prefix: str, epochs: int | None = None):
    """A :func:`medtl.train.fit` callback printing one line per epoch (``progress="lines"``
    in the study functions: readable in logs and in ``medtl demo``'s terminal)."""

    def report(epoch: int, row: dict) -> None:
        parts = [f"{k} {row[k]:.4f}" for k in ("train_loss", "val_loss", "val_auc") if k in row and row[k] == row[k]]
        total = f"/{epochs}" if epochs else ""
        print(f"    {prefix} epoch {epoch}{total}: {', '.join(parts)} ({row.get('seconds', 0):.1f} s)", flush=True)

    return report


def fit_progress(progress, prefix: str, epochs: int | None = None) -> dict:
    """``fit`` keyword arguments for a study function's ``progress``: True (a tqdm bar),
    False, or ``"lines"`` (one printed line per epoch)."""
    if progress not in (True, False, "lines"):
        raise ValueError(f"progress must be True, False or 'lines', got {progress!r}")
    if progress == "lines":
        return {"progress": False, "callbacks": [epoch_lines(prefix, epochs)]}
    return {"progress": bool(progress)}
