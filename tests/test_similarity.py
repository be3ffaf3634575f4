import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import need_file
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

import medtl.data as D
import medtl.models as M
import medtl.similarity as S
import medtl.train as T


def _xy(n=50, d1=6, d2=5, seed=0, noise=0.5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d1, generator=g, dtype=torch.float64)
    y = x[:, :d2] @ torch.randn(d2, d2, generator=g, dtype=torch.float64) + noise * torch.randn(
        n, d2, generator=g, dtype=torch.float64)
    return x, y


def _orthogonal(d, seed):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q


# --- invariances (property-based) ----------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100), debiased=st.booleans())
def test_cka_invariant_to_orthogonal_maps_and_isotropic_scaling(seed, scale, debiased):
    x, y = _xy(40, 6, 5, seed)
    base = S.cka(x, y, debiased=debiased)
    assert math.isclose(S.cka(x @ _orthogonal(6, seed + 1) * scale, y, debiased=debiased), base, rel_tol=1e-9,
                        abs_tol=1e-12)
    assert math.isclose(S.cka(x, y, kernel="rbf"), S.cka(x @ _orthogonal(6, seed + 2) * scale, y, kernel="rbf"),
                        rel_tol=1e-9)


def test_cka_not_invariant_to_general_linear_maps():
    x, y = _xy(60, 6, 5, 1)
    a = torch.diag(torch.tensor([50.0, 1, 1, 1, 0.02, 1], dtype=torch.float64))
    assert abs(S.cka(x @ a, y) - S.cka(x, y)) > 0.05


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_cca_and_svcca_invariant_to_invertible_linear_maps(seed):
    x, y = _xy(80, 5, 4, seed)
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(5, 5, generator=g, dtype=torch.float64) + 3 * torch.eye(5, dtype=torch.float64)
    assert torch.allclose(S.cca(x @ a, y), S.cca(x, y), atol=1e-8)
    assert math.isclose(S.svcca(x @ a, y, keep=5), S.svcca(x, y, keep=5), rel_tol=1e-8)
    assert math.isclose(S.pwcca(x, y), S.pwcca(x, y), rel_tol=1e-12)


def test_every_measure_of_x_with_itself_is_maximal():
    x, _ = _xy(60, 6, 5, 3)
    for value in (S.cka(x, x), S.cka(x, x, debiased=True), S.cka(x, x, kernel="rbf"), S.minibatch_cka(x, x, 16),
                  S.mean_cca(x, x), S.svcca(x, x), S.pwcca(x, x), float(S.cca_google(x, x).mean())):
        assert math.isclose(value, 1.0, rel_tol=1e-6)


# --- independent checks --------------------------------------------------------------------
def test_linear_cka_gram_form_equals_feature_space_form():
    x, y = _xy(30, 7, 4, 5)
    for debiased in (False, True):
        assert math.isclose(S.cka(x, y, debiased=debiased), S.cka_gram(x @ x.T, y @ y.T, debiased), rel_tol=1e-10)
    wide = torch.randn(10, 40, dtype=torch.float64)  # D > 2N takes the Gram path
    assert math.isclose(S.cka(wide, wide[:, :30]), S.cka_gram(wide @ wide.T, wide[:, :30] @ wide[:, :30].T),
                        rel_tol=1e-10)


def _hsic_u_statistic(k, l):  # noqa: E741
    """Song et al.'s unbiased HSIC as the explicit U-statistic over distinct 4-tuples."""
    n = len(k)
    total = 0.0
    for i, j, q, r in itertools.permutations(range(n), 4):
        h = 0.0
        for t, u, v, w in itertools.permutations((i, j, q, r)):
            h += k[t, u] * l[t, u] + k[t, u] * l[v, w] - 2 * k[t, u] * l[t, v]
        total += h / 24
    return total / math.perm(n, 4)


