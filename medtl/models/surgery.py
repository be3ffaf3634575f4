"""Model surgery: heads, grey-input stems, truncation (TTL), RI/WT/ST re-initialisation and
the WT–ST hybrids, freezing."""

from __future__ import annotations

import math

import torch
from torch import nn

from .zoo import ArchSpec, get_module, set_module, spec

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def arch_of(model: nn.Module) -> ArchSpec:
    info = getattr(model, "medtl", None)
    if not info or "arch" not in info:
        raise ValueError("this model was not built by medtl.models.create; pass arch= explicitly")
    return spec(info["arch"])


def new_head(in_features: int, num_classes: int, dropout: float = 0.0) -> nn.Module:
    """A fresh classifier: ``Linear(in_features, num_classes)`` (PyTorch's default init),
    preceded by ``Dropout(dropout)`` when ``dropout > 0`` (the dataset-transferability
    study's scenario-A head uses 0.5)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    linear = nn.Linear(in_features, num_classes)
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


def replace_head(model: nn.Module, num_classes: int, dropout: float = 0.0, arch: str | None = None) -> nn.Module:
    """Replace the architecture table's head module by :func:`new_head` (in place)."""
    a = spec(arch) if arch else arch_of(model)
    set_module(model, a.head, new_head(a.head_in, num_classes, dropout))
    if hasattr(model, "medtl"):
        model.medtl.update(num_classes=num_classes, dropout=dropout)
    return model


def adapt_in_chans(model: nn.Module, in_chans: int, arch: str | None = None, mode: str = "sum") -> nn.Module:
    """Rebuild the stem convolution for ``in_chans`` input channels, keeping its kernel.

    ``mode="sum"`` (default) sums the RGB kernel over input channels, so a grey image gives
    exactly the activations its 3-channel replication would; ``"first"`` takes the R slice
    (the feature-reuse study's choice); ``"mean"`` averages. From 1 to 3 channels the kernel
    is replicated and divided by 3.
    """
    a = spec(arch) if arch else arch_of(model)
    old = get_module(model, a.stem)
    if old.in_channels == in_chans:
        return model
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    new = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, old.bias is not None, old.padding_mode)
    with torch.no_grad():
        w = old.weight
        if in_chans == 1:
            if mode == "sum":
                k = w.sum(1, keepdim=True)
            elif mode == "mean":
                k = w.mean(1, keepdim=True)
            elif mode == "first":
                k = w[:, :1]
            else:
                raise ValueError(f"mode must be 'sum', 'mean' or 'first', got {mode!r}")
        else:
            k = w.repeat(1, 3, 1, 1) / 3
        new.weight.copy_(k)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    set_module(model, a.stem, new)
    if a.family == "googlenet":
        model.transform_input = False  # its ImageNet input transform is defined for 3 channels
    if hasattr(model, "medtl"):
        model.medtl["in_chans"] = in_chans
    return model


