"""The feature-reuse study's protocol (Matsoukas et al., CVPR 2022): fine-tune RI, WT and
ST initialisations of one source on a target and analyse every layer."""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd

from .. import models as M
from .. import similarity as S
from .. import train as T
from ._data import split


def _layer_curves(model, init_state, before, train, test, layers, knn_k) -> list[pd.DataFrame]:
    knn = S.layerwise_knn(model, train, test, layers, k=knn_k).rename(columns={"auc": "value"})
    imp = S.layer_importance(model, init_state, test, layers)
    l2 = S.l2_distance(init_state, model.state_dict(), layers)
    cka = S.layerwise(before, model, test, layers, measure="cka_debiased", pool="avg")
    return [knn[["layer", "value"]].assign(analysis="knn_auc"),
            imp[imp.layer != "(none)"].rename(columns={"auc_drop": "value"})[["layer", "value"]]
            .assign(analysis="importance_auc_drop"),
            l2.rename(columns={"l2": "value"})[["layer", "value"]].assign(analysis="l2"),
            cka[["layer", "value"]].assign(analysis="cka_init_final")]


def feature_reuse(source: str, target: str, size: int = 28, root: str | os.PathLike | None = None,
                  models_dir: str | os.PathLike | None = None, inits: Sequence[str] = ("ri", "wt", "st"),
                  n_train: int | None = 600, n_test: int | None = 400, epochs: int = 3, lr: float = 1e-3,
                  knn_k: int = 50, seed: int = 0, progress: bool = False) -> dict[str, pd.DataFrame]:
    """RI / WT / ST from the saved source ``source`` fine-tuned on ``target`` (Adam), then per
    layer: k-NN probe AUC, importance by re-initialisation to the start state, L2 distance
    init → final, and debiased CKA init ↔ final.

    Returns ``{"aucs": one row per init (test AUC/ACC), "layers": tidy curves (layer, value,
    init, analysis), "ratios": WT/RI and (WT−ST)/WT}``."""
    train = split(target, "train", size, root, n_train, seed)
    val = split(target, "val", size, root, max((n_train or 160) // 4, 40), seed)
    test = split(target, "test", size, root, n_test, seed)
    rows, curves = [], []
    for init in inits:
        model = M.reinit(M.load_source(source, root=models_dir, num_classes=train.n_classes), init, seed=seed)
        start = {k: v.clone() for k, v in model.state_dict().items()}
        before = M.load_source(source, root=models_dir, num_classes=train.n_classes)
        before.load_state_dict(start)
        T.fit(model, train, val, epochs=epochs, optimizer="adam", lr=lr, batch_size=64, seed=seed, progress=progress)
        r = T.evaluate(model, test)
        rows.append({"init": init, "arch": model.medtl["arch"], "dataset": target, "auc": r["auc"], "acc": r["acc"]})
        layers = list(M.spec(model.medtl["arch"]).layers)
        curves += [c.assign(init=init) for c in _layer_curves(model, start, before, train, test, layers, knn_k)]
    aucs = pd.DataFrame(rows)
    return {"aucs": aucs, "layers": pd.concat(curves, ignore_index=True), "ratios": S.gain_ratios(aucs, value="auc")}
