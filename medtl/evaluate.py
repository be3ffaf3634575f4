"""Task-aware metrics of predictions: AUC and ACC identical to medmnist's ``getAUC`` /
``getACC`` (and so to its ``Evaluator``), the studies' other metrics (quadratic κ, balanced
accuracy, one-vs-one AUC, AUPRC in both forms), percentile-bootstrap confidence intervals,
and the losses of a model's outputs (the training loss every selection rule uses).

Tasks are medmnist's strings: ``"multi-class"``, ``"ordinal-regression"`` (scored as
multi-class), ``"binary-class"`` and ``"multi-label, binary-class"``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import rankdata
from sklearn import metrics as skm
from torch import nn

from .data.imageset import BINARY, MULTI_LABEL, TASKS
from .data.segset import SEGMENTATION


# --- input checks --------------------------------------------------------------------------
def _to_numpy(x, name: str, dtype=None) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    try:
        arr = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, got {type(x).__name__} ({err})") from err
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def _seg_arrays(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    y_true = _to_numpy(y_true, "y_true (masks)")
    y_score = _to_numpy(y_score, "y_score (probability maps)", np.float64)
    if y_true.ndim == 3:
        y_true = y_true[:, None]
    if y_score.ndim == 3:
        y_score = y_score[:, None]
    if y_true.ndim != 4 or y_true.shape != y_score.shape or y_true.shape[1] != 1 or not len(y_true):
        raise ValueError(f"segmentation needs masks and probability maps of one shape N×1×H×W (or N×H×W), got "
                         f"{np.shape(y_true)} and {np.shape(y_score)}")
    if not np.isin(y_true, (0, 1)).all():
        raise ValueError("segmentation masks (y_true) must be 0/1")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or inf")
    return y_true.astype(np.int64), y_score


def _arrays(y_true, y_score, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task == SEGMENTATION:
        return _seg_arrays(y_true, y_score)
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; expected one of {(*TASKS, SEGMENTATION)}")
    y_true = _to_numpy(y_true, "y_true")
    y_score = _to_numpy(y_score, "y_score", np.float64)
    if y_true.size == 0 or y_score.size == 0:
        raise ValueError("y_true and y_score are empty: no predictions to score")
    if y_true.ndim == 2 and y_true.shape[1] == 1 and task != MULTI_LABEL:
        y_true = y_true[:, 0]
    if y_score.ndim == 2 and y_score.shape[1] == 1:
        y_score = y_score[:, 0]
    if y_true.ndim == 0 or y_score.ndim == 0 or len(y_true) != len(y_score):
        raise ValueError(f"y_true and y_score must have the same number of rows, got shapes "
                         f"{np.shape(y_true)} and {np.shape(y_score)}")
    if not np.isfinite(y_score).all():
        raise ValueError("y_score contains NaN or inf")
    if not np.isfinite(y_true.astype(np.float64)).all() or (y_true != np.round(y_true)).any():
        raise ValueError("y_true must hold class indices (integers) or 0/1 multi-hot labels, got non-integer values")
    y_true = y_true.astype(np.int64)
    if task == MULTI_LABEL:
        if y_true.ndim != 2 or y_score.shape != y_true.shape:
            raise ValueError(f"multi-label task needs y_true and y_score of shape N×L, got {y_true.shape} and "
                             f"{y_score.shape}")
        if not np.isin(y_true, (0, 1)).all():
            raise ValueError("multi-label y_true must be 0/1")
    elif task == BINARY:
        if y_true.ndim != 1 or y_score.ndim not in (1, 2) or (y_score.ndim == 2 and y_score.shape[1] != 2):
            raise ValueError(f"binary task needs y_true (N,) and y_score (N,), N×1 or N×2 (column 1 = the positive "
                             f"class), got {y_true.shape} and {y_score.shape}")
        if not np.isin(y_true, (0, 1)).all():
            raise ValueError(f"binary y_true must be 0/1, got values {np.unique(y_true)[:5].tolist()}")
    elif y_true.ndim != 1 or y_score.ndim != 2:
        raise ValueError(f"{task} task needs y_true (N,) and y_score N×C, got {y_true.shape} and {y_score.shape}")
    elif y_true.min() < 0 or y_true.max() >= y_score.shape[1]:
        raise ValueError(f"labels must lie in 0..{y_score.shape[1] - 1} for {y_score.shape[1]} score columns")
    return y_true, y_score


def _positive(y_score: np.ndarray) -> np.ndarray:
    return y_score[:, -1] if y_score.ndim == 2 else y_score


def _roc_auc(y, s, what: str) -> float:
    """ROC AUC of scores ``s`` for 0/1 labels ``y`` (both ``N``) as the Mann–Whitney
    statistic, AUC = (R₁ − n₁(n₁+1)/2) / (n₁ n₀), R₁ the sum of the positives' average ranks
    (ties count ½, as the trapezoidal ROC area does): equal to ``roc_auc_score`` without its
    input validation, which cost milliseconds per call inside every bootstrap resample."""
    pos = np.asarray(y) == 1
    n1 = int(np.count_nonzero(pos))
    n0 = len(pos) - n1
    if n1 == 0 or n0 == 0:
        raise ValueError(f"AUC is undefined for {what}: y_true has a single value (no positives or no negatives)")
    return float((rankdata(s)[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# --- medmnist's metrics --------------------------------------------------------------------
#: how :func:`auc` averages over classes.
AUC_AVERAGES = ("macro", "micro", "weighted")


def auc(y_true, y_score, task: str, average: str = "macro") -> float:
    """Area under the ROC curve, exact (every threshold), averaged over classes.

    ``average="macro"`` (MedMNIST's definition, the default):

    * multi-class / ordinal: mean over classes of one-vs-rest ROC-AUC on column c of
      ``y_score`` (``N×C``, e.g. softmax probabilities);
    * binary: ROC-AUC of ``y_score[:, -1]`` (or of ``y_score`` when 1-D);
    * multi-label: mean per-label ROC-AUC (``N×L`` scores, e.g. sigmoid outputs).

    ``average="micro"``: one ROC-AUC of the one-hot labels against the scores, both
    flattened (``N·C`` pairs; multi-label: the label matrix). This is the
    hidden-representations study's v2 test AUC (Keras ``AUC()`` on one-hot labels vs softmax
    outputs, spec §B.1) computed exactly rather than with Keras' 200 thresholds; for a binary
    task with two softmax columns both columns are pooled, as there (a 1-D binary score is
    read as the columns ``[1 − s, s]``).

    ``average="weighted"``: the one-vs-rest AUCs weighted by class prevalence
    (scikit-learn's ``multi_class="ovr", average="weighted"``, the study's v1 AUC); binary:
    the binary AUC.

    Raises a ValueError naming the class when a class has no positive or no negative, and
    for an unknown ``average``.
    """
    if average not in AUC_AVERAGES:
        raise ValueError(f"average must be one of {AUC_AVERAGES}, got {average!r}")
    y_true, y_score = _arrays(y_true, y_score, task)
    if average == "micro":
        return _roc_auc(*_one_hot_flat(y_true, y_score, task), "the pooled one-hot labels")
    if task == MULTI_LABEL:
        per = np.array([_roc_auc(y_true[:, i], y_score[:, i], f"label {i}") for i in range(y_score.shape[1])])
        weights = y_true.sum(0) if average == "weighted" else np.ones(len(per))
        return float(per @ weights / weights.sum())
    if task == BINARY:
        return _roc_auc(y_true, _positive(y_score), "the binary task")
    per = np.array([_roc_auc((y_true == i).astype(float), y_score[:, i], f"class {i}")
                    for i in range(y_score.shape[1])])
    if average == "weighted":
        return float(per @ np.bincount(y_true.astype(int), minlength=len(per)) / len(y_true))
    return float(per.mean())


def _one_hot_flat(y_true: np.ndarray, y_score: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores as the flattened one-hot / score matrices of a micro average."""
    if task == MULTI_LABEL:
        return y_true.ravel(), y_score.ravel()
    scores = y_score if y_score.ndim == 2 else np.stack([1 - y_score, y_score], 1)
    onehot = np.zeros(scores.shape)
    onehot[np.arange(len(y_true)), y_true.astype(int)] = 1.0
    return onehot.ravel(), scores.ravel()


