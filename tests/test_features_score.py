import numpy as np
import pytest
import torch
from conftest import need_file

import medtl.data as D
import medtl.features as F
import medtl.models as M
import medtl.train as T
import medtl.transfer as TR


def test_extract_equals_a_manual_forward():
    model = M.create("resnet18", num_classes=4, seed=0)
    ds = D.synthetic("shape-a", "val", n=20)
    out = F.extract(model, ds, ["penultimate", "logits", "layer2"], pool="avg", batch_size=7, progress=False)
    x = D.loader(ds, 20, channels=3).transform(ds.images)
    model.eval()
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        l2 = model.layer2(model.layer1(h))
        pen = torch.flatten(model.avgpool(model.layer4(model.layer3(l2))), 1)
        logits = model.fc(pen)
    assert torch.allclose(out["layer2"], l2.mean((2, 3)), atol=1e-5)
    assert torch.allclose(out["penultimate"], pen, atol=1e-5)
    assert torch.allclose(out["logits"], logits, atol=1e-5)
    flat = F.extract(model, ds, "layer2", pool="flatten", progress=False)["layer2"]
    assert flat.shape == (20, 128 * 4 * 4)


def test_extract_cache_reuses_and_keys_on_weights(tmp_path, monkeypatch):
    model = M.create("shufflenet_v2_x0_5", num_classes=4, seed=0)
    ds = D.synthetic("texture-a", "val", n=16)
    first = F.extract(model, ds, ["penultimate", "logits"], cache=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npy"))) == 2

    def boom(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(F, "iter_activations", boom)  # extraction itself, whatever traces the model
    again = F.extract(model, ds, ["penultimate", "logits"], cache=tmp_path, progress=False)
    assert all(torch.equal(first[k], again[k]) for k in first)
    with torch.no_grad():
        model.fc.weight.add_(1.0)
    with pytest.raises(AssertionError, match="cache was not used"):
        F.extract(model, ds, ["penultimate", "logits"], cache=tmp_path, progress=False)
    with pytest.raises(AssertionError, match="cache was not used"):  # other normalisation
        F.extract(M.create("shufflenet_v2_x0_5", num_classes=4, seed=0), ds, "logits", cache=tmp_path,
                  normalize="imagenet", progress=False)


def test_a_traced_extractor_is_reused_only_while_the_model_is_the_same_structure():
    """Tracing is done once per model and layer set; the extractor shares the model's
    modules, so training in place reaches it, and replacing a module (head surgery) or a
    tensor forces a new trace: every read equals a plain forward pass of the model now."""
    import copy
    import gc
    import weakref

    model = M.create("resnet18", num_classes=4, seed=0)
    ds = D.synthetic("texture-a", "val", n=8)
    x = next(iter(D.loader(ds, batch_size=8, **F.batch_settings(model, ds))))[0]

    def logits(net):
        return F.extract(net, ds, ["logits", "layer1"], progress=False)["logits"]

    def direct(net):
        with torch.no_grad():
            return net.eval()(x)

    first = logits(model)
    traced = F._FX[model]["extractors"][frozenset({"fc", "layer1"})]
    assert torch.allclose(first, direct(model), atol=1e-5)
    with torch.no_grad():
        model.layer1[0].conv1.weight.mul_(-1.5)  # in place, as an optimiser step
    assert torch.allclose(logits(model), direct(model), atol=1e-5) and not torch.allclose(logits(model), first)
    assert F._FX[model]["extractors"][frozenset({"fc", "layer1"})] is traced  # not traced again
    model.fc = torch.nn.Linear(512, 3)  # surgery: a new head
    assert logits(model).shape == (8, 3) and torch.allclose(logits(model), direct(model), atol=1e-5)
    model.layer1[0].bn1.running_mean = torch.full((64,), 0.5)  # a tensor replaced by assignment
    assert torch.allclose(logits(model), direct(model), atol=1e-5)
    twin = copy.deepcopy(model)  # a derived model shares no cache entry with its original
    assert twin not in F._FX and torch.allclose(F.extract(twin, ds, "logits", progress=False)["logits"], direct(model),
                                                atol=1e-5)
    gone = [weakref.ref(model), weakref.ref(twin)]
    del model, twin, traced
    gc.collect()
    assert all(r() is None for r in gone)  # the cache never keeps a model alive


def test_extract_errors():
    model = M.create("resnet18", num_classes=4)
    ds = D.synthetic("texture-a", "val", n=4)
    with pytest.raises(ValueError, match="layer 'layer5' is not in the model; valid layers: 'penultimate', 'logits', "
                                         "avgpool, bn1, conv1"):
        F.extract(model, ds, "layer5", progress=False)
    with torch.no_grad():
        model.layer3[0].conv1.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="activations of layer 'penultimate' contain NaN"):
        F.extract(model, ds, "penultimate", progress=False)


def test_vit_tokens_pool():
    model = M.create("vit_b_16", num_classes=3, stem="cifar", image_size=28, seed=0)
    ds = D.synthetic("texture-a", "val", n=3)
    out = F.extract(model, ds, ["encoder.layers.encoder_layer_0"], pool="none", progress=False)
    assert out["encoder.layers.encoder_layer_0"].shape == (3, 50, 768)
    cls = F.extract(model, ds, ["encoder.layers.encoder_layer_0"], pool="cls", progress=False)
    assert torch.allclose(cls["encoder.layers.encoder_layer_0"], out["encoder.layers.encoder_layer_0"][:, 0])


def test_source_probs_for_sigmoid_heads():
    logits = torch.tensor([[0.0, 2.0, -1.0]])
    model = M.create("resnet18", num_classes=3)
    model.medtl["source"] = {"task": D.MULTI_LABEL}
    p = TR.source_probs(logits, model)
    s = torch.sigmoid(logits.double())
    assert np.allclose(p, (s / s.sum()).numpy())
    assert np.allclose(TR.source_probs(logits, model, "study"), torch.softmax(logits.double(), 1).numpy())


def test_score_on_synthetic_sources_has_every_metric():
    sources = {n: M.create("resnet18", num_classes=4, seed=i) for i, n in enumerate(["a", "b", "c"])}
    table = TR.score(sources, D.synthetic("shape-a", n=80), progress=False, target_name="shape-a")
    wide = table[table.metric != "features"].pivot(index="source", columns="metric", values="value")
    assert set(wide.columns) == set(TR.METRICS) and np.isfinite(wide.to_numpy()).all()
    with pytest.raises(ValueError, match="unknown metric"):
        TR.score(sources, D.synthetic("shape-a", n=80), metrics=["leepp"], progress=False)


@pytest.mark.realdata
def test_score_real_sources_on_a_real_fold(medmnist_root, tmp_path, monkeypatch):
    """Three sources pre-trained by medtl on other MedMNIST datasets, every metric on
    bloodmnist's fold-1 training subset (800 images): all values finite."""
    need_file(medmnist_root, "bloodmnist.npz")
    sources = {}
    for flag in ("pneumoniamnist", "organamnist", "breastmnist"):
        need_file(medmnist_root, f"{flag}.npz")
        train = D.subset(D.load(flag, "train", root=medmnist_root), per_class=80, seed=0)
        r = T.pretrain("resnet18", train, None, name=flag, root=tmp_path, epochs=1, batch_size=64,
                       optimizer="adam", lr=1e-3, schedule=None, augment=None, progress=False)
        sources[flag] = f"source:{flag}"
        assert r.history.train_loss.notna().all()
    monkeypatch.setenv("MEDTL_MODELS", str(tmp_path))
    fold = D.folds("bloodmnist", root=medmnist_root)[0]
    table = TR.score(sources, fold, progress=False, cache=tmp_path / "features")
    values = table[table.metric != "features"]
    assert set(values.metric) == set(TR.METRICS) and len(values) == 3 * len(TR.METRICS)
    assert np.isfinite(values.value).all()
    assert set(values.target) == {"bloodmnist"}


def test_score_says_a_metric_warning_once_not_once_per_candidate():
    """H-score on N ≤ D warns for every source; score repeats it once (three candidates)."""
    import warnings

    data = D.synthetic("texture-b", n=40)
    sources = {f"random-{i}": M.create("resnet18", num_classes=4, weights=None) for i in range(3)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        table = TR.score(sources, data, ["hscore", "leep"], progress=False)
    said = [str(w.message) for w in caught if "H-score" in str(w.message)]
    assert len(said) == 1 and "N=40" in said[0], said
    assert np.allclose(table[table.metric == "hscore"].value, 3.0)


def test_said_once_collapses_repeats_and_number_only_differences_and_nests():
    """Warnings differing only in their numbers are one (the first is said); distinct ones
    each said; an inner block hands its warnings to the outer one."""
    import warnings

    from medtl.runtime import said_once

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with said_once():
            for n in (140, 72, 72):
                with said_once():
                    warnings.warn(f"H-score on N={n} samples", RuntimeWarning, stacklevel=1)
                    warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["H-score on N=140 samples", "another warning"]


def test_lp_fu_says_which_input_failed_when_it_failed_for_every_candidate():
    """FU undefined for every candidate: each LP×FU row names the failed input (not numpy's
    "zero-size array" from normalising nothing)."""
    import importlib

    import pandas as pd

    sc = importlib.import_module("medtl.transfer.score")
    rows = [{"source": s, "metric": m, "value": v, "seconds": 0.0, "error": None if v == v else "FU failed"}
            for s in ("a", "b") for m, v in (("lp", 0.5 if s == "a" else 0.7), ("fu", float("nan")))]
    out = sc._across_sources(pd.DataFrame(rows), [], {"a": None, "b": None}, {}, None, ["lp_fu"], set(), "official",
                             0, {}, "record")
    lpfu = out[out.metric == "lp_fu"]
    assert lpfu.value.isna().all() and set(lpfu.error) == {"needs lp and fu, which failed for this source"}
