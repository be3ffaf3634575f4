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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import paths
from . import results as rs
from .runtime import config_id, cores, expand_grid
from .slurm import ACTIVE, available, job_states, log_tail
from .slurm import parameters as slurm_parameters

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


#: how many times :func:`run` starts a kernel again after it failed to start.
KERNEL_RETRIES = 2
#: what jupyter_client / zmq say when a kernel fails to start (papermill's port race
#: between concurrent runs on one node, a kernel that dies or never answers at start).
KERNEL_START_ERRORS = ("Kernel didn't respond", "Kernel died before replying to kernel_info",
                       "Address already in use", "kernel failed to start")


def kernel_start_failure(err: BaseException) -> bool:
    """Whether ``err`` means the notebook's kernel failed to start (no cell ran): a
    ``RuntimeError``/``TimeoutError``/ZMQ error saying so; never a cell's own error."""
    import papermill as pm

    if isinstance(err, pm.PapermillExecutionError):
        return False
    text = f"{type(err).__name__}: {err}"
    return any(s in text for s in KERNEL_START_ERRORS)


def _execute_retrying(nb: Path, run_dir: Path, params: dict, kernel_name, timeout, progress, stream,
                      retries: int) -> None:
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"kernel_retries must be a whole number >= 0, got {retries!r}")
    reasons: list[dict] = []
    for attempt in range(retries + 1):
        try:
            _execute(nb, run_dir, params, kernel_name, timeout, progress, stream)
            return
        except Exception as err:
            if not kernel_start_failure(err) or attempt == retries:
                if reasons:
                    err.add_note(f"the kernel had failed to start {len(reasons)} time(s) before: "
                                 + "; ".join(r["reason"] for r in reasons))
                raise
            reasons.append({"attempt": attempt + 1, "reason": _last_line(rs.format_exception(err)) or repr(err)})
            info = rs.read_run(run_dir) or {}
            rs.start_run(run_dir, kernel_retries=info.get("kernel_retries", []) + [reasons[-1]])
            time.sleep(min(1.0 + 2 * attempt, 10.0))


def run(notebook: str | os.PathLike, parameters: Mapping | None = None, out_dir: str | os.PathLike | None = None,
        results_dir: str | os.PathLike | None = None, kernel_name: str | None = None, timeout: int | None = None,
        skip_finished: bool = False, raise_on_error: bool = True, progress: bool = False,
        stream: bool = False, kernel_retries: int = KERNEL_RETRIES) -> RunResult:
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
        kernel_retries: how many times a kernel that fails to start (see
            :func:`kernel_start_failure`) is started again; each failure's reason is kept in
            ``run.json`` under ``kernel_retries``. A failure inside a cell is never retried.
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
        rs.start_run(run_dir, params, run_id=rid, notebook=str(nb), kernel_retries=[])
        try:
            _check_parameters(nb, params)
            _execute_retrying(nb, run_dir, params, kernel_name, timeout, progress, stream, kernel_retries)
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


def core_share(parallel: int) -> dict[str, str]:
    """``{"OMP_NUM_THREADS": cores ÷ parallel}`` (:func:`medtl.runtime.cores`) for runs
    started ``parallel`` at a time, so that their torch thread pools do not spin against each
    other; ``{}`` for one run at a time, or where the environment already sets
    ``OMP_NUM_THREADS`` (a cluster job's share)."""
    if parallel <= 1 or "OMP_NUM_THREADS" in os.environ:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, cores() // parallel))}


def run_many(jobs: Sequence[tuple[str | os.PathLike, Mapping | None, str | os.PathLike | None]],
             max_parallel: int | None = None, results_dir: str | os.PathLike | None = None) -> list[RunResult]:
    """Run independent notebooks ``(notebook, parameters, out_dir)`` with :func:`run`, up to
    ``max_parallel`` kernels at a time (default: one per core this process may use, at most
    the number of jobs); an ``out_dir`` of ``None`` is the run's default folder under
    ``results_dir``.
    Kernels are separate processes: a notebook that spends its time starting, importing and
    plotting (an analysis notebook) runs beside another at full speed, and when more than
    one runs at a time each kernel gets its share of the cores for torch's thread pool
    (``OMP_NUM_THREADS`` = cores ÷ kernels, unless the environment sets it), so that the
    pools do not spin against each other. Every job runs to its end and is recorded; then
    the first failure, in ``jobs`` order, is raised. Returns the results in ``jobs`` order."""
    from concurrent.futures import ThreadPoolExecutor

    jobs = list(jobs)
    if max_parallel is None:
        max_parallel = cores()
    if isinstance(max_parallel, bool) or not isinstance(max_parallel, int) or max_parallel < 1:
        raise ValueError(f"max_parallel must be a whole number >= 1, got {max_parallel!r}")
    workers = min(max_parallel, len(jobs))
    if workers == 0:
        return []
    share = core_share(workers)
    if share:  # read by the kernels when they start (medtl.study's set_threads, torch itself)
        os.environ.update(share)
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run, nb, params, out_dir=out, results_dir=results_dir) for nb, params, out in jobs]
            errors = [f.exception() for f in futures]  # waits for every job
    finally:
        if share:
            os.environ.pop("OMP_NUM_THREADS", None)
    for err in errors:
        if err is not None:
            raise err
    return [f.result() for f in futures]


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


