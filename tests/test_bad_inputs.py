"""A table of bad inputs over every public module and the CLI: each must raise the named
error type with a message that names the offending argument or input — never a raw
numpy / torch / sklearn / zipfile exception, never a silent result."""

import numpy as np
import pandas as pd
import pytest
import torch

import medtl.analysis as A
import medtl.data as D
import medtl.evaluate as E
import medtl.experiments as X
import medtl.features as F
import medtl.models as M
import medtl.results as R
import medtl.similarity as S
import medtl.train as T
import medtl.transfer as TR
from medtl import runtime, study
from medtl.cli import main


def _set(n=24, c=1, classes=3, task="multi-class"):
    g = torch.Generator().manual_seed(0)
    return D.ImageSet(torch.randint(0, 256, (n, c, 28, 28), dtype=torch.uint8, generator=g),
                      torch.arange(n) % classes, task, [str(i) for i in range(classes)], name="toy")


_MODELS = {}


def _model(arch="resnet18", classes=3):
    key = (arch, classes)
    if key not in _MODELS:
        _MODELS[key] = M.create(arch, num_classes=classes, seed=0)
    return _MODELS[key]


X2 = np.random.default_rng(0).normal(size=(30, 4))
Y2 = np.arange(30) % 3
P2 = np.full((30, 5), 0.2)


def _write(tmp, name, payload: bytes):
    p = tmp / name
    p.write_bytes(payload)
    return p


