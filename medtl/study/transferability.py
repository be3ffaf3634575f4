"""The dataset-transferability pipeline: pre-train sources, score them on a target with
every metric, fine-tune them on it with a grid and the study's min-val-loss rule."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .. import models as M
from .. import paths
from .. import train as T
from .. import transfer as TR
from ..runtime import expand_grid
from ._data import RANDOM, fit_progress, split, target_fold


def source_name(dataset: str, arch: str) -> str:
    """The saved name of a source pre-trained on ``dataset``: ``<dataset>-<arch>``."""
    return f"{Path(str(dataset)).name}-{arch}"


def pretrain_sources(sources: Sequence[str], models_dir: str | os.PathLike | None = None, arch: str = "resnet18",
                     size: int = 28, root: str | os.PathLike | None = None, n_train: int | None = 2000,
                     n_val: int | None = 500, epochs: int = 3, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
                     progress: bool = True, overwrite: bool = False) -> pd.DataFrame:
    """Pre-train one ``arch`` source per dataset (Adam, no augmentation, best val loss
    kept) and save each as ``<dataset>-<arch>`` in ``models_dir`` (default: the models
    folder, :func:`medtl.paths.models_dir`). The name ``"random"`` saves an untrained,
    seeded model (the from-scratch baseline candidate). Returns a table: source, name,
    best_epoch, val_loss, val_auc, seconds. A name that exists already is refused before any
    training (:func:`medtl.models.save_source`) unless ``overwrite``."""
    if not overwrite:  # refuse every clash before the first source trains
        for src in sources:
            M.check_source_name(source_name(src, arch), paths.models_dir(models_dir))
    rows = []
    for src in sources:
        t0 = time.perf_counter()
        if src == RANDOM:
            model = M.create(arch, num_classes=2, seed=seed)
            M.save_source(model, source_name(src, arch), root=paths.models_dir(models_dir), overwrite=overwrite,
                          source_datasets=[],
                          note="random initialisation (no pre-training)")
            rows.append({"source": src, "name": source_name(src, arch), "arch": arch, "best_epoch": 0,
                         "val_loss": float("nan"), "val_auc": float("nan"), "seconds": time.perf_counter() - t0})
            continue
        train = split(src, "train", size, root, n_train, seed)
        val = split(src, "val", size, root, n_val, seed)
        name = source_name(src, arch)
        if progress == "lines":
            print(f"  pre-training {name} on {len(train)} images of {src}", flush=True)
        r = T.pretrain(arch, train, val, name=name, root=paths.models_dir(models_dir), overwrite=overwrite,
                       epochs=epochs,
                       optimizer="adam", lr=lr, schedule=None, batch_size=batch_size, augment=None, patience=None,
                       seed=seed, **fit_progress(progress, name, epochs))
        best = r.history.set_index("epoch").loc[r.best_epoch]
        rows.append({"source": src, "name": name, "arch": arch, "best_epoch": r.best_epoch,
                     "val_loss": best.val_loss, "val_auc": best.val_auc, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def load_sources(sources: Sequence[str], models_dir: str | os.PathLike | None = None,
                 arch: str = "resnet18") -> dict:
    """``{source: model}`` of sources saved by :func:`pretrain_sources`."""
    return {s: M.load_source(source_name(s, arch), root=models_dir) for s in sources}


def score_sources(sources: Sequence[str], target: str, models_dir: str | os.PathLike | None = None,
                  arch: str = "resnet18", size: int = 28, root: str | os.PathLike | None = None,
                  metrics: Sequence[str] | None = None, variant: str = "official", progress: bool = True,
                  **score_kwargs) -> pd.DataFrame:
    """Every metric for every source on the target's fold-1 training subset (tidy table;
    see :func:`medtl.transfer.score`)."""
    train, _, _ = target_fold(target, size, root)
    if progress == "lines":
        print(f"  scoring {len(sources)} sources on {len(train)} images of {target} with "
              f"{len(metrics) if metrics else len(TR.METRICS)} metrics", flush=True)
    table = TR.score(load_sources(sources, models_dir, arch), train, metrics, target_name=Path(str(target)).name,
                     variant=variant, progress=progress is True, **score_kwargs)
    if progress == "lines":
        for src, g in table.groupby("source", sort=False):
            print(f"    {src}: {g.seconds.sum():.1f} s", flush=True)
    return table


def finetune_sources(sources: Sequence[str], target: str, models_dir: str | os.PathLike | None = None,
                     arch: str = "resnet18", size: int = 28, root: str | os.PathLike | None = None,
                     grid: Mapping | str | None = None, epochs: int | None = None, n_test: int | None = None,
                     checkpoint_dir: str | os.PathLike | None = None, seed: int = 0, seeds: Sequence[int] | None = None,
                     progress: bool = True, selection: str = "min_val_loss", **fit_kwargs) -> pd.DataFrame:
    """Fine-tune every source on the target (fold-1 train/val, all layers, fresh head) for
    each configuration of ``grid`` (a mapping, or a preset of
    :data:`medtl.train.GRID_PRESETS`; default lr ∈ {1e-3, 1e-2}, SGD momentum 0.9, wd 1e-4,
    cosine) and seed, evaluate the restored best-AUC checkpoint on val and test, and mark the
    study's ground truth: per source (and seed), the configuration with the minimum val loss
    (``selection``: a rule of :data:`medtl.train.SELECTION_RULES`; ``"min_val_loss_learned"``
    skips runs that did not beat chance on validation, which the demo uses).

    Returns one row per (source, configuration, seed) with ``selected`` and ``learned`` flags."""
    train, val, test = target_fold(target, size, root, n_test=n_test, seed=seed)
    settings = {"epochs": 5, "batch_size": 64, "schedule": "cosine", "monitor": "val_auc", "dropout": 0.0}
    if isinstance(grid, str):
        grid, preset = T.grid_preset(grid, Path(str(target)).name)
        settings.update(preset)
    settings.update(fit_kwargs, **({"epochs": epochs} if epochs is not None else {}))
    dropout = settings.pop("dropout")
    grid = dict(grid or {"lr": [1e-3, 1e-2], "momentum": [0.9], "weight_decay": [1e-4]})
    tables = []
    for src in sources:
        def build(src=src):
            return M.load_source(source_name(src, arch), root=models_dir, num_classes=train.n_classes,
                                 dropout=dropout)

        out = Path(checkpoint_dir) / Path(str(src)).name if checkpoint_dir is not None else None
        if progress == "lines":
            print(f"  fine-tuning {source_name(src, arch)} on {target}: {len(expand_grid(grid)) * len(seeds or [seed])} "
                  f"configuration(s), up to {settings['epochs']} epochs each", flush=True)
        run = {**settings, **fit_progress(progress, source_name(src, arch), settings["epochs"])}
        t = T.grid_search(build, train, val, test, grid, out_dir=out, seeds=seeds or [seed],
                          progress=progress is True, **{k: v for k, v in run.items() if k != "progress"})
        t.insert(0, "source", src)
        t.insert(1, "target", Path(str(target)).name)
        best = T.select(t, selection, by="seed")
        t["selected"] = t.set_index(["config_id", "seed"]).index.isin(best.set_index(["config_id", "seed"]).index)
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def ground_truth(finetuned: pd.DataFrame, value: str = "test_auc") -> pd.DataFrame:
    """sources × targets table of the selected configurations' ``value`` (the mean over
    seeds when several were run)."""
    sel = finetuned[finetuned.selected]
    return sel.pivot_table(index="source", columns="target", values=value, aggfunc="mean")
