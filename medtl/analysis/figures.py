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

#: What each figure shows (one sentence), by file stem; the report prints it under the figure.
CAPTIONS: dict[str, str] = {
    "benchmark_bars": "Benchmark study: each initialisation's test AUC (classification) or global Dice "
                      "(segmentation), mean ± std over seeded trials per target; markers give a two-sample t-test "
                      "against the baseline (grey): * p < 0.05 … **** p < 1e-4, n.s. not significant.",
    "benchmark_auc_dice": "Benchmark study: classification AUC and segmentation Dice of each initialisation side by "
                          "side (mean ± std over trials, one dot per target).",
    "domain_adaptive": "Benchmark study: in-domain (ChestX-ray14, CheXpert) and domain-adaptive (ImageNet → chest "
                       "X-ray) pre-training against supervised ImageNet and scratch, mean ± std over trials, t-test "
                       "markers against ImageNet (grey).",
    "imagenet_vs_inat21": "Benchmark study: fine-grained iNat2021 against coarse-grained ImageNet pre-training and "
                          "scratch, mean ± std over trials, t-test markers against ImageNet (grey).",
    "ssl_vs_imagenet": "Benchmark study: each self-supervised ImageNet initialisation against supervised ImageNet "
                       "(grey), mean ± std over trials with t-test markers.",
    "tau_bars": "Weighted Kendall τ_w between each metric's scores and the fine-tuned test AUCs, per target "
                "(1: the metric orders the sources exactly as fine-tuning does; 0: unrelated).",
    "ranks": "Rank of each metric per target by τ_w (1 = best), with the mean rank when there are several targets.",
    "cd_diagram": "Critical-difference diagram: mean ranks of the metrics; bars join metrics whose ranks do not "
                  "differ significantly (Nemenyi, α = 0.05).",
    "cd_diagram_three": "Critical-difference diagram of the study's three strongest methods (LEEP, N-LEEP, "
                        "LP×FU), ranked among themselves.",
    "ablation": "τ_w per target of LP×FU and of its two halves alone (LP: feature quality; FU: feature update).",
    "score_vs_auc": "Each metric's score (x) against the fine-tuned test AUC (y) of every candidate source, one "
                    "panel per target, with its τ_w.",
    # one caption for both notebooks' copies of this figure, so a report shows it once
    "auc_dots": "Fine-tuned test AUC of each source per target, the run selected by minimum validation loss (the "
                "ground truth the metrics are judged by).",
    "auc_ci": "Fine-tuned test AUC of each source with its 95 % bootstrap confidence interval (over test images).",
    "cca_to_init": "Mean CCA between each fine-tuned model and its initialisation, per layer.",
    "prediction_similarity": "Error agreement of ImageNet- and RadImageNet-initialised models: observed (real) "
                             "against the agreement of independent models (rand).",
    "similarity_vs_auc": "Similarity of each fine-tuned model to its initialisation (x) against its relative AUC "
                         "gain over random initialisation (y), one row per source (the study's ImageNet and "
                         "RadImageNet rows) and one column per layer, with Pearson r and Spearman ρ per panel.",
    "cut_curves": "Test AUC and AUPRC of truncated transfer at each cut, against the full model (FTL) and the best "
                  "layer-wise fine-tuning (LWFT).",
    "pooling": "Pooling ablation of truncated transfer: test metrics per block-wise cut with a GAP + Linear and a "
               "Flatten + Linear head (lines), and each head's trainable parameters (bars).",
    "svcca_bottlenecks": "SVCCA between the pre-trained and the fine-tuned full model at each residual block output "
                         "(coloured by stage; grey: the pre-trained model against a random network, the baseline), "
                         "with the test AUPRC of the layer-wise TTL cut ending at that block.",
    "svcca_methods": "Sorted SVCCA coefficients per block between the pre-trained model and FTL and each method's "
                     "selected model (TF-2, LWFT-2, TTL-2 of the two-stage search); the legend gives the area (= "
                     "mean ρ).",
    "params_vs_auc": "Model size against test AUC for every method and cut.",
    "svcca_boxes": "SVCCA coefficients between the pre-trained and the fine-tuned model at each block, per cut.",
    "pairs": "Layer-wise similarity (the study's mean CCA by default) of the hidden-representations study's 14 "
             "model pairs: fine-tuned (F: end to end; T: head first) vs initialisation, vs each other, vs random.",
    "filter_similarity": "Mean cosine similarity of first-layer filters between each fine-tuned model and its "
                         "source (random: two untrained networks).",
    "knn_auc": "k-NN probe test AUC of each layer (k = 200, τ = 0.1) per initialisation: where useful features "
               "appear.",
    "knn_kappa": "k-NN probe test quadratic κ (the study's target metric for ordinal grades) of each layer "
                 "(k = 200, τ = 0.1) per initialisation: where useful features appear.",
    "knn_balanced_accuracy": "k-NN probe test balanced accuracy (the study's target metric for multi-class "
                             "targets) of each layer (k = 200, τ = 0.1) per initialisation: where useful features "
                             "appear.",
    "knn_auc_ovo": "k-NN probe test one-vs-one AUC of each layer (k = 200, τ = 0.1) per initialisation.",
    "knn_acc": "k-NN probe test accuracy of each layer (k = 200, τ = 0.1) per initialisation.",
    "cka_init_final": "CKA (unbiased, un-pooled, batches of 64) of each layer before vs after fine-tuning: how much "
                      "fine-tuning changed it.",
    "cka_wt_st": "CKA of each layer between the fine-tuned WT and the fine-tuned ST model: where weight transfer "
                 "leaves a trace that statistics alone do not.",
    "importance_auc_drop": "Test-AUC drop when one layer is put back to its initial state (layer criticality).",
    "l2": "Per-layer weight distance from the initial to the fine-tuned state.",
    "tau_forest": "Mean τ_w over targets of each row drawn (the metrics; with the published tables also the "
                  "static baselines, and with two or more targets the leave-one-target-out ensemble), with 95 % "
                  "bootstrap CIs (targets and sources resampled); the dashed line is the best published mean of "
                  "the dataset-transferability study on its own targets (LP×FU 0.523 in scenario A, LEEP 0.280 "
                  "in scenario B), a reference from other data.",
    "gain_bubbles": "Gain from transfer G = WT/RI (dot size) and the share of it due to feature reuse "
                    "R = (WT − ST)/WT (colour), one panel per architecture, targets ordered by their FID to the "
                    "source's data, one row per data size; on each target's metric (κ, balanced accuracy or "
                    "ROC-AUC, as the study), mean over runs (± sd).",
}


