"""Each study's protocol as data: one row per protocol element, naming the study's value
(from its spec in ``specs/``), the medtl object that holds medtl's default, and a reader
that takes that default from the code at the time of asking. A row is **faithful** when
the code's value equals the study's, else a **deviation**, which must carry its reason
(and name the option that restores the study's value where one exists). The status is
computed, never written by hand: :func:`protocol_table` reads every row, and
:func:`protocol_markdown` gives ``docs/faithfulness.md`` from it (a test checks the file
is what the code gives today)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

import pandas as pd

from .. import data as D
from .._registry import Registry
from .benchmark import BENCHMARK_FIT, SEGMENT_FIT, classify_trials

#: The studies medtl subsumes (spec file → title); the S-numbers of the faithfulness audit.
STUDIES: dict[str, str] = {
    "truncated-transfer": "S001 — Peng et al., Rethinking Transfer Learning for Medical Image Classification "
                          "(BMVC 2023)",
    "hidden-representations": "S002 — Juodelyte et al., Revisiting Hidden Representations in Transfer Learning "
                              "for Medical Imaging (TMLR 2023)",
    "benchmark-transfer": "S003 — Hosseinzadeh Taher et al., A Systematic Benchmarking Analysis of Transfer "
                          "Learning for Medical Image Analysis (DART 2021)",
    "feature-reuse": "S004 — Matsoukas et al., What Makes Transfer Learning Work for Medical Images "
                     "(CVPR 2022)",
    "dataset-transferability": "Juodelyte et al., On Dataset Transferability in Medical Image Classification "
                               "(arXiv 2412.20172)",
}


@dataclass(frozen=True)
class ProtocolElement:
    """One protocol element of one study (a row of :data:`PROTOCOL`).

    Attributes:
        study: a key of :data:`STUDIES`.
        element: what it is ("train augmentation", "optimiser", …).
        spec: where the study's value is stated (spec section).
        study_value: the study's value, in the form ``read`` returns.
        where: the medtl object holding the default (``medtl.study.TTL_RECIPE["lr"]``).
        read: returns medtl's current default.
        reason: why medtl deviates (required for a deviation; ignored when faithful), and
            the option that restores the study's value where there is one.
    """

    study: str
    element: str
    spec: str
    study_value: Any
    where: str
    read: Callable[[], Any]
    reason: str = ""

    def __post_init__(self) -> None:
        if self.study not in STUDIES:
            raise ValueError(f"protocol element {self.element!r}: study must be one of {list(STUDIES)}, "
                             f"got {self.study!r}")

    @property
    def key(self) -> str:
        return f"{self.study}: {self.element}"

    def medtl_value(self) -> Any:
        return self.read()

    def faithful(self) -> bool:
        return _same(self.read(), self.study_value)


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-12 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    return a == b


PROTOCOL: Registry[ProtocolElement] = Registry("protocol element")


def register_element(row: ProtocolElement, replace: bool = False) -> ProtocolElement:
    """Add a row to :data:`PROTOCOL` (keyed ``"study: element"``; duplicates refused)."""
    return PROTOCOL.register(row.key, row, replace=replace)


def _default(fn: Callable, name: str):
    """A function's keyword default, read from its signature."""
    return inspect.signature(fn).parameters[name].default


def _augment(name: str, *fields: str) -> Callable[[], tuple]:
    def read() -> tuple:
        row = D.RECIPES[name]
        return tuple(getattr(row, f) for f in fields)

    return read


