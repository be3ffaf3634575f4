"""Figures over medtl's tidy tables (matplotlib + seaborn). Every function returns the
matplotlib Figure; ``save(fig, path)`` writes PNG (and closes it). Importing this module
leaves matplotlib's backend alone (matplotlib picks a headless one where there is no
display; notebooks keep their inline backend)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy import stats

from .transfer.evaluation import tau_w


def png(fig, dpi: int = 110):
    """A figure as an IPython PNG image (closing the figure): displays the same whatever
    matplotlib backend the kernel runs (``MPLBACKEND=Agg`` included)."""
    import io

    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Image(data=buf.getvalue(), format="png")


def save(fig, path: str | os.PathLike, dpi: int = 150) -> Path:
    """Write ``fig`` as PNG (folders created) and close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


# --- transferability -----------------------------------------------------------------------
def tau_bars(corr: pd.DataFrame, value: str = "tau_w", title: str | None = None):
    """Per-target bars of a correlation (τ_w by default) for every metric, with the mean."""
    data = corr.dropna(subset=[value])
    order = data.groupby("metric")[value].mean().sort_values(ascending=False).index
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * data.target.nunique() + 3), 4))
    sns.barplot(data=data, x="target", y=value, hue="metric", hue_order=order, ax=ax)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel({"tau_w": "weighted Kendall τ_w"}.get(value, value))
    ax.set_xlabel("")
    ax.tick_params(axis="x", rotation=45)
    means = data.groupby("metric")[value].mean()
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles, [f"{m} (mean {means[m]:.2f})" for m in labels], title="metric", bbox_to_anchor=(1.01, 1),
              loc="upper left", fontsize=8)
    ax.set_title(title or f"{'weighted Kendall τ_w' if value == 'tau_w' else value} per target")
    return fig


#: The caption of :func:`ranking`'s figure (one wording for rank direction, as everywhere).
RANKING_CAPTION = ("Left: each candidate's mean rank over the metrics (1 = best), best on top, with its 95 % "
                   "interval (hollow marker: not resolvable from the next candidate by a paired comparison). "
                   "Right: each metric's rank of each candidate (1 = best).")


def ranking(scores: pd.DataFrame, recommendation: pd.DataFrame, metrics: Sequence[str] | None = None,
            title: str | None = None):
    """The answer of :func:`medtl.transfer.rank` at a glance (:data:`RANKING_CAPTION`):
    left, each candidate's mean rank (1 = best) with its interval, best on top; right, each
    metric's rank of each candidate (1 = best)."""
    rec = recommendation.sort_values("mean_rank", ascending=False)
    tidy = scores[scores.metric.isin(metrics)] if metrics is not None else scores
    names = list(dict.fromkeys(tidy.metric))
    wide = tidy.pivot_table(index="source", columns="metric", values="score", aggfunc="first").reindex(
        index=rec.source[::-1], columns=names)
    ranks = wide.rank(ascending=False, method="average")
    fig, (ax, hm) = plt.subplots(1, 2, figsize=(4 + 0.45 * len(names) + 3, 0.45 * len(rec) + 1.8),
                                 gridspec_kw={"width_ratios": [3, max(1.5, 0.45 * len(names))]})
    y = np.arange(len(rec))
    err = np.vstack([rec.mean_rank - rec.low, rec.high - rec.mean_rank]).clip(min=0)
    ax.errorbar(rec.mean_rank, y, xerr=np.nan_to_num(err), fmt="none", ecolor="grey", capsize=3)
    res = rec.get("resolved", pd.Series(pd.NA, index=rec.index)).astype("boolean")
    hollow = res.fillna(True).eq(False).to_numpy()
    ax.scatter(rec.mean_rank[~hollow], y[~hollow], color="C0", zorder=3,
               label="resolved from the next (or last)" if res.notna().any() else "no intervals (n_boot = 0)")
    if hollow.any():
        ax.scatter(rec.mean_rank[hollow], y[hollow], facecolors="white", edgecolors="C0", zorder=3,
                   label="not resolvable from the next")
    ax.set_yticks(y, rec.source)
    ax.set_ylim(-0.6, len(rec) - 0.4)
    ax.set_xlabel("mean rank over the metrics (1 = best)")
    ax.invert_xaxis()  # best (rank 1) on the right, at the top
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2, frameon=False)
    ax.set_title(title or "recommended sources (best on top) with intervals", fontsize=10)
    sns.heatmap(ranks, annot=True, fmt=".3g", cmap="viridis", cbar=False, ax=hm, annot_kws={"fontsize": 8})
    hm.set_ylabel("")
    hm.set_xlabel("")
    hm.set_yticks([])
    hm.tick_params(axis="x", rotation=60, labelsize=8)
    hm.set_title("rank per metric (1 = best)", fontsize=10)
    fig.tight_layout()
    return fig


