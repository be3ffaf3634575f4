"""Training and evaluation: ``fit`` (optimisers, schedules, early stopping, best-checkpoint
restore, linear-probe-then-fine-tune, clipping, bf16/channels_last on CUDA, crash-safe
resume), ``evaluate``, and the studies' recipes: ``pretrain`` (single source and
leave-target-out union), ``lr_grid`` (feature-reuse lr finder) and ``grid_search`` (the
dataset-transferability study's grid with its min-val-loss selection rule)."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from . import evaluate as ev
from ._io import atomic_write, atomic_write_bytes
from .data import ImageSet, loader
from .data.imageset import MULTI_LABEL
from .models import spec

MONITORS = ("val_auc", "val_acc", "val_loss")


# --- helpers -------------------------------------------------------------------------------
def _device(device) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _n_outputs(model: nn.Module) -> int | None:
    info = getattr(model, "medtl", {})
    if info.get("num_classes"):
        return int(info["num_classes"])
    return None


def batch_settings(model: nn.Module, data: ImageSet, normalize=None, image_size=None, channels=None) -> dict:
    """Loader settings a model expects: its normalisation, input size and channels
    (grey data is replicated to 3 channels for a 3-channel stem)."""
    info = getattr(model, "medtl", {})
    if normalize is None:
        normalize = info.get("normalize", "medmnist")
    if image_size is None:
        image_size = info.get("image_size") or data.size
    if channels is None:
        want = info.get("in_chans", 3)
        if want == 1 and data.n_channels == 3:
            raise ValueError(f"model has a 1-channel stem but {data.name!r} is RGB")
        channels = want
    return {"normalize": normalize, "image_size": image_size, "channels": channels}


def loss_fn(task: str) -> nn.Module:
    """BCE-with-logits for multi-label tasks, cross-entropy otherwise."""
    return nn.BCEWithLogitsLoss() if task == MULTI_LABEL else nn.CrossEntropyLoss()


def _check_compatible(model: nn.Module, data: ImageSet, what: str) -> None:
    n_out = _n_outputs(model)
    if n_out is not None and n_out != data.n_classes:
        raise ValueError(
            f"class count mismatch: the model has {n_out} outputs but {what} {data.name!r} has "
            f"{data.n_classes} classes; build it with num_classes={data.n_classes} or replace its head"
        )
    if not data.is_multilabel and len(data) and n_out is not None and int(data.labels.max()) >= n_out:
        raise ValueError(f"labels of {data.name!r} reach {int(data.labels.max())}, beyond the model's {n_out} outputs")


def _autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


# --- evaluation ----------------------------------------------------------------------------
@torch.inference_mode()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 512, device=None, amp: bool | None = None,
            **batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float32 ``N×K``) and labels of ``data`` in order, in eval mode."""
    dev = _device(device)
    amp = dev.type == "cuda" if amp is None else amp
    was = model.training
    model.eval().to(dev)
    settings = batch_settings(model, data, **batch)
    outs, ys = [], []
    try:
        for x, y in loader(data, batch_size=batch_size, device=dev, **settings):
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with _autocast(dev, amp):
                outs.append(model(x).float().cpu())
            ys.append(y.cpu())
    finally:
        model.train(was)
    return torch.cat(outs), torch.cat(ys)


def scores(logits: torch.Tensor, task: str) -> torch.Tensor:
    """Probabilities from logits: sigmoid for multi-label, softmax otherwise."""
    return torch.sigmoid(logits) if task == MULTI_LABEL else torch.softmax(logits, 1)


def _safe(fn, *args) -> float:
    try:
        return float(fn(*args))
    except ValueError:
        return float("nan")


