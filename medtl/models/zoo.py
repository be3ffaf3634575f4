"""The architecture table — one row per torchvision architecture, the single source of truth
for builders, heads, feature dimensions, analysable layers, FU layer pairs, stems and the
layer groups of the WT–ST hybrids."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn
from torchvision import models as tvm


@dataclass(frozen=True)
class ArchSpec:
    """One architecture.

    Attributes:
        name: torchvision builder name (``tvm.get_model`` name).
        family: resnet, densenet, vgg, … (selects the small-input stem and truncation rules).
        head: module replaced by a fresh classifier (``"fc"``, ``"classifier"``, …).
        head_in: input features of that fresh classifier.
        feature_node: module whose **input** is the penultimate representation (the
            dataset-transferability study's hook; for mobilenet_v3_small the whole
            classifier, 576-d).
        feature_dim: width of the penultimate representation.
        layers: ordered analysable layers (module paths) from input to output.
        fu_layers: the FU metric's (stem conv, next conv) pair.
        stem: the first convolution (changed by ``in_chans`` and ``stem="cifar"``).
        min_size: smallest input side the standard stem runs at.
        st_groups: ordered module-path prefixes of the WT–ST hybrid's layer groups, the
            first one numbered -1 (``reinit(..., up_to=L)`` keeps groups ≤ L).
        builder_kwargs: extra builder arguments used for every build.
    """

    name: str
    family: str
    head: str
    head_in: int
    feature_node: str
    feature_dim: int
    layers: tuple[str, ...]
    fu_layers: tuple[str, str]
    stem: str
    min_size: int = 28
    st_groups: tuple[tuple[str, ...], ...] = ()
    builder_kwargs: dict = field(default_factory=dict)

    @property
    def weights_enum(self):
        """torchvision's weights enum class of this architecture."""
        return tvm.get_model_weights(self.name)

    def build(self, **kwargs) -> nn.Module:
        return tvm.get_model(self.name, weights=None, **{**self.builder_kwargs, **kwargs})


def _resnet(name: str, dim: int) -> ArchSpec:
    return ArchSpec(
        name, "resnet", "fc", dim, "fc", dim,
        ("conv1", "layer1", "layer2", "layer3", "layer4"),
        ("conv1", "layer1.0.conv1"), "conv1",
        st_groups=(("conv1",), ("bn1",), ("layer1",), ("layer2",), ("layer3",), ("layer4",)),
    )


_VIT_BLOCKS = tuple(f"encoder.layers.encoder_layer_{i}" for i in range(12))
_SWIN_BLOCKS = tuple(f"features.{s}.{b}" for s, n in ((1, 2), (3, 2), (5, 6), (7, 2)) for b in range(n))

