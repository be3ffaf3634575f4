"""Truncated transfer (spec truncated-transfer): LWFT, DenseNet-201 and TransFusion rows,
the two-stage cut search, AUPRC, MACs, SVCCA per cut — and the dataset-transferability
study's ablation and three-method analysis from its published tables."""

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torchvision import models as tvm

import medtl.data as D
import medtl.evaluate as E
import medtl.models as M
import medtl.train as T
from medtl import analysis, study


def test_lwft_keeps_frozen_layers_bit_identical_and_uses_two_learning_rates():
    model = M.create("resnet18", num_classes=4, seed=0)
    frozen = M.lwft_freeze(model, 3, "block")
    assert frozen == ["conv1", "bn1", "layer1", "layer2"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    groups = T.param_groups(model, 1e-3, lr_groups={"head": 1e-3, "body": 1e-4})
    assert {g["lr"]: len(g["params"]) for g in groups} == {1e-3: 2, 1e-4: len([n for n, p in model.named_parameters()
                                                                              if p.requires_grad]) - 2}
    T.fit(model, D.synthetic("shape-a", n=32), None, epochs=1, batch_size=16, optimizer="adam", lr=1e-3,
          lr_groups={"head": 1e-3, "body": 1e-4}, progress=False)
    after = model.state_dict()
    for k in before:
        if M.under(k, frozen):
            assert torch.equal(before[k], after[k]), k
    assert not torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    r50 = M.create("resnet50", num_classes=2)
    assert M.lwft_freeze(r50, 4, "layer") == ["conv1", "bn1", "layer1.0", "layer1.1", "layer1.2"]  # = block f=2
    with pytest.raises(ValueError, match="block-wise freeze_from must be 1..5"):
        M.lwft_freeze(r50, 6)


def test_lwft_sweep_intended_and_published_settings(tmp_path, monkeypatch):
    """intended: head lr / backbone lr ÷ ptl_decay, frozen BN frozen; published (spec §A.4.4
    bug, §A.1.4 quirk): one lr for all and frozen BN statistics drifting. Block-wise heads are
    Kaiming-normal, layer-wise heads PyTorch's default (§A.1.4)."""
    M.save_source(M.create("resnet18", num_classes=4, seed=0), "lwft-src", root=tmp_path)
    seen, real_fit = [], T.fit

    def recording_fit(model, *args, **kwargs):  # the real fit, its arguments and result kept
        bn = model.bn1.running_mean.clone()
        head = model.fc.weight.detach().clone()
        out = real_fit(model, *args, **kwargs)
        seen.append({"kwargs": kwargs, "bn_moved": not torch.equal(bn, model.bn1.running_mean), "head": head})
        return out

    monkeypatch.setattr(T, "fit", recording_fit)
    common = dict(freeze_froms=[2], n_train=32, n_test=40, epochs=1, models_dir=tmp_path, lr=1e-3)
    a = study.lwft_sweep("lwft-src", "shape-a", setting="intended", **common)
    b = study.lwft_sweep("lwft-src", "shape-a", setting="published", **common)
    assert a.setting.tolist() == ["intended"] and b.setting.tolist() == ["published"]
    assert seen[0]["kwargs"]["lr_groups"] == {"head": 1e-3, "body": 1e-4} and "frozen_bn" not in seen[0]["kwargs"]
    assert seen[0]["kwargs"]["augment"] == seen[1]["kwargs"]["augment"] == "truncated-transfer"  # the study's (§A.4.2)
    assert "lr_groups" not in seen[1]["kwargs"] and seen[1]["kwargs"]["frozen_bn"] == "train"
    assert not seen[0]["bn_moved"] and seen[1]["bn_moved"]  # bn1 is frozen at f=2: it drifts only when published
    assert torch.equal(seen[0]["head"], seen[1]["head"])  # same seeded Kaiming head in both settings
    study.lwft_sweep("lwft-src", "shape-a", mode="layer", **{**common, "freeze_froms": [1]})
    default = M.load_source("lwft-src", root=tmp_path, num_classes=4, head_init="default", seed=0).fc.weight
    kaiming = M.load_source("lwft-src", root=tmp_path, num_classes=4, head_init="kaiming", seed=0).fc.weight
    assert torch.equal(seen[2]["head"], default) and not torch.equal(default, kaiming)  # layer-wise: default init
    assert torch.equal(kaiming, M.load_source("lwft-src", root=tmp_path, num_classes=4, head_init="kaiming",
                                              seed=0).fc.weight)  # a fresh head is a function of its seed
    with pytest.raises(ValueError, match=r"setting must be one of \('intended', 'published'\)"):
        study.lwft_sweep("lwft-src", "shape-a", setting="buggy", **common)


def test_densenet201_cuts_follow_the_spec():
    dense = M.create("densenet201", num_classes=2, seed=0)
    children = dict(tvm.densenet201().features.named_children())
    widths = {1: 128 * 28 * 28, 2: 256 * 14 * 14, 3: 896 * 7 * 7, -1: 1920 * 7 * 7}  # at 224 px
    for t, width in widths.items():
        cut = M.truncate(dense, t, num_classes=2)  # the study's DenseNet head: flatten, default init
        names = list(children)[: 4 + 2 * t] if t != -1 else list(children)
        assert sum(p.numel() for p in cut.body.parameters()) == sum(
            sum(p.numel() for p in children[n].parameters()) for n in names)
        assert cut.head[1].in_features == width and cut.medtl["truncated"]["head"] == "flatten"
    assert widths[-1] == 94_080


def test_transfusion_builds_trains_and_has_the_published_size():
    tf = M.create("transfusion3", num_classes=2, seed=0)
    assert sum(p.numel() for p in tf.parameters()) == 12_947_522  # "TF-1: 12.9 M"
    assert tf.layer4[0].conv1.out_channels == 256 and tf.layer3[0].conv1.out_channels == 256
    r = T.fit(M.replace_head(tf, 4), D.synthetic("shape-a", n=16), None, epochs=1, batch_size=16, lr=0.01,
              progress=False)
    assert np.isfinite(r.history.train_loss).all()
    small = M.create("transfusion1", num_classes=2)
    assert small.layer2[0].conv1.out_channels == 64  # layer2..4 slimmed from s=1


def test_imagenet_weights_fill_transfusions_unslimmed_part(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    weights = M.imagenet_weights("resnet50")
    file = M.imagenet_file(weights)
    file.parent.mkdir(parents=True)
    torch.manual_seed(0)
    state = tvm.resnet50().state_dict()
    torch.save(state, file)
    with pytest.warns(UserWarning, match="shape-mismatched"):
        tf = M.create("transfusion3", num_classes=2, weights="imagenet")
    got = tf.state_dict()
    assert torch.equal(got["layer3.5.conv3.weight"], state["layer3.5.conv3.weight"])
    assert got["layer4.0.conv1.weight"].shape != state["layer4.0.conv1.weight"].shape


def test_slim_from_a_source_is_transfusion_in_both_modes():
    """TF from any ResNet source (spec §A.1.4): block-wise s has the parameters of the
    published TransFusion network (12.95 M for s=3, TF-1), layer-wise s=14 the ≈17.9 M the
    spec counts for TF-2; the unslimmed part is the source's, the slimmed part fresh, and the
    new model shares nothing with the source."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    r50 = M.create("resnet50", num_classes=2, seed=0)
    for s in (1, 2, 3):
        assert n(M.slim(r50, s)) == n(M.slim_resnet50(s, num_classes=2))
    assert n(M.slim(r50, 3)) == 12_947_522
    tf2 = M.slim(r50, 14, "layer")
    assert round(n(tf2) / 1e6, 1) == 17.9 and tf2.layer4[1].conv2.out_channels == 256
    assert tf2.layer4[1].conv3.out_channels == 2048 and tf2.fc.in_features == 2048
    source = M.create("resnet18", num_classes=4, seed=1)
    with torch.no_grad():
        for m in source.modules():  # non-default BN statistics, so copies are told from fresh ones
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(0.5)
    own = source.state_dict()
    tf = M.slim(source, 2, num_classes=3, seed=0)
    got = tf.state_dict()
    for k, v in got.items():
        if k.startswith(("conv1", "bn1", "layer1", "layer2")):
            assert torch.equal(v, own[k]) and v.data_ptr() != own[k].data_ptr(), k
    assert tf.layer3[0].conv1.out_channels == 128 and torch.equal(tf.layer3[0].bn1.weight, torch.ones(128))
    assert tf.fc.out_features == 3 and tf.medtl["slim"] == {"from": 2, "mode": "block", "factor": 2}
    assert all(torch.equal(a, b) for a, b in zip(got.values(), M.slim(source, 2, num_classes=3).state_dict().values()))
    lw = M.slim(source, 3, "layer")  # resnet18's block 3 is layer2.1: a sliming block, then halved stages
    assert lw.layer2[1].conv1.out_channels == 64 and lw.layer2[1].conv2.out_channels == 128
    assert lw.layer3[0].conv1.in_channels == 128 and lw.layer3[0].conv1.out_channels == 128
    lw_state = lw.state_dict()
    for k, v in lw_state.items():  # every tensor whose shape still matches is the source's
        if k in own and own[k].shape == v.shape and not k.startswith("fc."):
            assert torch.equal(v, own[k]), k
    assert torch.equal(lw.layer2[1].bn1.weight, torch.ones(64))  # a reshaped one is fresh
    assert n(M.slim(source, 2, "layer")) == n(M.slim(source, 1, "block"))  # a stage's first block = block-wise
    with torch.no_grad():
        assert lw.eval()(torch.zeros(2, 3, 28, 28)).shape == (2, 2)
    for bad, match in [((source, 4), "block-wise slim_from must be in 1..3"),
                       ((source, 8, "layer"), "layer-wise slim_from must be in 1..7"),
                       ((source, 1, "stage"), "mode must be 'block' or 'layer'"),
                       ((M.create("densenet121", num_classes=2), 1), "defined for ResNets, not densenet121")]:
        with pytest.raises(ValueError, match=match):
            M.slim(*bad)


def test_two_stage_search_visits_the_cuts_the_spec_describes():
    seen = []

    def objective(mode, cut):  # a toy validation score peaking at layer-wise cut 12 (TTL-2 on BIMCV)
        seen.append((mode, cut))
        k = study.BOUNDARIES["resnet50"][cut] if mode == "block" and cut != -1 else (18 if cut == -1 else cut)
        return -abs(k - 12)

    table = study.cut_search(objective, "resnet50")
    assert seen[:4] == [("block", 1), ("block", 2), ("block", 3), ("block", -1)]
    assert seen[4:] == [("layer", k) for k in (9, 10, 11, 12, 13, 15, 16)]  # around layer3, the stage-1 winner
    assert table.loc[table.best.idxmax(), "cut"] == 12 and len(table) == len(seen)


def test_auprc_equals_scikit_learn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    s = np.clip(y * 0.3 + rng.random(200) * 0.8, 0, 1)
    assert E.auprc(y, s, "binary-class") == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    precision, recall, _ = skm.precision_recall_curve(y, s)
    assert E.auprc(y, s, "binary-class", "trapezoid") == pytest.approx(skm.auc(recall, precision), abs=1e-12)
    yc = rng.integers(0, 3, 150)
    p = rng.dirichlet(np.ones(3), 150)
    assert E.auprc(yc, p, "multi-class") == pytest.approx(
        np.mean([skm.average_precision_score(yc == c, p[:, c]) for c in range(3)]), abs=1e-12)


def test_resnet50_macs_match_the_published_4_1_g():
    cost = M.complexity(M.create("resnet50", num_classes=1000), 224, repeats=1)
    assert abs(cost["macs"] / 4.1e9 - 1) < 0.02 and cost["params"] == 25_557_032


def test_svcca_per_cut_compares_the_kept_blocks():
    src = M.create("resnet18", num_classes=4, seed=0)
    data = D.synthetic("shape-a", "val", n=24)
    same = study.svcca_per_layer(src, src, data, ["layer1", "layer2"], n_points=2000)
    assert np.allclose(same.rho, 1.0, atol=1e-6) and set(same.layer) == {"layer1", "layer2"}
    cut = M.truncate(src, 1, num_classes=4, image_size=28)
    table = study.svcca_per_layer(src, cut, data, ["layer1", "layer2"], n_points=2000)
    assert set(table.layer) == {"layer1"}  # layer2 was cut away
    assert np.allclose(table.rho, 1.0, atol=1e-6)  # an unchanged copy: the blocks are identical
    layerwise = M.truncate(src, 4, mode="layer", num_classes=4, image_size=28)  # stem, layer1.0-1, layer2.0
    table = study.svcca_per_layer(src, layerwise, data, ["layer1", "layer2"], n_points=2000)
    assert set(table.layer) == {"layer1"} and np.allclose(table.rho, 1.0, atol=1e-6)  # layer1 read at layer1.1
    assert study.svcca_per_layer(src, M.truncate(src, 1, mode="layer", num_classes=4, image_size=28), data,
                                 ["layer1"]).empty  # the stem alone keeps no block


def test_ablation_and_three_method_analysis_reproduce_the_study():
    scores, auc = analysis.published_transferability("dataset")
    result = analysis.evaluate_metrics(scores, auc)
    assert result["ablation"].loc["MEAN"].round(3).to_dict() == {"lp_fu": 0.523, "lp": 0.44, "fu": 0.41}
    three = result["three"]
    assert round(three["friedman"]["statistic"], 2) == 7.09 and round(three["friedman"]["pvalue"], 4) == 0.0289
    assert round(three["cd"], 3) == 0.999  # the correct q for k = 3 (the notebook's 1.095 used k = 4's)
    assert round(three["nemenyi"].loc["lp_fu", "leep"], 3) == 0.028


@pytest.mark.parametrize("arch,size,cuts", [("inception_v3", 96, [1, 2, -1]), ("deit_small", 32, [3, 6, 9, -1])])
def test_feature_reuse_models_truncate_into_independent_copies(arch, size, cuts):
    model = M.create(arch, num_classes=3, image_size=size, seed=0)
    assert M.cut_points(model) == cuts
    sizes = []
    for cut in cuts:
        t = M.truncate(model, cut, num_classes=2, image_size=size)
        assert t(torch.randn(2, 3, size, size)).shape == (2, 2)
        assert not {p.data_ptr() for p in model.parameters()} & {p.data_ptr() for p in t.parameters()}
        sizes.append(sum(p.numel() for p in t.parameters()))
        last = t.medtl["truncated"]["layers"][-1]
        assert M.get_module(t, M.truncated_path(t, last)) is not None
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)  # deeper cuts keep more
    if arch == "deit_small":
        t = M.truncate(model, 3, num_classes=2, image_size=size)
        assert len(t.body.vit.blocks) == 3 and M.truncated_path(t, "blocks.5") is None
        assert torch.equal(M.get_module(t, M.truncated_path(t, "blocks.2.mlp.fc1")).weight,
                           model.blocks[2].mlp.fc1.weight)


def test_the_pipelines_two_stage_search_trains_each_point_once_and_reports_the_studys_rows(tmp_path, monkeypatch):
    """§A.2 in truncation_study: TTL, TF and LWFT each searched block-wise, then layer-wise
    around the stage-1 winner; a validation loss planted with its minimum at layer-wise
    k = 4 (stem + 3 blocks) gives TTL-1/TF-1/LWFT-1 at block 2 (k = 5) and -2 at k = 4; each
    point is fine-tuned once (the sweep's cuts and FTL reused), the selected rows carry the
    test metrics of the searched point, and the SVCCA tables cover the study's figures."""
    import importlib

    trunc = importlib.import_module("medtl.study.truncation")
    bounds = study.BOUNDARIES["resnet18"]
    M.save_source(M.create("resnet18", num_classes=4, seed=0), "ttl-src", root=tmp_path)
    real, trained = trunc._train_eval, []

    def k_of(model):  # the layer-wise index of what the model keeps, frozen or slimmed (10: everything)
        info = model.medtl
        if "truncated" in info:
            t = info["truncated"]
            return 10 if t["cut"] == -1 else (bounds[t["cut"]] if t["mode"] == "block" else t["cut"])
        if "slim" in info:
            return bounds[info["slim"]["from"]] if info["slim"]["mode"] == "block" else info["slim"]["from"] + 1
        f = info["lwft"]
        return bounds[f["freeze_from"] - 1] if f["mode"] == "block" else f["freeze_from"]

    def planted(model, *args, **kwargs):
        row = real(model, *args, **kwargs)
        kind = "TTL" if "truncated" in model.medtl else "TF" if "slim" in model.medtl else "LWFT"
        trained.append((kind, k_of(model)))
        return {**row, "val_loss": abs(k_of(model) - 4.4)}

    monkeypatch.setattr(trunc, "_train_eval", planted)
    out = study.truncation_study("ttl-src", "shape-b", block_cuts=[1, -1], lwft=[2], models_dir=tmp_path, n_train=32,
                                 n_test=32, epochs=1, svcca_points=500)
    assert len(trained) == len(set(trained)) == 16  # 3 of the sweeps + 13 more points, none twice
    assert ("TTL", 10) in trained and trained.count(("TTL", 10)) == 1  # FTL once, shared by the three searches
    search = out["search"]
    for method in ("TTL", "TF", "LWFT"):
        s = search[search.method == method]
        assert sorted(s[s.stage == 2].k) == [4, 6]  # between the boundaries around block 2 (k = 5)
    cuts = out["cuts"].set_index("method")
    for method in ("TTL", "TF", "LWFT"):
        one, two = cuts.loc[f"{method}-1"], cuts.loc[f"{method}-2"]
        assert (one["mode"], one.k, two["mode"], two.k) == ("block", 5, "layer", 4)
        point = search[(search.method == method) & (search.k == 4)].iloc[0]
        assert two.auc == point.auc and two.auprc_ap == point.auprc_ap and two.params == point.params
    assert cuts.loc["TF-2", "cut"] == 4 and cuts.loc["LWFT-1", "cut"] == 2  # search coordinates: k, and block t
    plain = out["cuts"][out["cuts"].method.isin(["TTL", "FTL", "TF", "LWFT"])]  # each fine-tuned model once, own cuts
    assert len(plain) == 16 and not plain.duplicated(["method", "mode", "cut"]).any()
    tf = plain[plain.method == "TF"]
    assert sorted(zip(tf["mode"], tf.cut)) == [("block", 1), ("block", 2), ("block", 3), ("layer", 3), ("layer", 5)]
    methods = out["svcca_methods"]
    assert set(methods.method) == {"FTL", "TTL-2", "TF-2", "LWFT-2"}
    assert set(methods[methods.method == "TTL-2"].layer) == {"layer1"}  # k = 4 keeps layer1 and layer2.0 only
    blocks = out["svcca_blocks"]
    assert set(blocks.pair) == {"fine-tuned", "random"} and sorted(blocks.point.unique()) == list(range(8))
    assert blocks[blocks.pair == "fine-tuned"].groupby("point").rho.mean().iloc[0] > \
        blocks[blocks.pair == "random"].groupby("point").rho.mean().iloc[0]  # the baseline pair reads lower
    files = analysis.truncation_figures({"truncation": out["cuts"], **out}, tmp_path / "figs")
    assert {"svcca_bottlenecks", "svcca_methods", "cut_curves"} <= set(files)
    assert all(Path(p).suffix == ".png" and Path(p).stat().st_size > 5000 for p in files.values())