def evaluate(model: nn.Module, data: ImageSet, task: str | None = None, batch_size: int = 512, device=None,
             **batch) -> dict:
    """Loss, AUC and ACC (medmnist definitions) of ``model`` on ``data``, with predictions.

    Returns:
        ``{"loss", "auc", "acc", "y_true", "y_score", "logits"}`` — ``y_score`` are softmax
        (sigmoid for multi-label) probabilities ``N×K``; AUC/ACC are NaN where undefined
        (e.g. a class absent from a small split).
    """
    task = task or data.task
    _check_compatible(model, data, "evaluation data")
    logits, y = predict(model, data, batch_size, device, **batch)
    target = y.float() if task == MULTI_LABEL else y
    loss = float(loss_fn(task)(logits, target))
    prob = scores(logits, task).numpy()
    yt = y.numpy()
    return {"loss": loss, "auc": _safe(ev.auc, yt, prob, task), "acc": _safe(ev.acc, yt, prob, task),
            "y_true": yt, "y_score": prob, "logits": logits.numpy()}


# --- fit -----------------------------------------------------------------------------------
@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (best checkpoint restored if asked), the
    per-epoch history, the best epoch and its monitored value, and the last epoch run."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_value: float
    stopped_epoch: int
    resumed_from: int | None = None


def make_optimizer(params, name: str, lr: float, momentum: float = 0.9, nesterov: bool | None = None,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """SGD (Nesterov by default when momentum > 0, as the study), Adam or AdamW."""
    name = name.lower()
    if name == "sgd":
        nesterov = momentum > 0 if nesterov is None else nesterov
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                               weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: sgd, adam, adamw")


def make_schedule(opt, name: str | None, epochs: int, step_size: int = 15, milestones: Sequence[int] = (),
                  gamma: float = 0.1, plateau_patience: int = 5):
    """Per-epoch schedules: cosine (T_max = epochs), step, multistep, plateau (on val loss)
    or None."""
    if name in (None, "none", "constant"):
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=gamma)
    if name == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(milestones), gamma=gamma)
    if name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=gamma, patience=plateau_patience)
    raise ValueError(f"unknown schedule {name!r}; valid: cosine, step, multistep, plateau, None")


