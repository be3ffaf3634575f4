"""Combining transferability metrics, evaluated honestly: the combination is chosen on all
targets but one and judged on the held-out target (leave-one-target-out), so its mean τ_w
is comparable to a single metric's and not tuned on the targets it is scored on."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from .evaluation import ground_truth_table, tau_w_many, wide_scores


def rank_average(scores: Mapping[str, pd.Series]) -> pd.Series:
    """The mean over metrics of each source's within-target rank (1 = lowest score; ties
    share the average rank), so metrics on different scales count equally."""
    ranked = [pd.Series(stats.rankdata(s.to_numpy()), index=s.index) for s in scores.values()]
    return sum(ranked) / len(ranked)


def _aligned(scores, ground_truth, metrics, exclude_self: bool):
    """{target: (DataFrame sources × metrics, AUC Series)} over the sources every metric and
    the ground truth cover (the target itself left out when ``exclude_self``)."""
    wide, gt = wide_scores(scores), ground_truth_table(ground_truth)
    out = {}
    for target in gt.columns:
        cols = {m: wide[m][target] for m in metrics if target in wide[m].columns}
        if len(cols) < len(metrics):
            continue
        table = pd.DataFrame(cols).join(gt[target].rename("__auc__"), how="inner")
        if exclude_self:
            table = table.drop(index=target, errors="ignore")
        table = table.dropna()
        if len(table) >= 3 and np.ptp(table["__auc__"].to_numpy()) > 0:
            out[target] = (table[list(metrics)].astype(float), table["__auc__"].astype(float))
    return out


def _subset_taus(cells: dict, targets: list, subsets: list) -> np.ndarray:
    """subsets × targets τ_w of each subset's :func:`rank_average` against the AUC: per
    target, the metrics are ranked once and every subset's mean rank is scored in one
    :func:`~medtl.transfer.evaluation.tau_w_many` batch (the same numbers as one
    ``tau_w(rank_average(...))`` call per cell: sums of half-integer ranks are exact)."""
    taus = np.empty((len(subsets), len(targets)))
    for j, t in enumerate(targets):
        x, g = cells[t]
        ranks = {m: stats.rankdata(x[m].to_numpy()) for m in x.columns}
        mean_ranks = np.stack([sum(ranks[m] for m in s) / len(s) for s in subsets])
        taus[:, j] = tau_w_many(mean_ranks, np.broadcast_to(g.to_numpy(), mean_ranks.shape))
    return taus


def loto_ensemble(scores, ground_truth, metrics: Iterable[str] | None = None, max_size: int = 2,
                  exclude_self: bool = True, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Leave-one-target-out rank-average ensemble of transferability metrics.

    For each target t: every subset S of ``metrics`` with 1 ≤ |S| ≤ ``max_size`` is scored
    by the mean τ_w, over the *other* targets, of :func:`rank_average` of its metrics; the
    best subset (ties: the smaller, then the earlier) is applied to t and its τ_w recorded.
    The held-out τ_w values are the ensemble's honest per-target results; their mean gets a
    bootstrap CI over targets.

    Args:
        scores: tidy scores or ``{metric: sources × targets}`` (directions already applied,
            e.g. scenario B's flips).
        ground_truth: sources × targets fine-tuned AUC (or tidy source, target, value).
        metrics: the candidate metrics (default: every metric in ``scores``).

    Returns:
        One row per held-out target (``target``, ``chosen``: the subset joined by "+",
        ``train_tau_w``: its mean τ_w on the other targets, ``tau_w``: on t, ``n``
        sources) and a ``MEAN`` row with ``low``/``high``, the (1 − alpha) bootstrap CI.
    """
    names = list(metrics) if metrics is not None else list(wide_scores(scores))
    if not names:
        raise ValueError("no metrics to combine")
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
        raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
    cells = _aligned(scores, ground_truth, names, exclude_self)
    if len(cells) < 3:
        raise ValueError(f"leave-one-target-out needs at least 3 targets where all of {names} and the ground truth "
                         f"are defined, found {len(cells)}")
    targets = list(cells)
    subsets = [s for k in range(1, min(max_size, len(names)) + 1) for s in combinations(names, k)]
    taus = _subset_taus(cells, targets, subsets)
    rows = []
    for j, t in enumerate(targets):
        others = np.delete(taus, j, axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a subset undefined on every other target
            train = np.nan_to_num(np.nanmean(others, axis=1), nan=-np.inf)
        best = int(np.argmax(train))  # first maximum: subsets are ordered by size, then by name order
        rows.append({"target": t, "chosen": "+".join(subsets[best]), "train_tau_w": float(train[best]),
                     "tau_w": float(taus[best, j]), "n": len(cells[t][1])})
    out = pd.DataFrame(rows)
    held = out.tau_w.dropna().to_numpy()
    rng = np.random.default_rng(seed)
    boots = [held[rng.integers(0, len(held), len(held))].mean() for _ in range(n_boot)]
    low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    mean = {"target": "MEAN", "chosen": "", "train_tau_w": np.nan, "tau_w": float(held.mean()), "n": len(held),
            "low": float(low), "high": float(high)}
    return pd.concat([out, pd.DataFrame([mean])], ignore_index=True)