# (id, call(tmp_path), error type, regex the message must match)
CASES = [
    # --- data -------------------------------------------------------------------------------
    ("load-unknown-flag", lambda t: D.load("bloodmnst", root=t), ValueError, "unknown MedMNIST 2D flag 'bloodmnst'"),
    ("load-size", lambda t: D.load("bloodmnist", size=30, root=t), ValueError, "unknown MedMNIST image size 30"),
    ("load-split", lambda t: D.load("bloodmnist", "dev", root=t), ValueError, "unknown split 'dev'"),
    ("load-missing-file", lambda t: D.load("bloodmnist", root=t), FileNotFoundError, "bloodmnist.npz"),
    ("load-not-zip", lambda t: (_write(t, "breastmnist.npz", b"junk"), D.load("breastmnist", root=t, verify=False)),
     ValueError, "cannot read .*breastmnist.npz"),
    ("get-unknown", lambda t: D.get("nosuchdata"), ValueError, "unknown dataset 'nosuchdata'"),
    ("get-family", lambda t: D.get("shape-a", family="nofamily"), ValueError, "unknown dataset family 'nofamily'"),
    ("get-type", lambda t: D.get(42), TypeError, "dataset name must be a string or a path"),
    ("synthetic-name", lambda t: D.synthetic("shape-z"), ValueError, "unknown synthetic dataset 'shape-z'"),
    ("synthetic-split", lambda t: D.synthetic("shape-a", "dev"), ValueError, "unknown split 'dev'"),
    ("synthetic-size", lambda t: D.synthetic("shape-a", size=4), ValueError, "size >= 8, got 4"),
    ("synthetic-n", lambda t: D.synthetic("shape-a", n=0), ValueError, "n must be >= 1, got 0"),
    ("subset-two-args", lambda t: D.subset(_set(), 5, per_class=2), ValueError, "give exactly one of n, per_class"),
    ("subset-n", lambda t: D.subset(_set(), 99), ValueError, "n must be in 1..24"),
    ("subset-fraction", lambda t: D.subset(_set(), fraction=1.5), ValueError, "fraction must be in \\(0, 1\\]"),
    ("subset-per-class", lambda t: D.subset(_set(), per_class=50), ValueError, "has only 8 images, fewer than per_class=50"),
    ("loader-batch", lambda t: D.loader(_set(), batch_size=2.7), ValueError, "batch_size must be an integer >= 1, got 2.7"),
    ("loader-size", lambda t: D.loader(_set(), image_size=0), ValueError, "image_size must be a positive integer"),
    ("loader-channels", lambda t: D.loader(_set(), channels=2), ValueError, "channels must be None, 1 or 3, got 2"),
    ("loader-rgb-to-grey", lambda t: D.loader(_set(c=3), channels=1), ValueError, "is RGB; channels=1"),
    ("loader-norm", lambda t: D.loader(_set(), normalize="cifar"), ValueError, "unknown normalisation 'cifar'"),
    ("loader-augment", lambda t: D.loader(_set(), augment="heavy"), ValueError, "unknown augmentation recipe 'heavy'"),
    ("loader-weights", lambda t: D.loader(_set(), sample_weights=[1.0, 2.0]), ValueError, "sample_weights must be 24"),
    ("loader-resize", lambda t: D.loader(_set(), resize_mode="area"), ValueError, "resize_mode must be"),
    ("loader-data", lambda t: D.loader(np.zeros((2, 28, 28))), TypeError, "loader needs a medtl ImageSet"),
    ("imageset-dtype", lambda t: D.ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2), "multi-class", ["a"]),
     ValueError, "images must be a uint8 N×C×H×W"),
    ("imageset-task", lambda t: D.ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(2), "regression",
                                           ["a"]), ValueError, "unknown task 'regression'"),
    ("imageset-labels", lambda t: D.ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 5]),
                                             "multi-class", ["a", "b"]), ValueError, "labels must lie in 0..1"),
    ("imageset-count", lambda t: D.ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.tensor([0]),
                                            "multi-class", ["a"]), ValueError, "2 images but 1 labels"),
    ("imageset-float-labels", lambda t: D.ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8),
                                                   torch.tensor([0.0, 0.5]), "multi-class", ["a", "b"]),
     ValueError, "class labels must be integers"),
    ("concat-mismatch", lambda t: D.concat([_set(), _set(classes=2)]), ValueError, "cannot concatenate"),
    ("concat-empty", lambda t: D.concat([]), ValueError, "concat needs at least one ImageSet"),
    ("folder-missing", lambda t: D.from_folder(t / "none"), FileNotFoundError, "image folder .*none does not exist"),
    ("folder-no-classes", lambda t: ((t / "e").mkdir(), D.from_folder(t / "e")), ValueError, "has no class sub-folders"),
    ("list-missing", lambda t: D.from_list(t / "x.txt"), FileNotFoundError, "list file .*x.txt does not exist"),
    ("list-empty", lambda t: D.from_list(_write(t, "e.txt", b"# nothing\n")), ValueError, "list file .*e.txt has no entries"),
    ("list-labels", lambda t: D.from_list(_write(t, "l.txt", b"a.png x\n")), ValueError, "labels must be numbers"),
    ("csv-missing", lambda t: D.from_csv(t / "x.csv"), FileNotFoundError, "CSV file .*x.csv does not exist"),
    ("csv-columns", lambda t: D.from_csv(_write(t, "c.csv", b"file,y\na.png,0\n")), ValueError,
     r"lacks column\(s\) \['path', 'label'\]"),
    ("union-target", lambda t: D.leave_target_out("bloodmnst", root=t), ValueError, "unknown MedMNIST 2D flag"),
    ("union-none", lambda t: D.leave_target_out("bloodmnist", root=t), FileNotFoundError, "none of .* is present"),
    ("folds-missing", lambda t: D.folds("retinamnist", root=t), FileNotFoundError, "retinamnist.npz"),
    ("verify-missing", lambda t: D.verify("pathmnist", root=t), FileNotFoundError, "pathmnist.npz"),
    # --- evaluate ----------------------------------------------------------------------------
    ("auc-task", lambda t: E.auc([0, 1], [0.1, 0.9], "binary"), ValueError, "unknown task 'binary'"),
    ("auc-rows", lambda t: E.auc([0, 1, 1], [[0.5, 0.5]] * 2, "multi-class"), ValueError, "same number of rows"),
    ("auc-binary-3-cols", lambda t: E.auc([0, 1], np.ones((2, 3)) / 3, "binary-class"), ValueError, "binary task needs"),
    ("auc-nan", lambda t: E.auc([0, 1], [np.nan, 0.2], "binary-class"), ValueError, "y_score contains NaN"),
    ("auc-strings", lambda t: E.auc(["a", "b"], [0.1, 0.2], "binary-class"), ValueError, "y_true must be numeric"),
    ("auc-single-class", lambda t: E.auc([1, 1], [0.1, 0.2], "binary-class"), ValueError, "y_true has a single value"),
    ("acc-labels-range", lambda t: E.acc([0, 5], np.ones((2, 3)) / 3, "multi-class"), ValueError,
     "labels must lie in 0..2"),
    ("kappa-multilabel", lambda t: E.kappa(np.eye(2), np.eye(2), "multi-label, binary-class"), ValueError,
     "single-label tasks"),
    ("auprc-method", lambda t: E.auprc([0, 1], [0.2, 0.8], "binary-class", method="simpson"), ValueError,
     "method must be 'ap' or 'trapezoid'"),
    ("bootstrap-metric", lambda t: E.bootstrap_ci([0, 1], [0.2, 0.8], "binary-class", "f1"), ValueError,
     "unknown metric 'f1'"),
    ("bootstrap-alpha", lambda t: E.bootstrap_ci([0, 1], [0.2, 0.8], "binary-class", alpha=1.5), ValueError,
     "alpha must be in \\(0, 1\\)"),
    ("loss-name", lambda t: E.loss_fn("multi-class", "mse"), ValueError, "loss must be one of"),
    # --- models ------------------------------------------------------------------------------
    ("create-arch", lambda t: M.create("resnet19"), ValueError, "unknown architecture 'resnet19'"),
    ("create-classes", lambda t: M.create("resnet18", num_classes=0), ValueError, "num_classes must be an integer >= 1"),
    ("create-chans", lambda t: M.create("resnet18", in_chans=2), ValueError, "in_chans must be 1 or 3, got 2"),
    ("create-stem", lambda t: M.create("resnet18", stem="tiny"), ValueError, "stem must be 'imagenet' or 'cifar'"),
    ("create-size", lambda t: M.create("vgg11", image_size=16), ValueError, "needs inputs of at least 32 px, got 16"),
    ("create-vit-patch", lambda t: M.create("vit_b_16", image_size=232), ValueError, "divisible by 16, got 232"),
    ("create-weights-file", lambda t: M.create("resnet18", weights=str(t / "w.pth")), FileNotFoundError,
     "neither None, 'imagenet"),
    ("create-weights-type", lambda t: M.create("resnet18", weights=3.5), TypeError, "weights must be None, a string"),
    ("create-corrupt-ckpt", lambda t: M.create("resnet18", weights=_write(t, "c.pth", b"torn")), ValueError,
     "cannot read the checkpoint file .*c.pth"),
    ("create-grey-init", lambda t: M.create("resnet18", in_chans=1, grey_init="max"), ValueError,
     "grey_init must be 'sum', 'mean' or 'first'"),
    ("ckpt-method", lambda t: M.remap({"a": torch.zeros(1)}, "mocov2", []), ValueError, "unknown checkpoint method 'mocov2'"),
    ("ckpt-no-tensors", lambda t: M.unwrap({"epoch": 3}), ValueError, "holds no state dict|has no tensors"),
    ("source-missing", lambda t: M.load_source("nosuch", root=t), FileNotFoundError, "no medtl source 'nosuch'"),
    ("source-torn-json", lambda t: (_write(t, "s.pt", b"x"), _write(t, "s.json", b"{torn"),
                                    M.load_source("s", root=t)), ValueError, "metadata file .*s.json .* not valid JSON"),
    ("source-name", lambda t: M.save_source(_model(), "a/b", root=t), ValueError, "a source name must be"),
    ("truncate-arch", lambda t: M.truncate(_model("vgg11"), 1), ValueError, "vgg11 has no truncation recipe"),
    ("truncate-cut", lambda t: M.truncate(_model(), 7), ValueError, "block-wise cut of resnet18 must be one of"),
    ("truncate-head", lambda t: M.truncate(_model(), 1, head="max"), ValueError, "head must be 'gap' or 'flatten'"),
    ("truncate-mode", lambda t: M.truncate(_model("densenet121"), 1, mode="layer"), ValueError, "no layer-wise truncation"),
    ("reinit-scheme", lambda t: M.reinit(_model(), "xavier"), ValueError, "scheme must be 'ri', 'wt' or 'st'"),
    ("reinit-level", lambda t: M.reinit(M.create("resnet18", num_classes=3), "st", up_to=9), ValueError,
     "up_to must be in -2..4"),
    ("reinit-foreign", lambda t: M.reinit(torch.nn.Linear(2, 2), "st"), ValueError, "not built by medtl.models.create"),
    ("head-dropout", lambda t: M.new_head(4, 2, dropout=1.5), ValueError, "dropout must be in \\[0, 1\\)"),
    ("head-init", lambda t: M.new_head(4, 2, init="xavier"), ValueError, "head init must be"),
    ("register-arch-type", lambda t: M.register_arch("resnet18"), TypeError, "register_arch needs an ArchSpec"),
    ("granularity", lambda t: M.spec("resnet18").layer_list("neuron"), ValueError, "resnet18 has no 'neuron' layer list"),
    # --- features ----------------------------------------------------------------------------
    ("extract-layer", lambda t: F.extract(_model(), _set(), "layer9", progress=False), ValueError,
     "layer 'layer9' is not in the model"),
    ("extract-empty", lambda t: F.extract(_model(), _set()[np.array([], dtype=int)], progress=False), ValueError,
     "is empty: no images"),
    ("extract-pool", lambda t: F.extract(_model(), _set(), pool="max", progress=False), ValueError, "pool must be one of"),
    ("extract-data", lambda t: F.extract(_model(), np.zeros((2, 3, 28, 28))), TypeError, "data must be a medtl ImageSet"),
    ("extract-penultimate", lambda t: F.extract(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 2)),
                                                _set(), progress=False), ValueError, "'penultimate' needs a model built"),
    # --- train -------------------------------------------------------------------------------
    ("fit-monitor", lambda t: T.fit(_model(), _set(), monitor="auc", progress=False), ValueError, "monitor must be one of"),
    ("fit-epochs", lambda t: T.fit(_model(), _set(), epochs=0, progress=False), ValueError, "epochs must be an integer"),
    ("fit-patience", lambda t: T.fit(_model(), _set(), patience=0, progress=False), ValueError, "patience must be None"),
    ("fit-classes", lambda t: T.fit(_model(classes=4), _set(), progress=False), ValueError, "class count mismatch"),
    ("fit-optimizer", lambda t: T.fit(M.create("resnet18", num_classes=3), _set(), optimizer="rmsprop", epochs=1,
                                      progress=False), ValueError, "unknown optimizer 'rmsprop'"),
    ("fit-schedule", lambda t: T.fit(M.create("resnet18", num_classes=3), _set(), schedule="linear", epochs=1,
                                     progress=False), ValueError, "unknown schedule 'linear'"),
    ("fit-lr", lambda t: T.fit(M.create("resnet18", num_classes=3), _set(), lr=-1, epochs=1, progress=False),
     ValueError, "lr must be a positive number"),
    ("fit-probe", lambda t: T.fit(_model(), _set(), epochs=2, linear_probe_epochs=5, progress=False), ValueError,
     "linear_probe_epochs must be in 0..epochs"),
    ("fit-loss", lambda t: T.fit(_model(), _set(), loss="hinge", progress=False), ValueError, "loss must be one of"),
    ("fit-class-weights", lambda t: T.fit(_model(), _set(), class_weights="inverse", progress=False), ValueError,
     "class_weights must be 'balanced'"),
    ("fit-data", lambda t: T.fit(_model(), np.zeros((2, 3))), TypeError, "training data must be a medtl ImageSet"),
    ("fit-all-frozen", lambda t: T.fit(M.freeze(M.create("resnet18", num_classes=3)), _set(), epochs=1,
                                       progress=False), ValueError, "no trainable parameter"),
    ("fit-device", lambda t: T.fit(_model(), _set(), device="gpu0", progress=False), ValueError, "device must be"),
    ("select-rule", lambda t: T.select(pd.DataFrame({"val_loss": [0.1]}), "best"), ValueError, "unknown rule 'best'"),
    ("select-empty", lambda t: T.select(pd.DataFrame({"val_loss": [np.nan], "status": ["finished"]})), ValueError,
     "no finished configuration"),
    ("grid-preset", lambda t: T.grid_preset("huge"), ValueError, "unknown grid preset 'huge'"),
    ("grid-empty", lambda t: runtime.expand_grid({"lr": []}), ValueError, r"grid parameter\(s\) \['lr'\] have an empty"),
    ("lr-grid-metric", lambda t: T.lr_grid(lambda: _model(), _set(), _set(), metric="f1", progress=False), ValueError,
     "metric must be one of"),
    # --- transfer ----------------------------------------------------------------------------
    ("leep-probs", lambda t: TR.leep(P2 * 2, Y2), ValueError, "probs rows must be non-negative and sum to 1"),
    ("leep-shape", lambda t: TR.leep(P2[:, 0], Y2), ValueError, "probs must be N×K"),
    ("logme-labels", lambda t: TR.logme(X2, Y2[:-1]), ValueError, "labels has 29 entries but the features"),
    ("logme-strings", lambda t: TR.logme(np.array([["a"] * 4] * 30), Y2), ValueError, "features must be numeric"),
    ("parc-constant", lambda t: TR.parc(np.ones((30, 4)), Y2), ValueError, "features are constant"),
    ("sfda-one-class", lambda t: TR.sfda(X2, np.zeros(30)), ValueError, "labels hold a single class"),
    ("hscore-shrinkage", lambda t: TR.hscore(X2, Y2, shrinkage=2), ValueError, "shrinkage must be in \\[0, 1\\]"),
    ("nleep-variant", lambda t: TR.nleep(X2, Y2, variant="paper"), ValueError, "variant must be one of"),
    ("lp-few", lambda t: TR.lp(X2[:4], np.array([0, 1, 0, 1])), ValueError, "LP needs at least k=5 samples"),
    ("ncti-one-source", lambda t: TR.ncti({"a": X2}, Y2), ValueError, "give features of at least 2 sources"),
    ("lp-fu-sources", lambda t: TR.lp_fu(pd.Series({"a": 1.0}), pd.Series({"b": 1.0})), ValueError,
     "LP and FU cover different sources"),
    ("fu-foreign", lambda t: TR.fu(torch.nn.Conv2d(3, 3, 1), _set()), ValueError, "not built by medtl.models.create"),
    ("fu-multilabel", lambda t: TR.fu(_model(), D.ImageSet(torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
                                                           torch.eye(4)[:, :2], D.MULTI_LABEL, ["a", "b"])),
     ValueError, "fu needs a single-label target"),
    ("score-metric", lambda t: TR.score({"a": _model()}, _set(), metrics=["leepp"], progress=False), ValueError,
     "unknown metric 'leepp'"),
    ("score-sources", lambda t: TR.score({}, _set(), progress=False), ValueError, "sources must be a non-empty mapping"),
    ("score-target", lambda t: TR.score({"a": _model()}, np.zeros(3), progress=False), TypeError,
     "target must be an ImageSet or a Fold"),
    ("score-source-type", lambda t: TR.score({"a": 3}, _set(), progress=False), TypeError, "a source must be a model"),
    ("metric-kind", lambda t: TR.register_metric(kind="images"), ValueError, "metric kind must be one of"),
    ("friedman-one", lambda t: TR.friedman(pd.DataFrame({"a": [1, 2]})), ValueError, "at least 3 metrics"),
    ("nemenyi-one", lambda t: TR.nemenyi(pd.DataFrame({"a": [1, 2]})), ValueError, "at least 2 metrics"),
    ("cd-n", lambda t: TR.critical_difference(3, 0), ValueError, "n \\(the number of targets\\) must be an integer >= 1"),
    ("cd-k", lambda t: TR.critical_difference(1, 5), ValueError, "k \\(the number of methods\\) must be an integer >= 2"),
    # --- similarity --------------------------------------------------------------------------
    ("cka-rows", lambda t: S.cka(X2, X2[:10]), ValueError, "X and Y must have the same number of rows"),
    ("cka-kernel", lambda t: S.cka(X2, X2, kernel="poly"), ValueError, "kernel must be 'linear' or 'rbf'"),
    ("cka-4d", lambda t: S.cka(np.zeros((4, 2, 3, 3)), X2[:4]), ValueError, "must be N×D"),
    ("cka-strings", lambda t: S.cka(np.array([["a"]] * 4), X2[:4]), ValueError, "X must be a numeric N×D array"),
    ("cka-constant", lambda t: S.cka(np.ones((30, 2)), X2), ValueError, "X is constant"),
    ("debiased-small", lambda t: S.cka(X2[:3], X2[:3], debiased=True), ValueError, "needs at least 4 samples, got 3"),
    ("minibatch-batch", lambda t: S.minibatch_cka(X2, X2, batch_size=2), ValueError, "batch_size must be at least 4"),
    ("minibatch-average", lambda t: S.minibatch_cka(X2, X2, average="median"), ValueError, "average must be"),
    ("cca-n-le-d", lambda t: S.cca(X2[:3], X2[:3]), ValueError, "CCA needs more samples than dimensions"),
    ("cca-method", lambda t: S.cca(X2, X2, method="lu"), ValueError, "method must be 'svd' or 'qr'"),
    ("svcca-keep", lambda t: S.svcca(X2, X2, keep=0), ValueError, "keep must be a variance fraction"),
    ("pwcca-variant", lambda t: S.pwcca(X2, X2, variant="google"), ValueError, "variant must be 'svcca' or 'paper'"),
    ("datapoints-mode", lambda t: S.as_datapoints(np.zeros((2, 3, 4, 4)), mode="patch"), ValueError, "mode must be"),
    ("permutation-n", lambda t: S.permutation_test(S.cka, X2, X2, n_permutations=1), ValueError, "n_permutations must"),
    ("measure-unknown", lambda t: S.compare(X2, X2, "ckaa"), ValueError, "unknown similarity measure 'ckaa'"),
    ("prediction-length", lambda t: S.prediction_similarity([0, 1], [0, 1, 1], [1, 0]), ValueError,
     "must have the same length"),
    ("filter-shapes", lambda t: S.filter_similarity(torch.zeros(4, 3, 3, 3), torch.zeros(4, 3, 5, 5)), ValueError,
     "filters differ in shape"),
    ("filter-type", lambda t: S.filter_similarity("conv1", "conv2"), TypeError, "expected a model or a weight tensor"),
    ("l2-layer", lambda t: S.l2_distance(_model(), _model(), ["layer9"]), ValueError, "layer 'layer9' has no"),
    ("knn-labels", lambda t: S.knn_scores(X2, Y2 + 5, X2, n_classes=3), ValueError, "train_labels must lie in 0..2"),
    ("knn-k", lambda t: S.knn_scores(X2, Y2, X2, k=0), ValueError, "k must be an integer >= 1"),
    ("knn-width", lambda t: S.knn_scores(X2, Y2, X2[:, :2]), ValueError, "train and test features differ in width"),
    ("gain-ratios", lambda t: S.gain_ratios(pd.DataFrame({"init": ["wt"], "auc": [0.9], "arch": ["r"],
                                                          "dataset": ["d"]})), ValueError, "missing \\['ri', 'st'\\]"),
    ("cka-matrix-measure", lambda t: S.cka_matrix(_model(), _model(), _set(), measure="ckaa"), ValueError,
     "unknown similarity measure 'ckaa'"),
    ("layerwise-layers", lambda t: S.layerwise(_model(), _model(), _set(), layers="layer1"), TypeError,
     "layers must be a list of module paths"),
    # --- results, experiments, analysis, study ----------------------------------------------
    ("record-table", lambda t: R.record({"a": 1}, t), TypeError, "record needs a pandas DataFrame"),
    ("record-name", lambda t: R.record(pd.DataFrame({"a": [1]}), t, "../x"), ValueError, "a table name must be"),
    ("finish-status", lambda t: R.finish_run(t, "done"), ValueError, "status must be one of"),
    ("load-missing", lambda t: R.load(t / "nothing"), FileNotFoundError, "results folder .*nothing does not exist"),
    ("notebook-unknown", lambda t: X.run("experiments/nosuch"), FileNotFoundError, "notebook 'experiments/nosuch' not found"),
    ("grid-file", lambda t: X.load_grid(t / "g.yaml"), FileNotFoundError, "sweep file .*g.yaml does not exist"),
    ("grid-yaml", lambda t: X.load_grid(_write(t, "g.yaml", b"grid: [1, 2\n")), ValueError, "is not valid YAML"),
    ("sweep-executor", lambda t: X.sweep(X.find_notebook("experiments/pretrain"), {"epochs": [1]}, results_dir=t,
                                         executor="k8s", progress=False), ValueError, "executor must be 'local'"),
    ("analysis-kind", lambda t: A.load_results("weights"), ValueError, "unknown analysis kind 'weights'"),
    ("analysis-source", lambda t: A.load_results("transferability", "mine"), ValueError,
     "results_source must be 'published' or 'medtl'"),
    ("analysis-scenario", lambda t: A.published_transferability("arch"), ValueError, "scenario must be 'dataset' or"),
    ("analysis-medtl-empty", lambda t: A.medtl_transferability(t), (FileNotFoundError, ValueError), "no "),
    ("study-missing-data", lambda t: study.data_kind(["bloodmnist"], t), FileNotFoundError, "no 28 px files for"),
    ("runtime-device", lambda t: runtime.device("tpu"), ValueError, "device must be 'cpu', 'cuda'"),
    # --- the benchmark study ------------------------------------------------------------------
    ("unet-encoder", lambda t: M.unet("swin_t"), ValueError, "swin_t has no U-Net encoder"),
    ("unet-size", lambda t: M.unet("resnet18", image_size=100), ValueError, "multiples of 32, got image_size=100"),
    ("zoo-unknown", lambda t: M.fetch("moco-v3"), ValueError, "unknown initialisation 'moco-v3'|'moco-v3'"),
    ("zoo-manual", lambda t: M.fetch("inat2021", progress=False), ValueError, "inat2021 is published behind a download page"),
    ("byol-not-a-pickle", lambda t: (t / "b.pkl").write_bytes(b"<html>") and M.read_byol(t / "b.pkl"), ValueError,
     "b.pkl: not a readable BYOL checkpoint pickle"),
    ("segset-masks", lambda t: D.SegSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.full((2, 1, 4, 4), 3)),
     ValueError, "masks must hold 0/1"),
    ("seg-folder", lambda t: D.from_seg_folder(t / "img", t / "mask"), FileNotFoundError, "image folder .*img"),
    ("seg-synthetic", lambda t: D.synthetic_seg("vessels"), ValueError, "unknown synthetic segmentation dataset"),
    ("dice-shapes", lambda t: E.dice(np.zeros((2, 1, 4, 4)), np.zeros((2, 1, 4, 5))), ValueError, "one shape"),
    ("ttest-short", lambda t: E.ttest([0.8], [0.7, 0.75]), ValueError, "at least 2 values per sample"),
    ("anno-percent", lambda t: D.anno_subset(_set(), 150), ValueError, "percent must be in \\(0, 100\\]"),
    ("chexpert-missing", lambda t: D.from_chexpert(t / "train.csv"), FileNotFoundError, "CheXpert CSV .*train.csv"),
    ("chexpert-not", lambda t: D.from_chexpert(_write(t, "x.csv", b"a,b\n1,2\n")), ValueError,
     "is not a CheXpert CSV"),
    ("tencrop-size", lambda t: T.evaluate(_model(), _set(), tencrop=40), ValueError, "tencrop must be a crop side"),
    ("compare-baseline", lambda t: study.compare_trials(pd.DataFrame({"arm": ["a"], "target": ["t"], "metric": ["auc"],
                                                                       "init": ["x"], "value": [0.5]}), "imagenet"),
     ValueError, "baseline 'imagenet' has no trials"),
    ("seg-monitor", lambda t: T.fit(M.unet("resnet18", in_chans=1), D.synthetic_seg("shape-seg", n=2, size=32), None,
                                    monitor="val_acc"), ValueError, "segmentation set is monitored by"),
]


