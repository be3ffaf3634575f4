"""Notebooks under papermill, sweeps (resume after a kill, failures kept), the submitit
executor, and the committed notebooks' hygiene."""

import html
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import REPO, write_flaky_kernel, write_toy_notebook

from medtl import analysis
from medtl import experiments as E
from medtl import results as rs
from medtl import transfer as TR
from medtl.runtime import cores

NOTEBOOKS = sorted(p for p in (REPO / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_notebooks_are_committed_clean_and_parameterised():
    assert len(NOTEBOOKS) == 17
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in code), path
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1 and "run_dir" in E.notebook_parameters(path), path


def _toy_notebook(path):
    return write_toy_notebook(path, "import pandas as pd, time\nfrom medtl import results\n"
                              "if fail:\n    raise RuntimeError(f'failing on purpose for x={x}')\n"
                              "time.sleep(0.5)\nresults.record(pd.DataFrame({'x': [x], 'square': [x * x]}), run_dir)")


def test_run_records_and_keeps_the_executed_notebook(tmp_path):
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    r = E.run(nb, {"x": 3}, results_dir=tmp_path / "res")
    assert r.status == "finished" and r.run_id == E.run_id(nb, {"x": 3})
    assert (r.run_dir / "notebook.ipynb").is_file()
    assert rs.load(tmp_path / "res").square.tolist() == [9]
    with pytest.raises(ValueError, match=r"toy.ipynb has no parameter\(s\) \['y'\]; its parameters: x, fail, run_dir"):
        E.run(nb, {"y": 1}, results_dir=tmp_path / "res")
    failed = E.run(nb, {"x": 2, "fail": True}, results_dir=tmp_path / "res", raise_on_error=False)
    assert failed.status == "failed" and "failing on purpose for x=2" in failed.error
    assert "failing on purpose" in (rs.read_run(failed.run_dir) or {})["error"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity calls on this platform")
def test_a_process_granted_one_core_sizes_its_pools_and_kernels_by_that_core_not_the_machine():
    # what Slurm's --cpus-per-task=1 or taskset grant: the affinity mask, not os.cpu_count()
    code = ("import json, os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); os.environ.pop('OMP_NUM_THREADS', None)\n"
            "from medtl import experiments as E, runtime, study, results\n"
            "print(json.dumps([os.cpu_count(), runtime.cores(), E.core_share(2), study.set_threads(), "
            "results.environment()['device']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    machine, granted, share, threads, device = json.loads(out.stdout.strip().splitlines()[-1])
    assert machine == (os.cpu_count() or 1) and granted == 1 and threads == 1 and device == "cpu (1 cores)"
    assert share == {"OMP_NUM_THREADS": "1"}  # two kernels on one core: one thread each
    assert cores() == len(os.sched_getaffinity(0))  # this process: every core it may use


def test_run_many_overlaps_kernels_shares_the_cores_and_raises_after_recording_every_run(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    nb = write_toy_notebook(tmp_path / "span.ipynb", "import os, time, pandas as pd\nfrom medtl import results\n"
                            "t0 = time.time(); time.sleep(1.5)\nif fail:\n    raise RuntimeError(f'no {x}')\n"
                            "results.record(pd.DataFrame({'x': [x], 't0': [t0], 't1': [time.time()], "
                            "'omp': [os.environ.get('OMP_NUM_THREADS')]}), run_dir)")
    out = E.run_many([(nb, {"x": 1}, tmp_path / "a"), (nb, {"x": 2}, None)], max_parallel=2, results_dir=tmp_path / "r")
    assert [r.status for r in out] == ["finished", "finished"] and out[0].run_dir == tmp_path / "a"
    assert out[1].run_dir == (tmp_path / "r" / "span" / E.run_id(nb, {"x": 2})).resolve()
    a, b = (rs.load(r.run_dir).iloc[0] for r in out)
    assert a.t0 < b.t1 and b.t0 < a.t1  # the two kernels ran at the same time
    assert a.omp == b.omp == str(max(1, cores() // 2))  # each its share of the cores
    assert "OMP_NUM_THREADS" not in os.environ  # restored
    swept = E.sweep(nb, {"x": [5, 6]}, results_dir=tmp_path / "s", max_parallel=2, progress=False)
    assert set(swept.status) == {"finished"} and set(rs.load(tmp_path / "s").omp) == {a.omp}  # a local sweep too
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert E.core_share(2) == {} and E.core_share(1) == {}  # a share set outside (a cluster job's) is kept
    with pytest.raises(Exception, match="RuntimeError: no 3"):  # the first failure in job order, after all ran
        E.run_many([(nb, {"x": 3, "fail": True}, tmp_path / "c"), (nb, {"x": 4}, tmp_path / "d")], max_parallel=2)
    assert rs.read_run(tmp_path / "c")["status"] == "failed" and rs.read_run(tmp_path / "d")["status"] == "finished"
    assert E.run_many([]) == []
    with pytest.raises(ValueError, match="max_parallel must be a whole number >= 1, got 0"):
        E.run_many([(nb, {}, tmp_path / "e")], max_parallel=0)


def test_sweep_survives_a_failure_and_a_kill(tmp_path):
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"notebook: {nb}\ngrid:\n  x: [1, 2, 3]\n  fail: [false]\n")
    res = tmp_path / "res"
    # a 4-run grid (x = 1, 2 with fail = False / True): two runs fail on purpose
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from medtl import experiments as E; "
              f"E.sweep({str(nb)!r}, {{'x': [1, 2], 'fail': [False, True]}}, results_dir={str(res)!r}, "
              "progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline:
        done = [p for p in res.rglob("run.json") if (rs.read_run(p.parent) or {}).get("status") in ("finished", "failed")]
        if len(done) >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = rs.runs(res)
    assert (first.status.isin(["finished", "failed"])).sum() == 2 and len(first) <= 3
    table = E.sweep(nb, {"x": [1, 2], "fail": [False, True]}, results_dir=res, progress=False)
    assert len(table) == 4 and table.skipped.sum() >= 2
    assert sorted(table.status) == ["failed", "failed", "finished", "finished"]
    runs = rs.runs(res)
    assert len(runs) == 4
    failed = runs[runs.status == "failed"]
    assert all("failing on purpose" in e for e in failed.error)
    assert all((res / "toy" / rid / "notebook.ipynb").is_file() for rid in failed.run_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = rs.load(res)
    assert "ignoring 2 unfinished" in str(caught[0].message)
    assert sorted(rows.x.tolist()) == [1, 2] and len(rows) == 2  # no row lost or duplicated
    again = E.sweep(nb, {"x": [1, 2], "fail": [False, True]}, results_dir=res, progress=False)
    assert again.skipped.all()
    assert E.load_grid(grid)[1] == {"x": [1, 2, 3], "fail": [False]}


def test_submitit_local_executor_runs_a_grid(tmp_path):
    submitit = pytest.importorskip("submitit")
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    executor = submitit.LocalExecutor(folder=str(tmp_path / "jobs"))
    executor.update_parameters(timeout_min=10)
    table = E.sweep(nb, {"x": [5, 6]}, results_dir=tmp_path / "res", executor=executor, progress=False)
    assert sorted(table.status) == ["finished", "finished"]
    assert sorted(rs.load(tmp_path / "res").square) == [25, 36]


def _log_notebook(path):
    return write_toy_notebook(path, "import time, pandas as pd\nfrom medtl import results\n"
                              "open(log, 'a').write(f'{x} start {time.time()}\\n')\n"
                              "time.sleep(2.5)\n"
                              "open(log, 'a').write(f'{x} end {time.time()}\\n')\n"
                              "results.record(pd.DataFrame({'x': [x]}), run_dir)",
                              parameters="x = 1\nlog = ''\nrun_dir = None")


def _intervals(log):
    starts, spans = {}, []
    for line in log.read_text().splitlines():
        x, what, t = line.split()
        if what == "start":
            starts.setdefault(x, []).append(float(t))
        else:
            spans.append((x, starts[x].pop(0), float(t)))
    return spans, starts


def test_killing_a_sweep_and_running_it_again_never_runs_one_run_twice_at_once(tmp_path):
    nb = _log_notebook(tmp_path / "slow.ipynb")
    log, res = tmp_path / "log.txt", tmp_path / "res"
    grid = {"x": [1, 2], "log": [str(log)]}
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r}); from medtl import experiments as E; "
              f"E.sweep({str(nb)!r}, {grid!r}, results_dir={str(res)!r}, progress=False)")
    first = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "start" in log.read_text()):
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)  # the sweep's main process only
    first.wait()
    second = subprocess.Popen([sys.executable, "-c", script])  # a second process, at once
    table = E.sweep(nb, grid, results_dir=res, progress=False)  # and this one
    second.wait(timeout=300)
    final = E.sweep(nb, grid, results_dir=res, progress=False)
    assert sorted(final.status) == ["finished", "finished"]
    spans, _ = _intervals(log)
    for x in ("1", "2"):
        mine = sorted((a, b) for k, a, b in spans if k == x)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(mine, mine[1:])), f"run x={x} overlapped: {mine}"
    assert set(table.status) <= {"finished", "locked", "failed"}


