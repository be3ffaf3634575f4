""""Which source should I transfer from?" for a user's own data: score every candidate with
every metric that can read it, put an uncertainty on each score, combine the metrics into one
ordering with its own uncertainty, say which differences the scores cannot resolve, and
(optionally) check the top of the ordering by fine-tuning."""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..runtime import said_once
from . import cost as _cost
from .ensemble import rank_average
from .evaluation import kendall_w, subsample_interval, tau_ci
from .metrics import indistinct
from .registry import metric
from .score import feature_layers, load_candidate, score

#: The ``source`` of a ``Ranking.failed`` row about a metric as a whole (e.g. one that gave
#: every candidate the same score).
ALL_CANDIDATES = "(all candidates)"

#: Rank direction, one wording for every table, figure and line: rank 1 is the best candidate.
RANK_WORDING = "mean rank over the metrics (1 = best)"


@dataclass
class Ranking:
    """The result of :func:`rank`.

    Attributes:
        target: the target's name; ``n_images``: images scored; ``scored``: which images
            (``"the whole training split"`` or the subsample drawn).
        scores: one row per (source, metric): ``score`` on the scored images, ``low``/``high``
            its interval (:func:`subsample_interval`; NaN without replicates), ``seconds``,
            ``kind``. Metrics that failed for a source are not here but in ``failed``.
        recommendation: the sources best first: ``mean_rank`` (the mean over the informative
            metrics of each metric's rank of the source, 1 = best), its interval
            ``low``/``high``, ``resolved`` (whether the paired interval of its mean-rank
            difference to the next source excludes 0; NA without replicates) and ``rank``.
        failed: what could not be used, one row each: a candidate that did not load
            (``metric`` empty), a metric that failed for a candidate, or a metric left out
            of the mean rank as a whole (``source`` :data:`ALL_CANDIDATES`: it gave every
            candidate the same score up to float noise), with the reason.
        agreement: Kendall's W of the metrics over the candidates (0 = the metrics order
            the candidates independently, 1 = identically), with m metrics, n candidates,
            the χ² statistic and its p-value.
        verification: with ``verify``: the fine-tuned candidates' test AUC and its 95 % CI,
            their mean rank, and ``verify_tau``: τ_w of the mean ranks against the AUCs.
        costs: the :class:`medtl.transfer.cost.Costs`: per-image costs measured on each
            candidate, the estimate printed before scoring, the time the ranking took and
            the P5 ratio (the study grid's fine-tuning cost over it).
    """

    target: str
    n_images: int
    scores: pd.DataFrame
    recommendation: pd.DataFrame
    failed: pd.DataFrame
    metrics: list[str] = field(default_factory=list)
    verification: pd.DataFrame | None = None
    verify_tau: pd.DataFrame | None = None
    agreement: dict = field(default_factory=dict)
    scored: str = ""
    n_boot: int = 0
    fraction: float = 0.5
    costs: _cost.Costs | None = None

    def interval_note(self) -> str:
        """How the intervals were made, in one line."""
        if not self.n_boot:
            return "no intervals (n_boot = 0)"
        return (f"95 % intervals: {self.n_boot} stratified half-samples without replacement "
                f"(fraction {self.fraction:.2f}), spread rescaled to the full N at the √N rate "
                "(delete-d jackknife), centred on the full-data value")

    def verdict(self) -> str:
        """Whether the top pick held under fine-tuning, in words ('' without verification)."""
        ver = self.verification
        if ver is None or ver.empty:
            return ""
        top = self.recommendation.source.iloc[0]
        if top not in set(ver.source):
            return "the top pick was not fine-tuned"
        best = ver.loc[ver.test_auc.idxmax()]
        mine = ver.set_index("source").loc[top]
        if best.source == top:
            return f"the top pick held: {top} fine-tuned best of the {len(ver)} verified candidates"
        overlap = not (best.test_auc_low > mine.test_auc_high)
        return (f"the top pick did NOT hold: {best.source} fine-tuned better ({best.test_auc:.3f} vs "
                f"{mine.test_auc:.3f}; {'their AUC intervals overlap' if overlap else 'beyond both AUC intervals'})")

    def summary(self) -> str:
        """A few lines for a terminal: the order, agreement, what is unresolved, what failed,
        and the verification."""
        boot = self.n_boot > 0
        lines = [f"target {self.target}: {self.n_images} images scored ({self.scored}), "
                 f"{len(self.metrics)} metrics, {len(self.recommendation)} candidates",
                 f"recommendation ({RANK_WORDING}; {self.interval_note()}):"]
        for r in self.recommendation.itertuples():
            interval = f" [{r.low:.2f}, {r.high:.2f}]" if boot else ""
            tie = "" if not boot or r.resolved is pd.NA or r.resolved else "   (not resolvable from the next)"
            lines.append(f"  {r.rank}. {r.source}: mean rank {r.mean_rank:.2f}{interval}{tie}")
        a = self.agreement
        if a:
            lines.append(f"agreement of the metrics: Kendall's W = {a['W']:.2f} over {a['m']} metrics and "
                         f"{a['n']} candidates (p = {a['p']:.3g}; 0 = independent orderings, 1 = identical)")
        for r in self.failed.itertuples():
            what = (f"could not load {r.source}" if not r.metric else f"could not score {r.source}"
                    if r.metric == "features" else f"{r.metric} not used" if r.source == ALL_CANDIDATES
                    else f"{r.metric} failed for {r.source}")
            lines.append(f"  {what}: {r.reason}")
        if self.verification is not None and len(self.verification):
            lines.append("verification by fine-tuning (test AUC with 95 % CI):")
            for r in self.verification.itertuples():
                lines.append(f"  {r.source} (mean rank {r.mean_rank:.2f}): AUC {r.test_auc:.3f} "
                             f"[{r.test_auc_low:.3f}, {r.test_auc_high:.3f}]")
            if self.verify_tau is not None and len(self.verify_tau):
                t = self.verify_tau.iloc[0]
                lines.append(f"  tau_w of the ranking against the fine-tuned AUCs: {t.tau_w:.2f} "
                             f"[{t.low:.2f}, {t.high:.2f}] over {len(self.verification)} candidates")
            lines.append(f"  {self.verdict()}")
        if self.costs is not None and self.costs.measured_s:
            lines.append(self.costs.after())
        return "\n".join(lines)


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