def tau_forest(summary: pd.DataFrame, reference: float | None = None, reference_label: str = "",
               title: str = "mean τ_w over targets with 95 % bootstrap CI"):
    """A forest plot of mean τ_w per method (rows of ``summary``: tau_w, low, high), best on
    top, with an optional dashed reference line (a published number)."""
    data = summary.dropna(subset=["tau_w"]).sort_values("tau_w")
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(data) + 1.4))
    y = np.arange(len(data))
    err = np.vstack([data.tau_w - data.low, data.high - data.tau_w]).clip(min=0)
    ax.errorbar(data.tau_w, y, xerr=np.nan_to_num(err), fmt="o", color="C0", ecolor="grey", capsize=3)
    ax.set_yticks(y, data.index)
    ax.axvline(0, color="black", lw=0.8)
    if reference is not None:
        ax.axvline(reference, color="C3", ls="--", lw=1, label=reference_label or f"reference {reference:.3f}")
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("mean weighted Kendall τ_w")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _label_points(ax, names, xs, ys, fontsize: int = 8) -> None:
    """Full source labels beside their points, alternating above/below to limit overlap."""
    for i, (name, x, y) in enumerate(sorted(zip(names, xs, ys), key=lambda t: (t[1], t[2]))):
        ax.annotate(str(name), (x, y), xytext=(3, 4 if i % 2 else -8), textcoords="offset points",
                    fontsize=fontsize, alpha=0.8)


#: Panels per row of :func:`score_vs_auc` for one target (wide rows shrink text below 9 pt at
#: page width).
WRAP = 4


