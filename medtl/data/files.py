"""User images: class folders, list files and CSV tables, decoded once into an ImageSet."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .imageset import BINARY, MULTI_CLASS, MULTI_LABEL, ImageSet

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".ppm", ".pgm")


def decode_images(paths: Sequence[str | os.PathLike], size: int | tuple[int, int], channels: int = 3,
                  progress: bool = True, resample: str = "bicubic") -> torch.Tensor:
    """Decode image files into one uint8 tensor ``N×channels×H×W``.

    Each image is converted to grey (``channels=1``, PIL mode ``L``) or RGB (``channels=3``)
    and resized to ``size`` (an int for square, or ``(H, W)``) with antialiased bicubic
    resampling (``resample="nearest"`` for masks). 16-bit and float images are rescaled to
    0..255 first.
    """
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if resample not in ("bicubic", "nearest"):
        raise ValueError(f"resample must be 'bicubic' or 'nearest', got {resample!r}")
    method = Image.Resampling.BICUBIC if resample == "bicubic" else Image.Resampling.NEAREST
    h, w = (size, size) if isinstance(size, int) else size
    out = torch.empty((len(paths), channels, h, w), dtype=torch.uint8)
    bad = []  # (path, reason) of every file that cannot be decoded: all said at once, not one per run
    for i, p in enumerate(tqdm(paths, desc="decoding images", disable=not progress or len(paths) < 200)):
        try:
            with Image.open(p) as img:
                img.load()
                if img.mode in ("I", "I;16", "I;16B", "F"):
                    arr = np.asarray(img, dtype=np.float64)
                    lo, hi = arr.min(), arr.max()
                    arr = (arr - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(arr)
                    img = Image.fromarray(arr.round().astype(np.uint8))
                img = img.convert("L" if channels == 1 else "RGB").resize((w, h), method)
        except (OSError, ValueError) as err:
            bad.append((p, err))
            continue
        arr = np.array(img, dtype=np.uint8)  # a writable copy
        out[i] = torch.from_numpy(arr[None] if channels == 1 else arr.transpose(2, 0, 1))
    if len(bad) == 1:
        p, err = bad[0]
        raise ValueError(f"cannot decode image {p}: {err} (remove or replace the file and run again)") from err
    if bad:
        shown = "; ".join(f"{p}: {err}" for p, err in bad[:5])
        more = f"; and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise ValueError(f"cannot decode {len(bad)} of {len(paths)} images (remove or replace them and run again): "
                         f"{shown}{more}") from bad[0][1]
    return out


def _single_label_set(paths, labels, label_names, size, channels, name, progress) -> ImageSet:
    task = BINARY if len(label_names) == 2 else MULTI_CLASS
    return ImageSet(
        images=decode_images(paths, size, channels, progress),
        labels=torch.as_tensor(np.asarray(labels, dtype=np.int64)),
        task=task,
        label_names=list(label_names),
        name=name,
        meta={"paths": np.asarray([str(p) for p in paths])},
    )


def from_folder(root: str | os.PathLike, size: int = 28, channels: int = 3, name: str | None = None,
                progress: bool = True) -> ImageSet:
    """Images in class sub-folders (``root/<class>/<image>``), classes in sorted order,
    as torchvision's ``ImageFolder`` orders them."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise ValueError(f"image folder {root} has no class sub-folders (expected root/<class>/<image>)")
    found = {cls: sorted(p for p in (root / cls).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES) for cls in folders}
    empty = [cls for cls, files in found.items() if not files]
    if empty:
        warnings.warn(f"image folder {root}: ignoring sub-folder(s) {empty} without images (not classes)",
                      stacklevel=2)
    classes = [cls for cls in folders if found[cls]]
    paths, labels = [], []
    for c, cls in enumerate(classes):
        paths += found[cls]
        labels += [c] * len(found[cls])
    if not paths:
        raise ValueError(f"image folder {root} has no image files ({', '.join(IMAGE_SUFFIXES)})")
    if len(classes) < 2:
        raise ValueError(f"image folder {root} has a single class {classes[0]!r}; need at least 2")
    return _single_label_set(paths, labels, classes, size, channels, name or root.name, progress)