def _subsample(data, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """The sorted positions of a stratified subsample without replacement (``fraction`` of
    every class, at least 2 images of it, at most all but one)."""
    cls = data.primary_labels()
    idx = []
    for c in np.unique(cls):
        pool = np.flatnonzero(cls == c)
        k = min(len(pool) - 1 if len(pool) > 2 else len(pool), max(2, int(round(fraction * len(pool)))))
        idx.append(rng.choice(pool, k, replace=False))
    return np.sort(np.concatenate(idx))


def _wide(table: pd.DataFrame) -> pd.DataFrame:
    """sources × metrics of the ``score`` column (missing scores kept as NaN)."""
    return table.pivot_table(index="source", columns="metric", values="score", aggfunc="first", dropna=False)


def _informative(wide: pd.DataFrame, metrics: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(the metrics that score every source and do not give them all the same score up to
    float noise (:func:`medtl.transfer.metrics.indistinct`), {each metric left out for that
    sameness: why}). A metric missing for some source is not used either; its failure rows
    say why."""
    used, unused = [], {}
    for m in metrics:
        values = wide[m] if m in wide else pd.Series(dtype=float)
        if values.empty or values.isna().any():
            continue
        if indistinct(values.to_numpy()):
            unused[m] = (f"the same score ({values.iloc[0]:.6g}, up to float noise) for every candidate: it cannot "
                         "order them, so it is left out of the mean rank")
        else:
            used.append(m)
    return used, unused


def _mean_rank(wide: pd.DataFrame, metrics: Sequence[str], sources) -> pd.Series:
    """Each source's mean over ``metrics`` of its rank (1 = highest score, ties averaged);
    a metric undefined for some source in this replicate gives every source the same rank."""
    if not metrics:
        return pd.Series(np.nan, index=sources)
    wide = wide.reindex(sources)
    k = len(wide)
    cols = {m: pd.Series(0.0, index=wide.index) if wide[m].isna().any() else wide[m] for m in metrics}
    return k + 1 - rank_average(cols)


def _interval(point: float, reps, fraction: float, alpha: float, bounds=(-np.inf, np.inf)) -> tuple[float, float]:
    low, high = subsample_interval(point, reps, fraction, alpha)
    return (max(low, bounds[0]), min(high, bounds[1])) if np.isfinite(low) else (low, high)


def _summarise(full: pd.DataFrame, reps: list[pd.DataFrame], names: list[str], fraction: float,
               alpha: float) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, str]]:
    """Scores with their intervals, the recommendation (best first), the metrics used, and
    why each other metric of ``names`` is not."""
    full = full[(full.metric != "features") & full.value.notna()].rename(columns={"value": "score"})
    boot = pd.concat(reps, ignore_index=True).rename(columns={"value": "score"}) if reps else None
    full = full.assign(low=np.nan, high=np.nan)
    if boot is not None:
        groups = {key: g.score.to_numpy() for key, g in boot.groupby(["source", "metric"])}
        for i, r in full.iterrows():
            full.loc[i, ["low", "high"]] = _interval(r.score, groups.get((r.source, r.metric), []), fraction, alpha)
    full["kind"] = [metric(m).kind for m in full.metric]
    wide = _wide(full)
    sources = list(wide.index)
    used, unused = _informative(wide, names)
    point = _mean_rank(wide, used, sources)
    rec = pd.DataFrame({"source": sources, "mean_rank": point.to_numpy(), "low": np.nan, "high": np.nan})
    resolved_with = {}
    if boot is not None and used:
        ens = pd.DataFrame({b: _mean_rank(_wide(g), used, sources) for b, g in boot.groupby("rep")})
        for i, src in enumerate(sources):
            rec.loc[i, ["low", "high"]] = _interval(point[src], ens.loc[src], fraction, alpha, (1, len(sources)))
        order = point.sort_values(kind="stable").index
        for a, b in zip(order[:-1], order[1:]):
            # paired: the difference of mean ranks on the same replicates
            low, _ = subsample_interval(point[b] - point[a], ens.loc[b] - ens.loc[a], fraction, alpha)
            resolved_with[a] = bool(low > 0)
    rec = rec.sort_values("mean_rank", kind="stable").reset_index(drop=True)
    if boot is not None and used:
        rec["resolved"] = [resolved_with.get(s, True) for s in rec.source]
    else:
        rec["resolved"] = pd.Series([pd.NA] * len(rec), dtype="boolean")
    rec.insert(0, "rank", np.arange(1, len(rec) + 1))
    return full, rec, used, unused


def _left_out(unused: dict[str, str]) -> list[dict]:
    """``Ranking.failed`` rows for the metrics left out as a whole."""
    return [{"source": ALL_CANDIDATES, "spec": "", "metric": m, "reason": why} for m, why in unused.items()]


def _failures(table: pd.DataFrame) -> list[dict]:
    """One row per (source, metric) that failed on the scored images."""
    if "error" not in table:
        return []
    bad = table[table.error.notna()]
    unusable = set(bad.source[bad.metric == "features"])  # one row for a source without features
    return [{"source": r.source, "spec": "", "metric": r.metric, "reason": r.error} for r in bad.itertuples()
            if r.metric == "features" or r.source not in unusable]


def _scored_images(target, n, size, root, seed):
    """(the images to score in :func:`medtl.data.content_order`, which they are, the
    target's name): the whole training split (or all of an ImageSet), or a stratified
    subsample of ``n``."""
    from ..data import ImageSet, content_order, get, subset

    given = isinstance(target, ImageSet)
    data = target if given else get(target, "train", size, root=root, seed=seed)
    total = len(data)
    if n is not None and n < total:
        data = subset(data, n, stratified=True, seed=seed)
    split = "the whole training split"
    cut = data.meta.get("split_from")  # a folder/list/table without splits of its own: medtl cut them
    if cut is not None:
        percents = "/".join(f"{100 * f:.0f}" for f in cut["fractions"].values())
        split += (f": {total} of the {cut['images']} images, medtl's seeded stratified {percents} "
                  f"{'/'.join(cut['fractions'])} split (the target has none of its own; val and test are held "
                  "out for --verify)")
    scored = ("all images given" if given else split) if len(data) == total \
        else f"a stratified subsample of {len(data)} of the {total} training images (n={n})"
    tname = target.name.split("/")[0] if given else Path(str(target)).name
    return data.subset(content_order(data), name=data.name), scored, tname


def _full_features(models, data, names, full: pd.DataFrame, cache) -> dict:
    """The activations the full-data scoring extracted (read back from the feature cache),
    for every candidate whose extraction succeeded: the replicates slice their rows instead
    of running the model again (extraction is deterministic in eval mode, so a row is the
    image's activation whatever subsample it is in, up to float rounding of the batch)."""
    from ..features import extract

    layers = feature_layers(names)
    failed = set(full.source[(full.metric == "features") & full.error.notna()])
    if not layers:
        return {}
    return {name: extract(model, data, layers, cache=cache, progress=False)
            for name, model in models.items() if name not in failed}


def _replicates(models, data, names, tname, cache, n_boot, fraction, seed, progress, full):
    """Every metric of ``names`` on ``n_boot`` stratified subsamples: (tidy tables with a
    ``rep`` column, the realised mean m/N — classes are rounded, at least 2 images each).
    Feature and probability metrics reuse the full-data activations' rows; metrics that run
    the model (FU) run it on the subsample."""
    rng = np.random.default_rng(seed)
    reps, sizes = [], []
    feats = _full_features(models, data, names, full, cache) if n_boot and names else {}
    for b in tqdm(range(n_boot if names else 0), desc=f"intervals ({n_boot} subsamples)", disable=not progress):
        idx = _subsample(data, fraction, rng)
        sub = data.subset(idx, name=data.name)
        sizes.append(len(sub) / len(data))
        rows = torch.as_tensor(idx)
        given = {s: {layer: t[rows] for layer, t in f.items()} for s, f in feats.items()}
        t = score(models, sub, names, target_name=tname, cache=cache, progress=False, seed=seed, errors="record",
                  features=given)
        reps.append(t[t.metric != "features"].assign(rep=b))
    return reps, (float(np.mean(sizes)) if sizes else fraction)


def rank(target, sources, n: int | None = None, metrics: Sequence[str] | None = None, size: int = 28,
         root: str | os.PathLike | None = None, n_boot: int = 20, fraction: float = 0.5, alpha: float = 0.05,
         seed: int = 0, verify: int = 0, verify_grid: str | Mapping = "cpu", verify_epochs: int | None = None,
         cache: str | os.PathLike | None = None, progress: bool = True, estimate: bool = True) -> Ranking:
    """Rank candidate sources for a target.

    Args:
        target: a MedMNIST flag, a synthetic-suite name, an image folder, a list file, a
            CSV (anything :func:`medtl.data.get` reads), or an ImageSet.
        sources: candidates as written in :data:`SOURCE_GRAMMAR` (a list, or ``{label:
            spec or model}``). Candidates that cannot be loaded, and metrics that fail for a
            candidate, are rows of ``Ranking.failed`` with the reason; the rest is ranked.
            At least two candidates must be scored by at least one metric.
        n: images scored: all of the target's training split when None (default), else a
            seeded stratified subsample of ``n`` (faster on large targets). An ImageSet
            target is scored whole (or subsampled to ``n``).
        metrics: registry names (default: every default metric that can score the target's
            label kind).
        n_boot, fraction: the intervals (:func:`medtl.transfer.subsample_interval`): every
            metric is recomputed on ``n_boot`` stratified subsamples holding ``fraction``
            (default one half) of each class, without replacement (duplicated images would
            inflate neighbour-based scores); the spread is rescaled to the full N and
            centred on the full-data value, so a point estimate always lies inside its
            interval. The same subsamples give the mean rank's interval and the paired test
            of each candidate against the next. ``n_boot=0``: no intervals.
        verify: fine-tune the top ``verify`` candidates and one random other with the
            ``verify_grid`` preset (:data:`medtl.train.GRID_PRESETS`) on the target's
            train/val/test splits and report their test AUCs and τ_w of the ranking against
            them.
        estimate: measure each candidate's per-image costs first, print the estimated time
            per candidate before scoring (with ``progress``) and record the time taken and
            the P5 ratio against the study grid's fine-tuning (``Ranking.costs``,
            :mod:`medtl.transfer.cost`).

    The scored images are put in :func:`medtl.data.content_order` first, so the result does
    not depend on the order of the target's files (a class-sorted folder ranks as a
    shuffled one); seeded steps (subsamples, FU's batches, mixtures) draw from that order.

    Returns:
        A :class:`Ranking`.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0 or n_boot == 1:
        raise ValueError(f"n_boot must be 0 (no intervals) or an integer >= 2, got {n_boot!r}")
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2):
        raise ValueError(f"n must be None (the whole training split) or an integer >= 2, got {n!r}")
    start, (data, scored, tname) = time.perf_counter(), _scored_images(target, n, size, root, seed)
    models, failed = load_candidates(sources)
    failed = failed.assign(metric="")[["source", "spec", "metric", "reason"]]
    if len(models) < 2:
        reasons = "; ".join(f"{r.source}: {r.reason}" for r in failed.itertuples()) or "none given"
        raise ValueError(f"ranking needs at least 2 candidates that load, got {len(models)} ({reasons})")
    costs = _estimate(models, data, metrics, n_boot, fraction, tname, seed, progress) if estimate else None
    with tempfile.TemporaryDirectory() as tmp, said_once():  # each warning once, not per subsample
        feature_cache = cache if cache is not None else tmp
        full = score(models, data, metrics, target_name=tname, cache=feature_cache, progress=progress, seed=seed,
                     errors="record")
        fails = _failures(full)
        names = [m for m in dict.fromkeys(full.metric) if m != "features"]
        ok = [m for m in names if full[(full.metric == m)].value.notna().sum() >= 2]
        reps, actual = _replicates(models, data, ok, tname, feature_cache, n_boot, fraction, seed, progress, full)
    full, rec, used, unused = _summarise(full, reps, ok, actual, alpha)
    failed = pd.concat([failed, pd.DataFrame(fails + _left_out(unused), columns=failed.columns)], ignore_index=True)
    if len(rec) < 2 or not used:
        raise ValueError(_nothing_ranked(tname, len(rec), failed))
    cols = ["source", "target", "metric", "kind", "score", "low", "high", "seconds", "self_source"]
    wide = _wide(full)[used]
    agreement = kendall_w(wide.T.to_numpy())
    result = Ranking(tname, len(data), full[cols].reset_index(drop=True), rec, failed.reset_index(drop=True), used,
                     agreement=agreement, scored=scored, n_boot=n_boot if reps else 0, fraction=actual, costs=costs)
    if costs is not None:  # the ranking's own time (verification is fine-tuning, not ranking)
        costs.measured_s = time.perf_counter() - start
    if verify:
        _verify(result, models, target, size, root, verify, verify_grid, verify_epochs, seed, progress)
    return result


def _nothing_ranked(tname: str, n_scored: int, failed: pd.DataFrame) -> str:
    """Why no ranking came out: every failure, the candidates that did not load included."""
    why = "; ".join(dict.fromkeys(f"{r.source}: {r.reason}" if r.metric else f"{r.source} did not load: {r.reason}"
                                  for r in failed.itertuples()))
    return (f"nothing could be ranked on {tname!r}: "
            + (f"{n_scored} candidate(s) could be scored" if n_scored < 2
               else "no metric scored every candidate with distinct values")
            + (f" ({why})" if why else ""))


def _estimate(models, data, metrics, n_boot, fraction, tname, seed, progress) -> _cost.Costs:
    """The cost estimate (:func:`medtl.transfer.cost.estimate`), printed with ``progress``."""
    costs = _cost.estimate(models, data, metrics, n_boot, fraction, target=tname, seed=seed)
    if progress:
        tqdm.write(costs.before())
    return costs


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
                     "mean_rank": float(result.recommendation.set_index("source").loc[name, "mean_rank"])})
    ver = pd.DataFrame(rows)
    result.verification = ver
    gt = ver.set_index("source")[["test_auc"]].rename(columns={"test_auc": result.target})
    # τ_w reads "higher = predicted better": the negated mean rank
    sc = (-ver.set_index("source")[["mean_rank"]]).rename(columns={"mean_rank": result.target})
    result.verify_tau = tau_ci({"mean rank": sc}, gt, exclude_self=False).query("target != 'MEAN'").reset_index(drop=True)