@pytest.mark.parametrize("call,error,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_named(tmp_path, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(tmp_path)


def test_the_table_is_large_and_distinct():
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


# --- the CLI: a clear message and exit code 2, never a traceback -------------------------------
CLI = [
    (["data", "download", "bloodmnst"], "unknown MedMNIST 2D flag 'bloodmnst'"),
    (["run", "experiments/nosuch"], "notebook 'experiments/nosuch' not found"),
    (["sweep", "missing.yaml"], "sweep file missing.yaml does not exist"),
    (["report", "/nonexistent/results"], "no finished runs|does not exist"),
    (["run", "experiments/pretrain", "-p", "nosuch", "1"], "has no parameter\\(s\\) \\['nosuch'\\]"),
    (["models", "fetch", "moco-v9"], "moco-v9"),
    (["models", "fetch", "inat2021"], "download page .*visipedia"),
    (["models", "convert", "byol", "/nonexistent/pretrain_res50x1.pkl"], "pretrain_res50x1.pkl"),
]


@pytest.mark.parametrize("argv,pattern", CLI, ids=[" ".join(a[:2]) for a, _ in CLI])
def test_cli_bad_input_exits_2_with_a_message(tmp_path, monkeypatch, capsys, argv, pattern):
    import re

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MEDTL_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MEDTL_DATA", str(tmp_path))
    code = main(argv)
    err = capsys.readouterr().err
    assert code in (1, 2) and re.search(pattern, err), err
    assert "Traceback" not in err