def protocol_table(study: str | None = None) -> pd.DataFrame:
    """Every row (or one study's) with medtl's value read now and the computed status:
    columns study, element, spec, study_value, medtl_value, where, status
    (``faithful`` / ``deviation``), reason (empty when faithful)."""
    if study is not None and study not in STUDIES:
        raise ValueError(f"study must be one of {list(STUDIES)}, got {study!r}")
    rows = []
    for r in PROTOCOL.values():
        if study is not None and r.study != study:
            continue
        ok = r.faithful()
        rows.append({"study": r.study, "element": r.element, "spec": r.spec, "study_value": repr(r.study_value),
                     "medtl_value": repr(r.medtl_value()), "where": r.where,
                     "status": "faithful" if ok else "deviation", "reason": "" if ok else r.reason})
    return pd.DataFrame(rows, columns=["study", "element", "spec", "study_value", "medtl_value", "where", "status",
                                       "reason"])


def protocol_markdown() -> str:
    """``docs/faithfulness.md``: one table per study (protocol element → medtl object →
    faithful / deviation with its reason), generated from :data:`PROTOCOL`."""
    table = protocol_table()
    out = ["# Faithfulness to each study's protocol", "",
           "Generated by `medtl.study.protocol_markdown()` from the rows of `medtl.study.PROTOCOL`: each row's "
           "medtl value is read from the code, and its status is computed (faithful when it equals the "
           "study's value). Do not edit by hand: `python -c \"from medtl import study; "
           "print(study.protocol_markdown())\" > docs/faithfulness.md` rewrites it, and "
           "`tests/test_protocols.py` fails when it is stale.", ""]
    for study, title in STUDIES.items():
        part = table[table.study == study]
        if part.empty:
            continue
        n_dev = int((part.status == "deviation").sum())
        out += [f"## {title}", "", f"Spec: `specs/{study}.md`. {len(part)} elements, {n_dev} deviation(s).", "",
                "| element | study (spec) | medtl default | where | status |", "|---|---|---|---|---|"]
        for r in part.itertuples():
            status = "faithful" if r.status == "faithful" else f"**deviation**: {r.reason}"
            cells = (r.element, f"`{r.study_value}` ({r.spec})", f"`{r.medtl_value}`", f"`{r.where}`", status)
            out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


_SMALL = "CPU-sized default (a parameter: pass the study's value for a full run)"


