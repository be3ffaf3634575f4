"""What a ranking will cost before it runs, and what it saved once it has: per-image costs
measured on each candidate itself, an estimated time per candidate printed before scoring,
and the P5 ratio — the estimated cost of fine-tuning the same candidates with a study's
hyper-parameter grid over the time the ranking took.

The estimate for candidate s on N images, with ``n_boot`` subsample replicates of m images:

    extraction   N · f_s                          (f_s: eval forward seconds per image)
    FU           (N + n_boot · m) · g_s            (g_s: train-step seconds per image; when FU is asked;
                                                   an upper bound: FU computes two weights' gradients)
    metrics      M(N) + n_boot · M(m)              (M: the feature/probability metrics' time,
                                                   timed on random features of the candidate's
                                                   width at two sizes and extrapolated)

and the fine-tuning it replaces: configs × epochs × N · g_s, epochs between the grid's early
stop (patience + 1) and its maximum — a lower bound (no augmentation, data loading or
validation passes counted).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from .registry import metric


def per_image_seconds(model: nn.Module, channels: int, size: int, batch: int = 8, device=None) -> tuple[float, float]:
    """Measured ``(forward, train step)`` seconds per image of ``model`` on a zero batch of
    ``batch`` × ``channels`` × ``size`` × ``size`` (one warm-up, then the best of two timed
    passes). The train step (forward, mean-output loss, backward, an SGD step at lr 0) runs
    on a copy, so the candidate's weights and batch-norm statistics stay as they were."""
    device = torch.device(device or "cpu")
    x = torch.zeros(batch, channels, size, size, device=device)
    net = copy.deepcopy(model).to(device)

    def best(step) -> float:
        step()
        times = []
        for _ in range(2):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t0 = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - t0)
        return min(times) / batch

    net.eval()
    with torch.no_grad():
        forward = best(lambda: net(x))
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)

    def train_step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        (out[0] if isinstance(out, (tuple, list)) else out).float().mean().backward()
        opt.step()

    train = best(train_step)
    return forward, train


