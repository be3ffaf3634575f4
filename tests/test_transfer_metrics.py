"""Each transferability metric against an independent computation of its formula."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

import medtl.transfer as TR


def _data(n=60, d=8, c=3, seed=0, sep=1.5):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    centers = rng.normal(size=(c, d)) * sep
    x = centers[y] + rng.normal(size=(n, d))
    return x, y


def _probs(n=40, k=5, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 2
    return np.exp(z) / np.exp(z).sum(1, keepdims=True)


# --- LEEP / N-LEEP -------------------------------------------------------------------------
def _leep_loops(p, y, log=True):
    n, k = p.shape
    c = y.max() + 1
    joint = np.zeros((c, k))
    for i in range(n):
        for z in range(k):
            joint[y[i], z] += p[i, z] / n
    total = 0.0
    for i in range(n):
        eep = 0.0
        for z in range(k):
            marg = sum(joint[yy, z] for yy in range(c))
            eep += (joint[y[i], z] / marg if marg > 0 else 0.0) * p[i, z]
        total += math.log(eep) if log else eep
    return total / n


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), k=st.integers(2, 7), c=st.integers(2, 4))
def test_leep_equals_loops(seed, k, c):
    p = _probs(30, k, seed)
    y = np.arange(30) % c
    assert math.isclose(TR.leep(p, y), _leep_loops(p, y), rel_tol=1e-10)
    assert TR.leep(p, y) <= 0


def test_nleep_given_posteriors_equals_loops():
    post, y = _probs(36, 6, 3), np.arange(36) % 3
    assert math.isclose(TR.nleep_from_posteriors(post, y), _leep_loops(post, y), rel_tol=1e-10)
    assert math.isclose(TR.nleep_from_posteriors(post, y, log=False), _leep_loops(post, y, log=False), rel_tol=1e-10)


def test_nleep_variants_and_seed():
    x, y = _data(90, 10, 3)
    a = TR.nleep(x, y, seed=0)
    assert a == TR.nleep(x, y, seed=0)
    study = TR.nleep(x, y, seed=0, variant="study")
    post = TR.gmm_posteriors(x, 15, seed=0)
    assert math.isclose(study, TR.nleep_from_posteriors(post, y, log=False), rel_tol=1e-12)
    assert math.isclose(a, TR.nleep_from_posteriors(post, y), rel_tol=1e-12)
    assert a <= 0 < study <= 1


# --- LogME ---------------------------------------------------------------------------------
def _log_evidence(f, t, alpha, beta):
    """log p(t | α, β) of Bayesian linear regression t ~ N(Fw, 1/β), w ~ N(0, 1/α), directly."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ t)
    return (d / 2 * math.log(alpha) + n / 2 * math.log(beta) - 0.5 * np.linalg.slogdet(a)[1]
            - beta / 2 * np.sum((t - f @ m) ** 2) - alpha / 2 * m @ m - n / 2 * math.log(2 * math.pi))


def test_logme_equals_brute_force_evidence_maximisation():
    x, y = _data(80, 5, 3, seed=2)
    brute = []
    for c in range(3):
        t = (y == c).astype(float)
        res = optimize.minimize(lambda v, t=t: -_log_evidence(x, t, math.exp(v[0]), math.exp(v[1])), [0.0, 0.0],
                                method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000})
        brute.append(-res.fun / len(x))
    assert abs(TR.logme(x, y, max_iter=1000) - np.mean(brute)) < 1e-6
    # the official 11-iteration cap stays close on this well-conditioned case
    assert abs(TR.logme(x, y) - np.mean(brute)) < 1e-3


def test_logme_n_smaller_than_d_uses_thin_svd():
    x, y = _data(20, 40, 2, seed=1)
    value = TR.logme(x, y)
    assert np.isfinite(value)


