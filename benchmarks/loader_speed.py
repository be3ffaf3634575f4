"""Throughput of medtl.data.loader vs a per-sample PIL + torchvision-transforms DataLoader.

Both apply the dataset-transferability study's training recipe (horizontal flip,
RandomResizedCrop, rotation ±5°, sharpness 2 @ 0.5, autocontrast 0.5, equalize 0.5,
normalise 0.5/0.5) to bloodmnist train at 28 px in batches of 256, and both run on the CPU.

    python benchmarks/loader_speed.py [--epochs 2] [--workers 0] [--root DIR]

Prints both rates (images/s), their ratio, and a JSON record (also written to
benchmarks/out/loader_speed.json). Goal: medtl's loader at least 5x faster.
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision.transforms.v2 as T
from _common import save_record
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import medtl.data as D
from medtl.runtime import cores


class PILDataset(Dataset):
    """The classic pipeline: one PIL image per sample through a transform chain."""

    def __init__(self, data: D.ImageSet, transform):
        self.images = data.images.permute(0, 2, 3, 1).numpy()
        self.labels = data.labels.numpy()
        self.grey = data.n_channels == 1
        self.transform = transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        img = Image.fromarray(self.images[i][..., 0] if self.grey else self.images[i])
        return self.transform(img), int(self.labels[i])


def rate(batches, epochs: int) -> tuple[float, int]:
    n, start = 0, time.perf_counter()
    for _ in range(epochs):
        for x, _ in batches:
            n += len(x)
    return n / (time.perf_counter() - start), n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the PIL baseline")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--root", default=None)
    args = parser.parse_args()
    torch.set_num_threads(cores())

    if D.status("bloodmnist", 28, args.root, check_md5=False) != "missing":
        data, source = D.load("bloodmnist", "train", 28, args.root), "bloodmnist train (28 px)"
    else:
        data, source = D.synthetic("texture-b", "train", 28, n=12000), "synthetic texture-b (bloodmnist file absent)"
    print(f"data: {source}, {len(data)} images, batch {args.batch_size}, {args.epochs} epoch(s)")

    ours = D.loader(data, batch_size=args.batch_size, shuffle=True, augment="study", normalize="medmnist")
    next(iter(ours))  # warm-up
    ours_rate, ours_n = rate(ours, args.epochs)

    recipe = T.Compose([
        T.RandomHorizontalFlip(0.5),
        T.RandomResizedCrop(28, antialias=True),
        T.RandomRotation(5),
        T.RandomAdjustSharpness(2, p=0.5),
        T.RandomAutocontrast(p=0.5),
        T.RandomEqualize(p=0.5),
        T.ToImage(),
        T.ToDtype(torch.float32, scale=True),
        T.Normalize([0.5] * data.n_channels, [0.5] * data.n_channels),
    ])
    pil = DataLoader(PILDataset(data, recipe), batch_size=args.batch_size, shuffle=True,
                     num_workers=args.workers)
    pil_rate, pil_n = rate(pil, args.epochs)

    ratio = ours_rate / pil_rate
    print(f"{'pipeline':<40} {'images/s':>12}")
    print(f"{'medtl.data.loader (batched tensors)':<40} {ours_rate:>12,.0f}")
    print(f"{f'PIL + transforms.v2 DataLoader (w={args.workers})':<40} {pil_rate:>12,.0f}")
    print(f"speed-up: {ratio:.1f}x (goal >= 5x): {'met' if ratio >= 5 else 'NOT met'}")
    save_record("loader_speed", data=source, batch_size=args.batch_size, epochs=args.epochs,
                medtl_images_per_s=round(ours_rate, 1), pil_images_per_s=round(pil_rate, 1), pil_workers=args.workers,
                speedup=round(ratio, 2), goal_speedup=5.0, images={"medtl": ours_n, "pil": pil_n})


if __name__ == "__main__":
    main()