def score_vs_auc(scores: pd.DataFrame, ground_truth: pd.DataFrame, metrics: Sequence[str] | None = None,
                 exclude_self: bool = True, targets: Sequence[str] | None = None, labels: bool = True):
    """A grid of scatter plots: metric score (x) against fine-tuned AUC (y), one panel per
    (metric, target) with its τ_w in the title; ground truth as sources × targets; all
    targets unless ``targets`` is given. One target: the metrics in rows of :data:`WRAP`."""
    tidy = scores[scores.metric != "features"] if "metric" in scores else scores
    metrics = list(metrics or dict.fromkeys(tidy.metric))
    gt = ground_truth.stack().rename("auc").rename_axis(["source", "target"]).reset_index()
    data = tidy.merge(gt, on=["source", "target"])
    if exclude_self:
        data = data[data.source != data.target]
        if "self_source" in data:
            data = data[~data.self_source.astype(bool)]
    data = data[data.metric.isin(metrics)]
    targets = list(targets or dict.fromkeys(data.target))
    one = len(targets) == 1  # a single target: the metrics in rows of WRAP panels
    rows, cols = (-(-len(metrics) // WRAP), min(WRAP, len(metrics))) if one else (len(metrics), len(targets))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 0.6, 2.9 * rows + 0.4), squeeze=False)
    for ax in axes.flat[len(metrics) if one else rows * cols:]:
        ax.set_visible(False)
    for i, m in enumerate(metrics):
        for j, t in enumerate(targets):
            ax = axes[i // WRAP, i % WRAP] if one else axes[i, j]
            d = data[(data.metric == m) & (data.target == t)].dropna(subset=["value", "auc"])
            ax.scatter(d.value, d.auc, s=18)
            if labels:
                _label_points(ax, d.source, d.value, d.auc)
            tau = tau_w(d.value, d.auc)
            if one:
                ax.set_title(f"{m}: τ_w = {tau:.2f}", fontsize=10)
                ax.set_xlabel(f"{m} score", fontsize=9)
                ax.set_ylabel("fine-tuned AUC" if i % WRAP == 0 else "", fontsize=9)
            else:
                ax.set_title(f"{t}\nτ_w = {tau:.2f}" if i == 0 else f"τ_w = {tau:.2f}", fontsize=9)
                if j == 0:
                    ax.set_ylabel(f"{m}\nAUC", fontsize=9)
            ax.tick_params(labelsize=8)
    fig.tight_layout()
    return fig


def rank_table(ranks: pd.DataFrame):
    """A heatmap of per-target method ranks (1 = best), with the mean rank row when there
    are several targets."""
    table = ranks.copy()
    if len(table) > 1:
        table.loc["MEAN"] = table.mean()
    fig, ax = plt.subplots(figsize=(1 + 0.8 * table.shape[1], 0.35 * len(table) + 1))
    sns.heatmap(table, annot=True, fmt=".2f", cmap="viridis_r", cbar=False, ax=ax)
    ax.set_title("rank of each metric per target (1 = best)")
    ax.set_ylabel("")
    return fig


def cliques(mean_ranks: Sequence[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs (i, j) of methods, sorted by mean rank, whose ranks differ by less than
    ``cd`` (not significantly different under the Nemenyi test)."""
    vals = np.sort(np.asarray(mean_ranks, dtype=float))
    runs = []
    for i in range(len(vals)):
        j = int(np.searchsorted(vals, vals[i] + cd, side="left")) - 1
        if j > i:
            runs.append((i, j))
    return [r for r in runs if not any(o != r and o[0] <= r[0] and r[1] <= o[1] for o in runs)]


def cd_diagram(ranks: pd.DataFrame, cd: float, title: str | None = None):
    """Critical-difference diagram (Demšar 2006): mean ranks on an axis (best on the right)
    and thick bars joining methods whose mean ranks differ by less than ``cd``."""
    means = ranks.mean().sort_values()
    k = len(means)
    groups = cliques(means.to_numpy(), cd)
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.3 * (k + len(groups))))
    lo, hi = 1, max(k, 2)
    ax.hlines(0, lo, hi, color="black")
    for r in range(lo, hi + 1):
        ax.vlines(r, -0.08, 0.08, color="black")
        ax.text(r, 0.2, str(r), ha="center", fontsize=8)
    ax.hlines(0.75, lo, lo + cd, color="red", lw=2)
    ax.text(lo + cd / 2, 0.9, f"CD = {cd:.3f}", ha="center", fontsize=8, color="red")
    for g, (i, j) in enumerate(groups):
        y = -0.3 - 0.25 * g
        ax.hlines(y, means.iloc[i] - 0.03, means.iloc[j] + 0.03, color="red", lw=4)
    base = -0.5 - 0.25 * len(groups)
    for i, (name, value) in enumerate(means.items()):
        y = base - 0.35 * i
        ax.plot([value, value], [0, y], color="gray", lw=0.8)
        ax.text(value + 0.05, y, f"{name} ({value:.2f})", ha="right", va="center", fontsize=8)
    ax.set_xlim(hi + 0.3, lo - 0.6)  # best (rank 1) on the right
    ax.set_ylim(base - 0.35 * k, 1.2)
    ax.axis("off")
    ax.set_title(title or "mean ranks (lower is better); bars join methods within CD")
    return fig


def auc_dots(aucs: pd.DataFrame, title: str = "fine-tuned test AUC"):
    """Dot plot of fine-tuned AUC per target (sources × targets table), one colour per source."""
    tidy = aucs.stack().rename("auc").rename_axis(["source", "target"]).reset_index()
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * tidy.target.nunique() + 3), 4))
    sns.stripplot(data=tidy, x="target", y="auc", hue="source", ax=ax, size=6, jitter=0.15)
    ax.tick_params(axis="x", rotation=45)
    ax.set_xlabel("")
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7)
    ax.set_title(title)
    return fig


# --- similarity ----------------------------------------------------------------------------
def cka_heatmap(table: pd.DataFrame, title: str = "CKA"):
    """Heatmap of a :func:`medtl.similarity.cka_matrix` table (layer_a × layer_b)."""
    wide = table.pivot(index="layer_a", columns="layer_b", values="cka")
    wide = wide.loc[list(dict.fromkeys(table.layer_a)), list(dict.fromkeys(table.layer_b))]
    fig, ax = plt.subplots(figsize=(1 + 0.45 * wide.shape[1], 1 + 0.4 * wide.shape[0]))
    sns.heatmap(wide, vmin=0, vmax=1, cmap="magma", ax=ax, square=True, cbar_kws={"label": "CKA"})
    ax.invert_yaxis()
    ax.set_title(title)
    return fig


def layerwise(table: pd.DataFrame, y: str, hue: str | None = None, x: str = "layer", title: str | None = None):
    """Layer-wise curves (CKA, k-NN AUC, L2, importance) along the depth axis."""
    fig, ax = plt.subplots(figsize=(max(5, 0.5 * table[x].nunique() + 2), 3.5))
    sns.lineplot(data=table, x=x, y=y, hue=hue, marker="o", ax=ax, sort=False)
    ax.tick_params(axis="x", rotation=60)
    ax.set_title(title or f"{y} by layer")
    return fig


def filter_grid(grid: np.ndarray, title: str = "first-layer filters"):
    """Plot filters from :func:`medtl.similarity.filter_grid` on a square grid."""
    n = len(grid)
    side = int(np.ceil(np.sqrt(n)))
    fig, axes = plt.subplots(side, side, figsize=(side * 0.9, side * 0.9))
    for i, ax in enumerate(np.ravel(axes)):
        ax.axis("off")
        if i < n:
            ax.imshow(grid[i], cmap=None if grid.ndim == 4 else "gray", vmin=0, vmax=1)
    fig.suptitle(title)
    return fig


def filter_panels(grids: Mapping[str, np.ndarray], title: str = "first-layer filters (channel 0)"):
    """Several models' filter grids (:func:`medtl.similarity.filter_grid`) side by side, one
    panel per model (the hidden-representations study's filter plots)."""
    names = list(grids)
    if not names:
        raise ValueError("filter_panels needs at least one grid")
    fig = plt.figure(figsize=(2.6 * len(names), 2.9))
    outer = fig.add_gridspec(1, len(names), wspace=0.15)
    for k, name in enumerate(names):
        grid = grids[name]
        side = int(np.ceil(np.sqrt(len(grid))))
        inner = outer[k].subgridspec(side, side, wspace=0.05, hspace=0.05)
        for i in range(side * side):
            ax = fig.add_subplot(inner[i // side, i % side])
            ax.axis("off")
            if i < len(grid):
                ax.imshow(grid[i], cmap=None if grid.ndim == 4 else "gray", vmin=0, vmax=1)
            if i == side // 2:
                ax.set_title(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def pair_heatmap(pairs: pd.DataFrame, value: str = "value", title: str = "layer-wise similarity of model pairs"):
    """Mean similarity per (model pair, layer): rows = pairs, columns = layers in depth order."""
    t = pairs.assign(pair=pairs.model1 + " vs " + pairs.model2)
    order = t.drop_duplicates("layer").sort_values("depth").layer.tolist()
    wide = t.pivot_table(index="pair", columns="layer", values=value, aggfunc="mean", sort=False)[order]
    fig, ax = plt.subplots(figsize=(1.1 * len(order) + 3, 0.32 * len(wide) + 1.2))
    sns.heatmap(wide, annot=True, fmt=".2f", cmap="viridis", vmin=0, vmax=1, ax=ax, cbar_kws={"shrink": 0.6},
                annot_kws={"fontsize": 7})
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def gain_bubbles(ratios: pd.DataFrame, panel: str = "arch"):
    """The feature-reuse study's summary figure (spec §C.5.7, README ``feature_reuse.png``):
    one panel per architecture; x the target dataset, ordered by its FID to the source's
    data when the table has an ``fid`` column (labelled with it: the study's x-axis runs from
    ISIC ≈141 to PCam ≈202); y the training-data fraction; one dot per setting, its size the
    relative gain from transfer G = WT/RI, its colour the share of the gain due to feature
    reuse R = (WT − ST)/WT, min–max normalised over all dots as the study; the values are
    written next to the dots (± the standard deviation over runs when the table has it)."""
    t = ratios.copy().reset_index(drop=True)
    fid = t["fid"] if "fid" in t else pd.Series(np.nan, index=t.index)
    t["x"] = t["dataset"].astype(str) + np.where(fid.notna(), "\nFID " + fid.round().astype("Int64").astype(str), "")
    order = t.assign(f=fid.fillna(np.inf)).sort_values(["f", "x"]).x.drop_duplicates().tolist()
    t["y"] = (t["fraction"] * 100).round().astype(int).astype(str) + " %" if "fraction" in t else "all"
    rows = sorted(t["y"].unique(), key=lambda v: float(v.split()[0]) if v != "all" else 0.0)
    r = t["reuse_share"]
    span = r.max() - r.min()
    t["reuse_norm"] = (r - r.min()) / span if span > 0 else 0.5
    panels = list(dict.fromkeys(t[panel])) if panel in t else ["all"]
    above = (t["gain"] - 1).clip(lower=0)
    t["area"] = 30 + 900 * (above / above.max() if above.max() > 0 else 0)
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(order) * len(panels) + 2.5, 0.8 * len(rows) + 2.2),
                             sharey=True, squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], panels):
        g = t[t[panel] == name] if panel in t else t
        xs, ys = [order.index(v) for v in g.x], [rows.index(v) for v in g.y]
        pts = ax.scatter(xs, ys, s=g["area"], c=g["reuse_norm"], cmap="magma_r",
                         vmin=0, vmax=1, edgecolor="k")
        for (_, row), x, y in zip(g.iterrows(), xs, ys):
            sd = "gain_sd" in g and pd.notna(row.get("gain_sd"))
            text = (f"G {row.gain:.2f}" + (f" ± {row.gain_sd:.2f}" if sd else "")
                    + f"\nR {row.reuse_share:.2f}" + (f" ± {row.reuse_share_sd:.2f}" if sd else ""))
            ax.annotate(text, (x, y), xytext=(14, -6), textcoords="offset points", fontsize=7)
        ax.set_xticks(range(len(order)), order)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlim(-0.6, len(order) - 0.2)
        ax.set_ylim(-0.6, len(rows) - 0.4)
        ax.set_title(str(name))
        ax.set_xlabel("target (by FID to the source data)" if fid.notna().any() else "target")
    axes[0][0].set_ylabel("training data")
    fig.colorbar(pts, ax=list(axes[0]), label="feature-reuse share (WT−ST)/WT, min–max normalised")
    fig.suptitle("gain from transfer (dot size, WT/RI) and its feature-reuse share (colour)")
    return fig


def similarity_vs_auc(table: pd.DataFrame, x: str = "similarity", y: str = "auc_gain", col: str | None = "layer",
                      row: str | None = "source"):
    """The hidden-representations study's similarity-vs-performance grid (spec §B.5): one
    scatter per (``row`` = source, ``col`` = layer) of the similarity of each fine-tuned
    model to its own initialisation (x) against its relative AUC gain over random
    initialisation (y), with a regression line and the panel's Pearson r and Spearman ρ
    (n.a. below 3 points); a column missing from ``table`` gives one row / column."""
    row = row if row is not None and row in table and table[row].nunique() > 0 else None
    col = col if col is not None and col in table else None
    grid = sns.lmplot(data=table, x=x, y=y, col=col, row=row, height=2.6, facet_kws={"sharex": False},
                      scatter_kws={"s": 14})
    for key, ax in grid.axes_dict.items() if (row or col) else [((), grid.ax)]:
        key = key if isinstance(key, tuple) else (key,)
        sel = np.ones(len(table), bool)
        for name, value in zip([c for c in (row, col) if c], key):
            sel &= (table[name] == value).to_numpy()
        g = table[sel]
        if len(g) >= 3 and g[x].nunique() > 1 and g[y].nunique() > 1:
            text = (f"r {stats.pearsonr(g[x], g[y]).statistic:.2f}  "
                    f"ρ {stats.spearmanr(g[x], g[y]).statistic:.2f}")
        else:
            text = "r, ρ n.a. (< 3 points)"
        ax.text(0.03, 0.95, text, transform=ax.transAxes, fontsize=7, va="top")
    return grid.figure


# --- small tables as figures ---------------------------------------------------------------
def bars(table: pd.DataFrame, x: str, y: str, title: str = "", ylabel: str | None = None, ylim=None):
    """A labelled bar chart of one column per row (e.g. each source's validation AUC)."""
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(table) + 2), 3))
    ax.bar(table[x].astype(str), table[y])
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel or y)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def score_heatmap(table: pd.DataFrame, title: str = "transferability scores"):
    """Sources × metrics scores, coloured by min–max within each metric, annotated with the
    raw values (a tidy :func:`medtl.transfer.score` table)."""
    wide = table[table.metric != "features"].pivot(index="source", columns="metric", values="value")
    span = (wide.max() - wide.min()).replace(0, np.nan)
    norm = (wide - wide.min()) / span
    fig, ax = plt.subplots(figsize=(1.2 + 0.8 * wide.shape[1], 0.5 * len(wide) + 1.5))
    sns.heatmap(norm.fillna(0.5), annot=wide.round(3), fmt="", cmap="viridis",
                cbar_kws={"label": "min–max within metric"}, ax=ax)
    ax.set_title(title)
    ax.set_ylabel("")
    return fig


def paired_boxes(table: pd.DataFrame, x: str, y: str, hue: str, title: str = ""):
    """Boxplots of ``y`` per ``x`` category, split by ``hue`` (e.g. P_obs vs P_ind per target)."""
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * table[x].nunique() + 2), 3.5))
    sns.boxplot(data=table, x=x, y=y, hue=hue, ax=ax)
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=30)
    return fig