# --- PARC ----------------------------------------------------------------------------------
def test_parc_equals_pairwise_loops():
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, y = _data(30, 40, 3, seed=4)
    z = StandardScaler().fit_transform(PCA(30, svd_solver="randomized", random_state=1919,
                                           iterated_power=1).fit_transform(x.astype(np.float64)))
    onehot = np.eye(3)[y]
    fd, yd = [], []
    for i in range(30):
        for j in range(i + 1, 30):
            fd.append(1 - stats.pearsonr(z[i], z[j]).statistic)
            # exact ties: 1 − corr of one-hot rows is 0 or C/(C−1); corrcoef's ±1 ulp noise
            # would otherwise decide how Spearman ranks the tied pairs
            yd.append(round(1 - np.corrcoef(onehot[i], onehot[j])[0, 1], 12))
    assert math.isclose(TR.parc(x, y), 100 * stats.spearmanr(fd, yd).statistic, rel_tol=1e-9)


@pytest.mark.parametrize("case", ["continuous", "ties", "all-tied", "one-low", "large-ties"])
def test_spearman_two_level_equals_scipy(case):
    """PARC's one-sort Spearman against scipy's two rankings, ties included; "large-ties"
    is over the size at which the sort runs on several threads."""
    from medtl.transfer.metrics import spearman_two_level

    rng = np.random.default_rng(7)
    n = 1_200_000 if case == "large-ties" else 400
    values = rng.normal(size=n)
    high = rng.random(n) < 0.7
    values = values + 0.8 * high  # a real association
    if case in ("ties", "large-ties"):
        values = np.round(values, 1 if case == "ties" else 3)  # ties across both groups
    elif case == "all-tied":
        values = np.full(400, 0.25)
    elif case == "one-low":
        high = np.ones(400, dtype=bool)
        high[17] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # scipy says NaN for all-tied
        expected = stats.spearmanr(values, np.where(high, 4 / 3, 0.0)).statistic
    got = spearman_two_level(values, high)
    if case == "all-tied":
        assert np.isnan(got) and np.isnan(expected)
    else:
        assert math.isclose(got, expected, rel_tol=1e-12)
    # a variable that is one level only has no correlation: NaN, as scipy
    assert np.isnan(spearman_two_level(values, np.ones(n, dtype=bool)))
    with pytest.raises(ValueError, match="same length"):
        spearman_two_level(values, high[:-1])


@pytest.mark.parametrize("name", [n for n in TR.metric_names() if TR.metric(n).kind in ("features", "probs")])
def test_a_metric_never_writes_into_its_input(name):
    """The metrics read the caller's float64 array in place (no N×D copy where they only
    read it): every features/probs metric leaves it bit-identical, and runs on a read-only
    array (a memory-mapped feature file) without trying to write it."""
    m = TR.metric(name)
    x, y = _data(90, 12, 3, seed=4)
    arg = _probs(90, 6, seed=4) if m.kind == "probs" else np.maximum(x, 0) + 0.1
    kept = arg.copy()
    arg.flags.writeable = False
    value = m.fn(arg, y)
    assert np.array_equal(arg, kept) and np.isfinite(value)


def test_cholesky_equals_numpys_and_refuses_what_is_not_positive_definite():
    from medtl._linalg import cholesky

    rng = np.random.default_rng(0)
    z = rng.normal(size=(40, 7))
    a = z.T @ z + 0.1 * np.eye(7)
    for order in (a, np.asfortranarray(a)):
        kept = order.copy()
        factor = cholesky(order)
        np.testing.assert_allclose(np.tril(factor), np.linalg.cholesky(a), rtol=1e-13, atol=1e-13)
        assert np.array_equal(order, kept)  # the input is not factored in place
    own = a.copy()
    np.testing.assert_allclose(np.tril(cholesky(own, overwrite=True)), np.linalg.cholesky(a), rtol=1e-13, atol=1e-13)
    assert not np.array_equal(own, a)  # overwrite=True: factored in place, no copy
    assert cholesky(a - (np.linalg.eigvalsh(a)[0] + 1) * np.eye(7)) is None  # one negative eigenvalue
    assert cholesky(np.zeros((3, 3))) is None


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_sorted_parallel_is_one_sort(parts):
    """The several-thread sort PARC ranks with is np.sort exactly: ties straddling the
    partition ranks, ±inf, NaN (last), an all-equal array, integers."""
    from medtl._linalg import sorted_parallel

    rng = np.random.default_rng(parts)
    cases = [rng.random(5000), np.round(rng.normal(size=5000), 1), np.r_[rng.normal(size=3000), np.nan, np.inf, -np.inf,
             np.nan], np.full(4000, 0.5), np.r_[np.ones(2999), 2.0], rng.integers(0, 4, 5000), rng.random(parts - 1)]
    for a in cases:
        assert np.array_equal(sorted_parallel(a, parts, min_size=0), np.sort(a), equal_nan=a.dtype.kind == "f")
    assert np.array_equal(sorted_parallel(cases[0], parts), np.sort(cases[0]))  # below min_size: one sort


