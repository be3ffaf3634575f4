"""Time every transferability metric on synthetic class-structured features.

    python benchmarks/transfer_metrics.py [--sizes small,large] [--repeat 1]

Sizes: ``small`` N=1100, D=512, C=11 (an organ target's fold, ResNet-18 features) and
``large`` N=5000, D=2048, C=10. Feature metrics run on N×D features; LEEP on a 1000-class
source head; FU on a ResNet-18 over N synthetic 28 px images (its cost is a forward and
backward pass of the model, not a function of D); NCTI's per-source components.
Prints a table and a JSON record (benchmarks/out/transfer_metrics.json). Goal: the whole
metric set for one (source, target) pair at the small size under 10 s on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
from _common import save_record

import medtl.data as D
import medtl.models as M
import medtl.transfer as TR

SIZES = {"small": (1100, 512, 11), "large": (5000, 2048, 10)}


def features(n: int, d: int, c: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    low = rng.normal(size=(c, 64)) @ rng.normal(size=(64, d)) / 60  # weak class structure in a subspace
    x = np.maximum(low[y] + rng.normal(size=(n, d)), 0)  # ReLU-like, as penultimate activations
    return x.astype(np.float32), y


def timed(fn, repeat: int) -> tuple[float, float]:
    best, value = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def metric_runs(x, y, probs, model, images) -> dict:
    """The timed calls for one size (one source, one target)."""
    return {
        "leep": lambda: TR.leep(probs, y),
        "nleep": lambda: TR.nleep(x, y),
        "logme": lambda: TR.logme(x, y),
        "parc": lambda: TR.parc(x, y),
        "sfda": lambda: TR.sfda(x, y),
        "ncti (one source)": lambda: TR.ncti_components(x, y)["seli"],
        "hscore": lambda: TR.hscore(x, y),
        "lp": lambda: TR.lp(x, y),
        "fu (resnet18, 28 px)": lambda: TR.fu(model, images),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="small,large")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    records = []
    for size in args.sizes.split(","):
        n, d, c = SIZES[size]
        x, y = features(n, d, c)
        logits = np.random.default_rng(1).normal(size=(n, 1000)) * 3
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        model = M.create("resnet18", num_classes=c, seed=0)
        images = D.synthetic("texture-a", n=n)
        images = D.ImageSet(images.images, torch.as_tensor(y), "multi-class", [str(i) for i in range(c)])
        runs = metric_runs(x, y, probs, model, images)
        print(f"\n{size}: N={n}, D={d}, C={c}")
        print(f"{'metric':<24}{'seconds':>10}{'value':>14}")
        total = 0.0
        for name, fn in runs.items():
            sec, value = timed(fn, args.repeat)
            total += sec
            print(f"{name:<24}{sec:>10.3f}{value:>14.5g}")
            records.append({"size": size, "n": n, "d": d, "c": c, "metric": name, "seconds": round(sec, 4)})
        print(f"{'all metrics':<24}{total:>10.3f}")
        records.append({"size": size, "n": n, "d": d, "c": c, "metric": "all", "seconds": round(total, 3)})
        if size == "small":
            print(f"goal (< 10 s for the whole set): {'met' if total < 10 else 'NOT met'}")
    save_record("transfer_metrics", results=records)


if __name__ == "__main__":
    main()
