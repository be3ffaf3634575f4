"""Activations of named layers through torchvision's ``create_feature_extractor``: the
architecture table's layers, ``"penultimate"`` (the head's input) and ``"logits"`` (the
model's output), pooled, batched, in inference mode, and cached on disk so that scoring
many metrics extracts once."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.feature_extraction import NodePathTracer, create_feature_extractor
from tqdm.auto import tqdm

from ._io import atomic_write_bytes
from .data import ImageSet, loader

POOLS = ("avg", "flatten", "none", "cls")


def _trace(model: nn.Module):
    was = model.training
    model.eval()
    try:
        tracer = NodePathTracer()
        graph = tracer.trace(model)
    finally:
        model.train(was)
    return graph, tracer.node_to_qualname


def resolve_nodes(model: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """Map requested layer names to the FX node names ``create_feature_extractor`` wants:
    module paths stay as they are (a container module means its last operation),
    ``"penultimate"`` becomes the input node of the table's ``feature_node`` and
    ``"logits"`` the model's output node. Unknown names raise a ValueError listing the
    valid ones."""
    from .models import spec

    graph, qual = _trace(model)
    names = list(qual.values())
    modules = {n for n, _ in model.named_modules() if n}
    out = {}
    for layer in layers:
        if layer == "logits":
            output = next(n for n in graph.nodes if n.op == "output")
            out[layer] = qual[output.args[0]]
        elif layer == "penultimate":
            info = getattr(model, "medtl", {})
            if "arch" not in info:
                raise ValueError("'penultimate' needs a model built by medtl.models.create")
            node = spec(info["arch"]).feature_node if "truncated" not in info else "head"
            first = next((n for n, q in qual.items() if q == node or q.startswith(node + ".")), None)
            if first is None:
                raise ValueError(f"the model has no node for its head {node!r}")
            arg = first.args[0]
            out[layer] = qual[arg] if arg in qual else arg.name
        elif layer in names or layer in modules:
            out[layer] = layer
        else:
            valid = sorted(modules)
            raise ValueError(f"layer {layer!r} is not in the model; valid layers: 'penultimate', 'logits', "
                             f"{', '.join(valid[:40])}{', …' if len(valid) > 40 else ''}")
    return out


def pool_activation(x: torch.Tensor, pool: str, channels_last: bool = False) -> torch.Tensor:
    """Pool one batch of activations: conv maps ``B×C×H×W`` (``channels_last``: ``B×H×W×C``)
    → ``"avg"`` global average ``B×C``, ``"flatten"`` ``B×(C·H·W)``; token sequences
    ``B×T×D`` → ``"avg"`` mean over tokens, ``"cls"`` the first token; ``"none"`` keeps
    the shape. 2-D activations pass through."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if x.ndim <= 2 or pool == "none":
        return x
    if x.ndim == 4:
        if channels_last:
            x = x.permute(0, 3, 1, 2)
        if pool == "avg":
            return x.mean((2, 3))
        if pool == "cls":
            raise ValueError("pool='cls' applies to token sequences, not conv maps")
        return x.flatten(1)
    if x.ndim == 3:
        if pool == "avg":
            return x.mean(1)
        if pool == "cls":
            return x[:, 0]
        return x.flatten(1)
    return x.flatten(1)


def _digest_tensor(h, t: torch.Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def fingerprint(model: nn.Module | None = None, data: ImageSet | None = None, **settings) -> str:
    """SHA-1 of a model's weights (and buffers), a dataset's images and labels, and settings."""
    h = hashlib.sha1()
    if model is not None:
        for k, v in model.state_dict().items():
            h.update(k.encode())
            _digest_tensor(h, v)
    if data is not None:
        _digest_tensor(h, data.images)
        _digest_tensor(h, data.labels)
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get("MEDTL_CACHE") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medtl" / "features"


@torch.inference_mode()
def extract(model: nn.Module, data: ImageSet, layers: str | Sequence[str] = ("penultimate",), pool: str = "avg",
            batch_size: int = 256, device=None, cache: bool | str | os.PathLike | None = None,
            progress: bool = True, **batch) -> dict[str, torch.Tensor]:
    """Activations of ``layers`` for every image of ``data``.

    Args:
        model: a torchvision model (built by :func:`medtl.models.create` for
            ``"penultimate"`` and for default batch settings).
        data: the images (no augmentation is applied).
        layers: module paths (the table's ``spec(arch).layers``), ``"penultimate"`` (input of
            the head, e.g. the 512-d GAP features of ResNet-18) and/or ``"logits"``.
        pool: ``"avg"`` (global average of conv maps / token mean), ``"flatten"``,
            ``"cls"`` (first token) or ``"none"``.
        cache: True (``$MEDTL_CACHE/medtl/features``) or a folder: activations are stored
            per (weights, data, layer, pool, image size, normalisation) and reused.
        batch: loader settings (normalize, image_size, channels); default from the model.

    Returns:
        ``{layer: float32 tensor N×…}`` on the CPU, rows in ``data``'s order.
    """
    from .train import _device, batch_settings

    layers = [layers] if isinstance(layers, str) else list(layers)
    settings = batch_settings(model, data, **batch)
    cache_dir = None
    if cache:
        cache_dir = default_cache_dir() if cache is True else Path(cache)
        cache_dir.mkdir(parents=True, exist_ok=True)
        key = fingerprint(model, data, pool=pool, **settings)
        files = {layer: cache_dir / f"{key}-{hashlib.sha1(layer.encode()).hexdigest()[:10]}.npy" for layer in layers}
        if all(f.is_file() for f in files.values()):
            return {layer: torch.from_numpy(np.load(f)) for layer, f in files.items()}
    nodes = resolve_nodes(model, layers)
    dev = _device(device)
    was = model.training
    model.eval()
    extractor = create_feature_extractor(model, return_nodes={node: node for node in set(nodes.values())})
    extractor.to(dev).eval()
    channels_last = getattr(model, "medtl", {}).get("arch") == "swin_t"
    chunks: dict[str, list[torch.Tensor]] = {node: [] for node in set(nodes.values())}
    batches = loader(data, batch_size=batch_size, device=dev, **settings)
    try:
        for x, _ in tqdm(batches, desc="features", disable=not progress or len(batches) < 4, leave=False):
            out = extractor(x)
            for node, act in out.items():
                cl = channels_last and node.startswith(("features", "norm"))
                chunks[node].append(pool_activation(act.float(), pool, cl).cpu())
    finally:
        model.train(was)
    result = {layer: torch.cat(chunks[node]) for layer, node in nodes.items()}
    for layer, value in result.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"activations of layer {layer!r} contain NaN or inf")
    if cache_dir is not None:
        for layer, value in result.items():
            buf = io.BytesIO()
            np.save(buf, value.numpy())
            atomic_write_bytes(files[layer], buf.getvalue())
    return result