def _multi_hot_or_single(rows: list[list[str]], where: str, label_names, image_root: Path,
                         size, channels, name, progress) -> ImageSet:
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"{where}: every line needs the same number of label columns, found {sorted(widths)}")
    paths = [image_root / r[0] for r in rows]
    try:
        values = np.asarray([[float(v) for v in r[1:]] for r in rows])
    except ValueError as err:
        raise ValueError(f"{where}: labels must be numbers ({err})") from err
    n_cols = values.shape[1]
    if n_cols == 0:
        raise ValueError(f"{where}: each line needs an image path followed by its label(s)")
    if n_cols == 1:
        lab = values[:, 0]
        if (lab != lab.round()).any() or lab.min() < 0:
            raise ValueError(f"{where}: class labels must be non-negative integers")
        n = int(lab.max()) + 1
        if label_names is None:
            absent = sorted(set(range(n)) - set(lab.astype(int).tolist()))
            if absent:
                raise ValueError(f"{where}: class labels must be 0..C-1 with every class present; classes {absent} "
                                 "have no image (re-index the labels, or pass label_names to declare the classes)")
        names = list(label_names) if label_names is not None else [str(i) for i in range(n)]
        if n > len(names):
            raise ValueError(f"{where}: label {n - 1} but only {len(names)} label names")
        return _single_label_set(paths, lab.astype(np.int64), names, size, channels, name, progress)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"{where}: multi-label columns must hold 0 or 1")
    names = list(label_names) if label_names is not None else [str(i) for i in range(n_cols)]
    if len(names) != n_cols:
        raise ValueError(f"{where}: {n_cols} label columns but {len(names)} label names")
    return ImageSet(
        images=decode_images(paths, size, channels, progress),
        labels=torch.as_tensor(values, dtype=torch.float32),
        task=MULTI_LABEL,
        label_names=names,
        name=name,
        meta={"paths": np.asarray([str(p) for p in paths])},
    )


def from_list(list_file: str | os.PathLike, image_root: str | os.PathLike | None = None, size: int = 28,
              channels: int = 3, label_names: Sequence[str] | None = None, name: str | None = None,
              progress: bool = True, sep: str | None = None) -> ImageSet:
    """A list file, one image per line: ``path label`` (single label, 0..C-1) or
    ``path l1 l2 … lL`` (multi-hot, as the benchmark study's ChestX-ray14 lists), fields
    separated by whitespace (``sep=None``) or by ``sep`` (``","`` for the study's Shenzhen
    lists ``CHNCXR_0001_0.png,0``, no header). Paths are relative to ``image_root``
    (default: the list file's folder). Blank lines and lines starting with ``#`` are
    skipped."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"list file {list_file} does not exist")
    rows = [[f.strip() for f in ln.split(sep)] if sep else ln.split() for ln in list_file.read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise ValueError(f"list file {list_file} has no entries")
    root = Path(image_root) if image_root is not None else list_file.parent
    return _multi_hot_or_single(rows, f"list file {list_file}", label_names, root, size, channels,
                                name or list_file.stem, progress)


def from_csv(csv_file: str | os.PathLike, path_column: str = "path", label_columns: str | Sequence[str] = "label",
             image_root: str | os.PathLike | None = None, size: int = 28, channels: int = 3,
             label_names: Sequence[str] | None = None, name: str | None = None, progress: bool = True) -> ImageSet:
    """A CSV table with an image-path column and one label column (class index or class
    name) or several 0/1 label columns (multi-hot; their names become the label names)."""
    import pandas as pd

    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"CSV file {csv_file} does not exist")
    try:
        table = pd.read_csv(csv_file)
    except (ValueError, pd.errors.ParserError) as err:
        raise ValueError(f"cannot read {csv_file} as a CSV table: {err}") from err
    cols = [label_columns] if isinstance(label_columns, str) else list(label_columns)
    missing = [c for c in [path_column, *cols] if c not in table.columns]
    if missing:
        raise ValueError(f"CSV {csv_file} lacks column(s) {missing}; it has {list(table.columns)}")
    root = Path(image_root) if image_root is not None else csv_file.parent
    where = f"CSV {csv_file}"
    if len(cols) == 1 and not pd.api.types.is_numeric_dtype(table[cols[0]]):
        names = sorted(table[cols[0]].astype(str).unique()) if label_names is None else list(label_names)
        index = {n: i for i, n in enumerate(names)}
        unknown = sorted(set(table[cols[0]].astype(str)) - set(index))
        if unknown:
            raise ValueError(f"{where}: labels {unknown} are not in label_names {names}")
        rows = [[p, str(index[v])] for p, v in zip(table[path_column].astype(str), table[cols[0]].astype(str))]
        return _with_split(_multi_hot_or_single(rows, where, names, root, size, channels, name or csv_file.stem,
                                                progress), table)
    rows = [[str(p), *map(str, vals)] for p, vals in zip(table[path_column], table[cols].to_numpy())]
    names = label_names if label_names is not None else (cols if len(cols) > 1 else None)
    return _with_split(_multi_hot_or_single(rows, where, names, root, size, channels, name or csv_file.stem,
                                            progress), table)


def _with_split(data: ImageSet, table) -> ImageSet:
    """Keep a CSV's ``split`` column (train/val/test per row) in ``meta["split"]``."""
    if "split" in table.columns:
        data.meta["split"] = table["split"].astype(str).to_numpy()
    return data


#: CheXpert's 14 observations, in the CSV's column order (columns 5…18).
CHEXPERT_LABELS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
                   "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
                   "Fracture", "Support Devices")