def auc_intervals(selected: pd.DataFrame, title: str = "fine-tuned test AUC with 95 % bootstrap CI"):
    """Each source's selected test AUC with its confidence interval (columns source, target,
    test_auc, auc_low, auc_high), one panel per target, best source on top."""
    targets = list(dict.fromkeys(selected.target))
    fig, axes = plt.subplots(1, len(targets), figsize=(4.2 * len(targets), 0.45 * selected.source.nunique() + 1.4),
                             squeeze=False)
    for ax, t in zip(axes[0], targets):
        d = selected[selected.target == t].sort_values("test_auc")
        err = np.vstack([d.test_auc - d.auc_low, d.auc_high - d.test_auc])
        ax.errorbar(d.test_auc, range(len(d)), xerr=err, fmt="o", capsize=3)
        ax.set_yticks(range(len(d)), d.source.astype(str))
        ax.set_xlabel("test AUC")
        ax.set_title(t)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- truncated transfer ---------------------------------------------------------------------
def cut_curves(table: pd.DataFrame, metrics: Sequence[str] = ("auc", "auprc_trapezoid"), title: str = ""):
    """AUC and AUPRC of truncated transfer per cut — one row of panels per cut mode
    (block-wise cuts t; layer-wise cuts k, where TF's slim point s keeps what cut k = s + 1
    keeps), TTL per cut and TF per slim point (per head when the pooling ablation ran) — with the full model (FTL) and the best LWFT as horizontal
    reference lines (a table from :func:`medtl.study.truncation_study`)."""
    lines = table[table.method.isin(["TTL", "TF"])]
    heads = lines["head"].nunique() if "head" in lines else 1
    modes = [m for m in ("block", "layer") if (lines["mode"] == m).any()] or ["block"]
    fig, axes = plt.subplots(len(modes), len(metrics), figsize=(5 * len(metrics), 3.3 * len(modes)), squeeze=False)
    for row, mode in zip(axes, modes):
        own = lines[lines["mode"] == mode]
        for ax, m in zip(row, metrics):
            for key, g in own.groupby(["method", "head"] if heads > 1 else ["method"]):
                key = key if isinstance(key, tuple) else (key,)
                g = g.assign(x=g.cut + (1 if mode == "layer" and key[0] == "TF" else 0)).sort_values("x")
                ax.plot(g.x, g[m], marker="o", label=key[0] + (f" ({key[1]} head)" if heads > 1 else ""))
            for method, style in (("FTL", "--"), ("LWFT", ":")):
                ref = table[table.method == method]
                if len(ref):
                    ax.axhline(ref[m].max(), ls=style, color="gray",
                               label=f"{method} (best)" if method == "LWFT" else method)
            ax.set_xticks(sorted(set(own.cut + ((own.method == "TF") & (mode == "layer")))))
            ax.set_xlabel("block-wise cut t: layer1..t kept (TF: the rest slimmed)" if mode == "block"
                          else "layer-wise cut k: stem and k − 1 blocks kept (TF: the rest slimmed)")
            ax.set_ylabel(m.replace("_", " "))
            ax.legend(fontsize=7)
    fig.suptitle(title or "truncated transfer: test metrics per cut")
    fig.tight_layout()
    return fig