def test_debiased_cka_equals_direct_u_statistics():
    x, y = _xy(7, 3, 2, 8)
    k, l = (x @ x.T).numpy(), (y @ y.T).numpy()  # noqa: E741
    hkl, hkk, hll = _hsic_u_statistic(k, l), _hsic_u_statistic(k, k), _hsic_u_statistic(l, l)
    assert math.isclose(float(S.hsic_unbiased(torch.as_tensor(k), torch.as_tensor(l))), hkl, rel_tol=1e-9)
    assert math.isclose(S.cka(x, y, debiased=True), hkl / math.sqrt(hkk * hll), rel_tol=1e-9)


def test_minibatch_cka_one_batch_equals_debiased_and_converges():
    x, y = _xy(2000, 8, 6, 2, noise=2.0)
    assert math.isclose(S.minibatch_cka(x[:100], y[:100], batch_size=100), S.cka(x[:100], y[:100], debiased=True),
                        rel_tol=1e-9)
    full = S.cka(x, y)
    errs = [abs(S.minibatch_cka(x, y, batch_size=b) - full) for b in (8, 50, 500)]
    assert errs[2] < errs[0] and errs[2] < 0.02
    streamed = S.minibatch_cka((x[i:i + 50], y[i:i + 50]) for i in range(0, 2000, 50))
    assert math.isclose(streamed, S.minibatch_cka(x, y, batch_size=50), rel_tol=1e-12)
    avg = S.minibatch_cka(x, y, batch_size=64, average="cka")
    assert math.isclose(avg, np.mean([S.cka(x[i:i + 64], y[i:i + 64], debiased=True)
                                      for i in range(0, 2000, 64) if len(x[i:i + 64]) >= 4]), rel_tol=1e-9)


def test_cca_svd_equals_qr():
    x, y = _xy(100, 6, 4, 4)
    assert torch.allclose(S.cca(x, y, method="qr"), S.cca(x, y, method="svd"), atol=1e-9)
    assert torch.allclose(S.cca_google(x, y, epsilon=0.0)[:4], S.cca(x, y), atol=1e-6)
    rho = S.cca(x, y)
    assert len(rho) == 4 and bool((rho[:-1] >= rho[1:]).all())


def _cca_by_svd_bases(x, y):
    """CCA as the cosines of the principal angles between orthonormal bases of the centred
    columns (numpy's SVD, independent of medtl's code)."""
    bases = [np.linalg.svd(np.asarray(a) - np.asarray(a).mean(0), full_matrices=False)[0] for a in (x, y)]
    return np.linalg.svd(bases[0].T @ bases[1], compute_uv=False)


