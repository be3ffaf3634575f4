"""Model surgery: heads, grey-input stems, truncation (TTL), RI/WT/ST re-initialisation and
the WT–ST hybrids, freezing."""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable

import torch
from torch import nn

from .._registry import Registry
from ..runtime import seeded
from .zoo import ARCHS, ArchSpec, get_module, resnet_init, set_module, spec, under

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def arch_of(model: nn.Module) -> ArchSpec:
    """The architecture row of a model built by :func:`medtl.models.create`."""
    info = getattr(model, "medtl", None)
    if not info or "arch" not in info:
        raise ValueError("this model was not built by medtl.models.create (it has no model.medtl['arch']); "
                         "build it with medtl.models.create or pass arch= explicitly")
    return spec(info["arch"])


def _arch(model: nn.Module, arch: str | None) -> ArchSpec:
    return spec(arch) if arch else arch_of(model)


def new_head(in_features: int, num_classes: int, dropout: float = 0.0, init: str = "default") -> nn.Module:
    """A fresh classifier: ``Linear(in_features, num_classes)``, preceded by
    ``Dropout(dropout)`` when ``dropout > 0`` (the dataset-transferability study's scenario-A
    head uses 0.5). ``init``: ``"default"`` (PyTorch's), ``"normal"`` (weights N(0, 0.01),
    bias 0: the benchmark study's head) or ``"kaiming"`` (Kaiming-normal weights, default
    bias: the truncated-transfer study's head)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    linear = nn.Linear(in_features, num_classes)
    if init == "normal":
        nn.init.normal_(linear.weight, 0.0, 0.01)
        nn.init.zeros_(linear.bias)
    elif init == "kaiming":
        nn.init.kaiming_normal_(linear.weight)
    elif init != "default":
        raise ValueError(f"head init must be 'default', 'normal' or 'kaiming', got {init!r}")
    return nn.Sequential(nn.Dropout(dropout), linear) if dropout > 0 else linear


def replace_head(model: nn.Module, num_classes: int, dropout: float = 0.0, arch: str | None = None,
                 init: str = "default") -> nn.Module:
    """Replace the architecture table's head module by :func:`new_head` (in place)."""
    a = _arch(model, arch)
    set_module(model, a.head, new_head(a.head_in, num_classes, dropout, init))
    if hasattr(model, "medtl"):
        model.medtl.update(num_classes=num_classes, dropout=dropout)
    return model


def adapt_in_chans(model: nn.Module, in_chans: int, arch: str | None = None, mode: str = "sum") -> nn.Module:
    """Rebuild the stem convolution for ``in_chans`` input channels, keeping its kernel.

    ``mode="sum"`` (default) sums the RGB kernel over input channels, so a grey input gives
    exactly the activations its 3-channel replication would **when the three channels are
    normalised alike** (the same mean and std as the grey channel). Under per-channel
    normalisation (ImageNet's mean/std differ by channel) the replicated image's normalised
    channels differ from each other, and the sum kernel only approximates the replication
    (exact up to Σ_c w_c·((x − m_c)/s_c − (x − m)/s)); ``"first"`` takes the R slice
    (the feature-reuse study's choice); ``"mean"`` averages. From 1 to 3 channels the kernel
    is replicated and divided by 3.
    """
    a = _arch(model, arch)
    old = get_module(model, a.stem)
    if old.in_channels == in_chans:
        return model
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
    if mode not in ("sum", "mean", "first"):
        raise ValueError(f"grey_init must be 'sum', 'mean' or 'first', got {mode!r}")
    new = nn.Conv2d(in_chans, old.out_channels, old.kernel_size, old.stride, old.padding, old.dilation,
                    old.groups, old.bias is not None, old.padding_mode)
    with torch.no_grad():
        w = old.weight
        if in_chans == 1:
            k = {"sum": lambda: w.sum(1, keepdim=True), "mean": lambda: w.mean(1, keepdim=True),
                 "first": lambda: w[:, :1]}[mode]()
        else:
            k = w.repeat(1, 3, 1, 1) / 3
        new.weight.copy_(k)
        if old.bias is not None:
            new.bias.copy_(old.bias)
    set_module(model, a.stem, new)
    if getattr(model, "transform_input", False):
        model.transform_input = False  # an ImageNet input transform is defined for 3 channels
    if hasattr(model, "medtl"):
        model.medtl["in_chans"] = in_chans
    return model


