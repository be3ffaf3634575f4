"""HTML reports: execute the analysis notebooks on a results folder (papermill), convert
them to HTML (nbconvert) and write an index page that opens with the τ_w table."""

from __future__ import annotations

import base64
import html
import os
import warnings
from pathlib import Path

import pandas as pd

from . import analysis
from . import results as rs

#: analysis notebook → the result tables it needs
ANALYSES = {
    "dataset_transferability": ("scores", "finetune"),
    "finetuned_aucs": ("finetune",),
    "representations": ("layers",),
    "feature_reuse": ("gain_ratios",),
}


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


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img src="data:image/png;base64,{data}" style="max-width:100%"><figcaption>{path.stem}</figcaption></figure>'


def build_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, header: str = "",
                 progress: bool = True) -> Path:
    """Run every analysis notebook whose tables exist under ``results_dir`` (results source
    "medtl"), keep each executed notebook and its HTML in ``out_dir`` (default
    ``<results_dir>/report``), and write ``index.html``: the header, the τ_w table per
    metric (when transferability results exist), the figures, and links to the notebooks.
    Returns the index path."""
    from . import experiments

    results_dir = Path(results_dir).resolve()
    out = Path(out_dir).resolve() if out_dir is not None else results_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    have = available_tables(results_dir)
    sections, links = [], []
    tau_html = ""
    for name, needs in ANALYSES.items():
        if not set(needs) <= have:
            continue
        if progress:
            print(f"report: {name}", flush=True)
        run_dir = out / name
        experiments.run(f"analysis/{name}", {"results_source": "medtl", "results_dir": str(results_dir)},
                        out_dir=run_dir)
        page = out / f"{name}.html"
        page.write_text(notebook_html(run_dir / "notebook.ipynb"))
        links.append(f'<li><a href="{page.name}">{name}</a> (executed notebook: {name}/notebook.ipynb)</li>')
        figs = "".join(_img(p) for p in sorted((run_dir / "figures").glob("*.png")))
        sections.append(f"<h2>{name.replace('_', ' ')}</h2>{figs}")
    if {"scores", "finetune"} <= have:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores, auc = analysis.medtl_transferability(results_dir)
            result = analysis.evaluate_metrics(scores, auc)
        tau = result["tau"].T.rename_axis("metric")
        tau_html = ("<h2>Weighted Kendall τ<sub>w</sub> per metric</h2>"
                    "<p>Agreement of each metric's ranking of the sources with their fine-tuned test AUC "
                    "(scipy.stats.weightedtau; higher is better), per target and mean.</p>"
                    + analysis.round_table(tau).to_html(na_rep="—"))
    if not links:
        raise FileNotFoundError(f"no finished runs with analysable tables under {results_dir} "
                                f"(found tables: {sorted(have) or 'none'})")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>medtl report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} figure{{margin:1em 0}}</style></head><body>
<h1>medtl report</h1>{header}
{tau_html}
<h2>Notebooks</h2><ul>{''.join(links)}</ul>
{''.join(sections)}
<p style="color:#888">results: {html.escape(str(results_dir))}</p></body></html>"""
    index = out / "index.html"
    index.write_text(page)
    return index


def tau_summary(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Mean τ_w per metric of the transferability results under ``results_dir``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, auc = analysis.medtl_transferability(results_dir)
    corr = analysis.evaluate_metrics(scores, auc)["corr"]
    return corr.groupby("metric", sort=False)[["tau_w", "top1_hit", "regret"]].mean()
