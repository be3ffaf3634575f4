"""``fit``: the one training loop (optimisers with parameter groups, schedules, warm-up,
early stopping, best-checkpoint restore, linear-probe-then-fine-tune, frozen layers kept
frozen, bf16/channels_last on CUDA, crash-safe resume guarded by a fingerprint)."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .. import evaluate as ev
from .. import runtime
from .._io import atomic_write
from ..data import ImageSet, loader
from ..data.imageset import MULTI_LABEL
from ..data.segset import SEGMENTATION
from ..evaluate import loss_fn, loss_target
from ..features import fingerprint as weights_fingerprint
from ..models import NORM_TYPES
from ._evaluation import (
    EXTRA_MONITORS,
    MONITORS,
    SEG_MONITORS,
    balanced_class_weights,
    check_compatible,
    evaluate,
    head_loss,
)
from ._optim import head_path, make_optimizer, make_schedule, param_groups, warmup


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model (best checkpoint restored if asked), the
    per-epoch history, the best epoch and its monitored value, the last epoch run, the epoch
    a resumed run started from, the monitor actually used and why training stopped."""

    model: nn.Module
    history: pd.DataFrame
    best_epoch: int
    best_value: float
    stopped_epoch: int
    resumed_from: int | None = None
    monitor: str = "val_auc"
    stop_reason: str = "epochs"
    warnings: list[str] = field(default_factory=list)


#: fit arguments that do not change what is trained (left out of the resume fingerprint).
_NOT_FINGERPRINTED = {"progress", "callbacks", "eval_batch_size", "device", "checkpoint_dir", "keep_checkpoint"}


