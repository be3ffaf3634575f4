"""MedMNIST 2D files: the catalog (from ``medmnist.INFO``), root resolution, MD5
verification, download and :func:`load`.

``medmnist.INFO`` is the single source of truth for flags, tasks, label names, channel
counts, split sizes, URLs and MD5 sums; nothing here copies it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from medmnist.info import DEFAULT_ROOT, INFO

from .. import paths
from .._io import atomic_write_bytes, download
from .imageset import MULTI_LABEL, ImageSet

#: The 12 MedMNIST 2D flags, in INFO's order.
FLAGS: tuple[str, ...] = tuple(flag for flag in INFO if not flag.endswith("3d"))
#: Image sizes MedMNIST+ ships for the 2D datasets.
SIZES: tuple[int, ...] = (28, 64, 128, 224)
SPLITS: tuple[str, ...] = ("train", "val", "test")
_KEYS = tuple(f"{split}_{kind}" for split in SPLITS for kind in ("images", "labels"))


# --- catalog -------------------------------------------------------------------------------
def check_flag(flag: str) -> str:
    """Return ``flag`` lower-cased if it is a MedMNIST 2D flag, else raise a ValueError
    listing the valid ones."""
    key = str(flag).lower()
    if key not in FLAGS:
        raise ValueError(f"unknown MedMNIST 2D flag {flag!r}; valid flags: {', '.join(FLAGS)}")
    return key


def check_size(size: int) -> int:
    if size not in SIZES:
        raise ValueError(f"unknown MedMNIST image size {size!r}; valid sizes: {SIZES}")
    return int(size)


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {SPLITS}")
    return split


def info(flag: str) -> dict:
    """``medmnist.INFO[flag]`` for a 2D flag (the dictionary itself, do not mutate)."""
    return INFO[check_flag(flag)]


def task(flag: str) -> str:
    return info(flag)["task"]


def label_names(flag: str) -> list[str]:
    labels = info(flag)["label"]
    return [labels[str(i)] for i in range(len(labels))]


def n_classes(flag: str) -> int:
    return len(info(flag)["label"])


def n_samples(flag: str, split: str) -> int:
    return int(info(flag)["n_samples"][check_split(split)])


def filename(flag: str, size: int = 28) -> str:
    """medmnist's file name: ``{flag}.npz`` at 28 px, ``{flag}_{size}.npz`` otherwise."""
    check_flag(flag)
    return f"{flag}.npz" if check_size(size) == 28 else f"{flag}_{size}.npz"


def url(flag: str, size: int = 28) -> str:
    return info(flag)["url" if check_size(size) == 28 else f"url_{size}"]


def md5(flag: str, size: int = 28) -> str:
    return info(flag)["MD5" if check_size(size) == 28 else f"MD5_{size}"]