#: The 5 observations the benchmark study (and CheXpert's leaderboard) report AUC on.
CHEXPERT_EVAL = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: Uncertain-label (-1) policies: the hard value stored, and the range soft labels are drawn
#: from while training (None: no resampling).
UNCERTAIN_POLICIES: dict[str, tuple[int, tuple[float, float] | None]] = {
    "LSR-Ones": (1, (0.55, 0.85)), "Ones": (1, None), "Zeros": (0, None), "LSR-Zeros": (0, (0.0, 0.3)),
}


def chexpert_labels(rows: Sequence[Sequence[str]], policy: str = "LSR-Ones", unknown: int = 0,
                    where: str = "CheXpert CSV") -> tuple[np.ndarray, np.ndarray]:
    """CheXpert label cells (``1``/``1.0`` positive, ``0`` negative, ``-1`` uncertain, blank
    unmentioned) → hard 0/1 labels ``N×L`` and the uncertain mask ``N×L``, under an
    uncertain-label ``policy`` (:data:`UNCERTAIN_POLICIES`); blanks become ``unknown``."""
    if policy not in UNCERTAIN_POLICIES:
        raise ValueError(f"unknown uncertain-label policy {policy!r}; valid: {', '.join(UNCERTAIN_POLICIES)}")
    if unknown not in (0, 1):
        raise ValueError(f"unknown (the value of blank cells) must be 0 or 1, got {unknown!r}")
    hard_uncertain = UNCERTAIN_POLICIES[policy][0]
    labels = np.zeros((len(rows), len(rows[0]) if rows else 0), dtype=np.float32)
    uncertain = np.zeros(labels.shape, dtype=bool)
    for i, row in enumerate(rows):
        for j, cell in enumerate(row):
            cell = cell.strip()
            if cell == "":
                labels[i, j] = unknown
                continue
            try:
                v = float(cell)
            except ValueError:
                raise ValueError(f"{where}: row {i + 2} has label {cell!r}; expected 1, 0, -1 or blank") from None
            if v == -1:
                labels[i, j], uncertain[i, j] = hard_uncertain, True
            elif v in (0, 1):
                labels[i, j] = v
            else:
                raise ValueError(f"{where}: row {i + 2} has label {cell!r}; expected 1, 0, -1 or blank")
    return labels, uncertain


def from_chexpert(csv_file: str | os.PathLike, image_root: str | os.PathLike | None = None, size: int = 224,
                  channels: int = 3, policy: str = "LSR-Ones", unknown: int = 0, name: str | None = None,
                  progress: bool = True) -> ImageSet:
    """The official CheXpert CSV (``train.csv`` / ``valid.csv``) as a 14-label multi-label
    set, the benchmark study's way: header skipped, the image path in column 0 (relative to
    ``image_root``, default the CSV's parent's parent, where ``CheXpert-v1.0-small/…`` paths
    start), the 14 observations from column 5.

    ``policy`` treats uncertain (-1) labels: ``"Ones"`` → 1, ``"Zeros"`` → 0,
    ``"LSR-Ones"`` → U(0.55, 0.85) and ``"LSR-Zeros"`` → U(0, 0.3), the LSR draws redone
    every epoch by the training loader (``meta["uncertain"]``, ``meta["uncertain_range"]``;
    evaluation sees the hard value 1 / 0). Blank cells become ``unknown`` (the study's
    ``--unknown_label``, 0). Report AUC on :data:`CHEXPERT_EVAL` as the study does."""
    import csv

    csv_file = Path(csv_file)
    if not csv_file.is_file():
        raise FileNotFoundError(f"CheXpert CSV {csv_file} does not exist")
    with open(csv_file, newline="") as fh:
        table = list(csv.reader(fh))
    if len(table) < 2:
        raise ValueError(f"CheXpert CSV {csv_file} has no rows after its header")
    header, body = table[0], [r for r in table[1:] if r]
    short = [i + 2 for i, r in enumerate(body) if len(r) < 5 + len(CHEXPERT_LABELS)]
    if len(header) < 5 + len(CHEXPERT_LABELS) or short:
        raise ValueError(f"{csv_file} is not a CheXpert CSV: it needs the path, 4 metadata columns and the 14 "
                         f"observations ({len(header)} header columns; short rows {short[:5]})")
    labels, uncertain = chexpert_labels([r[5:5 + len(CHEXPERT_LABELS)] for r in body], policy, unknown,
                                        f"CheXpert CSV {csv_file}")
    root = Path(image_root) if image_root is not None else csv_file.parent.parent
    paths = [root / r[0] for r in body]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) of {csv_file} are missing under {root}: {missing[:3]}")
    meta = {"paths": np.asarray([str(p) for p in paths]), "uncertain": uncertain, "policy": policy,
            "eval_labels": list(CHEXPERT_EVAL)}  # the 5 observations the study reports AUC on
    hard, soft = UNCERTAIN_POLICIES[policy]
    if soft is not None:
        meta["uncertain_range"] = soft
    return ImageSet(images=decode_images(paths, size, channels, progress), labels=torch.as_tensor(labels),
                    task=MULTI_LABEL, label_names=list(CHEXPERT_LABELS), name=name or csv_file.stem, meta=meta)
