"""Weight-space comparisons: first-layer filter similarity, filter grids, per-layer L2
distance between two states."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..models import arch_of, spec, under

NORM_MARKERS = ("norm", "bn")


def _weight(obj, layer: str | None) -> torch.Tensor:
    if isinstance(obj, np.ndarray):
        obj = torch.as_tensor(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach().double().cpu()
    if isinstance(obj, nn.Module):
        if layer is None:
            layer = arch_of(obj).stem
        return obj.get_submodule(layer).weight.detach().double().cpu()
    raise TypeError(f"expected a model or a weight tensor, got {type(obj).__name__}")


def filter_similarity(a, b, layer: str | None = None) -> dict[str, float]:
    """Similarity of corresponding convolution filters of two models (default: the stem).

    For filters w_k^A, w_k^B (flattened ``in·kh·kw``): the mean cosine similarity
    (1/K) Σ_k cos(w_k^A, w_k^B), and the relative distance ‖W_A − W_B‖_F / ‖W_A‖_F.

    Args:
        a, b: models (their ``layer``, default the architecture table's stem) or weight
            tensors ``K×C×kh×kw`` of the same shape.
    """
    wa, wb = _weight(a, layer), _weight(b, layer)
    if wa.shape != wb.shape:
        raise ValueError(f"filters differ in shape: {tuple(wa.shape)} vs {tuple(wb.shape)}")
    fa, fb = wa.flatten(1), wb.flatten(1)
    cos = torch.nn.functional.cosine_similarity(fa, fb, dim=1)
    return {"mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
            "relative_distance": float((wa - wb).norm() / wa.norm())}


def filter_grid(weight, n: int = 36, channel: int | None = 0, layer: str | None = None) -> np.ndarray:
    """The first ``n`` filters as images for plotting, min–max normalised jointly (the
    study's filter plots): ``n×kh×kw`` for one input ``channel`` (grey) or ``n×kh×kw×3``
    with ``channel=None`` on an RGB stem."""
    w = _weight(weight, layer)[:n]
    w = (w - w.min()) / (w.max() - w.min()) if w.max() > w.min() else torch.zeros_like(w)
    if channel is None:
        if w.shape[1] != 3:
            raise ValueError("channel=None needs a 3-channel (RGB) first layer")
        return w.permute(0, 2, 3, 1).numpy()
    return w[:, channel].numpy()


def _state(obj) -> Mapping[str, torch.Tensor]:
    return obj.state_dict() if isinstance(obj, nn.Module) else obj


def _owners(obj, arch: str | None) -> Callable[[str], tuple[str, ...]]:
    """``layer -> parameter-owning prefixes`` from the architecture row (ResNet's ``relu`` →
    conv1, bn1); the layer itself when no row is known."""
    if arch is not None:
        return spec(arch).params_of
    if isinstance(obj, nn.Module) and "arch" in getattr(obj, "medtl", {}):
        return arch_of(obj).params_of
    return lambda layer: (layer,)


def l2_distance(init, final, layers: Sequence[str], arch: str | None = None) -> pd.DataFrame:
    """Per-layer weight change between two states (the feature-reuse study's L2, computed
    per layer as its definition says, not over the whole model):

        d_ℓ = mean over tensors t of ℓ (norm/BN tensors excluded) of ‖θ_final[t] − θ_init[t]‖₂ / numel(t).

    Args:
        init, final: models or state dicts with the same keys.
        layers: module paths (e.g. ``spec(arch).layers``); a parameter-free activation
            layer (ResNet's ``relu``) stands for the modules that produce it
            (``spec(arch).params_of``; ``arch`` defaults to the models' own).

    Returns:
        A table: layer, l2 (d_ℓ; NaN for a layer of normalisation tensors only, such as
        DenseNet's ``norm5``), tensors (count); ``attrs["total"]`` = mean over layers.
    """
    sa, sb = _state(init), _state(final)
    owners = _owners(final if isinstance(final, nn.Module) else init, arch)
    rows = []
    for layer in layers:
        prefixes = owners(layer)
        found = [k for k in sa if under(k, prefixes) and sa[k].is_floating_point()]
        if not found:
            raise ValueError(f"layer {layer!r} has no tensors in the state; check the name")
        keys = [k for k in found if not any(m in k.split(".")[-2] for m in NORM_MARKERS if len(k.split(".")) > 1)]
        d = [float((sb[k].double() - sa[k].double()).norm() / sa[k].numel()) for k in keys]
        rows.append({"layer": layer, "l2": float(np.mean(d)) if d else float("nan"), "tensors": len(keys)})
    table = pd.DataFrame(rows)
    table.attrs["total"] = float(table.l2.mean())
    return table
