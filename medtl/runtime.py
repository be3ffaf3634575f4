"""Where and how computations run: the device, bf16 autocast, the batch settings a model
expects, seeded blocks, a determinism switch, and stable ids of configurations. The lowest
layer: every other module may use it; it imports nothing of medtl's. torch is imported by
the functions that use it, not by this module: the torch-free callers (configuration ids and
grids for ``medtl.experiments``, so ``medtl sweep``/``status`` and every Slurm array task)
start without torch's ~1.3 s import."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def cores() -> int:
    """The CPU cores this process may run on: its affinity mask (what Slurm's
    ``--cpus-per-task``, ``taskset`` or a container's cpuset grant), not the machine's count
    that ``os.cpu_count()`` reports — on a 64-core node a 4-core job that sized its thread
    pools or parallel kernels by ``os.cpu_count()`` would run 16× oversubscribed, and OpenMP
    pools spinning against each other run many times slower than one pool. Falls back to
    ``os.cpu_count()`` where the platform has no affinity call (macOS, Windows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:
        return os.cpu_count() or 1


def device(spec=None) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, a torch.device, or None / ``"auto"`` (CUDA when
    available)."""
    import torch

    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(spec)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N', 'auto' or None, got {spec!r}") from err


def autocast(dev: torch.device, amp: bool):
    """bf16 autocast on CUDA when ``amp``; a no-op context elsewhere."""
    import torch

    if amp and dev.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def batch_settings(model: nn.Module, data, normalize=None, image_size=None, channels=None, centre_crop=None) -> dict:
    """Loader settings a model expects: its normalisation, input size and channels (from
    ``model.medtl``), each overridable; grey data is replicated to 3 channels for a
    3-channel stem; a model recording ``eval_crop`` (a fraction, e.g. 224/256) adds
    ``centre_crop`` (unaugmented batches are resized and centre-cropped). ``data`` is an ImageSet (its name, size and channels are read)."""
    info = getattr(model, "medtl", {})
    if normalize is None:
        normalize = info.get("normalize", "medmnist")
    if image_size is None:
        image_size = info.get("image_size") or data.size
    if channels is None:
        want = info.get("in_chans", 3)
        if want == 1 and data.n_channels == 3:
            raise ValueError(f"model has a 1-channel stem but {data.name!r} is RGB")
        channels = want
    out = {"normalize": normalize, "image_size": image_size, "channels": channels}
    crop = centre_crop if centre_crop is not None else info.get("eval_crop")
    if crop:  # the model's evaluation transform: resize, then the central crop
        out["centre_crop"] = float(crop)
    return out


def check_input_size(model: nn.Module, image_size: int, what: str = "input") -> None:
    """Refuse inputs smaller than the architecture's minimum (``model.medtl["min_size"]``,
    recorded by :func:`medtl.models.create` for the standard stem)."""
    info = getattr(model, "medtl", {})
    least = info.get("min_size")
    if least and int(image_size) < int(least):
        raise ValueError(
            f"{info.get('arch', 'this model')} with the {info.get('stem', 'standard')} stem needs {what} images of at "
            f"least {least} px, got {image_size}; up-sample with image_size=... or build it with stem='cifar'"
        )


@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """Run a block with torch's global CPU RNG seeded with ``seed`` and restore the RNG
    state afterwards (a no-op for ``seed=None``)."""
    if seed is None:
        yield
        return
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@contextlib.contextmanager
def said_once() -> Iterator[None]:
    """Warnings raised inside the block, each distinct one said once when it ends: a metric
    warns for every candidate and every interval subsample, and the filters' once-per-line
    memory is reset by every ``catch_warnings`` inside the metrics. Warnings that differ only
    in their numbers (``N=140`` and ``N=72``) count as one; the first is said. Nested blocks
    pass theirs to the outer one, which says them."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:  # outside the recording context, so the caller's filters decide what shows
        said = set()
        for w in caught:
            key = (w.category, re.sub(r"\d+(\.\d+)?", "#", str(w.message)))
            if key not in said:
                said.add(key)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Deterministic GPU arithmetic inside the block: cuDNN deterministic, no benchmark
    autotuning, TF32 off for matmuls and convolutions (restored afterwards). On the CPU medtl
    is deterministic already; this costs speed on CUDA."""
    if not enabled:
        yield
        return
    import torch

    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32)
    cudnn.deterministic, cudnn.benchmark = True, False
    torch.backends.cuda.matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32 = saved


@contextlib.contextmanager
def cudnn_disabled() -> Iterator[None]:
    """cuDNN off inside the block (the dataset-transferability study's FU setting)."""
    import torch

    saved = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = False
    try:
        yield
    finally:
        torch.backends.cudnn.enabled = saved


# --- configurations ------------------------------------------------------------------------
def config_id(config: Mapping, length: int = 12) -> str:
    """A short stable id of a configuration: SHA-1 of its sorted JSON (``length`` hex digits)."""
    blob = json.dumps(dict(sorted(dict(config).items())), sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:length]


def expand_grid(grid: Mapping) -> list[dict]:
    """Every combination of a grid ``{param: [values] or value}`` (scalars are fixed), in
    the order of the keys."""
    if not isinstance(grid, Mapping):
        raise TypeError(f"a grid must be a mapping of parameter -> list of values, got {type(grid).__name__}")
    keys = list(grid)
    values = [list(v) if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
    empty = [k for k, v in zip(keys, values) if not v]
    if empty:
        raise ValueError(f"grid parameter(s) {empty} have an empty list of values")
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]