def test_parc_ignores_the_order_of_pairs_and_ties_with_scipy_on_duplicated_rows():
    """Duplicated samples give exactly tied feature dissimilarities (0 between copies)."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x, y = _data(600, 12, 4, seed=9)  # 700 rows: the N×N triangle is built in blocks of 512
    x, y = np.concatenate([x, x[:100]]), np.concatenate([y, y[:100]])
    z = StandardScaler().fit_transform(PCA(12, svd_solver="randomized", random_state=1919,
                                           iterated_power=1).fit_transform(x.astype(np.float64)))
    iu = np.triu_indices(len(x), 1)
    rdm_y = np.where(y[:, None] == y[None, :], 0.0, 4 / 3)
    expected = 100 * stats.spearmanr((1 - np.corrcoef(z))[iu], rdm_y[iu]).statistic
    assert math.isclose(TR.parc(x, y, dim=12), expected, rel_tol=1e-9)


# --- H-score -------------------------------------------------------------------------------
def test_hscore_equals_loops():
    x, y = _data(40, 4, 3, seed=5)
    n, d = x.shape
    mu = sum(x[i] for i in range(n)) / n
    cov = sum(np.outer(x[i] - mu, x[i] - mu) for i in range(n)) / n
    means = {c: sum(x[i] for i in range(n) if y[i] == c) / np.sum(y == c) for c in range(3)}
    cov_g = sum(np.outer(means[y[i]] - mu, means[y[i]] - mu) for i in range(n)) / n
    assert math.isclose(TR.hscore(x, y), np.trace(np.linalg.inv(cov) @ cov_g), rel_tol=1e-9)


@pytest.mark.parametrize("n, d, variant", [(n, d, v) for n, d in ((500, 50), (40, 60))
                                            for v in ("plain", "dead", "duplicate", "near-collinear", "scaled")
                                            if not (v == "scaled" and n <= d)])
def test_pinv_quadratic_equals_the_pseudo_inverse_on_every_conditioning(n, d, variant):
    """The Cholesky fast path (well-conditioned) and the eigen path (singular, ill-conditioned)
    both equal tr(pinv(A) BᵀB) of numpy's hermitian pinv to 1e-9 relative; gram = xᵀx.
    Features on scales 1e-3..1e3: the form is scale-invariant, so it equals the unscaled
    features' value (numpy's pinv itself is off by ~1e-6 there)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, d))
    if variant == "dead":
        x[:, :5] = 0
    elif variant == "duplicate":
        x[:, 1] = x[:, 0]
    elif variant == "near-collinear":
        x[:, 1] = x[:, 0] + 1e-5 * x[:, 2]
    elif variant == "scaled":
        x *= np.logspace(-3, 3, d)
    x -= x.mean(0)
    a = TR.gram(x) / n
    np.testing.assert_allclose(a, x.T @ x / n, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    assert np.array_equal(a, a.T)
    b = x[:4]
    if variant == "scaled":
        x = x / np.logspace(-3, 3, d)
    ref = np.trace(np.linalg.pinv(x.T @ x / n, hermitian=True) @ (x[:4].T @ x[:4]))
    assert math.isclose(TR.pinv_quadratic(a, b), ref, rel_tol=1e-9)


@pytest.mark.parametrize("fn, saturated", [(TR.hscore, 2.0), (TR.sfda, 1.0)], ids=["hscore", "sfda"])
def test_saturating_metrics_say_so_when_n_is_at_most_d(fn, saturated):
    """N ≤ D: any features spanning the samples give H-score exactly C − 1 and SFDA exactly 1
    (the samples are linearly separable), unrelated random features and perfectly separating
    ones alike, so both warn; N > D does not warn and reads below the saturated value."""
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    noise = rng.normal(size=(30, 50))
    separated = noise + 10 * np.eye(50)[y]
    for x in (noise, separated):
        with pytest.warns(RuntimeWarning, match="N <= D"):
            assert math.isclose(fn(x, y), saturated, rel_tol=1e-9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fn(noise[:, :10], y) < saturated - 1e-3


# --- LP ------------------------------------------------------------------------------------
def test_lp_equals_knn_resubstitution_loops_and_is_a_multiple_of_1_over_5n():
    from sklearn.neighbors import NeighborhoodComponentsAnalysis

    x, y = _data(45, 60, 3, seed=6, sep=0.6)
    z = NeighborhoodComponentsAnalysis(n_components=45, random_state=42, max_iter=50, tol=1e-5).fit_transform(x, y)
    total = 0.0
    for i in range(len(z)):
        dist = [np.sum((z[i] - z[j]) ** 2) for j in range(len(z))]
        nearest = np.argsort(dist, kind="stable")[:5]  # includes i itself
        total += np.mean(y[nearest] == y[i])
    value = TR.lp(x, y)
    assert math.isclose(value, total / len(z), rel_tol=1e-12)
    assert abs(value * 5 * len(z) - round(value * 5 * len(z))) < 1e-9 and 0.2 <= value <= 1


# --- SFDA / NCTI ---------------------------------------------------------------------------
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 1000), sep=st.floats(0.0, 3.0))
def test_sfda_in_unit_interval(seed, sep):
    x, y = _data(60, 6, 3, seed=seed, sep=sep)
    assert 0 < TR.sfda(x, y) <= 1


