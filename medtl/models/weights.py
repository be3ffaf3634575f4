"""Weight sources: torchvision ImageNet weights (its own enums and TORCH_HOME cache),
checkpoints in any common wrapping, self-supervised checkpoints through the benchmark
study's key-remap rules, and sources trained by medtl (state dict + metadata JSON)."""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from .. import paths
from .._io import atomic_write, atomic_write_bytes
from .zoo import under

#: Wrapper keys tried in order when a checkpoint is a dict holding the state dict.
UNWRAP_KEYS: tuple[str, ...] = ("state_dict", "model", "net", "resnet", "module")

#: Self-supervised / medical ResNet-50 checkpoints of the benchmark study (spec §2.1):
#: method → the one prefix stripped (anchored) from every key.
SSL_PREFIXES: dict[str, str] = {
    "simclr-v1": "", "simclr-v2": "", "byol": "", "barlowtwins": "", "chestx-ray14": "",
    "imagenet_chestx-ray14": "",
    "swav": "module.", "deepcluster-v2": "module.", "sela-v2": "module.", "chexpert": "module.",
    "imagenet_chexpert": "module.",
    "moco-v1": "module.encoder_q.", "moco-v2": "module.encoder_q.", "pcl-v1": "module.encoder_q.",
    "pcl-v2": "module.encoder_q.",
    "infomin": "module.encoder.", "insdis": "module.encoder.", "pirl": "module.encoder.",
    "cmc": "module.encoder1.",
}
#: Keys containing any of these are dropped (after prefix stripping) for SSL checkpoints.
SSL_DROP_SUBSTRINGS: tuple[str, ...] = ("module.jigsaw", "module.head_jig", "projection", "prototypes",
                                        "fc", "linear", "head")
#: Generic wrapper prefixes tried (longest first) for plain checkpoints.
GENERIC_PREFIXES: tuple[str, ...] = ("module.encoder_q.", "module.model.", "module.", "model.", "net.",
                                     "backbone.", "encoder_q.")


@dataclass
class LoadReport:
    """What a state-dict load did: ``loaded`` keys, ``missing`` model keys, ``unexpected``
    checkpoint keys, ``mismatched`` keys (shape differs) and the ``prefix`` stripped."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    prefix: str = ""

    def __str__(self) -> str:
        def short(keys):
            return ", ".join(keys[:6]) + (f", … ({len(keys)} in all)" if len(keys) > 6 else "")

        return (f"loaded {len(self.loaded)} tensors; missing {len(self.missing)} [{short(self.missing)}]; "
                f"unexpected {len(self.unexpected)} [{short(self.unexpected)}]; "
                f"shape-mismatched {len(self.mismatched)} [{short(self.mismatched)}]")


def read_checkpoint(path: str | os.PathLike, what: str = "checkpoint"):
    """``torch.load`` a checkpoint file on the CPU; a missing, truncated or foreign file
    raises an error that names it (PyTorch's own errors do not)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # pickle, zip and EOF errors of a torn or foreign file
        raise ValueError(f"cannot read the {what} file {path} ({type(err).__name__}: {err}); it is truncated, "
                         "corrupt or not a PyTorch checkpoint") from err


def unwrap(obj) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint object: the first of ``state_dict``, ``model``,
    ``net``, ``resnet``, ``module`` holding a dict (recursively), else the object itself."""
    for _ in range(4):  # a wrapper holds no tensors itself, the state dict does
        if not isinstance(obj, dict) or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in UNWRAP_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not obj:
        raise ValueError("checkpoint holds no state dict (expected a dict of tensors, possibly under "
                         f"one of {UNWRAP_KEYS})")
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"checkpoint dict has no tensors (keys: {list(obj)[:8]})")
    return tensors


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from the keys that **start** with it (anchored, unlike the study's
    substring test); other keys are kept unchanged."""
    if not prefix:
        return dict(state)
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in state.items()}


def drop_keys(state: dict[str, torch.Tensor], substrings) -> tuple[dict, list[str]]:
    kept, dropped = {}, []
    for k, v in state.items():
        (dropped.append(k) if any(s in k for s in substrings) else kept.__setitem__(k, v))
    return kept, dropped


def best_prefix(state: dict[str, torch.Tensor], model_keys, candidates=GENERIC_PREFIXES) -> str:
    """The wrapper prefix whose stripping makes the most checkpoint keys match the model."""
    model_keys = set(model_keys)
    best, best_hits = "", len(model_keys & set(state))
    for p in candidates:
        hits = len(model_keys & set(strip_prefix(state, p)))
        if hits > best_hits:
            best, best_hits = p, hits
    return best


