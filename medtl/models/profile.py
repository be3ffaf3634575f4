"""What a model costs: parameters, multiply–accumulates and inference time."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def complexity(model: nn.Module, image_size: int = 224, in_chans: int | None = None, repeats: int = 10,
               batch_size: int = 1, device=None) -> dict:
    """Parameters (all and trainable), multiply–accumulates of one forward pass at
    ``image_size`` (PyTorch's FLOP counter: convolutions and matrix products, FLOPs / 2;
    ResNet-50 at 224 px: 4.09 G), and the median inference time per image over ``repeats``
    timed batches of ``batch_size`` (after one warm-up, eval mode, no gradients) — the
    truncated-transfer study's P(M), MACs(G) and T(ms) columns; the time depends on the
    machine and its threads."""
    from ..runtime import device as pick

    if in_chans is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        in_chans = first.in_channels if first is not None else 3
    dev = pick(device)
    x = torch.zeros(batch_size, in_chans, image_size, image_size, device=dev)
    was = model.training
    model.eval().to(dev)
    try:
        with torch.no_grad():
            with FlopCounterMode(display=False) as counter:
                model(x[:1])
            model(x)
            times = []
            for _ in range(max(int(repeats), 1)):
                t0 = time.perf_counter()
                model(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) / batch_size)
    finally:
        model.train(was)
    return {"params": sum(p.numel() for p in model.parameters()),
            "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
            "macs": counter.get_total_flops() / 2, "ms_per_image": float(np.median(times) * 1000),
            "image_size": image_size}
