"""Sweeps on a real Slurm cluster: Debian's slurmctld + slurmd + munge on this machine,
configured and started by ``tests/slurm/cluster.sh`` for this module and stopped after it.

What is checked against the controller itself: one array task per run, the results equal
to the local executor's cell for cell, a re-run that never submits a queued or running run
again, ``scancel`` mid-training → interrupted → resubmitted → resumed from the checkpoint
bit-exactly, a time limit reported as such, a kernel that fails to start retried and
recorded, and the sbatch script medtl submits (golden file)."""

import getpass
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, write_flaky_kernel, write_toy_notebook

from medtl import cli
from medtl import experiments as E
from medtl import results as rs
from medtl import slurm as S

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
GOLDEN = REPO / "tests" / "slurm" / "golden_submission.sh"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A one-node Slurm cluster (``debug`` partition) for this module; ``SLURM_CONF`` points
    every client (sbatch, squeue, submitit) at it."""
    if sys.platform != "linux":
        pytest.skip("the test cluster runs Debian's Slurm packages on Linux")
    got = subprocess.run(["bash", str(SCRIPT), "install"], capture_output=True, text=True)
    if got.returncode != 0:
        pytest.skip("Debian's slurmctld, slurmd and munge packages are not installed and apt-get could not "
                    f"install them: {got.stderr.strip()[-300:]}")
    folder = tmp_path_factory.mktemp("slurm")
    got = subprocess.run(["bash", str(SCRIPT), "start", str(folder)], capture_output=True, text=True)
    assert got.returncode == 0, f"the test cluster did not start:\n{got.stdout}\n{got.stderr}"
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(folder / "slurm.conf")
    try:
        yield folder
    finally:
        subprocess.run(["scancel", "-u", getpass.getuser()], capture_output=True)
        subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True)
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old


def _seeded_notebook(path):
    return write_toy_notebook(path, "import numpy as np, pandas as pd, time\nfrom medtl import results\n"
                              "time.sleep(pause)\n"
                              "draws = np.random.default_rng(seed).normal(size=5)\n"
                              "results.record(pd.DataFrame({'seed': seed, 'scale': scale, 'value': scale * draws}),"
                              " run_dir)", parameters="seed = 0\nscale = 1.0\npause = 0.0\nrun_dir = None")


@pytest.fixture(scope="module")
def overrunning(cluster, tmp_path_factory):
    """A run that needs 10 minutes under a 1-minute limit, submitted when the module starts
    (the first test asks for it) so that the controller's minute passes while the other
    tests run; the last test waits for the verdict."""
    folder = tmp_path_factory.mktemp("overrun")
    nb = _seeded_notebook(folder / "slow.ipynb")
    grid, res = {"seed": [0], "pause": [600.0]}, folder / "res"
    table = E.sweep(nb, grid, results_dir=res, executor="slurm", slurm={"time": 1}, wait=False, progress=False)
    assert table.status.tolist() in (["pending"], ["running"])
    (folder / "sweep.yaml").write_text(f"notebook: {nb}\ngrid:\n  seed: [0]\n  pause: [600.0]\nexecutor:\n  time: 1\n")
    return nb, grid, res


def _queue():
    return subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True, check=True).stdout.split()


RESOURCES = {"partition": "debug", "time": 5, "mem_gb": 1, "cpus_per_run": 1, "array_parallelism": 2,
             "job_name": "medtl-test", "setup": ["export MEDTL_SETUP_RAN=1"], "sbatch": {"comment": "medtl golden"}}


def test_a_sweep_runs_as_a_job_array_and_equals_the_local_executor(cluster, overrunning, tmp_path):
    nb = _seeded_notebook(tmp_path / "seeded.ipynb")
    grid = tmp_path / "sweep.yaml"
    grid.write_text(f"notebook: {nb}\ngrid:\n  seed: [0, 1, 2]\n  scale: [1.0, 2.5]\n"
                    + "executor:\n" + "".join(f"  {k}: {json.dumps(v)}\n" for k, v in RESOURCES.items()))
    on_slurm = E.sweep(None, grid, results_dir=tmp_path / "slurm", executor="slurm", poll_s=0.5, progress=False)
    assert len(on_slurm) == 6 and (on_slurm.status == "finished").all(), on_slurm
    # one array task per run, all of one array job
    ids = on_slurm.job_id.tolist()
    assert len(set(ids)) == 6 and len({i.split("_")[0] for i in ids}) == 1
    assert sorted(int(i.split("_")[1]) for i in ids) == list(range(6))
    assert all(S.job_states(ids)[i] == "COMPLETED" for i in ids)

    local = E.sweep(None, grid, results_dir=tmp_path / "local", max_parallel=2, progress=False)
    assert (local.status == "finished").all()
    a = rs.load(tmp_path / "slurm", with_parameters=True).sort_values(["run_id", "value"]).reset_index(drop=True)
    b = rs.load(tmp_path / "local", with_parameters=True).sort_values(["run_id", "value"]).reset_index(drop=True)
    assert len(a) == 30
    pd.testing.assert_frame_equal(a, b)  # cell for cell, same seeds
    pd.testing.assert_frame_equal(rs.load(tmp_path / "slurm", with_parameters=True).sort_values(["run_id", "value"])
                                  .reset_index(drop=True), a)  # collecting twice duplicates nothing

    again = E.sweep(None, grid, results_dir=tmp_path / "slurm", executor="slurm", poll_s=0.5, progress=False)
    assert again.skipped.all() and again.job_id.tolist() == ids  # nothing submitted twice

    # the sbatch script medtl submitted, against the golden file
    record = E.job_record(on_slurm.run_dir[0])
    script = Path(record["submission"]).read_text()
    script = script.replace(str((tmp_path / "slurm").resolve()), "<RESULTS>").replace(sys.executable, "<PYTHON>")
    assert script == GOLDEN.read_text()
    assert Path(record["stdout"]).name == f"{ids[0]}_0_log.out" and Path(record["stdout"]).is_file()


def _training_notebook(path):
    """Fits a tiny MLP for ``epochs`` epochs with a checkpoint in the run folder; a callback
    sleeps ``pause`` s per epoch so a test can cancel the job mid-training."""
    body = ("import hashlib, time, numpy as np, pandas as pd, torch\n"
            "from medtl import results, train, data as D\n"
            "rng = np.random.default_rng(0)\n"
            "x = rng.integers(0, 256, size=(96, 1, 8, 8), dtype=np.uint8)\n"
            "y = (x.reshape(96, -1).mean(1) > 127.5).astype(np.int64)\n"
            "ds = D.ImageSet(torch.tensor(x), torch.tensor(y), 'multi-class', ['a', 'b'], 'toy')\n"
            "torch.manual_seed(0)\n"
            "model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))\n"
            "fit = train.fit(model, ds, epochs=epochs, lr=0.05, batch_size=16, seed=3, checkpoint_dir=f'{run_dir}/ckpt',\n"
            "                callbacks=[lambda e, row: time.sleep(pause)])\n"
            "digest = hashlib.sha256(b''.join(v.numpy().tobytes() for v in fit.model.state_dict().values())).hexdigest()\n"
            "results.record(pd.DataFrame({'digest': [digest], 'loss': [fit.history['train_loss'].iloc[-1]],\n"
            "                             'resumed_from': [fit.resumed_from or 0]}), run_dir)")
    return write_toy_notebook(path, body, parameters="epochs = 6\npause = 0.0\nrun_dir = None")


def _wait_until(check, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def test_scancel_mid_training_then_a_rerun_resumes_bit_exactly_and_runs_each_run_once(cluster, tmp_path):
    nb = _training_notebook(tmp_path / "train.ipynb")
    grid = {"epochs": [6], "pause": [1.5]}
    res = tmp_path / "res"
    first = E.sweep(nb, grid, results_dir=res, executor="slurm", slurm={"time": 5}, wait=False, progress=False)
    assert first.status.iloc[0] in ("pending", "running")
    job = first.job_id.iloc[0]
    # a second sweep while it is queued/running submits nothing (asked of the controller)
    second = E.sweep(nb, grid, results_dir=res, executor="slurm", wait=False, progress=False)
    assert second.skipped.all() and second.job_id.iloc[0] == job
    assert second.status.iloc[0] in ("pending", "running") and sum(q.split("|")[0] == job for q in _queue()) == 1
    local = E.sweep(nb, grid, results_dir=res, progress=False)  # nor does the local executor run it
    assert local.skipped.all() and local.status.iloc[0] in ("pending", "running")

    run_dir = Path(first.run_dir.iloc[0])
    _wait_until(lambda: ((run_dir / "ckpt").is_dir() and any((run_dir / "ckpt").iterdir()))
                or (rs.read_run(run_dir) or {}).get("status") == "failed", 120, "a checkpoint")
    assert (rs.read_run(run_dir) or {}).get("status") == "running", (rs.read_run(run_dir) or {}).get("error")
    subprocess.run(["scancel", job], check=True)
    _wait_until(lambda: S.job_states([job])[job] not in S.ACTIVE, 60, "the cancelled job to end")
    status = E.sweep_status(nb, grid, results_dir=res)
    assert status.state.tolist() == ["interrupted"] and status.slurm_state.tolist() == ["CANCELLED"]

    third = E.sweep(nb, grid, results_dir=res, executor="slurm", poll_s=0.5, progress=False)
    assert third.status.tolist() == ["finished"] and third.job_id.iloc[0] != job
    info = rs.read_run(run_dir)
    assert [j["job_id"] for j in info["slurm_jobs"]] == [job] and info["slurm_jobs"][0]["state"] == "CANCELLED"
    resumed = rs.load(res)
    assert len(resumed) == 1 and resumed.resumed_from.iloc[0] >= 2  # it did resume, not start over

    plain = E.run(nb, {"epochs": 6, "pause": 0.0}, results_dir=tmp_path / "plain")  # never interrupted
    assert plain.status == "finished"
    ref = rs.load(tmp_path / "plain")
    assert resumed.digest.iloc[0] == ref.digest.iloc[0] and resumed.loss.iloc[0] == ref.loss.iloc[0]
    assert E.sweep(nb, grid, results_dir=res, executor="slurm", progress=False).skipped.all()


def test_a_kernel_that_fails_to_start_is_retried_and_recorded(cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTER_PATH", str(write_flaky_kernel(tmp_path / "jupyter", failures=1)))
    nb = _seeded_notebook(tmp_path / "nb.ipynb")
    table = E.sweep(nb, {"seed": [4]}, results_dir=tmp_path / "res", executor="slurm", kernel_name="flaky",
                    poll_s=0.5, progress=False)
    assert table.status.tolist() == ["finished"]
    info = rs.read_run(table.run_dir.iloc[0])
    assert [r["attempt"] for r in info["kernel_retries"]] == [1]
    assert "Kernel died before replying to kernel_info" in info["kernel_retries"][0]["reason"]
    assert (tmp_path / "jupyter" / "starts").read_text() == "2"


def test_a_run_over_its_time_limit_is_reported_as_timed_out(overrunning, capsys):
    nb, grid, res = overrunning
    table = E.sweep(nb, grid, results_dir=res, executor="slurm", poll_s=2, progress=False)
    assert table.status.tolist() == ["timeout"] and table.skipped.all()  # never submitted again
    job = table.job_id.iloc[0]
    assert S.job_states([job])[job] == "TIMEOUT"
    info = rs.read_run(table.run_dir.iloc[0])
    assert info["status"] == "timeout" and "exceeded its time limit (1 min)" in info["error"]
    assert info["slurm_jobs"][0]["state"] == "TIMEOUT" and info["started"]  # it had started, then was stopped
    status = E.sweep_status(nb, grid, results_dir=res)
    assert status.state.tolist() == ["timeout"] and status.slurm_state.tolist() == ["TIMEOUT"]
    assert cli.main(["sweep", str(res.parent / "sweep.yaml"), "--results", str(res), "--status"]) == 1
    out = capsys.readouterr().out
    assert "timeout" in out and "TIMEOUT" in out and "last lines of its log" in out
    assert E.sweep(nb, grid, results_dir=res, executor="slurm", wait=False, progress=False).skipped.all()
