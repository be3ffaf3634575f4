"""Foundation models and per-dataset medical zoos as sources (a row of :data:`FOUNDATION`
per model): timm ``hf-hub:`` models, open_clip image towers, Hugging Face transformers
vision encoders, torchxrayvision's per-dataset DenseNets and RadImageNet's ResNet-50.

Each row names its loader library (a :data:`LOADERS` family, with the library versions it
was written against), the input it expects (side, resize before the centre crop,
interpolation, mean/std, channels), which output is the feature (CLS token, pooled,
image embedding, penultimate), its licence, whether access is gated (and where to ask),
its parameters and multiply-accumulates per image (so ``rank`` can say what a candidate
will cost before it starts) and, for source heads that predict something (torchxrayvision's
18 pathologies), the labels. Rows are read generically by :func:`load_foundation`, as
timm's ``_cfg`` rows are by its builder::

    import medtl.models as M
    net = M.load_foundation("dinov2-vits14")                 # the hub (HF cache) or a local copy
    net = M.load_foundation("rad-dino", path="~/models/rad-dino")   # a folder in the upstream format
    net = M.load_foundation("xrv-densenet121-all", num_classes=2)   # a fresh head for fine-tuning

The loaded model is a :class:`FoundationModel`: ``encoder`` (the library's own module,
unchanged), ``head`` (identity, the source's own classifier, or a fresh one) and the row's
preprocessing **inside** the model (resize of the shorter side, centre crop, normalisation,
channel conversion), so every medtl data path feeds it ``[0, 1]`` images at their stored
size and gets the library's own preprocessing. Each row is also an architecture of
:data:`medtl.models.ARCHS` (family ``"foundation"``), so features, similarity analyses,
``fit`` (``head``) and ``freeze`` (by block: the row's ``layers``) work on it unchanged.

Before use a loaded model is checked against its row: one forward pass must give the
row's feature width. A missing optional library is an ImportError naming
``pip install 'medtl[foundation]'``; a gated row without a token is a PermissionError
saying where to request access; a failed download names the files to place and where.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._registry import Registry
from ..data import MULTI_LABEL
from ..runtime import seeded
from .surgery import replace_head
from .weights import load_state, read_checkpoint, unwrap, weights_cache
from .zoo import ARCHS, ArchSpec, register_arch

#: The CLIP normalisation (open_clip's OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: torchxrayvision's ``normalize(img, 255)``: ``(2·x/255 − 1)·1024`` = ``(x01 − 0.5) / (1/2048)``.
XRV_MEAN, XRV_STD = (0.5,), (1 / 2048,)
#: CPU feasibility from multiply-accumulates per image (GMACs): ``yes`` below 10, ``slow``
#: below 60 (minutes per thousand images on a laptop CPU), ``no`` above (a GPU job).
CPU_LIMITS = (("yes", 10.0), ("slow", 60.0))
INSTALL = "pip install 'medtl[foundation]'"


@dataclass(frozen=True)
class Loader:
    """A loader family: the library (``module`` to import, ``package`` on PyPI) and the
    version range (PEP 440) medtl's loader was written and tested against."""

    module: str
    package: str
    versions: str
    upstream_files: str


LOADERS: dict[str, Loader] = {
    "timm": Loader("timm", "timm", ">=1.0,<2", "config.json + model.safetensors (timm's save_for_hf / hf-hub layout)"),
    "open_clip": Loader("open_clip", "open_clip_torch", ">=2.23,<4",
                        "open_clip_config.json + open_clip_pytorch_model.bin or open_clip_model.safetensors"),
    "transformers": Loader("transformers", "transformers", ">=4.40,<6",
                           "config.json + model.safetensors (save_pretrained layout)"),
    "torchxrayvision": Loader("torchxrayvision", "torchxrayvision", ">=1.2,<2",
                              "the release's .pt file (a pickled model or a state dict)"),
    "torchvision": Loader("torchvision", "torchvision", ">=0.16", "a .pt/.pth state dict"),
}