def remap(state: dict[str, torch.Tensor], method: str | None, model_keys) -> tuple[dict, LoadReport]:
    """Apply the key-remap rules: SSL rules of ``method`` (see :data:`SSL_PREFIXES`) or,
    with ``method=None``, the automatically chosen generic wrapper prefix."""
    report = LoadReport()
    if method is not None:
        m = method.lower()
        if m not in SSL_PREFIXES:
            raise ValueError(f"unknown checkpoint method {method!r}; valid: {', '.join(SSL_PREFIXES)}")
        if m == "simclr-v2":
            raise ValueError("SimCLR-v2 TF checkpoints need an external TF→PyTorch key map; convert them first")
        state = strip_prefix(state, SSL_PREFIXES[m])
        report.prefix = SSL_PREFIXES[m]
        jig = [k for k in state if "module.jigsaw" in k or "module.head_jig" in k]
        if jig:
            warnings.warn(f"dropping {len(jig)} PIRL jigsaw-stream keys", stacklevel=3)
        state, report.dropped = drop_keys(state, SSL_DROP_SUBSTRINGS)
    else:
        report.prefix = best_prefix(state, model_keys)
        state = strip_prefix(state, report.prefix)
    return state, report


def load_state(model: nn.Module, state: dict[str, torch.Tensor], allowed_missing=(), strict: bool = True,
               report: LoadReport | None = None, what: str = "checkpoint") -> LoadReport:
    """Copy matching tensors of ``state`` into ``model`` and report the rest.

    Keys whose shapes differ are skipped and listed as mismatched. Missing keys other than
    ``allowed_missing`` (prefixes, e.g. the head) raise a ValueError unless ``strict=False``;
    so does a load that matched no key at all (whatever ``strict`` says).
    """
    report = report or LoadReport()
    own = model.state_dict()
    usable = {}
    for k, v in state.items():
        if k not in own:
            report.unexpected.append(k)
        elif own[k].shape != v.shape:
            report.mismatched.append(k)
        else:
            usable[k] = v
    report.loaded = sorted(usable)
    report.missing = [k for k in own if k not in usable]
    if not usable:
        raise ValueError(
            f"{what} matched none of the model's {len(own)} parameters/buffers "
            f"({type(model).__name__}); is it a checkpoint of another architecture? {report}"
        )
    # BatchNorm's num_batches_tracked counter is absent from many published checkpoints (and
    # unused by eval and momentum-based training): its absence is not an error, as in PyTorch.
    serious = [k for k in report.missing if not under(k, allowed_missing) and not k.endswith("num_batches_tracked")]
    if serious and strict:
        raise ValueError(
            f"{what} does not fit {type(model).__name__}: {len(serious)} non-head tensors missing or "
            f"of another shape ({', '.join(serious[:5])}{', …' if len(serious) > 5 else ''}); "
            f"{report}. If it is a checkpoint of another architecture, build that one; "
            "pass strict=False to load the matching part anyway."
        )
    with torch.no_grad():
        for k, v in usable.items():
            own[k].copy_(v.to(own[k].dtype))
    if report.unexpected or report.mismatched or serious:
        warnings.warn(f"{what}: {report}", stacklevel=3)
    return report


# --- torchvision ImageNet weights ----------------------------------------------------------
def imagenet_weights(arch_name: str, version: str = "IMAGENET1K_V1"):
    from torchvision import models as tvm

    enum = tvm.get_model_weights(arch_name)
    try:
        return enum[version]
    except KeyError as err:
        raise ValueError(f"{arch_name} has no weights {version!r}; available: {[w.name for w in enum]}") from err


def weights_cache() -> Path:
    """torchvision's weights cache, ``$TORCH_HOME/hub/checkpoints`` (ImageNet weights and the
    initialisation zoo's files)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def imagenet_file(weights) -> Path:
    """Where torchvision caches a weights enum's file: ``$TORCH_HOME/hub/checkpoints/<name>``."""
    return weights_cache() / os.path.basename(urlparse(weights.url).path)


def imagenet_state_dict(arch_name: str, version: str = "IMAGENET1K_V1", progress: bool = True) -> dict:
    """torchvision's own ``weights.get_state_dict`` (its cache under ``TORCH_HOME``); when the
    file is absent and cannot be downloaded, a FileNotFoundError names the exact file and
    folder to place it in."""
    weights = imagenet_weights(arch_name, version)
    file = imagenet_file(weights)
    try:
        return weights.get_state_dict(progress=progress, check_hash=False)
    except Exception as err:  # URLError, socket errors, HTTP errors …
        if file.is_file():
            raise
        raise FileNotFoundError(
            f"ImageNet weights {arch_name} {version} are not in torchvision's cache and could not be "
            f"downloaded ({type(err).__name__}: {err}). Place the file {file.name} (from {weights.url}) "
            f"in {file.parent} (torchvision's cache: $TORCH_HOME/hub/checkpoints)."
        ) from err


