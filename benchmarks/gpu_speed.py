"""Speed on a GPU as a fraction of the device's roofline: training through ``medtl.train.fit``
(ResNet-50, 224 px, bf16 autocast, channels_last), one U-Net epoch (64 px), feature extraction
(ResNet-50, 224 px, float32), and the transferability metrics at N = 50,000, D = 768.

    python benchmarks/gpu_speed.py [--device cuda] [--quick]

The roofline is measured here, not looked up: the best rate of large GEMMs in the dtype a
part runs in (bf16 for training, float32 for extraction — TF32 stays off, as medtl leaves
it — and float64 on the host for the metrics). A part's achieved rate is images/s × the
FLOPs of one image (counted by ``torch.utils.flop_counter`` on the model itself: forward for
extraction, forward + backward for training), and its fraction is that over the roofline.
The metrics run on the host (numpy / float64); each is reported in seconds and as a multiple
of one N×D·D×N-sized Gram GEMM (XᵀX), the roofline-bound core most of them share.

``--device cpu --quick`` runs every part at toy sizes (a check that the script works on a
machine without a GPU; ``benchmarks/gpu.sh`` skips it there). Writes
``benchmarks/out/gpu_speed.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import save_record
from torch.utils.flop_counter import FlopCounterMode

import medtl.data as D
import medtl.features as F
import medtl.models as M
import medtl.transfer as TR
from medtl.train import fit


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_roofline(device: torch.device, dtype: torch.dtype, n: int) -> float:
    """Best FLOP/s of an n×n·n×n matrix product in ``dtype`` on ``device`` (5 timed runs)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def image_flops(model: torch.nn.Module, size: int, channels: int = 3, train: bool = False) -> float:
    """FLOPs of one image through ``model`` (forward; + backward with ``train``), counted on CPU."""
    x = torch.zeros(2, channels, size, size)
    model = model.cpu().train(train)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if train:
            (out[0] if isinstance(out, (tuple, list)) else out).float().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def fit_rate(device: torch.device, n: int, size: int, batch: int) -> dict:
    """ResNet-50 training images/s through fit (bf16 autocast, channels_last); epoch 1 warms up."""
    data = D.synthetic("texture-a", "train", size=size, n=n)
    model = M.create("resnet50", num_classes=data.n_classes, seed=0)
    flops = image_flops(M.create("resnet50", num_classes=data.n_classes, seed=0), size, train=True)
    times = []
    amp = device.type == "cuda"
    fit(model, data, None, epochs=2, batch_size=batch, device=device, amp=amp, channels_last=amp, progress=False,
        seed=0, callbacks=[lambda e, row: times.append(row["seconds"])])
    rate = n / times[-1]
    return {"images_per_s": rate, "flops_per_image": flops, "achieved_flops": rate * flops, "dtype": "bf16" if amp
            else "float32", "n": n, "size": size, "batch": batch}


def unet_rate(device: torch.device, n: int) -> dict:
    from unet_epoch import epoch_rate

    data = D.synthetic_seg("shape-seg", "train", 64, n=n)
    r = epoch_rate("resnet18", data, 32, device.type)
    flops = image_flops(M.unet("resnet18", in_chans=1, seed=0), 64, channels=1, train=True)
    return {**r, "flops_per_image": flops, "achieved_flops": r["images_per_s"] * flops, "dtype": "bf16"
            if device.type == "cuda" else "float32"}


def extract_rate(device: torch.device, n: int, size: int) -> dict:
    data = D.synthetic("texture-a", "train", size=size, n=n)
    model = M.create("resnet50", num_classes=4, seed=0)
    flops = image_flops(M.create("resnet50", num_classes=4, seed=0), size)
    F.extract(model, data.subset(np.arange(min(n, 64))), device=device, progress=False)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    F.extract(model, data, device=device, progress=False, batch_size=256)
    sync(device)
    rate = n / (time.perf_counter() - t0)
    return {"images_per_s": rate, "flops_per_image": flops, "achieved_flops": rate * flops, "dtype": "float32",
            "n": n, "size": size}


def metric_times(n: int, d: int, c: int) -> dict:
    """Seconds of every features/probs metric at N×D (host, as medtl runs them) and the time
    of one float64 XᵀX of the same features."""
    from transfer_metrics import features

    x, y = features(n, d, c)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n, 1000)).astype(np.float32)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    x64 = x.astype(np.float64)
    t0 = time.perf_counter()
    x64.T @ x64
    gram = time.perf_counter() - t0
    out = {"n": n, "d": d, "c": c, "gram_seconds": gram, "metrics": {}}
    for name, m in TR.METRIC_TABLE.items():
        if m.kind not in ("features", "probs"):
            continue
        t0 = time.perf_counter()
        m.fn(x, y) if m.kind == "features" else m.fn(probs, y)
        s = time.perf_counter() - t0
        out["metrics"][name] = {"seconds": round(s, 3), "gram_multiples": round(s / gram, 1)}
        print(f"  {name}: {s:.2f} s ({s / gram:.1f}x one XᵀX)", flush=True)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--quick", action="store_true", help="toy sizes: check the script, not the device")
    a = p.parse_args()
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device (benchmarks/gpu.sh skips this script without one)")
    q = a.quick
    n_gemm = 512 if q else 8192
    roof = {"bf16": gemm_roofline(device, torch.bfloat16 if device.type == "cuda" else torch.float32, n_gemm),
            "float32": gemm_roofline(device, torch.float32, n_gemm)}
    host64 = gemm_roofline(torch.device("cpu"), torch.float64, 512 if q else 2048)
    print(f"roofline on {device}: bf16 {roof['bf16'] / 1e12:.1f} TFLOP/s, float32 {roof['float32'] / 1e12:.1f} "
          f"TFLOP/s; host float64 {host64 / 1e9:.0f} GFLOP/s", flush=True)
    parts = {"fit_resnet50": fit_rate(device, 64 if q else 4096, 64 if q else 224, 16 if q else 128),
             "unet_epoch": unet_rate(device, 32 if q else 2048),
             "extract_resnet50": extract_rate(device, 64 if q else 8192, 64 if q else 224)}
    for name, r in parts.items():
        r["roofline_fraction"] = r["achieved_flops"] / roof[r["dtype"]]
        print(f"{name}: {r['images_per_s']:.0f} images/s, {r['achieved_flops'] / 1e12:.2f} TFLOP/s "
              f"= {100 * r['roofline_fraction']:.1f} % of the {r['dtype']} roofline", flush=True)
    about = {"device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda"
             else "cpu", "quick": q, "roofline_flops": roof, "host_float64_flops": host64, "parts": parts}
    save_record("gpu_speed", **about, metrics="not measured yet")  # kept if the metrics run out of time
    print("metrics (host, float64 where they need it):", flush=True)
    save_record("gpu_speed", **about, metrics=metric_times(*((2000, 64, 10) if q else (50_000, 768, 10))))


if __name__ == "__main__":
    main()
