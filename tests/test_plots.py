import numpy as np
import pandas as pd

import medtl.plots as P
import medtl.similarity as S
import medtl.transfer as TR


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_transfer_figures_from_published_tables(tmp_path):
    from medtl import analysis

    res = analysis.published_file("dataset-transferability", "results/AUCs_dataset.csv").parent
    read = lambda n: pd.read_csv(res / n, index_col=0).set_index("source")  # noqa: E731
    scores = {m: read(f"{m}_dataset.csv") for m in ("leep", "nleep", "logme")}
    auc = read("AUCs_dataset.csv")
    corr = TR.correlate(scores, auc)
    ranks = TR.ranks(corr)
    _png_ok(P.save(P.tau_bars(corr), tmp_path / "tau.png"))
    _png_ok(P.save(P.rank_table(ranks), tmp_path / "ranks.png"))
    _png_ok(P.save(P.cd_diagram(ranks, TR.critical_difference(3, len(ranks))), tmp_path / "cd.png"))
    _png_ok(P.save(P.auc_dots(auc.iloc[:, :4]), tmp_path / "auc.png"))
    tidy = pd.concat([t.stack().rename("value").rename_axis(["source", "target"]).reset_index().assign(metric=m)
                      for m, t in scores.items()])
    _png_ok(P.save(P.score_vs_auc(tidy[tidy.target.isin(["bloodmnist", "dermamnist"])], auc), tmp_path / "sva.png"))


def test_similarity_figures(tmp_path):
    layers = ["conv1", "layer1", "layer2"]
    table = pd.DataFrame([{"layer_a": a, "layer_b": b, "cka": float(i == j)} for i, a in enumerate(layers)
                          for j, b in enumerate(layers)])
    _png_ok(P.save(P.cka_heatmap(table), tmp_path / "cka.png"))
    curve = pd.DataFrame({"layer": layers * 2, "cka": [1, 0.8, 0.5, 1, 0.9, 0.7], "init": ["wt"] * 3 + ["st"] * 3})
    _png_ok(P.save(P.layerwise(curve, "cka", hue="init"), tmp_path / "curve.png"))
    _png_ok(P.save(P.filter_grid(S.filter_grid(np.random.default_rng(0).normal(size=(36, 3, 7, 7)))),
                   tmp_path / "filters.png"))
    sim = pd.DataFrame({"similarity": np.linspace(0, 1, 10), "auc_gain": np.linspace(0.1, 0, 10), "layer": "conv1"})
    _png_ok(P.save(P.similarity_vs_auc(sim), tmp_path / "sim.png"))


def test_cd_cliques():
    assert P.cliques([1.0, 1.5, 3.0, 3.2, 6.0], cd=1.0) == [(0, 1), (2, 3)]
    assert P.cliques([1.0, 2.0, 3.0], cd=0.5) == []
    assert P.cliques([1.91, 3.45, 3.91, 4.0, 4.0, 4.91, 5.82], cd=2.716) == [(0, 4), (1, 6)]


def test_similarity_vs_auc_draws_both_sources_of_the_published_tables_with_the_studys_correlations(tmp_path):
    """Spec §B.5: a 2×5 grid, ImageNet row and RadImageNet row, conv1 … block4; the panels'
    Pearson / Spearman equal the spec's table computed from the repository's CSVs."""
    from medtl.analysis import load_results

    sva = load_results("representations")["sim_vs_auc"]
    fig = P.similarity_vs_auc(sva)
    grid = np.array(fig.axes).reshape(2, 5)
    assert [a.get_title().split("|")[0].strip() for a in grid[:, 0]] == ["source = ImageNet", "source = RadImageNet"]
    texts = {a.get_title(): a.texts[0].get_text() for a in fig.axes}
    spec = {"ImageNet": ["-0.16 -0.04", "-0.03 -0.06", "-0.07 -0.27", "-0.10 -0.15", "-0.13 -0.07"],
            "RadImageNet": ["-0.15 -0.02", "-0.45 -0.53", "-0.43 -0.47", "-0.56 -0.52", "-0.47 -0.32"]}
    for source, cells in spec.items():
        for layer, cell in zip(["conv1", "block1", "block2", "block3", "block4"], cells):
            r, rho = cell.split()
            assert texts[f"source = {source} | layer = {layer}"] == f"r {r}  ρ {rho}", (source, layer)
    _png_ok(P.save(fig, tmp_path / "sva.png"))
    few = pd.DataFrame({"similarity": [0.1, 0.2], "auc_gain": [0.0, 0.1], "layer": "conv1", "source": "a"})
    assert P.similarity_vs_auc(few).axes[0].texts[0].get_text() == "r, ρ n.a. (< 3 points)"


def test_gain_bubbles_orders_targets_by_fid_with_a_panel_per_architecture(tmp_path):
    """The study's figure: panels per model, targets along x by FID to the source data
    (ISIC ≈141 < DDSM ≈155 < … < PCam ≈202), data sizes along y, sd over runs written."""
    rows = []
    for arch in ("deit_small", "resnet50"):
        for ds, fid in (("pcam", 202.0), ("isic", 141.0), ("ddsm", 155.0)):
            for fraction in (0.1, 1.0):
                rows.append({"arch": arch, "dataset": ds, "fraction": fraction, "fid": fid, "gain": 1 + fid / 1000,
                             "reuse_share": fid / 400, "gain_sd": 0.01, "reuse_share_sd": 0.02})
    fig = P.gain_bubbles(pd.DataFrame(rows))
    panels = [a for a in fig.axes if a.get_title() in ("deit_small", "resnet50")]
    assert [a.get_title() for a in panels] == ["deit_small", "resnet50"]
    assert [t.get_text() for t in panels[0].get_xticklabels()] == ["isic\nFID 141", "ddsm\nFID 155", "pcam\nFID 202"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == ["10 %", "100 %"]
    assert any("± 0.01" in t.get_text() for t in panels[0].texts)
    _png_ok(P.save(fig, tmp_path / "bubbles.png"))
    plain = pd.DataFrame(rows).drop(columns=["fid", "gain_sd", "reuse_share_sd"])  # older tables still draw
    assert [t.get_text() for t in P.gain_bubbles(plain).axes[0].get_xticklabels()] == ["ddsm", "isic", "pcam"]