def _run_one(notebook: str, params: dict, run_dir: str, kernel_name: str | None = None) -> dict:
    """Worker entry (a subprocess or a Slurm job): run one configuration, never raise; an
    error before the notebook starts is recorded in ``run.json`` too."""
    try:
        r = run(notebook, params, out_dir=run_dir, raise_on_error=False, kernel_name=kernel_name)
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
           "print(json.dumps(_run_one(a['notebook'], a['params'], a['run_dir'], a.get('kernel'))))\n")


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this (worker) process when the sweep process dies."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _local(todo: list, nb: Path, max_parallel: int, progress: bool, kernel_name: str | None = None) -> list[dict]:
    rows, running, queue = [], [], list(todo)
    slots = max(1, max_parallel)
    env = {**os.environ, **core_share(min(slots, len(todo)))}
    while queue or running:
        while queue and len(running) < slots:
            rid, params, run_dir = queue.pop(0)
            arg = json.dumps({"notebook": str(nb), "params": params, "run_dir": str(run_dir), "kernel": kernel_name},
                             default=str)
            proc = subprocess.Popen([sys.executable, "-c", _WORKER, arg], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True, env=env, preexec_fn=_die_with_parent)
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


def _submitit(todo: list, nb: Path, executor, kernel_name: str | None) -> list[dict]:
    """Run ``todo`` through a submitit executor object (e.g. ``submitit.LocalExecutor``)."""
    jobs = executor.map_array(_run_one, [str(nb)] * len(todo), [p for _, p, _ in todo], [str(d) for _, _, d in todo],
                              [kernel_name] * len(todo))
    rows = []
    for job, (rid, params, run_dir) in zip(jobs, todo):
        try:
            job.result()
        except Exception as err:  # the job itself died
            if (rs.read_run(run_dir) or {}).get("status") != "failed":
                rs.finish_run(run_dir, "failed", error=rs.format_exception(err))
        info = rs.read_run(run_dir) or {}
        rows.append({"run_id": rid, "status": info.get("status", "failed"), "run_dir": str(run_dir),
                     "skipped": False, "error": _last_line(info.get("error")), **params})
    return rows


