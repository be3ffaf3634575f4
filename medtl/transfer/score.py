"""Score candidate sources on a target with every metric, extracting features once."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageSet
from ..data.imageset import MULTI_LABEL
from . import metrics as mt
from .fu import fu, lp_fu

#: Metrics that :func:`score` knows, in a sensible reporting order.
METRICS: tuple[str, ...] = ("leep", "nleep", "logme", "parc", "sfda", "ncti", "hscore", "lp", "fu", "lp_fu")
_FEATURE_METRICS = {"nleep": mt.nleep, "logme": mt.logme, "parc": mt.parc, "sfda": mt.sfda, "hscore": mt.hscore,
                    "lp": mt.lp}


def source_probs(logits: torch.Tensor, model: nn.Module, variant: str = "official") -> np.ndarray:
    """Source-head probabilities for LEEP: softmax for single-label heads; for heads trained
    with sigmoids (multi-label sources such as the leave-target-out union) the sigmoid
    outputs normalised to sum 1 — or, with ``variant="study"``, a softmax as the study did."""
    src = getattr(model, "medtl", {}).get("source", {}) or {}
    multilabel = src.get("task") == MULTI_LABEL
    z = logits.double()
    if multilabel and variant == "official":
        s = torch.sigmoid(z)
        return (s / s.sum(1, keepdim=True)).numpy()
    return torch.softmax(z, 1).numpy()


def _load(source) -> nn.Module:
    if isinstance(source, nn.Module):
        return source
    from ..models import load_source

    name = str(source)
    return load_source(name[len("source:"):] if name.startswith("source:") else name)


def score(sources: Mapping[str, nn.Module | str | os.PathLike], target, metrics: Sequence[str] = METRICS,
          target_name: str | None = None, variant: str = "official", cache: bool | str | os.PathLike | None = None,
          device=None, batch_size: int = 256, reverse_lp_fu: bool = False, progress: bool = True,
          seed: int = 0) -> pd.DataFrame:
    """Score every source on a target with the chosen transferability metrics.

    Args:
        sources: ``{name: model}`` (built by :func:`medtl.models.create`, or a saved medtl
            source as ``"source:NAME"`` / a ``.pt`` path). Each source's own normalisation
            and input settings are used for its features.
        target: the target's training images (an ImageSet or a :class:`medtl.data.Fold`,
            whose ``train`` is used); labels must be single-label ``0..C-1``.
        metrics: any of :data:`METRICS`; ``ncti`` and ``lp_fu`` are normalised across the
            sources (a source named like the target is left out of that normalisation).
        variant: ``"official"`` or ``"study"`` (the dataset-transferability study's N-LEEP
            without log, NCTI adding the VC term, softmax on sigmoid heads, FU normalised
            over all sources).
        cache: feature cache (see :func:`medtl.features.extract`).
        reverse_lp_fu: the cross-domain direction of LP×FU.

    Returns:
        A tidy table: source, target, metric, value, seconds (the metric's own time;
        ``features`` rows give each source's extraction time).
    """
    from ..features import extract

    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {', '.join(METRICS)}")
    data: ImageSet = getattr(target, "train", target)
    tname = target_name or str(data.meta.get("flag") or data.name.split("/")[0])
    if data.is_multilabel:
        raise ValueError(f"target {tname!r} is multi-label; transferability metrics need single-label targets")
    labels = data.labels.numpy()
    rows, feats = [], {}
    need = set(metrics)
    if "lp_fu" in need:
        need |= {"lp", "fu"}
    bar = tqdm(list(sources.items()), desc=f"scoring on {tname}", disable=not progress)
    for name, src in bar:
        model = _load(src)
        t0 = time.perf_counter()
        layers = ["penultimate"] + (["logits"] if "leep" in need else [])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            out = extract(model, data, layers, batch_size=batch_size, device=device, cache=cache, progress=False)
        rows.append({"source": name, "target": tname, "metric": "features", "value": np.nan,
                     "seconds": time.perf_counter() - t0})
        x = out["penultimate"].double().numpy()
        feats[name] = x
        for metric in [m for m in METRICS if m in need and m not in ("ncti", "lp_fu")]:
            bar.set_postfix_str(metric)
            t0 = time.perf_counter()
            if metric == "leep":
                value = mt.leep(source_probs(out["logits"], model, variant), labels)
            elif metric == "fu":
                value = fu(model, data, device=device)
            elif metric == "nleep":
                value = mt.nleep(x, labels, seed=seed, variant=variant)
            else:
                value = _FEATURE_METRICS[metric](x, labels)
            rows.append({"source": name, "target": tname, "metric": metric, "value": float(value),
                         "seconds": time.perf_counter() - t0})
    table = pd.DataFrame(rows)
    candidates = [s for s in sources if s != tname]
    if "ncti" in need:
        t0 = time.perf_counter()
        values = mt.ncti({s: feats[s] for s in candidates}, labels, variant=variant)
        per = (time.perf_counter() - t0) / max(len(values), 1)
        extra = [{"source": s, "target": tname, "metric": "ncti", "value": values.get(s, np.nan), "seconds": per}
                 for s in sources]
        table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    if "lp_fu" in need:
        wide = table[table.metric.isin(["lp", "fu"])].pivot(index="source", columns="metric", values="value")
        combined = lp_fu(wide["lp"], wide["fu"], reverse=reverse_lp_fu,
                         exclude=tname if tname in wide.index else None, variant=variant)
        extra = [{"source": s, "target": tname, "metric": "lp_fu", "value": float(combined[s]), "seconds": 0.0}
                 for s in sources]
        table = pd.concat([table, pd.DataFrame(extra)], ignore_index=True)
    keep = set(metrics) | {"features"}
    return table[table.metric.isin(keep)].reset_index(drop=True)
