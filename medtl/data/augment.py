"""Batched tensor augmentation (no PIL): every op acts on a whole float batch ``B×C×H×W``
in [0, 1], on whatever device the batch lives, with parameters drawn from a CPU
``torch.Generator`` so results are identical on CPU and GPU for a given seed."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F


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
    from torchvision.ops import roi_align  # torchvision on first use: importing medtl stays light

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


def _field(g: torch.Generator, b: int, size: tuple[int, int], alpha: float) -> torch.Tensor:
    """Smooth random displacement fields ``B×H×W×2`` (normalised units, at most ``alpha``):
    uniform noise on a 4×4 grid, bicubically up-sampled (an elastic / grid distortion)."""
    coarse = (2 * _rand(g, b, 2, 4, 4) - 1) * alpha
    return F.interpolate(coarse.float(), size=size, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)


def _distort(x: torch.Tensor, which: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
    """Warp the images selected by ``which`` (``B`` bool) by their displacement ``field``."""
    if not bool(which.any()):
        return x
    b, _, h, w = x.shape
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=x.dtype, device=x.device).expand(b, 2, 3)
    grid = F.affine_grid(eye, [b, x.shape[1], h, w], align_corners=False) + field.to(x)
    warped = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return torch.where(which.to(x.device).view(-1, 1, 1, 1), warped, x)


def _color(x: torch.Tensor, which: torch.Tensor, kind: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One of brightness (±0.2), contrast (×1±0.2 about the image mean) or gamma (0.8–1.25)
    per selected image (``kind`` 0/1/2, ``u`` in [-1, 1]): albumentations' OneOf of the
    benchmark study's segmentation recipe."""
    u = u.to(x).view(-1, 1, 1, 1)
    kind = kind.to(x.device).view(-1, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    out = torch.where(kind == 0, x + 0.2 * u, torch.where(kind == 1, (x - mean) * (1 + 0.2 * u) + mean,
                                                          x.clamp_min(0) ** (1.25 ** u)))
    return torch.where(which.to(x.device).view(-1, 1, 1, 1), out.clamp(0, 1), x)


def keras_matrices(g: torch.Generator, b: int, size: tuple[int, int], rotate: float, shift: float, shear: float,
                   zoom: float) -> torch.Tensor:
    """Keras ``ImageDataGenerator.random_transform``'s affine maps for ``b`` images of
    ``size`` (H, W), as ``b×3×3`` float64 matrices in (row, col) pixel coordinates: an output
    pixel p reads the input at ``M·p`` (``scipy.ndimage.affine_transform``'s convention).

    Per image: θ ~ U(±rotate) degrees, shifts ``t_r ~ U(±shift)·H``, ``t_c ~ U(±shift)·W``,
    shear ~ U(±shear) degrees, zooms ``z_r, z_c ~ U(1 ± zoom)`` independently, composed as
    Keras does, ``M = C · R(θ) · T(t) · Sh · Z · C⁻¹`` about the centre ``C`` =
    ((H−1)/2, (W−1)/2) (Keras 2.8 ``apply_affine_transform``; a zoom above 1 shows less of
    the image, as in Keras)."""
    h, w = size
    theta = torch.deg2rad((2 * _rand(g, b) - 1) * rotate)
    t_r = (2 * _rand(g, b) - 1) * shift * h
    t_c = (2 * _rand(g, b) - 1) * shift * w
    sh = torch.deg2rad((2 * _rand(g, b) - 1) * shear)
    z = 1 + (2 * _rand(g, b, 2) - 1) * zoom
    eye = torch.eye(3, dtype=torch.float64).expand(b, 3, 3)
    rot, tr, shm, zm = (eye.clone() for _ in range(4))
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = theta.cos(), -theta.sin(), theta.sin(), theta.cos()
    tr[:, 0, 2], tr[:, 1, 2] = t_r, t_c
    shm[:, 0, 1], shm[:, 1, 1] = -sh.sin(), sh.cos()
    zm[:, 0, 0], zm[:, 1, 1] = z[:, 0], z[:, 1]
    centre, back = eye.clone(), eye.clone()
    centre[:, 0, 2], centre[:, 1, 2] = (h - 1) / 2, (w - 1) / 2
    back[:, 0, 2], back[:, 1, 2] = -(h - 1) / 2, -(w - 1) / 2
    return centre @ rot @ tr @ shm @ zm @ back


def warp(x: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample each image of ``x`` (``B×C×H×W``) through its affine map (``B×3×3``, (row,
    col) pixel coordinates, output p reads input ``M·p``): bilinear, coordinates beyond the
    image clamped to the edge pixel — ``scipy.ndimage.affine_transform(order=1,
    mode="nearest")`` per channel, what Keras' ``fill_mode="nearest"`` calls."""
    b, _, h, w = x.shape
    rows, cols = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
    points = torch.stack([rows, cols, torch.ones_like(rows)], -1).reshape(-1, 3)  # HW×3
    src = torch.einsum("bij,pj->bpi", matrices.to(torch.float64), points)[..., :2]  # B×HW×2 (row, col)
    grid = torch.stack([2 * src[..., 1] / max(w - 1, 1) - 1, 2 * src[..., 0] / max(h - 1, 1) - 1], -1)
    grid = grid.reshape(b, h, w, 2).to(device=x.device, dtype=x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _jitter(x: torch.Tensor, which: torch.Tensor, g: torch.Generator,
            strengths: tuple[float, float, float, float]) -> torch.Tensor:
    """torchvision ``ColorJitter(brightness, contrast, saturation, hue)`` on the images
    selected by ``which``: per image, factors b, c, s ~ U(1 ± strength) and h ~ U(±hue),
    applied in a random order (``torch.randperm``), each by torchvision's own
    ``adjust_*`` (saturation and hue leave one-channel images unchanged, as torchvision)."""
    import torchvision.transforms.v2.functional as TF  # on first use: importing medtl stays light

    idx = which.nonzero()[:, 0].tolist()
    if not idx:
        return x
    bri, con, sat, hue = strengths
    ops = (lambda t, u: TF.adjust_brightness(t, 1 + bri * u), lambda t, u: TF.adjust_contrast(t, 1 + con * u),
           lambda t, u: TF.adjust_saturation(t, 1 + sat * u) if t.shape[0] == 3 else t,
           lambda t, u: TF.adjust_hue(t, hue * u) if t.shape[0] == 3 else t)
    out = x.clone()
    for i in idx:
        order = torch.randperm(4, generator=g).tolist()
        u = (2 * _rand(g, 4) - 1).tolist()
        img = x[i]
        for k in order:
            if strengths[k] > 0:
                img = ops[k](img, u[k])
        out[i] = img
    return out


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """torchvision ``rgb_to_grayscale`` keeping three channels; one-channel images unchanged."""
    import torchvision.transforms.v2.functional as TF

    return TF.rgb_to_grayscale(x, num_output_channels=3) if x.shape[1] == 3 else x


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
        crop_p: share of images the random crop applies to (the rest keep the whole image).
        color: probability of one of brightness / contrast / gamma (:func:`_color`).
        distort: probability of a smooth elastic distortion of amplitude ``distort_alpha``
            (normalised units) — geometric, so :meth:`paired` applies it to masks too.
        jitter: ``ColorJitter(brightness, contrast, saturation, hue)`` strengths, applied to a
            ``jitter_p`` share of the images (torchvision's ``RandomApply``), or None.
        grayscale: probability of ``RandomGrayscale`` (three equal channels).
        style: ``"torchvision"`` (crop → flips → rotation with zero-filled corners, as
            above) or ``"keras"``: Keras' ``ImageDataGenerator``: resize to the output size,
            then one affine map of rotation (±``rotate``°), shift (±``shift`` of each side),
            shear (±``shear``°) and zoom (1 ± ``zoom`` per axis, independently), bilinear
            with edge pixels repeated (``fill_mode="nearest"``), then the flips
            (:func:`keras_matrices`, :func:`warp`).

    The order of the intensity steps is sharpness, autocontrast, equalize, colour, jitter,
    grayscale.
    """

    hflip: float = 0.0
    vflip: float = 0.0
    crop_scale: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotate: float = 0.0
    sharpness: tuple[float, float] | None = None
    autocontrast: float = 0.0
    equalize: float = 0.0
    crop_p: float = 1.0
    color: float = 0.0
    distort: float = 0.0
    distort_alpha: float = 0.06
    jitter: tuple[float, float, float, float] | None = None
    jitter_p: float = 1.0
    grayscale: float = 0.0
    style: str = "torchvision"
    shift: float = 0.0
    shear: float = 0.0
    zoom: float = 0.0

    def __post_init__(self):
        if self.style not in ("torchvision", "keras"):
            raise ValueError(f"Augment style must be 'torchvision' or 'keras', got {self.style!r}")
        if self.style == "torchvision" and (self.shift or self.shear or self.zoom):
            raise ValueError("shift, shear and zoom are Keras' affine parameters: use them with style='keras'")
        if self.style == "keras" and self.crop_scale is not None:
            raise ValueError("style='keras' has no random resized crop (Keras' ImageDataGenerator zooms instead)")
        for name in ("hflip", "vflip", "autocontrast", "equalize", "crop_p", "color", "distort", "jitter_p",
                     "grayscale"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"Augment.{name} is a probability in [0, 1], got {value!r}")

    def __call__(self, x: torch.Tensor, size: tuple[int, int], g: torch.Generator,
                 resize_mode: str = "bilinear") -> torch.Tensor:
        """Augment a float batch ``B×C×H×W`` in [0, 1]; returns ``B×C×size``."""
        return self._intensity(self._geometry(x, size, g, resize_mode).clamp_(0, 1), g)

    def paired(self, x: torch.Tensor, mask: torch.Tensor, size: tuple[int, int], g: torch.Generator,
               resize_mode: str = "bilinear") -> tuple[torch.Tensor, torch.Tensor]:
        """Augment images and their masks together: every geometric transform (crop, flips,
        rotation, distortion) acts identically on both (one resampling of the stacked
        channels; the mask is re-binarised at 0.5), intensity transforms act on the image
        only. ``mask`` is a float ``B×1×H×W`` batch of 0/1; returns ``(x, mask)`` at ``size``."""
        c = x.shape[1]
        both = self._geometry(torch.cat([x, mask.to(x.dtype)], 1), size, g, resize_mode)
        return self._intensity(both[:, :c].clamp_(0, 1), g), (both[:, c:] > 0.5).to(x.dtype)

    def _geometry(self, x: torch.Tensor, size: tuple[int, int], g: torch.Generator, resize_mode: str) -> torch.Tensor:
        if self.style == "keras":
            return self._keras_geometry(x, size, g, resize_mode)
        b = len(x)
        boxes = None
        if self.crop_scale is not None:
            boxes = sample_crop_boxes(g, b, x.shape[-2], x.shape[-1], self.crop_scale, self.crop_ratio)
        hflip = _rand(g, b) < self.hflip if self.hflip > 0 else None
        vflip = _rand(g, b) < self.vflip if self.vflip > 0 else None
        angles = (2 * _rand(g, b) - 1) * self.rotate if self.rotate > 0 else None
        if boxes is not None and self.crop_p < 1:  # crop only a crop_p share of the images
            keep = _rand(g, b) >= self.crop_p
            full = torch.tensor([0.0, 0.0, float(x.shape[-1]), float(x.shape[-2])], dtype=boxes.dtype)
            boxes = torch.where(keep[:, None], full, boxes)
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
        if self.distort > 0:
            which = _rand(g, b) < self.distort
            x = _distort(x, which, _field(g, b, size, self.distort_alpha))
        return x

    def _keras_geometry(self, x: torch.Tensor, size: tuple[int, int], g: torch.Generator,
                        resize_mode: str) -> torch.Tensor:
        b = len(x)
        x = resize(x, size, resize_mode)
        if self.rotate or self.shift or self.shear or self.zoom:
            x = warp(x, keras_matrices(g, b, size, self.rotate, self.shift, self.shear, self.zoom))
        if self.hflip > 0:
            x = _where(_rand(g, b) < self.hflip, lambda t: t.flip(-1), x)
        if self.vflip > 0:
            x = _where(_rand(g, b) < self.vflip, lambda t: t.flip(-2), x)
        if self.distort > 0:
            x = _distort(x, _rand(g, b) < self.distort, _field(g, b, size, self.distort_alpha))
        return x

    def _intensity(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        import torchvision.transforms.v2.functional as TF

        b = len(x)
        if self.sharpness is not None:
            factor, p = self.sharpness
            x = _where(_rand(g, b) < p, lambda t: TF.adjust_sharpness(t, factor), x)
        if self.autocontrast > 0:
            x = _where(_rand(g, b) < self.autocontrast, TF.autocontrast, x)
        if self.equalize > 0:
            x = _where(_rand(g, b) < self.equalize, TF.equalize, x)
        if self.color > 0:
            x = _color(x, _rand(g, b) < self.color, torch.floor(_rand(g, b) * 3), 2 * _rand(g, b) - 1)
        if self.jitter is not None:
            x = _jitter(x, _rand(g, b) < self.jitter_p, g, self.jitter)
        if self.grayscale > 0:
            x = _where(_rand(g, b) < self.grayscale, _grayscale, x)
        return x

    def with_(self, **changes) -> Augment:
        return replace(self, **changes)


#: Named recipes. ``"study"`` is the dataset-transferability study's fine-tuning recipe
#: (flip, RandomResizedCrop(0.08–1), rotation ±5°, sharpness 2 @ 0.5, autocontrast 0.5,
#: equalize 0.5); ``"medmnist"`` is none (the MedMNIST v2 baselines train unaugmented);
#: ``"benchmark"`` the benchmark study's classification recipe (RandomResizedCrop, flip,
#: rotation ±7°) and ``"segmentation"`` its segmentation recipe (a square crop of 156–224 of
#: 224 px on 25 % of images — here uniform in area, not side —, one of brightness/contrast/
#: gamma on 30 %, an elastic distortion on 30 %), for :meth:`Augment.paired`.
#:
#: The other studies' training augmentation, each the default of its pipeline:
#: ``"feature-reuse"`` (S004, its shipped ``params.json``: RandomResizedCrop scale 0.8–1.2 —
#: an area above the image's is refused and redrawn, as torchvision does —, vertical and
#: horizontal flips at 0.5, ColorJitter(0.2, 0.2, 0.1, 0.1) on 20 %, RandomGrayscale 0.2);
#: ``"hidden-representations"`` (S002, Keras ``ImageDataGenerator(rotation_range=10,
#: width/height_shift_range=0.1, shear_range=0.1, zoom_range=0.1, fill_mode="nearest",
#: horizontal_flip=True)``) and ``"hidden-representations-chest"`` (the same without the
#: flip, the study's chest X-ray target); ``"truncated-transfer"`` (S001: RandomResizedCrop
#: with torchvision's defaults, then a horizontal flip at 0.5).
RECIPES: dict[str, Augment] = {
    "none": Augment(),
    "medmnist": Augment(),
    "flip": Augment(hflip=0.5),
    "light": Augment(hflip=0.5, crop_scale=(0.7, 1.0), rotate=10.0),
    "study": Augment(hflip=0.5, crop_scale=(0.08, 1.0), rotate=5.0, sharpness=(2.0, 0.5),
                     autocontrast=0.5, equalize=0.5),
    "benchmark": Augment(hflip=0.5, crop_scale=(0.08, 1.0), crop_ratio=(3 / 4, 4 / 3), rotate=7.0),
    "segmentation": Augment(crop_scale=((156 / 224) ** 2, 1.0), crop_ratio=(1.0, 1.0), crop_p=0.25, color=0.3,
                            distort=0.3),
    "feature-reuse": Augment(crop_scale=(0.8, 1.2), vflip=0.5, hflip=0.5, jitter=(0.2, 0.2, 0.1, 0.1), jitter_p=0.2,
                             grayscale=0.2),
    "hidden-representations": Augment(style="keras", rotate=10.0, shift=0.1, shear=0.1, zoom=0.1, hflip=0.5),
    "hidden-representations-chest": Augment(style="keras", rotate=10.0, shift=0.1, shear=0.1, zoom=0.1),
    "truncated-transfer": Augment(crop_scale=(0.08, 1.0), hflip=0.5),
}


def get_augment(augment: str | Augment | None) -> Augment | None:
    if augment is None or isinstance(augment, Augment):
        return augment
    if augment not in RECIPES:
        raise ValueError(f"unknown augmentation recipe {augment!r}; valid recipes: {', '.join(RECIPES)}")
    return RECIPES[augment]
