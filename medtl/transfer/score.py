"""Score candidate sources on a target with every registered metric, extracting features
once per source and dispatching on each metric's kind (see :mod:`.registry`)."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageSet
from ..data.imageset import MULTI_LABEL
from ..runtime import said_once, seeded
from .registry import METRIC_TABLE, metric, metric_names
from .static import source_facts


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


#: How a candidate source is written (``medtl rank --sources``, ``score``'s sources).
SOURCE_GRAMMAR = ("ARCH (ImageNet weights: resnet18, densenet121, …), ARCH:random (random initialisation), "
                  "FOUNDATION (a foundation / medical-zoo model by name: rad-dino, biomedclip, xrv-densenet121-all, "
                  "…; `medtl models list --kind foundation`), FOUNDATION:PATH (its local copy), "
                  "ARCH:PATH (a checkpoint file for that architecture, SSL key layouts remapped), "
                  "ARCH:WEIGHTS (any weights name medtl.models.create accepts), source:NAME (a saved medtl "
                  "source), PATH.pt with its .json sidecar (a saved medtl source file)")


def load_candidate(spec) -> nn.Module:
    """Build one candidate from its written form (:data:`SOURCE_GRAMMAR`); a model passes
    through. Errors say what was not understood or could not be found.

    A candidate keeps the head its weights come with (ImageNet's 1000 classes, a saved
    source's or a checkpoint's own classes), because LEEP, N-LEEP and NCE read the source's
    predictions: a fresh random head would turn them into noise. Where the weights have no
    head (a self-supervised checkpoint) or there are no weights (``ARCH:random``), the
    builder's head is initialised with seed 0, so every call builds the same candidate."""
    from ..models import ARCHS, create, is_foundation, load_foundation, load_source

    if isinstance(spec, nn.Module):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise TypeError(f"a source must be a model or a written candidate ({SOURCE_GRAMMAR}), got "
                        f"{type(spec).__name__} {spec!r}")
    text = str(spec)
    if text.startswith("source:"):
        return load_source(text[len("source:"):])
    path = Path(text).expanduser()
    if path.suffix == ".pt" and path.is_file():
        if not path.with_suffix(".json").is_file():
            raise ValueError(f"{text}: a checkpoint without a medtl .json sidecar; write it as ARCH:{text} "
                             f"(e.g. resnet50:{text}) so medtl knows the architecture")
        return load_source(path)
    arch, _, weights = text.partition(":")
    if is_foundation(arch):  # its own weights (hub or local copy), a given copy, or random
        if weights == "random":
            return load_foundation(arch, pretrained=False, seed=0)
        return load_foundation(arch, path=weights or None, seed=0)
    if arch not in ARCHS:
        raise ValueError(f"{text!r} is not a candidate medtl understands: {arch!r} is no architecture of the table "
                         f"and no existing file. Write candidates as {SOURCE_GRAMMAR}")
    if weights == "random":
        model = create(arch, seed=0)
        model.medtl["init"] = "ri"
        return model
    if not weights:
        return create(arch, weights="imagenet", seed=0)
    wpath = Path(weights).expanduser()
    return create(arch, weights=str(wpath) if wpath.exists() else weights, seed=0)


def training_datasets(model: nn.Module) -> list[str]:
    """The datasets a saved medtl source was trained on, from its metadata
    (``source_datasets`` / ``source_flag`` / ``source_data``); empty when unrecorded."""
    meta = getattr(model, "medtl", {}).get("source") or {}
    names = list(meta.get("source_datasets") or [])
    for key in ("source_flag", "source_data"):
        value = meta.get(key)
        if value:
            names.append(str(value).split("/")[0].removesuffix("_64").removesuffix("_128").removesuffix("_224"))
    return list(dict.fromkeys(n for n in names if n))


