"""The two studies' layer-wise similarity protocols, as they compute them.

* **Study CCA** (hidden-representations study, spec §B.3): per layer and repeat, a seeded
  shuffle of the images, the first ``round(p / (h·w))`` of them (p = 10⁴, so ≈10⁴
  datapoints whatever the layer's resolution), every spatial position (or token) a
  datapoint, the same 64 random channels in both models, google/svcca's
  ``get_cca_similarity`` with ε = 1e-12 (:func:`~medtl.similarity.cca_google`), mean of the
  canonical correlations; the layer's score is the mean over 5 repeats. Pooled CCA (one row
  per image) stays available as the ``"svcca"``/``"cca"`` measures — with few images it
  reads ≈0.6 on independent data, which is why the study does not use it.
* **Study CKA** (feature-reuse study, spec §C.5.5): linear CKA with the unbiased HSIC
  estimator on the full un-pooled activations, computed per mini-batch of 64 images and
  averaged over the batches (the CKA values, not the HSIC terms), in a seeded image order.

Both come as pure functions on activation tensors (:func:`cca_study`, :func:`cka_study`)
and as model-level routines that stream the activations (:func:`layerwise_cca_study`,
:func:`cka_study_matrix`) and give the same numbers on the same images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..data import ImageSet
from ..features import iter_activations
from .measures import (
    Array,
    cca_google,
    cka_gram,
    minibatch_cka,
    register_measure,
    warn_few_samples,
)
from .probes import layer_names

#: The hidden-representations study's settings (spec §B.3).
STUDY_CCA = {"n_channels": 64, "points": 10_000, "repeats": 5, "epsilon": 1e-12}
#: The feature-reuse study's CKA mini-batch (spec §C.5.5).
STUDY_CKA_BATCH = 64


def _acts(x: Array, name: str) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim not in (2, 3, 4):
        raise ValueError(f"{name} must be N×C, N×T×D (tokens) or N×C×H×W activations, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} holds no images")
    return t.detach().to(torch.float64)


def _positions(shape: Sequence[int]) -> int:
    """Datapoints per image: H·W for conv maps ``N×C×H×W``, T for tokens ``N×T×D``, 1 for ``N×C``."""
    return int(np.prod(shape[2:])) if len(shape) == 4 else int(shape[1]) if len(shape) == 3 else 1


def _channels(shape: Sequence[int]) -> int:
    return int(shape[1]) if len(shape) in (2, 4) else int(shape[2])


def _points(act: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows = datapoints (every position / token), columns = the chosen channels."""
    if act.ndim == 4:
        act = act.permute(0, 2, 3, 1).reshape(-1, act.shape[1])
    elif act.ndim == 3:
        act = act.reshape(-1, act.shape[2])
    return act[:, idx].to(torch.float64)