@dataclass(frozen=True)
class Foundation:
    """One foundation / medical-zoo model (a row of :data:`FOUNDATION`).

    Attributes:
        name: the key (``"rad-dino"``); also its :data:`~medtl.models.ARCHS` row.
        loader: a :data:`LOADERS` family.
        repo: where the weights come from: ``"hf-hub:org/repo"`` (timm, open_clip), a Hugging
            Face repo id (transformers), a torchxrayvision weights name, or a URL / download
            page (torchvision rows).
        feature_dim: width of the feature vector.
        feature: which output is the feature: ``"pooled"`` (timm's pre-logits: CLS or mean
            as the model pools), ``"cls"`` (the class token after the final norm),
            ``"embedding"`` (open_clip's projected image embedding), ``"penultimate"`` (a
            CNN's global-average-pooled last stage).
        layers: the analysable blocks, input to output (module paths inside the library
            model; ``encoder.`` is prefixed in the wrapper).
        stem: the patch embedding / first convolution; ``fu_layers`` the FU metric's
            (stem conv, next conv) pair for CNNs, empty for transformers (FU is defined on
            two convolutions).
        input_size: side of the crop the model sees; ``resize``: the shorter side before
            the centre crop (None: ``input_size``, no crop); ``interpolation``: bilinear or
            bicubic; ``mean``/``std``: normalisation of ``[0, 1]`` images; ``in_chans``: the
            channels the model takes (1: RGB is averaged to grey).
        kwargs: extra arguments of the library constructor (timm's ``img_size``).
        head_labels: the source head's outputs when it has one (torchxrayvision's
            pathologies; multi-label, sigmoid), else empty (no head: LEEP-type metrics skip).
        licence, gated, access: the licence, whether the hub gates the download, and where
            to request access. ``params_m``: parameters (millions, feature encoder);
            ``gmacs``: multiply-accumulates per image at ``input_size`` (billions).
        data: the pre-training data; ``citation``: the paper; ``file``: the weight file
            name for file-based loaders; ``sha256``: its checksum where upstream publishes
            one; ``note``: anything a user must know (a normalisation assumption, …).
    """

    name: str
    loader: str
    repo: str
    feature_dim: int
    feature: str
    layers: tuple[str, ...]
    stem: str
    input_size: int = 224
    resize: int | None = None
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    in_chans: int = 3
    fu_layers: tuple[str, ...] = ()
    kwargs: dict = field(default_factory=dict)
    head_labels: tuple[str, ...] = ()
    licence: str = ""
    gated: bool = False
    access: str = ""
    params_m: float = 0.0
    gmacs: float = 0.0
    data: str = ""
    citation: str = ""
    file: str = ""
    sha256: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.loader not in LOADERS:
            raise ValueError(f"foundation row {self.name!r}: loader must be one of {', '.join(LOADERS)}, "
                             f"got {self.loader!r}")
        if self.feature not in FEATURES:
            raise ValueError(f"foundation row {self.name!r}: feature must be one of {', '.join(FEATURES)}, "
                             f"got {self.feature!r}")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"foundation row {self.name!r}: interpolation must be bilinear or bicubic")
        if self.in_chans not in (1, 3) or len(self.mean) not in (1, self.in_chans) or len(self.mean) != len(self.std):
            raise ValueError(f"foundation row {self.name!r}: in_chans {self.in_chans} with {len(self.mean)} means and "
                             f"{len(self.std)} stds")
        if self.gated and not self.access:
            raise ValueError(f"foundation row {self.name!r} is gated: say where access is requested (access=)")
        if self.fu_layers and len(self.fu_layers) != 2:
            raise ValueError(f"foundation row {self.name!r}: fu_layers is a (stem conv, next conv) pair or empty")
        object.__setattr__(self, "layers", tuple(self.layers))

    @property
    def cpu(self) -> str:
        """CPU feasibility from :attr:`gmacs` (see :data:`CPU_LIMITS`)."""
        return next((label for label, limit in CPU_LIMITS if self.gmacs < limit), "no")

    @property
    def local(self) -> Path:
        """The folder (or file holder) where a local copy is looked for first."""
        return foundation_dir() / self.name


#: How each ``feature`` is read from a library model.
FEATURES = ("pooled", "cls", "embedding", "penultimate")

FOUNDATION: Registry[Foundation] = Registry("foundation model")