def _truncated_rows(tt, M) -> list[ProtocolElement]:
    """S001 truncated transfer: its rows of :data:`PROTOCOL`."""
    P = ProtocolElement
    return [
        P("truncated-transfer", "train augmentation", "§A.4.2", ((0.08, 1.0), (3 / 4, 4 / 3), 0.5),
          'medtl.data.RECIPES["truncated-transfer"] (crop scale, ratio, h-flip)',
          _augment("truncated-transfer", "crop_scale", "crop_ratio", "hflip")),
        P("truncated-transfer", "recipe augmentation", "§A.4.2", "truncated-transfer",
          'medtl.study.TTL_RECIPE["augment"]', lambda: tt.TTL_RECIPE["augment"]),
        P("truncated-transfer", "optimiser and lr", "§A.4.4", ("adam", 1e-4, 0.0),
          "medtl.study.TTL_RECIPE", lambda: (tt.TTL_RECIPE["optimizer"], tt.TTL_RECIPE["lr"],
                                             tt.TTL_RECIPE["weight_decay"])),
        P("truncated-transfer", "plateau schedule on val loss", "§A.4.4", ("plateau", 0.5, 5, 1e-6),
          "medtl.study.TTL_RECIPE (schedule, gamma, patience, stop lr)",
          lambda: (tt.TTL_RECIPE["schedule"], tt.TTL_RECIPE["gamma"], tt.TTL_RECIPE["plateau_patience"],
                   tt.TTL_RECIPE["stop_lr"])),
        P("truncated-transfer", "batch size and epochs", "§A.4.4", (256, 200), "medtl.study.TTL_RECIPE",
          lambda: (tt.TTL_RECIPE["batch_size"], tt.TTL_RECIPE["epochs"])),
        P("truncated-transfer", "model selection", "§A.4.4", "val_loss", 'medtl.study.TTL_RECIPE["monitor"]',
          lambda: tt.TTL_RECIPE["monitor"]),
        P("truncated-transfer", "sweep lr", "§A.4.4", 1e-4, "medtl.study.truncation_sweep(lr=)",
          lambda: _default(tt.truncation_sweep, "lr"),
          f"{_SMALL}: 1e-3 for 3-epoch CPU runs; `**TTL_RECIPE` gives the study's recipe"),
        P("truncated-transfer", "block-wise cuts", "§A.1.2", (1, 2, 3, -1), "medtl.study.truncation_sweep(cuts=)",
          lambda: _default(tt.truncation_sweep, "cuts")),
        P("truncated-transfer", "truncated heads", "§A.1.1, §A.1.3", ("gap", "kaiming", "flatten", "flatten"),
          'medtl.models.spec("resnet50" / "densenet201" / "densenet121") trunc_head, trunc_head_init',
          lambda: (M.spec("resnet50").trunc_head, M.spec("resnet50").trunc_head_init,
                   M.spec("densenet201").trunc_head, M.spec("densenet121").trunc_head)),
        P("truncated-transfer", "two-stage search (TTL-1/-2, TF-1/-2, LWFT-1/-2)", "§A.2", ("TTL", "TF", "LWFT"),
          "medtl.study.truncation_study(search=)", lambda: _default(tt.truncation_study, "search")),
        P("truncated-transfer", "search criterion", "§A.2 (code: least val loss; the paper's choice unverified)",
          "val_loss", "medtl.study.truncation_study(search_on=)",
          lambda: _default(tt.truncation_study, "search_on")),
        P("truncated-transfer", "TF-1 / TF-2 networks", "§A.1.4, §A.5.1", (12_947_522, 17.9),
          'medtl.models.slim(resnet50, 3) parameters, slim(resnet50, 14, "layer") in millions',
          lambda: (lambda r: (sum(p.numel() for p in M.slim(r, 3).parameters()),
                              round(sum(p.numel() for p in M.slim(r, 14, "layer").parameters()) / 1e6, 1)))(
              M.create("resnet50", num_classes=2, seed=0))),
        P("truncated-transfer", "LWFT learning rates", "§A.4.4 (known bug)", "published",
          "medtl.study.lwft_sweep(setting=)", lambda: _default(tt.lwft_sweep, "setting"),
          "the study's runs lost the head/backbone lr groups to a DataParallel bug; medtl runs the method as "
          "intended (setting='published' reproduces the runs)"),
    ]


def _hidden_rows(rep) -> list[ProtocolElement]:
    """S002 hidden representations: its rows of :data:`PROTOCOL`."""
    P = ProtocolElement
    return [
        P("hidden-representations", "fine-tuning lr", "§B.1 (README command)", 1e-5,
          "medtl.study.representation_study(lr=)", lambda: _default(rep.representation_study, "lr")),
        P("hidden-representations", "early-stopping patience", "§B.1 (v2)", 30,
          "medtl.study.representation_study(patience=)", lambda: _default(rep.representation_study, "patience")),
        P("hidden-representations", "cross-validation folds", "§B.2", 5, "medtl.study.representations.STUDY_FOLDS",
          lambda: rep.STUDY_FOLDS),
        P("hidden-representations", "test AUC", "§B.1 (Keras AUC on one-hot vs softmax)", "micro",
          "medtl.study.representation_study(auc=)", lambda: _default(rep.representation_study, "auc")),
        P("hidden-representations", "train augmentation", "§B.1", ("keras", 10.0, 0.1, 0.1, 0.1, 0.5),
          'medtl.data.RECIPES["hidden-representations"] (style, rotation, shift, shear, zoom, h-flip)',
          _augment("hidden-representations", "style", "rotate", "shift", "shear", "zoom", "hflip")),
        P("hidden-representations", "no flip on the chest target", "§B.1", 0.0,
          'medtl.data.RECIPES["hidden-representations-chest"].hflip',
          lambda: _augment("hidden-representations-chest", "hflip")()[0]),
        P("hidden-representations", "pipeline augmentation", "§B.1", "hidden-representations",
          "medtl.study.representation_study(augment=)", lambda: _default(rep.representation_study, "augment")),
        P("hidden-representations", "similarity measure", "§B.3", "cca_study",
          "medtl.study.representation_study(measure=)", lambda: _default(rep.representation_study, "measure")),
        P("hidden-representations", "fine-tuning epochs", "§B.1 (README: --e 200)", 200,
          "medtl.study.representation_study(epochs=)", lambda: _default(rep.representation_study, "epochs"),
          f"{_SMALL}: 5 epochs"),
        P("hidden-representations", "training images", "§B.2 (the whole fold)", None,
          "medtl.study.representation_study(n_train=)", lambda: _default(rep.representation_study, "n_train"),
          f"{_SMALL}: a stratified 600-image subset of the fold (n_train=None: all)"),
    ]