# --- freezing ------------------------------------------------------------------------------
def _matches(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def freeze(model: nn.Module, layers=None, except_layers=()) -> nn.Module:
    """Stop gradients for parameters under ``layers`` (module-path prefixes; all when None),
    except those under ``except_layers`` (e.g. the head for a linear probe)."""
    for name, p in model.named_parameters():
        if (layers is None or _matches(name, layers)) and not _matches(name, except_layers):
            p.requires_grad_(False)
    return model


def unfreeze(model: nn.Module, layers=None) -> nn.Module:
    for name, p in model.named_parameters():
        if layers is None or _matches(name, layers):
            p.requires_grad_(True)
    return model


# --- truncation (TTL) ----------------------------------------------------------------------
class Truncated(nn.Module):
    """A truncated backbone (``body``: nn.Sequential) followed by a new head
    (``head``: pooling/flatten + Linear)."""

    def __init__(self, body: nn.Sequential, head: nn.Sequential) -> None:
        super().__init__()
        self.body = body
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def resnet_sequence(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """A torchvision ResNet flattened to its leaf sequence (blocks count as leaves):
    conv1, bn1, relu, maxpool, every residual block, avgpool — 21 entries for resnet50."""
    seq = [(n, getattr(model, n)) for n in ("conv1", "bn1", "relu", "maxpool")]
    for stage in ("layer1", "layer2", "layer3", "layer4"):
        seq += [(f"{stage}.{i}", b) for i, b in enumerate(getattr(model, stage))]
    seq.append(("avgpool", model.avgpool))
    return seq


def cut_points(model: nn.Module, mode: str = "block", arch: str | None = None) -> list[int]:
    """Valid cuts: block-wise ``[1, 2, 3, -1]``; layer-wise ``1..n_blocks+1`` and ``-1``."""
    a = spec(arch) if arch else arch_of(model)
    if mode == "block":
        return [1, 2, 3, -1]
    if a.family != "resnet":
        raise ValueError(f"layer-wise truncation is defined for ResNets, not {a.name}")
    return [*range(1, len(resnet_sequence(model)) - 3), -1]


def truncate(model: nn.Module, cut: int, mode: str = "block", head: str = "gap", num_classes: int = 2,
             image_size: int = 224, arch: str | None = None) -> Truncated:
    """Truncated transfer learning (Peng et al., BMVC 2023; spec truncated-transfer §A.1).

    * ResNet, ``mode="block"``: keep conv1, bn1, relu, maxpool and ``layer1..layer<cut>``
      (``cut`` in 1..3); ``cut=-1`` keeps every child up to and including avgpool.
    * ResNet, ``mode="layer"``: the 21-entry leaf sequence (resnet50) with cut list
      ``idx = [3, 4, …, 20]``; cut k keeps ``seq[:idx[k-1]+1]`` (k=1 stem only, k=j+1 stem +
      blocks 1..j); ``cut=-1`` keeps the whole sequence.
    * DenseNet, ``mode="block"``: keep ``features`` children up to and including
      ``transition<cut>`` (``4 + 2·cut`` children); ``cut=-1`` keeps all (to ``norm5``).

    The dropped layers are removed, not re-initialised. ``head="gap"``: AdaptiveAvgPool2d(1)
    → Flatten → Linear with Kaiming-normal weight (PyTorch default bias); ``"flatten"``:
    Flatten → Linear over the whole feature map (its width depends on ``image_size``).
    """
    a = spec(arch) if arch else arch_of(model)
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}")
    if a.family == "resnet":
        if mode == "block":
            if cut not in (1, 2, 3, -1):
                raise ValueError(f"block-wise cut must be 1, 2, 3 or -1, got {cut}")
            names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
            keep = names if cut == -1 else names[: 4 + cut]
            body = nn.Sequential(*[getattr(model, n) for n in keep])
        elif mode == "layer":
            seq = resnet_sequence(model)
            idx = list(range(3, len(seq)))
            if cut != -1 and not 1 <= cut <= len(idx) - 1:
                raise ValueError(f"layer-wise cut must be in 1..{len(idx) - 1} or -1, got {cut}")
            keep = seq if cut == -1 else seq[: idx[cut - 1] + 1]
            body = nn.Sequential(*[m for _, m in keep])
        else:
            raise ValueError(f"mode must be 'block' or 'layer', got {mode!r}")
    elif a.family == "densenet":
        if mode != "block":
            raise ValueError("DenseNet truncation is block-wise only")
        if cut not in (1, 2, 3, -1):
            raise ValueError(f"block-wise cut must be 1, 2, 3 or -1, got {cut}")
        children = list(model.features.children())
        body = nn.Sequential(*(children if cut == -1 else children[: 4 + 2 * cut]))
    else:
        raise ValueError(f"truncation is defined for ResNet and DenseNet, not {a.name}")
    in_chans = get_module(model, a.stem).in_channels
    with torch.no_grad():
        was = body.training
        body.eval()
        shape = body(torch.zeros(1, in_chans, image_size, image_size)).shape
        body.train(was)
    if head == "gap":
        linear = nn.Linear(shape[1], num_classes)
        nn.init.kaiming_normal_(linear.weight)
        new = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear)
    else:
        new = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape[1:]), num_classes))
    out = Truncated(body, new)
    out.medtl = {**getattr(model, "medtl", {}), "truncated": {"cut": cut, "mode": mode, "head": head},
                 "num_classes": num_classes}
    return out


