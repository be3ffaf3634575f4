"""U-Nets for binary segmentation (the benchmark study's segmentation arm): a
``segmentation-models-pytorch`` U-Net whose encoder is a medtl architecture, initialised
from **any** medtl weight source through :func:`medtl.models.create` (so ImageNet weights
come from torchvision's file and cache, checkpoints through the remap rules, zoo names
from the weights cache, saved medtl sources from their folder) and never through smp's
own downloader."""

from __future__ import annotations

from torch import nn

from ..runtime import seeded
from ._create import create
from .weights import LoadReport, load_state
from .zoo import spec, under

#: U-Net input sides must be multiples of this (five ×2 down-samplings).
UNET_MULTIPLE = 32


def unet_encoders() -> list[str]:
    """Architectures of medtl's table that smp can build a U-Net encoder of (same module
    names as torchvision, so a classification state dict loads into the encoder as is)."""
    import segmentation_models_pytorch as smp

    from .zoo import ARCHS

    smp_names = set(smp.encoders.get_encoder_names())
    return [name for name in ARCHS.names() if name in smp_names]


def unet(encoder: str = "resnet18", weights=None, *, in_chans: int = 3, classes: int = 1, method: str | None = None,
         strict: bool = True, seed: int | None = None, image_size: int | None = None,
         decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)) -> nn.Module:
    """A U-Net with a medtl encoder and weights from any medtl source.

    Args:
        encoder: an architecture of the table with an smp U-Net encoder
            (:func:`unet_encoders`: resnet18/34/50/101/152, densenet121/161/169/201, …).
        weights: anything :func:`medtl.models.create` takes — None (random), ``"imagenet"``
            (torchvision's cache under ``TORCH_HOME``), a zoo name (``"moco-v2"``), a
            checkpoint path (with ``method`` for SSL remap rules), ``"source:NAME"`` (a
            medtl-trained classification source) or a state dict. The classifier (the
            head's top-level module) is dropped and listed in the report; every other tensor
            is copied into the encoder bit for bit.
        in_chans: input channels (1 builds a grey stem from the pretrained kernel).
        classes: output maps (1 for binary segmentation: one logit per pixel).
        strict: missing encoder tensors are an error unless False.
        seed: seeds the random initialisation of the encoder (when ``weights`` is None) and
            of the decoder.
        image_size: the input side the model will see (a multiple of 32).

    Returns:
        The ``smp.Unet`` (outputs logits ``B×classes×H×W``); ``model.medtl`` records the
        task, encoder, weights, normalisation and ``encoder_report`` (a
        :class:`LoadReport` of the encoder load: loaded, missing, unexpected keys).
    """
    import segmentation_models_pytorch as smp

    a = spec(encoder)
    valid = unet_encoders()
    if a.name not in valid:
        raise ValueError(f"{a.name} has no U-Net encoder in segmentation-models-pytorch; valid: {', '.join(valid)}")
    if image_size is not None and image_size % UNET_MULTIPLE:
        raise ValueError(f"a U-Net needs input sides that are multiples of {UNET_MULTIPLE}, got image_size={image_size}")
    with seeded(seed):
        net = smp.Unet(encoder_name=a.name, encoder_weights=None, in_channels=in_chans, classes=classes,
                       decoder_channels=tuple(decoder_channels))
    report, label, normalize = LoadReport(), None, "medmnist"
    if weights is not None:
        source = create(a.name, weights=weights, in_chans=in_chans, method=method, strict=strict, seed=seed)
        info = source.medtl
        if info.get("stem", "imagenet") != "imagenet":
            raise ValueError(f"weights {weights!r} are a {info['stem']}-stem model; a U-Net encoder needs the standard "
                             "stem (train the source with stem='imagenet')")
        classifier = a.head.split(".")[0]  # the whole classifier (VGG's MLP too): a U-Net has none
        state = source.state_dict()
        dropped = [k for k in state if under(k, classifier)]
        for k in dropped:
            del state[k]
        report = load_state(net.encoder, state, strict=strict, what=f"encoder weights {info['weights']}")
        report.dropped = dropped
        label, normalize = info["weights"], info.get("normalize", "medmnist")
    net.medtl = {"task": "segmentation", "encoder": a.name, "num_classes": classes, "in_chans": in_chans,
                 "weights": label, "normalize": normalize, "image_size": image_size, "min_size": UNET_MULTIPLE,
                 "encoder_report": report}
    return net
