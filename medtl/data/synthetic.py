"""A deterministic suite of small MedMNIST-format datasets built from generative factors.

Every image is a mixture of three factors drawn on a ``size×size`` canvas:

* **texture** — a sinusoidal grating with an orientation θ and a spatial frequency;
* **shape** — one filled shape (disc, square, triangle, cross) at a jittered position,
  scale and rotation, brighter than its surround;
* **intensity** — the overall brightness of the image;

plus Gaussian pixel noise. In each dataset exactly one factor carries the class (its
*class factor*); the others vary at random, independently of the class (nuisance).
Datasets that share a class factor are **related**: features that separate orientations of
``texture-a`` also separate those of ``texture-b``. A transfer study on the suite therefore
has a known expected answer — for a target, a source with the same class factor should
transfer better than one without (``related(target)`` lists them):

=============  ============  ========  =======  ===========================================
name           class factor  classes   chans    classes are
=============  ============  ========  =======  ===========================================
texture-a      texture       4         1        orientations 0°, 45°, 90°, 135°, 3 cycles
texture-b      texture       4         3        texture-a's orientations (±8°) and frequency (±0.8),
                                                 fainter and noisier, under a strong shape nuisance
shape-a        shape         4         1        disc, square, triangle, cross
shape-b        shape         4         3        the same shapes, smaller, lower contrast
intensity      intensity     4         1        four brightness levels (ordinal)
=============  ============  ========  =======  ===========================================

Split sizes follow the MedMNIST 7:1:2 pattern (train 700, val 100, test 200 by default).
As a target, a suite dataset follows the MedMNIST fold protocol: 100 images per class for
training and 25 per class for validation (seeded, stratified), and the whole test split.

The expected answer, checked by the tests: fine-tuned on ``texture-b`` (400 training images),
a ResNet-18 pre-trained on ``texture-a`` reaches a clearly higher test AUC than ones
pre-trained on the shape or intensity datasets or randomly initialised (0.96 vs ≤ 0.68 in
``medtl demo --quick``: sources pre-trained for 4 epochs, 5 fine-tuning epochs), and it is
ranked first by the transferability metrics that can see it (12 of the 16 default metrics
there, strictly; H-score and SFDA saturate for several sources at N = 400 ≤ D = 512).
texture-b shares texture-a's classes (orientations) and grating frequency, so frozen
texture-a features already separate it; with texture-b's own orientations (0–60° in 20°
steps, an earlier form of the suite) fine-tuning still favoured texture-a but only 2–9 of
16 metrics saw it from the frozen features.
The suite is the offline stand-in for MedMNIST when no files are present; callers that
fall back to it must say so (``medtl demo`` prints it on its first line).
"""

from __future__ import annotations

import math
import zlib

import torch

from .imageset import MULTI_CLASS, ORDINAL, ImageSet

SHAPES = ("disc", "square", "triangle", "cross")

#: The suite's catalog, the synthetic counterpart of ``medmnist.INFO``.
SYNTHETIC: dict[str, dict] = {
    "texture-a": {
        "factor": "texture", "task": MULTI_CLASS, "n_channels": 1,
        "angles": (0.0, 45.0, 90.0, 135.0), "freq": 3.0, "tint": (1.0,),
        "label": ("orientation 0°", "orientation 45°", "orientation 90°", "orientation 135°"),
    },
    "texture-b": {
        "factor": "texture", "task": MULTI_CLASS, "n_channels": 3,
        "angles": (0.0, 45.0, 90.0, 135.0), "jitter": 8.0, "freq": 3.0, "freq_jitter": 0.8, "tex_weight": 0.18,
        "noise": 0.22, "nuisance_contrast": 0.35, "tint": (1.0, 0.75, 0.85),
        "label": ("orientation 0°", "orientation 45°", "orientation 90°", "orientation 135°"),
    },
    "shape-a": {
        "factor": "shape", "task": MULTI_CLASS, "n_channels": 1,
        "scale": (0.45, 0.65), "contrast": 0.45, "tint": (1.0,),
        "label": SHAPES,
    },
    "shape-b": {
        "factor": "shape", "task": MULTI_CLASS, "n_channels": 3,
        "scale": (0.3, 0.45), "contrast": 0.3, "tint": (0.85, 0.9, 1.0),
        "label": SHAPES,
    },
    "intensity": {
        "factor": "intensity", "task": ORDINAL, "n_channels": 1,
        "levels": (0.25, 0.4, 0.55, 0.7), "tint": (1.0,),
        "label": ("very dark", "dark", "bright", "very bright"),
    },
}
SYNTHETIC_SPLITS = {"train": 700, "val": 100, "test": 200}


def related(target: str) -> list[str]:
    """Datasets of the suite that share ``target``'s class factor (expected better sources)."""
    factor = _entry(target)["factor"]
    return [name for name, e in SYNTHETIC.items() if e["factor"] == factor and name != target]


def _entry(name: str) -> dict:
    if name not in SYNTHETIC:
        raise ValueError(f"unknown synthetic dataset {name!r}; valid names: {', '.join(SYNTHETIC)}")
    return SYNTHETIC[name]


def _seed(name: str, split: str, seed: int) -> int:
    return zlib.crc32(f"{name}/{split}/{seed}".encode())