def caption(stem: str) -> str:
    """The caption of a figure file stem (prefixes such as ``arch_`` ignored)."""
    for key in sorted(CAPTIONS, key=len, reverse=True):
        if stem == key or stem.endswith("_" + key) or stem.endswith(key):
            return CAPTIONS[key]
    return stem.replace("_", " ")


#: The dataset-transferability study's second comparison: the three strongest methods.
THREE_METHODS = ("leep", "nleep", "lp_fu")
#: LP×FU and its two halves (the study's ablation).
ABLATION = ("lp_fu", "lp", "fu")


def _rank_tests(ranks: pd.DataFrame) -> dict:
    n, k = ranks.shape
    if k >= 3 and n >= 2:
        return {"friedman": TR.friedman(ranks), "nemenyi": TR.nemenyi(ranks), "cd": TR.critical_difference(k, n)}
    return {"note": f"Friedman / Nemenyi / critical difference omitted: they need at least 3 compared metrics and 2 "
                    f"targets, here {k} of the dataset-transferability study's metrics on {n} target(s)"}


def evaluate_metrics(scores: dict, auc: pd.DataFrame, methods=None) -> dict:
    """Correlations, the τ_w table, method ranks, Friedman test, Nemenyi p-values and the
    critical difference for ``methods`` (default: those of the study present) — and the same
    rank analysis for the study's three strongest methods (``"three"``: LEEP, N-LEEP,
    LP×FU) and the LP×FU ablation table (``"ablation"``: τ_w of LP×FU, LP and FU per target),
    when those metrics are present."""
    methods = [m for m in (methods or STUDY_METHODS) if m in scores]
    extra = [m for m in scores if m not in methods]
    corr = TR.correlate({m: scores[m] for m in methods + extra}, auc)
    tau = TR.tau_table(corr)
    ranks = TR.ranks(corr, metrics=methods)
    out = {"corr": corr, "tau": tau, "ranks": ranks, "methods": methods, **_rank_tests(ranks)}
    if all(m in methods for m in THREE_METHODS):
        three = TR.ranks(corr, metrics=THREE_METHODS)
        out["three"] = {"ranks": three, "methods": list(THREE_METHODS), **_rank_tests(three)}
    if all(m in scores for m in ABLATION):
        out["ablation"] = tau[list(ABLATION)]
    return out