def _benchmark_rows(M) -> list[ProtocolElement]:
    """S003 benchmark transfer: its rows of :data:`PROTOCOL`."""
    P = ProtocolElement
    return [
        P("benchmark-transfer", "initialisations", "§1", 21, "len(medtl.models.INITS)", lambda: len(M.INITS)),
        P("benchmark-transfer", "classification optimiser", "§3", ("adam", 2e-4, 0.0),
          "medtl.study.BENCHMARK_FIT", lambda: (BENCHMARK_FIT["optimizer"], BENCHMARK_FIT["lr"],
                                                BENCHMARK_FIT["weight_decay"])),
        P("benchmark-transfer", "classification schedule and stopping", "§3", ("plateau", 0.5, 5, "val_loss", 10),
          "medtl.study.BENCHMARK_FIT", lambda: (BENCHMARK_FIT["schedule"], BENCHMARK_FIT["gamma"],
                                                BENCHMARK_FIT["plateau_patience"], BENCHMARK_FIT["monitor"],
                                                BENCHMARK_FIT["patience"])),
        P("benchmark-transfer", "classification loss and batch", "§3", ("bce", 32), "medtl.study.BENCHMARK_FIT",
          lambda: (BENCHMARK_FIT["loss"], BENCHMARK_FIT["batch_size"])),
        P("benchmark-transfer", "classification augmentation", "§3", ((0.08, 1.0), 0.5, 7.0),
          'medtl.data.RECIPES["benchmark"] (crop scale, h-flip, rotation)',
          _augment("benchmark", "crop_scale", "hflip", "rotate")),
        P("benchmark-transfer", "segmentation optimiser", "§4", ("adam", 1e-3, 20),
          "medtl.study.SEGMENT_FIT", lambda: (SEGMENT_FIT["optimizer"], SEGMENT_FIT["lr"], SEGMENT_FIT["patience"])),
        P("benchmark-transfer", "binary target head", "§3 (Linear(2048→C) + Sigmoid; Shenzhen C = 1)", 1,
          "medtl.study.classify_trials(binary_outputs=)",
          lambda: _default(classify_trials, "binary_outputs")),
        P("benchmark-transfer", "input normalisation (every initialisation)", "§3", "imagenet",
          "medtl.study.classify_trials(normalize=)",
          lambda: _default(classify_trials, "normalize")),
        P("benchmark-transfer", "validation / test transform", "§3 (Resize 256 → CenterCrop 224)", 224 / 256,
          "medtl.study.classify_trials(eval_crop=)",
          lambda: _default(classify_trials, "eval_crop")),
        P("benchmark-transfer", "CheXpert reported labels", "§3 (DXC5)",
          ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"), "medtl.data.CHEXPERT_EVAL",
          lambda: tuple(D.CHEXPERT_EVAL)),
        P("benchmark-transfer", "ChestX-ray14 / Shenzhen / CheXpert splits", "§3 (official split lists)",
          "the split files as given", 'medtl.data.FAMILIES["split-files"]',
          lambda: "the split files as given" if "split-files" in D.FAMILIES.names()
          else "a seeded 70/10/20 re-split"),
        P("benchmark-transfer", "segmentation loss", "§4 (Montgomery, SIIM-ACR; DRIVE: BCE)", "dice",
          'medtl.study.SEGMENT_FIT["loss"]', lambda: SEGMENT_FIT["loss"]),
    ]