# --- the Slurm executor ------------------------------------------------------------------
JOB_FILE = "slurm.json"


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _slurm_job(notebook: str, params: dict, run_dir: str, kernel_name: str | None = None) -> dict:
    """A Slurm array task: one run. SIGTERM (``scancel``, the time limit) records the run as
    interrupted; submitit's own requeue on its warning signal is switched off, because the
    next ``sweep`` call resubmits what did not finish (and :func:`medtl.train.fit` resumes
    from its checkpoint)."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    return _run_one(notebook, params, run_dir, kernel_name)


def job_record(run_dir: str | os.PathLike) -> dict:
    """The Slurm job last submitted for a run (``<run_dir>/slurm.json``: job_id, submitted,
    stdout, stderr, submission script, time limit) or {} when none was."""
    try:
        record = json.loads((Path(run_dir) / JOB_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _controller_states(run_dirs, ask: bool = True) -> dict[str, str]:
    """The controller's state of the last job of each run that has one ({} when none has,
    or when ``ask`` is False)."""
    ids = [j for j in (job_record(d).get("job_id") for d in run_dirs) if j]
    return job_states(ids) if ids and ask else {}


def _ended_job(run_dir: Path, job: dict, state: str, record: bool) -> tuple[str, str]:
    """Status and reason of a run whose job ended without closing it (cancelled, killed,
    timed out); recorded in ``run.json`` (with the job's log tail) when ``record``."""
    jid = job["job_id"]
    if state == "TIMEOUT":
        status, why = "timeout", (f"Slurm job {jid} exceeded its time limit ({job.get('time')} min) and was "
                                  "stopped; raise 'time' in the sweep file's executor: and run the sweep "
                                  "with --retry-failed")
    elif state == "OUT_OF_MEMORY":
        status, why = "failed", f"Slurm job {jid} ran out of memory; raise 'mem_gb' in the sweep file's executor:"
    elif state in ("FAILED", "COMPLETED"):
        status, why = "failed", f"Slurm job {jid} ended {state} without closing its run"
    else:
        status, why = "interrupted", (f"Slurm job {jid} ended {state} before the run finished; the next sweep "
                                      "call submits it again")
    if record:
        tail = log_tail(job.get("stderr")) or log_tail(job.get("stdout"))
        info = rs.read_run(run_dir) or {}
        seen = info.get("slurm_jobs", []) + [{"job_id": jid, "state": state,
                                              "seen": rs.timestamp()}]
        rs.finish_run(run_dir, status, error=why + (f"\n--- last lines of the job's log ---\n{tail}" if tail else ""),
                      slurm_jobs=seen)
    return status, why


def slurm_state(run_dir: str | os.PathLike, states: Mapping[str, str], record: bool = True) -> tuple[str, str | None]:
    """A run's state from its ``run.json`` and the controller's word on its last job
    (``states``: :func:`medtl.slurm.job_states`): ``pending``/``running`` while its job is
    queued, else ``finished``, ``failed``, ``timeout``, ``interrupted`` or ``new`` (never
    run). A job that ended without closing its run is recorded once (``record``)."""
    run_dir = Path(run_dir)
    info, job = rs.read_run(run_dir) or {}, job_record(run_dir)
    status, error = info.get("status") or "new", info.get("error")
    jid = job.get("job_id")
    state = states.get(jid, "UNKNOWN") if jid else None
    if state is not None and state in ACTIVE:
        return ("pending" if state == "PENDING" else "running"), None
    if jid is None and status == "running":
        return "interrupted", error  # a run left open by a process that is gone
    if jid is None or status in ("finished", "failed", "timeout"):
        return status, error
    if any(j.get("job_id") == jid for j in info.get("slurm_jobs", [])):
        return status, error  # this job's end is already recorded
    return _ended_job(run_dir, job, state, record)


def _slurm_submit(todo: list, nb: Path, root: Path, params: dict, kernel_name: str | None) -> None:
    """Submit ``todo`` as one Slurm job array (a task per run) and write each run's job record."""
    import submitit

    from ._io import atomic_write

    folder = root / nb.stem / "_slurm"
    ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=0)
    ex.update_parameters(**params)
    jobs = ex.map_array(_slurm_job, [str(nb)] * len(todo), [p for _, p, _ in todo], [str(d) for _, _, d in todo],
                        [kernel_name] * len(todo))
    for job, (_rid, _p, run_dir) in zip(jobs, todo):
        record = {"job_id": str(job.job_id), "submitted": rs.timestamp(),
                  "stdout": str(job.paths.stdout), "stderr": str(job.paths.stderr),
                  "submission": str(job.paths.submission_file), "time": params.get("time", 5),
                  "mem": params.get("mem"), "partition": params.get("partition")}
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(run_dir / JOB_FILE, lambda tmp, r=record: Path(tmp).write_text(json.dumps(r, indent=2)))


#: consecutive failed controller queries a waiting sweep tolerates (a slurmctld restart).
CONTROLLER_RETRIES = 12


def _slurm_wait(run_dirs: list[Path], poll_s: float, progress: bool) -> None:
    """Poll the controller until none of the runs' jobs is queued or running; a controller
    that does not answer is asked again (up to :data:`CONTROLLER_RETRIES` times in a row,
    with a warning) before the wait gives up — the jobs go on, and the next sweep call or
    ``--status`` picks them up."""
    import warnings

    from tqdm.auto import tqdm

    ids = [j for j in (job_record(d).get("job_id") for d in run_dirs) if j]
    bar = tqdm(total=len(ids), desc="slurm", disable=not progress, unit="run")
    shown, failures = None, 0
    while True:
        try:
            states = job_states(ids)
            failures = 0
        except RuntimeError as err:
            failures += 1
            if failures > CONTROLLER_RETRIES:
                bar.close()
                raise RuntimeError(f"{err}; the jobs were submitted and go on: run the sweep again (or "
                                   "`medtl sweep FILE --status`) once the controller answers") from err
            warnings.warn(f"{err} (attempt {failures} of {CONTROLLER_RETRIES}); asking again", stacklevel=2)
            time.sleep(poll_s)
            continue
        active = [s for s in states.values() if s in ACTIVE]
        counts = (len(ids) - len(active), sum(s == "PENDING" for s in active))
        if counts != shown:  # redraw on change only (a log file is not a terminal)
            shown = counts
            bar.n = counts[0]
            bar.set_postfix(pending=counts[1], running=len(active) - counts[1], refresh=False)
            bar.refresh()
        if not active:
            bar.close()
            return
        time.sleep(poll_s)


