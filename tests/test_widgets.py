import pandas as pd
import pytest

from medtl import widgets as W


@pytest.fixture
def tables():
    auc = pd.DataFrame({"t1": {"a": 0.9, "b": 0.8, "c": 0.7, "t1": 0.95}, "t2": {"a": 0.6, "b": 0.7, "c": 0.8, "t1": 0.5}})
    scores = {"m1": auc * 2, "m2": -auc}
    return scores, auc


def test_ranking_and_detail(tables):
    scores, auc = tables
    r = W.ranking(scores, auc, "t1", ["m1", "m2"])
    assert list(r.index) == ["a", "b", "c"]  # the target itself is left out
    assert r.m1_rank.tolist() == [1, 2, 3] and r.m2_rank.tolist() == [3, 2, 1]
    d = W.source_detail(scores, auc, "b")
    assert d.loc["t2", "auc_rank"] == 2 and d.loc["t1", "m1"] == 1.6
    with pytest.raises(ValueError, match="unknown metric 'm3'"):
        W.ranking(scores, auc, "t1", ["m3"])
    with pytest.raises(ValueError, match="target 'x' has no ground truth"):
        W.ranking(scores, auc, "x", ["m1"])


def _medtl_results(folder):
    """A finished transferability run and fine-tuning run in medtl's record format."""
    from medtl import results as rs

    scores = pd.DataFrame({"source": ["a", "b", "a", "b"], "target": "t1", "metric": ["leep", "leep", "lp_fu", "lp_fu"],
                           "value": [0.1, 0.2, 1.0, 0.0], "seconds": 0.0})
    rs.record(scores, folder / "transferability", "scores")
    ft = pd.DataFrame({"source": ["a", "b"], "target": "t1", "config_id": ["x", "y"], "val_loss": [0.3, 0.4],
                       "test_auc": [0.9, 0.8], "selected": True})
    rs.record(ft, folder / "finetune", "finetune")


def test_explorer_reacts_to_controls(tmp_path):
    explorer = W.SourceExplorer("published", "dataset", results_dir=tmp_path, metrics=("leep", "lp_fu"))
    assert not explorer.auc.empty  # the published tables ship with medtl
    assert explorer.target.value == "bloodmnist" and explorer.metrics.value == ("leep", "lp_fu")
    assert explorer.table.index[0] == "imagenet" and "bloodmnist" not in explorer.table.index
    explorer.target.value = "dermamnist"
    assert explorer.table.auc.max() == explorer.auc.drop(index="dermamnist")["dermamnist"].max()
    explorer.source.value = "radimagenet"
    assert explorer.detail.loc["dermamnist", "auc"] == explorer.auc.loc["radimagenet", "dermamnist"]
    explorer.scenario.value = "model"
    assert "densenet" in explorer.source.options and explorer.table.shape[0] == 9
    explorer.target.value = "pneumoniamnist"
    explorer.results_source.value = "medtl"  # no medtl results yet: a message, not a crash
    assert "no results" in explorer.message.value
    _medtl_results(tmp_path)
    explorer.results_source.value = "published"
    explorer.results_source.value = "medtl"
    assert explorer.message.value == "" and explorer.target.value == "t1"
    assert list(explorer.table.index) == ["a", "b"] and explorer.metrics.value == ("leep", "lp_fu")


def test_explorer_shows_rank_runs(tmp_path):
    """`medtl rank` output in the explorer: the recommendation table with the chosen metrics'
    scores, the ranking figure, and a source's scores with their intervals."""
    import medtl.transfer as TR
    from medtl import analysis

    rec = pd.DataFrame({"rank": [1, 2], "source": ["a", "b"], "mean_rank": [1.0, 2.0], "low": [1.0, 1.7],
                        "high": [1.2, 2.0], "resolved": [True, True]})
    scores = pd.DataFrame({"source": ["a", "b", "a", "b"], "target": "mine", "metric": ["logme", "logme", "gbc", "gbc"],
                           "kind": "features", "score": [1.0, 0.5, -1.0, -2.0], "low": [0.9, 0.4, -1.1, -2.2],
                           "high": [1.1, 0.6, -0.9, -1.8], "seconds": 0.1, "self_source": False})
    ranking = TR.Ranking("mine", 40, scores, rec, pd.DataFrame(columns=["source", "spec", "metric", "reason"]),
                          ["logme", "gbc"])
    analysis.record_ranking(ranking, tmp_path / "rank" / "mine")
    explorer = W.SourceExplorer("rank", results_dir=tmp_path, metrics=("logme",))
    assert explorer.message.value == "" and explorer.target.value == "mine"
    assert list(explorer.table.index) == ["a", "b"] and "logme" in explorer.table and "gbc" not in explorer.table
    explorer.metrics.value = ("logme", "gbc")
    assert "gbc" in explorer.table
    explorer.source.value = "b"
    assert explorer.detail.loc["gbc", "low"] == -2.2
    explorer.results_source.value = "published"
    assert explorer.rank_tables is None and not explorer.auc.empty
    (tmp_path / "none").mkdir()
    empty = W.SourceExplorer("rank", results_dir=tmp_path / "none")
    assert "no finished ranking runs" in empty.message.value
