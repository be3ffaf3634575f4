"""The benchmark study's protocol (spec ``benchmark-transfer.md`` §3–4): initialisations ×
targets × seeded trials, a classification arm (sigmoid/BCE heads initialised N(0, 0.01),
Adam 2e-4, plateau ×0.5 after 5 epochs, early stop after 10, optional TenCrop) and a
segmentation arm (U-Net, Adam 1e-3 with cosine annealing, Dice loss, early stop after 20),
and the comparison of every initialisation with a baseline by two-sample t-tests.

Deviation from the study's code, on purpose: every trial is seeded and its seed recorded
(the study set no seed); results are tidy long tables (one row per trial and metric) with
bootstrap intervals over the test images.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .. import evaluate as ev
from .. import models as M
from ..data import BINARY, SYNTHETIC_SEG, ImageSet, SegSet, from_seg_folder, synthetic_seg
from ..train import evaluate, fit

#: ``fit`` settings of the study's classification arm (§3); ``epochs`` is the caller's
#: budget (the study: up to 1000, ended by early stopping).
BENCHMARK_FIT = {"optimizer": "adam", "lr": 2e-4, "weight_decay": 0.0, "schedule": "plateau", "gamma": 0.5,
                 "plateau_patience": 5, "plateau_on": "val_loss", "monitor": "val_loss", "patience": 10,
                 "loss": "bce", "batch_size": 32, "augment": "benchmark"}
#: ``fit`` settings of the segmentation arm (§4): cosine annealing stands in for the study's
#: manual per-epoch cosine; Dice loss (the study's BCE for DRIVE: ``loss="bce"``).
SEGMENT_FIT = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "schedule": "cosine", "monitor": "val_loss",
               "patience": 20, "loss": "dice", "batch_size": 32, "augment": "segmentation"}
#: The initialisation name meaning "no pre-training".
SCRATCH = "random"
#: The kind of the ``random`` initialisation in the comparison figures (:func:`init_kinds`).
SCRATCH_KIND = "scratch"


def init_weights(init: str):
    """The ``weights=`` argument for an initialisation name (``"random"`` → None)."""
    return None if init in (SCRATCH, "scratch", None) else init


def init_kinds(inits: Sequence[str], kinds: Mapping[str, str] | None = None) -> dict[str, str]:
    """Each initialisation's kind, the grouping of the study's comparison figures:
    ``"scratch"`` for ``random``; the zoo row's category (:data:`medtl.models.CATEGORIES`:
    supervised, self-supervised, fine-grained, in-domain, domain-adaptive), ``imagenet`` and
    ``imagenet:WEIGHTS`` supervised; ``kinds`` gives (or overrides) the kind of any other
    (``source:NAME``, a checkpoint path); ``""`` when unknown."""
    kinds = dict(kinds or {})
    bad = {k: v for k, v in kinds.items() if v not in (SCRATCH_KIND, *M.CATEGORIES)}
    if bad:
        raise ValueError(f"unknown initialisation kind(s) {bad}; kinds: {', '.join((SCRATCH_KIND, *M.CATEGORIES))}")
    out = {}
    for init in inits:
        if init in kinds:
            out[init] = kinds[init]
        elif init == SCRATCH:
            out[init] = SCRATCH_KIND
        elif init.split(":")[0] == "imagenet":
            out[init] = "supervised"
        else:
            out[init] = M.get_init(init).category if M.is_init(init) else ""
    return out


def check_inits(inits: Sequence[str], arch: str = "resnet50") -> tuple[list[str], pd.DataFrame]:
    """Which initialisations can be loaded here, without building any: ``random``; ImageNet
    when torchvision's file is cached; zoo names whose file is in the weights cache; saved
    medtl sources (``source:NAME``); checkpoint paths. Returns the present names and a table
    of the absent ones with the reason (what to fetch or place where)."""
    present, missing = [], []
    for init in inits:
        try:
            _check_init(init, arch)
            present.append(init)
        except (FileNotFoundError, ValueError) as err:
            missing.append({"init": init, "reason": str(err)})
    return present, pd.DataFrame(missing, columns=["init", "reason"])


def _check_init(init: str, arch: str) -> None:
    if init_weights(init) is None:
        return
    if init.split(":")[0] == "imagenet":
        weights = M.imagenet_weights(M.spec(arch).name, init.split(":", 1)[1] if ":" in init else "IMAGENET1K_V1")
        if not M.imagenet_file(weights).is_file():
            raise FileNotFoundError(f"ImageNet weights of {arch} are not cached: place {M.imagenet_file(weights)}")
    elif M.is_init(init):
        M.init_file(init, M.spec(arch).name)
    elif init.startswith("source:"):
        M.source_info(init[len("source:"):])
    elif not Path(init).is_file():
        raise FileNotFoundError(f"{init!r} is neither random, imagenet, a zoo name, source:NAME nor a file")


def _fit_settings(recipe: dict, overrides: dict, seed: int, epochs: int, progress: bool) -> dict:
    return {**recipe, **overrides, "seed": seed, "epochs": epochs, "progress": progress}


def classify_trials(init: str, arch: str, train: ImageSet, val: ImageSet, test: ImageSet,
                    seeds: Sequence[int] = (0, 1, 2), *, epochs: int = 100, image_size: int | None = None,
                    stem: str = "imagenet", tencrop: int | None = None, tencrop_resize: int | None = None,
                    label_columns: Sequence[int] | None = None, n_boot: int = 200, progress: bool = False,
                    binary_outputs: int = 1, normalize: str = "imagenet", eval_crop: float | None = 224 / 256,
                    **fit_overrides) -> pd.DataFrame:
    """N seeded trials of one initialisation on one classification target (§3).

    Each trial builds ``arch`` with ``init``'s weights and a fresh head initialised
    N(0, 0.01) (seeded) — on a binary target one sigmoid output, the study's
    ``Linear(2048→1)`` + BCE (``binary_outputs=2``: two sigmoid outputs on one-hot targets, a
    named deviation) —, normalises every initialisation's input with ``normalize``
    (ImageNet's mean and std, as the study does for all 21 and for random initialisation),
    validates and tests on the study's evaluation transform (``eval_crop``: resize so the
    input size is that fraction of each side, then the central crop — Resize 256 →
    CenterCrop 224 at 224 px; None: the whole image resized), fine-tunes everything with :data:`BENCHMARK_FIT` (overridable), and
    scores the best-validation-loss checkpoint on ``test``: the mean over classes (or over
    ``label_columns``, e.g. CheXpert's 5) of the per-class AUC, with a percentile-bootstrap
    interval over test images. ``tencrop=c`` evaluates with TenCrop at ``c`` px on images
    resized to ``tencrop_resize`` (default ``round(c · 256/224)``, the study's ratio).

    Returns one row per trial: arm, target, init, arch, trial, seed, metric (``"auc"``),
    value, low, high, per_class (JSON), best_epoch, stopped_epoch, stop_reason, seconds.
    """
    if binary_outputs not in (1, 2):
        raise ValueError(f"binary_outputs must be 1 (one sigmoid, the study's) or 2, got {binary_outputs!r}")
    n_out = 1 if train.task == BINARY and binary_outputs == 1 else train.n_classes
    rows = []
    for trial, seed in enumerate(seeds):
        t0 = time.perf_counter()
        model = M.create(arch, num_classes=n_out, weights=init_weights(init), in_chans=3, stem=stem,
                         image_size=image_size, seed=int(seed), head_init="normal")
        model.medtl["normalize"] = normalize  # training, validation and test read it from the model
        if eval_crop is not None:
            model.medtl["eval_crop"] = float(eval_crop)  # validation and test (training is augmented)
        result = fit(model, train, val, image_size=image_size, channels=3,
                     **_fit_settings(BENCHMARK_FIT, fit_overrides, int(seed), epochs, progress))
        size = image_size
        if tencrop is not None:
            size = tencrop_resize or int(round(tencrop * 256 / 224))
        r = evaluate(model, test, image_size=size, channels=3, tencrop=tencrop)
        per = ev.per_class_auc(r["y_true"], r["y_score"], test.task, label_columns)
        ci = _auc_interval(r["y_true"], r["y_score"], test.task, label_columns, n_boot, int(seed))
        rows.append({"arm": "classification", "target": test.name.split("/")[0], "init": init, "arch": arch,
                     "trial": trial, "seed": int(seed), "metric": "auc", "value": float(np.nanmean(per)), **ci,
                     "per_class": json.dumps([None if np.isnan(v) else round(float(v), 6) for v in per]),
                     "best_epoch": result.best_epoch, "stopped_epoch": result.stopped_epoch,
                     "stop_reason": result.stop_reason, "seconds": time.perf_counter() - t0})
    return pd.DataFrame(rows)


def _auc_interval(y_true, y_score, task: str, columns, n_boot: int, seed: int) -> dict:
    if n_boot < 2:
        return {"low": np.nan, "high": np.nan}
    if columns is not None:
        if task != ev.MULTI_LABEL:
            raise ValueError("label_columns applies to multi-label targets")
        cols = list(columns)
        y_true, y_score = np.asarray(y_true)[:, cols], np.asarray(y_score)[:, cols]
    try:
        ci = ev.bootstrap_ci(y_true, y_score, task, lambda y, s, t: float(np.nanmean(ev.per_class_auc(y, s, t))),
                             n_boot=n_boot, seed=seed)
    except ValueError:
        return {"low": np.nan, "high": np.nan}
    return {"low": ci["low"], "high": ci["high"]}


def segment_trials(init: str, encoder: str, train: SegSet, val: SegSet, test: SegSet,
                   seeds: Sequence[int] = (0, 1, 2), *, epochs: int = 50, image_size: int | None = None,
                   n_boot: int = 200, progress: bool = False, **fit_overrides) -> pd.DataFrame:
    """N seeded trials of one initialisation on one segmentation target (§4): a U-Net
    (:func:`medtl.models.unet`) whose encoder takes ``init``'s weights, trained with
    :data:`SEGMENT_FIT` (overridable), scored on ``test`` by global Dice, mean per-image Dice
    and IoU at threshold 0.5, each with a bootstrap interval over test images. Returns one
    row per trial and metric (arm, target, init, arch, trial, seed, metric, value, low, high,
    best_epoch, stopped_epoch, stop_reason, seconds)."""
    rows = []
    for trial, seed in enumerate(seeds):
        t0 = time.perf_counter()
        model = M.unet(encoder, weights=init_weights(init), in_chans=train.n_channels, seed=int(seed),
                       image_size=image_size)
        result = fit(model, train, val, image_size=image_size,
                     **_fit_settings(SEGMENT_FIT, fit_overrides, int(seed), epochs, progress))
        r = evaluate(model, test, image_size=image_size)
        seconds = time.perf_counter() - t0
        for metric in ev.SEG_METRICS:
            ci = ev.bootstrap_ci(r["y_true"], r["y_score"], ev.SEGMENTATION, metric, n_boot=max(n_boot, 2),
                                 seed=int(seed)) if n_boot >= 2 else {"low": np.nan, "high": np.nan}
            rows.append({"arm": "segmentation", "target": test.name.split("/")[0], "init": init, "arch": encoder,
                         "trial": trial, "seed": int(seed), "metric": metric, "value": r[metric],
                         "low": ci["low"], "high": ci["high"], "best_epoch": result.best_epoch,
                         "stopped_epoch": result.stopped_epoch, "stop_reason": result.stop_reason,
                         "seconds": seconds})
    return pd.DataFrame(rows)


def compare_trials(table: pd.DataFrame, baseline: str, alpha: float = 0.05) -> pd.DataFrame:
    """Mean ± std over trials per (arm, target, metric, init), and each initialisation's
    two-sample t-test against ``baseline``'s trials on the same target and metric: Student
    (``p``, the study's test) and Welch (``p_welch``), the difference of means and a
    significance marker (``*`` p < 0.05, ``**`` < 0.01, ``***`` < 0.001, ``****`` < 1e-4;
    ``n.s.`` otherwise; empty for the baseline and where a side has fewer than 2 trials)."""
    need = {"arm", "target", "metric", "init", "value"}
    if not need <= set(table.columns):
        raise ValueError(f"compare_trials needs columns {sorted(need)}, got {list(table.columns)}")
    if baseline not in set(table["init"]):
        raise ValueError(f"baseline {baseline!r} has no trials; initialisations: {sorted(set(table['init']))}")
    rows = []
    for (arm, target, metric), group in table.groupby(["arm", "target", "metric"], sort=False):
        base = group.loc[group["init"] == baseline, "value"].to_numpy(dtype=float)
        for init, g in group.groupby("init", sort=False):
            v = g["value"].to_numpy(dtype=float)
            row = {"arm": arm, "target": target, "metric": metric, "init": init, "n": len(v), "mean": v.mean(),
                   "std": v.std(ddof=1) if len(v) > 1 else np.nan, "baseline": baseline, "diff": np.nan,
                   "t": np.nan, "p": np.nan, "p_welch": np.nan, "marker": ""}
            if init != baseline and len(v) >= 2 and len(base) >= 2:
                student, welch = ev.ttest(v, base), ev.ttest(v, base, equal_var=False)
                row.update(diff=student["diff"], t=student["t"], p=student["p"], p_welch=welch["p"],
                           marker=significance(student["p"], alpha))
            rows.append(row)
    return pd.DataFrame(rows)


def significance(p: float, alpha: float = 0.05) -> str:
    """The figure marker of a p-value (``n.s.`` at or above ``alpha``)."""
    if not np.isfinite(p) or p >= alpha:
        return "n.s."
    return "****" if p < 1e-4 else "***" if p < 1e-3 else "**" if p < 1e-2 else "*"


def seg_splits(name: str, size: int = 64, n: dict | None = None, seed: int = 0) -> dict[str, SegSet]:
    """A segmentation target's train/val/test: a synthetic segmentation name
    (:data:`medtl.data.SYNTHETIC_SEG`, ``n`` images per split, default 700/100/200) or a
    folder with ``train/``, ``val/``, ``test/`` each holding ``images/`` and ``masks/``
    (the study's layout: separate folders per split)."""
    n = n or {}
    if name in SYNTHETIC_SEG:
        return {s: synthetic_seg(name, s, size, n.get(s), seed) for s in ("train", "val", "test")}
    root = Path(name)
    if not root.is_dir():
        raise FileNotFoundError(f"segmentation target {name!r} is neither a synthetic name "
                                f"({', '.join(SYNTHETIC_SEG)}) nor a folder with train/val/test image and mask folders")
    return {s: from_seg_folder(root / s / "images", root / s / "masks", size, name=f"{root.name}/{s}")
            for s in ("train", "val", "test")}


def benchmark(inits: Sequence[str], targets: Sequence[str] = (), seg_targets: Sequence[str] = (), *,
              arch: str = "resnet18", seeds: Sequence[int] = (0, 1, 2), size: int = 28, seg_size: int = 64,
              image_size: int | None = None, epochs: int = 10, seg_epochs: int = 10, n_train: int | None = None,
              anno_percent: float = 100, tencrop: int | None = None, root=None, n_boot: int = 200,
              progress=False, **fit_overrides) -> pd.DataFrame:
    """Initialisations × targets × seeded trials, both arms (one tidy table, as
    :func:`classify_trials` / :func:`segment_trials` rows). Classification targets load
    through :func:`medtl.data.get` (MedMNIST flags, synthetic names, folders; a folder of
    official split files — the study's ChestX-ray14 and Shenzhen lists, CheXpert's CSVs —
    keeps its splits, and a target recording ``eval_labels`` (CheXpert: the 5 reported
    observations) is scored on those), with
    ``n_train`` images drawn per split (seeded, stratified) and ``anno_percent`` of the
    training images kept (the study's seed-99 shuffle); segmentation targets through
    :func:`seg_splits`. Every initialisation must load (:func:`check_inits` first)."""
    from ..data import anno_subset, get

    frames = []
    for target in targets:
        tr, va, te = (get(target, s, size, root, n=n_train, seed=0) for s in ("train", "val", "test"))
        if anno_percent < 100:
            tr = anno_subset(tr, anno_percent)
        reported = te.meta.get("eval_labels")  # e.g. CheXpert: AUC on its 5 reported observations
        columns = [te.label_names.index(n) for n in reported] if reported else None
        for init in inits:
            frames.append(classify_trials(init, arch, tr, va, te, seeds, epochs=epochs, image_size=image_size,
                                          tencrop=tencrop, n_boot=n_boot, progress=progress, label_columns=columns,
                                          **fit_overrides))
    for target in seg_targets:
        n = {"train": n_train, "val": n_train and max(n_train // 4, 8), "test": n_train and max(n_train // 2, 8)}
        parts = seg_splits(target, seg_size, n)
        for init in inits:
            frames.append(segment_trials(init, arch, parts["train"], parts["val"], parts["test"], seeds,
                                         epochs=seg_epochs, n_boot=n_boot, progress=progress))
    if not frames:
        raise ValueError("benchmark needs at least one classification or segmentation target")
    table = pd.concat(frames, ignore_index=True)
    table["anno_percent"] = anno_percent
    return table