# --- RI / WT / ST --------------------------------------------------------------------------
def _group_index(name: str, groups) -> int:
    """Index (from -1) of the hybrid group holding parameter ``name``; the last group for
    parameters outside every group."""
    for i, prefixes in enumerate(groups):
        if _matches(name, prefixes):
            return i - 1
    return len(groups) - 2


def st_groups(a: ArchSpec) -> tuple[tuple[str, ...], ...]:
    """The hybrid's layer groups: the table's own, else the stem conv then each listed layer."""
    if a.st_groups:
        return a.st_groups
    return ((a.stem,), *((layer,) for layer in a.layers if layer != a.stem))


def reinit(model: nn.Module, scheme: str, up_to: int | None = None, seed: int = 0,
           arch: str | None = None) -> nn.Module:
    """Re-initialise ``model`` in place (the feature-reuse study's RI / WT / ST, spec §C.1).

    * ``"wt"``: weight transfer — keep the weights (a no-op, for symmetric call sites).
    * ``"ri"``: random init — the architecture's own torchvision initialisation, drawn from
      a generator seeded with ``seed`` (a fresh model of the same shape).
    * ``"st"``: stats transfer — every non-normalisation parameter tensor W (conv and linear
      weights and biases, tokens, position embeddings) is replaced by i.i.d. samples from
      N(mean(W), std(W)²), one scalar pair per tensor; normalisation layers are reset
      (γ=1, β=0, running mean 0, variance 1). ``up_to=L`` gives the WT–ST hybrid: layer
      groups numbered ≤ L keep their weights (see :func:`st_groups`; L=-2 is full ST).

    The head (the table's head module) is never touched: it is fresh already.
    """
    a = spec(arch) if arch else arch_of(model)
    scheme = scheme.lower()
    if scheme == "wt":
        return model
    head_prefix = (a.head,)
    gen = torch.Generator().manual_seed(seed)
    if scheme == "ri":
        from . import create

        info = dict(getattr(model, "medtl", {}))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            fresh = create(a.name, num_classes=info.get("num_classes"), in_chans=info.get("in_chans", 3),
                           stem=info.get("stem", "imagenet"), image_size=info.get("image_size"),
                           dropout=info.get("dropout", 0.0))
        own = fresh.state_dict()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if not _matches(k, head_prefix):
                    v.copy_(own[k])
        return model
    if scheme != "st":
        raise ValueError(f"scheme must be 'ri', 'wt' or 'st', got {scheme!r}")
    groups = st_groups(a)
    level = -2 if up_to is None else int(up_to)
    if not -2 <= level <= len(groups) - 2:
        raise ValueError(f"up_to must be in -2..{len(groups) - 2} for {a.name}, got {up_to}")
    norm_params = set()
    for mname, m in model.named_modules():
        if isinstance(m, NORM_TYPES) and not _matches(mname, head_prefix):
            if _group_index(f"{mname}.weight", groups) > level:
                m.reset_parameters()
            norm_params.update(f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in norm_params or _matches(name, head_prefix) or _group_index(name, groups) <= level:
                continue
            if p.numel() < 2:
                continue
            w = p.detach().to(torch.float64)
            sample = torch.randn(p.shape, generator=gen, dtype=torch.float64) * w.std() + w.mean()
            p.copy_(sample.to(p.dtype))
    if hasattr(model, "medtl"):
        model.medtl["init"] = "st" if level == -2 else f"wt-st(up_to={level})"
    return model