#: the Friedman p-value the dataset-transferability study published per scenario (spec §5).
PUBLISHED_FRIEDMAN_P = {"dataset": 0.0020, "model": 0.113}


def released_ranks_check(scenario: str = "model", folder=None) -> dict:
    """The study's released per-target rank file (``ktau_<scenario>_rank.csv``) against the
    ranks recomputed from its released scores and AUCs (τ_w per target, 1 = best, the
    study's scenario-B sign choices applied): which cells disagree, and the Friedman test of
    both. In scenario B the file disagrees in 6 cells (dermamnist and tissuemnist rows, under
    any sign choice), and its Friedman p (0.113, the published one) is not the recomputed
    0.143 — neither is significant. medtl reports both instead of claiming reproduction.

    Returns ``{"recomputed", "released"}`` (targets × methods rank tables),
    ``"differences"`` (target, method, recomputed, released), ``"friedman_recomputed"``,
    ``"friedman_released"``, ``"published_p"`` and ``"note"`` (a sentence for a report)."""
    from .sources import published_file, published_transferability

    scores, auc = published_transferability(scenario, folder)
    recomputed = TR.ranks(TR.correlate({m: scores[m] for m in STUDY_METHODS}, auc), metrics=list(STUDY_METHODS))
    raw = pd.read_csv(published_file("dataset-transferability", f"results/ktau_{scenario}_rank.csv", folder),
                      sep=";", index_col=0).set_index("target")
    released = raw.rename(columns={"our": "lp_fu"})[list(STUDY_METHODS)].loc[recomputed.index]
    diff = (recomputed != released).stack()
    cells = [(t, m) for (t, m), d in diff.items() if d]
    differences = pd.DataFrame([{"target": t, "method": m, "recomputed": recomputed.loc[t, m],
                                 "released": released.loc[t, m]} for t, m in cells],
                               columns=["target", "method", "recomputed", "released"])
    f_re, f_rel = TR.friedman(recomputed), TR.friedman(released)
    targets = sorted({t for t, _ in cells})
    note = (f"The released scenario-{'B' if scenario == 'model' else 'A'} rank file agrees with the ranks "
            "recomputed from the released scores in every cell." if not cells else
            f"The released scenario-{'B' if scenario == 'model' else 'A'} rank file disagrees with the ranks "
            f"recomputed from the released scores and AUCs in {len(cells)} cells ({', '.join(targets)}): "
            f"Friedman p = {f_re['pvalue']:.3f} recomputed vs {f_rel['pvalue']:.3f} from the released file "
            f"(published {PUBLISHED_FRIEDMAN_P[scenario]}). medtl's tables use the recomputed ranks.")
    return {"recomputed": recomputed, "released": released, "differences": differences,
            "friedman_recomputed": f_re, "friedman_released": f_rel, "published_p": PUBLISHED_FRIEDMAN_P[scenario],
            "note": note}


#: The best published mean τ_w per scenario (dataset-transferability study): LP×FU in A, LEEP in B.
PUBLISHED_BEST = {"dataset": ("lp_fu", 0.523), "model": ("leep", 0.280)}
#: The legend of that reference line: whose number it is, on which data.
PUBLISHED_LABEL = {"dataset": "LP×FU 0.523: best published mean, dataset-transferability study (its 11 MedMNIST "
                              "targets, not these)",
                   "model": "LEEP 0.280: best published mean, dataset-transferability study scenario B (its "
                            "targets, not these)"}


