"""HTML reports: execute the analysis notebooks on a results folder (papermill), convert
them to HTML (nbconvert) and write an index page that opens with the τ_w table — with its
confidence intervals, what each metric is, the fine-tuned AUCs with theirs, and the
caveats that limit the conclusions."""

from __future__ import annotations

import base64
import html
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis
from . import results as rs
from . import transfer as TR

#: analysis notebook → (the result tables it needs, the transferability scenario it reads)
ANALYSES = {
    "dataset_transferability": (("scores", "finetune"), "dataset"),
    "architecture_transferability": (("scores", "finetune"), "model"),
    "finetuned_aucs": (("finetune",), None),
    "representations": (("pairs",), None),
    "feature_reuse": (("gain_ratios",), None),
    "truncation": (("truncation",), None),
    "benchmark": (("benchmark",), None),
}
STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0} td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
figure{margin:1.5em 0} figcaption{color:#333;font-size:0.95em} .caveats{background:#fff4e5;border-left:4px solid
#f0a020;padding:0.5em 1em} dt{font-weight:bold} dd{margin:0 0 0.4em 1.5em}"""


def available_tables(results_dir: str | os.PathLike) -> set[str]:
    """Names of the tables recorded by finished runs under ``results_dir``."""
    names = set()
    for file in Path(results_dir).rglob(rs.RUN_FILE):
        info = rs.read_run(file.parent) or {}
        if info.get("status") == "finished":
            names.update(info.get("tables", []))
    return names


def notebook_html(notebook: str | os.PathLike) -> str:
    """An executed notebook as standalone HTML (nbconvert's lab template, inputs kept)."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(str(notebook), as_version=4))
    return body


def _img(path: Path, caption: str | None = None) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return (f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%" alt="{path.stem}">'
            f"<figcaption>{html.escape(caption or analysis.caption(path.stem))}</figcaption></figure>")


def _glossary(metrics, rank: bool = False) -> str:
    items = []
    for name in metrics:
        if name in TR.METRIC_TABLE:
            m = TR.metric(name)
            items.append(f"<dt>{html.escape(m.display)} <code>{name}</code></dt><dd>{html.escape(m.description)} "
                         f"({html.escape(m.citation)})</dd>")
    if rank:
        items.append(f"<dt>mean rank</dt><dd>{html.escape(TR.RANK_WORDING)}: each metric ranks the candidates "
                     "(1 = highest score, ties share the average rank) and the ranks are averaged over the metrics "
                     "that score every candidate and do not give them all the same score (up to float noise; "
                     "a metric left out is listed with the reason).</dd>")
        return f"<h2>What the numbers are</h2><dl>{''.join(items)}</dl>"
    items.append("<dt>τ<sub>w</sub></dt><dd>weighted Kendall rank correlation (scipy.stats.weightedtau) between a "
                 "metric's scores and the sources' fine-tuned test AUCs: 1 = same order, 0 = unrelated; "
                 "the top of the ranking weighs most.</dd>")
    items.append("<dt>AUC</dt><dd>test ROC-AUC of the fine-tuning run selected by minimum validation loss "
                 "(medmnist's definition), with a 95 % bootstrap interval over test images.</dd>")
    return f"<h2>What the numbers are</h2><dl>{''.join(items)}</dl>"


def _fmt(v, low, high) -> str:
    if np.isnan(v):
        return "—"
    return f"{v:.3f} [{low:.2f}, {high:.2f}]" if not (np.isnan(low) or np.isnan(high)) else f"{v:.3f}"


#: Bootstrap resamples (seed 0) of every τ_w interval medtl prints: the report's table, the demo's
#: CLI summary and the analysis notebooks' forest plot read the same intervals.
TAU_BOOT = 1000


def transferability_summary(results_dir: str | os.PathLike, n_boot: int = TAU_BOOT) -> dict:
    """τ_w with bootstrap CIs per metric and target (the mean over targets too), the
    selected fine-tuning runs with their AUC CIs, the caveats and the Friedman/CD note."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, auc = analysis.medtl_transferability(results_dir, "dataset")
        finetune = rs.load(results_dir, "finetune")
        if "scenario" in finetune:
            finetune = finetune[finetune.scenario.fillna("dataset") == "dataset"]
        result = analysis.evaluate_metrics(scores, auc)
    ci = TR.tau_ci(scores, auc, n_boot=n_boot)
    wide = ci.assign(cell=[_fmt(*r) for r in ci[["tau_w", "low", "high"]].to_numpy()]).pivot(
        index="metric", columns="target", values="cell")
    order = list(dict.fromkeys(m for m in result["methods"] + list(scores) if m in wide.index))
    wide = wide.loc[order]
    if auc.shape[1] < 2:
        wide = wide.drop(columns="MEAN", errors="ignore")  # one target: the mean repeats it
    wide.index = [f"{TR.metric(m).display} ({m})" if m in TR.METRIC_TABLE else m for m in order]
    selected = analysis.selected_runs(finetune)
    return {"tau": wide, "tau_ci": ci, "selected": selected, "result": result,
            "caveats": analysis.caveats(auc, selected), "metrics": order}


def tau_summary(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Mean τ_w per metric with its bootstrap 95 % CI, top-1 hit and regret."""
    s = transferability_summary(results_dir)
    ci = s["tau_ci"]
    mean = ci[ci.target == "MEAN"].set_index("metric")[["tau_w", "low", "high"]]
    corr = s["result"]["corr"].groupby("metric")[["top1_hit", "regret"]].mean()
    return mean.join(corr).loc[s["metrics"]]


def _transferability_html(results_dir: Path) -> str:
    s = transferability_summary(results_dir)
    sel = s["selected"].copy()
    sel["test AUC [95% CI]"] = [_fmt(*r) for r in sel[["test_auc", "auc_low", "auc_high"]].to_numpy()]
    cols = [c for c in ("source", "target", "lr", "test AUC [95% CI]", "best_epoch", "stopped_at", "epochs") if c in sel]
    caveat = "".join(f"<li>{html.escape(c)}</li>" for c in s["caveats"])
    note = s["result"].get("note") or (
        f"Friedman χ² = {s['result']['friedman']['statistic']:.2f}, p = {s['result']['friedman']['pvalue']:.3g}; "
        f"critical difference {s['result']['cd']:.2f} (see the CD diagram).")
    return ("<h2>Weighted Kendall τ<sub>w</sub> per metric</h2>"
            "<p>Agreement of each metric's ranking of the sources with their fine-tuned test AUC (higher is better), "
            "per target and the mean over targets, with 95 % bootstrap intervals (sources resampled; targets too "
            "for the mean).</p>" + s["tau"].to_html(na_rep="—", escape=True)
            + (f'<div class="caveats"><b>Caveats</b><ul>{caveat}</ul></div>' if caveat else "")
            + f"<p>{html.escape(note)}</p>"
            + "<h2>Fine-tuned AUCs (the ground truth)</h2>" + sel[cols].to_html(index=False, na_rep="—")
            + _glossary(s["metrics"]))


def _score_cell(v, low, high) -> str:
    return f"{v:.4g}" + (f" [{low:.4g}, {high:.4g}]" if np.isfinite(low) and np.isfinite(high) else "")


def ranking_html(results_dir: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> str:
    """The section of a report for the ``medtl rank`` runs under ``results_dir``: per target,
    the recommendation (mean rank with its interval, resolvability), the agreement of the
    metrics (Kendall's W), each metric's score with its interval, the verification by
    fine-tuning with its verdict, what failed, the ranking figure, and the exact lines
    ``medtl rank`` printed (every number here is read from the same recorded tables)."""
    from . import plots as P

    tables = analysis.rank_results(results_dir)
    parts = []
    for target in dict.fromkeys(tables["recommendation"].target):
        r = analysis.load_ranking(results_dir, target)
        rec = r.recommendation.copy()
        boot = r.n_boot > 0
        rec[TR.RANK_WORDING] = [f"{v:.2f}" + (f" [{lo:.2f}, {hi:.2f}]" if boot else "")
                                for v, lo, hi in rec[["mean_rank", "low", "high"]].to_numpy()]
        rec["resolved from the next"] = ["—" if not boot or x is pd.NA else ("yes" if x else "no") for x in rec.resolved]
        shown = rec[["rank", "source", TR.RANK_WORDING, "resolved from the next"]]
        sc = r.scores.assign(cell=[_score_cell(*x) for x in r.scores[["score", "low", "high"]].to_numpy()])
        wide = sc.pivot_table(index="source", columns="metric", values="cell", aggfunc="first").reindex(rec.source)
        wide.columns = [TR.metric(m).display if m in TR.METRIC_TABLE else m for m in wide.columns]
        a = r.agreement
        agree = (f"<p>Agreement of the {a['m']} metrics over the {a['n']} candidates: Kendall's W = {a['W']:.2f} "
                 f"(p = {a['p']:.3g}; 0 = independent orderings, 1 = identical).</p>") if a else ""
        body = [f"<h2>Ranking for {html.escape(target)}</h2>",
                f"<p>{r.n_images} images scored ({html.escape(r.scored)}); {html.escape(r.interval_note())}. "
                f"Higher scores are predicted to transfer better; ranks read {html.escape(TR.RANK_WORDING)}.</p>",
                shown.to_html(index=False, escape=True), agree,
                "<h3>Scores per metric (value [95 % interval])</h3>", wide.to_html(na_rep="—", escape=True)]
        if r.verification is not None and len(r.verification):
            ver = r.verification.copy()
            ver["test AUC [95% CI]"] = [f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                                       for v, lo, hi in ver[["test_auc", "test_auc_low", "test_auc_high"]].to_numpy()]
            ver["mean rank"] = [f"{v:.2f}" for v in ver.mean_rank]
            body += ["<h3>Verification by fine-tuning</h3>", ver[["source", "mean rank", "test AUC [95% CI]"]].to_html(
                index=False, escape=True), f"<p><b>{html.escape(r.verdict())}</b></p>"]
        if len(r.failed):
            body += ["<h3>What could not be used</h3>", r.failed[["source", "metric", "reason"]].to_html(
                index=False, escape=True)]
        fig = P.ranking(r.scores, r.recommendation, title=f"{target}: recommended sources")
        with tempfile.TemporaryDirectory() as tmp:  # the page embeds the PNG; keep a file only where asked
            folder = Path(figures_dir) if figures_dir is not None else Path(tmp)
            png = P.save(fig, folder / f"ranking_{re.sub(r'[^A-Za-z0-9_.-]+', '-', target)}.png")
            body.append(_img(png, caption=P.RANKING_CAPTION))
        body.append(f"<h3>As printed by medtl rank</h3><pre>{html.escape(r.summary())}</pre>")
        parts.append("".join(body))
    return "".join(parts) + _glossary(list(dict.fromkeys(tables["rank_scores"].metric)), rank=True)


def build_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, header: str = "",
                 progress: bool = True, max_parallel: int | None = None) -> Path:
    """Run every analysis notebook whose tables exist under ``results_dir`` (results source
    "medtl"), keep each executed notebook and its HTML in ``out_dir`` (default
    ``<results_dir>/report``), and write ``index.html``: the header, the τ_w table with CIs,
    caveats, the fine-tuned AUCs with CIs, what each metric is (when transferability results
    exist), each figure once with a caption, and links to the notebooks. The notebooks run
    ``max_parallel`` at a time (default one per core: :func:`medtl.experiments.run_many`).
    Returns the index."""
    from . import experiments

    results_dir = Path(results_dir).resolve()
    if not results_dir.is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist")
    out = Path(out_dir).resolve() if out_dir is not None else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    have = available_tables(results_dir)
    scenarios = analysis.medtl_scenarios(results_dir)
    names = [name for name, (needs, scenario) in ANALYSES.items()
             if set(needs) <= have and (scenario is None or scenario in scenarios)]
    if progress and names:
        print(f"report: {', '.join(names)}", flush=True)
    experiments.run_many([(f"analysis/{name}", {"results_source": "medtl", "results_dir": str(results_dir)},
                           out / name) for name in names], max_parallel)
    sections, links, seen = [], [], set()
    for name in names:
        run_dir = out / name
        page = out / f"{name}.html"
        page.write_text(notebook_html(run_dir / "notebook.ipynb"))
        links.append(f'<li><a href="{page.name}">{name}</a> (executed notebook: {name}/notebook.ipynb)</li>')
        figs = []
        for p in sorted((run_dir / "figures").glob("*.png")):
            key = analysis.caption(p.stem)
            if key not in seen:
                seen.add(key)
                figs.append(_img(p))
        extra = ""
        if name == "architecture_transferability":  # the study's scenario-B rank table: checked, not trusted
            extra = f"<p>{html.escape(analysis.released_ranks_check('model')['note'])}</p>"
        sections.append(f"<h2>{name.replace('_', ' ')}</h2>{extra}{''.join(figs)}")
    rank_html = ""
    if {"rank_scores", "recommendation"} <= have:
        if progress:
            print("report: ranking", flush=True)
        rank_html = ranking_html(results_dir, out / "figures")
    if not links and not rank_html:
        raise FileNotFoundError(f"no finished runs with analysable tables under {results_dir} "
                                f"(found tables: {sorted(have) or 'none'})")
    tau_html = _transferability_html(results_dir) if {"scores", "finetune"} <= have and "dataset" in scenarios else ""
    tau_html = rank_html + tau_html
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>medtl report</title><style>{STYLE}</style>'
            f"</head><body><h1>medtl report</h1>{header}{tau_html}"
            + (f"<h2>Notebooks</h2><ul>{''.join(links)}</ul>" if links else "")
            + f"{''.join(sections)}<p style=\"color:#888\">results: {html.escape(str(results_dir))}</p></body></html>")
    index = out / "index.html"
    index.write_text(page)
    return index
