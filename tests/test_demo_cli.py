"""The main job in its reduced form, and the CLI's run / sweep / report commands."""

import os
import subprocess
import sys

import pytest
from conftest import REPO, shared_medmnist_root, write_toy_notebook

from medtl import results as rs
from medtl.cli import main


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path):
    env = dict(os.environ)
    root = shared_medmnist_root()
    if root is not None:
        env["MEDTL_DATA"] = str(root)
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "medtl.cli", "demo", "--quick", "--out", str(out)], env=env,
                          capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first.startswith("medtl demo: using the MedMNIST files" if root else "medtl demo: no MedMNIST files")
    assert "weighted Kendall τ_w per metric" in proc.stdout
    index = (out / "report" / "index.html").read_text()
    header, _, rest = index.partition("<h2>")
    assert first in header  # the report says which data it used
    assert rest.startswith("Weighted Kendall τ<sub>w</sub> per metric")  # and opens with the τ_w table
    for metric in ("leep", "nleep", "logme", "lp_fu"):
        assert f"<th>{metric}</th>" in index
    for step in ("pretrain", "transferability", "finetune"):
        assert (out / step / "notebook.ipynb").is_file() and rs.read_run(out / step)["status"] == "finished"
    assert (out / "report" / "dataset_transferability.html").stat().st_size > 10_000
    assert list((out / "report" / "dataset_transferability" / "figures").glob("*.png"))


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