def evaluation_realism(scores: dict, auc: pd.DataFrame, scenario: str = "dataset", published: bool = True,
                       runs: pd.DataFrame | None = None, n_boot: int = 1000, seed: int = 0) -> dict:
    """How far the metric comparison can be trusted, in one call.

    Returns ``{"ci"}``: bootstrap CIs of τ_w per (metric, target) and of each mean
    (:func:`medtl.transfer.tau_ci`), including the static baselines (for the published
    tables, built from :func:`medtl.transfer.published_facts`); ``"permutation"``: paired
    sign-flip tests of every metric against the scenario's best published metric;
    ``"ensemble"``: the leave-one-target-out rank-average ensemble for subset sizes 1–3
    (``max_size`` 2 is the default; reading the best size off this table would be tuning on
    the held-out targets); ``"noise"``: the noise ceiling when ``runs`` (selected
    fine-tuning rows with a ``seed`` column) hold at least 2 seeds, else a note."""
    reference, published_tau = PUBLISHED_BEST[scenario]
    table = dict(scores)
    if published:
        table.update(TR.static_scores(list(auc.index), scenario, list(auc.columns)))
    ci = TR.tau_ci(table, auc, n_boot=n_boot, seed=seed)
    corr = TR.correlate(table, auc)
    perm = []
    for m in (m for m in table if m != reference):
        try:
            perm.append({"metric": m, "versus": reference, **TR.paired_permutation(corr, m, reference)})
        except ValueError:  # the reference or m has no defined τ_w on a shared target: no test, no row
            continue
    ens = {}
    for size in (1, 2, 3):
        try:
            ens[size] = TR.loto_ensemble(table, auc, max_size=size, seed=seed)
        except ValueError as err:  # too few targets: said, not hidden
            ens[size] = pd.DataFrame([{"target": "MEAN", "tau_w": np.nan, "note": str(err)}])
    out = {"ci": ci, "permutation": pd.DataFrame(perm), "ensemble": ens, "reference": (reference, published_tau)}
    if runs is not None:
        runs = runs[runs.source.isin(auc.index) & runs.target.isin(auc.columns)]
    if runs is not None and len(runs) and "seed" in runs and runs.groupby("target").seed.nunique().min() >= 2:
        out["noise"] = TR.noise_ceiling(runs)
    else:
        out["noise"] = "one fine-tuning seed per source: no noise ceiling (run grid_search(seeds=[0, 1, 2]))"
    return out


def realism_summary(realism: dict) -> pd.DataFrame:
    """One row per metric, baseline and the ensemble: mean τ_w with its CI, the paired
    permutation p-value against the scenario's best published metric."""
    ci = realism["ci"]
    means = ci[ci.target == "MEAN"].set_index("metric")[["tau_w", "low", "high", "n"]]
    perm = realism["permutation"]
    if len(perm):
        means = means.join(perm.set_index("metric")[["pvalue"]].rename(columns={"pvalue": f"p vs {realism['reference'][0]}"}))
    ens = realism["ensemble"][2].set_index("target").loc["MEAN"]
    means.loc["LOTO ensemble (max 2)"] = {"tau_w": ens.tau_w, "low": ens.get("low", np.nan),
                                          "high": ens.get("high", np.nan), "n": ens.get("n", np.nan)}
    return means.sort_values("tau_w", ascending=False)


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
    three = result.get("three", {})
    if "cd" in three:
        files["cd3"] = P.save(P.cd_diagram(three["ranks"], three["cd"],
                                           title="LEEP, N-LEEP and LP×FU: mean ranks; bars join methods within CD"),
                              out / f"{prefix}cd_diagram_three.png")
    if "ablation" in result:
        abl = result["corr"][result["corr"].metric.isin(ABLATION)]
        files["ablation"] = P.save(P.tau_bars(abl, title="ablation: LP×FU against LP and FU alone"),
                                   out / f"{prefix}ablation.png")
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


