"""ipywidgets explorer to compare sources. The logic is plain functions on tables
(``ranking``, ``scatter``, ``source_detail``), so it is testable without a browser; the
:class:`SourceExplorer` only wires controls to them."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from . import analysis
from . import plots as P


def load_tables(results_source: str, scenario: str = "dataset", results_dir=None,
                published_dir=None) -> tuple[dict, pd.DataFrame]:
    """Scores ``{metric: sources × targets}`` and ground-truth AUC for the explorer
    (:func:`medtl.analysis.load_results`)."""
    return analysis.load_results("transferability", results_source, results_dir, published_dir, scenario=scenario)


def ranking(scores: dict, auc: pd.DataFrame, target: str, metrics, exclude_self: bool = True) -> pd.DataFrame:
    """One row per candidate source on ``target``: fine-tuned AUC and its rank, then each
    metric's score and rank (1 = predicted best), sorted by true AUC."""
    if target not in auc.columns:
        raise ValueError(f"target {target!r} has no ground truth; targets: {', '.join(auc.columns)}")
    table = pd.DataFrame({"auc": auc[target]})
    for m in metrics:
        if m not in scores:
            raise ValueError(f"unknown metric {m!r}; available: {', '.join(scores)}")
        table[m] = scores[m][target].reindex(table.index) if target in scores[m] else np.nan
    if exclude_self:
        table = table.drop(index=target, errors="ignore")
    table = table.dropna(subset=["auc"])
    table.insert(1, "auc_rank", table.auc.rank(ascending=False, method="min"))
    for m in metrics:
        table[f"{m}_rank"] = table[m].rank(ascending=False, method="min")
    return table.sort_values("auc", ascending=False)


def scatter(scores: dict, auc: pd.DataFrame, target: str, metrics):
    """Score (x) vs fine-tuned AUC (y) on ``target``, one panel per metric, with τ_w
    (:func:`medtl.plots.score_vs_auc` on one target)."""
    ranking(scores, auc, target, metrics)  # validates target and metrics
    tidy = analysis.tidy_scores({m: scores[m][[target]] for m in metrics if target in scores[m]})
    return P.score_vs_auc(tidy, auc[[target]], list(metrics))


def source_detail(scores: dict, auc: pd.DataFrame, source: str) -> pd.DataFrame:
    """One source across targets: its fine-tuned AUC and rank among sources, and every
    metric's score."""
    if source not in auc.index:
        raise ValueError(f"source {source!r} not in the results; sources: {', '.join(auc.index)}")
    out = pd.DataFrame({"auc": auc.loc[source], "auc_rank": auc.rank(ascending=False).loc[source]})
    for m, t in scores.items():
        if source in t.index:
            out[m] = t.loc[source].reindex(out.index)
    return out


def rank_view(tables: dict, target: str, metrics) -> pd.DataFrame:
    """The recommendation of a ranking run on ``target`` (best first: mean rank over the
    metrics with 1 = best, interval, resolved) with each chosen metric's score beside it."""
    rec = tables["recommendation"]
    rec = rec[rec.target == target]
    if rec.empty:
        raise ValueError(f"no ranking of target {target!r}; ranked targets: {', '.join(tables['recommendation'].target.unique())}")
    scores = tables["rank_scores"]
    scores = scores[(scores.target == target) & scores.metric.isin(list(metrics))]
    wide = scores.pivot_table(index="source", columns="metric", values="score", aggfunc="last")
    view = rec.drop(columns=["target"]).set_index("source").join(wide)
    ver = tables.get("verification")
    if ver is not None and not ver.empty and target in set(ver.target):
        view = view.join(ver[ver.target == target].set_index("source")[["test_auc"]])
    return view


def rank_figure(tables: dict, target: str, metrics):
    """:func:`medtl.plots.ranking` of a ranking run on ``target`` over the chosen metrics."""
    rec = tables["recommendation"]
    scores = tables["rank_scores"]
    return P.ranking(scores[scores.target == target], rec[rec.target == target], list(metrics),
                     title=f"{target}: recommended sources")