def pooling_ablation(table: pd.DataFrame, metrics: Sequence[str] = ("auprc_trapezoid", "auc"),
                     title: str = "pooling ablation: GAP vs flatten head per cut"):
    """The truncated-transfer study's pooling ablation (its ``pooling.png``): per block-wise
    cut, each metric for the GAP + Linear and the Flatten + Linear head (lines), and each
    head's trainable parameters (bars, right axis, log scale) — a table from
    :func:`medtl.study.truncation_study` with ``pooling_ablation=True``."""
    rows = table[(table["mode"] == "block") & table.method.isin(["TTL", "FTL"])].copy()
    rows["cut"] = rows.cut.astype(int)
    order = sorted(rows.cut.unique(), key=lambda c: (c == -1, c))
    heads = sorted(rows["head"].unique())
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.6), squeeze=False)
    x = np.arange(len(order))
    for ax, m in zip(axes[0], metrics):
        bars = ax.twinx()
        for i, head in enumerate(heads):
            g = rows[rows["head"] == head].set_index("cut").reindex(order)
            ax.plot(x, g[m], marker="o", label=f"{head} head", zorder=3)
            bars.bar(x + (i - (len(heads) - 1) / 2) * 0.35, g["params"], width=0.35, alpha=0.25)
        bars.set_yscale("log")
        bars.set_ylabel("trainable parameters (bars)")
        ax.set_xticks(x, ["full" if c == -1 else str(c) for c in order])
        ax.set_xlabel("block-wise cut")
        ax.set_ylabel(m.replace("_", " "))
        ax.set_zorder(bars.get_zorder() + 1)
        ax.patch.set_visible(False)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def svcca_boxes(svcca: pd.DataFrame, title: str = "SVCCA pretrained ↔ fine-tuned per block"):
    """Boxplots of the SVCCA coefficients per layer (x) for each cut (hue), as the study's
    figure; the legend gives each box group's mean ρ (the area under the sorted-ρ curve)."""
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * svcca.layer.nunique() + 3), 3.6))
    data = svcca.assign(cut=svcca.cut.astype(str))
    sns.boxplot(data=data, x="layer", y="rho", hue="cut", ax=ax)
    ax.set_ylim(0, 1)
    ax.set_ylabel("canonical correlation ρ")
    ax.set_title(title)
    return fig


