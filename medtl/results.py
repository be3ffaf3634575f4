"""Tidy result records: one folder per run with its tables (Parquet, written atomically)
and ``run.json`` (parameters, versions, git commit, device, times, status)."""

from __future__ import annotations

import functools
import json
import os
import platform
import subprocess
import traceback
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from . import paths
from ._io import atomic_write
from .runtime import cores

RUN_FILE = "run.json"
STATUSES = ("running", "finished", "failed", "interrupted", "timeout")


def timestamp() -> str:
    """Now, in UTC, as ISO 8601 to the second (the times of ``run.json`` and job records)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")





@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The medtl checkout's commit (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict:
    """medtl version and commit, key package versions, Python, platform and device."""
    from importlib import metadata

    import torch

    from . import __version__

    versions = {}
    for pkg in ("torch", "torchvision", "numpy", "scipy", "pandas", "scikit-learn", "medmnist", "papermill", "timm",
                "segmentation-models-pytorch"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({cores()} cores)"
    return {"medtl_version": __version__, "git_commit": git_commit(), "packages": versions,
            "python": platform.python_version(), "platform": platform.platform(), "device": device}


def _write_json(path: Path, obj: dict) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2, default=str)))


def read_run(run_dir: str | os.PathLike) -> dict | None:
    """A run's metadata (``run.json``) or None when absent/unreadable."""
    try:
        info = json.loads((Path(run_dir) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def start_run(run_dir: str | os.PathLike, parameters: dict | None = None, **meta) -> dict:
    """Mark ``run_dir`` as a running run (``run.json`` with parameters, environment, start
    time); an existing record's start time and parameters are kept."""
    run_dir = Path(run_dir)
    info = read_run(run_dir) or {}
    info.update({"run_id": info.get("run_id", run_dir.name), "status": "running",
                 "parameters": parameters if parameters is not None else info.get("parameters", {}),
                 "started": info.get("started") or timestamp(), **environment(), **meta})
    info.pop("finished", None)
    info.pop("error", None)
    _write_json(run_dir / RUN_FILE, info)
    return info


def finish_run(run_dir: str | os.PathLike, status: str = "finished", error: str | None = None, **meta) -> dict:
    """Close a run: status ``finished``, ``failed`` (with the error/traceback) or
    ``interrupted`` or ``timeout`` (a cluster stopped it at its time limit), and the end time."""
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    run_dir = Path(run_dir)
    info = read_run(run_dir) or {"run_id": run_dir.name, "parameters": {}, "started": None, **environment()}
    info.update(status=status, finished=timestamp(), **meta)
    if error is not None:
        info["error"] = error
    _write_json(run_dir / RUN_FILE, info)
    return info


def record(table: pd.DataFrame, run_dir: str | os.PathLike, name: str = "table", parameters: dict | None = None,
           finish: bool = True) -> Path:
    """Write one run's tidy ``table`` as ``<run_dir>/<name>.parquet`` (temp file + rename)
    and its metadata; with ``finish`` the run is marked finished. Call it once per table;
    the last call of a run should finish it. The table is written before ``run.json`` is
    touched, so a failed write (disk full) raises and leaves the run's record as it was — a
    finished run is never demoted. Returns the Parquet path."""
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"record needs a pandas DataFrame, got {type(table).__name__}")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"a table name must be a plain file name, got {name!r}")
    run_dir = Path(run_dir)
    path = run_dir / f"{name}.parquet"
    try:
        atomic_write(path, lambda tmp: table.to_parquet(tmp, index=False))
    except OSError as err:
        raise OSError(f"could not write table {name!r} to {path} ({err}); the run's record is unchanged") from err
    info = read_run(run_dir)
    if info is None or (parameters is not None and info.get("status") != "finished"):
        info = start_run(run_dir, parameters)
    tables = sorted(set(info.get("tables", [])) | {name})
    if finish:
        finish_run(run_dir, tables=tables)
    else:
        info["tables"] = tables
        _write_json(run_dir / RUN_FILE, info)
    return path


def _check_dir(results_dir) -> Path:
    folder = paths.results_dir(results_dir) if results_dir is None else Path(results_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"results folder {folder} does not exist")
    return folder


def runs(results_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every run under ``results_dir`` (default the results root; searched recursively for
    ``run.json``): run_id, status, path, started, finished, error, tables and the parameters
    (one ``param.*`` column each)."""
    rows = []
    for file in sorted(_check_dir(results_dir).rglob(RUN_FILE)):
        info = read_run(file.parent)
        if info is None:
            rows.append({"run_id": file.parent.name, "status": "unreadable", "path": str(file.parent)})
            continue
        rows.append({"run_id": info.get("run_id", file.parent.name), "status": info.get("status"),
                     "path": str(file.parent), "started": info.get("started"), "finished": info.get("finished"),
                     "error": info.get("error"), "notebook": info.get("notebook"),
                     "tables": ",".join(info.get("tables", [])),
                     **{f"param.{k}": v for k, v in info.get("parameters", {}).items() if not isinstance(v, (list, dict))}})
    return pd.DataFrame(rows)


def load(results_dir: str | os.PathLike | None = None, name: str = "table", with_parameters: bool = False,
         missing_ok: bool = False) -> pd.DataFrame:
    """All finished runs' ``name`` tables under ``results_dir`` as one DataFrame, with a
    ``run_id`` column (and the run parameters as ``param.*`` columns if asked). Unfinished
    or failed runs, and unreadable Parquet files, are left out with a warning that names
    them. A missing folder raises; so does a table no finished run records (the error lists
    the tables there), unless ``missing_ok`` (then an empty frame)."""
    table = runs(results_dir)
    if table.empty:
        if missing_ok:
            return pd.DataFrame()
        raise ValueError(f"no runs (run.json) under {results_dir}")
    finished = table[table.status == "finished"]
    known = sorted({t for ts in finished.get("tables", pd.Series(dtype=str)).dropna() for t in ts.split(",") if t})
    if name not in known:
        if missing_ok:
            return pd.DataFrame()
        raise ValueError(f"no finished run under {results_dir} records a table {name!r}; tables there: "
                         f"{', '.join(known) or 'none'}")
    frames, skipped = [], []
    for _, r in table.iterrows():
        path = Path(r.path) / f"{name}.parquet"
        if r.status != "finished":
            skipped.append(f"{r.run_id} ({r.status})")
            continue
        if not path.is_file():
            continue
        try:
            df = pd.read_parquet(path)
        except Exception as err:  # a torn or foreign file must not hide every other run
            skipped.append(f"{r.run_id} (unreadable {path.name}: {type(err).__name__})")
            continue
        df.insert(0, "run_id", r.run_id)
        if with_parameters:
            for col in [c for c in table.columns if c.startswith("param.")]:
                df[col] = r[col]
        frames.append(df)
    if skipped:
        warnings.warn(f"ignoring {len(skipped)} unfinished run(s) under {results_dir}: {', '.join(skipped)}",
                      stacklevel=2)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def format_exception(err: BaseException) -> str:
    return "".join(traceback.format_exception(type(err), err, err.__traceback__))
