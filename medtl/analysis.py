"""Analysis helpers behind the analysis notebooks and ``medtl report``: read the published
tables of the studies or medtl's own results into the same shapes, evaluate the metrics,
and write the studies' figures."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import plots as P
from . import results as rs
from . import transfer as TR

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = REPO.parent / "shared" / "data" / "published"
#: The seven methods compared in the dataset-transferability study, in its file order.
STUDY_METHODS = ("logme", "sfda", "leep", "parc", "ncti", "nleep", "ours")
#: The study's scenario-B sign choices (reversed metrics).
SCENARIO_B_FLIPS = ("parc", "ncti", "leep", "nleep")


def published_dir(path: str | os.PathLike | None = None) -> Path:
    """The published-tables folder: ``path``, else ``$MEDTL_PUBLISHED``, else
    ``../shared/data/published`` beside the checkout."""
    p = Path(path or os.environ.get("MEDTL_PUBLISHED") or PUBLISHED)
    if not p.is_dir():
        raise FileNotFoundError(f"published tables not found at {p}; set MEDTL_PUBLISHED or pass the folder")
    return p


def _read_wide(file: Path) -> pd.DataFrame:
    return pd.read_csv(file, index_col=0).set_index("source")


def published_transferability(scenario: str = "dataset", folder=None) -> tuple[dict, pd.DataFrame]:
    """The dataset-transferability study's released scores and ground truth for scenario
    ``"dataset"`` (A) or ``"model"`` (B): ``({metric: sources × targets}, AUC table)``.
    "ours" is LP×FU computed by :func:`medtl.transfer.lp_fu` from ``lp_*``/``fu_*`` with the
    study's conventions (scenario B reversed, its sign flips applied to the baselines);
    ``lp`` and ``fu`` are kept for the ablation. AUCs are fractions in both scenarios."""
    if scenario not in ("dataset", "model"):
        raise ValueError(f"scenario must be 'dataset' or 'model', got {scenario!r}")
    res = published_dir(folder) / "dataset-transferability" / "results"
    scores = {m: _read_wide(res / f"{m}_{scenario}.csv") for m in ("logme", "parc", "sfda", "ncti", "leep", "nleep")}
    lp, fu = _read_wide(res / f"lp_{scenario}.csv"), _read_wide(res / f"fu_{scenario}.csv")
    if scenario == "model":
        scores = TR.flip(scores, SCENARIO_B_FLIPS)
    scores["ours"] = TR.lp_fu(lp, fu, reverse=scenario == "model", variant="study")
    scores["lp"], scores["fu"] = lp, fu
    auc = _read_wide(res / f"AUCs_{scenario}.csv")
    if scenario == "model":
        auc = auc / 100
    return scores, auc


def medtl_transferability(results_dir: str | os.PathLike) -> tuple[dict, pd.DataFrame]:
    """medtl's own scores (``scores`` tables of transferability runs) and ground truth
    (selected test AUC of ``finetune`` runs) under ``results_dir``, as
    ``({metric: sources × targets}, AUC table)``; ``lp_fu`` is reported as "ours"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = rs.load(results_dir, "scores")
        ft = rs.load(results_dir, "finetune")
    if scores.empty or ft.empty:
        raise FileNotFoundError(f"no finished transferability ('scores') and fine-tuning ('finetune') runs under "
                                f"{results_dir}")
    scores = scores[scores.metric != "features"].replace({"metric": {"lp_fu": "ours"}})
    wide = {m: g.pivot_table(index="source", columns="target", values="value", aggfunc="last")
            for m, g in scores.groupby("metric", sort=False)}
    sel = ft[ft.selected]
    auc = sel.pivot_table(index="source", columns="target", values="test_auc", aggfunc="last")
    return wide, auc


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
    return out


def transferability_figures(scores: dict, auc: pd.DataFrame, result: dict, out_dir: str | os.PathLike,
                            prefix: str = "") -> dict[str, Path]:
    """τ_w bars, the rank heatmap, the CD diagram, the score-vs-AUC grid and AUC dots as
    PNGs in ``out_dir``; returns ``{figure: path}``."""
    out = Path(out_dir)
    files = {"tau_bars": P.save(P.tau_bars(result["corr"][result["corr"].metric.isin(result["methods"])]),
                                out / f"{prefix}tau_bars.png"),
             "ranks": P.save(P.rank_table(result["ranks"]), out / f"{prefix}ranks.png"),
             "auc_dots": P.save(P.auc_dots(auc), out / f"{prefix}auc_dots.png")}
    if "cd" in result:
        files["cd"] = P.save(P.cd_diagram(result["ranks"], result["cd"]), out / f"{prefix}cd_diagram.png")
    tidy = pd.concat([t.stack().rename("value").rename_axis(["source", "target"]).reset_index().assign(metric=m)
                      for m, t in scores.items() if m in result["methods"]], ignore_index=True)
    targets = list(auc.columns)[:6]
    files["score_vs_auc"] = P.save(P.score_vs_auc(tidy[tidy.target.isin(targets)], auc, result["methods"]),
                                   out / f"{prefix}score_vs_auc.png")
    return files


