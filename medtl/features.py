"""Activations of named layers through torchvision's ``create_feature_extractor``: the
architecture table's layers, ``"penultimate"`` (the head's input) and ``"logits"`` (the
model's output), pooled, batched, in inference mode, and cached on disk so that scoring
many metrics extracts once. :func:`predict` gives a model's outputs on a dataset."""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from . import paths, runtime
from ._io import atomic_write_bytes
from .data import ImageSet, loader
from .runtime import autocast, batch_settings, check_input_size

POOLS = ("avg", "flatten", "none", "cls", "patches", "all")


#: FX traces and feature extractors of live models (tracing a ResNet-18 costs ~60 ms, and the
#: study CCA and CKA, the probes and ``rank`` read the same model's layers many times): per
#: model, valid while :func:`_structure` is unchanged.
_FX: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _structure(model: nn.Module) -> tuple:
    """What a model's trace depends on: each submodule, parameter and buffer object, by name
    and identity. An extractor shares the model's leaf modules and tensors, so training,
    ``load_state_dict`` and ``.to()`` (in place) reach it; replacing a module or a tensor
    (head surgery, re-initialisation by assignment) changes this and forces a new trace."""
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return (tuple((n, id(m), type(m)) for n, m in model.named_modules(remove_duplicate=False)),
            tuple((n, id(t)) for n, t in tensors))


def _fx_entry(model: nn.Module) -> dict:
    """The model's cache entry, emptied when its structure changed. It holds the objects the
    structure names, so no identity in it can be reused by a new object while it lives."""
    structure = _structure(model)
    entry = _FX.get(model)
    if entry is None or entry["structure"] != structure:
        alive = [m for m in model.modules() if m is not model]  # never the model: the key must stay weak
        entry = {"structure": structure, "alive": [*alive, *model.parameters(), *model.buffers()]}
        _FX[model] = entry
    return entry


def _trace(model: nn.Module):
    entry = _fx_entry(model)
    if "trace" not in entry:
        from torchvision.models.feature_extraction import NodePathTracer  # torchvision on first use

        was = model.training
        model.eval()
        try:
            tracer = NodePathTracer()
            graph = tracer.trace(model)
        finally:
            model.train(was)
        entry["trace"] = graph, tracer.node_to_qualname
    return entry["trace"]


def _fx_extractor(model: nn.Module, nodes) -> nn.Module:
    """torchvision's ``create_feature_extractor`` for ``nodes``, built once per model and
    node set (see :data:`_FX`)."""
    entry = _fx_entry(model)
    key = frozenset(nodes)
    extractors = entry.setdefault("extractors", {})
    if key not in extractors:
        from torchvision.models.feature_extraction import create_feature_extractor

        extractors[key] = create_feature_extractor(model, return_nodes={node: node for node in key})
    return extractors[key]


def _feature_node(model: nn.Module) -> str:
    from .models import spec

    info = getattr(model, "medtl", {})
    if "arch" not in info:
        raise ValueError("'penultimate' needs a model built by medtl.models.create (it reads the head from "
                         "model.medtl['arch'])")
    return "head" if "truncated" in info else spec(info["arch"]).feature_node


def _hooked(model: nn.Module) -> bool:
    """Whether activations are read with forward hooks instead of FX (models wrapping a
    library model FX cannot trace, such as :class:`medtl.models.FoundationModel`)."""
    return getattr(model, "medtl", {}).get("extract") == "hooks"