def resolve_root(root: str | os.PathLike | None = None) -> Path:
    """The data root: ``root`` if given, else ``$MEDTL_DATA``, else medmnist's default
    (``~/.medmnist``)."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get("MEDTL_DATA")
    if env:
        return Path(env).expanduser()
    if DEFAULT_ROOT is None:
        return Path.home() / ".medmnist"
    return Path(DEFAULT_ROOT)


def path(flag: str, size: int = 28, root: str | os.PathLike | None = None) -> Path:
    return resolve_root(root) / filename(flag, size)


# --- verification --------------------------------------------------------------------------
def _cache_file() -> Path:
    return paths.cache_dir() / "md5.json"


_MD5_MEMO: dict[str, dict] = {}


def _load_md5_cache() -> dict[str, dict]:
    if not _MD5_MEMO:
        try:
            _MD5_MEMO.update(json.loads(_cache_file().read_text()))
        except (OSError, ValueError):
            pass
    return _MD5_MEMO


def _save_md5_cache() -> None:
    target = _cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, json.dumps(_MD5_MEMO, indent=0, sort_keys=True).encode())
    except OSError:
        pass  # a read-only home only costs a re-hash next time


def _hash_file(file: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.md5()
    with open(file, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def file_md5(file: str | os.PathLike, cached: bool = True) -> str:
    """MD5 hex digest of a file; with ``cached`` a digest recorded for the same (absolute
    path, size, mtime) is reused (fast repeated loads), otherwise the file is re-hashed."""
    file = Path(file).resolve()
    stat = file.stat()
    cache = _load_md5_cache()
    entry = cache.get(str(file))
    if cached and entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["md5"]
    digest = _hash_file(file)
    cache[str(file)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "md5": digest}
    _save_md5_cache()
    return digest


def _missing_message(flag: str, size: int, file: Path) -> str:
    root = file.parent
    return (
        f"MedMNIST file for flag {flag!r} at {size} px not found: looked for {file} "
        f"(data root {root}, from the root argument, else $MEDTL_DATA, else ~/.medmnist). "
        f"Get it with medtl.data.load({flag!r}, size={size}, download=True), "
        f"`medtl data download {flag} --size {size}`, or download {url(flag, size)} into {root}."
    )


def verify_file(flag: str, size: int = 28, root: str | os.PathLike | None = None, rehash: bool = True) -> Path:
    """Check that the file exists and has INFO's MD5 (re-hashed from its bytes unless
    ``rehash=False``, which trusts a digest cached for the same size and mtime — what
    :func:`load` does, to stay fast); return its path or raise."""
    flag = check_flag(flag)
    file = path(flag, size, root)
    if not file.is_file():
        raise FileNotFoundError(_missing_message(flag, size, file))
    got, want = file_md5(file, cached=not rehash), md5(flag, size)
    if got != want:
        raise ValueError(
            f"MD5 mismatch for {file} (flag {flag!r}, {size} px): got {got}, medmnist INFO says "
            f"{want}. The file is corrupt or not the official release; delete it and download "
            f"again (medtl.data.load(..., download=True) or `medtl data download {flag} --size {size}`)."
        )
    return file


def status(flag: str, size: int = 28, root: str | os.PathLike | None = None, check_md5: bool = True) -> str:
    """``"verified"``, ``"present"`` (not checked), ``"md5 mismatch"`` or ``"missing"``."""
    file = path(flag, size, root)
    if not file.is_file():
        return "missing"
    if not check_md5:
        return "present"
    return "verified" if file_md5(file) == md5(flag, size) else "md5 mismatch"


def available(root: str | os.PathLike | None = None, size: int = 28) -> list[str]:
    """Flags whose file at ``size`` exists under the data root (not MD5-checked)."""
    return [flag for flag in FLAGS if path(flag, size, root).is_file()]


def info_table(root: str | os.PathLike | None = None, check_md5: bool = True):
    """One row per 2D flag: task, channels, classes, split sizes and the file status at
    each size under the data root."""
    import pandas as pd

    rows = []
    for flag in FLAGS:
        meta = INFO[flag]
        row = {
            "flag": flag,
            "task": meta["task"],
            "channels": meta["n_channels"],
            "classes": len(meta["label"]),
            **{split: meta["n_samples"][split] for split in SPLITS},
        }
        for size in SIZES:
            row[f"{size}px"] = status(flag, size, root, check_md5)
        rows.append(row)
    return pd.DataFrame(rows)


# --- download ------------------------------------------------------------------------------
def download_file(
    flag: str, size: int = 28, root: str | os.PathLike | None = None, force: bool = False
) -> Path:
    """Download the official file from INFO's URL with a progress bar, check its MD5 and
    write it atomically (an interrupted download continues on the next call). Returns the
    file's path."""
    flag = check_flag(flag)
    file = path(flag, size, root)
    if file.is_file() and not force:
        return verify_file(flag, size, root)
    return download(url(flag, size), file, md5=md5(flag, size), what=f"MedMNIST file {flag} ({size} px)")


