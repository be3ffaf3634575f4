"""Losses, scores and evaluation of a model on a dataset (medmnist's AUC / ACC)."""

from __future__ import annotations

import numpy as np
from torch import nn

from .. import evaluate as ev
from ..data import ImageSet
from ..data.imageset import BINARY, MULTI_LABEL
from ..data.segset import SEGMENTATION
from ..features import predict

MONITORS = ("val_auc", "val_acc", "val_loss", "val_dice", "val_kappa", "val_balanced_accuracy", "val_auc_ovo")
#: monitors computed from the validation predictions by :mod:`medtl.evaluate` (single-label
#: tasks: quadratic κ, balanced accuracy, one-vs-one AUC — the feature-reuse study's target metrics).
EXTRA_MONITORS = {"val_kappa": "kappa", "val_balanced_accuracy": "balanced_accuracy", "val_auc_ovo": "auc_ovo"}
#: What a task's validation can be monitored by.
SEG_MONITORS = ("val_loss", "val_dice")


def n_outputs(model: nn.Module) -> int | None:
    """The model's class count as recorded in ``model.medtl`` (None when unknown)."""
    value = getattr(model, "medtl", {}).get("num_classes")
    return int(value) if value else None


def head_loss(model: nn.Module, task: str, loss: str | None = None) -> str:
    """The loss family of a head: ``loss`` if given, else the one recorded in
    ``model.medtl["loss"]`` by :func:`medtl.train.fit`, else BCE for multi-label tasks and
    CE otherwise; for segmentation, Dice unless ``"bce"`` or ``"dice+bce"`` is asked for."""
    requested = loss or getattr(model, "medtl", {}).get("loss")
    if task == BINARY and n_outputs(model) == 1:  # one sigmoid: BCE is the only loss it can be trained with
        if requested not in (None, "bce"):
            raise ValueError(f"a binary head with one output (one sigmoid) is trained with loss='bce', not "
                             f"{requested!r}; build two outputs (num_classes=2) for softmax cross-entropy")
        return "bce"
    loss = ev.resolve_loss(task, requested)
    if task == MULTI_LABEL and loss == "ce":
        raise ValueError("a multi-label task needs loss='bce' (independent sigmoids); cross-entropy assumes one "
                         "class per image")
    return loss


def balanced_class_weights(data: ImageSet) -> np.ndarray:
    """Inverse-frequency class weights N / (C · n_c) (the truncated-transfer study's
    class-weighted CE, up to its normalisation); multi-label: negatives / positives per slot."""
    counts = data.class_counts().astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"class_weights='balanced' needs every class present in {data.name!r}; classes "
                         f"{np.flatnonzero(counts == 0).tolist()} have no image")
    if data.is_multilabel:
        return (len(data) - counts) / counts
    return len(data) / (len(counts) * counts)


def check_compatible(model: nn.Module, data: ImageSet, what: str, task: str | None = None) -> None:
    """Refuse data a model cannot be trained or evaluated on, naming the mismatch."""
    if not isinstance(data, ImageSet):
        raise TypeError(f"{what} must be a medtl ImageSet, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{what} {data.name!r} is empty")
    seg_model = getattr(model, "medtl", {}).get("task") == SEGMENTATION
    if (data.task == SEGMENTATION) != seg_model:
        raise ValueError(f"{what} {data.name!r} is a {'segmentation' if data.task == SEGMENTATION else 'classification'} "
                         f"set but the model is a {'segmentation' if seg_model else 'classification'} model "
                         "(segmentation sets go with medtl.models.unet, labelled images with medtl.models.create)")
    if task is not None and (task == MULTI_LABEL) != data.is_multilabel:
        raise ValueError(f"task {task!r} does not fit {what} {data.name!r}, whose task is {data.task!r} "
                         "(multi-hot labels need the multi-label task and vice versa)")
    n_out = n_outputs(model)
    if n_out is not None and n_out != data.n_classes and not (n_out == 1 and data.task == BINARY):
        raise ValueError(
            f"class count mismatch: the model has {n_out} outputs but {what} {data.name!r} has "
            f"{data.n_classes} classes; build it with num_classes={data.n_classes} or replace its head"
        )


def evaluate(model: nn.Module, data: ImageSet, task: str | None = None, batch_size: int = 512, device=None,
             loss: str | None = None, amp: bool | None = False, class_weights=None, tencrop: int | None = None,
             **batch) -> dict:
    """Loss, AUC and ACC (medmnist definitions) of ``model`` on ``data``, with predictions.

    The loss is the one the head is trained with (CE, or BCE for multi-label / sigmoid
    heads), computed in float32 (``amp`` off by default: selection losses stay exact).

    ``tencrop=c`` is the benchmark study's test-time TenCrop: load the images at
    ``image_size`` (the study: 256, e.g. ``image_size=256, tencrop=224``), average the
    probabilities of the ten ``c``-px crops (:func:`medtl.features.predict`).

    Returns:
        ``{"loss", "auc", "acc", "y_true", "y_score", "logits"}`` — ``y_score`` are softmax
        (sigmoid for multi-label and BCE heads) probabilities ``N×K``; AUC/ACC are NaN where
        undefined (e.g. a class absent from a small split). For a :class:`SegSet` (a U-Net
        from :func:`medtl.models.unet`): ``{"loss", "dice", "dice_image", "iou", …}`` with
        probability maps ``N×1×H×W`` (:func:`medtl.evaluate.dice` and its siblings).
    """
    task = task or data.task
    check_compatible(model, data, "evaluation data", task)
    loss = head_loss(model, task, loss)
    if tencrop is not None and task == SEGMENTATION:
        raise ValueError("tencrop averages class probabilities; it does not apply to segmentation maps")
    logits, y = predict(model, data, batch_size, device, amp=amp, tencrop=tencrop,
                        sigmoid=task == MULTI_LABEL or loss == "bce", **batch)
    return ev.score_outputs(logits, y, task, loss, class_weights)
