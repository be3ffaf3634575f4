"""Probes and ablations over layers: weighted k-NN, layer-wise k-NN, layer importance by
re-initialisation, CKA between all layer pairs of two models, feature-reuse gain ratios
(the feature-reuse study, spec §C.5)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .. import evaluate as ev
from ..data import ImageSet
from ..data.imageset import MULTI_LABEL
from ..features import extract, predict
from ..models import arch_of, under
from .measures import get_measure


def knn_scores(train_features, train_labels, test_features, n_classes: int | None = None, k: int = 200,
               tau: float = 0.1, multilabel: bool = False, batch_size: int = 1024) -> np.ndarray:
    """Weighted k-NN class scores (Wu et al. 2018 / DINO): cosine similarities s_j of each
    test feature to the L2-normalised training bank, the top ``k`` neighbours weighted
    w_j = exp(s_j / τ);

        multi-class: score_c = Σ_j w_j 1[y_j = c] / Σ_j w_j,
        multi-label: p_c = Σ_j (w_j / Σ w) y_jc.

    Shapes: train ``M×D`` with labels ``M`` (or ``M×L`` multi-hot), test ``N×D``;
    returns ``N×C`` scores in [0, 1] (no further activation).
    """
    bank = torch.nn.functional.normalize(torch.as_tensor(np.asarray(train_features), dtype=torch.float64), dim=1)
    test = torch.nn.functional.normalize(torch.as_tensor(np.asarray(test_features), dtype=torch.float64), dim=1)
    if bank.shape[1] != test.shape[1]:
        raise ValueError(f"train and test features differ in width: {bank.shape[1]} vs {test.shape[1]}")
    labels = torch.as_tensor(np.asarray(train_labels))
    if len(labels) != len(bank):
        raise ValueError(f"train_labels has {len(labels)} entries for {len(bank)} training features")
    if multilabel:
        targets = labels.to(torch.float64)
    else:
        if labels.is_floating_point() and bool((labels != labels.round()).any()):
            raise ValueError("train_labels must be class indices (integers)")
        c = n_classes or int(labels.max()) + 1
        if int(labels.min()) < 0 or int(labels.max()) >= c:
            raise ValueError(f"train_labels must lie in 0..{c - 1} (n_classes={c}), got range "
                             f"{int(labels.min())}..{int(labels.max())}")
        targets = torch.nn.functional.one_hot(labels.long(), c).to(torch.float64)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not tau > 0:
        raise ValueError(f"tau must be positive, got {tau!r}")
    k = min(k, len(bank))
    out = []
    for start in range(0, len(test), batch_size):
        sim = test[start:start + batch_size] @ bank.T
        top, idx = sim.topk(k, dim=1)
        w = torch.exp(top / tau - (top / tau).max(1, keepdim=True).values)
        w = w / w.sum(1, keepdim=True)
        out.append(torch.einsum("nk,nkc->nc", w, targets[idx]))
    return torch.cat(out).numpy()


def knn_eval(train_features, train_labels, test_features, test_labels, task: str, k: int = 200, tau: float = 0.1,
             n_classes: int | None = None) -> dict:
    """k-NN probe: :func:`knn_scores` then medtl's task-aware metrics of the test labels:
    AUC, ACC and, for single-label tasks, quadratic κ, balanced accuracy and one-vs-one AUC
    (the feature-reuse study's target metrics; NaN where undefined, e.g. a class absent).
    Returns ``{"auc", "acc", "kappa", "balanced_accuracy", "auc_ovo", "scores"}``."""
    scores = knn_scores(train_features, train_labels, test_features, n_classes, k, tau, task == MULTI_LABEL)
    y = np.asarray(test_labels)

    def safe(fn):
        if task == MULTI_LABEL and fn not in (ev.auc, ev.acc):
            return float("nan")
        try:
            return float(fn(y, scores, task))
        except ValueError:
            return float("nan")

    return {"auc": safe(ev.auc), "acc": safe(ev.acc), "kappa": safe(ev.kappa),
            "balanced_accuracy": safe(ev.balanced_accuracy), "auc_ovo": safe(ev.auc_ovo), "scores": scores}


def layer_names(model: nn.Module, layers: Sequence[str] | None, granularity: str = "stage") -> list[str]:
    """``layers`` if given, else the architecture table's layers at ``granularity``."""
    if layers is not None:
        if isinstance(layers, str):
            raise TypeError("layers must be a list of module paths, not one string")
        return list(layers)
    return list(arch_of(model).layer_list(granularity))


def _token_pools(model: nn.Module, names: list[str], pool: str) -> dict[str, str]:
    """Per-layer pooling for the k-NN probe: token modes (``"cls"``, ``"patches"``,
    ``"all"``) apply to transformer blocks; the patch embedding (no class token yet) is
    averaged over its tokens and conv maps are globally averaged, as the feature-reuse
    study (spec §C.5.2)."""
    if pool not in ("cls", "patches", "all"):
        return {layer: pool for layer in names}
    stem = arch_of(model).stem if "arch" in getattr(model, "medtl", {}) else ""
    return {layer: "avg" if stem == layer or stem.startswith(layer + ".") else pool for layer in names}


def layerwise_knn(model: nn.Module, train: ImageSet, test: ImageSet, layers: Sequence[str] | None = None,
                  k: int = 200, tau: float = 0.1, pool: str = "avg", progress: bool = False,
                  granularity: str = "stage", **batch) -> pd.DataFrame:
    """k-NN probe accuracy of every listed layer (default: the architecture table's layers at
    ``granularity``, plus the penultimate features): pooled activations (conv maps averaged;
    transformer token sequences by ``pool`` = ``"cls"``/``"patches"``/``"all"`` or
    ``"avg"``; the patch embedding averaged), L2-normalised, the training set as the bank,
    k = 200 and τ = 0.1 as the feature-reuse study. Returns a table: layer, depth
    (0 = first), pool, auc, acc, kappa, balanced_accuracy, auc_ovo (:func:`knn_eval`)."""
    names = layer_names(model, layers, granularity)
    if layers is None and "penultimate" not in names and names[-1] != arch_of(model).head:
        names.append("penultimate")
    pools = _token_pools(model, names, pool)
    ftr, fte = {}, {}
    for p in dict.fromkeys(pools.values()):
        group = [layer for layer in names if pools[layer] == p]
        ftr.update(extract(model, train, group, pool=p, progress=progress, **batch))
        fte.update(extract(model, test, group, pool=p, progress=progress, **batch))
    rows = []
    for depth, layer in enumerate(names):
        r = knn_eval(ftr[layer].flatten(1), train.labels, fte[layer].flatten(1), test.labels, test.task, k, tau,
                     test.n_classes)
        rows.append({"layer": layer, "depth": depth, "pool": pools[layer],
                     **{m: r[m] for m in ("auc", "acc", "kappa", "balanced_accuracy", "auc_ovo")}})
    return pd.DataFrame(rows)


def _evaluate(model: nn.Module, data: ImageSet, **batch) -> dict:
    logits, y = predict(model, data, **batch)
    return ev.score_outputs(logits, y, data.task, getattr(model, "medtl", {}).get("loss"))


def layer_importance(model: nn.Module, init_state: Mapping[str, torch.Tensor], data: ImageSet,
                     layers: Sequence[str] | None = None, granularity: str = "stage", **eval_kwargs) -> pd.DataFrame:
    """Layer criticality by re-initialisation (Zhang, Bengio & Singer 2019): for each layer,
    put that layer's parameters **and buffers** back to ``init_state`` (matched by exact
    module prefix, so ``fc`` does not catch ``mlp.fc1``; a parameter-free activation layer
    such as ResNet's ``relu`` means the modules producing it, ``spec(arch).params_of``),
    evaluate on ``data``, restore.

    Returns a table: layer (``"(none)"`` = the unmodified model first), auc, acc, loss,
    auc_drop (unmodified AUC − AUC)."""
    names = layer_names(model, layers, granularity)
    owners = arch_of(model).params_of if "arch" in getattr(model, "medtl", {}) else (lambda layer: (layer,))
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base = _evaluate(model, data, **eval_kwargs)
    rows = [{"layer": "(none)", "auc": base["auc"], "acc": base["acc"], "loss": base["loss"], "auc_drop": 0.0}]
    try:
        for layer in names:
            keys = [k for k in final if under(k, owners(layer))]
            if not keys:
                raise ValueError(f"layer {layer!r} matches no parameter or buffer of the model")
            missing = [k for k in keys if k not in init_state]
            if missing:
                raise ValueError(f"init_state lacks {missing[:3]} of layer {layer!r}")
            state = dict(final)
            state.update({k: init_state[k] for k in keys})
            model.load_state_dict(state)
            r = _evaluate(model, data, **eval_kwargs)
            rows.append({"layer": layer, "auc": r["auc"], "acc": r["acc"], "loss": r["loss"],
                         "auc_drop": base["auc"] - r["auc"]})
    finally:
        model.load_state_dict(final)
    return pd.DataFrame(rows)


def cka_matrix(model_a: nn.Module, model_b: nn.Module, data: ImageSet, layers_a: Sequence[str] | None = None,
               layers_b: Sequence[str] | None = None, pool: str | None = None, debiased: bool | None = None,
               progress: bool = False, measure: str = "cka_debiased", granularity: str = "stage",
               **batch) -> pd.DataFrame:
    """A similarity measure (default debiased linear CKA, as the feature-reuse study)
    between every layer of ``model_a`` and every layer of ``model_b`` on the same images
    (init vs fine-tuned; WT vs ST fine-tuned). ``measure`` is any registered measure
    (:func:`medtl.similarity.measures`); ``pool`` defaults to the measure's own
    (``"flatten"``, the full activations, for CKA). ``debiased=False`` is shorthand for the
    biased ``"cka"``. Returns a tidy table: layer_a, layer_b, depth_a, depth_b, measure,
    value, and a column named after the measure family (``cka``) for CKA measures."""
    if debiased is not None:
        measure = "cka_debiased" if debiased else "cka"
    m = get_measure(measure)
    pool = pool or m.pool
    la, lb = layer_names(model_a, layers_a, granularity), layer_names(model_b, layers_b, granularity)
    fa = extract(model_a, data, la, pool=pool, progress=progress, **batch)
    fb = extract(model_b, data, lb, pool=pool, progress=progress, **batch)
    rows = []
    for i, a in enumerate(la):
        for j, b in enumerate(lb):
            xa, xb = (fa[a], fb[b]) if m.input == "activations" else (fa[a].flatten(1), fb[b].flatten(1))
            rows.append({"layer_a": a, "layer_b": b, "depth_a": i, "depth_b": j, "measure": measure,
                         "value": float(m.fn(xa, xb))})
    return _named(pd.DataFrame(rows), measure)


def _named(table: pd.DataFrame, measure: str) -> pd.DataFrame:
    if measure.startswith("cka"):
        table["cka"] = table["value"]
    return table


def layerwise(init_model: nn.Module, final_model: nn.Module, data: ImageSet, layers: Sequence[str] | None = None,
              measure: str = "cka_debiased", pool: str | None = None, granularity: str = "stage",
              progress: bool = False, **batch) -> pd.DataFrame:
    """A measure between each layer of two models of the same architecture, layer for
    layer (the diagonal of :func:`cka_matrix`): before vs after fine-tuning, WT vs ST.
    Returns: layer, depth, measure, value (and ``cka`` for CKA measures)."""
    m = get_measure(measure)
    names = layer_names(final_model, layers, granularity)
    fa = extract(init_model, data, names, pool=pool or m.pool, progress=progress, **batch)
    fb = extract(final_model, data, names, pool=pool or m.pool, progress=progress, **batch)
    rows = []
    for depth, layer in enumerate(names):
        xa, xb = (fa[layer], fb[layer]) if m.input == "activations" else (fa[layer].flatten(1), fb[layer].flatten(1))
        rows.append({"layer": layer, "depth": depth, "measure": measure, "value": float(m.fn(xa, xb))})
    return _named(pd.DataFrame(rows), measure)


def layerwise_cka(init_model: nn.Module, final_model: nn.Module, data: ImageSet, layers: Sequence[str] | None = None,
                  debiased: bool = True, **kwargs) -> pd.DataFrame:
    """CKA of each layer with itself in two models (:func:`layerwise` with linear CKA,
    debiased by default): layer, depth, cka."""
    return layerwise(init_model, final_model, data, layers, measure="cka_debiased" if debiased else "cka", **kwargs)


def gain_ratios(results: pd.DataFrame, value: str = "auc", init: str = "init",
                by: Sequence[str] = ("arch", "dataset"), run: str = "run") -> pd.DataFrame:
    """Feature-reuse ratios from a results table with one row per run (spec §C.5.7): the
    relative gain from transfer G = WT / RI and the share of it due to feature reuse
    R = (WT − ST) / WT, on the mean ``value`` over runs per (``by`` groups, ``init`` ∈
    {ri, wt, st}), as the study (mean over its five runs).

    With a ``run`` column holding several runs, ``gain_sd`` and ``reuse_share_sd`` are the
    standard deviations (ddof 1) of the per-run ratios (runs paired by their number) and
    ``n_runs`` their count; NaN with one run."""
    by = [b for b in by if b in results.columns]
    t = results.assign(**{init: results[init].str.lower()})
    means = t.groupby(by + [init])[value].mean().unstack(init)
    missing = {"ri", "wt", "st"} - set(means.columns)
    if missing:
        raise ValueError(f"gain ratios need runs of every init (ri, wt, st); missing {sorted(missing)}")
    out = pd.DataFrame({"ri": means["ri"], "wt": means["wt"], "st": means["st"]})
    out["gain"] = out.wt / out.ri
    out["reuse_share"] = (out.wt - out.st) / out.wt
    if run in t.columns:
        per = t.groupby(by + [run, init])[value].mean().unstack(init)[["ri", "wt", "st"]]
        per = per.assign(gain=per.wt / per.ri, reuse_share=(per.wt - per.st) / per.wt).groupby(level=by)
        out["gain_sd"] = per.gain.std()
        out["reuse_share_sd"] = per.reuse_share.std()
        out["n_runs"] = per.gain.count()
    return out.reset_index()