def _check_args(a: dict, train: ImageSet) -> None:
    seg = getattr(train, "task", None) == SEGMENTATION
    if a["monitor"] is None:
        a["monitor"] = "val_loss" if seg else "val_auc"
    if seg and a["monitor"] not in SEG_MONITORS:
        raise ValueError(f"a segmentation set is monitored by one of {SEG_MONITORS}, got monitor={a['monitor']!r}")
    if not seg and a["monitor"] == "val_dice":
        raise ValueError("monitor='val_dice' needs a segmentation set (medtl.data.SegSet)")
    if a["monitor"] not in MONITORS:
        raise ValueError(f"monitor must be one of {MONITORS}, got {a['monitor']!r}")
    if a["monitor"] in EXTRA_MONITORS and (seg or (a["task"] or train.task) == MULTI_LABEL):
        raise ValueError(f"monitor={a['monitor']!r} is a single-label metric; monitor a multi-label task by "
                         "val_auc, val_acc or val_loss")
    v = a["val_every"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise ValueError(f"val_every must be a fraction of an epoch in (0, 1], got {v!r}")
    for key in ("epochs", "batch_size"):
        v = a[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{key} must be an integer >= 1, got {v!r}")
    p = a["patience"]
    if p is not None and (isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 1):
        raise ValueError(f"patience must be None (never stop early) or an integer >= 1, got {p!r}")
    if not 0 <= a["linear_probe_epochs"] <= a["epochs"]:
        raise ValueError(f"linear_probe_epochs must be in 0..epochs ({a['epochs']}), got {a['linear_probe_epochs']}")
    if a["select_phase"] not in ("finetune", "all"):
        raise ValueError(f"select_phase must be 'finetune' or 'all', got {a['select_phase']!r}")
    if a["frozen_bn"] not in ("eval", "train"):
        raise ValueError(f"frozen_bn must be 'eval' or 'train', got {a['frozen_bn']!r}")


def _stable(value) -> str:
    """A value as it enters the resume fingerprint (arrays by content, not by a truncated repr)."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        arr = np.ascontiguousarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
        return f"array{arr.shape}:{runtime.config_id({'b': arr.tobytes().hex()}, 16)}"
    return repr(value)


class _Run:
    """The state of one :func:`fit` call (phases, optimiser, best checkpoint, history)."""

    def __init__(self, model: nn.Module, train: ImageSet, val: ImageSet | None, args: dict) -> None:
        self.model, self.train, self.val, self.a = model, train, val, args
        check_compatible(model, train, "training data")
        self.task = args["task"] or train.task
        check_compatible(model, train, "training data", self.task)
        if val is not None:
            check_compatible(model, val, "validation data", self.task)
        self.loss = head_loss(model, self.task, args["loss"])
        cw = args["class_weights"]
        self.class_weights = balanced_class_weights(train) if isinstance(cw, str) and cw == "balanced" else cw
        if isinstance(cw, str) and cw != "balanced":
            raise ValueError(f"class_weights must be 'balanced', a sequence of {train.n_classes} weights or None, "
                             f"got {cw!r}")
        self.dev = runtime.device(args["device"])
        self.amp = self.dev.type == "cuda" if args["amp"] is None else args["amp"]
        self.channels_last = self.dev.type == "cuda" if args["channels_last"] is None else args["channels_last"]
        self.settings = runtime.batch_settings(model, train, args["normalize"], args["image_size"], args["channels"])
        runtime.check_input_size(model, self.settings["image_size"], "training")
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        head = head_path(model)
        self.head = {n for n in self.trainable if head is not None and (n == head or n.startswith(head + "."))}
        if args["linear_probe_epochs"] and not self.head:
            raise ValueError("linear_probe_epochs needs a model built by medtl.models.create with a trainable head")
        self.monitor = args["monitor"]
        self.notes: list[str] = []
        self.criterion = loss_fn(self.task, self.loss, self.class_weights).to(self.dev)
        self.history: list[dict] = []
        self.best = {"value": math.nan, "epoch": 0, "state": None}
        self.bad, self.phase, self.stop_reason, self.step = 0, None, "epochs", 0
        self.probe_end = args["linear_probe_epochs"]

    # --- phases ---------------------------------------------------------------------------
    def phase_of(self, epoch: int) -> str:
        return "probe" if epoch <= self.probe_end else "finetune"

    def enter(self, phase: str) -> None:
        """A fresh optimiser and schedule for the phase (the probe trains the head only)."""
        self.phase = phase
        names = self.head if phase == "probe" else self.trainable
        for n, p in self.model.named_parameters():
            p.requires_grad_(n in names)
        a = self.a
        n_epochs = self.probe_end if phase == "probe" else a["epochs"] - self.probe_end
        lr = (a["probe_lr"] or a["lr"]) if phase == "probe" else a["lr"]
        groups = param_groups(self.model, lr, a["weight_decay"], None if phase == "probe" else a["lr_groups"],
                              a["no_decay_1d"])
        self.opt = make_optimizer(groups, a["optimizer"], lr, a["momentum"], a["nesterov"], a["weight_decay"])
        mode = "min" if self.monitor == "val_loss" or self.val is None else "max"
        self.sched = make_schedule(self.opt, a["schedule"], n_epochs, a["step_size"], a["milestones"], a["gamma"],
                                   a["plateau_patience"], mode if a["plateau_on"] == "monitor" else "min")
        self.bad = 0
        if phase == "finetune" and a["select_phase"] == "finetune":
            self.best = {"value": math.nan, "epoch": 0, "state": None}

    def train_mode(self) -> None:
        self.model.train()
        if self.a["frozen_bn"] == "eval":
            for m in self.model.modules():
                ps = list(m.parameters(recurse=False))
                if isinstance(m, NORM_TYPES) and ps and not any(p.requires_grad for p in ps):
                    m.eval()

    # --- one epoch ------------------------------------------------------------------------
    def run_epoch(self, epoch: int, batches) -> dict:
        """Train one epoch; with ``val_every < 1`` validate (and record a history row) at
        each ``val_every`` fraction of it before the end-of-epoch validation."""
        t0 = time.perf_counter()
        self.train_mode()
        batches.set_epoch(epoch - 1)
        total, count = 0.0, 0
        n, every = len(batches), self.a["val_every"]
        points = ({round(k * every * n) for k in range(1, math.ceil(1 / every)) if 0 < round(k * every * n) < n}
                  if self.val is not None and every < 1 else set())
        for i, (x, y) in enumerate(batches, 1):
            self.step += 1
            warmup(self.opt, self.step, self.a["warmup_steps"])
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.opt.zero_grad(set_to_none=True)
            with runtime.autocast(self.dev, self.amp):
                out = self.model(x)
            loss = self.criterion(out.float(), loss_target(y, self.task))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch}; lower the lr "
                                         f"({self.a['lr']})")
            loss.backward()
            if self.a["grad_clip"] is not None:
                nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.a["grad_clip"])
            self.opt.step()
            total += float(loss.detach()) * len(x)
            count += len(x)
            if i in points:  # a validation inside the epoch (the feature-reuse study: every half epoch)
                row = {"epoch": epoch - 1 + i / n, "phase": self.phase, "lr": self.opt.param_groups[0]["lr"],
                       "train_loss": total / count}
                self.validate(row)
                row["seconds"] = time.perf_counter() - t0
                self.history.append(row)
                self.train_mode()
        return {"epoch": epoch, "phase": self.phase, "lr": self.opt.param_groups[0]["lr"],
                "train_loss": total / max(count, 1), "_t0": t0}

    def validate(self, row: dict) -> None:
        r = evaluate(self.model, self.val, self.task, self.a["eval_batch_size"], self.dev, self.loss, amp=False,
                     class_weights=self.class_weights, **self.settings)
        row.update({f"val_{k}": r[k] for k in ("loss", "auc", "acc", "dice") if k in r})
        if self.monitor in EXTRA_MONITORS:
            try:
                row[self.monitor] = float(getattr(ev, EXTRA_MONITORS[self.monitor])(r["y_true"], r["y_score"],
                                                                                 self.task))
            except ValueError:  # a class absent from the validation set: NaN, handled below
                row[self.monitor] = math.nan
        value = row[self.monitor]
        if math.isnan(value) and self.monitor != "val_loss":
            note = (f"the monitored {self.monitor} is NaN at epoch {row['epoch']} (is a class absent from the "
                    f"validation set {self.val.name!r}?); selecting by val_loss from this epoch on")
            warnings.warn(note, stacklevel=4)
            self.notes.append(note)
            self.monitor, self.best = "val_loss", {"value": math.nan, "epoch": 0, "state": None}
            value = row["val_loss"]
        higher = self.monitor != "val_loss"
        best, delta = self.best["value"], self.a["min_delta"]
        improved = not math.isnan(value) and (math.isnan(best) or (value > best + delta if higher
                                                                   else value < best - delta))
        if improved:
            self.best = {"value": value, "epoch": row["epoch"],
                         "state": {k: v.detach().clone() for k, v in self.model.state_dict().items()}}
            self.bad = 0
        else:
            self.bad += 1

    def after_epoch(self, row: dict) -> bool:
        """Step the schedule; True when training should stop (patience, lr floor)."""
        if self.sched is not None:
            if isinstance(self.sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
                key = self.monitor if self.a["plateau_on"] == "monitor" else "val_loss"
                self.sched.step(row.get(key, row["train_loss"]))
            else:
                self.sched.step()
        if self.a["patience"] is not None and self.val is not None and self.bad >= self.a["patience"]:
            self.stop_reason = f"no {self.monitor} improvement for {self.bad} epochs"
            return True
        lr_now = min(g["lr"] for g in self.opt.param_groups)
        if self.a["stop_lr"] is not None and lr_now < self.a["stop_lr"]:
            self.stop_reason = f"lr {lr_now:.3g} fell below stop_lr {self.a['stop_lr']:.3g}"
            return True
        return False

    # --- checkpoints ----------------------------------------------------------------------
    def fingerprint(self) -> dict:
        a = {k: v for k, v in self.a.items() if k not in _NOT_FINGERPRINTED}
        return {"model": type(self.model).__name__, "arch": getattr(self.model, "medtl", {}).get("arch"),
                "num_classes": getattr(self.model, "medtl", {}).get("num_classes"),
                "initial_weights": weights_fingerprint(self.model), "train": self.train.fingerprint(),
                "val": self.val.fingerprint() if self.val is not None else None,
                "trainable": sorted(self.trainable), **{k: _stable(v) for k, v in a.items()}}

    def state(self, epoch: int, stopped: bool) -> dict:
        return {"epoch": epoch, "phase": self.phase, "model": self.model.state_dict(),
                "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict() if self.sched else None,
                "best": self.best, "bad": self.bad, "monitor": self.monitor, "history": self.history,
                "rng": torch.get_rng_state(), "stopped": stopped, "stop_reason": self.stop_reason,
                "step": self.step, "notes": self.notes, "probe_end": self.probe_end, "fingerprint": self.print_,
                "cuda_rng": torch.cuda.get_rng_state() if self.dev.type == "cuda" else None}

    def resume(self, file: Path) -> int:
        try:
            state = torch.load(file, map_location=self.dev, weights_only=False)
            saved = state["fingerprint"]
        except Exception as err:
            raise ValueError(f"cannot resume from {file}: the checkpoint is unreadable or not a medtl fit checkpoint "
                             f"({type(err).__name__}: {err}); delete it (or its folder) to start over") from err
        diff = sorted(k for k in set(saved) | set(self.print_) if saved.get(k) != self.print_.get(k))
        if diff:
            raise ValueError(f"checkpoint_dir {file.parent} holds a run that differs from this one in {diff}; "
                             "use another checkpoint_dir (or delete that one) instead of resuming it")
        self.probe_end = state["probe_end"]
        self.enter(state["phase"])
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        if self.sched is not None and state["scheduler"] is not None:
            self.sched.load_state_dict(state["scheduler"])
        self.best, self.bad, self.monitor, self.history = state["best"], state["bad"], state["monitor"], state["history"]
        self.step, self.notes, self.stop_reason = state["step"], state["notes"], state["stop_reason"]
        torch.set_rng_state(state["rng"])
        if self.dev.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"])
        return self.a["epochs"] + 1 if state["stopped"] else state["epoch"] + 1


def _loop(run: _Run, ckpt: Path | None, callbacks) -> tuple[int, int | None]:
    a = run.a
    batches = loader(run.train, batch_size=a["batch_size"], shuffle=a["sample_weights"] is None, seed=a["seed"],
                     augment=a["augment"], device=run.dev, sample_weights=a["sample_weights"], **run.settings)
    start = resumed = None
    if ckpt is not None and ckpt.is_file():
        start = resumed = run.resume(ckpt)
    else:
        start = 1
        run.enter(run.phase_of(1))
    bar = tqdm(range(start, a["epochs"] + 1), desc="fit", disable=not a["progress"], initial=start - 1,
               total=a["epochs"])
    for epoch in bar:
        if run.phase_of(epoch) != run.phase:
            run.enter(run.phase_of(epoch))
        row = run.run_epoch(epoch, batches)
        if run.val is not None:
            run.validate(row)
        stop = run.after_epoch(row)
        if stop and run.phase == "probe" and a["epochs"] > run.probe_end:
            run.probe_end, stop = epoch, False  # the probe stopped early: fine-tune next
        row["seconds"] = time.perf_counter() - row.pop("_t0")
        run.history.append(row)
        bar.set_postfix({k: f"{row[k]:.4g}" for k in ("train_loss", "val_loss", run.monitor) if k in row})
        if ckpt is not None:
            state = run.state(epoch, stop)
            atomic_write(ckpt, lambda tmp, state=state: torch.save(state, tmp))
        for cb in callbacks:
            cb(epoch, row)
        if stop:
            break
    return start, resumed


def fit(model: nn.Module, train: ImageSet, val: ImageSet | None = None, *, task: str | None = None,
        epochs: int = 10, batch_size: int = 128, optimizer: str = "sgd", lr: float = 0.01, momentum: float = 0.9,
        nesterov: bool | None = None, weight_decay: float = 0.0, schedule: str | None = "cosine",
        step_size: int = 15, milestones: Sequence[int] = (), gamma: float = 0.1, plateau_patience: int = 5,
        plateau_on: str = "val_loss", monitor: str | None = None, patience: int | None = None, min_delta: float = 0.0,
        restore_best: bool = True, linear_probe_epochs: int = 0, probe_lr: float | None = None,
        select_phase: str = "finetune", lr_groups: Mapping[str, float] | None = None, frozen_bn: str = "eval",
        warmup_steps: int = 0, no_decay_1d: bool = False, stop_lr: float | None = None, loss: str | None = None,
        class_weights=None, grad_clip: float | None = None, augment=None, sample_weights=None, normalize=None,
        image_size: int | None = None, channels: int | None = None, device=None, amp: bool | None = None,
        channels_last: bool | None = None, deterministic: bool = False, val_every: float = 1.0,
        checkpoint_dir: str | os.PathLike | None = None, keep_checkpoint: bool = True, seed: int = 0,
        progress: bool = True, eval_batch_size: int = 512,
        callbacks: Sequence[Callable[[int, dict], None]] = ()) -> FitResult:
    """Train ``model`` on ``train``, validating on ``val`` after every epoch.

    Trained is exactly what requires gradients when ``fit`` is called: frozen parameters
    (:func:`medtl.models.freeze`) get no update and, with ``frozen_bn="eval"``, norm layers
    whose parameters are all frozen keep their running statistics — a frozen layer stays
    bit-identical. ``lr_groups`` gives module prefixes their own learning rates
    (``{"head": 1e-3, "body": 1e-4}``, :func:`param_groups`).

    ``linear_probe_epochs=k`` (freeze → fine-tune): epochs 1..k train the head only (its own
    optimiser, ``probe_lr``, early stopping by ``patience``), then a **fresh** optimiser and
    schedule train every originally trainable parameter; the best checkpoint is chosen over
    the fine-tune phase (``select_phase="all"``: over both).

    Segmentation: given a :class:`medtl.data.SegSet` and a U-Net (:func:`medtl.models.unet`),
    the same loop trains on image/mask batches (paired augmentation), with ``loss`` ``"dice"``
    (default), ``"bce"`` or ``"dice+bce"``, validating Dice and the loss every epoch.

    Selection: ``monitor`` (``val_auc``/``val_acc``/``val_dice``, single-label ``val_kappa``/
    ``val_balanced_accuracy``/``val_auc_ovo`` higher, ``val_loss`` lower; default
    ``val_auc``, ``val_loss`` for segmentation) improves only
    when better by more than ``min_delta``; the validation loss is float32. A NaN AUC/ACC (a
    class absent from ``val``) warns and switches selection to ``val_loss`` from that epoch
    on. ``patience`` (≥ 1 or None) and ``stop_lr`` stop early (``FitResult.stop_reason``).
    ``val_every=0.5`` also validates mid-epoch (rows with a fractional ``epoch``, which the
    best checkpoint and ``patience`` count); the schedule steps once per epoch.

    Args (beyond the obvious): ``loss`` ``"ce"`` or ``"bce"`` (sigmoid heads; one-hot
    targets for single-label tasks; recorded in ``model.medtl["loss"]``); ``class_weights``
    ``"balanced"`` or C numbers; ``schedule`` cosine/step/multistep/plateau (val loss, or the
    monitor with ``plateau_on="monitor"``)/None per epoch, ``warmup_steps`` a per-iteration
    linear warm-up; ``no_decay_1d`` exempts biases and norms from weight decay; batch
    settings default from ``model.medtl``; bf16 autocast and channels_last default on for
    CUDA, ``deterministic`` turns cuDNN determinism on and TF32 off; ``checkpoint_dir``
    writes ``last.pt`` atomically every epoch and resumes from it — its fingerprint
    (architecture, classes, initial weights, data, every argument, seed) must match, else
    resuming is refused naming what differs (``keep_checkpoint=False`` deletes it when done);
    ``seed`` seeds shuffling, augmentation and dropout; ``callbacks`` ``fn(epoch, row)``.

    Returns :class:`FitResult`. A resumed run ends bit-identical (CPU) to an uninterrupted one.
    """
    args = {k: v for k, v in locals().items() if k not in ("model", "train", "val")}
    _check_args(args, train)
    torch.manual_seed(seed)
    with runtime.deterministic(deterministic):
        run = _Run(model, train, val, args)
        run.print_ = run.fingerprint()
        model.to(run.dev)
        if run.channels_last:
            model.to(memory_format=torch.channels_last)
        ckpt = Path(checkpoint_dir) / "last.pt" if checkpoint_dir is not None else None
        try:
            _, resumed = _loop(run, ckpt, callbacks)
        finally:
            for n, p in model.named_parameters():  # the caller's frozen / trainable split, as given
                p.requires_grad_(n in run.trainable)
    if restore_best and run.best["state"] is not None:
        model.load_state_dict(run.best["state"])
    if hasattr(model, "medtl"):
        model.medtl["loss"] = run.loss
    best_epoch, best_value = run.best["epoch"], run.best["value"]
    if val is None:
        best_epoch, best_value = (run.history[-1]["epoch"] if run.history else 0), float("nan")
    if ckpt is not None and not keep_checkpoint:
        ckpt.unlink(missing_ok=True)
    return FitResult(model, pd.DataFrame(run.history), best_epoch, float(best_value),
                     run.history[-1]["epoch"] if run.history else 0, resumed, run.monitor, run.stop_reason, run.notes)
