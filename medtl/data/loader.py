"""Batches straight from an in-memory ImageSet: index, move, convert, resize, augment and
normalise whole batches as tensors (on the GPU when there is one). No PIL, no workers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .augment import Augment, get_augment, resize
from .imageset import ImageSet
from .segset import SEGMENTATION

#: Normalisation presets: (mean, std) per RGB channel.
NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "medmnist": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def normalization(normalize: str | tuple | None, channels: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, std) tensors of shape ``1×channels×1×1`` for a preset name or an explicit
    ``(mean, std)`` pair; a grey image under an RGB preset uses the channel averages."""
    if normalize is None:
        return None
    if isinstance(normalize, str):
        if normalize not in NORMALIZE:
            raise ValueError(f"unknown normalisation {normalize!r}; valid presets: {', '.join(NORMALIZE)} or (mean, std)")
        mean, std = NORMALIZE[normalize]
    else:
        mean, std = normalize
    mean = torch.as_tensor(mean, dtype=torch.float32).flatten()
    std = torch.as_tensor(std, dtype=torch.float32).flatten()
    if channels == 1 and len(mean) == 3:
        mean, std = mean.mean(0, keepdim=True), std.mean(0, keepdim=True)
    if len(mean) not in (1, channels) or len(std) not in (1, channels):
        raise ValueError(f"normalisation has {len(mean)} means / {len(std)} stds for {channels}-channel images")
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)