def _reuse_rows(fr, M) -> list[ProtocolElement]:
    """S004 feature reuse: its rows of :data:`PROTOCOL`."""
    P = ProtocolElement
    return [
        P("feature-reuse", "train augmentation", "§C.3",
          ((0.8, 1.2), 0.5, 0.5, (0.2, 0.2, 0.1, 0.1), 0.2, 0.2),
          'medtl.data.RECIPES["feature-reuse"] (crop scale, v-flip, h-flip, jitter, jitter p, greyscale)',
          _augment("feature-reuse", "crop_scale", "vflip", "hflip", "jitter", "jitter_p", "grayscale")),
        P("feature-reuse", "pipeline augmentation", "§C.3", "feature-reuse", "medtl.study.feature_reuse(augment=)",
          lambda: _default(fr.feature_reuse, "augment")),
        P("feature-reuse", "optimiser", "§C.3", ("adam", 1e-4, 1e-5, True),
          "medtl.study.STUDY_C_FIT, feature_reuse(lr=) (optimiser, lr, weight decay, no decay on 1-D)",
          lambda: (fr.STUDY_C_FIT["optimizer"], _default(fr.feature_reuse, "lr"), fr.STUDY_C_FIT["weight_decay"],
                   fr.STUDY_C_FIT["no_decay_1d"])),
        P("feature-reuse", "plateau schedule on the target metric", "§C.3", ("plateau", "monitor", 0.1, 3),
          "medtl.study.STUDY_C_FIT", lambda: (fr.STUDY_C_FIT["schedule"], fr.STUDY_C_FIT["plateau_on"],
                                              fr.STUDY_C_FIT["gamma"], fr.STUDY_C_FIT["plateau_patience"])),
        P("feature-reuse", "gradient clipping, batch, validation interval", "§C.3", (1.0, 64, 0.5),
          "medtl.study.STUDY_C_FIT", lambda: (fr.STUDY_C_FIT["grad_clip"], fr.STUDY_C_FIT["batch_size"],
                                              fr.STUDY_C_FIT["val_every"])),
        P("feature-reuse", "linear warm-up", "§C.3 (1,000 iterations)", 1000,
          "medtl.study.feature_reuse(warmup_fraction=)", lambda: _default(fr.feature_reuse, "warmup_fraction"),
          "10 % of the run's steps: 1,000 iterations would outlast a CPU-sized run"),
        P("feature-reuse", "runs averaged per setting", "§C.3, §C.5.7 (README: over five runs)", 5,
          "medtl.study.feature_reuse(runs=)", lambda: _default(fr.feature_reuse, "runs")),
        P("feature-reuse", "domain distance (FID to the source data)", "§C.4 (protocol unverified, §C.8 Q3)",
          ("inception_v3", 299, "source"), "medtl.study.feature_reuse(fid_model=, fid_size=, fid_reference=)",
          lambda: (_default(fr.feature_reuse, "fid_model"), _default(fr.feature_reuse, "fid_size"),
                   _default(fr.feature_reuse, "fid_reference"))),
        P("feature-reuse", "k-NN probe", "§C.5.1", (200, 0.1), "medtl.study.feature_reuse(knn_k=, tau=)",
          lambda: (_default(fr.feature_reuse, "knn_k"), _default(fr.feature_reuse, "tau"))),
        P("feature-reuse", "target metric by task", "§C.4",
          {"ordinal-regression": "kappa", "multi-class": "balanced_accuracy", "binary-class": "auc"},
          "medtl.study.feature_reuse_target_metric",
          lambda: {t: fr.target_metric(t) for t in ("ordinal-regression", "multi-class", "binary-class")}),
        P("feature-reuse", "ResNet target modules", "§C.5.2", ("conv1", 16, "fc"),
          'medtl.models.spec("resnet50").layer_list("block")',
          lambda: (lambda L: (L[0], len(L) - 2, L[-1]))(M.spec("resnet50").layer_list("block"))),
        P("feature-reuse", "ViT target modules", "§C.5.2", ("patch_embed", "blocks.0.attn", "blocks.0.mlp", 24),
          'medtl.models.spec("deit_small").layer_list("block")',
          lambda: (lambda L: (L[0], L[1], L[2], len(L) - 2))(M.spec("deit_small").layer_list("block"))),
        P("feature-reuse", "Swin target modules", "§C.5.2", ("features.1.0.attn", "features.1.0.mlp", 24),
          'medtl.models.spec("swin_t").layer_list("block")',
          lambda: (lambda L: (L[1], L[2], len(L) - 2))(M.spec("swin_t").layer_list("block"))),
    ]


