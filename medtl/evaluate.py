"""Task-aware AUC and ACC, identical to medmnist's ``getAUC`` / ``getACC`` (and so to its
``Evaluator``), plus percentile-bootstrap confidence intervals.

Tasks are medmnist's strings: ``"multi-class"``, ``"ordinal-regression"`` (scored as
multi-class), ``"binary-class"`` and ``"multi-label, binary-class"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.metrics import accuracy_score, roc_auc_score

from .data.imageset import BINARY, MULTI_LABEL, TASKS


def _arrays(y_true, y_score, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {TASKS}")
    y_true = np.asarray(y_true.detach().cpu() if hasattr(y_true, "detach") else y_true)
    y_score = np.asarray(y_score.detach().cpu() if hasattr(y_score, "detach") else y_score, dtype=np.float64)
    y_true, y_score = y_true.squeeze(), y_score.squeeze()
    if y_true.ndim == 0 or y_score.ndim == 0 or len(y_true) != len(y_score):
        raise ValueError(
            f"y_true and y_score must have the same number of rows, got shapes "
            f"{np.shape(y_true)} and {np.shape(y_score)}"
        )
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or inf")
    if task == MULTI_LABEL:
        if y_true.ndim != 2 or y_score.shape != y_true.shape:
            raise ValueError(
                f"multi-label task needs y_true and y_score of shape N×L, got {y_true.shape} and {y_score.shape}"
            )
    elif task == BINARY:
        if y_true.ndim != 1 or y_score.ndim not in (1, 2):
            raise ValueError(f"binary task needs y_true (N,) and y_score (N,) or (N, 2), got {y_true.shape}, {y_score.shape}")
    elif y_true.ndim != 1 or y_score.ndim != 2:
        raise ValueError(f"{task} task needs y_true (N,) and y_score N×C, got {y_true.shape} and {y_score.shape}")
    elif y_true.min() < 0 or y_true.max() >= y_score.shape[1]:
        raise ValueError(f"labels must lie in 0..{y_score.shape[1] - 1} for {y_score.shape[1]} score columns")
    return y_true, y_score


def _roc_auc(y, s, what: str) -> float:
    if len(np.unique(y)) < 2:
        raise ValueError(f"AUC is undefined for {what}: y_true has a single value (no positives or no negatives)")
    return roc_auc_score(y, s)


def auc(y_true, y_score, task: str) -> float:
    """Area under the ROC curve as MedMNIST defines it.

    * multi-class / ordinal: mean over classes of one-vs-rest ROC-AUC on column c of
      ``y_score`` (``N×C``, e.g. softmax probabilities);
    * binary: ROC-AUC of ``y_score[:, -1]`` (or of ``y_score`` when 1-D);
    * multi-label: mean per-label ROC-AUC (``N×L`` scores, e.g. sigmoid outputs).

    Raises a ValueError naming the class when a class has no positive or no negative.
    """
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == MULTI_LABEL:
        return sum(_roc_auc(y_true[:, i], y_score[:, i], f"label {i}") for i in range(y_score.shape[1])) / y_score.shape[1]
    if task == BINARY:
        return _roc_auc(y_true, y_score[:, -1] if y_score.ndim == 2 else y_score, "the binary task")
    return sum(
        _roc_auc((y_true == i).astype(float), y_score[:, i], f"class {i}") for i in range(y_score.shape[1])
    ) / y_score.shape[1]


def acc(y_true, y_score, task: str, threshold: float = 0.5) -> float:
    """Accuracy as MedMNIST defines it: argmax for multi-class / ordinal; ``score >
    threshold`` on the last column for binary; mean per-label accuracy of ``score >
    threshold`` for multi-label."""
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == MULTI_LABEL:
        pred = y_score > threshold
        return sum(accuracy_score(y_true[:, i], pred[:, i]) for i in range(y_true.shape[1])) / y_true.shape[1]
    if task == BINARY:
        return accuracy_score(y_true, (y_score[:, -1] if y_score.ndim == 2 else y_score) > threshold)
    return accuracy_score(y_true, np.argmax(y_score, axis=-1))


METRICS: dict[str, Callable] = {"auc": auc, "acc": acc}


def bootstrap_ci(y_true, y_score, task: str, metric: str | Callable = "auc", n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap confidence interval of a metric.

    Resamples the N (label, score) rows with replacement ``n_boot`` times (seeded);
    resamples on which the metric is undefined (a class absent) are skipped and counted.

    Returns:
        ``{"value", "low", "high", "std", "n_boot", "n_skipped"}`` with ``[low, high]`` the
        ``1 - alpha`` percentile interval.
    """
    fn = METRICS[metric] if isinstance(metric, str) else metric
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_true, y_score = _arrays(y_true, y_score, task)
    value = fn(y_true, y_score, task)
    rng = np.random.default_rng(seed)
    stats, skipped = [], 0
    for _ in range(n_boot):
        idx = rng.integers(0, len(y_true), len(y_true))
        try:
            stats.append(fn(y_true[idx], y_score[idx], task))
        except ValueError:
            skipped += 1
    if not stats:
        raise ValueError("every bootstrap resample left the metric undefined; the data is too small")
    stats = np.asarray(stats)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return {"value": float(value), "low": float(low), "high": float(high), "std": float(stats.std(ddof=1)),
            "n_boot": n_boot, "n_skipped": skipped}
