"""Building models: :func:`create` (an architecture of the table, any weight source, a fresh
head), :func:`load_checkpoint` and :func:`load_source`."""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..runtime import seeded
from .foundation import load_foundation
from .inits import get_init, init_file, is_init
from .surgery import adapt_in_chans, replace_head
from .weights import (
    LoadReport,
    imagenet_state_dict,
    load_state,
    read_checkpoint,
    remap,
    source_info,
    unwrap,
)
from .zoo import ArchSpec, build, get_module, spec, under


def _imagenet_state(a: ArchSpec, version: str) -> dict:
    if callable(a.weights):
        return a.weights(version)
    return imagenet_state_dict(a.name, version)


def _imagenet_into(model: nn.Module, a: ArchSpec, version: str, image_size: int | None, allowed: tuple) -> LoadReport:
    state = _imagenet_state(a, version)
    if a.imagenet_drop:
        state = {k: v for k, v in state.items() if not under(k, a.imagenet_drop)}
    if a.adapt_imagenet is not None:
        state = a.adapt_imagenet(state, model, image_size)
    return load_state(model, state, allowed_missing=allowed, what=f"ImageNet weights of {a.name}")


def load_checkpoint(model: nn.Module, checkpoint, method: str | None = None, strict: bool = True,
                    allowed_missing: tuple[str, ...] | None = None) -> LoadReport:
    """Load a checkpoint file (or object) into ``model``.

    The state dict is unwrapped from ``state_dict`` / ``model`` / ``net`` / ``resnet`` /
    ``module``; then either the SSL rules of ``method`` apply (anchored prefix strip + key
    drops, :data:`SSL_PREFIXES`) or the wrapper prefix (``module.``, ``model.``, …) that
    matches the model best is stripped. Missing keys other than the head are an error unless
    ``strict=False``; unexpected and shape-mismatched keys are reported (warning + report).
    """
    what = "checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        what = f"checkpoint {checkpoint}"
        checkpoint = read_checkpoint(checkpoint)
    state = unwrap(checkpoint)
    state, report = remap(state, method, model.state_dict().keys())
    if allowed_missing is None:
        info = getattr(model, "medtl", {})
        allowed_missing = (spec(info["arch"]).head,) if "arch" in info else ()
    return load_state(model, state, allowed_missing, strict, report, what)


def _checkpoint_state(weights) -> tuple[dict, str]:
    if isinstance(weights, dict):
        return unwrap(weights), "state dict"
    if Path(weights).is_file():
        return unwrap(read_checkpoint(weights)), str(weights)
    raise FileNotFoundError(
        f"weights {str(weights)!r} is neither None, 'imagenet[:VERSION]', 'source:NAME', a zoo name nor an "
        "existing checkpoint file"
    )


def create(arch: str, num_classes: int | None = None, weights=None, in_chans: int = 3, stem: str = "imagenet",
           image_size: int | None = None, dropout: float = 0.0, grey_init: str = "sum", strict: bool = True,
           method: str | None = None, seed: int | None = None, head_init: str = "default") -> nn.Module:
    """Build an architecture of the table with optional pretrained weights and a fresh head.

    Args:
        arch: a key of :data:`ARCHS` (or a study key such as ``"densenet"``).
        num_classes: size of the fresh head; None keeps the builder's / checkpoint's head
            (the 1000-class ImageNet head, needed for LEEP on ImageNet sources).
        weights: None (random, the builder's init); for a foundation row (:data:`FOUNDATION`)
            ``"foundation"`` (its own weights) or a local copy's path (:func:`load_foundation`);
            ``"imagenet"`` or
            ``"imagenet:IMAGENET1K_V2"`` (torchvision's enum and TORCH_HOME cache); a
            name of the initialisation zoo (``"moco-v2"``, :data:`INITS`: its file in the
            weights cache, fetched by ``medtl models fetch``, through its remap rule); a
            checkpoint path; ``"source:NAME"`` (a source saved by :func:`save_source`); or a
            state dict.
        in_chans: 1 builds a grey stem from the (pretrained) kernel (``grey_init``: ``"sum"``
            equals channel replication when the channels are normalised alike, and
            approximates it under per-channel normalisation (see :func:`adapt_in_chans`);
            ``"first"`` the feature-reuse study's R slice).
        stem: ``"imagenet"`` (standard) or ``"cifar"`` (the row's small-input recipe for
            native 28–32 px inputs).
        image_size: input side the model will see (needed by ViT; checked against the
            standard stem's minimum).
        dropout: dropout before the fresh head.
        strict: missing non-head tensors are an error unless False.
        method: SSL checkpoint rules (``"moco-v2"``, ``"swav"``, …) for checkpoint weights.
        seed: seeds the random initialisation (bit-identical models for a given seed).
        head_init: ``"default"``, ``"normal"`` (N(0, 0.01), the benchmark study) or ``"kaiming"``.

    Returns:
        The model; ``model.medtl`` holds arch, num_classes, in_chans, stem, image_size,
        weights and normalisation, used by medtl's other layers.
    """
    a = spec(arch)
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans!r}")
    if a.family == "foundation":  # a foundation row: its own library, weights and preprocessing
        if isinstance(weights, str) and (weights.startswith(("imagenet", "source:")) or is_init(weights)):
            raise ValueError(f"{a.name} is a foundation model: weights=None (random), 'foundation' (its own) or a "
                             f"local copy's path, not {weights!r}")
        return load_foundation(a.name, path=None if weights in (None, "foundation") else weights,
                               num_classes=num_classes, pretrained=weights is not None, seed=seed, dropout=dropout,
                               head_init=head_init)
    if isinstance(weights, str) and weights.startswith("source:"):
        model = load_source(weights[len("source:"):])
        if model.medtl["arch"] != a.name:
            raise ValueError(f"source {weights!r} is a {model.medtl['arch']} model, not {a.name}")
        return _finish(model, a, in_chans, num_classes, dropout, grey_init, seed, head_init)
    zoo_name = weights if is_init(weights) and weights != "imagenet" else None
    if zoo_name:  # a row of the initialisation zoo: its cached file and remap rule
        weights, method = init_file(zoo_name, a.name), method or get_init(zoo_name).method
    is_imagenet = isinstance(weights, str) and weights.split(":")[0] == "imagenet"
    with seeded(seed):
        model, reinit_names = build(a, stem, image_size, pretrained=is_imagenet)
    model.medtl = {"arch": a.name, "in_chans": 3, "stem": stem, "image_size": image_size, "weights": None,
                   "normalize": "medmnist", "dropout": 0.0, "min_size": a.min_size if stem == "imagenet" else None}
    allowed = (a.head, *reinit_names, *(a.imagenet_missing if is_imagenet else ()))
    if weights is None:
        pass
    elif is_imagenet:
        version = weights.split(":", 1)[1] if ":" in weights else "IMAGENET1K_V1"
        _imagenet_into(model, a, version, image_size, allowed)
        model.medtl.update(weights=f"imagenet:{version}", normalize=a.normalize)
    elif isinstance(weights, (dict, str, os.PathLike)):
        state, label = _checkpoint_state(weights)
        has_head = _match_checkpoint_shape(model, a, remap(state, method, model.state_dict().keys())[0], grey_init)
        load_checkpoint(model, state, method, strict, allowed)
        model.medtl.update(weights=zoo_name or label, **({"normalize": a.normalize} if zoo_name else {}))
        if not has_head:  # e.g. a self-supervised checkpoint: the builder's head is untrained
            model.medtl["head"] = "untrained"
    else:
        raise TypeError(f"weights must be None, a string, a path or a state dict, got {type(weights).__name__}")
    model.medtl["num_classes"] = _head_out(model, a)
    return _finish(model, a, in_chans, num_classes, dropout, grey_init, seed, head_init)


