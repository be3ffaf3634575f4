"""Truncated transfer learning (Peng et al., BMVC 2023; spec truncated-transfer): TTL cut
sweeps, the FTL and LWFT baselines, the two-stage cut search, and SVCCA per cut."""

from __future__ import annotations

import copy
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


def _train_eval(model: nn.Module, data: tuple, size: int, settings: dict, seed: int, progress, label: str,
                timing: bool = False) -> dict:
    """Fine-tune on ``data`` = (train, val, test) and evaluate on test: the test metrics of
    :func:`_evaluate_cut` and the best checkpoint's validation loss and AUC (what the
    two-stage search chooses on)."""
    train, val, test = data
    r = T.fit(model, train, val, seed=seed, **settings, **fit_progress(progress, label, settings["epochs"]))
    best = r.history.set_index("epoch").loc[r.best_epoch] if len(r.history) else {}
    return {"val_loss": float(best.get("val_loss", np.nan)), "val_auc": float(best.get("val_auc", np.nan)),
            **_evaluate_cut(model, test, size, timing)}


def _sweep_settings(epochs: int, lr: float, fit_kwargs: Mapping) -> dict:
    """The sweeps' fit settings: Adam at ``lr``, batches of 64, the study's augmentation;
    ``fit_kwargs`` override them."""
    return {"epochs": epochs, "optimizer": "adam", "lr": lr, "batch_size": 64, "augment": TTL_RECIPE["augment"],
            **fit_kwargs}


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
    data = _splits(target, size, root, n_train, n_test, seed)
    rows, models = [], {}
    for cut in cuts:
        base = M.load_source(source, root=models_dir)
        model = M.truncate(base, cut, mode=mode, head=head, num_classes=data[0].n_classes, image_size=size)
        settings = _sweep_settings(epochs, lr, fit_kwargs)
        rows.append({"method": "FTL" if cut == -1 else "TTL", "cut": cut, "mode": mode,
                     "head": model.medtl["truncated"]["head"],
                     **_train_eval(model, data, size, settings, seed, progress, f"cut {cut}", timing)})
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
               return_models: bool = False, **fit_kwargs):
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
    One row per freeze point; with ``return_models`` also ``{freeze point: fine-tuned model}``."""
    if setting not in LWFT_SETTINGS:
        raise ValueError(f"setting must be one of {LWFT_SETTINGS}, got {setting!r}")
    data = _splits(target, size, root, n_train, n_test, seed)
    rows, models = [], {}
    for f in freeze_froms:
        model = M.load_source(source, root=models_dir, num_classes=data[0].n_classes,
                              head_init="kaiming" if mode == "block" else "default", seed=seed)
        frozen = M.lwft_freeze(model, f, mode)
        model.medtl["lwft"] = {"freeze_from": f, "mode": mode, "setting": setting}
        settings = {"epochs": epochs, "optimizer": "adam", "batch_size": 64, "augment": TTL_RECIPE["augment"],
                    **fit_kwargs, "lr": lr}
        if setting == "intended":
            settings["lr_groups"] = {"head": lr, "body": lr / ptl_decay}
        else:
            settings["frozen_bn"] = "train"
        rows.append({"method": "LWFT", "cut": f, "mode": mode, "setting": setting, "frozen": ",".join(frozen),
                     **_train_eval(model, data, size, settings, seed, progress, f"LWFT {f}")})
        models[f] = model
    table = pd.DataFrame(rows)
    return (table, models) if return_models else table


def tf_sweep(source: str, target: str, slims: Sequence[int] = (1, 2, 3), mode: str = "block", size: int = 28,
             root: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
             n_train: int | None = 600, n_test: int | None = 400, epochs: int = 3, lr: float = 1e-3, seed: int = 0,
             progress=False, return_models: bool = False, **fit_kwargs):
    """The TF baseline (TransFusion, spec §A.1.4): the saved source slimmed from each of
    ``slims`` (:func:`medtl.models.slim`: block-wise stage s, or layer-wise residual block s),
    fine-tuned and evaluated as :func:`truncation_sweep` does (same recipe, augmentation and
    ``fit_kwargs``). One row per slim point (method ``"TF"``, ``cut`` = s); with
    ``return_models`` also ``{s: fine-tuned model}``."""
    data = _splits(target, size, root, n_train, n_test, seed)
    rows, models = [], {}
    for s in slims:
        model = M.slim(M.load_source(source, root=models_dir), s, mode, num_classes=data[0].n_classes, seed=seed)
        settings = _sweep_settings(epochs, lr, fit_kwargs)
        rows.append({"method": "TF", "cut": s, "mode": mode, "head": "gap",
                     **_train_eval(model, data, size, settings, seed, progress, f"TF {s}")})
        models[s] = model
    table = pd.DataFrame(rows)
    return (table, models) if return_models else table


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


def _kept_path(reference: nn.Module, model: nn.Module, layer: str) -> str | None:
    """Where ``layer`` of ``reference`` is in ``model`` (:func:`medtl.models.truncated_path`);
    a stage a layer-wise cut kept whole (its blocks listed one by one) is read at its last
    block, whose output it is."""
    path = M.truncated_path(model, layer)
    stage = M.get_module(reference, layer)
    if path is None and isinstance(stage, nn.Sequential) and len(stage):
        path = M.truncated_path(model, f"{layer}.{len(stage) - 1}")
    return path


def svcca_per_layer(reference: nn.Module, model: nn.Module, data, layers: Sequence[str], n_points: int = 10_000,
                    keep: float = 0.99, seed: int = 0) -> pd.DataFrame:
    """SVCCA between two models layer by layer on spatial datapoints (every position of
    every image a datapoint, channels the neurons; at most ``n_points`` of them, the same
    for both models), each side SVD-reduced to ``keep`` of its variance (spec §A.3): one row
    per (layer, canonical correlation) with the sorted coefficient ``rho``, its normalised
    rank ``x`` in [0, 1], and the layer's ``auc`` — the area under the sorted-ρ curve (=
    mean ρ). ``model`` may be a truncated copy of ``reference``: layers it dropped are
    skipped, the others are found under its ``body`` (a stage kept whole by a layer-wise cut
    at its last block); an empty table when none is left."""
    mapped = {layer: _kept_path(reference, model, layer) for layer in layers}
    used = [layer for layer in layers if mapped[layer] is not None]
    if not used:
        return pd.DataFrame(columns=["layer", "rho", "x", "auc"])
    fa = F.extract(reference, data, used, pool="none", progress=False)
    fb = F.extract(model, data, [mapped[layer] for layer in used], pool="none", progress=False)
    rows = []
    for layer in used:
        a, b = S.as_datapoints(fa[layer], fb[mapped[layer]], mode="spatial", max_points=n_points, seed=seed)
        rho = np.sort(S.svcca(a, b, keep=keep, return_rho=True).numpy())[::-1]
        x = np.linspace(0, 1, len(rho))
        rows += [{"layer": layer, "rho": float(r), "x": float(xi), "auc": float(rho.mean())} for r, xi in zip(rho, x)]
    return pd.DataFrame(rows)


#: the methods :func:`two_stage_search` searches, and how each reads the search's cut:
#: block-wise t / layer-wise k (stem + k − 1 residual blocks) → its own cut argument.
SEARCH_METHODS = ("TTL", "TF", "LWFT")


def _search_cut(method: str, mode: str, cut: int) -> int:
    """The search's (mode, cut) as ``method``'s own argument: TTL cuts there; TF slims from
    stage t / residual block k − 1 (keeping stem + k − 1 blocks); LWFT freezes stem + layer1..t
    (freeze_from t + 1) / the first k entries."""
    if method == "TTL":
        return cut
    if method == "TF":
        return cut if mode == "block" else cut - 1
    return cut + 1 if mode == "block" else cut


def _search_key(row) -> tuple | None:
    """The search's key of a row already computed by a sweep (None: not a search point)."""
    if row["method"] == "FTL":
        return ("FTL", "block", -1)
    setting = row.get("setting")
    if row["method"] not in SEARCH_METHODS or (isinstance(setting, str) and setting != "intended"):
        return None
    cut = int(row["cut"])
    if row["method"] == "TF":
        return ("TF", row["mode"], cut if row["mode"] == "block" else cut + 1)
    if row["method"] == "LWFT":
        return ("LWFT", row["mode"], cut - 1 if row["mode"] == "block" else cut)
    return ("TTL", row["mode"], cut)