# --- freezing ------------------------------------------------------------------------------
def freeze(model: nn.Module, layers=None, except_layers=()) -> nn.Module:
    """Stop gradients for parameters under ``layers`` (module-path prefixes; all when None),
    except those under ``except_layers`` (e.g. the head for a linear probe).
    :func:`medtl.train.fit` honours it (frozen tensors stay bit-identical). A prefix that
    names no parameter raises a ValueError listing the model's top-level modules (a typo
    would otherwise freeze nothing without a word)."""
    _check_prefixes(model, layers, "layers")
    _check_prefixes(model, except_layers, "except_layers")
    for name, p in model.named_parameters():
        if (layers is None or under(name, layers)) and not under(name, except_layers):
            p.requires_grad_(False)
    return model


def _check_prefixes(model: nn.Module, prefixes, what: str) -> None:
    """Every prefix must lie over at least one parameter of ``model``."""
    if prefixes is None:
        return
    prefixes = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    names = [n for n, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(under(n, p) for n in names)]
    if unknown:
        tops = list(dict.fromkeys(n.split(".")[0] for n in names))
        raise ValueError(f"{what} {unknown} name no parameter of this {type(model).__name__}; its modules with "
                         f"parameters are {tops} (nested paths such as 'layer1.0.conv1' work too)")


def unfreeze(model: nn.Module, layers=None) -> nn.Module:
    """Let gradients flow again to parameters under ``layers`` (all when None); unknown
    prefixes raise as in :func:`freeze`."""
    _check_prefixes(model, layers, "layers")
    for name, p in model.named_parameters():
        if layers is None or under(name, layers):
            p.requires_grad_(True)
    return model


def frozen(model: nn.Module) -> list[str]:
    """Names of the parameters that do not require gradients."""
    return [n for n, p in model.named_parameters() if not p.requires_grad]


def lwft_freeze(model: nn.Module, freeze_from: int, mode: str = "block", arch: str | None = None) -> list[str]:
    """Layer-wise fine-tuning (LWFT), the truncated-transfer study's baseline (spec §A.1.4):
    freeze the bottom of a ResNet and fine-tune the rest.

    * ``mode="block"``, ``freeze_from`` f in 1..5: the stem (conv1, bn1) and ``layer1 ..
      layer{f-1}`` are frozen (f=2 freezes the stem and layer1; f=5 every block, leaving the
      head: a linear probe);
    * ``mode="layer"``, k in 1..n_blocks+1: the first k entries of the cut list — the stem
      (k=1) and the first k−1 residual blocks (k=4 equals block-wise f=2).

    Returns the frozen module paths. :func:`medtl.train.fit` keeps them bit-identical, their
    BatchNorm statistics included (the original code let those drift; ``frozen_bn="train"``
    reproduces that)."""
    a = _arch(model, arch)
    if a.truncation != "resnet":
        raise ValueError(f"LWFT is defined for ResNets, not {a.name}")
    if mode == "block":
        if freeze_from not in range(1, 6):
            raise ValueError(f"block-wise freeze_from must be 1..5, got {freeze_from!r}")
        paths = ["conv1", "bn1", *(f"layer{i}" for i in range(1, freeze_from))]
    elif mode == "layer":
        seq = resnet_sequence(model)
        if freeze_from not in range(1, len(seq) - 3):
            raise ValueError(f"layer-wise freeze_from must be 1..{len(seq) - 4}, got {freeze_from!r}")
        paths = [n for n, _ in seq[: 3 + freeze_from] if n not in ("relu", "maxpool")]
    else:
        raise ValueError(f"mode must be 'block' or 'layer', got {mode!r}")
    freeze(model, paths)
    return paths


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


def _cut_resnet(model: nn.Module, cut: int, mode: str) -> list[tuple[str, nn.Module]]:
    if mode == "block":
        names = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool"]
        return [(n, getattr(model, n)) for n in (names if cut == -1 else names[: 4 + cut])]
    seq = resnet_sequence(model)
    idx = list(range(3, len(seq)))
    return seq if cut == -1 else seq[: idx[cut - 1] + 1]


def _cut_densenet(model: nn.Module, cut: int, mode: str) -> list[tuple[str, nn.Module]]:
    children = list(model.features.named_children())
    kept = children if cut == -1 else children[: 4 + 2 * cut]
    return [(f"features.{n}", m) for n, m in kept]