def _match_checkpoint_shape(model: nn.Module, a: ArchSpec, state: dict, grey_init: str) -> bool:
    """Give ``model`` the checkpoint's stem channels and head size, so both load; whether
    the checkpoint has a head."""
    stem_w = state.get(f"{a.stem}.weight")
    if stem_w is not None and stem_w.ndim == 4 and stem_w.shape[1] == 1:
        adapt_in_chans(model, 1, a.name, grey_init)
    for key, dropout in ((f"{a.head}.weight", 0.0), (f"{a.head}.1.weight", 0.5)):
        w = state.get(key)
        if w is not None and w.ndim == 2 and w.shape[1] == a.head_in:
            replace_head(model, w.shape[0], dropout, a.name)
            model.medtl["num_classes"] = w.shape[0]
            return True
    return False


def _finish(model: nn.Module, a: ArchSpec, in_chans: int, num_classes: int | None, dropout: float,
            grey_init: str, seed: int | None, head_init: str) -> nn.Module:
    if in_chans != get_module(model, a.stem).in_channels:
        adapt_in_chans(model, in_chans, a.name, grey_init)
    model.medtl["in_chans"] = in_chans
    if num_classes is not None:
        with seeded(None if seed is None else seed + 1):
            replace_head(model, num_classes, dropout, a.name, head_init)
        model.medtl.pop("head", None)  # a fresh head for the user's task, not a source's predictions
    return model


def _head_out(model: nn.Module, a: ArchSpec) -> int:
    head = get_module(model, a.head)
    linear = [m for m in ([head] if isinstance(head, nn.Linear) else head.modules()) if isinstance(m, nn.Linear)]
    return linear[-1].out_features


def load_source(name: str, num_classes: int | None = None, root: str | os.PathLike | None = None,
                dropout: float = 0.0, head_init: str = "default", seed: int | None = None) -> nn.Module:
    """A source saved by :func:`save_source` (by name or ``.pt`` path), rebuilt from its
    metadata; ``num_classes`` replaces its head with a fresh one drawn under ``seed`` (the
    same head for the same seed; ``None``: from torch's global RNG). Names are looked up in
    the models folder and in the results root's ``models`` folders (see :func:`source_info`)."""
    file, meta = source_info(name, root)
    model = create(meta["arch"], num_classes=None, weights=None, stem=meta.get("stem", "imagenet"),
                   image_size=meta.get("image_size"))
    if meta.get("in_chans", 3) != 3:
        adapt_in_chans(model, meta["in_chans"])
    if meta.get("num_classes"):
        replace_head(model, meta["num_classes"], meta.get("dropout", 0.0))
    load_checkpoint(model, file, allowed_missing=())
    model.medtl.update({k: meta[k] for k in ("normalize", "in_chans", "num_classes") if k in meta})
    model.medtl.update(weights=f"source:{meta['name']}", source=meta)
    if num_classes is not None:
        with seeded(seed):
            replace_head(model, num_classes, dropout, init=head_init)
    return model
