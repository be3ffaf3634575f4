"""What `rank`'s numbers mean: every default metric is invariant to the order of the
target's images (class-sorted, reversed, shuffled); the intervals are calibrated (95 %
intervals cover the expected score at this N in 90–99 % of repeats on targets with a known
population answer); Kendall's W equals its definition."""

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import medtl.data as D
import medtl.models as M
import medtl.transfer as TR


def _target(n_per_class=(14, 10, 8), size=28, seed=0) -> D.ImageSet:
    """A small 3-class target whose classes differ in brightness and texture."""
    rng = np.random.default_rng(seed)
    imgs, labels = [], []
    yy, xx = np.mgrid[:size, :size]
    for c, k in enumerate(n_per_class):
        for i in range(k):
            base = 60 + 50 * c + 40 * np.sin(xx / (1.5 + c) + i) + rng.integers(0, 50, (size, size))
            imgs.append(base.clip(0, 255).astype(np.uint8)[None])
            labels.append(c)
    import torch
    return D.ImageSet(torch.from_numpy(np.stack(imgs)), torch.tensor(labels), "multi-class",
                      ["a", "b", "c"], name="toy")


@pytest.fixture(scope="module")
def sources():
    return {"s1": M.create("resnet18", num_classes=4, seed=1), "s2": M.create("resnet18", num_classes=3, seed=2),
            "s3": M.create("resnet18", num_classes=5, seed=3)}


ORDERS = {
    "class-sorted": lambda d: np.argsort(d.primary_labels(), kind="stable"),
    "reversed": lambda d: np.arange(len(d))[::-1].copy(),
    "shuffled": lambda d: np.random.default_rng(7).permutation(len(d)),
}


@pytest.fixture(scope="module")
def reference(sources):
    data = _target()
    return data, TR.score(sources, data, progress=False).set_index(["source", "metric"]).value


# Seeded fits whose float sums follow the sample order differ in the last bits: NCA (LP) and
# the LDA/PCA inside NCTI; everything else is bit-identical. The tolerance is stated here.
RTOL = {"lp": 1e-6, "ncti": 1e-6, "lp_fu": 1e-6}


@pytest.mark.parametrize("order", list(ORDERS))
def test_every_default_metric_is_invariant_to_the_target_order(sources, reference, order):
    data, ref = reference
    permuted = data.subset(ORDERS[order](data))
    got = TR.score(sources, permuted, progress=False).set_index(["source", "metric"]).value
    names = [m for m in TR.metric_names(default_only=True)]
    assert set(got.index.get_level_values("metric")) >= set(names)  # every default row scored
    for m in names:
        for s in sources:
            a, b = ref[(s, m)], got[(s, m)]
            assert np.isclose(a, b, rtol=RTOL.get(m, 1e-12), atol=1e-12), (m, s, order, a, b)


def test_fu_on_a_class_sorted_target_is_defined_and_batches_are_stratified(sources):
    data = _target((10, 10, 10))  # N = 30, B = 5: stored class-sorted batches hold one class each
    sorted_data = data.subset(np.argsort(data.primary_labels(), kind="stable"))
    with pytest.raises(ValueError, match="order='stored'"):
        TR.fu(sources["s1"], sorted_data, order="stored")  # the study's order: one class per batch
    assert TR.fu(sources["s1"], sorted_data) > 0
    order = D.stratified_order(sorted_data, seed=3)
    labels = sorted_data.primary_labels()[order]
    b = len(labels) // 6
    for start in range(0, 6 * b, b):  # every full batch holds every class, in proportion (±1)
        counts = np.bincount(labels[start:start + b], minlength=3)
        expected = b * np.bincount(labels, minlength=3) / len(labels)
        assert (np.abs(counts - expected) <= 1.01).all(), counts
    # in pairs (FU's batching): batches of 4 from 4 classes hold two same-class pairs each
    four = D.synthetic("shape-a", "train").subset(np.arange(24))
    paired = four.primary_labels()[D.stratified_order(four, seed=0, group=2)]
    for start in range(0, 24, 4):
        counts = np.bincount(paired[start:start + 4])
        assert counts.max() >= 2 and (counts > 0).sum() >= 2, paired[start:start + 4]
    assert TR.fu(sources["s1"], four) > 0
    # the same images in another order give the same sequence of images
    other = sorted_data.subset(np.arange(len(sorted_data))[::-1].copy())
    a = sorted_data.images[D.stratified_order(sorted_data, seed=3)]
    assert (a == other.images[D.stratified_order(other, seed=3)]).all()


