"""The dataset-transferability study's scenario B on medtl's own runs: candidate
*architectures* (ImageNet weights, or any weight source) scored on a target and fine-tuned
for the ground truth, evaluated with the cross-domain (reversed) LP×FU and an explicit
sign preset."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import pandas as pd

from .. import models as M
from .. import train as T
from .. import transfer as TR
from ..runtime import expand_grid
from ._data import fit_progress, target_fold

#: Sign presets for scenario B: metrics scored as 1 − score. ``"study-b"`` is the study's
#: choice (LEEP, PARC, NCTI and N-LEEP reversed: their raw τ_w was negative on average);
#: ``"none"`` uses every metric as it is. Never applied unless named.
SIGN_PRESETS: dict[str, tuple[str, ...]] = {"none": (), "study-b": ("parc", "ncti", "leep", "nleep")}


def apply_signs(scores: pd.DataFrame, signs: str) -> pd.DataFrame:
    """A tidy score table with the preset's metrics reversed (value → 1 − value), the preset
    recorded in a ``signs`` column."""
    if signs not in SIGN_PRESETS:
        raise ValueError(f"unknown sign preset {signs!r}; valid: {', '.join(SIGN_PRESETS)}")
    return TR.flip(scores, SIGN_PRESETS[signs]).assign(signs=signs)


def _build(arch: str, weights, num_classes: int | None, size: int, seed: int):
    a = M.spec(arch)
    stem = "imagenet" if size >= a.min_size else "cifar"
    return M.create(a.name, num_classes=num_classes, weights=weights, stem=stem, image_size=size, seed=seed)


def score_architectures(archs: Sequence[str], target: str, weights=None, size: int = 28,
                        root: str | os.PathLike | None = None, metrics: Sequence[str] | None = None,
                        reverse_lp_fu: bool = True, seed: int = 0, progress=True) -> pd.DataFrame:
    """Every metric for every architecture (built with ``weights``: ``"imagenet"``, a
    checkpoint, None for a seeded random init; the source head is kept for LEEP) on the
    target's training subset; LP×FU in its cross-domain direction unless
    ``reverse_lp_fu=False``. Raw scores: sign presets are applied by :func:`apply_signs`."""
    train, _, _ = target_fold(target, size, root)
    sources = {a: _build(a, weights, None, size, seed) for a in archs}
    return TR.score(sources, train, metrics, target_name=str(target), reverse_lp_fu=reverse_lp_fu,
                    progress=progress is True, seed=seed)


def finetune_architectures(archs: Sequence[str], target: str, weights=None, size: int = 28,
                           root: str | os.PathLike | None = None, grid: Mapping | str | None = None,
                           epochs: int = 5, seed: int = 0, progress=True, **fit_kwargs) -> pd.DataFrame:
    """Fine-tune each architecture (``weights``, a fresh head) on the target for every
    configuration of ``grid`` (a mapping or a preset such as ``"study-b"``) and mark the
    minimum-validation-loss configuration per architecture."""
    train, val, test = target_fold(target, size, root, seed=seed)
    settings = {"epochs": epochs, "batch_size": 64, "schedule": "cosine", "monitor": "val_auc"}
    if isinstance(grid, str):
        grid, preset = T.grid_preset(grid, str(target))
        preset.pop("dropout", None)
        settings.update(preset)
    settings.update(fit_kwargs)
    grid = dict(grid or {"lr": [1e-3, 1e-2], "momentum": [0.9], "weight_decay": [1e-4]})
    tables = []
    for arch in archs:
        if progress == "lines":
            print(f"  fine-tuning {arch} on {target}: {len(expand_grid(grid))} configuration(s)", flush=True)
        run = {**settings, **fit_progress(progress, arch, settings["epochs"])}
        t = T.grid_search(lambda arch=arch: _build(arch, weights, train.n_classes, size, seed), train, val, test, grid,
                          progress=progress is True, **{k: v for k, v in run.items() if k != "progress"})
        t.insert(0, "source", arch)
        t.insert(1, "target", str(target))
        best = T.select(t)
        t["selected"] = t.config_id == best.config_id
        tables.append(t)
    return pd.concat(tables, ignore_index=True)


def evaluate_architectures(scores: pd.DataFrame, finetune: pd.DataFrame, signs: str = "none") -> pd.DataFrame:
    """τ_w (and the other correlations) per metric of a scenario-B run under a sign preset."""
    gt = finetune[finetune.selected].pivot_table(index="source", columns="target", values="test_auc")
    return TR.correlate(apply_signs(scores[scores.metric != "features"], signs), gt).assign(signs=signs)
