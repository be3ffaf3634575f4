"""Static baselines: "metrics" that ignore the target and rank sources by what is known about
them (model size, the architecture's ImageNet top-1, the size of the pre-training data,
"always ImageNet"). A transferability metric that cannot beat them is not telling the
researcher anything (Singh, Hess & Vanschoren, ICLR 2026: a model-size ranker reached 0.91
rank correlation on a standard benchmark, above LogME's 0.57).

Each baseline is a registry row of kind ``"static"``: ``fn(facts: SourceFacts) -> float``.
:func:`source_facts` reads the facts of a model built or saved by medtl;
:func:`published_facts` gives them for the sources of the published tables."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .registry import register_metric

#: Images in the pre-training sets medtl knows by name (ImageNet-1k train; RadImageNet's
#: 1.35 M images, Mei et al. 2022).
PRETRAIN_SIZES = {"imagenet": 1_281_167, "radimagenet": 1_350_000}

#: The dataset-transferability study's scenario-B architecture keys → torchvision names
#: (its spec §4.3).
STUDY_ARCHS = {"densenet": "densenet121", "efficientnet": "efficientnet_v2_s", "googlenet": "googlenet",
               "mnasnet": "mnasnet1_0", "mobilenet": "mobilenet_v3_small", "vgg": "vgg11",
               "convnext": "convnext_tiny", "shufflenet": "shufflenet_v2_x0_5", "resnet": "resnet18"}


@dataclass(frozen=True)
class SourceFacts:
    """What is known about a candidate source without looking at the target.

    Attributes:
        name: the source's name in the tables.
        arch: torchvision/medtl architecture name (None when unknown).
        params: parameter count of the architecture (None when unknown).
        imagenet_top1: ImageNet-1k top-1 (%) of the architecture's torchvision
            ``IMAGENET1K_V1`` weights (None when not a torchvision ImageNet architecture).
        pretraining: ``"imagenet"``, ``"radimagenet"``, a dataset name, a ``+``-joined
            union, ``"random"`` or ``"unknown"``.
        n_pretrain: images the source was pre-trained on (0 for random; None unknown).
    """

    name: str
    arch: str | None = None
    params: int | None = None
    imagenet_top1: float | None = None
    pretraining: str = "unknown"
    n_pretrain: int | None = None


def arch_facts(arch: str) -> tuple[int | None, float | None]:
    """(parameter count, ImageNet top-1 %) of a torchvision architecture's ``IMAGENET1K_V1``
    weights, read from torchvision's weight metadata (no download); (None, None) for
    architectures torchvision has no ImageNet weights for."""
    from torchvision import models as tvm

    try:
        w = tvm.get_model_weights(arch)["IMAGENET1K_V1"]
    except (KeyError, ValueError):
        return None, None
    return int(w.meta["num_params"]), float(w.meta["_metrics"]["ImageNet-1K"]["acc@1"])


def source_facts(model: nn.Module, name: str = "") -> SourceFacts:
    """The facts of a model built by :func:`medtl.models.create` or loaded as a medtl
    source: its architecture row, its parameter count (counted), the architecture's
    ImageNet top-1, and its pre-training data from ``model.medtl`` (``weights`` and the
    saved source's ``source_datasets`` / ``n_train``)."""
    meta = getattr(model, "medtl", {}) or {}
    arch = meta.get("arch")
    top1 = arch_facts(arch)[1] if arch else None
    weights = str(meta.get("weights") or "")
    src = meta.get("source") or {}
    if weights.startswith("imagenet"):
        pre, n = "imagenet", PRETRAIN_SIZES["imagenet"]
    elif src.get("source_datasets") or src.get("n_train"):
        pre = "+".join(src.get("source_datasets") or []) or "unknown"
        n = src.get("n_train")
    elif not weights and meta.get("init") in (None, "ri"):
        pre, n = "random", 0
    else:
        pre, n = "unknown", None
    return SourceFacts(name=name, arch=arch, params=sum(p.numel() for p in model.parameters()), imagenet_top1=top1,
                       pretraining=pre, n_pretrain=None if n is None else int(n))


def published_facts(source: str, scenario: str, target: str | None = None) -> SourceFacts:
    """The facts of a source of the dataset-transferability study's published tables.

    Scenario ``"dataset"`` (A): ResNet-18 pre-trained on ImageNet, RadImageNet, the
    leave-target-out MedMNIST union (``medmnist``: every 2D training split but the
    target's) or one MedMNIST dataset (its training split). Scenario ``"model"`` (B): the
    table's architecture key (§4.3) with ImageNet weights."""
    from ..data import catalog

    if scenario == "model":
        arch = STUDY_ARCHS.get(source)
        if arch is None:
            raise ValueError(f"unknown scenario-B source {source!r}; known: {', '.join(STUDY_ARCHS)}")
        params, top1 = arch_facts(arch)
        return SourceFacts(source, arch, params, top1, "imagenet", PRETRAIN_SIZES["imagenet"])
    if scenario != "dataset":
        raise ValueError(f"scenario must be 'dataset' or 'model', got {scenario!r}")
    params, top1 = arch_facts("resnet18")
    if source in PRETRAIN_SIZES:
        n, pre = PRETRAIN_SIZES[source], source
    elif source == "medmnist":
        flags = [f for f in catalog.FLAGS if f != target]
        n, pre = sum(catalog.n_samples(f, "train") for f in flags), "+".join(flags)
    elif source in catalog.FLAGS:
        n, pre = catalog.n_samples(source, "train"), source
    else:
        raise ValueError(f"unknown scenario-A source {source!r}")
    return SourceFacts(source, "resnet18", params, top1, pre, n)


def _num(v) -> float:
    return float("nan") if v is None else float(v)


_STATIC = dict(kind="static", labels=("single", "multilabel"), default=False)


@register_metric(label="model size", citation="Singh, Hess & Vanschoren, ICLR 2026", **_STATIC,
                 description="static baseline: the source's parameter count (bigger first)")
def model_size(facts: SourceFacts) -> float:
    """The parameter count of the source (NaN when unknown)."""
    return _num(facts.params)


@register_metric(label="ImageNet top-1", citation="Kornblith, Shlens & Le, CVPR 2019", **_STATIC,
                 description="static baseline: the architecture's ImageNet-1k top-1 accuracy")
def imagenet_top1(facts: SourceFacts) -> float:
    """ImageNet-1k top-1 (%) of the architecture's torchvision weights (NaN when unknown)."""
    return _num(facts.imagenet_top1)


@register_metric(label="source size", citation="baseline", **_STATIC,
                 description="static baseline: the number of pre-training images (more first)")
def source_size(facts: SourceFacts) -> float:
    """Images in the pre-training data (0 for a random initialisation; NaN unknown)."""
    return _num(facts.n_pretrain)


@register_metric(label="always ImageNet", citation="baseline", **_STATIC,
                 description="static baseline: 1 for ImageNet-pre-trained sources, 0 otherwise")
def always_imagenet(facts: SourceFacts) -> float:
    """1.0 when the source was pre-trained on ImageNet, else 0.0 (a ranker that only knows
    to put ImageNet first; ties elsewhere)."""
    return 1.0 if facts.pretraining == "imagenet" else 0.0


def static_scores(sources, scenario: str, targets) -> dict:
    """The static baselines as ``{metric: sources × targets DataFrame}`` for the published
    tables (the shape :func:`medtl.transfer.correlate` reads)."""
    import pandas as pd

    from .registry import METRIC_TABLE

    facts = {(s, t): published_facts(s, scenario, t) for s in sources for t in targets}  # once, for every baseline
    return {name: pd.DataFrame({t: [m.fn(facts[s, t]) for s in sources] for t in targets}, index=list(sources))
            for name, m in METRIC_TABLE.items() if m.kind == "static"}