def svcca_bottlenecks(blocks: pd.DataFrame, curve: pd.DataFrame | None = None, value: str = "auprc_ap"):
    """The truncated-transfer study's ``svcca.png``: one box of SVCCA coefficients per residual
    block output ("truncation point" 0 = after the first block), coloured by stage, beside a
    grey box of the baseline pair (a random network of the same architecture) — with, on a
    second axis, the test ``value`` (AUPRC) of the layer-wise TTL cut that ends at that block
    (cut k keeps the stem and k − 1 blocks: point k − 2). ``blocks`` is
    :func:`medtl.study.truncation_study`'s ``svcca_blocks``; ``curve`` rows with ``cut`` (the
    layer-wise k) and ``value``."""
    points = sorted(blocks.point.unique())
    names = blocks.drop_duplicates("point").set_index("point").layer
    stages = list(dict.fromkeys(names.str.split(".").str[0]))
    colours = dict(zip(stages, sns.color_palette("tab10", len(stages))))
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(points) + 3), 3.8))
    for pair, shift, width in (("fine-tuned", -0.18, 0.34), ("random", 0.18, 0.34)):
        g = blocks[blocks.pair == pair]
        if g.empty:
            continue
        data = [g[g.point == p].rho.to_numpy() for p in points]
        box = ax.boxplot(data, positions=np.array(points) + shift, widths=width, patch_artist=True,
                         showfliers=False, manage_ticks=False)
        for p, patch in zip(points, box["boxes"]):
            patch.set_facecolor("#bbbbbb" if pair == "random" else colours[names[p].split(".")[0]])
    ax.set_xticks(points, [str(p) for p in points])
    ax.set_xlabel("truncation point (residual block output)")
    ax.set_ylabel("SVCCA ρ (pretrained ↔ fine-tuned; grey: ↔ random)")
    ax.set_ylim(0, 1.02)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[s]) for s in stages] + [plt.Rectangle((0, 0), 1, 1,
                                                                                            color="#bbbbbb")]
    ax.legend(handles, [*stages, "random pair"], fontsize=7, loc="lower left")
    if curve is not None and len(curve):
        c = curve.assign(point=curve.cut - 2).sort_values("point")
        c = c[c.point.isin(points)]
        twin = ax.twinx()
        twin.plot(c.point, c.value, "k-o", ms=4, label=f"TTL test {value}")
        twin.set_ylabel(f"layer-wise TTL test {value}")
        twin.legend(fontsize=7, loc="lower right")
    ax.set_title("SVCCA per residual block, with the layer-wise cut curve")
    return fig