class SourceExplorer:
    """Dropdowns for results source, scenario, target, metrics and one source; shows the
    ranking table, the score-vs-AUC scatter and the source's detail. It opens on medtl's
    own results under the results root (``$MEDTL_RESULTS``, else the checkout's
    ``results/``) when there are any, and on the studies' published tables otherwise.
    Results source ``"rank"`` shows ``medtl rank`` runs: the recommendation with its
    intervals and the ranking figure (fine-tuned AUCs where a run verified).

    ``explorer.widget`` is the ipywidgets box; ``explorer.table`` / ``explorer.detail`` hold
    the DataFrames shown."""

    def __init__(self, results_source: str | None = None, scenario: str = "dataset", results_dir=None,
                 published_dir=None, metrics=("leep", "nleep", "logme", "lp_fu")) -> None:
        import ipywidgets as w

        self.results_dir, self.published_dir = results_dir, published_dir
        if results_source is None:  # your own runs when there are any (e.g. the demo's), else the studies' tables
            results_source = "medtl" if analysis.medtl_scenarios(results_dir) else "published"
        self.results_source = w.ToggleButtons(options=["published", "medtl", "rank"], value=results_source,
                                              description="results")
        self.scenario = w.ToggleButtons(options=["dataset", "model"], value=scenario, description="scenario")
        self.target = w.Dropdown(description="target")
        self.metrics = w.SelectMultiple(description="metrics", rows=6)
        self.source = w.Dropdown(description="source")
        self.message = w.HTML()
        self.out_table, self.out_plot, self.out_detail = w.Output(), w.Output(), w.Output()
        self.table = self.detail = self.rank_tables = None
        self._wanted_metrics = tuple(metrics)
        self._loading = False
        self._reload()
        for control in (self.results_source, self.scenario):
            control.observe(lambda change: self._reload(), names="value")
        for control in (self.target, self.metrics):
            control.observe(lambda change: self.update(), names="value")
        self.source.observe(lambda change: self._update_detail(), names="value")
        self.widget = w.VBox([w.HBox([self.results_source, self.scenario]), w.HBox([self.target, self.metrics]),
                              self.message, self.out_table, self.out_plot, self.source, self.out_detail])

    def _reload(self) -> None:
        self._loading = True  # control changes below must not render half-updated state
        try:
            self._load()
        finally:
            self._loading = False
        self.update()

    def _scenario(self) -> str:
        """The scenario to load: the toggle's, except for medtl results that record a single
        scenario (then the toggle does nothing and is disabled)."""
        if self.results_source.value != "medtl":
            self.scenario.disabled = False
            return self.scenario.value
        found = analysis.medtl_scenarios(self.results_dir)
        self.scenario.disabled = len(found) <= 1
        return self.scenario.value if self.scenario.value in found or not found else found[0]

    def _load(self) -> None:
        if self.results_source.value == "rank":
            self._load_rank()
            return
        self.rank_tables = None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.scores, self.auc = load_tables(self.results_source.value, self._scenario(), self.results_dir,
                                                    self.published_dir)
        except (FileNotFoundError, ValueError) as err:
            self.scores, self.auc = {}, pd.DataFrame()
            self.message.value = f"<b>no results:</b> {err}"
            return
        self.message.value = ""
        targets = [t for t in self.auc.columns if any(t in s.columns for s in self.scores.values())]
        metrics = list(self.scores)
        self.metrics.options = metrics
        self.metrics.value = tuple(m for m in self._wanted_metrics if m in metrics) or tuple(metrics[:3])
        self.source.options = list(self.auc.index)
        if self.source.value is None and len(self.auc.index):
            self.source.value = self.auc.index[0]
        self.target.options = targets
        if targets and self.target.value not in targets:
            self.target.value = targets[0]

    def _load_rank(self) -> None:
        self.scenario.disabled = True
        self.scores, self.auc = {}, pd.DataFrame()
        try:
            self.rank_tables = analysis.rank_results(self.results_dir)
        except FileNotFoundError as err:
            self.rank_tables = None
            self.message.value = f"<b>no results:</b> {err}"
            return
        self.message.value = ""
        scores = self.rank_tables["rank_scores"]
        metrics = list(dict.fromkeys(scores.metric))
        self.metrics.options = metrics
        self.metrics.value = tuple(m for m in self._wanted_metrics if m in metrics) or tuple(metrics[:4])
        targets = list(dict.fromkeys(self.rank_tables["recommendation"].target))
        self.target.options = targets
        if targets and self.target.value not in targets:
            self.target.value = targets[0]
        self.source.options = sorted(set(scores.source))

    def update(self) -> None:
        """Recompute the ranking table and scatter for the current target and metrics."""
        from IPython.display import display

        if self._loading or self.target.value is None or not self.metrics.value:
            return
        if self.results_source.value == "rank":
            if self.rank_tables is None:
                return
            self.table = rank_view(self.rank_tables, self.target.value, list(self.metrics.value))
            self.out_table.clear_output(wait=True)
            with self.out_table:
                display(self.table.round(4))
            self.out_plot.clear_output(wait=True)
            with self.out_plot:
                display(P.png(rank_figure(self.rank_tables, self.target.value, list(self.metrics.value))))
            self._update_detail()
            return
        if not self.scores:
            return
        self.table = ranking(self.scores, self.auc, self.target.value, list(self.metrics.value))
        self.out_table.clear_output(wait=True)
        with self.out_table:
            display(self.table.round(4))
        self.out_plot.clear_output(wait=True)
        with self.out_plot:
            display(P.png(scatter(self.scores, self.auc, self.target.value, list(self.metrics.value))))
        self._update_detail()

    def _update_detail(self) -> None:
        from IPython.display import display

        if self._loading or self.source.value is None:
            return
        if self.results_source.value == "rank":
            if self.rank_tables is None:
                return
            s = self.rank_tables["rank_scores"]
            self.detail = s[(s.source == self.source.value) & (s.target == self.target.value)].set_index("metric")[
                ["score", "low", "high", "seconds"]]
        elif self.auc.empty:
            return
        else:
            self.detail = source_detail(self.scores, self.auc, self.source.value)
        self.out_detail.clear_output(wait=True)
        with self.out_detail:
            display(self.detail.round(4))
