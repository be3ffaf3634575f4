"""`ImageSet`: a whole labelled image dataset held in memory as uint8 tensors."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

#: medmnist's task strings (the values of ``INFO[flag]["task"]``).
MULTI_CLASS = "multi-class"
BINARY = "binary-class"
ORDINAL = "ordinal-regression"
MULTI_LABEL = "multi-label, binary-class"
TASKS = (MULTI_CLASS, BINARY, ORDINAL, MULTI_LABEL)


def as_images(images, where: str) -> torch.Tensor:
    """``images`` as a uint8 ``N×C×H×W`` tensor with 1 or 3 channels, else a ValueError
    naming ``where`` (``"ImageSet 'blood'"``)."""
    if not isinstance(images, torch.Tensor):
        images = torch.as_tensor(np.asarray(images))
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"{where}: images must be a uint8 N×C×H×W tensor, got dtype {images.dtype} and shape "
                         f"{tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(f"{where}: images must have 1 or 3 channels (N×C×H×W), got shape {tuple(images.shape)}")
    return images


@dataclass(eq=False)
class ImageSet:
    """A labelled image dataset, fully in memory.

    Attributes:
        images: uint8 tensor ``N×C×H×W`` (C = 1 grey or 3 RGB).
        labels: int64 tensor ``N`` with values in ``0..n_classes-1`` for single-label tasks,
            or float32 multi-hot ``N×L`` for ``task == "multi-label, binary-class"``.
        task: one of medmnist's task strings (:data:`TASKS`).
        label_names: one name per class (or per label slot for multi-label).
        name: a short dataset name (``"bloodmnist"``, ``"bloodmnist/train"``, …).
        meta: free-form provenance (flag, split, size, indices into the parent, …).
    """

    images: torch.Tensor
    labels: torch.Tensor
    task: str
    label_names: list[str]
    name: str = "imageset"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        images, labels = as_images(self.images, f"ImageSet {self.name!r}"), self.labels
        if not isinstance(labels, torch.Tensor):
            labels = torch.as_tensor(np.asarray(labels))
        if self.task not in TASKS:
            raise ValueError(f"ImageSet {self.name!r}: unknown task {self.task!r}; expected one of {TASKS}")
        n_classes = len(self.label_names)
        if self.task == MULTI_LABEL:
            if labels.ndim != 2 or labels.shape[1] != n_classes:
                raise ValueError(
                    f"ImageSet {self.name!r}: multi-label labels must be N×{n_classes} multi-hot, "
                    f"got shape {tuple(labels.shape)}"
                )
            labels = labels.to(torch.float32)
            if labels.numel() and not bool(((labels == 0) | (labels == 1)).all()):
                raise ValueError(f"ImageSet {self.name!r}: multi-hot labels must be 0 or 1")
        else:
            if labels.ndim == 2 and labels.shape[1] == 1:
                labels = labels[:, 0]
            if labels.ndim != 1:
                raise ValueError(
                    f"ImageSet {self.name!r}: labels for task {self.task!r} must have shape (N,), "
                    f"got {tuple(labels.shape)}"
                )
            if labels.is_floating_point() and labels.numel() and not bool((labels == labels.round()).all()):
                raise ValueError(f"ImageSet {self.name!r}: class labels must be integers")
            labels = labels.to(torch.int64)
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= n_classes):
                raise ValueError(
                    f"ImageSet {self.name!r}: labels must lie in 0..{n_classes - 1} "
                    f"({n_classes} label names), got range {int(labels.min())}..{int(labels.max())}"
                )
        if len(labels) != len(images):
            raise ValueError(
                f"ImageSet {self.name!r}: {len(images)} images but {len(labels)} labels"
            )
        self.images, self.labels = images, labels
        self.label_names = [str(n) for n in self.label_names]

    # --- sizes -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes (or label slots for multi-label tasks)."""
        return len(self.label_names)

    @property
    def n_channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def size(self) -> int:
        """Image side length in pixels (images are square in MedMNIST; H for others)."""
        return int(self.images.shape[2])

    @property
    def is_multilabel(self) -> bool:
        return self.task == MULTI_LABEL

    def class_counts(self) -> np.ndarray:
        """Images per class (``n_classes``,); for multi-label, positives per label slot."""
        if self.is_multilabel:
            return self.labels.sum(0).to(torch.int64).numpy()
        return np.bincount(self.labels.numpy(), minlength=self.n_classes)

    def primary_labels(self) -> np.ndarray:
        """One class per image (``N``,): the label itself, or for multi-label the first
        positive slot (``-1`` when an image has none). Used for stratification and
        inverse-frequency sampling."""
        if not self.is_multilabel:
            return self.labels.numpy()
        lab = self.labels.numpy() > 0
        first = lab.argmax(1)
        first[~lab.any(1)] = -1
        return first

    def fingerprint(self) -> str:
        """SHA-1 of the images, labels, task and label names: equal fingerprints mean the
        same data (used to key feature caches and to refuse resuming a run on other data)."""
        import hashlib

        h = hashlib.sha1()
        for t in (self.images, self.labels):
            t = t.detach().cpu().contiguous()
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        h.update(repr((self.task, self.label_names)).encode())
        return h.hexdigest()

    # --- selection -------------------------------------------------------------------------
    def subset(self, indices: Sequence[int] | np.ndarray | torch.Tensor, name: str | None = None) -> ImageSet:
        """The images at ``indices`` (in that order) as a new set of the same type; ``meta["indices"]``
        records the positions in the *original* parent (composed through nested subsets)."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        if idx.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(idx.shape)}")
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"indices out of range for ImageSet {self.name!r} of length {len(self)}")
        parent = self.meta.get("indices")
        meta = dict(self.meta)
        meta["indices"] = (np.asarray(parent)[idx.numpy()] if parent is not None else idx.numpy()).copy()
        for key, value in self.meta.items():  # per-sample arrays follow the selection
            if key != "indices" and isinstance(value, np.ndarray) and value.shape[:1] == (len(self),):
                meta[key] = value[idx.numpy()]
        return dataclasses.replace(self, images=self.images[idx], labels=self.labels[idx],
                                   label_names=list(self.label_names), name=name or self.name, meta=meta)

    def __getitem__(self, key: int | slice | Sequence[int] | np.ndarray | torch.Tensor):
        """``ds[i]`` → ``(image uint8 C×H×W, label)``; ``ds[slice or index array]`` → ImageSet."""
        if isinstance(key, (int, np.integer)):
            return self.images[key], self.labels[key]
        if isinstance(key, slice):
            key = np.arange(len(self))[key]
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        return self.subset(key)

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return (
            f"ImageSet({self.name!r}, n={n}, images={c}×{h}×{w} uint8, task={self.task!r}, "
            f"n_classes={self.n_classes})"
        )

    def summary(self):
        """Per-class counts as a DataFrame (class index, name, count, fraction)."""
        import pandas as pd

        counts = self.class_counts()
        return pd.DataFrame(
            {
                "class": np.arange(self.n_classes),
                "name": self.label_names,
                "count": counts,
                "fraction": counts / max(len(self), 1),
            }
        )


def concat(sets: Sequence[ImageSet], name: str = "concat") -> ImageSet:
    """Concatenate ImageSets with the same task, label names, channels and image size."""
    if not sets:
        raise ValueError("concat needs at least one ImageSet")
    first = sets[0]
    for s in sets[1:]:
        if (s.task, s.label_names, s.images.shape[1:]) != (first.task, first.label_names, first.images.shape[1:]):
            raise ValueError(
                f"cannot concatenate {s.name!r} with {first.name!r}: task, label names, channels "
                "and image size must agree"
            )
    return ImageSet(
        images=torch.cat([s.images for s in sets]),
        labels=torch.cat([s.labels for s in sets]),
        task=first.task,
        label_names=list(first.label_names),
        name=name,
    )
