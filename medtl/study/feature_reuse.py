"""The feature-reuse study's protocol (Matsoukas et al., CVPR 2022; spec §C): fine-tune RI,
WT, ST and WT–ST hybrid initialisations of one source on a target at one or more data
fractions, and analyse every layer (k-NN, CKA init↔final, CKA WT↔ST, importance, L2)."""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import pandas as pd
from torch import nn

from .. import data as D
from .. import evaluate as ev
from .. import models as M
from .. import similarity as S
from .. import train as T
from .. import transfer as TR
from ..data import ImageSet
from ..runtime import seeded
from ._data import split

#: The study's fine-tuning recipe (spec §C.3), scaled to medtl's small runs: Adam, weight
#: decay 1e-5 on weights only (biases and norms in a no-decay group), linear warm-up,
#: ReduceLROnPlateau on the validation target metric (×0.1, patience 3), gradient clipping
#: at 1.0, validation every half epoch, the best checkpoint on the target metric (the
#: monitor is set per target by :func:`feature_reuse`), no early stopping. The study warms
#: up over 1,000 iterations of 64-image batches; ``warmup_fraction`` keeps that a fixed
#: share of the run instead (a 3-epoch CPU run has fewer than 1,000 iterations).
STUDY_C_FIT = {"optimizer": "adam", "weight_decay": 1e-5, "no_decay_1d": True, "schedule": "plateau",
               "plateau_on": "monitor", "plateau_patience": 3, "gamma": 0.1, "grad_clip": 1.0,
               "monitor": "val_auc", "batch_size": 64, "patience": None, "val_every": 0.5,
               "augment": "feature-reuse"}


#: the feature-reuse study's target metric by task (spec §C.4): APTOS (DR grade, ordinal)
#: quadratic Cohen κ; ISIC (multi-class) macro recall = balanced accuracy; DDSM and PCam
#: (binary) ROC-AUC; CheXpert (multi-label) mean per-class ROC-AUC. It selects the
#: checkpoint in the study and is the value of its gain ratios and k-NN curves.
TARGET_METRICS = {"ordinal-regression": "kappa", "multi-class": "balanced_accuracy", "binary-class": "auc",
                  "multi-label, binary-class": "auc"}
#: the metrics a feature-reuse run may be judged on (:func:`feature_reuse`'s ``metric``).
METRICS = ("auc", "auc_ovo", "kappa", "balanced_accuracy", "acc")


def target_metric(task: str) -> str:
    """The feature-reuse study's target metric for a task (:data:`TARGET_METRICS`)."""
    if task not in TARGET_METRICS:
        raise ValueError(f"no target metric for task {task!r}; tasks: {', '.join(TARGET_METRICS)}")
    return TARGET_METRICS[task]


def init_label(init: str | int) -> str:
    """``"ri"``/``"wt"``/``"st"``, or ``"wt-st:L"`` for the hybrid keeping groups ≤ L."""
    return f"wt-st:{int(init)}" if isinstance(init, int) and not isinstance(init, bool) else str(init).lower()


def _source(source: str, models_dir, n_classes: int, seed: int) -> nn.Module:
    """The WT start: a saved medtl source (by name, ``source:NAME`` or a ``.pt`` file), or
    any written candidate (:data:`medtl.transfer.SOURCE_GRAMMAR`: ``resnet50`` = its
    ImageNet weights, ``ARCH:WEIGHTS``, ``ARCH:PATH``, …), with a fresh head drawn under
    ``seed``."""
    name = str(source).removeprefix("source:")
    try:
        M.source_info(name, models_dir)
    except FileNotFoundError as saved:
        if str(source).startswith("source:"):
            raise
        try:
            model = TR.load_candidate(source)
        except ValueError as err:
            raise ValueError(f"source {source!r} is neither a saved medtl source ({saved}) nor a candidate medtl "
                             f"can build ({err})") from None
    else:
        return M.load_source(name, root=models_dir, num_classes=n_classes, seed=seed)
    with seeded(seed):
        M.replace_head(model, n_classes)
    return model


def _initialised(source: str, init: str | int, models_dir, n_classes: int, seed: int) -> nn.Module:
    model = _source(source, models_dir, n_classes, seed)
    if isinstance(init, int) and not isinstance(init, bool):
        return M.reinit(model, "st", up_to=init, seed=seed)
    return M.reinit(model, init, seed=seed)


def _fid(source: str, fid_model: str | None, fid_reference: str | None, target: str, size: int, root, models_dir,
         n: int | None, image_size: int | None, seed: int) -> dict:
    """The FID of the target's training images to the reference set (spec §C.4)."""
    if fid_model is None or fid_reference is None:
        return {}
    start = _source(source, models_dir, 2, seed)
    if fid_reference == "source":
        trained_on = TR.training_datasets(start)
        if not trained_on:
            raise ValueError(f"fid_reference='source': {source!r} records no training dataset (ImageNet weights "
                             "record none, and its images are not here); pass fid_reference=<a folder or dataset of "
                             "the source's images, e.g. ImageNet's validation set>, or fid_reference=None (no FID)")
        fid_reference = trained_on[0]
    model = start if fid_model == "source" else TR.load_candidate(fid_model)
    ref, tgt = (split(name, "train", size, root, n, seed) for name in (fid_reference, target))
    value = S.dataset_fid(model.eval(), ref, tgt, image_size=image_size)
    return {"fid": value, "fid_reference": fid_reference, "fid_model": str(fid_model)}


