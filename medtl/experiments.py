"""Run parameterised notebooks with papermill, and sweeps of them over parameter grids,
locally (one process per run) or on Slurm through submitit."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import results as rs

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def find_notebook(notebook: str | os.PathLike) -> Path:
    """A notebook path, or a name under ``notebooks/`` (``"experiments/pretrain"``,
    ``"pretrain"``, with or without ``.ipynb``)."""
    p = Path(notebook)
    if p.is_file():
        return p.resolve()
    name = p.name if p.suffix == ".ipynb" else f"{p.name}.ipynb"
    candidates = [NOTEBOOKS / p.with_suffix(".ipynb"), NOTEBOOKS / "experiments" / name, NOTEBOOKS / "analysis" / name,
                  NOTEBOOKS / name]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    known = sorted(str(f.relative_to(NOTEBOOKS).with_suffix("")) for f in NOTEBOOKS.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in f.parts)
    raise FileNotFoundError(f"notebook {notebook!r} not found; known notebooks: {', '.join(known)}")


def run_id(notebook: str | os.PathLike, parameters: Mapping | None = None) -> str:
    """``<notebook stem>-<10 hex digits of the sorted parameters' SHA-1>``."""
    blob = json.dumps(dict(sorted((parameters or {}).items())), sort_keys=True, default=str)
    return f"{Path(notebook).stem}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def notebook_parameters(notebook: str | os.PathLike) -> dict:
    """The defaults of a notebook's ``parameters``-tagged cell."""
    import papermill as pm

    return {k: v["default"] for k, v in pm.inspect_notebook(str(find_notebook(notebook))).items()}


@dataclass
class RunResult:
    """Outcome of :func:`run`: id, folder, status (finished/failed/skipped), error, seconds."""

    run_id: str
    run_dir: Path
    status: str
    error: str | None = None
    seconds: float = 0.0


def run(notebook: str | os.PathLike, parameters: Mapping | None = None, out_dir: str | os.PathLike | None = None,
        results_dir: str | os.PathLike = "results", kernel_name: str | None = None, timeout: int | None = None,
        skip_finished: bool = False, raise_on_error: bool = True, progress: bool = False) -> RunResult:
    """Execute a notebook with papermill.

    The parameters (plus ``run_dir``, the run's folder) are injected after the notebook's
    ``parameters`` cell; the kernel runs inside the run folder, uses this Python (its
    ``python3`` kernel) and can import medtl; the executed notebook is kept as
    ``<run_dir>/notebook.ipynb`` beside the tables the notebook records. ``run.json`` holds
    the parameters, environment, times and status; a failure stores the traceback.

    Args:
        notebook: a path or a name under ``notebooks/``.
        out_dir: the run folder (default ``<results_dir>/<notebook>/<run id>``).
        skip_finished: return at once when the folder holds a finished run.
        raise_on_error: re-raise a failure (after recording it).
    """
    import papermill as pm

    nb = find_notebook(notebook)
    params = dict(parameters or {})
    rid = run_id(nb, params)
    run_dir = Path(out_dir) if out_dir is not None else Path(results_dir) / nb.stem / rid
    run_dir = run_dir.resolve()
    info = rs.read_run(run_dir)
    if skip_finished and info and info.get("status") == "finished":
        return RunResult(rid, run_dir, "skipped")
    defaults = notebook_parameters(nb)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{nb.name} has no parameter(s) {unknown}; its parameters: {', '.join(defaults)}")
    run_dir.mkdir(parents=True, exist_ok=True)
    rs.start_run(run_dir, params, run_id=rid, notebook=str(nb))
    t0 = time.perf_counter()
    env_path = os.environ.get("PYTHONPATH", "")
    root = str(Path(__file__).resolve().parent.parent)
    os.environ["PYTHONPATH"] = root + (os.pathsep + env_path if env_path else "")
    try:
        pm.execute_notebook(str(nb), str(run_dir / "notebook.ipynb"), parameters={**params, "run_dir": str(run_dir)},
                            kernel_name=kernel_name or "python3", cwd=str(run_dir), progress_bar=progress,
                            execution_timeout=timeout, report_mode=False,
                            extra_arguments=["--IPKernelApp.log_level=ERROR"])
    except Exception as err:  # PapermillExecutionError carries the cell's traceback
        message = rs.format_exception(err)
        rs.finish_run(run_dir, "failed", error=message, seconds=time.perf_counter() - t0)
        if raise_on_error:
            raise
        return RunResult(rid, run_dir, "failed", message, time.perf_counter() - t0)
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)
    rs.finish_run(run_dir, "finished", seconds=time.perf_counter() - t0)
    return RunResult(rid, run_dir, "finished", None, time.perf_counter() - t0)