def finetuning_overview(results_source: str = "published", results_dir=None, published_dir=None,
                        scenario: str = "dataset") -> dict:
    """:func:`finetuning_summary` of the published or medtl runs; in published mode without
    the per-run tables (12 MB, fetched by ``medtl data published``) the ground truth comes
    from the bundled AUC table and ``note`` says so."""
    from .sources import load_results, published_transferability

    try:
        runs = load_results("finetuning", results_source, results_dir, published_dir, scenario=scenario)
    except FileNotFoundError as err:
        if results_source != "published":
            raise
        _, auc = published_transferability(scenario, published_dir)
        return {"runs": pd.DataFrame(), "selected": pd.DataFrame(), "ground_truth": auc, "wins": pd.DataFrame(),
                "note": f"per-run tables not available ({err}); showing the study's selected AUCs only"}
    return {**finetuning_summary(runs), "note": f"{len(runs)} runs"}


def finetuning_figures(summary: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """The ground-truth dot plot and, for medtl runs that recorded test-AUC intervals, the
    AUCs with their 95 % bootstrap CIs."""
    out = Path(out_dir)
    files = {"finetuned_auc_dots": P.save(P.auc_dots(summary["ground_truth"]), out / "finetuned_auc_dots.png")}
    sel = summary["selected"]
    if not sel.empty and "test_auc_ci" in sel and sel.test_auc_ci.notna().any():
        files["auc_ci"] = P.save(P.auc_intervals(selected_runs(sel.assign(selected=True))), out / "auc_ci.png")
    return files


# --- representations -----------------------------------------------------------------------
def correlation_by_layer(table: pd.DataFrame, x: str = "similarity", y: str = "auc_gain",
                         by=("source", "layer")) -> pd.DataFrame:
    """Pearson and Spearman correlation of x and y within each group."""
    rows = []
    for key, g in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        few = len(g) < 3 or g[x].nunique() < 2 or g[y].nunique() < 2  # no correlation from 1–2 points
        rows.append({**dict(zip(by, key)), "pearson": np.nan if few else stats.pearsonr(g[x], g[y]).statistic,
                     "spearman": np.nan if few else stats.spearmanr(g[x], g[y]).statistic, "n": len(g)})
    return pd.DataFrame(rows)


def representation_figures(tables: dict, results_source: str, out_dir: str | os.PathLike) -> dict:
    """Figures of the representation analyses: published — mean CCA of fine-tuned models to
    their initialisation per layer, prediction similarity P_obs vs P_ind, similarity vs AUC
    gain; medtl (the ``similarity`` experiment's tables) — the 14 pairs' layer-wise
    similarity, similarity to the initialisation, prediction similarity, similarity vs the
    relative AUC gain over random initialisation (with Pearson/Spearman per source and layer
    once there are ≥ 3 points: a sweep over folds or targets) and first-layer filter
    similarity. Returns ``{"files", "table"}`` (the table the notebook shows)."""
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
        files["similarity_vs_auc"] = P.save(P.similarity_vs_auc(sva), out / "similarity_vs_auc.png")
        return {"files": files, "table": correlation_by_layer(sva)}
    return _medtl_representations(tables, out)


def _medtl_representations(tables: dict, out: Path) -> dict:
    pairs = tables.get("pairs", pd.DataFrame())
    if pairs.empty:
        raise FileNotFoundError("no similarity runs (table 'pairs') in these results")
    files = {"pairs": P.save(P.pair_heatmap(pairs, title=f"{pairs.measure.iloc[0]} per layer of the model pairs"),
                             out / "pairs.png")}
    own = pairs[pairs.model1.str.startswith("ft:") & (pairs.model1.str.split(":").str[1] == pairs.model2)]
    if not own.empty:
        files["cca_to_init"] = P.save(P.layerwise(own.assign(model=own.model1), "value", hue="model",
                                                  title="similarity: fine-tuned vs its initialisation"),
                                      out / "cca_to_init.png")
    pred = tables.get("predictions", pd.DataFrame())
    if not pred.empty:
        long = pred.melt(id_vars=["freeze"], value_vars=["p_obs", "p_ind"], var_name="prob")
        files["prediction_similarity"] = P.save(P.paired_boxes(long, "freeze", "value", "prob",
                                                               "prediction similarity: observed vs independent"),
                                                out / "prediction_similarity.png")
    sva = tables.get("sim_vs_auc", pd.DataFrame())
    if not sva.empty:
        files["similarity_vs_auc"] = P.save(P.similarity_vs_auc(sva), out / "similarity_vs_auc.png")
    filt = tables.get("filters", pd.DataFrame())
    if not filt.empty:
        f = filt.assign(model=filt.source + np.where(filt.freeze, " (T)", " (F)"))
        files["filter_similarity"] = P.save(P.bars(f.groupby("model", as_index=False).mean_cosine.mean(), "model",
                                                   "mean_cosine", "first-layer filters: fine-tuned vs source",
                                                   "mean cosine"), out / "filter_similarity.png")
    table = correlation_by_layer(sva) if not sva.empty else pairs
    return {"files": files, "table": table}


def feature_reuse_figures(tables: dict, results_source: str, out_dir: str | os.PathLike) -> dict:
    """Published: similarity to the initialisation vs AUC gain per source (the
    hidden-representations study's evidence); medtl: the layer-wise curves per
    initialisation and data fraction (k-NN, CKA init↔final, CKA WT↔ST, importance, L2) and
    the bubble figure of gain WT/RI vs feature-reuse share (WT−ST)/WT."""
    out = Path(out_dir)
    files = {}
    if results_source == "published":
        table = tables["sim_vs_auc"]
        for source, g in table.groupby("source"):
            files[f"reuse_{source}"] = P.save(P.similarity_vs_auc(g), out / f"reuse_{source}.png")
        return {"files": files, "table": correlation_by_layer(table)}
    ratios, layers = tables.get("gain_ratios", pd.DataFrame()), tables.get("reuse_layers", pd.DataFrame())
    if ratios.empty:
        raise FileNotFoundError("no feature_reuse runs (table 'gain_ratios') in these results")
    for name, g in layers.groupby("analysis"):
        hue = "init" if g.fraction.nunique() < 2 else g.init + " · " + (g.fraction * 100).round().astype(int).astype(str) + "%"
        files[name] = P.save(P.layerwise(g.assign(run=hue), "value", hue="run", title=name), out / f"{name}.png")
    files["gain_bubbles"] = P.save(P.gain_bubbles(ratios), out / "gain_bubbles.png")
    return {"files": files, "table": ratios}


def truncation_figures(tables: dict, out_dir: str | os.PathLike) -> dict[str, Path]:
    """The truncated-transfer study's figures from medtl runs: AUC/AUPRC per cut with FTL
    and LWFT reference lines, SVCCA per cut as boxplots, parameters against AUC, SVCCA per
    residual block with the layer-wise AUPRC curve (``svcca_blocks``), the FTL / TF / LWFT /
    TTL SVCCA comparison (``svcca_methods``), and the pooling ablation (GAP vs flatten head
    per cut) when the runs hold both heads."""
    out = Path(out_dir)
    cuts, svcca = tables.get("truncation", pd.DataFrame()), tables.get("svcca", pd.DataFrame())
    if cuts.empty:
        raise FileNotFoundError("no truncation runs (table 'truncation') in these results")
    files = {"cut_curves": P.save(P.cut_curves(cuts), out / "cut_curves.png"),
             "params_vs_auc": P.save(P.params_vs_auc(cuts), out / "params_vs_auc.png")}
    if not svcca.empty:
        files["svcca_boxes"] = P.save(P.svcca_boxes(svcca), out / "svcca_boxes.png")
    blocks, methods = tables.get("svcca_blocks", pd.DataFrame()), tables.get("svcca_methods", pd.DataFrame())
    if not blocks.empty:
        layerwise = cuts[(cuts.method == "TTL") & (cuts["mode"] == "layer")]
        search = tables.get("search", pd.DataFrame())
        if not search.empty:  # the search's stage-2 points are layer-wise TTL cuts too
            s = search[(search.method == "TTL") & (search["mode"] == "layer")]
            layerwise = pd.concat([layerwise, s[["cut", "auprc_ap"]]], ignore_index=True)
        curve = layerwise.drop_duplicates("cut").assign(value=lambda t: t.auprc_ap)[["cut", "value"]]
        files["svcca_bottlenecks"] = P.save(P.svcca_bottlenecks(blocks, curve), out / "svcca_bottlenecks.png")
    if not methods.empty:
        files["svcca_methods"] = P.save(P.svcca_methods(methods), out / "svcca_methods.png")
    block = cuts[cuts["mode"] == "block"] if "head" in cuts else cuts.iloc[:0]
    if len(block) and block["head"].nunique() > 1:  # the pooling ablation was run
        files["pooling"] = P.save(P.pooling_ablation(cuts), out / "pooling.png")
    return files


def round_table(t: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    return t.apply(lambda c: c.round(digits) if np.issubdtype(c.dtype, np.number) else c)


# --- honesty: uncertainty and caveats of a medtl transferability study ----------------------
def selected_runs(finetune: pd.DataFrame) -> pd.DataFrame:
    """The selected fine-tuning runs with their test AUC and its 95 % CI (when recorded),
    best epoch, last epoch run and the epoch budget."""
    sel = finetune[finetune.selected].copy()
    ci = sel.get("test_auc_ci", pd.Series([None] * len(sel), index=sel.index))
    sel["auc_low"] = [c[0] if c is not None and len(c) == 2 else np.nan for c in ci]
    sel["auc_high"] = [c[1] if c is not None and len(c) == 2 else np.nan for c in ci]
    cols = [c for c in ("source", "target", "seed", "lr", "test_auc", "auc_low", "auc_high", "val_auc", "val_auc_low",
                        "learned", "best_epoch", "stopped_at", "epochs", "stop_reason") if c in sel]
    return sel[cols].sort_values(["target", "test_auc"], ascending=[True, False]).reset_index(drop=True)


def caveats(auc: pd.DataFrame, selected: pd.DataFrame | None = None, epochs: int | None = None) -> list[str]:
    """What limits the conclusions of a transferability study, in plain sentences: too few
    sources or targets, fine-tuned AUCs that their confidence intervals cannot separate, and
    selected runs that stopped at the last epoch (still improving: longer training could
    change the ranking), and selected runs that did not beat chance on validation (failed to
    learn: the ground truth would rank noise)."""
    out = []
    n_sources, n_targets = auc.shape
    if selected is not None and "learned" in selected:
        failed = selected[selected.learned.astype("boolean").eq(False)]
        if len(failed):
            out.append(f"{len(failed)} of {len(selected)} selected fine-tuning runs failed to learn (their validation "
                       f"AUC's 95 % interval reaches chance, 0.5): {', '.join(map(str, failed.source))}. Their test "
                       "AUCs rank noise, and so does τ_w against them.")
    if n_sources < 5:
        out.append(f"Only {n_sources} candidate sources: τ_w over so few points is coarse (one swapped pair moves it a "
                   "lot); read the confidence intervals.")
    if n_targets < 2:
        out.append("A single target: the metrics' ranks, the Friedman test and the critical difference need several "
                   "targets and are not meaningful here.")
    if selected is not None and {"auc_low", "auc_high"} <= set(selected) and selected.auc_low.notna().any():
        for target, g in selected.groupby("target"):
            g = g.sort_values("test_auc", ascending=False)
            close = [(a.source, b.source) for (_, a), (_, b) in zip(g.iterrows(), g.iloc[1:].iterrows())
                     if b.auc_high >= a.auc_low]
            if close:
                pairs_text = ", ".join(f"{a} ~ {b}" for a, b in close)
                out.append(f"On {target}, neighbouring sources' fine-tuned AUCs lie within each other's 95 % CIs "
                           f"({pairs_text}): the ground truth does not resolve their order, so neither can a metric.")
    if selected is not None and "best_epoch" in selected:
        last = selected.stopped_at if "stopped_at" in selected else None
        budget = epochs or (selected.epochs if "epochs" in selected else last)
        if last is not None:
            at_end = selected[(selected.best_epoch == last) & (last >= budget)]
            if len(at_end):
                out.append(f"{len(at_end)} of {len(selected)} selected fine-tuning runs had their best epoch at the last "
                           f"epoch ({', '.join(map(str, at_end.source))}): still improving, so longer training could "
                           "change the ground truth.")
    return out