def _scores(model: nn.Module, test: ImageSet) -> dict:
    r = T.evaluate(model, test)
    out = {"auc": r["auc"], "acc": r["acc"]}
    for name in ("kappa", "balanced_accuracy", "auc_ovo"):  # single-label metrics: NaN for multi-label
        out[name] = float("nan")
        if test.task == "multi-label, binary-class":
            continue
        try:
            out[name] = float(getattr(ev, name)(r["y_true"], r["y_score"], test.task))
        except ValueError:  # a class absent from a tiny test subset: stays NaN
            pass
    return out


def _curves(model, start, before, train, test, granularity, knn_k, tau, token_mode, cka_seed,
            metric: str) -> list[pd.DataFrame]:
    a = M.arch_of(model)
    layers = list(a.layer_list(granularity))
    knn = S.layerwise_knn(model, train, test, layers, k=knn_k, tau=tau, pool=token_mode)
    out = [knn.assign(value=knn[metric])[["layer", "depth", "value"]].assign(analysis=f"knn_{metric}")]
    if model.medtl.get("init") != "ri":  # the study refuses importance for RI (no pre-trained start)
        imp = S.layer_importance(model, start, test, layers)
        imp = imp[imp.layer != "(none)"].reset_index(drop=True)
        out.append(imp.assign(depth=imp.index, value=imp.auc_drop)[["layer", "depth", "value"]]
                   .assign(analysis="importance_auc_drop"))
    l2 = S.l2_distance(start, model.state_dict(), layers, arch=a.name)
    out.append(l2.assign(depth=l2.index, value=l2.l2)[["layer", "depth", "value"]].assign(analysis="l2"))
    no_head = [layer for layer in layers if layer != a.head]  # spec: every target module but fc
    cka = S.cka_study_matrix(before, model, test, no_head, seed=cka_seed)
    out.append(cka.rename(columns={"layer_a": "layer", "depth_a": "depth"})[["layer", "depth", "value"]]
               .assign(analysis="cka_init_final"))
    return out


