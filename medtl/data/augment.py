"""Batched tensor augmentation (no PIL): every op acts on a whole float batch ``B×C×H×W``
in [0, 1], on whatever device the batch lives, with parameters drawn from a CPU
``torch.Generator`` so results are identical on CPU and GPU for a given seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.ops import roi_align


def resize(x: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Resize a float batch ``B×C×H×W`` to ``size`` with ``F.interpolate``; antialiased when
    shrinking (bilinear/bicubic), exact pixel replication for ``mode="nearest"``."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest-exact")
    shrink = x.shape[-2] > size[0] or x.shape[-1] > size[1]
    return F.interpolate(x, size=size, mode=mode, align_corners=False, antialias=shrink)


def _rand(g: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=g, dtype=torch.float64)


def sample_crop_boxes(g: torch.Generator, n: int, height: int, width: int,
                      scale: tuple[float, float], ratio: tuple[float, float], attempts: int = 10) -> torch.Tensor:
    """torchvision ``RandomResizedCrop.get_params`` for ``n`` images at once: up to 10
    tries of (area fraction ~ U(scale), log aspect ~ U(log ratio)), else the central crop
    with the aspect clamped to ``ratio``. Returns boxes ``n×4`` as (x1, y1, x2, y2) pixel
    edges (float64)."""
    area = height * width
    target = area * (scale[0] + (scale[1] - scale[0]) * _rand(g, n, attempts))
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * _rand(g, n, attempts)
    aspect = torch.exp(log_r)
    w = torch.sqrt(target * aspect).round()
    h = torch.sqrt(target / aspect).round()
    ok = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.zeros(n, dtype=torch.long))
    w = w.gather(1, first[:, None])[:, 0]
    h = h.gather(1, first[:, None])[:, 0]
    top = torch.floor(_rand(g, n) * (height - h + 1))
    left = torch.floor(_rand(g, n) * (width - w + 1))
    # fallback: central crop with the aspect ratio clamped into `ratio`
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fw, fh = round(height * ratio[1]), height
    else:
        fw, fh = width, height
    bad = ~ok.any(1)
    w = torch.where(bad, torch.full_like(w, fw), w)
    h = torch.where(bad, torch.full_like(h, fh), h)
    top = torch.where(bad, torch.full_like(top, (height - fh) // 2), top)
    left = torch.where(bad, torch.full_like(left, (width - fw) // 2), left)
    return torch.stack([left, top, left + w, top + h], dim=1)


def resized_crop(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Crop each image of ``x`` (``B×C×H×W``) to its box (``B×4`` pixel edges x1, y1, x2, y2)
    and resize it to ``size``, averaging ⌈box/size⌉ bilinear samples per output pixel
    (antialiased when shrinking) via ``torchvision.ops.roi_align``. Inside the crop this
    equals torchvision's ``resized_crop``; samples within half a pixel of the crop's edge read
    the true neighbouring pixels instead of repeating the edge pixel."""
    rois = torch.cat([torch.arange(len(x), dtype=x.dtype, device=x.device)[:, None],
                      boxes.to(device=x.device, dtype=x.dtype)], dim=1)
    return roi_align(x, rois, output_size=size, spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image of ``x`` about its centre by ``degrees`` (``B``, counter-clockwise),
    bilinear, corners filled with 0 (torchvision's ``rotate`` default)."""
    b, _, h, w = x.shape
    t = torch.deg2rad(degrees.to(torch.float64))
    cos, sin = torch.cos(t), torch.sin(t)
    # rotation in pixel units, expressed in normalised coordinates (aspect-correct)
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, 0] = cos
    theta[:, 0, 1] = -sin * h / w
    theta[:, 1, 0] = sin * w / h
    theta[:, 1, 1] = cos
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _affine(x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], hflip: torch.Tensor | None,
            vflip: torch.Tensor | None, angles: torch.Tensor | None) -> torch.Tensor:
    """Crop to ``boxes``, resize to ``size``, flip, then rotate about the centre, as one
    ``grid_sample``: output point p → q = R·p (rotation) → flip → crop box → input. Samples
    beyond the image edge repeat the edge pixel (as cropping then resizing does); points
    rotated out of the crop frame are 0 (torchvision's rotation fill)."""
    b = len(x)
    h_in, w_in = x.shape[-2:]
    boxes = boxes.to(torch.float64)
    ax = (boxes[:, 2] - boxes[:, 0]) / w_in
    ay = (boxes[:, 3] - boxes[:, 1]) / h_in
    bx = (boxes[:, 0] + boxes[:, 2]) / w_in - 1
    by = (boxes[:, 1] + boxes[:, 3]) / h_in - 1
    sx = torch.where(hflip, -1.0, 1.0).to(torch.float64) if hflip is not None else torch.ones(b, dtype=torch.float64)
    sy = torch.where(vflip, -1.0, 1.0).to(torch.float64) if vflip is not None else torch.ones(b, dtype=torch.float64)
    rot = torch.zeros(b, 2, 2, dtype=torch.float64)
    if angles is not None:
        t = torch.deg2rad(angles.to(torch.float64))
        h, w = size
        rot[:, 0, 0], rot[:, 0, 1] = torch.cos(t), -torch.sin(t) * h / w
        rot[:, 1, 0], rot[:, 1, 1] = torch.sin(t) * w / h, torch.cos(t)
    else:
        rot[:, 0, 0] = rot[:, 1, 1] = 1.0
    theta = torch.zeros(b, 2, 3, dtype=torch.float64)
    theta[:, 0, :2] = (ax * sx)[:, None] * rot[:, 0]
    theta[:, 1, :2] = (ay * sy)[:, None] * rot[:, 1]
    theta[:, 0, 2], theta[:, 1, 2] = bx, by
    grid = F.affine_grid(theta.to(device=x.device, dtype=x.dtype), [b, x.shape[1], *size], align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if angles is not None:  # zero the corners rotated in from outside the crop frame
        scale = torch.stack([ax * sx, ay * sy], 1).to(device=x.device, dtype=x.dtype)
        shift = torch.stack([bx, by], 1).to(device=x.device, dtype=x.dtype)
        q = (grid - shift[:, None, None]) / scale[:, None, None]
        inside = (q.abs() <= 1 + 1e-6).all(-1)
        out = out * inside[:, None]
    return out


def _where(mask: torch.Tensor, fn, x: torch.Tensor) -> torch.Tensor:
    """Apply ``fn`` to the images selected by ``mask`` (``B`` bool, CPU) only."""
    if not bool(mask.any()):
        return x
    idx = mask.nonzero()[:, 0].to(x.device)
    out = x.clone()
    out[idx] = fn(x[idx])
    return out


@dataclass(frozen=True)
class Augment:
    """A batched augmentation recipe, applied in torchvision's order: horizontal flip,
    random resized crop (to the output size), rotation, sharpness, autocontrast, equalize.

    Args:
        hflip: probability of a horizontal flip.
        vflip: probability of a vertical flip.
        crop_scale: ``RandomResizedCrop`` area range, or None for no crop.
        crop_ratio: ``RandomResizedCrop`` aspect range.
        rotate: maximum absolute rotation in degrees (uniform in ±rotate).
        sharpness: ``(factor, p)`` of ``RandomAdjustSharpness``, or None.
        autocontrast: probability of ``RandomAutocontrast``.
        equalize: probability of ``RandomEqualize``.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotate: float = 0.0
    sharpness: tuple[float, float] | None = None
    autocontrast: float = 0.0
    equalize: float = 0.0

    def __call__(self, x: torch.Tensor, size: tuple[int, int], g: torch.Generator,
                 resize_mode: str = "bilinear") -> torch.Tensor:
        """Augment a float batch ``B×C×H×W`` in [0, 1]; returns ``B×C×size``."""
        b = len(x)
        boxes = None
        if self.crop_scale is not None:
            boxes = sample_crop_boxes(g, b, x.shape[-2], x.shape[-1], self.crop_scale, self.crop_ratio)
        hflip = _rand(g, b) < self.hflip if self.hflip > 0 else None
        vflip = _rand(g, b) < self.vflip if self.vflip > 0 else None
        angles = (2 * _rand(g, b) - 1) * self.rotate if self.rotate > 0 else None
        enlarging = boxes is not None and bool(
            ((boxes[:, 2] - boxes[:, 0]) <= size[1]).all() and ((boxes[:, 3] - boxes[:, 1]) <= size[0]).all()
        )
        if enlarging:  # crop, flips and rotation in one bilinear pass (no antialiasing needed)
            x = _affine(x, boxes, size, hflip, vflip, angles)
        else:
            x = resized_crop(x, boxes, size) if boxes is not None else resize(x, size, resize_mode)
            if hflip is not None:
                x = _where(hflip, lambda t: t.flip(-1), x)
            if vflip is not None:
                x = _where(vflip, lambda t: t.flip(-2), x)
            if angles is not None:
                x = rotate(x, angles)
        x = x.clamp_(0, 1)
        if self.sharpness is not None:
            factor, p = self.sharpness
            x = _where(_rand(g, b) < p, lambda t: TF.adjust_sharpness(t, factor), x)
        if self.autocontrast > 0:
            x = _where(_rand(g, b) < self.autocontrast, TF.autocontrast, x)
        if self.equalize > 0:
            x = _where(_rand(g, b) < self.equalize, TF.equalize, x)
        return x

    def with_(self, **changes) -> Augment:
        return replace(self, **changes)


#: Named recipes. ``"study"`` is the dataset-transferability study's fine-tuning recipe
#: (flip, RandomResizedCrop(0.08–1), rotation ±5°, sharpness 2 @ 0.5, autocontrast 0.5,
#: equalize 0.5); ``"medmnist"`` is none (the MedMNIST v2 baselines train unaugmented).
RECIPES: dict[str, Augment] = {
    "none": Augment(),
    "medmnist": Augment(),
    "flip": Augment(hflip=0.5),
    "light": Augment(hflip=0.5, crop_scale=(0.7, 1.0), rotate=10.0),
    "study": Augment(hflip=0.5, crop_scale=(0.08, 1.0), rotate=5.0, sharpness=(2.0, 0.5),
                     autocontrast=0.5, equalize=0.5),
}


def get_augment(augment: str | Augment | None) -> Augment | None:
    if augment is None or isinstance(augment, Augment):
        return augment
    if augment not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {augment!r}; valid recipes: {', '.join(RECIPES)}")
    return RECIPES[augment]