class Loader:
    """An iterable of ``(x, y)`` batches over an ImageSet; see :func:`loader`.

    Each pass over it is one epoch; the shuffle order and augmentation draws of epoch ``e``
    come from a generator seeded with ``(seed, e)``, so any epoch can be reproduced alone
    (``set_epoch``) — the basis of bit-exact training resume.
    """

    def __init__(self, data: ImageSet, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
                 image_size: int | tuple[int, int] | None = None, normalize: str | tuple | None = "medmnist",
                 augment: str | Augment | None = None, device: str | torch.device = "cpu",
                 channels: int | None = None, drop_last: bool = False,
                 sample_weights: Sequence[float] | np.ndarray | torch.Tensor | None = None,
                 resize_mode: str = "bilinear", data_on_device: bool | None = None,
                 centre_crop: float | None = None) -> None:
        if not isinstance(data, ImageSet):
            raise TypeError(f"loader needs a medtl ImageSet, got {type(data).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if image_size is not None:
            sizes = (image_size, image_size) if not isinstance(image_size, (tuple, list)) else tuple(image_size)
            if len(sizes) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1
                                      for v in sizes):
                raise ValueError(f"image_size must be a positive integer or (H, W), got {image_size!r}")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be None, 1 or 3, got {channels}")
        if channels == 1 and data.n_channels == 3:
            raise ValueError(f"{data.name!r} is RGB; channels=1 would drop colour (convert explicitly)")
        if resize_mode not in ("bilinear", "bicubic", "nearest"):
            raise ValueError(f"resize_mode must be bilinear, bicubic or nearest, got {resize_mode!r}")
        if centre_crop is not None and not (isinstance(centre_crop, (int, float)) and 0 < centre_crop <= 1):
            raise ValueError(f"centre_crop must be the kept fraction of each side in (0, 1] (e.g. 224/256), "
                             f"got {centre_crop!r}")
        self.centre_crop = centre_crop
        self.data = data
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        size = image_size if image_size is not None else tuple(data.images.shape[-2:])
        self.image_size = (size, size) if isinstance(size, int) else tuple(size)
        self.device = torch.device(device)
        self.channels = channels or data.n_channels
        self.augment = get_augment(augment)
        self.norm = normalization(normalize, self.channels)
        if self.norm is not None:
            self.norm = tuple(t.to(self.device) for t in self.norm)
        self.drop_last = drop_last
        self.resize_mode = resize_mode
        if sample_weights is not None:
            w = torch.as_tensor(np.asarray(sample_weights, dtype=np.float64))
            if w.shape != (len(data),) or bool((w < 0).any()) or not bool(w.sum() > 0):
                raise ValueError(f"sample_weights must be {len(data)} non-negative numbers, not all 0")
            sample_weights = w
        self.sample_weights = sample_weights
        if data_on_device is None:
            data_on_device = self.device.type != "cpu" and data.images.numel() < 4 * 2**30
        self._images = data.images.to(self.device) if data_on_device else data.images
        self._labels = data.labels.to(self.device)
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.data)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (its shuffle order and augmentation draws)."""
        self.epoch = int(epoch)

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """Sample positions of one epoch (a permutation, weighted draws with replacement,
        or ``0..N-1``)."""
        g = self._generator(self.epoch if epoch is None else epoch, 0)
        n = len(self.data)
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, n, replacement=True, generator=g)
        return torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)

    def _generator(self, epoch: int, stream: int) -> torch.Generator:
        return torch.Generator().manual_seed((self.seed * 1_000_003 + epoch) * 2 + stream)

    def transform(self, images: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        """uint8 ``B×C×H×W`` → float32 ``B×channels×image_size`` (augmented if a recipe and a
        generator are given, then normalised)."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.augment is not None and g is not None:
            x = self.augment(x, self.image_size, g, self.resize_mode)
        elif self.centre_crop is not None:
            x = centre_crop(x, self.image_size, self.centre_crop, self.resize_mode)
        else:
            x = resize(x, self.image_size, self.resize_mode)
        if self.norm is not None:
            x = (x - self.norm[0]) / self.norm[1]
        return x.contiguous()

    def transform_pair(self, images: torch.Tensor, masks: torch.Tensor,
                       g: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A segmentation batch: images as :meth:`transform`, masks (uint8 ``B×1×H×W``)
        through the same geometric augmentation (:meth:`Augment.paired`) or resized with
        nearest neighbours; returns float masks of 0/1."""
        x = images.to(self.device, non_blocking=True).float().div_(255)
        m = masks.to(self.device, non_blocking=True).float()
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.augment is not None and g is not None:
            x, m = self.augment.paired(x, m, self.image_size, g, self.resize_mode)
        else:
            x, m = resize(x, self.image_size, self.resize_mode), resize(m, self.image_size, "nearest")
        if self.norm is not None:
            x = (x - self.norm[0]) / self.norm[1]
        return x.contiguous(), m.contiguous()

    def _soft_labels(self, idx: torch.Tensor, y: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Uncertain multi-label entries (``meta["uncertain"]``, ``N×L`` bool) redrawn
        uniformly in ``meta["uncertain_range"]`` for this batch (CheXpert's LSR policies,
        resampled every epoch by training loaders — shuffled or weighted —; evaluation
        loaders yield the stored hard labels)."""
        lo, hi = self.data.meta["uncertain_range"]
        unc = torch.as_tensor(np.asarray(self.data.meta["uncertain"])[idx.numpy()], dtype=torch.bool)
        draws = lo + (hi - lo) * torch.rand(unc.shape, generator=g)
        return torch.where(unc.to(y.device), draws.to(y), y)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self.epoch
        self.epoch += 1
        order = self.order(epoch)
        g = self._generator(epoch, 1)
        seg = self.data.task == SEGMENTATION
        training = self.shuffle or self.sample_weights is not None
        soft = training and "uncertain_range" in self.data.meta
        g_soft = self._generator(epoch, 2) if soft else None
        stop = len(self) * self.batch_size if self.drop_last else len(order)
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            dev_idx = idx.to(self._images.device)
            y = self._labels[idx.to(self._labels.device)]
            if seg:
                yield self.transform_pair(self._images[dev_idx], y, g)
                continue
            if soft:
                y = self._soft_labels(idx, y, g_soft)
            yield self.transform(self._images[dev_idx], g), y


def centre_crop(x: torch.Tensor, size: tuple[int, int], fraction: float, mode: str = "bilinear") -> torch.Tensor:
    """Resize a float batch so that ``size`` is ``fraction`` of each side, then take the
    central ``size`` crop: torchvision's ``Resize(s / fraction)`` → ``CenterCrop(s)``, the
    studies' evaluation transform (``fraction`` = 224/256); the crop's offset is
    ``round((S − s) / 2)`` as torchvision's ``center_crop``."""
    h, w = size
    big = (round(h / fraction), round(w / fraction))
    x = resize(x, big, mode)
    top, left = int(round((big[0] - h) / 2.0)), int(round((big[1] - w) / 2.0))
    return x[..., top:top + h, left:left + w]


def loader(data: ImageSet, batch_size: int = 128, shuffle: bool = False, seed: int = 0,
           image_size: int | tuple[int, int] | None = None, normalize: str | tuple | None = "medmnist",
           augment: str | Augment | None = None, device: str | torch.device = "cpu",
           channels: int | None = None, drop_last: bool = False, **kwargs) -> Loader:
    """Batches of an ImageSet as float tensors.

    Args:
        data: the ImageSet.
        batch_size: images per batch.
        shuffle: a new seeded permutation every epoch.
        seed: seeds shuffling and augmentation (epoch ``e`` uses ``(seed, e)``).
        image_size: output side (or ``(H, W)``); default the stored size. Resizing uses
            ``F.interpolate`` (antialiased when shrinking; ``resize_mode="nearest"`` for
            MedMNIST v2's up-sampling).
        normalize: ``"medmnist"`` (0.5/0.5), ``"imagenet"``, ``(mean, std)`` or None ([0, 1]).
        augment: a recipe name (``"study"``, ``"flip"``, ``"light"``, …), an :class:`Augment`,
            or None.
        device: where batches are built (the whole uint8 set is moved there once on CUDA
            when it is under 4 GiB).
        channels: 3 replicates grey images to RGB; None keeps the stored channels.
        drop_last: drop the last incomplete batch.
        **kwargs: ``sample_weights`` (per-image weights: draws with replacement, e.g.
            inverse class frequency), ``resize_mode``, ``data_on_device``, ``centre_crop``
            (unaugmented batches: resize so ``image_size`` is that fraction of each side,
            then crop the centre — :func:`centre_crop`, the studies' Resize 256 →
            CenterCrop 224 at ``224/256``).

    Yields:
        ``x`` float32 ``B×C×H×W`` on ``device``; ``y`` the labels (int64 ``B`` or float ``B×L``).
    """
    return Loader(data, batch_size, shuffle, seed, image_size, normalize, augment, device,
                  channels, drop_last, **kwargs)