# --- fine-tuned AUCs -----------------------------------------------------------------------
def published_finetuning(folder=None, scenario: str = "dataset") -> pd.DataFrame:
    """Every released fine-tuning run (scenario ``"dataset"``: ``fined_<t>.csv``; ``"model"``:
    ``fined_<t>_imnet.csv``) with columns source, target, lr, momentum, wd, batch_size,
    status, val_loss, val_auc, test_auc."""
    base = published_dir(folder) / "dataset-transferability" / "finetuned_AUCs"
    files = sorted(base.glob("fined_*_imnet.csv" if scenario == "model" else "fined_*.csv"))
    if scenario == "dataset":
        files = [f for f in files if not f.stem.endswith("_imnet")]
    frames = []
    for f in files:
        t = pd.read_csv(f, low_memory=False)
        src_col = "model" if scenario == "model" and "source_flag" not in t else "source_flag"
        frames.append(pd.DataFrame({
            "source": t[src_col] if src_col in t else t["source_flag"], "target": t["target_flag"], "lr": t["lr"],
            "momentum": t["momentum"], "wd": t["wd"], "batch_size": t["batch_size"], "status": t["Status"],
            "val_loss": t["val_loss"], "val_auc": t["val_auc"], "test_auc": t["test_auc"]}))
    return pd.concat(frames, ignore_index=True)


def select_min_val_loss(runs: pd.DataFrame) -> pd.DataFrame:
    """The study's ground truth: per (source, target) the run with minimum val loss among
    runs with a test AUC (failed runs skipped)."""
    ok = runs.dropna(subset=["val_loss", "test_auc"])
    return ok.loc[ok.groupby(["source", "target"]).val_loss.idxmin()].reset_index(drop=True)


# --- representations -----------------------------------------------------------------------
def published_representations(folder=None) -> dict[str, pd.DataFrame]:
    """The hidden-representations study's tables: ``cca`` (all targets, tidy: target, model1,
    model2, fold, layer, cca), ``similarity`` (P_obs/P_ind), ``auc``, and ``sim_vs_auc``
    (CCA of fine-tuned vs its init with the relative AUC gain over random init)."""
    base = published_dir(folder) / "revisiting-representations" / "results"
    layers = ["conv1", "block1", "block2", "block3", "block4"]
    cca = []
    for f in sorted(base.glob("CCA_*.csv")):
        t = pd.read_csv(f)
        t = t.melt(id_vars=["model1", "model2", "fold", "stimuli"], value_vars=layers, var_name="layer",
                   value_name="cca")
        cca.append(t.rename(columns={"stimuli": "target"}))
    auc = pd.read_csv(base / "AUC.csv")
    sims = []
    for source, file in (("ImageNet", "simVSaucImNet.csv"), ("RadImageNet", "simVSaucRadNet.csv")):
        t = pd.read_csv(base / file).melt(id_vars=["model1", "model2", "fold", "stimuli"], value_vars=layers,
                                          var_name="layer", value_name="similarity")
        t = t.rename(columns={"stimuli": "target"}).assign(source=source)
        ft = auc[(auc.source == source) & (auc.freeze == "freezeFalse")][["target", "fold", "AUC"]]
        rnd = auc[auc.source == "random"][["target", "fold", "AUC"]].rename(columns={"AUC": "AUC_random"})
        t = t.merge(ft, on=["target", "fold"]).merge(rnd, on=["target", "fold"])
        t["auc_gain"] = (t.AUC - t.AUC_random) / t.AUC_random
        sims.append(t)
    return {"cca": pd.concat(cca, ignore_index=True), "similarity": pd.read_csv(base / "similarity.csv"),
            "auc": auc, "sim_vs_auc": pd.concat(sims, ignore_index=True)}


def correlation_by_layer(table: pd.DataFrame, x: str = "similarity", y: str = "auc_gain",
                         by=("source", "layer")) -> pd.DataFrame:
    """Pearson and Spearman correlation of x and y within each group."""
    from scipy import stats

    rows = []
    for key, g in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(by, key)), "pearson": stats.pearsonr(g[x], g[y]).statistic,
                     "spearman": stats.spearmanr(g[x], g[y]).statistic, "n": len(g)})
    return pd.DataFrame(rows)


def round_table(t: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    return t.apply(lambda c: c.round(digits) if np.issubdtype(c.dtype, np.number) else c)