# --- loading -------------------------------------------------------------------------------
def _read_split(file: Path, flag: str, size: int, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        npz = np.load(file)
    except Exception as err:  # zipfile.BadZipFile, pickle errors, …
        raise ValueError(f"cannot read {file} (flag {flag!r}, {size} px) as an .npz file: {err}") from err
    with npz:
        missing = [k for k in (f"{split}_images", f"{split}_labels") if k not in npz.files]
        if missing:
            raise ValueError(
                f"{file} (flag {flag!r}, {size} px) lacks the key(s) {missing}; a MedMNIST file "
                f"has {list(_KEYS)} (found {npz.files}). Re-download it."
            )
        try:
            return npz[f"{split}_images"], npz[f"{split}_labels"]
        except (ValueError, OSError, EOFError) as err:  # object arrays (pickles), truncated members
            raise ValueError(f"cannot read {split} arrays of {file} (flag {flag!r}, {size} px): {err}; a MedMNIST "
                             "file holds plain uint8 arrays. Re-download it.") from err


def _check_arrays(file: Path, flag: str, size: int, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    meta = INFO[flag]
    n = meta["n_samples"][split]
    channels = meta["n_channels"]
    want_img = (n, size, size) if channels == 1 else (n, size, size, channels)
    n_lab = len(meta["label"]) if meta["task"] == MULTI_LABEL else 1
    problems = []
    if images.shape != want_img:
        problems.append(f"{split}_images has shape {images.shape}, INFO implies {want_img}")
    if labels.shape != (n, n_lab):
        problems.append(f"{split}_labels has shape {labels.shape}, INFO implies {(n, n_lab)}")
    if images.dtype != np.uint8:
        problems.append(f"{split}_images has dtype {images.dtype}, expected uint8")
    if not np.issubdtype(labels.dtype, np.integer) and not (
            np.issubdtype(labels.dtype, np.floating) and np.isfinite(labels).all() and (labels == np.round(labels)).all()):
        problems.append(f"{split}_labels has non-integer values (dtype {labels.dtype}); class labels must be integers")
    if problems:
        raise ValueError(
            f"{file} (flag {flag!r}, {size} px) disagrees with medmnist INFO: "
            + "; ".join(problems)
            + ". The file is not an official MedMNIST release for this flag and size; re-download it."
        )


def load(
    flag: str,
    split: str = "train",
    size: int = 28,
    root: str | os.PathLike | None = None,
    download: bool = False,
    verify: bool = True,
) -> ImageSet:
    """Load one split of a MedMNIST 2D dataset into memory.

    Args:
        flag: one of :data:`FLAGS` (``"bloodmnist"``, …).
        split: ``"train"``, ``"val"`` or ``"test"``.
        size: 28, 64, 128 or 224.
        root: data folder; default ``$MEDTL_DATA``, else ``~/.medmnist``.
        download: fetch the official file when it is missing.
        verify: check INFO's MD5 (computed once per file, then cached by size and mtime;
            ``medtl data verify`` re-hashes).

    Returns:
        ImageSet with uint8 images ``N×C×size×size`` and int64 labels ``N`` (float multi-hot
        ``N×14`` for chestmnist); split sizes equal ``INFO[flag]["n_samples"]``.
    """
    flag, split, size = check_flag(flag), check_split(split), check_size(size)
    file = path(flag, size, root)
    if not file.is_file():
        if not download:
            raise FileNotFoundError(_missing_message(flag, size, file))
        download_file(flag, size, root)
    if verify:
        verify_file(flag, size, root, rehash=False)
    images, labels = _read_split(file, flag, size, split)
    _check_arrays(file, flag, size, split, images, labels)
    images = torch.from_numpy(images)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    meta = INFO[flag]
    labels_t = torch.from_numpy(labels.astype(np.float32 if meta["task"] == MULTI_LABEL else np.int64))
    return ImageSet(
        images=images,
        labels=labels_t,
        task=meta["task"],
        label_names=label_names(flag),
        name=f"{flag}/{split}" if size == 28 else f"{flag}_{size}/{split}",
        meta={"flag": flag, "split": split, "size": size, "file": str(file)},
    )
