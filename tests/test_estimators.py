"""The estimators added beyond the dataset-transferability study's seven, each against a
brute-force loop or a second algorithm; LogME's regression mode against its classification
mode and a direct evidence maximisation."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize
from test_transfer_metrics import _data, _log_evidence, _probs

import medtl.transfer as TR


# --- k-NN leave-one-out --------------------------------------------------------------------
def _knn_loops(x, y, k, distance):
    n = len(x)
    correct = 0
    for i in range(n):
        dists = []
        for j in range(n):
            if j == i:
                continue
            if distance == "cosine":
                d = 1 - float(x[i] @ x[j]) / (math.sqrt(float(x[i] @ x[i])) * math.sqrt(float(x[j] @ x[j])))
            else:
                d = math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], x[j], strict=True)))
            dists.append((d, j))
        dists.sort()  # by distance, then by index
        near = [j for _, j in dists[:k]]
        votes = {}
        for j in near:
            votes[y[j]] = votes.get(y[j], 0) + 1
        best = max(votes.values())
        pred = next(y[j] for j in near if votes[y[j]] == best)  # the tied class met first
        correct += pred == y[i]
    return correct / n


@pytest.mark.parametrize("distance", ["cosine", "l2"])
@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_loo_equals_loops(distance, k):
    x, y = _data(45, 6, 3, seed=k, sep=0.8)
    assert TR.knn_loo(x, y, k=k, distance=distance, chunk=7) == pytest.approx(_knn_loops(x, y, k, distance), abs=1e-15)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 6), st.sampled_from(["cosine", "l2"]))
def test_knn_loo_equals_loops_on_tied_integer_features(seed, k, distance):
    rng = np.random.default_rng(seed)
    x = rng.integers(1, 4, size=(20, 2)).astype(float)  # many exactly tied distances
    y = np.arange(20) % 3
    ref = _knn_loops(x, y, k, distance)
    # the vectorised cosine distances differ from the loop's by rounding; ties decided by rounding
    # are compared on the L2 form only, where both compute the same exact integers under the root
    if distance == "l2":
        assert TR.knn_loo(x, y, k=k, distance=distance, chunk=3) == pytest.approx(ref, abs=1e-15)
    else:
        assert abs(TR.knn_loo(x, y, k=k, distance=distance, chunk=3) - ref) <= 0.25


def test_knn_loo_reads_separation_and_chance():
    x, y = _data(90, 8, 3, seed=0, sep=6)
    assert TR.knn_loo(x, y) == 1.0
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(600, 16))
    labels = rng.integers(0, 2, 600)
    assert abs(TR.knn_loo(noise, labels, k=5) - 0.5) < 0.07  # independent features: chance
    with pytest.raises(ValueError, match="k must be an integer"):
        TR.knn_loo(x, y, k=90)
    with pytest.raises(ValueError, match="distance must be"):
        TR.knn_loo(x, y, distance="manhattan")
    with pytest.raises(ValueError, match="all zero"):
        TR.knn_loo(np.vstack([np.zeros((1, 8)), x[1:]]), y)


# --- NCE -----------------------------------------------------------------------------------
def test_nce_equals_conditional_entropy_loops():
    p = _probs(50, 4, seed=3)
    y = np.arange(50) % 3
    z = [int(np.argmax(r)) for r in p]
    h = 0.0
    for zz in set(z):
        members = [i for i in range(50) if z[i] == zz]
        for c in range(3):
            k = sum(1 for i in members if y[i] == c)
            if k:
                h -= (k / 50) * math.log(k / len(members))
    assert TR.nce(p, y) == pytest.approx(-h, abs=1e-12)
    # source predictions that determine the target label: NCE = 0
    det = np.eye(3)[y] * 0.9 + 0.1 / 3
    assert TR.nce(det, y) == pytest.approx(0.0, abs=1e-15)


# --- TransRate -----------------------------------------------------------------------------
@pytest.mark.parametrize("n, d", [(30, 50), (120, 50), (600, 40)], ids=["N<D", "classes<D<N", "D<classes"])
def test_transrate_equals_the_code_form_of_each_coding_rate(n, d):
    """Against the official code's D×D determinant (np.linalg.slogdet): medtl takes the
    smaller of the D×D and n×n forms (Sylvester) through a Cholesky factor."""
    x, y = _data(n, d, 3, seed=5)

    def rate_code(z, eps=1e-4):
        return 0.5 * np.linalg.slogdet(np.eye(z.shape[1]) + z.T @ z / (len(z) * eps))[1]

    z = x - x.mean(0)
    ref = rate_code(z) - np.mean([rate_code(z[y == k]) for k in range(3)])
    assert TR.transrate(x, y) == pytest.approx(ref, rel=1e-9)
    assert TR.coding_rate(z) == pytest.approx(rate_code(z), rel=1e-10)
    with pytest.raises(ValueError, match="eps must be positive"):
        TR.transrate(x, y, eps=0)


# --- GBC -----------------------------------------------------------------------------------
def _gbc_loops(x, y):
    c = y.max() + 1
    mus = [x[y == k].mean(0) for k in range(c)]
    covs = [np.diag(x[y == k].var(0) + 1e-9) for k in range(c)]
    total = 0.0
    for i in range(c):
        for j in range(c):
            if i == j:
                continue
            s = (covs[i] + covs[j]) / 2
            diff = mus[i] - mus[j]
            db = diff @ np.linalg.inv(s) @ diff / 8 + 0.5 * math.log(
                np.linalg.det(s) / math.sqrt(np.linalg.det(covs[i]) * np.linalg.det(covs[j])))
            total += math.exp(-db)
    return -total


def test_gbc_equals_pairwise_loops_and_pca_projection():
    from sklearn.decomposition import PCA

    x, y = _data(60, 5, 4, seed=6, sep=1.0)
    assert TR.gbc(x, y) == pytest.approx(_gbc_loops(x, y), rel=1e-10)
    wide, yw = _data(80, 12, 3, seed=7)
    z = PCA(4, svd_solver="full").fit_transform(wide)  # component signs do not change GBC
    assert TR.gbc(wide, yw, dim=4) == pytest.approx(_gbc_loops(z, yw), rel=1e-8)  # N > D: top eigenvectors
    few, yf = _data(30, 40, 3, seed=8)  # N < D: the thin SVD's axes
    z = PCA(4, svd_solver="full").fit_transform(few)
    assert TR.gbc(few, yf, dim=4) == pytest.approx(_gbc_loops(z, yf), rel=1e-8)
    far, yf = _data(60, 5, 3, seed=0, sep=50)
    assert TR.gbc(far, yf) > -1e-6 > TR.gbc(*_data(60, 5, 3, seed=0, sep=0.1))
    with pytest.raises(ValueError, match="2 samples per class"):
        TR.gbc(x[:9], np.array([0, 1, 1, 2, 2, 3, 3, 3, 3]))  # class 0 has one sample


# --- regularised H-score -------------------------------------------------------------------
@pytest.mark.parametrize("n, d, variant", [(40, 30, "plain"), (30, 80, "plain"), (500, 20, "plain"),
                                           (60, 25, "dead"), (60, 25, "isotropic")])
def test_ledoit_wolf_alpha_equals_sklearn(n, d, variant):
    from sklearn.covariance import ledoit_wolf_shrinkage

    rng = np.random.default_rng(n + d)
    x = rng.normal(size=(n, d)) @ (np.eye(d) if variant == "isotropic" else rng.normal(size=(d, d)))
    if variant == "dead":
        x[:, :3] = 0
    x -= x.mean(0)
    ref = ledoit_wolf_shrinkage(x, assume_centered=True)
    assert TR.ledoit_wolf_alpha(x, TR.gram(x) / n) == pytest.approx(ref, rel=1e-10, abs=1e-15)


def test_regularised_hscore_equals_loops_with_sklearn_shrinkage():
    from sklearn.covariance import LedoitWolf

    x, y = _data(40, 30, 3, seed=8)  # N close to D: the shrinkage matters
    n, d = x.shape
    alpha = LedoitWolf().fit(x).shrinkage_
    xc = x - x.mean(0)
    cov = sum(np.outer(r, r) for r in xc) / n
    means = {k: sum(xc[i] for i in range(n) if y[i] == k) / sum(y == k) for k in range(3)}
    cov_z = sum(np.outer(means[y[i]], means[y[i]]) for i in range(n)) / n
    reg = (1 - alpha) * cov + alpha * np.trace(cov) / d * np.eye(d)
    ref = np.trace(np.linalg.inv(reg) @ ((1 - alpha) * cov_z))
    assert TR.hscore_reg(x, y) == pytest.approx(ref, rel=1e-9)
    assert 0 < alpha < 1


# --- LogME regression ----------------------------------------------------------------------
def test_logme_regression_on_one_hot_equals_classification():
    for n, d in ((80, 6), (15, 30)):
        x, y = _data(n, d, 3, seed=n)
        onehot = np.eye(3)[y]
        assert TR.logme(x, onehot) == pytest.approx(TR.logme(x, y), rel=1e-12)
        assert TR.logme(x, onehot, mode="regression") == pytest.approx(TR.logme(x, y, mode="classification"), rel=1e-12)


def test_logme_regression_multilabel_and_ordinal_equal_brute_force():
    x, y = _data(70, 4, 3, seed=9)
    rng = np.random.default_rng(9)
    multi = (rng.random((70, 3)) < 0.3).astype(float)
    multi[:, 0] = (y == 0)  # one label the features predict
    grade = y.astype(float) * 1.5 + rng.normal(scale=0.3, size=70)

    def brute(t):
        res = optimize.minimize(lambda v: -_log_evidence(x, t, math.exp(v[0]), math.exp(v[1])), [0.0, 0.0],
                                method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        return -res.fun / len(x)

    assert TR.logme(x, multi, max_iter=1000) == pytest.approx(np.mean([brute(multi[:, k]) for k in range(3)]), abs=1e-6)
    assert TR.logme(x, grade, mode="regression", max_iter=1000) == pytest.approx(brute(grade), abs=1e-6)
    with pytest.raises(ValueError, match="NaN or inf"):
        TR.logme(x, np.where(multi > 0, np.nan, 0.0))
    with pytest.raises(ValueError, match="mode must be"):
        TR.logme(x, y, mode="ordinal")


def test_multilabel_targets_are_scored_by_logme_and_refused_by_the_others():
    meta = TR.metrics().set_index("metric")
    assert "multilabel" in meta.loc["logme", "labels"]
    assert "multilabel" not in meta.loc["knn_cosine", "labels"]
    for name in ("knn_cosine", "knn_l2", "nce", "transrate", "gbc", "hscore_reg"):
        assert meta.loc[name, "citation"] and meta.loc[name, "description"]