def test_a_run_locked_by_another_process_is_skipped(tmp_path):
    nb = _log_notebook(tmp_path / "slow.ipynb")
    log, res = tmp_path / "log.txt", tmp_path / "res"
    run_dir = res / "slow" / E.run_id(nb, {"x": 1, "log": str(log)})
    holder = subprocess.Popen([sys.executable, "-c", f"import sys, time; sys.path.insert(0, {str(REPO)!r}); "
                               "from pathlib import Path; from medtl.experiments import run_lock\n"
                               f"with run_lock(Path({str(run_dir)!r})):\n    print('held', flush=True); time.sleep(30)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    try:
        table = E.sweep(nb, {"x": [1], "log": [str(log)]}, results_dir=res, progress=False)
        assert table.status.tolist() == ["locked"] and "being executed by another process" in table.error[0]
        assert not log.exists()  # the notebook was not executed
    finally:
        holder.kill()
        holder.wait()
    assert E.sweep(nb, {"x": [1], "log": [str(log)]}, results_dir=res, progress=False).status.tolist() == ["finished"]


def test_a_worker_that_fails_before_its_notebook_starts_leaves_a_record(tmp_path):
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    table = E.sweep(nb, {"x": [1], "nope": [2]}, results_dir=tmp_path / "res", progress=False)
    assert table.status.tolist() == ["failed"] and "has no parameter(s) ['nope']" in table.error[0]
    info = rs.read_run(table.run_dir[0])
    assert info["status"] == "failed" and "nope" in info["error"]


def test_ctrl_c_on_medtl_run_marks_the_run_interrupted(tmp_path):
    nb = _log_notebook(tmp_path / "slow.ipynb")
    log = tmp_path / "log.txt"
    proc = subprocess.Popen([sys.executable, "-m", "medtl.cli", "run", str(nb), "-p", "log", str(log),
                             "--results", str(tmp_path / "res")], cwd=REPO)
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and "start" in log.read_text()):
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    info = rs.read_run(next((tmp_path / "res").rglob("run.json")).parent)
    assert info["status"] == "interrupted" and "KeyboardInterrupt" in info["error"]


# --- every shipped notebook under papermill ------------------------------------------------
@pytest.fixture(scope="session")
def synthetic_study(tmp_path_factory):
    """Run the experiment notebooks on the synthetic suite with tiny parameters."""
    out = tmp_path_factory.mktemp("study")
    models = str(out / "models")
    common = {"models_dir": models}
    sources = ["texture-a", "shape-a"]
    runs = {
        "pretrain": {**common, "sources": [*sources, "intensity"], "n_train": 80, "n_val": 40, "epochs": 1},
        "transferability": {**common, "sources": sources, "target": "texture-b"},
        "rank": {**common, "sources": ["source:texture-a-resnet18", "source:shape-a-resnet18", "resnet18:random",
                                       "no-such-arch"], "target": "texture-b", "n": 80, "n_boot": 2,
                 "metrics": ["leep", "logme", "knn_cosine", "gbc"]},
        "finetune": {**common, "sources": sources, "target": "texture-b", "lrs": [1e-3], "epochs": 1},
        "similarity": {**common, "sources": ["texture-a-resnet18", "shape-a-resnet18"], "target": "texture-b",
                       "n_train": 80, "n_stimulus": 100, "epochs": 1, "freeze_epochs": 1, "lr": 1e-3},
        "feature_reuse": {**common, "source": "texture-a-resnet18", "target": "texture-b", "n_train": 80,
                          "n_test": 60, "epochs": 1, "inits": ["ri", "wt", "st", 1], "fractions": [0.5, 1.0],
                          "runs": 2, "fid_model": "source", "fid_n": 100, "fid_size": None},
        "truncation": {**common, "source": "shape-a-resnet18", "target": "shape-b", "n_train": 80, "n_test": 60,
                       "epochs": 1, "block_cuts": [1, -1], "layer_cuts": [3], "lwft": [2], "pooling_ablation": True},
        "benchmark": {**common, "arch": "resnet18",
                      "inits": ["random", "source:shape-a-resnet18", "source:texture-a-resnet18",
                                "source:intensity-resnet18", "moco-v2"],
                      # synthetic sources in the zoo's roles, for the study's comparison figures
                      "kinds": {"source:shape-a-resnet18": "supervised", "source:texture-a-resnet18": "fine-grained",
                                "source:intensity-resnet18": "self-supervised"},
                      "baseline": "random", "targets": ["texture-b"], "seg_targets": ["texture-seg"], "trials": 2,
                      "epochs": 1, "seg_epochs": 1, "n_train": 40, "seg_size": 32, "n_boot": 20, "progress": False},
        "architectures": {"archs": ["resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small"], "weights": None,
                          "target": "texture-b", "epochs": 1, "grid": {"lr": [0.01]}, "signs": "study-b"},
    }
    # the sources first; then the other notebooks, two kernels at a time (one core each)
    results = {"pretrain": E.run("experiments/pretrain", runs.pop("pretrain"), results_dir=out / "results")}
    done = E.run_many([(f"experiments/{name}", params, None) for name, params in runs.items()], max_parallel=2,
                      results_dir=out / "results")
    results.update(zip(runs, done))
    return out, results


@pytest.mark.slow
def test_experiment_notebooks_leave_records(synthetic_study):
    out, results = synthetic_study
    assert {n: r.status for n, r in results.items()} == {n: "finished" for n in results}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = rs.load(out / "results", "scores")
        ft = rs.load(out / "results", "finetune")
        trunc = rs.load(out / "results", "truncation")
        aucs = rs.load(out / "results", "reuse_aucs")
        layers = rs.load(out / "results", "reuse_layers")
        pairs = rs.load(out / "results", "pairs")
        sva = rs.load(out / "results", "sim_vs_auc")
    dataset = scores[scores.scenario == "dataset"]
    assert set(dataset.source) == {"texture-a", "shape-a"}
    assert set(ft[ft.scenario == "dataset"].source) == {"texture-a", "shape-a"}
    assert ft[ft.scenario == "dataset"].selected.sum() == 2
    block = trunc[(trunc["mode"] == "block") & trunc.method.isin(["TTL", "FTL"])]
    assert sorted(zip(block.method, block.cut, block["head"])) == [  # the sweep's, its ablation's, the search's
        ("FTL", -1, "flatten"), ("FTL", -1, "gap"), ("TTL", 1, "flatten"), ("TTL", 1, "gap"), ("TTL", 2, "gap"),
        ("TTL", 3, "gap")]
    flat, gap = (block[(block.cut == 1) & (block["head"] == h)].params.item() for h in ("flatten", "gap"))
    assert flat > gap  # the flatten head reads the whole feature map (the pooling ablation)
    assert set(trunc.method) == {"TTL", "FTL", "LWFT", "TF", "TTL-1", "TTL-2", "TF-1", "TF-2", "LWFT-1", "LWFT-2"}
    assert {"auprc_ap", "auprc_trapezoid", "params", "macs"} <= set(trunc.columns)
    # feature reuse: RI/WT/ST and the hybrid at two data fractions, every analysis, CKA WT↔ST
    assert sorted(aucs.init.unique()) == ["ri", "st", "wt", "wt-st:1"] and sorted(aucs.fraction.unique()) == [0.5, 1]
    assert {"kappa", "balanced_accuracy", "auc_ovo"} <= set(aucs.columns)
    # texture-b is multi-class: the study's target metric is balanced accuracy (ISIC's macro recall)
    assert set(layers.analysis) == {"knn_balanced_accuracy", "importance_auc_drop", "l2", "cka_init_final",
                                    "cka_wt_st"}
    assert layers[layers.analysis == "knn_balanced_accuracy"].layer.nunique() == 10  # relu, 8 blocks, fc
    assert set(aucs.target_metric) == {"balanced_accuracy"}
    ratios = rs.load(out / "results", "gain_ratios")
    assert set(ratios.metric) == {"balanced_accuracy"}
    assert sorted(aucs.run.unique()) == [0, 1] and len(aucs) == 4 * 2 * 2  # inits × fractions × runs
    for fraction, g in aucs.groupby("fraction"):  # G = WT/RI and R = (WT − ST)/WT on that metric's run mean
        by = g.groupby("init").balanced_accuracy.mean()
        row = ratios[ratios.fraction == fraction].iloc[0]
        assert row.gain == pytest.approx(by["wt"] / by["ri"]) and row.reuse_share == pytest.approx(
            (by["wt"] - by["st"]) / by["wt"])
        assert row.n_runs == 2 and row.gain_sd >= 0
    # the FID of the target to the source's own training data (texture-a), in the source's features
    assert set(ratios.fid_reference) == {"texture-a"} and (ratios.fid > 0).all() and ratios.fid.nunique() == 1
    # hidden representations: the 14 pairs × 5 layers × 5 repeats of the study CCA
    assert pairs.groupby(["model1", "model2"]).ngroups == 14 and set(pairs.measure) == {"cca_study"}
    assert len(pairs) == 14 * 5 * 5 and (pairs.n_channels == 64).all()
    assert set(sva.source) == {"texture-a-resnet18", "shape-a-resnet18"} and sva.auc_gain.notna().all()
    rep = rs.load(out / "results", "rep_aucs")
    assert set(rep.fold) == {1} and set(rep.auc_average) == {"micro"}  # the study's CV fold and test AUC
    ranked = analysis.rank_results(results["rank"].run_dir)
    assert set(ranked["recommendation"].source) == {"texture-a-resnet18", "shape-a-resnet18", "resnet18:random"}
    failed = ranked["rank_failed"]
    assert list(failed.source[failed.metric == ""]) == ["no-such-arch"]  # the one candidate that cannot load
    assert set(failed.source) <= {"no-such-arch", TR.ALL_CANDIDATES}  # else only metrics left out, with why
    for r in results.values():
        assert (r.run_dir / "notebook.ipynb").is_file() and list(r.run_dir.glob("*.png"))


PUBLISHED_NOTEBOOKS = ["dataset_transferability", "architecture_transferability", "finetuned_aucs",
                       "representations", "feature_reuse"]


@pytest.fixture(scope="module")
def published_runs(tmp_path_factory):
    """Every analysis notebook on the published tables, run once for the tests that read them,
    two kernels at a time (:func:`medtl.experiments.run_many`, as ``medtl report`` runs them)."""
    out = tmp_path_factory.mktemp("published")
    runs = E.run_many([(f"analysis/{name}", {"results_source": "published"}, out / name)
                       for name in PUBLISHED_NOTEBOOKS], max_parallel=2)
    return dict(zip(PUBLISHED_NOTEBOOKS, runs))


@pytest.mark.slow
@pytest.mark.parametrize("name", PUBLISHED_NOTEBOOKS)
def test_analysis_notebooks_on_published_tables(published_runs, name):
    r = published_runs[name]
    pngs = list((r.run_dir / "figures").glob("*.png"))
    assert r.status == "finished" and pngs and all(p.stat().st_size > 5000 for p in pngs)
    if name == "dataset_transferability":
        tau = pd.read_csv(r.run_dir / "figures" / "tau_w.csv", index_col=0)
        assert tau.loc["MEAN"].round(3)[["lp_fu", "nleep", "leep", "logme"]].tolist() == [0.523, 0.411, 0.351, 0.335]
        assert {"ablation.png", "cd_diagram_three.png", "score_vs_auc.png"} <= {p.name for p in pngs}
        ranks = pd.read_csv(r.run_dir / "figures" / "ranks.csv", index_col=0)
        assert ranks.mean().round(2).tolist() == [4.00, 5.82, 3.91, 4.00, 4.91, 3.45, 1.91]
        realism = pd.read_csv(r.run_dir / "figures" / "realism.csv", index_col=0)
        assert realism.loc["lp_fu", "tau_w"].round(3) == 0.523 and realism.loc["lp_fu", "low"] < 0.523
        assert {"source_size", "always_imagenet", "LOTO ensemble (max 2)"} <= set(realism.index)
        assert "tau_forest.png" in {p.name for p in pngs}
    if name == "architecture_transferability":
        tau = pd.read_csv(r.run_dir / "figures" / "arch_tau_w.csv", index_col=0)
        assert tau.loc["MEAN"].round(3)[["lp_fu", "leep", "sfda"]].tolist() == [0.261, 0.28, 0.187]
        realism = pd.read_csv(r.run_dir / "figures" / "arch_realism.csv", index_col=0)
        assert {"model_size", "imagenet_top1", "LOTO ensemble (max 2)"} <= set(realism.index)
        executed = (r.run_dir / "notebook.ipynb").read_text()  # the study's rank file: checked, both p-values shown
        assert "disagrees with the ranks recomputed" in executed and "0.143 recomputed vs 0.113" in executed
        assert realism.loc["leep", "tau_w"].round(3) == 0.28


@pytest.mark.slow
def test_benchmark_notebooks_record_seeded_trials_and_figures(synthetic_study, tmp_path):
    out, results = synthetic_study
    run = results["benchmark"]
    nb = json.loads((run.run_dir / "notebook.ipynb").read_text())
    printed = ["".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
               if o.get("name") == "stdout"]
    assert printed[0].startswith("benchmark on random, source:shape-a-resnet18, source:texture-a-resnet18, "
                                 "source:intensity-resnet18; absent here, skipped: moco-v2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = rs.load(run.run_dir, "benchmark")
    assert set(zip(table.arm, table.metric)) == {("classification", "auc"), ("segmentation", "dice"),
                                                 ("segmentation", "dice_image"), ("segmentation", "iou")}
    assert sorted(table.seed.unique()) == [0, 1] and set(table.init) == {
        "random", "source:shape-a-resnet18", "source:texture-a-resnet18", "source:intensity-resnet18"}
    assert table.value.between(0, 1).all() and (table.low <= table.high).all()
    compare = pd.read_csv(run.run_dir / "compare.csv")
    assert set(compare[compare.init != "random"].marker) <= {"n.s.", "*", "**", "***", "****"}
    # the study's comparison figures, the synthetic sources in the zoo's roles (the run's kinds):
    # drawn by the report's benchmark notebook (test_the_report_runs_every_analysis_notebook_…)
    assert set(table.init_kind) == {"scratch", "supervised", "fine-grained", "self-supervised"}
    assert set(analysis.benchmark_groups(table)) == {"imagenet_vs_inat21", "ssl_vs_imagenet"}


@pytest.fixture(scope="session")
def synthetic_report(synthetic_study, tmp_path_factory):
    """`medtl report` over the synthetic study's results: every analysis notebook whose
    tables exist, run under papermill, its figures in the index with their captions."""
    from medtl.report import build_report

    out, _ = synthetic_study
    dest = tmp_path_factory.mktemp("report")
    return dest, build_report(out / "results", dest, progress=False).read_text()


#: each study's figures the synthetic study must produce (and the report show)
REPORT_FIGURES = {
    "representations": ["pairs", "similarity_vs_auc"],
    "feature_reuse": ["gain_bubbles", "knn_balanced_accuracy", "cka_wt_st"],
    "dataset_transferability": ["tau_bars"],
    "finetuned_aucs": ["auc_ci", "finetuned_auc_dots"],
    "truncation": ["cut_curves", "pooling", "svcca_bottlenecks", "svcca_methods"],
    "architecture_transferability": ["arch_tau_bars"],
    "benchmark": ["benchmark_bars", "benchmark_imagenet_vs_inat21", "benchmark_ssl_vs_imagenet"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(REPORT_FIGURES))
def test_the_report_runs_every_analysis_notebook_on_medtl_results(synthetic_report, name):
    dest, index = synthetic_report
    figures = dest / name / "figures"
    assert (dest / name / "notebook.ipynb").is_file() and list(figures.glob("*.png"))
    for figure in REPORT_FIGURES[name]:
        assert (figures / f"{figure}.png").stat().st_size > 5000, figure
        assert html.escape(analysis.caption(figure)) in index, figure


@pytest.mark.slow
def test_scenario_b_on_medtl_runs_records_its_sign_preset(synthetic_study, tmp_path):
    """Three small architectures scored on a synthetic target and fine-tuned: the reversed
    LP×FU and τ_w come out, and the run's metadata records the sign preset it used."""
    out, results = synthetic_study
    run = results["architectures"]
    assert rs.read_run(run.run_dir)["parameters"]["signs"] == "study-b"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = rs.load(run.run_dir, "scores")
        corr = rs.load(run.run_dir, "correlations")
    assert set(scores.scenario) == {"model"} and set(scores.signs) == {"study-b"}
    assert set(scores.source) == {"resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small"}
    lpfu = scores[scores.metric == "lp_fu"].set_index("source").value
    lp = scores[scores.metric == "lp"].set_index("source").value
    fu = scores[scores.metric == "fu"].set_index("source").value
    import medtl.transfer as TR

    assert np.allclose(lpfu.sort_index(), TR.lp_fu(lp, fu, reverse=True).sort_index())  # the cross-domain direction
    assert set(corr.signs) == {"study-b"} and "tau_w" in corr and set(corr.metric) >= {"lp_fu", "leep"}
    from medtl.report import build_report

    index = build_report(run.run_dir, tmp_path / "report", progress=False).read_text()
    assert "architecture transferability" in index  # with the study's scenario-B rank file checked, not trusted
    assert "rank file disagrees with the ranks recomputed" in index and "0.143 recomputed vs 0.113" in index


@pytest.mark.slow
def test_explore_notebook_executes(tmp_path):
    r = E.run("explore", {}, out_dir=tmp_path / "explore")
    assert r.status == "finished"
    nb = json.loads((r.run_dir / "notebook.ipynb").read_text())
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []))


# --- Slurm settings, run states from the controller's word, kernel-start retries --------------
def test_slurm_settings_of_a_sweep_file_become_sbatch_parameters():
    from medtl import slurm as S

    got = S.parameters({"partition": "gpu", "account": "lab", "time": 90, "mem_gb": 7.5, "cpus_per_run": 4,
                        "gpus_per_run": 1, "setup": ["module load cuda"], "sbatch": {"mail-type": "END"}},
                       array_parallelism=3)
    assert got == {"job_name": "medtl", "partition": "gpu", "account": "lab", "time": 90, "mem": "7680MB",
                   "cpus_per_task": 4, "gpus_per_node": 1, "setup": ["module load cuda"],
                   "additional_parameters": {"mail-type": "END"}, "array_parallelism": 3}
    assert S.parameters({"array_parallelism": 8}, array_parallelism=2)["array_parallelism"] == 8  # the file wins
    assert S.parameters({"slurm_partition": "a", "timeout_min": 5, "gpus_per_run": 0}) == \
        {"job_name": "medtl", "partition": "a", "time": 5}  # submitit's AutoExecutor names, no zero-GPU flag
    for bad, match in [({"partiton": "a"}, "unknown Slurm setting 'partiton'"),
                       ({"time": "1h"}, "'time' must be a positive whole number, got '1h'"),
                       ({"cpus_per_run": 0}, "'cpus_per_run' must be a positive whole number"),
                       ({"mem_gb": -1}, "'mem_gb' must be a non-negative number"),
                       ({"setup": "module load x"}, "'setup' must be a list of shell lines")]:
        with pytest.raises(ValueError, match=match):
            S.parameters(bad)


def test_a_runs_state_follows_the_controllers_word_on_its_job(tmp_path):
    def job(run_dir, jid, tail="Traceback\nMemoryError: boom"):
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "job.err").write_text(tail + "\n")
        (run_dir / E.JOB_FILE).write_text(json.dumps({"job_id": jid, "stderr": str(run_dir / "job.err"), "time": 30}))

    a = tmp_path / "a"
    job(a, "7_2")
    assert E.slurm_state(a, {"7_2": "PENDING"}) == ("pending", None)  # never run yet, queued
    rs.start_run(a, {"x": 1})
    assert E.slurm_state(a, {"7_2": "RUNNING"})[0] == "running"
    status, why = E.slurm_state(a, {"7_2": "TIMEOUT"}, record=False)  # read-only: described, not recorded
    assert status == "timeout" and rs.read_run(a)["status"] == "running"
    status, why = E.slurm_state(a, {"7_2": "TIMEOUT"})
    info = rs.read_run(a)
    assert status == info["status"] == "timeout" and "exceeded its time limit (30 min)" in why
    assert info["error"].endswith("MemoryError: boom") and [j["job_id"] for j in info["slurm_jobs"]] == ["7_2"]
    assert E.slurm_state(a, {"7_2": "TIMEOUT"})[0] == "timeout" and len(rs.read_run(a)["slurm_jobs"]) == 1

    b = tmp_path / "b"
    job(b, "8")
    rs.start_run(b, {"x": 2})
    assert E.slurm_state(b, {"8": "NODE_FAIL"})[0] == "interrupted"  # killed with its node: run again
    job(b, "9")  # resubmitted; it starts, and its node dies again
    rs.start_run(b, {"x": 2})
    assert E.slurm_state(b, {"9": "UNKNOWN"})[0] == "interrupted"
    assert [j["state"] for j in rs.read_run(b)["slurm_jobs"]] == ["NODE_FAIL", "UNKNOWN"]
    job(b, "10")
    rs.start_run(b, {"x": 2})
    rs.finish_run(b, "finished")
    assert E.slurm_state(b, {"10": "COMPLETED"}) == ("finished", None)
    c = tmp_path / "c"
    job(c, "11")
    rs.start_run(c, {})
    assert E.slurm_state(c, {"11": "OUT_OF_MEMORY"})[1].endswith("raise 'mem_gb' in the sweep file's executor:")


