"""``medtl.train.fit`` against a plain PyTorch training loop: same model, data, batch size,
optimiser and threads, images/s of the epochs after the first (issue #23, item 2).

    python benchmarks/fit_speed.py [--sizes 28,64] [--n 4000] [--epochs 3] [--batch 128] [--profile]

The plain loop is the leanest loop a user writes: the whole training set converted once to a
normalised float32 tensor, a fresh permutation per epoch, index → forward → cross-entropy →
backward → SGD step, nothing else. ``fit`` does what it always does (per-batch uint8 →
float conversion and normalisation, the non-finite-loss check, the running loss, the
schedule), without validation. ResNet-18 (medtl's builder, ImageNet stem), synthetic RGB
images drawn at the measured size (no resizing), SGD momentum 0.9, lr 0.01, no schedule.
Goal: fit ≥ 90 % of the plain loop's images/s at 28 and 64 px. ``--profile`` prints the
top operators of one epoch of each. Prints a table and writes benchmarks/out/fit_speed.json.
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import save_record
from torch import nn

import medtl.data as D
import medtl.models as M
import medtl.train as T
from medtl.runtime import cores


def dataset(n: int, size: int) -> D.ImageSet:
    """``n`` RGB images of the synthetic suite at ``size`` px (texture-b: 4 classes)."""
    return D.synthetic("texture-b", "train", size=size, n=n)


def plain_loop(data: D.ImageSet, epochs: int, batch: int, seed: int = 0) -> list[float]:
    """Seconds per epoch of the plain loop (see the module docstring)."""
    torch.manual_seed(seed)
    model = M.create("resnet18", num_classes=data.n_classes, weights=None, seed=seed)
    x_all = (data.images.float() / 255 - 0.5) / 0.5  # medtl's "medmnist" normalisation, once
    y_all = data.labels
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    crit = nn.CrossEntropyLoss()
    model.train()
    seconds = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for idx in torch.randperm(len(x_all)).split(batch):
            opt.zero_grad(set_to_none=True)
            loss = crit(model(x_all[idx]), y_all[idx])
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t0)
    return seconds


def fit_loop(data: D.ImageSet, epochs: int, batch: int, seed: int = 0) -> list[float]:
    """Seconds per epoch of ``medtl.train.fit`` on the same model, data and optimiser."""
    model = M.create("resnet18", num_classes=data.n_classes, weights=None, seed=seed)
    r = T.fit(model, data, None, epochs=epochs, batch_size=batch, optimizer="sgd", lr=0.01, momentum=0.9,
              schedule=None, progress=False, seed=seed)
    return list(r.history.seconds)


def profile(fn, data: D.ImageSet, batch: int, title: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(data, 1, batch)
    print(f"\n{title}: top operators by self CPU time")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="28,64")
    parser.add_argument("--n", type=int, default=4000, help="training images at 28 px (a quarter at 64 px)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run; the first is warm-up")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=2, help="alternating runs of each loop; the best counts")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(cores())
    rows = []
    print(f"{'size':>5}{'images':>8}{'plain img/s':>13}{'fit img/s':>11}{'fit/plain':>11}")
    for size in (int(s) for s in args.sizes.split(",")):
        n = args.n if size <= 28 else max(args.n * 28 * 28 // (size * size), 4 * args.batch)
        data = dataset(n, size)
        best = {"plain": 0.0, "fit": 0.0}
        for _ in range(args.repeat):  # alternate, so drift in the machine's speed hits both
            for name, fn in (("plain", plain_loop), ("fit", fit_loop)):
                rate = n * (args.epochs - 1) / sum(fn(data, args.epochs, args.batch)[1:])
                best[name] = max(best[name], rate)
        ratio = best["fit"] / best["plain"]
        print(f"{size:>5}{n:>8}{best['plain']:>13.0f}{best['fit']:>11.0f}{ratio:>11.1%}")
        rows.append({"size": size, "images": n, "batch": args.batch, "plain_img_s": round(best["plain"], 1),
                     "fit_img_s": round(best["fit"], 1), "ratio": round(ratio, 3), "goal": 0.9,
                     "met": bool(ratio >= 0.9)})
        if args.profile:
            profile(plain_loop, data, args.batch, f"plain loop, {size} px")
            profile(fit_loop, data, args.batch, f"fit, {size} px")
    save_record("fit_speed", results=rows, threads=torch.get_num_threads())


if __name__ == "__main__":
    main()