def _fu_by_definition(model, data, seed=42):
    """FU written out (spec §2.2, stratified batches): every weight requires its gradient, as
    a training step's backward pass computes them; the two monitored norms are read after."""
    import copy

    import torch

    from medtl import runtime

    a = M.arch_of(model)
    net = copy.deepcopy(model).eval()
    M.set_module(net, a.feature_node, torch.nn.Identity())
    data = data.subset(D.stratified_order(data, seed, group=2), name=data.name)
    g1, g2 = [], []
    with runtime.seeded(seed):
        for x, y in D.loader(data, batch_size=max(len(data) // 6, 2), **runtime.batch_settings(model, data)):
            net.zero_grad(set_to_none=True)
            TR.triplet_margin_loss(net(x).float(), y).backward()
            g1.append(float(M.get_module(net, a.fu_layers[0]).weight.grad.norm()))
            g2.append(float(M.get_module(net, a.fu_layers[1]).weight.grad.norm()))
    return np.mean(g2) / np.mean(g1)


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
def test_fu_equals_its_definition_and_leaves_the_model_as_it_was(arch):
    """FU computes only the two monitored gradients; its value is the one every gradient's
    backward pass gives, and the candidate keeps its weights and requires_grad flags."""
    model = M.create(arch, num_classes=3, seed=4)
    if arch == "resnet18":  # a frozen weight outside the monitored two keeps its flag
        model.fc.weight.requires_grad_(False)
    flags = {k: p.requires_grad for k, p in model.named_parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = _target((10, 8, 6), size=32)
    assert TR.fu(model, data) == pytest.approx(_fu_by_definition(model, data), rel=1e-6)
    assert flags == {k: p.requires_grad for k, p in model.named_parameters()}
    assert all((before[k] == v).all() for k, v in model.state_dict().items())


def test_rank_on_a_class_sorted_and_a_shuffled_target_gives_the_same_answer(sources):
    data = _target()
    args = {"metrics": ["logme", "knn_cosine", "nleep", "fu"], "n_boot": 3, "progress": False}
    a = TR.rank(data.subset(ORDERS["class-sorted"](data)), sources, **args)
    b = TR.rank(data.subset(ORDERS["shuffled"](data)), sources, **args)
    pd.testing.assert_frame_equal(a.recommendation, b.recommendation)
    pd.testing.assert_frame_equal(a.scores.drop(columns="seconds"), b.scores.drop(columns="seconds"))


# --- intervals ---------------------------------------------------------------------------
def _draw(rng, n_per_class, shift, d=6):
    """A sample from a known population: class c ~ N(shift·e_c, I)."""
    x = np.concatenate([rng.standard_normal((n, d)) + shift * np.eye(d)[c] for c, n in enumerate(n_per_class)])
    return x, np.repeat(np.arange(len(n_per_class)), n_per_class)


def _half_samples(rng, y, fraction, n_boot):
    for _ in range(n_boot):
        yield np.concatenate([rng.choice(np.flatnonzero(y == c), int(round(fraction * (y == c).sum())), replace=False)
                              for c in np.unique(y)])


@pytest.mark.parametrize("name", ["logme", "hscore", "knn_cosine"])
def test_95_percent_intervals_cover_the_population_answer(name):
    """The estimand is the score's expected value at this N over fresh samples of the
    population (found by Monte Carlo); ≥ 200 repeats of sample → interval must cover it in
    90–99 % of them. LogME and k-NN accuracy change with N, so a subsample interval that is
    not re-centred on the full-N value fails this."""
    fn = TR.metric(name).fn
    n_per_class, shift, fraction, n_boot = (40, 30, 30), 1.2, 0.5, 20
    truth_rng = np.random.default_rng(123)
    truth = np.mean([fn(*_draw(truth_rng, n_per_class, shift)) for _ in range(1500)])
    rng = np.random.default_rng(0)
    hits, repeats = 0, 200
    for _ in range(repeats):
        x, y = _draw(rng, n_per_class, shift)
        point = fn(x, y)
        reps = [fn(x[i], y[i]) for i in _half_samples(rng, y, fraction, n_boot)]
        low, high = TR.subsample_interval(point, reps, fraction)
        assert low <= point <= high
        hits += low <= truth <= high
    assert 0.90 <= hits / repeats <= 0.99, (name, hits / repeats)


def test_subsample_interval_rescales_the_spread_and_refuses_bad_input():
    # the mean of m of N values without replacement: sd(θ_m) = sd(θ_N)·√((N−m)/m) → scale 1 at f = 1/2
    low, high = TR.subsample_interval(0.0, [-1.0, 1.0], 0.5)
    t = stats.t.ppf(0.975, 1)
    assert np.isclose(high, t * np.std([-1.0, 1.0], ddof=1)) and np.isclose(low, -high)
    low8, high8 = TR.subsample_interval(0.0, [-1.0, 1.0], 0.8)
    assert np.isclose(high8, high * 2)  # √(0.8/0.2) = 2
    assert np.isnan(TR.subsample_interval(0.0, [1.0], 0.5)[0])
    with pytest.raises(ValueError, match="fraction"):
        TR.subsample_interval(0.0, [1.0, 2.0], 1.0)


# --- agreement ---------------------------------------------------------------------------
def test_kendall_w_equals_its_definition_and_mean_spearman():
    rng = np.random.default_rng(0)
    for m, n in itertools.product((2, 5), (3, 7)):
        r = np.vstack([rng.permutation(n) + 1 for _ in range(m)]).astype(float)
        w = TR.kendall_w(r)
        sums = r.sum(0)
        brute = 12 * ((sums - sums.mean()) ** 2).sum() / (m ** 2 * (n ** 3 - n))
        assert np.isclose(w["W"], brute)
        rho = np.mean([stats.spearmanr(r[i], r[j]).statistic for i, j in itertools.combinations(range(m), 2)])
        assert np.isclose(rho, (m * w["W"] - 1) / (m - 1))
        assert np.isclose(w["p"], stats.chi2.sf(m * (n - 1) * w["W"], n - 1))
    assert TR.kendall_w(np.tile(np.arange(5.0), (4, 1)))["W"] == pytest.approx(1.0)  # identical orderings
    assert TR.kendall_w(np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]))["W"] == pytest.approx(0.0)  # opposite
    # raw scores on any scale are ranked first; ties use the corrected denominator
    assert TR.kendall_w(np.array([[0.1, 5.0, 9.0], [10.0, 20.0, 30.0]]))["W"] == pytest.approx(1.0)
    tied = TR.kendall_w(np.array([[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]))
    assert tied["W"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN"):
        TR.kendall_w(np.array([[1.0, np.nan], [1.0, 2.0]]))