# --- sweeps --------------------------------------------------------------------------------
def expand_grid(grid: Mapping) -> list[dict]:
    """All combinations of a grid ``{param: [values] or value}`` (scalars are fixed)."""
    keys = list(grid)
    values = [v if isinstance(v, (list, tuple)) else [v] for v in grid.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def load_grid(path: str | os.PathLike) -> tuple[str | None, dict, dict]:
    """Read a sweep file (YAML): ``notebook``, ``grid`` (lists are swept), optional
    ``executor`` settings. Returns (notebook, grid, executor settings)."""
    import yaml

    spec = yaml.safe_load(Path(path).read_text()) or {}
    if "grid" not in spec:
        raise ValueError(f"sweep file {path} needs a 'grid:' mapping of parameters to values")
    return spec.get("notebook"), dict(spec["grid"]), dict(spec.get("executor") or {})


def _run_one(notebook: str, params: dict, run_dir: str) -> dict:
    """Worker entry (a subprocess or a Slurm job): run one configuration, never raise."""
    r = run(notebook, params, out_dir=run_dir, raise_on_error=False)
    return {"run_id": r.run_id, "status": r.status, "seconds": r.seconds}


_WORKER = ("import json, sys; from medtl.experiments import _run_one; "
           "a = json.loads(sys.argv[1]); print(json.dumps(_run_one(a['notebook'], a['params'], a['run_dir'])))")


def sweep(notebook: str | os.PathLike, grid: Mapping | str | os.PathLike, results_dir: str | os.PathLike = "results",
          executor: str | object = "local", max_parallel: int = 1, retry_failed: bool = False,
          slurm: Mapping | None = None, progress: bool = True) -> pd.DataFrame:
    """Run ``notebook`` for every configuration of ``grid`` (a dict, or a YAML file).

    Each run's folder is ``<results_dir>/<notebook>/<run id>`` (the id derives from the
    notebook and parameters). Finished runs are skipped; failed runs keep their executed
    notebook and traceback and are skipped too unless ``retry_failed``; a failure does not
    stop the sweep, and a killed sweep, run again, does only what is missing.

    Executors: ``"local"`` (one process per run, ``max_parallel`` at a time), ``"slurm"``
    (submitit on a Slurm cluster; ``slurm`` = submitit parameters such as
    ``slurm_partition``, ``gpus_per_node``, ``timeout_min``; the array runs ``max_parallel``
    at a time), or a submitit executor object (e.g. ``submitit.LocalExecutor``).

    Returns one row per configuration: run_id, status, run_dir, and the parameters.
    """
    if isinstance(grid, (str, os.PathLike)):
        nb_from_file, grid, settings = load_grid(grid)
        notebook = notebook or nb_from_file
        slurm = {**settings, **(slurm or {})}
    nb = find_notebook(notebook)
    configs = expand_grid(grid)
    todo, rows = [], []
    for params in configs:
        rid = run_id(nb, params)
        run_dir = (Path(results_dir) / nb.stem / rid).resolve()
        info = rs.read_run(run_dir)
        status = info.get("status") if info else None
        if status == "finished" or (status == "failed" and not retry_failed):
            rows.append({"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": True, **params})
        else:
            todo.append((rid, params, run_dir))
    if progress:
        print(f"sweep {nb.name}: {len(configs)} configurations, {len(configs) - len(todo)} already done, "
              f"{len(todo)} to run ({executor if isinstance(executor, str) else type(executor).__name__})", flush=True)
    if todo and executor == "local":
        running: list[tuple[subprocess.Popen, str, dict, Path]] = []
        queue = list(todo)
        while queue or running:
            while queue and len(running) < max(1, max_parallel):
                rid, params, run_dir = queue.pop(0)
                arg = json.dumps({"notebook": str(nb), "params": params, "run_dir": str(run_dir)}, default=str)
                proc = subprocess.Popen([sys.executable, "-c", _WORKER, arg], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                running.append((proc, rid, params, run_dir))
            time.sleep(0.2)
            for item in list(running):
                proc, rid, params, run_dir = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                proc.communicate()
                info = rs.read_run(run_dir) or {}
                status = info.get("status", "failed")
                if progress:
                    print(f"  {rid}: {status}", flush=True)
                rows.append({"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": False, **params})
    elif todo:
        ex = executor
        if executor == "slurm":
            import submitit

            ex = submitit.AutoExecutor(folder=str(Path(results_dir) / "_submitit"))
            ex.update_parameters(slurm_array_parallelism=max_parallel, **(slurm or {}))
        elif isinstance(executor, str):
            raise ValueError(f"executor must be 'local', 'slurm' or a submitit executor, got {executor!r}")
        jobs = ex.map_array(_run_one, [str(nb)] * len(todo), [p for _, p, _ in todo], [str(d) for _, _, d in todo])
        for job, (rid, params, run_dir) in zip(jobs, todo):
            try:
                job.result()
            except Exception as err:  # the job itself died (node failure, timeout)
                if (rs.read_run(run_dir) or {}).get("status") != "failed":
                    rs.finish_run(run_dir, "failed", error=rs.format_exception(err))
            status = (rs.read_run(run_dir) or {}).get("status", "failed")
            rows.append({"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": False, **params})
    return pd.DataFrame(rows)