def cca_plan(n_images: int, shape: Sequence[int], n_channels: int = 64, points: int = 10_000, repeats: int = 5,
             seed: int = 0) -> list[dict]:
    """The images and channels of each repeat of the study CCA for one layer.

    Repeat r uses seed ``seed + r``: the images are the first ``max(1, round(points /
    positions))`` of ``torch.randperm(n_images)`` under that seed (all images when there are
    fewer, as the study's generator), the channels the first ``n_channels`` of
    ``torch.randperm(C)`` under the same seed (all C when C ≤ n_channels). ``shape`` is one
    image's activation shape with a leading batch axis (``1×C×H×W``, ``1×T×D`` or ``1×C``).
    Returns ``[{"seed", "images": LongTensor, "channels": LongTensor}]``."""
    for name, v in (("n_channels", n_channels), ("points", points), ("repeats", repeats)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    take = max(1, round(points / _positions(shape)))
    plans = []
    for r in range(repeats):
        s = int(seed) + r
        images = torch.randperm(n_images, generator=torch.Generator().manual_seed(s))[:take]
        channels = torch.randperm(_channels(shape), generator=torch.Generator().manual_seed(s))[:n_channels]
        plans.append({"seed": s, "images": images, "channels": channels})
    return plans


def _cca_repeat(a: torch.Tensor, b: torch.Tensor, channels: torch.Tensor, epsilon: float) -> tuple[float, int]:
    x, y = _points(a, channels), _points(b, channels)
    warn_few_samples(len(x), x.shape[1], "study CCA")
    return float(cca_google(x, y, epsilon).mean()), len(x)


def cca_study(a: Array, b: Array, n_channels: int = 64, points: int = 10_000, repeats: int = 5, seed: int = 0,
              epsilon: float = 1e-12) -> dict:
    """Mean CCA of one layer exactly as the hidden-representations study (spec §B.3):

        score = (1/R) Σ_r mean_i ρ_i(X_r, Y_r),

    with X_r, Y_r the activations of the repeat's images (:func:`cca_plan`) reshaped so that
    every spatial position (or token) is a datapoint and each of the repeat's ``n_channels``
    random channels (the same in both) a neuron, and ρ the canonical correlations of
    google/svcca's ``get_cca_similarity`` (:func:`~medtl.similarity.cca_google`, ε = 1e-12).
    Plain mean CCA: no SVD pre-reduction, no projection weighting. On independent
    activations with ≈10⁴ points it reads ≈0.05 (64 channels).

    Args:
        a, b: the two models' activations on the same images, ``N×C×H×W`` (conv), ``N×T×D``
            (tokens) or ``N×C``; the same channel count.

    Returns:
        ``{"value", "repeats": [score per repeat], "seeds", "n_images", "n_points",
        "n_channels"}``.
    """
    a, b = _acts(a, "a"), _acts(b, "b")
    if a.shape[0] != b.shape[0] or _channels(a.shape) != _channels(b.shape):
        raise ValueError(f"study CCA needs the same images and channel count in both, got shapes {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    values, n_points = [], 0
    plans = cca_plan(len(a), (1, *a.shape[1:]), n_channels, points, repeats, seed)
    for plan in plans:
        v, n_points = _cca_repeat(a[plan["images"]], b[plan["images"]], plan["channels"], epsilon)
        values.append(v)
    return {"value": float(np.mean(values)), "repeats": values, "seeds": [p["seed"] for p in plans],
            "n_images": len(plans[0]["images"]), "n_points": n_points, "n_channels": len(plans[0]["channels"])}


def _shapes(model: nn.Module, data: ImageSet, layers: list[str], **batch) -> dict[str, tuple[int, ...]]:
    out = next(iter_activations(model, data.subset([0]), layers, pool="none", batch_size=1, **batch))
    return {layer: tuple(v.shape) for layer, v in out.items()}


def _gather(model: nn.Module, data: ImageSet, order: torch.Tensor, wants: dict[str, dict], chunk: int,
            **batch) -> dict[str, torch.Tensor]:
    """The activations of ``order``'s images, streamed in chunks, each layer keeping only the
    first ``wants[layer]["n"]`` images and its ``channels`` (memory ≈ points × channels)."""
    kept: dict[str, list[torch.Tensor]] = {layer: [] for layer in wants}
    seen = 0
    sub = data.subset(order)
    for out in iter_activations(model, sub, list(wants), pool="none", batch_size=chunk, **batch):
        for layer, act in out.items():
            need = wants[layer]["n"] - seen
            if need > 0:
                c = wants[layer]["channels"]
                kept[layer].append(act[:need].index_select(1 if act.ndim in (2, 4) else 2, c))
        seen += len(next(iter(out.values())))
        if all(seen >= w["n"] for w in wants.values()):
            break
    return {layer: torch.cat(parts) for layer, parts in kept.items()}


def layerwise_cca_study(model_a: nn.Module, model_b: nn.Module, data: ImageSet, layers: Sequence[str] | None = None,
                        granularity: str = "stage", n_channels: int = 64, points: int = 10_000, repeats: int = 5,
                        seed: int = 0, epsilon: float = 1e-12, chunk: int = 256, progress: bool = False,
                        **batch) -> pd.DataFrame:
    """The study CCA (:func:`cca_study`) of every layer of two models of the same
    architecture on ``data`` (the study's stimulus: the target's held-out images), with the
    architecture table's layers at ``granularity`` by default (ResNet stage: conv1_relu and
    the four stage outputs, the study's five). Only the images and channels each repeat
    uses are extracted, chunk by chunk, so memory stays ≈ points × channels per layer;
    :func:`cca_study` on the full activations gives the same numbers.

    Returns a tidy table: layer, depth, repeat, seed, value (mean CCA of the repeat),
    n_images, n_points, n_channels, measure ``"cca_study"``; the layer score is the mean of
    ``value`` over repeats (:func:`summarise_repeats`)."""
    names = layer_names(model_b, layers, granularity)
    shapes = _shapes(model_a, data, names, **batch)
    other = _shapes(model_b, data, names, **batch)
    for layer in names:
        if _channels(shapes[layer]) != _channels(other[layer]):
            raise ValueError(f"layer {layer!r} has {_channels(shapes[layer])} channels in model_a and "
                             f"{_channels(other[layer])} in model_b; the study CCA compares the same channels")
    plans = {layer: cca_plan(len(data), shapes[layer], n_channels, points, repeats, seed) for layer in names}
    rows = []
    for r in tqdm(range(repeats), desc="study CCA", disable=not progress, leave=False):
        longest = max(len(plans[layer][r]["images"]) for layer in names)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(int(seed) + r))[:longest]
        wants = {layer: {"n": len(plans[layer][r]["images"]), "channels": plans[layer][r]["channels"]}
                 for layer in names}
        acts_a = _gather(model_a, data, order, wants, chunk, **batch)
        acts_b = _gather(model_b, data, order, wants, chunk, **batch)
        for depth, layer in enumerate(names):
            keep = torch.arange(len(plans[layer][r]["channels"]))
            value, n_points = _cca_repeat(acts_a[layer], acts_b[layer], keep, epsilon)
            rows.append({"layer": layer, "depth": depth, "repeat": r, "seed": int(seed) + r, "value": value,
                         "n_images": wants[layer]["n"], "n_points": n_points, "n_channels": len(keep),
                         "measure": "cca_study"})
    return pd.DataFrame(rows)


def summarise_repeats(table: pd.DataFrame, by: Sequence[str] = ("layer", "depth", "measure")) -> pd.DataFrame:
    """Layer scores from a repeat-level table: mean, sd and count of ``value`` per layer."""
    by = [c for c in by if c in table.columns]
    out = table.groupby(by, sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"mean": "value", "std": "sd", "count": "repeats"})