def _self_sources(models: Mapping[str, nn.Module], target: str, exclude: Iterable[str]) -> set[str]:
    """Sources that are the target itself: named like it, trained on it (metadata), or
    listed in ``exclude``; a warning for sources that merely look like it."""
    out = set(exclude)
    for name, model in models.items():
        trained_on = training_datasets(model)
        if name == target or target in trained_on:
            out.add(name)
        elif not trained_on and len(name) >= 3 and (name.lower() in target.lower() or target.lower() in name.lower()):
            warnings.warn(f"source {name!r} looks like the target {target!r} but records no training data; if it was "
                          "trained on the target, pass exclude=[...] so it stays out of the zoo-level normalisation "
                          "and of the evaluation", stacklevel=3)
    return out


def select_metrics(metrics: Sequence[str] | None, multilabel: bool, tname: str) -> tuple[list[str], list[str]]:
    """(requested metrics, every metric to compute including combination inputs)."""
    wanted = list(metric_names(default_only=True) if metrics is None else metrics)
    if isinstance(metrics, str):
        raise TypeError("metrics must be a list of names, not one string")
    for m in wanted:
        metric(m)  # unknown names: a ValueError listing the valid ones
    kind = "multilabel" if multilabel else "single"
    unfit = [m for m in wanted if kind not in metric(m).labels]
    if unfit and metrics is not None:
        able = [n for n, m in METRIC_TABLE.items() if kind in m.labels]
        raise ValueError(f"target {tname!r} has {'multi-hot' if multilabel else 'single-class'} labels, which "
                         f"{unfit} cannot score; metrics for it: {', '.join(able) or 'none'}")
    if unfit:
        warnings.warn(f"target {tname!r} is multi-label: skipping {unfit}", stacklevel=3)
        wanted = [m for m in wanted if m not in unfit]
    need = list(wanted)
    for m in wanted:
        need += [r for r in metric(m).requires if r not in need]
    return wanted, need


def _call(m, fn_args: tuple, variant: str, seed: int, options: dict):
    kw = dict(options.get(m.name, {}))
    if "official" != variant and variant in m.variants:
        kw.setdefault("variant", variant)
    if m.needs_seed:
        kw.setdefault("seed", seed)
    return m.fn(*fn_args, **kw)


def score(sources: Mapping[str, nn.Module | str | os.PathLike], target, metrics: Sequence[str] | None = None,
          target_name: str | None = None, variant: str = "official", cache: bool | str | os.PathLike | None = None,
          device=None, batch_size: int = 256, reverse_lp_fu: bool = False, progress: bool = True,
          seed: int = 0, exclude: Iterable[str] = (), options: Mapping[str, dict] | None = None,
          errors: str = "raise", features: Mapping[str, Mapping[str, torch.Tensor]] | None = None) -> pd.DataFrame:
    """Score every source on a target with the chosen transferability metrics.

    Args:
        sources: ``{name: model or written candidate}``: a model (built by
            :func:`medtl.models.create` or :func:`medtl.models.load_foundation`), or any form of
            :data:`SOURCE_GRAMMAR` (``"resnet50"``, ``"rad-dino"``, ``"source:NAME"``, a
            ``.pt`` path, …; see :func:`load_candidate`). Each source's own normalisation
            and input settings are used for its features.
        target: the target's training images (an ImageSet or a :class:`medtl.data.Fold`,
            whose ``train`` is used).
        metrics: names from :func:`medtl.transfer.metrics` (default: every default metric).
        variant: ``"official"`` or ``"study"`` (the dataset-transferability study's
            deviations, for the metrics that have them).
        exclude: sources to treat as the target itself. A source named like the target or
            whose metadata records training on it is the target too: it is still scored,
            flagged ``self_source``, and left out of zoo-level normalisations (NCTI, LP×FU)
            and of :func:`correlate`.
        options: per-metric keyword arguments (``{"nleep": {"component_ratio": 3}}``);
            ``reverse_lp_fu`` is ``options["lp_fu"]["reverse"]`` (the cross-domain direction).
        cache: feature cache (see :func:`medtl.features.extract`).
        errors: ``"raise"`` (default) stops at the first metric or source that fails;
            ``"record"`` keeps going: the failed (source, metric) gets value NaN and its
            reason in an ``error`` column (a source whose features cannot be extracted gets
            a row per metric), so one undefined metric or unusable candidate does not end a
            ranking.
        features: activations already extracted for exactly these images, ``{source:
            {"penultimate": N×D, "logits": N×K}}`` (rows in the target's order; see
            :func:`feature_layers`): used instead of extracting them again (``rank``'s
            subsample replicates reuse the rows of the full-data activations).

    Returns:
        A tidy table: source, target, metric, value, seconds (the metric's own time;
        ``features`` rows give each source's extraction time), self_source (and ``error``
        with ``errors="record"``).
    """
    if errors not in ("raise", "record"):
        raise ValueError(f"errors must be 'raise' or 'record', got {errors!r}")
    data: ImageSet = getattr(target, "train", target)
    if not isinstance(data, ImageSet):
        raise TypeError(f"target must be an ImageSet or a Fold, got {type(target).__name__}")
    if not isinstance(sources, Mapping) or not sources:
        raise ValueError("sources must be a non-empty mapping {name: model or saved source}")
    tname = target_name or str(data.meta.get("flag") or data.name.split("/")[0])
    wanted, need = select_metrics(metrics, data.is_multilabel, tname)
    options = {k: dict(v) for k, v in (options or {}).items()}
    if reverse_lp_fu:
        options.setdefault("lp_fu", {})["reverse"] = True
    labels = data.labels.numpy()
    models = {name: load_candidate(src) for name, src in sources.items()}
    selfs = _self_sources(models, tname, exclude)
    rows, feats = [], {}
    run = {"variant": variant, "seed": seed, "options": options, "errors": errors, "device": device,
           "batch_size": batch_size, "cache": cache}
    given = dict(features or {})
    with said_once():
        for name, model in tqdm(models.items(), desc=f"scoring on {tname}", disable=not progress):
            rows += _one_source(name, model, data, labels, need, feats, given=given.get(name), **run)
        table = _across_sources(pd.DataFrame(rows), rows, models, feats, labels, need, selfs, variant, seed, options,
                                errors)
    table.insert(1, "target", tname)
    table["self_source"] = table.source.isin(selfs)
    if errors == "raise":
        table = table.drop(columns="error", errors="ignore")
    else:
        table["error"] = table["error"].where(table["error"].notna(), None)
    return table[table.metric.isin(set(wanted) | {"features"})].reset_index(drop=True)


