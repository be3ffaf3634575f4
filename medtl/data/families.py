"""Dataset families behind one ``get(name, split, size, ...)``: MedMNIST flags, the
synthetic suite, and user images (class folders, list files, CSV tables). A family is one
:class:`Family` row in :data:`FAMILIES`; study code asks :func:`get` / :func:`target_splits`
and never branches on where a dataset comes from.

Adding a family is one registration::

    D.register_family(D.Family("mydata", match=lambda name: name.startswith("mydata:"),
                               load=my_loader, names=lambda root: ["mydata:a", "mydata:b"]))
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._registry import Registry
from . import catalog
from .files import CHEXPERT_LABELS, from_chexpert, from_csv, from_folder, from_list
from .imageset import ImageSet
from .splits import folds, subset
from .synthetic import SYNTHETIC, SYNTHETIC_SPLITS, synthetic
from .synthetic import related as synthetic_related


@dataclass(frozen=True)
class Family:
    """One dataset family.

    Attributes:
        name: the family's name (``"medmnist"``, ``"synthetic"``, ``"folder"``, …).
        match: ``match(name) -> bool``: whether a dataset name belongs to the family.
        load: ``load(name, split, size, root, **options) -> ImageSet`` (one split).
        names: ``names(root) -> list`` of the family's catalogued datasets (for listings).
        available: ``available(name, size, root) -> bool``: can it be loaded now (files
            present)? Default: always.
        splits: ``splits(name, size, root, fold, **options) -> (train, val, test)``, the
            target protocol of the family (MedMNIST: the study's fold subsets); default: the
            family's own train/val/test splits.
        related: ``related(name) -> list`` of datasets expected to transfer best to it (the
            known answer of a synthetic suite); default: none known.
        description: one line for listings.
    """

    name: str
    match: Callable[[str], bool]
    load: Callable[..., ImageSet]
    names: Callable[[str | os.PathLike | None], list[str]] = lambda root: []
    available: Callable[..., bool] = lambda name, size, root: True
    splits: Callable[..., tuple[ImageSet, ImageSet, ImageSet]] | None = None
    related: Callable[[str], list[str]] = lambda name: []
    description: str = ""
    options: dict = field(default_factory=dict)


#: The registered families, in lookup order (the first whose ``match`` accepts a name wins).
FAMILIES: Registry[Family] = Registry("dataset family")


def register_family(family: Family, replace: bool = False) -> Family:
    """Add a dataset family (a duplicate name is an error unless ``replace``)."""
    return FAMILIES.register(family.name, family, replace=replace)


def family_of(name: str, family: str | None = None) -> Family:
    """The family of dataset ``name`` (or the one named ``family``)."""
    if family is not None:
        return FAMILIES.get(family)
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"a dataset name must be a string or a path, got {type(name).__name__}")
    for fam in FAMILIES.values():
        if fam.match(str(name)):
            return fam
    raise ValueError(
        f"unknown dataset {str(name)!r}: not a MedMNIST flag ({', '.join(catalog.FLAGS)}), not a synthetic-suite "
        f"name ({', '.join(SYNTHETIC)}), and not an existing image folder, list file (.txt) or CSV table; "
        f"registered families: {', '.join(FAMILIES)}"
    )


def get(name: str | os.PathLike, split: str = "train", size: int = 28, root: str | os.PathLike | None = None,
        n: int | None = None, seed: int = 0, family: str | None = None, **options) -> ImageSet:
    """One split of any dataset: a MedMNIST flag, a synthetic-suite name, an image folder,
    a list file or a CSV (see :data:`FAMILIES`); ``n`` draws a seeded stratified subset
    (all images when ``n`` is None or not smaller than the split)."""
    fam = family_of(name, family)
    ds = fam.load(str(name), split, size, root, **options)
    if n is not None and n < len(ds):
        ds = subset(ds, int(n), stratified=True, seed=seed)
    return ds


def target_splits(name: str | os.PathLike, size: int = 28, root: str | os.PathLike | None = None, fold: int = 1,
                  n_test: int | None = None, seed: int = 0, family: str | None = None,
                  **options) -> tuple[ImageSet, ImageSet, ImageSet]:
    """A target's (train, val, test) under its family's protocol: MedMNIST targets use the
    dataset-transferability study's fold subsets (100·C train, 25·C val) and the official test
    split; other families their own splits. ``n_test`` subsets the test split."""
    fam = family_of(name, family)
    if fam.splits is not None:
        train, val, test = fam.splits(str(name), size, root, fold, **options)
    else:
        train, val, test = (fam.load(str(name), s, size, root, **options) for s in ("train", "val", "test"))
    if n_test is not None and n_test < len(test):
        test = subset(test, int(n_test), stratified=True, seed=seed)
    return train, val, test


def available(name: str, size: int = 28, root: str | os.PathLike | None = None) -> bool:
    """Whether ``name`` can be loaded now (its files are present)."""
    try:
        fam = family_of(name)
    except ValueError:
        return False
    return bool(fam.available(str(name), size, root))


def related(name: str) -> list[str]:
    """Datasets expected to transfer best to ``name`` (known for the synthetic suite)."""
    return list(family_of(name).related(str(name)))


def families_table(root: str | os.PathLike | None = None):
    """One row per registered family: name, description, catalogued datasets."""
    import pandas as pd

    return pd.DataFrame([{"family": f.name, "description": f.description,
                          "datasets": ", ".join(f.names(root)) or "(any path)"} for f in FAMILIES.values()])


# --- built-in families ---------------------------------------------------------------------
def _medmnist_splits(name, size, root, fold, **options):
    n_folds = max(5, int(fold))
    f = folds(name, size, n_folds=n_folds, root=root)[int(fold) - 1]
    return f.train, f.val, catalog.load(name, "test", size, root)


def _synthetic_splits(name, size, root, fold, **options):
    """The suite's target protocol, as MedMNIST's folds: 100 images per class for training
    and 25 per class for validation (stratified, seeded by the fold), the whole test split."""
    train, val = (_synthetic_load(name, s, size, root, **options) for s in ("train", "val"))
    per = {"train": 100, "val": 25}
    train, val = (subset(d, per_class=min(per[s], int(d.class_counts().min())), seed=int(fold))
                  for s, d in (("train", train), ("val", val)))
    return train, val, _synthetic_load(name, "test", size, root, **options)


def _synthetic_load(name, split, size, root, **options):
    return synthetic(name, split, size, n=options.get("n_images"), seed=options.get("suite_seed", 0))


#: User-data splits when a folder / list / table has no split of its own: train / val / test
#: fractions of a seeded, stratified partition.
USER_SPLIT = {"train": 0.7, "val": 0.1, "test": 0.2}
_USER_CACHE: dict[tuple, ImageSet] = {}


def split_whole(data: ImageSet, split: str, seed: int = 0, fractions: dict | None = None) -> ImageSet:
    """``split`` of a seeded stratified train/val/test partition of ``data`` (fractions
    :data:`USER_SPLIT`); each class is shuffled and cut in order, so the three splits are
    disjoint and cover the data. The result's ``meta["split_from"]`` says what it was cut
    from: ``{"images": len(data), "fractions": {split: fraction}, "seed": seed}``."""
    fractions = dict(fractions or USER_SPLIT)
    if split not in fractions:
        raise ValueError(f"unknown split {split!r}; valid splits: {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    classes = data.primary_labels()
    picked = []
    names = list(fractions)
    for c in np.unique(classes):
        pool = rng.permutation(np.flatnonzero(classes == c))
        bounds = np.round(np.cumsum([0] + [fractions[s] for s in names]) / sum(fractions.values()) * len(pool))
        i = names.index(split)
        picked.append(pool[int(bounds[i]):int(bounds[i + 1])])
    idx = np.sort(np.concatenate(picked))
    if len(idx) == 0:
        raise ValueError(f"{data.name!r} has too few images ({len(data)}) for a {split} split")
    out = data.subset(idx, name=f"{data.name}/{split}")
    out.meta["split_from"] = {"images": len(data), "fractions": fractions, "seed": seed}
    return out


def _user_load(reader):
    def load(name, split, size, root, channels: int = 3, progress: bool = False, split_seed: int = 0, **options):
        path = Path(name).expanduser()
        if path.is_dir() and all((path / s).is_dir() for s in ("train", "val", "test")):
            return from_folder(path / split, size=size, channels=channels, name=f"{path.name}/{split}",
                               progress=progress)
        key = (str(path.resolve()), size, channels, tuple(sorted(options.items())))
        if key not in _USER_CACHE:
            _USER_CACHE[key] = reader(path, size=size, channels=channels, progress=progress, **options)
        whole = _USER_CACHE[key]
        if "split" in whole.meta:  # a table with a split column
            keep = np.flatnonzero(np.asarray(whole.meta["split"]) == split)
            if not len(keep):
                raise ValueError(f"{path} has no rows with split {split!r}")
            return whole.subset(keep, name=f"{whole.name}/{split}")
        return split_whole(whole, split, split_seed)

    return load


#: Words naming each split in a split file's name (``Xray14_val_official.txt``,
#: ``ShenzenCXR_valid_data.txt``, CheXpert's ``valid.csv``).
SPLIT_WORDS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}
_SPLIT_SUFFIXES = (".txt", ".lst", ".list", ".csv")


def split_files(folder: str | os.PathLike) -> dict[str, Path] | None:
    """A folder's official split files — one list file or CSV per split whose name holds the
    split's word as a ``_``/``-``/``.``-separated part (:data:`SPLIT_WORDS`) — as ``{split:
    path}``; None when the folder has none of them. Raises ValueError naming the files when a
    split has none or several (e.g. ChestX-ray14's ``train_val_list.txt``, which is both)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        return None
    files = sorted(f for f in path.iterdir() if f.is_file() and f.suffix.lower() in _SPLIT_SUFFIXES)
    words = {f: set(re.split(r"[_\-. ]+", f.stem.lower())) for f in files}
    found = {s: [f for f in files if words[f] & set(w)] for s, w in SPLIT_WORDS.items()}
    if not any(found.values()):
        return None
    bad = {s: [f.name for f in fs] for s, fs in found.items() if len(fs) != 1}
    shared = [f.name for f in files if sum(f in fs for fs in found.values()) > 1]
    if bad or shared:
        raise ValueError(f"{path}: official split files need exactly one list/CSV per split (names holding "
                         f"{', '.join('/'.join(w) for w in SPLIT_WORDS.values())}); found "
                         f"{ {s: [f.name for f in fs] for s, fs in found.items()} }"
                         f"{f', naming several splits: {shared}' if shared else ''}")
    return {s: fs[0] for s, fs in found.items()}


def _has_split_files(name) -> bool:
    """The split-files family's match: a folder (without train/val/test sub-folders) holding
    split files; an ambiguous set matches too, so that loading it names the problem."""
    path = Path(name).expanduser()
    if not path.is_dir() or all((path / s).is_dir() for s in SPLIT_WORDS):
        return False
    try:
        return split_files(path) is not None
    except ValueError:
        return True


def _is_chexpert_csv(path: Path) -> bool:
    with open(path, newline="") as fh:
        header = fh.readline().strip().split(",")
    return len(header) >= 5 + len(CHEXPERT_LABELS) and header[5:5 + len(CHEXPERT_LABELS)] == list(CHEXPERT_LABELS)


def _split_file_load(name, split, size, root, channels: int = 3, progress: bool = False,
                     image_root: str | os.PathLike | None = None, policy: str = "LSR-Ones", **options):
    """One split of a folder of official split files (:func:`split_files`): a CheXpert CSV
    (its header's 14 observations) through :func:`from_chexpert` with ``policy``, another
    CSV through :func:`from_csv`, a list file through :func:`from_list` (comma-separated
    when its first line is, as the study's Shenzhen lists)."""
    files = split_files(name)
    if split not in files:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(files)}")
    file = files[split]
    key = (str(file.resolve()), size, channels, str(image_root), policy, tuple(sorted(options.items())))
    if key not in _USER_CACHE:
        label = f"{Path(name).name}/{split}"
        if file.suffix.lower() == ".csv" and _is_chexpert_csv(file):
            ds = from_chexpert(file, image_root, size, channels, policy=policy, name=label, progress=progress,
                               **options)
        elif file.suffix.lower() == ".csv":
            ds = from_csv(file, image_root=image_root, size=size, channels=channels, name=label, progress=progress,
                          **options)
        else:
            first = next((ln for ln in file.read_text().splitlines() if ln.strip()), "")
            ds = from_list(file, image_root, size, channels, name=label, progress=progress,
                           sep="," if "," in first else None, **options)
        _USER_CACHE[key] = ds
    return _USER_CACHE[key]


