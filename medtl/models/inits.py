"""The benchmark study's 21 ResNet-50 initialisations as a table (:data:`INITS`), and
:func:`fetch`, which downloads one into the weights cache.

Each row names where a checkpoint comes from and how its keys become a torchvision
ResNet-50's (the study's ``download_and_prepare_models.py`` rules, spec §2.1, as data):
the ``method`` is a key of :data:`medtl.models.SSL_PREFIXES` (its anchored prefix strip and
key drops) or None for a plain torchvision state dict. ``create("resnet50",
weights="moco-v2")`` loads a fetched row from the cache. Rows whose checkpoint is published
in another framework's format (BYOL's Haiku pickle, SimCLR's TensorFlow checkpoints) or
behind a manual download page say so, and loading them names the conversion tool or the
file to place where.

The cache is torchvision's (``$TORCH_HOME/hub/checkpoints``): ImageNet weights and the
zoo's files live side by side, and pointing ``TORCH_HOME`` elsewhere moves both.

Citation: Hosseinzadeh Taher et al., "A Systematic Benchmarking Analysis of Transfer
Learning for Medical Image Analysis", DART 2021 (spec ``benchmark-transfer.md`` §1–2);
SSL checkpoints as collected by Ericsson et al., "How Well Do Self-Supervised Models
Transfer?", CVPR 2021.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .._io import download
from .._registry import Registry
from .weights import weights_cache

#: Checkpoint formats: ``torch`` loads directly; the others need a conversion first.
FORMATS = {
    "torch": "a PyTorch checkpoint",
    "haiku": "a DeepMind Haiku pickle: convert it to a PyTorch state dict with the study's BYOL converter "
             "(needs jax, dill and dm-haiku; spec §2 step 2) and place the result as the row's file",
    "tf": "a TensorFlow checkpoint: convert it with tonylins/simclr-converter (SimCLR-v1) or "
          "Separius/SimCLRv2-Pytorch (SimCLR-v2) and place the converted .pth as the row's file",
    "manual": "published behind a download page (no direct URL): download it by hand",
}
CATEGORIES = ("supervised", "self-supervised", "fine-grained", "in-domain", "domain-adaptive")


@dataclass(frozen=True)
class Init:
    """One initialisation of the zoo (a row of :data:`INITS`).

    Attributes:
        name: the key used as ``weights=`` (``"moco-v2"``).
        category: one of :data:`CATEGORIES`.
        data: the pre-training data.
        objective: the pre-training objective.
        url: the direct download URL, or the page to download it from (``fmt="manual"``).
        file: the file name in the weights cache.
        method: the key-remap rule (:data:`medtl.models.SSL_PREFIXES` key) or None.
        fmt: one of :data:`FORMATS`.
        sha256: the expected SHA-256 where the upstream publishes one, else None;
            ``sha256_prefix`` a published hash prefix (torchvision's file names).
        arch: the architecture the checkpoint is for.
    """

    name: str
    category: str
    data: str
    objective: str
    url: str
    file: str
    method: str | None = None
    fmt: str = "torch"
    sha256: str | None = None
    sha256_prefix: str | None = None
    arch: str = "resnet50"

    def __post_init__(self) -> None:
        if self.category not in CATEGORIES:
            raise ValueError(f"init {self.name!r}: category must be one of {CATEGORIES}, got {self.category!r}")
        if self.fmt not in FORMATS:
            raise ValueError(f"init {self.name!r}: fmt must be one of {tuple(FORMATS)}, got {self.fmt!r}")

    @property
    def path(self) -> Path:
        """Where the file lives in the weights cache."""
        return weights_cache() / self.file


INITS: Registry[Init] = Registry("initialisation")
_FB = "https://dl.fbaipublicfiles.com"
_ZENODO = "https://zenodo.org/record/5205234"
_PYCONTRAST = "https://github.com/HobbitLong/PyContrast/blob/master/pycontrast/docs/MODEL_ZOO.md"
_SIMCLR = "https://github.com/google-research/simclr"
_PCL = "https://github.com/salesforce/PCL"


def register_init(init: Init, replace: bool = False) -> Init:
    """Add a row to :data:`INITS` (duplicates refused unless ``replace``)."""
    return INITS.register(init.name, init, replace=replace)


def get_init(name: str) -> Init:
    return INITS.get(name)


def is_init(name) -> bool:
    return isinstance(name, str) and name in INITS.names()


def inits_table():
    """The zoo as a DataFrame (one row per initialisation, with whether it is cached)."""
    import pandas as pd

    return pd.DataFrame([{**{k: getattr(i, k) for k in ("name", "category", "data", "objective", "method", "fmt",
                                                         "file", "url")},
                          "cached": i.path.is_file()} for i in INITS.values()])


def fetch(name: str, url: str | None = None, progress: bool = True, timeout: float = 60.0) -> Path:
    """Download initialisation ``name`` into the weights cache (progress bar; the bytes go to
    ``<file>.part`` and an interrupted download continues from there; the file appears
    atomically, and only when its published checksum matches). ``url`` replaces the row's
    URL (a mirror, e.g. ``file://``). A file already in the cache is returned as is.

    Raises:
        ValueError: a manual-download row, a row whose upstream format needs a conversion
            first (Haiku, TensorFlow: the message names the tool), or a checksum mismatch
            (nothing is written).
        OSError: the download failed (the message names the URL and the destination).
    """
    init = get_init(name)
    dest = init.path
    if dest.is_file():
        return dest
    if init.fmt == "manual" and url is None:
        raise ValueError(f"{name} is {FORMATS['manual']} from {init.url}; place it at {dest}")
    if init.fmt in ("haiku", "tf"):
        raise ValueError(f"{name}'s upstream checkpoint ({init.url}) is {FORMATS[init.fmt]}, {dest}")
    return download(url or init.url, dest, sha256=init.sha256, sha256_prefix=init.sha256_prefix, progress=progress,
                    timeout=timeout, what=f"{name} checkpoint")


def init_file(name: str, arch: str | None = None) -> Path:
    """The cached file of initialisation ``name`` (checked to be a checkpoint of ``arch``
    when given). A missing file raises naming what to do: ``medtl models fetch`` and the
    URL, the download page, or the conversion tool (Haiku and TensorFlow checkpoints are
    loaded once converted and placed at the row's file)."""
    init = get_init(name)
    if arch is not None and init.arch != arch:
        raise ValueError(f"initialisation {name!r} is a {init.arch} checkpoint, not {arch}")
    if init.path.is_file():
        return init.path
    if init.fmt == "torch":
        how = f"run `medtl models fetch {name}` (downloads {init.url})"
    else:
        how = f"its upstream checkpoint ({init.url}) is {FORMATS[init.fmt]}"
    raise FileNotFoundError(f"initialisation {name!r} is not in the weights cache: {how}; the file to place is "
                            f"{init.file} in {init.path.parent}")


def _rows() -> None:
    rn50 = dict(arch="resnet50")
    rows = [
        Init("imagenet", "supervised", "ImageNet-1k", "supervised classification",
             "https://download.pytorch.org/models/resnet50-0676ba61.pth", "resnet50-0676ba61.pth",
             sha256_prefix="0676ba61", **rn50),
        Init("insdis", "self-supervised", "ImageNet-1k", "instance discrimination (memory bank)",
             _PYCONTRAST, "insdis.pth",
             "insdis", "manual"),
        Init("moco-v1", "self-supervised", "ImageNet-1k", "momentum contrast",
             f"{_FB}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
             "moco_v1_200ep_pretrain.pth.tar", "moco-v1"),
        Init("moco-v2", "self-supervised", "ImageNet-1k", "momentum contrast, MLP head, stronger augmentation",
             f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
             "moco_v2_800ep_pretrain.pth.tar", "moco-v2"),
        Init("pcl-v1", "self-supervised", "ImageNet-1k", "prototypical contrastive learning",
             _PCL, "PCL_v1_epoch200.pth.tar", "pcl-v1", "manual"),
        Init("pcl-v2", "self-supervised", "ImageNet-1k", "prototypical contrastive learning v2",
             _PCL, "PCL_v2_epoch200.pth.tar", "pcl-v2", "manual"),
        Init("pirl", "self-supervised", "ImageNet-1k", "pretext-invariant representations (jigsaw)",
             _PYCONTRAST, "pirl.pth",
             "pirl", "manual"),
        Init("simclr-v1", "self-supervised", "ImageNet-1k", "contrastive learning (SimCLR)",
             _SIMCLR, "simclr-v1.pth", "simclr-v1", "tf"),
        Init("simclr-v2", "self-supervised", "ImageNet-1k", "contrastive learning (SimCLR v2)",
             _SIMCLR, "simclr-v2.pth", None, "tf"),
        Init("sela-v2", "self-supervised", "ImageNet-1k", "self-labelling (SeLa v2)",
             f"{_FB}/deepcluster/selav2_400ep_pretrain.pth.tar", "selav2_400ep_pretrain.pth.tar", "sela-v2"),
        Init("infomin", "self-supervised", "ImageNet-1k", "InfoMin augmentation contrast",
             _PYCONTRAST, "infomin.pth",
             "infomin", "manual"),
        Init("byol", "self-supervised", "ImageNet-1k", "bootstrap your own latent",
             "https://storage.googleapis.com/deepmind-byol/checkpoints/pretrain_res50x1.pkl", "byol.pth", "byol", "haiku"),
        Init("deepcluster-v2", "self-supervised", "ImageNet-1k", "deep clustering v2",
             f"{_FB}/deepcluster/deepclusterv2_800ep_pretrain.pth.tar", "deepclusterv2_800ep_pretrain.pth.tar",
             "deepcluster-v2"),
        Init("swav", "self-supervised", "ImageNet-1k", "swapped assignments between views",
             f"{_FB}/deepcluster/swav_800ep_pretrain.pth.tar", "swav_800ep_pretrain.pth.tar", "swav"),
        Init("barlowtwins", "self-supervised", "ImageNet-1k", "redundancy reduction (Barlow Twins)",
             f"{_FB}/barlowtwins/ep1000_bs2048_lrw0.2_lrb0.0048_lambd0.0051/resnet50.pth", "barlowtwins-resnet50.pth",
             "barlowtwins"),
        Init("inat2021", "fine-grained", "iNat2021 (2.7 M images, 10,000 species)", "supervised classification",
             "https://github.com/visipedia/newt", "inat2021_supervised_large.pth.tar", None, "manual"),
        Init("inat2021-mini", "fine-grained", "iNat2021 mini (500 k images)", "supervised classification",
             "https://github.com/visipedia/newt", "inat2021_supervised_mini.pth.tar", None, "manual"),
        Init("chestx-ray14", "in-domain", "ChestX-ray14 (from scratch)", "supervised multi-label classification",
             _ZENODO, "ChestX-ray14.pth", "chestx-ray14", "manual"),
        Init("chexpert", "in-domain", "CheXpert (from scratch)", "supervised multi-label classification",
             _ZENODO, "ChexPert.pth", "chexpert", "manual"),
        Init("imagenet_chestx-ray14", "domain-adaptive", "ImageNet → ChestX-ray14",
             "supervised, continued on ChestX-ray14", _ZENODO, "ImageNet_ChestX-ray14.pth", "imagenet_chestx-ray14",
             "manual"),
        Init("imagenet_chexpert", "domain-adaptive", "ImageNet → CheXpert", "supervised, continued on CheXpert",
             _ZENODO, "ImageNet_ChexPert.pth", "imagenet_chexpert", "manual"),
    ]
    for row in rows:
        register_init(row)


_rows()