def fit(model: nn.Module, train: ImageSet, val: ImageSet | None = None, *, task: str | None = None,
        epochs: int = 10, batch_size: int = 128, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
        nesterov: bool | None = None, weight_decay: float = 0.0, schedule: str | None = "cosine",
        step_size: int = 15, milestones: Sequence[int] = (), gamma: float = 0.1, plateau_patience: int = 5,
        monitor: str = "val_auc", patience: int | None = None, min_delta: float = 0.0, restore_best: bool = True,
        linear_probe_epochs: int = 0, grad_clip: float | None = None, augment=None, sample_weights=None,
        normalize=None, image_size: int | None = None, channels: int | None = None, device=None,
        amp: bool | None = None, channels_last: bool | None = None, checkpoint_dir: str | os.PathLike | None = None,
        seed: int = 0, progress: bool = True, eval_batch_size: int = 512,
        callbacks: Sequence[Callable[[int, dict], None]] = ()) -> FitResult:
    """Train ``model`` on ``train``, validating on ``val`` after every epoch.

    Args:
        task: medmnist task (default ``train.task``): CE for single-label, BCE-with-logits
            for multi-label.
        optimizer, lr, momentum, nesterov, weight_decay: SGD (Nesterov when momentum > 0
            unless told), Adam or AdamW.
        schedule: ``"cosine"`` (T_max = epochs), ``"step"``, ``"multistep"``, ``"plateau"``
            (on val loss) or None; stepped once per epoch.
        monitor: ``"val_auc"``, ``"val_acc"`` (higher is better) or ``"val_loss"``; an
            epoch improves only if strictly better by more than ``min_delta``.
        patience: stop after this many epochs without improvement (None: never).
        restore_best: load the best epoch's weights at the end.
        linear_probe_epochs: train only the head for the first epochs, then everything.
        grad_clip: clip the global gradient norm.
        augment, sample_weights, normalize, image_size, channels: batch settings (see
            :func:`medtl.data.loader`); defaults from ``model.medtl``.
        device: ``"cpu"``, ``"cuda"``, or None/"auto"; ``amp`` (bf16 autocast) and
            ``channels_last`` default to on for CUDA.
        checkpoint_dir: write ``last.pt`` after every epoch (atomically) and resume from it:
            an interrupted run continues and reaches the same weights, bit for bit, as an
            uninterrupted one on the CPU.
        seed: seeds shuffling, augmentation and dropout.
        callbacks: ``fn(epoch, row)`` after each epoch (row = the history record).

    Returns:
        :class:`FitResult`.
    """
    task = task or train.task
    if monitor not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {monitor!r}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    _check_compatible(model, train, "training data")
    if val is not None:
        _check_compatible(model, val, "validation data")
    dev = _device(device)
    amp = dev.type == "cuda" if amp is None else amp
    channels_last = dev.type == "cuda" if channels_last is None else channels_last
    torch.manual_seed(seed)
    model.to(dev)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    settings = batch_settings(model, train, normalize, image_size, channels)
    batches = loader(train, batch_size=batch_size, shuffle=sample_weights is None, seed=seed, augment=augment,
                     device=dev, sample_weights=sample_weights, **settings)
    criterion = loss_fn(task)
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, nesterov, weight_decay)
    sched = make_schedule(opt, schedule, epochs, step_size, milestones, gamma, plateau_patience)
    higher = monitor != "val_loss"
    best_value = -math.inf if higher else math.inf
    best_epoch, bad, start, history, best_state, resumed = 0, 0, 1, [], None, None
    head = _head_prefix(model)

    ckpt_file = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
    if ckpt_file is not None:
        ckpt_file.parent.mkdir(parents=True, exist_ok=True)
        if ckpt_file.is_file():
            state = torch.load(ckpt_file, map_location=dev, weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            if sched is not None and state["scheduler"] is not None:
                sched.load_state_dict(state["scheduler"])
            best_value, best_epoch, bad = state["best_value"], state["best_epoch"], state["bad"]
            best_state, history = state["best_state"], state["history"]
            torch.set_rng_state(state["rng"])
            if dev.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"])
            start = resumed = state["epoch"] + 1
            if state.get("stopped"):
                start = epochs + 1  # the run had finished (early stop); nothing left to do

    bar = tqdm(range(start, epochs + 1), desc="fit", disable=not progress, initial=start - 1, total=epochs)
    stopped = False
    for epoch in bar:
        t0 = time.perf_counter()
        probe = epoch <= linear_probe_epochs
        for name, p in model.named_parameters():
            p.requires_grad_(not probe or name == head or name.startswith(head + "."))
        model.train()
        batches.set_epoch(epoch - 1)
        total, count = 0.0, 0
        for x, y in batches:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with _autocast(dev, amp):
                out = model(x)
            loss = criterion(out.float(), y.float() if task == MULTI_LABEL else y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch}; lower the lr ({lr})")
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            opt.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
        row = {"epoch": epoch, "lr": opt.param_groups[0]["lr"], "phase": "probe" if probe else "finetune",
               "train_loss": total / max(count, 1)}
        if val is not None:
            r = evaluate(model, val, task, eval_batch_size, dev, **settings)
            row.update(val_loss=r["loss"], val_auc=r["auc"], val_acc=r["acc"])
            value = row[monitor]
            improved = (not math.isnan(value)) and (value > best_value + min_delta if higher
                                                     else value < best_value - min_delta)
            if improved:
                best_value, best_epoch, bad = value, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            if patience is not None and bad >= patience:
                stopped = True
        if sched is not None:
            if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sched.step(row.get("val_loss", row["train_loss"]))
            else:
                sched.step()
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "val_loss", monitor) if k in row})
        if ckpt_file is not None:
            state = {"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                     "scheduler": sched.state_dict() if sched is not None else None,
                     "best_value": best_value, "best_epoch": best_epoch, "bad": bad, "best_state": best_state,
                     "history": history, "rng": torch.get_rng_state(), "stopped": stopped,
                     "cuda_rng": torch.cuda.get_rng_state() if dev.type == "cuda" else None}
            atomic_write(ckpt_file, lambda tmp, state=state: torch.save(state, tmp))
        for cb in callbacks:
            cb(epoch, row)
        if stopped:
            break
    for p in model.parameters():
        p.requires_grad_(True)
    if restore_best and best_state is not None:
        model.load_state_dict(best_state)
    if val is None:
        best_epoch, best_value = (history[-1]["epoch"] if history else 0), float("nan")
    return FitResult(model, pd.DataFrame(history), best_epoch, float(best_value),
                     history[-1]["epoch"] if history else 0, resumed)