# --- sources trained by medtl --------------------------------------------------------------
def models_dir(root: str | os.PathLike | None = None) -> Path:
    """Folder of named medtl sources: ``root``, else ``$MEDTL_MODELS``, else
    ``<results root>/models`` (see :mod:`medtl.paths`)."""
    return paths.models_dir(root)


def save_source(model: nn.Module, name: str, *, root: str | os.PathLike | None = None, overwrite: bool = False,
                **meta) -> Path:
    """Save a trained model as a named source: ``<name>.pt`` (plain state dict) and
    ``<name>.json`` (arch, classes, normalisation, source data, … from ``model.medtl`` and
    ``meta``), both written atomically. Returns the ``.pt`` path.

    A name that already exists where sources are looked up (this models folder, or a
    ``models`` folder inside the results root, such as the demo's) is refused with a
    FileExistsError naming the existing file — saving it would replace that source or
    shadow it for :func:`load_source` — unless ``overwrite=True``."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"a source name must be a non-empty file name without '/', got {name!r}")
    folder = models_dir(root)
    if not overwrite:
        check_source_name(name, root)
    info = {**getattr(model, "medtl", {}), **meta, "name": name}
    info.pop("source", None)
    if "arch" not in info:
        raise ValueError("save_source needs the architecture: build the model with medtl.models.create or pass arch=")
    file = folder / f"{name}.pt"
    atomic_write(file, lambda tmp: torch.save(model.state_dict(), tmp))
    atomic_write_bytes(folder / f"{name}.json", json.dumps(info, indent=2, default=str).encode())
    return file


def check_source_name(name: str, root: str | os.PathLike | None = None) -> None:
    """Raise a FileExistsError when saving source ``name`` into the models folder ``root``
    would replace one there, or — when that folder is one :func:`load_source` searches by
    default (the models folder, a ``models`` folder inside the results root) — would shadow
    or be shadowed by one of the same name in another searched folder. A folder of its own
    (a test's, a study's ``models_dir``) is only checked for replacement."""
    target = models_dir(root).resolve()
    searched = [f.resolve() for f in _source_folders(None)]
    folders = dict.fromkeys([target, *searched]) if target in searched else [target]
    clash = [f / f"{name}.pt" for f in folders if (f / f"{name}.pt").is_file()]
    if clash:
        raise FileExistsError(f"a source named {name!r} already exists at {clash[0]}; saving would replace or "
                              "shadow it. Choose another name, or pass overwrite=True (medtl run: --overwrite; "
                              "notebooks: the overwrite parameter)")


def _source_folders(root: str | os.PathLike | None) -> list[Path]:
    """Where a named source is looked for: the models folder, then (without an explicit
    ``root``) every ``models`` folder inside the results root (e.g. ``results/demo/models``)."""
    folders = [models_dir(root)]
    if root is None:
        results = paths.results_dir()
        if results.is_dir():
            folders += sorted({f.parent for f in results.glob("**/models/*.json")} - set(folders))
    return folders


def list_sources(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the saved sources that :func:`source_info` can find."""
    names = []
    for folder in _source_folders(root):
        names += [f.stem for f in sorted(folder.glob("*.json")) if f.with_suffix(".pt").is_file()]
    return list(dict.fromkeys(names))


def source_info(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> tuple[Path, dict]:
    """Resolve a named source (or a ``.pt`` path with a sidecar ``.json``) to its weight file
    and metadata. Names are looked up in the models folder (``root``, ``$MEDTL_MODELS``,
    ``<results>/models``) and then in every ``models`` folder of the results root."""
    p = Path(name_or_path).expanduser()
    if p.suffix in (".pt", ".pth") and p.is_file():
        file = p
    else:
        name = str(name_or_path)
        folders = _source_folders(root)
        found = [f / f"{name}.pt" for f in folders if (f / f"{name}.pt").is_file()]
        if not found:
            known = list_sources(root)
            raise FileNotFoundError(
                f"no medtl source {name!r}: looked for {name}.pt in {', '.join(str(f) for f in folders)}; "
                f"sources there: {', '.join(known) or 'none'} (train one with medtl.train.pretrain(..., name=...) or "
                "`medtl demo`, or pass root=/ $MEDTL_MODELS)")
        file = found[0]
    meta_file = file.with_suffix(".json")
    if not meta_file.is_file():
        raise FileNotFoundError(f"medtl source {file} has no metadata file {meta_file}")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as err:
        raise ValueError(f"the metadata file {meta_file} of source {file.stem!r} is not valid JSON ({err}); "
                         "it is torn or edited by hand: save the source again") from err
    if not isinstance(meta, dict) or "arch" not in meta:
        raise ValueError(f"the metadata file {meta_file} lacks the source's 'arch'; save the source again")
    return file, meta