def _run(source, inits, models_dir, train, val, test, metric, epochs, lr, warmup_fraction, augment, granularity,
         knn_k, tau, token_mode, seed, progress) -> tuple[list[dict], list[pd.DataFrame]]:
    """One run (one seed) of every init at one data fraction: scores and layer curves."""
    rows, curves, tuned = [], [], {}
    for init in inits:
        label = init_label(init)
        model = _initialised(source, init, models_dir, train.n_classes, seed)
        start = {k: v.detach().clone() for k, v in model.state_dict().items()}
        before = copy.deepcopy(model)
        steps = max(1, round(warmup_fraction * epochs * -(-len(train) // STUDY_C_FIT["batch_size"])))
        T.fit(model, train, val, epochs=epochs, lr=lr, warmup_steps=steps, seed=seed, progress=progress,
              **{**STUDY_C_FIT, "monitor": f"val_{metric}", "augment": augment})
        rows.append({"init": label, "arch": model.medtl["arch"], **_scores(model, test)})
        curves += [c.assign(init=label) for c in _curves(model, start, before, train, test, granularity,
                                                         min(knn_k, len(train)), tau, token_mode, seed, metric)]
        tuned[label] = model
    if "wt" in tuned and "st" in tuned:
        a = M.arch_of(tuned["wt"])
        layers = [layer for layer in a.layer_list(granularity) if layer != a.head]
        cross = S.cka_study_matrix(tuned["wt"], tuned["st"], test, layers, seed=seed)
        curves.append(cross.rename(columns={"layer_a": "layer", "depth_a": "depth"})[["layer", "depth", "value"]]
                      .assign(analysis="cka_wt_st", init="wt↔st"))
    return rows, curves


def _check(fractions, metric, runs) -> None:
    """:func:`feature_reuse`'s arguments that are checked before anything runs."""
    if not fractions or any(not 0 < float(f) <= 1 for f in fractions):
        raise ValueError(f"fractions must be in (0, 1], got {list(fractions)!r}")
    if metric is not None and metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS} (or None: the study's for the task), got {metric!r}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer (the study: 5), got {runs!r}")


def feature_reuse(source: str, target: str, size: int = 28, root: str | os.PathLike | None = None,
                  models_dir: str | os.PathLike | None = None, inits: Sequence[str | int] = ("ri", "wt", "st"),
                  fractions: Sequence[float] = (1.0,), granularity: str = "block", n_train: int | None = 600,
                  n_test: int | None = 400, epochs: int = 3, lr: float = 1e-4, warmup_fraction: float = 0.1,
                  knn_k: int = 200, tau: float = 0.1, token_mode: str = "cls", seed: int = 0,
                  progress: bool = False, metric: str | None = None,
                  augment: str | D.Augment | None = "feature-reuse", runs: int = 5,
                  fid_model: str | None = "inception_v3", fid_reference: str | None = "source",
                  fid_n: int | None = 1000, fid_size: int | None = 299) -> dict[str, pd.DataFrame]:
    """RI / WT / ST (and WT–ST hybrids: an integer L in ``inits`` keeps groups ≤ L, see
    :func:`medtl.models.reinit`) from ``source`` fine-tuned on ``target`` with the study's
    recipe (:data:`STUDY_C_FIT`), ``runs`` times (seeds ``seed``, ``seed + 1``, …; the
    study's five runs by default), for every training-data ``fraction`` (a seeded stratified
    subset of ``n_train`` images, the same for every run); then, per layer of the table at
    ``granularity`` (``"block"``, the study's target modules, §C.5.2: a ResNet's ``conv1``
    output (before BN), its 16 bottlenecks and ``fc``; a ViT's or Swin's attention and MLP
    branch outputs (before the residual add); ``"residual"`` the residual stream instead):

    * ``knn_<metric>`` — weighted k-NN probe (k = 200, τ = 0.1 as the study; transformers'
      token sequences pooled by ``token_mode``: ``"cls"``, ``"patches"`` or ``"all"``),
      judged on the target metric;
    * ``importance_auc_drop`` — test-AUC drop when the layer is put back to its start
      state (not for RI, as the study);
    * ``l2`` — weight distance start → final per layer;
    * ``cka_init_final`` — the study CKA (un-pooled, batches of 64) of the layer before vs
      after fine-tuning;
    * ``cka_wt_st`` — the study CKA between the fine-tuned WT and ST models (when both ran).

    ``source`` is the WT start: a saved medtl source, or any written candidate
    (:data:`medtl.transfer.SOURCE_GRAMMAR`), e.g. ``"resnet50"`` for its ImageNet weights as
    the study (no hand-saved source needed).

    ``metric`` is the target metric the gain ratios and the k-NN curves are computed on:
    by default the study's for the target's task (:func:`target_metric`: κ for ordinal
    grades, balanced accuracy for multi-class, ROC-AUC for binary and multi-label targets),
    or any of :data:`METRICS`; the checkpoint is chosen on it too, validating every half
    epoch, as the study.

    ``augment`` is the training augmentation: the study's (:data:`medtl.data.RECIPES`
    ``"feature-reuse"``: RandomResizedCrop 0.8–1.2, vertical and horizontal flips,
    ColorJitter(0.2, 0.2, 0.1, 0.1) on 20 %, RandomGrayscale 0.2) by default; another recipe
    name, an :class:`medtl.data.Augment`, or None (a named deviation: no augmentation).

    The domain distance (spec §C.4, the bubble figure's axis): the Fréchet distance
    (:func:`medtl.similarity.dataset_fid`) between ``fid_n`` training images of the target
    and of ``fid_reference`` (``"source"``: the dataset the source was trained on, from its
    metadata; ImageNet weights record none, so pass a folder of ImageNet images), in the
    features of ``fid_model`` (``"inception_v3"``: ImageNet Inception-v3 pool3 at
    ``fid_size`` = 299 px, the FID proper; ``"source"``: the source model's own penultimate
    features; any candidate) — loaded before any training, so a missing file stops the run
    at once. ``fid_model=None`` or ``fid_reference=None``: no FID.

    Returns ``{"aucs": one row per (fraction, run, init) with test AUC, ACC, κ, balanced
    accuracy and one-vs-one AUC and the target metric's name, "layers": tidy curves
    (fraction, run, init, analysis, layer, depth, value), "ratios": WT/RI and (WT−ST)/WT of
    the target metric's mean over runs per fraction, their standard deviations over runs,
    and the FID}``."""
    _check(fractions, metric, runs)
    fid = _fid(source, fid_model, fid_reference, target, size, root, models_dir, fid_n, fid_size, seed)
    test = split(target, "test", size, root, n_test, seed)
    metric = metric or target_metric(test.task)
    rows, curves = [], []
    for fraction in fractions:
        n = None if n_train is None and fraction == 1 else max(8, round((n_train or 10**9) * float(fraction)))
        train = split(target, "train", size, root, n, seed)
        val = split(target, "val", size, root, max(len(train) // 4, 40), seed)
        for r in range(runs):
            got, layer_curves = _run(source, inits, models_dir, train, val, test, metric, epochs, lr, warmup_fraction,
                                     augment, granularity, knn_k, tau, token_mode, seed + r, progress)
            keys = {"fraction": float(fraction), "run": r}
            rows += [{**keys, "n_train": len(train), "dataset": target, "target_metric": metric, **row} for row in got]
            curves += [c.assign(**keys) for c in layer_curves]
    aucs = pd.DataFrame(rows)
    ratios = S.gain_ratios(aucs, value=metric, by=("arch", "dataset", "fraction")).assign(metric=metric, **fid) \
        if {"ri", "wt", "st"} <= set(aucs.init) else pd.DataFrame()
    return {"aucs": aucs, "layers": pd.concat(curves, ignore_index=True), "ratios": ratios}
