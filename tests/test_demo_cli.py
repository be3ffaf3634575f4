"""The main job in its reduced form, and the CLI's run / sweep / report commands."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import AS_A_USER, REPO, shared_medmnist_root, write_toy_notebook

from medtl import results as rs
from medtl.cli import main


def _demo(tmp_path, *args, data_env=True):
    env = dict(os.environ, MEDTL_RESULTS=str(tmp_path / "results"), **AS_A_USER)
    root = shared_medmnist_root()
    if root is not None and data_env:
        env["MEDTL_DATA"] = str(root)
    else:
        env["MEDTL_DATA"] = str(tmp_path / "no-data")
    proc = subprocess.run([sys.executable, "-m", "medtl.cli", "demo", "--quick", "--offline", *args], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, root if data_env else None


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, request):
    """The reduced demo, into a results root of its own (``<root>/demo``). Without MedMNIST
    files the demo picks the synthetic suite (``test_the_demo_picks_its_data``), which makes it
    the very run ``offline_demo`` makes (``--data synthetic``): that run is shared, not made twice."""
    if shared_medmnist_root() is None:
        folder, proc = request.getfixturevalue("offline_demo")
        return folder, proc, None
    tmp = tmp_path_factory.mktemp("demo")
    proc, root = _demo(tmp)
    return tmp, proc, root


def test_the_demo_picks_its_data(tmp_path):
    """MedMNIST when the target and 2 of its sources are under the root, else the synthetic
    suite (offline: nothing fetched); ``--data`` overrides, and a bad choice is refused."""
    from conftest import write_fake_medmnist

    from medtl import demo

    empty = tmp_path / "empty"
    empty.mkdir()
    synthetic = ("synthetic", demo.SYNTHETIC_TARGET, [*demo.SYNTHETIC_SOURCES, "random"])
    assert demo.choose_data(empty, offline=True) == synthetic
    with pytest.raises(FileNotFoundError, match="pneumoniamnist"):
        demo.choose_data(empty, prefer="medmnist", offline=True)
    with pytest.raises(ValueError, match="'auto', 'medmnist' or 'synthetic'"):
        demo.choose_data(empty, prefer="mnist", offline=True)
    root = tmp_path / "root"
    small = {"train": 8, "val": 4, "test": 4}
    for flag in ("pneumoniamnist", "breastmnist"):
        write_fake_medmnist(root, flag, n=small)
    assert demo.choose_data(root, offline=True) == synthetic  # the target and only 1 source: not enough
    write_fake_medmnist(root, "retinamnist", n=small)
    assert demo.choose_data(root, offline=True) == ("medmnist", "pneumoniamnist", ["breastmnist", "retinamnist", "random"])
    assert demo.choose_data(root, prefer="synthetic", offline=True) == synthetic


@pytest.mark.slow
def test_demo_quick_end_to_end(demo_run):
    tmp, proc, root = demo_run
    out = tmp / "results" / "demo"
    first = proc.stdout.splitlines()[0]
    assert first.startswith("medtl demo: using the MedMNIST files" if root else "medtl demo: no MedMNIST files")
    assert "weighted Kendall τ_w per metric" in proc.stdout
    assert "[1/4] pre-training the sources" in proc.stdout and " epoch 1/" in proc.stdout  # progress lines
    assert "MB on disk)" in proc.stdout
    index = (out / "report" / "index.html").read_text()
    header, _, rest = index.partition("<h2>")
    assert first in header  # the report says which data it used
    assert rest.startswith("Weighted Kendall τ<sub>w</sub> per metric")  # and opens with the τ_w table
    for metric in ("leep", "nleep", "logme", "lp_fu"):
        assert f"({metric})</th>" in index
    assert "LP×FU" in index and ">ours<" not in index  # every metric named and explained
    for step in ("pretrain", "transferability", "finetune"):
        assert (out / step / "notebook.ipynb").is_file() and rs.read_run(out / step)["status"] == "finished"
    assert (out / "report" / "dataset_transferability.html").stat().st_size > 10_000
    assert list((out / "report" / "dataset_transferability" / "figures").glob("*.png"))
    assert not list(out.rglob("last.pt"))  # only the weights the report needs


@pytest.mark.slow
def test_demo_report_is_honest(demo_run):
    import re

    tmp, _, _ = demo_run
    index = (tmp / "results" / "demo" / "report" / "index.html").read_text()
    assert re.search(r"\d\.\d{3} \[-?\d\.\d{2}, -?\d\.\d{2}\]", index)  # τ_w and AUCs with their CIs
    assert "95 % bootstrap" in index and 'class="caveats"' in index
    assert "A single target" in index  # the demo has one target: said, not hidden
    assert "candidate sources" in index or "Only" in index
    assert "Friedman / Nemenyi / critical difference omitted" in index
    assert index.count("<figcaption>") == len(set(re.findall(r"<figcaption>(.*?)</figcaption>", index)))  # no duplicates
    assert "<figcaption>auc_dots</figcaption>" not in index  # captions say what a figure shows
    assert index.count("Fine-tuned test AUC of each source per target") == 1  # the AUC dots once, not twice


@pytest.mark.slow
def test_demo_cli_report_and_forest_plot_show_the_same_intervals(demo_run):
    """The τ_w intervals the demo prints, the report's table and the forest plot's table are
    one computation: the same numbers in all three."""
    import pandas as pd

    from medtl import report

    tmp, proc, _ = demo_run
    out = tmp / "results" / "demo"
    summary = report.tau_summary(out)
    printed = proc.stdout.split("weighted Kendall τ_w per metric")[1]
    index = (out / "report" / "index.html").read_text()
    forest = pd.read_csv(out / "report" / "dataset_transferability" / "figures" / "realism.csv", index_col=0)
    for metric, r in summary.iterrows():
        if pd.isna(r.tau_w):
            continue
        line = next(x for x in printed.splitlines() if x.split()[:1] == [metric])
        assert [float(v) for v in line.split()[1:4]] == pytest.approx([r.tau_w, r.low, r.high], abs=6e-4), line
        assert f"{r.tau_w:.3f} [{r.low:.2f}, {r.high:.2f}]" in index, metric
        assert forest.loc[metric, ["tau_w", "low", "high"]].tolist() == pytest.approx([r.tau_w, r.low, r.high]), metric


@pytest.mark.slow
def test_demo_sources_and_readme_examples_work_as_written(demo_run, monkeypatch):
    """After the demo, the README's score and feature/CKA examples and its sweep example run
    as written (they use the MedMNIST demo's sources)."""
    import re

    import medtl.models as M

    tmp, _, root = demo_run
    monkeypatch.setenv("MEDTL_RESULTS", str(tmp / "results"))
    monkeypatch.delenv("MEDTL_MODELS", raising=False)
    assert "random-resnet18" in M.list_sources()
    assert M.load_source("random-resnet18").medtl["arch"] == "resnet18"
    if root is None:
        pytest.skip("the README's examples use the MedMNIST demo's sources; this demo ran on the synthetic suite")
    monkeypatch.setenv("MEDTL_DATA", str(root))
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    score = next(b for b in blocks if "TR.score(" in b and "source:bloodmnist-resnet18" in b)
    similarity = next(b for b in blocks if "S.cka_matrix(" in b)
    env = {}
    exec(compile(score, "README score example", "exec"), env)  # noqa: S102 (the README, as written)
    assert set(env["table"].source) == {"blood", "breast", "random"}
    exec(compile(similarity, "README similarity example", "exec"), env)  # noqa: S102
    sweep = subprocess.run([sys.executable, "-m", "medtl.cli", "sweep", str(REPO / "examples" / "finetune_sweep.yaml"),
                            "--max-parallel", "2"],  # as the file says to run it
                           env={**os.environ, "MEDTL_RESULTS": str(tmp / "results"), "MEDTL_DATA": str(root)},
                           capture_output=True, text=True, timeout=900)
    assert sweep.returncode == 0, sweep.stdout[-2000:] + sweep.stderr[-2000:]
    assert sweep.stdout.count("finished") >= 2


@pytest.mark.slow
def test_offline_synthetic_demo_finds_the_known_answer(offline_demo):
    """Without MedMNIST files the demo runs on the synthetic suite. Its ground truth learns:
    every selected fine-tuning run beats chance on validation, or the demo says it failed
    to learn; the related source (texture-a) reaches the highest fine-tuned AUC; at least 10
    of the default metrics put texture-a strictly first (a tie with another source does not
    count: H-score saturates at C − 1 for every source when N ≤ D); every metric's τ_w is
    finite."""
    folder, proc = offline_demo
    assert proc.stdout.splitlines()[0].startswith("medtl demo: no MedMNIST files")
    import warnings

    import medtl.transfer as TR
    from medtl import analysis

    demo = folder / "results" / "demo"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores, auc = analysis.medtl_transferability(demo)
        finetune = rs.load(demo, "finetune")
    sel = finetune[finetune.selected]
    unlearned = sel[~sel.learned.astype(bool)]
    for r in unlearned.itertuples():  # said, never hidden
        assert f"{r.source}: failed to learn" in proc.stdout
    # every pre-trained source's selected run learned (the random initialisation may not, in 5 epochs)
    assert set(unlearned.source) <= {"random"}, sel[["source", "lr", "val_auc", "val_auc_low", "learned"]]
    assert (sel[sel.learned.astype(bool)].val_auc_low > 0.5).all()
    assert auc["texture-b"].idxmax() == "texture-a", auc
    defaults = [m for m in TR.metric_names(default_only=True) if m in scores]
    first = {}
    for m in defaults:
        col = scores[m]["texture-b"].drop(index="texture-b", errors="ignore")
        top = col[np.isclose(col, col.max(), rtol=1e-9, atol=0)].index
        first[m] = top[0] if len(top) == 1 else "tie: " + ", ".join(top)
    hits = sorted(m for m, v in first.items() if v == "texture-a")
    assert len(hits) >= 10, f"{len(hits)} of {len(first)} default metrics put texture-a first: {first}"
    corr = analysis.evaluate_metrics(scores, auc)["corr"]
    assert corr.tau_w.notna().all(), corr[["metric", "tau_w"]]


def test_cli_run_sweep_report(tmp_path, capsys):
    path = write_toy_notebook(tmp_path / "nb.ipynb", "import pandas as pd\nfrom medtl import results\n"
                              "results.record(pd.DataFrame({'k': [k], 'name': [name]}), run_dir)",
                              parameters="k = 1\nname = 'a'\nrun_dir = None")
    assert main(["run", str(path), "-p", "k", "7", "-p", "name", "b", "--results", str(tmp_path / "r")]) == 0
    row = rs.load(tmp_path / "r").iloc[0]
    assert row.k == 7 and row["name"] == "b"
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"notebook: {path}\ngrid:\n  k: [1, 2]\n")
    assert main(["sweep", str(grid), "--results", str(tmp_path / "r")]) == 0
    assert sorted(rs.load(tmp_path / "r").k) == [1, 2, 7]
    with pytest.raises(SystemExit):
        main(["report"])
    assert main(["report", str(tmp_path / "r")]) == 2  # nothing analysable: a clear error
    assert "no finished runs with analysable tables" in capsys.readouterr().err
    assert REPO.is_dir()
