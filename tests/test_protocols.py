"""The studies' similarity protocols (study CCA, study CKA) against step-by-step references,
and the WT–ST hybrids as the feature-reuse study defines them."""

import copy
import warnings

import numpy as np
import pytest
import torch

import medtl.data as D
import medtl.models as M
import medtl.similarity as S
from medtl import experiments as E


# --- study CCA -----------------------------------------------------------------------------
def _google_cca_mean(x: np.ndarray, y: np.ndarray, epsilon: float) -> float:
    """google/svcca's get_cca_similarity, written out from the spec (§B.3): acts are
    neurons × datapoints."""
    n1 = x.shape[0]
    sigma = np.cov(np.concatenate([x, y], 0))
    sxx, sxy, syy = sigma[:n1, :n1], sigma[:n1, n1:], sigma[n1:, n1:]
    xmax, ymax = np.max(np.abs(sxx)), np.max(np.abs(syy))
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)
    kx, ky = np.abs(np.diag(sxx)) >= epsilon, np.abs(np.diag(syy)) >= epsilon
    sxx, syy, sxy = sxx[kx][:, kx] + epsilon * np.eye(kx.sum()), syy[ky][:, ky] + epsilon * np.eye(ky.sum()), \
        sxy[kx][:, ky]

    def sqrt_psd(m):
        w, v = np.linalg.eigh(m)
        return v @ np.diag(np.sqrt(np.clip(w, 0, None))) @ v.T

    arr = sqrt_psd(np.linalg.pinv(sxx)) @ sxy @ sqrt_psd(np.linalg.pinv(syy))
    return float(np.mean(np.abs(np.linalg.svd(arr, compute_uv=False))))


def test_study_cca_equals_the_spec_step_by_step():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(30, 12, 3, 4, generator=g)
    b = 0.5 * a + torch.randn(30, 12, 3, 4, generator=g)
    out = S.cca_study(a, b, n_channels=5, points=200, repeats=3, seed=7)
    values = []
    for r in range(3):
        s = 7 + r
        imgs = torch.randperm(30, generator=torch.Generator().manual_seed(s))[:round(200 / 12)].numpy()
        idx = torch.randperm(12, generator=torch.Generator().manual_seed(s))[:5].numpy()
        # every spatial position a datapoint: N×H×W×C → (N·H·W)×C, then the chosen channels, transposed
        xa = a.numpy()[imgs].transpose(0, 2, 3, 1).reshape(-1, 12)[:, idx].T.astype(np.float64)
        xb = b.numpy()[imgs].transpose(0, 2, 3, 1).reshape(-1, 12)[:, idx].T.astype(np.float64)
        values.append(_google_cca_mean(xa, xb, 1e-12))
    np.testing.assert_allclose(out["repeats"], values, rtol=1e-9)
    assert out["value"] == pytest.approx(np.mean(values), rel=1e-9)
    assert out["seeds"] == [7, 8, 9] and out["n_images"] == 17 and out["n_points"] == 17 * 12 and out["n_channels"] == 5


def test_study_cca_reads_near_zero_on_independent_data_and_pooled_cca_does_not():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(500, 128, 5, 5, generator=g), torch.randn(500, 128, 5, 5, generator=g)
    out = S.cca_study(a, b)  # the study's settings: 64 channels, 10⁴ points (400 images × 25), 5 repeats
    assert out["n_points"] == 10_000 and out["n_channels"] == 64 and len(out["repeats"]) == 5
    assert out["value"] < 0.2
    # the pooled form on the same images: one row per image, 128 dims → inflated
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pooled = float(S.cca_google(a.mean((2, 3))[:200].double(), b.mean((2, 3))[:200].double()).mean())
    assert pooled > 0.5
    same = S.cca_study(a, a, repeats=2)
    assert same["value"] == pytest.approx(1.0, abs=1e-6)
    tokens = torch.randn(200, 50, 96, generator=g)  # N×T×D: every token a datapoint
    assert S.cca_study(tokens, torch.randn(200, 50, 96, generator=g))["n_points"] == 200 * 50