#: Inception-v3's stages in forward order; block cut k keeps the stem and stages 1..k.
_INCEPTION_STAGES = (("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                      "maxpool2"), ("Mixed_5b", "Mixed_5c", "Mixed_5d"),
                     ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"), ("Mixed_7a", "Mixed_7b", "Mixed_7c"))


def _cut_inception(model: nn.Module, cut: int, mode: str) -> list[tuple[str, nn.Module]]:
    stages = _INCEPTION_STAGES if cut == -1 else _INCEPTION_STAGES[: 1 + cut]
    return [(n, getattr(model, n)) for stage in stages for n in stage]


class TokenTrunk(nn.Module):
    """The first blocks of a timm vision transformer as a truncated body: patch embedding,
    class token and positions, ``blocks[:k]``, the final norm; outputs the pooled
    representation (the class token) ``B×D``."""

    def __init__(self, vit: nn.Module, k: int):
        super().__init__()
        self.vit = copy.deepcopy(vit)
        self.vit.blocks = self.vit.blocks[:k]
        self.vit.reset_classifier(0)
        self.kept_layers = ["patch_embed", *(f"blocks.{i}" for i in range(k)), "norm"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_head(self.vit.forward_features(x), pre_logits=True)


def _cut_vit(model: nn.Module, cut: int, mode: str) -> TokenTrunk:
    return TokenTrunk(model, len(model.blocks) if cut == -1 else cut)


#: Truncation recipes: ``recipe(model, cut, mode) -> [(path, module), …]`` (the kept
#: modules in forward order, chained as a Sequential) or a body module with
#: ``kept_layers`` (:class:`TokenTrunk`); the row's ``cuts`` lists the valid cuts per mode.
TRUNCATIONS: Registry[Callable] = Registry("truncation recipe")
TRUNCATIONS.register("resnet", _cut_resnet)
TRUNCATIONS.register("densenet", _cut_densenet)
TRUNCATIONS.register("inception", _cut_inception)
TRUNCATIONS.register("vit_timm", _cut_vit)


def cut_points(model: nn.Module, mode: str = "block", arch: str | None = None) -> list[int]:
    """Valid cuts of ``model`` in ``mode`` (the table row's ``cuts``): block-wise
    ``[1, 2, 3, -1]``; ResNet layer-wise ``1..n_blocks+1`` and ``-1``."""
    a = _arch(model, arch)
    if a.truncation is None:
        raise ValueError(f"{a.name} has no truncation recipe in the architecture table (rows with one: "
                         f"{', '.join(r.name for r in ARCHS.values() if r.truncation)})")
    if mode not in a.cuts:
        raise ValueError(f"{a.name} has no {mode}-wise truncation; modes: {', '.join(a.cuts)}")
    return list(a.cuts[mode])


def truncate(model: nn.Module, cut: int, mode: str = "block", head: str | None = None, num_classes: int = 2,
             image_size: int = 224, arch: str | None = None, head_init: str | None = None) -> Truncated:
    """Truncated transfer learning (Peng et al., BMVC 2023; spec truncated-transfer §A.1).

    * ResNet, ``mode="block"``: keep conv1, bn1, relu, maxpool and ``layer1..layer<cut>``
      (``cut`` in 1..3); ``cut=-1`` keeps every child up to and including avgpool.
    * ResNet, ``mode="layer"``: the 21-entry leaf sequence (resnet50) with cut list
      ``idx = [3, 4, …, 20]``; cut k keeps ``seq[:idx[k-1]+1]`` (k=1 stem only, k=j+1 stem +
      blocks 1..j); ``cut=-1`` keeps the whole sequence.
    * DenseNet, ``mode="block"``: keep ``features`` children up to and including
      ``transition<cut>`` (``4 + 2·cut`` children); ``cut=-1`` keeps all (to ``norm5``).
    * Inception-v3, ``mode="block"``: the stem (to ``maxpool2``) and the Mixed_5 (cut 1)
      and Mixed_6 (cut 2) stages; ``cut=-1`` keeps Mixed_7 too. (medtl's extension of the
      study's rules to the feature-reuse study's models.)
    * DeiT-S / ViT-S (timm), ``mode="block"``: patch embedding, class token and positions,
      the first ``cut`` transformer blocks and the final norm (:class:`TokenTrunk`); the
      head is a linear layer on the class token.

    The kept layers are **copied** (the truncated model shares no tensor with ``model``, so
    fine-tuning it leaves the source unchanged); the dropped layers are removed.
    ``head="gap"``: AdaptiveAvgPool2d(1) → Flatten → Linear; ``"flatten"``: Flatten →
    Linear over the whole feature map (its width depends on ``image_size``); None: the
    study's choice for the architecture (the row's ``trunc_head``: GAP for ResNets, flatten
    for DenseNets, spec §A.1.3). ``head_init``: ``"kaiming"`` (Kaiming-normal weight, default bias) or
    ``"default"``; None: the study's (the row's ``trunc_head_init``: Kaiming for ResNets).
    """
    a = _arch(model, arch)
    head = head or a.trunc_head
    if head not in ("gap", "flatten"):
        raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}")
    valid = cut_points(model, mode, a.name)
    if cut not in valid:
        raise ValueError(f"{mode}-wise cut of {a.name} must be one of {valid}, got {cut!r}"
                         if mode != "layer" else f"layer-wise cut must be in 1..{max(valid)} or -1, got {cut}")
    kept = TRUNCATIONS.get(a.truncation)(model, cut, mode)
    if isinstance(kept, nn.Module):  # a recipe building its own body (already a copy)
        body, names = kept, list(kept.kept_layers)
    else:
        body, names = copy.deepcopy(nn.Sequential(*[m for _, m in kept])), [n for n, _ in kept]
    in_chans = get_module(model, a.stem).in_channels
    with torch.no_grad():
        was = body.training
        body.eval()
        shape = body(torch.zeros(1, in_chans, image_size, image_size)).shape
        body.train(was)
    init = head_init or a.trunc_head_init
    width = shape[1] if head == "gap" else math.prod(shape[1:])
    linear = new_head(width, num_classes, 0.0, init)
    if len(shape) == 2:  # a pooled body (a transformer's class token): the linear head alone
        new = nn.Sequential(linear)
    else:
        new = (nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), linear) if head == "gap"
               else nn.Sequential(nn.Flatten(), linear))
    out = Truncated(body, new)
    out.medtl = {**copy.deepcopy(getattr(model, "medtl", {})),
                 "truncated": {"cut": cut, "mode": mode, "head": head, "layers": names},
                 "num_classes": num_classes, "image_size": image_size}
    return out


