"""Comparing hidden representations: two models on the same images, and the
hidden-representations study's protocol (Juodelyte et al., TMLR 2023; spec §B) — two
sources fine-tuned on a target with and without a frozen first stage, the 14 model pairs
compared layer by layer with the study's CCA, prediction similarity, first-layer filters and
similarity vs the AUC gain over random initialisation."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from torch import nn

from .. import models as M
from .. import similarity as S
from .. import train as T
from ..data import ImageSet
from ._data import RANDOM, fit_progress, split


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


def ft_key(source: str, freeze: bool) -> str:
    """The key of a fine-tuned model in :func:`model_pairs`: ``"ft:<source>:F"`` (fine-tuned
    end to end, the study's freezeFalse) or ``":T"`` (head first with the body frozen, then
    everything: freezeTrue)."""
    return f"ft:{source}:{'T' if freeze else 'F'}"


def model_pairs(sources: Sequence[str]) -> list[tuple[str, str]]:
    """The hidden-representations study's 14 model pairs (spec §B.3) for two sources S1, S2
    (ImageNet and RadImageNet in the study), with F = fine-tuned end to end, T = freeze
    then fine-tune, ``"random"`` / ``"random#2"`` two differently seeded untrained networks:

    FT(S1,F) vs {S1, FT(S1,T), FT(S2,F), random}; FT(S1,T) vs {S1, FT(S2,T)};
    FT(S2,F) vs {S2, FT(S2,T), random}; FT(S2,T) vs S2; S1 vs {S2, random};
    S2 vs random; random vs random#2."""
    if len(sources) != 2 or sources[0] == sources[1] or RANDOM in sources:
        raise ValueError(f"model_pairs needs two different pre-trained sources, got {list(sources)!r}")
    s1, s2 = sources
    f1, t1, f2, t2 = ft_key(s1, False), ft_key(s1, True), ft_key(s2, False), ft_key(s2, True)
    return [(f1, s1), (f1, t1), (f1, f2), (f1, RANDOM), (t1, s1), (t1, t2), (f2, s2), (f2, t2), (f2, RANDOM),
            (t2, s2), (s1, s2), (s1, RANDOM), (s2, RANDOM), (RANDOM, f"{RANDOM}#2")]


def compare_pairs(models: Mapping[str, nn.Module], pairs: Sequence[tuple[str, str]], data: ImageSet,
                  measure: str = "cca_study", granularity: str = "stage", seed: int = 0,
                  progress: bool = False, **options) -> pd.DataFrame:
    """Layer-wise similarity of every pair of ``models`` (name → model, e.g. loaded from
    saved sources) on ``data``. ``measure="cca_study"`` runs the study's CCA protocol
    (:func:`medtl.similarity.layerwise_cca_study`, one row per repeat); any other registered
    measure compares layer for layer (:func:`medtl.similarity.layerwise`). Returns a tidy
    table: model1, model2, layer, depth, (repeat, seed,) measure, value."""
    missing = sorted({m for pair in pairs for m in pair} - set(models))
    if missing:
        raise ValueError(f"compare_pairs: no model named {missing}; have {sorted(models)}")
    frames = []
    for m1, m2 in pairs:
        a, b = models[m1], models[m2]
        if measure == "cca_study":
            t = S.layerwise_cca_study(a, b, data, granularity=granularity, seed=seed, progress=progress, **options)
        else:
            t = S.layerwise(a, b, data, measure=measure, granularity=granularity, progress=progress, **options)
        frames.append(t.assign(model1=m1, model2=m2))
    return pd.concat(frames, ignore_index=True)


#: the hidden-representations study's protocol (spec §B.1–B.2; the README command of its
#: code): Adam at 1e-5 after a 1e-3 head-only stage for the frozen variant, early stopping on
#: the validation loss with patience 30 (v2), 5-fold cross-validation, test AUC = micro AUC.
STUDY_LR, STUDY_PATIENCE, STUDY_FOLDS, STUDY_AUC = 1e-5, 30, 5, "micro"
#: The study's training augmentation (§B.1, Keras ``ImageDataGenerator``): a recipe of
#: :data:`medtl.data.RECIPES`; its chest X-ray target trains without the horizontal flip.
STUDY_AUGMENT = "hidden-representations"
#: MedMNIST targets that are chest X-rays (the study's ``chest`` target is pneumoniamnist's source data).
CHEST_TARGETS = ("pneumoniamnist", "chestmnist")


def study_augment(target: str, augment=STUDY_AUGMENT):
    """The augmentation a target trains with: the study's recipe without its horizontal flip
    on chest X-ray targets (:data:`CHEST_TARGETS`, as the study's code), else ``augment`` as
    given (a recipe name, an :class:`medtl.data.Augment` or None)."""
    if augment == STUDY_AUGMENT and target.split("_")[0] in CHEST_TARGETS:
        return f"{STUDY_AUGMENT}-chest"
    return augment


