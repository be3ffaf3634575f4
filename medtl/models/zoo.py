"""The architecture table: one keyword row (:class:`ArchSpec`) per architecture, the single
source of truth for builders, heads, feature widths, analysable layers, FU layer pairs,
stems, truncation cut lists and the layer groups of the WT–ST hybrids. Every quirk of a
model is a field of its row, read generically by :func:`build` and the other layers (as
timm's ``_cfg(first_conv=, classifier=, …)``). Adding an architecture — torchvision or not —
is one :func:`register_arch` call::

    M.register_arch(M.ArchSpec("tiny", builder=TinyNet, head="fc", head_in=32, feature_node="fc",
                               feature_dim=32, layers=("conv", "block"), fu_layers=("conv", "block.0"),
                               stem="conv"))
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlparse

from torch import nn

from .._registry import Registry


def under(name: str, prefixes) -> bool:
    """Whether a parameter / module path ``name`` lies under one of the module ``prefixes``
    (equal to it, or starting with it followed by a dot: ``fc`` does not catch ``mlp.fc1``)."""
    if isinstance(prefixes, str):
        prefixes = (prefixes,)
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass(frozen=True)
class ArchSpec:
    """One architecture (a row of :data:`ARCHS`).

    Attributes:
        name: the table key (the torchvision builder name for torchvision models).
        head: module replaced by a fresh classifier (``"fc"``, ``"classifier"``, …).
        head_in: input features of that fresh classifier.
        feature_node: module whose **input** is the penultimate representation (the
            dataset-transferability study's hook; for mobilenet_v3_small the whole
            classifier, 576-d).
        feature_dim: width of the penultimate representation.
        layers: ordered analysable layers (module paths), input to output, at the coarse
            ``"stage"`` granularity.
        fu_layers: the FU metric's (stem conv, next conv) pair.
        stem: the first convolution (changed by ``in_chans`` and ``stem="cifar"``).
        builder: ``builder(**kwargs) -> nn.Module`` building the architecture with random
            weights; None uses ``torchvision.models.get_model(name)``.
        family: a label grouping related rows (resnet, densenet, …), for listings.
        granularities: more layer lists by granularity name (``{"block": (...)}``); the
            ``"stage"`` list is ``layers``.
        layer_params: for a listed layer without parameters of its own (ResNet's ``relu``,
            the hidden-representations study's ``conv1_relu``), the module prefixes whose
            parameters produce it (``("conv1", "bn1")``); weight analyses (L2, layer
            importance) read them through :meth:`params_of`.
        small_stem: the :data:`SMALL_STEMS` recipe adapting the model to native 28–32 px
            inputs (``stem="cifar"``), or None when it has none.
        min_size: smallest input side the standard stem runs at.
        native_size: the input side its ImageNet weights were trained at (299 for
            Inception-v3, 224 otherwise).
        size_kwarg: the builder argument that receives the input size (ViT's
            ``"image_size"``), or None.
        patch: the patch size when the input side must be a multiple of it.
        st_groups: ordered module-path prefixes of the WT–ST hybrid's layer groups, the
            first one numbered -1 (``reinit(..., up_to=L)`` keeps groups ≤ L); empty: the
            stem, then each listed layer.
        truncation: the :data:`TRUNCATIONS` recipe name for :func:`medtl.models.truncate`.
        cuts: valid truncation cuts per mode (``{"block": (1, 2, 3, -1)}``).
        trunc_head: the truncated-transfer study's head for this architecture (``"gap"``
            for ResNets as its runs used, ``"flatten"`` for DenseNets) and
            ``trunc_head_init`` its initialisation (``"kaiming"`` for ResNets, PyTorch's
            ``"default"`` for DenseNets).
        imagenet_missing: module prefixes its ImageNet weights do not cover by design (left
            at their random initialisation: TransFusion's slimmed stages).
        channels_last: module-path prefixes whose activations come out ``B×H×W×C``
            (Swin's stages); features are permuted back to ``B×C×H×W``.
        builder_kwargs: arguments for every build.
        pretrained_kwargs: extra builder arguments when ImageNet weights will be loaded
            (GoogLeNet's ``transform_input``).
        imagenet_drop: key prefixes dropped from the ImageNet state dict (GoogLeNet's aux
            heads).
        adapt_imagenet: ``fn(state, model, image_size) -> state`` adapting the ImageNet state
            to the built model (ViT's position-embedding interpolation).
        weights: where ImageNet weights come from: ``"torchvision"`` (its enum and cache) or
            a callable ``fn(version) -> state dict``.
        normalize: the input normalisation its ImageNet weights expect.
    """

    name: str
    head: str
    head_in: int
    feature_node: str
    feature_dim: int
    layers: tuple[str, ...]
    fu_layers: tuple[str, str]
    stem: str
    builder: Callable[..., nn.Module] | None = None
    family: str = ""
    granularities: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    layer_params: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    small_stem: str | None = None
    min_size: int = 28
    native_size: int = 224
    size_kwarg: str | None = None
    patch: int = 1
    st_groups: tuple[tuple[str, ...], ...] = ()
    truncation: str | None = None
    cuts: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    trunc_head: str = "gap"
    trunc_head_init: str = "default"
    imagenet_missing: tuple[str, ...] = ()
    channels_last: tuple[str, ...] = ()
    builder_kwargs: Mapping = field(default_factory=dict)
    pretrained_kwargs: Mapping = field(default_factory=dict)
    imagenet_drop: tuple[str, ...] = ()
    adapt_imagenet: Callable | None = None
    weights: str | Callable = "torchvision"
    normalize: str = "imagenet"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "granularities", MappingProxyType({"stage": self.layers, **dict(self.granularities)}))

    @property
    def weights_enum(self):
        """torchvision's weights enum class of this architecture."""
        from torchvision import models as tvm

        return tvm.get_model_weights(self.name)

    def layer_list(self, granularity: str = "stage") -> tuple[str, ...]:
        """The analysable layers at ``granularity`` (``"stage"``, ``"block"``, …)."""
        if granularity not in self.granularities:
            raise ValueError(f"{self.name} has no {granularity!r} layer list; granularities: "
                             f"{', '.join(self.granularities)}")
        return self.granularities[granularity]

    def params_of(self, layer: str) -> tuple[str, ...]:
        """Module prefixes holding the parameters behind ``layer``'s activation."""
        return tuple(self.layer_params.get(layer, (layer,)))

    def build(self, **kwargs) -> nn.Module:
        """The architecture with random weights (the builder's own initialisation)."""
        kwargs = {**self.builder_kwargs, **kwargs}
        if self.builder is not None:
            return self.builder(**kwargs)
        from torchvision import models as tvm

        return tvm.get_model(self.name, weights=None, **kwargs)


#: The architecture table; ``ARCHS["resnet18"]`` is a row, ``list(ARCHS)`` the names.
ARCHS: Registry[ArchSpec] = Registry("architecture")

#: Architecture keys of the dataset-transferability study's scenario B.
STUDY_KEYS: dict[str, str] = {
    "densenet": "densenet121", "efficientnet": "efficientnet_v2_s", "googlenet": "googlenet",
    "mnasnet": "mnasnet1_0", "mobilenet": "mobilenet_v3_small", "vgg": "vgg11", "convnext": "convnext_tiny",
    "shufflenet": "shufflenet_v2_x0_5", "resnet": "resnet18",
}


def register_arch(spec: ArchSpec, replace: bool = False) -> ArchSpec:
    """Add an architecture row (a duplicate name is an error unless ``replace``)."""
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"register_arch needs an ArchSpec, got {type(spec).__name__}")
    if spec.small_stem is not None and spec.small_stem not in SMALL_STEMS:
        raise ValueError(f"{spec.name}: unknown small_stem recipe {spec.small_stem!r}; valid: {', '.join(SMALL_STEMS)}")
    return ARCHS.register(spec.name, spec, replace=replace)


def spec(arch: str | ArchSpec) -> ArchSpec:
    """The table row of ``arch`` (a table name or a study key such as ``"densenet"``)."""
    if isinstance(arch, ArchSpec):
        return arch
    return ARCHS.get(arch)


def get_module(model: nn.Module, path: str) -> nn.Module:
    """``model``'s submodule at a dotted path (``"features.0.0"``)."""
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(f"{type(model).__name__} has no module {path!r}") from err


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_module(model, parent) if parent else model, name, module)


def all_layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]


# --- small-input ("cifar") stems -----------------------------------------------------------
def _new_conv(old: nn.Conv2d, kernel: int, stride: int, padding: int) -> nn.Conv2d:
    return nn.Conv2d(old.in_channels, old.out_channels, kernel, stride, padding, bias=old.bias is not None)


def _stem_resnet(make, a, image_size):
    model = make()
    model.conv1 = _new_conv(model.conv1, 3, 1, 1)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model, ("conv1.weight",)


def _stem_densenet(make, a, image_size):
    model = make()
    model.features.conv0 = _new_conv(model.features.conv0, 3, 1, 1)
    nn.init.kaiming_normal_(model.features.conv0.weight)
    model.features.pool0 = nn.Identity()
    return model, ("features.conv0.weight",)


def _stem_vgg(make, a, image_size):
    model = make()
    model.features[2] = nn.Identity()  # first max-pool
    return model, ()


def _stem_convnext(make, a, image_size):
    model = make()
    model.features[0][0] = _new_conv(model.features[0][0], 3, 1, 1)
    nn.init.trunc_normal_(model.features[0][0].weight, std=0.02)
    nn.init.zeros_(model.features[0][0].bias)
    return model, ("features.0.0.weight", "features.0.0.bias")


def _stem_swin(make, a, image_size):
    model = make()
    model.features[0][0] = _new_conv(model.features[0][0], 2, 2, 0)
    return model, ("features.0.0.weight", "features.0.0.bias")


def _stem_googlenet(make, a, image_size):
    model = make()
    model.conv1.conv.stride = (1, 1)
    model.maxpool1 = nn.Identity()
    return model, ()


def _stem_shufflenet(make, a, image_size):
    model = make()
    model.conv1[0].stride = (1, 1)
    model.maxpool = nn.Identity()
    return model, ()


def _stem_restride(make, a, image_size):
    model = make()
    get_module(model, a.stem).stride = (1, 1)
    return model, ()


def _stem_vit_patch4(make, a, image_size):
    from torchvision.models.vision_transformer import VisionTransformer

    size = image_size or 28
    if size % 4:
        raise ValueError(f"{a.name} with stem='cifar' needs an image size divisible by 4, got {size}")
    vit = VisionTransformer(image_size=size, patch_size=4, num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072)
    return vit, ("conv_proj.weight", "encoder.pos_embedding")


#: Small-input stem recipes: ``recipe(make, spec, image_size) -> (model, reinit_names)``, where
#: ``make()`` builds the standard model and ``reinit_names`` are the parameters no longer
#: matching pretrained shapes.
SMALL_STEMS: Registry[Callable] = Registry("small-input stem recipe")
for _name, _fn in {"resnet": _stem_resnet, "densenet": _stem_densenet, "vgg": _stem_vgg, "convnext": _stem_convnext,
                   "swin": _stem_swin, "googlenet": _stem_googlenet, "shufflenet": _stem_shufflenet,
                   "restride": _stem_restride, "vit_patch4": _stem_vit_patch4}.items():
    SMALL_STEMS.register(_name, _fn)


def build(arch: str | ArchSpec, stem: str = "imagenet", image_size: int | None = None,
          pretrained: bool = False) -> tuple[nn.Module, tuple[str, ...]]:
    """Build an architecture with its builder's initialisation; returns the model and the
    parameter names a ``stem="cifar"`` change left un-pretrainable."""
    a = spec(arch)
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
    if image_size is not None and (not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1):
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
    kwargs = dict(a.pretrained_kwargs) if pretrained else {}
    if stem == "cifar":
        if a.small_stem is None:
            raise ValueError(f"{a.name} has no small-input stem recipe; use stem='imagenet' and up-sample")
        return SMALL_STEMS.get(a.small_stem)(lambda: a.build(**kwargs), a, image_size)
    size = image_size
    if size is not None and size < a.min_size:
        raise ValueError(
            f"{a.name} with the standard stem needs inputs of at least {a.min_size} px, got {size}; "
            f"use stem='cifar' for native small images or up-sample with loader(image_size=...)"
        )
    if a.patch > 1 and size is not None and size % a.patch:
        raise ValueError(f"{a.name} with stem={stem!r} needs an image size divisible by {a.patch}, got {size}")
    if a.size_kwarg:
        kwargs[a.size_kwarg] = size or 224
    return a.build(**kwargs), ()


# --- the table -----------------------------------------------------------------------------
def _resnet(name: str, dim: int, blocks: tuple[int, ...]) -> ArchSpec:
    bottlenecks = tuple(f"layer{s + 1}.{b}" for s, n in enumerate(blocks) for b in range(n))
    return ArchSpec(
        name, family="resnet", head="fc", head_in=dim, feature_node="fc", feature_dim=dim,
        layers=("relu", "layer1", "layer2", "layer3", "layer4"),  # the study's conv1_relu, then each stage
        # "block": the feature-reuse study's target modules (§C.5.2): conv1 itself (its output before
        # BN; importance resets conv1 only), each bottleneck, fc; "stage" starts at the post-BN ReLU
        granularities={"block": ("conv1", *bottlenecks, "fc")}, layer_params={"relu": ("conv1", "bn1")},
        fu_layers=("conv1", "layer1.0.conv1"), stem="conv1", small_stem="resnet",
        st_groups=(("conv1",), ("bn1",), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
        truncation="resnet", cuts={"block": (1, 2, 3, -1), "layer": (*range(1, sum(blocks) + 2), -1)},
        trunc_head_init="kaiming",
    )


def _vit_pos_embedding(state: dict, model: nn.Module, image_size: int | None) -> dict:
    own = model.state_dict().get("encoder.pos_embedding")
    if model.conv_proj.kernel_size[0] != 16:
        return state  # a small-input (patch 4) stem: the embeddings are re-initialised, not interpolated
    if own is not None and "encoder.pos_embedding" in state and own.shape != state["encoder.pos_embedding"].shape:
        from torchvision.models.vision_transformer import interpolate_embeddings

        state = interpolate_embeddings(image_size or 224, 16, state)
    return state


def slim_resnet50(slim_from: int = 3, slim_factor: int = 2, num_classes: int = 1000) -> nn.Module:
    """TransFusion's slim ResNet-50 (Raghu et al. 2019; the truncated-transfer study's TF
    baseline, spec §A.1.4): stages ``layer{slim_from+1}..layer4`` have ``planes //
    slim_factor`` and a fresh initialisation (Kaiming-normal fan-out convolutions, BatchNorm
    1/0, as torchvision's ResNet); the stem and ``layer1..layer{slim_from}`` keep ResNet-50's
    shapes, so ImageNet weights load into them. GAP → ``Linear(planes·4, num_classes)``.
    ``slim_from=3`` (TF-1) has 12.95 M parameters with a 2-class head."""
    from torchvision.models.resnet import Bottleneck, conv1x1

    if not 1 <= slim_from <= 3:
        raise ValueError(f"slim_from must be 1, 2 or 3, got {slim_from}")
    from torchvision import models as tvm  # torchvision on first use: importing medtl stays light

    model = tvm.resnet50(num_classes=num_classes)
    inplanes = 64 * 4 * 2 ** (slim_from - 1)
    for stage in range(slim_from + 1, 5):
        planes, blocks, stride = 64 * 2 ** (stage - 1) // slim_factor, (3, 4, 6, 3)[stage - 1], 2
        down = nn.Sequential(conv1x1(inplanes, planes * 4, stride), nn.BatchNorm2d(planes * 4))
        layers = [Bottleneck(inplanes, planes, stride, down)] + [Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
        setattr(model, f"layer{stage}", nn.Sequential(*layers))
        inplanes = planes * 4
    model.fc = nn.Linear(inplanes, num_classes)
    resnet_init(model)
    return model


def resnet_init(module: nn.Module) -> None:
    """torchvision's ResNet initialisation, in place: Kaiming-normal fan-out convolutions,
    BatchNorm weight 1 and bias 0 (linear layers keep theirs)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _resnet50_imagenet(version: str) -> dict:
    from .weights import imagenet_state_dict

    return imagenet_state_dict("resnet50", version)


_VIT_BLOCKS = tuple(f"encoder.layers.encoder_layer_{i}" for i in range(12))
_SWIN_BLOCKS = tuple(f"features.{s}.{b}" for s, n in ((1, 2), (3, 2), (5, 6), (7, 2)) for b in range(n))
#: Swin's hybrid groups (spec §C.1): blocks counted across the stages (2+2+6+2); a stage's
#: patch merging goes with its last block (it is reset when that block is stats-transferred).
_SWIN_GROUPS = tuple((b, f"features.{int(b.split('.')[1]) + 1}") if b.endswith(f".{n - 1}") and b.split(".")[1] != "7"
                     else (b,) for b, n in zip(_SWIN_BLOCKS, [2, 2, 2, 2, *[6] * 6, 2, 2]))


def timm_builder(model_name: str) -> Callable[..., nn.Module]:
    """A builder of a timm model with random weights (timm's own initialisation)."""

    def build(**kwargs) -> nn.Module:
        import timm

        return timm.create_model(model_name, pretrained=False, **kwargs)

    build.__name__ = f"timm:{model_name}"
    return build


def _hf_cache() -> str:
    """The Hugging Face hub cache, read at call time (``HF_HUB_CACHE``, ``HF_HOME/hub``)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    from huggingface_hub import constants

    return constants.HF_HUB_CACHE


def _read_timm_file(model_name: str, file: Path) -> dict:
    import torch

    if file.suffix == ".npz":  # Google's JAX checkpoints (ViT AugReg): timm's own converter
        import timm

        model = timm.create_model(model_name, pretrained=False)
        model.load_pretrained(str(file))
        return model.state_dict()
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    return torch.load(file, map_location="cpu", weights_only=False)


def timm_imagenet(model_name: str) -> Callable[[str], dict]:
    """ImageNet weights of a timm model, read from the caches timm downloads to (torch hub's
    ``$TORCH_HOME/hub/checkpoints`` for URL weights — ``.pth``, or Google's ``.npz`` converted
    by timm — and the Hugging Face cache for hub weights); absent, a FileNotFoundError names
    the file and where to place it. A checkpoint file anywhere is ``weights=<path>``."""

    def weights(version: str) -> dict:
        import timm
        import torch

        cfg = timm.create_model(model_name, pretrained=False).pretrained_cfg
        tried = []
        if cfg.get("url"):
            file = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(cfg["url"]).path).name
            tried.append(str(file))
            if file.is_file():
                return _read_timm_file(model_name, file)
        if cfg.get("hf_hub_id"):
            from huggingface_hub import try_to_load_from_cache

            for name in ("model.safetensors", "pytorch_model.bin"):
                cached = try_to_load_from_cache(cfg["hf_hub_id"], name, cache_dir=_hf_cache())
                tried.append(f"{cfg['hf_hub_id']}/{name} in the Hugging Face cache {_hf_cache()}")
                if isinstance(cached, str) and Path(cached).is_file():
                    return _read_timm_file(model_name, Path(cached))
        raise FileNotFoundError(
            f"ImageNet weights of {model_name} are not in timm's caches (looked for {'; '.join(tried)}); download them "
            f"once with timm.create_model({model_name!r}, pretrained=True) on a machine with network, or place the "
            f"file {Path(urlparse(cfg.get('url') or 'x/model.pth').path).name} in {Path(torch.hub.get_dir()) / 'checkpoints'}"
            ", or pass weights=<path to the checkpoint>")

    return weights


def _timm_filter(state: dict, model: nn.Module, image_size: int | None) -> dict:
    """timm's own checkpoint conversion (position-embedding resampling to the model's grid)."""
    from timm.models.vision_transformer import checkpoint_filter_fn

    return checkpoint_filter_fn(state.get("model", state), model)


def _vit_rows(name: str, timm_name: str, dim: int) -> ArchSpec:
    blocks = tuple(f"blocks.{i}" for i in range(12))
    return ArchSpec(
        name, family="vit", builder=timm_builder(timm_name), head="head", head_in=dim, feature_node="head",
        feature_dim=dim, layers=("patch_embed", "blocks.3", "blocks.7", "blocks.11", "norm"),
        # "block" is the feature-reuse study's target modules (§C.5.2): each block's attention and
        # MLP branch outputs (before the residual add); "residual" the residual stream after each block
        granularities={"block": ("patch_embed", *(f"{b}.{part}" for b in blocks for part in ("attn", "mlp")), "head"),
                       "residual": ("patch_embed", *blocks, "head")},
        fu_layers=("patch_embed.proj", "blocks.0.mlp.fc1"), stem="patch_embed.proj", min_size=16,
        size_kwarg="img_size", patch=16, weights=timm_imagenet(timm_name), adapt_imagenet=_timm_filter,
        truncation="vit_timm", cuts={"block": (3, 6, 9, -1)},
        st_groups=(("patch_embed", "cls_token", "pos_embed"), *((b,) for b in blocks), ("norm", "fc_norm")),
    )

def _densenet(name: str, width: int, **extra) -> ArchSpec:
    """A torchvision DenseNet row: ``width`` is the classifier's input (feature) width."""
    return ArchSpec(
        name, family="densenet", head="classifier", head_in=width, feature_node="classifier", feature_dim=width,
        layers=("features.conv0", "features.denseblock1", "features.denseblock2", "features.denseblock3",
                "features.denseblock4"),
        granularities={"block": ("features.relu0", "features.denseblock1", "features.transition1",
                                 "features.denseblock2", "features.transition2", "features.denseblock3",
                                 "features.transition3", "features.denseblock4", "features.norm5", "classifier")},
        layer_params={"features.relu0": ("features.conv0", "features.norm0")},
        fu_layers=("features.conv0", "features.denseblock1.denselayer1.conv1"), stem="features.conv0",
        small_stem="densenet", min_size=32, truncation="densenet", cuts={"block": (1, 2, 3, -1)},
        **{"trunc_head": "flatten", **extra})  # the study truncates DenseNets with Flatten + Linear (§A.1.3)


for _row in (
    _resnet("resnet18", 512, (2, 2, 2, 2)),
    _resnet("resnet50", 2048, (3, 4, 6, 3)),
    _densenet("densenet121", 1024, st_groups=(
        ("features.conv0",), ("features.norm0",), ("features.denseblock1", "features.transition1"),
        ("features.denseblock2", "features.transition2"), ("features.denseblock3", "features.transition3"),
        ("features.denseblock4", "features.norm5"))),
    _densenet("densenet201", 1920),
    *(ArchSpec(
        f"transfusion{s}", family="transfusion", builder=partial(slim_resnet50, slim_from=s),
        head="fc", head_in=256 * 4, feature_node="fc", feature_dim=256 * 4,
        layers=("relu", "layer1", "layer2", "layer3", "layer4"), fu_layers=("conv1", "layer1.0.conv1"),
        layer_params={"relu": ("conv1", "bn1")}, stem="conv1", small_stem="resnet", weights=_resnet50_imagenet,
        imagenet_missing=tuple(f"layer{i}" for i in range(s + 1, 5)),
    ) for s in (1, 2, 3)),
    ArchSpec(
        "efficientnet_v2_s", family="efficientnet", head="classifier", head_in=1280, feature_node="classifier",
        feature_dim=1280, layers=tuple(f"features.{i}" for i in range(8)),
        fu_layers=("features.0.0", "features.1.0.block.0.0"), stem="features.0.0", small_stem="restride",
    ),
    ArchSpec(
        "googlenet", family="googlenet", head="fc", head_in=1024, feature_node="fc", feature_dim=1024,
        layers=("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
                "inception4d", "inception4e", "inception5a", "inception5b"),
        fu_layers=("conv1.conv", "conv2.conv"), stem="conv1.conv", small_stem="googlenet",
        builder_kwargs={"aux_logits": False, "init_weights": True, "transform_input": False},
        pretrained_kwargs={"transform_input": True},  # torchvision's ImageNet GoogLeNet expects it
        imagenet_drop=("aux1", "aux2"),
    ),
    ArchSpec(
        "mnasnet1_0", family="mnasnet", head="classifier.1", head_in=1280, feature_node="classifier",
        feature_dim=1280,
        layers=("layers.2", "layers.5", "layers.8", "layers.9", "layers.10", "layers.11", "layers.12", "layers.13",
                "layers.16"),
        fu_layers=("layers.0", "layers.3"), stem="layers.0", small_stem="restride",
    ),
    ArchSpec(
        "mobilenet_v3_small", family="mobilenet", head="classifier.3", head_in=1024, feature_node="classifier",
        feature_dim=576, layers=tuple(f"features.{i}" for i in range(13)),
        fu_layers=("features.0.0", "features.1.block.0.0"), stem="features.0.0", small_stem="restride",
    ),
    ArchSpec(
        "vgg11", family="vgg", head="classifier.6", head_in=4096, feature_node="classifier.6", feature_dim=4096,
        layers=("features.2", "features.5", "features.10", "features.15", "features.20"),
        fu_layers=("features.0", "features.3"), stem="features.0", small_stem="vgg", min_size=32,
    ),
    ArchSpec(
        "convnext_tiny", family="convnext", head="classifier.2", head_in=768, feature_node="classifier.2",
        feature_dim=768, layers=tuple(f"features.{i}" for i in range(8)),
        fu_layers=("features.0.0", "features.1.0.block.0"), stem="features.0.0", small_stem="convnext", min_size=32,
    ),
    ArchSpec(
        "shufflenet_v2_x0_5", family="shufflenet", head="fc", head_in=1024, feature_node="fc", feature_dim=1024,
        layers=("conv1", "stage2", "stage3", "stage4", "conv5"),
        fu_layers=("conv1.0", "stage2.0.branch1.0"), stem="conv1.0", small_stem="shufflenet",
    ),
    ArchSpec(
        "inception_v3", family="inception", head="fc", head_in=2048, feature_node="fc", feature_dim=2048,
        layers=("Conv2d_4a_3x3", "Mixed_5d", "Mixed_6e", "Mixed_7c"),
        granularities={"block": ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                                 "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                                 "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "fc")},
        fu_layers=("Conv2d_1a_3x3.conv", "Conv2d_2a_3x3.conv"), stem="Conv2d_1a_3x3.conv", min_size=75,
        native_size=299, truncation="inception", cuts={"block": (1, 2, -1)},
        builder_kwargs={"aux_logits": False, "init_weights": True, "transform_input": False},
        imagenet_drop=("AuxLogits",),
        st_groups=(("Conv2d_1a_3x3",), ("Conv2d_2a_3x3", "Conv2d_2b_3x3"), ("Conv2d_3b_1x1",), ("Conv2d_4a_3x3",),
                   ("Mixed_5b", "Mixed_5c", "Mixed_5d"), ("Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
                   ("Mixed_7a", "Mixed_7b", "Mixed_7c")),
    ),
    _vit_rows("deit_small", "deit_small_patch16_224", 384),
    _vit_rows("vit_small", "vit_small_patch16_224", 384),
    ArchSpec(
        "vit_b_16", family="vit", head="heads.head", head_in=768, feature_node="heads.head", feature_dim=768,
        layers=("conv_proj", *_VIT_BLOCKS, "encoder.ln"),
        fu_layers=("conv_proj", "encoder.layers.encoder_layer_0.mlp.0"), stem="conv_proj", small_stem="vit_patch4",
        min_size=224, size_kwarg="image_size", patch=16, adapt_imagenet=_vit_pos_embedding,
        # "block": the study's target modules, each encoder layer's attention branch (its dropout's
        # output: the attention output before the residual add) and MLP branch; "residual" the stream
        granularities={"block": ("conv_proj", *(f"{b}.{part}" for b in _VIT_BLOCKS for part in ("dropout", "mlp")),
                                 "heads.head"),
                       "residual": ("conv_proj", *_VIT_BLOCKS, "heads.head")},
        layer_params={f"{b}.dropout": (f"{b}.self_attention",) for b in _VIT_BLOCKS},
        st_groups=(("conv_proj", "class_token", "encoder.pos_embedding"), *((b,) for b in _VIT_BLOCKS),
                   ("encoder.ln",)),
    ),
    ArchSpec(
        "swin_t", family="swin", head="head", head_in=768, feature_node="head", feature_dim=768,
        layers=(*(f"features.{i}" for i in range(8)), "norm"),
        fu_layers=("features.0.0", "features.1.0.mlp.0"), stem="features.0.0", small_stem="swin",
        channels_last=("features", "norm"),
        granularities={"block": ("features.0", *(f"{b}.{part}" for b in _SWIN_BLOCKS for part in ("attn", "mlp")),
                                 "head"),  # the study's target modules: attention and MLP branch outputs
                       "residual": ("features.0", *_SWIN_BLOCKS, "head")},
        st_groups=(("features.0",), *_SWIN_GROUPS, ("norm",)),
    ),
):
    register_arch(_row)
for _key, _name in STUDY_KEYS.items():
    ARCHS.alias(_key, _name)