@dataclass
class Costs:
    """Estimated and measured cost of one :func:`medtl.transfer.rank` call.

    Attributes:
        per_image: one row per candidate: ``forward_s`` and ``train_s`` (seconds per image,
            measured), ``dim`` (feature width), ``estimate_s`` (estimated ranking time of the
            candidate), ``finetune_low_s``/``finetune_high_s`` (the grid's fine-tuning cost).
        grid: the grid preset; ``configs``: its configurations; ``epochs``: (early stop, max).
        measured_s: the ranking's wall time (set when it finishes; verification excluded).
    """

    per_image: pd.DataFrame
    n_images: int
    n_boot: int
    grid: str
    configs: int
    epochs: tuple[int, int]
    measured_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def estimate_s(self) -> float:
        return float(self.per_image.estimate_s.sum())

    def p5(self) -> tuple[float, float]:
        """(low, high) estimated fine-tuning cost of the same candidates over the measured
        ranking time; NaN before the ranking ran."""
        if not self.measured_s:
            return float("nan"), float("nan")
        return (float(self.per_image.finetune_low_s.sum()) / self.measured_s,
                float(self.per_image.finetune_high_s.sum()) / self.measured_s)

    def before(self) -> str:
        """The lines printed before scoring: the estimate per candidate and in all."""
        lines = [f"estimated time (measured per-image costs; {self.n_images} images, {self.n_boot} interval "
                 f"subsamples; within about 2x):"]
        for r in self.per_image.itertuples():
            if not np.isfinite(r.estimate_s):  # not measured: its note says why
                continue
            lines.append(f"  {r.source}: ~{_duration(r.estimate_s)} (forward {1e3 * r.forward_s:.2f} ms/image, "
                         f"train step {1e3 * r.train_s:.2f} ms/image, {r.dim:.0f} features)")
        lines.append(f"  all candidates: ~{_duration(self.estimate_s)}")
        return "\n".join(lines + [f"  {n}" for n in self.notes])

    def after(self) -> str:
        """The line printed at the end: time taken against the fine-tuning it replaces."""
        if not self.measured_s:
            return ""
        low, high = self.p5()
        ft_low, ft_high = self.per_image.finetune_low_s.sum(), self.per_image.finetune_high_s.sum()
        return (f"time: ranking took {_duration(self.measured_s)} (estimated {_duration(self.estimate_s)}); "
                f"fine-tuning the same {len(self.per_image)} candidates with the {self.grid} grid ({self.configs} "
                f"configurations x {self.epochs[0]}-{self.epochs[1]} epochs x {self.n_images} images) would take "
                f"at least {_duration(ft_low)}-{_duration(ft_high)}: P5 ratio {low:,.0f}-{high:,.0f}x")

    def table(self) -> pd.DataFrame:
        """One row per candidate with the shared settings as columns (``rank_costs``)."""
        low, high = self.p5()
        return self.per_image.assign(n_images=self.n_images, n_boot=self.n_boot, grid=self.grid, configs=self.configs,
                                     epochs_low=self.epochs[0], epochs_high=self.epochs[1],
                                     measured_s=np.nan if self.measured_s is None else self.measured_s,
                                     p5_low=low, p5_high=high, notes=" | ".join(self.notes))

    @classmethod
    def from_table(cls, t: pd.DataFrame) -> Costs:
        """The :class:`Costs` a :meth:`table` holds."""
        first = t.iloc[0]
        measured = float(first.measured_s)
        return cls(t[_PER_IMAGE].reset_index(drop=True), int(first.n_images), int(first.n_boot), str(first.grid),
                   int(first.configs), (int(first.epochs_low), int(first.epochs_high)),
                   measured_s=measured if np.isfinite(measured) else None,
                   notes=[n for n in str(first.notes).split(" | ") if n and n != "nan"])


_PER_IMAGE = ["source", "forward_s", "train_s", "dim", "estimate_s", "finetune_low_s", "finetune_high_s"]


