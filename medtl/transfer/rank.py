""""Which source should I transfer from?" for a user's own data: score every candidate with
every metric that can read it, put an uncertainty on each score, combine the metrics into one
ordering with its own uncertainty, say which differences the scores cannot resolve, and
(optionally) check the top of the ordering by fine-tuning."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from .ensemble import rank_average
from .evaluation import tau_ci
from .registry import metric
from .score import score

#: How a candidate source is written (``medtl rank --sources``).
SOURCE_GRAMMAR = ("ARCH (ImageNet weights: resnet18, densenet121, …), ARCH:random (random initialisation), "
                  "ARCH:PATH (a checkpoint file for that architecture, SSL key layouts remapped), "
                  "ARCH:WEIGHTS (any weights name medtl.models.create accepts), source:NAME (a saved medtl "
                  "source), PATH.pt with its .json sidecar (a saved medtl source file)")


@dataclass
class Ranking:
    """The result of :func:`rank`.

    Attributes:
        target: the target's name; ``n_images``: images scored.
        scores: one row per (source, metric): ``score`` on all images, ``low``/``high`` its
            interval over image subsamples, ``seconds``, ``kind``.
        recommendation: the sources best first: ``ensemble`` (mean within-target rank over
            the metrics, higher = better), ``low``/``high``, ``resolved`` (whether its
            interval is clear of the next source's: False means the scores cannot tell the
            two apart) and ``rank``.
        failed: candidates that could not be loaded, with the reason.
        verification: with ``verify``: the fine-tuned candidates' test AUC (and CI);
            ``verify_tau``: τ_w of the ensemble against it, with a bootstrap CI.
    """

    target: str
    n_images: int
    scores: pd.DataFrame
    recommendation: pd.DataFrame
    failed: pd.DataFrame
    metrics: list[str] = field(default_factory=list)
    verification: pd.DataFrame | None = None
    verify_tau: pd.DataFrame | None = None

    def summary(self) -> str:
        """A few lines for a terminal: the order, what is unresolved, what failed."""
        lines = [f"target {self.target} ({self.n_images} images), {len(self.metrics)} metrics"]
        for r in self.recommendation.itertuples():
            tie = "" if r.resolved else "   (not resolvable from the next by the scores)"
            lines.append(f"  {r.rank}. {r.source}: ensemble {r.ensemble:.2f} [{r.low:.2f}, {r.high:.2f}]{tie}")
        for r in self.failed.itertuples():
            lines.append(f"  could not load {r.source}: {r.reason}")
        if self.verify_tau is not None and len(self.verify_tau):
            t = self.verify_tau.iloc[0]
            lines.append(f"  verified by fine-tuning: tau_w {t.tau_w:.2f} [{t.low:.2f}, {t.high:.2f}]")
        return "\n".join(lines)


def load_candidate(spec, num_classes: int = 1000) -> nn.Module:
    """Build one candidate from its written form (:data:`SOURCE_GRAMMAR`); a model passes
    through. Errors say what was not understood or could not be found."""
    from ..models import ARCHS, create, load_source

    if isinstance(spec, nn.Module):
        return spec
    text = str(spec)
    if text.startswith("source:"):
        return load_source(text[len("source:"):])
    path = Path(text).expanduser()
    if path.suffix == ".pt" and path.is_file():
        if not path.with_suffix(".json").is_file():
            raise ValueError(f"{text}: a checkpoint without a medtl .json sidecar; write it as ARCH:{text} "
                             "(e.g. resnet50:{text}) so medtl knows the architecture")
        return load_source(path)
    arch, _, weights = text.partition(":")
    if arch not in ARCHS:
        raise ValueError(f"{text!r} is not a candidate medtl understands: {arch!r} is no architecture of the table "
                         f"and no existing file. Write candidates as {SOURCE_GRAMMAR}")
    if weights == "random":
        model = create(arch, num_classes=num_classes, seed=0)
        model.medtl["init"] = "ri"
        return model
    if not weights:
        return create(arch, num_classes=num_classes, weights="imagenet")
    wpath = Path(weights).expanduser()
    return create(arch, num_classes=num_classes, weights=str(wpath) if wpath.exists() else weights)


def _label(spec, taken: set[str]) -> str:
    text = str(spec) if not isinstance(spec, nn.Module) else type(spec).__name__
    arch, sep, rest = text.partition(":")
    if arch == "source":
        text = rest
    elif sep and ("/" in rest or rest.endswith((".pt", ".pth", ".tar", ".ckpt"))):
        text = f"{arch}:{Path(rest).stem}"
    elif text.endswith(".pt") and "/" in text:
        text = Path(text).stem
    label, k = text, 2
    while label in taken:
        label, k = f"{text}#{k}", k + 1
    return label


def load_candidates(sources: Mapping | Sequence) -> tuple[dict[str, nn.Module], pd.DataFrame]:
    """``({label: model}, failures)``: every candidate that loads, and for each one that does
    not (a missing weight file offline, an unknown name, a corrupt checkpoint) its reason."""
    items = list(sources.items()) if isinstance(sources, Mapping) else None
    if items is None:
        taken: set[str] = set()
        items = []
        for spec in sources:
            label = _label(spec, taken)
            taken.add(label)
            items.append((label, spec))
    models, failed = {}, []
    for label, spec in items:
        try:
            models[label] = load_candidate(spec)
        except Exception as err:  # any load failure is reported, not fatal
            failed.append({"source": label, "spec": str(spec), "reason": f"{type(err).__name__}: {err}"})
    return models, pd.DataFrame(failed, columns=["source", "spec", "reason"])


def _subsample(data, fraction: float, rng: np.random.Generator):
    """A stratified subsample without replacement (at least 2 images of every class)."""
    cls = data.primary_labels()
    idx = []
    for c in np.unique(cls):
        pool = np.flatnonzero(cls == c)
        k = min(len(pool), max(2, int(round(fraction * len(pool)))))
        idx.append(rng.choice(pool, k, replace=False))
    return data.subset(np.sort(np.concatenate(idx)), name=data.name)


def _wide(table: pd.DataFrame) -> pd.DataFrame:
    """sources × metrics of the ``score`` column (missing scores kept as NaN)."""
    return table.pivot_table(index="source", columns="metric", values="score", aggfunc="first", dropna=False)


def _informative(wide: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    """The metrics that score every source and do not give them all the same score."""
    return [m for m in metrics if m in wide and wide[m].notna().all() and wide[m].nunique() > 1]


def _ensemble(wide: pd.DataFrame, metrics: Sequence[str]) -> pd.Series:
    """:func:`rank_average` over ``metrics`` (a metric undefined for a source in this
    replicate gives every source the same rank)."""
    if not metrics:
        return pd.Series(np.nan, index=wide.index)
    return rank_average({m: pd.Series(0.0, index=wide.index) if wide[m].isna().any() else wide[m] for m in metrics})


def _summarise(full: pd.DataFrame, reps: list[pd.DataFrame], names: list[str],
               alpha: float) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Scores with their subsample intervals, the recommendation, and the metrics used."""
    full = full[full.metric != "features"].rename(columns={"value": "score"})
    boot = pd.concat(reps, ignore_index=True).rename(columns={"value": "score"}) if reps else None
    q = (alpha / 2, 1 - alpha / 2)
    if boot is not None:
        bounds = boot.groupby(["source", "metric"]).score.quantile(q).unstack()
        bounds.columns = ["low", "high"]
        full = full.join(bounds, on=["source", "metric"])
    else:
        full = full.assign(low=np.nan, high=np.nan)
    full["kind"] = [metric(m).kind for m in full.metric]
    wide = _wide(full)
    used = _informative(wide, names)
    point = _ensemble(wide, used)
    if boot is not None:
        ens = pd.DataFrame({b: _ensemble(_wide(g), used) for b, g in boot.groupby("rep")})
        low, high = ens.quantile(q[0], axis=1), ens.quantile(q[1], axis=1)
    else:
        low = high = pd.Series(np.nan, index=point.index)
    rec = pd.DataFrame({"source": point.index, "ensemble": point.to_numpy(), "low": low.reindex(point.index).to_numpy(),
                        "high": high.reindex(point.index).to_numpy()})
    rec = rec.sort_values("ensemble", ascending=False, kind="stable").reset_index(drop=True)
    rec["resolved"] = (rec.low > rec.high.shift(-1)).fillna(True) & rec.low.notna()
    rec.loc[rec.index[-1], "resolved"] = True
    rec.insert(0, "rank", np.arange(1, len(rec) + 1))
    return full, rec, used


