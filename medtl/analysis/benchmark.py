"""The benchmark study's analysis: comparisons against a baseline initialisation, the
domain-adaptive table (mean ± std per initialisation × target) and its figures, from
medtl's ``benchmark`` result tables; the study's own published table for reference."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from .. import plots, study
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


#: The study's comparison figures (spec §5; its ``domain_adaptive.png``, ``ImageNet_vs_iNat21.png``
#: and ``SSL_vs_ImageNet.png``): figure name → (title, the initialisation kinds drawn; see
#: :func:`medtl.study.init_kinds`). Each is drawn against the supervised ImageNet run
#: (``imagenet``, else the one initialisation of kind ``supervised``) when the runs hold it and
#: at least one initialisation of the figure's own kinds (not scratch or supervised).
BENCHMARK_GROUPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "domain_adaptive": ("in-domain and domain-adaptive pre-training vs supervised ImageNet",
                        ("scratch", "supervised", "in-domain", "domain-adaptive")),
    "imagenet_vs_inat21": ("fine-grained (iNat2021) vs coarse-grained (ImageNet) pre-training vs scratch",
                           ("scratch", "supervised", "fine-grained")),
    "ssl_vs_imagenet": ("self-supervised ImageNet vs supervised ImageNet", ("supervised", "self-supervised")),
}


def benchmark_groups(runs: pd.DataFrame | Sequence[str], groups: Mapping[str, Mapping] | None = None) -> dict:
    """The comparison figures the runs allow: ``{name: {"title", "baseline", "members"}}``.

    By default from :data:`BENCHMARK_GROUPS` and each initialisation's kind: the runs'
    ``init_kind`` column where the benchmark recorded one (its ``kinds`` parameter names the
    kind of sources outside the zoo), else :func:`medtl.study.init_kinds`. ``groups`` names
    the figures explicitly instead (``{name: {"baseline": init, "members": [inits],
    "title": …}}``); one naming an initialisation without runs raises."""
    table = runs if isinstance(runs, pd.DataFrame) else pd.DataFrame({"init": list(runs)})
    present = list(dict.fromkeys(table["init"]))
    if groups is not None:
        out = {}
        for name, g in groups.items():
            members = list(dict.fromkeys([g["baseline"], *g["members"]]))
            missing = [i for i in members if i not in present]
            if missing:
                raise ValueError(f"benchmark group {name!r} names initialisation(s) without runs: {missing}; "
                                 f"the runs hold {present}")
            out[name] = {"title": g.get("title", name.replace("_", " ")), "baseline": g["baseline"],
                         "members": members}
        return out
    kinds = study.init_kinds(present)
    if "init_kind" in table:
        kinds.update({i: k for i, k in zip(table["init"], table["init_kind"].fillna("")) if k})
    supervised = [i for i in present if kinds[i] == "supervised"]
    if not supervised:
        return {}
    baseline = "imagenet" if "imagenet" in supervised else supervised[0]
    out = {}
    for name, (title, wanted) in BENCHMARK_GROUPS.items():
        members = [i for i in present if kinds[i] in wanted and (kinds[i] != "supervised" or i == baseline)]
        if any(kinds[i] not in ("scratch", "supervised") for i in members):  # the figure's own kind is there
            out[name] = {"title": title, "baseline": baseline, "members": members}
    return out


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
                      figures_dir: str | os.PathLike | None = None,
                      groups: Mapping[str, Mapping] | None = None) -> dict:
    """Comparisons, the domain-adaptive table and the figures (per-target bars with
    significance markers, AUC and Dice side by side, and the study's comparison figures
    of :func:`benchmark_groups`, each against its own baseline: ``domain_adaptive``,
    ``imagenet_vs_inat21``, ``ssl_vs_imagenet``) from a ``benchmark`` result table; with
    ``out_dir`` they are written there (``compare.csv``, ``domain_table.csv``, the PNGs
    ``benchmark_<key>.png`` in ``figures_dir``, default ``out_dir/figures``). Returns
    ``{"compare", "table", "bars", "auc_dice", <group name>…}``."""
    compare = compare_trials(table, baseline)
    result = {"compare": compare, "table": domain_table(compare), "bars": plots.benchmark_bars(compare),
              "auc_dice": plots.auc_and_dice(compare)}
    for name, g in benchmark_groups(table, groups).items():
        sub = compare_trials(table[table["init"].isin(g["members"])], g["baseline"])
        result[name] = plots.benchmark_bars(sub, title=f"{g['title']}: mean ± std over trials; markers: t-test vs "
                                                        f"{g['baseline']} (grey)")
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        compare.to_csv(out / "compare.csv", index=False)
        result["table"].to_csv(out / "domain_table.csv")
        for key in [k for k in result if k not in ("compare", "table")]:
            plots.save(result[key], Path(figures_dir or out / "figures") / f"benchmark_{key}.png")
    return result