@pytest.mark.parametrize("case", ["independent", "related", "wide"])
def test_cca_through_the_covariances_equals_principal_angles(case):
    """The default path whitens Σxy with Cholesky factors where the covariances allow; its
    correlations equal the principal-angle cosines of SVD bases."""
    rng = np.random.default_rng(len(case))
    x = rng.normal(size=(600, 24))
    y = {"independent": rng.normal(size=(600, 10)),
         "related": x[:, :8] @ rng.normal(size=(8, 10)) + 0.3 * rng.normal(size=(600, 10)),
         "wide": np.maximum(x @ rng.normal(size=(24, 40)), 0) + 0.1 * rng.normal(size=(600, 40))}[case]
    rho = S.cca(x, y).numpy()
    assert rho.shape == (min(x.shape[1], y.shape[1]),)
    np.testing.assert_allclose(rho, _cca_by_svd_bases(x, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("collinear", [False, True], ids=["cholesky-path", "svd-path"])
def test_cca_ignores_each_units_scale(collinear):
    """Units on scales 1e-6 … 1e6 (features in different units) give the same correlations
    on both paths; a near-duplicate unit (ill-conditioned covariance, the SVD path) is still
    counted once."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(400, 12)), rng.normal(size=(400, 6))
    y[:, 0] += x[:, 0]
    if collinear:
        x = np.c_[x, x[:, 1] + 1e-11 * rng.normal(size=400)]
    scaled = x * np.logspace(-6, 6, x.shape[1])
    rho = S.cca(scaled, y)
    assert len(rho) == 6
    np.testing.assert_allclose(rho.numpy(), S.cca(x, y).numpy(), rtol=1e-7, atol=1e-9)
    assert rho[0] > 0.6 and rho[1] < 0.3


def test_spatial_datapoints_share_channels_and_rows():
    a = torch.randn(3, 16, 5, 5)
    pa, pb = S.as_datapoints(a, a * 2, mode="spatial", n_channels=8, max_points=40, seed=1)
    assert pa.shape == (40, 8) and torch.allclose(pb, pa * 2)
    assert S.as_datapoints(a, mode="pool").shape == (3, 16)


def test_permutation_null_calibrates():
    x, y = _xy(200, 4, 4, 1, noise=0.1)
    r = S.permutation_test(S.cka, x, y, n_permutations=30)
    assert r["value"] > r["null_mean"] + 5 * r["null_std"] and r["p_value"] == 1 / 31
    noise = torch.randn(200, 4, dtype=torch.float64)
    assert S.permutation_test(S.cka, x, noise, n_permutations=30)["p_value"] > 0.05


def test_measure_errors():
    x, y = _xy(3, 4, 4)
    with pytest.raises(ValueError, match="debiased HSIC/CKA needs at least 4 samples, got 3"):
        S.cka(x, y, debiased=True)
    with pytest.raises(ValueError, match="minibatch CKA needs at least 4 samples, got 3"):
        S.minibatch_cka(x, y, batch_size=4)
    x, y = _xy(10, 20, 4)
    with pytest.raises(ValueError, match=r"CCA needs more samples than dimensions \(N=10, D1=20, D2=4\)"):
        S.cca(x, y)
    assert len(S.cca(x, y, epsilon=1e-3)) == 4  # regularised CCA is allowed
    for value in (float("nan"), float("inf"), -float("inf")):  # each alone, in a row of finite values
        bad = x.clone()
        bad[3, 2] = value
        with pytest.raises(ValueError, match="X contains NaN or inf activations"):
            S.cka(bad, y)
        with pytest.raises(ValueError, match="Y contains NaN or inf activations"):
            S.mean_cca(y, bad.numpy()[:, :4], epsilon=1e-3)
    with pytest.raises(ValueError, match="same number of rows"):
        S.cka(x, y[:5])
    with pytest.raises(ValueError, match="must be N×D"):
        S.cka(torch.randn(4, 2, 3, 3), torch.randn(4, 2))


# --- predictions and weights ---------------------------------------------------------------
def test_prediction_similarity_and_kappa():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    a = np.where(rng.random(200) < 0.8, y, (y + 1) % 3)
    b = np.where(rng.random(200) < 0.6, y, (y + 2) % 3)
    r = S.prediction_similarity(y, a, b)
    ea, eb = a != y, b != y
    assert math.isclose(r["p_obs"], np.mean(ea == eb))
    assert math.isclose(r["p_ind"], r["acc_a"] * r["acc_b"] + (1 - r["acc_a"]) * (1 - r["acc_b"]))
    assert math.isclose(r["kappa"], cohen_kappa_score(ea, eb), rel_tol=1e-9)
    assert math.isclose(r["p_ind_study"], r["acc_a"] ** 2 + (1 - r["acc_a"]) ** 2)
    scores = np.eye(3)[a]  # score matrices give the same answer
    assert S.prediction_similarity(y, scores, b) == r
    assert S.hard_predictions(np.array([0.2, 0.7])).tolist() == [0, 1]


def test_filter_similarity_and_l2_per_layer():
    a = M.create("resnet18", num_classes=3, seed=0)
    b = M.create("resnet18", num_classes=3, seed=0)
    assert S.filter_similarity(a, b)["mean_cosine"] == pytest.approx(1.0)
    with torch.no_grad():
        b.layer2[0].conv1.weight.add_(1.0)
    table = S.l2_distance(a, b, ["conv1", "layer1", "layer2"]).set_index("layer")
    assert table.loc["conv1", "l2"] == 0 and table.loc["layer1", "l2"] == 0
    n = b.layer2[0].conv1.weight.numel()
    tensors = table.loc["layer2", "tensors"]
    assert table.loc["layer2", "l2"] == pytest.approx(math.sqrt(n) / n / tensors)
    grid = S.filter_grid(a, n=16)
    assert grid.shape == (16, 7, 7) and grid.min() >= 0 and grid.max() <= 1
    with pytest.raises(ValueError, match="layer 'layer9' has no"):
        S.l2_distance(a, b, ["layer9"])


# --- probes --------------------------------------------------------------------------------
def test_knn_scores_against_a_loop():
    rng = np.random.default_rng(1)
    bank, labels, test = rng.normal(size=(30, 5)), rng.integers(0, 3, 30), rng.normal(size=(4, 5))
    got = S.knn_scores(bank, labels, test, 3, k=7, tau=0.1)
    for i in range(4):
        sims = [np.dot(test[i], b) / np.linalg.norm(test[i]) / np.linalg.norm(b) for b in bank]
        top = np.argsort(sims)[::-1][:7]
        w = np.exp(np.array(sims)[top] / 0.1)
        want = np.array([w[labels[top] == c].sum() for c in range(3)]) / w.sum()
        assert np.allclose(got[i], want)
    multi = rng.integers(0, 2, (30, 4))
    ml = S.knn_scores(bank, multi, test, k=5, multilabel=True)
    assert ml.shape == (4, 4) and ml.min() >= 0 and ml.max() <= 1


def test_gain_ratios():
    runs = pd.DataFrame({"arch": ["r"] * 6, "dataset": ["d"] * 6, "init": ["RI", "RI", "WT", "WT", "ST", "ST"],
                         "auc": [0.6, 0.6, 0.9, 0.9, 0.75, 0.75]})
    g = S.gain_ratios(runs).iloc[0]
    assert g.gain == pytest.approx(1.5) and g.reuse_share == pytest.approx(0.15 / 0.9)
    five = pd.DataFrame([{"arch": "r", "dataset": "d", "run": r, "init": i, "auc": v + 0.01 * r}
                         for r in range(5) for i, v in (("ri", 0.6), ("wt", 0.9), ("st", 0.75))])
    g5 = S.gain_ratios(five).iloc[0]
    per_run = [(0.9 + 0.01 * r) / (0.6 + 0.01 * r) for r in range(5)]
    assert g5.gain == pytest.approx(0.92 / 0.62)  # of the means over runs, as the study
    assert g5.gain_sd == pytest.approx(np.std(per_run, ddof=1)) and g5.n_runs == 5


@pytest.mark.realdata
def test_two_inits_layerwise_cka_and_layer_importance_on_real_data(medmnist_root):
    """Fine-tune RI and ST initialisations of ResNet-18 on a small pneumonia subset; the
    layer-wise CKA (init vs final) and layer-importance tables are finite for every layer."""
    need_file(medmnist_root, "pneumoniamnist.npz")
    train = D.subset(D.load("pneumoniamnist", "train", root=medmnist_root), 300, stratified=True, seed=0)
    test = D.subset(D.load("pneumoniamnist", "test", root=medmnist_root), 200, stratified=True, seed=0)
    layers = list(M.spec("resnet18").layers)
    for scheme in ("ri", "st"):
        model = M.reinit(M.create("resnet18", num_classes=2, seed=1), scheme, seed=2)
        init = {k: v.clone() for k, v in model.state_dict().items()}
        init_model = M.create("resnet18", num_classes=2, seed=1)
        init_model.load_state_dict(init)
        T.fit(model, train, None, epochs=2, optimizer="adam", lr=1e-3, batch_size=32, progress=False)
        cka = S.layerwise_cka(init_model, model, test, layers)
        assert list(cka.layer) == layers and np.isfinite(cka.cka).all()
        assert cka.cka.between(-0.2, 1 + 1e-9).all()
        imp = S.layer_importance(model, init, test, layers)
        assert list(imp.layer) == ["(none)", *layers] and np.isfinite(imp[["auc", "acc", "loss"]].to_numpy()).all()
        knn = S.layerwise_knn(model, train, test, k=20)
        assert np.isfinite(knn.auc).all() and len(knn) == len(layers) + 1
