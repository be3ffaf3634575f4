"""Where analysis tables come from: the studies' published tables or medtl's own runs,
behind one dispatch, :func:`load_results`."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pandas as pd

from .. import paths
from .. import results as rs
from .. import transfer as TR
from .._io import download
from .benchmark import BENCHMARK_PUBLISHED

#: The seven methods compared in the dataset-transferability study, in its file order
#: ("ours" there is LP×FU; medtl names it ``lp_fu``).
STUDY_METHODS = ("logme", "sfda", "leep", "parc", "ncti", "nleep", "lp_fu")
#: The study's scenario-B sign choices (reversed metrics).
SCENARIO_B_FLIPS = ("parc", "ncti", "leep", "nleep")
STUDIES = ("dataset-transferability", "revisiting-representations")


def provenance() -> dict:
    """The shipped provenance of the published tables (repository, commit, file, sha256,
    URL, whether bundled in the package)."""
    return json.loads((paths.PACKAGE / "published" / "PROVENANCE.json").read_text())


def _candidates(folder) -> list[Path]:
    out = []
    if folder is not None:
        out.append(Path(folder).expanduser())
    env = os.environ.get("MEDTL_PUBLISHED")
    if env:
        out.append(Path(env).expanduser())
    out += [paths.PACKAGE / "published", paths.cache_dir("published")]
    root = paths.checkout()
    if root is not None:
        out.append(root.parent / "shared" / "data" / "published")
    return out


def published_file(study: str, relpath: str, folder=None) -> Path:
    """A published table: ``<folder or $MEDTL_PUBLISHED>``, then the package's bundled copy,
    then the cache filled by ``medtl data published``, then ``../shared/data/published``
    beside a checkout. A table found nowhere raises, naming the fetch command."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; valid: {', '.join(STUDIES)}")
    tried = []
    for base in _candidates(folder):
        file = base / study / relpath
        if file.is_file():
            return file
        tried.append(str(base))
    raise FileNotFoundError(f"published table {study}/{relpath} not found (looked in {', '.join(tried)}); fetch the "
                            "large tables with `medtl data published` (or set MEDTL_PUBLISHED)")


def fetch_published(study: str = "dataset-transferability", dest: str | os.PathLike | None = None,
                    base_url: str | None = None, progress: bool = True) -> list[Path]:
    """Download the study's tables that the package does not bundle (the per-run
    fine-tuning tables, 12 MB) from the pinned commit into the cache (``dest`` or
    ``<cache>/published``), each checked against its recorded sha256; present files are
    kept. ``base_url`` (or ``$MEDTL_PUBLISHED_URL``) replaces the repository URL prefix,
    e.g. a ``file://`` mirror. Offline, the error names the URL and the destination."""
    info = provenance()[study]
    dest = Path(dest) if dest is not None else paths.cache_dir("published")
    base_url = base_url or os.environ.get("MEDTL_PUBLISHED_URL")
    out = []
    for f in info["files"]:
        if f["bundled"]:
            continue
        target = dest / study / f["file"]
        if not target.is_file():
            url = f"{base_url.rstrip('/')}/{f['file']}" if base_url else f["url"]
            download(url, target, sha256=f["sha256"], progress=progress, what=f"published table {f['file']}")
        out.append(target)
    return out


def _read_wide(file: Path) -> pd.DataFrame:
    return pd.read_csv(file, index_col=0).set_index("source")


def published_transferability(scenario: str = "dataset", folder=None) -> tuple[dict, pd.DataFrame]:
    """The dataset-transferability study's released scores and ground truth for scenario
    ``"dataset"`` (A) or ``"model"`` (B): ``({metric: sources × targets}, AUC table)``.
    ``lp_fu`` is LP×FU computed by :func:`medtl.transfer.lp_fu` from ``lp_*``/``fu_*`` with
    the study's conventions (scenario B reversed, its sign flips applied to the baselines);
    ``lp`` and ``fu`` are kept for the ablation. AUCs are fractions in both scenarios."""
    if scenario not in ("dataset", "model"):
        raise ValueError(f"scenario must be 'dataset' or 'model', got {scenario!r}")

    def read(m):
        return _read_wide(published_file("dataset-transferability", f"results/{m}_{scenario}.csv", folder))

    scores = {m: read(m) for m in ("logme", "parc", "sfda", "ncti", "leep", "nleep")}
    if scenario == "model":
        scores = TR.flip(scores, SCENARIO_B_FLIPS)
    lp, fu = read("lp"), read("fu")
    scores["lp_fu"] = TR.lp_fu(lp, fu, reverse=scenario == "model", variant="study")
    scores["lp"], scores["fu"] = lp, fu
    auc = read("AUCs")
    return scores, (auc / 100 if scenario == "model" else auc)