def foundation_dir() -> Path:
    """Where local copies of foundation models live: ``$MEDTL_FOUNDATION``, else
    ``<weights cache>/foundation`` (``$TORCH_HOME/hub/checkpoints/foundation``); a folder
    named after the row (``…/rad-dino/``) holding the upstream files is used before the hub."""
    env = os.environ.get("MEDTL_FOUNDATION")
    return Path(env).expanduser() if env else weights_cache() / "foundation"


def arch_spec(row: Foundation) -> ArchSpec:
    """The architecture row of a foundation row's wrapper (head ``head``, the penultimate
    feature is the head's input, blocks under ``encoder.``)."""
    enc = [f"encoder.{p}" for p in row.layers]
    return ArchSpec(row.name, family="foundation", head="head", head_in=row.feature_dim, feature_node="head",
                    feature_dim=row.feature_dim, layers=tuple(enc),
                    fu_layers=tuple(f"encoder.{p}" for p in row.fu_layers), stem=f"encoder.{row.stem}",
                    builder=partial(_random_wrapper, row.name), min_size=1, native_size=row.input_size,
                    st_groups=((f"encoder.{row.stem}",), *((p,) for p in enc)), weights=_no_imagenet(row.name))


def register_foundation(row: Foundation, replace: bool = False) -> Foundation:
    """Add a row to :data:`FOUNDATION` and its wrapper's architecture row to
    :data:`~medtl.models.ARCHS` (a duplicate name in either is an error unless ``replace``)."""
    if not isinstance(row, Foundation):
        raise TypeError(f"register_foundation needs a Foundation row, got {type(row).__name__}")
    if not replace and row.name in ARCHS:
        raise ValueError(f"architecture {row.name!r} is already registered; pick another name or pass replace=True")
    FOUNDATION.register(row.name, row, replace=replace)
    register_arch(arch_spec(row), replace=replace)
    return row


def unregister_foundation(name: str) -> Foundation:
    """Remove a row and its architecture row (tests registering tiny models)."""
    ARCHS.unregister(name)
    return FOUNDATION.unregister(name)


def is_foundation(name) -> bool:
    return isinstance(name, str) and name in FOUNDATION.names()


def foundation_table():
    """The rows as a DataFrame: loader, feature width, input, licence, gating, parameters,
    GMACs, CPU feasibility and whether a local copy is present."""
    import pandas as pd

    return pd.DataFrame([{"name": r.name, "loader": r.loader, "feature": f"{r.feature} ({r.feature_dim}-d)",
                          "input": f"{r.in_chans}×{r.input_size}", "licence": r.licence,
                          "gated": "yes" if r.gated else "no", "params_M": r.params_m, "GMACs": r.gmacs,
                          "cpu": r.cpu, "local": r.local.exists(), "repo": r.repo}
                         for r in FOUNDATION.values()])