def per_class_auc(y_true, y_score, task: str, columns=None) -> np.ndarray:
    """One ROC AUC per class (one-vs-rest) or label slot (the benchmark study's
    ``computeAUROC``), optionally only for ``columns`` (indices, e.g. CheXpert's 5 reported
    observations); NaN where a class is absent. Binary tasks give one value."""
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == BINARY:
        cols = [(y_true, _positive(y_score))]
    elif task == MULTI_LABEL:
        cols = [(y_true[:, i], y_score[:, i]) for i in range(y_score.shape[1])]
    else:
        cols = [((y_true == i).astype(int), y_score[:, i]) for i in range(y_score.shape[1])]
    if columns is not None:
        idx = [int(c) for c in columns]
        if any(not 0 <= c < len(cols) for c in idx):
            raise ValueError(f"columns {idx} out of range for {len(cols)} classes")
        cols = [cols[c] for c in idx]
    return np.array([_roc_auc(y, s, "") if len(np.unique(y)) == 2 else np.nan for y, s in cols])


def acc(y_true, y_score, task: str, threshold: float = 0.5) -> float:
    """Accuracy as MedMNIST defines it: argmax for multi-class / ordinal; ``score >
    threshold`` on the last column for binary; mean per-label accuracy of ``score >
    threshold`` for multi-label."""
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == MULTI_LABEL:
        pred = y_score > threshold
        return sum(skm.accuracy_score(y_true[:, i], pred[:, i]) for i in range(y_true.shape[1])) / y_true.shape[1]
    if task == BINARY:
        return skm.accuracy_score(y_true, _positive(y_score) > threshold)
    return skm.accuracy_score(y_true, np.argmax(y_score, axis=-1))


