"""Evaluation realism (#15): static baselines, the paired permutation test, the noise
ceiling and the leave-one-target-out ensemble, each against a definition or a known answer."""

import itertools

import numpy as np
import pandas as pd
import pytest

import medtl.models as M
import medtl.transfer as TR
from medtl.analysis import sources as S


def _corr(a, b):
    return pd.DataFrame([{"metric": "a", "target": f"t{i}", "tau_w": x} for i, x in enumerate(a)]
                        + [{"metric": "b", "target": f"t{i}", "tau_w": x} for i, x in enumerate(b)])


def test_paired_permutation_equals_explicit_sign_enumeration():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(-1, 1, 7), rng.uniform(-1, 1, 7)
    d = a - b
    ref = np.mean([abs(np.mean(np.array(s) * d)) >= abs(d.mean()) - 1e-12
                   for s in itertools.product([-1, 1], repeat=7)])
    res = TR.paired_permutation(_corr(a, b), "a", "b")
    assert res["exact"] and res["pvalue"] == pytest.approx(ref) and res["mean_diff"] == pytest.approx(d.mean())
    # a metric that beats another on all 8 targets: p = 2/2^8 (only the all-+ and all-− patterns)
    assert TR.paired_permutation(_corr(np.full(8, 0.6) + np.arange(8) / 100, np.zeros(8)), "a", "b")["pvalue"] == 2 / 256
    # identical metrics: p = 1
    assert TR.paired_permutation(_corr(a, a), "a", "b")["pvalue"] == 1.0
    big = TR.paired_permutation(_corr(rng.normal(size=40), rng.normal(size=40)), "a", "b", n_perm=2000)
    assert not big["exact"] and 0 < big["pvalue"] <= 1
    with pytest.raises(ValueError, match="'c' is not in"):
        TR.paired_permutation(_corr(a, b), "a", "c")


def test_noise_ceiling_is_one_for_identical_seeds_and_low_for_noise():
    rng = np.random.default_rng(1)
    auc = rng.uniform(0.7, 0.9, 8)
    rows = [{"source": f"s{i}", "target": "t", "seed": seed, "test_auc": auc[i]} for seed in (0, 1, 2) for i in range(8)]
    out = TR.noise_ceiling(pd.DataFrame(rows)).set_index("target")
    assert out.loc["t", "ceiling"] == pytest.approx(1.0) and out.loc["t", "n_seeds"] == 3
    noisy = [{"source": f"s{i}", "target": t, "seed": seed, "test_auc": rng.normal()} for t in ("u", "v")
             for seed in range(6) for i in range(10)]
    assert abs(TR.noise_ceiling(pd.DataFrame(noisy)).set_index("target").loc["MEAN", "ceiling"]) < 0.25
    # the ceiling's pairs are exactly tau_w over ordered seed pairs
    two = pd.DataFrame([r for r in noisy if r["target"] == "u" and r["seed"] < 2])
    x = two[two.seed == 0].test_auc.to_numpy()
    y = two[two.seed == 1].test_auc.to_numpy()
    assert TR.noise_ceiling(two).ceiling[0] == pytest.approx((TR.tau_w(x, y) + TR.tau_w(y, x)) / 2)
    with pytest.raises(ValueError, match="at least 2"):
        TR.noise_ceiling(pd.DataFrame(rows[:8]))


def test_static_facts_of_models_and_published_sources():
    ri = TR.source_facts(M.create("resnet18", num_classes=2), "ri")
    assert ri.pretraining == "random" and ri.n_pretrain == 0 and ri.imagenet_top1 == pytest.approx(69.758)
    dense = TR.published_facts("densenet", "model")
    assert dense.arch == "densenet121" and dense.params == 7_978_856
    union = TR.published_facts("medmnist", "dataset", "bloodmnist")
    assert "bloodmnist" not in union.pretraining and union.n_pretrain > TR.published_facts("pathmnist", "dataset").n_pretrain
    assert TR.always_imagenet(TR.published_facts("imagenet", "dataset")) == 1.0
    table = TR.static_scores(["imagenet", "bloodmnist"], "dataset", ["pathmnist"])
    assert table["source_size"].loc["imagenet", "pathmnist"] == 1_281_167
    with pytest.raises(ValueError, match="unknown scenario-B source"):
        TR.published_facts("alexnet", "model")


def test_static_metrics_score_through_score():
    from medtl.data.synthetic import synthetic

    data = synthetic("texture-b", n=24, size=28)
    models = {"ri": M.create("resnet18", num_classes=2, seed=0)}
    table = TR.score(models, data, metrics=["model_size", "source_size", "always_imagenet"], progress=False)
    vals = table.set_index("metric").value
    assert vals["source_size"] == 0 and vals["always_imagenet"] == 0 and vals["model_size"] > 1e7


def test_loto_ensemble_on_the_published_tables_is_honest():
    scores, gt = S.published_transferability("dataset")
    single = TR.loto_ensemble(scores, gt, metrics=["lp_fu"], max_size=1)
    assert single.iloc[-1].tau_w == pytest.approx(0.523, abs=5e-4)  # one candidate: LP×FU itself
    both = TR.loto_ensemble(scores, gt, max_size=2)
    mean = both.set_index("target").loc["MEAN"]
    assert mean.low < mean.tau_w < mean.high
    # the chosen subset for a held-out target never depends on that target's ground truth
    gt2 = gt.copy()
    gt2["bloodmnist"] = gt2["bloodmnist"].to_numpy()[::-1]
    again = TR.loto_ensemble(scores, gt2, max_size=2).set_index("target")
    assert again.loc["bloodmnist", "chosen"] == both.set_index("target").loc["bloodmnist", "chosen"]


def test_loto_ensemble_finds_a_known_good_combination():
    rng = np.random.default_rng(3)
    srcs, tgts = [f"s{i}" for i in range(10)], [f"t{j}" for j in range(6)]
    gt = pd.DataFrame(rng.uniform(0.6, 0.9, (10, 6)), index=srcs, columns=tgts)
    scores = {"good": gt + rng.normal(scale=0.01, size=gt.shape), "noise": pd.DataFrame(rng.normal(size=(10, 6)),
                                                                                         index=srcs, columns=tgts)}
    out = TR.loto_ensemble(scores, gt, max_size=2).set_index("target")
    assert (out.drop("MEAN").chosen == "good").all() and out.loc["MEAN", "tau_w"] > 0.9
    with pytest.raises(ValueError, match="at least 3 targets"):
        TR.loto_ensemble({m: s.iloc[:, :2] for m, s in scores.items()}, gt.iloc[:, :2])