# --- TransFusion's slim ResNets (the TF baseline) ------------------------------------------
def _block(kind: type, inplanes: int, planes: int, stride: int, inner: int | None = None) -> nn.Module:
    """A residual block of ``kind`` (BasicBlock / Bottleneck) mapping ``inplanes`` →
    ``planes · expansion``, with a projection shortcut where shapes change; ``inner`` narrows
    its inner width (TransFusion's "sliming block": conv3 still maps back to the full width)."""
    out = planes * kind.expansion
    down = None
    if stride != 1 or inplanes != out:
        down = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride, bias=False), nn.BatchNorm2d(out))
    block = kind(inplanes, planes, stride, down)
    if inner is not None and inner != planes:
        if kind.expansion == 1:  # BasicBlock: conv1 narrows, conv2 maps back
            block.conv1 = nn.Conv2d(inplanes, inner, 3, stride, 1, bias=False)
            block.bn1, block.conv2 = nn.BatchNorm2d(inner), nn.Conv2d(inner, planes, 3, 1, 1, bias=False)
        else:  # Bottleneck: the 1×1 → 3×3 → 1×1 width narrows
            block.conv1, block.bn1 = nn.Conv2d(inplanes, inner, 1, bias=False), nn.BatchNorm2d(inner)
            block.conv2, block.bn2 = nn.Conv2d(inner, inner, 3, stride, 1, bias=False), nn.BatchNorm2d(inner)
            block.conv3 = nn.Conv2d(inner, out, 1, bias=False)
    return block


