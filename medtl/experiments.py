"""Run parameterised notebooks with papermill, and sweeps of them over parameter grids,
locally (one process per run) or on Slurm through submitit.

A run holds an exclusive lock on its folder while it executes, so a sweep started again
while an earlier one (or its orphaned worker) is still running a configuration skips that
configuration instead of executing it twice at once in the same folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paths
from . import results as rs
from .runtime import config_id, expand_grid

LOCK_FILE = ".lock"


def find_notebook(notebook: str | os.PathLike) -> Path:
    """A notebook path, or a name under medtl's notebooks folder (``"experiments/pretrain"``,
    ``"pretrain"``, with or without ``.ipynb``; see :func:`medtl.paths.notebooks_dir`)."""
    p = Path(notebook)
    if p.is_file():
        return p.resolve()
    root = paths.notebooks_dir()
    name = p.name if p.suffix == ".ipynb" else f"{p.name}.ipynb"
    for c in (root / p.with_suffix(".ipynb"), root / "experiments" / name, root / "analysis" / name, root / name):
        if c.is_file():
            return c.resolve()
    known = sorted(str(f.relative_to(root).with_suffix("")) for f in root.rglob("*.ipynb")
                   if ".ipynb_checkpoints" not in f.parts)
    raise FileNotFoundError(f"notebook {str(notebook)!r} not found; known notebooks: {', '.join(known)}")


def run_id(notebook: str | os.PathLike, parameters: Mapping | None = None) -> str:
    """``<notebook stem>-<10 hex digits of the sorted parameters' SHA-1>``."""
    return f"{Path(notebook).stem}-{config_id(parameters or {}, 10)}"


def notebook_parameters(notebook: str | os.PathLike) -> dict:
    """The defaults of a notebook's ``parameters``-tagged cell."""
    import papermill as pm

    return {k: v["default"] for k, v in pm.inspect_notebook(str(find_notebook(notebook))).items()}


@dataclass
class RunResult:
    """Outcome of :func:`run`: id, folder, status (finished/failed/interrupted/skipped/
    locked), error, seconds."""

    run_id: str
    run_dir: Path
    status: str
    error: str | None = None
    seconds: float = 0.0


class RunLocked(RuntimeError):
    """The run folder is being executed by another live process."""


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``<run_dir>/.lock`` (released when the process ends,
    however it ends); raise :class:`RunLocked` naming the holder when another process has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / LOCK_FILE, "a+")  # noqa: SIM115 (held for the block)
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            raise RunLocked(f"run {run_dir} is being executed by another process (pid {holder})") from err
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fh.close()


def _check_parameters(nb: Path, params: dict) -> None:
    defaults = notebook_parameters(nb)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(f"{nb.name} has no parameter(s) {unknown}; its parameters: {', '.join(defaults)}")


def _execute(nb: Path, run_dir: Path, params: dict, kernel_name, timeout, progress, stream: bool = False) -> None:
    import papermill as pm

    env_path = os.environ.get("PYTHONPATH", "")
    root = str(paths.PACKAGE.parent)
    os.environ["PYTHONPATH"] = root + (os.pathsep + env_path if env_path else "")
    try:
        pm.execute_notebook(str(nb), str(run_dir / "notebook.ipynb"), parameters={**params, "run_dir": str(run_dir)},
                            kernel_name=kernel_name or "python3", cwd=str(run_dir), progress_bar=progress,
                            execution_timeout=timeout, report_mode=False,
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                            **({"log_output": True, "stdout_file": sys.stdout, "stderr_file": sys.stderr}
                               if stream else {}))
    finally:
        if env_path:
            os.environ["PYTHONPATH"] = env_path
        else:
            os.environ.pop("PYTHONPATH", None)