def _predictions(y_true: np.ndarray, y_score: np.ndarray, task: str, threshold: float = 0.5) -> np.ndarray:
    if task == MULTI_LABEL:
        raise ValueError("this metric is defined for single-label tasks (class predictions), not multi-label")
    if task == BINARY:
        return (_positive(y_score) > threshold).astype(np.int64)
    return np.argmax(y_score, axis=-1)


# --- the studies' other metrics -------------------------------------------------------------
def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion counts ``K×K``: row = true class, column = predicted class."""
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.float64)


def kappa(y_true, y_score, task: str, weights: str | None = "quadratic") -> float:
    """Cohen's κ between true and predicted classes (argmax; threshold 0.5 for binary):

        κ = 1 − Σ_ij w_ij O_ij / Σ_ij w_ij E_ij,   E = (row sums of O)(column sums of O)ᵀ / N,

    with O the ``K×K`` confusion counts over all K score columns and w_ij = (i−j)²
    (``weights="quadratic"``, the feature-reuse study's APTOS metric; Cohen 1968), |i−j|
    (``"linear"``) or 1[i≠j] (None, unweighted κ). κ = 1 for perfect agreement, ≈0 for
    chance; 1.0 by convention when both raters use a single class."""
    if weights not in ("quadratic", "linear", None):
        raise ValueError(f"weights must be 'quadratic', 'linear' or None, got {weights!r}")
    y_true, y_score = _arrays(y_true, y_score, task)
    k = y_score.shape[1] if y_score.ndim == 2 and task != BINARY else 2
    o = _confusion(y_true, _predictions(y_true, y_score, task), k)
    e = np.outer(o.sum(1), o.sum(0)) / o.sum()
    d = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).astype(np.float64)
    w = d ** 2 if weights == "quadratic" else d if weights == "linear" else (d > 0).astype(np.float64)
    expected = (w * e).sum()
    return 1.0 if expected == 0 else float(1.0 - (w * o).sum() / expected)


def balanced_accuracy(y_true, y_score, task: str) -> float:
    """Balanced accuracy = mean over the classes present in ``y_true`` of the recall
    O_cc / Σ_j O_cj (Brodersen et al. 2010; the feature-reuse study's ISIC metric)."""
    y_true, y_score = _arrays(y_true, y_score, task)
    k = y_score.shape[1] if y_score.ndim == 2 and task != BINARY else 2
    o = _confusion(y_true, _predictions(y_true, y_score, task), k)
    present = o.sum(1) > 0
    return float((np.diag(o)[present] / o.sum(1)[present]).mean())


def _mann_whitney_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie), from mid-ranks."""
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def auc_ovo(y_true, y_score, task: str) -> float:
    """ROC-AUC with one-vs-one macro averaging (Hand & Till 2001; the feature-reuse study's
    AUC): for every class pair (i, j), A(i|j) is the Mann–Whitney AUC of score column i
    separating class i from class j on the samples of those two classes, and

        AUC_ovo = 2 / (K(K−1)) · Σ_{i<j} (A(i|j) + A(j|i)) / 2,

    on probabilities ``N×C`` (rows not summing to 1 are normalised first; scikit-learn
    requires them to).
    Binary: the ordinary AUC of the positive column; multi-label: the mean per-label AUC.
    Every class must be present."""
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == MULTI_LABEL:
        return auc(y_true, y_score, task)
    if task == BINARY:
        return _roc_auc(y_true, _positive(y_score), "the binary task")
    k = y_score.shape[1]
    absent = sorted(set(range(k)) - set(np.unique(y_true).tolist()))
    if absent:
        raise ValueError(f"one-vs-one AUC is undefined: classes {absent} have no sample")
    sums = y_score.sum(1, keepdims=True)
    p = y_score if np.allclose(sums, 1.0) else y_score / sums  # re-normalising rows would break exact ties
    pairs = [(_mann_whitney_auc(p[y_true == i, i], p[y_true == j, i])
              + _mann_whitney_auc(p[y_true == j, j], p[y_true == i, j])) / 2
             for i in range(k) for j in range(i + 1, k)]
    return float(np.mean(pairs))


def _pr_area(y: np.ndarray, s: np.ndarray, method: str, what: str) -> float:
    if y.sum() == 0:
        raise ValueError(f"AUPRC is undefined for {what}: no positive sample")
    if method == "ap":
        return float(skm.average_precision_score(y, s))
    precision, recall, _ = skm.precision_recall_curve(y, s)
    return float(skm.auc(recall, precision))


def auprc(y_true, y_score, task: str, method: str = "ap") -> float:
    """Area under the precision–recall curve: ``method="ap"`` scikit-learn's average
    precision (the step-wise sum Σ (R_n − R_{n−1}) P_n), ``"trapezoid"`` the trapezoidal area
    under ``precision_recall_curve`` (the truncated-transfer study's AUPRC). Binary: the
    positive class (column 1); multi-class: macro mean of one-vs-rest per class; multi-label:
    mean over labels."""
    if method not in ("ap", "trapezoid"):
        raise ValueError(f"method must be 'ap' or 'trapezoid', got {method!r}")
    y_true, y_score = _arrays(y_true, y_score, task)
    if task == BINARY:
        return _pr_area(y_true, _positive(y_score), method, "the binary task")
    cols = y_score.shape[1]
    if task == MULTI_LABEL:
        return float(np.mean([_pr_area(y_true[:, i], y_score[:, i], method, f"label {i}") for i in range(cols)]))
    return float(np.mean([_pr_area((y_true == i).astype(int), y_score[:, i], method, f"class {i}")
                          for i in range(cols)]))


# --- segmentation ----------------------------------------------------------------------------
def _overlap(y_true, y_score, threshold: float, axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t, s = _seg_arrays(y_true, y_score)
    p = s > threshold
    t = t.astype(bool)
    return (p & t).sum(axes), p.sum(axes), t.sum(axes)


def dice(y_true, y_score, task: str = SEGMENTATION, threshold: float = 0.5) -> float:
    """Dice of thresholded predictions computed **globally** over the whole set (the
    benchmark study's first Dice): ``2 Σ(p·t) / (Σp + Σt)`` over every pixel of every image,
    ``p = y_score > threshold``. Shapes ``N×1×H×W`` (or ``N×H×W``); 1.0 when both are empty."""
    inter, pred, true = _overlap(y_true, y_score, threshold, None)
    return 1.0 if pred + true == 0 else float(2 * inter / (pred + true))


def dice_per_image(y_true, y_score, task: str = SEGMENTATION, threshold: float = 0.5) -> float:
    """The mean over images of each image's Dice (the study's second Dice); an image whose
    mask and prediction are both empty scores 1."""
    inter, pred, true = _overlap(y_true, y_score, threshold, (1, 2, 3))
    denom = pred + true
    per = np.where(denom == 0, 1.0, 2 * inter / np.maximum(denom, 1))
    return float(per.mean())


def iou(y_true, y_score, task: str = SEGMENTATION, threshold: float = 0.5) -> float:
    """Intersection over union (Jaccard) of thresholded predictions, globally over the set:
    ``Σ(p·t) / Σ(p ∨ t)`` (``= D / (2 − D)`` for the global Dice D); 1.0 when both are empty.
    Not computed by the study's code; reported beside Dice."""
    inter, pred, true = _overlap(y_true, y_score, threshold, None)
    union = pred + true - inter
    return 1.0 if union == 0 else float(inter / union)


SEG_METRICS = ("dice", "dice_image", "iou")

METRICS: dict[str, Callable] = {"dice": dice, "dice_image": dice_per_image, "iou": iou,"auc": auc, "acc": acc, "kappa": kappa, "balanced_accuracy": balanced_accuracy,
                                "auc_ovo": auc_ovo, "auprc": auprc,
                                "auprc_trapezoid": lambda y, s, t: auprc(y, s, t, "trapezoid")}


def bootstrap_ci(y_true, y_score, task: str, metric: str | Callable = "auc", n_boot: int = 1000,
                 alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """Percentile bootstrap confidence interval of a metric.

    Resamples the N (label, score) rows with replacement ``n_boot`` times (seeded);
    resamples on which the metric is undefined (a class absent) are skipped and counted.

    Returns:
        ``{"value", "low", "high", "std", "n_boot", "n_skipped"}`` with ``[low, high]`` the
        ``1 - alpha`` percentile interval.
    """
    if isinstance(metric, str) and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)} (or a callable)")
    fn = METRICS[metric] if isinstance(metric, str) else metric
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2 (resamples make the interval), got {n_boot!r}")
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
    if len(stats) < 2:
        raise ValueError("almost every bootstrap resample left the metric undefined; the data is too small")
    stats = np.asarray(stats)
    low, high = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return {"value": float(value), "low": float(low), "high": float(high), "std": float(stats.std(ddof=1)),
            "n_boot": n_boot, "n_skipped": skipped}


# --- comparing repeated trials -------------------------------------------------------------
def ttest(a, b, equal_var: bool = True) -> dict[str, float]:
    """Two-sample t-test of the means of ``a`` and ``b`` (e.g. the test AUCs of N seeded
    trials of an initialisation vs a baseline's; the benchmark study's significance test).

    Student (``equal_var=True``): pooled variance
    ``s² = ((n_a−1)s_a² + (n_b−1)s_b²) / (n_a+n_b−2)``, ``t = (ā − b̄) / √(s²(1/n_a + 1/n_b))``,
    ``df = n_a + n_b − 2``. Welch (``equal_var=False``): ``t = (ā − b̄) / √(s_a²/n_a + s_b²/n_b)``
    with the Welch–Satterthwaite ``df``. ``p`` is two-sided from Student's t distribution.

    Returns ``{"t", "df", "p", "mean_a", "mean_b", "diff"}``; ``t``/``p`` are NaN when both
    samples are constant and equal (as scipy).
    """
    from scipy.stats import t as t_dist

    a = _to_numpy(a, "a", np.float64).ravel()
    b = _to_numpy(b, "b", np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError(f"a t-test needs at least 2 values per sample, got {len(a)} and {len(b)}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("t-test samples contain NaN or inf")
    na, nb = len(a), len(b)
    va, vb = a.var(ddof=1), b.var(ddof=1)
    diff = a.mean() - b.mean()
    if equal_var:
        df = na + nb - 2.0
        se = np.sqrt(((na - 1) * va + (nb - 1) * vb) / df * (1 / na + 1 / nb))
    else:
        qa, qb = va / na, vb / nb
        se = np.sqrt(qa + qb)
        df = (qa + qb) ** 2 / (qa**2 / (na - 1) + qb**2 / (nb - 1)) if qa + qb > 0 else np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / se
    p = float(2 * t_dist.sf(abs(t), df)) if np.isfinite(t) else (0.0 if np.isinf(t) else np.nan)
    return {"t": float(t), "df": float(df), "p": p, "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "diff": float(diff)}


# --- losses of model outputs ---------------------------------------------------------------
LOSSES = ("ce", "bce", "dice", "dice+bce")
#: Losses a segmentation head may train with (the study: Dice for lungs and pneumothorax, BCE for vessels).
SEG_LOSSES = ("dice", "bce", "dice+bce")


class SoftDiceLoss(nn.Module):
    """Soft Dice loss of binary segmentation logits ``B×1×H×W`` against 0/1 masks:
    ``1 − (2 Σ σ(z)·t + ε) / (Σ σ(z) + Σ t + ε)`` summed over the whole batch (as smp's
    ``DiceLoss(mode="binary")``), ε = 1; ``bce=True`` adds BCE-with-logits."""

    def __init__(self, bce: bool = False, eps: float = 1.0) -> None:
        super().__init__()
        self.bce, self.eps = bce, eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        target = target.to(logits.dtype)
        loss = 1 - (2 * (p * target).sum() + self.eps) / (p.sum() + target.sum() + self.eps)
        if self.bce:
            loss = loss + nn.functional.binary_cross_entropy_with_logits(logits, target)
        return loss


class _OneHotBCE(nn.Module):
    """BCE-with-logits on one-hot targets for single-label tasks (sigmoid heads, as the
    benchmark study trains every task), with optional per-class weights; a binary head with
    one output (one sigmoid, the study's binary targets) takes the label itself as target."""

    def __init__(self, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if logits.shape[1] == 1:  # one sigmoid for a binary task (the benchmark study's head): target = y
            target = y.to(logits.dtype)[:, None]
            w = None if self.weight is None else self.weight.to(logits)[y][:, None]  # per-class weight of each image
            return nn.functional.binary_cross_entropy_with_logits(logits, target, weight=w)
        target = nn.functional.one_hot(y, logits.shape[1]).to(logits.dtype)
        w = None if self.weight is None else self.weight.to(logits).expand_as(logits)
        return nn.functional.binary_cross_entropy_with_logits(logits, target, weight=w)


def resolve_loss(task: str, loss: str | None = None) -> str:
    """The loss name for ``task``: ``loss`` after checking it fits the task, else the
    default (Dice for segmentation, BCE for multi-label tasks, CE otherwise)."""
    if task == SEGMENTATION:
        loss = loss or "dice"
        if loss not in SEG_LOSSES:
            raise ValueError(f"a segmentation loss must be one of {SEG_LOSSES}, got {loss!r}")
        return loss
    loss = loss or ("bce" if task == MULTI_LABEL else "ce")
    if loss not in ("ce", "bce"):
        raise ValueError(f"a classification loss must be one of ('ce', 'bce'), got {loss!r} (Dice losses are for "
                         "segmentation sets)")
    return loss


def loss_fn(task: str, loss: str | None = None, class_weights=None) -> nn.Module:
    """The training / selection loss: BCE-with-logits for multi-label tasks (and for
    ``loss="bce"`` heads on single-label tasks, on one-hot targets), cross-entropy otherwise;
    Dice, BCE or both for segmentation maps; ``class_weights`` (``C`` numbers) weight the
    classes."""
    loss = resolve_loss(task, loss)
    if task == SEGMENTATION:
        return nn.BCEWithLogitsLoss() if loss == "bce" else SoftDiceLoss(bce=loss == "dice+bce")
    w = None if class_weights is None else torch.as_tensor(np.asarray(class_weights, dtype=np.float32))
    if task == MULTI_LABEL:
        return nn.BCEWithLogitsLoss(pos_weight=w)
    return _OneHotBCE(w) if loss == "bce" else nn.CrossEntropyLoss(weight=w)


def loss_target(y: torch.Tensor, task: str) -> torch.Tensor:
    """Labels as the loss wants them (float multi-hot for multi-label tasks)."""
    return y.float() if task in (MULTI_LABEL, SEGMENTATION) else y


def scores(logits: torch.Tensor, task: str, loss: str | None = None) -> torch.Tensor:
    """Probabilities from logits: sigmoid for multi-label tasks and BCE heads, softmax
    otherwise."""
    if task in (MULTI_LABEL, SEGMENTATION) or loss == "bce":
        return torch.sigmoid(logits)
    return torch.softmax(logits, 1)


def score_outputs(logits, y_true, task: str, loss: str | None = None, class_weights=None) -> dict:
    """Loss, AUC and ACC of a model's outputs: ``logits`` ``N×K`` (float), ``y_true`` ``N``
    class indices (``N×L`` multi-hot). The loss is the head's training loss (:func:`loss_fn`),
    the scores its probabilities (:func:`scores`); AUC/ACC are NaN where undefined (a class
    absent). Returns ``{"loss", "auc", "acc", "y_true", "y_score", "logits"}``; for the
    segmentation task (logits and masks ``N×1×H×W``) ``{"loss", "dice", "dice_image", "iou",
    …}`` instead."""
    logits = torch.as_tensor(logits).float()
    y = torch.as_tensor(np.asarray(y_true))
    value = float(loss_fn(task, loss, class_weights)(logits, loss_target(y, task)))
    prob = scores(logits, task, loss).numpy()
    yt = y.numpy()
    if task == SEGMENTATION:
        return {"loss": value, **{m: METRICS[m](yt, prob) for m in SEG_METRICS}, "y_true": yt, "y_score": prob,
                "logits": logits.numpy()}

    def safe(fn):
        try:
            return float(fn(yt, prob, task))
        except ValueError:
            return float("nan")

    return {"loss": value, "auc": safe(auc), "acc": safe(acc), "y_true": yt, "y_score": prob,
            "logits": logits.numpy()}