def two_stage_search(source: str, target: str, methods: Sequence[str] = SEARCH_METHODS, on: str = "val_loss",
                     known: pd.DataFrame | None = None, models: Mapping | None = None,
                     **common) -> tuple[pd.DataFrame, pd.DataFrame, dict, pd.DataFrame]:
    """The study's two-stage ("hierarchical") search (spec §A.2, :func:`cut_search`) for TTL,
    TF and LWFT: stage 1 the block-wise points t = 1, 2, 3 and the full model (FTL), stage 2
    every layer-wise point between the block boundaries around the stage-1 winner; points
    chosen on the best checkpoint's ``on`` (``"val_loss"``, lower is better — the study's
    code keeps the checkpoint of least validation loss, and how the paper chose the point is
    unverified — or ``"val_auc"``). Every point is fine-tuned once: rows of ``known`` (a
    sweep's table, e.g. the block-wise cuts) are reused, and FTL is shared by the methods.

    Returns ``(search, selected, winners, trained)``: every evaluated point (method, stage,
    mode, cut, k, the validation value, test AUC / AUPRC, …), the study's rows ``TTL-1`` /
    ``TTL-2``, ``TF-1`` / ``TF-2``, ``LWFT-1`` / ``LWFT-2`` (stage-1 winner, overall winner),
    ``{"TTL-2": model, …}`` the fine-tuned winners when ``models`` (a dict to fill with every
    fine-tuned model by search key) is given, and the sweep rows of the points the search
    fine-tuned itself (each method's own cut coordinates, as :func:`truncation_sweep`,
    :func:`tf_sweep` and :func:`lwft_sweep` write them)."""
    if on not in ("val_loss", "val_auc"):
        raise ValueError(f"on must be 'val_loss' or 'val_auc', got {on!r}")
    bad = [m for m in methods if m not in SEARCH_METHODS]
    if bad:
        raise ValueError(f"methods must be among {SEARCH_METHODS}, got {bad}")
    arch = M.source_info(source, common.get("models_dir"))[1]["arch"]  # the metadata, not the weights
    memo = {} if known is None else {k: r for _, r in known.iterrows() if (k := _search_key(r)) is not None}
    kept = {} if models is None else models
    searches, selected, winners, fresh = [], [], {}, []
    for method in methods:
        def objective(mode, cut, method=method):
            key = ("FTL", "block", -1) if cut == -1 else (method, mode, cut)
            if key not in memo:
                own = _search_cut(method, mode, cut)
                if method == "TF" and cut != -1:
                    table, got = tf_sweep(source, target, [own], mode, return_models=True, **common)
                elif method == "LWFT" and cut != -1:
                    table, got = lwft_sweep(source, target, [own], mode, return_models=True, **common)
                else:
                    table, got = truncation_sweep(source, target, [own], mode, return_models=True, **common)
                memo[key] = table.iloc[0]
                fresh.append(key)
                if models is not None and got:
                    kept[key] = got[own]
            return float(memo[key][on])

        table = cut_search(objective, arch, higher_is_better=on != "val_loss")
        rows = [memo[("FTL", "block", -1) if r.cut == -1 else (method, r.mode, r.cut)] for r in table.itertuples()]
        metrics = pd.DataFrame(rows).reset_index(drop=True).drop(columns=["method", "cut", "mode"], errors="ignore")
        table = pd.concat([table.reset_index(drop=True), metrics], axis=1).assign(method=method)
        searches.append(table)
        stage1 = table[table.stage == 1]
        first = stage1[on].idxmin() if on == "val_loss" else stage1[on].idxmax()
        for label, i in ((f"{method}-1", first), (f"{method}-2", table.index[table.best][0])):
            r = table.loc[i]
            selected.append({**r.drop(["stage", "best", "k"]).to_dict(), "method": label, "cut": int(r.cut),
                             "k": int(r.k)})
            key = ("FTL", "block", -1) if r.cut == -1 else (method, r["mode"], int(r.cut))
            if key in kept:
                winners[label + (" = FTL" if r.cut == -1 else "")] = kept[key]
    return (pd.concat(searches, ignore_index=True), pd.DataFrame(selected), winners,
            pd.DataFrame([memo[k] for k in fresh]))