def cka_study(x: Array, y: Array, batch_size: int = STUDY_CKA_BATCH) -> float:
    """The feature-reuse study's CKA of one layer pair (spec §C.5.5): linear CKA with the
    unbiased HSIC estimator (Song et al. 2012; debiased CKA, Kornblith et al. 2019) of the
    full un-pooled activations, per consecutive mini-batch of ``batch_size`` rows, averaged
    over the batches:

        CKA_study = (1/B) Σ_b ⟨K̃_b, L̃_b⟩_F / (‖K̃_b‖_F ‖L̃_b‖_F),  K_b = X_b X_bᵀ, L_b = Y_b Y_bᵀ,

    K̃ the unbiased centring. The average is over CKA values, not HSIC terms (not Nguyen et
    al.'s minibatch CKA, ``minibatch_cka(average="hsic")``). With one batch (``batch_size ≥
    N``) it is the debiased CKA. A last batch of fewer than 4 rows cannot form the unbiased
    estimator and is left out (the study's last batch is ≥ 4 rows in practice).

    Shapes: X ``N×…``, Y ``N×…`` (flattened per row)."""
    xt, yt = _acts(x, "x").flatten(1), _acts(y, "y").flatten(1)
    return minibatch_cka(xt, yt, batch_size=batch_size, average="cka")