def _head_prefix(model: nn.Module) -> str:
    info = getattr(model, "medtl", {})
    if "truncated" in info:
        return "head"
    if "arch" in info:
        return spec(info["arch"]).head
    raise ValueError("fit needs a model built by medtl.models.create (to know its head)")


# --- recipes -------------------------------------------------------------------------------
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
             image_size: int | None = None, normalize: str = "medmnist", root=None, **fit_kwargs) -> FitResult:
    """Pre-train a source model from scratch (or ``weights``) on one dataset or on the
    leave-target-out union, with the study's recipe (spec §4.2): SGD lr 0.1, momentum 0.9,
    wd 1e-4, StepLR(15, 0.1), early stopping on val loss (patience 20), best checkpoint kept;
    multi-label data (the union) trains with BCE and inverse-frequency sampling
    (``balanced``, default on for multi-label). With ``name`` the result is saved as a named
    source (:func:`medtl.models.save_source`) carrying arch, classes and normalisation.
    """
    from .models import create, save_source

    model = create(arch, num_classes=train.n_classes, weights=weights, in_chans=in_chans, stem=stem,
                   image_size=image_size, seed=fit_kwargs.get("seed", 0))
    model.medtl["normalize"] = normalize
    balanced = train.is_multilabel if balanced is None else balanced
    result = fit(model, train, val, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                 momentum=momentum, weight_decay=weight_decay, schedule=schedule, step_size=step_size, gamma=gamma,
                 monitor=monitor if val is not None else "val_loss", patience=patience if val is not None else None,
                 augment=augment, sample_weights=inverse_frequency_weights(train) if balanced else None,
                 **fit_kwargs)
    if name is not None:
        save_source(result.model, name, root=root, source_data=train.name, classes=train.label_names,
                    task=train.task, best_epoch=result.best_epoch, best_value=result.best_value, monitor=monitor)
    return result


def lr_grid(build: Callable[[], nn.Module], train: ImageSet, val: ImageSet, lrs: Sequence[float] | None = None,
            epochs: int = 5, progress: bool = True, **fit_kwargs) -> pd.DataFrame:
    """The feature-reuse study's learning-rate finder (spec §C.5.6): for every lr (default
    25 log-spaced values in [1e-5, 1e-2]) train a fresh ``build()`` model for ``epochs``
    without a schedule, then evaluate on ``val``. Every parameter group gets the trial lr
    (the original's frozen no-decay group is a known bug). Returns one row per lr with
    ``best_by_metric`` / ``best_by_loss`` flags."""
    lrs = list(np.logspace(-5, -2, 25)) if lrs is None else list(lrs)
    rows = []
    for lr in tqdm(lrs, desc="lr grid", disable=not progress):
        model = build()
        try:
            r = fit(model, train, val, epochs=epochs, lr=float(lr), schedule=None, progress=False,
                    restore_best=False, **fit_kwargs)
            last = r.history.iloc[-1]
            rows.append({"lr": float(lr), "val_loss": last["val_loss"], "val_auc": last["val_auc"],
                         "val_acc": last["val_acc"], "diverged": False})
        except FloatingPointError:
            rows.append({"lr": float(lr), "val_loss": np.nan, "val_auc": np.nan, "val_acc": np.nan, "diverged": True})
    table = pd.DataFrame(rows)
    table["best_by_metric"] = table.index == table["val_auc"].idxmax() if table["val_auc"].notna().any() else False
    table["best_by_loss"] = table.index == table["val_loss"].idxmin() if table["val_loss"].notna().any() else False
    return table