def _load_quiet(results_dir, name: str) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rs.load(results_dir, name, missing_ok=True)


def medtl_transferability(results_dir=None, scenario: str | None = None) -> tuple[dict, pd.DataFrame]:
    """medtl's own scores (``scores`` tables of transferability runs) and ground truth
    (selected test AUC of ``finetune`` runs) under ``results_dir`` (default the results
    root), as ``({metric: sources × targets}, AUC table)``. Sources flagged ``self_source``
    are dropped. ``scenario`` keeps the runs recorded for that scenario (``"dataset"`` or
    ``"model"``; runs record it in a ``scenario`` column) — scenarios are never mixed."""
    scores, ft = _load_quiet(results_dir, "scores"), _load_quiet(results_dir, "finetune")
    if scores.empty or ft.empty:
        raise FileNotFoundError(f"no finished transferability ('scores') and fine-tuning ('finetune') runs under "
                                f"{paths.results_dir(results_dir)}")
    if scenario is not None:
        scores = scores[scores.get("scenario", pd.Series("dataset", index=scores.index)) == scenario]
        ft = ft[ft.get("scenario", pd.Series("dataset", index=ft.index)) == scenario]
    elif "scenario" in scores and scores.scenario.nunique() > 1:
        raise ValueError(f"results under {results_dir} mix scenarios {sorted(scores.scenario.unique())}; "
                         "pass scenario=")
    scores = scores[scores.metric != "features"]
    if "self_source" in scores:
        scores = scores[~scores.self_source.astype(bool)]
    if "signs" in scores and scores.signs.notna().any():  # the sign preset the run chose and recorded
        presets = scores.signs.dropna().unique()
        if len(presets) > 1:
            raise ValueError(f"results under {results_dir} mix sign presets {sorted(presets)}")
        flipped = {"none": (), "study-b": SCENARIO_B_FLIPS}.get(presets[0])
        if flipped is None:
            raise ValueError(f"unknown recorded sign preset {presets[0]!r}")
        scores = TR.flip(scores, flipped)
    wide = {m: g.pivot_table(index="source", columns="target", values="value", aggfunc="last")
            for m, g in scores.groupby("metric", sort=False)}
    sel = ft[ft.selected]
    auc = sel.pivot_table(index="source", columns="target", values="test_auc", aggfunc="mean")
    return wide, auc


#: The tables a ranking run records (``medtl rank`` and the ``rank`` notebook).
RANK_TABLES = ("rank_scores", "recommendation", "rank_failed", "rank_agreement", "verification", "verify_tau",
               "rank_costs")


def rank_results(results_dir=None) -> dict[str, pd.DataFrame]:
    """Every finished ranking run under ``results_dir``: ``{table: DataFrame}`` for
    :data:`RANK_TABLES` (each row carries its ``target``; ``verification`` is empty when no
    run verified). Raises FileNotFoundError when there is no ranking run."""
    out = {name: _load_quiet(results_dir, name) for name in RANK_TABLES}
    if out["rank_scores"].empty or out["recommendation"].empty:
        raise FileNotFoundError(f"no finished ranking runs ('medtl rank') under {paths.results_dir(results_dir)}")
    return out


def record_ranking(ranking, run_dir, parameters: dict | None = None) -> list:
    """Record a :class:`medtl.transfer.Ranking` as the tables of :data:`RANK_TABLES` in one
    run folder (the last write finishes the run). Returns the written paths."""
    about = {**ranking.agreement, "n_images": ranking.n_images, "scored": ranking.scored,
             "n_boot": ranking.n_boot, "fraction": ranking.fraction, "metrics": ", ".join(ranking.metrics)}
    tables = {"rank_scores": ranking.scores, "recommendation": ranking.recommendation.assign(target=ranking.target),
              "rank_failed": ranking.failed.assign(target=ranking.target),
              "rank_agreement": pd.DataFrame([about]).assign(target=ranking.target)}
    if ranking.verification is not None:
        tables["verification"] = ranking.verification.assign(target=ranking.target)
        tables["verify_tau"] = ranking.verify_tau.assign(target=ranking.target)
    if ranking.costs is not None:
        tables["rank_costs"] = ranking.costs.table().assign(target=ranking.target)
    names = list(tables)
    return [rs.record(t, run_dir, name, parameters=parameters, finish=name == names[-1]) for name, t in tables.items()]