ARCHS: dict[str, ArchSpec] = {
    "resnet18": _resnet("resnet18", 512),
    "resnet50": _resnet("resnet50", 2048),
    "densenet121": ArchSpec(
        "densenet121", "densenet", "classifier", 1024, "classifier", 1024,
        ("features.conv0", "features.denseblock1", "features.denseblock2", "features.denseblock3",
         "features.denseblock4"),
        ("features.conv0", "features.denseblock1.denselayer1.conv1"), "features.conv0", min_size=32,
        st_groups=(("features.conv0",), ("features.norm0",), ("features.denseblock1", "features.transition1"),
                   ("features.denseblock2", "features.transition2"), ("features.denseblock3", "features.transition3"),
                   ("features.denseblock4", "features.norm5")),
    ),
    "efficientnet_v2_s": ArchSpec(
        "efficientnet_v2_s", "efficientnet", "classifier", 1280, "classifier", 1280,
        tuple(f"features.{i}" for i in range(8)),
        ("features.0.0", "features.1.0.block.0.0"), "features.0.0",
    ),
    "googlenet": ArchSpec(
        "googlenet", "googlenet", "fc", 1024, "fc", 1024,
        ("conv1", "conv2", "conv3", "inception3a", "inception3b", "inception4a", "inception4b", "inception4c",
         "inception4d", "inception4e", "inception5a", "inception5b"),
        ("conv1.conv", "conv2.conv"), "conv1.conv",
        builder_kwargs={"aux_logits": False, "init_weights": True, "transform_input": False},
    ),
    "mnasnet1_0": ArchSpec(
        "mnasnet1_0", "mnasnet", "classifier.1", 1280, "classifier", 1280,
        ("layers.2", "layers.5", "layers.8", "layers.9", "layers.10", "layers.11", "layers.12", "layers.13",
         "layers.16"),
        ("layers.0", "layers.3"), "layers.0",
    ),
    "mobilenet_v3_small": ArchSpec(
        "mobilenet_v3_small", "mobilenet", "classifier.3", 1024, "classifier", 576,
        tuple(f"features.{i}" for i in range(13)),
        ("features.0.0", "features.1.block.0.0"), "features.0.0",
    ),
    "vgg11": ArchSpec(
        "vgg11", "vgg", "classifier.6", 4096, "classifier.6", 4096,
        ("features.2", "features.5", "features.10", "features.15", "features.20"),
        ("features.0", "features.3"), "features.0", min_size=32,
    ),
    "convnext_tiny": ArchSpec(
        "convnext_tiny", "convnext", "classifier.2", 768, "classifier.2", 768,
        tuple(f"features.{i}" for i in range(8)),
        ("features.0.0", "features.1.0.block.0"), "features.0.0", min_size=32,
    ),
    "shufflenet_v2_x0_5": ArchSpec(
        "shufflenet_v2_x0_5", "shufflenet", "fc", 1024, "fc", 1024,
        ("conv1", "stage2", "stage3", "stage4", "conv5"),
        ("conv1.0", "stage2.0.branch1.0"), "conv1.0",
    ),
    "vit_b_16": ArchSpec(
        "vit_b_16", "vit", "heads.head", 768, "heads.head", 768,
        ("conv_proj", *_VIT_BLOCKS, "encoder.ln"),
        ("conv_proj", "encoder.layers.encoder_layer_0.mlp.0"), "conv_proj", min_size=224,
        st_groups=(("conv_proj",), ("class_token", "encoder.pos_embedding"), *((b,) for b in _VIT_BLOCKS[:-1]),
                   (_VIT_BLOCKS[-1], "encoder.ln")),
    ),
    "swin_t": ArchSpec(
        "swin_t", "swin", "head", 768, "head", 768,
        tuple(f"features.{i}" for i in range(8)) + ("norm",),
        ("features.0.0", "features.1.0.mlp.0"), "features.0.0",
        st_groups=(("features.0",), (), *((b,) for b in _SWIN_BLOCKS[:-1]), (_SWIN_BLOCKS[-1], "norm")),
    ),
}
#: Architecture keys of the dataset-transferability study's scenario B.
STUDY_KEYS: dict[str, str] = {
    "densenet": "densenet121", "efficientnet": "efficientnet_v2_s", "googlenet": "googlenet",
    "mnasnet": "mnasnet1_0", "mobilenet": "mobilenet_v3_small", "vgg": "vgg11", "convnext": "convnext_tiny",
    "shufflenet": "shufflenet_v2_x0_5", "resnet": "resnet18",
}


def spec(arch: str) -> ArchSpec:
    """The table row of ``arch`` (a torchvision name or a study key such as ``"densenet"``)."""
    key = STUDY_KEYS.get(arch, arch)
    if key not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(ARCHS)} "
                         f"(or study keys {', '.join(STUDY_KEYS)})")
    return ARCHS[key]


def get_module(model: nn.Module, path: str) -> nn.Module:
    """``model``'s submodule at a dotted path (``"features.0.0"``)."""
    try:
        return model.get_submodule(path)
    except AttributeError as err:
        raise ValueError(f"{type(model).__name__} has no module {path!r}") from err


def set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(get_module(model, parent) if parent else model, name, module)


