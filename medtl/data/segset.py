"""Segmentation data: :class:`SegSet` (uint8 images with binary masks, in memory), image
and mask folders (the benchmark study's Montgomery / DRIVE layouts), and a synthetic
segmentation suite with known answers."""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .files import IMAGE_SUFFIXES, decode_images
from .imageset import ImageSet, as_images
from .synthetic import shape_masks, split_size

#: The task string of a segmentation set (not a medmnist task: no class labels).
SEGMENTATION = "segmentation"
#: Mask file name patterns tried for an image ``stem.ext``: the same name, DRIVE's
#: ``stem_manual1.*`` (with DRIVE's image suffix ``_training`` / ``_test`` dropped), ``stem_mask.*``.
MASK_PATTERNS = ("{stem}{ext}", "{stem}.png", "{stem}_manual1.png", "{stem}_manual1.gif", "{drive}_manual1.png",
                 "{drive}_manual1.gif", "{stem}_mask.png")


@dataclass(eq=False)
class SegSet(ImageSet):
    """Images with one binary mask each, fully in memory (a subclass of
    :class:`ImageSet`, so loaders, fingerprints, subsets and ``fit`` take it).

    Attributes:
        images: uint8 ``N×C×H×W`` (C = 1 or 3).
        labels: the masks, uint8 ``N×1×H×W`` with values 0/1 (also as :attr:`masks`).
        task: always :data:`SEGMENTATION`.
        label_names: ``["foreground"]``.
    """

    task: str = SEGMENTATION
    label_names: list[str] = field(default_factory=lambda: ["foreground"])

    def __post_init__(self) -> None:
        images = as_images(self.images, f"SegSet {self.name!r}")
        masks = self.labels if isinstance(self.labels, torch.Tensor) else torch.as_tensor(np.asarray(self.labels))
        if masks.ndim == 3:
            masks = masks[:, None]
        if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0] \
                or masks.shape[2:] != images.shape[2:]:
            raise ValueError(f"SegSet {self.name!r}: masks must be N×1×H×W matching the images "
                             f"{tuple(images.shape)}, got {tuple(masks.shape)}")
        if masks.numel() and not bool(((masks == 0) | (masks == 1)).all()):
            raise ValueError(f"SegSet {self.name!r}: masks must hold 0/1 values (binarise them first, e.g. "
                             "masks > 127)")
        if self.task != SEGMENTATION:
            raise ValueError(f"SegSet {self.name!r}: task must be {SEGMENTATION!r}, got {self.task!r}")
        self.images, self.labels = images, masks.to(torch.uint8)
        self.label_names = ["foreground"]

    @property
    def masks(self) -> torch.Tensor:
        return self.labels

    @property
    def is_multilabel(self) -> bool:
        return False

    def class_counts(self) -> np.ndarray:
        """Foreground pixels over the whole set (shape ``(1,)``)."""
        return np.array([int(self.labels.sum())])

    def primary_labels(self) -> np.ndarray:
        """1 for an image with any foreground, else 0 (for stratified subsets)."""
        return (self.labels.flatten(1).amax(1) > 0).to(torch.int64).numpy()

    def __repr__(self) -> str:
        n, c, h, w = self.images.shape
        return f"SegSet({self.name!r}, n={n}, images={c}×{h}×{w} uint8, foreground={self.foreground():.3f})"

    def foreground(self) -> float:
        """The share of foreground pixels."""
        return float(self.labels.float().mean()) if self.labels.numel() else math.nan


def _mask_for(image: Path, mask_root: Path) -> Path | None:
    drive = image.stem.rsplit("_", 1)[0] if "_" in image.stem else image.stem
    for pattern in MASK_PATTERNS:
        candidate = mask_root / pattern.format(stem=image.stem, ext=image.suffix, drive=drive)
        if candidate.is_file():
            return candidate
    return None


