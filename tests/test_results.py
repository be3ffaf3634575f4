import json

import pandas as pd
import pytest

from medtl import results as rs


def test_record_and_load_roundtrip(tmp_path):
    for i in range(3):
        rs.record(pd.DataFrame({"metric": ["a", "b"], "value": [i, i + 0.5]}), tmp_path / f"run{i}",
                  parameters={"seed": i, "grid": [1, 2]})
    info = json.loads((tmp_path / "run1" / "run.json").read_text())
    assert info["status"] == "finished" and info["parameters"] == {"seed": 1, "grid": [1, 2]}
    assert info["medtl_version"] and "torch" in info["packages"] and info["started"] and info["finished"]
    table = rs.load(tmp_path, with_parameters=True)
    assert len(table) == 6 and set(table.run_id) == {"run0", "run1", "run2"}
    assert table.groupby("run_id")["param.seed"].first().to_dict() == {"run0": 0, "run1": 1, "run2": 2}
    assert not list(tmp_path.rglob("*.part"))  # atomic writes leave no temporaries


def test_unfinished_and_failed_runs_are_ignored_with_a_warning(tmp_path):
    rs.record(pd.DataFrame({"x": [1]}), tmp_path / "done")
    rs.record(pd.DataFrame({"x": [2]}), tmp_path / "half", finish=False)
    rs.start_run(tmp_path / "crashed", {"a": 1})
    rs.finish_run(tmp_path / "failed", "failed", error="Traceback ...\nValueError: boom")
    with pytest.warns(UserWarning, match=r"ignoring 3 unfinished run\(s\).*crashed \(running\)"):
        table = rs.load(tmp_path)
    assert table.x.tolist() == [1]
    runs = rs.runs(tmp_path).set_index("run_id")
    assert runs.loc["failed", "status"] == "failed" and "boom" in runs.loc["failed", "error"]


def test_record_rejects_non_tables(tmp_path):
    with pytest.raises(TypeError, match="pandas DataFrame"):
        rs.record({"a": 1}, tmp_path)
