"""One U-Net training epoch at 64 px through medtl.train.fit (the benchmark study's
segmentation arm): images/s on the CPU, and on the GPU (bf16 autocast, channels_last)
when there is one.

    python benchmarks/unet_epoch.py [--encoder resnet18] [--n 512] [--size 64] [--batch 32]

Data: the synthetic segmentation suite (``shape-seg``), paired ``"segmentation"``
augmentation, Dice loss, Adam 1e-3 — the protocol of ``medtl.study.SEGMENT_FIT``. The
first epoch on each device is a warm-up; the second is timed. Prints the rates and a JSON
record (benchmarks/out/unet_epoch.json).
"""

from __future__ import annotations

import argparse

import torch
from _common import save_record

import medtl.data as D
import medtl.models as M
from medtl.study import SEGMENT_FIT
from medtl.train import fit


def epoch_rate(encoder: str, data: D.SegSet, batch: int, device: str) -> dict:
    model = M.unet(encoder, in_chans=1, seed=0)
    times = []
    recipe = {**SEGMENT_FIT, "batch_size": batch, "patience": None}
    fit(model, data, None, epochs=2, device=device, progress=False, seed=0,
        callbacks=[lambda e, row: times.append(row["seconds"])], **recipe)
    return {"device": device, "images_per_s": len(data) / times[-1], "epoch_s": times[-1], "warmup_s": times[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--encoder", default="resnet18")
    p.add_argument("--n", type=int, default=512)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=32)
    a = p.parse_args()
    data = D.synthetic_seg("shape-seg", "train", a.size, n=a.n)
    rows = [epoch_rate(a.encoder, data, a.batch, "cpu")]
    if torch.cuda.is_available():
        rows.append(epoch_rate(a.encoder, data, a.batch, "cuda"))
    for r in rows:
        print(f"{a.encoder} U-Net, {a.size} px, batch {a.batch}, {r['device']}: {r['images_per_s']:.0f} images/s "
              f"({r['epoch_s']:.1f} s per epoch of {a.n})")
    save_record("unet_epoch", encoder=a.encoder, size=a.size, n=a.n, batch=a.batch, threads=torch.get_num_threads(),
                results=rows)


if __name__ == "__main__":
    main()