def feature_layers(metrics: Iterable[str]) -> list[str]:
    """The activations ``metrics`` (and the metrics they combine) read: ``"penultimate"``
    for feature and zoo-level metrics, ``"logits"`` for metrics on the source head's
    probabilities."""
    need = list(metrics)
    for m in list(need):
        need += [r for r in metric(m).requires if r not in need]
    kinds = {metric(m).kind for m in need}
    return (["penultimate"] if kinds & {"features", "zoo"} else []) + (["logits"] if "probs" in kinds else [])


def _given_layers(name: str, given: Mapping[str, torch.Tensor], layers: list[str], n: int) -> dict:
    """The pre-extracted activations of ``layers`` for source ``name``, checked against the
    target's ``n`` images."""
    missing = [layer for layer in layers if layer not in given]
    if missing:
        raise ValueError(f"features given for source {name!r} lack {missing} (have {sorted(given)})")
    bad = {layer: tuple(given[layer].shape) for layer in layers if len(given[layer]) != n}
    if bad:
        raise ValueError(f"features given for source {name!r} do not match the target's {n} images: {bad}")
    return {layer: torch.as_tensor(given[layer]) for layer in layers}


def _one_source(name, model, data, labels, need, feats, variant, seed, options, errors, device, batch_size,
                cache, given=None) -> list[dict]:
    """The rows of one source: its feature extraction (``features`` row, time; or the
    activations ``given``) and every metric of ``need`` that reads one source; its
    penultimate features go into ``feats``."""
    from ..features import extract

    kinds = {metric(m).kind for m in need}
    t0 = time.perf_counter()
    layers = feature_layers(need)
    out = {}
    if layers and given is not None:
        out = _given_layers(name, given, layers, len(data))
    elif layers:
        def features_of():
            with seeded(seed):
                return extract(model, data, layers, batch_size=batch_size, device=device, cache=cache, progress=False)

        out, why = _attempt(errors, features_of)
        if why is not None:  # no features: every metric of this source fails with the same reason
            return [{"source": name, "metric": "features", "value": np.nan, "seconds": time.perf_counter() - t0,
                     "error": why}] + [{"source": name, "metric": n, "value": np.nan, "seconds": 0.0,
                                        "error": f"features could not be extracted ({why})"} for n in need]
    rows = [{"source": name, "metric": "features", "value": np.nan, "seconds": time.perf_counter() - t0}]
    if "penultimate" in out:
        feats[name] = out["penultimate"].double().numpy()
    inputs = {"features": (feats.get(name), labels), "model": (model, data),
              "static": (source_facts(model, name),) if "static" in kinds else None,
              "probs": (source_probs(out["logits"], model, variant), labels) if "logits" in out else None}
    untrained = getattr(model, "medtl", {}).get("head") == "untrained"
    for m in (metric(n) for n in need if metric(n).kind in inputs):
        t0 = time.perf_counter()
        opts = {**options, m.name: {**({"device": device} if m.kind == "model" else {}), **options.get(m.name, {})}}
        call = _no_head if m.kind == "probs" and untrained else _call
        value, why = _attempt(errors, call, m, inputs[m.kind], variant, seed, opts)
        rows.append({"source": name, "metric": m.name, "value": np.nan if why else float(value),
                     "seconds": time.perf_counter() - t0, "error": why})
    return rows