def _is_suffix(*suffixes):
    return lambda name: Path(name).suffix.lower() in suffixes and Path(name).expanduser().is_file()


register_family(Family(
    "medmnist", match=lambda name: name in catalog.FLAGS,
    load=lambda name, split, size, root, **o: catalog.load(name, split, size, root),
    names=lambda root: list(catalog.FLAGS),
    available=lambda name, size, root: name in catalog.available(root, size),
    splits=_medmnist_splits,
    description="MedMNIST 2D (official files under the data root, MD5-verified; targets use the study's folds)"))
register_family(Family(
    "synthetic", match=lambda name: name in SYNTHETIC, load=_synthetic_load, names=lambda root: list(SYNTHETIC),
    splits=_synthetic_splits,
    related=synthetic_related,
    description=f"offline synthetic suite with known answers ({'/'.join(map(str, SYNTHETIC_SPLITS.values()))} "
                "images per split)"))
register_family(Family(
    "split-files", match=_has_split_files, load=_split_file_load,
    description="a folder of official split files, one list or CSV per split named *train* / *val* (*valid*) / "
                "*test* (the benchmark study's ChestX-ray14 and Shenzhen lists, CheXpert's CSVs): used as they are, "
                "never re-split"))
register_family(Family(
    "folder", match=lambda name: Path(name).expanduser().is_dir(),
    load=_user_load(lambda p, **kw: from_folder(p, **kw)),
    description="class sub-folders root/<class>/<image> (train/val/test sub-folders, else a seeded 70/10/20 split)"))
register_family(Family(
    "list", match=_is_suffix(".txt", ".lst", ".list"),
    load=_user_load(lambda p, **kw: from_list(p, **kw)),
    description="list file 'path label' or 'path l1 .. lL' per line (seeded 70/10/20 split)"))
register_family(Family(
    "csv", match=_is_suffix(".csv"),
    load=_user_load(lambda p, **kw: from_csv(p, **kw)),
    description="CSV table with a path column and label column(s) (a 'split' column, else a seeded 70/10/20 split)"))

