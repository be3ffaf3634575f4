"""Seeded subsets and the dataset-transferability study's fold protocol."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from . import catalog
from .imageset import ImageSet


def subset(
    data: ImageSet,
    n: int | None = None,
    *,
    per_class: int | None = None,
    fraction: float | None = None,
    stratified: bool = False,
    seed: int = 0,
    name: str | None = None,
) -> ImageSet:
    """A seeded random subset of ``data``, drawn without replacement.

    Give exactly one of ``n`` (images in total), ``per_class`` (images of each class; always
    stratified) or ``fraction`` (of ``len(data)``, rounded to the nearest integer).
    With ``stratified=True`` the class proportions of ``data`` are kept (largest-remainder
    allocation). Multi-label sets stratify on each image's first positive label.
    The result's ``meta["indices"]`` holds the chosen positions (sorted).
    """
    given = [x is not None for x in (n, per_class, fraction)]
    if sum(given) != 1:
        raise ValueError("subset: give exactly one of n, per_class or fraction")
    rng = np.random.default_rng(seed)
    total = len(data)
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ValueError(f"subset: fraction must be in (0, 1], got {fraction}")
        n = int(round(fraction * total))
    classes = data.primary_labels()
    if per_class is not None:
        if per_class < 1:
            raise ValueError(f"subset: per_class must be >= 1, got {per_class}")
        chosen = []
        for c in np.unique(classes):
            pool = np.flatnonzero(classes == c)
            if len(pool) < per_class:
                label = data.label_names[c] if c >= 0 else "no label"
                raise ValueError(
                    f"subset: class {c} ({label!r}) of {data.name!r} has only {len(pool)} images, "
                    f"fewer than per_class={per_class}"
                )
            chosen.append(rng.choice(pool, per_class, replace=False))
        idx = np.concatenate(chosen)
    else:
        if not 1 <= n <= total:
            raise ValueError(f"subset: n must be in 1..{total} (len of {data.name!r}), got {n}")
        if stratified:
            values, counts = np.unique(classes, return_counts=True)
            quota = counts * n / total
            take = np.floor(quota).astype(int)
            rest = n - take.sum()
            order = np.argsort(-(quota - take), kind="stable")
            take[order[:rest]] += 1
            idx = np.concatenate(
                [rng.choice(np.flatnonzero(classes == c), k, replace=False) for c, k in zip(values, take)]
            )
        else:
            idx = rng.choice(total, n, replace=False)
    return data.subset(np.sort(idx), name=name)


class Fold(NamedTuple):
    """One fold of :func:`folds`: the train and val subsets and their positions in the
    official splits."""

    index: int
    train: ImageSet
    val: ImageSet

    @property
    def train_indices(self) -> np.ndarray:
        return self.train.meta["indices"]

    @property
    def val_indices(self) -> np.ndarray:
        return self.val.meta["indices"]


def fold_indices(
    n_train: int, n_val: int, n_classes: int, n_folds: int = 5, seed: int = 24,
    train_per_class: int = 100, val_per_class: int = 25,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The study's draw (dataset-transferability spec §4.1): NumPy's legacy generator seeded
    once with ``seed``; for each fold in turn, ``train_per_class·C`` train positions drawn
    uniformly without replacement from the whole train split, then ``val_per_class·C`` val
    positions (or the whole val split when it is not larger than that). Not stratified.
    Positions are in draw order, as the study stored them."""
    rs = np.random.RandomState(seed)  # identical stream to np.random.seed(seed); np.random.choice
    n_tr, n_va = train_per_class * n_classes, val_per_class * n_classes
    if n_tr > n_train:
        raise ValueError(f"fold protocol needs {n_tr} train images but the split has {n_train}")
    out = []
    for _ in range(n_folds):
        tr = rs.choice(n_train, n_tr, replace=False)
        va = rs.choice(n_val, n_va, replace=False) if n_val > n_va else np.arange(n_val)
        out.append((tr, va))
    return out


def folds(
    flag: str,
    size: int = 28,
    n_folds: int = 5,
    seed: int = 24,
    root: str | os.PathLike | None = None,
    verify: bool = True,
) -> list[Fold]:
    """The dataset-transferability study's fold subsets of a MedMNIST flag.

    Fold i has N = 100·C train images drawn from the official train split and 25·C val
    images from the official val split (the whole val split when it has ≤ 25·C images, e.g.
    retinamnist's 120), C = INFO's class count; see :func:`fold_indices`. The test split is
    the full official one (``load(flag, "test", size)``).
    """
    train = catalog.load(flag, "train", size, root, verify=verify)
    val = catalog.load(flag, "val", size, root, verify=False)
    draws = fold_indices(len(train), len(val), train.n_classes, n_folds, seed)
    return [
        Fold(i + 1, train.subset(tr, name=f"{train.name}/fold{i + 1}"), val.subset(va, name=f"{val.name}/fold{i + 1}"))
        for i, (tr, va) in enumerate(draws)
    ]


class CVFold(NamedTuple):
    """One fold of :func:`cv_folds`: train, val and (v2 protocol) test subsets of one set."""

    index: int
    train: ImageSet
    val: ImageSet
    test: ImageSet | None


def _groups(data: ImageSet, groups) -> np.ndarray | None:
    if groups is None:
        return None
    if isinstance(groups, str):
        if groups not in data.meta:
            have = [k for k, v in data.meta.items() if isinstance(v, np.ndarray) and len(v) == len(data)]
            raise ValueError(f"group column {groups!r} is not in {data.name!r}'s metadata; per-image columns: {have}")
        groups = data.meta[groups]
    g = np.asarray(groups)
    if g.shape != (len(data),):
        raise ValueError(f"groups must hold one value per image ({len(data)}), got shape {g.shape}")
    return g