def _duration(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _metric_pilot(model: nn.Module, data, names: list[str], dims: tuple[int, int], seed: int
                  ) -> tuple[float, float, int, int]:
    """Time the feature/probability metrics of ``names`` on random activations of widths
    ``dims`` (penultimate, logits) at two sizes of ``data`` (the target's own labels):
    ``(t1, t2, m1, m2)``."""
    from .score import score

    rng = np.random.default_rng(seed)
    cls = data.primary_labels()
    sizes = sorted({min(len(data), 60), min(len(data), 180)})
    times = []
    for m in sizes:
        idx = np.sort(rng.choice(len(data), m, replace=False)) if m < len(data) else np.arange(len(data))
        if len(np.unique(cls[idx])) < 2:
            idx = np.arange(len(data))[:m]
        sub = data.subset(idx, name=data.name)
        gen = torch.Generator().manual_seed(seed)
        given = {"pilot": {"penultimate": torch.randn(len(idx), dims[0], generator=gen),
                           "logits": torch.randn(len(idx), dims[1], generator=gen)}}
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # random activations: only the time means something, not what they warn
            warnings.simplefilter("ignore")
            score({"pilot": model}, sub, names, progress=False, seed=seed, errors="record", features=given)
        times.append(time.perf_counter() - t0)
    if len(sizes) == 1:
        return times[0], times[0], sizes[0], sizes[0]
    return times[0], times[1], sizes[0], sizes[1]


def _extrapolate(t1: float, t2: float, m1: int, m2: int, n: float) -> float:
    """Time at ``n`` from times at two sizes: a power law with exponent in [1, 2]."""
    if m2 <= m1 or n <= m2:
        return t2 * n / max(m2, 1) if n > m2 else t2
    p = float(np.clip(np.log(max(t2, 1e-9) / max(t1, 1e-9)) / np.log(m2 / m1), 1.0, 2.0))
    return t2 * (n / m2) ** p


def grid_size(grid: str, target: str | None = None) -> tuple[int, tuple[int, int]]:
    """``(configurations, (fewest, most) epochs)`` of a grid preset
    (:func:`medtl.train.grid_preset`) on ``target``: a MedMNIST target adds the study's two
    batch sizes; a run stops early after ``patience`` epochs without improvement, so it
    lasts at least patience + 1 epochs."""
    from .. import train as T

    try:
        g, fit = T.grid_preset(grid, target)
    except ValueError:  # not a MedMNIST target: the grid without its batch sizes
        g, fit = T.grid_preset(grid)
    patience = fit.get("patience") or fit["epochs"]
    return int(np.prod([len(v) for v in g.values()])), (min(fit["epochs"], patience + 1), fit["epochs"])


def estimate(models: Mapping[str, nn.Module], data, metrics: Sequence[str] | None, n_boot: int, fraction: float,
             grid: str = "study-a", target: str | None = None, seed: int = 0, device=None) -> Costs:
    """Measure each candidate's per-image costs and estimate the ranking's time per candidate
    (see the module docstring) and the ``grid`` fine-tuning it replaces."""
    from .score import select_metrics

    with warnings.catch_warnings():  # score says which metrics a multi-label target skips
        warnings.simplefilter("ignore")
        metrics = select_metrics(metrics, data.is_multilabel, target or data.name)[1]
    pilot = [m for m in metrics if metric(m).kind in ("features", "probs")]
    configs, epochs = grid_size(grid, target)
    n, m = len(data), max(2, int(round(fraction * len(data))))
    rows, pilots, notes = [], {}, []
    with_fu = "fu" in metrics
    for name, model in models.items():
        try:
            rows.append(_candidate(name, model, data, pilot, with_fu, pilots, (n, m, n_boot), configs, epochs, seed,
                                   device))
        except Exception as err:  # noqa: BLE001 - an estimate never ends a ranking; scoring reports the failure
            rows.append({"source": name, **dict.fromkeys(_PER_IMAGE[1:], np.nan)})
            notes.append(f"{name}: no estimate ({type(err).__name__}: {err})")
    if with_fu:
        notes.append("FU trains each candidate's stem: its share grows with the interval subsamples (--n-boot)")
    return Costs(pd.DataFrame(rows, columns=_PER_IMAGE), n, n_boot, grid, configs, epochs, notes=notes)


def _candidate(name, model, data, pilot, with_fu, pilots, sizes, configs, epochs, seed, device) -> dict:
    """One candidate's measured per-image costs and estimates (``sizes``: N, the subsample
    size m and n_boot; ``pilots`` caches the metric pilot per activation width)."""
    from ..features import extract
    from ..runtime import batch_settings

    n, m, n_boot = sizes
    s = batch_settings(model, data)
    fwd, train = per_image_seconds(model, s["channels"], s["image_size"], device=device)
    probe = data.subset(np.arange(min(len(data), 2)), name=data.name)
    acts = extract(model, probe, ["penultimate", "logits"], progress=False, device=device)
    dim, width = int(acts["penultimate"].shape[1]), int(acts["logits"].shape[1])
    if pilot and (dim, width) not in pilots:
        pilots[dim, width] = _metric_pilot(model, data, pilot, (dim, width), seed)
    metric_s = (_extrapolate(*pilots[dim, width], n) + n_boot * _extrapolate(*pilots[dim, width], m)) if pilot else 0.0
    fu = (n + n_boot * m) * train if with_fu else 0.0
    return {"source": name, "forward_s": fwd, "train_s": train, "dim": dim, "estimate_s": n * fwd + fu + metric_s,
            "finetune_low_s": configs * epochs[0] * n * train, "finetune_high_s": configs * epochs[1] * n * train}
