"""Truncated transfer learning (Peng et al., BMVC 2023; spec truncated-transfer): TTL cut
sweeps, the FTL and LWFT baselines, the two-stage cut search, and SVCCA per cut."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from .. import evaluate as E
from .. import features as F
from .. import models as M
from .. import similarity as S
from .. import train as T
from ._data import fit_progress, split

#: The study's training recipe (spec §A.4.4): Adam 1e-4, plateau ×0.5 (patience 5) on val
#: loss, stop once the lr falls below 1e-6, class-weighted CE, best = min val loss; the
#: study's training augmentation (§A.4.2: RandomResizedCrop with torchvision's defaults, then
#: a horizontal flip; ``medtl.data.RECIPES["truncated-transfer"]``).
TTL_RECIPE: dict = {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "schedule": "plateau", "gamma": 0.5,
                    "plateau_patience": 5, "stop_lr": 1e-6, "class_weights": "balanced", "monitor": "val_loss",
                    "epochs": 200, "batch_size": 256, "augment": "truncated-transfer"}


def _evaluate_cut(model: nn.Module, test, image_size: int, timing: bool) -> dict:
    r = T.evaluate(model, test)
    out = {"auc": r["auc"], "acc": r["acc"]}
    for method in ("ap", "trapezoid"):
        try:
            out[f"auprc_{method}"] = E.auprc(r["y_true"], r["y_score"], test.task, method)
        except ValueError:
            out[f"auprc_{method}"] = np.nan
    cost = M.complexity(model, image_size, repeats=3 if timing else 1)
    out.update(params=cost["params"], macs=cost["macs"], ms_per_image=cost["ms_per_image"] if timing else np.nan)
    return out


def _splits(target, size, root, n_train, n_test, seed):
    train = split(target, "train", size, root, n_train, seed)
    val = split(target, "val", size, root, max((n_train or 160) // 4, 40), seed)
    return train, val, split(target, "test", size, root, n_test, seed)


def truncation_sweep(source: str, target: str, cuts: Sequence[int] = (1, 2, 3, -1), mode: str = "block",
                     head: str | None = None, size: int = 28, root: str | os.PathLike | None = None,
                     models_dir: str | os.PathLike | None = None, n_train: int | None = 600, n_test: int | None = 400,
                     epochs: int = 3, lr: float = 1e-3, seed: int = 0, progress=False, timing: bool = False,
                     return_models: bool = False, **fit_kwargs):
    """Cut the saved source after each of ``cuts`` (TTL, :func:`medtl.models.truncate`;
    ``-1`` is the full model, the FTL baseline), add the study's head, fine-tune and evaluate
    on the target's test subset. ``fit_kwargs`` override the recipe (default Adam ``lr``
    with the study's training augmentation; :data:`TTL_RECIPE` is the study's whole recipe;
    ``augment=None`` is a named deviation: no augmentation). Returns one row per cut: method, cut, mode, params,
    MACs, AUC, AUPRC (average precision and trapezoid), ACC (and ms per image with
    ``timing``); with ``return_models`` also ``{cut: fine-tuned model}``."""
    train, val, test = _splits(target, size, root, n_train, n_test, seed)
    rows, models = [], {}
    for cut in cuts:
        base = M.load_source(source, root=models_dir)
        model = M.truncate(base, cut, mode=mode, head=head, num_classes=train.n_classes, image_size=size)
        settings = {"epochs": epochs, "optimizer": "adam", "lr": lr, "batch_size": 64,
                    "augment": TTL_RECIPE["augment"], **fit_kwargs}
        T.fit(model, train, val, seed=seed, **settings, **fit_progress(progress, f"cut {cut}", settings["epochs"]))
        rows.append({"method": "FTL" if cut == -1 else "TTL", "cut": cut, "mode": mode,
                     "head": model.medtl["truncated"]["head"], **_evaluate_cut(model, test, size, timing)})
        models[cut] = model
    table = pd.DataFrame(rows)
    return (table, models) if return_models else table


#: how :func:`lwft_sweep` trains: ``"intended"`` (the study's code as written, and the correct
#: method: head at ``lr``, backbone at ``lr / ptl_decay``, frozen norm layers frozen) or
#: ``"published"`` (what every published run did, spec §A.1.4 / §A.4.4: one lr for all
#: parameters because DataParallel hid the parameter groups, and frozen BN layers' running
#: statistics drifting because the model stays in train mode).
LWFT_SETTINGS = ("intended", "published")


def lwft_sweep(source: str, target: str, freeze_froms: Sequence[int] = (1, 2, 3, 4, 5), mode: str = "block",
               ptl_decay: float = 10.0, size: int = 28, root: str | os.PathLike | None = None,
               models_dir: str | os.PathLike | None = None, n_train: int | None = 600, n_test: int | None = 400,
               epochs: int = 3, lr: float = 1e-3, seed: int = 0, progress=False, setting: str = "intended",
               **fit_kwargs) -> pd.DataFrame:
    """The LWFT baseline: freeze the bottom of the saved source (:func:`medtl.models.lwft_freeze`)
    and fine-tune the rest. ``setting="intended"`` (default, the correct method): two
    parameter groups as the study's code intended — the head at ``lr``, the backbone at
    ``lr / ptl_decay`` (the original's DataParallel wrapping dropped the groups; medtl builds
    them from the model) — and frozen norm layers kept in eval mode (bit-identical).
    ``setting="published"`` reproduces the published runs: one ``lr`` for every parameter and
    the frozen BN layers' running statistics updating. The head is Kaiming-normal for
    block-wise LWFT (as the study's block-wise heads) and PyTorch's default for layer-wise
    (``Flatten → Linear`` with default init, spec §A.1.4). Training uses the study's
    augmentation (``fit_kwargs`` ``augment=`` overrides it, as in :func:`truncation_sweep`).
    One row per freeze point."""
    if setting not in LWFT_SETTINGS:
        raise ValueError(f"setting must be one of {LWFT_SETTINGS}, got {setting!r}")
    train, val, test = _splits(target, size, root, n_train, n_test, seed)
    rows = []
    for f in freeze_froms:
        model = M.load_source(source, root=models_dir, num_classes=train.n_classes,
                              head_init="kaiming" if mode == "block" else "default", seed=seed)
        frozen = M.lwft_freeze(model, f, mode)
        settings = {"epochs": epochs, "optimizer": "adam", "batch_size": 64, "augment": TTL_RECIPE["augment"],
                    **fit_kwargs, "lr": lr}
        if setting == "intended":
            settings["lr_groups"] = {"head": lr, "body": lr / ptl_decay}
        else:
            settings["frozen_bn"] = "train"
        T.fit(model, train, val, seed=seed, **settings, **fit_progress(progress, f"LWFT {f}", settings["epochs"]))
        rows.append({"method": "LWFT", "cut": f, "mode": mode, "setting": setting, "frozen": ",".join(frozen),
                     **_evaluate_cut(model, test, size, False)})
    return pd.DataFrame(rows)


#: ResNet-50's block boundaries in the layer-wise cut index (spec §A.1.2): the stem, then
#: the ends of layer1..layer4; block-wise cut t corresponds to layer-wise cut BOUNDARIES[t].
BOUNDARIES = {"resnet50": (1, 4, 8, 14, 17), "resnet18": (1, 3, 5, 7, 9)}


def cut_search(objective: Callable[[str, int], float], arch: str = "resnet50", higher_is_better: bool = True,
               include_full: bool = True) -> pd.DataFrame:
    """The study's two-stage ("hierarchical") truncation-point search (spec §A.2):

    1. block level: ``objective("block", t)`` for t = 1, 2, 3 (and -1, the full model);
    2. layer level: every layer-wise cut k strictly between the block boundaries on either
       side of the stage-1 winner (e.g. winner t=3 = k 14 on ResNet-50 → k 9..16), each
       ``objective("layer", k)``.

    ``objective`` returns a validation score (higher is better unless told). Returns every
    evaluated cut (stage, mode, cut, layer index k, value, best) in evaluation order."""
    bounds = BOUNDARIES.get(M.spec(arch).name)
    if bounds is None:
        raise ValueError(f"the cut search is defined for {', '.join(BOUNDARIES)}, not {arch}")
    better = (lambda a, b: a > b) if higher_is_better else (lambda a, b: a < b)
    rows = []
    for t in (1, 2, 3, *((-1,) if include_full else ())):
        rows.append({"stage": 1, "mode": "block", "cut": t, "k": bounds[t] if t != -1 else bounds[4] + 1,
                     "value": float(objective("block", t))})
    winner = rows[0]
    for r in rows[1:]:
        if better(r["value"], winner["value"]):
            winner = r
    if winner["cut"] != -1:
        i = winner["cut"]
        lo, hi = bounds[i - 1], bounds[min(i + 1, 4)]
        for k in range(lo + 1, hi):
            if k != winner["k"]:
                rows.append({"stage": 2, "mode": "layer", "cut": k, "k": k, "value": float(objective("layer", k))})
    table = pd.DataFrame(rows)
    best = table.value.idxmax() if higher_is_better else table.value.idxmin()
    table["best"] = table.index == best
    return table


def svcca_per_layer(reference: nn.Module, model: nn.Module, data, layers: Sequence[str], n_points: int = 10_000,
                    keep: float = 0.99, seed: int = 0) -> pd.DataFrame:
    """SVCCA between two models layer by layer on spatial datapoints (every position of
    every image a datapoint, channels the neurons; at most ``n_points`` of them, the same
    for both models), each side SVD-reduced to ``keep`` of its variance (spec §A.3): one row
    per (layer, canonical correlation) with the sorted coefficient ``rho``, its normalised
    rank ``x`` in [0, 1], and the layer's ``auc`` — the area under the sorted-ρ curve (=
    mean ρ). ``model`` may be a truncated copy of ``reference``: layers it dropped are
    skipped, the others are found under its ``body``."""
    mapped = {layer: M.truncated_path(model, layer) for layer in layers}
    used = [layer for layer in layers if mapped[layer] is not None]
    fa = F.extract(reference, data, used, pool="none", progress=False)
    fb = F.extract(model, data, [mapped[layer] for layer in used], pool="none", progress=False)
    rows = []
    for layer in used:
        a, b = S.as_datapoints(fa[layer], fb[mapped[layer]], mode="spatial", max_points=n_points, seed=seed)
        rho = np.sort(S.svcca(a, b, keep=keep, return_rho=True).numpy())[::-1]
        x = np.linspace(0, 1, len(rho))
        rows += [{"layer": layer, "rho": float(r), "x": float(xi), "auc": float(rho.mean())} for r, xi in zip(rho, x)]
    return pd.DataFrame(rows)


def truncation_study(source: str, target: str, block_cuts: Sequence[int] = (1, 2, 3, -1),
                     layer_cuts: Sequence[int] = (), lwft: Sequence[int] = (2,), size: int = 28,
                     root: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
                     n_train: int | None = 600, n_test: int | None = 400, epochs: int = 3, lr: float = 1e-3,
                     svcca_points: int = 4000, seed: int = 0, progress=False,
                     fit_kwargs: Mapping | None = None, pooling_ablation: bool = False) -> dict[str, pd.DataFrame]:
    """The whole TTL experiment for one source and target: block-wise (and layer-wise)
    cuts with FTL, the LWFT baseline, and SVCCA pretrained ↔ fine-tuned per block for every
    block-wise cut. ``pooling_ablation`` repeats the block-wise cuts with the other head
    (Flatten + Linear where the architecture's is GAP + Linear, and vice versa; spec §A.5.3,
    the study's ``pooling.png``). Returns ``{"cuts": every method and cut with its head, AUC,
    AUPRC, params, MACs, "svcca": per (cut, layer) correlations}``."""
    kw = dict(fit_kwargs or {})
    common = dict(size=size, root=root, models_dir=models_dir, n_train=n_train, n_test=n_test, epochs=epochs, lr=lr,
                  seed=seed, progress=progress, **kw)
    blocks, models = truncation_sweep(source, target, block_cuts, "block", return_models=True, **common)
    tables = [blocks]
    if pooling_ablation:
        other = "flatten" if blocks["head"].iloc[0] == "gap" else "gap"
        tables.append(truncation_sweep(source, target, block_cuts, "block", head=other, **common))
    if layer_cuts:
        tables.append(truncation_sweep(source, target, layer_cuts, "layer", **common))
    if lwft:
        tables.append(lwft_sweep(source, target, lwft, "block", **common))
    reference = M.load_source(source, root=models_dir)
    layers = [f"layer{i}" for i in range(1, 5)]
    data = split(target, "test", size, root, min(n_test or 200, 200), seed)
    svcca = pd.concat([svcca_per_layer(reference, m, data, layers, svcca_points, seed=seed).assign(cut=cut)
                       for cut, m in models.items()], ignore_index=True)
    return {"cuts": pd.concat(tables, ignore_index=True), "svcca": svcca}

