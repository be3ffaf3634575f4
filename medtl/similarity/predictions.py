"""Prediction similarity: do two models make their errors on the same inputs?
(the hidden-representations study, spec §B.4)."""

from __future__ import annotations

import numpy as np


def hard_predictions(pred) -> np.ndarray:
    """Class predictions from scores: argmax of ``N×K`` scores (a 2-unit softmax included),
    threshold 0.5 for a single sigmoid column or a 1-D probability vector; integer arrays
    pass through."""
    p = np.asarray(pred.detach().cpu() if hasattr(pred, "detach") else pred)
    if p.ndim == 2 and p.shape[1] > 1:
        return p.argmax(1)
    p = p.reshape(-1)
    if np.issubdtype(p.dtype, np.integer):
        return p
    return (p > 0.5).astype(np.int64)


def prediction_similarity(y_true, pred_a, pred_b) -> dict[str, float]:
    """Error agreement of two models on the same N inputs.

    With e_A = 1[ŷ_A ≠ y], e_B = 1[ŷ_B ≠ y] and accuracies a_A, a_B:

    * ``p_obs`` = (1/N) Σ_i 1[e_A(i) = e_B(i)] (both right or both wrong);
    * ``p_ind`` = a_A a_B + (1 − a_A)(1 − a_B), the agreement of independent models;
    * ``p_ind_study`` = a_A² + (1 − a_A)², the study's baseline (model A's accuracy only);
    * ``kappa`` = (p_obs − p_ind) / (1 − p_ind), Cohen's κ of the two error indicators.

    Args:
        y_true: ``N`` class labels.
        pred_a, pred_b: predictions of the two models (labels or scores, see
            :func:`hard_predictions`).
    """
    y = np.asarray(y_true).reshape(-1)
    a, b = hard_predictions(pred_a), hard_predictions(pred_b)
    if not len(y) == len(a) == len(b):
        raise ValueError(f"y_true, pred_a and pred_b must have the same length, got {len(y)}, {len(a)}, {len(b)}")
    if len(y) == 0:
        raise ValueError("no samples")
    ea, eb = a != y, b != y
    acc_a, acc_b = 1 - ea.mean(), 1 - eb.mean()
    p_obs = float((ea == eb).mean())
    p_ind = float(acc_a * acc_b + (1 - acc_a) * (1 - acc_b))
    kappa = (p_obs - p_ind) / (1 - p_ind) if p_ind < 1 else float("nan")
    return {"p_obs": p_obs, "p_ind": p_ind, "p_ind_study": float(acc_a**2 + (1 - acc_a) ** 2),
            "kappa": float(kappa), "acc_a": float(acc_a), "acc_b": float(acc_b), "n": len(y)}
