"""The analyses behind the analysis notebooks and ``medtl report``: evaluate metrics against
ground truth and write each study's figures from tables in a common shape."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .. import plots as P
from .. import train as T
from .. import transfer as TR
from .sources import STUDY_METHODS


def evaluate_metrics(scores: dict, auc: pd.DataFrame, methods=None) -> dict:
    """Correlations, the τ_w table, method ranks, Friedman test, Nemenyi p-values and the
    critical difference for ``methods`` (default: those of the study present)."""
    methods = [m for m in (methods or STUDY_METHODS) if m in scores]
    extra = [m for m in scores if m not in methods]
    corr = TR.correlate({m: scores[m] for m in methods + extra}, auc)
    tau = TR.tau_table(corr)
    ranks = TR.ranks(corr, metrics=methods)
    out = {"corr": corr, "tau": tau, "ranks": ranks, "methods": methods}
    n, k = ranks.shape
    if k >= 3 and n >= 2:
        out["friedman"] = TR.friedman(ranks)
        out["nemenyi"] = TR.nemenyi(ranks)
        out["cd"] = TR.critical_difference(k, n)
    else:
        out["note"] = (f"Friedman / Nemenyi / critical difference omitted: they need at least 3 metrics and 2 "
                       f"targets, here {k} metric(s) on {n} target(s)")
    return out


def tidy_scores(scores: dict, metrics=None) -> pd.DataFrame:
    """``{metric: sources × targets}`` as a tidy (source, target, metric, value) table."""
    return pd.concat([t.stack().rename("value").rename_axis(["source", "target"]).reset_index().assign(metric=m)
                      for m, t in scores.items() if metrics is None or m in metrics], ignore_index=True)


def transferability_figures(scores: dict, auc: pd.DataFrame, result: dict, out_dir: str | os.PathLike,
                            prefix: str = "") -> dict[str, Path]:
    """τ_w bars, the rank heatmap, the CD diagram, the score-vs-AUC grid (every target) and
    AUC dots as PNGs in ``out_dir``; returns ``{figure: path}``."""
    out = Path(out_dir)
    corr = result["corr"][result["corr"].metric.isin(result["methods"])]
    files = {"tau_bars": P.save(P.tau_bars(corr), out / f"{prefix}tau_bars.png"),
             "ranks": P.save(P.rank_table(result["ranks"]), out / f"{prefix}ranks.png"),
             "auc_dots": P.save(P.auc_dots(auc), out / f"{prefix}auc_dots.png")}
    if "cd" in result:
        files["cd"] = P.save(P.cd_diagram(result["ranks"], result["cd"]), out / f"{prefix}cd_diagram.png")
    files["score_vs_auc"] = P.save(P.score_vs_auc(tidy_scores(scores, result["methods"]), auc, result["methods"]),
                                   out / f"{prefix}score_vs_auc.png")
    return files


# --- fine-tuned AUCs -----------------------------------------------------------------------
def select_min_val_loss(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's ground truth: per (source, target) the run with minimum val loss among
    runs with a test AUC (failed runs skipped) — :func:`medtl.train.select` per group."""
    ok = runs.dropna(subset=["val_loss", "test_auc"]).assign(status="finished")
    return T.select(ok, "min_val_loss", by=["source", "target"])


def finetuning_summary(runs: pd.DataFrame) -> dict:
    """Selected runs, the ground-truth table (sources × targets) and how often each
    hyper-parameter value wins."""
    selected = select_min_val_loss(runs)
    gt = selected.pivot_table(index="source", columns="target", values="test_auc", aggfunc="mean")
    wins = pd.concat({c: selected[c].value_counts().sort_index() for c in ("lr", "momentum", "wd")
                      if c in selected}, axis=1)
    return {"runs": runs, "selected": selected, "ground_truth": gt, "wins": wins}


# --- representations -----------------------------------------------------------------------
def correlation_by_layer(table: pd.DataFrame, x: str = "similarity", y: str = "auc_gain",
                         by=("source", "layer")) -> pd.DataFrame:
    """Pearson and Spearman correlation of x and y within each group."""
    rows = []
    for key, g in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "pearson": stats.pearsonr(g[x], g[y]).statistic,
                     "spearman": stats.spearmanr(g[x], g[y]).statistic, "n": len(g)})
    return pd.DataFrame(rows)


def representation_figures(tables: dict, results_source: str, out_dir: str | os.PathLike) -> dict:
    """Figures of the representation analyses: published — mean CCA of fine-tuned models to
    their initialisation per layer, prediction similarity P_obs vs P_ind, similarity vs AUC
    gain; medtl — the layer-pair heatmap and per-layer measures. Returns ``{"files",
    "table"}`` (the table the notebook shows)."""
    out = Path(out_dir)
    files = {}
    if results_source == "published":
        cca = tables["cca"]
        to_init = cca[cca.model1.str.endswith("freezeFalse") & cca.model2.isin(["ImageNet", "RadImageNet"])
                      & cca.model1.str.contains("ImageNet")]
        files["cca_to_init"] = P.save(P.layerwise(to_init.assign(init=to_init.model2), "cca", hue="init",
                                                  title="mean CCA: fine-tuned vs its initialisation"),
                                      out / "cca_to_init.png")
        sim = tables["similarity"]
        files["prediction_similarity"] = P.save(
            P.paired_boxes(sim[sim.freeze == "freezeFalse"], "target", "value", "prob",
                           "prediction similarity: observed (real) vs independent (rand)"),
            out / "prediction_similarity.png")
        sva = tables["sim_vs_auc"]
        files["similarity_vs_auc"] = P.save(P.similarity_vs_auc(sva[sva.source == "RadImageNet"]),
                                            out / "similarity_vs_auc.png")
        return {"files": files, "table": correlation_by_layer(sva)}
    cka, layers = tables.get("cka", pd.DataFrame()), tables.get("layers", pd.DataFrame())
    if cka.empty and layers.empty:
        raise FileNotFoundError("no similarity runs (tables 'cka' / 'layers') in these results")
    if not cka.empty:
        last = cka[cka.run_id == cka.run_id.iloc[-1]]
        files["cka"] = P.save(P.cka_heatmap(last), out / "cka.png")
    if not layers.empty and "measure" in layers:
        files["layers"] = P.save(P.layerwise(layers, "value", hue="measure"), out / "layers.png")
    return {"files": files, "table": layers}


def feature_reuse_figures(tables: dict, results_source: str, out_dir: str | os.PathLike) -> dict:
    """Published: similarity to the initialisation vs AUC gain per source (the
    hidden-representations study's evidence); medtl: the gain ratios and the layer-wise
    curves (k-NN, importance, L2, CKA) per initialisation."""
    out = Path(out_dir)
    files = {}
    if results_source == "published":
        table = tables["sim_vs_auc"]
        for source, g in table.groupby("source"):
            files[f"reuse_{source}"] = P.save(P.similarity_vs_auc(g), out / f"reuse_{source}.png")
        return {"files": files, "table": correlation_by_layer(table)}
    ratios, layers = tables.get("gain_ratios", pd.DataFrame()), tables.get("layers", pd.DataFrame())
    if ratios.empty:
        raise FileNotFoundError("no feature_reuse runs (table 'gain_ratios') in these results")
    for name, g in layers.groupby("analysis"):
        files[name] = P.save(P.layerwise(g, "value", hue="init", title=name), out / f"{name}.png")
    return {"files": files, "table": ratios}


def round_table(t: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    return t.apply(lambda c: c.round(digits) if np.issubdtype(c.dtype, np.number) else c)