def _transferability_rows(T, tr) -> list[ProtocolElement]:
    """Dataset transferability: its rows of :data:`PROTOCOL`."""
    P = ProtocolElement
    return [
        P("dataset-transferability", "scenario A grid", "§4.4",
          {"lr": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0], "momentum": [0.0, 0.9],
           "weight_decay": [0.0, 1e-6, 1e-5, 1e-4, 1e-3]},
          'medtl.train.GRID_PRESETS["study-a"]["grid"]', lambda: dict(T.GRID_PRESETS["study-a"]["grid"])),
        P("dataset-transferability", "scenario A training", "§4.4", (200, 50, "val_auc", "cosine", "sgd", 0.5),
          'medtl.train.GRID_PRESETS["study-a"]["fit"] (epochs, patience, monitor, schedule, optimiser, dropout)',
          lambda: tuple(T.GRID_PRESETS["study-a"]["fit"][k] for k in ("epochs", "patience", "monitor", "schedule",
                                                                      "optimizer", "dropout"))),
        P("dataset-transferability", "batch sizes per target", "§4.4",
          {"breastmnist": (32, 64), "octmnist": (64, 128), "bloodmnist": (128, 256), "chestmnist": (256, 512)},
          "medtl.train.STUDY_BATCH_SIZES",
          lambda: {k: T.STUDY_BATCH_SIZES[k] for k in ("breastmnist", "octmnist", "bloodmnist", "chestmnist")}),
        P("dataset-transferability", "fine-tuning augmentation", "§4.4",
          (0.5, (0.08, 1.0), 5.0, (2.0, 0.5), 0.5, 0.5), 'medtl.data.RECIPES["study"]',
          _augment("study", "hflip", "crop_scale", "rotate", "sharpness", "autocontrast", "equalize")),
        P("dataset-transferability", "metric definitions", "§3", "study", "medtl.study.score_sources(variant=)",
          lambda: _default(tr.score_sources, "variant"),
          "each metric's published definition by default; variant='study' reproduces the study's deviations "
          "(N-LEEP and SFDA without the log, NCTI as implemented, …)"),
    ]


def _rows() -> list[ProtocolElement]:
    from .. import models as M
    from .. import train as T

    # the modules themselves (the package re-exports functions under some of their names)
    fr, rep, tr, tt = (import_module(f"{__package__}.{m}") for m in ("feature_reuse", "representations",
                                                                      "transferability", "truncation"))
    return [*_truncated_rows(tt, M), *_hidden_rows(rep), *_benchmark_rows(M), *_reuse_rows(fr, M),
            *_transferability_rows(T, tr)]


for _row in _rows():
    register_element(_row)