@contextlib.contextmanager
def _sweep_lock(folder: Path) -> Iterator[None]:
    """One sweep submits for a notebook's results folder at a time (waits for the other)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".sweep.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _slurm_sweep(plan: list, nb: Path, root: Path, settings: Mapping | None, max_parallel: int,
                 retry_failed: bool, wait: bool, poll_s: float, progress: bool, kernel_name: str | None) -> list[dict]:
    params = slurm_parameters(settings, array_parallelism=max_parallel)
    if not available():
        raise RuntimeError("executor 'slurm' needs Slurm's sbatch and srun on the PATH (run the sweep on a "
                           "cluster's login node), or use executor 'local'")
    skip = {"finished", "pending", "running"} | (set() if retry_failed else {"failed", "timeout"})
    with _sweep_lock(root / nb.stem):
        states = _controller_states(d for _, _, d in plan)
        now = {rid: slurm_state(d, states) for rid, _, d in plan}
        todo = [(rid, p, d) for rid, p, d in plan if now[rid][0] not in skip]
        if progress:
            queued = sum(now[r][0] in ("pending", "running") for r, _, _ in plan)
            print(f"sweep {nb.name} on Slurm: {len(plan)} configurations, "
                  f"{sum(now[r][0] == 'finished' for r, _, _ in plan)} done, {queued} already queued or running, "
                  f"{len(todo)} to submit", flush=True)
        if todo:
            _slurm_submit(todo, nb, root, params, kernel_name)
    if wait:
        _slurm_wait([d for _, _, d in plan], poll_s, progress)
    states = _controller_states(d for _, _, d in plan)
    submitted = {rid for rid, _, _ in todo}
    rows = []
    for rid, p, d in plan:
        status, error = slurm_state(d, states)
        rows.append({"run_id": rid, "status": status, "run_dir": str(d), "skipped": rid not in submitted,
                     "error": _last_line(error), "job_id": job_record(d).get("job_id"), **p})
    return rows


def _plan(notebook, grid, results_dir, slurm) -> tuple[Path, Path, list, dict | None]:
    if isinstance(grid, (str, os.PathLike)):
        nb_from_file, grid, settings = load_grid(grid)
        notebook = notebook or nb_from_file
        slurm = {**settings, **(slurm or {})}
    if notebook is None:
        raise ValueError("sweep needs a notebook (the sweep file's 'notebook:' or the notebook argument)")
    slurm_parameters(slurm)  # a typo in the sweep file's executor: is an error with any executor
    nb = find_notebook(notebook)
    root = paths.results_dir(results_dir)
    plan = []
    for params in expand_grid(grid):
        rid = run_id(nb, params)
        plan.append((rid, params, (root / nb.stem / rid).resolve()))
    return nb, root, plan, slurm


def sweep(notebook: str | os.PathLike | None, grid: Mapping | str | os.PathLike,
          results_dir: str | os.PathLike | None = None, executor: str | object = "local", max_parallel: int = 1,
          retry_failed: bool = False, slurm: Mapping | None = None, progress: bool = True, wait: bool = True,
          poll_s: float = 5.0, kernel_name: str | None = None) -> pd.DataFrame:
    """Run ``notebook`` for every configuration of ``grid`` (a dict, or a YAML file).

    Each run's folder is ``<results_dir>/<notebook>/<run id>`` (the id derives from the
    notebook and parameters). Finished runs are skipped; failed (and timed-out) runs keep
    their executed notebook and traceback and are skipped too unless ``retry_failed``; a run
    another live process is executing (an earlier sweep's worker) is skipped as ``locked``;
    interrupted runs are run again; a failure does not stop the sweep, and a killed sweep,
    run again, does only what is missing. Workers of the local executor die with the sweep process;
    the local executor, too, skips a run whose Slurm job (an earlier ``"slurm"`` sweep's) is
    still queued or running.

    Executors:

    - ``"local"``: one process per run, ``max_parallel`` at a time, each with its share of
      the cores for torch (:func:`core_share`).
    - ``"slurm"``: one Slurm array task per run, submitted through submitit with the
      resources of ``slurm`` (the sweep file's ``executor:`` mapping; keys in
      :func:`medtl.slurm.parameters`: partition, account, time, mem_gb, cpus_per_run,
      gpus_per_run, array_parallelism (default ``max_parallel``), ...). The results folder
      is the only channel back. Before submitting, the controller is asked about every
      run's last job: a queued or running one is never submitted again; one that ended
      without closing its run (``scancel``, a killed node) is recorded ``interrupted`` and
      submitted again; one stopped at its time limit is recorded ``timeout`` (resubmitted
      with ``retry_failed``). ``wait=False`` returns after submitting (rows ``pending`` /
      ``running``); otherwise the controller is polled every ``poll_s`` seconds until every
      job has left the queue. See :func:`sweep_status`.
      ``kernel_name`` picks the Jupyter kernel the runs use (default ``python3``).
    - a submitit executor object (e.g. ``submitit.LocalExecutor``).

    Returns one row per configuration: run_id, status, run_dir, skipped, error (the last
    line of the failure), (Slurm:) job_id, and the parameters.
    """
    nb, root, plan, slurm = _plan(notebook, grid, results_dir, slurm)
    if executor == "slurm":
        return pd.DataFrame(_slurm_sweep(plan, nb, root, slurm, max_parallel, retry_failed, wait, poll_s, progress,
                                         kernel_name))
    if isinstance(executor, str) and executor != "local":
        raise ValueError(f"executor must be 'local', 'slurm' or a submitit executor, got {executor!r}")
    todo, rows = [], []
    jobs = {rid: job_record(d).get("job_id") for rid, _, d in plan}
    queued = _controller_states((d for _, _, d in plan), ask=available())
    for rid, params, run_dir in plan:
        info = rs.read_run(run_dir) or {}
        status = info.get("status")
        if queued.get(jobs[rid]) in ACTIVE:  # an earlier Slurm sweep's job has it
            rows.append({"run_id": rid, "status": "pending" if queued[jobs[rid]] == "PENDING" else "running",
                         "run_dir": str(run_dir), "skipped": True, "error": None, **params})
        elif status == "finished" or (status in ("failed", "timeout") and not retry_failed):
            rows.append({"run_id": rid, "status": status, "run_dir": str(run_dir), "skipped": True,
                         "error": _last_line(info.get("error")), **params})
        else:
            todo.append((rid, params, run_dir))
    if progress:
        print(f"sweep {nb.name}: {len(plan)} configurations, {len(plan) - len(todo)} already done, "
              f"{len(todo)} to run ({executor if isinstance(executor, str) else type(executor).__name__})", flush=True)
    if todo:
        rows += (_local(todo, nb, max_parallel, progress, kernel_name) if executor == "local"
                 else _submitit(todo, nb, executor, kernel_name))
    return pd.DataFrame(rows)


#: what :func:`sweep_status` calls each run state.
STATE_NAMES = {"finished": "done", "new": "not started"}


def sweep_status(notebook: str | os.PathLike | None, grid: Mapping | str | os.PathLike,
                 results_dir: str | os.PathLike | None = None, log_lines: int = 5) -> pd.DataFrame:
    """Each configuration's state without running anything: ``pending`` / ``running`` (its
    Slurm job is queued, asked of the controller), ``done``, ``failed``, ``timeout``,
    ``interrupted`` or ``not started``; for a run that did not finish, the last
    ``log_lines`` lines of its job's log (or of its recorded error). Read-only: an ended job
    is described, not recorded (the next :func:`sweep` records it)."""
    _nb, _root, plan, _settings = _plan(notebook, grid, results_dir, None)
    states = _controller_states((d for _, _, d in plan), ask=available())
    rows = []
    for rid, params, run_dir in plan:
        job = job_record(run_dir)
        if states:
            status, error = slurm_state(run_dir, states, record=False)
        else:  # no Slurm jobs (or no controller to ask): the runs' own records
            info = rs.read_run(run_dir) or {}
            status, error = info.get("status") or "new", info.get("error")
        log = ""
        if status not in ("finished", "pending", "running", "new"):
            log = log_tail(job.get("stderr"), log_lines) or "\n".join(
                [ln for ln in (error or "").splitlines() if ln.strip()][-log_lines:])
        rows.append({"run_id": rid, "state": STATE_NAMES.get(status, status), "job_id": job.get("job_id"),
                     "slurm_state": states.get(job.get("job_id")) if job else None, "log": log, **params})
    return pd.DataFrame(rows)
