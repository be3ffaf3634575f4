"""The per-run overhead of `medtl sweep --executor slurm` against the local executor.

    python benchmarks/slurm_overhead.py [--runs 8] [--parallel 2]

Starts the single-node test cluster (`tests/slurm/cluster.sh`, Debian's slurmctld, slurmd
and munge; installed with apt-get when missing), then runs the same sweep of small notebook
runs (each sleeps 1 s and records a row) with the local executor and as a Slurm job array,
both ``--parallel`` runs at a time. Reported: wall time of each sweep, the overhead per run
(the difference divided by the runs, times the parallelism: what one run slot pays), and
the controller's time from submission to the first task's start.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import save_record

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import write_toy_notebook  # noqa: E402

from medtl import experiments as E  # noqa: E402
from medtl import results as rs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    script = REPO / "tests" / "slurm" / "cluster.sh"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run(["bash", str(script), "start", str(tmp / "cluster")], check=True, capture_output=True)
        os.environ["SLURM_CONF"] = str(tmp / "cluster" / "slurm.conf")
        try:
            nb = write_toy_notebook(tmp / "tiny.ipynb", "import time, pandas as pd\nfrom medtl import results\n"
                                    "time.sleep(1.0)\nresults.record(pd.DataFrame({'x': [x]}), run_dir)")
            grid = {"x": list(range(args.runs))}
            t0 = time.perf_counter()
            local = E.sweep(nb, grid, results_dir=tmp / "local", max_parallel=args.parallel, progress=False)
            t_local = time.perf_counter() - t0
            t0 = time.perf_counter()
            slurm = E.sweep(nb, grid, results_dir=tmp / "slurm", executor="slurm", max_parallel=args.parallel,
                            slurm={"cpus_per_run": 1, "mem_gb": 1}, poll_s=0.5, progress=False)
            t_slurm = time.perf_counter() - t0
            assert (local.status == "finished").all() and (slurm.status == "finished").all()
            first_start = min(datetime.fromisoformat(rs.read_run(d)["started"]) for d in slurm.run_dir)
            submitted = min(datetime.fromisoformat(E.job_record(d)["submitted"]) for d in slurm.run_dir)
            queue_s = (first_start - submitted).total_seconds()
        finally:
            subprocess.run(["bash", str(script), "stop", str(tmp / "cluster")], capture_output=True)
    per_run = (t_slurm - t_local) / args.runs * args.parallel
    print(f"{args.runs} runs, {args.parallel} at a time: local {t_local:.1f} s, slurm {t_slurm:.1f} s; "
          f"overhead {per_run:.2f} s per run slot; first run started {queue_s:.0f} s after submission")
    save_record("slurm_overhead", runs=args.runs, parallel=args.parallel, local_s=round(t_local, 2),
                slurm_s=round(t_slurm, 2), overhead_per_run_s=round(per_run, 2), submit_to_first_start_s=queue_s)


if __name__ == "__main__":
    main()