def load_ranking(results_dir=None, target: str | None = None):
    """The :class:`medtl.transfer.Ranking` recorded for ``target`` (default: the only ranked
    target) under ``results_dir`` (a ``medtl rank`` run folder or any folder above it), with
    exactly the numbers ``medtl rank`` printed."""
    from ..transfer import Ranking
    from ..transfer.cost import Costs

    tables = rank_results(results_dir)
    targets = list(dict.fromkeys(tables["recommendation"].target))
    if target is None:
        if len(targets) > 1:
            raise ValueError(f"{len(targets)} targets are ranked under {results_dir}; name one of {targets}")
        target = targets[0]
    if target not in targets:
        raise ValueError(f"no ranking of target {target!r}; ranked targets: {', '.join(targets)}")

    def of(name):
        t = tables.get(name)
        if t is None or t.empty or "target" not in t:
            return None
        t = t[t.target == target]
        return t.drop(columns=["target"]).reset_index(drop=True) if name != "rank_scores" else t.reset_index(drop=True)

    about = of("rank_agreement")
    a = about.iloc[0].to_dict() if about is not None and len(about) else {}
    failed = of("rank_failed")
    rec = of("recommendation")
    rec["resolved"] = rec["resolved"].astype("boolean")
    return Ranking(target, int(a.get("n_images", 0)), of("rank_scores"), rec,
                   failed if failed is not None else pd.DataFrame(columns=["source", "spec", "metric", "reason"]),
                   [m for m in str(a.get("metrics", "")).split(", ") if m], of("verification"), of("verify_tau"),
                   agreement={k: a[k] for k in ("W", "m", "n", "chi2", "p") if k in a},
                   scored=str(a.get("scored", "")), n_boot=int(a.get("n_boot", 0)),
                   fraction=float(a.get("fraction", 0.5)),
                   costs=Costs.from_table(of("rank_costs")) if of("rank_costs") is not None else None)


def medtl_scenarios(results_dir=None) -> list[str]:
    """The transferability scenarios medtl's scored runs under ``results_dir`` record
    (``"dataset"`` for runs that record none); empty when there are none."""
    try:
        scores = _load_quiet(results_dir, "scores")
    except (FileNotFoundError, ValueError):
        return []
    if scores.empty:
        return []
    return sorted(scores["scenario"].fillna("dataset").unique()) if "scenario" in scores else ["dataset"]


def published_finetuning(folder=None, scenario: str = "dataset") -> pd.DataFrame:
    """Every released fine-tuning run (scenario ``"dataset"``: ``fined_<t>.csv``; ``"model"``:
    ``fined_<t>_imnet.csv``) with columns source, target, lr, momentum, wd, batch_size,
    status, stopped_at, val_loss, val_auc, test_auc (fetched by ``medtl data published``)."""
    files = [f["file"] for f in provenance()["dataset-transferability"]["files"] if f["file"].startswith("finetuned")]
    files = [f for f in files if f.endswith("_imnet.csv") == (scenario == "model")]
    frames = []
    for rel in files:
        t = pd.read_csv(published_file("dataset-transferability", rel, folder), low_memory=False)
        src = t["model"] if scenario == "model" and "source_flag" not in t else t["source_flag"]
        frames.append(pd.DataFrame({
            "source": src, "target": t["target_flag"], "lr": t["lr"], "momentum": t["momentum"], "wd": t["wd"],
            "batch_size": t["batch_size"], "status": t["Status"], "stopped_at": t.get("stopped_at"),
            "epochs": t.get("epochs"), "val_loss": t["val_loss"], "val_auc": t["val_auc"],
            "test_auc": t["test_auc"]}))
    return pd.concat(frames, ignore_index=True)


def medtl_finetuning(results_dir=None) -> pd.DataFrame:
    """medtl's fine-tuning runs (``finetune`` tables) with the published tables' columns."""
    ft = _load_quiet(results_dir, "finetune")
    if ft.empty:
        raise FileNotFoundError(f"no finished fine-tuning runs under {paths.results_dir(results_dir)}")
    return ft.rename(columns={"weight_decay": "wd"})