def rank(target, sources, n: int | None = 500, metrics: Sequence[str] | None = None, size: int = 28,
         root: str | os.PathLike | None = None, n_boot: int = 20, fraction: float = 0.8, alpha: float = 0.05,
         seed: int = 0, verify: int = 0, verify_grid: str | Mapping = "cpu", verify_epochs: int | None = None,
         cache: str | os.PathLike | None = None, progress: bool = True) -> Ranking:
    """Rank candidate sources for a target.

    Args:
        target: a MedMNIST flag, a synthetic-suite name, an image folder, a list file, a
            CSV (anything :func:`medtl.data.get` reads), or an ImageSet.
        sources: candidates as written in :data:`SOURCE_GRAMMAR` (a list, or ``{label:
            spec or model}``). Candidates that cannot be loaded are reported in
            ``Ranking.failed``; at least two must load.
        n: images scored: a seeded stratified subsample of the target's training split
            (all when None or larger).
        metrics: registry names (default: every default metric that can score the target's
            label kind).
        n_boot, fraction: the score intervals: each metric is recomputed on ``n_boot``
            stratified subsamples holding ``fraction`` of the images, without replacement
            (duplicated images would inflate neighbour-based scores); low/high are the
            alpha/2 and 1 − alpha/2 quantiles. The same subsamples give the ensemble's
            interval.
        verify: fine-tune the top ``verify`` candidates and one random other with the
            ``verify_grid`` preset (:data:`medtl.train.GRID_PRESETS`) on the target's
            train/val/test splits and report τ_w of the ensemble against the test AUCs.

    Returns:
        A :class:`Ranking`.
    """
    from ..data import ImageSet, get

    data = target if isinstance(target, ImageSet) else get(target, "train", size, root=root, n=n, seed=seed)
    if isinstance(target, ImageSet) and n is not None and n < len(target):
        from ..data import subset
        data = subset(target, n, stratified=True, seed=seed)
    tname = Path(str(target)).name if not isinstance(target, ImageSet) else target.name.split("/")[0]
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    models, failed = load_candidates(sources)
    if len(models) < 2:
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in failed.itertuples()) or "none given"
        raise ValueError(f"ranking needs at least 2 candidates that load, got {len(models)} ({reasons})")
    with tempfile.TemporaryDirectory() as tmp:
        feature_cache = cache if cache is not None else tmp
        full = score(models, data, metrics, target_name=tname, cache=feature_cache, progress=progress, seed=seed)
        names = [m for m in dict.fromkeys(full.metric) if m != "features"]
        rng = np.random.default_rng(seed)
        reps = []
        for b in range(n_boot):
            sub = _subsample(data, fraction, rng)
            t = score(models, sub, names, target_name=tname, cache=feature_cache, progress=False, seed=seed + b + 1)
            reps.append(t[t.metric != "features"].assign(rep=b))
    full, rec, used = _summarise(full, reps, names, alpha)
    cols = ["source", "target", "metric", "kind", "score", "low", "high", "seconds", "self_source"]
    result = Ranking(tname, len(data), full[cols].reset_index(drop=True), rec, failed, used)
    if verify:
        _verify(result, models, target, size, root, verify, verify_grid, verify_epochs, seed, progress)
    return result


