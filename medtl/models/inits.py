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

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._io import atomic_write, download
from .._registry import Registry
from .weights import weights_cache

#: Checkpoint formats: ``torch`` loads directly; the others need a conversion first.
FORMATS = {
    "torch": "a PyTorch checkpoint",
    "haiku": "a DeepMind Haiku pickle: `medtl models fetch byol` downloads and converts it; a pickle "
             "downloaded by hand: `medtl models convert byol PATH` writes the torchvision state dict as the row's file",
    "tf": "a TensorFlow (TF1) checkpoint: `medtl models fetch simclr-v1` downloads its .index and .data files "
          "and converts them; a checkpoint downloaded by hand: `medtl models convert simclr-v1 PREFIX` (no "
          "TensorFlow needed)",
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
_ZENODO = "https://zenodo.org/record/5205234/files"  # the benchmark study's four chest X-ray ResNet-50s
_PYCONTRAST = "https://www.dropbox.com/sh/87d24jqsl6ra7t2"  # PyContrast's model zoo (InsDis, PIRL, InfoMin)
_SIMCLR = "https://storage.googleapis.com/simclr-checkpoints"  # google-research/simclr's TF1 checkpoints
_PCL = "https://storage.googleapis.com/sfr-pcl-data-research/PCL_checkpoint"


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
        ValueError: a manual-download row or a checksum mismatch (nothing is written). A
            Haiku row (BYOL) is downloaded as its pickle and converted into the row's file
            (:func:`convert_byol`); a TensorFlow row (SimCLR) as its checkpoint's ``.index``
            and ``.data`` files, converted likewise (:func:`convert_simclr`).
        OSError: the download failed (the message names the URL and the destination).
    """
    init = get_init(name)
    dest = init.path
    if dest.is_file():
        return dest
    if init.fmt == "manual" and url is None:
        raise ValueError(f"{name} is {FORMATS['manual']} from {init.url}; place it at {dest}")
    if init.fmt == "haiku":  # the pickle next to the row's file, then converted into it
        raw = dest.with_suffix(".pkl")
        download(url or init.url, raw, sha256=init.sha256, sha256_prefix=init.sha256_prefix, progress=progress,
                 timeout=timeout, what=f"{name} checkpoint (Haiku pickle)")
        return convert_byol(raw, dest)
    if init.fmt == "tf":  # the checkpoint's index and data shard beside the row's file, then converted
        prefix = dest.with_suffix("") / Path(init.url).name
        for suffix in (".index", ".data-00000-of-00001"):
            download((url or init.url) + suffix, prefix.with_name(prefix.name + suffix), progress=progress,
                     timeout=timeout, what=f"{name} checkpoint ({suffix[1:]})")
        return convert_simclr(prefix, name, dest)
    return download(url or init.url, dest, sha256=init.sha256, sha256_prefix=init.sha256_prefix, progress=progress,
                    timeout=timeout, what=f"{name} checkpoint")


def init_file(name: str, arch: str | None = None) -> Path:
    """The cached file of initialisation ``name`` (checked to be a checkpoint of ``arch``
    when given). A missing file raises naming what to do: ``medtl models fetch`` and the
    URL or the download page (Haiku and TensorFlow checkpoints are fetched and converted
    into the row's file)."""
    init = get_init(name)
    if arch is not None and init.arch != arch:
        raise ValueError(f"initialisation {name!r} is a {init.arch} checkpoint, not {arch}")
    if init.path.is_file():
        return init.path
    if init.fmt in ("torch", "haiku", "tf"):
        what = f"{init.url}.index and .data-00000-of-00001" if init.fmt == "tf" else init.url
        how = f"run `medtl models fetch {name}` (downloads {what}{' and converts it' if init.fmt != 'torch' else ''})"
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
             f"{_PYCONTRAST}/AACcsSIt1_Njv7GsmsuzZ6Sta/InsDis.pth?dl=1", "InsDis.pth", "insdis"),
        Init("moco-v1", "self-supervised", "ImageNet-1k", "momentum contrast",
             f"{_FB}/moco/moco_checkpoints/moco_v1_200ep/moco_v1_200ep_pretrain.pth.tar",
             "moco_v1_200ep_pretrain.pth.tar", "moco-v1"),
        Init("moco-v2", "self-supervised", "ImageNet-1k", "momentum contrast, MLP head, stronger augmentation",
             f"{_FB}/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
             "moco_v2_800ep_pretrain.pth.tar", "moco-v2"),
        Init("pcl-v1", "self-supervised", "ImageNet-1k", "prototypical contrastive learning",
             f"{_PCL}/PCL_v1_epoch200.pth.tar", "PCL_v1_epoch200.pth.tar", "pcl-v1"),
        Init("pcl-v2", "self-supervised", "ImageNet-1k", "prototypical contrastive learning v2",
             f"{_PCL}/PCL_v2_epoch200.pth.tar", "PCL_v2_epoch200.pth.tar", "pcl-v2"),
        Init("pirl", "self-supervised", "ImageNet-1k", "pretext-invariant representations (jigsaw)",
             f"{_PYCONTRAST}/AADN4jKnvTI0U5oT6hTmQZz8a/PIRL.pth?dl=1", "PIRL.pth", "pirl"),
        Init("simclr-v1", "self-supervised", "ImageNet-1k", "contrastive learning (SimCLR)",
             f"{_SIMCLR}/simclrv1/pretrain/1x/model.ckpt-225206", "simclr-v1.pth", "simclr-v1", "tf"),
        Init("simclr-v2", "self-supervised", "ImageNet-1k", "contrastive learning (SimCLR v2)",
             f"{_SIMCLR}/simclrv2/pretrained/r50_1x_sk0/model.ckpt-250228", "simclr-v2.pth", None, "tf"),
        Init("sela-v2", "self-supervised", "ImageNet-1k", "self-labelling (SeLa v2)",
             f"{_FB}/deepcluster/selav2_400ep_pretrain.pth.tar", "selav2_400ep_pretrain.pth.tar", "sela-v2"),
        Init("infomin", "self-supervised", "ImageNet-1k", "InfoMin augmentation contrast",
             f"{_PYCONTRAST}/AAAzMTynP3Qc8mIE4XWkgILUa/InfoMin_800.pth?dl=1", "InfoMin_800.pth", "infomin"),
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
             f"{_ZENODO}/chestxray14.pth.tar?download=1", "chestxray14.pth.tar", "chestx-ray14"),
        Init("chexpert", "in-domain", "CheXpert (from scratch)", "supervised multi-label classification",
             f"{_ZENODO}/chexpert.pth.tar?download=1", "chexpert.pth.tar", "chexpert"),
        Init("imagenet_chestx-ray14", "domain-adaptive", "ImageNet → ChestX-ray14",
             "supervised, continued on ChestX-ray14", f"{_ZENODO}/ImageNet_chestxray14.pth.tar?download=1",
             "ImageNet_chestxray14.pth.tar", "imagenet_chestx-ray14"),
        Init("imagenet_chexpert", "domain-adaptive", "ImageNet → CheXpert", "supervised, continued on CheXpert",
             f"{_ZENODO}/ImageNet_chexpert.pth.tar?download=1", "ImageNet_chexpert.pth.tar", "imagenet_chexpert"),
    ]
    for row in rows:
        register_init(row)