def published_representations(folder=None) -> dict[str, pd.DataFrame]:
    """The hidden-representations study's tables: ``cca`` (all targets, tidy: target, model1,
    model2, fold, layer, cca), ``similarity`` (P_obs/P_ind), ``auc``, and ``sim_vs_auc``
    (CCA of fine-tuned vs its init with the relative AUC gain over random init)."""
    def read(name):
        return pd.read_csv(published_file("revisiting-representations", f"results/{name}", folder))

    layers = ["conv1", "block1", "block2", "block3", "block4"]
    names = [f["file"].split("/")[-1] for f in provenance()["revisiting-representations"]["files"]]
    cca = [read(n).melt(id_vars=["model1", "model2", "fold", "stimuli"], value_vars=layers, var_name="layer",
                        value_name="cca").rename(columns={"stimuli": "target"})
           for n in sorted(names) if n.startswith("CCA_")]
    auc = read("AUC.csv")
    sims = []
    for source, file in (("ImageNet", "simVSaucImNet.csv"), ("RadImageNet", "simVSaucRadNet.csv")):
        t = read(file).melt(id_vars=["model1", "model2", "fold", "stimuli"], value_vars=layers, var_name="layer",
                            value_name="similarity").rename(columns={"stimuli": "target"}).assign(source=source)
        ft = auc[(auc.source == source) & (auc.freeze == "freezeFalse")][["target", "fold", "AUC"]]
        rnd = auc[auc.source == "random"][["target", "fold", "AUC"]].rename(columns={"AUC": "AUC_random"})
        t = t.merge(ft, on=["target", "fold"]).merge(rnd, on=["target", "fold"])
        t["auc_gain"] = (t.AUC - t.AUC_random) / t.AUC_random
        sims.append(t)
    return {"cca": pd.concat(cca, ignore_index=True), "similarity": read("similarity.csv"), "auc": auc,
            "sim_vs_auc": pd.concat(sims, ignore_index=True)}


def _no_published(kind: str):
    raise FileNotFoundError(f"no published tables ship for the {kind} analysis (the truncated-transfer study released "
                            "logs and figures only); use results_source='medtl'")


def medtl_tables(results_dir=None, names=()) -> dict[str, pd.DataFrame]:
    """medtl's recorded tables ``names`` under ``results_dir`` (empty frames where absent)."""
    return {n: _load_quiet(results_dir, n) for n in names}


#: kind → (published loader, medtl loader)
_LOADERS = {
    "transferability": (lambda scenario="dataset", folder=None, results_dir=None:
                        published_transferability(scenario, folder),
                        lambda scenario="dataset", folder=None, results_dir=None:
                        medtl_transferability(results_dir, scenario)),
    "finetuning": (lambda scenario="dataset", folder=None, results_dir=None: published_finetuning(folder, scenario),
                   lambda scenario="dataset", folder=None, results_dir=None: medtl_finetuning(results_dir)),
    "representations": (lambda folder=None, results_dir=None: published_representations(folder),
                        lambda folder=None, results_dir=None:
                        medtl_tables(results_dir, ("pairs", "rep_aucs", "predictions", "filters", "sim_vs_auc"))),
    "truncation": (lambda folder=None, results_dir=None: _no_published("truncation"),
                   lambda folder=None, results_dir=None: medtl_tables(results_dir, ("truncation", "svcca", "search", "svcca_blocks",
                                                                               "svcca_methods"))),
    "benchmark": (lambda folder=None, results_dir=None: {"published_table": BENCHMARK_PUBLISHED},
                  lambda folder=None, results_dir=None: {**medtl_tables(results_dir, ("benchmark",)),
                                                         "published_table": BENCHMARK_PUBLISHED}),
    "feature_reuse": (lambda folder=None, results_dir=None: published_representations(folder),
                      lambda folder=None, results_dir=None:
                      medtl_tables(results_dir, ("gain_ratios", "reuse_layers", "reuse_aucs"))),
}


def load_results(kind: str, results_source: str = "published", results_dir=None, published_dir=None, **options):
    """The tables an analysis needs, from the studies' published tables
    (``results_source="published"``) or medtl's runs under ``results_dir`` (``"medtl"``):
    the one dispatch every analysis notebook uses. ``kind``: transferability (``options``:
    scenario), finetuning (scenario), representations, feature_reuse, truncation, benchmark
    (the benchmark study published figures only: its domain-adaptive table, as numbers read
    off them, comes with either source)."""
    if kind not in _LOADERS:
        raise ValueError(f"unknown analysis kind {kind!r}; valid: {', '.join(_LOADERS)}")
    if results_source not in ("published", "medtl"):
        raise ValueError(f"results_source must be 'published' or 'medtl', got {results_source!r}")
    loader = _LOADERS[kind][0 if results_source == "published" else 1]
    return loader(folder=published_dir, results_dir=results_dir, **options)