def test_executor_slurm_without_slurm_says_so(tmp_path, monkeypatch):
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="executor 'slurm' needs Slurm's sbatch and srun on the PATH"):
        E.sweep(nb, {"x": [1]}, results_dir=tmp_path / "res", executor="slurm", progress=False)
    with pytest.raises(ValueError, match="unknown Slurm setting 'gpu'"):
        E.sweep(nb, {"x": [1]}, results_dir=tmp_path / "res", executor="slurm", slurm={"gpu": 1}, progress=False)


def test_a_kernel_failing_to_start_is_retried_a_bounded_number_of_times(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(write_flaky_kernel(tmp_path / "jupyter", failures=3)))
    nb = _toy_notebook(tmp_path / "toy.ipynb")
    r = E.run(nb, {"x": 2}, results_dir=tmp_path / "res", kernel_name="flaky", kernel_retries=2, raise_on_error=False)
    assert r.status == "failed" and (tmp_path / "jupyter" / "starts").read_text() == "3"  # 1 + 2 retries, no more
    info = rs.read_run(r.run_dir)
    assert [k["attempt"] for k in info["kernel_retries"]] == [1, 2]
    assert "Kernel died before replying to kernel_info" in info["error"]
    assert "had failed to start 2 time(s) before" in info["error"]
    # the fourth start succeeds: a new run of the same folder starts its retry record afresh
    r = E.run(nb, {"x": 2}, results_dir=tmp_path / "res", kernel_name="flaky", kernel_retries=0)
    assert r.status == "finished" and rs.read_run(r.run_dir)["kernel_retries"] == []
    # a cell's own error that reads like one is not a kernel start failure: never retried
    bad = write_toy_notebook(tmp_path / "bad.ipynb", "raise OSError('Address already in use')")
    r = E.run(bad, {}, results_dir=tmp_path / "res", raise_on_error=False)
    assert r.status == "failed" and rs.read_run(r.run_dir)["kernel_retries"] == []
    with pytest.raises(ValueError, match="kernel_retries must be a whole number >= 0, got -1"):
        E.run(nb, {"x": 5}, results_dir=tmp_path / "res", kernel_retries=-1)


def test_a_silent_controller_is_asked_again_then_the_wait_gives_up_saying_the_jobs_go_on(tmp_path, monkeypatch):
    import shutil

    if shutil.which("squeue") is None:
        pytest.skip("squeue is not installed (Debian's slurm-client): no controller to fail to reach")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / E.JOB_FILE).write_text(json.dumps({"job_id": "41_0"}))
    conf = tmp_path / "slurm.conf"  # a cluster whose controller is down (nothing listens on its port)
    conf.write_text("ClusterName=down\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=1\nMessageTimeout=1\n"
                    "AuthType=auth/none\nNodeName=localhost\nPartitionName=debug Nodes=ALL\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    monkeypatch.setattr(E, "CONTROLLER_RETRIES", 2)
    with pytest.warns(UserWarning, match=r"squeue failed .*attempt 1 of 2"), \
            pytest.raises(RuntimeError, match="the jobs were submitted and go on: run the sweep again"):
        E._slurm_wait([run_dir], poll_s=0.01, progress=False)