def _svcca_tables(reference, models: Mapping, winners: Mapping, data, points: int, seed: int) -> dict:
    """SVCCA pretrained ↔ fine-tuned per block for every block-wise cut; per residual block
    of the full fine-tuned model, with a random network of the same architecture as the
    baseline pair (the study's grey boxes); and per block for each method's selected model
    (the study's FTL / TF / LWFT / TTL comparison)."""
    layers = [f"layer{i}" for i in range(1, 5)]
    out = {"svcca": pd.concat([svcca_per_layer(reference, m, data, layers, points, seed=seed).assign(cut=cut)
                               for cut, m in models.items()], ignore_index=True)}
    blocks = [n for n, _ in M.resnet_sequence(reference) if n.startswith("layer")]
    if -1 in models:
        random = M.reinit(copy.deepcopy(reference), "ri", seed=seed + 1)  # same shape and input settings
        out["svcca_blocks"] = pd.concat(
            [svcca_per_layer(reference, m, data, blocks, points, seed=seed).assign(pair=pair)
             for pair, m in (("fine-tuned", models[-1]), ("random", random))], ignore_index=True)
        out["svcca_blocks"]["point"] = out["svcca_blocks"].layer.map({b: i for i, b in enumerate(blocks)})
    if winners:
        out["svcca_methods"] = pd.concat([svcca_per_layer(reference, m, data, layers, points, seed=seed)
                                          .assign(method=label) for label, m in winners.items()], ignore_index=True)
    return out


