"""The benchmark study's analysis: comparisons against a baseline initialisation, the
domain-adaptive table (mean ± std per initialisation × target) and its figures, from
medtl's ``benchmark`` result tables; the study's own published table for reference."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .. import plots
from ..study import compare_trials

#: The study's domain-adaptive table (spec §5, read off ``Version1/images/domain_adaptive.png``
#: of the authors' public repository; mean ± std over runs, AUC % for DXC14/DXC5/TXC, Dice %
#: for PXS/LXS; "–" where the target is the pre-training data). For reference, not computed here.
BENCHMARK_PUBLISHED = pd.DataFrame(
    [["Scratch", "80.31±0.10", "86.60±0.17", "89.03±1.82", "67.54±0.60", "97.55±0.36"],
     ["ImageNet (supervised)", "81.70±0.15", "87.10±0.36", "95.62±0.63", "67.93±1.45", "98.19±0.13"],
     ["ChestX-ray14 (in-domain)", "–", "87.40±0.26", "96.32±0.65", "68.92±0.98", "98.18±0.06"],
     ["CheXpert (in-domain)", "81.99±0.08", "–", "97.07±0.95", "69.30±0.50", "98.25±0.04"],
     ["ImageNet→ChestX-ray14", "–", "87.09±0.44", "98.47±0.26", "69.52±0.38", "98.27±0.03"],
     ["ImageNet→CheXpert", "82.25±0.18", "–", "97.33±0.26", "69.36±0.49", "98.31±0.05"]],
    columns=["initialisation", "DXC14", "DXC5", "TXC", "PXS", "LXS"])


def domain_table(compare: pd.DataFrame, scale: float = 100.0, digits: int = 2) -> pd.DataFrame:
    """The study's table layout from :func:`medtl.study.compare_trials`: one row per
    initialisation, one column per target (AUC for classification, global Dice for
    segmentation), cells ``mean±std`` in percent with the significance marker against the
    baseline."""
    data = plots.headline(compare)
    cell = [f"{scale * m:.{digits}f}±{scale * s:.{digits}f}{'' if not k or k == 'n.s.' else ' ' + k}"
            if s == s else f"{scale * m:.{digits}f}" for m, s, k in zip(data["mean"], data["std"], data["marker"])]
    table = data.assign(cell=cell).pivot(index="init", columns="target", values="cell")
    return table.reindex(list(dict.fromkeys(data["init"]))).fillna("–")


def benchmark_figures(table: pd.DataFrame, baseline: str, out_dir: str | os.PathLike | None = None,
                      figures_dir: str | os.PathLike | None = None) -> dict:
    """Comparisons, the domain-adaptive table and the two figures (per-target bars with
    significance markers, AUC and Dice side by side) from a ``benchmark`` result table; with
    ``out_dir`` they are written there (``compare.csv``, ``domain_table.csv``, the PNGs in
    ``figures_dir``, default ``out_dir/figures``). Returns ``{"compare", "table", "bars",
    "auc_dice"}``."""
    compare = compare_trials(table, baseline)
    result = {"compare": compare, "table": domain_table(compare), "bars": plots.benchmark_bars(compare),
              "auc_dice": plots.auc_and_dice(compare)}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        compare.to_csv(out / "compare.csv", index=False)
        result["table"].to_csv(out / "domain_table.csv")
        for key in ("bars", "auc_dice"):
            plots.save(result[key], Path(figures_dir or out / "figures") / f"benchmark_{key}.png")
    return result
