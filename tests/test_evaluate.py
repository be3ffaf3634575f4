import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from medmnist.evaluator import getACC, getAUC

from medtl.evaluate import acc, auc, bootstrap_ci


def _case(task, n, c, seed):
    rng = np.random.default_rng(seed)
    if task == "multi-label, binary-class":
        y = rng.integers(0, 2, (n, c))
        y[0], y[1] = 0, 1  # every label has both values
        s = rng.random((n, c))
    elif task == "binary-class":
        y = rng.integers(0, 2, (n, 1))
        y[0], y[1] = 0, 1
        s = rng.random((n, 2))
        s /= s.sum(1, keepdims=True)
    else:
        y = rng.integers(0, c, (n, 1))
        y[:c, 0] = np.arange(c)
        s = rng.random((n, c))
        s /= s.sum(1, keepdims=True)
    return y, s


TASKS = ["multi-class", "ordinal-regression", "binary-class", "multi-label, binary-class"]


@settings(max_examples=30, deadline=None)
@given(task=st.sampled_from(TASKS), n=st.integers(20, 300), c=st.integers(2, 14), seed=st.integers(0, 2**31))
def test_equal_to_medmnist(task, n, c, seed):
    y, s = _case(task, n, c, seed)
    assert abs(auc(y, s, task) - getAUC(y, s, task)) <= 1e-12
    assert abs(acc(y, s, task) - getACC(y, s, task)) <= 1e-12


def test_accepts_torch_and_flat_labels():
    y, s = _case("multi-class", 100, 5, 0)
    assert auc(torch.as_tensor(y[:, 0]), torch.as_tensor(s), "multi-class") == getAUC(y, s, "multi-class")
    yb, sb = _case("binary-class", 100, 2, 1)
    assert auc(yb[:, 0], sb[:, 1], "binary-class") == getAUC(yb, sb, "binary-class")


def test_perfect_and_inverted_scores():
    y = np.array([0, 1, 2, 0, 1, 2])
    s = np.eye(3)[y]
    assert auc(y, s, "multi-class") == 1.0 and acc(y, s, "multi-class") == 1.0
    assert auc(y, 1 - s, "multi-class") == 0.0


def test_errors():
    y, s = _case("multi-class", 50, 4, 0)
    with pytest.raises(ValueError, match="same number of rows"):
        auc(y[:-1], s, "multi-class")
    with pytest.raises(ValueError, match="unknown task 'multiclass'"):
        auc(y, s, "multiclass")
    with pytest.raises(ValueError, match="class 3: y_true has a single value"):
        auc(np.minimum(y, 2), s, "multi-class")
    with pytest.raises(ValueError, match=r"labels must lie in 0..3"):
        auc(y + 1, s, "multi-class")
    bad = s.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        auc(y, bad, "multi-class")


def test_bootstrap_ci():
    y, s = _case("multi-class", 300, 3, 2)
    s[np.arange(300), y[:, 0]] += 0.5  # informative scores
    a = bootstrap_ci(y, s, "multi-class", n_boot=200, seed=1)
    b = bootstrap_ci(y, s, "multi-class", n_boot=200, seed=1)
    assert a == b
    assert a["low"] < a["value"] < a["high"] and a["value"] == auc(y, s, "multi-class")
    # the interval shrinks with more data
    y4, s4 = np.tile(y, (4, 1)), np.tile(s, (4, 1))
    c = bootstrap_ci(y4, s4, "multi-class", n_boot=200, seed=1)
    assert (c["high"] - c["low"]) < (a["high"] - a["low"])
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci(y, s, "multi-class", alpha=1.5)


# --- the studies' other metrics, from their definitions, against scikit-learn ----------------
@settings(max_examples=40, deadline=None)
@given(n=st.integers(8, 120), c=st.integers(2, 6), seed=st.integers(0, 10_000),
       weights=st.sampled_from(["quadratic", "linear", None]))
def test_kappa_and_balanced_accuracy_equal_sklearn(n, c, seed, weights):
    from sklearn.metrics import balanced_accuracy_score, cohen_kappa_score

    from medtl.evaluate import balanced_accuracy, kappa

    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    scores = rng.random((n, c)) + np.eye(c)[y] * rng.random()  # partly informative
    pred = scores.argmax(1)
    ref = cohen_kappa_score(y, pred, labels=np.arange(c), weights=weights)
    assert kappa(y, scores, "multi-class", weights) == pytest.approx(ref, abs=1e-12) or (
        np.isnan(ref) and kappa(y, scores, "multi-class", weights) == 1.0)
    assert balanced_accuracy(y, scores, "ordinal-regression") == pytest.approx(
        balanced_accuracy_score(y, pred), abs=1e-12)
    yb = rng.integers(0, 2, n)
    sb = rng.random(n)
    assert kappa(yb, sb, "binary-class", weights) == pytest.approx(
        cohen_kappa_score(yb, (sb > 0.5).astype(int), labels=[0, 1], weights=weights), abs=1e-12) or len(
        set((sb > 0.5).tolist()) | set(yb.tolist())) == 1