def run(notebook: str | os.PathLike, parameters: Mapping | None = None, out_dir: str | os.PathLike | None = None,
        results_dir: str | os.PathLike | None = None, kernel_name: str | None = None, timeout: int | None = None,
        skip_finished: bool = False, raise_on_error: bool = True, progress: bool = False,
        stream: bool = False) -> RunResult:
    """Execute a notebook with papermill.

    The parameters (plus ``run_dir``, the run's folder) are injected after the notebook's
    ``parameters`` cell; the kernel runs inside the run folder, uses this Python (its
    ``python3`` kernel) and can import medtl; the executed notebook is kept as
    ``<run_dir>/notebook.ipynb`` beside the tables the notebook records. ``run.json`` holds
    the parameters, environment, times and status; a failure stores the traceback, an
    interruption (Ctrl-C, SIGTERM) the status ``interrupted``.

    Args:
        notebook: a path or a name under the notebooks folder.
        out_dir: the run folder (default ``<results_dir>/<notebook>/<run id>``, the results
            root by default).
        skip_finished: return at once when the folder holds a finished run.
        raise_on_error: re-raise a failure (after recording it).
        stream: print the notebook's own output (its progress lines) as it runs.
    """
    nb = find_notebook(notebook)
    params = dict(parameters or {})
    rid = run_id(nb, params)
    run_dir = Path(out_dir) if out_dir is not None else paths.results_dir(results_dir) / nb.stem / rid
    run_dir = run_dir.resolve()
    info = rs.read_run(run_dir)
    if skip_finished and info and info.get("status") == "finished":
        return RunResult(rid, run_dir, "skipped")
    t0 = time.perf_counter()
    with run_lock(run_dir):
        rs.start_run(run_dir, params, run_id=rid, notebook=str(nb))
        try:
            _check_parameters(nb, params)
            _execute(nb, run_dir, params, kernel_name, timeout, progress, stream)
        except (KeyboardInterrupt, SystemExit) as err:
            rs.finish_run(run_dir, "interrupted", error=f"interrupted ({type(err).__name__})",
                          seconds=time.perf_counter() - t0)
            raise
        except Exception as err:  # PapermillExecutionError carries the cell's traceback
            message = rs.format_exception(err)
            rs.finish_run(run_dir, "failed", error=message, seconds=time.perf_counter() - t0)
            if raise_on_error:
                raise
            return RunResult(rid, run_dir, "failed", message, time.perf_counter() - t0)
        rs.finish_run(run_dir, "finished", seconds=time.perf_counter() - t0)
    return RunResult(rid, run_dir, "finished", None, time.perf_counter() - t0)


