"""Truncated transfer learning sweeps (Peng et al., BMVC 2023)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from .. import models as M
from .. import train as T
from ._data import split


def truncation_sweep(source: str, target: str, cuts: Sequence[int] = (1, 2, 3, -1), mode: str = "block",
                     head: str = "gap", size: int = 28, root: str | os.PathLike | None = None,
                     models_dir: str | os.PathLike | None = None, n_train: int | None = 600, n_test: int | None = 400,
                     epochs: int = 3, lr: float = 1e-3, seed: int = 0, progress: bool = False) -> pd.DataFrame:
    """Cut the saved source after each of ``cuts`` (TTL, :func:`medtl.models.truncate`),
    add a fresh head, fine-tune (Adam) and evaluate on the target's test subset. Returns one
    row per cut: cut, mode, params, auc, acc."""
    train = split(target, "train", size, root, n_train, seed)
    val = split(target, "val", size, root, max((n_train or 160) // 4, 40), seed)
    test = split(target, "test", size, root, n_test, seed)
    rows = []
    for cut in cuts:
        base = M.load_source(source, root=models_dir)
        model = M.truncate(base, cut, mode=mode, head=head, num_classes=train.n_classes, image_size=size)
        params = sum(p.numel() for p in model.parameters())
        T.fit(model, train, val, epochs=epochs, optimizer="adam", lr=lr, batch_size=64, seed=seed, progress=progress)
        r = T.evaluate(model, test)
        rows.append({"cut": cut, "mode": mode, "params": params, "auc": r["auc"], "acc": r["acc"]})
    return pd.DataFrame(rows)