def _verify(result: Ranking, models: dict, target, size, root, k: int, grid, epochs, seed: int, progress) -> None:
    """Fine-tune the top ``k`` and one random other candidate; record test AUCs and τ_w."""
    import copy

    from .. import train as T
    from ..data import ImageSet, split_whole, target_splits

    if isinstance(target, ImageSet):
        train, val, test = (split_whole(target, s, seed=seed) for s in ("train", "val", "test"))
    else:
        train, val, test = target_splits(target, size, root, seed=seed)
    order = list(result.recommendation.source)
    picked = order[:k]
    rest = order[k:]
    if rest:
        picked.append(random.Random(seed).choice(rest))
    grid, settings = T.grid_preset(grid) if isinstance(grid, str) else (dict(grid), {})
    settings.pop("dropout", None)
    if epochs is not None:
        settings["epochs"] = epochs
    rows = []
    for name in picked:
        def build(name=name):
            from ..models import replace_head
            return replace_head(copy.deepcopy(models[name]), train.n_classes)

        t = T.grid_search(build, train, val, test, grid, progress=progress, **settings)
        best = T.select(t)
        ci = best.get("test_auc_ci")
        low, high = (ci[0], ci[1]) if ci is not None and len(ci) == 2 else (np.nan, np.nan)
        rows.append({"source": name, "test_auc": float(best["test_auc"]), "test_auc_low": low, "test_auc_high": high,
                     "config_id": best.get("config_id"),
                     "ensemble": float(result.recommendation.set_index("source").loc[name, "ensemble"])})
    ver = pd.DataFrame(rows)
    result.verification = ver
    gt = ver.set_index("source")[["test_auc"]].rename(columns={"test_auc": result.target})
    sc = ver.set_index("source")[["ensemble"]].rename(columns={"ensemble": result.target})
    result.verify_tau = tau_ci({"ensemble": sc}, gt, exclude_self=False).query("target != 'MEAN'").reset_index(drop=True)