def _sfda_reference(x, y):
    """SFDA in the official code's form (the generalised eigenproblem S_b v = λ S_w v by
    scipy, coef = M V Vᵀ): the reference ``benchmarks/metric_speedups.py`` times medtl against."""
    import importlib.util
    import sys

    from conftest import REPO

    bench = REPO / "benchmarks"
    sys.path.insert(0, str(bench))  # for its _common
    try:
        spec = importlib.util.spec_from_file_location("metric_speedups", bench / "metric_speedups.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(bench))
    return module.sfda_reference(x, y)


@pytest.mark.parametrize("n, d, c, sep", [(300, 64, 4, 0.3), (200, 40, 3, 1.0), (900, 128, 10, 0.2), (120, 30, 2, 2.0)])
def test_sfda_equals_the_official_generalised_eigenproblem_form(n, d, c, sep):
    x, y = _data(n, d, c, seed=n, sep=sep)
    x = np.maximum(x, 0)  # ReLU-like, as penultimate features are
    assert TR.sfda(x, y) == pytest.approx(_sfda_reference(x, y), rel=1e-9)
    perm = np.random.default_rng(1).permutation(n)
    assert TR.sfda(x[perm], y[perm]) == pytest.approx(TR.sfda(x, y), rel=1e-12)


def test_sfda_prefers_separable_features():
    x_good, y = _data(90, 6, 3, seed=1, sep=4.0)
    x_bad, _ = _data(90, 6, 3, seed=1, sep=0.0)
    assert TR.sfda(x_good, y) > TR.sfda(x_bad, y)


def test_ncti_official_and_study_signs():
    feats = {f"s{i}": _data(90, 70, 3, seed=i, sep=0.5 + i)[0] for i in range(3)}
    y = _data(90, 70, 3)[1]
    comps = {s: TR.ncti_components(f, y) for s, f in feats.items()}
    norm = {k: TR.minmax({s: comps[s][k] for s in comps}) for k in ("seli", "ncc", "vc")}
    official, study = TR.ncti(feats, y), TR.ncti(feats, y, variant="study")
    for s in feats:
        assert math.isclose(official[s], norm["seli"][s] + norm["ncc"][s] - norm["vc"][s], abs_tol=1e-12)
        assert math.isclose(study[s] - official[s], 2 * norm["vc"][s], abs_tol=1e-12)
        assert 0 <= study[s] <= 3


# --- FU loss -------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["sorted", "triplets"])
def test_triplet_loss_matches_pytorch_metric_learning(method):
    pml = pytest.importorskip("pytorch_metric_learning.losses", reason="dev-only reference")
    torch.manual_seed(0)
    for b, d, c, chunk, margin in ((24, 12, 3, 5, 0.05), (17, 4, 2, 32, 0.05), (64, 8, 5, 7, 0.3), (40, 2, 4, 32, 1.0)):
        e1 = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
        e2 = e1.detach().clone().requires_grad_(True)
        y = torch.randint(0, c, (b,))
        ours = TR.triplet_margin_loss(e1, y, margin=margin, method=method, chunk=chunk)
        ref = pml.TripletMarginLoss(margin=margin)(e2, y)
        assert torch.allclose(ours, ref, rtol=1e-10)
        ours.backward()
        ref.backward()
        assert torch.allclose(e1.grad, e2.grad, rtol=1e-7, atol=1e-12)


def test_sorted_triplet_loss_equals_the_triplet_enumeration_with_ties_and_one_class_gaps():
    torch.manual_seed(1)
    # duplicated embeddings give exactly tied distances; class 3 has a single member (no positives)
    base = torch.randn(10, 6, dtype=torch.float64)
    e = torch.cat([base, base[:4], torch.randn(1, 6, dtype=torch.float64)])
    y = torch.tensor([0, 1, 2] * 3 + [0, 0, 1, 2, 1, 3])
    a, b = (e.clone().requires_grad_(True) for _ in range(2))
    fast, ref = TR.triplet_margin_loss(a, y, method="sorted"), TR.triplet_margin_loss(b, y, method="triplets")
    assert torch.allclose(fast, ref, rtol=1e-12)
    fast.backward()
    ref.backward()
    assert torch.allclose(a.grad, b.grad, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="method must be"):
        TR.triplet_margin_loss(e, y, method="fast")


@pytest.mark.parametrize("method", ["sorted", "triplets"])
def test_triplet_loss_without_triplets_is_zero_and_attached(method):
    e = torch.randn(4, 3, requires_grad=True)
    loss = TR.triplet_margin_loss(e, torch.zeros(4, dtype=torch.long), method=method)
    assert float(loss.detach()) == 0 and loss.requires_grad
    far = torch.tensor([[1.0, 0.0], [1.0, 0.01], [-1.0, 0.0], [-1.0, 0.01]], requires_grad=True)
    loss = TR.triplet_margin_loss(far, torch.tensor([0, 0, 1, 1]), method=method)  # every triplet inactive
    assert float(loss.detach()) == 0 and loss.requires_grad


# --- LP×FU ---------------------------------------------------------------------------------
def test_lp_fu_minmax_product_and_reverse():
    import pandas as pd

    lp = pd.Series({"a": 0.5, "b": 0.7, "c": 0.9, "t": 0.95})
    fu = pd.Series({"a": 1.0, "b": 0.5, "c": 2.0, "t": 0.1})
    s = TR.lp_fu(lp, fu, exclude="t")
    assert np.isnan(s["t"])
    assert math.isclose(s["a"], 0.0) and math.isclose(s["b"], 0.5 * 0.0) and math.isclose(s["c"], 1.0)
    r = TR.lp_fu(lp, fu, exclude="t", reverse=True)
    assert math.isclose(r["a"], 1.0 * (1 - 1 / 3))
    q = TR.lp_fu(lp, fu, exclude="t", variant="study")  # FU normalised with t (min 0.1)
    assert math.isclose(q["b"], 0.5 * (0.5 - 0.1) / 1.9)


# --- evaluation statistics -----------------------------------------------------------------
def test_correlate_excludes_self_and_reports_regret():
    import pandas as pd

    scores = pd.DataFrame({"x": {"x": 9.0, "a": 1.0, "b": 2.0, "c": 3.0}})
    auc = pd.DataFrame({"x": {"x": 1.0, "a": 0.7, "b": 0.9, "c": 0.8}})
    row = TR.correlate(scores, auc).iloc[0]
    assert row.n == 3 and row.chosen == "c" and not row.top1_hit
    assert math.isclose(row.regret, 0.1)
    assert math.isclose(row.tau_w, stats.weightedtau([1, 2, 3], [0.7, 0.9, 0.8]).statistic)


def test_batched_tau_w_equals_scipy_weightedtau_with_ties_and_duplicates():
    """τ_w on all pairs at once equals one scipy.stats.weightedtau call per row: continuous
    values, ties in x or y or both (bootstrap resamples repeat whole points), constant rows
    (NaN), and it depends on the order of the values, not their scale or position."""
    from medtl.transfer.evaluation import tau_w_many

    rng = np.random.default_rng(0)
    for n in (2, 3, 7, 20):
        x = np.vstack([rng.normal(size=(40, n)), rng.integers(0, 3, (40, n)), np.ones((1, n))])
        y = np.vstack([rng.normal(size=(40, n)), rng.normal(size=(40, n)), rng.normal(size=(1, n))])
        boot = rng.integers(0, n, (20, n))  # resamples with repeated (x, y) points
        x, y = np.vstack([x, x[0][boot]]), np.vstack([y, y[0][boot]])
        got = tau_w_many(x, y)
        for i in range(len(x)):
            ref = stats.weightedtau(x[i], y[i]).statistic if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0 else np.nan
            assert (np.isnan(ref) and np.isnan(got[i])) or abs(got[i] - ref) < 1e-12, (n, i, x[i], y[i])
    x, y = rng.normal(size=(5, 9)), rng.normal(size=(5, 9))
    np.testing.assert_allclose(tau_w_many(3 * x + 7, np.exp(y)), tau_w_many(x, y), atol=1e-14)
    assert np.allclose(tau_w_many(x, x), 1) and np.allclose(tau_w_many(x, -x), -1)
    assert math.isclose(TR.tau_w([1, 2, 3], [0.7, 0.9, 0.8]), stats.weightedtau([1, 2, 3], [0.7, 0.9, 0.8]).statistic)
    with pytest.raises(ValueError, match="one shape"):
        tau_w_many(x, y[:, :3])


def test_q_alpha_table_agrees_with_studentized_range():
    for k in range(2, 11):
        exact = stats.studentized_range.ppf(0.95, k, np.inf) / math.sqrt(2)
        assert abs(TR.q_alpha(k) - exact) < 1.5e-3
    assert abs(TR.q_alpha(12) - stats.studentized_range.ppf(0.95, 12, np.inf) / math.sqrt(2)) < 1e-9


# --- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [TR.nleep, TR.logme, TR.parc, TR.sfda, TR.hscore, TR.lp])
def test_feature_metric_errors(fn):
    x, y = _data(30, 5, 3)
    with pytest.raises(ValueError, match="N=3 samples must exceed the number of classes C=3"):
        fn(x[:3], y[:3])
    with pytest.raises(ValueError, match="single class"):
        fn(x, np.zeros(30, dtype=int))
    with pytest.raises(ValueError, match=r"classes \[1\] have no sample"):
        fn(x, np.where(y == 1, 2, y))
    with pytest.raises(ValueError, match="labels must be integers 0..C-1"):
        fn(x, y - 1)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"features contain NaN or inf \(1 of 30 rows\)"):
        fn(bad, y)
    bad[3, 1], bad[7, 0], bad[9, 4] = 1.0, np.inf, -np.inf  # +inf and -inf, in rows of their own
    with pytest.raises(ValueError, match=r"features contain NaN or inf \(2 of 30 rows\)"):
        fn(bad, y)
    with pytest.raises(ValueError, match="features are constant"):
        fn(np.full_like(x, 0.25), y)
    with pytest.raises(ValueError, match="labels has 29 entries but the features/probabilities have 30 rows"):
        fn(x, y[:-1])


def test_leep_errors():
    p, y = _probs(30, 4), np.arange(30) % 3
    with pytest.raises(ValueError, match="rows must be non-negative and sum to 1"):
        TR.leep(p * 2, y)
    with pytest.raises(ValueError, match="labels has 29 entries"):
        TR.leep(p, y[:-1])
    with pytest.raises(ValueError, match="probs contain NaN"):
        TR.leep(np.full((30, 4), np.nan), y)