def _no_head(m, *_) -> float:
    raise ValueError(f"the candidate's weights carry no classification head (its head is untrained), and {m.name} "
                     "reads the source's own predictions: undefined for this candidate")


def _attempt(errors: str, fn, *args, **kw):
    """``(value, None)``; with ``errors="record"`` a failure gives ``(None, reason)``."""
    if errors == "raise":
        return fn(*args, **kw), None
    try:
        return fn(*args, **kw), None
    except Exception as err:  # recorded with its reason; the caller decides what to do
        return None, f"{type(err).__name__}: {err}"


def _across_sources(table, rows, models, feats, labels, need, selfs, variant, seed, options, errors) -> pd.DataFrame:
    """Add the metrics that read every candidate at once: zoo-level ones (NCTI) on the
    features of the candidates that are not the target, then combinations (LP×FU) over the
    candidates that have every input."""
    candidates = [s for s in models if s not in selfs and s in feats]
    for m in (metric(n) for n in need if metric(n).kind == "zoo"):
        t0 = time.perf_counter()
        values, why = _attempt(errors, _call, m, ({s: feats[s] for s in candidates}, labels), variant, seed, options)
        per = (time.perf_counter() - t0) / max(len(values or ()), 1)
        new = [{"source": s, "metric": m.name, "value": (values or {}).get(s, np.nan), "seconds": per,
                "error": why} for s in models if not _has(rows, s, m.name)]
        table = pd.concat([table, pd.DataFrame(new)], ignore_index=True)
    for m in (metric(n) for n in need if metric(n).kind == "combination"):
        wide = table[table.metric.isin(m.requires)].pivot(index="source", columns="metric", values="value")
        lacking = set(wide.index[wide.isna().any(axis=1)]) if errors == "record" else set()
        wide = wide.drop(index=sorted(lacking))
        kw = {**options.get(m.name, {}), "exclude": sorted(selfs & set(wide.index)) or None}
        if wide.empty:  # an input failed for every candidate: each row says which
            combined, why = {}, None
        else:
            combined, why = _attempt(errors, _call, m, tuple(wide[r] for r in m.requires), variant, seed,
                                     {m.name: kw})
        new = [{"source": s, "metric": m.name, "value": np.nan if why or s in lacking else float(combined[s]),
                "seconds": 0.0, "error": why or (f"needs {' and '.join(m.requires)}, which failed for this source"
                                                 if s in lacking else None)}
               for s in models if not _has(rows, s, m.name)]
        table = pd.concat([table, pd.DataFrame(new)], ignore_index=True)
    return table


def _has(rows: list[dict], source: str, name: str) -> bool:
    """Whether ``rows`` already hold a (failed) row for ``source`` and metric ``name``."""
    return any(r["source"] == source and r["metric"] == name for r in rows)