#: The dataset-transferability study's scenario-A grid (spec §4.4; batch sizes per target).
STUDY_GRID: dict[str, list] = {
    "lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0],
    "momentum": [0.0, 0.9],
    "weight_decay": [0.0, 1e-6, 1e-5, 1e-4, 1e-3],
}
STUDY_BATCH_SIZES: dict[str, tuple[int, int]] = {
    "breastmnist": (32, 64), "pneumoniamnist": (32, 64), "octmnist": (64, 128), "retinamnist": (64, 128),
    "chestmnist": (256, 512), **{f: (128, 256) for f in ("bloodmnist", "dermamnist", "organamnist", "organcmnist",
                                                         "organsmnist", "pathmnist", "tissuemnist")},
}


def config_id(config: Mapping) -> str:
    """A short stable id of a configuration (sorted JSON → SHA-1, 12 hex digits)."""
    return hashlib.sha1(json.dumps(dict(sorted(config.items())), default=str).encode()).hexdigest()[:12]


def grid_search(build: Callable[[], nn.Module], train: ImageSet, val: ImageSet, test: ImageSet | None = None,
                grid: Mapping[str, Sequence] | None = None, out_dir: str | os.PathLike | None = None,
                progress: bool = True, **fit_kwargs) -> pd.DataFrame:
    """Fine-tune a fresh ``build()`` model for every configuration of ``grid`` (lr ×
    momentum × weight_decay × batch_size × any other ``fit`` argument), evaluating the
    restored best checkpoint on val and test.

    With ``out_dir`` each finished configuration is written as ``<id>.json`` (atomically) and
    skipped when the search runs again, and each run checkpoints into ``<id>/`` so a killed
    configuration resumes. Returns one tidy row per configuration; pick the study's ground
    truth with :func:`select` (minimum val loss).
    """
    grid = dict(grid or STUDY_GRID)
    keys = list(grid)
    rows = []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    configs = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    for config in tqdm(configs, desc="grid", disable=not progress):
        cid = config_id(config)
        done = out / f"{cid}.json" if out is not None else None
        if done is not None and done.is_file():
            rows.append(json.loads(done.read_text()))
            continue
        t0 = time.perf_counter()
        row = {"config_id": cid, **config}
        try:
            r = fit(build(), train, val, progress=False,
                    checkpoint_dir=(out / cid) if out is not None else None, **{**fit_kwargs, **config})
            v = evaluate(r.model, val)
            row.update(status="finished", best_epoch=r.best_epoch, stopped_at=r.stopped_epoch,
                       val_loss=v["loss"], val_auc=v["auc"], val_acc=v["acc"])
            if test is not None:
                t = evaluate(r.model, test)
                row.update(test_loss=t["loss"], test_auc=t["auc"], test_acc=t["acc"])
        except FloatingPointError as err:
            row.update(status="diverged", error=str(err))
        row["seconds"] = time.perf_counter() - t0
        if done is not None:
            atomic_write_bytes(done, json.dumps(row, default=float).encode())
        rows.append(row)
    return pd.DataFrame(rows)


def select(table: pd.DataFrame, rule: str = "min_val_loss") -> pd.Series:
    """The selected configuration: ``"min_val_loss"`` (the dataset-transferability study's
    rule; failed/diverged rows are skipped) or ``"max_val_auc"``."""
    ok = table[table.get("status", pd.Series("finished", index=table.index)) == "finished"]
    if ok.empty:
        raise ValueError("no finished configuration to select from")
    if rule == "min_val_loss":
        return ok.loc[ok["val_loss"].idxmin()]
    if rule == "max_val_auc":
        return ok.loc[ok["val_auc"].idxmax()]
    raise ValueError(f"unknown rule {rule!r}; valid: min_val_loss, max_val_auc")