# --- the library side ---------------------------------------------------------------------
def library(loader: str):
    """Import a loader family's library; a missing one is an ImportError naming the extra,
    a version outside the family's range a warning (the loader may no longer fit it)."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    fam = LOADERS[loader]
    try:
        module = importlib.import_module(fam.module)
    except ImportError as err:
        raise ImportError(f"{loader} models need the {fam.package} package: {INSTALL} "
                          f"(or pip install '{fam.package}{fam.versions}')") from err
    try:
        version = metadata.version(fam.package)
    except metadata.PackageNotFoundError:
        version = getattr(module, "__version__", None)
    if version and Version(version) not in SpecifierSet(fam.versions):
        warnings.warn(f"{fam.package} {version} is outside the range medtl's {loader} loader was tested with "
                      f"({fam.versions}); loading may fail or change silently — check the model against its row",
                      stacklevel=3)
    return module


def _token(row: Foundation, token: str | None) -> str | None:
    if token:
        return token
    env = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if env:
        return env
    try:
        from huggingface_hub import get_token

        return get_token()
    except ImportError:
        return None


def _hub_error(row: Foundation, err: Exception) -> Exception:
    """A clear error for a failed hub load: gated (401/403) or unreachable."""
    text = f"{type(err).__name__}: {err}"
    if "GatedRepo" in type(err).__name__ or any(s in text for s in ("401", "403", "gated", "restricted")):
        return PermissionError(f"{row.name} ({row.repo}) is gated and this token has no access: request access at "
                               f"{row.access or row.repo}, then set HF_TOKEN ({text[:200]})")
    return FileNotFoundError(f"could not load {row.name} from {row.repo} ({text[:300]}). Offline, place its upstream "
                             f"files ({LOADERS[row.loader].upstream_files}) in {row.local} or pass path=")


def _load_timm(row: Foundation, source: Path | None, pretrained: bool, token: str | None) -> nn.Module:
    timm = library("timm")
    name = f"local-dir:{source}" if source is not None else row.repo
    return timm.create_model(name, pretrained=pretrained, num_classes=0, **row.kwargs)


def _load_open_clip(row: Foundation, source: Path | None, pretrained: bool, token: str | None) -> nn.Module:
    open_clip = library("open_clip")
    name = f"local-dir:{source}" if source is not None else row.repo
    model = open_clip.create_model(name, load_weights=pretrained, **row.kwargs)
    return model.visual  # the image tower only: the text tower is dropped


def _load_transformers(row: Foundation, source: Path | None, pretrained: bool, token: str | None) -> nn.Module:
    transformers = library("transformers")
    ref = str(source) if source is not None else row.repo
    if pretrained:
        return transformers.AutoModel.from_pretrained(ref, token=token, **row.kwargs)
    config = transformers.AutoConfig.from_pretrained(ref, token=token)
    return transformers.AutoModel.from_config(config)


def _file(row: Foundation, source: Path | None) -> Path:
    """The weight file of a file-based row: ``source`` (a file, or a folder holding
    ``row.file``), else the local copy."""
    for place in ([source] if source is not None else [row.local, row.local.parent]):
        if place.is_file():
            return place
        if (place / row.file).is_file():
            return place / row.file
    where = source if source is not None else row.local
    raise FileNotFoundError(f"{row.name}: no weight file {row.file} at {where}; download it from {row.repo} and "
                            f"place it in {row.local} (or pass path=)")


def _state(file: Path) -> dict:
    obj = read_checkpoint(file, what="weight")
    return obj.state_dict() if isinstance(obj, nn.Module) else unwrap(obj)


def _load_xrv(row: Foundation, source: Path | None, pretrained: bool, token: str | None) -> nn.Module:
    xrv = library("torchxrayvision")
    model = xrv.models.DenseNet(num_classes=len(row.head_labels), **row.kwargs)
    if pretrained:
        if source is None and not (row.local / row.file).is_file() and not row.local.is_file():
            row.local.mkdir(parents=True, exist_ok=True)
            try:  # the library's own download into the local copy's folder
                xrv.models.get_weights(row.repo, cache_dir=str(row.local))
            except Exception as err:  # noqa: BLE001 - any download failure becomes one clear error
                raise _hub_error(row, err) from err
        load_state(model, _state(_file(row, source)), what=f"{row.name} weights")
    return model


#: RadImageNet's PyTorch conversion stores ``nn.Sequential(*resnet50.children()[:-1])`` under
#: ``backbone.``: child index → torchvision module name.
RADIMAGENET_CHILDREN = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}


def radimagenet_remap(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys of RadImageNet's PyTorch ResNet-50 (``backbone.<child>.…``, possibly under
    ``module.``) → torchvision's ResNet-50 keys; keys already in torchvision's layout pass."""
    out = {}
    for key, value in state.items():
        k = key.removeprefix("module.").removeprefix("backbone.")
        head, _, rest = k.partition(".")
        out[f"{RADIMAGENET_CHILDREN[head]}.{rest}" if head in RADIMAGENET_CHILDREN else k] = value
    return out


def _load_torchvision(row: Foundation, source: Path | None, pretrained: bool, token: str | None) -> nn.Module:
    tvm = library("torchvision").models
    model = tvm.get_model(row.kwargs.get("arch", "resnet50"), weights=None)
    model.fc = nn.Identity()
    if pretrained:
        state = radimagenet_remap(_state(_file(row, source)))
        load_state(model, state, what=f"{row.name} weights")
    return model


LOAD: dict[str, Callable] = {"timm": _load_timm, "open_clip": _load_open_clip, "transformers": _load_transformers,
                             "torchxrayvision": _load_xrv, "torchvision": _load_torchvision}