@settings(max_examples=40, deadline=None)
@given(n=st.integers(12, 150), c=st.integers(3, 6), seed=st.integers(0, 10_000), ties=st.booleans())
def test_auc_ovo_equals_sklearn(n, c, seed, ties):
    from sklearn.metrics import roc_auc_score

    from medtl.evaluate import auc_ovo

    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(c), rng.integers(0, c, n - c)])
    p = rng.random((n, c)) + np.eye(c)[y] * rng.random()
    if ties:
        p = np.round(p, 1) + 0.05
    p = p / p.sum(1, keepdims=True)
    ref = roc_auc_score(y, p, multi_class="ovo", average="macro", labels=np.arange(c))
    assert auc_ovo(y, p, "multi-class") == pytest.approx(ref, abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(6, 120), c=st.integers(2, 5), seed=st.integers(0, 10_000), ties=st.booleans(),
       task=st.sampled_from(["binary-class", "multi-class", "multi-label, binary-class"]))
def test_auc_equals_sklearn_per_column_with_and_without_ties(n, c, seed, ties, task):
    """medtl's rank-sum AUC equals scikit-learn's trapezoidal ROC area, column by column."""
    from sklearn.metrics import roc_auc_score

    from medtl.evaluate import per_class_auc

    rng = np.random.default_rng(seed)
    cols = 1 if task == "binary-class" else c
    if task == "multi-label, binary-class":
        y = rng.integers(0, 2, (n, cols))
        y[:2] = [[0] * cols, [1] * cols]  # every label has both values
    else:
        y = np.concatenate([np.arange(max(cols, 2)), rng.integers(0, max(cols, 2), n)])
    s = rng.random((len(y), max(cols, 2)))
    if ties:
        s = np.round(s, 1)
    onehot = y if y.ndim == 2 else np.eye(s.shape[1])[y]
    ref = [roc_auc_score(onehot[:, i], s[:, i]) for i in range(s.shape[1])]
    if task == "binary-class":
        ref = [ref[-1]]
    assert per_class_auc(y, s, task) == pytest.approx(ref, abs=1e-12)
    assert auc(y, s, task) == pytest.approx(np.mean(ref), abs=1e-12)


def test_study_metrics_on_known_cases():
    from medtl.evaluate import auc_ovo, balanced_accuracy, kappa

    y = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.eye(3)[y]
    assert kappa(y, perfect, "multi-class") == 1.0 and balanced_accuracy(y, perfect, "multi-class") == 1.0
    assert auc_ovo(y, perfect, "multi-class") == 1.0
    # always predicting class 0: recall 1, 0, 0 → 1/3; κ = 0 (no agreement beyond chance)
    const = np.tile([1.0, 0.0, 0.0], (6, 1))
    assert balanced_accuracy(y, const, "multi-class") == pytest.approx(1 / 3)
    assert kappa(y, const, "multi-class") == pytest.approx(0.0)
    # quadratic weights punish a 0↔2 confusion 4× a 0↔1 one
    near, far = np.eye(3)[[1, 0, 1, 1, 2, 2]], np.eye(3)[[2, 0, 1, 1, 2, 2]]
    assert kappa(y, far, "multi-class") < kappa(y, near, "multi-class")
    with pytest.raises(ValueError, match="weights must be 'quadratic', 'linear' or None"):
        kappa(y, perfect, "multi-class", weights="cubic")


@pytest.mark.parametrize("task,c", [("multi-class", 4), ("binary-class", 2), ("multi-label, binary-class", 3),
                                    ("ordinal-regression", 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_micro_and_weighted_auc_equal_sklearn(task, c, seed):
    """micro = one ROC over the flattened one-hot labels vs scores (the hidden-representations
    study's v2 AUC, exact); weighted = prevalence-weighted one-vs-rest (its v1 AUC)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    n = 300
    if task.startswith("multi-label"):
        y = (rng.random((n, c)) < [0.2, 0.5, 0.7]).astype(int)
        s = np.round(np.clip(y * 0.3 + rng.random((n, c)), 0, 1), 2)  # rounded: ties included
        onehot = y
    else:
        y = rng.choice(c, size=n, p=np.linspace(1, 3, c) / np.linspace(1, 3, c).sum())
        logits = rng.normal(size=(n, c)) + np.eye(c)[y]
        s = np.round(np.exp(logits) / np.exp(logits).sum(1, keepdims=True), 2)
        onehot = np.eye(c)[y]
    assert auc(y, s, task, average="micro") == pytest.approx(roc_auc_score(onehot.ravel(), s.ravel()), abs=1e-12)
    if task == "binary-class":
        assert auc(y, s, task, average="weighted") == pytest.approx(roc_auc_score(y, s[:, 1]), abs=1e-12)
        # a 1-D positive-class score is read as the two columns [1 − s, s]
        assert auc(y, s[:, 1], task, average="micro") == pytest.approx(
            roc_auc_score(onehot.ravel(), np.stack([1 - s[:, 1], s[:, 1]], 1).ravel()), abs=1e-12)
    elif task.startswith("multi-label"):
        assert auc(y, s, task, average="weighted") == pytest.approx(roc_auc_score(y, s, average="weighted"), abs=1e-12)
    else:
        p = s / s.sum(1, keepdims=True)  # sklearn's ovr needs rows summing to 1; AUC is per column
        ref = roc_auc_score(y, p, multi_class="ovr", average="weighted")
        per = [roc_auc_score(y == k, p[:, k]) for k in range(c)]
        assert ref == pytest.approx(np.average(per, weights=np.bincount(y, minlength=c)), abs=1e-12)
        assert auc(y, p, task, average="weighted") == pytest.approx(ref, abs=1e-12)
    assert auc(y, s, task) == auc(y, s, task, average="macro")
    with pytest.raises(ValueError, match=r"average must be one of \('macro', 'micro', 'weighted'\), got 'mean'"):
        auc(y, s, task, average="mean")
