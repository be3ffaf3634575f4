"""Comparing the hidden representations of two models on the same images."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
from torch import nn

from .. import similarity as S
from .. import train as T
from ..data import ImageSet


def compare_models(model_a: nn.Module, model_b: nn.Module, data: ImageSet, layers: Sequence[str] | None = None,
                   matrix_measure: str = "cka", measures: Sequence[str] = ("svcca", "cka"), pool: str = "avg",
                   granularity: str = "stage", progress: bool = False) -> dict[str, pd.DataFrame]:
    """Representation similarity of two models of the same architecture on ``data``:

    * ``"matrix"`` — ``matrix_measure`` between every layer pair (:func:`medtl.similarity.cka_matrix`);
    * ``"layers"`` — each of ``measures`` layer for layer (tidy: layer, depth, measure, value);
    * ``"predictions"`` — error agreement P_obs vs P_ind and κ when both heads predict
      ``data``'s classes (:func:`medtl.similarity.prediction_similarity`), else a note.
    """
    matrix = S.cka_matrix(model_a, model_b, data, layers, layers, pool=pool, measure=matrix_measure,
                          granularity=granularity, progress=progress)
    per_layer = pd.concat([S.layerwise(model_a, model_b, data, layers, measure=m, pool=pool, granularity=granularity,
                                       progress=progress) for m in measures], ignore_index=True)
    same = model_a.medtl.get("num_classes") == model_b.medtl.get("num_classes") == data.n_classes
    if same:
        pa, pb = T.evaluate(model_a, data)["y_score"], T.evaluate(model_b, data)["y_score"]
        pred = pd.DataFrame([S.prediction_similarity(data.labels.numpy(), pa, pb)])
    else:
        pred = pd.DataFrame([{"note": "the heads predict different label sets; prediction similarity skipped"}])
    return {"matrix": matrix, "layers": per_layer.drop(columns=["cka"], errors="ignore"), "predictions": pred}