def svcca_methods(table: pd.DataFrame):
    """The truncated-transfer study's ``svcca_horizontal.png``: for each block (panel) the
    sorted SVCCA coefficients of pretrained ↔ each method's fine-tuned model (FTL, TF, LWFT,
    TTL) against the normalised coefficient index, the legend giving each curve's area
    (= its mean ρ); a block a method cut away has no curve."""
    layers = list(dict.fromkeys(table.layer))
    fig, axes = plt.subplots(1, len(layers), figsize=(3.2 * len(layers), 3.2), sharey=True, squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for method, g in table[table.layer == layer].groupby("method", sort=False):
            ax.plot(g.x, g.rho, label=f"{method} ({g.auc.iloc[0]:.2f})")
        ax.set_title(layer)
        ax.set_xlabel("normalised coefficient index")
        ax.legend(fontsize=7, title="method (area)", title_fontsize=7)
    axes[0][0].set_ylabel("SVCCA ρ, sorted")
    axes[0][0].set_ylim(0, 1.02)
    fig.suptitle("pretrained ↔ fine-tuned SVCCA per block and method")
    fig.tight_layout()
    return fig


def params_vs_auc(table: pd.DataFrame, value: str = "auc"):
    """Parameters (x, millions) against the test metric (y) of every method and cut."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for method, g in table.groupby("method"):
        ax.scatter(g.params / 1e6, g[value], label=method, s=28)
        _label_points(ax, g.cut.astype(str), g.params / 1e6, g[value], fontsize=7)
    ax.set_xlabel("parameters (M)")
    ax.set_ylabel(value)
    ax.legend(fontsize=7)
    ax.set_title(f"{value} against model size")
    return fig


# --- the benchmark study ---------------------------------------------------------------------
#: The headline metric of each benchmark arm.
ARM_METRIC = {"classification": "auc", "segmentation": "dice"}


def headline(compare: pd.DataFrame) -> pd.DataFrame:
    """The rows of each arm's headline metric (AUC, Dice) of a comparison table."""
    keep = [ARM_METRIC.get(arm) == metric for arm, metric in zip(compare["arm"], compare["metric"])]
    return compare[keep]


def benchmark_bars(compare: pd.DataFrame, title: str = ""):
    """The benchmark study's per-target bars: one panel per target (AUC for classification,
    global Dice for segmentation), one bar per initialisation at its mean over trials with
    ±1 std error bars, and each bar's significance marker against the baseline (two-sample
    t-test; ``n.s.`` not significant). ``compare`` is :func:`medtl.study.compare_trials`."""
    data = headline(compare)
    if data.empty:
        raise ValueError("no AUC (classification) or Dice (segmentation) rows to plot")
    panels = list(dict.fromkeys(zip(data["arm"], data["target"])))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(4.5, 0.55 * data["init"].nunique() + 2) * len(panels), 3.8),
                             squeeze=False)
    for ax, (arm, target) in zip(axes[0], panels):
        d = data[(data["arm"] == arm) & (data["target"] == target)]
        base = d["init"] == d["baseline"]
        colors = ["#888888" if b else "#3274a1" for b in base]
        ax.bar(d["init"], d["mean"], yerr=d["std"].fillna(0), color=colors, capsize=3)
        spread = float((d["mean"] + d["std"].fillna(0)).max() - (d["mean"] - d["std"].fillna(0)).min()) or 0.05
        low = float((d["mean"] - d["std"].fillna(0)).min()) - 0.3 * spread
        for x, (_, r) in enumerate(d.iterrows()):
            if r["marker"]:
                ax.text(x, r["mean"] + (0 if np.isnan(r["std"]) else r["std"]) + 0.03 * spread, r["marker"],
                        ha="center", va="bottom", fontsize=8)
        ax.set_ylim(max(low, 0), None)
        ax.set_title(f"{target} ({'AUC' if arm == 'classification' else 'Dice'})", fontsize=10)
        ax.tick_params(axis="x", rotation=45)
        ax.set_ylabel({"classification": "test AUC", "segmentation": "test Dice"}[arm])
    fig.suptitle(title or f"mean ± std over trials; markers: t-test vs {data['baseline'].iloc[0]} (grey)", fontsize=10)
    fig.tight_layout()
    return fig


def auc_and_dice(compare: pd.DataFrame):
    """Classification AUC and segmentation Dice side by side: each initialisation's mean over
    trials (dots, one per target; ±1 std bars), so an initialisation that helps one arm
    and not the other stands out."""
    data = headline(compare)
    arms = [a for a in ("classification", "segmentation") if a in set(data["arm"])]
    if not arms:
        raise ValueError("no AUC or Dice rows to plot")
    order = list(dict.fromkeys(data["init"]))
    fig, axes = plt.subplots(1, len(arms), figsize=(4.8 * len(arms), 0.35 * len(order) + 2), squeeze=False,
                             sharey=True)
    for ax, arm in zip(axes[0], arms):
        d = data[data["arm"] == arm]
        for k, (target, g) in enumerate(d.groupby("target", sort=False)):
            y = [order.index(i) + 0.12 * (k - 0.5) for i in g["init"]]
            ax.errorbar(g["mean"], y, xerr=g["std"].fillna(0), fmt="o", capsize=2, label=target)
        ax.set_yticks(range(len(order)), order)
        ax.set_xlabel("test AUC" if arm == "classification" else "test Dice (global)")
        ax.set_title(arm)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].invert_yaxis()
    fig.tight_layout()
    return fig