def test_study_cca_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match="same images and channel count"):
        S.cca_study(torch.randn(10, 8, 2, 2), torch.randn(10, 9, 2, 2))
    with pytest.raises(ValueError, match="n_channels must be a positive integer"):
        S.cca_study(torch.randn(10, 8, 2, 2), torch.randn(10, 8, 2, 2), n_channels=0)
    with pytest.raises(ValueError, match="N×C, N×T×D"):
        S.cca_study(torch.randn(10), torch.randn(10))


def _pair_of_models():
    a = M.create("resnet18", num_classes=4, in_chans=1, image_size=28, seed=0)
    b = M.create("resnet18", num_classes=4, in_chans=1, image_size=28, seed=1)
    return a, b


def test_layerwise_study_cca_streams_exactly_what_the_pure_routine_computes():
    data = D.synthetic("texture-a", "test")  # 200 images
    a, b = _pair_of_models()
    layers = ["relu", "layer1", "layer4"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deep layers at 28 px: few points per image
        table = S.layerwise_cca_study(a, b, data, layers, points=1500, repeats=2, chunk=32)
        fa = S.layerwise(a, a, data, layers, measure="cka", pool="none")  # noqa: F841 (smoke: pool none path)
        from medtl.features import extract

        ea, eb = extract(a, data, layers, pool="none", progress=False), extract(b, data, layers, pool="none",
                                                                               progress=False)
        for layer in layers:
            ref = S.cca_study(ea[layer], eb[layer], points=1500, repeats=2)
            got = table[table.layer == layer].sort_values("repeat")
            np.testing.assert_allclose(got.value, ref["repeats"], rtol=1e-6)
            assert got.n_images.iloc[0] == ref["n_images"]
    summary = S.summarise_repeats(table)
    assert list(summary.layer) == layers and (summary.repeats == 2).all()
    # a model against itself: 1 at every layer
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        self_sim = S.layerwise_cca_study(a, a, data, ["layer1"], points=1000, repeats=1)
    assert self_sim.value.iloc[0] == pytest.approx(1.0, abs=1e-5)


# --- study CKA -----------------------------------------------------------------------------
def test_study_cka_one_batch_is_debiased_cka_and_batches_average_cka_values():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(150, 40, generator=g, dtype=torch.float64)
    y = x @ torch.randn(40, 30, generator=g, dtype=torch.float64) + torch.randn(150, 30, generator=g,
                                                                               dtype=torch.float64)
    assert S.cka_study(x, y, batch_size=150) == pytest.approx(S.cka(x, y, debiased=True), rel=1e-12)
    assert S.cka_study(x, y, batch_size=1000) == pytest.approx(S.cka(x, y, debiased=True), rel=1e-12)
    # explicit loop: per batch of 64 (the last, of 22, included), debiased CKA of each, then the mean
    loop = [S.cka(x[i:i + 64], y[i:i + 64], debiased=True) for i in range(0, 150, 64)]
    assert len(loop) == 3
    assert S.cka_study(x, y) == pytest.approx(np.mean(loop), rel=1e-12)
    # not the accumulated-HSIC minibatch CKA
    assert S.cka_study(x, y) != pytest.approx(S.minibatch_cka(x, y, batch_size=64), rel=1e-6)
    # activations are flattened per image (the study uses un-pooled maps)
    maps = torch.randn(70, 3, 4, 4, generator=g)
    assert S.cka_study(maps, maps * 2 + 1, batch_size=70) == pytest.approx(
        S.cka(maps.flatten(1), (maps * 2 + 1).flatten(1), debiased=True), rel=1e-6)


def test_cka_study_matrix_streams_the_seeded_batches():
    from medtl.features import extract

    data = D.synthetic("shape-a", "test").subset(range(100))
    a, b = _pair_of_models()
    layers = ["relu", "layer2", "layer4"]
    table = S.cka_study_matrix(a, b, data, layers, seed=5)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(5))
    sub = data.subset(order)
    fa, fb = extract(a, sub, layers, pool="flatten", progress=False), extract(b, sub, layers, pool="flatten",
                                                                              progress=False)
    for layer in layers:
        ref = S.cka_study(fa[layer], fb[layer], batch_size=64)
        assert table.set_index("layer_a").loc[layer, "value"] == pytest.approx(ref, rel=1e-5)
    assert (table.n_batches == 2).all() and list(table.layer_a) == list(table.layer_b)
    full = S.cka_study_matrix(a, a, data, layers, pairs="all", seed=5)
    assert len(full) == 9
    diag = full[full.layer_a == full.layer_b]
    np.testing.assert_allclose(diag.value, 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 4"):
        S.cka_study_matrix(a, b, data, layers, batch_size=2)
    with pytest.raises(ValueError, match="pairs must be 'diagonal' or 'all'"):
        S.cka_study_matrix(a, b, data, layers, pairs="upper")


def test_study_measures_are_in_the_table():
    table = S.measures().set_index("measure")
    assert table.loc["cca_study", "input"] == "activations" and table.loc["cca_pooled", "pool"] == "avg"
    assert table.loc["cka_study", "pool"] == "flatten"


# --- WT–ST hybrids -------------------------------------------------------------------------
def _pretrained_like(arch: str, size: int) -> torch.nn.Module:
    """A model whose every parameter (norms included) differs from a fresh init, standing in
    for ImageNet weights: a reset norm layer is then visible."""
    model = M.create(arch, num_classes=3, image_size=size, seed=0)
    g = torch.Generator().manual_seed(9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _group(name: str, groups) -> int:
    for i, g in enumerate(groups):
        if M.under(name, g):
            return i - 1
    return len(groups) - 1


@pytest.mark.parametrize("arch,size", [("resnet18", 32), ("deit_small", 32), ("swin_t", 64)])
def test_st_tensors_are_identical_across_hybrid_levels(arch, size):
    a = M.spec(arch)
    wt = _pretrained_like(arch, size)
    groups = a.st_groups or M.st_groups(a)
    full = M.reinit(copy.deepcopy(wt), "st", seed=4).state_dict()
    ref = wt.state_dict()
    for level in range(-2, len(groups) - 1):
        hybrid = M.reinit(copy.deepcopy(wt), "st", up_to=level, seed=4).state_dict()
        for name, _ in wt.named_parameters():
            if M.under(name, a.head):
                continue
            kept = _group(name, groups) <= level
            want = ref[name] if kept else full[name]
            assert torch.equal(hybrid[name], want), (arch, level, name, "kept" if kept else "st")


def test_vit_hybrid_keeps_exactly_the_blocks_the_spec_says():
    """DeiT-S, spec §C.1: L = −2 is full ST (patch embedding included); block i keeps its
    weights iff i ≤ L; the final LayerNorm is reset unless L = 12 (all WT)."""
    wt = _pretrained_like("deit_small", 32)
    ref = wt.state_dict()
    for level in (-2, -1, 0, 5, 11, 12):
        st = M.reinit(copy.deepcopy(wt), "st", up_to=level, seed=1).state_dict()
        def same(prefix, st=st):
            return all(torch.equal(st[k], ref[k]) for k in ref if M.under(k, prefix))

        kept_blocks = {i for i in range(12) if same(f"blocks.{i}")}
        assert kept_blocks == set(range(min(level, 11) + 1)), level
        assert same("patch_embed") == (level >= -1)
        assert same("cls_token") == (level >= -1) and same("pos_embed") == (level >= -1)
        assert same("norm") == (level == 12)
    with pytest.raises(ValueError, match="up_to must be in -2..12 for deit_small"):
        M.reinit(copy.deepcopy(wt), "st", up_to=13)


def test_swin_patch_merging_goes_with_its_stages_last_block():
    wt = _pretrained_like("swin_t", 64)
    ref = wt.state_dict()
    # blocks 0,1 = stage 1 (features.1.0, features.1.1); its merging layer is features.2
    for level, merging_kept in ((0, False), (1, True)):
        st = M.reinit(copy.deepcopy(wt), "st", up_to=level, seed=1).state_dict()
        kept = all(torch.equal(st[k], ref[k]) for k in ref if M.under(k, "features.2") and k.endswith("weight"))
        assert kept == merging_kept


# --- layers without parameters stand for the modules producing them ---------------------------
def test_relu_layer_means_conv1_and_bn1_for_weight_analyses():
    a, _ = _pair_of_models()
    start = {k: v.clone() for k, v in a.state_dict().items()}
    with torch.no_grad():
        a.conv1.weight.add_(1.0)
    table = S.l2_distance(start, a, ["relu", "layer1"])
    assert table.set_index("layer").loc["relu", "l2"] > 0 and table.set_index("layer").loc["layer1", "l2"] == 0
    assert table.set_index("layer").loc["relu", "tensors"] == 1  # conv1.weight; bn1 is a norm
    assert M.spec("resnet50").params_of("relu") == ("conv1", "bn1")
    assert M.spec("resnet50").params_of("layer1") == ("layer1",)


def test_feature_reuse_layer_lists_are_the_studys_target_modules():
    """§C.5.2: ResNet conv1 + the 16 bottlenecks + fc; ViT (DeiT) patch_embed + each block's
    attention and MLP branch (24) + fc; Swin patch_embed + each block's attn and mlp + fc.
    Layer 0 of a ResNet is conv1's own output (before BN), and resetting it (§C.5.3) resets
    conv1 only — bn1 stays fine-tuned."""
    r50 = M.spec("resnet50").layer_list("block")
    assert r50[0] == "conv1" and r50[-1] == "fc" and len(r50) == 18 and r50[1] == "layer1.0" and r50[16] == "layer4.2"
    deit = M.spec("deit_small").layer_list("block")
    assert deit[:3] == ("patch_embed", "blocks.0.attn", "blocks.0.mlp") and len(deit) == 26 and deit[-1] == "head"
    swin = M.spec("swin_t").layer_list("block")
    assert swin[:3] == ("features.0", "features.1.0.attn", "features.1.0.mlp") and len(swin) == 26
    assert M.spec("deit_small").layer_list("residual")[1] == "blocks.0"  # the residual stream, a named option
    a, _ = _pair_of_models()
    data = D.synthetic("texture-a", "test")
    start = {k: v.clone() for k, v in a.state_dict().items()}
    with torch.no_grad():
        a.conv1.weight.mul_(0.5)
        a.bn1.weight.add_(1.0)
    seen = []
    real = a.load_state_dict

    def recording(state, *args, **kwargs):  # the real load, what it was given kept
        seen.append({k: v.clone() for k, v in state.items()})
        return real(state, *args, **kwargs)

    a.load_state_dict = recording
    table = S.layer_importance(a, start, data, layers=["conv1"])
    assert list(table.layer) == ["(none)", "conv1"]
    assert torch.equal(seen[0]["conv1.weight"], start["conv1.weight"])  # conv1 put back …
    assert torch.equal(seen[0]["bn1.weight"], a.bn1.weight)  # … bn1 left as fine-tuned
    from medtl import features

    acts = features.extract(a, data, ["conv1", "relu"], progress=False)
    assert acts["conv1"].shape == acts["relu"].shape == (len(data), 64)
    assert float(acts["relu"].min()) >= 0 and float(acts["conv1"].min()) < 0  # conv1 is read before BN and ReLU


def test_torchvision_vit_block_list_reads_the_attention_and_mlp_branches():
    """torchvision's ViT: the attention branch is read at the encoder layer's dropout (its
    input is the attention output; identity in eval), before the residual add; weight
    analyses of that layer read the attention module's parameters."""
    from torchvision.models.feature_extraction import create_feature_extractor

    spec = M.spec("vit_b_16")
    blocks = spec.layer_list("block")
    assert blocks[1:3] == ("encoder.layers.encoder_layer_0.dropout", "encoder.layers.encoder_layer_0.mlp")
    assert len(blocks) == 26 and spec.params_of(blocks[1]) == ("encoder.layers.encoder_layer_0.self_attention",)
    model = M.create("vit_b_16", num_classes=2, seed=0).eval()
    layer = model.encoder.layers.encoder_layer_3
    seen = {}
    h1 = layer.self_attention.register_forward_hook(lambda m, a, o: seen.__setitem__("attn", o[0]))
    h2 = layer.mlp.register_forward_hook(lambda m, a, o: seen.__setitem__("mlp", o))
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)  # the plain forward pass, read by hooks on the branch modules
    h1.remove()
    h2.remove()
    fx = create_feature_extractor(model, ["encoder.layers.encoder_layer_3.dropout", "encoder.layers.encoder_layer_3.mlp"])
    with torch.no_grad():
        out = fx(x)
    torch.testing.assert_close(out["encoder.layers.encoder_layer_3.dropout"], seen["attn"])
    torch.testing.assert_close(out["encoder.layers.encoder_layer_3.mlp"], seen["mlp"])


# --- the hidden-representations study (spec hidden-representations.md) ----------------------
def test_representation_study_defaults_are_the_studys():
    """§B.1: Adam at 1e-5 (README command: --l 1e-5), EarlyStopping(val_loss, patience=30)
    (v2), 5-fold CV (--k 1..5), test AUC = Keras AUC() on one-hot vs softmax = micro."""
    import inspect

    from medtl import study

    p = inspect.signature(study.representation_study).parameters
    assert p["lr"].default == 1e-5 and p["patience"].default == 30
    assert p["fold"].default == 1 and p["auc"].default == "micro"
    assert study.representations.STUDY_FOLDS == 5
    nb = E.notebook_parameters("experiments/similarity")
    assert float(nb["lr"]) == 1e-5 and nb["fold"] == "1" and nb["auc"].strip("\"'") == "micro"  # source text


def _digests(data):
    import hashlib

    return {hashlib.sha256(x.numpy().tobytes()).hexdigest() for x in data.images}


def test_study_folds_are_the_studys_five_fold_cross_validation():
    """Folds 1..5 hold out disjoint test parts covering 80 % of the pooled set (val 4 %, test
    16 %, §B.2 v2), never overlapping their own train part; subsets are stratified and drawn
    from the fold's own parts."""
    from medtl import study

    pooled = D.concat([D.get("texture-b", part) for part in ("train", "val", "test")])
    assert len(_digests(pooled)) == len(pooled) == 1000  # every image distinct: digests identify them
    held = []
    for fold in range(1, 6):
        train, val, test = study.study_folds("texture-b", fold=fold)
        assert (len(train), len(val), len(test)) == (800, 40, 160)
        t, v, h = _digests(train), _digests(val), _digests(test)
        assert not (t & h) and not (t & v) and not (v & h)
        assert np.bincount(test.labels.numpy()).tolist() == [40] * 4  # stratified
        held.append(v | h)
    assert len(set().union(*held)) == 1000 and sum(map(len, held)) == 1000  # the 5 held-out folds partition the set
    train, val, test = study.study_folds("texture-b", fold=3, n_train=80, n_stimulus=40, seed=1)
    full = study.study_folds("texture-b", fold=3)
    assert _digests(train) <= _digests(full[0]) and _digests(test) <= _digests(full[2])
    assert np.bincount(train.labels.numpy()).tolist() == [20] * 4 and len(test) == 40
    official = study.study_folds("texture-b", fold=None, n_train=80)
    assert _digests(official[2]) == _digests(D.get("texture-b", "test"))
    for bad in (0, 6, True, "1"):
        with pytest.raises(ValueError, match="fold must be 1..5"):
            study.study_folds("texture-b", fold=bad)


def test_feature_reuse_judges_on_each_targets_metric():
    """§C.4: APTOS (ordinal DR grade) quadratic κ, ISIC (multi-class) balanced accuracy,
    DDSM / PCam (binary) ROC-AUC, CheXpert (multi-label) mean ROC-AUC; the k-NN probe
    reports each of them, equal to medtl.evaluate's on the probe's own scores."""
    from medtl import evaluate as ev
    from medtl import study

    assert study.STUDY_C_FIT["val_every"] == 0.5  # §C.3: validation every 0.5 epoch
    assert study.feature_reuse_target_metric("ordinal-regression") == "kappa"
    assert study.feature_reuse_target_metric("multi-class") == "balanced_accuracy"
    assert study.feature_reuse_target_metric("binary-class") == "auc"
    assert study.feature_reuse_target_metric("multi-label, binary-class") == "auc"
    with pytest.raises(ValueError, match="no target metric for task 'segmentation'"):
        study.feature_reuse_target_metric("segmentation")
    with pytest.raises(ValueError, match="metric must be one of"):
        study.feature_reuse("a", "texture-b", metric="f1")
    rng = np.random.default_rng(0)
    ytr, yte = rng.integers(0, 4, 200), rng.integers(0, 4, 80)
    ftr = rng.normal(size=(200, 16)) + np.eye(4)[ytr] @ rng.normal(size=(4, 16))
    fte = rng.normal(size=(80, 16)) + np.eye(4)[yte] @ rng.normal(size=(4, 16))
    r = S.knn_eval(torch.tensor(ftr), torch.tensor(ytr), torch.tensor(fte), yte, "ordinal-regression", k=20)
    for name in ("kappa", "balanced_accuracy", "auc_ovo", "auc"):
        assert r[name] == pytest.approx(getattr(ev, name)(yte, r["scores"], "ordinal-regression"))


def test_each_studys_pipeline_trains_with_its_own_augmentation_by_default():
    """Item 1 of the faithfulness audit: S004 feature reuse, S002 hidden representations
    (no flip on the chest X-ray target) and S001 truncated transfer train with their
    study's augmentation unless told otherwise."""
    import inspect

    from medtl import study

    assert study.STUDY_C_FIT["augment"] == "feature-reuse"
    assert inspect.signature(study.feature_reuse).parameters["augment"].default == "feature-reuse"
    assert study.TTL_RECIPE["augment"] == "truncated-transfer"
    assert inspect.signature(study.representation_study).parameters["augment"].default == "hidden-representations"
    assert study.study_augment("pneumoniamnist") == "hidden-representations-chest"
    assert study.study_augment("chestmnist_64") == "hidden-representations-chest"
    assert study.study_augment("bloodmnist") == "hidden-representations"
    assert study.study_augment("pneumoniamnist", None) is None  # a named deviation stays as given
    for name in ("feature-reuse", "hidden-representations", "hidden-representations-chest", "truncated-transfer"):
        assert name in D.RECIPES
    for nb, value in (("experiments/feature_reuse", "feature-reuse"), ("experiments/similarity", "hidden-representations")):
        assert E.notebook_parameters(nb)["augment"].strip("\"'") == value


# --- the per-study faithfulness tables (docs/faithfulness.md) ----------------------------------
def test_faithfulness_tables_are_generated_from_the_code_and_current():
    """docs/ holds one table per study, generated from medtl.study.PROTOCOL: the file is
    what the code gives today, every study has rows, every deviation says why."""
    from pathlib import Path

    from medtl import study

    doc = Path(__file__).resolve().parents[1] / "docs" / "faithfulness.md"
    assert doc.read_text() == study.protocol_markdown() + "\n", \
        "docs/faithfulness.md is stale: python -c 'from medtl import study; print(study.protocol_markdown())' " \
        "> docs/faithfulness.md"
    table = study.protocol_table()
    assert set(table.study) == set(study.STUDIES)
    assert (table.groupby("study").size() >= 5).all()
    dev = table[table.status == "deviation"]
    assert (dev.reason.str.len() > 20).all(), dev[dev.reason.str.len() <= 20].element.tolist()
    for key, title in study.STUDIES.items():
        assert f"## {title}" in doc.read_text() and f"specs/{key}.md" in doc.read_text()


def test_faithfulness_status_is_computed_from_the_code_not_declared(monkeypatch):
    """Changing a default in the code turns its row into a deviation (and without a reason
    the table shows none, which the test above refuses)."""
    from medtl import study

    row = study.PROTOCOL.get("truncated-transfer: optimiser and lr")
    assert row.faithful() and row.reason == ""
    monkeypatch.setitem(study.TTL_RECIPE, "lr", 1e-3)
    table = study.protocol_table("truncated-transfer").set_index("element")
    assert table.loc["optimiser and lr", "status"] == "deviation" and table.loc["optimiser and lr", "reason"] == ""
    assert table.loc["optimiser and lr", "medtl_value"] == "('adam', 0.001, 0.0)"
    monkeypatch.setitem(D.RECIPES, "feature-reuse", D.RECIPES["feature-reuse"].with_(vflip=0.0))
    assert not study.PROTOCOL.get("feature-reuse: train augmentation").faithful()
    with pytest.raises(ValueError, match="study must be one of"):
        study.ProtocolElement("S9", "x", "§1", 1, "nowhere", lambda: 1)
    with pytest.raises(ValueError, match="already registered"):
        study.register_element(row)


def test_feature_reuse_starts_wt_from_imagenet_weights_by_name(tmp_path, monkeypatch):
    """§C.1: WT is the ImageNet checkpoint itself; no hand-saved medtl source is needed. The
    weights come from torchvision's cache (a file this test writes in torchvision's format);
    the head is fresh and seeded; the five-run loop and the FID are the defaults, and an
    ImageNet source with fid_reference="source" stops at once, saying which images to give."""
    import importlib
    import inspect

    import torchvision

    from medtl import study

    fr = importlib.import_module("medtl.study.feature_reuse")  # the module (the package re-exports the function)

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.manual_seed(3)
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    wt = fr._source("resnet18", None, 3, seed=5)
    got = wt.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items() if not k.startswith("fc."))
    assert got["fc.weight"].shape == (3, 512) and torch.equal(got["fc.weight"],
                                                             fr._source("resnet18", None, 3, seed=5).fc.weight)
    defaults = {k: p.default for k, p in inspect.signature(study.feature_reuse).parameters.items()}
    assert defaults["runs"] == 5 and defaults["fid_model"] == "inception_v3" and defaults["fid_size"] == 299
    with pytest.raises(ValueError, match="records no training dataset .* ImageNet's validation set"):
        study.feature_reuse("resnet18", "texture-b", n_train=24, n_test=24)
    with pytest.raises(ValueError, match="neither a saved medtl source .* nor a candidate"):
        study.feature_reuse("no-such-source", "texture-b", fid_model=None)
    out = study.feature_reuse("resnet18", "texture-b", n_train=32, n_test=32, epochs=1, runs=2, fid_model=None,
                              granularity="stage", knn_k=10, augment=None)
    assert sorted(set(zip(out["aucs"].run, out["aucs"].init))) == [(r, i) for r in (0, 1) for i in ("ri", "st", "wt")]
    assert "fid" not in out["ratios"] and (out["ratios"].n_runs == 2).all()
