"""What medtl asks of a Slurm cluster: the resources of a sweep (the ``executor:`` mapping of
its YAML file) as sbatch parameters, and the controller's word on each submitted job.

A sweep's runs are tracked by their job ids; whether a run is still queued or running is
asked of the controller (``squeue``), never inferred from files alone. A job that has left
the queue is looked up in the accounting database (``sacct``) and, on clusters without one,
in the controller's memory of finished jobs (``scontrol show job``, kept ``MinJobAge``
seconds)."""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

#: sweep-file keys → submitit ``SlurmExecutor`` parameters (sbatch options).
RESOURCES = {
    "partition": "partition",          # --partition
    "account": "account",              # --account
    "qos": "qos",                      # --qos
    "time": "time",                    # --time, minutes per run
    "mem_gb": "mem",                   # --mem, GB per run
    "cpus_per_run": "cpus_per_task",   # --cpus-per-task
    "gpus_per_run": "gpus_per_node",   # --gpus-per-node (one run = one task on one node)
    "array_parallelism": "array_parallelism",  # the %N of --array: runs at once
    "constraint": "constraint",        # --constraint
    "exclude": "exclude",              # --exclude
    "job_name": "job_name",            # --job-name
    "setup": "setup",                  # shell lines before the run (module load, conda activate)
    "sbatch": "additional_parameters",  # any other sbatch option, e.g. {mail-type: END}
}
#: keys of submitit's AutoExecutor that earlier sweep files used → their sweep-file key.
LEGACY = {"slurm_partition": "partition", "slurm_account": "account", "slurm_qos": "qos",
          "timeout_min": "time", "slurm_time": "time", "mem_gb": "mem_gb", "cpus_per_task": "cpus_per_run",
          "gpus_per_node": "gpus_per_run", "slurm_array_parallelism": "array_parallelism",
          "slurm_constraint": "constraint", "slurm_exclude": "exclude", "name": "job_name",
          "slurm_job_name": "job_name", "slurm_setup": "setup", "slurm_additional_parameters": "sbatch"}
#: controller states of a job that has not ended.
ACTIVE = frozenset({"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD",
                    "REQUEUE_FED", "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESV_DEL_HOLD"})
_POSITIVE_INT = ("time", "cpus_per_run", "array_parallelism")


def parameters(settings: Mapping | None, array_parallelism: int | None = None) -> dict:
    """The submitit ``SlurmExecutor`` parameters of a sweep file's ``executor:`` mapping.

    Keys (see :data:`RESOURCES`): ``partition``, ``account``, ``qos``, ``time`` (minutes per
    run), ``mem_gb``, ``cpus_per_run``, ``gpus_per_run``, ``array_parallelism``,
    ``constraint``, ``exclude``, ``job_name``, ``setup`` (list of shell lines) and ``sbatch``
    (any other option). submitit's AutoExecutor names (``slurm_partition``, ``timeout_min``,
    ...) are accepted too. ``array_parallelism`` (the sweep's ``max_parallel``) fills in
    the key when the file does not set it. Raises ``ValueError`` naming an unknown key or a
    bad value."""
    out: dict = {"job_name": "medtl"}
    given = dict(settings or {})
    if array_parallelism is not None:
        given.setdefault("array_parallelism", array_parallelism)
    for key, value in given.items():
        name = LEGACY.get(key, key) if key not in RESOURCES else key
        if name not in RESOURCES:
            raise ValueError(f"unknown Slurm setting {key!r}; the sweep file's executor: takes "
                             f"{', '.join(RESOURCES)}")
        if name in _POSITIVE_INT and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"Slurm setting {key!r} must be a positive whole number, got {value!r}")
        if name in ("mem_gb", "gpus_per_run") and (isinstance(value, bool) or not isinstance(value, (int, float))
                                                   or value < 0):
            raise ValueError(f"Slurm setting {key!r} must be a non-negative number, got {value!r}")
        if name == "setup" and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ValueError(f"Slurm setting {key!r} must be a list of shell lines, got {value!r}")
        if name == "sbatch" and not isinstance(value, Mapping):
            raise ValueError(f"Slurm setting {key!r} must be a mapping of sbatch options, got {value!r}")
        if name == "mem_gb":
            value = f"{int(value)}GB" if float(value).is_integer() else f"{int(value * 1024)}MB"
        elif name == "sbatch":
            value = dict(value)
        out[RESOURCES[name]] = value
    if out.get("gpus_per_node") == 0:
        del out["gpus_per_node"]
    return out


def available() -> bool:
    """Whether this machine can submit to Slurm (``sbatch`` and ``srun`` on the PATH)."""
    return shutil.which("sbatch") is not None and shutil.which("srun") is not None


def _call(command: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        return subprocess.CompletedProcess(command, 1, "", str(err))


def _first_word(state: str) -> str:
    """``CANCELLED by 0`` → ``CANCELLED``; ``RUNNING`` stays."""
    return state.strip().split()[0].rstrip("+") if state.strip() else "UNKNOWN"


def _queued(ids: set[str]) -> dict[str, str]:
    """Jobs still in the queue (one line per array element), from ``squeue``."""
    got = _call(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"])
    if got.returncode != 0:
        raise RuntimeError(f"squeue failed (is the Slurm controller reachable?): {got.stderr.strip()}")
    states = {}
    for line in got.stdout.splitlines():
        job, _, state = line.partition("|")
        if job.strip() in ids:
            states[job.strip()] = _first_word(state)
    return states


def _accounted(ids: set[str]) -> dict[str, str]:
    """Ended jobs from the accounting database; {} when the cluster keeps none."""
    arrays = sorted({i.split("_")[0] for i in ids})
    got = _call(["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)])
    if got.returncode != 0:
        return {}
    states = {}
    for line in got.stdout.splitlines():
        job, _, state = line.partition("|")
        if job in ids:
            states[job] = _first_word(state)
    return states


def _remembered(ids: set[str]) -> dict[str, str]:
    """Ended jobs the controller still remembers (``scontrol show job -o``)."""
    states = {}
    for array in sorted({i.split("_")[0] for i in ids}):
        got = _call(["scontrol", "show", "job", "-o", array])
        for line in got.stdout.splitlines() if got.returncode == 0 else []:
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            task = fields.get("ArrayTaskId")
            job = f"{fields.get('ArrayJobId')}_{task}" if task not in (None, "", "N/A") else fields.get("JobId")
            if job in ids:
                states[job] = _first_word(fields.get("JobState", ""))
    return states


def job_states(job_ids: Iterable[str]) -> dict[str, str]:
    """The controller's state of each job id (``"123"`` or array element ``"123_4"``):
    ``PENDING``, ``RUNNING``, ..., ``COMPLETED``, ``CANCELLED``, ``TIMEOUT``, ``FAILED``,
    ``NODE_FAIL``, ``OUT_OF_MEMORY``, or ``UNKNOWN`` for a job the cluster no longer knows.
    Queued jobs come from ``squeue``, ended ones from ``sacct``, else ``scontrol``."""
    ids = {str(i) for i in job_ids}
    if not ids:
        return {}
    states = _queued(ids)
    rest = ids - set(states)
    if rest:
        states.update(_accounted(rest))
    rest = ids - set(states)
    if rest:
        states.update(_remembered(rest))
    return {i: states.get(i, "UNKNOWN") for i in ids}


def log_tail(path: str | Path | None, lines: int = 15) -> str:
    """The last ``lines`` non-empty lines of a job's log file ('' when absent)."""
    if not path:
        return ""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    kept = [ln for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])