def truncation_study(source: str, target: str, block_cuts: Sequence[int] = (1, 2, 3, -1),
                     layer_cuts: Sequence[int] = (), lwft: Sequence[int] = (2,), size: int = 28,
                     root: str | os.PathLike | None = None, models_dir: str | os.PathLike | None = None,
                     n_train: int | None = 600, n_test: int | None = 400, epochs: int = 3, lr: float = 1e-3,
                     svcca_points: int = 4000, seed: int = 0, progress=False,
                     fit_kwargs: Mapping | None = None, pooling_ablation: bool = False,
                     search: Sequence[str] = SEARCH_METHODS, search_on: str = "val_loss") -> dict[str, pd.DataFrame]:
    """The whole TTL experiment for one source and target: block-wise (and layer-wise)
    cuts with FTL, the LWFT baseline, the study's two-stage search for each method of
    ``search`` (:func:`two_stage_search`, on ``search_on``: the rows TTL-1/-2, TF-1/-2 and
    LWFT-1/-2; ``()`` skips it), and SVCCA pretrained ↔ fine-tuned (per block for every
    block-wise cut; per residual block of the full model against a random-network baseline,
    the study's ``svcca.png``; per block for FTL and each method's selected model, its
    ``svcca_horizontal.png``). ``pooling_ablation`` repeats the block-wise cuts with the
    other head (Flatten + Linear where the architecture's is GAP + Linear, and vice versa;
    spec §A.5.3, the study's ``pooling.png``).

    Returns ``{"cuts": every method and cut with its head, validation loss/AUC, test AUC,
    AUPRC, params, MACs (the selected rows TTL-1 … as methods), "search": every point the
    search evaluated, "svcca", "svcca_blocks", "svcca_methods": per-layer correlations}``."""
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
    found, winners = pd.DataFrame(), {}
    if search:
        known = pd.concat([t for t in tables if "head" not in t or (t["head"] == blocks["head"].iloc[0]).all()],
                          ignore_index=True)
        kept = {("TTL", "block", c) if c != -1 else ("FTL", "block", -1): m for c, m in models.items()}
        found, chosen, winners, trained = two_stage_search(source, target, search, search_on, known, kept, **common)
        tables += [trained, chosen]
        winners = {"FTL": kept[("FTL", "block", -1)], **{k: v for k, v in winners.items() if "-2" in k}}
        models.setdefault(-1, winners["FTL"])
    reference = M.load_source(source, root=models_dir)
    data = split(target, "test", size, root, min(n_test or 200, 200), seed)
    svcca = _svcca_tables(reference, {c: m for c, m in models.items() if c in block_cuts or c == -1}, winners, data,
                          svcca_points, seed)
    return {"cuts": pd.concat(tables, ignore_index=True), "search": found, **svcca}