def cv_folds(data: ImageSet, k: int = 5, seed: int = 2, groups=None, test: bool = False) -> list[CVFold]:
    """K-fold cross-validation splits of one image set, as the hidden-representations study
    (spec §B.2): ``StratifiedKFold(k, shuffle=True, random_state=seed)`` on the labels, or
    ``GroupKFold(k)`` when ``groups`` (a per-image metadata column name, e.g. a patient id,
    or an array) is given, so no group straddles train and held-out images.

    ``test=False`` (the study's v1): train = k−1 folds, val = the held-out fold.
    ``test=True`` (v2): the held-out fold is split again — ``GroupKFold(4)`` or
    ``StratifiedKFold(5)`` without shuffling — and its **last** inner split gives val (the
    inner held-out part, ≈5% / 4% of the set) and test (the rest, ≈15% / 16%).
    Multi-label sets are stratified on their first label.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    if not isinstance(k, int) or isinstance(k, bool) or k < 2:
        raise ValueError(f"k must be an integer >= 2, got {k!r}")
    labels = data.labels.numpy()
    y = labels[:, 0] if labels.ndim == 2 else labels
    g = _groups(data, groups)
    if g is not None and len(np.unique(g)) < k:
        raise ValueError(f"{len(np.unique(g))} groups cannot make {k} grouped folds")
    outer = GroupKFold(k).split(y, y, g) if g is not None else \
        StratifiedKFold(k, shuffle=True, random_state=seed).split(y, y)
    out = []
    for i, (tr, held) in enumerate(outer):
        name = f"{data.name}/cv{i + 1}"
        if not test:
            out.append(CVFold(i + 1, data.subset(tr, f"{name}/train"), data.subset(held, f"{name}/val"), None))
            continue
        inner = list(GroupKFold(4).split(held, y[held], g[held]) if g is not None else
                     StratifiedKFold(5).split(held, y[held]))
        te, va = inner[-1]
        out.append(CVFold(i + 1, data.subset(tr, f"{name}/train"), data.subset(held[va], f"{name}/val"),
                          data.subset(held[te], f"{name}/test")))
    return out


def anno_subset(data: ImageSet, percent: float, seed: int = 99, name: str | None = None) -> ImageSet:
    """The benchmark study's label-efficiency subset (``--anno_percent``): the image order
    shuffled with Python's ``random.Random(seed)`` (the study's seed 99), then the first
    ``int(N · percent / 100)`` images kept (in shuffled order). ``percent=100`` returns a
    shuffled copy of everything."""
    import random

    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not 0 < percent <= 100:
        raise ValueError(f"anno_subset: percent must be in (0, 100], got {percent!r}")
    order = list(range(len(data)))
    random.Random(seed).shuffle(order)
    keep = order[:int(len(order) * percent / 100)]
    if not keep:
        raise ValueError(f"anno_subset: {percent}% of {len(data)} images is none; raise percent")
    return data.subset(keep, name=name or f"{data.name}[{percent:g}%]")


def projection_key(x: np.ndarray) -> np.ndarray:
    """One number per row of ``x`` (``N×D``), fixed by the row's values: its projection on a
    fixed pseudo-random direction (seed 20240917). Rows that tie are (almost surely)
    identical, so sorting by it orders samples by content, whatever order they came in."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    return x @ np.random.default_rng(20240917).standard_normal(x.shape[1])


def content_order(data: ImageSet) -> np.ndarray:
    """A permutation that puts ``data`` in an order fixed by the images themselves: sorted
    by primary label, then by :func:`projection_key` of the pixels (images that tie are
    identical, so their order does not matter). Any reordering of the same images gives the
    same sequence of images; seeded batching built on it is therefore invariant to how the
    user's files were ordered (class-sorted folders included)."""
    return np.lexsort((projection_key(data.images.numpy()), data.primary_labels()))


def stratified_order(data: ImageSet, seed: int = 0, group: int = 1) -> np.ndarray:
    """A seeded order of ``data`` in which every class is spread evenly: consecutive runs of
    any length hold each class in (nearly) its overall proportion, so every batch cut from
    it is stratified. Built on :func:`content_order`, so the result does not depend on the
    order of the input (it names the same images in the same sequence for any permutation
    of ``data``).

    Each class's images are shuffled under ``seed`` and cut into runs of ``group`` images
    (the last may be shorter); run k of class c gets the position (k + u_c) / r_c, with
    r_c runs and a seeded offset u_c ∈ [0, 1), and the runs are sorted by position.
    ``group=2`` keeps same-class images in pairs, so even a batch of four holds two
    positives of two classes (what a triplet loss needs). Returns indices into ``data``."""
    if isinstance(group, bool) or not isinstance(group, (int, np.integer)) or group < 1:
        raise ValueError(f"group must be a positive integer, got {group!r}")
    base = content_order(data)
    labels = data.primary_labels()[base]
    rng = np.random.default_rng(seed)
    pos = np.empty(len(base))
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        shuffled = members[rng.permutation(len(members))]
        runs = np.arange(len(members)) // group
        n_runs = runs[-1] + 1
        # position of the run, plus a tie-breaker that keeps a run's images together and in order
        pos[shuffled] = (runs + rng.random()) / n_runs + np.arange(len(members)) % group * 1e-12
    return base[np.argsort(pos, kind="stable")]