def _embed_transformers(encoder: nn.Module, x: torch.Tensor, feature: str) -> torch.Tensor:
    out = encoder(pixel_values=x)
    pooled = getattr(out, "pooler_output", None)
    if feature == "cls":
        return pooled if pooled is not None and pooled.ndim == 2 else out.last_hidden_state[:, 0]
    return out.last_hidden_state[:, 1:].mean(1)


EMBED: dict[str, Callable] = {
    "timm": lambda enc, x, feature: enc(x),  # num_classes=0: the pre-logits (CLS or mean, as the model pools)
    "open_clip": lambda enc, x, feature: enc(x),  # the projected image embedding
    "transformers": _embed_transformers,
    "torchxrayvision": lambda enc, x, feature: enc.features2(x),
    "torchvision": lambda enc, x, feature: enc(x),
}


class FoundationModel(nn.Module):
    """A library model behind medtl's interface: ``forward(x)`` takes ``[0, 1]`` images
    ``B×C×H×W`` (C 1 or 3, any size), applies the row's preprocessing
    (:meth:`preprocess`), reads the row's feature (:meth:`embed`) and applies ``head``."""

    def __init__(self, row: Foundation, encoder: nn.Module, head: nn.Module | None = None) -> None:
        super().__init__()
        self.row = row
        self.encoder = encoder
        self.head = head if head is not None else nn.Identity()
        self.register_buffer("mean", torch.tensor(row.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(row.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """``[0, 1]`` images → the model's input, as the library's own transform: channels
        converted (grey replicated, or RGB averaged for 1-channel models), the shorter side
        resized to ``resize`` (long side ``int(resize·long/short)``, torchvision's rule;
        antialiased, clamped to [0, 1] as an 8-bit image would be), the centre
        ``input_size`` crop (torchvision's rounding), then ``(x − mean) / std``."""
        row = self.row
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"{row.name} takes B×C×H×W images with 1 or 3 channels, got shape {tuple(x.shape)}")
        if row.in_chans == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif row.in_chans == 1 and x.shape[1] == 3:
            x = x.mean(1, keepdim=True)
        h, w = x.shape[-2:]
        side = row.resize or row.input_size
        size = (side, int(side * w / h)) if h <= w else (int(side * h / w), side)
        if (h, w) != size:
            x = F.interpolate(x, size=size, mode=row.interpolation, align_corners=False, antialias=True).clamp(0, 1)
        crop = row.input_size
        top, left = int(round((size[0] - crop) / 2.0)), int(round((size[1] - crop) / 2.0))
        x = x[..., top:top + crop, left:left + crop]
        return (x - self.mean) / self.std

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The row's feature of preprocessed images (``B×feature_dim``)."""
        return EMBED[self.row.loader](self.encoder, x, self.row.feature)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(self.preprocess(x)))


def _source_path(row: Foundation, path) -> Path | None:
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{row.name}: {p} does not exist (a folder or file in the upstream format: "
                                    f"{LOADERS[row.loader].upstream_files})")
        return p
    return row.local if row.local.exists() and row.loader in ("timm", "open_clip", "transformers") else None


def _encoder(row: Foundation, path, pretrained: bool, token: str | None) -> nn.Module:
    source = _source_path(row, path)
    hub = source is None and row.loader in ("timm", "open_clip", "transformers")
    token = _token(row, token) if hub else None
    if hub and row.gated and not token:
        raise PermissionError(f"{row.name} ({row.repo}) is gated: request access at {row.access}, then set HF_TOKEN "
                              f"(or run `hf auth login`); or place its files in {row.local} / pass path=")
    if hub and token and row.loader in ("timm", "open_clip"):
        os.environ.setdefault("HF_TOKEN", token)  # timm and open_clip read the token from the environment
    try:
        return LOAD[row.loader](row, source, pretrained, token)
    except (ImportError, PermissionError):
        raise
    except Exception as err:  # noqa: BLE001 - hub/HTTP/file errors become one clear error
        if not hub:
            raise
        raise _hub_error(row, err) from err


def library_normalisation(row: Foundation, encoder: nn.Module, source: Path | None):
    """(mean, std) the library itself records for the loaded model (timm's
    ``pretrained_cfg``, open_clip's ``preprocess_cfg``, the transformers repository's image
    processor), or None where it records none."""
    if row.loader == "timm":
        cfg = getattr(encoder, "pretrained_cfg", None) or {}
    elif row.loader == "open_clip":
        cfg = getattr(encoder, "preprocess_cfg", None) or {}
    elif row.loader == "transformers":
        try:
            proc = library("transformers").AutoImageProcessor.from_pretrained(str(source) if source else row.repo)
        except Exception:  # noqa: BLE001 - a repository without an image processor records nothing
            return None
        cfg = {"mean": getattr(proc, "image_mean", None), "std": getattr(proc, "image_std", None)}
    else:
        return None
    mean, std = cfg.get("mean"), cfg.get("std")
    return (tuple(map(float, mean)), tuple(map(float, std))) if mean and std else None


def _check_preprocessing(row: Foundation, encoder: nn.Module, source: Path | None) -> None:
    recorded = library_normalisation(row, encoder, source)
    if recorded is None:
        return
    mean, std = recorded
    if len(mean) != len(row.mean) or max(abs(a - b) for a, b in zip((*mean, *std), (*row.mean, *row.std))) > 1e-3:
        warnings.warn(f"{row.name}: the library records normalisation mean {mean}, std {std}; the row applies "
                      f"mean {row.mean}, std {row.std}. medtl uses the row's: check which one the model was trained "
                      "with", stacklevel=3)


def check(model: FoundationModel) -> None:
    """One forward pass on a mid-grey image must give the row's feature width."""
    row = model.row
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            feats = model.embed(model.preprocess(torch.full((1, row.in_chans, row.input_size, row.input_size), 0.5)))
    finally:
        model.train(was)
    if feats.ndim != 2 or feats.shape[1] != row.feature_dim:
        raise ValueError(f"{row.name}: the loaded model gives features of shape {tuple(feats.shape)}, its row says "
                         f"{row.feature_dim}-d ({row.feature}); the files are of another model or the library changed")


def load_foundation(name: str, path: str | os.PathLike | None = None, num_classes: int | None = None,
                    pretrained: bool = True, token: str | None = None, seed: int | None = None,
                    dropout: float = 0.0, head_init: str = "default") -> FoundationModel:
    """A foundation row's model (see the module docstring), checked against its row.

    Args:
        name: a :data:`FOUNDATION` key.
        path: a local copy in the upstream format (a folder, or the weight file of file-based
            rows); default: ``<foundation_dir()>/<name>`` when present, else the hub (the
            library's own download and cache).
        num_classes: a fresh head (drawn under ``seed``) for fine-tuning; None keeps the
            source's own head where it has one (torchxrayvision) or none (identity).
        pretrained: False builds the architecture with random weights (the configuration
            is still read from ``path`` / the hub).
        token: a Hugging Face token for gated rows (default ``$HF_TOKEN`` or the saved login).

    Returns:
        The :class:`FoundationModel`; ``model.medtl`` holds its arch (the row name),
        weights, ``normalize=None`` (the model normalises itself), the source's head task.
    """
    row = FOUNDATION.get(name)
    with seeded(seed):
        encoder = _encoder(row, path, pretrained, token)
    head = _source_head(row, encoder)
    model = FoundationModel(row, encoder, head)
    check(model)
    if pretrained:
        _check_preprocessing(row, encoder, _source_path(row, path))
    model.medtl = {"arch": row.name, "in_chans": 3, "stem": "imagenet", "image_size": None, "normalize": None,
                   "dropout": 0.0, "min_size": None, "extract": "hooks", "foundation": row.name,
                   "weights": f"foundation:{row.name}" if pretrained else None,
                   "init": None if pretrained else "ri"}
    if pretrained:
        model.medtl["source"] = {"name": row.name, "pretraining": row.data, "licence": row.licence,
                                 **({"task": MULTI_LABEL, "labels": [lb for lb in row.head_labels if lb]}
                                    if head is not None else {})}
    if head is not None:
        model.medtl["num_classes"] = head.out_features
    else:
        model.medtl["head"] = "untrained"
    if num_classes is not None:
        with seeded(None if seed is None else seed + 1):
            replace_head(model, num_classes, dropout, row.name, head_init)
        model.medtl.pop("head", None)
    return model


def _source_head(row: Foundation, encoder: nn.Module) -> nn.Linear | None:
    """The source's own classifier, moved out of the library model, keeping only the outputs
    with a label (torchxrayvision's per-dataset models leave the others untrained)."""
    if not row.head_labels or not isinstance(getattr(encoder, "classifier", None), nn.Linear):
        return None
    old, keep = encoder.classifier, [i for i, label in enumerate(row.head_labels) if label]
    encoder.classifier = nn.Identity()
    if len(keep) == old.out_features:
        return old
    head = nn.Linear(old.in_features, len(keep))
    with torch.no_grad():
        head.weight.copy_(old.weight[keep])
        head.bias.copy_(old.bias[keep])
    return head


def _random_wrapper(name: str, **kwargs) -> nn.Module:
    return load_foundation(name, pretrained=False, **kwargs)


def _no_imagenet(name: str) -> Callable:
    def refuse(version: str):
        raise ValueError(f"{name} is a foundation model: load its own weights with medtl.models.load_foundation"
                         f"({name!r}) (candidates: write {name!r}), not ImageNet weights")

    return refuse


# --- the table ----------------------------------------------------------------------------
def _blocks(template: str, depth: int) -> tuple[str, ...]:
    return tuple(template.format(i) for i in range(depth))


#: torchxrayvision's 18 outputs (``xrv.datasets.default_pathologies``) and, per dataset, the
#: outputs its DenseNet was trained on (the others are blank labels in its ``model_urls``).
XRV_PATHOLOGIES = ("Atelectasis", "Consolidation", "Infiltration", "Pneumothorax", "Edema", "Emphysema", "Fibrosis",
                   "Effusion", "Pneumonia", "Pleural_Thickening", "Cardiomegaly", "Nodule", "Mass", "Hernia",
                   "Lung Lesion", "Fracture", "Lung Opacity", "Enlarged Cardiomediastinum")
_CHEX_LIKE = (0, 1, 3, 4, 7, 8, 10, 14, 15, 16, 17)
XRV_MODELS = {  # key: (file prefix, trained outputs, pre-training data)
    "all": ("nih-pc-chex-mimic_ch-google-openi-kaggle", tuple(range(18)),
            "NIH, PadChest, CheXpert, MIMIC-CXR, Google, OpenI, RSNA chest X-rays"),
    "nih": ("nih", tuple(range(14)), "NIH ChestX-ray14"),
    "pc": ("pc", (*range(14), 15), "PadChest"),
    "chex": ("chex", _CHEX_LIKE, "CheXpert"),
    "rsna": ("kaggle", (8, 16), "RSNA Pneumonia (Kaggle)"),
    "mimic_nb": ("mimic_nb", _CHEX_LIKE, "MIMIC-CXR (NegBio labels)"),
    "mimic_ch": ("mimic_ch", _CHEX_LIKE, "MIMIC-CXR (CheXpert labels)"),
}


def _rows() -> list[Foundation]:
    vit = dict(feature="pooled", stem="patch_embed.proj", input_size=224, resize=256, interpolation="bicubic")
    rows = [
        Foundation("dinov2-vits14", "timm", "hf-hub:timm/vit_small_patch14_dinov2.lvd142m", 384,
                   layers=_blocks("blocks.{}", 12), kwargs={"img_size": 224}, licence="Apache-2.0", params_m=22.1,
                   gmacs=6.1, data="LVD-142M (142 M curated natural images, self-supervised)",
                   citation="Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024",
                   note="run at 224 px (position embeddings interpolated by timm), DINOv2's evaluation transform "
                        "(resize 256, centre crop 224)", **vit),
        Foundation("dinov2-vitb14", "timm", "hf-hub:timm/vit_base_patch14_dinov2.lvd142m", 768,
                   layers=_blocks("blocks.{}", 12), kwargs={"img_size": 224}, licence="Apache-2.0", params_m=86.6,
                   gmacs=23.0, data="LVD-142M (142 M curated natural images, self-supervised)",
                   citation="Oquab et al., DINOv2: Learning Robust Visual Features without Supervision, TMLR 2024",
                   note="run at 224 px as dinov2-vits14", **vit),
        Foundation("uni", "timm", "hf-hub:MahmoodLab/uni", 1024, layers=_blocks("blocks.{}", 24),
                   kwargs={"init_values": 1e-5, "dynamic_img_size": True}, licence="CC-BY-NC-ND-4.0", gated=True,
                   access="https://huggingface.co/MahmoodLab/UNI", params_m=303.3, gmacs=61.6,
                   data="Mass-100K (100 M H&E tissue patches, DINOv2 self-supervised)",
                   citation="Chen et al., Towards a general-purpose foundation model for computational pathology, "
                            "Nature Medicine 2024", note="the model card's transform: resize 224, no crop",
                   **{**vit, "resize": 224}),
        Foundation("biomedclip", "open_clip", "hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", 512,
                   feature="embedding", layers=_blocks("trunk.blocks.{}", 12), stem="trunk.patch_embed.proj",
                   resize=224, mean=CLIP_MEAN, std=CLIP_STD, licence="MIT", params_m=86.2, gmacs=17.6,
                   data="PMC-15M (15 M biomedical figure-caption pairs, contrastive)",
                   citation="Zhang et al., BiomedCLIP: a multimodal biomedical foundation model pretrained from "
                            "fifteen million scientific image-text pairs, NEJM AI 2025",
                   note="the image tower only (the text tower is dropped); feature: the projected 512-d embedding"),
        Foundation("rad-dino", "transformers", "microsoft/rad-dino", 768, feature="cls",
                   layers=_blocks("encoder.layer.{}", 12), stem="embeddings.patch_embeddings.projection",
                   input_size=518, resize=518, mean=(0.5307,) * 3, std=(0.2583,) * 3, licence="MSRLA (research use)",
                   params_m=86.6, gmacs=151.0,
                   data="MIMIC-CXR, CheXpert, NIH-CXR, PadChest, BRAX (0.88 M chest X-rays, DINOv2 self-supervised)",
                   citation="Pérez-García et al., Exploring scalable medical image encoders beyond text supervision, "
                            "Nature Machine Intelligence 2025",
                   note="feature: the CLS token (pooler_output), as the model card; the normalisation is checked "
                        "against the repository's preprocessor_config.json when loaded"),
    ]
    for key, (prefix, trained, data) in XRV_MODELS.items():
        labels = tuple(p if i in trained else "" for i, p in enumerate(XRV_PATHOLOGIES))
        rows.append(Foundation(
            f"xrv-densenet121-{key.replace('_', '-')}", "torchxrayvision", f"densenet121-res224-{key}", 1024,
            feature="penultimate", layers=("features.denseblock1", "features.denseblock2", "features.denseblock3",
                                           "features.denseblock4"),
            stem="features.conv0", fu_layers=("features.conv0", "features.denseblock1.denselayer1.conv1"),
            input_size=224, resize=224, interpolation="bilinear", mean=XRV_MEAN, std=XRV_STD, in_chans=1,
            head_labels=labels, licence="Apache-2.0", params_m=7.0, gmacs=2.9, data=data,
            file=f"{prefix}-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt",
            citation="Cohen et al., TorchXRayVision: A library of chest X-ray datasets and models, MIDL 2022",
            note="1-channel input scaled to [-1024, 1024] as xrv.utils.normalize(img, 255); RGB is averaged to grey"))
    rows.append(Foundation(
        "radimagenet-resnet50", "torchvision", "https://github.com/BMEII-AI/RadImageNet", 2048, feature="penultimate",
        layers=("layer1", "layer2", "layer3", "layer4"), stem="conv1", fu_layers=("conv1", "layer1.0.conv1"),
        input_size=224, resize=224, interpolation="bilinear", kwargs={"arch": "resnet50"},
        licence="RadImageNet terms (weights shared on request, research use)", params_m=23.5, gmacs=4.1,
        data="RadImageNet (1.35 M CT, MRI and ultrasound images, 165 classes)", file="ResNet50.pt",
        citation="Mei et al., RadImageNet: An Open Radiologic Deep Learning Research Dataset for Effective Transfer "
                 "Learning, Radiology: AI 2022",
        note="the PyTorch conversion of the Keras weights (keys backbone.<child>.*, remapped by radimagenet_remap); "
             "ImageNet mean/std as that conversion's usage; no public direct URL: request it on the page"))
    return rows


for _row in _rows():
    register_foundation(_row)