# --- small-input ("cifar") stems -----------------------------------------------------------
def _restride(conv: nn.Conv2d, stride: int = 1) -> None:
    conv.stride = (stride, stride)


def _new_conv(old: nn.Conv2d, kernel: int, stride: int, padding: int) -> nn.Conv2d:
    return nn.Conv2d(old.in_channels, old.out_channels, kernel, stride, padding, bias=old.bias is not None)


def _cifar_stem(model: nn.Module, arch: ArchSpec) -> tuple[str, ...]:
    """Adapt ``model`` in place for native 28–32 px inputs; returns the names of parameters
    that no longer match pretrained shapes (left at their fresh initialisation)."""
    fam = arch.family
    if fam == "resnet":
        model.conv1 = _new_conv(model.conv1, 3, 1, 1)
        nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
        model.maxpool = nn.Identity()
        return ("conv1.weight",)
    if fam == "densenet":
        model.features.conv0 = _new_conv(model.features.conv0, 3, 1, 1)
        nn.init.kaiming_normal_(model.features.conv0.weight)
        model.features.pool0 = nn.Identity()
        return ("features.conv0.weight",)
    if fam == "vgg":
        model.features[2] = nn.Identity()  # first max-pool
        return ()
    if fam == "convnext":
        old = model.features[0][0]
        model.features[0][0] = _new_conv(old, 3, 1, 1)
        nn.init.trunc_normal_(model.features[0][0].weight, std=0.02)
        nn.init.zeros_(model.features[0][0].bias)
        return ("features.0.0.weight", "features.0.0.bias")
    if fam == "swin":
        old = model.features[0][0]
        model.features[0][0] = _new_conv(old, 2, 2, 0)
        return ("features.0.0.weight", "features.0.0.bias")
    if fam == "googlenet":
        _restride(model.conv1.conv)
        model.maxpool1 = nn.Identity()
        return ()
    if fam == "shufflenet":
        _restride(model.conv1[0])
        model.maxpool = nn.Identity()
        return ()
    if fam in ("efficientnet", "mobilenet", "mnasnet"):
        _restride(get_module(model, arch.stem))
        return ()
    if fam == "vit":
        return ()  # handled at build time (patch size 4)
    raise ValueError(f"no small-input stem defined for {arch.name}")


def build(arch: str | ArchSpec, stem: str = "imagenet", image_size: int | None = None,
          pretrained: bool = False) -> tuple[nn.Module, tuple[str, ...]]:
    """Build an architecture with torchvision's initialisation; returns the model and the
    parameter names a ``stem="cifar"`` change left un-pretrainable."""
    a = arch if isinstance(arch, ArchSpec) else spec(arch)
    if stem not in ("imagenet", "cifar"):
        raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}")
    kwargs: dict = {}
    if a.family == "vit":
        size = image_size or 224
        patch = 4 if stem == "cifar" else 16
        if size % patch:
            raise ValueError(f"{a.name} with stem={stem!r} needs an image size divisible by {patch}, got {size}")
        kwargs = {"image_size": size}
        if stem == "cifar":
            from torchvision.models.vision_transformer import VisionTransformer

            model = VisionTransformer(image_size=size, patch_size=4, num_layers=12, num_heads=12,
                                      hidden_dim=768, mlp_dim=3072)
            return model, ("conv_proj.weight", "encoder.pos_embedding")
    if a.family == "googlenet" and pretrained:
        kwargs["transform_input"] = True  # torchvision's ImageNet GoogLeNet expects it
    model = a.build(**kwargs)
    if stem == "cifar":
        return model, _cifar_stem(model, a)
    if image_size is not None and image_size < a.min_size:
        raise ValueError(
            f"{a.name} with the standard stem needs inputs of at least {a.min_size} px, got {image_size}; "
            f"use stem='cifar' for native small images or up-sample with loader(image_size=...)"
        )
    return model, ()


def all_layer_names(model: nn.Module) -> list[str]:
    return [name for name, _ in model.named_modules() if name]