# --- sweeps --------------------------------------------------------------------------------
def load_grid(path: str | os.PathLike) -> tuple[str | None, dict, dict]:
    """Read a sweep file (YAML): ``notebook``, ``grid`` (lists are swept), optional
    ``executor`` settings. Returns (notebook, grid, executor settings)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        raise ValueError(f"sweep file {path} is not valid YAML{line}: {getattr(err, 'problem', err)}") from err
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), dict):
        raise ValueError(f"sweep file {path} needs a 'grid:' mapping of parameters to values (and 'notebook:')")
    executor = spec.get("executor") or {}
    if not isinstance(executor, dict):
        raise ValueError(f"sweep file {path}: 'executor:' must be a mapping of submitit parameters")
    return spec.get("notebook"), dict(spec["grid"]), dict(executor)


def _run_one(notebook: str, params: dict, run_dir: str) -> dict:
    """Worker entry (a subprocess or a Slurm job): run one configuration, never raise; an
    error before the notebook starts is recorded in ``run.json`` too."""
    try:
        r = run(notebook, params, out_dir=run_dir, raise_on_error=False)
    except RunLocked as err:
        return {"run_id": Path(run_dir).name, "status": "locked", "error": str(err)}
    except Exception as err:
        rs.finish_run(run_dir, "failed", error=rs.format_exception(err))
        return {"run_id": Path(run_dir).name, "status": "failed", "error": str(err)}
    return {"run_id": r.run_id, "status": r.status, "seconds": r.seconds}


_WORKER = ("import json, signal, sys\n"
           "def _stop(signum, frame):\n    raise KeyboardInterrupt(f'signal {signum}')\n"
           "signal.signal(signal.SIGTERM, _stop)\n"
           "from medtl.experiments import _run_one\n"
           "a = json.loads(sys.argv[1])\n"
           "print(json.dumps(_run_one(a['notebook'], a['params'], a['run_dir'])))\n")


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this (worker) process when the sweep process dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _local(todo: list, nb: Path, max_parallel: int, progress: bool) -> list[dict]:
    rows, running, queue = [], [], list(todo)
    while queue or running:
        while queue and len(running) < max(1, max_parallel):
            rid, params, run_dir = queue.pop(0)
            arg = json.dumps({"notebook": str(nb), "params": params, "run_dir": str(run_dir)}, default=str)
            proc = subprocess.Popen([sys.executable, "-c", _WORKER, arg], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent)
            running.append((proc, rid, params, run_dir))
        time.sleep(0.2)
        for item in list(running):
            proc, rid, params, run_dir = item
            if proc.poll() is None:
                continue
            running.remove(item)
            out, err = proc.communicate()
            rows.append(_outcome(rid, params, run_dir, out, err, proc.returncode, progress))
    return rows


def _outcome(rid, params, run_dir: Path, out: str, err: str, code: int, progress: bool) -> dict:
    reply = {}
    for line in reversed((out or "").splitlines()):
        with contextlib.suppress(ValueError):
            reply = json.loads(line)
            break
    info = rs.read_run(run_dir) or {}
    status = reply.get("status") if reply.get("status") == "locked" else info.get("status", "failed")
    error = reply.get("error") or info.get("error")
    if status != "locked" and (not info or (code != 0 and status == "running")):
        error = f"worker exited with code {code} before recording its run:\n{(err or '').strip()[-4000:]}"
        rs.finish_run(run_dir, "failed", error=error)
        status = "failed"
    if progress:
        print(f"  {rid}: {status}", flush=True)
    return {"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": False,
            "error": _last_line(error), **params}


def _last_line(error: str | None) -> str | None:
    lines = [ln for ln in (error or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def _submitit(todo: list, nb: Path, executor, results_dir: Path, max_parallel: int, slurm) -> list[dict]:
    ex = executor
    if executor == "slurm":
        import submitit

        ex = submitit.AutoExecutor(folder=str(results_dir / "_submitit"))
        ex.update_parameters(slurm_array_parallelism=max_parallel, **(slurm or {}))
    elif isinstance(executor, str):
        raise ValueError(f"executor must be 'local', 'slurm' or a submitit executor, got {executor!r}")
    jobs = ex.map_array(_run_one, [str(nb)] * len(todo), [p for _, p, _ in todo], [str(d) for _, _, d in todo])
    rows = []
    for job, (rid, params, run_dir) in zip(jobs, todo):
        try:
            job.result()
        except Exception as err:  # the job itself died (node failure, timeout)
            if (rs.read_run(run_dir) or {}).get("status") != "failed":
                rs.finish_run(run_dir, "failed", error=rs.format_exception(err))
        info = rs.read_run(run_dir) or {}
        rows.append({"run_id": rid, "status": info.get("status", "failed"), "run_dir": str(run_dir),
                     "skipped": False, "error": _last_line(info.get("error")), **params})
    return rows


def sweep(notebook: str | os.PathLike | None, grid: Mapping | str | os.PathLike,
          results_dir: str | os.PathLike | None = None, executor: str | object = "local", max_parallel: int = 1,
          retry_failed: bool = False, slurm: Mapping | None = None, progress: bool = True) -> pd.DataFrame:
    """Run ``notebook`` for every configuration of ``grid`` (a dict, or a YAML file).

    Each run's folder is ``<results_dir>/<notebook>/<run id>`` (the id derives from the
    notebook and parameters). Finished runs are skipped; failed runs keep
    their executed notebook and traceback and are skipped too unless ``retry_failed``; a run
    another live process is executing (an earlier sweep's worker) is skipped as ``locked``;
    interrupted runs are run again; a failure does not stop the sweep, and a killed sweep,
    run again, does only what is missing. Workers of the local executor die with the sweep process.

    Executors: ``"local"`` (one process per run, ``max_parallel`` at a time), ``"slurm"``
    (submitit on a Slurm cluster; ``slurm`` = submitit parameters such as
    ``slurm_partition``, ``gpus_per_node``, ``timeout_min``; the array runs ``max_parallel``
    at a time), or a submitit executor object (e.g. ``submitit.LocalExecutor``).

    Returns one row per configuration: run_id, status, run_dir, skipped, error (the last
    line of the failure), and the parameters.
    """
    if isinstance(grid, (str, os.PathLike)):
        nb_from_file, grid, settings = load_grid(grid)
        notebook = notebook or nb_from_file
        slurm = {**settings, **(slurm or {})}
    if notebook is None:
        raise ValueError("sweep needs a notebook (the sweep file's 'notebook:' or the notebook argument)")
    nb = find_notebook(notebook)
    root = paths.results_dir(results_dir)
    configs = expand_grid(grid)
    todo, rows = [], []
    for params in configs:
        rid = run_id(nb, params)
        run_dir = (root / nb.stem / rid).resolve()
        status = (rs.read_run(run_dir) or {}).get("status")
        if status == "finished" or (status == "failed" and not retry_failed):
            rows.append({"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": True,
                         "error": _last_line((rs.read_run(run_dir) or {}).get("error")), **params})
        else:
            todo.append((rid, params, run_dir))
    if progress:
        print(f"sweep {nb.name}: {len(configs)} configurations, {len(configs) - len(todo)} already done, "
              f"{len(todo)} to run ({executor if isinstance(executor, str) else type(executor).__name__})", flush=True)
    if todo:
        rows += (_local(todo, nb, max_parallel, progress) if executor == "local"
                 else _submitit(todo, nb, executor, root, max_parallel, slurm))
    return pd.DataFrame(rows)