def cka_study_matrix(model_a: nn.Module, model_b: nn.Module, data: ImageSet, layers_a: Sequence[str] | None = None,
                     layers_b: Sequence[str] | None = None, pairs: str = "diagonal", batch_size: int = STUDY_CKA_BATCH,
                     seed: int | None = 0, granularity: str = "block", progress: bool = False,
                     **batch) -> pd.DataFrame:
    """The study CKA (:func:`cka_study`) between layers of two models on ``data``,
    streamed: images in a seeded order (``seed=None``: ``data``'s order), one mini-batch of
    ``batch_size`` at a time through both models, Gram matrices of the flattened
    activations in float64, unbiased CKA per batch and layer pair, averaged over batches.
    ``pairs="diagonal"`` compares layer i with layer i (init ↔ final, WT ↔ ST);
    ``"all"`` gives the study's depth × depth matrix. Default layers: the table's
    ``"block"`` granularity (the feature-reuse study's target modules).

    Returns a tidy table: layer_a, layer_b, depth_a, depth_b, measure ``"cka_study"``,
    value, n_batches."""
    if pairs not in ("diagonal", "all"):
        raise ValueError(f"pairs must be 'diagonal' or 'all', got {pairs!r}")
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 4:
        raise ValueError(f"batch_size must be an integer >= 4 (the unbiased estimator), got {batch_size!r}")
    la = layer_names(model_a, layers_a, granularity)
    lb = la if layers_b is None else layer_names(model_b, layers_b, granularity)
    if pairs == "diagonal" and len(la) != len(lb):
        raise ValueError(f"pairs='diagonal' needs as many layers in both models, got {len(la)} and {len(lb)}")
    grid = list(zip(range(len(la)), range(len(lb)))) if pairs == "diagonal" else \
        [(i, j) for i in range(len(la)) for j in range(len(lb))]
    order = torch.arange(len(data)) if seed is None else torch.randperm(
        len(data), generator=torch.Generator().manual_seed(int(seed)))
    sub = data.subset(order)
    sums, used = np.zeros(len(grid)), 0
    stream_a = iter_activations(model_a, sub, la, pool="flatten", batch_size=batch_size, **batch)
    stream_b = iter_activations(model_b, sub, lb, pool="flatten", batch_size=batch_size, **batch)
    n_batches = -(-len(sub) // batch_size)
    for fa, fb in tqdm(zip(stream_a, stream_b), total=n_batches, desc="study CKA", disable=not progress, leave=False):
        if len(next(iter(fa.values()))) < 4:
            continue
        ka = {layer: (lambda t: t @ t.T)(v.to(torch.float64)) for layer, v in fa.items()}
        kb = {layer: (lambda t: t @ t.T)(v.to(torch.float64)) for layer, v in fb.items()}
        sums += [cka_gram(ka[la[i]], kb[lb[j]], debiased=True) for i, j in grid]
        used += 1
    if used == 0:
        raise ValueError(f"study CKA needs a batch of at least 4 images; {data.name!r} has {len(data)}")
    return pd.DataFrame([{"layer_a": la[i], "layer_b": lb[j], "depth_a": i, "depth_b": j, "measure": "cka_study",
                          "value": float(sums[k] / used), "n_batches": used} for k, (i, j) in enumerate(grid)])


register_measure("cca_study", input="activations", pool="none", label="mean CCA (study protocol)",
                 citation="Raghu et al. 2017; Juodelyte et al., TMLR 2023",
                 description="spatial datapoints, 64 random channels, ≈10⁴ points, 5 seeded repeats (google/svcca)")(
    lambda a, b: cca_study(a, b)["value"])
register_measure("cka_study", pool="flatten", label="CKA (study protocol)", citation="Matsoukas et al., CVPR 2022",
                 description="unbiased linear CKA of un-pooled activations averaged over batches of 64")(
    lambda x, y: cka_study(x, y))