def from_seg_folder(images: str | os.PathLike, masks: str | os.PathLike, size: int = 224, channels: int = 3,
                    threshold: int = 127, name: str | None = None, progress: bool = True) -> SegSet:
    """Images in one folder and their masks in another, matched by name: the same file
    name (Montgomery), ``<stem>_manual1.png``/``.gif`` (DRIVE, also with the image's
    ``_training``/``_test`` suffix dropped) or ``<stem>_mask.png``. Images are resized
    bicubically, masks with nearest neighbours, then binarised (``> threshold``).

    Raises:
        FileNotFoundError: a folder is missing; ValueError: an image has no mask (named).
    """
    image_root, mask_root = Path(images), Path(masks)
    for what, root in (("image", image_root), ("mask", mask_root)):
        if not root.is_dir():
            raise FileNotFoundError(f"{what} folder {root} does not exist")
    files = sorted(p for p in image_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"image folder {image_root} has no image files ({', '.join(IMAGE_SUFFIXES)})")
    pairs = [(f, _mask_for(f, mask_root)) for f in files]
    lonely = [f.name for f, m in pairs if m is None]
    if lonely:
        raise ValueError(f"{len(lonely)} image(s) in {image_root} have no mask in {mask_root} "
                         f"(tried {', '.join(MASK_PATTERNS)}): {', '.join(lonely[:5])}")
    x = decode_images(files, size, channels, progress)
    m = decode_images([m for _, m in pairs], size, 1, progress, resample="nearest")
    return SegSet(images=x, labels=(m > threshold).to(torch.uint8), name=name or image_root.name,
                  meta={"paths": np.asarray([str(f) for f in files]), "mask_paths": np.asarray([str(m) for _, m in pairs])})


# --- the synthetic segmentation suite --------------------------------------------------------
#: Synthetic segmentation datasets: what draws the foreground and what marks it.
SYNTHETIC_SEG: dict[str, dict] = {
    "shape-seg": {"factor": "shape", "marked_by": "brightness (a shape brighter than a textured surround)"},
    "texture-seg": {"factor": "texture", "marked_by": "texture only (a grating at 90° to the background's, "
                                                      "equal mean brightness)"},
}


def synthetic_seg(name: str = "shape-seg", split: str = "train", size: int = 64, n: int | None = None,
                  seed: int = 0) -> SegSet:
    """A split of the synthetic segmentation suite (:data:`SYNTHETIC_SEG`): one random shape
    (disc, square, triangle or cross, jittered position, scale and rotation) per image and
    its exact mask. In ``shape-seg`` the shape is brighter than a random grating; in
    ``texture-seg`` it differs from the background only by its grating's orientation (90°
    apart), so only texture-sensitive features find it — the segmentation counterpart of
    the classification suite's shape and texture factors. Deterministic in all arguments;
    train/val/test sizes 700/100/200 by default. Returns a :class:`SegSet` (grey).

    Known answers: a resnet18 U-Net from scratch reaches Dice > 0.8 on ``shape-seg`` at
    64 px in 5 CPU epochs (a test checks it); ``texture-seg`` is harder (≈ 0.55–0.6 after
    4–6 epochs on 200 images). No transfer ordering is claimed: an encoder pre-trained on
    ``texture-a`` for 3 epochs did not beat a random one on ``texture-seg`` (0.53 vs 0.59)."""
    if name not in SYNTHETIC_SEG:
        raise ValueError(f"unknown synthetic segmentation dataset {name!r}; valid: {', '.join(SYNTHETIC_SEG)}")
    n = split_size(split, size, n, least=16)
    g = torch.Generator().manual_seed(zlib.crc32(f"seg/{name}/{split}/{seed}".encode()))

    def rand(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)

    lin = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    kind = torch.randint(0, 4, (n,), generator=g)
    r, cx, cy, rot = rand(0.3, 0.6), rand(-0.3, 0.3), rand(-0.3, 0.3), torch.deg2rad(rand(0, 360))
    u = (xx - cx) * torch.cos(rot) + (yy - cy) * torch.sin(rot)
    v = -(xx - cx) * torch.sin(rot) + (yy - cy) * torch.cos(rot)
    mask = shape_masks(kind, u, v, r)
    theta, freq, phase = torch.deg2rad(rand(0, 180)), rand(3.0, 5.0), rand(0, 2 * math.pi)

    def grating(t: torch.Tensor) -> torch.Tensor:
        return 0.5 + 0.5 * torch.sin(math.pi * freq * (xx * torch.cos(t) + yy * torch.sin(t)) + phase)

    level = rand(0.35, 0.6)
    if name == "shape-seg":
        img = level + 0.2 * (grating(theta) - 0.5) + 0.3 * mask
    else:
        img = level + 0.35 * (torch.where(mask, grating(theta + math.pi / 2), grating(theta)) - 0.5)
    img = (img + 0.05 * torch.randn(n, size, size, generator=g, dtype=torch.float64)).clamp(0, 1)
    return SegSet(images=(img[:, None] * 255).round().to(torch.uint8), labels=mask[:, None].to(torch.uint8),
                  name=f"{name}/{split}", meta={"flag": name, "split": split, "size": size, "synthetic": True,
                                                "factor": SYNTHETIC_SEG[name]["factor"]})
