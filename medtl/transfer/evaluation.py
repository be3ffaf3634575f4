"""Judging transferability metrics against fine-tuned ground truth: per-target correlations
(weighted Kendall τ_w as the dataset-transferability study, τ-b, Spearman, Pearson), top-1
hit and regret, method ranks, Friedman and Nemenyi tests, the critical difference, and the
self-source bias count."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats


def wide_scores(table: pd.DataFrame | Mapping, value: str = "value") -> dict[str, pd.DataFrame]:
    """Normalise scores to ``{metric: DataFrame(sources × targets)}``.

    Accepts a tidy table with columns source, target, metric, value; a mapping
    metric → wide DataFrame; or a single wide DataFrame (metric "score")."""
    if isinstance(table, Mapping):
        return {m: pd.DataFrame(t) for m, t in table.items()}
    if {"source", "target", "metric", value} <= set(table.columns):
        table = table[table["metric"] != "features"]
        return {m: g.pivot_table(index="source", columns="target", values=value, aggfunc="first", dropna=False)
                for m, g in table.groupby("metric", sort=False)}
    return {"score": table}


def ground_truth_table(gt) -> pd.DataFrame:
    if isinstance(gt, pd.DataFrame) and {"source", "target", "value"} <= set(gt.columns):
        return gt.pivot_table(index="source", columns="target", values="value", aggfunc="first")
    return pd.DataFrame(gt)


def self_pairs(scores) -> dict[str, set[str]]:
    """``{target: sources}`` flagged ``self_source`` in a tidy :func:`score` table (sources
    trained on the target, by metadata); empty for other inputs."""
    if isinstance(scores, pd.DataFrame) and "self_source" in scores.columns:
        flagged = scores[scores["self_source"].astype(bool)]
        return {t: set(g.source) for t, g in flagged.groupby("target")}
    return {}


def pairs(scores, ground_truth, exclude_self: bool = True, exclude: Mapping[str, Iterable[str]] | None = None):
    """Yield ``(metric, target, scores Series, AUC Series)`` aligned over the usable sources
    of each target (both values present; the target itself left out as :func:`correlate`
    describes)."""
    gt = ground_truth_table(ground_truth)
    drop = self_pairs(scores)
    for t, names in (exclude or {}).items():
        drop.setdefault(t, set()).update(names)
    for metric, table in wide_scores(scores).items():
        for target in table.columns:
            if target not in gt.columns:
                continue
            s = table[target]
            g = gt[target].reindex(s.index)
            keep = s.notna() & g.notna()
            if exclude_self:
                keep &= ~s.index.isin({target} | drop.get(target, set()))
            yield metric, target, s[keep].astype(float), g[keep].astype(float)


def _rank_weights(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Hyperbolic weight 1/(r+1) of every item of each row, r its position in decreasing
    lexicographic order of (x, y). Items tied in both x and y are interchangeable, so how
    the sort breaks their tie does not change τ."""
    b, n = x.shape
    order = np.lexsort((y, x), axis=-1)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(n - 1, -1, -1), (b, n)), axis=-1)
    return 1.0 / (rank + 1.0)