class HookExtractor:
    """``create_feature_extractor``'s interface by forward hooks: calling it runs the model
    once and returns ``{node: activation}`` for module paths (the module's output; the first
    element of a tuple), ``"PATH:input"`` (the module's input) and ``"logits"``."""

    def __init__(self, model: nn.Module, nodes) -> None:
        self.model, self.nodes = model, sorted(set(nodes))

    def to(self, device) -> HookExtractor:
        self.model.to(device)
        return self

    def eval(self) -> HookExtractor:
        self.model.eval()
        return self

    def __call__(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        handles = []

        def first(value):
            return value[0] if isinstance(value, (tuple, list)) else value

        for node in self.nodes:
            path, _, kind = node.partition(":")
            if node == "logits":
                continue
            module = self.model.get_submodule(path)
            if kind == "input":
                handles.append(module.register_forward_pre_hook(lambda m, a, n=node: out.__setitem__(n, a[0])))
            else:
                handles.append(module.register_forward_hook(lambda m, a, o, n=node: out.__setitem__(n, first(o))))
        try:
            y = self.model(x)
        finally:
            for h in handles:
                h.remove()
        if "logits" in self.nodes:
            out["logits"] = y
        return out


def resolve_nodes(model: nn.Module, layers: Sequence[str]) -> dict[str, str]:
    """Map requested layer names to the FX node names ``create_feature_extractor`` wants:
    module paths stay as they are (a container module means its last operation),
    ``"penultimate"`` becomes the input node of the table's ``feature_node`` and
    ``"logits"`` the model's output node. Unknown names raise a ValueError listing the
    valid ones. Models read by hooks (:func:`_hooked`) get :class:`HookExtractor` nodes."""
    modules = {n for n, _ in model.named_modules() if n}
    if _hooked(model):  # forward hooks: module paths, "PATH:input" and the model's output
        known, listed = modules, list(getattr(model, "medtl", {}).get("layers", ())) or sorted(modules)
        special = {"logits": lambda: "logits", "penultimate": lambda: f"{_feature_node(model)}:input"}
    else:
        graph, qual = _trace(model)
        known, listed = set(qual.values()) | modules, sorted(modules)
        special = {"logits": lambda: qual[next(n for n in graph.nodes if n.op == "output").args[0]],
                   "penultimate": lambda: _fx_head_input(model, qual)}
    out = {}
    for layer in layers:
        if not isinstance(layer, str):
            raise TypeError(f"layer names must be strings, got {layer!r}")
        if layer in special:
            out[layer] = special[layer]()
        elif layer in known:
            out[layer] = layer
        else:
            raise ValueError(f"layer {layer!r} is not in the model; valid layers: 'penultimate', 'logits', "
                             f"{', '.join(listed[:40])}{', …' if len(listed) > 40 else ''}")
    return out


def _fx_head_input(model: nn.Module, qual: dict) -> str:
    """The FX node feeding the table's ``feature_node`` (the penultimate activations)."""
    node = _feature_node(model)
    first = next((n for n, q in qual.items() if q == node or q.startswith(node + ".")), None)
    if first is None:
        raise ValueError(f"the model has no node for its head {node!r}")
    arg = first.args[0]
    return qual[arg] if arg in qual else arg.name


def pool_activation(x: torch.Tensor, pool: str, channels_last: bool = False) -> torch.Tensor:
    """Pool one batch of activations: conv maps ``B×C×H×W`` (``channels_last``: ``B×H×W×C``)
    → ``"avg"`` global average ``B×C``, ``"flatten"`` ``B×(C·H·W)``, ``"none"`` ``B×C×H×W``;
    token sequences ``B×T×D`` (token 0 the class token) → ``"avg"`` mean over all tokens,
    ``"cls"`` the first token, ``"patches"`` the mean of the others, ``"all"`` the
    concatenation [cls, mean of patches] (``B×2D``, the feature-reuse study's token modes;
    on conv maps they mean the global average, the study's rule for CNN layers). 2-D
    activations pass through."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    if x.ndim == 4 and channels_last:
        x = x.permute(0, 3, 1, 2)
    if x.ndim <= 2 or pool == "none":
        return x
    if x.ndim == 4:
        if pool == "avg":
            return x.mean((2, 3))
        if pool == "flatten":
            return x.flatten(1)
        return x.mean((2, 3))  # token modes on a conv map: its global average (the study's CNN rule)
    if x.ndim == 3:
        modes = {"avg": lambda: x.mean(1), "cls": lambda: x[:, 0], "patches": lambda: x[:, 1:].mean(1),
                 "all": lambda: torch.cat([x[:, 0], x[:, 1:].mean(1)], 1), "flatten": lambda: x.flatten(1)}
        return modes[pool]()
    return x.flatten(1)


def fingerprint(model: nn.Module | None = None, data: ImageSet | None = None, **settings) -> str:
    """SHA-1 of a model's weights (and buffers), a dataset's fingerprint, and settings."""
    h = hashlib.sha1()
    if model is not None:
        for k, v in model.state_dict().items():
            t = v.detach().cpu().contiguous()
            h.update(k.encode())
            h.update(str((tuple(t.shape), str(t.dtype))).encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    if data is not None:
        h.update(data.fingerprint().encode())
    h.update(repr(sorted(settings.items())).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    """``<medtl cache>/features`` (see :mod:`medtl.paths`)."""
    return paths.cache_dir("features")


def _channels_last_prefixes(model: nn.Module) -> tuple[str, ...]:
    from .models import spec

    info = getattr(model, "medtl", {})
    return spec(info["arch"]).channels_last if "arch" in info and "truncated" not in info else ()


def _read_cache(files: dict[str, Path]) -> dict[str, torch.Tensor] | None:
    if not all(f.is_file() for f in files.values()):
        return None
    out = {}
    for layer, f in files.items():
        try:
            out[layer] = torch.from_numpy(np.load(f, allow_pickle=False))
        except (OSError, ValueError, EOFError) as err:
            warnings.warn(f"feature cache file {f} is unreadable ({err}); extracting again", stacklevel=3)
            return None
    return out


def _check_data(data: ImageSet, what: str = "data") -> None:
    if not isinstance(data, ImageSet):
        raise TypeError(f"{what} must be a medtl ImageSet, got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"{what} {data.name!r} is empty: no images to run the model on")


def iter_activations(model: nn.Module, data: ImageSet, layers: Sequence[str], pool: str = "avg",
                     batch_size: int = 256, device=None, progress: bool = False,
                     **batch) -> Iterator[dict[str, torch.Tensor]]:
    """Activations of ``layers`` batch by batch: yields ``{layer: float32 CPU tensor B×…}``
    for consecutive batches of ``data`` (its order; no augmentation), pooled as
    :func:`pool_activation`. The model is in eval mode while the generator runs and back in
    its previous mode when it ends or is closed — so a caller may stop early (the study CCA
    stops once every layer has its images) and memory holds one batch at a time (the study
    CKA's un-pooled activations)."""
    _check_data(data)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer")
    settings = batch_settings(model, data, **batch)
    check_input_size(model, settings["image_size"])
    nodes = resolve_nodes(model, layers)
    dev = runtime.device(device)
    was = model.training
    model.eval()
    try:
        if _hooked(model):
            extractor = HookExtractor(model, nodes.values())
        else:
            extractor = _fx_extractor(model, nodes.values())
        extractor.to(dev).eval()
        last = _channels_last_prefixes(model)
        batches = loader(data, batch_size=batch_size, device=dev, **settings)
        for x, _ in tqdm(batches, desc="features", disable=not progress or len(batches) < 4, leave=False):
            with torch.inference_mode():
                out = extractor(x)
                pooled = {node: pool_activation(act.float(), pool, bool(last) and node.startswith(last)).cpu()
                          for node, act in out.items()}
            yield {layer: pooled[node] for layer, node in nodes.items()}
    finally:
        model.train(was)


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
        pool: see :func:`pool_activation` (``"avg"``, ``"flatten"``, ``"cls"``,
            ``"patches"``, ``"all"``, ``"none"``).
        cache: True (``<medtl cache>/features``) or a folder: activations are stored
            per (weights, data, layer, pool, image size, normalisation) and reused.
        batch: loader settings (normalize, image_size, channels); default from the model.

    Returns:
        ``{layer: float32 tensor N×…}`` on the CPU, rows in ``data``'s order.
    """
    _check_data(data)
    layers = [layers] if isinstance(layers, str) else list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer")
    files = None
    if cache:
        settings = batch_settings(model, data, **batch)
        cache_dir = default_cache_dir() if cache is True else Path(cache)
        key = fingerprint(model, data, pool=pool, **settings)
        files = {layer: cache_dir / f"{key}-{hashlib.sha1(layer.encode()).hexdigest()[:10]}.npy" for layer in layers}
        cached = _read_cache(files)
        if cached is not None:
            return cached
    chunks: dict[str, list[torch.Tensor]] = {layer: [] for layer in layers}
    for out in iter_activations(model, data, layers, pool, batch_size, device, progress, **batch):
        for layer, act in out.items():
            chunks[layer].append(act)
    result = {layer: torch.cat(parts) for layer, parts in chunks.items()}
    for layer, value in result.items():
        if not torch.isfinite(value).all():
            raise ValueError(f"activations of layer {layer!r} contain NaN or inf")
    if files is not None:
        for layer, value in result.items():
            buf = io.BytesIO()
            np.save(buf, value.numpy())
            atomic_write_bytes(files[layer], buf.getvalue())
    return result


def ten_crop_probs(model: nn.Module, x: torch.Tensor, crop: int, sigmoid: bool) -> torch.Tensor:
    """The mean over TenCrop views (four corners and the centre at ``crop`` px, and their
    horizontal mirrors; torchvision's ``ten_crop``) of the model's probabilities
    (sigmoid or softmax of the outputs): the benchmark study's test-time augmentation."""
    import torchvision.transforms.v2.functional as TF

    views = TF.ten_crop(x, [crop, crop])
    act = torch.sigmoid if sigmoid else (lambda z: torch.softmax(z, 1))
    return torch.stack([act(model(v).float()) for v in views]).mean(0)


@torch.inference_mode()
def predict(model: nn.Module, data: ImageSet, batch_size: int = 512, device=None, amp: bool | None = False,
            tencrop: int | None = None, sigmoid: bool = False, **batch) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's outputs (float32 logits ``N×K``) and the labels of ``data`` in order, in
    eval mode. ``amp`` (bf16 autocast on CUDA) is off by default, so losses used for model
    selection are computed in full precision.

    ``tencrop=c``: images are loaded at ``image_size`` (the study: 256) and the model sees
    ten ``c``-px crops of each (:func:`ten_crop_probs`); the crops' probabilities (sigmoid
    with ``sigmoid=True``, else softmax) are averaged and returned as logits of that mean
    (``logit(p̄)``, clamped at 1e-7, or ``log p̄``), so ``sigmoid``/``softmax`` of the result
    is the averaged probability."""
    _check_data(data)
    dev = runtime.device(device)
    amp = dev.type == "cuda" if amp is None else amp
    was = model.training
    model.eval().to(dev)
    settings = batch_settings(model, data, **batch)
    if tencrop is not None:  # TenCrop replaces any centre crop: the ten views are taken from the whole image
        settings.pop("centre_crop", None)
    if tencrop is not None and not 0 < int(tencrop) <= int(settings["image_size"]):
        raise ValueError(f"tencrop must be a crop side in 1..image_size ({settings['image_size']}), got {tencrop!r}")
    check_input_size(model, tencrop or settings["image_size"])
    outs, ys = [], []
    try:
        for x, y in loader(data, batch_size=batch_size, device=dev, **settings):
            if dev.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(dev, amp):
                if tencrop is None:
                    out = model(x).float()
                else:
                    p = ten_crop_probs(model, x, int(tencrop), sigmoid)
                    out = torch.logit(p, eps=1e-7) if sigmoid else p.clamp_min(1e-30).log()
            outs.append(out.float().cpu())
            ys.append(y.cpu())
    finally:
        model.train(was)
    return torch.cat(outs), torch.cat(ys)