def _finetune(source: str, freeze: bool, train, val, models_dir, epochs, freeze_epochs, lr, patience, seed, progress,
              augment):
    model = M.load_source(source, root=models_dir, num_classes=train.n_classes, dropout=0.5, seed=seed)
    kwargs = fit_progress(progress, ft_key(source, freeze), epochs)
    probe = freeze_epochs if freeze else 0  # the frozen stage comes on top of the fine-tuning epochs, as the study
    T.fit(model, train, val, epochs=epochs + probe, optimizer="adam", lr=lr, schedule=None, monitor="val_loss",
          patience=patience, linear_probe_epochs=probe, probe_lr=1e-3, seed=seed, augment=augment, **kwargs)
    return model


def study_folds(target: str, size: int = 28, root: str | os.PathLike | None = None, fold: int | None = 1,
                n_train: int | None = None, n_stimulus: int | None = None, seed: int = 0
                ) -> tuple[ImageSet, ImageSet, ImageSet]:
    """(train, val, test) of one fold of the hidden-representations study's 5-fold
    cross-validation (its v2 protocol, spec §B.2): the target's images pooled (every split),
    ``StratifiedKFold(5, shuffle, random_state=2)``; the held-out fold split again and its
    last inner split taken, val ≈ 4 % and test ≈ 16 % of the set (:func:`medtl.data.cv_folds`).
    Folds 1–5 hold out disjoint images. ``n_train`` / ``n_stimulus`` then draw ``seed``-ed
    stratified subsets of the fold's train / test parts (the study used them whole; CPU runs
    need fewer). ``fold=None`` is a named deviation: the dataset's official splits instead.
    MedMNIST carries no patient ids, so the folds are stratified, not grouped."""
    from .. import data as D

    if fold is None:
        train = split(target, "train", size, root, n_train, seed)
        return (train, split(target, "val", size, root, max(len(train) // 4, 40), seed),
                split(target, "test", size, root, n_stimulus, seed))
    if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= STUDY_FOLDS:
        raise ValueError(f"fold must be 1..{STUDY_FOLDS} (the study's 5-fold CV) or None (official splits), got {fold!r}")
    pooled = D.concat([split(target, part, size, root) for part in ("train", "val", "test")], name=f"{target}/all")
    cv = D.cv_folds(pooled, k=STUDY_FOLDS, seed=2, test=True)[fold - 1]
    train = D.subset(cv.train, n_train, stratified=True, seed=seed) if n_train is not None and n_train < len(cv.train) else cv.train
    test = D.subset(cv.test, n_stimulus, stratified=True, seed=seed) if n_stimulus is not None and n_stimulus < len(cv.test) else cv.test
    return train, cv.val, test


def representation_study(target: str, sources: Sequence[str], size: int = 28, root: str | os.PathLike | None = None,
                         models_dir: str | os.PathLike | None = None, n_train: int | None = 600,
                         n_stimulus: int | None = 500, epochs: int = 5, freeze_epochs: int = 2, lr: float = STUDY_LR,
                         measure: str = "cca_study", granularity: str = "stage", seed: int = 0,
                         progress: bool | str = False, *, fold: int | None = 1, patience: int = STUDY_PATIENCE,
                         auc: str = STUDY_AUC, augment=STUDY_AUGMENT, **measure_options) -> dict[str, pd.DataFrame]:
    """The hidden-representations study on one target and one fold of its 5-fold
    cross-validation (:func:`study_folds`; a sweep over ``fold`` = 1..5 gives the study's
    folds, ``seed`` only draws the CPU-sized subsets and seeds training):

    1. each of the two saved ``sources`` is fine-tuned on ``target`` twice with the study's
       recipe (Adam at ``lr``, 1e-5 as the study's README command; dropout 0.5 before a
       fresh head; early stopping on the validation loss with ``patience`` 30, v2; best
       checkpoint): end to end (F) and after ``freeze_epochs`` of head-only training at
       1e-3 (T); a model of the same architecture is trained from random initialisation as
       the AUC baseline. Every training uses ``augment``: the study's Keras augmentation
       (rotation ±10°, shifts ±10 %, shear ±0.1°, zoom ±10 %, edge pixels repeated,
       horizontal flip except on chest X-ray targets; :func:`study_augment`) by default;
       another recipe, an :class:`medtl.data.Augment`, or None (a named deviation). ``epochs`` (5) is a CPU-sized deviation: the study ran up to 200;
    2. the 14 pairs of :func:`model_pairs` are compared layer by layer on ``n_stimulus``
       images of the fold's test part with ``measure`` (default the study's CCA);
    3. prediction similarity of FT(S1) vs FT(S2) per freeze setting; first-layer filter
       similarity of each fine-tuned model to its source;
    4. similarity vs gain: per source and layer, the similarity of FT(S,F) to S and
       ΔAUC_rel = (AUC_FT − AUC_random) / AUC_random.

    The test AUC is ``auc`` (:func:`medtl.evaluate.auc`): ``"micro"`` by default, the
    study's v2 definition (one-hot labels vs softmax, flattened) computed exactly instead of
    with Keras' 200 thresholds; ``"weighted"`` is its v1 AUC, ``"macro"`` MedMNIST's.

    Returns ``{"pairs", "aucs", "predictions", "filters", "sim_vs_auc"}`` tidy tables
    (``aucs`` names its fold and AUC average) and ``"models"`` (name → model: the sources,
    fine-tuned models and random networks, for figures such as :func:`first_filters`)."""
    from .. import evaluate as ev

    if len(sources) != 2:
        raise ValueError(f"representation_study compares two sources, got {list(sources)!r}")
    if auc not in ev.AUC_AVERAGES:
        raise ValueError(f"auc must be one of {ev.AUC_AVERAGES}, got {auc!r}")
    train, val, stimulus = study_folds(target, size, root, fold, n_train, n_stimulus, seed)
    recipe = study_augment(target, augment)
    models = {s: M.load_source(s, root=models_dir, num_classes=train.n_classes, seed=seed) for s in sources}
    arch = models[sources[0]].medtl["arch"]
    info = models[sources[0]].medtl
    for i, key in enumerate((RANDOM, f"{RANDOM}#2")):
        models[key] = M.create(arch, num_classes=train.n_classes, in_chans=info.get("in_chans", 3),
                               stem=info.get("stem", "imagenet"), image_size=info.get("image_size"), seed=seed + 1 + i)

    def test_auc(model) -> float:
        out = T.evaluate(model, stimulus)
        return ev.auc(out["y_true"], out["y_score"], stimulus.task, average=auc)

    aucs = []
    for s in sources:
        for freeze in (False, True):
            model = _finetune(s, freeze, train, val, models_dir, epochs, freeze_epochs, lr, patience, seed, progress,
                              recipe)
            models[ft_key(s, freeze)] = model
            aucs.append({"model": ft_key(s, freeze), "source": s, "freeze": freeze, "auc": test_auc(model)})
    baseline = M.create(arch, num_classes=train.n_classes, in_chans=info.get("in_chans", 3),
                        stem=info.get("stem", "imagenet"), image_size=info.get("image_size"), seed=seed, dropout=0.5)
    T.fit(baseline, train, val, epochs=epochs, optimizer="adam", lr=lr, schedule=None, monitor="val_loss",
          patience=patience, seed=seed, augment=recipe, **fit_progress(progress, "random init", epochs))
    aucs.append({"model": "ft:random:F", "source": RANDOM, "freeze": False, "auc": test_auc(baseline)})
    aucs = pd.DataFrame(aucs).assign(target=target, seed=seed, fold=fold, auc_average=auc)
    pairs = compare_pairs(models, model_pairs(sources), stimulus, measure, granularity, seed, **measure_options)
    return {"pairs": pairs.assign(target=target, fold=fold),
            "aucs": aucs,
            "predictions": _predictions(models, sources, stimulus).assign(target=target, seed=seed, fold=fold),
            "filters": _filters(models, sources).assign(target=target, seed=seed, fold=fold),
            "sim_vs_auc": _sim_vs_auc(pairs, aucs, sources).assign(target=target, seed=seed, fold=fold),
            "models": models}


def _predictions(models, sources, data) -> pd.DataFrame:
    rows = []
    for freeze in (False, True):
        a, b = models[ft_key(sources[0], freeze)], models[ft_key(sources[1], freeze)]
        r = S.prediction_similarity(data.labels.numpy(), T.evaluate(a, data)["y_score"],
                                    T.evaluate(b, data)["y_score"])
        rows.append({"freeze": freeze, **r})
    return pd.DataFrame(rows)


def _filters(models, sources) -> pd.DataFrame:
    rows = []
    for s in sources:
        for freeze in (False, True):
            rows.append({"source": s, "freeze": freeze, **S.filter_similarity(models[s], models[ft_key(s, freeze)])})
    rows.append({"source": RANDOM, "freeze": False, **S.filter_similarity(models[RANDOM], models[f"{RANDOM}#2"])})
    return pd.DataFrame(rows)


def _sim_vs_auc(pairs: pd.DataFrame, aucs: pd.DataFrame, sources) -> pd.DataFrame:
    base = float(aucs.loc[aucs.source == RANDOM, "auc"].iloc[0])
    rows = []
    for s in sources:
        auc_ft = float(aucs.loc[aucs.model == ft_key(s, False), "auc"].iloc[0])
        own = pairs[(pairs.model1 == ft_key(s, False)) & (pairs.model2 == s)]
        for layer, g in own.groupby("layer", sort=False):
            rows.append({"source": s, "layer": layer, "depth": int(g.depth.iloc[0]), "similarity": float(g.value.mean()),
                         "auc": auc_ft, "auc_random": base, "auc_gain": (auc_ft - base) / base})
    return pd.DataFrame(rows)


def first_filters(models: Mapping[str, nn.Module], names: Sequence[str], n: int = 36) -> dict[str, np.ndarray]:
    """The study's filter plot input (spec §B.5): the first ``n`` stem filters of each named
    model, channel 0, min–max normalised jointly (:func:`medtl.similarity.filter_grid`)."""
    return {name: S.filter_grid(models[name], n=n) for name in names}