def shape_masks(kind: torch.Tensor, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """Boolean masks ``N×H×W`` for shape ids ``kind`` (``N``) in per-image rotated
    coordinates ``u, v`` (``N×H×W``) with radius ``r`` (``N×1×1``)."""
    rho = torch.sqrt(u**2 + v**2)
    disc = rho < r
    square = torch.maximum(u.abs(), v.abs()) < 0.8 * r
    # equilateral triangle: three half-planes at 90°, 210°, 330° at distance r/2
    tri = torch.ones_like(disc)
    for ang in (90.0, 210.0, 330.0):
        a = math.radians(ang)
        tri &= (u * math.cos(a) + v * math.sin(a)) < 0.5 * r
    arm = r / 3
    cross = ((u.abs() < arm) & (v.abs() < r)) | ((v.abs() < arm) & (u.abs() < r))
    stack = torch.stack([disc, square, tri, cross])  # 4×N×H×W
    return stack.gather(0, kind.view(1, -1, 1, 1).expand(1, *disc.shape))[0]


def split_size(split: str, size: int, n: int | None, least: int = 8) -> int:
    """The image count of a synthetic split (``n``, else the split's default size), after
    checking the split name, the image side (at least ``least``) and ``n >= 1``."""
    if split not in SYNTHETIC_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {tuple(SYNTHETIC_SPLITS)}")
    if size < least:
        raise ValueError(f"synthetic images need size >= {least}, got {size}")
    n = SYNTHETIC_SPLITS[split] if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return n


def _render(entry: dict, n: int, size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw ``n`` images of a suite entry: float64 ``n×H×W`` in [0, 1], the class of each
    and the boolean mask ``n×H×W`` of its shape."""
    n_classes = len(entry["label"])
    y = torch.arange(n) % n_classes
    y = y[torch.randperm(n, generator=g)]

    def rand(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, 1, 1, generator=g, dtype=torch.float64)

    lin = torch.linspace(-1, 1, size, dtype=torch.float64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    factor = entry["factor"]

    # texture: class-set orientation or a random one (nuisance)
    if factor == "texture":
        jitter = entry.get("jitter", 6.0)
        theta = torch.tensor(entry["angles"], dtype=torch.float64)[y].view(n, 1, 1) + rand(-jitter, jitter)
        freq = entry["freq"] + rand(-entry.get("freq_jitter", 0.3), entry.get("freq_jitter", 0.3))
    else:
        theta, freq = rand(0, 180), rand(2.5, 5.0)
    t = torch.deg2rad(theta)
    phase = rand(0, 2 * math.pi)
    texture = 0.5 + 0.5 * torch.sin(math.pi * freq * (xx * torch.cos(t) + yy * torch.sin(t)) + phase)

    # shape: class-set kind or a random one
    kind = y.clone() if factor == "shape" else torch.randint(0, len(SHAPES), (n,), generator=g)
    lo, hi = entry.get("scale", (0.3, 0.6))
    r = rand(lo, hi)
    cx, cy, rot = rand(-0.25, 0.25), rand(-0.25, 0.25), torch.deg2rad(rand(0, 360))
    u = (xx - cx) * torch.cos(rot) + (yy - cy) * torch.sin(rot)
    v = -(xx - cx) * torch.sin(rot) + (yy - cy) * torch.cos(rot)
    shape = shape_masks(kind, u, v, r).to(torch.float64)

    # intensity: class-set level or a random one
    if factor == "intensity":
        level = torch.tensor(entry["levels"], dtype=torch.float64)[y].view(n, 1, 1) + rand(-0.03, 0.03)
    else:
        level = rand(0.3, 0.65)
    contrast = entry.get("contrast", 0.25) if factor == "shape" else entry.get("nuisance_contrast", 0.2)
    tex_weight = entry.get("tex_weight", 0.35) if factor == "texture" else 0.2
    img = level + tex_weight * (texture - 0.5) + contrast * shape
    noise = entry.get("noise", 0.08) * torch.randn(n, size, size, generator=g, dtype=torch.float64)
    img = (img + noise).clamp(0, 1)
    return img, y, shape > 0


def synthetic(name: str = "texture-a", split: str = "train", size: int = 28, n: int | None = None,
              seed: int = 0) -> ImageSet:
    """One split of a dataset of the synthetic suite (see the module docstring).

    Deterministic in (name, split, size, n, seed); classes are balanced (image i has class
    ``i mod 4`` before a seeded shuffle). Returns uint8 images ``n×C×size×size``.
    """
    entry = _entry(name)
    n = split_size(split, size, n)
    g = torch.Generator().manual_seed(_seed(name, split, seed))
    img, y, _ = _render(entry, n, size, g)
    tint = torch.tensor(entry["tint"], dtype=torch.float64).view(1, -1, 1, 1)
    images = (img.unsqueeze(1) * tint * 255).round().clamp(0, 255).to(torch.uint8)
    return ImageSet(
        images=images.contiguous(),
        labels=y.to(torch.int64),
        task=entry["task"],
        label_names=list(entry["label"]),
        name=f"{name}/{split}",
        meta={"flag": name, "split": split, "size": size, "synthetic": True, "factor": entry["factor"]},
    )


def synthetic_suite(split: str = "train", size: int = 28, n: int | None = None, seed: int = 0) -> dict[str, ImageSet]:
    """Every dataset of the suite for one split: ``{name: ImageSet}``."""
    return {name: synthetic(name, split, size, n, seed) for name in SYNTHETIC}


def synthetic_info():
    """The suite's catalog as a table (name, class factor, task, classes, channels,
    related datasets)."""
    import pandas as pd

    return pd.DataFrame(
        [{"name": k, "factor": e["factor"], "task": e["task"], "classes": len(e["label"]),
          "channels": e["n_channels"], "related": ", ".join(related(k)) or "-",
          **SYNTHETIC_SPLITS} for k, e in SYNTHETIC.items()]
    )

