"""Shared fixtures: the real MedMNIST root (skipped with a reason where absent) and small
MedMNIST-format files written by the tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from medtl.runtime import cores

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"

#: Test processes: 1, or pytest-xdist's workers (``-n 2``). Each process gets its share of
#: the cores for torch's thread pool (more threads than cores make the pools spin against
#: each other), and so do the kernels and CLI processes it starts (``OMP_NUM_THREADS``) —
#: except the demo, which runs as a user's run does, on every core this process may use
#: (``AS_A_USER``): a CPU training run's float rounding depends on the thread count, and
#: the demo's known-answer tests check what a user's run on this machine gives (at one
#: thread its shape-a source failed the "learned" check once). On this 2-core machine
#: ``-n 2`` buys nothing (1,085 s against 1,128 s serially, 2026-12-07): torch already
#: keeps both cores busy, and the 2-thread demo beside a busy worker ran 5.8× slower. Nor
#: with OpenMP's waiting threads asleep (OMP_WAIT_POLICY=PASSIVE, which cut a 2-thread loop's
#: slowdown beside a busy process from 3.2× to 1.8×): ``-n 2 --dist loadgroup`` took 1,228 s
#: against 1,139 s serially (2026-12-07), the offline demo 303 s against 123 s.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, cores() // WORKERS)
if WORKERS > 1:  # the kernels and CLI processes a worker starts take the worker's share too
    os.environ["OMP_NUM_THREADS"] = str(THREADS)
#: the environment of a program run as a user runs it (the demo): every core for torch
AS_A_USER = {"OMP_NUM_THREADS": str(cores())}

#: Fixtures too costly to build twice (a demo, a synthetic study, trained sources) and the
#: group of each: session scoped, and under pytest-xdist every test that uses a group's
#: fixtures runs on one worker (``--dist loadgroup``), so each is built once. The two demos
#: are one group: without MedMNIST files ``demo_run`` is ``offline_demo``'s run.
SHARED_FIXTURES = {"offline_demo": "demos", "demo_run": "demos", "synthetic_study": "synthetic_study",
                   "synthetic_sources": "synthetic_sources"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups (--dist loadgroup)
def pytest_collection_modifyitems(config, items):
    for item in items:
        used = [g for f, g in SHARED_FIXTURES.items() if f in getattr(item, "fixturenames", ())]
        if used:
            item.add_marker(pytest.mark.xdist_group(used[0]))


@pytest.fixture(autouse=True)
def _threads():
    """torch's intra-op threads: this process's share of the cores (see THREADS)."""
    import torch

    torch.set_num_threads(THREADS)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep medtl's MD5 cache out of the user's home during tests."""
    if "MEDTL_CACHE" not in os.environ:
        os.environ["MEDTL_CACHE"] = str(tmp_path_factory.mktemp("medtl-cache"))
    yield


def shared_medmnist_root() -> Path | None:
    """$MEDTL_DATA if it holds .npz files, else ../shared/data/medmnist, else None."""
    env = os.environ.get("MEDTL_DATA")
    for cand in ([Path(env)] if env else []) + [SHARED / "medmnist"]:
        if cand.is_dir() and any(cand.glob("*.npz")):
            return cand
    return None


@pytest.fixture(scope="session")
def medmnist_root() -> Path:
    root = shared_medmnist_root()
    if root is None:
        pytest.skip("official MedMNIST files absent: set MEDTL_DATA or provide ../shared/data/medmnist")
    return root


def need_file(root: Path, name: str) -> Path:
    file = root / name
    if not file.is_file():
        pytest.skip(f"{file} is absent from the shared MedMNIST data")
    return file


@pytest.fixture(scope="session")
def manifest() -> dict:
    file = SHARED / "manifest.json"
    if not file.is_file():
        pytest.skip(f"{file} absent (the shared data manifest)")
    return json.loads(file.read_text())


def write_fake_medmnist(root: Path, flag: str, size: int = 28, n: dict | None = None,
                        drop_keys: tuple[str, ...] = (), seed: int = 0) -> Path:
    """Write a MedMNIST-format npz for ``flag`` (INFO's channels and label layout) with
    ``n`` images per split (INFO's sizes unless given)."""
    from medmnist.info import INFO

    info = INFO[flag]
    rng = np.random.default_rng(seed)
    n = n or info["n_samples"]
    arrays = {}
    for split, count in n.items():
        shape = (count, size, size) if info["n_channels"] == 1 else (count, size, size, 3)
        arrays[f"{split}_images"] = rng.integers(0, 256, shape, dtype=np.uint8)
        c = len(info["label"])
        if info["task"] == "multi-label, binary-class":
            arrays[f"{split}_labels"] = rng.integers(0, 2, (count, c), dtype=np.uint8)
        else:
            arrays[f"{split}_labels"] = rng.integers(0, c, (count, 1), dtype=np.uint8)
    for key in drop_keys:
        arrays.pop(key)
    root.mkdir(parents=True, exist_ok=True)
    file = root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")
    np.savez_compressed(file, **arrays)
    return file


def write_toy_notebook(path: Path, body: str, parameters: str = "x = 1\nfail = False\nrun_dir = None") -> Path:
    """A small parameterised notebook: a tagged parameters cell, then ``body``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def write_flaky_kernel(folder: Path, failures: int) -> Path:
    """A Jupyter kernel ``flaky`` under ``folder`` (put it on ``JUPYTER_PATH``) whose first
    ``failures`` starts exit at once, as a kernel that fails to start does; later starts are
    a real ipykernel. ``folder/starts`` counts the starts."""
    kernel = folder / "kernels" / "flaky"
    kernel.mkdir(parents=True)
    launcher = folder / "flaky.py"
    launcher.write_text(f"import os, sys\ncount = {str(folder / 'starts')!r}\n"
                        "n = int(open(count).read()) if os.path.exists(count) else 0\n"
                        "open(count, 'w').write(str(n + 1))\n"
                        f"if n < {failures}:\n    sys.exit(3)\n"
                        "os.execv(sys.executable, [sys.executable, '-m', 'ipykernel_launcher', '-f', sys.argv[1]])\n")
    (kernel / "kernel.json").write_text(json.dumps({"argv": [sys.executable, str(launcher), "{connection_file}"],
                                                   "display_name": "flaky", "language": "python"}))
    return folder


@pytest.fixture(scope="session")
def offline_demo(tmp_path_factory):
    """``medtl demo --quick --offline --data synthetic`` as a new user without MedMNIST files
    runs it: ``(folder, process)``; the folder holds ``results/`` (the results root) and is
    the working directory the demo ran in."""
    import subprocess
    import sys

    tmp = tmp_path_factory.mktemp("offline-demo")
    env = dict(os.environ, MEDTL_RESULTS=str(tmp / "results"), MEDTL_DATA=str(tmp / "no-data"), **AS_A_USER)
    env.pop("MEDTL_MODELS", None)
    proc = subprocess.run([sys.executable, "-m", "medtl.cli", "demo", "--quick", "--offline", "--data", "synthetic"],
                          env=env, capture_output=True, text=True, cwd=tmp, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp, proc