def _weighted_taus(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """τ_w of every row: the mean over the (x, y) and (y, x) rankings of
    Σ w_ij·sgn(Δx)·sgn(Δy) / √(Σ w_ij·[Δx≠0] · Σ w_ij·[Δy≠0]), w_ij = w_i + w_j. The sign
    matrices are shared by both rankings; with a symmetric matrix A, Σ_ij (w_i + w_j)·A_ij
    = 2·Σ_i w_i·Σ_j A_ij, so only the row sums are kept."""
    sx = np.sign(x[:, :, None] - x[:, None, :])
    sy = np.sign(y[:, :, None] - y[:, None, :])
    both, tx, ty = (sx * sy).sum(2), np.abs(sx).sum(2), np.abs(sy).sum(2)
    taus = []
    for w in (_rank_weights(x, y), _rank_weights(y, x)):
        with np.errstate(invalid="ignore", divide="ignore"):
            taus.append((w * both).sum(1) / np.sqrt((w * tx).sum(1) * (w * ty).sum(1)))
    return (taus[0] + taus[1]) / 2


def tau_w_many(x, y, chunk: int = 4096) -> np.ndarray:
    """Weighted Kendall τ_w of every row pair of ``x``, ``y`` (B×n, or n for one pair):
    ``scipy.stats.weightedtau``'s defaults (hyperbolic weigher, additive weights,
    ``rank=True``: the mean of the τ ranked by (x, y) and by (y, x)), as the
    dataset-transferability study (Vigna 2015, "A weighted correlation index for rankings
    with ties"), computed on all pairs at once (O(B·n²) memory in chunks of ``chunk`` rows)
    instead of one scipy call per bootstrap resample; equal to scipy to float rounding
    (tested). NaN where a row has fewer than 2 points, a constant vector or a NaN."""
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    if x.shape != y.shape:
        raise ValueError(f"tau_w needs x and y of one shape, got {x.shape} and {y.shape}")
    out = np.full(len(x), np.nan)
    if x.shape[1] < 2:
        return out
    ok = (np.ptp(x, axis=1) > 0) & (np.ptp(y, axis=1) > 0) & np.isfinite(x).all(1) & np.isfinite(y).all(1)
    rows = np.flatnonzero(ok)
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        out[r] = _weighted_taus(x[r], y[r])
    return out


def tau_w(x, y) -> float:
    """Weighted Kendall τ_w of one pair of vectors (:func:`tau_w_many`: scipy's
    ``weightedtau`` defaults, as the dataset-transferability study); NaN for fewer than 2
    points or a constant vector."""
    return float(tau_w_many(np.ravel(x), np.ravel(y))[0])


def correlate(scores, ground_truth, exclude_self: bool = True,
              exclude: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """Per (metric, target) agreement between metric scores and fine-tuned performance.

    Args:
        scores: tidy (source, target, metric, value[, self_source]), ``{metric: sources ×
            targets}``, or one wide DataFrame.
        ground_truth: fine-tuned test AUC, sources × targets (or tidy source, target, value).
        exclude_self: drop the sources that are the target: named like it (the study's
            rule), flagged ``self_source`` in a tidy score table (trained on it, by
            metadata), or listed in ``exclude`` (``{target: [sources]}``).

    Returns:
        One row per (metric, target): ``tau_w`` (:func:`tau_w`), ``kendall_tau_b``,
        ``spearman``, ``pearson``, ``n`` (sources used), ``top1_hit`` (the metric's best
        source is the truly best), ``regret`` (best true AUC minus the AUC of the metric's
        choice) and ``chosen``. Correlations of a constant score vector are NaN.
    """
    rows = []
    for metric, target, s, g in pairs(scores, ground_truth, exclude_self, exclude):
        x, y = s.to_numpy(), g.to_numpy()
        row = {"metric": metric, "target": target, "n": len(x), "tau_w": tau_w(x, y)}
        ok = len(x) >= 2 and np.ptp(x) > 0 and np.ptp(y) > 0
        row.update(kendall_tau_b=float(stats.kendalltau(x, y).statistic) if ok else np.nan,
                   spearman=float(stats.spearmanr(x, y).statistic) if ok else np.nan,
                   pearson=float(stats.pearsonr(x, y).statistic) if ok else np.nan)
        if len(x):
            chosen = s.idxmax()
            row.update(chosen=chosen, top1_hit=bool(g.idxmax() == chosen) if np.ptp(x) > 0 else False,
                       regret=float(g.max() - g[chosen]))
        rows.append(row)
    return pd.DataFrame(rows)


def tau_ci(scores, ground_truth, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
           exclude_self: bool = True, exclude: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """Bootstrap confidence intervals of τ_w: per (metric, target) by resampling the
    candidate sources with replacement; for each metric's mean over targets (``target ==
    "MEAN"``) by resampling the targets and, within each, the sources. Resamples where τ_w
    is undefined (a constant vector) are skipped. With one target the mean's interval is that
    target's (the same estimator; no second, differently drawn bootstrap to disagree with
    it). Returns metric, target, tau_w, low, high, n (sources or targets), n_boot_used."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2, got {n_boot!r}")
    rng = np.random.default_rng(seed)
    rows, by_metric = [], {}
    for metric, target, s, g in pairs(scores, ground_truth, exclude_self, exclude):
        x, y = s.to_numpy(), g.to_numpy()
        by_metric.setdefault(metric, []).append((x, y))
        idx = rng.integers(0, len(x), (n_boot, len(x))) if len(x) else None  # the stream of n_boot draws of len(x)
        boots = tau_w_many(x[idx], y[idx]) if len(x) else np.array([])
        boots = boots[~np.isnan(boots)]
        low, high = np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if len(boots) >= 2 else (np.nan, np.nan)
        rows.append({"metric": metric, "target": target, "tau_w": tau_w(x, y), "low": float(low), "high": float(high),
                     "n": len(x), "n_boot_used": len(boots)})
    for metric, cells in by_metric.items():
        if len(cells) == 1:  # one target: resampling targets is the identity, so the mean's CI is the cell's
            one = next(r for r in rows if r["metric"] == metric and r["target"] != "MEAN")
            rows.append({**one, "target": "MEAN", "n": 1})
            continue
        means = _mean_boot(cells, n_boot, rng)
        defined = [v for v in (tau_w(x, y) for x, y in cells) if not np.isnan(v)]
        point = np.mean(defined) if defined else np.nan
        low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2]) if len(means) >= 2 else (np.nan, np.nan)
        rows.append({"metric": metric, "target": "MEAN", "tau_w": float(point), "low": float(low), "high": float(high),
                     "n": len(cells), "n_boot_used": len(means)})
    return pd.DataFrame(rows)


def _mean_boot(cells: list, n_boot: int, rng: np.random.Generator) -> list[float]:
    """``n_boot`` bootstrap means of τ_w over targets: each resample draws the targets
    (``cells``, (x, y) per target) with replacement, then each drawn target's sources; the
    τ_w of every drawn (target, sources) is computed in one batch per target."""
    draws = []  # (resample, cell, source indices)
    for b in range(n_boot):
        for c in rng.integers(0, len(cells), len(cells)):
            draws.append((b, c, rng.integers(0, len(cells[c][0]), len(cells[c][0]))))
    taus = np.full(len(draws), np.nan)
    cell_of = np.array([d[1] for d in draws])
    for c, (x, y) in enumerate(cells):
        at = np.flatnonzero(cell_of == c)
        if len(at) and len(x):
            idx = np.stack([draws[k][2] for k in at])
            taus[at] = tau_w_many(x[idx], y[idx])
    per = pd.Series(taus).groupby([d[0] for d in draws]).mean()  # NaN-skipping mean per resample
    return [float(v) for v in per.dropna()]


def tau_table(corr: pd.DataFrame, value: str = "tau_w") -> pd.DataFrame:
    """targets × metrics table of one correlation column, with a MEAN row (NaN skipped)."""
    wide = corr.pivot(index="target", columns="metric", values=value)
    wide = wide[list(dict.fromkeys(corr["metric"]))]
    wide.loc["MEAN"] = wide.mean()
    return wide


def ranks(corr: pd.DataFrame | None = None, value: str = "tau_w", metrics: Iterable[str] | None = None,
          table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Rank ``metrics`` (default all) within each target by ``value`` (1 = best; NaN ranked
    last; ties share the lowest rank). Returns targets × metrics, as the study's
    ``ktau_*_rank.csv``; ``table`` gives a ready targets × metrics table instead of ``corr``."""
    if table is None:
        table = corr.pivot(index="target", columns="metric", values=value)
        table = table[list(dict.fromkeys(corr["metric"]))]
    wide = table.drop(index="MEAN", errors="ignore")
    if metrics is not None:
        wide = wide[list(metrics)]
    filled = wide.fillna(-np.inf)
    return filled.rank(axis=1, ascending=False, method="min")


def friedman(rank_table: pd.DataFrame) -> dict[str, float]:
    """Friedman test over the metrics (columns) across targets (rows)."""
    if not isinstance(rank_table, pd.DataFrame) or rank_table.shape[1] < 3 or rank_table.shape[0] < 2:
        shape = getattr(rank_table, "shape", None)
        raise ValueError(f"the Friedman test needs a targets × metrics table with at least 3 metrics and 2 targets, "
                         f"got shape {shape}")
    res = stats.friedmanchisquare(*[rank_table[c].to_numpy() for c in rank_table.columns])
    return {"statistic": float(res.statistic), "pvalue": float(res.pvalue), "k": rank_table.shape[1],
            "n": rank_table.shape[0]}


def nemenyi(rank_table: pd.DataFrame) -> pd.DataFrame:
    """Nemenyi post-hoc p-values between every pair of metrics (scikit-posthocs'
    ``posthoc_nemenyi_friedman`` on the targets × metrics table)."""
    import scikit_posthocs as sp

    if not isinstance(rank_table, pd.DataFrame) or rank_table.shape[1] < 2 or rank_table.shape[0] < 2:
        raise ValueError("the Nemenyi test needs a targets × metrics table with at least 2 metrics and 2 targets")

    return sp.posthoc_nemenyi_friedman(rank_table.to_numpy()).set_axis(rank_table.columns, axis=0).set_axis(
        rank_table.columns, axis=1)


#: Demšar (2006), Table 5(a): two-tailed Nemenyi q_α for k = 2..10 methods.
DEMSAR_Q = {
    0.05: (1.960, 2.343, 2.569, 2.728, 2.850, 2.949, 3.031, 3.102, 3.164),
    0.10: (1.645, 2.052, 2.291, 2.459, 2.589, 2.693, 2.780, 2.855, 2.920),
}


def q_alpha(k: int, alpha: float = 0.05) -> float:
    """Nemenyi's critical value q_α for k methods: Demšar's (2006) table for k ≤ 10 at
    α ∈ {0.05, 0.10} (k = 3 → 2.343), else the studentized range quantile over √2
    (which the table rounds)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k (the number of methods) must be an integer >= 2, got {k!r}")
    if alpha in DEMSAR_Q and k <= 10:
        return DEMSAR_Q[alpha][k - 2]
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference CD = q_α(k) · √(k(k+1) / (6n)) for k methods ranked on n
    targets, with the q of k methods (the study's notebook used k+1's, giving 1.095
    instead of 0.999 for k = 3, n = 11)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (the number of targets) must be an integer >= 1, got {n!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return q_alpha(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def self_source_bias(scores, targets: Iterable[str] | None = None) -> pd.DataFrame:
    """How often each metric scores the target itself as the best source (the motivation of
    the dataset-transferability study). Needs scores that include the target-as-source row.

    Returns one row per metric: ``self_best`` (count), ``targets`` (count with a self row)."""
    rows = []
    for metric, table in wide_scores(scores).items():
        cols = [t for t in (targets or table.columns) if t in table.index and t in table.columns]
        best = [t for t in cols if table[t].notna().any() and table[t].idxmax() == t]
        rows.append({"metric": metric, "self_best": len(best), "targets": len(cols), "which": ", ".join(best)})
    return pd.DataFrame(rows)


def flip(scores, metrics: Iterable[str]):
    """Reverse the direction of some metrics (score → 1 − score), as the study's scenario B
    did for LEEP, PARC, NCTI and N-LEEP."""
    metrics = set(metrics)
    if isinstance(scores, Mapping):
        return {m: (1 - t if m in metrics else t) for m, t in scores.items()}
    out = scores.copy()
    mask = out["metric"].isin(metrics)
    out.loc[mask, "value"] = 1 - out.loc[mask, "value"]
    return out


def paired_permutation(corr: pd.DataFrame, a: str, b: str, value: str = "tau_w", n_perm: int = 10_000,
                       seed: int = 0) -> dict[str, float]:
    """Paired permutation (sign-flip) test of whether metric ``a`` agrees with the ground
    truth better than metric ``b`` across targets.

    With d_t = value(a, t) − value(b, t) on the targets where both are defined, the
    statistic is mean_t d_t; under H₀ (no difference) each d_t's sign is exchangeable, so
    the two-sided p-value is the fraction of the 2^T sign patterns (exactly for T ≤ 16, else
    ``n_perm`` random ones plus the observed one) whose |mean| reaches the observed |mean|.

    Args:
        corr: :func:`correlate`'s table (metric, target, ``value``).

    Returns:
        ``{"mean_diff", "pvalue", "n_targets", "exact"}``.
    """
    wide = corr.pivot_table(index="target", columns="metric", values=value, aggfunc="first")
    for m in (a, b):
        if m not in wide.columns:
            raise ValueError(f"metric {m!r} is not in the correlation table; present: {', '.join(map(str, wide.columns))}")
    d = (wide[a] - wide[b]).dropna().to_numpy()
    t = len(d)
    if t == 0:
        raise ValueError(f"metrics {a!r} and {b!r} have no target where both {value} values are defined")
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, observed)
    if t <= 16:
        signs = 1 - 2 * ((np.arange(2 ** t)[:, None] >> np.arange(t)) & 1)
        means = np.abs(signs @ d) / t
        p = float((means >= observed - tol).mean())
    else:
        rng = np.random.default_rng(seed)
        signs = rng.choice([-1.0, 1.0], size=(n_perm, t))
        means = np.abs(signs @ d) / t
        p = float(((means >= observed - tol).sum() + 1) / (n_perm + 1))
    return {"mean_diff": float(d.mean()), "pvalue": p, "n_targets": t, "exact": t <= 16}


def noise_ceiling(runs: pd.DataFrame, value: str = "test_auc") -> pd.DataFrame:
    """How well one fine-tuning seed's ranking of the sources predicts another's: the
    ceiling a transferability metric's τ_w can reach against single-seed ground truth.

    For each target, with AUC_s the sources' selected AUCs under seed s (from
    ``grid_search(seeds=...)`` and ``select(by="seed")``), the ceiling is the mean of
    τ_w(AUC_s, AUC_s') over ordered seed pairs s ≠ s' (τ_w is not symmetric).

    Args:
        runs: tidy rows with columns source, target, seed and ``value``.

    Returns:
        One row per target: ``ceiling``, ``low`` and ``high`` (min and max over the seed
        pairs), ``n_seeds``, ``n_sources``; a ``MEAN`` row averages the targets.
    """
    need = {"source", "target", "seed", value}
    if not isinstance(runs, pd.DataFrame) or not need <= set(runs.columns):
        raise ValueError(f"runs must be a DataFrame with columns {sorted(need)}")
    rows = []
    for target, g in runs.groupby("target", sort=True):
        wide = g.pivot_table(index="source", columns="seed", values=value, aggfunc="first").dropna()
        seeds = list(wide.columns)
        if len(seeds) < 2:
            raise ValueError(f"target {target!r} has {len(seeds)} seed(s) with every source finished; the noise "
                             "ceiling needs at least 2 (grid_search(seeds=[0, 1, ...]))")
        taus = [tau_w(wide[s].to_numpy(), wide[r].to_numpy()) for s in seeds for r in seeds if s != r]
        taus = [x for x in taus if not np.isnan(x)]
        rows.append({"target": target, "ceiling": float(np.mean(taus)) if taus else np.nan,
                     "low": float(np.min(taus)) if taus else np.nan, "high": float(np.max(taus)) if taus else np.nan,
                     "n_seeds": len(seeds), "n_sources": len(wide)})
    out = pd.DataFrame(rows)
    mean = {"target": "MEAN", "ceiling": out.ceiling.mean(), "low": out.low.mean(), "high": out.high.mean(),
            "n_seeds": int(out.n_seeds.min()), "n_sources": int(out.n_sources.min())}
    return pd.concat([out, pd.DataFrame([mean])], ignore_index=True)


def subsample_interval(point: float, replicates, fraction: float, alpha: float = 0.05) -> tuple[float, float]:
    """A (1 − alpha) interval for a statistic computed on N samples, from its values on
    half-samples (or any fraction f = m/N) drawn without replacement.

    For a statistic with the usual √N rate, the spread of its values on m-of-N subsamples
    around their mean is Var(θ̂_N)·(N − m)/m (the finite-population factor of sampling
    without replacement; exact for a mean), so the delete-d jackknife standard error is

        SE = √(f / (1 − f)) · sd(θ̂_b),   f = m/N      (Shao & Wu, Ann. Stat. 1989),

    and the interval is θ̂_N ± t_{1−α/2, B−1} · SE, centred on the full-data value
    ``point`` by construction. The subsample values are used only for their spread, never
    their level: a score whose value drifts with N (LogME, k-NN accuracy) does not shift the
    interval off its point estimate. With f = 1/2 the spread needs no rescaling.

    The interval is for the score a fresh sample of N images from the same population would
    give (its expected value at this N), not for its large-N limit.

    Args:
        point: the statistic on all N samples.
        replicates: its values on B ≥ 2 subsamples (NaN values are dropped).
        fraction: f = m/N of the subsamples, in (0, 1).

    Returns:
        ``(low, high)``; ``(nan, nan)`` with fewer than 2 finite replicates.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    reps = np.asarray(replicates, dtype=float)
    reps = reps[np.isfinite(reps)]
    if len(reps) < 2 or not np.isfinite(point):
        return (np.nan, np.nan)
    se = np.sqrt(fraction / (1 - fraction)) * reps.std(ddof=1)
    half = stats.t.ppf(1 - alpha / 2, len(reps) - 1) * se
    return (float(point - half), float(point + half))


def kendall_w(ranks) -> dict:
    """Kendall's coefficient of concordance W of m raters over n objects (here: metrics over
    candidate sources), with the tie correction:

        W = 12 S / (m² (n³ − n) − m Σ_j T_j),   S = Σ_i (R_i − R̄)²,   T_j = Σ_g (t_g³ − t_g),

    R_i the sum of object i's ranks over the raters, t_g the sizes of rater j's tie groups.
    W = 1 when every rater orders the objects identically, about 0 when they are
    independent. Significance: χ² = m (n − 1) W with n − 1 degrees of freedom. Without ties,
    the mean pairwise Spearman correlation equals (m W − 1)/(m − 1).

    Args:
        ranks: ``m×n`` array (or DataFrame with raters as rows) of scores or ranks; each
            row is ranked (average ranks for ties), so raw scores are accepted.

    Returns:
        ``{"W", "m", "n", "chi2", "p"}``; W is NaN when it is undefined (n < 2, m < 1, or
        every rater ties every object).
    """
    r = np.asarray(ranks, dtype=float)
    if r.ndim != 2:
        raise ValueError(f"ranks must be a 2-D array (raters × objects), got shape {r.shape}")
    if np.isnan(r).any():
        raise ValueError("ranks must not hold NaN (leave out the raters that did not score every object)")
    m, n = r.shape
    out = {"W": np.nan, "m": m, "n": n, "chi2": np.nan, "p": np.nan}
    if m < 1 or n < 2:
        return out
    ranked = np.vstack([stats.rankdata(row) for row in r])
    totals = ranked.sum(0)
    s = float(((totals - totals.mean()) ** 2).sum())
    ties = sum(float((c ** 3 - c).sum()) for c in (np.unique(row, return_counts=True)[1] for row in ranked))
    denom = m ** 2 * (n ** 3 - n) - m * ties
    if denom <= 0:
        return out
    w = 12 * s / denom
    chi2 = m * (n - 1) * w
    out.update(W=float(w), chi2=float(chi2), p=float(stats.chi2.sf(chi2, n - 1)))
    return out
