"""The studies' training recipes on top of :func:`fit`: ``pretrain`` (single source and
leave-target-out union), ``lr_grid`` (the feature-reuse study's learning-rate finder),
``grid_search`` with named grid presets and repeated seeds, and ``select`` (the
dataset-transferability study's min-val-loss rule)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn
from tqdm.auto import tqdm

from .. import evaluate as ev
from .._io import atomic_write_bytes
from ..data import ImageSet
from ..runtime import config_id, expand_grid, seeded
from ._evaluation import evaluate
from ._loop import FitResult, fit


def inverse_frequency_weights(data: ImageSet) -> np.ndarray:
    """Per-image weights 1/count(class), "class" being the label or, for multi-hot labels,
    the first positive slot (as the study's leave-target-out sampler)."""
    cls = data.primary_labels()
    values, counts = np.unique(cls, return_counts=True)
    lookup = dict(zip(values.tolist(), counts.tolist()))
    return np.array([1.0 / lookup[c] for c in cls.tolist()])


def pretrain(arch: str, train: ImageSet, val: ImageSet | None = None, *, name: str | None = None,
             weights=None, balanced: bool | None = None, epochs: int = 45, batch_size: int = 128,
             optimizer: str = "sgd", lr: float = 0.1, momentum: float = 0.9, weight_decay: float = 1e-4,
             schedule: str = "step", step_size: int = 15, gamma: float = 0.1, monitor: str = "val_loss",
             patience: int | None = 20, augment="study", stem: str = "imagenet", in_chans: int = 3,
             image_size: int | None = None, normalize: str = "medmnist", root=None, overwrite: bool = False,
             **fit_kwargs) -> FitResult:
    """Pre-train a source model from scratch (or ``weights``) on one dataset or on the
    leave-target-out union, with the study's recipe (spec §4.2): SGD lr 0.1, momentum 0.9,
    wd 1e-4, StepLR(15, 0.1), early stopping on val loss (patience 20), best checkpoint kept;
    multi-label data (the union) trains with BCE and inverse-frequency sampling
    (``balanced``, default on for multi-label). With ``name`` the result is saved as a named
    source (:func:`medtl.models.save_source`, in ``root`` or the models folder) carrying
    arch, classes, normalisation and the training data it saw; an existing source of that
    name is refused before training unless ``overwrite``.
    """
    from ..models import create, save_source
    from ..models.weights import check_source_name

    if name is not None and not overwrite:
        check_source_name(name, root)

    model = create(arch, num_classes=train.n_classes, weights=weights, in_chans=in_chans, stem=stem,
                   image_size=image_size, seed=fit_kwargs.get("seed", 0))
    model.medtl["normalize"] = normalize
    balanced = train.is_multilabel if balanced is None else balanced
    result = fit(model, train, val, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                       momentum=momentum, weight_decay=weight_decay, schedule=schedule, step_size=step_size,
                       gamma=gamma, monitor=monitor if val is not None else "val_loss",
                       patience=patience if val is not None else None, augment=augment,
                       sample_weights=inverse_frequency_weights(train) if balanced else None, **fit_kwargs)
    if name is not None:
        data_names = sorted(set(np.asarray(train.meta["source"]).tolist())) if "source" in train.meta else []
        save_source(result.model, name, root=root, overwrite=overwrite, source_data=train.name, source_flag=train.meta.get("flag"),
                    source_datasets=data_names or [train.meta.get("flag") or train.name.split("/")[0]],
                    n_train=len(train), classes=train.label_names, task=train.task, best_epoch=result.best_epoch,
                    best_value=result.best_value, monitor=result.monitor, data_fingerprint=train.fingerprint())
    return result


#: Validation metrics the learning-rate finder can choose by (the feature-reuse study picks
#: by each dataset's target metric).
FINDER_METRICS = ("auc", "acc", "kappa", "balanced_accuracy", "auc_ovo")


def lr_grid(build: Callable[[], nn.Module], train: ImageSet, val: ImageSet, lrs: Sequence[float] | None = None,
            epochs: int = 5, metric: str = "auc", optimizer: str = "adam", weight_decay: float = 1e-5,
            no_decay_1d: bool = True, warmup_steps: int = 0, progress: bool = True, **fit_kwargs) -> pd.DataFrame:
    """The feature-reuse study's learning-rate finder (spec §C.5.6).

    For every lr (default 25 log-spaced values in [1e-5, 1e-2]) a fresh ``build()`` model is
    trained for ``epochs`` with the study's optimiser (Adam, weight decay 1e-5 on weights
    only) and no schedule — every parameter group gets the trial lr (the original's frozen
    no-decay group is a known bug) — then evaluated on ``val``. The original disables its
    schedule, warm-up included, during the search; ``warmup_steps`` adds a linear warm-up.
    Returns one row per lr with the validation loss and ``metric`` (the dataset's target
    metric: ``auc``, ``acc``, ``kappa`` (quadratic), ``balanced_accuracy``, ``auc_ovo``) and
    flags ``best_by_metric`` (argmax) / ``best_by_loss`` (argmin), the study's two choices."""
    if metric not in FINDER_METRICS:
        raise ValueError(f"metric must be one of {FINDER_METRICS}, got {metric!r}")
    lrs = list(np.logspace(-5, -2, 25)) if lrs is None else list(lrs)
    if not lrs:
        raise ValueError("lrs is empty")
    rows = []
    for lr in tqdm(lrs, desc="lr grid", disable=not progress):
        model = build()
        try:
            fit(model, train, val, epochs=epochs, lr=float(lr), schedule=None, progress=False,
                      restore_best=False, optimizer=optimizer, weight_decay=weight_decay, no_decay_1d=no_decay_1d,
                      warmup_steps=warmup_steps, **fit_kwargs)
            r = evaluate(model, val)
            value = r["auc"] if metric == "auc" else r["acc"] if metric == "acc" else \
                float(getattr(ev, metric)(r["y_true"], r["y_score"], val.task))
            rows.append({"lr": float(lr), "val_loss": r["loss"], f"val_{metric}": value, "diverged": False})
        except FloatingPointError:
            rows.append({"lr": float(lr), "val_loss": np.nan, f"val_{metric}": np.nan, "diverged": True})
    table = pd.DataFrame(rows)
    col = f"val_{metric}"
    table["best_by_metric"] = table.index == table[col].idxmax() if table[col].notna().any() else False
    table["best_by_loss"] = table.index == table["val_loss"].idxmin() if table["val_loss"].notna().any() else False
    return table


#: The dataset-transferability study's batch sizes per target (spec §4.4).
STUDY_BATCH_SIZES: dict[str, tuple[int, int]] = {
    "breastmnist": (32, 64), "pneumoniamnist": (32, 64), "octmnist": (64, 128), "retinamnist": (64, 128),
    "chestmnist": (256, 512), **{f: (128, 256) for f in ("bloodmnist", "dermamnist", "organamnist", "organcmnist",
                                                         "organsmnist", "pathmnist", "tissuemnist")},
}
#: Named fine-tuning presets: the grid and the ``fit`` settings. ``"study-a"`` / ``"study-b"``
#: are the dataset-transferability study's scenario A / B grids (120 / 80 configurations per
#: source, batch sizes per target from :data:`STUDY_BATCH_SIZES`, 200 / 400 epochs, early
#: stopping on val AUC with patience 50, cosine); ``"cpu"`` is medtl's small default.
GRID_PRESETS: dict[str, dict] = {
    "study-a": {"grid": {"lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], "momentum": [0.0, 0.9],
                         "weight_decay": [0.0, 1e-6, 1e-5, 1e-4, 1e-3]},
                "fit": {"epochs": 200, "patience": 50, "monitor": "val_auc", "schedule": "cosine",
                        "optimizer": "sgd", "augment": "study", "dropout": 0.5}},
    "study-b": {"grid": {"lr": [1e-4, 1e-3, 1e-2, 1e-1], "momentum": [0.0, 0.9],
                         "weight_decay": [0.0, 1e-6, 1e-5, 1e-3, 1e-2]},
                "fit": {"epochs": 400, "patience": 50, "monitor": "val_auc", "schedule": "cosine",
                        "optimizer": "sgd", "augment": "study", "dropout": 0.0}},
    "cpu": {"grid": {"lr": [1e-3, 1e-2], "momentum": [0.9], "weight_decay": [1e-4]},
            "fit": {"epochs": 5, "patience": None, "monitor": "val_auc", "schedule": "cosine", "optimizer": "sgd",
                    "augment": None, "dropout": 0.0}},
}
#: Backwards-compatible name of the scenario-A grid.
STUDY_GRID: dict[str, list] = GRID_PRESETS["study-a"]["grid"]


def grid_preset(name: str, target: str | None = None) -> tuple[dict, dict]:
    """``(grid, fit settings)`` of a named preset; the study presets add the target's two
    batch sizes (:data:`STUDY_BATCH_SIZES`). ``fit settings["dropout"]`` is the fresh head's
    dropout (the caller builds the model)."""
    if name not in GRID_PRESETS:
        raise ValueError(f"unknown grid preset {name!r}; valid: {', '.join(GRID_PRESETS)}")
    preset = GRID_PRESETS[name]
    grid = {k: list(v) for k, v in preset["grid"].items()}
    if name.startswith("study") and target is not None:
        if target not in STUDY_BATCH_SIZES:
            raise ValueError(f"the study grid has batch sizes for MedMNIST targets only, not {target!r}")
        lrs = [lr for lr in grid["lr"] if not (name == "study-b" and target == "breastmnist" and lr == 1e-4)]
        grid.update(lr=lrs, batch_size=list(STUDY_BATCH_SIZES[target]))
    return grid, dict(preset["fit"])


def _run_config(build, train, val, test, config, out, cid, seed, keep, fit_kwargs) -> dict:
    t0 = time.perf_counter()
    row = {"config_id": cid, "seed": seed, **config}
    row.setdefault("epochs", fit_kwargs.get("epochs", 10))
    ckpt_dir = (out / cid) if out is not None else None
    try:
        with seeded(seed):  # a fresh head drawn by build() depends on the seed, not on what ran before
            model = build()
        r = fit(model, train, val, progress=False, checkpoint_dir=ckpt_dir, **{**fit_kwargs, **config, "seed": seed})
        v = evaluate(r.model, val)
        row.update(status="finished", best_epoch=r.best_epoch, stopped_at=r.stopped_epoch, stop_reason=r.stop_reason,
                   monitor=r.monitor, val_loss=v["loss"], val_auc=v["auc"], val_acc=v["acc"])
        ci = _auc_ci(v, val.task)
        # learned: the validation AUC's 95 % bootstrap interval lies above chance (0.5)
        row.update(val_auc_low=ci[0] if ci else float("nan"), learned=bool(ci is not None and ci[0] > 0.5))
        if test is not None:
            t = evaluate(r.model, test)
            row.update(test_loss=t["loss"], test_auc=t["auc"], test_acc=t["acc"])
            row["test_auc_ci"] = _auc_ci(t, test.task)
    except FloatingPointError as err:
        row.update(status="diverged", error=str(err))
    row["seconds"] = time.perf_counter() - t0
    if ckpt_dir is not None and not keep:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return row


def _auc_ci(result: dict, task: str) -> list[float] | None:
    try:
        ci = ev.bootstrap_ci(result["y_true"], result["y_score"], task, "auc", n_boot=200, seed=0)
        return [ci["low"], ci["high"]]
    except ValueError:
        return None


def grid_search(build: Callable[[], nn.Module], train: ImageSet, val: ImageSet, test: ImageSet | None = None,
                grid: Mapping[str, Sequence] | str | None = None, out_dir: str | os.PathLike | None = None,
                seeds: Sequence[int] | None = None, keep_checkpoints: bool = False, progress: bool = True,
                **fit_kwargs) -> pd.DataFrame:
    """Fine-tune a fresh ``build()`` model for every configuration of ``grid`` (lr ×
    momentum × weight_decay × batch_size × any other ``fit`` argument; or a preset name of
    :data:`GRID_PRESETS`, whose fit settings are defaults under ``fit_kwargs``) and every seed
    of ``seeds`` (default: the ``seed`` fit argument, else 0), evaluating the restored best
    checkpoint on val and test (with a bootstrap 95 % CI of the test AUC). ``learned`` says
    whether the run beat chance on validation (the lower end of its validation AUC's 95 %
    bootstrap interval, ``val_auc_low``, above 0.5): a ground truth of runs that did not learn
    ranks noise.

    With ``out_dir`` each finished configuration is written as ``<id>.json`` (atomically) and
    skipped when the search runs again, and each run checkpoints into ``<id>/`` so a killed
    configuration resumes; the checkpoint folder is deleted once the configuration finished
    unless ``keep_checkpoints``. Returns one tidy row per (configuration, seed); pick the
    study's ground truth with :func:`select` (minimum val loss), per seed with ``by="seed"``.
    """
    if isinstance(grid, str):
        grid, preset_fit = grid_preset(grid)
        preset_fit.pop("dropout", None)
        fit_kwargs = {**preset_fit, **fit_kwargs}
    grid = dict(grid or STUDY_GRID)
    seeds = list(seeds) if seeds is not None else [fit_kwargs.pop("seed", 0)]
    fit_kwargs.pop("seed", None)
    if not seeds:
        raise ValueError("seeds is empty")
    out = Path(out_dir) if out_dir is not None else None
    rows = []
    configs = expand_grid(grid)
    for config, seed in tqdm([(c, s) for c in configs for s in seeds], desc="grid", disable=not progress):
        cid = config_id({**config, **({"seed": seed} if len(seeds) > 1 or seed != 0 else {})})
        done = out / f"{cid}.json" if out is not None else None
        if done is not None and done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        row = _run_config(build, train, val, test, config, out, cid, seed, keep_checkpoints, fit_kwargs)
        if done is not None:
            atomic_write_bytes(done, json.dumps(row, default=float).encode())
        rows.append(row)
    return pd.DataFrame(rows)


#: Selection rules of :func:`select`.
SELECTION_RULES = ("min_val_loss", "min_val_loss_learned", "max_val_auc")


def select(table: pd.DataFrame, rule: str = "min_val_loss", by: str | Sequence[str] | None = None):
    """The selected configuration: ``"min_val_loss"`` (the dataset-transferability study's
    rule; failed/diverged rows are skipped), ``"min_val_loss_learned"`` (the same among the
    runs that beat chance on validation, ``learned``; a group where none did falls back to
    all its runs, and its selected row still says ``learned=False``: a run that predicts
    nothing has the lowest loss of an overconfident grid, and the study's rule then picks
    noise) or ``"max_val_auc"``. With ``by`` (e.g. ``"seed"``) one selected row per group,
    as a DataFrame."""
    if rule not in SELECTION_RULES:
        raise ValueError(f"unknown rule {rule!r}; valid: {', '.join(SELECTION_RULES)}")
    ok = table[table.get("status", pd.Series("finished", index=table.index)) == "finished"]
    col = "val_auc" if rule == "max_val_auc" else "val_loss"
    ok = ok[ok[col].notna()] if col in ok else ok.iloc[0:0]
    if ok.empty:
        raise ValueError("no finished configuration with a validation value to select from")
    if rule == "min_val_loss_learned":
        def pick(g):
            learned = g[g.learned.astype(bool)] if "learned" in g else g
            return (learned if len(learned) else g)[col].idxmin()
    elif rule == "min_val_loss":
        def pick(g):
            return g[col].idxmin()
    else:
        def pick(g):
            return g[col].idxmax()
    if by is None:
        return ok.loc[pick(ok)]
    keys = [by] if isinstance(by, str) else list(by)
    return ok.loc[[pick(g) for _, g in ok.groupby(keys, sort=True)]].reset_index(drop=True)