def slim(model: nn.Module, slim_from: int, mode: str = "block", factor: int = 2, num_classes: int = 2,
         seed: int = 0, arch: str | None = None) -> nn.Module:
    """TransFusion's slim ResNet built from ``model`` (Raghu et al. 2019; the truncated-transfer
    study's TF baseline, spec §A.1.4), a new model sharing no tensor with ``model``:

    * ``mode="block"``, s = ``slim_from`` in 1..3: the stem and ``layer1..layer{s}`` are
      copied; ``layer{s+1}..layer4`` have ``planes // factor`` and a fresh initialisation
      (Kaiming-normal fan-out convolutions, BN 1/0, drawn under ``seed``). On ResNet-50,
      s = 3 is TF-1: 12.95 M parameters with a 2-class head (:func:`medtl.models.slim_resnet50`).
    * ``mode="layer"``, s in 1..n_blocks−1 (0-based residual-block index): every block with
      index ≥ s is slimmed — inside block s's stage as a "sliming block" (inner width
      ``planes // factor``, output still the stage's full width), the later stages wholly
      (``planes // factor``); every parameter whose shape still matches ``model``'s is copied,
      the rest freshly initialised. On ResNet-50, s = 14 (TF-2) has ≈ 17.9 M parameters.

    The head is GAP → ``Linear(width, num_classes)`` (PyTorch's default init) on the slimmed
    width; ``model.medtl["slim"]`` records the setting."""
    a = _arch(model, arch)
    if a.truncation != "resnet" or not hasattr(model, "layer4"):
        raise ValueError(f"TransFusion's slim networks are defined for ResNets, not {a.name}")
    stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
    sizes = [len(st) for st in stages]
    limit = {"block": 3, "layer": sum(sizes) - 1}.get(mode)
    if limit is None:
        raise ValueError(f"mode must be 'block' or 'layer', got {mode!r}")
    if isinstance(slim_from, bool) or not isinstance(slim_from, int) or not 1 <= slim_from <= limit:
        raise ValueError(f"{mode}-wise slim_from must be in 1..{limit} for {a.name}, got {slim_from!r}")
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
        raise ValueError(f"factor must be a positive integer, got {factor!r}")
    kind = type(stages[0][0])
    first = sum(sizes[:slim_from]) if mode == "block" else slim_from  # the first slimmed block
    new = copy.deepcopy(model)
    inplanes = stages[0][0].conv1.in_channels
    with seeded(seed):
        index = 0
        for i, stage in enumerate(stages):
            planes = stage[0].conv1.out_channels if kind.expansion == 1 else stage[-1].conv3.out_channels // 4
            stride = stage[0].stride
            stage_first = index
            whole = first <= stage_first  # this stage and all after it are halved
            blocks = []
            for b in range(len(stage)):
                if index < first:
                    blocks.append(copy.deepcopy(stage[b]))
                elif whole:
                    blocks.append(_block(kind, inplanes, planes // factor, stride if b == 0 else 1))
                else:  # a sliming block inside the stage of block `first`
                    blocks.append(_block(kind, inplanes, planes, stride if b == 0 else 1,
                                         inner=planes // factor))
                inplanes = (planes // factor if whole else planes) * kind.expansion
                index += 1
            fresh = nn.Sequential(*blocks)
            for b in range(len(stage)):
                if stage_first + b >= first:
                    resnet_init(fresh[b])
            setattr(new, f"layer{i + 1}", fresh)
        new.fc = nn.Linear(inplanes, num_classes)
    if mode == "layer":  # every tensor whose shape still matches is the source's
        own = model.state_dict()
        with torch.no_grad():
            for k, v in new.state_dict().items():
                if k in own and own[k].shape == v.shape and not under(k, (a.head,)):
                    v.copy_(own[k])
    new.medtl = {**copy.deepcopy(getattr(model, "medtl", {})), "num_classes": num_classes,
                 "slim": {"from": slim_from, "mode": mode, "factor": factor}}
    return new


# --- RI / WT / ST --------------------------------------------------------------------------
def _group_index(name: str, groups) -> int:
    """Index (from -1) of the hybrid group holding parameter ``name``; the last group for
    parameters outside every group."""
    for i, prefixes in enumerate(groups):
        if under(name, prefixes):
            return i - 1
    return len(groups) - 2


def st_groups(a: ArchSpec) -> tuple[tuple[str, ...], ...]:
    """The hybrid's layer groups: the table's own, else the stem conv then each listed layer."""
    if a.st_groups:
        return a.st_groups
    return ((a.stem,), *((layer,) for layer in a.layers if layer != a.stem))


def st_sample(weight: torch.Tensor, name: str, seed: int = 0) -> torch.Tensor:
    """The stats-transfer draw of one tensor: i.i.d. N(mean(W), std(W)²) with the tensor's
    own scalar moments, from a generator seeded by ``(seed, name)`` — so a tensor's ST draw
    is the same whichever other tensors are re-sampled (every WT–ST hybrid level uses the
    same ST tensors, a controlled comparison as the study's cached ST weights)."""
    w = weight.detach().to(torch.float64)
    gen = torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}/{name}".encode()))
    sample = torch.randn(weight.shape, generator=gen, dtype=torch.float64) * w.std() + w.mean()
    return sample.to(weight.dtype)


def reinit(model: nn.Module, scheme: str, up_to: int | None = None, seed: int = 0,
           arch: str | None = None) -> nn.Module:
    """Re-initialise ``model`` in place (the feature-reuse study's RI / WT / ST, spec §C.1).

    * ``"wt"``: weight transfer — keep the weights (a no-op, for symmetric call sites).
    * ``"ri"``: random init — the architecture's own initialisation, drawn from torch's RNG
      seeded with ``seed`` (a fresh model of the same shape).
    * ``"st"``: stats transfer — every non-normalisation parameter tensor W (conv and linear
      weights and biases, tokens, position embeddings) is replaced by i.i.d. samples from
      N(mean(W), std(W)²), one scalar pair per tensor (:func:`st_sample`); normalisation
      layers are reset (γ=1, β=0, running mean 0, variance 1). ``up_to=L`` gives the WT–ST
      hybrid: layer groups numbered ≤ L keep their weights (see :func:`st_groups`; L=-2 is
      full ST, the largest L full WT). The original code kept ViT/Swin tokens and position
      tables at their ImageNet values; medtl re-samples them as the paper describes.

    The head (the table's head module) is never touched: it is fresh already.
    """
    a = _arch(model, arch)
    scheme = str(scheme).lower()
    if scheme == "wt":
        return model
    head_prefix = (a.head,)
    if scheme == "ri":
        from ._create import create

        info = dict(getattr(model, "medtl", {}))
        fresh = create(a.name, num_classes=info.get("num_classes"), in_chans=info.get("in_chans", 3),
                       stem=info.get("stem", "imagenet"), image_size=info.get("image_size"),
                       dropout=info.get("dropout", 0.0), seed=seed)
        own = fresh.state_dict()
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if not under(k, head_prefix):
                    v.copy_(own[k])
        if hasattr(model, "medtl"):
            model.medtl["init"] = "ri"
        return model
    if scheme != "st":
        raise ValueError(f"scheme must be 'ri', 'wt' or 'st', got {scheme!r}")
    groups = st_groups(a)
    level = -2 if up_to is None else int(up_to)
    if not -2 <= level <= len(groups) - 2:
        raise ValueError(f"up_to must be in -2..{len(groups) - 2} for {a.name}, got {up_to}")
    norm_params = set()
    for mname, m in model.named_modules():
        if isinstance(m, NORM_TYPES) and not under(mname, head_prefix):
            if _group_index(f"{mname}.weight", groups) > level:
                m.reset_parameters()
                if hasattr(m, "reset_running_stats") and getattr(m, "track_running_stats", False):
                    m.reset_running_stats()
            norm_params.update(f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in norm_params or under(name, head_prefix) or _group_index(name, groups) <= level:
                continue
            if p.numel() < 2:
                continue
            p.copy_(st_sample(p, name, seed))
    if hasattr(model, "medtl"):
        model.medtl["init"] = "st" if level == -2 else f"wt-st(up_to={level})"
    return model


def truncated_path(model: nn.Module, path: str) -> str | None:
    """Where a module of the source lives in a :func:`truncate` d copy (``"layer3.2"`` →
    ``"body.6.2"`` block-wise, ``"body.9"`` layer-wise); None when the cut dropped it."""
    kept = getattr(model, "medtl", {}).get("truncated", {}).get("layers")
    if kept is None:
        return path
    if isinstance(getattr(model, "body", None), TokenTrunk):  # the transformer keeps its own module paths
        return f"body.vit.{path}" if any(under(path, k) for k in kept) else None
    for i, name in enumerate(kept):
        if path == name:
            return f"body.{i}"
        if path.startswith(name + "."):
            return f"body.{i}.{path[len(name) + 1:]}"
    return None