_rows()


# --- BYOL: DeepMind's Haiku pickle → a torchvision ResNet-50 state dict -----------------------
#: Field order of BYOL's ``_ByolExperimentState`` NamedTuple (byol/byol_experiment.py), used
#: when the pickle is read without the ``byol`` package (its field names are not pickled).
BYOL_STATE_FIELDS = ("online_params", "target_params", "online_state", "target_state", "opt_state")
#: Haiku module names of BYOL's heads, not part of the encoder.
BYOL_HEADS = ("projector", "predictor", "classifier")


class _Foreign:
    """Stands for a class of a package that is not installed (byol, optax, haiku) while a
    pickle is read: keeps the constructor arguments and the state it is given."""

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state = args, kwargs, None
        return obj

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state) -> None:
        self.state = state


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return type(name, (_Foreign,), {"__module__": module})


def _mapping(obj) -> dict | None:
    """A Haiku params/state container as a plain dict (a dict, or a FlatMapping read
    without haiku: its pickled dict or item list)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, _Foreign):
        for part in (*obj.args, obj.state):
            if isinstance(part, Mapping):
                return dict(part)
            if isinstance(part, (list, tuple)) and part and all(isinstance(p, tuple) and len(p) == 2 for p in part):
                return dict(part)
    return None


def read_byol(path: str | os.PathLike) -> tuple[dict, dict]:
    """``(online_params, online_state)`` of a BYOL checkpoint pickle (``pretrain_res50x1.pkl``:
    ``{"experiment_state": _ByolExperimentState(...), "step", "rng"}`` with numpy arrays).
    Read without jax, haiku or the ``byol`` package: their classes are stood in for, and the
    experiment state's fields are taken by name or, without them, in
    :data:`BYOL_STATE_FIELDS` order."""
    with open(path, "rb") as f:
        try:
            top = _LenientUnpickler(f).load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise ValueError(f"{path}: not a readable BYOL checkpoint pickle ({err})") from err
    state = top.get("experiment_state") if isinstance(top, Mapping) else None
    if state is None:
        raise ValueError(f"{path}: not a BYOL checkpoint (no 'experiment_state' in the pickle)")
    if hasattr(state, "online_params") and not isinstance(state, _Foreign):
        params, net_state = state.online_params, state.online_state
    else:
        fields = dict(zip(BYOL_STATE_FIELDS, state.args if isinstance(state, _Foreign) else tuple(state)))
        params, net_state = fields.get("online_params"), fields.get("online_state")
    params, net_state = _mapping(params), _mapping(net_state)
    if params is None or net_state is None:
        raise ValueError(f"{path}: the experiment state holds no online_params / online_state mappings")
    return params, net_state


def byol_state_dict(params: Mapping[str, Mapping], state: Mapping[str, Mapping]) -> dict[str, torch.Tensor]:
    """BYOL's online encoder (Haiku ResNet-50 params and BN state) as a torchvision
    ResNet-50 state dict (no ``fc``), the study's conversion (spec benchmark-transfer §2
    step 2, as data: §2.1 "convert" row):

    * the encoder's modules (BYOL's projector / predictor / classifier heads left out) are
      taken in Haiku's sorted name order — block groups, then ``initial_*`` (the stem) —,
      convolutions (``conv`` in the name, param ``w``) and batch norms (``batchnorm``,
      params ``scale`` / ``offset``, state ``<name>/~/mean_ema`` / ``var_ema``
      ``average``) separately; the last of each (the stem's) moves to the front, giving
      torchvision's module order;
    * torchvision's Conv2d and BatchNorm2d modules are filled in order: kernels HWIO → OIHW
      (axes 3, 2, 0, 1); ``scale`` → weight, ``offset`` → bias, EMA averages → running mean
      and variance; every shape is checked.

    Raises ValueError naming the module whose count or shape does not fit."""
    from torchvision.models import resnet50

    encoder = sorted(k for k in params if not any(h in k for h in BYOL_HEADS))
    convs = [k for k in encoder if "conv" in k.rsplit("/", 1)[-1]]
    norms = [k for k in encoder if "batchnorm" in k.rsplit("/", 1)[-1]]
    convs, norms = convs[-1:] + convs[:-1], norms[-1:] + norms[:-1]
    net = resnet50()
    conv_mods = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.Conv2d)]
    bn_mods = [(n, m) for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm2d)]
    if len(convs) != len(conv_mods) or len(norms) != len(bn_mods):
        raise ValueError(f"BYOL params hold {len(convs)} convolutions and {len(norms)} batch norms; a ResNet-50 "
                         f"has {len(conv_mods)} and {len(bn_mods)}")
    out: dict[str, torch.Tensor] = {}

    def put(key: str, value, shape: torch.Size, source: str) -> None:
        t = torch.as_tensor(np.asarray(value, dtype=np.float32))
        if t.numel() != shape.numel() or (t.ndim == len(shape) and t.shape != shape):
            raise ValueError(f"BYOL {source} has shape {tuple(t.shape)}; torchvision's {key} is {tuple(shape)}")
        out[key] = t.reshape(shape).clone()

    for (name, m), key in zip(conv_mods, convs):
        put(f"{name}.weight", np.transpose(np.asarray(params[key]["w"]), (3, 2, 0, 1)), m.weight.shape, key)
    for (name, m), key in zip(bn_mods, norms):
        put(f"{name}.weight", params[key]["scale"], m.weight.shape, f"{key}/scale")
        put(f"{name}.bias", params[key]["offset"], m.bias.shape, f"{key}/offset")
        for ema, buf in (("mean_ema", "running_mean"), ("var_ema", "running_var")):
            entry = state.get(f"{key}/~/{ema}")
            if entry is None:
                raise ValueError(f"BYOL state lacks {key}/~/{ema} (the batch norm's {buf})")
            put(f"{name}.{buf}", entry["average"], getattr(m, buf).shape, f"{key}/~/{ema}")
        out[f"{name}.num_batches_tracked"] = torch.tensor(0)
    return out


def convert_simclr(prefix: str | os.PathLike, name: str = "simclr-v1", dest: str | os.PathLike | None = None,
                   ema: bool = False) -> Path:
    """Convert a SimCLR TF1 checkpoint (``…/model.ckpt-225206``: its ``.index`` and ``.data``
    files, read without TensorFlow by :func:`medtl.models.read_tf_checkpoint`) into a
    torchvision ResNet-50 state dict (:func:`medtl.models.simclr_state_dict`) and write
    ``{"state_dict": ...}`` atomically to ``dest`` (default: row ``name``'s file in the
    weights cache, where ``create("resnet50", weights=name)`` finds it). ``ema``: SimCLR-v2's
    moving-average weights instead. Returns the path."""
    from .tf_checkpoint import read_tf_checkpoint, simclr_state_dict

    init = get_init(name)
    if init.fmt != "tf":
        raise ValueError(f"{name!r} is not a TensorFlow row of the zoo (rows: "
                         f"{', '.join(i.name for i in INITS.values() if i.fmt == 'tf')})")
    sd = simclr_state_dict(read_tf_checkpoint(prefix), depth=50, ema=ema)
    target = Path(dest) if dest is not None else init.path
    return atomic_write(target, lambda tmp: torch.save({"state_dict": sd}, tmp))


def convert_byol(path: str | os.PathLike, dest: str | os.PathLike | None = None) -> Path:
    """Convert a downloaded BYOL pickle (:func:`read_byol`, :func:`byol_state_dict`) and write
    ``{"state_dict": ...}`` atomically to ``dest`` (default: the ``byol`` row's file in the
    weights cache, where ``create("resnet50", weights="byol")`` finds it). Returns the path."""
    params, state = read_byol(path)
    sd = byol_state_dict(params, state)
    target = Path(dest) if dest is not None else get_init("byol").path
    return atomic_write(target, lambda tmp: torch.save({"state_dict": sd}, tmp))
