"""No silent wrong answers: each case here once returned a plausible but wrong result (or a
NaN without a word); each test asserts the correct value or the specific message."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_fake_medmnist

import medtl.data as D
import medtl.evaluate as E
import medtl.models as M
import medtl.similarity as S
import medtl.train as T
import medtl.transfer as TR
from medtl import results as rs


def _toy(split="train", n=None, name="shape-a"):
    return D.synthetic(name, split, n=n)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# --- 1. fit honours frozen parameters, with per-group learning rates -----------------------
def test_fit_keeps_frozen_layers_bit_identical_buffers_included():
    model = M.create("resnet18", num_classes=4, seed=0)
    M.freeze(model, ["conv1", "bn1", "layer1", "layer2"])
    before = _state(model)
    T.fit(model, _toy(n=48), _toy("val", n=24), epochs=2, batch_size=16, lr=0.05, progress=False)
    after = model.state_dict()
    frozen = [k for k in before if M.under(k, ["conv1", "bn1", "layer1", "layer2"])]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # running stats too
    assert not torch.equal(before["layer3.0.conv1.weight"], after["layer3.0.conv1.weight"])
    assert M.frozen(model) == [n for n, _ in model.named_parameters() if M.under(n, ["conv1", "bn1", "layer1",
                                                                                     "layer2"])]


def test_fit_parameter_groups_have_their_own_learning_rates():
    model = M.create("resnet18", num_classes=4, seed=0)
    groups = T.param_groups(model, 0.1, lr_groups={"head": 0.5, "layer4": 0.01})
    by_lr = {g["lr"]: len(g["params"]) for g in groups}
    assert by_lr[0.5] == 2 and by_lr[0.01] == len([n for n, _ in model.named_parameters() if n.startswith("layer4")])
    before = _state(model)
    T.fit(model, _toy(n=32), None, epochs=1, batch_size=16, momentum=0.0, lr=0.05,
          lr_groups={"body": 1e-30, "head": 0.05}, progress=False, frozen_bn="train")
    after = model.state_dict()
    assert torch.equal(before["layer2.0.conv1.weight"], after["layer2.0.conv1.weight"])  # lr 1e-30: no change
    assert not torch.equal(before["fc.weight"], after["fc.weight"])
    with pytest.raises(ValueError, match=r"lr_groups name module\(s\) \['layer9'\]"):
        T.param_groups(model, 0.1, lr_groups={"layer9": 0.1})


# --- 2. freeze -> fine-tune: the two phases -------------------------------------------------
def test_linear_probe_phase_keeps_the_body_and_its_statistics():
    model = M.create("resnet18", num_classes=4, seed=0)
    before = _state(model)
    T.fit(model, _toy(n=48), _toy("val", n=24), epochs=2, linear_probe_epochs=2, batch_size=16, lr=0.05,
          progress=False, restore_best=False)
    after = model.state_dict()
    body = [k for k in before if not k.startswith("fc.")]
    assert all(torch.equal(before[k], after[k]) for k in body)  # BN running statistics included
    assert all(p.requires_grad for p in model.parameters())


def test_fine_tune_phase_gets_a_fresh_optimiser_and_selection_ignores_probe_epochs():
    model = M.create("resnet18", num_classes=4, seed=0)
    seen = []
    r = T.fit(model, _toy(n=48), _toy("val", n=24), epochs=4, linear_probe_epochs=2, batch_size=16, lr=0.05,
              probe_lr=0.2, schedule=None, monitor="val_loss", progress=False,
              callbacks=[lambda e, row: seen.append((row["phase"], row["lr"]))])
    assert seen == [("probe", 0.2), ("probe", 0.2), ("finetune", 0.05), ("finetune", 0.05)]
    assert r.best_epoch in (3, 4)  # never a probe epoch
    assert T.fit(M.create("resnet18", num_classes=4, seed=0), _toy(n=48), _toy("val", n=24), epochs=3,
                 linear_probe_epochs=2, batch_size=16, select_phase="all", progress=False).best_epoch >= 1


# --- 3. truncate returns an independent copy -------------------------------------------------
def test_fine_tuning_a_truncated_model_leaves_its_source_unchanged():
    source = M.create("resnet18", num_classes=4, seed=0)
    before = _state(source)
    cut = M.truncate(source, 2, num_classes=4, image_size=28)
    assert cut.body[0] is not source.conv1
    assert not any(p.data_ptr() == q.data_ptr() for p in cut.parameters() for q in source.parameters())
    T.fit(cut, _toy(n=32), None, epochs=1, batch_size=16, lr=0.1, progress=False)
    assert all(torch.equal(before[k], v) for k, v in source.state_dict().items())
    assert not torch.equal(cut.body[0].weight, before["conv1.weight"])


# --- 4. resume refuses another run ----------------------------------------------------------
def _fit(tmp, model=None, **kw):
    args = {"epochs": 2, "batch_size": 16, "lr": 0.05, "progress": False, "seed": 0, **kw}
    data = kw.pop("data", None)
    args.pop("data", None)
    return T.fit(model or M.create("resnet18", num_classes=4, seed=0), data or _toy(n=32), None,
                 checkpoint_dir=tmp, **args)


@pytest.mark.parametrize("change,field", [
    ({"model": "shufflenet"}, "arch"),
    ({"optimizer": "adam"}, "optimizer"),
    ({"data": "other"}, "train"),
    ({"seed": 1}, "seed"),
    ({"lr": 0.01}, "lr"),
])
def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, change, field):
    _fit(tmp_path)
    kw = dict(change)
    if kw.get("model") == "shufflenet":
        kw["model"] = M.create("shufflenet_v2_x0_5", num_classes=4, seed=0)
    if kw.get("data") == "other":
        kw["data"] = _toy(n=32, name="texture-a")
    with pytest.raises(ValueError, match=rf"checkpoint_dir .* differs from this one in \[.*'{field}'.*\]"):
        _fit(tmp_path, **kw)
    assert _fit(tmp_path).resumed_from == 3  # the same run is recognised (finished: nothing left)


def test_resume_from_a_corrupt_checkpoint_names_the_file(tmp_path):
    (tmp_path / "last.pt").write_bytes(b"torn")
    with pytest.raises(ValueError, match=f"cannot resume from {tmp_path / 'last.pt'}"):
        _fit(tmp_path)


# --- 5. a NaN monitor ----------------------------------------------------------------------
def test_nan_monitor_warns_and_selects_by_val_loss():
    train = _toy(n=48)
    val = _toy("val", n=40)
    val = val[np.flatnonzero(val.labels.numpy() != 3)]  # class 3 absent: AUC undefined
    with pytest.warns(UserWarning, match="monitored val_auc is NaN at epoch 1 .* selecting by val_loss"):
        r = T.fit(M.create("resnet18", num_classes=4, seed=0), train, val, epochs=3, batch_size=16, lr=0.05,
                  schedule=None, progress=False)
    h = r.history
    assert r.monitor == "val_loss" and r.best_epoch == int(h.loc[h.val_loss.idxmin(), "epoch"])
    with pytest.raises(ValueError, match="patience must be None .* or an integer >= 1, got 0"):
        T.fit(M.create("resnet18", num_classes=4), train, val, patience=0, progress=False)


# --- 6. the target among its own sources, by metadata ----------------------------------------
def test_a_source_trained_on_the_target_is_excluded_by_its_metadata(tmp_path):
    target = _toy(n=60)
    sources = {}
    for i, (name, data) in enumerate((("blood", "shape-a"), ("other1", "texture-a"), ("other2", "intensity"))):
        model = M.create("resnet18", num_classes=4, seed=i)
        M.save_source(model, name, root=tmp_path, source_data=f"{data}/train", source_datasets=[data])
        sources[name] = M.load_source(name, root=tmp_path)
    table = TR.score(sources, target, metrics=["ncti", "lp_fu", "logme"], target_name="shape-a", progress=False)
    flags = table.groupby("source").self_source.first()
    assert flags.to_dict() == {"blood": True, "other1": False, "other2": False}
    wide = table.pivot(index="source", columns="metric", values="value")
    assert np.isnan(wide.loc["blood", "ncti"]) and np.isnan(wide.loc["blood", "lp_fu"])
    assert set(wide.loc[["other1", "other2"], "ncti"]) == {0.0, 1.0} or wide.loc[["other1", "other2"], "ncti"].notna().all()
    gt = pd.DataFrame({"shape-a": {"blood": 0.99, "other1": 0.7, "other2": 0.8}})
    corr = TR.correlate(table, gt)
    assert set(corr.n) == {2}  # the target-as-source row is left out of the evaluation
    with pytest.warns(UserWarning, match="source 'shape' looks like the target 'shape-a'"):
        TR.score({"shape": M.create("resnet18", num_classes=4, seed=5), "x": M.create("resnet18", num_classes=4)},
                 target, metrics=["logme"], target_name="shape-a", progress=False)


# --- 7. the CCA family on rank-deficient activations -----------------------------------------
def test_cca_does_not_invent_correlation_from_a_duplicated_column():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, 5, generator=g, dtype=torch.float64)
    y = torch.randn(4000, 5, generator=g, dtype=torch.float64)
    dup = torch.cat([x, x[:, :1]], 1)
    rho = S.cca(dup, y)
    assert len(rho) == 5 and float(rho.max()) < 0.1  # independent data: near zero, no spurious 0.33
    assert torch.allclose(rho, S.cca(x, y), atol=1e-10)
    with pytest.warns(UserWarning, match="dropping 1 of 6 constant \\(dead\\) units"):
        S.cca(torch.cat([x, torch.ones(4000, 1, dtype=torch.float64)], 1), y)
    with pytest.raises(ValueError, match="X is constant"):
        S.svcca(torch.ones(100, 4), y[:100])
    with pytest.warns(UserWarning, match=r"N=500 datapoints in D=250 dimensions.*use at least 2500"):
        S.mean_cca(torch.randn(500, 250), torch.randn(500, 250))


# --- 8. constant features ---------------------------------------------------------------------
@pytest.mark.parametrize("fn", [lambda x, y: S.cka(x, y), lambda x, y: S.cka(x, y, kernel="rbf")])
def test_cka_on_constant_features_is_an_error(fn):
    with pytest.raises(ValueError, match="X is constant"):
        fn(np.ones((20, 4)), np.random.default_rng(0).normal(size=(20, 3)))


@pytest.mark.parametrize("metric", [TR.parc, TR.sfda, TR.logme, TR.hscore, TR.nleep, TR.lp])
def test_transfer_metrics_on_constant_features_are_an_error(metric):
    with pytest.raises(ValueError, match="features are constant"):
        metric(np.ones((30, 5)), np.arange(30) % 3)


# --- 9. PWCCA as google/svcca computes it; RBF bandwidth by numpy's median --------------------
def _svcca_pwcca_reference(x, y):
    """google/svcca's compute_pwcca, derived step by step with numpy (acts are neurons ×
    datapoints): scaled covariances, pinv square roots, full SVD, un-whitened directions
    with the mean added back, QR, weights from the side with fewer neurons."""
    a1, a2 = x.T, y.T
    d1 = len(a1)
    cov = np.cov(a1, a2)
    sxx, sxy, syy = cov[:d1, :d1], cov[:d1, d1:], cov[d1:, d1:]
    xmax, ymax = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / xmax, syy / ymax, sxy / np.sqrt(xmax * ymax)

    def sqrt_pinv(m):
        w, v = np.linalg.eigh(np.linalg.pinv(m))
        return v @ np.diag(np.sqrt(w)) @ v.T

    u, s, _ = np.linalg.svd(sqrt_pinv(sxx) @ sxy @ sqrt_pinv(syy))
    means = a1.mean(1, keepdims=True)
    dirns = u.T @ (a1 - means) + means
    q, _ = np.linalg.qr(dirns.T)
    weights = np.abs(q.T @ a1.T).sum(1)
    weights /= weights.sum()
    return float((weights * np.abs(s)).sum())


def test_pwcca_svcca_variant_equals_the_reference_weighting():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6)) + 0.5
    y = np.c_[x[:, :4] @ rng.normal(size=(4, 4)), rng.normal(size=(300, 4))] + rng.normal(size=(300, 8)) * 0.7
    assert abs(S.pwcca(x, y) - _svcca_pwcca_reference(x, y)) < 1e-6
    paper = S.pwcca(x, y, variant="paper")
    assert abs(paper - S.pwcca(x, y)) > 1e-4  # two different weightings, both documented
    with pytest.raises(ValueError, match="variant must be 'svcca' or 'paper'"):
        S.pwcca(x, y, variant="google")


def test_rbf_bandwidth_uses_numpys_median():
    x = np.random.default_rng(1).normal(size=(6, 3))  # 36 distances: an even count
    sq = ((x[:, None] - x[None]) ** 2).sum(-1)
    want = np.exp(-sq / (2 * np.median(sq)))
    assert np.allclose(S.gram_rbf(x).numpy(), want, atol=1e-12)


# --- 10. data ---------------------------------------------------------------------------------
def test_float_labels_in_an_npz_are_refused(tmp_path):
    file = write_fake_medmnist(tmp_path, "breastmnist", n={"train": 10, "val": 4, "test": 4})
    arrays = dict(np.load(file))
    arrays["train_labels"] = arrays["train_labels"].astype(np.float32) + 0.4
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match="train_labels has non-integer values"):
        D.load("breastmnist", root=tmp_path, verify=False)


def test_verify_rehashes_an_in_place_corruption(tmp_path, monkeypatch):
    file = write_fake_medmnist(tmp_path, "breastmnist", n={"train": 4, "val": 2, "test": 2})
    from medtl.data import catalog

    digest = catalog._hash_file(file)
    monkeypatch.setattr(catalog, "md5", lambda flag, size=28: digest)
    assert D.verify("breastmnist", root=tmp_path) == file
    st = file.stat()
    with open(file, "r+b") as fh:  # same size, same mtime: only re-hashing can tell
        fh.seek(100)
        fh.write(b"\x00" * 8)
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns))
    with pytest.raises(ValueError, match="MD5 mismatch"):
        D.verify("breastmnist", root=tmp_path)


def test_user_data_classes_are_real(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * i).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "empty").mkdir()
    with pytest.warns(UserWarning, match=r"ignoring sub-folder\(s\) \['empty'\]"):
        ds = D.from_folder(tmp_path / "imgs", size=8, progress=False)
    assert ds.label_names == ["a", "b"] and ds.n_classes == 2
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/a/0.png 0\nimgs/b/0.png 5\n")
    with pytest.raises(ValueError, match=r"classes \[1, 2, 3, 4\] have no image"):
        D.from_list(lst, size=8, progress=False)


def test_loader_and_models_refuse_bad_sizes():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 2.7"):
        D.loader(_toy(n=8), batch_size=2.7)
    with pytest.raises(ValueError, match="image_size must be a positive integer or"):
        D.loader(_toy(n=8), image_size=0)
    model = M.create("vgg11", num_classes=4)  # standard stem: 32 px at least
    with pytest.raises(ValueError, match="vgg11 with the imagenet stem needs training images of at least 32 px, got 28"):
        T.fit(model, _toy(n=8), epochs=1, progress=False)
    import medtl.features as F

    with pytest.raises(ValueError, match="needs input images of at least 32 px, got 28"):
        F.extract(model, _toy(n=8), "penultimate", progress=False)


# --- 11. evaluation ---------------------------------------------------------------------------
def test_evaluation_refuses_ambiguous_inputs():
    y = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"binary task needs .* N×2 .*got \(4,\) and \(4, 3\)"):
        E.auc(y, np.random.default_rng(0).random((4, 3)), "binary-class")
    with pytest.raises(ValueError, match="y_true must hold class indices"):
        E.auc(np.array([0, 0.5, 1, 1]), np.random.default_rng(0).random((4, 2)), "binary-class")
    with pytest.raises(ValueError, match="empty"):
        E.acc(np.array([]), np.zeros((0, 2)), "multi-class")
    with pytest.raises(ValueError, match="n_boot must be an integer >= 2"):
        E.bootstrap_ci(y, np.random.default_rng(0).random(4), "binary-class", n_boot=1)
    with pytest.raises(ValueError, match="n_permutations must be an integer >= 2"):
        S.permutation_test(S.cka, np.random.default_rng(0).normal(size=(10, 2)),
                           np.random.default_rng(1).normal(size=(10, 2)), n_permutations=0)
    multi = D.ImageSet(torch.zeros(4, 1, 28, 28, dtype=torch.uint8), torch.tensor([[0, 1], [1, 0], [1, 1], [0, 0]]),
                       D.MULTI_LABEL, ["a", "b"])
    with pytest.raises(ValueError, match="task 'multi-class' does not fit evaluation data"):
        T.evaluate(M.create("resnet18", num_classes=2), multi, task="multi-class")


# --- 12. runs and sweeps ----------------------------------------------------------------------
def test_record_never_demotes_a_finished_run_and_files_follow_the_umask(tmp_path, monkeypatch):
    rs.record(pd.DataFrame({"x": [1]}), tmp_path / "run", "first", parameters={"a": 1})
    mode = (tmp_path / "run" / "first.parquet").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    with pytest.raises(OSError, match="could not write table 'second' .* the run's record is unchanged"):
        rs.record(pd.DataFrame({"x": [2]}), tmp_path / "run", "second", parameters={"a": 1})
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "finished" and info["tables"] == ["first"]


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_results_load_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        rs.load(tmp_path / "nope")
    rs.record(pd.DataFrame({"x": [1]}), tmp_path / "a", "scores")
    rs.record(pd.DataFrame({"x": [2]}), tmp_path / "b", "scores")
    with pytest.raises(ValueError, match="records a table 'scorez'; tables there: scores"):
        rs.load(tmp_path, "scorez")
    (tmp_path / "b" / "scores.parquet").write_bytes(b"torn")
    with pytest.warns(UserWarning, match=r"b \(unreadable scores.parquet"):
        assert rs.load(tmp_path, "scores").x.tolist() == [1]


def test_malformed_sweep_yaml_is_a_clear_error(tmp_path):
    from medtl import experiments as X

    bad = tmp_path / "grid.yaml"
    bad.write_text("notebook: x\ngrid:\n  lr: [1, 2\n")
    with pytest.raises(ValueError, match=r"sweep file .*grid.yaml is not valid YAML at line \d+"):
        X.load_grid(bad)
    bad.write_text("notebook: x\n")
    with pytest.raises(ValueError, match="needs a 'grid:' mapping"):
        X.load_grid(bad)


# --- 13. GPU settings (their CPU-observable part) ---------------------------------------------
def test_determinism_switch_and_fu_without_cudnn_restore_the_backend_flags(monkeypatch):
    from medtl import runtime

    cudnn = torch.backends.cudnn
    saved = (cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32,
             cudnn.enabled)
    with runtime.deterministic():
        assert cudnn.deterministic and not cudnn.benchmark
        assert not torch.backends.cuda.matmul.allow_tf32 and not cudnn.allow_tf32
    with runtime.cudnn_disabled():
        assert not cudnn.enabled
    assert (cudnn.deterministic, cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32,
            cudnn.enabled) == saved
    seen = []
    original = runtime.cudnn_disabled

    def spy():
        seen.append(1)
        return original()

    monkeypatch.setattr(runtime, "cudnn_disabled", spy)
    TR.fu(M.create("resnet18", num_classes=4, seed=0), _toy(n=24))
    assert seen == [1]  # FU runs with cuDNN off, as the study


def test_selection_losses_are_computed_without_autocast(monkeypatch):
    calls = []
    import medtl.train._evaluation as ev_module

    real = ev_module.predict

    def spy(*args, **kwargs):
        calls.append(kwargs.get("amp"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ev_module, "predict", spy)
    T.fit(M.create("resnet18", num_classes=4, seed=0), _toy(n=16), _toy("val", n=16), epochs=1, batch_size=16,
          amp=True, progress=False)
    assert calls and all(a is False for a in calls)
