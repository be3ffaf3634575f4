"""The steps of a dataset-transferability study as functions, so that the experiment
notebooks stay thin: pick real or synthetic data, pre-train sources, fine-tune them on a
target with a small grid and the study's selection rule, and score them."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch

from . import data as D
from . import models as M
from . import train as T
from . import transfer as TR


def data_kind(datasets: Sequence[str], root: str | os.PathLike | None = None, size: int = 28,
              prefer: str = "auto") -> str:
    """``"medmnist"`` when every dataset in ``datasets`` is a MedMNIST flag whose file is
    under the data root, ``"synthetic"`` when they are synthetic-suite names; with
    ``prefer="auto"`` a MedMNIST request whose files are missing raises (never a silent
    stand-in)."""
    if prefer not in ("auto", "medmnist", "synthetic"):
        raise ValueError(f"prefer must be auto, medmnist or synthetic, got {prefer!r}")
    if all(d in D.SYNTHETIC for d in datasets):
        return "synthetic"
    missing = [d for d in datasets if d not in D.available(root, size)]
    if missing:
        raise FileNotFoundError(f"no {size} px MedMNIST file for {missing} under {D.resolve_root(root)}; "
                                "download them (medtl data download) or use synthetic-suite names")
    return "medmnist"


def split(name: str, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
          n: int | None = None, seed: int = 0) -> D.ImageSet:
    """One split of a MedMNIST flag or a synthetic-suite dataset; ``n`` draws a seeded
    stratified subset (all images when ``n`` is None or larger than the split)."""
    ds = D.synthetic(name, split, size) if name in D.SYNTHETIC else D.load(name, split, size, root)
    if n is not None and n < len(ds):
        ds = D.subset(ds, n, stratified=True, seed=seed)
    return ds


def target_fold(name: str, size: int = 28, root: str | os.PathLike | None = None, fold: int = 1,
                n_test: int | None = None, seed: int = 0) -> tuple[D.ImageSet, D.ImageSet, D.ImageSet]:
    """A target's (train, val, test): MedMNIST targets use the study's fold subsets
    (100·C train, 25·C val) and the official test split (subset to ``n_test`` if given);
    synthetic targets use the suite's splits."""
    if name in D.SYNTHETIC:
        return D.synthetic(name, "train", size), D.synthetic(name, "val", size), D.synthetic(name, "test", size)
    f = D.folds(name, size, root=root)[fold - 1]
    return f.train, f.val, split(name, "test", size, root, n_test, seed)


def pretrain_sources(sources: Sequence[str], models_dir: str | os.PathLike, arch: str = "resnet18", size: int = 28,
                     root: str | os.PathLike | None = None, n_train: int | None = 2000, n_val: int | None = 500,
                     epochs: int = 3, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                     progress: bool = True) -> pd.DataFrame:
    """Pre-train one ``arch`` source per dataset (Adam, no augmentation, best val loss
    kept) and save each as ``<dataset>-<arch>`` in ``models_dir``. Returns a table: source,
    name, best_epoch, val_loss, val_auc, seconds."""
    rows = []
    for src in sources:
        t0 = time.perf_counter()
        train = split(src, "train", size, root, n_train, seed)
        val = split(src, "val", size, root, n_val, seed)
        name = f"{src}-{arch}"
        r = T.pretrain(arch, train, val, name=name, root=models_dir, epochs=epochs, optimizer="adam", lr=lr,
                       schedule=None, batch_size=batch_size, augment=None, patience=None, seed=seed,
                       progress=progress)
        best = r.history.set_index("epoch").loc[r.best_epoch]
        rows.append({"source": src, "name": name, "arch": arch, "best_epoch": r.best_epoch,
                     "val_loss": best.val_loss, "val_auc": best.val_auc, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def load_sources(sources: Sequence[str], models_dir: str | os.PathLike, arch: str = "resnet18") -> dict:
    """``{source: model}`` of sources saved by :func:`pretrain_sources`."""
    return {s: M.load_source(f"{s}-{arch}", root=models_dir) for s in sources}


def score_sources(sources: Sequence[str], target: str, models_dir: str | os.PathLike, arch: str = "resnet18",
                  size: int = 28, root: str | os.PathLike | None = None, metrics: Sequence[str] = TR.METRICS,
                  variant: str = "official", progress: bool = True) -> pd.DataFrame:
    """Every metric for every source on the target's fold-1 training subset (tidy table)."""
    train, _, _ = target_fold(target, size, root)
    return TR.score(load_sources(sources, models_dir, arch), train, metrics, target_name=target, variant=variant,
                    progress=progress)


def finetune_sources(sources: Sequence[str], target: str, models_dir: str | os.PathLike, arch: str = "resnet18",
                     size: int = 28, root: str | os.PathLike | None = None, grid: Mapping | None = None,
                     epochs: int = 5, n_test: int | None = None, checkpoint_dir: str | os.PathLike | None = None,
                     seed: int = 0, progress: bool = True) -> pd.DataFrame:
    """Fine-tune every source on the target (fold-1 train/val, all layers, fresh head) for
    each configuration of ``grid`` (default lr ∈ {1e-3, 1e-2} with SGD momentum 0.9 and a
    cosine schedule), evaluate the restored best-AUC checkpoint on val and test, and mark
    the study's ground truth: per source, the configuration with the minimum val loss.

    Returns one row per (source, configuration) with ``selected`` flags."""
    train, val, test = target_fold(target, size, root, n_test=n_test, seed=seed)
    grid = dict(grid or {"lr": [1e-3, 1e-2], "momentum": [0.9], "weight_decay": [1e-4]})
    tables = []
    for src in sources:
        def build(src=src):
            return M.load_source(f"{src}-{arch}", root=models_dir, num_classes=train.n_classes)

        out = Path(checkpoint_dir) / src if checkpoint_dir is not None else None
        t = T.grid_search(build, train, val, test, grid, out_dir=out, epochs=epochs, batch_size=64,
                          schedule="cosine", monitor="val_auc", seed=seed, progress=progress)
        t.insert(0, "source", src)
        t.insert(1, "target", target)
        best = T.select(t)
        t["selected"] = t.config_id == best.config_id
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def ground_truth(finetuned: pd.DataFrame, value: str = "test_auc") -> pd.DataFrame:
    """sources × targets table of the selected configurations' ``value``."""
    sel = finetuned[finetuned.selected]
    return sel.pivot_table(index="source", columns="target", values=value, aggfunc="first")


def set_threads() -> int:
    """Use every core for torch's intra-op pool (notebook kernels start with defaults)."""
    n = os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
